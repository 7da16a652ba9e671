import Foundation
import Support

/// A model configuration that is unreadable or inconsistent: the file and the problem.
public struct ModelConfigError: Error, CustomStringConvertible, Equatable {
    /// The config file (or "<config>" for an in-memory value).
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// What the engine supports, the bounds `ModelConfig.validate` holds every config.json value
/// to (and `TrainConfig` the training settings that become one), so that a config read from a
/// file can neither trap a conversion or a multiplication nor ask for an unbounded allocation.
public enum ModelLimits {
    /// Input channels: images are decoded to RGB and normalised per channel, so exactly 3.
    public static let channels = 3
    /// Most convolutions in a stem (corenet's has 3).
    public static let maxStemConvolutions = 8
    /// Largest stem kernel side.
    public static let maxStemKernel = 64
    /// Largest image side (img_size, pretrained_cfg.input_size), in pixels.
    public static let maxImageSize = 4096
    /// Most patches per side (img_size / patch_size): 128 x 128 patch tokens (SAM-size grids
    /// are 64 x 64), whose attention matrices stay within the activation limit.
    public static let maxGrid = 128
    /// Widest token (embed_dim).
    public static let maxEmbedDim = 65_536
    /// Most blocks (depth).
    public static let maxDepth = 1024
    /// Most classes of the head (num_classes).
    public static let maxClasses = 1 << 22
    /// mlp_ratio and the layer-scaling factors alpha and beta, relative to embed_dim.
    public static let scalingFactors: ClosedRange<Double> = 1e-3...1e3
    /// Most trainable values (4.3 billion floats, 16 GiB at fp32; ViT-g/14 has 1 billion).
    public static let maxParameters = 1 << 32
    /// Most activation floats one image may need in a forward pass (4 GiB): bounds the
    /// tokens x heads x tokens attention matrices of large grids.
    public static let maxActivationFloatsPerImage = 1 << 30
    /// pretrained_cfg.mean, per channel, for pixels in [0, 1].
    public static let meanRange: ClosedRange<Double> = -1000...1000
    /// pretrained_cfg.std, per channel (its reciprocal is taken in float).
    public static let stdRange: ClosedRange<Double> = 1e-3...1000
    /// pretrained_cfg.crop_pct: the evaluation resize (side / crop_pct) is at most 4x the side,
    /// as `Geometry.evalCropPctRange` holds it.
    public static let cropPct: ClosedRange<Double> = 0.25...1
    /// pretrained_cfg.interpolation names the evaluation resize implements.
    public static let interpolations = ["bilinear", "bicubic"]
}

/// OpenELM-style layer-wise scaling (catlip's own `model_args` key `layer_scaling`; timm has no
/// equivalent): per block, the head count and MLP width grow linearly over depth.
public struct LayerScaling: Codable, Sendable, Equatable {
    /// The head dimension h, the same in every block; widths are multiples of it.
    public var headDim: Int
    /// `[alpha_min, alpha_max]`: attention width factor at the first and last block.
    public var alpha: [Double]
    /// `[beta_min, beta_max]`: MLP width factor at the first and last block.
    public var beta: [Double]

    /// A scaling from its three settings.
    public init(headDim: Int, alpha: [Double], beta: [Double]) {
        self.headDim = headDim
        self.alpha = alpha
        self.beta = beta
    }

    enum CodingKeys: String, CodingKey {
        case headDim = "head_dim"
        case alpha, beta
    }
}

/// A convolutional stem in place of the single patchify convolution (catlip's `model_args` key
/// `stem`; corenet's ViT, which CatLIP's released models use, and timm's `vit_base_mci_224`
/// build one): convolutions i = 0, 1, ... with `widths[i]` output channels, each followed by
/// BatchNorm (batch statistics in training, running ones in evaluation) and exact GELU, except
/// the last, which has a bias instead and outputs embed_dim channels (timm's `ConvStem`). Each
/// convolution is non-overlapping (kernel = stride); `paddings[i]` zeros surround its input
/// (corenet pads the first 4x4 convolution by 1). Grid side: g ← floor((g + 2p - k) / s) + 1
/// per convolution, from the image side.
public struct ConvStemArgs: Codable, Sendable, Equatable {
    /// Output channels of each convolution; the last equals embed_dim.
    public var widths: [Int]
    /// Kernel side of each convolution (equal to its stride).
    public var kernelSizes: [Int]
    /// Stride of each convolution.
    public var strides: [Int]
    /// Zero padding on every side of each convolution's input.
    public var paddings: [Int]
    /// BatchNorm's epsilon (PyTorch's default 1e-5).
    public var bnEps: Double
    /// BatchNorm's running-average momentum (PyTorch's default 0.1).
    public var bnMomentum: Double

    /// A stem from its settings (BatchNorm at PyTorch's defaults unless given).
    public init(
        widths: [Int], kernelSizes: [Int], strides: [Int], paddings: [Int], bnEps: Double = 1e-5,
        bnMomentum: Double = 0.1
    ) {
        self.widths = widths
        self.kernelSizes = kernelSizes
        self.strides = strides
        self.paddings = paddings
        self.bnEps = bnEps
        self.bnMomentum = bnMomentum
    }

    /// corenet's ViT stem for width D: 4x4/4 (padding 1), 2x2/2, 2x2/2, inner width
    /// max(32, D / 4).
    public static func corenet(embedDim: Int) -> ConvStemArgs {
        let w = max(32, embedDim / 4)
        return ConvStemArgs(
            widths: [w, w, embedDim], kernelSizes: [4, 2, 2], strides: [4, 2, 2], paddings: [1, 0, 0])
    }

    /// Grid side after each convolution for an image of side `side` (0 once a convolution no
    /// longer fits, or for settings `ModelConfig.validate` refuses: lists of unequal length
    /// stop at the shortest; a non-positive stride or kernel, or a padding or side out of
    /// range, gives 0).
    public func grids(imageSize side: Int) -> [Int] {
        var g = side
        var out: [Int] = []
        for i in 0..<min(widths.count, kernelSizes.count, strides.count, paddings.count) {
            let (k, s, p) = (kernelSizes[i], strides[i], paddings[i])
            let sane = s > 0 && k > 0 && (0...(1 << 30)).contains(p) && (0...(1 << 40)).contains(g)
            g = sane && g + 2 * p >= k ? (g + 2 * p - k) / s + 1 : 0
            out.append(g)
        }
        return out
    }

    enum CodingKeys: String, CodingKey {
        case widths
        case kernelSizes = "kernel_sizes"
        case strides, paddings
        case bnEps = "bn_eps"
        case bnMomentum = "bn_momentum"
    }

    /// Decodes; the BatchNorm settings default to PyTorch's.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        widths = try c.decode([Int].self, forKey: .widths)
        kernelSizes = try c.decode([Int].self, forKey: .kernelSizes)
        strides = try c.decode([Int].self, forKey: .strides)
        paddings = try c.decode([Int].self, forKey: .paddings)
        bnEps = try c.decodeIfPresent(Double.self, forKey: .bnEps) ?? 1e-5
        bnMomentum = try c.decodeIfPresent(Double.self, forKey: .bnMomentum) ?? 0.1
    }
}

/// How pos_embed is resampled to another patch grid (catlip's `model_args` key
/// `pos_embed_resize`).
public enum PosEmbedResize: String, Codable, Sendable, Equatable {
    /// timm's `resample_abs_pos_embed`: 2-D interpolation of the G x G grid (bicubic with
    /// antialias unless the caller says otherwise).
    case grid2d = "2d"
    /// corenet's `LearnablePositionalEmbedding`: `F.interpolate(mode="bilinear")` of the
    /// (1, 1, N, D) embedding to (N', D), i.e. linear interpolation over the flattened sequence
    /// (align_corners false), no antialias.
    case sequenceLinear = "sequence_linear"
}

/// timm's `VisionTransformer` keyword arguments (`model_args` of a hub config.json), with timm's
/// defaults for keys that are absent. Keys catlip does not implement are accepted only at their
/// timm default values (e.g. `reg_tokens: 0`, `pre_norm: false`); other unknown keys are
/// ignored.
public struct ModelArgs: Codable, Sendable, Equatable {
    /// Square input image side S (timm accepts an int or `[S, S]`).
    public var imgSize: Int
    /// Patch side P (convolution kernel = stride = P); the grid is floor(S / P) per side.
    public var patchSize: Int
    /// Input channels (3 for RGB).
    public var inChans: Int
    /// Classes V of the head Linear(D, V).
    public var numClasses: Int
    /// Pooling: "token" (final norm, class token) or "avg" (mean of patch tokens, then fc_norm).
    public var globalPool: String
    /// Embedding dimension D.
    public var embedDim: Int
    /// Number of blocks.
    public var depth: Int
    /// Heads per block (ignored with layer scaling).
    public var numHeads: Int
    /// MLP hidden width = int(mlpRatio * D) (ignored with layer scaling).
    public var mlpRatio: Double
    /// Whether attn.qkv has a bias.
    public var qkvBias: Bool
    /// Whether a class token is prepended.
    public var classToken: Bool
    /// Optional layer-wise scaling.
    public var layerScaling: LayerScaling?
    /// timm's `no_embed_class`: pos_embed covers the patch tokens only and the class token gets
    /// no position (corenet's ViT, DeiT-III).
    public var noEmbedClass: Bool
    /// A convolutional stem instead of the patchify convolution (nil: timm's `PatchEmbed`);
    /// `patch_size` is then the product of its strides.
    public var stem: ConvStemArgs?
    /// How pos_embed follows another grid (timm's 2-D rule unless the model says otherwise).
    public var posEmbedResize: PosEmbedResize

    /// Arguments with timm's defaults for everything not given (ViT-B/16 at 224 px, 1000 classes).
    public init(
        imgSize: Int = 224, patchSize: Int = 16, inChans: Int = 3, numClasses: Int = 1000,
        globalPool: String = "token", embedDim: Int = 768, depth: Int = 12, numHeads: Int = 12,
        mlpRatio: Double = 4.0, qkvBias: Bool = true, classToken: Bool = true,
        layerScaling: LayerScaling? = nil, noEmbedClass: Bool = false, stem: ConvStemArgs? = nil,
        posEmbedResize: PosEmbedResize = .grid2d
    ) {
        self.imgSize = imgSize
        self.patchSize = patchSize
        self.inChans = inChans
        self.numClasses = numClasses
        self.globalPool = globalPool
        self.embedDim = embedDim
        self.depth = depth
        self.numHeads = numHeads
        self.mlpRatio = mlpRatio
        self.qkvBias = qkvBias
        self.classToken = classToken
        self.layerScaling = layerScaling
        self.noEmbedClass = noEmbedClass
        self.stem = stem
        self.posEmbedResize = posEmbedResize
    }

    /// Patch-grid side for an image of side `side`: floor(S / P), or what the stem's
    /// convolutions leave.
    public func gridSize(imageSize side: Int) -> Int {
        guard let stem else { return side / patchSize }
        return stem.grids(imageSize: side).last ?? 0
    }

    /// Rows of pos_embed: the patch tokens, plus the class token's unless `noEmbedClass`.
    public func positionRows(grid: Int) -> Int {
        grid * grid + (classToken && !noEmbedClass ? 1 : 0)
    }

    enum CodingKeys: String, CodingKey {
        case imgSize = "img_size"
        case patchSize = "patch_size"
        case inChans = "in_chans"
        case numClasses = "num_classes"
        case globalPool = "global_pool"
        case embedDim = "embed_dim"
        case depth
        case numHeads = "num_heads"
        case mlpRatio = "mlp_ratio"
        case qkvBias = "qkv_bias"
        case classToken = "class_token"
        case layerScaling = "layer_scaling"
        case noEmbedClass = "no_embed_class"
        case stem
        case posEmbedResize = "pos_embed_resize"
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Decodes timm keyword arguments; `img_size` may be an int or a square `[S, S]` list.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelArgs()
        if let s = try? c.decodeIfPresent(Int.self, forKey: .imgSize) {
            imgSize = s
        } else if let list = try c.decodeIfPresent([Int].self, forKey: .imgSize) {
            guard list.count == 2, list[0] == list[1] else {
                throw DecodingError.dataCorruptedError(
                    forKey: .imgSize, in: c,
                    debugDescription: "img_size \(list) must be an int or a square [S, S]")
            }
            imgSize = list[0]
        } else {
            imgSize = d.imgSize
        }
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        inChans = try c.decodeIfPresent(Int.self, forKey: .inChans) ?? d.inChans
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? d.numClasses
        globalPool = try c.decodeIfPresent(String.self, forKey: .globalPool) ?? d.globalPool
        embedDim = try c.decodeIfPresent(Int.self, forKey: .embedDim) ?? d.embedDim
        depth = try c.decodeIfPresent(Int.self, forKey: .depth) ?? d.depth
        numHeads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? d.numHeads
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? d.mlpRatio
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? d.qkvBias
        classToken = try c.decodeIfPresent(Bool.self, forKey: .classToken) ?? d.classToken
        layerScaling = try c.decodeIfPresent(LayerScaling.self, forKey: .layerScaling)
        noEmbedClass = try c.decodeIfPresent(Bool.self, forKey: .noEmbedClass) ?? false
        stem = try c.decodeIfPresent(ConvStemArgs.self, forKey: .stem)
        posEmbedResize =
            try c.decodeIfPresent(PosEmbedResize.self, forKey: .posEmbedResize) ?? .grid2d

        // timm options that change the architecture: accepted only at their defaults.
        let any = try decoder.container(keyedBy: AnyKey.self)
        func reject(_ key: String, _ why: String) -> DecodingError {
            DecodingError.dataCorruptedError(
                forKey: AnyKey(stringValue: key), in: any,
                debugDescription: "model_args.\(key) \(why) is not supported by catlip")
        }
        for key in ["pre_norm", "qk_norm", "dynamic_img_pad"] {
            if let v = try? any.decodeIfPresent(Bool.self, forKey: AnyKey(stringValue: key)), v {
                throw reject(key, "= true")
            }
        }
        if let v = try? any.decodeIfPresent(Bool.self, forKey: AnyKey(stringValue: "proj_bias")),
            !v
        {
            throw reject("proj_bias", "= false")
        }
        if let v = try? any.decodeIfPresent(Int.self, forKey: AnyKey(stringValue: "reg_tokens")),
            v != 0
        {
            throw reject("reg_tokens", "= \(v)")
        }
        if let v = try? any.decodeIfPresent(Double.self, forKey: AnyKey(stringValue: "init_values"))
        {
            throw reject("init_values", "= \(v) (LayerScale)")
        }
        if let v = try? any.decodeIfPresent(Bool.self, forKey: AnyKey(stringValue: "fc_norm")),
            v != (globalPool == "avg")
        {
            throw reject("fc_norm", "= \(v) with global_pool '\(globalPool)'")
        }
        if let v = try? any.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "pos_embed")),
            v != "learn"
        {
            throw reject("pos_embed", "= '\(v)'")
        }
    }

    /// Encodes with timm's keyword names (`layer_scaling`, `no_embed_class`, `stem` and
    /// `pos_embed_resize` only when not at their defaults, so existing configs keep their bytes).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(imgSize, forKey: .imgSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(inChans, forKey: .inChans)
        try c.encode(numClasses, forKey: .numClasses)
        try c.encode(globalPool, forKey: .globalPool)
        try c.encode(embedDim, forKey: .embedDim)
        try c.encode(depth, forKey: .depth)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(mlpRatio, forKey: .mlpRatio)
        try c.encode(qkvBias, forKey: .qkvBias)
        try c.encode(classToken, forKey: .classToken)
        try c.encodeIfPresent(layerScaling, forKey: .layerScaling)
        if noEmbedClass { try c.encode(true, forKey: .noEmbedClass) }
        try c.encodeIfPresent(stem, forKey: .stem)
        if posEmbedResize != .grid2d { try c.encode(posEmbedResize, forKey: .posEmbedResize) }
    }
}

/// timm's `pretrained_cfg`: how images are prepared for the model at evaluation time.
public struct PretrainedConfig: Codable, Sendable, Equatable {
    /// `[C, H, W]` of the evaluation input.
    public var inputSize: [Int]
    /// Per-channel mean subtracted from [0, 1] pixels (CatLIP: 0).
    public var mean: [Double]
    /// Per-channel divisor after the mean (CatLIP: 1).
    public var std: [Double]
    /// Centre-crop fraction: resize the short side to S / cropPct, then crop S.
    public var cropPct: Double
    /// Resize filter name ("bilinear", "bicubic").
    public var interpolation: String
    /// Crop mode ("center"), when given.
    public var cropMode: String?
    /// Classes, when given.
    public var numClasses: Int?
    /// Name of the first layer, when given ("patch_embed.proj").
    public var firstConv: String?
    /// Name of the classifier, when given ("head").
    public var classifier: String?

    /// A configuration; defaults are CatLIP's (no normalisation, crop 0.875, bilinear).
    public init(
        inputSize: [Int], mean: [Double] = [0, 0, 0], std: [Double] = [1, 1, 1],
        cropPct: Double = 0.875, interpolation: String = "bilinear", cropMode: String? = "center",
        numClasses: Int? = nil, firstConv: String? = "patch_embed.proj",
        classifier: String? = "head"
    ) {
        self.inputSize = inputSize
        self.mean = mean
        self.std = std
        self.cropPct = cropPct
        self.interpolation = interpolation
        self.cropMode = cropMode
        self.numClasses = numClasses
        self.firstConv = firstConv
        self.classifier = classifier
    }

    enum CodingKeys: String, CodingKey {
        case inputSize = "input_size"
        case mean, std
        case cropPct = "crop_pct"
        case interpolation
        case cropMode = "crop_mode"
        case numClasses = "num_classes"
        case firstConv = "first_conv"
        case classifier
    }

    /// Decodes, with CatLIP's defaults for absent keys except `input_size`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inputSize = try c.decode([Int].self, forKey: .inputSize)
        mean = try c.decodeIfPresent([Double].self, forKey: .mean) ?? [0, 0, 0]
        std = try c.decodeIfPresent([Double].self, forKey: .std) ?? [1, 1, 1]
        cropPct = try c.decodeIfPresent(Double.self, forKey: .cropPct) ?? 0.875
        interpolation = try c.decodeIfPresent(String.self, forKey: .interpolation) ?? "bilinear"
        cropMode = try c.decodeIfPresent(String.self, forKey: .cropMode)
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses)
        firstConv = try c.decodeIfPresent(String.self, forKey: .firstConv)
        classifier = try c.decodeIfPresent(String.self, forKey: .classifier)
    }
}

/// The shape of one transformer block (its own widths under layer-wise scaling).
public struct BlockGeometry: Sendable, Equatable {
    /// Attention heads.
    public var numHeads: Int
    /// Dimension of each head.
    public var headDim: Int
    /// Attention width A = numHeads * headDim: qkv is Linear(D, 3A), proj is Linear(A, D).
    public var attentionWidth: Int { numHeads * headDim }
    /// MLP hidden width H: fc1 is Linear(D, H), fc2 is Linear(H, D).
    public var mlpHidden: Int

    /// A block shape.
    public init(numHeads: Int, headDim: Int, mlpHidden: Int) {
        self.numHeads = numHeads
        self.headDim = headDim
        self.mlpHidden = mlpHidden
    }
}

/// A model's config.json in timm's hub layout: architecture, num_classes, num_features,
/// global_pool, model_args (timm keyword names plus catlip's `layer_scaling`) and
/// pretrained_cfg. Unknown keys are ignored when reading.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// Architecture name ("vit_catlip" for models written here).
    public var architecture: String
    /// Classes V (equals modelArgs.numClasses).
    public var numClasses: Int
    /// Pooled feature width (equals modelArgs.embedDim).
    public var numFeatures: Int
    /// Pooling (equals modelArgs.globalPool).
    public var globalPool: String
    /// The VisionTransformer keyword arguments.
    public var modelArgs: ModelArgs
    /// Evaluation preprocessing.
    public var pretrainedCfg: PretrainedConfig
    /// The stochastic depth the model was trained with (timm's model_args `drop_path_rate`,
    /// which timm's `create_model` builds the model with; 0 when absent). Kept beside
    /// `modelArgs` rather than in it: it changes training only, so neither the architecture
    /// check of `model.init` nor an index's model fingerprint should see it.
    public var dropPathRate: Double = 0

    /// A config whose top-level fields follow `modelArgs`; pretrained_cfg defaults to CatLIP's
    /// preprocessing at the model's image size.
    public init(
        modelArgs: ModelArgs, architecture: String = "vit_catlip",
        pretrainedCfg: PretrainedConfig? = nil
    ) {
        self.architecture = architecture
        self.numClasses = modelArgs.numClasses
        self.numFeatures = modelArgs.embedDim
        self.globalPool = modelArgs.globalPool
        self.modelArgs = modelArgs
        self.pretrainedCfg =
            pretrainedCfg
            ?? PretrainedConfig(
                inputSize: [modelArgs.inChans, modelArgs.imgSize, modelArgs.imgSize],
                mean: Array(repeating: 0, count: modelArgs.inChans),
                std: Array(repeating: 1, count: modelArgs.inChans),
                numClasses: modelArgs.numClasses)
    }

    enum CodingKeys: String, CodingKey {
        case architecture
        case numClasses = "num_classes"
        case numFeatures = "num_features"
        case globalPool = "global_pool"
        case modelArgs = "model_args"
        case pretrainedCfg = "pretrained_cfg"
    }

    /// Decodes a hub config; absent top-level num_classes, num_features and global_pool are
    /// taken from model_args.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelArgs = try c.decodeIfPresent(ModelArgs.self, forKey: .modelArgs) ?? ModelArgs()
        architecture = try c.decodeIfPresent(String.self, forKey: .architecture) ?? "vit_catlip"
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? modelArgs.numClasses
        numFeatures = try c.decodeIfPresent(Int.self, forKey: .numFeatures) ?? modelArgs.embedDim
        globalPool = try c.decodeIfPresent(String.self, forKey: .globalPool) ?? modelArgs.globalPool
        pretrainedCfg = try c.decode(PretrainedConfig.self, forKey: .pretrainedCfg)
        if c.contains(.modelArgs) {
            let args = try c.nestedContainer(keyedBy: ModelArgs.AnyKey.self, forKey: .modelArgs)
            dropPathRate = try args.decodeIfPresent(Double.self, forKey: Self.dropPathKey) ?? 0
        }
    }

    static let dropPathKey = ModelArgs.AnyKey(stringValue: "drop_path_rate")

    /// Encodes timm's hub layout; `drop_path_rate` joins model_args when it is not 0.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(numClasses, forKey: .numClasses)
        try c.encode(numFeatures, forKey: .numFeatures)
        try c.encode(globalPool, forKey: .globalPool)
        let args = c.superEncoder(forKey: .modelArgs)
        try modelArgs.encode(to: args)
        if dropPathRate != 0 {
            var extra = args.container(keyedBy: ModelArgs.AnyKey.self)
            try extra.encode(dropPathRate, forKey: Self.dropPathKey)
        }
        try c.encode(pretrainedCfg, forKey: .pretrainedCfg)
    }

    /// Parses and validates config.json bytes; `path` names the file in errors.
    public static func decode(_ data: Data, path: String = "<config>") throws -> ModelConfig {
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let e as DecodingError {
            // Foundation reports a number its type cannot hold (2.5 or 1e300 for an Int) as
            // invalid JSON at the top level: find and name it instead.
            if case .dataCorrupted(let ctx) = e, ctx.codingPath.isEmpty,
                let root = try? JSONSerialization.jsonObject(with: data)
            {
                throw ModelConfigError(
                    path: path,
                    problem: unrepresentableNumber(in: root, at: "", integer: false)
                        ?? "a number does not fit its field")
            }
            throw ModelConfigError(path: path, problem: describe(e))
        } catch {
            throw ModelConfigError(path: path, problem: "\(error)")
        }
        try config.validate(path: path)
        return config
    }

    /// Keys whose values are integers (or lists of them) in timm's config.json.
    static let integerKeys: Set<String> = [
        "num_classes", "num_features", "img_size", "patch_size", "in_chans", "embed_dim", "depth",
        "num_heads", "reg_tokens", "head_dim", "input_size", "widths", "kernel_sizes", "strides",
        "paddings",
    ]

    /// The first number under `value` that its key's type cannot hold (not whole, or past
    /// 64 bits, under an integer key; not finite elsewhere), as "key value is ...", or nil.
    static func unrepresentableNumber(in value: Any, at path: String, integer: Bool) -> String? {
        if let object = value as? [String: Any] {
            for (key, v) in object.sorted(by: { $0.key < $1.key }) {
                let inner = path.isEmpty ? key : path + "." + key
                if let p = unrepresentableNumber(in: v, at: inner, integer: integerKeys.contains(key)) {
                    return p
                }
            }
        } else if let array = value as? [Any] {
            for v in array {
                if let p = unrepresentableNumber(in: v, at: path, integer: integer) { return p }
            }
        } else if let number = value as? NSNumber {
            let d = number.doubleValue
            if integer && !(d.isFinite && d == d.rounded() && abs(d) < 0x1p63) {
                return "\(path) \(number) is not a whole number within 64 bits"
            }
            if !d.isFinite { return "\(path) \(number) is not a finite number" }
        }
        return nil
    }

    /// Largest config.json read (hub configs are a few KB; label lists of 21k classes stay far
    /// below this).
    public static let maxFileBytes = 16 << 20

    /// Reads and validates a config.json file: a regular file of at most `maxFileBytes`.
    public static func read(path: String) throws -> ModelConfig {
        let bytes: [UInt8]
        do {
            bytes = try SafeFile.read(path, maxBytes: maxFileBytes)
        } catch let e as FileIOError {
            throw ModelConfigError(path: path, problem: e.problem)
        }
        return try decode(Data(bytes), path: path)
    }

    /// The config as pretty-printed JSON (timm's key names), newline-terminated, keys sorted so
    /// that the same model gives the same bytes in every process (a checksum of a model
    /// directory means something).
    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try e.encode(self)
        data.append(0x0a)
        return data
    }

    /// Writes config.json atomically.
    public func write(path: String) throws {
        try AtomicFile.write(path: path, bytes: Array(try encoded()))
    }

    static func describe(_ e: DecodingError) -> String {
        func at(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "top level" : path.map { $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .typeMismatch(let type, let ctx):
            return "\(at(ctx.codingPath)): expected \(type): \(ctx.debugDescription)"
        case .valueNotFound(let type, let ctx):
            return "\(at(ctx.codingPath)): missing \(type) value"
        case .keyNotFound(let key, let ctx):
            return "\(at(ctx.codingPath + [key])): required key is missing"
        case .dataCorrupted(let ctx):
            return "\(at(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default:
            return "\(e)"
        }
    }

    /// Checks that the config describes a model catlip can build, every value within
    /// `ModelLimits` (the bounds are listed there), before anything is converted, multiplied or
    /// allocated; throws naming the key and the problem. After it passes, `blocks`, the
    /// parameter layout and the evaluation transform's sizes are all computable without
    /// overflow.
    public func validate(path: String = "<config>") throws {
        func fail(_ problem: String) -> ModelConfigError {
            ModelConfigError(path: path, problem: problem)
        }
        func bound(_ key: String, _ value: Int, _ range: ClosedRange<Int>, _ why: String) throws {
            if !range.contains(value) {
                throw fail(
                    "\(key) \(value) is out of range \(range.lowerBound)...\(range.upperBound) "
                        + "(\(why))")
            }
        }
        func bound(_ key: String, _ value: Double, _ range: ClosedRange<Double>, _ why: String)
            throws
        {
            if !(value.isFinite && range.contains(value)) {
                throw fail(
                    "\(key) \(value) is out of range \(range.lowerBound)...\(range.upperBound) "
                        + "(\(why))")
            }
        }
        typealias L = ModelLimits
        if !(dropPathRate >= 0 && dropPathRate < 1) {
            throw fail("model_args.drop_path_rate \(dropPathRate) is out of range [0, 1) (a drop probability)")
        }
        let a = modelArgs
        try bound(
            "model_args.in_chans", a.inChans, L.channels...L.channels,
            "images are decoded to RGB; only 3 channels are supported")
        try bound("model_args.img_size", a.imgSize, 1...L.maxImageSize, "image side in pixels")
        try bound("model_args.patch_size", a.patchSize, 1...L.maxImageSize, "patch side in pixels")
        if a.imgSize < a.patchSize {
            throw fail(
                "model_args.img_size \(a.imgSize) is smaller than patch_size \(a.patchSize)")
        }
        if let stem = a.stem {
            let n = stem.widths.count
            try bound("model_args.stem.widths count", n, 1...L.maxStemConvolutions, "convolutions")
            if stem.kernelSizes.count != n || stem.strides.count != n || stem.paddings.count != n {
                throw fail(
                    "model_args.stem: widths, kernel_sizes, strides and paddings need \(n) values each")
            }
            for i in 0..<n {
                try bound("model_args.stem.widths[\(i)]", stem.widths[i], 1...L.maxEmbedDim, "channels")
                try bound(
                    "model_args.stem.kernel_sizes[\(i)]", stem.kernelSizes[i], 1...L.maxStemKernel,
                    "kernel side")
                if stem.strides[i] != stem.kernelSizes[i] {
                    throw fail(
                        "model_args.stem.strides[\(i)] \(stem.strides[i]) differs from kernel_sizes[\(i)] "
                            + "\(stem.kernelSizes[i]); only non-overlapping stem convolutions (stride = kernel) "
                            + "are supported")
                }
                try bound(
                    "model_args.stem.paddings[\(i)]", stem.paddings[i], 0...(stem.kernelSizes[i] - 1),
                    "less than the kernel")
            }
            if stem.widths[n - 1] != a.embedDim {
                throw fail(
                    "model_args.stem.widths ends with \(stem.widths[n - 1]), not embed_dim \(a.embedDim)")
            }
            if stem.strides.reduce(1, *) != a.patchSize {
                throw fail(
                    "model_args.patch_size \(a.patchSize) is not the product of the stem's strides "
                        + "\(stem.strides)")
            }
            try bound("model_args.stem.bn_eps", stem.bnEps, 1e-12...1, "BatchNorm epsilon")
            try bound("model_args.stem.bn_momentum", stem.bnMomentum, 0...1, "BatchNorm momentum")
        }
        let grid = a.gridSize(imageSize: a.imgSize)
        try bound(
            "model_args.img_size / patch_size", grid, 1...L.maxGrid,
            "patches per side; at most \(L.maxGrid * L.maxGrid) patch tokens")
        if a.noEmbedClass && !a.classToken {
            throw fail("model_args.no_embed_class needs class_token true (nothing else to leave out)")
        }
        try bound("model_args.embed_dim", a.embedDim, 1...L.maxEmbedDim, "token width")
        try bound("model_args.depth", a.depth, 1...L.maxDepth, "blocks")
        try bound("model_args.num_classes", a.numClasses, 1...L.maxClasses, "head width")
        if a.globalPool != "token" && a.globalPool != "avg" {
            throw fail("model_args.global_pool '\(a.globalPool)' must be 'token' or 'avg'")
        }
        if a.globalPool == "token" && !a.classToken {
            throw fail("model_args.global_pool 'token' needs class_token true")
        }
        if let s = a.layerScaling {
            try bound(
                "layer_scaling.head_dim", s.headDim, 1...a.embedDim,
                "a head is at most embed_dim wide")
            if s.alpha.count != 2 || s.beta.count != 2 {
                throw fail("layer_scaling.alpha and beta must be [min, max] pairs")
            }
            if !(s.alpha + s.beta).allSatisfy({ $0.isFinite && $0 > 0 }) {
                throw fail("layer_scaling.alpha and beta must be positive")
            }
            for (key, pair) in [("alpha", s.alpha), ("beta", s.beta)] {
                for v in pair {
                    try bound(
                        "layer_scaling.\(key)", v, L.scalingFactors,
                        "width factors relative to embed_dim")
                }
            }
        } else {
            try bound("model_args.num_heads", a.numHeads, 1...a.embedDim, "at most embed_dim")
            if a.embedDim % a.numHeads != 0 {
                throw fail(
                    "model_args.embed_dim \(a.embedDim) is not divisible by num_heads "
                        + "\(a.numHeads)")
            }
            if !(a.mlpRatio.isFinite && a.mlpRatio > 0) {
                throw fail("model_args.mlp_ratio \(a.mlpRatio) gives no MLP width")
            }
            try bound(
                "model_args.mlp_ratio", a.mlpRatio, L.scalingFactors,
                "MLP width relative to embed_dim")
            if Int(a.mlpRatio * Double(a.embedDim)) < 1 {
                throw fail("model_args.mlp_ratio \(a.mlpRatio) gives no MLP width")
            }
        }
        if numClasses != a.numClasses {
            throw fail(
                "num_classes \(numClasses) differs from model_args.num_classes \(a.numClasses)")
        }
        if numFeatures != a.embedDim {
            throw fail(
                "num_features \(numFeatures) differs from model_args.embed_dim \(a.embedDim)")
        }
        if globalPool != a.globalPool {
            throw fail("global_pool '\(globalPool)' differs from model_args.global_pool")
        }
        let p = pretrainedCfg
        if p.inputSize.count != 3 || p.inputSize[0] != a.inChans
            || !p.inputSize.dropFirst().allSatisfy({ (1...L.maxImageSize).contains($0) })
        {
            throw fail(
                "pretrained_cfg.input_size \(p.inputSize) must be [\(a.inChans), H, W] with H and W "
                    + "in 1...\(L.maxImageSize)")
        }
        if p.mean.count != a.inChans || p.std.count != a.inChans {
            throw fail("pretrained_cfg.mean and std need \(a.inChans) values each")
        }
        for v in p.mean {
            try bound("pretrained_cfg.mean", v, L.meanRange, "per-channel mean of [0, 1] pixels")
        }
        for v in p.std {
            try bound(
                "pretrained_cfg.std", v, L.stdRange, "per-channel divisor of [0, 1] pixels")
        }
        try bound(
            "pretrained_cfg.crop_pct", p.cropPct, L.cropPct,
            "the evaluation resize is at most \(Int(1 / L.cropPct.lowerBound))x the image side")
        if !L.interpolations.contains(p.interpolation) {
            throw fail(
                "pretrained_cfg.interpolation '\(p.interpolation)' is not supported (use "
                    + L.interpolations.joined(separator: " or ") + ")")
        }
        if let mode = p.cropMode, mode != "center" {
            throw fail("pretrained_cfg.crop_mode '\(mode)' is not supported (only 'center')")
        }
        // The sizes that follow from the values: each multiplication is checked.
        let params = try checkedParameterCount(path: path)
        if params > L.maxParameters {
            throw fail(
                "the config describes \(params) parameters, more than the engine's limit of "
                    + "\(L.maxParameters) (model_args.embed_dim \(a.embedDim), depth \(a.depth), "
                    + "num_classes \(a.numClasses))")
        }
        let floats = try checkedActivationFloatsPerImage(
            imageSize: a.imgSize, training: false, path: path)
        if floats > L.maxActivationFloatsPerImage {
            throw fail(
                "one image needs \(floats) floats of activations at img_size \(a.imgSize), more "
                    + "than the engine's limit of \(L.maxActivationFloatsPerImage)")
        }
    }

    /// `x * y` and `x + y` that throw instead of trapping, for sizes derived from config values.
    private struct Checked {
        let overflow: () -> ModelConfigError

        func mul(_ values: Int...) throws -> Int {
            var r = 1
            for v in values {
                let (p, o) = r.multipliedReportingOverflow(by: v)
                if o { throw overflow() }
                r = p
            }
            return r
        }

        func add(_ values: Int...) throws -> Int {
            var r = 0
            for v in values {
                let (s, o) = r.addingReportingOverflow(v)
                if o { throw overflow() }
                r = s
            }
            return r
        }
    }

    private func checked(_ path: String) -> Checked {
        Checked {
            ModelConfigError(
                path: path,
                problem: "the model's sizes overflow a 64-bit count (model_args too large)")
        }
    }

    /// The number of trainable values (timm's parameter count, the floats model.safetensors
    /// must hold), computed with overflow checks; call after the field bounds of `validate`
    /// (`blocks` must be computable).
    public func checkedParameterCount(path: String = "<config>") throws -> Int {
        let a = modelArgs
        let c = checked(path)
        let (D, P) = (a.embedDim, a.patchSize)
        let grid = a.gridSize(imageSize: a.imgSize)
        let positions = try c.add(try c.mul(grid, grid), a.classToken && !a.noEmbedClass ? 1 : 0)
        var embedding = try c.add(try c.mul(D, a.inChans, P, P), D)
        if let stem = a.stem {
            embedding = 0
            var channels = a.inChans
            for (i, w) in stem.widths.enumerated() {
                let k = stem.kernelSizes[i]
                // the last convolution has a bias, the others a BatchNorm (weight and bias)
                let extra = i == stem.widths.count - 1 ? w : try c.mul(2, w)
                embedding = try c.add(embedding, try c.mul(w, channels, k, k), extra)
                channels = w
            }
        }
        var total = try c.add(a.classToken ? D : 0, try c.mul(positions, D), embedding)
        for g in blocks {
            let (A, H) = (try c.mul(g.numHeads, g.headDim), g.mlpHidden)
            let qkv = try c.add(try c.mul(3, A, D), a.qkvBias ? try c.mul(3, A) : 0)
            let proj = try c.add(try c.mul(D, A), D)
            let mlp = try c.add(try c.mul(H, D), H, try c.mul(D, H), D)
            total = try c.add(total, try c.mul(4, D), qkv, proj, mlp)
        }
        return try c.add(total, try c.mul(2, D), try c.mul(a.numClasses, D), a.numClasses)
    }

    /// Floats of activations one image of side `imageSize` needs in a forward pass (`training`
    /// false: one block's buffers at a time) or a training step (every block's, plus the
    /// backward scratch), about what `ViTActivations` plans per image; overflow-checked. Used
    /// to bound image sizes and batches before anything is allocated.
    public func checkedActivationFloatsPerImage(
        imageSize: Int, training: Bool, path: String = "<config>"
    ) throws -> Int {
        let a = modelArgs
        let c = checked(path)
        let D = a.embedDim
        let grid = a.gridSize(imageSize: imageSize)
        let patches = try c.mul(grid, grid)
        let T = try c.add(patches, a.classToken ? 1 : 0)
        // a stem keeps, per convolution, its unfolded input and (all but the last) the
        // convolution's output, its normalised copy and its GELU
        var stemFloats = 0
        if let stem = a.stem {
            var channels = a.inChans
            for (i, g) in stem.grids(imageSize: imageSize).enumerated() {
                let k = stem.kernelSizes[i]
                let w = stem.widths[i]
                stemFloats = try c.add(
                    stemFloats, try c.mul(g, g, channels, k, k), try c.mul(3, g, g, w))
                channels = w
            }
        }
        var widest = 0
        var allBlocks = 0
        for g in blocks {
            let A = try c.mul(g.numHeads, g.headDim)
            // ln1, xMid, ln2, xOut (T, D); qkv (T, 3A); attention (NH, T, T); heads (T, A);
            // fc1 and gelu (T, H); LayerNorm statistics (T each)
            let block = try c.add(
                try c.mul(4, T, D), try c.mul(3, T, A), try c.mul(g.numHeads, T, T),
                try c.mul(T, A), try c.mul(2, T, g.mlpHidden), try c.mul(4, T))
            widest = max(widest, block)
            allBlocks = try c.add(allBlocks, block)
        }
        let embedding = try c.add(
            try c.mul(patches, a.inChans, a.patchSize, a.patchSize), try c.mul(patches, D),
            try c.mul(2, T, D), try c.mul(3, D), a.numClasses, stemFloats)
        return try c.add(embedding, training ? try c.mul(2, allBlocks) : widest)
    }

    /// Per-block geometry. Uniform: heads = num_heads, head_dim = D / heads, H = int(mlp_ratio
    /// * D). With layer scaling, for block i of N (t = i / (N - 1), 0 when N = 1), in double
    /// precision: alpha_i = amin + (amax - amin) t, beta_i likewise, heads_i = max(1,
    /// floor(alpha_i * D / h + 0.5)), H_i = max(h, floor(beta_i * D / h + 0.5) * h).
    public var blocks: [BlockGeometry] {
        let a = modelArgs
        let d = Double(a.embedDim)
        return (0..<a.depth).map { i in
            guard let s = a.layerScaling else {
                return BlockGeometry(
                    numHeads: a.numHeads, headDim: a.embedDim / a.numHeads,
                    mlpHidden: Int(a.mlpRatio * d))
            }
            let h = Double(s.headDim)
            let t = a.depth > 1 ? Double(i) / Double(a.depth - 1) : 0
            let alpha = s.alpha[0] + (s.alpha[1] - s.alpha[0]) * t
            let beta = s.beta[0] + (s.beta[1] - s.beta[0]) * t
            let heads = max(1, Int(((alpha * d) / h + 0.5).rounded(.down)))
            let hidden = max(s.headDim, Int(((beta * d) / h + 0.5).rounded(.down)) * s.headDim)
            return BlockGeometry(numHeads: heads, headDim: s.headDim, mlpHidden: hidden)
        }
    }
}
