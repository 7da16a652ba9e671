/// The filter used to resample a position embedding grid (PyTorch `F.interpolate` modes).
public enum PositionInterpolation: String, Sendable, Codable {
    /// Cubic convolution: a = -0.5 with antialias (Pillow's filter), -0.75 without.
    case bicubic
    /// Linear (triangle) filter.
    case bilinear
}

/// Resamples a learned position embedding (1, prefix + G·G, D) to another patch grid
/// (prefix + G'·G', D) exactly as timm's `resample_abs_pos_embed` does: the prefix (class
/// token) rows are kept, the grid rows are interpolated in 2-D with
/// `F.interpolate(size: (G', G'), mode:, antialias:, align_corners: false)` (timm's default:
/// bicubic with antialias). The map is linear and separable, so `backward` is its transpose;
/// variable-resolution training uses both. The scratch buffer is allocated once, at init.
public final class PositionEmbeddingResampler {
    /// Prefix rows copied unchanged (1 with a class token).
    public let prefix: Int
    /// Source grid side G.
    public let oldGrid: Int
    /// Target grid side G'.
    public let newGrid: Int
    /// Embedding width D.
    public let dim: Int
    /// (G', G) interpolation weights along one axis (the grids are square); empty under
    /// `PosEmbedResize.sequenceLinear`.
    public let weights: [Float]
    /// Under `PosEmbedResize.sequenceLinear`: for each of the G'² output rows, its two source
    /// rows among the G² and their weights (PyTorch's linear rule, align_corners false).
    let sequenceRows: [(Int, Int, Float, Float)]
    private let scratch: FloatArena  // (G, G', D): rows resampled along x only

    /// A resampler from grid `oldGrid` to `newGrid`: timm's 2-D rule with `mode` and
    /// `antialias`, or (`rule` `.sequenceLinear`) corenet's linear interpolation over the
    /// flattened sequence of G² rows, which ignores both.
    public init(
        prefix: Int, oldGrid: Int, newGrid: Int, dim: Int,
        mode: PositionInterpolation = .bicubic, antialias: Bool = true,
        rule: PosEmbedResize = .grid2d
    ) {
        precondition(oldGrid >= 1 && newGrid >= 1 && dim >= 1 && prefix >= 0)
        self.prefix = prefix
        self.oldGrid = oldGrid
        self.newGrid = newGrid
        self.dim = dim
        if rule == .sequenceLinear {
            let (n, m) = (oldGrid * oldGrid, newGrid * newGrid)
            let scale = Double(n) / Double(m)
            self.sequenceRows = (0..<m).map { i in
                let src = max(scale * (Double(i) + 0.5) - 0.5, 0)
                let i0 = min(Int(src), n - 1)
                let i1 = min(i0 + 1, n - 1)
                let l = Float(src - Double(i0))
                return (i0, i1, 1 - l, l)
            }
            self.weights = []
            scratch = FloatArena(count: 0)
            return
        }
        self.sequenceRows = []
        self.weights = PositionEmbeddingResampler.weights(
            inputSize: oldGrid, outputSize: newGrid, mode: mode, antialias: antialias
        ).map { Float($0) }
        scratch = FloatArena(count: oldGrid * newGrid * dim)
    }

    /// The (outputSize, inputSize) matrix of PyTorch's 1-D interpolation weights
    /// (align_corners false, scale = in / out), computed in double precision.
    public static func weights(
        inputSize n: Int, outputSize m: Int, mode: PositionInterpolation, antialias: Bool
    ) -> [Double] {
        var w = [Double](repeating: 0, count: m * n)
        let scale = Double(n) / Double(m)
        if antialias {
            // PyTorch's _upsample_*_aa (Pillow's resampling): a filter whose support widens by
            // the scale when shrinking; weights renormalised at the edges.
            let interpSize = mode == .bicubic ? 4.0 : 2.0
            let support = scale >= 1 ? interpSize * 0.5 * scale : interpSize * 0.5
            let invScale = scale >= 1 ? 1 / scale : 1
            func filter(_ x: Double) -> Double {
                let x = abs(x)
                switch mode {
                case .bilinear:
                    return x < 1 ? 1 - x : 0
                case .bicubic:
                    let a = -0.5
                    if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                    if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                    return 0
                }
            }
            for i in 0..<m {
                let center = scale * (Double(i) + 0.5)
                let xmin = max(Int(center - support + 0.5), 0)
                let xmax = min(Int(center + support + 0.5), n)
                var total = 0.0
                for j in xmin..<max(xmin, xmax) {
                    let v = filter((Double(j) - center + 0.5) * invScale)
                    w[i * n + j] = v
                    total += v
                }
                if total != 0 { for j in 0..<n { w[i * n + j] /= total } }
            }
            return w
        }
        for i in 0..<m {
            let src = scale * (Double(i) + 0.5) - 0.5
            switch mode {
            case .bilinear:
                let s = max(src, 0)
                let i0 = min(Int(s), n - 1)
                let i1 = min(i0 + 1, n - 1)
                let l = s - Double(i0)
                w[i * n + i0] += 1 - l
                w[i * n + i1] += l
            case .bicubic:
                let a = -0.75
                let f = src.rounded(.down)
                let t = src - f
                func c1(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
                func c2(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
                let coeffs = [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]
                for k in 0..<4 {
                    let j = min(max(Int(f) - 1 + k, 0), n - 1)
                    w[i * n + j] += coeffs[k]
                }
            }
        }
        return w
    }

    /// out (prefix + G'·G', D) = the resampled `inp` (prefix + G·G, D).
    public func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>) {
        let (G, H, D) = (oldGrid, newGrid, dim)
        out.update(from: inp, count: prefix * D)
        let src = inp + prefix * D
        let dst = out + prefix * D
        if !sequenceRows.isEmpty {
            for (i, (i0, i1, w0, w1)) in sequenceRows.enumerated() {
                let (o, a, b) = (dst + i * D, src + i0 * D, src + i1 * D)
                for d in 0..<D { o[d] = w0 * a[d] + w1 * b[d] }
            }
            return
        }
        let tmp = scratch.base
        weights.withUnsafeBufferPointer { w in
            // along x: tmp[y, x'] = Σ_x w[x', x] src[y, x]
            tmp.update(repeating: 0, count: G * H * D)
            for y in 0..<G {
                for xo in 0..<H {
                    let t = tmp + (y * H + xo) * D
                    for x in 0..<G where w[xo * G + x] != 0 {
                        let c = w[xo * G + x]
                        let s = src + (y * G + x) * D
                        for d in 0..<D { t[d] += c * s[d] }
                    }
                }
            }
            // along y: dst[y', x'] = Σ_y w[y', y] tmp[y, x']
            dst.update(repeating: 0, count: H * H * D)
            for yo in 0..<H {
                for y in 0..<G where w[yo * G + y] != 0 {
                    let c = w[yo * G + y]
                    for xo in 0..<H {
                        let o = dst + (yo * H + xo) * D
                        let t = tmp + (y * H + xo) * D
                        for d in 0..<D { o[d] += c * t[d] }
                    }
                }
            }
        }
    }

    /// dinp (prefix + G·G, D) += the transpose of `forward` applied to dout (prefix + G'·G', D).
    public func backward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>) {
        let (G, H, D) = (oldGrid, newGrid, dim)
        Kernels.addInPlace(dinp, dout, count: prefix * D)
        let dsrc = dinp + prefix * D
        let ddst = dout + prefix * D
        if !sequenceRows.isEmpty {
            for (i, (i0, i1, w0, w1)) in sequenceRows.enumerated() {
                let (g, a, b) = (ddst + i * D, dsrc + i0 * D, dsrc + i1 * D)
                for d in 0..<D {
                    a[d] += w0 * g[d]
                    b[d] += w1 * g[d]
                }
            }
            return
        }
        let tmp = scratch.base
        weights.withUnsafeBufferPointer { w in
            // dtmp[y, x'] = Σ_y' w[y', y] ddst[y', x']
            tmp.update(repeating: 0, count: G * H * D)
            for yo in 0..<H {
                for y in 0..<G where w[yo * G + y] != 0 {
                    let c = w[yo * G + y]
                    for xo in 0..<H {
                        let g = ddst + (yo * H + xo) * D
                        let t = tmp + (y * H + xo) * D
                        for d in 0..<D { t[d] += c * g[d] }
                    }
                }
            }
            // dsrc[y, x] += Σ_x' w[x', x] dtmp[y, x']
            for y in 0..<G {
                for xo in 0..<H {
                    let t = tmp + (y * H + xo) * D
                    for x in 0..<G where w[xo * G + x] != 0 {
                        let c = w[xo * G + x]
                        let s = dsrc + (y * G + x) * D
                        for d in 0..<D { s[d] += c * t[d] }
                    }
                }
            }
        }
    }
}

extension ViTModel {
    /// A copy of this model for another input size S' (patch grid floor(S' / P)): pos_embed is
    /// resampled as timm does when loading a checkpoint at a new image size (bicubic with
    /// antialias by default; corenet's 1-D rule for a model that records it), the config's img_size and pretrained_cfg input_size follow, every
    /// other parameter is copied. Throws `ModelConfigError` when `newSize` is outside what the
    /// engine supports (`ModelLimits`: the image side, patches per side, activations).
    public func resized(
        imageSize newSize: Int, mode: PositionInterpolation = .bicubic, antialias: Bool = true
    ) throws -> ViTModel {
        var config = self.config
        config.modelArgs.imgSize = newSize
        config.pretrainedCfg.inputSize = [channels, newSize, newSize]
        let copy = try ViTModel(config: config)
        copy.backend = backend
        for s in layout.specs where s.name != "pos_embed" {
            _ = copy.parameter(s.name).update(fromContentsOf: parameter(s.name))
        }
        _ = UnsafeMutableBufferPointer(start: copy.buffers.base, count: layout.bufferCount)
            .update(fromContentsOf: UnsafeBufferPointer(start: buffers.base, count: layout.bufferCount))
        let resampler = PositionEmbeddingResampler(
            prefix: positionPrefix, oldGrid: gridSize, newGrid: copy.gridSize, dim: dim, mode: mode,
            antialias: antialias, rule: config.modelArgs.posEmbedResize)
        resampler.forward(
            out: copy.parameter("pos_embed").baseAddress!,
            inp: parameter("pos_embed").baseAddress!)
        return copy
    }
}
