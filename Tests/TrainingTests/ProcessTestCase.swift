import Foundation
import XCTest

/// A test case that runs the `catlip` binary built next to the tests (and other programs) as
/// processes, in a fresh temporary `directory` removed afterwards.
class ProcessTestCase: XCTestCase {
    /// The temporary directory's name prefix.
    class var directoryPrefix: String { "catlip-test" }
    /// This test's temporary directory.
    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(Self.directoryPrefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The `catlip` binary's path; skips the test when it is missing.
    var binary: String {
        get throws {
            let path = Bundle.main.bundleURL.appendingPathComponent("catlip").path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("catlip not built at \(path)") }
            return path
        }
    }

    /// Starts `executable` (catlip by default) with `arguments`, stdout and stderr in one pipe,
    /// in `workingDirectory` (the test process's by default).
    func start(_ arguments: [String], executable: String? = nil, workingDirectory: String? = nil) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try executable ?? binary)
        process.arguments = arguments
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        return (process, out)
    }

    /// Reads a started process's output to its end and waits for it: (status, stdout + stderr).
    func finish(_ p: (Process, Pipe)) -> (status: Int32, output: String) {
        let data = p.1.fileHandleForReading.readDataToEndOfFile()
        p.0.waitUntilExit()
        return (p.0.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs `executable` with `arguments` to completion: (status, stdout + stderr).
    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        finish(try start(arguments, executable: executable))
    }

    /// The pids whose parent is `parent`, read from /proc (no procps needed: a bare Debian root
    /// has no pgrep). A process that exits while the list is read is left out.
    func childProcesses(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses,
            // so the fields are counted from the last ')'.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent
        }.sorted()
    }
}
