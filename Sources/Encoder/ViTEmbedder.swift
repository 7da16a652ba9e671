import Imaging
import ViT

/// Pooled pre-logits embeddings (timm's `forward_head(pre_logits=True)`) of images that are
/// already resized and cropped, given as floats in [0, 1]: the entry point for callers that
/// hold pixels rather than encoded files (tests against PyTorch dumps, benchmarks). The
/// normalisation is `pretrained_cfg`'s mean and std through `Normalization`, the same owner
/// `ImageEncoder`'s transform uses. Fixed-size batches through forward-only buffers planned
/// once; a short last batch runs with zero images in the unused slots.
public final class ViTEmbedder {
    /// The model (its `backend` applies).
    public let model: ViTModel
    /// Images per forward pass.
    public let batchSize: Int
    private let activations: ViTActivations
    private let input: FloatArena  // (B, C, S, S) normalised batch
    private let normalization: Normalization

    /// An embedder running `batchSize` images at a time at the model's image size.
    public init(model: ViTModel, batchSize: Int = 32) {
        precondition(batchSize >= 1)
        precondition(model.channels == 3, "images are RGB")
        self.model = model
        self.batchSize = batchSize
        activations = model.makeActivations(batchSize: batchSize, training: false)
        input = FloatArena(count: batchSize * model.channels * model.imageSize * model.imageSize)
        let cfg = model.config.pretrainedCfg
        normalization = Normalization(mean: cfg.mean.map { Float($0) }, std: cfg.std.map { Float($0) })
    }

    /// Embedding width D.
    public var dim: Int { model.dim }

    /// Embeds `count` images given as (count, C, S, S) floats in C order with pixels in [0, 1]
    /// (S the model's image size, already resized and cropped as pretrained_cfg says); each is
    /// normalised with pretrained_cfg's mean and std. Returns (count, D) embeddings.
    public func embed(images: UnsafePointer<Float>, count: Int) -> [Float] {
        let (C, S, D) = (model.channels, model.imageSize, model.dim)
        let plane = S * S
        var out = [Float](repeating: 0, count: count * D)
        var start = 0
        while start < count {
            let n = min(batchSize, count - start)
            let dst = input.base
            normalization.apply(unitImages: images + start * C * plane, count: n, plane: plane, into: dst)
            if n < batchSize {
                (dst + n * C * plane).update(repeating: 0, count: (batchSize - n) * C * plane)
            }
            model.forward(images: dst, activations: activations)
            out.withUnsafeMutableBufferPointer {
                ($0.baseAddress! + start * D).update(from: activations.preLogitsPointer, count: n * D)
            }
            start += n
        }
        return out
    }
}
