// Small helpers for the ViT engine that Swift has no spelling for: a spin-wait hint, software
// prefetches, a futex-based sleep/wake on a 32-bit word (with the atomic accesses to that
// word), used by the engine's worker pool (Parallel.swift) and GEMM (Gemm.swift), and the
// GEMM's transposing panel packer (x86 intrinsics, in shim.c).
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

#endif
