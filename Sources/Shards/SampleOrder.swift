import Foundation
import Imaging
import Support

/// Where a sample's image comes from: bytes already read (a tar member) or a file to read.
public enum ImagePayload: Sendable {
    /// The encoded image.
    case bytes([UInt8])
    /// A path to read the encoded image from.
    case file(String)
    /// No image could be found for the sample (the reason).
    case missing(String)
}

extension ImagePayload {
    /// The encoded image: the bytes in memory or read from the file (regular files of at most
    /// `maxFileBytes`, see `readFileBytes`); for a missing image, an `ImageError` naming `name`
    /// with the reason.
    public func load(name: String, maxFileBytes: Int = defaultMaxImageFileBytes) throws -> [UInt8] {
        switch self {
        case .bytes(let bytes): return bytes
        case .file(let path): return try readFileBytes(path, maxBytes: maxFileBytes)
        case .missing(let reason): throw ImageError(.io, source: name, message: reason)
        }
    }
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
    /// The class of a labelled sample (a shard's `KEY.cls` or its json's label), nil when none.
    public var label: String?

    /// A sample from its fields.
    public init(key: String, source: String, image: ImagePayload, caption: String, label: String? = nil) {
        self.key = key
        self.source = source
        self.label = label
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

    /// 0..<count in the epoch's order: identity without shuffling, else a seeded permutation.
    static func permutation(_ count: Int, seed: UInt64, epoch: Int, shuffle: Bool) -> [Int] {
        var order = Array(0..<count)
        if shuffle {
            var g = generator(seed: seed, epoch: epoch, purpose: Seeds.order)
            order.seededShuffle(&g)
        }
        return order
    }

    /// Purposes.
    static let order: UInt64 = 1
    static let shuffleBuffer: UInt64 = 2
    static let augment: UInt64 = 3
    static let resolution: UInt64 = 4
    /// Which of a sample's captions it is trained on in an epoch (`data.captions: sampled`).
    public static let caption: UInt64 = 5
    /// Mixup/cutmix draws of a micro-batch (index: the micro-batch's number in the run).
    public static let mixup: UInt64 = 6
    /// Stochastic-depth masks of a micro-batch on one rank (index: the micro-batch's number in
    /// the run times the rank count, plus the rank).
    public static let dropPath: UInt64 = 7
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
    /// The manifest lines that were skipped.
    public let problems: [ManifestProblem]

    /// A source over a manifest's samples.
    public init(manifest: Manifest, shuffle: Bool = true) {
        samples = manifest.samples
        path = manifest.path
        problems = manifest.problems
        self.shuffle = shuffle
    }

    /// A source over samples held in memory (`path` names them in reports).
    public init(samples: [ManifestSample], path: String, shuffle: Bool = true) {
        self.samples = samples
        self.path = path
        self.problems = []
        self.shuffle = shuffle
    }

    /// Number of samples per epoch.
    public var count: Int? { samples.count }

    /// The epoch's permutation of the samples.
    public func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws {
        for i in Seeds.permutation(samples.count, seed: seed, epoch: epoch, shuffle: shuffle) {
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

/// A folder of images with sidecar captions (`photo.jpg` + `photo.txt`), recursively, as a
/// sample source; keys are paths relative to the folder. Images are recognised by extension
/// here (jpg, jpeg, png) and by content when decoded.
public struct FolderSource: SampleSource {
    /// The folder.
    public let root: String
    /// Relative image paths, sorted.
    public let images: [String]
    /// Whether to shuffle per epoch.
    public let shuffle: Bool
    /// Sidecar captions larger than this (1 MiB, like the tar reader's extended headers; real
    /// captions are a few hundred bytes) or that are not regular files make their sample a
    /// bad one ("caption file: file too large", "caption file: not a regular file").
    public static let maximumCaptionFileBytes = 1 << 20

    /// Lists the images under `root`; throws when the folder cannot be read.
    public init(root: String, shuffle: Bool = true) throws {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else {
            throw ManifestError(path: root, message: "cannot read the folder")
        }
        var images: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let lower = relative.lowercased()
            if lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") || lower.hasSuffix(".png") {
                images.append(relative)
            }
        }
        self.root = root
        self.images = images.sorted()
        self.shuffle = shuffle
    }

    /// Number of images.
    public var count: Int? { images.count }

    /// The epoch's permutation of the images, each with its sidecar caption (empty if none).
    public func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws {
        for i in Seeds.permutation(images.count, seed: seed, epoch: epoch, shuffle: shuffle) {
            let relative = images[i]
            let path = root + "/" + relative
            let stem = (path as NSString).deletingPathExtension
            var image = ImagePayload.file(path)
            var caption = ""
            if FileManager.default.fileExists(atPath: stem + ".txt") {
                do {
                    let bytes = try SafeFile.read(stem + ".txt", maxBytes: Self.maximumCaptionFileBytes)
                    caption = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                } catch let error as FileIOError {
                    image = .missing("caption file: \(error.kind.rawValue)")
                }
            }
            guard try body(StreamSample(key: relative, source: root, image: image, caption: caption)) else { return }
        }
    }
}

/// Tar shards (webdataset / img2dataset layout) as a sample source: shard order shuffled per
/// epoch, then a shuffle buffer over the samples, both seeded by (seed, epoch). A shard that
/// cannot be opened is an error unless `skipBadShards`; damage inside a shard ends that shard
/// and is reported as a skipped pseudo-sample (`<shard>@offset`) with the reason.
public struct ShardSource: SampleSource {
    /// The shard paths, in pattern order.
    public let shards: [String]
    /// Whether to shuffle (shards, then samples in a buffer).
    public let shuffle: Bool
    /// Samples held by the shuffle buffer.
    public let shuffleBuffer: Int
    /// Whether an unopenable shard is skipped (and reported) instead of failing the epoch.
    public let skipBadShards: Bool

    /// Shards from brace patterns (`data/{00000..00099}.tar`), `::`- or space-separated.
    public init(patterns: String, shuffle: Bool = true, shuffleBuffer: Int = 1000, skipBadShards: Bool = false) throws {
        shards = try expandShardList(patterns)
        guard !shards.isEmpty else { throw ShardPatternError(pattern: patterns, message: "names no shard") }
        self.shuffle = shuffle
        self.shuffleBuffer = shuffleBuffer
        self.skipBadShards = skipBadShards
    }

    /// Unknown until read.
    public var count: Int? { nil }

    /// The epoch's samples.
    public func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws {
        var order = shards
        if shuffle {
            var g = Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.order)
            order.seededShuffle(&g)
        }
        var buffer = ShuffleBuffer<StreamSample>(
            capacity: shuffle ? shuffleBuffer : 1,
            generator: Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.shuffleBuffer))
        var stopped = false
        func emit(_ sample: StreamSample) throws {
            if let out = buffer.push(sample), !stopped { stopped = !(try body(out)) }
        }
        for shard in order where !stopped {
            let reader: ShardSampleReader
            do {
                reader = try ShardSampleReader(path: shard)
            } catch {
                guard skipBadShards else { throw error }
                try emit(StreamSample(key: "<shard>", source: shard, image: .missing("unreadable shard"), caption: ""))
                continue
            }
            while !stopped {
                let sample: ShardSample?
                do {
                    sample = try reader.next()
                } catch let error as TarError {
                    if !error.isFatal { continue }
                    let reason = error.problem == .truncated ? "truncated shard" : "corrupt shard"
                    try emit(StreamSample(key: "<shard>@\(error.offset)", source: shard, image: .missing(reason), caption: ""))
                    break
                }
                guard let sample else { break }
                let image: ImagePayload = sample.imageBytes.map { .bytes($0.bytes) } ?? .missing("no image member")
                try emit(StreamSample(key: sample.key, source: shard, image: image, caption: sample.caption ?? "", label: sample.classLabel))
            }
        }
        for sample in buffer.drain() where !stopped { stopped = !(try body(sample)) }
    }
}
