import Distributed
import Foundation
import Imaging
import Shards
import Support
import ViT

/// One session of a run (from start or resume to the end or a stop), in named pieces: set-up
/// and restore in `init`, then `step()` per optimiser step and the interval log, validation,
/// checkpoint and the end of the run around it. `Trainer.run` is the loop over them.
final class TrainingSession {
    private let trainer: Trainer
    private let config: TrainConfig
    private let reducer: any GradientReducer
    private let reporter: any TrainReporter
    private let directory: RunDirectory
    private let setup: TrainingSetup
    private let stream: EpochStream
    private let validator: Validator?
    private let metrics: MetricsWriter?
    /// Training activations per batch shape (count x side): the two most recent are kept.
    private var activations: [(key: String, value: ViTActivations)] = []
    private var meter: IntervalMeter
    private var checkpoints: CheckpointPolicy
    private var firstLoss: Double?
    private var lastLoss: Double?
    private let sessionStart: Double
    private let secondsBefore: Double
    /// The run's state: what a checkpoint records.
    private(set) var state: TrainState

    /// Sets the run up (run directory, vocabulary, labels, model, optimiser), restores the
    /// newest checkpoint when `resume` (and shares it with every rank), and starts the loader.
    init(trainer: Trainer, resume: Bool) throws {
        self.trainer = trainer
        config = trainer.config
        reducer = trainer.reducer
        reporter = trainer.reporter
        directory = RunDirectory(path: trainer.runDirectory)
        let world = reducer.worldSize
        if trainer.isRoot { try directory.prepare(config: config, resume: resume) }
        setup = try trainer.setUp()
        let model = setup.model
        var fresh = TrainState()
        fresh.seed = config.run.seed
        fresh.configFingerprint = String(config.fingerprint(worldSize: world), radix: 16)
        fresh.parameterCount = model.parameters.count
        fresh.hasEMA = setup.ema != nil
        let parameterCount = model.layout.specs.reduce(0) { $0 + $1.count }
        let o = config.optim
        reporter.log(
            "model: ViT \(config.data.imageSize) px, patch \(config.model.patchSize), dim \(config.model.embedDim), depth \(config.model.depth), "
                + "\(parameterCount) parameters, \(setup.labels.count) classes; global batch \(config.data.batchSize * o.accumulation * world)"
                + (world > 1 ? " (\(world) ranks x \(config.data.batchSize) x \(o.accumulation) accumulation)" : ""))
        let (state, loaderStart) = try trainer.restoreOrBroadcast(
            fresh: fresh, resume: resume, model: model, adam: setup.adam, ema: setup.ema)
        self.state = state
        metrics = trainer.isRoot ? try directory.openMetrics(keepingLines: state.metricsLines, fresh: !resume || state.step == 0) : nil

        let transform = TrainTransform(
            size: config.data.imageSize, scale: config.data.cropScale[0]...config.data.cropScale[1],
            ratio: config.data.cropRatio[0]...config.data.cropRatio[1], flipProbability: config.data.flip)
        var loaderConfig = LoaderConfig(
            batchSize: config.data.batchSize, transform: transform, classCount: setup.labels.count,
            threads: config.data.threads, prefetchBatches: config.data.prefetch, seed: UInt64(config.run.seed),
            rank: reducer.rank, worldSize: world, dropLast: true, resolutions: config.data.resolutions.isEmpty ? nil : config.data.resolutions)
        loaderConfig.maxFileBytes = config.data.maxFileMB << 20
        let (captionSeed, captionLabels) = (UInt64(config.run.seed), setup.captionLabels)
        let loader = BatchLoader(source: setup.source, config: loaderConfig) { key, epoch in
            guard let lines = captionLabels[key], !lines.isEmpty else { return nil }
            return lines.count == 1 ? lines[0] : lines[Trainer.captionChoice(seed: captionSeed, epoch: epoch, key: key, count: lines.count)]
        }
        loader.start(at: loaderStart)
        stream = EpochStream(loader: loader, dataName: config.data.train, batchSize: config.data.batchSize)

        if !config.data.val.isEmpty && trainer.isRoot {
            do {
                let source: any SampleSource
                let table: [String: [UInt32]]
                switch setup.labels {
                case .synsets(let vocabulary, let mode):
                    source = try trainer.openSource(config.data.val, key: "data.val", shuffle: false)
                    table = try trainer.labelTable(source: source, what: "validation", vocabulary: vocabulary, mode: mode)
                case .classes(let names, _):
                    let data: ClassifiedImages
                    do { data = try ClassifiedImages.read(config.data.val, classes: names) } catch { throw TrainError("data.val: \(error)") }
                    do { source = try data.source(shuffle: false) } catch { throw TrainError("data.val: \(error)") }
                    table = data.labels.mapValues { [$0] }
                }
                validator = try Validator(
                    source: source, table: table, scoring: config.data.task == .classify ? .topK : .meanAveragePrecision,
                    trainCounts: setup.labels.trainCounts, model: model, batchSize: config.data.batchSize,
                    maxFileBytes: config.data.maxFileMB << 20, limit: config.data.valSamples > 0 ? config.data.valSamples : Int.max,
                    what: "data.val", path: config.data.val)
            } catch {
                stream.stop()
                throw error
            }
        } else {
            validator = nil
        }
        let now = MonotonicClock.seconds()
        meter = IntervalMeter(start: now)
        checkpoints = CheckpointPolicy(everySteps: config.run.checkpointEvery, minutes: config.run.checkpointMinutes, last: now)
        sessionStart = now
        secondsBefore = state.trainSeconds
        reporter.log(
            state.step == 0
                ? "training \(config.run.steps) steps into \(trainer.runDirectory)"
                : "resumed at step \(state.step) of \(config.run.steps) (epoch \(state.loader.epoch))")
    }

    deinit {
        stream.stop()
        classTargets.deallocate()
        mixedImages.deallocate()
    }

    /// Seconds trained over every session of the run, now.
    private var trainSeconds: Double { secondsBefore + MonotonicClock.seconds() - sessionStart }

    /// Training activations for a batch of `count` images of side `side` (the two most recent
    /// shapes are kept: variable resolution alternates a few).
    private func activations(count: Int, side: Int) -> ViTActivations {
        let key = "\(count)x\(side)"
        if let hit = activations.first(where: { $0.key == key }) { return hit.value }
        if activations.count >= 2 { activations.removeFirst() }
        let made = setup.model.makeActivations(batchSize: count, imageSize: side, training: true)
        activations.append((key, made))
        return made
    }

    /// Smoothed and mixed classification targets, and mixed images, reused from step to step.
    private var classTargets = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private var mixedImages = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private lazy var mixup = Mixup(
        mixupAlpha: config.data.mixup, cutmixAlpha: config.data.cutmix, prob: config.data.mixupProb,
        switchProb: config.data.mixupSwitchProb)

    /// Stochastic depth's drop rate per block ([] when model.drop_path_rate is 0: the plain passes).
    private lazy var dropPathRates: [Double] =
        config.model.dropPathRate > 0 ? DropPath.rates(config.model.dropPathRate, depth: setup.model.blocks.count) : []

    /// A buffer of at least `count` floats, grown when needed.
    private static func ensure(_ buffer: inout UnsafeMutableBufferPointer<Float>, _ count: Int) {
        if buffer.count < count {
            buffer.deallocate()
            buffer = .allocate(capacity: count)
        }
    }

    /// The images and target rows the model sees for micro-batch `micro` of the coming step:
    /// the loader's, or for a classifier the smoothed rows (1 - ε)·one-hot + ε / classes
    /// (timm's `LabelSmoothingCrossEntropy`) and, with data.mixup or data.cutmix, the batch
    /// mixed with itself reversed (timm's `Mixup`, per batch); valid until the next call.
    private func inputs(of batch: Batch, micro: Int) -> (images: UnsafePointer<Float>, targets: UnsafePointer<Float>) {
        let epsilon = Float(config.optim.labelSmoothing)
        guard config.data.task == .classify, epsilon > 0 || mixup.isOn else {
            return (batch.images.baseAddress!, batch.targets.baseAddress!)
        }
        let classes = setup.labels.count
        let n = batch.targets.count
        Self.ensure(&classTargets, n)
        let (keep, floor) = (1 - epsilon, epsilon / Float(classes))
        for i in 0..<n { classTargets[i] = batch.targets[i] * keep + floor }
        var images = batch.images.baseAddress!
        var g = Seeds.generator(
            seed: UInt64(config.run.seed), epoch: 0, purpose: Seeds.mixup, index: state.step * config.optim.accumulation + micro)
        if let draw = mixup.draw(&g, side: batch.side) {
            Self.ensure(&mixedImages, batch.images.count)
            mixedImages.baseAddress!.update(from: batch.images.baseAddress!, count: batch.images.count)
            Mixup.mixImages(mixedImages.baseAddress!, count: batch.count, side: batch.side, draw: draw)
            Mixup.mixTargets(classTargets.baseAddress!, count: batch.count, classes: classes, lambda: draw.lambda)
            images = UnsafePointer(mixedImages.baseAddress!)
        }
        return (images, UnsafePointer(classTargets.baseAddress!))
    }

    /// One optimiser step: `accumulation` micro-batches forward and backward (the gradients
    /// weighted by their image counts), the sums and votes over the ranks, clipping, and the
    /// AdamW and EMA update, or a skipped step when the loss or gradients are not finite.
    func step() throws -> StepResult {
        let (model, world, o) = (setup.model, reducer.worldSize, config.optim)
        model.zeroGradients()
        var lossSum = 0.0
        var images = 0
        var previousCount = 0
        var wait = 0.0
        for micro in 0..<o.accumulation {
            let batch = try stream.next(wait: &wait)
            let a = activations(count: batch.count, side: batch.side)
            let (pixels, targets) = inputs(of: batch, micro: micro)
            if previousCount > 0 && previousCount != batch.count {
                scale(model.gradients, by: Float(previousCount) / Float(batch.count))
            }
            if dropPathRates.isEmpty {
                a.clearDropPath()
            } else {
                // each rank draws for its own images; the same on resume and at any thread count
                var g = Seeds.generator(
                    seed: UInt64(config.run.seed), epoch: 0, purpose: Seeds.dropPath,
                    index: (state.step * o.accumulation + micro) * world + reducer.rank)
                a.drawDropPath(rates: dropPathRates, generator: &g)
            }
            model.forward(images: pixels, activations: a)
            let loss = model.loss(targets: targets, activations: a)
            if world > 1 && micro == o.accumulation - 1 {
                // the last micro-batch: each range of gradients, once final, becomes this
                // rank's sum over its samples and starts summing over the ranks while the
                // rest of the backward pass runs
                let count = Float(batch.count)
                var failure: (any Error)?
                model.backward(targets: targets, activations: a) { range in
                    let g = model.gradients.base
                    for i in range { g[i] *= count }
                    do { try self.reducer.startSum(g + range.lowerBound, count: range.count) } catch { failure = failure ?? error }
                }
                if let failure { throw TrainError("step \(state.step + 1): \(failure)") }
            } else {
                model.backward(targets: targets, activations: a)
            }
            lossSum += Double(loss) * Double(batch.count)
            images += batch.count
            previousCount = batch.count
            state.loader = stream.position
        }
        if world == 1 && previousCount != images { scale(model.gradients, by: Float(previousCount) / Float(images)) }
        trainer.afterBackward?(model, state.step)

        // over the ranks: the gradient sums (started during the last backward pass), then the
        // step's totals and votes
        let local = StepTotals(
            lossSum: lossSum, images: images, stopVotes: trainer.stop.requested ? 1 : 0,
            checkpointVotes: trainer.isRoot && checkpoints.dueByTime(now: MonotonicClock.seconds()) ? 1 : 0,
            skipped: stream.takeSkipped())
        var totals = local
        if world > 1 {
            let commStart = MonotonicClock.seconds()
            do {
                totals = try local.summed(over: reducer)
                try reducer.finishSums()
            } catch { throw TrainError("step \(state.step + 1): \(error)") }
            meter.commWait += MonotonicClock.seconds() - commStart
            scale(model.gradients, by: 1 / Float(totals.images))
        }
        state.skippedSamples += totals.skipped
        if o.freeze == .backbone {
            // a linear probe: the backbone's gradients neither count in the clipping norm nor apply
            for s in model.layout.specs where !s.name.hasPrefix("head.") {
                (model.gradients.base + s.offset).update(repeating: 0, count: s.count)
            }
        }
        let loss = totals.lossSum / Double(totals.images)
        let gradNorm = Double(clipGradientNorm(model, maxNorm: o.clipGrad > 0 ? Float(o.clipGrad) : .infinity))
        let lr = setup.schedule.learningRate(iteration: state.step)
        if loss.isFinite && gradNorm.isFinite {
            setup.adam.update(model, lr: Float(lr))
            setup.ema?.update(model)
            state.optimizerStep = setup.adam.step
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
                        + "the last good checkpoint in \(directory.checkpoints) is intact - lower optim.lr or raise optim.warmup_steps and resume")
            }
        }
        state.step += 1
        state.samplesSeen += totals.images
        meter.images += totals.images
        meter.dataWait += wait
        return StepResult(totals: totals, loss: loss, gradNorm: gradNorm, lr: lr, dataWait: wait)
    }

    /// The live progress line after a step.
    func reportProgress(_ step: StepResult) {
        let total = config.run.steps
        let rate = meter.rates(now: MonotonicClock.seconds()).imagesPerSecond
        let sessionRate = Double(state.samplesSeen) / max(1e-9, trainSeconds)
        let eta = Double(total - state.step) * Double(config.data.batchSize * config.optim.accumulation) / max(1e-9, sessionRate)
        reporter.progress(step: state.step, total: total, loss: step.loss, lr: step.lr, imagesPerSecond: rate, etaSeconds: eta)
    }

    /// Every `run.log_every` steps and at the last: the interval's line in metrics.jsonl and the
    /// log, then a new interval.
    func logIntervalIfDue(_ step: StepResult) throws {
        let total = config.run.steps
        guard state.step % config.run.logEvery == 0 || state.step == total else { return }
        let world = reducer.worldSize
        let meanLoss = state.intervalSteps > 0 ? state.intervalLossSum / Double(state.intervalSteps) : Double.nan
        if firstLoss == nil && state.intervalSteps > 0 { firstLoss = meanLoss }
        if state.intervalSteps > 0 { lastLoss = meanLoss }
        let r = meter.rates(now: MonotonicClock.seconds())
        let fields: [(String, Any)] =
            [
                ("step", state.step), ("epoch", state.loader.epoch), ("loss", meanLoss.isFinite ? meanLoss : NSNull()),
                ("lr", step.lr), ("grad_norm", step.gradNorm.isFinite ? step.gradNorm : NSNull()),
                ("images_per_s", round2(r.imagesPerSecond)), ("data_wait", round4(r.dataWait)),
            ] + (world > 1 ? [("comm_wait", round4(r.commWait)), ("ranks", world)] : []) + [
                ("samples", state.samplesSeen), ("skipped", state.skippedSamples), ("bad_steps", state.badSteps),
                ("seconds", round2(trainSeconds)),
            ]
        try metrics?.write(fields)
        state.metricsLines += 1
        reporter.log(
            String(
                format: "step %d/%d  epoch %d  loss %.4f  lr %.2e  grad %.3f  %.0f img/s  data wait %.1f%%", state.step, total,
                state.loader.epoch, meanLoss, step.lr, step.gradNorm, r.imagesPerSecond, 100 * r.dataWait))
        state.intervalLossSum = 0
        state.intervalSteps = 0
        meter = IntervalMeter(start: MonotonicClock.seconds())
    }

    /// Every `run.eval_every` steps before the last: validation mAP into metrics.jsonl and the
    /// log (its time is left out of the interval's throughput).
    func validateIfDue() throws {
        guard let validator, config.run.evalEvery > 0, state.step % config.run.evalEvery == 0, state.step < config.run.steps else { return }
        let validationStart = MonotonicClock.seconds()
        let v = try validator.evaluate(ema: setup.ema)
        try metrics?.write(
            [("step", state.step)] + v.metricsFields + [
                ("seconds", round2(trainSeconds)), ("val_seconds", round2(MonotonicClock.seconds() - validationStart)),
            ])
        state.metricsLines += 1
        reporter.log(v.logLine(step: state.step))
        meter.start = MonotonicClock.seconds()
    }

    /// Writes a checkpoint when the policy says so (every rank takes part: the loader positions
    /// are gathered), `stopping` included.
    func checkpointIfDue(_ step: StepResult, stopping: Bool) throws {
        let world = reducer.worldSize
        let byTime = step.totals.checkpointVotes > 0
        guard checkpoints.due(step: state.step, total: config.run.steps, byTime: byTime, stopping: stopping) else { return }
        state.trainSeconds = trainSeconds
        if world > 1 {
            let positions = try reducer.gather(Array(try JSONEncoder().encode(stream.position)))
            state.worldSize = world
            state.rankLoaders = try positions.map { try JSONDecoder().decode(LoaderPosition.self, from: Data($0)) }
        } else {
            state.worldSize = nil
            state.rankLoaders = nil
        }
        if trainer.isRoot { try trainer.checkpoint(state: state, model: setup.model, adam: setup.adam, ema: setup.ema) }
        checkpoints.last = MonotonicClock.seconds()
    }

    /// The end of the session: the summary; on rank 0 the loss curve, and when the run
    /// completed the exported model (EMA weights when EMA is on), the final validation and
    /// summary.json.
    func finish(interrupted: Bool) throws -> TrainSummary {
        if !interrupted { stream.noteUnfinishedEpoch() }
        var summary = TrainSummary(
            runDirectory: trainer.runDirectory, steps: state.step, totalSteps: config.run.steps, interrupted: interrupted,
            samplesSeen: state.samplesSeen, skippedSamples: state.skippedSamples, badSteps: state.badSteps,
            firstLoss: firstLoss, lastLoss: lastLoss, trainSeconds: trainSeconds,
            validation: nil, modelDirectory: nil, skipReport: stream.skipNotes.joined(separator: "\n"))
        if !trainer.isRoot { return summary }  // rank 0 writes the curve, the model and the summary
        summary.lossCurve = try directory.writeLossCurve()
        if interrupted { return summary }

        let model = setup.model
        let saved = FloatArena(count: model.parameters.count)
        saved.copy(from: model.parameters)
        setup.ema?.copy(into: model)
        do {
            try model.save(directory: directory.model)
            try writeText(setup.labels.tsv, to: directory.model + "/" + setup.labels.fileName)
        } catch { throw TrainError("\(directory.model): \(error)") }
        model.parameters.copy(from: saved)
        summary.modelDirectory = directory.model
        if let validator {
            let v = try validator.evaluate(ema: setup.ema)
            summary.validation = v
            try metrics?.write([("step", state.step)] + v.metricsFields)
            reporter.log(v.logLine(step: nil))
        }
        try directory.writeSummary(summary)
        return summary
    }
}

/// Scales every float of an arena.
func scale(_ arena: FloatArena, by factor: Float) {
    let p = arena.base
    for i in 0..<arena.count { p[i] *= factor }
}
