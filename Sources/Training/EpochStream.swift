import Shards
import Support

/// The training batches as one endless stream: the loader's epochs one after another, empty
/// batches (every sample skipped) passed over, the time spent waiting for the loader and the
/// samples skipped during the current step counted, and each epoch's skip report kept for the
/// summary. Two epochs in a row without a usable batch stop the run.
final class EpochStream {
    private let loader: BatchLoader
    private let dataName: String
    private let batchSize: Int
    private var emptyEpochs = 0
    /// Samples of this rank skipped since the last `takeSkipped()`.
    private var skippedSinceTaken = 0
    /// One line per finished epoch that skipped samples ("epoch 3: ...").
    private(set) var skipNotes: [String] = []

    /// A stream over `loader` (started at its resume position); `dataName` names the data in
    /// errors, `batchSize` is the configured micro-batch size.
    init(loader: BatchLoader, dataName: String, batchSize: Int) {
        self.loader = loader
        self.dataName = dataName
        self.batchSize = batchSize
    }

    /// Where the stream is: what a checkpoint records.
    var position: LoaderPosition { loader.position }

    /// The next non-empty batch, rolling over epochs; the seconds spent waiting are added to
    /// `wait`.
    func next(wait: inout Double) throws -> Batch {
        while true {
            let t0 = MonotonicClock.seconds()
            let before = loader.position.consumed
            let batch: Batch?
            do { batch = try loader.next() } catch { throw TrainError("data.train: \(error)") }
            wait += MonotonicClock.seconds() - t0
            if let batch {
                skippedSinceTaken += loader.position.consumed - before - batch.count
                guard batch.count > 0 else { continue }  // every sample skipped: not a usable batch
                emptyEpochs = 0
                return batch
            }
            if loader.skipped.total > 0 { skipNotes.append("epoch \(loader.position.epoch): \(loader.skipped)") }
            emptyEpochs += 1
            if emptyEpochs >= 2 {
                throw TrainError(
                    "\(dataName): an epoch gave no full batch of \(batchSize) usable samples (skipped: \(loader.skipped.total))")
            }
            loader.start(at: LoaderPosition(epoch: loader.position.epoch + 1))
        }
    }

    /// The samples skipped since the last call (this rank's, for the step's statistics).
    func takeSkipped() -> Int {
        defer { skippedSinceTaken = 0 }
        return skippedSinceTaken
    }

    /// Adds the current epoch's skips so far to the notes (at the end of a completed run).
    func noteUnfinishedEpoch() {
        if loader.skipped.total > 0 { skipNotes.append("epoch \(loader.position.epoch) so far: \(loader.skipped)") }
    }

    /// Stops the loader's threads.
    func stop() { loader.stop() }
}
