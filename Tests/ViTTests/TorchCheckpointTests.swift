// torch.save checkpoints and pickled count tables (issue 22): values read here equal the ones
// PyTorch wrote (Fixtures/make_torch_fixtures.py), and every hostile archive or pickle, every
// truncation and seeded mutation of a valid one, ends in a one-line TorchCheckpointError (or a
// correct read), never a trap and never anything executed.
import Foundation
import Support
import TestSupport
import XCTest

@testable import ViT

final class TorchCheckpointTests: XCTestCase {

    func fixture(_ name: String) throws -> String {
        try fixturesRoot() + "/torch/" + name
    }

    func bytes(_ name: String) throws -> [UInt8] {
        Array(try XCTUnwrap(FileManager.default.contents(atPath: try fixture(name))))
    }

    /// Reading must throw a one-line TorchCheckpointError naming `path` and mentioning
    /// `expected`.
    func assertFails(
        _ expected: String, path: String, file: StaticString = #filePath, line: UInt = #line,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            XCTFail("accepted (expected '\(expected)')", file: file, line: line)
        } catch let e as TorchCheckpointError {
            let text = e.description
            XCTAssert(text.hasPrefix(path + ": "), "'\(text)' does not name \(path)", file: file, line: line)
            XCTAssert(
                expected.isEmpty || text.contains(expected), "'\(text)' does not mention '\(expected)'",
                file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "'\(text)' is not one line", file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    // MARK: valid files

    func testStateDictMatchesPyTorch() throws {
        let expected = try SafeTensors.read(path: try fixture("expected.safetensors"))
        let sd = try TorchCheckpoint.read(path: try fixture("state.pt"))
        XCTAssertEqual(sd.source, "top level")
        XCTAssertEqual(
            sd.tensors.map(\.name),
            ["f32", "f16", "bf16", "f64", "bn.num_batches_tracked", "transposed", "shared.a", "shared.b", "param"])
        XCTAssertEqual(
            sd.tensors.map(\.dtype),
            ["float32", "float16", "bfloat16", "float64", "int64", "float32", "float32", "float32", "float32"])
        for t in sd.tensors {
            let want = try XCTUnwrap(expected["state/" + t.name], t.name)
            XCTAssertEqual(t.shape, want.shape, t.name)
            // Exact: float16/bfloat16 widen exactly, float64 and int64 round as torch's .float() does.
            XCTAssertEqual(t.values.values.map(\.bitPattern), want.values.map(\.bitPattern), t.name)
        }
        let byName = Dictionary(uniqueKeysWithValues: sd.tensors.map { ($0.name, $0) })
        XCTAssertEqual(byName["transposed"]?.shape, [4, 3])
        XCTAssertEqual(byName["bn.num_batches_tracked"]?.shape, [])
        XCTAssertEqual(byName["bn.num_batches_tracked"]?.values.values, [12345])
        XCTAssertEqual(byName["shared.a"]?.values.values, [-0.5, -0.25, 0])
        XCTAssertEqual(byName["shared.b"]?.values.values, [0.5, 0.75, 1, 1.25])
    }

    func testWrappedStateDictWithMetadata() throws {
        let expected = try SafeTensors.read(path: try fixture("expected.safetensors"))
        let sd = try TorchCheckpoint.read(path: try fixture("wrapped.pt"))
        XCTAssertEqual(sd.source, "'state_dict'")
        let names = expected.names.filter { $0.hasPrefix("wrapped/") }.map { String($0.dropFirst(8)) }
        XCTAssertEqual(Set(sd.tensors.map(\.name)), Set(names))
        XCTAssertEqual(sd.tensors.first?.name, "0.weight")
        for t in sd.tensors {
            XCTAssertEqual(t.values, expected["wrapped/" + t.name], t.name)
        }
        XCTAssertEqual(sd.tensors.first { $0.name == "1.num_batches_tracked" }?.dtype, "int64")
    }

    func testVocabularyCountsBothProtocols() throws {
        let tsv = String(decoding: try bytes("vocab.tsv"), as: UTF8.self)
        let want = tsv.split(separator: "\n").map { line -> (String, Int) in
            let parts = line.split(separator: "\t")
            return (String(parts[0]), Int(parts[1])!)
        }
        XCTAssertEqual(want.count, 1203)
        for name in ["vocab.pkl", "vocab_p2.pkl"] {
            let got = try TorchCheckpoint.readPickledCounts(path: try fixture(name))
            XCTAssertEqual(got.map(\.key), want.map(\.0), name)
            XCTAssertEqual(got.map(\.count), want.map(\.1), name)
        }
    }

    // MARK: refused files

    func testLegacyFormatRefused() throws {
        let path = try fixture("legacy.pt")
        assertFails("legacy torch.save format (before PyTorch 1.6) is not supported; re-save it", path: path) {
            _ = try TorchCheckpoint.read(path: path)
        }
    }

    func testHostileArchives() throws {
        let cases: [(String, String)] = [
            ("malicious.pt", "byte 2 (GLOBAL): global 'os.system' is not allowed"),
            ("reduce_storage.pt", "(REDUCE): calling 'torch.FloatStorage' is not allowed"),
            (
                "offset_past_end.pt",
                "tensor 'blocks.0.qkv.weight': storage offset 900 + extent 1200 exceeds its storage of 1000 float32 elements"
            ),
            ("shape_overflow.pt", "tensor 'w': shape [1099511627776, 1099511627776] is too large"),
            ("shape_vs_storage.pt", "tensor 'w': storage offset 0 + extent 2000 exceeds its storage of 1000"),
            ("storage_size.pt", "storage '0' (torch.FloatStorage) of 1000 elements needs 4000 bytes but its entry holds 3996"),
            ("negative_stride.pt", "tensor 'w': negative stride in [-1]"),
            ("missing_storage.pt", "storage '7': the archive has no entry 'archive/data/7'"),
            ("compressed.pt", "entry 'archive/data/0' is compressed (method 8); only stored entries"),
            ("big_endian.pt", "byteorder is 'big'; only little-endian checkpoints are supported"),
            ("duplicate_name.pt", "tensor 'w' appears twice"),
        ]
        for (name, expected) in cases {
            let path = try fixture(name)
            assertFails(expected, path: path) { _ = try TorchCheckpoint.read(path: path) }
        }
        // A checkpoint is not a count table, and the reverse.
        let state = try fixture("state.pt")
        assertFails("is a zip archive", path: state) { _ = try TorchCheckpoint.readPickledCounts(path: state) }
        let vocab = try fixture("vocab.pkl")
        assertFails("legacy torch.save format", path: vocab) { _ = try TorchCheckpoint.read(path: vocab) }
        let missing = try fixture("no-such-file.pt")
        assertFails("cannot open", path: missing) { _ = try TorchCheckpoint.read(path: missing) }
    }

    func testTruncatedArchives() throws {
        let whole = try bytes("state.pt")
        let n = whole.count
        let lengths = [0, 1, 4, 21, 22, 30, 100, n / 2, n - 200, n - 99, n - 98, n - 23, n - 22, n - 21, n - 1]
        for length in lengths {
            let cut = Array(whole.prefix(length))
            assertFails("not a zip archive", path: "cut.pt") {
                _ = try cut.withUnsafeBytes { try TorchCheckpoint.read(bytes: $0, path: "cut.pt") }
            }
        }
        // The end records intact but bytes missing before them: every offset is checked.
        for (start, count) in [(0, 1), (0, 64), (100, 50), (n / 2, 8), (n - 200, 30), (n - 120, 20)] {
            var holed = whole
            holed.removeSubrange(start..<(start + count))
            assertFails("", path: "holed.pt") {
                _ = try holed.withUnsafeBytes { try TorchCheckpoint.read(bytes: $0, path: "holed.pt") }
            }
        }
    }

    func testCountTablesRefuseWhatIsNotCounts() {
        let cases: [([UInt8], String)] = [
            // {'a': -1}
            ([0x80, 0x02, 0x7D, 0x58, 1, 0, 0, 0, 0x61, 0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x73, 0x2E], "'a' has a negative count -1"),
            // {'a': 'b'}
            ([0x80, 0x02, 0x7D, 0x58, 1, 0, 0, 0, 0x61, 0x8C, 1, 0x62, 0x73, 0x2E], "'a' is a str, not an int"),
            // {'a': 1, 'a': 2}
            ([0x80, 0x02, 0x7D, 0x28, 0x8C, 1, 0x61, 0x4B, 1, 0x8C, 1, 0x61, 0x4B, 2, 0x75, 0x2E], "'a' appears twice"),
            // [1]
            ([0x80, 0x02, 0x5D, 0x4B, 1, 0x61, 0x2E], "holds a list of 1, not a dict"),
            // builtins.eval
            ([0x80, 0x02] + Array("cbuiltins\neval\n".utf8) + [0x2E], "byte 2 (GLOBAL): global 'builtins.eval' is not allowed"),
            // a string that claims 1000 bytes
            ([0x80, 0x02, 0x58, 0xE8, 0x03, 0, 0, 0x2E], "length 1000 exceeds the 1 bytes that remain"),
            // a key with a newline: still a one-line error
            ([0x80, 0x02, 0x7D, 0x58, 2, 0, 0, 0, 0x0A, 0x61, 0x4E, 0x73, 0x2E], "'\\na' is None, not an int"),
        ]
        for (bytes, expected) in cases {
            assertFails(expected, path: "counts.pkl") {
                _ = try bytes.withUnsafeBytes { try TorchCheckpoint.readPickledCounts(bytes: $0, path: "counts.pkl") }
            }
        }
    }

    /// A hand-made archive whose sizes and offset live only in ZIP64 fields (as torch writes for
    /// files over 4 GiB): the central directory's 0xFFFFFFFF values are replaced by the extra
    /// field's, and the ZIP64 end record gives the directory.
    func testZip64FieldsAreRead() throws {
        var b: [UInt8] = []
        func le(_ v: UInt64, _ width: Int) { for i in 0..<width { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        let name = Array("a/x".utf8)
        let data = Array("hello".utf8)
        le(0x0403_4b50, 4); le(45, 2); le(0, 2); le(0, 2); le(0, 4); le(0, 4)
        le(0xFFFF_FFFF, 4); le(0xFFFF_FFFF, 4); le(UInt64(name.count), 2); le(0, 2)
        b += name + data
        let cd = b.count
        le(0x0201_4b50, 4); le(45, 2); le(45, 2); le(0, 2); le(0, 2); le(0, 4); le(0, 4)
        le(0xFFFF_FFFF, 4); le(0xFFFF_FFFF, 4); le(UInt64(name.count), 2); le(28, 2); le(0, 2)
        le(0, 2); le(0, 2); le(0, 4); le(0xFFFF_FFFF, 4)
        b += name
        le(1, 2); le(24, 2); le(5, 8); le(5, 8); le(0, 8)
        let cdSize = b.count - cd
        let record = b.count
        le(0x0606_4b50, 4); le(44, 8); le(45, 2); le(45, 2); le(0, 4); le(0, 4); le(1, 8); le(1, 8)
        le(UInt64(cdSize), 8); le(UInt64(cd), 8)
        le(0x0706_4b50, 4); le(0, 4); le(UInt64(record), 8); le(1, 4)
        le(0x0605_4b50, 4); le(0, 2); le(0, 2); le(0xFFFF, 2); le(0xFFFF, 2); le(0xFFFF_FFFF, 4); le(0xFFFF_FFFF, 4); le(0, 2)
        try b.withUnsafeBytes { buffer in
            let archive = try ZipArchive(bytes: buffer)
            let entry = try XCTUnwrap(archive.entry("a/x"))
            XCTAssertEqual(entry.uncompressedSize, 5)
            XCTAssertEqual(Array(try archive.data(of: entry)), data)
        }
        // The extra field's size pointing past the end is refused, not trusted.
        b[cd + 46 + name.count + 12] = 0xF0  // the compressed size
        XCTAssertThrowsError(try b.withUnsafeBytes { try ZipArchive(bytes: $0) }) {
            XCTAssert("\($0)".contains("run past the end of the archive"), "\($0)")
        }
    }

    // MARK: the pickle machine

    func read(_ bytes: [UInt8], rules: PickleRules = PickleRules()) throws -> PickleValue {
        try PickleReader(rules: rules).read(bytes)
    }

    func testPickleReaderPlainData() throws {
        // (1, -2, 2**40, -2**63, 0.5, True, None, b'xy') as protocol 2 opcodes.
        var p: [UInt8] = [0x80, 0x02, 0x28, 0x4B, 1, 0x4A, 0xFE, 0xFF, 0xFF, 0xFF]
        p += [0x8A, 6, 0, 0, 0, 0, 0, 1]  // 2**40
        p += [0x8A, 8, 0, 0, 0, 0, 0, 0, 0, 0x80]  // -2**63
        p += [0x47, 0x3F, 0xE0, 0, 0, 0, 0, 0, 0]  // 0.5
        p += [0x88, 0x4E, 0x43, 2, 0x78, 0x79, 0x74, 0x2E]
        XCTAssertEqual(
            try read(p),
            .tuple([.int(1), .int(-2), .int(1 << 40), .int(.min), .float(0.5), .bool(true), .none, .bytes([0x78, 0x79])]))
        // LONG1 with a negative one-byte value, and INT text.
        XCTAssertEqual(try read([0x80, 0x02, 0x8A, 1, 0xFF, 0x2E]), .int(-1))
        XCTAssertEqual(try read([0x80, 0x02] + Array("I-42\n".utf8) + [0x2E]), .int(-42))
        // A list memoized, then filled: BINGET sees the filled list, as in Python.
        let memo: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0, 0x4B, 7, 0x61, 0x30, 0x68, 0, 0x2E]
        XCTAssertEqual(try read(memo), .list([.int(7)]))
        // A list that contains itself sees its earlier contents: no cycle.
        let cycle: [UInt8] = [0x80, 0x02, 0x5D, 0x94, 0x68, 0, 0x61, 0x2E]
        XCTAssertEqual(try read(cycle), .list([.list([])]))
        // A reused memo key does not receive a later change to the container stored before.
        let reuse: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0, 0x7D, 0x71, 0, 0x30, 0x4B, 1, 0x61, 0x30, 0x68, 0, 0x2E]
        XCTAssertEqual(try read(reuse), .dict([]))
    }

    func testPickleReaderRefusals() {
        let cases: [([UInt8], String)] = [
            ([0x80, 0x06, 0x2E], "byte 0 (PROTO): pickle protocol 6 is not supported"),
            ([0x80, 0x02, 0x29, 0x29, 0x81, 0x2E], "byte 4 (NEWOBJ): calling a tuple of 0 is not allowed"),
            ([0x80, 0x02, 0x69, 0x2E], "byte 2 (INST): opcode is not supported"),
            ([0x80, 0x02, 0xFF], "byte 2 (opcode 0xff): opcode is not supported"),
            ([0x80, 0x02, 0x30], "byte 2 (POP): stack underflow"),
            ([0x80, 0x02, 0x4E], "byte 3 (end of data): the pickle ends without STOP"),
            ([0x80, 0x02, 0x68, 5, 0x2E], "byte 2 (BINGET): memo key 5 was never stored"),
            ([0x80, 0x02, 0x8A, 9] + Array(repeating: 0, count: 9) + [0x2E], "integer of 9 bytes is too large"),
            ([0x80, 0x02, 0x8C, 2, 0xC3, 0x28, 0x2E], "string of 2 bytes is not valid UTF-8"),
            ([0x80, 0x02, 0x4E, 0x4E, 0x52, 0x2E], "calling None is not allowed"),
            ([0x80, 0x02, 0x95, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "byte 2 (FRAME): length 18446744073709551615 exceeds"),
            ([0x80, 0x02, 0x4E, 0x4B, 1, 0x61, 0x2E], "APPEND to None, not a list"),
            ([0x80, 0x02, 0x28, 0x4E, 0x75, 0x2E], "byte 4 (SETITEMS): odd number of keys and values"),
        ]
        for (bytes, expected) in cases {
            do {
                _ = try read(bytes)
                XCTFail("accepted (expected '\(expected)')")
            } catch {
                XCTAssert("\(error)".contains(expected), "'\(error)' does not mention '\(expected)'")
            }
        }
        // Nesting is bounded: 200 lists, each appended into the one before.
        let deep: [UInt8] = [0x80, 0x02] + Array(repeating: 0x5D, count: 200) + Array(repeating: 0x61, count: 199) + [0x2E]
        XCTAssertThrowsError(try read(deep)) { XCTAssert("\($0)".contains("nested deeper than 100 levels"), "\($0)") }
        let tuples: [UInt8] = [0x80, 0x02, 0x29] + Array(repeating: 0x85, count: 100_000) + [0x2E]
        XCTAssertThrowsError(try read(tuples)) { XCTAssert("\($0)".contains("nested deeper"), "\($0)") }
    }

    // MARK: fuzzing

    /// Seeded single-byte changes and truncations of the valid fixtures, then multi-edit
    /// mutations: each read succeeds or throws a one-line TorchCheckpointError.
    func testFuzzedCheckpointsAndPicklesNeverTrap() throws {
        var rng = SeededGenerator(seed: 22)
        let checkpoint = try bytes("state.pt")
        let counts = try bytes("vocab.pkl")
        let cases = Fuzz.caseCount(quick: 4000)
        var failures = 0
        func check(_ result: () throws -> Void, _ what: String) {
            do {
                try result()
            } catch let e as TorchCheckpointError {
                failures += 1
                if e.description.contains("\n") { XCTFail("\(what): not one line: \(e)") }
            } catch {
                XCTFail("\(what): unexpected error type \(error)")
            }
        }
        for n in 0..<cases {
            for (name, original) in [("state.pt", checkpoint), ("vocab.pkl", counts)] {
                // The vocabulary is larger: mutate it a quarter as often.
                if name == "vocab.pkl", n % 4 != 0 { continue }
                var bytes = original
                switch n % 3 {
                case 0:
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1:
                    bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &rng)...)
                default:
                    bytes = Fuzz.mutate(bytes, using: &rng)
                }
                check(
                    {
                        try bytes.withUnsafeBytes { buffer in
                            if name == "state.pt" {
                                _ = try TorchCheckpoint.read(bytes: buffer, path: name)
                            } else {
                                _ = try TorchCheckpoint.readPickledCounts(bytes: buffer, path: name)
                            }
                        }
                    }, "\(name) case \(n)")
            }
        }
        XCTAssertGreaterThan(failures, cases / 4)
    }
}
