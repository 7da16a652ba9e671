/// One named parameter tensor inside the parameter arena.
public struct ParameterSpec: Sendable, Equatable {
    /// timm's name, e.g. `blocks.0.attn.qkv.weight`.
    public var name: String
    /// timm's shape, e.g. `[3A, D]`.
    public var shape: [Int]
    /// Offset of the first value in the arena (floats).
    public var offset: Int
    /// Number of values.
    public var count: Int { shape.reduce(1, *) }
    /// AdamW weight decay applies to parameters with two or more dimensions (Linear and conv
    /// weights, cls_token, pos_embed), not to biases or LayerNorm parameters.
    public var decays: Bool { shape.count >= 2 }
}

/// Offsets of one block's parameters in the arena.
struct BlockParameterOffsets {
    var norm1Weight = 0, norm1Bias = 0
    var qkvWeight = 0
    var qkvBias: Int?
    var projWeight = 0, projBias = 0
    var norm2Weight = 0, norm2Bias = 0
    var fc1Weight = 0, fc1Bias = 0
    var fc2Weight = 0, fc2Bias = 0
}

/// Offsets of a convolutional stem's parameters (convolution i's weight; BatchNorm weight and
/// bias for all but the last, which has a bias) and of its BatchNorm running statistics in
/// the buffer arena.
struct StemOffsets {
    var convWeight: [Int] = []
    var bnWeight: [Int] = []
    var bnBias: [Int] = []
    var lastBias = 0
    var runningMean: [Int] = []
    var runningVar: [Int] = []
}

/// Offsets of every parameter in the arena: the named views the layers use.
struct ParameterOffsets {
    var clsToken: Int?
    var posEmbed = 0
    var patchWeight = 0, patchBias = 0
    /// The convolutional stem's (instead of patchWeight and patchBias), when the model has one.
    var stem: StemOffsets?
    var blocks: [BlockParameterOffsets] = []
    /// `norm.*` (token pooling) or `fc_norm.*` (avg pooling).
    var finalNormWeight = 0, finalNormBias = 0
    var headWeight = 0, headBias = 0
}

/// The parameters of a model in timm's `named_parameters()` order with timm's names and shapes,
/// packed one after another (each 64-byte aligned) in one arena.
public struct ParameterLayout: Sendable {
    /// Every parameter, in timm's order.
    public let specs: [ParameterSpec]
    /// Floats in the arena.
    public let totalCount: Int
    /// Non-trainable state saved with the model (BatchNorm running statistics, timm's
    /// buffers), offsets into the model's buffer arena; empty for a patchify model.
    public let buffers: [ParameterSpec]
    /// Floats in the buffer arena.
    public let bufferCount: Int
    private let index: [String: Int]
    private let bufferIndex: [String: Int]
    let offsets: ParameterOffsets

    /// The layout for a (validated) config.
    public init(config: ModelConfig) {
        let a = config.modelArgs
        let (D, C, P, V) = (a.embedDim, a.inChans, a.patchSize, a.numClasses)
        let positions = a.positionRows(grid: a.gridSize(imageSize: a.imgSize))
        var planner = ArenaPlanner()
        var specs: [ParameterSpec] = []
        func add(_ name: String, _ shape: [Int]) -> Int {
            let off = planner.take(shape.reduce(1, *))
            specs.append(ParameterSpec(name: name, shape: shape, offset: off))
            return off
        }
        var o = ParameterOffsets()
        if a.classToken { o.clsToken = add("cls_token", [1, 1, D]) }
        o.posEmbed = add("pos_embed", [1, positions, D])
        var bufferPlanner = ArenaPlanner()
        var buffers: [ParameterSpec] = []
        if let stem = a.stem {
            // timm's ConvStem names: patch_embed.backbone.{i}.conv / .bn
            var st = StemOffsets()
            var channels = C
            let last = stem.widths.count - 1
            for (i, w) in stem.widths.enumerated() {
                let k = stem.kernelSizes[i]
                let p = "patch_embed.backbone.\(i)."
                st.convWeight.append(add(p + "conv.weight", [w, channels, k, k]))
                if i == last {
                    st.lastBias = add(p + "conv.bias", [w])
                } else {
                    st.bnWeight.append(add(p + "bn.weight", [w]))
                    st.bnBias.append(add(p + "bn.bias", [w]))
                    for (name, list) in [("running_mean", \StemOffsets.runningMean), ("running_var", \StemOffsets.runningVar)] {
                        let off = bufferPlanner.take(w)
                        buffers.append(ParameterSpec(name: p + "bn." + name, shape: [w], offset: off))
                        st[keyPath: list].append(off)
                    }
                }
                channels = w
            }
            o.stem = st
        } else {
            o.patchWeight = add("patch_embed.proj.weight", [D, C, P, P])
            o.patchBias = add("patch_embed.proj.bias", [D])
        }
        for (i, g) in config.blocks.enumerated() {
            let p = "blocks.\(i)."
            let (A, H) = (g.attentionWidth, g.mlpHidden)
            var b = BlockParameterOffsets()
            b.norm1Weight = add(p + "norm1.weight", [D])
            b.norm1Bias = add(p + "norm1.bias", [D])
            b.qkvWeight = add(p + "attn.qkv.weight", [3 * A, D])
            if a.qkvBias { b.qkvBias = add(p + "attn.qkv.bias", [3 * A]) }
            b.projWeight = add(p + "attn.proj.weight", [D, A])
            b.projBias = add(p + "attn.proj.bias", [D])
            b.norm2Weight = add(p + "norm2.weight", [D])
            b.norm2Bias = add(p + "norm2.bias", [D])
            b.fc1Weight = add(p + "mlp.fc1.weight", [H, D])
            b.fc1Bias = add(p + "mlp.fc1.bias", [H])
            b.fc2Weight = add(p + "mlp.fc2.weight", [D, H])
            b.fc2Bias = add(p + "mlp.fc2.bias", [D])
            o.blocks.append(b)
        }
        let norm = a.globalPool == "avg" ? "fc_norm" : "norm"
        o.finalNormWeight = add(norm + ".weight", [D])
        o.finalNormBias = add(norm + ".bias", [D])
        o.headWeight = add("head.weight", [V, D])
        o.headBias = add("head.bias", [V])
        self.specs = specs
        self.totalCount = planner.count
        self.buffers = buffers
        self.bufferCount = bufferPlanner.count
        self.offsets = o
        var index: [String: Int] = [:]
        for (i, s) in specs.enumerated() { index[s.name] = i }
        self.index = index
        var bufferIndex: [String: Int] = [:]
        for (i, s) in buffers.enumerated() { bufferIndex[s.name] = i }
        self.bufferIndex = bufferIndex
    }

    /// The parameter called `name`, if the model has it.
    public func spec(named name: String) -> ParameterSpec? {
        index[name].map { specs[$0] }
    }

    /// The buffer (running statistic) called `name`, if the model has it.
    public func buffer(named name: String) -> ParameterSpec? {
        bufferIndex[name].map { buffers[$0] }
    }

    /// Number of trainable values (without alignment padding).
    public var parameterCount: Int { specs.reduce(0) { $0 + $1.count } }
}
