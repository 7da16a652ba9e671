import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where a daemon listens: a Unix socket path or a TCP host and port.
public enum ServeEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// A Unix domain socket.
    case unix(String)
    /// A TCP host (IPv4 literal or `localhost`) and port.
    case tcp(host: String, port: Int)

    /// From `--socket PATH` or `--url http://HOST:PORT`; the default socket when neither.
    public static func from(socket: String?, url: String?) throws -> ServeEndpoint {
        if let url {
            guard url.hasPrefix("http://") else { throw ClientError("--url \(url): expected http://HOST:PORT") }
            let rest = url.dropFirst("http://".count).split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else {
                throw ClientError("--url \(url): expected http://HOST:PORT")
            }
            return .tcp(host: String(rest[..<colon]), port: port)
        }
        return .unix(socket ?? ServeOptions.defaultSocketPath)
    }

    /// `unix:PATH` or `http://HOST:PORT`.
    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return "http://\(host):\(port)"
        }
    }

    /// Connects `fd` to `address` (a sockaddr_un or sockaddr_in); closes it on failure.
    private func connect<Address>(_ fd: Int32, to address: inout Address) throws {
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0
            }
        }
        if !ok {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ClientError("cannot connect to \(self) (\(reason)); is catlip serve running?")
        }
    }

    /// A connected, blocking stream socket (receive/send timeouts of `timeout` seconds).
    public func connectSocket(timeout: Double = 60) throws -> Int32 {
        var fd: Int32 = -1
        switch self {
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ClientError("socket: \(String(cString: strerror(errno)))") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
                close(fd)
                throw ClientError("\(path): socket path too long")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            try connect(fd, to: &address)
        case .tcp(let host, let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ClientError("socket: \(String(cString: strerror(errno)))") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            let literal = host == "localhost" ? "127.0.0.1" : host
            guard inet_pton(AF_INET, literal, &address.sin_addr) == 1 else {
                close(fd)
                throw ClientError("\(host): not an IPv4 address")
            }
            try connect(fd, to: &address)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd  // writes use MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE
    }
}

/// A client-side failure: connection, timeout or a malformed response.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var description: String
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
/// and tests: one connection, reopened when the server closed it.
public final class BlockingHTTPClient {
    /// Where it connects.
    public let endpoint: ServeEndpoint
    private let timeout: Double
    private var fd: Int32 = -1
    private var pending: [UInt8] = []

    /// A client for `endpoint`; connects on the first request.
    public init(endpoint: ServeEndpoint, timeout: Double = 60) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    deinit { disconnect() }

    /// Closes the connection (the next request opens a new one).
    public func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        pending = []
    }

    /// Sends one request and reads its response. A connection the server had closed is
    /// reopened once.
    public func request(
        method: String, path: String, contentType: String? = nil, body: [UInt8] = []
    ) throws -> ClientResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(body.count)\r\n"
        if let contentType { head += "Content-Type: \(contentType)\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + body
        let reused = fd >= 0
        if fd < 0 { fd = try endpoint.connectSocket(timeout: timeout) }
        do {
            try sendAll(bytes)
            return try readResponse(headOnly: method == "HEAD")
        } catch let error as ClientError where reused && error.description.hasPrefix("connection closed") {
            disconnect()
            fd = try endpoint.connectSocket(timeout: timeout)
            try sendAll(bytes)
            return try readResponse(headOnly: method == "HEAD")
        }
    }

    private func sendAll(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                disconnect()
                throw ClientError(errno == EPIPE || errno == ECONNRESET ? "connection closed while sending" : "send: \(reason)")
            }
            sent += n
        }
    }

    /// Reads more bytes into `pending`; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                pending += chunk[0..<n]
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError("timed out after \(timeout) s waiting for \(endpoint)") }
            if errno == ECONNRESET { return false }
            throw ClientError("recv: \(String(cString: strerror(errno)))")
        }
    }

    private func readResponse(headOnly: Bool) throws -> ClientResponse {
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            if let r = firstRange(of: separator, in: pending) {
                headEnd = r
                break
            }
            if !(try fill()) {
                disconnect()
                throw ClientError("connection closed by \(endpoint) before a response")
            }
        }
        let headText = String(decoding: pending[0..<headEnd!], as: UTF8.self)
        pending.removeFirst(headEnd! + 4)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            disconnect()
            throw ClientError("malformed status line from \(endpoint)")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if status == 100 { return try readResponse(headOnly: headOnly) }
        var body: [UInt8] = []
        if headOnly {
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            while pending.count < length {
                if !(try fill()) {
                    disconnect()
                    throw ClientError("connection closed by \(endpoint) in the middle of a response")
                }
            }
            body = Array(pending[0..<length])
            pending.removeFirst(length)
        } else {
            while try fill() {}
            body = pending
            pending = []
            disconnect()
        }
        if headers["connection"]?.lowercased() == "close" { disconnect() }
        return ClientResponse(status: status, headers: headers, body: body)
    }

    private func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if needle.indices.allSatisfy({ haystack[i + $0] == needle[$0] }) { return i }
        }
        return nil
    }
}
