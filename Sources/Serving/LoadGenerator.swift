import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `catlip bench serve`: a closed-loop load generator. Each of `clients` threads holds one
/// keep-alive connection and sends the same request back to back; after a warm-up it counts
/// the requests completed within the next `duration` seconds, their errors and latencies.
public struct LoadGenerator: Sendable {
    /// Where the daemon listens.
    public var endpoint: ServeEndpoint
    /// Request path (`/v1/embed`).
    public var path: String
    /// Request body (one image, or JSON).
    public var body: [UInt8]
    /// Content-Type of the body.
    public var contentType: String
    /// Images per request (for images/s).
    public var imagesPerRequest = 1
    /// Concurrent connections.
    public var clients = 1
    /// Seconds of warm-up (not counted).
    public var warmup: Double = 2
    /// Seconds measured.
    public var duration: Double = 10

    /// A generator sending `body` to `path` at `endpoint`.
    public init(endpoint: ServeEndpoint, path: String, body: [UInt8], contentType: String) {
        self.endpoint = endpoint
        self.path = path
        self.body = body
        self.contentType = contentType
    }

    /// What one run measured.
    public struct Report: Sendable, Codable {
        /// Concurrent connections.
        public var clients: Int
        /// Successful requests in the measured window.
        public var requests: Int
        /// Failed requests (non-2xx or transport errors) in the window.
        public var errors: Int
        /// Seconds measured.
        public var seconds: Double
        /// Successful requests per second.
        public var requestsPerS: Double
        /// Images per second (requests/s x images per request).
        public var imagesPerS: Double
        /// Latency percentiles of successful requests, milliseconds.
        public var p50Ms: Double, p90Ms: Double, p99Ms: Double, maxMs: Double
        /// The first error seen, if any.
        public var firstError: String?

        enum CodingKeys: String, CodingKey {
            case clients, requests, errors, seconds
            case requestsPerS = "requests_per_s", imagesPerS = "images_per_s"
            case p50Ms = "p50_ms", p90Ms = "p90_ms", p99Ms = "p99_ms", maxMs = "max_ms"
            case firstError = "first_error"
        }
    }

    /// Whether a request that completed at `completedAt` belongs to the measured window
    /// [`from`, `to`): every completion inside it counts, whenever the request started, so that
    /// throughput is completions per second (as wrk counts). Counting only requests that both
    /// start and end inside the window would lose about one request per client, a bias of
    /// latency / duration (4-10% for 0.5-1 s latencies over 10 s).
    public static func counts(completedAt: UInt64, from: UInt64, to: UInt64) -> Bool {
        completedAt >= from && completedAt < to
    }

    /// Runs the load and returns the report.
    public func run() -> Report {
        let start = DispatchTime.now().uptimeNanoseconds
        let measureFrom = start + UInt64(warmup * 1e9)
        let measureTo = measureFrom + UInt64(duration * 1e9)
        let results = Results(clients: clients)
        let group = DispatchGroup()
        for c in 0..<clients {
            group.enter()
            let t = Thread { [self] in
                let client = BlockingHTTPClient(endpoint: endpoint, timeout: 120)
                var latencies: [Double] = []
                var errors = 0
                var firstError: String?
                while true {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    if t0 >= measureTo { break }
                    var ok = false
                    do {
                        let r = try client.request(method: "POST", path: path, contentType: contentType, body: body)
                        ok = (200..<300).contains(r.status)
                        if !ok && firstError == nil { firstError = "HTTP \(r.status): \(r.text.prefix(200))" }
                    } catch {
                        if firstError == nil { firstError = "\(error)" }
                        client.disconnect()
                    }
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    if LoadGenerator.counts(completedAt: t1, from: measureFrom, to: measureTo) {
                        if ok { latencies.append(Double(t1 - t0) / 1e6) } else { errors += 1 }
                    }
                }
                results.store(c, latencies: latencies, errors: errors, firstError: firstError)
                group.leave()
            }
            t.start()
        }
        group.wait()
        let (latencies, errors, firstError) = results.merged()
        let sorted = latencies.sorted()
        func pct(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1)  // nearest-rank
            return sorted[min(sorted.count - 1, rank)]
        }
        let rps = Double(sorted.count) / duration
        return Report(
            clients: clients, requests: sorted.count, errors: errors, seconds: duration, requestsPerS: rps,
            imagesPerS: rps * Double(imagesPerRequest), p50Ms: pct(0.5), p90Ms: pct(0.9), p99Ms: pct(0.99),
            maxMs: sorted.last ?? 0, firstError: firstError)
    }
}

/// Per-client results, merged at the end.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var latencies: [[Double]]
    private var errors: [Int]
    private var firstErrors: [String?]

    init(clients: Int) {
        latencies = Array(repeating: [], count: clients)
        errors = Array(repeating: 0, count: clients)
        firstErrors = Array(repeating: nil, count: clients)
    }

    func store(_ c: Int, latencies l: [Double], errors e: Int, firstError: String?) {
        lock.lock()
        latencies[c] = l
        errors[c] = e
        firstErrors[c] = firstError
        lock.unlock()
    }

    func merged() -> ([Double], Int, String?) {
        lock.lock()
        defer { lock.unlock() }
        return (latencies.flatMap { $0 }, errors.reduce(0, +), firstErrors.compactMap { $0 }.first)
    }
}

/// `catlip bench serve --slow-drip N --oversized-per-s R`: hostile clients beside the ordinary
/// ones, for issue 17's bar (the ordinary clients' p99 within 2x of an unloaded run while the
/// hostile ones run). Two threads, loopback only, bounded in count and time:
/// - `slowDrips` connections each send one byte every `dripInterval` seconds: half trickle a
///   request head, half a body after a whole head announcing 1 MB. Each is expected to be
///   answered 408 (or 503 over the connection limit) and closed; it is then replaced by a new
///   one after `dripInterval` (a refused client does not reconnect in a tight loop).
/// - `oversizedPerSecond` requests a second, in turn: a head announcing 1 GiB (413 before any
///   body), a chunked body streamed until the daemon answers (413 at its limit), `bodyBytes` of
///   JSON numbers (413 when counted), and `bodyBytes` of JSON holding 64 base64 strings of
///   noise (within every limit: parsed, decoded, each image refused by the engine with 400).
public struct HostileLoad: Sendable {
    /// Where the daemon listens.
    public var endpoint: ServeEndpoint
    /// Slow-drip connections kept open at once.
    public var slowDrips = 500
    /// Seconds between two bytes of a drip.
    public var dripInterval: Double = 2
    /// Oversized requests started per second (one at a time).
    public var oversizedPerSecond: Double = 2
    /// Size of the JSON bodies sent whole (just under the default 32 MiB body limit).
    public var bodyBytes = 31 << 20
    /// The most slow-drip connections and oversized requests per second accepted.
    public static let limits = (slowDrips: 2000, oversizedPerSecond: 20.0)

    /// Hostile clients against `endpoint` with the default counts.
    public init(endpoint: ServeEndpoint) {
        self.endpoint = endpoint
    }

    /// What the hostile clients got.
    public struct Report: Sendable, Codable {
        /// Slow-drip connections opened.
        public var dripConnections = 0
        /// How the daemon ended them: HTTP status (`408`, `503`), `closed` (no answer),
        /// `open_at_end`, `connect_failed`.
        public var dripOutcomes: [String: Int] = [:]
        /// Longest time a drip connection stayed open before the daemon ended it, seconds.
        public var dripLongestS: Double = 0
        /// Answers to the oversized requests by kind (`declared`, `chunked`, `numbers`,
        /// `images`) and status (`closed` when none came).
        public var oversized: [String: [String: Int]] = [:]
        /// Longest time from an oversized request's start to its answer, seconds.
        public var oversizedLongestS: Double = 0
        /// Bytes the hostile clients sent.
        public var bytesSent = 0

        enum CodingKeys: String, CodingKey {
            case dripConnections = "drip_connections", dripOutcomes = "drip_outcomes", dripLongestS = "drip_longest_s"
            case oversized, oversizedLongestS = "oversized_longest_s", bytesSent = "bytes_sent"
        }
    }

    /// Runs both kinds of clients for `seconds` and returns what they got.
    public func run(seconds: Double) -> Report {
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1e9)
        let box = ReportBox()
        let group = DispatchGroup()
        let works: [@Sendable () -> Void] = [{ self.drip(until: end, into: box) }, { self.oversize(until: end, into: box) }]
        for work in works {
            group.enter()
            Thread {
                work()
                group.leave()
            }.start()
        }
        group.wait()
        return box.report
    }

    private struct Drip {
        var fd: Int32
        var opened: UInt64
        var nextByte: UInt64
        var answer: [UInt8] = []
    }

    /// The slow-drip thread: non-blocking sockets, one poll over all of them.
    private func drip(until end: UInt64, into box: ReportBox) {
        let interval = UInt64(dripInterval * 1e9)
        let headOnly = Array("POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nX-Drip: ".utf8)
        let withBody = Array("POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n".utf8)
        var drips: [Drip] = []
        var reopenAt: [UInt64] = Array(repeating: 0, count: slowDrips)
        var opened = 0
        var outcomes: [String: Int] = [:]
        var longest: UInt64 = 0
        var sent = 0
        while DispatchTime.now().uptimeNanoseconds < end {
            let now = DispatchTime.now().uptimeNanoseconds
            // open what is missing (each slot waits `interval` after its last connection ended)
            while drips.count < slowDrips, let slot = reopenAt.firstIndex(where: { $0 <= now }) {
                reopenAt.remove(at: slot)
                guard let fd = try? endpoint.connectSocket(timeout: 5) else {
                    outcomes["connect_failed", default: 0] += 1
                    reopenAt.append(now + interval)
                    continue
                }
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                let start = opened % 2 == 0 ? headOnly : withBody
                opened += 1
                sent += start.withUnsafeBytes { max(0, send(fd, $0.baseAddress!, start.count, Int32(MSG_NOSIGNAL))) }
                drips.append(Drip(fd: fd, opened: now, nextByte: now + interval))
            }
            // one byte to each drip that is due
            for i in drips.indices where drips[i].nextByte <= now {
                var byte = UInt8(ascii: "a")
                if send(drips[i].fd, &byte, 1, Int32(MSG_NOSIGNAL)) == 1 { sent += 1 }
                drips[i].nextByte = now + interval
            }
            // collect answers and closes
            var polls = drips.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            _ = poll(&polls, nfds_t(polls.count), 100)
            var ended: [Int] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            for (i, p) in polls.enumerated() where p.revents != 0 {
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(p.fd, $0.baseAddress!, $0.count, 0) }
                    if n > 0 {
                        drips[i].answer += buffer[0..<n]
                        continue
                    }
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                    ended.append(i)
                    break
                }
            }
            let finished = DispatchTime.now().uptimeNanoseconds
            for i in ended.reversed() {
                let d = drips.remove(at: i)
                close(d.fd)
                outcomes[HostileLoad.statusOf(d.answer), default: 0] += 1
                longest = max(longest, finished - d.opened)
                reopenAt.append(finished + interval)
            }
        }
        for d in drips { close(d.fd) }
        outcomes["open_at_end", default: 0] += drips.count
        box.update {
            $0.dripConnections = opened
            $0.dripOutcomes = outcomes
            $0.dripLongestS = Double(longest) / 1e9
            $0.bytesSent += sent
        }
    }

    /// `408`, `503`, ... from an answer's status line; `closed` when there was none.
    static func statusOf(_ answer: [UInt8]) -> String {
        let line = String(decoding: answer.prefix(16), as: UTF8.self).split(separator: " ")
        return line.count >= 2 && line[0].hasPrefix("HTTP/") ? String(line[1]) : "closed"
    }

    /// The oversized thread: one request at a time, a new connection each.
    private func oversize(until end: UInt64, into box: ReportBox) {
        guard oversizedPerSecond > 0 else { return }
        let bodies = HostileLoad.oversizedBodies(bytes: bodyBytes)
        let gap = UInt64(1e9 / oversizedPerSecond)
        var next = DispatchTime.now().uptimeNanoseconds
        var kind = 0
        var answers: [String: [String: Int]] = [:]
        var longest: UInt64 = 0
        var sent = 0
        while true {
            var now = DispatchTime.now().uptimeNanoseconds
            if now < next { usleep(UInt32(min(1_000_000, (next - now) / 1000))) }
            now = DispatchTime.now().uptimeNanoseconds
            if now >= end { break }
            next = max(next + gap, now)
            let name = ["declared", "chunked", "numbers", "images"][kind % 4]
            kind += 1
            guard let fd = try? endpoint.connectSocket(timeout: 30) else {
                answers[name, default: [:]]["connect_failed", default: 0] += 1
                continue
            }
            var answer: [UInt8] = []
            switch name {
            case "declared":
                sent += sendAll(fd, Array("POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1073741824\r\n\r\n".utf8))
            case "chunked":
                sent += sendAll(fd, Array("POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
                let piece = Array("100000\r\n".utf8) + [UInt8](repeating: 0x41, count: 1 << 20) + Array("\r\n".utf8)
                for _ in 0..<64 {
                    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 0) > 0 { break }
                    let n = sendAll(fd, piece)
                    sent += n
                    if n < piece.count { break }
                }
            default:
                let body = name == "numbers" ? bodies.numbers : bodies.images
                let head = "POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
                sent += sendAll(fd, Array(head.utf8) + body)
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while answer.count < 65536 {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n <= 0 { break }
                answer += buffer[0..<n]
                if answer.count >= 12 { break }  // the status line is all that is counted
            }
            close(fd)
            answers[name, default: [:]][HostileLoad.statusOf(answer), default: 0] += 1
            longest = max(longest, DispatchTime.now().uptimeNanoseconds - now)
        }
        box.update {
            $0.oversized = answers
            $0.oversizedLongestS = Double(longest) / 1e9
            $0.bytesSent += sent
        }
    }

    /// The two JSON bodies of about `bytes` each: numbers (`{"images": [0,0,...]}`), and 64
    /// strings of base64 noise (from a fixed xorshift stream: fast, and the same every run).
    static func oversizedBodies(bytes: Int) -> (numbers: [UInt8], images: [UInt8]) {
        let numbers = Array((#"{"images": ["# + String(repeating: "0,", count: max(1, bytes / 2 - 8)) + "0]}").utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let perImage = max(4, (bytes - 64 * 4) / 64 / 4 * 4)
        var images = Array(#"{"images": [""#.utf8)
        images.reserveCapacity(bytes + 64)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<64 {
            if i > 0 { images += Array(#"", ""#.utf8) }
            for _ in 0..<perImage {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                images.append(alphabet[Int(state >> 58)])
            }
        }
        images += Array(#""]}"#.utf8)
        return (numbers, images)
    }

    /// Sends what the peer takes of `bytes` (blocking); the count sent.
    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        return sent
    }
}

/// The hostile threads' report, filled in by each as it ends.
private final class ReportBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = HostileLoad.Report()
    func update(_ change: (inout HostileLoad.Report) -> Void) {
        lock.lock()
        change(&value)
        lock.unlock()
    }
    var report: HostileLoad.Report {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

extension LoadGenerator {
    /// Runs this load with `hostile` clients beside it (what `catlip bench serve --slow-drip
    /// ... --oversized-per-s ...` measures): the ordinary clients connect first, the hostile ones
    /// start a second later on their own thread and run to the end of the measured window, so
    /// the report shows what they cost the ordinary clients. Without `hostile`, just `run()`.
    public func run(beside hostile: HostileLoad?) -> (load: Report, hostile: HostileLoad.Report?) {
        guard let hostile else { return (run(), nil) }
        let slot = HostileReportSlot()
        let done = DispatchSemaphore(value: 0)
        let seconds = warmup + duration - 1
        Thread {
            usleep(1_000_000)
            slot.value = hostile.run(seconds: seconds)
            done.signal()
        }.start()
        let report = run()
        done.wait()
        return (report, slot.value)
    }
}

/// The hostile clients' report, handed from their thread to the caller's (the semaphore
/// orders the write before the read).
private final class HostileReportSlot: @unchecked Sendable {
    var value: HostileLoad.Report?
}
