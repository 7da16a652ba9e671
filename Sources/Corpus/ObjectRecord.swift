import Foundation

/// One named drawing, as `datasets/objects/build.py` writes it to objects.jsonl and
/// heldout.jsonl: `{"image", "name", "keywords", "source", "item", "noun", "group"}`.
public struct ObjectRecord: Sendable, Equatable, Codable {
    /// The PNG, absolute or relative to the manifest's folder.
    public var image: String
    /// The primary name ("slice of pizza").
    public var name: String
    /// Keywords ("food", "cheese"), without the name.
    public var keywords: [String]
    /// Where the drawing comes from: `openmoji`, `emojione` or `openclipart`.
    public var source: String
    /// The source's stable id of the drawing: a code point sequence or a file path.
    public var item: String
    /// The name's head noun, a WordNet lemma with spaces ("pizza", "teddy bear").
    public var noun: String
    /// The split group: drawings of one group are all trained on or all held out. Defaults to
    /// `source:item` when the manifest has none.
    public var group: String

    /// A record from its fields; `group` defaults to `source:item`.
    public init(
        image: String, name: String, keywords: [String] = [], source: String, item: String,
        noun: String, group: String? = nil
    ) {
        self.image = image
        self.name = name
        self.keywords = keywords
        self.source = source
        self.item = item
        self.noun = noun
        self.group = group ?? "\(source):\(item)"
    }

    enum CodingKeys: String, CodingKey {
        case image, name, keywords, source, item, noun, group
    }

    /// Decodes a manifest line; `keywords` and `group` are optional, `noun` defaults to the name.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        image = try c.decode(String.self, forKey: .image)
        name = try c.decode(String.self, forKey: .name)
        keywords = try c.decodeIfPresent([String].self, forKey: .keywords) ?? []
        source = try c.decode(String.self, forKey: .source)
        item = try c.decode(String.self, forKey: .item)
        noun = try c.decodeIfPresent(String.self, forKey: .noun) ?? name
        group = try c.decodeIfPresent(String.self, forKey: .group) ?? "\(source):\(item)"
    }
}

/// A bad or unreadable object manifest: `path:line: message` (line 0 for the whole file).
public struct CorpusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// 1-based line, or 0.
    public let line: Int
    /// What is wrong.
    public let message: String

    /// An error about `path` (and `line` when not 0).
    public init(path: String, line: Int = 0, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// `path:line: message`, or `path: message`.
    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// Reading objects.jsonl.
public enum ObjectManifest {
    /// The records of the JSONL file at `path`, in file order, with relative image paths resolved
    /// against the file's folder. Blank lines are ignored; any other line that is not a valid
    /// record is an error naming the line (the manifest is generated, so a bad line means a
    /// broken build, not noisy data).
    public static func load(path: String) throws -> [ObjectRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CorpusError(path: path, message: "cannot read the object manifest")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let decoder = JSONDecoder()
        var records: [ObjectRecord] = []
        var number = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            var record: ObjectRecord
            do {
                record = try decoder.decode(ObjectRecord.self, from: Data(line))
            } catch {
                throw CorpusError(path: path, line: number, message: "not an object record (\(describe(error)))")
            }
            if record.image.isEmpty || record.name.isEmpty || record.noun.isEmpty {
                throw CorpusError(path: path, line: number, message: "empty image, name or noun")
            }
            if !record.image.hasPrefix("/") { record.image = base + "/" + record.image }
            records.append(record)
        }
        return records
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "no \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context): return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted: return "invalid JSON"
        default: return "\(error)"
        }
    }
}
