import Foundation
import Support
import ViT
import WordNet

/// One key of the `catlip train` configuration. Every key is declared once, in
/// `TrainConfig.keys`, and that table drives parsing, the resolved YAML, the keys that may change
/// on resume, the fingerprint and `catlip train --list-keys`: adding a key is one entry (and its
/// field with its default).
public struct ConfigKey: Sendable {
    /// What `TrainConfig.fingerprint(worldSize:)` does with a key.
    public enum FingerprintUse: Sendable, Equatable {
        /// Its value enters when it differs from the default.
        case value
        /// It enters only through the global batch (data.batch_size × optim.accumulation ×
        /// ranks, written as data.batch_size): a run resumes under another split of the same
        /// global batch.
        case globalBatch
        /// It never enters: it does not change the trained weights (where the run is written,
        /// logging, threads, checkpoint cadence, timeouts).
        case ignored
    }

    /// The dotted key, `section.key` (`optim.lr`).
    public let name: String
    /// The values it takes, in words (`integer 1...65536`, `corenet or nouns`).
    public let kind: String
    /// What it means (one line of `catlip train --list-keys`).
    public let help: String
    /// Whether `catlip train --resume --set` may change it (it does not change the result).
    public let resumable: Bool
    /// What the fingerprint does with it.
    public let fingerprint: FingerprintUse
    /// The value's canonical text: its YAML in config.yaml, and its text in the fingerprint.
    public let text: @Sendable (TrainConfig) -> String
    /// Reads the key into a configuration (an absent key keeps the value there).
    let read: @Sendable (ConfigReader, inout TrainConfig) throws -> Void

    /// A key of the field at `path`: `read` gets the reader, the key and the current value and
    /// returns the new one; `text` writes a value. A resumable key is left out of the fingerprint
    /// unless `fingerprint` says otherwise.
    init<Value>(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, Value> & Sendable, kind: String, resumable: Bool,
        fingerprint: FingerprintUse?, help: String, read: @escaping @Sendable (ConfigReader, String, Value) throws -> Value,
        text: @escaping @Sendable (Value) -> String
    ) {
        self.name = name
        self.kind = kind
        self.help = help
        self.resumable = resumable
        self.fingerprint = fingerprint ?? (resumable ? .ignored : .value)
        self.text = { text($0[keyPath: path]) }
        self.read = { reader, config in config[keyPath: path] = try read(reader, name, config[keyPath: path]) }
    }

    /// A text key (quoted in YAML).
    static func string(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, String> & Sendable, resumable: Bool = false,
        fingerprint: FingerprintUse? = nil, _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: "text", resumable: resumable, fingerprint: fingerprint, help: help, read: { try $0.string($1, $2) },
            text: quoted)
    }

    /// A text key that takes one of `options`.
    static func choice(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, String> & Sendable, _ options: [String], _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: options.joined(separator: " or "), resumable: false, fingerprint: nil, help: help,
            read: { try $0.choice($1, $2, options) }, text: { $0 })
    }

    /// A key whose values are the cases of `Choice` (by raw value, in declaration order).
    static func choice<Choice: RawRepresentable & CaseIterable & Sendable>(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, Choice> & Sendable, _ help: String
    ) -> ConfigKey where Choice.RawValue == String {
        let options = Choice.allCases.map(\.rawValue)
        return ConfigKey(
            name, path, kind: options.joined(separator: " or "), resumable: false, fingerprint: nil, help: help,
            read: { reader, name, value in Choice(rawValue: try reader.choice(name, value.rawValue, options))! },
            text: \.rawValue)
    }

    /// An integer key in `range`.
    static func int(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, Int> & Sendable, _ range: ClosedRange<Int>, resumable: Bool = false,
        fingerprint: FingerprintUse? = nil, _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: "integer \(range.lowerBound)...\(range.upperBound)", resumable: resumable, fingerprint: fingerprint,
            help: help, read: { try $0.int($1, $2, range) }, text: { String($0) })
    }

    /// A number key in `range`.
    static func double(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, Double> & Sendable, _ range: ClosedRange<Double>,
        resumable: Bool = false, _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: "number \(range.lowerBound)...\(range.upperBound)", resumable: resumable, fingerprint: nil,
            help: help, read: { try $0.double($1, $2, range) }, text: number)
    }

    /// A true/false key.
    static func bool(_ name: String, _ path: any WritableKeyPath<TrainConfig, Bool> & Sendable, _ help: String) -> ConfigKey {
        ConfigKey(
            name, path, kind: "true or false", resumable: false, fingerprint: nil, help: help, read: { try $0.bool($1, $2) },
            text: { String($0) })
    }

    /// A `[min, max]` key of two numbers in `range`.
    static func pair(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, [Double]> & Sendable, _ range: ClosedRange<Double>, _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: "[min, max] in \(range.lowerBound)...\(range.upperBound)", resumable: false, fingerprint: nil,
            help: help, read: { try $0.pair($1, $2, range) }, text: { "[" + $0.map(number).joined(separator: ", ") + "]" })
    }

    /// A key of a list of integers in `range`.
    static func ints(
        _ name: String, _ path: any WritableKeyPath<TrainConfig, [Int]> & Sendable, _ range: ClosedRange<Int>, _ help: String
    ) -> ConfigKey {
        ConfigKey(
            name, path, kind: "list of integers \(range.lowerBound)...\(range.upperBound)", resumable: false, fingerprint: nil,
            help: help, read: { try $0.ints($1, $2, range) }, text: { "[" + $0.map(String.init).joined(separator: ", ") + "]" })
    }

    /// A number as YAML reads it back: whole numbers below 1e15 with ".0" (`1.0`, not `1`, so
    /// that they stay floats), others as Swift prints them (`0.00025`, `1e-07`).
    @Sendable static func number(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int(v)) + ".0" }
        return "\(v)"
    }

    /// Text in double quotes with `\` and `"` escaped.
    @Sendable static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

extension TrainConfig {
    /// How the head pools the tokens (`model.global_pool`). Typed here only: `ModelArgs.globalPool`
    /// keeps the raw text that timm's config.json holds, so that a model file with another value
    /// is still read and refused with its own message.
    public enum GlobalPool: String, Sendable, CaseIterable {
        /// The class token's final state (needs model.class_token).
        case token
        /// The mean of the patch tokens.
        case avg
    }

    /// Every key of the configuration, in the order of the resolved YAML (`yaml()`), with what
    /// it means and how it is read, written, resumed and fingerprinted. The defaults are the
    /// fields' initial values.
    public static let keys: [ConfigKey] = [
        .string("data.train", \.data.train, "Training samples: shards (DIR/{00000..00099}.tar), a manifest (.tsv/.jsonl) or a folder."),
        .string("data.val", \.data.val, "Validation samples (shards or manifest) for the head's mean average precision; \"\" for none."),
        .string("data.vocab", \.data.vocab, "The vocabulary (vocab.tsv): class i is line i."),
        .choice(
            "data.task", \.data.task,
            "pretrain (captions -> synsets, BCE) or classify (labelled images: ImageFolder or path<TAB>class; softmax cross-entropy)."),
        .choice("data.label_mode", \.data.labelMode, "Caption labelling rule: corenet (the released CatLIP vocabulary's) or nouns (see LabelMode)."),
        .choice(
            "data.captions", \.data.captions, ["joined", "sampled"],
            "Samples with several captions: the union of their nouns (joined) or one caption drawn per epoch (sampled)."),
        .int("data.image_size", \.data.imageSize, 1...4096, "Training image side (the model's img_size)."),
        .int(
            "data.batch_size", \.data.batchSize, 1...65536, resumable: true, fingerprint: .globalBatch,
            "Images per micro-batch (one forward/backward); on resume only with the same global batch."),
        .int("data.threads", \.data.threads, 1...256, resumable: true, "Decode/augment threads of the loader."),
        .int("data.prefetch", \.data.prefetch, 1...64, resumable: true, "Batches decoded ahead."),
        .int("data.shuffle_buffer", \.data.shuffleBuffer, 1...10_000_000, "Shuffle-buffer size for shards."),
        .pair("data.crop_scale", \.data.cropScale, 1e-6...1, "RandomResizedCrop area range (fractions of the image)."),
        .pair("data.crop_ratio", \.data.cropRatio, 1e-3...1e3, "RandomResizedCrop aspect-ratio range."),
        .double("data.flip", \.data.flip, 0...1, "Horizontal flip probability."),
        .int("data.val_samples", \.data.valSamples, 0...Int.max, "Validation images used at most (0 = all)."),
        .double(
            "data.eval_crop_pct", \.data.evalCropPct, ModelLimits.cropPct,
            "Evaluation crop (timm's crop_pct): resize to side / crop_pct, centre-crop; written to the model."),
        .double("data.mixup", \.data.mixup, 0...100, "Mixup alpha for a classifier (timm's --mixup; 0 = off)."),
        .double("data.cutmix", \.data.cutmix, 0...100, "Cutmix alpha for a classifier (timm's --cutmix; 0 = off)."),
        .double("data.mixup_prob", \.data.mixupProb, 0...1, "Probability that a batch is mixed (timm's --mixup-prob)."),
        .double(
            "data.mixup_switch_prob", \.data.mixupSwitchProb, 0...1,
            "Probability of cutmix rather than mixup when both are on (timm's --mixup-switch-prob)."),
        .int(
            "data.max_file_mb", \.data.maxFileMB, 1...1_048_576, resumable: true,
            "Largest image file read from a manifest or folder, in MiB (larger ones are skipped)."),
        .ints(
            "data.resolutions", \.data.resolutions, 1...4096,
            "Variable resolution: each batch draws its side from this list at about constant tokens ([] = off)."),

        .int("model.patch_size", \.model.patchSize, 1...4096, "Patch side."),
        .int("model.embed_dim", \.model.embedDim, 1...65536, "Token width."),
        .int("model.depth", \.model.depth, 1...1024, "Blocks."),
        .int("model.num_heads", \.model.numHeads, 1...4096, "Attention heads (uniform model)."),
        .double("model.mlp_ratio", \.model.mlpRatio, 1e-3...1e3, "MLP width / embed_dim (uniform model)."),
        .choice("model.global_pool", \.model.globalPool, "Pooling: the class token or the mean of the patch tokens."),
        .bool("model.class_token", \.model.classToken, "Whether there is a class token."),
        .bool("model.qkv_bias", \.model.qkvBias, "Bias on the qkv Linear."),
        .int(
            "model.layer_scaling_head_dim", \.model.layerScalingHeadDim, 0...65536,
            "OpenELM layer-wise scaling: head dimension (0 = uniform model)."),
        .pair("model.layer_scaling_alpha", \.model.layerScalingAlpha, 1e-3...1e3, "Layer-wise scaling: attention width factors."),
        .pair("model.layer_scaling_beta", \.model.layerScalingBeta, 1e-3...1e3, "Layer-wise scaling: MLP width factors."),
        .string("model.init", \.model.initFrom, "Model directory to start from (every tensor but the head; \"\" = seeded init)."),
        .choice(
            "model.head_init", \.model.headInit,
            "Head of a run started from model.init: random, zero, transfer (Transfer Init through WordNet) or keep."),
        .bool("model.head_bias_prior", \.model.headBiasPrior, "Start the head bias at each class's log-odds instead of zeros."),
        .double(
            "model.drop_path_rate", \.model.dropPathRate, 0...0.99,
            "Stochastic depth (timm's drop_path_rate): per-image drop rate of the last block's branches, 0 at the first (0 = off)."),

        .double("optim.lr", \.optim.lr, 0...10, "Peak learning rate (after warm-up)."),
        .double("optim.min_lr", \.optim.minLR, 0...10, "Final learning rate of the cosine."),
        .int("optim.warmup_steps", \.optim.warmupSteps, 0...Int(Int32.max), "Linear warm-up steps."),
        .double("optim.warmup_init_lr", \.optim.warmupInitLR, 0...10, "Learning rate at step 0."),
        .double("optim.weight_decay", \.optim.weightDecay, 0...10, "AdamW decoupled weight decay (none on 1-D parameters)."),
        .bool("optim.embedding_decay", \.optim.embeddingDecay, "Whether pos_embed and cls_token get weight decay (corenet: yes, timm: no)."),
        .double("optim.beta1", \.optim.beta1, 0...0.999999, "AdamW beta1."),
        .double("optim.beta2", \.optim.beta2, 0...0.999999999, "AdamW beta2."),
        .double("optim.eps", \.optim.eps, 1e-30...1, "AdamW epsilon."),
        .double("optim.clip_grad", \.optim.clipGrad, 0...1e9, "Gradient clipping by global norm (0 = off)."),
        .double("optim.ema_momentum", \.optim.emaMomentum, 0...1, "EMA momentum per step (0 = no EMA); the model exports the average."),
        .int(
            "optim.accumulation", \.optim.accumulation, 1...65536, resumable: true, fingerprint: .globalBatch,
            "Micro-batches per optimiser step (global batch = batch_size x this x ranks)."),
        .double("optim.label_smoothing", \.optim.labelSmoothing, 0...0.999, "Label smoothing of classification targets (classify only)."),
        .double("optim.layer_decay", \.optim.layerDecay, 0...1, "Layer-wise lr decay (timm's layer_decay; 0 = off)."),
        .choice("optim.freeze", \.optim.freeze, "none, or backbone: train the head alone (a linear probe)."),

        .string("run.dir", \.run.dir, fingerprint: .ignored, "Run directory (\"\" = runs/NAME-YYYYmmdd-HHMMSS)."),
        .int("run.steps", \.run.steps, 1...Int(Int32.max), "Optimiser steps of the run (the cosine's length)."),
        .int("run.seed", \.run.seed, 0...Int.max, "Seed of initialisation, order and augmentation."),
        .int("run.threads", \.run.threads, 1...256, "Compute threads of the engine."),
        .int("run.log_every", \.run.logEvery, 1...Int(Int32.max), resumable: true, "Steps per metrics line."),
        .int(
            "run.checkpoint_every", \.run.checkpointEvery, 0...Int(Int32.max), resumable: true,
            "Checkpoint every this many steps (0 = only by time and at the end)."),
        .double(
            "run.checkpoint_minutes", \.run.checkpointMinutes, 0...1e6, resumable: true,
            "Checkpoint when this many minutes passed since the last one (0 = off)."),
        .int("run.keep_checkpoints", \.run.keepCheckpoints, 1...1000, resumable: true, "Checkpoints kept."),
        .int("run.max_bad_steps", \.run.maxBadSteps, 1...1_000_000, resumable: true, "Non-finite steps in a row that stop the run."),
        .int("run.eval_every", \.run.evalEvery, 0...Int(Int32.max), "Validation every this many steps (0 = only at the end)."),
        .choice(
            "run.precision", \.run.precision,
            "Input precision of the training products: fp32, or bf16 (the blocks' linear layers and the patch projection take bf16-rounded inputs with float sums in the forward pass and both backward products; master weights, optimiser state, gradients, norms, attention, the head and the loss stay float; needs AVX512_BF16; a run resumes at the precision it started with)."),
        .double(
            "run.comm_timeout", \.run.commTimeout, 1...1e6, resumable: true,
            "Seconds one collective of a data-parallel job may take before the rank gives up."),
    ]

    /// Keys that may be changed with `--set` when resuming (they do not change the result).
    public static let resumableKeys = Set(keys.filter(\.resumable).map(\.name))

    /// Every key with its default, the values it takes and its meaning, for
    /// `catlip train --list-keys`.
    public static var keysHelp: String {
        let defaults = TrainConfig()
        return keys.map { key in
            "\(key.name): \(key.text(defaults))  (\(key.kind)\(key.resumable ? "; may change on --resume" : ""))\n    \(key.help)"
        }.joined(separator: "\n")
    }

    /// `lines` (key, value text) as the sectioned YAML of config.yaml: a comment line, then each
    /// section's name and its keys indented.
    static func sectionedYAML(_ lines: [(key: String, value: String)]) -> String {
        var text = "# catlip train: resolved configuration (every key; written by catlip)\n"
        var section = Substring()
        for (key, value) in lines {
            let dot = key.firstIndex(of: ".")!
            if key[..<dot] != section {
                section = key[..<dot]
                text += "\(section):\n"
            }
            text += "  \(key[key.index(after: dot)...]): \(value)\n"
        }
        return text
    }

    /// This configuration with data.batch_size the global batch (× optim.accumulation ×
    /// `worldSize`) and optim.accumulation 1: what both fingerprints hash.
    func globalBatchNormalised(worldSize: Int) -> TrainConfig {
        var c = self
        c.data.batchSize = data.batchSize * optim.accumulation * worldSize
        c.optim.accumulation = 1
        return c
    }

    /// The salt of the fingerprint's text; a new version when the text's form changes.
    static let fingerprintSalt = "catlip-config-v2"

    /// The part of the configuration that determines the trained weights (everything except the
    /// `resumableKeys` and the run directory), hashed: a checkpoint is resumed only under the same.
    public var fingerprint: UInt64 { fingerprint(worldSize: 1) }

    /// The fingerprint of a data-parallel run over `worldSize` ranks: FNV-1a over the salt and a
    /// line `key=value` for each key that enters (`ConfigKey.fingerprint`) and differs from its
    /// default. The micro-batch size, accumulation and rank count enter only through the global
    /// batch they make, so a run resumes under another rank count when the global batch is kept;
    /// a key added with a default leaves every existing configuration's fingerprint as it was.
    public func fingerprint(worldSize: Int) -> UInt64 {
        let c = globalBatchNormalised(worldSize: worldSize)
        let defaults = TrainConfig()
        var text = Self.fingerprintSalt
        for key in Self.keys where key.fingerprint != .ignored {
            let value = key.text(c)
            if value != key.text(defaults) { text += "\n\(key.name)=\(value)" }
        }
        return FNV1a.hash(text.utf8)
    }

    /// The keys when the fingerprint hashed the resolved YAML (checkpoints written before the
    /// key table): frozen, in that YAML's order.
    static let legacyFingerprintKeys = [
        "data.train", "data.val", "data.vocab", "data.label_mode", "data.captions", "data.image_size", "data.batch_size",
        "data.threads", "data.prefetch", "data.shuffle_buffer", "data.crop_scale", "data.crop_ratio", "data.flip",
        "data.val_samples", "data.eval_crop_pct", "data.max_file_mb", "data.resolutions", "model.patch_size",
        "model.embed_dim", "model.depth", "model.num_heads", "model.mlp_ratio", "model.global_pool", "model.class_token",
        "model.qkv_bias", "model.layer_scaling_head_dim", "model.layer_scaling_alpha", "model.layer_scaling_beta",
        "model.head_bias_prior", "optim.lr", "optim.min_lr", "optim.warmup_steps", "optim.warmup_init_lr",
        "optim.weight_decay", "optim.embedding_decay", "optim.beta1", "optim.beta2", "optim.eps", "optim.clip_grad",
        "optim.ema_momentum", "optim.accumulation", "run.dir", "run.steps", "run.seed", "run.threads", "run.log_every",
        "run.checkpoint_every", "run.checkpoint_minutes", "run.keep_checkpoints", "run.max_bad_steps", "run.eval_every",
        "run.comm_timeout",
    ]

    /// The fingerprint that checkpoints written before the key table carry, bit for bit: FNV-1a
    /// over the resolved YAML of `legacyFingerprintKeys` with the global batch normalised, the
    /// run directory and the resumable keys of the time at fixed values, and the lines left out
    /// that that code left out (run.comm_timeout, data.max_file_mb, and optim.embedding_decay
    /// and data.captions at their behaviour from before the keys existed). Frozen: never change
    /// it, or those checkpoints no longer resume.
    public func legacyFingerprint(worldSize: Int) -> UInt64 {
        var c = globalBatchNormalised(worldSize: worldSize)
        c.run.dir = ""
        c.run.logEvery = 1
        c.run.checkpointEvery = 0
        c.run.checkpointMinutes = 0
        c.run.keepCheckpoints = 1
        c.run.maxBadSteps = 1
        c.data.threads = 1
        c.data.prefetch = 1
        let left = ["run.comm_timeout", "data.max_file_mb"]
        let lines = Self.legacyFingerprintKeys.compactMap { name -> (key: String, value: String)? in
            // every legacy key stays in the table: a key removed is a programming error
            let value = Self.keys.first { $0.name == name }!.text(c)
            if left.contains(name) || (name, value) == ("optim.embedding_decay", "true") || (name, value) == ("data.captions", "joined") {
                return nil
            }
            return (name, value)
        }
        return FNV1a.hash(Self.sectionedYAML(lines).utf8)
    }

    /// Whether a checkpoint that records `fingerprint` (hex) may be resumed under this
    /// configuration over `worldSize` ranks: it carries `fingerprint(worldSize:)`, or it was
    /// written before the key table, carries `legacyFingerprint(worldSize:)`, and every key
    /// added since is at its default (the behaviour of the code that wrote it).
    public func resumes(checkpointFingerprint fingerprint: String, worldSize: Int) -> Bool {
        if fingerprint == String(self.fingerprint(worldSize: worldSize), radix: 16) { return true }
        let defaults = TrainConfig()
        let added = Self.keys.filter { !Self.legacyFingerprintKeys.contains($0.name) && $0.fingerprint != .ignored }
        return added.allSatisfy { $0.text(self) == $0.text(defaults) }
            && fingerprint == String(legacyFingerprint(worldSize: worldSize), radix: 16)
    }
}
