// Inference at bf16 input precision: the linear layers of the blocks and the patch embedding
// multiply bf16-rounded activations by a bf16 copy of their weights, and attention multiplies
// rounded queries by rounded keys and rounded softmax rows by rounded values, all with float
// sums (`Gemm.productBF16`); everything else (LayerNorm, softmax, GELU, residual stream, the
// class token's attention in the last block, head) stays float. Like
// `torch.autocast(dtype=torch.bfloat16)` or timm's `--amp-dtype bfloat16` for the matrix
// products, at about twice their float speed on a processor with AVX512_BF16; embeddings
// move by a few hundredths of a percent to a few tenths (cosine similarity to the float ones
// above 0.9999 on the test models). Training never uses it.

/// The input precision of the products in inference.
public enum InferencePrecision: String, Sendable, CaseIterable {
    /// float32 everywhere (the default, and what training uses).
    case fp32
    /// bf16 inputs and float sums in the blocks' linear layers and attention products and in
    /// the patch embedding.
    case bf16
}

/// Why a precision cannot be used.
public struct InferencePrecisionError: Error, CustomStringConvertible {
    /// The message.
    public var description: String
}

/// The bf16 copies of a model's weights taken by `ViTModel.setInferencePrecision(.bf16)`.
final class BF16ModelWeights: @unchecked Sendable {
    /// One block's packed weights; `q` and `kv` (rows 0..<A and A..<3A of qkv) for the last
    /// block only, which under token pooling computes the query of the class token alone.
    struct Block {
        var qkv: BF16PackedWeight
        var proj: BF16PackedWeight
        var fc1: BF16PackedWeight
        var fc2: BF16PackedWeight
        var q: BF16PackedWeight?
        var kv: BF16PackedWeight?
    }

    let patch: BF16PackedWeight
    let blocks: [Block]
    private let storage: UnsafeMutableRawPointer
    /// What was packed where: each weight (n, k), and its packing's offset in `storage`.
    private let jobs: [(weight: UnsafePointer<Float>, k: Int, n: Int, offset: Int)]

    /// Packs the current weights of `model` (requires `Gemm.bf16Supported`).
    init(model: ViTModel) {
        let p = UnsafePointer(model.parameters.base)
        let o = model.layout.offsets
        let D = model.dim
        // (weight, k, n) of every packed matrix, in order
        typealias Matrix = (weight: UnsafePointer<Float>, k: Int, n: Int)
        let patchDim = model.channels * model.patchSize * model.patchSize
        // a stem runs at fp32 (its products are a few percent of the model's); a stand-in
        // keeps the list's order
        var matrices: [Matrix] = [(p + o.patchWeight, o.stem == nil ? patchDim : 1, o.stem == nil ? D : 1)]
        for (l, g) in model.blocks.enumerated() {
            let w = o.blocks[l]
            let (A, H) = (g.attentionWidth, g.mlpHidden)
            let qkv: Matrix = (p + w.qkvWeight, D, 3 * A)
            let proj: Matrix = (p + w.projWeight, A, D)
            let fc1: Matrix = (p + w.fc1Weight, D, H)
            let fc2: Matrix = (p + w.fc2Weight, H, D)
            matrices += [qkv, proj, fc1, fc2]
            if l == model.blocks.count - 1 {
                let q: Matrix = (p + w.qkvWeight, D, A)
                let kv: Matrix = (p + w.qkvWeight + A * D, D, 2 * A)
                matrices += [q, kv]
            }
        }
        let sizes = matrices.map { (Gemm.bf16PackedBytes(k: $0.k, n: $0.n) + 63) / 64 * 64 }
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(sizes.reduce(0, +), 64), alignment: 64)
        var packed: [BF16PackedWeight] = []
        var jobs: [(weight: UnsafePointer<Float>, k: Int, n: Int, offset: Int)] = []
        var offset = 0
        for (m, size) in zip(matrices, sizes) {
            packed.append(Gemm.packBF16Parallel(into: storage + offset, b: m.weight, ldb: m.k, transB: true, k: m.k, n: m.n))
            jobs.append((m.weight, m.k, m.n, offset))
            offset += size
        }
        self.jobs = jobs
        patch = packed[0]
        var blocks: [Block] = []
        var i = 1
        for l in model.blocks.indices {
            var b = Block(qkv: packed[i], proj: packed[i + 1], fc1: packed[i + 2], fc2: packed[i + 3])
            i += 4
            if l == model.blocks.count - 1 {
                b.q = packed[i]
                b.kv = packed[i + 1]
                i += 2
            }
            blocks.append(b)
        }
        self.blocks = blocks
    }

    /// Packs the model's current weights again into the same storage (training moves them
    /// every step; the layout does not change).
    func repack() {
        for j in jobs {
            _ = Gemm.packBF16Parallel(into: storage + j.offset, b: j.weight, ldb: j.k, transB: true, k: j.k, n: j.n)
        }
    }

    deinit { storage.deallocate() }
}

extension ViTModel {
    /// Sets the input precision of the products in inference (forward passes with activations
    /// made with `training: false` on the fast backend; the naive backend and training stay
    /// float). `.bf16` takes a bf16 copy of the weights now: set it again after changing them.
    /// Throws when the processor cannot run bf16 products (no AVX512_BF16).
    public func setInferencePrecision(_ precision: InferencePrecision) throws(InferencePrecisionError) {
        switch precision {
        case .fp32:
            bf16Weights = nil
        case .bf16:
            guard Gemm.bf16Supported else {
                throw InferencePrecisionError(
                    description: "bf16 inference needs a processor with AVX512_BF16 (this one has none); use fp32")
            }
            bf16Weights = BF16ModelWeights(model: self)
        }
    }

    /// The input precision of inference products (`setInferencePrecision`).
    public var inferencePrecision: InferencePrecision { bf16Weights == nil ? .fp32 : .bf16 }

    /// Block l's bf16 weights when a forward pass with `acts` uses them.
    func bf16Block(_ l: Int, _ acts: ViTActivations) -> BF16ModelWeights.Block? {
        guard backend == .fast else { return nil }
        if acts.training { return bf16Training?.forward.blocks[l] }
        guard let w = bf16Weights else { return nil }
        return w.blocks[l]
    }
}
