import Support

// A read-only ZIP reader for the archives `torch.save` writes (issue 22): the central directory
// (found through the end-of-central-directory record, or its ZIP64 form, which torch always
// writes) lists the entries; each entry's own local header says where its bytes start (torch
// pads the local extra field so that tensor data is 64-byte aligned). Only stored (method 0)
// entries can be read. Every offset and size read from the file is checked against the file's
// size with overflow-safe arithmetic before it is used: a malformed archive throws
// `ZipArchiveError`, it never traps or reads outside the file.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A ZIP archive that cannot be read: what is wrong, in words (the caller adds the file name).
public struct ZipArchiveError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, one line.
    public var problem: String

    /// The problem.
    public var description: String { problem }
}

/// A regular file mapped read-only into memory (mmap), so that multi-gigabyte checkpoints are
/// read without copying them; unmapped when the value is released. An empty file maps to an
/// empty buffer.
public final class MappedFile {
    /// The file, as named in errors.
    public let path: String
    /// The file's bytes, valid while this object lives.
    public let bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer?

    /// Maps the regular file at `path` (`SafeFile.openRegularFile` refuses directories, FIFOs,
    /// devices); throws `FileIOError` naming the file.
    public init(path: String) throws {
        self.path = path
        let (fd, size) = try SafeFile.openRegularFile(path)
        defer { close(fd) }
        if size == 0 {
            mapping = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FileIOError(
                .readFailed, path: path,
                problem: "cannot map the file: \(String(cString: strerror(errno)))")
        }
        mapping = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let mapping { munmap(mapping, bytes.count) }
    }
}

/// The entries of a ZIP archive held in memory (see the file comment): names, sizes and where
/// each entry's bytes are, all checked against the buffer when the archive is opened.
public struct ZipArchive {
    /// One entry of the central directory, with the data position resolved from its local
    /// header.
    public struct Entry: Sendable, Equatable {
        /// The entry's name (UTF-8; invalid sequences replaced).
        public var name: String
        /// Compression method: 0 is stored, the only one `data(of:)` reads.
        public var method: Int
        /// General-purpose flags (bit 0: encrypted).
        public var flags: Int
        /// Bytes stored in the archive.
        public var compressedSize: Int
        /// Bytes once extracted.
        public var uncompressedSize: Int
        /// Where the local header starts.
        public var localHeaderOffset: Int
        /// Where the entry's bytes start (after the local header, its name and extra field).
        public var dataOffset: Int
    }

    /// Largest tail searched for the end-of-central-directory record: the record (22 bytes)
    /// plus the longest comment (65535 bytes).
    static let maxEOCDSearch = 22 + 65535

    /// The entries in central-directory order.
    public let entries: [Entry]
    private let index: [String: Int]
    private let bytes: UnsafeRawBufferPointer

    /// Parses the archive in `bytes` (which must outlive this value). Throws `ZipArchiveError`
    /// for anything malformed: no end record, multi-disk archives, offsets or sizes outside the
    /// buffer, bad signatures, duplicate names.
    public init(bytes: UnsafeRawBufferPointer) throws {
        self.bytes = bytes
        let size = bytes.count
        func fail(_ problem: String) -> ZipArchiveError { ZipArchiveError(problem: problem) }

        // End of central directory: the last signature whose comment ends exactly at the end.
        guard size >= 22 else {
            throw fail("not a zip archive: \(size) bytes, too short for the end record")
        }
        var eocd = -1
        var at = size - 22
        let lowest = max(0, size - ZipArchive.maxEOCDSearch)
        while at >= lowest {
            if ZipArchive.u32(bytes, at) == 0x0605_4b50,
                at + 22 + Int(ZipArchive.u16(bytes, at + 20)) == size
            {
                eocd = at
                break
            }
            at -= 1
        }
        guard eocd >= 0 else {
            throw fail("not a zip archive (no end-of-central-directory record; truncated?)")
        }
        if ZipArchive.u16(bytes, eocd + 4) != 0 || ZipArchive.u16(bytes, eocd + 6) != 0 {
            throw fail("multi-disk zip archives are not supported")
        }
        var count = UInt64(ZipArchive.u16(bytes, eocd + 10))
        var cdSize = UInt64(ZipArchive.u32(bytes, eocd + 12))
        var cdOffset = UInt64(ZipArchive.u32(bytes, eocd + 16))
        var cdLimit = eocd  // the central directory must end before the records that follow it

        // ZIP64: a locator right before the end record points at the ZIP64 end record.
        if eocd >= 20, ZipArchive.u32(bytes, eocd - 20) == 0x0706_4b50 {
            let locator = eocd - 20
            let recordOffset = ZipArchive.u64(bytes, locator + 8)
            guard ZipArchive.fits(recordOffset, 56, within: locator) else {
                throw fail("ZIP64 end record offset \(recordOffset) is outside the archive")
            }
            let record = Int(recordOffset)
            guard ZipArchive.u32(bytes, record) == 0x0606_4b50 else {
                throw fail("no ZIP64 end record at byte \(record)")
            }
            if ZipArchive.u32(bytes, record + 16) != 0 || ZipArchive.u32(bytes, record + 20) != 0
                || ZipArchive.u32(bytes, locator + 4) != 0
            {
                throw fail("multi-disk zip archives are not supported")
            }
            count = ZipArchive.u64(bytes, record + 32)
            cdSize = ZipArchive.u64(bytes, record + 40)
            cdOffset = ZipArchive.u64(bytes, record + 48)
            cdLimit = record
        }
        guard ZipArchive.fits(cdOffset, cdSize, within: cdLimit) else {
            throw fail(
                "central directory (\(cdSize) bytes at byte \(cdOffset)) lies outside the archive")
        }
        // Each central-directory header takes at least 46 bytes: bound the count before use.
        guard count <= cdSize / 46 else {
            throw fail("\(count) entries cannot fit in a central directory of \(cdSize) bytes")
        }

        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        var index: [String: Int] = [:]
        var p = Int(cdOffset)
        let cdEnd = Int(cdOffset + cdSize)
        for n in 0..<Int(count) {
            guard p + 46 <= cdEnd, ZipArchive.u32(bytes, p) == 0x0201_4b50 else {
                throw fail("central directory entry \(n) at byte \(p) is malformed")
            }
            let nameLength = Int(ZipArchive.u16(bytes, p + 28))
            let extraLength = Int(ZipArchive.u16(bytes, p + 30))
            let commentLength = Int(ZipArchive.u16(bytes, p + 32))
            let next = p + 46 + nameLength + extraLength + commentLength
            guard next <= cdEnd else {
                throw fail("central directory entry \(n) runs past the directory's end")
            }
            let name = String(
                decoding: UnsafeRawBufferPointer(rebasing: bytes[(p + 46)..<(p + 46 + nameLength)]),
                as: UTF8.self)
            var compressed = UInt64(ZipArchive.u32(bytes, p + 20))
            var uncompressed = UInt64(ZipArchive.u32(bytes, p + 24))
            var local = UInt64(ZipArchive.u32(bytes, p + 42))
            var disk = UInt64(ZipArchive.u16(bytes, p + 34))
            // ZIP64 extra field (id 1): 8-byte values for exactly the fields saturated above.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = ZipArchive.u16(bytes, e)
                let length = Int(ZipArchive.u16(bytes, e + 2))
                guard e + 4 + length <= extraEnd else {
                    throw fail("entry '\(name)': extra field runs past its end")
                }
                if id == 1 {
                    var q = e + 4
                    func take(_ field: inout UInt64, width: Int) throws {
                        guard q + width <= e + 4 + length else {
                            throw fail("entry '\(name)': ZIP64 extra field is too short")
                        }
                        field = width == 8 ? ZipArchive.u64(bytes, q) : UInt64(ZipArchive.u32(bytes, q))
                        q += width
                    }
                    if uncompressed == 0xFFFF_FFFF { try take(&uncompressed, width: 8) }
                    if compressed == 0xFFFF_FFFF { try take(&compressed, width: 8) }
                    if local == 0xFFFF_FFFF { try take(&local, width: 8) }
                    if disk == 0xFFFF { try take(&disk, width: 4) }
                }
                e += 4 + length
            }
            if disk != 0 { throw fail("entry '\(name)': multi-disk zip archives are not supported") }
            guard ZipArchive.fits(local, 30, within: size),
                ZipArchive.u32(bytes, Int(local)) == 0x0403_4b50
            else {
                throw fail("entry '\(name)': no local header at byte \(local)")
            }
            let dataOffset =
                Int(local) + 30 + Int(ZipArchive.u16(bytes, Int(local) + 26))
                + Int(ZipArchive.u16(bytes, Int(local) + 28))
            guard ZipArchive.fits(UInt64(dataOffset), compressed, within: size) else {
                throw fail(
                    "entry '\(name)': \(compressed) bytes at byte \(dataOffset) run past the end "
                        + "of the archive (\(size) bytes; truncated?)")
            }
            if uncompressed > UInt64(Int.max) {
                throw fail("entry '\(name)': size \(uncompressed) is too large")
            }
            if index.updateValue(entries.count, forKey: name) != nil {
                throw fail("entry '\(name)' appears twice")
            }
            entries.append(
                Entry(
                    name: name, method: Int(ZipArchive.u16(bytes, p + 10)),
                    flags: Int(ZipArchive.u16(bytes, p + 8)), compressedSize: Int(compressed),
                    uncompressedSize: Int(uncompressed), localHeaderOffset: Int(local),
                    dataOffset: dataOffset))
            p = next
        }
        self.entries = entries
        self.index = index
    }

    /// The entry called `name`, if any.
    public func entry(_ name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The bytes of a stored entry (a view into the archive's buffer, no copy). Throws, naming
    /// the entry, for encrypted or compressed entries and for a stored entry whose two sizes
    /// disagree.
    public func data(of entry: Entry) throws -> UnsafeRawBufferPointer {
        if entry.flags & 1 != 0 {
            throw ZipArchiveError(
                problem: "entry '\(entry.name)' is encrypted; encrypted entries are not supported")
        }
        if entry.method != 0 {
            throw ZipArchiveError(
                problem:
                    "entry '\(entry.name)' is compressed (method \(entry.method)); only stored "
                    + "entries (method 0) are supported")
        }
        if entry.compressedSize != entry.uncompressedSize {
            throw ZipArchiveError(
                problem:
                    "entry '\(entry.name)' is stored but its sizes disagree (\(entry.compressedSize) "
                    + "and \(entry.uncompressedSize) bytes)")
        }
        // Checked against the buffer when the archive was opened.
        return UnsafeRawBufferPointer(
            rebasing: bytes[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
    }

    /// Whether `length` bytes from `offset` lie inside `0..<size` (no overflow possible).
    static func fits(_ offset: UInt64, _ length: UInt64, within size: Int) -> Bool {
        size >= 0 && offset <= UInt64(size) && length <= UInt64(size) - offset
    }

    /// Little-endian readers; callers check the range first.
    static func u16(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
        UInt16(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }

    static func u32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    static func u64(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
        UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
}
