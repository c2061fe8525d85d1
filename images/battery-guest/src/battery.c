/* battery.c - main: prints the CPUID features on one line, then runs every section in a child
 * process of its own, so that a section that dies is reported and the others still run. */
#include "battery.h"
#include <cpuid.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct features F;

void out(const char *key, const char *fmt, ...) {
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s ", key);
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  /* unbuffered: nothing is lost when a section dies, nothing is doubled by fork */
  if (write(1, buf, n) != n) _exit(3);
}

static uint64_t state;
void rnd_seed(const char *key) { state = fnv(FNV0, key, strlen(key)) | 1; }
uint64_t rnd(void) { /* xorshift64* */
  state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}
double rnd_double(void) {
  static const uint64_t special[] = {
    0, 0x8000000000000000ULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL, 0x7ff8000000000000ULL,
    0xfff8000000000001ULL, 0x7ff4000000000000ULL /* SNaN */, 1, 0x000fffffffffffffULL /* denormals */,
    0x0010000000000000ULL, 0x7fefffffffffffffULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
    0x4330000000000000ULL, 0x43e0000000000000ULL /* 2^63 */, 0xc3e0000000000000ULL, 0x41e0000000000000ULL};
  uint64_t r = rnd(), b;
  double d;
  if (r % 8 == 0) b = special[(r >> 8) % (sizeof special / sizeof special[0])];
  else if (r % 8 == 1) b = rnd(); /* any bit pattern */
  else { /* an ordinary number of moderate size */
    d = (double)(int64_t)(rnd() >> (r % 40)) / (double)((r >> 20) % 1000 + 1);
    if (r & (1ULL << 33)) d = -d;
    return d;
  }
  memcpy(&d, &b, 8);
  return d;
}
float rnd_float(void) {
  static const uint32_t special[] = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                     0x7fa00000u, 1, 0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x3f800000u,
                                     0x4b000000u, 0x4f000000u, 0xcf000000u};
  uint64_t r = rnd();
  uint32_t b;
  float f;
  if (r % 8 == 0) b = special[(r >> 8) % (sizeof special / sizeof special[0])];
  else if (r % 8 == 1) b = (uint32_t)rnd();
  else {
    f = (float)(int32_t)(rnd() >> (32 + r % 24)) / (float)((r >> 20) % 1000 + 1);
    return (r & (1ULL << 33)) ? -f : f;
  }
  memcpy(&f, &b, 4);
  return f;
}
uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  while (n--) { h ^= *c++; h *= 0x100000001b3ULL; }
  return h;
}

static void features(void) {
  unsigned a, b, c, d;
  char line[256] = "";
  if (!__get_cpuid(1, &a, &b, &c, &d)) { out("cpuid", "none"); return; }
  F.fpu = d & 1; F.cx8 = d >> 8 & 1; F.mmx = d >> 23 & 1; F.fxsr = d >> 24 & 1; F.sse = d >> 25 & 1;
  F.sse2 = d >> 26 & 1; F.sse3 = c & 1; F.ssse3 = c >> 9 & 1; F.cx16 = c >> 13 & 1;
  F.sse41 = c >> 19 & 1; F.sse42 = c >> 20 & 1; F.popcnt = c >> 23 & 1;
#define FEAT(x) if (F.x) strcat(line, " " #x)
  FEAT(fpu); FEAT(cx8); FEAT(mmx); FEAT(fxsr); FEAT(sse); FEAT(sse2); FEAT(sse3); FEAT(ssse3);
  FEAT(cx16); FEAT(sse41); FEAT(sse42); FEAT(popcnt);
  if (c >> 28 & 1) strcat(line, " avx");
  if (c >> 12 & 1) strcat(line, " fma");
  /* the CPU may change between runs: this line is the only one allowed to differ */
  out("cpuid", "features%s", line);
  /* BATTERY_ALL_FEATURES=1 runs every section whatever CPUID says (to try an extension that an
   * emulator implements but does not advertise yet); never set by the test */
  if (getenv("BATTERY_ALL_FEATURES")) {
    F.fpu = F.cx8 = F.mmx = F.fxsr = F.sse = F.sse2 = F.sse3 = F.ssse3 = F.cx16 = F.sse41 = F.sse42 = F.popcnt = 1;
  }
}

static const struct { const char *name; void (*run)(void); } sections[] = {
  {"x87", t_x87}, {"fenv", t_fenv}, {"ucontext", t_ucontext}, {"libm", t_libm}, {"strtod", t_strtod},
  {"mmx", t_mmx}, {"sse", t_sse}, {"sse2", t_sse2}, {"sse3", t_sse3}, {"ssse3", t_ssse3},
  {"sse41", t_sse41}, {"sse42", t_sse42}, {"int", t_int}, {"jmp", t_jmp}, {"signals", t_signals},
  {"fork", t_fork}, {"threads", t_threads}, {"mmap", t_mmap}, {"string", t_string}, {"qsort", t_qsort},
};

int main(int argc, char **argv) {
  features();
  for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
    int want = argc < 2;
    for (int j = 1; j < argc; j++) want |= !strcmp(argv[j], sections[i].name);
    if (!want) continue;
    pid_t p = fork();
    /* a section that runs away is ended by SIGALRM (the slowest takes a second or two on TCG) */
    if (p == 0) { alarm(60); sections[i].run(); _exit(0); }
    int st = 0;
    char key[64];
    snprintf(key, sizeof key, "%s.end", sections[i].name);
    if (p < 0 || waitpid(p, &st, 0) != p) out(key, "fork or wait failed");
    else if (WIFSIGNALED(st)) out(key, "died of signal %d", WTERMSIG(st));
    else out(key, "exit %d", WEXITSTATUS(st));
  }
  return 0;
}
