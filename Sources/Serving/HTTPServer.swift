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
    /// Largest request body in bytes: 413 at once when Content-Length says more, and as soon as a
    /// chunked body grows past it (the rest is never read).
    public var maxBodyBytes = 32 << 20
    /// Most request bytes held at once over all connections (bodies being received, parsed or
    /// waiting for the engine); a body that does not fit gets 503 `server_busy`. With
    /// `maxConnections` x 80 KiB of headers (NIO's head limit) and the one JSON body being
    /// parsed at a time, this is what bounds the memory clients can make the daemon hold.
    public var maxHeldBytes = 256 << 20
    /// Seconds of the receive-rate window: a request (head or body) that brings fewer than
    /// `minReceiveRate` bytes per second over a window of this length, or nothing at all, is
    /// answered 408 and closed.
    public var readTimeout: Double = 10
    /// The least bytes per second a request must bring over each `readTimeout` window once it
    /// has started arriving (0: only a silent window fails).
    public var minReceiveRate = 1024
    /// Seconds from a request's first byte to its last, head and body: a request still arriving
    /// after it is answered 408 and closed, however it trickles (a byte every few seconds keeps
    /// no connection).
    public var receiveTimeout: Double = 30
    /// Seconds an idle keep-alive connection stays open.
    public var idleTimeout: Double = 60
    /// Seconds from a request's end to its answer before it is answered 504.
    public var requestTimeout: Double = 30
    /// Seconds SIGTERM waits for in-flight requests before closing connections.
    public var drainTimeout: Double = 30
    /// Most connections open at once; one over it is answered 503 `too_many_connections` and
    /// closed. Lowered at start to what RLIMIT_NOFILE allows (`ServingDaemon.maxConnections`).
    public var maxConnections = 512
    /// Event-loop threads for the sockets (the model runs on its own threads).
    public var ioThreads = 1

    /// The longest timeout accepted (a week): the timers count nanoseconds in 64 bits.
    public static let longestTimeout: Double = 7 * 86400

    /// The defaults: no transport chosen yet, 32 MiB bodies, 256 MiB held, 512 connections,
    /// 30 s to receive a request at 1 KiB/s or more over 10 s windows, 60 s idle, 30 s to answer.
    public init() {}

    /// Throws a message naming the first setting out of range: timeouts must be finite, positive
    /// and at most `longestTimeout`; sizes and counts positive; a body must fit in `maxHeldBytes`.
    public func validate() throws {
        let timeouts = [
            ("read timeout", readTimeout), ("receive timeout", receiveTimeout), ("idle timeout", idleTimeout),
            ("request timeout", requestTimeout), ("drain timeout", drainTimeout),
        ]
        for (name, seconds) in timeouts where !(seconds > 0 && seconds <= ServeOptions.longestTimeout) {
            throw ServeStartError(description: "\(name) \(seconds) s: expected a number of seconds in (0, \(Int(ServeOptions.longestTimeout))]")
        }
        let counts = [
            ("body limit", maxBodyBytes), ("held-bytes limit", maxHeldBytes), ("connection limit", maxConnections),
            ("event-loop threads", ioThreads),
        ]
        for (name, value) in counts where value < 1 {
            throw ServeStartError(description: "\(name) \(value): must be positive")
        }
        if minReceiveRate < 0 { throw ServeStartError(description: "minimum receive rate \(minReceiveRate): must be >= 0") }
        if maxBodyBytes > maxHeldBytes {
            throw ServeStartError(description: "body limit \(maxBodyBytes) bytes exceeds the held-bytes limit \(maxHeldBytes)")
        }
    }

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
/// `HTTPConnectionHandler` per connection (behind a `ReceiveGuard`), the shared
/// `ServingService`, a one-thread pool that parses JSON bodies off the event loop, and the
/// limits on connections and held request bytes. `shutdown()` stops accepting, lets in-flight
/// requests finish, closes connections, stops the engine and removes the socket file.
public final class ServingDaemon: @unchecked Sendable {
    /// The routes.
    public let service: ServingService
    /// The listening options.
    public let options: ServeOptions
    /// The bound TCP port, when TCP is on.
    public private(set) var tcpPort: Int?
    /// Connections served at once: `options.maxConnections`, lowered when RLIMIT_NOFILE (after
    /// raising its soft limit as far as the hard one) leaves fewer descriptors.
    public let maxConnections: Int
    private let group: MultiThreadedEventLoopGroup
    /// JSON bodies are parsed here, not on the event loop: one thread, so a large body costs one
    /// core at most and other connections keep being served.
    private let parsing = NIOThreadPool(numberOfThreads: 1)
    private let budget: RequestByteBudget
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
        try options.validate()
        maxConnections = ServingDaemon.connectionLimit(wanted: options.maxConnections)
        budget = RequestByteBudget(limit: options.maxHeldBytes, metrics: service.metrics)
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.ioThreads))
        parsing.start()
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
            try? parsing.syncShutdownGracefully()
            throw error
        }
        service.engine.start()
    }

    /// Descriptors kept back from the connections: those open at start (listeners, the event
    /// loop's epoll and pipes, standard streams) plus room for refused connections in flight
    /// and the files a request path may open.
    static let reservedDescriptors = 64

    /// `wanted` connections, or fewer when RLIMIT_NOFILE leaves fewer descriptors: its soft limit
    /// is first raised toward the hard one to fit `wanted` plus the reserve.
    static func connectionLimit(wanted: Int) -> Int {
        let reserve = openDescriptors() + reservedDescriptors
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return wanted }
        let needed = rlim_t(clamping: wanted) &+ rlim_t(reserve)
        if limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = min(needed, limit.rlim_max)
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        let available = Int(clamping: limit.rlim_cur) - reserve
        return max(1, min(wanted, available))
    }

    /// Descriptors open in this process (/proc/self/fd; 16 when it cannot be read).
    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 16
    }

    private func makeBootstrap() -> ServerBootstrap {
        let service = service
        let options = options
        let connections = connections
        let limit = maxConnections
        let budget = budget
        let parsing = parsing
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                guard connections.insert(channel, limit: limit) else {
                    service.metrics.connectionsRefused.increment()
                    service.metrics.recordError(code: "too_many_connections")
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ConnectionRefusal(limit: limit))
                    }
                }
                channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    let receiveGuard = ReceiveGuard()
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(receiveGuard)
                    try sync.addHandler(BackPressureHandler())
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(HTTPConnectionHandler(
                        service: service, options: options, receiveGuard: receiveGuard, budget: budget, parsing: parsing))
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
        try? parsing.syncShutdownGracefully()
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

    /// Request bytes held now (received, being parsed or waiting for the engine).
    public var heldBytes: Int { budget.current }
}

/// The open connections (for the limit and for draining).
final class ConnectionSet: @unchecked Sendable {
    private let lock = NSLock()
    private var channels: [ObjectIdentifier: any Channel] = [:]
    /// Adds `c` unless `limit` connections are open already; whether it was added.
    func insert(_ c: any Channel, limit: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard channels.count < limit else { return false }
        channels[ObjectIdentifier(c)] = c
        return true
    }
    func remove(_ c: any Channel) { lock.lock(); channels[ObjectIdentifier(c)] = nil; lock.unlock() }
    var all: [any Channel] { lock.lock(); defer { lock.unlock() }; return Array(channels.values) }
}

/// One connection's HTTP/1.1 exchange: collects a request (body limit, held-bytes budget,
/// `Expect: 100-continue`), hands it to the service (JSON bodies through the parsing pool),
/// writes the reply (keep-alive or close), answers 504 at the request deadline, and cancels the
/// queued job when the client goes away. One watchdog timer per connection enforces the
/// receive deadline and rate (408), the idle timeout, and closes a connection whose last
/// answer cannot be written.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State { case idle, receiving, waiting, closing }

    private let service: ServingService
    private let options: ServeOptions
    private let receiveGuard: ReceiveGuard
    private let budget: RequestByteBudget
    private let parsing: NIOThreadPool
    private var state = State.idle
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    /// Bytes of this connection's request taken from `budget` (given back when it is answered).
    private var held = 0
    private var keepAlive = true
    private var watchdog: Scheduled<Void>?
    private var deadlineTimer: Scheduled<Void>?
    private var job: InferenceJob?
    private var generation = 0
    private var requestStarted = NIODeadline.now()
    private var idleSince = NIODeadline.now()
    private var closingSince = NIODeadline.now()
    private var endpoint = "other"

    init(
        service: ServingService, options: ServeOptions, receiveGuard: ReceiveGuard, budget: RequestByteBudget,
        parsing: NIOThreadPool
    ) {
        self.service = service
        self.options = options
        self.receiveGuard = receiveGuard
        self.budget = budget
        self.parsing = parsing
    }

    /// How often the watchdog looks: a quarter of the shortest timeout, between 10 ms and 1 s.
    private var tick: TimeAmount {
        let shortest = min(options.readTimeout, options.receiveTimeout, options.idleTimeout)
        return .nanoseconds(Int64(min(1, max(0.01, shortest / 4)) * 1e9))
    }

    func channelActive(context: ChannelHandlerContext) {
        service.metrics.connections.increment()
        idleSince = .now()
        scheduleWatchdog(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        service.metrics.connections.decrement()
        watchdog?.cancel()
        deadlineTimer?.cancel()
        if state == .waiting {
            // the client left: free the job's queue slot; nobody is waiting for the answer
            if let job { service.engine.cancel(job) }
            service.metrics.inFlight.decrement()
        }
        job = nil
        releaseHeld()
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
        switch unwrapInboundIn(data) {
        case .head(let h):
            guard state == .idle else { return }
            head = h
            keepAlive = h.isKeepAlive
            body.clear()
            endpoint = ServingService.endpointLabel(String(h.uri.split(separator: "?").first ?? ""))
            requestStarted = .now()
            receiveGuard.requestHeadDecoded()
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
        case .body(var chunk):
            guard state == .receiving else { return }
            let count = chunk.readableBytes
            if body.readableBytes + count > options.maxBodyBytes {
                reject(context, ServiceError(
                    status: 413, code: "payload_too_large", message: "body over the limit of \(options.maxBodyBytes) bytes"))
                return
            }
            guard budget.reserve(count) else {
                reject(context, ServiceError(
                    status: 503, code: "server_busy",
                    message: "the daemon holds \(budget.current >> 20) MiB of requests (its limit is \(budget.limit >> 20) MiB); retry later",
                    retryAfter: 1))
                return
            }
            held += count
            if body.capacity == 0 { body = context.channel.allocator.buffer(capacity: count) }
            body.writeBuffer(&chunk)
        case .end:
            guard state == .receiving, let head else { return }
            receiveGuard.requestEnded()
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
        let service = service
        let reply: @Sendable (ServeReply) -> Void = { reply in
            loop.execute {
                let (handler, context) = bound.value
                handler.respond(context: context, ticket: ticket, reply: reply)
            }
        }
        guard request.parsesJSON else {
            queued(service.handle(request, reply: reply), context: context, ticket: ticket)
            return
        }
        // JSONSerialization and base64 of a large body take long enough to stall every
        // connection on this loop: they run on the parsing thread
        parsing.runIfActive(eventLoop: loop) { service.handle(request, reply: reply) }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let job): handler.queued(job, context: context, ticket: ticket)
            case .failure:
                handler.respond(context: context, ticket: ticket, reply: ServeReply(error: ServiceError(
                    status: 503, code: "shutting_down", message: "the daemon is shutting down")))
            }
        }
    }

    /// Keeps the engine's job for request `ticket` (to cancel it at the deadline or when the
    /// client leaves) unless the request was answered or the client left meanwhile.
    private func queued(_ queued: InferenceJob?, context: ChannelHandlerContext, ticket: Int) {
        guard let queued else { return }
        guard generation == ticket, state == .waiting else {
            if state == .closing { service.engine.cancel(queued) }  // the client left while its body was parsed
            return
        }
        job = queued
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadlineTimer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(options.requestTimeout * 1e9))) {
            let (handler, context) = bound.value
            guard handler.generation == ticket, handler.state == .waiting, let job = handler.job else { return }
            if handler.service.engine.cancel(job) {
                handler.respond(context: context, ticket: ticket, reply: ServeReply(error: ServiceError(
                    status: 504, code: "deadline_exceeded",
                    message: "no answer within \(handler.options.requestTimeout) s (the engine is busy)")))
            }
        }
    }

    private func respond(context: ChannelHandlerContext, ticket: Int, reply: ServeReply) {
        guard ticket == generation, state == .waiting else { return }
        deadlineTimer?.cancel()
        job = nil
        releaseHeld()
        service.metrics.inFlight.decrement()
        let seconds = Double((NIODeadline.now() - requestStarted).nanoseconds) / 1e9
        service.metrics.recordRequest(endpoint: endpoint, status: reply.status, seconds: seconds)
        if let code = reply.errorCode { service.metrics.recordError(code: code) }
        let close = !keepAlive || service.isDraining
        // The state changes before the write: writing the response's end lets the pipeline
        // handler deliver a pipelined next request at once, re-entering channelRead.
        state = close ? .closing : .idle
        idleSince = .now()
        if close { closingSince = .now() }
        write(context: context, reply: reply, headOnly: head?.method == .HEAD, close: close)
    }

    /// Answers an oversized, stalled or unaffordable request and closes the connection (the
    /// rest of its body is never read).
    private func reject(_ context: ChannelHandlerContext, _ error: ServiceError) {
        service.metrics.recordRequest(endpoint: endpoint, status: error.status, seconds: 0)
        service.metrics.recordError(code: error.code)
        body = ByteBuffer()
        releaseHeld()
        state = .closing
        closingSince = .now()
        write(context: context, reply: ServeReply(error: error), headOnly: false, close: true)
    }

    private func releaseHeld() {
        budget.release(held)
        held = 0
    }

    private func write(context: ChannelHandlerContext, reply: ServeReply, headOnly: Bool, close: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: reply.contentType)
        let bytes = reply.bytes ?? Array(reply.body.utf8)
        headers.add(name: "Content-Length", value: String(bytes.count))
        headers.add(name: "Connection", value: close ? "close" : "keep-alive")
        for (name, value) in reply.headers { headers.add(name: name, value: value) }
        // the highest version both sides speak: a mangled request version is answered in 1.1
        let version: HTTPVersion = head?.version == .http1_0 ? .http1_0 : .http1_1
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

    private func scheduleWatchdog(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        watchdog = context.eventLoop.scheduleTask(in: tick) {
            let (handler, context) = bound.value
            handler.check(context: context)
        }
    }

    /// The watchdog: while a request arrives (its head trickling in, or its body), 408 past
    /// `receiveTimeout` from its first byte or below `minReceiveRate` over a `readTimeout`
    /// window; while idle, close after `idleTimeout`; while closing, close for good once
    /// `readTimeout` has passed (the client does not read its answer).
    private func check(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        switch state {
        case .idle, .receiving:
            if let start = receiveGuard.requestStart {
                let limit = options.receiveTimeout
                if now - start >= .nanoseconds(Int64(limit * 1e9)) {
                    timeOut(context, ServiceError(
                        status: 408, code: "request_timeout",
                        message: "the request did not arrive whole within \(limit) s (\(receiveGuard.requestBytes) bytes received)"))
                    return
                }
                let window = options.readTimeout
                if let got = receiveGuard.slowWindow(
                    now: now, window: .nanoseconds(Int64(window * 1e9)), minimumRate: options.minReceiveRate)
                {
                    timeOut(context, ServiceError(
                        status: 408, code: "request_timeout",
                        message: "the request arrived at \(Double(got) / window) bytes/s over the last \(window) s; "
                            + "the minimum is \(options.minReceiveRate) bytes/s"))
                    return
                }
            } else if state == .idle && now - idleSince >= .nanoseconds(Int64(options.idleTimeout * 1e9)) {
                close(context)
                return
            }
        case .waiting:
            break
        case .closing:
            if now - closingSince >= .nanoseconds(Int64(options.readTimeout * 1e9)) {
                context.close(promise: nil)
                return
            }
        }
        scheduleWatchdog(context: context)
    }

    /// 408 for a request past its deadline or rate: through the HTTP codec when its head was
    /// decoded, below it when only part of a head arrived.
    private func timeOut(_ context: ChannelHandlerContext, _ error: ServiceError) {
        if state == .receiving {
            reject(context, error)
        } else {
            service.metrics.recordRequest(endpoint: "other", status: error.status, seconds: 0)
            service.metrics.recordError(code: error.code)
            state = .closing
            closingSince = .now()
            receiveGuard.answerBelowCodecAndClose(error)
        }
        scheduleWatchdog(context: context)
    }

    private func close(_ context: ChannelHandlerContext) {
        state = .closing
        closingSince = .now()
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
