import ArgumentParser
import Dispatch
import Foundation
import Imaging
import Support
import Synchronization
import WordNet

/// `catlip bench ...`: throughput measurements printed as one JSON line each.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure throughput; prints one JSON line.",
        subcommands: [Train.self, Infer.self, Pipeline.self, Labels.self, Loader.self, Serve.self, Allreduce.self])

    /// `catlip bench pipeline`: decode + RandomResizedCrop + flip + float CHW over a folder.
    struct Pipeline: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images per second through the training input pipeline (read file, "
                + "decode, RandomResizedCrop, flip, float CHW) over the images in a folder.")

        @Option(help: "Folder of JPEG/PNG images.")
        var images: String

        @Option(help: "Output side in pixels.")
        var size: Int = 224

        @Option(help: "Worker threads.")
        var threads: Int = 2

        @Option(help: "Timed passes over the folder (the median is reported).")
        var repeats: Int = 5

        @Option(help: "Seed of the augmentation draws.")
        var seed: UInt64 = 0

        @Flag(name: .customLong("no-reduced-decoding"), help: "Always decode JPEGs at full scale.")
        var noReducedDecoding = false

        func validate() throws {
            if size <= 0 { throw ValidationError("--size must be positive") }
            if threads <= 0 { throw ValidationError("--threads must be positive") }
            if repeats <= 0 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let files = try cliRun { try listFiles(images) }
            if files.isEmpty { throw CLIError("\(images): no files") }
            let transform = TrainTransform(size: size, reducedDecoding: !noReducedDecoding)
            // Warm-up pass (page cache, buffers), then timed passes.
            var errors = 0
            var rates: [Double] = []
            for pass in 0...repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                errors = runPass(files: files, transform: transform, pass: pass)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if pass > 0 { rates.append(Double(files.count) / seconds) }
            }
            let median = rates.sorted()[rates.count / 2]
            let json: [String: Any] = [
                "bench": "pipeline", "size": size, "threads": threads, "images": files.count,
                "errors": errors, "reduced_decoding": !noReducedDecoding,
                "images_per_s": (median * 10).rounded() / 10,
                "runs": rates.map { ($0 * 10).rounded() / 10 },
            ]
            let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }

        /// One pass over `files` by `threads` workers; returns the number of failed images.
        func runPass(files: [String], transform: TrainTransform, pass: Int) -> Int {
            let next = Atomic<Int>(0)
            let failures = Atomic<Int>(0)
            let seed = self.seed
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                let workspace = ResampleWorkspace()
                var output = [Float](repeating: 0, count: transform.outputCount)
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if i >= files.count { break }
                    var generator = SeededGenerator(
                        seed: seed &+ UInt64(pass) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i))
                    do {
                        let bytes = try readFileBytes(files[i])
                        try output.withUnsafeMutableBufferPointer {
                            try transform.apply(
                                bytes, source: files[i], using: &generator, workspace: workspace,
                                into: $0)
                        }
                    } catch {
                        failures.wrappingAdd(1, ordering: .relaxed)
                    }
                }
            }
            return failures.load(ordering: .relaxed)
        }
    }
}

extension BenchCommand {
    /// `catlip bench labels`: captions per second through clean-up, tokenising and labelling.
    struct Labels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Captions per second through the labeller (one caption per line of "
                + "--captions), and the WordNet load time.")

        @OptionGroup var wordnet: WordNetOptions

        @Option(help: "Text file, one caption per line.")
        var captions: String

        @Option(help: "Worker threads.")
        var threads: Int = 2

        @Option(help: "Timed passes (the median is reported).")
        var repeats: Int = 3

        func validate() throws {
            if threads < 1 { throw ValidationError("--threads must be positive") }
            if repeats < 1 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let loadStart = DispatchTime.now().uptimeNanoseconds
            let database = try wordnet.load()
            let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
            guard let data = FileManager.default.contents(atPath: captions) else {
                throw CLIError("\(captions): cannot read")
            }
            let lines = textLines(data)
            let mode = wordnet.mode
            var rates: [Double] = []
            var labelled = 0, labels = 0
            for _ in 0..<repeats {
                // Fresh labellers each pass: their token memo starts empty, as in a real run.
                let start = DispatchTime.now().uptimeNanoseconds
                let counts = parallelMap(count: lines.count, threads: threads, makeState: {
                    Labeller(database: database, mode: mode)
                }) { labeller, i in labeller.synsets(lines[i]).count }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                rates.append(Double(lines.count) / seconds)
                labelled = counts.filter { $0 > 0 }.count
                labels = counts.reduce(0, +)
            }
            printJSON([
                "bench": "labels", "captions": lines.count, "threads": threads, "mode": mode.rawValue,
                "captions_per_s": (rates.sorted()[rates.count / 2]).rounded(),
                "runs": rates.map { $0.rounded() }, "wordnet_load_s": (loadSeconds * 1000).rounded() / 1000,
                "captions_with_labels": labelled, "labels": labels,
            ])
        }
    }
}

/// The regular files directly inside `directory`, sorted by name.
func listFiles(_ directory: String) throws -> [String] {
    let manager = FileManager.default
    var isDirectory: ObjCBool = false
    guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
    else { throw CLIError("\(directory): not a directory") }
    let names = try manager.contentsOfDirectory(atPath: directory).sorted()
    return names.map { directory + "/" + $0 }.filter {
        var dir: ObjCBool = false
        return manager.fileExists(atPath: $0, isDirectory: &dir) && !dir.boolValue
    }
}
