import COpenBLAS
import Foundation
import Support
import ViT

/// Images' embeddings for nearest-neighbour search: float32, L2-normalised, one row per image,
/// with the image's path or shard key, and the fingerprint of the model that embedded them.
///
/// File format: a safetensors file (readable with Python's `safetensors`) holding
/// `embeddings` (N, D) float32, `norms` (N) float32 (each embedding's length before it was
/// normalised: text search's logit rules need it; absent in indexes written before), and
/// `__metadata__` with `format` = `catlip-index`, `version`
/// = `1`, `keys` = a JSON array of the N keys, `model_fingerprint` (16 hex digits, see
/// `modelFingerprint(_:)`) and `model_dim`. The safetensors header bound (100 MB) limits an
/// index to roughly a million keys of 80 bytes.
public struct EmbeddingIndex: Sendable {
    /// Embedding width D.
    public let dim: Int
    /// The key (path or `shard:key`) of each row.
    public let keys: [String]
    /// (N, D) row-major, each row of unit length.
    public let embeddings: [Float]
    /// `modelFingerprint` of the model that wrote the rows.
    public let modelFingerprint: String
    /// Each row's length before normalisation (nil for an index written without them).
    public let norms: [Float]?

    /// Number of rows N.
    public var count: Int { keys.count }

    /// An index of `keys.count` rows of `dim` floats; rows are L2-normalised here (their
    /// lengths kept as `norms`) unless `normalized` says they already are (as read back from a
    /// file, with the `norms` it holds).
    public init(
        dim: Int, keys: [String], embeddings: [Float], modelFingerprint: String, normalized: Bool = false,
        norms: [Float]? = nil
    ) {
        precondition(dim > 0 && embeddings.count == keys.count * dim, "index shape mismatch")
        precondition(norms == nil || norms!.count == keys.count, "index norms mismatch")
        var rows = embeddings
        var lengths = norms
        if !normalized {
            lengths = (0..<keys.count).map { r in
                var sum: Double = 0
                for v in rows[(r * dim)..<((r + 1) * dim)] { sum += Double(v) * Double(v) }
                return Float(sum.squareRoot())
            }
            for r in 0..<keys.count { EmbeddingIndex.normalize(&rows, offset: r * dim, count: dim) }
        }
        self.dim = dim
        self.keys = keys
        self.embeddings = rows
        self.modelFingerprint = modelFingerprint
        self.norms = lengths
    }

    /// Scales `values[offset ..< offset + count]` to unit length (a zero vector stays zero).
    public static func normalize(_ values: inout [Float], offset: Int, count: Int) {
        var sum: Double = 0
        for i in offset..<(offset + count) { sum += Double(values[i]) * Double(values[i]) }
        guard sum > 0 else { return }
        let scale = Float(1 / sum.squareRoot())
        for i in offset..<(offset + count) { values[i] *= scale }
    }

    /// Writes the index to `path` (temporary file, then rename).
    public func write(path: String) throws {
        let keysJSON = String(decoding: try JSONSerialization.data(withJSONObject: keys, options: [.withoutEscapingSlashes]), as: UTF8.self)
        let metadata = [
            "format": "catlip-index", "version": "1", "keys": keysJSON,
            "model_fingerprint": modelFingerprint, "model_dim": String(dim),
        ]
        try embeddings.withUnsafeBufferPointer { rows in
            try (norms ?? []).withUnsafeBufferPointer { lengths in
                var entries: [SafeTensors.WriteEntry] = [.init(name: "embeddings", shape: [count, dim], values: rows)]
                if norms != nil { entries.append(.init(name: "norms", shape: [count], values: lengths)) }
                try SafeTensors.write(path: path, entries: entries, metadata: metadata)
            }
        }
    }

    /// Reads and checks an index file: format, version, shapes, the key count against the rows,
    /// finite values. Errors name the file and the problem.
    public static func read(path: String) throws -> EmbeddingIndex {
        func bad(_ problem: String) -> IndexError { IndexError(path: path, problem: problem) }
        let file: SafeTensors
        do { file = try SafeTensors.read(path: path) } catch { throw bad("not a readable index (\(error))") }
        guard file.metadata["format"] == "catlip-index" else {
            throw bad("not a catlip index (metadata format is \(file.metadata["format"].map { "'\($0)'" } ?? "missing"))")
        }
        guard file.metadata["version"] == "1" else { throw bad("unsupported index version \(file.metadata["version"] ?? "none")") }
        guard let tensor = file["embeddings"], tensor.shape.count == 2, tensor.shape[1] > 0 else {
            throw bad("no (N, D) tensor named embeddings")
        }
        guard let keysText = file.metadata["keys"],
            let parsed = try? JSONSerialization.jsonObject(with: Data(keysText.utf8)) as? [String]
        else { throw bad("metadata keys is not a JSON array of strings") }
        guard parsed.count == tensor.shape[0] else {
            throw bad("\(parsed.count) keys for \(tensor.shape[0]) embedding rows")
        }
        if let i = tensor.values.firstIndex(where: { !$0.isFinite }) {
            throw bad("embedding row \(i / tensor.shape[1]) is not finite")
        }
        var norms: [Float]?
        if let n = file["norms"] {
            guard n.shape == [tensor.shape[0]] else { throw bad("norms has shape \(n.shape), expected [\(tensor.shape[0])]") }
            if let i = n.values.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw bad("norm of row \(i) is not a finite length")
            }
            norms = n.values
        }
        return EmbeddingIndex(
            dim: tensor.shape[1], keys: parsed, embeddings: tensor.values,
            modelFingerprint: file.metadata["model_fingerprint"] ?? "", normalized: true, norms: norms)
    }

    /// One search hit: the row, its key and its cosine similarity to the query.
    public struct Match: Sendable, Equatable {
        /// Row index in the index.
        public var row: Int
        /// The row's key.
        public var key: String
        /// Cosine similarity (dot product of unit vectors), in [-1, 1].
        public var score: Float
    }

    /// The `k` rows nearest to each of `queries.count / dim` unit-length queries, best first
    /// (ties by row), exactly: scores from one BLAS product over all rows (sgemv for one
    /// query, sgemm for several), then a bounded selection per query.
    public func search(queries: [Float], k: Int) -> [[Match]] {
        let m = queries.count / dim
        precondition(m * dim == queries.count, "query length is not a multiple of the dimension")
        let n = count
        guard m > 0, n > 0, k > 0 else { return Array(repeating: [], count: m) }
        var scores = [Float](repeating: 0, count: m * n)
        embeddings.withUnsafeBufferPointer { e in
            queries.withUnsafeBufferPointer { q in
                scores.withUnsafeMutableBufferPointer { s in
                    if m == 1 {
                        cblas_sgemv(
                            CblasRowMajor, CblasNoTrans, Int32(n), Int32(dim), 1, e.baseAddress, Int32(dim),
                            q.baseAddress, 1, 0, s.baseAddress, 1)
                    } else {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(dim), 1,
                            q.baseAddress, Int32(dim), e.baseAddress, Int32(dim), 0, s.baseAddress, Int32(n))
                    }
                }
            }
        }
        return (0..<m).map { qi in
            EmbeddingIndex.topK(scores[(qi * n)..<((qi + 1) * n)], k: k).map {
                Match(row: $0.index, key: keys[$0.index], score: $0.score)
            }
        }
    }

    /// The `k` largest of `scores` (index relative to the slice start), best first, ties by
    /// lower index: a min-heap of size k over one pass.
    static func topK(_ scores: ArraySlice<Float>, k: Int) -> [(index: Int, score: Float)] {
        let k = min(k, scores.count)
        // "worse" = lower score, or equal score and higher index
        func worse(_ a: (Int, Float), _ b: (Int, Float)) -> Bool { a.1 < b.1 || (a.1 == b.1 && a.0 > b.0) }
        var heap: [(Int, Float)] = []
        heap.reserveCapacity(k)
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && worse(heap[l], heap[m]) { m = l }
                if r < heap.count && worse(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for (offset, s) in scores.enumerated() {
            let item = (offset, s.isNaN ? -Float.infinity : s)
            if heap.count < k {
                heap.append(item)
                var i = heap.count - 1
                while i > 0 {
                    let p = (i - 1) / 2
                    if worse(heap[i], heap[p]) { heap.swapAt(i, p); i = p } else { break }
                }
            } else if worse(heap[0], item) {
                heap[0] = item
                siftDown(0)
            }
        }
        return heap.sorted { worse($1, $0) }.map { (index: $0.0, score: $0.1) }
    }
}

/// An index file that cannot be used, naming the file and the problem.
public struct IndexError: Error, Sendable, CustomStringConvertible {
    /// The index file.
    public var path: String
    /// What is wrong with it.
    public var problem: String
    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// A 64-bit fingerprint (16 hex digits) of a model's configuration and weights, recorded in
/// indexes so that a daemon refuses to search rows another model embedded.
public func modelFingerprint(_ model: ViTModel) -> String {
    var h = FNV1a()
    h.combine("\(model.config.modelArgs)".utf8)
    let weights = model.parameters.base
    for i in 0..<model.layout.parameterCount { h.combine(word: UInt64(weights[i].bitPattern)) }
    return h.hex
}
