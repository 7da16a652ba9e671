// PyTorch checkpoints read without Python and without executing them (issue 22, `catlip import
// corenet`). `torch.save` (PyTorch 1.6 and later) writes a ZIP archive of stored entries:
// `<archive>/data.pkl`, a pickle of the saved object whose tensors refer to storages by
// persistent id; `<archive>/data/<key>`, each storage's raw little-endian bytes;
// `<archive>/byteorder` ("little") and `<archive>/version`. The pickle runs through
// `PickleReader` with a short allow-list of globals: OrderedDict, the two tensor-rebuilding
// functions and six storage types. Everything read from the file is checked before use
// (storage sizes against their entries, every view against its storage, shapes against
// overflow) and a bad file is a one-line `TorchCheckpointError`, never a trap.

import Support

/// One tensor of a checkpoint, converted to float32.
public struct TorchTensorRecord: Sendable, Equatable {
    /// Its name in the state dict (e.g. "blocks.0.attn.qkv.weight").
    public var name: String
    /// Its dtype in the checkpoint, as torch names it: "float32", "float16", "bfloat16",
    /// "float64", "int64" or "int32".
    public var dtype: String
    /// Its values as float32 in contiguous C order, whatever the checkpoint's layout (storage
    /// offset and strides honoured). float16 and bfloat16 convert exactly; float64 and integers
    /// round to the nearest float (catlip reads integer tensors only for BatchNorm's
    /// num_batches_tracked).
    public var values: FloatTensor

    /// The dimensions, outermost first (empty for a scalar).
    public var shape: [Int] { values.shape }
}

/// The tensors of a checkpoint and where in it they were found.
public struct TorchStateDict: Sendable, Equatable {
    /// The tensors in the pickle's order.
    public var tensors: [TorchTensorRecord]
    /// Which dict held them: "top level", or the entry of the top-level dict that did, quoted
    /// ("'state_dict_ema'", "'state_dict'", "'model'").
    public var source: String
}

/// A checkpoint or pickle that cannot be read: the file and what is wrong, one line.
public struct TorchCheckpointError: Error, CustomStringConvertible, Equatable {
    /// The file, as given.
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    /// An error about `path`; control characters in `problem` (which may quote names read from
    /// the file) are escaped so that the message stays on one line.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = String(
            problem.unicodeScalars.flatMap { c -> [Character] in
                [.control, .lineSeparator, .paragraphSeparator].contains(c.properties.generalCategory)
                    ? Array(c.escaped(asASCII: true)) : [Character(c)]
            })
    }

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// Reading `torch.save` checkpoints and plain pickled count tables (see the file comment).
public enum TorchCheckpoint {
    /// Entries of the top-level dict that may hold the state dict, in order of preference.
    public static let wrapperKeys = ["state_dict_ema", "state_dict", "model"]

    /// The storage types accepted, by class name in module `torch`: dtype and element size.
    static let storageTypes: [String: (dtype: String, size: Int)] = [
        "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8),
        "HalfStorage": ("float16", 2), "BFloat16Storage": ("bfloat16", 2),
        "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    ]

    /// Reads the state dict of the `torch.save` checkpoint at `path`: the top-level dict when
    /// all its values are tensors; otherwise its 'state_dict_ema', 'state_dict' or 'model' entry
    /// (first in that order that is a dict of tensors), provided no other top-level value is a
    /// tensor. Every value of the chosen dict must be a tensor: anything else (an int, a
    /// string, a nested dict) is an error naming its key, since a state dict with stray entries
    /// is not one catlip knows how to map. Throws `TorchCheckpointError`.
    public static func read(path: String) throws -> TorchStateDict {
        let file = try map(path)
        return try read(bytes: file.bytes, path: path)
    }

    /// Reads a checkpoint held in memory; `path` names it in errors.
    static func read(bytes: UnsafeRawBufferPointer, path: String) throws -> TorchStateDict {
        func fail(_ problem: String) -> TorchCheckpointError {
            TorchCheckpointError(path: path, problem: problem)
        }
        if bytes.first == 0x80 {
            throw fail(
                "legacy torch.save format (before PyTorch 1.6) is not supported; re-save it with "
                    + "torch.save in a recent PyTorch")
        }
        let archive: ZipArchive
        do {
            archive = try ZipArchive(bytes: bytes)
        } catch let e as ZipArchiveError {
            throw fail(e.problem)
        }
        let pickles = archive.entries.filter {
            $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/", omittingEmptySubsequences: false).count == 2
        }
        guard pickles.count == 1, let pickle = pickles.first else {
            throw fail(
                pickles.isEmpty
                    ? "no <archive>/data.pkl entry: not a torch.save checkpoint"
                    : "\(pickles.count) <archive>/data.pkl entries")
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        func contents(_ entry: ZipArchive.Entry) throws -> UnsafeRawBufferPointer {
            do {
                return try archive.data(of: entry)
            } catch let e as ZipArchiveError {
                throw fail(e.problem)
            }
        }
        if let entry = archive.entry(prefix + "byteorder") {
            let order = String(decoding: try contents(entry), as: UTF8.self)
            if order != "little" {
                throw fail(
                    "byteorder is '\(order.prefix(40))'; only little-endian checkpoints are supported")
            }
        }
        let loader = Loader(archive: archive, prefix: prefix)
        let top: PickleValue
        do {
            top = try PickleReader(rules: loader.rules()).read(try contents(pickle))
        } catch let e as PickleError {
            throw fail("\(pickle.name): \(e)")
        } catch let e as ZipArchiveError {
            throw fail(e.problem)
        }
        let (pairs, source) = try chooseStateDict(top, fail)
        var seen = Set<String>()
        var records: [TorchTensorRecord] = []
        var total = 0
        for (key, value) in pairs {
            guard case .string(let name) = key else {
                throw fail("\(source) has a key that is \(key.typeName), not a str")
            }
            guard case .reference("tensor", let index) = value else {
                throw fail("'\(name)' is \(value.typeName), not a tensor")
            }
            if !seen.insert(name).inserted { throw fail("tensor '\(name)' appears twice") }
            let record = try loader.materialize(loader.tensors[index], name: name, fail)
            total += record.values.values.count
            // Views of one storage may repeat its values; bound the total against the file.
            if total > 2 * bytes.count + 1024 {
                throw fail(
                    "the tensors hold more than \(total) values in all, over twice the file's "
                        + "\(bytes.count) bytes (many views of one storage?)")
            }
            records.append(record)
        }
        return TorchStateDict(tensors: records, source: source)
    }

    /// The dict of tensors to return and its name (see `read(path:)`).
    static func chooseStateDict(
        _ top: PickleValue, _ fail: (String) -> TorchCheckpointError
    ) throws -> ([(key: PickleValue, value: PickleValue)], String) {
        guard case .dict(let pairs) = top else {
            throw fail("the checkpoint holds \(top.typeName), not a dict of tensors")
        }
        func isTensor(_ v: PickleValue) -> Bool {
            if case .reference("tensor", _) = v { return true }
            return false
        }
        if pairs.allSatisfy({ isTensor($0.value) }) { return (pairs, "top level") }
        if !pairs.contains(where: { isTensor($0.value) }) {
            for wrapper in wrapperKeys {
                for (key, value) in pairs where key == .string(wrapper) {
                    if case .dict(let inner) = value, !inner.isEmpty,
                        inner.allSatisfy({ isTensor($0.value) })
                    {
                        return (inner, "'\(wrapper)'")
                    }
                }
            }
        }
        // Not a state dict: name the first entry that is not a tensor.
        let stray = pairs.first { !isTensor($0.value) }
        let key: String
        if case .string(let s)? = stray?.key { key = "'\(s)'" } else { key = "a key" }
        throw fail(
            "the top-level dict is not a state dict: \(key) is \(stray?.value.typeName ?? "?"), "
                + "not a tensor, and no 'state_dict_ema', 'state_dict' or 'model' entry is a "
                + "dict of tensors")
    }

    /// Reads a plain pickle file (Python's `pickle.dump`, any protocol from 2 to 5) holding a
    /// dict of str to int, such as corenet's vocabulary counts, in the pickle's order. No global
    /// but `collections.OrderedDict` is allowed; every count must be an int >= 0 and every key
    /// must appear once. Throws `TorchCheckpointError`.
    public static func readPickledCounts(path: String) throws -> [(key: String, count: Int)] {
        let file = try map(path)
        return try readPickledCounts(bytes: file.bytes, path: path)
    }

    /// Reads a count table held in memory; `path` names it in errors.
    static func readPickledCounts(bytes: UnsafeRawBufferPointer, path: String) throws -> [(
        key: String, count: Int
    )] {
        func fail(_ problem: String) -> TorchCheckpointError {
            TorchCheckpointError(path: path, problem: problem)
        }
        if bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            throw fail("is a zip archive (a torch.save checkpoint?), not a plain pickle")
        }
        var rules = PickleRules(allowedGlobals: ["collections.OrderedDict"])
        rules.reduce = orderedDictOnly
        let top: PickleValue
        do {
            top = try PickleReader(rules: rules).read(bytes)
        } catch let e as PickleError {
            throw fail(e.description)
        }
        guard case .dict(let pairs) = top else {
            throw fail("the pickle holds \(top.typeName), not a dict of str to int")
        }
        var seen = Set<String>()
        var out: [(key: String, count: Int)] = []
        out.reserveCapacity(pairs.count)
        for (key, value) in pairs {
            guard case .string(let k) = key else {
                throw fail("a key is \(key.typeName), not a str")
            }
            guard case .int(let n) = value else {
                throw fail("'\(k)' is \(value.typeName), not an int")
            }
            if n < 0 { throw fail("'\(k)' has a negative count \(n)") }
            if !seen.insert(k).inserted { throw fail("'\(k)' appears twice") }
            out.append((k, Int(n)))
        }
        return out
    }

    /// REDUCE rule allowing only `collections.OrderedDict()`, which becomes an empty dict.
    static func orderedDictOnly(_ module: String, _ name: String, _ args: [PickleValue]) throws
        -> PickleValue
    {
        guard module == "collections", name == "OrderedDict" else {
            throw PickleError("calling '\(module).\(name)' is not allowed")
        }
        guard args.isEmpty else {
            throw PickleError("OrderedDict with \(args.count) arguments is not supported")
        }
        return .dict([])
    }

    /// The file mapped into memory, or an error naming it.
    static func map(_ path: String) throws -> MappedFile {
        do {
            return try MappedFile(path: path)
        } catch let e as FileIOError {
            throw TorchCheckpointError(path: path, problem: e.problem)
        }
    }

    // MARK: - Storages and tensors

    /// One storage, checked against its entry.
    struct Storage {
        var key: String
        var typeName: String
        var dtype: String
        var count: Int
        var bytes: UnsafeRawBufferPointer
    }

    /// The arguments of one `_rebuild_tensor_v2`, type-checked; checked against the storage
    /// once the tensor's name is known.
    struct TensorView {
        var storage: Int
        var offset: Int
        var size: [Int]
        var stride: [Int]
    }

    /// The tables the pickle's rules fill while it runs.
    final class Loader {
        let archive: ZipArchive
        let prefix: String
        var storages: [Storage] = []
        var storageIndex: [String: Int] = [:]
        var tensors: [TensorView] = []

        init(archive: ZipArchive, prefix: String) {
            self.archive = archive
            self.prefix = prefix
        }

        /// The allow-list and what each allowed global means.
        func rules() -> PickleRules {
            var rules = PickleRules(
                allowedGlobals: Set(
                    [
                        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                        "torch._utils._rebuild_parameter",
                    ] + TorchCheckpoint.storageTypes.keys.map { "torch." + $0 }))
            rules.reduce = { [unowned self] module, name, args in
                try self.reduce(module, name, args)
            }
            rules.persistentLoad = { [unowned self] id in try self.storage(id) }
            rules.build = { object, state in
                // OrderedDict state dicts carry a `_metadata` attribute (module versions).
                if case .dict = object, case .dict(let attributes) = state,
                    attributes.allSatisfy({ $0.key == .string("_metadata") })
                {
                    return object
                }
                throw PickleError(
                    "setting the state of \(object.typeName) is not allowed (only an "
                        + "OrderedDict's _metadata is)")
            }
            return rules
        }

        func reduce(_ module: String, _ name: String, _ args: [PickleValue]) throws -> PickleValue {
            switch (module, name) {
            case ("collections", "OrderedDict"):
                return try TorchCheckpoint.orderedDictOnly(module, name, args)
            case ("torch._utils", "_rebuild_tensor_v2"):
                guard args.count == 6 || args.count == 7,
                    case .reference("storage", let storage) = args[0],
                    case .int(let offset) = args[1],
                    let size = Loader.ints(args[2]), let stride = Loader.ints(args[3]),
                    case .bool = args[4], case .dict = args[5]
                else {
                    throw PickleError(
                        "_rebuild_tensor_v2 needs (storage, offset, size, stride, requires_grad, "
                            + "hooks[, metadata]); got \(args.count) arguments of other types")
                }
                tensors.append(
                    TensorView(storage: storage, offset: Int(offset), size: size, stride: stride))
                return .reference(kind: "tensor", index: tensors.count - 1)
            case ("torch._utils", "_rebuild_parameter"):
                guard args.count == 3, case .reference("tensor", _) = args[0], case .bool = args[1],
                    case .dict = args[2]
                else {
                    throw PickleError(
                        "_rebuild_parameter needs (tensor, requires_grad, hooks); got "
                            + "\(args.count) arguments of other types")
                }
                return args[0]
            default:
                throw PickleError("calling '\(module).\(name)' is not allowed")
            }
        }

        /// A tuple of ints, or nil.
        static func ints(_ value: PickleValue) -> [Int]? {
            guard case .tuple(let items) = value else { return nil }
            var out: [Int] = []
            for item in items {
                guard case .int(let n) = item else { return nil }
                out.append(Int(n))
            }
            return out
        }

        /// The persistent id ('storage', type, key, location, count), checked against its entry.
        func storage(_ id: PickleValue) throws -> PickleValue {
            guard case .tuple(let parts) = id, parts.count == 5, parts[0] == .string("storage"),
                case .global("torch", let typeName) = parts[1],
                let type = TorchCheckpoint.storageTypes[typeName],
                case .string(let key) = parts[2], case .string = parts[3],
                case .int(let count64) = parts[4]
            else {
                throw PickleError(
                    "persistent id is not ('storage', storage type, key, location, size)")
            }
            let count = Int(count64)
            if let known = storageIndex[key] {
                let s = storages[known]
                guard s.typeName == typeName, s.count == count else {
                    throw PickleError(
                        "storage '\(key)' is named twice with different types or sizes")
                }
                return .reference(kind: "storage", index: known)
            }
            guard let entry = archive.entry(prefix + "data/" + key) else {
                throw PickleError("storage '\(key)': the archive has no entry '\(prefix)data/\(key)'")
            }
            let bytes = try archive.data(of: entry)
            let (needed, overflow) = count.multipliedReportingOverflow(by: type.size)
            guard count >= 0, !overflow, needed == bytes.count else {
                throw PickleError(
                    "storage '\(key)' (torch.\(typeName)) of \(count) elements needs "
                        + "\(overflow || count < 0 ? "an impossible number of" : String(needed)) "
                        + "bytes but its entry holds \(bytes.count)")
            }
            storages.append(
                Storage(
                    key: key, typeName: typeName, dtype: type.dtype,
                    count: count, bytes: bytes))
            storageIndex[key] = storages.count - 1
            return .reference(kind: "storage", index: storages.count - 1)
        }

        /// The tensor `name` as float32, after checking its view against its storage.
        func materialize(
            _ view: TensorView, name: String, _ fail: (String) -> TorchCheckpointError
        ) throws -> TorchTensorRecord {
            let storage = storages[view.storage]
            func refuse(_ problem: String) -> TorchCheckpointError {
                fail("tensor '\(name)': \(problem)")
            }
            guard view.size.count == view.stride.count else {
                throw refuse("size \(view.size) and stride \(view.stride) differ in length")
            }
            guard view.size.allSatisfy({ $0 >= 0 }) else {
                throw refuse("negative size in \(view.size)")
            }
            guard view.stride.allSatisfy({ $0 >= 0 }) else {
                throw refuse("negative stride in \(view.stride)")
            }
            guard view.offset >= 0 else { throw refuse("negative storage offset \(view.offset)") }
            var count = 1
            for d in view.size {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw refuse("shape \(view.size) is too large") }
                count = p
            }
            // Elements the view spans from its offset: 1 + sum (size - 1) * stride.
            var extent = count == 0 ? 0 : 1
            if count > 0 {
                for (d, s) in zip(view.size, view.stride) {
                    let (step, o1) = (d - 1).multipliedReportingOverflow(by: s)
                    let (sum, o2) = extent.addingReportingOverflow(step)
                    guard !o1, !o2 else { throw refuse("stride \(view.stride) is too large") }
                    extent = sum
                }
            }
            let (end, overflow) = view.offset.addingReportingOverflow(extent)
            guard !overflow, end <= storage.count else {
                throw refuse(
                    "storage offset \(view.offset) + extent \(extent) exceeds its storage of "
                        + "\(storage.count) \(storage.dtype) elements")
            }
            guard count <= storage.count else {
                throw refuse(
                    "shape \(view.size) holds \(count) elements, more than its storage of "
                        + "\(storage.count) (overlapping or broadcast views are not supported)")
            }
            let values = [Float](unsafeUninitializedCapacity: count) { out, filled in
                TorchCheckpoint.gather(storage, view, into: out)
                filled = count
            }
            return TorchTensorRecord(
                name: name, dtype: storage.dtype, values: FloatTensor(shape: view.size, values: values))
        }
    }

    /// Copies the (checked) view's elements into `out` in C order, converted to float32.
    static func gather(_ storage: Storage, _ view: TensorView, into out: UnsafeMutableBufferPointer<Float>) {
        guard out.count > 0 else { return }
        let rank = view.size.count
        let rowLength = rank == 0 ? 1 : view.size[rank - 1]
        let rowStride = rank == 0 ? 1 : view.stride[rank - 1]
        guard rowLength > 0 else { return }
        var index = [Int](repeating: 0, count: max(0, rank - 1))  // odometer over the outer dims
        var start = view.offset
        var written = 0
        while written < out.count {
            convertRow(storage, from: start, stride: rowStride, count: rowLength, into: out.baseAddress! + written)
            written += rowLength
            // Advance the odometer: the innermost outer dimension first.
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                start += view.stride[d]
                if index[d] < view.size[d] { break }
                start -= view.stride[d] * view.size[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Converts `count` elements from element `first`, `stride` apart, to float32.
    static func convertRow(
        _ storage: Storage, from first: Int, stride: Int, count: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let b = storage.bytes
        switch storage.dtype {
        case "float32":
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 4, as: UInt32.self)))
            }
        case "float64":
            for i in 0..<count {
                out[i] = Float(
                    Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 8, as: UInt64.self))))
            }
        case "float16":
            for i in 0..<count {
                out[i] = halfToFloat(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 2, as: UInt16.self)))
            }
        case "bfloat16":
            for i in 0..<count {
                out[i] = Float(
                    bitPattern: UInt32(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 2, as: UInt16.self)))
                        << 16)
            }
        case "int64":
            for i in 0..<count {
                out[i] = Float(Int64(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 8, as: Int64.self)))
            }
        default:  // int32
            for i in 0..<count {
                out[i] = Float(Int32(littleEndian: b.loadUnaligned(fromByteOffset: (first + i * stride) * 4, as: Int32.self)))
            }
        }
    }

    /// IEEE half-precision bits to float32, exactly (subnormals, infinities and NaNs included),
    /// written out so that it does not depend on the platform's Float16 support.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13)
        }
        if exponent == 0 {
            // Zero or subnormal: mantissa * 2^-24, exact in float32.
            let magnitude = Float(mantissa) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
    }
}
