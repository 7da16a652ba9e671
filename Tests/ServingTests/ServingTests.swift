import Encoder
import Foundation
import Imaging
import Support
import ViT
import WordNet
import XCTest

@testable import Serving

#if canImport(Glibc)
    import Glibc
#endif

/// A tiny random model directory, test images, and a daemon on real sockets.
final class ServingFixture: @unchecked Sendable {
    let dir: String
    let model: ViTModel
    let vocabulary: Vocabulary
    let imagePaths: [String]
    let images: [[UInt8]]

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-serve-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/model", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 32, patchSize: 8, numClasses: 10, embedDim: 32, depth: 2, numHeads: 2),
            pretrainedCfg: PretrainedConfig(inputSize: [3, 32, 32], numClasses: 10))
        let m = try ViTModel(config: config, seed: 11)
        let bias = m.parameter("head.bias")
        for i in 0..<10 { bias[i] = Float(i) * 0.3 - 1.5 }
        try m.save(directory: dir + "/model")
        vocabulary = Vocabulary(entries: (0..<10).map {
            Vocabulary.Entry(wnid: String(format: "n%08d", 1000 + $0), count: 100 - $0, lemmas: ["thing_\($0)"])
        })
        try vocabulary.write(path: dir + "/model/vocab.tsv")
        model = try ViTModel.load(directory: dir + "/model")
        var paths: [String] = []
        var blobs: [[UInt8]] = []
        for i in 0..<8 {
            let (w, h) = (24 + 7 * i, 40 - 2 * i)
            var pixels = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h {
                for x in 0..<w {
                    pixels[(y * w + x) * 3] = UInt8((x * (i + 3) + y * 5) % 256)
                    pixels[(y * w + x) * 3 + 1] = UInt8((y * (11 - i) + 40 * i) % 256)
                    pixels[(y * w + x) * 3 + 2] = UInt8((x * y + i * 17) % 256)
                }
            }
            let path = dir + "/images/img\(i).png"
            let png = try PNGEncoder.encode(RGBImage(width: w, height: h, pixels: pixels), source: path)
            try Data(png).write(to: URL(fileURLWithPath: path))
            paths.append(path)
            blobs.append(png)
        }
        imagePaths = paths
        images = blobs
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// The reference embedding of image `i`: the engine-free path (EvalTransform + ViTEmbedder), normalised.
    func referenceEmbedding(_ i: Int) throws -> (embedding: [Float], logits: [Float]) {
        let cfg = model.config.pretrainedCfg
        let transform = EvalTransform(
            size: model.imageSize, cropPct: cfg.cropPct, filter: cfg.interpolation == "bicubic" ? .bicubic : .bilinear,
            normalization: Normalization(mean: cfg.mean.map { Float($0) }, std: cfg.std.map { Float($0) }))
        var pixels = [Float](repeating: 0, count: transform.outputCount)
        try pixels.withUnsafeMutableBufferPointer { try transform.apply(images[i], source: "img", into: $0) }
        let acts = model.makeActivations(batchSize: 1, training: false)
        pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, activations: acts) }
        var e = Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: model.dim))
        EmbeddingIndex.normalize(&e, offset: 0, count: e.count)
        return (e, Array(UnsafeBufferPointer(start: acts.logitsPointer, count: model.numClasses)))
    }

    /// A daemon over this model with `configure` applied to its options.
    func startDaemon(
        index: EmbeddingIndex? = nil, tcp: Bool = true, batching: BatchingOptions = BatchingOptions(),
        maxImages: Int = 64, classes: [String]? = nil, configure: (inout ServeOptions) -> Void = { _ in }
    ) throws -> ServingDaemon {
        let metrics = ServerMetrics()
        let engine = InferenceEngine(model: model, options: batching, metrics: metrics)
        let service = ServingService(
            engine: engine, vocabulary: classes == nil ? vocabulary : nil, classes: classes, index: index, metrics: metrics,
            maxImagesPerRequest: maxImages)
        var options = ServeOptions()
        options.socketPath = dir + "/d.sock"
        options.listen = tcp ? "127.0.0.1:0" : nil
        configure(&options)
        return try ServingDaemon(service: service, options: options)
    }
}

func json(_ response: ClientResponse) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
        throw ClientError("not a JSON object: \(response.text)")
    }
    return object
}

func floats(_ any: Any?) -> [Float] { (any as? [NSNumber] ?? []).map(\.floatValue) }

/// Sends raw bytes on a new connection, then reads until the server closes or `timeout`.
func rawExchange(_ endpoint: ServeEndpoint, _ bytes: [UInt8], closeAfterSend: Bool = false, timeout: Double = 5) throws -> String {
    let fd = try endpoint.connectSocket(timeout: timeout)
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL)) }
    if closeAfterSend { return "" }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 4096, 0) }
        if n <= 0 { break }
        out += buffer[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func openFileDescriptors() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

func residentMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = Double(text.split(separator: " ")[1]) ?? 0
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

/// Messages collected from concurrent clients.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

/// Polls `condition` every 10 ms for up to `seconds`.
func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let end = Date(timeIntervalSinceNow: seconds)
    while Date() < end {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

final class IndexTests: XCTestCase {
    func testSearchIsExactAgainstANaiveScanAndTheFileRoundTrips() throws {
        var generator = SeededGenerator(seed: 3)
        let (n, d) = (257, 19)
        let rows = (0..<(n * d)).map { _ in Float.random(in: -1...1, using: &generator) }
        let keys = (0..<n).map { "key \($0) \"quoted\"" }
        let index = EmbeddingIndex(dim: d, keys: keys, embeddings: rows, modelFingerprint: "00000000000000ab")
        func dot(_ a: [Float], _ i: Int, _ b: [Float], _ j: Int) -> Double {
            var sum = 0.0
            for t in 0..<d { sum += Double(a[i * d + t]) * Double(b[j * d + t]) }
            return sum
        }
        for r in 0..<n { XCTAssertEqual(dot(index.embeddings, r, index.embeddings, r), 1, accuracy: 1e-5) }
        var queries = (0..<(3 * d)).map { _ in Float.random(in: -1...1, using: &generator) }
        for q in 0..<3 { EmbeddingIndex.normalize(&queries, offset: q * d, count: d) }
        let results = index.search(queries: queries, k: 7)
        let single = index.search(queries: Array(queries[0..<d]), k: 7)
        for q in 0..<3 {
            var naive: [(row: Int, score: Double)] = []
            for r in 0..<n { naive.append((r, dot(index.embeddings, r, queries, q))) }
            naive.sort { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
            XCTAssertEqual(results[q].map { $0.row }, naive.prefix(7).map { $0.row }, "query \(q)")
            for (m, ref) in zip(results[q], naive) { XCTAssertEqual(Double(m.score), ref.score, accuracy: 1e-5) }
        }
        XCTAssertEqual(single[0].map { $0.row }, results[0].map { $0.row }, "sgemv and sgemm agree")
        XCTAssertEqual(index.search(queries: Array(queries[0..<d]), k: 1000)[0].count, n)
        // ties: lower row first
        XCTAssertEqual(EmbeddingIndex.topK([1, 3, 3, 2, 3][...], k: 3).map(\.index), [1, 2, 4])

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try index.write(path: path)
        let back = try EmbeddingIndex.read(path: path)
        XCTAssertEqual(back.keys, keys)
        XCTAssertEqual(back.embeddings, index.embeddings)
        XCTAssertEqual(back.modelFingerprint, "00000000000000ab")

        // damaged or foreign files are errors naming the file
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes.removeLast(10)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try EmbeddingIndex.read(path: path)) { XCTAssertTrue("\($0)".contains(path), "\($0)") }
        try SafeTensors(tensors: ["embeddings": FloatTensor(shape: [1, 2], values: [1, 0])]).write(path: path)
        XCTAssertThrowsError(try EmbeddingIndex.read(path: path)) { XCTAssertTrue("\($0)".contains("not a catlip index"), "\($0)") }
        try SafeTensors(
            tensors: ["embeddings": FloatTensor(shape: [2, 2], values: [1, 0, 0, 1])],
            metadata: ["format": "catlip-index", "version": "1", "keys": "[\"only one\"]"]
        ).write(path: path)
        XCTAssertThrowsError(try EmbeddingIndex.read(path: path)) { XCTAssertTrue("\($0)".contains("1 keys for 2"), "\($0)") }
    }

    func testJSONWriterEscapesAndFormats() throws {
        var w = JSONWriter()
        w.object { w in
            w.field("s", "a\"b\\c\nd\u{01}é")
            w.field("f", Float(0.1))
            w.key("xs")
            w.value([Float(1), .nan, -2.5])
        }
        XCTAssertEqual(w.text, #"{"s":"a\"b\\c\nd\u0001é","f":0.1,"xs":[1.0,null,-2.5]}"#)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(w.text.utf8)))
    }

    func testBatchWindowExpectsTheLastBatchAndWhatArrivedMeanwhile() {
        // 30 computed while 2 more waited: the next window waits for all 32 (not 30, which
        // would leave 2 behind every time)
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 30, arrivedMeanwhile: 2, maxBatch: 32), 32)
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 1, arrivedMeanwhile: 31, maxBatch: 32), 32)
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 32, arrivedMeanwhile: 40, maxBatch: 32), 32)
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 8, arrivedMeanwhile: 0, maxBatch: 32), 8)
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 1, arrivedMeanwhile: 0, maxBatch: 32), 1)  // a lone client never waits
        XCTAssertEqual(InferenceEngine.expectedImages(batch: 0, arrivedMeanwhile: 0, maxBatch: 32), 1)
    }

    func testLoadGeneratorCountsEveryCompletionInItsWindow() {
        // window [10 s, 20 s): a request started in the warm-up but completed inside counts (a
        // closed loop with long latencies would otherwise lose one request per client); one
        // completed at or after the end does not, wherever it started
        let s: UInt64 = 1_000_000_000
        XCTAssertTrue(LoadGenerator.counts(completedAt: 10 * s + 1, from: 10 * s, to: 20 * s))
        XCTAssertTrue(LoadGenerator.counts(completedAt: 10 * s, from: 10 * s, to: 20 * s))
        XCTAssertTrue(LoadGenerator.counts(completedAt: 20 * s - 1, from: 10 * s, to: 20 * s))
        XCTAssertFalse(LoadGenerator.counts(completedAt: 20 * s, from: 10 * s, to: 20 * s))
        XCTAssertFalse(LoadGenerator.counts(completedAt: 10 * s - 1, from: 10 * s, to: 20 * s))
    }

    func testIndexBuilderEmbedsFilesFoldersAndSkipsBadImages() throws {
        let f = try ServingFixture()
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: f.dir + "/images/broken.png"))
        var builder = IndexBuilder(model: f.model)
        builder.batchSize = 3
        let (index, report) = try builder.build(inputs: [f.dir + "/images", f.imagePaths[2]])
        XCTAssertEqual(report.embedded, 9)
        XCTAssertEqual(report.skipped, 1)
        XCTAssertTrue(report.problems[0].contains("broken.png"), report.problems[0])
        XCTAssertEqual(index.keys.last, f.imagePaths[2])
        XCTAssertEqual(index.modelFingerprint, modelFingerprint(f.model))
        let reference = try f.referenceEmbedding(2).embedding
        let row = Array(index.embeddings[(8 * index.dim)..<(9 * index.dim)])
        for (a, b) in zip(row, reference) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertThrowsError(try builder.build(inputs: [f.dir + "/nothing-here/{0..2}.tar"]))
    }
}

final class RequestParsingTests: XCTestCase {
    func testBadJSONRequestsAreNamedErrors() throws {
        let f = try ServingFixture()
        let engine = InferenceEngine(model: f.model)
        let service = ServingService(engine: engine, vocabulary: nil, index: nil, metrics: ServerMetrics(), maxImagesPerRequest: 2)
        func error(_ body: String, query: String = "", search: Bool = false) -> ServiceError? {
            let r = ServeRequest(method: "POST", uri: "/v1/embed" + query, contentType: "application/json", body: Array(body.utf8))
            do {
                _ = try service.parseInputs(r, allowEmbeddings: search)
                return nil
            } catch { return error }
        }
        XCTAssertEqual(error("{").map(\.code), "bad_json")
        XCTAssertEqual(error("[1]").map(\.code), "bad_json")
        XCTAssertEqual(error(#"{"imgs": []}"#)?.message.contains("imgs"), true)
        XCTAssertEqual(error(#"{"images": [1]}"#)?.message, "images[0] is not a base64 string")
        XCTAssertEqual(error(#"{"images": ["@@@"]}"#)?.code, "bad_base64")
        XCTAssertEqual(error(#"{"images": []}"#)?.code, "empty_request")
        XCTAssertEqual(error(#"{"images": ["QQ==","QQ==","QQ=="]}"#)?.status, 413)
        XCTAssertEqual(error(#"{"images": ["QQ=="], "top_k": 0}"#)?.code, "bad_parameter")
        XCTAssertEqual(error(#"{"images": ["QQ=="], "top_k": true}"#)?.code, "bad_parameter")
        XCTAssertEqual(error(#"{"images": ["QQ=="]}"#, query: "?top_k=abc")?.code, "bad_parameter")
        XCTAssertEqual(error(#"{"embedding": [1, "x"]}"#, search: true)?.code, "bad_embedding")
        XCTAssertEqual(error(#"{"embedding": [1], "images": ["QQ=="]}"#, search: true)?.code, "bad_json")
        XCTAssertEqual(error(#"{"embedding": [1]}"#)?.code, "bad_json", "embeddings only on /v1/search")
        XCTAssertNil(error(#"{"images": ["data:image/png;base64,QQ=="], "top_k": 3}"#))
        let empty = ServeRequest(method: "POST", uri: "/v1/embed")
        XCTAssertThrowsError(try service.parseInputs(empty, allowEmbeddings: false))
    }
}

final class DaemonTests: XCTestCase {
    /// A fine-tuned classifier (a head named by classes.tsv): /v1/classify answers with the class
    /// names and the softmax probabilities of the logits.
    func testClassifyNamesAClassifiersClassesWithSoftmaxScores() throws {
        let f = try ServingFixture()
        let names = (0..<f.model.numClasses).map { "class \($0)" }
        let daemon = try f.startDaemon(tcp: false, classes: names)
        defer { daemon.shutdown() }
        let client = BlockingHTTPClient(endpoint: .unix(f.dir + "/d.sock"), timeout: 30)
        let r = try client.request(method: "POST", path: "/v1/classify?top_k=3", contentType: "image/png", body: f.images[2])
        XCTAssertEqual(r.status, 200, r.text)
        let labels = ((try json(r)["results"] as? [[String: Any]])?.first?["labels"] as? [[String: Any]]) ?? []
        let logits = try f.referenceEmbedding(2).logits.map(Double.init)
        let order = logits.indices.sorted { logits[$0] > logits[$1] }
        XCTAssertEqual(labels.compactMap { $0["index"] as? Int }, Array(order.prefix(3)))
        let partition = logits.map { exp($0 - logits.max()!) }.reduce(0, +)
        for label in labels {
            let i = label["index"] as! Int
            XCTAssertEqual(label["class"] as? String, names[i])
            XCTAssertNil(label["wnid"])
            XCTAssertEqual((label["score"] as! NSNumber).doubleValue, exp(logits[i] - logits.max()!) / partition, accuracy: 1e-5)
        }
    }

    func testEndpointsOnBothTransportsMatchTheEngineFreePath() throws {
        let f = try ServingFixture()
        var builder = IndexBuilder(model: f.model)
        builder.batchSize = 4
        let (index, _) = try builder.build(inputs: f.imagePaths)
        let daemon = try f.startDaemon(index: index)
        defer { daemon.shutdown() }
        let port = try XCTUnwrap(daemon.tcpPort)
        let references = try (0..<f.images.count).map { try f.referenceEmbedding($0) }
        for endpoint in [ServeEndpoint.unix(f.dir + "/d.sock"), .tcp(host: "127.0.0.1", port: port)] {
            let client = BlockingHTTPClient(endpoint: endpoint, timeout: 30)
            let health = try client.request(method: "GET", path: "/healthz")
            XCTAssertEqual(health.status, 200)
            XCTAssertEqual(try json(health)["index_rows"] as? Int, 8)
            XCTAssertEqual(try json(health)["dim"] as? Int, 32)

            // one raw image
            let embed = try client.request(method: "POST", path: "/v1/embed", contentType: "image/png", body: f.images[3])
            XCTAssertEqual(embed.status, 200, embed.text)
            let e = floats((try json(embed)["embeddings"] as? [Any])?.first)
            XCTAssertEqual(e.count, 32)
            for (a, b) in zip(e, references[3].embedding) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(endpoint)") }

            // a JSON batch: the same answers, in order
            let encoded = f.images[0...2].map { "\"" + Data($0).base64EncodedString() + "\"" }
            let batch = "{\"images\": [" + encoded.joined(separator: ",") + "]}"
            let many = try client.request(method: "POST", path: "/v1/embed", contentType: "application/json", body: Array(batch.utf8))
            XCTAssertEqual(many.status, 200, many.text)
            let rows = try json(many)["embeddings"] as? [Any] ?? []
            XCTAssertEqual(rows.count, 3)
            for (i, row) in rows.enumerated() {
                for (a, b) in zip(floats(row), references[i].embedding) { XCTAssertEqual(a, b, accuracy: 1e-5) }
            }

            // classify: top-k by logit, sigmoid scores, the vocabulary's names
            let classify = try client.request(method: "POST", path: "/v1/classify?top_k=3", contentType: "image/png", body: f.images[5])
            XCTAssertEqual(classify.status, 200, classify.text)
            let labels = ((try json(classify)["results"] as? [[String: Any]])?.first?["labels"] as? [[String: Any]]) ?? []
            let logits = references[5].logits
            let order = logits.indices.sorted { logits[$0] > logits[$1] }
            XCTAssertEqual(labels.compactMap { $0["index"] as? Int }, Array(order.prefix(3)))
            for label in labels {
                let i = label["index"] as! Int
                XCTAssertEqual(label["wnid"] as? String, f.vocabulary.entries[i].wnid)
                XCTAssertEqual(label["lemma"] as? String, "thing_\(i)")
                XCTAssertEqual((label["score"] as! NSNumber).doubleValue, 1 / (1 + exp(-Double(logits[i]))), accuracy: 1e-5)
            }

            // search by image: itself first; by embedding: the same
            let search = try client.request(method: "POST", path: "/v1/search?top_k=2", contentType: "image/png", body: f.images[6])
            XCTAssertEqual(search.status, 200, search.text)
            let matches = ((try json(search)["results"] as? [[String: Any]])?.first?["matches"] as? [[String: Any]]) ?? []
            XCTAssertEqual(matches.first?["key"] as? String, f.imagePaths[6])
            XCTAssertEqual((matches.first?["score"] as? NSNumber)?.floatValue ?? 0, 1, accuracy: 1e-4)
            XCTAssertEqual(matches.count, 2)
            let vector = "{\"embedding\": [" + references[6].embedding.map { "\($0 * 3)" }.joined(separator: ",") + "]}"
            let byVector = try client.request(method: "POST", path: "/v1/search", contentType: "application/json", body: Array(vector.utf8))
            XCTAssertEqual(
                ((try json(byVector)["results"] as? [[String: Any]])?.first?["matches"] as? [[String: Any]])?.first?["key"] as? String,
                f.imagePaths[6])
            let wrongWidth = try client.request(method: "POST", path: "/v1/search", contentType: "application/json", body: Array(#"{"embedding": [1, 2]}"#.utf8))
            XCTAssertEqual(wrongWidth.status, 400)

            // routes and methods
            let missing = try client.request(method: "GET", path: "/v2/nothing")
            XCTAssertEqual(missing.status, 404)
            XCTAssertEqual((try json(missing)["error"] as? [String: Any])?["code"] as? String, "not_found")
            let wrong = try client.request(method: "GET", path: "/v1/classify")
            XCTAssertEqual(wrong.status, 405)
            XCTAssertEqual(wrong.headers["allow"], "POST")
            XCTAssertEqual(try client.request(method: "POST", path: "/healthz").status, 405)
        }
        let metrics = try BlockingHTTPClient(endpoint: .unix(f.dir + "/d.sock")).request(method: "GET", path: "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") ?? false)
        for line in [
            #"catlip_requests_total{endpoint="/v1/embed",status="200"} 4"#,
            #"catlip_requests_total{endpoint="other",status="404"} 2"#,
            "catlip_images_decoded_total 12", "catlip_queue_depth_images 0",
            #"catlip_request_duration_seconds_count{endpoint="/v1/classify"} 4"#,
        ] {
            XCTAssertTrue(metrics.text.contains(line), "missing \(line) in\n\(metrics.text)")
        }
        XCTAssertTrue(metrics.text.contains("catlip_batch_size_images_bucket"))
    }

    func testPipelinedRequestsAreAnsweredInOrderAndHTTP10Closes() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false)
        defer { daemon.shutdown() }
        let image = f.images[4]
        let bytes = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            + Array("POST /v1/classify?top_k=1 HTTP/1.1\r\nHost: x\r\nContent-Length: \(image.count)\r\n\r\n".utf8) + image
            + Array("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            + Array("GET /nope HTTP/1.0\r\n\r\n".utf8)
        let text = try rawExchange(.unix(f.dir + "/d.sock"), bytes)
        let statuses = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n").filter { $0.hasPrefix("HTTP/1.") }
        XCTAssertEqual(statuses, ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.0 404 Not Found"], text)
        XCTAssertTrue(text.contains("\"labels\""), text)
        XCTAssertTrue(text.hasSuffix("}\n"), "the HTTP/1.0 request's answer ends the connection")
    }

    func testThirtyTwoConcurrentClientsGetTheSingleRequestAnswers() throws {
        let f = try ServingFixture()
        var batching = BatchingOptions()
        batching.maxBatch = 16
        let daemon = try f.startDaemon(batching: batching)
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        let single = BlockingHTTPClient(endpoint: endpoint)
        let expected = try f.images.map { image in
            floats((try json(try single.request(method: "POST", path: "/v1/embed", body: image))["embeddings"] as? [Any])?.first)
        }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 32) { c in
            let client = BlockingHTTPClient(endpoint: endpoint, timeout: 60)
            for round in 0..<3 {
                let i = (c + round) % f.images.count
                do {
                    let r = try client.request(method: "POST", path: "/v1/embed", body: f.images[i])
                    let e = floats((try json(r)["embeddings"] as? [Any])?.first)
                    let worst = zip(e, expected[i]).map { abs($0 - $1) }.max() ?? 1
                    if r.status != 200 || e.count != 32 || worst > 1e-5 {
                        failures.add("client \(c) round \(round): \(r.status) diff \(worst)")
                    }
                } catch {
                    failures.add("client \(c): \(error)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
        let metrics = try single.request(method: "GET", path: "/metrics").text
        XCTAssertTrue(metrics.contains(#"catlip_requests_total{endpoint="/v1/embed",status="200"} 104"#), metrics)
    }

    func testAbusiveClientsGetErrorsAndLeaveNothingBehind() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { options in
            options.maxBodyBytes = 64 << 10
            options.readTimeout = 0.3
            options.idleTimeout = 5
        }
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        let health = BlockingHTTPClient(endpoint: endpoint)
        XCTAssertEqual(try health.request(method: "GET", path: "/healthz").status, 200)
        health.disconnect()

        func abuseOnce() throws {
            // malformed HTTP
            let garbage = try rawExchange(endpoint, Array("GARBAGE\r\n\r\n\u{01}\u{02}\r\n\r\n".utf8))
            XCTAssertTrue(garbage.hasPrefix("HTTP/1.1 400"), garbage)
            // truncated body: the client gives up after 10 of 1000 bytes
            _ = try rawExchange(endpoint, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789".utf8), closeAfterSend: true)
            // oversized by Content-Length: 413 before the body is read
            let big = try rawExchange(endpoint, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".utf8))
            XCTAssertTrue(big.hasPrefix("HTTP/1.1 413"), big)
            XCTAssertTrue(big.contains("payload_too_large"), big)
            // oversized by chunked transfer
            let chunk = String(repeating: "A", count: 40 << 10)
            let hex = String(chunk.utf8.count, radix: 16)
            let chunked = try rawExchange(endpoint, Array(("POST /v1/embed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "\(hex)\r\n\(chunk)\r\n\(hex)\r\n\(chunk)\r\n0\r\n\r\n").utf8))
            XCTAssertTrue(chunked.hasPrefix("HTTP/1.1 413"), String(chunked.prefix(200)))
            // not an image / an image over the pixel limit is 400 with a named problem
            let client = BlockingHTTPClient(endpoint: endpoint)
            let text = try client.request(method: "POST", path: "/v1/embed", contentType: "text/plain", body: Array("hello".utf8))
            XCTAssertEqual(text.status, 400)
            XCTAssertTrue(text.text.contains("bad_image") && text.text.contains("the request body"), text.text)
            var cut = f.images[1]
            cut.removeLast(cut.count / 2)
            let truncatedImage = try client.request(method: "POST", path: "/v1/classify", body: cut)
            XCTAssertEqual(truncatedImage.status, 400, truncatedImage.text)
            client.disconnect()
            // headers, then silence: 408 after the read timeout, then the connection closes
            let stalled = try rawExchange(endpoint, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n".utf8))
            XCTAssertTrue(stalled.hasPrefix("HTTP/1.1 408"), stalled)
            // half the headers, then silence: closed without an answer or a crash
            let fd = try endpoint.connectSocket(timeout: 5)
            let partial = Array("POST /v1/embed HTTP/1.1\r\nHost".utf8)
            _ = partial.withUnsafeBytes { send(fd, $0.baseAddress!, partial.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
            // disconnect in the middle of a body
            _ = try rawExchange(endpoint, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".utf8) + f.images[0].prefix(100), closeAfterSend: true)
        }
        try abuseOnce()  // warm-up: buffers and caches reach their steady size
        XCTAssertTrue(eventually { daemon.connectionCount == 0 }, "connections left open: \(daemon.connectionCount)")
        let fds = openFileDescriptors()
        let rss = residentMegabytes()
        for _ in 0..<5 { try abuseOnce() }
        XCTAssertTrue(eventually { daemon.connectionCount == 0 }, "connections left open: \(daemon.connectionCount)")
        XCTAssertTrue(eventually { openFileDescriptors() <= fds }, "open descriptors \(openFileDescriptors()) > \(fds)")
        XCTAssertLessThan(residentMegabytes() - rss, 40, "memory grew from \(rss) MB to \(residentMegabytes()) MB")
        let after = BlockingHTTPClient(endpoint: endpoint)
        XCTAssertEqual(try after.request(method: "POST", path: "/v1/embed", body: f.images[2]).status, 200)
        let metrics = try after.request(method: "GET", path: "/metrics").text
        XCTAssertTrue(metrics.contains(#"catlip_errors_total{code="payload_too_large"} 12"#), metrics)
        XCTAssertTrue(metrics.contains(#"catlip_errors_total{code="request_timeout"} 6"#), metrics)
        XCTAssertTrue(metrics.contains("catlip_requests_in_flight 1.0"), "only the /metrics request itself: \(metrics)")
    }

    func testFullQueueDeadlineAndDepartedClients() throws {
        let f = try ServingFixture()
        var batching = BatchingOptions()
        batching.queueCapacity = 2
        let daemon = try f.startDaemon(tcp: false, batching: batching, maxImages: 2) { $0.requestTimeout = 0.5 }
        defer { daemon.shutdown() }
        let engine = daemon.service.engine
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        let request = Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: \(f.images[0].count)\r\n\r\n".utf8) + f.images[0]
        engine.pause()
        // two queued requests fill the queue; the third gets 503 with Retry-After
        let a = try endpoint.connectSocket(timeout: 5), b = try endpoint.connectSocket(timeout: 5)
        defer { close(a); close(b) }
        for fd in [a, b] { _ = request.withUnsafeBytes { send(fd, $0.baseAddress!, request.count, Int32(MSG_NOSIGNAL)) } }
        XCTAssertTrue(eventually { engine.queueDepth == 2 })
        let full = try BlockingHTTPClient(endpoint: endpoint).request(method: "POST", path: "/v1/embed", body: f.images[1])
        XCTAssertEqual(full.status, 503)
        XCTAssertEqual(full.headers["retry-after"], "1")
        XCTAssertTrue(full.text.contains("queue_full"))
        // both waiting requests pass their deadline: 504, and their slots are free again
        for fd in [a, b] {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 4096, 0) }
            let text = String(decoding: buffer[0..<max(n, 0)], as: UTF8.self)
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 504") && text.contains("deadline_exceeded"), text)
        }
        XCTAssertEqual(engine.queueDepth, 0)
        // a client that leaves while queued frees its slot at once
        let c = try endpoint.connectSocket(timeout: 5)
        _ = request.withUnsafeBytes { send(c, $0.baseAddress!, request.count, Int32(MSG_NOSIGNAL)) }
        XCTAssertTrue(eventually { engine.queueDepth == 1 })
        close(c)
        XCTAssertTrue(eventually { engine.queueDepth == 0 }, "queue depth \(engine.queueDepth) after the client left")
        engine.resume()
        XCTAssertEqual(try BlockingHTTPClient(endpoint: endpoint).request(method: "POST", path: "/v1/embed", body: f.images[1]).status, 200)
    }

    func testPixelLimitAndMissingIndexAreNamed400s() throws {
        let f = try ServingFixture()
        var batching = BatchingOptions()
        batching.maxPixels = 500
        let daemon = try f.startDaemon(tcp: false, batching: batching)
        defer { daemon.shutdown() }
        let client = BlockingHTTPClient(endpoint: .unix(f.dir + "/d.sock"))
        let big = try client.request(method: "POST", path: "/v1/embed", body: f.images[0])  // 24x40 = 960 pixels
        XCTAssertEqual(big.status, 400)
        XCTAssertEqual((try json(big)["error"] as? [String: Any])?["code"] as? String, "image_too_large", big.text)
        XCTAssertTrue(big.text.contains("960 pixels"), big.text)
        let search = try client.request(method: "POST", path: "/v1/search", body: f.images[7])
        XCTAssertEqual(search.status, 400)
        XCTAssertTrue(search.text.contains("no_index"), search.text)
        XCTAssertTrue(try client.request(method: "GET", path: "/metrics").text.contains("catlip_images_rejected_total 1"))
    }

    func testSocketFileRules() throws {
        let f = try ServingFixture()
        let path = f.dir + "/d.sock"
        // a stale socket file (its owner died) is replaced
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        close(fd)
        let daemon = try f.startDaemon(tcp: false)
        var st = stat()
        XCTAssertEqual(lstat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(try BlockingHTTPClient(endpoint: .unix(path)).request(method: "GET", path: "/healthz").status, 200)
        // a live one is a startup error, and the live daemon keeps serving
        XCTAssertThrowsError(try f.startDaemon(tcp: false)) { XCTAssertTrue("\($0)".contains("another daemon"), "\($0)") }
        XCTAssertEqual(try BlockingHTTPClient(endpoint: .unix(path)).request(method: "GET", path: "/healthz").status, 200)
        daemon.shutdown()
        XCTAssertNotEqual(lstat(path, &st), 0, "shutdown removes the socket file")
        // a regular file is never replaced
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try f.startDaemon(tcp: false)) { XCTAssertTrue("\($0)".contains("not a socket"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "keep me")
        try FileManager.default.removeItem(atPath: path)
        // TCP: loopback only unless allowed
        XCTAssertThrowsError(try f.startDaemon { $0.listen = "0.0.0.0:0" }) { XCTAssertTrue("\($0)".contains("--allow-remote"), "\($0)") }
        XCTAssertThrowsError(try f.startDaemon { $0.listen = "nonsense" })
    }
}
