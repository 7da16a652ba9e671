import Foundation

// MARK: - Samples

/// One webdataset sample: the consecutive members of a shard that share a key, by extension.
///
/// `a/b/000123.jpg`, `a/b/000123.txt` and `a/b/000123.json` make the sample with key
/// `a/b/000123` and files `jpg`, `txt`, `json`.
public struct ShardSample: Sendable, Equatable {
    /// The members' common path up to the first dot of the last path component (the directory
    /// prefix kept).
    public var key: String
    /// The shard the sample was read from.
    public var shard: String
    /// The members' contents by extension (the rest of the name after the key's dot,
    /// lower-cased: `jpg`, `txt`, `json`, `b.c.jpg`, ...).
    public var files: [String: [UInt8]]
    /// Byte offset in the shard of the first member's first header block.
    public var offset: Int

    /// A sample from its parts.
    public init(key: String, shard: String, files: [String: [UInt8]], offset: Int = 0) {
        self.key = key
        self.shard = shard
        self.files = files
        self.offset = offset
    }

    /// The image extensions `imageBytes` looks for, in order of preference.
    public static let imageExtensions = [
        "jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pbm", "pnm",
    ]

    /// The sample's image: the first of `imageExtensions` present, with its extension (as stored
    /// in `files`). An extension matches exactly or as the last part of a dotted extension
    /// (`b.c.jpg` is a jpg, as webdataset's decoders see it); exact matches win, then dotted ones
    /// in sorted order. Nil when there is none. The bytes are not checked: the decoder decides by
    /// their content.
    public var imageBytes: (fileExtension: String, bytes: [UInt8])? {
        for candidate in ShardSample.imageExtensions {
            if let found = file(candidate) { return found }
        }
        return nil
    }

    /// The caption: the `txt` member (or the first `*.txt` in sorted order) decoded as UTF-8,
    /// invalid bytes replaced by U+FFFD; nil when there is none.
    public var caption: String? {
        file("txt").map { String(decoding: $0.bytes, as: UTF8.self) }
    }

    /// The metadata: the bytes of the `json` member (or the first `*.json` in sorted order); nil
    /// when there is none. Not parsed.
    public var metadata: [UInt8]? { file("json")?.bytes }

    /// The sample's class for classification, webdataset's way: the `cls` member's text (first
    /// line, trimmed), else the `json` member's `"label"`, `"cls"` or `"class"` field (text or
    /// number; members over 1 MiB are not parsed); nil when there is none.
    public var classLabel: String? {
        if let cls = file("cls")?.bytes {
            let text = String(decoding: cls.prefix(4096), as: UTF8.self)
            let first = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return first.isEmpty ? nil : first
        }
        guard let json = metadata, json.count <= 1 << 20,
            let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any]
        else { return nil }
        for key in ["label", "cls", "class"] {
            if let s = object[key] as? String, !s.trimmingCharacters(in: .whitespaces).isEmpty {
                return s.trimmingCharacters(in: .whitespaces)
            }
            if let n = object[key] as? NSNumber, let i = Int(exactly: n.doubleValue) { return String(i) }
        }
        return nil
    }

    /// The member with extension `ext`, exactly, else the first dotted extension ending in
    /// `.ext` in sorted order.
    private func file(_ ext: String) -> (fileExtension: String, bytes: [UInt8])? {
        if let bytes = files[ext] { return (ext, bytes) }
        let suffix = "." + ext
        guard let dotted = files.keys.filter({ $0.hasSuffix(suffix) }).min() else { return nil }
        return (dotted, files[dotted]!)
    }

    /// Webdataset's split of a member name (its `base_plus_ext`): the key is the path up to the
    /// first dot of the last path component, directory prefix kept; the extension is the rest
    /// after that dot, lower-cased. Nil for names whose last component has no dot or starts with a
    /// dot (`.hidden`, `dir/`; webdataset's regular expression would make `dir/.hidden` the key
    /// `dir/` with extension `hidden`, a quirk not kept here).
    ///
    /// `dir/a.b.c.JPG` → (`dir/a`, `b.c.jpg`).
    public static func keyAndExtension(of name: String) -> (key: String, fileExtension: String)? {
        let utf8 = name.utf8
        let componentStart = utf8.lastIndex(of: UInt8(ascii: "/")).map { utf8.index(after: $0) } ?? utf8.startIndex
        guard let dot = utf8[componentStart...].firstIndex(of: UInt8(ascii: ".")), dot > componentStart else {
            return nil
        }
        let key = String(name[..<dot])
        let ext = String(name[name.index(after: dot)...]).lowercased()
        return (key, ext)
    }
}

/// Why `ShardSampleReader` skipped a member.
public enum ShardSkipReason: String, Sendable, Hashable, CaseIterable {
    /// The last path component has no dot: no key/extension split.
    case noExtension = "no extension"
    /// The last path component starts with `__` (webdataset's metadata members).
    case metadata = "metadata member"
    /// The last path component starts with a dot.
    case hidden = "hidden file"
    /// A second member with the same key and extension in one sample (the first is kept).
    case duplicateExtension = "duplicate extension"
}

/// A member that `ShardSampleReader` skipped.
public struct SkippedMember: Sendable, Equatable {
    /// The member's name.
    public var name: String
    /// Byte offset of the member in the shard.
    public var offset: Int
    /// Why it was skipped.
    public var reason: ShardSkipReason
}

/// Groups the members of a tar shard into webdataset samples: consecutive members with the same
/// key (`ShardSample.keyAndExtension`) form one sample, as webdataset's `group_by_keys` does.
/// Members without a key (no dot), webdataset metadata (`__*`), hidden files (`.*`) and repeated
/// extensions are skipped and counted.
///
/// Errors of the tar reader pass through `next()`. A member-level error (`isFatal` false) is
/// thrown at once and the sample being assembled goes on (it lacks the failed member). A fatal
/// error is thrown after the sample being assembled has been returned, so a caller that stops at
/// the first fatal error loses no sample whose members were read intact; after it, `next()`
/// returns nil, unless the tar reader resynchronises. Not thread-safe.
public final class ShardSampleReader {
    /// The tar reader underneath.
    public let reader: TarReader
    /// The shard name put in each sample.
    public let shard: String
    /// Skipped members by reason.
    public private(set) var skippedCounts: [ShardSkipReason: Int] = [:]
    /// The first `skippedMembersKept` skipped members (the counts cover all of them).
    public private(set) var skippedMembers: [SkippedMember] = []
    /// How many skipped members `skippedMembers` keeps.
    public static let skippedMembersKept = 1000

    private var current: ShardSample?
    /// A fatal error held back while the sample assembled before it is returned.
    private var deferredError: TarError?

    /// Samples from the members `reader` returns; `shard` defaults to the reader's path.
    public init(reader: TarReader, shard: String? = nil) {
        self.reader = reader
        self.shard = shard ?? reader.path
    }

    /// Samples from the tar file at `path` (see `TarReader.init` for the options).
    public convenience init(
        path: String, memberSizeLimit: Int = TarReader.defaultMemberSizeLimit, resynchronize: Bool = false
    ) throws {
        self.init(reader: try TarReader(path: path, memberSizeLimit: memberSizeLimit, resynchronize: resynchronize))
    }

    /// The total number of skipped members.
    public var skippedCount: Int { skippedCounts.values.reduce(0, +) }

    /// The next sample, or nil at the end of the shard. Throws the tar reader's `TarError`s.
    public func next() throws -> ShardSample? {
        while true {
            if let error = deferredError {
                deferredError = nil
                throw error
            }
            let next: TarMember?
            do {
                next = try reader.next()
            } catch let error as TarError where error.isFatal && current != nil {
                deferredError = error
                defer { current = nil }
                return current
            }
            guard let member = next else {
                defer { current = nil }
                return current
            }
            let component = member.name.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
            if component.hasPrefix("__") {
                skip(member, .metadata)
                continue
            }
            if component.hasPrefix(".") {
                skip(member, .hidden)
                continue
            }
            guard let (key, ext) = ShardSample.keyAndExtension(of: member.name) else {
                skip(member, .noExtension)
                continue
            }
            if current?.key == key {
                if current!.files[ext] != nil {
                    skip(member, .duplicateExtension)
                } else {
                    current!.files[ext] = member.data
                }
                continue
            }
            let finished = current
            current = ShardSample(key: key, shard: shard, files: [ext: member.data], offset: member.offset)
            if let finished { return finished }
        }
    }

    private func skip(_ member: TarMember, _ reason: ShardSkipReason) {
        skippedCounts[reason, default: 0] += 1
        if skippedMembers.count < ShardSampleReader.skippedMembersKept {
            skippedMembers.append(SkippedMember(name: member.name, offset: member.offset, reason: reason))
        }
    }
}

// MARK: - Shard patterns

/// A shard pattern that cannot be expanded.
public struct ShardPatternError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The pattern as given.
    public let pattern: String
    /// What is wrong.
    public let message: String

    /// `shard pattern "P": message`.
    public var description: String { "shard pattern \"\(pattern)\": \(message)" }
}

/// The most paths one pattern may expand to.
public let shardPatternLimit = 1_000_000

/// Expands the braces of one shard pattern, as webdataset (the `braceexpand` package) and bash
/// do: `{a,b}` lists alternatives (which may hold braces themselves), `{0..9}` and `{9..0}` are
/// inclusive integer ranges, `{0..98..2}` has a step, `{a..e}` is a range of letters. A range is
/// zero-padded to the width of the wider endpoint when an endpoint has a leading zero
/// (`{00000..00099}` → `00000` ... `00099`; `{0..10}` is not padded). Several groups expand left
/// to right, the leftmost varying slowest. A pattern without braces is itself.
///
/// Throws `ShardPatternError` for an empty pattern, unmatched braces, a group that is neither a
/// list nor a range (`{a}`, `{5..1x}`, `{}`), a zero step, or more than `shardPatternLimit`
/// paths.
public func expandShardPattern(_ pattern: String) throws -> [String] {
    guard !pattern.isEmpty else { throw ShardPatternError(pattern: pattern, message: "empty pattern") }
    return try BraceExpander(pattern: pattern).expand(Array(pattern)[...])
}

/// Expands a list of shard patterns separated by `::` (webdataset's separator) or whitespace
/// (outside braces), each by `expandShardPattern`, concatenated in order.
///
/// `"a/{0..1}.tar::b/x.tar c.tar"` → `a/0.tar a/1.tar b/x.tar c.tar`. Throws `ShardPatternError`
/// when an element is malformed or the list names nothing.
public func expandShardList(_ list: String) throws -> [String] {
    var patterns: [String] = []
    for part in list.components(separatedBy: "::") {
        var depth = 0
        var word = ""
        for character in part {
            if character == "{" { depth += 1 }
            if character == "}" { depth -= 1 }
            if character.isWhitespace && depth <= 0 {
                if !word.isEmpty { patterns.append(word) }
                word = ""
            } else {
                word.append(character)
            }
        }
        if !word.isEmpty { patterns.append(word) }
    }
    guard !patterns.isEmpty else { throw ShardPatternError(pattern: list, message: "no shards named") }
    var paths: [String] = []
    for pattern in patterns {
        paths += try expandShardPattern(pattern)
        guard paths.count <= shardPatternLimit else {
            throw ShardPatternError(pattern: list, message: "expands to more than \(shardPatternLimit) paths")
        }
    }
    return paths
}

private struct BraceExpander {
    let pattern: String

    func fail(_ message: String) -> ShardPatternError { ShardPatternError(pattern: pattern, message: message) }

    /// Expands a sequence of literal text and brace groups.
    func expand(_ text: ArraySlice<Character>) throws -> [String] {
        var results = [""]
        var literal = ""
        var i = text.startIndex
        func flushLiteral() {
            guard !literal.isEmpty else { return }
            results = results.map { $0 + literal }
            literal = ""
        }
        while i < text.endIndex {
            let character = text[i]
            if character == "}" { throw fail("unmatched \"}\"") }
            guard character == "{" else {
                literal.append(character)
                i += 1
                continue
            }
            var depth = 0
            var close: Int?
            var commas: [Int] = []
            for j in i..<text.endIndex {
                if text[j] == "{" { depth += 1 }
                if text[j] == "}" {
                    depth -= 1
                    if depth == 0 {
                        close = j
                        break
                    }
                }
                if text[j] == "," && depth == 1 { commas.append(j) }
            }
            guard let close else { throw fail("unmatched \"{\"") }
            let inside = text[(i + 1)..<close]
            var alternatives: [String] = []
            if commas.isEmpty {
                alternatives = try range(String(inside))
            } else {
                var start = i + 1
                for end in commas + [close] {
                    alternatives += try expand(text[start..<end])
                    start = end + 1
                }
            }
            flushLiteral()
            guard results.count.multipliedReportingOverflow(by: alternatives.count).partialValue <= shardPatternLimit,
                !results.count.multipliedReportingOverflow(by: alternatives.count).overflow
            else { throw fail("expands to more than \(shardPatternLimit) paths") }
            results = results.flatMap { prefix in alternatives.map { prefix + $0 } }
            i = close + 1
        }
        flushLiteral()
        return results
    }

    /// `a..b` or `a..b..step`, integers or single letters.
    func range(_ text: String) throws -> [String] {
        let parts = text.components(separatedBy: "..")
        guard parts.count == 2 || parts.count == 3 else {
            throw fail(text.isEmpty ? "empty braces" : "\"{\(text)}\" is neither a comma list nor a range a..b")
        }
        var step = 1
        if parts.count == 3 {
            guard let value = Int(parts[2]), value != 0, value != Int.min else {
                throw fail("bad step \"\(parts[2])\" in \"{\(text)}\"")
            }
            step = abs(value)
        }
        if let first = Int(parts[0]), let last = Int(parts[1]), isInteger(parts[0]), isInteger(parts[1]) {
            let (distance, overflow) = last.subtractingReportingOverflow(first)
            guard !overflow, distance.magnitude / UInt(step) < UInt(shardPatternLimit) else {
                throw fail("\"{\(text)}\" expands to more than \(shardPatternLimit) paths")
            }
            let padded = [parts[0], parts[1]].contains { hasLeadingZero($0) }
            let width = padded ? max(parts[0].count, parts[1].count) : 0
            let values =
                first <= last
                ? Array(stride(from: first, through: last, by: step))
                : Array(stride(from: first, through: last, by: -step))
            return values.map { pad($0, width: width) }
        }
        if let a = singleLetter(parts[0]), let b = singleLetter(parts[1]) {
            let values =
                a <= b ? Array(stride(from: a, through: b, by: step)) : Array(stride(from: a, through: b, by: -step))
            return values.map { String(Character(Unicode.Scalar($0)!)) }
        }
        throw fail("bad range \"{\(text)}\": the ends must be two integers or two letters")
    }

    private func isInteger(_ text: String) -> Bool {
        let digits = text.hasPrefix("-") ? text.dropFirst() : text[...]
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    private func hasLeadingZero(_ text: String) -> Bool {
        let digits = text.hasPrefix("-") ? text.dropFirst() : text[...]
        return digits.count > 1 && digits.hasPrefix("0")
    }

    private func singleLetter(_ text: String) -> Int? {
        guard text.count == 1, let scalar = text.unicodeScalars.first, scalar.isASCII,
            (scalar.value >= 65 && scalar.value <= 90) || (scalar.value >= 97 && scalar.value <= 122)
        else { return nil }
        return Int(scalar.value)
    }

    private func pad(_ value: Int, width: Int) -> String {
        let digits = String(value.magnitude)
        let sign = value < 0 ? "-" : ""
        let zeros = max(0, width - sign.count - digits.count)
        return sign + String(repeating: "0", count: zeros) + digits
    }
}
