import Support

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Support

/// A float32 tensor held in host memory: a shape and its values in C (row-major) order.
public struct FloatTensor: Sendable, Equatable {
    /// The dimensions, outermost first. An empty shape is a scalar with one value.
    public var shape: [Int]
    /// `shape.reduce(1, *)` values in C order.
    public var values: [Float]

    /// A tensor from its shape and values; traps when the counts disagree (a programmer error).
    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(
            shape.reduce(1, *) == values.count,
            "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.values = values
    }
}

/// A safetensors file that cannot be read or written: the file and what is wrong with it.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The file (or the name given to an in-memory buffer).
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of a
/// JSON object `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
/// {string: string}}`, then the tensor bytes, offsets relative to the end of the header.
///
/// Only F32 tensors are supported. Reading checks everything (header length against the file
/// size and `maxHeaderBytes`, JSON syntax and types, UTF-8, dtype, shape against the byte count,
/// offsets inside the data and not overlapping, unique names) and throws `SafeTensorsError`;
/// a malformed file never traps. Gaps between tensors are tolerated. Writing is deterministic:
/// `__metadata__` first, tensors sorted by name and stored in that order, the header padded with
/// spaces to a multiple of 8 bytes as the reference implementation does, written atomically.
public struct SafeTensors: Sendable, Equatable {
    /// Largest header accepted when reading (the reference implementation also caps it at 100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// The tensors by name.
    public var tensors: [String: FloatTensor]
    /// The `__metadata__` string map (empty when absent).
    public var metadata: [String: String]

    /// Tensors and metadata to be written.
    public init(tensors: [String: FloatTensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The tensor names, sorted.
    public var names: [String] { tensors.keys.sorted() }

    /// The tensor called `name`, if present.
    public subscript(name: String) -> FloatTensor? { tensors[name] }

    // MARK: reading

    /// The validated layout of one tensor inside the data section.
    struct Entry {
        var name: String
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    /// A validated header: entries in header order, metadata, and the data section's size.
    struct Header {
        var entries: [Entry]
        var metadata: [String: String]
    }

    /// Reads and validates a safetensors file. Throws `SafeTensorsError` naming the file and the
    /// problem for any I/O failure or malformed content.
    public static func read(path: String) throws -> SafeTensors {
        let file = try SafeTensorsReader(path: path)
        var tensors: [String: FloatTensor] = [:]
        for t in file.tensors {
            var values = [Float](repeating: 0, count: t.count)
            try values.withUnsafeMutableBufferPointer { try file.read(t.name, into: $0) }
            tensors[t.name] = FloatTensor(shape: t.shape, values: values)
        }
        return SafeTensors(tensors: tensors, metadata: file.metadata)
    }

    /// Decodes a safetensors file held in memory; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String = "<memory>") throws -> SafeTensors {
        if bytes.count < 8 {
            throw SafeTensorsError(
                path: source,
                problem: "truncated: \(bytes.count) bytes, too short for the 8-byte header length")
        }
        let headerLength = try checkHeaderLength(
            Array(bytes[0..<8]), fileSize: bytes.count, path: source)
        let dataStart = 8 + headerLength
        let header = try parseHeader(
            Array(bytes[8..<dataStart]), dataSize: bytes.count - dataStart, path: source)
        var tensors: [String: FloatTensor] = [:]
        for e in header.entries {
            var values = [Float](repeating: 0, count: (e.end - e.begin) / 4)
            values.withUnsafeMutableBytes { dst in
                bytes.withUnsafeBytes { src in
                    dst.copyMemory(
                        from: UnsafeRawBufferPointer(
                            rebasing: src[(dataStart + e.begin)..<(dataStart + e.end)]))
                }
            }
            fixEndianness(&values)
            tensors[e.name] = FloatTensor(shape: e.shape, values: values)
        }
        return SafeTensors(tensors: tensors, metadata: header.metadata)
    }

    static func checkHeaderLength(_ bytes: [UInt8], fileSize: Int, path: String) throws -> Int {
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        if n > UInt64(maxHeaderBytes) {
            throw SafeTensorsError(
                path: path,
                problem: "header length \(n) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        if n > UInt64(fileSize - 8) {
            throw SafeTensorsError(
                path: path,
                problem:
                    "truncated: header length \(n) but only \(fileSize - 8) bytes follow the length"
            )
        }
        if n < 2 {
            throw SafeTensorsError(path: path, problem: "header length \(n) is too short for JSON")
        }
        return Int(n)
    }

    static func parseHeader(_ bytes: [UInt8], dataSize: Int, path: String) throws -> Header {
        let root: MiniJSON.Value
        do {
            root = try MiniJSON.parse(bytes)
        } catch let e as MiniJSON.ParseError {
            throw SafeTensorsError(path: path, problem: "header is not valid JSON: \(e.message)")
        }
        guard case .object(let members) = root else {
            throw SafeTensorsError(path: path, problem: "header is not a JSON object")
        }
        var seen = Set<String>()
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        func fail(_ problem: String) -> SafeTensorsError {
            SafeTensorsError(path: path, problem: problem)
        }
        for (name, value) in members {
            if !seen.insert(name).inserted { throw fail("duplicate tensor name '\(name)'") }
            if name == "__metadata__" {
                guard case .object(let pairs) = value else {
                    throw fail("__metadata__ is not an object of strings")
                }
                for (k, v) in pairs {
                    guard case .string(let s) = v else {
                        throw fail("__metadata__ value for '\(k)' is not a string")
                    }
                    if metadata[k] != nil { throw fail("duplicate __metadata__ key '\(k)'") }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let fields) = value else {
                throw fail("tensor '\(name)': entry is not an object")
            }
            var dtype: String?
            var shape: [Int]?
            var offsets: [Int]?
            for (key, v) in fields {
                switch key {
                case "dtype":
                    guard dtype == nil, case .string(let s) = v else {
                        throw fail("tensor '\(name)': dtype is missing, repeated or not a string")
                    }
                    dtype = s
                case "shape":
                    guard shape == nil, let dims = v.intArray, dims.allSatisfy({ $0 >= 0 }) else {
                        throw fail(
                            "tensor '\(name)': shape is not a list of non-negative integers")
                    }
                    shape = dims
                case "data_offsets":
                    guard offsets == nil, let o = v.intArray, o.count == 2, o[0] >= 0, o[1] >= 0
                    else {
                        throw fail(
                            "tensor '\(name)': data_offsets is not [begin, end] with non-negative "
                                + "integers")
                    }
                    offsets = o
                default:
                    throw fail("tensor '\(name)': unknown field '\(key)'")
                }
            }
            guard let dtype else { throw fail("tensor '\(name)': no dtype") }
            guard let shape else { throw fail("tensor '\(name)': no shape") }
            guard let offsets else { throw fail("tensor '\(name)': no data_offsets") }
            if dtype != "F32" {
                let known = [
                    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32",
                    "U32", "F64", "I64", "U64",
                ]
                throw fail(
                    known.contains(dtype)
                        ? "tensor '\(name)' has dtype \(dtype); only F32 is supported"
                        : "tensor '\(name)' has unknown dtype '\(dtype)'")
            }
            var count = 1
            for d in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                if overflow || p > Int.max / 8 {
                    throw fail("tensor '\(name)': shape \(shape) is too large")
                }
                count = p
            }
            let (begin, end) = (offsets[0], offsets[1])
            if end < begin {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] end before begin")
            }
            if end - begin != count * 4 {
                throw fail(
                    "tensor '\(name)': shape \(shape) needs \(count * 4) bytes of F32 but "
                        + "data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            if end > dataSize {
                throw fail(
                    "tensor '\(name)': data_offsets [\(begin), \(end)] run past the end of the "
                        + "data (\(dataSize) bytes; file truncated?)")
            }
            entries.append(Entry(name: name, shape: shape, begin: begin, end: end))
        }
        let byBegin = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (a, b) in zip(byBegin, byBegin.dropFirst()) where b.begin < a.end {
            throw fail(
                "tensors '\(a.name)' [\(a.begin), \(a.end)] and '\(b.name)' [\(b.begin), \(b.end)] "
                    + "overlap")
        }
        return Header(entries: entries, metadata: metadata)
    }

    static func fixEndianness(_ values: inout [Float]) {
        #if _endian(big)
            for i in values.indices {
                values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern))
            }
        #endif
    }

    // MARK: writing

    /// One tensor to write: a name, a shape and a pointer to its values (C order).
    public struct WriteEntry {
        /// The tensor's name.
        public var name: String
        /// The tensor's shape.
        public var shape: [Int]
        /// `shape.reduce(1, *)` values, valid for the duration of the write.
        public var values: UnsafeBufferPointer<Float>

        /// An entry; traps when the counts disagree.
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
            precondition(shape.reduce(1, *) == values.count, "\(name): shape/value count mismatch")
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// The header bytes (JSON plus space padding to a multiple of 8) for entries sorted by name.
    static func headerBytes(
        _ sorted: [(name: String, shape: [Int], count: Int)],
        metadata: [String: String]
    ) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map {
                JSONText.quote($0) + ":" + JSONText.quote(metadata[$0]!)
            }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for e in sorted {
            if !first { json += "," }
            first = false
            let shape = e.shape.map(String.init).joined(separator: ",")
            json += JSONText.quote(e.name)
            json += ":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),"
            offset += e.count * 4
            json += "\(offset)]}"
        }
        json += "}"
        var bytes = Array(json.utf8)
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// Writes tensors given by pointer (no copy of the values) to `path` atomically: a temporary
    /// file in the same folder, fsync, rename over `path`, fsync of the folder. Names must be
    /// unique (a programmer error otherwise).
    public static func write(path: String, entries: [WriteEntry], metadata: [String: String] = [:])
        throws
    {
        let sorted = entries.sorted { $0.name < $1.name }
        for (a, b) in zip(sorted, sorted.dropFirst()) {
            precondition(a.name != b.name, "duplicate tensor name '\(a.name)'")
        }
        precondition(!entries.contains { $0.name == "__metadata__" }, "reserved name __metadata__")
        let header = headerBytes(
            sorted.map { ($0.name, $0.shape, $0.values.count) }, metadata: metadata)
        var length = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { length[i] = UInt8((UInt64(header.count) >> (8 * UInt64(i))) & 0xff) }
        try AtomicFile.write(path: path) { sink in
            try length.withUnsafeBytes { try sink($0) }
            try header.withUnsafeBytes { try sink($0) }
            for e in sorted {
                #if _endian(big)
                    let le = e.values.map { Float(bitPattern: $0.bitPattern.littleEndian) }
                    try le.withUnsafeBytes { try sink($0) }
                #else
                    try sink(UnsafeRawBufferPointer(e.values))
                #endif
            }
        }
    }

    /// Writes this value to `path` atomically (see `write(path:entries:metadata:)`).
    public func write(path: String) throws {
        // Keep every array alive and pinned while the pointers are used.
        let names = self.names
        let arrays = names.map { tensors[$0]!.values }
        var entries: [WriteEntry] = []
        func recurse(_ i: Int) throws {
            if i == names.count {
                try SafeTensors.write(path: path, entries: entries, metadata: metadata)
                return
            }
            try arrays[i].withUnsafeBufferPointer { buf in
                entries.append(
                    WriteEntry(name: names[i], shape: tensors[names[i]]!.shape, values: buf))
                try recurse(i + 1)
            }
        }
        try recurse(0)
    }

    /// The file's bytes, as `write(path:)` would store them.
    public func encoded() -> [UInt8] {
        let names = self.names
        let header = SafeTensors.headerBytes(
            names.map { ($0, tensors[$0]!.shape, tensors[$0]!.values.count) }, metadata: metadata)
        var out: [UInt8] = []
        for i in 0..<8 { out.append(UInt8((UInt64(header.count) >> (8 * UInt64(i))) & 0xff)) }
        out += header
        for n in names {
            for v in tensors[n]!.values {
                let b = v.bitPattern
                out += [
                    UInt8(b & 0xff), UInt8((b >> 8) & 0xff), UInt8((b >> 16) & 0xff),
                    UInt8(b >> 24),
                ]
            }
        }
        return out
    }
}

/// An open safetensors file whose header has been read and validated (see `SafeTensors`): the
/// tensors' names, shapes and places are known and no value has been read yet. A caller checks
/// the tensors against what it expects before allocating anything, then reads each one straight
/// into its own memory. Memory used: the header (at most `SafeTensors.maxHeaderBytes`, and never
/// more than the file holds).
public final class SafeTensorsReader {
    /// One tensor of the header.
    public struct TensorInfo: Sendable, Equatable {
        /// Its name.
        public var name: String
        /// Its shape (dimensions checked: their product fits, times 4 bytes, in the file).
        public var shape: [Int]
        /// Its number of F32 values, the product of `shape`.
        public var count: Int
    }

    /// The file, as named in errors.
    public let path: String
    /// The tensors, in header order.
    public let tensors: [TensorInfo]
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    private let fd: Int32
    private let dataStart: Int
    private let entries: [String: SafeTensors.Entry]

    /// Opens `path` (a regular file) and validates its header against the file's size.
    public init(path: String) throws {
        self.path = path
        let fd: Int32
        let fileSize: Int
        do {
            (fd, fileSize) = try SafeFile.openRegularFile(path)
        } catch let error as FileIOError {
            throw SafeTensorsError(path: path, problem: error.problem)
        }
        var ok = false
        defer { if !ok { close(fd) } }
        if fileSize < 8 {
            throw SafeTensorsError(
                path: path,
                problem: "truncated: \(fileSize) bytes, too short for the 8-byte header length")
        }
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        try lengthBytes.withUnsafeMutableBytes {
            try SafeTensorsReader.readFully(fd, $0, at: 0, path: path)
        }
        let headerLength = try SafeTensors.checkHeaderLength(
            lengthBytes, fileSize: fileSize, path: path)
        var headerBytes = [UInt8](repeating: 0, count: headerLength)
        try headerBytes.withUnsafeMutableBytes {
            try SafeTensorsReader.readFully(fd, $0, at: 8, path: path)
        }
        let header = try SafeTensors.parseHeader(
            headerBytes, dataSize: fileSize - 8 - headerLength, path: path)
        self.fd = fd
        self.dataStart = 8 + headerLength
        self.tensors = header.entries.map {
            TensorInfo(name: $0.name, shape: $0.shape, count: ($0.end - $0.begin) / 4)
        }
        self.metadata = header.metadata
        var entries: [String: SafeTensors.Entry] = [:]
        for e in header.entries { entries[e.name] = e }
        self.entries = entries
        ok = true
    }

    deinit { close(fd) }

    /// Reads tensor `name` into `values`, which must hold exactly its `count` floats; throws
    /// for an unknown name, a wrong count or a file that shrank since it was opened.
    public func read(_ name: String, into values: UnsafeMutableBufferPointer<Float>) throws {
        guard let e = entries[name] else {
            throw SafeTensorsError(path: path, problem: "no tensor '\(name)'")
        }
        if values.count * 4 != e.end - e.begin {
            throw SafeTensorsError(
                path: path,
                problem: "tensor '\(name)' holds \((e.end - e.begin) / 4) values, not \(values.count)"
            )
        }
        try SafeTensorsReader.readFully(
            fd, UnsafeMutableRawBufferPointer(values), at: dataStart + e.begin, path: path)
        #if _endian(big)
            for i in values.indices {
                values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern))
            }
        #endif
    }

    /// Fills `into` from byte `offset` of `fd` (`SafeFile.readFully`); a short file is an
    /// error naming the file, not a hang.
    static func readFully(
        _ fd: Int32, _ into: UnsafeMutableRawBufferPointer, at offset: Int, path: String
    ) throws {
        do {
            try SafeFile.readFully(fd, into: into, at: offset, path: path)
        } catch let error as FileIOError {
            throw SafeTensorsError(path: path, problem: error.problem)
        }
    }
}

/// The text of the current `errno`.
func errnoText() -> String {
    String(cString: strerror(errno))
}

/// Crash-safe file replacement (`SafeFile.writeAtomically`: a temporary file created with
/// O_EXCL|O_NOFOLLOW next to the target, fsync, rename over the target, fsync of the folder),
/// so that the target is always either the old or the new complete file; I/O failures become
/// `SafeTensorsError`s naming the target.
enum AtomicFile {
    /// Calls `body` with a sink that appends bytes to the temporary file, then publishes it.
    static func write(
        path: String, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        do {
            try SafeFile.writeAtomically(path, body)
        } catch let error as FileIOError {
            throw SafeTensorsError(path: path, problem: error.problem)
        }
    }

    /// Writes `bytes` to `path` atomically.
    static func write(path: String, bytes: [UInt8]) throws {
        try write(path: path) { sink in try bytes.withUnsafeBytes { try sink($0) } }
    }
}
