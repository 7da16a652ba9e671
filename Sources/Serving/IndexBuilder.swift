import Encoder
import Foundation
import Imaging
import Shards
import ViT

/// Builds an `EmbeddingIndex` (`catlip index build`): images named directly, folders searched
/// recursively for .jpg/.jpeg/.png, and shards or manifests (a `.tar`, a brace pattern, a
/// `.tsv`/`.jsonl` manifest) streamed in order. Each image gets the model's evaluation
/// preprocessing and its L2-normalised pooled embedding; images that cannot be read or decoded
/// are skipped, counted and reported.
public struct IndexBuilder {
    /// The model that embeds.
    public let model: ViTModel
    /// Images per forward pass.
    public var batchSize = 32
    /// Decoder pixel limit.
    public var maxPixels = 40_000_000
    /// Image files larger than this, and paths that are not regular files (FIFOs, devices),
    /// are skipped and reported without being read (`readFileBytes`).
    public var maxFileBytes = defaultMaxImageFileBytes

    /// Longest side of the thumbnails to keep beside the index (nil: none).
    public var thumbnailSide: Int?

    /// A builder over `model`.
    public init(model: ViTModel) { self.model = model }

    /// What a build did.
    public struct Report: Sendable {
        /// Images embedded.
        public var embedded = 0
        /// Images skipped.
        public var skipped = 0
        /// The first skipped images with their problems (at most 100).
        public var problems: [String] = []
        /// Thumbnails, one per row, when `thumbnailSide` was set.
        public var thumbnails: IndexThumbnails?
    }

    private struct Item {
        var key: String
        var payload: ImagePayload
    }

    /// Embeds everything `inputs` names; `progress(embedded, skipped)` is called after each batch.
    public func build(inputs: [String], progress: (Int, Int) -> Void = { _, _ in }) throws -> (EmbeddingIndex, Report) {
        var decode = DecodeOptions()
        decode.maxPixels = maxPixels
        let encoder = ImageEncoder(model: model, batchSize: batchSize, decode: decode)
        var keys: [String] = []
        var rows: [Float] = []
        var report = Report()
        var pending: [Item] = []
        var pictures: [[UInt8]] = []
        let maxFileBytes = self.maxFileBytes
        let thumbnailSide = self.thumbnailSide

        func flush() {
            guard !pending.isEmpty else { return }
            let items = pending
            pending.removeAll(keepingCapacity: true)
            let encoded = encoder.encode(count: items.count) { i in
                (try items[i].payload.load(name: items[i].key, maxFileBytes: maxFileBytes), items[i].key)
            }
            report.skipped += encoded.failures.count
            for failure in encoded.failures where report.problems.count < 100 { report.problems.append("\(failure.error)") }
            keys += encoded.kept.map { items[$0].key }
            rows += encoded.preLogits
            if let side = thumbnailSide {
                for i in encoded.kept {
                    do {
                        let bytes = try items[i].payload.load(name: items[i].key, maxFileBytes: maxFileBytes)
                        pictures.append(try IndexThumbnails.picture(of: bytes, source: items[i].key, side: side, options: decode))
                    } catch {
                        // it decoded for its embedding a moment ago; keep the rows aligned
                        pictures.append(IndexThumbnails.placeholder)
                        if report.problems.count < 100 { report.problems.append("thumbnail of \(items[i].key): \(error)") }
                    }
                }
            }
            report.embedded += encoded.kept.count
            progress(report.embedded, report.skipped)
        }

        for input in inputs {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory)
            let lower = input.lowercased()
            if exists && !isDirectory.boolValue && !lower.hasSuffix(".tar") && !lower.hasSuffix(".tsv")
                && !lower.hasSuffix(".jsonl") && !lower.hasSuffix(".json")
            {
                pending.append(Item(key: input, payload: .file(input)))
                if pending.count == batchSize { flush() }
            } else if exists && isDirectory.boolValue {
                let found = (FileManager.default.enumerator(atPath: input)?.allObjects as? [String] ?? []).filter {
                    let l = $0.lowercased()
                    return l.hasSuffix(".jpg") || l.hasSuffix(".jpeg") || l.hasSuffix(".png")
                }.sorted()
                for name in found {
                    let path = input.hasSuffix("/") ? input + name : input + "/" + name
                    pending.append(Item(key: path, payload: .file(path)))
                    if pending.count == batchSize { flush() }
                }
            } else {
                let source = try openSampleSource(input, shuffle: false)
                try source.forEachSample(seed: 0, epoch: 0) { sample in
                    let isShard = sample.source.lowercased().hasSuffix(".tar")
                    pending.append(Item(key: isShard ? sample.source + ":" + sample.key : sample.key, payload: sample.image))
                    if pending.count == batchSize { flush() }
                    return true
                }
            }
        }
        flush()
        let index = EmbeddingIndex(dim: model.dim, keys: keys, embeddings: rows, modelFingerprint: modelFingerprint(model))
        if thumbnailSide != nil { report.thumbnails = IndexThumbnails(pictures: pictures) }
        return (index, report)
    }
}
