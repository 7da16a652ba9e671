import Foundation
import Support
import ViT
import WordNet

/// A checkpoint that cannot become a catlip model: the file and the problem, one line.
public struct ImportError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint, vocabulary or config file.
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// One named tensor of a checkpoint, in the file's order.
public struct NamedTensor: Sendable, Equatable {
    /// The checkpoint's name for it.
    public var name: String
    /// Shape and float32 values.
    public var tensor: FloatTensor

    /// A tensor and its name.
    public init(name: String, tensor: FloatTensor) {
        self.name = name
        self.tensor = tensor
    }
}

/// corenet's CatLIP ViT (apple/corenet `modeling/models/classification/vit.py`, the released
/// DataComp-1.3B checkpoints and their ImageNet/Places365 fine-tunes) as a catlip model in
/// timm's hub layout: every key renamed to the name timm's `vit_base_mci_224` uses for it and
/// shape-checked, the architecture read off the shapes, the stem, `no_embed_class` and the 1-D
/// position-embedding rule recorded in config.json.
///
/// corenet names and what they become:
///
///     patch_emb.{i}.block.conv.*                  patch_embed.backbone.{i}.conv.*
///     patch_emb.{i}.block.norm.*                  patch_embed.backbone.{i}.bn.*  (num_batches_tracked dropped)
///     cls_token (1, 1, D)                         cls_token
///     pos_embed.pos_embed.pos_embed (1, 1, N, D)  pos_embed (1, N, D)
///     transformer.{i}.pre_norm_mha.0.*            blocks.{i}.norm1.*
///     transformer.{i}.pre_norm_mha.1.qkv_proj.*   blocks.{i}.attn.qkv.*
///     transformer.{i}.pre_norm_mha.1.out_proj.*   blocks.{i}.attn.proj.*
///     transformer.{i}.pre_norm_ffn.{0,1,4}.*      blocks.{i}.{norm2,mlp.fc1,mlp.fc2}.*
///     post_transformer_norm.*                     norm.*
///     classifier.*                                head.*
///     neural_augmentor.*                          dropped (RangeAugment's training parameters)
public enum CorenetImport {
    /// Heads per width in corenet's ViT configurations (`config/vit.py`: tiny, small, base,
    /// large, huge; the released B/L/H use flash attention, which needs 64-wide heads, and
    /// these are D / 64); other widths get 64-wide heads unless the caller says. The state
    /// dict does not record the head count.
    public static let headsByWidth = [192: 3, 384: 6, 768: 12, 1024: 16, 1280: 20]

    /// The result: a validated config and the tensors under timm's names, plus what was
    /// dropped on the way.
    public struct Converted {
        /// The model's config.json.
        public var config: ModelConfig
        /// Tensors by timm name, exactly the model's parameters and BatchNorm buffers.
        public var tensors: [String: FloatTensor]
        /// corenet keys that were deliberately left out (RangeAugment, num_batches_tracked).
        public var dropped: [String]
    }

    /// Renames and checks corenet's state dict `records` (read from `path`). `heads` overrides
    /// the head count (not recoverable from the weights); `evalImageSize` sets the evaluation
    /// input size recorded in pretrained_cfg (224 unless given; the position embedding stays
    /// at its trained 14 x 14 and is resized by corenet's rule).
    public static func convert(
        _ records: [NamedTensor], path: String, heads: Int? = nil, evalImageSize: Int? = nil
    ) throws -> Converted {
        func fail(_ problem: String) -> ImportError { ImportError(path: path, problem: problem) }
        var byName: [String: FloatTensor] = [:]
        for r in records {
            if byName.updateValue(r.tensor, forKey: r.name) != nil { throw fail("tensor '\(r.name)' appears twice") }
        }
        func shape(_ name: String) throws -> [Int] {
            guard let t = byName[name] else { throw fail("missing tensor '\(name)' (not a corenet ViT checkpoint?)") }
            return t.shape
        }
        // the architecture, from the shapes
        let cls = try shape("cls_token")
        guard cls.count == 3, cls[0] == 1, cls[1] == 1, cls[2] >= 1 else {
            throw fail("cls_token has shape \(cls), expected [1, 1, D]")
        }
        let D = cls[2]
        let pos = try shape("pos_embed.pos_embed.pos_embed")
        guard pos.count == 4, pos[0] == 1, pos[1] == 1, pos[3] == D else {
            throw fail("pos_embed.pos_embed.pos_embed has shape \(pos), expected [1, 1, N, \(D)]")
        }
        let grid = Int(Double(pos[2]).squareRoot().rounded())
        guard grid >= 1, grid * grid == pos[2] else {
            throw fail("pos_embed.pos_embed.pos_embed has \(pos[2]) rows, not a square patch grid")
        }
        var depth = 0
        while byName["transformer.\(depth).pre_norm_mha.0.weight"] != nil { depth += 1 }
        guard depth >= 1 else { throw fail("no transformer blocks (transformer.0.pre_norm_mha.0.weight)") }
        let fc1 = try shape("transformer.0.pre_norm_ffn.1.weight")
        guard fc1.count == 2, fc1[1] == D, fc1[0] >= 1 else {
            throw fail("transformer.0.pre_norm_ffn.1.weight has shape \(fc1), expected [H, \(D)]")
        }
        let head = try shape("classifier.weight")
        guard head.count == 2, head[1] == D, head[0] >= 1 else {
            throw fail("classifier.weight has shape \(head), expected [classes, \(D)]")
        }
        let stemConv = try shape("patch_emb.0.block.conv.weight")
        guard stemConv.count == 4, stemConv[0] >= 1 else {
            throw fail("patch_emb.0.block.conv.weight has shape \(stemConv), expected [W, 3, 4, 4]")
        }
        let nh = heads ?? headsByWidth[D] ?? max(1, D / 64)
        guard nh >= 1, D % nh == 0 else { throw fail("embed_dim \(D) is not divisible by \(nh) heads") }
        var stem = ConvStemArgs.corenet(embedDim: D)
        stem.widths = [stemConv[0], stemConv[0], D]
        let args = ModelArgs(
            imgSize: grid * 16, patchSize: 16, inChans: 3, numClasses: head[0], globalPool: "token",
            embedDim: D, depth: depth, numHeads: nh, mlpRatio: Double(fc1[0]) / Double(D),
            qkvBias: true, classToken: true, noEmbedClass: true, stem: stem,
            posEmbedResize: .sequenceLinear)
        let evalSize = evalImageSize ?? grid * 16
        // corenet's evaluation: RGB in [0, 1], shorter side to 232 (bilinear), centre 224
        var config = ModelConfig(
            modelArgs: args, architecture: "vit_corenet",
            pretrainedCfg: PretrainedConfig(
                inputSize: [3, evalSize, evalSize], mean: [0, 0, 0], std: [1, 1, 1],
                cropPct: evalSize == 224 ? 224.0 / 232.0 : 1, interpolation: "bilinear",
                numClasses: head[0], firstConv: "patch_embed.backbone.0.conv",
                classifier: "head"))
        config.numClasses = head[0]
        do { try config.validate(path: path) } catch { throw fail("the checkpoint's architecture is not supported: \(error)") }

        // every name, renamed and checked against the model's layout
        let layout = ParameterLayout(config: config)
        var tensors: [String: FloatTensor] = [:]
        var dropped: [String] = []
        var unknown: [String] = []
        for r in records {
            guard let target = timmName(r.name) else {
                if r.name.hasPrefix("neural_augmentor.") || r.name.hasSuffix(".num_batches_tracked") {
                    dropped.append(r.name)
                } else {
                    unknown.append(r.name)
                }
                continue
            }
            var t = r.tensor
            if r.name == "pos_embed.pos_embed.pos_embed" { t.shape = [1, t.shape[2], t.shape[3]] }
            guard let spec = layout.spec(named: target) ?? layout.buffer(named: target) else {
                unknown.append(r.name)
                continue
            }
            guard t.shape == spec.shape else {
                throw fail("'\(r.name)' (\(target)) has shape \(r.tensor.shape), the architecture needs \(spec.shape)")
            }
            if let bad = t.values.firstIndex(where: { !$0.isFinite }) {
                throw fail("'\(r.name)' holds a non-finite value at index \(bad)")
            }
            if target.hasSuffix("running_var"), let bad = t.values.firstIndex(where: { $0 < 0 }) {
                throw fail("'\(r.name)' holds a negative variance at index \(bad)")
            }
            tensors[target] = t
        }
        if !unknown.isEmpty {
            throw fail("unknown tensors: " + list(unknown.sorted()))
        }
        let missing = (layout.specs + layout.buffers).map(\.name).filter { tensors[$0] == nil }
        if !missing.isEmpty {
            throw fail("missing tensors (timm names): " + list(missing))
        }
        return Converted(config: config, tensors: tensors, dropped: dropped)
    }

    /// timm's name for a corenet key, nil for a key that is not a model tensor.
    public static func timmName(_ key: String) -> String? {
        if key == "cls_token" { return "cls_token" }
        if key == "pos_embed.pos_embed.pos_embed" { return "pos_embed" }
        if key.hasSuffix(".num_batches_tracked") { return nil }
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        func leaf(_ p: String) -> Bool { ["weight", "bias", "running_mean", "running_var"].contains(p) }
        // patch_emb.{i}.block.{conv,norm}.{leaf}
        if parts.count == 5, parts[0] == "patch_emb", Int(parts[1]) != nil, parts[2] == "block", leaf(parts[4]) {
            switch parts[3] {
            case "conv": return "patch_embed.backbone.\(parts[1]).conv.\(parts[4])"
            case "norm": return "patch_embed.backbone.\(parts[1]).bn.\(parts[4])"
            default: return nil
            }
        }
        if parts.count == 2, parts[0] == "post_transformer_norm" { return "norm." + parts[1] }
        if parts.count == 2, parts[0] == "classifier" { return "head." + parts[1] }
        guard parts.count >= 5, parts[0] == "transformer", let i = Int(parts[1]), i >= 0,
            let last = parts.last, leaf(last)
        else { return nil }
        let block = "blocks.\(i)."
        let middle = parts[2..<(parts.count - 1)].joined(separator: ".")
        switch middle {
        case "pre_norm_mha.0": return block + "norm1." + last
        case "pre_norm_mha.1.qkv_proj": return block + "attn.qkv." + last
        case "pre_norm_mha.1.out_proj", "pre_norm_mha.1.out_proj_attn": return block + "attn.proj." + last
        case "pre_norm_ffn.0": return block + "norm2." + last
        case "pre_norm_ffn.1": return block + "mlp.fc1." + last
        case "pre_norm_ffn.4": return block + "mlp.fc2." + last
        default: return nil
        }
    }

    /// corenet's vocabulary (`datacomp_1_2B_vocab.pkl`: synset keys such as `n5928118` to
    /// counts, most frequent first) cut to the head's `classes` rows, as catlip's vocab.tsv
    /// entries: padded wnids with lemma names from `database` when given.
    public static func vocabulary(
        _ counts: [(key: String, count: Int)], classes: Int, database: WordNetDatabase?, path: String
    ) throws -> Vocabulary {
        guard counts.count >= classes else {
            throw ImportError(path: path, problem: "holds \(counts.count) synsets, the head has \(classes) rows")
        }
        var entries: [Vocabulary.Entry] = []
        var seen = Set<String>()
        for (i, item) in counts.prefix(classes).enumerated() {
            guard let wnid = Vocabulary.padded(item.key) else {
                throw ImportError(path: path, problem: "entry \(i) '\(item.key)' is not a synset key (n + offset)")
            }
            guard seen.insert(wnid).inserted else {
                throw ImportError(path: path, problem: "entry \(i): \(wnid) appears twice")
            }
            var lemmas: [String] = []
            if let database {
                guard let id = database.synset(wnid: wnid) else {
                    throw ImportError(path: path, problem: "entry \(i): \(wnid) is not a WordNet 3.0 noun synset")
                }
                lemmas = Array(database.lemmas(id))
            }
            entries.append(Vocabulary.Entry(wnid: wnid, count: item.count, lemmas: lemmas))
        }
        return Vocabulary(entries: entries)
    }

    /// Writes the model directory: config.json, model.safetensors (the tensors under their timm
    /// names) and, when given, vocab.tsv.
    public static func write(_ converted: Converted, vocabulary: Vocabulary?, to directory: String) throws {
        let model = try ViTModel(config: converted.config)
        try model.loadParameters(SafeTensors(tensors: converted.tensors), path: directory)
        try model.save(directory: directory)
        if let vocabulary { try vocabulary.write(path: directory + "/vocab.tsv") }
    }

    static func list(_ names: [String]) -> String {
        names.count <= 8 ? names.joined(separator: ", ") : names.prefix(8).joined(separator: ", ") + ", ... (\(names.count) in all)"
    }
}
