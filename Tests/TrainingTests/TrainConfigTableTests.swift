import Foundation
import Support
import XCTest

@testable import Training

/// The configuration table against what catlip wrote before it existed: the resolved YAML of
/// every preset and of a config with every key changed, byte for byte, the fingerprints that
/// checkpoints written before the table carry, and a run stopped before it that must resume to
/// the weights of the run never stopped.
final class TrainConfigTableTests: ProcessTestCase {
    override class var directoryPrefix: String { "catlip-config" }

    /// The frozen inputs and their resolved YAML (`Fixtures/config-yaml`, see its README).
    static var goldenDirectory: String {
        get throws { try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/config-yaml" }
    }

    /// The golden cases: each input was resolved by the pre-table binary with these overrides.
    static let goldenCases: [(name: String, overrides: [String])] =
        ["defaults", "numbers", "demo", "demo-layerwise", "flickr8k", "vit-b16-224", "vit-s16-224", "vit-ti16-224"]
        .map { ($0, ["run.dir=out-\($0)"]) } + [("every-key", [])]

    /// The golden case `name`, parsed.
    func golden(_ name: String) throws -> TrainConfig {
        let overrides = try XCTUnwrap(Self.goldenCases.first { $0.name == name }).overrides
        return try TrainConfig.load(path: try Self.goldenDirectory + "/\(name).yaml", overrides: overrides)
    }

    func testResolvedYAMLIsByteIdenticalToWhatThePreTableBinaryWrote() throws {
        for (name, _) in Self.goldenCases {
            let expected = try String(contentsOfFile: try Self.goldenDirectory + "/\(name).resolved.yaml", encoding: .utf8)
            // the lines of keys added since the table (issue 20's task, model.init, ...) aside
            let added = Set(TrainConfig.keys.map(\.name)).subtracting(TrainConfig.legacyFingerprintKeys)
                .map { String($0.split(separator: ".")[1]) + ":" }
            let written = try golden(name).yaml().split(separator: "\n", omittingEmptySubsequences: false)
                .filter { line in !added.contains { line.trimmingCharacters(in: .whitespaces).hasPrefix($0) } }
                .joined(separator: "\n")
            XCTAssertEqual(written, expected, name)
        }
    }

    /// `fingerprint(worldSize:)` of each golden case (1 rank, 4 ranks) as the pre-table code
    /// computed it: checkpoints written before the table carry these.
    static let preTableFingerprints: [String: (UInt64, UInt64)] = [
        "defaults": (0xc3bc_8f3b_b9ed_a115, 0x3765_4ee9_6f6f_936c),
        "numbers": (0x4690_6bdb_d31b_1130, 0xd8be_fa0a_165b_e3db),
        "demo": (0xbc5d_8145_1c45_0eef, 0xe32e_757e_9c1a_5fb0),
        "demo-layerwise": (0xeb74_de7c_6d7f_2935, 0xf917_5317_8588_0422),
        "flickr8k": (0x02d9_62d4_3f38_e629, 0xdc7a_f651_b91a_9c1e),
        "vit-b16-224": (0x62de_d16e_46d7_2e81, 0xb28f_f859_8e7b_46f1),
        "vit-s16-224": (0x0a86_89bf_a110_05c8, 0xb650_bef1_a472_5278),
        "vit-ti16-224": (0xb2cc_c5b2_fc84_da84, 0xf167_b80d_c3fb_4074),
        "every-key": (0x6aae_1d03_36c4_3b2c, 0x7845_db59_b179_4e0a),
    ]

    func testLegacyFingerprintsAreThePreTableValues() throws {
        for (name, _) in Self.goldenCases {
            let c = try golden(name)
            let expected = try XCTUnwrap(Self.preTableFingerprints[name])
            XCTAssertEqual(c.legacyFingerprint(worldSize: 1), expected.0, name)
            XCTAssertEqual(c.legacyFingerprint(worldSize: 4), expected.1, name)
            XCTAssertNotEqual(c.fingerprint(worldSize: 1), expected.0, "the new fingerprint is another hash")
            XCTAssertTrue(c.resumes(checkpointFingerprint: String(expected.0, radix: 16), worldSize: 1), name)
            XCTAssertTrue(c.resumes(checkpointFingerprint: String(expected.1, radix: 16), worldSize: 4), name)
            XCTAssertFalse(c.resumes(checkpointFingerprint: String(expected.1, radix: 16), worldSize: 1), name)
        }
    }

    func testTheStoppedRunsCheckpointCarriesTheLegacyFingerprint() throws {
        let run = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/prechange-run/run"
        let header = try CheckpointFile.read(path: run + "/checkpoints/step-000000035.ckpt")
        let config = try TrainConfig.load(path: run + "/config.yaml")
        XCTAssertEqual(header.configFingerprint, String(config.legacyFingerprint(worldSize: 1), radix: 16))
        XCTAssertTrue(config.resumes(checkpointFingerprint: header.configFingerprint, worldSize: 1))
        var other = config
        other.optim.lr *= 2
        XCTAssertFalse(other.resumes(checkpointFingerprint: header.configFingerprint, worldSize: 1))
    }

    func testFingerprintHashesOnlyTheKeysAwayFromTheirDefaults() throws {
        let minimal = try golden("defaults")
        // the salt and one line per key that is not at its default: a key added later with a
        // default leaves this text, and so every existing fingerprint, as it is
        let text = "catlip-config-v2\ndata.train=\"t.tsv\"\ndata.vocab=\"v.tsv\""
        XCTAssertEqual(minimal.fingerprint, FNV1a.hash(text.utf8))
        // a key written at its default is the same configuration as the key left out
        let explicit = try TrainConfig.parse(yaml: "data:\n  train: t.tsv\n  vocab: v.tsv\n  label_mode: corenet\noptim:\n  lr: 1e-3\n")
        XCTAssertEqual(explicit.fingerprint, minimal.fingerprint)
        var changed = minimal
        changed.optim.lr = 5e-4
        XCTAssertEqual(changed.fingerprint, FNV1a.hash((text + "\noptim.lr=0.0005").utf8))
        // every key that enters changes the fingerprint; the resumable ones and run.dir do not
        let everyKey = try golden("every-key")
        let defaults = TrainConfig()
        // (the keys added since the table are left at their defaults there, so that its legacy
        // fingerprint still resumes: testKeysAddedSinceTheTable checks them)
        for key in TrainConfig.keys where TrainConfig.legacyFingerprintKeys.contains(key.name) {
            XCTAssertNotEqual(key.text(everyKey), key.text(defaults), "every-key.yaml leaves \(key.name) at its default")
            if key.text(everyKey) == key.text(minimal) { continue }  // data.vocab
            var c = minimal
            try key.read(ConfigReader(yaml: everyKey.yaml(), file: "every-key", overrides: []), &c)
            if key.fingerprint == .ignored {
                XCTAssertEqual(c.fingerprint, minimal.fingerprint, key.name)
            } else {
                XCTAssertNotEqual(c.fingerprint, minimal.fingerprint, key.name)
            }
            XCTAssertEqual(key.fingerprint == .ignored, key.name == "run.dir" || (key.resumable && key.fingerprint != .globalBatch), key.name)
        }
        // the micro-batch, accumulation and rank count enter only as the global batch
        var split = minimal
        split.data.batchSize = 16
        split.optim.accumulation = 2
        var whole = minimal
        whole.data.batchSize = 8
        XCTAssertEqual(split.fingerprint(worldSize: 2), whole.fingerprint(worldSize: 8))
        XCTAssertEqual(whole.fingerprint(worldSize: 8), minimal.fingerprint, "a global batch of 64 is the default's")
        XCTAssertNotEqual(split.fingerprint(worldSize: 1), minimal.fingerprint)
    }

    /// A key added since the table enters the fingerprint only away from its default, and then
    /// a checkpoint with the legacy fingerprint no longer resumes (it was written without it).
    func testKeysAddedSinceTheTable() throws {
        let base = try golden("demo")
        let legacy = String(base.legacyFingerprint(worldSize: 1), radix: 16)
        XCTAssertTrue(base.resumes(checkpointFingerprint: legacy, worldSize: 1))
        // each added key away from its default (mixing needs a classifier: its base is one)
        let classify = ["data.task=classify"]
        let changes: [(change: String, base: [String])] = [
            ("data.task=classify", []), ("model.init=pre/model", []), ("model.head_init=zero", []),
            ("optim.label_smoothing=0.2", []), ("optim.layer_decay=0.75", []), ("optim.freeze=backbone", []),
            ("data.mixup=0.8", classify), ("data.cutmix=1.0", classify), ("data.mixup_prob=0.5", []),
            ("data.mixup_switch_prob=0.25", []), ("model.drop_path_rate=0.1", []), ("run.precision=bf16", []),
        ]
        let added = Set(TrainConfig.keys.map(\.name)).subtracting(TrainConfig.legacyFingerprintKeys)
        XCTAssertEqual(Set(changes.map { String($0.change.split(separator: "=")[0]) }), added, "a change per added key")
        for (change, prerequisites) in changes {
            let before = try TrainConfig.parse(yaml: base.yaml(), overrides: prerequisites)
            let c = try TrainConfig.parse(yaml: base.yaml(), overrides: prerequisites + [change])
            XCTAssertNotEqual(c.fingerprint, before.fingerprint, change)
            XCTAssertEqual(c.legacyFingerprint(worldSize: 1), base.legacyFingerprint(worldSize: 1), change)
            XCTAssertFalse(c.resumes(checkpointFingerprint: legacy, worldSize: 1), change)
        }
    }

    func testTheResumableKeysAreThoseBeforeTheTable() {
        XCTAssertEqual(
            TrainConfig.resumableKeys,
            [
                "run.log_every", "run.checkpoint_every", "run.checkpoint_minutes", "run.keep_checkpoints", "run.max_bad_steps",
                "run.comm_timeout", "data.threads", "data.prefetch", "data.max_file_mb", "data.batch_size", "optim.accumulation",
            ])
        XCTAssertEqual(Set(TrainConfig.keys.map(\.name)).count, TrainConfig.keys.count, "a key declared twice")
    }

    func testKeysHelpListsEveryKeyWithItsDefault() throws {
        let help = TrainConfig.keysHelp
        for key in TrainConfig.keys { XCTAssertTrue(help.contains("\n\(key.name): ") || help.hasPrefix("\(key.name): "), key.name) }
        XCTAssertTrue(help.contains("optim.lr: 0.001  (number 0.0...10.0)\n    Peak learning rate"), help)
        XCTAssertTrue(help.contains("data.label_mode: corenet  (corenet or nouns)"), help)
        XCTAssertTrue(help.contains("data.batch_size: 64  (integer 1...65536; may change on --resume)"), help)
        // catlip train --list-keys prints it (without needing --config or --resume)
        let listed = try run(try binary, ["train", "--list-keys"])
        XCTAssertEqual(listed.status, 0, listed.output)
        XCTAssertEqual(listed.output, help + "\n")
    }

    func testARunStoppedBeforeTheTableResumesToTheUninterruptedWeights() throws {
        let fixture = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path + "/prechange-run"
        // the config's data paths are relative: the copy is the working directory
        for item in ["data", "run"] {
            try FileManager.default.copyItem(atPath: fixture + "/" + item, toPath: directory + "/" + item)
        }
        let r = finish(try start(["train", "--resume", "run"], workingDirectory: directory))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("resume: run/checkpoints/step-000000035.ckpt (step 35)"), r.output)
        XCTAssertTrue(r.output.contains("done: 200 steps"), r.output)
        // the checkpoint written after the resume carries the new fingerprint
        let last = try CheckpointFile.read(path: directory + "/run/checkpoints/step-000000200.ckpt")
        let config = try TrainConfig.load(path: directory + "/run/config.yaml")
        XCTAssertEqual(last.configFingerprint, String(config.fingerprint, radix: 16))
        let sha = try run("/usr/bin/env", ["sha256sum", directory + "/run/model/model.safetensors"])
        XCTAssertEqual(sha.status, 0, sha.output)
        #if DEBUG
            // the fixture's checkpoint and sha256 come from a release build (-target-cpu native):
            // a debug build rounds differently from step 0 (its own uninterrupted run differs
            // too), so only a release build can give the recorded bits
            print("resumed model.safetensors sha256 \(sha.output.prefix(64)) (compared in release builds only)")
        #else
            let expected = try String(contentsOfFile: fixture + "/uninterrupted-model.sha256", encoding: .utf8)
            XCTAssertEqual(sha.output.prefix(64), expected.prefix(64), "the resumed weights differ from the uninterrupted run's")
        #endif
    }
}
