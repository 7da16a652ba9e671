import Foundation
import ViT
import WordNet
import XCTest

@testable import Training

/// `mpirun -np 2 catlip train` on loopback: two ranks with half the batch each train the same
/// weights as one rank with the whole batch; a run resumes under another rank count when the
/// global batch is kept; a rank killed mid-run ends the job with an error and a readable
/// checkpoint.
final class DistributedTrainingTests: ProcessTestCase {
    override class var directoryPrefix: String { "catlip-mpi" }
    var manifest: String?

    static let mpirun = "/usr/bin/mpirun"
    static let mpiFlags = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"]

    func train(ranks: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
        if ranks == 1 { return try run(try binary, ["train"] + arguments) }
        guard FileManager.default.isExecutableFile(atPath: Self.mpirun) else { throw XCTSkip("mpirun not installed (openmpi-bin)") }
        return try run(Self.mpirun, Self.mpiFlags + ["-np", String(ranks), try binary, "train"] + arguments)
    }

    func losses(_ run: String, field: String = "loss") throws -> [Double] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (o[field] as? NSNumber)?.doubleValue
        }
    }

    func weights(_ run: String) throws -> [String: [Float]] {
        try SafeTensors.read(path: run + "/model/model.safetensors").tensors.mapValues(\.values)
    }

    /// Largest |a - b| over all tensors.
    func maxDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
        var worst: Float = 0
        for (name, x) in a {
            guard let y = b[name], y.count == x.count else { return .infinity }
            for i in x.indices { worst = max(worst, abs(x[i] - y[i])) }
        }
        return worst
    }

    func writeConfig(steps: Int, batch: Int, accumulation: Int = 1) throws -> String {
        let database = try WordNetDatabase()
        if manifest == nil {
            manifest = try ToyCorpus.write(directory: directory, count: 64, seed: 3)
            try ToyCorpus.writeVocabulary(path: directory + "/vocab.tsv", database: database)
        }
        var config = try ToyCorpus.config(
            manifest: manifest!, val: "", vocab: directory + "/vocab.tsv", runDirectory: "", steps: max(steps, 10))
        config.run.steps = steps
        config.optim.warmupSteps = 2
        config.data.batchSize = batch
        config.optim.accumulation = accumulation
        config.run.threads = 1
        config.data.threads = 1
        config.run.logEvery = 1
        config.run.checkpointEvery = 3
        config.run.keepCheckpoints = 5
        let path = directory + "/toy-\(batch)x\(accumulation).yaml"
        try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testTwoRanksWithHalfBatchesTrainTheSingleRankWeights() throws {
        let one = directory + "/one", two = directory + "/two"
        let r1 = try train(ranks: 1, ["--config", try writeConfig(steps: 6, batch: 16), "--set", "run.dir=\(one)"])
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try train(ranks: 2, ["--config", try writeConfig(steps: 6, batch: 8), "--set", "run.dir=\(two)"])
        XCTAssertEqual(r2.status, 0, r2.output)
        XCTAssertTrue(r2.output.contains("2 ranks x 8"), r2.output)
        // the same losses (float tolerance: sums over ranks instead of one batch), the same weights
        let (l1, l2) = (try losses(one), try losses(two))
        XCTAssertEqual(l1.count, 6)
        XCTAssertEqual(l2.count, 6)
        for (a, b) in zip(l1, l2) { XCTAssertEqual(a, b, accuracy: 1e-4 * abs(a), "losses \(l1) vs \(l2)") }
        // the gradient norms too (AdamW would hide a wrongly scaled gradient in the weights)
        let (g1, g2) = (try losses(one, field: "grad_norm"), try losses(two, field: "grad_norm"))
        XCTAssertEqual(g2.count, 6)
        for (a, b) in zip(g1, g2) { XCTAssertEqual(a, b, accuracy: 1e-3 * abs(a), "grad norms \(g1) vs \(g2)") }
        let difference = maxDifference(try weights(one), try weights(two))
        print("2 ranks x 8 vs 1 rank x 16, 6 AdamW steps: largest weight difference \(difference)")
        XCTAssertLessThan(difference, 2e-4, "weights differ beyond float tolerance")
        // with accumulation: 2 ranks x 2 micro-batches of 4 (the sums start during the last one)
        let accumulated = directory + "/accumulated"
        let r3 = try train(ranks: 2, ["--config", try writeConfig(steps: 6, batch: 4, accumulation: 2), "--set", "run.dir=\(accumulated)"])
        XCTAssertEqual(r3.status, 0, r3.output)
        let accumulatedDifference = maxDifference(try weights(one), try weights(accumulated))
        print("2 ranks x 2 x 4 vs 1 rank x 16: largest weight difference \(accumulatedDifference)")
        XCTAssertLessThan(accumulatedDifference, 2e-4)
        // rank 0 alone wrote the run directory: one metrics line per step, one train.log
        XCTAssertEqual(try String(contentsOfFile: two + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").count, 6)
        let checkpoint = try CheckpointFile.header(path: try XCTUnwrap(CheckpointFile.list(directory: two + "/checkpoints").first))
        XCTAssertEqual(checkpoint.step, 6)
        XCTAssertEqual(checkpoint.worldSize, 2)
        XCTAssertEqual(checkpoint.rankLoaders?.count, 2)

        // resume under another rank count, the global batch kept: 2 x 8 until step 3, then 1 x 16
        let mixed = directory + "/mixed"
        let first = try train(ranks: 2, ["--config", try writeConfig(steps: 6, batch: 8), "--set", "run.dir=\(mixed)"])
        XCTAssertEqual(first.status, 0, first.output)
        for path in CheckpointFile.list(directory: mixed + "/checkpoints") where try CheckpointFile.header(path: path).step != 3 {
            try FileManager.default.removeItem(atPath: path)
        }
        try FileManager.default.removeItem(atPath: mixed + "/model")
        let resumed = try train(ranks: 1, ["--resume", mixed, "--set", "data.batch_size=16"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("(step 3)"), resumed.output)
        let resumedDifference = maxDifference(try weights(one), try weights(mixed))
        print("2 ranks x 8 to step 3, then 1 rank x 16: largest weight difference \(resumedDifference)")
        XCTAssertLessThan(resumedDifference, 2e-4)
        // a changed global batch is refused
        let refused = try train(ranks: 1, ["--resume", mixed, "--set", "data.batch_size=8"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("different configuration"), refused.output)
    }

    /// Starts a long 2-rank job logging into `log`; returns mpirun and the pid of rank 1 once
    /// a checkpoint exists.
    func startLongJob(run: String, log: String) throws -> (Process, Int32) {
        guard FileManager.default.isExecutableFile(atPath: Self.mpirun) else { throw XCTSkip("mpirun not installed") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.mpirun)
        process.arguments = Self.mpiFlags + ["-np", "2", try binary, "train", "--config", try writeConfig(steps: 100_000, batch: 8),
                                             "--set", "run.dir=\(run)", "--set", "run.checkpoint_every=2", "--set", "run.comm_timeout=20"]
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)  // one handle: stdout and stderr share its offset
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let end = Date(timeIntervalSinceNow: 120)
        while CheckpointFile.list(directory: run + "/checkpoints").isEmpty && Date() < end && process.isRunning { usleep(50_000) }
        XCTAssertFalse(CheckpointFile.list(directory: run + "/checkpoints").isEmpty, "no checkpoint appeared")
        let children = childProcesses(of: process.processIdentifier)
        var victim: Int32?
        for pid in children {
            let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
            if String(decoding: environ, as: UTF8.self).contains("OMPI_COMM_WORLD_RANK=1") { victim = pid }
        }
        return (process, try XCTUnwrap(victim, "rank 1 not found among \(children)"))
    }

    func waitForExit(_ process: Process, seconds: Double) -> Bool {
        let end = Date(timeIntervalSinceNow: seconds)
        while process.isRunning && Date() < end { usleep(50_000) }
        if process.isRunning { process.terminate() }
        return !process.isRunning
    }

    /// Data-parallel training at bf16: 2 ranks x 8 give the single rank x 16's losses and
    /// weights (the rows of a weight gradient's product are summed per rank, then over ranks).
    func testTwoRanksAtBF16TrainTheSingleRankWeights() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        let one = directory + "/one-bf16", two = directory + "/two-bf16"
        let r1 = try train(ranks: 1, ["--config", try writeConfig(steps: 6, batch: 16), "--set", "run.dir=\(one)", "--set", "run.precision=bf16"])
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try train(ranks: 2, ["--config", try writeConfig(steps: 6, batch: 8), "--set", "run.dir=\(two)", "--set", "run.precision=bf16"])
        XCTAssertEqual(r2.status, 0, r2.output)
        let (l1, l2) = (try losses(one), try losses(two))
        XCTAssertEqual(l2.count, 6)
        for (a, b) in zip(l1, l2) { XCTAssertEqual(a, b, accuracy: 1e-3 * abs(a), "losses \(l1) vs \(l2)") }
        let difference = maxDifference(try weights(one), try weights(two))
        print("bf16: 2 ranks x 8 vs 1 rank x 16, 6 AdamW steps: largest weight difference \(difference)")
        XCTAssertLessThan(difference, 1e-3)
    }

    func testAKilledRankEndsTheJobWithAReadableCheckpoint() throws {
        let run = directory + "/killed", log = directory + "/killed.log"
        let (process, rank1) = try startLongJob(run: run, log: log)
        kill(rank1, SIGKILL)
        XCTAssertTrue(waitForExit(process, seconds: 60), "the job did not end within 60 s of a rank's death")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertNotEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.lowercased().contains("signal 9") || output.contains("killed") || output.contains("did not complete"), output)
        // the newest checkpoint is complete and readable
        let newest = try XCTUnwrap(CheckpointFile.list(directory: run + "/checkpoints").first)
        XCTAssertNoThrow(try CheckpointFile.header(path: newest))
    }

    func testSigtermToOneRankStopsAllAtTheSameStepWithACheckpoint() throws {
        let run = directory + "/stopped", log = directory + "/stopped.log"
        let (process, rank1) = try startLongJob(run: run, log: log)
        kill(rank1, SIGTERM)
        XCTAssertTrue(waitForExit(process, seconds: 60), "the job did not stop within 60 s")
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(output.contains("stopped by"), output)
        let newest = try CheckpointFile.header(path: try XCTUnwrap(CheckpointFile.list(directory: run + "/checkpoints").first))
        XCTAssertTrue(output.contains("after step \(newest.step);"), "rank 0 checkpointed the step the job stopped at\n\(output)")
        XCTAssertEqual(newest.rankLoaders?.count, 2)
        XCTAssertEqual(newest.rankLoaders?[0].batches, newest.rankLoaders?[1].batches, "both ranks stopped after the same batch")
    }
}
