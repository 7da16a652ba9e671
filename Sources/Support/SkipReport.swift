/// Why samples were skipped, with counts and the first keys: what every job that skips bad
/// samples (the loader, training, `shards write`, `vocab cache`) counts and reports.
public struct SkipReport: Sendable, Equatable, CustomStringConvertible {
    /// No skips yet.
    public init() {}

    /// Count per reason.
    public var counts: [String: Int] = [:]
    /// Up to `keysKept` sample keys (with their source) per reason.
    public var examples: [String: [String]] = [:]
    /// How many example keys are kept per reason.
    public static let keysKept = 20

    /// Counts one skipped sample for `reason`, keeping `example` (key and source) among the
    /// first few.
    public mutating func add(_ reason: String, _ example: String) {
        counts[reason, default: 0] += 1
        if examples[reason, default: []].count < Self.keysKept { examples[reason, default: []].append(example) }
    }

    /// Total skipped samples.
    public var total: Int { counts.values.reduce(0, +) }

    /// One line per reason: count and example keys.
    public var description: String {
        counts.keys.sorted().map { reason in
            "\(counts[reason]!) skipped (\(reason)): " + (examples[reason] ?? []).joined(separator: ", ")
        }.joined(separator: "\n")
    }
}
