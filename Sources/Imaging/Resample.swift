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
        let scale = (in1 - in0) / Double(outSize)
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
    /// `valid` input pixels. Horizontal pass first, rounded to 8 bits, then vertical, as Pillow.
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
        let needH = width != image.width || box.x0 != 0 || box.x1 != Double(image.width)
            || valid.x != 0..<image.width
        let needV = height != image.height || box.y0 != 0 || box.y1 != Double(image.height)
            || valid.y != 0..<image.height
        let horizontal = ResampleAxis(
            in0: box.x0, in1: box.x1, outSize: width, outputRange: needH ? outX : 0..<0,
            valid: valid.x, filter: filter)
        let vertical = ResampleAxis(
            in0: box.y0, in1: box.y1, outSize: height, outputRange: needV ? outY : 0..<0,
            valid: valid.y, filter: filter)

        // Rows of the input the vertical pass reads.
        let rowFirst = needV ? vertical.starts.min()! : outY.lowerBound
        let rowEnd = needV ? zip(vertical.starts, vertical.counts).map(+).max()! : outY.upperBound
        // Horizontal pass over those rows: (rowEnd - rowFirst) x outX.count.
        let midWidth = needH ? outX.count : image.width
        var mid = [UInt8](repeating: 0, count: (rowEnd - rowFirst) * midWidth * 3)
        if needH {
            let kk = horizontal.fixedPointWeights
            let half = Int32(1) << Int32(precisionBits - 1)
            image.pixels.withUnsafeBufferPointer { src in
                for y in rowFirst..<rowEnd {
                    let row = y * image.width * 3
                    let dst = (y - rowFirst) * midWidth * 3
                    for i in 0..<outX.count {
                        var s0 = half, s1 = half, s2 = half
                        let start = horizontal.starts[i]
                        for k in 0..<horizontal.counts[i] {
                            let w = kk[i * horizontal.kernelSize + k]
                            let p = row + (start + k) * 3
                            s0 = s0 &+ Int32(src[p]) &* w
                            s1 = s1 &+ Int32(src[p + 1]) &* w
                            s2 = s2 &+ Int32(src[p + 2]) &* w
                        }
                        mid[dst + 3 * i] = clip8(s0)
                        mid[dst + 3 * i + 1] = clip8(s1)
                        mid[dst + 3 * i + 2] = clip8(s2)
                    }
                }
            }
        } else {
            for y in rowFirst..<rowEnd {
                let row = y * image.width * 3
                mid.replaceSubrange(
                    ((y - rowFirst) * midWidth * 3)..<((y - rowFirst + 1) * midWidth * 3),
                    with: image.pixels[row..<(row + midWidth * 3)])
            }
        }

        // Vertical pass (or a copy), written into the window.
        let kk = vertical.fixedPointWeights
        let half = Int32(1) << Int32(precisionBits - 1)
        let ow = window.x.count
        for (j, y) in outY.enumerated() {
            let dstRow = (y - window.y.lowerBound) * ow * 3
            for (i, x) in outX.enumerated() {
                let d = dstRow + (x - window.x.lowerBound) * 3
                let mx = needH ? i : x
                if needV {
                    var s0 = half, s1 = half, s2 = half
                    let start = vertical.starts[j]
                    for k in 0..<vertical.counts[j] {
                        let w = kk[j * vertical.kernelSize + k]
                        let p = ((start + k - rowFirst) * midWidth + mx) * 3
                        s0 = s0 &+ Int32(mid[p]) &* w
                        s1 = s1 &+ Int32(mid[p + 1]) &* w
                        s2 = s2 &+ Int32(mid[p + 2]) &* w
                    }
                    out[d] = clip8(s0)
                    out[d + 1] = clip8(s1)
                    out[d + 2] = clip8(s2)
                } else {
                    let p = ((y - rowFirst) * midWidth + mx) * 3
                    out[d] = mid[p]
                    out[d + 1] = mid[p + 1]
                    out[d + 2] = mid[p + 2]
                }
            }
        }
        return RGBImage(width: window.x.count, height: window.y.count, pixels: out)
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
