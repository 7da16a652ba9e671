import ArgumentParser
import Distributed
import Foundation
import Imaging
import Serving
import Shards
import Support
import ViT
import WordNet

/// `catlip bench ...`: throughput measurements printed as one JSON line each. The loops live
/// in the libraries (`ViTBench`, `PipelineBench`, `LoaderBench`, `LabelBench`, `LoadGenerator`,
/// `AllreduceBench`); these commands parse options and print what they measured.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure throughput; prints one JSON line.",
        subcommands: [Train.self, Infer.self, Gemm.self, Pipeline.self, Labels.self, Loader.self, Serve.self, Allreduce.self])

    /// `catlip bench train`: training steps per second on synthetic batches.
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time training steps (forward, BCE loss, backward, clipping, AdamW) on "
                + "synthetic batches; one JSON line with images/s, median step, peak RSS, GFLOP/s.")
        @OptionGroup var shape: ModelShapeOptions
        @OptionGroup var precision: PrecisionOption
        func run() throws { try runModelBench(shape, train: true, precision: precision.precision) }
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
            try runModelBench(shape, train: false, precision: precision.precision)
        }
    }

    /// `catlip bench gemm`: the engine's matrix product alone, for the shapes a model runs.
    struct Gemm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time the engine's float matrix product C (m, n) = op(A) (m, k) · op(B) (k, n) on random "
                + "matrices; one JSON line with GFLOP/s (median of the runs).",
            discussion: "ViT-Ti/16 at batch 32: qkv is --m 6304 --n 576 --k 192, fc1 --m 6304 --n 768 --k 192, "
                + "fc2 --m 6304 --n 192 --k 768; a weight gradient is --trans-a --m 192 --n 768 --k 6304.")
        @Option(help: "Rows of C.") var m: Int = 6304
        @Option(help: "Columns of C.") var n: Int = 576
        @Option(help: "The summed dimension.") var k: Int = 192
        @Flag(help: "A is stored (k, m).") var transA = false
        @Flag(help: "B is stored (n, k), as a Linear weight.") var transB = false
        @Option(help: "Timed runs (after 2 warm-up runs).") var runs: Int = 20
        @OptionGroup var threads: ThreadsOption

        func validate() throws {
            for (name, v) in [("m", m), ("n", n), ("k", k), ("runs", runs)] where !(1...100_000).contains(v) {
                throw ValidationError("--\(name) must be in 1...100000")
            }
        }

        func run() throws {
            threads.applyToEngine()
            var rng = SeededGenerator(seed: 1)
            let a = (0..<(m * k)).map { _ in Float(rng.nextNormal()) }
            let b = (0..<(k * n)).map { _ in Float(rng.nextNormal()) }
            var c = [Float](repeating: 0, count: m * n)
            var times: [Double] = []
            for r in 0..<(runs + 2) {
                let start = DispatchTime.now().uptimeNanoseconds
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            ViT.Gemm.multiply(
                                transA: transA, transB: transB, m: m, n: n, k: k, a: pa.baseAddress!, lda: transA ? m : k,
                                b: pb.baseAddress!, ldb: transB ? k : n, c: pc.baseAddress!, ldc: n)
                        }
                    }
                }
                if r >= 2 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
            }
            let t = median(times)
            printJSON([
                "bench": "gemm", "m": m, "n": n, "k": k, "trans_a": transA, "trans_b": transB, "threads": threads.count,
                "ms_median": round1(t * 1000), "gflops": round1(2 * Double(m) * Double(n) * Double(k) / t / 1e9),
            ])
        }
    }

    /// `catlip bench pipeline`: decode + RandomResizedCrop + flip + float CHW over a folder.
    struct Pipeline: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images per second through the training input pipeline (read file, "
                + "decode, RandomResizedCrop, flip, float CHW) over the images in a folder.")

        @Option(help: "Folder of JPEG/PNG images.")
        var images: String

        @Option(help: "Output side in pixels.")
        var size: Int = 224

        @OptionGroup var threads: ThreadsOption

        @Option(help: "Timed passes over the folder (the median is reported).")
        var repeats: Int = 5

        @Option(help: "Seed of the augmentation draws.")
        var seed: UInt64 = 0

        @Flag(name: .customLong("no-reduced-decoding"), help: "Always decode JPEGs at full scale.")
        var noReducedDecoding = false

        func validate() throws {
            if size <= 0 { throw ValidationError("--size must be positive") }
            if repeats <= 0 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let files = try cliRun { try listFiles(images) }
            if files.isEmpty { throw CLIError("\(images): no files") }
            let transform = TrainTransform(size: size, reducedDecoding: !noReducedDecoding)
            let result = PipelineBench.run(files: files, transform: transform, threads: threads.count, repeats: repeats, seed: seed)
            printJSON([
                "bench": "pipeline", "size": size, "threads": threads.count, "images": files.count,
                "errors": result.errors, "reduced_decoding": !noReducedDecoding,
                "images_per_s": round1(median(result.imagesPerSecond)),
                "runs": result.imagesPerSecond.map(round1),
            ])
        }
    }

    /// `catlip bench labels`: captions per second through clean-up, tokenising and labelling.
    struct Labels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Captions per second through the labeller (one caption per line of "
                + "--captions), and the WordNet load time.")

        @OptionGroup var wordnet: WordNetOptions

        @Option(help: "Text file, one caption per line.")
        var captions: String

        @OptionGroup var threads: ThreadsOption

        @Option(help: "Timed passes (the median is reported).")
        var repeats: Int = 3

        func validate() throws {
            if repeats < 1 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let loadStart = DispatchTime.now().uptimeNanoseconds
            let database = try wordnet.load()
            let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
            guard let data = FileManager.default.contents(atPath: captions) else {
                throw CLIError("\(captions): cannot read")
            }
            let lines = textLines(data)
            let result = LabelBench.run(
                captions: lines, database: database, mode: wordnet.mode, threads: threads.count, repeats: repeats)
            printJSON([
                "bench": "labels", "captions": lines.count, "threads": threads.count, "mode": wordnet.mode.rawValue,
                "captions_per_s": median(result.captionsPerSecond).rounded(),
                "runs": result.captionsPerSecond.map { $0.rounded() }, "wordnet_load_s": (loadSeconds * 1000).rounded() / 1000,
                "captions_with_labels": result.captionsWithLabels, "labels": result.labels,
            ])
        }
    }

    /// `catlip bench loader`: batches per second out of the loader.
    struct Loader: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images per second out of the batch loader (read, decode, "
                + "RandomResizedCrop, flip, float CHW, multi-hot targets) over shards, a manifest "
                + "or a folder.")

        @Option(help: "Shards ('DIR/{00000..00009}.tar'), a manifest (.tsv/.jsonl) or a folder.")
        var data: String

        @Option(help: "Output side in pixels.")
        var size: Int = 224

        @OptionGroup var threads: ThreadsOption

        @Option(help: "Batch size.")
        var batch: Int = 64

        @Option(help: "Timed epochs (the median is reported).")
        var repeats: Int = 3

        @Option(help: "Number of classes of the multi-hot targets (labels are hashed captions).")
        var classes: Int = 1000

        func validate() throws {
            if size <= 0 || batch <= 0 || repeats <= 0 || classes <= 0 {
                throw ValidationError("sizes and counts must be positive")
            }
        }

        func run() throws {
            let source = try openSource(data)
            let config = LoaderConfig(
                batchSize: batch, transform: TrainTransform(size: size), classCount: classes,
                threads: threads.count, prefetchBatches: 2, seed: 0)
            let result = try LoaderBench.run(source: source, config: config, repeats: repeats)
            printJSON([
                "bench": "loader", "size": size, "threads": threads.count, "batch": batch, "images": result.images,
                "skipped": result.skipped,
                "images_per_s": round1(median(result.imagesPerSecond)),
                "runs": result.imagesPerSecond.map(round1),
            ])
        }
    }
}

extension BenchCommand {
    /// `catlip bench serve`: load on a running daemon.
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Closed-loop load on a running catlip serve (or any server with the same API): one JSON line "
                + "per client count with requests/s, images/s, p50/p90/p99 latency and errors.",
            discussion: "With --slow-drip or --oversized-per-s, hostile clients run beside the ordinary ones for the "
                + "whole run (loopback or Unix socket only): slow-drip connections sending a byte every --drip-interval "
                + "seconds, and oversized requests (a 1 GiB Content-Length, an endless chunked body, 31 MiB of JSON "
                + "numbers, 31 MiB of JSON base64 noise); a second JSON line reports how the daemon answered them.")

        @OptionGroup var daemon: EndpointOptions

        @Option(help: "Image sent in every request.")
        var image: String

        @Option(help: "Endpoint: embed, classify or search.")
        var endpoint: ImageEndpoint = .embed

        @Option(help: "Comma-separated concurrent client counts, one run each.")
        var clients = IntList([1, 8, 32])

        @Option(help: "Seconds measured per run.")
        var duration = 10.0

        @Option(help: "Seconds of warm-up per run.")
        var warmup = 2.0

        @Option(help: "Hostile: slow-drip connections kept open beside the ordinary clients (at most 2000).")
        var slowDrip = 0

        @Option(help: "Hostile: seconds between two bytes of a slow drip.")
        var dripInterval = 2.0

        @Option(help: "Hostile: oversized requests started per second, one at a time (at most 20).")
        var oversizedPerS = 0.0

        func validate() throws {
            if !(0...HostileLoad.limits.slowDrips).contains(slowDrip) {
                throw ValidationError("--slow-drip \(slowDrip): expected 0 to \(HostileLoad.limits.slowDrips)")
            }
            if !(0...HostileLoad.limits.oversizedPerSecond).contains(oversizedPerS) {
                throw ValidationError("--oversized-per-s \(oversizedPerS): expected 0 to \(HostileLoad.limits.oversizedPerSecond)")
            }
            if !(0.01...60).contains(dripInterval) { throw ValidationError("--drip-interval \(dripInterval): expected 0.01 to 60 s") }
            if !(0...3600).contains(duration) || !(0...3600).contains(warmup) {
                throw ValidationError("--duration and --warmup: expected 0 to 3600 s")
            }
            if duration <= 0 || warmup < 0 { throw ValidationError("--duration must be positive, --warmup >= 0") }
        }

        func run() throws {
            let target = try daemon.endpoint()
            guard let data = FileManager.default.contents(atPath: image) else { throw CLIError("\(image): cannot be read") }
            let hostileLoad = slowDrip > 0 || oversizedPerS > 0
            if hostileLoad, case .tcp(let host, _) = target, !["127.0.0.1", "localhost", "::1"].contains(host) {
                throw CLIError("--slow-drip and --oversized-per-s load only a local daemon (--socket, or --url http://127.0.0.1:PORT), not \(host)")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for count in clients.values {
                var load = LoadGenerator(endpoint: target, path: endpoint.path, body: [UInt8](data), contentType: "application/octet-stream")
                load.clients = count
                load.duration = duration
                load.warmup = warmup
                var hostile = HostileLoad(endpoint: target)
                hostile.slowDrips = slowDrip
                hostile.dripInterval = dripInterval
                hostile.oversizedPerSecond = oversizedPerS
                let (report, hostileReport) = load.run(beside: hostileLoad ? hostile : nil)
                FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
                if let hostileReport {
                    FileHandle.standardOutput.write(try encoder.encode(["hostile": hostileReport]) + Data("\n".utf8))
                }
            }
        }
    }

    /// `catlip bench allreduce`: the sum that data-parallel training runs every step.
    struct Allreduce: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time in-place float sums over the ranks of an MPI job (run under mpirun -np N); rank 0 prints one JSON "
                + "line per size with the median time, algorithm bandwidth (bytes / time) and bus bandwidth (x 2(N-1)/N).")

        @Option(help: "Comma-separated float counts.")
        var floats = IntList([262_144, 1_048_576, 4_194_304, 16_777_216])

        @Option(help: "Timed repetitions per size (after 3 warm-up ones).")
        var repeats = 20

        func validate() throws {
            if repeats < 1 { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            let reducer = try cliRun { try makeReducer() }
            for count in floats.values {
                let seconds = try cliRun { try AllreduceBench.medianSeconds(reducer: reducer, count: count, repeats: repeats) }
                guard reducer.rank == 0 else { continue }
                let n = Double(reducer.worldSize)
                let bytes = Double(count * 4)
                let algbw = bytes / seconds / 1e9
                func digits(_ x: Double, _ places: Int) -> Double { Double(String(format: "%.\(places)f", x)) ?? x }
                printJSON([
                    "bench": "allreduce", "ranks": reducer.worldSize, "floats": count, "bytes": count * 4,
                    "ms_median": digits(seconds * 1e3, 3), "algbw_gb_s": digits(algbw, 3),
                    "busbw_gb_s": digits(algbw * 2 * (n - 1) / max(n, 1), 3),
                ])
            }
            reducer.finalize()
        }
    }
}

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
    @OptionGroup var threads: ThreadsOption
    @Flag(name: .customLong("no-class-token"), help: "Average pooling instead of a class token.")
    var noClassToken = false
    @Flag(name: .customLong("corenet-stem"), help: "corenet's CatLIP architecture (the released models'): a convolutional stem (4x4/4 padded 1, 2x2/2, 2x2/2 with BatchNorm and GELU, width max(32, dim/4)) instead of the patch projection, and no position embedding on the class token; --patch must be 16.")
    var corenetStem = false

    func validate() throws {
        for (name, value) in [("image-size", imageSize), ("patch", patch), ("dim", dim), ("depth", depth),
            ("heads", heads), ("vocab", vocab), ("batch", batch), ("steps", steps)]
        where value < 1 {
            throw ValidationError("--\(name) must be positive")
        }
        if dim % heads != 0 { throw ValidationError("--dim must be divisible by --heads") }
        if patch > imageSize { throw ValidationError("--patch must not exceed --image-size") }
        if corenetStem && patch != 16 { throw ValidationError("--corenet-stem needs --patch 16 (the stem's strides 4·2·2)") }
        if corenetStem && noClassToken { throw ValidationError("--corenet-stem needs the class token") }
    }

    /// The model these options describe.
    var config: ModelConfig {
        ModelConfig(modelArgs: ModelArgs(
            imgSize: imageSize, patchSize: patch, numClasses: vocab,
            globalPool: noClassToken ? "avg" : "token", embedDim: dim, depth: depth, numHeads: heads,
            mlpRatio: mlpRatio, classToken: !noClassToken, noEmbedClass: corenetStem,
            stem: corenetStem ? ConvStemArgs.corenet(embedDim: dim) : nil,
            posEmbedResize: corenetStem ? .sequenceLinear : .grid2d))
    }
}

/// `bench train|infer`: times `ViTBench.run` and prints its JSON line.
func runModelBench(_ shape: ModelShapeOptions, train: Bool, precision: InferencePrecision = .fp32) throws {
    shape.threads.applyToEngine()
    let result = try cliRun {
        try ViTBench.run(config: shape.config, batchSize: shape.batch, train: train, steps: shape.steps, precision: precision)
    }
    printJSON([
        "bench": train ? "train" : "infer", "precision": precision.rawValue, "image_size": shape.imageSize, "patch": shape.patch,
        "dim": shape.dim, "depth": shape.depth, "heads": shape.heads, "vocab": shape.vocab,
        "batch": shape.batch, "threads": shape.threads.count, "images_per_s": round1(result.imagesPerSecond),
        "step_ms_median": round1(result.stepMsMedian), "peak_rss_mb": round1(result.peakRssMb),
        "gflops": round1(result.gflops), "gflops_executed": round1(result.gflopsExecuted),
        "gflop_per_image": result.gflopPerImage,
        "parameters": result.parameters,
    ])
}
