import Foundation
import Support

/// Images with one class each, for fine-tuning and its evaluation: an ImageFolder (one folder
/// per class, named by class name or wnid, images anywhere below it, as torchvision's
/// `ImageFolder` reads it), a manifest of `path<TAB>class` lines (relative paths against the
/// manifest's folder), or tar shards whose samples carry their class in `KEY.cls` or in
/// `KEY.json`'s label (webdataset's convention; samples without one are counted and named).
/// The class list is the sorted set of names found (integer class ids in numeric order), or a
/// given one (a run's `classes.tsv`, fixed by its first session), which the data must keep to.
public struct ClassifiedImages: Sendable {
    /// The class names; class i is `classes[i]`.
    public let classes: [String]
    /// The images: key (the path as found or written), resolved path and class name as the
    /// caption, in file order.
    public let samples: [ManifestSample]
    /// Class index per sample key.
    public let labels: [String: UInt32]
    /// Where the images came from (the folder, manifest or shard pattern).
    public let path: String
    /// Shard samples without a class (none for folders and manifests), and the first few keys.
    public var unlabelled = SkipReport()
    /// Whether the images are in shards (read by streaming them) rather than files.
    public var inShards: Bool { samples.isEmpty && !labels.isEmpty }

    /// The largest manifest read: 4 GiB, as for image-caption manifests.
    public static let maximumManifestBytes = Manifest.maximumFileBytes

    /// Reads the images of `path`. With `classes`, every class of the data must be in it (a
    /// class the list does not have is an error naming it); without, the classes are the sorted
    /// names found. Errors name the file and the problem: a class folder without images, an
    /// image listed under two classes, a manifest line that is not `path<TAB>class`, no images.
    public static func read(_ path: String, classes fixed: [String]? = nil) throws -> ClassifiedImages {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if !isDirectory.boolValue && (path.lowercased().hasSuffix(".tar") || path.contains("{")) {
            return try fromShards(path, classes: fixed)
        }
        guard exists else { throw ManifestError(path: path, message: "no such file or folder") }
        let pairs = isDirectory.boolValue ? try folderPairs(path) : try manifestPairs(path)
        guard !pairs.isEmpty else { throw ManifestError(path: path, message: "no labelled images found") }
        var classOf: [String: String] = [:]
        for p in pairs {
            if let earlier = classOf[p.key], earlier != p.name {
                throw ManifestError(path: path, message: "\(p.key) is listed under two classes, '\(earlier)' and '\(p.name)'")
            }
            classOf[p.key] = p.name
        }
        let classes = fixed ?? Array(Set(pairs.map(\.name))).sorted()
        let index = Dictionary(classes.enumerated().map { ($1, UInt32($0)) }, uniquingKeysWith: { a, _ in a })
        var samples: [ManifestSample] = []
        var labels: [String: UInt32] = [:]
        for p in pairs where labels[p.key] == nil {
            guard let label = index[p.name] else {
                throw ManifestError(
                    path: path, message: "class '\(p.name)' (of \(p.key)) is not in the run's class list of \(classes.count) classes")
            }
            samples.append(ManifestSample(key: p.key, imagePath: p.file, caption: p.name))
            labels[p.key] = label
        }
        return ClassifiedImages(classes: classes, samples: samples, labels: labels, path: path)
    }

    /// The labelled samples of shards: one pass over them (in order) for each sample's class.
    private static func fromShards(_ pattern: String, classes fixed: [String]?) throws -> ClassifiedImages {
        var names: [String: String] = [:]
        var unlabelled = SkipReport()
        try ShardSource(patterns: pattern, shuffle: false).forEachSample(seed: 0, epoch: 0) { sample in
            if sample.key.hasPrefix("<shard>") { return true }  // the loader reports unreadable shards
            guard let label = sample.label else {
                unlabelled.add("no .cls or json label", sample.source + ":" + sample.key)
                return true
            }
            if let earlier = names[sample.key], earlier != label {
                throw ManifestError(path: sample.source, message: "sample \(sample.key) is in class '\(earlier)' and in class '\(label)'")
            }
            names[sample.key] = label
            return true
        }
        guard !names.isEmpty else { throw ManifestError(path: pattern, message: "no sample with a class (KEY.cls or a json label)") }
        let classes = fixed ?? Array(Set(names.values)).sorted { a, b in
            // class ids sort as numbers (webdataset's .cls are usually integers)
            if let x = Int(a), let y = Int(b) { return x < y }
            return a < b
        }
        let index = Dictionary(classes.enumerated().map { ($1, UInt32($0)) }, uniquingKeysWith: { a, _ in a })
        var labels: [String: UInt32] = [:]
        for (key, name) in names {
            guard let label = index[name] else {
                throw ManifestError(path: pattern, message: "class '\(name)' (of \(key)) is not in the run's class list of \(classes.count) classes")
            }
            labels[key] = label
        }
        var result = ClassifiedImages(classes: classes, samples: [], labels: labels, path: pattern)
        result.unlabelled = unlabelled
        return result
    }

    /// The images as a sample source for the loader (a permutation per epoch, or the shards'
    /// order and shuffle buffer, when `shuffle`).
    public func source(shuffle: Bool, shuffleBuffer: Int = 1000) throws -> any SampleSource {
        if inShards { return ClassShardSource(shards: try ShardSource(patterns: path, shuffle: shuffle, shuffleBuffer: shuffleBuffer)) }
        return ManifestSource(samples: samples, path: path, shuffle: shuffle)
    }

    /// `classes.tsv`: a line `i<TAB>name` per class, as `eval export-head` writes it (which
    /// adds the route and the source rows).
    public static func classesTSV(_ classes: [String]) -> String {
        classes.enumerated().map { "\($0)\t\($1)\n" }.joined()
    }

    /// Reads a `classes.tsv`: lines `i<TAB>name[<TAB>...]` (the index equal to the line's
    /// class number), or plain names one per line; errors name the file.
    public static func readClasses(_ path: String) throws -> [String] {
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(path, maxBytes: 64 << 20) } catch let error as FileIOError {
            throw ManifestError(path: path, message: "cannot read the class list: \(error.problem)")
        }
        var names: [String] = []
        for line in textLines(Data(bytes)) where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            let indexed = columns.count >= 2 && Int(columns[0]) == names.count
            let name = String(indexed ? columns[1] : columns[0]).trimmingCharacters(in: .whitespaces)
            if name.isEmpty { throw ManifestError(path: path, message: "line \(names.count + 1): no class name") }
            names.append(name)
        }
        guard !names.isEmpty else { throw ManifestError(path: path, message: "the class list is empty") }
        if Set(names).count != names.count { throw ManifestError(path: path, message: "a class is listed twice") }
        return names
    }

    private struct Pair {
        var key: String
        var file: String
        var name: String
    }

    private static let imageSuffixes = [".png", ".jpg", ".jpeg"]

    /// Every image below each class folder of `root` (sorted); a class folder without images is
    /// an error (torchvision's ImageFolder refuses it too).
    private static func folderPairs(_ root: String) throws -> [Pair] {
        let fm = FileManager.default
        let folders: [String]
        do { folders = try fm.contentsOfDirectory(atPath: root).sorted() } catch {
            throw ManifestError(path: root, message: "cannot read the folder")
        }
        var pairs: [Pair] = []
        for folder in folders where !folder.hasPrefix(".") {
            let dir = root + "/" + folder
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            let files = (fm.enumerator(atPath: dir)?.allObjects as? [String] ?? [])
                .filter { name in imageSuffixes.contains { name.lowercased().hasSuffix($0) } }.sorted()
            if files.isEmpty { throw ManifestError(path: dir, message: "class folder '\(folder)' has no images (.png, .jpg, .jpeg)") }
            for file in files { pairs.append(Pair(key: dir + "/" + file, file: dir + "/" + file, name: folder)) }
        }
        return pairs
    }

    /// The `path<TAB>class` lines of a manifest; a line without both is an error naming it.
    private static func manifestPairs(_ path: String) throws -> [Pair] {
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(path, maxBytes: maximumManifestBytes) } catch let error as FileIOError {
            throw ManifestError(path: path, message: "cannot read the manifest: \(error.problem)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var pairs: [Pair] = []
        for (n, line) in textLines(Data(bytes)).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            guard parts.count == 2, !parts[0].isEmpty, !name.isEmpty else {
                throw ManifestError(path: path, message: "line \(n + 1): expected path<TAB>class")
            }
            let key = String(parts[0])
            pairs.append(Pair(key: key, file: key.hasPrefix("/") ? key : base + "/" + key, name: name))
        }
        return pairs
    }
}

/// Shards read for classification: each sample's caption is its class name, as a folder's or a
/// manifest's samples carry it (the loader refuses captionless samples; the class, not a
/// caption, is what a classify sample has).
private struct ClassShardSource: SampleSource {
    let shards: ShardSource

    var count: Int? { shards.count }

    func forEachSample(seed: UInt64, epoch: Int, _ body: (StreamSample) throws -> Bool) throws {
        try shards.forEachSample(seed: seed, epoch: epoch) { sample in
            var sample = sample
            sample.caption = sample.label ?? ""
            return try body(sample)
        }
    }
}
