import Foundation

/// The four parts of speech of WordNet.
public enum PartOfSpeech: String, Sendable, CaseIterable, Codable {
    /// Nouns (`n`): the only part with synsets loaded in full.
    case noun = "n"
    /// Verbs (`v`).
    case verb = "v"
    /// Adjectives (`a`, including satellites `s`).
    case adjective = "a"
    /// Adverbs (`r`).
    case adverb = "r"

    /// The file-name stem WordNet uses: noun, verb, adj, adv.
    var fileStem: String {
        switch self {
        case .noun: return "noun"
        case .verb: return "verb"
        case .adjective: return "adj"
        case .adverb: return "adv"
        }
    }
}

/// A noun synset's position in `WordNetDatabase`'s tables (0 ..< synsetCount, in file order).
public typealias SynsetID = Int32

/// Why the WordNet database could not be loaded.
public struct WordNetError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The file or directory concerned.
    public let path: String
    /// What is wrong.
    public let message: String

    /// `path: message`.
    public var description: String { "\(path): \(message)" }
}

/// The Princeton WordNet 3.0 database as Debian's wordnet-base installs it: every noun synset
/// (lemmas, lexicographer file, hypernyms, hyponyms, gloss), the noun index in sense order with
/// tagged-sense counts, the index entries of the other parts of speech (for their tagged-sense
/// counts), and the exception lists used by morphy. Immutable once loaded, so one instance is
/// shared by every thread.
public final class WordNetDatabase: Sendable {
    /// Where Debian's wordnet-base puts the database.
    public static let defaultDirectory = "/usr/share/wordnet"

    /// The 45 lexicographer files, by number (WordNet's lexnames).
    public static let lexicographerFiles: [String] = [
        "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
        "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
        "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
        "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
        "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance",
        "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
        "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
        "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
        "verb.weather", "adj.ppl",
    ]

    /// The directory the database was read from.
    public let directory: String

    // Noun synsets, struct-of-arrays, indexed by SynsetID.
    let offsets: [UInt32]
    let lexFiles: [UInt8]
    let lemmaStarts: [Int32]  // count + 1 entries into `lemmaNames`
    let lemmaNames: [String]  // as stored: underscores, original case
    let hypernymStarts: [Int32]
    let hypernymIDs: [SynsetID]  // `@` and `@i`
    let hyponymStarts: [Int32]
    let hyponymIDs: [SynsetID]  // `~` and `~i`
    let glossRanges: [Range<Int32>]
    let nounData: [UInt8]

    /// Noun index: lemma (lower case, underscores) -> synsets in sense order.
    let nounIndex: [String: NounEntry]
    /// Tagged-sense counts of the lemma in each part of speech that has it (noun included).
    let otherIndex: [PartOfSpeech: [String: UInt32]]
    /// Morphy's exception lists: inflected form -> base forms.
    let exceptions: [PartOfSpeech: [String: [String]]]
    /// Semantic-concordance frequencies (cntlist.rev) summed per lemma: noun, verb, adjective
    /// (with satellites), adverb.
    let frequencies: [String: UsageCounts]

    /// How often a lemma was tagged in each part of speech in WordNet's semantic concordance.
    public struct UsageCounts: Sendable, Equatable {
        /// Tags as a noun.
        public var noun: UInt32 = 0
        /// Tags as a verb.
        public var verb: UInt32 = 0
        /// Tags as an adjective (head or satellite).
        public var adjective: UInt32 = 0
        /// Tags as an adverb.
        public var adverb: UInt32 = 0
    }

    struct NounEntry: Sendable {
        var synsets: [SynsetID]
        var taggedSenseCount: UInt32
    }

    /// Loads the database from `directory` (default /usr/share/wordnet). Throws a
    /// `WordNetError` naming the missing or damaged file, with a hint to run `make setup`.
    public init(directory: String = WordNetDatabase.defaultDirectory) throws {
        self.directory = directory
        func read(_ name: String) throws -> [UInt8] {
            let path = directory + "/" + name
            guard let data = FileManager.default.contents(atPath: path) else {
                throw WordNetError(
                    path: path,
                    message: "cannot read the WordNet 3.0 database (install it with `make setup`, "
                        + "which installs Debian's wordnet-base)")
            }
            return [UInt8](data)
        }

        // data.noun: one synset per line, offsets ascending.
        let data = try read("data.noun")
        var offsets: [UInt32] = [], lexFiles: [UInt8] = []
        var lemmaStarts: [Int32] = [0], lemmaNames: [String] = []
        var hyperTargets: [UInt32] = [], hyperStarts: [Int32] = [0]
        var hypoTargets: [UInt32] = [], hypoStarts: [Int32] = [0]
        var glossRanges: [Range<Int32>] = []
        offsets.reserveCapacity(82_200)
        try data.withUnsafeBufferPointer { bytes in
            var lineStart = 0
            let n = bytes.count
            while lineStart < n {
                var lineEnd = lineStart
                while lineEnd < n && bytes[lineEnd] != 10 { lineEnd += 1 }
                defer { lineStart = lineEnd + 1 }
                if lineEnd - lineStart < 2 || bytes[lineStart] == 32 { continue }  // licence
                var scanner = FieldScanner(bytes: bytes, position: lineStart, end: lineEnd)
                guard let offset = scanner.decimal(), let lexFile = scanner.decimal(),
                    scanner.skipField(), let wordCount = scanner.hexadecimal()
                else {
                    throw WordNetError(
                        path: directory + "/data.noun",
                        message: "malformed synset line at byte \(lineStart)")
                }
                offsets.append(UInt32(offset))
                lexFiles.append(UInt8(truncatingIfNeeded: lexFile))
                for _ in 0..<wordCount {
                    guard let word = scanner.field(), scanner.skipField() else {
                        throw WordNetError(
                            path: directory + "/data.noun", message: "malformed lemmas at \(offset)")
                    }
                    lemmaNames.append(String(decoding: word, as: UTF8.self))
                }
                lemmaStarts.append(Int32(lemmaNames.count))
                let pointerCount = scanner.decimal() ?? 0
                for _ in 0..<pointerCount {
                    guard let symbol = scanner.field(), let target = scanner.decimal(),
                        let pos = scanner.field(), scanner.skipField()
                    else { break }
                    guard pos.count == 1, pos[0] == UInt8(ascii: "n") else { continue }
                    if symbol.elementsEqual("@".utf8) || symbol.elementsEqual("@i".utf8) {
                        hyperTargets.append(UInt32(target))
                    } else if symbol.elementsEqual("~".utf8) || symbol.elementsEqual("~i".utf8) {
                        hypoTargets.append(UInt32(target))
                    }
                }
                hyperStarts.append(Int32(hyperTargets.count))
                hypoStarts.append(Int32(hypoTargets.count))
                var bar = scanner.position
                while bar < lineEnd && bytes[bar] != UInt8(ascii: "|") { bar += 1 }
                var glossEnd = lineEnd
                while glossEnd > bar + 1 && bytes[glossEnd - 1] == 32 { glossEnd -= 1 }
                glossRanges.append(Int32(min(bar + 2, glossEnd))..<Int32(glossEnd))
            }
        }
        func ids(_ targets: [UInt32]) throws -> [SynsetID] {
            try targets.map { target in
                guard let id = Self.binarySearch(offsets, target) else {
                    throw WordNetError(
                        path: directory + "/data.noun",
                        message: "pointer to unknown synset \(target)")
                }
                return id
            }
        }
        self.offsets = offsets
        self.lexFiles = lexFiles
        self.lemmaStarts = lemmaStarts
        self.lemmaNames = lemmaNames
        self.hypernymStarts = hyperStarts
        self.hypernymIDs = try ids(hyperTargets)
        self.hyponymStarts = hypoStarts
        self.hyponymIDs = try ids(hypoTargets)
        self.glossRanges = glossRanges
        self.nounData = data

        // index.<pos>: lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offsets
        var nounIndex: [String: NounEntry] = [:]
        var otherIndex: [PartOfSpeech: [String: UInt32]] = [:]
        for pos in PartOfSpeech.allCases {
            let path = directory + "/index." + pos.fileStem
            let index = try read("index." + pos.fileStem)
            var counts: [String: UInt32] = [:]
            if pos == .noun { nounIndex.reserveCapacity(118_000) }
            try index.withUnsafeBufferPointer { bytes in
                var lineStart = 0
                while lineStart < bytes.count {
                    var lineEnd = lineStart
                    while lineEnd < bytes.count && bytes[lineEnd] != 10 { lineEnd += 1 }
                    defer { lineStart = lineEnd + 1 }
                    if lineEnd - lineStart < 2 || bytes[lineStart] == 32 { continue }
                    var scanner = FieldScanner(bytes: bytes, position: lineStart, end: lineEnd)
                    guard let lemma = scanner.field(), scanner.skipField(),
                        let synsetCount = scanner.decimal(), let pointerCount = scanner.decimal()
                    else { throw WordNetError(path: path, message: "malformed line at byte \(lineStart)") }
                    for _ in 0..<pointerCount { _ = scanner.skipField() }
                    guard scanner.skipField(), let tagged = scanner.decimal() else {
                        throw WordNetError(path: path, message: "malformed line at byte \(lineStart)")
                    }
                    let key = String(decoding: lemma, as: UTF8.self)
                    counts[key] = UInt32(tagged)
                    if pos == .noun {
                        var synsets: [SynsetID] = []
                        synsets.reserveCapacity(synsetCount)
                        for _ in 0..<synsetCount {
                            guard let offset = scanner.decimal(),
                                let id = Self.binarySearch(offsets, UInt32(offset))
                            else {
                                throw WordNetError(
                                    path: path, message: "\(key): sense points to no synset")
                            }
                            synsets.append(id)
                        }
                        nounIndex[key] = NounEntry(synsets: synsets, taggedSenseCount: UInt32(tagged))
                    }
                }
            }
            otherIndex[pos] = counts
        }
        self.nounIndex = nounIndex
        self.otherIndex = otherIndex

        // <pos>.exc: inflected base [base...]. A form on several lines keeps its last line's
        // bases, as NLTK reads the file (noun.exc lists involucra twice), so that lemmas agree
        // with NLTK and corenet.
        var exceptions: [PartOfSpeech: [String: [String]]] = [:]
        for pos in PartOfSpeech.allCases {
            let bytes = try read(pos.fileStem + ".exc")
            var map: [String: [String]] = [:]
            for line in bytes.split(separator: 10) {
                let fields = line.split(separator: 32).map { String(decoding: $0, as: UTF8.self) }
                if fields.count >= 2 { map[fields[0]] = Array(fields[1...]) }
            }
            exceptions[pos] = map
        }
        self.exceptions = exceptions

        // cntlist.rev: sense_key sense_number tag_count, sense_key = lemma%ss_type:...
        var frequencies: [String: UsageCounts] = [:]
        let counts = try read("cntlist.rev")
        for line in counts.split(separator: 10) {
            let fields = line.split(separator: 32)
            guard fields.count == 3, let percent = fields[0].firstIndex(of: UInt8(ascii: "%")),
                percent + 1 < fields[0].endIndex, let tags = UInt32(String(decoding: fields[2], as: UTF8.self))
            else { continue }
            let lemma = String(decoding: fields[0][..<percent], as: UTF8.self)
            var entry = frequencies[lemma] ?? UsageCounts()
            switch fields[0][percent + 1] {
            case UInt8(ascii: "1"): entry.noun += tags
            case UInt8(ascii: "2"): entry.verb += tags
            case UInt8(ascii: "3"), UInt8(ascii: "5"): entry.adjective += tags
            case UInt8(ascii: "4"): entry.adverb += tags
            default: continue
            }
            frequencies[lemma] = entry
        }
        self.frequencies = frequencies
    }

    static func binarySearch(_ sorted: [UInt32], _ value: UInt32) -> SynsetID? {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] == value ? SynsetID(lo) : nil
    }

    // MARK: - Queries

    /// Number of noun synsets (82,115 in WordNet 3.0).
    public var synsetCount: Int { offsets.count }

    /// Number of noun lemmas in the index (117,798 in WordNet 3.0).
    public var nounLemmaCount: Int { nounIndex.count }

    /// The noun synsets of `lemma` (lower case, words joined by underscores), most frequent
    /// sense first; empty when WordNet has no such noun.
    public func nounSynsets(_ lemma: String) -> [SynsetID] {
        nounIndex[lemma]?.synsets ?? []
    }

    /// Whether `lemma` is in the index of `pos`.
    public func contains(_ lemma: String, as pos: PartOfSpeech) -> Bool {
        pos == .noun ? nounIndex[lemma] != nil : otherIndex[pos]?[lemma] != nil
    }

    /// The tagged-sense count (how often the lemma was seen in the semantic concordance) of
    /// `lemma` as `pos`, or nil when WordNet has no such `pos` entry.
    public func taggedSenseCount(_ lemma: String, as pos: PartOfSpeech) -> UInt32? {
        pos == .noun ? nounIndex[lemma]?.taggedSenseCount : otherIndex[pos]?[lemma]
    }

    /// How often `lemma` was tagged as each part of speech in the semantic concordance
    /// (cntlist.rev; zeros when never).
    public func usageCounts(_ lemma: String) -> UsageCounts {
        frequencies[lemma] ?? UsageCounts()
    }

    /// The exception-list base forms of an irregular `form` (e.g. mice -> mouse).
    public func exceptionBases(_ form: String, as pos: PartOfSpeech) -> [String]? {
        exceptions[pos]?[form]
    }

    /// The synset with WordNet offset `offset` (the number in its wnid).
    public func synset(offset: UInt32) -> SynsetID? {
        Self.binarySearch(offsets, offset)
    }

    /// The synset named by a wnid: `n02084071` (ImageNet style, zero-padded) or corenet's
    /// unpadded `n2084071`.
    public func synset(wnid: String) -> SynsetID? {
        guard wnid.first == "n", let value = UInt32(wnid.dropFirst()) else { return nil }
        return synset(offset: value)
    }

    /// The WordNet offset of `id`.
    public func offset(_ id: SynsetID) -> UInt32 { offsets[Int(id)] }

    /// The wnid of `id`: `n` + 8-digit zero-padded offset, as ImageNet writes it.
    public func wnid(_ id: SynsetID) -> String {
        let digits = String(offsets[Int(id)])
        return "n" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// The lemmas of `id` as stored (underscores, original case), head lemma first.
    public func lemmas(_ id: SynsetID) -> ArraySlice<String> {
        lemmaNames[Int(lemmaStarts[Int(id)])..<Int(lemmaStarts[Int(id) + 1])]
    }

    /// The head lemma of `id` in lower case (NLTK's synset name stem: `dog` for dog.n.01).
    public func headLemma(_ id: SynsetID) -> String {
        lemmaNames[Int(lemmaStarts[Int(id)])].lowercased()
    }

    /// The lexicographer file of `id`, e.g. `noun.animal`.
    public func lexicographerFile(_ id: SynsetID) -> String {
        let n = Int(lexFiles[Int(id)])
        return n < Self.lexicographerFiles.count ? Self.lexicographerFiles[n] : "noun.unknown"
    }

    /// The lexicographer file number of `id` (5 = noun.animal, ...).
    public func lexicographerFileNumber(_ id: SynsetID) -> Int { Int(lexFiles[Int(id)]) }

    /// Direct hypernyms of `id` (class and instance: `@`, `@i`).
    public func hypernyms(_ id: SynsetID) -> ArraySlice<SynsetID> {
        hypernymIDs[Int(hypernymStarts[Int(id)])..<Int(hypernymStarts[Int(id) + 1])]
    }

    /// Direct hyponyms of `id` (class and instance: `~`, `~i`).
    public func hyponyms(_ id: SynsetID) -> ArraySlice<SynsetID> {
        hyponymIDs[Int(hyponymStarts[Int(id)])..<Int(hyponymStarts[Int(id) + 1])]
    }

    /// The gloss (definition and examples) of `id`.
    public func gloss(_ id: SynsetID) -> String {
        let r = glossRanges[Int(id)]
        return String(decoding: nounData[Int(r.lowerBound)..<Int(r.upperBound)], as: UTF8.self)
    }

    /// The 1-based sense number of `id` among the noun senses of its head lemma (NLTK's
    /// `dog.n.01` numbering).
    public func senseNumber(_ id: SynsetID) -> Int {
        let senses = nounSynsets(headLemma(id))
        return (senses.firstIndex(of: id) ?? 0) + 1
    }

    /// NLTK's name of `id`: head lemma, `n`, two-digit sense number (`dog.n.01`).
    public func name(_ id: SynsetID) -> String {
        let n = senseNumber(id)
        return headLemma(id) + ".n." + (n < 10 ? "0" : "") + String(n)
    }
}

/// Splits a line of WordNet's space-separated fields without allocating.
struct FieldScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var position: Int
    let end: Int

    init(bytes: UnsafeBufferPointer<UInt8>, position: Int, end: Int) {
        self.bytes = bytes
        self.position = position
        self.end = end
    }

    /// The next field, or nil at the end of the line.
    mutating func field() -> UnsafeBufferPointer<UInt8>? {
        while position < end && bytes[position] == 32 { position += 1 }
        guard position < end else { return nil }
        let start = position
        while position < end && bytes[position] != 32 { position += 1 }
        return UnsafeBufferPointer(rebasing: bytes[start..<position])
    }

    /// Skips one field; false at the end of the line.
    mutating func skipField() -> Bool { field() != nil }

    /// The next field as a decimal number.
    mutating func decimal() -> Int? {
        guard let f = field(), !f.isEmpty else { return nil }
        var value = 0
        for b in f {
            guard b >= 48 && b <= 57 else { return nil }
            value = value &* 10 &+ Int(b - 48)
        }
        return value
    }

    /// The next field as a hexadecimal number.
    mutating func hexadecimal() -> Int? {
        guard let f = field(), !f.isEmpty else { return nil }
        var value = 0
        for b in f {
            let digit: Int
            switch b {
            case 48...57: digit = Int(b - 48)
            case 97...102: digit = Int(b - 87)
            case 65...70: digit = Int(b - 55)
            default: return nil
            }
            value = value &* 16 &+ digit
        }
        return value
    }
}
