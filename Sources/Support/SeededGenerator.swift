#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one seeded generator of catlip: xoshiro256** seeded through SplitMix64. The same seed
/// gives the same stream on every machine, so initialisation, sample order and augmentation are
/// reproducible bit for bit, and a stream can be saved (`state`, `Codable`) and resumed.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Equatable, Codable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose whole sequence is a pure function of `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// The four words of state, in order: what `Codable` saves to resume a stream exactly.
    public var state: [UInt64] { [s.0, s.1, s.2, s.3] }

    /// The next 64 random bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A standard normal sample (Box-Muller in double precision).
    public mutating func nextNormal() -> Double {
        var u = nextUnit()
        while u <= 0 { u = nextUnit() }
        let v = nextUnit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }

    /// A normal sample with standard deviation `std`, redrawn until it lies within
    /// [-bound * std, bound * std]. timm's `trunc_normal_(std=s)` cuts at ±2 absolute, which is
    /// `bound: 2 / s`; `bound: 2` is the cut at ±2 std (`a=-2s, b=2s`).
    public mutating func nextTruncatedNormal(std: Double, bound: Double = 2) -> Float {
        while true {
            let z = nextNormal()
            if abs(z) <= bound { return Float(z * std) }
        }
    }

    /// Whether two generators will produce the same stream.
    public static func == (a: SeededGenerator, b: SeededGenerator) -> Bool { a.state == b.state }

    private enum CodingKeys: String, CodingKey { case state }

    /// Reads `{"state": [w0, w1, w2, w3]}`; any other count of words is an error.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let words = try c.decode([UInt64].self, forKey: .state)
        guard words.count == 4 else {
            throw DecodingError.dataCorruptedError(
                forKey: .state, in: c, debugDescription: "expected 4 words of state, got \(words.count)")
        }
        s = (words[0], words[1], words[2], words[3])
    }

    /// Writes `{"state": [w0, w1, w2, w3]}`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(state, forKey: .state)
    }
}
