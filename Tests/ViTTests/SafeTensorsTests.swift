import Foundation
import Support
import XCTest

@testable import ViT

final class SafeTensorsTests: XCTestCase {

    /// A file from a header text and data bytes; `declared` overrides the header length field.
    func file(_ header: String, data: [UInt8] = [], declared: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        let n = declared ?? UInt64(h.count)
        return (0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xff) } + h + data
    }

    func floats(_ values: [Float]) -> [UInt8] {
        values.flatMap { v -> [UInt8] in
            let b = v.bitPattern
            return [
                UInt8(b & 0xff), UInt8((b >> 8) & 0xff), UInt8((b >> 16) & 0xff), UInt8(b >> 24),
            ]
        }
    }

    /// Decoding must throw a SafeTensorsError whose problem mentions `expected`.
    func assertRejects(
        _ bytes: [UInt8], _ expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try SafeTensors.decode(bytes, source: "bad.safetensors")
            XCTFail("accepted a malformed file (expected '\(expected)')", file: file, line: line)
        } catch let e as SafeTensorsError {
            XCTAssertEqual(e.path, "bad.safetensors", file: file, line: line)
            XCTAssert(
                e.problem.contains(expected), "'\(e.problem)' does not mention '\(expected)'",
                file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    func sample() -> SafeTensors {
        SafeTensors(
            tensors: [
                "b.weight": FloatTensor(shape: [2, 3], values: [1, -2, 3.5, 0, .pi, -1e-30]),
                "a": FloatTensor(shape: [], values: [42]),
                "empty": FloatTensor(shape: [0, 3], values: []),
                "c.bias": FloatTensor(shape: [5], values: [1, 2, 3, 4, 5]),
            ],
            metadata: ["format": "pt", "note": "quote \" and \\ and \n"])
    }

    func testRoundTripThroughFile() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/t.safetensors"
        let st = sample()
        try st.write(path: path)
        let back = try SafeTensors.read(path: path)
        XCTAssertEqual(back, st)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        XCTAssertEqual(Array(bytes), st.encoded())
        XCTAssertEqual(try SafeTensors.decode(st.encoded()), st)
        // header padded with spaces to a multiple of 8, no temporary file left behind
        let n = Int(bytes[0]) | Int(bytes[1]) << 8
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["t.safetensors"])
        // overwrite atomically
        var st2 = st
        st2.tensors["a"] = FloatTensor(shape: [1], values: [7])
        try st2.write(path: path)
        XCTAssertEqual(try SafeTensors.read(path: path), st2)
    }

    /// Rewriting the files Python's safetensors wrote gives the same bytes.
    func testRewritesPythonFilesByteForByte() throws {
        let root = try fixturesRoot()
        for name in [
            "kernels.safetensors", "cls_uniform/model.safetensors",
            "avg_scaled/reference.safetensors", "awkward/model.safetensors",
        ] {
            let path = root + "/" + name
            let original = Array(try XCTUnwrap(FileManager.default.contents(atPath: path)))
            let st = try SafeTensors.read(path: path)
            XCTAssertEqual(st.encoded(), original, name)
        }
        let model = try SafeTensors.read(path: root + "/cls_uniform/model.safetensors")
        XCTAssertEqual(model.metadata, ["format": "pt"])
        XCTAssertEqual(model["pos_embed"]?.shape, [1, 17, 32])
    }

    func testTruncated() {
        assertRejects([], "truncated")
        assertRejects([1, 0, 0], "truncated")
        let good = sample().encoded()
        // header length claims more than the file holds
        assertRejects(Array(good.prefix(20)), "truncated")
        // data cut short: the last tensor runs past the end
        assertRejects(Array(good.dropLast(4)), "past the end")
        assertRejects(file("{}", declared: 0), "too short")
    }

    func testHeaderTooLong() {
        assertRejects(file("{}", declared: 200_000_000), "exceeds the limit")
        assertRejects(file("{}", declared: UInt64.max), "exceeds the limit")
        assertRejects(file("{}", declared: 1000), "truncated")
    }

    func testBadJSON() {
        assertRejects(file("{"), "too short")
        assertRejects(file("{\"a\""), "not valid JSON")
        assertRejects(file("{\"a\":}"), "not valid JSON")
        assertRejects(file("[1, 2]"), "not a JSON object")
        assertRejects(file("{} x"), "not valid JSON")
        assertRejects(file("{\"a\": {\"dtype\": \"F32\",}}"), "not valid JSON")
        assertRejects(file("{\"a\": nul}"), "not valid JSON")
        assertRejects(file("{\"a\": 01}"), "not valid JSON")
        assertRejects(file("{\"a\": \"\\ud800\"}"), "not valid JSON")
        assertRejects(file(String(repeating: "[", count: 1000)), "not valid JSON")
        var invalidUTF8 = file("{\"xx\": 1}")
        invalidUTF8[10] = 0xff
        assertRejects(invalidUTF8, "UTF-8")
        assertRejects(file("{\"a\": 3}"), "not an object")
        assertRejects(file("{\"__metadata__\": {\"k\": 1}}"), "not a string")
        assertRejects(
            file("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
            "no dtype")
        assertRejects(
            file("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]),
            "no shape")
        assertRejects(
            file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", data: [0, 0, 0, 0]),
            "no data_offsets")
        assertRejects(
            file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}"),
            "shape")
        assertRejects(
            file("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}"),
            "shape")
        assertRejects(
            file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}"),
            "data_offsets")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"x\": 1}}"),
            "unknown field")
    }

    func testWrongDtype() {
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                data: [0, 0, 0, 0]),
            "dtype F16; only F32")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                data: [0, 0, 0, 0]),
            "dtype BF16")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                data: [0, 0, 0, 0]),
            "unknown dtype 'Q4'")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": 7, \"shape\": [2], \"data_offsets\": [0, 4]}}",
                data: [0, 0, 0, 0]),
            "dtype")
    }

    func testOffsets() {
        let data = floats([1, 2, 3, 4])
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}",
                data: data),
            "past the end")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}",
                data: data),
            "end before begin")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                    + " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                data: data),
            "overlap")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                    + " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                data: data),
            "overlap")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                    + " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                data: data),
            "duplicate tensor name 'a'")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 99999999999999999999]}}",
                data: data),
            "data_offsets")
        // a gap between tensors is tolerated
        let ok = file(
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                + " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [12, 16]}}",
            data: data)
        XCTAssertEqual(try SafeTensors.decode(ok)["b"]?.values, [4])
    }

    func testShapeMismatch() {
        let data = floats([1, 2, 3, 4])
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 16]}}",
                data: data),
            "needs 12 bytes")
        assertRejects(
            file(
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 16]}}",
                data: data),
            "too large")
    }

    func testFileErrorsNameTheFile() throws {
        let dir = try temporaryDirectory(self)
        XCTAssertThrowsError(try SafeTensors.read(path: dir + "/missing.safetensors")) {
            XCTAssert("\($0)".contains("missing.safetensors: cannot open"), "\($0)")
        }
        XCTAssertThrowsError(try SafeTensors.read(path: dir)) {
            XCTAssert("\($0)".contains("not a regular file"), "\($0)")
        }
        let truncated = dir + "/truncated.safetensors"
        _ = FileManager.default.createFile(
            atPath: truncated, contents: Data(sample().encoded().dropLast(3)))
        XCTAssertThrowsError(try SafeTensors.read(path: truncated)) {
            XCTAssert("\($0)".hasPrefix(truncated + ": "), "\($0)")
            XCTAssert("\($0)".contains("past the end"), "\($0)")
        }
    }

    /// Random truncations and byte flips of a valid file: decoded or rejected, never a crash.
    func testFuzzedFilesNeverCrash() {
        let good = sample().encoded()
        var rng = SeededGenerator(seed: 9)
        var rejected = 0
        for trial in 0..<3000 {
            var bytes = good
            if trial % 3 == 0 {
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            } else {
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    bytes[i] = trial % 2 == 0 ? UInt8(rng.next() & 0xff) : bytes[i] ^ 0x01
                }
            }
            do { _ = try SafeTensors.decode(bytes) } catch is SafeTensorsError {
                rejected += 1
            } catch {
                XCTFail("unexpected error \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
    }
}
