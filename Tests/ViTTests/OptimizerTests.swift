import Foundation
import XCTest

@testable import ViT

final class OptimizerTests: XCTestCase {

    func model() throws -> ViTModel {
        try ViTModel(
            config: ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 8, patchSize: 4, numClasses: 3, embedDim: 4, depth: 1, numHeads: 1)),
            seed: 1)
    }

    /// AdamW on single values against torch's formulas written out in double precision.
    func testAdamWMatchesTorchFormula() throws {
        let m = try model()
        let opt = AdamW(model: m, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.2)
        let w = m.layout.spec(named: "head.weight")!  // decays
        let b = m.layout.spec(named: "head.bias")!  // does not
        var pw = Double(m.parameters.base[w.offset])
        var pb = Double(m.parameters.base[b.offset])
        var (mw, vw, mb, vb) = (0.0, 0.0, 0.0, 0.0)
        let lr = 0.01
        for (t, (gw, gb)) in [(0.5, -2.0), (1e-9, 3.0), (-0.25, 0.0)].enumerated() {
            m.zeroGradients()
            m.gradients.base[w.offset] = Float(gw)
            m.gradients.base[b.offset] = Float(gb)
            opt.update(m, lr: Float(lr))
            let step = Double(t + 1)
            let bc1 = 1 - pow(0.9, step)
            let bc2 = 1 - pow(0.999, step)
            pw *= 1 - lr * 0.2
            mw = 0.9 * mw + 0.1 * gw
            vw = 0.999 * vw + 0.001 * gw * gw
            pw -= lr / bc1 * mw / (vw.squareRoot() / bc2.squareRoot() + 1e-8)
            mb = 0.9 * mb + 0.1 * gb
            vb = 0.999 * vb + 0.001 * gb * gb
            pb -= lr / bc1 * mb / (vb.squareRoot() / bc2.squareRoot() + 1e-8)
            XCTAssertEqual(
                Double(m.parameters.base[w.offset]), pw, accuracy: 1e-6 * max(1, abs(pw)))
            XCTAssertEqual(
                Double(m.parameters.base[b.offset]), pb, accuracy: 1e-6 * max(1, abs(pb)))
        }
        XCTAssertEqual(opt.step, 3)
    }

    /// With zero gradients an AdamW step is the decay alone: every 2+-D parameter shrinks by
    /// 1 - lr·wd; pos_embed and cls_token too (corenet) unless `decayEmbeddings` is off (timm).
    func testEmbeddingDecayFollowsTheSetting() throws {
        for decayEmbeddings in [true, false] {
            let m = try model()
            let opt = AdamW(model: m, weightDecay: 0.5)
            opt.decayEmbeddings = decayEmbeddings
            let before = Array(m.parameters.buffer)
            m.zeroGradients()
            opt.update(m, lr: 0.1)
            for s in m.layout.specs {
                let embedding = s.name == "pos_embed" || s.name == "cls_token"
                let factor: Float = s.decays && (decayEmbeddings || !embedding) ? 0.95 : 1
                for i in s.offset..<(s.offset + s.count) {
                    XCTAssertEqual(m.parameters.base[i], before[i] * factor, accuracy: 1e-7, "\(s.name) decay \(decayEmbeddings)")
                }
            }
        }
    }

    /// timm's layer-wise decay groups (layer_decay.json, written by
    /// make_layer_decay_fixture.py from timm's `param_groups_layer_decay`): the same scale for
    /// every tensor, with average and token pooling.
    func testLayerDecayScalesAreTimms() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: try fixturesRoot() + "/layer_decay.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for case let c as [String: Any] in try XCTUnwrap(root["cases"] as? [Any]) {
            let avg = c["global_pool"] as? String == "avg"
            let config = ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 16, patchSize: 8, numClasses: 3, globalPool: avg ? "avg" : "token", embedDim: 16,
                    depth: try XCTUnwrap(c["depth"] as? Int), numHeads: 2, classToken: !avg),
                pretrainedCfg: PretrainedConfig(inputSize: [3, 16, 16], numClasses: 3))
            let m = try ViTModel(config: config)
            let scales = AdamW.layerDecayScales(m, decay: Float(try XCTUnwrap(c["decay"] as? Double)))
            let expected = try XCTUnwrap(c["lr_scale"] as? [String: Double])
            XCTAssertEqual(Set(scales.keys), Set(expected.keys), "\(c["name"]!)")
            for (name, scale) in expected { XCTAssertEqual(Double(scales[name] ?? -1), scale, accuracy: 1e-7, name) }
        }
    }

    /// A tensor with lr scale s moves as it would at learning rate lr·s (its weight decay too);
    /// scale 0 freezes it; the others are untouched by the scales.
    func testLearningRateScales() throws {
        let m = try model()
        for i in 0..<m.gradients.count { m.gradients.base[i] = Float((i % 7) - 3) * 0.01 }
        let start = Array(m.parameters.buffer)
        func step(lr: Float, scales: [String: Float]) -> [Float] {
            m.parameters.base.update(from: start, count: start.count)
            let opt = AdamW(model: m, weightDecay: 0.3)
            opt.lrScales = scales
            opt.update(m, lr: lr)
            return Array(m.parameters.buffer)
        }
        let plain = step(lr: 0.01, scales: [:])
        let scaled = step(lr: 0.01, scales: ["head.weight": 0.25, "pos_embed": 0])
        let quarter = step(lr: 0.0025, scales: [:])
        for s in m.layout.specs {
            let range = s.offset..<(s.offset + s.count)
            switch s.name {
            case "head.weight": XCTAssertEqual(Array(scaled[range]), Array(quarter[range]))
            case "pos_embed": XCTAssertEqual(Array(scaled[range]), Array(start[range]), "frozen")
            default: XCTAssertEqual(Array(scaled[range]), Array(plain[range]), s.name)
            }
        }
    }

    func testClipping() throws {
        let m = try model()
        m.zeroGradients()
        m.gradients.base[0] = 3
        m.gradients.base[m.layout.specs.last!.offset] = 4
        XCTAssertEqual(clipGradientNorm(m, maxNorm: 10), 5)
        XCTAssertEqual(m.gradients.base[0], 3, "no clipping below the bound")
        XCTAssertEqual(clipGradientNorm(m, maxNorm: 1), 5)
        XCTAssertEqual(m.gradients.base[0], 3 / (5 + 1e-6), accuracy: 1e-7)
        XCTAssertEqual(
            m.gradients.base[m.layout.specs.last!.offset], 4 / (5 + 1e-6), accuracy: 1e-7)
    }

    func testEMA() throws {
        let m = try model()
        let ema = WeightEMA(model: m, momentum: 0.25)
        let p0 = Array(m.parameters.buffer)
        XCTAssertEqual(Array(ema.weights.buffer), p0)
        for i in 0..<m.parameters.count { m.parameters.base[i] += 1 }
        ema.update(m)
        for i in 0..<m.parameters.count {
            XCTAssertEqual(ema.weights.base[i], p0[i] * 0.75 + 0.25 * (p0[i] + 1), accuracy: 1e-6)
        }
        // with constant weights the average converges to them
        for _ in 0..<200 { ema.update(m) }
        for i in 0..<m.parameters.count {
            XCTAssertEqual(ema.weights.base[i], m.parameters.base[i], accuracy: 1e-5)
        }
        let copy = try model()
        ema.copy(into: copy)
        XCTAssertEqual(Array(copy.parameters.buffer), Array(ema.weights.buffer))
    }

    /// corenet's cosine schedule: linear warm-up from warmupInitLR, then cosine with period
    /// max_iterations - warmup + 1.
    func testCosineSchedule() {
        let s = CosineSchedule(
            maxLR: 1e-3, minLR: 1e-5, warmupIterations: 10, warmupInitLR: 1e-6, maxIterations: 110)
        XCTAssertEqual(s.learningRate(iteration: 0), 1e-6, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(iteration: 5), 1e-6 + 5 * (1e-3 - 1e-6) / 10, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(iteration: 10), 1e-3, accuracy: 1e-15)
        // halfway through the cosine: (i - 10) / 101 = 1/2 is not an integer; check the formula
        let i = 60
        let expected = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(Double.pi * 50 / 101))
        XCTAssertEqual(s.learningRate(iteration: i), expected, accuracy: 1e-15)
        XCTAssertEqual(
            s.learningRate(iteration: 110),
            1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(Double.pi * 100 / 101)), accuracy: 1e-15)
        var previous = Double.infinity
        for it in 10...110 {
            let lr = s.learningRate(iteration: it)
            XCTAssertLessThanOrEqual(lr, previous)
            XCTAssertGreaterThanOrEqual(lr, 1e-5)
            previous = lr
        }
        for it in 0..<10 {
            XCTAssertLessThan(s.learningRate(iteration: it), s.learningRate(iteration: it + 1))
        }
        let noWarmup = CosineSchedule(
            maxLR: 0.1, minLR: 0, warmupIterations: 0, warmupInitLR: 0, maxIterations: 9)
        XCTAssertEqual(noWarmup.learningRate(iteration: 0), 0.1, accuracy: 1e-15)
        // CatLIP ViT-B/16 defaults
        let catlip = CosineSchedule()
        XCTAssertEqual(catlip.learningRate(iteration: 0), 1e-6)
        XCTAssertEqual(catlip.learningRate(iteration: 10_000), 1e-3, accuracy: 1e-15)
    }
}

final class BenchTests: XCTestCase {
    /// The analytic FLOP counts the PyTorch peer prints for its two reference configurations.
    func testFlopCounts() {
        let a = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 64, patchSize: 8, numClasses: 1000, embedDim: 192, depth: 6, numHeads: 3))
        XCTAssertEqual(ViTBench.forwardFlopsPerImage(a) / 1e9, 0.3696, accuracy: 5e-4)
        let ti = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 224, patchSize: 16, numClasses: 1000, embedDim: 192, depth: 12, numHeads: 3
            ))
        XCTAssertEqual(ViTBench.forwardFlopsPerImage(ti) / 1e9, 2.51, accuracy: 5e-3)
        // what the engine computes: config A's last block on the class token only saves
        // 2 x (30,376,320 - 5,185,920) FLOPs per image (counted by hand); avg pooling saves none
        XCTAssertEqual(ViTBench.forwardFlopsPerImage(a), 369_618_432)
        XCTAssertEqual(ViTBench.executedForwardFlopsPerImage(a), 319_237_632)
        let avg = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 64, patchSize: 8, numClasses: 1000, globalPool: "avg", embedDim: 192,
                depth: 6, numHeads: 3))
        XCTAssertEqual(
            ViTBench.executedForwardFlopsPerImage(avg), ViTBench.forwardFlopsPerImage(avg))
    }

    func testRunReportsEveryField() throws {
        let c = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 16, patchSize: 8, numClasses: 7, embedDim: 8, depth: 1, numHeads: 2))
        for train in [true, false] {
            let r = try ViTBench.run(config: c, batchSize: 2, train: train, steps: 2, warmup: 1)
            XCTAssertEqual(r.mode, train ? "train" : "infer")
            XCTAssert(
                r.imagesPerSecond > 0 && r.gflops > 0 && r.peakRssMb > 0 && r.activationMb > 0)
            XCTAssert(r.gflopsExecuted > 0 && r.gflopsExecuted < r.gflops)
            XCTAssert(r.stepMsMin <= r.stepMsMedian && r.stepMsMedian <= r.stepMsMax)
            XCTAssertEqual(r.parameters, try ViTModel(config: c).layout.parameterCount)
            let json = String(decoding: try JSONEncoder().encode(r), as: UTF8.self)
            XCTAssert(json.contains("\"images_per_s\""), json)
        }
    }
}
