import COpenBLAS
import CViTSupport
import Dispatch
import Foundation
#if os(Linux)
import Synchronization
#endif

/// A raw pointer that may cross into worker threads. The kernels split their work into
/// disjoint ranges, so no two workers write the same float.
struct SendablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
    init(_ p: UnsafePointer<Float>) { self.p = UnsafeMutablePointer(mutating: p) }
}

/// How the engine uses the cores: its own workers (`threads`) split every kernel into disjoint
/// ranges. OpenBLAS is off the model's path (see `Gemm`) but is still kept single-threaded, so
/// that a caller using it never oversubscribes the cores.
public enum Parallelism {
    /// Worker count for the `.fast` backend (default: the active processor count, at most 64).
    /// Setting it also pins OpenBLAS to one thread.
    nonisolated(unsafe) public static var threads: Int = {
        openblas_set_num_threads(1)
        return min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 64)
    }()
    {
        didSet {
            threads = min(max(threads, 1), 64)
            openblas_set_num_threads(1)
        }
    }

    /// Calls `body(part, start, end)` on at most `threads` (and at most 64) disjoint, contiguous
    /// slices of 0..<count, part numbering them from 0; returns the number of parts. For
    /// reductions: each part writes its own slot of a caller-provided buffer.
    @discardableResult
    static func forParts(
        _ count: Int, costPerItem: Int = 1, _ body: (Int, Int, Int) -> Void
    ) -> Int {
        let n = min(threads, 64)
        if n <= 1 || count < 2 || count * costPerItem < 32_768 {
            body(0, 0, count)
            return 1
        }
        let parts = min(n, count)
        run(parts: parts) { i in body(i, count * i / parts, count * (i + 1) / parts) }
        return parts
    }

    /// Calls `body(i)` for every i in 0..<parts, in parallel: on the engine's persistent
    /// `WorkerPool` (the calling thread takes parts too), or, when the pool is already busy (a
    /// nested call, or another thread's), through `DispatchQueue.concurrentPerform`.
    static func run(parts: Int, _ body: (Int) -> Void) {
        if parts <= 0 { return }
        if parts == 1 {
            body(0)
            return
        }
        #if os(Linux)
        // (the pool sleeps on a futex; elsewhere, and on macOS before 15 where Synchronization's
        // Atomic is missing, the kernels keep concurrentPerform)
        if WorkerPool.shared.run(parts: parts, workers: threads - 1, body) { return }
        #endif
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: parts) { i in box.value(i) }
        }
    }

    /// Calls `body(start, end)` on `parts` disjoint, contiguous slices of 0..<count, in
    /// parallel when there is enough work (`count * costPerItem` above about 32k operations).
    @inline(__always)
    static func forRanges(
        _ count: Int, costPerItem: Int = 1, _ body: (Int, Int) -> Void
    ) {
        let n = threads
        if n <= 1 || count < 2 || count * costPerItem < 32_768 {
            body(0, count)
            return
        }
        let parts = min(n, count)
        run(parts: parts) { i in
            let start = count * i / parts
            let end = count * (i + 1) / parts
            if start < end { body(start, end) }
        }
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`; the closure only touches disjoint
/// slices of memory (see `Parallelism.forRanges`).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

#if os(Linux)
/// The engine's persistent worker threads (Linux): one dispatch per parallel section (about 200 per
/// training step) costs a few atomic operations instead of `concurrentPerform`'s thread
/// wake-ups. The calling thread takes parts itself; parked workers spin briefly on the dispatch
/// counter, then sleep on it (futex). Parts are claimed from one atomic word, so a worker that
/// wakes late finds its part already done by the caller instead of delaying it (the two vCPUs
/// here are time-shared). Nothing is allocated per dispatch.
final class WorkerPool: @unchecked Sendable {
    /// The pool the engine's kernels share.
    static let shared = WorkerPool()

    /// How long a worker spins for the next dispatch before sleeping (nanoseconds).
    static let spinNanoseconds: UInt64 = 50_000

    /// generation (high 32 bits) | parts (bits 16..<32) | next unclaimed part (low 16 bits)
    private let claim = Atomic<UInt64>(0)
    /// Parts the workers finished in the current dispatch.
    private let finished = Atomic<Int>(0)
    /// Set while one dispatch runs: a second one (nested, or from another thread) is refused.
    private let busy = Atomic<Bool>(false)
    /// Workers asleep on `signal`.
    private let sleepers = Atomic<Int>(0)
    /// Bumped by every dispatch; the futex word the workers sleep on.
    private let signal: UnsafeMutablePointer<UInt32>
    /// The current dispatch's body: written before `claim` publishes it, read only by a worker
    /// holding an unfinished part of it (so the caller is still waiting).
    nonisolated(unsafe) private var job: ((Int) -> Void)?
    /// Workers started so far (only grows; changed under `busy`).
    nonisolated(unsafe) private var workerCount = 0
    nonisolated(unsafe) private var generation: UInt64 = 0

    private init() {
        signal = .allocate(capacity: 1)
        signal.initialize(to: 0)
    }

    /// Runs body(0..<parts) on the calling thread and up to `workers` pool threads; returns
    /// false, having run nothing, when the pool is busy or `parts` is out of range.
    func run(parts: Int, workers: Int, _ body: (Int) -> Void) -> Bool {
        if parts < 2 || parts > 0xFFFF { return false }
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else { return false }
        while workerCount < min(workers, 63) { startWorker() }
        withoutActuallyEscaping(body) { body in
            job = body
            finished.store(0, ordering: .relaxed)
            generation &+= 1
            claim.store(
                (generation & 0xFFFF_FFFF) << 32 | UInt64(parts) << 16,
                ordering: .sequentiallyConsistent)
            _ = catlip_fetch_add32(signal, 1)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                catlip_futex_wake_all(signal)
            }
            var mine = 0
            while let i = claimPart() {
                body(i)
                mine += 1
            }
            // the workers' parts: spin briefly, then yield the processor to them
            var spins = 0
            while finished.load(ordering: .acquiring) != parts - mine {
                if spins < 4096 {
                    catlip_cpu_relax()
                    spins += 1
                } else {
                    catlip_yield()
                }
            }
            job = nil
        }
        busy.store(false, ordering: .releasing)
        return true
    }

    /// The next unclaimed part of the current dispatch, or nil.
    @inline(__always)
    private func claimPart() -> Int? {
        var word = claim.load(ordering: .acquiring)
        while true {
            let next = Int(word & 0xFFFF)
            let parts = Int((word >> 16) & 0xFFFF)
            if next >= parts { return nil }
            let (exchanged, original) = claim.compareExchange(
                expected: word, desired: word + 1, ordering: .acquiringAndReleasing)
            if exchanged { return next }
            word = original
        }
    }

    private func startWorker() {
        workerCount += 1
        let thread = Thread { [self] in workerLoop() }
        thread.name = "catlip-worker-\(workerCount)"
        thread.start()
    }

    private func workerLoop() {
        var seen = catlip_load_acquire32(signal)
        while true {
            while let i = claimPart() {
                // the caller waits for this part, so `job` is this dispatch's
                job.unsafelyUnwrapped(i)
                finished.add(1, ordering: .releasing)
            }
            // wait for the next dispatch: spin, then sleep
            let start = DispatchTime.now().uptimeNanoseconds
            var spins = 0
            while catlip_load_acquire32(signal) == seen {
                catlip_cpu_relax()
                spins += 1
                if spins & 255 == 0
                    && DispatchTime.now().uptimeNanoseconds - start > Self.spinNanoseconds
                {
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    if catlip_load_seq_cst32(signal) == seen { catlip_futex_wait(signal, seen) }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                }
            }
            seen = catlip_load_acquire32(signal)
        }
    }
}
#endif
