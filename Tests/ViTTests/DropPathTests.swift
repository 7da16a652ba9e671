import Foundation
import Support
import XCTest

@testable import ViT

/// Stochastic depth's rates, draws and its off state. Its forward and backward against timm with
/// fixed masks: Tests/TrainingTests/FineTuneStepTests.
final class DropPathTests: XCTestCase {
    private func model(avg: Bool) throws -> ViTModel {
        try ViTModel(
            config: ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 12, patchSize: 4, numClasses: 5, globalPool: avg ? "avg" : "token",
                    embedDim: 16, depth: 3, numHeads: 2, classToken: !avg)),
            seed: 3)
    }

    func testRatesIncreaseLinearlyAsTimmsLinspace() {
        XCTAssertEqual(DropPath.rates(0.2, depth: 3), [0, 0.1, 0.2])
        XCTAssertEqual(DropPath.rates(0.3, depth: 1), [0])
        let r = DropPath.rates(0.1, depth: 12)
        XCTAssertEqual(r.first, 0)
        XCTAssertEqual(r.last!, 0.1, accuracy: 1e-15)
        XCTAssertEqual(r[6] - r[5], 0.1 / 11, accuracy: 1e-15)
    }

    /// Each branch is kept with probability 1 - rate, scaled by 1 / (1 - rate); the same
    /// generator state draws the same masks.
    func testDrawsKeepAtTheRateAndScaleByKeep() throws {
        let m = try model(avg: false)
        let B = 2_000
        let acts = ViTActivations(model: m, batchSize: B)
        let rates = [0.0, 0.25, 0.5]
        var g = SeededGenerator(seed: 11)
        acts.drawDropPath(rates: rates, generator: &g)
        for (l, rate) in rates.enumerated() {
            for branch in 0..<2 {
                let s = Array(UnsafeBufferPointer(start: try XCTUnwrap(acts.dropPathScale(l, branch: branch)), count: B))
                XCTAssertTrue(s.allSatisfy { $0 == 0 || $0 == Float(1 / (1 - rate)) })
                let kept = Double(s.filter { $0 != 0 }.count) / Double(B)
                XCTAssertEqual(kept, 1 - rate, accuracy: 0.04, "block \(l) branch \(branch)")
            }
        }
        let first = Array(acts.dropPathScales.buffer)
        var again = SeededGenerator(seed: 11)
        acts.drawDropPath(rates: rates, generator: &again)
        XCTAssertEqual(Array(acts.dropPathScales.buffer), first)
        XCTAssertEqual(g, again)
    }

    /// Cleared, the passes are the plain ones bit for bit (fresh activations that never had
    /// masks give the same logits and gradients), and with masks they differ; on both pooling
    /// routes of the fast backend.
    func testClearedIsThePlainPassBitForBit() throws {
        for avg in [false, true] {
            let m = try model(avg: avg)
            let B = 3
            var g = SeededGenerator(seed: 5)
            let images = (0..<(B * 3 * 12 * 12)).map { _ in Float(g.nextUnit()) }
            let targets = (0..<(B * 5)).map { Float($0 % 2) }
            func pass(_ acts: ViTActivations) -> (logits: [Float], grads: [Float]) {
                m.zeroGradients()
                images.withUnsafeBufferPointer { m.forward(images: $0.baseAddress!, activations: acts) }
                targets.withUnsafeBufferPointer { m.backward(targets: $0.baseAddress!, activations: acts) }
                return (Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * 5)), Array(m.gradients.buffer))
            }
            let plain = pass(m.makeActivations(batchSize: B))
            let acts = m.makeActivations(batchSize: B)
            acts.setDropPath(keep: (0..<(3 * 2 * B)).map { $0 % 3 != 1 }, rates: [0, 0.1, 0.2])
            XCTAssertTrue(acts.dropPathIsOn)
            let dropped = pass(acts)
            XCTAssertNotEqual(dropped.logits, plain.logits, "avg \(avg)")
            XCTAssertNotEqual(dropped.grads, plain.grads, "avg \(avg)")
            acts.clearDropPath()
            XCTAssertFalse(acts.dropPathIsOn)
            let cleared = pass(acts)
            XCTAssertEqual(cleared.logits, plain.logits, "avg \(avg)")
            XCTAssertEqual(cleared.grads, plain.grads, "avg \(avg)")
        }
    }
}
