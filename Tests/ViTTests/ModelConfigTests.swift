import Foundation
import XCTest

@testable import ViT

final class ModelConfigTests: XCTestCase {

    func config(_ json: String) throws -> ModelConfig {
        try ModelConfig.decode(Data(json.utf8), path: "config.json")
    }

    func assertRejects(
        _ json: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try config(json)
            XCTFail("accepted (expected '\(expected)')", file: file, line: line)
        } catch let e as ModelConfigError {
            XCTAssertEqual(e.path, "config.json", file: file, line: line)
            XCTAssert(
                e.problem.contains(expected), "'\(e.problem)' does not mention '\(expected)'",
                file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    /// A minimal config with `args` spliced into model_args.
    func json(_ args: String, top: String = "") -> String {
        """
        {\(top)"model_args": {\(args)},
         "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [0, 0, 0], "std": [1, 1, 1],
                            "crop_pct": 0.875, "interpolation": "bilinear"}}
        """
    }

    let small =
        "\"img_size\": 32, \"patch_size\": 8, \"embed_dim\": 32, \"depth\": 2, \"num_heads\": 2, \"num_classes\": 10"

    func testFixtureConfigs() throws {
        let root = try fixturesRoot()
        let cls = try ModelConfig.read(path: root + "/cls_uniform/config.json")
        XCTAssertEqual(cls.architecture, "vit_catlip")
        XCTAssertEqual(cls.numClasses, 50)
        XCTAssertEqual(cls.numFeatures, 32)
        XCTAssertEqual(cls.modelArgs.imgSize, 32)
        XCTAssertEqual(cls.modelArgs.globalPool, "token")
        XCTAssertTrue(cls.modelArgs.classToken)
        XCTAssertEqual(cls.pretrainedCfg.inputSize, [3, 32, 32])
        XCTAssertEqual(cls.pretrainedCfg.cropPct, 0.875)
        XCTAssertEqual(cls.pretrainedCfg.interpolation, "bilinear")
        XCTAssertEqual(
            cls.blocks,
            Array(repeating: BlockGeometry(numHeads: 2, headDim: 16, mlpHidden: 128), count: 2))
        let awk = try ModelConfig.read(path: root + "/awkward/config.json")
        XCTAssertEqual(awk.blocks.first, BlockGeometry(numHeads: 3, headDim: 16, mlpHidden: 192))
        let avg = try ModelConfig.read(path: root + "/avg_scaled/config.json")
        XCTAssertEqual(
            avg.modelArgs.layerScaling, LayerScaling(headDim: 8, alpha: [0.5, 1], beta: [0.5, 4]))
        XCTAssertEqual(avg.blocks.map(\.numHeads), [2, 3, 4])
        XCTAssertEqual(avg.blocks.map(\.attentionWidth), [16, 24, 32])
        XCTAssertEqual(avg.blocks.map(\.mlpHidden), [16, 72, 128])
    }

    func testRoundTrip() throws {
        let dir = try temporaryDirectory(self)
        for name in ["cls_uniform", "avg_scaled", "awkward"] {
            let c = try ModelConfig.read(path: try fixturesRoot() + "/\(name)/config.json")
            try c.write(path: dir + "/config.json")
            XCTAssertEqual(try ModelConfig.read(path: dir + "/config.json"), c, name)
            // keys in sorted order in every object, so the bytes do not depend on the process's hashing seed
            let text = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
            var objects: [[String]] = []
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if line.hasPrefix("\""), let end = line.range(of: "\" :") {
                    objects[objects.count - 1].append(String(line[line.index(after: line.startIndex)..<end.lowerBound]))
                }
                if line.hasSuffix("{") { objects.append([]) }
                if line.hasPrefix("}") {
                    let keys = objects.removeLast()
                    XCTAssertEqual(keys, keys.sorted(), name)
                }
            }
            XCTAssertTrue(objects.isEmpty, name)
            XCTAssertTrue(text.contains("\"model_args\" :"), name)
        }
    }

    /// timm's model_args `drop_path_rate`: read (0 when absent), written back only when set, so
    /// a config without it is written as before (the same JSON object; the encoder's key order
    /// varies); outside [0, 1) an error.
    func testDropPathRate() throws {
        let plain = try config(json(small))
        XCTAssertEqual(plain.dropPathRate, 0)
        let plainJSON = String(decoding: try plain.encoded(), as: UTF8.self)
        XCTAssertFalse(plainJSON.contains("drop_path_rate"))
        var without = plain
        without.dropPathRate = 0.1
        XCTAssertNotEqual(without, plain)
        let dropped = try config(json(small + ", \"drop_path_rate\": 0.1"))
        XCTAssertEqual(dropped.dropPathRate, 0.1)
        XCTAssertEqual(dropped.modelArgs, plain.modelArgs, "not part of the architecture")
        let text = String(decoding: try dropped.encoded(), as: UTF8.self)
        XCTAssertTrue(text.contains("\"drop_path_rate\" : 0.1"), text)
        XCTAssertEqual(try ModelConfig.decode(try dropped.encoded()), dropped)
        var back = dropped
        back.dropPathRate = 0
        func object(_ data: Data) throws -> NSDictionary {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
        }
        XCTAssertEqual(try object(try back.encoded()), try object(Data(plainJSON.utf8)))
        XCTAssertNotEqual(try object(try dropped.encoded()), try object(Data(plainJSON.utf8)))
        assertRejects(json(small + ", \"drop_path_rate\": 1"), "model_args.drop_path_rate 1.0 is out of range")
        assertRejects(json(small + ", \"drop_path_rate\": -0.5"), "model_args.drop_path_rate -0.5 is out of range")
    }

    func testImgSizeAsListAndDefaults() throws {
        let c = try config(
            json(
                "\"img_size\": [32, 32], \"patch_size\": 8, \"embed_dim\": 32, \"num_heads\": 4, \"num_classes\": 7, \"future_option\": {\"x\": 1}",
                top: "\"label_names\": [], "))
        XCTAssertEqual(c.modelArgs.imgSize, 32)
        // timm defaults for keys not given; top-level fields follow model_args
        XCTAssertEqual(c.modelArgs.depth, 12)
        XCTAssertEqual(c.modelArgs.mlpRatio, 4)
        XCTAssertTrue(c.modelArgs.qkvBias)
        XCTAssertTrue(c.modelArgs.classToken)
        XCTAssertEqual(c.modelArgs.globalPool, "token")
        XCTAssertEqual(c.numClasses, 7)
        XCTAssertEqual(c.numFeatures, 32)
        assertRejects(json("\"img_size\": [32, 40], \"patch_size\": 8"), "square")
    }

    func testValidation() {
        assertRejects(
            json(small.replacingOccurrences(of: "\"num_heads\": 2", with: "\"num_heads\": 5")),
            "not divisible by num_heads 5")
        assertRejects(json(small + ", \"class_token\": false"), "needs class_token")
        assertRejects(json(small + ", \"global_pool\": \"max\""), "global_pool 'max'")
        assertRejects(json(small + ", \"reg_tokens\": 4"), "reg_tokens")
        assertRejects(json(small + ", \"pre_norm\": true"), "pre_norm")
        assertRejects(json(small + ", \"init_values\": 0.1"), "init_values")
        assertRejects(json(small + ", \"fc_norm\": true"), "fc_norm")
        assertRejects(json(small + ", \"qk_norm\": true"), "qk_norm")
        assertRejects(
            json(small.replacingOccurrences(of: "\"img_size\": 32", with: "\"img_size\": 4")),
            "smaller than patch_size")
        assertRejects(
            json(small.replacingOccurrences(of: "\"patch_size\": 8", with: "\"patch_size\": 0")),
            "patch_size 0 is out of range")
        assertRejects(
            json(small.replacingOccurrences(of: "\"depth\": 2", with: "\"depth\": 0")),
            "depth 0 is out of range")
        assertRejects(
            json(small.replacingOccurrences(of: "\"num_classes\": 10", with: "\"num_classes\": 0")),
            "num_classes 0 is out of range")
        assertRejects(json(small, top: "\"num_classes\": 11, "), "num_classes 11 differs")
        assertRejects(json(small, top: "\"num_features\": 64, "), "num_features 64 differs")
        assertRejects(
            json(
                small + ", \"layer_scaling\": {\"head_dim\": 8, \"alpha\": [0.5], \"beta\": [1, 2]}"
            ), "[min, max] pairs")
        assertRejects(
            json(
                small
                    + ", \"layer_scaling\": {\"head_dim\": 8, \"alpha\": [0, 1], \"beta\": [1, 2]}"),
            "positive")
        assertRejects(
            json(
                small.replacingOccurrences(of: "\"embed_dim\": 32", with: "\"embed_dim\": \"wide\"")
            ), "model_args.embed_dim")
        assertRejects("{\"model_args\": {}}", "pretrained_cfg")
        assertRejects("{\"model_args\": ", "not valid JSON")
        assertRejects(
            "{\"model_args\": {\(small)}, \"pretrained_cfg\": {\"input_size\": [1, 32, 32]}}",
            "input_size")
        // global_pool avg without class token is fine, as is fc_norm matching it
        XCTAssertNoThrow(
            try config(
                json(
                    small + ", \"class_token\": false, \"global_pool\": \"avg\", \"fc_norm\": true",
                    top: "\"global_pool\": \"avg\", ")))
        // layer scaling ignores num_heads / mlp_ratio (D need not divide by num_heads)
        XCTAssertNoThrow(
            try config(
                json(
                    small.replacingOccurrences(of: "\"num_heads\": 2", with: "\"num_heads\": 5")
                        + ", \"layer_scaling\": {\"head_dim\": 8, \"alpha\": [0.5, 1], \"beta\": [0.5, 4]}"
                )))
    }

    func testLayerScalingFormulas() throws {
        // depth 1: t = 0 gives the minimum factors
        var a = ModelArgs(
            imgSize: 32, patchSize: 8, embedDim: 64, depth: 1,
            layerScaling: LayerScaling(headDim: 16, alpha: [0.5, 1], beta: [0.5, 4]))
        XCTAssertEqual(
            ModelConfig(modelArgs: a).blocks,
            [BlockGeometry(numHeads: 2, headDim: 16, mlpHidden: 32)])
        // tiny factors never go below one head / one head_dim of MLP
        a.depth = 3
        a.layerScaling = LayerScaling(headDim: 16, alpha: [0.01, 0.02], beta: [0.01, 0.02])
        XCTAssertEqual(ModelConfig(modelArgs: a).blocks.map(\.numHeads), [1, 1, 1])
        XCTAssertEqual(ModelConfig(modelArgs: a).blocks.map(\.mlpHidden), [16, 16, 16])
        // OpenELM-like: dim 64, head_dim 16, depth 4: alpha 0.5..1 -> 2, 2.67, 3.33, 4 heads
        a.embedDim = 64
        a.depth = 4
        a.layerScaling = LayerScaling(headDim: 16, alpha: [0.5, 1], beta: [0.5, 4])
        let g = ModelConfig(modelArgs: a).blocks
        XCTAssertEqual(g.map(\.numHeads), [2, 3, 3, 4])
        // beta * 64 / 16 = 2, 6.67, 11.33, 16 -> 2, 7, 11, 16 head_dims
        XCTAssertEqual(g.map(\.mlpHidden), [32, 112, 176, 256])
    }
}
