/* simd.h - the harness of the SIMD sections: an operation reads three 16-byte inputs and writes
 * one 16-byte result; run() feeds it random inputs of a kind and prints the hash of every result
 * with the MXCSR exception flags the whole run raised. */
#ifndef SIMD_H
#define SIMD_H
#include "battery.h"
#include <immintrin.h>

typedef void (*simd_op)(const void *a, const void *b, const void *c, void *r);
enum kind { BYTES, TEXT, DOUBLES, FLOATS, INTS };
void run(const char *key, enum kind k, simd_op op);

#define LA __m128i a = _mm_loadu_si128((const __m128i *)pa), b = _mm_loadu_si128((const __m128i *)pb), \
           c = _mm_loadu_si128((const __m128i *)pc), r; (void)b; (void)c
#define ST _mm_storeu_si128((__m128i *)pr, r)
/* an integer operation on a, b (and c) giving r */
#define OPI(tgt, name, expr) static __attribute__((target(tgt))) void op_##name(const void *pa, const void *pb, \
    const void *pc, void *pr) { LA; r = (expr); ST; }
#define OPD(tgt, name, expr) static __attribute__((target(tgt))) void op_##name(const void *pa, const void *pb, \
    const void *pc, void *pr) { __m128d a = _mm_loadu_pd(pa), b = _mm_loadu_pd(pb), c = _mm_loadu_pd(pc), r; \
    (void)b; (void)c; r = (expr); _mm_storeu_pd(pr, r); }
#define OPS(tgt, name, expr) static __attribute__((target(tgt))) void op_##name(const void *pa, const void *pb, \
    const void *pc, void *pr) { __m128 a = _mm_loadu_ps(pa), b = _mm_loadu_ps(pb), c = _mm_loadu_ps(pc), r; \
    (void)b; (void)c; r = (expr); _mm_storeu_ps(pr, r); }
/* an operation with a free-form body */
#define OPX(tgt, name, ...) static __attribute__((target(tgt))) void op_##name(const void *pa, const void *pb, \
    const void *pc, void *pr) { (void)pa; (void)pb; (void)pc; __VA_ARGS__; }
#define RUN(sec, name, kind) run(sec "." #name, kind, op_##name)
#endif
