import Foundation

/// JSON text written by hand (metadata headers, corpus records, service answers): one quoting
/// rule for every writer, so that every file and answer catlip writes parses as JSON.
public enum JSONText {
    /// `s` as a JSON string literal: quotes and backslashes escaped, the control characters as
    /// `\n \r \t \b \f` or `\u00XX`; every other character as it is (JSON text is UTF-8).
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// XML text (the SVG plots): one escaping rule for character data and attribute values.
public enum XMLText {
    /// `text` escaped for XML character data and attributes: the five markup characters as
    /// entities, tabs and line breaks as spaces, and the characters XML 1.0 does not allow (or
    /// discourages: C0 and C1 controls, U+FFFE, U+FFFF) dropped, so that a caption or class
    /// name from a file can never make a plot unreadable.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out += " "
            default:
                let v = scalar.value
                if v < 0x20 || (0x7F...0x9F).contains(v) || v == 0xFFFE || v == 0xFFFF { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// The lines of a UTF-8 text file: split at LF and CRLF (Swift's `Character` treats CRLF as one
/// character, so splitting at "\n" alone would miss it), invalid UTF-8 replaced by U+FFFD,
/// a final empty line dropped. Manifests, vocabularies and caption files are read through it.
public func textLines(_ data: Data) -> [String] {
    var lines: [String] = []
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
        let bytes = raw.bindMemory(to: UInt8.self)
        var start = 0
        for i in 0..<bytes.count where bytes[i] == 10 {
            var end = i
            if end > start && bytes[end - 1] == 13 { end -= 1 }
            lines.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
            start = i + 1
        }
        if start < bytes.count {
            lines.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start...]), as: UTF8.self))
        }
    }
    return lines
}
