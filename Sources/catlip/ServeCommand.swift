import ArgumentParser
import Dispatch
import Evaluation
import Foundation
import Serving
import Shards
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

    @OptionGroup var model: ModelOptions

    @Option(help: "Unix socket path (default: $XDG_RUNTIME_DIR/catlip.sock or /tmp/catlip-UID/catlip.sock).")
    var socket: String?

    @Option(help: "Also listen on TCP HOST:PORT (loopback only unless --allow-remote; port 0 picks one).")
    var listen: String?

    @Flag(help: "Allow --listen on a non-loopback address.")
    var allowRemote = false

    @Option(help: "Index file for /v1/search (catlip index build); its thumbnails (INDEX.thumbs, from index build --thumbnails) serve /v1/thumbnails/{row}.")
    var index: String?

    @Flag(help: "Serve the search page at / (words, images, the model and live figures; off by default). Local only: the Unix socket, or --listen on loopback unless --allow-remote.")
    var ui = false

    @Option(help: "Caption labeller mode for word queries that are not one class name (the model's own: corenet for the released models and the demo).")
    var labelMode: LabelMode = .corenet

    @Option(help: "How word queries score images: cosine, sum, logit or probability (README: cosine measured best on the held-out drawings).")
    var textRule: TextSearchRule = .cosine

    @OptionGroup var wordnet: WordNetDirectoryOption

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

    @OptionGroup var threads: ThreadsOption

    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if maxBatch < 1 || queue < 1 || maxImages < 1 || maxPixels < 1 {
            throw ValidationError("--max-batch, --queue, --max-images and --max-pixels must be positive")
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
        threads.applyToEngine()
        let vit = try model.load(precision: precision)
        var vocabulary: Vocabulary?
        let vocabPath = model.vocabularyPath
        if FileManager.default.fileExists(atPath: vocabPath) {
            let v = try cliRun { try Vocabulary.load(path: vocabPath) }
            guard v.count == vit.numClasses else {
                throw CLIError("\(vocabPath): \(v.count) classes, but the model's head has \(vit.numClasses)")
            }
            vocabulary = v
        }
        // a fine-tuned classifier names its head rows in classes.tsv
        var classes: [String]?
        let classesPath = model.directory + "/classes.tsv"
        if FileManager.default.fileExists(atPath: classesPath) {
            let names = try cliRun { try ClassifiedImages.readClasses(classesPath) }
            guard names.count == vit.numClasses else {
                throw CLIError("\(classesPath): \(names.count) classes, but the model's head has \(vit.numClasses)")
            }
            classes = names
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
        var thumbnails: IndexThumbnails?
        if let index, let rows = embeddingIndex?.count, FileManager.default.fileExists(atPath: IndexThumbnails.path(forIndex: index)) {
            thumbnails = try cliRun { try IndexThumbnails.read(path: IndexThumbnails.path(forIndex: index), rows: rows) }
        }
        // words map through WordNet to the head's synsets: a pretrained head with its vocabulary
        var textSearch: TextSearch?
        if let vocabulary, classes == nil {
            do {
                let database = try WordNetDatabase(directory: wordnet.directory)
                textSearch = TextSearch(model: vit, vocabulary: vocabulary, database: database, mode: labelMode, rule: textRule)
            } catch {
                printError("catlip serve: no search by words (\(error))")
            }
        }
        var batching = BatchingOptions()
        batching.maxBatch = maxBatch
        batching.maxWait = maxWaitMs / 1000
        batching.queueCapacity = queue
        batching.maxPixels = maxPixels
        let metrics = ServerMetrics()
        let engine = InferenceEngine(model: vit, options: batching, metrics: metrics)
        let service = ServingService(
            engine: engine, vocabulary: vocabulary, classes: classes, index: embeddingIndex, metrics: metrics,
            maxImagesPerRequest: maxImages, modelName: model.directory, textSearch: textSearch, thumbnails: thumbnails, ui: ui)
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
            "catlip serve: model \(model.directory) (dim \(vit.dim), \(vit.numClasses) classes, \(vit.imageSize) px), "
                + "index \(embeddingIndex.map { "\($0.count) rows" } ?? "none")\(thumbnails == nil ? "" : " with thumbnails")"
                + (textSearch == nil ? "" : ", search by words (\(textRule.rawValue))") + (ui ? ", the page at /" : "")
                + "; at most \(daemon.maxConnections) connections"
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
