import Foundation
import Support

/// Words whose noun senses are kept out of a vocabulary: in web captions they name the medium,
/// the licence, a style or a quantity ("free vector illustration", "flat icon set", "two"),
/// never a visible thing, yet the corenet rule turns them into the most frequent classes (9-13%
/// of the composed scenes' captions each). Dropping every noun sense of each word from
/// `vocab build` (`--stop-list default` or a file) frees the head for things a picture shows;
/// captions keep their other labels. Off by default: the released CatLIP vocabulary has them.
public struct StopList: Sendable, Equatable {
    /// The words (lowercase, spaces as underscores, as WordNet lemmas are written) and wnids.
    public let entries: [String]

    /// The built-in list: medium and format words, licence and stock-site words, style
    /// adjectives the rule reads as nouns, and the small numbers.
    public static let `default` = StopList(entries: [
        "illustration", "image", "picture", "photo", "photograph", "drawing", "vector", "icon",
        "clip_art", "graphic", "art", "artwork", "design", "cartoon", "sketch", "doodle",
        "silhouette", "wallpaper", "template", "version", "concept", "style", "element", "set",
        "collection", "free", "stock", "royalty", "simple", "flat",
        "little", "modern", "retro", "vintage", "cool", "abstract",
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ])

    /// The largest stop-list file read (1 MiB).
    public static let maximumFileBytes = 1 << 20

    /// A stop list of `entries` (words or phrases, any case; wnids as `n` + digits).
    public init(entries: [String]) {
        self.entries = entries.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
                .split(whereSeparator: { $0 == " " || $0 == "_" }).joined(separator: "_")
        }.filter { !$0.isEmpty }
    }

    /// Reads a stop list: one word, phrase or wnid per line; blank lines and `#` comments are
    /// skipped. Throws `VocabularyError` naming the file (unreadable, too large, not UTF-8).
    public static func read(path: String) throws -> StopList {
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(path, maxBytes: maximumFileBytes) } catch let error as FileIOError {
            throw VocabularyError(path: path, line: nil, message: "cannot read the stop list: \(error.problem)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw VocabularyError(path: path, line: nil, message: "the stop list is not UTF-8 text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return StopList(entries: lines.filter { !$0.isEmpty && !$0.hasPrefix("#") })
    }

    /// Every noun synset the entries can denote: each word's senses (and those of its morphy
    /// base forms), or the synset of a wnid. Entries WordNet does not know are returned in
    /// `unknown`, so a typo in a user's list is reported rather than silently ignored.
    public func synsets(in database: WordNetDatabase) -> (synsets: Set<SynsetID>, unknown: [String]) {
        var out = Set<SynsetID>()
        var unknown: [String] = []
        for entry in entries {
            if let wnid = Vocabulary.padded(entry) {
                if let id = database.synset(wnid: wnid) { out.insert(id) } else { unknown.append(entry) }
                continue
            }
            var found = false
            for lemma in [entry] + database.morphy(entry, as: .noun) {
                for s in database.nounSynsets(lemma) {
                    out.insert(s)
                    found = true
                }
            }
            if !found { unknown.append(entry) }
        }
        return (out, unknown)
    }
}
