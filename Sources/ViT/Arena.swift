import Foundation

/// One contiguous, 64-byte aligned, zero-initialised block of floats that owns its memory.
/// Parameters, gradients, optimiser moments and activations each live in one arena; layers see
/// named views (offsets) into it.
public final class FloatArena {
    /// Number of floats.
    public let count: Int
    /// The first float; valid while the arena is alive.
    public let base: UnsafeMutablePointer<Float>

    /// An arena of `count` zeros.
    public init(count: Int) {
        precondition(count >= 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        base = raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
    }

    deinit {
        base.deinitialize(count: max(count, 1))
        UnsafeMutableRawPointer(base).deallocate()
    }

    /// The whole arena as a buffer.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: base, count: count)
    }

    /// Sets every float to zero.
    public func zero() {
        base.update(repeating: 0, count: count)
    }

    /// Copies every float from `other` (same count).
    public func copy(from other: FloatArena) {
        precondition(other.count == count)
        base.update(from: other.base, count: count)
    }
}

/// Hands out 64-byte aligned offsets for named buffers, to size an arena before allocating it.
struct ArenaPlanner {
    /// Floats planned so far (the arena size once planning is done).
    private(set) var count = 0

    /// Reserves `n` floats and returns their offset; every buffer starts on a 16-float boundary.
    mutating func take(_ n: Int) -> Int {
        precondition(n >= 0)
        let offset = count
        count += (n + 15) / 16 * 16
        return offset
    }
}

/// A xoshiro256** generator seeded through SplitMix64: fast, reproducible on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose whole sequence is determined by `seed`.
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

    /// The next 64 random bits.
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
}
