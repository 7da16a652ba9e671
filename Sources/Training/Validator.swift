import Encoder
import Evaluation
import Foundation
import Shards
import ViT

/// Validation during and after training: the head's logits on held-out captioned images (the
/// model's evaluation preprocessing through `ImageEncoder`), scored by mean average precision
/// over the classes present, against the baseline that scores every image by each class's
/// training frequency.
final class Validator {
    /// How the logits are scored.
    enum Scoring {
        /// Mean average precision over the classes present (multi-label captions).
        case meanAveragePrecision
        /// Top-1 and top-5 accuracy (one class per image).
        case topK
    }

    private let scoring: Scoring
    private let samples: [StreamSample]
    private let labels: [[UInt32]]
    private let skippedAtLoad: Int
    private let trainCounts: [Int]
    private let model: ViTModel
    private let encoder: ImageEncoder
    private let maxFileBytes: Int

    /// Validation on the samples of `source` that `table` labels (at most `limit`; those without
    /// an entry are counted as skipped), for `model`, whose classes occur `trainCounts` times
    /// among the training labels. `what` names the data in errors (`data.val`).
    init(
        source: any SampleSource, table: [String: [UInt32]], scoring: Scoring = .meanAveragePrecision, trainCounts: [Int],
        model: ViTModel, batchSize: Int,
        maxFileBytes: Int, limit: Int, what: String, path: String
    ) throws {
        var samples: [StreamSample] = []
        var labels: [[UInt32]] = []
        var skipped = 0
        do {
            try source.forEachSample(seed: 0, epoch: 0) { sample in
                if case .missing = sample.image {
                    skipped += 1
                } else if let l = table[sample.key] {
                    samples.append(sample)
                    labels.append(l)
                } else {
                    skipped += 1
                }
                return samples.count < limit
            }
        } catch {
            throw TrainError("\(what): \(error)")
        }
        guard !samples.isEmpty else { throw TrainError("\(path): no usable validation sample") }
        self.scoring = scoring
        self.samples = samples
        self.labels = labels
        self.skippedAtLoad = skipped
        self.trainCounts = trainCounts
        self.model = model
        self.encoder = ImageEncoder(model: model, batchSize: batchSize)
        self.maxFileBytes = maxFileBytes
    }

    /// Scores the current weights (the EMA weights when given; the model's are restored after).
    func evaluate(ema: WeightEMA?) throws -> ValidationResult {
        var saved: FloatArena?
        if let ema {
            let copy = FloatArena(count: model.parameters.count)
            copy.copy(from: model.parameters)
            saved = copy
            ema.copy(into: model)
        }
        defer { if let saved { model.parameters.copy(from: saved) } }

        let (samples, maxFileBytes) = (self.samples, self.maxFileBytes)
        let encoded = encoder.encode(count: samples.count, logits: true) { i in
            let name = samples[i].source + ":" + samples[i].key
            return (try samples[i].image.load(name: name, maxFileBytes: maxFileBytes), name)
        }
        let kept = encoded.kept.map { labels[$0] }
        guard !kept.isEmpty else { throw TrainError("data.val: no validation image could be decoded") }
        let classes = model.numClasses
        if scoring == .topK {
            let (top1, top5) = Self.topKAccuracy(logits: encoded.logits, labels: kept.map { Int($0[0]) }, classes: classes)
            return ValidationResult(
                images: kept.count, skipped: skippedAtLoad + encoded.failures.count, classes: Set(kept.map { $0[0] }).count,
                map: 0, baselineMap: 0, top1: top1, top5: top5)
        }
        let result = encoded.logits.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: kept, classes: classes)
        }
        let baseline = AveragePrecision.frequencyBaseline(trainCounts: trainCounts, labels: kept, classes: classes)
        return ValidationResult(
            images: kept.count, skipped: skippedAtLoad + encoded.failures.count, classes: result.classesEvaluated,
            map: result.map, baselineMap: baseline)
    }

    /// The fractions of rows whose label is the highest logit, and among the five highest
    /// (ties broken towards the lower class index, as a stable sort does).
    static func topKAccuracy(logits: [Float], labels: [Int], classes: Int) -> (top1: Double, top5: Double) {
        guard !labels.isEmpty else { return (0, 0) }
        var (hits1, hits5) = (0, 0)
        logits.withUnsafeBufferPointer { all in
            for (r, label) in labels.enumerated() {
                let rank = Classification.rank(of: label, in: UnsafeBufferPointer(rebasing: all[(r * classes)..<((r + 1) * classes)]))
                if rank == 0 { hits1 += 1 }
                if rank < 5 { hits5 += 1 }
            }
        }
        return (Double(hits1) / Double(labels.count), Double(hits5) / Double(labels.count))
    }
}
