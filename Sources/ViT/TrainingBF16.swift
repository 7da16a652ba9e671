import CViTSupport

// Training at bf16 (`ViTModel.setTrainingPrecision(.bf16)`, `catlip train --set
// run.precision=bf16`): the products of the blocks' linear layers and of the patch projection
// take bf16-rounded inputs with float sums (VDPBF16PS) in the forward pass and in both
// backward products, dX = dY·W and dW = dYᵀ·X, the weight gradients summed into float. The
// weights are rounded and packed at each training forward pass, in both orientations. Master
// weights, AdamW's moments, EMA, gradients, LayerNorm, softmax, GELU, the residual stream,
// attention's products, the head and the loss stay float.

/// A model's weights packed at bf16 for a training step: for the forward products (W^T, as
/// inference packs them) and for the input gradients (W).
final class BF16TrainingWeights {
    /// The forward packing (`BF16ModelWeights`).
    let forward: BF16ModelWeights
    /// Per block, W (out, in) packed as op(B) = W (k = out, n = in) for dX = dY · W.
    let backward: [(qkv: BF16PackedWeight, proj: BF16PackedWeight, fc1: BF16PackedWeight, fc2: BF16PackedWeight)]
    private let storage: UnsafeMutableRawPointer
    /// Each backward packing: the weight (out, in) and its offset in `storage`.
    private let jobs: [(weight: UnsafePointer<Float>, out: Int, in: Int, offset: Int)]

    /// Packs the current weights of `model` (requires `Gemm.bf16Supported`).
    init(model: ViTModel) {
        forward = BF16ModelWeights(model: model)
        let p = UnsafePointer(model.parameters.base)
        let D = model.dim
        var shapes: [(UnsafePointer<Float>, Int, Int)] = []  // (weight, out, in)
        for (l, g) in model.blocks.enumerated() {
            let w = model.layout.offsets.blocks[l]
            let (A, H) = (g.attentionWidth, g.mlpHidden)
            shapes += [(p + w.qkvWeight, 3 * A, D), (p + w.projWeight, D, A), (p + w.fc1Weight, H, D), (p + w.fc2Weight, D, H)]
        }
        let sizes = shapes.map { (Gemm.bf16PackedBytes(k: $0.1, n: $0.2) + 63) / 64 * 64 }
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(sizes.reduce(0, +), 64), alignment: 64)
        var packed: [BF16PackedWeight] = []
        var jobs: [(weight: UnsafePointer<Float>, out: Int, in: Int, offset: Int)] = []
        var offset = 0
        for (s, size) in zip(shapes, sizes) {
            packed.append(Gemm.packBF16Parallel(into: storage + offset, b: s.0, ldb: s.2, transB: false, k: s.1, n: s.2))
            jobs.append((s.0, s.1, s.2, offset))
            offset += size
        }
        self.jobs = jobs
        backward = model.blocks.indices.map { l in (packed[4 * l], packed[4 * l + 1], packed[4 * l + 2], packed[4 * l + 3]) }
    }

    /// Packs the model's current weights again into the same storage, both orientations.
    func repack() {
        forward.repack()
        for j in jobs {
            _ = Gemm.packBF16Parallel(into: storage + j.offset, b: j.weight, ldb: j.in, transB: false, k: j.out, n: j.in)
        }
    }

    deinit { storage.deallocate() }
}

extension ViTModel {
    /// Sets the input precision of the training products (see the top of TrainingBF16.swift):
    /// `.bf16` on the fast backend only (the naive backend stays float, the reference). Throws
    /// when the processor cannot run bf16 products (no AVX512_BF16), naming `setting`.
    public func setTrainingPrecision(_ precision: InferencePrecision, setting: String = "run.precision")
        throws(InferencePrecisionError)
    {
        if precision == .bf16 && !Gemm.bf16Supported {
            throw InferencePrecisionError(
                description: "\(setting): bf16 training needs a processor with AVX512_BF16 (this one has none); use fp32")
        }
        trainingPrecision = precision
        if precision == .fp32 { bf16Training = nil }
    }

    /// Packs the weights for a training forward pass at bf16 (each pass: the optimiser has
    /// moved them since the last; the storage is kept from pass to pass), nil at fp32 or on the
    /// naive backend.
    func prepareTrainingBF16(_ acts: ViTActivations) {
        guard acts.training, trainingPrecision == .bf16, backend == .fast else {
            bf16Training = nil
            return
        }
        if let packed = bf16Training { packed.repack() } else { bf16Training = BF16TrainingWeights(model: self) }
    }
}

extension Kernels {
    /// out (cols, rows) = inp (rows, cols)ᵀ, rows of `inp` with stride `ld`; 16 x 16 blocks,
    /// split over the workers by row blocks of the output.
    static func transpose(
        _ inp: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into out: UnsafeMutablePointer<Float>
    ) {
        let (pi, po) = (SendablePointer(inp), SendablePointer(out))
        let blocks = (cols + 15) / 16
        Parallelism.forRanges(blocks, costPerItem: 16 * rows) { b0, b1 in
            for b in b0..<b1 {
                let c0 = 16 * b
                let c1 = min(cols, c0 + 16)
                var r0 = 0
                while r0 < rows {
                    let r1 = min(rows, r0 + 16)
                    for c in c0..<c1 {
                        let dst = po.p + c * rows
                        for r in r0..<r1 { dst[r] = pi.p[r * ld + c] }
                    }
                    r0 = r1
                }
            }
        }
    }

    /// `linearBackward` with bf16 products and float sums: dinp (R, I) (+)= dout (R, O) · W
    /// (`weight`: W packed by `BF16TrainingWeights`; needed only with `dinp`), dweight (O, I)
    /// += doutᵀ · inp (dout transposed and inp packed here, every call: both are this pass's
    /// activations), dbias (O) += dout's column sums in float. With `accumulate` false `dinp`
    /// is overwritten.
    static func linearBackwardBF16(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        weight: BF16PackedWeight?, rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = true
    ) {
        if rows == 0 { return }
        if let dinp {
            guard let weight else { preconditionFailure("the input gradient needs the packed weight") }
            Gemm.multiplyBF16(
                m: rows, a: dout, lda: outFeatures, weight: weight, c: dinp, ldc: inFeatures, beta: accumulate ? 1 : 0)
        }
        // dW += doutᵀ · inp: A = doutᵀ (O, R) rows contiguous, B = inp (R, I) packed
        let packedFloats = (Gemm.bf16PackedBytes(k: rows, n: inFeatures) + 3) / 4
        ScratchPool.shared.withBuffer(count: outFeatures * rows) { transposed in
            transpose(dout, rows: rows, cols: outFeatures, ld: outFeatures, into: transposed)
            ScratchPool.shared.withBuffer(count: packedFloats + 16) { packed in
                let x = Gemm.packBF16Parallel(
                    into: UnsafeMutableRawPointer(packed), b: inp, ldb: inFeatures, transB: false, k: rows, n: inFeatures)
                Gemm.multiplyBF16(
                    m: outFeatures, a: transposed, lda: rows, weight: x, c: dweight, ldc: inFeatures, beta: 1)
            }
        }
        if let dbias { columnSumsParallel(into: dbias, dout, rows: rows, columns: outFeatures) }
    }
}
