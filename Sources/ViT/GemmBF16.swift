import CViTSupport

// Products with bf16 inputs and float sums, for inference at `InferencePrecision.bf16`: A (the
// activations) and B (a weight, packed once, or attention's keys and values) are rounded to
// bf16 (8 significant bits), the products are summed in float by AVX512_BF16's VDPBF16PS,
// which does twice the multiply-adds per cycle of a float FMA on Zen 4, and the result goes
// through the same epilogue as `Gemm`'s float products (bias, residual, GELU). The kernels are
// C (CViTSupport), compiled for that extension and used only where the processor has it.

/// A weight (out, in) rounded to bf16 and packed for `Gemm.multiplyBF16`.
public struct BF16PackedWeight: @unchecked Sendable {
    /// The packed panels (`Gemm.bf16PackedBytes(k: inFeatures, n: outFeatures)` bytes).
    let pointer: UnsafeRawPointer
    /// Input features (the product's k).
    let inFeatures: Int
    /// Output features (the product's n).
    let outFeatures: Int
}

extension Gemm {
    /// Whether this processor runs bf16 products (AVX512_BF16).
    public static var bf16Supported: Bool { catlip_bf16_supported() != 0 }

    /// Bytes of a packed bf16 weight with k inputs and n outputs: ceil(n / 32) panels of
    /// ceil(k / 2) pairs of 32 columns.
    public static func bf16PackedBytes(k: Int, n: Int) -> Int { (n + 31) / 32 * ((k + 1) / 2) * 64 * 2 }

    /// Packs `weight` (n, k) row-major, as a linear layer stores it, into `dst`
    /// (`bf16PackedBytes(k:n:)` bytes, 64-byte aligned) for `multiplyBF16`. Requires
    /// `bf16Supported`.
    static func packBF16(
        into dst: UnsafeMutableRawPointer, weight: UnsafePointer<Float>, k: Int, n: Int
    ) -> BF16PackedWeight {
        packBF16(into: dst, b: weight, ldb: k, transB: true, k: k, n: n)
    }

    /// Packs op(B) (k, n) into `dst` (`bf16PackedBytes(k:n:)` bytes) for `productBF16`: B^T
    /// for B (n, k) with `transB` (a weight, or attention's keys), else B (k, n) (attention's
    /// values); row stride ldb. Requires `bf16Supported`.
    static func packBF16(
        into dst: UnsafeMutableRawPointer, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
        k: Int, n: Int
    ) -> BF16PackedWeight {
        precondition(bf16Supported, "bf16 products need AVX512_BF16")
        if transB {
            catlip_bf16_pack_transposed(dst, b, ldb, k, n)
        } else {
            catlip_bf16_pack(dst, b, ldb, k, n)
        }
        return BF16PackedWeight(pointer: UnsafeRawPointer(dst), inFeatures: k, outFeatures: n)
    }

    /// C (m, n) = act(A · W^T + beta · C + bias + residual) with A (m, k) (row stride lda) and
    /// W rounded to bf16, float sums: `multiply(transA: false, transB: true, ...)` at bf16
    /// input precision, with the same epilogue (beta 0 unless given: training accumulates
    /// weight gradients in float with beta 1). Rows of C are split over the workers.
    static func multiplyBF16(
        m: Int, a: UnsafePointer<Float>, lda: Int, weight w: BF16PackedWeight,
        c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
        residual: UnsafePointer<Float>? = nil, ldr: Int = 0, activation: GemmActivation = .none,
        beta: Float = 0
    ) {
        if m <= 0 || w.outFeatures <= 0 { return }
        let epilogue = Epilogue(
            alpha: 1, beta: beta, bias: bias, residual: residual, ldr: ldr, activation: activation)
        let tiles = (m + mr - 1) / mr
        let parts = Parallelism.threads > 1 && tiles >= 2 * Parallelism.threads
            && m * w.outFeatures * w.inFeatures >= 1 << 18 ? Parallelism.threads : 1
        let (pa, pc) = (SendablePointer(a), SendablePointer(c))
        Parallelism.forParts(parts, costPerItem: 1 << 20) { part, _, _ in
            let m0 = min(m, tiles * part / parts * mr)
            let m1 = min(m, tiles * (part + 1) / parts * mr)
            if m0 >= m1 { return }
            productBF16(
                m: m1 - m0, a: pa.p + m0 * lda, lda: lda, weight: w, c: pc.p + m0 * ldc, ldc: ldc,
                epilogue: epilogue.shifted(row: m0, column: 0))
        }
    }

    /// `multiplyBF16` on the calling thread: per block of `mr` rows, A's rows rounded to bf16
    /// once, then one kernel call and one epilogue per 32-column panel over the whole k.
    static func productBF16(
        m: Int, a: UnsafePointer<Float>, lda: Int, weight w: BF16PackedWeight,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: Epilogue
    ) {
        let (k, n) = (w.inFeatures, w.outFeatures)
        let kp = (k + 1) / 2
        let panelBytes = kp * 64 * 2
        // in pooled float scratch (64-byte aligned): the accumulators (mr rows of 32 floats),
        // then A's block as bf16 (mr rows of kp pairs, 4 bytes each)
        ScratchPool.shared.withBuffer(count: 32 * mr + mr * kp) { scratch in
            let acc = UnsafeMutableRawPointer(scratch).bindMemory(
                to: SIMD16<Float>.self, capacity: 2 * mr)
            let aBlock = UnsafeMutableRawPointer(scratch + 32 * mr)
            var i0 = 0
            while i0 < m {
                let rows = min(mr, m - i0)
                catlip_bf16_convert_rows(aBlock, a + i0 * lda, lda, rows, k)
                var j = 0
                while j < n {
                    let columns = min(32, n - j)
                    let (ni, nj) = j + 32 < n ? (i0, j + 32) : (i0 + mr, 0)
                    if ni < m {
                        prefetchTile(
                            c: c, ldc: ldc, row: ni, column: nj, rows: min(mr, m - ni),
                            columns: min(32, n - nj), epilogue: epilogue)
                    }
                    catlip_bf16_tile(
                        UnsafeMutableRawPointer(acc).assumingMemoryBound(to: Float.self), aBlock,
                        rows, w.pointer + j / 32 * panelBytes, kp)
                    storeTile(
                        acc, rows: rows, columns: columns, vectors: 2, c: c + i0 * ldc + j,
                        ldc: ldc, epilogue: epilogue.shifted(row: i0, column: j))
                    j += 32
                }
                i0 += mr
            }
        }
    }

    /// `packBF16(into:b:ldb:transB:k:n:)` with the 32-column panels split over the workers
    /// (training packs activations every step).
    static func packBF16Parallel(
        into dst: UnsafeMutableRawPointer, b: UnsafePointer<Float>, ldb: Int, transB: Bool, k: Int, n: Int
    ) -> BF16PackedWeight {
        precondition(bf16Supported, "bf16 products need AVX512_BF16")
        let panels = (n + 31) / 32
        let panelFloats = (k + 1) / 2 * 32  // a panel's bytes / 4
        let (pd, pb) = (SendablePointer(dst.assumingMemoryBound(to: Float.self)), SendablePointer(b))
        Parallelism.forRanges(panels, costPerItem: 32 * k) { q0, q1 in
            for q in q0..<q1 {
                let columns = min(32, n - 32 * q)
                let panel = UnsafeMutableRawPointer(pd.p + q * panelFloats)
                if transB {
                    catlip_bf16_pack_transposed(panel, pb.p + 32 * q * ldb, ldb, k, columns)
                } else {
                    catlip_bf16_pack(panel, pb.p + 32 * q, ldb, k, columns)
                }
            }
        }
        return BF16PackedWeight(pointer: UnsafeRawPointer(dst), inFeatures: k, outFeatures: n)
    }

    /// x rounded to the nearest bf16 (ties to even), as a float: what the bf16 products see
    /// of each input (for reference computations). Like the kernels' conversion
    /// (VCVTNEPS2BF16), float denormals become zero of the same sign.
    public static func roundedToBF16(_ x: Float) -> Float {
        if x.isNaN { return x }
        let bits = x.bitPattern
        if bits & 0x7F80_0000 == 0 { return Float(bitPattern: bits & 0x8000_0000) }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return Float(bitPattern: rounded & 0xFFFF_0000)
    }
}
