import ArgumentParser
import FileIO
import Foundation
import Imaging
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

    /// Images per forward pass (the name the batch loop reads: it is being replaced by the
    /// shared encoder path, issue 19).
    private var batch: Int { forwardBatch.size }

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one image or folder") }
    }

    func run() throws {
        threads.applyToEngine()
        let vit = try model.load(precision: precision)
        let cfg = vit.config.pretrainedCfg
        let filter: ResampleFilter = cfg.interpolation == "bicubic" ? .bicubic : .bilinear
        let transform = EvalTransform(size: vit.imageSize, cropPct: cfg.cropPct, filter: filter)
        let paths = try cliRun { try imagePaths(inputs) }
        let embedder = ViTEmbedder(model: vit, batchSize: batch)
        var kept: [String] = []
        var embeddings: [Float] = []
        var failures = 0
        var start = 0
        while start < paths.count {
            let chunk = Array(paths[start..<min(paths.count, start + batch)])
            start += chunk.count
            var pixels = [Float](repeating: 0, count: chunk.count * transform.outputCount)
            let (decoded, problems) = pixels.withUnsafeMutableBufferPointer { buffer in
                transform.decodeBatch(count: chunk.count, into: buffer) { i in (try readFileBytes(chunk[i], maxBytes: fileLimit.bytes), chunk[i]) }
            }
            for problem in problems { printError("skipped \(problem.error)") }
            kept += decoded.map { chunk[$0] }
            let n = decoded.count
            failures += chunk.count - n
            if n > 0 { embeddings += pixels.withUnsafeBufferPointer { embedder.embed(images: $0.baseAddress!, count: n) } }
        }
        let d = embedder.dim
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
