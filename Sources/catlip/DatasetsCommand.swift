import ArgumentParser
import Corpus
import Dispatch
import Foundation
import WordNet

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `catlip datasets ...`: corpora built from the installed data.
struct DatasetsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datasets", abstract: "Build training corpora from the installed named drawings.",
        subcommands: [Compose.self])

    /// `catlip datasets compose --objects M --out DIR`.
    struct Compose: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compose captioned scenes from named drawings (objects.jsonl of "
                + "datasets/objects/build.py) and write them, with the single drawings, as shards "
                + "DIR/NNNNN.tar (KEY.png, KEY.txt caption, KEY.json contents) plus DIR/summary.json. "
                + "The same objects, seed and options give the same bytes on any thread count.")

        @Option(help: "The drawings: objects.jsonl.")
        var objects: String = "data/objects/objects.jsonl"

        @Option(help: ArgumentHelp(
            "Held-out drawings never to use (default: heldout.jsonl beside --objects when it "
                + "exists; 'none' for no check)."))
        var heldout: String?

        @Option(help: "Output folder.")
        var out: String

        @Option(help: "Composed scenes.")
        var scenes: Int = 100_000

        @Option(help: "Scene side in pixels.")
        var size: Int = 64

        @Option(help: "Seed.")
        var seed: UInt64 = 0

        @Option(name: .customLong("per-shard"), help: "Samples per shard.")
        var perShard: Int = 1000

        @Option(help: "Single-drawing samples per drawing (0: none).")
        var singles: Int = 1

        @Option(name: .customLong("max-objects"), help: "Most drawings in a scene.")
        var maxObjects: Int = 4

        @OptionGroup var threads: ThreadsOption

        @OptionGroup var wordnet: WordNetOptions

        func validate() throws {
            if scenes < 0 || singles < 0 { throw ValidationError("--scenes and --singles must not be negative") }
            if size < 8 || size > 1024 { throw ValidationError("--size must be in 8...1024") }
            if perShard < 1 || perShard > 100_000 { throw ValidationError("--per-shard must be in 1...100000") }
            if maxObjects < 1 || maxObjects > 100 { throw ValidationError("--max-objects must be in 1...100") }
        }

        func run() throws {
            let start = DispatchTime.now().uptimeNanoseconds
            @Sendable func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            let records = try cliRun { try ObjectManifest.load(path: objects) }
            var heldoutPath = heldout
            if heldoutPath == nil {
                let sibling = URL(fileURLWithPath: objects).deletingLastPathComponent().appendingPathComponent("heldout.jsonl").path
                if FileManager.default.fileExists(atPath: sibling) { heldoutPath = sibling }
            }
            if heldoutPath == "none" { heldoutPath = nil }
            let heldoutRecords = try heldoutPath.map { path in try cliRun { try ObjectManifest.load(path: path) } } ?? []
            let database = try wordnet.load()
            let labeller = Labeller(database: database, mode: wordnet.mode)
            let library = try cliRun {
                try ObjectLibrary(records: records, heldout: heldoutRecords, size: size, labeller: labeller, threads: threads.count)
            }
            let loadSeconds = elapsed()
            printError(
                "compose: \(library.objects.count) drawings loaded from \(objects) in "
                    + String(format: "%.1f s", loadSeconds)
                    + library.skipped.keys.sorted().map { "; skipped \(library.skipped[$0]!) (\($0))" }.joined())
            for reason in library.skippedExamples.keys.sorted() where reason != "held out" {
                printError("compose: skipped (\(reason)): " + library.skippedExamples[reason]!.prefix(5).joined(separator: ", "))
            }

            let config = ComposerConfig(size: size, maxObjects: maxObjects)
            let composer = SceneComposer(library: library, config: config, seed: seed)
            let writer = CorpusWriter(
                composer: composer, scenes: scenes, singles: singles * library.objects.count, perShard: perShard)
            let total = writer.total, shards = writer.shardCount
            let terminal = isatty(STDERR_FILENO) != 0
            let composeStart = elapsed()
            let summary = try cliRun {
                try writer.write(to: out, threads: threads.count) { shardsDone, samplesDone in
                    let seconds = elapsed() - composeStart
                    let rate = Double(samplesDone) / max(seconds, 1e-9)
                    let eta = Double(total - samplesDone) / max(rate, 1e-9)
                    let line = String(
                        format: "compose: %d/%d shards, %d/%d samples, %.0f samples/s, ETA %.0f s",
                        shardsDone, shards, samplesDone, total, rate, eta)
                    if terminal {
                        FileHandle.standardError.write(Data(("\r" + line + (shardsDone == shards ? "\n" : "")).utf8))
                    } else if shardsDone % 10 == 0 || shardsDone == shards {
                        printError(line)
                    }
                }
            }
            let composeSeconds = elapsed() - composeStart

            var perSource = summary.perSource
            for object in library.objects { perSource[object.record.source, default: [:]]["drawings", default: 0] += 1 }
            let pattern = shards > 0 ? out + "/{00000..\(String(format: "%05d", shards - 1))}.tar" : ""
            // summary.json holds only what the seed determines: no times, no absolute paths.
            let report: [String: Any] = [
                "scenes": summary.scenes, "singles": summary.singles, "samples": total, "shards": summary.shards,
                "per_shard": perShard, "size": size, "seed": seed, "max_objects": maxObjects,
                "pattern": "{00000..\(String(format: "%05d", max(shards - 1, 0)))}.tar",
                "drawings": library.objects.count, "skipped_drawings": library.skipped,
                "per_source": perSource, "per_name": summary.perName, "per_noun": summary.perNoun,
                "pastes_per_scene": summary.pastesPerScene, "backgrounds": summary.backgrounds,
                "pastes_under_minimum_visible": summary.underVisible, "image_bytes": summary.imageBytes,
                "label_mode": wordnet.mode.rawValue,
            ]
            let data = try JSONSerialization.data(
                withJSONObject: report, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            let summaryPath = out + "/summary.json"
            guard FileManager.default.createFile(atPath: summaryPath, contents: data + Data("\n".utf8)) else {
                throw CLIError("\(summaryPath): cannot write the summary")
            }
            printJSON([
                "scenes": summary.scenes, "singles": summary.singles, "samples": total, "shards": summary.shards,
                "drawings": library.objects.count, "held_out_skipped": library.skipped["held out"] ?? 0,
                "nouns": summary.perNoun.count, "names": summary.perName.count,
                "load_s": (loadSeconds * 10).rounded() / 10, "compose_s": (composeSeconds * 10).rounded() / 10,
                "samples_per_s": (Double(total) / max(composeSeconds, 1e-9)).rounded(),
                "image_mb": (Double(summary.imageBytes) / 1e5).rounded() / 10,
                "pattern": pattern, "summary": summaryPath,
            ])
        }
    }
}
