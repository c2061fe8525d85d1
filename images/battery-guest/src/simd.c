/* simd.c - the SIMD harness (simd.h). */
#include "simd.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned get_mxcsr(void) { unsigned m; __asm__ volatile("stmxcsr %0" : "=m"(m) : : "memory"); return m; }
static void set_mxcsr(unsigned m) { __asm__ volatile("ldmxcsr %0" : : "m"(m) : "memory"); }

static void fill(enum kind k, unsigned char *p) {
  switch (k) {
    case BYTES: for (int i = 0; i < 16; i += 8) { uint64_t r = rnd(); memcpy(p + i, &r, 8); } break;
    case TEXT: /* a small alphabet with some NULs, so that string compares find things */
      for (int i = 0; i < 16; i++) { uint64_t r = rnd(); p[i] = r % 23 == 0 ? 0 : "abcdAB"[r % 6]; } break;
    case DOUBLES: for (int i = 0; i < 16; i += 8) { double d = rnd_double(); memcpy(p + i, &d, 8); } break;
    case FLOATS: for (int i = 0; i < 16; i += 4) { float f = rnd_float(); memcpy(p + i, &f, 4); } break;
    case INTS: /* small and edge integers */
      for (int i = 0; i < 16; i += 4) {
        static const int32_t e[] = {0, 1, -1, 0x7fffffff, (int32_t)0x80000000, 0x7fff, -0x8000, 255, 3};
        uint64_t r = rnd();
        int32_t v = r % 3 ? (int32_t)(r >> 32) >> (r % 31) : e[(r >> 8) % 9];
        memcpy(p + i, &v, 4);
      }
      break;
  }
}

/* QEMU 7.2 TCG picks between two NaN operands by the x87 rule (larger significand), real CPUs
 * take the first operand's: inputs keep at most one NaN so that TCG can be the reference */
static void one_nan(enum kind k, unsigned char *a, unsigned char *b) {
  int seen = 0;
  for (int v = 0; v < 2; v++) {
    unsigned char *p = v ? b : a;
    if (k == DOUBLES)
      for (int i = 0; i < 16; i += 8) {
        double d; memcpy(&d, p + i, 8);
        if (d != d && seen++) { d = 1.5; memcpy(p + i, &d, 8); }
      }
    if (k == FLOATS)
      for (int i = 0; i < 16; i += 4) {
        float f; memcpy(&f, p + i, 4);
        if (f != f && seen++) { f = 1.5f; memcpy(p + i, &f, 4); }
      }
  }
}

void run(const char *key, enum kind k, simd_op op) {
  unsigned char a[16], b[16], c[16], r[16];
  uint64_t h = FNV0;
  unsigned m0 = get_mxcsr(), m = 0;
  const char *dump = getenv("BATTERY_DUMP");
  rnd_seed(key);
  for (int i = 0; i < 300; i++) {
    fill(k, a); fill(k, b); fill(BYTES, c);
    one_nan(k, a, b);
    memset(r, 0x5a, 16);
    /* only the operation's own flags: the harness computes in SSE too */
    set_mxcsr(m0 & ~0x3fu);
    op(a, b, c, r);
    m |= get_mxcsr();
    h = fnv(h, r, 16);
    if (dump && !strcmp(dump, key)) { /* BATTERY_DUMP=key: every operation, to find a difference */
      const uint32_t *x = (const void *)a, *y = (const void *)b, *z = (const void *)r;
      out("dump", "%08x%08x%08x%08x %08x%08x%08x%08x -> %08x%08x%08x%08x", x[3], x[2], x[1], x[0], y[3], y[2], y[1],
          y[0], z[3], z[2], z[1], z[0]);
    }
  }
  set_mxcsr(m0);
  /* without DE (denormal operand): QEMU 7.2 TCG never sets it; see sse2.denormal_flag.hostref */
  out(key, "%016llx mx=%02x", (unsigned long long)h, m & 0x3d);
}
