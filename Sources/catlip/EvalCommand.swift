import ArgumentParser
import Evaluation
import Foundation
import WordNet

/// `catlip eval ...`: what a pretrained head knows about a labelled image set.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a trained model through its vocabulary head.",
        subcommands: [Map.self])

    /// `catlip eval map`: class names or wnids to head rows, without evaluating.
    struct Map: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how dataset classes map to rows of the model's head: one JSON line per "
                + "class (synset, route direct|hyponyms|hypernym|unmapped, rows, ambiguous "
                + "senses, classes sharing rows), then a coverage line on stderr.")

        @Option(help: "Model directory (its vocab.tsv gives the rows).")
        var model: String

        @Option(name: .customLong("wordnet"), help: "WordNet 3.0 database folder.")
        var wordnet: String = WordNetDatabase.defaultDirectory

        @Argument(help: "Classes: names (\"teddy bear\", dogs) or wnids (n02084071).")
        var classes: [String]

        func validate() throws {
            if classes.isEmpty { throw ValidationError("give at least one class") }
        }

        func run() throws {
            let database = try cliRun { try WordNetDatabase(directory: wordnet) }
            let vocabulary = try cliRun { try Vocabulary.load(path: model + "/vocab.tsv", database: database) }
            let mapper = ClassMapper(vocabulary: vocabulary, database: database)
            var counts: [MappingRoute: Int] = [:]
            for m in mapper.map(classes) {
                counts[m.route, default: 0] += 1
                var object: [String: Any] = [
                    "class": m.query, "route": m.route.rawValue, "note": m.note,
                    "rows": m.rows.map { ["index": $0, "wnid": vocabulary.entries[$0].wnid, "lemma": vocabulary.entries[$0].lemmas.first ?? ""] },
                    "alternatives": m.alternatives.map { database.wnid($0) },
                    "shared_with": m.sharedWith,
                ]
                if let s = m.synset {
                    object["synset"] = database.wnid(s)
                    object["lemma"] = database.lemmas(s).first ?? ""
                }
                if let d = m.hypernymDistance { object["hypernym_distance"] = d }
                printJSON(object)
            }
            printError(MappingRoute.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", "))
        }
    }
}
