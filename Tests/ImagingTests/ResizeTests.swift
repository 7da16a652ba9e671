import Foundation
import Support
import XCTest

@testable import Imaging

/// Resampling, cropping and crop geometry against Pillow and torchvision, with the fixtures in
/// Fixtures/resize made by Fixtures/make_resize_fixtures.py (every expected image and number
/// there comes from Pillow 13.0 / torchvision 0.28 themselves). The 8-bit path claims to be
/// bit-identical to Pillow, so image cases must match exactly; the float training path is
/// checked against the 8-bit path to within one level.
final class ResizeTests: XCTestCase {
    // MARK: - Manifest

    struct Input: Decodable, Sendable {
        let file: String
        let width: Int
        let height: Int
    }

    /// One image case; which fields are set depends on `kind`.
    struct Case: Decodable, Sendable {
        let name: String
        let kind: String
        let input: String
        let expected: String
        let expectedWidth: Int
        let expectedHeight: Int
        let filter: String?
        // resize, crop
        let width: Int?
        let height: Int?
        let box: [Double]?
        let x: Int?
        let y: Int?
        // resized_crop
        let top: Int?
        let left: Int?
        let outWidth: Int?
        let outHeight: Int?
        // shorter_side, timm_eval
        let size: Int?
        let cropWidth: Int?
        let cropHeight: Int?
        let cropPct: Double?
        let scaleSize: Int?
        /// Whether Pillow 13 resamples vertically first for this case's resize step.
        let pillowVerticalFirst: Bool?
        /// The box as Pillow uses it (float32 values).
        let boxFloat32: [Double]?

        enum CodingKeys: String, CodingKey {
            case name, kind, input, expected, filter, width, height, box, x, y, top, left, size
            case expectedWidth = "expected_width"
            case expectedHeight = "expected_height"
            case outWidth = "out_width"
            case outHeight = "out_height"
            case cropWidth = "crop_width"
            case cropHeight = "crop_height"
            case cropPct = "crop_pct"
            case scaleSize = "scale_size"
            case pillowVerticalFirst = "pillow_vertical_first"
            case boxFloat32 = "box_float32"
        }

        /// What is special about the case, for failure messages.
        var notes: String {
            var notes: [String] = []
            if pillowVerticalFirst == true { notes.append("Pillow 13 resamples vertically first") }
            if let box, let boxFloat32, box != boxFloat32 {
                notes.append("Pillow rounds the box to float32: \(boxFloat32)")
            }
            return notes.isEmpty ? "" : " [" + notes.joined(separator: "; ") + "]"
        }

        var resampleFilter: ResampleFilter {
            get throws {
                guard let filter, let f = ResampleFilter(rawValue: filter) else {
                    throw ManifestError(message: "\(name): bad filter \(filter ?? "nil")")
                }
                return f
            }
        }
    }

    struct ResizedSizeRow: Decodable, Sendable {
        let width, height, shorterSide, outWidth, outHeight: Int
        enum CodingKeys: String, CodingKey {
            case width, height
            case shorterSide = "shorter_side"
            case outWidth = "out_width"
            case outHeight = "out_height"
        }
    }

    struct CenterCropRow: Decodable, Sendable {
        let width, height, cropWidth, cropHeight, x, y: Int
        enum CodingKeys: String, CodingKey {
            case width, height, x, y
            case cropWidth = "crop_width"
            case cropHeight = "crop_height"
        }
    }

    struct EvalResizeRow: Decodable, Sendable {
        let size: Int
        let cropPct: Double
        let resize: Int
        enum CodingKeys: String, CodingKey {
            case size, resize
            case cropPct = "crop_pct"
        }
    }

    struct GeometryTables: Decodable, Sendable {
        let resizedSize: [ResizedSizeRow]
        let centerCropOrigin: [CenterCropRow]
        let evalResizeSize: [EvalResizeRow]
        enum CodingKeys: String, CodingKey {
            case resizedSize = "resized_size"
            case centerCropOrigin = "center_crop_origin"
            case evalResizeSize = "eval_resize_size"
        }
    }

    /// A `RandomResizedCrop.get_params` result; `words` (scripted cases only) are the raw
    /// generator outputs that reproduce torchvision's draws, in order.
    struct CropRow: Decodable, Sendable {
        let width, height: Int
        let scale: [Double]
        let ratio: [Double]
        let x, y, cropWidth, cropHeight: Int
        let words: [String]?
        let attempts: Int?
        enum CodingKeys: String, CodingKey {
            case width, height, scale, ratio, x, y, words, attempts
            case cropWidth = "crop_width"
            case cropHeight = "crop_height"
        }
    }

    /// torchvision's `get_params` statistics over many draws.
    struct CropStats: Decodable, Sendable {
        let width, height, draws: Int
        let scale: [Double]
        let ratio: [Double]
        let meanAreaFraction: Double
        let meanLogAspect: Double
        enum CodingKeys: String, CodingKey {
            case width, height, draws, scale, ratio
            case meanAreaFraction = "mean_area_fraction"
            case meanLogAspect = "mean_log_aspect"
        }
    }

    struct Manifest: Decodable, Sendable {
        let inputs: [String: Input]
        let cases: [Case]
        let geometry: GeometryTables
        let rrcFallback: [CropRow]
        let rrcScripted: [CropRow]
        let rrcStats: [CropStats]
        enum CodingKeys: String, CodingKey {
            case inputs, cases, geometry
            case rrcFallback = "rrc_fallback"
            case rrcScripted = "rrc_scripted"
            case rrcStats = "rrc_stats"
        }
    }

    struct ManifestError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    static func directory() throws -> String {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw ManifestError(message: "Fixtures missing from the test bundle")
        }
        return url.appendingPathComponent("resize").path
    }

    static func manifest() throws -> Manifest {
        let path = try directory() + "/manifest.json"
        return try JSONDecoder().decode(Manifest.self, from: Data(readFileBytes(path)))
    }

    static func image(_ name: String) throws -> RGBImage {
        let path = try directory() + "/" + name
        return try ImageDecoder.decode(readFileBytes(path), source: path)
    }

    static func inputs(_ manifest: Manifest) throws -> [String: RGBImage] {
        var images: [String: RGBImage] = [:]
        for (key, input) in manifest.inputs {
            let image = try image(input.file)
            XCTAssertEqual(image.width, input.width, input.file)
            XCTAssertEqual(image.height, input.height, input.file)
            images[key] = image
        }
        return images
    }

    // MARK: - Comparison

    /// Largest per-channel difference and number of pixels that differ at all.
    static func difference(_ a: RGBImage, _ b: RGBImage) -> (max: Int, pixels: Int) {
        precondition(a.width == b.width && a.height == b.height)
        var largest = 0
        var pixels = 0
        for i in 0..<(a.width * a.height) {
            var differs = false
            for c in 0..<3 {
                let d = abs(Int(a.pixels[3 * i + c]) - Int(b.pixels[3 * i + c]))
                largest = max(largest, d)
                if d != 0 { differs = true }
            }
            if differs { pixels += 1 }
        }
        return (largest, pixels)
    }

    /// Asserts `got` is pixel-identical to `want`; returns the largest difference (-1 for a
    /// size mismatch).
    @discardableResult
    static func assertIdentical(
        _ got: RGBImage, _ want: RGBImage, _ label: String, file: StaticString = #filePath,
        line: UInt = #line
    ) -> Int {
        guard got.width == want.width, got.height == want.height else {
            XCTFail(
                "\(label): size \(got.width)x\(got.height), expected \(want.width)x\(want.height)",
                file: file, line: line)
            return -1
        }
        let d = difference(got, want)
        if d.max != 0 {
            var first = ""
            for i in 0..<(got.width * got.height)
            where got.pixels[(3 * i)..<(3 * i + 3)] != want.pixels[(3 * i)..<(3 * i + 3)] {
                first =
                    "; first at (x \(i % got.width), y \(i / got.width)): got "
                    + "\(Array(got.pixels[(3 * i)..<(3 * i + 3)])), expected "
                    + "\(Array(want.pixels[(3 * i)..<(3 * i + 3)]))"
                break
            }
            XCTFail(
                "\(label): max abs diff \(d.max), \(d.pixels) of \(got.width * got.height) "
                    + "pixels differ\(first)", file: file, line: line)
        }
        return d.max
    }

    /// Runs `body` on every manifest case of `kind` against its expected image.
    func checkCases(_ kind: String, _ body: (Case, RGBImage, [UInt8]) throws -> RGBImage) throws {
        let manifest = try Self.manifest()
        let inputs = try Self.inputs(manifest)
        let cases = manifest.cases.filter { $0.kind == kind }
        XCTAssertFalse(cases.isEmpty, "no \(kind) cases")
        var failed: [String] = []
        for c in cases {
            guard let input = inputs[c.input], let info = manifest.inputs[c.input] else {
                throw ManifestError(message: "\(c.name): unknown input \(c.input)")
            }
            let bytes = try readFileBytes(Self.directory() + "/" + info.file)
            let want = try Self.image(c.expected)
            XCTAssertEqual(want.width, c.expectedWidth, c.name)
            XCTAssertEqual(want.height, c.expectedHeight, c.name)
            let got = try body(c, input, bytes)
            if Self.assertIdentical(got, want, c.name + c.notes) != 0 { failed.append(c.name) }
        }
        print(
            "ResizeTests: \(kind): \(cases.count - failed.count)/\(cases.count) cases exact"
                + (failed.isEmpty ? "" : "; differ: \(failed.joined(separator: ", "))"))
    }

    // MARK: - Pillow and torchvision images

    func testResizeMatchesPillow() throws {
        try checkCases("resize") { c, input, _ in
            let box = c.box.map { Rect(x0: $0[0], y0: $0[1], x1: $0[2], y1: $0[3]) }
            return input.resized(
                width: c.width!, height: c.height!, filter: try c.resampleFilter, box: box)
        }
    }

    func testCropMatchesPillow() throws {
        try checkCases("crop") { c, input, _ in
            input.cropped(x: c.x!, y: c.y!, width: c.width!, height: c.height!)
        }
    }

    func testResizedCropMatchesTorchvision() throws {
        try checkCases("resized_crop") { c, input, _ in
            input.resizedCrop(
                x: c.left!, y: c.top!, width: c.width!, height: c.height!,
                outputWidth: c.outWidth!, outputHeight: c.outHeight!, filter: try c.resampleFilter)
        }
    }

    /// The one-pass resized crop must equal the literal two steps (crop, then resize).
    func testResizedCropEqualsCropThenResize() throws {
        let inputs = try Self.inputs(Self.manifest())
        var generator = SeededGenerator(seed: 11)
        for key in inputs.keys.sorted() {
            let image = inputs[key]!
            for filter in ResampleFilter.allCases {
                for _ in 0..<40 {
                    let crop = Geometry.randomResizedCrop(
                        width: image.width, height: image.height, using: &generator)
                    let size = Int.random(in: 1...40, using: &generator)
                    let direct = image.resizedCrop(
                        x: crop.x, y: crop.y, width: crop.width, height: crop.height,
                        outputWidth: size, outputHeight: size, filter: filter)
                    let twoStep = image.cropped(
                        x: crop.x, y: crop.y, width: crop.width, height: crop.height
                    ).resized(width: size, height: size, filter: filter)
                    Self.assertIdentical(direct, twoStep, "\(key) \(crop) -> \(size) \(filter)")
                }
            }
        }
    }

    func testResizeShorterSideAndCenterCropMatchTorchvision() throws {
        try checkCases("shorter_side") { c, input, _ in
            let crop = c.cropWidth.map { ($0, c.cropHeight!) }
            return input.resizedShorterSide(
                to: c.size!, centerCrop: crop, filter: try c.resampleFilter)
        }
    }

    /// A centred crop of the resized image equals the whole resize cropped (or padded) after.
    func testResizeShorterSideEqualsResizeThenCrop() throws {
        let inputs = try Self.inputs(Self.manifest())
        for key in inputs.keys.sorted() {
            let image = inputs[key]!
            for filter in ResampleFilter.allCases {
                for (size, crop) in [(9, 7), (20, 24), (31, 31), (16, 3)] {
                    let whole = image.resizedShorterSide(to: size, filter: filter)
                    let o = Geometry.centerCropOrigin(
                        width: whole.width, height: whole.height, cropWidth: crop, cropHeight: crop)
                    let got = image.resizedShorterSide(
                        to: size, centerCrop: (crop, crop), filter: filter)
                    Self.assertIdentical(
                        got, whole.cropped(x: o.x, y: o.y, width: crop, height: crop),
                        "\(key) Resize(\(size)) CenterCrop(\(crop)) \(filter)")
                }
            }
        }
    }

    func testTimmEvalMatchesTorchvision() throws {
        try checkCases("timm_eval") { c, _, bytes in
            XCTAssertEqual(
                Geometry.evalResizeSize(size: c.size!, cropPct: c.cropPct!), c.scaleSize,
                c.name)
            let transform = EvalTransform(
                size: c.size!, cropPct: c.cropPct!, filter: try c.resampleFilter)
            let image = try transform.image(bytes, source: c.name)
            // The float output is the same pixels through writeCHW.
            var floats = [Float](repeating: .nan, count: transform.outputCount)
            var expected = [Float](repeating: .nan, count: transform.outputCount)
            try floats.withUnsafeMutableBufferPointer {
                try transform.apply(bytes, source: c.name, into: $0)
            }
            expected.withUnsafeMutableBufferPointer { image.writeCHW(into: $0) }
            XCTAssertEqual(floats, expected, "\(c.name): apply differs from image + writeCHW")
            return image
        }
    }

    // MARK: - Geometry

    func testResizedSizeMatchesTorchvision() throws {
        for r in try Self.manifest().geometry.resizedSize {
            let got = Geometry.resizedSize(
                width: r.width, height: r.height, shorterSide: r.shorterSide)
            XCTAssertEqual(
                [got.width, got.height], [r.outWidth, r.outHeight],
                "Resize(\(r.shorterSide)) of \(r.width)x\(r.height)")
        }
    }

    func testResizedSizeByHand() {
        func size(_ w: Int, _ h: Int, _ s: Int) -> [Int] {
            let r = Geometry.resizedSize(width: w, height: h, shorterSide: s)
            return [r.width, r.height]
        }
        XCTAssertEqual(size(500, 375, 256), [341, 256])  // 256 * 500 / 375 = 341.33
        XCTAssertEqual(size(375, 500, 256), [256, 341])
        XCTAssertEqual(size(97, 61, 24), [38, 24])  // 38.16
        XCTAssertEqual(size(13, 200, 8), [8, 123])  // 123.08
        XCTAssertEqual(size(40, 40, 17), [17, 17])  // square: width <= height branch
        XCTAssertEqual(size(3, 2, 3), [4, 3])  // 4.5 truncates
        XCTAssertEqual(size(300, 299, 299), [300, 299])
        XCTAssertEqual(size(1, 1000, 1), [1, 1000])
    }

    func testCenterCropOriginMatchesTorchvision() throws {
        for r in try Self.manifest().geometry.centerCropOrigin {
            let got = Geometry.centerCropOrigin(
                width: r.width, height: r.height, cropWidth: r.cropWidth, cropHeight: r.cropHeight)
            XCTAssertEqual(
                [got.x, got.y], [r.x, r.y],
                "CenterCrop(\(r.cropWidth)x\(r.cropHeight)) of \(r.width)x\(r.height)")
        }
    }

    func testCenterCropOriginRoundsHalfToEven() {
        func origin(_ size: Int, _ crop: Int) -> Int {
            Geometry.centerCropOrigin(
                width: size, height: 100, cropWidth: crop, cropHeight: 100
            ).x
        }
        // (size - crop) / 2 = 0.5, 1.5, 2.5, 3.5, 4.5: Python's round() gives 0, 2, 2, 4, 4.
        XCTAssertEqual(origin(10, 9), 0)
        XCTAssertEqual(origin(10, 7), 2)
        XCTAssertEqual(origin(10, 5), 2)
        XCTAssertEqual(origin(10, 3), 4)
        XCTAssertEqual(origin(10, 1), 4)
        // Whole numbers are exact.
        XCTAssertEqual(origin(10, 8), 1)
        XCTAssertEqual(origin(256, 224), 16)
        XCTAssertEqual(origin(10, 10), 0)
        // Larger crops: padded by (crop - size) // 2 on the left/top, the rest after.
        XCTAssertEqual(origin(38, 40), -1)
        XCTAssertEqual(origin(38, 41), -1)
        XCTAssertEqual(origin(3, 5), -1)
        XCTAssertEqual(origin(1, 4), -1)
        XCTAssertEqual(origin(1, 5), -2)
        // Both axes independently (y here).
        let o = Geometry.centerCropOrigin(width: 38, height: 24, cropWidth: 33, cropHeight: 21)
        XCTAssertEqual([o.x, o.y], [2, 2])  // 2.5 -> 2, 1.5 -> 2
    }

    func testEvalResizeSizeMatchesTimm() throws {
        for r in try Self.manifest().geometry.evalResizeSize {
            XCTAssertEqual(
                Geometry.evalResizeSize(size: r.size, cropPct: r.cropPct), r.resize,
                "floor(\(r.size) / \(r.cropPct))")
        }
        XCTAssertEqual(Geometry.evalResizeSize(size: 224, cropPct: 0.875), 256)
        XCTAssertEqual(Geometry.evalResizeSize(size: 224, cropPct: 0.9), 248)
        XCTAssertEqual(Geometry.evalResizeSize(size: 32, cropPct: 0.875), 36)
        XCTAssertEqual(Geometry.evalResizeSize(size: 32, cropPct: 0.9), 35)
    }

    // MARK: - RandomResizedCrop

    /// Replays raw 64-bit words; records whether more were asked for than scripted.
    struct ScriptedGenerator: RandomNumberGenerator {
        var words: [UInt64]
        var index = 0
        var overrun = false
        mutating func next() -> UInt64 {
            guard index < words.count else {
                overrun = true
                return 0
            }
            defer { index += 1 }
            return words[index]
        }
    }

    /// torchvision's get_params with its torch draws replaced by scripted values; the same
    /// values fed to our generator must give the same rectangle (including runs that need
    /// several attempts and runs that end in the centre-crop fallback).
    func testRandomResizedCropFollowsTorchvisionGivenTheSameDraws() throws {
        let rows = try Self.manifest().rrcScripted
        XCTAssertFalse(rows.isEmpty)
        var attempts: Set<Int> = []
        for r in rows {
            let words = try (r.words ?? []).map { w -> UInt64 in
                guard let v = UInt64(w, radix: 16) else {
                    throw ManifestError(message: "bad word \(w)")
                }
                return v
            }
            var g = ScriptedGenerator(words: words)
            let got = Geometry.randomResizedCrop(
                width: r.width, height: r.height, scale: r.scale[0]...r.scale[1],
                ratio: r.ratio[0]...r.ratio[1], using: &g)
            let label =
                "\(r.width)x\(r.height) scale \(r.scale) ratio \(r.ratio), "
                + "\(r.attempts ?? 0) attempt(s)"
            XCTAssertEqual(
                [got.x, got.y, got.width, got.height], [r.x, r.y, r.cropWidth, r.cropHeight],
                label)
            XCTAssertFalse(g.overrun, "\(label): drew more than torchvision")
            XCTAssertEqual(g.index, words.count, "\(label): drew fewer than torchvision")
            attempts.insert(r.attempts ?? 0)
        }
        XCTAssertTrue(attempts.contains(1) && attempts.contains(10) && attempts.count >= 4)
    }

    /// Ranges that can never fit always end in torchvision's centre-crop fallback.
    func testRandomResizedCropFallbackMatchesTorchvision() throws {
        for r in try Self.manifest().rrcFallback {
            for seed in 0..<50 as Range<UInt64> {
                var g = SeededGenerator(seed: seed)
                let got = Geometry.randomResizedCrop(
                    width: r.width, height: r.height, scale: r.scale[0]...r.scale[1],
                    ratio: r.ratio[0]...r.ratio[1], using: &g)
                XCTAssertEqual(
                    [got.x, got.y, got.width, got.height], [r.x, r.y, r.cropWidth, r.cropHeight],
                    "\(r.width)x\(r.height) scale \(r.scale) ratio \(r.ratio) seed \(seed)")
            }
        }
        // By hand: a square with ratio (2, 3) keeps the full width and half the height, centred.
        var g = SeededGenerator(seed: 3)
        let c = Geometry.randomResizedCrop(
            width: 40, height: 40, scale: 0.999...1.0, ratio: 2.0...3.0, using: &g)
        XCTAssertEqual([c.x, c.y, c.width, c.height], [0, 10, 40, 20])
    }

    func testRandomResizedCropIsDeterministicPerSeed() {
        func crops(_ seed: UInt64) -> [[Int]] {
            var g = SeededGenerator(seed: seed)
            return (0..<200).map { _ in
                let c = Geometry.randomResizedCrop(width: 97, height: 61, using: &g)
                return [c.x, c.y, c.width, c.height]
            }
        }
        XCTAssertEqual(crops(42), crops(42))
        XCTAssertNotEqual(crops(42), crops(43))
        // The generator's stream itself is fixed (SplitMix64-seeded xoshiro256**).
        var g = SeededGenerator(seed: 0)
        var h = SeededGenerator(seed: 0)
        for _ in 0..<100 { XCTAssertEqual(g.next(), h.next()) }
    }

    /// Every crop lies inside the image and has positive size; unless it is the fallback, its
    /// size is what rounding some area in `scale` and some aspect in `ratio` can give:
    /// w = round(sqrt(t r)), h = round(sqrt(t / r)) means t is within [(w-.5)(h-.5),
    /// (w+.5)(h+.5)] and r within [(w-.5)/(h+.5), (w+.5)/(h-.5)].
    func testRandomResizedCropStaysInBounds() {
        let configs: [(Int, Int, ClosedRange<Double>, ClosedRange<Double>)] = [
            (97, 61, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (40, 40, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (13, 200, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (500, 375, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (500, 375, 0.5...0.6, 0.2...5.0),
            (1, 1, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (2, 3, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
            (1000, 7, 0.08...1.0, (3.0 / 4.0)...(4.0 / 3.0)),
        ]
        var g = SeededGenerator(seed: 2024)
        for (width, height, scale, ratio) in configs {
            var fallbacks = 0
            let n = 2000
            var xs: Set<Int> = []
            for _ in 0..<n {
                let c = Geometry.randomResizedCrop(
                    width: width, height: height, scale: scale, ratio: ratio, using: &g)
                let label = "\(width)x\(height) \(scale) \(ratio): \(c)"
                XCTAssertTrue(c.width > 0 && c.height > 0, label)
                XCTAssertTrue(c.x >= 0 && c.y >= 0, label)
                XCTAssertTrue(c.x + c.width <= width && c.y + c.height <= height, label)
                xs.insert(c.x)
                let w = Double(c.width)
                let h = Double(c.height)
                let area = Double(width * height)
                let areaOK =
                    (w - 0.5) * (h - 0.5) <= area * scale.upperBound
                    && (w + 0.5) * (h + 0.5) >= area * scale.lowerBound
                let ratioOK =
                    (w - 0.5) / (h + 0.5) <= ratio.upperBound
                    && (w + 0.5) / max(h - 0.5, 1e-9) >= ratio.lowerBound
                if !(areaOK && ratioOK) {
                    fallbacks += 1
                    let f = Self.fallback(width, height, ratio)
                    XCTAssertEqual([c.x, c.y, c.width, c.height], f, "not a valid draw: \(label)")
                }
            }
            // Big images with the default ranges almost never fall back.
            if width == 500 && scale == 0.08...1.0 {
                XCTAssertLessThan(fallbacks, 5)
                XCTAssertGreaterThan(xs.count, 100, "positions look uniform")
            }
        }
    }

    /// The crops' distribution matches torchvision's: mean area fraction and mean log aspect
    /// over 20000 draws each (rejected draws make the mean area well below the mean of `scale`,
    /// e.g. 0.43 for 500x375, not 0.54). Tolerances are about 4 standard errors.
    func testRandomResizedCropDistributionMatchesTorchvision() throws {
        var g = SeededGenerator(seed: 99)
        for r in try Self.manifest().rrcStats {
            var area = 0.0
            var logAspect = 0.0
            for _ in 0..<r.draws {
                let c = Geometry.randomResizedCrop(
                    width: r.width, height: r.height, scale: r.scale[0]...r.scale[1],
                    ratio: r.ratio[0]...r.ratio[1], using: &g)
                area += Double(c.width * c.height) / Double(r.width * r.height)
                logAspect += log(Double(c.width) / Double(c.height))
            }
            let n = Double(r.draws)
            print(
                "ResizeTests: RandomResizedCrop \(r.width)x\(r.height): mean area "
                    + "\(area / n) (torchvision \(r.meanAreaFraction)), mean log aspect "
                    + "\(logAspect / n) (torchvision \(r.meanLogAspect))")
            XCTAssertEqual(area / n, r.meanAreaFraction, accuracy: 0.01, "\(r.width)x\(r.height)")
            XCTAssertEqual(
                logAspect / n, r.meanLogAspect, accuracy: 0.006, "\(r.width)x\(r.height)")
        }
    }

    /// torchvision's fallback rectangle, as (x, y, w, h).
    static func fallback(_ width: Int, _ height: Int, _ ratio: ClosedRange<Double>) -> [Int] {
        let inRatio = Double(width) / Double(height)
        var w = width
        var h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return [(width - w) / 2, (height - h) / 2, w, h]
    }

    // MARK: - Flip

    func testFlippedHorizontally() throws {
        let inputs = try Self.inputs(Self.manifest())
        for (key, image) in inputs {
            let flipped = image.flippedHorizontally()
            XCTAssertEqual(flipped.width, image.width)
            XCTAssertEqual(flipped.height, image.height)
            for y in 0..<image.height {
                for x in 0..<image.width {
                    XCTAssertEqual(
                        flipped[x, y], image[image.width - 1 - x, y], "\(key) (\(x),\(y))")
                }
            }
            XCTAssertEqual(flipped.flippedHorizontally(), image, key)
        }
        let one = RGBImage(width: 1, height: 3, pixels: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(one.flippedHorizontally(), one)
    }

    /// With the same draws, flip probability 1 mirrors exactly what probability 0 gives, and
    /// probability 1/2 flips about half the time.
    func testTrainTransformFlip() throws {
        let image = try Self.inputs(Self.manifest())["a"]!
        let size = 12
        let workspace = ResampleWorkspace()
        func run(_ p: Double, _ seed: UInt64) throws -> [Float] {
            let t = TrainTransform(size: size, flipProbability: p)
            var out = [Float](repeating: .nan, count: t.outputCount)
            var g = SeededGenerator(seed: seed)
            try out.withUnsafeMutableBufferPointer {
                try t.applyDecoded(image, using: &g, workspace: workspace, into: $0)
            }
            return out
        }
        func mirrored(_ v: [Float]) -> [Float] {
            var m = v
            for c in 0..<3 {
                for y in 0..<size {
                    for x in 0..<size {
                        m[(c * size + y) * size + x] = v[(c * size + y) * size + size - 1 - x]
                    }
                }
            }
            return m
        }
        var flips = 0
        var n = 0
        for seed in 0..<200 as Range<UInt64> {
            let plain = try run(0, seed)
            XCTAssertEqual(try run(1, seed), mirrored(plain), "seed \(seed)")
            let half = try run(0.5, seed)
            if half == plain && half != mirrored(plain) {
                n += 1
            } else if half == mirrored(plain) && half != plain {
                n += 1
                flips += 1
            }
        }
        XCTAssertGreaterThan(n, 190)
        XCTAssertEqual(Double(flips) / Double(n), 0.5, accuracy: 0.12)
    }

    // MARK: - Float training path vs the exact 8-bit path

    /// Largest |float * 255 - exact| over `count` seeded random crops (with random flips) of
    /// each fixture input, for `filter`. The draws are replayed on a copy of the generator.
    func floatVersusExact(_ filter: ResampleFilter, count: Int) throws -> Float {
        let inputs = try Self.inputs(Self.manifest())
        let workspace = ResampleWorkspace()
        var worst: Float = 0
        var worstLabel = ""
        var nonFinite = 0
        var seed: UInt64 = filter == .bilinear ? 1000 : 5000
        for key in inputs.keys.sorted() {
            let image = inputs[key]!
            for size in [7, 24, 56] {
                let transform = TrainTransform(size: size, filter: filter)
                var output = [Float](repeating: .nan, count: transform.outputCount)
                for _ in 0..<count {
                    seed += 1
                    var g = SeededGenerator(seed: seed)
                    var replay = g
                    try output.withUnsafeMutableBufferPointer {
                        try transform.applyDecoded(image, using: &g, workspace: workspace, into: $0)
                    }
                    let c = Geometry.randomResizedCrop(
                        width: image.width, height: image.height, scale: transform.scale,
                        ratio: transform.ratio, using: &replay)
                    let flip = Geometry.uniform(0...1, &replay) < transform.flipProbability
                    XCTAssertEqual(g, replay, "applyDecoded drew differently")
                    var exact = image.resizedCrop(
                        x: c.x, y: c.y, width: c.width, height: c.height, outputWidth: size,
                        outputHeight: size, filter: filter)
                    if flip { exact = exact.flippedHorizontally() }
                    let plane = size * size
                    for i in 0..<plane {
                        for ch in 0..<3 {
                            let d = abs(
                                output[ch * plane + i] * 255 - Float(exact.pixels[3 * i + ch]))
                            if !d.isFinite { nonFinite += 1 }
                            if d > worst || (!d.isFinite && worst.isFinite) {
                                worst = d
                                worstLabel =
                                    "\(key) crop \(c) -> \(size) flip \(flip) "
                                    + "pixel \(i % size),\(i / size) ch \(ch): float "
                                    + "\(output[ch * plane + i] * 255) exact "
                                    + "\(exact.pixels[3 * i + ch])"
                            }
                        }
                    }
                }
            }
        }
        print(
            "ResizeTests: float vs exact (\(filter)): max |diff| = \(worst) levels at \(worstLabel)"
                + "; \(nonFinite) non-finite outputs")
        XCTAssertEqual(nonFinite, 0, "\(filter): float path wrote NaN or infinity")
        return worst
    }

    func testFloatPathWithinOneLevelBilinear() throws {
        let worst = try floatVersusExact(.bilinear, count: 120)
        XCTAssertLessThanOrEqual(worst, 1.0 + 1e-3)
    }

    func testFloatPathWithinOneLevelBicubic() throws {
        let worst = try floatVersusExact(.bicubic, count: 120)
        XCTAssertLessThanOrEqual(worst, 1.0 + 1e-3)
    }

    /// The float resampler straight against Pillow's images (resize with boxes and torchvision
    /// resized crops from the fixtures).
    func testFloatResamplerAgainstPillowFixtures() throws {
        let manifest = try Self.manifest()
        let inputs = try Self.inputs(manifest)
        let workspace = ResampleWorkspace()
        var worst: [ResampleFilter: Float] = [:]
        var checked = 0
        for c in manifest.cases where c.kind == "resize" || c.kind == "resized_crop" {
            let image = inputs[c.input]!
            let want = try Self.image(c.expected)
            let box: Rect
            let valid: (x: Range<Int>, y: Range<Int>)
            let width: Int
            let height: Int
            if c.kind == "resize" {
                let b = c.box ?? [0, 0, Double(image.width), Double(image.height)]
                box = Rect(x0: b[0], y0: b[1], x1: b[2], y1: b[3])
                valid = (0..<image.width, 0..<image.height)
                (width, height) = (c.width!, c.height!)
            } else {
                box = Rect(
                    x0: Double(c.left!), y0: Double(c.top!), x1: Double(c.left! + c.width!),
                    y1: Double(c.top! + c.height!))
                valid = (c.left!..<(c.left! + c.width!), c.top!..<(c.top! + c.height!))
                (width, height) = (c.outWidth!, c.outHeight!)
            }
            let filter = try c.resampleFilter
            var out = [Float](repeating: .nan, count: 3 * width * height)
            out.withUnsafeMutableBufferPointer {
                FloatResampler.resample(
                    image, box: box, valid: valid, width: width, height: height, filter: filter,
                    flip: false, normalization: .unit, workspace: workspace,
                    output: $0.baseAddress!)
            }
            var caseWorst: Float = 0
            let plane = width * height
            for i in 0..<plane {
                for ch in 0..<3 {
                    caseWorst = max(
                        caseWorst, abs(out[ch * plane + i] * 255 - Float(want.pixels[3 * i + ch])))
                }
            }
            XCTAssertLessThanOrEqual(caseWorst, 1.0 + 1e-3, c.name + c.notes)
            worst[filter] = max(worst[filter] ?? 0, caseWorst)
            checked += 1
        }
        print(
            "ResizeTests: float resampler vs Pillow fixtures (\(checked) cases): max |diff| "
                + "bilinear \(worst[.bilinear] ?? -1), bicubic \(worst[.bicubic] ?? -1) levels")
    }

    /// PNG bytes through `apply` take the same draws and give the same floats as
    /// `applyDecoded` on the decoded image.
    func testTrainTransformApplyOnPNGEqualsApplyDecoded() throws {
        let manifest = try Self.manifest()
        let inputs = try Self.inputs(manifest)
        let workspace = ResampleWorkspace()
        for key in inputs.keys.sorted() {
            let bytes = try readFileBytes(Self.directory() + "/" + manifest.inputs[key]!.file)
            for filter in ResampleFilter.allCases {
                let t = TrainTransform(size: 16, filter: filter, normalization: .imagenet)
                for seed in 0..<10 as Range<UInt64> {
                    var a = [Float](repeating: .nan, count: t.outputCount)
                    var b = a
                    var ga = SeededGenerator(seed: seed)
                    var gb = ga
                    try a.withUnsafeMutableBufferPointer {
                        try t.apply(bytes, source: key, using: &ga, workspace: workspace, into: $0)
                    }
                    try b.withUnsafeMutableBufferPointer {
                        try t.applyDecoded(inputs[key]!, using: &gb, workspace: workspace, into: $0)
                    }
                    XCTAssertEqual(a, b, "\(key) \(filter) seed \(seed)")
                    XCTAssertEqual(ga, gb)
                }
            }
        }
    }

    // MARK: - writeCHW

    func testWriteCHWMatchesNaiveLoop() throws {
        let inputs = try Self.inputs(Self.manifest())
        let odd = Normalization(mean: [0.1, 0.9, 0.5], std: [0.3, 2.0, 0.05])
        for key in inputs.keys.sorted() {
            let image = inputs[key]!
            for normalization in [Normalization.unit, .imagenet, odd] {
                var out = [Float](repeating: .nan, count: 3 * image.width * image.height + 5)
                out.withUnsafeMutableBufferPointer {
                    image.writeCHW(normalization: normalization, into: $0)
                }
                var worst: Float = 0
                for c in 0..<3 {
                    for y in 0..<image.height {
                        for x in 0..<image.width {
                            let v = image.pixels[(y * image.width + x) * 3 + c]
                            let want =
                                (Float(v) / 255 - normalization.mean[c]) / normalization.std[c]
                            let got = out[(c * image.height + y) * image.width + x]
                            worst = max(worst, abs(got - want) / max(1, abs(want)))
                            if normalization == .unit {
                                XCTAssertEqual(got, Float(v) / 255, accuracy: 1e-7)
                            }
                        }
                    }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(key) \(normalization)")
                // Nothing written past the image.
                XCTAssertTrue(out.suffix(5).allSatisfy { $0.isNaN }, key)
            }
        }
    }
}
