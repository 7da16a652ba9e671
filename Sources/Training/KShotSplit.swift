import Foundation
import Shards

/// How many training images of each class a k-shot run gets: the first `k` of the class's
/// training half, or all of it. Written `1`, `2`, `all` on the command line and in reports.
public enum ShotCount: Hashable, Sendable, CustomStringConvertible {
    /// The first k training images of each class (fewer when the class has fewer).
    case count(Int)
    /// Every training image of each class.
    case all

    /// `all` or a positive integer; nil for anything else.
    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "all" {
            self = .all
        } else if let k = Int(t), k > 0 {
            self = .count(k)
        } else {
            return nil
        }
    }

    /// `1`, `2`, `all`.
    public var description: String {
        switch self {
        case .count(let k): String(k)
        case .all: "all"
        }
    }

    /// A comma-separated list (`1,2,all`), in the order given; an entry that is neither a
    /// positive integer nor `all`, or a repeated entry, is an error naming it.
    public static func list(_ text: String) throws -> [ShotCount] {
        try commaList(text, what: "shots") { part in
            guard let s = ShotCount(part) else {
                throw TrainError("shots: '\(part)' is neither a positive number of images per class nor 'all'")
            }
            return s
        }
    }
}

/// The entries of a comma-separated list of the command line (`1,2,all`), in the order given:
/// `parse` makes each entry a value or throws naming it; a value given twice is an error.
func commaList<T: Equatable>(_ text: String, what: String, _ parse: (String) throws -> T) throws -> [T] {
    var values: [T] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        let value = try parse(String(part))
        if values.contains(value) { throw TrainError("\(what): \(value) is given twice") }
        values.append(value)
    }
    return values
}

/// The split of labelled images that k-shot transfer trains and tests on, made per class by
/// alternating files in the data's order (an ImageFolder's files are sorted): the 1st, 3rd,
/// 5th... image of a class is for training, the 2nd, 4th... for testing, so that every class
/// is in both halves and the halves do not depend on a seed. k = 1 trains on each class's first
/// training image, k = 2 on its first two, `all` on the whole training half; the test half is
/// the same for every k. Classes with fewer than two images cannot be in both halves: they are
/// left out and listed in `skipped`.
public struct KShotSplit: Sendable {
    /// One class's images, as resolved paths.
    public struct ClassImages: Sendable, Equatable {
        /// The class name (the folder name or the manifest's label).
        public var name: String
        /// The training half, in order (even positions: 0, 2, 4...).
        public var train: [String]
        /// The test half, in order (odd positions: 1, 3, 5...).
        public var test: [String]
    }

    /// A class left out of the split and why: the images it has.
    public struct SkippedClass: Sendable, Equatable {
        /// The class name.
        public var name: String
        /// Its images (fewer than two).
        public var images: Int
    }

    /// The classes with at least two images, in the data's class order.
    public let classes: [ClassImages]
    /// The classes with fewer than two images, left out.
    public let skipped: [SkippedClass]

    /// Splits `images` per class (paths as `images` resolved them: relative ones against the
    /// working directory).
    public init(_ images: ClassifiedImages) {
        var byClass = [[String]](repeating: [], count: images.classes.count)
        for sample in images.samples {
            guard let label = images.labels[sample.key] else { continue }
            byClass[Int(label)].append(sample.imagePath)
        }
        var classes: [ClassImages] = []
        var skipped: [SkippedClass] = []
        for (c, paths) in byClass.enumerated() {
            if paths.count < 2 {
                skipped.append(SkippedClass(name: images.classes[c], images: paths.count))
                continue
            }
            classes.append(
                ClassImages(
                    name: images.classes[c],
                    train: paths.indices.filter { $0 % 2 == 0 }.map { paths[$0] },
                    test: paths.indices.filter { $0 % 2 == 1 }.map { paths[$0] }))
        }
        self.classes = classes
        self.skipped = skipped
    }

    /// The training images of `shots`, class by class: (path, class name).
    public func train(_ shots: ShotCount) -> [(path: String, name: String)] {
        classes.flatMap { c -> [(path: String, name: String)] in
            let chosen: ArraySlice<String> =
                switch shots {
                case .count(let k): c.train.prefix(k)
                case .all: c.train[...]
                }
            return chosen.map { ($0, c.name) }
        }
    }

    /// The test images, class by class: (path, class name).
    public var test: [(path: String, name: String)] {
        classes.flatMap { c in c.test.map { ($0, c.name) } }
    }

    /// The classes whose training half has fewer than k images (they train on what they have).
    public func shortClasses(_ shots: ShotCount) -> [String] {
        guard case .count(let k) = shots else { return [] }
        return classes.filter { $0.train.count < k }.map(\.name)
    }

    /// A `path<TAB>class` manifest of `images` (what `ClassifiedImages.read` accepts), so that
    /// a split refers to the images instead of copying them; relative paths are put under
    /// `base` when given (a manifest's relative paths are read against its own folder, and the
    /// split is written in another one than the images). A path or class name holding a tab or
    /// a line break cannot be written so: that is an error naming it.
    public static func manifest(_ images: [(path: String, name: String)], base: String? = nil) throws -> String {
        var text = ""
        for (path, name) in images {
            for field in [path, name] where field.unicodeScalars.contains(where: { $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
                throw TrainError("\(path): '\(field)' holds a tab or line break, which a path<TAB>class manifest cannot carry")
            }
            text += (path.hasPrefix("/") ? path : base.map { $0 + "/" + path } ?? path) + "\t" + name + "\n"
        }
        return text
    }
}
