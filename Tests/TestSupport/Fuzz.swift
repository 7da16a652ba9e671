// Seeded mutation of untrusted inputs for the fuzz tests (issue 17): every parser of bytes read
// from a file or a socket is fed mutated copies of valid inputs, and each test asserts that the
// outcome is a clean error or a correct result. The same seed gives the same cases, so a failure
// in CI is reproduced by its case number; `CATLIP_FUZZ_CASES` raises the count for the long run
// by hand (RELIABILITY.md).
import Foundation
import Imaging
import Support

/// Deterministic mutators for byte strings and text, shared by every fuzz test.
public enum Fuzz {
    /// Cases per parser: `CATLIP_FUZZ_CASES` when set (the long run by hand), else `quick`, the
    /// few-seconds count `make test` runs.
    public static func caseCount(quick: Int) -> Int {
        if let text = ProcessInfo.processInfo.environment["CATLIP_FUZZ_CASES"],
            let n = Int(text), n > 0
        {
            return n
        }
        return quick
    }

    /// Integers that sit on the edges parsers get wrong: zero, one, sign bits, all ones, the
    /// largest values of each width.
    public static let interestingIntegers: [UInt64] = [
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF,
        0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000,
        0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFE,
    ]

    /// Number spellings that break careless conversions: huge, tiny, negative, non-finite,
    /// past Int64, fractional where a count is expected.
    public static let interestingNumbers: [String] = [
        "0", "-1", "1", "-0", "1e300", "-1e300", "1e-300", "1e309", "NaN", "nan", "inf", "-inf",
        "Infinity", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
        "18446744073709551616", "4294967296", "2147483648", "65536", "1024", "0.5", "1.5",
        "99999999999999999999999999999", "3", "7",
    ]

    /// A mutated copy of `input`: one to `maxEdits` edits, each one of bit flip, interesting
    /// byte, interesting 16/32/64-bit integer (either byte order), truncation, removal,
    /// duplication or insertion of a chunk.
    public static func mutate(
        _ input: [UInt8], using rng: inout SeededGenerator, maxEdits: Int = 4
    ) -> [UInt8] {
        var bytes = input
        let edits = Int.random(in: 1...max(1, maxEdits), using: &rng)
        for _ in 0..<edits {
            let kind = Int.random(in: 0..<8, using: &rng)
            if bytes.isEmpty {
                bytes = (0..<Int.random(in: 1...16, using: &rng)).map { _ in
                    UInt8.random(in: 0...255, using: &rng)
                }
                continue
            }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            switch kind {
            case 0:
                bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 1:
                bytes[at] = [0, 0xFF, 0x7F, 0x80, 0x20, 0x0A, 0x22, 0x7B][
                    Int.random(in: 0..<8, using: &rng)]
            case 2:
                let value = interestingIntegers.randomElement(using: &rng)!
                let width = [2, 4, 8].randomElement(using: &rng)!
                let bigEndian = Bool.random(using: &rng)
                for i in 0..<width where at + i < bytes.count {
                    let shift = UInt64(bigEndian ? (width - 1 - i) * 8 : i * 8)
                    bytes[at + i] = UInt8(truncatingIfNeeded: value >> shift)
                }
            case 3:
                bytes.removeSubrange(at...)
            case 4:
                let end = min(bytes.count, at + Int.random(in: 1...64, using: &rng))
                bytes.removeSubrange(at..<end)
            case 5:
                let end = min(bytes.count, at + Int.random(in: 1...64, using: &rng))
                bytes.insert(contentsOf: bytes[at..<end], at: at)
            case 6:
                let chunk = (0..<Int.random(in: 1...32, using: &rng)).map { _ in
                    UInt8.random(in: 0...255, using: &rng)
                }
                bytes.insert(contentsOf: chunk, at: at)
            default:
                bytes[at] = UInt8.random(in: 0...255, using: &rng)
            }
        }
        return bytes
    }

    /// A mutated copy of a text format (JSON, YAML, TSV, HTTP): besides the byte edits, numbers
    /// are replaced by `interestingNumbers`, and lines or tokens are dropped or repeated, so that
    /// the mutants stay close enough to the grammar to reach the code behind the parser.
    public static func mutateText(_ text: String, using rng: inout SeededGenerator) -> String {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0, 1:
            // Replace one number (a run of digits, signs, dots and exponents) with an edge case.
            let scalars = Array(text.unicodeScalars)
            var runs: [Range<Int>] = []
            var i = 0
            while i < scalars.count {
                if ("0"..."9").contains(scalars[i]) {
                    var start = i
                    if start > 0, scalars[start - 1] == "-" { start -= 1 }
                    var end = i
                    while end < scalars.count,
                        ("0"..."9").contains(scalars[end]) || ".eE+-".unicodeScalars.contains(
                            scalars[end])
                    {
                        end += 1
                    }
                    runs.append(start..<end)
                    i = end
                } else {
                    i += 1
                }
            }
            guard let run = runs.randomElement(using: &rng) else { fallthrough }
            var out = String.UnicodeScalarView()
            out.append(contentsOf: scalars[..<run.lowerBound])
            out.append(contentsOf: interestingNumbers.randomElement(using: &rng)!.unicodeScalars)
            out.append(contentsOf: scalars[run.upperBound...])
            return String(out)
        case 2:
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            guard !lines.isEmpty else { fallthrough }
            let at = Int.random(in: 0..<lines.count, using: &rng)
            if Bool.random(using: &rng) {
                lines.remove(at: at)
            } else {
                lines.insert(lines[at], at: at)
            }
            return lines.joined(separator: "\n")
        default:
            return String(decoding: mutate(Array(text.utf8), using: &rng), as: UTF8.self)
        }
    }
}
