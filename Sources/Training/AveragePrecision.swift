import Foundation

/// Average precision (AP) of ranked scores, and its mean over classes (mAP), with exactly the
/// semantics of scikit-learn's `average_precision_score`:
///
///     AP = Σₙ (Rₙ − Rₙ₋₁) · Pₙ
///
/// over the distinct score thresholds taken from the highest down, where Pₙ and Rₙ are the
/// precision and recall of "score ≥ thresholdₙ" and R₀ = 0. Tied scores form one threshold, so
/// the order of tied samples never matters (no interpolation, unlike the 11-point VOC AP).
///
/// Scores are compared as numbers, so `-0.0` and `0.0` tie; `-infinity` and `infinity` are
/// ordinary scores; NaN (which scikit-learn rejects) ranks below every other score, all NaNs
/// tying with each other, so a diverged model gets a low AP instead of a crash.
public enum AveragePrecision {
    /// The AP of one class: `scores[i]` is the score of sample i and `positives[i]` whether
    /// sample i belongs to the class. Returns nil when no sample is positive (scikit-learn warns
    /// and returns 0 there; nil keeps such a class out of a mean).
    public static func averagePrecision(scores: [Float], positives: [Bool]) -> Double? {
        precondition(
            scores.count == positives.count,
            "averagePrecision: \(scores.count) scores but \(positives.count) labels")
        var keys = [UInt64](repeating: 0, count: scores.count)
        var positiveCount = 0
        for i in 0..<scores.count {
            let flag: UInt64 = positives[i] ? 1 : 0
            keys[i] = UInt64(orderKey(scores[i])) << 32 | flag
            positiveCount += Int(flag)
        }
        guard positiveCount > 0 else { return nil }
        return keys.withUnsafeMutableBufferPointer { sortedAP($0, positiveCount: positiveCount) }
    }

    /// The mean of the per-class APs over the classes with at least one positive image.
    ///
    /// `scores` is row-major (images × classes): the score of class c for image i is
    /// `scores[i * classes + c]`, and there are `labels.count` images. `labels[i]` lists the
    /// positive class indices of image i (duplicates count once; each must be below `classes`).
    /// Returns the mean (`map`, 0 when no class has a positive), the number of classes it
    /// averages (`classesEvaluated`), and every class's AP (`perClass`, nil for a class without a
    /// positive image). Unlike scikit-learn's multilabel `average="macro"`, classes without
    /// positives are skipped rather than counted as 0.
    ///
    /// Each class column is sorted once (O(classes · N log N)); classes run in parallel, and the
    /// result does not depend on the thread count or scheduling.
    public static func meanAveragePrecision(
        scores: UnsafeBufferPointer<Float>, labels: [[UInt32]], classes: Int
    ) -> (map: Double, classesEvaluated: Int, perClass: [Double?]) {
        precondition(classes >= 0, "meanAveragePrecision: negative class count \(classes)")
        let imageCount = labels.count
        precondition(
            scores.count == imageCount * classes,
            "meanAveragePrecision: \(scores.count) scores for \(imageCount) images × \(classes) "
                + "classes"
        )
        // The positive images of each class, as lists, so that a class column can be marked
        // without a dense images × classes mask.
        var lists = [[Int]](repeating: [], count: classes)
        for (image, imageLabels) in labels.enumerated() {
            for label in imageLabels {
                precondition(
                    Int(label) < classes,
                    "meanAveragePrecision: image \(image) has label \(label), but there are only "
                        + "\(classes) classes"
                )
                lists[Int(label)].append(image)
            }
        }
        let positiveImages = lists

        // NaN marks "no positive"; every class writes only its own slot.
        var results = [Double](repeating: .nan, count: classes)
        results.withUnsafeMutableBufferPointer { out in
            let shared = APSharedBuffers(scores: scores, results: out)
            let evaluateClass = { (c: Int) in
                let positives = positiveImages[c]
                if positives.isEmpty { return }
                var keys = [UInt64](repeating: 0, count: imageCount)
                for i in 0..<imageCount {
                    keys[i] = UInt64(orderKey(shared.scores[i * classes + c])) << 32
                }
                var positiveCount = 0
                for image in positives where keys[image] & 1 == 0 {
                    keys[image] |= 1
                    positiveCount += 1
                }
                shared.results[c] = keys.withUnsafeMutableBufferPointer {
                    sortedAP($0, positiveCount: positiveCount)
                }
            }
            // Below about a million score reads, threads cost more than they save.
            if imageCount * classes < 1 << 20 || classes < 2 {
                for c in 0..<classes { evaluateClass(c) }
            } else {
                let work = APUncheckedClosure(evaluateClass)
                DispatchQueue.concurrentPerform(iterations: classes) { c in work.body(c) }
            }
        }

        var sum = 0.0
        var evaluated = 0
        var perClass = [Double?](repeating: nil, count: classes)
        for c in 0..<classes where !results[c].isNaN {
            perClass[c] = results[c]
            sum += results[c]
            evaluated += 1
        }
        return (evaluated > 0 ? sum / Double(evaluated) : 0, evaluated, perClass)
    }

    /// The mAP of the frequency prior: every image scores each class c with the class's training
    /// frequency `trainCounts[c]` (one count per class). The score is constant within a class,
    /// so every image ties, and the AP of class c is its prevalence in the evaluated set
    /// (positive images / images). Returns the mean of those prevalences over the classes with
    /// at least one positive image in `labels` (0 when there is none), i.e. exactly
    /// `meanAveragePrecision` on the constant score matrix. Because AP ranks images within one
    /// class, the counts themselves do not change the value; a model must beat this number
    /// before its per-class rankings mean anything.
    public static func frequencyBaseline(trainCounts: [Int], labels: [[UInt32]], classes: Int)
        -> Double
    {
        precondition(
            trainCounts.count == classes,
            "frequencyBaseline: \(trainCounts.count) training counts for \(classes) classes")
        var positiveCounts = [Int](repeating: 0, count: classes)
        var seen = [Int](repeating: -1, count: classes)  // last image counted, for duplicates
        for (image, imageLabels) in labels.enumerated() {
            for label in imageLabels {
                let c = Int(label)
                precondition(
                    c < classes,
                    "frequencyBaseline: image \(image) has label \(label), but there are only "
                        + "\(classes) classes"
                )
                if seen[c] != image {
                    seen[c] = image
                    positiveCounts[c] += 1
                }
            }
        }
        var sum = 0.0
        var evaluated = 0
        for count in positiveCounts where count > 0 {
            // The same arithmetic as one tied threshold in `sortedAP`.
            sum += (Double(count) / Double(count)) * (Double(count) / Double(labels.count))
            evaluated += 1
        }
        return evaluated > 0 ? sum / Double(evaluated) : 0
    }

    /// A 32-bit key whose unsigned order is the numeric order of the scores: positive floats
    /// get the sign bit set, negative floats are inverted. -0.0 is folded onto 0.0 so that they
    /// tie, and NaN maps to 0, below -infinity (0x007F_FFFF).
    @inline(__always)
    static func orderKey(_ score: Float) -> UInt32 {
        if score.isNaN { return 0 }
        let bits = (score == 0 ? Float(0) : score).bitPattern
        return bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    }

    /// AP from keys `orderKey(score) << 32 | isPositive`, which it sorts in place.
    /// `positiveCount` is the number of keys with the low bit set and must be positive.
    static func sortedAP(_ keys: UnsafeMutableBufferPointer<UInt64>, positiveCount: Int) -> Double {
        var keys = keys  // a copy of the pointer; the sort is in place
        keys.sort()
        let total = Double(positiveCount)
        var truePositives = 0
        var falsePositives = 0
        var sum = 0.0
        var i = keys.count - 1
        // Walk thresholds from the highest score down; each group of equal scores is one
        // threshold. Once every positive is found, recall stops growing and nothing is added.
        while i >= 0 && truePositives < positiveCount {
            let threshold = keys[i] >> 32
            let before = truePositives
            while i >= 0 && keys[i] >> 32 == threshold {
                if keys[i] & 1 != 0 { truePositives += 1 } else { falsePositives += 1 }
                i -= 1
            }
            if truePositives > before {
                // scikit-learn's terms: recall difference times precision.
                let recallStep = Double(truePositives) / total - Double(before) / total
                let precision = Double(truePositives) / Double(truePositives + falsePositives)
                sum += recallStep * precision
            }
        }
        return sum
    }
}

/// The score matrix and result slots, handed to the worker threads. Workers only read the
/// scores and each writes only its own class's slot.
private struct APSharedBuffers: @unchecked Sendable {
    let scores: UnsafeBufferPointer<Float>
    let results: UnsafeMutableBufferPointer<Double>
}

/// Carries the per-class closure into `concurrentPerform`; see `APSharedBuffers`.
private struct APUncheckedClosure: @unchecked Sendable {
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
}
