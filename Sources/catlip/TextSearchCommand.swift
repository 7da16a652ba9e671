import ArgumentParser
import Evaluation
import Foundation
import Serving
import ViT
import WordNet

/// `catlip eval text-search`: word queries through the head rows, measured on an index of
/// labelled images.
struct TextSearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-search",
        abstract: "Measure search by words (class name -> synsets -> head rows -> nearest indexed images): "
            + "precision@k of each scoring rule on an index of an ImageFolder, against a random ranking.",
        discussion: "Each class folder's name is a query; the indexed images under that folder are its relevant set. "
            + "Build the index of the same folder first (catlip index build --model M --out IDX DIR).")

    @Option(help: "Model directory (its vocab.tsv names the head's rows).")
    var model: String

    @Option(help: "Index of the folder's images (catlip index build).")
    var index: String

    @Option(help: "ImageFolder: one folder per class, named by a noun or wnid.")
    var data: String

    @Option(help: "Results per query.")
    var k: Int = 10

    @Option(help: "Caption labeller mode for phrases that are not one class name.")
    var labelMode: LabelMode = .corenet

    @OptionGroup var wordnet: WordNetDirectoryOption

    @Option(help: "Write per-class precision for every rule to this JSON file.")
    var json: String?

    func validate() throws {
        guard (1...1000).contains(k) else { throw ValidationError("--k must be in 1...1000") }
    }

    func run() throws {
        let vit = try cliRun { try ViTModel.load(directory: model) }
        let vocabulary = try cliRun { try Vocabulary.load(path: model + "/vocab.tsv") }
        let database = try wordnet.load()
        let idx = try cliRun { try EmbeddingIndex.read(path: index) }
        guard idx.dim == vit.dim else { throw CLIError("\(index): embeddings of \(idx.dim) values, the model's \(vit.dim)") }
        let root = URL(fileURLWithPath: data).standardized.path
        let classNames = try FileManager.default.contentsOfDirectory(atPath: root).filter {
            var d: ObjCBool = false
            return FileManager.default.fileExists(atPath: root + "/" + $0, isDirectory: &d) && d.boolValue
        }.sorted()
        guard !classNames.isEmpty else { throw CLIError("\(data): no class folders") }
        let classIndex = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        // a row's class: the first folder of its key below the data root
        let labels = idx.keys.map { key -> Int in
            let path = URL(fileURLWithPath: key).standardized.path
            guard path.hasPrefix(root + "/") else { return -1 }
            let rest = path.dropFirst(root.count + 1)
            return rest.split(separator: "/").first.flatMap { classIndex[String($0)] } ?? -1
        }
        let labelled = labels.filter { $0 >= 0 }.count
        guard labelled > 0 else { throw CLIError("\(index): no row's key lies under \(data); index that folder") }
        let resolver = TextQueryResolver(vocabulary: vocabulary, database: database, mode: labelMode)
        let (results, random, ceiling, unmapped) = TextSearchEvaluation.evaluate(
            scorer: TextQueryScorer(model: vit), resolver: resolver, embeddings: idx.embeddings, norms: idx.norms,
            labels: labels, classNames: classNames, k: k, rules: TextSearchRule.allCases)
        for r in results {
            printJSON([
                "rule": r.rule.rawValue, "k": k, "precision_at_k": (r.precisionAtK * 10_000).rounded() / 10_000,
                "random": (random * 10_000).rounded() / 10_000, "ceiling": (ceiling * 10_000).rounded() / 10_000,
                "queries": classNames.count - unmapped.count,
                "unmapped": unmapped.count, "rows": idx.count, "labelled_rows": labelled, "norms": idx.norms != nil,
            ])
        }
        if let json {
            var perRule: [String: Any] = [:]
            for r in results {
                var perClass: [String: Any] = [:]
                for (c, v) in r.perClass.enumerated() { perClass[classNames[c]] = v.map { $0 as Any } ?? NSNull() }
                perRule[r.rule.rawValue] = ["precision_at_k": r.precisionAtK, "per_class": perClass]
            }
            let object: [String: Any] = ["k": k, "random": random, "ceiling": ceiling, "unmapped": unmapped, "rules": perRule]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
            try writeAtomic(Array(data), to: json)
        }
    }
}
