import Foundation
import Support

/// The files of a run directory, written by rank 0 alone: `config.yaml`, `vocab.tsv`,
/// `checkpoints/`, `metrics.jsonl`, `loss.svg`, `summary.json` and the exported `model/`.
/// Every file but the appended metrics is replaced crash-safely.
struct RunDirectory {
    /// The directory.
    let path: String

    var checkpoints: String { path + "/checkpoints" }
    var metrics: String { path + "/metrics.jsonl" }
    var model: String { path + "/model" }

    /// Creates the directory and writes the resolved configuration; a fresh run (`resume`
    /// false) refuses a directory that holds checkpoints of an earlier run.
    func prepare(config: TrainConfig, resume: Bool) throws {
        try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        if !resume && !CheckpointFile.list(directory: checkpoints).isEmpty {
            throw TrainError("\(path): holds checkpoints of an earlier run; resume it with --resume \(path) or choose another run.dir")
        }
        try writeText(config.yaml(), to: path + "/config.yaml")
    }

    /// Opens metrics.jsonl for appending after keeping its first `lines` lines (those the
    /// checkpoint being resumed had written); a run from step 0 starts it afresh.
    func openMetrics(keepingLines lines: Int, fresh: Bool) throws -> MetricsWriter {
        if fresh { try? FileManager.default.removeItem(atPath: metrics) }
        try truncateMetrics(lines: lines)
        return try MetricsWriter(path: metrics)
    }

    /// Keeps the first `lines` lines of metrics.jsonl (those written before the checkpoint).
    func truncateMetrics(lines: Int) throws {
        guard let data = FileManager.default.contents(atPath: metrics) else { return }
        var kept = 0
        var end = 0
        for (i, byte) in data.enumerated() where byte == UInt8(ascii: "\n") {
            if kept == lines { break }
            kept += 1
            end = i + 1
        }
        if kept < lines { throw TrainError("\(metrics): has \(kept) lines, the checkpoint expects \(lines)") }
        try writeText(String(decoding: data.prefix(end), as: UTF8.self), to: metrics)
    }

    /// Draws loss.svg from metrics.jsonl; returns the interval losses.
    func writeLossCurve() throws -> [Double] {
        guard let data = FileManager.default.contents(atPath: metrics) else { return [] }
        var points: [(x: Double, y: Double)] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let step = (object["step"] as? NSNumber)?.doubleValue
            else { continue }
            if let loss = (object["loss"] as? NSNumber)?.doubleValue { points.append((step, loss)) }
        }
        let svg = LossCurve.svg(
            series: [("loss (per log interval)", points), ("smoothed", LossCurve.smoothed(points))],
            title: "catlip train: \(URL(fileURLWithPath: path).lastPathComponent)", xLabel: "step", yLabel: "BCE loss (sum over classes)")
        try writeText(svg, to: path + "/loss.svg")
        return points.map(\.y)
    }

    /// Writes summary.json.
    func writeSummary(_ s: TrainSummary) throws {
        var object: [String: Any] = [
            "steps": s.steps, "samples": s.samplesSeen, "skipped": s.skippedSamples, "bad_steps": s.badSteps,
            "train_seconds": round2(s.trainSeconds), "model": s.modelDirectory ?? "",
        ]
        if let f = s.firstLoss { object["first_loss"] = f }
        if let l = s.lastLoss { object["last_loss"] = l }
        if let v = s.validation, let top1 = v.top1, let top5 = v.top5 {
            object["val_top1"] = top1
            object["val_top5"] = top5
            object["val_images"] = v.images
            object["val_classes"] = v.classes
            object["val_skipped"] = v.skipped
        } else if let v = s.validation {
            object["val_map"] = v.map
            object["val_baseline_map"] = v.baselineMap
            object["val_images"] = v.images
            object["val_classes"] = v.classes
            object["val_skipped"] = v.skipped
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try writeText(String(decoding: data, as: UTF8.self) + "\n", to: path + "/summary.json")
    }
}

func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }
func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }

/// Writes a text file crash-safely (`SafeFile.writeAtomically`).
func writeText(_ text: String, to path: String) throws {
    do {
        try SafeFile.writeAtomically(path, bytes: Array(text.utf8))
    } catch let error as FileIOError {
        throw TrainError("\(path): cannot write (\(error.problem))")
    }
}

/// Appends JSON lines to metrics.jsonl, flushing each.
final class MetricsWriter {
    private let handle: FileHandle
    private let path: String

    init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainError("\(path): cannot open for writing") }
        handle = h
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    /// One line with the fields in the given order.
    func write(_ fields: [(String, Any)]) throws {
        var parts: [String] = []
        for (key, value) in fields {
            let data = try JSONSerialization.data(withJSONObject: [value], options: [.fragmentsAllowed])
            var text = String(decoding: data, as: UTF8.self)
            text.removeFirst()
            text.removeLast()
            parts.append("\"\(key)\":\(text)")
        }
        let line = "{" + parts.joined(separator: ",") + "}\n"
        do { try handle.write(contentsOf: Data(line.utf8)) } catch { throw TrainError("\(path): cannot write (\(error.localizedDescription))") }
    }
}
