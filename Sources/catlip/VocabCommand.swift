import ArgumentParser
import Dispatch
import Foundation
import Shards
import Training
import WordNet

/// `catlip vocab ...`: captions to synsets, vocabularies and label caches.
struct VocabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vocab",
        abstract: "Label captions with WordNet synsets; build vocabularies and label caches.",
        subcommands: [Label.self, Build.self, Import.self, Cache.self])

    /// `catlip vocab label "caption" ...`: JSON lines with the synsets of each caption.
    struct Label: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one JSON line per caption: its synsets (wnid, name, lemma, "
                + "lexicographer file, the caption text matched, why this sense).",
            discussion: "Captions come from the arguments, or one per line from standard input.")

        @OptionGroup var wordnet: WordNetOptions

        @Option(help: "A vocab.tsv: adds each synset's class index (null when not in it).")
        var vocab: String?

        @Argument(help: "Captions.")
        var captions: [String] = []

        func run() throws {
            let database = try wordnet.load()
            let vocabulary = try vocab.map { path in try cliRun { try Vocabulary.load(path: path, database: database) } }
            let labeller = Labeller(database: database, mode: wordnet.mode)
            var input = captions
            if input.isEmpty {
                while let line = readLine(strippingNewline: true) { input.append(line) }
            }
            for caption in input {
                var synsets: [[String: Any]] = []
                for label in labeller.labels(caption) {
                    var entry: [String: Any] = [
                        "wnid": database.wnid(label.synset), "name": database.name(label.synset),
                        "lemma": label.lemma, "text": label.text,
                        "lexname": database.lexicographerFile(label.synset), "reason": label.reason,
                    ]
                    if let vocabulary {
                        entry["class_index"] = vocabulary.classIndex(wnid: database.wnid(label.synset)) ?? NSNull()
                    }
                    synsets.append(entry)
                }
                printJSON(["caption": caption, "synsets": synsets])
            }
        }
    }

    /// `catlip vocab build`: count synsets over a manifest's captions, keep the frequent ones.
    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count synsets over all captions and write vocab.tsv (descending count, "
                + "ties by wnid), keeping synsets seen at least --min-count times.")

        @OptionGroup var wordnet: WordNetOptions

        @Option(help: "Manifest (TSV/JSONL), shards ('DIR/{00000..00009}.tar') or folder whose captions are counted.")
        var data: String

        @Option(name: .customLong("min-count"), help: "Drop synsets seen in fewer captions (CatLIP: 500).")
        var minCount: Int = 500

        @Option(name: .customLong("max-size"), help: "Keep at most this many classes.")
        var maxSize: Int?

        @Option(help: "Output vocab.tsv.")
        var out: String

        @Option(
            name: .customLong("stop-list"),
            help: "Keep every noun sense of these words out of the vocabulary: 'default' (medium, licence, style and number words such as illustration, vector, free, icon, two) or a file with one word or wnid per line. Off by default (the released CatLIP vocabulary's rule).")
        var stopList: String?

        @OptionGroup var threads: ThreadsOption

        func validate() throws {
            if minCount < 1 { throw ValidationError("--min-count must be at least 1") }
            if let m = maxSize, m < 1 { throw ValidationError("--max-size must be positive") }
        }

        func run() throws {
            let database = try wordnet.load()
            let source = try openSource(data, shuffle: false)
            let captions = try cliRun { try LabelFiles.captions(of: source) }.map(\.caption)
            let mode = wordnet.mode
            let perCaption = parallelMap(count: captions.count, threads: threads.count, makeState: {
                Labeller(database: database, mode: mode)
            }) { labeller, i in labeller.synsets(captions[i]) }
            var counts: [SynsetID: Int] = [:]
            var unlabelled = 0
            for synsets in perCaption {
                if synsets.isEmpty { unlabelled += 1 }
                for s in synsets { counts[s, default: 0] += 1 }
            }
            var stopped = Set<SynsetID>()
            if let stopList {
                let list = stopList == "default" ? StopList.default : try cliRun { try StopList.read(path: stopList) }
                let (synsets, unknown) = list.synsets(in: database)
                if !unknown.isEmpty && stopList != "default" {
                    throw CLIError("\(stopList): not a WordNet noun or wnid: \(unknown.prefix(10).joined(separator: ", "))\(unknown.count > 10 ? " (\(unknown.count) in all)" : "")")
                }
                stopped = synsets
            }
            let vocabulary = Vocabulary.build(
                counts: counts, database: database, minimumCount: minCount, maximumSize: maxSize, excluding: stopped)
            // captions left without any class once the stopped synsets are gone
            let kept = Set(vocabulary.entries.map(\.wnid))
            let unlabelledAfter = perCaption.filter { !$0.contains { kept.contains(database.wnid($0)) } }.count
            try cliRun { try vocabulary.write(path: out) }
            printJSON([
                "captions": captions.count, "captions_without_label": unlabelled,
                "captions_without_class": unlabelledAfter,
                "synsets_seen": counts.count, "classes": vocabulary.count, "mode": mode.rawValue, "out": out,
                "skipped_lines": (source as? ManifestSource)?.problems.count ?? 0,
                "stopped_classes": counts.filter { $0.value >= minCount && stopped.contains($0.key) }.count,
            ])
        }
    }

    /// `catlip vocab import`: a corenet key listing as vocab.tsv.
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a listing of corenet vocabulary keys (n5928118, one per line, "
                + "optionally with a count) into vocab.tsv in the same order.")

        @OptionGroup var wordnet: WordNetOptions

        @Argument(help: "The key listing.")
        var keys: String

        @Option(help: "Output vocab.tsv.")
        var out: String

        func run() throws {
            let database = try wordnet.load()
            let vocabulary = try cliRun { try Vocabulary.load(path: keys, database: database) }
            try cliRun { try vocabulary.write(path: out) }
            printJSON(["classes": vocabulary.count, "out": out])
        }
    }

    /// `catlip vocab cache`: precompute every sample's class indices.
    struct Cache: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Label every caption once under a vocabulary and store the class indices "
                + "beside the data (M.tsv.labels, or NNNNN.tar.labels per shard), for training to read.")

        @OptionGroup var wordnet: WordNetOptions

        @Option(help: "Manifest (TSV/JSONL) or shards ('DIR/{00000..00009}.tar').")
        var data: String

        @Option(help: "The vocab.tsv the class indices refer to.")
        var vocab: String

        @Option(help: "Output file for a manifest (default: its path + .labels).")
        var out: String?

        @OptionGroup var threads: ThreadsOption

        func run() throws {
            let database = try wordnet.load()
            let vocabulary = try cliRun { try Vocabulary.load(path: vocab, database: database) }
            let source = try openSource(data, shuffle: false)
            let files = LabelFiles.dataFiles(of: source)
            guard !files.isEmpty else { throw CLIError("\(data): label caches are kept for manifests and shards") }
            let samples = try cliRun { try LabelFiles.captions(of: source) }
            var written: [String] = []
            var total = 0, unlabelled = 0
            for file in files {
                let mine = samples.filter { $0.file == file }
                let cache = LabelCache.build(
                    keys: mine.map(\.key), captions: mine.map(\.caption), vocabulary: vocabulary,
                    database: database, mode: wordnet.mode, threads: threads.count)
                let path = files.count == 1 ? (out ?? LabelFiles.path(for: file)) : LabelFiles.path(for: file)
                try cliRun { try cache.write(path: path) }
                written.append(path)
                total += cache.count
                unlabelled += (0..<cache.count).filter { cache.labels(at: $0).isEmpty }.count
            }
            printJSON([
                "samples": total, "samples_without_label": unlabelled, "classes": vocabulary.count,
                "files": written.count, "out": written.count == 1 ? written[0] : written.first.map { $0 + " ..." } ?? "",
            ])
        }
    }
}
