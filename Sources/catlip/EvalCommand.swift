import ArgumentParser
import Dispatch
import Evaluation
import Foundation
import Shards
import Support
import ViT
import WordNet

/// Options of the commands that map classes: a user class map and strictness.
struct MappingOptions: ParsableArguments {
    @Option(name: .customLong("class-map"), help: "TSV name<TAB>wnid choosing the synset of some classes.")
    var classMap: String?

    @Flag(help: "Fail when a class maps to no head row (by default it is reported and left out).")
    var strict = false

    /// The mapper for `vocabulary`, with the user's class map.
    func mapper(_ vocabulary: Vocabulary, _ database: WordNetDatabase) throws -> ClassMapper {
        let user = try classMap.map { path in try cliRun { try ClassMapper.readUserMap(path: path, database: database) } } ?? [:]
        return ClassMapper(vocabulary: vocabulary, database: database, userMap: user)
    }

    /// Throws under --strict when some class is unmapped.
    func check(_ mappings: [ClassMapping]) throws {
        let unmapped = mappings.filter { $0.rows.isEmpty }.map(\.query)
        if strict && !unmapped.isEmpty {
            throw CLIError("--strict: \(unmapped.count) class(es) map to no head row: \(unmapped.prefix(10).joined(separator: ", "))")
        }
    }
}

/// `catlip eval ...`: what a pretrained head knows about a labelled image set.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a trained model: through its vocabulary head (map, zero-shot, export-head), as a classifier "
            + "(classify), and by what it transfers to labelled images (linear-probe, transfer).",
        subcommands: [Map.self, ZeroShotCommand.self, ClassifyCommand.self, LinearProbeCommand.self, ExportHead.self, TransferCommand.self, TextSearchCommand.self])

    /// `catlip eval map`: class names or wnids to head rows, without evaluating.
    struct Map: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how dataset classes map to rows of the model's head: one JSON line per "
                + "class (synset, route direct|hyponyms|hypernym|unmapped, rows, ambiguous "
                + "senses, classes sharing rows), then a coverage line on stderr.")

        @OptionGroup var model: ModelOptions

        @OptionGroup var wordnet: WordNetDirectoryOption

        @Argument(help: "Classes: names (\"teddy bear\", dogs) or wnids (n02084071).")
        var classes: [String]

        @OptionGroup var mapping: MappingOptions

        func validate() throws {
            if classes.isEmpty { throw ValidationError("give at least one class") }
        }

        func run() throws {
            let database = try wordnet.load()
            let vocabulary = try cliRun { try Vocabulary.load(path: model.vocabularyPath, database: database) }
            let mapper = try mapping.mapper(vocabulary, database)
            let mappings = mapper.map(classes)
            var counts: [MappingRoute: Int] = [:]
            for m in mappings {
                counts[m.route, default: 0] += 1
                var object: [String: Any] = [
                    "class": m.query, "route": m.route.rawValue, "note": m.note,
                    "rows": m.rows.map { ["index": $0, "wnid": vocabulary.entries[$0].wnid, "lemma": vocabulary.entries[$0].lemmas.first ?? ""] },
                    "alternatives": m.alternatives.map { database.wnid($0) },
                    "shared_with": m.sharedWith,
                ]
                if let s = m.synset {
                    object["synset"] = database.wnid(s)
                    object["lemma"] = database.lemmas(s).first ?? ""
                }
                if let d = m.hypernymDistance { object["hypernym_distance"] = d }
                if let h = m.headNoun { object["head_noun"] = h }
                printJSON(object)
            }
            printError(MappingRoute.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", "))
            try mapping.check(mappings)
        }
    }
}

/// `catlip eval zero-shot`: classify labelled images through the head rows of their classes.
struct ZeroShotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zero-shot",
        abstract: "Zero-shot classification through the vocabulary head: each class maps to head "
            + "rows (see eval map), every image is scored under each rule (logit, no-bias, prior, "
            + "cosine); one JSON line per rule with top-1, top-k, mean per-class and direct-only "
            + "accuracy; --json adds per-class results and the confusion matrix.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "ImageFolder (one folder per class, named by name or wnid) or a TSV manifest path<TAB>label.")
    var data: String

    @OptionGroup var report: ReportOptions

    @Option(name: .customLong("rule"), help: ArgumentHelp("Scoring rule: logit, no-bias, prior, cosine, or all.", valueName: "rule"))
    var ruleChoice: RuleChoice = .all

    @OptionGroup var threadsOption: ThreadsOption

    @OptionGroup var wordnetOption: WordNetDirectoryOption

    @OptionGroup var mapping: MappingOptions

    @OptionGroup var fileLimit: MaxFileOption

    func run() throws {
        threadsOption.applyToEngine()
        let model = modelOptions.directory
        let database = try cliRun { try WordNetDatabase(directory: wordnetOption.directory) }
        let vit = try cliRun { try ViTModel.load(directory: model) }
        let vocabulary = try cliRun { try Vocabulary.load(path: model + "/vocab.tsv", database: database) }
        guard vocabulary.count == vit.numClasses else {
            throw CLIError("\(model)/vocab.tsv: \(vocabulary.count) synsets, the head has \(vit.numClasses) rows")
        }
        let dataset = try cliRun { try ZeroShot.readDataset(data) }
        let mappings = try mapping.mapper(vocabulary, database).map(dataset.classes)
        try mapping.check(mappings)
        let classifier = ZeroShotClassifier(model: vit, mappings: mappings, counts: vocabulary.entries.map(\.count))
        let rules = ruleChoice.rules
        let result = ZeroShot.evaluate(model: vit, classifier: classifier, images: dataset.images, rules: rules, topK: report.topK, maxFileBytes: fileLimit.bytes)
        for path in result.failed.prefix(20) { printError("skipped \(path): cannot read or decode") }
        var coverage: [String: Int] = [:]
        for m in mappings { coverage[m.route.rawValue, default: 0] += 1 }
        let unmappedImages = dataset.images.filter { mappings[$0.label].rows.isEmpty }.count
        func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }
        var full: [[String: Any]] = []
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        printError("rule    " + pad("top-1", 8) + pad("top-\(report.topK)", 8) + pad("per-class", 11) + pad("direct top-1", 13))
        for r in result.reports {
            printError(r.rule.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                + [(r.top1, 8), (r.topK, 8), (r.meanPerClass, 11), (r.directTop1, 13)].map { pad(String(format: "%.4f", $0.0), $0.1) }.joined()
                + (r.directClasses > 0 ? String(format: "  (chance %.4f over %d direct classes)", 1 / Double(r.directClasses), r.directClasses) : ""))
        }
        for r in result.reports {
            let line: [String: Any] = [
                "rule": r.rule.rawValue, "images": r.images, "skipped": result.failed.count,
                "images_of_unmapped_classes": unmappedImages, "classes": dataset.classes.count, "coverage": coverage,
                "top1": round4(r.top1), "top_k": round4(r.topK), "k": r.k, "mean_per_class": round4(r.meanPerClass),
                "direct_top1": round4(r.directTop1), "direct_classes": r.directClasses,
                "direct_chance": r.directClasses > 0 ? round4(1 / Double(r.directClasses)) : 0,
                "images_per_s": (result.imagesPerSecond * 10).rounded() / 10,
            ]
            printJSON(line)
            var detailed = line
            detailed["per_class"] = dataset.classes.indices.map { c -> [String: Any] in
                [
                    "class": dataset.classes[c], "route": mappings[c].route.rawValue,
                    "rows": mappings[c].rows.map { vocabulary.entries[$0].wnid }, "images": r.perClass[c].images,
                    "correct": r.perClass[c].correct, "shared_with": mappings[c].sharedWith,
                    "head_noun": mappings[c].headNoun ?? NSNull(),
                ]
            }
            detailed["confusion"] = r.confusion
            full.append(detailed)
        }
        if let svg = report.svg, let first = result.reports.first {
            let picture = ConfusionPlot.svg(
                classes: dataset.classes, confusion: first.confusion,
                title: "zero-shot \(first.rule.rawValue): top-1 \(round4(first.top1)) over \(first.images) images")
            try cliRun { try writeAtomic(Array(picture.utf8), to: svg) }
        }
        if let json = report.json {
            let data = try JSONSerialization.data(withJSONObject: ["classes": dataset.classes, "reports": full], options: [.sortedKeys])
            try cliRun { try writeAtomic(Array(data), to: json) }
        }
    }
}

/// `catlip eval classify`: a fine-tuned classifier (a model directory with classes.tsv) on
/// labelled images.
struct ClassifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Evaluate a classifier (a model directory whose classes.tsv names its head rows, as `catlip train` "
            + "with data.task classify writes it) on an ImageFolder or path<TAB>class manifest: one JSON line with "
            + "top1, top-k (top5 by default) and mean per-class accuracy; --json adds per-class results and the "
            + "confusion matrix.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "ImageFolder (one folder per class) or a TSV manifest path<TAB>class; every class must be in classes.tsv.")
    var data: String

    @OptionGroup var report: ReportOptions

    @OptionGroup var forwardBatch: ForwardBatchOption

    @OptionGroup var threadsOption: ThreadsOption

    @OptionGroup var fileLimit: MaxFileOption

    func run() throws {
        threadsOption.applyToEngine()
        let model = modelOptions.directory
        let vit = try cliRun { try ViTModel.load(directory: model) }
        let classesFile = model + "/classes.tsv"
        guard FileManager.default.fileExists(atPath: classesFile) else {
            throw CLIError("\(model): no classes.tsv: its head is not a class list (a pretrained model: use eval zero-shot)")
        }
        let classes = try cliRun { try ClassifiedImages.readClasses(classesFile) }
        guard classes.count == vit.numClasses else {
            throw CLIError("\(classesFile): \(classes.count) classes, the head has \(vit.numClasses) rows")
        }
        let images = try cliRun { try ClassifiedImages.read(data, classes: classes) }
        let r = try cliRun { try Classification.evaluate(model: vit, images: images, topK: report.topK, batchSize: forwardBatch.size, maxFileBytes: fileLimit.bytes) }
        for problem in r.failed.prefix(20) { printError("skipped \(problem)") }
        func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }
        let line: [String: Any] = [
            "images": r.images, "skipped": r.failed.count + images.unlabelled.total, "classes": classes.count, "top1": round4(r.top1),
            "top\(report.topK)": round4(r.topK), "k": report.topK, "mean_per_class": round4(r.meanPerClass),
        ]
        printJSON(line)
        if let svg = report.svg {
            let picture = ConfusionPlot.svg(
                classes: classes, confusion: r.confusion, title: "classify: top-1 \(round4(r.top1)) over \(r.images) images")
            try cliRun { try writeAtomic(Array(picture.utf8), to: svg) }
        }
        if let json = report.json {
            var full = line
            full["per_class"] = classes.indices.map { c -> [String: Any] in
                ["class": classes[c], "images": r.perClass[c].images, "correct": r.perClass[c].correct]
            }
            full["confusion"] = r.confusion
            full["class_names"] = classes
            let data = try JSONSerialization.data(withJSONObject: full, options: [.sortedKeys])
            try cliRun { try writeAtomic(Array(data), to: json) }
        }
    }
}

/// `catlip eval export-head`: transfer init of a classifier for new classes.
struct ExportHead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-head",
        abstract: "Write a model directory whose head has one row per class of --classes (one name "
            + "or wnid per line), initialised from the vocabulary rows each maps to (mean when "
            + "several, random when none), ready for fine-tuning here or in timm; classes.tsv "
            + "records each class's route and source rows.")

    @OptionGroup var model: ModelOptions

    @Option(help: "Target classes, one name or wnid per line.")
    var classes: String

    @Option(help: "Output model directory.")
    var out: String

    @Option(help: "Seed for the rows of unmapped classes.")
    var seed: UInt64 = 0

    @OptionGroup var mapping: MappingOptions

    @OptionGroup var wordnet: WordNetDirectoryOption

    func run() throws {
        let database = try wordnet.load()
        let vit = try model.load()
        let vocabulary = try model.vocabulary(of: vit, database: database)
        // A list of class names: regular files of at most 64 MiB, like a class map.
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(classes, maxBytes: ClassMapper.maximumUserMapBytes) } catch let error as FileIOError {
            throw CLIError("\(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw CLIError("\(classes): not UTF-8 text") }
        let names = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw CLIError("\(classes): no classes") }
        let mappings = try mapping.mapper(vocabulary, database).map(names)
        try mapping.check(mappings)
        let exported = try cliRun { try HeadExport.transferInit(model: vit, mappings: mappings, seed: seed) }
        try cliRun { try exported.save(directory: out) }
        try cliRun { try writeAtomic(Array(HeadExport.classesTSV(mappings, vocabulary: vocabulary).utf8), to: out + "/classes.tsv") }
        var coverage: [String: Int] = [:]
        for m in mappings { coverage[m.route.rawValue, default: 0] += 1 }
        printJSON(["classes": names.count, "coverage": coverage, "out": out])
    }
}

/// `catlip eval linear-probe`: logistic regression on frozen embeddings.
struct LinearProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear-probe",
        abstract: "Fit a multinomial logistic regression on the frozen embeddings of --train and "
            + "report its top-1/top-k accuracy on --val (ImageFolders or path<TAB>label manifests; "
            + "classes matched by name), to compare with zero-shot.")

    @OptionGroup var model: ModelOptions

    @Option(help: "Training images: ImageFolder or TSV manifest.")
    var train: String

    @Option(help: "Validation images: ImageFolder or TSV manifest.")
    var val: String

    @Option(help: "Full-batch Adam iterations.")
    var iterations: Int = 300

    @Option(help: "Adam learning rate.")
    var lr: Float = 0.01

    @Option(name: .customLong("weight-decay"), help: "L2 penalty.")
    var weightDecay: Float = 1e-4

    @Option(name: .customLong("top-k"), help: "k of top-k accuracy.")
    var topK: Int = 5

    @OptionGroup var threads: ThreadsOption

    @OptionGroup var fileLimit: MaxFileOption

    func validate() throws {
        if iterations < 1 || topK < 1 || !(lr > 0) || weightDecay < 0 {
            throw ValidationError("--iterations, --top-k and --lr must be positive, --weight-decay not negative")
        }
    }

    func run() throws {
        threads.applyToEngine()
        let vit = try model.load()
        let trainSet = try cliRun { try ZeroShot.readDataset(train) }
        let valSet = try cliRun { try ZeroShot.readDataset(val) }
        let start = DispatchTime.now().uptimeNanoseconds
        let a = ZeroShot.embed(model: vit, images: trainSet.images, maxFileBytes: fileLimit.bytes)
        let b = ZeroShot.embed(model: vit, images: valSet.images, maxFileBytes: fileLimit.bytes)
        for path in (a.failed + b.failed).prefix(20) { printError("skipped \(path): cannot read or decode") }
        guard !a.kept.isEmpty else { throw CLIError("\(train): no training image could be decoded") }
        let probe = LinearProbe(
            features: a.features, labels: a.kept.map(\.label), classes: trainSet.classes.count, dim: vit.dim,
            iterations: iterations, lr: lr, weightDecay: weightDecay)
        func accuracy(_ features: [Float], _ truth: [Int?]) -> (top1: Double, topK: Double) {
            let scores = probe.predict(features)
            var hit1 = 0, hitK = 0
            for (i, t) in truth.enumerated() {
                guard let t else { continue }
                let row = Array(scores[(i * probe.classes)..<((i + 1) * probe.classes)])
                let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
                if order[0] == t { hit1 += 1 }
                if order.prefix(topK).contains(t) { hitK += 1 }
            }
            let n = Double(max(truth.count, 1))
            return (Double(hit1) / n, Double(hitK) / n)
        }
        let trainIndex = Dictionary(uniqueKeysWithValues: trainSet.classes.enumerated().map { ($1, $0) })
        let valTruth = b.kept.map { trainIndex[valSet.classes[$0.label]] }
        let trainAcc = accuracy(a.features, a.kept.map(\.label))
        let valAcc = accuracy(b.features, valTruth)
        func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }
        printJSON([
            "train_images": a.kept.count, "val_images": b.kept.count, "skipped": a.failed.count + b.failed.count,
            "classes": trainSet.classes.count, "val_images_of_classes_not_in_train": valTruth.filter { $0 == nil }.count,
            "train_top1": round4(trainAcc.top1), "val_top1": round4(valAcc.top1), "val_top_k": round4(valAcc.topK), "k": topK,
            "seconds": round4(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9),
        ])
    }
}
