/* battery.h - shared helpers of the userland battery (see ../README.md). Every output line is
 * "key value...", keys unique, so that two runs compare line by line. */
#ifndef BATTERY_H
#define BATTERY_H
#include <stddef.h>
#include <stdint.h>

void out(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rnd_seed(const char *key);
uint64_t rnd(void);
double rnd_double(void);      /* a mix of ordinary values and specials (0, inf, NaN, denormals) */
float rnd_float(void);
#define FNV0 0xcbf29ce484222325ULL
uint64_t fnv(uint64_t h, const void *p, size_t n);

struct features {
  int fpu, mmx, sse, sse2, sse3, ssse3, sse41, sse42, popcnt, cx16, cx8, fxsr;
};
extern struct features F;

void t_x87(void);
void t_fenv(void);
void t_ucontext(void);
void t_libm(void);
void t_strtod(void);
void t_mmx(void);
void t_sse(void);
void t_sse2(void);
void t_sse3(void);
void t_ssse3(void);
void t_sse41(void);
void t_sse42(void);
void t_int(void);
void t_jmp(void);
void t_signals(void);
void t_fork(void);
void t_threads(void);
void t_mmap(void);
void t_string(void);
void t_qsort(void);
#endif
