import Foundation
import XCTest

extension XCTestCase {
    /// The `catlip` binary built next to the tests; skips the calling test when it is missing.
    func catlipBinary() throws -> URL {
        let binary = Bundle.main.bundleURL.appendingPathComponent("catlip")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw XCTSkip("catlip binary not built at \(binary.path) (run swift build --build-tests)")
        }
        return binary
    }

    /// Runs `catlip` with `arguments` to its end; returns (status, stdout, stderr).
    func catlip(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = try catlipBinary()
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: outData, as: UTF8.self),
            String(decoding: errData, as: UTF8.self)
        )
    }
}
