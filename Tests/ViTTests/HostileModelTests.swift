// Model directories made by someone else (issue 17): every config.json value out of what the
// engine supports, and every weights file that does not fit its config, is a one-line error
// naming the file and the problem, found before anything is allocated for the model; seeded
// fuzzing of a valid directory's config.json and model.safetensors ends in such an error or a
// correct load.
import Foundation
import Imaging
import Support
import TestSupport
import XCTest

@testable import ViT

final class HostileModelTests: XCTestCase {

    /// A valid tiny model directory (config.json, model.safetensors) and its model.
    func tinyDirectory() throws -> (dir: String, model: ViTModel) {
        let dir = try temporaryDirectory(self) + "/model"
        let model = try ViTModel(
            config: ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: 16, patchSize: 8, numClasses: 5, embedDim: 8, depth: 2, numHeads: 2,
                    mlpRatio: 2)),
            seed: 5)
        try model.save(directory: dir)
        return (dir, model)
    }

    /// config.json of `dir` as a JSON object, edited by `edit`, written back.
    func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir + "/config.json"
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path))
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    }

    /// Replaces the text `old` of config.json with `new` (for numbers JSONSerialization would
    /// not write, such as 1e300 or 1e-300).
    func replaceInConfig(_ dir: String, _ old: String, _ new: String) throws {
        let path = dir + "/config.json"
        let text = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: path)), as: UTF8.self)
        XCTAssert(text.contains(old), "config.json has no '\(old)'")
        try Data(text.replacingOccurrences(of: old, with: new).utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Loading `dir` must throw one line that starts with `file` (a path under `dir`) and
    /// mentions `expected`.
    func assertLoadFails(
        _ dir: String, file: String, _ expected: String, _ message: String = "",
        sourceFile: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try ViTModel.load(directory: dir)
            XCTFail("loaded (expected '\(expected)') \(message)", file: sourceFile, line: line)
        } catch {
            let text = "\(error)"
            XCTAssert(
                text.hasPrefix(dir + "/" + file + ": "), "'\(text)' does not name \(file) \(message)",
                file: sourceFile, line: line)
            XCTAssert(
                text.contains(expected), "'\(text)' does not mention '\(expected)' \(message)",
                file: sourceFile, line: line)
            XCTAssertFalse(text.contains("\n"), "not one line: \(text)", file: sourceFile, line: line)
        }
    }

    // MARK: - the examples

    func testHugeMlpRatioIsAnErrorNotATrapInValidation() throws {
        let (dir, _) = try tinyDirectory()
        try replaceInConfig(dir, "\"mlp_ratio\" : 2", "\"mlp_ratio\" : 1e300")
        assertLoadFails(dir, file: "config.json", "model_args.mlp_ratio 1e+300 is out of range")
        for ratio in ["-1e300", "1e-300", "1000.5", "0.0001"] {
            let (dir, _) = try tinyDirectory()
            try replaceInConfig(dir, "\"mlp_ratio\" : 2", "\"mlp_ratio\" : \(ratio)")
            assertLoadFails(dir, file: "config.json", "mlp_ratio", ratio)
        }
    }

    func testHugeModelIsRefusedBeforeAnythingIsAllocated() throws {
        let (dir, _) = try tinyDirectory()
        func resize(_ dim: Int, _ depth: Int) throws {
            try editConfig(dir) { c in
                var args = c["model_args"] as! [String: Any]
                args["embed_dim"] = dim
                args["depth"] = depth
                args["num_heads"] = 16
                c["model_args"] = args
                c["num_features"] = dim
            }
        }
        // 65536 x 1024 blocks: 5e13 parameters, over the engine's limit
        try resize(65536, 1024)
        assertLoadFails(dir, file: "config.json", "parameters, more than the engine's limit")
        // within the limit (1.6 billion parameters, 13 GB to allocate) but not what the weights
        // file holds: refused from the safetensors header, before the model is allocated
        try resize(4096, 8)
        assertLoadFails(dir, file: "model.safetensors", "does not match the config")
    }

    func testTinyCropPctFailsAtLoadTime() throws {
        for crop in ["1e-300", "0.1", "0", "-0.875", "1.5", "1e300"] {
            let (dir, _) = try tinyDirectory()
            try replaceInConfig(dir, "\"crop_pct\" : 0.875", "\"crop_pct\" : \(crop)")
            assertLoadFails(dir, file: "config.json", "pretrained_cfg.crop_pct", crop)
        }
        // the evaluation transform's own check agrees, and no conversion happens before it
        XCTAssertNotNil(Geometry.evalResizeProblem(size: 224, cropPct: 1e-300))
        XCTAssertNotNil(Geometry.evalResizeProblem(size: 224, cropPct: .nan))
        XCTAssertNil(Geometry.evalResizeProblem(size: ModelLimits.maxImageSize, cropPct: ModelLimits.cropPct.lowerBound))
        XCTAssertEqual(Geometry.evalResizeSize(size: 224, cropPct: 0.875), 256)
    }

    func testOneChannelIsRefusedBeforeNormalisation() throws {
        let (dir, _) = try tinyDirectory()
        try editConfig(dir) { c in
            var args = c["model_args"] as! [String: Any]
            args["in_chans"] = 1
            c["model_args"] = args
            var p = c["pretrained_cfg"] as! [String: Any]
            p["input_size"] = [1, 16, 16]
            p["mean"] = [0]
            p["std"] = [1]
            c["pretrained_cfg"] = p
        }
        assertLoadFails(dir, file: "config.json", "model_args.in_chans 1 is out of range 3...3")
    }

    // MARK: - every other field

    func testEveryFieldIsBounded() throws {
        typealias Edit = (inout [String: Any], inout [String: Any], inout [String: Any]) -> Void
        let cases: [(String, Edit)] = [
            ("model_args.img_size", { _, a, _ in a["img_size"] = 1 << 40 }),
            ("model_args.img_size", { _, a, _ in a["img_size"] = -16 }),
            ("model_args.patch_size", { _, a, _ in a["patch_size"] = 0 }),
            ("smaller than patch_size", { _, a, _ in a["patch_size"] = 32 }),
            ("patches per side", { _, a, p in a["img_size"] = 4096; a["patch_size"] = 1; p["input_size"] = [3, 16, 16] }),
            ("model_args.num_classes", { c, a, _ in a["num_classes"] = 1 << 40; c["num_classes"] = 1 << 40 }),
            ("model_args.num_heads", { _, a, _ in a["num_heads"] = 0 }),
            ("model_args.num_heads", { _, a, _ in a["num_heads"] = 1 << 20 }),
            ("not divisible by num_heads", { _, a, _ in a["num_heads"] = 3 }),
            ("model_args.depth", { _, a, _ in a["depth"] = 1 << 31 }),
            ("model_args.embed_dim", { c, a, _ in a["embed_dim"] = 1 << 20; c["num_features"] = 1 << 20 }),
            ("global_pool", { _, a, _ in a["global_pool"] = "max" }),
            ("layer_scaling.head_dim", { _, a, _ in a["layer_scaling"] = ["head_dim": 1 << 40, "alpha": [0.5, 1], "beta": [0.5, 2]] }),
            ("layer_scaling.alpha", { _, a, _ in a["layer_scaling"] = ["head_dim": 2, "alpha": [0.5, 1e6], "beta": [0.5, 2]] }),
            ("layer_scaling.beta", { _, a, _ in a["layer_scaling"] = ["head_dim": 2, "alpha": [0.5, 1], "beta": [1e-9, 2]] }),
            ("pretrained_cfg.input_size", { _, _, p in p["input_size"] = [3, 1 << 40, 16] }),
            ("pretrained_cfg.input_size", { _, _, p in p["input_size"] = [3, 16] }),
            ("pretrained_cfg.mean and std", { _, _, p in p["mean"] = [0, 0] }),
            ("pretrained_cfg.mean", { _, _, p in p["mean"] = [0, 1e30, 0] }),
            ("pretrained_cfg.std", { _, _, p in p["std"] = [1, 1e-30, 1] }),
            ("pretrained_cfg.std", { _, _, p in p["std"] = [1, -1, 1] }),
            ("pretrained_cfg.interpolation", { _, _, p in p["interpolation"] = "lanczos" }),
            ("pretrained_cfg.crop_mode", { _, _, p in p["crop_mode"] = "squash" }),
            ("model_args.depth 2.5 is not a whole number", { _, a, _ in a["depth"] = 2.5 }),
            ("pretrained_cfg.input_size 1e+20 is not a whole number", { _, _, p in p["input_size"] = [3, 1e20, 16] }),
            ("model_args.depth", { _, a, _ in a["depth"] = "two" }),
        ]
        for (expected, edit) in cases {
            let (dir, _) = try tinyDirectory()
            try editConfig(dir) { c in
                var a = c["model_args"] as! [String: Any]
                var p = c["pretrained_cfg"] as! [String: Any]
                edit(&c, &a, &p)
                c["model_args"] = a
                c["pretrained_cfg"] = p
            }
            assertLoadFails(dir, file: "config.json", expected)
        }
    }

    func testLimitsAdmitRealModels() throws {
        // ViT-B/16 at 224 and ViT-L/14 at 518 (DINOv2's grid) validate; ViT-g/14 too
        for (img, patch, dim, depth, heads) in [(224, 16, 768, 12, 12), (518, 14, 1024, 24, 16), (224, 14, 1408, 40, 16)] {
            let c = ModelConfig(
                modelArgs: ModelArgs(
                    imgSize: img, patchSize: patch, numClasses: 1000, embedDim: dim, depth: depth,
                    numHeads: heads, mlpRatio: 4))
            XCTAssertNoThrow(try c.validate(), "\(img)/\(patch) D\(dim)")
            XCTAssertEqual(try c.checkedParameterCount(), ParameterLayout(config: c).parameterCount)
        }
        // the checked count is the layout's for the awkward shapes too
        for name in ["cls_uniform", "avg_scaled", "awkward"] {
            let c = try ModelConfig.read(path: try fixturesRoot() + "/\(name)/config.json")
            XCTAssertEqual(try c.checkedParameterCount(), ParameterLayout(config: c).parameterCount, name)
        }
    }

    func testConfigFileThatIsNotARegularFileOrTooLarge() throws {
        let (dir, _) = try tinyDirectory()
        let config = dir + "/config.json"
        try FileManager.default.removeItem(atPath: config)
        try FileManager.default.createSymbolicLink(atPath: config, withDestinationPath: "/dev/zero")
        assertLoadFails(dir, file: "config.json", "not a regular file")
        try FileManager.default.removeItem(atPath: config)
        XCTAssertTrue(FileManager.default.createFile(atPath: config, contents: nil))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: config))
        try handle.truncate(atOffset: UInt64(ModelConfig.maxFileBytes) + 1)  // sparse
        try handle.close()
        assertLoadFails(dir, file: "config.json", "over the limit")
    }

    func testWeightsFileThatIsAFIFOIsRefusedWithoutHanging() throws {
        let (dir, _) = try tinyDirectory()
        let weights = dir + "/model.safetensors"
        try FileManager.default.removeItem(atPath: weights)
        XCTAssertEqual(mkfifo(weights, 0o644), 0)  // no writer: a blocking open would wait forever
        assertLoadFails(dir, file: "model.safetensors", "is a FIFO, not a regular file")
    }

    // MARK: - weights files

    /// model.safetensors of `dir` with its header replaced by `header` (the JSON text, padded to
    /// 8 bytes), the data section kept; `declared` overrides the length field.
    func rewriteHeader(_ dir: String, declared: UInt64? = nil, _ edit: (String) -> String) throws {
        let path = dir + "/model.safetensors"
        let bytes = Array(try XCTUnwrap(FileManager.default.contents(atPath: path)))
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        var header = Array(edit(String(decoding: bytes[8..<(8 + n)], as: UTF8.self)).utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        let length = declared ?? UInt64(header.count)
        let out = (0..<8).map { UInt8((length >> (8 * UInt64($0))) & 0xff) } + header + bytes[(8 + n)...]
        try Data(out).write(to: URL(fileURLWithPath: path))
    }

    /// A fresh tiny directory whose weights header is rewritten by `edit` (and its length field
    /// set to `declared`) must fail to load naming model.safetensors and `expected`.
    func assertHeaderRejected(
        declared: UInt64? = nil, _ expected: String, line: UInt = #line, _ edit: (String) -> String
    ) throws {
        let (dir, _) = try tinyDirectory()
        try rewriteHeader(dir, declared: declared, edit)
        assertLoadFails(dir, file: "model.safetensors", expected, line: line)
    }

    func testWeightsFileHeaderDamage() throws {
        let headBias = "\"head.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":["
        // length field with the top bit set, or larger than the file
        try assertHeaderRejected(declared: 0x8000_0000_0000_0010, "exceeds the limit") { $0 }
        try assertHeaderRejected(declared: 1 << 20, "truncated") { $0 }
        // a dtype the engine does not read
        try assertHeaderRejected("dtype F16") { $0.replacingOccurrences(of: "\"head.bias\":{\"dtype\":\"F32\"", with: "\"head.bias\":{\"dtype\":\"F16\"") }
        // a shape whose product overflows
        try assertHeaderRejected("too large") { $0.replacingOccurrences(of: "\"shape\":[5]", with: "\"shape\":[4294967296,4294967296,5]") }
        // head.bias's offsets replaced by `offsets`
        func moved(_ header: String, _ offsets: String) -> String {
            let start = header.range(of: headBias)!.upperBound
            let end = header[start...].firstIndex(of: "]")!
            return header.replacingCharacters(in: start..<end, with: offsets)
        }
        // offsets past the end, overlapping another tensor, an unknown field
        try assertHeaderRejected("past the end") { moved($0, "1099511627776,1099511627796") }
        try assertHeaderRejected("overlap") { moved($0, "0,20") }
        try assertHeaderRejected("unknown field") { moved($0, "0,20],\"x\":[1") }
        // a well-formed file whose tensors are not this config's
        try assertHeaderRejected("missing tensors: head.bias; unexpected tensors: head.bias2") { $0.replacingOccurrences(of: "\"head.bias\"", with: "\"head.bias2\"") }
    }

    // MARK: - fuzzing

    /// What one fuzz case ended in: a clean error (of a model-loading type, one line naming a
    /// file of `dir`) or a model equal to `reference` where the bytes were the reference's.
    func checkOutcome(
        _ dir: String, reference: ViTModel, case index: Int, sameFiles: Bool
    ) -> Bool {
        do {
            let m = try ViTModel.load(directory: dir)
            if sameFiles {
                XCTAssertEqual(Array(m.parameters.buffer), Array(reference.parameters.buffer), "case \(index)")
            }
            // whatever loaded is a usable model: one forward pass through it
            let acts = m.makeActivations(batchSize: 1, training: false)
            let image = [Float](repeating: 0.5, count: m.channels * m.imageSize * m.imageSize)
            image.withUnsafeBufferPointer { m.forward(images: $0.baseAddress!, activations: acts) }
            return true
        } catch let e as ModelConfigError {
            XCTAssertFalse(e.problem.isEmpty, "case \(index)")
            XCTAssert(e.path.hasPrefix(dir), "case \(index): \(e)")
        } catch let e as ModelLoadError {
            XCTAssertFalse(e.problem.isEmpty, "case \(index)")
            XCTAssert(e.path.hasPrefix(dir), "case \(index): \(e)")
        } catch let e as SafeTensorsError {
            XCTAssertFalse(e.problem.isEmpty, "case \(index)")
            XCTAssert(e.path.hasPrefix(dir), "case \(index): \(e)")
        } catch {
            XCTFail("case \(index): unexpected error type \(type(of: error)): \(error)")
        }
        return false
    }

    func testFuzzedConfigJSON() throws {
        let (dir, model) = try tinyDirectory()
        let path = dir + "/config.json"
        let original = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: path)), as: UTF8.self)
        var rng = SeededGenerator(seed: 17)
        var loaded = 0
        let cases = Fuzz.caseCount(quick: 800)
        for i in 0..<cases {
            let text = Fuzz.mutateText(original, using: &rng)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            if checkOutcome(dir, reference: model, case: i, sameFiles: text == original) { loaded += 1 }
        }
        XCTAssertLessThan(loaded, cases, "no mutant was refused")
    }

    func testFuzzedSafeTensors() throws {
        let (dir, model) = try tinyDirectory()
        let path = dir + "/model.safetensors"
        let original = Array(try XCTUnwrap(FileManager.default.contents(atPath: path)))
        var rng = SeededGenerator(seed: 23)
        var rejected = 0
        let cases = Fuzz.caseCount(quick: 600)
        for i in 0..<cases {
            let bytes = Fuzz.mutate(original, using: &rng)
            // the in-memory decoder and the file reader agree on what is malformed
            var decoded: SafeTensors?
            do { decoded = try SafeTensors.decode(bytes, source: "case \(i)") } catch let e as SafeTensorsError {
                XCTAssertFalse(e.problem.isEmpty, "case \(i)")
            } catch {
                XCTFail("case \(i): unexpected error type \(error)")
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let ok = checkOutcome(dir, reference: model, case: i, sameFiles: bytes == original)
            if !ok { rejected += 1 }
            if ok { XCTAssertNotNil(decoded, "case \(i): the file loaded but did not decode") }
        }
        XCTAssertGreaterThan(rejected, cases / 4)
    }
}
