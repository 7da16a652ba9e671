import Support

/// A request that cannot be served: the HTTP status, a stable machine-readable code and a
/// message naming the request part and the problem. Sent as
/// `{"error": {"code": ..., "message": ...}}` (DESIGN.md, daemon protocol).
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// HTTP status (4xx for bad input, 413 oversized, 503 queue full, 504 past the deadline).
    public var status: Int
    /// Stable code, e.g. `bad_image`, `payload_too_large`, `queue_full`.
    public var code: String
    /// Human-readable explanation.
    public var message: String
    /// Seconds for a `Retry-After` header (503 only).
    public var retryAfter: Int?

    /// An error with its status, code and message.
    public init(status: Int, code: String, message: String, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// `status code: message`.
    public var description: String { "\(status) \(code): \(message)" }

    /// The JSON body sent to the client.
    public var json: String {
        var w = JSONWriter()
        w.object { w in
            w.key("error")
            w.object { w in
                w.field("code", code)
                w.field("message", message)
            }
        }
        return w.text
    }

    /// 400 with `code`.
    static func badRequest(_ code: String, _ message: String) -> ServiceError {
        ServiceError(status: 400, code: code, message: message)
    }
}

/// A compact JSON text builder for responses: floats in Swift's shortest round-trip form
/// (an embedding of 768 floats is about 8 KB instead of 13 KB through Foundation's
/// 17-digit doubles), strings escaped per RFC 8259.
public struct JSONWriter: Sendable {
    /// The text written so far.
    public private(set) var text = ""
    private var needsComma = false

    /// An empty writer.
    public init() {}

    private mutating func separator() {
        if needsComma { text += "," }
        needsComma = true
    }

    /// Writes `{`, the members `body` writes, then `}`.
    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        separator()
        text += "{"
        needsComma = false
        body(&self)
        text += "}"
        needsComma = true
    }

    /// Writes `[`, the elements `body` writes, then `]`.
    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        separator()
        text += "["
        needsComma = false
        body(&self)
        text += "]"
        needsComma = true
    }

    /// Writes an object key; the next value written is its value.
    public mutating func key(_ name: String) {
        separator()
        text += JSONText.quote(name)
        text += ":"
        needsComma = false
    }

    /// Writes a string value.
    public mutating func value(_ string: String) {
        separator()
        text += JSONText.quote(string)
    }

    /// Writes an integer value.
    public mutating func value(_ number: Int) {
        separator()
        text += String(number)
    }

    /// Writes a float value (non-finite values as null, which JSON cannot carry).
    public mutating func value(_ number: Float) {
        separator()
        text += number.isFinite ? "\(number)" : "null"
    }

    /// Writes a double value (non-finite values as null).
    public mutating func value(_ number: Double) {
        separator()
        text += number.isFinite ? "\(number)" : "null"
    }

    /// Writes a boolean value.
    public mutating func value(_ flag: Bool) {
        separator()
        text += flag ? "true" : "false"
    }

    /// Writes an array of floats.
    public mutating func value(_ numbers: some Sequence<Float>) {
        array { w in for x in numbers { w.value(x) } }
    }

    /// `key` then a string value.
    public mutating func field(_ name: String, _ string: String) {
        key(name)
        value(string)
    }

    /// `key` then an integer value.
    public mutating func field(_ name: String, _ number: Int) {
        key(name)
        value(number)
    }

    /// `key` then a float value.
    public mutating func field(_ name: String, _ number: Float) {
        key(name)
        value(number)
    }

    /// `key` then a double value.
    public mutating func field(_ name: String, _ number: Double) {
        key(name)
        value(number)
    }

    /// `key` then true or false.
    public mutating func field(_ name: String, _ flag: Bool) {
        key(name)
        value(flag)
    }
}
