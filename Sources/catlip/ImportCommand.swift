import ArgumentParser
import Foundation
import Interop
import Shards
import ViT
import WordNet

/// `catlip import corenet|timm`: other frameworks' checkpoints to catlip model directories.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn a corenet or timm checkpoint into a model directory (timm's hub layout).",
        subcommands: [Corenet.self, Timm.self])

    /// `catlip import corenet CHECKPOINT.pt [--vocab VOCAB.pkl] --out MODEL_DIR`.
    struct Corenet: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a released CatLIP model (corenet's torch.save state dict, e.g. vit_base.pt) "
                + "into a model directory: config.json with the convolutional stem, no_embed_class and "
                + "corenet's 1-D position-embedding rule; model.safetensors in timm's names; vocab.tsv "
                + "from --vocab (datacomp_1_2B_vocab.pkl).",
            discussion: "The checkpoint is read without executing anything: a pickle that names any "
                + "callable other than the few torch.save uses is refused. Every tensor's name and shape "
                + "is checked; RangeAugment's training parameters are dropped.")

        @Argument(help: "corenet checkpoint (.pt, torch.save zip format).")
        var checkpoint: String

        @Option(
            help:
                "corenet's vocabulary pickle (datacomp_1_2B_vocab.pkl): its first V synsets become vocab.tsv, so that zero-shot classification and /v1/classify name the head's rows."
        )
        var vocab: String?

        @Option(
            help: "Heads per block (default: corenet's for the width: 3, 6, 12, 16, 20 for 192, 384, 768, 1024, 1280; else width / 64).")
        var heads: Int?

        @Option(help: "Evaluation input size recorded in pretrained_cfg (default 224; 512 for the 512x512 fine-tunes).")
        var imageSize: Int?

        @Option(
            help:
                "For a fine-tuned classifier (ImageNet-1k, Places365): its class names in head order, one per line (or i<TAB>name), written as classes.tsv so that eval classify and /v1/classify name them."
        )
        var classes: String?

        @OptionGroup var wordnet: WordNetDirectoryOption

        @Option(help: "Model directory to write.")
        var out: String

        func run() throws {
            let records = try cliRun { try TorchImport.read(path: checkpoint) }
            let converted = try cliRun {
                try CorenetImport.convert(records, path: checkpoint, heads: heads, evalImageSize: imageSize)
            }
            var vocabulary: Vocabulary?
            if let vocab {
                let database = try wordnet.load()
                let counts = try cliRun { try TorchImport.readPickledCounts(path: vocab) }
                vocabulary = try cliRun {
                    try CorenetImport.vocabulary(
                        counts, classes: converted.config.numClasses, database: database, path: vocab)
                }
            }
            var classNames: [String]?
            if let classes {
                let names = try cliRun { try ClassifiedImages.readClasses(classes) }
                guard names.count == converted.config.numClasses else {
                    throw CLIError(
                        "\(classes): lists \(names.count) classes, the checkpoint's head has \(converted.config.numClasses) rows")
                }
                classNames = names
            }
            try cliRun { try CorenetImport.write(converted, vocabulary: vocabulary, to: out) }
            if let classNames {
                try writeAtomic(Array(ClassifiedImages.classesTSV(classNames).utf8), to: out + "/classes.tsv")
            }
            let a = converted.config.modelArgs
            var summary: [String: Any] = [
                "out": out, "embed_dim": a.embedDim, "depth": a.depth, "num_heads": a.numHeads,
                "num_classes": a.numClasses, "stem_width": a.stem?.widths.first ?? 0,
                "dropped": converted.dropped.sorted(), "vocab": vocabulary != nil, "classes": classNames != nil,
            ]
            if vocabulary == nil && classNames == nil {
                summary["note"] =
                    "neither --vocab nor --classes: the head's rows have no names (zero-shot and /v1/classify need vocab.tsv, eval classify classes.tsv)"
            }
            printJSON(summary)
        }
    }

    /// `catlip import timm WEIGHTS --config CONFIG.json --out MODEL_DIR`.
    struct Timm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a timm VisionTransformer state dict (.safetensors, or .pt from torch.save) "
                + "with its hub config.json into a model directory; every name and shape is checked "
                + "against the config.")

        @Argument(help: "Weights: model.safetensors or a torch.save .pt state dict in timm's names.")
        var weights: String

        @Option(name: .customLong("config"), help: "The model's config.json (timm hub layout).")
        var configPath: String

        @Option(help: "Model directory to write.")
        var out: String

        func run() throws {
            let config = try cliRun { try ModelConfig.read(path: configPath) }
            let records: [NamedTensor]
            if weights.hasSuffix(".safetensors") {
                let file = try cliRun { try SafeTensors.read(path: weights) }
                records = file.names.map { NamedTensor(name: $0, tensor: file.tensors[$0]!) }
            } else {
                records = try cliRun { try TorchImport.read(path: weights) }
            }
            let dropped = try cliRun { try TimmImport.write(records, config: config, path: weights, to: out) }
            printJSON(["out": out, "dropped": dropped])
        }
    }
}
