import Evaluation
import WordNet
import XCTest

/// Dataset classes to head rows: wnids, names, plurals, multi-word names, the sense a name
/// denotes when several are in the vocabulary, hyponym and hypernym fallbacks, unmapped
/// classes, and classes that share rows.
final class ClassMappingTests: XCTestCase {
    static let database = Result { try WordNetDatabase() }

    /// A vocabulary of these wnids, in this order (rows 0, 1, ...).
    func mapper(_ wnids: [String]) throws -> ClassMapper {
        let db = try Self.database.get()
        let entries = wnids.enumerated().map { i, w in
            Vocabulary.Entry(wnid: w, count: 1000 - i, lemmas: Array(db.lemmas(db.synset(wnid: w)!)))
        }
        return ClassMapper(vocabulary: Vocabulary(entries: entries), database: db)
    }

    // dog, cat, car, teddy bear, turtle (reptile), turtleneck, animal, food
    let vocab = ["n02084071", "n02121620", "n02958343", "n04399382", "n01662784", "n04502197", "n00015388", "n00021265"]

    func testWnidsAndNamesMapDirectly() throws {
        let m = try mapper(vocab)
        for (query, row) in [("n02084071", 0), ("n2084071", 0), ("dog", 0), ("Dogs", 0), ("teddy bear", 3), ("teddy_bear", 3), ("cars", 2), ("cat", 1)] {
            let r = m.map(query)
            XCTAssertEqual(r.route, .direct, query)
            XCTAssertEqual(r.rows, [row], query)
        }
    }

    func testTheSenseANameHeadsWinsAndTheOtherIsReported() throws {
        let db = try Self.database.get()
        let m = try mapper(vocab)
        let turtle = m.map("turtle")
        XCTAssertEqual(turtle.route, .direct)
        XCTAssertEqual(turtle.rows, [4], "the reptile (head lemma turtle), not the turtleneck WordNet lists first")
        XCTAssertEqual(turtle.alternatives.map { db.wnid($0) }, ["n04502197"])
        XCTAssertTrue(turtle.note.contains("other sense"), turtle.note)
        // with only the turtleneck in the vocabulary, that is the sense present
        let only = try mapper(["n04502197"]).map("turtle")
        XCTAssertEqual(only.rows, [0])
        XCTAssertEqual(only.route, .direct)
    }

    func testFallbacksBelowThenAbove() throws {
        let db = try Self.database.get()
        let m = try mapper(vocab)
        // canine is not in the vocabulary; dog is below it
        let canine = m.map("canine")
        XCTAssertEqual(canine.route, .hyponyms)
        XCTAssertEqual(canine.rows, [0])
        XCTAssertEqual(canine.synset.map { db.wnid($0) }, "n02083346", "the animal sense has rows below it, the tooth has none")
        // puppy: nothing at or below it; dog is one step up
        let puppy = m.map("puppy")
        XCTAssertEqual(puppy.route, .hypernym)
        XCTAssertEqual(puppy.rows, [0])
        XCTAssertEqual(puppy.hypernymDistance, 1)
        // a hamster reaches "animal" several steps up
        let hamster = m.map("hamster")
        XCTAssertEqual(hamster.route, .hypernym)
        XCTAssertEqual(hamster.rows, [6])
        XCTAssertGreaterThan(hamster.hypernymDistance ?? 0, 3)
        // "carnivore" has dog and cat below it
        XCTAssertEqual(m.map("carnivore").rows, [0, 1])
    }

    func testUnmappedClassesAreReportedNotFatal() throws {
        let m = try mapper(vocab)
        for q in ["xyzzy", "quickly", "", "n99999999", "n0"] {
            let r = m.map(q)
            XCTAssertEqual(r.route, .unmapped, q)
            XCTAssertTrue(r.rows.isEmpty, q)
            XCTAssertFalse(r.note.isEmpty, q)
        }
        // a real noun with nothing related in a vocabulary of one unrelated synset
        let r = try mapper(["n02958343"]).map("idea")
        XCTAssertEqual(r.route, .unmapped)
        XCTAssertNotNil(r.synset)
    }

    func testMultiWordNamesWordNetLacksFallBackToTheirHeadNoun() throws {
        let m = try mapper(vocab)
        // the longest trailing run WordNet knows: "teddy bear", then "car"
        for (query, head, row) in [
            ("striped sports car", "sports car", 2), ("baby teddy bears", "teddy bears", 3), ("cute fluffy dog", "dog", 0),
            ("plate of food", "plate", nil), ("bowl of cats", "bowl", nil), ("cats of the world", "cats", 1),
        ] as [(String, String, Int?)] {
            let r = m.map(query)
            XCTAssertEqual(r.headNoun, head, query)
            XCTAssertTrue(r.note.contains("head noun '\(head)'"), r.note)
            if let row { XCTAssertEqual(r.rows, [row], query) }
        }
        // a name WordNet has whole is not cut ("teddy bear", "sports car" is a lemma itself)
        XCTAssertNil(m.map("teddy bear").headNoun)
        XCTAssertNil(m.map("sports car").headNoun)
        XCTAssertNil(m.map("dog").headNoun)
        // nothing in any part: unmapped, no head noun
        let none = m.map("xyzzy plugh")
        XCTAssertEqual(none.route, .unmapped)
        XCTAssertNil(none.headNoun)
    }

    func testClassesSharingRowsAreFlagged() throws {
        let m = try mapper(vocab)
        let all = m.map(["dog", "puppy", "cat", "hamster", "animal"])
        XCTAssertEqual(all[0].sharedWith, ["puppy"])
        XCTAssertEqual(all[1].sharedWith, ["dog"])
        XCTAssertEqual(all[2].sharedWith, [])
        XCTAssertEqual(all[3].sharedWith, ["animal"])
        XCTAssertEqual(all[4].sharedWith, ["hamster"])
    }

    func testAUserMapChoosesTheSynset() throws {
        let db = try Self.database.get()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("classmap-\(UUID().uuidString).tsv").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "# name<TAB>wnid\ndoggo\tn02084071\nTurtle\tn4502197\n\n".write(toFile: path, atomically: true, encoding: .utf8)
        let user = try ClassMapper.readUserMap(path: path, database: db)
        XCTAssertEqual(user, ["doggo": "n02084071", "Turtle": "n04502197"])
        let m = ClassMapper(vocabulary: try mapper(vocab).vocabulary, database: db, userMap: user)
        XCTAssertEqual(m.map("doggo").rows, [0])
        XCTAssertEqual(m.map("turtle").rows, [5], "the user's choice (turtleneck), case-insensitively")
        XCTAssertEqual(m.map("dog").rows, [0])
        try "doggo n02084071\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClassMapper.readUserMap(path: path, database: db)) { XCTAssertTrue("\($0)".contains("line 1"), "\($0)") }
        try "doggo\tn99999999\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClassMapper.readUserMap(path: path, database: db))
    }
}
