import Foundation
import XCTest

/// `catlip import corenet` end to end: the corenet fixture becomes a model directory that
/// `catlip embed` reads; hostile and wrong inputs fail with one line on stderr naming the file.
final class ImportCLITests: XCTestCase {
    /// Tests/ of this checkout.
    var testsRoot: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent() }

    func testImportCorenetThenEmbed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-import-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = testsRoot.appendingPathComponent("InteropTests/Fixtures/corenet").path
        let model = dir + "/model"
        let result = try catlip(["import", "corenet", fixtures + "/tiny.pt", "--vocab", fixtures + "/vocab.pkl", "--out", model])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.contains("\"num_classes\":40"), result.out)
        for file in ["config.json", "model.safetensors", "vocab.tsv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: model + "/" + file), file)
        }
        XCTAssertEqual(try String(contentsOfFile: model + "/vocab.tsv", encoding: .utf8).split(separator: "\n").count, 40)
        // the imported model embeds an image (a PNG from the Interop fixtures' neighbours)
        let image = testsRoot.appendingPathComponent("ImagingTests/Fixtures").path
        let png = try XCTUnwrap(
            FileManager.default.enumerator(atPath: image)?.compactMap { $0 as? String }.sorted().first { $0.hasSuffix(".png") })
        let out = dir + "/e.jsonl"
        let embed = try catlip(["embed", "--model", model, "--format", "jsonl", "--out", out, image + "/" + png])
        XCTAssertEqual(embed.status, 0, embed.err)
        XCTAssertTrue(embed.out.contains("\"dim\":192"), embed.out)

        // wrong class list, hostile checkpoints, not a checkpoint: one line each
        let names = dir + "/names.txt"
        try Data((0..<39).map { "c\($0)\n" }.joined().utf8).write(to: URL(fileURLWithPath: names))
        for (arguments, words) in [
            (["import", "corenet", fixtures + "/tiny.pt", "--classes", names, "--out", dir + "/x"], ["names.txt", "39 classes", "40 rows"]),
            (["import", "corenet", testsRoot.appendingPathComponent("ViTTests/Fixtures/torch/malicious.pt").path, "--out", dir + "/y"],
             ["malicious.pt", "os.system", "not allowed"]),
            (["import", "corenet", fixtures + "/vocab.pkl", "--out", dir + "/z"], ["vocab.pkl", "legacy"]),
            (["import", "corenet", png, "--out", dir + "/w"], [png]),
        ] {
            let r = try catlip(arguments)
            XCTAssertNotEqual(r.status, 0, arguments.joined(separator: " "))
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            for w in words { XCTAssertTrue(r.err.contains(w), "'\(w)' not in \(r.err)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x"), "nothing written for a refused import")
    }
}
