/* intjmp.c - integer arithmetic (128-bit where the target has it), a few instructions whose
 * corner cases emulators get wrong, and setjmp/longjmp. */
#include "battery.h"
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

void t_int(void) {
  rnd_seed("int");
  uint64_t h = FNV0, hs = FNV0;
  for (int i = 0; i < 5000; i++) {
#ifdef __SIZEOF_INT128__
    unsigned __int128 a = (unsigned __int128)rnd() << (rnd() % 64) | rnd(), b = (unsigned __int128)rnd() >> (i % 64) | 1;
    unsigned __int128 r[3] = {a * b, a / b, a % b};
    __int128 sa = (__int128)a, sb = -(__int128)(b >> 1 | 1);
    __int128 s[3] = {sa * sb, sa / sb, sa % sb};
#else
    uint64_t a = rnd() >> (i % 32), b = rnd() >> (rnd() % 64) | 1;
    uint64_t r[3] = {a * b, a / b, a % b};
    int64_t sa = (int64_t)a, sb = -(int64_t)(b >> 1 | 1);
    int64_t s[3] = {sa * sb, sa / sb, sa % sb};
#endif
    h = fnv(h, r, sizeof r);
    hs = fnv(hs, s, sizeof s);
  }
  out("int.muldiv", "%016llx %016llx", (unsigned long long)h, (unsigned long long)hs);
#ifdef __SIZEOF_INT128__
  unsigned __int128 f = 1;
  for (int i = 1; i <= 34; i++) f *= i;
  out("int.fact34", "%016llx%016llx %llu", (unsigned long long)(f >> 64), (unsigned long long)f,
      (unsigned long long)(f / 1000000007));
#endif
  /* flags of the add/sub family (all six defined) over random operands */
  h = FNV0;
  for (int i = 0; i < 2000; i++) {
    unsigned long a = (unsigned long)rnd(), b = (unsigned long)rnd() >> (i % 40), f1, f2, r1, r2;
    __asm__("add %3, %0; pushf; pop %1; adc %3, %0; sbb %3, %2; pushf; pop %1" : "=r"(r1), "=r"(f1), "=r"(r2)
            : "r"(b), "0"(a), "2"(a) : "cc");
    __asm__("sub %2, %0; pushf; pop %1" : "=r"(r2), "=r"(f2) : "r"(b), "0"(a) : "cc");
    unsigned long v[4] = {r1, f1 & 0x8d5, r2, f2 & 0x8d5};
    h = fnv(h, v, sizeof v);
  }
  out("int.flags", "%016llx", (unsigned long long)h);
  /* shifts and rotates by counts, bit scans, byte swaps */
  h = FNV0;
  for (int i = 0; i < 2000; i++) {
    unsigned long a = (unsigned long)rnd(), b = (unsigned long)rnd(), v[6];
    unsigned char n = (unsigned char)(rnd() % 70);
    v[0] = a; v[1] = a; v[2] = a; v[3] = a;
    __asm__("shld %%cl, %2, %0" : "+r"(v[0]) : "c"(n), "r"(b) : "cc");
    __asm__("shrd %%cl, %2, %0" : "+r"(v[1]) : "c"(n), "r"(b) : "cc");
    __asm__("stc; rcl %%cl, %0" : "+r"(v[2]) : "c"(n) : "cc");
    __asm__("ror %%cl, %0" : "+r"(v[3]) : "c"(n) : "cc");
    v[4] = a ? (unsigned long)__builtin_ctzl(a) * 256 + (unsigned long)__builtin_clzl(a) : 0;
    v[5] = __builtin_bswap32((unsigned)a);
    h = fnv(h, v, sizeof v);
  }
  out("int.shifts", "%016llx", (unsigned long long)h);
  /* xlat: al = [rbx + al] */
  static const unsigned char table[256] = {[0] = 7, [0x41] = 0x99, [0xff] = 0x42};
  unsigned long ax = 0x1241;
  __asm__("xlat" : "+a"(ax) : "b"(table));
  out("int.xlat", "%lx", ax);
#ifdef __x86_64__
  /* a failing 32-bit cmpxchg loads eax, zero-extending it into rax; a succeeding one leaves rax */
  unsigned long rax1 = 0xffffffff00000005UL, rax2 = 0xffffffff00000007UL;
  unsigned mem = 7;
  __asm__("lock cmpxchgl %2, %1" : "+a"(rax1), "+m"(mem) : "r"(9u) : "cc");
  __asm__("lock cmpxchgl %2, %1" : "+a"(rax2), "+m"(mem) : "r"(9u) : "cc");
  out("int.cmpxchg32", "%lx %lx mem=%u", rax1, rax2, mem);
#endif
  if (F.cx16 || F.cx8) {
    _Alignas(16) unsigned long long m[2] = {1, 2};
#ifdef __x86_64__
    int ok = 0, ok2 = 0;
    for (int k = 0; k < 2; k++) {
      unsigned long lo = 1, hi = 2;
      unsigned char z;
      __asm__ volatile("lock cmpxchg16b %1; sete %0" : "=q"(z), "+m"(m), "+a"(lo), "+d"(hi) : "b"(3L), "c"(4L) : "cc");
      if (k) ok2 = z; else ok = z;
    }
#else
    int ok = __sync_bool_compare_and_swap(&m[0], 1ULL, 3ULL), ok2 = __sync_bool_compare_and_swap(&m[0], 1ULL, 3ULL);
    m[1] = 4;
#endif
    out("int.cmpxchg16b", "%d %d %llu %llu", ok, ok2, m[0], m[1]);
  }
#ifdef __x86_64__
  /* last: a wrong ENTER leaves RSP wrong and ends the section */
  /* enter with a nesting level copies frame pointers; with a 64-bit operand it pushes 8 bytes */
  unsigned long before, after, frame[5];
  __asm__ volatile("sub $128, %%rsp\n\tmov %%rsp, %0\n\tpush %%rbp\n\tmov %%rsp, %%rbp\n\tpushq $0x1111\n\t"
                   "pushq $0x2222\n\tsub $48, %%rsp\n\tenter $32, $3\n\tmov %%rsp, %1\n\t"
                   "mov 0(%%rbp), %%rax\n\tmov %%rax, 0(%2)\n\tmov -8(%%rbp), %%rax\n\tmov %%rax, 8(%2)\n\t"
                   "mov -16(%%rbp), %%rax\n\tmov %%rax, 16(%2)\n\tmov -24(%%rbp), %%rax\n\tmov %%rax, 24(%2)\n\t"
                   "mov %%rbp, 32(%2)\n\tleave\n\tmov %%rbp, %%rsp\n\tpop %%rbp\n\tadd $128, %%rsp"
                   : "=&r"(before), "=&r"(after) : "r"(frame) : "rax", "memory");
  out("int.enter", "depth=%ld oldrbp=%ld copies=%lx,%lx self=%ld rbp=%ld", (long)(before - after),
      (long)(frame[0] - before), frame[1], frame[2], (long)(frame[3] - frame[4]), (long)(frame[4] - before));
#endif
}

static jmp_buf jb;
static sigjmp_buf sjb;
static int depth;

static void dive(int n) {
  volatile char pad[256];
  pad[n % 256] = (char)n;
  depth = n + pad[n % 256] * 0;
  if (n < 50) dive(n + 1);
  else longjmp(jb, n * 3);
}

void t_jmp(void) {
  volatile long double acc = 1.0L / 7;
  volatile double dacc = 1.0 / 7;
  volatile int round = 0;
  int v = setjmp(jb);
  round++;
  if (round < 4) { acc *= 3; dacc *= 3; dive(round); }
  out("jmp.longjmp", "v=%d round=%d depth=%d %La %a", v, round, depth, acc, dacc);
  volatile int again = 0;
  if (sigsetjmp(sjb, 1) == 0) { again = 1; siglongjmp(sjb, 7); }
  out("jmp.siglongjmp", "again=%d", again);
}
