import Dispatch

/// The in-place float sum that data-parallel training runs every step, timed the way `catlip
/// bench allreduce` reports it (run under mpirun; every rank calls it with the same sizes).
public enum AllreduceBench {
    /// Seconds of one sum of `count` floats: each rank's median over `repeats` timed sums (after
    /// 3 warm-up ones), averaged over the ranks, so every rank returns the same figure.
    public static func medianSeconds(reducer: any GradientReducer, count: Int, repeats: Int) throws -> Double {
        var buffer = [Float](repeating: 1, count: count)
        var times: [Double] = []
        for i in 0..<(repeats + 3) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try buffer.withUnsafeMutableBufferPointer { b in
                try reducer.startSum(b.baseAddress!, count: count)
                try reducer.finishSums()
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            if i >= 3 { times.append(Double(t1 - t0) / 1e9) }
        }
        times.sort()
        var median = [times[times.count / 2]]
        try reducer.sum(&median)
        return median[0] / Double(reducer.worldSize)
    }
}
