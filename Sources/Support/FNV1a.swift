/// 64-bit FNV-1a, the one hash catlip uses to fingerprint what a file was made from (a
/// vocabulary and labelling rule, a training configuration, a model's weights) and to key its
/// memo tables. Not cryptographic: it detects mismatches, not tampering.
public struct FNV1a: Sendable, Equatable {
    /// FNV-1a's 64-bit offset basis: the hash of nothing.
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    /// FNV-1a's 64-bit prime.
    public static let prime: UInt64 = 0x0000_0100_0000_01b3

    @usableFromInline var state: UInt64 = FNV1a.offsetBasis

    /// The hash of everything combined so far.
    public var value: UInt64 { state }

    /// A hash of nothing yet.
    public init() {}

    /// Mixes in `bytes`, one at a time.
    @inlinable
    public mutating func combine(_ bytes: some Sequence<UInt8>) {
        var h = state
        for b in bytes { h = (h ^ UInt64(b)) &* Self.prime }
        state = h
    }

    /// Mixes in a whole word in one step (xor, multiply): how weights are fingerprinted, one
    /// step per float's bit pattern.
    @inlinable
    public mutating func combine(word: UInt64) {
        state = (state ^ word) &* Self.prime
    }

    /// The FNV-1a hash of `bytes`.
    @inlinable
    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = FNV1a()
        h.combine(bytes)
        return h.value
    }

    /// `value` as 16 lower-case hex digits (zero-padded), as fingerprints are written in files.
    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
