import Foundation

/// Caption clean-up before tokenising, as corenet does it: URL-unquoting, `+` as a space, HTML
/// tags removed, common mis-encodings repaired, white space collapsed, lower case. Captions are
/// first cut to `maximumBytes` of UTF-8 (web alt text longer than that is noise, and labelling
/// cost must stay bounded); invalid UTF-8 was already replaced by U+FFFD when the bytes became
/// a `String`.
public enum CaptionText {
    /// Captions are truncated to this many bytes of UTF-8 (at a character boundary) before
    /// clean-up.
    public static let maximumBytes = 8192

    /// The cleaned, lower-cased caption.
    public static func clean(_ raw: String) -> String {
        String(decoding: cleanBytes(raw), as: UTF8.self)
    }

    /// The cleaned, lower-cased caption as UTF-8 with single ASCII spaces between words: the
    /// labeller's fast path, which stays on bytes unless the caption has non-ASCII text.
    static func cleanBytes(_ raw: String) -> [UInt8] {
        var out: [UInt8] = []
        cleanBytes(raw, into: &out)
        return out
    }

    /// `cleanBytes(_:)` into a reused buffer.
    static func cleanBytes(_ raw: String, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        let utf8 = raw.utf8
        let plain = utf8.count <= maximumBytes && !utf8.contains { b in
            b == UInt8(ascii: "%") || b == UInt8(ascii: "+") || b == UInt8(ascii: "<")
                || b == UInt8(ascii: "&") || b >= 0x80
        }
        if plain, let done: Void = utf8.withContiguousStorageIfAvailable({ lowerAndCollapse($0, into: &out) }) {
            return done
        }
        var bytes: [UInt8]
        if utf8.count > maximumBytes {
            // Cut before the character that straddles the limit.
            var cut = maximumBytes
            let start = utf8.startIndex
            while cut > 0 && utf8[utf8.index(start, offsetBy: cut)] & 0xC0 == 0x80 { cut -= 1 }
            bytes = Array(utf8.prefix(cut))
        } else {
            bytes = Array(utf8)
        }
        if bytes.contains(UInt8(ascii: "%")) || bytes.contains(UInt8(ascii: "+")) { bytes = urlUnquote(bytes) }
        if bytes.contains(UInt8(ascii: "<")) || bytes.contains(UInt8(ascii: "&")) { bytes = stripTags(bytes) }
        if bytes.contains(where: { $0 >= 0x80 }) {
            // Repairs and Unicode lower-casing through String; Unicode spaces become spaces.
            var text = String(decoding: bytes, as: UTF8.self)
            text = repairMojibake(text)
            text = normalizeCharacters(text)
            var scalars = String.UnicodeScalarView()
            for scalar in text.lowercased().unicodeScalars {
                scalars.append(scalar.properties.isWhitespace ? " " : scalar)
            }
            bytes = Array(String(scalars).utf8)
        }
        bytes.withUnsafeBufferPointer { lowerAndCollapse($0, into: &out) }
    }

    /// ASCII lower-casing and white-space collapsing in one pass: runs of ASCII white space
    /// (spaces, tabs, line breaks) become one space, ends trimmed.
    static func lowerAndCollapse(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        out.reserveCapacity(bytes.count)
        var pendingSpace = false
        for var b in bytes {
            if b == 32 || (b >= 9 && b <= 13) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(32) }
                pendingSpace = false
                if b >= 65 && b <= 90 { b += 32 }
                out.append(b)
            }
        }
    }

    /// `%XX` escapes decoded (invalid sequences left as they are), then every `+` read as a
    /// space.
    static func urlUnquote(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = 0
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 65...70: return b - 55
            case 97...102: return b - 87
            default: return nil
            }
        }
        while i < input.count {
            let b = input[i]
            if b == UInt8(ascii: "%"), i + 2 < input.count, let h = hex(input[i + 1]),
                let l = hex(input[i + 2])
            {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        // After unquoting, as corenet does: an encoded plus (%2B) becomes a space too.
        for j in out.indices where out[j] == UInt8(ascii: "+") { out[j] = 32 }
        return out
    }

    /// Removes `<...>` tags (an unclosed `<` is kept as text) and decodes the common entities
    /// (unless an unclosed `<` remains, as ftfy does).
    static func stripTags(_ input: [UInt8]) -> [UInt8] {
        guard input.contains(UInt8(ascii: "<")) || input.contains(UInt8(ascii: "&")) else {
            return input
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        let hasOpenBracket = stripsToTextWithBracket(input)
        var i = 0
        while i < input.count {
            let b = input[i]
            // Tags vanish without a trace, as corenet's re.sub("<.*?>", "") does: from "<" to
            // the next ">" on the same line ("house</p><p>with" -> "housewith").
            if b == UInt8(ascii: "<"), let close = input[(i + 1)...].firstIndex(where: { $0 == UInt8(ascii: ">") || $0 == 10 }),
                input[close] == UInt8(ascii: ">")
            {
                i = close + 1
                continue
            }
            // ftfy unescapes HTML entities only in text with no "<" left.
            if b == UInt8(ascii: "&"), !hasOpenBracket {
                let entities: [(String, String)] = [
                    ("&amp;", "&"), ("&quot;", "\""), ("&#39;", "'"), ("&apos;", "'"),
                    ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "),
                ]
                var matched = false
                for (entity, text) in entities {
                    let e = Array(entity.utf8)
                    if i + e.count <= input.count, Array(input[i..<(i + e.count)]) == e {
                        out.append(contentsOf: text.utf8)
                        i += e.count
                        matched = true
                        break
                    }
                }
                if matched { continue }
            }
            out.append(b)
            i += 1
        }
        return out
    }

    /// UTF-8 text that was decoded as Latin-1/Windows-1252 somewhere upstream ("cafÃ©") is
    /// re-encoded and decoded again when that yields valid UTF-8 ("café"). Cheap: only strings
    /// with the tell-tale lead characters are examined.
    static func repairMojibake(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value == 0xC3 || $0.value == 0xC2 || $0.value == 0xE2 })
        else { return text }
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            if scalar.value < 0x100 {
                bytes.append(UInt8(scalar.value))
            } else if let b = cp1252Byte[scalar.value] {
                bytes.append(b)
            } else {
                return text  // not a Latin-1 view of bytes: leave it
            }
        }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var repaired = String.UnicodeScalarView()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let s): repaired.append(s)
            case .emptyInput: return String(repaired)
            case .error: return text
            }
        }
    }

    /// Whether a "<" survives tag removal (an unclosed "<").
    static func stripsToTextWithBracket(_ input: [UInt8]) -> Bool {
        var i = 0
        while let open = input[i...].firstIndex(of: UInt8(ascii: "<")) {
            guard let close = input[(open + 1)...].firstIndex(where: { $0 == UInt8(ascii: ">") || $0 == 10 }),
                input[close] == UInt8(ascii: ">")
            else { return true }
            i = close + 1
        }
        return false
    }

    /// ftfy's cheap fixes (corenet runs ftfy): curly quotes made straight, Latin ligatures
    /// spelled out (ﬁ -> fi), full-width ASCII made ordinary (ＤＯＧ -> DOG).
    static func normalizeCharacters(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value >= 0x2018 }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x2018, 0x2019, 0x201A, 0x201B: out.append("'")
            case 0x201C, 0x201D, 0x201E, 0x201F: out.append("\"")
            case 0xFB00: out.append(contentsOf: "ff".unicodeScalars)
            case 0xFB01: out.append(contentsOf: "fi".unicodeScalars)
            case 0xFB02: out.append(contentsOf: "fl".unicodeScalars)
            case 0xFB03: out.append(contentsOf: "ffi".unicodeScalars)
            case 0xFB04: out.append(contentsOf: "ffl".unicodeScalars)
            case 0xFB05, 0xFB06: out.append(contentsOf: "st".unicodeScalars)
            case 0xFF01...0xFF5E: out.append(Unicode.Scalar(scalar.value - 0xFF01 + 0x21)!)
            case 0x3000: out.append(" ")
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// Windows-1252 characters in 0x80-0x9F, by code point, back to their byte.
    static let cp1252Byte: [UInt32: UInt8] = [
        0x20AC: 0x80, 0x201A: 0x82, 0x0192: 0x83, 0x201E: 0x84, 0x2026: 0x85, 0x2020: 0x86,
        0x2021: 0x87, 0x02C6: 0x88, 0x2030: 0x89, 0x0160: 0x8A, 0x2039: 0x8B, 0x0152: 0x8C,
        0x017D: 0x8E, 0x2018: 0x91, 0x2019: 0x92, 0x201C: 0x93, 0x201D: 0x94, 0x2022: 0x95,
        0x2013: 0x96, 0x2014: 0x97, 0x02DC: 0x98, 0x2122: 0x99, 0x0161: 0x9A, 0x203A: 0x9B,
        0x0153: 0x9C, 0x017E: 0x9E, 0x0178: 0x9F,
    ]

}
