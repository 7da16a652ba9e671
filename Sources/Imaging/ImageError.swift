/// Why an image could not be read or processed. Every error names its source (a file path, a
/// sample key or a request) so that a user can find the bad input.
public struct ImageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kinds of failure, for callers that count skipped samples by reason.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// The bytes are not JPEG or PNG (recognised by content, not by name).
        case unsupportedFormat = "unsupported format"
        /// The data is damaged or not what its header claims.
        case corrupt
        /// The data ends before the image does.
        case truncated
        /// The header announces more pixels than the configured limit.
        case tooLarge = "too large"
        /// The header announces a zero width or height.
        case empty = "empty image"
        /// The file could not be read.
        case io = "read error"
        /// The path is a directory, FIFO, device or socket, not a regular file (nothing was
        /// read from it).
        case notRegularFile = "not a regular file"
        /// The file is larger than the reader's cap (see `defaultMaxImageFileBytes`).
        case fileTooLarge = "file too large"
        /// A caller passed a value outside its valid range.
        case invalidArgument = "invalid argument"
    }

    /// The kind of failure.
    public let kind: Kind
    /// The file, sample or request the error is about.
    public let source: String
    /// What is wrong, in words.
    public let message: String

    /// Creates an error about `source`.
    public init(_ kind: Kind, source: String, message: String) {
        self.kind = kind
        self.source = source
        self.message = message
    }

    /// `source: message`, the one-line form used on stderr.
    public var description: String { "\(source): \(message)" }
}
