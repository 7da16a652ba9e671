import Foundation
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
