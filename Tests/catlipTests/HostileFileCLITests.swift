import Foundation
import Imaging
import TestSupport
import XCTest

/// `catlip shards create` over a manifest naming /dev/zero, a FIFO and a huge sparse file: each
/// is a bad sample reported by reason, the good one is written, and nothing hangs (issue 17).
final class HostileFileCLITests: ScratchDirectoryTestCase {
    func testShardsCreateSkipsFilesThatAreNotImagesByReason() throws {
        let pixels = (0..<(10 * 8 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        let png = try PNGEncoder.encode(RGBImage(width: 10, height: 8, pixels: pixels), source: "good.png")
        try Data(png).write(to: URL(fileURLWithPath: directory + "/good.png"))
        XCTAssertEqual(mkfifo(directory + "/pipe.png", 0o644), 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/sparse.png", contents: nil))
        XCTAssertEqual(truncate(directory + "/sparse.png", off_t(300 << 20)), 0)
        let manifest = directory + "/m.tsv"
        try Data("good.png\ta dog\n/dev/zero\tzeros\npipe.png\ta pipe\nsparse.png\tbig\n".utf8)
            .write(to: URL(fileURLWithPath: manifest))
        let result = try catlip(["shards", "create", "--manifest", manifest, "--out", directory + "/out"])
        XCTAssertEqual(result.status, 0, result.err)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        XCTAssertEqual(summary["samples"] as? Int, 1, result.out)
        XCTAssertEqual(summary["skipped"] as? Int, 3, result.out)
        XCTAssertTrue(result.err.contains("skipped 2 (not a regular file): /dev/zero, pipe.png"), result.err)
        XCTAssertTrue(result.err.contains("skipped 1 (file too large): sparse.png"), result.err)

        let limited = try catlip(["shards", "create", "--manifest", manifest, "--out", directory + "/out2", "--max-file-mb", "0"])
        XCTAssertNotEqual(limited.status, 0)
        XCTAssertTrue(limited.err.contains("--max-file-mb must be in 1...1048576"), limited.err)
    }

    func testTrainRefusesAConfigThatIsNotARegularFile() throws {
        XCTAssertEqual(mkfifo(directory + "/config.yaml", 0o644), 0)
        for config in ["/dev/zero", directory + "/config.yaml", directory] {
            let result = try catlip(["train", "--config", config, "--set", "run.dir=\(directory)/run"])
            XCTAssertNotEqual(result.status, 0, config)
            XCTAssertTrue(result.err.contains(config) && result.err.contains("not a regular file"), "\(config): \(result.err)")
        }
    }
}
