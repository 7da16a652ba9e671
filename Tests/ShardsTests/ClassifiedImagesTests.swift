import Foundation
import Shards
import TestSupport
import XCTest

/// Labelled images for fine-tuning: ImageFolder and `path<TAB>class` manifests, a fixed class
/// list, and the bad inputs each named.
final class ClassifiedImagesTests: ScratchDirectoryTestCase {
    private func touch(_ relative: String) throws {
        let url = URL(fileURLWithPath: directory + "/" + relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data([0]).write(to: url)
    }

    private func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testImageFolderFindsNestedImagesAndSortsClasses() throws {
        try touch("data/zebra/a.png")
        try touch("data/zebra/more/b.JPG")
        try touch("data/cat/c.jpeg")
        try touch("data/cat/notes.txt")
        try touch("data/readme.md")
        let set = try ClassifiedImages.read(directory + "/data")
        XCTAssertEqual(set.classes, ["cat", "zebra"])
        XCTAssertEqual(set.samples.map(\.caption), ["cat", "zebra", "zebra"])
        XCTAssertEqual(set.samples.map { set.labels[$0.key]! }, [0, 1, 1])
        XCTAssertTrue(set.samples[2].imagePath.hasSuffix("zebra/more/b.JPG"))
        XCTAssertEqual(try set.source(shuffle: false).count, 3)
    }

    func testManifestWithFixedClassList() throws {
        try touch("m/img1.png")
        let manifest = directory + "/m/train.tsv"
        try "img1.png\tdog\n/abs/x.png\tcat\r\n\n".write(toFile: manifest, atomically: true, encoding: .utf8)
        let set = try ClassifiedImages.read(manifest, classes: ["ant", "cat", "dog"])
        XCTAssertEqual(set.classes, ["ant", "cat", "dog"])
        XCTAssertEqual(set.labels, ["img1.png": 2, "/abs/x.png": 1])
        XCTAssertEqual(set.samples[0].imagePath, directory + "/m/img1.png")
        XCTAssertEqual(set.samples[1].imagePath, "/abs/x.png")
        // a class outside the list is an error naming it and the image
        let m = message { _ = try ClassifiedImages.read(manifest, classes: ["ant", "cat"]) }
        XCTAssertTrue(m.contains("class 'dog' (of img1.png) is not in the run's class list"), m)
    }

    /// Shards: the class in KEY.cls or in KEY.json's label; samples without one counted and
    /// named; integer classes sorted as numbers; a class outside a fixed list refused.
    func testShardsCarryTheClassInClsOrJson() throws {
        let shard = directory + "/00000.tar"
        let writer = try TarWriter(path: shard)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47]
        for (key, extra) in [("a", ("cls", "10\n")), ("b", ("json", #"{"label": 2}"#)), ("c", ("json", #"{"cls": "10"}"#)), ("d", ("txt", "no class"))] {
            try writer.add(name: key + ".png", data: png)
            try writer.add(name: key + "." + extra.0, data: Array(extra.1.utf8))
        }
        try writer.finish()
        let set = try ClassifiedImages.read(directory + "/{00000..00000}.tar")
        XCTAssertTrue(set.inShards)
        XCTAssertEqual(set.classes, ["2", "10"], "integer classes in numeric order")
        XCTAssertEqual(set.labels, ["a": 1, "b": 0, "c": 1])
        XCTAssertEqual(set.unlabelled.total, 1)
        XCTAssertTrue(set.unlabelled.description.contains("00000.tar:d"), set.unlabelled.description)
        var keys: [String] = []
        try set.source(shuffle: false).forEachSample(seed: 0, epoch: 0) { keys.append($0.key); return true }
        XCTAssertEqual(keys, ["a", "b", "c", "d"])
        let m = message { _ = try ClassifiedImages.read(self.directory + "/00000.tar", classes: ["2"]) }
        XCTAssertTrue(m.contains("class '10'"), m)
    }

    func testBadInputsAreNamed() throws {
        try touch("empty/cat/a.png")
        try FileManager.default.createDirectory(atPath: directory + "/empty/dog", withIntermediateDirectories: true)
        var m = message { _ = try ClassifiedImages.read(self.directory + "/empty") }
        XCTAssertTrue(m.contains("class folder 'dog' has no images"), m)

        let twice = directory + "/twice.tsv"
        try "a.png\tcat\nb.png\tdog\na.png\tdog\n".write(toFile: twice, atomically: true, encoding: .utf8)
        m = message { _ = try ClassifiedImages.read(twice) }
        XCTAssertTrue(m.contains("a.png is listed under two classes, 'cat' and 'dog'"), m)

        let bad = directory + "/bad.tsv"
        try "a.png\tcat\nno-tab-here\n".write(toFile: bad, atomically: true, encoding: .utf8)
        m = message { _ = try ClassifiedImages.read(bad) }
        XCTAssertTrue(m.contains("line 2: expected path<TAB>class"), m)

        m = message { _ = try ClassifiedImages.read(self.directory + "/missing") }
        XCTAssertTrue(m.contains("no such file or folder"), m)
        try FileManager.default.createDirectory(atPath: directory + "/none", withIntermediateDirectories: true)
        m = message { _ = try ClassifiedImages.read(self.directory + "/none") }
        XCTAssertTrue(m.contains("no labelled images found"), m)
    }

    func testClassListRoundTripAndDamage() throws {
        let path = directory + "/classes.tsv"
        try ClassifiedImages.classesTSV(["cat", "dog"]).write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ClassifiedImages.readClasses(path), ["cat", "dog"])
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "0\tcat\n1\tdog\n")
        // export-head's classes.tsv (index, class, route, rows) and a plain list read the same
        try "0\tcat\tdirect\tn02121808\n1\tdog\tnone\t\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ClassifiedImages.readClasses(path), ["cat", "dog"])
        try "cat\ndog\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ClassifiedImages.readClasses(path), ["cat", "dog"])
        try "cat\ncat\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try ClassifiedImages.readClasses(path) }.contains("listed twice"))
        try "\n\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try ClassifiedImages.readClasses(path) }.contains("empty"))
    }
}
