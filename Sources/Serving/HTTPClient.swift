import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where a daemon listens: a Unix socket path or a TCP host and port.
public enum ServeEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// A Unix domain socket.
    case unix(String)
    /// A TCP host (an IPv4 literal, an IPv6 literal without brackets, or `localhost`) and port.
    case tcp(host: String, port: Int)

    /// From `--socket PATH` or `--url http://HOST:PORT`; the default socket when neither. HOST is
    /// an IPv4 address in four decimal octets, `[IPv6]` or `localhost` (names are not looked up),
    /// PORT is 1...65535; hosts off this machine are allowed, for a daemon started with
    /// `--allow-remote`.
    public static func from(socket: String?, url: String?) throws -> ServeEndpoint {
        if let url {
            let usage = "--url \(url): expected http://HOST:PORT (HOST an IPv4 address, [IPv6 address] or localhost)"
            guard url.hasPrefix("http://") else { throw ClientError(usage) }
            let authority = String(url.dropFirst("http://".count).prefix { $0 != "/" && $0 != "?" && $0 != "#" })
            guard let colon = authority.lastIndex(of: ":") else { throw ClientError(usage) }
            var host = String(authority[..<colon])
            let portText = authority[authority.index(after: colon)...]
            guard (1...5).contains(portText.utf8.count), portText.utf8.allSatisfy({ (48...57).contains($0) }),
                let port = Int(portText), (1...65535).contains(port)
            else { throw ClientError("--url \(url): port '\(portText)' is not a number in 1...65535") }
            if host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 {
                host = String(host.dropFirst().dropLast())
                guard ServeEndpoint.ipv6Address(host) != nil else {
                    throw ClientError("--url \(url): '[\(host)]' is not an IPv6 address")
                }
            } else if host != "localhost" && ServeEndpoint.ipv4Address(host) == nil {
                throw ClientError(
                    "--url \(url): host '\(host)' is not an IPv4 address (four decimal octets), [IPv6 address] or localhost; names are not looked up")
            }
            return .tcp(host: host, port: port)
        }
        if let socket, socket.isEmpty { throw ClientError("--socket: empty path") }
        return .unix(socket ?? ServeOptions.defaultSocketPath)
    }

    /// `unix:PATH` or `http://HOST:PORT` (`http://[HOST]:PORT` for IPv6).
    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        }
    }

    /// Whether `host` names this machine's loopback interface: `localhost`, an IPv4 literal
    /// 127.x.y.z written as four decimal octets of at most 255 (no leading zeros), or `::1`
    /// (also in brackets, or as `::ffff:127.x.y.z`). A name that merely starts with "127." is not.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" { return true }
        if let v4 = ipv4Address(host) { return v4[0] == 127 }
        var literal = host
        if literal.hasPrefix("[") && literal.hasSuffix("]") && literal.count >= 2 { literal = String(literal.dropFirst().dropLast()) }
        guard let v6 = ipv6Address(literal) else { return false }
        if v6[0..<15].allSatisfy({ $0 == 0 }) && v6[15] == 1 { return true }
        return v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xFF && v6[11] == 0xFF && v6[12] == 127
    }

    /// The four bytes of a strict dotted-decimal IPv4 literal (each octet 1-3 digits, at most
    /// 255, no leading zero), or nil: `127.1`, `0x7f.0.0.1` and `127.0.0.1.evil` are not.
    static func ipv4Address(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            let digits = Array(part.utf8)
            guard (1...3).contains(digits.count), digits.allSatisfy({ (48...57).contains($0) }),
                digits.count == 1 || digits[0] != 48,
                let value = Int(part), value <= 255
            else { return nil }
            bytes.append(UInt8(value))
        }
        return bytes
    }

    /// The sixteen bytes of an IPv6 literal (no brackets, no zone), or nil.
    static func ipv6Address(_ text: String) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count <= 45, !text.contains("%") else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// Connects `fd` to `address` (a sockaddr_un, sockaddr_in or sockaddr_in6); closes it on failure.
    private func connect<Address>(_ fd: Int32, to address: inout Address) throws {
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0
            }
        }
        if !ok {
            let reason = errno == EINPROGRESS || errno == EAGAIN ? "timed out" : String(cString: strerror(errno))
            close(fd)
            throw ClientError("cannot connect to \(self) (\(reason)); is catlip serve running?")
        }
    }

    /// A connected, blocking stream socket with receive/send (and connect) timeouts of `timeout`
    /// seconds (finite, above 0, at most `BlockingHTTPClient.maxTimeout`). On a Unix socket the
    /// path is checked first (`SocketPath`: the directories, a socket file of this user's or
    /// root's) and, with `verifyPeer`, the listening process's uid (SO_PEERCRED) after
    /// connecting, before anything is sent. A TCP peer's uid is not checked (not available
    /// without reading the kernel's connection tables).
    public func connectSocket(timeout: Double = 60, verifyPeer: Bool = true) throws -> Int32 {
        try BlockingHTTPClient.checkTimeout(timeout, option: "timeout")
        var tv = BlockingHTTPClient.timeval(seconds: timeout)
        func connected<Address>(_ domain: Int32, to address: inout Address) throws -> Int32 {
            let fd = socket(domain, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ClientError("socket: \(String(cString: strerror(errno)))") }
            // set before connect: Linux bounds a blocking connect by the send timeout
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            try connect(fd, to: &address)
            return fd
        }
        switch self {
        case .unix(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            guard !path.isEmpty, path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
                throw ClientError("unix:\(path): socket path empty or too long (the limit is 107 bytes)")
            }
            if verifyPeer {
                do { try SocketPath.checkBeforeConnect(path) } catch let error as SocketPathError { throw ClientError(error.description) }
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            let fd = try connected(AF_UNIX, to: &address)
            if verifyPeer {
                do {
                    try SocketPath.checkPeer(uid: SocketPath.peerUID(of: fd), path: path)
                } catch let error as SocketPathError {
                    close(fd)
                    throw ClientError(error.description)
                }
            }
            return fd  // writes use MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE
        case .tcp(let host, let port):
            guard (1...65535).contains(port) else { throw ClientError("\(self): port \(port) is not in 1...65535") }
            let fd: Int32
            let portBytes = in_port_t(UInt16(port).bigEndian)
            if let v4 = ServeEndpoint.ipv4Address(host == "localhost" ? "127.0.0.1" : host) {
                var address = sockaddr_in()
                (address.sin_family, address.sin_port) = (sa_family_t(AF_INET), portBytes)
                withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: v4) }
                fd = try connected(AF_INET, to: &address)
            } else if let v6 = ServeEndpoint.ipv6Address(host) {
                var address = sockaddr_in6()
                (address.sin6_family, address.sin6_port) = (sa_family_t(AF_INET6), portBytes)
                withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: v6) }
                fd = try connected(AF_INET6, to: &address)
            } else {
                throw ClientError("\(host): not an IPv4 or IPv6 address")
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
    }
}

/// A client-side failure: a bad endpoint or timeout, a refused socket or peer, a connection
/// failure, a timeout or a malformed response. The message names the endpoint or option.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// The server closed a kept-alive connection before answering: the request may be resent
    /// on a new connection.
    var closedBeforeResponse = false
    /// An error with its message.
    public init(_ description: String) { self.description = description }
}

/// An HTTP response as the client received it.
public struct ClientResponse: Sendable {
    /// Status code.
    public var status: Int
    /// Headers, names lower-cased.
    public var headers: [String: String]
    /// The body.
    public var body: [UInt8]
    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A small blocking HTTP/1.1 client with keep-alive, for `catlip query`, `catlip bench serve`
/// and tests: one connection, reopened when the server closed it. Each request has one deadline
/// of `timeout` seconds for sending it and receiving the whole answer (a server that drips bytes
/// does not extend it); responses are read by `HTTPResponseReader` within its limits.
public final class BlockingHTTPClient {
    /// Where it connects.
    public let endpoint: ServeEndpoint
    /// The longest timeout accepted, in seconds: one day.
    public static let maxTimeout: Double = 86_400
    private let timeout: Double
    private var fd: Int32 = -1
    private var reader: HTTPResponseReader
    private var deadline: UInt64 = 0
    private var scratch = [UInt8](repeating: 0, count: 65536)

    /// A client for `endpoint`; connects on the first request. `timeout` is checked then
    /// (`checkTimeout`).
    public init(endpoint: ServeEndpoint, timeout: Double = 60) {
        self.endpoint = endpoint
        self.timeout = timeout
        reader = HTTPResponseReader(source: endpoint.description)
    }

    deinit { disconnect() }

    /// Largest response body accepted, in bytes (`HTTPResponseReader.defaultMaxBodyBytes`,
    /// 256 MiB, unless changed); a longer answer is an error, not an allocation.
    public var maxResponseBytes: Int {
        get { reader.maxBodyBytes }
        set { reader.maxBodyBytes = max(0, newValue) }
    }

    /// Throws unless `seconds` is a finite number above 0 and at most `maxTimeout`; the message
    /// names `option` (e.g. `--timeout`).
    public static func checkTimeout(_ seconds: Double, option: String) throws {
        guard seconds.isFinite, seconds > 0, seconds <= maxTimeout else {
            throw ClientError("\(option) \(seconds): must be a finite number of seconds above 0 and at most \(Int(maxTimeout))")
        }
    }

    /// `seconds` (checked by `checkTimeout`) as a timeval; never {0, 0}, which means "no timeout".
    static func timeval(seconds: Double) -> timeval {
        let whole = seconds.rounded(.down)
        var sec = Int(whole)
        var micro = Int(((seconds - whole) * 1e6).rounded(.up))
        if micro >= 1_000_000 {
            sec += 1
            micro = 0
        }
        if sec == 0 && micro == 0 { micro = 1 }
        return Glibc.timeval(tv_sec: sec, tv_usec: micro)
    }

    /// Closes the connection (the next request opens a new one).
    public func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        reader.reset()
    }

    /// Sends one request and reads its response. A kept-alive connection the server had closed
    /// is reopened once. Any error closes the connection.
    public func request(
        method: String, path: String, contentType: String? = nil, body: [UInt8] = []
    ) throws -> ClientResponse {
        try BlockingHTTPClient.checkTimeout(timeout, option: "timeout")
        deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeout * 1e9)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(body.count)\r\n"
        if let contentType { head += "Content-Type: \(contentType)\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + body
        let reused = fd >= 0
        do {
            return try exchange(bytes, headOnly: method == "HEAD")
        } catch let error as ClientError where reused && error.closedBeforeResponse {
            disconnect()
            return try exchange(bytes, headOnly: method == "HEAD")
        }
    }

    private func exchange(_ bytes: [UInt8], headOnly: Bool) throws -> ClientResponse {
        do {
            if fd < 0 { fd = try endpoint.connectSocket(timeout: timeout) }
            try sendAll(bytes)
            let (response, close) = try reader.read(headOnly: headOnly) { try self.receive(into: &$0) }
            if close { disconnect() }
            return response
        } catch {
            disconnect()
            throw error
        }
    }

    /// Waits until `fd` is ready for `events` or the request's deadline passes.
    private func wait(for events: Int32) throws {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { throw ClientError("timed out after \(timeout) s waiting for \(endpoint)") }
            var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ms = Int32(min((deadline - now + 999_999) / 1_000_000, UInt64(Int32.max)))
            let ready = poll(&entry, 1, ms)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw ClientError("poll: \(String(cString: strerror(errno)))") }
        }
    }

    private func sendAll(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            try wait(for: Int32(POLLOUT))
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                let reason = String(cString: strerror(errno))
                var error = ClientError(errno == EPIPE || errno == ECONNRESET ? "connection closed while sending" : "send: \(reason)")
                error.closedBeforeResponse = errno == EPIPE || errno == ECONNRESET
                throw error
            }
            sent += n
        }
    }

    /// Appends the bytes that arrive next to `buffer`; false at end of stream. Must not touch
    /// `reader` (it is being read through).
    private func receive(into buffer: inout [UInt8]) throws -> Bool {
        while true {
            try wait(for: Int32(POLLIN))
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: scratch[0..<n])
                return true
            }
            if n == 0 { return false }
            if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
            if errno == ECONNRESET { return false }
            throw ClientError("recv: \(String(cString: strerror(errno)))")
        }
    }
}

/// Reads HTTP/1.1 responses from a byte stream, treating every byte as untrusted: a status line
/// `HTTP/1.x NNN reason` with NNN in 100...599, a header section of at most `maxHeaderBytes`
/// with well-formed `name: value` lines, then a body by `Content-Length` (decimal digits only,
/// at most `maxBodyBytes`, repeated values must agree), by `Transfer-Encoding: chunked` (the
/// same cap on the decoded size) or up to the end of the stream (the same cap). Interim 1xx
/// responses are skipped, at most `maxInterimResponses` of them. Every problem is a
/// one-line `ClientError` naming the source.
struct HTTPResponseReader {
    /// Largest header section (status line, headers, and the trailers of a chunked body).
    static let maxHeaderBytes = 64 << 10
    /// Default largest body: 256 MiB, far above any answer of the daemon (a batch of 64
    /// embeddings of 768 values is under 1 MiB of JSON) and small enough to allocate.
    static let defaultMaxBodyBytes = 256 << 20
    /// Most interim (1xx) responses before the final one.
    static let maxInterimResponses = 16
    /// Longest chunk-size line of a chunked body.
    static let maxChunkLineBytes = 1024

    /// Names the peer in messages, e.g. `unix:/tmp/catlip-1000/catlip.sock`.
    let source: String
    /// Largest body accepted, in bytes.
    var maxBodyBytes = defaultMaxBodyBytes
    /// Received bytes; those before `start` are consumed.
    private var buffer: [UInt8] = []
    private var start = 0

    /// A reader for the stream from `source`.
    init(source: String) { self.source = source }

    /// Forgets buffered bytes (a new connection).
    mutating func reset() {
        buffer = []
        start = 0
    }

    /// Reads the next final response; `more` appends received bytes to its argument and returns
    /// false at the end of the stream. Also says whether the connection must be closed after it.
    mutating func read(
        headOnly: Bool, more: (inout [UInt8]) throws -> Bool
    ) throws -> (response: ClientResponse, close: Bool) {
        var interim = 0
        while true {
            let (version, status, headers, contentLengths) = try readHead(more: more, first: interim == 0)
            if (100..<200).contains(status) {
                if status == 101 { throw problem("101 Switching Protocols, which this client never asks for") }
                interim += 1
                if interim > HTTPResponseReader.maxInterimResponses {
                    throw problem("more than \(HTTPResponseReader.maxInterimResponses) interim (1xx) responses")
                }
                continue
            }
            let connection = (headers["connection"] ?? "").lowercased().split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            var close = connection.contains("close") || (version == 0 && !connection.contains("keep-alive"))
            var body: [UInt8] = []
            let encoding = headers["transfer-encoding"].map { $0.lowercased() }
            if headOnly || status == 204 || status == 304 {
            } else if let encoding {
                guard encoding == "chunked" else { throw problem("Transfer-Encoding '\(printable(encoding))' is not supported") }
                guard contentLengths.isEmpty else { throw problem("both Transfer-Encoding and Content-Length") }
                body = try readChunked(more: more)
            } else if let text = contentLengths.first {
                guard contentLengths.allSatisfy({ $0 == text }) else { throw problem("conflicting Content-Length values") }
                guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ (48...57).contains($0) }),
                    let length = Int(text)
                else { throw problem("Content-Length '\(printable(text))' is not a byte count") }
                guard length <= maxBodyBytes else {
                    throw problem("Content-Length \(length) is over the client's limit of \(maxBodyBytes) bytes")
                }
                try need(length, more: more)
                body = Array(buffer[start..<(start + length)])
                start += length
            } else {
                while try more(&buffer) {
                    if buffer.count - start > maxBodyBytes {
                        throw problem("body over the client's limit of \(maxBodyBytes) bytes")
                    }
                }
                body = Array(buffer[start...])
                start = buffer.count
                close = true
            }
            compact()
            return (ClientResponse(status: status, headers: headers, body: body), close)
        }
    }

    /// A `ClientError` naming the source.
    private func problem(_ text: String) -> ClientError { ClientError("response from \(source): \(text)") }

    /// Drops consumed bytes once they are the larger part of the buffer.
    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            start = 0
        } else if start > 1 << 16 && start > buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }

    /// Waits for `count` unconsumed bytes.
    private mutating func need(_ count: Int, more: (inout [UInt8]) throws -> Bool) throws {
        while buffer.count - start < count {
            guard try more(&buffer) else { throw ClientError("connection closed by \(source) in the middle of a response") }
        }
    }

    /// The status line and headers up to the blank line; header names lower-cased, the last of
    /// repeated headers kept (all Content-Length values returned for the caller to compare).
    private mutating func readHead(
        more: (inout [UInt8]) throws -> Bool, first: Bool
    ) throws -> (version: Int, status: Int, headers: [String: String], contentLengths: [String]) {
        var scanFrom = start
        var end: Int?
        while end == nil {
            var i = scanFrom
            while i + 3 < buffer.count {
                if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                    end = i
                    break
                }
                i += 1
            }
            if let found = end, found - start <= HTTPResponseReader.maxHeaderBytes { break }
            if end != nil || buffer.count - start > HTTPResponseReader.maxHeaderBytes {
                throw problem("header section over \(HTTPResponseReader.maxHeaderBytes) bytes")
            }
            scanFrom = max(start, buffer.count - 3)
            guard try more(&buffer) else {
                if first && buffer.count == start {
                    var error = ClientError("connection closed by \(source) before a response")
                    error.closedBeforeResponse = true
                    throw error
                }
                throw ClientError("connection closed by \(source) in the middle of a response head")
            }
        }
        let headEnd = end!
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = start
        var i = start
        while i < headEnd {
            if buffer[i] == 13 && buffer[i + 1] == 10 {
                lines.append(buffer[lineStart..<i])
                lineStart = i + 2
                i += 2
            } else {
                i += 1
            }
        }
        lines.append(buffer[lineStart..<headEnd])
        start = headEnd + 4

        let statusLine = Array(lines.removeFirst())
        let digit: (UInt8) -> Bool = { (48...57).contains($0) }
        guard statusLine.count >= 12, Array(statusLine[0..<7]) == Array("HTTP/1.".utf8), digit(statusLine[7]),
            statusLine[8] == 32, statusLine[9..<12].allSatisfy(digit), statusLine.count == 12 || statusLine[12] == 32
        else { throw problem("malformed status line \"\(printable(statusLine))\"") }
        let status = statusLine[9..<12].reduce(0) { $0 * 10 + Int($1 - 48) }
        guard (100...599).contains(status) else { throw problem("status \(status) is not in 100...599") }

        var headers: [String: String] = [:]
        var contentLengths: [String] = []
        for line in lines {
            guard let colon = line.firstIndex(of: 58), colon > line.startIndex,
                line[line.startIndex..<colon].allSatisfy(HTTPResponseReader.isTokenByte)
            else { throw problem("malformed header line \"\(printable(Array(line)))\"") }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            if name == "content-length" { contentLengths.append(value) }
            headers[name] = value
        }
        return (Int(statusLine[7] - 48), status, headers, contentLengths)
    }

    /// RFC 9110 token characters (header names).
    private static func isTokenByte(_ b: UInt8) -> Bool {
        (48...57).contains(b) || (65...90).contains(b) || (97...122).contains(b) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }

    /// The next CRLF-terminated line (without the CRLF), at most `limit` bytes.
    private mutating func readLine(limit: Int, what: String, more: (inout [UInt8]) throws -> Bool) throws -> [UInt8] {
        var scanFrom = start
        while true {
            var i = scanFrom
            while i + 1 < buffer.count {
                if buffer[i] == 13 && buffer[i + 1] == 10 {
                    guard i - start <= limit else { throw problem("\(what) over \(limit) bytes") }
                    let line = Array(buffer[start..<i])
                    start = i + 2
                    return line
                }
                i += 1
            }
            if buffer.count - start > limit + 1 { throw problem("\(what) over \(limit) bytes") }
            scanFrom = max(start, buffer.count - 1)
            guard try more(&buffer) else { throw ClientError("connection closed by \(source) in the middle of a response") }
        }
    }

    /// A chunked body: hex chunk sizes (extensions ignored), each chunk followed by CRLF, then
    /// trailer lines up to a blank one; the decoded size within `maxBodyBytes`.
    private mutating func readChunked(more: (inout [UInt8]) throws -> Bool) throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let line = try readLine(limit: HTTPResponseReader.maxChunkLineBytes, what: "chunk size line", more: more)
            let sizeBytes = line.prefix { $0 != 59 }.filter { $0 != 32 && $0 != 9 }
            let hex: (UInt8) -> Bool = { (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) }
            guard (1...16).contains(sizeBytes.count), sizeBytes.allSatisfy(hex),
                let size = UInt64(String(decoding: sizeBytes, as: UTF8.self), radix: 16)
            else { throw problem("malformed chunk size line \"\(printable(line))\"") }
            guard size <= UInt64(maxBodyBytes - body.count) else {
                throw problem("chunked body over the client's limit of \(maxBodyBytes) bytes")
            }
            if size == 0 { break }
            let count = Int(size)
            try need(count + 2, more: more)
            guard buffer[start + count] == 13 && buffer[start + count + 1] == 10 else {
                throw problem("chunk of \(count) bytes not followed by CRLF")
            }
            body.append(contentsOf: buffer[start..<(start + count)])
            start += count + 2
            compact()
        }
        var trailerBytes = 0
        while true {
            let line = try readLine(limit: max(0, HTTPResponseReader.maxHeaderBytes - trailerBytes), what: "trailer section", more: more)
            if line.isEmpty { return body }
            trailerBytes += line.count + 2
        }
    }

    /// Up to 80 bytes of `bytes` as one line of text: bytes outside printable ASCII as `\xNN`.
    private func printable(_ bytes: [UInt8]) -> String {
        var text = ""
        for b in bytes.prefix(80) { text += (32...126).contains(b) && b != 34 && b != 92 ? String(UnicodeScalar(b)) : String(format: "\\x%02X", b) }
        return bytes.count > 80 ? text + "..." : text
    }

    /// `printable` of a string's UTF-8 bytes.
    private func printable(_ text: String) -> String { printable(Array(text.utf8)) }
}
