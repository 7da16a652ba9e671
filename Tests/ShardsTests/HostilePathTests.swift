import Foundation
import Imaging
import TestSupport
import XCTest

@testable import Shards

/// Manifest lines and folder entries that are not ordinary image files (/dev/zero, a FIFO, a
/// directory, a huge sparse file) are bad samples counted by reason, never a hang or an
/// unbounded read (issue 17).
final class HostilePathTests: ScratchDirectoryTestCase {
    func writePNG(_ path: String) throws {
        let pixels = (0..<(16 * 12 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let png = try PNGEncoder.encode(RGBImage(width: 16, height: 12, pixels: pixels), source: path)
        try Data(png).write(to: URL(fileURLWithPath: path))
    }

    /// Drains `loader` on another thread; fails instead of hanging when it takes over 60 s.
    func drainPromptly(_ loader: BatchLoader) throws -> [String] {
        nonisolated(unsafe) var keys: [String] = []
        nonisolated(unsafe) var failure: (any Error)?
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let loader = loader
        Thread.detachNewThread {
            do {
                loader.start(at: LoaderPosition(epoch: 0))
                while let batch = try loader.next() { keys += batch.keys }
            } catch {
                failure = error
            }
            done.signal()
        }
        guard done.wait(timeout: .now() + 60) == .success else {
            XCTFail("the loader did not finish within 60 s")
            return []
        }
        if let failure { throw failure }
        return keys
    }

    func config(maxFileBytes: Int = defaultMaxImageFileBytes) -> LoaderConfig {
        var config = LoaderConfig(batchSize: 4, transform: TrainTransform(size: 8), classCount: 3, threads: 2, seed: 1)
        config.maxFileBytes = maxFileBytes
        return config
    }

    func testManifestEntriesThatAreNotImageFilesAreBadSamples() throws {
        try writePNG(directory + "/good.png")
        XCTAssertEqual(mkfifo(directory + "/pipe.png", 0o644), 0)
        try FileManager.default.createDirectory(atPath: directory + "/folder.png", withIntermediateDirectories: false)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/sparse.png", contents: nil))
        XCTAssertEqual(truncate(directory + "/sparse.png", off_t(1) << 40), 0)
        let manifest = directory + "/m.tsv"
        try Data("good.png\ta dog\n/dev/zero\tzeros\npipe.png\ta pipe\nfolder.png\ta folder\nsparse.png\ta terabyte\n".utf8)
            .write(to: URL(fileURLWithPath: manifest))
        let source = ManifestSource(manifest: try Manifest(path: manifest))
        let loader = BatchLoader(source: source, config: config()) { _ in [1] }
        XCTAssertEqual(try drainPromptly(loader), ["good.png"])
        let report = loader.skipped
        XCTAssertEqual(report.total, 4, report.description)
        XCTAssertEqual(report.counts["not a regular file"], 3, report.description)
        XCTAssertEqual(report.counts["file too large"], 1, report.description)
        XCTAssertTrue(report.description.contains("/dev/zero"), report.description)
        XCTAssertTrue(report.description.contains("pipe.png"), report.description)
    }

    func testTheCapComesFromTheConfiguration() throws {
        try writePNG(directory + "/good.png")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: directory + "/good.png")[.size] as? Int)
        let manifest = directory + "/m.tsv"
        try Data("good.png\ta dog\n".utf8).write(to: URL(fileURLWithPath: manifest))
        for (cap, kept) in [(size, 1), (size - 1, 0)] {
            let loader = BatchLoader(source: ManifestSource(manifest: try Manifest(path: manifest)), config: config(maxFileBytes: cap)) { _ in [1] }
            XCTAssertEqual(try drainPromptly(loader).count, kept, "cap \(cap)")
            XCTAssertEqual(loader.skipped.counts["file too large"] ?? 0, 1 - kept, loader.skipped.description)
        }
    }

    func testFolderEntriesAndSidecarsThatAreNotFilesAreBadSamples() throws {
        try writePNG(directory + "/a.png")
        try Data("a cat".utf8).write(to: URL(fileURLWithPath: directory + "/a.txt"))
        try writePNG(directory + "/b.png")
        XCTAssertEqual(mkfifo(directory + "/b.txt", 0o644), 0)  // a caption no one writes
        XCTAssertEqual(mkfifo(directory + "/c.jpg", 0o644), 0)
        try Data("a pipe".utf8).write(to: URL(fileURLWithPath: directory + "/c.txt"))
        try FileManager.default.createSymbolicLink(atPath: directory + "/d.jpg", withDestinationPath: "/dev/zero")
        try Data("zeros".utf8).write(to: URL(fileURLWithPath: directory + "/d.txt"))
        let loader = BatchLoader(source: try FolderSource(root: directory), config: config()) { _ in [2] }
        XCTAssertEqual(try drainPromptly(loader), ["a.png"])
        let report = loader.skipped
        XCTAssertEqual(report.counts["caption file: not a regular file"], 1, report.description)
        XCTAssertEqual(report.counts["not a regular file"], 2, report.description)
        XCTAssertEqual(report.total, 3, report.description)
    }

    func testAManifestThatIsAFIFOOrDeviceIsAnError() throws {
        XCTAssertEqual(mkfifo(directory + "/m.tsv", 0o644), 0)
        for path in [directory + "/m.tsv", "/dev/zero"] {
            XCTAssertThrowsError(try Manifest(path: path)) { error in
                XCTAssertTrue(error is ManifestError, "\(error)")
                XCTAssertTrue("\(error)".hasPrefix(path + ": cannot read the manifest: is a "), "\(error)")
                XCTAssertTrue("\(error)".hasSuffix(", not a regular file"), "\(error)")
            }
        }
    }
}
