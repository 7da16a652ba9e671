import Distributed
import Evaluation
import Foundation
import Shards
import TestSupport
import ViT
import WordNet
import XCTest

@testable import Training

/// Fine-tuning (issue 20): `data.task: classify` on an ImageFolder, from scratch and from a
/// pretrained model with each head initialisation, and the bad inputs named.
final class FineTuneTests: ScratchDirectoryTestCase {
    /// A pretrained toy model (CatLIP pretraining on `count` captioned images for `steps`
    /// steps); returns its model directory.
    func pretrain(count: Int, steps: Int, database: WordNetDatabase) throws -> String {
        let vocab = directory + "/vocab.tsv"
        try ToyCorpus.writeVocabulary(path: vocab, database: database)
        let pre = try ToyCorpus.config(
            manifest: try ToyCorpus.write(directory: directory + "/pre", count: count, seed: 3), val: "", vocab: vocab,
            runDirectory: directory + "/pretrain", steps: steps)
        _ = try train(pre, database: database)
        return directory + "/pretrain/model"
    }

    /// The toy corpus as an ImageFolder: each image under the noun its background colour says
    /// (the first noun of its caption).
    func imageFolder(_ name: String, count: Int, seed: UInt64) throws -> String {
        let manifest = try ToyCorpus.write(directory: directory + "/src-" + name, count: count, seed: seed)
        let root = directory + "/" + name
        for line in try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: "\t")
            let noun = ToyCorpus.nouns.first { parts[1].hasPrefix("a \($0) ") || parts[1].hasSuffix(" \($0)") }!
            try FileManager.default.createDirectory(atPath: root + "/" + noun, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: String(parts[0]), toPath: root + "/" + noun + "/" + URL(fileURLWithPath: String(parts[0])).lastPathComponent)
        }
        return root
    }

    /// A classify config for the toy model on `train`/`val`, optionally from `initFrom`.
    func config(train: String, val: String, run: String, steps: Int, initFrom: String = "", head: String = "random") throws -> TrainConfig {
        // the toy config names a vocabulary (pretraining needs one); a classifier does not
        var c = try ToyCorpus.config(manifest: train, val: val, vocab: "unused.tsv", runDirectory: run, steps: steps)
        c.data.task = .classify
        c.data.vocab = ""
        c.model.initFrom = initFrom
        c.model.headInit = HeadInit(rawValue: head)!
        return c
    }

    func train(_ config: TrainConfig, database: WordNetDatabase) throws -> (TrainSummary, [String]) {
        let stop = StopRequest()
        let reporter = RecordingReporter(stop: stop)
        let summary = try Trainer(config: config, runDirectory: config.run.dir, database: database, reporter: reporter, stop: stop)
            .run(resume: false)
        return (summary, reporter.lines)
    }

    /// A model with a convolutional stem (BatchNorm between its convolutions), no position on
    /// the class token and corenet's position rule, as `catlip import corenet` writes one:
    /// `model.init` takes those from its config.json, the run trains the stem with batch
    /// statistics (the running ones move and are saved) and validates with the running ones.
    func testFineTuneFromAModelWithAConvolutionalStem() throws {
        let database = try WordNetDatabase()
        let train = try imageFolder("train", count: 96, seed: 1)
        let val = try imageFolder("val", count: 48, seed: 2)
        // the toy architecture (16 px, patch 4, D 32) with a two-convolution stem: 16 -> 9 -> 4
        let base = try config(train: train, val: val, run: directory + "/unused", steps: 60)
        var initConfig = Trainer.modelConfig(base, classes: 7)
        initConfig.modelArgs.stem = ConvStemArgs(widths: [8, 32], kernelSizes: [2, 2], strides: [2, 2], paddings: [1, 0])
        initConfig.modelArgs.noEmbedClass = true
        initConfig.modelArgs.posEmbedResize = .sequenceLinear
        let initial = try ViTModel(config: initConfig, seed: 5)
        try initial.save(directory: directory + "/stem-model")

        let c = try config(train: train, val: val, run: directory + "/stem", steps: 60, initFrom: directory + "/stem-model")
        let (summary, lines) = try self.train(c, database: database)
        let tuned = try ViTModel.load(directory: directory + "/stem/model")
        XCTAssertEqual(tuned.config.modelArgs.stem, initConfig.modelArgs.stem)
        XCTAssertTrue(tuned.config.modelArgs.noEmbedClass)
        XCTAssertEqual(tuned.config.modelArgs.posEmbedResize, .sequenceLinear)
        XCTAssertEqual(tuned.layout.spec(named: "pos_embed")?.shape, [1, 16, 32])
        let start = Array(initial.buffer("patch_embed.backbone.0.bn.running_mean"))
        XCTAssertNotEqual(Array(tuned.buffer("patch_embed.backbone.0.bn.running_mean")), start, "training moved the running statistics")
        XCTAssertGreaterThan(try XCTUnwrap(summary.validation?.top1), 0.6, "the stem model learns the colours: \(lines.suffix(5))")

        // stopped and resumed: the same weights and running statistics, bit for bit (the
        // statistics travel in the checkpoint)
        let fromStem = { (c: inout TrainConfig) in c.model.initFrom = self.directory + "/stem-model" }
        let whole = try finalWeights("stem-whole", train: train, stopAfter: nil, database: database, configure: fromStem)
        let resumed = try finalWeights("stem-resumed", train: train, stopAfter: 9, database: database, configure: fromStem)
        XCTAssertEqual(whole, resumed, "resumed weights and BatchNorm statistics must be bit-identical")
    }

    func testClassifierLearnsFromScratchAndFromAPretrainedModelWithTransferInit() throws {
        let database = try WordNetDatabase()
        let train = try imageFolder("train", count: 96, seed: 1)
        let val = try imageFolder("val", count: 48, seed: 2)

        // from scratch: softmax cross-entropy with smoothing, top-1/top-5 in metrics.jsonl
        let scratch = try config(train: train, val: val, run: directory + "/scratch", steps: 60)
        let (s, _) = try self.train(scratch, database: database)
        let v = try XCTUnwrap(s.validation)
        XCTAssertEqual(v.images, 48)
        XCTAssertGreaterThan(try XCTUnwrap(v.top1), 0.9, "the background colour is the class")
        XCTAssertEqual(try XCTUnwrap(v.top5), 1, "4 classes: the label is always among the top 5")
        let metrics = try String(contentsOfFile: directory + "/scratch/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"val_top1\":"), metrics)
        XCTAssertFalse(metrics.contains("val_map"))
        XCTAssertEqual(try ClassifiedImages.readClasses(directory + "/scratch/model/classes.tsv"), ["car", "cat", "dog", "tree"])
        let classifier = try ViTModel.load(directory: directory + "/scratch/model")
        XCTAssertEqual(classifier.numClasses, 4)
        // eval classify's scoring of the exported model is the run's own last validation
        let report = try Classification.evaluate(model: classifier, images: try ClassifiedImages.read(val, classes: ["car", "cat", "dog", "tree"]))
        XCTAssertEqual(report.images, 48)
        XCTAssertEqual(report.top1, try XCTUnwrap(v.top1))
        XCTAssertEqual(report.topK, try XCTUnwrap(v.top5))

        // a pretrained model (CatLIP pretraining on the captions), then Transfer Init: the head
        // starts from the pretrained rows of each class's synset, so it is right before any step
        let pretrained = try pretrain(count: 192, steps: 120, database: database)

        var transfer = try config(train: train, val: val, run: directory + "/transfer", steps: 12, initFrom: pretrained, head: "transfer")
        // steps at learning rate 0 change nothing: what is measured is the head's initialisation
        (transfer.optim.lr, transfer.optim.warmupInitLR, transfer.optim.minLR) = (0, 0, 0)
        let (t, lines) = try self.train(transfer, database: database)
        let transferTop1 = try XCTUnwrap(t.validation?.top1)
        XCTAssertGreaterThan(transferTop1, 0.75, "Transfer Init alone classifies the colours: \(lines)")
        XCTAssertTrue(lines.contains { $0.contains("transfer: 4 of 4 classes start from pretrained head rows") }, "\(lines)")
        let rows = try String(contentsOfFile: directory + "/transfer/transfer.tsv", encoding: .utf8)
        XCTAssertEqual(rows.split(separator: "\n").count, 4)

        // a random head from the same model does not (chance is 1/4)
        var random = transfer
        random.run.dir = directory + "/random"
        random.model.headInit = .random
        let (r, _) = try self.train(random, database: database)
        XCTAssertLessThan(try XCTUnwrap(r.validation?.top1), transferTop1 - 0.15, "a random head is nearer chance (1/4)")

        // a zero head scores every class alike: top-1 is the first class's share (ties go low)
        var zero = random
        zero.run.dir = directory + "/zero"
        zero.model.headInit = .zero
        let (z, _) = try self.train(zero, database: database)
        let valSet = try ClassifiedImages.read(val)
        let firstShare = Double(valSet.labels.values.filter { $0 == 0 }.count) / Double(valSet.labels.count)
        XCTAssertEqual(try XCTUnwrap(z.validation?.top1), firstShare, accuracy: 1e-9)

        // the backbone is the pretrained one, tensor for tensor
        let a = try ViTModel.load(directory: pretrained)
        let b = try ViTModel.load(directory: directory + "/random/model")
        for spec in a.layout.specs where !spec.name.hasPrefix("head.") {
            XCTAssertTrue(a.parameter(spec.name).elementsEqual(b.parameter(spec.name)), spec.name)
        }

        // a frozen backbone (a linear probe through the same loop): only the head moves
        var probe = random
        probe.run.dir = directory + "/probe"
        (probe.optim.lr, probe.optim.warmupInitLR, probe.optim.minLR) = (3e-3, 1e-6, 1e-5)
        probe.optim.freeze = .backbone
        _ = try self.train(probe, database: database)
        let p = try ViTModel.load(directory: directory + "/probe/model")
        for spec in a.layout.specs {
            let same = a.parameter(spec.name).elementsEqual(p.parameter(spec.name))
            XCTAssertEqual(same, !spec.name.hasPrefix("head."), spec.name)
        }
        XCTAssertFalse(b.parameter("head.weight").elementsEqual(p.parameter("head.weight")), "the head trained")

    }

    /// The weights of a classifier run of `steps` steps configured by `configure`, run whole or
    /// stopped after `stopAfter` steps and resumed.
    private func finalWeights(
        _ name: String, train: String, steps: Int = 20, stopAfter: Int?, database: WordNetDatabase,
        configure: (inout TrainConfig) -> Void
    ) throws -> [UInt8] {
        var c = try config(train: train, val: "", run: directory + "/" + name, steps: steps)
        configure(&c)
        c.run.checkpointEvery = 7
        for s in [stopAfter, nil] {
            let stop = StopRequest()
            let reporter = RecordingReporter(stop: stop, stopAfter: s)
            let summary = try Trainer(config: c, runDirectory: c.run.dir, database: database, reporter: reporter, stop: stop)
                .run(resume: s == nil && stopAfter != nil)
            if s != nil { XCTAssertTrue(summary.interrupted) }
            if stopAfter == nil { break }
        }
        return Array(try Data(contentsOf: URL(fileURLWithPath: c.run.dir + "/model/model.safetensors")))
    }

    /// A classifier with mixup, cutmix, label smoothing and layer decay, stopped and resumed:
    /// the same weights as the uninterrupted run (the mixing draws are a function of the step).
    func testMixedRunStoppedAndResumedIsTheUninterruptedRun() throws {
        let database = try WordNetDatabase()
        let train = try imageFolder("train", count: 64, seed: 1)
        let mix = { (c: inout TrainConfig) in
            (c.data.mixup, c.data.cutmix, c.data.mixupProb, c.optim.layerDecay) = (0.8, 1.0, 0.9, 0.75)
        }
        let whole = try finalWeights("whole", train: train, stopAfter: nil, database: database, configure: mix)
        let resumed = try finalWeights("resumed", train: train, stopAfter: 9, database: database, configure: mix)
        XCTAssertEqual(whole, resumed, "resumed weights must be bit-identical")
        let mixed = try String(contentsOfFile: directory + "/whole/config.yaml", encoding: .utf8)
        XCTAssertTrue(mixed.contains("mixup: 0.8") && mixed.contains("cutmix: 1.0"), mixed)
    }

    /// A classifier trained from shards whose samples carry their class in KEY.cls (webdataset's
    /// convention), validated on an ImageFolder with the same class names.
    func testClassifierFromShards() throws {
        let database = try WordNetDatabase()
        let folder = try imageFolder("train", count: 96, seed: 1)
        let val = try imageFolder("val", count: 32, seed: 2)
        let writer = try TarWriter(path: directory + "/train-00000.tar")
        for c in try FileManager.default.contentsOfDirectory(atPath: folder).sorted() {
            for f in try FileManager.default.contentsOfDirectory(atPath: folder + "/" + c).sorted() {
                let key = c + "-" + URL(fileURLWithPath: f).deletingPathExtension().lastPathComponent
                try writer.add(name: key + ".png", data: Array(try Data(contentsOf: URL(fileURLWithPath: folder + "/" + c + "/" + f))))
                try writer.add(name: key + ".cls", data: Array(c.utf8))
            }
        }
        try writer.finish()
        let c = try config(train: directory + "/train-{00000..00000}.tar", val: val, run: directory + "/shards", steps: 60)
        let (s, lines) = try train(c, database: database)
        XCTAssertTrue(lines.contains { $0.contains("96 training images of 4 classes") }, "\(lines)")
        XCTAssertGreaterThan(try XCTUnwrap(s.validation?.top1), 0.8)
        XCTAssertEqual(try ClassifiedImages.readClasses(directory + "/shards/classes.tsv"), ["car", "cat", "dog", "tree"])
        // eval classify streams shards as well: every training sample scored once
        let classifier = try ViTModel.load(directory: directory + "/shards/model")
        let report = try Classification.evaluate(
            model: classifier, images: try ClassifiedImages.read(c.data.train, classes: ["car", "cat", "dog", "tree"]), batchSize: 7)
        XCTAssertEqual(report.images, 96)
        let perFolder = try ["car", "cat", "dog", "tree"].map { try FileManager.default.contentsOfDirectory(atPath: folder + "/" + $0).count }
        XCTAssertEqual(report.perClass.map(\.images), perFolder)
        XCTAssertGreaterThan(report.top1, 0.8)
    }

    /// An epoch whose every batch is skipped (no sample decodes) is an empty epoch: two in a
    /// row stop the run with the reason, rather than looping over empty batches for ever.
    func testUndecodableShardsStopTheRun() throws {
        let database = try WordNetDatabase()
        let val = try imageFolder("val", count: 8, seed: 2)
        let writer = try TarWriter(path: directory + "/bad-00000.tar")
        for i in 0..<64 {
            try writer.add(name: "s\(i).png", data: [0x89, 0x50, 0x4E, 0x47, 1, 2, 3])
            try writer.add(name: "s\(i).cls", data: Array(["car", "cat", "dog", "tree"][i % 4].utf8))
        }
        try writer.finish()
        let c = try config(train: directory + "/bad-00000.tar", val: val, run: directory + "/bad", steps: 20)
        XCTAssertThrowsError(try train(c, database: database)) { error in
            XCTAssertTrue("\(error)".contains("an epoch gave no full batch"), "\(error)")
        }
    }

    /// A rank whose class list is not rank 0's (another copy of the data) stops with the reason.
    func testRanksMustAgreeOnTheClassList() throws {
        /// Rank 1 of 2, whose broadcasts bring rank 0's bytes: a class list of other classes.
        final class SecondRank: GradientReducer {
            var rank: Int { 1 }
            var worldSize: Int { 2 }
            func startSum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {}
            func finishSums() throws {}
            func sum(_ values: inout [Double]) throws {}
            func gather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes, bytes] }
            func broadcast(_ bytes: [UInt8]) throws -> [UInt8] { Array("0\tbird\n1\tfish\n".utf8) }
            func broadcast(_ values: UnsafeMutablePointer<Float>, count: Int) throws {}
            func finalize() {}
        }
        let database = try WordNetDatabase()
        let c = try config(train: try imageFolder("train", count: 16, seed: 1), val: "", run: directory + "/rank1", steps: 12)
        let stop = StopRequest()
        let trainer = Trainer(
            config: c, runDirectory: c.run.dir, database: database, reporter: RecordingReporter(stop: stop), stop: stop, reducer: SecondRank())
        XCTAssertThrowsError(try trainer.run(resume: false)) { error in
            XCTAssertTrue("\(error)".contains("rank 1: its classes.tsv (4 rows"), "\(error)")
        }
    }

    /// Stochastic depth: its masks are a function of the step and micro-batch, so a run stopped
    /// and resumed, and one whose loader has another worker count, end with the uninterrupted
    /// run's weights, bit for bit; and the masks act (other weights than the same run without).
    func testDropPathRunStoppedAndResumedIsTheUninterruptedRun() throws {
        let database = try WordNetDatabase()
        let train = try imageFolder("train", count: 64, seed: 1)
        let drop = { (c: inout TrainConfig) in
            (c.model.dropPathRate, c.optim.accumulation, c.data.threads) = (0.3, 2, 1)
        }
        let whole = try finalWeights("whole", train: train, steps: 12, stopAfter: nil, database: database, configure: drop)
        let resumed = try finalWeights("resumed", train: train, steps: 12, stopAfter: 5, database: database, configure: drop)
        XCTAssertEqual(whole, resumed, "resumed weights must be bit-identical")
        let twoWorkers = try finalWeights("two", train: train, steps: 12, stopAfter: nil, database: database) {
            drop(&$0)
            $0.data.threads = 2
        }
        XCTAssertEqual(whole, twoWorkers, "the loader's worker count must not change the masks")
        let plain = try finalWeights("plain", train: train, steps: 12, stopAfter: nil, database: database) {
            drop(&$0)
            $0.model.dropPathRate = 0
        }
        XCTAssertNotEqual(whole, plain, "drop path changes the run")
        let yaml = try String(contentsOfFile: directory + "/whole/config.yaml", encoding: .utf8)
        XCTAssertTrue(yaml.contains("drop_path_rate: 0.3"), yaml)
        XCTAssertEqual(try ModelConfig.read(path: directory + "/whole/model/config.json").dropPathRate, 0.3)
        XCTAssertEqual(try ModelConfig.read(path: directory + "/plain/model/config.json").dropPathRate, 0)
    }

    func testBadStartsAreNamed() throws {
        let database = try WordNetDatabase()
        let train = try imageFolder("train", count: 32, seed: 1)
        let pretrained = try pretrain(count: 32, steps: 12, database: database)
        func message(_ c: TrainConfig) -> String {
            do {
                _ = try self.train(c, database: database)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        // another architecture
        var wide = try config(train: train, val: "", run: directory + "/wide", steps: 12, initFrom: pretrained)
        wide.model.embedDim = 48
        XCTAssertTrue(message(wide).contains("is not the configured architecture"), message(wide))
        // keep needs the same classes (4 synsets there, 4 classes here: the same count works)
        let keep = try config(train: train, val: "", run: directory + "/keep", steps: 12, initFrom: pretrained, head: "keep")
        XCTAssertEqual(message(keep), "no error")
        // a model directory that is not one
        let missing = try config(train: train, val: "", run: directory + "/missing", steps: 12, initFrom: directory + "/nothing")
        XCTAssertTrue(message(missing).contains("model.init:"), message(missing))
        // transfer and keep need model.init
        XCTAssertThrowsError(
            try TrainConfig.parse(yaml: "data:\n  train: t\n  task: classify\nmodel:\n  head_init: transfer\n")
        ) { error in XCTAssertTrue("\(error)".contains("needs model.init"), "\(error)") }
        // classify needs no vocabulary; pretrain does
        XCTAssertNoThrow(try TrainConfig.parse(yaml: "data:\n  train: t\n  task: classify\n"))
        XCTAssertThrowsError(try TrainConfig.parse(yaml: "data:\n  train: t\n"))
    }
}
