import ArgumentParser
import Foundation
import Serving

#if canImport(Glibc)
    import Glibc
#endif

/// `catlip index build`: embeddings of images for `/v1/search`.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index", abstract: "Build search indexes of image embeddings.", subcommands: [Build.self])

    /// `catlip index build`.
    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Embed images (files, folders, shards or manifests) into an index file for catlip serve --index.",
            discussion: "The index is a safetensors file: embeddings (N, D) float32, L2-normalised, and the "
                + "keys (paths, or SHARD:KEY for shard samples) in its metadata. Unreadable images are skipped and reported.")

        @OptionGroup var model: ModelOptions

        @Option(help: "Output index file.")
        var out: String

        @OptionGroup var batch: ForwardBatchOption

        @OptionGroup var threads: ThreadsOption

        @OptionGroup var precision: PrecisionOption

        @OptionGroup var fileLimit: MaxFileOption

        @Flag(help: "Also keep a small PNG of every row (OUT.thumbs, longest side --thumbnail-side) for the search page of catlip serve --ui.")
        var thumbnails = false

        @Option(help: "Longest side of the thumbnails, in pixels.")
        var thumbnailSide: Int = IndexThumbnails.defaultSide

        @Argument(help: "Images, folders, shards (.tar or a brace pattern) or manifests (.tsv/.jsonl).")
        var inputs: [String]

        func validate() throws {
            if inputs.isEmpty { throw ValidationError("give at least one image, folder or shard pattern") }
            if !(16...512).contains(thumbnailSide) { throw ValidationError("--thumbnail-side must be in 16...512") }
        }

        func run() throws {
            threads.applyToEngine()
            let vit = try model.load(precision: precision)
            var builder = IndexBuilder(model: vit)
            builder.batchSize = batch.size
            builder.maxFileBytes = fileLimit.bytes
            if thumbnails { builder.thumbnailSide = thumbnailSide }
            let started = Date()
            let (index, report) = try cliRun {
                try builder.build(inputs: inputs) { done, skipped in
                    if isatty(2) != 0 { FileHandle.standardError.write(Data("\r\(done) embedded, \(skipped) skipped".utf8)) }
                }
            }
            if isatty(2) != 0 { printError("") }
            for problem in report.problems { printError("skipped \(problem)") }
            if report.skipped > report.problems.count { printError("... and \(report.skipped - report.problems.count) more skipped") }
            guard index.count > 0 else { throw CLIError("no image could be embedded from \(inputs.joined(separator: " "))") }
            try cliRun { try index.write(path: out) }
            let sidecar = IndexThumbnails.path(forIndex: out)
            if let pictures = report.thumbnails {
                try cliRun { try pictures.write(path: sidecar) }
            } else if FileManager.default.fileExists(atPath: sidecar) {
                // an old sidecar would no longer match the rows
                try? FileManager.default.removeItem(atPath: sidecar)
            }
            let seconds = Date().timeIntervalSince(started)
            printError(String(format: "%@: %d images embedded (dim %d), %d skipped, %.1f s (%.1f images/s)",
                              out, index.count, index.dim, report.skipped, seconds, Double(index.count) / max(seconds, 1e-9)))
        }
    }
}
