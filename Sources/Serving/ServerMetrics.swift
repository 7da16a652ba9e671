import Prometheus

/// The daemon's Prometheus metrics (`GET /metrics`, text format 0.0.4), on swift-prometheus:
/// requests by endpoint and status, request latency by endpoint, engine batch sizes and
/// forward-pass time, queue depth (images waiting), in-flight requests, open and refused
/// connections, request bytes held, images decoded and rejected, errors by code.
public final class ServerMetrics: Sendable {
    /// The registry `GET /metrics` emits.
    public let registry = PrometheusCollectorRegistry()
    /// Images waiting for the engine.
    let queueDepth: Gauge
    /// Requests accepted and not yet answered.
    let inFlight: Gauge
    /// Open client connections.
    let connections: Gauge
    /// Connections answered 503 at once because `maxConnections` were open.
    let connectionsRefused: Counter
    /// Request bytes held (received, being parsed or waiting for the engine).
    let heldBytes: Gauge
    /// Images per engine forward pass.
    let batchSize: ValueHistogram
    /// Wall time of one engine batch (decode + forward), seconds.
    let batchSeconds: ValueHistogram
    /// Images decoded successfully.
    let imagesDecoded: Counter
    /// Images that could not be decoded or were over the pixel limit.
    let imagesRejected: Counter

    private static let latencyBuckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    ]

    /// Metrics registered in a fresh registry.
    public init() {
        queueDepth = registry.makeGauge(descriptor: ServerMetrics.name("queue_depth", "images", "Images waiting for the engine"))
        inFlight = registry.makeGauge(descriptor: ServerMetrics.name("requests_in_flight", "", "Requests accepted and not yet answered"))
        connections = registry.makeGauge(descriptor: ServerMetrics.name("connections_open", "", "Open client connections"))
        connectionsRefused = registry.makeCounter(
            descriptor: ServerMetrics.name("connections_refused", "total", "Connections answered 503 over the connection limit"))
        heldBytes = registry.makeGauge(
            descriptor: ServerMetrics.name("request_held", "bytes", "Request bytes held: received, being parsed or queued"))
        batchSize = registry.makeValueHistogram(
            descriptor: ServerMetrics.name("batch_size", "images", "Images per engine forward pass"),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256])
        batchSeconds = registry.makeValueHistogram(
            descriptor: ServerMetrics.name("batch_duration", "seconds", "Decode and forward time of one engine batch"),
            buckets: ServerMetrics.latencyBuckets)
        imagesDecoded = registry.makeCounter(descriptor: ServerMetrics.name("images_decoded", "total", "Images decoded"))
        imagesRejected = registry.makeCounter(
            descriptor: ServerMetrics.name("images_rejected", "total", "Images that did not decode or exceeded the pixel limit"))
    }

    /// Counts one answered request and records its latency.
    func recordRequest(endpoint: String, status: Int, seconds: Double) {
        registry.makeCounter(
            descriptor: ServerMetrics.name("requests", "total", "Requests answered, by endpoint and HTTP status"),
            labels: [("endpoint", endpoint), ("status", String(status))]
        ).increment()
        registry.makeValueHistogram(
            descriptor: ServerMetrics.name("request_duration", "seconds", "Time from the end of a request to its response"),
            labels: [("endpoint", endpoint)], buckets: ServerMetrics.latencyBuckets
        ).record(seconds)
    }

    /// Counts one error response by its code.
    func recordError(code: String) {
        registry.makeCounter(descriptor: ServerMetrics.name("errors", "total", "Error responses by code"), labels: [("code", code)])
            .increment()
    }

    /// `catlip_NAME_UNIT` with its help text.
    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "catlip", metricName: metric, unitName: unit, helpText: help)
    }

    /// The exposition text.
    public func text() -> String { registry.emitToString() }
}
