import Foundation

/// Scales all gradients so that their global L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_` does: total = sqrt(Σ g²) over every parameter (summed in
/// double precision), then g *= min(1, maxNorm / (total + 1e-6)). Returns the total norm before
/// clipping.
@discardableResult
public func clipGradientNorm(_ model: ViTModel, maxNorm: Float) -> Float {
    let g = SendablePointer(model.gradients.base)
    let count = model.gradients.count  // alignment padding between tensors holds zeros
    let total = withUnsafeTemporaryAllocation(of: Double.self, capacity: 64) { partial in
        let parts = Parallelism.forParts(count, costPerItem: 2) { part, i0, i1 in
            var acc = SIMD8<Double>()
            var i = i0
            while i + 8 <= i1 {
                let v = SIMD8<Double>(
                    UnsafeRawPointer(g.p + i).loadUnaligned(as: SIMD8<Float>.self))
                acc += v * v
                i += 8
            }
            var sum = acc.sum()
            while i < i1 {
                sum += Double(g.p[i]) * Double(g.p[i])
                i += 1
            }
            partial[part] = sum
        }
        var sum: Double = 0
        for p in 0..<parts { sum += partial[p] }
        return sum.squareRoot()
    }
    let coef = min(1, Double(maxNorm) / (total + 1e-6))
    if coef < 1 {
        let c = Float(coef)
        Parallelism.forRanges(count, costPerItem: 1) { i0, i1 in
            for i in i0..<i1 { g.p[i] *= c }
        }
    }
    return Float(total)
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW` (amsgrad off): per step t,
/// p *= 1 - lr·wd (wd only for parameters with 2+ dimensions); m = β1 m + (1-β1) g;
/// v = β2 v + (1-β2) g²; p -= lr / (1-β1^t) · m / (sqrt(v) / sqrt(1-β2^t) + eps).
/// The moments live in two arenas with the model's parameter layout.
public final class AdamW {
    /// β1.
    public var beta1: Float
    /// β2.
    public var beta2: Float
    /// ε, added after the bias-corrected square root.
    public var eps: Float
    /// Decoupled weight decay for parameters with 2+ dimensions (1-D ones get none).
    public var weightDecay: Float
    /// Whether pos_embed and cls_token decay too (corenet) or not (timm's `no_weight_decay()`).
    public var decayEmbeddings = true
    /// Learning-rate multipliers per parameter tensor (by name; absent: 1), as timm's param
    /// groups' `lr_scale`: layer-wise decay (`layerDecayScales`) and frozen tensors (0: neither
    /// updated nor decayed). The decoupled weight decay follows the scaled rate, as in a torch
    /// param group.
    public var lrScales: [String: Float] = [:]
    /// Steps taken so far (set it when restoring a checkpoint: it drives the bias correction).
    public var step = 0
    /// First moments, parameter layout.
    public let m: FloatArena
    /// Second moments, parameter layout.
    public let v: FloatArena

    /// An optimiser for `model` with zero moments (CatLIP's settings by default).
    public init(
        model: ViTModel, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 0.2
    ) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = FloatArena(count: model.parameters.count)
        v = FloatArena(count: model.parameters.count)
    }

    /// Applies one update with learning rate `lr` from the model's gradients.
    public func update(_ model: ViTModel, lr: Float) {
        precondition(model.parameters.count == m.count, "optimiser made for another model")
        step += 1
        let t = Double(step)
        let bc1 = 1 - pow(Double(beta1), t)
        let bc2Sqrt = (1 - pow(Double(beta2), t)).squareRoot()
        let invBc2Sqrt = Float(1 / bc2Sqrt)
        let (b1, b2, e) = (beta1, beta2, eps)
        let p = SendablePointer(model.parameters.base)
        let g = SendablePointer(model.gradients.base)
        let mp = SendablePointer(m.base)
        let vp = SendablePointer(v.base)
        for s in model.layout.specs {
            let scale = lrScales[s.name] ?? 1
            if scale == 0 { continue }  // frozen
            let lr = scale == 1 ? lr : lr * scale
            let stepSize = Float(Double(lr) / bc1)
            let exempt = !decayEmbeddings && (s.name == "pos_embed" || s.name == "cls_token")
            let decay = s.decays && !exempt ? 1 - lr * weightDecay : 1
            let base = s.offset
            Parallelism.forRanges(s.count, costPerItem: 8) { i0, i1 in
                for i in (base + i0)..<(base + i1) {
                    let gi = g.p[i]
                    let mi = b1 * mp.p[i] + (1 - b1) * gi
                    let vi = b2 * vp.p[i] + (1 - b2) * gi * gi
                    mp.p[i] = mi
                    vp.p[i] = vi
                    p.p[i] = p.p[i] * decay - stepSize * mi / (vi.squareRoot() * invBc2Sqrt + e)
                }
            }
        }
    }
}

extension AdamW {
    /// timm's layer-wise learning-rate decay (BEiT; `param_groups_layer_decay`, as timm 1.0.31
    /// groups a VisionTransformer): layer ids 0 for the stem (patch_embed, cls_token,
    /// pos_embed), i + 1 for block i, the last block's for the final `norm` (timm's group matcher
    /// puts it there), depth + 1 for the rest (fc_norm, head); a tensor of layer `id` gets
    /// `decay^(depth + 1 - id)`.
    public static func layerDecayScales(_ model: ViTModel, decay: Float) -> [String: Float] {
        let depth = model.config.modelArgs.depth
        var scales: [String: Float] = [:]
        for s in model.layout.specs {
            let id: Int
            if s.name.hasPrefix("patch_embed.") || s.name == "cls_token" || s.name == "pos_embed" {
                id = 0
            } else if s.name.hasPrefix("blocks."), let i = Int(s.name.split(separator: ".")[1]) {
                id = i + 1
            } else if s.name.hasPrefix("norm.") {
                id = depth
            } else {
                id = depth + 1
            }
            scales[s.name] = Float(pow(Double(decay), Double(depth + 1 - id)))
        }
        return scales
    }
}

/// An exponential moving average of a model's weights, as corenet's EMA:
/// ema = ema · (1 - momentum) + momentum · weights after each step (CatLIP: momentum 0.0005;
/// the released weights are the EMA ones).
public final class WeightEMA {
    /// Contribution of the current weights per update.
    public var momentum: Float
    /// The averaged weights, parameter layout of the model.
    public let weights: FloatArena

    /// Starts the average at the model's current weights.
    public init(model: ViTModel, momentum: Float = 0.0005) {
        precondition(momentum >= 0 && momentum <= 1)
        self.momentum = momentum
        weights = FloatArena(count: model.parameters.count)
        weights.copy(from: model.parameters)
    }

    /// Folds the model's current weights into the average.
    public func update(_ model: ViTModel) {
        precondition(model.parameters.count == weights.count, "EMA made for another model")
        let e = SendablePointer(weights.base)
        let p = SendablePointer(model.parameters.base)
        let (keep, take) = (1 - momentum, momentum)
        Parallelism.forRanges(weights.count, costPerItem: 2) { i0, i1 in
            for i in i0..<i1 { e.p[i] = e.p[i] * keep + take * p.p[i] }
        }
    }

    /// Copies the averaged weights into `model` (for evaluation or export).
    public func copy(into model: ViTModel) {
        model.parameters.copy(from: weights)
    }
}

/// corenet's iteration-based cosine schedule with linear warm-up: for iteration i (0-based),
/// lr = warmupInitLR + i · (maxLR - warmupInitLR) / warmupIterations while i < warmupIterations,
/// then minLR + (maxLR - minLR) · (1 + cos(π · (i - warmup) / period)) / 2 with period =
/// maxIterations - warmupIterations + 1; never below 0. (CatLIP B/16: 1e-6 → 1e-3 over 10k,
/// cosine to 1e-5 over 200k.)
public struct CosineSchedule: Sendable, Equatable, Codable {
    /// Peak learning rate, reached at the end of warm-up.
    public var maxLR: Double
    /// Final learning rate.
    public var minLR: Double
    /// Linear warm-up iterations (0 for none).
    public var warmupIterations: Int
    /// Learning rate at iteration 0 of the warm-up.
    public var warmupInitLR: Double
    /// Total iterations of the run.
    public var maxIterations: Int

    /// A schedule; CatLIP's ViT-B/16 settings by default.
    public init(
        maxLR: Double = 1e-3, minLR: Double = 1e-5, warmupIterations: Int = 10_000,
        warmupInitLR: Double = 1e-6, maxIterations: Int = 200_000
    ) {
        precondition(warmupIterations >= 0 && maxIterations >= warmupIterations)
        self.maxLR = maxLR
        self.minLR = minLR
        self.warmupIterations = warmupIterations
        self.warmupInitLR = warmupInitLR
        self.maxIterations = maxIterations
    }

    /// The learning rate for iteration `iteration` (0-based).
    public func learningRate(iteration: Int) -> Double {
        if iteration < warmupIterations {
            let step = (maxLR - warmupInitLR) / Double(warmupIterations)
            return max(0, warmupInitLR + Double(iteration) * step)
        }
        let period = Double(maxIterations - warmupIterations + 1)
        let i = Double(iteration - warmupIterations)
        return max(0, minLR + 0.5 * (maxLR - minLR) * (1 + cos(Double.pi * i / period)))
    }
}
