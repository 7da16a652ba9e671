import Evaluation
import Foundation
import ViT
import WordNet
import XCTest

/// Transfer init: the exported head's rows come from the mapped vocabulary rows.
final class HeadExportTests: XCTestCase {
    /// A vocabulary of `wnids` and a small seeded model with a head row per synset.
    static func pretrained(_ wnids: [String], database: WordNetDatabase) throws -> (Vocabulary, ViTModel) {
        let vocabulary = Vocabulary(entries: wnids.map { w in
            Vocabulary.Entry(wnid: w, count: 10, lemmas: Array(database.lemmas(database.synset(wnid: w)!)))
        })
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 16, patchSize: 8, numClasses: wnids.count, embedDim: 16, depth: 1, numHeads: 2),
            pretrainedCfg: PretrainedConfig(inputSize: [3, 16, 16], numClasses: wnids.count))
        return (vocabulary, try ViTModel(config: config, seed: 5))
    }

    /// An unmapped class starts at the mean pretrained bias, not 0: with a BCE head's biases near
    /// the classes' log-odds (about -7), a zero bias would win every image under a softmax.
    func testUnmappedClassesStartAtTheMeanBias() throws {
        let database = try WordNetDatabase()
        let (vocabulary, model) = try Self.pretrained(["n02084071", "n02121620"], database: database)
        let bias = model.parameter("head.bias")
        (bias[0], bias[1]) = (-6, -8)
        let mappings = ClassMapper(vocabulary: vocabulary, database: database).map(["dog", "xyzzy"])
        let exported = try HeadExport.transferInit(model: model, mappings: mappings, seed: 1)
        XCTAssertEqual(Array(exported.parameter("head.bias")), [-6, -7])
    }

    func testRowsComeFromTheMappedVocabularyRows() throws {
        let database = try WordNetDatabase()
        // dog, cat, car, tree
        let (vocabulary, model) = try Self.pretrained(["n02084071", "n02121620", "n02958343", "n13104059"], database: database)
        let bias = model.parameter("head.bias")
        for i in 0..<4 { bias[i] = Float(i) - 1.5 }
        let mappings = ClassMapper(vocabulary: vocabulary, database: database).map(["cars", "carnivore", "xyzzy", "n02084071"])
        XCTAssertEqual(mappings.map(\.rows), [[2], [0, 1], [], [0]])
        let exported = try HeadExport.transferInit(model: model, mappings: mappings, seed: 1)
        XCTAssertEqual(exported.numClasses, 4)
        let d = model.dim
        let w0 = model.parameter("head.weight"), w1 = exported.parameter("head.weight")
        let b1 = exported.parameter("head.bias")
        for j in 0..<d {
            XCTAssertEqual(w1[j], w0[2 * d + j])
            XCTAssertEqual(w1[d + j], (w0[j] + w0[d + j]) * 0.5, accuracy: 1e-7)
            XCTAssertEqual(w1[3 * d + j], w0[j])
            XCTAssertLessThanOrEqual(abs(w1[2 * d + j]), 0.04)
        }
        XCTAssertEqual(Array(b1), [0.5, -1, 0, -1.5])
        XCTAssertGreaterThan((0..<d).map { abs(w1[2 * d + $0]) }.reduce(0, +), 0, "an unmapped class gets a random row")
        for spec in model.layout.specs where !spec.name.hasPrefix("head.") {
            XCTAssertEqual(Array(exported.parameter(spec.name)), Array(model.parameter(spec.name)), spec.name)
        }
        // saved and loaded, its logits for a directly mapped class are the source row's logits
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-head-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try exported.save(directory: dir)
        let loaded = try ViTModel.load(directory: dir)
        var images = [Float](repeating: 0, count: 2 * 3 * 16 * 16)
        for i in images.indices { images[i] = Float((i * 37) % 101) / 101 }
        let a = model.makeActivations(batchSize: 2, training: false), b = loaded.makeActivations(batchSize: 2, training: false)
        model.forward(images: images, activations: a)
        loaded.forward(images: images, activations: b)
        for n in 0..<2 {
            XCTAssertEqual(b.logitsPointer[n * 4 + 0], a.logitsPointer[n * 4 + 2], accuracy: 1e-5)
            XCTAssertEqual(b.logitsPointer[n * 4 + 3], a.logitsPointer[n * 4 + 0], accuracy: 1e-5)
        }
        XCTAssertTrue(HeadExport.classesTSV(mappings, vocabulary: vocabulary).contains("1\tcarnivore\thyponyms\tn02084071,n02121620"))
    }
}
