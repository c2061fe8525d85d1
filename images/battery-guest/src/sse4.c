/* sse4.c - SSE3, SSSE3, SSE4.1, SSE4.2 and POPCNT; each only when CPUID offers it. */
#include "simd.h"
#include <string.h>

#define S3 "sse3"
OPD(S3, addsubpd, _mm_addsub_pd(a, b)) OPS(S3, addsubps, _mm_addsub_ps(a, b)) OPD(S3, haddpd, _mm_hadd_pd(a, b))
OPS(S3, haddps, _mm_hadd_ps(a, b)) OPD(S3, hsubpd, _mm_hsub_pd(a, b)) OPS(S3, hsubps, _mm_hsub_ps(a, b))
OPD(S3, movddup, _mm_movedup_pd(a)) OPS(S3, movshdup, _mm_movehdup_ps(a)) OPS(S3, movsldup, _mm_moveldup_ps(a))
OPX(S3, lddqu, { _mm_storeu_si128(pr, _mm_lddqu_si128((const __m128i *)((const char *)pa + 1))); })

#define S4 "ssse3"
OPI(S4, pshufb, _mm_shuffle_epi8(a, b)) OPI(S4, phaddw, _mm_hadd_epi16(a, b)) OPI(S4, phaddd, _mm_hadd_epi32(a, b))
OPI(S4, phaddsw, _mm_hadds_epi16(a, b)) OPI(S4, phsubw, _mm_hsub_epi16(a, b)) OPI(S4, phsubd, _mm_hsub_epi32(a, b))
OPI(S4, pmaddubsw, _mm_maddubs_epi16(a, b)) OPI(S4, pmulhrsw, _mm_mulhrs_epi16(a, b))
OPI(S4, palignr3, _mm_alignr_epi8(a, b, 3)) OPI(S4, palignr9, _mm_alignr_epi8(a, b, 9))
OPI(S4, palignr20, _mm_alignr_epi8(a, b, 20)) OPI(S4, psignb, _mm_sign_epi8(a, b)) OPI(S4, psignw, _mm_sign_epi16(a, b))
OPI(S4, psignd, _mm_sign_epi32(a, b)) OPI(S4, pabsb, _mm_abs_epi8(a)) OPI(S4, pabsw, _mm_abs_epi16(a))
OPI(S4, pabsd, _mm_abs_epi32(a))

#define T "sse4.1"
OPD(T, roundpd0, _mm_round_pd(a, 0)) OPD(T, roundpd1, _mm_round_pd(a, 1)) OPD(T, roundpd2, _mm_round_pd(a, 2))
OPD(T, roundpd3, _mm_round_pd(a, 3)) OPD(T, roundpd4, _mm_round_pd(a, 4)) OPD(T, roundpd8, _mm_round_pd(a, 8))
OPS(T, roundps0, _mm_round_ps(a, 0)) OPS(T, roundps3, _mm_round_ps(a, 3)) OPS(T, roundps9, _mm_round_ps(a, 9))
OPD(T, roundsd1, _mm_round_sd(b, a, 1)) OPS(T, roundss2, _mm_round_ss(b, a, 2))
OPD(T, blendpd, _mm_blend_pd(a, b, 2)) OPS(T, blendps, _mm_blend_ps(a, b, 5)) OPD(T, blendvpd, _mm_blendv_pd(a, b, c))
OPS(T, blendvps, _mm_blendv_ps(a, b, c)) OPI(T, pblendvb, _mm_blendv_epi8(a, b, c))
OPI(T, pblendw, _mm_blend_epi16(a, b, 0xa5)) OPD(T, dppd, _mm_dp_pd(a, b, 0x31)) OPS(T, dpps, _mm_dp_ps(a, b, 0xf3))
OPS(T, dpps2, _mm_dp_ps(a, b, 0x5c)) OPS(T, insertps, _mm_insert_ps(a, b, 0x9a))
OPI(T, ptest, _mm_set_epi32(_mm_testz_si128(a, b), _mm_testc_si128(a, b), _mm_testnzc_si128(a, b),
                            _mm_testz_si128(a, _mm_and_si128(b, c))))
OPI(T, pmulld, _mm_mullo_epi32(a, b)) OPI(T, pmuldq, _mm_mul_epi32(a, b)) OPI(T, pminsb, _mm_min_epi8(a, b))
OPI(T, pminsd, _mm_min_epi32(a, b)) OPI(T, pminuw, _mm_min_epu16(a, b)) OPI(T, pminud, _mm_min_epu32(a, b))
OPI(T, pmaxsb, _mm_max_epi8(a, b)) OPI(T, pmaxud, _mm_max_epu32(a, b)) OPI(T, pmovzxbw, _mm_cvtepu8_epi16(a))
OPI(T, pmovsxbd, _mm_cvtepi8_epi32(a)) OPI(T, pmovsxwq, _mm_cvtepi16_epi64(a)) OPI(T, pmovzxdq, _mm_cvtepu32_epi64(a))
OPI(T, mpsadbw, _mm_mpsadbw_epu8(a, b, 5)) OPI(T, phminposuw, _mm_minpos_epu16(a))
OPI(T, packusdw, _mm_packus_epi32(a, b)) OPI(T, pcmpeqq, _mm_cmpeq_epi64(a, b))
OPI(T, pextr, _mm_set_epi32(_mm_extract_epi8(a, 13), _mm_extract_epi32(a, 2), _mm_extract_ps(_mm_castsi128_ps(b), 1), 0))
OPI(T, pinsr, _mm_insert_epi32(_mm_insert_epi8(a, 0x7f, 9), 0x12345678, 3))
OPX(T, movntdqa, { __m128i m[2]; memcpy(m, pa, 16); _mm_storeu_si128(pr, _mm_stream_load_si128(&m[0])); })

#define U "sse4.2"
OPI(U, pcmpgtq, _mm_cmpgt_epi64(a, b))
/* the string compares: index, mask and all five flags, for several modes */
#define STR(m) OPI(U, pcmpistr##m, _mm_set_epi32(_mm_cmpistri(a, b, m), _mm_cmpistrc(a, b, m) | _mm_cmpistrz(a, b, m) << 1 | \
    _mm_cmpistrs(a, b, m) << 2 | _mm_cmpistro(a, b, m) << 3 | _mm_cmpistra(a, b, m) << 4, \
    _mm_cvtsi128_si32(_mm_cmpistrm(a, b, m)), _mm_extract_epi32(_mm_cmpistrm(a, b, m | 0x40), 1)))
#define ESTR(m) OPI(U, pcmpestr##m, ({ int la = _mm_extract_epi8(c, 0) % 20 - 2, lb = _mm_extract_epi8(c, 1) % 20 - 2; \
    _mm_set_epi32(_mm_cmpestri(a, la, b, lb, m), _mm_cmpestrc(a, la, b, lb, m) | _mm_cmpestrz(a, la, b, lb, m) << 1 | \
    _mm_cmpestrs(a, la, b, lb, m) << 2 | _mm_cmpestro(a, la, b, lb, m) << 3, \
    _mm_cvtsi128_si32(_mm_cmpestrm(a, la, b, lb, m)), _mm_extract_epi32(_mm_cmpestrm(a, la, b, lb, m | 0x40), 2)); }))
STR(0x00) STR(0x04) STR(0x08) STR(0x0c) STR(0x18) STR(0x3a) STR(0x44) STR(0x01) STR(0x0d) STR(0x34)
ESTR(0x00) ESTR(0x04) ESTR(0x0c) ESTR(0x18) ESTR(0x3a) ESTR(0x01)
OPX(U, crc32, { const unsigned char *p = pa; unsigned c = 0xffffffff;
  c = _mm_crc32_u8(c, p[0]); c = _mm_crc32_u16(c, *(const unsigned short *)(p + 1)); c = _mm_crc32_u32(c, *(const unsigned *)(p + 3));
#ifdef __x86_64__
  c = (unsigned)_mm_crc32_u64(c, *(const unsigned long long *)(p + 7));
#endif
  memcpy(pr, &c, 4); })
OPX("popcnt", popcnt, { unsigned r[4] = {0}; const unsigned *p = pa; r[0] = _mm_popcnt_u32(p[0]); r[1] = _mm_popcnt_u32(p[1] & p[2]);
#ifdef __x86_64__
  r[2] = (unsigned)_mm_popcnt_u64(*(const unsigned long long *)pb);
#endif
  memcpy(pr, r, 12); })

void t_sse3(void) {
  if (!F.sse3) { out("sse3", "not present"); return; }
  RUN(S3, addsubpd, DOUBLES); RUN(S3, addsubps, FLOATS); RUN(S3, haddpd, DOUBLES); RUN(S3, haddps, FLOATS);
  RUN(S3, hsubpd, DOUBLES); RUN(S3, hsubps, FLOATS); RUN(S3, movddup, DOUBLES); RUN(S3, movshdup, FLOATS);
  RUN(S3, movsldup, FLOATS); RUN(S3, lddqu, BYTES);
}

void t_ssse3(void) {
  if (!F.ssse3) { out("ssse3", "not present"); return; }
  RUN(S4, pshufb, BYTES); RUN(S4, phaddw, INTS); RUN(S4, phaddd, INTS); RUN(S4, phaddsw, INTS); RUN(S4, phsubw, INTS);
  RUN(S4, phsubd, INTS); RUN(S4, pmaddubsw, BYTES); RUN(S4, pmulhrsw, INTS); RUN(S4, palignr3, BYTES);
  RUN(S4, palignr9, BYTES); RUN(S4, palignr20, BYTES); RUN(S4, psignb, BYTES); RUN(S4, psignw, INTS);
  RUN(S4, psignd, INTS); RUN(S4, pabsb, BYTES); RUN(S4, pabsw, INTS); RUN(S4, pabsd, INTS);
}

void t_sse41(void) {
  if (!F.sse41) { out("sse41", "not present"); return; }
  RUN("sse41", roundpd0, DOUBLES); RUN("sse41", roundpd1, DOUBLES); RUN("sse41", roundpd2, DOUBLES); RUN("sse41", roundpd3, DOUBLES);
  RUN("sse41", roundpd4, DOUBLES); RUN("sse41", roundpd8, DOUBLES); RUN("sse41", roundps0, FLOATS); RUN("sse41", roundps3, FLOATS);
  RUN("sse41", roundps9, FLOATS); RUN("sse41", roundsd1, DOUBLES); RUN("sse41", roundss2, FLOATS); RUN("sse41", blendpd, DOUBLES);
  RUN("sse41", blendps, FLOATS); RUN("sse41", blendvpd, DOUBLES); RUN("sse41", blendvps, FLOATS); RUN("sse41", pblendvb, BYTES);
  RUN("sse41", pblendw, BYTES); RUN("sse41", dppd, DOUBLES); RUN("sse41", dpps, FLOATS); RUN("sse41", dpps2, FLOATS); RUN("sse41", insertps, FLOATS);
  RUN("sse41", ptest, BYTES); RUN("sse41", pmulld, INTS); RUN("sse41", pmuldq, INTS); RUN("sse41", pminsb, BYTES); RUN("sse41", pminsd, INTS);
  RUN("sse41", pminuw, BYTES); RUN("sse41", pminud, INTS); RUN("sse41", pmaxsb, BYTES); RUN("sse41", pmaxud, INTS); RUN("sse41", pmovzxbw, BYTES);
  RUN("sse41", pmovsxbd, BYTES); RUN("sse41", pmovsxwq, BYTES); RUN("sse41", pmovzxdq, BYTES); RUN("sse41", mpsadbw, BYTES);
  RUN("sse41", phminposuw, BYTES); RUN("sse41", packusdw, INTS); RUN("sse41", pcmpeqq, INTS); RUN("sse41", pextr, BYTES); RUN("sse41", pinsr, BYTES);
  RUN("sse41", movntdqa, BYTES);
}

void t_sse42(void) {
  if (F.popcnt) RUN("popcnt", popcnt, BYTES);
  else out("popcnt", "not present");
  if (!F.sse42) { out("sse42", "not present"); return; }
  RUN("sse42", pcmpgtq, INTS); RUN("sse42", crc32, BYTES);
  RUN("sse42", pcmpistr0x00, TEXT); RUN("sse42", pcmpistr0x04, TEXT); RUN("sse42", pcmpistr0x08, TEXT); RUN("sse42", pcmpistr0x0c, TEXT);
  RUN("sse42", pcmpistr0x18, TEXT); RUN("sse42", pcmpistr0x3a, TEXT); RUN("sse42", pcmpistr0x44, TEXT); RUN("sse42", pcmpistr0x01, TEXT);
  RUN("sse42", pcmpistr0x0d, TEXT); RUN("sse42", pcmpistr0x34, TEXT);
  RUN("sse42", pcmpestr0x00, TEXT); RUN("sse42", pcmpestr0x04, TEXT); RUN("sse42", pcmpestr0x0c, TEXT); RUN("sse42", pcmpestr0x18, TEXT);
  RUN("sse42", pcmpestr0x3a, TEXT); RUN("sse42", pcmpestr0x01, TEXT);
}
