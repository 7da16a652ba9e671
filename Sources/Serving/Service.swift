import Evaluation
import Foundation
import ViT
import WordNet

/// One HTTP request as the routes see it (transport-independent).
public struct ServeRequest: Sendable {
    /// `GET`, `POST`, ...
    public var method: String
    /// The request target, path and optional query (`/v1/classify?top_k=3`).
    public var uri: String
    /// The Content-Type header's value ("" when absent).
    public var contentType: String
    /// The whole body.
    public var body: [UInt8]

    /// A request from its parts.
    public init(method: String, uri: String, contentType: String = "", body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.contentType = contentType
        self.body = body
    }

    /// Whether the body is JSON to parse (an image endpoint's JSON form): such bodies are
    /// parsed off the event loop.
    public var parsesJSON: Bool { method == "POST" && contentType.lowercased().hasPrefix("application/json") }

    /// The path without the query.
    public var path: String { String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]) }

    /// The query parameters (`a=1&b=2`), form-decoded ('+' is a space, %XX a byte; a value
    /// that does not decode to UTF-8 is kept as written).
    public var query: [String: String] {
        let parts = uri.split(separator: "?", maxSplits: 1)
        guard parts.count == 2 else { return [:] }
        var out: [String: String] = [:]
        func decode(_ s: Substring) -> String {
            let spaced = s.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        for pair in parts[1].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return out
    }
}

/// One HTTP response: status, content type, body and extra headers.
public struct ServeReply: Sendable {
    /// HTTP status code.
    public var status: Int
    /// Content-Type header.
    public var contentType: String
    /// The body.
    public var body: String
    /// A binary body (a thumbnail), sent instead of `body` when set.
    public var bytes: [UInt8]?
    /// Further headers (`Allow`, `Retry-After`).
    public var headers: [(String, String)]
    /// The error code when this is an error reply (for metrics).
    public var errorCode: String?

    /// A reply from its parts.
    public init(status: Int, contentType: String = "application/json", body: String, headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// A binary reply (`bytes` as the body).
    public init(status: Int, contentType: String, bytes: [UInt8], headers: [(String, String)] = []) {
        self.init(status: status, contentType: contentType, body: "", headers: headers)
        self.bytes = bytes
    }

    /// The JSON error reply for `error` (with Retry-After when it carries one).
    public init(error: ServiceError) {
        self.init(status: error.status, body: error.json + "\n",
                  headers: error.retryAfter.map { [("Retry-After", String($0))] } ?? [])
        errorCode = error.code
    }
}

/// The routes of DESIGN.md's daemon protocol over a model, its vocabulary and an optional
/// index: `POST /v1/embed`, `POST /v1/classify`, `POST /v1/search`, `GET /healthz`,
/// `GET /metrics`. Image endpoints take the image as the body (any content type but JSON) or
/// JSON `{"images": [base64, ...]}` (or `"image"`); `/v1/search` also takes
/// `{"embedding": [...]}` or `{"embeddings": [[...], ...]}`; `top_k` as a JSON field or a
/// query parameter.
public final class ServingService: Sendable {
    /// The engine that runs the model.
    public let engine: InferenceEngine
    /// Synsets of a pretrained head for `/v1/classify` (nil: classes reported by index only).
    public let vocabulary: Vocabulary?
    /// Class names of a fine-tuned classifier's head (its `classes.tsv`): `/v1/classify` then
    /// answers with the names and softmax probabilities.
    public let classes: [String]?
    /// Rows for `/v1/search` (nil: search answers 400 `no_index`).
    public let index: EmbeddingIndex?
    /// The metrics `/metrics` emits.
    public let metrics: ServerMetrics
    /// Most images in one request.
    public let maxImagesPerRequest: Int
    /// A name for the model in /healthz (its directory).
    public let modelName: String
    /// Search by words (`{"text": ...}` on /v1/search, `GET /v1/synsets`); nil without a
    /// vocabulary or WordNet.
    public let textSearch: TextSearch?
    /// Pictures of the index rows for `GET /v1/thumbnails/{row}` (nil: none kept).
    public let thumbnails: IndexThumbnails?
    /// Whether `GET /` serves the search page (`catlip serve --ui`).
    public let ui: Bool
    private let draining = LockedFlag()

    /// A service over a running (or to be started) engine.
    public init(
        engine: InferenceEngine, vocabulary: Vocabulary?, classes: [String]? = nil, index: EmbeddingIndex?, metrics: ServerMetrics,
        maxImagesPerRequest: Int = 64, modelName: String = "model", textSearch: TextSearch? = nil,
        thumbnails: IndexThumbnails? = nil, ui: Bool = false
    ) {
        self.textSearch = textSearch
        self.thumbnails = thumbnails
        self.ui = ui
        self.engine = engine
        self.vocabulary = vocabulary
        self.classes = classes
        self.index = index
        self.metrics = metrics
        self.maxImagesPerRequest = maxImagesPerRequest
        self.modelName = modelName
    }

    /// Marks the service as shutting down (`/healthz` says `draining`).
    public func beginDraining() { draining.set() }

    /// Whether `beginDraining()` was called.
    public var isDraining: Bool { draining.isSet }

    /// The endpoint label for metrics (unknown paths share one label).
    public static func endpointLabel(_ path: String) -> String {
        if path.hasPrefix("/v1/thumbnails/") { return "/v1/thumbnails" }
        if path == "/" || path.hasPrefix("/ui/") { return "/ui" }
        return ["/v1/embed", "/v1/classify", "/v1/search", "/v1/synsets", "/v1/model", "/healthz", "/metrics"].contains(path)
            ? path : "other"
    }

    /// Headers of everything the page loads: its Content-Security-Policy (no inline code, no
    /// other origin), no MIME sniffing, no framing, no referrer.
    static let pageHeaders: [(String, String)] = [
        ("Content-Security-Policy", UIPage.contentSecurityPolicy), ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ]

    /// Answers `request`: at once through `reply` (errors, health, metrics), or later from the
    /// engine thread, in which case the queued job is returned so that the caller can cancel it
    /// (client gone, deadline). `reply` is called exactly once either way.
    public func handle(_ request: ServeRequest, reply: @escaping @Sendable (ServeReply) -> Void) -> InferenceJob? {
        var routes: [String: String] = [
            "/v1/embed": "POST", "/v1/classify": "POST", "/v1/search": "POST", "/healthz": "GET", "/metrics": "GET",
            "/v1/synsets": "GET", "/v1/model": "GET",
        ]
        if ui { for path in ["/", "/ui/app.js", "/ui/app.css"] { routes[path] = "GET" } }
        let path = request.path
        let thumbnailRoute = path.hasPrefix("/v1/thumbnails/")
        guard let method = thumbnailRoute ? "GET" : routes[path] else {
            reply(ServeReply(error: ServiceError(status: 404, code: "not_found", message: "no route \(path)")))
            return nil
        }
        let allowed = method == "GET" ? ["GET", "HEAD"] : [method]
        guard allowed.contains(request.method) else {
            var r = ServeReply(error: ServiceError(
                status: 405, code: "method_not_allowed", message: "\(path) takes \(allowed.joined(separator: " or ")), not \(request.method)"))
            r.headers.append(("Allow", allowed.joined(separator: ", ")))
            reply(r)
            return nil
        }
        if thumbnailRoute {
            reply(thumbnail(path))
            return nil
        }
        if ui, let asset = UIPage.asset(path: path) {
            reply(ServeReply(status: 200, contentType: asset.contentType, body: asset.body, headers: Self.pageHeaders))
            return nil
        }
        switch path {
        case "/healthz":
            reply(ServeReply(status: 200, body: health() + "\n"))
            return nil
        case "/v1/model":
            reply(ServeReply(status: 200, body: modelInfo() + "\n"))
            return nil
        case "/v1/synsets":
            guard let textSearch else {
                reply(ServeReply(error: .badRequest("no_vocabulary", "this daemon has no vocabulary and WordNet to map words with")))
                return nil
            }
            guard let q = request.query["q"] else {
                reply(ServeReply(error: .badRequest("bad_parameter", "give the phrase as ?q=...")))
                return nil
            }
            do { reply(ServeReply(status: 200, body: try textSearch.synsetsReply(q))) } catch { reply(ServeReply(error: error)) }
            return nil
        case "/metrics":
            reply(ServeReply(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.text()))
            return nil
        default:
            do {
                return try submit(request, path: path, reply: reply)
            } catch {
                reply(ServeReply(error: error))
                return nil
            }
        }
    }

    /// `GET /v1/thumbnails/{row}`: the index's picture of a row, from the thumbnails file
    /// only (a row number, never a path).
    private func thumbnail(_ path: String) -> ServeReply {
        let text = path.dropFirst("/v1/thumbnails/".count)
        guard let thumbnails else {
            return ServeReply(error: ServiceError(status: 404, code: "no_thumbnails", message: "the index was built without --thumbnails"))
        }
        guard !text.isEmpty, text.count <= 10, text.allSatisfy({ $0.isASCII && $0.isNumber }), let row = Int(text),
            let png = thumbnails.picture(row: row)
        else {
            return ServeReply(error: ServiceError(status: 404, code: "not_found", message: "no thumbnail '\(text)' (rows are 0...\(thumbnails.count - 1))"))
        }
        return ServeReply(status: 200, contentType: "image/png", bytes: png, headers: Self.pageHeaders)
    }

    /// `GET /v1/model`: what the page shows about the model and the index.
    private func modelInfo() -> String {
        let m = engine.model
        let a = m.config.modelArgs
        var w = JSONWriter()
        w.object { w in
            w.field("model", modelName)
            w.field("architecture", m.config.architecture)
            w.field("embed_dim", a.embedDim)
            w.field("depth", a.depth)
            w.field("num_heads", a.numHeads)
            w.field("patch_size", a.patchSize)
            w.field("image_size", m.imageSize)
            w.field("classes", m.numClasses)
            w.field("vocabulary", vocabulary?.count ?? 0)
            w.field("class_names", classes?.count ?? 0)
            w.field("precision", m.inferencePrecision.rawValue)
            w.field("index_rows", index?.count ?? 0)
            w.field("thumbnails", thumbnails != nil)
            w.field("text_search", textSearch != nil)
            if let textSearch { w.field("text_rule", textSearch.rule.rawValue) }
        }
        return w.text
    }

    private func health() -> String {
        var w = JSONWriter()
        w.object { w in
            w.field("status", draining.isSet ? "draining" : "ok")
            w.field("model", modelName)
            w.field("dim", engine.model.dim)
            w.field("classes", engine.model.numClasses)
            w.field("image_size", engine.model.imageSize)
            w.field("precision", engine.model.inferencePrecision.rawValue)
            w.field("index_rows", index?.count ?? 0)
            w.field("queue_depth", engine.queueDepth)
        }
        return w.text
    }

    /// The parsed inputs of an image endpoint.
    struct Inputs {
        var images: [EncodedImage] = []
        var embeddings: [[Float]] = []
        var topK: Int?
        /// Words to search by (`/v1/search` only).
        var text: String?
        /// The text search rule asked for.
        var rule: TextSearchRule?
    }

    private func submit(
        _ request: ServeRequest, path: String, reply: @escaping @Sendable (ServeReply) -> Void
    ) throws(ServiceError) -> InferenceJob? {
        let inputs = try parseInputs(request, allowEmbeddings: path == "/v1/search")
        let D = engine.model.dim
        if path == "/v1/search" {
            guard let index else {
                throw .badRequest("no_index", "this daemon was started without --index; /v1/search has nothing to search")
            }
            let k = inputs.topK ?? 10
            if let text = inputs.text {
                guard let textSearch else {
                    throw .badRequest("no_vocabulary", "this daemon has no vocabulary and WordNet to map words with")
                }
                reply(ServeReply(status: 200, body: try textSearch.searchReply(
                    text, k: k, rule: inputs.rule, index: index, thumbnails: thumbnails != nil)))
                return nil
            }
            if !inputs.embeddings.isEmpty {
                reply(ServeReply(status: 200, body: searchReply(index: index, queries: Array(inputs.embeddings.joined()), k: k)))
                return nil
            }
            return try queue(inputs.images, logits: false, reply: reply) { outputs in
                self.searchReply(index: index, queries: outputs.flatMap(\.embedding), k: k)
            }
        }
        if inputs.text != nil {
            throw .badRequest("bad_json", "\"text\" is for /v1/search")
        }
        if path == "/v1/classify" {
            let V = engine.model.numClasses
            let k = min(inputs.topK ?? 5, V)
            return try queue(inputs.images, logits: true, reply: reply) { outputs in
                self.classifyReply(outputs, k: k)
            }
        }
        return try queue(inputs.images, logits: false, reply: reply) { outputs in
            var w = JSONWriter()
            w.object { w in
                w.field("dim", D)
                w.key("embeddings")
                w.array { w in for o in outputs { w.value(o.embedding) } }
            }
            return w.text + "\n"
        }
    }

    private func queue(
        _ images: [EncodedImage], logits: Bool, reply: @escaping @Sendable (ServeReply) -> Void,
        format: @escaping @Sendable ([ImageOutput]) -> String
    ) throws(ServiceError) -> InferenceJob {
        try engine.submit(images: images, wantLogits: logits) { result in
            switch result {
            case .success(let outputs): reply(ServeReply(status: 200, body: format(outputs)))
            case .failure(let error): reply(ServeReply(error: error))
            }
        }
    }

    private func classifyReply(_ outputs: [ImageOutput], k: Int) -> String {
        var w = JSONWriter()
        w.object { w in
            w.key("results")
            w.array { w in
                for o in outputs {
                    let top = EmbeddingIndex.topK(o.logits[...], k: k)
                    // a classifier's scores are its softmax; a pretrained head's, each sigmoid
                    let maxLogit = Double(o.logits.max() ?? 0)
                    let partition = classes == nil ? 1 : o.logits.reduce(0.0) { $0 + exp(Double($1) - maxLogit) }
                    w.object { w in
                        w.key("labels")
                        w.array { w in
                            for (index, logit) in top {
                                w.object { w in
                                    w.field("index", index)
                                    if let classes, index < classes.count {
                                        w.field("class", classes[index])
                                    } else if let entry = vocabulary?.entries[index] {
                                        w.field("wnid", entry.wnid)
                                        w.field("lemma", entry.lemmas.first ?? "")
                                    }
                                    w.field(
                                        "score",
                                        classes == nil ? 1 / (1 + exp(-Double(logit))) : exp(Double(logit) - maxLogit) / partition)
                                    w.field("logit", logit)
                                }
                            }
                        }
                    }
                }
            }
        }
        return w.text + "\n"
    }

    private func searchReply(index: EmbeddingIndex, queries: [Float], k: Int) -> String {
        var q = queries
        let D = index.dim
        for r in 0..<(q.count / D) { EmbeddingIndex.normalize(&q, offset: r * D, count: D) }
        let results = index.search(queries: q, k: k)
        var w = JSONWriter()
        w.object { w in
            w.key("results")
            w.array { w in
                for matches in results {
                    w.object { w in Self.write(matches, thumbnails: thumbnails != nil, to: &w) }
                }
            }
        }
        return w.text + "\n"
    }

    /// One query's `matches` field: key, row and score of each, and its picture's link when
    /// the index has `thumbnails` (image and text search answer alike).
    static func write(_ matches: [EmbeddingIndex.Match], thumbnails: Bool, to w: inout JSONWriter) {
        w.key("matches")
        w.array { w in
            for m in matches {
                w.object { w in
                    w.field("key", m.key)
                    w.field("row", m.row)
                    w.field("score", m.score)
                    if thumbnails { w.field("thumbnail", "/v1/thumbnails/\(m.row)") }
                }
            }
        }
    }

    /// Images (or embeddings) and top_k from the body and query.
    func parseInputs(_ request: ServeRequest, allowEmbeddings: Bool) throws(ServiceError) -> Inputs {
        var inputs = Inputs()
        if let text = request.query["top_k"] {
            guard let k = Int(text), (1...1000).contains(k) else {
                throw .badRequest("bad_parameter", "top_k must be an integer in 1...1000, not '\(text)'")
            }
            inputs.topK = k
        }
        guard !request.body.isEmpty else {
            throw .badRequest("empty_body", "\(request.path) needs an image as the body, or JSON with base64 \"images\"")
        }
        if !request.parsesJSON {
            inputs.images = [EncodedImage(bytes: request.body, name: "the request body")]
            return inputs
        }
        // Foundation builds an object for every value: 31 MiB of small numbers became 900 MiB.
        // Counting the values first (no allocation) bounds what the parse can build.
        let D = engine.model.dim
        let (values, overflow) = maxImagesPerRequest.multipliedReportingOverflow(by: D)
        let slack = 16  // the object, its keys, top_k
        try JSONCensus(request.body).check(
            maxStrings: maxImagesPerRequest.addingSaturating(slack),
            maxNumbers: allowEmbeddings ? (overflow ? Int.max : values.addingSaturating(slack)) : slack,
            maxContainers: maxImagesPerRequest.addingSaturating(slack), imageLimit: maxImagesPerRequest,
            dim: allowEmbeddings ? D : nil)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(request.body), options: [.fragmentsAllowed])
        } catch {
            throw .badRequest("bad_json", "the body is not valid JSON (\(error.localizedDescription))")
        }
        guard let object = parsed as? [String: Any] else { throw .badRequest("bad_json", "the body must be a JSON object") }
        let known: Set<String> = allowEmbeddings
            ? ["images", "image", "top_k", "embedding", "embeddings", "text", "rule"] : ["images", "image", "top_k"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw .badRequest("bad_json", "unknown field '\(unknown)' (expected \(known.sorted().joined(separator: ", ")))")
        }
        if let k = object["top_k"] {
            guard let n = k as? Int, !isJSONBool(k), (1...1000).contains(n) else {
                throw .badRequest("bad_parameter", "top_k must be an integer in 1...1000")
            }
            inputs.topK = n
        }
        if allowEmbeddings, let words = object["text"] {
            guard let text = words as? String else { throw .badRequest("bad_json", "text must be a string") }
            if object["image"] != nil || object["images"] != nil || object["embedding"] != nil || object["embeddings"] != nil {
                throw .badRequest("bad_json", "give text, images or embeddings, one of them")
            }
            if let r = object["rule"] {
                guard let name = r as? String, let rule = TextSearchRule(rawValue: name) else {
                    throw .badRequest("bad_parameter", "rule must be one of " + TextSearchRule.allCases.map(\.rawValue).joined(separator: ", "))
                }
                inputs.rule = rule
            }
            inputs.text = text
            return inputs
        }
        if object["rule"] != nil { throw .badRequest("bad_json", "rule goes with text") }
        var encoded: [(String, String)] = []
        if let one = object["image"] {
            guard let s = one as? String else { throw .badRequest("bad_json", "image must be a base64 string") }
            encoded.append(("image", s))
        }
        if let many = object["images"] {
            guard let list = many as? [Any] else { throw .badRequest("bad_json", "images must be an array of base64 strings") }
            for (i, item) in list.enumerated() {
                guard let s = item as? String else { throw .badRequest("bad_json", "images[\(i)] is not a base64 string") }
                encoded.append(("images[\(i)]", s))
            }
        }
        if allowEmbeddings {
            if !encoded.isEmpty && (object["embedding"] != nil || object["embeddings"] != nil) {
                throw .badRequest("bad_json", "give images or embeddings, not both")
            }
            var vectors: [Any] = []
            if let one = object["embedding"] { vectors.append(one) }
            if let many = object["embeddings"] {
                guard let list = many as? [Any] else { throw .badRequest("bad_json", "embeddings must be an array of arrays of numbers") }
                vectors += list
            }
            for (i, v) in vectors.enumerated() {
                guard let numbers = v as? [Any] else { throw .badRequest("bad_embedding", "embedding \(i) is not an array of numbers") }
                guard numbers.count == D else {
                    throw .badRequest("bad_embedding", "embeddings[\(i)] has \(numbers.count) values; the model's embeddings have \(D)")
                }
                var row: [Float] = []
                row.reserveCapacity(numbers.count)
                for x in numbers {
                    guard let n = x as? NSNumber, !isJSONBool(x), n.doubleValue.isFinite else {
                        throw .badRequest("bad_embedding", "embedding \(i) holds a value that is not a finite number")
                    }
                    row.append(n.floatValue)
                }
                inputs.embeddings.append(row)
            }
        }
        let total = encoded.count + inputs.embeddings.count
        guard total > 0 else {
            throw .badRequest("empty_request", allowEmbeddings
                ? "give \"images\" (base64) or \"embedding(s)\"" : "give \"images\" (base64) or \"image\"")
        }
        guard total <= maxImagesPerRequest else {
            throw ServiceError(status: 413, code: "too_many_images", message: "\(total) inputs in one request; the limit is \(maxImagesPerRequest)")
        }
        for (name, text) in encoded {
            var payload = Substring(text)
            if payload.hasPrefix("data:"), let comma = payload.firstIndex(of: ",") { payload = payload[payload.index(after: comma)...] }
            guard let data = Data(base64Encoded: String(payload), options: [.ignoreUnknownCharacters]), !data.isEmpty else {
                throw .badRequest("bad_base64", "\(name) is not valid base64")
            }
            inputs.images.append(EncodedImage(bytes: [UInt8](data), name: name))
        }
        return inputs
    }
}

/// What a JSON text holds, counted in one pass without allocating: strings (keys included),
/// numbers and literals, arrays and objects, and the deepest nesting. Syntax is left to the
/// parser; this only bounds what the parser would build.
struct JSONCensus {
    var strings = 0
    var numbers = 0
    var containers = 0
    var depth = 0

    /// The deepest nesting a request needs: an object of arrays of embeddings.
    static let maxDepth = 3

    init(_ bytes: [UInt8]) {
        var level = 0
        var i = 0
        let n = bytes.count
        while i < n {
            switch bytes[i] {
            case UInt8(ascii: "\""):
                strings += 1
                i += 1
                while i < n && bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i += 1
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                containers += 1
                level += 1
                depth = max(depth, level)
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                level = max(0, level - 1)
                i += 1
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                numbers += 1
                i += 1
                while i < n, JSONCensus.continuesScalar(bytes[i]) { i += 1 }
            default:
                i += 1
            }
        }
    }

    private static func continuesScalar(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Throws 400 `bad_json` for nesting deeper than `maxDepth`, 413 `too_many_values` for more
    /// strings, numbers or arrays than a request of `imageLimit` images (or embeddings of `dim`
    /// values) can hold.
    func check(maxStrings: Int, maxNumbers: Int, maxContainers: Int, imageLimit: Int, dim: Int?) throws(ServiceError) {
        if depth > JSONCensus.maxDepth {
            throw .badRequest("bad_json", "the JSON body nests \(depth) levels deep; a request needs at most \(JSONCensus.maxDepth)")
        }
        let what = dim.map { "\(imageLimit) images or embeddings of \($0) values" } ?? "\(imageLimit) images"
        for (count, limit, name) in [(strings, maxStrings, "strings"), (numbers, maxNumbers, "numbers"), (containers, maxContainers, "arrays and objects")]
        where count > limit {
            throw ServiceError(
                status: 413, code: "too_many_values",
                message: "the JSON body holds \(count) \(name), more than the \(limit) a request of at most \(what) can hold")
        }
    }
}

extension Int {
    /// `self + other`, or `Int.max` when that overflows.
    fileprivate func addingSaturating(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}

/// Whether a JSONSerialization value is `true`/`false` (Foundation's boolean NSNumber subclass;
/// `is Bool` also holds for the numbers 0 and 1).
func isJSONBool(_ value: Any) -> Bool { String(describing: type(of: value)).contains("Boolean") }

/// A flag set once, read from any thread.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
