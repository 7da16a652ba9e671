import Foundation
import Imaging
import Support
import TestSupport
import XCTest

@testable import Serving

#if canImport(Glibc)
    import Glibc
#endif

/// A scripted server on a Unix socket in a fresh directory: each accepted connection reads the
/// request head and gets the next scripted answer (then the connection closes), so the client
/// meets hostile responses over a real socket.
final class ScriptedServer: @unchecked Sendable {
    let dir: String
    let path: String
    private let listener: Int32
    private let thread: Thread

    /// `answer(i)` writes the i-th answer to the connected `fd` (the request head already read).
    init(connections: Int, answer: @escaping @Sendable (Int, Int32) -> Void) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-client-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir + "/fake.sock"
        listener = try listenUnix(path)
        let listener = listener
        thread = Thread {
            for i in 0..<connections {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                var request: [UInt8] = []
                var byte: UInt8 = 0
                while request.count < 65536 && recv(fd, &byte, 1, 0) == 1 {
                    request.append(byte)
                    if request.suffix(4) == [13, 10, 13, 10] { break }
                }
                answer(i, fd)
                close(fd)
            }
        }
        thread.start()
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A server that sends each of `responses` whole, one per connection.
    convenience init(responses: [[UInt8]]) throws {
        try self.init(connections: responses.count) { i, fd in writeAll(fd, responses[i]) }
    }
}

/// A Unix stream socket bound at `path` (mode as the umask leaves it), not yet listening.
func bindUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard fd >= 0, bound == 0 else { throw ClientError("\(path): cannot bind (\(String(cString: strerror(errno))))") }
    return fd
}

/// A listening Unix socket bound at `path`.
func listenUnix(_ path: String) throws -> Int32 {
    let fd = try bindUnix(path)
    guard listen(fd, 16) == 0 else { throw ClientError("\(path): cannot listen (\(String(cString: strerror(errno))))") }
    return fd
}

/// Writes all of `bytes` to `fd`, ignoring a peer that went away.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return }
        sent += n
    }
}

/// `catlip query`'s side of issue 17: hostile responses, endpoints and timeouts, and the socket
/// path's ownership on both sides (the daemon's preparation and the client's checks, the peer's
/// uid read with SO_PEERCRED).
final class ClientHardeningTests: XCTestCase {
    private func assertClientError(
        _ expression: @autoclosure () throws -> Any, _ fragment: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertTrue(error is ClientError, "\(type(of: error)): \(error)", file: file, line: line)
            let text = "\(error)"
            XCTAssertTrue(text.contains(fragment), "expected '\(fragment)' in: \(text)", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
        }
    }

    // MARK: responses

    func testHostileResponsesAreCleanErrors() throws {
        let cases: [(String, [UInt8])] = [
            ("Content-Length '-1' is not a byte count", Array("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}".utf8)),
            ("Content-Length '99999999999999999999' is not a byte count",
             Array("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n".utf8)),
            ("Content-Length 300000000 is over the client's limit of 268435456 bytes",
             Array("HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n".utf8)),
            ("conflicting Content-Length values", Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".utf8)),
            ("malformed status line \"\\x00\\xFFhello\"", [0, 0xFF] + Array("hello\r\n\r\n".utf8)),
            ("malformed status line \"HTTP/1.1 2000 OK\"", Array("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n".utf8)),
            ("status 999 is not in 100...599", Array("HTTP/1.1 999 What\r\nContent-Length: 0\r\n\r\n".utf8)),
            ("malformed header line \"no colon here\"", Array("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n".utf8)),
            ("in the middle of a response", Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".utf8)),
            ("in the middle of a response head", Array("HTTP/1.1 200 OK\r\nContent-Le".utf8)),
            ("before a response", []),
            ("header section over 65536 bytes",
             Array("HTTP/1.1 200 OK\r\n".utf8) + Array(repeating: Array("X-Padding: aaaaaaaa\r\n".utf8), count: 4000).flatMap { $0 }),
            ("Transfer-Encoding 'gzip' is not supported", Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".utf8)),
            ("both Transfer-Encoding and Content-Length",
             Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".utf8)),
            ("chunked body over the client's limit", Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n".utf8)),
            ("malformed chunk size line \"-5\"", Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n".utf8)),
            ("chunk of 2 bytes not followed by CRLF", Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n".utf8)),
            ("more than 16 interim (1xx) responses",
             Array(repeating: Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), count: 40).flatMap { $0 }),
            ("101 Switching Protocols", Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".utf8)),
        ]
        let server = try ScriptedServer(responses: cases.map { $0.1 })
        for (fragment, _) in cases {
            let client = BlockingHTTPClient(endpoint: .unix(server.path), timeout: 30)
            assertClientError(try client.request(method: "GET", path: "/healthz"), fragment)
        }
    }

    func testWellFormedResponsesParse() throws {
        let server = try ScriptedServer(responses: [
            Array("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello".utf8),
            Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".utf8),
            Array("HTTP/1.0 503 Busy\r\n\r\nuntil the end".utf8),
        ])
        let client = BlockingHTTPClient(endpoint: .unix(server.path), timeout: 30)
        let plain = try client.request(method: "GET", path: "/a")
        XCTAssertEqual(plain.status, 200)
        XCTAssertEqual(plain.text, "hello")
        XCTAssertEqual(plain.headers["x-a"], "b")
        client.disconnect()
        let chunked = try client.request(method: "GET", path: "/b")
        XCTAssertEqual(chunked.text, "hello world")
        client.disconnect()
        let toEnd = try client.request(method: "GET", path: "/c")
        XCTAssertEqual(toEnd.status, 503)
        XCTAssertEqual(toEnd.text, "until the end")
    }

    func testResponseBodyCapAndDripDeadline() throws {
        // a body longer than the client's limit, sent in full until the end of the stream
        let long = Array("HTTP/1.0 200 OK\r\n\r\n".utf8) + [UInt8](repeating: 65, count: 200_000)
        // a server that sends one byte every 100 ms and never finishes: the request's one
        // deadline ends it (every byte would re-arm a per-read timeout)
        let server = try ScriptedServer(connections: 2) { i, fd in
            if i == 0 {
                writeAll(fd, long)
                return
            }
            let head = Array("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".utf8)
            writeAll(fd, head)
            for _ in 0..<600 {
                guard send(fd, "x", 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
                usleep(100_000)
            }
        }
        let capped = BlockingHTTPClient(endpoint: .unix(server.path), timeout: 30)
        capped.maxResponseBytes = 100_000
        assertClientError(try capped.request(method: "GET", path: "/"), "body over the client's limit of 100000 bytes")
        let started = Date()
        let dripped = BlockingHTTPClient(endpoint: .unix(server.path), timeout: 1)
        assertClientError(try dripped.request(method: "GET", path: "/"), "timed out after 1.0 s waiting for unix:\(server.path)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "the deadline is not re-armed by each byte")
    }

    /// Mutated valid responses through the reader in random pieces: each ends in a one-line
    /// ClientError or in a response that agrees with its own headers.
    func testFuzzResponseReader() throws {
        let bases: [String] = [
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: keep-alive\r\n\r\n{\"embeddings\": [[0.5, 1]]}\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: 1\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread to the end",
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        ]
        var rng = SeededGenerator(seed: 1717)
        let cases = Fuzz.caseCount(quick: 30_000)
        var parsed = 0
        for n in 0..<cases {
            let base = bases[n % bases.count]
            let input = Bool.random(using: &rng)
                ? Fuzz.mutate(Array(base.utf8), using: &rng) : Array(Fuzz.mutateText(base, using: &rng).utf8)
            var pieces: [Int] = []
            var total = 0
            while total < input.count {
                let size = Int.random(in: 1...64, using: &rng)
                pieces.append(size)
                total += size
            }
            var reader = HTTPResponseReader(source: "fuzz case \(n)")
            reader.maxBodyBytes = 1 << 20
            var offset = 0
            var piece = 0
            do {
                let (response, _) = try reader.read(headOnly: false) { buffer in
                    guard offset < input.count else { return false }
                    let end = min(input.count, offset + pieces[piece])
                    buffer.append(contentsOf: input[offset..<end])
                    offset = end
                    piece += 1
                    return true
                }
                parsed += 1
                XCTAssertTrue((200...599).contains(response.status), "case \(n): status \(response.status)")
                XCTAssertLessThanOrEqual(response.body.count, 1 << 20, "case \(n)")
                if let length = response.headers["content-length"].flatMap({ Int($0) }), response.headers["transfer-encoding"] == nil,
                    response.status != 204 && response.status != 304
                {
                    XCTAssertEqual(response.body.count, length, "case \(n): body against Content-Length")
                }
                if input == Array(base.utf8) {
                    XCTAssertEqual(response.text, ["{\"embeddings\": [[0.5, 1]]}\n", "Wikipedia", "{}", "read to the end", ""][n % bases.count], "case \(n)")
                }
            } catch let error as ClientError {
                XCTAssertFalse(error.description.isEmpty, "case \(n)")
                XCTAssertFalse(error.description.contains("\n"), "case \(n): \(error)")
            } catch {
                XCTFail("case \(n): unexpected error type \(type(of: error)): \(error)")
            }
        }
        XCTAssertGreaterThan(parsed, 0, "some mutants still parse")
    }

    // MARK: endpoints and timeouts

    func testEndpointParsing() throws {
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:70000"), "--url http://127.0.0.1:70000: port '70000' is not a number in 1...65535")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:0"), "port '0' is not a number in 1...65535")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:http"), "port 'http'")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:-80"), "port '-80'")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:99999999999999999999"), "port '99999999999999999999'")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.evil.com:8080"), "host '127.evil.com' is not an IPv4 address")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1.evil.com:8080"), "is not an IPv4 address")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://[::1]x:8080"), "is not an IPv4 address")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://[nope]:8080"), "'[nope]' is not an IPv6 address")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "https://127.0.0.1:8080"), "expected http://HOST:PORT")
        assertClientError(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1"), "expected http://HOST:PORT")
        assertClientError(try ServeEndpoint.from(socket: "", url: nil), "--socket: empty path")
        XCTAssertEqual(try ServeEndpoint.from(socket: nil, url: "http://127.0.0.1:8080/v1"), .tcp(host: "127.0.0.1", port: 8080))
        XCTAssertEqual(try ServeEndpoint.from(socket: nil, url: "http://localhost:1"), .tcp(host: "localhost", port: 1))
        let v6 = try ServeEndpoint.from(socket: nil, url: "http://[::1]:8080")
        XCTAssertEqual(v6, .tcp(host: "::1", port: 8080))
        XCTAssertEqual(v6.description, "http://[::1]:8080")
        // a remote daemon (started with --allow-remote) may still be asked
        XCTAssertEqual(try ServeEndpoint.from(socket: nil, url: "http://10.1.2.3:65535"), .tcp(host: "10.1.2.3", port: 65535))

        for host in ["127.0.0.1", "127.255.255.254", "127.1.2.3", "localhost", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"] {
            XCTAssertTrue(ServeEndpoint.isLoopback(host), host)
        }
        for host in ["127.evil.com", "127.0.0.1.evil.com", "127.1", "127.0.0.01", "127.0.0.256", "127.0.0.1 ", "0x7f.0.0.1", "10.0.0.1",
                     "0.0.0.0", "::", "::2", "localhost.evil.com", "", "[::1", "127.0.0.-1", "１２７.0.0.1"]
        {
            XCTAssertFalse(ServeEndpoint.isLoopback(host), host)
        }
        // the daemon's --listen takes the same strict view of loopback
        XCTAssertThrowsError(try ServingDaemon.parseListen("127.evil.com:8080", allowRemote: false)) {
            XCTAssertTrue("\($0)".contains("not a loopback address"), "\($0)")
        }
        XCTAssertEqual(try ServingDaemon.parseListen("127.0.0.1:0", allowRemote: false).0, "127.0.0.1")
        XCTAssertEqual(try ServingDaemon.parseListen("[::1]:8080", allowRemote: false).0, "::1")
    }

    func testTimeoutsAreCheckedAndConvertedSafely() throws {
        for bad in [Double.infinity, -.infinity, .nan, 0, -1, 1e300, 86_400.5, -0.0] {
            assertClientError(try BlockingHTTPClient.checkTimeout(bad, option: "--timeout"), "--timeout \(bad): must be a finite number of seconds above 0 and at most 86400")
            assertClientError(try ServeEndpoint.unix("/nonexistent/x.sock").connectSocket(timeout: bad), "timeout \(bad): must be")
            assertClientError(try BlockingHTTPClient(endpoint: .unix("/nonexistent/x.sock"), timeout: bad).request(method: "GET", path: "/"), "must be a finite number")
        }
        XCTAssertNoThrow(try BlockingHTTPClient.checkTimeout(86_400, option: "--timeout"))
        XCTAssertNoThrow(try BlockingHTTPClient.checkTimeout(1e-9, option: "--timeout"))
        func pair(_ s: Double) -> [Int] {
            let tv = BlockingHTTPClient.timeval(seconds: s)
            return [tv.tv_sec, tv.tv_usec]
        }
        XCTAssertEqual(pair(1e-9), [0, 1], "never {0, 0}, which would mean no timeout")
        XCTAssertEqual(pair(1.5), [1, 500_000])
        XCTAssertEqual(pair(0.99999999), [1, 0])
        XCTAssertEqual(pair(86_400), [86_400, 0])
    }

    // MARK: socket paths

    private func scratchDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-sockpath-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    private func assertRefused(_ path: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ServingDaemon.prepareSocketPath(path), file: file, line: line) { error in
            XCTAssertTrue(error is ServeStartError, "\(type(of: error))", file: file, line: line)
            XCTAssertTrue("\(error)".contains(fragment), "expected '\(fragment)' in: \(error)", file: file, line: line)
        }
    }

    func testDaemonRefusesPathsItDoesNotOwn() throws {
        let dir = try scratchDirectory()
        // a symbolic link at the path: neither followed nor removed
        let target = dir + "/target"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: target))
        XCTAssertEqual(symlink(target, dir + "/link.sock"), 0)
        assertRefused(dir + "/link.sock", "\(dir)/link.sock: is a symbolic link; not following or removing it")
        var st = stat()
        XCTAssertEqual(lstat(dir + "/link.sock", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFLNK)
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "precious")
        // a regular file: kept
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir + "/file.sock"))
        assertRefused(dir + "/file.sock", "exists and is not a socket; not replacing it")
        XCTAssertEqual(try String(contentsOfFile: dir + "/file.sock", encoding: .utf8), "keep")
        // a group- or other-writable directory that is not sticky
        let open = dir + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        XCTAssertEqual(chmod(open, 0o777), 0)
        assertRefused(open + "/d.sock", "\(open): writable by group or others and not sticky (mode 0777)")
        XCTAssertEqual(chmod(open, 0o775), 0)
        assertRefused(open + "/d.sock", "(mode 0775)")
        // sticky, as /tmp: others cannot replace what is ours, so it is allowed
        XCTAssertEqual(chmod(open, 0o1777), 0)
        XCTAssertNoThrow(try ServingDaemon.prepareSocketPath(open + "/d.sock"))
        // a directory above the socket's that is writable by others
        try FileManager.default.createDirectory(atPath: open + "/inner", withIntermediateDirectories: false)
        XCTAssertEqual(chmod(open, 0o777), 0)
        assertRefused(open + "/inner/d.sock", "\(open): writable by group or others and not sticky")
    }

    func testDaemonRefusesWhatAnotherUserOwns() throws {
        guard geteuid() == 0 else { throw XCTSkip("chown to another uid needs root") }
        let dir = try scratchDirectory()
        // a socket file owned by another uid: not removed
        let foreign = dir + "/foreign.sock"
        let fd = try listenUnix(foreign)
        close(fd)
        XCTAssertEqual(chown(foreign, 65534, 65534), 0)
        assertRefused(foreign, "\(foreign): a socket owned by uid 65534, not by this user (uid 0); not removing it")
        var st = stat()
        XCTAssertEqual(lstat(foreign, &st), 0, "the foreign socket is left in place")
        // a directory owned by another uid
        let theirs = dir + "/theirs"
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: false)
        XCTAssertEqual(chown(theirs, 65534, 65534), 0)
        assertRefused(theirs + "/d.sock", "\(theirs): owned by uid 65534, neither this user (uid 0) nor root")
    }

    func testOwnDirectoryIsCreatedPrivateAndVerified() throws {
        let dir = try scratchDirectory()
        let own = dir + "/catlip-own"
        XCTAssertFalse(try SocketPath.checkBeforeBind(own + "/catlip.sock", ownDirectory: own))
        var st = stat()
        XCTAssertEqual(lstat(own, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFDIR)
        XCTAssertEqual(st.st_mode & 0o077, 0, "created without group or other access")
        XCTAssertEqual(st.st_uid, geteuid())
        // group-writable: refused on both sides
        XCTAssertEqual(chmod(own, 0o770), 0)
        XCTAssertThrowsError(try SocketPath.checkBeforeBind(own + "/catlip.sock", ownDirectory: own)) {
            XCTAssertTrue("\($0)".contains("\(own): writable by group or others (mode 0770)"), "\($0)")
        }
        let fd = try listenUnix(own + "/catlip.sock")
        defer { close(fd) }
        XCTAssertThrowsError(try SocketPath.checkBeforeConnect(own + "/catlip.sock", ownDirectory: own)) {
            XCTAssertTrue("\($0)".contains("writable by group or others"), "\($0)")
        }
        XCTAssertEqual(chmod(own, 0o700), 0)
        XCTAssertNoThrow(try SocketPath.checkBeforeConnect(own + "/catlip.sock", ownDirectory: own))
        // planted as a symbolic link to a directory of ours: still refused
        let planted = dir + "/planted"
        XCTAssertEqual(symlink(own, planted), 0)
        XCTAssertThrowsError(try SocketPath.checkBeforeBind(planted + "/catlip.sock", ownDirectory: planted)) {
            XCTAssertTrue("\($0)".contains("\(planted): is a symbolic link"), "\($0)")
        }
        if geteuid() == 0 {
            XCTAssertEqual(chown(own, 65534, 65534), 0)
            XCTAssertThrowsError(try SocketPath.checkBeforeBind(own + "/other.sock", ownDirectory: own)) {
                XCTAssertTrue("\($0)".contains("\(own): owned by uid 65534, not by this user (uid 0); another user made it"), "\($0)")
            }
        }
        XCTAssertTrue(ServeOptions.defaultSocketPath.hasSuffix("/catlip.sock"))
        if (ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "").isEmpty {
            XCTAssertEqual(ServeOptions.defaultSocketPath, "/tmp/catlip-\(getuid())/catlip.sock")
        }
    }

    func testClientRefusesSocketsItCannotTrust() throws {
        let dir = try scratchDirectory()
        let path = dir + "/d.sock"
        let fd = try listenUnix(path)
        defer { close(fd) }
        // ours: connects, and the peer read with SO_PEERCRED is this process's uid
        let client = try ServeEndpoint.unix(path).connectSocket(timeout: 5)
        XCTAssertEqual(SocketPath.peerUID(of: client), geteuid())
        close(client)
        // a symbolic link to it
        XCTAssertEqual(symlink(path, dir + "/link.sock"), 0)
        assertClientError(try ServeEndpoint.unix(dir + "/link.sock").connectSocket(), "unix:\(dir)/link.sock: is a symbolic link")
        // in a directory others can write to
        XCTAssertEqual(chmod(dir, 0o777), 0)
        assertClientError(try ServeEndpoint.unix(path).connectSocket(), "\(dir): writable by group or others and not sticky")
        XCTAssertEqual(chmod(dir, 0o755), 0)
        // owned by another uid
        if geteuid() == 0 {
            XCTAssertEqual(chown(path, 65534, 65534), 0)
            assertClientError(
                try BlockingHTTPClient(endpoint: .unix(path)).request(method: "GET", path: "/healthz"),
                "unix:\(path): the socket is owned by uid 65534, not by this user (uid 0) or root; refusing to talk to it")
        }
        // the judgement on the peer
        XCTAssertNoThrow(try SocketPath.checkPeer(uid: geteuid(), path: path))
        XCTAssertNoThrow(try SocketPath.checkPeer(uid: 0, path: path))
        XCTAssertThrowsError(try SocketPath.checkPeer(uid: 65534, path: path)) {
            XCTAssertTrue("\($0)".contains("unix:\(path): the daemon answering runs as uid 65534, not as this user"), "\($0)")
        }
        XCTAssertThrowsError(try SocketPath.checkPeer(uid: nil, path: path)) {
            XCTAssertTrue("\($0)".contains("cannot read the daemon's credentials"), "\($0)")
        }
    }

    /// A real peer of another uid: a forked child binds (as root, so the file passes the owner
    /// check), drops to uid 65534, listens and waits; the client must refuse it after connecting.
    func testClientRefusesAPeerOfAnotherUID() throws {
        guard geteuid() == 0 else { throw XCTSkip("setuid to another uid needs root") }
        let dir = try scratchDirectory()
        let path = dir + "/impostor.sock"
        var ready: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ready), 0)
        let listener = try bindUnix(path)
        let writeEnd = ready[1]
        let child = fork()
        if child == 0 {
            // the child: system calls only, then exit (a safety alarm ends it if nobody calls)
            alarm(30)
            if setgid(65534) != 0 || setuid(65534) != 0 { _exit(2) }
            if listen(listener, 4) != 0 { _exit(3) }
            var one: UInt8 = 1
            _ = write(writeEnd, &one, 1)
            let fd = accept(listener, nil, nil)
            var byte: UInt8 = 0
            _ = recv(fd, &byte, 1, 0)
            _exit(0)
        }
        XCTAssertGreaterThan(child, 0)
        close(listener)
        close(writeEnd)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            close(ready[0])
        }
        var one: UInt8 = 0
        XCTAssertEqual(read(ready[0], &one, 1), 1, "the child listens")
        assertClientError(
            try BlockingHTTPClient(endpoint: .unix(path), timeout: 10).request(method: "GET", path: "/healthz"),
            "unix:\(path): the daemon answering runs as uid 65534, not as this user (uid 0) or root; refusing to send it anything")
    }
}
