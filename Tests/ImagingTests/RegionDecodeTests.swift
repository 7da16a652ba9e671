import Support
import XCTest

@testable import Imaging

/// Crop-before-decode: the region decoder must give the pixels of the upright image under the
/// crop, whatever the EXIF orientation, and its reduced (DCT-scaled) decodes must stay close to
/// resampling the full decode.
final class RegionDecodeTests: XCTestCase {
    static let orientations = [1, 3, 5, 6, 8]

    func fixture(_ orientation: Int) throws -> (path: String, bytes: [UInt8]) {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let path = root.appendingPathComponent("region/photo_o\(orientation).jpg").path
        return (path, try readFileBytes(path))
    }

    /// At full scale, the decoded region cut at its box is exactly the crop of the full decode.
    func testFullScaleRegionEqualsCropOfFullDecode() throws {
        var generator = SeededGenerator(seed: 11)
        for orientation in Self.orientations {
            let (path, bytes) = try fixture(orientation)
            let full = try ImageDecoder.decode(bytes, source: path)
            XCTAssertEqual([full.width, full.height], [203, 141], path)
            for _ in 0..<40 {
                let c = Geometry.randomResizedCrop(
                    width: full.width, height: full.height, using: &generator)
                let rect = Rect(
                    x0: Double(c.x), y0: Double(c.y), x1: Double(c.x + c.width),
                    y1: Double(c.y + c.height))
                let region = try ImageDecoder.decode(
                    bytes, source: path, crop: rect, minimumSize: (10_000, 10_000))
                XCTAssertEqual(region.scaleDenominator, 1)
                let b = region.box
                XCTAssertEqual(b.width, Double(c.width))
                XCTAssertEqual(b.height, Double(c.height))
                XCTAssertEqual(b.x0, b.x0.rounded(), "box on whole pixels at scale 1")
                let got = region.image.cropped(
                    x: Int(b.x0), y: Int(b.y0), width: c.width, height: c.height)
                let want = full.cropped(x: c.x, y: c.y, width: c.width, height: c.height)
                let d = largestDifference(got, want)
                XCTAssertEqual(d.value, 0, "\(path) crop \(c): largest difference \(d)")
            }
        }
    }

    /// Reduced decodes of every orientation: resampling the region's box to the output size stays
    /// within a few levels of resampling the crop of the full decode (the DCT-domain reduction
    /// filters differently from Pillow's bilinear filter, so not exactly).
    func testReducedRegionsMatchFullDecodeClosely() throws {
        var generator = SeededGenerator(seed: 5)
        var seen = Set<Int>()
        for orientation in Self.orientations {
            let (path, bytes) = try fixture(orientation)
            let full = try ImageDecoder.decode(bytes, source: path)
            for trial in 0..<30 {
                let c = Geometry.randomResizedCrop(
                    width: full.width, height: full.height, scale: 0.3...1.0, using: &generator)
                let out = [12, 24, 40][trial % 3]
                let rect = Rect(
                    x0: Double(c.x), y0: Double(c.y), x1: Double(c.x + c.width),
                    y1: Double(c.y + c.height))
                let region = try ImageDecoder.decode(
                    bytes, source: path, crop: rect, minimumSize: (out, out))
                seen.insert(region.scaleDenominator)
                XCTAssertGreaterThanOrEqual(region.box.width, Double(out))
                XCTAssertGreaterThanOrEqual(region.box.height, Double(out))
                XCTAssertEqual(
                    region.box.width * Double(region.scaleDenominator), Double(c.width),
                    accuracy: 1e-9)
                let got = region.image.resized(width: out, height: out, box: region.box)
                let want = full.resizedCrop(
                    x: c.x, y: c.y, width: c.width, height: c.height, outputWidth: out,
                    outputHeight: out)
                let diffs = zip(got.pixels, want.pixels).map { abs(Int($0) - Int($1)) }
                let mean = Double(diffs.reduce(0, +)) / Double(diffs.count)
                XCTAssertLessThan(mean, 4.0, "\(path) crop \(c) scale 1/\(region.scaleDenominator)")
                XCTAssertLessThan(diffs.max()!, 48, "\(path) crop \(c)")
            }
        }
        XCTAssertTrue(seen.isSuperset(of: [2, 4, 8]), "reductions exercised: \(seen.sorted())")
    }

    /// Whole-image reduced decoding: the strongest reduction keeping both sides large enough.
    func testWholeImageReducedDecode() throws {
        for orientation in Self.orientations {
            let (path, bytes) = try fixture(orientation)
            let full = try ImageDecoder.decode(bytes, source: path)
            for (minimum, scale) in [(200, 1), (100, 1), (70, 2), (60, 2), (50, 2), (30, 4), (17, 8), (1, 8)] {
                let region = try ImageDecoder.decode(bytes, source: path, minimumSize: (minimum, minimum))
                XCTAssertEqual(region.scaleDenominator, scale, "\(path) minimum \(minimum)")
                // 203x141 upright: the shorter side 141 bounds the reduction.
                XCTAssertGreaterThanOrEqual(region.box.height, Double(min(minimum, 141)))
                XCTAssertEqual(region.box.width * Double(scale), 203, accuracy: 1e-9)
                let got = region.image.resized(width: 20, height: 14, box: region.box)
                let want = full.resized(width: 20, height: 14)
                let diffs = zip(got.pixels, want.pixels).map { abs(Int($0) - Int($1)) }
                XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 3.0, path)
            }
        }
    }

    func testScaleDenominatorIsStrongestThatKeepsTheSize() {
        XCTAssertEqual(ImageDecoder.scaleDenominator(width: 500, height: 375, minimumWidth: 224, minimumHeight: 224), 1)
        XCTAssertEqual(ImageDecoder.scaleDenominator(width: 500, height: 448, minimumWidth: 224, minimumHeight: 224), 2)
        XCTAssertEqual(ImageDecoder.scaleDenominator(width: 512, height: 512, minimumWidth: 64, minimumHeight: 64), 8)
        XCTAssertEqual(ImageDecoder.scaleDenominator(width: 511, height: 512, minimumWidth: 64, minimumHeight: 64), 4)
        XCTAssertEqual(ImageDecoder.scaleDenominator(width: 300, height: 1000, minimumWidth: 64, minimumHeight: 64), 4)
    }

    /// The training transform draws the same crop and flip for the same seed, and the JPEG path
    /// with reduced decoding off equals augmenting the full decode.
    func testTrainTransformOnJPEGMatchesDecodedPath() throws {
        let (path, bytes) = try fixture(6)
        let full = try ImageDecoder.decode(bytes, source: path)
        let transform = TrainTransform(size: 16, reducedDecoding: false)
        let workspace = ResampleWorkspace()
        for seed in 0..<20 {
            var a = [Float](repeating: -1, count: transform.outputCount)
            var b = [Float](repeating: -2, count: transform.outputCount)
            var g1 = SeededGenerator(seed: UInt64(seed))
            var g2 = SeededGenerator(seed: UInt64(seed))
            try a.withUnsafeMutableBufferPointer {
                try transform.apply(bytes, source: path, using: &g1, workspace: workspace, into: $0)
            }
            try b.withUnsafeMutableBufferPointer {
                try transform.applyDecoded(full, using: &g2, workspace: workspace, into: $0)
            }
            XCTAssertEqual(g1, g2, "same number of draws")
            let maxDiff = zip(a, b).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(maxDiff, 1e-5, "seed \(seed)")
            XCTAssertTrue(a.allSatisfy { $0 >= 0 && $0 <= 1 })
        }
    }

    func testCropOutsideImageIsAnError() throws {
        let (path, bytes) = try fixture(1)
        XCTAssertThrowsError(
            try ImageDecoder.decode(
                bytes, source: path, crop: Rect(x0: 100, y0: 0, x1: 300, y1: 50),
                minimumSize: (8, 8))
        ) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .invalidArgument)
            XCTAssertEqual((error as? ImageError)?.source, path)
        }
    }
}

/// The largest per-channel difference between two images of one size, and where it is.
func largestDifference(_ a: RGBImage, _ b: RGBImage) -> (value: Int, x: Int, y: Int, count: Int) {
    precondition(a.width == b.width && a.height == b.height, "sizes differ")
    var best = (value: 0, x: 0, y: 0, count: 0)
    for i in 0..<a.pixels.count {
        let d = abs(Int(a.pixels[i]) - Int(b.pixels[i]))
        if d > 0 { best.count += 1 }
        if d > best.value { best = (d, (i / 3) % a.width, (i / 3) / a.width, best.count) }
    }
    return best
}
