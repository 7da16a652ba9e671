extension ViTModel {

    /// Makes the activation buffers for batches of `batchSize` images of side `imageSize`
    /// (the model's by default; another size resamples pos_embed on the fly); `training` false
    /// plans forward-only buffers that do not grow with depth.
    public func makeActivations(batchSize: Int, imageSize: Int? = nil, training: Bool = true)
        -> ViTActivations
    {
        ViTActivations(model: self, batchSize: batchSize, imageSize: imageSize, training: training)
    }

    @inline(__always)
    func linearForward(
        _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
        _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
        rows: Int, inFeatures: Int, outFeatures: Int, residual: UnsafePointer<Float>? = nil,
        packed: UnsafePointer<Float>? = nil, bf16: BF16PackedWeight? = nil
    ) {
        if let bf16, backend == .fast {
            Gemm.multiplyBF16(
                m: rows, a: inp, lda: inFeatures, weight: bf16, c: out, ldc: outFeatures,
                bias: bias, residual: residual, ldr: outFeatures)
            return
        }
        switch backend {
        case .naive:
            Kernels.linearForwardNaive(
                out: out, inp: inp, weight: weight, bias: bias, rows: rows,
                inFeatures: inFeatures, outFeatures: outFeatures)
            if let residual { Kernels.addInPlace(out, residual, count: rows * outFeatures) }
        case .fast:
            // the residual is added in the product's epilogue
            Kernels.linearForward(
                out: out, inp: inp, weight: weight, bias: bias, rows: rows,
                inFeatures: inFeatures, outFeatures: outFeatures, residual: residual,
                packedWeight: packed)
        }
    }

    /// Linear backward; `fresh` says the input gradient buffer holds garbage and is to be
    /// overwritten (the naive path zeroes it and accumulates, the fast path writes with beta 0).
    @inline(__always)
    func linearBackward(
        _ dinp: UnsafeMutablePointer<Float>?, _ dweight: UnsafeMutablePointer<Float>,
        _ dbias: UnsafeMutablePointer<Float>?, _ dout: UnsafePointer<Float>,
        _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
        rows: Int, inFeatures: Int, outFeatures: Int, fresh: Bool = false, bf16: Bool = false,
        bf16Weight: BF16PackedWeight? = nil
    ) {
        if bf16, backend == .fast {
            Kernels.linearBackwardBF16(
                dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: bf16Weight, rows: rows,
                inFeatures: inFeatures, outFeatures: outFeatures, accumulate: !fresh)
            return
        }
        switch backend {
        case .naive:
            if fresh, let dinp { dinp.update(repeating: 0, count: rows * inFeatures) }
            Kernels.linearBackwardNaive(
                dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: weight,
                rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        case .fast:
            Kernels.linearBackward(
                dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: weight,
                rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulate: !fresh)
        }
    }

    @inline(__always)
    func layerNormForward(
        _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>,
        _ rstd: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
        _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int
    ) {
        switch backend {
        case .naive:
            Kernels.layerNormForwardNaive(
                out: out, mean: mean, rstd: rstd, inp: inp, weight: weight, bias: bias,
                rows: rows, dim: dim)
        case .fast:
            Kernels.layerNormForward(
                out: out, mean: mean, rstd: rstd, inp: inp, weight: weight, bias: bias,
                rows: rows, dim: dim)
        }
    }

    @inline(__always)
    func layerNormBackward(
        _ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>,
        _ dbias: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
        _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
        _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, rows: Int
    ) {
        switch backend {
        case .naive:
            Kernels.layerNormBackwardNaive(
                dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: weight,
                mean: mean, rstd: rstd, rows: rows, dim: dim)
        case .fast:
            Kernels.layerNormBackward(
                dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: weight,
                mean: mean, rstd: rstd, rows: rows, dim: dim)
        }
    }

    /// Block l's qkv, proj, fc1 and fc2 weights packed by `Gemm.pack` for products against
    /// several chunks (nil for the naive backend), in pooled scratch for the call's duration.
    func withPackedBlockWeights(_ l: Int, _ body: (PackedBlockWeights?) -> Void) {
        if backend == .naive {
            body(nil)
            return
        }
        let p = parameters.base
        let (g, w, D) = (blocks[l], layout.offsets.blocks[l], dim)
        let (A, H) = (g.attentionWidth, g.mlpHidden)
        let qkvCount = Gemm.packedCount(k: D, n: 3 * A)
        let projCount = Gemm.packedCount(k: A, n: D)
        let fc1Count = Gemm.packedCount(k: D, n: H)
        let fc2Count = Gemm.packedCount(k: H, n: D)
        ScratchPool.shared.withBuffer(count: qkvCount + projCount + fc1Count + fc2Count) { q in
            let (proj, fc1) = (q + qkvCount, q + qkvCount + projCount)
            let fc2 = fc1 + fc1Count
            Gemm.pack(into: q, transB: true, k: D, n: 3 * A, b: p + w.qkvWeight, ldb: D)
            Gemm.pack(into: proj, transB: true, k: A, n: D, b: p + w.projWeight, ldb: A)
            Gemm.pack(into: fc1, transB: true, k: D, n: H, b: p + w.fc1Weight, ldb: D)
            Gemm.pack(into: fc2, transB: true, k: H, n: D, b: p + w.fc2Weight, ldb: H)
            body(
                PackedBlockWeights(
                    qkv: UnsafePointer(q), proj: UnsafePointer(proj), fc1: UnsafePointer(fc1),
                    fc2: UnsafePointer(fc2)))
        }
    }

    /// Block l on `images` images: out (n·T, D) = the block applied to x (n·T, D), through the
    /// block's activation buffers from their start (the batch in training, one chunk in
    /// inference). `packed`: the qkv, proj, fc1 and fc2 weights as `Gemm.pack` left them.
    func blockForward(
        _ l: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, images: Int,
        acts: ViTActivations, packed: PackedBlockWeights? = nil
    ) {
        let p = parameters.base
        let g = blocks[l]
        let w = layout.offsets.blocks[l]
        let (T, D) = (acts.tokens, dim)
        let (A, NH, hd) = (g.attentionWidth, g.numHeads, g.headDim)
        let rows = images * T
        let a = acts.blocks[l]
        let half = bf16Block(l, acts)
        // x + proj(attn(norm1(x)))
        layerNormForward(
            acts.fwd(a.ln1), acts.fwd(a.ln1Mean), acts.fwd(a.ln1Rstd), x, p + w.norm1Weight,
            p + w.norm1Bias, rows: rows)
        linearForward(
            acts.fwd(a.qkv), acts.fwd(a.ln1), p + w.qkvWeight,
            w.qkvBias.map { UnsafePointer(p + $0) }, rows: rows, inFeatures: D,
            outFeatures: 3 * A, packed: packed?.qkv, bf16: half?.qkv)
        switch backend {
        case .naive:
            Kernels.attentionForwardNaive(
                out: acts.fwd(a.attnOut), att: acts.fwd(a.att), qkv: acts.fwd(a.qkv),
                batch: images, tokens: T, heads: NH, headDim: hd)
        case .fast:
            Kernels.attentionForward(
                out: acts.fwd(a.attnOut), att: acts.fwd(a.att), qkv: acts.fwd(a.qkv),
                batch: images, tokens: T, heads: NH, headDim: hd, bf16: half != nil && !acts.training)
        }
        let drop = acts.dropPathScale(l, branch: 0)
        linearForward(
            acts.fwd(a.xMid), acts.fwd(a.attnOut), p + w.projWeight, p + w.projBias,
            rows: rows, inFeatures: A, outFeatures: D, residual: drop == nil ? x : nil,
            packed: packed?.proj, bf16: half?.proj)
        if let drop {
            addDropPathBranch(acts.fwd(a.xMid), residual: x, scales: drop, rows: rows, acts: acts)
        }
        mlpForward(l, out: out, rows: rows, acts: acts, packed: packed)
    }

    /// Block l's MLP half on `rows` token rows of its buffers: out = xMid + fc2(gelu(fc1(
    /// norm2(xMid)))), xMid read from the block's buffer.
    func mlpForward(
        _ l: Int, out: UnsafeMutablePointer<Float>, rows: Int, acts: ViTActivations,
        packed: PackedBlockWeights? = nil
    ) {
        let p = parameters.base
        let w = layout.offsets.blocks[l]
        let (D, H) = (dim, blocks[l].mlpHidden)
        let a = acts.blocks[l]
        let half = bf16Block(l, acts)
        layerNormForward(
            acts.fwd(a.ln2), acts.fwd(a.ln2Mean), acts.fwd(a.ln2Rstd), acts.fwd(a.xMid),
            p + w.norm2Weight, p + w.norm2Bias, rows: rows)
        switch backend {
        case .naive:
            // in inference fc1 and gelu share a buffer: GELU in place
            linearForward(
                acts.fwd(a.fc1), acts.fwd(a.ln2), p + w.fc1Weight, p + w.fc1Bias,
                rows: rows, inFeatures: D, outFeatures: H)
            Kernels.geluForwardNaive(out: acts.fwd(a.gelu), inp: acts.fwd(a.fc1), count: rows * H)
        case .fast where acts.training:
            // GELU in fc1's epilogue, the pre-activation kept for the backward pass (the GEMM
            // prefetches the second output's lines, so this saves a pass over both matrices)
            if let fc1 = half?.fc1 {
                Gemm.multiplyBF16(
                    m: rows, a: acts.fwd(a.ln2), lda: D, weight: fc1, c: acts.fwd(a.fc1), ldc: H,
                    bias: p + w.fc1Bias, activation: .gelu(out: acts.fwd(a.gelu), ld: H))
                break
            }
            Kernels.linearForward(
                out: acts.fwd(a.fc1), inp: acts.fwd(a.ln2), weight: p + w.fc1Weight,
                bias: p + w.fc1Bias, rows: rows, inFeatures: D, outFeatures: H,
                activation: .gelu(out: acts.fwd(a.gelu), ld: H), packedWeight: packed?.fc1)
        case .fast:
            // inference keeps no pre-activation: GELU in fc1's epilogue
            if let fc1 = half?.fc1 {
                Gemm.multiplyBF16(
                    m: rows, a: acts.fwd(a.ln2), lda: D, weight: fc1, c: acts.fwd(a.gelu), ldc: H,
                    bias: p + w.fc1Bias, activation: .geluOnly)
                break
            }
            Kernels.linearForward(
                out: acts.fwd(a.gelu), inp: acts.fwd(a.ln2), weight: p + w.fc1Weight,
                bias: p + w.fc1Bias, rows: rows, inFeatures: D, outFeatures: H,
                activation: .geluOnly, packedWeight: packed?.fc1)
        }
        let drop = acts.dropPathScale(l, branch: 1)
        linearForward(
            out, acts.fwd(a.gelu), p + w.fc2Weight, p + w.fc2Bias, rows: rows, inFeatures: H,
            outFeatures: D, residual: drop == nil ? acts.fwd(a.xMid) : nil, packed: packed?.fc2,
            bf16: half?.fc2)
        if let drop {
            addDropPathBranch(out, residual: acts.fwd(a.xMid), scales: drop, rows: rows, acts: acts)
        }
    }

    /// Stochastic depth's forward on `rows` rows of the batch (B·T, or B for the class-token
    /// rows): branch (rows, D) becomes residual + s[b] · branch per image b.
    func addDropPathBranch(
        _ branch: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>,
        scales: UnsafePointer<Float>, rows: Int, acts: ViTActivations
    ) {
        let B = acts.batchSize
        precondition(rows % B == 0, "stochastic depth on a chunk of the batch")
        Kernels.scaleGroups(
            out: branch, inp: branch, scales: scales, residual: residual, groups: B,
            rowsPerGroup: rows / B, columns: dim)
    }

    /// The gradient that reaches a residual branch under stochastic depth: `dout` (rows, D)
    /// scaled per image into the dln scratch (free until the branch's first LayerNorm
    /// backward), or `dout` itself without stochastic depth.
    func dropPathBranchGradient(
        _ l: Int, branch: Int, dout: UnsafeMutablePointer<Float>, rows: Int,
        acts: ViTActivations
    ) -> UnsafeMutablePointer<Float> {
        guard let s = acts.dropPathScale(l, branch: branch) else { return dout }
        let B = acts.batchSize
        precondition(rows % B == 0, "stochastic depth on a chunk of the batch")
        let scaled = acts.bwd(acts.dln)
        Kernels.scaleGroups(
            out: scaled, inp: dout, scales: s, groups: B, rowsPerGroup: rows / B, columns: dim)
        return scaled
    }

    /// The forward pass of a batch of images (B, C, S, S), float32 in C order, B =
    /// `acts.batchSize`, S = `acts.imageSize`: fills the saved activations, `preLogitsPointer`
    /// (B, D) and `logitsPointer` (B, V). Allocates nothing.
    public func forward(images: UnsafePointer<Float>, activations acts: ViTActivations) {
        let B = acts.batchSize
        let (N, T, D, V) = (acts.numPatches, acts.tokens, dim, numClasses)
        let patchDim = channels * patchSize * patchSize
        let p = parameters.base
        let o = layout.offsets

        if acts.training { prepareTrainingBF16(acts) }
        var posEmbed = p + o.posEmbed
        if let r = acts.resampler {
            r.forward(out: acts.fwd(acts.posEmbed), inp: posEmbed)
            posEmbed = acts.fwd(acts.posEmbed)
        }
        if acts.stem != nil {
            stemForward(images: images, acts: acts)
        } else {
            // patch embedding: unfold, then a GEMM against the conv weight seen as (D, C·P·P)
            Kernels.unfoldPatches(
                out: acts.fwd(acts.patches), images: images, batch: B, channels: channels,
                imageSize: acts.imageSize, patchSize: patchSize)
            linearForward(
                acts.fwd(acts.patchEmbed), acts.fwd(acts.patches), p + o.patchWeight,
                p + o.patchBias, rows: B * N, inFeatures: patchDim, outFeatures: D,
                bf16: acts.training ? bf16Training?.forward.patch : bf16Weights?.patch)
        }
        Kernels.embedForward(
            out: acts.fwd(acts.x0), patches: acts.fwd(acts.patchEmbed),
            clsToken: o.clsToken.map { UnsafePointer(p + $0) }, posEmbed: posEmbed,
            batch: B, numPatches: N, dim: D, classPosition: !config.modelArgs.noEmbedClass)

        var x = acts.fwd(acts.x0)
        // with token pooling only the class token's row of the last block reaches the output
        let classOnly = classTokenOnlyLastBlock(acts)
        acts.lastBlockClassOnly = classOnly
        for l in blocks.indices {
            if classOnly && l == blocks.count - 1 {
                // its output is the pooled row: (B, D) straight into `pooled`, in chunks
                var image = 0
                while image < B {
                    let n = min(acts.chunkImages, B - image)
                    classTokenBlockForward(
                        l, x: x + image * T * D, out: acts.fwd(acts.pooled) + image * D,
                        images: n, acts: acts)
                    image += n
                }
                break
            }
            let out =
                acts.training || l % 2 == 0 ? acts.fwd(acts.blocks[l].xOut) : acts.fwd(acts.xAlt)
            let chunk = acts.chunkImages
            let chunks: (PackedBlockWeights?) -> Void = { packed in
                var image = 0
                while image < B {
                    let n = min(chunk, B - image)
                    self.blockForward(
                        l, x: x + image * T * D, out: out + image * T * D, images: n,
                        acts: acts, packed: packed)
                    image += n
                }
            }
            if chunk >= B {
                blockForward(l, x: x, out: out, images: B, acts: acts)
            } else if bf16Block(l, acts) != nil {
                chunks(nil)  // the bf16 weights are packed already
            } else {
                // inference in chunks of images, each weight packed once for all of them
                withPackedBlockWeights(l, chunks)
            }
            x = out
        }

        // pooling, then the final norm (`norm` on the class token, or `fc_norm` on the mean: the
        // norm is per token, so normalising only the pooled row equals timm's norm-then-select)
        if !classOnly {
            Kernels.poolForward(
                out: acts.fwd(acts.pooled), inp: x, avg: avgPool, prefix: prefixTokens,
                batch: B, tokens: T, dim: D)
        }
        layerNormForward(
            acts.fwd(acts.preLogits), acts.fwd(acts.normMean), acts.fwd(acts.normRstd),
            acts.fwd(acts.pooled), p + o.finalNormWeight, p + o.finalNormBias, rows: B)
        linearForward(
            acts.fwd(acts.logits), acts.fwd(acts.preLogits), p + o.headWeight, p + o.headBias,
            rows: B, inFeatures: D, outFeatures: V)
    }

    /// The loss of the last forward pass against targets (B, V), by `headLoss`: BCE with logits
    /// summed over classes and averaged over the batch against multi-hot rows, or the softmax
    /// cross-entropy averaged over the batch against rows of probabilities.
    public func loss(targets: UnsafePointer<Float>, activations acts: ViTActivations) -> Float {
        let (z, B, V) = (UnsafePointer(acts.fwd(acts.logits)), acts.batchSize, numClasses)
        switch (headLoss, backend) {
        case (.binaryCrossEntropy, .naive):
            return Kernels.bceForwardNaive(logits: z, targets: targets, batch: B, classes: V)
        case (.binaryCrossEntropy, .fast):
            return Kernels.bceForward(logits: z, targets: targets, batch: B, classes: V)
        case (.softmaxCrossEntropy, .naive):
            return Kernels.softmaxCrossEntropyForwardNaive(logits: z, targets: targets, batch: B, classes: V)
        case (.softmaxCrossEntropy, .fast):
            return Kernels.softmaxCrossEntropyForward(logits: z, targets: targets, batch: B, classes: V)
        }
    }

    /// The backward pass of the last forward pass through the loss against `targets` (B, V):
    /// ACCUMULATES every parameter gradient into `gradients` (call `zeroGradients()` first for a
    /// fresh step). Allocates nothing. `gradientsReady`, when given, is called with each range
    /// of the gradient arena as soon as this pass has finished writing it: the head and final
    /// norm, then each block from the last to the first, then the embeddings (the ranges tile
    /// the arena), so that a data-parallel caller can start summing them over its ranks.
    public func backward(
        targets: UnsafePointer<Float>, activations acts: ViTActivations,
        gradientsReady: ((Range<Int>) -> Void)? = nil
    ) {
        precondition(acts.training, "activations planned for inference only")
        let B = acts.batchSize
        let (N, T, D, V) = (acts.numPatches, acts.tokens, dim, numClasses)
        let patchDim = channels * patchSize * patchSize
        let p = parameters.base
        let gp = gradients.base
        let o = layout.offsets
        // only the buffers that accumulate across layers start at zero; the per-block scratch
        // is overwritten (fast path) or zeroed right before use (naive path)
        acts.bwd(acts.dresid).update(repeating: 0, count: B * T * D)
        acts.bwd(acts.dpooled).update(repeating: 0, count: B * D)
        acts.bwd(acts.dpreLogits).update(repeating: 0, count: B * D)
        acts.bwd(acts.dlogits).update(repeating: 0, count: B * V)
        acts.bwd(acts.dpatchEmbed).update(repeating: 0, count: B * N * D)
        if acts.resampler != nil {
            acts.bwd(acts.dposEmbed).update(repeating: 0, count: (N + positionPrefix) * D)
        }

        // loss and head
        let (dz, z) = (acts.bwd(acts.dlogits), UnsafePointer(acts.fwd(acts.logits)))
        switch (headLoss, backend) {
        case (.binaryCrossEntropy, .naive):
            Kernels.bceBackwardNaive(dlogits: dz, logits: z, targets: targets, batch: B, classes: V)
        case (.binaryCrossEntropy, .fast):
            Kernels.bceBackward(dlogits: dz, logits: z, targets: targets, batch: B, classes: V)
        case (.softmaxCrossEntropy, .naive):
            Kernels.softmaxCrossEntropyBackwardNaive(dlogits: dz, logits: z, targets: targets, batch: B, classes: V)
        case (.softmaxCrossEntropy, .fast):
            Kernels.softmaxCrossEntropyBackward(dlogits: dz, logits: z, targets: targets, batch: B, classes: V)
        }
        linearBackward(
            acts.bwd(acts.dpreLogits), gp + o.headWeight, gp + o.headBias, acts.bwd(acts.dlogits),
            acts.fwd(acts.preLogits), p + o.headWeight, rows: B, inFeatures: D, outFeatures: V)
        // final norm and pooling
        layerNormBackward(
            acts.bwd(acts.dpooled), gp + o.finalNormWeight, gp + o.finalNormBias,
            acts.bwd(acts.dpreLogits), acts.fwd(acts.pooled), p + o.finalNormWeight,
            acts.fwd(acts.normMean), acts.fwd(acts.normRstd), rows: B)
        let dresid = acts.bwd(acts.dresid)
        let classOnly = acts.lastBlockClassOnly
        if !classOnly {
            Kernels.poolBackward(
                dinp: dresid, dout: acts.bwd(acts.dpooled), avg: avgPool, prefix: prefixTokens,
                batch: B, tokens: T, dim: D)
        }

        let blockStart = { (l: Int) -> Int in l < o.blocks.count ? o.blocks[l].norm1Weight : o.finalNormWeight }
        gradientsReady?(o.finalNormWeight..<gradients.count)

        // blocks in reverse; dresid carries dL/d(residual stream) downwards
        let rows = B * T
        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            let g = blocks[l]
            let w = o.blocks[l]
            let gw = o.blocks[l]
            let a = acts.blocks[l]
            let (A, NH, hd) = (g.attentionWidth, g.numHeads, g.headDim)
            let xIn = l == 0 ? acts.fwd(acts.x0) : acts.fwd(acts.blocks[l - 1].xOut)
            if classOnly && l == blocks.count - 1 {
                // dpooled: the gradient of the block's (B, D) output
                classTokenBlockBackward(
                    l, dout: acts.bwd(acts.dpooled), dresid: dresid, xIn: xIn, acts: acts)
                gradientsReady?(blockStart(l)..<blockStart(l + 1))
                continue
            }
            let dln = acts.bwd(acts.dln)
            let dattnOut = acts.bwd(acts.dattnOut)
            let dqkv = acts.bwd(acts.dqkv)
            // MLP: xOut = xMid + fc2(gelu(fc1(ln2(xMid))))
            mlpBackward(l, dresid: dresid, rows: rows, acts: acts)
            // attention: xMid = xIn + proj(attn(ln1(xIn)))
            let dbranch = dropPathBranchGradient(l, branch: 0, dout: dresid, rows: rows, acts: acts)
            let half = bf16Training?.backward[l]
            linearBackward(
                dattnOut, gp + gw.projWeight, gp + gw.projBias, dbranch, acts.fwd(a.attnOut),
                p + w.projWeight, rows: rows, inFeatures: A, outFeatures: D, fresh: true, bf16: half != nil,
                bf16Weight: half?.proj)
            switch backend {
            case .naive:
                dqkv.update(repeating: 0, count: rows * 3 * A)
                Kernels.attentionBackwardNaive(
                    dqkv: dqkv, datt: acts.bwd(acts.datt), dout: dattnOut, qkv: acts.fwd(a.qkv),
                    att: acts.fwd(a.att), batch: B, tokens: T, heads: NH, headDim: hd)
            case .fast:
                Kernels.attentionBackward(
                    dqkv: dqkv, datt: acts.bwd(acts.datt), dout: dattnOut, qkv: acts.fwd(a.qkv),
                    att: acts.fwd(a.att), batch: B, tokens: T, heads: NH, headDim: hd,
                    accumulate: false)
            }
            linearBackward(
                dln, gp + gw.qkvWeight, gw.qkvBias.map { gp + $0 }, dqkv, acts.fwd(a.ln1),
                p + w.qkvWeight, rows: rows, inFeatures: D, outFeatures: 3 * A, fresh: true, bf16: half != nil,
                bf16Weight: half?.qkv)
            layerNormBackward(
                dresid, gp + gw.norm1Weight, gp + gw.norm1Bias, dln, xIn, p + w.norm1Weight,
                acts.fwd(a.ln1Mean), acts.fwd(a.ln1Rstd), rows: rows)
            gradientsReady?(blockStart(l)..<blockStart(l + 1))
        }

        // embeddings and patch projection (no gradient for the images)
        let dposEmbed = acts.resampler == nil ? gp + o.posEmbed : acts.bwd(acts.dposEmbed)
        Kernels.embedBackward(
            dpatches: acts.bwd(acts.dpatchEmbed), dclsToken: o.clsToken.map { gp + $0 },
            dposEmbed: dposEmbed, dout: dresid, batch: B, numPatches: N, dim: D,
            classPosition: !config.modelArgs.noEmbedClass)
        acts.resampler?.backward(dinp: gp + o.posEmbed, dout: dposEmbed)
        if acts.stem != nil {
            stemBackward(acts: acts)
        } else {
            linearBackward(
                nil, gp + o.patchWeight, gp + o.patchBias, acts.bwd(acts.dpatchEmbed),
                acts.fwd(acts.patches), p + o.patchWeight, rows: B * N, inFeatures: patchDim,
                outFeatures: D, bf16: bf16Training != nil)
        }
        gradientsReady?(0..<blockStart(0))
    }

    /// Block l's MLP half backward on `rows` token rows: `dresid` holds the gradient of the
    /// block's output on entry and that of xMid on return (the LayerNorm's share added).
    func mlpBackward(
        _ l: Int, dresid: UnsafeMutablePointer<Float>, rows: Int, acts: ViTActivations
    ) {
        let p = parameters.base
        let gp = gradients.base
        let w = layout.offsets.blocks[l]
        let gw = w
        let (D, H) = (dim, blocks[l].mlpHidden)
        let a = acts.blocks[l]
        let dln = acts.bwd(acts.dln)
        let dfc1 = acts.bwd(acts.dfc1)
        let dgelu = acts.bwd(acts.dgelu)
        let dbranch = dropPathBranchGradient(l, branch: 1, dout: dresid, rows: rows, acts: acts)
        // at bf16 (not for the class-token-only last block, whose products stay float)
        let half = rows == acts.batchSize * acts.tokens ? bf16Training?.backward[l] : nil
        linearBackward(
            dgelu, gp + gw.fc2Weight, gp + gw.fc2Bias, dbranch, acts.fwd(a.gelu),
            p + w.fc2Weight, rows: rows, inFeatures: H, outFeatures: D, fresh: true, bf16: half != nil,
            bf16Weight: half?.fc2)
        switch backend {
        case .naive:
            dfc1.update(repeating: 0, count: rows * H)
            Kernels.geluBackwardNaive(
                dinp: dfc1, inp: acts.fwd(a.fc1), dout: dgelu, count: rows * H)
        case .fast:
            // in place, with fc1's bias gradient in the same pass (measured: faster than
            // GemmActivation.geluBackward in fc2's product plus a column-sum pass)
            Kernels.geluBackwardWithBias(
                dinp: dgelu, inp: acts.fwd(a.fc1), dout: dgelu, dbias: gp + gw.fc1Bias,
                rows: rows, columns: H)
        }
        switch backend {
        case .naive:
            linearBackward(
                dln, gp + gw.fc1Weight, gp + gw.fc1Bias, dfc1, acts.fwd(a.ln2),
                p + w.fc1Weight, rows: rows, inFeatures: D, outFeatures: H, fresh: true)
        case .fast:
            if let half {
                Kernels.linearBackwardBF16(
                    dinp: dln, dweight: gp + gw.fc1Weight, dbias: nil, dout: dgelu, inp: acts.fwd(a.ln2),
                    weight: half.fc1, rows: rows, inFeatures: D, outFeatures: H, accumulate: false)
                break
            }
            Kernels.linearBackward(
                dinp: dln, dweight: gp + gw.fc1Weight, dbias: nil, dout: dgelu,
                inp: acts.fwd(a.ln2), weight: p + w.fc1Weight, rows: rows, inFeatures: D,
                outFeatures: H, accumulate: false)
        }
        layerNormBackward(
            dresid, gp + gw.norm2Weight, gp + gw.norm2Bias, dln, acts.fwd(a.xMid),
            p + w.norm2Weight, acts.fwd(a.ln2Mean), acts.fwd(a.ln2Rstd), rows: rows)
    }
}

/// One block's weights as `Gemm.pack(transB: true, ...)` leaves them.
struct PackedBlockWeights {
    var qkv: UnsafePointer<Float>
    var proj: UnsafePointer<Float>
    var fc1: UnsafePointer<Float>
    var fc2: UnsafePointer<Float>
}
