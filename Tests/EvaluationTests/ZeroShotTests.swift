import Evaluation
import Foundation
import Imaging
import ViT
import WordNet
import XCTest

/// End to end: a tiny ViT trained here on generated images whose captions name simple objects
/// (the background colour says which), then zero-shot on new images in an ImageFolder whose
/// folders name the classes by plural, wnid and name, with an unmapped class and a corrupt file.
final class ZeroShotTests: XCTestCase {
    // dog, cat, car, tree
    static let wnids = ["n02084071", "n02121620", "n02958343", "n13104059"]
    static let colours: [(Float, Float, Float)] = [(0.86, 0.16, 0.16), (0.16, 0.78, 0.24), (0.16, 0.24, 0.86), (0.9, 0.8, 0.16)]

    /// xorshift noise in [-0.08, 0.08].
    struct Noise {
        var state: UInt64
        mutating func next() -> Float {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.16
        }
    }

    func trainTinyModel() throws -> ViTModel {
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 16, patchSize: 4, numClasses: 4, globalPool: "avg", embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 2, classToken: false),
            pretrainedCfg: PretrainedConfig(inputSize: [3, 16, 16], cropPct: 1.0, numClasses: 4))
        let model = try ViTModel(config: config, seed: 3)
        let adam = AdamW(model: model, weightDecay: 0.01)
        let B = 16, S = 16
        let acts = model.makeActivations(batchSize: B)
        var noise = Noise(state: 99)
        var images = [Float](repeating: 0, count: B * 3 * S * S)
        var targets = [Float](repeating: 0, count: B * 4)
        for step in 0..<80 {
            for b in 0..<B {
                let c = (b + step) % 4
                for ch in 0..<3 {
                    let v = [Self.colours[c].0, Self.colours[c].1, Self.colours[c].2][ch]
                    for p in 0..<(S * S) { images[((b * 3) + ch) * S * S + p] = v + noise.next() }
                }
                for k in 0..<4 { targets[b * 4 + k] = k == c ? 1 : 0 }
            }
            model.zeroGradients()
            model.forward(images: images, activations: acts)
            model.backward(targets: targets, activations: acts)
            clipGradientNorm(model, maxNorm: 1)
            adam.update(model, lr: 3e-3)
        }
        return model
    }

    func testTinyModelClassifiesNewImagesZeroShot() throws {
        let database = try WordNetDatabase()
        let model = try trainTinyModel()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-zs-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let entries = Self.wnids.enumerated().map { i, w in
            Vocabulary.Entry(wnid: w, count: 100 * (4 - i), lemmas: Array(database.lemmas(database.synset(wnid: w)!)))
        }
        let vocabulary = Vocabulary(entries: entries)
        // class folders: a plural, a name, a wnid, a name; plus an unmapped class
        let folders = ["dogs", "cat", "n02958343", "tree", "xyzzy"]
        var noise = Noise(state: 7)
        for (c, folder) in folders.enumerated() {
            let dir = root + "/data/" + folder
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for n in 0..<6 {
                let colour = Self.colours[c % 4]
                var pixels = [UInt8](repeating: 0, count: 20 * 20 * 3)
                for p in 0..<(20 * 20) {
                    for (ch, v) in [colour.0, colour.1, colour.2].enumerated() {
                        pixels[p * 3 + ch] = UInt8(clamping: Int(((v + noise.next()) * 255).rounded()))
                    }
                }
                let path = dir + "/\(n).png"
                try Data(try PNGEncoder.encode(RGBImage(width: 20, height: 20, pixels: pixels), source: path)).write(to: URL(fileURLWithPath: path))
            }
        }
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: root + "/data/cat/broken.png"))

        let dataset = try ZeroShot.readDataset(root + "/data")
        XCTAssertEqual(dataset.classes, ["cat", "dogs", "n02958343", "tree", "xyzzy"])
        XCTAssertEqual(dataset.images.count, 31)
        let mappings = ClassMapper(vocabulary: vocabulary, database: database).map(dataset.classes)
        XCTAssertEqual(mappings.map(\.route), [.direct, .direct, .direct, .direct, .unmapped])
        let classifier = ZeroShotClassifier(model: model, mappings: mappings, counts: entries.map(\.count))
        let result = ZeroShot.evaluate(model: model, classifier: classifier, images: dataset.images, rules: ScoringRule.allCases, topK: 2, batchSize: 5)
        XCTAssertEqual(result.failed, [root + "/data/cat/broken.png"])
        for r in result.reports {
            XCTAssertEqual(r.images, 24, "unmapped class and the broken file left out")
            XCTAssertGreaterThanOrEqual(r.top1, 0.9, "\(r.rule): chance is 0.25")
            XCTAssertGreaterThanOrEqual(r.topK, r.top1)
            XCTAssertEqual(r.directClasses, 4)
            XCTAssertEqual(r.confusion.flatMap { $0 }.reduce(0, +), 24)
            XCTAssertEqual(r.perClass[4].images, 0)
        }
        // the manifest form gives the same classes
        let manifest = root + "/m.tsv"
        try dataset.images.map { "\($0.path)\t\(dataset.classes[$0.label])" }.joined(separator: "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ZeroShot.readDataset(manifest).classes, dataset.classes)
        try "no tab here\n".write(toFile: manifest, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ZeroShot.readDataset(manifest)) { XCTAssertTrue("\($0)".contains("line 1"), "\($0)") }
        XCTAssertThrowsError(try ZeroShot.readDataset(root + "/nothing"))
    }
}
