import Imaging
import ViT

/// Encoded images: the pooled pre-logits (timm's `forward_head(pre_logits=True)`, what
/// `catlip embed` writes and the daemon indexes) and, when asked, the head's logits, one row per
/// image that decoded, in input order; the inputs that did not decode are named with their
/// errors, never dropped silently.
public struct EncodedImages {
    /// (kept.count, dim) pre-logits rows.
    public var preLogits: [Float] = []
    /// (kept.count, classes) logits rows; empty unless logits were asked for.
    public var logits: [Float] = []
    /// Indices (into the inputs) of the images that decoded, ascending: row r is input kept[r].
    public var kept: [Int] = []
    /// The inputs that could not be read or decoded, with the error (which names the input).
    public var failures: [(index: Int, error: any Error)] = []
}

/// The one image-encoder path of catlip: encoded image bytes → the model's evaluation
/// preprocessing (built once from its `pretrained_cfg`: resize the shorter side to
/// size / crop_pct with its interpolation, centre crop, mean/std) → forward → pre-logits or
/// logits rows. Validation during training, zero-shot and linear-probe evaluation, `catlip
/// embed`, index building and the daemon all call it, so an image gets the same embedding
/// whichever of them computes it. Images decode in parallel; forwards run `batchSize` images at
/// a time through one activation cache. Not thread-safe: one encoder per thread.
public final class ImageEncoder {
    /// The model (its backend and inference precision apply).
    public let model: ViTModel
    /// The evaluation preprocessing, from the model's `pretrained_cfg`.
    public let transform: EvalTransform
    /// Images per forward pass at most.
    public let batchSize: Int
    private let cache: ActivationCache
    private var pixels: [Float] = []

    /// An encoder for `model` running up to `batchSize` images per forward; `decode` bounds
    /// what the decoder accepts (pixel count; the daemon's limit).
    public init(model: ViTModel, batchSize: Int = 32, decode: DecodeOptions = DecodeOptions()) {
        precondition(batchSize >= 1, "batchSize must be positive")
        self.model = model
        self.batchSize = batchSize
        self.transform = ImageEncoder.evalTransform(for: model, decode: decode)
        self.cache = ActivationCache(model: model)
    }

    /// The evaluation preprocessing `pretrained_cfg` describes: input size, crop_pct,
    /// interpolation (bicubic or bilinear) and mean/std, as timm's `resolve_data_config` +
    /// `create_transform` build it. A loaded model's config was validated, so every value is in
    /// range here.
    public static func evalTransform(for model: ViTModel, decode: DecodeOptions = DecodeOptions()) -> EvalTransform {
        let cfg = model.config.pretrainedCfg
        return EvalTransform(
            size: model.imageSize, cropPct: cfg.cropPct, filter: cfg.interpolation == "bicubic" ? .bicubic : .bilinear,
            normalization: Normalization(mean: cfg.mean.map { Float($0) }, std: cfg.std.map { Float($0) }), decode: decode)
    }

    /// Pre-logits width D.
    public var dim: Int { model.dim }

    /// Encodes `count` images: `load(i)` gives image i's encoded bytes and the name its errors
    /// carry (a path, a shard key, "image 3 of the request"); it runs on the decoding workers,
    /// so files are read in parallel. With `logits` the head's logits come too.
    public func encode(
        count: Int, logits: Bool = false, load: @Sendable (Int) throws -> (bytes: [UInt8], name: String)
    ) -> EncodedImages {
        var out = EncodedImages()
        let (per, D, V) = (transform.outputCount, model.dim, model.numClasses)
        out.preLogits.reserveCapacity(count * D)
        if logits { out.logits.reserveCapacity(count * V) }
        let chunkMax = min(batchSize, max(count, 1))
        if pixels.count < chunkMax * per { pixels = [Float](repeating: 0, count: chunkMax * per) }
        var start = 0
        while start < count {
            let n = min(batchSize, count - start)
            let base = start
            let (kept, failures) = pixels.withUnsafeMutableBufferPointer { buffer in
                transform.decodeBatch(count: n, into: buffer) { i in try load(base + i) }
            }
            out.kept += kept.map { base + $0 }
            out.failures += failures.map { (base + $0.index, $0.error) }
            if !kept.isEmpty {
                let acts = cache.activations(for: kept.count)
                pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, activations: acts) }
                out.preLogits += UnsafeBufferPointer(start: acts.preLogitsPointer, count: kept.count * D)
                if logits { out.logits += UnsafeBufferPointer(start: acts.logitsPointer, count: kept.count * V) }
            }
            start += n
        }
        return out
    }
}
