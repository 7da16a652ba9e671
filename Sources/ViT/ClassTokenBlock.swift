// The last block under token pooling. Only the class token's row of the last block's output
// reaches the head (pooling takes that row, the final norm is per token), so the last block
// needs keys and values for every token but queries, attention, proj and the MLP for the class
// token alone: the same function as the full block, computed without the dead rows (for a
// 6-block model on 65 tokens about 13% of the forward FLOPs, for ViT-Ti/16 at 224 about 7%).
// The naive backend keeps computing every row: it is the reference this route is tested against.

extension ViTModel {

    /// Whether the forward pass with `acts` computes the last block for the class token only:
    /// token pooling, the fast backend, and the buffers for it.
    func classTokenOnlyLastBlock(_ acts: ViTActivations) -> Bool {
        backend == .fast && !avgPool && prefixTokens == 1 && !blocks.isEmpty
            && acts.classTokenBuffers
    }

    /// The last block l on `images` images, class token only: out (n, D) = row 0 of each
    /// image's block output for x (n·T, D). Saves ln1 (all rows), keys and values (all rows,
    /// in the qkv buffer as (n·T, 2A)), the class-token rows of x and ln1, the queries, the
    /// attention row per head (n, NH, T), and the MLP's buffers on n rows.
    func classTokenBlockForward(
        _ l: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, images n: Int,
        acts: ViTActivations
    ) {
        let p = parameters.base
        let g = blocks[l]
        let w = layout.offsets.blocks[l]
        let (T, D) = (acts.tokens, dim)
        let (A, NH, hd) = (g.attentionWidth, g.numHeads, g.headDim)
        let a = acts.blocks[l]
        let qBias = w.qkvBias.map { UnsafePointer(p + $0) }
        let half = bf16Block(l, acts)
        layerNormForward(
            acts.fwd(a.ln1), acts.fwd(a.ln1Mean), acts.fwd(a.ln1Rstd), x, p + w.norm1Weight,
            p + w.norm1Bias, rows: n * T)
        // keys and values for every token: rows A..<3A of the qkv weight
        linearForward(
            acts.fwd(a.qkv), acts.fwd(a.ln1), p + w.qkvWeight + A * D, qBias.map { $0 + A },
            rows: n * T, inFeatures: D, outFeatures: 2 * A, bf16: half?.kv)
        // the query of the class token: rows 0..<A
        Kernels.poolForward(
            out: acts.fwd(a.xCls), inp: x, avg: false, prefix: 1, batch: n, tokens: T, dim: D)
        Kernels.poolForward(
            out: acts.fwd(a.lnCls), inp: acts.fwd(a.ln1), avg: false, prefix: 1, batch: n,
            tokens: T, dim: D)
        linearForward(
            acts.fwd(a.q), acts.fwd(a.lnCls), p + w.qkvWeight, qBias, rows: n, inFeatures: D,
            outFeatures: A, bf16: half?.q)
        Kernels.classTokenAttentionForward(
            out: acts.fwd(a.attnOut), att: acts.fwd(a.att), q: acts.fwd(a.q),
            kv: acts.fwd(a.qkv), batch: n, tokens: T, heads: NH, headDim: hd)
        let drop = acts.dropPathScale(l, branch: 0)
        linearForward(
            acts.fwd(a.xMid), acts.fwd(a.attnOut), p + w.projWeight, p + w.projBias, rows: n,
            inFeatures: A, outFeatures: D, residual: drop == nil ? acts.fwd(a.xCls) : nil,
            bf16: half?.proj)
        if let drop {
            addDropPathBranch(acts.fwd(a.xMid), residual: acts.fwd(a.xCls), scales: drop, rows: n, acts: acts)
        }
        mlpForward(l, out: out, rows: n, acts: acts)
    }

    /// The backward pass of `classTokenBlockForward` on the batch: `dout` (B, D) is the
    /// gradient of the block's output (it is used as scratch: it holds that of xMid's class
    /// rows on return); `dresid` (B·T, D), zero on entry, receives the gradient of the
    /// block's input x. Accumulates the block's parameter gradients.
    func classTokenBlockBackward(
        _ l: Int, dout: UnsafeMutablePointer<Float>, dresid: UnsafeMutablePointer<Float>,
        xIn: UnsafePointer<Float>, acts: ViTActivations
    ) {
        let p = parameters.base
        let gp = gradients.base
        let g = blocks[l]
        let w = layout.offsets.blocks[l]
        let B = acts.batchSize
        let (T, D) = (acts.tokens, dim)
        let (A, NH, hd) = (g.attentionWidth, g.numHeads, g.headDim)
        let a = acts.blocks[l]
        let (dln, dattnOut, dkv) = (acts.bwd(acts.dln), acts.bwd(acts.dattnOut), acts.bwd(acts.dqkv))
        let (dq, dlnCls) = (acts.bwd(acts.dq), acts.bwd(acts.dlnCls))
        let dqBias = w.qkvBias.map { gp + $0 }
        // MLP on the class rows: dout becomes the gradient of xMid
        mlpBackward(l, dresid: dout, rows: B, acts: acts)
        let dbranch = dropPathBranchGradient(l, branch: 0, dout: dout, rows: B, acts: acts)
        linearBackward(
            dattnOut, gp + w.projWeight, gp + w.projBias, dbranch, acts.fwd(a.attnOut),
            p + w.projWeight, rows: B, inFeatures: A, outFeatures: D, fresh: true)
        Kernels.classTokenAttentionBackward(
            dq: dq, dkv: dkv, datt: acts.bwd(acts.datt), dout: dattnOut, q: acts.fwd(a.q),
            kv: acts.fwd(a.qkv), att: acts.fwd(a.att), batch: B, tokens: T, heads: NH,
            headDim: hd)
        // keys and values of every token, then the class token's query
        linearBackward(
            dln, gp + w.qkvWeight + A * D, dqBias.map { $0 + A }, dkv, acts.fwd(a.ln1),
            p + w.qkvWeight + A * D, rows: B * T, inFeatures: D, outFeatures: 2 * A,
            fresh: true)
        linearBackward(
            dlnCls, gp + w.qkvWeight, dqBias, dq, acts.fwd(a.lnCls), p + w.qkvWeight, rows: B,
            inFeatures: D, outFeatures: A, fresh: true)
        Kernels.poolBackward(
            dinp: dln, dout: dlnCls, avg: false, prefix: 1, batch: B, tokens: T, dim: D)
        // the residual path of the class rows, then norm1 for every row
        Kernels.poolBackward(
            dinp: dresid, dout: dout, avg: false, prefix: 1, batch: B, tokens: T, dim: D)
        layerNormBackward(
            dresid, gp + w.norm1Weight, gp + w.norm1Bias, dln, xIn, p + w.norm1Weight,
            acts.fwd(a.ln1Mean), acts.fwd(a.ln1Rstd), rows: B * T)
    }
}
