import Support

/// How captions become synsets.
public enum LabelMode: String, Sendable, CaseIterable, Codable {
    /// corenet's rule, which the released CatLIP vocabulary follows: every token is lemmatised
    /// as a noun, its first noun sense is taken, and kept only when the lemma is that synset's
    /// head lemma. ("An image of black dog." gives image, black, dog.)
    case corenet
    /// The paper's intent without a POS-tagger model: WordNet's multi-word nouns first (longest
    /// match), single tokens only when their most frequent use is as a noun (semantic-concordance
    /// counts; see `Labeller.isMostlyNoun`), and the sense chosen for pictures: the most frequent sense in a concrete
    /// lexicographer file, keyed by the synset whatever its head lemma.
    case nouns
}

/// One synset found in a caption, with why it was taken.
public struct CaptionLabel: Sendable, Equatable {
    /// The synset.
    public var synset: SynsetID
    /// The caption text that produced it (a token, or underscore-joined tokens).
    public var text: String
    /// The lemma it was looked up as.
    public var lemma: String
    /// Why this sense: "first sense, head lemma", "first concrete sense (noun.animal), sense 2
    /// of 7", ...
    public var reason: String
}

/// Labels captions with WordNet noun synsets. One labeller per thread: it memoises token
/// results (captions repeat their words), so it is not shared; the database is.
public final class Labeller {
    /// The database.
    public let database: WordNetDatabase
    /// The rule applied.
    public let mode: LabelMode
    /// Longest multi-word lemma tried in `nouns` mode, in words.
    public let maximumPhraseWords = 4

    private var memo: TokenMemo
    private var phraseMemo: [String: String?] = [:]  // joined words -> noun lemma or nil
    private var text: [UInt8] = []
    private var ranges: [Range<Int>] = []
    private let phrasePrefixes: Set<String>

    /// A labeller over `database` applying `mode`.
    public convenience init(database: WordNetDatabase, mode: LabelMode = .corenet) {
        self.init(database: database, mode: mode, memoArenaBytes: TokenMemo.defaultArenaBytes)
    }

    /// A labeller whose token memo keeps at most `memoArenaBytes` bytes of token text before
    /// starting afresh (tests set it small to exercise the resets).
    init(database: WordNetDatabase, mode: LabelMode, memoArenaBytes: Int) {
        self.database = database
        self.mode = mode
        memo = TokenMemo(arenaBytes: memoArenaBytes)
        // First words of multi-word noun lemmas, to try phrases only where one can start.
        var prefixes = Set<String>()
        if mode == .nouns {
            for lemma in database.nounIndex.keys where lemma.contains("_") {
                if let first = lemma.split(separator: "_").first { prefixes.insert(String(first)) }
            }
        }
        phrasePrefixes = prefixes
    }

    /// The synsets of `caption`, in order of first appearance, duplicates collapsed. The fast
    /// path: it works on the caption's bytes and memoises each distinct token's result.
    public func synsets(_ caption: String) -> [SynsetID] {
        CaptionText.cleanBytes(caption, into: &text)
        Tokenizer.tokenize(text, into: &ranges)
        var out: [SynsetID] = []
        var i = 0
        while i < ranges.count {
            let value = memoised(ranges[i])
            if value & TokenMemo.phraseStart != 0, let (label, length) = phrase(at: i) {
                if !out.contains(label.synset) { out.append(label.synset) }
                i += length
                continue
            }
            let id = value & TokenMemo.synsetMask
            if id != TokenMemo.synsetMask, !out.contains(id) { out.append(id) }
            i += 1
        }
        return out
    }

    /// The memo entry of the token at `range` of `text`, computed on first sight.
    private func memoised(_ range: Range<Int>) -> Int32 {
        text.withUnsafeBufferPointer { b in
            let key = UnsafeBufferPointer(rebasing: b[range])
            let hash = TokenMemo.hash(key)
            if let value = memo.find(key, hash: hash) { return value }
            let word = String(decoding: key, as: UTF8.self)
            var value = label(word)?.synset ?? TokenMemo.synsetMask
            if mode == .nouns, !Self.stopWords.contains(word), phrasePrefixes.contains(word) {
                value |= TokenMemo.phraseStart
            }
            memo.insert(key, hash: hash, value: value)
            return value
        }
    }

    /// The token at `i` as a String.
    private func token(_ i: Int) -> String {
        String(decoding: text[ranges[i]], as: UTF8.self)
    }

    /// The labels of `caption` with their reasons, in order of first appearance, duplicates
    /// collapsed (no memo: for inspection, not for bulk labelling).
    public func labels(_ caption: String) -> [CaptionLabel] {
        CaptionText.cleanBytes(caption, into: &text)
        Tokenizer.tokenize(text, into: &ranges)
        var out: [CaptionLabel] = []
        func add(_ label: CaptionLabel) {
            if !out.contains(where: { $0.synset == label.synset }) { out.append(label) }
        }
        var i = 0
        while i < ranges.count {
            if mode == .nouns, let (label, length) = phrase(at: i) {
                add(label)
                i += length
                continue
            }
            if let label = label(token(i)) { add(label) }
            i += 1
        }
        return out
    }

    /// A multi-word lemma starting at token `i`, longest first.
    private func phrase(at i: Int) -> (CaptionLabel, Int)? {
        let first = token(i)
        // Not from a function word: "the street" is not The Street.
        guard !Self.stopWords.contains(first), phrasePrefixes.contains(first) else { return nil }
        var length = min(maximumPhraseWords, ranges.count - i)
        while length >= 2 {
            let words = (i..<(i + length)).map(token)
            if words.allSatisfy({ $0.first?.isLetter ?? false }) {
                let text = words.joined(separator: "_")
                let lemma: String?
                if let known = phraseMemo[text] {
                    lemma = known
                } else {
                    let candidate = database.lemmatize(text, as: .noun)
                    lemma = database.contains(candidate, as: .noun) ? candidate : nil
                    if phraseMemo.count > 200_000 { phraseMemo.removeAll(keepingCapacity: true) }
                    phraseMemo[text] = .some(lemma)
                }
                if let lemma {
                    let (synset, reason) = pictureSense(lemma)
                    return (CaptionLabel(synset: synset, text: text, lemma: lemma, reason: reason), length)
                }
            }
            length -= 1
        }
        return nil
    }

    /// The label of one token under the mode's rule.
    private func label(_ token: String) -> CaptionLabel? {
        switch mode {
        case .corenet: return corenetLabel(token)
        case .nouns: return nounsLabel(token)
        }
    }

    private func corenetLabel(_ word: String) -> CaptionLabel? {
        let lemma = database.lemmatize(word, as: .noun)
        guard let first = database.nounSynsets(lemma).first else { return nil }
        guard database.headLemma(first) == lemma else { return nil }
        return CaptionLabel(synset: first, text: word, lemma: lemma, reason: "first sense, head lemma")
    }

    private func nounsLabel(_ word: String) -> CaptionLabel? {
        guard let c = word.first, c.isLetter, !Self.stopWords.contains(word) else { return nil }
        let lemma = database.lemmatize(word, as: .noun)
        guard database.contains(lemma, as: .noun) else { return nil }
        guard isMostlyNoun(word, nounLemma: lemma) else { return nil }
        let (synset, reason) = pictureSense(lemma)
        return CaptionLabel(synset: synset, text: word, lemma: lemma, reason: reason)
    }

    /// Whether `word` is used as a noun in captions, judged by WordNet's semantic-concordance
    /// frequencies (cntlist.rev) of its lemma in each part of speech: a noun when it is tagged
    /// as a noun at least as often as as a verb, adjective or adverb ("dog" stays, "black" and
    /// "runs" drop out). Text underrates picture nouns that double as verbs (bear, duck, seal,
    /// watch: tagged mostly as verbs), so a word whose most frequent noun sense is concrete is
    /// kept unless its adjective use outweighs its noun use (colours stay out).
    func isMostlyNoun(_ word: String, nounLemma: String) -> Bool {
        let noun = database.usageCounts(nounLemma).noun
        var verb: UInt32 = 0, adjective: UInt32 = 0, adverb: UInt32 = 0
        for pos in [PartOfSpeech.verb, .adjective, .adverb] {
            let lemma = database.lemmatize(word, as: pos)
            guard database.contains(lemma, as: pos) else { continue }
            let counts = database.usageCounts(lemma)
            switch pos {
            case .verb: verb = counts.verb
            case .adjective: adjective = counts.adjective
            case .adverb: adverb = counts.adverb
            case .noun: break
            }
        }
        if noun >= verb && noun >= adjective && noun >= adverb { return true }
        guard let first = database.nounSynsets(nounLemma).first else { return false }
        return Self.concreteFiles.contains(database.lexicographerFileNumber(first)) && adjective <= noun
    }

    /// Lexicographer files of things a picture can show.
    /// animal, artifact, body, food, object, plant, shape, substance.
    public static let concreteFiles: Set<Int> = [5, 6, 8, 13, 17, 20, 25, 27]

    /// The sense of `lemma` for pictures: the most frequent sense in a concrete lexicographer
    /// file that the word names among its first three lemmas, else the most frequent sense.
    func pictureSense(_ lemma: String) -> (SynsetID, String) {
        let senses = database.nounSynsets(lemma)
        precondition(!senses.isEmpty, "pictureSense needs a noun lemma")
        if senses.count == 1 { return (senses[0], "only sense (\(database.lexicographerFile(senses[0])))") }
        // A concrete sense counts only where the word is one of its first three names: shape's
        // first concrete sense is the human body, where "shape" is the ninth synonym.
        for (n, s) in senses.enumerated()
        where Self.concreteFiles.contains(database.lexicographerFileNumber(s))
            && database.lemmas(s).prefix(3).contains(where: { $0.lowercased() == lemma })
        {
            let file = database.lexicographerFile(s)
            return (s, n == 0 ? "first sense, concrete (\(file))"
                : "first concrete sense (\(file)), sense \(n + 1) of \(senses.count)")
        }
        return (senses[0], "first sense (\(database.lexicographerFile(senses[0]))), no concrete sense it names")
    }

    /// Function words a POS tagger would never tag as nouns, though WordNet lists some of them
    /// as nouns ("a" is ampere, "it" information technology, "us" the United States).
    static let stopWords: Set<String> = [
        "a", "an", "the", "and", "or", "but", "nor", "so", "yet", "of", "in", "on", "at", "to",
        "for", "from", "by", "with", "without", "about", "above", "below", "under", "over",
        "into", "onto", "out", "up", "down", "off", "through", "between", "among", "against",
        "during", "before", "after", "near", "around", "behind", "beside", "across", "along",
        "i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her",
        "it", "its", "they", "them", "their", "this", "that", "these", "those", "who", "whom",
        "whose", "which", "what", "where", "when", "why", "how", "is", "are", "was", "were",
        "be", "been", "being", "am", "do", "does", "did", "have", "has", "had", "will", "would",
        "can", "could", "shall", "should", "may", "might", "must", "not", "no", "yes", "as",
        "if", "than", "then", "there", "here", "all", "any", "some", "each", "every", "both",
        "few", "more", "most", "other", "such", "only", "own", "same", "too", "very", "just",
        "also", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "'s", "n't", "'re", "'ll", "'ve", "'m", "'d", "via", "per", "vs",
    ]
}

/// Token bytes -> memoised label (synset in the low bits, `phraseStart` flag), in an
/// open-addressing table keyed by the bytes themselves: no String is made for a token seen
/// before, and FNV-1a hashing of a short token is cheaper than SipHash. The token bytes live in
/// one arena indexed by Int32: the memo starts afresh before the arena would pass `arenaBytes`
/// (at most Int32.max), and a token longer than that is not memoised, so endless distinct long
/// tokens bound its memory instead of overflowing the indices.
struct TokenMemo {
    /// Low bits of a value: the synset, or all ones for "no label".
    static let synsetMask: Int32 = 0x3FFF_FFFF
    /// Flag: the token can start a multi-word lemma (nouns mode).
    static let phraseStart: Int32 = 0x4000_0000
    /// Entries kept before the memo starts afresh (bounds memory on endless vocabularies).
    static let maximumEntries = 500_000
    /// The default arena size: 64 MiB of token text per labeller (a memo of 500,000 ordinary
    /// tokens takes about 4 MiB).
    static let defaultArenaBytes = 64 << 20

    /// Token bytes kept before the memo starts afresh.
    let arenaBytes: Int

    private var slots = [Int32](repeating: 0, count: 1 << 14)  // entry + 1, 0 = empty
    private var hashes: [UInt64] = []
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private var values: [Int32] = []
    private var arena: [UInt8] = []

    /// An empty memo keeping at most `arenaBytes` bytes of tokens (clamped to 1...Int32.max).
    init(arenaBytes: Int = defaultArenaBytes) {
        self.arenaBytes = min(max(1, arenaBytes), Int(Int32.max))
    }

    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        FNV1a.hash(key)
    }

    func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int32? {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = Int(slots[slot]) - 1
            if entry < 0 { return nil }
            if hashes[entry] == hash && Int(lengths[entry]) == key.count {
                let start = Int(starts[entry])
                if arena[start..<(start + key.count)].elementsEqual(key) { return values[entry] }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Memoises `value` for `key` (a token longer than `arenaBytes` is not memoised).
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, value: Int32) {
        guard key.count <= arenaBytes else { return }
        if values.count >= Self.maximumEntries || arena.count + key.count > arenaBytes {
            self = TokenMemo(arenaBytes: arenaBytes)
        }
        if (values.count + 1) * 2 > slots.count { grow() }
        let entry = values.count
        hashes.append(hash)
        starts.append(Int32(arena.count))
        lengths.append(Int32(key.count))
        values.append(value)
        arena.append(contentsOf: key)
        place(entry, hash)
    }

    private mutating func place(_ entry: Int, _ hash: UInt64) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(entry + 1)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        for entry in 0..<values.count { place(entry, hashes[entry]) }
    }
}
