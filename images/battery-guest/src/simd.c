/* simd.c - the SIMD harness (simd.h). */
#include "simd.h"
#include <stdio.h>
#include <string.h>

static unsigned get_mxcsr(void) { unsigned m; __asm__ volatile("stmxcsr %0" : "=m"(m)); return m; }
static void set_mxcsr(unsigned m) { __asm__ volatile("ldmxcsr %0" : : "m"(m)); }

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

void run(const char *key, enum kind k, simd_op op) {
  unsigned char a[16], b[16], c[16], r[16];
  uint64_t h = FNV0;
  unsigned m0 = get_mxcsr(), m = 0;
  rnd_seed(key);
  for (int i = 0; i < 300; i++) {
    fill(k, a); fill(k, b); fill(BYTES, c);
    memset(r, 0x5a, 16);
    /* only the operation's own flags: the harness computes in SSE too */
    set_mxcsr(m0 & ~0x3fu);
    op(a, b, c, r);
    m |= get_mxcsr();
    h = fnv(h, r, 16);
  }
  set_mxcsr(m0);
  out(key, "%016llx mx=%02x", (unsigned long long)h, m & 0x3f);
}
