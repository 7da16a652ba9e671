import Foundation
import Shards
import ViT
import WordNet

/// What a run trains and with what, built from the configuration: the vocabulary and every
/// training sample's labels, the seeded model (its head bias at the label prior when asked),
/// AdamW, the EMA and the learning-rate schedule.
struct TrainingSetup {
    /// The classes (line i of vocab.tsv is class i).
    let vocabulary: Vocabulary
    /// The labelling rule of the captions.
    let mode: LabelMode
    /// The training samples.
    let source: any SampleSource
    /// Per sample key, the label list of each caption the loader may draw (one: the joined
    /// captions).
    let captionLabels: [String: [[UInt32]]]
    /// The model, at its seeded initialisation.
    let model: ViTModel
    /// The optimiser.
    let adam: AdamW
    /// The weight average (nil when optim.ema_momentum is 0).
    let ema: WeightEMA?
    /// Warm-up then cosine.
    let schedule: CosineSchedule
}

extension Trainer {
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

    /// Loads the vocabulary (rank 0 copies it into the run directory), labels the training
    /// data, and builds the model, optimiser, EMA and schedule.
    func setUp() throws -> TrainingSetup {
        let vocabulary: Vocabulary
        do { vocabulary = try Vocabulary.load(path: config.data.vocab, database: database) } catch { throw TrainError("data.vocab: \(error)") }
        guard vocabulary.count > 0 else { throw TrainError("\(config.data.vocab): the vocabulary is empty") }
        if isRoot { try writeText(vocabulary.tsv(), to: runDirectory + "/vocab.tsv") }
        let mode = config.data.labelMode
        let source = try openSource(config.data.train, key: "data.train", shuffle: true)
        let captionLabels: [String: [[UInt32]]]
        if config.data.captions == "sampled" {
            captionLabels = try sampledLabelTable(source: source, vocabulary: vocabulary, mode: mode)
        } else {
            captionLabels = try labelTable(source: source, what: "training", vocabulary: vocabulary, mode: mode).mapValues { [$0] }
        }

        Parallelism.threads = config.run.threads
        let model: ViTModel
        do {
            model = try ViTModel(config: Self.modelConfig(config, classes: vocabulary.count), seed: UInt64(config.run.seed))
        } catch { throw TrainError("model: \(error)") }
        // CATLIP_BACKEND=naive trains on the reference kernels (slow; for checking the fast ones)
        if ProcessInfo.processInfo.environment["CATLIP_BACKEND"] == "naive" { model.backend = .naive }
        if config.model.headBiasPrior { Self.setHeadBiasToLabelPrior(model, captionLabels: captionLabels, classes: vocabulary.count) }
        let o = config.optim
        let adam = AdamW(model: model, beta1: Float(o.beta1), beta2: Float(o.beta2), eps: Float(o.eps), weightDecay: Float(o.weightDecay))
        adam.decayEmbeddings = o.embeddingDecay
        let ema = o.emaMomentum > 0 ? WeightEMA(model: model, momentum: Float(o.emaMomentum)) : nil
        let schedule = CosineSchedule(
            maxLR: o.lr, minLR: o.minLR, warmupIterations: o.warmupSteps, warmupInitLR: o.warmupInitLR,
            maxIterations: config.run.steps)
        return TrainingSetup(
            vocabulary: vocabulary, mode: mode, source: source, captionLabels: captionLabels, model: model, adam: adam, ema: ema,
            schedule: schedule)
    }

    /// Sets the head bias to each class's log-odds among the training samples' labels (with
    /// sampled captions, the expected frequency: each caption of a sample weighs 1 / its caption
    /// count), summed in key order, as dictionary order changes from process to process.
    static func setHeadBiasToLabelPrior(_ model: ViTModel, captionLabels: [String: [[UInt32]]], classes: Int) {
        var counts = [Double](repeating: 0, count: classes)
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
}
