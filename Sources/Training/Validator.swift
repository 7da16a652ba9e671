import Foundation
import Imaging
import Shards
import ViT
import WordNet

/// Validation during and after training: the head's logits on held-out captioned images
/// (evaluation preprocessing: resize to side / crop_pct, centre crop), scored by mean average
/// precision over the classes present, against the baseline that scores every image by each
/// class's training frequency.
final class Validator {
    private let samples: [StreamSample]
    private let labels: [[UInt32]]
    private let skippedAtLoad: Int
    private let trainCounts: [Int]
    private let model: ViTModel
    private let transform: EvalTransform
    private let batchSize: Int
    private let maxFileBytes: Int
    private var activations: [Int: ViTActivations] = [:]

    init(trainer: Trainer, vocabulary: Vocabulary, mode: LabelMode, model: ViTModel) throws {
        let config = trainer.config
        maxFileBytes = config.data.maxFileMB << 20
        let source = try trainer.openSource(config.data.val, key: "data.val", shuffle: false)
        let table = try trainer.labelTable(source: source, what: "validation", vocabulary: vocabulary, mode: mode)
        var samples: [StreamSample] = []
        var labels: [[UInt32]] = []
        var skipped = 0
        let limit = config.data.valSamples > 0 ? config.data.valSamples : Int.max
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
            throw TrainError("data.val: \(error)")
        }
        guard !samples.isEmpty else { throw TrainError("\(config.data.val): no usable validation sample") }
        self.samples = samples
        self.labels = labels
        self.skippedAtLoad = skipped
        self.trainCounts = vocabulary.entries.map(\.count)
        self.model = model
        self.transform = EvalTransform(size: config.data.imageSize, cropPct: config.data.evalCropPct)
        self.batchSize = config.data.batchSize
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

        let classes = model.numClasses
        let per = transform.outputCount
        var scores: [Float] = []
        scores.reserveCapacity(samples.count * classes)
        var kept: [[UInt32]] = []
        var failed = 0
        var pixels = [Float](repeating: 0, count: batchSize * per)
        var start = 0
        while start < samples.count {
            let chunk = Array(samples[start..<min(samples.count, start + batchSize)])
            let transform = self.transform, maxFileBytes = self.maxFileBytes
            let decoded = pixels.withUnsafeMutableBufferPointer { buffer in
                transform.decodeBatch(count: chunk.count, into: buffer) { i in
                    let name = chunk[i].source + ":" + chunk[i].key
                    return (try chunk[i].image.load(name: name, maxFileBytes: maxFileBytes), name)
                }
            }.kept
            let n = decoded.count
            for i in decoded { kept.append(labels[start + i]) }
            failed += chunk.count - n
            if n > 0 {
                let acts = activations[n] ?? model.makeActivations(batchSize: n, training: false)
                activations[n] = acts
                pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, activations: acts) }
                scores += UnsafeBufferPointer(start: acts.logitsPointer, count: n * classes)
            }
            start += chunk.count
        }
        guard !kept.isEmpty else { throw TrainError("data.val: no validation image could be decoded") }
        let result = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: kept, classes: classes)
        }
        let baseline = AveragePrecision.frequencyBaseline(trainCounts: trainCounts, labels: kept, classes: classes)
        return ValidationResult(
            images: kept.count, skipped: skippedAtLoad + failed, classes: result.classesEvaluated,
            map: result.map, baselineMap: baseline)
    }
}
