import Evaluation
import Foundation
import Imaging
import Support
import ViT
import WordNet
import XCTest

@testable import Serving

/// The daemon's words-and-page routes, called through `ServingService.handle`: search by words
/// (`{"text"}` on /v1/search), `/v1/synsets`, `/v1/model`, thumbnails from the index's file only,
/// the page (off unless --ui) under its Content-Security-Policy; and the files behind them.
final class TextSearchServingTests: XCTestCase {
    /// A 10-row head named by real WordNet synsets (dog, cat, car, ...), an index of the
    /// fixture's 8 images with thumbnails.
    func makeService(ui: Bool, thumbnails: Bool = true) throws -> (ServingService, EmbeddingIndex, ServingFixture) {
        let fixture = try ServingFixture()
        let wnids = ["n02084071", "n02121620", "n02958343", "n13104059", "n07739125", "n04334599", "n04962784", "n11669335",
                     "n02834778", "n03001627"]
        let vocabulary = Vocabulary(entries: wnids.enumerated().map { Vocabulary.Entry(wnid: $1, count: 100 - $0, lemmas: []) })
        var builder = IndexBuilder(model: fixture.model)
        builder.thumbnailSide = 16
        let (index, report) = try builder.build(inputs: fixture.imagePaths)
        XCTAssertEqual(report.thumbnails?.count, 8)
        let metrics = ServerMetrics()
        let engine = InferenceEngine(model: fixture.model, options: BatchingOptions(), metrics: metrics)
        let search = TextSearch(model: fixture.model, vocabulary: vocabulary, database: try WordNetDatabase(), mode: .corenet)
        let service = ServingService(
            engine: engine, vocabulary: vocabulary, index: index, metrics: metrics, modelName: "tiny", textSearch: search,
            thumbnails: thumbnails ? report.thumbnails : nil, ui: ui)
        return (service, index, fixture)
    }

    /// The reply to a request answered at once (not through the engine).
    func call(_ service: ServingService, _ method: String, _ uri: String, json: Any? = nil) throws -> ServeReply {
        let box = ReplyBox()
        var request = ServeRequest(method: method, uri: uri)
        if let json {
            request.contentType = "application/json"
            request.body = Array(try JSONSerialization.data(withJSONObject: json))
        }
        XCTAssertNil(service.handle(request) { box.reply = $0 }, "answered without the engine")
        return try XCTUnwrap(box.reply)
    }

    func object(_ reply: ServeReply) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any], reply.body)
    }

    func errorCode(_ reply: ServeReply) -> String? {
        ((try? object(reply))?["error"] as? [String: Any])?["code"] as? String
    }

    func testSearchByWords() throws {
        let (service, index, fixture) = try makeService(ui: false)
        _ = fixture
        let reply = try call(service, "POST", "/v1/search", json: ["text": "a dog and a car", "top_k": 3])
        XCTAssertEqual(reply.status, 200, reply.body)
        let body = try object(reply)
        let query = try XCTUnwrap(body["query"] as? [String: Any])
        XCTAssertEqual(query["rule"] as? String, "cosine")
        XCTAssertEqual((query["synsets"] as? [[String: Any]])?.compactMap { $0["wnid"] as? String }, ["n02084071", "n02958343"])
        let matches = try XCTUnwrap(((body["results"] as? [[String: Any]])?.first)?["matches"] as? [[String: Any]])
        XCTAssertEqual(matches.count, 3)
        // the order the scorer gives for rows 0 and 2
        let scores = index.embeddings.withUnsafeBufferPointer {
            TextQueryScorer(model: service.engine.model).scores(embeddings: $0, norms: index.norms, count: index.count, rows: [0, 2], rule: .cosine)
        }
        let best = scores.indices.sorted { (scores[$0], -$0) > (scores[$1], -$1) }.prefix(3)
        XCTAssertEqual(matches.compactMap { $0["row"] as? Int }, Array(best))
        XCTAssertEqual(matches[0]["thumbnail"] as? String, "/v1/thumbnails/\(best.first!)")
        // another rule, by name
        let logit = try call(service, "POST", "/v1/search", json: ["text": "dog", "rule": "logit"])
        XCTAssertEqual(((try object(logit))["query"] as? [String: Any])?["rule"] as? String, "logit")
        // refusals
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": "xyzzy"])), "unmapped")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": " "])), "empty_text")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": String(repeating: "a", count: 1001)])), "text_too_long")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": 3])), "bad_json")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": "dog", "rule": "best"])), "bad_parameter")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["text": "dog", "embedding": [1.0]])), "bad_json")
        XCTAssertEqual(errorCode(try call(service, "POST", "/v1/search", json: ["rule": "cosine", "embedding": [1.0]])), "bad_json")
        let unmapped = try call(service, "POST", "/v1/search", json: ["text": "xyzzy"])
        XCTAssertEqual(unmapped.status, 400)
        XCTAssertTrue(unmapped.body.contains("'xyzzy'"), unmapped.body)
    }

    func testSynsetsAndModel() throws {
        let (service, _, fixture) = try makeService(ui: false)
        _ = fixture
        let reply = try call(service, "GET", "/v1/synsets?q=red+car%20street")
        XCTAssertEqual(reply.status, 200, reply.body)
        let body = try object(reply)
        XCTAssertEqual(body["query"] as? String, "red car street")
        XCTAssertEqual(Set((body["synsets"] as? [[String: Any]])?.compactMap { $0["lemma"] as? String } ?? []), ["red", "car", "street"])
        XCTAssertEqual(errorCode(try call(service, "GET", "/v1/synsets")), "bad_parameter")
        XCTAssertEqual(errorCode(try call(service, "GET", "/v1/synsets?q=zzqx")), "unmapped")
        XCTAssertEqual(try call(service, "POST", "/v1/synsets?q=dog").status, 405)
        let model = try object(try call(service, "GET", "/v1/model"))
        XCTAssertEqual(model["embed_dim"] as? Int, 32)
        XCTAssertEqual(model["index_rows"] as? Int, 8)
        XCTAssertEqual(model["thumbnails"] as? Bool, true)
        XCTAssertEqual(model["text_rule"] as? String, "cosine")
    }

    /// Thumbnails come from the index's file by row number and from nowhere else.
    func testThumbnailsOnlyFromTheIndex() throws {
        let (service, _, fixture) = try makeService(ui: true)
        _ = fixture
        let reply = try call(service, "GET", "/v1/thumbnails/3")
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.contentType, "image/png")
        let png = try XCTUnwrap(reply.bytes)
        let image = try ImageDecoder.decode(png, source: "thumbnail")
        XCTAssertLessThanOrEqual(max(image.width, image.height), 16)
        XCTAssertTrue(reply.headers.contains { $0.0 == "Content-Security-Policy" })
        for bad in ["/v1/thumbnails/8", "/v1/thumbnails/-1", "/v1/thumbnails/", "/v1/thumbnails/../../etc/passwd",
                    "/v1/thumbnails/%2e%2e%2fetc%2fpasswd", "/v1/thumbnails/3/../4", "/v1/thumbnails/0x3",
                    "/v1/thumbnails/99999999999999999999", "/v1/thumbnails/" + fixture.imagePaths[0]] {
            let r = try call(service, "GET", bad)
            XCTAssertEqual(r.status, 404, bad)
            XCTAssertNil(r.bytes, bad)
        }
        XCTAssertEqual(try call(service, "POST", "/v1/thumbnails/3").status, 405)
        let (bare, _, f2) = try makeService(ui: true, thumbnails: false)
        _ = f2
        XCTAssertEqual(errorCode(try call(bare, "GET", "/v1/thumbnails/0")), "no_thumbnails")
    }

    /// The page only with --ui, always under its Content-Security-Policy; nothing else under /.
    func testPageOnlyWithUI() throws {
        let (off, _, f1) = try makeService(ui: false)
        _ = f1
        XCTAssertEqual(try call(off, "GET", "/").status, 404)
        XCTAssertEqual(try call(off, "GET", "/ui/app.js").status, 404)
        let (on, _, f2) = try makeService(ui: true)
        _ = f2
        for (path, type) in [("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
            let r = try call(on, "GET", path)
            XCTAssertEqual(r.status, 200, path)
            XCTAssertTrue(r.contentType.hasPrefix(type), r.contentType)
            let csp = r.headers.first { $0.0 == "Content-Security-Policy" }?.1 ?? ""
            XCTAssertTrue(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), csp)
            XCTAssertTrue(r.headers.contains { $0 == ("X-Content-Type-Options", "nosniff") })
        }
        for bad in ["/ui/../etc/passwd", "/ui/app.js/../../x", "/index.html", "/ui/", "/etc/passwd"] {
            XCTAssertEqual(try call(on, "GET", bad).status, 404, bad)
        }
        XCTAssertEqual(try call(on, "POST", "/").status, 405)
    }

    /// The thumbnails file round-trips; a damaged one is an error naming it, never a trap.
    func testThumbnailsFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("thumbs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pngs = try (0..<3).map { i in
            try PNGEncoder.encode(RGBImage(width: 2 + i, height: 2, pixels: [UInt8](repeating: UInt8(40 * i), count: (2 + i) * 6)), source: "t")
        }
        let path = dir + "/i.thumbs"
        try IndexThumbnails(pictures: pngs).write(path: path)
        let back = try IndexThumbnails.read(path: path, rows: 3)
        XCTAssertEqual((0..<3).map { back.picture(row: $0) }, pngs)
        XCTAssertNil(back.picture(row: 3))
        XCTAssertThrowsError(try IndexThumbnails.read(path: path, rows: 4)) { XCTAssertTrue("\($0)".contains("3 pictures, the index 4 rows")) }
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        var rng = SeededGenerator(seed: 9)
        for trial in 0..<300 {
            var bytes = [UInt8](good)
            if trial % 3 == 0 {
                bytes = Array(bytes.prefix(Int(rng.nextUnit() * Double(bytes.count))))
            } else {
                let i = Int(rng.nextUnit() * Double(bytes.count - 1))
                bytes[i] ^= UInt8(1 + Int(rng.nextUnit() * 254))
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let t = try IndexThumbnails.read(path: path, rows: 3)
                for r in 0..<3 { _ = t.picture(row: r) }
            } catch {
                XCTAssertTrue("\(error)".hasPrefix(path), "\(error)")
            }
        }
    }

    /// An index keeps each embedding's norm; one written before norms were kept still reads.
    func testIndexNorms() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = EmbeddingIndex(dim: 2, keys: ["a", "b"], embeddings: [3, 4, 0, 2], modelFingerprint: "f")
        XCTAssertEqual(index.norms, [5, 2])
        XCTAssertEqual(index.embeddings, [0.6, 0.8, 0, 1])
        try index.write(path: dir + "/i.idx")
        XCTAssertEqual(try EmbeddingIndex.read(path: dir + "/i.idx").norms, [5, 2])
        let old = EmbeddingIndex(dim: 2, keys: ["a"], embeddings: [1, 0], modelFingerprint: "f", normalized: true)
        XCTAssertNil(old.norms)
        try old.write(path: dir + "/old.idx")
        XCTAssertNil(try EmbeddingIndex.read(path: dir + "/old.idx").norms)
    }
}

/// Holds the reply of a synchronous `handle` call.
final class ReplyBox: @unchecked Sendable {
    var reply: ServeReply?
}
