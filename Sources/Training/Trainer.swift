import Distributed
import Foundation
import Imaging
import Shards
import Support
import ViT
import WordNet

/// Why a run stopped before its last step, or could not start.
public struct TrainError: Error, CustomStringConvertible, Sendable {
    /// What happened, in words.
    public var message: String
    /// An error with a message.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// How a run ended.
public struct TrainSummary: Sendable {
    /// The run directory.
    public var runDirectory: String
    /// Steps done (of `totalSteps`).
    public var steps: Int
    /// Steps the run was configured for.
    public var totalSteps: Int
    /// True when a signal stopped the run (a checkpoint was written; resume continues it).
    public var interrupted: Bool
    /// Images trained on.
    public var samplesSeen: Int
    /// Samples the loader skipped.
    public var skippedSamples: Int
    /// Non-finite steps skipped.
    public var badSteps: Int
    /// Mean loss of the first and of the last logging interval.
    public var firstLoss: Double?
    /// Mean loss of the last logging interval.
    public var lastLoss: Double?
    /// Training seconds over all sessions of the run.
    public var trainSeconds: Double
    /// Validation result at the end (when a validation set is configured).
    public var validation: ValidationResult?
    /// The exported model directory (when the run completed).
    public var modelDirectory: String?
    /// Skip reasons with example keys, from the loader.
    public var skipReport: String
    /// The mean loss of every logging interval of the run so far (metrics.jsonl), in order.
    public var lossCurve: [Double] = []
}

/// How the head did on the validation images: the mean average precision over the classes
/// present and its frequency baseline (pretraining on captions), or top-1/top-5 accuracy
/// (a classifier).
public struct ValidationResult: Sendable, Equatable {
    /// Images evaluated.
    public var images: Int
    /// Validation images that could not be decoded or had no label entry.
    public var skipped: Int
    /// Classes with at least one positive among the images.
    public var classes: Int
    /// Mean over those classes of the average precision of the head's logits (0 for a classifier).
    public var map: Double
    /// The same with every image scored by the training frequency of each class.
    public var baselineMap: Double
    /// Top-1 accuracy of a classifier (nil when pretraining).
    public var top1: Double? = nil
    /// Top-5 accuracy of a classifier (nil when pretraining).
    public var top5: Double? = nil

    /// The fields of its line in metrics.jsonl.
    var metricsFields: [(String, Any)] {
        if let top1, let top5 {
            return [("val_top1", top1), ("val_top5", top5), ("val_images", images)]
        }
        return [("val_map", map), ("val_baseline_map", baselineMap), ("val_images", images)]
    }

    /// The log line after `step` (nil: the end of the run).
    func logLine(step: Int?) -> String {
        if let top1, let top5 {
            let what = String(format: "validation top-1 %.4f, top-5 %.4f (%d images of %d classes)", top1, top5, images, classes)
            return step.map { "step \($0): \(what)" } ?? what
        }
        if let step {
            return String(format: "step %d: validation mAP %.4f (frequency baseline %.4f, %d images)", step, map, baselineMap, images)
        }
        return String(format: "validation: mAP %.4f over %d classes of %d images (frequency baseline %.4f)", map, classes, images, baselineMap)
    }
}

/// Where the trainer reports to: plain log lines and the live progress line.
public protocol TrainReporter: AnyObject {
    /// A line for the log (printed and appended to the run's train.log).
    func log(_ line: String)
    /// The live state after a step (a terminal shows it in place; otherwise ignored).
    func progress(step: Int, total: Int, loss: Double, lr: Double, imagesPerSecond: Double, etaSeconds: Double)
}

/// The pretraining job: loader → ViT → BCE over the synsets of each caption → AdamW, with
/// gradient accumulation, non-finite step skipping, metrics.jsonl, atomic checkpoints that
/// resume exactly, validation mAP, and the final model directory. The pieces: `RunDirectory`
/// (the files), `setUp()` (vocabulary, labels, model, optimiser), `restoreOrBroadcast`
/// (checkpoints), `EpochStream` (batches), `TrainingSession.step()` (one optimiser step, typed
/// `StepTotals` and votes), `IntervalMeter` and `CheckpointPolicy`.
public final class Trainer {
    /// The resolved configuration.
    public let config: TrainConfig
    /// The run directory.
    public let runDirectory: String
    let database: WordNetDatabase
    let reporter: any TrainReporter
    let stop: StopRequest
    /// The data-parallel ranks (one process: `LocalReducer`).
    let reducer: any GradientReducer
    /// Test hook: called after the backward pass of each step (0-based step index), e.g. to
    /// plant a non-finite gradient. Single-process runs only (with several ranks the gradient
    /// sums are still in flight at that point).
    var afterBackward: ((ViTModel, Int) -> Void)?

    /// A trainer for `config` writing into `runDirectory`; `stop` is polled after every step.
    /// With a `reducer` of several ranks, each rank reads its partition of the data, gradients
    /// and step statistics are summed over the ranks, and rank 0 alone writes the run directory.
    public init(
        config: TrainConfig, runDirectory: String, database: WordNetDatabase, reporter: any TrainReporter, stop: StopRequest,
        reducer: any GradientReducer = LocalReducer()
    ) {
        self.config = config
        self.runDirectory = runDirectory
        self.database = database
        self.reporter = reporter
        self.stop = stop
        self.reducer = reducer
    }

    /// Whether this process writes the run directory (rank 0).
    var isRoot: Bool { reducer.rank == 0 }

    var checkpointDirectory: String { runDirectory + "/checkpoints" }

    /// Trains from step 0 (`resume` false: the run directory must not hold checkpoints) or from
    /// the newest readable checkpoint; returns when the run completes, a signal stops it, or
    /// throws when it cannot go on (bad data path, diverged).
    public func run(resume: Bool) throws -> TrainSummary {
        let session = try TrainingSession(trainer: self, resume: resume)
        var interrupted = false
        while session.state.step < config.run.steps {
            let step = try session.step()
            session.reportProgress(step)
            try session.logIntervalIfDue(step)
            try session.validateIfDue()
            // every rank takes the same decisions: the votes were summed with the totals
            interrupted = reducer.worldSize > 1 ? step.totals.stopVotes > 0 : stop.requested
            try session.checkpointIfDue(step, stopping: interrupted)
            if interrupted {
                let cause = stop.requested ? stop.signalName : "a signal to another rank"
                reporter.log(
                    "stopped by \(cause) after step \(session.state.step); checkpoint written - continue with: catlip train --resume \(runDirectory)")
                break
            }
        }
        return try session.finish(interrupted: interrupted)
    }
}
