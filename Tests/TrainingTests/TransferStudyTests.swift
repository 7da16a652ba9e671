import Foundation
import FoundationXML
import Shards
import TestSupport
import ViT
import WordNet
import XCTest

@testable import Training

/// k-shot transfer (`catlip eval transfer`): the per-class alternating split, the lists, the
/// medians, the report's SVG, one tiny study end to end (run, re-reported, refused when its
/// inputs change), and the bad inputs named.
final class TransferStudyTests: ScratchDirectoryTestCase {
    /// A manifest of `counts[name]` images per class (the files need not exist to be split).
    func manifest(_ counts: [(String, Int)]) throws -> String {
        let path = directory + "/labels.tsv"
        var text = ""
        for (name, count) in counts {
            for i in 0..<count { text += "/img/\(name)/\(i).png\t\(name)\n" }
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testSplitAlternatesPerClassAndLeavesOutClassesWithFewerThanTwoImages() throws {
        let images = try ClassifiedImages.read(try manifest([("ant", 5), ("bee", 2), ("cow", 1), ("dog", 4)]))
        let split = KShotSplit(images)
        XCTAssertEqual(split.classes.map(\.name), ["ant", "bee", "dog"])
        XCTAssertEqual(split.skipped, [KShotSplit.SkippedClass(name: "cow", images: 1)])
        let ant = split.classes[0]
        XCTAssertEqual(ant.train, ["/img/ant/0.png", "/img/ant/2.png", "/img/ant/4.png"])
        XCTAssertEqual(ant.test, ["/img/ant/1.png", "/img/ant/3.png"])
        XCTAssertEqual(split.classes[1].train, ["/img/bee/0.png"])
        XCTAssertEqual(split.classes[1].test, ["/img/bee/1.png"])

        XCTAssertEqual(split.train(.count(1)).map(\.path), ["/img/ant/0.png", "/img/bee/0.png", "/img/dog/0.png"])
        XCTAssertEqual(
            split.train(.count(2)).map(\.path), ["/img/ant/0.png", "/img/ant/2.png", "/img/bee/0.png", "/img/dog/0.png", "/img/dog/2.png"])
        XCTAssertEqual(split.train(.all).count, 6)
        XCTAssertEqual(split.test.map(\.path), ["/img/ant/1.png", "/img/ant/3.png", "/img/bee/1.png", "/img/dog/1.png", "/img/dog/3.png"])
        XCTAssertEqual(split.shortClasses(.count(1)), [])
        XCTAssertEqual(split.shortClasses(.count(2)), ["bee"], "bee has one training image")
        XCTAssertEqual(split.shortClasses(.all), [])
        // training and test halves never share an image
        XCTAssertTrue(Set(split.train(.all).map(\.path)).isDisjoint(with: split.test.map(\.path)))

        // the manifests read back as the same images and classes
        let written = directory + "/train-2.tsv"
        try KShotSplit.manifest(split.train(.count(2))).write(toFile: written, atomically: true, encoding: .utf8)
        let back = try ClassifiedImages.read(written)
        XCTAssertEqual(back.classes, ["ant", "bee", "dog"])
        XCTAssertEqual(back.samples.map(\.imagePath), split.train(.count(2)).map(\.path))
        // relative paths (an ImageFolder given as data/...) go under the base, absolute ones stay
        XCTAssertEqual(
            try KShotSplit.manifest([("data/x/a.png", "x"), ("/abs/b.png", "y")], base: "/work"), "/work/data/x/a.png\tx\n/abs/b.png\ty\n")
        XCTAssertEqual(try KShotSplit.manifest([("data/x/a.png", "x")]), "data/x/a.png\tx\n")
        XCTAssertThrowsError(try KShotSplit.manifest([("/img/a\tb.png", "ant")])) { error in
            XCTAssertTrue("\(error)".contains("a path<TAB>class manifest cannot carry"), "\(error)")
        }
    }

    func testListsParseAndBadEntriesAreNamed() throws {
        XCTAssertEqual(try ShotCount.list("1,2,all"), [.count(1), .count(2), .all])
        XCTAssertEqual(try TransferSetting.list("probe,transfer"), [.probe, .transfer])
        for (bad, expected) in [("0", "'0' is neither"), ("1,x", "'x' is neither"), ("all,all", "all is given twice"), ("", "'' is neither")] {
            XCTAssertThrowsError(try ShotCount.list(bad), bad) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        XCTAssertThrowsError(try TransferSetting.list("transfer,linear")) { XCTAssertTrue("\($0)".contains("'linear' is not one of"), "\($0)") }
    }

    func run(_ shots: ShotCount, _ setting: TransferSetting, seed: Int, top1: Double, top5: Double) -> TransferRun {
        TransferRun(shots: shots, setting: setting, seed: seed, top1: top1, top5: top5, seconds: 1, runDirectory: "r", reused: false)
    }

    func report(model: String = "runs/demo/model", data: String = "heldout", runs: [TransferRun], seeds: [Int]) -> TransferReport {
        TransferReport(
            model: model, data: data, config: "configs/finetune-demo.yaml", overrides: [], steps: 300,
            classes: ["ant", "bee", "dog", "eel"], skipped: [KShotSplit.SkippedClass(name: "cow", images: 1)], testImages: 8,
            shots: [.init(shots: .count(1), trainImages: 4, shortClasses: 0), .init(shots: .all, trainImages: 9, shortClasses: 0)],
            settings: [.transfer, .random], seeds: seeds, runs: runs)
    }

    func testMediansOverSeedsMakeTheCells() throws {
        XCTAssertEqual(TransferReport.median([0.3, 0.1, 0.2]), 0.2)
        XCTAssertEqual(TransferReport.median([0.4, 0.1, 0.2, 0.3]), 0.25, accuracy: 1e-12)
        XCTAssertEqual(TransferReport.median([0.5]), 0.5)
        XCTAssertTrue(TransferReport.median([]).isNaN)

        let r = report(
            runs: [
                run(.count(1), .transfer, seed: 2, top1: 0.50, top5: 0.9),
                run(.count(1), .transfer, seed: 0, top1: 0.25, top5: 0.7),
                run(.count(1), .transfer, seed: 1, top1: 0.75, top5: 1.0),
                run(.count(1), .random, seed: 0, top1: 0.25, top5: 0.5),
                run(.count(1), .random, seed: 1, top1: 0.50, top5: 0.75),
                run(.all, .transfer, seed: 0, top1: 1.0, top5: 1.0),
            ], seeds: [0, 1, 2])
        let cells = r.cells
        XCTAssertEqual(cells.map { "\($0.shots) \($0.setting.rawValue)" }, ["1 transfer", "1 random", "all transfer"], "table order")
        XCTAssertEqual(cells[0].top1, 0.5)
        XCTAssertEqual(cells[0].top5, 0.9)
        XCTAssertEqual(cells[0].top1PerSeed, [0.25, 0.75, 0.5], "in seed order")
        XCTAssertEqual(cells[1].top1, 0.375, accuracy: 1e-12, "the mean of the middle two")
        XCTAssertEqual(r.chance, 0.25)

        let table = r.table()
        XCTAssertTrue(table.contains("shots  train images  transfer init    random head"), table)
        XCTAssertTrue(table.contains("1      4             0.5000 / 0.9000  0.3750 / 0.6250"), table)
        XCTAssertTrue(table.contains("all    9             1.0000 / 1.0000  -"), "a setting without runs: \(table)")
        let markdown = r.markdown()
        XCTAssertTrue(markdown.contains("| 1 | 4 | **0.5000** / 0.9000 | 0.3750 / 0.6250 |"), markdown)
        XCTAssertTrue(markdown.contains("- k = 1, transfer init: 0.2500, 0.7500, 0.5000"), markdown)
        XCTAssertTrue(markdown.contains("Left out (fewer than two images): cow (1)"), markdown)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.json()) as? [String: Any])
        XCTAssertEqual((json["runs"] as? [Any])?.count, 6)
        let results = try XCTUnwrap(json["results"] as? [[String: Any]])
        XCTAssertEqual(results.first?["top1"] as? Double, 0.5)
        XCTAssertEqual(results.first?["shots"] as? String, "1")
    }

    func testSVGIsWellFormedAndEscapesNames() throws {
        let r = report(
            model: "/runs/m<&>\"'/model/", data: "/data/d\u{1}ata<x>",
            runs: [
                run(.count(1), .transfer, seed: 0, top1: 0.5, top5: 0.9), run(.count(1), .transfer, seed: 1, top1: 0.25, top5: 0.9),
                run(.count(1), .random, seed: 0, top1: 0.0, top5: 0.5), run(.count(1), .random, seed: 1, top1: 0.0, top5: 0.5),
            ], seeds: [0, 1])
        let svg = r.svg()
        let document = try XMLDocument(data: Data(svg.utf8))
        let root = try XCTUnwrap(document.rootElement())
        XCTAssertEqual(root.name, "svg")
        XCTAssertTrue(svg.contains(">k-shot transfer: m&lt;&amp;&gt;&quot;&apos;/model on data&lt;x&gt;</text>"), svg)
        XCTAssertFalse(svg.lowercased().contains("nan"))
        let bars = try document.nodes(forXPath: "//*[local-name()='rect'][@class='bar']")
        XCTAssertEqual(bars.count, 2, "one bar per cell with runs")
        let dots = try document.nodes(forXPath: "//*[local-name()='circle'][@class='seed']")
        XCTAssertEqual(dots.count, 4, "a dot per seed when there are several")
        // an empty study still draws
        XCTAssertNoThrow(try XMLDocument(data: Data(report(runs: [], seeds: [0]).svg().utf8)))
    }

    // MARK: - End to end

    /// A tiny pretrained model (CatLIP pretraining on the toy captions) and an ImageFolder of
    /// toy images under their first noun.
    func fixtures(database: WordNetDatabase) throws -> (model: String, folder: String) {
        let vocab = directory + "/vocab.tsv"
        try ToyCorpus.writeVocabulary(path: vocab, database: database)
        let pre = try ToyCorpus.config(
            manifest: try ToyCorpus.write(directory: directory + "/pre", count: 48, seed: 3), val: "", vocab: vocab,
            runDirectory: directory + "/pretrain", steps: 12)
        let stop = StopRequest()
        _ = try Trainer(config: pre, runDirectory: pre.run.dir, database: database, reporter: RecordingReporter(stop: stop), stop: stop)
            .run(resume: false)
        let manifest = try ToyCorpus.write(directory: directory + "/src", count: 40, seed: 1)
        let folder = directory + "/folder"
        for line in try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: "\t")
            let noun = ToyCorpus.nouns.first { parts[1].hasPrefix("a \($0) ") || parts[1].hasSuffix(" \($0)") }!
            try FileManager.default.createDirectory(atPath: folder + "/" + noun, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                atPath: String(parts[0]), toPath: folder + "/" + noun + "/" + URL(fileURLWithPath: String(parts[0])).lastPathComponent)
        }
        return (directory + "/pretrain/model", folder)
    }

    /// The toy model as a classifier preset (what configs/finetune-demo.yaml is for the demo).
    func writeConfig() throws -> String {
        var c = try ToyCorpus.config(manifest: "unused", val: "", vocab: "unused.tsv", runDirectory: "", steps: 12)
        (c.data.task, c.data.vocab, c.data.batchSize) = (.classify, "", 4)
        (c.optim.lr, c.optim.warmupSteps, c.optim.layerDecay) = (1e-3, 2, 0.75)
        (c.run.steps, c.run.logEvery, c.run.checkpointEvery) = (6, 2, 0)
        let path = directory + "/finetune-toy.yaml"
        try c.yaml().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func study(
        _ options: TransferStudyOptions, database: WordNetDatabase, lines: LineBox = LineBox()
    ) -> TransferStudy {
        TransferStudy(
            options: options, database: database, stop: StopRequest(), log: { lines.lines.append($0) },
            reporter: { _ in RecordingReporter(stop: StopRequest()) })
    }

    func testTinyStudyRunsEverySettingThenReReportsAndRefusesChangedInputs() throws {
        let database = try WordNetDatabase()
        let (model, folder) = try fixtures(database: database)
        var options = TransferStudyOptions(model: model, data: folder, out: directory + "/study")
        options.config = try writeConfig()
        options.shots = [.count(1), .all]
        let lines = LineBox()
        let report = try study(options, database: database, lines: lines).run()

        XCTAssertEqual(report.classes, ["car", "cat", "dog", "tree"])
        XCTAssertEqual(report.runs.count, 8, "2 shots x 4 settings x 1 seed")
        XCTAssertTrue(report.runs.allSatisfy { !$0.reused && (0...1).contains($0.top1) && $0.top5 >= $0.top1 })
        XCTAssertEqual(report.skipped, [], "every toy class has at least two of the 40 images")
        XCTAssertEqual(report.shots[0].trainImages, 4, "k = 1: one per class")
        XCTAssertEqual(report.shots[1].trainImages + report.testImages, 40, "all: the training half; the rest is the test half")
        XCTAssertGreaterThanOrEqual(report.shots[1].trainImages - report.testImages, 0)
        XCTAssertLessThanOrEqual(report.shots[1].trainImages - report.testImages, 4, "at most one more per class")
        XCTAssertEqual(lines.lines.filter { $0.hasPrefix("transfer: k = ") }.count, 8, "\(lines.lines)")
        let out = options.out
        for file in ["transfer.md", "transfer.svg", "transfer.json", "study.json", "splits/test.tsv", "splits/train-1.tsv", "splits/train-all.tsv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + file), file)
        }
        XCTAssertNoThrow(try XMLDocument(data: Data(contentsOf: URL(fileURLWithPath: out + "/transfer.svg"))))
        // each run: its setting's configuration, a classifier model, no checkpoints left
        let transfer = try TrainConfig.load(path: out + "/runs/1-transfer-s0/config.yaml")
        XCTAssertEqual(transfer.model.initFrom, model)
        XCTAssertEqual(transfer.model.headInit, .transfer)
        XCTAssertEqual(transfer.data.train, out + "/splits/train-1.tsv")
        XCTAssertEqual(transfer.data.val, out + "/splits/test.tsv")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/runs/1-transfer-s0/transfer.tsv"))
        let probe = try TrainConfig.load(path: out + "/runs/all-probe-s0/config.yaml")
        XCTAssertEqual(probe.optim.freeze, .backbone)
        XCTAssertEqual(probe.optim.lr, 3e-3)
        XCTAssertEqual(try TrainConfig.load(path: out + "/runs/all-scratch-s0/config.yaml").model.initFrom, "")
        XCTAssertEqual(try TrainConfig.load(path: out + "/runs/1-random-s0/config.yaml").model.headInit, .random)
        XCTAssertEqual(try ClassifiedImages.readClasses(out + "/runs/all-random-s0/model/classes.tsv"), ["car", "cat", "dog", "tree"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/runs/1-transfer-s0/checkpoints"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/transfer.json"))) as? [String: Any])
        XCTAssertEqual((json["results"] as? [Any])?.count, 8)

        // again: every run re-reported with the same numbers, nothing trained
        let again = try study(options, database: database).run()
        XCTAssertTrue(again.runs.allSatisfy(\.reused))
        XCTAssertEqual(again.runs.map(\.top1), report.runs.map(\.top1))
        XCTAssertEqual(again.cells, report.cells)

        // another configuration for the same run directories is refused, naming the run
        var changed = options
        changed.overrides = ["optim.lr=5e-4"]
        XCTAssertThrowsError(try study(changed, database: database).run()) { error in
            XCTAssertTrue("\(error)".contains("runs/1-transfer-s0: holds a run of another configuration"), "\(error)")
            XCTAssertTrue("\(error)".contains("optim") || "\(error)".contains("lr"), "\(error)")
        }
        // another split of the images (one image fewer) is refused before any run
        let removed = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: folder + "/cat").sorted().last)
        try FileManager.default.removeItem(atPath: folder + "/cat/" + removed)
        XCTAssertThrowsError(try study(options, database: database).run()) { error in
            XCTAssertTrue("\(error)".contains("its runs were made from another split of the images"), "\(error)")
        }
    }

    func testStudyStoppedPartWayResumesToTheUninterruptedResults() throws {
        let database = try WordNetDatabase()
        let (model, folder) = try fixtures(database: database)
        var options = TransferStudyOptions(model: model, data: folder, out: directory + "/whole")
        options.config = try writeConfig()
        (options.shots, options.settings) = ([.count(1)], [.transfer, .scratch])
        let whole = try study(options, database: database).run()

        // a signal during the second run's step 3: it checkpoints and the study stops
        options.out = directory + "/stopped"
        let stop = StopRequest()
        var made = 0
        let stopped = TransferStudy(
            options: options, database: database, stop: stop, log: { _ in },
            reporter: { _ in
                made += 1
                return RecordingReporter(stop: stop, stopAfter: made == 2 ? 3 : nil)
            })
        XCTAssertThrowsError(try stopped.run()) { error in
            XCTAssertTrue(error is TransferStudyInterrupted, "\(error)")
            XCTAssertTrue("\(error)".contains("stopped/runs/1-scratch-s0"), "\(error)")
        }
        XCTAssertFalse(CheckpointFile.list(directory: options.out + "/runs/1-scratch-s0/checkpoints").isEmpty)

        // again: the first run re-reported, the second resumed from its checkpoint to the
        // uninterrupted run's result
        let lines = LineBox()
        let resumed = try study(options, database: database, lines: lines).run()
        XCTAssertEqual(resumed.runs.map(\.reused), [true, false])
        XCTAssertEqual(resumed.runs.map(\.top1), whole.runs.map(\.top1))
        XCTAssertEqual(resumed.runs.map(\.top5), whole.runs.map(\.top5))
    }

    func testBadInputsAreNamed() throws {
        let database = try WordNetDatabase()
        let config = try writeConfig()
        // a model of the toy architecture without a vocabulary
        let bare = directory + "/bare"
        let args = ModelArgs(imgSize: 16, patchSize: 4, numClasses: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 2)
        try ViTModel(config: ModelConfig(modelArgs: args, pretrainedCfg: PretrainedConfig(inputSize: [3, 16, 16], numClasses: 3)), seed: 1)
            .save(directory: bare)
        let folder = directory + "/folder"
        for (name, count) in [("cat", 3), ("dog", 1)] {
            try FileManager.default.createDirectory(atPath: folder + "/" + name, withIntermediateDirectories: true)
            for i in 0..<count { try Data([0]).write(to: URL(fileURLWithPath: folder + "/\(name)/\(i).png")) }
        }
        func expectError(_ o: TransferStudyOptions, _ expected: String, line: UInt = #line) {
            XCTAssertThrowsError(try study(o, database: database).run(), line: line) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)", line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: o.out), "nothing written", line: line)
        }
        var o = TransferStudyOptions(model: bare, data: folder, out: directory + "/out")
        o.config = config
        expectError(o, "\(bare): no vocab.tsv: Transfer Init maps each class name")
        o.settings = [.random, .scratch]
        expectError(o, "\(folder): 1 class(es) with at least two images")
        o.data = directory + "/missing"
        expectError(o, "\(directory)/missing: no such file or folder")
        o.model = directory + "/nomodel"
        expectError(o, "\(directory)/nomodel: no such model directory")
        // a model of another size than the configuration
        o.model = bare
        o.data = folder
        o.overrides = ["model.embed_dim=64"]
        expectError(o, "is not the configured architecture")
        // keys the study sets itself
        o.overrides = ["run.seed=3"]
        expectError(o, "--set run.seed: eval transfer sets it for every run (--seeds)")
        // a pretraining config
        o.overrides = ["data.task=pretrain", "data.vocab=v.tsv"]
        expectError(o, "data.task is pretrain")
        // fewer training images than a batch
        try FileManager.default.createDirectory(atPath: folder + "/dog2", withIntermediateDirectories: true)
        for i in 0..<2 { try Data([0]).write(to: URL(fileURLWithPath: folder + "/dog2/\(i).png")) }
        o.overrides = []
        expectError(o, "shots 1: 2 training images, fewer than one batch (data.batch_size 4)")
    }
}

/// Collects a study's log lines.
final class LineBox {
    var lines: [String] = []
}
