/// Per-channel affine map applied when pixels become floats: `(v / 255 - mean) / std`.
/// CatLIP feeds [0, 1] pixels with no mean/std normalisation (the default here).
public struct Normalization: Sendable, Equatable, Codable {
    /// Per-channel mean (R, G, B) subtracted from [0, 1] values.
    public var mean: [Float]
    /// Per-channel standard deviation (R, G, B) dividing the centred values.
    public var std: [Float]

    /// A normalisation from its means and standard deviations.
    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 })
        self.mean = mean
        self.std = std
    }

    /// Pixels in [0, 1]: mean 0, std 1.
    public static let unit = Normalization(mean: [0, 0, 0], std: [1, 1, 1])
    /// ImageNet's statistics, as timm's default `pretrained_cfg` gives them.
    public static let imagenet = Normalization(
        mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// Channel `c` of an 8-bit pixel `v` normalised is `v * byteScale(c) + byteShift(c)`:
    /// `(v / 255 - mean) / std` folded into one multiply-add.
    @inline(__always)
    public func byteScale(_ c: Int) -> Float { 1 / (255 * std[c]) }

    /// See `byteScale`.
    @inline(__always)
    public func byteShift(_ c: Int) -> Float { -mean[c] / std[c] }

    /// Normalises `count` images already in [0, 1] (CHW planes of `plane` floats each, channel
    /// after channel): `(x - mean) * (1 / std)`, from `source` into `destination` (which may be
    /// the same memory).
    public func apply(unitImages source: UnsafePointer<Float>, count: Int, plane: Int, into destination: UnsafeMutablePointer<Float>) {
        for b in 0..<count {
            for c in 0..<3 {
                let offset = (b * 3 + c) * plane
                let (m, s) = (mean[c], 1 / std[c])
                for i in 0..<plane { destination[offset + i] = (source[offset + i] - m) * s }
            }
        }
    }
}

/// Reusable buffers for the training transform (decoded pixels, resampling intermediates), one
/// per worker thread, so that a steady stream of images allocates almost nothing. Large
/// per-image allocations would otherwise go through mmap/munmap and page faults, which also
/// serialise threads in the kernel.
public final class ResampleWorkspace: @unchecked Sendable {
    var pixels: [UInt8] = []
    var middle: [Float] = []
    var weights: [Float] = []
    var taps: [Int32] = []

    /// An empty workspace; buffers grow to the largest image seen.
    public init() {}

    /// The pixel buffer, for a decoder to fill (the workspace keeps none until `recycle`).
    func takePixels() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &pixels)
        return taken
    }

    /// Gives the pixel storage of a decoded region back for the next image.
    public func recycle(_ region: consuming DecodedRegion) {
        pixels = region.image.pixels
    }

    static func ensure<T: Numeric>(_ buffer: inout [T], _ count: Int) {
        if buffer.count < count { buffer = [T](repeating: 0, count: count) }
    }
}

/// The fast training path for the bilinear filter: resampling straight to normalised float CHW
/// in float arithmetic, with the same taps as the Pillow-exact `Resampler` (other filters go
/// through `Resampler` itself). Without 8-bit rounding between passes
/// the order of the passes does not matter, so the vertical pass runs first (it reads the 8-bit
/// rows once and is contiguous, hence vectorised), leaving the horizontal pass the fewest rows.
/// It agrees with the exact 8-bit path to within one level per channel.
enum FloatResampler {
    /// Resamples `box` of `image` (taps confined to `valid`) to `width` x `height` and writes
    /// 3 planes of `height * width` floats to `output`, mirrored left to right when `flip`.
    static func resample(
        _ image: RGBImage, box: Rect, valid: (x: Range<Int>, y: Range<Int>), width: Int,
        height: Int, filter: ResampleFilter, flip: Bool, normalization: Normalization,
        workspace: ResampleWorkspace, output: UnsafeMutablePointer<Float>
    ) {
        if filter != .bilinear {
            // Filters with negative lobes overshoot, and Pillow clips to 8 bits between its
            // passes; the float path would not be within one level of it, so take the exact one.
            var exact = Resampler.resample(
                image, box: box, valid: valid, width: width, height: height, filter: filter,
                window: (0..<width, 0..<height))
            if flip { exact = exact.flippedHorizontally() }
            exact.writeCHW(
                normalization: normalization,
                into: UnsafeMutableBufferPointer(start: output, count: 3 * width * height))
            return
        }
        let horizontal = ResampleAxis(
            in0: box.x0, in1: box.x1, outSize: width, outputRange: 0..<width, valid: valid.x,
            filter: filter)
        let vertical = ResampleAxis(
            in0: box.y0, in1: box.y1, outSize: height, outputRange: 0..<height, valid: valid.y,
            filter: filter)
        let colFirst = horizontal.starts[0]
        let colEnd = horizontal.starts[width - 1] + horizontal.counts[width - 1]
        let span = (colEnd - colFirst) * 3  // floats per intermediate row
        let hk = horizontal.kernelSize, vk = vertical.kernelSize
        // Weights as floats and taps as (start, count) pairs, horizontal then vertical.
        ResampleWorkspace.ensure(&workspace.weights, width * hk + height * vk)
        ResampleWorkspace.ensure(&workspace.taps, 2 * (width + height))
        // Padding: the horizontal pass loads 4 floats for each 3-channel pixel and always runs
        // `hk` taps (weights past a pixel's own taps are zero, the values they meet are finite).
        ResampleWorkspace.ensure(&workspace.middle, height * span + 3 * hk + 4)
        for i in 0..<(width * hk) { workspace.weights[i] = Float(horizontal.weights[i]) }
        for i in 0..<(height * vk) { workspace.weights[width * hk + i] = Float(vertical.weights[i]) }
        for x in 0..<width {
            workspace.taps[2 * x] = Int32(horizontal.starts[x] - colFirst)
            workspace.taps[2 * x + 1] = Int32(horizontal.counts[x])
        }
        for y in 0..<height {
            workspace.taps[2 * (width + y)] = Int32(vertical.starts[y])
            workspace.taps[2 * (width + y) + 1] = Int32(vertical.counts[y])
        }
        var scale = SIMD4<Float>(repeating: 0), shift = SIMD4<Float>(repeating: 0)
        for c in 0..<3 {
            scale[c] = normalization.byteScale(c)
            shift[c] = normalization.byteShift(c)
        }
        let plane = width * height
        let imageStride = image.width * 3

        image.pixels.withUnsafeBufferPointer { pixels in
            workspace.middle.withUnsafeMutableBufferPointer { middle in
                workspace.weights.withUnsafeBufferPointer { weights in
                    workspace.taps.withUnsafeBufferPointer { taps in
                        let src = pixels.baseAddress! + colFirst * 3
                        let mid = middle.baseAddress!
                        let hw = weights.baseAddress!
                        let vw = hw + width * hk
                        let htaps = taps.baseAddress!
                        let vtaps = htaps + 2 * width
                        // Vertical pass: (height, span) floats from the 8-bit rows.
                        for y in 0..<height {
                            let start = Int(vtaps[2 * y]), count = Int(vtaps[2 * y + 1])
                            let dst = mid + y * span
                            let w = vw + y * vk
                            let first = src + start * imageStride
                            let w0 = w[0]
                            for i in 0..<span { dst[i] = w0 * Float(first[i]) }
                            var k = 1
                            while k < count {
                                let row = src + (start + k) * imageStride
                                let wk = w[k]
                                for i in 0..<span { dst[i] += wk * Float(row[i]) }
                                k += 1
                            }
                        }
                        // Horizontal pass, then clamp, normalise and scatter to CHW.
                        let base = flip ? width - 1 : 0, step = flip ? -1 : 1
                        let s0 = scale[0], s1 = scale[1], s2 = scale[2]
                        let b0 = shift[0], b1 = shift[1], b2 = shift[2]
                        for y in 0..<height {
                            let row = UnsafeRawPointer(mid + (y &* span))
                            let out = output + (y &* width &+ base)
                            for x in 0..<width {
                                let p = row + Int(htaps[2 &* x]) &* 12
                                let w = hw + (x &* hk)
                                @inline(__always) func tap(_ k: Int) -> SIMD4<Float> {
                                    w[k] * p.loadUnaligned(fromByteOffset: k &* 12, as: SIMD4<Float>.self)
                                }
                                // Fixed tap counts unrolled; the kernel size is the same for
                                // every pixel of a call, so the branch is always predicted.
                                var acc: SIMD4<Float>
                                switch hk {
                                case 3:
                                    acc = tap(0) + tap(1) + tap(2)
                                case 5:
                                    acc = (tap(0) + tap(1)) + (tap(2) + tap(3)) + tap(4)
                                case 7:
                                    acc = (tap(0) + tap(1)) + (tap(2) + tap(3)) + (tap(4) + tap(5)) + tap(6)
                                default:
                                    acc = SIMD4<Float>(repeating: 0)
                                    var k = 0
                                    while k < hk {
                                        acc += tap(k)
                                        k &+= 1
                                    }
                                }
                                let o = out + (x &* step)
                                o[0] = clamp255(acc[0]) * s0 + b0
                                o[plane] = clamp255(acc[1]) * s1 + b1
                                o[2 &* plane] = clamp255(acc[2]) * s2 + b2
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `v` limited to [0, 255] (two scalar instructions; SIMD lane masks compile poorly here).
@inline(__always)
private func clamp255(_ v: Float) -> Float {
    let a = v < 0 ? 0 : v
    return a > 255 ? 255 : a
}
