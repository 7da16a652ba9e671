import ArgumentParser
import Evaluation
import Foundation
import Imaging
import Serving
import ViT
import WordNet

// The option groups and argument types every command shares: each option is declared once,
// here, with its name, default, help and check.

/// `--model DIR`: the model directory that embed, index, serve and eval load.
struct ModelOptions: ParsableArguments {
    @Option(
        name: .customLong("model"),
        help: ArgumentHelp("Model directory (config.json, model.safetensors; vocab.tsv for class names).", valueName: "model"))
    var directory: String

    /// The model's vocabulary file.
    var vocabularyPath: String { directory + "/vocab.tsv" }

    /// Loads the model, set to `precision` when one is given; a missing or malformed model, or
    /// a processor without bf16 products, is a one-line error.
    func load(precision: PrecisionOption? = nil) throws -> ViTModel {
        let vit = try cliRun { try ViTModel.load(directory: directory) }
        if let precision { try cliRun { try vit.setInferencePrecision(precision.precision) } }
        return vit
    }

    /// The model's vocab.tsv, which must have one synset per row of `vit`'s head.
    func vocabulary(of vit: ViTModel, database: WordNetDatabase) throws -> Vocabulary {
        let vocabulary = try cliRun { try Vocabulary.load(path: vocabularyPath, database: database) }
        guard vocabulary.count == vit.numClasses else {
            throw CLIError("\(vocabularyPath): \(vocabulary.count) synsets, the head has \(vit.numClasses) rows")
        }
        return vocabulary
    }
}

/// `--threads N`: worker threads (default 2, the machine this was written for has two cores).
struct ThreadsOption: ParsableArguments {
    @Option(name: .customLong("threads"), help: ArgumentHelp("Worker threads.", valueName: "threads"))
    var count: Int = 2

    func validate() throws {
        if count < 1 { throw ValidationError("--threads must be positive") }
    }

    /// Sets the engine's thread count (`Parallelism.threads`) for the model's products.
    func applyToEngine() { Parallelism.threads = count }
}

/// `--batch N`: images per forward pass of the commands that embed image lists (embed, index
/// build).
struct ForwardBatchOption: ParsableArguments {
    @Option(name: .customLong("batch"), help: ArgumentHelp("Images per forward pass.", valueName: "batch"))
    var size: Int = 32

    func validate() throws {
        if size < 1 { throw ValidationError("--batch must be positive") }
    }
}

/// `--precision fp32|bf16`: the input precision of the products in inference.
struct PrecisionOption: ParsableArguments {
    /// fp32, what training uses.
    static let defaultPrecision = InferencePrecision.fp32

    // A transform rather than the enum's own parsing, for the message scripts and tests look
    // for; ArgumentParser shows no default for a transform, hence the default in the help.
    @Option(
        help: "Input precision of the matrix products in inference: fp32, or bf16 (bf16 inputs, float sums; needs AVX512_BF16; embeddings move by a few tenths of a percent). (default: \(defaultPrecision.rawValue))",
        transform: InferencePrecision.parseOption)
    var precision: InferencePrecision = defaultPrecision
}

extension InferencePrecision: ExpressibleByArgument {
    /// `--precision`'s parser: a bad value is "--precision must be fp32 or bf16" (in
    /// ArgumentParser's message), which scripts and tests look for.
    static func parseOption(_ text: String) throws -> InferencePrecision {
        guard let value = InferencePrecision(rawValue: text) else { throw ValidationError("--precision must be fp32 or bf16") }
        return value
    }
}

/// `--wordnet DIR`: the WordNet 3.0 database folder.
struct WordNetDirectoryOption: ParsableArguments {
    @Option(name: .customLong("wordnet"), help: "WordNet 3.0 database folder.")
    var directory: String = WordNetDatabase.defaultDirectory

    /// Loads the database, turning a failure into a one-line error.
    func load() throws -> WordNetDatabase {
        try cliRun { try WordNetDatabase(directory: directory) }
    }
}

/// `--wordnet DIR --mode corenet|nouns`: the commands that label captions.
struct WordNetOptions: ParsableArguments {
    @OptionGroup var database: WordNetDirectoryOption

    @Option(help: "Labelling rule: corenet (the released CatLIP vocabulary's) or nouns.")
    var mode: LabelMode = .corenet

    /// Loads the database, turning a failure into a one-line error.
    func load() throws -> WordNetDatabase { try database.load() }
}

extension LabelMode: ExpressibleByArgument {}

extension TextSearchRule: ExpressibleByArgument {}

/// `--socket PATH | --url http://HOST:PORT`: where a running `catlip serve` listens.
struct EndpointOptions: ParsableArguments {
    @Option(help: "Unix socket of the daemon (default: $XDG_RUNTIME_DIR/catlip.sock or /tmp/catlip-UID/catlip.sock); it must be a socket of this user's or root's in a directory nobody else can write to, and the daemon must run as this user or root.")
    var socket: String?

    @Option(help: "TCP address of the daemon instead, http://HOST:PORT (HOST an IPv4 address, [IPv6 address] or localhost; PORT 1-65535).")
    var url: String?

    /// The endpoint (`--url` when given, else the socket); a malformed address is a one-line error.
    func endpoint() throws -> ServeEndpoint {
        try cliRun { try ServeEndpoint.from(socket: socket, url: url) }
    }
}

/// `--max-file-mb N`: the size cap on each image file a command reads (manifest lines, folder
/// entries, files named on the command line). Larger files, and paths that are not regular
/// files (FIFOs, devices such as /dev/zero, directories), are skipped and reported as bad
/// samples instead of being read.
struct MaxFileOption: ParsableArguments {
    @Option(
        name: .customLong("max-file-mb"),
        help: "Largest image file read, in MiB (default 256: 64 megapixels, the decoder's limit, of uncompressed 8-bit RGBA); larger files and non-regular files (FIFOs, devices) are skipped as bad samples.")
    var maxFileMB: Int = defaultMaxImageFileBytes >> 20

    /// The largest cap accepted: 1 TiB, far beyond any image and still an exact byte count.
    static let largestMB = 1 << 20

    func validate() throws {
        guard (1...Self.largestMB).contains(maxFileMB) else {
            throw ValidationError("--max-file-mb must be in 1...\(Self.largestMB)")
        }
    }

    /// The cap in bytes.
    var bytes: Int { min(max(1, maxFileMB), Self.largestMB) << 20 }
}

/// A comma-separated list of positive integers, `1,8,32` (the form README and BENCHMARKS.md
/// use for `--clients` and `--floats`).
struct IntList: ExpressibleByArgument, Equatable {
    /// The integers, in the order given.
    var values: [Int]

    init(_ values: [Int]) { self.values = values }

    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0) }
        guard parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        values = parts.map { $0! }
    }

    var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
}

/// `eval zero-shot --rule`: one scoring rule, or all of them.
enum RuleChoice: ExpressibleByArgument, Equatable {
    case all
    case one(ScoringRule)

    init?(argument: String) {
        if argument == "all" {
            self = .all
        } else if let rule = ScoringRule(rawValue: argument) {
            self = .one(rule)
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { ScoringRule.allCases.map(\.rawValue) + ["all"] }

    var defaultValueDescription: String {
        switch self {
        case .all: "all"
        case .one(let rule): rule.rawValue
        }
    }

    /// The rules scored, in the library's order.
    var rules: [ScoringRule] {
        switch self {
        case .all: ScoringRule.allCases
        case .one(let rule): [rule]
        }
    }
}

/// `embed --format`.
enum EmbeddingFormat: String, CaseIterable, ExpressibleByArgument {
    /// A float32 (N, D) .npy array, with the image paths in OUT.paths.
    case npy
    /// One {"path", "embedding"} JSON object per line.
    case jsonl
}

/// The daemon's image endpoints (`bench serve --endpoint`); `/v1/NAME`.
enum ImageEndpoint: String, CaseIterable, ExpressibleByArgument {
    case embed, classify, search

    /// The request path, `/v1/embed` say.
    var path: String { "/v1/" + rawValue }
}

/// `query`'s action: an image endpoint of the daemon, or its health.
enum QueryAction: String, CaseIterable, ExpressibleByArgument {
    case embed, classify, search, health

    /// The image endpoint, nil for health.
    var endpoint: ImageEndpoint? { ImageEndpoint(rawValue: rawValue) }
}

extension ResampleFilter: ExpressibleByArgument {}

/// `--top-k`, `--json` and `--svg` of the evaluation reports (zero-shot, classify).
struct ReportOptions: ParsableArguments {
    @Option(name: .customLong("top-k"), help: "k of top-k accuracy.")
    var topK: Int = 5

    @Option(help: "Write the full report (per class, confusion matrix) to this JSON file.")
    var json: String?

    @Option(help: "Draw the confusion matrix (zero-shot: of the first rule) as an SVG heat map here.")
    var svg: String?

    func validate() throws {
        if topK < 1 { throw ValidationError("--top-k must be positive") }
    }
}
