import Foundation
import XCTest

/// `catlip query` refuses bad options and untrustworthy sockets with a one-line error and a
/// non-zero exit, before sending anything (issue 17).
final class QueryCLITests: XCTestCase {
    func testQueryRefusesBadOptionsAndSockets() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-query-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("not a socket".utf8).write(to: URL(fileURLWithPath: dir + "/file.sock"))
        let cases: [([String], String)] = [
            (["--timeout", "inf"], "--timeout inf: must be a finite number of seconds above 0 and at most 86400"),
            (["--timeout", "nan"], "--timeout nan: must be a finite number"),
            (["--timeout=-1"], "--timeout -1.0: must be a finite number"),
            (["--timeout", "0"], "--timeout 0.0: must be a finite number"),
            (["--timeout", "1e300"], "--timeout 1e+300: must be a finite number"),
            (["--url", "http://127.0.0.1:70000"], "--url http://127.0.0.1:70000: port '70000' is not a number in 1...65535"),
            (["--url", "http://127.evil.com:8080"], "host '127.evil.com' is not an IPv4 address"),
            (["--socket", dir + "/file.sock"], "unix:\(dir)/file.sock: is not a socket"),
        ]
        for (options, message) in cases {
            let result = try catlip(["query"] + options + ["health"])
            XCTAssertNotEqual(result.status, 0, "\(options)")
            XCTAssertTrue(result.err.contains(message), "\(options): \(result.err)")
            XCTAssertFalse(result.err.contains("Fatal error"), "\(options): \(result.err)")
        }
    }
}
