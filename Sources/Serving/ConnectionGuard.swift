import Foundation
import NIOCore
import NIOHTTP1

// What keeps one client from taking the daemon down (issue 17): every request must arrive whole
// within a deadline and at a minimum rate, the connections and the request bytes held at once
// are limited, and over a limit the client gets an HTTP answer (408, 413, 503) and is closed.

/// The request bytes the daemon holds at once across all connections: bodies being received,
/// parsed or waiting for the engine. A connection reserves each chunk before keeping it and
/// releases its reservation when the request is answered or the connection ends; a chunk that
/// does not fit gets 503 `server_busy`. This, with the body limit, is what bounds the memory
/// hostile clients can make the daemon hold (`ServeOptions.maxHeldBytes`).
final class RequestByteBudget: @unchecked Sendable {
    /// Most bytes held at once.
    let limit: Int
    private let lock = NSLock()
    private var held = 0
    private let metrics: ServerMetrics

    init(limit: Int, metrics: ServerMetrics) {
        self.limit = limit
        self.metrics = metrics
    }

    /// Takes `count` bytes from the budget; false (and nothing taken) when they do not fit.
    func reserve(_ count: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard count <= limit - held else { return false }
        held += count
        metrics.heldBytes.set(Double(held))
        return true
    }

    /// Gives back `count` bytes taken by `reserve`.
    func release(_ count: Int) {
        guard count > 0 else { return }
        lock.lock()
        held -= count
        metrics.heldBytes.set(Double(held))
        lock.unlock()
    }

    /// Bytes held now.
    var current: Int {
        lock.lock()
        defer { lock.unlock() }
        return held
    }
}

/// First in each connection's pipeline, below the HTTP codec: counts the bytes received and
/// notes when a request starts arriving (its first byte, before NIO has decoded a head), so
/// that a head trickled in a byte at a time meets the same deadline and minimum rate as a body.
/// It can also answer below the codec, for a request whose head never completed (the codec
/// has no request to answer then).
final class ReceiveGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Bytes received on this connection.
    private(set) var received = 0
    /// When the request now arriving sent its first byte (nil between requests).
    private(set) var requestStart: NIODeadline?
    /// Start of the current rate window and the bytes received before it.
    private var windowStart = NIODeadline.now()
    private var receivedAtWindowStart = 0
    /// Bytes received before the current request's first.
    private var receivedAtRequestStart = 0
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let count = unwrapInboundIn(data).readableBytes
        if count > 0 && requestStart == nil { start(now: .now(), before: received) }
        received += count
        context.fireChannelRead(data)
    }

    private func start(now: NIODeadline, before: Int) {
        requestStart = now
        windowStart = now
        receivedAtWindowStart = before
        receivedAtRequestStart = before
    }

    /// Bytes of the current request received so far.
    var requestBytes: Int { received - receivedAtRequestStart }

    /// A request head was decoded: its clock starts now unless its first bytes started it.
    func requestHeadDecoded() {
        if requestStart == nil { start(now: .now(), before: received) }
    }

    /// The request arrived whole: the next byte starts the next one's clock.
    func requestEnded() { requestStart = nil }

    /// When a window of `window` has passed since the last one began: the bytes received in it
    /// if fewer than `minimumRate` per second (at least one byte is always required), else nil
    /// and a new window begins.
    func slowWindow(now: NIODeadline, window: TimeAmount, minimumRate: Int) -> Int? {
        guard now - windowStart >= window else { return nil }
        let got = received - receivedAtWindowStart
        let seconds = Double(window.nanoseconds) / 1e9
        let needed = max(1, Double(minimumRate) * seconds)
        windowStart = now
        receivedAtWindowStart = received
        return Double(got) < needed ? got : nil
    }

    /// Writes `error` as a whole HTTP/1.1 response straight to the socket, then closes. For a
    /// request whose head is incomplete: the HTTP codec above has no request to answer.
    func answerBelowCodecAndClose(_ error: ServiceError) {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapInboundOut(rawResponse(error, allocator: channel.allocator)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The pipeline of a connection over `ServeOptions.maxConnections`: answers 503
/// `too_many_connections` at once, without reading a request, and closes.
final class ConnectionRefusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let error: ServiceError

    init(limit: Int) {
        error = ServiceError(
            status: 503, code: "too_many_connections",
            message: "the daemon serves at most \(limit) connections at once; retry later", retryAfter: 1)
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(rawResponse(error, allocator: channel.allocator)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // never read: it closes
}

/// `error` as the bytes of a whole HTTP/1.1 response that closes the connection, for the
/// answers written below the HTTP codec (no request head to answer).
func rawResponse(_ error: ServiceError, allocator: ByteBufferAllocator) -> ByteBuffer {
    let body = error.json + "\n"
    var head = "HTTP/1.1 \(error.status) \(HTTPResponseStatus(statusCode: error.status).reasonPhrase)\r\n"
    head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
    if let seconds = error.retryAfter { head += "Retry-After: \(seconds)\r\n" }
    head += "\r\n"
    var buffer = allocator.buffer(capacity: head.utf8.count + body.utf8.count)
    buffer.writeString(head)
    buffer.writeString(body)
    return buffer
}
