import Foundation
import Support
import XCTest

@testable import WordNet

/// The database as loaded from Debian's wordnet-base (installed by `make setup`).
let sharedDatabase: WordNetDatabase = {
    do { return try WordNetDatabase() } catch { fatalError("WordNet 3.0 is needed: \(error)") }
}()

final class WordNetDatabaseTests: XCTestCase {
    let db = sharedDatabase

    func testSizesOfWordNet30() {
        XCTAssertEqual(db.synsetCount, 82_115)
        XCTAssertEqual(db.nounLemmaCount, 117_798)
    }

    func testDogSynset() throws {
        let dog = try XCTUnwrap(db.nounSynsets("dog").first)
        XCTAssertEqual(db.wnid(dog), "n02084071")
        XCTAssertEqual(Array(db.lemmas(dog)), ["dog", "domestic_dog", "Canis_familiaris"])
        XCTAssertEqual(db.lexicographerFile(dog), "noun.animal")
        XCTAssertEqual(db.name(dog), "dog.n.01")
        XCTAssertTrue(db.gloss(dog).hasPrefix("a member of the genus Canis"))
        let hypernyms = db.hypernyms(dog).map { db.wnid($0) }
        XCTAssertEqual(Set(hypernyms), ["n02083346", "n01317541"])  // canine, domestic animal
        XCTAssertTrue(db.hyponyms(dog).map { db.wnid($0) }.contains("n02085374"))  // toy dog
        XCTAssertEqual(db.nounSynsets("dog").count, 7)
    }

    func testWnidsPaddedAndUnpadded() throws {
        let image = try XCTUnwrap(db.synset(wnid: "n05928118"))
        XCTAssertEqual(db.synset(wnid: "n5928118"), image)
        XCTAssertEqual(db.wnid(image), "n05928118")
        XCTAssertEqual(db.headLemma(image), "image")
        XCTAssertNil(db.synset(wnid: "n99999999"))
        XCTAssertNil(db.synset(wnid: "dog"))
        XCTAssertEqual(db.wnid(try XCTUnwrap(db.synset(wnid: "n01440764"))), "n01440764")  // tench
    }

    func testInstanceHypernymsAndSenseNames() throws {
        let einstein = try XCTUnwrap(db.nounSynsets("einstein").first)
        XCTAssertEqual(db.headLemma(einstein), "einstein")
        XCTAssertFalse(db.hypernyms(einstein).isEmpty, "@i pointers count as hypernyms")
        let turtle = db.nounSynsets("turtle")
        XCTAssertEqual(db.name(turtle[0]), "turtleneck.n.01")
    }

    func testTaggedSenseCounts() {
        XCTAssertEqual(db.taggedSenseCount("black", as: .noun), 1)
        XCTAssertEqual(db.taggedSenseCount("black", as: .adjective), 8)
        XCTAssertNil(db.taggedSenseCount("zebra", as: .verb))
        XCTAssertEqual(db.exceptionBases("mice", as: .noun), ["mouse"])
    }

    func testMissingDatabaseNamesThePathAndTheFix() {
        XCTAssertThrowsError(try WordNetDatabase(directory: "/nonexistent/wordnet")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("/nonexistent/wordnet/data.noun"), text)
            XCTAssertTrue(text.contains("make setup"), text)
        }
    }

    func testDamagedDatabaseIsAnErrorNotACrash() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["index.noun", "index.verb", "index.adj", "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc"] {
            try FileManager.default.copyItem(
                atPath: WordNetDatabase.defaultDirectory + "/" + name, toPath: dir.path + "/" + name)
        }
        try Data("00001740 03 n zz garbage\n".utf8).write(to: dir.appendingPathComponent("data.noun"))
        XCTAssertThrowsError(try WordNetDatabase(directory: dir.path)) { error in
            XCTAssertTrue(String(describing: error).contains("data.noun"), "\(error)")
        }
    }
}

final class MorphyTests: XCTestCase {
    let db = sharedDatabase

    func testHandPickedLemmas() {
        let cases: [(String, String)] = [
            ("dogs", "dog"), ("mice", "mouse"), ("geese", "goose"), ("children", "child"),
            ("boxes", "box"), ("churches", "church"), ("dishes", "dish"), ("women", "woman"),
            ("berries", "berry"), ("wolves", "wolf"), ("glasses", "glass"), ("buses", "bus"),
            ("dog", "dog"), ("news", "news"), ("xyzzy", "xyzzy"), ("hot_dogs", "hot_dog"),
            ("ponies", "pony"), ("series", "series"), ("oxen", "ox"), ("criteria", "criterion"),
        ]
        for (word, lemma) in cases {
            XCTAssertEqual(db.lemmatize(word), lemma, word)
        }
        XCTAssertEqual(db.lemmatize("running", as: .verb), "run")
        XCTAssertEqual(db.lemmatize("bigger", as: .adjective), "big")
        XCTAssertEqual(db.morphy("axes", as: .noun), ["ax", "axis"])  // noun.exc: axes ax axis
    }

    /// Agreement with NLTK's WordNetLemmatizer on the committed reference list (made by
    /// Fixtures/make_references.py with NLTK over the same database).
    func testAgreesWithNLTKReference() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let path = root.appendingPathComponent("morphy_nltk.tsv").path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw XCTSkip("no morphy_nltk.tsv yet")
        }
        var checked = 0
        var mismatches: [String] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 2 else { continue }
            checked += 1
            let got = db.lemmatize(String(fields[0]))
            if got != fields[1] { mismatches.append("\(fields[0]): NLTK \(fields[1]), catlip \(got)") }
        }
        XCTAssertGreaterThanOrEqual(checked, 1000)
        XCTAssertEqual(mismatches, [], "\(mismatches.count) of \(checked) differ")
    }
}

final class LabellerTests: XCTestCase {
    let db = sharedDatabase

    func wnids(_ caption: String, _ mode: LabelMode = .corenet) -> [String] {
        Labeller(database: db, mode: mode).synsets(caption).map { db.wnid($0) }
    }

    func names(_ caption: String, _ mode: LabelMode) -> [String] {
        Labeller(database: db, mode: mode).synsets(caption).map { db.name($0) }
    }

    /// The example of CATLIP.md: corenet's rule labels "black" as a noun.
    func testCorenetExample() {
        XCTAssertEqual(names("An image of black dog.", .corenet), ["image.n.01", "black.n.01", "dog.n.01"])
    }

    /// Agreement with corenet's rule as NLTK runs it, on the committed edge-case captions.
    func testAgreesWithNLTKPeerOnReferenceCaptions() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let data = try Data(contentsOf: root.appendingPathComponent("corenet_captions.tsv"))
        let labeller = Labeller(database: db, mode: .corenet)
        var total = 0
        var differences: [String] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            guard let tab = line.lastIndex(of: "\t") else { continue }
            total += 1
            let caption = String(line[..<tab])
            let expected = line[line.index(after: tab)...].split(separator: ",").map(String.init)
            let got = labeller.synsets(caption).map { db.wnid($0) }
            if got != expected {
                differences.append("\(caption.prefix(80)) | NLTK \(expected) | catlip \(got)")
            }
        }
        XCTAssertGreaterThan(total, 200)
        XCTAssertEqual(differences, [], "\(differences.count) of \(total) differ")
    }
}

final class NounsModeTests: XCTestCase {
    let db = sharedDatabase

    func labels(_ caption: String) -> [CaptionLabel] {
        Labeller(database: db, mode: .nouns).labels(caption)
    }

    func testAdjectivesAndVerbsDropOutNounsStay() {
        XCTAssertEqual(labels("An image of black dog.").map(\.lemma), ["image", "dog"])
        XCTAssertEqual(labels("the dog runs fast").map(\.lemma), ["dog"])
        XCTAssertEqual(labels("a red car is sitting in the street").map(\.lemma), ["car", "street"])
        // crane: its first noun sense is a person and it is tagged only as a verb: dropped.
        XCTAssertEqual(labels("a crane").map(\.lemma), [])
    }

    func testMultiWordLemmasLongestFirst() {
        XCTAssertEqual(labels("two hot dogs and ice cream").map(\.lemma), ["hot_dog", "ice_cream"])
        XCTAssertEqual(labels("a teddy bear on a bed").map(\.lemma), ["teddy_bear", "bed"])
        XCTAssertEqual(labels("polar bear").map(\.lemma), ["polar_bear"])
    }

    func testConcreteSensesForPictures() {
        let wanted: [(String, String)] = [
            ("tiger", "noun.animal"), ("whale", "noun.animal"), ("bear", "noun.animal"),
            ("dolphin", "noun.animal"), ("pig", "noun.animal"), ("robot", "noun.artifact"),
            ("duck", "noun.animal"), ("apple", "noun.food"), ("watch", "noun.artifact"),
            // WordNet's most frequent concrete sense of seal is the stamp, not the animal.
            ("seal", "noun.artifact"),
        ]
        for (word, file) in wanted {
            let l = labels(word)
            XCTAssertEqual(l.count, 1, word)
            XCTAssertEqual(l.first.map { db.lexicographerFile($0.synset) }, file, "\(word): \(l.first?.reason ?? "")")
        }
        // corenet's rule drops these (first sense not headed by the word).
        let corenet = Labeller(database: db, mode: .corenet)
        for word in ["dolphin", "robot", "pig"] { XCTAssertEqual(corenet.synsets(word), [], word) }
    }

    func testReasonIsReported() throws {
        let tiger = try XCTUnwrap(labels("tiger").first)
        XCTAssertEqual(db.wnid(tiger.synset), "n02129604")
        XCTAssertEqual(tiger.reason, "first concrete sense (noun.animal), sense 2 of 2")
    }
}

final class CaptionEdgeCaseTests: XCTestCase {
    let db = sharedDatabase

    func testCleanUp() {
        XCTAssertEqual(CaptionText.clean("  A <b>Dog</b>%20on+the   MAT\n"), "a dog on the mat")
        XCTAssertEqual(CaptionText.clean("cafÃ© table"), "café table")
        XCTAssertEqual(CaptionText.clean("ＤＯＧ ﬁsh “quoted”"), "dog fish \"quoted\"")
        XCTAssertEqual(CaptionText.clean("100% sure & <unclosed"), "100% sure & <unclosed")
        XCTAssertEqual(CaptionText.clean("fish &amp; chips"), "fish & chips")
    }

    func testTokenizer() {
        func t(_ s: String) -> [String] { Tokenizer.tokenize(s) }
        XCTAssertEqual(t("the dog's toy, a cat."), ["the", "dog", "'s", "toy", ",", "a", "cat", "."])
        XCTAssertEqual(t("don't (t-shirt) 3,000 a.m."), ["do", "n't", "(", "t-shirt", ")", "3,000", "a.m."])
        XCTAssertEqual(t("wow!! dog...cat \"hi\""), ["wow", "!", "!", "dog", "...", "cat", "\"", "hi", "\""])
        XCTAssertEqual(t(""), [])
    }

    /// Hostile captions never crash and give no labels (or few), whatever the mode.
    func testHostileCaptions() {
        let invalidUTF8 = String(decoding: [0xFF, 0xFE, 0x64, 0x6F, 0x67, 0xC3], as: UTF8.self)
        let huge = String(repeating: "dog cat ", count: 200_000)  // 1.6 MB
        let captions = [
            "", "   ", "🐶🐱🎉", "猫と犬", "собака и кошка", invalidUTF8, huge, "%", "%zz%2", "<<<>>>",
            String(repeating: "'", count: 1000), String(repeating: "a-", count: 5000), "\u{0}\u{1}dog",
        ]
        for mode in LabelMode.allCases {
            let labeller = Labeller(database: db, mode: mode)
            for caption in captions { _ = labeller.labels(caption) }
            XCTAssertEqual(labeller.synsets(""), [])
            XCTAssertEqual(labeller.synsets("🐶🐱🎉"), [])
            XCTAssertEqual(labeller.synsets(huge).map { db.headLemma($0) }, ["dog", "cat"])
        }
        XCTAssertLessThanOrEqual(CaptionText.clean(huge).utf8.count, CaptionText.maximumBytes)
    }

    func testEmojiNamesConcreteSenses() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let names = try String(contentsOf: root.appendingPathComponent("emoji_names.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        XCTAssertGreaterThan(names.count, 400)
        func concrete(_ mode: LabelMode) -> Int {
            let labeller = Labeller(database: db, mode: mode)
            return names.filter { name in
                labeller.synsets(name).contains { Labeller.concreteFiles.contains(db.lexicographerFileNumber($0)) }
            }.count
        }
        let corenet = concrete(.corenet), nouns = concrete(.nouns)
        print("emoji names with a concrete label: corenet \(corenet), nouns \(nouns) of \(names.count)")
        XCTAssertGreaterThan(nouns, corenet + 50)
    }
}

final class VocabularyTests: XCTestCase {
    let db = sharedDatabase
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// Counts over a small caption set, checked by hand: dog 3, cat 2 (cats), mat 1, image 1.
    func testBuildCountsExactly() throws {
        let captions = ["a dog on a mat", "dogs and cats", "an image of a dog and a dog", "the cat", ""]
        let labeller = Labeller(database: db, mode: .corenet)
        var counts: [SynsetID: Int] = [:]
        for c in captions { for s in labeller.synsets(c) { counts[s, default: 0] += 1 } }
        let vocabulary = Vocabulary.build(counts: counts, database: db, minimumCount: 1)
        XCTAssertEqual(vocabulary.entries.map(\.wnid), ["n02084071", "n02121620", "n03727837", "n05928118"])
        XCTAssertEqual(vocabulary.entries.map(\.count), [3, 2, 1, 1])
        XCTAssertEqual(vocabulary.entries[0].lemmas, ["dog", "domestic_dog", "Canis_familiaris"])
        let two = Vocabulary.build(counts: counts, database: db, minimumCount: 2)
        XCTAssertEqual(two.count, 2)
        XCTAssertEqual(Vocabulary.build(counts: counts, database: db, minimumCount: 1, maximumSize: 3).count, 3)

        let path = directory.appendingPathComponent("vocab.tsv").path
        try vocabulary.write(path: path)
        XCTAssertEqual(
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first,
            "n02084071\t3\tdog,domestic_dog,Canis_familiaris")
        XCTAssertEqual(try Vocabulary.load(path: path, database: db), vocabulary)
    }

    func testCorenetKeysAreAccepted() throws {
        let path = directory.appendingPathComponent("keys.txt").path
        try Data("n5928118\nn2084071 17\n".utf8).write(to: URL(fileURLWithPath: path))
        let v = try Vocabulary.load(path: path, database: db)
        XCTAssertEqual(v.entries.map(\.wnid), ["n05928118", "n02084071"])
        XCTAssertEqual(v.entries.map(\.count), [0, 17])
        XCTAssertEqual(v.entries[1].lemmas.first, "dog")
        XCTAssertEqual(v.classIndex(wnid: "n2084071"), 1)
    }

    func testStopListKeepsItsWordsSensesOutOfTheVocabulary() throws {
        let illustration = db.nounSynsets("illustration")
        let vector = db.nounSynsets("vector")
        let dog = db.synset(wnid: "n02084071")!
        XCTAssertFalse(illustration.isEmpty)
        var counts: [SynsetID: Int] = [dog: 60]
        for s in illustration + vector { counts[s] = 100 }
        let (stopped, unknown) = StopList.default.synsets(in: db)
        XCTAssertTrue(unknown.isEmpty, "every built-in stop word is a WordNet noun: \(unknown)")
        XCTAssertTrue(Set(illustration + vector).isSubset(of: stopped))
        XCTAssertFalse(stopped.contains(dog))
        let v = Vocabulary.build(counts: counts, database: db, minimumCount: 50, excluding: stopped)
        XCTAssertEqual(v.entries.map(\.wnid), ["n02084071"])
        XCTAssertEqual(Vocabulary.build(counts: counts, database: db, minimumCount: 50).count, 1 + Set(illustration + vector).count)

        // a user's file: words (plurals through morphy), wnids, comments; unknown words reported
        let path = directory.appendingPathComponent("stop.txt").path
        try Data("# medium words\nIllustrations\n\nn2084071\nxyzzy\n".utf8).write(to: URL(fileURLWithPath: path))
        let list = try StopList.read(path: path)
        XCTAssertEqual(list.entries, ["illustrations", "n2084071", "xyzzy"])
        let (fromFile, missing) = list.synsets(in: db)
        XCTAssertTrue(Set(illustration).isSubset(of: fromFile))
        XCTAssertTrue(fromFile.contains(dog))
        XCTAssertEqual(missing, ["xyzzy"])
        // not a regular file, or not text: an error naming the file
        XCTAssertThrowsError(try StopList.read(path: directory.path)) { XCTAssertTrue("\($0)".hasPrefix(self.directory.path), "\($0)") }
        try Data([0xFF, 0xFE, 0x00]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try StopList.read(path: path)) { XCTAssertTrue("\($0)".contains("UTF-8"), "\($0)") }
    }

    func testBadVocabularyLinesNameTheLine() throws {
        for (text, fragment) in [
            ("n02084071\t3\tdog\nhello\t1\tx\n", ":2: 'hello' is not a wnid"),
            ("n02084071\nn2084071\n", ":2: duplicate n02084071"),
            ("n02084071\tmany\tdog\n", ":1: count 'many'"),
            ("n99999999\t1\tx\n", ":1: n99999999 is not a WordNet 3.0 noun synset"),
        ] {
            let path = directory.appendingPathComponent("v.tsv").path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Vocabulary.load(path: path, database: db)) { error in
                XCTAssertTrue(String(describing: error).contains(fragment), "\(error)")
            }
        }
    }

    func testLabelCacheRoundTripAndInvalidation() throws {
        let vocabulary = Vocabulary(entries: [
            .init(wnid: "n02084071", count: 3, lemmas: ["dog"]), .init(wnid: "n02121620", count: 2, lemmas: ["cat"]),
        ])
        let keys = ["a.jpg", "b.jpg", "c.jpg"]
        let cache = LabelCache.build(
            keys: keys, captions: ["cats chasing a dog", "nothing here", "dog dog"], vocabulary: vocabulary,
            database: db, mode: .corenet, threads: 2)
        XCTAssertEqual(cache.labels(for: "a.jpg").map(Array.init), [0, 1])
        XCTAssertEqual(cache.labels(for: "b.jpg").map(Array.init), [])
        XCTAssertEqual(cache.labels(for: "c.jpg").map(Array.init), [0])
        XCTAssertNil(cache.labels(for: "zzz"))

        let path = directory.appendingPathComponent("m.tsv.labels").path
        try cache.write(path: path)
        let fingerprint = LabelCache.fingerprint(vocabulary: vocabulary, mode: .corenet)
        XCTAssertEqual(try LabelCache.load(path: path, expectedFingerprint: fingerprint), cache)

        // Another vocabulary order, or another mode: refused, naming the file.
        let swapped = Vocabulary(entries: vocabulary.entries.reversed())
        for other in [
            LabelCache.fingerprint(vocabulary: swapped, mode: .corenet),
            LabelCache.fingerprint(vocabulary: vocabulary, mode: .nouns),
        ] {
            XCTAssertNotEqual(other, fingerprint)
            XCTAssertThrowsError(try LabelCache.load(path: path, expectedFingerprint: other)) { error in
                XCTAssertTrue(String(describing: error).contains(path))
                XCTAssertTrue(String(describing: error).contains("another vocabulary"))
            }
        }
        // Damaged files: every truncation is an error, never a crash.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for cut in stride(from: 0, to: bytes.count, by: 3) {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try LabelCache.load(path: path, expectedFingerprint: fingerprint))
        }
    }
}

final class FastPathTests: XCTestCase {
    let db = sharedDatabase

    /// The memoised byte path and the inspection path label every caption alike.
    func testFastPathEqualsDetailedPath() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let data = try Data(contentsOf: root.appendingPathComponent("corenet_captions.tsv"))
        let captions = textLines(data).map { line in line.split(separator: "\t", omittingEmptySubsequences: false).dropLast().joined(separator: "\t") }
        for mode in LabelMode.allCases {
            let fast = Labeller(database: db, mode: mode), slow = Labeller(database: db, mode: mode)
            for caption in captions + captions {  // twice: the second pass reads the memo
                XCTAssertEqual(fast.synsets(caption), slow.labels(caption).map(\.synset), "\(mode): \(caption.prefix(60))")
            }
        }
    }

    func testTokenMemoGrowsAndFindsEverything() {
        var memo = TokenMemo()
        let keys = (0..<70_000).map { Array("token\($0)".utf8) }
        for (i, key) in keys.enumerated() {
            key.withUnsafeBufferPointer { memo.insert($0, hash: TokenMemo.hash($0), value: Int32(i)) }
        }
        for (i, key) in keys.enumerated() {
            let found = key.withUnsafeBufferPointer { memo.find($0, hash: TokenMemo.hash($0)) }
            XCTAssertEqual(found, Int32(i))
        }
        let missing = Array("token70000".utf8)
        XCTAssertNil(missing.withUnsafeBufferPointer { memo.find($0, hash: TokenMemo.hash($0)) })
        let empty: [UInt8] = []
        XCTAssertNil(empty.withUnsafeBufferPointer { memo.find($0, hash: TokenMemo.hash($0)) })
    }
}
