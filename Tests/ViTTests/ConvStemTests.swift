import Foundation
import Support
import XCTest

@testable import ViT

/// The convolutional stem (corenet's ViT: 4x4/4 padded by 1, 2x2/2, 2x2/2 with BatchNorm and
/// GELU between), `no_embed_class` and corenet's 1-D position-embedding resize, against finite
/// differences, the naive backend and hand computations (the PyTorch fixtures are in
/// CorenetImportTests).
final class ConvStemTests: XCTestCase {
    /// 34 px: grids 9, 4, 2 (the first convolution's padding and the floor both matter).
    static func stemConfig(noEmbedClass: Bool = true, avg: Bool = false) -> ModelConfig {
        ModelConfig(
            modelArgs: ModelArgs(
                imgSize: 34, patchSize: 16, numClasses: 5, globalPool: avg ? "avg" : "token",
                embedDim: 8, depth: 2, numHeads: 2, mlpRatio: 1.5, noEmbedClass: noEmbedClass,
                stem: ConvStemArgs(
                    widths: [6, 6, 8], kernelSizes: [4, 2, 2], strides: [4, 2, 2], paddings: [1, 0, 0]),
                posEmbedResize: .sequenceLinear))
    }

    /// A model with weights large enough that every gradient is well above rounding noise, and
    /// BatchNorm affine parameters and running statistics away from 1 and 0.
    static func model(_ config: ModelConfig, seed: UInt64) throws -> ViTModel {
        let m = try ViTModel(config: config, seed: seed)
        var rng = SeededGenerator(seed: seed + 1)
        for i in 0..<m.parameters.count { m.parameters.base[i] = Float(rng.nextNormal()) * 0.3 }
        for s in m.layout.specs where (s.name.contains("norm") || s.name.contains(".bn.")) && s.name.hasSuffix(".weight") {
            for i in 0..<s.count { m.parameters.base[s.offset + i] += 1 }
        }
        for s in m.layout.buffers {
            for i in 0..<s.count {
                m.buffers.base[s.offset + i] =
                    s.name.hasSuffix("running_var") ? Float(0.5 + rng.nextUnit()) : Float(rng.nextNormal()) * 0.2
            }
        }
        return m
    }

    func testLayoutAndGrid() throws {
        let c = Self.stemConfig()
        XCTAssertEqual(c.modelArgs.stem?.grids(imageSize: 34), [9, 4, 2])
        XCTAssertEqual(c.modelArgs.stem?.grids(imageSize: 224), [56, 28, 14])
        XCTAssertEqual(c.modelArgs.stem?.grids(imageSize: 256), [64, 32, 16])
        let m = try ViTModel(config: c)
        XCTAssertEqual(m.gridSize, 2)
        XCTAssertEqual(m.layout.spec(named: "pos_embed")?.shape, [1, 4, 8], "no row for the class token")
        XCTAssertEqual(m.layout.spec(named: "patch_embed.backbone.0.conv.weight")?.shape, [6, 3, 4, 4])
        XCTAssertEqual(m.layout.spec(named: "patch_embed.backbone.1.bn.bias")?.shape, [6])
        XCTAssertEqual(m.layout.spec(named: "patch_embed.backbone.2.conv.bias")?.shape, [8])
        XCTAssertNil(m.layout.spec(named: "patch_embed.backbone.2.bn.weight"))
        XCTAssertNil(m.layout.spec(named: "patch_embed.proj.weight"))
        XCTAssertEqual(
            m.layout.buffers.map(\.name),
            ["patch_embed.backbone.0.bn.running_mean", "patch_embed.backbone.0.bn.running_var",
             "patch_embed.backbone.1.bn.running_mean", "patch_embed.backbone.1.bn.running_var"])
        XCTAssertEqual(try c.checkedParameterCount(), m.layout.parameterCount)
        XCTAssertEqual(Array(m.buffer("patch_embed.backbone.1.bn.running_var")), [Float](repeating: 1, count: 6))
    }

    func testConfigRoundTripAndValidation() throws {
        let c = Self.stemConfig()
        let back = try ModelConfig.decode(try c.encoded())
        XCTAssertEqual(back, c)
        let text = String(decoding: try c.encoded(), as: UTF8.self)
        XCTAssert(text.contains("\"no_embed_class\" : true"), text)
        XCTAssert(text.contains("\"pos_embed_resize\" : \"sequence_linear\""), text)
        // a patchify model's config keeps its bytes: none of the new keys
        let plain = String(decoding: try ModelConfig(modelArgs: ModelArgs()).encoded(), as: UTF8.self)
        XCTAssertFalse(plain.contains("stem") || plain.contains("no_embed_class") || plain.contains("pos_embed_resize"))
        func problem(_ edit: (inout ModelArgs) -> Void) -> String {
            var a = c.modelArgs
            edit(&a)
            do {
                try ModelConfig(modelArgs: a).validate()
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssert(problem { $0.stem!.strides[1] = 1 }.contains("non-overlapping"))
        XCTAssert(problem { $0.stem!.widths[2] = 9 }.contains("not embed_dim"))
        XCTAssert(problem { $0.patchSize = 8 }.contains("product of the stem's strides"))
        XCTAssert(problem { $0.stem!.paddings[0] = 4 }.contains("paddings[0]"))
        XCTAssert(problem { $0.stem!.widths = [6, 8] }.contains("need 2 values each"))
        XCTAssert(problem { $0.imgSize = 12 }.contains("smaller than patch_size"))
        XCTAssert(problem { $0.classToken = false; $0.globalPool = "avg" }.contains("no_embed_class needs class_token"))
        XCTAssertEqual(problem { _ in }, "accepted")
    }

    /// Every parameter's gradient (BatchNorm with batch statistics in the stem) against central
    /// differences of the loss, naive backend.
    func testFiniteDifferences() throws {
        for (noEmbedClass, avg) in [(true, false), (false, true)] {
            let m = try Self.model(Self.stemConfig(noEmbedClass: noEmbedClass, avg: avg), seed: 3)
            m.backend = .naive
            let B = 2
            let images = [Float].randomNormal(B * 3 * 34 * 34, seed: 4)
            let targets: [Float] = [1, 0, 0, 1, 0, 0, 1, 1, 0, 0]
            let acts = m.makeActivations(batchSize: B)
            for e in finiteDifferenceErrors(m, images: images, targets: targets, acts: acts) {
                XCTAssertLessThanOrEqual(e.worst, 2e-2, "no_embed_class \(noEmbedClass): \(e.name) off by \(e.worst) of \(e.scale)")
            }
        }
    }

    /// The fast kernels give the naive model's logits and gradients, in training and inference.
    func testBackendsAgree() throws {
        let m = try Self.model(Self.stemConfig(), seed: 7)
        let B = 3
        let images = [Float].randomNormal(B * 3 * 34 * 34, seed: 8)
        let targets = (0..<(B * 5)).map { Float($0 % 3 == 0 ? 1 : 0) }
        let acts = m.makeActivations(batchSize: B)
        let saved = Array(m.buffers.buffer)
        func run(_ backend: ComputeBackend) -> ([Float], [Float], [Float]) {
            m.backend = backend
            _ = m.buffers.buffer.update(fromContentsOf: saved)
            m.forward(images: images, activations: acts)
            m.zeroGradients()
            m.backward(targets: targets, activations: acts)
            return (Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * 5)), Array(m.gradients.buffer), Array(m.buffers.buffer))
        }
        let (l1, g1, r1) = run(.fast)
        let (l2, g2, r2) = run(.naive)
        XCTAssert(elementwise("logits", l2, l1, rtol: 1e-5, atol: 1e-6).score <= 1)
        XCTAssert(relativeToMax("grads", g2, g1, rel: 1e-4).score <= 1)
        XCTAssert(elementwise("running stats", r2, r1, rtol: 1e-5, atol: 1e-6).score <= 1)
        let infer = ViTActivations(model: m, batchSize: B, training: false)
        for backend in [ComputeBackend.naive, .fast] {
            m.backend = backend
            m.forward(images: images, activations: infer)
        }
        XCTAssertNotEqual(r1, saved, "a training forward moves the running statistics")
    }

    /// One training forward moves each running statistic 10% of the way to the batch's
    /// (unbiased variance); evaluation with running statistics equal to the batch's (biased
    /// variance) reproduces the training forward.
    func testRunningStatisticsAndEvaluationMode() throws {
        let m = try Self.model(Self.stemConfig(), seed: 11)
        let B = 2
        let images = [Float].randomNormal(B * 3 * 34 * 34, seed: 12)
        let start = Array(m.buffers.buffer)
        let acts = m.makeActivations(batchSize: B)
        m.forward(images: images, activations: acts)
        let trained = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * 5))
        let plan = try XCTUnwrap(acts.stem)
        let eps = 1e-5
        for (i, l) in plan.layers.dropLast().enumerated() {
            let (rows, w) = (l.rows, l.outChannels)
            let z = UnsafeBufferPointer(start: acts.fwd(l.conv), count: rows * w)
            let meanName = "patch_embed.backbone.\(i).bn.running_mean"
            let varName = "patch_embed.backbone.\(i).bn.running_var"
            let (mo, vo) = (m.layout.buffer(named: meanName)!.offset, m.layout.buffer(named: varName)!.offset)
            for c in 0..<w {
                let column = (0..<rows).map { Double(z[$0 * w + c]) }
                let mean = column.reduce(0, +) / Double(rows)
                let ss = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
                XCTAssertEqual(Double(m.buffers.base[mo + c]), 0.9 * Double(start[mo + c]) + 0.1 * mean, accuracy: 1e-5)
                XCTAssertEqual(Double(m.buffers.base[vo + c]), 0.9 * Double(start[vo + c]) + 0.1 * ss / Double(rows - 1), accuracy: 1e-4)
                // the statistics evaluation would need to reproduce this batch
                m.buffers.base[mo + c] = Float(mean)
                m.buffers.base[vo + c] = Float(ss / Double(rows))
                XCTAssertEqual(Double(acts.fwd(l.rstd)[c]), 1 / (ss / Double(rows) + eps).squareRoot(), accuracy: 1e-3 * Double(acts.fwd(l.rstd)[c]))
            }
        }
        let infer = ViTActivations(model: m, batchSize: B, training: false)
        m.forward(images: images, activations: infer)
        let evaluated = Array(UnsafeBufferPointer(start: infer.logitsPointer, count: B * 5))
        XCTAssert(elementwise("eval-mode logits", evaluated, trained, rtol: 1e-4, atol: 1e-5).score <= 1)
    }

    /// Saving writes the running statistics beside the parameters; loading restores both, and a
    /// negative variance in a file is refused.
    func testSaveLoadKeepsBuffers() throws {
        let m = try Self.model(Self.stemConfig(), seed: 13)
        let dir = try temporaryDirectory(self)
        try m.save(directory: dir)
        let back = try ViTModel.load(directory: dir)
        for s in m.layout.specs { XCTAssert(Array(back.parameter(s.name)) == Array(m.parameter(s.name)), s.name) }
        for s in m.layout.buffers { XCTAssert(Array(back.buffer(s.name)) == Array(m.buffer(s.name)), s.name) }
        var file = try SafeTensors.read(path: dir + "/model.safetensors")
        XCTAssertNotNil(file.tensors["patch_embed.backbone.0.bn.running_var"])
        file.tensors["patch_embed.backbone.0.bn.running_var"]!.values[2] = -1
        try file.write(path: dir + "/model.safetensors")
        XCTAssertThrowsError(try ViTModel.load(directory: dir)) { error in
            XCTAssert("\(error)".contains("negative variance"), "\(error)")
        }
        file.tensors["patch_embed.backbone.0.bn.running_var"] = nil
        try file.write(path: dir + "/model.safetensors")
        XCTAssertThrowsError(try ViTModel.load(directory: dir)) { error in
            XCTAssert("\(error)".contains("missing tensors: patch_embed.backbone.0.bn.running_var"), "\(error)")
        }
    }

    /// corenet's rule: pos_embed (N, D) to (N', D) by linear interpolation over the flattened
    /// sequence, PyTorch's align_corners=False source positions, clamped at the ends.
    func testSequenceLinearResize() throws {
        let m = try Self.model(Self.stemConfig(), seed: 17)
        let big = try m.resized(imageSize: 50)  // grids 13, 6, 3: 9 tokens from 4
        XCTAssertEqual(big.gridSize, 3)
        let (src, dst) = (Array(m.parameter("pos_embed")), Array(big.parameter("pos_embed")))
        XCTAssertEqual(dst.count, 9 * 8)
        for i in 0..<9 {
            let s = max((Double(i) + 0.5) * 4 / 9 - 0.5, 0)
            let i0 = Int(s)
            let i1 = min(i0 + 1, 3)
            let l = s - Double(i0)
            for d in 0..<8 {
                let want = (1 - l) * Double(src[i0 * 8 + d]) + l * Double(src[i1 * 8 + d])
                XCTAssertEqual(Double(dst[i * 8 + d]), want, accuracy: 1e-6)
            }
        }
        XCTAssert(Array(big.buffers.buffer) == Array(m.buffers.buffer))
        XCTAssertEqual(Array(big.parameter("patch_embed.backbone.0.conv.weight")), Array(m.parameter("patch_embed.backbone.0.conv.weight")))
        // the activations of another image size resample the same way in every forward pass
        let images = [Float].randomNormal(3 * 50 * 50, seed: 18)
        let a1 = ViTActivations(model: m, batchSize: 1, imageSize: 50, training: false)
        m.forward(images: images, activations: a1)
        let a2 = ViTActivations(model: big, batchSize: 1, training: false)
        big.forward(images: images, activations: a2)
        XCTAssertEqual(
            Array(UnsafeBufferPointer(start: a1.logitsPointer, count: 5)),
            Array(UnsafeBufferPointer(start: a2.logitsPointer, count: 5)))
    }
}
