import Distributed
import Foundation

/// What one optimiser step adds up to on a rank, and the rank's votes: summed over the ranks in
/// one collective (a vector of doubles in a fixed order), so that every rank takes the same
/// decisions from the same totals.
struct StepTotals: Equatable {
    /// Sum over the step's images of the per-image loss.
    var lossSum: Double
    /// Images in the step.
    var images: Int
    /// Ranks that were asked to stop (SIGINT/SIGTERM).
    var stopVotes: Int
    /// Ranks whose checkpoint clock ran out (rank 0 alone keeps it).
    var checkpointVotes: Int
    /// Samples the loaders skipped during the step.
    var skipped: Int

    /// The totals over every rank (this rank's alone in a single-process run).
    func summed(over reducer: any GradientReducer) throws -> StepTotals {
        guard reducer.worldSize > 1 else { return self }
        var v = [lossSum, Double(images), Double(stopVotes), Double(checkpointVotes), Double(skipped)]
        try reducer.sum(&v)
        return StepTotals(lossSum: v[0], images: Int(v[1]), stopVotes: Int(v[2]), checkpointVotes: Int(v[3]), skipped: Int(v[4]))
    }
}

/// One optimiser step, as the loop logs and decides on it.
struct StepResult {
    /// The step's totals over every rank (and the votes).
    var totals: StepTotals
    /// Mean loss per image.
    var loss: Double
    /// Global gradient norm before clipping.
    var gradNorm: Double
    /// The learning rate the step used.
    var lr: Double
    /// Seconds this rank waited for its loader.
    var dataWait: Double
}

/// Throughput and waits of the current logging interval.
struct IntervalMeter {
    /// Images trained on in the interval (all ranks).
    var images = 0
    /// Seconds waited for the loader.
    var dataWait = 0.0
    /// Seconds blocked waiting for the ranks' sums.
    var commWait = 0.0
    /// When the interval started (monotonic seconds).
    var start: Double

    /// An interval starting at `start`.
    init(start: Double) { self.start = start }

    /// Images per second and the fraction of time spent waiting for data, at `now`.
    func rates(now: Double) -> (imagesPerSecond: Double, dataWait: Double, commWait: Double, elapsed: Double) {
        let elapsed = now - start
        guard elapsed > 0 else { return (0, 0, 0, elapsed) }
        return (Double(images) / elapsed, dataWait / elapsed, commWait / elapsed, elapsed)
    }
}

/// When checkpoints are written: every `everySteps` steps, when `minutes` passed since the last
/// one (rank 0's clock, voted to the others), when a stop was requested, and at the end.
struct CheckpointPolicy {
    /// Steps between checkpoints (0: none by step count).
    let everySteps: Int
    /// Minutes between checkpoints (0: none by time).
    let minutes: Double
    /// When the last checkpoint was written (monotonic seconds).
    var last: Double

    /// Whether the clock asks for a checkpoint at `now`.
    func dueByTime(now: Double) -> Bool { minutes > 0 && now - last >= minutes * 60 }

    /// Whether a checkpoint is written after `step` of `total`, given the time vote and a stop.
    func due(step: Int, total: Int, byTime: Bool, stopping: Bool) -> Bool {
        (everySteps > 0 && step % everySteps == 0) || byTime || stopping || step == total
    }
}
