import ArgumentParser
import Encoder
import Foundation
import Imaging
import Support
import ViT

/// `catlip embed`: pooled pre-logits embeddings of images.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Write the pooled pre-logits embedding of each image (eval preprocessing from "
            + "the model's pretrained_cfg: shorter side to size/crop_pct, centre crop, mean/std).",
        discussion: "npy output is a float32 (N, D) array; the image paths of its rows are written "
            + "to OUT.paths, one per line. jsonl output has one {\"path\", \"embedding\"} per line. "
            + "Images that cannot be read are reported on stderr and left out.")

    @OptionGroup var model: ModelOptions

    @Option(help: "Output format: npy or jsonl.")
    var format: EmbeddingFormat = .npy

    @Option(help: "Output file.")
    var out: String

    @OptionGroup var forwardBatch: ForwardBatchOption

    @OptionGroup var threads: ThreadsOption

    @OptionGroup var precision: PrecisionOption

    @OptionGroup var fileLimit: MaxFileOption

    @Argument(help: "Images, or folders searched recursively for .jpg/.jpeg/.png files.")
    var inputs: [String]

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one image or folder") }
    }

    func run() throws {
        threads.applyToEngine()
        let vit = try model.load(precision: precision)
        let paths = try cliRun { try imagePaths(inputs) }
        let maxBytes = fileLimit.bytes
        let encoder = ImageEncoder(model: vit, batchSize: forwardBatch.size)
        let encoded = encoder.encode(count: paths.count) { i in (try readFileBytes(paths[i], maxBytes: maxBytes), paths[i]) }
        for problem in encoded.failures { printError("skipped \(problem.error)") }
        let kept = encoded.kept.map { paths[$0] }
        let embeddings = encoded.preLogits
        let failures = encoded.failures.count
        let d = encoder.dim
        try cliRun {
            switch format {
            case .npy:
                try writeAtomic(NPYWriter.float32(embeddings, shape: [kept.count, d]), to: out)
                try writeAtomic(Array(kept.map { $0 + "\n" }.joined().utf8), to: out + ".paths")
            case .jsonl:
                var text = ""
                for (i, path) in kept.enumerated() {
                    let object: [String: Any] = ["path": path, "embedding": Array(embeddings[(i * d)..<((i + 1) * d)])]
                    text += String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]), as: UTF8.self) + "\n"
                }
                try writeAtomic(Array(text.utf8), to: out)
            }
        }
        printJSON(["images": kept.count, "skipped": failures, "dim": d, "out": out, "format": format.rawValue])
    }
}
