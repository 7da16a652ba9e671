import Foundation
import WordNet
import XCTest

@testable import Training

/// `catlip train` as a process: SIGTERM writes a checkpoint and stops, kill -9 at any moment
/// (also in the middle of a checkpoint write) loses nothing, and resuming gives the same losses
/// and bit-identical weights as the run that was never interrupted.
final class KillResumeTests: ProcessTestCase {
    override class var directoryPrefix: String { "catlip-kill" }

    /// Polls `condition` every 5 ms for up to `seconds`.
    func wait(seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(5000)
        }
        return false
    }

    func losses(_ run: String) throws -> [String] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return o["loss"].map { "\(o["step"]!):\($0)" } ?? o["val_map"].map { "\(o["step"]!):val \($0)" }
        }
    }

    func testSigtermAndKillNineResumeBitExactly() throws {
        let database = try WordNetDatabase()
        let train = try ToyCorpus.write(directory: directory, count: 96, seed: 3)
        let val = try ToyCorpus.write(directory: directory, count: 16, seed: 4, name: "val")
        let vocab = directory + "/vocab.tsv"
        try ToyCorpus.writeVocabulary(path: vocab, database: database)
        var config = try ToyCorpus.config(manifest: train, val: val, vocab: vocab, runDirectory: "", steps: 36)
        config.run.logEvery = 2
        config.run.checkpointEvery = 1  // a checkpoint write at every step: kills often land in one
        config.run.keepCheckpoints = 2
        config.run.evalEvery = 12
        let configPath = directory + "/toy.yaml"
        try config.yaml().write(toFile: configPath, atomically: true, encoding: .utf8)

        // the reference: never interrupted
        let reference = directory + "/reference"
        let r = finish(try start(["train", "--config", configPath, "--set", "run.dir=\(reference)"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("done: 36 steps"), r.output)

        // SIGTERM: a checkpoint after the current step, exit status 143, a hint to resume
        let run = directory + "/interrupted"
        let first = try start(["train", "--config", configPath, "--set", "run.dir=\(run)"])
        XCTAssertTrue(wait(seconds: 120) { (try? losses(run).count) ?? 0 >= 2 }, "no metrics appeared")
        first.0.terminate()
        let t = finish(first)
        XCTAssertEqual(t.status, 143, t.output)
        XCTAssertTrue(t.output.contains("stopped by SIGTERM") && t.output.contains("--resume"), t.output)
        let stoppedAt = try CheckpointFile.read(path: try XCTUnwrap(CheckpointFile.list(directory: run + "/checkpoints").first)).step
        XCTAssertGreaterThanOrEqual(stoppedAt, 4)
        XCTAssertLessThan(stoppedAt, 36)

        // kill -9: at seeded random moments, and right when a checkpoint's temporary file exists
        var rng = SplitMix(seed: 11)
        var kills = 0, killsDuringWrite = 0
        var finished = false
        for attempt in 0..<12 {
            let p = try start(["train", "--resume", run])
            var killed = false
            if attempt < 8 {
                let checkpoints = run + "/checkpoints"
                if attempt % 2 == 0 {
                    // wait for a temporary checkpoint file, then kill at once
                    if wait(seconds: 60, { ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).contains { $0.hasSuffix(".tmp") } }) {
                        kill(p.0.processIdentifier, SIGKILL)
                        killed = true
                        killsDuringWrite += 1
                    }
                } else {
                    usleep(UInt32(300_000 + rng.next() % 1_700_000))
                    if p.0.isRunning {
                        kill(p.0.processIdentifier, SIGKILL)
                        killed = true
                    }
                }
            }
            let result = finish(p)
            if killed && result.status != 0 {
                XCTAssertEqual(p.0.terminationReason, .uncaughtSignal)
                kills += 1
                // whatever the moment, the newest checkpoint that resume will use is readable
                continue
            }
            XCTAssertEqual(result.status, 0, result.output)
            finished = true
            break
        }
        XCTAssertTrue(finished)
        XCTAssertGreaterThanOrEqual(kills, 3, "the kills should land before the run ends")
        XCTAssertGreaterThanOrEqual(killsDuringWrite, 1)
        XCTAssertEqual(try losses(run), try losses(reference))
        let a = try Data(contentsOf: URL(fileURLWithPath: reference + "/model/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: run + "/model/model.safetensors"))
        XCTAssertEqual(a, b, "weights after kill -9 and resume must be bit-identical")
        let summaryA = try String(contentsOfFile: reference + "/summary.json", encoding: .utf8)
        XCTAssertTrue(summaryA.contains("val_map"))
    }

    func testTrainCommandErrors() throws {
        let bad = directory + "/bad.yaml"
        try "data:\n  train: x.tsv\n  vocab: v.tsv\noptim:\n  lr: often\n".write(toFile: bad, atomically: true, encoding: .utf8)
        var r = finish(try start(["train", "--config", bad]))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("bad.yaml: optim.lr: expected a number, got 'often' (line 5)"), r.output)
        r = finish(try start(["train", "--config", bad, "--set", "optim.lr=1e-3", "--set", "run.dir=\(directory!)/r"]))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("v.tsv: cannot read"), r.output)
        r = finish(try start(["train", "--resume", directory + "/nothing"]))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("not a run directory"), r.output)
        r = finish(try start(["train"]))
        XCTAssertNotEqual(r.status, 0)
    }
}

/// SplitMix64, for reproducible kill times.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt32 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: (z ^ (z >> 31)) >> 16)
    }
}
