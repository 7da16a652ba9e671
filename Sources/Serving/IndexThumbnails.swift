import Foundation
import Imaging
import Support

/// Small PNG pictures of an index's rows, so that a search page can show its results without
/// the daemon ever reading the images' paths: `catlip index build --thumbnails` writes them
/// beside the index (`INDEX.thumbs`), `catlip serve` answers `GET /v1/thumbnails/{row}` from
/// them and from nothing else.
///
/// File format: the 8 bytes `CATLIPTN`, a little-endian u32 version (1), a u32 row count N,
/// N + 1 little-endian u64 offsets (ascending, the first 0, the last the data's length), then
/// the data: row i's PNG is bytes offsets[i] ..< offsets[i + 1]. Reading checks the magic, the
/// version, the count against the index, every offset against the file, each picture's size
/// against `maxBytesPerPicture` and its PNG signature; a bad file is an error naming it.
public struct IndexThumbnails: Sendable {
    /// Longest side of a picture, in pixels.
    public static let defaultSide = 128
    /// Largest picture accepted when reading (a 128 x 128 RGB PNG is at most about 50 KB).
    public static let maxBytesPerPicture = 1 << 20
    /// Largest file read.
    public static let maxFileBytes = 4 << 30
    static let magic = Array("CATLIPTN".utf8)
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    private let data: [UInt8]
    private let offsets: [Int]

    /// Pictures from their encoded PNGs, one per index row.
    public init(pictures: [[UInt8]]) {
        var offsets = [0]
        var data: [UInt8] = []
        for p in pictures {
            data += p
            offsets.append(data.count)
        }
        self.data = data
        self.offsets = offsets
    }

    private init(data: [UInt8], offsets: [Int]) {
        self.data = data
        self.offsets = offsets
    }

    /// Number of rows.
    public var count: Int { offsets.count - 1 }

    /// Row `row`'s PNG, nil when `row` is not a row.
    public func picture(row: Int) -> [UInt8]? {
        guard row >= 0 && row < count else { return nil }
        return Array(data[offsets[row]..<offsets[row + 1]])
    }

    /// A 1 x 1 grey PNG, for a row whose picture could not be made.
    public static let placeholder: [UInt8] = {
        (try? PNGEncoder.encode(RGBImage(width: 1, height: 1, pixels: [128, 128, 128]), source: "placeholder")) ?? []
    }()

    /// The sidecar file of the index at `indexPath`.
    public static func path(forIndex indexPath: String) -> String { indexPath + ".thumbs" }

    /// Writes the file atomically.
    public func write(path: String) throws {
        var out = Self.magic
        func append(_ v: UInt64, bytes: Int) { for i in 0..<bytes { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        append(1, bytes: 4)
        append(UInt64(count), bytes: 4)
        for o in offsets { append(UInt64(o), bytes: 8) }
        out += data
        do { try SafeFile.writeAtomically(path, bytes: out) } catch let e as FileIOError {
            throw IndexError(path: path, problem: "cannot write the thumbnails: \(e.problem)")
        }
    }

    /// Reads and checks a thumbnails file for an index of `rows` rows.
    public static func read(path: String, rows: Int) throws -> IndexThumbnails {
        func bad(_ problem: String) -> IndexError { IndexError(path: path, problem: problem) }
        let bytes: [UInt8]
        do { bytes = try SafeFile.read(path, maxBytes: maxFileBytes) } catch let e as FileIOError {
            throw bad("cannot read the thumbnails: \(e.problem)")
        }
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else { throw bad("not a catlip thumbnails file") }
        func u(_ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            return v
        }
        guard u(8, 4) == 1 else { throw bad("unsupported thumbnails version \(u(8, 4))") }
        let n = Int(u(12, 4))
        guard n == rows else { throw bad("holds \(n) pictures, the index \(rows) rows") }
        let tableEnd = 16 + (n + 1) * 8
        guard tableEnd <= bytes.count else { throw bad("truncated offset table") }
        let dataLength = bytes.count - tableEnd
        var offsets: [Int] = []
        offsets.reserveCapacity(n + 1)
        for i in 0...n {
            let o = u(16 + 8 * i, 8)
            guard o <= UInt64(dataLength), o >= UInt64(offsets.last ?? 0) else {
                throw bad("offset \(i) (\(o)) is out of order or past the data's \(dataLength) bytes")
            }
            offsets.append(Int(o))
        }
        guard offsets.first == 0, offsets.last == dataLength else { throw bad("the offsets do not cover the data exactly") }
        let data = Array(bytes[tableEnd...])
        for i in 0..<n {
            let size = offsets[i + 1] - offsets[i]
            guard size <= maxBytesPerPicture else { throw bad("picture \(i) has \(size) bytes, more than \(maxBytesPerPicture)") }
            guard size >= 8, Array(data[offsets[i]..<(offsets[i] + 8)]) == pngSignature else { throw bad("picture \(i) is not a PNG") }
        }
        return IndexThumbnails(data: data, offsets: offsets)
    }

    /// A PNG of `bytes` (an encoded image) scaled to fit `side` x `side` (never enlarged),
    /// through the same decoder and limits as the index's embeddings.
    public static func picture(of bytes: [UInt8], source: String, side: Int = defaultSide, options: DecodeOptions) throws -> [UInt8] {
        let image = try ImageDecoder.decode(bytes, source: source, options: options)
        let scale = min(1, Double(side) / Double(max(image.width, image.height)))
        let w = max(1, Int((Double(image.width) * scale).rounded()))
        let h = max(1, Int((Double(image.height) * scale).rounded()))
        let small = scale < 1 ? image.resized(width: w, height: h, filter: .bilinear) : image
        return try PNGEncoder.encode(small, source: source)
    }
}
