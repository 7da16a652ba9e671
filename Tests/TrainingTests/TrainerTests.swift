import Foundation
import ViT
import WordNet
import XCTest

@testable import Training

/// The training job through the library: configs, checkpoints, a tiny run that must learn, and
/// resume after a stop giving exactly the uninterrupted run.
final class TrainerTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-train-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let minimal = "data:\n  train: t.tsv\n  vocab: v.tsv\n"

    // MARK: - Config

    func testResolvedYAMLReadsBackToTheSameConfig() throws {
        var c = try TrainConfig.parse(yaml: Self.minimal + "optim:\n  lr: 5e-4\n  ema_momentum: 0.0005\nmodel:\n  layer_scaling_head_dim: 32\n")
        c.run.dir = "runs/x \"quoted\""
        XCTAssertEqual(c.optim.lr, 5e-4)
        let again = try TrainConfig.parse(yaml: c.yaml())
        XCTAssertEqual(again, c)
        XCTAssertEqual(again.fingerprint, c.fingerprint)
        var other = c
        other.optim.lr = 6e-4
        XCTAssertNotEqual(other.fingerprint, c.fingerprint)
        var resumable = c
        resumable.run.logEvery = 99
        resumable.data.threads = 7
        XCTAssertEqual(resumable.fingerprint, c.fingerprint, "logging and thread settings must not block a resume")
        // optim.embedding_decay: a config written before the key existed reads as the old
        // behaviour (decay on); turning it off is another configuration
        let withoutKey = c.yaml().split(separator: "\n").filter { !$0.contains("embedding_decay") }.joined(separator: "\n")
        XCTAssertEqual(try TrainConfig.parse(yaml: withoutKey), c)
        var exempt = c
        exempt.optim.embeddingDecay = false
        XCTAssertNotEqual(exempt.fingerprint, c.fingerprint)
        XCTAssertEqual(try TrainConfig.parse(yaml: exempt.yaml()), exempt)
    }

    func testConfigErrorsNameTheKey() {
        func error(_ yaml: String, overrides: [String] = []) -> ConfigError? {
            do {
                _ = try TrainConfig.parse(yaml: yaml, file: "c.yaml", overrides: overrides)
                return nil
            } catch let e as ConfigError {
                return e
            } catch {
                XCTFail("unexpected \(error)")
                return nil
            }
        }
        let unknown = error(Self.minimal + "optim:\n  learning_rate: 0.1\n")
        XCTAssertEqual(unknown?.key, "optim.learning_rate")
        XCTAssertEqual(unknown?.file, "c.yaml")
        XCTAssertTrue(unknown?.problem.contains("unknown key") ?? false)
        XCTAssertTrue(unknown?.problem.contains("line 5") ?? false, unknown?.problem ?? "")
        XCTAssertEqual(error(Self.minimal + "optimizer:\n  lr: 1\n")?.key, "optimizer")
        let badNumber = error(Self.minimal + "optim:\n  lr: fast\n")
        XCTAssertEqual(badNumber?.key, "optim.lr")
        XCTAssertTrue(badNumber?.problem.contains("expected a number") ?? false)
        XCTAssertEqual(error("data:\n  train: t.tsv\n  vocab: v.tsv\n  batch_size: 0\n")?.key, "data.batch_size")
        XCTAssertEqual(error("data:\n  train: t.tsv\n  vocab: v.tsv\n  batch_size: -3\n")?.key, "data.batch_size")
        XCTAssertEqual(error("data:\n  train: t.tsv\n  vocab: v.tsv\n  image_size: 12.5\n")?.key, "data.image_size")
        XCTAssertEqual(error("data:\n  vocab: v.tsv\n")?.key, "data.train")
        XCTAssertEqual(error(Self.minimal + "model:\n  global_pool: max\n")?.key, "model.global_pool")
        XCTAssertEqual(error(Self.minimal + "model:\n  embed_dim: 100\n  num_heads: 3\n")?.key, "model.num_heads")
        XCTAssertEqual(error(Self.minimal + "run:\n  steps: 10\noptim:\n  warmup_steps: 20\n")?.key, "optim.warmup_steps")
        XCTAssertEqual(error("data:\n  train: t.tsv\n  vocab: v.tsv\n  crop_scale: [0.5]\n")?.key, "data.crop_scale")
        XCTAssertEqual(error("data:\n  train: t.tsv\n  vocab: v.tsv\n  crop_scale: [0.9, 0.5]\n")?.key, "data.crop_scale")
        XCTAssertEqual(error("- a\n- b\n")?.key, "")
        XCTAssertEqual(error("data: [1, 2\n")?.key, "")
        // overrides
        let set = error(Self.minimal, overrides: ["optim.lr=abc"])
        XCTAssertEqual(set?.key, "optim.lr")
        XCTAssertEqual(set?.file, "--set")
        XCTAssertEqual(error(Self.minimal, overrides: ["optim.nope=1"])?.key, "optim.nope")
        XCTAssertEqual(error(Self.minimal, overrides: ["lr=1"])?.file, "--set")
        XCTAssertEqual(error(Self.minimal, overrides: ["=1"])?.file, "--set")
        XCTAssertNil(error(Self.minimal, overrides: ["optim.lr=2e-4", "run.steps=500", "data.val=v.tsv"]))
        XCTAssertEqual(try TrainConfig.parse(yaml: Self.minimal, overrides: ["optim.lr=2e-4"]).optim.lr, 2e-4)
        XCTAssertEqual(try TrainConfig.parse(yaml: Self.minimal, overrides: ["data.train={00000..00003}.tar"]).data.train, "{00000..00003}.tar")
        XCTAssertEqual(try TrainConfig.parse(yaml: Self.minimal, overrides: ["data.resolutions=[32, 48]"]).data.resolutions, [32, 48])
    }

    func testEveryPresetIsValid() throws {
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardized.path
        let names = try FileManager.default.contentsOfDirectory(atPath: configs).filter { $0.hasSuffix(".yaml") }.sorted()
        for required in ["demo.yaml", "vit-ti16-224.yaml", "vit-s16-224.yaml", "vit-b16-224.yaml", "demo-layerwise.yaml"] {
            XCTAssertTrue(names.contains(required), required)
        }
        for name in names {
            let c = try TrainConfig.load(path: configs + "/" + name)
            XCTAssertEqual(try TrainConfig.parse(yaml: c.yaml()), c, name)
            let model = Trainer.modelConfig(c, classes: 1000)
            XCTAssertNoThrow(try model.validate(), name)
        }
        let b16 = try TrainConfig.load(path: configs + "/vit-b16-224.yaml")
        XCTAssertEqual([b16.model.embedDim, b16.model.depth, b16.model.numHeads, b16.model.patchSize], [768, 12, 12, 16])
        XCTAssertEqual([b16.optim.lr, b16.optim.weightDecay, b16.optim.emaMomentum, b16.optim.clipGrad], [1e-3, 0.2, 0.0005, 1.0])
        XCTAssertEqual([b16.optim.warmupSteps, b16.run.steps], [10_000, 200_000])
        XCTAssertEqual(b16.data.resolutions, Array(stride(from: 128, through: 320, by: 16)))
        XCTAssertEqual(try TrainConfig.load(path: configs + "/demo-layerwise.yaml").model.layerScalingHeadDim, 32)
        // the fine-tuning presets: corenet's CatLIP ImageNet values, the demo model's shape
        let ft = try TrainConfig.load(path: configs + "/finetune-vit-b16-224.yaml")
        XCTAssertEqual(ft.data.task, .classify)
        XCTAssertEqual([ft.optim.lr, ft.optim.minLR, ft.optim.weightDecay, ft.optim.labelSmoothing, ft.optim.emaMomentum], [3e-5, 3e-6, 0.05, 0.1, 0.0005])
        XCTAssertEqual([ft.optim.warmupSteps, ft.data.batchSize * ft.optim.accumulation, ft.run.steps], [500, 512, 25_023])
        XCTAssertEqual(ft.model.headInit, .transfer)
        let demo = try TrainConfig.load(path: configs + "/demo.yaml"), fd = try TrainConfig.load(path: configs + "/finetune-demo.yaml")
        XCTAssertEqual(Trainer.modelConfig(fd, classes: 3).modelArgs, Trainer.modelConfig(demo, classes: 3).modelArgs, "the demo's model")
    }

    // MARK: - Checkpoints

    func testCheckpointRoundTripAndDamageDetection() throws {
        var state = TrainState()
        state.step = 7
        state.optimizerStep = 6
        state.loader = .init(epoch: 2, consumed: 48, batches: 3)
        state.parameterCount = 1001
        state.hasEMA = true
        state.intervalLossSum = 1.25
        let blocks = (0..<4).map { b in (0..<1001).map { Float($0 * (b + 1)) * 0.5 } }
        try blocks.withUnsafeBufferPointers { pointers in
            try CheckpointFile.write(directory: directory, state: state, blocks: pointers)
        }
        let path = directory + "/" + CheckpointFile.name(step: 7)
        XCTAssertEqual(CheckpointFile.list(directory: directory), [path])
        var out = (0..<4).map { _ in [Float](repeating: -1, count: 1001) }
        let read = try out.withUnsafeMutableBufferPointers { try CheckpointFile.read(path: path, into: $0) }
        XCTAssertEqual(read, state)
        XCTAssertEqual(out, blocks)

        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // a flipped bit anywhere in the tensors
        var flipped = original
        flipped[original.count / 2] ^= 0x10
        try flipped.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CheckpointFile.read(path: path)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        // truncation at several places, including inside the header
        for cut in [0, 10, 30, original.count / 3, original.count - 1] {
            try original.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try CheckpointFile.read(path: path), "cut at \(cut)") { XCTAssertTrue("\($0)".contains(path)) }
        }
        // a header that lies about the size
        var lying = original
        lying[20] = UInt8(ascii: "[")
        try lying.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CheckpointFile.read(path: path))
        // wrong block size for this model
        try original.write(to: URL(fileURLWithPath: path))
        var small = (0..<3).map { _ in [Float](repeating: 0, count: 10) }
        XCTAssertThrowsError(try small.withUnsafeMutableBufferPointers { try CheckpointFile.read(path: path, into: $0) })
    }

    func testPruneKeepsNewest() throws {
        var state = TrainState()
        state.parameterCount = 4
        let block = [Float](repeating: 1, count: 4)
        for step in [5, 40, 10, 300] {
            state.step = step
            try block.withUnsafeBufferPointer { b in
                try CheckpointFile.write(directory: directory, state: state, blocks: [b, b, b])
            }
        }
        FileManager.default.createFile(atPath: directory + "/step-000000999.ckpt.tmp", contents: Data([1, 2]))
        CheckpointFile.prune(directory: directory, keep: 2)
        XCTAssertEqual(CheckpointFile.list(directory: directory).map { URL(fileURLWithPath: $0).lastPathComponent }, ["step-000000300.ckpt", "step-000000040.ckpt"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/step-000000999.ckpt.tmp"))
    }

    // MARK: - Training

    func makeData() throws -> (train: String, val: String, vocab: String, database: WordNetDatabase) {
        let database = try WordNetDatabase()
        let train = try ToyCorpus.write(directory: directory, count: 192, seed: 1)
        let val = try ToyCorpus.write(directory: directory, count: 64, seed: 2, name: "val")
        let vocab = directory + "/vocab.tsv"
        try ToyCorpus.writeVocabulary(path: vocab, database: database)
        return (train, val, vocab, database)
    }

    func losses(_ run: String) throws -> [String] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> String? in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            if let loss = object["loss"] { return "\(object["step"]!):\(loss)" }
            if let map = object["val_map"] { return "\(object["step"]!):val \(map)" }
            return nil
        }
    }

    func testTinyRunLearnsAndExportsAModel() throws {
        let d = try makeData()
        let run = directory + "/run"
        let config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 120)
        let stop = StopRequest()
        let reporter = RecordingReporter(stop: stop)
        let summary = try Trainer(config: config, runDirectory: run, database: d.database, reporter: reporter, stop: stop).run(resume: false)
        XCTAssertFalse(summary.interrupted)
        XCTAssertEqual(summary.steps, 120)
        XCTAssertEqual(summary.samplesSeen, 120 * 16)
        XCTAssertEqual(summary.skippedSamples, 0)
        let first = try XCTUnwrap(summary.firstLoss), last = try XCTUnwrap(summary.lastLoss)
        XCTAssertLessThan(last, 0.35 * first, "the loss must go clearly down: \(first) -> \(last)")
        let v = try XCTUnwrap(summary.validation)
        XCTAssertEqual(v.images, 64)
        XCTAssertGreaterThan(v.map, 0.9, "colours predict the nouns exactly")
        XCTAssertLessThan(v.baselineMap, 0.6)
        // the model directory loads and agrees with the config
        let model = try ViTModel.load(directory: run + "/model")
        XCTAssertEqual(model.numClasses, 4)
        XCTAssertEqual(model.imageSize, 16)
        for file in ["config.yaml", "vocab.tsv", "metrics.jsonl", "loss.svg", "summary.json", "model/vocab.tsv", "train.log"] where file != "train.log" {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + file), file)
        }
        XCTAssertEqual(try losses(run).filter { !$0.contains("val") }.count, 120 / 5)
        XCTAssertEqual(CheckpointFile.list(directory: run + "/checkpoints").count, 3)
        // a second start in the same directory refuses to overwrite it
        XCTAssertThrowsError(try Trainer(config: config, runDirectory: run, database: d.database, reporter: reporter, stop: stop).run(resume: false))
    }

    func testHeadBiasPriorStartsAtTheLabelLogOdds() throws {
        let d = try makeData()
        let run = directory + "/run"
        var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 10)
        config.model.headBiasPrior = true
        config.optim.lr = 0
        config.optim.minLR = 0
        config.optim.warmupSteps = 0
        config.data.val = ""
        let stop = StopRequest()
        _ = try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop), stop: stop).run(resume: false)
        let model = try ViTModel.load(directory: run + "/model")
        let vocabulary = try Vocabulary.load(path: d.vocab, database: d.database)
        // the toy captions name each noun: count the samples per noun from the manifest
        let captions = try String(contentsOfFile: d.train, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t")[1] }
        let bias = model.parameter("head.bias")
        for (c, entry) in vocabulary.entries.enumerated() {
            let noun = entry.lemmas[0]
            let n = Double(captions.filter { $0.split(separator: " ").contains(Substring(noun)) }.count)
            XCTAssertGreaterThan(n, 0, noun)
            let p = n / Double(captions.count)
            XCTAssertEqual(Double(bias[c]), log(p / (1 - p)), accuracy: 1e-5, noun)
        }
    }

    func testSampledCaptionsPriorIsTheExpectedFrequency() throws {
        // every sample gets a second caption line naming only "tree": under data.captions:
        // sampled, a class's prior is the mean over samples of the share of its captions naming it
        let d = try makeData()
        let rows = try String(contentsOfFile: d.train, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        let captions = rows.map { [$0[1], "a tree"] }
        var jsonl = ""
        for (row, lines) in zip(rows, captions) {
            let object: [String: Any] = ["image": row[0], "caption": lines.joined(separator: "\n")]
            jsonl += String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
        }
        let manifest = directory + "/two-captions.jsonl"
        try jsonl.write(toFile: manifest, atomically: true, encoding: .utf8)
        let vocabulary = try Vocabulary.load(path: d.vocab, database: d.database)
        func bias(_ mode: String) throws -> [Float] {
            let run = directory + "/run-" + mode
            var config = try ToyCorpus.config(manifest: manifest, val: d.val, vocab: d.vocab, runDirectory: run, steps: 10)
            config.data.val = ""
            config.data.captions = mode
            config.model.headBiasPrior = true
            (config.optim.lr, config.optim.minLR, config.optim.warmupSteps) = (0, 0, 0)
            let stop = StopRequest()
            _ = try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop), stop: stop).run(resume: false)
            return Array(try ViTModel.load(directory: run + "/model").parameter("head.bias"))
        }
        let sampled = try bias("sampled"), joined = try bias("joined")
        let n = Double(captions.count)
        for (c, entry) in vocabulary.entries.enumerated() {
            let noun = Substring(entry.lemmas[0])
            let share = captions.map { lines in Double(lines.filter { $0.split(separator: " ").contains(noun) }.count) / 2 }.reduce(0, +)
            let p = min(max(share / n, 0.5 / n), 1 - 0.5 / n)
            XCTAssertEqual(Double(sampled[c]), log(p / (1 - p)), accuracy: 1e-5, String(noun))
        }
        // "tree" is in every joined caption (the prior clipped at 1 - 0.5/n), in about half the sampled ones
        let tree = vocabulary.entries.firstIndex { $0.lemmas[0] == "tree" }!
        XCTAssertEqual(Double(joined[tree]), log((1 - 0.5 / n) / (0.5 / n)), accuracy: 1e-4)
        XCTAssertLessThan(sampled[tree], joined[tree] - 3)
    }

    func testCaptionChoiceIsAFunctionOfSeedEpochAndKeyAndCoversEveryCaption() {
        var counts = [Int](repeating: 0, count: 5)
        for k in 0..<2000 {
            let key = "sample-\(k)"
            let c = Trainer.captionChoice(seed: 7, epoch: 3, key: key, count: 5)
            XCTAssertEqual(c, Trainer.captionChoice(seed: 7, epoch: 3, key: key, count: 5))
            counts[c] += 1
        }
        XCTAssertTrue(counts.allSatisfy { (300...500).contains($0) }, "\(counts)")
        // a sample's draws change with the epoch and the seed
        let epochs = (0..<40).map { Trainer.captionChoice(seed: 7, epoch: $0, key: "a", count: 5) }
        XCTAssertEqual(Set(epochs).count, 5, "\(epochs)")
        let seeds = (0..<40).map { Trainer.captionChoice(seed: UInt64($0), epoch: 0, key: "a", count: 5) }
        XCTAssertEqual(Set(seeds).count, 5, "\(seeds)")
    }

    func testStopAndResumeGiveTheUninterruptedRun() throws {
        let d = try makeData()
        func train(_ run: String, steps: Int, stopAfter: [Int], accumulation: Int = 2) throws -> TrainSummary {
            var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: steps)
            config.optim.accumulation = accumulation
            config.optim.emaMomentum = 0.01
            config.run.checkpointEvery = 7
            config.run.evalEvery = 10
            config.data.valSamples = 20
            var summary: TrainSummary?
            for (i, s) in (stopAfter + [nil]).enumerated() {
                let stop = StopRequest()
                let reporter = RecordingReporter(stop: stop, stopAfter: s)
                summary = try Trainer(config: config, runDirectory: run, database: d.database, reporter: reporter, stop: stop).run(resume: i > 0)
                XCTAssertEqual(summary!.interrupted, s != nil)
                if let s { XCTAssertEqual(summary!.steps, s) }
            }
            return summary!
        }
        // 192 samples / 16 = 12 batches per epoch, 2 per step: epochs roll over every 6 steps
        let a = try train(directory + "/a", steps: 31, stopAfter: [])
        let b = try train(directory + "/b", steps: 31, stopAfter: [3, 13, 14, 22])
        XCTAssertEqual(a.samplesSeen, b.samplesSeen)
        XCTAssertEqual(try losses(directory + "/a"), try losses(directory + "/b"))
        XCTAssertGreaterThan(try losses(directory + "/a").count, 6)
        let wa = try Data(contentsOf: URL(fileURLWithPath: directory + "/a/model/model.safetensors"))
        let wb = try Data(contentsOf: URL(fileURLWithPath: directory + "/b/model/model.safetensors"))
        XCTAssertEqual(wa, wb, "resumed weights must be bit-identical")
        XCTAssertEqual(a.validation, b.validation)
    }

    /// Variable resolution (batches of other sides and sizes), bad samples in the data (counted
    /// and skipped, leaving unequal micro-batches that accumulation must weight) and a resume
    /// in the middle: still the uninterrupted run, and the skips are in metrics.jsonl.
    func testVariableResolutionAndBadSamplesResumeExactly() throws {
        let d = try makeData()
        // three undecodable images and one missing file among the training samples
        var lines = try String(contentsOfFile: d.train, encoding: .utf8).split(separator: "\n").map(String.init)
        for i in [5, 50, 100] {
            let path = String(lines[i].split(separator: "\t")[0])
            try Data("not a png".utf8).write(to: URL(fileURLWithPath: path))
        }
        lines[150] = directory + "/missing.png\tphoto of a dog"
        try (lines.joined(separator: "\n") + "\n").write(toFile: d.train, atomically: true, encoding: .utf8)
        func train(_ run: String, stopAfter: [Int]) throws -> TrainSummary {
            var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 24)
            config.data.resolutions = [12, 16, 20]
            config.optim.accumulation = 3
            config.run.checkpointEvery = 0
            config.run.logEvery = 2
            config.data.valSamples = 16
            var summary: TrainSummary?
            for (i, s) in (stopAfter + [nil]).enumerated() {
                let stop = StopRequest()
                summary = try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop, stopAfter: s), stop: stop).run(resume: i > 0)
            }
            return summary!
        }
        let a = try train(directory + "/a", stopAfter: [])
        let b = try train(directory + "/b", stopAfter: [5, 17])
        XCTAssertGreaterThan(a.skippedSamples, 0)
        XCTAssertEqual(a.skippedSamples, b.skippedSamples)
        XCTAssertEqual(a.samplesSeen, b.samplesSeen)
        XCTAssertNotEqual(a.samplesSeen, 24 * 3 * 16, "variable resolution changes the batch sizes")
        XCTAssertEqual(try losses(directory + "/a"), try losses(directory + "/b"))
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: directory + "/a/model/model.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: directory + "/b/model/model.safetensors")))
        let metrics = try String(contentsOfFile: directory + "/a/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"skipped\":\(a.skippedSamples)"), metrics)
        XCTAssertTrue(a.skipReport.contains("missing.png"), a.skipReport)
    }

    func testCorruptNewestCheckpointFallsBackToThePreviousOne() throws {
        let d = try makeData()
        let run = directory + "/run"
        var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 30)
        config.run.checkpointEvery = 5
        config.data.val = ""
        let stop = StopRequest()
        _ = try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop, stopAfter: 12), stop: stop).run(resume: false)
        let newest = try XCTUnwrap(CheckpointFile.list(directory: run + "/checkpoints").first)
        XCTAssertTrue(newest.hasSuffix("step-000000012.ckpt"))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
        bytes[bytes.count - 100] ^= 1
        try bytes.write(to: URL(fileURLWithPath: newest))
        let stop2 = StopRequest()
        let reporter = RecordingReporter(stop: stop2)
        let summary = try Trainer(config: config, runDirectory: run, database: d.database, reporter: reporter, stop: stop2).run(resume: true)
        XCTAssertEqual(summary.steps, 30)
        XCTAssertTrue(reporter.lines.contains { $0.contains("skipping") && $0.contains("checksum") }, reporter.lines.joined(separator: "\n"))
        XCTAssertTrue(reporter.lines.contains { $0.contains("step-000000010.ckpt") })
        // the same as a run that was never interrupted
        let clean = directory + "/clean"
        config.run.dir = clean
        let stop3 = StopRequest()
        _ = try Trainer(config: config, runDirectory: clean, database: d.database, reporter: RecordingReporter(stop: stop3), stop: stop3).run(resume: false)
        XCTAssertEqual(try losses(run), try losses(clean))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/model/model.safetensors")), try Data(contentsOf: URL(fileURLWithPath: clean + "/model/model.safetensors")))
    }

    func testResumeRefusesAnotherConfiguration() throws {
        let d = try makeData()
        let run = directory + "/run"
        var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 10)
        config.data.val = ""
        let stop = StopRequest()
        _ = try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop, stopAfter: 5), stop: stop).run(resume: false)
        config.optim.lr = 1e-2
        XCTAssertThrowsError(try Trainer(config: config, runDirectory: run, database: d.database, reporter: RecordingReporter(stop: stop), stop: StopRequest()).run(resume: true)) {
            XCTAssertTrue("\($0)".contains("different configuration"), "\($0)")
        }
    }

    /// `run.precision: bf16` trains (the loss falls), stops and resumes at bf16 into the same
    /// weights as the uninterrupted run, and refuses to resume at another precision.
    func testBF16RunResumesOnlyAtBF16() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        let d = try makeData()
        var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: directory + "/half", steps: 30)
        config.data.val = ""
        config.run.checkpointEvery = 10
        config.run.precision = .bf16
        let stop = StopRequest()
        _ = try Trainer(config: config, runDirectory: config.run.dir, database: d.database, reporter: RecordingReporter(stop: stop, stopAfter: 15), stop: stop)
            .run(resume: false)
        let stop2 = StopRequest()
        let summary = try Trainer(config: config, runDirectory: config.run.dir, database: d.database, reporter: RecordingReporter(stop: stop2), stop: stop2)
            .run(resume: true)
        XCTAssertEqual(summary.steps, 30)
        let l = try losses(config.run.dir).compactMap { Double($0.split(separator: ":").last ?? "") }
        XCTAssertGreaterThanOrEqual(l.count, 2)
        XCTAssertLessThan(l.last!, l.first!, "the bf16 run learns: \(l)")
        var whole = config
        whole.run.dir = directory + "/half-whole"
        let stop3 = StopRequest()
        _ = try Trainer(config: whole, runDirectory: whole.run.dir, database: d.database, reporter: RecordingReporter(stop: stop3), stop: stop3)
            .run(resume: false)
        XCTAssertTrue(
            try Data(contentsOf: URL(fileURLWithPath: config.run.dir + "/model/model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: whole.run.dir + "/model/model.safetensors")),
            "a bf16 run resumed is the uninterrupted bf16 run")
        var float = config
        float.run.precision = .fp32
        XCTAssertThrowsError(
            try Trainer(config: float, runDirectory: config.run.dir, database: d.database, reporter: RecordingReporter(stop: StopRequest()), stop: StopRequest())
                .run(resume: true)
        ) { XCTAssertTrue("\($0)".contains("different configuration"), "\($0)") }
        XCTAssertThrowsError(try TrainConfig.parse(yaml: "data:\n  train: t\n  vocab: v\nrun:\n  precision: fp16\n")) {
            XCTAssertTrue("\($0)".contains("run.precision"), "\($0)")
        }
    }

    func testNonFiniteStepsAreSkippedThenStopTheRun() throws {
        let d = try makeData()
        let run = directory + "/run"
        var config = try ToyCorpus.config(manifest: d.train, val: d.val, vocab: d.vocab, runDirectory: run, steps: 40)
        config.data.val = ""
        config.run.maxBadSteps = 3
        config.run.checkpointEvery = 5
        let stop = StopRequest()
        let reporter = RecordingReporter(stop: stop)
        let trainer = Trainer(config: config, runDirectory: run, database: d.database, reporter: reporter, stop: stop)
        let badSteps: Set<Int> = [3, 11, 12, 13]  // 0-based: one alone, then three in a row
        trainer.afterBackward = { model, step in
            if badSteps.contains(step) { model.gradients.base[step * 7] = .nan }
        }
        XCTAssertThrowsError(try trainer.run(resume: false)) { error in
            XCTAssertTrue("\(error)".contains("stopped at step 14: 3 non-finite steps in a row"), "\(error)")
        }
        XCTAssertEqual(reporter.lines.filter { $0.contains("non-finite gradients") && $0.contains("step skipped") }.count, 4)
        // the checkpoints on disk end before the bad streak and are readable
        let newest = try XCTUnwrap(CheckpointFile.list(directory: run + "/checkpoints").first)
        let state = try CheckpointFile.read(path: newest)
        XCTAssertEqual(state.step, 10)
        XCTAssertEqual(state.badSteps, 1)
        XCTAssertEqual(state.optimizerStep, 9, "a skipped step applies no update")
    }
}

extension Array where Element == [Float] {
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        var pointers: [UnsafeBufferPointer<Float>] = []
        func go(_ i: Int) throws -> R {
            if i == count { return try body(pointers) }
            return try self[i].withUnsafeBufferPointer { p in
                pointers.append(p)
                return try go(i + 1)
            }
        }
        return try go(0)
    }

    mutating func withUnsafeMutableBufferPointers<R>(_ body: ([UnsafeMutableBufferPointer<Float>]) throws -> R) rethrows -> R {
        var pointers: [UnsafeMutableBufferPointer<Float>] = []
        for i in indices {
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: self[i].count)
            _ = p.initialize(from: self[i])
            pointers.append(p)
        }
        defer { pointers.forEach { $0.deallocate() } }
        let result = try body(pointers)
        for i in indices { self[i] = [Float](pointers[i]) }
        return result
    }
}
