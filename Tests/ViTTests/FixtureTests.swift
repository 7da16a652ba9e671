import Foundation
import XCTest

@testable import ViT

/// The three PyTorch reference models of Fixtures/make_vit_fixtures.py: forward, loss, every
/// gradient, the global gradient norm and two clipped AdamW steps on the same batch.
final class FixtureTests: XCTestCase {

    struct TrainSettings {
        var lr: Float
        var beta1: Float
        var beta2: Float
        var eps: Float
        var weightDecay: Float
        var clip: Float
        var steps: Int
    }

    func trainSettings(_ dir: String) throws -> TrainSettings {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/train.json"))
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let betas = try XCTUnwrap(j["betas"] as? [Double])
        let clip = try XCTUnwrap((j["clip_grad_norm"] as? [String: Any])?["max_norm"] as? Double)
        return TrainSettings(
            lr: Float(try XCTUnwrap(j["lr"] as? Double)), beta1: Float(betas[0]),
            beta2: Float(betas[1]), eps: Float(try XCTUnwrap(j["eps"] as? Double)),
            weightDecay: Float(try XCTUnwrap(j["weight_decay"] as? Double)), clip: Float(clip),
            steps: try XCTUnwrap(j["steps"] as? Int))
    }

    /// Runs one fixture through `backend`; returns the worst score per kind for the log.
    @discardableResult
    func check(_ name: String, backend: ComputeBackend) throws -> [String: Difference] {
        let dir = try fixturesRoot() + "/" + name
        let model = try ViTModel.load(directory: dir)
        model.backend = backend
        let ref = try SafeTensors.read(path: dir + "/reference.safetensors")
        let settings = try trainSettings(dir)
        XCTAssertEqual(settings.steps, 2)
        let input = try XCTUnwrap(ref["input"])
        let targets = try XCTUnwrap(ref["targets"])
        let B = input.shape[0]
        XCTAssertEqual(
            input.shape, [B, model.channels, model.imageSize, model.imageSize], "input shape")
        XCTAssertEqual(targets.shape, [B, model.numClasses])
        let acts = model.makeActivations(batchSize: B)
        var worst: [String: Difference] = [:]
        func note(_ kind: String, _ diffs: [Difference]) {
            for d in diffs where d.score > (worst[kind]?.score ?? -1) { worst[kind] = d }
        }
        func forward() {
            input.values.withUnsafeBufferPointer {
                model.forward(images: $0.baseAddress!, activations: acts)
            }
        }
        func loss() -> Float {
            targets.values.withUnsafeBufferPointer {
                model.loss(targets: $0.baseAddress!, activations: acts)
            }
        }
        func backward() {
            model.zeroGradients()
            targets.values.withUnsafeBufferPointer {
                model.backward(targets: $0.baseAddress!, activations: acts)
            }
        }
        func want(_ key: String) throws -> [Float] { try XCTUnwrap(ref[key], key).values }
        let D = model.dim
        let V = model.numClasses

        // forward
        forward()
        let preLogits = Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: B * D))
        let logits = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * V))
        XCTAssert(preLogits.allSatisfy(\.isFinite) && logits.allSatisfy(\.isFinite))
        let loss1 = loss()
        let fwd = [
            elementwise("pre_logits", preLogits, try want("pre_logits"), rtol: 1e-4, atol: 1e-5),
            elementwise("logits", logits, try want("logits"), rtol: 1e-4, atol: 1e-5),
            elementwise("loss", [loss1], try want("loss"), rtol: 1e-4, atol: 1e-5),
        ]
        note("forward", fwd)
        assertWithinTolerance(fwd, "\(name) [\(backend)] forward")

        // gradients, q/k/v blocks separately; the k bias block is zero in exact arithmetic
        backward()
        var grads: [Difference] = []
        for s in model.layout.specs {
            let got = Array(model.gradient(s.name))
            let want = try want("grad." + s.name)
            XCTAssertEqual(want.count, got.count, s.name)
            for ((blockName, g), (_, w)) in zip(qkvBlocks(s.name, got), qkvBlocks(s.name, want)) {
                if blockName.hasSuffix(".attn.qkv.bias[k]") {
                    grads.append(relativeToMax(blockName, g, w, rel: 0, absolute: 1e-7))
                    continue
                }
                grads.append(relativeToMax(blockName, g, w, rel: 1e-3))
                XCTAssertGreaterThan(maxAbs(g), 0, "\(blockName) has no gradient")
            }
        }
        note("grad", grads)
        assertWithinTolerance(grads, "\(name) [\(backend)] gradients")

        // two clipped AdamW steps on the same batch
        let opt = AdamW(
            model: model, beta1: settings.beta1, beta2: settings.beta2, eps: settings.eps,
            weightDecay: settings.weightDecay)
        let norm1 = clipGradientNorm(model, maxNorm: settings.clip)
        opt.update(model, lr: settings.lr)
        forward()
        let loss2 = loss()
        backward()
        let norm2 = clipGradientNorm(model, maxNorm: settings.clip)
        opt.update(model, lr: settings.lr)
        let scalars = [
            relativeToMax("grad_norm", [norm1], try want("grad_norm"), rel: 1e-3),
            relativeToMax("grad_norm_step2", [norm2], try want("grad_norm_step2"), rel: 1e-3),
            elementwise("loss_step2", [loss2], try want("loss_step2"), rtol: 1e-4, atol: 1e-5),
        ]
        note("scalars", scalars)
        assertWithinTolerance(scalars, "\(name) [\(backend)] grad norms / loss after step 1")
        var steps: [Difference] = []
        for s in model.layout.specs {
            let got = Array(model.parameter(s.name))
            XCTAssert(got.allSatisfy(\.isFinite), s.name)
            let want = try want("step2." + s.name)
            for ((blockName, g), (_, w)) in zip(qkvBlocks(s.name, got), qkvBlocks(s.name, want)) {
                steps.append(relativeToMax(blockName, g, w, rel: 1e-3))
            }
        }
        note("step2", steps)
        assertWithinTolerance(steps, "\(name) [\(backend)] parameters after two AdamW steps")
        let summary = worst.keys.sorted().map { "  \($0): \(worst[$0]!)" }.joined(separator: "\n")
        print("fixture \(name) [\(backend)] worst per kind:\n\(summary)")
        return worst
    }

    func testClsUniformFast() throws { try check("cls_uniform", backend: .fast) }
    func testClsUniformNaive() throws { try check("cls_uniform", backend: .naive) }
    func testAvgScaledFast() throws { try check("avg_scaled", backend: .fast) }
    func testAvgScaledNaive() throws { try check("avg_scaled", backend: .naive) }
    func testAwkwardFast() throws { try check("awkward", backend: .fast) }
    func testAwkwardNaive() throws { try check("awkward", backend: .naive) }

    /// The layer-wise scaling geometry of avg_scaled (from the fixture script's docstring).
    func testAvgScaledGeometry() throws {
        let model = try ViTModel.load(directory: try fixturesRoot() + "/avg_scaled")
        XCTAssertEqual(model.blocks.map(\.numHeads), [2, 3, 4])
        XCTAssertEqual(model.blocks.map(\.attentionWidth), [16, 24, 32])
        XCTAssertEqual(model.blocks.map(\.mlpHidden), [16, 72, 128])
        XCTAssertNil(model.layout.spec(named: "cls_token"))
        XCTAssertNil(model.layout.spec(named: "norm.weight"))
        XCTAssertEqual(model.layout.spec(named: "fc_norm.weight")?.shape, [32])
        XCTAssertEqual(model.layout.spec(named: "pos_embed")?.shape, [1, 16, 32])
    }

    /// The decay groups follow train.json: ndim >= 2 decays (cls_token and pos_embed included).
    func testDecayGroupsMatchTrainJSON() throws {
        for name in ["cls_uniform", "avg_scaled", "awkward"] {
            let dir = try fixturesRoot() + "/" + name
            let data = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/train.json"))
            let j = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
            let decay = try XCTUnwrap(j["decay_params"] as? [String])
            let noDecay = try XCTUnwrap(j["no_decay_params"] as? [String])
            let model = try ViTModel.load(directory: dir)
            XCTAssertEqual(model.layout.specs.filter(\.decays).map(\.name), decay, name)
            XCTAssertEqual(model.layout.specs.filter { !$0.decays }.map(\.name), noDecay, name)
        }
    }
}
