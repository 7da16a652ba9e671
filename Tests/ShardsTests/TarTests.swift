import Foundation
import XCTest

@testable import Shards

/// The tar layer: TarWriter → TarReader round trips, archives written by Python's tarfile
/// (Fixtures/tar, made by Fixtures/make_tar_fixtures.py), damaged archives, webdataset sample
/// grouping and shard patterns.
final class TarTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tar-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    // MARK: - Helpers

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func writeTar(_ name: String, _ members: [(String, [UInt8])]) throws -> String {
        let writer = try TarWriter(path: path(name))
        for (memberName, data) in members { try writer.add(name: memberName, data: data) }
        try writer.finish()
        return writer.path
    }

    func writeFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    struct Outcome {
        var members: [TarMember] = []
        var errors: [TarError] = []
        /// Members and errors in the order they came, for exact checks.
        var events: [String] = []
    }

    /// Calls next() until nil, recording members and errors; fails on anything but a TarError and
    /// on a reader that does not end.
    func readAll(
        _ path: String, limit: Int = TarReader.defaultMemberSizeLimit, resynchronize: Bool = false,
        chunkSize: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Outcome {
        let reader = try TarReader(
            path: path, memberSizeLimit: limit, resynchronize: resynchronize, chunkSize: chunkSize)
        var outcome = Outcome()
        for _ in 0..<100_000 {
            do {
                guard let member = try reader.next() else {
                    XCTAssertNil(try reader.next(), "next() after the end", file: file, line: line)
                    return outcome
                }
                outcome.members.append(member)
                outcome.events.append("member \(member.name)")
            } catch let error as TarError {
                outcome.errors.append(error)
                outcome.events.append("error \(error.problem)")
            }
        }
        XCTFail("the reader did not end", file: file, line: line)
        return outcome
    }

    /// Deterministic bytes.
    func pattern(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// Recomputes the checksum of the header block at `offset`.
    func fixChecksum(_ archive: inout [UInt8], at offset: Int) {
        for i in 148..<156 { archive[offset + i] = UInt8(ascii: " ") }
        let sum = archive[offset..<(offset + 512)].reduce(0) { $0 + Int($1) }
        let text = String(sum, radix: 8)
        let field = Array((String(repeating: "0", count: max(0, 6 - text.count)) + text).utf8) + [0, UInt8(ascii: " ")]
        for (i, byte) in field.enumerated() { archive[offset + 148 + i] = byte }
    }

    /// A header block for hand-made archives: the writer's fields, then `edit`, then the checksum.
    func header(_ name: String, size: Int, type: Character = "0", edit: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
        var block = ustarHeader(name: Array(name.utf8), size: size, type: type.asciiValue!)
        edit(&block)
        fixChecksum(&block, at: 0)
        return block
    }

    func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512) }

    let endMarker = [UInt8](repeating: 0, count: 1024)

    func fixtures() throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("tar")
    }

    // MARK: - Writer and reader round trip

    func testRoundTripNamesSizesAndBinaryData() throws {
        let members: [(String, [UInt8])] = [
            ("a.txt", Array("hello\n".utf8)),
            ("empty.bin", []),
            ("all-bytes.bin", (0..<2560).map { UInt8($0 % 256) }),
            ("one-block.bin", pattern(512, seed: 2)),
            ("one-block-plus-one.bin", pattern(513, seed: 3)),
            (String(repeating: "n", count: 100), pattern(17, seed: 4)),
            (String(repeating: "d/", count: 50) + "x.jpg", pattern(1000, seed: 5)),
            (String(repeating: "é", count: 49) + "ab.txt", Array("multibyte at the 100-byte boundary".utf8)),
            ("dir/" + String(repeating: "日本語", count: 30) + ".txt", Array("long non-ASCII name".utf8)),
            ("zero-after-long.bin", []),
            ("big.bin", pattern(3 << 20, seed: 6)),
            ("tail.txt", Array("last".utf8)),
        ]
        let tar = try writeTar("round.tar", members)
        for chunkSize in [512, 1000, 4096, 1 << 20] {
            let outcome = try readAll(tar, chunkSize: chunkSize)
            XCTAssertEqual(outcome.errors, [], "chunk \(chunkSize)")
            XCTAssertEqual(outcome.members.map(\.name), members.map(\.0), "chunk \(chunkSize)")
            XCTAssertEqual(outcome.members.map(\.data), members.map(\.1), "chunk \(chunkSize)")
        }
        let offsets = try readAll(tar).members.map(\.offset)
        XCTAssertEqual(offsets[0], 0)
        XCTAssertEqual(offsets[1], 1024)  // header + one data block
        XCTAssertTrue(offsets.allSatisfy { $0 % 512 == 0 })
        XCTAssertEqual(offsets, offsets.sorted())
    }

    func testWriterIsDeterministicAndUstar() throws {
        let members: [(String, [UInt8])] = [
            ("k/0001.jpg", pattern(700)), ("k/0001.txt", Array("cap".utf8)),
            (String(repeating: "z", count: 130) + ".json", Array("{}".utf8)),
        ]
        let first = try bytes(writeTar("one.tar", members))
        let second = try bytes(writeTar("two.tar", members))
        XCTAssertEqual(first, second)
        // 3 headers + pax header + pax data + data blocks (2 + 1 + 1) + end marker.
        XCTAssertEqual(first.count, 512 * (4 + 1 + 4) + 1024)
        XCTAssertEqual(Array(first[257..<265]), Array("ustar\u{0}00".utf8))
        XCTAssertEqual(String(decoding: first[100..<108], as: UTF8.self), "0000644\u{0}")
        XCTAssertEqual(String(decoding: first[136..<148], as: UTF8.self), "00000000000\u{0}")
        XCTAssertEqual(Array(first[265..<329]), [UInt8](repeating: 0, count: 64))  // uname, gname
        XCTAssertTrue(checksumMatches(Array(first[0..<512])))
        // The long name: a pax header named as Python's tarfile names it, then the member.
        let pax = 512 * 5
        XCTAssertEqual(String(decoding: first[pax..<(pax + 14)], as: UTF8.self), "././@PaxHeader")
        XCTAssertEqual(first[pax + 156], UInt8(ascii: "x"))
        let record = "145 path=" + String(repeating: "z", count: 130) + ".json\n"
        XCTAssertEqual(record.utf8.count, 145)
        XCTAssertEqual(String(decoding: first[(pax + 512)..<(pax + 512 + 145)], as: UTF8.self), record)
        XCTAssertEqual(
            String(decoding: first[(pax + 1024)..<(pax + 1124)], as: UTF8.self), String(repeating: "z", count: 100))
    }

    func testPaxRecordLengthCountsItself() {
        // 9 + 1 digit would be 10, which has 2 digits: the length must be 11.
        XCTAssertEqual(String(decoding: paxRecord(key: "path", value: Array("ab".utf8)), as: UTF8.self), "11 path=ab\n")
        XCTAssertEqual(String(decoding: paxRecord(key: "path", value: Array("a".utf8)), as: UTF8.self), "9 path=a\n")
        XCTAssertEqual(String(decoding: paxRecord(key: "p", value: []), as: UTF8.self), "5 p=\n")
        for n in 0..<1200 {
            let record = paxRecord(key: "path", value: [UInt8](repeating: 97, count: n))
            let length = Int(String(decoding: record.prefix { $0 != 32 }, as: UTF8.self))
            XCTAssertEqual(length, record.count)
        }
    }

    func testWriterTemporaryFileAndCancel() throws {
        let final = path("shard.tar")
        let writer = try TarWriter(path: final)
        try writer.add(name: "a.txt", data: [1, 2, 3])
        XCTAssertFalse(FileManager.default.fileExists(atPath: final), "nothing under the final name before finish()")
        XCTAssertTrue(FileManager.default.fileExists(atPath: writer.temporaryPath))
        try writer.finish()
        XCTAssertTrue(FileManager.default.fileExists(atPath: final))
        XCTAssertFalse(FileManager.default.fileExists(atPath: writer.temporaryPath))
        XCTAssertEqual(writer.memberCount, 1)
        XCTAssertEqual(writer.bytesWritten, 512 * 2 + 1024)
        XCTAssertThrowsError(try writer.add(name: "late.txt", data: []))

        let cancelled = try TarWriter(path: path("cancelled.tar"))
        try cancelled.add(name: "a.txt", data: [1])
        cancelled.cancel()
        XCTAssertFalse(FileManager.default.fileExists(atPath: cancelled.temporaryPath))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("cancelled.tar")))

        var temporary = ""
        do {
            let dropped = try TarWriter(path: path("dropped.tar"))
            try dropped.add(name: "a.txt", data: [1])
            temporary = dropped.temporaryPath
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: temporary), "a dropped writer removes its temporary file")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["shard.tar"])

        XCTAssertThrowsError(try TarWriter(path: path("no-such-dir/x.tar"))) { error in
            XCTAssertTrue("\(error)".contains("no-such-dir/x.tar"), "\(error)")
        }
    }

    func testWriterRejectsBadNames() throws {
        let writer = try TarWriter(path: path("bad.tar"))
        XCTAssertThrowsError(try writer.add(name: "", data: [1])) { error in
            XCTAssertEqual((error as? TarError)?.problem, .invalidName("empty"))
        }
        XCTAssertThrowsError(try writer.add(name: "a\u{0}b", data: [1])) { error in
            XCTAssertEqual((error as? TarError)?.problem, .invalidName("contains a NUL byte"))
            XCTAssertEqual((error as? TarError)?.isFatal, false, "the writer stays usable")
        }
        try writer.add(name: "ok.txt", data: [1])
        try writer.finish()
        XCTAssertEqual(try readAll(path("bad.tar")).members.map(\.name), ["ok.txt"])
    }

    // MARK: - Archives written by Python's tarfile

    func testReadsWhatPythonTarfileWrote() throws {
        let root = try fixtures()
        let expected = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("expected.json")))
                as? [String: Any])
        for name in ["pax.tar", "gnu.tar", "ustar.tar", "wds.tar"] {
            let members = try XCTUnwrap(expected[name] as? [[String: String]], name)
            let outcome = try readAll(root.appendingPathComponent(name).path, chunkSize: 512)
            XCTAssertEqual(outcome.errors, [], name)
            XCTAssertEqual(outcome.members.map(\.name), members.map { $0["name"]! }, name)
            XCTAssertEqual(outcome.members.map { hex($0.data) }, members.map { $0["hex"]! }, name)
        }
        // Spot checks of what each file exercises.
        let pax = try readAll(root.appendingPathComponent("pax.tar").path).members
        XCTAssertTrue(pax.contains { $0.name == "café/naïve-日本語.txt" })
        XCTAssertTrue(pax.contains { $0.name.utf8.count > 250 })
        XCTAssertEqual(pax.first { $0.name == "empty.dat" }?.data, [])
        XCTAssertGreaterThan(pax[0].offset, 0, "the global header belongs to no member")
        let ustar = try readAll(root.appendingPathComponent("ustar.tar").path).members
        XCTAssertEqual(ustar.map(\.name).filter { $0.hasSuffix("inside-prefix.jpg") }.count, 1)
        XCTAssertFalse(
            ustar.contains { $0.name == "photos/link.jpg" || $0.name == "photos/hard.jpg" || $0.name == "photos/fifo" })
    }

    func testPythonWebdatasetShardGroupsIntoSamples() throws {
        let root = try fixtures()
        let expected = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("expected.json")))
                as? [String: Any])
        let samples = try XCTUnwrap(expected["wds.samples"] as? [[String: Any]])
        let reader = try ShardSampleReader(path: root.appendingPathComponent("wds.tar").path)
        var got: [ShardSample] = []
        while let sample = try reader.next() { got.append(sample) }
        XCTAssertEqual(got.map(\.key), samples.map { $0["key"] as! String })
        for (sample, want) in zip(got, samples) {
            let files = want["files"] as! [String: String]
            XCTAssertEqual(sample.files.mapValues(hex), files)
            XCTAssertEqual(sample.imageBytes?.fileExtension, "jpg")
            XCTAssertEqual(sample.imageBytes.map { Array($0.bytes.prefix(3)) }, [0xFF, 0xD8, 0xFF])
            let metadata = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(XCTUnwrap(sample.metadata))) as? [String: Any])
            XCTAssertEqual(metadata["caption"] as? String, sample.caption)
            XCTAssertTrue(sample.shard.hasSuffix("wds.tar"))
        }
        XCTAssertEqual(got.last?.caption, "crème brûlée on a plate")
        XCTAssertEqual(reader.skippedCount, 0)
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    // MARK: - Damaged archives

    func testTruncatedArchives() throws {
        let members: [(String, [UInt8])] = [("a.bin", pattern(700, seed: 1)), ("b.bin", pattern(100, seed: 2))]
        let whole = try bytes(writeTar("whole.tar", members))
        // a.bin: header 0, data 512..<1212, padding to 1536; b.bin: header 1536, data 2048..<2148.
        let cases: [(cut: Int, names: [String], truncatedAt: Int?, member: String?)] = [
            (100, [], 0, nil),  // mid first header
            (700, [], 0, "a.bin"),  // mid data
            (1212, ["a.bin"], nil, nil),  // data complete, padding missing: the end
            (1300, ["a.bin"], nil, nil),  // mid padding
            (1536, ["a.bin"], nil, nil),  // at a member boundary: no end marker, fine
            (1600, ["a.bin"], 1536, nil),  // mid second header
            (2100, ["a.bin"], 1536, "b.bin"),  // mid last member
            (2560, ["a.bin", "b.bin"], nil, nil),  // end marker missing
            (2560 + 512, ["a.bin", "b.bin"], nil, nil),  // one zero block only
        ]
        for (cut, names, truncatedAt, member) in cases {
            let tar = try writeFile("cut-\(cut).tar", Array(whole[..<cut]))
            let outcome = try readAll(tar)
            XCTAssertEqual(outcome.members.map(\.name), names, "cut at \(cut)")
            if let truncatedAt {
                XCTAssertEqual(outcome.errors.count, 1, "cut at \(cut)")
                let error = try XCTUnwrap(outcome.errors.first)
                XCTAssertEqual(error.problem, .truncated)
                XCTAssertEqual(error.offset, truncatedAt)
                XCTAssertEqual(error.member, member)
                XCTAssertTrue(error.isFatal)
                XCTAssertTrue(error.description.contains("cut-\(cut).tar: offset \(truncatedAt)"), error.description)
                XCTAssertTrue(error.description.contains("truncated"), error.description)
            } else {
                XCTAssertEqual(outcome.errors, [], "cut at \(cut)")
            }
        }
        // Through the sample reader: the sample assembled before the cut comes first, then the
        // error, then the end.
        let shard = try bytes(
            writeTar("s.tar", [("k1.jpg", [1]), ("k1.txt", [2]), ("k2.jpg", pattern(900)), ("k2.txt", [4])]))
        let cut = try writeFile("s-cut.tar", Array(shard[..<(512 * 5 + 300)]))  // inside k2.jpg's data
        let reader = try ShardSampleReader(path: cut)
        XCTAssertEqual(try reader.next()?.files, ["jpg": [1], "txt": [2]])
        XCTAssertThrowsError(try reader.next()) { XCTAssertEqual(($0 as? TarError)?.problem, .truncated) }
        XCTAssertNil(try reader.next())
    }

    func testCorruptChecksumStopsOrResynchronizes() throws {
        let members: [(String, [UInt8])] = [("a.txt", [1]), ("b.txt", [2]), ("c.txt", [3]), ("d.txt", [4])]
        var archive = try bytes(writeTar("ok.tar", members))
        archive[1024 + 10] ^= 0x20  // b.txt's header
        let tar = try writeFile("corrupt.tar", archive)
        let stopped = try readAll(tar)
        XCTAssertEqual(stopped.events, ["member a.txt", "error badChecksum"])
        XCTAssertEqual(stopped.errors.first?.offset, 1024)
        XCTAssertEqual(stopped.errors.first?.isFatal, true)
        XCTAssertTrue(stopped.errors.first!.description.contains("offset 1024: header checksum mismatch"))
        let resynchronized = try readAll(tar, resynchronize: true)
        XCTAssertEqual(resynchronized.events, ["member a.txt", "error badChecksum", "member c.txt", "member d.txt"])

        // Not a tar at all.
        let jpeg = try writeFile("photo.tar", [0xFF, 0xD8, 0xFF, 0xE0] + pattern(2000))
        XCTAssertEqual(try readAll(jpeg).events, ["error badChecksum"])
        XCTAssertEqual(try readAll(jpeg).errors.first?.offset, 0)
    }

    func testMemberLargerThanTheLimitIsSkippedAndReadingGoesOn() throws {
        let tar = try writeTar(
            "limit.tar",
            [("small.txt", [1, 2]), ("huge.bin", pattern(5000)), ("exact.bin", pattern(1000)), ("after.txt", [3])])
        let outcome = try readAll(tar, limit: 1000)
        XCTAssertEqual(
            outcome.events,
            [
                "member small.txt", "error memberTooLarge(size: 5000, limit: 1000)", "member exact.bin",
                "member after.txt",
            ])
        let error = try XCTUnwrap(outcome.errors.first)
        XCTAssertFalse(error.isFatal)
        XCTAssertEqual(error.member, "huge.bin")
        XCTAssertEqual(error.offset, 1024)
        XCTAssertTrue(
            error.description.contains("member \"huge.bin\": member of 5000 bytes exceeds the limit of 1000 bytes"))

        // A too-large member that is also cut short: truncated.
        let whole = try bytes(tar)
        let cut = try writeFile("limit-cut.tar", Array(whole[..<3000]))
        XCTAssertEqual(try readAll(cut, limit: 1000).events, ["member small.txt", "error truncated"])
    }

    func testEmptyMissingAndDirectoryPaths() throws {
        XCTAssertEqual(try readAll(writeFile("empty.tar", [])).events, [])
        XCTAssertEqual(try readAll(writeFile("zeros.tar", endMarker)).events, [])
        XCTAssertThrowsError(try TarReader(path: path("missing.tar"))) { error in
            guard case .cannotOpen = (error as? TarError)?.problem else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("missing.tar"))
        }
        XCTAssertThrowsError(try TarReader(path: directory.path)) { error in
            XCTAssertEqual((error as? TarError)?.problem, .cannotOpen("is a directory"))
        }
    }

    func testReadsFromAPipe() throws {
        // Not a regular file: no seeking, skipped data is read and dropped.
        let archive = try bytes(writeTar("p.tar", [("a.txt", [1]), ("big.bin", pattern(300_000)), ("c.txt", [3])]))
        let fifo = path("pipe.tar")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let writer = Thread {
            guard let handle = FileHandle(forWritingAtPath: fifo) else { return }
            handle.write(Data(archive))
            try? handle.close()
        }
        writer.start()
        let outcome = try readAll(fifo, limit: 1000, chunkSize: 4096)
        XCTAssertEqual(
            outcome.events, ["member a.txt", "error memberTooLarge(size: 300000, limit: 1000)", "member c.txt"])
    }

    // MARK: - Header variants, built by hand

    func testV7OldGNUAndBase256Headers() throws {
        var archive: [UInt8] = []
        // v7: no magic; a regular file with type NUL; a v7 directory is a NUL-type name ending in "/".
        archive += header("v7.txt", size: 3, type: "\0") { block in for i in 257..<265 { block[i] = 0 } }
        archive += padded([7, 7, 7])
        archive += header("v7dir/", size: 0, type: "\0") { block in for i in 257..<265 { block[i] = 0 } }
        // Old GNU magic: the prefix area is not a prefix.
        archive += header("gnu.txt", size: 2) { block in
            for (i, b) in "ustar  \u{0}".utf8.enumerated() { block[257 + i] = b }
            block[345] = UInt8(ascii: "X")
        }
        archive += padded([1, 2])
        // POSIX prefix joins with a slash.
        archive += header("name.txt", size: 1) { block in
            for (i, b) in "pre/fix".utf8.enumerated() { block[345 + i] = b }
        }
        archive += padded([9])
        // Base-256 size (GNU binary numbers).
        archive += header("b256.bin", size: 0) { block in
            for i in 124..<136 { block[i] = 0 }
            block[124] = 0x80
            block[134] = 0x02
            block[135] = 0x01  // 513
        }
        archive += padded(pattern(513))
        // Octal with leading spaces and a space terminator; contiguous-file type 7.
        archive += header("spaces.bin", size: 0, type: "7") { block in
            for (i, b) in "        12 \u{0}".utf8.enumerated() { block[124 + i] = b }
        }
        archive += padded(pattern(10))
        // A lone zero block in the middle is skipped (GNU tar does), then a hard link, a
        // directory and an unknown type with data, all skipped.
        archive += [UInt8](repeating: 0, count: 512)
        archive += header("link", size: 0, type: "1")
        archive += header("dir", size: 0, type: "5")
        archive += header("vendor", size: 600, type: "Q")
        archive += padded(pattern(600))
        archive += header("last.txt", size: 1)
        archive += padded([42])
        let outcome = try readAll(writeFile("hand.tar", archive + endMarker))
        XCTAssertEqual(outcome.errors, [])
        XCTAssertEqual(
            outcome.members.map(\.name),
            ["v7.txt", "gnu.txt", "pre/fix/name.txt", "b256.bin", "spaces.bin", "last.txt"])
        XCTAssertEqual(outcome.members[3].data, pattern(513))
        XCTAssertEqual(outcome.members[4].data, pattern(10))
        XCTAssertEqual(outcome.members.last?.data, [42])
    }

    func testSignedChecksumIsAccepted() throws {
        var block = header("signed.txt", size: 1) { $0[300] = 0xFF }  // a high byte in gname
        // Store the signed sum instead of the unsigned one.
        let unsigned = block.enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 32 : $1.element) }
        let signed = unsigned - 256
        let text = String(signed, radix: 8)
        for (i, b) in (String(repeating: "0", count: 6 - text.count) + text + "\u{0} ").utf8.enumerated() {
            block[148 + i] = b
        }
        let outcome = try readAll(writeFile("signed.tar", block + padded([5]) + endMarker))
        XCTAssertEqual(outcome.members.map(\.name), ["signed.txt"])
    }

    func testBadNumbersAreCorruptHeaders() throws {
        let negative = header("neg", size: 0) { block in
            for i in 124..<136 { block[i] = 0xFF }
        }
        let garbage = header("garbage", size: 0) { block in
            for (i, b) in "12x4".utf8.enumerated() { block[124 + i] = b }
        }
        for (name, block) in [("neg", negative), ("garbage", garbage)] {
            let outcome = try readAll(
                writeFile("\(name).tar", header("first.txt", size: 1) + padded([1]) + block + endMarker))
            XCTAssertEqual(outcome.members.map(\.name), ["first.txt"])
            XCTAssertEqual(outcome.errors.count, 1)
            guard case .badHeader = outcome.errors.first?.problem else { return XCTFail("\(outcome.errors)") }
            XCTAssertEqual(outcome.errors.first?.offset, 1024)
            XCTAssertEqual(outcome.errors.first?.member, name)
        }
    }

    func testPaxAndGNUExtendedHeaders() throws {
        func pax(_ records: [(String, String)], type: Character = "x") -> [UInt8] {
            let data = records.flatMap { paxRecord(key: $0.0, value: Array($0.1.utf8)) }
            return header("././@PaxHeader", size: data.count, type: type) + padded(data)
        }
        var archive: [UInt8] = []
        archive += pax([("comment", "global"), ("path", "ignored/global")], type: "g")
        archive += pax([("path", "from/pax.txt"), ("size", "700"), ("mtime", "1.5"), ("hdrcharset", "BINARY")])
        archive += header("truncated-ustar-name", size: 0)  // the pax size wins
        archive += padded(pattern(700))
        // GNU long name, then a long link (skipped), then a symlink with both.
        let longName = String(repeating: "L", count: 300) + ".bin"
        archive +=
            header("././@LongLink", size: longName.utf8.count + 1, type: "L") + padded(Array(longName.utf8) + [0])
        archive += header("short", size: 4)
        archive += padded([1, 2, 3, 4])
        archive += header("././@LongLink", size: 301, type: "K") + padded(pattern(301))
        archive += header("././@LongLink", size: 5, type: "L") + padded(Array("ln\u{0}xx".utf8))
        archive += header("sym", size: 0, type: "2")
        // pax beats L when both are there.
        archive += header("././@LongLink", size: 6, type: "L") + padded(Array("gnu.a\u{0}".utf8))
        archive += pax([("path", "pax.a")])
        archive += header("ustar.a", size: 1) + padded([8])
        // Extended headers are per member: the next one has its own name.
        archive += header("plain.txt", size: 1) + padded([9])
        let outcome = try readAll(writeFile("ext.tar", archive + endMarker))
        XCTAssertEqual(outcome.errors, [])
        XCTAssertEqual(outcome.members.map(\.name), ["from/pax.txt", longName, "pax.a", "plain.txt"])
        XCTAssertEqual(outcome.members[0].data, pattern(700))
        XCTAssertEqual(outcome.members[0].offset, 1024, "the member starts at its pax header, after the global one")
    }

    func testBadExtendedHeadersSkipTheirMember() throws {
        func paxRaw(_ text: String) -> [UInt8] {
            header("././@PaxHeader", size: text.utf8.count, type: "x") + padded(Array(text.utf8))
        }
        var archive: [UInt8] = []
        archive += header("ok1.txt", size: 1) + padded([1])
        archive += paxRaw("99 path=too-long-length\n")
        archive += header("victim1.txt", size: 1) + padded([2])
        archive += paxRaw("17 path=no-newline")
        archive += header("victim2.txt", size: 1) + padded([3])
        archive += paxRaw("12 size=12a\n")
        archive += header("victim3.txt", size: 1) + padded([4])
        archive += paxRaw("x path=a\n")
        archive += header("victim4.dir", size: 0, type: "5")
        archive += paxRaw("9 =value\n")
        archive += header("victim5.txt", size: 1) + padded([5])
        // A bad global header is reported on its own; the member after it is fine.
        archive += header("././@PaxHeader", size: 8, type: "g") + padded(Array("garbage\n".utf8))
        let huge = TarReader.extendedHeaderLimit + 1
        archive += header("././@PaxHeader", size: huge, type: "g") + padded(pattern(huge))
        archive += header("ok2.txt", size: 1) + padded([6])
        // An over-long GNU name: skipped with its member.
        archive += header("././@LongLink", size: huge, type: "L") + padded(pattern(huge))
        archive += header("victim6.txt", size: 1) + padded([7])
        // pax GNU sparse: unsupported, skipped.
        archive += paxRaw(String(decoding: paxRecord(key: "GNU.sparse.major", value: Array("1".utf8)), as: UTF8.self))
        archive += header("sparse.txt", size: 1) + padded([8])
        archive += header("ok3.txt", size: 1) + padded([9])
        let outcome = try readAll(writeFile("badext.tar", archive + endMarker))
        XCTAssertEqual(outcome.members.map(\.name), ["ok1.txt", "ok2.txt", "ok3.txt"])
        XCTAssertEqual(outcome.members.map(\.data), [[1], [6], [9]])
        XCTAssertEqual(
            outcome.errors.map { $0.member ?? "-" },
            [
                "victim1.txt", "victim2.txt", "victim3.txt", "victim4.dir", "victim5.txt", "-", "-", "victim6.txt",
                "sparse.txt",
            ])
        XCTAssertTrue(outcome.errors.allSatisfy { !$0.isFatal })
        XCTAssertEqual(outcome.errors.first?.offset, 1024, "the offset of the bad pax header")
        XCTAssertTrue(outcome.errors[0].description.contains("bad extended header"), outcome.errors[0].description)
        XCTAssertEqual(outcome.errors.last?.problem, .unsupported("GNU sparse file (pax)"))
    }

    func testOldGNUSparseIsSkipped() throws {
        var archive: [UInt8] = []
        archive += header("sparse.bin", size: 600, type: "S") { $0[482] = 1 }
        archive += [UInt8](repeating: 0, count: 504) + [1] + [UInt8](repeating: 0, count: 7)  // extension, more follow
        archive += [UInt8](repeating: 0, count: 512)  // last extension
        archive += padded(pattern(600))
        archive += header("after.txt", size: 1) + padded([1])
        let outcome = try readAll(writeFile("sparse.tar", archive + endMarker))
        XCTAssertEqual(outcome.events, ["error unsupported(\"GNU sparse file\")", "member after.txt"])
    }

    // MARK: - Random damage

    func testRandomMutationsNeverCrash() throws {
        var base = try bytes(
            writeTar(
                "base.tar",
                [
                    ("k/000.jpg", pattern(700, seed: 11)), ("k/000.txt", Array("caption".utf8)),
                    (String(repeating: "long/", count: 30) + "001.jpg", pattern(300, seed: 12)),
                    ("k/001.json", Array("{}".utf8)),
                    ("k/002.jpg", []), ("k/002.txt", pattern(1500, seed: 13)),
                ]))
        let root = try fixtures()
        let python = try bytes(root.appendingPathComponent("gnu.tar").path)
        base = Array(base.dropLast(1024)) + python  // a pax member, GNU L/K headers, base-256 uid
        let headerOffsets = stride(from: 0, to: base.count, by: 512).filter { offset in
            checksumMatches(Array(base[offset..<(offset + 512)]))
                && !base[offset..<(offset + 512)].allSatisfy { $0 == 0 }
        }
        XCTAssertGreaterThan(headerOffsets.count, 8)
        var rng = SplitMix64(seed: 2024)
        var outcomes = [0, 0]  // runs that ended with errors, without
        for round in 0..<300 {
            var archive = base
            switch round % 4 {
            case 0:
                // Random bytes anywhere.
                for _ in 0..<(1 + Int(rng.next() % 8)) {
                    archive[Int(rng.next() % UInt64(archive.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 1, 2:
                // Header fields changed with the checksum fixed, so that the parser sees them.
                let offset = headerOffsets[Int(rng.next() % UInt64(headerOffsets.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let field = [124, 125, 130, 134, 135, 156, 0, 99, 257, 345, 482][Int(rng.next() % 11)]
                    let values: [UInt8] = [
                        0, 0x80, 0xFF, 0x20, UInt8(ascii: "7"), UInt8(ascii: "9"), UInt8(ascii: "x"), UInt8(ascii: "L"),
                        UInt8(ascii: "g"),
                    ]
                    archive[offset + field] =
                        round % 4 == 1
                        ? values[Int(rng.next() % UInt64(values.count))] : UInt8(truncatingIfNeeded: rng.next())
                }
                fixChecksum(&archive, at: offset)
                // Sometimes also damage the pax or long-name data after it.
                if rng.next() % 2 == 0 && offset + 600 < archive.count {
                    archive[offset + 512 + Int(rng.next() % 64)] = UInt8(truncatingIfNeeded: rng.next())
                }
            default:
                // A cut, perhaps followed by garbage.
                archive = Array(archive[..<Int(rng.next() % UInt64(archive.count))])
                if rng.next() % 2 == 0 { archive += pattern(Int(rng.next() % 1500), seed: rng.next()) }
            }
            let tar = try writeFile("m\(round).tar", archive)
            for resynchronize in [false, true] {
                let outcome = try readAll(
                    tar, limit: 1 << 16, resynchronize: resynchronize, chunkSize: 512 * (1 + round % 3))
                outcomes[outcome.errors.isEmpty ? 1 : 0] += 1
                XCTAssertTrue(outcome.members.allSatisfy { $0.data.count <= 1 << 16 })
                for error in outcome.errors { XCTAssertTrue(error.description.hasPrefix(tar + ": offset ")) }
            }
            let samples = try ShardSampleReader(reader: TarReader(path: tar, resynchronize: true))
            var count = 0
            while count < 10_000 {
                do {
                    guard try samples.next() != nil else { break }
                    count += 1
                } catch is TarError { continue }
            }
            XCTAssertLessThan(count, 10_000)
            try FileManager.default.removeItem(atPath: tar)
        }
        XCTAssertGreaterThan(outcomes[0], 100, "most mutations are noticed")
        XCTAssertGreaterThan(outcomes[1], 10, "some leave a readable archive")
    }

    // MARK: - Samples

    func testSampleGroupingFollowsWebdataset() throws {
        let tar = try writeTar(
            "samples.tar",
            [
                ("dir/sub/0001.jpg", [1]), ("dir/sub/0001.TXT", Array("one".utf8)),
                ("dir/sub/0001.json", Array("{}".utf8)),
                ("dir.v2/a.b.c.jpg", [2]), ("dir.v2/a.txt", Array("multi".utf8)),
                ("__key__", [0]), ("README", [0]), ("dir/.hidden.jpg", [0]), ("dir/__meta__.json", [0]), ("dir/", [0]),
                ("b.png", [3]), ("b.png", [4]), ("b.jpg", [5]),
                ("c.txt", Array("only a caption".utf8)),
                ("b.txt", Array("b again, not consecutive".utf8)),
                ("d.", [6]), ("e.jpg", []),
            ])
        let reader = try ShardSampleReader(path: tar)
        var samples: [ShardSample] = []
        while let sample = try reader.next() { samples.append(sample) }
        XCTAssertEqual(samples.map(\.key), ["dir/sub/0001", "dir.v2/a", "b", "c", "b", "d", "e"])
        XCTAssertEqual(samples[0].files.keys.sorted(), ["jpg", "json", "txt"])
        XCTAssertEqual(samples[0].caption, "one")
        XCTAssertEqual(samples[1].files.keys.sorted(), ["b.c.jpg", "txt"])
        XCTAssertEqual(samples[1].imageBytes?.fileExtension, "b.c.jpg")
        XCTAssertEqual(samples[1].imageBytes?.bytes, [2])
        XCTAssertEqual(samples[2].files, ["png": [3], "jpg": [5]], "the first of a duplicate is kept")
        XCTAssertEqual(samples[2].imageBytes?.fileExtension, "jpg", "jpg is preferred to png")
        XCTAssertNil(samples[3].imageBytes)
        XCTAssertNil(samples[3].metadata)
        XCTAssertEqual(samples[5].files, ["": [6]])
        XCTAssertEqual(samples[6].files, ["jpg": []])
        XCTAssertEqual(samples[0].offset, 0)
        XCTAssertEqual(samples.map(\.shard), Array(repeating: tar, count: 7))
        XCTAssertEqual(reader.skippedCounts, [.metadata: 2, .noExtension: 2, .hidden: 1, .duplicateExtension: 1])
        XCTAssertEqual(reader.skippedCount, 6)
        XCTAssertEqual(
            reader.skippedMembers.map(\.name),
            ["__key__", "README", "dir/.hidden.jpg", "dir/__meta__.json", "dir/", "b.png"])
    }

    func testSampleReaderErrorOrder() throws {
        let members: [(String, [UInt8])] = [
            ("k1.txt", [1]), ("k1.jpg", pattern(3000)), ("k1.json", [2]),
            ("k2.txt", [3]), ("k2.jpg", [4]),
            ("k3.txt", [5]), ("k3.jpg", [6]),
        ]
        var archive = try bytes(writeTar("e.tar", members))
        // k1.jpg is over the limit: a member error at once, k1 goes on without it.
        let tooLarge = try ShardSampleReader(path: writeFile("e1.tar", archive), memberSizeLimit: 1000)
        XCTAssertThrowsError(try tooLarge.next()) { XCTAssertEqual(($0 as? TarError)?.isFatal, false) }
        XCTAssertEqual(try tooLarge.next()?.files, ["txt": [1], "json": [2]])
        XCTAssertEqual(try tooLarge.next()?.key, "k2")
        XCTAssertEqual(try tooLarge.next()?.key, "k3")
        XCTAssertNil(try tooLarge.next())
        // A corrupt header in k3: k2 first, then the error; resynchronising finds k3.jpg.
        let k3 = 512 * (2 + 7 + 2 + 2 + 2)
        archive[k3 + 3] ^= 1
        let corrupt = try writeFile("e2.tar", archive)
        for resynchronize in [false, true] {
            let reader = try ShardSampleReader(path: corrupt, resynchronize: resynchronize)
            XCTAssertEqual(try reader.next()?.key, "k1")
            XCTAssertEqual(try reader.next()?.files, ["txt": [3], "jpg": [4]])
            XCTAssertThrowsError(try reader.next()) { XCTAssertEqual(($0 as? TarError)?.offset, k3) }
            XCTAssertEqual(try reader.next()?.files, resynchronize ? ["jpg": [6]] : nil)
            XCTAssertNil(try reader.next())
        }
    }

    func testKeyAndExtension() {
        func split(_ name: String) -> [String]? {
            ShardSample.keyAndExtension(of: name).map { [$0.key, $0.fileExtension] }
        }
        XCTAssertEqual(split("a.jpg"), ["a", "jpg"])
        XCTAssertEqual(split("a.b.c.jpg"), ["a", "b.c.jpg"])
        XCTAssertEqual(split("x/y.z/a.b.JPG"), ["x/y.z/a", "b.jpg"])
        XCTAssertEqual(split("./000.txt"), ["./000", "txt"])
        XCTAssertEqual(split("Key.Json"), ["Key", "json"])
        XCTAssertEqual(split("é/ü.ÄB"), ["é/ü", "äb"])
        XCTAssertNil(split("noext"))
        XCTAssertNil(split("dir.x/noext"))
        XCTAssertNil(split(".hidden"))
        XCTAssertNil(split("dir/"))
        XCTAssertNil(split(""))
    }

    func testCaptionDecodingAndImagePreference() {
        let sample = ShardSample(
            key: "k", shard: "s.tar",
            files: ["txt": [0x63, 0x61, 0xFF, 0x74], "webp": [1], "png": [2], "en.json": [3], "z.json": [4]])
        XCTAssertEqual(sample.caption, "ca\u{FFFD}t")
        XCTAssertEqual(sample.imageBytes?.fileExtension, "png")
        XCTAssertEqual(sample.metadata, [3], "dotted extensions in sorted order")
        XCTAssertNil(ShardSample(key: "k", shard: "s", files: [:]).caption)
    }

    // MARK: - Shard patterns

    func testBraceExpansion() throws {
        XCTAssertEqual(
            try expandShardPattern("data/{00000..00003}.tar"),
            ["data/00000.tar", "data/00001.tar", "data/00002.tar", "data/00003.tar"])
        XCTAssertEqual(try expandShardPattern("data/{00098..00101}.tar").first, "data/00098.tar")
        XCTAssertEqual(try expandShardPattern("data/{00098..00101}.tar").last, "data/00101.tar")
        XCTAssertEqual(try expandShardPattern("{0..10}").count, 11)
        XCTAssertEqual(try expandShardPattern("{8..10}"), ["8", "9", "10"])
        XCTAssertEqual(try expandShardPattern("{08..10}"), ["08", "09", "10"])
        XCTAssertEqual(try expandShardPattern("{1..010}").first, "001")
        XCTAssertEqual(try expandShardPattern("{3..1}"), ["3", "2", "1"])
        XCTAssertEqual(try expandShardPattern("{0..10..5}"), ["0", "5", "10"])
        XCTAssertEqual(try expandShardPattern("{a..c}"), ["a", "b", "c"])
        XCTAssertEqual(try expandShardPattern("{a,b}/{1..2}.tar"), ["a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"])
        XCTAssertEqual(try expandShardPattern("x{a,{b,c}d}y"), ["xay", "xbdy", "xcdy"])
        XCTAssertEqual(
            try expandShardPattern("{train,val}-{000..001}.tar"),
            ["train-000.tar", "train-001.tar", "val-000.tar", "val-001.tar"])
        XCTAssertEqual(try expandShardPattern("{a,}"), ["a", ""])
        XCTAssertEqual(try expandShardPattern("plain/path.tar"), ["plain/path.tar"])
        XCTAssertEqual(try expandShardPattern("{-1..1}"), ["-1", "0", "1"])
        for bad in [
            "{5..1x}", "{a}", "{}", "a{b", "a}b", "{1..2..0}", "{1..a}", "{0..99999999999}", "{0..999}{0..9999}", "",
        ] {
            XCTAssertThrowsError(try expandShardPattern(bad), bad) { error in
                XCTAssertTrue(error is ShardPatternError, "\(error)")
                XCTAssertTrue("\(error)".contains("shard pattern \"\(bad)\""), "\(error)")
            }
        }
    }

    func testShardLists() throws {
        XCTAssertEqual(
            try expandShardList("a/{0..1}.tar::b/x.tar c.tar\n\td/{p, q}.tar"),
            ["a/0.tar", "a/1.tar", "b/x.tar", "c.tar", "d/p.tar", "d/ q.tar"])
        XCTAssertEqual(try expandShardList(" one.tar "), ["one.tar"])
        XCTAssertThrowsError(try expandShardList(" :: "))
        XCTAssertThrowsError(try expandShardList("ok.tar::{5..1x}"))
    }
}

/// A small deterministic generator for test data.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
