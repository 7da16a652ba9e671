// Safe file I/O shared by every module that reads untrusted files or replaces files in place
// (issue 17): reading refuses anything but a regular file and caps the size before and while
// reading; writing goes through a temporary file created with O_EXCL|O_NOFOLLOW under a random
// name, so a symlink planted in a shared directory cannot redirect the write.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file that could not be read or written: which file, what kind of problem, and the problem
/// in words (one line).
public struct FileIOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Kinds of failure, for callers that count skipped files by reason.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// open(2) failed (missing file, permissions, ...).
        case cannotOpen = "cannot open"
        /// A directory, FIFO, device or socket where a regular file was expected.
        case notRegularFile = "not a regular file"
        /// The file is larger than the caller's cap.
        case tooLarge = "file too large"
        /// read(2) or fstat(2) failed.
        case readFailed = "read failed"
        /// Creating, writing, syncing or renaming the temporary file failed.
        case writeFailed = "write failed"
    }

    /// The kind of failure.
    public let kind: Kind
    /// The file the error is about (the target, for writes).
    public let path: String
    /// What is wrong, in words, without the path.
    public let problem: String

    /// An error about `path`.
    public init(_ kind: Kind, path: String, problem: String) {
        self.kind = kind
        self.path = path
        self.problem = problem
    }

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// Reading untrusted files and replacing files atomically.
public enum SafeFile {
    /// The text of the current `errno`.
    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// `bytes` as a short human size ("512 bytes", "3.5 MiB", "2.0 GiB").
    public static func sizeText(_ bytes: Int) -> String {
        if bytes < 1 << 20 { return "\(bytes) bytes" }
        let mib = Double(bytes) / Double(1 << 20)
        if mib < 1024 { return mib == mib.rounded() ? "\(Int(mib)) MiB" : String(describing: (mib * 10).rounded() / 10) + " MiB" }
        return String(describing: (mib / 1024 * 10).rounded() / 10) + " GiB"
    }

    /// What a file of mode `mode` is, for "not a regular file" messages.
    static func typeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    // MARK: - Reading

    /// Opens the regular file at `path` for reading (a symbolic link to one is followed) and
    /// returns its descriptor, which the caller closes, and its size. The open is non-blocking,
    /// so a FIFO without a writer cannot hang it, and the type is checked with fstat before
    /// anything is read: directories, FIFOs, devices (`/dev/zero`) and sockets are refused.
    /// Throws `FileIOError` naming the file and the problem.
    public static func openRegularFile(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            // Opening a Unix socket fails with ENXIO: say what the path is instead.
            var st = stat()
            if code == ENXIO, stat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
                throw FileIOError(.notRegularFile, path: path, problem: "is \(typeName(st.st_mode)), not a regular file")
            }
            throw FileIOError(.cannotOpen, path: path, problem: "cannot open: \(String(cString: strerror(code)))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let problem = "cannot stat: \(errnoText())"
            close(fd)
            throw FileIOError(.readFailed, path: path, problem: problem)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileIOError(.notRegularFile, path: path, problem: "is \(typeName(st.st_mode)), not a regular file")
        }
        return (fd, Int(st.st_size))
    }

    /// The whole contents of the regular file at `path` (a symbolic link to one is followed),
    /// at most `maxBytes` bytes. Anything but a regular file is refused without reading from it
    /// (`openRegularFile`). The size is checked against the cap from fstat (a sparse file announcing terabytes is refused
    /// before anything is allocated) and again while reading (the file may grow meanwhile).
    /// Throws `FileIOError` naming the file and the problem.
    public static func read(_ path: String, maxBytes: Int) throws -> [UInt8] {
        precondition(maxBytes >= 0, "maxBytes must not be negative")
        let (fd, announced) = try openRegularFile(path)
        defer { close(fd) }
        guard announced <= maxBytes else {
            throw FileIOError(
                .tooLarge, path: path, problem: "file of \(sizeText(announced)) is over the limit of \(sizeText(maxBytes))")
        }
        // One spare byte: a file of the announced size ends without growing the buffer, and a
        // file that grew is noticed when the byte past the cap arrives.
        var bytes = [UInt8](repeating: 0, count: max(0, announced) + 1)
        var filled = 0
        while true {
            if filled == bytes.count {
                guard filled <= maxBytes else {
                    throw FileIOError(
                        .tooLarge, path: path, problem: "file grew past the limit of \(sizeText(maxBytes)) while being read")
                }
                let more = min(max(65536, bytes.count), maxBytes - bytes.count + 1)
                bytes.append(contentsOf: repeatElement(0, count: more))
            }
            let n = bytes.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError(.readFailed, path: path, problem: "read failed: \(errnoText())")
            }
            if n == 0 { break }
            filled += n
        }
        guard filled <= maxBytes else {
            throw FileIOError(
                .tooLarge, path: path, problem: "file grew past the limit of \(sizeText(maxBytes)) while being read")
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// Fills `buffer` from byte `offset` of the open file `fd` (pread, retried on EINTR), for
    /// readers that check a file's layout before reading parts of it. A file that ends first
    /// (shrank, or is shorter than its header said) is an error, never a short buffer or a
    /// loop. Throws `FileIOError` (.readFailed) naming `path`.
    public static func readFully(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String
    ) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError(.readFailed, path: path, problem: "read failed: \(errnoText())")
            }
            if n == 0 {
                throw FileIOError(
                    .readFailed, path: path,
                    problem: "the file ends at byte \(offset + done), before the \(buffer.count) bytes read from byte \(offset)")
            }
            done += n
        }
    }

    // MARK: - Writing

    /// Attempts at a fresh temporary name before giving up (each name is 64 random bits, so a
    /// collision means someone is planting names).
    static let temporaryAttempts = 8

    /// The suffix of temporary names: `DIR/.NAME.<16 hex digits>.tmp`, hidden, next to the
    /// target so that the rename stays on one file system, and recognisable by clean-ups.
    public static let temporarySuffix = ".tmp"

    /// A fresh temporary path next to `path`.
    static func temporaryPath(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var random = SystemRandomNumberGenerator()
        let hex = String(random.next() as UInt64, radix: 16)
        return directory + "." + name + "." + String(repeating: "0", count: 16 - hex.count) + hex + temporarySuffix
    }

    /// Replaces `path` crash-safely with what `body` writes: `body` gets a sink that appends
    /// bytes to an `AtomicFileWriter` (a new temporary file next to `path`), which is then
    /// committed: fsync'd, renamed over `path`, the directory fsync'd. At every instant `path`
    /// is either the old or the new complete file. On any error, including one thrown by `body`
    /// (rethrown as it is), the temporary file is removed. I/O failures throw `FileIOError`
    /// naming `path`.
    public static func writeAtomically(
        _ path: String, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        let writer = try AtomicFileWriter(path: path)
        try body { try writer.write($0) }
        try writer.commit()
    }

    /// Replaces `path` crash-safely with `bytes` (see `writeAtomically(_:_:)`).
    public static func writeAtomically(_ path: String, bytes: [UInt8]) throws {
        try writeAtomically(path) { sink in try bytes.withUnsafeBytes { try sink($0) } }
    }

    /// fsync of the directory holding `path`, so that a rename or unlink in it is durable
    /// (best effort: some file systems refuse to sync directories).
    public static func syncDirectory(containing path: String) {
        let slash = path.lastIndex(of: "/")
        syncDirectory(slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? ".")
    }

    /// fsync of `directory` itself, after renames or unlinks in it (best effort).
    public static func syncDirectory(_ directory: String) {
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}

/// `write(2)`, callable where the method `AtomicFileWriter.write` shadows it.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// `read(2)`, callable where the method `SafeFile.read` shadows it.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// The one way catlip replaces a file (checkpoints, models, shards, caches, indexes, reports):
/// bytes go to a temporary file created next to `path` with O_EXCL|O_NOFOLLOW under a random
/// name (mode 0644 less the umask), so nothing planted at that name is followed or reused;
/// `commit()` fsyncs it, renames it over `path` (a symbolic link at `path` is replaced, not
/// written through) and fsyncs the directory, so a crash at any instant leaves either the old
/// or the new complete file under `path`. A writer dropped or failed before `commit()` removes
/// its temporary file. Not thread-safe: one writer, one thread at a time.
public final class AtomicFileWriter {
    /// The file replaced by `commit()`.
    public let path: String
    /// The temporary file written until `commit()`.
    public let temporaryPath: String
    private var fd: Int32
    /// Whether the temporary file still exists under `temporaryPath` (false once renamed or removed).
    private var temporaryExists = true

    /// Creates the temporary file next to `path`; throws `FileIOError` (`writeFailed`) when it
    /// cannot be created.
    public init(path: String) throws {
        self.path = path
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<SafeFile.temporaryAttempts {
            temporary = SafeFile.temporaryPath(for: path)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else {
            throw FileIOError(.writeFailed, path: path, problem: "cannot create a temporary file \(temporary): \(SafeFile.errnoText())")
        }
        self.fd = fd
        self.temporaryPath = temporary
    }

    deinit { abandon() }

    /// Appends `bytes` (all of them: short writes and EINTR are retried). After a failure the
    /// writer is abandoned and the temporary file removed.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw FileIOError(.writeFailed, path: path, problem: "the file is already committed or abandoned") }
        var done = 0
        while done < bytes.count {
            let n = posixWrite(fd, bytes.baseAddress! + done, min(bytes.count - done, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                let reason = SafeFile.errnoText()
                abandon()
                throw FileIOError(.writeFailed, path: path, problem: "write failed: \(reason)")
            }
            done += n
        }
    }

    /// Publishes the file: fsync, close, rename over `path`, fsync of the directory. On failure
    /// the temporary file is removed and `path` is left as it was.
    public func commit() throws {
        guard fd >= 0 else { throw FileIOError(.writeFailed, path: path, problem: "the file is already committed or abandoned") }
        func fail(_ what: String) -> FileIOError {
            let reason = SafeFile.errnoText()
            abandon()
            return FileIOError(.writeFailed, path: path, problem: "\(what): \(reason)")
        }
        if fsync(fd) != 0 { throw fail("fsync failed") }
        let closed = close(fd)
        fd = -1
        if closed != 0 { throw fail("close failed") }
        if rename(temporaryPath, path) != 0 { throw fail("cannot rename \(temporaryPath) into place") }
        temporaryExists = false
        SafeFile.syncDirectory(containing: path)
    }

    /// Gives up: closes and removes the temporary file; `path` is untouched. Nothing after a
    /// commit.
    public func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        if temporaryExists {
            unlink(temporaryPath)
            temporaryExists = false
        }
    }
}
