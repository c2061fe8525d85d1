/* sse2.c - SSE and SSE2: packed and scalar floating point (with NaNs, infinities, denormals
 * and the MXCSR flags they raise), conversions, integer ops, and the DAZ/FTZ and rounding
 * modes of MXCSR. */
#include "simd.h"
#include <math.h>
#include <string.h>

#define S "sse"
OPS(S, addps, _mm_add_ps(a, b)) OPS(S, subps, _mm_sub_ps(a, b)) OPS(S, mulps, _mm_mul_ps(a, b))
OPS(S, divps, _mm_div_ps(a, b)) OPS(S, sqrtps, _mm_sqrt_ps(a)) OPS(S, maxps, _mm_max_ps(a, b))
OPS(S, minps, _mm_min_ps(a, b)) OPS(S, addss, _mm_add_ss(a, b)) OPS(S, sqrtss, _mm_sqrt_ss(a))
OPS(S, cmpltps, _mm_cmplt_ps(a, b)) OPS(S, cmpunordps, _mm_cmpunord_ps(a, b))
OPS(S, cmpnleps, _mm_cmpnle_ps(a, b)) OPS(S, cmpeqss, _mm_cmpeq_ss(a, b))
OPS(S, shufps, _mm_shuffle_ps(a, b, 0x1b)) OPS(S, unpcklps, _mm_unpacklo_ps(a, b))
OPS(S, andnps, _mm_andnot_ps(a, b)) OPS(S, movhlps, _mm_movehl_ps(a, b))
OPX(S, cvtss2si, { __m128 a = _mm_loadu_ps(pa); int r[4] = {_mm_cvtss_si32(a), _mm_cvttss_si32(a)}; memcpy(pr, r, 16); })
OPX(S, comiss, { __m128 a = _mm_loadu_ps(pa), b = _mm_loadu_ps(pb);
  int r[4] = {_mm_comilt_ss(a, b) | _mm_comieq_ss(a, b) << 1 | _mm_ucomigt_ss(a, b) << 2 | _mm_ucomineq_ss(a, b) << 3,
              _mm_movemask_ps(a)}; memcpy(pr, r, 16); })
/* approximations: only the architectural bound (relative error at most 1.5 * 2^-12) is checked */
OPX(S, rcpps, { __m128 a = _mm_loadu_ps(pa); float x[4], y[4]; int ok[4];
  _mm_storeu_ps(x, a); _mm_storeu_ps(y, _mm_rcp_ps(a));
  for (int i = 0; i < 4; i++) { float e = 1.0f / x[i]; ok[i] = isnormal(e) && isnormal(x[i]) && fabsf(x[i]) < 1e37f ?
      fabsf(y[i] - e) <= fabsf(e) * 0x1.8p-12f : 2; } memcpy(pr, ok, 16); })
OPX(S, rsqrtps, { __m128 a = _mm_loadu_ps(pa); float x[4], y[4]; int ok[4];
  _mm_storeu_ps(x, a); _mm_storeu_ps(y, _mm_rsqrt_ps(a));
  for (int i = 0; i < 4; i++) { float e = 1.0f / sqrtf(x[i]); ok[i] = isnormal(e) && isnormal(x[i]) ?
      fabsf(y[i] - e) <= fabsf(e) * 0x1.8p-12f : 2; } memcpy(pr, ok, 16); })

#define D "sse2"
OPD(D, addpd, _mm_add_pd(a, b)) OPD(D, subpd, _mm_sub_pd(a, b)) OPD(D, mulpd, _mm_mul_pd(a, b))
OPD(D, divpd, _mm_div_pd(a, b)) OPD(D, sqrtpd, _mm_sqrt_pd(a)) OPD(D, maxpd, _mm_max_pd(a, b))
OPD(D, minpd, _mm_min_pd(a, b)) OPD(D, addsd, _mm_add_sd(a, b)) OPD(D, divsd, _mm_div_sd(a, b))
OPD(D, sqrtsd, _mm_sqrt_sd(b, a)) OPD(D, maxsd, _mm_max_sd(a, b)) OPD(D, minsd, _mm_min_sd(a, b))
OPD(D, cmpeqpd, _mm_cmpeq_pd(a, b)) OPD(D, cmpltpd, _mm_cmplt_pd(a, b)) OPD(D, cmplepd, _mm_cmple_pd(a, b))
OPD(D, cmpunordpd, _mm_cmpunord_pd(a, b)) OPD(D, cmpneqpd, _mm_cmpneq_pd(a, b))
OPD(D, cmpnltpd, _mm_cmpnlt_pd(a, b)) OPD(D, cmpnlepd, _mm_cmpnle_pd(a, b)) OPD(D, cmpordpd, _mm_cmpord_pd(a, b))
OPD(D, cmpltsd, _mm_cmplt_sd(a, b)) OPD(D, cmpunordsd, _mm_cmpunord_sd(a, b))
OPD(D, andpd, _mm_and_pd(a, b)) OPD(D, xorpd, _mm_xor_pd(a, b)) OPD(D, shufpd, _mm_shuffle_pd(a, b, 1))
OPD(D, unpckhpd, _mm_unpackhi_pd(a, b))
OPX(D, cvtps2pd, { _mm_storeu_pd(pr, _mm_cvtps_pd(_mm_loadu_ps(pa))); })
OPX(D, cvtpd2ps, { _mm_storeu_ps(pr, _mm_cvtpd_ps(_mm_loadu_pd(pa))); })
OPX(D, cvtdq2pd, { _mm_storeu_pd(pr, _mm_cvtepi32_pd(_mm_loadu_si128(pa))); })
OPX(D, cvtdq2ps, { _mm_storeu_ps(pr, _mm_cvtepi32_ps(_mm_loadu_si128(pa))); })
OPX(D, cvtpd2dq, { _mm_storeu_si128(pr, _mm_cvtpd_epi32(_mm_loadu_pd(pa))); })
OPX(D, cvttpd2dq, { _mm_storeu_si128(pr, _mm_cvttpd_epi32(_mm_loadu_pd(pa))); })
OPX(D, cvtps2dq, { _mm_storeu_si128(pr, _mm_cvtps_epi32(_mm_loadu_ps(pa))); })
OPX(D, cvttps2dq, { _mm_storeu_si128(pr, _mm_cvttps_epi32(_mm_loadu_ps(pa))); })
OPX(D, cvtsd2ss, { _mm_storeu_ps(pr, _mm_cvtsd_ss(_mm_loadu_ps(pb), _mm_loadu_pd(pa))); })
OPX(D, cvtss2sd, { _mm_storeu_pd(pr, _mm_cvtss_sd(_mm_loadu_pd(pb), _mm_loadu_ps(pa))); })
OPX(D, cvtsd2si, { __m128d a = _mm_loadu_pd(pa); int r[4] = {_mm_cvtsd_si32(a), _mm_cvttsd_si32(a)}; memcpy(pr, r, 16); })
#ifdef __x86_64__
OPX(D, cvtsd2si64, { __m128d a = _mm_loadu_pd(pa); long long r[2] = {_mm_cvtsd_si64(a), _mm_cvttsd_si64(a)}; memcpy(pr, r, 16); })
OPX(D, cvtsi642sd, { long long x; memcpy(&x, pa, 8); _mm_storeu_pd(pr, _mm_cvtsi64_sd(_mm_loadu_pd(pb), x)); })
#endif
OPX(D, cvtsi2sd, { int x; memcpy(&x, pa, 4); _mm_storeu_pd(pr, _mm_cvtsi32_sd(_mm_loadu_pd(pb), x)); })
OPX(D, comisd, { __m128d a = _mm_loadu_pd(pa), b = _mm_loadu_pd(pb);
  int r[4] = {_mm_comilt_sd(a, b) | _mm_comieq_sd(a, b) << 1 | _mm_comige_sd(a, b) << 2,
              _mm_ucomilt_sd(a, b) | _mm_ucomieq_sd(a, b) << 1 | _mm_ucomineq_sd(a, b) << 2, _mm_movemask_pd(a)};
  memcpy(pr, r, 16); })
/* the scalar store movsd m64, xmm (F2 0F 11) and load, in the middle of other data */
OPX(D, movsd, { double m[3] = {1, 2, 3}; __m128d a = _mm_loadu_pd(pa); _mm_store_sd(&m[1], a);
  __m128d r = _mm_load_sd(&m[2]); r = _mm_loadh_pd(r, &m[1]); _mm_storeu_pd(pr, r); (void)pb; })
OPI(D, paddb, _mm_add_epi8(a, b)) OPI(D, paddq, _mm_add_epi64(a, b)) OPI(D, paddsw, _mm_adds_epi16(a, b))
OPI(D, paddusb, _mm_adds_epu8(a, b)) OPI(D, psubq, _mm_sub_epi64(a, b)) OPI(D, pmuludq, _mm_mul_epu32(a, b))
OPI(D, pmaddwd, _mm_madd_epi16(a, b)) OPI(D, pmulhw, _mm_mulhi_epi16(a, b)) OPI(D, pmulhuw, _mm_mulhi_epu16(a, b))
OPI(D, pmullw, _mm_mullo_epi16(a, b)) OPI(D, psadbw, _mm_sad_epu8(a, b)) OPI(D, pavgb, _mm_avg_epu8(a, b))
OPI(D, pminub, _mm_min_epu8(a, b)) OPI(D, pmaxsw, _mm_max_epi16(a, b)) OPI(D, pcmpgtb, _mm_cmpgt_epi8(a, b))
OPI(D, pcmpeqd, _mm_cmpeq_epi32(a, b)) OPI(D, packsswb, _mm_packs_epi16(a, b)) OPI(D, packuswb, _mm_packus_epi16(a, b))
OPI(D, packssdw, _mm_packs_epi32(a, b)) OPI(D, punpcklbw, _mm_unpacklo_epi8(a, b))
OPI(D, punpckhqdq, _mm_unpackhi_epi64(a, b)) OPI(D, pshufd, _mm_shuffle_epi32(a, 0x9c))
OPI(D, pshuflw, _mm_shufflelo_epi16(a, 0x1b)) OPI(D, pshufhw, _mm_shufflehi_epi16(a, 0xb1))
OPI(D, pslldq, _mm_slli_si128(a, 5)) OPI(D, psrldq, _mm_srli_si128(a, 11)) OPI(D, psllw, _mm_sll_epi16(a, c))
OPI(D, psrad, _mm_sra_epi32(a, _mm_and_si128(b, _mm_set_epi32(0, 0, 0, 63))))
OPI(D, psrlq, _mm_srli_epi64(a, 13)) OPI(D, psraw, _mm_srai_epi16(a, 15)) OPI(D, pand, _mm_andnot_si128(a, b))
OPI(D, movq, _mm_move_epi64(a)) OPI(D, pextrw, _mm_cvtsi32_si128(_mm_extract_epi16(a, 5)))
OPI(D, pinsrw, _mm_insert_epi16(a, 0x1234, 6)) OPI(D, pmovmskb, _mm_cvtsi32_si128(_mm_movemask_epi8(a)))
OPX(D, maskmovdqu, { unsigned char m[16]; memcpy(m, pb, 16); _mm_maskmoveu_si128(_mm_loadu_si128(pa),
  _mm_loadu_si128(pc), (char *)m); memcpy(pr, m, 16); })

void t_sse(void) {
  RUN("sse", addps, FLOATS); RUN("sse", subps, FLOATS); RUN("sse", mulps, FLOATS); RUN("sse", divps, FLOATS);
  RUN("sse", sqrtps, FLOATS); RUN("sse", maxps, FLOATS); RUN("sse", minps, FLOATS); RUN("sse", addss, FLOATS);
  RUN("sse", sqrtss, FLOATS); RUN("sse", cmpltps, FLOATS); RUN("sse", cmpunordps, FLOATS);
  RUN("sse", cmpnleps, FLOATS); RUN("sse", cmpeqss, FLOATS); RUN("sse", shufps, FLOATS);
  RUN("sse", unpcklps, FLOATS); RUN("sse", andnps, FLOATS); RUN("sse", movhlps, FLOATS);
  RUN("sse", cvtss2si, FLOATS); RUN("sse", comiss, FLOATS); RUN("sse", rcpps, FLOATS); RUN("sse", rsqrtps, FLOATS);
}

static unsigned getcsr(void) { unsigned m; __asm__ volatile("stmxcsr %0" : "=m"(m) : : "memory"); return m; }
static void setcsr(unsigned m) { __asm__ volatile("ldmxcsr %0" : : "m"(m) : "memory"); }

/* an SSE2 addition also in the i386 build (whose C arithmetic is x87) */
__attribute__((target("sse2"), noinline)) static double addsd(double a, double b) {
  return _mm_cvtsd_f64(_mm_add_sd(_mm_set_sd(a), _mm_set_sd(b)));
}

void t_sse2(void) {
  RUN(D, addpd, DOUBLES); RUN(D, subpd, DOUBLES); RUN(D, mulpd, DOUBLES); RUN(D, divpd, DOUBLES);
  RUN(D, sqrtpd, DOUBLES); RUN(D, maxpd, DOUBLES); RUN(D, minpd, DOUBLES); RUN(D, addsd, DOUBLES);
  RUN(D, divsd, DOUBLES); RUN(D, sqrtsd, DOUBLES); RUN(D, maxsd, DOUBLES); RUN(D, minsd, DOUBLES);
  RUN(D, cmpeqpd, DOUBLES); RUN(D, cmpltpd, DOUBLES); RUN(D, cmplepd, DOUBLES); RUN(D, cmpunordpd, DOUBLES);
  RUN(D, cmpneqpd, DOUBLES); RUN(D, cmpnltpd, DOUBLES); RUN(D, cmpnlepd, DOUBLES); RUN(D, cmpordpd, DOUBLES);
  RUN(D, cmpltsd, DOUBLES); RUN(D, cmpunordsd, DOUBLES); RUN(D, andpd, DOUBLES); RUN(D, xorpd, DOUBLES);
  RUN(D, shufpd, DOUBLES); RUN(D, unpckhpd, DOUBLES); RUN(D, cvtps2pd, FLOATS); RUN(D, cvtpd2ps, DOUBLES);
  RUN(D, cvtdq2pd, INTS); RUN(D, cvtdq2ps, INTS); RUN(D, cvtpd2dq, DOUBLES); RUN(D, cvttpd2dq, DOUBLES);
  RUN(D, cvtps2dq, FLOATS); RUN(D, cvttps2dq, FLOATS); RUN(D, cvtsd2ss, DOUBLES); RUN(D, cvtss2sd, FLOATS);
  RUN(D, cvtsd2si, DOUBLES); RUN(D, cvtsi2sd, INTS); RUN(D, comisd, DOUBLES); RUN(D, movsd, DOUBLES);
#ifdef __x86_64__
  RUN(D, cvtsd2si64, DOUBLES); RUN(D, cvtsi642sd, BYTES);
#endif
  RUN(D, paddb, BYTES); RUN(D, paddq, BYTES); RUN(D, paddsw, INTS); RUN(D, paddusb, BYTES); RUN(D, psubq, BYTES);
  RUN(D, pmuludq, BYTES); RUN(D, pmaddwd, INTS); RUN(D, pmulhw, INTS); RUN(D, pmulhuw, BYTES); RUN(D, pmullw, BYTES);
  RUN(D, psadbw, BYTES); RUN(D, pavgb, BYTES); RUN(D, pminub, BYTES); RUN(D, pmaxsw, INTS); RUN(D, pcmpgtb, BYTES);
  RUN(D, pcmpeqd, INTS); RUN(D, packsswb, INTS); RUN(D, packuswb, INTS); RUN(D, packssdw, INTS);
  RUN(D, punpcklbw, BYTES); RUN(D, punpckhqdq, BYTES); RUN(D, pshufd, BYTES); RUN(D, pshuflw, BYTES);
  RUN(D, pshufhw, BYTES); RUN(D, pslldq, BYTES); RUN(D, psrldq, BYTES); RUN(D, psllw, INTS); RUN(D, psrad, INTS);
  RUN(D, psrlq, BYTES); RUN(D, psraw, INTS); RUN(D, pand, BYTES); RUN(D, movq, BYTES); RUN(D, pextrw, BYTES);
  RUN(D, pinsrw, BYTES); RUN(D, pmovmskb, BYTES); RUN(D, maskmovdqu, BYTES);
  /* the denormal-operand flag, which QEMU 7.2 TCG does not set: compared with the host */
  {
    unsigned m0 = getcsr();
    setcsr(m0 & ~0x3fu);
    volatile double den = 0x1p-1060, one = 1;
    volatile double r = addsd(den, one);
    unsigned m1 = getcsr();
    setcsr(m0);
    out("sse2.denormal_flag.hostref", "%a de=%d", r, (m1 >> 1) & 1);
  }
  /* MXCSR modes: each rounding mode, then flush-to-zero and denormals-are-zero */
  unsigned m0 = getcsr();
  static const char *mk[] = {"sse2.mode.down", "sse2.mode.up", "sse2.mode.zero", "sse2.mode.ftz", "sse2.mode.daz"};
  static const unsigned mb[] = {0x2000, 0x4000, 0x6000, 0x8000, 0x0040};
  for (int i = 0; i < 5; i++) {
    setcsr((m0 & ~0x6000u) | mb[i]);
    run(mk[i], DOUBLES, op_divpd);
    setcsr((m0 & ~0x6000u) | mb[i]);
    char k[40];
    strcpy(k, mk[i]);
    strcat(k, ".cvt");
    run(k, DOUBLES, op_cvtpd2dq);
    setcsr(m0);
  }
}
