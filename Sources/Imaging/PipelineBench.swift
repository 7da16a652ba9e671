import Dispatch
import Support
import Synchronization

/// Images per second through the training input pipeline (read the file, decode,
/// RandomResizedCrop, flip, float CHW), the loop `catlip bench pipeline` times: `threads` workers
/// take the files in turn, each with its own resampling workspace and output buffer.
public enum PipelineBench {
    /// What a run measured.
    public struct Result: Sendable, Equatable {
        /// Images that failed (unreadable, undecodable) in the last pass.
        public var errors: Int
        /// Images per second of each timed pass, in order.
        public var imagesPerSecond: [Double]
    }

    /// One warm-up pass over `files` (page cache, buffers), then `repeats` timed ones. Pass `p`
    /// draws image `i`'s augmentation from a generator seeded by (`seed`, `p`, `i`), so runs
    /// are repeatable on any number of threads.
    public static func run(files: [String], transform: TrainTransform, threads: Int, repeats: Int, seed: UInt64) -> Result {
        var errors = 0
        var rates: [Double] = []
        for pass in 0...repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            errors = self.pass(files: files, transform: transform, threads: threads, seed: seed, pass: pass)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if pass > 0 { rates.append(Double(files.count) / seconds) }
        }
        return Result(errors: errors, imagesPerSecond: rates)
    }

    /// One pass over `files` by `threads` workers; returns the number of failed images.
    static func pass(files: [String], transform: TrainTransform, threads: Int, seed: UInt64, pass: Int) -> Int {
        let next = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let workspace = ResampleWorkspace()
            var output = [Float](repeating: 0, count: transform.outputCount)
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if i >= files.count { break }
                var generator = SeededGenerator(
                    seed: seed &+ UInt64(pass) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i))
                do {
                    let bytes = try readFileBytes(files[i])
                    try output.withUnsafeMutableBufferPointer {
                        try transform.apply(
                            bytes, source: files[i], using: &generator, workspace: workspace,
                            into: $0)
                    }
                } catch {
                    failures.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        return failures.load(ordering: .relaxed)
    }
}
