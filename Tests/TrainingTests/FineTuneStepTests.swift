import Foundation
import Support
import ViT
import XCTest

@testable import Training

/// One whole fine-tuning step against a timm 1.0.31 VisionTransformer step
/// (Fixtures/finetune_step, make_finetune_step_fixture.py): mixup with a fixed λ and label
/// smoothing, stochastic depth with fixed masks, the soft-target cross-entropy, its gradients,
/// clipping, and one AdamW step with timm's layer-decay groups. Tolerances: forward (logits,
/// loss) |diff| <= 1e-5 + 1e-4 |ref| elementwise; each gradient tensor max |diff| <= 1e-3 max
/// |ref|; the gradient norm within 1e-4 relative; each tensor's update (after - before) max
/// |diff| <= 1e-3 max |ref update| over the elements whose gradient is at least 1e-2 of the
/// tensor's largest, <= 1e-2 max |ref update| over all. Adam's first step moves an element by
/// about lr·g / (|g| + ε): the smaller |g|, the larger the relative effect of the gradient's
/// rounding (itself bounded relative to the tensor's largest gradient), so the tiny-gradient
/// elements get the looser bound (the k block of qkv.bias, zero in exact arithmetic, none).
final class FineTuneStepTests: XCTestCase {
    private struct Fixture {
        var directory: String
        var ref: [String: [Float]]
        func want(_ key: String) throws -> [Float] { try XCTUnwrap(ref[key], key) }
    }

    private func fixture() throws -> Fixture {
        let directory = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/finetune_step"
        let ref = try SafeTensors.read(path: directory + "/reference.safetensors").tensors.mapValues(\.values)
        return Fixture(directory: directory, ref: ref)
    }

    /// The largest |got - ref| over a tensor, and the largest |ref|.
    private func worst(_ got: [Float], _ ref: [Float]) -> (diff: Float, refMax: Float) {
        precondition(got.count == ref.count)
        var (diff, refMax): (Float, Float) = (0, 0)
        for (a, b) in zip(got, ref) {
            diff = max(diff, a.isFinite ? abs(a - b) : .infinity)
            refMax = max(refMax, abs(b))
        }
        return (diff, refMax)
    }

    /// The k block of a qkv bias: zero gradient in exact arithmetic (softmax is invariant to a
    /// shift of every key by one vector), so its Adam update is the sign of rounding noise.
    private func isKeyBias(_ name: String, _ i: Int, _ model: ViTModel) -> Bool {
        guard name.hasSuffix(".attn.qkv.bias") else { return false }
        let A = model.parameter(name).count / 3
        return (A..<(2 * A)).contains(i)
    }

    /// The step on `backend`; returns (kind, measured max error / tolerance) for the report.
    private func step(_ backend: ComputeBackend) throws -> [String: Float] {
        let f = try fixture()
        let model = try ViTModel.load(directory: f.directory)
        model.backend = backend
        model.headLoss = .softmaxCrossEntropy
        let (B, V, S, depth) = (4, model.numClasses, model.imageSize, model.blocks.count)
        XCTAssertEqual(V, 5)
        XCTAssertEqual(model.config.dropPathRate, 0.2, accuracy: 1e-12, "timm's model_args drop_path_rate")
        var scores: [String: Float] = [:]
        func record(_ kind: String, _ score: Float) { scores[kind] = max(scores[kind] ?? 0, score) }

        // mixup with λ 0.7 and smoothing 0.1, as timm's Mixup made the fixture's batch
        var images = try f.want("x")
        let draw = Mixup.Draw(lambda: 0.7, box: nil)
        images.withUnsafeMutableBufferPointer { Mixup.mixImages($0.baseAddress!, count: B, side: S, draw: draw) }
        var targets = [Float](repeating: 0.1 / Float(V), count: B * V)
        for (b, label) in try f.want("labels").enumerated() { targets[b * V + Int(label)] += 0.9 }
        targets.withUnsafeMutableBufferPointer { Mixup.mixTargets($0.baseAddress!, count: B, classes: V, lambda: 0.7) }
        XCTAssertLessThanOrEqual(worst(images, try f.want("mixed_x")).diff, 1e-6)
        XCTAssertLessThanOrEqual(worst(targets, try f.want("targets")).diff, 1e-6)

        // timm's per-block rates and the fixed masks
        let rates = DropPath.rates(0.2, depth: depth)
        XCTAssertLessThanOrEqual(worst(rates.map { Float($0) }, try f.want("rates")).diff, 1e-7)
        let keep = try f.want("keep").map { $0 == 1 }
        XCTAssertEqual(keep.count, depth * 2 * B)
        XCTAssertTrue(keep.contains(false), "the fixture drops some branches")

        let acts = model.makeActivations(batchSize: B)
        func forwardLoss(drop: Bool) -> Float {
            if drop { acts.setDropPath(keep: keep, rates: rates) } else { acts.clearDropPath() }
            images.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, activations: acts) }
            return targets.withUnsafeBufferPointer { model.loss(targets: $0.baseAddress!, activations: acts) }
        }

        // without the masks the logits are elsewhere: the comparison below can fail
        _ = forwardLoss(drop: false)
        let plain = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * V))
        XCTAssertGreaterThan(worst(plain, try f.want("logits")).diff, 1e-2, "the masks change the logits")

        let loss = forwardLoss(drop: true)
        let logits = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * V))
        for (got, want) in zip(logits + [loss], try f.want("logits") + f.want("loss")) {
            let score = abs(got - want) / (1e-5 + 1e-4 * abs(want))
            record("forward", score)
            XCTAssertLessThanOrEqual(score, 1, "[\(backend)] logits/loss \(got) vs \(want)")
        }

        model.zeroGradients()
        targets.withUnsafeBufferPointer { model.backward(targets: $0.baseAddress!, activations: acts) }
        for s in model.layout.specs {
            let got = Array(model.gradient(s.name))
            let (diff, refMax) = worst(got, try f.want("grad." + s.name))
            record("gradients", diff / (1e-3 * refMax))
            XCTAssertLessThanOrEqual(diff, 1e-3 * refMax, "[\(backend)] grad \(s.name)")
            XCTAssertGreaterThan(refMax, 0, s.name)
        }

        // clipping at half the norm, then one AdamW step with timm's layer-decay groups
        let before = Dictionary(uniqueKeysWithValues: model.layout.specs.map { ($0.name, Array(model.parameter($0.name))) })
        let norm = clipGradientNorm(model, maxNorm: try f.want("clip")[0])
        let wantNorm = try f.want("grad_norm")[0]
        record("grad_norm", abs(norm - wantNorm) / (1e-4 * wantNorm))
        XCTAssertEqual(norm, wantNorm, accuracy: 1e-4 * wantNorm)
        let adam = AdamW(model: model, weightDecay: 0.05)
        adam.decayEmbeddings = false
        adam.lrScales = AdamW.layerDecayScales(model, decay: 0.75)
        adam.update(model, lr: 1e-3)
        for s in model.layout.specs {
            let old = try XCTUnwrap(before[s.name])
            let after = Array(model.parameter(s.name))
            let (wantAfter, wantGrad) = (try f.want("after." + s.name), try f.want("grad." + s.name))
            let gradMax = wantGrad.reduce(0) { max($0, abs($1)) }
            var (got, want, gotResolved, wantResolved): ([Float], [Float], [Float], [Float]) = ([], [], [], [])
            for i in after.indices where !isKeyBias(s.name, i, model) {
                got.append(after[i] - old[i])
                want.append(wantAfter[i] - old[i])
                if abs(wantGrad[i]) >= 1e-2 * gradMax {
                    gotResolved.append(got.last!)
                    wantResolved.append(want.last!)
                }
            }
            let (diff, refMax) = worst(got, want)
            record("updates", diff / (1e-2 * refMax))
            XCTAssertLessThanOrEqual(diff, 1e-2 * refMax, "[\(backend)] update of \(s.name)")
            XCTAssertGreaterThan(refMax, 0, "\(s.name) moved")
            let resolved = worst(gotResolved, wantResolved)
            record("updates (resolved gradients)", resolved.diff / (1e-3 * refMax))
            XCTAssertLessThanOrEqual(resolved.diff, 1e-3 * refMax, "[\(backend)] update of \(s.name) where |grad| >= 1e-2 max")
        }
        print("fine-tuning step [\(backend)] worst error / tolerance: \(scores.sorted { $0.key < $1.key })")
        return scores
    }

    func testFineTuningStepMatchesTimmFast() throws { _ = try step(.fast) }
    func testFineTuningStepMatchesTimmNaive() throws { _ = try step(.naive) }
}
