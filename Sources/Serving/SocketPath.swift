import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Who may own a Unix socket path and what may be at it: checked by the daemon before it binds
/// and by the client before it connects, so that another local user can neither plant a socket
/// the daemon refuses to replace nor one that `catlip query` talks to.
///
/// The rules:
/// - The default directory `/tmp/catlip-UID` (used when `XDG_RUNTIME_DIR` is unset) is created
///   mode 0700 by the daemon; both sides require it to be a real directory (not a symbolic link)
///   owned by this user and not writable by group or others.
/// - Whatever the path, the directory holding the socket and every directory above it must be
///   owned by this user or root, and not writable by group or others unless sticky (as /tmp is:
///   others cannot remove or rename what is ours in it).
/// - What is at the path must be a socket, not a symbolic link or any other file. The daemon
///   replaces only a stale socket of this user's; the client talks only to a socket of this
///   user's or root's.
/// - The client reads the connected peer's uid (`SO_PEERCRED`) before sending a byte and
///   refuses a daemon that runs as anybody but this user or root.
public enum SocketPath {
    /// The per-user directory of the default socket when `XDG_RUNTIME_DIR` is unset:
    /// `/tmp/catlip-UID`.
    public static func privateDirectory(uid: uid_t = getuid()) -> String { "/tmp/catlip-\(uid)" }

    /// The directory part of `path`: `.` for a bare name, `/` for a file in the root.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let head = path[..<slash]
        return head.isEmpty ? "/" : String(head)
    }

    /// Daemon side, before binding: creates the default private directory when `path` is in it,
    /// checks the directories, and returns whether a socket file of this user's is already at
    /// `path` (live or stale: the caller tells which). Throws for a symbolic link, any other
    /// kind of file, or a socket of another user's at the path, and never removes anything.
    /// `ownDirectory` is the default private directory (a parameter for the tests).
    static func checkBeforeBind(_ path: String, ownDirectory: String = privateDirectory()) throws -> Bool {
        let dir = directory(of: path)
        if dir == ownDirectory {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw SocketPathError("\(dir): cannot create the socket directory (\(String(cString: strerror(errno))))")
            }
        }
        try checkDirectories(holding: path, ownDirectory: ownDirectory)
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return false }
            throw SocketPathError("\(path): \(String(cString: strerror(errno)))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFLNK: throw SocketPathError("\(path): is a symbolic link; not following or removing it")
        case S_IFSOCK: break
        default: throw SocketPathError("\(path): exists and is not a socket; not replacing it")
        }
        if st.st_uid != geteuid() {
            throw SocketPathError(
                "\(path): a socket owned by uid \(st.st_uid), not by this user (uid \(geteuid())); not removing it")
        }
        return true
    }

    /// Client side, before connecting: the directories and the socket file. A missing file is
    /// left to `connect` to report (and a socket that appears meanwhile meets `checkPeer`).
    static func checkBeforeConnect(_ path: String, ownDirectory: String = privateDirectory()) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        try checkDirectories(holding: path, ownDirectory: ownDirectory)
        switch st.st_mode & S_IFMT {
        case S_IFLNK: throw SocketPathError("unix:\(path): is a symbolic link; not following it to a socket another user may own")
        case S_IFSOCK: break
        default: throw SocketPathError("unix:\(path): is not a socket")
        }
        if !trusted(st.st_uid) {
            throw SocketPathError(
                "unix:\(path): the socket is owned by uid \(st.st_uid), not by this user (uid \(geteuid())) or root; refusing to talk to it")
        }
    }

    /// Whether `uid` is this process's effective user or root: the owners a client trusts.
    static func trusted(_ uid: uid_t) -> Bool { uid == geteuid() || uid == 0 }

    /// The judgement on a connected daemon: throws unless `peerUID` (from `peerUID(of:)`) is
    /// this user or root. `nil` (the credentials could not be read) is refused too.
    static func checkPeer(uid peerUID: uid_t?, path: String) throws {
        guard let peerUID else {
            throw SocketPathError("unix:\(path): cannot read the daemon's credentials (SO_PEERCRED); refusing to send it anything")
        }
        if !trusted(peerUID) {
            throw SocketPathError(
                "unix:\(path): the daemon answering runs as uid \(peerUID), not as this user (uid \(geteuid())) or root; refusing to send it anything")
        }
    }

    /// The effective uid of the process at the other end of the connected Unix socket `fd`
    /// (as it was when that process called `listen`), or nil when it cannot be read.
    static func peerUID(of fd: Int32) -> uid_t? {
        #if os(Linux)
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc does not import it)
            var credentials: [UInt32] = [0, 0, 0]
            var size = socklen_t(MemoryLayout<UInt32>.size * 3)
            let ok = credentials.withUnsafeMutableBytes {
                getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &size) == 0
            }
            guard ok, size == socklen_t(MemoryLayout<UInt32>.size * 3) else { return nil }
            return uid_t(credentials[1])
        #else
            var uid = uid_t(0)
            var gid = gid_t(0)
            return getpeereid(fd, &uid, &gid) == 0 ? uid : nil
        #endif
    }

    /// Checks the directory holding `path` and every directory above it (symbolic links
    /// resolved): the default private directory must be this user's own, mode without group or
    /// other write and not a symbolic link; every directory must be owned by this user or root
    /// and not writable by group or others unless sticky.
    static func checkDirectories(holding path: String, ownDirectory: String) throws {
        let dir = directory(of: path)
        let me = geteuid()
        if dir == ownDirectory {
            var st = stat()
            guard lstat(dir, &st) == 0 else {
                throw SocketPathError("\(dir): \(String(cString: strerror(errno)))")
            }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                throw SocketPathError("\(dir): is a symbolic link, not this user's socket directory; remove it or give --socket")
            }
            if (st.st_mode & S_IFMT) != S_IFDIR { throw SocketPathError("\(dir): is not a directory; remove it or give --socket") }
            if st.st_uid != me {
                throw SocketPathError(
                    "\(dir): owned by uid \(st.st_uid), not by this user (uid \(me)); another user made it: remove it or give --socket")
            }
            if st.st_mode & 0o022 != 0 {
                throw SocketPathError("\(dir): writable by group or others (mode \(octal(st.st_mode))); chmod 700 it or give --socket")
            }
        }
        guard let resolved = realpath(dir, nil) else {
            throw SocketPathError("\(dir): socket directory unusable (\(String(cString: strerror(errno))))")
        }
        var current = String(cString: resolved)
        free(resolved)
        while true {
            var st = stat()
            guard stat(current, &st) == 0 else {
                throw SocketPathError("\(current): \(String(cString: strerror(errno)))")
            }
            if st.st_uid != me && st.st_uid != 0 {
                throw SocketPathError(
                    "\(current): owned by uid \(st.st_uid), neither this user (uid \(me)) nor root; its owner could replace the socket \(path)")
            }
            if st.st_mode & 0o022 != 0 && st.st_mode & S_ISVTX == 0 {
                throw SocketPathError(
                    "\(current): writable by group or others and not sticky (mode \(octal(st.st_mode))); another user could replace the socket \(path)")
            }
            if current == "/" { break }
            current = directory(of: current)
        }
    }

    /// Permission bits as `0755`, with the sticky bit as `1777`.
    private static func octal(_ mode: mode_t) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// A socket path another user could control, or that cannot be checked; the daemon reports it
/// as a `ServeStartError`, the client as a `ClientError`.
struct SocketPathError: Error, CustomStringConvertible {
    /// The path and the problem.
    var description: String
    init(_ description: String) { self.description = description }
}
