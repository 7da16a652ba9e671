import Foundation
import Support
import XCTest

@testable import ViT

/// Training at bf16: each backward product against a float reference on the same bf16-rounded
/// inputs (only the summation order differs), and a whole step's gradients against the fp32
/// step's; threads change no bit.
final class TrainingBF16Tests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
    }

    /// dinp (+)= dout · W and dW += doutᵀ · X on ragged shapes, both orientations packed as
    /// training packs them, within 2e-5 of the largest reference value; dbias in float; the
    /// same bits with 1, 2 and 3 worker threads.
    func testBackwardProductsMatchTheRoundedReference() throws {
        let r = Gemm.roundedToBF16
        let saved = Parallelism.threads
        defer { Parallelism.threads = saved }
        for (rows, inF, outF, accumulate) in [(37, 29, 45, false), (200, 64, 96, true), (15, 33, 17, true), (1, 8, 70, false), (600, 96, 64, true)] {
            let dout = [Float].randomNormal(rows * outF, seed: 1)
            let inp = [Float].randomNormal(rows * inF, seed: 2)
            let w = [Float].randomNormal(outF * inF, seed: 3, std: 0.2)
            let dinp0 = [Float].randomNormal(rows * inF, seed: 4)
            let dw0 = [Float].randomNormal(outF * inF, seed: 5)
            var dinp = dinp0, dw = dw0
            var db = [Float](repeating: 0.5, count: outF)
            let bytes = Gemm.bf16PackedBytes(k: outF, n: inF)
            let storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { storage.deallocate() }
            let packed = w.withUnsafeBufferPointer {
                Gemm.packBF16Parallel(into: storage, b: $0.baseAddress!, ldb: inF, transB: false, k: outF, n: inF)
            }
            func run(threads: Int) -> ([Float], [Float], [Float]) {
                Parallelism.threads = threads
                var (di, dW, dB) = (dinp0, dw0, [Float](repeating: 0.5, count: outF))
                dout.withUnsafeBufferPointer { g in
                    inp.withUnsafeBufferPointer { x in
                        Kernels.linearBackwardBF16(
                            dinp: &di, dweight: &dW, dbias: &dB, dout: g.baseAddress!, inp: x.baseAddress!, weight: packed,
                            rows: rows, inFeatures: inF, outFeatures: outF, accumulate: accumulate)
                    }
                }
                return (di, dW, dB)
            }
            (dinp, dw, db) = run(threads: 2)
            for threads in [1, 3] {
                let other = run(threads: threads)
                XCTAssert(other.0 == dinp && other.1 == dw && other.2 == db, "\(rows)x\(inF)x\(outF): \(threads) threads differ from 2")
            }
            var wantDinp = [Float](repeating: 0, count: rows * inF)
            var wantDw = [Float](repeating: 0, count: outF * inF)
            for i in 0..<rows {
                for j in 0..<inF {
                    var s = 0.0
                    for o in 0..<outF { s += Double(r(dout[i * outF + o])) * Double(r(w[o * inF + j])) }
                    wantDinp[i * inF + j] = Float(s) + (accumulate ? dinp0[i * inF + j] : 0)
                }
            }
            for o in 0..<outF {
                for j in 0..<inF {
                    var s = 0.0
                    for i in 0..<rows { s += Double(r(dout[i * outF + o])) * Double(r(inp[i * inF + j])) }
                    wantDw[o * inF + j] = Float(s) + dw0[o * inF + j]
                }
            }
            let what = "\(rows)x\(inF)x\(outF) accumulate \(accumulate)"
            XCTAssert(relativeToMax("dinp", dinp, wantDinp, rel: 2e-5).score <= 1, what)
            XCTAssert(relativeToMax("dW", dw, wantDw, rel: 2e-5).score <= 1, what)
            let wantDb = (0..<outF).map { o in 0.5 + (0..<rows).reduce(Float(0)) { $0 + dout[$1 * outF + o] } }
            XCTAssert(relativeToMax("dbias", db, wantDb, rel: 1e-5).score <= 1, what)
        }
    }

    /// The PyTorch fixtures' models and batches (token and avg pooling, layer scaling, odd
    /// shapes): the bf16 step's gradients within 1e-2 of the fp32 step's, tensor by tensor.
    func testFixtureStepsAtBF16() throws {
        for name in ["cls_uniform", "avg_scaled", "awkward"] {
            let dir = try fixturesRoot() + "/" + name
            let model = try ViTModel.load(directory: dir)
            let ref = try SafeTensors.read(path: dir + "/reference.safetensors")
            let input = try XCTUnwrap(ref["input"]), targets = try XCTUnwrap(ref["targets"])
            let acts = model.makeActivations(batchSize: input.shape[0])
            func grads(_ precision: InferencePrecision) throws -> [Float] {
                try model.setTrainingPrecision(precision)
                input.values.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, activations: acts) }
                model.zeroGradients()
                targets.values.withUnsafeBufferPointer { model.backward(targets: $0.baseAddress!, activations: acts) }
                return Array(model.gradients.buffer)
            }
            let (float, half) = (try grads(.fp32), try grads(.bf16))
            var worst: Float = 0
            for s in model.layout.specs {
                let d = relativeToMax(s.name, Array(half[s.offset..<(s.offset + s.count)]), Array(float[s.offset..<(s.offset + s.count)]), rel: 1e-2)
                worst = max(worst, d.score)
                XCTAssert(d.score <= 1, "\(name): \(d.description)")
            }
            print("bf16 step on fixture \(name): worst gradient difference \(worst) of the 1e-2 bound")
        }
    }

    /// A whole step at bf16 against the same step at fp32: every gradient within 1e-2 of its
    /// tensor's largest value, the loss within 1e-2; the naive backend stays float. (A whole
    /// step's bits depend on the thread count at fp32 too: LayerNorm's parameter gradients sum
    /// per worker; the bf16 products themselves do not, see the test above.)
    func testStepAtBF16StaysNearFP32() throws {
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 32, patchSize: 8, numClasses: 12, embedDim: 64, depth: 2, numHeads: 4))
        let model = try ViTModel(config: config, seed: 21)
        let B = 6
        let images = [Float].randomNormal(B * 3 * 32 * 32, seed: 22)
        let targets = (0..<(B * 12)).map { Float($0 % 5 == 0 ? 1 : 0) }
        let acts = model.makeActivations(batchSize: B)
        func step() -> (loss: Float, grads: [Float]) {
            model.forward(images: images, activations: acts)
            let loss = model.loss(targets: targets, activations: acts)
            model.zeroGradients()
            model.backward(targets: targets, activations: acts)
            return (loss, Array(model.gradients.buffer))
        }
        let saved = Parallelism.threads
        defer { Parallelism.threads = saved }
        Parallelism.threads = 2
        try model.setTrainingPrecision(.fp32)
        let float = step()
        try model.setTrainingPrecision(.bf16)
        let half = step()
        XCTAssertNotNil(model.bf16Training)
        XCTAssertNotEqual(half.grads, float.grads, "the bf16 products did not run")
        XCTAssertEqual(half.loss, float.loss, accuracy: 1e-2 * abs(float.loss))
        var worst: Float = 0
        for s in model.layout.specs {
            let a = Array(half.grads[s.offset..<(s.offset + s.count)])
            let b = Array(float.grads[s.offset..<(s.offset + s.count)])
            let d = relativeToMax(s.name, a, b, rel: 1e-2)
            worst = max(worst, d.score)
            XCTAssert(d.score <= 1, d.description)
        }
        print("bf16 step: worst gradient difference \(worst) of the 1e-2 bound")
        model.backend = .naive
        model.forward(images: images, activations: acts)
        XCTAssertNil(model.bf16Training, "the naive backend stays float")
    }
}
