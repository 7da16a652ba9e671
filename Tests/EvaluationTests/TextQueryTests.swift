import Foundation
import Support
import ViT
import WordNet
import XCTest

@testable import Evaluation

/// Words to head rows (`TextQueryResolver`), rows to scores (`TextQueryScorer`) and the
/// precision@k measurement, on a vocabulary of real WordNet synsets.
final class TextQueryTests: XCTestCase {
    /// dog, cat, car, tree, apple, street, red, flower (wnids from WordNet 3.0).
    static let wnids = ["n02084071", "n02121620", "n02958343", "n13104059", "n07739125", "n04334599", "n04962784", "n11669335"]

    static func vocabulary() -> Vocabulary {
        Vocabulary(entries: wnids.enumerated().map { Vocabulary.Entry(wnid: $1, count: 100 - $0, lemmas: []) })
    }

    func testPhrasesResolveThroughWordNet() throws {
        let database = try WordNetDatabase()
        let resolver = TextQueryResolver(vocabulary: Self.vocabulary(), database: database, mode: .corenet)
        // one class name: its own row
        let dog = try resolver.resolve("dog")
        XCTAssertEqual(dog.synsets.map(\.wnid), ["n02084071"])
        XCTAssertEqual(dog.rows, [0])
        XCTAssertEqual(dog.synsets[0].route, .direct)
        // plural, case and spaces
        XCTAssertEqual(try resolver.resolve("  Dogs ").rows, [0])
        // a wnid
        XCTAssertEqual(try resolver.resolve("n02958343").rows, [2])
        // a hyponym of a vocabulary synset reaches it through the hypernym route
        let puppy = try resolver.resolve("puppy")
        XCTAssertEqual(puppy.rows, [0])
        XCTAssertEqual(puppy.synsets[0].route, .hypernym)
        // a phrase: every noun the labeller finds
        let phrase = try resolver.resolve("a red car on the street")
        XCTAssertEqual(Set(phrase.synsets.map(\.wnid)), ["n04962784", "n02958343", "n04334599"])
        XCTAssertEqual(phrase.rows, [2, 5, 6])
        // nothing, too much, nonsense
        XCTAssertThrowsError(try resolver.resolve("   ")) { XCTAssertEqual(($0 as? TextQueryError)?.code, "empty_text") }
        XCTAssertThrowsError(try resolver.resolve(String(repeating: "dog ", count: 300))) {
            XCTAssertEqual(($0 as? TextQueryError)?.code, "text_too_long")
        }
        XCTAssertThrowsError(try resolver.resolve("xyzzy qwrtp")) {
            let e = $0 as? TextQueryError
            XCTAssertEqual(e?.code, "unmapped")
            XCTAssertTrue(e?.message.contains("'xyzzy qwrtp'") ?? false, "\(String(describing: e))")
        }
    }

    /// Each rule's scores against the formulas written out.
    func testRulesScoreAsDefined() throws {
        let config = ModelConfig(modelArgs: ModelArgs(imgSize: 16, patchSize: 8, numClasses: 4, embedDim: 6, depth: 1, numHeads: 2))
        let model = try ViTModel(config: config, seed: 3)
        var rng = SeededGenerator(seed: 4)
        for i in 0..<model.parameter("head.weight").count { model.parameter("head.weight")[i] = Float(rng.nextNormal()) }
        for i in 0..<4 { model.parameter("head.bias")[i] = Float(i) - 1.5 }
        let scorer = TextQueryScorer(model: model)
        let n = 5
        var e = (0..<(n * 6)).map { _ in Float(rng.nextNormal()) }
        let norms = (0..<n).map { r -> Float in
            let v = e[(r * 6)..<((r + 1) * 6)].reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<6 { e[r * 6 + j] /= v }
            return v
        }
        let w = Array(model.parameter("head.weight")), b = Array(model.parameter("head.bias"))
        let rows = [1, 3]
        func dot(_ i: Int, _ r: Int) -> Float { (0..<6).reduce(0) { $0 + e[i * 6 + $1] * w[r * 6 + $1] } }
        func norm(_ r: Int) -> Float { (0..<6).reduce(Float(0)) { $0 + w[r * 6 + $1] * w[r * 6 + $1] }.squareRoot() }
        let want: [TextSearchRule: [Float]] = [
            .cosine: (0..<n).map { i in rows.reduce(0) { $0 + dot(i, $1) / norm($1) } },
            .sum: (0..<n).map { i in rows.reduce(0) { $0 + dot(i, $1) } },
            .logit: (0..<n).map { i in rows.reduce(0) { $0 + dot(i, $1) } * norms[i] },
            .probability: (0..<n).map { i in rows.reduce(0) { $0 + 1 / (1 + exp(-(dot(i, $1) * norms[i] + b[$1]))) } },
        ]
        for rule in TextSearchRule.allCases {
            let got = e.withUnsafeBufferPointer { scorer.scores(embeddings: $0, norms: norms, count: n, rows: rows, rule: rule) }
            for i in 0..<n { XCTAssertEqual(got[i], want[rule]![i], accuracy: 1e-5, "\(rule) row \(i)") }
        }
    }

    /// Images lying on their class's head row are found first: precision@k 1 where a class has
    /// at least k images; the random ranking's expectation is the class's share.
    func testPrecisionAtK() throws {
        let database = try WordNetDatabase()
        let vocab = Self.vocabulary()
        let config = ModelConfig(modelArgs: ModelArgs(imgSize: 16, patchSize: 8, numClasses: 8, embedDim: 8, depth: 1, numHeads: 2))
        let model = try ViTModel(config: config, seed: 5)
        let w = model.parameter("head.weight")
        for i in 0..<64 { w[i] = i % 9 == 0 ? 1 : 0 }  // row r = unit vector r
        // classes dog (3 images on row 0), car (2 on row 2), flower (1 on row 7)
        let labels = [0, 0, 0, 1, 1, 2]
        let directions = [0, 0, 0, 2, 2, 7]
        var e = [Float](repeating: 0, count: 6 * 8)
        for (i, d) in directions.enumerated() {
            e[i * 8 + d] = 1
            e[i * 8 + (d + 1) % 8] = 0.01 * Float(i)  // distinct, still nearest their own row
        }
        for i in 0..<6 { var v = e; EmbeddingIndexLike.normalize(&v, i, 8); e = v }
        let resolver = TextQueryResolver(vocabulary: vocab, database: database, mode: .corenet)
        let (results, random, ceiling, unmapped) = TextSearchEvaluation.evaluate(
            scorer: TextQueryScorer(model: model), resolver: resolver, embeddings: e, norms: nil, labels: labels,
            classNames: ["dog", "car", "flower", "xyzzy"], k: 2, rules: [.cosine])
        XCTAssertEqual(unmapped, ["xyzzy"])
        XCTAssertEqual(results[0].perClass[0], 1)
        XCTAssertEqual(results[0].perClass[1], 1)
        XCTAssertEqual(results[0].perClass[2], 0.5, "one flower image: at most half of the top 2")
        XCTAssertNil(results[0].perClass[3])
        XCTAssertEqual(results[0].precisionAtK, 2.5 / 3, accuracy: 1e-12)
        XCTAssertEqual(random, (3.0 / 6 + 2.0 / 6 + 1.0 / 6) / 3, accuracy: 1e-12)
        XCTAssertEqual(ceiling, (1 + 1 + 0.5) / 3, accuracy: 1e-12)
    }
}

/// Row normalisation for the test's embeddings.
enum EmbeddingIndexLike {
    static func normalize(_ v: inout [Float], _ row: Int, _ d: Int) {
        let n = v[(row * d)..<((row + 1) * d)].reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        if n > 0 { for j in 0..<d { v[row * d + j] /= n } }
    }
}
