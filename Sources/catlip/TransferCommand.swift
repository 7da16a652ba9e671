import ArgumentParser
import Foundation
import Training

/// `catlip eval transfer`: k-shot fine-tuning of a pretrained model, Transfer Init against the
/// alternatives (the library's `TransferStudy`; this is its argument parsing and output).
struct TransferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer",
        abstract: "k-shot fine-tuning of a pretrained model on labelled images it was not trained on: Transfer Init "
            + "against a random head, a linear probe and the same model trained from scratch; prints a table of test "
            + "top-1 / top-5 (shots x setting, median over seeds) and writes OUT/transfer.md, transfer.json and "
            + "transfer.svg.",
        discussion: """
            Each class with at least two images is split alternating files in order (an ImageFolder's \
            files are sorted): the 1st, 3rd, 5th... train, the 2nd, 4th... test; k = 1 trains on each \
            class's first training image, k = all on every one, and all are tested on the same test \
            half. Classes with fewer than two images are left out and listed. The split is written as \
            path<TAB>class manifests in OUT/splits (no image is copied) and every shots x setting x seed \
            is a catlip train run of --config with --set in OUT/runs/K-SETTING-sSEED (its train.log, \
            metrics.jsonl, summary.json and model/, a classifier for eval classify and serve). Settings: \
            transfer (model.head_init transfer), random (model.head_init random), probe (random head, \
            optim.freeze backbone, optim.lr --probe-lr), scratch (model.init ""). Run again, finished \
            runs are re-reported, a run stopped part-way resumes from its checkpoint, and a finished \
            run's checkpoints are removed; OUT/study.json refuses runs of another model or split.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Labelled images: an ImageFolder (one folder per class, named by class name or wnid) or a TSV manifest path<TAB>class.")
    var data: String

    @Option(help: ArgumentHelp("Study directory: splits/, runs/, transfer.md, transfer.json, transfer.svg.", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Training images per class: positive numbers and 'all', comma-separated.", valueName: "k,..."))
    var shots = "1,2,all"

    @Option(help: ArgumentHelp("Seeds of every setting (the table shows medians), comma-separated.", valueName: "n,..."))
    var seeds = "0"

    @Option(help: ArgumentHelp("Settings compared, comma-separated: transfer, random, probe, scratch.", valueName: "name,..."))
    var settings = "transfer,random,probe,scratch"

    @Option(help: "Fine-tuning configuration (data.task classify) every run starts from.")
    var config = "configs/finetune-demo.yaml"

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key of every run, e.g. --set run.steps=100 (repeatable; keys: catlip train --list-keys; data.train, data.val, run.dir, run.seed, model.init, model.head_init and optim.freeze are the study's).", valueName: "section.key=value"))
    var overrides: [String] = []

    @Option(name: .customLong("probe-lr"), help: "Peak learning rate of the linear probe (a head alone wants a larger one).")
    var probeLR = 3e-3

    @OptionGroup var wordnet: WordNetDirectoryOption

    func validate() throws {
        do { _ = try parsed() } catch let error as TrainError { throw ValidationError(error.message) }
        if !(probeLR > 0 && probeLR.isFinite) { throw ValidationError("--probe-lr must be a positive number") }
    }

    /// The three lists, parsed.
    func parsed() throws -> (shots: [ShotCount], seeds: [Int], settings: [TransferSetting]) {
        (try ShotCount.list(shots), try TransferStudyOptions.seeds(seeds), try TransferSetting.list(settings))
    }

    func run() throws {
        let lists = try cliRun { try parsed() }
        var options = TransferStudyOptions(model: modelOptions.directory, data: data, out: out)
        (options.shots, options.seeds, options.settings) = lists
        options.config = config
        options.overrides = overrides
        options.probeLR = probeLR
        let database = try wordnet.load()
        let stop = StopRequest()
        stop.installSignalHandlers()
        var current: ConsoleReporter?  // the running fine-tune's, whose progress line a log line ends
        let study = TransferStudy(
            options: options, database: database, stop: stop,
            log: { line in
                current?.finishProgress()
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            },
            reporter: { directory in
                let reporter = ConsoleReporter(
                    logPath: directory + "/train.log", echo: false, label: URL(fileURLWithPath: directory).lastPathComponent + ": ")
                current = reporter
                return reporter
            })
        let report: TransferReport
        do {
            report = try study.run()
        } catch let stopped as TransferStudyInterrupted {
            current?.finishProgress()
            printError("\(stopped)")
            throw ExitCode(stop.signalName == "SIGINT" ? 130 : 143)
        } catch {
            current?.finishProgress()
            throw CLIError("\(error)")
        }
        let written = "written: \(out)/transfer.md, \(out)/transfer.json, \(out)/transfer.svg (runs in \(out)/runs)\n"
        FileHandle.standardOutput.write(Data((report.table() + written).utf8))
    }
}
