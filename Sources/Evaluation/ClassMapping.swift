import Foundation
import Support
import WordNet

/// How a dataset class reached rows of the pretraining head.
public enum MappingRoute: String, Sendable, Codable, CaseIterable {
    /// The class's synset is in the vocabulary: its own row.
    case direct
    /// Not in the vocabulary, but synsets below it are (hyponyms, transitively): their rows,
    /// combined when scoring.
    case hyponyms
    /// Neither it nor anything below it: the nearest vocabulary synset above it (hypernym).
    case hypernym
    /// No WordNet noun sense, or nothing related in the vocabulary.
    case unmapped
}

/// A dataset class resolved to head rows.
public struct ClassMapping: Sendable, Equatable {
    /// The class as given (a name such as "teddy bear", or a wnid).
    public var query: String
    /// The synset chosen for the class (nil when the name has no noun sense).
    public var synset: SynsetID?
    /// Which route gave the rows.
    public var route: MappingRoute
    /// Head rows (class indices of the vocabulary), ascending.
    public var rows: [Int]
    /// Steps up the hierarchy to the hypernym row (route `.hypernym` only).
    public var hypernymDistance: Int?
    /// Other noun senses of the name that have a direct row too (an ambiguous choice).
    public var alternatives: [SynsetID]
    /// Why this sense and route, in words.
    public var note: String
    /// Queries of other classes given together that use at least one of the same rows (they
    /// cannot be told apart on those rows).
    public var sharedWith: [String] = []
    /// When the whole name is not a WordNet noun ("striped sports car", "baby elephant"): the
    /// part of it that was mapped instead, its head noun phrase ("sports car", "elephant").
    public var headNoun: String?
}

/// Maps dataset class names or wnids to rows of a vocabulary head through WordNet: names go
/// through morphy (plurals) and multi-word lemmas to all their noun senses; the sense used is
/// one present in the vocabulary, preferring senses the name heads (turtle the reptile, whose
/// first lemma is "turtle", over turtleneck, where it is a synonym), then concrete senses, then
/// WordNet's order. A class whose senses are all absent falls back to the vocabulary synsets
/// below its first sense in that order, else to the nearest one above it.
public struct ClassMapper: Sendable {
    /// The vocabulary whose rows are mapped to.
    public let vocabulary: Vocabulary
    private let database: WordNetDatabase
    private let rowOf: [SynsetID: Int]
    private let userMap: [String: String]

    /// A mapper onto `vocabulary` (its synsets looked up in `database`); `userMap` sends class
    /// names (matched exactly, then case-insensitively) to the wnids the user chose.
    public init(vocabulary: Vocabulary, database: WordNetDatabase, userMap: [String: String] = [:]) {
        self.vocabulary = vocabulary
        self.database = database
        var m: [String: String] = [:]
        for (k, v) in userMap { m[k] = v; m[k.lowercased()] = m[k.lowercased()] ?? v }
        self.userMap = m
        var rows: [SynsetID: Int] = [:]
        for (i, entry) in vocabulary.entries.enumerated() {
            if let id = database.synset(wnid: entry.wnid) { rows[id] = i }
        }
        rowOf = rows
    }

    /// The noun senses a class name or wnid can denote, in preference order, with the lemma
    /// matched. A multi-word name WordNet lacks falls back to its head noun phrase: the part
    /// before "of" ("cup of tea" → "cup"), then the longest trailing run of words that is a
    /// noun ("striped sports car" → "sports car" → "car"); `headNoun` says which was used.
    func senses(_ query: String) -> (senses: [SynsetID], lemma: String?, headNoun: String?) {
        var trimmed = query.trimmingCharacters(in: .whitespacesAndNewlines)
        if let chosen = userMap[trimmed] ?? userMap[trimmed.lowercased()] { trimmed = chosen }
        if let id = Self.wnid(trimmed).flatMap({ database.synset(wnid: $0) }) { return ([id], nil, nil) }
        let words = trimmed.lowercased().split(whereSeparator: { $0 == " " || $0 == "_" }).map(String.init)
        guard !words.isEmpty else { return ([], nil, nil) }
        let whole = nounSenses(words.joined(separator: "_"))
        if !whole.senses.isEmpty || words.count == 1 { return (whole.senses, whole.lemma, nil) }
        var phrase = words
        if let of = words.firstIndex(of: "of"), of > 0 { phrase = Array(words[..<of]) }
        for start in (phrase.count == words.count ? 1 : 0)..<phrase.count {
            let found = nounSenses(phrase[start...].joined(separator: "_"))
            if !found.senses.isEmpty {
                return (found.senses, found.lemma, phrase[start...].joined(separator: " "))
            }
        }
        return ([], nil, nil)
    }

    /// The noun senses of one lemma form (then of its morphy base forms), ranked.
    private func nounSenses(_ form: String) -> (senses: [SynsetID], lemma: String?) {
        var lemmas = [form]
        for base in database.morphy(form, as: .noun) where !lemmas.contains(base) { lemmas.append(base) }
        for lemma in lemmas {
            let found = database.nounSynsets(lemma)
            if found.isEmpty { continue }
            func rank(_ s: SynsetID) -> Int {
                let names = database.lemmas(s).map { $0.lowercased() }
                let concrete = Labeller.concreteFiles.contains(database.lexicographerFileNumber(s))
                if names.first == lemma { return concrete ? 0 : 1 }
                return concrete ? 2 : 3
            }
            let ordered = found.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
            return (ordered, lemma)
        }
        return ([], nil)
    }

    /// A wnid in `n` + digits form (padded or corenet's unpadded), normalised to 8 digits.
    static func wnid(_ text: String) -> String? {
        guard text.count >= 2, text.count <= 9, text.first == "n", text.dropFirst().allSatisfy(\.isASCII), text.dropFirst().allSatisfy(\.isNumber) else { return nil }
        return Vocabulary.padded(text)
    }

    /// Resolves one class.
    public func map(_ query: String) -> ClassMapping {
        let (senses, lemma, headNoun) = senses(query)
        var mapping = map(query, senses: senses, lemma: lemma)
        if let headNoun, !senses.isEmpty {
            mapping.headNoun = headNoun
            mapping.note = "no WordNet noun '\(query)': its head noun '\(headNoun)'; " + mapping.note
        }
        return mapping
    }

    private func map(_ query: String, senses: [SynsetID], lemma: String?) -> ClassMapping {
        guard let first = senses.first else {
            return ClassMapping(query: query, synset: nil, route: .unmapped, rows: [], hypernymDistance: nil, alternatives: [],
                                note: Self.wnid(query) != nil ? "no such synset in WordNet 3.0" : "no noun sense in WordNet")
        }
        let direct = senses.filter { rowOf[$0] != nil }
        if let chosen = direct.first {
            let sense = senses.firstIndex(of: chosen)!
            return ClassMapping(
                query: query, synset: chosen, route: .direct, rows: [rowOf[chosen]!], hypernymDistance: nil,
                alternatives: Array(direct.dropFirst()),
                note: describe(chosen, lemma: lemma, order: sense, of: senses.count) + (direct.count > 1 ? "; \(direct.count - 1) other sense(s) also in the vocabulary" : ""))
        }
        for s in senses {
            let below = hyponymRows(s)
            if !below.isEmpty {
                return ClassMapping(
                    query: query, synset: s, route: .hyponyms, rows: below, hypernymDistance: nil, alternatives: [],
                    note: describe(s, lemma: lemma, order: senses.firstIndex(of: s)!, of: senses.count) + "; not in the vocabulary: \(below.count) synset(s) below it are")
            }
        }
        if let (row, distance) = hypernymRow(first) {
            return ClassMapping(
                query: query, synset: first, route: .hypernym, rows: [row], hypernymDistance: distance, alternatives: [],
                note: describe(first, lemma: lemma, order: 0, of: senses.count) + "; nothing at or below it in the vocabulary: \(vocabulary.entries[row].lemmas.first ?? vocabulary.entries[row].wnid), \(distance) step(s) up")
        }
        return ClassMapping(query: query, synset: first, route: .unmapped, rows: [], hypernymDistance: nil, alternatives: [],
                            note: describe(first, lemma: lemma, order: 0, of: senses.count) + "; nothing related in the vocabulary")
    }

    /// Resolves several classes and marks the ones that share rows.
    public func map(_ queries: [String]) -> [ClassMapping] {
        var mappings = queries.map { map($0) }
        var users: [Int: [Int]] = [:]
        for (i, m) in mappings.enumerated() { for r in m.rows { users[r, default: []].append(i) } }
        for i in mappings.indices {
            var shared = Set<Int>()
            for r in mappings[i].rows { for j in users[r] ?? [] where j != i { shared.insert(j) } }
            mappings[i].sharedWith = shared.sorted().map { mappings[$0].query }
        }
        return mappings
    }

    private func describe(_ s: SynsetID, lemma: String?, order: Int, of count: Int) -> String {
        let name = "\(database.wnid(s)) \(database.lemmas(s).first ?? "") (\(database.lexicographerFile(s)))"
        guard let lemma else { return "wnid \(name)" }
        return count == 1 ? "\(lemma): only sense \(name)" : "\(lemma): \(name), preference \(order + 1) of \(count) senses (WordNet sense \(database.senseNumber(s)))"
    }

    /// Vocabulary rows of every synset below `s` (transitively), ascending.
    func hyponymRows(_ s: SynsetID) -> [Int] {
        var rows = Set<Int>()
        var seen: Set<SynsetID> = [s]
        var stack = Array(database.hyponyms(s))
        while let next = stack.popLast() {
            guard seen.insert(next).inserted else { continue }
            if let r = rowOf[next] { rows.insert(r) }
            stack.append(contentsOf: database.hyponyms(next))
        }
        return rows.sorted()
    }

    /// The nearest vocabulary synset above `s` (breadth-first over hypernyms; among equally
    /// near ones the most frequent class, i.e. the lowest row).
    func hypernymRow(_ s: SynsetID) -> (row: Int, distance: Int)? {
        var frontier: [SynsetID] = [s]
        var seen: Set<SynsetID> = [s]
        var distance = 0
        while !frontier.isEmpty {
            distance += 1
            var next: [SynsetID] = []
            for f in frontier { for h in database.hypernyms(f) where seen.insert(h).inserted { next.append(h) } }
            if let row = next.compactMap({ rowOf[$0] }).min() { return (row, distance) }
            frontier = next
        }
        return nil
    }
}

extension ClassMapper {
    /// The largest class map read: 64 MiB (a line per class; every WordNet noun synset named
    /// takes a few MiB). A FIFO, device or larger file is refused.
    public static let maximumUserMapBytes = 64 << 20

    /// Reads a user's class map: TSV lines `name<TAB>wnid` (wnid padded or not); blank lines and
    /// lines starting with # are skipped. Throws naming the file and line for anything else.
    public static func readUserMap(path: String, database: WordNetDatabase) throws -> [String: String] {
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(path, maxBytes: maximumUserMapBytes) } catch let error as FileIOError {
            throw EvaluationError(path: path, problem: "cannot read the class map: \(error.problem)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw EvaluationError(path: path, problem: "cannot read the class map as UTF-8 text")
        }
        var map: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let wnid = ClassMapper.wnid(parts[1]), database.synset(wnid: wnid) != nil else {
                throw EvaluationError(path: path, problem: "line \(n + 1): expected name<TAB>wnid of a WordNet 3.0 noun synset")
            }
            map[parts[0]] = wnid
        }
        return map
    }
}
