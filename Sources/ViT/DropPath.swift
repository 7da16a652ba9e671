import Support

// Stochastic depth (timm's `drop_path`, Huang et al. 2016): in training each block's attention
// branch and MLP branch is, per image, either dropped (multiplied by 0) or kept and scaled by
// 1 / keep probability, so that its expectation is the plain branch; inference is the plain
// model. The draws live in the training activations (`ViTActivations.dropPathScales`), set
// before a forward pass and read again by its backward pass, which scales the branch's gradient
// by the same per-image factor. With no draws set, the forward and backward passes are the plain
// ones, bit for bit (the residual stays fused in the products' epilogues).

/// Per-block drop rates of stochastic depth.
public enum DropPath {
    /// The drop rate of each of `depth` blocks for a model-wide `rate` (timm's
    /// `drop_path_rate`): linearly increasing from 0 at the first block to `rate` at the last,
    /// r·i / (N - 1), as timm's `torch.linspace(0, drop_path_rate, depth)`; [0] for one block.
    public static func rates(_ rate: Double, depth: Int) -> [Double] {
        precondition(depth >= 1 && (0..<1).contains(rate), "drop path rate \(rate) outside [0, 1)")
        guard depth > 1 else { return [0] }
        return (0..<depth).map { rate * Double($0) / Double(depth - 1) }
    }
}

extension ViTActivations {
    /// Whether the coming training passes drop paths (a draw or fixed masks are set).
    public var dropPathIsOn: Bool { dropPathOn }

    /// Draws stochastic depth for the coming forward and backward pass of this batch shape
    /// from `generator`: for block l, branch (attention, then MLP) and image b, in that order,
    /// one `nextUnit()` u in [0, 1); the branch is kept when u < 1 - rates[l] (timm's
    /// Bernoulli(keep_prob) per sample). Blocks at rate 0 consume their draws too, so the
    /// stream does not depend on which blocks drop. Training activations only.
    public func drawDropPath(rates: [Double], generator: inout SeededGenerator) {
        setScales(rates: rates) { _, rate in generator.nextUnit() < 1 - rate }
    }

    /// Sets fixed stochastic-depth masks for the coming passes: `keep[(l·2 + branch)·B + b]`
    /// says whether block l's branch (0 attention, 1 MLP) is kept for image b; a kept branch is
    /// scaled by 1 / (1 - rates[l]) (timm's `scale_by_keep`), a dropped one by 0. The way tests
    /// give both sides of a fixture the same masks.
    public func setDropPath(keep: [Bool], rates: [Double]) {
        precondition(keep.count == blocks.count * 2 * batchSize, "keep masks must be (depth, 2, B)")
        setScales(rates: rates) { i, _ in keep[i] }
    }

    /// Fills `dropPathScales` in (block, branch, image) order from `keep(index, rate)`, without
    /// allocating, and turns stochastic depth on.
    private func setScales(rates: [Double], keep: (Int, Double) -> Bool) {
        precondition(training, "stochastic depth needs training activations")
        precondition(rates.count == blocks.count, "\(rates.count) drop rates for \(blocks.count) blocks")
        let s = dropPathScales.base
        for l in rates.indices {
            precondition((0..<1).contains(rates[l]), "drop rate \(rates[l]) outside [0, 1)")
            let kept = Float(1 / (1 - rates[l]))
            for i in (l * 2 * batchSize)..<((l + 1) * 2 * batchSize) {
                s[i] = keep(i, rates[l]) ? kept : 0
            }
        }
        dropPathOn = true
    }

    /// Back to the plain passes (no stochastic depth).
    public func clearDropPath() {
        dropPathOn = false
    }

    /// Block l's per-image factors (B) of `branch` (0 attention, 1 MLP), or nil without
    /// stochastic depth.
    @inline(__always)
    func dropPathScale(_ l: Int, branch: Int) -> UnsafePointer<Float>? {
        dropPathOn ? UnsafePointer(dropPathScales.base + (l * 2 + branch) * batchSize) : nil
    }
}

extension Kernels {
    /// out (G, R, C) = residual + s[g] · inp, or s[g] · inp without a residual, per group g of R
    /// rows: a residual branch scaled per image (stochastic depth's forward, in place with inp =
    /// out; s[g] = 0 leaves the residual exactly) and its gradient (the backward).
    public static func scaleGroups(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        scales: UnsafePointer<Float>, residual: UnsafePointer<Float>? = nil, groups: Int,
        rowsPerGroup: Int, columns: Int
    ) {
        let n = rowsPerGroup * columns
        for g in 0..<groups {
            let (o, x, s) = (out + g * n, inp + g * n, scales[g])
            if let r = residual.map({ $0 + g * n }) {
                for i in 0..<n { o[i] = r[i] + s * x[i] }
            } else {
                for i in 0..<n { o[i] = s * x[i] }
            }
        }
    }
}
