/// The image formats catlip decodes, recognised by their first bytes, never by file name.
public enum ImageFormat: String, Sendable, Equatable, Codable {
    /// JPEG (JFIF, EXIF, Adobe), baseline or progressive.
    case jpeg
    /// PNG, any colour type and bit depth, interlaced or not.
    case png

    /// What the first bytes of `bytes` say: a supported format, or the name of an unsupported
    /// one (`"GIF"`, `"WebP"`, ..., `"empty file"`, `"unknown"`) for the error message.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> Result<ImageFormat, Unsupported> {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + prefix.count else { return false }
            for (i, b) in prefix.enumerated() where bytes[offset + i] != b { return false }
            return true
        }
        if bytes.isEmpty { return .failure(Unsupported(name: "empty file")) }
        if starts([0xFF, 0xD8, 0xFF]) { return .success(.jpeg) }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .success(.png) }
        let others: [(String, [UInt8], Int)] = [
            ("GIF", Array("GIF8".utf8), 0),
            ("WebP", Array("WEBP".utf8), 8),
            ("BMP", Array("BM".utf8), 0),
            ("TIFF", [0x49, 0x49, 0x2A, 0x00], 0),
            ("TIFF", [0x4D, 0x4D, 0x00, 0x2A], 0),
            ("HEIF/AVIF", Array("ftyp".utf8), 4),
            ("JPEG 2000", [0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20], 0),
            ("ICO", [0x00, 0x00, 0x01, 0x00], 0),
            ("PDF", Array("%PDF".utf8), 0),
            ("SVG/XML", Array("<?xml".utf8), 0),
            ("SVG", Array("<svg".utf8), 0),
        ]
        for (name, magic, offset) in others where starts(magic, at: offset) {
            if name == "WebP" && !starts(Array("RIFF".utf8)) { continue }
            return .failure(Unsupported(name: name))
        }
        if bytes.count >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 {
            return .failure(Unsupported(name: "damaged JPEG (no marker after SOI)"))
        }
        let printable = bytes.prefix(512).allSatisfy { $0 == 9 || $0 == 10 || $0 == 13 || (32..<127).contains($0) }
        return .failure(Unsupported(name: printable ? "text" : "unknown"))
    }

    /// The name of a format catlip does not decode.
    public struct Unsupported: Error, Sendable, Equatable {
        /// A short human name: "GIF", "WebP", "text", "empty file", "unknown", ...
        public let name: String
    }
}
