import Foundation
import Shards
import Support
import ViT
import WordNet

/// One way of starting a fine-tune that the k-shot comparison sets side by side (issue 20,
/// CatLIP's Transfer Init against its alternatives), each applied to the same configuration.
public enum TransferSetting: String, CaseIterable, Sendable {
    /// From the pretrained model with CatLIP's Transfer Init: each class's head row starts from
    /// the pretrained rows of its synsets (`model.head_init: transfer`).
    case transfer
    /// From the pretrained model with a new random head (`model.head_init: random`).
    case random
    /// A linear probe: the pretrained backbone frozen, a random head trained alone
    /// (`optim.freeze: backbone`, at the study's probe learning rate).
    case probe
    /// The same architecture trained from its seeded initialisation on the same images
    /// (`model.init: ""`): what pretraining is worth.
    case scratch

    /// The setting's name in tables and plots.
    public var label: String {
        switch self {
        case .transfer: "transfer init"
        case .random: "random head"
        case .probe: "linear probe"
        case .scratch: "from scratch"
        }
    }

    /// A comma-separated list (`transfer,random,probe,scratch`), in the order given; an unknown
    /// or repeated name is an error naming it.
    public static func list(_ text: String) throws -> [TransferSetting] {
        try commaList(text, what: "settings") { part in
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let s = TransferSetting(rawValue: name) else {
                throw TrainError("settings: '\(name)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return s
        }
    }

    /// Makes the setting out of the study's configuration: where the weights and the head start,
    /// and for the probe what is trained and at which learning rate.
    func apply(to c: inout TrainConfig, model: String, probeLR: Double) {
        c.model.initFrom = self == .scratch ? "" : model
        c.model.headInit = self == .transfer ? .transfer : .random
        if self == .probe {
            c.optim.freeze = .backbone
            c.optim.lr = probeLR
        }
    }
}

/// What a k-shot transfer study compares and where it writes (`catlip eval transfer`).
public struct TransferStudyOptions: Sendable {
    /// The pretrained model directory (a catlip or timm-layout model; Transfer Init needs its
    /// vocab.tsv).
    public var model: String
    /// The labelled images: an ImageFolder or a `path<TAB>class` manifest.
    public var data: String
    /// The study's directory: splits/, runs/, transfer.json, transfer.md, transfer.svg.
    public var out: String
    /// The k values, in table order.
    public var shots: [ShotCount] = [.count(1), .count(2), .all]
    /// The seeds each setting runs with (the table shows medians over them).
    public var seeds: [Int] = [0]
    /// The settings compared, in table order.
    public var settings: [TransferSetting] = TransferSetting.allCases
    /// The fine-tuning configuration (a `data.task: classify` preset).
    public var config: String = "configs/finetune-demo.yaml"
    /// `section.key=value` overrides of every run's configuration (as `catlip train --set`).
    public var overrides: [String] = []
    /// The linear probe's peak learning rate: a head alone on frozen features wants a larger
    /// one than the whole model (timm's and the CatLIP paper's probes run at 10x or more).
    public var probeLR = 3e-3

    /// A comma-separated list of seeds (`0,1,2`), in the order given; an entry that is not a
    /// number 0 or more, or a repeated one, is an error naming it.
    public static func seeds(_ text: String) throws -> [Int] {
        try commaList(text, what: "seeds") { part in
            guard let seed = Int(part.trimmingCharacters(in: .whitespaces)), seed >= 0 else {
                throw TrainError("seeds: '\(part)' is not a seed (a number 0 or more)")
            }
            return seed
        }
    }

    /// Options with the defaults above for everything but the three paths.
    public init(model: String, data: String, out: String) {
        self.model = model
        self.data = data
        self.out = out
    }
}

/// A study stopped by a signal between or during runs; running it again continues it (a run
/// cut short resumes from its checkpoint, finished runs are re-reported).
public struct TransferStudyInterrupted: Error, CustomStringConvertible, Sendable {
    /// The run that was stopped, or the study directory when stopped between runs.
    public var location: String
    /// The message.
    public var description: String { "stopped at \(location); run the same command again to continue" }
}

/// k-shot fine-tuning of a pretrained model on labelled images it was not trained on, with
/// Transfer Init against a random head, a linear probe and training from scratch (issue 20):
/// the images are split per class (`KShotSplit`), written as manifests under OUT/splits (no
/// image is copied), and every (shots, setting, seed) is a `Trainer` run in OUT/runs/ of the
/// same configuration, tested on the same test half at its end. A run whose summary.json says it
/// finished with the same configuration is re-reported, not redone; one stopped part-way resumes
/// from its checkpoint; a finished run's checkpoints are removed (its model/ and summary.json
/// stay). OUT/study.json fingerprints the model and the split, so results of another model or
/// other images are never re-reported as these.
public final class TransferStudy {
    /// What is compared.
    public let options: TransferStudyOptions
    private let database: WordNetDatabase
    private let stop: StopRequest
    private let log: (String) -> Void
    private let reporter: (String) -> any TrainReporter

    /// A study of `options`; `log` gets one line per run and the notes, `reporter` makes the
    /// trainer's reporter for a run directory (its log lines and progress).
    public init(
        options: TransferStudyOptions, database: WordNetDatabase, stop: StopRequest, log: @escaping (String) -> Void,
        reporter: @escaping (String) -> any TrainReporter
    ) {
        self.options = options
        self.database = database
        self.stop = stop
        self.log = log
        self.reporter = reporter
    }

    /// The keys the study sets itself, and from what: overriding them would silently not apply.
    static let ownedKeys: [String: String] = [
        "data.train": "the k-shot training half of --data", "data.val": "the test half of --data",
        "run.dir": "OUT/runs/K-SETTING-sSEED", "run.seed": "--seeds", "model.init": "--model and the setting",
        "model.head_init": "the setting", "optim.freeze": "the setting (probe: backbone)",
    ]

    /// The resolved configuration every run starts from: the preset with `options.overrides`
    /// (validation only at the end of a run unless overridden: the table needs no more).
    func baseConfig() throws -> TrainConfig {
        for item in options.overrides {
            let key = String(item.prefix { $0 != "=" })
            if let owner = Self.ownedKeys[key] {
                throw TrainError("--set \(key): eval transfer sets it for every run (\(owner))")
            }
        }
        let c = try TrainConfig.load(path: options.config, overrides: ["run.eval_every=0"] + options.overrides)
        guard c.data.task == .classify else {
            throw TrainError(
                "\(options.config): data.task is \(c.data.task.rawValue); k-shot transfer fine-tunes a classifier "
                    + "(data.task: classify, as configs/finetune-demo.yaml)")
        }
        return c
    }

    /// Checks the model directory before anything is written: a model whose architecture is the
    /// configuration's, with a vocabulary when Transfer Init is compared.
    func checkModel(_ base: TrainConfig) throws {
        let model = options.model
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainError("\(model): no such model directory")
        }
        let config: ModelConfig
        do { config = try ModelConfig.read(path: model + "/config.json") } catch {
            throw TrainError("\(model): not a model directory (\(error))")
        }
        if let mismatch = Trainer.architectureMismatch(config.modelArgs, Trainer.modelConfig(base, classes: 1).modelArgs, directory: model) {
            throw TrainError("\(mismatch) (the configuration is \(options.config) with the --set overrides)")
        }
        if options.settings.contains(.transfer) && !FileManager.default.fileExists(atPath: model + "/vocab.tsv") {
            throw TrainError(
                "\(model): no vocab.tsv: Transfer Init maps each class name through the pretraining vocabulary to head rows "
                    + "(a model of catlip train or catlip import corenet has one); compare the other settings with "
                    + "--settings random,probe,scratch")
        }
    }

    /// Runs (or re-reports) every run of the study and writes OUT/transfer.json, transfer.md and
    /// transfer.svg; throws `TransferStudyInterrupted` when a signal stopped it.
    public func run() throws -> TransferReport {
        let base = try baseConfig()
        try checkModel(base)
        let images: ClassifiedImages
        do { images = try ClassifiedImages.read(options.data) } catch { throw TrainError("\(error)") }
        let split = KShotSplit(images)
        guard split.classes.count >= 2 else {
            throw TrainError(
                "\(options.data): \(split.classes.count) class(es) with at least two images (one to train on, one to test); "
                    + "k-shot transfer needs at least 2" + (split.skipped.isEmpty ? "" : " (\(split.skipped.count) with fewer left out)"))
        }
        if !split.skipped.isEmpty {
            log(
                "transfer: \(split.skipped.count) class(es) with fewer than two images left out: "
                    + split.skipped.prefix(10).map(\.name).joined(separator: ", ") + (split.skipped.count > 10 ? ", ..." : ""))
        }
        for shots in options.shots {
            let count = split.train(shots).count
            if count < base.data.batchSize {
                throw TrainError(
                    "shots \(shots): \(count) training images, fewer than one batch (data.batch_size \(base.data.batchSize)); "
                        + "lower it with --set data.batch_size=N")
            }
            let short = split.shortClasses(shots)
            if !short.isEmpty {
                log("transfer: k = \(shots): \(short.count) class(es) have fewer training images and train on what they have")
            }
        }

        // the split as manifests, and the study's identity (model and split fingerprints)
        let out = options.out
        let splits = out + "/splits"
        // the fingerprint of the paths as the data gives them (relative ones stay relative), so
        // that a checkout moved elsewhere still re-reports its runs
        var splitHash = FNV1a()
        let cwd = FileManager.default.currentDirectoryPath
        var files: [(String, String)] = []
        for (name, images) in [("test", split.test)] + options.shots.map({ ("train-\($0)", split.train($0)) }) {
            splitHash.combine(Array(try KShotSplit.manifest(images).utf8))
            files.append((splits + "/\(name).tsv", try KShotSplit.manifest(images, base: cwd)))
        }
        let identity: [String: Any] = [
            "model": options.model, "model_fingerprint": try modelFingerprint(), "data": options.data,
            "split_fingerprint": String(splitHash.value, radix: 16),
        ]
        try checkIdentity(identity)
        do {
            try FileManager.default.createDirectory(atPath: splits, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: out + "/runs", withIntermediateDirectories: true)
        } catch { throw TrainError("\(out): cannot create the study directory (\(error.localizedDescription))") }
        for (path, text) in files { try writeText(text, to: path) }
        try writeJSON(identity, to: out + "/study.json")

        var runs: [TransferRun] = []
        for shots in options.shots {
            for setting in options.settings {
                for seed in options.seeds {
                    if stop.requested { throw TransferStudyInterrupted(location: out) }
                    var c = base
                    c.data.train = splits + "/train-\(shots).tsv"
                    c.data.val = splits + "/test.tsv"
                    c.run.dir = out + "/runs/\(shots)-\(setting.rawValue)-s\(seed)"
                    c.run.seed = seed
                    setting.apply(to: &c, model: options.model, probeLR: options.probeLR)
                    do { try c.validate(file: options.config) } catch { throw TrainError("\(setting.rawValue): \(error)") }
                    let r = try runOne(c, shots: shots, setting: setting)
                    runs.append(r)
                    log(
                        String(
                            format: "transfer: k = %@, %@, seed %d: test top-1 %.4f, top-5 %.4f (%@)", shots.description, setting.label,
                            seed, r.top1, r.top5, r.reused ? "done before" : String(format: "%.0f s", r.seconds)))
                }
            }
        }
        let report = TransferReport(
            model: options.model, data: options.data, config: options.config, overrides: options.overrides, steps: base.run.steps,
            classes: split.classes.map(\.name), skipped: split.skipped, testImages: split.test.count,
            shots: options.shots.map { s in
                TransferReport.Shots(shots: s, trainImages: split.train(s).count, shortClasses: split.shortClasses(s).count)
            },
            settings: options.settings, seeds: options.seeds, runs: runs)
        try writeText(report.markdown(), to: out + "/transfer.md")
        try writeText(report.svg(), to: out + "/transfer.svg")
        try writeText(String(decoding: try report.json(), as: UTF8.self) + "\n", to: out + "/transfer.json")
        return report
    }

    /// One run: re-reported when it finished with this configuration, resumed when it has a
    /// checkpoint, else trained from step 0.
    func runOne(_ c: TrainConfig, shots: ShotCount, setting: TransferSetting) throws -> TransferRun {
        let dir = c.run.dir
        let fm = FileManager.default
        if let earlier = try? String(contentsOfFile: dir + "/config.yaml", encoding: .utf8) {
            let now = c.yaml()
            if earlier != now {
                let (a, b) = (earlier.split(separator: "\n", omittingEmptySubsequences: false), now.split(separator: "\n", omittingEmptySubsequences: false))
                let line = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
                let was = line < a.count ? String(a[line]) : "(end)"
                let isNow = line < b.count ? String(b[line]) : "(end)"
                throw TrainError(
                    "\(dir): holds a run of another configuration (config.yaml line \(line + 1): '\(was)', now '\(isNow)'); "
                        + "remove it or choose another --out")
            }
            if let done = finishedRun(dir, steps: c.run.steps) {
                return TransferRun(
                    shots: shots, setting: setting, seed: c.run.seed, top1: done.top1, top5: done.top5, seconds: done.seconds,
                    runDirectory: dir, reused: true)
            }
        }
        let resume = !CheckpointFile.list(directory: dir + "/checkpoints").isEmpty
        // the reporter writes the run's train.log from the start
        do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw TrainError("\(dir): cannot create the run directory (\(error.localizedDescription))")
        }
        let trainer = Trainer(config: c, runDirectory: dir, database: database, reporter: reporter(dir), stop: stop)
        let summary = try trainer.run(resume: resume)
        if summary.interrupted { throw TransferStudyInterrupted(location: dir) }
        // the numbers as summary.json keeps them, so that a re-report prints the same digits
        guard summary.validation?.top1 != nil, let done = finishedRun(dir, steps: c.run.steps) else {
            throw TrainError("\(dir): the run ended without a test top-1 in summary.json (data.val is \(c.data.val))")
        }
        do { try fm.removeItem(atPath: dir + "/checkpoints") } catch {
            log("transfer: \(dir)/checkpoints: cannot remove (\(error.localizedDescription)); the run is done, it is not needed")
        }
        return TransferRun(
            shots: shots, setting: setting, seed: c.run.seed, top1: done.top1, top5: done.top5, seconds: done.seconds, runDirectory: dir,
            reused: false)
    }

    /// The test top-1/top-5 and training seconds of a run whose summary.json says it did all
    /// `steps`; nil when it has none or did not finish.
    func finishedRun(_ dir: String, steps: Int) -> (top1: Double, top5: Double, seconds: Double)? {
        guard let data = FileManager.default.contents(atPath: dir + "/summary.json"),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            (object["steps"] as? NSNumber)?.intValue == steps,
            let top1 = (object["val_top1"] as? NSNumber)?.doubleValue, let top5 = (object["val_top5"] as? NSNumber)?.doubleValue
        else { return nil }
        return (top1, top5, (object["train_seconds"] as? NSNumber)?.doubleValue ?? 0)
    }

    /// FNV-1a of the model's config.json, weights and vocabulary (when it has one), in hex.
    func modelFingerprint() throws -> String {
        var hash = FNV1a()
        for name in ["config.json", "model.safetensors", "vocab.tsv"] {
            let path = options.model + "/" + name
            if name == "vocab.tsv" && !FileManager.default.fileExists(atPath: path) { continue }
            do { hash.combine(try SafeFile.read(path, maxBytes: 1 << 40)) } catch let error as FileIOError {
                throw TrainError("\(path): cannot read (\(error.problem))")
            }
        }
        return String(hash.value, radix: 16)
    }

    /// Refuses a study directory whose runs were made from another model or split (its
    /// study.json differs and runs/ holds runs).
    func checkIdentity(_ identity: [String: Any]) throws {
        let path = options.out + "/study.json"
        guard let data = FileManager.default.contents(atPath: path),
            let earlier = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return }
        let runs = (try? FileManager.default.contentsOfDirectory(atPath: options.out + "/runs")) ?? []
        if runs.isEmpty { return }
        for key in ["model_fingerprint", "split_fingerprint"] where earlier[key] as? String != identity[key] as? String {
            let what = key == "model_fingerprint" ? "another model (weights or vocabulary differ)" : "another split of the images"
            throw TrainError(
                "\(options.out): its runs were made from \(what) than \(key == "model_fingerprint" ? options.model : options.data); "
                    + "remove \(options.out)/runs or choose another --out")
        }
    }

    private func writeJSON(_ object: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try writeText(String(decoding: data, as: UTF8.self) + "\n", to: path)
    }
}

/// One fine-tune of a study and its result on the test half.
public struct TransferRun: Sendable, Equatable {
    /// Training images per class.
    public var shots: ShotCount
    /// How it started.
    public var setting: TransferSetting
    /// Its seed (initialisation, order, augmentation).
    public var seed: Int
    /// Test top-1 accuracy at the end.
    public var top1: Double
    /// Test top-5 accuracy at the end.
    public var top5: Double
    /// Training seconds (over all its sessions).
    public var seconds: Double
    /// Its run directory.
    public var runDirectory: String
    /// True when it had finished before and was re-reported.
    public var reused: Bool

    /// A run's result from its fields.
    public init(
        shots: ShotCount, setting: TransferSetting, seed: Int, top1: Double, top5: Double, seconds: Double, runDirectory: String,
        reused: Bool
    ) {
        self.shots = shots
        self.setting = setting
        self.seed = seed
        self.top1 = top1
        self.top5 = top5
        self.seconds = seconds
        self.runDirectory = runDirectory
        self.reused = reused
    }
}
