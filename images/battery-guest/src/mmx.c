/* mmx.c - MMX in inline assembly (gcc implements the MMX intrinsics with SSE registers on
 * x86-64, so only asm reaches the MMX instructions), and how MMX shares the x87 registers. */
#pragma GCC target("mmx")
#include "simd.h"
#include <string.h>

/* mm0 = a; mm0 = mm0 OP b; r = mm0; emms */
#define MMX(name, insn) static void op_##name(const void *pa, const void *pb, const void *pc, void *pr) { \
    (void)pc; __asm__ volatile("movq (%0), %%mm0\n\t" insn " (%1), %%mm0\n\tmovq %%mm0, (%2)\n\temms" \
                               : : "r"(pa), "r"(pb), "r"(pr) : "memory", "mm0"); }
/* an instruction with an immediate or another form: the asm body is given whole */
#define MMXA(name, body) static void op_##name(const void *pa, const void *pb, const void *pc, void *pr) { \
    (void)pc; __asm__ volatile(body "\n\temms" : : "r"(pa), "r"(pb), "r"(pr) : "memory", "mm0", "mm1", "eax"); }

#ifdef __x86_64__
#define DI "rdi"
#else
#define DI "edi"
#endif
MMX(paddb, "paddb") MMX(paddw, "paddw") MMX(paddd, "paddd") MMX(paddq, "paddq") MMX(paddsb, "paddsb")
MMX(paddusw, "paddusw") MMX(psubb, "psubb") MMX(psubsw, "psubsw") MMX(psubusb, "psubusb")
MMX(pmullw, "pmullw") MMX(pmulhw, "pmulhw") MMX(pmaddwd, "pmaddwd") MMX(pmuludq, "pmuludq")
MMX(pcmpeqb, "pcmpeqb") MMX(pcmpgtw, "pcmpgtw") MMX(pcmpgtd, "pcmpgtd") MMX(packsswb, "packsswb")
MMX(packssdw, "packssdw") MMX(packuswb, "packuswb") MMX(punpcklbw, "punpcklbw") MMX(punpckhwd, "punpckhwd")
MMX(punpckhdq, "punpckhdq") MMX(pand, "pand") MMX(pandn, "pandn") MMX(por, "por") MMX(pxor, "pxor")
MMX(psllw, "psllw") MMX(psrld, "psrld") MMX(psraw, "psraw") MMX(psrlq, "psrlq")
/* SSE's additions to MMX */
MMX(pavgb, "pavgb") MMX(pavgw, "pavgw") MMX(pmaxub, "pmaxub") MMX(pminsw, "pminsw") MMX(psadbw, "psadbw")
MMX(pmulhuw, "pmulhuw")
MMXA(psllq_imm, "movq (%0), %%mm0\n\tpsllq $13, %%mm0\n\tmovq %%mm0, (%2)")
MMXA(psraw_imm, "movq (%0), %%mm0\n\tpsraw $3, %%mm0\n\tmovq %%mm0, (%2)")
MMXA(pshufw, "pshufw $0x1b, (%0), %%mm0\n\tmovq %%mm0, (%2)")
MMXA(pextrw, "movq (%0), %%mm0\n\tpextrw $2, %%mm0, %%eax\n\tmovl %%eax, (%2)")
MMXA(pinsrw, "movq (%0), %%mm0\n\tmovl (%1), %%eax\n\tpinsrw $3, %%eax, %%mm0\n\tmovq %%mm0, (%2)")
MMXA(pmovmskb, "movq (%0), %%mm0\n\tpmovmskb %%mm0, %%eax\n\tmovl %%eax, (%2)")
MMXA(movd, "movd (%0), %%mm0\n\tmovd %%mm0, %%eax\n\tmovq %%mm0, (%2)\n\tmovl %%eax, 8(%2)")
MMXA(maskmovq, "movq (%0), %%mm0\n\tmovq (%1), %%mm1\n\tpush %%" DI "\n\tmov %2, %%" DI "\n\tmaskmovq %%mm1, %%mm0\n\tpop %%" DI)
#ifdef __x86_64__
static void op_movq_gpr(const void *pa, const void *pb, const void *pc, void *pr) {
  (void)pb; (void)pc;
  unsigned long long x, y;
  memcpy(&x, pa, 8);
  __asm__ volatile("movq %1, %%mm0\n\tpaddd %%mm0, %%mm0\n\tmovq %%mm0, %0\n\temms" : "=r"(y) : "r"(x) : "mm0");
  memcpy(pr, &y, 8);
}
#endif

void t_mmx(void) {
  if (!F.mmx) { out("mmx", "not present"); return; }
  RUN("mmx", paddb, BYTES); RUN("mmx", paddw, BYTES); RUN("mmx", paddd, BYTES); RUN("mmx", paddq, BYTES);
  RUN("mmx", paddsb, BYTES); RUN("mmx", paddusw, BYTES); RUN("mmx", psubb, BYTES); RUN("mmx", psubsw, INTS);
  RUN("mmx", psubusb, BYTES); RUN("mmx", pmullw, BYTES); RUN("mmx", pmulhw, INTS); RUN("mmx", pmaddwd, INTS);
  RUN("mmx", pmuludq, BYTES); RUN("mmx", pcmpeqb, TEXT); RUN("mmx", pcmpgtw, INTS); RUN("mmx", pcmpgtd, INTS);
  RUN("mmx", packsswb, INTS); RUN("mmx", packssdw, INTS); RUN("mmx", packuswb, INTS); RUN("mmx", punpcklbw, BYTES);
  RUN("mmx", punpckhwd, BYTES); RUN("mmx", punpckhdq, BYTES); RUN("mmx", pand, BYTES); RUN("mmx", pandn, BYTES);
  RUN("mmx", por, BYTES); RUN("mmx", pxor, BYTES); RUN("mmx", psllw, INTS); RUN("mmx", psrld, INTS);
  RUN("mmx", psraw, INTS); RUN("mmx", psrlq, INTS); RUN("mmx", psllq_imm, BYTES); RUN("mmx", psraw_imm, BYTES);
  RUN("mmx", movd, BYTES);
  if (F.sse) {
    RUN("mmx", pavgb, BYTES); RUN("mmx", pavgw, BYTES); RUN("mmx", pmaxub, BYTES); RUN("mmx", pminsw, INTS);
    RUN("mmx", psadbw, BYTES); RUN("mmx", pmulhuw, BYTES); RUN("mmx", pshufw, BYTES); RUN("mmx", pextrw, BYTES);
    RUN("mmx", pinsrw, BYTES); RUN("mmx", pmovmskb, BYTES); RUN("mmx", maskmovq, BYTES);
  }
#ifdef __x86_64__
  RUN("mmx", movq_gpr, BYTES);
#endif
  /* an MMX write makes every x87 register valid and TOP 0; the 80-bit view of mm0 is the
   * value with exponent bits all ones; emms empties them again */
  unsigned short env1[14], env2[14];
  unsigned char st0[10];
  unsigned long long v = 0x0123456789abcdefULL;
  __asm__ volatile("movq %3, %%mm0\n\tfnstenv %0\n\tfldenv %0\n\tfstpt %2\n\temms\n\tfnstenv %1"
                   : "=m"(env1), "=m"(env2), "=m"(st0) : "m"(v) : "mm0", "st");
  out("mmx.x87view", "tag=%04x top=%d st0=%02x%02x%02x%02x%02x%02x%02x%02x emms.tag=%04x", env1[4], env1[2] >> 11 & 7,
      st0[7], st0[6], st0[5], st0[4], st0[3], st0[2], st0[1], st0[0], env2[4]);
  /* the sign and exponent become all ones on CPUs; QEMU 7.2 TCG leaves them 0 */
  out("mmx.x87view.exponent.hostref", "%02x%02x", st0[9], st0[8]);
}
