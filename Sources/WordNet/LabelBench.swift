import Dispatch

/// Captions per second through clean-up, tokenising and labelling, the loop `catlip bench
/// labels` times.
public enum LabelBench {
    /// What a run measured.
    public struct Result: Sendable, Equatable {
        /// Captions per second of each timed pass, in order.
        public var captionsPerSecond: [Double]
        /// Captions that got at least one synset.
        public var captionsWithLabels: Int
        /// Synsets over all captions.
        public var labels: Int
    }

    /// `repeats` timed passes over `captions` on `threads` threads. Each pass makes fresh
    /// labellers, so their token memo starts empty as in a real run.
    public static func run(captions: [String], database: WordNetDatabase, mode: LabelMode, threads: Int, repeats: Int) -> Result {
        var result = Result(captionsPerSecond: [], captionsWithLabels: 0, labels: 0)
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            let counts = parallelMap(
                count: captions.count, threads: threads,
                makeState: {
                    Labeller(database: database, mode: mode)
                }
            ) { labeller, i in labeller.synsets(captions[i]).count }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            result.captionsPerSecond.append(Double(captions.count) / seconds)
            result.captionsWithLabels = counts.filter { $0 > 0 }.count
            result.labels = counts.reduce(0, +)
        }
        return result
    }
}
