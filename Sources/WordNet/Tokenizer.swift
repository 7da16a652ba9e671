/// English word tokenisation with the effect of NLTK's `word_tokenize` (the improved Treebank
/// tokeniser) on captions: punctuation split off words (commas and colons unless between
/// digits, `; @ # $ % & ? ! *`, brackets, quotes, sentence-final periods), clitics split
/// (`dog's` -> `dog` `'s`, `don't` -> `do` `n't`), hyphens, slashes and periods inside words kept
/// (`t-shirt`, `a.m.`). Written as one pass over the characters instead of NLTK's ~30 regular
/// expressions.
public enum Tokenizer {
    /// Characters split off wherever they are.
    static let alwaysSplit: Set<Character> = [
        ";", "@", "#", "$", "%", "&", "?", "!", "*", "(", ")", "[", "]", "{", "}", "<", ">", "\"",
        "“", "”", "«", "»", "‘", "’",
    ]

    /// Clitics split off the end of a word, longest first.
    static let clitics = ["n't", "'ll", "'re", "'ve", "'s", "'m", "'d"]

    /// The tokens of `text` (already cleaned and lower-cased by `CaptionText.clean`).
    public static func tokenize(_ text: String) -> [Substring] {
        var tokens: [Substring] = []
        for chunk in text.split(whereSeparator: { $0.isWhitespace }) {
            split(chunk, into: &tokens)
        }
        return tokens
    }

    static func split(_ chunk: Substring, into tokens: inout [Substring]) {
        var word = chunk[...]
        // Leading punctuation. A leading apostrophe is split only before a one-letter word
        // ('a), as NLTK's starting-quote rule does: "'cat'" stays "'cat" + "'".
        var leading: [Substring] = []
        while let c = word.first {
            if alwaysSplit.contains(c) || c == "`" {
                leading.append(word.prefix(1))
                word = word.dropFirst()
            } else if c == "'", word.count >= 2, isOneLetterWord(word.dropFirst()) {
                leading.append(word.prefix(1))
                word = word.dropFirst()
            } else {
                break
            }
        }
        tokens.append(contentsOf: leading)
        // Trailing punctuation, collected in reverse.
        var trailing: [Substring] = []
        while let c = word.last {
            if alwaysSplit.contains(c) || c == "," || c == ":" || c == "`" {
                trailing.append(word.suffix(1))
                word = word.dropLast()
            } else if c == "." {
                // An ellipsis goes as one token; a single final period too, unless the word is
                // an abbreviation with inner periods (a.m.) which keeps it.
                var dots = word.suffix(1)
                while dots.startIndex > word.startIndex,
                    word[word.index(before: dots.startIndex)] == "."
                {
                    dots = word[word.index(before: dots.startIndex)...]
                }
                if dots.count == 1 && word.dropLast().contains(".") { break }
                trailing.append(dots)
                word = word[..<dots.startIndex]
            } else if c == "'" && word.hasSuffix("''") && word.count > 2 {
                trailing.append(word.suffix(2))  // a closing '' quote
                word = word.dropLast(2)
            } else if c == "'" && !word.dropLast().hasSuffix("'") && word.count > 1 {
                // A closing quote (dogs' stays "dogs" "'").
                trailing.append(word.suffix(1))
                word = word.dropLast()
            } else {
                break
            }
        }
        // Punctuation inside the word: commas and colons not followed by a digit, and the
        // always-split characters, separate it into parts.
        var start = word.startIndex
        var i = word.startIndex
        while i < word.endIndex {
            let c = word[i]
            let next = word.index(after: i)
            let splitHere: Bool
            if alwaysSplit.contains(c) {
                splitHere = true
            } else if c == ".", next < word.endIndex, word[next] == "." {
                // An ellipsis inside a word ("dog...cat") is a token of its own.
                var end = next
                while end < word.endIndex && word[end] == "." { end = word.index(after: end) }
                if start < i { appendWord(word[start..<i], into: &tokens) }
                tokens.append(word[i..<end])
                start = end
                i = end
                continue
            } else if c == "," || c == ":" {
                splitHere = !(next < word.endIndex && word[next].isNumber)
            } else {
                splitHere = false
            }
            if splitHere {
                if start < i { appendWord(word[start..<i], into: &tokens) }
                tokens.append(word[i..<next])
                start = next
            }
            i = next
        }
        if start < word.endIndex { appendWord(word[start...], into: &tokens) }
        tokens.append(contentsOf: trailing.reversed())
    }

    /// Whether `rest` starts with exactly one word character (not a clitic letter) followed by
    /// a non-word character or the end.
    static func isOneLetterWord(_ rest: Substring) -> Bool {
        guard let first = rest.first, first.isLetter || first.isNumber || first == "_" else { return false }
        if "svmtdn".contains(first) { return false }
        let next = rest.dropFirst().first
        return next == nil || !(next!.isLetter || next!.isNumber || next! == "_")
    }

    /// A word, with a clitic split off its end.
    static func appendWord(_ word: Substring, into tokens: inout [Substring]) {
        for clitic in clitics where word.count > clitic.count && word.hasSuffix(clitic) {
            let cut = word.index(word.endIndex, offsetBy: -clitic.count)
            tokens.append(word[..<cut])
            tokens.append(word[cut...])
            return
        }
        tokens.append(word)
    }
}
