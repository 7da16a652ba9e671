// Small helpers for the ViT engine that Swift has no spelling for: a spin-wait hint, software
// prefetches, a futex-based sleep/wake on a 32-bit word (with the atomic accesses to that
// word), used by the engine's worker pool (Parallel.swift) and GEMM (Gemm.swift), and the
// GEMM's transposing panel packer and the bf16 product kernels (x86 intrinsics, in shim.c).
#ifndef CVITSUPPORT_H
#define CVITSUPPORT_H

#include <stdint.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <sched.h>

/// A hint that the caller is spinning (x86 `pause`); nothing elsewhere.
static inline __attribute__((always_inline)) void catlip_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Gives up the processor to another runnable thread.
static inline void catlip_yield(void) { sched_yield(); }

/// Prefetches the cache line at p for reading, into all levels.
static inline __attribute__((always_inline)) void catlip_prefetch_read(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

/// Prefetches the cache line at p for writing (exclusive), into all levels.
static inline __attribute__((always_inline)) void catlip_prefetch_write(const void *p) {
    __builtin_prefetch(p, 1, 3);
}

/// Atomic load (acquire) of a 32-bit word.
static inline __attribute__((always_inline)) uint32_t catlip_load_acquire32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/// Atomic load (sequentially consistent) of a 32-bit word.
static inline __attribute__((always_inline)) uint32_t catlip_load_seq_cst32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/// Atomic add (sequentially consistent) to a 32-bit word; returns the old value.
static inline __attribute__((always_inline)) uint32_t catlip_fetch_add32(uint32_t *p, uint32_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

/// Sleeps while *p == expected (returns at once if it differs; may return spuriously).
static inline void catlip_futex_wait(uint32_t *p, uint32_t expected) {
#if defined(__linux__)
    syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, expected, (void *)0, (void *)0, 0);
#else
    (void)p;
    (void)expected;
    sched_yield();
#endif
}

/// Wakes every thread sleeping in `catlip_futex_wait` on p.
static inline void catlip_futex_wake_all(uint32_t *p) {
#if defined(__linux__)
    syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, 0x7fffffff, (void *)0, (void *)0, 0);
#else
    (void)p;
#endif
}

/// Packs w <= pw columns of op(B) = B^T into a GEMM panel of width pw: for p in 0..<kb,
/// dst[p·pw + j] = b[j·ldb + p] for j < w and 0 for w <= j < pw (shim.c; AVX2 8 x 8
/// transposes where the processor has them).
void catlip_pack_transposed(float *dst, const float *b, long ldb, long kb, long w, long pw);

/// Whether the processor runs vector FMA code: AVX2 and FMA on x86_64, always on arm64 (NEON).
/// One of the two conditions under which the engine uses its own SIMD micro-kernels.
int catlip_vector_fma_supported(void);

/// Whether the processor has AVX512_BF16 (and the AVX-512 subsets it needs): the bf16
/// functions below do nothing without it.
int catlip_bf16_supported(void);

/// Packs op(B) = B^T (k, n), B (n, k) with row stride ldb, as bf16 for `catlip_bf16_tile`:
/// panels of 32 columns, panel q at q·kp·64 bf16 values (kp = (k + 1) / 2 pairs); in a panel,
/// pair p holds for each of its 32 columns j the 32-bit pair (bf16(B[j][2p]) low,
/// bf16(B[j][2p + 1]) high), zero past k and past n. Rounds to nearest even.
void catlip_bf16_pack_transposed(void *dst, const float *b, long ldb, long k, long n);

/// Packs op(B) = B (k, n) with row stride ldb the same way as `catlip_bf16_pack_transposed`
/// (pair p of column j: bf16(B[2p][j]) low, bf16(B[2p + 1][j]) high; zero past k and n).
void catlip_bf16_pack(void *dst, const float *b, long ldb, long k, long n);

/// Converts `rows` rows of k floats (row stride lda) to bf16, each row zero-padded to an even
/// count: row r at dst + r·2·kp bf16 values (kp = (k + 1) / 2). Rounds to nearest even.
void catlip_bf16_convert_rows(void *dst, const float *a, long lda, long rows, long k);

/// acc (rows × 32 floats, row r at acc + 32·r) = A · panel for A the rows (1 ≤ rows ≤ 14) that
/// `catlip_bf16_convert_rows` wrote with this kp and one panel of
/// `catlip_bf16_pack_transposed`: float sums of bf16 products (VDPBF16PS).
void catlip_bf16_tile(float *acc, const void *a, long rows, const void *panel, long kp);

#endif
