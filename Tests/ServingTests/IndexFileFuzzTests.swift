import Foundation
import Imaging
import Support
import TestSupport
import ViT
import XCTest

@testable import Serving

/// An index file is copied between machines like a model: untrusted. Mutated copies of a valid
/// index must be refused with an `IndexError` naming the file, or read back as an index whose
/// shape is consistent, never trap (issue 17).
final class IndexFileFuzzTests: XCTestCase {
    func testMutatedIndexFilesAreRefusedOrConsistent() throws {
        let d = 4
        let keys = ["a.jpg", "b/c.png", "shard-00000:000001"]
        var rows: [Float] = []
        for r in 0..<keys.count { for c in 0..<d { rows.append(Float((r * 7 + c * 3) % 5) - 2) } }
        let index = EmbeddingIndex(dim: d, keys: keys, embeddings: rows, modelFingerprint: "00000000000000ab")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("idx-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let valid = directory.appendingPathComponent("valid.safetensors").path
        try index.write(path: valid)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: valid)))

        var rng = SeededGenerator(seed: 17)
        let path = directory.appendingPathComponent("mutant.safetensors").path
        var refused = 0
        for n in 0..<Fuzz.caseCount(quick: 1000) {
            try Data(Fuzz.mutate(original, using: &rng)).write(to: URL(fileURLWithPath: path))
            do {
                let back = try EmbeddingIndex.read(path: path)
                XCTAssertEqual(back.embeddings.count, back.count * back.dim, "case \(n)")
                XCTAssertGreaterThan(back.dim, 0, "case \(n)")
                XCTAssertTrue(back.embeddings.allSatisfy(\.isFinite), "case \(n)")
                // a search over what was read answers, whatever the rows hold
                let hits = back.search(queries: [Float](repeating: 0.5, count: back.dim), k: 2)
                XCTAssertEqual(hits.count, 1, "case \(n)")
            } catch let error as IndexError {
                refused += 1
                XCTAssertEqual(error.path, path, "case \(n)")
                XCTAssertFalse(error.problem.isEmpty, "case \(n)")
            } catch {
                XCTFail("case \(n): not an IndexError: \(error)")
            }
        }
        XCTAssertGreaterThan(refused, 0, "the mutants reached the checks")
    }
}
