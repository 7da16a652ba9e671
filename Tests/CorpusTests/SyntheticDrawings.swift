import Foundation

@testable import Corpus

/// RGBA PNGs written by the test itself: stored (uncompressed) deflate blocks, so no zlib is
/// needed, and every byte is known.
enum RGBAPNG {
    /// A PNG of colour type 6 (RGBA, 8 bits) from `width * height * 4` straight (not
    /// premultiplied) samples.
    static func encode(width: Int, height: Int, rgba: [UInt8]) -> [UInt8] {
        precondition(rgba.count == width * height * 4)
        var raw: [UInt8] = []
        for y in 0..<height {
            raw.append(0)  // filter: none
            raw.append(contentsOf: rgba[(y * width * 4)..<((y + 1) * width * 4)])
        }
        var z: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65_535, raw.count - offset)
            z.append(offset + n == raw.count ? 1 : 0)
            z += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        z += bigEndian((b << 16) | a)
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, 6, 0, 0, 0])
        png += chunk("IDAT", z)
        png += chunk("IEND", [])
        return png
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

/// A folder of generated drawings with objects.jsonl and heldout.jsonl, removed on deinit.
final class SyntheticObjects {
    let directory: String
    let objectsPath: String
    let heldoutPath: String
    /// Every record written to objects.jsonl (held-out ones included, to test the exclusion).
    let records: [ObjectRecord]
    /// The held-out records.
    let heldout: [ObjectRecord]

    /// (name, noun, keywords, colour) of each drawing; the last three are held out.
    static let drawings: [(String, String, [String], [UInt8])] = [
        ("dog face", "dog", ["pet", "animal"], [200, 140, 60]),
        ("cat", "cat", ["pet", "kitten"], [90, 90, 90]),
        ("slice of pizza", "pizza", ["food", "cheese"], [240, 200, 80]),
        ("red apple", "apple", ["fruit", "food"], [220, 30, 40]),
        ("car", "car", ["vehicle"], [40, 90, 200]),
        ("house", "house", ["building", "home"], [150, 80, 50]),
        ("men holding hands", "man", ["friendship"], [250, 180, 150]),
        ("tree", "tree", ["plant", "nature"], [30, 160, 60]),
        ("umbrella", "umbrella", ["rain"], [130, 60, 180]),
        ("guitar", "guitar", ["music"], [120, 70, 20]),
        ("bicycle", "bicycle", ["sport"], [0, 255, 255]),
        ("clock", "clock", ["time"], [255, 0, 255]),
    ]
    static let heldoutCount = 3

    init() throws {
        directory = NSTemporaryDirectory() + "corpus-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/png", withIntermediateDirectories: true)
        var records: [ObjectRecord] = []
        for (i, (name, noun, keywords, colour)) in Self.drawings.enumerated() {
            // A disc with a soft edge on a transparent margin, with a darker stripe so that
            // mirror images differ.
            let w = 40 + 3 * i, h = 36 + 2 * i
            var rgba = [UInt8](repeating: 0, count: w * h * 4)
            for y in 0..<h {
                for x in 0..<w {
                    let dx = (Double(x) + 0.5 - Double(w) / 2) / (Double(w) / 2 - 4)
                    let dy = (Double(y) + 0.5 - Double(h) / 2) / (Double(h) / 2 - 4)
                    let r = (dx * dx + dy * dy).squareRoot()
                    let coverage = max(0, min(1, (1 - r) * 8))
                    let p = (y * w + x) * 4
                    let shade: Double = x < w / 3 ? 0.6 : 1
                    for c in 0..<3 { rgba[p + c] = UInt8(Double(colour[c]) * shade) }
                    rgba[p + 3] = UInt8((coverage * 255).rounded())
                }
            }
            let file = "png/\(i).png"
            _ = FileManager.default.createFile(
                atPath: directory + "/" + file, contents: Data(RGBAPNG.encode(width: w, height: h, rgba: rgba)))
            records.append(
                ObjectRecord(image: file, name: name, keywords: keywords, source: "synthetic", item: "item\(i)", noun: noun))
        }
        self.heldout = Array(records.suffix(Self.heldoutCount))
        objectsPath = directory + "/objects.jsonl"
        heldoutPath = directory + "/heldout.jsonl"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func lines(_ rs: [ObjectRecord]) throws -> Data {
            var data = Data()
            for r in rs { data += try encoder.encode(r) + Data("\n".utf8) }
            return data
        }
        _ = FileManager.default.createFile(atPath: objectsPath, contents: try lines(records))
        _ = FileManager.default.createFile(atPath: heldoutPath, contents: try lines(heldout))
        self.records = try ObjectManifest.load(path: objectsPath)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}
