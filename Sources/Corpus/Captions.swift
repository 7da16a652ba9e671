/// What a caption says about one object of a sample.
public struct CaptionObject: Sendable, Equatable {
    /// The drawing's name ("slice of pizza").
    public var name: String
    /// Its head noun ("pizza"), always present in the caption.
    public var noun: String
    /// The noun's plural when it labels back to the noun ("dogs"); nil when counts must not
    /// be written with it.
    public var plural: String?
    /// Keywords to pick from.
    public var keywords: [String]
    /// Copies pasted (1 for most objects).
    public var count: Int
    /// Whether the name alone labels as the noun ("dog face" does; "men holding hands" does not
    /// under corenet's rule, so the noun is added beside it).
    public var nameCarriesNoun: Bool

    /// An object to caption.
    public init(
        name: String, noun: String, plural: String?, keywords: [String], count: Int = 1,
        nameCarriesNoun: Bool = true
    ) {
        self.name = name
        self.noun = noun
        self.plural = plural
        self.keywords = keywords
        self.count = count
        self.nameCarriesNoun = nameCarriesNoun
    }
}

/// Captions in the loose style of web alt text ("cute dog and a slice of pizza - free clip
/// art", "pizza, dog, vector illustration"), assembled from the objects' names, nouns and
/// keywords through templates and distractor words. Every caption names each object by a
/// phrase containing its noun (or its verified plural); the other words come from the objects'
/// keywords or from the fixed vocabulary below (`templateVocabulary`).
public enum Captions {
    /// Scene templates. `{o}` the objects ("a dog and two cats"), `{O}` the same capitalised,
    /// `{k}` a few of the objects' keywords (templates with it are used only when there are
    /// some), `{K}` a keyword list that starts each object with its noun ("dog, pet, pizza,
    /// cheese"; the keywords-only captions), `{b}` the background's colour name (used only on
    /// plain named backgrounds).
    public static let templates: [String] = [
        "{o}",
        "{o} - free clip art",
        "{o} clipart",
        "{o} vector illustration",
        "cartoon {o}",
        "{o} icon set",
        "{o} stock image",
        "{o} on a {b} background",
        "illustration of {o}",
        "{o} isolated on {b}",
        "stock vector: {o}",
        "{O}. {k}",
        "{K}, vector illustration",
        "{o} emoji",
        "{o} doodle",
        "{o} sticker pack",
        "royalty free {o} picture",
        "{o} flat design",
        "image of {o}",
        "{o} | free download",
        "simple {o} drawing",
        "{o} png",
        "funny {o} cartoon",
        "colorful {o} collection",
        "{K}",
        "picture with {o}",
        "kids drawing of {o}",
        "{o}, {k} - clipart",
        "{O} ({k})",
        "set of {o} icons",
        "{o} wallpaper",
        "{K} - stock illustration",
        "{O}",
        "{o} graphic",
    ]

    /// Words put before a single object's name. None may be or contain a noun that names a
    /// drawable thing ("hand drawn" would label "hand" on every picture it captions).
    static let adjectives = [
        "cute", "funny", "happy", "little", "big", "colorful", "simple", "cartoon", "sketched",
        "retro", "modern", "flat", "tiny", "cool",
    ]

    /// Number words for counts 2 and 3.
    static let numberWords = [2: ["two", "2", "a pair of"], 3: ["three", "3"], 4: ["four", "4"]]

    /// Colour names a solid background may carry.
    public static let colourNames = [
        "white", "black", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink",
        "brown",
    ]

    /// Every word a caption can contain besides the objects' names, nouns, plurals and
    /// keywords: the template text, adjectives, number words, joiners, articles and colour
    /// names. Labelling this text gives the synsets template words may add to a caption.
    public static var templateVocabulary: String {
        var words = templates.joined(separator: " ")
        for p in ["{o}", "{O}", "{k}", "{K}", "{b}"] { words = words.replacingOccurrences(of: p, with: " ") }
        words += " " + adjectives.joined(separator: " ")
        words += " " + numberWords.values.flatMap { $0 }.joined(separator: " ")
        words += " " + colourNames.joined(separator: " ") + " and with a an x some"
        return words
    }

    /// A caption for `objects` (in paste order) on a background whose colour name is
    /// `backgroundColour` when it is a plain named colour.
    public static func caption<G: RandomNumberGenerator>(
        objects: [CaptionObject], backgroundColour: String?, using generator: inout G
    ) -> String {
        precondition(!objects.isEmpty, "a caption names at least one object")
        let keywords = pickKeywords(objects, using: &generator)
        var template: String
        while true {
            template = templates[uniformIndex(templates.count, &generator)]
            if template.contains("{b}") && backgroundColour == nil { continue }
            if template.contains("isolated on {b}") && backgroundColour != "white" { continue }
            if template.contains("{k}") && keywords.isEmpty { continue }
            break
        }
        var text = template
        if text.contains("{o}") || text.contains("{O}") {
            // An article only where one reads right: at the start or after "of"/"with"
            // ("image of a dog"; not "cartoon a dog", "set of a dog icons").
            let before = template.components(separatedBy: "{").first ?? ""
            let allowArticle = (before.isEmpty || before.hasSuffix("of ") || before.hasSuffix("with "))
                && !template.hasPrefix("set of")
            let phrase = objectsPhrase(objects, allowArticle: allowArticle, using: &generator)
            text = text.replacingOccurrences(of: "{o}", with: phrase)
            text = text.replacingOccurrences(of: "{O}", with: capitalisedFirst(phrase))
        }
        if text.contains("{K}") {
            text = text.replacingOccurrences(of: "{K}", with: keywordList(objects, using: &generator))
        }
        text = text.replacingOccurrences(of: "{k}", with: keywords.joined(separator: ", "))
        if let colour = backgroundColour { text = text.replacingOccurrences(of: "{b}", with: colour) }
        switch uniformIndex(6, &generator) {
        case 0: return capitalisedWords(text)
        case 1, 2: return capitalisedFirst(text)
        default: return text
        }
    }

    /// "a dog, two cats and pizza": one phrase per object joined in one of several styles.
    static func objectsPhrase<G: RandomNumberGenerator>(
        _ objects: [CaptionObject], allowArticle: Bool, using generator: inout G
    ) -> String {
        let parts = objects.map { objectPhrase($0, allowArticle: allowArticle, using: &generator) }
        if parts.count == 1 { return parts[0] }
        switch uniformIndex(6, &generator) {
        case 0: return parts.joined(separator: ", ")
        case 1: return parts.joined(separator: " & ")
        case 2: return parts.count == 2 ? parts[0] + " with " + parts[1] : parts.joined(separator: " and ")
        case 3: return parts.joined(separator: " + ")
        default: return parts.dropLast().joined(separator: ", ") + " and " + parts.last!
        }
    }

    /// One object: its name in some form for one copy ("slice of pizza", "a cute dog",
    /// "pizza"), a count with the plural for several ("two dogs").
    static func objectPhrase<G: RandomNumberGenerator>(
        _ object: CaptionObject, allowArticle: Bool, using generator: inout G
    ) -> String {
        let name = object.nameCarriesNoun ? object.name : "\(object.noun) (\(object.name))"
        if object.count > 1 {
            guard let plural = object.plural else { return "\(name) x\(object.count)" }
            let words = numberWords[object.count] ?? ["\(object.count)"]
            switch uniformIndex(5, &generator) {
            case 0: return plural
            case 1: return "some \(plural)"
            default: return words[uniformIndex(words.count, &generator)] + " " + plural
            }
        }
        switch uniformIndex(8, &generator) {
        case 0, 1, 2: return name
        case 3: return allowArticle ? article(name) + " " + name : name
        case 4: return adjectives[uniformIndex(adjectives.count, &generator)] + " " + name
        case 5: return object.noun
        case 6:
            let adjective = adjectives[uniformIndex(adjectives.count, &generator)]
            return allowArticle ? article(adjective) + " " + adjective + " " + name : adjective + " " + name
        default: return name.lowercased()
        }
    }

    /// Up to three keywords of the objects, none repeated, none equal to a name or noun.
    static func pickKeywords<G: RandomNumberGenerator>(_ objects: [CaptionObject], using generator: inout G) -> [String] {
        var pool: [String] = []
        var seen = Set(objects.flatMap { [$0.name.lowercased(), $0.noun.lowercased()] })
        for object in objects {
            for k in object.keywords where !seen.contains(k.lowercased()) {
                seen.insert(k.lowercased())
                pool.append(k)
            }
        }
        let count = min(pool.count, uniformIndex(4, &generator))
        var out: [String] = []
        for _ in 0..<count {
            out.append(pool.remove(at: uniformIndex(pool.count, &generator)))
        }
        return out
    }

    /// "dog, pet, two pizzas, cheese": each object's noun (or count and plural) followed by up
    /// to two of its keywords.
    static func keywordList<G: RandomNumberGenerator>(_ objects: [CaptionObject], using generator: inout G) -> String {
        var out: [String] = []
        for object in objects {
            if object.count > 1, let plural = object.plural {
                out.append(uniformIndex(2, &generator) == 0 ? plural : (numberWords[object.count]?.first ?? "\(object.count)") + " " + plural)
            } else {
                out.append(object.noun)
            }
            var pool = object.keywords.filter { $0.lowercased() != object.noun.lowercased() }
            for _ in 0..<min(pool.count, uniformIndex(3, &generator)) {
                out.append(pool.remove(at: uniformIndex(pool.count, &generator)))
            }
        }
        return out.joined(separator: ", ")
    }

    /// "a" or "an" by the first letter.
    static func article(_ word: String) -> String {
        guard let first = word.lowercased().first else { return "a" }
        return "aeiou".contains(first) ? "an" : "a"
    }

    static func capitalisedFirst(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst()
    }

    static func capitalisedWords(_ text: String) -> String {
        text.split(separator: " ", omittingEmptySubsequences: false)
            .map { capitalisedFirst(String($0)) }.joined(separator: " ")
    }

    /// English plural of a noun phrase's last word ("hot dog" -> "hot dogs", "knife" ->
    /// "knives", "man" -> "men"). Callers check that the result labels back to the noun.
    public static func plural(_ noun: String) -> String {
        var words = noun.split(separator: " ").map(String.init)
        guard let last = words.last else { return noun }
        words[words.count - 1] = pluralWord(last)
        return words.joined(separator: " ")
    }

    static let irregularPlurals: [String: String] = [
        "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
        "goose": "geese", "foot": "feet", "tooth": "teeth", "ox": "oxen", "louse": "lice",
        "leaf": "leaves", "knife": "knives", "wife": "wives", "life": "lives", "wolf": "wolves",
        "loaf": "loaves", "shelf": "shelves", "calf": "calves", "half": "halves", "elf": "elves",
        "thief": "thieves", "scarf": "scarves", "cactus": "cacti", "fungus": "fungi",
        "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "volcano": "volcanoes",
    ]
    static let invariantPlurals: Set<String> = [
        "sheep", "fish", "deer", "moose", "bison", "salmon", "trout", "aircraft", "series",
        "species", "sushi", "shrimp", "squid", "swine", "people", "police", "glasses",
        "scissors", "pants", "trousers", "jeans", "clothes", "sunglasses", "headphones",
    ]

    static func pluralWord(_ word: String) -> String {
        let lower = word.lowercased()
        if let irregular = irregularPlurals[lower] { return irregular }
        if invariantPlurals.contains(lower) { return word }
        for suffix in ["s", "x", "z", "ch", "sh"] where lower.hasSuffix(suffix) { return word + "es" }
        if lower.hasSuffix("y"), let before = lower.dropLast().last, !"aeiou".contains(before) {
            return word.dropLast() + "ies"
        }
        return word + "s"
    }
}

/// A uniform integer in 0..<`count`, from the top bits (same numbers on every platform and
/// Swift version, unlike the standard library's `random(in:using:)` whose algorithm may change).
@inline(__always)
func uniformIndex<G: RandomNumberGenerator>(_ count: Int, _ generator: inout G) -> Int {
    precondition(count > 0, "empty range")
    // The high word of next * count: uniform up to a bias of count / 2^64, negligible here.
    return Int(generator.next().multipliedFullWidth(by: UInt64(count)).high)
}

/// A uniform Double in [0, 1) from 53 random bits.
@inline(__always)
func uniformUnit<G: RandomNumberGenerator>(_ generator: inout G) -> Double {
    Double(generator.next() >> 11) * 0x1p-53
}

/// A uniform Double in `range`.
@inline(__always)
func uniform<G: RandomNumberGenerator>(_ range: ClosedRange<Double>, _ generator: inout G) -> Double {
    range.lowerBound + (range.upperBound - range.lowerBound) * uniformUnit(&generator)
}
