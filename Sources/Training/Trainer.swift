import Distributed
import Foundation
import Imaging
import Shards
import ViT
import WordNet

/// Why a run stopped before its last step, or could not start.
public struct TrainError: Error, CustomStringConvertible, Sendable {
    /// What happened, in words.
    public var message: String
    /// An error with a message.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// How a run ended.
public struct TrainSummary: Sendable {
    /// The run directory.
    public var runDirectory: String
    /// Steps done (of `totalSteps`).
    public var steps: Int
    /// Steps the run was configured for.
    public var totalSteps: Int
    /// True when a signal stopped the run (a checkpoint was written; resume continues it).
    public var interrupted: Bool
    /// Images trained on.
    public var samplesSeen: Int
    /// Samples the loader skipped.
    public var skippedSamples: Int
    /// Non-finite steps skipped.
    public var badSteps: Int
    /// Mean loss of the first and of the last logging interval.
    public var firstLoss: Double?
    /// Mean loss of the last logging interval.
    public var lastLoss: Double?
    /// Training seconds over all sessions of the run.
    public var trainSeconds: Double
    /// Validation result at the end (when a validation set is configured).
    public var validation: ValidationResult?
    /// The exported model directory (when the run completed).
    public var modelDirectory: String?
    /// Skip reasons with example keys, from the loader.
    public var skipReport: String
    /// The mean loss of every logging interval of the run so far (metrics.jsonl), in order.
    public var lossCurve: [Double] = []
}

/// The mean average precision of the head on validation captions, and its baseline.
public struct ValidationResult: Sendable, Equatable {
    /// Images evaluated.
    public var images: Int
    /// Validation images that could not be decoded or had no label entry.
    public var skipped: Int
    /// Classes with at least one positive among the images.
    public var classes: Int
    /// Mean over those classes of the average precision of the head's logits.
    public var map: Double
    /// The same with every image scored by the training frequency of each class.
    public var baselineMap: Double
}

/// Where the trainer reports to: plain log lines and the live progress line.
public protocol TrainReporter: AnyObject {
    /// A line for the log (printed and appended to the run's train.log).
    func log(_ line: String)
    /// The live state after a step (a terminal shows it in place; otherwise ignored).
    func progress(step: Int, total: Int, loss: Double, lr: Double, imagesPerSecond: Double, etaSeconds: Double)
}

/// The pretraining job: loader → ViT → BCE over the synsets of each caption → AdamW, with
/// gradient accumulation, non-finite step skipping, metrics.jsonl, atomic checkpoints that
/// resume exactly, validation mAP, and the final model directory.
public final class Trainer {
    /// The resolved configuration.
    public let config: TrainConfig
    /// The run directory.
    public let runDirectory: String
    private let database: WordNetDatabase
    private let reporter: any TrainReporter
    private let stop: StopRequest
    /// The data-parallel ranks (one process: `LocalReducer`).
    private let reducer: any GradientReducer
    /// Test hook: called after the backward pass of each step (0-based step index), e.g. to
    /// plant a non-finite gradient. Single-process runs only (with several ranks the gradient
    /// sums are still in flight at that point).
    var afterBackward: ((ViTModel, Int) -> Void)?

    /// A trainer for `config` writing into `runDirectory`; `stop` is polled after every step.
    /// With a `reducer` of several ranks, each rank reads its partition of the data, gradients
    /// and step statistics are summed over the ranks, and rank 0 alone writes the run directory.
    public init(
        config: TrainConfig, runDirectory: String, database: WordNetDatabase, reporter: any TrainReporter, stop: StopRequest,
        reducer: any GradientReducer = LocalReducer()
    ) {
        self.config = config
        self.runDirectory = runDirectory
        self.database = database
        self.reporter = reporter
        self.stop = stop
        self.reducer = reducer
    }

    /// Whether this process writes the run directory (rank 0).
    var isRoot: Bool { reducer.rank == 0 }

    var checkpointDirectory: String { runDirectory + "/checkpoints" }
    var metricsPath: String { runDirectory + "/metrics.jsonl" }

    /// The model configuration the run trains (timm's names; classes = vocabulary size).
    public static func modelConfig(_ c: TrainConfig, classes: Int) -> ModelConfig {
        let m = c.model
        let scaling = m.layerScalingHeadDim > 0
            ? LayerScaling(headDim: m.layerScalingHeadDim, alpha: m.layerScalingAlpha, beta: m.layerScalingBeta) : nil
        let args = ModelArgs(
            imgSize: c.data.imageSize, patchSize: m.patchSize, inChans: 3, numClasses: classes,
            globalPool: m.globalPool.rawValue, embedDim: m.embedDim, depth: m.depth, numHeads: m.numHeads,
            mlpRatio: m.mlpRatio, qkvBias: m.qkvBias, classToken: m.classToken, layerScaling: scaling)
        return ModelConfig(
            modelArgs: args,
            pretrainedCfg: PretrainedConfig(
                inputSize: [3, c.data.imageSize, c.data.imageSize], cropPct: c.data.evalCropPct,
                interpolation: "bilinear", numClasses: classes))
    }

    /// Trains from step 0 (`resume` false: the run directory must not hold checkpoints) or from
    /// the newest readable checkpoint; returns when the run completes, a signal stops it, or
    /// throws when it cannot go on (bad data path, diverged).
    public func run(resume: Bool) throws -> TrainSummary {
        let fm = FileManager.default
        let world = reducer.worldSize
        if isRoot {
            try fm.createDirectory(atPath: checkpointDirectory, withIntermediateDirectories: true)
            if !resume && !CheckpointFile.list(directory: checkpointDirectory).isEmpty {
                throw TrainError("\(runDirectory): holds checkpoints of an earlier run; resume it with --resume \(runDirectory) or choose another run.dir")
            }
            try writeText(config.yaml(), to: runDirectory + "/config.yaml")
        }

        // Vocabulary and labels
        let vocabulary: Vocabulary
        do { vocabulary = try Vocabulary.load(path: config.data.vocab, database: database) } catch { throw TrainError("data.vocab: \(error)") }
        guard vocabulary.count > 0 else { throw TrainError("\(config.data.vocab): the vocabulary is empty") }
        if isRoot { try writeText(vocabulary.tsv(), to: runDirectory + "/vocab.tsv") }
        let mode = config.data.labelMode
        let trainSource = try openSource(config.data.train, key: "data.train", shuffle: true)
        // per sample, the label list of each caption the loader may draw (one: the joined captions)
        let captionLabels: [String: [[UInt32]]]
        if config.data.captions == "sampled" {
            captionLabels = try sampledLabelTable(source: trainSource, vocabulary: vocabulary, mode: mode)
        } else {
            captionLabels = try labelTable(source: trainSource, what: "training", vocabulary: vocabulary, mode: mode).mapValues { [$0] }
        }

        // Model, optimiser, EMA
        Parallelism.threads = config.run.threads
        let modelConfig = Self.modelConfig(config, classes: vocabulary.count)
        let model: ViTModel
        do { model = try ViTModel(config: modelConfig, seed: UInt64(config.run.seed)) } catch { throw TrainError("model: \(error)") }
        // CATLIP_BACKEND=naive trains on the reference kernels (slow; for checking the fast ones)
        if ProcessInfo.processInfo.environment["CATLIP_BACKEND"] == "naive" { model.backend = .naive }
        if config.model.headBiasPrior {
            // log-odds of each class among the training samples' labels (with sampled captions,
            // the expected frequency: each caption of a sample weighs 1 / its caption count;
            // summed in key order, as dictionary order changes from process to process)
            var counts = [Double](repeating: 0, count: vocabulary.count)
            for key in captionLabels.keys.sorted() {
                let lines = captionLabels[key]!
                if lines.isEmpty { continue }
                let w = 1 / Double(lines.count)
                for l in lines { for c in Set(l) where Int(c) < counts.count { counts[Int(c)] += w } }
            }
            let bias = model.parameter("head.bias")
            let n = Double(max(captionLabels.count, 1))
            for c in counts.indices {
                let p = min(max(counts[c] / n, 0.5 / n), 1 - 0.5 / n)
                bias[c] = Float(log(p / (1 - p)))
            }
        }
        let o = config.optim
        let adam = AdamW(model: model, beta1: Float(o.beta1), beta2: Float(o.beta2), eps: Float(o.eps), weightDecay: Float(o.weightDecay))
        adam.decayEmbeddings = o.embeddingDecay
        let ema = o.emaMomentum > 0 ? WeightEMA(model: model, momentum: Float(o.emaMomentum)) : nil
        let schedule = CosineSchedule(
            maxLR: o.lr, minLR: o.minLR, warmupIterations: o.warmupSteps, warmupInitLR: o.warmupInitLR,
            maxIterations: config.run.steps)
        var state = TrainState()
        state.seed = config.run.seed
        state.configFingerprint = String(config.fingerprint(worldSize: world), radix: 16)
        state.parameterCount = model.parameters.count
        state.hasEMA = ema != nil
        let parameterCount = model.layout.specs.reduce(0) { $0 + $1.count }
        reporter.log(
            "model: ViT \(config.data.imageSize) px, patch \(config.model.patchSize), dim \(config.model.embedDim), depth \(config.model.depth), "
                + "\(parameterCount) parameters, \(vocabulary.count) classes; global batch \(config.data.batchSize * o.accumulation * world)"
                + (world > 1 ? " (\(world) ranks x \(config.data.batchSize) x \(o.accumulation) accumulation)" : ""))

        var loaderStart = state.loader
        if world == 1 {
            if resume, let restored = try restore(model: model, adam: adam, ema: ema) {
                state = restored
            } else if resume {
                reporter.log("resume: no readable checkpoint in \(checkpointDirectory); starting from step 0")
            }
            loaderStart = Self.loaderPosition(of: state, rank: 0, world: 1, batchSize: config.data.batchSize)
        } else {
            // rank 0 reads the checkpoint; every rank gets its state and tensors
            var restored: TrainState?
            if isRoot && resume {
                restored = try restore(model: model, adam: adam, ema: ema)
                if restored == nil { reporter.log("resume: no readable checkpoint in \(checkpointDirectory); starting from step 0") }
            }
            let blob = try reducer.broadcast(isRoot ? (try restored.map { Array(try JSONEncoder().encode($0)) } ?? []) : [])
            if !blob.isEmpty {
                guard let shared = try? JSONDecoder().decode(TrainState.self, from: Data(blob)) else {
                    throw TrainError("rank \(reducer.rank): the checkpoint state from rank 0 does not decode")
                }
                state = shared
                adam.step = state.optimizerStep
                loaderStart = Self.loaderPosition(of: state, rank: reducer.rank, world: world, batchSize: config.data.batchSize)
            }
            // identical starting tensors on every rank (the seeded initialisation or the checkpoint)
            var blocks = [model.parameters, adam.m, adam.v]
            if let ema { blocks.append(ema.weights) }
            for block in blocks { try reducer.broadcast(block.base, count: block.count) }
        }
        if isRoot {
            if !resume || state.step == 0 { try? fm.removeItem(atPath: metricsPath) }
            try truncateMetrics(lines: state.metricsLines)
        }
        let metrics = isRoot ? try MetricsWriter(path: metricsPath) : nil

        // Loader
        let transform = TrainTransform(
            size: config.data.imageSize, scale: config.data.cropScale[0]...config.data.cropScale[1],
            ratio: config.data.cropRatio[0]...config.data.cropRatio[1], flipProbability: config.data.flip)
        var loaderConfig = LoaderConfig(
            batchSize: config.data.batchSize, transform: transform, classCount: vocabulary.count,
            threads: config.data.threads, prefetchBatches: config.data.prefetch, seed: UInt64(config.run.seed),
            rank: reducer.rank, worldSize: world, dropLast: true, resolutions: config.data.resolutions.isEmpty ? nil : config.data.resolutions)
        loaderConfig.maxFileBytes = config.data.maxFileMB << 20
        let captionSeed = UInt64(config.run.seed)
        let loader = BatchLoader(source: trainSource, config: loaderConfig) { key, epoch in
            guard let lines = captionLabels[key], !lines.isEmpty else { return nil }
            return lines.count == 1 ? lines[0] : lines[Self.captionChoice(seed: captionSeed, epoch: epoch, key: key, count: lines.count)]
        }
        loader.start(at: loaderStart)
        defer { loader.stop() }

        let validator = config.data.val.isEmpty || !isRoot ? nil : try Validator(
            trainer: self, vocabulary: vocabulary, mode: mode, model: model)

        var activations: [String: ViTActivations] = [:]
        var activationOrder: [String] = []
        func acts(count: Int, side: Int) -> ViTActivations {
            let key = "\(count)x\(side)"
            if let a = activations[key] { return a }
            if activationOrder.count >= 2 { activations[activationOrder.removeFirst()] = nil }
            let a = model.makeActivations(batchSize: count, imageSize: side, training: true)
            activations[key] = a
            activationOrder.append(key)
            return a
        }

        var skipNotes: [String] = []
        var stepSkipped = 0  // this rank's samples skipped during the current step
        var emptyEpochs = 0
        /// The next batch, rolling over epochs; the data-loader wait is added to `wait`.
        func nextBatch(_ wait: inout Double) throws -> Batch {
            while true {
                let t0 = now()
                let before = loader.position.consumed
                let batch: Batch?
                do { batch = try loader.next() } catch { throw TrainError("data.train: \(error)") }
                wait += now() - t0
                if let batch {
                    stepSkipped += loader.position.consumed - before - batch.count
                    emptyEpochs = 0
                    if batch.count > 0 { return batch }
                    continue
                }
                if loader.skipped.total > 0 { skipNotes.append("epoch \(loader.position.epoch): \(loader.skipped)") }
                emptyEpochs += 1
                if emptyEpochs >= 2 {
                    throw TrainError("\(config.data.train): an epoch gave no full batch of \(config.data.batchSize) usable samples (skipped: \(loader.skipped.total))")
                }
                loader.start(at: LoaderPosition(epoch: loader.position.epoch + 1))
            }
        }

        let totalSteps = config.run.steps
        var lastCheckpoint = now()
        var interval = (images: 0, wait: 0.0, start: now(), gradNorm: 0.0)
        var intervalComm = 0.0  // seconds blocked waiting for the ranks' sums
        var firstLoss: Double?
        var lastLoss: Double?
        var interrupted = false
        let sessionStart = now()
        let secondsBefore = state.trainSeconds
        reporter.log(state.step == 0 ? "training \(totalSteps) steps into \(runDirectory)" : "resumed at step \(state.step) of \(totalSteps) (epoch \(state.loader.epoch))")

        while state.step < totalSteps {
            // one optimiser step over `accumulation` micro-batches
            model.zeroGradients()
            var lossSum = 0.0
            var images = 0
            var previousCount = 0
            var wait = 0.0
            for micro in 0..<o.accumulation {
                let batch = try nextBatch(&wait)
                let a = acts(count: batch.count, side: batch.side)
                if previousCount > 0 && previousCount != batch.count {
                    scale(model.gradients, by: Float(previousCount) / Float(batch.count))
                }
                model.forward(images: batch.images.baseAddress!, activations: a)
                let loss = model.loss(targets: batch.targets.baseAddress!, activations: a)
                if world > 1 && micro == o.accumulation - 1 {
                    // the last micro-batch: each range of gradients, once final, becomes this
                    // rank's sum over its samples and starts summing over the ranks while the
                    // rest of the backward pass runs
                    let count = Float(batch.count)
                    var failure: (any Error)?
                    model.backward(targets: batch.targets.baseAddress!, activations: a) { range in
                        let g = model.gradients.base
                        for i in range { g[i] *= count }
                        do { try self.reducer.startSum(g + range.lowerBound, count: range.count) } catch { failure = failure ?? error }
                    }
                    if let failure { throw TrainError("step \(state.step + 1): \(failure)") }
                } else {
                    model.backward(targets: batch.targets.baseAddress!, activations: a)
                }
                lossSum += Double(loss) * Double(batch.count)
                images += batch.count
                previousCount = batch.count
                state.loader = loader.position
            }
            if world == 1 && previousCount != images { scale(model.gradients, by: Float(previousCount) / Float(images)) }
            afterBackward?(model, state.step)
            // over the ranks: gradient sums in buckets, then the step's statistics and votes
            let rootWantsCheckpoint = isRoot && config.run.checkpointMinutes > 0 && now() - lastCheckpoint >= config.run.checkpointMinutes * 60
            var stats = [lossSum, Double(images), stop.requested ? 1 : 0, rootWantsCheckpoint ? 1 : 0, Double(stepSkipped)]
            stepSkipped = 0
            if world > 1 {
                // the gradient sums were started during the last backward pass
                let commStart = now()
                do {
                    try reducer.sum(&stats)
                    try reducer.finishSums()
                } catch { throw TrainError("step \(state.step + 1): \(error)") }
                intervalComm += now() - commStart
                scale(model.gradients, by: 1 / Float(stats[1]))
                lossSum = stats[0]
                images = Int(stats[1])
            }
            state.skippedSamples += Int(stats[4])
            let loss = lossSum / Double(images)
            let gradNorm = Double(clipGradientNorm(model, maxNorm: o.clipGrad > 0 ? Float(o.clipGrad) : .infinity))
            let lr = schedule.learningRate(iteration: state.step)
            if loss.isFinite && gradNorm.isFinite {
                adam.update(model, lr: Float(lr))
                ema?.update(model)
                state.optimizerStep = adam.step
                state.consecutiveBadSteps = 0
                state.intervalLossSum += loss
                state.intervalSteps += 1
            } else {
                state.badSteps += 1
                state.consecutiveBadSteps += 1
                reporter.log("step \(state.step + 1): non-finite \(loss.isFinite ? "gradients" : "loss") (loss \(loss), grad norm \(gradNorm)); step skipped")
                if state.consecutiveBadSteps >= config.run.maxBadSteps {
                    throw TrainError(
                        "stopped at step \(state.step + 1): \(state.consecutiveBadSteps) non-finite steps in a row (run.max_bad_steps); "
                            + "the last good checkpoint in \(checkpointDirectory) is intact - lower optim.lr or raise optim.warmup_steps and resume")
                }
            }
            state.step += 1
            state.samplesSeen += images
            interval.images += images
            interval.wait += wait
            interval.gradNorm = gradNorm

            let elapsed = now() - interval.start
            let rate = elapsed > 0 ? Double(interval.images) / elapsed : 0
            let sessionRate = Double(state.samplesSeen) / max(1e-9, secondsBefore + now() - sessionStart)
            let eta = Double(totalSteps - state.step) * Double(config.data.batchSize * o.accumulation) / max(1e-9, sessionRate)
            reporter.progress(step: state.step, total: totalSteps, loss: loss, lr: lr, imagesPerSecond: rate, etaSeconds: eta)

            if state.step % config.run.logEvery == 0 || state.step == totalSteps {
                let meanLoss = state.intervalSteps > 0 ? state.intervalLossSum / Double(state.intervalSteps) : Double.nan
                if firstLoss == nil && state.intervalSteps > 0 { firstLoss = meanLoss }
                if state.intervalSteps > 0 { lastLoss = meanLoss }
                let fields: [(String, Any)] = [
                    ("step", state.step), ("epoch", state.loader.epoch), ("loss", meanLoss.isFinite ? meanLoss : NSNull()),
                    ("lr", lr), ("grad_norm", gradNorm.isFinite ? gradNorm : NSNull()),
                    ("images_per_s", round2(rate)), ("data_wait", round4(elapsed > 0 ? interval.wait / elapsed : 0)),
                ] + (world > 1 ? [("comm_wait", round4(elapsed > 0 ? intervalComm / elapsed : 0)), ("ranks", world)] : []) + [
                    ("samples", state.samplesSeen), ("skipped", state.skippedSamples), ("bad_steps", state.badSteps),
                    ("seconds", round2(secondsBefore + now() - sessionStart)),
                ]
                try metrics?.write(fields)
                state.metricsLines += 1
                reporter.log(
                    String(format: "step %d/%d  epoch %d  loss %.4f  lr %.2e  grad %.3f  %.0f img/s  data wait %.1f%%", state.step, totalSteps,
                           state.loader.epoch, meanLoss, lr, gradNorm, rate, 100 * (elapsed > 0 ? interval.wait / elapsed : 0)))
                state.intervalLossSum = 0
                state.intervalSteps = 0
                interval = (0, 0, now(), 0)
                intervalComm = 0
            }
            if let validator, config.run.evalEvery > 0, state.step % config.run.evalEvery == 0, state.step < totalSteps {
                let validationStart = now()
                let v = try validator.evaluate(ema: ema)
                try metrics?.write([
                    ("step", state.step), ("val_map", v.map), ("val_baseline_map", v.baselineMap), ("val_images", v.images),
                    ("seconds", round2(secondsBefore + now() - sessionStart)), ("val_seconds", round2(now() - validationStart)),
                ])
                state.metricsLines += 1
                reporter.log(String(format: "step %d: validation mAP %.4f (frequency baseline %.4f, %d images)", state.step, v.map, v.baselineMap, v.images))
                interval.start = now()
            }

            // every rank takes the same decisions: the votes were summed with the statistics
            interrupted = world > 1 ? stats[2] > 0 : stop.requested
            let byStep = config.run.checkpointEvery > 0 && state.step % config.run.checkpointEvery == 0
            let byTime = world > 1 ? stats[3] > 0 : rootWantsCheckpoint
            if byStep || byTime || interrupted || state.step == totalSteps {
                state.trainSeconds = secondsBefore + now() - sessionStart
                if world > 1 {
                    let positions = try reducer.gather(Array(try JSONEncoder().encode(loader.position)))
                    state.worldSize = world
                    state.rankLoaders = try positions.map { try JSONDecoder().decode(LoaderPosition.self, from: Data($0)) }
                } else {
                    state.worldSize = nil
                    state.rankLoaders = nil
                }
                if isRoot { try checkpoint(state: state, model: model, adam: adam, ema: ema) }
                lastCheckpoint = now()
            }
            if interrupted {
                let cause = stop.requested ? stop.signalName : "a signal to another rank"
                reporter.log("stopped by \(cause) after step \(state.step); checkpoint written - continue with: catlip train --resume \(runDirectory)")
                break
            }
        }
        if !interrupted && loader.skipped.total > 0 { skipNotes.append("epoch \(loader.position.epoch) so far: \(loader.skipped)") }

        var summary = TrainSummary(
            runDirectory: runDirectory, steps: state.step, totalSteps: totalSteps, interrupted: interrupted,
            samplesSeen: state.samplesSeen, skippedSamples: state.skippedSamples, badSteps: state.badSteps,
            firstLoss: firstLoss, lastLoss: lastLoss, trainSeconds: secondsBefore + now() - sessionStart,
            validation: nil, modelDirectory: nil, skipReport: skipNotes.joined(separator: "\n"))
        if !isRoot { return summary }  // rank 0 writes the curve, the model and the summary
        summary.lossCurve = try writeLossCurve()
        if interrupted { return summary }

        // The final model (EMA weights when EMA is on), validation, summary
        let modelDir = runDirectory + "/model"
        let saved = FloatArena(count: model.parameters.count)
        saved.copy(from: model.parameters)
        ema?.copy(into: model)
        do {
            try model.save(directory: modelDir)
            try writeText(vocabulary.tsv(), to: modelDir + "/vocab.tsv")
        } catch { throw TrainError("\(modelDir): \(error)") }
        model.parameters.copy(from: saved)
        summary.modelDirectory = modelDir
        if let validator {
            let v = try validator.evaluate(ema: ema)
            summary.validation = v
            try metrics?.write([("step", state.step), ("val_map", v.map), ("val_baseline_map", v.baselineMap), ("val_images", v.images)])
            reporter.log(String(format: "validation: mAP %.4f over %d classes of %d images (frequency baseline %.4f)", v.map, v.classes, v.images, v.baselineMap))
        }
        try writeSummary(summary)
        return summary
    }

    // MARK: - Pieces

    func openSource(_ data: String, key: String, shuffle: Bool) throws -> any SampleSource {
        do {
            return try openSampleSource(data, shuffle: shuffle, shuffleBuffer: config.data.shuffleBuffer)
        } catch {
            throw TrainError("\(key): \(error)")
        }
    }

    /// Class indices per sample key: the label cache files beside the data when they match
    /// the vocabulary, otherwise labelled now (and not written anywhere).
    func labelTable(source: any SampleSource, what: String, vocabulary: Vocabulary, mode: LabelMode) throws -> [String: [UInt32]] {
        let fingerprint = LabelCache.fingerprint(vocabulary: vocabulary, mode: mode)
        let files = LabelFiles.dataFiles(of: source)
        if !files.isEmpty, let table = try? LabelFiles.load(files: files, expectedFingerprint: fingerprint) {
            reporter.log("labels: \(table.count) \(what) samples from label caches beside the data")
            return table
        }
        let start = now()
        let samples: [(file: String, key: String, caption: String)]
        do { samples = try LabelFiles.captions(of: source) } catch { throw TrainError("\(what) data: \(error)") }
        let (labels, empty) = labelCaptions(samples.map(\.caption), mode: mode, vocabulary: vocabulary)
        let table = Dictionary(zip(samples.map(\.key), labels), uniquingKeysWith: { $1 })
        reporter.log(String(format: "labels: %d %@ captions labelled in %.1f s (%d with no synset of the vocabulary: trained as all-negative)", labels.count, what, now() - start, empty))
        return table
    }

    /// Labels `captions` now (nothing cached): the class indices of each, and how many have none.
    func labelCaptions(_ captions: [String], mode: LabelMode, vocabulary: Vocabulary) -> (labels: [[UInt32]], empty: Int) {
        let cache = LabelCache.build(
            keys: captions.indices.map(String.init), captions: captions, vocabulary: vocabulary, database: database,
            mode: mode, threads: max(1, config.data.threads))
        let labels = (0..<cache.count).map { Array(cache.labels(at: $0)) }
        return (labels, labels.filter(\.isEmpty).count)
    }

    /// `data.captions: sampled`: per sample key, the class indices of each of its captions (the
    /// non-blank lines of its caption text, labelled one by one; a one-line caption is one
    /// entry). Labelled here from the captions: the label caches beside the data hold the
    /// joined captions' labels only.
    func sampledLabelTable(source: any SampleSource, vocabulary: Vocabulary, mode: LabelMode) throws -> [String: [[UInt32]]] {
        let start = now()
        let samples: [(file: String, key: String, caption: String)]
        do { samples = try LabelFiles.captions(of: source) } catch { throw TrainError("training data: \(error)") }
        var owners: [Int] = [], lines: [String] = []
        for (i, sample) in samples.enumerated() {
            let parts = sample.caption.split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.allSatisfy(\.isWhitespace) }
            for part in parts.isEmpty ? [sample.caption] : parts {
                owners.append(i)
                lines.append(part)
            }
        }
        let (labels, empty) = labelCaptions(lines, mode: mode, vocabulary: vocabulary)
        var table: [String: [[UInt32]]] = [:]
        table.reserveCapacity(samples.count)
        for (owner, l) in zip(owners, labels) { table[samples[owner].key, default: []].append(l) }
        reporter.log(String(format: "labels: %d training captions of %d samples labelled in %.1f s, one drawn per sample and epoch (%d captions with no synset of the vocabulary)", labels.count, table.count, now() - start, empty))
        return table
    }

    /// Which of a sample's `count` captions it is trained on in `epoch`: a hash of the run's
    /// seed, the epoch and the key, so the same on every rank, thread count and resume.
    static func captionChoice(seed: UInt64, epoch: Int, key: String, count: Int) -> Int {
        var g = Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.caption, index: Int(truncatingIfNeeded: fnv1a(Array(key.utf8))))
        return Int(g.next() % UInt64(count))
    }

    func checkpoint(state: TrainState, model: ViTModel, adam: AdamW, ema: WeightEMA?) throws {
        var blocks = [model.parameters, adam.m, adam.v].map { UnsafeBufferPointer($0.buffer) }
        if let ema { blocks.append(UnsafeBufferPointer(ema.weights.buffer)) }
        do {
            try CheckpointFile.write(directory: checkpointDirectory, state: state, blocks: blocks)
        } catch {
            throw TrainError("checkpoint: \(error)")
        }
        CheckpointFile.prune(directory: checkpointDirectory, keep: config.run.keepCheckpoints)
    }

    /// Loads the newest readable checkpoint into the model, optimiser and EMA; unreadable ones
    /// are reported and passed over. Nil when there is none.
    func restore(model: ViTModel, adam: AdamW, ema: WeightEMA?) throws -> TrainState? {
        for path in CheckpointFile.list(directory: checkpointDirectory) {
            do {
                // the whole file is verified first: a damaged header is reported and passed
                // over, not taken for another configuration
                let header = try CheckpointFile.read(path: path)
                if !config.resumes(checkpointFingerprint: header.configFingerprint, worldSize: reducer.worldSize) {
                    throw TrainError("\(path): written under a different configuration (only \(TrainConfig.resumableKeys.sorted().joined(separator: ", ")) may change on resume)")
                }
                if header.hasEMA != (ema != nil) { throw TrainError("\(path): EMA presence differs from the configuration") }
                var blocks = [model.parameters, adam.m, adam.v].map(\.buffer)
                if let ema { blocks.append(ema.weights.buffer) }
                var state = try CheckpointFile.read(path: path, into: blocks)
                // the checkpoints this session writes carry this code's fingerprint, also when the
                // one read carries the legacy one
                state.configFingerprint = String(config.fingerprint(worldSize: reducer.worldSize), radix: 16)
                adam.step = state.optimizerStep
                reporter.log("resume: \(path) (step \(state.step))")
                return state
            } catch let error as TrainError {
                throw error
            } catch {
                reporter.log("resume: skipping \(error)")
            }
        }
        return nil
    }

    /// Where rank `rank` of `world` resumes: its own saved position under the same rank count;
    /// otherwise its share of the global prefix the saved ranks consumed (rank r takes the
    /// global samples r, r + world, ... of the epoch), with the batch count of the new
    /// micro-batch size (`batchSize` samples per rank and batch).
    static func loaderPosition(of state: TrainState, rank: Int, world: Int, batchSize: Int) -> LoaderPosition {
        let saved = state.rankLoaders ?? [state.loader]
        if saved.count == world { return saved[rank] }
        let epoch = saved.map(\.epoch).max() ?? 0
        let global = saved.filter { $0.epoch == epoch }.reduce(0) { $0 + $1.consumed }
        let consumed = global > rank ? (global - rank + world - 1) / world : 0
        return LoaderPosition(epoch: epoch, consumed: consumed, batches: global / max(1, batchSize * world))
    }

    /// Keeps the first `lines` lines of metrics.jsonl (those written before the checkpoint).
    func truncateMetrics(lines: Int) throws {
        guard let data = FileManager.default.contents(atPath: metricsPath) else { return }
        var kept = 0
        var end = 0
        for (i, byte) in data.enumerated() where byte == UInt8(ascii: "\n") {
            if kept == lines { break }
            kept += 1
            end = i + 1
        }
        if kept < lines { throw TrainError("\(metricsPath): has \(kept) lines, the checkpoint expects \(lines)") }
        try writeText(String(decoding: data.prefix(end), as: UTF8.self), to: metricsPath)
    }

    /// Draws loss.svg from metrics.jsonl; returns the interval losses.
    func writeLossCurve() throws -> [Double] {
        guard let data = FileManager.default.contents(atPath: metricsPath) else { return [] }
        var points: [(x: Double, y: Double)] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = (object["step"] as? NSNumber)?.doubleValue else { continue }
            if let loss = (object["loss"] as? NSNumber)?.doubleValue { points.append((step, loss)) }
        }
        let svg = LossCurve.svg(
            series: [("loss (per log interval)", points), ("smoothed", LossCurve.smoothed(points))],
            title: "catlip train: \(URL(fileURLWithPath: runDirectory).lastPathComponent)", xLabel: "step", yLabel: "BCE loss (sum over classes)")
        try writeText(svg, to: runDirectory + "/loss.svg")
        return points.map(\.y)
    }

    func writeSummary(_ s: TrainSummary) throws {
        var object: [String: Any] = [
            "steps": s.steps, "samples": s.samplesSeen, "skipped": s.skippedSamples, "bad_steps": s.badSteps,
            "train_seconds": round2(s.trainSeconds), "model": s.modelDirectory ?? "",
        ]
        if let f = s.firstLoss { object["first_loss"] = f }
        if let l = s.lastLoss { object["last_loss"] = l }
        if let v = s.validation {
            object["val_map"] = v.map
            object["val_baseline_map"] = v.baselineMap
            object["val_images"] = v.images
            object["val_classes"] = v.classes
            object["val_skipped"] = v.skipped
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try writeText(String(decoding: data, as: UTF8.self) + "\n", to: runDirectory + "/summary.json")
    }
}

/// Scales every float of an arena.
func scale(_ arena: FloatArena, by factor: Float) {
    let p = arena.base
    for i in 0..<arena.count { p[i] *= factor }
}

/// Seconds on a monotonic clock.
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }
func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }

/// Writes a text file atomically (temporary file, rename).
func writeText(_ text: String, to path: String) throws {
    do {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw TrainError("\(path): cannot write (\(error.localizedDescription))")
    }
}

/// Appends JSON lines to metrics.jsonl, flushing each.
final class MetricsWriter {
    private let handle: FileHandle
    private let path: String

    init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainError("\(path): cannot open for writing") }
        handle = h
        handle.seekToEndOfFile()
    }

    deinit { try? handle.close() }

    /// One line with the fields in the given order.
    func write(_ fields: [(String, Any)]) throws {
        var parts: [String] = []
        for (key, value) in fields {
            let data = try JSONSerialization.data(withJSONObject: [value], options: [.fragmentsAllowed])
            var text = String(decoding: data, as: UTF8.self)
            text.removeFirst()
            text.removeLast()
            parts.append("\"\(key)\":\(text)")
        }
        let line = "{" + parts.joined(separator: ",") + "}\n"
        do { try handle.write(contentsOf: Data(line.utf8)) } catch { throw TrainError("\(path): cannot write (\(error.localizedDescription))") }
    }
}

/// A stop request from SIGINT or SIGTERM: the trainer checkpoints after the current step and
/// returns. A second signal ends the process at once (the checkpoints on disk stay readable).
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var signal: Int32 = 0
    private var sources: [any DispatchSourceSignal] = []

    /// A request that no signal has set yet.
    public init() {}

    /// Whether a stop was requested.
    public var requested: Bool { lock.withLock { signal != 0 } }

    /// "SIGINT" or "SIGTERM" (or "a request").
    public var signalName: String {
        switch lock.withLock({ signal }) {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "a request"
        }
    }

    /// Requests a stop as if `signal` had arrived.
    public func request(_ signal: Int32 = SIGTERM) {
        let second = lock.withLock { () -> Bool in
            defer { self.signal = signal }
            return self.signal != 0
        }
        if second { exit(128 + signal) }
    }

    /// Routes SIGINT and SIGTERM to this request.
    public func installSignalHandlers() {
        for s in [SIGINT, SIGTERM] {
            Foundation.signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { [weak self] in self?.request(s) }
            source.resume()
            sources.append(source)
        }
    }
}
