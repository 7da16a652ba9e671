/// Resampling filters, with Pillow's definitions and supports.
public enum ResampleFilter: String, Sendable, Equatable, Codable, CaseIterable {
    /// Triangle filter, support 1 (Pillow `BILINEAR`, torchvision's default).
    case bilinear
    /// Keys cubic with a = -0.5, support 2 (Pillow `BICUBIC`).
    case bicubic

    /// Half-width of the filter at scale 1.
    var support: Double {
        switch self {
        case .bilinear: return 1
        case .bicubic: return 2
        }
    }

    /// The filter's value at distance `x`.
    @inline(__always)
    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

/// The taps of a separable resampling along one axis, computed the way Pillow computes them
/// (`precompute_coeffs` in Resample.c): output sample `i` reads `counts[i]` input samples from
/// `starts[i]` with `weights[i * kernelSize ..< i * kernelSize + counts[i]]`, which sum to 1.
/// The filter is widened by the scale factor when reducing (antialiasing).
struct ResampleAxis {
    /// Number of output samples described.
    let count: Int
    /// Stride of `weights` between output samples.
    let kernelSize: Int
    /// First input sample of each output sample.
    var starts: [Int]
    /// Input samples read by each output sample.
    var counts: [Int]
    /// Normalised weights, `count * kernelSize`.
    var weights: [Double]

    /// Taps mapping input coordinates [`in0`, `in1`) onto `outSize` samples, for the output
    /// samples `outputRange` (a window of them: a crop of the resized image costs only its
    /// pixels). Taps are confined to `valid` input samples (Pillow: the whole image).
    init(
        in0: Double, in1: Double, outSize: Int, outputRange: Range<Int>, valid: Range<Int>,
        filter: ResampleFilter
    ) {
        // Pillow hands the box to C as float32 and subtracts in float32.
        let f0 = Float(in0), f1 = Float(in1)
        let in0 = Double(f0)
        let scale = Double(f1 - f0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        self.count = outputRange.count
        self.kernelSize = kernelSize
        starts = [Int](repeating: 0, count: count)
        counts = [Int](repeating: 0, count: count)
        weights = [Double](repeating: 0, count: count * kernelSize)
        let inverse = 1 / filterScale
        for (i, xx) in outputRange.enumerated() {
            let center = in0 + (Double(xx) + 0.5) * scale
            // Pillow rounds with a C cast of (value + 0.5), which truncates toward zero.
            var xmin = Int((center - support + 0.5).rounded(.towardZero))
            var xmax = Int((center + support + 0.5).rounded(.towardZero))
            xmin = min(max(xmin, valid.lowerBound), valid.upperBound - 1)
            xmax = max(min(xmax, valid.upperBound), xmin + 1)
            var total = 0.0
            for x in xmin..<xmax {
                let w = filter.weight((Double(x) - center + 0.5) * inverse)
                weights[i * kernelSize + x - xmin] = w
                total += w
            }
            if total != 0 {
                for k in 0..<(xmax - xmin) { weights[i * kernelSize + k] /= total }
            }
            starts[i] = xmin
            counts[i] = xmax - xmin
        }
    }

    /// The input samples read by any output sample (empty when there are none).
    var span: Range<Int> {
        guard count > 0 else { return 0..<0 }
        return starts.min()!..<zip(starts, counts).map(+).max()!
    }

    /// The weights in Pillow's 8-bit fixed point (22 fraction bits, rounded away from zero).
    var fixedPointWeights: [Int32] {
        weights.map { w in
            let scaled = w * Double(1 << Resampler.precisionBits)
            return Int32((w < 0 ? scaled - 0.5 : scaled + 0.5).rounded(.towardZero))
        }
    }
}

/// Pillow-exact 8-bit resampling: the reference every faster path is tested against.
enum Resampler {
    /// Fraction bits of Pillow's 8-bit fixed-point arithmetic (32 - 8 - 2).
    static let precisionBits = 22

    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        if v >= Int32(1) << (precisionBits + 8) { return 255 }
        if v <= 0 { return 0 }
        return UInt8(truncatingIfNeeded: v >> Int32(precisionBits))
    }

    /// Resamples `image` so that `box` (continuous input coordinates) fills a `width` x `height`
    /// output, producing only the output pixels in `window` (columns, rows; pixels of the window
    /// outside the output are black, as torchvision pads a centre crop). Taps stay inside
    /// `valid` input pixels, whose extent is the input size Pillow would see. Two passes rounded
    /// to 8 bits in between, in Pillow 13's order: horizontal first, unless the height shrinks
    /// by more than twice what the width does (python-pillow/Pillow#9549).
    static func resample(
        _ image: RGBImage, box: Rect, valid: (x: Range<Int>, y: Range<Int>), width: Int,
        height: Int, filter: ResampleFilter, window: (x: Range<Int>, y: Range<Int>)
    ) -> RGBImage {
        let outX = window.x.clamped(to: 0..<width)
        let outY = window.y.clamped(to: 0..<height)
        var out = [UInt8](repeating: 0, count: window.x.count * window.y.count * 3)
        if outX.isEmpty || outY.isEmpty {
            return RGBImage(width: window.x.count, height: window.y.count, pixels: out)
        }
        let inW = valid.x.count, inH = valid.y.count
        let needH = width != inW || box.x0 != Double(valid.x.lowerBound)
            || box.x1 != Double(valid.x.upperBound)
        let needV = height != inH || box.y0 != Double(valid.y.lowerBound)
            || box.y1 != Double(valid.y.upperBound)
        let horizontal = ResampleAxis(
            in0: box.x0, in1: box.x1, outSize: width,
            outputRange: needH ? outX : outX.lowerBound..<outX.lowerBound, valid: valid.x,
            filter: filter)
        let vertical = ResampleAxis(
            in0: box.y0, in1: box.y1, outSize: height,
            outputRange: needV ? outY : outY.lowerBound..<outY.lowerBound, valid: valid.y,
            filter: filter)
        // Without a pass, an axis maps output i of the window straight to input i.
        let cols = needH ? horizontal.span : (outX.lowerBound + valid.x.lowerBound)..<(outX.upperBound + valid.x.lowerBound)
        let rows = needV ? vertical.span : (outY.lowerBound + valid.y.lowerBound)..<(outY.upperBound + valid.y.lowerBound)
        let verticalFirst = height < inH && inH - height > 2 * (inW - width)

        var result: Plane8
        let source = Plane8(image)
        if verticalFirst {
            let mid = needV ? source.vertical(vertical, columns: cols) : source.crop(columns: cols, rows: rows)
            result = needH ? mid.horizontal(horizontal, columnOffset: cols.lowerBound) : mid
        } else {
            let mid = needH ? source.horizontal(horizontal, rows: rows) : source.crop(columns: cols, rows: rows)
            result = needV ? mid.vertical(vertical, rowOffset: rows.lowerBound) : mid
        }
        // `result` is outY x outX; place it in the window.
        for j in 0..<outY.count {
            let src = j * result.width * 3
            let dst = ((outY.lowerBound + j - window.y.lowerBound) * window.x.count
                + outX.lowerBound - window.x.lowerBound) * 3
            out.replaceSubrange(dst..<(dst + outX.count * 3), with: result.pixels[src..<(src + outX.count * 3)])
        }
        return RGBImage(width: window.x.count, height: window.y.count, pixels: out)
    }
}

/// An 8-bit RGB plane for the exact resampler's passes (may be empty, unlike `RGBImage`).
struct Plane8 {
    var width: Int
    var height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    init(_ image: RGBImage) {
        self.init(width: image.width, height: image.height, pixels: image.pixels)
    }

    /// The sub-plane `columns` x `rows`.
    func crop(columns: Range<Int>, rows: Range<Int>) -> Plane8 {
        var out = [UInt8]()
        out.reserveCapacity(columns.count * rows.count * 3)
        for y in rows {
            let start = (y * width + columns.lowerBound) * 3
            out.append(contentsOf: pixels[start..<(start + columns.count * 3)])
        }
        return Plane8(width: columns.count, height: rows.count, pixels: out)
    }

    /// Pillow's horizontal 8-bit pass over `rows` (all rows when nil): one output column per
    /// tap set of `axis`, whose starts are input columns minus `columnOffset`.
    func horizontal(_ axis: ResampleAxis, rows: Range<Int>? = nil, columnOffset: Int = 0) -> Plane8 {
        let rows = rows ?? 0..<height
        let kk = axis.fixedPointWeights
        let half = Int32(1) << Int32(Resampler.precisionBits - 1)
        var out = [UInt8](repeating: 0, count: rows.count * axis.count * 3)
        pixels.withUnsafeBufferPointer { src in
            for (j, y) in rows.enumerated() {
                let row = y * width * 3
                for i in 0..<axis.count {
                    var s0 = half, s1 = half, s2 = half
                    let start = axis.starts[i] - columnOffset
                    for k in 0..<axis.counts[i] {
                        let w = kk[i * axis.kernelSize + k]
                        let p = row + (start + k) * 3
                        s0 = s0 &+ Int32(src[p]) &* w
                        s1 = s1 &+ Int32(src[p + 1]) &* w
                        s2 = s2 &+ Int32(src[p + 2]) &* w
                    }
                    let d = (j * axis.count + i) * 3
                    out[d] = Resampler.clip8(s0)
                    out[d + 1] = Resampler.clip8(s1)
                    out[d + 2] = Resampler.clip8(s2)
                }
            }
        }
        return Plane8(width: axis.count, height: rows.count, pixels: out)
    }

    /// Pillow's vertical 8-bit pass over `columns` (all when nil): one output row per tap set of
    /// `axis`, whose starts are input rows minus `rowOffset`.
    func vertical(_ axis: ResampleAxis, columns: Range<Int>? = nil, rowOffset: Int = 0) -> Plane8 {
        let columns = columns ?? 0..<width
        let kk = axis.fixedPointWeights
        let half = Int32(1) << Int32(Resampler.precisionBits - 1)
        var out = [UInt8](repeating: 0, count: axis.count * columns.count * 3)
        pixels.withUnsafeBufferPointer { src in
            for j in 0..<axis.count {
                let start = axis.starts[j] - rowOffset
                for (i, x) in columns.enumerated() {
                    var s0 = half, s1 = half, s2 = half
                    for k in 0..<axis.counts[j] {
                        let w = kk[j * axis.kernelSize + k]
                        let p = ((start + k) * width + x) * 3
                        s0 = s0 &+ Int32(src[p]) &* w
                        s1 = s1 &+ Int32(src[p + 1]) &* w
                        s2 = s2 &+ Int32(src[p + 2]) &* w
                    }
                    let d = (j * columns.count + i) * 3
                    out[d] = Resampler.clip8(s0)
                    out[d + 1] = Resampler.clip8(s1)
                    out[d + 2] = Resampler.clip8(s2)
                }
            }
        }
        return Plane8(width: columns.count, height: axis.count, pixels: out)
    }
}

extension RGBImage {
    /// Pillow's `Image.resize((width, height), filter, box)`: the region `box` (default: the
    /// whole image, continuous coordinates) resampled to `width` x `height` with antialiasing,
    /// bit-identical to Pillow for RGB images.
    public func resized(
        width: Int, height: Int, filter: ResampleFilter = .bilinear, box: Rect? = nil
    ) -> RGBImage {
        precondition(width > 0 && height > 0, "output size must be positive")
        let box = box ?? Rect(x0: 0, y0: 0, x1: Double(self.width), y1: Double(self.height))
        return Resampler.resample(
            self, box: box, valid: (0..<self.width, 0..<self.height), width: width,
            height: height, filter: filter, window: (0..<width, 0..<height))
    }

    /// Pillow's `Image.crop((x, y, x + width, y + height))`: pixels outside the image are black.
    public func cropped(x: Int, y: Int, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0, "crop size must be positive")
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let xs = max(x, 0)..<min(x + width, self.width)
        let ys = max(y, 0)..<min(y + height, self.height)
        if !xs.isEmpty {
            for sy in ys {
                let src = (sy * self.width + xs.lowerBound) * 3
                let dst = ((sy - y) * width + xs.lowerBound - x) * 3
                out.replaceSubrange(dst..<(dst + xs.count * 3), with: pixels[src..<(src + xs.count * 3)])
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// torchvision's `resized_crop` on a PIL image: the integer rectangle (`x`, `y`, `width`,
    /// `height`) cut out, then resized to `outputWidth` x `outputHeight`. Computed in one pass
    /// with taps confined to the rectangle, which gives the same pixels.
    public func resizedCrop(
        x: Int, y: Int, width: Int, height: Int, outputWidth: Int, outputHeight: Int,
        filter: ResampleFilter = .bilinear
    ) -> RGBImage {
        precondition(
            x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= self.width
                && y + height <= self.height, "crop must lie inside the image")
        let box = Rect(x0: Double(x), y0: Double(y), x1: Double(x + width), y1: Double(y + height))
        return Resampler.resample(
            self, box: box, valid: (x..<(x + width), y..<(y + height)), width: outputWidth,
            height: outputHeight, filter: filter, window: (0..<outputWidth, 0..<outputHeight))
    }

    /// torchvision's `Resize(size)` then `CenterCrop(crop)` on a PIL image: the shorter side
    /// scaled to `size` (the longer one to `int(size * long / short)`), then the centre
    /// `cropWidth` x `cropHeight` cut out (black padding where the crop is larger). Only the
    /// cropped pixels are computed; they are identical to resizing first and cropping after.
    public func resizedShorterSide(
        to size: Int, centerCrop: (width: Int, height: Int)? = nil,
        filter: ResampleFilter = .bilinear
    ) -> RGBImage {
        let (rw, rh) = Geometry.resizedSize(width: width, height: height, shorterSide: size)
        let crop = centerCrop ?? (rw, rh)
        let (cx, cy) = Geometry.centerCropOrigin(
            width: rw, height: rh, cropWidth: crop.width, cropHeight: crop.height)
        return Resampler.resample(
            self, box: Rect(x0: 0, y0: 0, x1: Double(width), y1: Double(height)),
            valid: (0..<width, 0..<height), width: rw, height: rh, filter: filter,
            window: (cx..<(cx + crop.width), cy..<(cy + crop.height)))
    }

    /// The image mirrored left to right.
    public func flippedHorizontally() -> RGBImage {
        var out = pixels
        for y in 0..<height {
            for x in 0..<width {
                let s = (y * width + x) * 3
                let d = (y * width + width - 1 - x) * 3
                out[d] = pixels[s]
                out[d + 1] = pixels[s + 1]
                out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
