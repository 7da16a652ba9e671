import Foundation
import Imaging
import Support
import TestSupport
import XCTest

@testable import Serving

#if canImport(Glibc)
    import Glibc
#endif

/// Sends `bytes` on `fd` (MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE); false when the
/// peer has closed.
@discardableResult
private func sendBytes(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        sent += n
    }
    return true
}

/// Whether `fd` has something to read (or was closed) within `seconds`.
private func readable(_ fd: Int32, within seconds: Double) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&p, 1, Int32(seconds * 1000)) > 0
}

/// Reads until the peer closes, an error, or `seconds` have passed (then `closed` is false).
private func readToEnd(_ fd: Int32, within seconds: Double) -> (text: [UInt8], closed: Bool) {
    let end = Date(timeIntervalSinceNow: seconds)
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while Date() < end {
        guard readable(fd, within: max(0.01, end.timeIntervalSinceNow)) else { continue }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n <= 0 { return (out, true) }
        out += buffer[0..<n]
    }
    return (out, false)
}

/// Sends `piece` every 0.1 s until the daemon answers or closes (at most 15 s): the answer and
/// the seconds from the first piece.
private func dripUntilAnswered(_ fd: Int32, _ piece: [UInt8]) -> (answer: String, seconds: Double) {
    let began = Date()
    var answer: [UInt8] = []
    while Date().timeIntervalSince(began) < 15 {
        if readable(fd, within: 0.1) {
            answer = readToEnd(fd, within: 5).text
            break
        }
        if !sendBytes(fd, piece) { break }
    }
    return (String(decoding: answer, as: UTF8.self), Date().timeIntervalSince(began))
}

/// The HTTP responses in `bytes`, in order: status, headers (lower-cased names) and body. Nil
/// when the bytes are not a sequence of well-formed responses (a status line `HTTP/1.0 NNN` or
/// `HTTP/1.1 NNN`, header lines, a body of exactly Content-Length bytes; none for 1xx). A
/// response cut off by the close is malformed: the daemon writes whole answers or none.
private func parseResponses(_ bytes: [UInt8]) -> [(status: Int, headers: [String: String], body: [UInt8])]? {
    var out: [(Int, [String: String], [UInt8])] = []
    var i = 0
    let separator: [UInt8] = [13, 10, 13, 10]
    while i < bytes.count {
        var end: Int?
        var j = i
        while j + 4 <= bytes.count {
            if Array(bytes[j..<(j + 4)]) == separator {
                end = j
                break
            }
            j += 1
        }
        guard let headEnd = end else { return nil }
        let lines = String(decoding: bytes[i..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let status = lines[0].split(separator: " ", maxSplits: 2)
        guard status.count >= 2, status[0] == "HTTP/1.1" || status[0] == "HTTP/1.0", status[1].count == 3,
            let code = Int(status[1]), (100...599).contains(code)
        else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        i = headEnd + 4
        var body: [UInt8] = []
        if code >= 200 {
            guard let length = headers["content-length"].flatMap({ Int($0) }), length >= 0, i + length <= bytes.count else {
                return nil
            }
            body = Array(bytes[i..<(i + length)])
            i += length
        }
        out.append((code, headers, body))
    }
    return out
}

/// The `{"error": {"code", "message"}}` of an error body, or nil when it is not one.
private func errorCode(_ body: [UInt8]) -> (code: String, message: String)? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
        let error = object["error"] as? [String: Any], let code = error["code"] as? String,
        let message = error["message"] as? String, !code.isEmpty, !message.isEmpty
    else { return nil }
    return (code, message)
}

/// A daemon over the fixture's model with an index of its images, at most 4 images a request.
private func indexedDaemon(_ f: ServingFixture) throws -> ServingDaemon {
    var builder = IndexBuilder(model: f.model)
    builder.batchSize = 8
    let (index, _) = try builder.build(inputs: f.imagePaths)
    return try f.startDaemon(index: index, tcp: false, maxImages: 4)
}

/// Issue 17: clients that trickle, hoard connections, send oversized or mutated requests get
/// 408, 503, 413 or 4xx answers and are closed; the daemon keeps serving the others.
final class HostileClientTests: XCTestCase {
    func testSlowDripBodyAndHeadAreAnswered408WithinTheReceiveDeadline() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { options in
            options.receiveTimeout = 1
            options.readTimeout = 0.4
            options.minReceiveRate = 0  // only the whole-request deadline can stop these
        }
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        // a body, then a head, each a byte every 0.1 s: both pass the rate rule, neither the deadline
        let heads = [
            Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".utf8),
            Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nX-Padding: ".utf8),
        ]
        for (n, start) in heads.enumerated() {
            let fd = try endpoint.connectSocket(timeout: 5)
            defer { close(fd) }
            XCTAssertTrue(sendBytes(fd, start))
            let (text, seconds) = dripUntilAnswered(fd, [UInt8(ascii: "a")])
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 408"), "case \(n): \(text)")
            XCTAssertTrue(text.contains("did not arrive whole within 1.0 s"), "case \(n): \(text)")
            XCTAssertLessThan(seconds, 10, "case \(n): the drip kept its connection \(seconds) s")
        }
        XCTAssertTrue(eventually { daemon.connectionCount == 0 }, "connections left open: \(daemon.connectionCount)")
        XCTAssertEqual(try BlockingHTTPClient(endpoint: endpoint).request(method: "GET", path: "/healthz").status, 200)
    }

    func testABodyBelowTheMinimumRateIsAnswered408() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { options in
            options.receiveTimeout = 60
            options.readTimeout = 0.5
            options.minReceiveRate = 1000
        }
        defer { daemon.shutdown() }
        let fd = try ServeEndpoint.unix(f.dir + "/d.sock").connectSocket(timeout: 5)
        defer { close(fd) }
        XCTAssertTrue(sendBytes(fd, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".utf8)))
        let (text, seconds) = dripUntilAnswered(fd, [UInt8](repeating: 0x41, count: 10))  // 100 bytes/s
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 408"), text)
        XCTAssertTrue(text.contains("the minimum is 1000 bytes/s"), text)
        XCTAssertLessThan(seconds, 10)
    }

    func testConnectionsOverTheLimitGet503AndTheLimitFreesUp() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { $0.maxConnections = 4 }
        defer { daemon.shutdown() }
        XCTAssertEqual(daemon.maxConnections, 4)
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        var held = try (0..<4).map { _ in try endpoint.connectSocket(timeout: 5) }
        defer { for fd in held { close(fd) } }
        XCTAssertTrue(eventually { daemon.connectionCount == 4 }, "\(daemon.connectionCount) connections")
        let extra = try endpoint.connectSocket(timeout: 5)
        let (answer, closed) = readToEnd(extra, within: 5)
        close(extra)
        let text = String(decoding: answer, as: UTF8.self)
        XCTAssertTrue(closed, "the refused connection is closed at once")
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 503"), text)
        XCTAssertEqual(parseResponses(answer).flatMap { errorCode($0.first?.body ?? []) }?.code, "too_many_connections", text)
        XCTAssertTrue(text.contains("Retry-After: 1"), text)
        // the held connections still work, and one closed makes room
        XCTAssertTrue(sendBytes(held[0], Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        XCTAssertTrue(readable(held[0], within: 5))
        close(held.removeLast())
        XCTAssertTrue(eventually { daemon.connectionCount == 3 })
        let client = BlockingHTTPClient(endpoint: endpoint)
        XCTAssertEqual(try client.request(method: "POST", path: "/v1/embed", body: f.images[0]).status, 200)
        XCTAssertTrue(try client.request(method: "GET", path: "/metrics").text.contains("catlip_connections_refused_total 1"))
    }

    func testOversizedBodiesGet413WithoutBeingRead() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { $0.maxBodyBytes = 64 << 10 }
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        // Content-Length over the limit and no body at all: the answer cannot have waited for it
        let fd = try endpoint.connectSocket(timeout: 5)
        XCTAssertTrue(sendBytes(fd, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n".utf8)))
        let (answer, closed) = readToEnd(fd, within: 5)
        close(fd)
        XCTAssertTrue(closed)
        XCTAssertEqual(parseResponses(answer)?.map(\.status), [413], String(decoding: answer, as: UTF8.self))
        XCTAssertEqual(parseResponses(answer).flatMap { errorCode($0[0].body) }?.message, "body of 1000000000 bytes; the limit is 65536")
        // chunked: the daemon answers as the body passes the limit, long before this one ends
        let chunked = try endpoint.connectSocket(timeout: 5)
        defer { close(chunked) }
        XCTAssertTrue(sendBytes(chunked, Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)))
        let piece = Array("4000\r\n".utf8) + [UInt8](repeating: 0x41, count: 0x4000) + Array("\r\n".utf8)
        var sent = 0
        while sent < 64 << 20, !readable(chunked, within: 0), sendBytes(chunked, piece) { sent += 0x4000 }
        let text = String(decoding: readToEnd(chunked, within: 5).text, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 413"), String(text.prefix(200)))
        XCTAssertTrue(text.contains("body over the limit of 65536 bytes"), text)
        XCTAssertLessThan(sent, 64 << 20, "the client could send the whole 64 MiB")
        XCTAssertTrue(eventually { daemon.heldBytes == 0 }, "\(daemon.heldBytes) bytes still held")
    }

    func testRequestsBeyondTheHeldBytesBudgetGet503() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { options in
            options.maxBodyBytes = 100_000
            options.maxHeldBytes = 150_000
        }
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        let head = Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".utf8)
        // the first holds 90,000 bytes of its body; the second's 90,000 do not fit beside them
        let first = try endpoint.connectSocket(timeout: 5)
        defer { close(first) }
        XCTAssertTrue(sendBytes(first, head + [UInt8](repeating: 1, count: 90_000)))
        XCTAssertTrue(eventually { daemon.heldBytes == 90_000 }, "\(daemon.heldBytes) bytes held")
        let second = try endpoint.connectSocket(timeout: 5)
        defer { close(second) }
        XCTAssertTrue(sendBytes(second, head + [UInt8](repeating: 1, count: 90_000)))
        let answer = readToEnd(second, within: 5).text
        XCTAssertEqual(parseResponses(answer)?.map(\.status), [503], String(decoding: answer, as: UTF8.self))
        XCTAssertEqual(parseResponses(answer).flatMap { errorCode($0[0].body) }?.code, "server_busy")
        XCTAssertEqual(daemon.heldBytes, 90_000, "the refused body gave its bytes back")
        close(first)
        XCTAssertTrue(eventually { daemon.heldBytes == 0 }, "\(daemon.heldBytes) bytes held after the client left")
        XCTAssertEqual(try BlockingHTTPClient(endpoint: endpoint).request(method: "POST", path: "/v1/embed", body: f.images[1]).status, 200)
    }

    func testJSONBodiesAreCountedBeforeTheyAreParsed() throws {
        let f = try ServingFixture()
        let daemon = try indexedDaemon(f)
        defer { daemon.shutdown() }
        let client = BlockingHTTPClient(endpoint: .unix(f.dir + "/d.sock"), timeout: 60)
        // 8 MiB of small numbers (Foundation builds an object for each: 31 MiB of them took
        // 900 MiB): counted before parsing, 413
        let numbers = Array((#"{"embeddings": [["# + String(repeating: "0,", count: 4 << 20) + "0]]}").utf8)
        for path in ["/v1/search", "/v1/embed"] {
            let r = try client.request(method: "POST", path: path, contentType: "application/json", body: numbers)
            XCTAssertEqual(r.status, 413, r.text)
            XCTAssertEqual(errorCode(r.body)?.code, "too_many_values", r.text)
        }
        let short = #"{"embeddings": [["# + Array(repeating: "0", count: 20).joined(separator: ",") + "]]}"
        let many = try client.request(method: "POST", path: "/v1/search", contentType: "application/json", body: Array(short.utf8))
        XCTAssertTrue(many.text.contains("has 20 values; the model's embeddings have 32"), many.text)
        // deep nesting and 10,000 tiny strings: refused before Foundation sees them
        let deep = try client.request(method: "POST", path: "/v1/embed", contentType: "application/json",
                                      body: Array((String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)).utf8))
        XCTAssertEqual(errorCode(deep.body)?.code, "bad_json", deep.text)
        XCTAssertTrue(deep.text.contains("nests 5000 levels deep"), deep.text)
        let strings = #"{"images": ["# + Array(repeating: #""QQ==""#, count: 10_000).joined(separator: ",") + "]}"
        let manyStrings = try client.request(method: "POST", path: "/v1/embed", contentType: "application/json", body: Array(strings.utf8))
        XCTAssertEqual(manyStrings.status, 413, manyStrings.text)
        XCTAssertTrue(manyStrings.text.contains("10001 strings, more than the 20"), manyStrings.text)
        // a JSON request within the limits is still answered, and the daemon is well
        let ok = #"{"images": ["\#(Data(f.images[2]).base64EncodedString())"]}"#
        XCTAssertEqual(try client.request(method: "POST", path: "/v1/embed", contentType: "application/json", body: Array(ok.utf8)).status, 200)
        XCTAssertEqual(try client.request(method: "GET", path: "/healthz").status, 200)
        XCTAssertEqual(daemon.heldBytes, 0)
    }

    func testFuzzedHTTPStreamsGetWellFormedAnswersOrACloseAndTheDaemonLives() throws {
        let f = try ServingFixture()
        let daemon = try f.startDaemon(tcp: false) { options in
            // short clocks, so that each cut-off request ends in a fraction of a second
            options.receiveTimeout = 0.3
            options.readTimeout = 0.1
            options.minReceiveRate = 0
            options.idleTimeout = 0.05
            options.maxBodyBytes = 256 << 10
        }
        defer { daemon.shutdown() }
        let endpoint = ServeEndpoint.unix(f.dir + "/d.sock")
        let image = f.images[0]
        let json = #"{"images": ["\#(Data(image).base64EncodedString())"], "top_k": 3}"#
        let healthz = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let post = Array("POST /v1/classify?top_k=2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)".utf8)
        let raw = Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: \(image.count)\r\n\r\n".utf8) + image
        let half = json.utf8.count / 2
        let chunked = Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".utf8)
            + Array("\(String(half, radix: 16))\r\n\(json.prefix(half))\r\n".utf8)
            + Array("\(String(json.utf8.count - half, radix: 16))\r\n\(json.dropFirst(half))\r\n0\r\n\r\n".utf8)
        // (no HEAD: its answer's Content-Length announces a body that is not sent)
        let pipelined = healthz + Array("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + Array("GET /metrics HTTP/1.0\r\n\r\n".utf8)
        let bases = [healthz, post, raw, chunked, pipelined, post + healthz]
        let cases = Fuzz.caseCount(quick: 240)
        let failures = Failures()
        let workers = 4
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var rng = SeededGenerator(seed: 1717)
            for n in 0..<cases {
                let base = bases[n % bases.count]
                // every worker draws every case, so the stream of each case is fixed by its number
                let bytes = n % 3 == 0
                    ? Array(Fuzz.mutateText(String(decoding: base, as: UTF8.self), using: &rng).utf8)
                    : Fuzz.mutate(base, using: &rng, maxEdits: 3)
                guard n % workers == worker else { continue }
                do {
                    let fd = try endpoint.connectSocket(timeout: 5)
                    defer { close(fd) }
                    sendBytes(fd, bytes)
                    let (answer, closed) = readToEnd(fd, within: 20)
                    if !closed { failures.add("case \(n): the connection stayed open 20 s") }
                    guard let responses = parseResponses(answer) else {
                        failures.add("case \(n): malformed answer \(String(decoding: answer.prefix(300), as: UTF8.self))")
                        continue
                    }
                    for r in responses where r.status >= 400 && r.headers["content-type"] == "application/json" && errorCode(r.body) == nil {
                        failures.add("case \(n): \(r.status) without a JSON error: \(String(decoding: r.body, as: UTF8.self))")
                    }
                } catch {
                    failures.add("case \(n): \(error)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
        XCTAssertTrue(eventually { daemon.connectionCount == 0 }, "connections left open: \(daemon.connectionCount)")
        XCTAssertEqual(daemon.heldBytes, 0)
        let client = BlockingHTTPClient(endpoint: endpoint)
        XCTAssertEqual(try client.request(method: "GET", path: "/healthz").status, 200)
        XCTAssertEqual(try client.request(method: "POST", path: "/v1/embed", body: image).status, 200)
    }

    func testFuzzedJSONBodiesGet4xxWithAJSONErrorOrAnAnswer() throws {
        let f = try ServingFixture()
        let daemon = try indexedDaemon(f)
        defer { daemon.shutdown() }
        let client = BlockingHTTPClient(endpoint: .unix(f.dir + "/d.sock"), timeout: 30)
        let embedding = try f.referenceEmbedding(1).embedding.map { "\($0)" }.joined(separator: ",")
        let bases: [(String, String)] = [
            ("/v1/embed", #"{"images": ["\#(Data(f.images[0]).base64EncodedString())", "\#(Data(f.images[1]).base64EncodedString())"]}"#),
            ("/v1/classify", #"{"image": "data:image/png;base64,\#(Data(f.images[2]).base64EncodedString())", "top_k": 3}"#),
            ("/v1/search", #"{"embedding": [\#(embedding)], "top_k": 2}"#),
            ("/v1/search", #"{"embeddings": [[\#(embedding)], [\#(embedding)]]}"#),
        ]
        var rng = SeededGenerator(seed: 2026)
        for n in 0..<Fuzz.caseCount(quick: 400) {
            let (path, base) = bases[n % bases.count]
            let body = n % 2 == 0 ? Array(Fuzz.mutateText(base, using: &rng).utf8) : Fuzz.mutate(Array(base.utf8), using: &rng)
            let r: ClientResponse
            do {
                r = try client.request(method: "POST", path: path, contentType: "application/json", body: body)
            } catch {
                XCTFail("case \(n): \(error)")
                client.disconnect()
                continue
            }
            if r.status == 200 {
                XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(r.body)), "case \(n): \(r.text)")
            } else {
                XCTAssertTrue((400..<500).contains(r.status), "case \(n): \(r.status) \(r.text)")
                XCTAssertNotNil(errorCode(r.body), "case \(n): \(r.text)")
            }
        }
        XCTAssertEqual(try client.request(method: "GET", path: "/healthz").status, 200)
        XCTAssertEqual(daemon.heldBytes, 0)
    }
}
