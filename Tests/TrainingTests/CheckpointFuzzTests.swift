// Damaged checkpoints (issue 17): a header whose lengths or counts are absurd is reported as a
// damaged checkpoint before anything is converted or allocated from it, the checksum is
// verified before the payload is trusted or copied, and `--resume` reports the damaged
// checkpoint and takes the previous one. Seeded fuzzing of a valid checkpoint's bytes, and of
// its JSON header under a correct checksum, ends in a clean error or the original content.
import Foundation
import Imaging
import Support
import TestSupport
import ViT
import WordNet
import XCTest

@testable import Training

final class CheckpointFuzzTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-ckpt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let count = 37

    /// A small valid checkpoint (EMA included) written with the library; its path, state and
    /// blocks.
    func writeTiny(step: Int = 7) throws -> (path: String, state: TrainState, blocks: [[Float]]) {
        var state = TrainState()
        state.step = step
        state.optimizerStep = step - 1
        state.loader = .init(epoch: 1, consumed: 48, batches: 3)
        state.parameterCount = Self.count
        state.hasEMA = true
        state.configFingerprint = "0123456789abcdef"
        let blocks = (0..<4).map { b in (0..<Self.count).map { Float($0 + 100 * b) * 0.25 } }
        try blocks.withUnsafeBufferPointers { try CheckpointFile.write(directory: directory, state: state, blocks: $0) }
        return (directory + "/" + CheckpointFile.name(step: step), state, blocks)
    }

    /// Checkpoint bytes with `header` as the JSON state, `blocks` as the tensors, and a correct
    /// checksum: what the writer would produce for that header (or a forger would).
    func bytes(header: [UInt8], blocks: [[Float]], declaredLength: UInt64? = nil) -> [UInt8] {
        var out = CheckpointFile.magic
        CheckpointFile.append(&out, CheckpointFile.version)
        CheckpointFile.append(&out, declaredLength ?? UInt64(header.count))
        out += header
        while out.count % 64 != 0 { out.append(0) }
        for b in blocks { b.withUnsafeBytes { out += $0 } }
        var hash = Checksum()
        hash.add(out)
        CheckpointFile.append(&out, hash.value)
        return out + CheckpointFile.endMagic
    }

    func header(_ state: TrainState) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return Array(try e.encode(state))
    }

    /// Reading `path` into fresh blocks must throw a CheckpointError naming it and mentioning
    /// `expected`, and leave the blocks untouched.
    /// `headerToo`: `header(path:)`, which does not read the tensors, must throw as well.
    func assertDamaged(_ path: String, _ expected: String, headerToo: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
        var out = (0..<4).map { _ in [Float](repeating: -7, count: Self.count) }
        do {
            _ = try out.withUnsafeMutableBufferPointers { try CheckpointFile.read(path: path, into: $0) }
            XCTFail("read a damaged checkpoint (expected '\(expected)')", file: file, line: line)
        } catch let e as CheckpointError {
            XCTAssertEqual(e.path, path, file: file, line: line)
            XCTAssert(e.problem.contains(expected), "'\(e.problem)' does not mention '\(expected)'", file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
        XCTAssert(out.allSatisfy { $0.allSatisfy { $0 == -7 } }, "a damaged checkpoint was copied out", file: file, line: line)
        if headerToo { XCTAssertThrowsError(try CheckpointFile.header(path: path), file: file, line: line) }
    }

    /// The byte offset of the first occurrence of `needle` in `bytes`.
    func offset(of needle: String, in bytes: [UInt8]) -> Int? {
        let n = Array(needle.utf8)
        guard bytes.count >= n.count else { return nil }
        return (0...(bytes.count - n.count)).first { bytes[$0..<($0 + n.count)].elementsEqual(n) }
    }

    // MARK: - the examples and their kind

    func testDamagedHeaderFieldsAreErrorsNotTraps() throws {
        let (path, state, blocks) = try writeTiny()
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        // the header length with its top bit set, and other impossible lengths
        for length: UInt64 in [0x8000_0000_0000_0000 | 200, UInt64.max, 1 << 40, UInt64(original.count), 0] {
            var damaged = original
            for i in 0..<8 { damaged[12 + i] = UInt8((length >> (8 * UInt64(i))) & 0xff) }
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            assertDamaged(path, "header length \(length) out of bounds")
        }
        // a huge parameter count, with and without a checksum that matches it
        for count in [Int.max, 1 << 62, (Int.max - 100) / 16, -1, 0] {
            var s = state
            s.parameterCount = count
            try Data(bytes(header: try header(s), blocks: blocks)).write(to: URL(fileURLWithPath: path))
            assertDamaged(path, "parameterCount")
        }
        var s = state
        s.parameterCount = 1 << 40
        try Data(bytes(header: try header(s), blocks: blocks)).write(to: URL(fileURLWithPath: path))
        assertDamaged(path, "does not match the header")
        // counts that would overflow what is computed from them on resume
        for edit in [{ (s: inout TrainState) in s.loader.consumed = Int.max }, { $0.step = -5 }, { $0.rankLoaders = [.init(epoch: 0), .init(epoch: Int.min)]; $0.worldSize = 2 },
                     { $0.worldSize = 3; $0.rankLoaders = [.init(epoch: 0)] }, { $0.worldSize = 1 << 40 }] {
            var s = state
            edit(&s)
            try Data(bytes(header: try header(s), blocks: blocks)).write(to: URL(fileURLWithPath: path))
            assertDamaged(path, "header: ")
        }
        // a state that is not JSON under a correct checksum
        try Data(bytes(header: Array("{\"step\": 1e300}".utf8), blocks: blocks)).write(to: URL(fileURLWithPath: path))
        assertDamaged(path, "header is not a valid state")
        // a changed byte in the fingerprint: only the checksum can tell
        var flipped = original
        let at = try XCTUnwrap(offset(of: "0123456789abcdef", in: original))
        flipped[at] ^= 1
        try Data(flipped).write(to: URL(fileURLWithPath: path))
        assertDamaged(path, "checksum mismatch", headerToo: false)
        // not a regular file
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/dev/zero")
        assertDamaged(path, "not a regular file")
    }

    // MARK: - fuzzing

    func testFuzzedCheckpointBytes() throws {
        let (path, state, blocks) = try writeTiny()
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        var rng = SeededGenerator(seed: 41)
        let cases = Fuzz.caseCount(quick: 1500)
        var rejected = 0
        for i in 0..<cases {
            let mutated = Fuzz.mutate(original, using: &rng)
            try Data(mutated).write(to: URL(fileURLWithPath: path))
            var out = (0..<4).map { _ in [Float](repeating: -7, count: Self.count) }
            do {
                let read = try out.withUnsafeMutableBufferPointers { try CheckpointFile.read(path: path, into: $0) }
                XCTAssertEqual(read, state, "case \(i)")
                XCTAssertEqual(out, blocks, "case \(i)")
            } catch let e as CheckpointError {
                rejected += 1
                XCTAssertFalse(e.problem.isEmpty, "case \(i)")
                XCTAssertEqual(e.path, path, "case \(i)")
                XCTAssert(out.allSatisfy { $0.allSatisfy { $0 == -7 } }, "case \(i): a damaged checkpoint was copied out")
            } catch {
                XCTFail("case \(i): unexpected error type \(type(of: error)): \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, cases * 9 / 10)
    }

    func testFuzzedHeaderUnderAValidChecksum() throws {
        let (path, state, blocks) = try writeTiny()
        let text = String(decoding: try header(state), as: UTF8.self)
        var rng = SeededGenerator(seed: 43)
        let cases = Fuzz.caseCount(quick: 1200)
        for i in 0..<cases {
            let mutated = Array(Fuzz.mutateText(text, using: &rng).utf8)
            try Data(bytes(header: mutated, blocks: blocks)).write(to: URL(fileURLWithPath: path))
            do {
                let read = try CheckpointFile.read(path: path)
                // what is accepted is a usable state for these blocks
                XCTAssertNil(read.problem, "case \(i)")
                XCTAssertEqual(read.parameterCount, Self.count, "case \(i)")
                _ = Trainer.loaderPosition(of: read, rank: 0, world: 2, batchSize: 16)
            } catch let e as CheckpointError {
                XCTAssertFalse(e.problem.isEmpty, "case \(i)")
            } catch {
                XCTFail("case \(i): unexpected error type \(type(of: error)): \(error)")
            }
        }
    }

    // MARK: - resume

    func testResumeReportsADamagedHeaderAndTakesThePreviousCheckpoint() throws {
        let database = try WordNetDatabase()
        let train = try ToyCorpus.write(directory: directory, count: 64, seed: 1)
        let vocab = directory + "/vocab.tsv"
        try ToyCorpus.writeVocabulary(path: vocab, database: database)
        let run = directory + "/run"
        var config = try ToyCorpus.config(manifest: train, val: "", vocab: vocab, runDirectory: run, steps: 14)
        config.run.checkpointEvery = 5
        let stop = StopRequest()
        _ = try Trainer(config: config, runDirectory: run, database: database, reporter: RecordingReporter(stop: stop, stopAfter: 12), stop: stop).run(resume: false)
        let checkpoints = run + "/checkpoints"
        let newest = try XCTUnwrap(CheckpointFile.list(directory: checkpoints).first)
        XCTAssertTrue(newest.hasSuffix("step-000000012.ckpt"), newest)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: newest)))
        let saved = directory + "/saved"
        try FileManager.default.copyItem(atPath: run, toPath: saved)
        let fingerprintAt = try XCTUnwrap(offset(of: "\"configFingerprint\":\"", in: original)) + 21
        let countAt = try XCTUnwrap(offset(of: "\"parameterCount\":", in: original)) + 17
        XCTAssertNotEqual(original[countAt], UInt8(ascii: "9"))
        let damages: [(String, ([UInt8]) -> [UInt8])] = [
            ("header length", { b in var d = b; d[19] |= 0x80; return d }),
            // a larger parameter count of the same length
            ("does not match the header", { b in var d = b; d[countAt] = UInt8(ascii: "9"); return d }),
            ("checksum mismatch", { b in var d = b; d[fingerprintAt] ^= 1; return d }),
        ]
        for (expected, damage) in damages {
            try? FileManager.default.removeItem(atPath: run)
            try FileManager.default.copyItem(atPath: saved, toPath: run)
            try Data(damage(original)).write(to: URL(fileURLWithPath: newest))
            let stop2 = StopRequest()
            let reporter = RecordingReporter(stop: stop2)
            let summary = try Trainer(config: config, runDirectory: run, database: database, reporter: reporter, stop: stop2).run(resume: true)
            let log = reporter.lines.joined(separator: "\n")
            XCTAssertEqual(summary.steps, 14, expected)
            XCTAssertTrue(reporter.lines.contains { $0.contains("resume: skipping \(newest): ") && $0.contains(expected) }, "\(expected):\n\(log)")
            XCTAssertTrue(reporter.lines.contains { $0.contains("resume: \(checkpoints)/step-000000010.ckpt") }, "\(expected):\n\(log)")
        }
    }
}
