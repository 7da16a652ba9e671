import COpenBLAS
import Foundation

/// Which kernels the model runs. `naive` is the plain-loop reference every fast kernel is
/// tested against.
public enum ComputeBackend: Sendable, Equatable {
    /// Plain single-threaded loops (libm erf/exp): the tested reference.
    case naive
    /// The engine's own AVX-512/SIMD16 GEMM (`Gemm`) for every matrix product, with bias,
    /// residual and GELU fused into its epilogue where that pays; SIMD LayerNorm, GELU, softmax
    /// and BCE; the work split over `Parallelism.threads` workers.
    case fast
}

/// The layer kernels as forward/backward function pairs (llm.c style): outputs first, then
/// inputs, then sizes; backward functions ACCUMULATE into every gradient they produce (input
/// and parameter gradients alike), so callers zero gradient buffers first. Shapes are in the
/// comments as (rows, columns) in C order; B batch, T tokens, C channels, D model width.
public enum Kernels {

    // MARK: Linear (y = x W^T + b, PyTorch layout W = (out, in))

    /// out (R, O) = inp (R, I) · weight (O, I)^T + bias (O). Plain loops.
    public static func linearForwardNaive(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rows: Int, inFeatures: Int, outFeatures: Int
    ) {
        for r in 0..<rows {
            let x = inp + r * inFeatures
            let y = out + r * outFeatures
            for o in 0..<outFeatures {
                let w = weight + o * inFeatures
                var sum: Float = bias?[o] ?? 0
                for i in 0..<inFeatures { sum += x[i] * w[i] }
                y[o] = sum
            }
        }
    }

    /// dinp (R, I) += dout · weight; dweight (O, I) += dout^T · inp; dbias (O) += Σ_rows dout.
    /// Plain loops; `dinp` nil skips the input gradient (first layer).
    public static func linearBackwardNaive(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows: Int, inFeatures: Int, outFeatures: Int
    ) {
        if let dinp {
            for r in 0..<rows {
                let dx = dinp + r * inFeatures
                let dy = dout + r * outFeatures
                for i in 0..<inFeatures {
                    var sum: Float = 0
                    for o in 0..<outFeatures { sum += dy[o] * weight[o * inFeatures + i] }
                    dx[i] += sum
                }
            }
        }
        for o in 0..<outFeatures {
            let dw = dweight + o * inFeatures
            for i in 0..<inFeatures {
                var sum: Float = 0
                for r in 0..<rows { sum += dout[r * outFeatures + o] * inp[r * inFeatures + i] }
                dw[i] += sum
            }
            if let dbias {
                var sum: Float = 0
                for r in 0..<rows { sum += dout[r * outFeatures + o] }
                dbias[o] += sum
            }
        }
    }

    /// into (Cols) += Σ_rows m (R, Cols).
    static func columnSums(
        into: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, rows: Int, columns: Int
    ) {
        for r in 0..<rows {
            let row = m + r * columns
            for c in 0..<columns { into[c] += row[c] }
        }
    }

    /// Row-major C (M, N) = alpha · op(A) · op(B) + beta · C through OpenBLAS (no longer on the
    /// model's path, which uses `Gemm`; kept as a second reference in the tests).
    @inline(__always)
    static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c,
            Int32(ldc))
    }

    /// The naive matrix product the BLAS path is tested against: C (M, N) = alpha · op(A) ·
    /// op(B) + beta · C, row-major with leading dimensions, as `cblas_sgemm`.
    public static func sgemmNaive(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Float = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += av * bv
                }
                let old = beta == 0 ? 0 : beta * c[i * ldc + j]
                c[i * ldc + j] = alpha * sum + old
            }
        }
    }

    /// `sgemmNaive` or `Gemm.multiply`, by backend.
    @inline(__always)
    static func gemm(
        _ backend: ComputeBackend, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        switch backend {
        case .naive:
            sgemmNaive(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        case .fast:
            Gemm.multiply(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    // MARK: LayerNorm over the last axis (biased variance)

    /// out (R, D) = (inp - mean) * rstd * weight + bias, saving mean (R) and rstd (R) =
    /// 1 / sqrt(var + eps) for the backward pass. Two-pass mean and variance.
    public static func layerNormForwardNaive(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, dim: Int, eps: Float = 1e-6
    ) {
        for r in 0..<rows {
            let x = inp + r * dim
            let y = out + r * dim
            var sum: Float = 0
            for i in 0..<dim { sum += x[i] }
            let m = sum / Float(dim)
            var v: Float = 0
            for i in 0..<dim {
                let d = x[i] - m
                v += d * d
            }
            let s = 1 / (v / Float(dim) + eps).squareRoot()
            for i in 0..<dim { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// dinp (R, D) += rstd · (g - mean(g) - n · mean(g · n)) with n the normalised input and
    /// g = dout · weight; dweight += Σ_rows dout · n; dbias += Σ_rows dout.
    public static func layerNormBackwardNaive(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, dim: Int
    ) {
        for r in 0..<rows {
            let x = inp + r * dim
            let dy = dout + r * dim
            let dx = dinp + r * dim
            let m = mean[r]
            let s = rstd[r]
            var gMean: Float = 0
            var gnMean: Float = 0
            for i in 0..<dim {
                let n = (x[i] - m) * s
                let g = dy[i] * weight[i]
                gMean += g
                gnMean += g * n
            }
            gMean /= Float(dim)
            gnMean /= Float(dim)
            for i in 0..<dim {
                let n = (x[i] - m) * s
                let g = dy[i] * weight[i]
                dbias[i] += dy[i]
                dweight[i] += dy[i] * n
                dx[i] += s * (g - gMean - n * gnMean)
            }
        }
    }

    // MARK: GELU, exact erf form

    /// out = x · Φ(x) = 0.5 x (1 + erf(x / √2)).
    public static func geluForwardNaive(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        count: Int
    ) {
        for i in 0..<count {
            let x = inp[i]
            out[i] = 0.5 * x * (1 + erf(x * Float(0.5).squareRoot()))
        }
    }

    /// GELU of one float, x · Φ(x) (libm erf).
    @inline(__always)
    static func gelu(_ x: Float) -> Float {
        0.5 * x * (1 + erf(x * Float(0.5).squareRoot()))
    }

    /// GELU's derivative at one float, Φ(x) + x φ(x) (libm erf and exp).
    @inline(__always)
    static func geluDerivative(_ x: Float) -> Float {
        let cdf = 0.5 * (1 + erf(x * Float(0.5).squareRoot()))
        return cdf + x * 0.398_942_280_401_432_7 * exp(-0.5 * x * x)
    }

    /// dinp += dout · (Φ(x) + x φ(x)), φ the standard normal density.
    public static func geluBackwardNaive(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        count: Int
    ) {
        let invSqrt2Pi: Float = 0.398_942_280_401_432_7
        for i in 0..<count {
            let x = inp[i]
            let cdf = 0.5 * (1 + erf(x * Float(0.5).squareRoot()))
            let pdf = invSqrt2Pi * exp(-0.5 * x * x)
            dinp[i] += dout[i] * (cdf + x * pdf)
        }
    }

    // MARK: Residual

    /// y += x over `count` floats (the residual connection; its backward is the same add).
    public static func addInPlace(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
        count: Int
    ) {
        for i in 0..<count { y[i] += x[i] }
    }

    // MARK: Multi-head self-attention (no mask)

    /// Per batch b and head h, with q, k, v the head's columns of qkv (B, T, 3A) = [q | k | v]
    /// (head h at columns h·hd ..< (h+1)·hd of each block): att (B, NH, T, T) = softmax(q k^T ·
    /// hd^-0.5) over keys, out (B, T, A) columns of head h = att · v. Plain loops.
    public static func attentionForwardNaive(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int, headDim: Int
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        for b in 0..<batch {
            for h in 0..<heads {
                let base = qkv + b * T * 3 * A + h * hd
                let p = att + (b * heads + h) * T * T
                for t in 0..<T {
                    let q = base + t * 3 * A
                    let row = p + t * T
                    var maxv = -Float.infinity
                    for s in 0..<T {
                        let k = base + s * 3 * A + A
                        var dot: Float = 0
                        for i in 0..<hd { dot += q[i] * k[i] }
                        row[s] = dot * scale
                        maxv = max(maxv, row[s])
                    }
                    softmaxRow(row, count: T, max: maxv)
                    let o = out + (b * T + t) * A + h * hd
                    for i in 0..<hd {
                        var sum: Float = 0
                        for s in 0..<T { sum += row[s] * base[s * 3 * A + 2 * A + i] }
                        o[i] = sum
                    }
                }
            }
        }
    }

    /// row = softmax(row) given its maximum.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, max maxv: Float) {
        var sum: Float = 0
        for s in 0..<count {
            let e = exp(row[s] - maxv)
            row[s] = e
            sum += e
        }
        let inv = 1 / sum
        for s in 0..<count { row[s] *= inv }
    }

    /// Backward of `attentionForwardNaive`: dqkv (B, T, 3A) += the q, k and v gradients;
    /// datt (B, NH, T, T) is scratch (overwritten). Plain loops.
    public static func attentionBackwardNaive(
        dqkv: UnsafeMutablePointer<Float>, datt: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, heads: Int, headDim: Int
    ) {
        let (T, hd, A) = (tokens, headDim, heads * headDim)
        let scale = 1 / Float(hd).squareRoot()
        for b in 0..<batch {
            for h in 0..<heads {
                let base = qkv + b * T * 3 * A + h * hd
                let dbase = dqkv + b * T * 3 * A + h * hd
                let p = att + (b * heads + h) * T * T
                let dp = datt + (b * heads + h) * T * T
                for t in 0..<T {
                    let dO = dout + (b * T + t) * A + h * hd
                    let prow = p + t * T
                    let drow = dp + t * T
                    // dv[s] += p[t,s] dO[t]; dp[t,s] = dO[t] · v[s]
                    var rowDot: Float = 0
                    for s in 0..<T {
                        let v = base + s * 3 * A + 2 * A
                        let dv = dbase + s * 3 * A + 2 * A
                        var dot: Float = 0
                        for i in 0..<hd {
                            dv[i] += prow[s] * dO[i]
                            dot += dO[i] * v[i]
                        }
                        drow[s] = dot
                        rowDot += dot * prow[s]
                    }
                    // softmax backward, then the scaled dot product
                    let dq = dbase + t * 3 * A
                    let q = base + t * 3 * A
                    for s in 0..<T {
                        let ds = prow[s] * (drow[s] - rowDot) * scale
                        drow[s] = ds
                        let k = base + s * 3 * A + A
                        let dk = dbase + s * 3 * A + A
                        for i in 0..<hd {
                            dq[i] += ds * k[i]
                            dk[i] += ds * q[i]
                        }
                    }
                }
            }
        }
    }

    // MARK: Softmax cross-entropy against soft targets (fine-tuning on class labels)

    /// Σ over rows of Σ_c t_c · (logsumexp(z) - z_c), divided by the batch size: cross-entropy
    /// of the softmax against target rows of probabilities (timm's `SoftTargetCrossEntropy`; a
    /// one-hot row is `nn.CrossEntropyLoss`, a row `(1 - ε)·one-hot + ε / V` timm's
    /// `LabelSmoothingCrossEntropy(ε)`, a mixed row mixup's or cutmix's target). The row
    /// maximum is subtracted before the exponentials; summed in double precision.
    public static func softmaxCrossEntropyForwardNaive(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) -> Float {
        var sum: Double = 0
        for b in 0..<batch {
            sum += softmaxCrossEntropyRow(logits + b * classes, targets + b * classes, classes: classes)
        }
        return Float(sum / Double(batch))
    }

    /// One row's Σ_c t_c · (logsumexp(z) - z_c), in double precision.
    static func softmaxCrossEntropyRow(_ z: UnsafePointer<Float>, _ t: UnsafePointer<Float>, classes: Int) -> Double {
        var m = -Double.infinity
        for c in 0..<classes { m = max(m, Double(z[c])) }
        var s: Double = 0
        for c in 0..<classes { s += Foundation.exp(Double(z[c]) - m) }
        let lse = m + Foundation.log(s)
        var row: Double = 0
        for c in 0..<classes { row += Double(t[c]) * (lse - Double(z[c])) }
        return row
    }

    /// dlogits (B, V) += (softmax(z) · Σ_c t_c - t) / B: the gradient of
    /// `softmaxCrossEntropyForwardNaive` (softmax(z) - t when the targets sum to 1).
    public static func softmaxCrossEntropyBackwardNaive(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) {
        let invB = 1 / Double(batch)
        for b in 0..<batch {
            let (z, t, d) = (logits + b * classes, targets + b * classes, dlogits + b * classes)
            var m = -Double.infinity
            for c in 0..<classes { m = max(m, Double(z[c])) }
            var s: Double = 0
            var mass: Double = 0
            for c in 0..<classes {
                s += Foundation.exp(Double(z[c]) - m)
                mass += Double(t[c])
            }
            for c in 0..<classes {
                let p = Foundation.exp(Double(z[c]) - m) / s
                d[c] += Float((p * mass - Double(t[c])) * invB)
            }
        }
    }

    // MARK: Binary cross-entropy with logits, CatLIP's "batch_mean"

    /// Σ over all elements of max(z, 0) - z·y + log1p(exp(-|z|)), divided by the batch size
    /// (summed over classes, averaged over the batch). Stable for any finite logit; summed in
    /// double precision.
    public static func bceForwardNaive(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) -> Float {
        var sum: Double = 0
        for i in 0..<(batch * classes) {
            let z = Double(logits[i])
            let y = Double(targets[i])
            sum += max(z, 0) - z * y + log1p(exp(-abs(z)))
        }
        return Float(sum / Double(batch))
    }

    /// dlogits (B, V) += (sigmoid(z) - y) / B, with a sigmoid that never overflows.
    public static func bceBackwardNaive(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Float>, batch: Int, classes: Int
    ) {
        let invB = 1 / Float(batch)
        for i in 0..<(batch * classes) {
            let z = logits[i]
            let s: Float
            if z >= 0 {
                s = 1 / (1 + exp(-z))
            } else {
                let e = exp(z)
                s = e / (1 + e)
            }
            dlogits[i] += (s - targets[i]) * invB
        }
    }

    // MARK: Patch embedding, tokens, pooling

    /// out (B, N, C·P·P) = the non-overlapping P×P patches of images (B, C, S, S), patches in
    /// row-major grid order, each flattened as (c, y, x): the conv-as-GEMM unfold, so that
    /// patch_embed.proj.weight (D, C, P, P) is a (D, C·P·P) Linear weight. Pixels beyond the
    /// last whole patch are ignored (as PyTorch's strided conv does).
    public static func unfoldPatches(
        out: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>,
        batch: Int, channels: Int, imageSize: Int, patchSize: Int
    ) {
        let (S, P, C) = (imageSize, patchSize, channels)
        let G = S / P
        let patchDim = C * P * P
        for b in 0..<batch {
            for gy in 0..<G {
                for gx in 0..<G {
                    let row = out + (b * G * G + gy * G + gx) * patchDim
                    for c in 0..<C {
                        let plane = images + (b * C + c) * S * S
                        for py in 0..<P {
                            let src = plane + (gy * P + py) * S + gx * P
                            (row + (c * P + py) * P).update(from: src, count: P)
                        }
                    }
                }
            }
        }
    }

    /// out (B, T, D): token 0 = cls + pos[0] when there is a class token, then the patch
    /// embeddings patches (B, N, D) + pos[prefix + n]; pos (T, D) covers the class token.
    public static func embedForward(
        out: UnsafeMutablePointer<Float>, patches: UnsafePointer<Float>,
        clsToken: UnsafePointer<Float>?, posEmbed: UnsafePointer<Float>,
        batch: Int, numPatches: Int, dim: Int, classPosition: Bool = true
    ) {
        let prefix = clsToken == nil ? 0 : 1
        let T = numPatches + prefix
        // pos_embed's rows start with the class token's unless it gets none (no_embed_class)
        let posPrefix = classPosition ? prefix : 0
        for b in 0..<batch {
            let x = out + b * T * dim
            if let clsToken {
                for i in 0..<dim { x[i] = clsToken[i] + (classPosition ? posEmbed[i] : 0) }
            }
            for n in 0..<numPatches {
                let y = x + (prefix + n) * dim
                let e = patches + (b * numPatches + n) * dim
                let p = posEmbed + (posPrefix + n) * dim
                for i in 0..<dim { y[i] = e[i] + p[i] }
            }
        }
    }

    /// Backward of `embedForward`: dpatches (B, N, D) += dout's patch rows; dclsToken (D) and
    /// dposEmbed (T, D; (N, D) without `classPosition`) += their sums over the batch.
    public static func embedBackward(
        dpatches: UnsafeMutablePointer<Float>, dclsToken: UnsafeMutablePointer<Float>?,
        dposEmbed: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        batch: Int, numPatches: Int, dim: Int, classPosition: Bool = true
    ) {
        let prefix = dclsToken == nil ? 0 : 1
        let T = numPatches + prefix
        let skip = classPosition ? 0 : prefix
        for b in 0..<batch {
            let dx = dout + b * T * dim
            addInPlace(dposEmbed, dx + skip * dim, count: (T - skip) * dim)
            if let dclsToken { addInPlace(dclsToken, dx, count: dim) }
            addInPlace(dpatches + b * numPatches * dim, dx + prefix * dim, count: numPatches * dim)
        }
    }

    /// out (B, D) = the class token row of inp (B, T, D) (`avg` false), or the mean of the rows
    /// from `prefix` on (`avg` true: patch tokens only).
    public static func poolForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, avg: Bool, prefix: Int,
        batch: Int, tokens: Int, dim: Int
    ) {
        for b in 0..<batch {
            let y = out + b * dim
            let x = inp + b * tokens * dim
            if !avg {
                y.update(from: x, count: dim)
                continue
            }
            y.update(repeating: 0, count: dim)
            for t in prefix..<tokens { addInPlace(y, x + t * dim, count: dim) }
            let inv = 1 / Float(tokens - prefix)
            for i in 0..<dim { y[i] *= inv }
        }
    }

    /// Backward of `poolForward`: dinp (B, T, D) += dout routed to the class token row, or
    /// spread evenly over the patch rows.
    public static func poolBackward(
        dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, avg: Bool, prefix: Int,
        batch: Int, tokens: Int, dim: Int
    ) {
        for b in 0..<batch {
            let dy = dout + b * dim
            let dx = dinp + b * tokens * dim
            if !avg {
                addInPlace(dx, dy, count: dim)
                continue
            }
            let inv = 1 / Float(tokens - prefix)
            for t in prefix..<tokens {
                let row = dx + t * dim
                for i in 0..<dim { row[i] += dy[i] * inv }
            }
        }
    }
}
