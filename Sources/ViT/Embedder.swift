/// Pooled pre-logits embeddings (timm's `forward_head(pre_logits=True)`, what `catlip embed`
/// writes) for any number of images, in fixed-size batches through forward-only buffers that
/// are planned once.
public final class ViTEmbedder {
    /// The model (its `backend` applies).
    public let model: ViTModel
    /// Images per forward pass.
    public let batchSize: Int
    private let activations: ViTActivations
    private let input: FloatArena  // (B, C, S, S) normalised batch

    /// An embedder running `batchSize` images at a time at the model's image size.
    public init(model: ViTModel, batchSize: Int = 32) {
        precondition(batchSize >= 1)
        self.model = model
        self.batchSize = batchSize
        activations = model.makeActivations(batchSize: batchSize, training: false)
        input = FloatArena(count: batchSize * model.channels * model.imageSize * model.imageSize)
    }

    /// Embedding width D.
    public var dim: Int { model.dim }

    /// Embeds `count` images given as (count, C, S, S) floats in C order with pixels in [0, 1]
    /// (S the model's image size, already resized and cropped as pretrained_cfg says); each is
    /// normalised with pretrained_cfg's mean and std. Returns (count, D) embeddings.
    public func embed(images: UnsafePointer<Float>, count: Int) -> [Float] {
        let (C, S, D) = (model.channels, model.imageSize, model.dim)
        let plane = S * S
        let mean = model.config.pretrainedCfg.mean.map { Float($0) }
        let invStd = model.config.pretrainedCfg.std.map { Float(1 / $0) }
        var out = [Float](repeating: 0, count: count * D)
        var start = 0
        while start < count {
            let n = min(batchSize, count - start)
            let dst = input.base
            for b in 0..<n {
                for c in 0..<C {
                    let src = images + ((start + b) * C + c) * plane
                    let d = dst + (b * C + c) * plane
                    let (m, s) = (mean[c], invStd[c])
                    for i in 0..<plane { d[i] = (src[i] - m) * s }
                }
            }
            // a short last batch runs with zero images in the unused slots
            if n < batchSize {
                (dst + n * C * plane).update(repeating: 0, count: (batchSize - n) * C * plane)
            }
            model.forward(images: dst, activations: activations)
            out.withUnsafeMutableBufferPointer {
                ($0.baseAddress! + start * D).update(
                    from: activations.preLogitsPointer, count: n * D)
            }
            start += n
        }
        return out
    }
}
