import Imaging

/// Where a sample's image comes from: bytes already read (a tar member) or a file to read.
public enum ImagePayload: Sendable {
    /// The encoded image.
    case bytes([UInt8])
    /// A path to read the encoded image from.
    case file(String)
    /// No image could be found for the sample (the reason).
    case missing(String)
}

/// One sample in an epoch's stream, before decoding.
public struct StreamSample: Sendable {
    /// The sample's key (tar key or manifest path), the label cache's key.
    public var key: String
    /// Where it came from (shard or manifest path), for error reports.
    public var source: String
    /// The image.
    public var image: ImagePayload
    /// The caption ("" when none).
    public var caption: String

    /// A sample from its fields.
    public init(key: String, source: String, image: ImagePayload, caption: String) {
        self.key = key
        self.source = source
        self.image = image
        self.caption = caption
    }
}

/// A source of samples in a deterministic order: the epoch's stream is a pure function of
/// (seed, epoch), whatever the number of threads that consume it.
public protocol SampleSource: Sendable {
    /// The samples of `epoch`, in order, through `body` (which returns false to stop early).
    /// Problems that make whole inputs unreadable (a shard that cannot be opened) are thrown;
    /// per-sample problems travel in the samples.
    func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws
    /// Number of samples per epoch when known in advance.
    var count: Int? { get }
}

/// Seeds derived from (seed, epoch, stream) so that streams never share random numbers.
public enum Seeds {
    /// A generator for `purpose` in `epoch` under the run's `seed`.
    public static func generator(seed: UInt64, epoch: Int, purpose: UInt64, index: Int = 0) -> SeededGenerator {
        var h = seed &* 0x9E37_79B9_7F4A_7C15
        h ^= UInt64(truncatingIfNeeded: epoch) &* 0xBF58_476D_1CE4_E5B9
        h ^= purpose &* 0x94D0_49BB_1331_11EB
        h ^= UInt64(truncatingIfNeeded: index) &* 0xD6E8_FEB8_6659_FD93
        return SeededGenerator(seed: h)
    }

    /// Purposes.
    static let order: UInt64 = 1
    static let shuffleBuffer: UInt64 = 2
    static let augment: UInt64 = 3
    static let resolution: UInt64 = 4
}

extension Array {
    /// Fisher-Yates shuffle with a seeded generator (Swift's `shuffle(using:)` is not
    /// documented to be stable across releases; this is).
    mutating func seededShuffle(_ generator: inout SeededGenerator) {
        guard count > 1 else { return }
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(generator.next() % UInt64(i + 1))
            swapAt(i, j)
        }
    }
}

/// A manifest as a sample source: a full permutation per epoch; images are read by the
/// workers from their paths.
public struct ManifestSource: SampleSource {
    /// The samples.
    public let samples: [ManifestSample]
    /// The manifest path, for reports.
    public let path: String
    /// Whether to shuffle (evaluation keeps file order).
    public let shuffle: Bool

    /// A source over a manifest's samples.
    public init(manifest: Manifest, shuffle: Bool = true) {
        samples = manifest.samples
        path = manifest.path
        self.shuffle = shuffle
    }

    /// Number of samples per epoch.
    public var count: Int? { samples.count }

    /// The epoch's permutation of the samples.
    public func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws {
        var order = Array(samples.indices)
        if shuffle {
            var g = Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.order)
            order.seededShuffle(&g)
        }
        for i in order {
            let s = samples[i]
            guard try body(StreamSample(key: s.key, source: path, image: .file(s.imagePath), caption: s.caption)) else { return }
        }
    }
}

/// webdataset's shuffle buffer over any stream: keeps `capacity` samples and emits a random one
/// each time a new one arrives, then drains in random order; deterministic for a seed.
public struct ShuffleBuffer<Element> {
    private var items: [Element] = []
    private let capacity: Int
    private var generator: SeededGenerator

    /// A buffer of `capacity` (1 means no shuffling) drawing from `generator`.
    public init(capacity: Int, generator: SeededGenerator) {
        self.capacity = Swift.max(1, capacity)
        self.generator = generator
    }

    /// Adds `item`; returns an item to emit once the buffer is full.
    public mutating func push(_ item: Element) -> Element? {
        items.append(item)
        guard items.count > capacity - 1 else { return nil }
        let j = Int(generator.next() % UInt64(items.count))
        items.swapAt(j, items.count - 1)
        return items.removeLast()
    }

    /// The remaining items in random order.
    public mutating func drain() -> [Element] {
        items.seededShuffle(&generator)
        defer { items.removeAll() }
        return items
    }
}
