import ArgumentParser
import Dispatch
import Distributed
import Foundation
import Imaging
import Serving
import ViT
import WordNet

#if canImport(Glibc)
    import Glibc
#endif

/// `catlip serve`: the embedding query daemon.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve embeddings, synset tags and nearest indexed images over HTTP/1.1 on a Unix socket (and loopback TCP).",
        discussion: """
            Endpoints: POST /v1/embed, POST /v1/classify, POST /v1/search (an image as the body, or JSON \
            {"images": [base64, ...], "top_k": K}; search also takes {"embedding": [...]}), GET /healthz, \
            GET /metrics (Prometheus text). Errors are JSON {"error": {"code", "message"}}. \
            The socket is created with mode 0600; a stale socket file is replaced, a live one is an error. \
            Default socket: $XDG_RUNTIME_DIR/catlip.sock, else /tmp/catlip-UID/catlip.sock (the directory is \
            created mode 0700). The socket's directory and those above it must be this user's or root's and not \
            writable by others unless sticky; anything but a stale socket of this user's at the path is left alone. \
            SIGTERM or SIGINT: stop accepting, finish requests in flight, remove the socket, exit 0. \
            Hostile clients: a request must arrive whole (head and body) within --receive-timeout and at \
            --min-receive-rate over each --read-timeout window (else 408 and close); over --max-connections a \
            connection gets 503 and is closed; a body over --max-body-mb gets 413 before it is read; JSON bodies \
            are counted before they are parsed, off the event loop; at most --max-held-mb of requests are held \
            at once (503 beyond). \
            Try: curl --unix-socket SOCKET http://localhost/healthz
            """)

    @Option(help: "Model directory (config.json, model.safetensors, vocab.tsv for class names).")
    var model: String

    @Option(help: "Unix socket path (default: $XDG_RUNTIME_DIR/catlip.sock or /tmp/catlip-UID/catlip.sock).")
    var socket: String?

    @Option(help: "Also listen on TCP HOST:PORT (loopback only unless --allow-remote; port 0 picks one).")
    var listen: String?

    @Flag(help: "Allow --listen on a non-loopback address.")
    var allowRemote = false

    @Option(help: "Index file for /v1/search (catlip index build).")
    var index: String?

    @Option(help: "Most images per forward pass.")
    var maxBatch = 32

    @Option(help: "Milliseconds a batch waits to fill.")
    var maxWaitMs = 5.0

    @Option(help: "Most images waiting for the engine (503 beyond).")
    var queue = 256

    @Option(help: "Most images in one request.")
    var maxImages = 64

    @Option(help: "Largest request body in MiB (413 beyond, before the body is read).")
    var maxBodyMb = 32

    @Option(help: "Most MiB of requests held at once over all connections: received, being parsed or queued (503 beyond).")
    var maxHeldMb = 256

    @Option(help: "Most connections open at once (503 and close beyond); lowered to what RLIMIT_NOFILE allows.")
    var maxConnections = 512

    @Option(help: "Largest image in pixels, width x height (400 beyond).")
    var maxPixels = 40_000_000

    @Option(help: "Seconds from a request's end to its answer (504 beyond).")
    var timeout = 30.0

    @Option(help: "Seconds for a whole request, head and body, to arrive from its first byte (408 and close beyond).")
    var receiveTimeout = 30.0

    @Option(help: "Seconds of the receive-rate window: a request bringing less than --min-receive-rate over one gets 408 and is closed.")
    var readTimeout = 10.0

    @Option(help: "Least bytes per second a request must bring over each --read-timeout window (0: only a silent window fails).")
    var minReceiveRate = 1024

    @Option(help: "Seconds an idle keep-alive connection stays open.")
    var idleTimeout = 60.0

    @Option(help: "Engine worker threads.")
    var threads = 2

    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if maxBatch < 1 || queue < 1 || maxImages < 1 || maxPixels < 1 || threads < 1 {
            throw ValidationError("--max-batch, --queue, --max-images, --max-pixels and --threads must be positive")
        }
        if queue > 1_000_000 { throw ValidationError("--queue \(queue): at most 1000000 images") }
        if maxImages > queue { throw ValidationError("--max-images (\(maxImages)) cannot exceed --queue (\(queue))") }
        if !(0...10_000).contains(maxWaitMs) { throw ValidationError("--max-wait-ms \(maxWaitMs): expected 0 to 10000") }
        for (name, mb) in [("--max-body-mb", maxBodyMb), ("--max-held-mb", maxHeldMb)] where !(1...65536).contains(mb) {
            throw ValidationError("\(name) \(mb): expected 1 to 65536 MiB")
        }
        if !(1...1_000_000).contains(maxConnections) { throw ValidationError("--max-connections \(maxConnections): expected 1 to 1000000") }
        let timeouts = [("--timeout", timeout), ("--receive-timeout", receiveTimeout), ("--read-timeout", readTimeout), ("--idle-timeout", idleTimeout)]
        for (name, seconds) in timeouts where !(seconds > 0 && seconds <= ServeOptions.longestTimeout) {
            throw ValidationError("\(name) \(seconds): expected seconds above 0 and at most \(Int(ServeOptions.longestTimeout))")
        }
        if minReceiveRate < 0 { throw ValidationError("--min-receive-rate \(minReceiveRate): must be >= 0") }
        if maxBodyMb > maxHeldMb { throw ValidationError("--max-body-mb (\(maxBodyMb)) cannot exceed --max-held-mb (\(maxHeldMb))") }
    }

    /// The daemon's limits from the options (the transports are added in `run`).
    func serveOptions() -> ServeOptions {
        var options = ServeOptions()
        options.maxBodyBytes = maxBodyMb << 20
        options.maxHeldBytes = maxHeldMb << 20
        options.maxConnections = maxConnections
        options.requestTimeout = timeout
        options.receiveTimeout = receiveTimeout
        options.readTimeout = readTimeout
        options.minReceiveRate = minReceiveRate
        options.idleTimeout = idleTimeout
        options.drainTimeout = min(timeout + 5, ServeOptions.longestTimeout)
        return options
    }

    func run() throws {
        Parallelism.threads = threads
        let vit = try cliRun { try ViTModel.load(directory: model) }
        try precision.apply(to: vit)
        var vocabulary: Vocabulary?
        let vocabPath = model + "/vocab.tsv"
        if FileManager.default.fileExists(atPath: vocabPath) {
            let v = try cliRun { try Vocabulary.load(path: vocabPath) }
            guard v.count == vit.numClasses else {
                throw CLIError("\(vocabPath): \(v.count) classes, but the model's head has \(vit.numClasses)")
            }
            vocabulary = v
        }
        var embeddingIndex: EmbeddingIndex?
        if let index {
            let loaded = try cliRun { try EmbeddingIndex.read(path: index) }
            guard loaded.dim == vit.dim else {
                throw CLIError("\(index): embeddings of \(loaded.dim) values, but the model's have \(vit.dim)")
            }
            let fingerprint = modelFingerprint(vit)
            if !loaded.modelFingerprint.isEmpty && loaded.modelFingerprint != fingerprint {
                throw CLIError("\(index): built by another model (fingerprint \(loaded.modelFingerprint), this model \(fingerprint)); rebuild it with catlip index build")
            }
            embeddingIndex = loaded
        }
        var batching = BatchingOptions()
        batching.maxBatch = maxBatch
        batching.maxWait = maxWaitMs / 1000
        batching.queueCapacity = queue
        batching.maxPixels = maxPixels
        let metrics = ServerMetrics()
        let engine = InferenceEngine(model: vit, options: batching, metrics: metrics)
        let service = ServingService(
            engine: engine, vocabulary: vocabulary, index: embeddingIndex, metrics: metrics,
            maxImagesPerRequest: maxImages, modelName: model)
        var options = serveOptions()
        options.socketPath = socket ?? ServeOptions.defaultSocketPath
        options.listen = listen
        options.allowRemote = allowRemote

        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let daemon = try cliRun { try ServingDaemon(service: service, options: options) }
        var places = ["unix:\(options.socketPath!)"]
        if let port = daemon.tcpPort, let listen {
            let host = listen[..<(listen.lastIndex(of: ":") ?? listen.endIndex)]
            places.append("http://\(host):\(port)")
        }
        printError(
            "catlip serve: model \(model) (dim \(vit.dim), \(vit.numClasses) classes, \(vit.imageSize) px), "
                + "index \(embeddingIndex.map { "\($0.count) rows" } ?? "none"); at most \(daemon.maxConnections) connections"
                + (daemon.maxConnections < maxConnections ? " (RLIMIT_NOFILE)" : "") + "; listening on \(places.joined(separator: ", "))")
        let signals = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                printError("catlip serve: signal \(number): draining")
                DispatchQueue.global().async { daemon.shutdown() }
            }
            source.resume()
            return source
        }
        // the signal sources must outlive the wait (an optimised build may release them early)
        withExtendedLifetime(signals) { daemon.waitUntilShutDown() }
        printError("catlip serve: stopped")
    }
}

/// `catlip index build`: embeddings of images for `/v1/search`.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Build search indexes of image embeddings.", subcommands: [Build.self])

    /// `catlip index build`.
    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Embed images (files, folders, shards or manifests) into an index file for catlip serve --index.",
            discussion: "The index is a safetensors file: embeddings (N, D) float32, L2-normalised, and the "
                + "keys (paths, or SHARD:KEY for shard samples) in its metadata. Unreadable images are skipped and reported.")

        @Option(help: "Model directory.")
        var model: String

        @Option(help: "Output index file.")
        var out: String

        @Option(help: "Images per forward pass.")
        var batch = 32

        @Option(help: "Worker threads.")
        var threads = 2

        @OptionGroup var precision: PrecisionOption

        @OptionGroup var fileLimit: MaxFileOption

        @Argument(help: "Images, folders, shards (.tar or a brace pattern) or manifests (.tsv/.jsonl).")
        var inputs: [String]

        func validate() throws {
            if batch < 1 || threads < 1 { throw ValidationError("--batch and --threads must be positive") }
            if inputs.isEmpty { throw ValidationError("give at least one image, folder or shard pattern") }
        }

        func run() throws {
            Parallelism.threads = threads
            let vit = try cliRun { try ViTModel.load(directory: model) }
            try precision.apply(to: vit)
            var builder = IndexBuilder(model: vit)
            builder.batchSize = batch
            builder.maxFileBytes = fileLimit.bytes
            let started = Date()
            let (index, report) = try cliRun {
                try builder.build(inputs: inputs) { done, skipped in
                    if isatty(2) != 0 { FileHandle.standardError.write(Data("\r\(done) embedded, \(skipped) skipped".utf8)) }
                }
            }
            if isatty(2) != 0 { printError("") }
            for problem in report.problems { printError("skipped \(problem)") }
            if report.skipped > report.problems.count { printError("... and \(report.skipped - report.problems.count) more skipped") }
            guard index.count > 0 else { throw CLIError("no image could be embedded from \(inputs.joined(separator: " "))") }
            try cliRun { try index.write(path: out) }
            let seconds = Date().timeIntervalSince(started)
            printError(String(format: "%@: %d images embedded (dim %d), %d skipped, %.1f s (%.1f images/s)",
                              out, index.count, index.dim, report.skipped, seconds, Double(index.count) / max(seconds, 1e-9)))
        }
    }
}

/// `catlip query`: the daemon's client for people and scripts.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Ask a running catlip serve: embed, classify or search images; or health.",
        discussion: "Prints one JSON line per file: {\"file\", \"embedding\"}, {\"file\", \"labels\"} or "
            + "{\"file\", \"matches\"}. A file the daemon rejects is reported on stderr and the exit status is 1. "
            + "Answers over 256 MiB, malformed answers and a socket or daemon of another user's are errors.")

    @Option(help: "Unix socket of the daemon (default: $XDG_RUNTIME_DIR/catlip.sock or /tmp/catlip-UID/catlip.sock); it must be a socket of this user's or root's in a directory nobody else can write to, and the daemon must run as this user or root.")
    var socket: String?

    @Option(help: "TCP address of the daemon instead, http://HOST:PORT (HOST an IPv4 address, [IPv6 address] or localhost; PORT 1-65535).")
    var url: String?

    @Option(help: "Results per image (classify, search).")
    var topK: Int?

    @Option(help: "Seconds to send each request and receive its whole answer (above 0, at most 86400).")
    var timeout = 120.0

    @Argument(help: "embed, classify, search or health.")
    var action: String

    @Argument(help: "Image files.")
    var files: [String] = []

    func validate() throws {
        guard ["embed", "classify", "search", "health"].contains(action) else {
            throw ValidationError("action must be embed, classify, search or health, not '\(action)'")
        }
        if action != "health" && files.isEmpty { throw ValidationError("give at least one image file") }
        if socket != nil && url != nil { throw ValidationError("give --socket or --url, not both") }
        if let topK, !(1...1000).contains(topK) { throw ValidationError("--top-k must be in 1...1000") }
        do {
            try BlockingHTTPClient.checkTimeout(timeout, option: "--timeout")
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        let endpoint = try cliRun { try ServeEndpoint.from(socket: socket, url: url) }
        let client = BlockingHTTPClient(endpoint: endpoint, timeout: timeout)
        if action == "health" {
            let r = try cliRun { try client.request(method: "GET", path: "/healthz") }
            print(r.text.trimmingCharacters(in: .newlines))
            if r.status != 200 { throw ExitCode(1) }
            return
        }
        let query = topK.map { "?top_k=\($0)" } ?? ""
        var failed = 0
        for file in files {
            // a regular file within the image cap: a FIFO or /dev/zero is reported, not sent
            let data: [UInt8]
            do { data = try readFileBytes(file) } catch {
                printError("\(error)")
                failed += 1
                continue
            }
            let r = try cliRun {
                try client.request(method: "POST", path: "/v1/\(action)\(query)", contentType: "application/octet-stream", body: data)
            }
            guard r.status == 200,
                let object = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
            else {
                let message = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
                    .flatMap { $0["error"] as? [String: Any] }.map { "\($0["code"] ?? "") \($0["message"] ?? "")" } ?? r.text
                printError("\(file): \(r.status) \(message)")
                failed += 1
                continue
            }
            var line: [String: Any] = ["file": file]
            switch action {
            case "embed": line["embedding"] = (object["embeddings"] as? [Any])?.first
            case "classify": line["labels"] = ((object["results"] as? [[String: Any]])?.first)?["labels"]
            default: line["matches"] = ((object["results"] as? [[String: Any]])?.first)?["matches"]
            }
            let text = try JSONSerialization.data(withJSONObject: line, options: [.withoutEscapingSlashes, .sortedKeys])
            print(String(decoding: text, as: UTF8.self))
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

extension BenchCommand {
    /// `catlip bench serve`: load on a running daemon.
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Closed-loop load on a running catlip serve (or any server with the same API): one JSON line "
                + "per client count with requests/s, images/s, p50/p90/p99 latency and errors.",
            discussion: "With --slow-drip or --oversized-per-s, hostile clients run beside the ordinary ones for the "
                + "whole run (loopback or Unix socket only): slow-drip connections sending a byte every --drip-interval "
                + "seconds, and oversized requests (a 1 GiB Content-Length, an endless chunked body, 31 MiB of JSON "
                + "numbers, 31 MiB of JSON base64 noise); a second JSON line reports how the daemon answered them.")

        @Option(help: "Unix socket of the daemon.")
        var socket: String?

        @Option(help: "TCP address of the daemon, http://HOST:PORT.")
        var url: String?

        @Option(help: "Image sent in every request.")
        var image: String

        @Option(help: "Endpoint: embed, classify or search.")
        var endpoint = "embed"

        @Option(help: "Comma-separated concurrent client counts, one run each.")
        var clients = "1,8,32"

        @Option(help: "Seconds measured per run.")
        var duration = 10.0

        @Option(help: "Seconds of warm-up per run.")
        var warmup = 2.0

        @Option(help: "Hostile: slow-drip connections kept open beside the ordinary clients (at most 2000).")
        var slowDrip = 0

        @Option(help: "Hostile: seconds between two bytes of a slow drip.")
        var dripInterval = 2.0

        @Option(help: "Hostile: oversized requests started per second, one at a time (at most 20).")
        var oversizedPerS = 0.0

        func validate() throws {
            guard ["embed", "classify", "search"].contains(endpoint) else { throw ValidationError("--endpoint must be embed, classify or search") }
            if !(0...HostileLoad.limits.slowDrips).contains(slowDrip) {
                throw ValidationError("--slow-drip \(slowDrip): expected 0 to \(HostileLoad.limits.slowDrips)")
            }
            if !(0...HostileLoad.limits.oversizedPerSecond).contains(oversizedPerS) {
                throw ValidationError("--oversized-per-s \(oversizedPerS): expected 0 to \(HostileLoad.limits.oversizedPerSecond)")
            }
            if !(0.01...60).contains(dripInterval) { throw ValidationError("--drip-interval \(dripInterval): expected 0.01 to 60 s") }
            if !(0...3600).contains(duration) || !(0...3600).contains(warmup) {
                throw ValidationError("--duration and --warmup: expected 0 to 3600 s")
            }

            guard clients.split(separator: ",").allSatisfy({ Int($0).map { $0 > 0 } ?? false }) else {
                throw ValidationError("--clients must be positive integers separated by commas")
            }
            if duration <= 0 || warmup < 0 { throw ValidationError("--duration must be positive, --warmup >= 0") }
        }

        func run() throws {
            let target = try cliRun { try ServeEndpoint.from(socket: socket, url: url) }
            guard let data = FileManager.default.contents(atPath: image) else { throw CLIError("\(image): cannot be read") }
            if slowDrip > 0 || oversizedPerS > 0, case .tcp(let host, _) = target, !["127.0.0.1", "localhost", "::1"].contains(host) {
                throw CLIError("--slow-drip and --oversized-per-s load only a local daemon (--socket, or --url http://127.0.0.1:PORT), not \(host)")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for count in clients.split(separator: ",").compactMap({ Int($0) }) {
                var load = LoadGenerator(endpoint: target, path: "/v1/\(endpoint)", body: [UInt8](data), contentType: "application/octet-stream")
                load.clients = count
                load.duration = duration
                load.warmup = warmup
                var hostile = HostileLoad(endpoint: target)
                hostile.slowDrips = slowDrip
                hostile.dripInterval = dripInterval
                hostile.oversizedPerSecond = oversizedPerS
                let hostileReport = HostileReportSlot()
                let done = DispatchSemaphore(value: 0)
                if slowDrip > 0 || oversizedPerS > 0 {
                    // the ordinary clients connect first; the hostile ones start a second later
                    // and run to the end of the measured window
                    let seconds = warmup + duration - 1
                    let hostile = hostile
                    Thread {
                        usleep(1_000_000)
                        hostileReport.value = hostile.run(seconds: seconds)
                        done.signal()
                    }.start()
                } else {
                    done.signal()
                }
                let report = load.run()
                done.wait()
                FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
                if let value = hostileReport.value {
                    FileHandle.standardOutput.write(try encoder.encode(["hostile": value]) + Data("\n".utf8))
                }
            }
        }
    }
}

/// The hostile clients' report, handed from their thread to the command's.
private final class HostileReportSlot: @unchecked Sendable {
    var value: HostileLoad.Report?
}

extension BenchCommand {
    /// `catlip bench allreduce`: the sum that data-parallel training runs every step.
    struct Allreduce: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time in-place float sums over the ranks of an MPI job (run under mpirun -np N); rank 0 prints one JSON "
                + "line per size with the median time, algorithm bandwidth (bytes / time) and bus bandwidth (x 2(N-1)/N).")

        @Option(help: "Comma-separated float counts.")
        var floats = "262144,1048576,4194304,16777216"

        @Option(help: "Timed repetitions per size (after 3 warm-up ones).")
        var repeats = 20

        func validate() throws {
            guard floats.split(separator: ",").allSatisfy({ Int($0).map { $0 > 0 } ?? false }) else {
                throw ValidationError("--floats must be positive integers separated by commas")
            }
            if repeats < 1 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let reducer = try cliRun { try makeReducer() }
            for count in floats.split(separator: ",").compactMap({ Int($0) }) {
                var buffer = [Float](repeating: 1, count: count)
                var times: [Double] = []
                for i in 0..<(repeats + 3) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try buffer.withUnsafeMutableBufferPointer { b in
                        try cliRun {
                            try reducer.startSum(b.baseAddress!, count: count)
                            try reducer.finishSums()
                        }
                    }
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    if i >= 3 { times.append(Double(t1 - t0) / 1e9) }
                }
                // the mean over the ranks of each rank's median
                times.sort()
                var median = [times[times.count / 2]]
                try cliRun { try reducer.sum(&median) }
                let seconds = median[0] / Double(reducer.worldSize)
                guard reducer.rank == 0 else { continue }
                let n = Double(reducer.worldSize)
                let bytes = Double(count * 4)
                let algbw = bytes / seconds / 1e9
                func digits(_ x: Double, _ places: Int) -> Double { Double(String(format: "%.\(places)f", x)) ?? x }
                printJSON([
                    "bench": "allreduce", "ranks": reducer.worldSize, "floats": count, "bytes": count * 4,
                    "ms_median": digits(seconds * 1e3, 3), "algbw_gb_s": digits(algbw, 3),
                    "busbw_gb_s": digits(algbw * 2 * (n - 1) / max(n, 1), 3),
                ])
            }
            (reducer as? MPIReducer)?.finalize()
        }
    }
}
