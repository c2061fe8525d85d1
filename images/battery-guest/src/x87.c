/* x87.c - long double arithmetic, the x87 instructions one by one (inline asm, so that the
 * compiler cannot fold them), the floating-point environment and ucontext switches. */
#include "battery.h"
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

static void pld(const char *k, long double v) { out(k, "%La %.20Lg", v, v); }
/* transcendental instructions: real CPUs and emulators may differ in the last bits */
static void pldt(const char *k, long double v) { out(k, "%.12Lg", v); }

static unsigned short fstsw(void) { unsigned short sw; __asm__ volatile("fnstsw %0" : "=am"(sw)); return sw; }
static void fclex(void) { __asm__ volatile("fnclex"); }

#define UN(insn, x) ({ long double r_ = (x); __asm__ volatile(insn : "+t"(r_)); r_; })
/* st(1)=y, st(0)=x, an instruction that pops, the result left in st(0) */
#define POP2(insn, y, x) ({ long double y_ = (y), x_ = (x), r_; \
    __asm__ volatile("fldt %1; fldt %2; " insn "; fstpt %0" : "=m"(r_) : "m"(y_), "m"(x_)); r_; })
#define BIN(insn, x, y) ({ long double r_ = (x), s_ = (y); __asm__ volatile(insn : "+t"(r_) : "u"(s_)); r_; })

void t_x87(void) {
  volatile long double one = 1.0L, three = 3.0L, big = 1e4000L, tiny = 1e-4000L;
  pld("x87.div", one / three);
  pld("x87.mul", one / three * three);
  pld("x87.add", one / three + 1e-19L);
  pld("x87.sub", big - big * 0.5L);
  pld("x87.tiny", tiny * tiny);
  pld("x87.huge", big * big);
  pld("x87.denorm", tiny * 1e-930L);
  pld("x87.ldmax", LDBL_MAX / 3 * 2);
  long double s = 0;
  for (int i = 1; i <= 1000; i++) s += 1.0L / ((long double)i * i);
  pld("x87.basel", s);
  long double p = 1;
  for (int i = 1; i <= 25; i++) p *= i;
  pld("x87.fact25", p);
  volatile double d = 0.1;
  pld("x87.fromdouble", (long double)d * 10);
  out("x87.todouble", "%a", (double)(one / three));
  out("x87.tofloat", "%a", (double)(float)(one / three));
  volatile long double m = 9.2233720368547758075e18L;
  out("x87.toint64", "%lld %lld", (long long)(one / three * 1e18L), (long long)-m);
  out("x87.touint64", "%llu", (unsigned long long)(m * 1.5L));

  /* the instructions one at a time, each with the status word it leaves (exception flags and
   * condition codes; C1 is the rounding direction) */
/* (C1, the rounding direction, is not shown: QEMU 7.2 TCG does not set it as CPUs do; see
 * x87.c1.hostref; the other condition codes only where the instruction defines them) */
#define SHOWM(k, expr, cc) do { fclex(); long double v_ = (expr); unsigned short w_ = fstsw(); \
    out(k, "%La sw=%04x", v_, w_ & (0x3f | (cc))); } while (0)
#define SHOW(k, expr) SHOWM(k, expr, 0)
  SHOW("x87.fsqrt2", UN("fsqrt", 2.0L));
  SHOW("x87.fsqrtneg", UN("fsqrt", -2.0L));
  SHOW("x87.fabs", UN("fabs", -3.5L));
  SHOW("x87.fchs", UN("fchs", 3.5L));
  SHOW("x87.frndint", UN("frndint", 2.5L));
  SHOW("x87.frndint2", UN("frndint", -7.5000001L));
  SHOW("x87.fscale", BIN("fscale", 1.5L, 10.7L));
  SHOW("x87.fscaleneg", BIN("fscale", 1.5L, -16400.0L));
  SHOWM("x87.fprem", BIN("fprem", 1000.5L, 3.1L), 0x4700);
  SHOWM("x87.fprem1", BIN("fprem1", 1000.5L, 3.1L), 0x0400);
  SHOWM("x87.fprembig", BIN("fprem", 1e300L, 7.0L), 0x0400);
  SHOW("x87.fdivzero", BIN("fdiv %%st(1), %%st", 1.0L, 0.0L));
  SHOW("x87.fadd", BIN("fadd %%st(1), %%st", 1.0L, 0x1p-64L));
  SHOW("x87.fsub", BIN("fsub %%st(1), %%st", 1.0L, 0x1p-66L));
  SHOW("x87.fsubr", BIN("fsubr %%st(1), %%st", 1.0L, 0x1p-66L));
  SHOW("x87.fdivr", BIN("fdivr %%st(1), %%st", 3.0L, 1.0L));
  SHOW("x87.fmul", BIN("fmul %%st(1), %%st", 1.0L + 0x1p-63L, 1.0L + 0x1p-63L));
  {
    /* the status word right after the instruction (a store would set C1 again) */
#define C1(insn, y, x) ({ unsigned short w_; long double y_ = (y), x_ = (x); __asm__ volatile( \
    "fnclex; fldt %1; fldt %2; " insn "; fnstsw %0; fstp %%st(0); fstp %%st(0)" : "=m"(w_) : "m"(y_), "m"(x_)); \
    w_ >> 9 & 1; })
    out("x87.c1.hostref", "%d%d%d%d%d", C1("fsqrt", 0.0L, 2.0L), C1("frndint", 0.0L, 2.5L),
        C1("fdivr %%st(1), %%st", 1.0L, 3.0L), C1("fadd %%st(1), %%st", 0x1p-64L, 1.0L), C1("fsqrt", 0.0L, 3.0L));
  }
  long double c[7];
  __asm__ volatile("fldpi; fstpt %0; fldl2e; fstpt %1; fldl2t; fstpt %2; fldlg2; fstpt %3; fldln2; fstpt %4;"
                   "fld1; fstpt %5; fldz; fstpt %6"
                   : "=m"(c[0]), "=m"(c[1]), "=m"(c[2]), "=m"(c[3]), "=m"(c[4]), "=m"(c[5]), "=m"(c[6]));
  out("x87.consts", "%La %La %La %La %La %La %La", c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
  /* rounding control changes how the constants round, as on a real CPU */
  unsigned short cw0, cw;
  __asm__ volatile("fnstcw %0" : "=m"(cw0));
  cw = (cw0 & ~0xc00) | 0x400; /* down */
  __asm__ volatile("fldcw %1; fldpi; fstpt %0; fldcw %2" : "=m"(c[0]) : "m"(cw), "m"(cw0));
  cw = (cw0 & ~0x300); /* single precision */
  volatile double d3 = 3.0, d275 = -2.75;
  __asm__ volatile("fldcw %1; fld1; fdivl %3; fstpt %0; fldcw %2" : "=m"(c[1]) : "m"(cw), "m"(cw0), "m"(d3));
  cw = (cw0 & ~0xc00) | 0xc00; /* truncate */
  __asm__ volatile("fldcw %1; fldl %3; frndint; fstpt %0; fldcw %2" : "=m"(c[2]) : "m"(cw), "m"(cw0), "m"(d275));
  out("x87.rc", "pidown=%La single=%La trunc=%La cw=%04x", c[0], c[1], c[2], cw0);
  pldt("x87.fsin", UN("fsin", 1.0L));
  pldt("x87.fcos", UN("fcos", 1.0L));
  long double t1 = 0.5L, t2;
  __asm__ volatile("fptan; fstp %%st(0)" : "+t"(t1));
  pldt("x87.fptan", t1);
  t1 = 2.0L;
  __asm__ volatile("fsincos" : "+t"(t1), "=u"(t2));
  out("x87.fsincos", "%.12Lg %.12Lg", t1, t2);
  pldt("x87.fpatan", POP2("fpatan", 2.0L, 1.0L));
  pldt("x87.fyl2x", POP2("fyl2x", 3.0L, 10.0L));
  pldt("x87.fyl2xp1", POP2("fyl2xp1", 3.0L, 0.125L));
  pldt("x87.f2xm1", UN("f2xm1", 0.375L));
  long double sig = 96.0L, ex;
  __asm__ volatile("fxtract" : "+t"(sig), "=u"(ex));
  out("x87.fxtract", "%La %La", sig, ex);
  /* fxam: class of each kind of value (C3 C2 C0 and the sign in C1) */
  long double kinds[] = {0.0L, -0.0L, 1.0L, -INFINITY, NAN, 0x1p-16440L};
  char xam[128] = "";
  for (int i = 0; i < 6; i++) {
    unsigned short w;
    __asm__ volatile("fxam; fnstsw %0" : "=a"(w) : "t"(kinds[i]));
    snprintf(xam + strlen(xam), sizeof xam - strlen(xam), " %04x", w & 0x4700);
  }
  out("x87.fxam", "%s", xam);
  /* comparisons: fcomi/fucomi flags */
  unsigned long fl[4];
  long double l3 = 3.0L, l4 = 4.0L, ln = NAN;
  __asm__ volatile("fcomi %%st(1), %%st; pushf; pop %0" : "=r"(fl[0]) : "t"(l3), "u"(l4) : "cc");
  __asm__ volatile("fucomi %%st(1), %%st; pushf; pop %0" : "=r"(fl[1]) : "t"(l4), "u"(l3) : "cc");
  __asm__ volatile("fucomi %%st(1), %%st; pushf; pop %0" : "=r"(fl[2]) : "t"(l4), "u"(ln) : "cc");
  __asm__ volatile("fucomi %%st(1), %%st; pushf; pop %0" : "=r"(fl[3]) : "t"(l4), "u"(l4) : "cc");
  out("x87.fcomi", "%lx %lx %lx %lx", fl[0] & 0x45, fl[1] & 0x45, fl[2] & 0x45, fl[3] & 0x45);
  /* BCD */
  unsigned char bcd[10];
  long double bv = -123456789012345678.0L, back;
  __asm__ volatile("fbstp %0" : "=m"(bcd) : "t"(bv) : "st");
  __asm__ volatile("fbld %1" : "=t"(back) : "m"(bcd));
  out("x87.bcd", "%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x %La", bcd[9], bcd[8], bcd[7], bcd[6], bcd[5],
      bcd[4], bcd[3], bcd[2], bcd[1], bcd[0], back);
  /* integer stores: fistp of a value out of range gives the integer indefinite */
  short i16; int i32; long long i64;
  fclex();
  __asm__ volatile("fistps %0" : "=m"(i16) : "t"(70000.0L) : "st");
  __asm__ volatile("fistpl %0" : "=m"(i32) : "t"(-2.5L) : "st");
  __asm__ volatile("fistpll %0" : "=m"(i64) : "t"(1e19L) : "st");
  out("x87.fist", "%d %d %lld sw=%04x", i16, i32, i64, fstsw() & 0x3f);
  if (F.sse3) {
    __asm__ volatile("fisttpl %0" : "=m"(i32) : "t"(-2.9L) : "st");
    __asm__ volatile("fisttpll %0" : "=m"(i64) : "t"(123456789.99L) : "st");
    out("x87.fisttp", "%d %lld", i32, i64);
  }
  /* memory formats */
  float f32; double f64;
  __asm__ volatile("fsts %0; fstl %1" : "=m"(f32), "=m"(f64) : "t"(one / three));
  out("x87.fst", "%a %a", (double)f32, f64);
  /* the stack: tag word and TOP after pushes, fxch, ffree, fincstp */
  unsigned short env[14];
  __asm__ volatile("fld1; fldz; fldpi; fxch %%st(2); fnstenv %0; fldenv %0; fstp %%st(0); fstp %%st(0); fstp %%st(0)"
                   : "=m"(env));
  out("x87.env", "cw=%04x sw=%04x tag=%04x", env[0], env[2] & 0x3800, env[4]);
  fclex();
}

void t_fenv(void) {
  static const int modes[] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};
  static const char *names[] = {"nearest", "down", "up", "zero"};
  volatile double one = 1.0, three = 3.0, big = 1e308, small = 1e-308, zero = 0.0, m1 = -1.0;
  volatile long double lone = 1.0L, lthree = 3.0L;
  for (int i = 0; i < 4; i++) {
    char k[32];
    fesetround(modes[i]);
    snprintf(k, sizeof k, "fenv.round.%s", names[i]);
    out(k, "get=%d %a %a %La rint=%g,%g lrint=%ld,%ld nearbyint=%g llrintl=%lld", fegetround() == modes[i],
        one / three, -one / three, lone / lthree, rint(2.5), rint(-3.5), lrint(2.5), lrint(-2.5),
        nearbyint(0.5), llrintl(-1e10L / 3));
  }
  fesetround(FE_TONEAREST);
  struct { const char *k; int which; } ex[] = {{"fenv.except.divzero", 0}, {"fenv.except.invalid", 1},
    {"fenv.except.overflow", 2}, {"fenv.except.underflow", 3}, {"fenv.except.inexact", 4},
    {"fenv.except.ldivzero", 5}, {"fenv.except.linvalid", 6}, {"fenv.except.loverflow", 7}};
  for (int i = 0; i < 8; i++) {
    volatile double r = 0;
    volatile long double lr = 0;
    feclearexcept(FE_ALL_EXCEPT);
    switch (ex[i].which) {
      case 0: r = one / zero; break;
      case 1: r = sqrt(m1); break;
      case 2: r = big * big; break;
      case 3: r = small / 3e10; break;
      case 4: r = one / three; break;
      case 5: lr = lone / (long double)zero; break;
      case 6: lr = (long double)zero / (long double)zero; break;
      case 7: lr = (long double)big * 1e4000L * 1e4000L; break;
    }
    out(ex[i].k, "%a %La flags=%02x", r, lr, fetestexcept(FE_ALL_EXCEPT));
  }
  feclearexcept(FE_ALL_EXCEPT);
  feraiseexcept(FE_OVERFLOW | FE_INEXACT);
  fenv_t e;
  fegetenv(&e);
  unsigned short *w = (unsigned short *)&e;
#ifdef __x86_64__
  out("fenv.env", "cw=%04x sw=%04x mxcsr=%08x", w[0], w[2] & 0x383f, e.__mxcsr & ~2u);
#else
  out("fenv.env", "cw=%04x sw=%04x", w[0], w[2] & 0x383f);
#endif
  fenv_t saved;
  fegetenv(&saved);
  fesetround(FE_UPWARD);
  feclearexcept(FE_ALL_EXCEPT);
  fesetenv(&saved);
  out("fenv.restore", "round=%d flags=%02x", fegetround(), fetestexcept(FE_ALL_EXCEPT));
  feclearexcept(FE_ALL_EXCEPT);
}

static ucontext_t uc_main, uc_co;
static volatile long double co_acc;
static volatile double co_dacc;
static volatile int co_steps;

static void coroutine(int a, int b) {
  for (int i = 0; i < 5; i++) {
    co_acc = co_acc * 1.5L + (long double)a / b;
    co_dacc = co_dacc * 0.75 + sqrt((double)(a + i));
    co_steps++;
    swapcontext(&uc_co, &uc_main);
  }
}

void t_ucontext(void) {
  static char stack[64 * 1024];
  if (getcontext(&uc_co) != 0) { out("ucontext.get", "failed"); return; }
  uc_co.uc_stack.ss_sp = stack;
  uc_co.uc_stack.ss_size = sizeof stack;
  uc_co.uc_link = &uc_main;
  makecontext(&uc_co, (void (*)(void))coroutine, 2, 7, 3);
  long double mine = 1.0L;
  for (int i = 0; i < 5; i++) {
    mine = mine / 3 + 1;
    if (swapcontext(&uc_main, &uc_co) != 0) { out("ucontext.swap", "failed"); return; }
    out(i == 0 ? "ucontext.step0" : i == 4 ? "ucontext.step4" : "ucontext.stepmid", "%d %La %a %La", co_steps,
        co_acc, co_dacc, mine);
  }
  /* getcontext/setcontext keeps the rounding mode with the context */
  volatile int pass = 0;
  ucontext_t back;
  fesetround(FE_DOWNWARD);
  getcontext(&back);
  if (!pass) { pass = 1; fesetround(FE_UPWARD); setcontext(&back); }
  out("ucontext.fenv", "round=%x", fegetround());
  fesetround(FE_TONEAREST);
}
