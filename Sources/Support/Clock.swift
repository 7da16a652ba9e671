import Dispatch

/// The monotonic clock every timer in catlip reads (step times, checkpoint intervals,
/// collectives' timeouts, benchmarks): never jumps with the wall clock.
public enum MonotonicClock {
    /// Seconds since an arbitrary fixed point (boot), with nanosecond resolution.
    @inline(__always)
    public static func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Nanoseconds since the same fixed point.
    @inline(__always)
    public static func nanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
