import Evaluation
import Foundation
import Support
import ViT
import WordNet

/// Search by words for the daemon: phrases resolved through WordNet to the model's head rows
/// (`TextQueryResolver`), the rows scoring the index (`TextQueryScorer`) under `rule`, the
/// default being the rule measured best on the held-out drawings (README, "Search by words").
public struct TextSearch: Sendable {
    /// Phrase to synsets and rows.
    public let resolver: TextQueryResolver
    /// Rows to scores over the index.
    public let scorer: TextQueryScorer
    /// The rule used when a request names none.
    public let rule: TextSearchRule

    /// Text search over `model`'s head, named by `vocabulary`, phrases labelled with `mode`.
    public init(model: ViTModel, vocabulary: Vocabulary, database: WordNetDatabase, mode: LabelMode, rule: TextSearchRule = .cosine) {
        resolver = TextQueryResolver(vocabulary: vocabulary, database: database, mode: mode)
        scorer = TextQueryScorer(model: model)
        self.rule = rule
    }

    /// The query's synsets as JSON fields of `w` (`synsets`: wnid, lemma, words, rows, how).
    static func write(_ query: TextQuery, to w: inout JSONWriter) {
        w.key("synsets")
        w.array { w in
            for s in query.synsets {
                w.object { w in
                    w.field("wnid", s.wnid)
                    w.field("lemma", s.lemma)
                    w.field("words", s.words)
                    w.key("rows")
                    w.array { w in for r in s.rows { w.value(r) } }
                    w.field("how", s.route.rawValue)
                }
            }
        }
    }

    /// `GET /v1/synsets?q=PHRASE`: what the phrase maps to.
    func synsetsReply(_ phrase: String) throws(ServiceError) -> String {
        let query: TextQuery
        do { query = try resolver.resolve(phrase) } catch { throw .badRequest(error.code, error.message) }
        var w = JSONWriter()
        w.object { w in
            w.field("query", phrase)
            Self.write(query, to: &w)
        }
        return w.text + "\n"
    }

    /// `POST /v1/search` with `{"text": ...}`: the index rows scoring highest on the phrase's
    /// head rows, best first; `thumbnails` adds each match's picture link.
    func searchReply(_ text: String, k: Int, rule: TextSearchRule?, index: EmbeddingIndex, thumbnails: Bool) throws(ServiceError) -> String
    {
        let query: TextQuery
        do { query = try resolver.resolve(text) } catch { throw .badRequest(error.code, error.message) }
        let used = rule ?? self.rule
        let scores = index.embeddings.withUnsafeBufferPointer {
            scorer.scores(embeddings: $0, norms: index.norms, count: index.count, rows: query.rows, rule: used)
        }
        let top = EmbeddingIndex.topK(scores[...], k: min(k, index.count))
        var w = JSONWriter()
        w.object { w in
            w.key("query")
            w.object { w in
                w.field("text", text)
                w.field("rule", used.rawValue)
                Self.write(query, to: &w)
            }
            w.key("results")
            w.array { w in
                w.object { w in
                    ServingService.write(
                        top.map { EmbeddingIndex.Match(row: $0.index, key: index.keys[$0.index], score: $0.score) },
                        thumbnails: thumbnails, to: &w)
                }
            }
        }
        return w.text + "\n"
    }
}
