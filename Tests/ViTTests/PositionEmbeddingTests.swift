import Foundation
import Support
import XCTest

@testable import ViT

/// pos_embed resampling against PyTorch's F.interpolate (Fixtures/make_posembed_fixtures.py),
/// and variable-resolution forward/backward through the model.
final class PositionEmbeddingTests: XCTestCase {

    func testAgainstPyTorch() throws {
        let st = try SafeTensors.read(path: try fixturesRoot() + "/posembed.safetensors")
        var checked = 0
        for (name, prefix, old, dim, news) in [
            ("cls4", 1, 4, 6, [7, 6, 3, 2, 4]), ("flat5", 0, 5, 3, [8, 3]),
        ] {
            let pos = try XCTUnwrap(st["\(name).pos"]).values
            for new in news {
                let key = "\(name).to\(new)"
                let dout = try XCTUnwrap(st["\(key).dout"]).values
                for mode in [PositionInterpolation.bicubic, .bilinear] {
                    for aa in [true, false] {
                        let tag = "\(key).\(mode.rawValue).\(aa ? "aa" : "noaa")"
                        let r = PositionEmbeddingResampler(
                            prefix: prefix, oldGrid: old, newGrid: new, dim: dim, mode: mode,
                            antialias: aa)
                        var out = [Float](repeating: .nan, count: (prefix + new * new) * dim)
                        r.forward(out: &out, inp: pos)
                        var dpos = [Float](repeating: 0, count: pos.count)
                        r.backward(dinp: &dpos, dout: dout)
                        assertWithinTolerance(
                            [
                                elementwise(
                                    "out", out, try XCTUnwrap(st["\(tag).out"]).values, rtol: 1e-5,
                                    atol: 1e-6),
                                elementwise(
                                    "dpos", dpos, try XCTUnwrap(st["\(tag).dpos"]).values,
                                    rtol: 1e-5, atol: 1e-5),
                            ], tag)
                        checked += 1
                    }
                }
            }
        }
        XCTAssertEqual(checked, 28)
    }

    func testIdentityAtSameGridAndWeightsSumToOne() {
        for mode in [PositionInterpolation.bicubic, .bilinear] {
            for aa in [true, false] {
                let w = PositionEmbeddingResampler.weights(
                    inputSize: 14, outputSize: 14, mode: mode, antialias: aa)
                for i in 0..<14 {
                    for j in 0..<14 {
                        XCTAssertEqual(w[i * 14 + j], i == j ? 1 : 0, accuracy: 1e-12)
                    }
                }
                for (n, m) in [(14, 8), (14, 20), (3, 17), (17, 3)] {
                    let w = PositionEmbeddingResampler.weights(
                        inputSize: n, outputSize: m, mode: mode, antialias: aa)
                    for i in 0..<m {
                        XCTAssertEqual(
                            w[(i * n)..<((i + 1) * n)].reduce(0, +), 1, accuracy: 1e-12,
                            "\(mode) aa \(aa) \(n)->\(m)")
                    }
                }
            }
        }
    }

    /// A model resized to a new image size gives the same outputs as the original model run on
    /// activations planned for that size (which resample on the fly), and training at the new
    /// size gives pos_embed the transposed gradient (checked by finite differences).
    func testVariableResolution() throws {
        let config = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 16, patchSize: 4, numClasses: 5, embedDim: 8, depth: 1, numHeads: 2))
        let m = try ViTModel(config: config, seed: 4)
        // make pos_embed matter: larger values
        let pos = m.parameter("pos_embed")
        var rng = SeededGenerator(seed: 2)
        for i in pos.indices { pos[i] = Float(rng.nextNormal()) }
        let big = try m.resized(imageSize: 24)
        XCTAssertEqual(big.config.modelArgs.imgSize, 24)
        XCTAssertEqual(big.config.pretrainedCfg.inputSize, [3, 24, 24])
        XCTAssertEqual(big.layout.spec(named: "pos_embed")?.shape, [1, 37, 8])
        let B = 2
        let images = [Float].randomNormal(B * 3 * 24 * 24, seed: 3)
        let targets: [Float] = [1, 0, 0, 1, 0, 0, 1, 1, 0, 0]
        let a1 = big.makeActivations(batchSize: B)
        XCTAssertNil(a1.resampler)
        big.forward(images: images, activations: a1)
        let a2 = m.makeActivations(batchSize: B, imageSize: 24)
        XCTAssertNotNil(a2.resampler)
        XCTAssertEqual(a2.tokens, 37)
        m.forward(images: images, activations: a2)
        let l1 = Array(UnsafeBufferPointer(start: a1.logitsPointer, count: B * 5))
        let l2 = Array(UnsafeBufferPointer(start: a2.logitsPointer, count: B * 5))
        XCTAssert(elementwise("logits", l2, l1, rtol: 1e-5, atol: 1e-6).score <= 1)

        m.zeroGradients()
        m.backward(targets: targets, activations: a2)
        let g = Array(m.gradient("pos_embed"))
        XCTAssertGreaterThan(maxAbs(g), 0)
        let h: Float = 1e-2
        var worst: Float = 0
        for i in stride(from: 0, to: pos.count, by: 7) {
            let old = pos[i]
            pos[i] = old + h
            m.forward(images: images, activations: a2)
            let lp = Double(m.loss(targets: targets, activations: a2))
            pos[i] = old - h
            m.forward(images: images, activations: a2)
            let lm = Double(m.loss(targets: targets, activations: a2))
            pos[i] = old
            worst = max(worst, abs(Float((lp - lm) / Double(2 * h)) - g[i]) / maxAbs(g))
        }
        XCTAssertLessThan(worst, 2e-2)
        // a smaller size works too (grid 3, ragged edge)
        let a3 = m.makeActivations(batchSize: 1, imageSize: 13)
        XCTAssertEqual(a3.gridSize, 3)
        let small = [Float].randomNormal(3 * 13 * 13, seed: 5)
        m.forward(images: small, activations: a3)
        XCTAssert(UnsafeBufferPointer(start: a3.logitsPointer, count: 5).allSatisfy(\.isFinite))
    }
}
