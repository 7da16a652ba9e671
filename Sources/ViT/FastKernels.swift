import COpenBLAS
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
        let ni =
            SIMD16<Int32>(truncatingIfNeeded: t.bitPattern(as: UInt32.self))
            &- Int32(bitPattern: magic.bitPattern)
        let scale = V(bitPattern: SIMD16<UInt32>(truncatingIfNeeded: (ni &+ 127) &<< 23))
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

    // MARK: Linear on OpenBLAS, split over the workers

    /// `linearForwardNaive` on `cblas_sgemm`: each worker fills its block of rows (or of output
    /// columns, for a wide head) with the bias and multiplies into it.
    public static func linearForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rows: Int, inFeatures: Int, outFeatures: Int
    ) {
        if rows == 0 || outFeatures == 0 { return }
        let (po, pi, pw) = (SendablePointer(out), SendablePointer(inp), SendablePointer(weight))
        let pb = bias.map { SendablePointer($0) }
        let beta: Float = bias == nil ? 0 : 1
        if rows >= outFeatures {
            Parallelism.forRanges(rows, costPerItem: inFeatures * outFeatures) { r0, r1 in
                if let pb {
                    for r in r0..<r1 {
                        (po.p + r * outFeatures).update(from: pb.p, count: outFeatures)
                    }
                }
                sgemm(
                    transA: false, transB: true, m: r1 - r0, n: outFeatures, k: inFeatures,
                    alpha: 1, a: pi.p + r0 * inFeatures, lda: inFeatures, b: pw.p,
                    ldb: inFeatures, beta: beta, c: po.p + r0 * outFeatures, ldc: outFeatures)
            }
        } else {
            Parallelism.forRanges(outFeatures, costPerItem: inFeatures * rows) { o0, o1 in
                if let pb {
                    for r in 0..<rows {
                        (po.p + r * outFeatures + o0).update(from: pb.p + o0, count: o1 - o0)
                    }
                }
                sgemm(
                    transA: false, transB: true, m: rows, n: o1 - o0, k: inFeatures, alpha: 1,
                    a: pi.p, lda: inFeatures, b: pw.p + o0 * inFeatures, ldb: inFeatures,
                    beta: beta, c: po.p + o0, ldc: outFeatures)
            }
        }
    }

    /// `linearBackwardNaive` on `cblas_sgemm`, split over the workers. With `accumulate` false
    /// the input gradient is overwritten instead of accumulated (saves zeroing it); parameter
    /// gradients always accumulate.
    public static func linearBackward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = true
    ) {
        if rows == 0 { return }
        if let dinp {
            parallelSgemm(
                transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures, alpha: 1,
                a: dout, lda: outFeatures, b: weight, ldb: inFeatures, beta: accumulate ? 1 : 0,
                c: dinp, ldc: inFeatures)
        }
        parallelSgemm(
            transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows, alpha: 1,
            a: dout, lda: outFeatures, b: inp, ldb: inFeatures, beta: 1,
            c: dweight, ldc: inFeatures)
        if let dbias {
            let (pd, pg) = (SendablePointer(dbias), SendablePointer(dout))
            Parallelism.forRanges(outFeatures, costPerItem: rows) { c0, c1 in
                for r in 0..<rows {
                    let row = pg.p + r * outFeatures
                    for c in c0..<c1 { pd.p[c] += row[c] }
                }
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

    /// `geluForwardNaive` with the SIMD exp and erf (absolute error about 1e-7).
    public static func geluForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int
    ) {
        let (po, pi) = (SendablePointer(out), SendablePointer(inp))
        Parallelism.forRanges(count, costPerItem: 40) { i0, i1 in
            var i = i0
            while i + 16 <= i1 {
                let x = SIMDMath.load(pi.p + i)
                let z = x * 0.707_106_781_186_547_5
                let e = SIMDMath.exp(-(z * z))
                let erf = SIMDMath.erf(z, expMinusXSquared: e)
                SIMDMath.store(0.5 * x * (1 + erf), po.p + i)
                i += 16
            }
            if i < i1 { geluForwardNaive(out: po.p + i, inp: pi.p + i, count: i1 - i) }
        }
    }

    /// `geluBackwardNaive` with the SIMD exp and erf; with `accumulate` false `dinp` is
    /// overwritten.
    public static func geluBackward(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        count: Int, accumulate: Bool = true
    ) {
        let (pd, pi, pg) = (SendablePointer(dinp), SendablePointer(inp), SendablePointer(dout))
        Parallelism.forRanges(count, costPerItem: 40) { i0, i1 in
            var i = i0
            while i + 16 <= i1 {
                let x = SIMDMath.load(pi.p + i)
                let z = x * 0.707_106_781_186_547_5
                let e = SIMDMath.exp(-(z * z))
                let cdf = 0.5 * (1 + SIMDMath.erf(z, expMinusXSquared: e))
                let pdf = e * 0.398_942_280_401_432_7
                var d = SIMDMath.load(pg.p + i) * (cdf + x * pdf)
                if accumulate { d += SIMDMath.load(pd.p + i) }
                SIMDMath.store(d, pd.p + i)
                i += 16
            }
            if i < i1 {
                if !accumulate { (pd.p + i).update(repeating: 0, count: i1 - i) }
                geluBackwardNaive(dinp: pd.p + i, inp: pi.p + i, dout: pg.p + i, count: i1 - i)
            }
        }
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

    /// `attentionForwardNaive` with both products of each (batch, head) on single-threaded
    /// `cblas_sgemm` (strided views of qkv, no copies) and a SIMD softmax, pairs split over the
    /// workers.
    public static func attentionForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int, headDim: Int
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        let (po, pa, pq) = (SendablePointer(out), SendablePointer(att), SendablePointer(qkv))
        Parallelism.forRanges(batch * heads, costPerItem: 4 * T * T * hd) { i0, i1 in
            for item in i0..<i1 {
                let (b, h) = (item / heads, item % heads)
                let q = pq.p + b * T * 3 * A + h * hd
                let p = pa.p + item * T * T
                sgemm(
                    transA: false, transB: true, m: T, n: T, k: hd, alpha: scale,
                    a: q, lda: 3 * A, b: q + A, ldb: 3 * A, beta: 0, c: p, ldc: T)
                for t in 0..<T { softmaxRowFast(p + t * T, count: T) }
                sgemm(
                    transA: false, transB: false, m: T, n: hd, k: T, alpha: 1,
                    a: p, lda: T, b: q + 2 * A, ldb: 3 * A, beta: 0,
                    c: po.p + b * T * A + h * hd, ldc: A)
            }
        }
    }

    /// `attentionBackwardNaive` with the four products of each (batch, head) on single-threaded
    /// `cblas_sgemm`, pairs split over the workers; with `accumulate` false `dqkv` is
    /// overwritten.
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
            for item in i0..<i1 {
                let (b, h) = (item / heads, item % heads)
                let q = pq.p + b * T * 3 * A + h * hd
                let dq = pdq.p + b * T * 3 * A + h * hd
                let p = pa.p + item * T * T
                let dp = pds.p + item * T * T
                let dO = pdo.p + b * T * A + h * hd
                // dP = dO V^T; dV (+)= P^T dO
                sgemm(
                    transA: false, transB: true, m: T, n: T, k: hd, alpha: 1,
                    a: dO, lda: A, b: q + 2 * A, ldb: 3 * A, beta: 0, c: dp, ldc: T)
                sgemm(
                    transA: true, transB: false, m: T, n: hd, k: T, alpha: 1,
                    a: p, lda: T, b: dO, ldb: A, beta: beta, c: dq + 2 * A, ldc: 3 * A)
                // dS = P ⊙ (dP - rowsum(P ⊙ dP))
                for t in 0..<T {
                    let prow = p + t * T
                    let drow = dp + t * T
                    var rowDot: Float = 0
                    for s in 0..<T { rowDot += prow[s] * drow[s] }
                    for s in 0..<T { drow[s] = prow[s] * (drow[s] - rowDot) }
                }
                // dQ (+)= scale dS K; dK (+)= scale dS^T Q
                sgemm(
                    transA: false, transB: false, m: T, n: hd, k: T, alpha: scale,
                    a: dp, lda: T, b: q + A, ldb: 3 * A, beta: beta, c: dq, ldc: 3 * A)
                sgemm(
                    transA: true, transB: false, m: T, n: hd, k: T, alpha: scale,
                    a: dp, lda: T, b: q, ldb: 3 * A, beta: beta, c: dq + A, ldc: 3 * A)
            }
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

    typealias V16 = SIMD16<Float>
}
