/* libm.c - libm on doubles and long doubles, strtod/printf round trips, qsort of doubles. */
#include "battery.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double in[] = {0.5, 1.0, 2.5, 10.0, 100.0, 1e-5, -3.7, 1e10, 0x1p-1030, 710.0};
#define N (sizeof in / sizeof in[0])

static double f_pow(double x) { return pow(fabs(x), 1.5); }
static double f_atan2(double x) { return atan2(x, 0.7); }
static double f_sqrt(double x) { return sqrt(fabs(x)); }
static double f_log(double x) { return log(fabs(x)); }
static long double l_pow(long double x) { return powl(fabsl(x), 1.5L); }
static long double l_atan2(long double x) { return atan2l(x, 0.7L); }
static long double l_sqrt(long double x) { return sqrtl(fabsl(x)); }
static long double l_log(long double x) { return logl(fabsl(x)); }

void t_libm(void) {
  static const struct { const char *k; double (*f)(double); } fd[] = {
    {"libm.sin", sin}, {"libm.cos", cos}, {"libm.tan", tan}, {"libm.exp", exp}, {"libm.log", f_log},
    {"libm.pow", f_pow}, {"libm.atan2", f_atan2}, {"libm.sqrt", f_sqrt}, {"libm.cbrt", cbrt},
    {"libm.expm1", expm1}, {"libm.atan", atan}, {"libm.sinh", sinh}};
  for (size_t i = 0; i < sizeof fd / sizeof fd[0]; i++) {
    char line[900] = "";
    for (size_t j = 0; j < N; j++)
      snprintf(line + strlen(line), sizeof line - strlen(line), " %a", fd[i].f(in[j]));
    out(fd[i].k, "%s", line + 1);
  }
  static const struct { const char *k; long double (*f)(long double); } fl[] = {
    {"libm.sinl", sinl}, {"libm.cosl", cosl}, {"libm.expl", expl}, {"libm.logl", l_log},
    {"libm.powl", l_pow}, {"libm.atan2l", l_atan2}, {"libm.sqrtl", l_sqrt}, {"libm.tanl", tanl}};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
    char line[900] = "";
    for (size_t j = 0; j < N; j++)
      snprintf(line + strlen(line), sizeof line - strlen(line), " %.17Lg", fl[i].f(in[j]));
    out(fl[i].k, "%s", line + 1);
  }
  out("libm.misc", "%a %a %a %a %a %d", fmod(1e300, 3.3), remainder(10.5, 3), ldexp(0.75, -1070), frexp(1e-310, &(int){0}),
      hypot(3e200, 4e200), ilogb(1e-320));
  out("libm.miscl", "%La %La %La", fmodl(1e4000L, 3.3L), remainderl(10.5L, 3), ldexpl(0.75L, -16440));
  out("libm.round", "%g %g %g %g %ld %g %g", round(-2.5), trunc(-2.7), floor(-0.5), ceil(-0.5), lround(2.5),
      nearbyint(3.5), roundeven(2.5));
}

void t_strtod(void) {
  static const double sp[] = {0.1, 1e23, 5e-324, DBL_MAX, 1.0 / 3, -0.0, 123456789012345678.0, 2.5e-308, 1e22,
                              9007199254740993.0};
  for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
    char k[32];
    snprintf(k, sizeof k, "strtod.print%zu", i);
    out(k, "%e %g %a %.20g %.3f", sp[i], sp[i], sp[i], sp[i], sp[i]);
  }
  out("strtod.specials", "%e %g %f %a", INFINITY, -INFINITY, NAN, -NAN);
  static const char *txt[] = {"0.1", "1e-400", "1e400", "0x1.fffffffffffffp1023", "2.2250738585072011e-308",
                              "4.9406564584124654e-324", "123.456e-7", "-0x1p-1074", "nan", "-inf",
                              "1.00000000000000011102230246251565404236316680908203125"};
  char line[900] = "";
  for (size_t i = 0; i < sizeof txt / sizeof txt[0]; i++)
    snprintf(line + strlen(line), sizeof line - strlen(line), " %a", strtod(txt[i], NULL));
  out("strtod.parse", "%s", line + 1);
  /* round trips of random doubles through %.17g, %e, %a and back */
  rnd_seed("strtod");
  uint64_t h = FNV0;
  int bad = 0, n = 0;
  for (int i = 0; i < 3000; i++) {
    uint64_t b = rnd();
    double d, e;
    memcpy(&d, &b, 8);
    if (!isfinite(d)) continue;
    char s[64];
    n++;
    snprintf(s, sizeof s, "%.17g", d);
    h = fnv(h, s, strlen(s));
    e = strtod(s, NULL);
    bad += memcmp(&d, &e, 8) != 0;
    snprintf(s, sizeof s, "%a", d);
    e = strtod(s, NULL);
    bad += memcmp(&d, &e, 8) != 0;
    snprintf(s, sizeof s, "%.6e %g", d, d);
    h = fnv(h, s, strlen(s));
  }
  out("strtod.roundtrip", "n=%d bad=%d hash=%016llx", n, bad, (unsigned long long)h);
  h = FNV0;
  bad = 0;
  for (int i = 0; i < 1000; i++) {
    long double d = (long double)(int64_t)rnd() / (long double)(rnd() >> (i % 60) | 1) * 1e-3L, e;
    char s[80];
    snprintf(s, sizeof s, "%.21Lg", d);
    h = fnv(h, s, strlen(s));
    e = strtold(s, NULL);
    bad += d != e;
  }
  out("strtod.roundtripl", "bad=%d hash=%016llx", bad, (unsigned long long)h);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void t_qsort(void) {
  enum { M = 20000 };
  static double v[M];
  rnd_seed("qsort");
  for (int i = 0; i < M; i++) v[i] = (double)(int64_t)rnd() / (double)(rnd() % 100000 + 3);
  qsort(v, M, sizeof v[0], cmp);
  int sorted = 1;
  for (int i = 1; i < M; i++) sorted &= v[i - 1] <= v[i];
  out("qsort.doubles", "sorted=%d hash=%016llx first=%a median=%a last=%a", sorted,
      (unsigned long long)fnv(FNV0, v, sizeof v), v[0], v[M / 2], v[M - 1]);
}
