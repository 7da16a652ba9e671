import Encoder
import Foundation
import Imaging
import Shards
import ViT

/// How a classifier (a model whose head is a class list, `classes.tsv`) does on labelled
/// images: top-1 and top-k accuracy, per-class accuracy and the confusion matrix.
public struct ClassificationReport: Sendable {
    /// Images evaluated (those that decoded).
    public var images: Int
    /// k of `topK`.
    public var k: Int
    /// Fraction whose class is the highest logit.
    public var top1: Double
    /// Fraction whose class is among the k highest.
    public var topK: Double
    /// Mean over the classes present of their top-1 accuracy.
    public var meanPerClass: Double
    /// Per class: images and correct top-1 predictions.
    public var perClass: [(images: Int, correct: Int)]
    /// confusion[truth][predicted] counts.
    public var confusion: [[Int]]
    /// The images that could not be read or decoded, with the problem.
    public var failed: [String]
}

/// The evaluation of a classifier head.
public enum Classification {
    /// The 0-based rank of class `label` among `scores` (classes scoring higher, or the same
    /// with a lower index, as a stable sort orders ties): 0 is top-1.
    public static func rank(of label: Int, in scores: UnsafeBufferPointer<Float>) -> Int {
        let mine = scores[label]
        var rank = 0
        for (c, v) in scores.enumerated() where v > mine || (v == mine && c < label) { rank += 1 }
        return rank
    }

    /// Evaluates `model` on `images` (the model's evaluation preprocessing through
    /// `ImageEncoder`, streamed in chunks, so shards of any size fit), whose labels index the
    /// model's head rows. Throws when the images' source cannot be read at all.
    public static func evaluate(
        model: ViTModel, images: ClassifiedImages, topK k: Int = 5, batchSize: Int = 32, maxFileBytes: Int = defaultMaxImageFileBytes
    ) throws -> ClassificationReport {
        let V = model.numClasses
        let encoder = ImageEncoder(model: model, batchSize: batchSize)
        var report = ClassificationReport(
            images: 0, k: k, top1: 0, topK: 0, meanPerClass: 0,
            perClass: [(Int, Int)](repeating: (0, 0), count: V), confusion: [[Int]](repeating: [Int](repeating: 0, count: V), count: V),
            failed: [])
        var (hits1, hitsK) = (0, 0)
        var chunk: [StreamSample] = []
        func flush() {
            let samples = chunk
            chunk.removeAll(keepingCapacity: true)
            let encoded = encoder.encode(count: samples.count, logits: true) { i in
                let name = samples[i].source == images.path ? samples[i].key : samples[i].source + ":" + samples[i].key
                return (try samples[i].image.load(name: name, maxFileBytes: maxFileBytes), name)
            }
            report.failed += encoded.failures.map { "\($0.error)" }
            encoded.logits.withUnsafeBufferPointer { logits in
                for (row, i) in encoded.kept.enumerated() {
                    let truth = Int(images.labels[samples[i].key]!)
                    let scores = UnsafeBufferPointer(rebasing: logits[(row * V)..<((row + 1) * V)])
                    let r = rank(of: truth, in: scores)
                    let predicted = scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!
                    report.confusion[truth][predicted] += 1
                    report.perClass[truth].images += 1
                    if r == 0 {
                        hits1 += 1
                        report.perClass[truth].correct += 1
                    }
                    if r < k { hitsK += 1 }
                }
            }
            report.images += encoded.kept.count
        }
        try images.source(shuffle: false).forEachSample(seed: 0, epoch: 0) { sample in
            guard images.labels[sample.key] != nil else { return true }  // unlabelled or unreadable
            chunk.append(sample)
            if chunk.count == 256 { flush() }
            return true
        }
        flush()
        let n = Double(max(report.images, 1))
        report.top1 = Double(hits1) / n
        report.topK = Double(hitsK) / n
        let present = report.perClass.filter { $0.images > 0 }
        report.meanPerClass = present.isEmpty ? 0 : present.map { Double($0.correct) / Double($0.images) }.reduce(0, +) / Double(present.count)
        return report
    }
}
