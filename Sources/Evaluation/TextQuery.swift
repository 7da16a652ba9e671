import Foundation
import Support
import ViT
import WordNet

/// Words as a query over image embeddings, with no text tower: CatLIP's head is one. Row c of
/// the classifier is a direction in embedding space for synset c, so a phrase goes through
/// WordNet to synsets, the synsets to head rows (as zero-shot maps class names), and the rows
/// score every indexed image.
public struct TextQuery: Sendable, Equatable {
    /// One synset the words reached and the head rows it uses.
    public struct Synset: Sendable, Equatable {
        /// The synset's wnid.
        public var wnid: String
        /// Its first lemma.
        public var lemma: String
        /// The words of the query that named it.
        public var words: String
        /// Head rows: its own (`direct`), those below it (`hyponyms`) or the nearest above
        /// (`hypernym`).
        public var rows: [Int]
        /// Which of those routes.
        public var route: MappingRoute
    }

    /// The text as given.
    public var text: String
    /// The synsets used, in the order the words name them.
    public var synsets: [Synset]
    /// Every row used, ascending, without repeats.
    public var rows: [Int] { Array(Set(synsets.flatMap(\.rows))).sorted() }
}

/// Why words could not become a query: `code` is the error code a client sees.
public struct TextQueryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `empty_text`, `text_too_long` or `unmapped`.
    public var code: String
    /// What is wrong, naming the words.
    public var message: String

    /// The message.
    public var description: String { message }
}

/// Resolves phrases to head rows: the whole phrase first as a class name (a WordNet noun,
/// multi-word lemma or wnid, with `ClassMapper`'s hyponym and hypernym fallbacks), else each
/// synset the caption labeller finds in it (the model's label mode), each mapped the same way.
/// Safe to share between threads: the labeller (which memoises, so is not) runs under a lock.
public final class TextQueryResolver: @unchecked Sendable {
    /// Longest text accepted, in characters.
    public static let maximumCharacters = 1000
    /// The mapper onto the model's vocabulary.
    public let mapper: ClassMapper
    private let labeller: Labeller
    private let lock = NSLock()
    private let database: WordNetDatabase

    /// A resolver onto `vocabulary` with `database`, labelling phrases with `mode`.
    public init(vocabulary: Vocabulary, database: WordNetDatabase, mode: LabelMode) {
        self.mapper = ClassMapper(vocabulary: vocabulary, database: database)
        self.labeller = Labeller(database: database, mode: mode)
        self.database = database
    }

    /// The synsets and rows `text` reaches; throws naming the words when none does.
    public func resolve(_ text: String) throws(TextQueryError) -> TextQuery {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw TextQueryError(code: "empty_text", message: "the text is empty") }
        guard trimmed.count <= Self.maximumCharacters else {
            throw TextQueryError(
                code: "text_too_long", message: "the text has \(trimmed.count) characters; at most \(Self.maximumCharacters)")
        }
        func synset(_ m: ClassMapping, words: String) -> TextQuery.Synset? {
            guard m.route != .unmapped, !m.rows.isEmpty, let s = m.synset else { return nil }
            return TextQuery.Synset(
                wnid: database.wnid(s), lemma: database.lemmas(s).first ?? "", words: words, rows: m.rows, route: m.route)
        }
        // the whole phrase as one class name ("teddy bear", "sports car", "n02084071")
        let whole = mapper.map(trimmed)
        if whole.headNoun == nil, let s = synset(whole, words: trimmed) {
            return TextQuery(text: text, synsets: [s])
        }
        // else every synset the labeller finds ("red car on a street": car, street)
        var used: [TextQuery.Synset] = []
        var seen = Set<String>()
        lock.lock()
        let labels = labeller.labels(trimmed)
        lock.unlock()
        for label in labels {
            let wnid = database.wnid(label.synset)
            guard seen.insert(wnid).inserted else { continue }
            if let s = synset(mapper.map(wnid), words: label.text) { used.append(s) }
        }
        if used.isEmpty, let s = synset(whole, words: whole.headNoun ?? trimmed) { used = [s] }
        guard !used.isEmpty else {
            throw TextQueryError(
                code: "unmapped",
                message: "no word of '\(trimmed)' maps to a synset of the model's vocabulary (nouns are looked up in WordNet 3.0)")
        }
        return TextQuery(text: text, synsets: used)
    }
}

/// How head rows score an image (e: its pooled embedding, ê = e/|e|, w_r and b_r: row r's
/// weights and bias). The daemon's index keeps ê and |e|.
public enum TextSearchRule: String, Sendable, CaseIterable, Codable {
    /// cos(ê, Σ_r w_r/|w_r|): every row counts alike, whatever its norm.
    case cosine
    /// ê · Σ_r w_r: rows with larger norms count more; the image's norm ignored.
    case sum
    /// Σ_r (e · w_r + b_r): the summed logits, as trained (the bias is a constant per query;
    /// the image's norm enters).
    case logit
    /// Σ_r σ(e · w_r + b_r): the summed probabilities of the rows (bias and norm enter).
    case probability
}

/// Scores index rows (unit embeddings with their norms) against a text query's head rows.
public struct TextQueryScorer: Sendable {
    /// Head weights (V, D) and bias (V).
    let weights: [Float], bias: [Float]
    /// Embedding width D and head rows V.
    public let dim: Int, classes: Int

    /// A scorer with the head of `model`.
    public init(model: ViTModel) {
        weights = Array(model.parameter("head.weight"))
        bias = Array(model.parameter("head.bias"))
        dim = model.dim
        classes = model.numClasses
    }

    /// The query direction under the dot-product rules (`cosine`, `sum`, `logit`), D floats.
    public func direction(rows: [Int], rule: TextSearchRule) -> [Float] {
        var q = [Float](repeating: 0, count: dim)
        for r in rows where r >= 0 && r < classes {
            let w = weights[(r * dim)..<((r + 1) * dim)]
            var scale: Float = 1
            if rule == .cosine {
                let n = w.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                scale = n > 0 ? 1 / n : 0
            }
            for (j, v) in w.enumerated() { q[j] += scale * v }
        }
        return q
    }

    /// Scores of `count` unit embeddings (row-major, `dim` each) whose original norms are
    /// `norms` (nil: all 1, an index written before norms were kept; `logit` and `probability`
    /// then score the unit embeddings) for `rows` under `rule`. Higher is better.
    public func scores(
        embeddings: UnsafeBufferPointer<Float>, norms: [Float]?, count: Int, rows: [Int], rule: TextSearchRule
    ) -> [Float] {
        let valid = rows.filter { $0 >= 0 && $0 < classes }
        var out = [Float](repeating: 0, count: count)
        func dot(_ i: Int, _ q: ArraySlice<Float>) -> Float {
            var s: Float = 0
            let base = i * dim
            var j = 0
            for v in q {
                s += embeddings[base + j] * v
                j += 1
            }
            return s
        }
        switch rule {
        case .cosine, .sum, .logit:
            let q = direction(rows: valid, rule: rule)
            for i in 0..<count {
                let d = dot(i, q[...])
                out[i] = rule == .logit ? d * (norms?[i] ?? 1) : d
            }
        case .probability:
            for r in valid {
                let w = weights[(r * dim)..<((r + 1) * dim)]
                for i in 0..<count {
                    let logit = dot(i, w) * (norms?[i] ?? 1) + bias[r]
                    out[i] += 1 / (1 + exp(-logit))
                }
            }
        }
        return out
    }
}

/// Text search measured on labelled images: each class name is a word query, and the images of
/// that class are its relevant set; precision@k of each rule's ranking against a random one.
public enum TextSearchEvaluation {
    /// One rule's figures.
    public struct RuleResult: Sendable, Equatable {
        /// The rule.
        public var rule: TextSearchRule
        /// Mean over the queried classes of the share of relevant images among the top k.
        public var precisionAtK: Double
        /// Per class (in class order; nil for a class whose name maps to nothing).
        public var perClass: [Double?]
    }

    /// The figures of every rule in `rules`: `embeddings` (count x dim unit rows) with `norms`,
    /// `labels[i]` the class of row i, `classNames` the queries. Also returns the random
    /// ranking's expected precision@k (relevant images / all, averaged over the same classes),
    /// the best any ranking can do (min(relevant, k) / k, averaged likewise) and the classes
    /// whose names map to nothing.
    public static func evaluate(
        scorer: TextQueryScorer, resolver: TextQueryResolver, embeddings: [Float], norms: [Float]?, labels: [Int],
        classNames: [String], k: Int, rules: [TextSearchRule]
    ) -> (results: [RuleResult], random: Double, ceiling: Double, unmapped: [String]) {
        let n = labels.count
        var sizes = [Int](repeating: 0, count: classNames.count)
        for l in labels where l >= 0 && l < sizes.count { sizes[l] += 1 }
        var queries: [(Int, [Int])] = []
        var unmapped: [String] = []
        for (c, name) in classNames.enumerated() {
            if let q = try? resolver.resolve(name.replacingOccurrences(of: "_", with: " ")) {
                queries.append((c, q.rows))
            } else {
                unmapped.append(name)
            }
        }
        let kk = min(k, n)
        let random = queries.isEmpty || n == 0 ? 0 : queries.map { Double(sizes[$0.0]) / Double(n) }.reduce(0, +) / Double(queries.count)
        let ceiling =
            queries.isEmpty || kk == 0
            ? 0 : queries.map { Double(min(sizes[$0.0], kk)) / Double(kk) }.reduce(0, +) / Double(queries.count)
        var results: [RuleResult] = []
        embeddings.withUnsafeBufferPointer { e in
            for rule in rules {
                var perClass = [Double?](repeating: nil, count: classNames.count)
                for (c, rows) in queries {
                    let s = scorer.scores(embeddings: e, norms: norms, count: n, rows: rows, rule: rule)
                    // top k by score, ties to the lower row
                    let top = s.indices.sorted { (s[$0], -$0) > (s[$1], -$1) }.prefix(kk)
                    perClass[c] = kk == 0 ? 0 : Double(top.filter { labels[$0] == c }.count) / Double(kk)
                }
                let values = perClass.compactMap { $0 }
                results.append(
                    RuleResult(
                        rule: rule, precisionAtK: values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count), perClass: perClass))
            }
        }
        return (results, random, ceiling, unmapped)
    }
}
