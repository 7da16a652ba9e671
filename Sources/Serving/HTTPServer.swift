import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Where and how the daemon listens, and its per-connection limits.
public struct ServeOptions: Sendable {
    /// The Unix domain socket path (nil: no Unix socket).
    public var socketPath: String?
    /// `HOST:PORT` for TCP (nil: no TCP); port 0 picks a free one.
    public var listen: String?
    /// Allow a TCP host other than loopback.
    public var allowRemote = false
    /// Largest request body in bytes (413 beyond).
    public var maxBodyBytes = 32 << 20
    /// Seconds a request may go without receiving a byte before it is answered 408 and closed.
    public var readTimeout: Double = 10
    /// Seconds an idle keep-alive connection stays open.
    public var idleTimeout: Double = 60
    /// Seconds from a request's end to its answer before it is answered 504.
    public var requestTimeout: Double = 30
    /// Seconds SIGTERM waits for in-flight requests before closing connections.
    public var drainTimeout: Double = 30
    /// Event-loop threads for the sockets (the model runs on its own threads).
    public var ioThreads = 1

    /// The defaults: no transport chosen yet, 32 MiB bodies, 10 s read, 60 s idle, 30 s request.
    public init() {}

    /// The default socket path: `$XDG_RUNTIME_DIR/catlip.sock`, else `/tmp/catlip-UID/catlip.sock`,
    /// in a directory of this user's that the daemon creates mode 0700 and both sides verify
    /// (`SocketPath`): a socket straight in /tmp could be planted by another local user.
    public static var defaultSocketPath: String {
        if let dir = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !dir.isEmpty {
            return dir + "/catlip.sock"
        }
        return SocketPath.privateDirectory() + "/catlip.sock"
    }
}

/// A startup failure naming the socket, address or file and the problem.
public struct ServeStartError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var description: String
}

/// The running daemon: the NIO server channels on a Unix socket and/or loopback TCP, one
/// `HTTPConnectionHandler` per connection, the shared `ServingService`. `shutdown()` stops
/// accepting, lets in-flight requests finish, closes connections, stops the engine and removes
/// the socket file.
public final class ServingDaemon: @unchecked Sendable {
    /// The routes.
    public let service: ServingService
    /// The listening options.
    public let options: ServeOptions
    /// The bound TCP port, when TCP is on.
    public private(set) var tcpPort: Int?
    private let group: MultiThreadedEventLoopGroup
    private var servers: [any Channel] = []
    private let connections = ConnectionSet()
    private let closed = DispatchSemaphore(value: 0)
    private let shutdownLock = NSLock()
    private var shutDown = false

    /// Starts the engine and binds the transports; throws `ServeStartError` for a live or
    /// foreign socket file, a non-loopback host without `allowRemote`, or a failed bind.
    public init(service: ServingService, options: ServeOptions) throws {
        self.service = service
        self.options = options
        guard options.socketPath != nil || options.listen != nil else {
            throw ServeStartError(description: "nothing to listen on: give a socket path or --listen")
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.ioThreads))
        do {
            let bootstrap = makeBootstrap()
            if let path = options.socketPath {
                try ServingDaemon.prepareSocketPath(path)
                let old = umask(0o177)
                let channel: any Channel
                do {
                    channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).wait()
                } catch {
                    umask(old)
                    throw ServeStartError(description: "\(path): cannot listen (\(error))")
                }
                umask(old)
                chmod(path, 0o600)
                servers.append(channel)
            }
            if let listen = options.listen {
                let (host, port) = try ServingDaemon.parseListen(listen, allowRemote: options.allowRemote)
                do {
                    let channel = try bootstrap.bind(host: host, port: port).wait()
                    tcpPort = channel.localAddress?.port
                    servers.append(channel)
                } catch {
                    throw ServeStartError(description: "\(listen): cannot listen (\(error))")
                }
            }
        } catch {
            for s in servers { try? s.close().wait() }
            if let path = options.socketPath, servers.count > 0 { unlink(path) }
            try? group.syncShutdownGracefully()
            throw error
        }
        service.engine.start()
    }

    private func makeBootstrap() -> ServerBootstrap {
        let service = service
        let options = options
        let connections = connections
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                connections.insert(channel)
                channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionHandler(service: service, options: options))
                }
            }
    }

    /// `HOST:PORT` → (host, port); only loopback hosts unless `allowRemote`.
    static func parseListen(_ text: String, allowRemote: Bool) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw ServeStartError(description: "--listen \(text): expected HOST:PORT, e.g. 127.0.0.1:8080") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let loopback = ServeEndpoint.isLoopback(host)  // strict: "127.evil.com" is a name, not loopback
        if !loopback && !allowRemote {
            throw ServeStartError(description: "--listen \(text): \(host) is not a loopback address; add --allow-remote to serve other machines")
        }
        return (host == "localhost" ? "127.0.0.1" : host, port)
    }

    /// Refuses a path in a directory another user could write to (`SocketPath`), a path that
    /// exists and is not a socket of this user's (never followed or removed), or a socket another
    /// daemon answers on; removes a stale socket file of this user's.
    static func prepareSocketPath(_ path: String) throws {
        if path.utf8.count >= 108 {
            throw ServeStartError(description: "\(path): socket path too long (\(path.utf8.count) bytes; the limit is 107)")
        }
        let present: Bool
        do {
            present = try SocketPath.checkBeforeBind(path)
        } catch let error as SocketPathError {
            throw ServeStartError(description: error.description)
        }
        guard present else { return }
        if socketAnswers(path) {
            throw ServeStartError(description: "\(path): another daemon is listening on this socket")
        }
        guard unlink(path) == 0 else {
            throw ServeStartError(description: "\(path): stale socket file cannot be removed (\(String(cString: strerror(errno))))")
        }
    }

    /// Whether a process accepts connections on the Unix socket at `path`.
    static func socketAnswers(_ path: String) -> Bool {
        // a plain connect: the file is this user's socket (checked); nothing is sent
        guard let fd = try? ServeEndpoint.unix(path).connectSocket(timeout: 1, verifyPeer: false) else { return false }
        close(fd)
        return true
    }

    /// Stops accepting, lets requests in flight finish (up to `drainTimeout`), closes every
    /// connection, stops the engine, removes the socket file. Safe to call more than once.
    public func shutdown() {
        shutdownLock.lock()
        if shutDown {
            shutdownLock.unlock()
            return
        }
        shutDown = true
        shutdownLock.unlock()
        service.beginDraining()
        for s in servers { try? s.close().wait() }
        if let path = options.socketPath { unlink(path) }
        for channel in connections.all { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        let deadline = Date(timeIntervalSinceNow: options.drainTimeout)
        while !connections.all.isEmpty && Date() < deadline { usleep(10_000) }
        for channel in connections.all { try? channel.close().wait() }
        service.engine.stop()
        try? group.syncShutdownGracefully()
        closed.signal()
    }

    /// Blocks until `shutdown()` has finished.
    public func waitUntilShutDown() {
        closed.wait()
        closed.signal()
    }

    /// Open client connections.
    public var connectionCount: Int { connections.all.count }
}

/// The open connections (for draining).
final class ConnectionSet: @unchecked Sendable {
    private let lock = NSLock()
    private var channels: [ObjectIdentifier: any Channel] = [:]
    func insert(_ c: any Channel) { lock.lock(); channels[ObjectIdentifier(c)] = c; lock.unlock() }
    func remove(_ c: any Channel) { lock.lock(); channels[ObjectIdentifier(c)] = nil; lock.unlock() }
    var all: [any Channel] { lock.lock(); defer { lock.unlock() }; return Array(channels.values) }
}

/// One connection's HTTP/1.1 exchange: collects a request (body limit, read timeout,
/// `Expect: 100-continue`), hands it to the service, writes the reply (keep-alive or close),
/// answers 504 at the request deadline, and cancels the queued job when the client goes away.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State { case idle, receiving, waiting, closing }

    private let service: ServingService
    private let options: ServeOptions
    private var state = State.idle
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var keepAlive = true
    private var lastRead = NIODeadline.now()
    private var readTimer: Scheduled<Void>?
    private var deadlineTimer: Scheduled<Void>?
    private var job: InferenceJob?
    private var generation = 0
    private var requestStarted = NIODeadline.now()
    private var endpoint = "other"

    init(service: ServingService, options: ServeOptions) {
        self.service = service
        self.options = options
    }

    func channelActive(context: ChannelHandlerContext) {
        service.metrics.connections.increment()
        armTimer(context: context, after: options.idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        service.metrics.connections.decrement()
        readTimer?.cancel()
        deadlineTimer?.cancel()
        if state == .waiting {
            // the client left: free the job's queue slot; nobody is waiting for the answer
            if let job { service.engine.cancel(job) }
            service.metrics.inFlight.decrement()
        }
        job = nil
        state = .closing
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            if state == .idle { close(context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        switch unwrapInboundIn(data) {
        case .head(let h):
            guard state == .idle else { return }
            head = h
            keepAlive = h.isKeepAlive
            body.clear()
            endpoint = ServingService.endpointLabel(String(h.uri.split(separator: "?").first ?? ""))
            requestStarted = .now()
            if let length = h.headers.first(name: "content-length").flatMap({ Int($0) }), length > options.maxBodyBytes {
                reject(context, ServiceError(
                    status: 413, code: "payload_too_large",
                    message: "body of \(length) bytes; the limit is \(options.maxBodyBytes)"))
                return
            }
            state = .receiving
            if h.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))), promise: nil)
            }
            armTimer(context: context, after: options.readTimeout)
        case .body(var chunk):
            guard state == .receiving else { return }
            if body.readableBytes + chunk.readableBytes > options.maxBodyBytes {
                reject(context, ServiceError(
                    status: 413, code: "payload_too_large", message: "body over the limit of \(options.maxBodyBytes) bytes"))
                return
            }
            if body.capacity == 0 { body = context.channel.allocator.buffer(capacity: chunk.readableBytes) }
            body.writeBuffer(&chunk)
        case .end:
            guard state == .receiving, let head else { return }
            readTimer?.cancel()
            state = .waiting
            dispatch(context: context, head: head)
        }
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let request = ServeRequest(
            method: head.method.rawValue, uri: head.uri,
            contentType: head.headers.first(name: "content-type") ?? "",
            body: Array(body.readableBytesView))
        body = ByteBuffer()
        generation += 1
        let ticket = generation
        service.metrics.inFlight.increment()
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let queued = service.handle(request) { reply in
            loop.execute {
                let (handler, context) = bound.value
                handler.respond(context: context, ticket: ticket, reply: reply)
            }
        }
        if let queued {
            job = queued
            deadlineTimer = loop.scheduleTask(in: .nanoseconds(Int64(options.requestTimeout * 1e9))) {
                let (handler, context) = bound.value
                guard handler.generation == ticket, handler.state == .waiting, let job = handler.job else { return }
                if handler.service.engine.cancel(job) {
                    handler.respond(context: context, ticket: ticket, reply: ServeReply(error: ServiceError(
                        status: 504, code: "deadline_exceeded",
                        message: "no answer within \(handler.options.requestTimeout) s (the engine is busy)")))
                }
            }
        }
    }

    private func respond(context: ChannelHandlerContext, ticket: Int, reply: ServeReply) {
        guard ticket == generation, state == .waiting else { return }
        deadlineTimer?.cancel()
        job = nil
        service.metrics.inFlight.decrement()
        let seconds = Double((NIODeadline.now() - requestStarted).nanoseconds) / 1e9
        service.metrics.recordRequest(endpoint: endpoint, status: reply.status, seconds: seconds)
        if let code = reply.errorCode { service.metrics.recordError(code: code) }
        let close = !keepAlive || service.isDraining
        // The state changes before the write: writing the response's end lets the pipeline
        // handler deliver a pipelined next request at once, re-entering channelRead.
        state = close ? .closing : .idle
        write(context: context, reply: reply, headOnly: head?.method == .HEAD, close: close)
        if state == .idle && generation == ticket {
            armTimer(context: context, after: options.idleTimeout)
        }
    }

    /// Answers an oversized or stalled request and closes the connection (the rest of its body
    /// is never read).
    private func reject(_ context: ChannelHandlerContext, _ error: ServiceError) {
        readTimer?.cancel()
        service.metrics.recordRequest(endpoint: endpoint, status: error.status, seconds: 0)
        service.metrics.recordError(code: error.code)
        body = ByteBuffer()
        state = .closing
        write(context: context, reply: ServeReply(error: error), headOnly: false, close: true)
    }

    private func write(context: ChannelHandlerContext, reply: ServeReply, headOnly: Bool, close: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: reply.contentType)
        let bytes = Array(reply.body.utf8)
        headers.add(name: "Content-Length", value: String(bytes.count))
        headers.add(name: "Connection", value: close ? "close" : "keep-alive")
        for (name, value) in reply.headers { headers.add(name: name, value: value) }
        let version = head?.version ?? .http1_1
        let status = HTTPResponseStatus(statusCode: reply.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if !headOnly {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlushWithPromise(wrapOutboundOut(.end(nil)))
        if close {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// One timer per connection: while receiving, a request silent for `readTimeout` gets 408
    /// and is closed; while idle, the connection is closed after `idleTimeout`.
    private func armTimer(context: ChannelHandlerContext, after seconds: Double) {
        readTimer?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let expected = state
        readTimer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
            let (handler, context) = bound.value
            guard handler.state == expected else { return }
            if expected == .receiving {
                let limit = handler.options.readTimeout
                let quiet = Double((NIODeadline.now() - handler.lastRead).nanoseconds) / 1e9
                if quiet < limit {
                    handler.armTimer(context: context, after: limit - quiet)
                    return
                }
                handler.reject(context, ServiceError(
                    status: 408, code: "request_timeout",
                    message: "no data for \(limit) s in the middle of a request"))
            } else if expected == .idle {
                handler.close(context)
            }
        }
    }

    private func close(_ context: ChannelHandlerContext) {
        state = .closing
        readTimer?.cancel()
        context.close(promise: nil)
    }
}

extension ChannelHandlerContext {
    /// Writes and flushes `data`, returning the write's future.
    fileprivate func writeAndFlushWithPromise(_ data: NIOAny) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        writeAndFlush(data, promise: promise)
        return promise.futureResult
    }
}
