// The machine's multiply-add peak per core, float FMA against bf16 pair dot products
// (BENCHMARKS.md, Machine): 12 independent accumulator chains of 512-bit VFMADD231PS and of
// VDPBF16PS (AVX512_BF16: two bf16 products added to each float lane), 100 M iterations each.
// Run by hand, one core:
//
//   cc -O2 -mavx512f -mavx512bf16 Benchmarks/peak/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const long n = 100000000;
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = a;  // pairs of bf16 1.0
    double t = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
        __asm__ volatile("" : "+v"(a));
    }
    double d = now() - t;
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(acc[i]);
    printf("bf16 VDPBF16PS: %.1f GFLOP/s (checksum %g)\n", n * 12.0 * 64 / d / 1e9, s);

    __m512 f[12], x = _mm512_set1_ps(1e-9f);
    for (int i = 0; i < 12; i++) f[i] = _mm512_setzero_ps();
    t = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) f[j] = _mm512_fmadd_ps(x, x, f[j]);
        __asm__ volatile("" : "+v"(x));
    }
    d = now() - t;
    s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(f[i]);
    printf("float VFMADD231PS: %.1f GFLOP/s (checksum %g)\n", n * 12.0 * 32 / d / 1e9, s);
    return 0;
}
