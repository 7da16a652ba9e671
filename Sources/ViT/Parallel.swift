import COpenBLAS
import Dispatch
import Foundation

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
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: parts) { i in
                box.value(i, count * i / parts, count * (i + 1) / parts)
            }
        }
        return parts
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
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: parts) { i in
                let start = count * i / parts
                let end = count * (i + 1) / parts
                if start < end { box.value(start, end) }
            }
        }
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`; the closure only touches disjoint
/// slices of memory (see `Parallelism.forRanges`).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
