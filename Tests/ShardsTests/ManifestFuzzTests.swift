import Foundation
import Imaging
import Support
import TestSupport
import XCTest

@testable import Shards

/// Seeded fuzzing of TSV and JSONL manifests (issue 17): a mutated manifest is read with its bad
/// lines reported as problems naming the line, never a trap; every sample it yields has an image
/// path, and the samples and problems together never outnumber the lines.
final class ManifestFuzzTests: ScratchDirectoryTestCase {
    func testMutatedManifestsGiveSamplesAndProblemsPerLine() throws {
        var tsv = "", jsonl = ""
        for i in 0..<12 {
            tsv += "images/\(i).jpg\ta photo of dog number \(i)\t\(i * 3)\n"
            jsonl += "{\"image\": \"images/\(i).png\", \"caption\": \"cat \(i) on a mat\", \"width\": \(100 + i)}\n"
        }
        jsonl += "{\"path\": \"/abs/x.png\", \"text\": \"absolute\"}\n"
        var rng = SeededGenerator(seed: 41)
        var samples = 0, problems = 0
        for n in 0..<Fuzz.caseCount(quick: 500) {
            let isJSON = n % 2 == 1
            let text = Fuzz.mutateText(isJSON ? jsonl : tsv, using: &rng)
            let path = directory + (isJSON ? "/m.jsonl" : "/m.tsv")
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            let manifest: Manifest
            do {
                manifest = try Manifest(path: path)
            } catch let error as ManifestError {
                return XCTFail("case \(n): a readable manifest was refused whole: \(error)")
            }
            let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count
            XCTAssertLessThanOrEqual(manifest.samples.count + manifest.problems.count, lines, "case \(n)")
            for sample in manifest.samples {
                XCTAssertFalse(sample.key.isEmpty, "case \(n)")
                XCTAssertTrue(sample.imagePath.hasSuffix(sample.key), "case \(n): \(sample.imagePath)")
            }
            for problem in manifest.problems {
                XCTAssertTrue((1...lines).contains(problem.line), "case \(n): \(problem)")
                XCTAssertFalse(problem.message.isEmpty, "case \(n)")
                XCTAssertTrue(problem.description.hasPrefix(path + ":\(problem.line): "), "case \(n): \(problem)")
            }
            samples += manifest.samples.count
            problems += manifest.problems.count
        }
        XCTAssertGreaterThan(samples, 0)
        XCTAssertGreaterThan(problems, 0)
    }
}
