import ArgumentParser
import Dispatch
import Encoder
import Foundation
import Imaging
import Support
import ViT

/// Synthetic-model options of `catlip bench train|infer` (DESIGN.md).
struct ModelShapeOptions: ParsableArguments {
    @Option(name: .customLong("image-size"), help: "Image side.")
    var imageSize: Int = 64
    @Option(help: "Patch side.")
    var patch: Int = 8
    @Option(help: "Embedding width.")
    var dim: Int = 192
    @Option(help: "Blocks.")
    var depth: Int = 6
    @Option(help: "Attention heads.")
    var heads: Int = 3
    @Option(name: .customLong("mlp-ratio"), help: "MLP hidden width / dim.")
    var mlpRatio: Double = 4
    @Option(help: "Classes (head width).")
    var vocab: Int = 1000
    @Option(help: "Batch size.")
    var batch: Int = 64
    @Option(help: "Timed steps (after 3 warm-up steps).")
    var steps: Int = 20
    @Option(help: "Worker threads.")
    var threads: Int = 2
    @Flag(name: .customLong("no-class-token"), help: "Average pooling instead of a class token.")
    var noClassToken = false

    func validate() throws {
        for (name, value) in [("image-size", imageSize), ("patch", patch), ("dim", dim), ("depth", depth),
            ("heads", heads), ("vocab", vocab), ("batch", batch), ("steps", steps), ("threads", threads)]
        where value < 1 {
            throw ValidationError("--\(name) must be positive")
        }
        if dim % heads != 0 { throw ValidationError("--dim must be divisible by --heads") }
        if patch > imageSize { throw ValidationError("--patch must not exceed --image-size") }
    }

    var config: ModelConfig {
        ModelConfig(modelArgs: ModelArgs(
            imgSize: imageSize, patchSize: patch, numClasses: vocab,
            globalPool: noClassToken ? "avg" : "token", embedDim: dim, depth: depth, numHeads: heads,
            mlpRatio: mlpRatio, classToken: !noClassToken))
    }
}

extension BenchCommand {
    /// `catlip bench train`: training steps per second on synthetic batches.
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time training steps (forward, BCE loss, backward, clipping, AdamW) on "
                + "synthetic batches; one JSON line with images/s, median step, peak RSS, GFLOP/s.")
        @OptionGroup var shape: ModelShapeOptions
        func run() throws { try runBench(shape, train: true) }
    }

    /// `catlip bench infer`: forward passes per second on synthetic batches.
    struct Infer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time forward passes on synthetic batches; one JSON line.")
        @OptionGroup var shape: ModelShapeOptions
        @Option(name: .customLong("save-model"), help: "Also write the randomly initialised model (seed 0) to this model directory, e.g. for catlip serve benchmarks.")
        var saveModel: String?
        @OptionGroup var precision: PrecisionOption
        func run() throws {
            if let saveModel {
                var config = shape.config
                config.pretrainedCfg = PretrainedConfig(inputSize: [3, shape.imageSize, shape.imageSize], numClasses: shape.vocab)
                try cliRun { try ViTModel(config: config, seed: 0).save(directory: saveModel) }
            }
            try runBench(shape, train: false, precision: precision.value)
        }
    }
}

/// `--precision fp32|bf16`: the input precision of the products in inference.
struct PrecisionOption: ParsableArguments {
    @Option(help: "Input precision of the matrix products in inference: fp32, or bf16 (bf16 inputs, float sums; needs AVX512_BF16; embeddings move by a few tenths of a percent).")
    var precision: String = "fp32"

    func validate() throws {
        guard InferencePrecision(rawValue: precision) != nil else { throw ValidationError("--precision must be fp32 or bf16") }
    }

    /// The parsed precision.
    var value: InferencePrecision { InferencePrecision(rawValue: precision) ?? .fp32 }

    /// Sets it on `model`; a processor without bf16 products is a readable error.
    func apply(to model: ViTModel) throws {
        try cliRun { try model.setInferencePrecision(value) }
    }
}

func runBench(_ shape: ModelShapeOptions, train: Bool, precision: InferencePrecision = .fp32) throws {
    Parallelism.threads = shape.threads
    let result = try cliRun {
        try ViTBench.run(config: shape.config, batchSize: shape.batch, train: train, steps: shape.steps, precision: precision)
    }
    printJSON([
        "bench": train ? "train" : "infer", "precision": precision.rawValue, "image_size": shape.imageSize, "patch": shape.patch,
        "dim": shape.dim, "depth": shape.depth, "heads": shape.heads, "vocab": shape.vocab,
        "batch": shape.batch, "threads": shape.threads, "images_per_s": round1(result.imagesPerSecond),
        "step_ms_median": round1(result.stepMsMedian), "peak_rss_mb": round1(result.peakRssMb),
        "gflops": round1(result.gflops), "gflops_executed": round1(result.gflopsExecuted),
        "gflop_per_image": result.gflopPerImage,
        "parameters": result.parameters,
    ])
}

func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }

/// `catlip embed`: pooled pre-logits embeddings of images.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Write the pooled pre-logits embedding of each image (eval preprocessing from "
            + "the model's pretrained_cfg: shorter side to size/crop_pct, centre crop, mean/std).",
        discussion: "npy output is a float32 (N, D) array; the image paths of its rows are written "
            + "to OUT.paths, one per line. jsonl output has one {\"path\", \"embedding\"} per line. "
            + "Images that cannot be read are reported on stderr and left out.")

    @Option(help: "Model directory (config.json, model.safetensors).")
    var model: String

    @Option(help: "Output format: npy or jsonl.")
    var format: String = "npy"

    @Option(help: "Output file.")
    var out: String

    @Option(help: "Images per forward pass.")
    var batch: Int = 32

    @Option(help: "Worker threads.")
    var threads: Int = 2

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var fileLimit: MaxFileOption

    @Argument(help: "Images, or folders searched recursively for .jpg/.jpeg/.png files.")
    var inputs: [String]

    func validate() throws {
        if format != "npy" && format != "jsonl" { throw ValidationError("--format must be npy or jsonl") }
        if batch < 1 || threads < 1 { throw ValidationError("--batch and --threads must be positive") }
        if inputs.isEmpty { throw ValidationError("give at least one image or folder") }
    }

    func run() throws {
        Parallelism.threads = threads
        let vit = try cliRun { try ViTModel.load(directory: model) }
        try precision.apply(to: vit)
        let paths = try cliRun { try imagePaths(inputs) }
        let encoder = ImageEncoder(model: vit, batchSize: batch)
        let maxBytes = fileLimit.bytes
        let encoded = encoder.encode(count: paths.count) { i in (try readFileBytes(paths[i], maxBytes: maxBytes), paths[i]) }
        for problem in encoded.failures { printError("skipped \(problem.error)") }
        let kept = encoded.kept.map { paths[$0] }
        let embeddings = encoded.preLogits
        let failures = encoded.failures.count
        let d = encoder.dim
        try cliRun {
            if format == "npy" {
                try writeAtomic(npyFloat32(embeddings, shape: [kept.count, d]), to: out)
                try writeAtomic(Array(kept.map { $0 + "\n" }.joined().utf8), to: out + ".paths")
            } else {
                var text = ""
                for (i, path) in kept.enumerated() {
                    let object: [String: Any] = ["path": path, "embedding": Array(embeddings[(i * d)..<((i + 1) * d)])]
                    text += String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]), as: UTF8.self) + "\n"
                }
                try writeAtomic(Array(text.utf8), to: out)
            }
        }
        printJSON(["images": kept.count, "skipped": failures, "dim": d, "out": out, "format": format])
    }
}

/// Image files named by `inputs`: files as given, folders searched recursively (sorted).
func imagePaths(_ inputs: [String]) throws -> [String] {
    var out: [String] = []
    for input in inputs {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw CLIError("\(input): no such file or folder")
        }
        if !isDirectory.boolValue {
            out.append(input)
            continue
        }
        let found = (FileManager.default.enumerator(atPath: input)?.allObjects as? [String] ?? []).filter {
            let l = $0.lowercased()
            return l.hasSuffix(".jpg") || l.hasSuffix(".jpeg") || l.hasSuffix(".png")
        }.sorted()
        out += found.map { input + "/" + $0 }
    }
    return out
}

/// A float32 little-endian .npy file (format version 1.0).
func npyFloat32(_ values: [Float], shape: [Int]) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    let length = UInt16(header.utf8.count)
    out += [UInt8(length & 0xFF), UInt8(length >> 8)]
    out += Array(header.utf8)
    values.withUnsafeBytes { out += $0 }  // little-endian on every platform Swift runs here
    return out
}

/// Writes a file via a temporary name and rename (`SafeFile.writeAtomically`).
func writeAtomic(_ bytes: [UInt8], to path: String) throws {
    do {
        try SafeFile.writeAtomically(path, bytes: bytes)
    } catch let error as FileIOError {
        throw CLIError("\(path): cannot write: \(error.problem)")
    }
}
