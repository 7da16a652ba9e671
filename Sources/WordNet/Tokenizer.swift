/// English word tokenisation with the effect of corenet's `nltk.word_tokenize` (punkt sentence
/// splitting, then the improved Treebank tokeniser) on captions:
/// - punctuation split off words: commas and colons unless a digit follows, `; @ # $ % & ? ! *`,
///   brackets, double quotes, `--`, ellipses;
/// - a period split off the end of a word followed by a space or the end (punkt's sentence
///   ends), unless more punctuation follows it (`icons.!!!`), the word is an initial (`q.`) or
///   has inner periods (`a.m.`); periods inside words stay (`3.5`, `u.s`);
/// - clitics split (`dog's` -> `dog` `'s`, `don't` -> `do` `n't`); a leading apostrophe only
///   before a one-letter word (`'cat'` stays `'cat` `'`); closing `''` split;
/// - hyphens, slashes and other symbols kept inside words (`t-shirt`, `9/11`).
/// One pass over UTF-8 bytes instead of NLTK's ~30 regular expressions; non-ASCII characters
/// are word characters unless listed above.
public enum Tokenizer {
    /// The tokens of `text` (as `CaptionText.clean` leaves it).
    public static func tokenize(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        return tokenize(bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    /// The tokens of cleaned UTF-8 `text`, as byte ranges.
    static func tokenize(_ text: [UInt8]) -> [Range<Int>] {
        var tokens: [Range<Int>] = []
        tokenize(text, into: &tokens)
        return tokens
    }

    /// The tokens of cleaned UTF-8 `text` into a reused array.
    static func tokenize(_ text: [UInt8], into tokens: inout [Range<Int>]) {
        tokens.removeAll(keepingCapacity: true)
        text.withUnsafeBufferPointer { b in
            var i = 0
            while i < b.count {
                while i < b.count && isSpace(b[i]) { i += 1 }
                var j = i
                while j < b.count && !isSpace(b[j]) { j += 1 }
                if j > i { split(b, i, j, into: &tokens) }
                i = j
            }
        }
    }

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 32 || (c >= 9 && c <= 13) }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

    /// Letters, digits, underscore, and any non-ASCII byte (treated as part of a word).
    @inline(__always) static func isWordByte(_ c: UInt8) -> Bool {
        (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c == 95 || c >= 0x80
    }

    /// Length of a character that is always split off, starting at `i`, or 0.
    static func splitCharacter(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> Int {
        switch b[i] {
        case UInt8(ascii: ";"), UInt8(ascii: "@"), UInt8(ascii: "#"), UInt8(ascii: "$"),
            UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "?"), UInt8(ascii: "!"),
            UInt8(ascii: "*"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "["),
            UInt8(ascii: "]"), UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "<"),
            UInt8(ascii: ">"), UInt8(ascii: "\""):
            return 1
        case 0xC2 where i + 1 < end && (b[i + 1] == 0xAB || b[i + 1] == 0xBB):  // « »
            return 2
        case 0xE2 where i + 2 < end && b[i + 1] == 0x80 && (0x98...0x9D).contains(b[i + 2]):  // ‘ ’ ‚ ‛ “ ”
            return 3
        default:
            return 0
        }
    }

    /// Length of an always-split character ending at `end` (exclusive), or 0.
    static func splitCharacterBefore(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        if end - 1 >= start, splitCharacter(b, end - 1, end) == 1 { return 1 }
        if end - 2 >= start, splitCharacter(b, end - 2, end) == 2 { return 2 }
        if end - 3 >= start, splitCharacter(b, end - 3, end) == 3 { return 3 }
        return 0
    }

    /// Whether the always-split character of `length` bytes ending at `end` closes a sentence's
    /// quote or bracket (a period before it is still final).
    static func isCloser(_ b: UnsafeBufferPointer<UInt8>, _ end: Int, _ length: Int) -> Bool {
        switch length {
        case 1: return [UInt8(ascii: ")"), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: ">"), UInt8(ascii: "\"")].contains(b[end - 1])
        case 2: return b[end - 1] == 0xBB  // »
        case 3: return b[end - 1] == 0x99 || b[end - 1] == 0x9D  // ’ ”
        default: return false
        }
    }

    /// Number of characters in `b[start..<end]` (UTF-8 lead bytes).
    static func characterCount(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        var n = 0
        for i in start..<end where b[i] & 0xC0 != 0x80 { n += 1 }
        return n
    }

    static func split(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into tokens: inout [Range<Int>]) {
        var s = start, e = end
        // Leading punctuation.
        while s < e {
            let n = splitCharacter(b, s, e)
            if n > 0 {
                tokens.append(s..<(s + n))
                s += n
            } else if b[s] == UInt8(ascii: "`") {
                tokens.append(s..<(s + 1))
                s += 1
            } else if b[s] == UInt8(ascii: "'"), e - s >= 2, isOneLetterWord(b, s + 1, e) {
                tokens.append(s..<(s + 1))
                s += 1
            } else {
                break
            }
        }
        // Trailing punctuation, collected in reverse.
        var trailing: [Range<Int>] = []
        var onlyClosersSoFar = true
        while e > s {
            let c = b[e - 1]
            let n = splitCharacterBefore(b, s, e)
            if n > 0 {
                if !isCloser(b, e, n) { onlyClosersSoFar = false }
                trailing.append((e - n)..<e)
                e -= n
            } else if c == UInt8(ascii: ",") || c == UInt8(ascii: ":") || c == UInt8(ascii: "`") {
                onlyClosersSoFar = false
                trailing.append((e - 1)..<e)
                e -= 1
            } else if c == UInt8(ascii: ".") {
                var d = e - 1
                while d > s && b[d - 1] == UInt8(ascii: ".") { d -= 1 }
                if e - d == 1 {
                    let stemHasPeriod = b[s..<(e - 1)].contains(UInt8(ascii: "."))
                    if !onlyClosersSoFar || stemHasPeriod || characterCount(b, s, e - 1) == 1 { break }
                }
                trailing.append(d..<e)
                e = d
            } else if c == UInt8(ascii: "'"), e - s > 2, b[e - 2] == UInt8(ascii: "'") {
                trailing.append((e - 2)..<e)  // a closing '' quote
                e -= 2
            } else if c == UInt8(ascii: "'"), e - s > 1, b[e - 2] != UInt8(ascii: "'") {
                trailing.append((e - 1)..<e)  // a closing quote: dogs' -> dogs '
                e -= 1
            } else {
                break
            }
        }
        // Inside the word.
        var wordStart = s
        var i = s
        while i < e {
            let c = b[i]
            var cut = splitCharacter(b, i, e)
            if cut > 0 {
            } else if c == UInt8(ascii: "-"), i + 1 < e, b[i + 1] == UInt8(ascii: "-") {
                cut = 2
            } else if c == UInt8(ascii: "."), i + 1 < e, b[i + 1] == UInt8(ascii: ".") {
                var j = i + 2
                while j < e && b[j] == UInt8(ascii: ".") { j += 1 }
                cut = j - i
            } else if c == UInt8(ascii: ",") || c == UInt8(ascii: ":") {
                cut = (i + 1 < e && isDigit(b[i + 1])) ? 0 : 1
            }
            if cut > 0 {
                if wordStart < i { appendWord(b, wordStart, i, into: &tokens) }
                tokens.append(i..<(i + cut))
                i += cut
                wordStart = i
            } else {
                i += 1
            }
        }
        if wordStart < e { appendWord(b, wordStart, e, into: &tokens) }
        tokens.append(contentsOf: trailing.reversed())
    }

    /// Whether `b[i...]` starts with exactly one word character that is not a clitic letter
    /// (s, v, m, t, d, n), followed by a non-word character or the end.
    static func isOneLetterWord(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> Bool {
        guard i < end, isWordByte(b[i]) else { return false }
        if "svmtdn".utf8.contains(b[i]) { return false }
        var next = i + 1
        if b[i] >= 0x80 { while next < end && b[next] & 0xC0 == 0x80 { next += 1 } }
        return next >= end || !isWordByte(b[next])
    }

    /// Clitics split off the end of a word, longest first.
    static let clitics: [[UInt8]] = ["n't", "'ll", "'re", "'ve", "'s", "'m", "'d"].map { Array($0.utf8) }

    /// A word, with a clitic split off its end.
    static func appendWord(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into tokens: inout [Range<Int>]) {
        for clitic in clitics where end - start > clitic.count {
            let cut = end - clitic.count
            if b[cut..<end].elementsEqual(clitic) {
                tokens.append(start..<cut)
                tokens.append(cut..<end)
                return
            }
        }
        tokens.append(start..<end)
    }
}
