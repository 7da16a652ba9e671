import ArgumentParser
import Foundation
import Imaging
import Shards
import Support

/// `catlip shards create|info`: write and inspect webdataset tar shards.
struct ShardsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shards", abstract: "Write and inspect image-text tar shards (webdataset layout).",
        subcommands: [Create.self, Info.self])

    /// `catlip shards create --manifest M --out DIR`.
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a manifest's samples as img2dataset-style shards DIR/00000.tar, ...: "
                + "KEY.jpg|png (the image bytes as they are), KEY.txt (caption), KEY.json "
                + "(key, source path, caption); KEY = 5-digit shard + 4-digit index. "
                + "Deterministic for the same input; unreadable or non-JPEG/PNG images are skipped "
                + "and reported.")

        @Option(help: "Manifest: TSV (path<TAB>caption) or JSONL ({\"image\", \"caption\"}).")
        var manifest: String

        @Option(help: "Output folder.")
        var out: String

        @Option(name: .customLong("per-shard"), help: "Samples per shard.")
        var perShard: Int = 1000

        @OptionGroup var fileLimit: MaxFileOption

        func validate() throws {
            if perShard < 1 || perShard > 10_000 { throw ValidationError("--per-shard must be in 1...10000") }
        }

        func run() throws {
            let path = self.manifest
            let manifest = try cliRun { try Manifest(path: path) }
            for problem in manifest.problems.prefix(20) { printError("skipped \(problem)") }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw CLIError("\(out): cannot create the folder: \(error.localizedDescription)")
            }
            var skipped = SkipReport()
            var writer: TarWriter? = nil
            var shard = 0, inShard = 0, written = 0
            for sample in manifest.samples {
                let bytes: [UInt8]
                do { bytes = try readFileBytes(sample.imagePath, maxBytes: fileLimit.bytes) } catch let error as ImageError {
                    skipped.add(error.kind == .io ? "unreadable image file" : error.kind.rawValue, sample.key)
                    continue
                }
                let ext: String
                switch bytes.withUnsafeBytes({ ImageFormat.sniff($0) }) {
                case .success(.jpeg): ext = "jpg"
                case .success(.png): ext = "png"
                case .failure(let other):
                    skipped.add("unsupported format (\(other.name))", sample.key)
                    continue
                }
                if writer == nil {
                    writer = try cliRun { try TarWriter(path: out + "/" + String(format: "%05d.tar", shard)) }
                }
                let key = String(format: "%05d%04d", shard, inShard)
                let meta: [String: Any] = ["key": key, "source": sample.key, "caption": sample.caption]
                let json = try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys, .withoutEscapingSlashes])
                try cliRun {
                    try writer!.add(name: key + "." + ext, data: bytes)
                    try writer!.add(name: key + ".txt", data: Array(sample.caption.utf8))
                    try writer!.add(name: key + ".json", data: Array(json))
                }
                written += 1
                inShard += 1
                if inShard == perShard {
                    try cliRun { try writer!.finish() }
                    writer = nil
                    shard += 1
                    inShard = 0
                }
            }
            if let writer { try cliRun { try writer.finish() } }
            let shards = shard + (inShard > 0 ? 1 : 0)
            for line in skipped.lines { printError(line) }
            printJSON([
                "samples": written, "shards": shards, "skipped": skipped.total,
                "skipped_lines": manifest.problems.count, "out": out,
                "pattern": shards > 0 ? out + "/{00000..\(String(format: "%05d", shards - 1))}.tar" : "",
            ])
        }
    }

    /// `catlip shards info PATTERN`.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count samples, image formats, caption lengths and bad samples in shards "
                + "(image headers are read; --decode decodes every image).")

        @Argument(help: "Shards: 'DIR/{00000..00009}.tar' (brace patterns, :: lists).")
        var pattern: String

        @Flag(help: "Decode every image fully (slower; finds damage past the header).")
        var decode = false

        func run() throws {
            let shards = try cliRun { try expandShardList(pattern) }
            var samples = 0, formats: [String: Int] = [:], captionLengths: [Int] = []
            var skipped = SkipReport()
            var unreadableShards: [String] = []
            for shard in shards {
                let reader: ShardSampleReader
                do { reader = try ShardSampleReader(path: shard) } catch {
                    unreadableShards.append(shard)
                    printError("\(error)")
                    continue
                }
                while true {
                    let sample: ShardSample?
                    do { sample = try reader.next() } catch let error as TarError {
                        if !error.isFatal { skipped.add("bad member", "\(error)"); continue }
                        skipped.add(error.problem == .truncated ? "truncated shard" : "corrupt shard", "\(error)")
                        break
                    }
                    guard let sample else { break }
                    samples += 1
                    let name = shard + ":" + sample.key
                    guard let caption = sample.caption, !caption.allSatisfy({ $0.isWhitespace }) else {
                        skipped.add("missing or empty caption", name)
                        continue
                    }
                    captionLengths.append(caption.count)
                    guard let image = sample.imageBytes else {
                        skipped.add("no image member", name)
                        continue
                    }
                    do {
                        let info = try ImageDecoder.info(image.bytes, source: name)
                        if decode { _ = try ImageDecoder.decode(image.bytes, source: name) }
                        formats[info.format.rawValue, default: 0] += 1
                    } catch let error as ImageError {
                        skipped.add(error.kind.rawValue, name)
                    }
                }
                for (reason, count) in reader.skippedCounts { for _ in 0..<count { skipped.add("member skipped: \(reason.rawValue)", shard) } }
            }
            captionLengths.sort()
            for line in skipped.lines { printError(line) }
            printJSON([
                "shards": shards.count, "unreadable_shards": unreadableShards.count, "samples": samples,
                "formats": formats, "bad_samples": skipped.total, "bad_by_reason": skipped.counts,
                "caption_chars": captionLengths.isEmpty ? [:] as [String: Int] : [
                    "min": captionLengths.first!, "median": captionLengths[captionLengths.count / 2],
                    "max": captionLengths.last!,
                ],
            ])
            if let first = unreadableShards.first {
                throw CLIError("\(unreadableShards.count) of \(shards.count) shards cannot be read (first: \(first))")
            }
        }
    }
}
