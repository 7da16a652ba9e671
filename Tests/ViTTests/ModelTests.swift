import Encoder
import Foundation
import Support
import XCTest

@testable import ViT

final class ModelTests: XCTestCase {

    func tinyConfig(
        classToken: Bool = true, avg: Bool = false, scaling: Bool = false, qkvBias: Bool = true
    )
        -> ModelConfig
    {
        ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 10, patchSize: 4, numClasses: 5, globalPool: avg ? "avg" : "token",
                embedDim: 8, depth: 2, numHeads: 2, mlpRatio: 1.5, qkvBias: qkvBias,
                classToken: classToken,
                layerScaling: scaling
                    ? LayerScaling(headDim: 2, alpha: [0.5, 1], beta: [0.5, 2]) : nil))
    }

    func testInitialisation() throws {
        let config = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 32, patchSize: 8, numClasses: 300, embedDim: 64, depth: 2, numHeads: 4))
        let a = try ViTModel(config: config, seed: 7)
        let b = try ViTModel(config: config, seed: 7)
        let c = try ViTModel(config: config, seed: 8)
        XCTAssertEqual(
            Array(a.parameters.buffer), Array(b.parameters.buffer), "seeded init is reproducible")
        XCTAssertNotEqual(Array(a.parameters.buffer), Array(c.parameters.buffer))
        // timm's VisionTransformer init: trunc_normal_(std=.02) cut at ±2 absolute (a plain
        // normal in effect) for Linear weights, the head and pos_embed; normal(1e-6) for
        // cls_token; PyTorch's Conv2d default (uniform in ±1/√fan_in) for the patch conv
        func stats(_ p: [Float]) -> (mean: Float, std: Float) {
            let mean = p.reduce(0, +) / Float(p.count)
            return (mean, (p.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(p.count)).squareRoot())
        }
        let bound = 1 / Float(3 * 8 * 8).squareRoot()
        var beyondTwoStd = 0
        for s in a.layout.specs {
            let p = Array(a.parameter(s.name))
            if s.name.hasPrefix("patch_embed.proj.") {
                XCTAssertLessThanOrEqual(maxAbs(p), bound, s.name)
                if p.count >= 4096 {
                    // uniform in ±b has std b/√3
                    XCTAssertEqual(stats(p).std, bound / Float(3).squareRoot(), accuracy: 0.05 * bound, s.name)
                } else {
                    XCTAssertGreaterThan(maxAbs(p), 0.5 * bound, s.name)
                }
            } else if s.name == "cls_token" {
                XCTAssertLessThan(maxAbs(p), 1e-5, s.name)
                XCTAssertGreaterThan(maxAbs(p), 0, s.name)
            } else if s.name.hasSuffix(".bias") {
                XCTAssert(p.allSatisfy { $0 == 0 }, s.name)
            } else if s.name.contains("norm") {
                XCTAssert(p.allSatisfy { $0 == 1 }, s.name)
            } else {
                let (mean, std) = stats(p)
                if p.count >= 4096 {
                    XCTAssertEqual(std, 0.02, accuracy: 0.001, s.name)
                    XCTAssertEqual(mean, 0, accuracy: 0.001, s.name)
                }
                XCTAssertGreaterThan(std, 0.015, s.name)
                XCTAssertLessThan(maxAbs(p), 0.2, s.name)
                beyondTwoStd += p.filter { abs($0) > 0.04 }.count
            }
        }
        // not cut at ±2 std: about 4.6% of a normal's draws lie beyond
        XCTAssertGreaterThan(beyondTwoStd, 1000)
        XCTAssertEqual(a.layout.parameterCount, a.layout.specs.reduce(0) { $0 + $1.count })
    }

    func testLayoutNamesAndShapes() throws {
        let m = try ViTModel(config: tinyConfig(), seed: 1)
        XCTAssertEqual(
            Array(m.layout.specs.map(\.name).prefix(4)),
            ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"])
        XCTAssertEqual(m.layout.spec(named: "pos_embed")?.shape, [1, 5, 8])
        XCTAssertEqual(m.layout.spec(named: "patch_embed.proj.weight")?.shape, [8, 3, 4, 4])
        XCTAssertEqual(m.layout.spec(named: "blocks.1.attn.qkv.weight")?.shape, [24, 8])
        XCTAssertEqual(m.layout.spec(named: "blocks.1.mlp.fc1.weight")?.shape, [12, 8])
        XCTAssertEqual(m.layout.spec(named: "head.weight")?.shape, [5, 8])
        XCTAssertNotNil(m.layout.spec(named: "norm.bias"))
        XCTAssertNil(m.layout.spec(named: "fc_norm.bias"))
        let noBias = try ViTModel(config: tinyConfig(qkvBias: false), seed: 1)
        XCTAssertNil(noBias.layout.spec(named: "blocks.0.attn.qkv.bias"))
        // views do not overlap and are 64-byte aligned
        var end = 0
        for s in m.layout.specs {
            XCTAssertGreaterThanOrEqual(s.offset, end)
            XCTAssertEqual(s.offset % 16, 0)
            end = s.offset + s.count
        }
        XCTAssertLessThanOrEqual(end, m.layout.totalCount)
    }

    func testSaveLoadRoundTrip() throws {
        let dir = try temporaryDirectory(self) + "/model"
        let m = try ViTModel(config: tinyConfig(avg: true, scaling: true), seed: 3)
        try m.save(directory: dir)
        let back = try ViTModel.load(directory: dir)
        XCTAssertEqual(back.config, m.config)
        XCTAssertEqual(Array(back.parameters.buffer), Array(m.parameters.buffer))
        let st = try SafeTensors.read(path: dir + "/model.safetensors")
        XCTAssertEqual(st.metadata, ["format": "pt"])
        XCTAssertEqual(st.names, m.layout.specs.map(\.name).sorted())
        // a fixture directory written by PyTorch round-trips byte for byte
        let fixture = try fixturesRoot() + "/cls_uniform"
        let f = try ViTModel.load(directory: fixture)
        let out = try temporaryDirectory(self)
        try f.save(directory: out)
        XCTAssertEqual(
            FileManager.default.contents(atPath: out + "/model.safetensors"),
            FileManager.default.contents(atPath: fixture + "/model.safetensors"))
    }

    func testLoadReportsMismatches() throws {
        let m = try ViTModel(config: tinyConfig(), seed: 3)
        var st = SafeTensors(metadata: ["format": "pt"])
        for s in m.layout.specs {
            st.tensors[s.name] = FloatTensor(shape: s.shape, values: Array(m.parameter(s.name)))
        }
        XCTAssertNoThrow(try m.loadParameters(st))

        var missing = st
        missing.tensors["blocks.1.norm2.bias"] = nil
        XCTAssertThrowsError(try m.loadParameters(missing, path: "w.safetensors")) {
            XCTAssert("\($0)".contains("missing tensors: blocks.1.norm2.bias"), "\($0)")
            XCTAssert("\($0)".hasPrefix("w.safetensors: "), "\($0)")
        }
        var extra = st
        extra.tensors["reg_token"] = FloatTensor(
            shape: [1, 1, 8], values: Array(repeating: 0, count: 8))
        XCTAssertThrowsError(try m.loadParameters(extra)) {
            XCTAssert("\($0)".contains("unexpected tensors: reg_token"), "\($0)")
        }
        var shaped = st
        shaped.tensors["pos_embed"] = FloatTensor(
            shape: [1, 4, 10], values: Array(repeating: 0, count: 40))
        XCTAssertThrowsError(try m.loadParameters(shaped)) {
            XCTAssert(
                "\($0)".contains("'pos_embed' has shape [1, 4, 10], the config needs [1, 5, 8]"),
                "\($0)")
        }
        var nan = st
        nan.tensors["head.bias"] = FloatTensor(shape: [5], values: [0, .nan, 0, 0, 0])
        XCTAssertThrowsError(try m.loadParameters(nan)) {
            XCTAssert("\($0)".contains("non-finite"), "\($0)")
        }
        // a directory whose weights belong to another config
        let dir = try temporaryDirectory(self)
        try m.save(directory: dir)
        try tinyConfig(avg: true).write(path: dir + "/config.json")
        XCTAssertThrowsError(try ViTModel.load(directory: dir)) {
            XCTAssert("\($0)".contains("missing tensors: fc_norm.weight, fc_norm.bias"), "\($0)")
            XCTAssert("\($0)".contains("unexpected tensors: norm.bias, norm.weight"), "\($0)")
        }
        XCTAssertThrowsError(try ViTModel.load(directory: dir + "/nowhere")) {
            XCTAssert("\($0)".contains("config.json"), "\($0)")
        }
    }

    /// Whole-model gradient against central differences of the loss, for every parameter
    /// tensor, on tiny models covering class token / avg pooling / layer scaling / no qkv bias.
    func testModelFiniteDifferences() throws {
        for (cls, avg, scaling, qkvBias, headLoss) in [
            (true, false, false, true, HeadLoss.binaryCrossEntropy), (false, true, true, true, .binaryCrossEntropy),
            (true, true, false, false, .binaryCrossEntropy), (false, true, false, true, .softmaxCrossEntropy),
        ] {
            let m = try ViTModel(
                config: tinyConfig(classToken: cls, avg: avg, scaling: scaling, qkvBias: qkvBias))
            m.backend = .naive
            m.headLoss = headLoss
            // larger weights than the 0.02 init, so that every gradient is well above noise
            var rng = SeededGenerator(seed: 5)
            for i in 0..<m.parameters.count { m.parameters.base[i] = Float(rng.nextNormal()) * 0.3 }
            for s in m.layout.specs where s.name.contains("norm") && s.name.hasSuffix(".weight") {
                for i in 0..<s.count { m.parameters.base[s.offset + i] += 1 }
            }
            let B = 2
            let images = [Float].randomNormal(B * 3 * 10 * 10, seed: 6)
            // multi-hot rows for BCE; rows of probabilities (a smoothed label, a mixup) for softmax
            let targets: [Float] = headLoss == .binaryCrossEntropy
                ? [1, 0, 0, 1, 0, 0, 1, 1, 0, 0] : [0.02, 0.92, 0.02, 0.02, 0.02, 0.6, 0, 0, 0.4, 0]
            let acts = m.makeActivations(batchSize: B)
            for e in finiteDifferenceErrors(m, images: images, targets: targets, acts: acts) {
                XCTAssertLessThanOrEqual(
                    e.worst, 2e-2,
                    "cls \(cls) avg \(avg) scaling \(scaling) \(headLoss): \(e.name) off by \(e.worst) of max |grad| \(e.scale)"
                )
            }
        }
    }

    /// The same buffers serve every step: results are identical on reuse, and the fast kernels agree with
    /// the naive model: with avg pooling, and with token pooling, where the fast backend computes
    /// the last block for the class token only and the naive one every row (with and without
    /// a qkv bias).
    func testActivationsReusedAndBackendsAgree() throws {
        for (avg, qkvBias, headLoss) in [
            (true, true, HeadLoss.binaryCrossEntropy), (false, true, .binaryCrossEntropy), (false, false, .binaryCrossEntropy),
            (true, true, .softmaxCrossEntropy),
        ] {
            let m = try ViTModel(
                config: tinyConfig(avg: avg, scaling: true, qkvBias: qkvBias), seed: 9)
            m.headLoss = headLoss
            let B = 3
            let images = [Float].randomNormal(B * 3 * 10 * 10, seed: 10)
            let targets = (0..<(B * 5)).map { Float($0 % 3 == 0 ? 1 : 0) }
            let acts = m.makeActivations(batchSize: B)
            XCTAssertGreaterThan(acts.byteCount, 0)
            func run(_ backend: ComputeBackend) -> ([Float], [Float]) {
                m.backend = backend
                m.forward(images: images, activations: acts)
                m.zeroGradients()
                m.backward(targets: targets, activations: acts)
                return (
                    Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * 5)),
                    Array(m.gradients.buffer)
                )
            }
            let base = acts.forwardArena.base
            let (l1, g1) = run(.fast)
            let (l2, g2) = run(.fast)
            XCTAssertEqual(l1, l2)
            XCTAssertEqual(g1, g2)
            XCTAssertEqual(acts.forwardArena.base, base)
            XCTAssertEqual(acts.lastBlockClassOnly, !avg)
            let (l3, g3) = run(.naive)
            XCTAssertFalse(acts.lastBlockClassOnly)
            XCTAssert(elementwise("logits", l3, l1, rtol: 1e-5, atol: 1e-6).score <= 1, "avg \(avg)")
            XCTAssert(relativeToMax("grads", g3, g1, rel: 1e-4).score <= 1, "avg \(avg)")
        }
    }
}

final class InferenceActivationTests: XCTestCase {
    /// Forward-only buffers (shared by every block) give the training plan's outputs with less
    /// memory, for uniform and layer-scaled models.
    func testInferencePlanMatchesTraining() throws {
        for scaling in [false, true] {
            let config = ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 12, patchSize: 4, numClasses: 6, globalPool: scaling ? "avg" : "token",
                    embedDim: 16, depth: 3, numHeads: 2, classToken: !scaling,
                    layerScaling: scaling
                        ? LayerScaling(headDim: 4, alpha: [0.5, 1], beta: [0.5, 4]) : nil))
            let m = try ViTModel(config: config, seed: 11)
            for backend in [ComputeBackend.naive, .fast] {
                m.backend = backend
                let images = [Float].randomNormal(2 * 3 * 12 * 12, seed: 12)
                let train = m.makeActivations(batchSize: 2)
                let infer = m.makeActivations(batchSize: 2, training: false)
                XCTAssertLessThan(infer.byteCount, train.byteCount)
                m.forward(images: images, activations: train)
                m.forward(images: images, activations: infer)
                XCTAssertEqual(
                    Array(UnsafeBufferPointer(start: infer.preLogitsPointer, count: 2 * 16)),
                    Array(UnsafeBufferPointer(start: train.preLogitsPointer, count: 2 * 16)))
                XCTAssertEqual(
                    Array(UnsafeBufferPointer(start: infer.logitsPointer, count: 12)),
                    Array(UnsafeBufferPointer(start: train.logitsPointer, count: 12)))
            }
        }
    }

    /// Inference in chunks of images (each weight packed once for all chunks) gives the
    /// training plan's outputs exactly, for every chunk size including a ragged last chunk
    /// (within rounding on the OpenBLAS route of a debug build).
    func testChunkedInferenceMatchesTraining() throws {
        let config = ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 16, patchSize: 4, numClasses: 7, embedDim: 48, depth: 3, numHeads: 3))
        let m = try ViTModel(config: config, seed: 21)
        let B = 5
        let images = [Float].randomNormal(B * 3 * 16 * 16, seed: 22)
        defer { Gemm.forceOwnKernels = false }
        // fast twice: as this build runs it, and on the micro-kernels (packed weights) in a
        // debug build too
        for (backend, own) in [(ComputeBackend.naive, false), (.fast, false), (.fast, true)] {
            m.backend = backend
            Gemm.forceOwnKernels = own
            let train = m.makeActivations(batchSize: B)
            m.forward(images: images, activations: train)
            let want = Array(UnsafeBufferPointer(start: train.logitsPointer, count: B * 7))
            for chunkRows in [17, 34, 40, 51, 1000] {
                let infer = ViTActivations(
                    model: m, batchSize: B, training: false, chunkRows: chunkRows)
                let chunks = (B * 17 + chunkRows - 1) / chunkRows
                XCTAssertEqual(infer.chunkImages, (B + chunks - 1) / chunks)
                m.forward(images: images, activations: infer)
                let got = Array(UnsafeBufferPointer(start: infer.logitsPointer, count: B * 7))
                let what = "\(backend) own kernels \(own) chunk rows \(chunkRows)"
                if backend == .fast && !Gemm.useOwnKernels {
                    // OpenBLAS's summation order depends on the number of rows
                    let d = elementwise("logits", got, want, rtol: 1e-5, atol: 1e-6)
                    XCTAssert(d.score <= 1, "\(what): \(d)")
                } else {
                    XCTAssertEqual(got, want, what)
                }
            }
        }
    }

    /// Inference at bf16 input precision: close to the float forward pass (cosine similarity
    /// of every embedding above 0.9999, logits within 1% of their largest magnitude; measured
    /// 0.99999 and 0.3%) but not equal to it (the bf16 products ran), for token pooling (the
    /// class-token-only last block with its own q and kv weights) and average pooling with
    /// per-block widths; chunked inference gives the unchunked bf16 result exactly; training
    /// activations and the naive backend stay float; setting fp32 again restores the float
    /// results exactly.
    func testBF16InferenceStaysCloseToFloat() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        for scaling in [false, true] {
            let config = ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 32, patchSize: 8, numClasses: 10, globalPool: scaling ? "avg" : "token",
                    embedDim: 64, depth: 3, numHeads: 2, classToken: !scaling,
                    layerScaling: scaling
                        ? LayerScaling(headDim: 16, alpha: [0.5, 1], beta: [0.5, 4]) : nil))
            let m = try ViTModel(config: config, seed: 31)
            let (B, D, V) = (5, m.dim, m.numClasses)
            let images = [Float].randomNormal(B * 3 * 32 * 32, seed: 32)
            func run(_ acts: ViTActivations) -> (emb: [Float], logits: [Float]) {
                m.forward(images: images, activations: acts)
                return (
                    Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: B * D)),
                    Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * V)))
            }
            let what = scaling ? "avg pooling, layer scaling" : "token pooling"
            let float = run(m.makeActivations(batchSize: B, training: false))
            let floatTraining = run(m.makeActivations(batchSize: B))
            m.backend = .naive
            let naive = run(m.makeActivations(batchSize: B, training: false))
            m.backend = .fast

            try m.setInferencePrecision(.bf16)
            XCTAssertEqual(m.inferencePrecision, .bf16)
            let half = run(m.makeActivations(batchSize: B, training: false))
            for b in 0..<B {
                let (x, y) = (half.emb[(b * D)..<((b + 1) * D)], float.emb[(b * D)..<((b + 1) * D)])
                let dot = zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                let cosine = dot / (x.reduce(0) { $0 + $1 * $1 }.squareRoot() * y.reduce(0) { $0 + $1 * $1 }.squareRoot())
                XCTAssertGreaterThan(cosine, 0.9999, "\(what): image \(b)")
            }
            let scale = float.logits.map(abs).max()!
            let worst = zip(half.logits, float.logits).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 0.01 * scale, "\(what): logits")
            XCTAssertNotEqual(half.emb, float.emb, "\(what): the bf16 products did not run")
            let chunked = run(ViTActivations(model: m, batchSize: B, training: false, chunkRows: 2 * m.tokens))
            XCTAssertEqual(chunked.emb, half.emb, "\(what): chunked")
            XCTAssertEqual(chunked.logits, half.logits, "\(what): chunked")
            XCTAssertEqual(run(m.makeActivations(batchSize: B)).logits, floatTraining.logits, "\(what): training")
            m.backend = .naive
            XCTAssertEqual(run(m.makeActivations(batchSize: B, training: false)).logits, naive.logits, "\(what): naive")
            m.backend = .fast

            try m.setInferencePrecision(.fp32)
            XCTAssertEqual(m.inferencePrecision, .fp32)
            XCTAssertEqual(run(m.makeActivations(batchSize: B, training: false)).emb, float.emb, "\(what): fp32 again")
        }
    }
}

final class EmbedderTests: XCTestCase {
    /// Batched embeddings (with a short last batch and mean/std normalisation) equal the
    /// pre_logits of one forward pass over all images; for the fixture model they match
    /// PyTorch's pre_logits.
    func testEmbeddingsMatchForward() throws {
        let dir = try fixturesRoot() + "/awkward"
        let model = try ViTModel.load(directory: dir)
        let ref = try SafeTensors.read(path: dir + "/reference.safetensors")
        let input = try XCTUnwrap(ref["input"]).values
        let B = 3
        let embedder = ViTEmbedder(model: model, batchSize: 2)
        let emb = embedder.embed(images: input, count: B)
        XCTAssertEqual(emb.count, B * model.dim)
        let d = elementwise(
            "embeddings", emb, try XCTUnwrap(ref["pre_logits"]).values, rtol: 1e-4, atol: 1e-5)
        XCTAssert(d.score <= 1, "\(d)")

        // with normalisation: mean/std folded into the pixels give the same result
        var config = model.config
        config.pretrainedCfg.mean = [0.5, 0.25, 0]
        config.pretrainedCfg.std = [2, 1, 0.5]
        let normed = try ViTModel(config: config)
        normed.parameters.copy(from: model.parameters)
        let plane = model.imageSize * model.imageSize
        let manual = input.enumerated().map { i, v -> Float in
            let c = (i / plane) % 3
            return (v - Float(config.pretrainedCfg.mean[c])) / Float(config.pretrainedCfg.std[c])
        }
        let acts = model.makeActivations(batchSize: B, training: false)
        model.forward(images: manual, activations: acts)
        let want = Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: B * model.dim))
        let got = ViTEmbedder(model: normed, batchSize: 4).embed(images: input, count: B)
        XCTAssert(elementwise("normalised", got, want, rtol: 1e-5, atol: 1e-6).score <= 1)
    }
}
