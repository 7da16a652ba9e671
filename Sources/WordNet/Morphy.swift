/// WordNet's morphy lemmatiser, as NLTK implements it (`WordNet._morphy`): the exception list of
/// the part of speech, then the detachment rules applied repeatedly until forms in the index
/// are found. `lemmatize` returns what NLTK's `WordNetLemmatizer().lemmatize(word, pos)` does:
/// the shortest base form, or the word itself when there is none.
extension WordNetDatabase {
    /// NLTK's detachment rules (suffix, replacement) per part of speech, in NLTK's order.
    static let substitutions: [PartOfSpeech: [(String, String)]] = [
        .noun: [
            ("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
            ("shes", "sh"), ("men", "man"), ("ies", "y"),
        ],
        .verb: [
            ("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
            ("ing", "e"), ("ing", ""),
        ],
        .adjective: [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
        .adverb: [],
    ]

    /// All base forms of `form` as `pos` that WordNet knows, in morphy's order (NLTK `_morphy`).
    public func morphy(_ form: String, as pos: PartOfSpeech) -> [String] {
        let rules = Self.substitutions[pos] ?? []
        func applyRules(_ forms: [String]) -> [String] {
            var out: [String] = []
            for form in forms {
                for (old, new) in rules where form.hasSuffix(old) {
                    out.append(String(form.dropLast(old.count)) + new)
                }
            }
            return out
        }
        func filterForms(_ forms: [String]) -> [String] {
            var result: [String] = []
            for form in forms where contains(form, as: pos) && !result.contains(form) {
                result.append(form)
            }
            return result
        }
        if let bases = exceptionBases(form, as: pos) {
            return filterForms([form] + bases)
        }
        var forms = applyRules([form])
        let results = filterForms([form] + forms)
        if !results.isEmpty { return results }
        while !forms.isEmpty {
            forms = applyRules(forms)
            let results = filterForms(forms)
            if !results.isEmpty { return results }
        }
        return []
    }

    /// NLTK's `WordNetLemmatizer().lemmatize(word, pos)`: the shortest of morphy's base forms
    /// (the first of equal length), or `word` unchanged when morphy finds none.
    public func lemmatize(_ word: String, as pos: PartOfSpeech = .noun) -> String {
        let lemmas = morphy(word, as: pos)
        var best: String? = nil
        for lemma in lemmas where best == nil || lemma.count < best!.count { best = lemma }
        return best ?? word
    }
}
