import Foundation
import Support

/// A model directory or weights file that does not fit the model: the file and the problem.
public struct ModelLoadError: Error, CustomStringConvertible, Equatable {
    /// The file (model.safetensors, config.json or the directory).
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// A Vision Transformer with timm's `VisionTransformer` semantics, names and layouts: patch
/// embedding (conv with kernel = stride = P, computed as a GEMM over unfolded patches), optional
/// class token, learned position embedding covering the class token, pre-norm blocks (LayerNorm
/// eps 1e-6, fused qkv attention, exact GELU MLP), `token` or `avg` pooling, head Linear(D, V).
/// Optional OpenELM layer-wise scaling gives every block its own widths.
///
/// Parameters live in one contiguous arena (`parameters`) with timm's names as views
/// (`layout`), gradients in a parallel arena of the same layout (`gradients`).
public final class ViTModel {
    /// The validated configuration.
    public let config: ModelConfig
    /// Per-block geometry.
    public let blocks: [BlockGeometry]
    /// Parameter names, shapes and offsets.
    public let layout: ParameterLayout
    /// All parameters.
    public let parameters: FloatArena
    /// All gradients, same layout as `parameters`; `backward` accumulates into it.
    public let gradients: FloatArena
    /// Non-trainable state (`layout.buffers`: a stem's BatchNorm running statistics), which a
    /// training forward pass updates and evaluation reads; saved with the parameters.
    public let buffers: FloatArena
    /// Implementation of the kernels (`Gemm` and SIMD by default; naive is the reference).
    public var backend: ComputeBackend = .fast
    /// The training loss on the head's logits: CatLIP's multi-label BCE (pretraining) or the
    /// softmax cross-entropy of a classifier (fine-tuning on class labels).
    public var headLoss: HeadLoss = .binaryCrossEntropy
    /// The bf16 copy of the weights for inference at `InferencePrecision.bf16`, nil at fp32.
    var bf16Weights: BF16ModelWeights?
    /// The input precision of the training products (`setTrainingPrecision`).
    public internal(set) var trainingPrecision: InferencePrecision = .fp32
    /// The weights packed for the current training pass at bf16 (`prepareTrainingBF16`).
    var bf16Training: BF16TrainingWeights?

    /// Model width D.
    public var dim: Int { config.modelArgs.embedDim }
    /// Image side S.
    public var imageSize: Int { config.modelArgs.imgSize }
    /// Patch side P.
    public var patchSize: Int { config.modelArgs.patchSize }
    /// Input channels C.
    public var channels: Int { config.modelArgs.inChans }
    /// Patches per side, floor(S / P) (or what the stem leaves).
    public var gridSize: Int { config.modelArgs.gridSize(imageSize: imageSize) }
    /// Patch tokens N = grid².
    public var numPatches: Int { gridSize * gridSize }
    /// Tokens before the patches (1 with a class token, else 0).
    public var prefixTokens: Int { config.modelArgs.classToken ? 1 : 0 }
    /// Rows of pos_embed before the patch rows: the class token's, unless `no_embed_class`.
    public var positionPrefix: Int { config.modelArgs.noEmbedClass ? 0 : prefixTokens }
    /// Tokens T = N + prefix.
    public var tokens: Int { numPatches + prefixTokens }
    /// Classes V.
    public var numClasses: Int { config.modelArgs.numClasses }
    /// Whether pooling is `avg` (else `token`).
    public var avgPool: Bool { config.modelArgs.globalPool == "avg" }

    /// A model with zeroed parameters; throws when the config is invalid.
    public init(config: ModelConfig) throws {
        try config.validate()
        self.config = config
        self.blocks = config.blocks
        self.layout = ParameterLayout(config: config)
        self.parameters = FloatArena(count: layout.totalCount)
        self.gradients = FloatArena(count: layout.totalCount)
        self.buffers = FloatArena(count: max(layout.bufferCount, 1))
        resetBuffers()
    }

    /// BatchNorm running statistics at PyTorch's start: means 0, variances 1.
    public func resetBuffers() {
        for s in layout.buffers {
            (buffers.base + s.offset).update(
                repeating: s.name.hasSuffix("running_var") ? 1 : 0, count: s.count)
        }
    }

    /// The values of buffer `name` (a view into the buffer arena); traps for an unknown name.
    public func buffer(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let s = layout.buffer(named: name) else { preconditionFailure("no buffer \(name)") }
        return UnsafeMutableBufferPointer(start: buffers.base + s.offset, count: s.count)
    }

    /// A freshly initialised model, as timm's `VisionTransformer` (weight_init '') initialises
    /// one: every Linear weight, the head's and pos_embed from `trunc_normal_(std=.02)`, whose
    /// cut at ±2 is absolute (±100 std, so in effect a plain normal; catlip once cut at ±2 std,
    /// which shrank every weight by 12%); cls_token from normal(std 1e-6); the patch
    /// convolution left at PyTorch's Conv2d default, kaiming_uniform(a=√5), i.e. weight and
    /// bias uniform in ±1/√fan_in (a stem's convolutions likewise, its BatchNorms at weight 1,
    /// bias 0, running mean 0 and variance 1); Linear biases 0, LayerNorm weight 1 and bias 0.
    /// Drawn in timm's parameter order from `SeededGenerator(seed:)`.
    public convenience init(config: ModelConfig, seed: UInt64) throws {
        try self.init(config: config)
        initialize(seed: seed)
    }

    /// Re-initialises every parameter as `init(config:seed:)` does.
    public func initialize(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let a = config.modelArgs
        let patchFanIn = Double(a.inChans * a.patchSize * a.patchSize)
        // convolution parameters by name, with their fan-in (PyTorch's Conv2d default)
        var convFanIn = ["patch_embed.proj.weight": patchFanIn, "patch_embed.proj.bias": patchFanIn]
        if let stem = a.stem {
            var channels = a.inChans
            for (i, w) in stem.widths.enumerated() {
                let k = stem.kernelSizes[i]
                let name = "patch_embed.backbone.\(i).conv."
                convFanIn[name + "weight"] = Double(channels * k * k)
                convFanIn[name + "bias"] = Double(channels * k * k)
                channels = w
            }
        }
        resetBuffers()
        for s in layout.specs {
            let p = UnsafeMutableBufferPointer(start: parameters.base + s.offset, count: s.count)
            if let fanIn = convFanIn[s.name] {
                let bound = 1 / fanIn.squareRoot()
                for i in p.indices { p[i] = Float((2 * rng.nextUnit() - 1) * bound) }
            } else if s.name.hasPrefix("patch_embed.backbone.") && s.name.hasSuffix(".bn.weight") {
                p.update(repeating: 1)
            } else if s.name == "cls_token" {
                for i in p.indices { p[i] = Float(rng.nextNormal() * 1e-6) }
            } else if s.name.hasSuffix(".weight") && s.name.contains("norm") {
                p.update(repeating: 1)
            } else if s.name.hasSuffix(".bias") {
                p.update(repeating: 0)
            } else {
                for i in p.indices { p[i] = rng.nextTruncatedNormal(std: 0.02, bound: 2 / 0.02) }
            }
        }
    }

    /// The values of parameter `name` (a view into the arena); traps for an unknown name.
    public func parameter(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let s = layout.spec(named: name) else { preconditionFailure("no parameter \(name)") }
        return UnsafeMutableBufferPointer(start: parameters.base + s.offset, count: s.count)
    }

    /// The gradient of parameter `name` (a view into the gradient arena).
    public func gradient(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let s = layout.spec(named: name) else { preconditionFailure("no parameter \(name)") }
        return UnsafeMutableBufferPointer(start: gradients.base + s.offset, count: s.count)
    }

    /// Sets every gradient to zero (before a backward pass, which accumulates).
    public func zeroGradients() { gradients.zero() }

    // MARK: files

    /// Copies parameters from safetensors tensors, after checking that the names and shapes are
    /// exactly the model's: missing, unexpected and mis-shaped tensors are all reported.
    public func loadParameters(_ file: SafeTensors, path: String = "<tensors>") throws {
        try Self.checkTensors(
            file.names.map { ($0, file.tensors[$0]!.shape) }, against: layout, path: path)
        let all = layout.specs.map { ($0, parameters) } + layout.buffers.map { ($0, buffers) }
        for (s, _) in all where file.tensors[s.name]!.values.contains(where: { !$0.isFinite }) {
            throw ModelLoadError(path: path, problem: "'\(s.name)' holds a non-finite value")
        }
        for (s, arena) in all {
            file.tensors[s.name]!.values.withUnsafeBufferPointer {
                (arena.base + s.offset).update(from: $0.baseAddress!, count: s.count)
            }
        }
        try checkBuffers(path: path)
    }

    /// Throws when a running variance is negative (a BatchNorm would take its square root).
    func checkBuffers(path: String) throws {
        for s in layout.buffers where s.name.hasSuffix("running_var") {
            let v = UnsafeBufferPointer(start: buffers.base + s.offset, count: s.count)
            if v.contains(where: { $0 < 0 }) {
                throw ModelLoadError(path: path, problem: "'\(s.name)' holds a negative variance")
            }
        }
    }

    /// Throws naming every tensor of `tensors` (name, shape) that is missing from, not in, or
    /// shaped differently from `layout`.
    static func checkTensors(
        _ tensors: [(name: String, shape: [Int])], against layout: ParameterLayout, path: String
    ) throws {
        var problems: [String] = []
        var shapes: [String: [Int]] = [:]
        for t in tensors { shapes[t.name] = t.shape }
        var missing: [String] = []
        for s in layout.specs + layout.buffers {
            guard let shape = shapes[s.name] else {
                missing.append(s.name)
                continue
            }
            if shape != s.shape {
                problems.append("'\(s.name)' has shape \(shape), the config needs \(s.shape)")
            }
        }
        let extra = tensors.map(\.name).filter {
            layout.spec(named: $0) == nil && layout.buffer(named: $0) == nil
        }.sorted()
        func list(_ names: [String]) -> String {
            names.count <= 8
                ? names.joined(separator: ", ")
                : names.prefix(8).joined(separator: ", ") + ", ... (\(names.count) in all)"
        }
        if !missing.isEmpty { problems.append("missing tensors: " + list(missing)) }
        if !extra.isEmpty { problems.append("unexpected tensors: " + list(extra)) }
        if !problems.isEmpty {
            throw ModelLoadError(
                path: path,
                problem: "does not match the config: " + problems.joined(separator: "; "))
        }
    }

    /// Throws when parameter `spec` holds a NaN or an infinity.
    private func checkFinite(_ spec: ParameterSpec, in arena: FloatArena, path: String) throws {
        let p = UnsafeBufferPointer(start: arena.base + spec.offset, count: spec.count)
        for v in p where !v.isFinite {
            throw ModelLoadError(path: path, problem: "'\(spec.name)' holds a non-finite value")
        }
    }

    /// Loads a model directory: config.json (timm hub layout) and model.safetensors (timm names
    /// and shapes). The config is validated against `ModelLimits` and every tensor's name,
    /// shape and dtype (hence the parameter count) against the safetensors header, all before
    /// anything is allocated for the model: the memory taken is bounded by the weights file's
    /// size. Throws naming the file and the problem.
    public static func load(directory: String) throws -> ViTModel {
        let config = try ModelConfig.read(path: directory + "/config.json")
        let path = directory + "/model.safetensors"
        let layout = ParameterLayout(config: config)
        let file = try SafeTensorsReader(path: path)
        try checkTensors(file.tensors.map { ($0.name, $0.shape) }, against: layout, path: path)
        let model = try ViTModel(config: config)
        for s in model.layout.specs {
            try file.read(s.name, into: model.parameter(s.name))
            try model.checkFinite(s, in: model.parameters, path: path)
        }
        for s in model.layout.buffers {
            try file.read(s.name, into: model.buffer(s.name))
            try model.checkFinite(s, in: model.buffers, path: path)
        }
        try model.checkBuffers(path: path)
        return model
    }

    /// Writes config.json and model.safetensors (metadata format "pt", as timm/PyTorch expect)
    /// into `directory`, creating it if needed; each file is replaced atomically.
    public func save(directory: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelLoadError(path: directory, problem: "cannot create the directory: \(error)")
        }
        let entries =
            layout.specs.map {
                SafeTensors.WriteEntry(
                    name: $0.name, shape: $0.shape,
                    values: UnsafeBufferPointer(start: parameters.base + $0.offset, count: $0.count))
            }
            + layout.buffers.map {
                SafeTensors.WriteEntry(
                    name: $0.name, shape: $0.shape,
                    values: UnsafeBufferPointer(start: buffers.base + $0.offset, count: $0.count))
            }
        try SafeTensors.write(
            path: directory + "/model.safetensors", entries: entries, metadata: ["format": "pt"])
        try config.write(path: directory + "/config.json")
    }
}

/// The training loss on the logits (B, V) against target rows (B, V).
public enum HeadLoss: String, Sendable, CaseIterable {
    /// Binary cross-entropy with logits, summed over the classes and averaged over the batch
    /// (CatLIP's "batch_mean"): multi-hot targets, one independent sigmoid per class.
    case binaryCrossEntropy = "bce"
    /// Softmax cross-entropy against target rows of probabilities, averaged over the batch
    /// (timm's `SoftTargetCrossEntropy`): one-hot rows for plain labels, smoothed or mixed rows
    /// for label smoothing, mixup and cutmix.
    case softmaxCrossEntropy = "softmax"
}
