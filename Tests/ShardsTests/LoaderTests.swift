import Foundation
import Imaging
import Support
import XCTest

@testable import Shards

/// The batch loader over a manifest of small generated PNGs.
final class LoaderTests: XCTestCase {
    nonisolated(unsafe) static var directory: URL!
    nonisolated(unsafe) static var manifestPath: String!
    static let sampleCount = 37

    override class func setUp() {
        super.setUp()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("loader-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var lines = ""
        for i in 0..<sampleCount {
            let w = 20 + (i * 7) % 30, h = 18 + (i * 11) % 25
            var pixels = [UInt8](repeating: 0, count: w * h * 3)
            for p in 0..<(w * h) {
                pixels[3 * p] = UInt8((p * 3 + i * 17) % 256)
                pixels[3 * p + 1] = UInt8((p / w * 9 + i) % 256)
                pixels[3 * p + 2] = UInt8(i * 5 % 256)
            }
            let name = String(format: "img%03d.png", i)
            let path = directory.appendingPathComponent(name).path
            let png = try! PNGEncoder.encode(RGBImage(width: w, height: h, pixels: pixels), source: path)
            try! Data(png).write(to: URL(fileURLWithPath: path))
            lines += "\(name)\tcaption \(i)\n"
        }
        // Bad samples: text posing as an image, a missing file, and an unlabelled sample.
        try! Data("not an image".utf8).write(to: directory.appendingPathComponent("bad.jpg"))
        lines += "bad.jpg\ta bad one\nmissing.png\tgone\nunlabelled.png\tno labels\n"
        try! Data(Data(try! readFileBytes(directory.appendingPathComponent("img000.png").path)))
            .write(to: directory.appendingPathComponent("unlabelled.png"))
        manifestPath = directory.appendingPathComponent("m.tsv").path
        try! Data(lines.utf8).write(to: URL(fileURLWithPath: manifestPath))
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: directory)
        super.tearDown()
    }

    /// Class index = image number % 5, plus 7 for multiples of 3; "unlabelled.png" has none.
    static let labels: @Sendable (String) -> [UInt32]? = { key in
        guard key.hasPrefix("img"), let n = Int(key.dropFirst(3).prefix(3)) else {
            return key == "unlabelled.png" ? nil : [0]
        }
        return n % 3 == 0 ? [UInt32(n % 5), 7] : [UInt32(n % 5)]
    }

    struct Copy: Equatable {
        var keys: [String]
        var images: [Float]
        var targets: [Float]
        var side: Int
        var labels: [[UInt32]]
    }

    func loader(threads: Int, seed: UInt64 = 1, rank: Int = 0, world: Int = 1, resolutions: [Int]? = nil, batch: Int = 8)
        throws -> BatchLoader
    {
        let source = ManifestSource(manifest: try Manifest(path: Self.manifestPath))
        let config = LoaderConfig(
            batchSize: batch, transform: TrainTransform(size: 12), classCount: 10, threads: threads,
            prefetchBatches: 2, seed: seed, rank: rank, worldSize: world, resolutions: resolutions, baseSize: 12)
        return BatchLoader(source: source, config: config, labels: Self.labels)
    }

    func drain(_ loader: BatchLoader, epoch: Int = 0, from position: LoaderPosition? = nil, limit: Int = .max) throws -> [Copy] {
        loader.start(at: position ?? LoaderPosition(epoch: epoch))
        var out: [Copy] = []
        while out.count < limit, let b = try loader.next() {
            out.append(Copy(keys: b.keys, images: Array(b.images), targets: Array(b.targets), side: b.side, labels: b.labels))
        }
        return out
    }

    func testSameBatchesWhateverTheThreadCount() throws {
        let one = try drain(loader(threads: 1))
        let three = try drain(loader(threads: 3))
        XCTAssertEqual(one.count, 5)  // 40 stream samples / 8
        XCTAssertEqual(one, three)
        let keys = one.flatMap(\.keys)
        XCTAssertEqual(keys.count, Self.sampleCount)
        XCTAssertEqual(Set(keys).count, Self.sampleCount)
        XCTAssertTrue(one.allSatisfy { $0.images.allSatisfy { $0 >= 0 && $0 <= 1 } })
    }

    func testEpochLabelsFollowTheEpochAndNotTheThreads() throws {
        // labels that depend on the epoch (a caption drawn per epoch): each batch carries the
        // closure's labels for ITS epoch, in the targets too, with any thread count
        let epochLabels: @Sendable (String, Int) -> [UInt32]? = { key, epoch in
            guard let labels = LoaderTests.labels(key), let first = labels.first else { return nil }
            return [UInt32((Int(first) + epoch) % 10)]
        }
        func make(threads: Int) throws -> BatchLoader {
            let source = ManifestSource(manifest: try Manifest(path: Self.manifestPath))
            let config = LoaderConfig(
                batchSize: 8, transform: TrainTransform(size: 12), classCount: 10, threads: threads,
                prefetchBatches: 2, seed: 1, rank: 0, worldSize: 1, resolutions: nil, baseSize: 12)
            return BatchLoader(source: source, config: config, epochLabels: epochLabels)
        }
        for epoch in [0, 3] {
            let one = try drain(make(threads: 1), epoch: epoch)
            XCTAssertEqual(one, try drain(make(threads: 3), epoch: epoch))
            for batch in one {
                for (i, key) in batch.keys.enumerated() {
                    XCTAssertEqual(batch.labels[i], epochLabels(key, epoch), key)
                    let row = Array(batch.targets[(i * 10)..<((i + 1) * 10)])
                    XCTAssertEqual(row.indices.filter { row[$0] == 1 }.map(UInt32.init), epochLabels(key, epoch), key)
                }
            }
        }
    }

    func testBadSamplesAreCountedNotFatal() throws {
        let l = try loader(threads: 2)
        _ = try drain(l)
        let report = l.skipped
        XCTAssertEqual(report.total, 3, report.description)
        XCTAssertEqual(report.counts["unsupported format"], 1, report.description)
        XCTAssertEqual(report.counts["unreadable image file"], 1, report.description)
        XCTAssertEqual(report.counts["no labels"], 1, report.description)
        XCTAssertTrue(report.description.contains("bad.jpg"))
    }

    func testTargetsMatchLabels() throws {
        for batch in try drain(loader(threads: 2)) {
            for (i, key) in batch.keys.enumerated() {
                let want = Self.labels(key)!
                let row = Array(batch.targets[(i * 10)..<((i + 1) * 10)])
                XCTAssertEqual(row.enumerated().filter { $0.element == 1 }.map { UInt32($0.offset) }, want.sorted())
                XCTAssertEqual(batch.labels[i], want)
            }
        }
    }

    func testEpochsShuffleDifferentlyAndSeedsRepeat() throws {
        let a0 = try drain(loader(threads: 2), epoch: 0).flatMap(\.keys)
        let a1 = try drain(loader(threads: 2), epoch: 1).flatMap(\.keys)
        let b0 = try drain(loader(threads: 2, seed: 2), epoch: 0).flatMap(\.keys)
        XCTAssertNotEqual(a0, a1)
        XCTAssertNotEqual(a0, b0)
        XCTAssertEqual(Set(a0), Set(a1))
        XCTAssertEqual(a0, try drain(loader(threads: 1), epoch: 0).flatMap(\.keys))
    }

    func testResumeGivesExactlyTheRemainingBatches() throws {
        let all = try drain(loader(threads: 2), epoch: 3)
        let l = try loader(threads: 2)
        let first = try drain(l, epoch: 3, limit: 2)
        let position = l.position
        XCTAssertEqual(position, LoaderPosition(epoch: 3, consumed: 16, batches: 2))
        l.stop()
        let rest = try drain(try loader(threads: 3), from: position)
        XCTAssertEqual(first + rest, all)
    }

    func testRanksPartitionTheEpoch() throws {
        var seen: [String] = []
        for rank in 0..<3 {
            seen += try drain(loader(threads: 2, rank: rank, world: 3)).flatMap(\.keys)
        }
        XCTAssertEqual(seen.count, Self.sampleCount)
        XCTAssertEqual(Set(seen).count, Self.sampleCount)
    }

    func testVariableResolutionKeepsTokensAboutConstant() throws {
        let batches = try drain(loader(threads: 2, resolutions: [8, 12, 16], batch: 4))
        XCTAssertGreaterThan(Set(batches.map(\.side)).count, 1)
        let config = try loader(threads: 1, resolutions: [8, 12, 16], batch: 4).config
        for b in 0..<5 {
            let (side, count) = config.plan(epoch: 0, batch: b)
            XCTAssertEqual(count, max(1, Int((4.0 * 144.0 / Double(side * side)).rounded())))
        }
        for batch in batches { XCTAssertEqual(batch.images.count, batch.keys.count * 3 * batch.side * batch.side) }
    }

    func testDroppingALoaderMidEpochStopsItsThreads() throws {
        for _ in 0..<5 {
            let l = try loader(threads: 2, batch: 2)
            l.start(at: LoaderPosition(epoch: 0))
            _ = try l.next()
        }  // each loader is released here; deinit stops its threads (a hang would time out)
    }

    func testShuffleBufferIsAPermutation() {
        var buffer = ShuffleBuffer<Int>(capacity: 10, generator: SeededGenerator(seed: 4))
        var out: [Int] = []
        for i in 0..<100 { if let x = buffer.push(i) { out.append(x) } }
        out += buffer.drain()
        XCTAssertEqual(out.sorted(), Array(0..<100))
        XCTAssertNotEqual(out, Array(0..<100))
    }

    // MARK: - Shards

    /// Writes the generated PNGs as two shards; returns the pattern.
    func writeShards(truncateSecond: Bool = false) throws -> String {
        let dir = Self.directory.appendingPathComponent("shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for shard in 0..<2 {
            let path = dir.appendingPathComponent(String(format: "%05d.tar", shard)).path
            let writer = try TarWriter(path: path)
            for i in stride(from: shard, to: Self.sampleCount, by: 2) {
                let key = String(format: "img%03d", i)
                try writer.add(name: key + ".png", data: try readFileBytes(Self.directory.appendingPathComponent(key + ".png").path))
                try writer.add(name: key + ".txt", data: Array("caption \(i)".utf8))
            }
            try writer.add(name: "nocap.png", data: try readFileBytes(Self.directory.appendingPathComponent("img001.png").path))
            try writer.finish()
            if truncateSecond && shard == 1 {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                try bytes.prefix(bytes.count / 2 + 100).write(to: URL(fileURLWithPath: path))
            }
        }
        return dir.path + "/{00000..00001}.tar"
    }

    func shardLoader(_ pattern: String, threads: Int, skipBad: Bool = false) throws -> BatchLoader {
        let source = try ShardSource(patterns: pattern, shuffleBuffer: 5, skipBadShards: skipBad)
        let config = LoaderConfig(batchSize: 6, transform: TrainTransform(size: 10), classCount: 10, threads: threads, seed: 9)
        return BatchLoader(source: source, config: config, labels: Self.labels)
    }

    func testShardsGiveTheSameBatchesWhateverTheThreadCount() throws {
        let pattern = try writeShards()
        let one = try drain(shardLoader(pattern, threads: 1))
        let four = try drain(shardLoader(pattern, threads: 4))
        XCTAssertEqual(one, four)
        XCTAssertEqual(Set(one.flatMap(\.keys)).count, Self.sampleCount)
        let l = try shardLoader(pattern, threads: 2)
        _ = try drain(l)
        XCTAssertEqual(l.skipped.counts["missing or empty caption"], 2, l.skipped.description)
    }

    func testDamagedShardIsReportedNotFatal() throws {
        let pattern = try writeShards(truncateSecond: true)
        let l = try shardLoader(pattern, threads: 2)
        let keys = try drain(l).flatMap(\.keys)
        XCTAssertGreaterThan(keys.count, Self.sampleCount / 2)
        XCTAssertLessThan(keys.count, Self.sampleCount)
        XCTAssertEqual(l.skipped.counts["truncated shard"], 1, l.skipped.description)
    }

    func testMissingShardFailsTheEpochUnlessSkipped() throws {
        let pattern = try writeShards()
        let withMissing = pattern.replacingOccurrences(of: "{00000..00001}", with: "{00000..00002}")
        XCTAssertThrowsError(try drain(shardLoader(withMissing, threads: 2))) { error in
            XCTAssertTrue(String(describing: error).contains("00002.tar"), "\(error)")
        }
        let l = try shardLoader(withMissing, threads: 2, skipBad: true)
        XCTAssertEqual(try drain(l).flatMap(\.keys).count, Self.sampleCount)
        XCTAssertEqual(l.skipped.counts["unreadable shard"], 1)
    }
}
