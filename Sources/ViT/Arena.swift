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
