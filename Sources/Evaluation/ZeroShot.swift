import Dispatch
import Encoder
import Foundation
import Imaging
import Support
import ViT
import WordNet

/// How a head row scores an image in zero-shot classification (x: the pooled pre-logits,
/// w_r and b_r: the row's weights and bias).
public enum ScoringRule: String, CaseIterable, Sendable, Codable {
    /// The logit w_r·x + b_r, as trained.
    case logit
    /// w_r·x: the logit without the bias, which mostly encodes how frequent the synset was.
    case noBias = "no-bias"
    /// The logit minus log(count_r) of the vocabulary: a correction for the training prior.
    case prior
    /// cos(w_r, x).
    case cosine
}

/// One labelled image to classify.
public struct LabelledImage: Sendable {
    /// Path of the image file.
    public var path: String
    /// Index of its class in the class list.
    public var label: Int

    /// An image and its class index.
    public init(path: String, label: Int) {
        self.path = path
        self.label = label
    }
}

/// Zero-shot results under one scoring rule.
public struct ZeroShotReport: Sendable {
    /// The rule.
    public var rule: ScoringRule
    /// Images classified (of classes with a mapping).
    public var images: Int
    /// Top-1 accuracy over those images (candidates: every mapped class).
    public var top1: Double
    /// Top-k accuracy.
    public var topK: Double
    /// k of top-k.
    public var k: Int
    /// Mean over mapped classes with images of their top-1 accuracy.
    public var meanPerClass: Double
    /// Top-1 over the images of directly mapped classes, candidates restricted to those.
    public var directTop1: Double
    /// Directly mapped classes with images (chance for `directTop1` is 1 / this).
    public var directClasses: Int
    /// Per class: images and top-1 hits (unmapped classes have none evaluated).
    public var perClass: [(images: Int, correct: Int)]
    /// confusion[truth][predicted] counts over mapped classes.
    public var confusion: [[Int]]
}

/// Scores images against dataset classes through the head rows their mappings name (several
/// rows, for a class mapped through its hyponyms, combine by their maximum).
public struct ZeroShotClassifier {
    /// The class mappings, in class order.
    public let mappings: [ClassMapping]
    private let weights: [Float]  // V x D
    private let bias: [Float]
    private let rowNorms: [Float]
    private let logCounts: [Float]
    private let dim: Int

    /// A classifier over `mappings` with the head of `model`; `counts` are the vocabulary's
    /// caption counts (for the prior rule). Rows outside the head are dropped from a mapping.
    public init(model: ViTModel, mappings: [ClassMapping], counts: [Int]) {
        let rows = model.numClasses
        self.mappings = mappings.map { m in
            var m = m
            m.rows = m.rows.filter { $0 >= 0 && $0 < rows }
            return m
        }
        let w = Array(model.parameter("head.weight"))
        let d = model.dim
        weights = w
        bias = Array(model.parameter("head.bias"))
        dim = d
        rowNorms = (0..<model.numClasses).map { r in
            var s: Float = 0
            for j in 0..<d { s += w[r * d + j] * w[r * d + j] }
            return s.squareRoot()
        }
        logCounts = (0..<rows).map { $0 < counts.count ? Float(log(Double(max(counts[$0], 1)))) : 0 }
    }

    /// Class scores of one image from its pre-logits (D floats) under each of `rules`, one
    /// array per rule; -infinity for unmapped classes. Each row's dot product is taken once.
    public func scores(preLogits x: UnsafePointer<Float>, rules: [ScoringRule]) -> [[Float]] {
        var xNorm: Float = 0
        for j in 0..<dim { xNorm += x[j] * x[j] }
        xNorm = max(xNorm.squareRoot(), 1e-12)
        var out = rules.map { _ in [Float](repeating: -.infinity, count: mappings.count) }
        for (c, m) in mappings.enumerated() {
            for r in m.rows {
                var dot: Float = 0
                for j in 0..<dim { dot += weights[r * dim + j] * x[j] }
                for (k, rule) in rules.enumerated() {
                    let s: Float
                    switch rule {
                    case .logit: s = dot + bias[r]
                    case .noBias: s = dot
                    case .prior: s = dot + bias[r] - logCounts[r]
                    case .cosine: s = dot / max(rowNorms[r] * xNorm, 1e-12)
                    }
                    out[k][c] = max(out[k][c], s)
                }
            }
        }
        return out
    }

    /// Class scores of one image under one rule (see `scores(preLogits:rules:)`).
    public func scores(preLogits x: UnsafePointer<Float>, rule: ScoringRule) -> [Float] {
        scores(preLogits: x, rules: [rule])[0]
    }
}

/// The zero-shot evaluation loop: decode (the model's evaluation preprocessing), forward,
/// score under every rule, tally.
public enum ZeroShot {
    /// Pooled pre-logits embeddings of `images` under the model's evaluation preprocessing:
    /// features (kept.count x D), the images that decoded, and the paths that did not (including
    /// files over `maxFileBytes` and paths that are not regular files, which are not read).
    public static func embed(
        model: ViTModel, images: [LabelledImage], batchSize: Int = 32, maxFileBytes: Int = defaultMaxImageFileBytes)
        -> (features: [Float], kept: [LabelledImage], failed: [String])
    {
        let encoded = ImageEncoder(model: model, batchSize: batchSize).encode(count: images.count) { i in
            (try readFileBytes(images[i].path, maxBytes: maxFileBytes), images[i].path)
        }
        return (encoded.preLogits, encoded.kept.map { images[$0] }, encoded.failures.map { images[$0.index].path })
    }

    /// Evaluates `images` (labels index `classifier.mappings`); returns one report per rule,
    /// the number of images that could not be read or decoded, and images per second.
    public static func evaluate(
        model: ViTModel, classifier: ZeroShotClassifier, images: [LabelledImage], rules: [ScoringRule], topK: Int,
        batchSize: Int = 32, maxFileBytes: Int = defaultMaxImageFileBytes
    ) -> (reports: [ZeroShotReport], failed: [String], imagesPerSecond: Double) {
        let classes = classifier.mappings.count
        let mapped = classifier.mappings.map { !$0.rows.isEmpty }
        let direct = classifier.mappings.map { $0.route == .direct }
        let start = DispatchTime.now().uptimeNanoseconds
        let (features, kept, failed) = embed(model: model, images: images.filter { mapped[$0.label] }, batchSize: batchSize, maxFileBytes: maxFileBytes)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let done = kept.count
        var tallies = rules.map { _ in (top1: 0, topK: 0, direct: 0, directN: 0, perClass: [(Int, Int)](repeating: (0, 0), count: classes),
                                        confusion: [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)) }
        features.withUnsafeBufferPointer { f in
            for (n, image) in kept.enumerated() {
                let all = classifier.scores(preLogits: f.baseAddress! + n * model.dim, rules: rules)
                for ri in rules.indices {
                    let s = all[ri]
                    let order = s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
                    let truth = image.label
                    tallies[ri].perClass[truth].0 += 1
                    tallies[ri].confusion[truth][order[0]] += 1
                    if order[0] == truth {
                        tallies[ri].top1 += 1
                        tallies[ri].perClass[truth].1 += 1
                    }
                    if order.prefix(topK).contains(truth) { tallies[ri].topK += 1 }
                    if direct[truth] {
                        tallies[ri].directN += 1
                        if order.first(where: { direct[$0] }) == truth { tallies[ri].direct += 1 }
                    }
                }
            }
        }
        let directClasses = Set(kept.map(\.label).filter { direct[$0] }).count
        let reports = rules.enumerated().map { ri, rule -> ZeroShotReport in
            let t = tallies[ri]
            let withImages = t.perClass.enumerated().filter { mapped[$0.offset] && $0.element.0 > 0 }
            let mean = withImages.isEmpty ? 0 : withImages.map { Double($0.element.1) / Double($0.element.0) }.reduce(0, +) / Double(withImages.count)
            return ZeroShotReport(
                rule: rule, images: done, top1: done > 0 ? Double(t.top1) / Double(done) : 0,
                topK: done > 0 ? Double(t.topK) / Double(done) : 0, k: topK, meanPerClass: mean,
                directTop1: t.directN > 0 ? Double(t.direct) / Double(t.directN) : 0, directClasses: directClasses,
                perClass: t.perClass.map { (images: $0.0, correct: $0.1) }, confusion: t.confusion)
        }
        return (reports, failed, seconds > 0 ? Double(done) / seconds : 0)
    }

    /// The labelled images of an ImageFolder (one folder per class, named by name or wnid) or a
    /// TSV manifest (`path<TAB>label`): the class names in sorted order and the images.
    public static func readDataset(_ path: String) throws -> (classes: [String], images: [LabelledImage]) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw EvaluationError(path: path, problem: "no such file or folder")
        }
        var pairs: [(String, String)] = []
        if isDirectory.boolValue {
            let folders = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            for folder in folders.sorted() {
                var sub: ObjCBool = false
                let dir = path + "/" + folder
                guard fm.fileExists(atPath: dir, isDirectory: &sub), sub.boolValue else { continue }
                for file in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
                where [".png", ".jpg", ".jpeg"].contains(where: { file.lowercased().hasSuffix($0) }) {
                    pairs.append((dir + "/" + file, folder))
                }
            }
        } else {
            // Regular files only, at most 4 GiB (like a training manifest): a FIFO or device
            // named as the dataset is an error, not a hang.
            let bytes: [UInt8]
            do { bytes = try SafeFile.read(path, maxBytes: 4 << 30) } catch let error as FileIOError {
                throw EvaluationError(path: path, problem: "cannot read the manifest: \(error.problem)")
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw EvaluationError(path: path, problem: "cannot read the manifest as UTF-8 text")
            }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                let parts = line.split(separator: "\t", maxSplits: 1)
                guard parts.count == 2, !parts[1].trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw EvaluationError(path: path, problem: "line \(n + 1): expected path<TAB>label")
                }
                pairs.append((String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)))
            }
        }
        guard !pairs.isEmpty else { throw EvaluationError(path: path, problem: "no labelled images found") }
        let classes = Array(Set(pairs.map(\.1))).sorted()
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        return (classes, pairs.map { LabelledImage(path: $0.0, label: index[$0.1]!) })
    }
}

/// An evaluation input that cannot be used: the path and the problem.
public struct EvaluationError: Error, CustomStringConvertible, Sendable {
    /// The file or folder.
    public var path: String
    /// What is wrong.
    public var problem: String
    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}
