import ArgumentParser
import Distributed
import Foundation
import Training
import WordNet

/// `catlip train`: the pretraining job.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Pretrain a ViT on image-text data the CatLIP way (captions → WordNet synsets → "
            + "multi-label BCE), with checkpoints that resume exactly.",
        discussion: """
            The run directory gets config.yaml (resolved), vocab.tsv, metrics.jsonl, train.log,
            checkpoints/ (atomic; the last run.keep_checkpoints kept), loss.svg, summary.json and
            model/ (config.json, model.safetensors, vocab.tsv: ready for embed, eval and serve).
            SIGINT or SIGTERM checkpoints after the current step and stops (a second one stops at
            once); --resume RUN_DIR continues from the newest readable checkpoint and gives the
            same losses and bit-identical weights as an uninterrupted run.
            """)

    @Option(help: "YAML config (see configs/): sections data, model, optim, run.")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key, e.g. --set optim.lr=5e-4 (repeatable; keys: --list-keys).", valueName: "section.key=value"))
    var overrides: [String] = []

    @Flag(help: "List every config key with its default, its values and its meaning, and exit.")
    var listKeys = false

    @Option(help: ArgumentHelp("Continue the run in this directory from its newest readable checkpoint.", valueName: "RUN_DIR"))
    var resume: String?

    @OptionGroup var wordnet: WordNetDirectoryOption

    func validate() throws {
        if listKeys { return }
        if (config == nil) == (resume == nil) { throw ValidationError("give --config FILE to start a run, or --resume RUN_DIR to continue one") }
    }

    func run() throws {
        if listKeys { return print(TrainConfig.keysHelp) }
        var trainConfig: TrainConfig
        var runDirectory: String
        if let resume {
            let path = resume + "/config.yaml"
            guard FileManager.default.fileExists(atPath: path) else { throw CLIError("\(resume): not a run directory (no config.yaml)") }
            for item in overrides {
                let key = String(item.prefix { $0 != "=" })
                if !TrainConfig.resumableKeys.contains(key) {
                    throw CLIError("--set \(key): cannot change on resume (allowed: \(TrainConfig.resumableKeys.sorted().joined(separator: ", ")))")
                }
            }
            trainConfig = try cliRun { try TrainConfig.load(path: path, overrides: overrides) }
            runDirectory = resume
        } else {
            trainConfig = try cliRun { try TrainConfig.load(path: config!, overrides: overrides) }
            if trainConfig.run.dir.isEmpty {
                let name = URL(fileURLWithPath: config!).deletingPathExtension().lastPathComponent
                let stamp = DateFormatter()
                stamp.dateFormat = "yyyyMMdd-HHmmss"
                stamp.timeZone = TimeZone(identifier: "UTC")
                trainConfig.run.dir = "runs/\(name)-\(stamp.string(from: Date()))"
            }
            runDirectory = trainConfig.run.dir
        }
        // under mpirun: one data-parallel rank of the job (rank 0 names the run directory)
        let reducer = try cliRun { try makeReducer(timeout: trainConfig.run.commTimeout) }
        if reducer.worldSize > 1 {
            let shared = try cliRun { try reducer.broadcast(Array(runDirectory.utf8)) }
            runDirectory = String(decoding: shared, as: UTF8.self)
            trainConfig.run.dir = runDirectory
        }
        if reducer.rank == 0 {
            try cliRun { try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true) }
        }
        let database = try wordnet.load()
        let stop = StopRequest()
        stop.installSignalHandlers()
        if reducer.rank != 0 {
            // the other ranks train in step and stay quiet; rank 0 reports for the job
            let trainer = Trainer(
                config: trainConfig, runDirectory: runDirectory, database: database, reporter: QuietReporter(), stop: stop,
                reducer: reducer)
            let summary: TrainSummary
            do { summary = try trainer.run(resume: resume != nil) } catch {
                throw CLIError("rank \(reducer.rank) of \(reducer.worldSize): \(error)")
            }
            reducer.finalize()
            if summary.interrupted { throw ExitCode(stop.signalName == "SIGINT" ? 130 : 143) }
            return
        }
        let reporter = ConsoleReporter(logPath: runDirectory + "/train.log")
        let trainer = Trainer(
            config: trainConfig, runDirectory: runDirectory, database: database, reporter: reporter, stop: stop, reducer: reducer)
        let summary: TrainSummary
        do {
            summary = try trainer.run(resume: resume != nil)
        } catch {
            reporter.finishProgress()
            reporter.append("error: \(error)")
            throw CLIError(reducer.worldSize > 1 ? "rank 0 of \(reducer.worldSize): \(error)" : "\(error)")
        }
        reporter.finishProgress()
        reporter.report(summary)
        reducer.finalize()
        if summary.interrupted { throw ExitCode(stop.signalName == "SIGINT" ? 130 : 143) }
    }
}

/// The reporter of ranks other than 0 in a data-parallel job: rank 0 reports for all.
final class QuietReporter: TrainReporter {
    func log(_ line: String) {}
    func progress(step: Int, total: Int, loss: Double, lr: Double, imagesPerSecond: Double, etaSeconds: Double) {}
}

/// Log lines to stdout and train.log; on a terminal, a live progress line on stderr.
final class ConsoleReporter: TrainReporter {
    private let logHandle: FileHandle?
    private let terminal = isatty(STDERR_FILENO) != 0
    private var lastDraw = 0.0
    private var drawn = false
    /// Whether log lines are printed too (false: train.log only, as each run of eval transfer).
    private let echo: Bool
    /// Put before the progress line ("1-transfer-s0: ").
    private let label: String

    init(logPath: String, echo: Bool = true, label: String = "") {
        self.echo = echo
        self.label = label
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        logHandle = FileHandle(forWritingAtPath: logPath)
        logHandle?.seekToEndOfFile()
    }

    func log(_ line: String) {
        if echo {
            clear()
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        append(line)
    }

    /// Appends a line to train.log only.
    func append(_ line: String) {
        try? logHandle?.write(contentsOf: Data((line + "\n").utf8))
    }

    func progress(step: Int, total: Int, loss: Double, lr: Double, imagesPerSecond: Double, etaSeconds: Double) {
        guard terminal else { return }
        let t = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        if t - lastDraw < 0.25 && step < total { return }
        lastDraw = t
        let line = String(
            format: "\r\u{1B}[K  %@step %d/%d  loss %.4f  lr %.2e  %.0f img/s  ETA %@", label, step, total, loss, lr,
            imagesPerSecond, duration(etaSeconds))
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func finishProgress() { clear() }

    private func clear() {
        if drawn {
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
            drawn = false
        }
    }

    /// The end-of-run summary.
    func report(_ s: TrainSummary) {
        var lines: [String] = []
        lines.append(s.interrupted ? "interrupted at step \(s.steps) of \(s.totalSteps)" : "done: \(s.steps) steps")
        lines.append(String(format: "  %d images in %@ (%.1f images/s), %d samples skipped, %d non-finite steps skipped",
                            s.samplesSeen, duration(s.trainSeconds), Double(s.samplesSeen) / max(1e-9, s.trainSeconds), s.skippedSamples, s.badSteps))
        if let f = s.firstLoss, let l = s.lastLoss { lines.append(String(format: "  loss %.4f (first interval) -> %.4f (last)", f, l)) }
        if s.lossCurve.count > 1 { lines.append("  loss curve (log scale): " + sparkline(s.lossCurve, width: 60)) }
        if let v = s.validation, let top1 = v.top1, let top5 = v.top5 {
            lines.append(String(format: "  validation top-1 %.4f, top-5 %.4f (%d images, %d classes present, %d skipped)",
                                top1, top5, v.images, v.classes, v.skipped))
        } else if let v = s.validation {
            lines.append(String(format: "  validation mAP %.4f vs frequency baseline %.4f (%d images, %d classes present, %d skipped)",
                                v.map, v.baselineMap, v.images, v.classes, v.skipped))
        }
        if !s.skipReport.isEmpty { lines.append("  skipped samples:\n    " + s.skipReport.replacingOccurrences(of: "\n", with: "\n    ")) }
        lines.append("  run: \(s.runDirectory) (metrics.jsonl, loss.svg, summary.json)")
        if let m = s.modelDirectory { lines.append("  model: \(m)") }
        for line in lines { log(line) }
    }
}

/// A one-line chart of positive values on a log scale: at most `width` bars, each the mean of
/// its bucket, from the lowest block (minimum) to the full block (maximum).
func sparkline(_ values: [Double], width: Int) -> String {
    let finite = values.filter { $0.isFinite && $0 > 0 }
    guard finite.count > 1 else { return "" }
    let buckets = min(width, finite.count)
    let means = (0..<buckets).map { b -> Double in
        let part = finite[(b * finite.count / buckets)..<((b + 1) * finite.count / buckets)]
        return log(part.reduce(0, +) / Double(part.count))
    }
    let (lo, hi) = (means.min()!, means.max()!)
    let blocks = Array("▁▂▃▄▅▆▇█")
    return String(means.map { hi > lo ? blocks[Int(((($0 - lo) / (hi - lo)) * 7).rounded())] : blocks[0] })
        + String(format: "  (%.4g -> %.4g)", exp(means.first!), exp(means.last!))
}

/// "1h02m", "4m12s", "35s".
func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
