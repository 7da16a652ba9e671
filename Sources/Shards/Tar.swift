import Foundation
import Support

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Tar archives, as webdataset shards use them: a streaming reader (ustar, old GNU and v7 headers,
// pax extended headers, GNU long names, octal and base-256 numbers) and a deterministic ustar
// writer. Layout of a 512-byte header block (POSIX ustar; old GNU differs after `magic`):
//
//   name 0..<100  mode 100  uid 108  gid 116  size 124..<136  mtime 136  chksum 148..<156
//   typeflag 156  linkname 157..<257  magic 257..<263  version 263..<265  uname 265  gname 297
//   devmajor 329  devminor 337  prefix 345..<500
//
// Members are padded to 512 bytes; an archive ends with two zero blocks.

/// Tar's block size in bytes.
let tarBlockSize = 512

// MARK: - Errors and members

/// A problem with a tar archive: the file, the byte offset of the header block (or write
/// position) where it was found, the member when known, and what is wrong.
///
/// Reading errors come in two kinds (`isFatal`): a member-level error (`memberTooLarge`,
/// `badExtendedHeader`, `unsupported`) concerns one member only, the reader has already moved past
/// it and `TarReader.next()` continues with the next one; a fatal error (`badChecksum`,
/// `badHeader`, `truncated`, `readFailed`, `cannotOpen`) means the rest of the archive cannot be
/// trusted, and the caller decides whether to stop (see `TarReader.resynchronize`).
public struct TarError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public enum Problem: Sendable, Equatable {
        /// The file cannot be opened (the system's reason).
        case cannotOpen(String)
        /// A read from the file failed (the system's reason).
        case readFailed(String)
        /// A header block fails its checksum: a corrupt header, or not a tar file at all.
        case badChecksum
        /// A header passes its checksum but a field needed to go on (the size) is unreadable.
        case badHeader(String)
        /// A pax extended header or GNU long name that cannot be used; the member it describes is
        /// skipped with it.
        case badExtendedHeader(String)
        /// The file ends inside a header block or inside a member's data.
        case truncated
        /// A member's size exceeds the reader's limit; the member is skipped.
        case memberTooLarge(size: Int, limit: Int)
        /// A member that this reader does not return (GNU sparse files); it is skipped.
        case unsupported(String)
        /// A write, fsync or rename failed (the system's reason).
        case writeFailed(String)
        /// A member name the writer cannot store (empty, or containing a NUL byte).
        case invalidName(String)
    }

    /// The archive's path.
    public let path: String
    /// Byte offset in the archive of the header block where the problem was found (for the writer:
    /// the write position).
    public let offset: Int
    /// The member's name, when known.
    public let member: String?
    /// What is wrong.
    public let problem: Problem

    /// An error from its parts.
    public init(path: String, offset: Int, member: String? = nil, problem: Problem) {
        self.path = path
        self.offset = offset
        self.member = member
        self.problem = problem
    }

    /// Reading: true when the rest of the archive cannot be trusted (the reader cannot know where
    /// the next header is, or there is nothing more to read); false when only one member is lost
    /// and reading continues with the next. Writing: true when the writer is unusable
    /// (`writeFailed`); false when only the member was refused (`invalidName`, `memberTooLarge`).
    public var isFatal: Bool {
        switch problem {
        case .memberTooLarge, .badExtendedHeader, .unsupported, .invalidName: return false
        case .cannotOpen, .readFailed, .badChecksum, .badHeader, .truncated, .writeFailed:
            return true
        }
    }

    /// Whether this is a corrupt header (`badChecksum` or `badHeader`), after which a
    /// resynchronising reader scans on.
    public var isCorruptHeader: Bool {
        switch problem {
        case .badChecksum, .badHeader: return true
        default: return false
        }
    }

    /// `path: offset N: member "name": problem`.
    public var description: String {
        var text = "\(path): offset \(offset)"
        if let member { text += ": member \"\(member)\"" }
        switch problem {
        case .cannotOpen(let reason): text += ": cannot open: \(reason)"
        case .readFailed(let reason): text += ": read failed: \(reason)"
        case .badChecksum: text += ": header checksum mismatch (corrupt header or not a tar file)"
        case .badHeader(let reason): text += ": bad header: \(reason)"
        case .badExtendedHeader(let reason): text += ": bad extended header: \(reason)"
        case .truncated:
            text +=
                member == nil
                ? ": truncated (the file ends inside a header)" : ": truncated (the file ends inside the member)"
        case .memberTooLarge(let size, let limit):
            text += ": member of \(size) bytes exceeds the limit of \(limit) bytes"
        case .unsupported(let what): text += ": unsupported member type: \(what)"
        case .writeFailed(let reason): text += ": write failed: \(reason)"
        case .invalidName(let reason): text += ": invalid member name: \(reason)"
        }
        return text
    }
}

/// A regular file read from a tar archive.
public struct TarMember: Sendable, Equatable {
    /// The member's path as stored (pax `path`, else GNU long name, else ustar prefix/name),
    /// decoded as UTF-8 (invalid bytes become U+FFFD).
    public var name: String
    /// The file's contents.
    public var data: [UInt8]
    /// Byte offset of the member's first header block (its extended headers included).
    public var offset: Int

    /// A member from its parts.
    public init(name: String, data: [UInt8], offset: Int) {
        self.name = name
        self.data = data
        self.offset = offset
    }
}

private func systemError(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

// MARK: - Reader

/// A streaming reader of tar archives: reads the file in chunks (never the whole archive) and
/// returns its regular files one at a time.
///
/// Understands POSIX ustar (with the prefix field), old GNU and v7 headers, pax extended headers
/// (`x`: `path` and `size` are used, other keys ignored; `g`: parsed and ignored), GNU long names
/// (`L`) and long link names (`K`, skipped), sizes in octal or GNU base-256. Regular files (types
/// `0`, NUL and `7`) are returned; directories, links, devices, FIFOs and unknown types are skipped
/// (the data of unknown types is skipped by its size, as Python's tarfile does). The archive ends
/// at two zero blocks (a lone zero block followed by a header is skipped, as GNU tar does) or at
/// the end of the file on a block boundary (a missing end marker is fine).
///
/// Errors are `TarError`s. After a member-level error, `next()` continues with the next member.
/// After a fatal one, `next()` returns nil, unless `resynchronize` is set: then, after a corrupt
/// header (`badChecksum`, `badHeader`), it scans forward block by block to the next block that
/// passes as a header, as GNU tar does; members found that way come from a damaged archive.
///
/// Not thread-safe: use one reader from one thread at a time.
public final class TarReader {
    /// The default `memberSizeLimit`: 256 MiB.
    public static let defaultMemberSizeLimit = 256 << 20
    /// The largest pax extended header or GNU long name accepted: 1 MiB.
    public static let extendedHeaderLimit = 1 << 20

    /// The archive's path.
    public let path: String
    /// Members larger than this many bytes are skipped with a `memberTooLarge` error.
    public let memberSizeLimit: Int
    /// Whether `next()` scans on for the next valid header after a corrupt one, instead of
    /// ending.
    public let resynchronize: Bool

    private let fd: Int32
    /// The file's size when it is a regular file (seeks instead of reads when skipping; never
    /// allocates more than the file can hold).
    private let fileSize: Int?
    private let buffer: UnsafeMutableRawBufferPointer
    private var bufferStart = 0
    private var bufferEnd = 0
    /// File offset of the byte after the buffered ones.
    private var filePosition = 0

    private enum State { case reading, resynchronizing, ended }
    private var state = State.reading
    /// A block read ahead (after a zero block, or found by resynchronisation) to be used as the next
    /// header.
    private var carried: (block: [UInt8], offset: Int)?
    /// What extended headers said about the next member.
    private var pending = PendingHeaders()

    private struct PendingHeaders {
        var firstOffset: Int?
        var path: String?
        var longName: String?
        var size: Int?
        var sparse = false
        var sparseName: String?
        var error: TarError?
    }

    /// Opens `path` for reading. Throws `cannotOpen` when the file cannot be opened or is a
    /// directory. `chunkSize` is the size of each read (at least one block).
    public init(
        path: String, memberSizeLimit: Int = TarReader.defaultMemberSizeLimit, resynchronize: Bool = false,
        chunkSize: Int = 1 << 20
    ) throws {
        self.path = path
        self.memberSizeLimit = max(0, memberSizeLimit)
        self.resynchronize = resynchronize
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TarError(path: path, offset: 0, problem: .cannotOpen(systemError())) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = systemError()
            close(fd)
            throw TarError(path: path, offset: 0, problem: .cannotOpen(reason))
        }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR {
            close(fd)
            throw TarError(path: path, offset: 0, problem: .cannotOpen("is a directory"))
        }
        self.fd = fd
        self.fileSize = type == S_IFREG ? Int(info.st_size) : nil
        #if os(Linux)
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        #endif
        let capacity = max(tarBlockSize, chunkSize)
        self.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// Byte offset of the next unread byte: after `next()` returns a member, where the next header
    /// starts.
    public var offset: Int { filePosition - (bufferEnd - bufferStart) }

    /// The next regular file, or nil at the end of the archive. Throws `TarError`; see the type's
    /// documentation for what a later call does after each kind of error.
    public func next() throws -> TarMember? {
        switch state {
        case .ended: return nil
        case .resynchronizing:
            let found: Bool
            do { found = try scanForHeader() } catch {
                state = .ended
                throw error
            }
            guard found else {
                state = .ended
                return nil
            }
            state = .reading
        case .reading: break
        }
        do {
            return try readMember()
        } catch let error as TarError {
            if error.isFatal {
                state = resynchronize && error.isCorruptHeader ? .resynchronizing : .ended
                pending = PendingHeaders()
            }
            throw error
        }
    }

    // MARK: Byte source

    /// Reads up to `destination.count` bytes, from the buffer first; fewer only at the end of the
    /// file.
    private func readBytes(into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        let count = destination.count
        while done < count {
            if bufferStart < bufferEnd {
                let n = min(count - done, bufferEnd - bufferStart)
                destination.baseAddress!.advanced(by: done).copyMemory(
                    from: buffer.baseAddress!.advanced(by: bufferStart), byteCount: n)
                bufferStart += n
                done += n
                continue
            }
            if count - done >= buffer.count {
                // Large remainder: straight into the destination, no copy through the buffer.
                let n = try systemRead(destination.baseAddress!.advanced(by: done), count - done)
                if n == 0 { break }
                done += n
            } else {
                guard try refill() else { break }
            }
        }
        return done
    }

    /// Refills the empty buffer; false at the end of the file.
    private func refill() throws -> Bool {
        bufferStart = 0
        bufferEnd = 0
        let n = try systemRead(buffer.baseAddress!, buffer.count)
        bufferEnd = n
        return n > 0
    }

    private func systemRead(_ pointer: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        while true {
            let n = read(fd, pointer, count)
            if n >= 0 {
                filePosition += n
                return n
            }
            if errno == EINTR { continue }
            throw TarError(path: path, offset: offset, problem: .readFailed(systemError()))
        }
    }

    /// Skips up to `count` bytes; returns how many were skipped (fewer only at the end of the file).
    private func skip(_ count: Int) throws -> Int {
        var done = min(count, bufferEnd - bufferStart)
        bufferStart += done
        guard done < count else { return done }
        if let fileSize {
            let target = filePosition + min(count - done, max(0, fileSize - filePosition))
            if lseek(fd, off_t(target), SEEK_SET) >= 0 {
                done += target - filePosition
                filePosition = target
                return done
            }
        }
        while done < count {
            guard try refill() else { break }
            let n = min(count - done, bufferEnd)
            bufferStart = n
            done += n
        }
        return done
    }

    /// The next 512-byte block; nil at the end of the file; `truncated` for a partial block.
    private func readBlock() throws -> [UInt8]? {
        let start = offset
        var block = [UInt8](repeating: 0, count: tarBlockSize)
        let n = try block.withUnsafeMutableBytes { try readBytes(into: $0) }
        if n == 0 { return nil }
        if n < tarBlockSize { throw TarError(path: path, offset: start, problem: .truncated) }
        return block
    }

    /// Bytes that remain in a regular file after the current position (nil when unknown).
    private var remainingBytes: Int? { fileSize.map { max(0, $0 - offset) } }

    /// Reads `size` bytes of member data and skips the padding after them. Throws `truncated`
    /// when the file ends inside the data; a file ending inside the padding is fine.
    private func readData(size: Int, headerOffset: Int, member: String?) throws -> [UInt8] {
        if let remaining = remainingBytes, remaining < size {
            throw TarError(path: path, offset: headerOffset, member: member, problem: .truncated)
        }
        let data = try [UInt8](unsafeUninitializedCapacity: size) { storage, initialized in
            initialized = try readBytes(into: UnsafeMutableRawBufferPointer(storage))
        }
        guard data.count == size else {
            throw TarError(path: path, offset: headerOffset, member: member, problem: .truncated)
        }
        _ = try skip(padding(size))
        return data
    }

    /// Skips `size` bytes of member data and its padding; `truncated` when the file ends inside
    /// the data.
    private func skipData(size: Int, headerOffset: Int, member: String?) throws {
        let skipped = try skip(size)
        guard skipped == size else {
            throw TarError(path: path, offset: headerOffset, member: member, problem: .truncated)
        }
        _ = try skip(padding(size))
    }

    private func padding(_ size: Int) -> Int { (tarBlockSize - size % tarBlockSize) % tarBlockSize }

    // MARK: Headers

    private func readMember() throws -> TarMember? {
        while true {
            let headerOffset: Int
            let block: [UInt8]
            if let carried {
                (block, headerOffset) = carried
                self.carried = nil
            } else {
                headerOffset = offset
                guard let next = try readBlock() else { return try endOfArchive() }
                if next.allSatisfy({ $0 == 0 }) {
                    // End marker: a second zero block or the end of the file. A lone zero block
                    // followed by a header is skipped.
                    let secondOffset = offset
                    let second: [UInt8]?
                    do { second = try readBlock() } catch let error as TarError where error.problem == .truncated {
                        second = nil
                    }
                    guard let second, !second.allSatisfy({ $0 == 0 }) else { return try endOfArchive() }
                    carried = (second, secondOffset)
                    continue
                }
                block = next
            }
            if let member = try member(header: block, offset: headerOffset) { return member }
        }
    }

    /// The end of the archive: reports an error an extended header left pending, then ends.
    private func endOfArchive() throws -> TarMember? {
        state = .ended
        let error = pending.error
        pending = PendingHeaders()
        if let error { throw error }
        return nil
    }

    /// Handles one header block: returns a member, or nil when the header was an extended header
    /// or a skipped entry (the caller reads the next header).
    private func member(header block: [UInt8], offset headerOffset: Int) throws -> TarMember? {
        guard checksumMatches(block) else {
            throw TarError(path: path, offset: headerOffset, problem: .badChecksum)
        }
        let rawName = headerName(block)
        guard let headerSize = parseNumber(block[124..<136]) else {
            throw TarError(
                path: path, offset: headerOffset, member: rawName, problem: .badHeader("size field is not a number"))
        }
        guard headerSize >= 0 else {
            throw TarError(path: path, offset: headerOffset, member: rawName, problem: .badHeader("negative size"))
        }
        if pending.firstOffset == nil { pending.firstOffset = headerOffset }
        let type = block[156]
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "g"):
            let global = type == UInt8(ascii: "g")
            if global && pending.firstOffset == headerOffset { pending.firstOffset = nil }
            let data = try readExtended(
                size: headerSize, headerOffset: headerOffset, what: global ? "global pax header" : "pax header",
                global: global)
            guard let data else { return nil }
            do {
                let records = try parsePaxRecords(data)
                if !global {
                    for (key, value) in records {
                        switch key {
                        case "path": pending.path = String(decoding: value, as: UTF8.self)
                        case "size":
                            guard let size = parseDecimal(value[...]) else {
                                throw PaxError(message: "size is not a number")
                            }
                            pending.size = size
                        case "GNU.sparse.name":
                            pending.sparse = true
                            pending.sparseName = String(decoding: value, as: UTF8.self)
                        default:
                            if key.hasPrefix("GNU.sparse.") { pending.sparse = true }
                        }
                    }
                }
            } catch let error as PaxError {
                let tarError = TarError(
                    path: path, offset: headerOffset, member: pending.path ?? pending.longName,
                    problem: .badExtendedHeader(error.message))
                // A bad global header concerns no member: report it now. A bad per-file header
                // poisons the member it describes, which is skipped with it.
                if global { throw tarError }
                if pending.error == nil { pending.error = tarError }
            }
            return nil
        case UInt8(ascii: "L"):
            let data = try readExtended(
                size: headerSize, headerOffset: headerOffset, what: "GNU long name", global: false)
            if let data {
                let end = data.firstIndex(of: 0) ?? data.count
                pending.longName = String(decoding: data[..<end], as: UTF8.self)
            }
            return nil
        case UInt8(ascii: "K"):
            try skipData(size: headerSize, headerOffset: headerOffset, member: rawName)
            return nil
        default: break
        }

        let name = pending.sparseName ?? pending.path ?? pending.longName ?? rawName
        let size = pending.size ?? headerSize
        let firstOffset = pending.firstOffset ?? headerOffset
        let poisoned = pending.error
        let sparse = pending.sparse
        pending = PendingHeaders()

        let regular = type == UInt8(ascii: "0") || type == 0 || type == UInt8(ascii: "7")
        let oldStyleDirectory = type == 0 && name.hasSuffix("/")
        switch type {
        case _ where regular && !oldStyleDirectory:
            if let poisoned {
                try skipData(size: size, headerOffset: headerOffset, member: name)
                throw TarError(path: path, offset: poisoned.offset, member: name, problem: poisoned.problem)
            }
            if sparse {
                try skipData(size: size, headerOffset: headerOffset, member: name)
                throw TarError(
                    path: path, offset: headerOffset, member: name, problem: .unsupported("GNU sparse file (pax)"))
            }
            if size > memberSizeLimit {
                try skipData(size: size, headerOffset: headerOffset, member: name)
                throw TarError(
                    path: path, offset: headerOffset, member: name,
                    problem: .memberTooLarge(size: size, limit: memberSizeLimit))
            }
            let data = try readData(size: size, headerOffset: headerOffset, member: name)
            return TarMember(name: name, data: data, offset: firstOffset)
        case UInt8(ascii: "1")...UInt8(ascii: "6"):
            // Links, devices, directories, FIFOs: no data follows, whatever the size says (as
            // Python's tarfile reads them).
            break
        case UInt8(ascii: "S"):
            // Old GNU sparse: extension blocks of the sparse map follow while `isextended` is set.
            var extended = block[482] != 0
            while extended {
                guard let map = try readBlock() else {
                    throw TarError(path: path, offset: headerOffset, member: name, problem: .truncated)
                }
                extended = map[504] != 0
            }
            try skipData(size: size, headerOffset: headerOffset, member: name)
            throw TarError(path: path, offset: headerOffset, member: name, problem: .unsupported("GNU sparse file"))
        default:
            // Old-style directories, and unknown types: their data is skipped by its size.
            try skipData(size: size, headerOffset: headerOffset, member: name)
        }
        if let poisoned { throw TarError(path: path, offset: poisoned.offset, member: name, problem: poisoned.problem) }
        return nil
    }

    /// Reads the data of an extended header (pax or GNU long name). When it exceeds
    /// `extendedHeaderLimit`, skips it and returns nil after marking the next member as poisoned,
    /// or, for a global header (which concerns no member), throws a member-level error.
    private func readExtended(size: Int, headerOffset: Int, what: String, global: Bool) throws -> [UInt8]? {
        if size > TarReader.extendedHeaderLimit {
            try skipData(size: size, headerOffset: headerOffset, member: nil)
            let error = TarError(
                path: path, offset: headerOffset,
                problem: .badExtendedHeader("\(what) of \(size) bytes exceeds \(TarReader.extendedHeaderLimit)"))
            if global { throw error }
            if pending.error == nil { pending.error = error }
            return nil
        }
        return try readData(size: size, headerOffset: headerOffset, member: nil)
    }

    /// Scans forward block by block for a block that passes as a header (checksum, not all
    /// zeros); false at the end of the file.
    private func scanForHeader() throws -> Bool {
        while true {
            let blockOffset = offset
            let block: [UInt8]?
            do { block = try readBlock() } catch let error as TarError where error.problem == .truncated {
                return false
            }
            guard let block else { return false }
            if !block.allSatisfy({ $0 == 0 }) && checksumMatches(block) {
                carried = (block, blockOffset)
                return true
            }
        }
    }
}

// MARK: - Header fields

/// The name stored in a header: POSIX ustar joins `prefix/name`; old GNU and v7 headers have
/// no prefix.
func headerName(_ block: [UInt8]) -> String {
    func field(_ range: Range<Int>) -> ArraySlice<UInt8> {
        let slice = block[range]
        return slice[..<(slice.firstIndex(of: 0) ?? range.upperBound)]
    }
    let name = field(0..<100)
    let posix = block[257..<263].elementsEqual(Array("ustar\0".utf8))
    let prefix = posix ? field(345..<500) : []
    if prefix.isEmpty { return String(decoding: name, as: UTF8.self) }
    return String(decoding: prefix + [UInt8(ascii: "/")] + name, as: UTF8.self)
}

/// Whether the header's checksum field matches the sum of its bytes (with the field itself
/// counted as spaces), summed as unsigned or, as some old writers did, signed bytes.
func checksumMatches(_ block: [UInt8]) -> Bool {
    guard let stored = parseOctal(block[148..<156]) else { return false }
    var unsigned = 0
    var signed = 0
    for i in 0..<tarBlockSize {
        let byte = (148..<156).contains(i) ? UInt8(ascii: " ") : block[i]
        unsigned += Int(byte)
        signed += Int(Int8(bitPattern: byte))
    }
    return stored == unsigned || stored == signed
}

/// A numeric header field: octal text (leading and trailing spaces and NULs allowed, empty is
/// 0), or GNU base-256 (first byte 0x80, big-endian after it; a first byte 0xFF marks a negative
/// number, returned as -1). Nil when it is neither or does not fit an Int.
func parseNumber(_ field: ArraySlice<UInt8>) -> Int? {
    guard let first = field.first else { return 0 }
    if first & 0x80 == 0 { return parseOctal(field) }
    guard first == 0x80 else { return first == 0xFF ? -1 : nil }
    var value = 0
    for byte in field.dropFirst() {
        guard value <= (Int.max >> 8) else { return nil }
        value = value << 8 | Int(byte)
    }
    return value
}

/// Octal text: the part before the first NUL, spaces trimmed at both ends, digits 0-7 only.
func parseOctal(_ field: ArraySlice<UInt8>) -> Int? {
    let text = field[..<(field.firstIndex(of: 0) ?? field.endIndex)]
    let isSpace: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") }
    guard let start = text.firstIndex(where: { !isSpace($0) }) else { return 0 }
    let end = text.lastIndex(where: { !isSpace($0) })! + 1
    var value = 0
    for byte in text[start..<end] {
        guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(byte), value <= (Int.max >> 3) else { return nil }
        value = value << 3 | Int(byte - UInt8(ascii: "0"))
    }
    return value
}

/// A non-negative decimal number of ASCII digits (no sign, no spaces); nil otherwise.
func parseDecimal(_ text: ArraySlice<UInt8>) -> Int? {
    guard !text.isEmpty else { return nil }
    var value = 0
    for byte in text {
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
        guard !overflow1 && !overflow2 else { return nil }
        value = sum
    }
    return value
}

struct PaxError: Error {
    let message: String
}

/// The records of a pax extended header, `"%d %s=%s\n"` each (the length counts the whole
/// record), in order; parsing stops at a NUL where a record would start (as Python's tarfile).
func parsePaxRecords(_ data: [UInt8]) throws -> [(key: String, value: [UInt8])] {
    var records: [(key: String, value: [UInt8])] = []
    var position = 0
    while position < data.count && data[position] != 0 {
        guard let space = data[position...].firstIndex(of: UInt8(ascii: " ")),
            let length = parseDecimal(data[position..<space])
        else { throw PaxError(message: "record at byte \(position) has no length") }
        guard length > space - position + 1, length <= data.count - position else {
            throw PaxError(message: "record at byte \(position) has a bad length \(length)")
        }
        let end = position + length
        guard data[end - 1] == UInt8(ascii: "\n") else {
            throw PaxError(message: "record at byte \(position) does not end with a newline")
        }
        let body = data[(space + 1)..<(end - 1)]
        guard let equals = body.firstIndex(of: UInt8(ascii: "=")), equals > body.startIndex else {
            throw PaxError(message: "record at byte \(position) has no key=value")
        }
        records.append((String(decoding: body[..<equals], as: UTF8.self), Array(body[(equals + 1)...])))
        position = end
    }
    return records
}

// MARK: - Writer

/// A deterministic ustar writer: every member gets mtime 0, mode 0644, uid and gid 0, empty user
/// and group names; names up to 100 bytes go in the name field, longer ones in a pax `x` header
/// (`path=`), as Python's tarfile does in PAX format. The same members in the same order give the
/// same bytes.
///
/// Writes go to an `AtomicFileWriter` (a temporary file next to `path`); `finish()` writes the
/// end marker and commits it (fsync, rename to `path`, fsync of the folder), so a crash never
/// leaves a half-written archive under the final name. A writer dropped without `finish()`
/// removes its temporary file.
///
/// Not thread-safe: use one writer from one thread at a time.
public final class TarWriter {
    /// The final path of the archive.
    public let path: String
    /// The temporary file written until `finish()`.
    public let temporaryPath: String
    /// Members written so far.
    public private(set) var memberCount = 0
    /// Bytes written so far (headers, data and padding; the end marker once finished).
    public private(set) var bytesWritten = 0

    /// The largest member size the ustar size field holds (8 GiB - 1).
    public static let maximumMemberSize = 0o77777777777

    private let file: AtomicFileWriter
    private var buffer: [UInt8] = []
    private let bufferCapacity = 1 << 20
    private var state = State.open

    private enum State { case open, finished, failed }

    /// Creates the temporary file next to `path`. Throws `writeFailed` when it cannot be created.
    public init(path: String) throws {
        self.path = path
        do {
            file = try AtomicFileWriter(path: path)
        } catch let error as FileIOError {
            throw TarError(path: path, offset: 0, problem: .writeFailed(error.problem))
        }
        temporaryPath = file.temporaryPath
        buffer.reserveCapacity(bufferCapacity)
    }

    /// Appends a regular file `name` with contents `data`.
    public func add(name: String, data: [UInt8]) throws {
        try data.withUnsafeBytes { try add(name: name, bytes: $0) }
    }

    /// Appends a regular file `name` with contents `bytes`. Throws `invalidName` for an empty name
    /// or one containing NUL, `memberTooLarge` beyond `maximumMemberSize`, `writeFailed` when the
    /// file cannot be written (the writer is unusable after that).
    public func add(name: String, bytes: UnsafeRawBufferPointer) throws {
        try checkOpen()
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty else {
            throw TarError(path: path, offset: bytesWritten, problem: .invalidName("empty"))
        }
        guard !nameBytes.contains(0) else {
            throw TarError(path: path, offset: bytesWritten, member: name, problem: .invalidName("contains a NUL byte"))
        }
        guard bytes.count <= TarWriter.maximumMemberSize else {
            throw TarError(
                path: path, offset: bytesWritten, member: name,
                problem: .memberTooLarge(size: bytes.count, limit: TarWriter.maximumMemberSize))
        }
        if nameBytes.count > 100 {
            let records = paxRecord(key: "path", value: nameBytes)
            try append(ustarHeader(name: Array("././@PaxHeader".utf8), size: records.count, type: UInt8(ascii: "x")))
            try append(records)
            try append(padding(records.count))
        }
        try append(ustarHeader(name: truncatedName(nameBytes), size: bytes.count, type: UInt8(ascii: "0")))
        try append(bytes)
        try append(padding(bytes.count))
        memberCount += 1
    }

    /// Writes the end marker (two zero blocks), flushes, fsyncs, closes and renames the temporary
    /// file to `path` (then fsyncs the directory). Throws `writeFailed`; the temporary file is
    /// removed on failure.
    public func finish() throws {
        try checkOpen()
        try append([UInt8](repeating: 0, count: 2 * tarBlockSize))
        try flush()
        do {
            try file.commit()
        } catch let error as FileIOError {
            state = .failed
            throw TarError(path: path, offset: bytesWritten, problem: .writeFailed(error.problem))
        }
        state = .finished
    }

    /// Abandons the archive: closes and removes the temporary file. `path` is left untouched.
    public func cancel() {
        guard state != .finished else { return }
        file.abandon()
        state = .failed
    }

    private func checkOpen() throws {
        guard state == .open else {
            throw TarError(path: path, offset: bytesWritten, problem: .writeFailed("the writer is finished or failed"))
        }
    }

    private func fail(_ reason: String) throws -> Never {
        cancel()
        throw TarError(path: path, offset: bytesWritten, problem: .writeFailed(reason))
    }

    private func padding(_ size: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: (tarBlockSize - size % tarBlockSize) % tarBlockSize)
    }

    private func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > bufferCapacity { try flush() }
        if bytes.count >= bufferCapacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        bytesWritten += bytes.count
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        do {
            try file.write(bytes)
        } catch let error as FileIOError {
            try fail(error.problem)
        }
    }
}

/// The first bytes of a name that fit the 100-byte name field, cut at a UTF-8 character
/// boundary (the full name is in the pax header).
private func truncatedName(_ name: [UInt8]) -> [UInt8] {
    guard name.count > 100 else { return name }
    var end = 100
    while end > 0 && name[end] & 0xC0 == 0x80 { end -= 1 }
    return Array(name[..<end])
}

/// A pax record `"%d key=value\n"`, its length counting itself.
func paxRecord(key: String, value: [UInt8]) -> [UInt8] {
    let body = [UInt8(ascii: " ")] + Array(key.utf8) + [UInt8(ascii: "=")] + value + [UInt8(ascii: "\n")]
    var digits = 1
    while String(body.count + digits).count > digits { digits += 1 }
    return Array(String(body.count + digits).utf8) + body
}

/// A ustar header block with the writer's fixed fields.
func ustarHeader(name: [UInt8], size: Int, type: UInt8) -> [UInt8] {
    var block = [UInt8](repeating: 0, count: tarBlockSize)
    func put(_ text: String, at start: Int) {
        for (i, byte) in text.utf8.enumerated() { block[start + i] = byte }
    }
    func octal(_ value: Int, digits: Int) -> String {
        let text = String(value, radix: 8)
        return String(repeating: "0", count: max(0, digits - text.count)) + text + "\0"
    }
    for (i, byte) in name.prefix(100).enumerated() { block[i] = byte }
    put(octal(0o644, digits: 7), at: 100)  // mode
    put(octal(0, digits: 7), at: 108)  // uid
    put(octal(0, digits: 7), at: 116)  // gid
    put(octal(size, digits: 11), at: 124)
    put(octal(0, digits: 11), at: 136)  // mtime
    block[156] = type
    put("ustar\0" + "00", at: 257)
    put(octal(0, digits: 7), at: 329)  // devmajor
    put(octal(0, digits: 7), at: 337)  // devminor
    put("        ", at: 148)
    let sum = block.reduce(0) { $0 + Int($1) }
    put(octal(sum, digits: 6) + " ", at: 148)
    return block
}
