#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Support

/// The sizing and cropping rules of torchvision's transforms, as pure functions of sizes and
/// random draws, so that crops can be chosen before any pixel is decoded.
public enum Geometry {
    /// torchvision `Resize(size)` with an int: the shorter side becomes `shorterSide`, the
    /// longer one `int(shorterSide * long / short)` (truncated).
    public static func resizedSize(width: Int, height: Int, shorterSide: Int) -> (
        width: Int, height: Int
    ) {
        precondition(width > 0 && height > 0 && shorterSide > 0, "sizes must be positive")
        let short = min(width, height), long = max(width, height)
        let newLong = Int(Double(shorterSide) * Double(long) / Double(short))
        return width <= height ? (shorterSide, newLong) : (newLong, shorterSide)
    }

    /// torchvision `CenterCrop`: the top-left corner of the centred crop,
    /// `int(round((size - crop) / 2))` with round-half-to-even; negative (padding with black)
    /// where the crop is larger than the image, as torchvision pads before cropping.
    public static func centerCropOrigin(width: Int, height: Int, cropWidth: Int, cropHeight: Int)
        -> (x: Int, y: Int)
    {
        func origin(_ size: Int, _ crop: Int) -> Int {
            if crop > size { return -((crop - size) / 2) }
            return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
        }
        return (origin(width, cropWidth), origin(height, cropHeight))
    }

    /// The crop_pct values the evaluation resize accepts: the resized side `size / cropPct` is at
    /// most 4x the crop (timm's configs use 0.875-1). A config read from a file is checked
    /// against this (`ModelLimits.cropPct`, `data.eval_crop_pct`) before a transform is made.
    public static let evalCropPctRange: ClosedRange<Double> = 0.25...1

    /// Largest output side the evaluation resize accepts (a crop of `size` at crop_pct 0.25 of
    /// the largest image side, 4096).
    public static let maxEvalResizeSide = 16_384

    /// Why `size` and `cropPct` cannot make an evaluation resize (in words naming the value),
    /// or nil when they can: the checks `evalResizeSize` and `EvalTransform` require, for
    /// callers that hold untrusted values.
    public static func evalResizeProblem(size: Int, cropPct: Double) -> String? {
        if !(cropPct.isFinite && evalCropPctRange.contains(cropPct)) {
            return "crop_pct \(cropPct) is out of range \(evalCropPctRange.lowerBound)..."
                + "\(evalCropPctRange.upperBound)"
        }
        if size < 1 || Double(size) / cropPct >= Double(maxEvalResizeSide + 1) {
            return "size \(size) / crop_pct \(cropPct) is out of range 1...\(maxEvalResizeSide)"
        }
        return nil
    }

    /// timm's evaluation resize: the shorter side scaled to `floor(size / cropPct)` before a
    /// centre crop of `size`. The values must pass `evalResizeProblem` (a programmer error
    /// otherwise: the conversion to Int is only done on a checked, finite, bounded quotient).
    public static func evalResizeSize(size: Int, cropPct: Double) -> Int {
        if let problem = evalResizeProblem(size: size, cropPct: cropPct) {
            preconditionFailure(problem)
        }
        return Int((Double(size) / cropPct).rounded(.down))
    }

    /// torchvision `RandomResizedCrop.get_params`: up to 10 draws of an area fraction uniform in
    /// `scale` and an aspect ratio log-uniform in `ratio`, keeping the first rectangle that fits,
    /// at a uniformly drawn position; otherwise the centre crop clamped to `ratio`.
    /// Returns (x, y, width, height) in pixels of the `width` x `height` image.
    public static func randomResizedCrop<G: RandomNumberGenerator>(
        width: Int, height: Int, scale: ClosedRange<Double> = 0.08...1.0,
        ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0), using generator: inout G
    ) -> (x: Int, y: Int, width: Int, height: Int) {
        precondition(width > 0 && height > 0, "image size must be positive")
        let area = Double(width * height)
        let logRatio = log(ratio.lowerBound)...log(ratio.upperBound)
        for _ in 0..<10 {
            let targetArea = area * uniform(scale, &generator)
            let aspect = exp(uniform(logRatio, &generator))
            let w = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let y = Int.random(in: 0...(height - h), using: &generator)
                let x = Int.random(in: 0...(width - w), using: &generator)
                return (x, y, w, h)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// A uniform draw from [a, b) with 53 random bits.
    static func uniform<G: RandomNumberGenerator>(_ range: ClosedRange<Double>, _ g: inout G)
        -> Double
    {
        let unit = Double(g.next() >> 11) * 0x1.0p-53
        return range.lowerBound + (range.upperBound - range.lowerBound) * unit
    }
}
