import Dispatch
import Foundation
import Support

/// One timed run of the engine on synthetic batches (what `catlip bench train|infer` reports;
/// the PyTorch peer is Benchmarks/peers/vit_torch.py, which times the same steps).
public struct ViTBenchResult: Sendable, Codable, Equatable {
    /// "train" or "infer".
    public var mode: String
    /// Batch size / median step time.
    public var imagesPerSecond: Double
    /// Median, fastest and slowest timed step, in milliseconds.
    public var stepMsMedian: Double
    /// Fastest timed step (ms).
    public var stepMsMin: Double
    /// Slowest timed step (ms).
    public var stepMsMax: Double
    /// Achieved GFLOP/s from the analytic count of the model (`ViTBench.forwardFlopsPerImage`,
    /// the count the PyTorch peer uses).
    public var gflops: Double
    /// Achieved GFLOP/s from the products the engine actually computes
    /// (`ViTBench.executedForwardFlopsPerImage`: with token pooling the last block runs on the
    /// class token only): the figure to hold against the machine's FMA peak.
    public var gflopsExecuted: Double
    /// Analytic GFLOP per image per step (3x forward for training).
    public var gflopPerImage: Double
    /// Peak resident memory of the whole process (getrusage), MB.
    public var peakRssMb: Double
    /// Activation buffers planned for the batch, MB.
    public var activationMb: Double
    /// Trainable parameters.
    public var parameters: Int
    /// Worker threads (`Parallelism.threads`).
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case mode
        case imagesPerSecond = "images_per_s"
        case stepMsMedian = "step_ms_median"
        case stepMsMin = "step_ms_min"
        case stepMsMax = "step_ms_max"
        case gflops
        case gflopsExecuted = "gflops_executed"
        case gflopPerImage = "gflop_per_image"
        case peakRssMb = "peak_rss_mb"
        case activationMb = "activation_mb"
        case parameters, threads
    }
}

/// Synthetic-batch timing of training steps and inference.
public enum ViTBench {
    /// Forward FLOPs per image (multiply-add = 2), counting the matrix products only, as the
    /// PyTorch peer does: patch embedding N·(C·P·P)·D (a stem: each convolution's
    /// positions·(c·k·k)·w), per block T·D·3A (qkv) + 2·T·T·A
    /// (attention) + T·A·D (proj) + 2·T·D·H (MLP), head D·V. Training counts 3x this.
    public static func forwardFlopsPerImage(_ config: ModelConfig) -> Double {
        flopsPerImage(config, classOnlyLastBlock: false)
    }

    /// `forwardFlopsPerImage` as the fast backend computes it: with token pooling the last
    /// block's keys and values cover every token, but its query, attention, proj and MLP only
    /// the class token (see ClassTokenBlock.swift).
    public static func executedForwardFlopsPerImage(_ config: ModelConfig) -> Double {
        let a = config.modelArgs
        return flopsPerImage(config, classOnlyLastBlock: a.globalPool != "avg" && a.classToken)
    }

    /// The forward count with the last block's queries (and so its attention, proj and MLP
    /// rows) limited to the class token when `classOnlyLastBlock`: per block, keys and values
    /// T·D·2A, queries Q·D·A, attention 2·Q·T·A, proj Q·A·D, MLP 2·Q·D·H for Q query rows.
    static func flopsPerImage(_ config: ModelConfig, classOnlyLastBlock: Bool) -> Double {
        let a = config.modelArgs
        let g = a.gridSize(imageSize: a.imgSize)
        let n = Double(g * g)
        let t = n + (a.classToken ? 1 : 0)
        let d = Double(a.embedDim)
        var macs = n * Double(a.inChans * a.patchSize * a.patchSize) * d
        if let stem = a.stem {
            // each convolution: grid² positions × (c·k·k) inputs × w outputs
            macs = 0
            var channels = a.inChans
            for (i, side) in stem.grids(imageSize: a.imgSize).enumerated() {
                let k = stem.kernelSizes[i]
                macs += Double(side * side) * Double(channels * k * k) * Double(stem.widths[i])
                channels = stem.widths[i]
            }
        }
        for (l, b) in config.blocks.enumerated() {
            let (aw, h) = (Double(b.attentionWidth), Double(b.mlpHidden))
            let q = classOnlyLastBlock && l == config.blocks.count - 1 ? 1 : t
            macs += t * d * 2 * aw + q * d * aw + 2 * q * t * aw + q * aw * d + 2 * q * d * h
        }
        macs += d * Double(a.numClasses)
        return 2 * macs
    }

    /// Peak resident set size of this process in MB.
    public static func peakRssMb() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
            getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
            getrusage(RUSAGE_SELF, &usage)
        #endif
        return Double(usage.ru_maxrss) / 1024
    }

    /// Times `steps` steps after `warmup` untimed ones on one synthetic batch (images uniform
    /// in [0, 1), about 5 positive classes per image, seeded). Training steps are zero grads,
    /// forward, loss, backward, clipping at 1.0 and AdamW (lr 1e-3, weight decay 0.2);
    /// inference is the forward pass, at `precision` (`ViTModel.setInferencePrecision`, or
    /// `setTrainingPrecision` for training).
    public static func run(
        config: ModelConfig, batchSize: Int, train: Bool, steps: Int = 20, warmup: Int = 3,
        seed: UInt64 = 0, precision: InferencePrecision = .fp32
    ) throws -> ViTBenchResult {
        precondition(steps >= 1 && warmup >= 0 && batchSize >= 1)
        let model = try ViTModel(config: config, seed: seed)
        if train { try model.setTrainingPrecision(precision, setting: "--precision") } else { try model.setInferencePrecision(precision) }
        let acts = model.makeActivations(batchSize: batchSize, training: train)
        let (c, s, v) = (model.channels, model.imageSize, model.numClasses)
        var rng = SeededGenerator(seed: seed &+ 1)
        let images = (0..<(batchSize * c * s * s)).map { _ in Float(rng.nextUnit()) }
        var targets = [Float](repeating: 0, count: batchSize * v)
        for b in 0..<batchSize {
            for _ in 0..<5 { targets[b * v + Int(rng.next() % UInt64(v))] = 1 }
        }
        let optimizer = AdamW(model: model)
        var times: [Double] = []
        times.reserveCapacity(steps)
        images.withUnsafeBufferPointer { img in
            targets.withUnsafeBufferPointer { tgt in
                for step in 0..<(warmup + steps) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    model.forward(images: img.baseAddress!, activations: acts)
                    if train {
                        _ = model.loss(targets: tgt.baseAddress!, activations: acts)
                        model.zeroGradients()
                        model.backward(targets: tgt.baseAddress!, activations: acts)
                        clipGradientNorm(model, maxNorm: 1)
                        optimizer.update(model, lr: 1e-3)
                    }
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    if step >= warmup { times.append(Double(t1 - t0) / 1e6) }
                }
            }
        }
        times.sort()
        let median =
            times.count % 2 == 1
            ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        let perImage = forwardFlopsPerImage(config) * (train ? 3 : 1) / 1e9
        let executed = executedForwardFlopsPerImage(config) * (train ? 3 : 1) / 1e9
        return ViTBenchResult(
            mode: train ? "train" : "infer",
            imagesPerSecond: Double(batchSize) / (median / 1000),
            stepMsMedian: median, stepMsMin: times.first!, stepMsMax: times.last!,
            gflops: perImage * Double(batchSize) / (median / 1000),
            gflopsExecuted: executed * Double(batchSize) / (median / 1000),
            gflopPerImage: perImage,
            peakRssMb: peakRssMb(), activationMb: Double(acts.byteCount) / 1e6,
            parameters: model.layout.parameterCount, threads: Parallelism.threads)
    }
}
