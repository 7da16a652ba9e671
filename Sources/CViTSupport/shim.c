// Most of CViTSupport is inline in its header; this file holds what needs x86 intrinsics.
#include "CViTSupport.h"

#if defined(__x86_64__)
#include <immintrin.h>

// 8 x 8 blocks transposed in AVX registers (unpack, shuffle, 128-bit permute), compiled for
// AVX2 whatever the build's target, and chosen at run time: a debug build takes the same route
// as a release one on this machine, so the tests cover it.
__attribute__((target("avx2"))) static void pack_transposed_avx2(
    float *dst, const float *b, long ldb, long kb, long w, long pw) {
    long j = 0;
    for (; j + 8 <= w; j += 8) {
        const float *s = b + j * ldb;
        long p = 0;
        for (; p + 8 <= kb; p += 8) {
            __m256 r0 = _mm256_loadu_ps(s + p), r1 = _mm256_loadu_ps(s + ldb + p);
            __m256 r2 = _mm256_loadu_ps(s + 2 * ldb + p), r3 = _mm256_loadu_ps(s + 3 * ldb + p);
            __m256 r4 = _mm256_loadu_ps(s + 4 * ldb + p), r5 = _mm256_loadu_ps(s + 5 * ldb + p);
            __m256 r6 = _mm256_loadu_ps(s + 6 * ldb + p), r7 = _mm256_loadu_ps(s + 7 * ldb + p);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + p * pw + j;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + pw, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * pw, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * pw, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * pw, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * pw, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * pw, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * pw, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; p < kb; p++) {
            for (long jj = 0; jj < 8; jj++) dst[p * pw + j + jj] = s[jj * ldb + p];
        }
    }
    for (; j < w; j++) {
        for (long p = 0; p < kb; p++) dst[p * pw + j] = b[j * ldb + p];
    }
    for (; j < pw; j++) {
        for (long p = 0; p < kb; p++) dst[p * pw + j] = 0;
    }
}
#endif

static void pack_transposed_scalar(
    float *dst, const float *b, long ldb, long kb, long w, long pw) {
    for (long p = 0; p < kb; p++) {
        for (long j = 0; j < pw; j++) dst[p * pw + j] = j < w ? b[j * ldb + p] : 0;
    }
}

void catlip_pack_transposed(float *dst, const float *b, long ldb, long kb, long w, long pw) {
#if defined(__x86_64__)
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    if (avx2) {
        pack_transposed_avx2(dst, b, ldb, kb, w, pw);
        return;
    }
#endif
    pack_transposed_scalar(dst, b, ldb, kb, w, pw);
}
