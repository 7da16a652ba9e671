import Foundation

/// A stop request from SIGINT or SIGTERM: the trainer checkpoints after the current step and
/// returns. A second signal ends the process at once (the checkpoints on disk stay readable).
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var signal: Int32 = 0
    private var sources: [any DispatchSourceSignal] = []

    /// A request that no signal has set yet.
    public init() {}

    /// Whether a stop was requested.
    public var requested: Bool { lock.withLock { signal != 0 } }

    /// "SIGINT" or "SIGTERM" (or "a request").
    public var signalName: String {
        switch lock.withLock({ signal }) {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "a request"
        }
    }

    /// Requests a stop as if `signal` had arrived.
    public func request(_ signal: Int32 = SIGTERM) {
        let second = lock.withLock { () -> Bool in
            defer { self.signal = signal }
            return self.signal != 0
        }
        if second { exit(128 + signal) }
    }

    /// Routes SIGINT and SIGTERM to this request.
    public func installSignalHandlers() {
        for s in [SIGINT, SIGTERM] {
            Foundation.signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { [weak self] in self?.request(s) }
            source.resume()
            sources.append(source)
        }
    }
}
