import ArgumentParser
import Foundation
import Shards
import Support

// What every command's output goes through: one-line errors, JSON lines, atomic writes, and
// the inputs named on the command line.

/// A failure reported as one line on stderr with a non-zero exit status.
struct CLIError: Error, CustomStringConvertible {
    /// The line printed, naming the file or request and the problem.
    let description: String

    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning library errors into one-line CLI errors.
func cliRun<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as any CustomStringConvertible & Error {
        throw CLIError(error.description)
    }
}

/// One JSON object on one line of standard output (keys sorted).
func printJSON(_ object: [String: Any]) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// A line on standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Writes a file via a temporary name and rename (`SafeFile.writeAtomically`).
func writeAtomic(_ bytes: [UInt8], to path: String) throws {
    do {
        try SafeFile.writeAtomically(path, bytes: bytes)
    } catch let error as FileIOError {
        throw CLIError("\(path): cannot write: \(error.problem)")
    }
}

/// `x` rounded to one decimal, as rates are reported.
func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }

/// The median of `values` (the upper one of an even count), as the benches report it.
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// The regular files directly inside `directory`, sorted by name.
func listFiles(_ directory: String) throws -> [String] {
    let manager = FileManager.default
    var isDirectory: ObjCBool = false
    guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
    else { throw CLIError("\(directory): not a directory") }
    let names = try manager.contentsOfDirectory(atPath: directory).sorted()
    return names.map { directory + "/" + $0 }.filter {
        var dir: ObjCBool = false
        return manager.fileExists(atPath: $0, isDirectory: &dir) && !dir.boolValue
    }
}

/// Image files named by `inputs`: files as given, folders searched recursively (sorted).
func imagePaths(_ inputs: [String]) throws -> [String] {
    var out: [String] = []
    for input in inputs {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw CLIError("\(input): no such file or folder")
        }
        if !isDirectory.boolValue {
            out.append(input)
            continue
        }
        let found = (FileManager.default.enumerator(atPath: input)?.allObjects as? [String] ?? []).filter {
            let l = $0.lowercased()
            return l.hasSuffix(".jpg") || l.hasSuffix(".jpeg") || l.hasSuffix(".png")
        }.sorted()
        out += found.map { input + "/" + $0 }
    }
    return out
}

/// The data a command reads: a manifest (.tsv, .jsonl), a folder of images with sidecar
/// captions, or tar shards (brace patterns, `::`-separated lists).
func openSource(_ data: String, shuffle: Bool = true) throws -> any SampleSource {
    let source = try cliRun { try openSampleSource(data, shuffle: shuffle) }
    if let manifest = source as? ManifestSource {
        for problem in manifest.problems.prefix(20) { printError("skipped \(problem)") }
    }
    return source
}

extension SkipReport {
    /// One stderr line per reason, `skipped N (reason): first, keys`, naming at most 10 keys.
    var lines: [String] {
        counts.keys.sorted().map { "skipped \(counts[$0]!) (\($0)): " + (examples[$0] ?? []).prefix(10).joined(separator: ", ") }
    }
}
