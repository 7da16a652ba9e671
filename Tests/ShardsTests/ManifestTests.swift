import Foundation
import XCTest

@testable import Shards

final class ManifestTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func write(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func testTSVWithBadLinesCountedNotFatal() throws {
        let path = try write(
            "m.tsv",
            "a.jpg\tA dog on a mat\nno tab here\n\t caption without path\n/abs/b.png\t\n\nc.jpg\tcat\twith\ttabs\r\n")
        let manifest = try Manifest(path: path)
        XCTAssertEqual(manifest.samples.map(\.key), ["a.jpg", "/abs/b.png", "c.jpg"])
        XCTAssertEqual(manifest.samples[0].imagePath, directory.path + "/a.jpg")
        XCTAssertEqual(manifest.samples[1].imagePath, "/abs/b.png")
        XCTAssertEqual(manifest.samples[1].caption, "")
        XCTAssertEqual(manifest.samples[2].caption, "cat\twith\ttabs")
        XCTAssertEqual(manifest.problems.map(\.line), [2, 3])
        XCTAssertTrue(manifest.problems[0].description.contains("m.tsv:2"))
    }

    func testJSONL() throws {
        let path = try write(
            "m.jsonl",
            "{\"image\": \"x/1.jpg\", \"caption\": \"caf\\u00e9 \\\"quoted\\\"\"}\n{broken\n{\"caption\": \"no image\"}\n[1,2]\n{\"image\": \"2.png\"}\n")
        let manifest = try Manifest(path: path)
        XCTAssertEqual(manifest.samples.map(\.key), ["x/1.jpg", "2.png"])
        XCTAssertEqual(manifest.samples[0].caption, "café \"quoted\"")
        XCTAssertEqual(manifest.samples[1].caption, "")
        XCTAssertEqual(manifest.problems.map(\.line), [2, 3, 4])
    }

    func testMissingManifestIsAnErrorNamingIt() {
        XCTAssertThrowsError(try Manifest(path: "/nonexistent/m.tsv")) { error in
            XCTAssertTrue(String(describing: error).contains("/nonexistent/m.tsv"))
        }
    }

    func testInvalidUTF8DoesNotCrash() throws {
        let url = directory.appendingPathComponent("bad.tsv")
        try Data([0x61, 0x2E, 0x6A, 0x70, 0x67, 0x09, 0xFF, 0xFE, 0x64, 0x6F, 0x67, 0x0A]).write(to: url)
        let manifest = try Manifest(path: url.path)
        XCTAssertEqual(manifest.samples.count, 1)
        XCTAssertTrue(manifest.samples[0].caption.hasSuffix("dog"))
    }
}
