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

// bf16 products (AVX512_BF16: VDPBF16PS multiplies pairs of bf16 values and adds both products
// to a float lane, twice the float FMA rate on Zen 4). Compiled for that extension whatever the
// build's target and used only when `catlip_bf16_supported()` says the processor has it.
// Conversions round to nearest even.

int catlip_vector_fma_supported(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

int catlip_bf16_supported(void) {
#if defined(__x86_64__)
    static int supported = -1;
    if (supported < 0) {
        supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16")
            ? 1 : 0;
    }
    return supported;
#else
    return 0;
#endif
}

#if defined(__x86_64__)
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// n floats to bf16, zero-padded to `padded` values.
BF16_TARGET static void bf16_convert(uint16_t *dst, const float *src, long n, long padded) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)h);
    }
    for (i = n; i < padded; i++) dst[i] = 0;
}

// acc (R rows of 32 floats) = A (R rows of kp bf16 pairs, row stride lda pairs) times one
// packed panel (kp pairs of 32 lanes).
static inline __attribute__((always_inline)) BF16_TARGET void bf16_tile(
    const int R, float *acc, const uint32_t *a, long lda, const uint16_t *panel, long kp) {
    __m512 c0[14], c1[14];
#pragma unroll
    for (int r = 0; r < R; r++) {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
    }
    for (long p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(panel + 64 * p));
        __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(panel + 64 * p + 32));
#pragma unroll
        for (int r = 0; r < R; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * lda + p]);
            c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
            c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(acc + 32 * r, c0[r]);
        _mm512_storeu_ps(acc + 32 * r + 16, c1[r]);
    }
}

BF16_TARGET static void bf16_tile_rows(
    long rows, float *acc, const uint32_t *a, long lda, const uint16_t *panel, long kp) {
    switch (rows) {
    case 14: bf16_tile(14, acc, a, lda, panel, kp); break;
    case 13: bf16_tile(13, acc, a, lda, panel, kp); break;
    case 12: bf16_tile(12, acc, a, lda, panel, kp); break;
    case 11: bf16_tile(11, acc, a, lda, panel, kp); break;
    case 10: bf16_tile(10, acc, a, lda, panel, kp); break;
    case 9: bf16_tile(9, acc, a, lda, panel, kp); break;
    case 8: bf16_tile(8, acc, a, lda, panel, kp); break;
    case 7: bf16_tile(7, acc, a, lda, panel, kp); break;
    case 6: bf16_tile(6, acc, a, lda, panel, kp); break;
    case 5: bf16_tile(5, acc, a, lda, panel, kp); break;
    case 4: bf16_tile(4, acc, a, lda, panel, kp); break;
    case 3: bf16_tile(3, acc, a, lda, panel, kp); break;
    case 2: bf16_tile(2, acc, a, lda, panel, kp); break;
    default: bf16_tile(1, acc, a, lda, panel, kp); break;
    }
}
#endif

void catlip_bf16_pack_transposed(void *dst, const float *b, long ldb, long k, long n) {
#if defined(__x86_64__)
    if (!catlip_bf16_supported()) return;
    long kp = (k + 1) / 2, panels = (n + 31) / 32;
    uint32_t *out = (uint32_t *)dst;
    uint16_t row[2 * kp + 16];
    for (long j = 0; j < 32 * panels; j++) {
        uint32_t *lane = out + (j / 32) * kp * 32 + (j % 32);
        if (j < n) {
            bf16_convert(row, b + j * ldb, k, 2 * kp);
            for (long p = 0; p < kp; p++) lane[32 * p] = (uint32_t)row[2 * p] | ((uint32_t)row[2 * p + 1] << 16);
        } else {
            for (long p = 0; p < kp; p++) lane[32 * p] = 0;
        }
    }
#else
    (void)dst; (void)b; (void)ldb; (void)k; (void)n;
#endif
}

#if defined(__x86_64__)
// Pairs of rows (r0, r1) of 16 floats into 16 32-bit lanes (bf16(r0[j]) low, bf16(r1[j]) high).
BF16_TARGET static inline void bf16_pair_rows(uint16_t *dst, __m512 r0, __m512 r1) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    __m512 a = _mm512_permutex2var_ps(r0, lo, r1), b = _mm512_permutex2var_ps(r0, hi, r1);
    _mm512_storeu_si512((void *)dst, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

BF16_TARGET static void bf16_pack(uint16_t *dst, const float *b, long ldb, long k, long n) {
    long kp = (k + 1) / 2, panels = (n + 31) / 32;
    for (long q = 0; q < panels; q++) {
        long j0 = 32 * q, w = n - j0 < 32 ? n - j0 : 32;
        uint16_t *panel = dst + q * kp * 64;
        for (long p = 0; p < kp; p++) {
            const float *r0 = b + 2 * p * ldb + j0;
            const float *r1 = r0 + ldb;
            int second = 2 * p + 1 < k;
            for (long h = 0; h < 32; h += 16) {
                long c = w - h < 0 ? 0 : (w - h > 16 ? 16 : w - h);
                __mmask16 m = (__mmask16)((1u << c) - 1);
                __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + h);
                __m512 x1 = second ? _mm512_maskz_loadu_ps(m, r1 + h) : _mm512_setzero_ps();
                bf16_pair_rows(panel + 64 * p + 2 * h, x0, x1);
            }
        }
    }
}
#endif

void catlip_bf16_pack(void *dst, const float *b, long ldb, long k, long n) {
#if defined(__x86_64__)
    if (!catlip_bf16_supported()) return;
    bf16_pack((uint16_t *)dst, b, ldb, k, n);
#else
    (void)dst; (void)b; (void)ldb; (void)k; (void)n;
#endif
}

void catlip_bf16_convert_rows(void *dst, const float *a, long lda, long rows, long k) {
#if defined(__x86_64__)
    if (!catlip_bf16_supported()) return;
    long padded = (k + 1) / 2 * 2;
    for (long r = 0; r < rows; r++) bf16_convert((uint16_t *)dst + r * padded, a + r * lda, k, padded);
#else
    (void)dst; (void)a; (void)lda; (void)rows; (void)k;
#endif
}

void catlip_bf16_tile(float *acc, const void *a, long rows, const void *panel, long kp) {
#if defined(__x86_64__)
    if (!catlip_bf16_supported() || rows < 1 || rows > 14) return;
    bf16_tile_rows(rows, acc, (const uint32_t *)a, kp, (const uint16_t *)panel, kp);
#else
    (void)acc; (void)a; (void)rows; (void)panel; (void)kp;
#endif
}
