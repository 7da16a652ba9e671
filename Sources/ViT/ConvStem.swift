import Foundation

/// Where one convolution of a stem keeps its activations (offsets into the forward arena):
/// the unfolded input (rows = output positions, columns (c, ky, kx) as PyTorch's weight is laid
/// out), and for a convolution followed by BatchNorm and GELU its output, the normalised
/// values x̂, the BatchNorm output and the GELU output (the next convolution's input, channels
/// last), plus the batch mean and 1/σ per channel.
struct StemLayerActivations {
    /// Grid side of the output and of the input.
    var grid = 0, inputGrid = 0
    /// Input channels, output channels, kernel (= stride), padding.
    var inChannels = 0, outChannels = 0, kernel = 0, padding = 0
    /// (B·g², c·k·k) unfolded input.
    var cols = 0
    /// (B·g², w) convolution output, x̂, BatchNorm output, GELU output (all but the last layer).
    var conv = 0, normalized = 0, bnOut = 0, act = 0
    /// (w) the batch mean and 1/√(var + eps) used by the last training forward.
    var mean = 0, rstd = 0
    /// Rows of the GEMM, B·g².
    var rows = 0
    /// Columns of the unfolded input, c·k·k.
    var colsWidth: Int { inChannels * kernel * kernel }
}

/// The activations a convolutional stem needs for one batch shape, planned into the
/// activations' arenas; the last layer writes the patch embeddings themselves.
struct StemPlan {
    var layers: [StemLayerActivations] = []
    /// Backward scratch: the unfolded input's gradient of layers 1... (max size) and the
    /// gradient of a BatchNorm/GELU output (max size).
    var dcols = 0, dact = 0

    /// Plans the stem `stem` of `model` for `batch` images of side `imageSize`.
    init(
        stem: ConvStemArgs, channels: Int, batch: Int, imageSize: Int, training: Bool,
        forward f: inout ArenaPlanner, backward g: inout ArenaPlanner
    ) {
        var c = channels
        var inGrid = imageSize
        let grids = stem.grids(imageSize: imageSize)
        var maxDCols = 0, maxDAct = 0
        for (i, w) in stem.widths.enumerated() {
            var l = StemLayerActivations()
            l.grid = grids[i]
            l.inputGrid = inGrid
            l.inChannels = c
            l.outChannels = w
            l.kernel = stem.kernelSizes[i]
            l.padding = stem.paddings[i]
            l.rows = batch * l.grid * l.grid
            l.cols = f.take(l.rows * l.colsWidth)
            if i < stem.widths.count - 1 {
                l.conv = f.take(l.rows * w)
                // inference applies the running statistics in place: x̂ is not kept
                l.normalized = training ? f.take(l.rows * w) : l.conv
                l.bnOut = training ? f.take(l.rows * w) : l.conv
                l.act = f.take(l.rows * w)
                l.mean = f.take(w)
                l.rstd = f.take(w)
                maxDAct = max(maxDAct, l.rows * w)
            }
            if i > 0 { maxDCols = max(maxDCols, l.rows * l.colsWidth) }
            layers.append(l)
            c = w
            inGrid = l.grid
        }
        dcols = g.take(training ? maxDCols : 0)
        dact = g.take(training ? maxDAct : 0)
    }
}

extension Kernels {
    /// out (B·g², c·k·k) = the non-overlapping k×k windows (stride k, `padding` zeros around)
    /// of an input (B, c, s, s) addressed as inp[b·bs + ch·cs + y·ys + x·xs], rows in
    /// row-major grid order, each window flattened as (ch, ky, kx): a stem convolution as a
    /// GEMM against its (w, c·k·k) weight. Works for planar images (cs = s², xs = 1) and for
    /// channels-last activations (cs = 1, xs = c).
    static func unfoldWindows(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, batch: Int, channels: Int,
        inputGrid s: Int, outputGrid g: Int, kernel k: Int, padding p: Int,
        strides: (b: Int, c: Int, y: Int, x: Int)
    ) {
        let width = channels * k * k
        Parallelism.forRanges(batch * g, costPerItem: g * width) { r0, r1 in
            for r in r0..<r1 {
                let (b, oy) = (r / g, r % g)
                for ox in 0..<g {
                    let row = out + ((b * g + oy) * g + ox) * width
                    for ky in 0..<k {
                        let y = oy * k - p + ky
                        for kx in 0..<k {
                            let x = ox * k - p + kx
                            let inside = y >= 0 && y < s && x >= 0 && x < s
                            let src = inp + b * strides.b + (inside ? y * strides.y + x * strides.x : 0)
                            for ch in 0..<channels {
                                row[(ch * k + ky) * k + kx] = inside ? src[ch * strides.c] : 0
                            }
                        }
                    }
                }
            }
        }
    }

    /// The transpose of `unfoldWindows` for a channels-last input (B, s, s, c): dinp is
    /// overwritten (positions no window covers get 0), window gradients in padding dropped.
    static func foldWindows(
        dinp: UnsafeMutablePointer<Float>, dcols: UnsafePointer<Float>, batch: Int, channels: Int,
        inputGrid s: Int, outputGrid g: Int, kernel k: Int, padding p: Int
    ) {
        let width = channels * k * k
        dinp.update(repeating: 0, count: batch * s * s * channels)
        Parallelism.forRanges(batch * g, costPerItem: g * width) { r0, r1 in
            for r in r0..<r1 {
                let (b, oy) = (r / g, r % g)
                for ox in 0..<g {
                    let row = dcols + ((b * g + oy) * g + ox) * width
                    for ky in 0..<k {
                        let y = oy * k - p + ky
                        if y < 0 || y >= s { continue }
                        for kx in 0..<k {
                            let x = ox * k - p + kx
                            if x < 0 || x >= s { continue }
                            // windows do not overlap (stride = kernel): each input once
                            let dst = dinp + ((b * s + y) * s + x) * channels
                            for ch in 0..<channels { dst[ch] = row[(ch * k + ky) * k + kx] }
                        }
                    }
                }
            }
        }
    }

    /// BatchNorm over the rows of z (M, w) with batch statistics (PyTorch's training mode):
    /// mean and biased variance per column (summed in double), x̂ = (z − mean)·rstd, out =
    /// γ·x̂ + β; `mean` and `rstd` (w) are kept for backward, and the running statistics move
    /// by `momentum` towards the mean and the unbiased variance.
    static func batchNormTrainForward(
        out: UnsafeMutablePointer<Float>, normalized: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        z: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
        rows m: Int, width w: Int, eps: Double, momentum: Double
    ) {
        var sum = [Double](repeating: 0, count: w)
        for r in 0..<m {
            let row = z + r * w
            for c in 0..<w { sum[c] += Double(row[c]) }
        }
        let mu = sum.map { $0 / Double(m) }
        var sq = [Double](repeating: 0, count: w)
        for r in 0..<m {
            let row = z + r * w
            for c in 0..<w {
                let d = Double(row[c]) - mu[c]
                sq[c] += d * d
            }
        }
        for c in 0..<w {
            let variance = sq[c] / Double(m)
            mean[c] = Float(mu[c])
            rstd[c] = Float(1 / (variance + eps).squareRoot())
            let unbiased = m > 1 ? sq[c] / Double(m - 1) : variance
            runningMean[c] = Float((1 - momentum) * Double(runningMean[c]) + momentum * mu[c])
            runningVar[c] = Float((1 - momentum) * Double(runningVar[c]) + momentum * unbiased)
        }
        let (pz, px, po) = (SendablePointer(z), SendablePointer(normalized), SendablePointer(out))
        let (pm, ps) = (SendablePointer(mean), SendablePointer(rstd))
        let (pw, pb) = (SendablePointer(weight), SendablePointer(bias))
        Parallelism.forRanges(m, costPerItem: 3 * w) { r0, r1 in
            for r in r0..<r1 {
                let (zr, xr, orow) = (pz.p + r * w, px.p + r * w, po.p + r * w)
                for c in 0..<w {
                    let xh = (zr[c] - pm.p[c]) * ps.p[c]
                    xr[c] = xh
                    orow[c] = pw.p[c] * xh + pb.p[c]
                }
            }
        }
    }

    /// BatchNorm with running statistics (evaluation), in place on x (M, w).
    static func batchNormEvalForward(
        _ x: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, rows m: Int,
        width w: Int, eps: Double
    ) {
        var scale = [Float](repeating: 0, count: w)
        var shift = [Float](repeating: 0, count: w)
        for c in 0..<w {
            let s = Double(weight[c]) / (Double(runningVar[c]) + eps).squareRoot()
            scale[c] = Float(s)
            shift[c] = Float(Double(bias[c]) - Double(runningMean[c]) * s)
        }
        let px = SendablePointer(x)
        scale.withUnsafeBufferPointer { sc in
            shift.withUnsafeBufferPointer { sh in
                let (psc, psh) = (
                    SendablePointer(sc.baseAddress!),
                    SendablePointer(sh.baseAddress!)
                )
                Parallelism.forRanges(m, costPerItem: 2 * w) { r0, r1 in
                    for r in r0..<r1 {
                        let row = px.p + r * w
                        for c in 0..<w { row[c] = row[c] * psc.p[c] + psh.p[c] }
                    }
                }
            }
        }
    }

    /// Backward of `batchNormTrainForward`: dγ += Σ dy·x̂, dβ += Σ dy over the rows, and dz
    /// (M, w, may be dy itself) = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)).
    static func batchNormTrainBackward(
        dz: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
        normalized: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        rows m: Int, width w: Int
    ) {
        var sumDy = [Double](repeating: 0, count: w)
        var sumDyX = [Double](repeating: 0, count: w)
        for r in 0..<m {
            let (g, x) = (dy + r * w, normalized + r * w)
            for c in 0..<w {
                sumDy[c] += Double(g[c])
                sumDyX[c] += Double(g[c]) * Double(x[c])
            }
        }
        var a = [Float](repeating: 0, count: w)
        var meanDy = [Float](repeating: 0, count: w)
        var meanDyX = [Float](repeating: 0, count: w)
        for c in 0..<w {
            dweight[c] += Float(sumDyX[c])
            dbias[c] += Float(sumDy[c])
            a[c] = weight[c] * rstd[c]
            meanDy[c] = Float(sumDy[c] / Double(m))
            meanDyX[c] = Float(sumDyX[c] / Double(m))
        }
        for r in 0..<m {
            let (g, x, d) = (dy + r * w, normalized + r * w, dz + r * w)
            for c in 0..<w { d[c] = a[c] * (g[c] - meanDy[c] - x[c] * meanDyX[c]) }
        }
    }
}

extension ViTModel {
    /// The stem's forward pass: images (B, C, S, S) to the patch embeddings (B·N, D) at
    /// `acts.patchEmbed`. In training (`acts.training`) each BatchNorm normalises with the
    /// batch's statistics and moves the running ones (PyTorch's train mode); in inference it
    /// applies the running statistics (eval mode).
    func stemForward(images: UnsafePointer<Float>, acts: ViTActivations) {
        guard let plan = acts.stem, let stem = config.modelArgs.stem, let o = layout.offsets.stem
        else { preconditionFailure("stemForward without a stem") }
        let p = parameters.base
        let B = acts.batchSize
        let C = channels
        let S = acts.imageSize
        var input = UnsafePointer(images)
        for (i, l) in plan.layers.enumerated() {
            let strides =
                i == 0
                ? (b: C * S * S, c: S * S, y: S, x: 1)
                : (b: l.inputGrid * l.inputGrid * l.inChannels, c: 1, y: l.inputGrid * l.inChannels, x: l.inChannels)
            Kernels.unfoldWindows(
                out: acts.fwd(l.cols), inp: input, batch: B, channels: l.inChannels,
                inputGrid: l.inputGrid, outputGrid: l.grid, kernel: l.kernel, padding: l.padding,
                strides: strides)
            let last = i == plan.layers.count - 1
            let out = last ? acts.fwd(acts.patchEmbed) : acts.fwd(l.conv)
            linearForward(
                out, acts.fwd(l.cols), p + o.convWeight[i], last ? p + o.lastBias : nil,
                rows: l.rows, inFeatures: l.colsWidth, outFeatures: l.outChannels)
            if last { break }
            let (w, m) = (l.outChannels, l.rows)
            if acts.training {
                Kernels.batchNormTrainForward(
                    out: acts.fwd(l.bnOut), normalized: acts.fwd(l.normalized),
                    mean: acts.fwd(l.mean), rstd: acts.fwd(l.rstd), z: acts.fwd(l.conv),
                    weight: p + o.bnWeight[i], bias: p + o.bnBias[i],
                    runningMean: buffers.base + o.runningMean[i],
                    runningVar: buffers.base + o.runningVar[i], rows: m, width: w,
                    eps: stem.bnEps, momentum: stem.bnMomentum)
            } else {
                Kernels.batchNormEvalForward(
                    acts.fwd(l.conv), weight: p + o.bnWeight[i], bias: p + o.bnBias[i],
                    runningMean: buffers.base + o.runningMean[i],
                    runningVar: buffers.base + o.runningVar[i], rows: m, width: w, eps: stem.bnEps)
            }
            switch backend {
            case .naive:
                Kernels.geluForwardNaive(out: acts.fwd(l.act), inp: acts.fwd(l.bnOut), count: m * w)
            case .fast:
                Kernels.geluForward(out: acts.fwd(l.act), inp: acts.fwd(l.bnOut), count: m * w)
            }
            input = UnsafePointer(acts.fwd(l.act))
        }
    }

    /// The stem's backward pass from the patch embeddings' gradient (`acts.dpatchEmbed`):
    /// every stem parameter's gradient accumulated (no gradient for the images).
    func stemBackward(acts: ViTActivations) {
        guard let plan = acts.stem, let o = layout.offsets.stem else {
            preconditionFailure("stemBackward without a stem")
        }
        let p = parameters.base
        let gp = gradients.base
        let B = acts.batchSize
        var dout = acts.bwd(acts.dpatchEmbed)
        for i in plan.layers.indices.reversed() {
            let l = plan.layers[i]
            let last = i == plan.layers.count - 1
            linearBackward(
                i == 0 ? nil : acts.bwd(plan.dcols), gp + o.convWeight[i],
                last ? gp + o.lastBias : nil, dout, acts.fwd(l.cols), p + o.convWeight[i],
                rows: l.rows, inFeatures: l.colsWidth, outFeatures: l.outChannels, fresh: true)
            if i == 0 { break }
            // the gradient of layer i-1's GELU output, then through GELU and BatchNorm
            let prev = plan.layers[i - 1]
            let dact = acts.bwd(plan.dact)
            Kernels.foldWindows(
                dinp: dact, dcols: acts.bwd(plan.dcols), batch: B, channels: l.inChannels,
                inputGrid: l.inputGrid, outputGrid: l.grid, kernel: l.kernel, padding: l.padding)
            let count = prev.rows * prev.outChannels
            switch backend {
            case .naive:
                // dact ⊙ GELU'(bnOut), in place
                for j in 0..<count { dact[j] *= Kernels.geluDerivative(acts.fwd(prev.bnOut)[j]) }
            case .fast:
                Kernels.geluBackward(
                    dinp: dact, inp: acts.fwd(prev.bnOut), dout: dact, count: count,
                    accumulate: false)
            }
            Kernels.batchNormTrainBackward(
                dz: dact, dweight: gp + o.bnWeight[i - 1], dbias: gp + o.bnBias[i - 1], dy: dact,
                normalized: acts.fwd(prev.normalized), weight: p + o.bnWeight[i - 1],
                rstd: acts.fwd(prev.rstd), rows: prev.rows, width: prev.outChannels)
            dout = dact
        }
    }
}
