import Foundation
import Support
import WordNet
import XCTest

@testable import Interop
@testable import ViT

/// `catlip import corenet` against the fixture that corenet's own code wrote
/// (Fixtures/make_corenet_fixture.py: corenet's VisionTransformer at D 192, depth 2, flash
/// attention as the released models use it, random weights and BatchNorm statistics, 40
/// classes): the imported model's logits, features and stem output equal corenet's at 224 px
/// and at 256 px (corenet's 1-D position resize); the stem in training mode matches corenet's
/// output, gradients and running statistics; bf16 inference stays close.
final class CorenetImportTests: XCTestCase {
    static func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/corenet/" + name
    }

    /// A fixture directory written by `make_corenet_fixture.py --preset b16 --out DIR` (143 MB,
    /// not committed), named by CATLIP_CORENET_B16; the B/16 checks skip without it.
    static func b16Directory() throws -> String {
        guard let dir = ProcessInfo.processInfo.environment["CATLIP_CORENET_B16"] else {
            throw XCTSkip("set CATLIP_CORENET_B16 to a make_corenet_fixture.py --preset b16 output to run the B/16 check")
        }
        return dir
    }

    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let dir = NSTemporaryDirectory() + "interop-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// max |got − ref| / max |ref| (relative to the reference's scale).
    static func relativeError(_ got: [Float], _ ref: [Float]) -> Float {
        precondition(got.count == ref.count)
        let scale = ref.map(abs).max() ?? 0
        let diff = zip(got, ref).map { abs($0 - $1) }.max() ?? 0
        return scale > 0 ? diff / scale : diff
    }

    /// Imports the fixture checkpoint (or the one in `directory`) into a model directory and
    /// loads it.
    func importedModel(directory: String? = nil) throws -> (ViTModel, CorenetImport.Converted, String) {
        let path = try directory.map { $0 + "/tiny.pt" } ?? Self.fixture("tiny.pt")
        let converted = try CorenetImport.convert(try TorchImport.read(path: path), path: path)
        let dir = try Self.temporaryDirectory(self)
        try CorenetImport.write(converted, vocabulary: nil, to: dir)
        return (try ViTModel.load(directory: dir), converted, dir)
    }

    func testArchitectureAndNames() throws {
        let (model, converted, dir) = try importedModel()
        let a = model.config.modelArgs
        XCTAssertEqual([a.embedDim, a.depth, a.numHeads, a.numClasses, a.imgSize, a.patchSize], [192, 2, 3, 40, 224, 16])
        XCTAssertEqual(a.stem, ConvStemArgs.corenet(embedDim: 192))
        XCTAssertEqual(a.stem?.widths, [48, 48, 192])
        XCTAssertTrue(a.noEmbedClass)
        XCTAssertEqual(a.posEmbedResize, .sequenceLinear)
        XCTAssertEqual(model.config.pretrainedCfg.mean, [0, 0, 0])
        XCTAssertEqual(model.config.pretrainedCfg.std, [1, 1, 1])
        XCTAssertEqual(
            converted.dropped.sorted(),
            ["neural_augmentor.brightness._high", "neural_augmentor.brightness._low", "neural_augmentor.contrast._high",
             "neural_augmentor.contrast._low", "neural_augmentor.noise._high", "neural_augmentor.noise._low",
             "patch_emb.0.block.norm.num_batches_tracked", "patch_emb.1.block.norm.num_batches_tracked"])
        // timm's vit_base_mci_224 names in the file
        let file = try SafeTensors.read(path: dir + "/model.safetensors")
        for name in ["patch_embed.backbone.0.conv.weight", "patch_embed.backbone.1.bn.running_var",
                     "patch_embed.backbone.2.conv.bias", "blocks.1.attn.proj.weight", "blocks.0.mlp.fc2.bias",
                     "norm.weight", "head.weight", "pos_embed", "cls_token"] {
            XCTAssertNotNil(file.tensors[name], name)
        }
        XCTAssertEqual(file.tensors["pos_embed"]?.shape, [1, 196, 192])
    }

    /// Logits and features at 224 px and logits at 256 px equal corenet's within 1e-4 of their
    /// scale, fp32; the stem's output likewise.
    func testLogitsMatchCorenet() throws {
        try checkLogits(directory: nil)
    }

    /// The same at ViT-B/16's widths (D 768, 12 heads, stem width 192, 24,320 classes; depth
    /// as the fixture was made), when CATLIP_CORENET_B16 names such a fixture.
    func testLogitsMatchCorenetB16() throws {
        try checkLogits(directory: try Self.b16Directory())
    }

    func checkLogits(directory: String?) throws {
        let (model, _, _) = try importedModel(directory: directory)
        let ref = try SafeTensors.read(path: try directory.map { $0 + "/reference.safetensors" } ?? Self.fixture("reference.safetensors"))
        func tensor(_ name: String) throws -> FloatTensor { try XCTUnwrap(ref.tensors[name], name) }
        let images224 = try tensor("images_224")
        let B = images224.shape[0]
        let acts = model.makeActivations(batchSize: B, training: false)
        model.forward(images: images224.values, activations: acts)
        let logits = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * model.numClasses))
        let features = Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: B * model.dim))
        let stem = Array(UnsafeBufferPointer(start: acts.fwd(acts.patchEmbed), count: B * 196 * model.dim))
        let errors = [
            ("stem", Self.relativeError(stem, try tensor("stem_224").values)),
            ("features", Self.relativeError(features, try tensor("features_224").values)),
            ("logits 224", Self.relativeError(logits, try tensor("logits_224").values)),
        ]
        print("corenet import, D \(model.dim): " + errors.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
        for (what, e) in errors { XCTAssertLessThan(e, 1e-4, what) }

        let images256 = try tensor("images_256")
        let acts256 = model.makeActivations(batchSize: 1, imageSize: 256, training: false)
        XCTAssertEqual(acts256.numPatches, 256)
        model.forward(images: images256.values, activations: acts256)
        let logits256 = Array(UnsafeBufferPointer(start: acts256.logitsPointer, count: model.numClasses))
        let e256 = Self.relativeError(logits256, try tensor("logits_256").values)
        print("corenet import, D \(model.dim): logits 256 \(e256)")
        XCTAssertLessThan(e256, 1e-4, "logits 256")
        // a model resized to 256 px gives the same logits
        let resized = try model.resized(imageSize: 256)
        let accts = resized.makeActivations(batchSize: 1, training: false)
        resized.forward(images: images256.values, activations: accts)
        XCTAssertLessThan(
            Self.relativeError(Array(UnsafeBufferPointer(start: accts.logitsPointer, count: model.numClasses)), try tensor("logits_256").values),
            1e-4, "resized model")
    }

    /// bf16 inference (blocks at bf16 products, the stem at fp32) within the inference
    /// tolerances the engine's own bf16 test uses: logits within 1% of their scale, embeddings at
    /// cosine > 0.9999.
    func testBF16Inference() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        let (model, _, _) = try importedModel()
        let ref = try SafeTensors.read(path: try Self.fixture("reference.safetensors"))
        let images = try XCTUnwrap(ref.tensors["images_224"])
        let B = images.shape[0]
        try model.setInferencePrecision(.bf16)
        let acts = model.makeActivations(batchSize: B, training: false)
        model.forward(images: images.values, activations: acts)
        let logits = Array(UnsafeBufferPointer(start: acts.logitsPointer, count: B * model.numClasses))
        XCTAssertLessThan(Self.relativeError(logits, try XCTUnwrap(ref.tensors["logits_224"]).values), 0.01)
        let features = Array(UnsafeBufferPointer(start: acts.preLogitsPointer, count: B * model.dim))
        let want = try XCTUnwrap(ref.tensors["features_224"]).values
        for b in 0..<B {
            let (x, y) = (features[(b * 192)..<((b + 1) * 192)], want[(b * 192)..<((b + 1) * 192)])
            let dot = zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            let cosine = dot / (x.reduce(0) { $0 + $1 * $1 }.squareRoot() * y.reduce(0) { $0 + $1 * $1 }.squareRoot())
            XCTAssertGreaterThan(cosine, 0.9999, "image \(b)")
        }
    }

    /// The stem in training mode (BatchNorm over the batch) against corenet's: output, every
    /// stem parameter's gradient for loss Σ y·dy (rtol 1e-4 forward, 1e-3 gradients, relative to
    /// each tensor's scale) and the running statistics after the step.
    func testStemTrainingStepMatchesCorenet() throws {
        let (model, _, _) = try importedModel()
        let ref = try SafeTensors.read(path: try Self.fixture("stem_train.safetensors"))
        func tensor(_ name: String) throws -> FloatTensor { try XCTUnwrap(ref.tensors[name], name) }
        let x = try tensor("x")
        let B = x.shape[0]
        for backend in [ComputeBackend.fast, .naive] {
            let m = try model.resized(imageSize: 64)
            m.backend = backend
            let acts = m.makeActivations(batchSize: B)
            m.stemForward(images: x.values, acts: acts)
            let y = Array(UnsafeBufferPointer(start: acts.fwd(acts.patchEmbed), count: B * 16 * 192))
            XCTAssertLessThan(Self.relativeError(y, try tensor("y").values), 1e-4, "\(backend): y")
            try tensor("dy").values.withUnsafeBufferPointer {
                acts.bwd(acts.dpatchEmbed).update(from: $0.baseAddress!, count: $0.count)
            }
            m.zeroGradients()
            m.stemBackward(acts: acts)
            for (corenet, timm) in [
                ("patch_emb.0.block.conv.weight", "patch_embed.backbone.0.conv.weight"),
                ("patch_emb.0.block.norm.weight", "patch_embed.backbone.0.bn.weight"),
                ("patch_emb.0.block.norm.bias", "patch_embed.backbone.0.bn.bias"),
                ("patch_emb.1.block.conv.weight", "patch_embed.backbone.1.conv.weight"),
                ("patch_emb.1.block.norm.weight", "patch_embed.backbone.1.bn.weight"),
                ("patch_emb.1.block.norm.bias", "patch_embed.backbone.1.bn.bias"),
                ("patch_emb.2.block.conv.weight", "patch_embed.backbone.2.conv.weight"),
                ("patch_emb.2.block.conv.bias", "patch_embed.backbone.2.conv.bias"),
            ] {
                let e = Self.relativeError(Array(m.gradient(timm)), try tensor("grad." + corenet).values)
                XCTAssertLessThan(e, 1e-3, "\(backend): gradient of \(timm)")
            }
            for i in 0..<2 {
                for stat in ["running_mean", "running_var"] {
                    let e = Self.relativeError(
                        Array(m.buffer("patch_embed.backbone.\(i).bn.\(stat)")),
                        try tensor("after.patch_emb.\(i).block.norm.\(stat)").values)
                    XCTAssertLessThan(e, 1e-5, "\(backend): \(stat) \(i)")
                }
            }
        }
    }

    /// The vocabulary pickle's first V keys become vocab.tsv rows with padded wnids (and
    /// lemmas when WordNet is installed); too short a list is refused.
    func testVocabulary() throws {
        let path = try Self.fixture("vocab.pkl")
        let counts = try TorchImport.readPickledCounts(path: path)
        XCTAssertEqual(counts.count, 45)
        let database = try? WordNetDatabase()
        let vocab = try CorenetImport.vocabulary(counts, classes: 40, database: database, path: path)
        XCTAssertEqual(vocab.count, 40)
        XCTAssertEqual(vocab.entries[0].wnid, Vocabulary.padded(counts[0].key))
        XCTAssertEqual(vocab.entries[0].count, counts[0].count)
        if database != nil { XCTAssertFalse(vocab.entries[0].lemmas.isEmpty) }
        XCTAssertThrowsError(try CorenetImport.vocabulary(counts, classes: 46, database: nil, path: path)) {
            XCTAssert("\($0)".contains("holds 45 synsets, the head has 46 rows"), "\($0)")
        }
    }

    /// Keys and shapes are checked: an unknown, a missing and a mis-shaped tensor, a negative
    /// running variance and a non-finite value are each one clear error.
    func testBadCheckpointsAreRefused() throws {
        let path = try Self.fixture("tiny.pt")
        let records = try TorchImport.read(path: path)
        func problem(_ edit: (inout [NamedTensor]) -> Void) -> String {
            var r = records
            edit(&r)
            do {
                _ = try CorenetImport.convert(r, path: "x.pt")
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(problem { _ in }, "accepted")
        XCTAssert(problem { $0.append(NamedTensor(name: "extra.weight", tensor: FloatTensor(shape: [1], values: [0]))) }
            .contains("unknown tensors: extra.weight"))
        XCTAssert(problem { $0.removeAll { $0.name == "transformer.1.pre_norm_ffn.4.bias" } }
            .contains("missing tensors (timm names): blocks.1.mlp.fc2.bias"))
        XCTAssert(problem {
            let i = $0.firstIndex { $0.name == "transformer.0.pre_norm_mha.1.qkv_proj.bias" }!
            $0[i].tensor = FloatTensor(shape: [5], values: [0, 0, 0, 0, 0])
        }.contains("has shape [5], the architecture needs [576]"))
        XCTAssert(problem {
            let i = $0.firstIndex { $0.name == "patch_emb.1.block.norm.running_var" }!
            $0[i].tensor.values[3] = -1
        }.contains("negative variance"))
        XCTAssert(problem {
            let i = $0.firstIndex { $0.name == "classifier.weight" }!
            $0[i].tensor.values[7] = .nan
        }.contains("non-finite value at index 7"))
        XCTAssert(problem { $0.removeAll { $0.name == "cls_token" } }.contains("missing tensor 'cls_token'"))
        XCTAssert(problem { $0.append($0[0]) }.contains("appears twice"))
        XCTAssert(!problem { _ in }.contains("\n"))
    }
}
