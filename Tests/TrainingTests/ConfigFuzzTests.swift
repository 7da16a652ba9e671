// Training configs written by someone else (issue 17): values that cannot be trained (huge,
// negative, not a number, sizes the engine cannot hold) are errors naming the file and the key,
// never a trap; seeded fuzzing of a valid YAML config ends in such an error or a config that
// validates and reads back to itself.
import Foundation
import Imaging
import Support
import TestSupport
import ViT
import XCTest

@testable import Training

final class ConfigFuzzTests: XCTestCase {
    static let minimal = "data:\n  train: t.tsv\n  vocab: v.tsv\n"

    /// The error parsing `yaml` (file "c.yaml") gives; fails the test when it parses.
    func error(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            _ = try TrainConfig.parse(yaml: yaml, file: "c.yaml")
            XCTFail("accepted:\n\(yaml)", file: file, line: line)
        } catch let e as ConfigError {
            XCTAssertEqual(e.file, "c.yaml", file: file, line: line)
            XCTAssertFalse("\(e)".contains("\n"), "not one line: \(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
        return nil
    }

    func assertKey(
        _ section: String, _ body: String, key: String, mentions: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let e = error(Self.minimal + (section == "data" ? "" : "\(section):\n") + body, file: file, line: line)
        XCTAssertEqual(e?.key, key, "\(e.map { "\($0)" } ?? "")", file: file, line: line)
        XCTAssert(e?.problem.contains(mentions) ?? false, "'\(e?.problem ?? "")' does not mention '\(mentions)'", file: file, line: line)
    }

    func testHostileValuesNameTheKey() {
        assertKey("run", "  steps: 1e300\n", key: "run.steps", mentions: "expected an integer")
        assertKey("run", "  steps: 9223372036854775808\n", key: "run.steps", mentions: "expected an integer")
        assertKey("data", "  batch_size: -64\n", key: "data.batch_size", mentions: "out of range")
        assertKey("optim", "  lr: .nan\n", key: "optim.lr", mentions: "expected a number")
        assertKey("optim", "  lr: NaN\n", key: "optim.lr", mentions: "expected a number")
        assertKey("optim", "  eps: -inf\n", key: "optim.eps", mentions: "expected a number")
        assertKey("data", "  image_size: 1000000000\n", key: "data.image_size", mentions: "out of range")
        assertKey("data", "  crop_scale: [1e-300, NaN]\n", key: "data.crop_scale", mentions: "out of range")
        assertKey("data", "  eval_crop_pct: 1e-300\n", key: "data.eval_crop_pct", mentions: "out of range")
        assertKey("data", "  resolutions: [64, 99999999999999999999]\n", key: "data.resolutions", mentions: "expected integers")
        assertKey("run", "  seed: -1\n", key: "run.seed", mentions: "out of range")
        // sizes the engine cannot hold, from values each in range on its own
        assertKey("data", "  image_size: 4096\n", key: "data.image_size", mentions: "patches per side")
        assertKey("data", "  resolutions: [64, 2048]\n", key: "data.resolutions", mentions: "patches per side")
        assertKey("model", "  embed_dim: 65536\n  depth: 1024\n  num_heads: 16\n", key: "model", mentions: "more than the engine's limit")
        assertKey("data", "  batch_size: 65536\n  image_size: 1024\n", key: "data.batch_size", mentions: "floats of activations")
        // the smallest resolution scales the batch up: 1000 x (1024 / 64)^2 images of side 64
        let scaled = error(
            Self.minimal + "  image_size: 1024\n  batch_size: 1000\n  resolutions: [64, 1024]\nmodel:\n  patch_size: 64\n")
        XCTAssertEqual(scaled?.key, "data.resolutions")
        XCTAssert(scaled?.problem.contains("256000 images of side 64") ?? false, "\(scaled.map { "\($0)" } ?? "")")
        assertKey("model", "  layer_scaling_head_dim: 4096\n", key: "model.layer_scaling_head_dim", mentions: "wider than")
        assertKey("model", "  mlp_ratio: 1000\n  embed_dim: 65536\n  num_heads: 16\n  depth: 1\n", key: "model", mentions: "parameters")
    }

    func testPresetsFitTheLimits() throws {
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardized.path
        for name in try FileManager.default.contentsOfDirectory(atPath: configs) where name.hasSuffix(".yaml") {
            XCTAssertNoThrow(try TrainConfig.load(path: configs + "/" + name), name)
        }
    }

    /// A valid config touching every section (resolutions and layer scaling included).
    static let valid = """
        data:
          train: data/{00000..00003}.tar
          val: val.tsv
          vocab: vocab.tsv
          image_size: 64
          batch_size: 32
          crop_scale: [0.4, 1.0]
          crop_ratio: [0.75, 1.3333]
          flip: 0.5
          resolutions: [32, 48, 64]
          eval_crop_pct: 0.875
        model:
          patch_size: 8
          embed_dim: 64
          depth: 3
          num_heads: 4
          mlp_ratio: 2.0
          layer_scaling_head_dim: 16
          layer_scaling_alpha: [0.5, 1.0]
          layer_scaling_beta: [0.5, 2.0]
        optim:
          lr: 1.0e-3
          min_lr: 1.0e-5
          warmup_steps: 50
          weight_decay: 0.05
          eps: 1.0e-8
          ema_momentum: 0.0005
          accumulation: 2
        run:
          steps: 500
          seed: 7
          checkpoint_every: 100
          checkpoint_minutes: 5.0
          keep_checkpoints: 2

        """

    func testFuzzedYAMLConfigs() throws {
        let reference = try TrainConfig.parse(yaml: Self.valid, file: "c.yaml")
        var rng = SeededGenerator(seed: 31)
        var rejected = 0
        let cases = Fuzz.caseCount(quick: 2000)
        for i in 0..<cases {
            let text = Fuzz.mutateText(Self.valid, using: &rng)
            do {
                let c = try TrainConfig.parse(yaml: text, file: "c.yaml")
                if text == Self.valid { XCTAssertEqual(c, reference, "case \(i)") }
                // what parses is usable: its model validates and its YAML reads back to itself
                XCTAssertNoThrow(try Trainer.modelConfig(c, classes: 1000).validate(), "case \(i)")
                XCTAssertEqual(try TrainConfig.parse(yaml: c.yaml()), c, "case \(i)")
            } catch let e as ConfigError {
                rejected += 1
                XCTAssertFalse(e.problem.isEmpty, "case \(i)")
                XCTAssertFalse("\(e)".contains("\n"), "case \(i): not one line: \(e)")
                XCTAssert(e.file == "c.yaml", "case \(i): \(e)")
            } catch {
                XCTFail("case \(i): unexpected error type \(type(of: error)): \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, cases / 10)
    }
}
