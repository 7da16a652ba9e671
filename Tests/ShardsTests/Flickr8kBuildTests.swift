import Foundation
import Imaging
import XCTest

@testable import Shards

/// `datasets/flickr8k/build.py` on a small made-up download with bad lines and bad files: the
/// problems are counted, the shards read back through catlip's shard reader with all five
/// captions, the split is a function of the key, and the zero-shot and probe folders hold the
/// photos whose captions agree on one class.
final class Flickr8kBuildTests: XCTestCase {
    var directory: String!
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("datasets/flickr8k/build.py").path

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("flickr-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory + "/Images", withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    /// Runs the script; returns its exit status and stdout.
    func build(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testBuildCountsProblemsAndWritesReadableShardsAndFolders() throws {
        // 40 photos: even ones are dogs in every caption, odd ones cats in three of five
        var csv = "image,caption\n"
        for i in 0..<40 {
            let name = String(format: "%04d_ab%02d.png", i, i)
            let png = try PNGEncoder.encode(
                RGBImage(width: 8, height: 6, pixels: [UInt8](repeating: UInt8(i * 5), count: 8 * 6 * 3)), source: name)
            try Data(png).write(to: URL(fileURLWithPath: directory + "/Images/" + name))
            for k in 0..<5 {
                let noun = i % 2 == 0 ? "dog" : (k < 3 ? "cats" : "animal")
                csv += k == 4 ? "\(name),\"A \(noun), \"\"quoted\"\" in a park .\"\n" : "\(name),A \(noun) number \(k) on the grass .\n"
            }
        }
        // problems: a caption for a missing image, a text file posing as a photo, an image with
        // no caption, a line without a comma, an empty caption
        csv += "9999_zz.png,A ghost .\nfake_01.jpg,A fake photo .\nno comma here\n0000_ab00.png,\n"
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: directory + "/Images/fake_01.jpg"))
        try Data(PNGEncoder.encode(RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 9, count: 12)), source: "x"))
            .write(to: URL(fileURLWithPath: directory + "/Images/uncaptioned_1.png"))
        try Data(csv.utf8).write(to: URL(fileURLWithPath: directory + "/captions.txt"))

        let out = directory + "/out"
        let arguments = [
            "--images", directory + "/Images", "--captions", directory + "/captions.txt", "--out", out,
            "--per-shard", "7", "--val-percent", "20", "--test-percent", "30",
            "--zero-shot-classes", "dog,cat", "--zero-shot-min-images", "1",
        ]
        let first = try build(arguments)
        XCTAssertEqual(first.status, 0)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(summary["samples"] as? Int, 40)
        XCTAssertEqual(summary["bad_caption_lines"] as? Int, 2, "\(summary["bad_caption_reasons"] ?? "")")
        let skipped = try XCTUnwrap(summary["skipped"] as? [String: Int])
        XCTAssertEqual(skipped["missing_image"], 1)
        XCTAssertEqual(skipped["not_jpeg_or_png"], 1)
        XCTAssertEqual(skipped["no_captions"], 1)

        // every sample reads back through the shard reader with its five captions, in order
        let splits = try XCTUnwrap(summary["splits"] as? [String: [String: Any]])
        var keys: [String: String] = [:]
        for (split, info) in splits {
            let pattern = try XCTUnwrap(info["pattern"] as? String)
            guard (info["samples"] as? Int ?? 0) > 0 else { continue }
            try ShardSource(patterns: pattern, shuffle: false).forEachSample(seed: 0, epoch: 0) { sample in
                guard !sample.key.hasPrefix("<shard>") else { return true }
                keys[sample.key] = split
                let lines = sample.caption.split(separator: "\n")
                XCTAssertEqual(lines.count, 5, sample.key)
                XCTAssertTrue(lines[4].contains("\"quoted\""), String(lines[4]))
                if case .bytes(let bytes) = sample.image {
                    XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], sample.key)
                } else {
                    XCTFail("\(sample.key): no image bytes")
                }
                return true
            }
        }
        XCTAssertEqual(keys.count, 40)
        XCTAssertGreaterThan(Set(keys.values).count, 1)

        // folders: test photos in heldout, train photos in probe-train, by the caption rule
        let fm = FileManager.default
        for (folder, split) in [("heldout", "test"), ("probe-train", "train")] {
            for cls in ["dog", "cat"] {
                let files = (try? fm.contentsOfDirectory(atPath: "\(out)/\(folder)/\(cls)")) ?? []
                let expected = keys.filter { $0.value == split && (Int($0.key.prefix(4))! % 2 == 0) == (cls == "dog") }
                XCTAssertFalse(expected.isEmpty, "\(folder)/\(cls)")
                XCTAssertEqual(Set(files.map { String($0.dropLast(4)) }), Set(expected.keys), "\(folder)/\(cls)")
            }
        }

        // the same input gives the same shard bytes
        let shard = out + "/train/00000.tar"
        let before = try Data(contentsOf: URL(fileURLWithPath: shard))
        XCTAssertEqual(try build(arguments).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: shard)), before)
    }
}
