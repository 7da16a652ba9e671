import Support
import Foundation
import Imaging
import TestSupport
import XCTest

@testable import WordNet

/// Untrusted WordNet-side inputs (issue 17): captions with endless distinct long tokens, and
/// mutated vocab.tsv and label-cache files, end in correct results or clean errors.
final class HostileInputTests: ScratchDirectoryTestCase {
    let db = sharedDatabase

    // MARK: - The token memo

    /// A memo whose arena is a few hundred bytes starts afresh many times over captions of long
    /// distinct tokens (the Int32 indices never pass the arena's bound) and labels exactly like
    /// the unmemoised path.
    func testTokenMemoStartsAfreshAtItsArenaBound() throws {
        var rng = SeededGenerator(seed: 3)
        let words = ["dog", "cats", "a", "tiger", "the", "black", "bicycle", "tree", "ice", "cream", "hot", "dog", "image"]
        var captions: [String] = []
        for _ in 0..<400 {
            var tokens: [String] = []
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                if Bool.random(using: &rng) {
                    tokens.append(words.randomElement(using: &rng)!)
                } else {
                    // A distinct long token, sometimes longer than the whole arena.
                    let length = Int.random(in: 20...700, using: &rng)
                    tokens.append(String((0..<length).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement(using: &rng)! }))
                }
            }
            captions.append(tokens.joined(separator: " "))
        }
        for mode in LabelMode.allCases {
            let small = Labeller(database: db, mode: mode, memoArenaBytes: 512)
            let plain = Labeller(database: db, mode: mode)
            for (n, caption) in (captions + captions).enumerated() {
                XCTAssertEqual(small.synsets(caption), plain.labels(caption).map(\.synset), "\(mode) caption \(n)")
            }
        }
    }

    func testTokenMemoKeepsItsArenaWithinTheBound() {
        var memo = TokenMemo(arenaBytes: 100)
        for i in 0..<1000 {
            let key = Array(String(repeating: "x", count: 1 + i % 150).utf8) + Array("\(i)".utf8)
            key.withUnsafeBufferPointer { memo.insert($0, hash: TokenMemo.hash($0), value: Int32(i)) }
            let found = key.withUnsafeBufferPointer { memo.find($0, hash: TokenMemo.hash($0)) }
            // Memoised unless longer than the whole arena.
            XCTAssertEqual(found, key.count <= 100 ? Int32(i) : nil, "token \(i) of \(key.count) bytes")
        }
        XCTAssertEqual(TokenMemo(arenaBytes: Int.max).arenaBytes, Int(Int32.max))
    }

    // MARK: - vocab.tsv

    func validVocabulary() -> Vocabulary {
        var counts: [SynsetID: Int] = [:]
        let labeller = Labeller(database: db, mode: .corenet)
        for (i, caption) in ["a dog on a bicycle", "two cats and a tiger", "ice cream in a cup", "a tree by the river", "an image of a car"].enumerated() {
            for id in labeller.synsets(caption) { counts[id, default: 0] += 10 - i }
        }
        return Vocabulary.build(counts: counts, database: db, minimumCount: 1)
    }

    func testMutatedVocabularyFilesLoadOrFailCleanly() throws {
        let valid = validVocabulary().tsv()
        XCTAssertGreaterThan(validVocabulary().count, 5)
        let path = directory + "/vocab.tsv"
        var rng = SeededGenerator(seed: 29)
        var loaded = 0, refused = 0
        for n in 0..<Fuzz.caseCount(quick: 800) {
            let text = Fuzz.mutateText(valid, using: &rng)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            do {
                let vocabulary = try Vocabulary.load(path: path, database: n % 2 == 0 ? db : nil)
                loaded += 1
                XCTAssertLessThanOrEqual(vocabulary.count, text.split(separator: "\n").count, "case \(n)")
                XCTAssertEqual(Set(vocabulary.entries.map(\.wnid)).count, vocabulary.count, "case \(n)")
                for e in vocabulary.entries {
                    XCTAssertEqual(Vocabulary.padded(e.wnid), e.wnid, "case \(n)")
                    XCTAssertGreaterThanOrEqual(e.count, 0, "case \(n)")
                }
            } catch let error as VocabularyError {
                refused += 1
                XCTAssertFalse(error.message.isEmpty, "case \(n)")
                XCTAssertTrue(error.description.hasPrefix(path), "case \(n): \(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    func testVocabularyFromADeviceOrFIFOIsRefused() throws {
        XCTAssertEqual(mkfifo(directory + "/fifo.tsv", 0o644), 0)
        for path in ["/dev/zero", directory + "/fifo.tsv", directory] {
            XCTAssertThrowsError(try Vocabulary.load(path: path)) { error in
                XCTAssertTrue("\(error)".hasPrefix(path + ": cannot read the file: is a "), "\(error)")
            }
        }
    }

    // MARK: - Label caches

    func testMutatedLabelCachesLoadOrFailCleanly() throws {
        let keys = (0..<40).map { "shard-\($0 / 10)/\(String(format: "%04d", $0))" }
        let labels: [[UInt32]] = (0..<40).map { i in (0..<(i % 5)).map { UInt32(($0 * 7 + i) % 23) } }
        let cache = LabelCache(fingerprint: 0xC0FFEE, classCount: 23, keys: keys, labels: labels)
        let path = directory + "/labels.bin"
        try cache.write(path: path)
        let valid = try SafeFile.read(path, maxBytes: 1 << 20)
        XCTAssertEqual(try LabelCache.load(path: path, expectedFingerprint: 0xC0FFEE), cache)
        var rng = SeededGenerator(seed: 31)
        var loaded = 0, refused = 0
        for n in 0..<Fuzz.caseCount(quick: 600) {
            let bytes = Fuzz.mutate(valid, using: &rng)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let got = try LabelCache.load(path: path, expectedFingerprint: 0xC0FFEE)
                loaded += 1
                XCTAssertLessThanOrEqual(got.count, bytes.count / 8, "case \(n)")
                for i in 0..<got.count {
                    XCTAssertTrue(got.labels(at: i).allSatisfy { Int($0) < got.classCount }, "case \(n)")
                }
            } catch let error as LabelCacheError {
                refused += 1
                XCTAssertFalse(error.message.isEmpty, "case \(n)")
                XCTAssertEqual(error.path, path, "case \(n)")
            }
        }
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    /// A label count near 2^32 under a huge class count is refused from the bytes left, not
    /// answered with a 16 GiB reservation.
    func testHugeLabelCountIsRefusedBeforeAllocating() throws {
        let cache = LabelCache(fingerprint: 5, classCount: 3, keys: ["k"], labels: [[1]])
        var bytes = cache.encoded()
        // classCount at 16, then key length, key, label count.
        bytes.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0xFF, 0xFF])
        bytes.replaceSubrange(29..<33, with: [0xFE, 0xFF, 0xFF, 0xFF])
        let path = directory + "/huge.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try LabelCache.load(path: path, expectedFingerprint: 5)) { error in
            XCTAssertEqual("\(error)", "\(path): damaged label cache: labels run past the end (at byte 33)")
        }
    }
}
