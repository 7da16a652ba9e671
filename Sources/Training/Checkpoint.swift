import Foundation
import Shards
import Support

/// Everything besides the tensors that a resumed run needs to continue exactly where a
/// checkpoint was taken.
public struct TrainState: Codable, Sendable, Equatable {
    /// Optimiser steps done (including skipped non-finite ones): the next step's index.
    public var step = 0
    /// Updates AdamW applied (its bias-correction counter).
    public var optimizerStep = 0
    /// Where the loader stands after the last consumed micro-batch.
    public var loader = LoaderPosition(epoch: 0)
    /// Images trained on so far.
    public var samplesSeen = 0
    /// Samples the loader skipped (undecodable or unlabelled), counted over delivered batches.
    public var skippedSamples = 0
    /// Steps skipped because the loss or the gradients were not finite, and how many in a row.
    public var badSteps = 0
    /// Non-finite steps in a row at the checkpoint.
    public var consecutiveBadSteps = 0
    /// Sum of step losses in the current logging interval and its step count.
    public var intervalLossSum = 0.0
    /// Steps in the current logging interval.
    public var intervalSteps = 0
    /// Lines of metrics.jsonl that belong to the run up to this checkpoint.
    public var metricsLines = 0
    /// Seconds spent training before this checkpoint (over all sessions of the run).
    public var trainSeconds = 0.0
    /// The run seed (initialisation, order and augmentation are pure functions of it).
    public var seed = 0
    /// `TrainConfig.fingerprint(worldSize:)` in hex (`legacyFingerprint` in checkpoints written
    /// before the key table): resume refuses a different configuration (`TrainConfig.resumes`).
    public var configFingerprint = ""
    /// Floats in each tensor block (parameter arena size).
    public var parameterCount = 0
    /// Whether an EMA block follows the AdamW moments.
    public var hasEMA = false
    /// Ranks of the data-parallel job that wrote it (nil: one process).
    public var worldSize: Int?
    /// Each rank's loader position, in rank order (data-parallel jobs; `loader` is rank 0's).
    public var rankLoaders: [LoaderPosition]?
    /// The model's non-trainable state (a convolutional stem's BatchNorm running statistics:
    /// `ViTModel.buffers`) as float32 bit patterns, exact; nil for models without any. A few
    /// hundred values, so they travel in the header rather than as a tensor block.
    public var modelBuffers: [UInt32]?

    /// A fresh state.
    public init() {}
}

extension TrainState {
    /// What makes this state unusable for a resume (a negative or absurd count, ranks that do
    /// not match their positions), in words naming the field, or nil: a state read from a file
    /// is checked before any of its values is used.
    var problem: String? {
        let limit = CheckpointFile.maxCount
        var counts: [(String, Int)] = [
            ("step", step), ("optimizerStep", optimizerStep), ("samplesSeen", samplesSeen),
            ("skippedSamples", skippedSamples), ("badSteps", badSteps), ("consecutiveBadSteps", consecutiveBadSteps),
            ("intervalSteps", intervalSteps), ("metricsLines", metricsLines), ("parameterCount", parameterCount),
        ]
        for (i, p) in ([loader] + (rankLoaders ?? [])).enumerated() {
            let name = i == 0 ? "loader" : "rankLoaders[\(i - 1)]"
            counts += [(name + ".epoch", p.epoch), (name + ".consumed", p.consumed), (name + ".batches", p.batches)]
        }
        if let (name, value) = counts.first(where: { !(0...limit).contains($0.1) }) {
            return "\(name) \(value) is out of range 0...\(limit)"
        }
        if parameterCount < 1 { return "parameterCount must be positive" }
        if seed < 0 { return "seed \(seed) is negative" }
        if !intervalLossSum.isFinite { return "intervalLossSum is not finite" }
        if !(trainSeconds.isFinite && trainSeconds >= 0) { return "trainSeconds \(trainSeconds) is not a duration" }
        if let worldSize {
            if !(1...CheckpointFile.maxWorldSize).contains(worldSize) {
                return "worldSize \(worldSize) is out of range 1...\(CheckpointFile.maxWorldSize)"
            }
            if let rankLoaders, rankLoaders.count != worldSize {
                return "\(rankLoaders.count) rank loader positions for worldSize \(worldSize)"
            }
        } else if let rankLoaders, rankLoaders.count > CheckpointFile.maxWorldSize {
            return "\(rankLoaders.count) rank loader positions"
        }
        return nil
    }
}

/// A checkpoint that cannot be read: which file and why.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    /// The file.
    public var path: String
    /// The problem.
    public var problem: String
    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// The checkpoint file: `CATLIPCK` magic, format version (u32), header length (u64), the JSON
/// `TrainState`, zero padding to 64 bytes, then float32 blocks of `parameterCount` each:
/// parameters, AdamW m, AdamW v, and the EMA weights when present; then an 8-byte checksum of
/// everything before it and the 8-byte end magic `CKPT-END`. Written to a temporary file,
/// fsync'd, renamed into place, and the directory fsync'd, so a crash at any instant leaves
/// either the old set of checkpoints or the new one, never a half-written file under a final
/// name; a file that is short, has a bad checksum or a bad header is reported and skipped.
public enum CheckpointFile {
    static let magic = Array("CATLIPCK".utf8)
    static let endMagic = Array("CKPT-END".utf8)
    static let version: UInt32 = 1

    /// The file name of the checkpoint after `step` steps (sorts by step).
    public static func name(step: Int) -> String { String(format: "step-%09d.ckpt", step) }

    /// Checkpoint files in `directory`, newest (highest step) first.
    public static func list(directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".ckpt") }.sorted(by: >).map { directory + "/" + $0 }
    }

    /// Writes a checkpoint atomically to `directory/name(step:)` from the state and the tensor
    /// blocks (each `state.parameterCount` floats).
    public static func write(directory: String, state: TrainState, blocks: [UnsafeBufferPointer<Float>]) throws {
        precondition(blocks.allSatisfy { $0.count == state.parameterCount }, "block sizes differ from parameterCount")
        let final = directory + "/" + name(step: state.step)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = Array(try encoder.encode(state))
        var prefix = magic
        append(&prefix, version)
        append(&prefix, UInt64(header.count))
        prefix += header
        while prefix.count % 64 != 0 { prefix.append(0) }

        var hash = Checksum()
        do {
            try SafeFile.writeAtomically(final) { sink in
                try prefix.withUnsafeBytes { try sink($0) }
                hash.add(prefix)
                for block in blocks {
                    let raw = UnsafeRawBufferPointer(block)
                    hash.add(raw)
                    try sink(raw)
                }
                var trailer: [UInt8] = []
                append(&trailer, hash.value)
                trailer += endMagic
                try trailer.withUnsafeBytes { try sink($0) }
            }
        } catch let error as FileIOError {
            throw CheckpointError(path: final, problem: error.problem)
        }
    }

    /// Largest JSON header accepted (a state is a few hundred bytes, plus one loader position
    /// per rank).
    static let maxHeaderBytes = 1 << 24

    /// Largest value accepted for any count of a state (steps, samples, epochs, lines, floats
    /// per block): 2^50, beyond what a run reaches and far from overflowing the sums and
    /// products made of them.
    static let maxCount = 1 << 50

    /// Most ranks a data-parallel checkpoint may record.
    static let maxWorldSize = 1 << 16

    /// The state in a checkpoint's header, with the magic, version, the state's fields and the
    /// file size checked against it, without reading the tensors (the checksum is checked by
    /// `read`).
    public static func header(path: String) throws -> TrainState {
        let (fd, size) = try openFile(path)
        defer { close(fd) }
        return try readHeader(fd, size: size, path: path).state
    }

    /// Header, the bytes before the tensors, and the file size, from an open checkpoint. Every
    /// length and count is range-checked against the file size before it is converted,
    /// multiplied or allocated.
    private static func readHeader(_ fd: Int32, size: Int, path: String) throws -> (state: TrainState, prefix: [UInt8], size: Int) {
        func bad(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        guard size >= 20 + 16 else { throw bad("truncated (\(size) bytes)") }
        var fixed = [UInt8](repeating: 0, count: 20)
        try readAll(fd, &fixed, offset: 0, path: path)
        guard Array(fixed[0..<8]) == magic else { throw bad("not a catlip checkpoint (bad magic)") }
        let version = load(fixed, 8, as: UInt32.self)
        guard version == Self.version else { throw bad("unsupported checkpoint version \(version)") }
        let rawLength = load(fixed, 12, as: UInt64.self)
        guard rawLength > 0, rawLength <= UInt64(maxHeaderBytes), rawLength <= UInt64(size - 20 - 16) else {
            throw bad("header length \(rawLength) out of bounds (file of \(size) bytes)")
        }
        let headerLength = Int(rawLength)
        let prefixLength = (20 + headerLength + 63) / 64 * 64
        guard prefixLength + 16 <= size else { throw bad("truncated (\(size) bytes)") }
        var prefix = [UInt8](repeating: 0, count: prefixLength)
        try readAll(fd, &prefix, offset: 0, path: path)
        let state: TrainState
        do {
            state = try JSONDecoder().decode(TrainState.self, from: Data(prefix[20..<(20 + headerLength)]))
        } catch {
            throw bad("header is not a valid state (\(error))")
        }
        if let problem = state.problem { throw bad("header: \(problem)") }
        // the blocks and the trailer must fill the rest of the file exactly
        let blockCount = state.hasEMA ? 4 : 3
        let (blockBytes, o1) = state.parameterCount.multipliedReportingOverflow(by: 4 * blockCount)
        guard !o1, blockBytes == size - prefixLength - 16 else {
            throw bad("size \(size) bytes does not match the header (\(blockCount) blocks of \(state.parameterCount) floats): truncated or corrupt")
        }
        return (state, prefix, size)
    }

    /// Reads and verifies a checkpoint (header, sizes, checksum, end marker); `blocks`, when
    /// given, receive the tensors (each must hold `parameterCount` floats; the EMA block only
    /// when the file has one). The whole file is checksummed before anything is copied, so a
    /// damaged checkpoint leaves `blocks` as they were; memory used is the header and one
    /// 1 MiB buffer, whatever the file claims.
    @discardableResult
    public static func read(path: String, into blocks: [UnsafeMutableBufferPointer<Float>]? = nil) throws -> TrainState {
        func bad(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let (fd, fileSize) = try openFile(path)
        defer { close(fd) }
        let (state, prefix, size) = try readHeader(fd, size: fileSize, path: path)
        let prefixLength = prefix.count
        let blockCount = state.hasEMA ? 4 : 3
        let blockBytes = state.parameterCount * 4
        if let blocks {
            guard blocks.count >= 3, blocks.allSatisfy({ $0.count == state.parameterCount }) else {
                throw bad("holds \(state.parameterCount) floats per tensor block; this model has \(blocks.first?.count ?? 0)")
            }
        }
        var trailer = [UInt8](repeating: 0, count: 16)
        try readAll(fd, &trailer, offset: size - 16, path: path)
        guard Array(trailer[8..<16]) == endMagic else { throw bad("truncated (no end marker)") }
        let expected = load(trailer, 0, as: UInt64.self)
        // First pass: the checksum of everything before the trailer, in bounded chunks.
        var hash = Checksum()
        hash.add(prefix)
        var chunk = [UInt8](repeating: 0, count: max(1, min(1 << 20, size - 16 - prefixLength)))
        func hashBytes(_ h: inout Checksum, from start: Int, count: Int) throws {
            var done = 0
            while done < count {
                let n = min(chunk.count, count - done)
                try chunk.withUnsafeMutableBytes { try readAll(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), offset: start + done, path: path) }
                chunk.withUnsafeBytes { h.add(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                done += n
            }
        }
        try hashBytes(&hash, from: prefixLength, count: size - 16 - prefixLength)
        guard hash.value == expected else { throw bad("checksum mismatch: the file is corrupt") }
        guard let blocks else { return state }
        // Second pass: the verified blocks straight into the caller's memory, checksummed again
        // in case the file changed in between.
        var again = Checksum()
        again.add(prefix)
        for b in 0..<blockCount {
            let target = b < blocks.count ? UnsafeMutableRawBufferPointer(blocks[b]) : nil
            if let target {
                try readAll(fd, target, offset: prefixLength + b * blockBytes, path: path)
                again.add(UnsafeRawBufferPointer(target))
                continue
            }
            try hashBytes(&again, from: prefixLength + b * blockBytes, count: blockBytes)
        }
        guard again.value == expected else { throw bad("changed while it was read (checksum mismatch)") }
        return state
    }

    /// Deletes all but the newest `keep` checkpoints (and stray temporary files).
    public static func prune(directory: String, keep: Int) {
        for path in list(directory: directory).dropFirst(keep) { unlink(path) }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasSuffix(".ckpt.tmp") || (name.hasPrefix(".step-") && name.hasSuffix(SafeFile.temporarySuffix)) { unlink(directory + "/" + name) }
        SafeFile.syncDirectory(directory)
    }

    static func append<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    static func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    static func readAll(_ fd: Int32, _ bytes: inout [UInt8], offset: Int, path: String) throws {
        try bytes.withUnsafeMutableBytes { try readAll(fd, $0, offset: offset, path: path) }
    }

    /// The regular file at `path` opened for reading, and its size (`SafeFile.openRegularFile`).
    private static func openFile(_ path: String) throws -> (fd: Int32, size: Int) {
        do {
            return try SafeFile.openRegularFile(path)
        } catch let error as FileIOError {
            throw CheckpointError(path: path, problem: error.problem)
        }
    }

    /// Fills `raw` from byte `offset` of `fd` (`SafeFile.readFully`); a file that ends first
    /// is a damaged checkpoint.
    static func readAll(_ fd: Int32, _ raw: UnsafeMutableRawBufferPointer, offset: Int, path: String) throws {
        do {
            try SafeFile.readFully(fd, into: raw, at: offset, path: path)
        } catch let error as FileIOError {
            throw CheckpointError(path: path, problem: "truncated or unreadable (\(error.problem))")
        }
    }
}

/// A 64-bit checksum over bytes, fed in pieces (any split of the same bytes gives the same
/// value): four interleaved multiply-rotate lanes over 8-byte words, then a final mix.
struct Checksum {
    private var lanes: (UInt64, UInt64, UInt64, UInt64) = (0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63)
    private var pending: [UInt8] = []
    private var words = 0
    private var total = 0

    mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add($0) } }

    mutating func add(_ raw: UnsafeRawBufferPointer) {
        total += raw.count
        var start = 0
        if !pending.isEmpty {
            let take = min(raw.count, 32 - pending.count)
            pending += raw[0..<take]
            start = take
            if pending.count == 32 {
                let p = pending
                p.withUnsafeBytes { consume($0, 0) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        var i = start
        while i + 32 <= raw.count {
            consume(raw, i)
            i += 32
        }
        if i < raw.count { pending += raw[i..<raw.count] }
    }

    @inline(__always)
    private mutating func consume(_ raw: UnsafeRawBufferPointer, _ offset: Int) {
        @inline(__always) func mix(_ lane: UInt64, _ word: UInt64) -> UInt64 {
            let x = lane &+ word &* 0xC2B2_AE3D_27D4_EB4F
            return ((x << 31) | (x >> 33)) &* 0x9E37_79B9_7F4A_7C15
        }
        lanes.0 = mix(lanes.0, raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        lanes.1 = mix(lanes.1, raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        lanes.2 = mix(lanes.2, raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
        lanes.3 = mix(lanes.3, raw.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
        words += 4
    }

    var value: UInt64 {
        var h = lanes.0 ^ (lanes.1 &* 31) ^ (lanes.2 &* 131) ^ (lanes.3 &* 1031) ^ UInt64(total)
        for b in pending { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return h
    }
}
