import Foundation
import Support
import TestSupport
import ViT
import XCTest

@testable import Training

/// Mixup and cutmix (timm's `Mixup`, per batch): the mixing against timm on fixed draws
/// (mixup.safetensors, make_mixup_fixture.py), the draws' distribution, and a run that mixes
/// resuming exactly.
final class MixupTests: ScratchDirectoryTestCase {
    private func fixture() throws -> [String: [Float]] {
        let path = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/mixup.safetensors"
        return try SafeTensors.read(path: path).tensors.mapValues(\.values)
    }

    /// timm's smoothed one-hot rows: (1 - ε) one-hot + ε / V.
    private func smoothed(_ labels: [Float], classes: Int, epsilon: Float = 0.1) -> [Float] {
        var t = [Float](repeating: epsilon / Float(classes), count: labels.count * classes)
        for (i, l) in labels.enumerated() { t[i * classes + Int(l)] += 1 - epsilon }
        return t
    }

    func testMixingMatchesTimm() throws {
        let f = try fixture()
        let (x, labels) = (try XCTUnwrap(f["x"]), try XCTUnwrap(f["labels"]))
        for (name, draw) in [
            ("mixup", Mixup.Draw(lambda: 0.7, box: nil)),
            ("cutmix", Mixup.Draw(lambda: 1 - 6.0 / 25, box: (1, 4, 0, 2))),
        ] {
            var images = x
            images.withUnsafeMutableBufferPointer { Mixup.mixImages($0.baseAddress!, count: 4, side: 5, draw: draw) }
            let wantImages = try XCTUnwrap(f[name + ".x"])
            for (a, b) in zip(images, wantImages) { XCTAssertEqual(a, b, accuracy: 1e-6, name) }
            var targets = smoothed(labels, classes: 6)
            targets.withUnsafeMutableBufferPointer { Mixup.mixTargets($0.baseAddress!, count: 4, classes: 6, lambda: draw.lambda) }
            let wantTargets = try XCTUnwrap(f[name + ".targets"])
            for (a, b) in zip(targets, wantTargets) { XCTAssertEqual(a, b, accuracy: 1e-6, name) }
        }
    }

    func testDrawsFollowTheSettings() {
        // Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1)); α < 1 too
        for alpha in [0.2, 0.8, 1.0, 4.0] {
            var g = SeededGenerator(seed: 3)
            let xs = (0..<20_000).map { _ in Mixup.beta(alpha, &g) }
            let mean = xs.reduce(0, +) / Double(xs.count)
            let variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(xs.count)
            XCTAssertEqual(mean, 0.5, accuracy: 0.01, "alpha \(alpha)")
            XCTAssertEqual(variance, 1 / (4 * (2 * alpha + 1)), accuracy: 0.01, "alpha \(alpha)")
            XCTAssertTrue(xs.allSatisfy { (0...1).contains($0) })
        }
        // the switch probability, the box inside the image, λ its corrected share
        let both = Mixup(mixupAlpha: 0.8, cutmixAlpha: 1.0, prob: 1, switchProb: 0.5)
        var g = SeededGenerator(seed: 9)
        var cutmixes = 0
        for _ in 0..<2_000 {
            let d = both.draw(&g, side: 16)!
            if let b = d.box {
                cutmixes += 1
                XCTAssertTrue(0 <= b.yl && b.yl <= b.yh && b.yh <= 16 && 0 <= b.xl && b.xl <= b.xh && b.xh <= 16)
                XCTAssertEqual(d.lambda, 1 - Double((b.yh - b.yl) * (b.xh - b.xl)) / 256, accuracy: 1e-12)
            }
        }
        XCTAssertEqual(Double(cutmixes) / 2_000, 0.5, accuracy: 0.05)
        var never = Mixup(mixupAlpha: 0.8, cutmixAlpha: 0, prob: 0, switchProb: 0.5)
        XCTAssertNil(never.draw(&g, side: 16))
        never.prob = 0.3
        let mixed = (0..<2_000).filter { _ in never.draw(&g, side: 16) != nil }.count
        XCTAssertEqual(Double(mixed) / 2_000, 0.3, accuracy: 0.05)
        // the same seed, the same draws
        var (g1, g2) = (SeededGenerator(seed: 1), SeededGenerator(seed: 1))
        XCTAssertEqual(both.draw(&g1, side: 16), both.draw(&g2, side: 16))
    }
}
