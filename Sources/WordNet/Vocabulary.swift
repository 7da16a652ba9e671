import Foundation
import Support

/// The class vocabulary: synsets in class-index order (descending count, ties by wnid), read
/// from and written to `vocab.tsv` (`wnid<TAB>count<TAB>lemma,lemma,...`, wnid zero-padded).
/// corenet's unpadded keys (`n5928118`) and bare key lists are accepted on input.
public struct Vocabulary: Sendable, Equatable {
    /// One class.
    public struct Entry: Sendable, Equatable {
        /// The synset's wnid, zero-padded (`n02084071`).
        public var wnid: String
        /// How many captions carried it when the vocabulary was built (0 if unknown).
        public var count: Int
        /// Its lemma names, head lemma first (underscores kept).
        public var lemmas: [String]

        /// An entry from its fields.
        public init(wnid: String, count: Int, lemmas: [String]) {
            self.wnid = wnid
            self.count = count
            self.lemmas = lemmas
        }
    }

    /// The classes, index = class index.
    public private(set) var entries: [Entry]
    private var indexByWnid: [String: Int]

    /// A vocabulary of `entries` in class-index order. Duplicate wnids are a programming error.
    public init(entries: [Entry]) {
        self.entries = entries
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() {
            precondition(index[e.wnid] == nil, "duplicate wnid \(e.wnid)")
            index[e.wnid] = i
        }
        indexByWnid = index
    }

    /// Number of classes (V).
    public var count: Int { entries.count }

    /// The class index of a wnid (padded or not), if it is in the vocabulary.
    public func classIndex(wnid: String) -> Int? {
        indexByWnid[Self.padded(wnid) ?? wnid]
    }

    /// `n` + 8-digit offset for `n5928118` or `n05928118`; nil when `key` is not a wnid.
    public static func padded(_ key: String) -> String? {
        guard key.first == "n", key.count >= 2, key.count <= 9,
            key.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber })
        else { return nil }
        let digits = key.dropFirst()
        return "n" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// A 64-bit FNV-1a fingerprint of the class order (and `salt`), which label caches record
    /// so that a changed vocabulary or labelling rule is detected.
    public func fingerprint(salt: String = "") -> UInt64 {
        var hash = FNV1a()
        hash.combine(salt.utf8)
        for e in entries {
            hash.combine(CollectionOfOne(10))
            hash.combine(e.wnid.utf8)
        }
        return hash.value
    }

    // MARK: - Files

    /// The largest `vocab.tsv` read: 64 MiB. Every WordNet noun synset (82,115) with all its
    /// lemmas takes about 4 MiB; a FIFO, device or larger file is refused.
    public static let maximumFileBytes = 64 << 20

    /// Reads `vocab.tsv`, or a listing of corenet keys (one per line, optionally followed by a
    /// count). Lemma names missing from the file are filled in from `database` when given.
    /// Throws `VocabularyError` naming the file and line.
    public static func load(path: String, database: WordNetDatabase? = nil) throws -> Vocabulary {
        let data: Data
        do {
            data = Data(try SafeFile.read(path, maxBytes: maximumFileBytes))
        } catch let error as FileIOError {
            throw VocabularyError(path: path, line: nil, message: "cannot read the file: \(error.problem)")
        }
        var entries: [Entry] = []
        var seen = Set<String>()
        var lineNumber = 0
        for rawLine in textLines(data) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            // vocab.tsv is tab-separated; corenet listings may use spaces.
            let fields = line.contains("\t")
                ? line.split(separator: "\t", omittingEmptySubsequences: false)
                : line.split(separator: " ")
            guard let wnid = padded(String(fields[0])) else {
                throw VocabularyError(
                    path: path, line: lineNumber, message: "'\(fields[0])' is not a wnid (n + offset)")
            }
            if let database, database.synset(wnid: wnid) == nil {
                throw VocabularyError(
                    path: path, line: lineNumber, message: "\(wnid) is not a WordNet 3.0 noun synset")
            }
            guard seen.insert(wnid).inserted else {
                throw VocabularyError(path: path, line: lineNumber, message: "duplicate \(wnid)")
            }
            var count = 0
            if fields.count >= 2, !fields[1].isEmpty {
                guard let c = Int(fields[1]), c >= 0 else {
                    throw VocabularyError(
                        path: path, line: lineNumber, message: "count '\(fields[1])' is not a number")
                }
                count = c
            }
            var lemmas = fields.count >= 3
                ? fields[2].split(separator: ",").map { String($0) } : []
            if lemmas.isEmpty, let database, let id = database.synset(wnid: wnid) {
                lemmas = Array(database.lemmas(id))
            }
            entries.append(Entry(wnid: wnid, count: count, lemmas: lemmas))
        }
        return Vocabulary(entries: entries)
    }

    /// The file contents of `vocab.tsv`.
    public func tsv() -> String {
        var out = ""
        for e in entries {
            out += e.wnid + "\t" + String(e.count) + "\t" + e.lemmas.joined(separator: ",") + "\n"
        }
        return out
    }

    /// Writes `vocab.tsv` atomically (`SafeFile.writeAtomically`).
    public func write(path: String) throws {
        do {
            try SafeFile.writeAtomically(path, bytes: Array(tsv().utf8))
        } catch let error as FileIOError {
            throw VocabularyError(path: path, line: nil, message: "cannot write: \(error.problem)")
        }
    }

    /// The vocabulary of synsets seen at least `minimumCount` times in `counts`, by descending
    /// count then wnid, cut to `maximumSize` classes when given; synsets in `excluding` (a
    /// `StopList`'s) never become classes.
    public static func build(
        counts: [SynsetID: Int], database: WordNetDatabase, minimumCount: Int, maximumSize: Int? = nil,
        excluding: Set<SynsetID> = []
    ) -> Vocabulary {
        var kept = counts.filter { $0.value >= minimumCount && !excluding.contains($0.key) }.map {
            (wnid: database.wnid($0.key), count: $0.value, id: $0.key)
        }
        kept.sort { $0.count != $1.count ? $0.count > $1.count : $0.wnid < $1.wnid }
        if let maximumSize, kept.count > maximumSize { kept.removeSubrange(maximumSize...) }
        return Vocabulary(
            entries: kept.map { Entry(wnid: $0.wnid, count: $0.count, lemmas: Array(database.lemmas($0.id))) })
    }
}

/// A vocabulary file that cannot be read or is malformed.
public struct VocabularyError: Error, Sendable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// The 1-based line, when the problem is on one.
    public let line: Int?
    /// What is wrong.
    public let message: String

    /// `path:line: message`.
    public var description: String {
        path + (line.map { ":\($0)" } ?? "") + ": " + message
    }
}
