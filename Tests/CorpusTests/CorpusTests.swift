import Foundation
import Imaging
import Shards
import Support
import WordNet
import XCTest

@testable import Corpus

/// WordNet 3.0 from Debian's wordnet-base (installed by `make setup`).
let database: WordNetDatabase = {
    do { return try WordNetDatabase() } catch { fatalError("WordNet 3.0 is needed: \(error)") }
}()

/// The members of a tar file, in order.
func tarMembers(_ path: String) throws -> [TarMember] {
    let reader = try TarReader(path: path)
    var out: [TarMember] = []
    while let member = try reader.next() { out.append(member) }
    return out
}

/// Every sample of the shards in `directory`: key -> (caption, metadata JSON).
func samples(in directory: String) throws -> [String: (caption: String, meta: [String: Any])] {
    var out: [String: (String, [String: Any])] = [:]
    let tars = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".tar") }.sorted()
    for tar in tars {
        var captions: [String: String] = [:]
        var metas: [String: [String: Any]] = [:]
        for m in try tarMembers(directory + "/" + tar) {
            let key = String(m.name.prefix(while: { $0 != "." }))
            if m.name.hasSuffix(".txt") { captions[key] = String(decoding: m.data, as: UTF8.self) }
            if m.name.hasSuffix(".json") {
                metas[key] = try JSONSerialization.jsonObject(with: Data(m.data)) as? [String: Any]
            }
        }
        for (key, caption) in captions { out[key] = (caption, metas[key]!) }
    }
    return out
}

final class AlphaTests: XCTestCase {
    /// Straight RGBA samples and what libpng-style compositing on black makes of them.
    let straight: [UInt8] = [200, 100, 50, 128, 10, 250, 30, 255, 77, 66, 55, 0, 255, 255, 255, 1, 3, 200, 99, 254, 128, 64, 32, 17]

    func testDecodeRecoversCoverageAndPremultipliedColourExactly() throws {
        let png = RGBAPNG.encode(width: 3, height: 2, rgba: straight)
        let sprite = try Sprite.decode(png, source: "synthetic.png")
        XCTAssertEqual(sprite.width, 3)
        XCTAssertEqual(sprite.height, 2)
        for i in 0..<6 {
            let a = Int(straight[4 * i + 3])
            XCTAssertEqual(Int(sprite.pixels[4 * i + 3]), a, "alpha of pixel \(i)")
            for c in 0..<3 {
                // round(c * a / 255), as libpng's 8-bit compositing on black rounds it.
                let premultiplied = (Int(straight[4 * i + c]) * a + 127) / 255
                XCTAssertEqual(Int(sprite.pixels[4 * i + c]), premultiplied, "channel \(c) of pixel \(i)")
            }
        }
    }

    func testCompositingOverABackgroundIsPorterDuffOver() throws {
        let png = RGBAPNG.encode(width: 3, height: 2, rgba: straight)
        let sprite = try Sprite.decode(png, source: "synthetic.png")
        let background: [UInt8] = [40, 120, 230]
        var canvas = Canvas(size: 5)
        canvas.fill(SIMD3(Float(background[0]) / 255, Float(background[1]) / 255, Float(background[2]) / 255))
        // Corner at (1, 2): centre at 1 + 3/2, 2 + 2/2; no rotation, so pixels are copied.
        let placed = canvas.place(sprite, at: Placement(centerX: 2.5, centerY: 3))
        XCTAssertEqual([placed.x, placed.y, placed.width, placed.height], [1, 2, 3, 2])
        canvas.composite(placed)
        let image = canvas.image()
        for y in 0..<5 {
            for x in 0..<5 {
                let inside = x >= 1 && x < 4 && y >= 2 && y < 4
                for c in 0..<3 {
                    let got = Int(image.pixels[(y * 5 + x) * 3 + c])
                    var want = Int(background[c])
                    if inside {
                        let i = (y - 2) * 3 + (x - 1)
                        let a = Double(straight[4 * i + 3]), v = Double(straight[4 * i + c])
                        want = Int(((v * a + Double(background[c]) * (255 - a)) / 255).rounded())
                    }
                    // One step for the rounding of the premultiplied colour.
                    XCTAssertLessThanOrEqual(abs(got - want), 1, "pixel (\(x), \(y)) channel \(c)")
                }
            }
        }
    }

    func testFlattenedMatchesTheDecoderOnAWhiteBackground() throws {
        let png = RGBAPNG.encode(width: 3, height: 2, rgba: straight)
        let sprite = try Sprite.decode(png, source: "synthetic.png")
        let decoded = try ImageDecoder.decode(png, source: "synthetic.png", options: DecodeOptions(background: .white))
        let flat = sprite.flattened(onto: .white)
        for (a, b) in zip(flat.pixels, decoded.pixels) { XCTAssertLessThanOrEqual(abs(Int(a) - Int(b)), 1) }
    }

    func testOpaqueImagesGetFullCoverage() throws {
        let png = try PNGEncoder.encode(RGBImage(width: 2, height: 2, fill: RGBColor(red: 9, green: 8, blue: 7)), source: "x")
        let sprite = try Sprite.decode(png, source: "x")
        XCTAssertEqual(sprite.pixels, [UInt8]([9, 8, 7, 255, 9, 8, 7, 255, 9, 8, 7, 255, 9, 8, 7, 255]))
    }

    func testResizingKeepsColourWithinCoverage() throws {
        let png = RGBAPNG.encode(width: 3, height: 2, rgba: straight)
        let sprite = try Sprite.decode(png, source: "synthetic.png").resized(width: 7, height: 5)
        for i in 0..<(7 * 5) {
            for c in 0..<3 { XCTAssertLessThanOrEqual(sprite.pixels[4 * i + c], sprite.pixels[4 * i + 3]) }
        }
        let reduced = sprite.boxReduced(by: 2)
        XCTAssertEqual([reduced.width, reduced.height], [4, 3])
    }

    func testRotationKeepsTheDrawingInsideItsBox() {
        let sprite = Sprite(width: 10, height: 4, pixels: [UInt8](repeating: 255, count: 10 * 4 * 4))
        let canvas = Canvas(size: 32)
        let placed = canvas.place(sprite, at: Placement(centerX: 16, centerY: 16, angle: .pi / 2))
        // A quarter turn: 4 wide, 10 high.
        XCTAssertEqual(placed.width, 4)
        XCTAssertEqual(placed.height, 10)
        XCTAssertEqual(placed.opaquePixels, 40)
    }
}

final class CaptionTests: XCTestCase {
    func testEnoughTemplates() {
        XCTAssertGreaterThanOrEqual(Captions.templates.count, 20)
        XCTAssertGreaterThanOrEqual(Set(Captions.templates).count, Captions.templates.count)
    }

    func testPluralsAndArticles() {
        XCTAssertEqual(Captions.plural("dog"), "dogs")
        XCTAssertEqual(Captions.plural("hot dog"), "hot dogs")
        XCTAssertEqual(Captions.plural("box"), "boxes")
        XCTAssertEqual(Captions.plural("cherry"), "cherries")
        XCTAssertEqual(Captions.plural("key"), "keys")
        XCTAssertEqual(Captions.plural("knife"), "knives")
        XCTAssertEqual(Captions.plural("woman"), "women")
        XCTAssertEqual(Captions.plural("sheep"), "sheep")
        XCTAssertEqual(Captions.article("apple"), "an")
        XCTAssertEqual(Captions.article("dog"), "a")
    }

    func testKeywordOnlyCaptionsStillCarryEveryNoun() {
        var g = SeededGenerator(seed: 7)
        let objects = [
            CaptionObject(name: "slice of pizza", noun: "pizza", plural: "pizzas", keywords: ["food", "cheese"]),
            CaptionObject(name: "dog face", noun: "dog", plural: "dogs", keywords: ["pet"], count: 2),
        ]
        for _ in 0..<200 {
            let list = Captions.keywordList(objects, using: &g)
            XCTAssertTrue(list.hasPrefix("pizza"), list)
            XCTAssertTrue(list.contains("dogs"), list)
        }
    }
}

final class ManifestTests: XCTestCase {
    func testBadLinesAreNamed() throws {
        let path = NSTemporaryDirectory() + "corpus-bad-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = """
            {"image": "a.png", "name": "dog", "noun": "dog", "source": "s", "item": "1"}
            {"image": "b.png", "name": "cat"}

            """
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        XCTAssertThrowsError(try ObjectManifest.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains(":2: "), "\(error)")
        }
    }

    func testRelativeImagesResolveAgainstTheManifest() throws {
        let objects = try SyntheticObjects()
        XCTAssertEqual(objects.records.count, SyntheticObjects.drawings.count)
        XCTAssertEqual(objects.records[0].image, objects.directory + "/png/0.png")
        XCTAssertEqual(objects.records[0].group, "synthetic:item0")
    }
}

final class ComposeTests: XCTestCase {
    func makeLibrary(_ objects: SyntheticObjects, size: Int = 48, threads: Int = 2) throws -> ObjectLibrary {
        try ObjectLibrary(
            records: objects.records, heldout: ObjectManifest.load(path: objects.heldoutPath), size: size,
            labeller: Labeller(database: database), threads: threads)
    }

    func testSampleNumbersSpreadTheSinglesEvenly() throws {
        let objects = try SyntheticObjects()
        let library = try makeLibrary(objects)
        let writer = CorpusWriter(
            composer: SceneComposer(library: library, config: ComposerConfig(size: 48), seed: 1), scenes: 23, singles: 9,
            perShard: 5)
        let kinds = (0..<writer.total).map(writer.sampleKind)
        XCTAssertEqual(kinds.filter(\.single).map(\.index), Array(0..<9))
        XCTAssertEqual(kinds.filter { !$0.single }.map(\.index), Array(0..<23))
        XCTAssertEqual(writer.shardCount, 7)
    }

    func testCompositionIsDeterministicForAnyThreadCount() throws {
        let objects = try SyntheticObjects()
        // The library itself must not depend on the decode threads.
        let one = try makeLibrary(objects, threads: 1)
        let two = try makeLibrary(objects, threads: 2)
        XCTAssertEqual(one.objects.map(\.sprite), two.objects.map(\.sprite))

        func write(_ library: ObjectLibrary, seed: UInt64, threads: Int) throws -> (String, CorpusSummary) {
            let dir = objects.directory + "/out-\(seed)-\(threads)"
            let writer = CorpusWriter(
                composer: SceneComposer(library: library, config: ComposerConfig(size: 48), seed: seed), scenes: 60,
                singles: library.objects.count, perShard: 16)
            return (dir, try writer.write(to: dir, threads: threads))
        }
        let (a, summaryA) = try write(one, seed: 5, threads: 1)
        let (b, summaryB) = try write(two, seed: 5, threads: 2)
        let (c, _) = try write(two, seed: 6, threads: 2)
        XCTAssertEqual(summaryA, summaryB)
        XCTAssertEqual(summaryA.scenes, 60)
        XCTAssertEqual(summaryA.singles, SyntheticObjects.drawings.count - SyntheticObjects.heldoutCount)
        let names = try FileManager.default.contentsOfDirectory(atPath: a).sorted()
        XCTAssertEqual(names, ["00000.tar", "00001.tar", "00002.tar", "00003.tar", "00004.tar"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b).sorted(), names)
        var differs = false
        for name in names {
            let bytesA = FileManager.default.contents(atPath: a + "/" + name)
            XCTAssertEqual(bytesA, FileManager.default.contents(atPath: b + "/" + name), name)
            if bytesA != FileManager.default.contents(atPath: c + "/" + name) { differs = true }
        }
        XCTAssertTrue(differs, "another seed gives other scenes")
        // Samples of one kind and number are the same whatever else is written around them.
        let composer = SceneComposer(library: two, config: ComposerConfig(size: 48), seed: 5)
        XCTAssertEqual(composer.scene(17).image, composer.scene(17).image)
        XCTAssertEqual(composer.scene(17).caption, composer.scene(17).caption)
    }

    func testCaptionsNameExactlyThePastedObjects() throws {
        let objects = try SyntheticObjects()
        let library = try makeLibrary(objects)
        let labeller = Labeller(database: database)
        let templateSynsets = Set(labeller.synsets(Captions.templateVocabulary))
        let composer = SceneComposer(library: library, config: ComposerConfig(size: 48), seed: 11)
        var counted = 0
        var captions = Set<String>()
        for i in 0..<400 {
            let sample = i % 4 == 3 ? composer.single(i) : composer.scene(i)
            captions.insert(sample.caption)
            let caption = Set(labeller.synsets(sample.caption))
            var allowed = templateSynsets
            for (slot, o) in sample.objects.enumerated() {
                let object = library.objects[o]
                let noun = Set(labeller.synsets(object.record.noun))
                XCTAssertTrue(
                    noun.isSubset(of: caption),
                    "\"\(sample.caption)\" does not name \(object.record.noun) (copies: \(sample.counts[slot]))")
                let text = ([object.record.name, object.record.noun, object.plural ?? ""] + object.record.keywords)
                allowed.formUnion(labeller.synsets(text.joined(separator: ", ")))
                counted += noun.isEmpty ? 0 : 1
            }
            let extra = caption.subtracting(allowed).map { database.headLemma($0) }
            XCTAssertTrue(extra.isEmpty, "\"\(sample.caption)\" names \(extra), which no pasted object or template has")
        }
        XCTAssertGreaterThan(counted, 400, "the checks saw labelled nouns")
        XCTAssertGreaterThan(captions.count, 300, "captions vary")
    }

    func testScenesShowOneToFourDrawingsMostlyVisible() throws {
        let objects = try SyntheticObjects()
        let library = try makeLibrary(objects)
        let composer = SceneComposer(library: library, config: ComposerConfig(size: 48), seed: 3)
        var pasteCounts = Set<Int>()
        var kinds = Set<String>()
        var rotated = 0, flipped = 0, repeated = 0, visible = 0, pastes = 0
        for i in 0..<300 {
            let s = composer.scene(i)
            pasteCounts.insert(s.pastes.count)
            kinds.insert(s.background.kind)
            XCTAssertEqual(s.counts.reduce(0, +), s.pastes.count)
            if s.counts.contains(where: { $0 > 1 }) { repeated += 1 }
            for p in s.pastes {
                pastes += 1
                if p.angleDegrees != 0 { rotated += 1 }
                if p.flipped { flipped += 1 }
                if p.visiblePercent >= 50 { visible += 1 }
            }
        }
        XCTAssertEqual(pasteCounts, [1, 2, 3, 4])
        XCTAssertEqual(kinds, ["solid", "gradient", "noise", "texture"])
        XCTAssertGreaterThan(rotated, pastes / 5)
        XCTAssertGreaterThan(flipped, pastes / 3)
        XCTAssertGreaterThan(repeated, 10)
        XCTAssertGreaterThan(Double(visible) / Double(pastes), 0.97)
    }

    func testHeldOutDrawingsNeverAppear() throws {
        let objects = try SyntheticObjects()
        let library = try makeLibrary(objects)
        let heldoutItems = Set(objects.heldout.map(\.item))
        XCTAssertEqual(library.skipped["held out"], SyntheticObjects.heldoutCount)
        XCTAssertEqual(library.objects.count, SyntheticObjects.drawings.count - SyntheticObjects.heldoutCount)
        XCTAssertTrue(library.objects.allSatisfy { !heldoutItems.contains($0.record.item) })

        let dir = objects.directory + "/out"
        let writer = CorpusWriter(
            composer: SceneComposer(library: library, config: ComposerConfig(size: 48), seed: 9), scenes: 300,
            singles: library.objects.count, perShard: 100)
        _ = try writer.write(to: dir, threads: 2)
        let all = try samples(in: dir)
        XCTAssertEqual(all.count, 300 + library.objects.count)
        var textures = 0
        for (key, sample) in all {
            for object in sample.meta["objects"] as! [[String: Any]] {
                XCTAssertFalse(heldoutItems.contains(object["item"] as! String), "\(key) shows a held-out drawing")
            }
            let background = sample.meta["background"] as! [String: Any]
            if let texture = background["texture"] as? [String: Any] {
                textures += 1
                XCTAssertFalse(heldoutItems.contains(texture["item"] as! String), "\(key) is cut from a held-out drawing")
            }
            // Held-out names are not in the captions either ("bicycle", "clock" are nouns of
            // held-out drawings only).
            for r in objects.heldout { XCTAssertFalse(sample.caption.lowercased().contains(r.noun), sample.caption) }
        }
        XCTAssertGreaterThan(textures, 20)
    }
}
