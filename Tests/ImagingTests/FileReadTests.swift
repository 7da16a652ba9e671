import Dispatch
import Support
import Foundation
import Imaging
import TestSupport
import XCTest

/// Reading untrusted image paths (regular files only, with a size cap) and replacing files
/// atomically without following anything planted in the folder (issue 17).
final class FileReadTests: ScratchDirectoryTestCase {
    /// Runs `body` on another thread and fails (instead of hanging the suite) when it has not
    /// returned within a generous bound.
    func returnsPromptly<T: Sendable>(_ what: String, _ body: @escaping @Sendable () -> T) -> T? {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: T?
        Thread.detachNewThread {
            result = body()
            done.signal()
        }
        guard done.wait(timeout: .now() + 30) == .success else {
            XCTFail("\(what) did not return within 30 s")
            return nil
        }
        return result
    }

    func assertRefused(_ path: String, maxBytes: Int = defaultMaxImageFileBytes, _ kind: ImageError.Kind, _ message: String, line: UInt = #line) {
        let outcome = returnsPromptly(path) { () -> Result<[UInt8], ImageError> in
            do { return .success(try readFileBytes(path, maxBytes: maxBytes)) } catch let error as ImageError {
                return .failure(error)
            } catch {
                return .failure(ImageError(.invalidArgument, source: "", message: "unexpected \(error)"))
            }
        }
        guard let outcome else { return }
        switch outcome {
        case .success(let bytes): XCTFail("\(path): read \(bytes.count) bytes instead of refusing", line: line)
        case .failure(let error):
            XCTAssertEqual(error.kind, kind, "\(error)", line: line)
            XCTAssertEqual(error.source, path, line: line)
            XCTAssertEqual(error.description, "\(path): \(message)", line: line)
        }
    }

    func testDevZeroIsRefusedWithoutReading() {
        assertRefused("/dev/zero", .notRegularFile, "is a character device, not a regular file")
    }

    func testFIFOIsRefusedWithoutHanging() throws {
        let fifo = directory + "/pipe.jpg"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0, String(cString: strerror(errno)))
        // No writer ever opens it: a blocking open would wait forever.
        assertRefused(fifo, .notRegularFile, "is a FIFO, not a regular file")
    }

    func testDirectoryIsRefused() {
        assertRefused(directory, .notRegularFile, "is a directory, not a regular file")
    }

    func testSparseFilesOverTheCapAreRefusedFromTheirSize() throws {
        // 300 MiB announced, nothing stored: over the 256 MiB default.
        let sparse = directory + "/huge.png"
        XCTAssertTrue(FileManager.default.createFile(atPath: sparse, contents: nil))
        XCTAssertEqual(truncate(sparse, off_t(300 << 20)), 0)
        assertRefused(sparse, .fileTooLarge, "file of 300 MiB is over the limit of 256 MiB")
        // A terabyte announced is refused just as fast.
        XCTAssertEqual(truncate(sparse, off_t(1) << 40), 0)
        assertRefused(sparse, .fileTooLarge, "file of 1024.0 GiB is over the limit of 256 MiB")
    }

    func testTheCapIsInclusiveAndRaisable() throws {
        let path = directory + "/exact.bin"
        let bytes = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try readFileBytes(path, maxBytes: 4096), bytes)
        assertRefused(path, maxBytes: 4095, .fileTooLarge, "file of 4096 bytes is over the limit of 4095 bytes")
        XCTAssertEqual(try SafeFile.read(path, maxBytes: 1 << 40), bytes)
    }

    func testSymlinkToARegularFileIsFollowed() throws {
        let target = directory + "/real.jpg", link = directory + "/link.jpg"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        XCTAssertEqual(try readFileBytes(link), [1, 2, 3])
        let toDevice = directory + "/zero.jpg"
        try FileManager.default.createSymbolicLink(atPath: toDevice, withDestinationPath: "/dev/zero")
        assertRefused(toDevice, .notRegularFile, "is a character device, not a regular file")
    }

    func testMissingFileIsAnIOError() {
        assertRefused(directory + "/none.jpg", .io, "cannot open: No such file or directory")
    }

    // MARK: - Atomic writes

    /// Files in the folder besides `except`.
    func leftovers(except: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { !except.contains($0) }
    }

    func testSymlinkAtTheTargetIsReplacedNotWrittenThrough() throws {
        let outside = directory + "-outside"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: outside))
        defer { unlink(outside) }
        let target = directory + "/labels.bin"
        try FileManager.default.createSymbolicLink(atPath: target, withDestinationPath: outside)
        try SafeFile.writeAtomically(target, bytes: Array("new".utf8))
        XCTAssertEqual(try String(contentsOfFile: outside, encoding: .utf8), "precious")
        let attributes = try FileManager.default.attributesOfItem(atPath: target)
        XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeRegular)
        XCTAssertEqual(try SafeFile.read(target, maxBytes: 100), Array("new".utf8))
        XCTAssertEqual(try leftovers(except: ["labels.bin"]), [])
    }

    func testPlantedTemporaryNamesAreNeitherFollowedNorReused() throws {
        let outside = directory + "-planted"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: outside))
        defer { unlink(outside) }
        let target = directory + "/model.safetensors"
        // The names the old writers used (PID-based and fixed), planted as symlinks.
        let planted = [
            "model.safetensors.tmp-\(getpid())", "model.safetensors.tmp", ".model.safetensors.tmp",
            ".model.safetensors.0000000000000000.tmp",
        ]
        for name in planted {
            try FileManager.default.createSymbolicLink(atPath: directory + "/" + name, withDestinationPath: outside)
        }
        for round in 0..<20 {
            try SafeFile.writeAtomically(target, bytes: Array("round \(round)".utf8))
            XCTAssertEqual(try SafeFile.read(target, maxBytes: 100), Array("round \(round)".utf8))
        }
        XCTAssertEqual(try String(contentsOfFile: outside, encoding: .utf8), "precious")
        XCTAssertEqual(try leftovers(except: Set(planted + ["model.safetensors"])), [])
    }

    func testTemporaryNamesAreRandomAndHidden() throws {
        // Every write leaves its name behind when the body fails, so the names can be seen.
        var names = Set<String>()
        struct Stop: Error {}
        for _ in 0..<16 {
            XCTAssertThrowsError(try SafeFile.writeAtomically(directory + "/x.bin") { sink in
                try [UInt8](repeating: 7, count: 10).withUnsafeBytes { try sink($0) }
                names.formUnion(try self.leftovers(except: []))
                throw Stop()
            }) { XCTAssertTrue($0 is Stop, "\($0)") }
        }
        XCTAssertEqual(names.count, 16)
        for name in names {
            XCTAssertTrue(name.hasPrefix(".x.bin.") && name.hasSuffix(SafeFile.temporarySuffix), name)
            XCTAssertEqual(name.count, ".x.bin.".count + 16 + SafeFile.temporarySuffix.count, name)
        }
        // A failed body leaves neither the temporary file nor a target.
        XCTAssertEqual(try leftovers(except: []), [])
    }

    func testWriteIntoAMissingFolderIsACleanError() {
        XCTAssertThrowsError(try SafeFile.writeAtomically(directory + "/no/such/dir/f.bin", bytes: [1])) { error in
            guard let error = error as? FileIOError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.kind, .writeFailed)
            XCTAssertTrue(error.description.hasPrefix(directory + "/no/such/dir/f.bin: cannot create a temporary file"), error.description)
        }
    }
}
