import Foundation
import Imaging

/// How batches are made.
public struct LoaderConfig: Sendable {
    /// Samples per batch (at `baseSize` when resolutions vary).
    public var batchSize: Int
    /// Training augmentation; its `size` is the image side unless `resolutions` is set.
    public var transform: TrainTransform
    /// Decode/augment threads.
    public var threads: Int
    /// Batches decoded ahead of the consumer (bounds memory: this many batch buffers + 1).
    public var prefetchBatches: Int
    /// Run seed: order, shuffling and augmentation are pure functions of (seed, epoch).
    public var seed: UInt64
    /// This process's rank and the number of ranks: rank r takes the samples r, r + world, ...
    /// of the global stream, so ranks are disjoint and together cover the epoch.
    public var rank: Int
    /// Number of ranks.
    public var worldSize: Int
    /// Drop a final batch smaller than planned.
    public var dropLast: Bool
    /// CatLIP's variable resolution: when set, each batch draws its side from this list and its
    /// batch size is `batchSize * (baseSize / side)^2` (at least 1), keeping tokens per batch
    /// about constant.
    public var resolutions: [Int]?
    /// The side at which `batchSize` applies when resolutions vary.
    public var baseSize: Int
    /// Number of classes: the length of each multi-hot target row.
    public var classCount: Int
    /// Image files (manifest and folder samples) larger than this are skipped as "file too
    /// large" without being read (`readFileBytes`); paths that are not regular files (FIFOs,
    /// devices, directories) are skipped as "not a regular file".
    public var maxFileBytes = defaultMaxImageFileBytes

    /// A configuration with CatLIP-like defaults.
    public init(
        batchSize: Int, transform: TrainTransform, classCount: Int, threads: Int = 2,
        prefetchBatches: Int = 2, seed: UInt64 = 0, rank: Int = 0, worldSize: Int = 1,
        dropLast: Bool = false, resolutions: [Int]? = nil, baseSize: Int? = nil
    ) {
        precondition(batchSize > 0 && threads > 0 && prefetchBatches > 0, "sizes must be positive")
        precondition(worldSize > 0 && rank >= 0 && rank < worldSize, "rank must be in 0..<worldSize")
        precondition(resolutions.map { !$0.isEmpty && $0.allSatisfy { $0 > 0 } } ?? true, "resolutions must be positive")
        self.batchSize = batchSize
        self.transform = transform
        self.classCount = classCount
        self.threads = threads
        self.prefetchBatches = prefetchBatches
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
        self.dropLast = dropLast
        self.resolutions = resolutions
        self.baseSize = baseSize ?? transform.size
    }

    /// Side and sample count of batch `index` of `epoch` (the same on every rank).
    public func plan(epoch: Int, batch index: Int) -> (side: Int, count: Int) {
        guard let resolutions else { return (transform.size, batchSize) }
        var g = Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.resolution, index: index)
        let side = resolutions[Int(g.next() % UInt64(resolutions.count))]
        let scaled = Double(batchSize) * Double(baseSize * baseSize) / Double(side * side)
        return (side, max(1, Int(scaled.rounded())))
    }

    /// Largest image side and batch size any batch can have.
    var maximumPlan: (side: Int, count: Int) {
        guard let resolutions else { return (transform.size, batchSize) }
        let smallest = resolutions.min()!
        let scaled = Double(batchSize) * Double(baseSize * baseSize) / Double(smallest * smallest)
        return (resolutions.max()!, max(1, Int(scaled.rounded())))
    }
}

/// Where a loader stands: resuming from a position yields exactly the batches that followed it.
public struct LoaderPosition: Sendable, Equatable, Codable {
    /// The epoch.
    public var epoch: Int
    /// This rank's samples of the epoch consumed by the batches delivered so far.
    public var consumed: Int
    /// Batches delivered so far in the epoch.
    public var batches: Int

    /// A position from its fields.
    public init(epoch: Int, consumed: Int = 0, batches: Int = 0) {
        self.epoch = epoch
        self.consumed = consumed
        self.batches = batches
    }
}

/// A batch, valid until the next call to `BatchLoader.next()`.
public struct Batch {
    /// Images, `count` x 3 x `side` x `side` floats (CHW per image).
    public let images: UnsafeBufferPointer<Float>
    /// Multi-hot targets, `count` x `classCount` floats.
    public let targets: UnsafeBufferPointer<Float>
    /// The class indices of each sample (sorted).
    public let labels: [[UInt32]]
    /// Sample keys.
    public let keys: [String]
    /// Images in the batch (planned count minus skipped samples).
    public let count: Int
    /// Image side.
    public let side: Int
    /// Index of the batch in its epoch.
    public let index: Int
}

/// Why samples were skipped, with counts and the first keys, reported at the end of an epoch.
public struct SkipReport: Sendable, Equatable, CustomStringConvertible {
    /// Count per reason.
    public var counts: [String: Int] = [:]
    /// Up to `keysKept` sample keys (with their source) per reason.
    public var examples: [String: [String]] = [:]
    static let keysKept = 20

    /// An empty report.
    public init() {}

    /// Counts one skipped sample under `reason`, keeping `example` (its key, with its source)
    /// among the first few of that reason; public so that every tool that walks samples
    /// (`catlip shards create|info`) counts them the one way the loader does.
    public mutating func add(_ reason: String, _ example: String) {
        counts[reason, default: 0] += 1
        if examples[reason, default: []].count < Self.keysKept { examples[reason, default: []].append(example) }
    }

    /// Total skipped samples.
    public var total: Int { counts.values.reduce(0, +) }

    /// One line per reason: count and example keys.
    public var description: String {
        counts.keys.sorted().map { reason in
            "\(counts[reason]!) skipped (\(reason)): " + (examples[reason] ?? []).joined(separator: ", ")
        }.joined(separator: "\n")
    }
}

/// The multi-threaded batch loader: one producer thread reads the epoch's stream in order
/// (shard order shuffled per epoch, then a shuffle buffer; or a manifest permutation), worker
/// threads decode and augment each sample straight into its slot of a preallocated batch
/// buffer, and `next()` hands out batches in order. A sample's augmentation draws depend only on
/// (seed, epoch, its position in the stream), and batch boundaries are fixed positions of the
/// stream, so the batches are the same whatever the number of threads; a sample that fails
/// leaves its batch one shorter and is counted in `skipped`. Memory is bounded by
/// `prefetchBatches` + 1 batch buffers.
public final class BatchLoader: @unchecked Sendable {
    private let engine: LoaderEngine

    /// A loader over `source`; `labels` gives a sample key's class indices (nil: not labelled,
    /// the sample is skipped).
    public convenience init(source: any SampleSource, config: LoaderConfig, labels: @escaping @Sendable (String) -> [UInt32]?) {
        self.init(source: source, config: config, epochLabels: { key, _ in labels(key) })
    }

    /// A loader whose labels may differ per epoch: `epochLabels(key, epoch)` gives the class
    /// indices of a sample in an epoch (nil: not labelled, the sample is skipped); used to
    /// train on one of a sample's captions, drawn afresh each epoch. It must be a function of
    /// its arguments only, so that batches stay reproducible and resumable.
    public init(source: any SampleSource, config: LoaderConfig, epochLabels: @escaping @Sendable (String, Int) -> [UInt32]?) {
        engine = LoaderEngine(source: source, config: config, labels: epochLabels)
    }

    // The threads hold the engine, not the loader: dropping the loader stops them.
    deinit { engine.stop() }

    /// The configuration.
    public var config: LoaderConfig { engine.config }

    /// The position after the batches delivered so far.
    public var position: LoaderPosition { engine.position }

    /// Samples skipped so far in the epoch, by reason.
    public var skipped: SkipReport { engine.skipped }

    /// Starts (or restarts) an epoch at `position` (a fresh epoch: `LoaderPosition(epoch: e)`).
    public func start(at position: LoaderPosition) { engine.start(at: position) }

    /// Stops the threads of the current epoch (waits for them).
    public func stop() { engine.stop() }

    /// The next batch of the epoch, or nil at its end. Throws when the stream itself failed
    /// (a shard that cannot be read). The batch's memory is valid until the next call.
    public func next() throws -> Batch? { try engine.next() }
}

/// The loader's threads and shared state.
final class LoaderEngine: @unchecked Sendable {
    let config: LoaderConfig
    private let source: any SampleSource
    private let labelsOf: @Sendable (String, Int) -> [UInt32]?

    // Shared state, guarded by `lock`.
    private let lock = NSCondition()
    private var buffers: [BatchBuffer]
    private var freeBuffers: [Int]
    private var queue: [WorkItem] = []
    private var queueHead = 0
    private var batchStates: [Int: BatchState] = [:]  // by batch index
    private var producerDone = false
    private var producerError: (any Error)?
    private var cancelled = false
    private var skippedReport = SkipReport()
    private var running = 0  // live threads

    private var epoch = 0
    private var nextBatchIndex = 0
    private var consumed = 0
    private var held: Int?  // buffer handed out by the last next()

    init(source: any SampleSource, config: LoaderConfig, labels: @escaping @Sendable (String, Int) -> [UInt32]?) {
        self.source = source
        self.config = config
        self.labelsOf = labels
        let maximum = config.maximumPlan
        buffers = (0...config.prefetchBatches).map { _ in
            BatchBuffer(images: 3 * maximum.side * maximum.side * maximum.count, targets: config.classCount * maximum.count)
        }
        freeBuffers = Array(buffers.indices)
    }

    var position: LoaderPosition {
        lock.lock()
        defer { lock.unlock() }
        return LoaderPosition(epoch: epoch, consumed: consumed, batches: nextBatchIndex)
    }

    var skipped: SkipReport {
        lock.lock()
        defer { lock.unlock() }
        return skippedReport
    }

    func start(at position: LoaderPosition) {
        stop()
        lock.lock()
        epoch = position.epoch
        consumed = position.consumed
        nextBatchIndex = position.batches
        queue.removeAll()
        queueHead = 0
        batchStates.removeAll()
        producerDone = false
        producerError = nil
        cancelled = false
        skippedReport = SkipReport()
        freeBuffers = Array(buffers.indices)
        held = nil
        running = 1 + config.threads
        lock.unlock()
        let producer = Thread { [self] in produce(from: position) }
        producer.stackSize = 1 << 20
        producer.start()
        for _ in 0..<config.threads {
            Thread { [self] in work() }.start()
        }
    }

    func stop() {
        lock.lock()
        cancelled = true
        lock.broadcast()
        while running > 0 { lock.wait() }
        lock.unlock()
    }

    func next() throws -> Batch? {
        lock.lock()
        defer { lock.unlock() }
        if let h = held {
            freeBuffers.append(h)
            held = nil
            lock.broadcast()
        }
        while true {
            if let state = batchStates[nextBatchIndex], state.isComplete {
                batchStates[nextBatchIndex] = nil
                let b = nextBatchIndex
                nextBatchIndex += 1
                consumed += state.assigned
                if state.assigned < state.plannedCount && config.dropLast {
                    freeBuffers.append(state.buffer)
                    lock.broadcast()
                    continue
                }
                return deliver(state, index: b)
            }
            if producerDone && batchStates[nextBatchIndex] == nil {
                if let error = producerError { throw error }
                return nil
            }
            lock.wait()
        }
    }

    // MARK: - Internals

    private struct WorkItem {
        var sample: StreamSample
        var batch: Int
        var slot: Int
        var streamIndex: Int  // this rank's position in the epoch stream
        var side: Int
        var epoch: Int
    }

    private struct BatchState {
        var buffer: Int
        var side: Int
        var plannedCount: Int
        var assigned = 0
        var finished = 0
        var closed = false  // no more samples will be assigned
        var failed: Set<Int> = []  // slots
        var labels: [[UInt32]]
        var keys: [String]

        var isComplete: Bool { closed && finished == assigned }
    }

    private final class BatchBuffer: @unchecked Sendable {
        let images: UnsafeMutableBufferPointer<Float>
        let targets: UnsafeMutableBufferPointer<Float>
        init(images: Int, targets: Int) {
            self.images = .allocate(capacity: images)
            self.images.initialize(repeating: 0)
            self.targets = .allocate(capacity: targets)
            self.targets.initialize(repeating: 0)
        }

        deinit {
            images.deallocate()
            targets.deallocate()
        }
    }

    /// Compacts a finished batch (slots of failed samples removed) and wraps it.
    private func deliver(_ state: BatchState, index: Int) -> Batch {
        let buffer = buffers[state.buffer]
        let imageCount = 3 * state.side * state.side
        let v = config.classCount
        var labels: [[UInt32]] = [], keys: [String] = []
        var out = 0
        for slot in 0..<state.assigned where !state.failed.contains(slot) {
            if out != slot {
                let src = buffer.images.baseAddress! + slot * imageCount
                (buffer.images.baseAddress! + out * imageCount).update(from: src, count: imageCount)
                (buffer.targets.baseAddress! + out * v).update(from: buffer.targets.baseAddress! + slot * v, count: v)
            }
            labels.append(state.labels[slot])
            keys.append(state.keys[slot])
            out += 1
        }
        held = state.buffer
        return Batch(
            images: UnsafeBufferPointer(rebasing: buffer.images[0..<(out * imageCount)]),
            targets: UnsafeBufferPointer(rebasing: buffer.targets[0..<(out * v)]),
            labels: labels, keys: keys, count: out, side: state.side, index: index)
    }

    private func produce(from position: LoaderPosition) {
        var global = 0  // index in the global stream
        var local = 0  // this rank's index
        var batch = position.batches
        var (side, planned) = config.plan(epoch: position.epoch, batch: batch)
        var slot = 0
        var currentBuffer: Int? = nil
        let world = config.worldSize, rank = config.rank
        var stopped = false

        func closeCurrent() {
            // Called with the lock held.
            if currentBuffer != nil {
                batchStates[batch]!.closed = true
                lock.broadcast()
            }
        }

        do {
            try source.forEachSample(seed: config.seed, epoch: position.epoch) { sample in
                defer { global += 1 }
                guard global % world == rank else { return true }
                defer { local += 1 }
                if local < position.consumed { return true }  // resuming: already delivered
                lock.lock()
                defer { lock.unlock() }
                if cancelled {
                    stopped = true
                    return false
                }
                if currentBuffer == nil {
                    while freeBuffers.isEmpty && !cancelled { lock.wait() }
                    if cancelled {
                        stopped = true
                        return false
                    }
                    let b = freeBuffers.removeLast()
                    currentBuffer = b
                    batchStates[batch] = BatchState(
                        buffer: b, side: side, plannedCount: planned,
                        labels: Array(repeating: [], count: planned), keys: Array(repeating: "", count: planned))
                }
                batchStates[batch]!.assigned += 1
                queue.append(WorkItem(sample: sample, batch: batch, slot: slot, streamIndex: local, side: side, epoch: position.epoch))
                lock.broadcast()
                slot += 1
                if slot == planned {
                    closeCurrent()
                    currentBuffer = nil
                    batch += 1
                    slot = 0
                    (side, planned) = config.plan(epoch: position.epoch, batch: batch)
                }
                return true
            }
        } catch {
            lock.lock()
            producerError = error
            lock.unlock()
        }
        lock.lock()
        if !stopped { closeCurrent() }
        producerDone = true
        running -= 1
        lock.broadcast()
        lock.unlock()
    }

    private func work() {
        let workspace = ResampleWorkspace()
        lock.lock()
        while true {
            if cancelled { break }
            if queueHead < queue.count {
                let item = queue[queueHead]
                queueHead += 1
                if queueHead > 1024 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
                let buffer = buffers[batchStates[item.batch]!.buffer]
                lock.unlock()
                let outcome = process(item, buffer: buffer, workspace: workspace)
                lock.lock()
                if var state = batchStates[item.batch] {
                    switch outcome {
                    case .success(let labels):
                        state.labels[item.slot] = labels
                        state.keys[item.slot] = item.sample.key
                    case .failure(let reason):
                        state.failed.insert(item.slot)
                        skippedReport.add(reason, item.sample.source + ":" + item.sample.key)
                    }
                    state.finished += 1
                    batchStates[item.batch] = state
                    if state.isComplete { lock.broadcast() }
                }
                continue
            }
            if producerDone { break }
            lock.wait()
        }
        running -= 1
        lock.broadcast()
        lock.unlock()
    }

    private enum Outcome {
        case success([UInt32])
        case failure(String)
    }

    /// Decodes, augments and labels one sample into its slot (no lock held).
    private func process(_ item: WorkItem, buffer: BatchBuffer, workspace: ResampleWorkspace) -> Outcome {
        if case .missing(let reason) = item.sample.image { return .failure(reason) }
        if item.sample.caption.allSatisfy({ $0.isWhitespace }) { return .failure("missing or empty caption") }
        guard let labels = labelsOf(item.sample.key, item.epoch) else { return .failure("no labels") }
        let bytes: [UInt8]
        switch item.sample.image {
        case .bytes(let b): bytes = b
        case .file(let path):
            do { bytes = try readFileBytes(path, maxBytes: config.maxFileBytes) } catch let error as ImageError {
                return .failure(error.kind == .io ? "unreadable image file" : error.kind.rawValue)
            } catch {
                return .failure("unreadable image file")
            }
        case .missing(let reason): return .failure(reason)
        }
        if bytes.isEmpty { return .failure("empty image") }
        var transform = config.transform
        transform.size = item.side
        let count = transform.outputCount
        let out = UnsafeMutableBufferPointer(rebasing: buffer.images[(item.slot * count)..<((item.slot + 1) * count)])
        var generator = Seeds.generator(
            seed: config.seed, epoch: epoch, purpose: Seeds.augment, index: item.streamIndex * config.worldSize + config.rank)
        do {
            try transform.apply(bytes, source: item.sample.source + ":" + item.sample.key, using: &generator, workspace: workspace, into: out)
        } catch let error as ImageError {
            return .failure(error.kind.rawValue)
        } catch {
            return .failure("decode error")
        }
        let v = config.classCount
        let row = UnsafeMutableBufferPointer(rebasing: buffer.targets[(item.slot * v)..<((item.slot + 1) * v)])
        row.update(repeating: 0)
        var valid: [UInt32] = []
        for l in labels where Int(l) < v {
            row[Int(l)] = 1
            valid.append(l)
        }
        return .success(valid)
    }
}
