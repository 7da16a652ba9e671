import Dispatch
import Foundation
import Support

/// Precomputed labels: for each sample key, its sorted class indices under one vocabulary and
/// labelling rule. Computed once (in parallel) and stored beside the data, so training never
/// runs the labeller. The file records the vocabulary's fingerprint; loading it under another
/// vocabulary or rule is an error, never a silent misuse.
///
/// File layout (little-endian): magic `CATLIPL1`, fingerprint (UInt64), class count (UInt32),
/// sample count (UInt32), then per sample: key length (UInt32), key (UTF-8), label count
/// (UInt32), labels (UInt32 each, ascending).
public struct LabelCache: Sendable, Equatable {
    static let magic = Array("CATLIPL1".utf8)

    /// The fingerprint of the vocabulary and rule the labels were computed under.
    public let fingerprint: UInt64
    /// Number of classes of that vocabulary.
    public let classCount: Int
    /// Sample keys, in the order of the data.
    public private(set) var keys: [String]
    private var starts: [Int]  // keys.count + 1
    private var values: [UInt32]
    private var positions: [String: Int]

    /// The fingerprint a cache must carry to be used with `vocabulary` and `mode`.
    public static func fingerprint(vocabulary: Vocabulary, mode: LabelMode) -> UInt64 {
        vocabulary.fingerprint(salt: "catlip-labels-v1 mode=\(mode.rawValue)")
    }

    /// A cache from per-sample label lists (each is sorted and de-duplicated here).
    public init(fingerprint: UInt64, classCount: Int, keys: [String], labels: [[UInt32]]) {
        precondition(keys.count == labels.count, "one label list per key")
        self.fingerprint = fingerprint
        self.classCount = classCount
        self.keys = keys
        starts = [0]
        values = []
        for list in labels {
            values.append(contentsOf: Set(list).sorted())
            starts.append(values.count)
        }
        positions = Dictionary(keys.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Number of samples.
    public var count: Int { keys.count }

    /// The sorted class indices of sample `i`.
    public func labels(at i: Int) -> ArraySlice<UInt32> { values[starts[i]..<starts[i + 1]] }

    /// The sorted class indices of the sample with `key`, if the cache has it.
    public func labels(for key: String) -> ArraySlice<UInt32>? {
        positions[key].map { labels(at: $0) }
    }

    /// Labels every caption under `vocabulary` with `mode`, on `threads` threads.
    public static func build(
        keys: [String], captions: [String], vocabulary: Vocabulary, database: WordNetDatabase,
        mode: LabelMode, threads: Int
    ) -> LabelCache {
        precondition(keys.count == captions.count, "one caption per key")
        let classOf = classIndices(vocabulary: vocabulary, database: database)
        let lists = parallelMap(count: captions.count, threads: threads, makeState: {
            Labeller(database: database, mode: mode)
        }) { labeller, i in
            labeller.synsets(captions[i]).compactMap { classOf[$0] }
        }
        return LabelCache(
            fingerprint: fingerprint(vocabulary: vocabulary, mode: mode),
            classCount: vocabulary.count, keys: keys, labels: lists)
    }

    /// Synset -> class index for the synsets of `vocabulary` that WordNet has.
    public static func classIndices(vocabulary: Vocabulary, database: WordNetDatabase) -> [SynsetID: UInt32] {
        var classOf: [SynsetID: UInt32] = [:]
        for (i, e) in vocabulary.entries.enumerated() {
            if let id = database.synset(wnid: e.wnid) { classOf[id] = UInt32(i) }
        }
        return classOf
    }

    // MARK: - Files

    /// The encoded file.
    public func encoded() -> [UInt8] {
        var out = Self.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out.append(contentsOf: $0) } }
        withUnsafeBytes(of: fingerprint.littleEndian) { out.append(contentsOf: $0) }
        u32(classCount)
        u32(keys.count)
        for (i, key) in keys.enumerated() {
            let k = Array(key.utf8)
            u32(k.count)
            out.append(contentsOf: k)
            let l = labels(at: i)
            u32(l.count)
            for v in l { u32(Int(v)) }
        }
        return out
    }

    /// Writes the cache atomically (`SafeFile.writeAtomically`: a temporary file that nothing
    /// planted in the folder can redirect, fsync, rename), so that a crash leaves either the old
    /// file or the new one.
    public func write(path: String) throws {
        do {
            try SafeFile.writeAtomically(path, bytes: encoded())
        } catch let error as FileIOError {
            throw LabelCacheError(path: path, message: "cannot write: \(error.problem)")
        }
    }

    /// The largest cache read: 16 GiB (a cache of about 300 million samples; it is held in
    /// memory whole). A FIFO, device or larger file is refused.
    public static let maximumFileBytes = 16 << 30

    /// Reads a cache, checking it was built for `expectedFingerprint` (see `fingerprint(...)`).
    /// Throws `LabelCacheError` naming the file: missing, damaged, or built for another
    /// vocabulary or labelling rule.
    public static func load(path: String, expectedFingerprint: UInt64) throws -> LabelCache {
        let bytes: [UInt8]
        do {
            bytes = try SafeFile.read(path, maxBytes: maximumFileBytes)
        } catch let error as FileIOError {
            throw LabelCacheError(path: path, message: "cannot read the label cache: \(error.problem)")
        }
        var p = 0
        func fail(_ message: String) -> LabelCacheError {
            LabelCacheError(path: path, message: "damaged label cache: \(message) (at byte \(p))")
        }
        func u32() throws -> Int {
            guard p + 4 <= bytes.count else { throw fail("ends early") }
            defer { p += 4 }
            return Int(bytes[p]) | Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]) << 16 | Int(bytes[p + 3]) << 24
        }
        guard bytes.count >= 24, Array(bytes[0..<8]) == magic else {
            throw LabelCacheError(path: path, message: "not a catlip label cache")
        }
        p = 8
        let low = try u32(), high = try u32()
        let fingerprint = UInt64(low) | UInt64(high) << 32
        guard fingerprint == expectedFingerprint else {
            throw LabelCacheError(
                path: path,
                message: "built for another vocabulary or labelling rule; rebuild it with "
                    + "`catlip vocab cache`")
        }
        let classCount = try u32(), count = try u32()
        var keys: [String] = [], lists: [[UInt32]] = []
        keys.reserveCapacity(min(count, bytes.count / 8))
        for _ in 0..<count {
            let n = try u32()
            guard p + n <= bytes.count else { throw fail("key runs past the end") }
            keys.append(String(decoding: bytes[p..<(p + n)], as: UTF8.self))
            p += n
            let m = try u32()
            guard m <= classCount else { throw fail("more labels than classes") }
            guard m <= (bytes.count - p) / 4 else { throw fail("labels run past the end") }
            var list: [UInt32] = []
            list.reserveCapacity(m)
            for _ in 0..<m {
                let v = try u32()
                guard v < classCount else { throw fail("class \(v) out of range") }
                list.append(UInt32(v))
            }
            lists.append(list)
        }
        guard p == bytes.count else { throw fail("trailing bytes") }
        return LabelCache(fingerprint: fingerprint, classCount: classCount, keys: keys, labels: lists)
    }
}

/// A label cache that cannot be used.
public struct LabelCacheError: Error, Sendable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// What is wrong.
    public let message: String

    /// `path: message`.
    public var description: String { "\(path): \(message)" }
}

/// `transform(state, i)` for i in 0..<count on `threads` threads, each with its own state
/// made by `makeState` (a labeller, say), results in index order.
public func parallelMap<State, T>(
    count: Int, threads: Int, makeState: () -> State, _ transform: @Sendable (State, Int) -> T
) -> [T] {
    let threads = max(1, min(threads, count))
    if threads == 1 {
        let state = makeState()
        return (0..<count).map { transform(state, $0) }
    }
    // Each state is used by one thread only.
    nonisolated(unsafe) let states = (0..<threads).map { _ in makeState() }
    var results = [T?](repeating: nil, count: count)
    let chunk = (count + threads - 1) / threads
    results.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let out = out
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let state = states[t]
            for i in (t * chunk)..<min(count, (t + 1) * chunk) { out[i] = transform(state, i) }
        }
    }
    return results.map { $0! }
}
