/// Offsets of one block's saved activations.
struct BlockActivationOffsets {
    var ln1 = 0, ln1Mean = 0, ln1Rstd = 0  // (B, T, D), (B, T), (B, T)
    var qkv = 0  // (B, T, 3A)
    var att = 0  // (B, NH, T, T) softmax probabilities
    var attnOut = 0  // (B, T, A) heads side by side, before proj
    var xMid = 0  // (B, T, D) residual stream after attention
    var ln2 = 0, ln2Mean = 0, ln2Rstd = 0  // (B, T, D), (B, T), (B, T)
    var fc1 = 0  // (B, T, H) before GELU
    var gelu = 0  // (B, T, H)
    var xOut = 0  // (B, T, D) residual stream after the MLP
    // the last block with token pooling computes the class token's row only (`lastBlockClassOnly`):
    var q = 0  // (B, A) class-token queries; keys and values (B, T, 2A) live in `qkv`
    var xCls = 0, lnCls = 0  // (B, D), (B, D) the class-token rows of the input and of ln1
}

/// Every buffer a forward and backward pass of one batch shape needs, planned once and held in
/// two arenas: saved activations (`forwardArena`) and backward scratch (`backwardArena`). After
/// construction a training step allocates nothing. `byteCount` is the memory it holds.
///
/// The batch shape includes the image size: at a size other than the model's, the position
/// embedding is resampled to the new patch grid in every forward pass (timm's 2-D
/// interpolation) and its gradient is mapped back through the transpose, which is how
/// variable-resolution batches train one set of weights.
public final class ViTActivations {
    /// Images per batch B.
    public let batchSize: Int
    /// Image side S of this batch shape.
    public let imageSize: Int
    /// Patches per side, floor(S / P).
    public let gridSize: Int
    /// Patch tokens N.
    public let numPatches: Int
    /// Tokens T = N + prefix.
    public let tokens: Int
    /// Resamples pos_embed when the grid differs from the model's (nil otherwise).
    public let resampler: PositionEmbeddingResampler?
    /// The convolutional stem's buffers (nil for a patchify model).
    let stem: StemPlan?
    /// Whether the buffers support `backward` (false: inference only, every block reuses one
    /// set of buffers and there is no backward arena).
    public let training: Bool
    /// Images per chunk of the forward pass: the batch in training (every activation is kept
    /// for backward; chunking the training forward measured no faster, its writes miss anyway);
    /// in inference, equal chunks of about `chunkRows` token rows, so that a block's
    /// intermediates (qkv, attention, MLP hidden) for one chunk are still in the caches when
    /// the next op reads them (5-8% less CPU time than whole-batch ops, config A and ViT-Ti).
    public let chunkImages: Int
    /// Target token rows per inference chunk (qkv + MLP hidden of 1024 rows: about 5.5 MB):
    /// small enough to stay in the caches, large enough that the workers' start-up per kernel
    /// call stays negligible. With concurrentPerform 512-row chunks lost 10% on ViT-Ti at 2
    /// threads; with the persistent worker pool 1024 rows measured 4-6% faster than 2048
    /// (config A, 1 and 2 threads) and no slower on ViT-Ti.
    public static let chunkRows = 1024
    /// Whether the last block has the buffers to compute the class token's row only (token
    /// pooling: no other row of its output reaches the head).
    let classTokenBuffers: Bool
    /// Whether the last forward pass took that route (the fast backend does; the naive
    /// reference computes every row), so that `backward` follows it.
    var lastBlockClassOnly = false
    /// Stochastic depth's per-image branch factors (depth, 2, B): block l's attention branch
    /// at (l·2)·B, its MLP branch at (l·2 + 1)·B (see DropPath.swift); read only when
    /// `dropPathOn`. Empty for inference.
    let dropPathScales: FloatArena
    /// Whether the coming passes apply `dropPathScales`.
    var dropPathOn = false
    /// Saved forward activations.
    public let forwardArena: FloatArena
    /// Gradients of activations (reused block after block).
    public let backwardArena: FloatArena

    // forward (offsets into forwardArena)
    let posEmbed: Int  // (T, D) resampled pos_embed (used with a resampler)
    let patches: Int  // (B, N, C·P·P) unfolded images
    let patchEmbed: Int  // (B, N, D)
    let x0: Int  // (B, T, D) embeddings + pos_embed: block 0 input
    let blocks: [BlockActivationOffsets]
    let pooled: Int  // (B, D) class token or patch mean, before the final norm
    let normMean: Int, normRstd: Int  // (B), (B)
    let preLogits: Int  // (B, D)
    let logits: Int  // (B, V)
    let xAlt: Int  // (B, T, D) inference: the other residual-stream buffer (blocks alternate)

    // backward (offsets into backwardArena)
    let dresid: Int  // (B, T, D) gradient of the residual stream
    let dln: Int  // (B, T, D) gradient of a LayerNorm output
    let dqkv: Int  // (B, T, 3·Amax)
    let datt: Int  // (B, NHmax, T, T)
    let dattnOut: Int  // (B, T, Amax)
    let dgelu: Int  // (B, T, Hmax)
    let dfc1: Int  // (B, T, Hmax)
    let dpatchEmbed: Int  // (B, N, D)
    let dpooled: Int  // (B, D)
    let dpreLogits: Int  // (B, D)
    let dlogits: Int  // (B, V)
    let dposEmbed: Int  // (T, D) gradient of the resampled pos_embed
    let dq: Int, dlnCls: Int  // (B, Amax), (B, D) the class-token-only last block's

    /// Plans and allocates the buffers for `batchSize` images of side `imageSize` (the model's
    /// by default) through `model`. With `training` false only the forward pass is possible:
    /// the blocks share one set of buffers sized for one chunk of `chunkImages` images, and the
    /// residual stream alternates between two batch-sized buffers, so memory grows neither with
    /// depth nor (beyond the stream) with the batch. Traps when the image is smaller than one
    /// patch. `chunkRows` sets the inference chunk (tests use small ones).
    public init(
        model: ViTModel, batchSize: Int, imageSize: Int? = nil, training: Bool = true,
        interpolation: PositionInterpolation = .bicubic, antialias: Bool = true,
        chunkRows: Int = ViTActivations.chunkRows
    ) {
        precondition(batchSize >= 1)
        let S = imageSize ?? model.imageSize
        precondition(S >= model.patchSize, "image size \(S) is smaller than a patch")
        let B = batchSize
        let G = model.config.modelArgs.gridSize(imageSize: S)
        precondition(G >= 1, "image size \(S) leaves no patch after the stem")
        let (N, D, V) = (G * G, model.dim, model.numClasses)
        let T = N + model.prefixTokens
        self.imageSize = S
        self.gridSize = G
        self.numPatches = N
        self.tokens = T
        let resampler =
            G == model.gridSize
            ? nil
            : PositionEmbeddingResampler(
                prefix: model.positionPrefix, oldGrid: model.gridSize, newGrid: G, dim: D,
                mode: interpolation, antialias: antialias,
                rule: model.config.modelArgs.posEmbedResize)
        self.resampler = resampler
        let patchDim = model.channels * model.patchSize * model.patchSize
        let positions = N + model.positionPrefix
        var f = ArenaPlanner()
        var g = ArenaPlanner()
        posEmbed = f.take(resampler == nil ? 0 : positions * D)
        if let stem = model.config.modelArgs.stem {
            self.stem = StemPlan(
                stem: stem, channels: model.channels, batch: B, imageSize: S, training: training,
                forward: &f, backward: &g)
            patches = 0
        } else {
            self.stem = nil
            patches = f.take(B * N * patchDim)
        }
        patchEmbed = f.take(B * N * D)
        x0 = f.take(B * T * D)
        // equal chunks of about chunkRows rows (no small ragged last chunk)
        let chunkCount = (B * T + chunkRows - 1) / max(chunkRows, 1)
        let chunk = training ? B : (B + chunkCount - 1) / max(chunkCount, 1)
        self.chunkImages = chunk
        // per-block buffers hold one chunk (the whole batch in training); the residual stream
        // (xOut) always holds the batch
        let classRows = !model.avgPool
        func plan(_ A: Int, _ H: Int, _ NH: Int, last: Bool) -> BlockActivationOffsets {
            let C = chunk
            var o = BlockActivationOffsets()
            o.ln1 = f.take(C * T * D)
            o.ln1Mean = f.take(C * T)
            o.ln1Rstd = f.take(C * T)
            o.qkv = f.take(C * T * 3 * A)
            o.att = f.take(C * NH * T * T)
            o.attnOut = f.take(C * T * A)
            o.xMid = f.take(C * T * D)
            o.ln2 = f.take(C * T * D)
            o.ln2Mean = f.take(C * T)
            o.ln2Rstd = f.take(C * T)
            o.gelu = f.take(C * T * H)
            // inference keeps no pre-activation (the naive path applies GELU in place)
            o.fc1 = training ? f.take(C * T * H) : o.gelu
            o.xOut = f.take(B * T * D)
            if last && classRows {
                o.q = f.take(C * A)
                o.xCls = f.take(C * D)
                o.lnCls = f.take(C * D)
            }
            return o
        }
        let maxA = model.blocks.map(\.attentionWidth).max()!
        let maxH = model.blocks.map(\.mlpHidden).max()!
        let maxNH = model.blocks.map(\.numHeads).max()!
        if training {
            blocks = model.blocks.indices.map {
                let g = model.blocks[$0]
                return plan(
                    g.attentionWidth, g.mlpHidden, g.numHeads, last: $0 == model.blocks.count - 1)
            }
        } else {
            // one set, sized for the widest block
            blocks = Array(
                repeating: plan(maxA, maxH, maxNH, last: true), count: model.blocks.count)
        }
        // inference: block l writes xOut when l is even, else xAlt (x0 is dead after block 0)
        xAlt = training ? 0 : x0
        pooled = f.take(B * D)
        normMean = f.take(B)
        normRstd = f.take(B)
        preLogits = f.take(B * D)
        logits = f.take(B * V)

        self.training = training
        let Bg = training ? B : 0  // no backward buffers for inference
        dresid = g.take(Bg * T * D)
        dln = g.take(Bg * T * D)
        dqkv = g.take(Bg * T * 3 * maxA)
        datt = g.take(Bg * maxNH * T * T)
        dattnOut = g.take(Bg * T * maxA)
        dgelu = g.take(Bg * T * maxH)
        dfc1 = g.take(Bg * T * maxH)
        dpatchEmbed = g.take(Bg * N * D)
        dpooled = g.take(Bg * D)
        dpreLogits = g.take(Bg * D)
        dlogits = g.take(Bg * V)
        dposEmbed = g.take(resampler == nil || !training ? 0 : positions * D)
        dq = g.take(classRows ? Bg * maxA : 0)
        dlnCls = g.take(classRows ? Bg * D : 0)
        self.classTokenBuffers = classRows

        self.batchSize = B
        dropPathScales = FloatArena(count: training ? model.blocks.count * 2 * B : 0)
        forwardArena = FloatArena(count: f.count)
        backwardArena = FloatArena(count: g.count)
    }

    /// Bytes held by both arenas (the resampler's scratch aside).
    public var byteCount: Int { (forwardArena.count + backwardArena.count) * 4 }

    @inline(__always) func fwd(_ offset: Int) -> UnsafeMutablePointer<Float> {
        forwardArena.base + offset
    }

    @inline(__always) func bwd(_ offset: Int) -> UnsafeMutablePointer<Float> {
        backwardArena.base + offset
    }

    /// Logits (B, V) of the last forward pass.
    public var logitsPointer: UnsafeMutablePointer<Float> { fwd(logits) }
    /// Pooled, normalised features (B, D) of the last forward pass (timm's
    /// `forward_head(pre_logits=True)`): the embedding `catlip embed` writes.
    public var preLogitsPointer: UnsafeMutablePointer<Float> { fwd(preLogits) }
}
