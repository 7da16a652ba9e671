import Dispatch
import Encoder
import Foundation
import Imaging
import ViT

/// How requests are batched for the engine.
public struct BatchingOptions: Sendable, Equatable {
    /// Most images in one forward pass.
    public var maxBatch: Int = 32
    /// Longest time the first request of a batch waits for others to join, in seconds (it waits
    /// only while fewer images are queued than are expected: the previous batch's, whose clients
    /// are likely to come back, plus those that arrived while it ran).
    public var maxWait: Double = 0.005
    /// Most images waiting in the queue; beyond it requests get 503.
    public var queueCapacity: Int = 256
    /// Decoder pixel limit per image (width x height); larger images get 400.
    public var maxPixels: Int = 40_000_000

    /// The defaults: batches of up to 32 images, 5 ms wait, 256 queued images, 40 MP.
    public init() {}
}

/// What the engine computes for one image.
public struct ImageOutput: Sendable {
    /// The pooled pre-logits embedding, L2-normalised.
    public var embedding: [Float]
    /// The head's logits (V), empty when the request did not ask for them.
    public var logits: [Float]
}

/// One image of a request: its encoded bytes and how errors name it.
public struct EncodedImage: Sendable {
    /// JPEG or PNG bytes.
    public var bytes: [UInt8]
    /// How errors name this image ("the request body", "images[3]").
    public var name: String

    /// An image and its name in error messages.
    public init(bytes: [UInt8], name: String) {
        self.bytes = bytes
        self.name = name
    }
}

/// A request's place in the engine: answered exactly once, by the engine or by whoever
/// cancels it first (deadline, client gone, shutdown).
public final class InferenceJob: @unchecked Sendable {
    fileprivate let images: [EncodedImage]
    fileprivate let wantLogits: Bool
    fileprivate let completion: @Sendable (Result<[ImageOutput], ServiceError>) -> Void
    private let lock = NSLock()
    private var finished = false

    fileprivate init(
        images: [EncodedImage], wantLogits: Bool,
        completion: @escaping @Sendable (Result<[ImageOutput], ServiceError>) -> Void
    ) {
        self.images = images
        self.wantLogits = wantLogits
        self.completion = completion
    }

    /// Marks the job answered; true for the first caller only.
    fileprivate func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if finished { return false }
        finished = true
        return true
    }

    /// Whether the job was answered or cancelled.
    fileprivate var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }
}

/// The model behind the daemon: a queue of requests from all connections and one engine
/// thread that takes them in dynamic batches (up to `maxBatch` images, waiting at most
/// `maxWait` for a batch to fill), decodes the batch's images in parallel with the model's
/// evaluation preprocessing, runs one forward pass and answers each request.
public final class InferenceEngine: @unchecked Sendable {
    /// The model (forward-only use).
    public let model: ViTModel
    /// The batching settings.
    public let options: BatchingOptions
    private let metrics: ServerMetrics?
    private let condition = NSCondition()
    private var queue: [InferenceJob] = []
    private var queuedImages = 0
    private var paused = false
    private var stopping = false
    private var thread: Thread?
    private var finishedThread = DispatchSemaphore(value: 0)
    // engine-thread state
    private let encoder: ImageEncoder
    private var expectedImages = 1  // guarded by `condition`

    /// An engine for `model`; `start()` launches its thread.
    public init(model: ViTModel, options: BatchingOptions = BatchingOptions(), metrics: ServerMetrics? = nil) {
        precondition(options.maxBatch >= 1 && options.queueCapacity >= 1)
        self.model = model
        self.options = options
        self.metrics = metrics
        var decode = DecodeOptions()
        decode.maxPixels = options.maxPixels
        encoder = ImageEncoder(model: model, batchSize: options.maxBatch, decode: decode)
    }

    /// Starts the engine thread.
    public func start() {
        let t = Thread { [self] in run() }
        t.name = "catlip-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Queues `images`; `completion` is called once, on the engine thread or on the thread
    /// that cancels the job. Throws 503 `queue_full` (with Retry-After) when the queue
    /// cannot take them, 503 `shutting_down` after `stop()`.
    public func submit(
        images: [EncodedImage], wantLogits: Bool,
        completion: @escaping @Sendable (Result<[ImageOutput], ServiceError>) -> Void
    ) throws(ServiceError) -> InferenceJob {
        let job = InferenceJob(images: images, wantLogits: wantLogits, completion: completion)
        condition.lock()
        defer { condition.unlock() }
        if stopping {
            throw ServiceError(status: 503, code: "shutting_down", message: "the daemon is shutting down")
        }
        if queuedImages + images.count > options.queueCapacity {
            throw ServiceError(
                status: 503, code: "queue_full",
                message: "the queue holds \(queuedImages) images (capacity \(options.queueCapacity)); retry later",
                retryAfter: 1)
        }
        queue.append(job)
        queuedImages += images.count
        metrics?.queueDepth.set(Double(queuedImages))
        condition.signal()
        return job
    }

    /// Answers `job` with `error` unless it was answered already, removing it from the queue
    /// if it is still there (its slot is free at once). Returns whether this call answered it.
    @discardableResult
    public func cancel(_ job: InferenceJob, with error: ServiceError? = nil) -> Bool {
        guard job.claim() else { return false }
        condition.lock()
        if let i = queue.firstIndex(where: { $0 === job }) {
            queue.remove(at: i)
            queuedImages -= job.images.count
            metrics?.queueDepth.set(Double(queuedImages))
        }
        condition.unlock()
        if let error { job.completion(.failure(error)) }
        return true
    }

    /// Images waiting in the queue.
    public var queueDepth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedImages
    }

    /// Holds batches back until `resume()` (tests: a deterministic full queue or deadline).
    public func pause() {
        condition.lock()
        paused = true
        condition.unlock()
    }

    /// Lets batches run again after `pause()`.
    public func resume() {
        condition.lock()
        paused = false
        condition.broadcast()
        condition.unlock()
    }

    /// Refuses new jobs, finishes the queued ones, then ends the thread (returns when it has).
    public func stop() {
        condition.lock()
        stopping = true
        paused = false
        condition.broadcast()
        let running = thread != nil
        condition.unlock()
        if running { finishedThread.wait() }
    }

    private func run() {
        while let batch = nextBatch() { process(batch) }
        finishedThread.signal()
    }

    /// Waits for work, then for the batch window; takes jobs from the front up to maxBatch
    /// images (at least one job). Nil once stopping with an empty queue. The window waits (at
    /// most `maxWait`) only until `expectedImages` are queued: the previous batch's images
    /// (their clients are the ones likely to come back) plus those that arrived while it ran
    /// (`process` counts them before answering). So a lone client never waits, a busy daemon
    /// fills its batches, and requests left over when a batch filled up are counted for the
    /// next one: counting only the previous batch, 32 closed-loop clients could settle into
    /// batches of 30 that each left 2 requests behind for a second batch time.
    private func nextBatch() -> [InferenceJob]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty || (paused && !stopping) {
            if queue.isEmpty && stopping { return nil }
            condition.wait()
        }
        let windowEnd = Date(timeIntervalSinceNow: options.maxWait)
        let target = min(options.maxBatch, max(1, expectedImages))
        while queuedImages < target && !stopping && !paused {
            if !condition.wait(until: windowEnd) { break }
        }
        while paused && !stopping { condition.wait() }
        if queue.isEmpty { return stopping ? nil : [] }
        var taken: [InferenceJob] = []
        var images = 0
        while let job = queue.first, taken.isEmpty || images + job.images.count <= options.maxBatch {
            queue.removeFirst()
            taken.append(job)
            images += job.images.count
        }
        queuedImages -= images
        expectedImages = images
        metrics?.queueDepth.set(Double(queuedImages))
        return taken
    }

    /// Decodes, embeds and answers `jobs` (those not cancelled meanwhile).
    private func process(_ jobs: [InferenceJob]) {
        let live = jobs.filter { !$0.isFinished }
        guard !live.isEmpty else { return }
        let started = DispatchTime.now().uptimeNanoseconds
        // flatten: (job, image) pairs, then chunks of maxBatch
        var owners: [(job: Int, image: Int)] = []
        for (j, job) in live.enumerated() { for i in job.images.indices { owners.append((j, i)) } }
        var outputs = live.map { [ImageOutput?](repeating: nil, count: $0.images.count) }
        var failures = [ServiceError?](repeating: nil, count: live.count)
        let (D, V) = (model.dim, model.numClasses)
        var start = 0
        while start < owners.count {
            let chunk = Array(owners[start..<min(owners.count, start + options.maxBatch)])
            start += chunk.count
            let sources = chunk.map { live[$0.job].images[$0.image] }
            let wantLogits = chunk.contains { live[$0.job].wantLogits }
            let encoded = encoder.encode(count: chunk.count, logits: wantLogits) { i in (sources[i].bytes, sources[i].name) }
            for (i, error) in encoded.failures where failures[chunk[i].job] == nil {
                failures[chunk[i].job] = imageError(error, name: sources[i].name)
            }
            metrics?.imagesRejected.increment(by: Int64(encoded.failures.count))
            metrics?.imagesDecoded.increment(by: Int64(encoded.kept.count))
            guard !encoded.kept.isEmpty else { continue }
            metrics?.batchSize.record(Double(encoded.kept.count))
            for (row, i) in encoded.kept.enumerated() {
                let owner = chunk[i]
                var embedding = Array(encoded.preLogits[(row * D)..<((row + 1) * D)])
                EmbeddingIndex.normalize(&embedding, offset: 0, count: D)
                let logits = live[owner.job].wantLogits ? Array(encoded.logits[(row * V)..<((row + 1) * V)]) : []
                outputs[owner.job][owner.image] = ImageOutput(embedding: embedding, logits: logits)
            }
        }
        metrics?.batchSeconds.record(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        // before any answer goes out, so that none of this batch's clients is counted twice
        condition.lock()
        expectedImages = InferenceEngine.expectedImages(
            batch: owners.count, arrivedMeanwhile: queuedImages, maxBatch: options.maxBatch)
        condition.unlock()
        for (j, job) in live.enumerated() {
            guard job.claim() else { continue }
            if let failure = failures[j] {
                job.completion(.failure(failure))
            } else {
                job.completion(.success(outputs[j].map { $0! }))
            }
        }
    }

    /// The images the next batch window waits for: the `batch` just computed (its clients come
    /// back) plus the images that arrived while it ran, at most `maxBatch`, at least 1.
    static func expectedImages(batch: Int, arrivedMeanwhile: Int, maxBatch: Int) -> Int {
        max(1, min(maxBatch, batch + arrivedMeanwhile))
    }

    private func imageError(_ error: any Error, name: String) -> ServiceError {
        if let image = error as? ImageError {
            return .badRequest(image.kind == .tooLarge ? "image_too_large" : "bad_image", image.description)
        }
        return .badRequest("bad_image", "\(name): \(error)")
    }
}
