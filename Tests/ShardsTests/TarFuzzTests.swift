import Foundation
import Imaging
import Support
import TestSupport
import XCTest

@testable import Shards

/// Seeded fuzzing of the streaming tar reader and the sample grouping over it (issue 17): mutated
/// copies of the ustar, pax, GNU and webdataset fixtures (headers, sizes, checksums, pax records,
/// GNU long names, member data) must each end in a clean `TarError` or in members that are
/// really in the file, never a trap, a hang or an allocation beyond the file.
final class TarFuzzTests: XCTestCase {
    func fixtures() throws -> [(String, [UInt8])] {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("tar")
        return try ["ustar.tar", "pax.tar", "gnu.tar", "wds.tar"].map {
            ($0, [UInt8](try Data(contentsOf: root.appendingPathComponent($0))))
        }
    }

    /// Mutations aimed at tar headers: a header field (name, size, checksum, type, pax or GNU
    /// long-name marker) of one 512-byte block overwritten with an edge-case value, or the
    /// generic byte edits of `Fuzz.mutate`.
    func mutateTar(_ input: [UInt8], using rng: inout SeededGenerator) -> [UInt8] {
        guard Bool.random(using: &rng), input.count >= 512 else { return Fuzz.mutate(input, using: &rng) }
        var bytes = input
        let block = Int.random(in: 0..<(input.count / 512), using: &rng) * 512
        // (offset, length) of name, mode, size, mtime, checksum, typeflag, magic, prefix.
        let fields = [(0, 100), (100, 8), (124, 12), (136, 12), (148, 8), (156, 1), (257, 6), (345, 155)]
        let (offset, length) = fields.randomElement(using: &rng)!
        let values: [[UInt8]] = [
            Array("77777777777".utf8), Array("00000000000".utf8), [0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Array("-1".utf8), Array("x".utf8),
            Array("L".utf8), Array("K".utf8), Array("g".utf8), Array("5".utf8), Array(String(repeating: "a", count: 100).utf8),
            Array("99999999999 ".utf8), [0], Array(Fuzz.interestingNumbers.randomElement(using: &rng)!.utf8),
        ]
        let value = values.randomElement(using: &rng)!
        for i in 0..<length where block + offset + i < bytes.count {
            bytes[block + offset + i] = i < value.count ? value[i] : 0
        }
        return bytes
    }

    func testMutatedTarsEndInCleanErrorsOrRealMembers() throws {
        let fixtures = try fixtures()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tarfuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/case.tar"
        var rng = SeededGenerator(seed: 17)
        var outcomes: [String: Int] = [:]
        for n in 0..<Fuzz.caseCount(quick: 600) {
            let (name, original) = fixtures[n % fixtures.count]
            let bytes = mutateTar(original, using: &rng)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            // Members: each a run of bytes of the file, after its header.
            let reader = try TarReader(path: path, resynchronize: n % 3 == 0, chunkSize: 512 * (1 + n % 4))
            var steps = 0
            while true {
                steps += 1
                // Every step consumes at least one block, so more steps than blocks is a loop.
                guard steps <= bytes.count / 512 + 4 else { return XCTFail("case \(n) (\(name)): more members than blocks") }
                let member: TarMember?
                do {
                    member = try reader.next()
                } catch let error as TarError {
                    XCTAssertFalse(error.description.isEmpty, "case \(n)")
                    XCTAssertTrue(error.description.hasPrefix(path), "case \(n): \(error)")
                    outcomes["error", default: 0] += 1
                    if error.isFatal { break }
                    continue
                }
                guard let member else { break }
                outcomes["member", default: 0] += 1
                XCTAssertTrue(member.offset >= 0 && member.offset + 512 + member.data.count <= bytes.count,
                              "case \(n) (\(name)): member \(member.name) at \(member.offset) of \(member.data.count) bytes past the end")
                if !member.data.isEmpty, member.offset + 512 <= bytes.count {
                    XCTAssertNotNil(bytes[(member.offset + 512)...].firstRange(of: member.data),
                                    "case \(n) (\(name)): data of \(member.name) is not in the file")
                }
            }
            // The sample grouping over the same bytes ends as cleanly.
            let samples = try ShardSampleReader(path: path)
            steps = 0
            while true {
                steps += 1
                guard steps <= bytes.count / 512 + 4 else { return XCTFail("case \(n) (\(name)): more samples than blocks") }
                do {
                    guard let sample = try samples.next() else { break }
                    XCTAssertFalse(sample.key.isEmpty, "case \(n)")
                    XCTAssertLessThanOrEqual(sample.files.values.reduce(0) { $0 + $1.count }, bytes.count, "case \(n)")
                } catch let error as TarError {
                    XCTAssertFalse(error.description.isEmpty, "case \(n)")
                    if error.isFatal { break }
                }
            }
        }
        // Both outcomes happen, so the mutants reach past the first header.
        XCTAssertGreaterThan(outcomes["error"] ?? 0, 0, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["member"] ?? 0, 0, "\(outcomes)")
    }
}
