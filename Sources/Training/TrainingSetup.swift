import Evaluation
import Foundation
import Shards
import ViT
import WordNet

/// The classes a run's head predicts: the synsets of a vocabulary (pretraining on captions) or
/// the class names of labelled images (fine-tuning).
enum LabelSpace {
    /// Vocabulary synsets, captions labelled by `mode`.
    case synsets(Vocabulary, LabelMode)
    /// Class names (class i is `names[i]`) with their training image counts.
    case classes([String], counts: [Int])

    /// Head rows.
    var count: Int {
        switch self {
        case .synsets(let v, _): v.count
        case .classes(let names, _): names.count
        }
    }

    /// The file that names the head's rows in the run and model directories.
    var fileName: String {
        switch self {
        case .synsets: "vocab.tsv"
        case .classes: "classes.tsv"
        }
    }

    /// That file's text.
    var tsv: String {
        switch self {
        case .synsets(let v, _): v.tsv()
        case .classes(let names, _): ClassifiedImages.classesTSV(names)
        }
    }

    /// Training occurrences per class (the validation baseline's frequencies).
    var trainCounts: [Int] {
        switch self {
        case .synsets(let v, _): v.entries.map(\.count)
        case .classes(_, let counts): counts
        }
    }
}

/// What a run trains and with what, built from the configuration: the classes and every
/// training sample's labels, the model (seeded, or started from `model.init` with its head as
/// `model.head_init` says; the head bias at the label prior when asked), AdamW, the EMA and the
/// learning-rate schedule.
struct TrainingSetup {
    /// The head's classes.
    let labels: LabelSpace
    /// The training samples.
    let source: any SampleSource
    /// Per sample key, the label list of each caption the loader may draw (one: the joined
    /// captions, or the image's class).
    let captionLabels: [String: [[UInt32]]]
    /// The model, at its initialisation.
    let model: ViTModel
    /// The optimiser.
    let adam: AdamW
    /// The weight average (nil when optim.ema_momentum is 0).
    let ema: WeightEMA?
    /// Warm-up then cosine.
    let schedule: CosineSchedule
}

extension Trainer {
    /// The model configuration the run trains (timm's names; classes = the head's rows).
    public static func modelConfig(_ c: TrainConfig, classes: Int) -> ModelConfig {
        let m = c.model
        let scaling = m.layerScalingHeadDim > 0
            ? LayerScaling(headDim: m.layerScalingHeadDim, alpha: m.layerScalingAlpha, beta: m.layerScalingBeta) : nil
        let args = ModelArgs(
            imgSize: c.data.imageSize, patchSize: m.patchSize, inChans: 3, numClasses: classes,
            globalPool: m.globalPool.rawValue, embedDim: m.embedDim, depth: m.depth, numHeads: m.numHeads,
            mlpRatio: m.mlpRatio, qkvBias: m.qkvBias, classToken: m.classToken, layerScaling: scaling)
        var config = ModelConfig(
            modelArgs: args,
            pretrainedCfg: PretrainedConfig(
                inputSize: [3, c.data.imageSize, c.data.imageSize], cropPct: c.data.evalCropPct,
                interpolation: "bilinear", numClasses: classes))
        config.dropPathRate = m.dropPathRate
        return config
    }

    /// Reads the classes and labels of the training data (rank 0 writes the class file into the
    /// run directory), and builds the model, optimiser, EMA and schedule.
    func setUp() throws -> TrainingSetup {
        let labels: LabelSpace
        let source: any SampleSource
        let captionLabels: [String: [[UInt32]]]
        switch config.data.task {
        case .pretrain:
            let vocabulary: Vocabulary
            do { vocabulary = try Vocabulary.load(path: config.data.vocab, database: database) } catch {
                throw TrainError("data.vocab: \(error)")
            }
            guard vocabulary.count > 0 else { throw TrainError("\(config.data.vocab): the vocabulary is empty") }
            let mode = config.data.labelMode
            labels = .synsets(vocabulary, mode)
            source = try openSource(config.data.train, key: "data.train", shuffle: true)
            if config.data.captions == "sampled" {
                captionLabels = try sampledLabelTable(source: source, vocabulary: vocabulary, mode: mode)
            } else {
                captionLabels = try labelTable(source: source, what: "training", vocabulary: vocabulary, mode: mode).mapValues { [$0] }
            }
        case .classify:
            // the class list is fixed by the run's first session (its classes.tsv)
            let listed = runDirectory + "/classes.tsv"
            let fixed = FileManager.default.fileExists(atPath: listed) ? try ClassifiedImages.readClasses(listed) : nil
            let data: ClassifiedImages
            do { data = try ClassifiedImages.read(config.data.train, classes: fixed) } catch { throw TrainError("data.train: \(error)") }
            var counts = [Int](repeating: 0, count: data.classes.count)
            for label in data.labels.values { counts[Int(label)] += 1 }
            labels = .classes(data.classes, counts: counts)
            do { source = try data.source(shuffle: true, shuffleBuffer: config.data.shuffleBuffer) } catch { throw TrainError("data.train: \(error)") }
            captionLabels = data.labels.mapValues { [[$0]] }
            reporter.log("labels: \(data.labels.count) training images of \(data.classes.count) classes from \(config.data.train)")
            if data.unlabelled.total > 0 { reporter.log("labels: \(data.unlabelled) (skipped)") }
        }
        if isRoot { try writeText(labels.tsv, to: runDirectory + "/" + labels.fileName) }
        try checkRanksAgree(on: labels)

        Parallelism.threads = config.run.threads
        let model: ViTModel
        do {
            var modelConfig = Self.modelConfig(config, classes: labels.count)
            if !config.model.initFrom.isEmpty {
                // what no config key spells (a convolutional stem, no position on the class
                // token, corenet's position rule) comes from the model the run starts from
                let initial: ModelConfig
                do { initial = try ModelConfig.read(path: config.model.initFrom + "/config.json") } catch {
                    throw TrainError("model.init: \(error)")
                }
                modelConfig.modelArgs.stem = initial.modelArgs.stem
                modelConfig.modelArgs.noEmbedClass = initial.modelArgs.noEmbedClass
                modelConfig.modelArgs.posEmbedResize = initial.modelArgs.posEmbedResize
            }
            model = try ViTModel(config: modelConfig, seed: UInt64(config.run.seed))
        } catch let error as TrainError { throw error } catch { throw TrainError("model: \(error)") }
        // CATLIP_BACKEND=naive trains on the reference kernels (slow; for checking the fast ones)
        if ProcessInfo.processInfo.environment["CATLIP_BACKEND"] == "naive" { model.backend = .naive }
        do { try model.setTrainingPrecision(config.run.precision) } catch { throw TrainError("\(error)") }
        model.headLoss = config.data.task == .classify ? .softmaxCrossEntropy : .binaryCrossEntropy
        if !config.model.initFrom.isEmpty { try initialise(model, from: config.model.initFrom, labels: labels) }
        if config.model.headBiasPrior { Self.setHeadBiasToLabelPrior(model, captionLabels: captionLabels, classes: labels.count) }
        let o = config.optim
        let adam = AdamW(model: model, beta1: Float(o.beta1), beta2: Float(o.beta2), eps: Float(o.eps), weightDecay: Float(o.weightDecay))
        adam.decayEmbeddings = o.embeddingDecay
        if o.layerDecay > 0 { adam.lrScales = AdamW.layerDecayScales(model, decay: Float(o.layerDecay)) }
        if o.freeze == .backbone {
            for s in model.layout.specs where !s.name.hasPrefix("head.") { adam.lrScales[s.name] = 0 }
        }
        let ema = o.emaMomentum > 0 ? WeightEMA(model: model, momentum: Float(o.emaMomentum)) : nil
        let schedule = CosineSchedule(
            maxLR: o.lr, minLR: o.minLR, warmupIterations: o.warmupSteps, warmupInitLR: o.warmupInitLR,
            maxIterations: config.run.steps)
        return TrainingSetup(
            labels: labels, source: source, captionLabels: captionLabels, model: model, adam: adam, ema: ema, schedule: schedule)
    }

    /// Every rank must read the same label space (the class list, or the vocabulary and label
    /// mode): the targets index it. Rank 0's is broadcast and each other rank compares its own
    /// (its data may be a different copy), so a difference stops the job with the reason instead
    /// of training on mismatched rows.
    func checkRanksAgree(on labels: LabelSpace) throws {
        guard reducer.worldSize > 1 else { return }
        let own = Array(labels.tsv.utf8)
        let root = try reducer.broadcast(isRoot ? own : [])
        guard isRoot || root == own else {
            throw TrainError(
                "rank \(reducer.rank): its \(labels.fileName) (\(labels.count) rows, from \(config.data.train)) differs from rank 0's; "
                    + "every rank must read the same data and vocabulary")
        }
    }

    /// Starts `model` from the model directory `directory` (timm's `--initial-checkpoint`):
    /// the architecture must be the configuration's (image size and classes aside); pos_embed is
    /// resampled to the run's image size as timm does; every tensor but the head is copied; the
    /// head starts as `model.head_init` says (Transfer Init maps each class name through WordNet
    /// to the pretrained head's rows, reported in the log and in the run's transfer.tsv).
    func initialise(_ model: ViTModel, from directory: String, labels: LabelSpace) throws {
        var pretrained: ViTModel
        do { pretrained = try ViTModel.load(directory: directory) } catch { throw TrainError("model.init: \(error)") }
        if let mismatch = Self.architectureMismatch(pretrained.config.modelArgs, model.config.modelArgs, directory: directory) {
            throw mismatch
        }
        if pretrained.imageSize != model.imageSize {
            do { pretrained = try pretrained.resized(imageSize: model.imageSize) } catch { throw TrainError("model.init: \(error)") }
            reporter.log("model.init: pos_embed resampled from \(directory) to \(model.imageSize) px")
        }
        var source = pretrained
        switch config.model.headInit {
        case .random:
            break
        case .zero:
            model.parameter("head.weight").update(repeating: 0)
            model.parameter("head.bias").update(repeating: 0)
        case .keep:
            guard pretrained.numClasses == model.numClasses else {
                throw TrainError(
                    "model.head_init: keep needs the same classes; \(directory) has \(pretrained.numClasses) head rows, the run \(model.numClasses)")
            }
        case .transfer:
            guard case .classes(let names, _) = labels else {
                throw TrainError("model.head_init: transfer maps class names; data.task pretrain has none (use keep)")
            }
            let vocabulary: Vocabulary
            do { vocabulary = try Vocabulary.load(path: directory + "/vocab.tsv", database: database) } catch {
                throw TrainError("model.head_init: transfer needs the pretrained vocabulary: \(error)")
            }
            guard vocabulary.count == pretrained.numClasses else {
                throw TrainError("model.init: \(directory)/vocab.tsv has \(vocabulary.count) synsets, the head \(pretrained.numClasses) rows")
            }
            let mappings = ClassMapper(vocabulary: vocabulary, database: database).map(names)
            do { source = try HeadExport.transferInit(model: pretrained, mappings: mappings, seed: UInt64(config.run.seed)) } catch {
                throw TrainError("model.head_init: \(error)")
            }
            let mapped = mappings.filter { !$0.rows.isEmpty }.count
            reporter.log("model.head_init: transfer: \(mapped) of \(names.count) classes start from pretrained head rows (transfer.tsv)")
            if isRoot { try writeText(HeadExport.classesTSV(mappings, vocabulary: vocabulary), to: runDirectory + "/transfer.tsv") }
        }
        let copyHead = config.model.headInit == .keep || config.model.headInit == .transfer
        for spec in model.layout.specs where copyHead || !spec.name.hasPrefix("head.") {
            _ = model.parameter(spec.name).update(fromContentsOf: source.parameter(spec.name))
        }
        for spec in model.layout.buffers {
            _ = model.buffer(spec.name).update(fromContentsOf: pretrained.buffer(spec.name))
        }
        reporter.log("model.init: \(directory) (head: \(config.model.headInit.rawValue))")
    }

    /// Nil when the model directory `directory`, whose arguments are `pretrained`, has the
    /// architecture of `run` (image size and classes aside: pos_embed is resampled, the head
    /// replaced); else the `model.init` error naming both.
    static func architectureMismatch(_ pretrained: ModelArgs, _ run: ModelArgs, directory: String) -> TrainError? {
        var (a, b) = (pretrained, run)
        (a.imgSize, a.numClasses, b.imgSize, b.numClasses) = (0, 0, 0, 0)
        if a == b { return nil }
        return TrainError(
            "model.init: \(directory) is not the configured architecture (its model_args: embed_dim \(a.embedDim), depth \(a.depth), "
                + "num_heads \(a.numHeads), patch_size \(a.patchSize), mlp_ratio \(a.mlpRatio), global_pool \(a.globalPool), "
                + "class_token \(a.classToken); the config: embed_dim \(b.embedDim), depth \(b.depth), num_heads \(b.numHeads), "
                + "patch_size \(b.patchSize), mlp_ratio \(b.mlpRatio), global_pool \(b.globalPool), class_token \(b.classToken))")
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
