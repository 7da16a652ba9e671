import Dispatch
import Foundation

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
