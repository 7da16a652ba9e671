import Foundation

/// SIMD math for the fast kernels: 16 floats at a time (AVX-512 registers, or two AVX2 ones).
enum SIMDMath {
    typealias V = SIMD16<Float>

    /// e^x for x in about [-87.3, 88.4] (inputs are clamped to it, so exp of a very negative
    /// number gives ~1e-38 instead of 0): Cephes' expf (range reduction by ln 2 in two parts,
    /// degree-5 polynomial), about 2 ulp.
    @inline(__always)
    static func exp(_ x: V) -> V {
        var x = x.replacing(with: 88.376_26, where: x .> 88.376_26)
        x = x.replacing(with: -87.336_54, where: x .< -87.336_54)
        // n = round(x / ln 2) via the 1.5·2^23 trick; its integer sits in the low mantissa bits
        let magic: Float = 12_582_912
        let t = x * 1.442_695_04 + magic
        let n = t - magic
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var y: V = V(repeating: 1.987_569_15e-4)
        y = y * r + 1.398_199_950_7e-3
        y = y * r + 8.333_451_907_3e-3
        y = y * r + 4.166_579_589_4e-2
        y = y * r + 1.666_666_545_9e-1
        y = y * r + 5.000_000_120_1e-1
        y = y * (r * r) + r + 1
        // bit casts, not SIMD16(truncatingIfNeeded:): that generic conversion may stay an
        // out-of-line per-lane loop where this is inlined into a large function
        let ni = unsafeBitCast(t, to: SIMD16<Int32>.self) &- Int32(bitPattern: magic.bitPattern)
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: V.self)
        return y * scale
    }

    /// erf(x) given e = exp(-x²): Abramowitz & Stegun 7.1.26 (the formula PyTorch's vectorised
    /// CPU erf uses), absolute error below 1.5e-7.
    @inline(__always)
    static func erf(_ x: V, expMinusXSquared e: V) -> V {
        let signBit = SIMD16<UInt32>(repeating: 0x8000_0000)
        let xbits = x.bitPattern(as: UInt32.self)
        let ax = V(bitPattern: xbits & ~signBit)
        let t = 1 / (1 + 0.327_591_1 * ax)
        var p = V(repeating: 1.061_405_429)
        p = p * t - 1.453_152_027
        p = p * t + 1.421_413_741
        p = p * t - 0.284_496_736
        p = p * t + 0.254_829_592
        p = p * t
        let r = 1 - p * e
        return V(bitPattern: r.bitPattern(as: UInt32.self) | (xbits & signBit))
    }

    /// log(1 + e) for e in [0, 1] (Cephes' logf kernel on a reduced argument chosen so that
    /// 1 + e is never rounded: e itself when e <= sqrt(2) - 1, else (e - 1) / 2 with one ln 2).
    @inline(__always)
    static func log1pUnit(_ e: V) -> V {
        let small = e .<= 0.414_213_56
        let x = V(repeating: 0).replacing(with: e, where: small)
            .replacing(with: (e - 1) * 0.5, where: .!small)
        let k = V(repeating: 1).replacing(with: 0, where: small)
        let z = x * x
        var y = V(repeating: 7.037_683_629_2e-2)
        y = y * x - 1.151_461_031_0e-1
        y = y * x + 1.167_699_874_0e-1
        y = y * x - 1.242_014_084_6e-1
        y = y * x + 1.424_932_278_7e-1
        y = y * x - 1.666_805_766_5e-1
        y = y * x + 2.000_071_476_5e-1
        y = y * x - 2.499_999_399_3e-1
        y = y * x + 3.333_333_117_4e-1
        y = y * x * z
        y = y - 2.121_944_40e-4 * k
        y = y - 0.5 * z
        return x + y + 0.693_359_375 * k
    }

    /// GELU, x · Φ(x) with the erf above.
    @inline(__always)
    static func gelu(_ x: V) -> V {
        let z = x * 0.707_106_781_186_547_5
        let e = exp(-(z * z))
        return 0.5 * x * (1 + erf(z, expMinusXSquared: e))
    }

    /// GELU's derivative Φ(x) + x φ(x).
    @inline(__always)
    static func geluDerivative(_ x: V) -> V {
        let z = x * 0.707_106_781_186_547_5
        let e = exp(-(z * z))
        let cdf = 0.5 * (1 + erf(z, expMinusXSquared: e))
        return cdf + x * (e * 0.398_942_280_401_432_7)
    }

    /// The sum of the 16 lanes, by halves (a tree of vector adds).
    @inline(__always)
    static func horizontalSum(_ v: V) -> Float {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    /// The first `count` (<= 16) floats at p, zeros after.
    @inline(__always)
    static func loadPartial(_ p: UnsafePointer<Float>, count: Int) -> V {
        var v = V()
        for i in 0..<count { v[i] = p[i] }
        return v
    }

    /// Writes the first `count` (<= 16) lanes of v to p.
    @inline(__always)
    static func storePartial(_ v: V, _ p: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { p[i] = v[i] }
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
}

extension SIMD16<Float> {
    @inline(__always)
    func bitPattern(as: UInt32.Type) -> SIMD16<UInt32> {
        unsafeBitCast(self, to: SIMD16<UInt32>.self)
    }

    @inline(__always)
    init(bitPattern: SIMD16<UInt32>) {
        self = unsafeBitCast(bitPattern, to: SIMD16<Float>.self)
    }
}

extension Kernels {

    // MARK: Linear on the engine's GEMM, split over the workers

    /// `linearForwardNaive` on `Gemm.multiply` with the bias added in the product's epilogue;
    /// `residual` (R, O), when given, is added too (the block's residual connection, saving a
    /// pass over the stream), then `activation` (fc1's GELU). `packedWeight`, when given, is
    /// the weight as `Gemm.pack(transB: true, ...)` left it (reused over several calls).
    public static func linearForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rows: Int, inFeatures: Int, outFeatures: Int, residual: UnsafePointer<Float>? = nil,
        activation: GemmActivation = .none, packedWeight: UnsafePointer<Float>? = nil
    ) {
        if rows == 0 || outFeatures == 0 { return }
        Gemm.multiply(
            transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, a: inp,
            lda: inFeatures, b: weight, ldb: inFeatures, c: out, ldc: outFeatures, bias: bias,
            residual: residual, ldr: outFeatures, activation: activation, packedB: packedWeight)
    }

    /// `linearBackwardNaive` on `Gemm.multiply`, split over the workers. With `accumulate` false
    /// the input gradient is overwritten instead of accumulated (saves zeroing it); parameter
    /// gradients always accumulate. `dinpActivation` applies to the input gradient in the
    /// product's epilogue (`.geluBackward`: the gradient of the GELU's input instead).
    public static func linearBackward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = true,
        dinpActivation: GemmActivation = .none
    ) {
        if rows == 0 { return }
        if let dinp {
            // dinp (R, I) (+)= dout (R, O) · weight (O, I)
            Gemm.multiply(
                transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
                a: dout, lda: outFeatures, b: weight, ldb: inFeatures, beta: accumulate ? 1 : 0,
                c: dinp, ldc: inFeatures, activation: dinpActivation)
        }
        // dweight (O, I) += dout^T · inp (R, I)
        Gemm.multiply(
            transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows, a: dout,
            lda: outFeatures, b: inp, ldb: inFeatures, beta: 1, c: dweight, ldc: inFeatures)
        if let dbias { columnSumsParallel(into: dbias, dout, rows: rows, columns: outFeatures) }
    }

    /// into (Cols) += Σ_rows m (R, Cols): SIMD over columns, the columns split over the
    /// workers in 16-wide slices.
    static func columnSumsParallel(
        into: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, rows: Int, columns: Int
    ) {
        let (pd, pm) = (SendablePointer(into), SendablePointer(m))
        let slices = (columns + 15) / 16
        Parallelism.forRanges(slices, costPerItem: rows * 16) { s0, s1 in
            var s = s0
            while s < s1 {
                let c0 = s * 16
                if c0 + 16 <= columns {
                    // four rows at a time: independent adds
                    var (a0, a1, a2, a3) = (SIMDMath.V(), SIMDMath.V(), SIMDMath.V(), SIMDMath.V())
                    var r = 0
                    while r + 4 <= rows {
                        let p = pm.p + r * columns + c0
                        a0 += SIMDMath.load(p)
                        a1 += SIMDMath.load(p + columns)
                        a2 += SIMDMath.load(p + 2 * columns)
                        a3 += SIMDMath.load(p + 3 * columns)
                        r += 4
                    }
                    while r < rows {
                        a0 += SIMDMath.load(pm.p + r * columns + c0)
                        r += 1
                    }
                    SIMDMath.store(SIMDMath.load(pd.p + c0) + ((a0 + a1) + (a2 + a3)), pd.p + c0)
                } else {
                    for c in c0..<columns {
                        var sum: Float = 0
                        for r in 0..<rows { sum += pm.p[r * columns + c] }
                        pd.p[c] += sum
                    }
                }
                s += 1
            }
        }
    }

    // MARK: LayerNorm, SIMD and split over rows

    /// `layerNormForwardNaive` with SIMD sums, rows split over the workers.
    public static func layerNormForward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, dim: Int, eps: Float = 1e-6
    ) {
        let (po, pm, ps, pi, pw, pb) = (
            SendablePointer(out), SendablePointer(mean), SendablePointer(rstd),
            SendablePointer(inp), SendablePointer(weight), SendablePointer(bias)
        )
        let vec = dim / 16 * 16
        Parallelism.forRanges(rows, costPerItem: dim * 4) { r0, r1 in
            for r in r0..<r1 {
                let x = pi.p + r * dim
                let y = po.p + r * dim
                var acc = SIMDMath.V()
                var i = 0
                while i < vec {
                    acc += SIMDMath.load(x + i)
                    i += 16
                }
                var sum = acc.sum()
                while i < dim {
                    sum += x[i]
                    i += 1
                }
                let m = sum / Float(dim)
                let mv = SIMDMath.V(repeating: m)
                acc = SIMDMath.V()
                i = 0
                while i < vec {
                    let d = SIMDMath.load(x + i) - mv
                    acc = acc.addingProduct(d, d)
                    i += 16
                }
                var v = acc.sum()
                while i < dim {
                    let d = x[i] - m
                    v += d * d
                    i += 1
                }
                let s = 1 / (v / Float(dim) + eps).squareRoot()
                let sv = SIMDMath.V(repeating: s)
                i = 0
                while i < vec {
                    let n = (SIMDMath.load(x + i) - mv) * sv
                    SIMDMath.store(n * SIMDMath.load(pw.p + i) + SIMDMath.load(pb.p + i), y + i)
                    i += 16
                }
                while i < dim {
                    y[i] = (x[i] - m) * s * pw.p[i] + pb.p[i]
                    i += 1
                }
                pm.p[r] = m
                ps.p[r] = s
            }
        }
    }

    /// `layerNormBackwardNaive` with SIMD sums: the input gradient split over rows, the weight
    /// and bias gradients over columns. `dinp` always accumulates (it is the residual stream).
    public static func layerNormBackward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, dim: Int
    ) {
        let (pdx, pdw, pdb, pdy) = (
            SendablePointer(dinp), SendablePointer(dweight), SendablePointer(dbias),
            SendablePointer(dout)
        )
        let (pi, pw, pm, ps) = (
            SendablePointer(inp), SendablePointer(weight), SendablePointer(mean),
            SendablePointer(rstd)
        )
        let vec = dim / 16 * 16
        Parallelism.forRanges(rows, costPerItem: dim * 6) { r0, r1 in
            for r in r0..<r1 {
                let x = pi.p + r * dim
                let dy = pdy.p + r * dim
                let dx = pdx.p + r * dim
                let m = pm.p[r]
                let s = ps.p[r]
                let (mv, sv) = (SIMDMath.V(repeating: m), SIMDMath.V(repeating: s))
                var ga = SIMDMath.V()
                var gna = SIMDMath.V()
                var i = 0
                while i < vec {
                    let n = (SIMDMath.load(x + i) - mv) * sv
                    let g = SIMDMath.load(dy + i) * SIMDMath.load(pw.p + i)
                    ga += g
                    gna = gna.addingProduct(g, n)
                    i += 16
                }
                var gMean = ga.sum()
                var gnMean = gna.sum()
                while i < dim {
                    let n = (x[i] - m) * s
                    let g = dy[i] * pw.p[i]
                    gMean += g
                    gnMean += g * n
                    i += 1
                }
                gMean /= Float(dim)
                gnMean /= Float(dim)
                let (gm, gnm) = (SIMDMath.V(repeating: gMean), SIMDMath.V(repeating: gnMean))
                i = 0
                while i < vec {
                    let n = (SIMDMath.load(x + i) - mv) * sv
                    let g = SIMDMath.load(dy + i) * SIMDMath.load(pw.p + i)
                    let d = SIMDMath.load(dx + i) + sv * (g - gm - n * gnm)
                    SIMDMath.store(d, dx + i)
                    i += 16
                }
                while i < dim {
                    let n = (x[i] - m) * s
                    let g = dy[i] * pw.p[i]
                    dx[i] += s * (g - gMean - n * gnMean)
                    i += 1
                }
            }
        }
        Parallelism.forRanges(dim, costPerItem: rows * 4) { c0, c1 in
            for r in 0..<rows {
                let x = pi.p + r * dim
                let dy = pdy.p + r * dim
                let m = pm.p[r]
                let s = ps.p[r]
                for c in c0..<c1 {
                    pdb.p[c] += dy[c]
                    pdw.p[c] += dy[c] * ((x[c] - m) * s)
                }
            }
        }
    }

    // MARK: GELU, SIMD and split

    /// `geluForwardNaive` with the SIMD exp and erf (absolute error about 1e-7), split over the
    /// workers in whole vectors; the last partial vector goes through the same SIMD code
    /// (zero-padded), so every element gets the value fc1's fused epilogue gives it.
    public static func geluForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int
    ) {
        let (po, pi) = (SendablePointer(out), SendablePointer(inp))
        let vectors = count / 16
        Parallelism.forRanges(vectors, costPerItem: 40 * 16) { v0, v1 in
            for v in v0..<v1 {
                SIMDMath.store(SIMDMath.gelu(SIMDMath.load(pi.p + 16 * v)), po.p + 16 * v)
            }
        }
        let tail = count - 16 * vectors
        if tail > 0 {
            let x = SIMDMath.loadPartial(inp + 16 * vectors, count: tail)
            SIMDMath.storePartial(SIMDMath.gelu(x), out + 16 * vectors, count: tail)
        }
    }

    /// `geluBackwardNaive` with the SIMD exp and erf (whole vectors per worker, a padded last
    /// one); with `accumulate` false `dinp` is overwritten.
    public static func geluBackward(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        count: Int, accumulate: Bool = true
    ) {
        let (pd, pi, pg) = (SendablePointer(dinp), SendablePointer(inp), SendablePointer(dout))
        let vectors = count / 16
        Parallelism.forRanges(vectors, costPerItem: 40 * 16) { v0, v1 in
            for v in v0..<v1 {
                // geluDerivative written out: the optimiser leaves the call out of line here
                let i = 16 * v
                let x = SIMDMath.load(pi.p + i)
                let z = x * 0.707_106_781_186_547_5
                let e = SIMDMath.exp(-(z * z))
                let cdf = 0.5 * (1 + SIMDMath.erf(z, expMinusXSquared: e))
                var d = SIMDMath.load(pg.p + i) * (cdf + x * (e * 0.398_942_280_401_432_7))
                if accumulate { d += SIMDMath.load(pd.p + i) }
                SIMDMath.store(d, pd.p + i)
            }
        }
        let tail = count - 16 * vectors
        if tail > 0 {
            let i = 16 * vectors
            var d =
                SIMDMath.loadPartial(dout + i, count: tail)
                * SIMDMath.geluDerivative(SIMDMath.loadPartial(inp + i, count: tail))
            if accumulate { d += SIMDMath.loadPartial(dinp + i, count: tail) }
            SIMDMath.storePartial(d, dinp + i, count: tail)
        }
    }

    /// dinp (R, C) = dout ⊙ GELU'(inp) (overwritten; dinp may be dout itself) and dbias (C) +=
    /// its column sums: fc1's backward in one pass, rows split over the workers, each summing
    /// its rows into its own slice of scratch.
    public static func geluBackwardWithBias(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, rows: Int, columns: Int
    ) {
        let C = columns
        let vec = C / 16 * 16
        let (pd, pi, pg) = (SendablePointer(dinp), SendablePointer(inp), SendablePointer(dout))
        let stride = (C + 15) / 16 * 16
        ScratchPool.shared.withBuffer(count: 64 * stride) { partials in
            let pp = SendablePointer(partials)
            let parts = Parallelism.forParts(rows, costPerItem: 40 * C) { part, r0, r1 in
                let sums = pp.p + part * stride
                sums.update(repeating: 0, count: stride)
                for r in r0..<r1 {
                    let (d, x, g) = (pd.p + r * C, pi.p + r * C, pg.p + r * C)
                    var j = 0
                    while j < vec {
                        let v = SIMDMath.load(g + j) * geluDerivativeInline(SIMDMath.load(x + j))
                        SIMDMath.store(v, d + j)
                        SIMDMath.store(SIMDMath.load(sums + j) + v, sums + j)
                        j += 16
                    }
                    if j < C {
                        let n = C - j
                        let v =
                            SIMDMath.loadPartial(g + j, count: n)
                            * geluDerivativeInline(SIMDMath.loadPartial(x + j, count: n))
                        SIMDMath.storePartial(v, d + j, count: n)
                        SIMDMath.store(SIMDMath.load(sums + j) + v, sums + j)
                    }
                }
            }
            for part in 0..<parts { addInPlace(dbias, partials + part * stride, count: C) }
        }
    }

    /// GELU's derivative, written out where the optimiser would leave `SIMDMath.geluDerivative`
    /// out of line.
    @inline(__always)
    static func geluDerivativeInline(_ x: SIMDMath.V) -> SIMDMath.V {
        let z = x * 0.707_106_781_186_547_5
        let e = SIMDMath.exp(-(z * z))
        let cdf = 0.5 * (1 + SIMDMath.erf(z, expMinusXSquared: e))
        return cdf + x * (e * 0.398_942_280_401_432_7)
    }

    /// y += x, split over the workers.
    public static func addInPlaceParallel(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int
    ) {
        let (py, px) = (SendablePointer(y), SendablePointer(x))
        Parallelism.forRanges(count, costPerItem: 2) { i0, i1 in
            addInPlace(py.p + i0, px.p + i0, count: i1 - i0)
        }
    }

    // MARK: attention, (batch, head) pairs split over the workers

    /// softmax of one row with the SIMD exp.
    @inline(__always)
    static func softmaxRowFast(_ row: UnsafeMutablePointer<Float>, count: Int) {
        let vec = count / 16 * 16
        var mv = SIMDMath.V(repeating: -.infinity)
        var i = 0
        while i < vec {
            mv = pointwiseMaxFast(mv, SIMDMath.load(row + i))
            i += 16
        }
        var maxv = mv.max()
        while i < count {
            maxv = max(maxv, row[i])
            i += 1
        }
        let m = SIMDMath.V(repeating: maxv)
        var acc = SIMDMath.V()
        i = 0
        while i < vec {
            let e = SIMDMath.exp(SIMDMath.load(row + i) - m)
            SIMDMath.store(e, row + i)
            acc += e
            i += 16
        }
        var sum = acc.sum()
        while i < count {
            let e = Foundation.exp(row[i] - maxv)
            row[i] = e
            sum += e
            i += 1
        }
        let inv = 1 / sum
        for j in 0..<count { row[j] *= inv }
    }

    @inline(__always)
    static func pointwiseMaxFast(_ a: SIMDMath.V, _ b: SIMDMath.V) -> SIMDMath.V {
        a.replacing(with: b, where: b .> a)
    }

    /// `attentionForwardNaive` with both products of each (batch, head) on `Gemm`'s serial
    /// product (strided views of qkv, no copies) and a SIMD softmax, pairs split over the
    /// workers; with `bf16`, both products at bf16 input precision (`attentionForwardBF16`).
    public static func attentionForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int, headDim: Int,
        bf16: Bool = false
    ) {
        if bf16 {
            attentionForwardBF16(
                out: out, att: att, qkv: qkv, batch: batch, tokens: tokens, heads: heads,
                headDim: headDim)
            return
        }
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        let (po, pa, pq) = (SendablePointer(out), SendablePointer(att), SendablePointer(qkv))
        Parallelism.forRanges(batch * heads, costPerItem: 4 * T * T * hd) { i0, i1 in
            ScratchPool.shared.withBuffer(count: Gemm.workspaceFloats) { ws in
                for item in i0..<i1 {
                    let (b, h) = (item / heads, item % heads)
                    let q = pq.p + b * T * 3 * A + h * hd
                    let p = pa.p + item * T * T
                    // S = scale · Q K^T (T, T), then softmax over keys, then O = P V
                    Gemm.multiplySerial(
                        transA: false, transB: true, m: T, n: T, k: hd, alpha: scale,
                        a: q, lda: 3 * A, b: q + A, ldb: 3 * A, c: p, ldc: T, workspace: ws)
                    for t in 0..<T { softmaxRowFast(p + t * T, count: T) }
                    Gemm.multiplySerial(
                        transA: false, transB: false, m: T, n: hd, k: T, a: p, lda: T,
                        b: q + 2 * A, ldb: 3 * A, c: po.p + b * T * A + h * hd, ldc: A,
                        workspace: ws)
                }
            }
        }
    }

    /// `attentionForward` with both products at bf16 input precision (`Gemm.productBF16`, for
    /// inference at `InferencePrecision.bf16`): per (batch, head), the keys and values rounded
    /// and packed once, the queries and the softmax rows rounded as they are read; the scores,
    /// the softmax and the output stay float.
    static func attentionForwardBF16(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, batch: Int, tokens T: Int, heads: Int, headDim hd: Int
    ) {
        let A = heads * hd
        let scale = 1 / Float(hd).squareRoot()
        let (po, pa, pq) = (SendablePointer(out), SendablePointer(att), SendablePointer(qkv))
        let keyBytes = (Gemm.bf16PackedBytes(k: hd, n: T) + 63) / 64 * 64
        let valueBytes = Gemm.bf16PackedBytes(k: T, n: hd)
        let scores = Gemm.Epilogue(
            alpha: scale, beta: 0, bias: nil, residual: nil, ldr: 0, activation: .none)
        let plain = Gemm.Epilogue(
            alpha: 1, beta: 0, bias: nil, residual: nil, ldr: 0, activation: .none)
        Parallelism.forRanges(batch * heads, costPerItem: 4 * T * T * hd) { i0, i1 in
            ScratchPool.shared.withBuffer(count: (keyBytes + valueBytes) / 4 + 16) { buffer in
                let (keyPack, valuePack) = (
                    UnsafeMutableRawPointer(buffer), UnsafeMutableRawPointer(buffer) + keyBytes
                )
                for item in i0..<i1 {
                    let (b, h) = (item / heads, item % heads)
                    let q = pq.p + b * T * 3 * A + h * hd
                    let p = pa.p + item * T * T
                    let keys = Gemm.packBF16(
                        into: keyPack, b: q + A, ldb: 3 * A, transB: true, k: hd, n: T)
                    Gemm.productBF16(
                        m: T, a: q, lda: 3 * A, weight: keys, c: p, ldc: T, epilogue: scores)
                    for t in 0..<T { softmaxRowFast(p + t * T, count: T) }
                    let values = Gemm.packBF16(
                        into: valuePack, b: q + 2 * A, ldb: 3 * A, transB: false, k: T, n: hd)
                    Gemm.productBF16(
                        m: T, a: p, lda: T, weight: values, c: po.p + b * T * A + h * hd,
                        ldc: A, epilogue: plain)
                }
            }
        }
    }

    /// `attentionBackwardNaive` with the four products of each (batch, head) on `Gemm`'s serial
    /// product, pairs split over the workers; with `accumulate` false `dqkv` is overwritten.
    public static func attentionBackward(
        dqkv: UnsafeMutablePointer<Float>, datt: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, heads: Int, headDim: Int, accumulate: Bool = true
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        let beta: Float = accumulate ? 1 : 0
        let (pdq, pds, pdo, pq, pa) = (
            SendablePointer(dqkv), SendablePointer(datt), SendablePointer(dout),
            SendablePointer(qkv), SendablePointer(att)
        )
        Parallelism.forRanges(batch * heads, costPerItem: 8 * T * T * hd) { i0, i1 in
            ScratchPool.shared.withBuffer(count: Gemm.workspaceFloats) { ws in
                for item in i0..<i1 {
                    let (b, h) = (item / heads, item % heads)
                    let q = pq.p + b * T * 3 * A + h * hd
                    let dq = pdq.p + b * T * 3 * A + h * hd
                    let p = pa.p + item * T * T
                    let dp = pds.p + item * T * T
                    let dO = pdo.p + b * T * A + h * hd
                    // dP = dO V^T; dV (+)= P^T dO
                    Gemm.multiplySerial(
                        transA: false, transB: true, m: T, n: T, k: hd, a: dO, lda: A,
                        b: q + 2 * A, ldb: 3 * A, c: dp, ldc: T, workspace: ws)
                    Gemm.multiplySerial(
                        transA: true, transB: false, m: T, n: hd, k: T, a: p, lda: T, b: dO,
                        ldb: A, beta: beta, c: dq + 2 * A, ldc: 3 * A, workspace: ws)
                    // dS = P ⊙ (dP - rowsum(P ⊙ dP))
                    for t in 0..<T { softmaxBackwardRow(dp + t * T, p + t * T, count: T) }
                    // dQ (+)= scale dS K; dK (+)= scale dS^T Q
                    Gemm.multiplySerial(
                        transA: false, transB: false, m: T, n: hd, k: T, alpha: scale, a: dp,
                        lda: T, b: q + A, ldb: 3 * A, beta: beta, c: dq, ldc: 3 * A,
                        workspace: ws)
                    Gemm.multiplySerial(
                        transA: true, transB: false, m: T, n: hd, k: T, alpha: scale, a: dp,
                        lda: T, b: q, ldb: 3 * A, beta: beta, c: dq + A, ldc: 3 * A,
                        workspace: ws)
                }
            }
        }
    }

    /// Attention of one query per image (the class token's) against all T keys: q (B, A),
    /// keys and values kv (B·T, 2A) (keys in columns 0..<A, values in A..<2A, heads side by
    /// side), out (B, A), att (B, NH, T) the softmax row per head. Equals row 0 of
    /// `attentionForwardNaive` on the full qkv.
    public static func classTokenAttentionForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        q: UnsafePointer<Float>, kv: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int,
        headDim: Int
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        let (po, pa, pq, pkv) = (
            SendablePointer(out), SendablePointer(att), SendablePointer(q), SendablePointer(kv)
        )
        Parallelism.forRanges(batch * heads, costPerItem: 4 * T * hd) { i0, i1 in
            ScratchPool.shared.withBuffer(count: Gemm.workspaceFloats) { ws in
                for item in i0..<i1 {
                    let (b, h) = (item / heads, item % heads)
                    let k = pkv.p + b * T * 2 * A + h * hd
                    let p = pa.p + item * T
                    // s = scale · q K^T (1, T), softmax, o = s V
                    Gemm.multiplySerial(
                        transA: false, transB: true, m: 1, n: T, k: hd, alpha: scale,
                        a: pq.p + b * A + h * hd, lda: A, b: k, ldb: 2 * A, c: p, ldc: T,
                        workspace: ws)
                    softmaxRowFast(p, count: T)
                    Gemm.multiplySerial(
                        transA: false, transB: false, m: 1, n: hd, k: T, a: p, lda: T,
                        b: k + A, ldb: 2 * A, c: po.p + b * A + h * hd, ldc: A, workspace: ws)
                }
            }
        }
    }

    /// The backward pass of `classTokenAttentionForward`: overwrites dq (B, A) and dkv
    /// (B·T, 2A) from dout (B, A); datt (B, NH, T) is scratch.
    public static func classTokenAttentionBackward(
        dq: UnsafeMutablePointer<Float>, dkv: UnsafeMutablePointer<Float>,
        datt: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, q: UnsafePointer<Float>,
        kv: UnsafePointer<Float>, att: UnsafePointer<Float>, batch: Int, tokens: Int,
        heads: Int, headDim: Int
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        let (pdq, pdkv, pds, pdo, pq, pkv, pa) = (
            SendablePointer(dq), SendablePointer(dkv), SendablePointer(datt),
            SendablePointer(dout), SendablePointer(q), SendablePointer(kv), SendablePointer(att)
        )
        Parallelism.forRanges(batch * heads, costPerItem: 8 * T * hd) { i0, i1 in
            ScratchPool.shared.withBuffer(count: Gemm.workspaceFloats) { ws in
                for item in i0..<i1 {
                    let (b, h) = (item / heads, item % heads)
                    let k = pkv.p + b * T * 2 * A + h * hd
                    let dk = pdkv.p + b * T * 2 * A + h * hd
                    let (qi, dqi, dO) = (
                        pq.p + b * A + h * hd, pdq.p + b * A + h * hd, pdo.p + b * A + h * hd
                    )
                    let (p, dp) = (pa.p + item * T, pds.p + item * T)
                    // dp = dO V^T (1, T); dV = p^T dO (T, hd)
                    Gemm.multiplySerial(
                        transA: false, transB: true, m: 1, n: T, k: hd, a: dO, lda: A, b: k + A,
                        ldb: 2 * A, c: dp, ldc: T, workspace: ws)
                    Gemm.multiplySerial(
                        transA: true, transB: false, m: T, n: hd, k: 1, a: p, lda: T, b: dO,
                        ldb: A, beta: 0, c: dk + A, ldc: 2 * A, workspace: ws)
                    softmaxBackwardRow(dp, p, count: T)
                    // dq = scale ds K (1, hd); dK = scale ds^T q (T, hd)
                    Gemm.multiplySerial(
                        transA: false, transB: false, m: 1, n: hd, k: T, alpha: scale, a: dp,
                        lda: T, b: k, ldb: 2 * A, beta: 0, c: dqi, ldc: A, workspace: ws)
                    Gemm.multiplySerial(
                        transA: true, transB: false, m: T, n: hd, k: 1, alpha: scale, a: dp,
                        lda: T, b: qi, ldb: A, beta: 0, c: dk, ldc: 2 * A, workspace: ws)
                }
            }
        }
    }

    /// drow = prow ⊙ (drow - Σ prow ⊙ drow): the softmax backward of one row, SIMD.
    @inline(__always)
    static func softmaxBackwardRow(
        _ drow: UnsafeMutablePointer<Float>, _ prow: UnsafePointer<Float>, count: Int
    ) {
        let vec = count / 16 * 16
        var acc = SIMDMath.V()
        var i = 0
        while i < vec {
            acc = acc.addingProduct(SIMDMath.load(prow + i), SIMDMath.load(drow + i))
            i += 16
        }
        var dot = acc.sum()
        while i < count {
            dot += prow[i] * drow[i]
            i += 1
        }
        let d = SIMDMath.V(repeating: dot)
        i = 0
        while i < vec {
            SIMDMath.store(SIMDMath.load(prow + i) * (SIMDMath.load(drow + i) - d), drow + i)
            i += 16
        }
        while i < count {
            drow[i] = prow[i] * (drow[i] - dot)
            i += 1
        }
    }

    // MARK: BCE with logits, SIMD and split

    /// `bceForwardNaive` with the SIMD exp and log1p, summed in double precision per lane and
    /// per worker.
    public static func bceForward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) -> Float {
        let count = batch * classes
        let (pz, py) = (SendablePointer(logits), SendablePointer(targets))
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: 64) { partial in
            let parts = Parallelism.forParts(count, costPerItem: 30) { part, i0, i1 in
                // lanes summed in double: a float sum of 16 huge terms could overflow
                var acc = SIMD8<Double>()
                var i = i0
                while i + 16 <= i1 {
                    let z = SIMDMath.load(pz.p + i)
                    let y = SIMDMath.load(py.p + i)
                    let az = V16(bitPattern: z.bitPattern(as: UInt32.self) & 0x7fff_ffff)
                    let e = SIMDMath.exp(-az)
                    let relu = V16(repeating: 0).replacing(with: z, where: z .> 0)
                    let l = relu - z * y + SIMDMath.log1pUnit(e)
                    acc += SIMD8<Double>(l.lowHalf) + SIMD8<Double>(l.highHalf)
                    i += 16
                }
                var total = acc.sum()
                if i < i1 {
                    total += Double(
                        bceForwardNaive(
                            logits: pz.p + i, targets: py.p + i, batch: 1, classes: i1 - i))
                }
                partial[part] = total
            }
            var sum: Double = 0
            for p in 0..<parts { sum += partial[p] }
            return Float(sum / Double(batch))
        }
    }

    /// `bceBackwardNaive` with the SIMD exp: dlogits += (sigmoid(z) - y) / B.
    public static func bceBackward(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) {
        let count = batch * classes
        let invB = 1 / Float(batch)
        let (pd, pz, py) = (
            SendablePointer(dlogits), SendablePointer(logits), SendablePointer(targets)
        )
        Parallelism.forRanges(count, costPerItem: 20) { i0, i1 in
            var i = i0
            while i + 16 <= i1 {
                let z = SIMDMath.load(pz.p + i)
                let az = V16(bitPattern: z.bitPattern(as: UInt32.self) & 0x7fff_ffff)
                let e = SIMDMath.exp(-az)
                let sPos = 1 / (1 + e)
                let s = (e * sPos).replacing(with: sPos, where: z .>= 0)
                let d = SIMDMath.load(pd.p + i) + (s - SIMDMath.load(py.p + i)) * invB
                SIMDMath.store(d, pd.p + i)
                i += 16
            }
            if i < i1 {
                // the tail in the naive kernel scales by its own "batch": undo that
                for j in i..<i1 {
                    let z = pz.p[j]
                    let s: Float
                    if z >= 0 {
                        s = 1 / (1 + Foundation.exp(-z))
                    } else {
                        let e = Foundation.exp(z)
                        s = e / (1 + e)
                    }
                    pd.p[j] += (s - py.p[j]) * invB
                }
            }
        }
    }

    // MARK: Softmax cross-entropy against soft targets, rows split

    /// `softmaxCrossEntropyForwardNaive` with the rows split over the workers: each row's
    /// maximum, then Σ exp(z - max) with the SIMD exp summed in double per lane; the rows' losses
    /// are added in row order, so the result does not depend on the thread count.
    public static func softmaxCrossEntropyForward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) -> Float {
        let (pz, pt) = (SendablePointer(logits), SendablePointer(targets))
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: batch) { rows in
            nonisolated(unsafe) let pr = rows.baseAddress!
            Parallelism.forRanges(batch, costPerItem: 30 * classes) { b0, b1 in
                for b in b0..<b1 {
                    let (z, t) = (pz.p + b * classes, pt.p + b * classes)
                    let (m, s) = rowMaxAndExpSum(z, classes: classes)
                    let lse = Double(m) + Foundation.log(s)
                    var zt: Double = 0
                    var mass: Double = 0
                    for c in 0..<classes {
                        zt += Double(t[c]) * Double(z[c])
                        mass += Double(t[c])
                    }
                    pr[b] = lse * mass - zt
                }
            }
            var sum: Double = 0
            for b in 0..<batch { sum += rows[b] }
            return Float(sum / Double(batch))
        }
    }

    /// `softmaxCrossEntropyBackwardNaive` with the rows split over the workers and the SIMD exp:
    /// dlogits += (softmax(z) · Σt - t) / B.
    public static func softmaxCrossEntropyBackward(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) {
        let (pd, pz, pt) = (SendablePointer(dlogits), SendablePointer(logits), SendablePointer(targets))
        Parallelism.forRanges(batch, costPerItem: 30 * classes) { b0, b1 in
            for b in b0..<b1 {
                let (z, t, d) = (pz.p + b * classes, pt.p + b * classes, pd.p + b * classes)
                let (m, s) = rowMaxAndExpSum(z, classes: classes)
                var mass: Double = 0
                for c in 0..<classes { mass += Double(t[c]) }
                let scale = Float(mass / s / Double(batch))
                let invB = 1 / Float(batch)
                var c = 0
                while c + 16 <= classes {
                    let e = SIMDMath.exp(SIMDMath.load(z + c) - m)
                    SIMDMath.store(SIMDMath.load(d + c) + e * scale - SIMDMath.load(t + c) * invB, d + c)
                    c += 16
                }
                while c < classes {
                    d[c] += Foundation.exp(z[c] - m) * scale - t[c] * invB
                    c += 1
                }
            }
        }
    }

    /// A row's maximum and Σ exp(z - max) (the SIMD exp, lanes summed in double).
    @inline(__always)
    static func rowMaxAndExpSum(_ z: UnsafePointer<Float>, classes: Int) -> (max: Float, sum: Double) {
        var m = -Float.infinity
        for c in 0..<classes { m = Swift.max(m, z[c]) }
        var acc = SIMD8<Double>()
        var c = 0
        while c + 16 <= classes {
            let e = SIMDMath.exp(SIMDMath.load(z + c) - m)
            acc += SIMD8<Double>(e.lowHalf) + SIMD8<Double>(e.highHalf)
            c += 16
        }
        var s = acc.sum()
        while c < classes {
            s += Foundation.exp(Double(z[c] - m))
            c += 1
        }
        return (m, s)
    }

    typealias V16 = SIMD16<Float>
}
