import Foundation
import Support
import ViT
import WordNet
import Yams

/// A training configuration that cannot be used: the file, the key and the problem.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The YAML file ("--set" for a command-line override).
    public var file: String
    /// The dotted key (`optim.lr`), or "" for the file as a whole.
    public var key: String
    /// What is wrong, in words (with the line when known).
    public var problem: String

    /// A config error from its fields.
    public init(file: String, key: String, problem: String) {
        self.file = file
        self.key = key
        self.problem = problem
    }

    /// `file: key: problem`.
    public var description: String { key.isEmpty ? "\(file): \(problem)" : "\(file): \(key): \(problem)" }
}

/// The `catlip train` configuration: four sections of typed, validated settings read from
/// YAML (`configs/*.yaml`), with `--set section.key=value` overrides. Unknown sections and keys
/// and out-of-range values are errors naming the key; absent keys take the defaults below
/// (the `demo` preset's values).
public struct TrainConfig: Sendable, Equatable {
    /// Where samples and labels come from and how batches are made.
    public struct DataSection: Sendable, Equatable {
        /// Training samples: shards (`DIR/{00000..00099}.tar`), a manifest (.tsv/.jsonl) or a
        /// folder (paths relative to the working directory).
        public var train = ""
        /// Validation samples (shards or manifest) for the mean average precision of the head;
        /// "" for none.
        public var val = ""
        /// The vocabulary (`vocab.tsv`): class i is line i.
        public var vocab = ""
        /// What the run learns: CatLIP pretraining on captions, or a classifier of labelled images.
        public var task: TrainTask = .pretrain
        /// Caption labelling rule: `corenet` or `nouns`.
        public var labelMode: LabelMode = .corenet
        /// Samples with several captions (one per line of KEY.txt, as Flickr8k's or COCO's five):
        /// `joined` labels a sample with the union of all its captions' nouns, every epoch;
        /// `sampled` labels it with one caption drawn per sample and epoch (open_clip's and
        /// corenet's way with COCO-style data). Validation always uses the union.
        public var captions = "joined"
        /// Training image side (the model's img_size).
        public var imageSize = 64
        /// Images per micro-batch (one forward/backward).
        public var batchSize = 64
        /// Decode/augment threads of the loader.
        public var threads = 2
        /// Batches decoded ahead.
        public var prefetch = 2
        /// Shuffle-buffer size for shards.
        public var shuffleBuffer = 1000
        /// RandomResizedCrop area range `[min, max]` (fractions of the image).
        public var cropScale: [Double] = [0.08, 1.0]
        /// RandomResizedCrop aspect-ratio range `[min, max]`.
        public var cropRatio: [Double] = [3.0 / 4.0, 4.0 / 3.0]
        /// Horizontal flip probability.
        public var flip = 0.5
        /// Validation images used at most (0 = all).
        public var valSamples = 0
        /// CatLIP's variable resolution: each batch draws its side from this list and scales its
        /// size by (image_size / side)², keeping tokens per batch about constant ([] = off).
        public var resolutions: [Int] = []
        /// Evaluation crop (timm's crop_pct): validation images are resized to side /
        /// crop_pct and centre-cropped; written to the model's pretrained_cfg.
        public var evalCropPct = 0.875
        /// Mixup's α for a classifier (timm's `--mixup`; 0 = off).
        public var mixup = 0.0
        /// Cutmix's α for a classifier (timm's `--cutmix`; 0 = off).
        public var cutmix = 0.0
        /// Probability that a batch is mixed (timm's `--mixup-prob`).
        public var mixupProb = 1.0
        /// Probability of cutmix rather than mixup when both are on (timm's `--mixup-switch-prob`).
        public var mixupSwitchProb = 0.5
        /// Largest image file read from a manifest or folder, in MiB (`readFileBytes`); larger
        /// files and paths that are not regular files (FIFOs, devices) are skipped as bad
        /// samples. May change on resume: it decides only which hostile files are refused.
        public var maxFileMB = 256
    }

    /// The ViT (timm's keyword names).
    public struct ModelSection: Sendable, Equatable {
        /// Patch side.
        public var patchSize = 8
        /// Token width D.
        public var embedDim = 192
        /// Blocks.
        public var depth = 6
        /// Attention heads (uniform model).
        public var numHeads = 3
        /// MLP width / D (uniform model).
        public var mlpRatio = 4.0
        /// `token` or `avg`.
        public var globalPool: GlobalPool = .token
        /// Whether there is a class token.
        public var classToken = true
        /// Bias on the qkv Linear.
        public var qkvBias = true
        /// A model directory whose weights the run starts from (timm's `--initial-checkpoint`):
        /// every tensor but the head copied, pos_embed resampled to the image size ("" = the
        /// seeded initialisation).
        public var initFrom = ""
        /// How the head starts when the run starts from `initFrom`.
        public var headInit: HeadInit = .random
        /// OpenELM layer-wise scaling: head dimension (0 = uniform model).
        public var layerScalingHeadDim = 0
        /// Layer-wise scaling `[alpha_min, alpha_max]` (attention width factors).
        public var layerScalingAlpha: [Double] = [0.5, 1.0]
        /// Layer-wise scaling `[beta_min, beta_max]` (MLP width factors).
        public var layerScalingBeta: [Double] = [0.5, 4.0]
        /// Start the head bias at each class's log-odds among the training samples' labels instead of timm's zeros: the loss starts near the frequency prior
        /// (about Σ H(p_c) instead of V·ln 2), so the first steps do not spend their gradient,
        /// and AdamW's second moments, on pushing 1,000+ biases down.
        public var headBiasPrior = false
        /// Stochastic depth (timm's `drop_path_rate`): the last block's branches are dropped
        /// with this probability per image in training, earlier blocks linearly less (0 = off).
        public var dropPathRate = 0.0
    }

    /// Optimiser, schedule and step settings.
    public struct OptimSection: Sendable, Equatable {
        /// Peak learning rate (after warm-up).
        public var lr = 1e-3
        /// Final learning rate of the cosine.
        public var minLR = 1e-5
        /// Linear warm-up steps.
        public var warmupSteps = 100
        /// Learning rate at step 0.
        public var warmupInitLR = 1e-6
        /// AdamW decoupled weight decay (none on 1-D parameters).
        public var weightDecay = 0.2
        /// Whether pos_embed and cls_token get weight decay: corenet decays every parameter of
        /// 2+ dimensions, timm's `no_weight_decay()` exempts the two embeddings.
        public var embeddingDecay = true
        /// AdamW β1.
        public var beta1 = 0.9
        /// AdamW β2.
        public var beta2 = 0.999
        /// AdamW ε.
        public var eps = 1e-8
        /// Gradient clipping by global norm (0 = off).
        public var clipGrad = 1.0
        /// EMA momentum per step (0 = no EMA; CatLIP 0.0005). With EMA the exported model
        /// holds the averaged weights.
        public var emaMomentum = 0.0
        /// Micro-batches accumulated per optimiser step (global batch = batch_size × this).
        public var accumulation = 1
        /// Label smoothing of the classification targets (timm's `--smoothing`): the target row
        /// is (1 - ε) one-hot + ε / classes. Classification only.
        public var labelSmoothing = 0.1
        /// timm's layer-wise learning-rate decay (BEiT `layer_decay`): block i of depth N learns
        /// at lr · decay^(N - i), the stem at lr · decay^(N + 1), the head and final norm at lr
        /// (0 = off).
        public var layerDecay = 0.0
        /// What is not trained: nothing, or every tensor but the head (a linear probe trained by
        /// the same loop).
        public var freeze: Freeze = .none
    }

    /// Length, logging, checkpoints.
    public struct RunSection: Sendable, Equatable {
        /// Run directory ("" = runs/NAME-YYYYmmdd-HHMMSS).
        public var dir = ""
        /// Optimiser steps of the run (the cosine's length).
        public var steps = 1000
        /// Seed of initialisation, order and augmentation.
        public var seed = 0
        /// Compute threads of the engine.
        public var threads = 2
        /// Steps per metrics line.
        public var logEvery = 10
        /// Checkpoint every this many steps (0 = only by time and at the end).
        public var checkpointEvery = 500
        /// Checkpoint when this many minutes passed since the last one (0 = off).
        public var checkpointMinutes = 10.0
        /// Checkpoints kept.
        public var keepCheckpoints = 3
        /// Non-finite steps in a row that stop the run.
        public var maxBadSteps = 5
        /// Validation every this many steps (0 = only at the end).
        public var evalEvery = 0
        /// Seconds one collective of a data-parallel job may take before the rank gives up
        /// (a rank died or the network failed).
        public var commTimeout = 300.0
        /// Input precision of the training products: fp32, or bf16 (bf16-rounded inputs, float
        /// sums, float master weights; needs AVX512_BF16).
        public var precision = InferencePrecision.fp32
    }

    /// Data section.
    public var data = DataSection()
    /// Model section.
    public var model = ModelSection()
    /// Optimiser section.
    public var optim = OptimSection()
    /// Run section.
    public var run = RunSection()

    /// The defaults.
    public init() {}

    /// Reads a YAML config, applies `overrides` ("section.key=value", the value in YAML syntax),
    /// and validates everything.
    public static func load(path: String, overrides: [String] = []) throws -> TrainConfig {
        let text: String
        do {
            // a regular file of at most 16 MiB (a config is a few KiB): /dev/zero or a FIFO given
            // as --config is an error, not a hang
            text = String(decoding: try SafeFile.read(path, maxBytes: 16 << 20), as: UTF8.self)
        } catch let error as FileIOError {
            throw ConfigError(file: path, key: "", problem: "cannot read the file (\(error.problem))")
        }
        return try parse(yaml: text, file: path, overrides: overrides)
    }

    /// Parses YAML text (`file` names it in errors), applies `overrides` and validates.
    public static func parse(yaml: String, file: String = "<config>", overrides: [String] = []) throws -> TrainConfig {
        let reader = try ConfigReader(yaml: yaml, file: file, overrides: overrides)
        var c = TrainConfig()
        for key in keys { try key.read(reader, &c) }
        try reader.finish()
        try c.validate(file: file)
        return c
    }

    /// Cross-key checks (each key alone was range-checked while reading).
    func validate(file: String) throws {
        func fail(_ key: String, _ problem: String) -> ConfigError { ConfigError(file: file, key: key, problem: problem) }
        if data.train.isEmpty { throw fail("data.train", "is required (shards, manifest or folder)") }
        if data.vocab.isEmpty && data.task == .pretrain { throw fail("data.vocab", "is required (a vocab.tsv)") }
        if data.task != .classify && (data.mixup > 0 || data.cutmix > 0) {
            throw fail(data.mixup > 0 ? "data.mixup" : "data.cutmix", "mixes class targets: only with data.task classify")
        }
        if model.initFrom.isEmpty && (model.headInit == .transfer || model.headInit == .keep) {
            throw fail("model.head_init", "\(model.headInit.rawValue) needs model.init (the pretrained model directory)")
        }
        if data.cropScale[0] > data.cropScale[1] { throw fail("data.crop_scale", "min \(data.cropScale[0]) is above max \(data.cropScale[1])") }
        if data.cropRatio[0] > data.cropRatio[1] { throw fail("data.crop_ratio", "min is above max") }
        if let small = data.resolutions.first(where: { $0 < model.patchSize }) {
            throw fail("data.resolutions", "\(small) is smaller than model.patch_size \(model.patchSize)")
        }
        if data.imageSize < model.patchSize {
            throw fail("model.patch_size", "\(model.patchSize) is larger than data.image_size \(data.imageSize)")
        }
        if model.layerScalingHeadDim == 0 && model.embedDim % model.numHeads != 0 {
            throw fail("model.num_heads", "embed_dim \(model.embedDim) is not divisible by num_heads \(model.numHeads)")
        }
        if model.globalPool == .token && !model.classToken {
            throw fail("model.global_pool", "'token' pooling needs model.class_token: true")
        }
        if optim.warmupSteps > run.steps { throw fail("optim.warmup_steps", "\(optim.warmupSteps) is more than run.steps \(run.steps)") }
        if optim.minLR > optim.lr { throw fail("optim.min_lr", "\(optim.minLR) is above optim.lr \(optim.lr)") }
        try validateSizes(file: file)
    }

    /// Most activation floats one micro-batch may need (64 GiB at fp32): data.batch_size times
    /// what one image of the largest batch shape needs in a training step
    /// (`ModelConfig.checkedActivationFloatsPerImage`), so that a batch size or image size that
    /// cannot fit is an error naming the key rather than a failed allocation.
    public static let maxBatchActivationFloats = 1 << 34

    /// The engine's bounds (`ModelLimits`) applied to the model and batches these settings make:
    /// patches per side at data.image_size and each of data.resolutions, the parameter count,
    /// and the activations of the largest micro-batch. Every size is computed with overflow
    /// checks.
    func validateSizes(file: String) throws {
        func fail(_ key: String, _ problem: String) -> ConfigError { ConfigError(file: file, key: key, problem: problem) }
        let sides = [("data.image_size", data.imageSize)] + data.resolutions.map { ("data.resolutions", $0) }
        for (key, side) in sides where side / model.patchSize > ModelLimits.maxGrid {
            throw fail(
                key, "\(side) / model.patch_size \(model.patchSize) is \(side / model.patchSize) patches per side; "
                    + "the engine supports at most \(ModelLimits.maxGrid)")
        }
        if model.layerScalingHeadDim > model.embedDim {
            throw fail("model.layer_scaling_head_dim", "\(model.layerScalingHeadDim) is wider than model.embed_dim \(model.embedDim)")
        }
        // The model this run trains, with one class (the vocabulary's size is checked when the
        // model is built); its parameters and activations must be within the engine's limits.
        let config = Trainer.modelConfig(self, classes: 1)
        let parameters: Int
        do {
            parameters = try config.checkedParameterCount(path: file)
        } catch let e as ModelConfigError {
            throw fail("model", e.problem)
        }
        if parameters > ModelLimits.maxParameters {
            throw fail(
                "model", "embed_dim \(model.embedDim), depth \(model.depth) and mlp_ratio \(model.mlpRatio) give \(parameters) "
                    + "parameters, more than the engine's limit of \(ModelLimits.maxParameters)")
        }
        do {
            try config.validate(path: file)
        } catch let e as ModelConfigError {
            throw fail("model", e.problem)
        }
        let base = Double(data.imageSize * data.imageSize)
        for (key, side) in sides {
            // the batch's sample count at this side, as the loader plans it
            let count = max(1, Int((Double(data.batchSize) * base / Double(side * side)).rounded()))
            let perImage: Int
            do {
                perImage = try config.checkedActivationFloatsPerImage(imageSize: side, training: true, path: file)
            } catch let e as ModelConfigError {
                throw fail(key, e.problem)
            }
            let (floats, overflow) = perImage.multipliedReportingOverflow(by: count)
            if overflow || floats > Self.maxBatchActivationFloats {
                throw fail(
                    key == "data.image_size" ? "data.batch_size" : key,
                    "\(count) images of side \(side) need \(overflow ? "more than \(Int.max)" : String(floats)) floats of activations "
                        + "per micro-batch, more than the engine's limit of \(Self.maxBatchActivationFloats); "
                        + "lower data.batch_size (use optim.accumulation) or the image size")
            }
        }
    }

    /// The resolved configuration as commented YAML (every key, in order), which `parse`
    /// reads back to the same value: the run directory's `config.yaml`.
    public func yaml() -> String {
        Self.sectionedYAML(Self.keys.map { ($0.name, $0.text(self)) })
    }
}

/// Reads typed values out of a two-level YAML mapping, remembering which keys were used, with
/// command-line overrides taking precedence.
final class ConfigReader {
    private let file: String
    /// section → key → (value node, where it came from).
    private var values: [String: (node: Node, origin: String, line: Int?)] = [:]
    private var used: Set<String> = []

    init(yaml: String, file: String, overrides: [String]) throws {
        self.file = file
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            // one line: the parser's messages quote the offending lines
            let text = "\(error)".split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            throw ConfigError(file: file, key: "", problem: "not valid YAML: " + text.joined(separator: " "))
        }
        if let root {
            guard let top = root.mapping else {
                throw ConfigError(file: file, key: "", problem: "expected a mapping of sections (data, model, optim, run)")
            }
            for (sectionKey, sectionNode) in top {
                guard let section = sectionKey.string else {
                    throw ConfigError(file: file, key: "", problem: "section names must be strings")
                }
                if !["data", "model", "optim", "run"].contains(section) {
                    throw ConfigError(file: file, key: section, problem: "unknown section (expected data, model, optim or run)\(Self.at(sectionKey))")
                }
                if sectionNode.null != nil { continue }
                guard let mapping = sectionNode.mapping else {
                    throw ConfigError(file: file, key: section, problem: "expected a mapping of keys\(Self.at(sectionNode))")
                }
                for (k, v) in mapping {
                    guard let key = k.string else {
                        throw ConfigError(file: file, key: section, problem: "keys must be strings\(Self.at(k))")
                    }
                    let path = section + "." + key
                    if values[path] != nil {
                        throw ConfigError(file: file, key: path, problem: "given twice\(Self.at(k))")
                    }
                    values[path] = (v, file, v.mark?.line)
                }
            }
        }
        for item in overrides {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ConfigError(file: "--set", key: item, problem: "expected section.key=value")
            }
            let path = String(item[..<eq])
            let raw = String(item[item.index(after: eq)...])
            let parts = path.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count != 2 || parts.contains(where: \.isEmpty) {
                throw ConfigError(file: "--set", key: path, problem: "expected section.key=value")
            }
            // YAML syntax (numbers, [lists]); text that is not valid YAML, such as a brace
            // pattern '{00000..00099}.tar', is taken as it is
            let node = (try? Yams.compose(yaml: raw)).flatMap { $0 } ?? Node(raw, Tag(.str))
            values[path] = (node, "--set", nil)
        }
    }

    private static func at(_ node: Node) -> String { node.mark.map { " (line \($0.line))" } ?? "" }

    private func fail(_ path: String, _ problem: String) -> ConfigError {
        let entry = values[path]
        let line = entry?.line.map { " (line \($0))" } ?? ""
        return ConfigError(file: entry?.origin ?? file, key: path, problem: problem + line)
    }

    /// The scalar text of `path`, or nil when absent (or null).
    private func scalar(_ path: String) throws -> String? {
        used.insert(path)
        guard let entry = values[path] else { return nil }
        if entry.node.null != nil { return nil }
        guard let s = entry.node.scalar else { throw fail(path, "expected a single value") }
        return s.string
    }

    func string(_ path: String, _ fallback: String) throws -> String {
        try scalar(path) ?? fallback
    }

    func choice(_ path: String, _ fallback: String, _ options: [String]) throws -> String {
        let v = try string(path, fallback)
        if !options.contains(v) { throw fail(path, "'\(v)' is not one of \(options.joined(separator: ", "))") }
        return v
    }

    func int(_ path: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
        guard let s = try scalar(path) else { return fallback }
        let cleaned = s.replacingOccurrences(of: "_", with: "")
        var v = Int(cleaned)
        if v == nil, let d = Double(cleaned), d == d.rounded(), abs(d) < 1e15 { v = Int(d) }
        guard let v else { throw fail(path, "expected an integer, got '\(s)'") }
        if !range.contains(v) { throw fail(path, "\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func double(_ path: String, _ fallback: Double, _ range: ClosedRange<Double>) throws -> Double {
        guard let s = try scalar(path) else { return fallback }
        guard let v = Double(s.replacingOccurrences(of: "_", with: "")), v.isFinite else {
            throw fail(path, "expected a number, got '\(s)'")
        }
        if !range.contains(v) { throw fail(path, "\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func bool(_ path: String, _ fallback: Bool) throws -> Bool {
        guard let s = try scalar(path) else { return fallback }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(path, "expected true or false, got '\(s)'")
        }
    }

    /// A `[min, max]` list of two numbers.
    func pair(_ path: String, _ fallback: [Double], _ range: ClosedRange<Double>) throws -> [Double] {
        used.insert(path)
        guard let entry = values[path], entry.node.null == nil else { return fallback }
        guard let seq = entry.node.sequence, seq.count == 2 else { throw fail(path, "expected a list of two numbers [min, max]") }
        return try seq.map { item in
            guard let s = item.scalar?.string, let v = Double(s), v.isFinite else {
                throw fail(path, "expected numbers, got '\(item.scalar?.string ?? "a nested value")'")
            }
            if !range.contains(v) { throw fail(path, "\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
    }

    /// A list of integers (possibly empty).
    func ints(_ path: String, _ fallback: [Int], _ range: ClosedRange<Int>) throws -> [Int] {
        used.insert(path)
        guard let entry = values[path], entry.node.null == nil else { return fallback }
        guard let seq = entry.node.sequence else { throw fail(path, "expected a list of integers") }
        return try seq.map { item in
            guard let s = item.scalar?.string, let v = Int(s) else {
                throw fail(path, "expected integers, got '\(item.scalar?.string ?? "a nested value")'")
            }
            if !range.contains(v) { throw fail(path, "\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
    }

    /// Throws for any key that no reader asked for.
    func finish() throws {
        if let unknown = values.keys.filter({ !used.contains($0) }).sorted().first {
            throw fail(unknown, "unknown key")
        }
    }
}

/// What a run learns (`data.task`).
public enum TrainTask: String, Sendable, CaseIterable {
    /// CatLIP pretraining: captions → WordNet synsets → multi-hot targets, binary cross-entropy.
    case pretrain
    /// A classifier of labelled images (ImageFolder or `path<TAB>class` manifest): one-hot
    /// targets with label smoothing, softmax cross-entropy, top-1/top-5 validation.
    case classify
}

/// How the head of a run started from a model (`model.head_init`).
public enum HeadInit: String, Sendable, CaseIterable {
    /// Trunc-normal rows (std 0.02) and zero biases, as a new model's head.
    case random
    /// Zero weights and biases.
    case zero
    /// CatLIP's Transfer Init: each class name mapped through WordNet to the pretrained head's
    /// rows for its synsets (their mean; random when none), as `eval export-head` does.
    case transfer
    /// The pretrained head as it is (same classes: fine-tune the multi-label head).
    case keep
}

/// The tensors a run leaves as they are (`optim.freeze`).
public enum Freeze: String, Sendable, CaseIterable {
    /// Every tensor is trained.
    case none
    /// Only the head is trained (its gradients alone are clipped and applied).
    case backbone
}
