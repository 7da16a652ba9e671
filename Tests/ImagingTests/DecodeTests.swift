import Dispatch
import Foundation
import XCTest

@testable import Imaging

/// Decoding against the fixtures in Fixtures/decode, made by Fixtures/make_decode_fixtures.py.
/// manifest.json says, for each file, the RGB8 image it must decode to (within a per-channel
/// tolerance) or the kind of error it must raise; expected images are themselves RGB8 PNGs read
/// with the decoder under test.
final class DecodeTests: XCTestCase {
    // MARK: - Manifest

    /// Header fields `ImageDecoder.info` must report; absent fields are not checked.
    struct ExpectedInfo: Decodable, Sendable {
        let format: String?
        let width: Int?
        let height: Int?
        let channels: Int?
        let bitDepth: Int?
        let colorSpace: String?
        let interlaced: Bool?
        let hasAlpha: Bool?

        enum CodingKeys: String, CodingKey {
            case format, width, height, channels, interlaced
            case bitDepth = "bit_depth"
            case colorSpace = "color_space"
            case hasAlpha = "has_alpha"
        }
    }

    /// One fixture and what decoding it must give.
    struct Case: Decodable, Sendable {
        let file: String
        let expected: String?
        let tolerance: Int
        let error: String?
        let orientation: Int?
        let info: ExpectedInfo?
        let expectedBlack: String?
        let nonstrictExpected: String?
        let note: String

        enum CodingKeys: String, CodingKey {
            case file, expected, tolerance, error, orientation, info, note
            case expectedBlack = "expected_black"
            case nonstrictExpected = "nonstrict_expected"
        }

        /// The error kind the manifest names, or nil for a file that must decode.
        var errorKind: ImageError.Kind? {
            get throws {
                guard let error else { return nil }
                guard let kind = ImageError.Kind(rawValue: error) else {
                    throw ManifestError(message: "\(file): unknown error kind \(error)")
                }
                return kind
            }
        }
    }

    struct Manifest: Decodable {
        let cases: [Case]
    }

    struct ManifestError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// The fixture directory inside the test bundle.
    static func directory() throws -> String {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw ManifestError(message: "Fixtures missing from the test bundle")
        }
        return url.appendingPathComponent("decode").path
    }

    static func path(_ name: String) throws -> String {
        try directory() + "/" + name
    }

    static func loadCases() throws -> [Case] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try path("manifest.json")))
        let cases = try JSONDecoder().decode(Manifest.self, from: data).cases
        if cases.isEmpty { throw ManifestError(message: "manifest.json lists no cases") }
        return cases
    }

    /// Decodes an expected-output PNG, which must be plain RGB8.
    static func expectedImage(_ name: String) throws -> RGBImage {
        let p = try path(name)
        let bytes = try readFileBytes(p)
        let info = try ImageDecoder.info(bytes, source: p)
        precondition(
            info.format == .png && info.channels == 3 && info.bitDepth == 8 && !info.hasAlpha,
            "\(name) is not an RGB8 PNG")
        return try ImageDecoder.decode(bytes, source: p)
    }

    // MARK: - Comparison

    /// How two images differ: nil when same size and within `tolerance` everywhere, otherwise
    /// one line with the largest difference, where it is and how many samples are over.
    static func difference(_ got: RGBImage, _ want: RGBImage, tolerance: Int) -> String? {
        if got.width != want.width || got.height != want.height {
            return "size \(got.width)x\(got.height), expected \(want.width)x\(want.height)"
        }
        var largest = 0
        var at = 0
        var over = 0
        got.pixels.withUnsafeBufferPointer { g in
            want.pixels.withUnsafeBufferPointer { w in
                for i in 0..<g.count {
                    let d = abs(Int(g[i]) - Int(w[i]))
                    if d > tolerance { over += 1 }
                    if d > largest {
                        largest = d
                        at = i
                    }
                }
            }
        }
        if over == 0 { return nil }
        let pixel = at / 3
        let channel = ["R", "G", "B"][at % 3]
        return "max abs diff \(largest) (tolerance \(tolerance)) at x=\(pixel % got.width) "
            + "y=\(pixel / got.width) \(channel): got \(got.pixels[at]), expected "
            + "\(want.pixels[at]); \(over) of \(got.pixels.count) samples over tolerance"
    }

    static func largestDifference(_ a: RGBImage, _ b: RGBImage) -> Int {
        guard a.width == b.width && a.height == b.height else { return Int.max }
        return zip(a.pixels, b.pixels).reduce(0) { max($0, abs(Int($1.0) - Int($1.1))) }
    }

    /// Runs `body`, which must throw an `ImageError` of `kind` naming `source`.
    func assertImageError<T>(
        _ kind: ImageError.Kind, source: String, _ what: String,
        file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
    ) {
        do {
            _ = try body()
            XCTFail("\(what): no error, expected \(kind.rawValue)", file: file, line: line)
        } catch let error as ImageError {
            XCTAssertEqual(
                error.kind, kind, "\(what): wrong kind; message: \(error.message)", file: file,
                line: line)
            XCTAssertEqual(
                error.source, source, "\(what): error must name the file", file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, "\(what): empty message", file: file, line: line)
        } catch {
            XCTFail(
                "\(what): threw \(type(of: error)) \(error), not ImageError", file: file, line: line
            )
        }
    }

    // MARK: - Fixtures

    func testManifestMatchesFixtureFiles() throws {
        let cases = try Self.loadCases()
        let listed = Set(cases.map(\.file))
        XCTAssertEqual(listed.count, cases.count, "duplicate files in manifest.json")
        var referenced = listed
        for c in cases {
            for name in [c.expected, c.expectedBlack, c.nonstrictExpected].compactMap({ $0 }) {
                referenced.insert(name)
                XCTAssertTrue(
                    FileManager.default.fileExists(atPath: try Self.path(name)),
                    "\(c.file): \(name) missing")
            }
            XCTAssertTrue(
                (c.expected == nil) != (c.error == nil),
                "\(c.file): needs an expected image or an error")
            XCTAssertNoThrow(try c.errorKind, c.file)
        }
        let onDisk = try FileManager.default.contentsOfDirectory(atPath: try Self.directory())
        for name in onDisk where name != "manifest.json" {
            XCTAssertTrue(referenced.contains(name), "\(name) is not in manifest.json")
        }
    }

    func testDecodesToExpectedPixels() throws {
        var worst: [(String, Int)] = []
        for c in try Self.loadCases() {
            guard let expectedName = c.expected else { continue }
            let p = try Self.path(c.file)
            let want = try Self.expectedImage(expectedName)
            let got: RGBImage
            do {
                got = try ImageDecoder.decode(try readFileBytes(p), source: p)
            } catch {
                XCTFail("\(c.file) (\(c.note)): \(error)")
                continue
            }
            if let problem = Self.difference(got, want, tolerance: c.tolerance) {
                XCTFail("\(c.file) (\(c.note)): \(problem)")
            }
            worst.append((c.file, Self.largestDifference(got, want)))
        }
        let nonzero = worst.filter { $0.1 > 0 }.map { "\($0.0)=\($0.1)" }
        print("decode-fixtures: \(worst.count) decoded, nonzero max diffs: \(nonzero)")
    }

    func testInfoMatchesManifest() throws {
        for c in try Self.loadCases() {
            let p = try Self.path(c.file)
            let bytes = try readFileBytes(p)
            let info: ImageInfo
            do {
                info = try ImageDecoder.info(bytes, source: p)
            } catch let error as ImageError {
                // A header-level defect may surface here already, but only as the manifest's kind.
                if c.info != nil || c.error == nil {
                    XCTFail("\(c.file): info threw \(error)")
                } else {
                    XCTAssertEqual(error.kind, try c.errorKind, "\(c.file): info: \(error.message)")
                    XCTAssertEqual(error.source, p)
                }
                continue
            }
            if c.error == nil {
                XCTAssertEqual(info.orientation, c.orientation ?? 1, "\(c.file): orientation")
                // info's size is the upright size of what decode returns.
                let image = try ImageDecoder.decode(bytes, source: p)
                XCTAssertEqual(info.width, image.width, "\(c.file): info width vs decoded")
                XCTAssertEqual(info.height, image.height, "\(c.file): info height vs decoded")
            }
            guard let e = c.info else { continue }
            let f = c.file
            if let v = e.format { XCTAssertEqual(info.format.rawValue, v, "\(f): format") }
            if let v = e.width { XCTAssertEqual(info.width, v, "\(f): width") }
            if let v = e.height { XCTAssertEqual(info.height, v, "\(f): height") }
            if let v = e.channels { XCTAssertEqual(info.channels, v, "\(f): channels") }
            if let v = e.bitDepth { XCTAssertEqual(info.bitDepth, v, "\(f): bit depth") }
            if let v = e.colorSpace { XCTAssertEqual(info.colorSpace, v, "\(f): colour space") }
            if let v = e.interlaced { XCTAssertEqual(info.interlaced, v, "\(f): interlaced") }
            if let v = e.hasAlpha { XCTAssertEqual(info.hasAlpha, v, "\(f): has alpha") }
        }
    }

    func testBadInputsThrowNamedErrors() throws {
        var checked = 0
        for c in try Self.loadCases() {
            guard let kind = try c.errorKind else { continue }
            let p = try Self.path(c.file)
            let bytes = try readFileBytes(p)
            assertImageError(kind, source: p, "\(c.file) (\(c.note))") {
                try ImageDecoder.decode(bytes, source: p)
            }
            // The same through the region decoder, which has its own JPEG path. It stops after
            // the rows it needs, so ask for the whole image at full size: damage anywhere counts.
            let size = (try? ImageDecoder.info(bytes, source: p)).map { ($0.width, $0.height) }
            let (w, h) = size ?? (1, 1)
            assertImageError(kind, source: p, "\(c.file) region decode") {
                try ImageDecoder.decode(
                    bytes, source: p, crop: Rect(x0: 0, y0: 0, x1: Double(w), y1: Double(h)),
                    minimumSize: (width: w, height: h))
            }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 15)
    }

    func testSourceIsWhateverTheCallerPassed() throws {
        let bytes = try readFileBytes(try Self.path("not_image.gif"))
        assertImageError(.unsupportedFormat, source: "shard-0003/sample-17.jpg", "gif by key") {
            try ImageDecoder.decode(bytes, source: "shard-0003/sample-17.jpg")
        }
    }

    func testReadFileBytesErrorsNameThePath() throws {
        let missing = try Self.path("no-such-file.jpg")
        assertImageError(.io, source: missing, "missing file") { try readFileBytes(missing) }
        let dir = try Self.directory()
        assertImageError(.notRegularFile, source: dir, "directory") { try readFileBytes(dir) }
        XCTAssertEqual(try readFileBytes(try Self.path("empty.jpg")), [])
    }

    // MARK: - Options

    func testNonStrictDecodesTruncatedJPEGWithGreyFill() throws {
        let c = try XCTUnwrap(try Self.loadCases().first { $0.file == "bad_truncated.jpg" })
        let p = try Self.path(c.file)
        let bytes = try readFileBytes(p)
        let image = try ImageDecoder.decode(
            bytes, source: p, options: DecodeOptions(strict: false))
        XCTAssertEqual(image.width, 48)
        XCTAssertEqual(image.height, 48)
        let want = try Self.expectedImage(try XCTUnwrap(c.nonstrictExpected))
        if let problem = Self.difference(image, want, tolerance: 0) {
            XCTFail("\(c.file) non-strict: \(problem)")
        }
        // The missing part is grey: the whole last row is (128, 128, 128).
        let lastRow = image.pixels[(47 * 48 * 3)...]
        XCTAssertTrue(
            lastRow.allSatisfy { $0 == 128 }, "last row not grey: \(Array(lastRow.prefix(9)))")
        // Corrupt entropy data also decodes when not strict.
        let garbage = try Self.path("bad_garbage_entropy.jpg")
        XCTAssertNoThrow(
            try ImageDecoder.decode(
                try readFileBytes(garbage), source: garbage, options: DecodeOptions(strict: false)))
    }

    func testBackgroundColourIsUsedForTransparency() throws {
        var checked = 0
        for c in try Self.loadCases() {
            guard let blackName = c.expectedBlack, let whiteName = c.expected else { continue }
            let p = try Self.path(c.file)
            let bytes = try readFileBytes(p)
            let black = try ImageDecoder.decode(
                bytes, source: p, options: DecodeOptions(background: .black))
            if let problem = Self.difference(black, try Self.expectedImage(blackName), tolerance: 0)
            {
                XCTFail("\(c.file) on black: \(problem)")
            }
            XCTAssertNotEqual(
                black, try Self.expectedImage(whiteName), "\(c.file): background had no effect")
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 10)

        // Any colour: a fully transparent pixel is exactly the background, an opaque one its own
        // colour. Column 0 of png_rgba{8,16} has alpha 0, column 1 full alpha.
        let colour = RGBColor(red: 12, green: 34, blue: 56)
        for name in ["png_rgba8.png", "png_rgba16.png", "png_greyalpha16.png"] {
            let p = try Self.path(name)
            let bytes = try readFileBytes(p)
            let custom = try ImageDecoder.decode(
                bytes, source: p, options: DecodeOptions(background: colour))
            let white = try ImageDecoder.decode(bytes, source: p)
            for y in 0..<custom.height {
                XCTAssertEqual(custom[0, y], colour, "\(name) (0, \(y))")
                XCTAssertEqual(custom[1, y], white[1, y], "\(name) (1, \(y))")
            }
        }
    }

    func testBackgroundDoesNotChangeOpaqueImages() throws {
        for name in [
            "jpeg_baseline_420_37x23.jpg", "png_rgb16.png", "png_pal4.png", "png_grey2.png",
        ] {
            let p = try Self.path(name)
            let bytes = try readFileBytes(p)
            XCTAssertEqual(
                try ImageDecoder.decode(
                    bytes, source: p, options: DecodeOptions(background: .black)),
                try ImageDecoder.decode(bytes, source: p), name)
        }
    }

    func testMaxPixelsRefusesLargerImages() throws {
        for (name, pixels) in [
            ("png_rgb8.png", 19 * 13), ("jpeg_baseline_420_37x23.jpg", 37 * 23),
            ("jpeg_progressive_420_37x23.jpg", 37 * 23),
        ] {
            let p = try Self.path(name)
            let bytes = try readFileBytes(p)
            assertImageError(.tooLarge, source: p, "\(name) maxPixels \(pixels - 1)") {
                try ImageDecoder.decode(
                    bytes, source: p, options: DecodeOptions(maxPixels: pixels - 1))
            }
            XCTAssertNoThrow(
                try ImageDecoder.decode(
                    bytes, source: p, options: DecodeOptions(maxPixels: pixels)),
                name)
        }
        // The bomb is refused from its header even with a generous limit (testInfoMatchesManifest
        // checks that info still reports the size the header claims).
        let bomb = try Self.path("bomb_30000x30000.jpg")
        let bytes = try readFileBytes(bomb)
        assertImageError(.tooLarge, source: bomb, "bomb with 500M limit") {
            try ImageDecoder.decode(
                bytes, source: bomb, options: DecodeOptions(maxPixels: 500_000_000))
        }
    }

    func testMaxScansLimitsProgressiveJPEG() throws {
        let p = try Self.path("jpeg_progressive_420_37x23.jpg")
        let bytes = try readFileBytes(p)
        assertImageError(.corrupt, source: p, "progressive with maxScans 2") {
            try ImageDecoder.decode(bytes, source: p, options: DecodeOptions(maxScans: 2))
        }
        XCTAssertNoThrow(
            try ImageDecoder.decode(bytes, source: p, options: DecodeOptions(maxScans: 100)))
        let baseline = try Self.path("jpeg_baseline_420_37x23.jpg")
        XCTAssertNoThrow(
            try ImageDecoder.decode(
                try readFileBytes(baseline), source: baseline, options: DecodeOptions(maxScans: 1)))
    }

    func testApplyOrientationFalseKeepsStoredPixels() throws {
        // All orientation fixtures hold the same stored image; only the EXIF tag differs.
        let stored = try Self.expectedImage("jpeg_exif_orientation_1.expected.png")
        for n in 1...8 {
            let name = "jpeg_exif_orientation_\(n).jpg"
            let p = try Self.path(name)
            let image = try ImageDecoder.decode(
                try readFileBytes(p), source: p, options: DecodeOptions(applyOrientation: false))
            if let problem = Self.difference(image, stored, tolerance: 0) {
                XCTFail("\(name) without orientation: \(problem)")
            }
            // The fixture itself must be transformed, or the check above proves nothing.
            if n > 1 {
                let upright = try Self.expectedImage("jpeg_exif_orientation_\(n).expected.png")
                XCTAssertNotEqual(upright, stored, "\(name): fixture is not transformed")
            }
        }
    }

    // MARK: - Robustness

    /// A small deterministic generator (SplitMix64) so that every run tests the same variants.
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    }

    /// One random damage: flipped bits, set bytes, a cut, an insertion, a deletion, a repeat,
    /// or an extreme 16-bit value (marker lengths, sizes) somewhere in the first 200 bytes.
    static func mutate(_ original: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = original
        let operations = 1 + rng.below(3)
        for _ in 0..<operations where !b.isEmpty {
            switch rng.below(7) {
            case 0:
                for _ in 0..<(1 + rng.below(8)) {
                    b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))
                }
            case 1:
                for _ in 0..<(1 + rng.below(4)) {
                    b[rng.below(b.count)] = [0x00, 0xFF, rng.byte()][rng.below(3)]
                }
            case 2:
                b.removeSubrange(rng.below(b.count)...)
            case 3:
                let at = rng.below(b.count + 1)
                b.insert(contentsOf: (0..<(1 + rng.below(16))).map { _ in rng.byte() }, at: at)
            case 4:
                let at = rng.below(b.count)
                b.removeSubrange(at..<min(b.count, at + 1 + rng.below(64)))
            case 5:
                let at = rng.below(b.count)
                let chunk = b[at..<min(b.count, at + 1 + rng.below(64))]
                b.insert(contentsOf: chunk, at: rng.below(b.count + 1))
            default:
                let at = rng.below(min(b.count, 200))
                let value: [UInt8] = [[0, 0], [0xFF, 0xFF], [0, 1], [0x7F, 0xFF]][rng.below(4)]
                for (i, v) in value.enumerated() where at + i < b.count { b[at + i] = v }
            }
        }
        return b
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Recomputes every complete chunk's CRC so that damage reaches past libpng's CRC checks.
    static func fixPNGChunkCRCs(_ b: inout [UInt8]) {
        var p = 8
        while p + 12 <= b.count {
            let length = Int(b[p]) << 24 | Int(b[p + 1]) << 16 | Int(b[p + 2]) << 8 | Int(b[p + 3])
            guard length >= 0, p + 12 + length <= b.count else { return }
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in b[(p + 4)..<(p + 8 + length)] {
                crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            crc ^= 0xFFFF_FFFF
            for i in 0..<4 {
                b[p + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i))
            }
            p += 12 + length
        }
    }

    /// Decodes `count` mutations of each of `names`: each must decode or throw an `ImageError`
    /// naming its source, never crash or throw anything else.
    func fuzz(_ names: [String], count: Int, seed: UInt64, fixCRC: Bool) throws {
        var rng = SplitMix64(state: seed)
        var outcomes: [String: Int] = [:]
        let originals = try names.map { try readFileBytes(try Self.path($0)) }
        // A low pixel limit keeps damaged sizes from allocating and decoding huge images.
        let options = [
            DecodeOptions(maxPixels: 1 << 20), DecodeOptions(maxPixels: 1 << 20, strict: false),
        ]
        for i in 0..<count {
            var bytes = Self.mutate(originals[i % originals.count], &rng)
            if fixCRC && i % 2 == 0 { Self.fixPNGChunkCRCs(&bytes) }
            let source = "\(names[i % names.count])#\(i)"
            for (j, o) in options.enumerated() where j == 0 || i % 3 == 0 {
                do {
                    let image = try ImageDecoder.decode(bytes, source: source, options: o)
                    XCTAssertEqual(image.pixels.count, image.width * image.height * 3, source)
                    outcomes["decoded", default: 0] += 1
                } catch let error as ImageError {
                    XCTAssertEqual(error.source, source)
                    outcomes[error.kind.rawValue, default: 0] += 1
                } catch {
                    XCTFail("\(source): threw \(type(of: error)) \(error)")
                }
            }
            do {
                _ = try ImageDecoder.info(bytes, source: source)
            } catch let error as ImageError {
                XCTAssertEqual(error.source, source)
            } catch {
                XCTFail("\(source): info threw \(type(of: error)) \(error)")
            }
        }
        let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        print("decode-fuzz \(names): \(count) variants, outcomes \(summary)")
    }

    /// Variants per fuzz test: 320 by default; CATLIP_DECODE_FUZZ=N for a longer hunt.
    static let fuzzCount =
        Int(ProcessInfo.processInfo.environment["CATLIP_DECODE_FUZZ"] ?? "") ?? 320

    func testMutatedJPEGsDecodeOrThrow() throws {
        try fuzz(
            [
                "jpeg_baseline_420_37x23.jpg", "jpeg_progressive_420_37x23.jpg",
                "jpeg_restart_blocks_37x23.jpg", "jpeg_exif_orientation_6.jpg",
            ],
            count: Self.fuzzCount, seed: 0x6361_746C_6970_0001, fixCRC: false)
    }

    func testMutatedPNGsDecodeOrThrow() throws {
        try fuzz(
            ["png_rgba8.png", "png_pal4_trns_adam7.png", "png_rgb16_trns.png", "png_grey2.png"],
            count: Self.fuzzCount, seed: 0x6361_746C_6970_0002, fixCRC: true)
    }

    /// Shared results of the concurrent test.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Int: String] = [:]
        func set(_ i: Int, _ value: String) {
            lock.lock()
            values[i] = value
            lock.unlock()
        }
        func get(_ i: Int) -> String? {
            lock.lock()
            defer { lock.unlock() }
            return values[i]
        }
    }

    /// The outcome of decoding a file, as a string that equal outcomes share.
    static func outcome(_ p: String, _ bytes: [UInt8]) -> String {
        do {
            let image = try ImageDecoder.decode(bytes, source: p)
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a over the pixels
            for b in image.pixels { hash = (hash ^ UInt64(b)) &* 0x100_0000_01B3 }
            return "\(image.width)x\(image.height) \(hash)"
        } catch let error as ImageError {
            return "error \(error.kind.rawValue) \(error.source)"
        } catch {
            return "other error \(error)"
        }
    }

    func testConcurrentDecodingGivesIdenticalResults() throws {
        let cases = try Self.loadCases()
        let inputs = try cases.map { c -> (String, [UInt8]) in
            let p = try Self.path(c.file)
            return (p, try readFileBytes(p))
        }
        let serial = inputs.map { Self.outcome($0.0, $0.1) }
        let results = Results()
        let rounds = 4
        DispatchQueue.concurrentPerform(iterations: inputs.count * rounds) { i in
            // Interleave different files across threads.
            let k = (i * 7919) % inputs.count
            results.set(i, "\(k) " + Self.outcome(inputs[k].0, inputs[k].1))
        }
        for i in 0..<(inputs.count * rounds) {
            let k = (i * 7919) % inputs.count
            XCTAssertEqual(results.get(i), "\(k) " + serial[k], cases[k].file)
        }
    }
}
