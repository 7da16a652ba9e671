import Dispatch

/// Training augmentation as CatLIP uses it: torchvision's `RandomResizedCrop` (area 8-100%,
/// aspect 3/4-4/3, bilinear), a horizontal flip with probability 1/2, and conversion to float
/// CHW in [0, 1] (optionally normalised). The crop is drawn from the header's size before any
/// pixel is decoded, so a JPEG is decoded only under the crop and, where the crop is large
/// enough, at 1/2, 1/4 or 1/8 scale in the DCT domain.
public struct TrainTransform: Sendable, Equatable {
    /// Output side in pixels (square).
    public var size: Int
    /// Range of the crop's area as a fraction of the image.
    public var scale: ClosedRange<Double>
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    public var ratio: ClosedRange<Double>
    /// Probability of a horizontal flip.
    public var flipProbability: Double
    /// Resampling filter.
    public var filter: ResampleFilter
    /// Float conversion (default: [0, 1], no mean/std).
    public var normalization: Normalization
    /// Decoder options (pixel limit, strictness, background).
    public var decode: DecodeOptions
    /// Whether JPEGs may be decoded at reduced scale when the crop allows (default true).
    public var reducedDecoding: Bool

    /// The CatLIP defaults for an output of `size` x `size`.
    public init(
        size: Int, scale: ClosedRange<Double> = 0.08...1.0,
        ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0), flipProbability: Double = 0.5,
        filter: ResampleFilter = .bilinear, normalization: Normalization = .unit,
        decode: DecodeOptions = DecodeOptions(), reducedDecoding: Bool = true
    ) {
        precondition(size > 0, "size must be positive")
        precondition(scale.lowerBound > 0 && scale.upperBound <= 1, "scale must lie in (0, 1]")
        precondition(ratio.lowerBound > 0, "ratio must be positive")
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.flipProbability = flipProbability
        self.filter = filter
        self.normalization = normalization
        self.decode = decode
        self.reducedDecoding = reducedDecoding
    }

    /// Floats written per image: 3 * size * size.
    public var outputCount: Int { 3 * size * size }

    /// Decodes and augments one encoded image into `output` (`outputCount` floats, CHW),
    /// drawing the crop and the flip from `generator` (in that order). Throws `ImageError`
    /// naming `source` for undecodable input; `output` is then left unspecified.
    public func apply<G: RandomNumberGenerator>(
        _ bytes: [UInt8], source: String, using generator: inout G,
        workspace: ResampleWorkspace, into output: UnsafeMutableBufferPointer<Float>
    ) throws {
        precondition(output.count >= outputCount, "output buffer too small")
        var flip = false
        // An unreachable minimum keeps the decode at full scale.
        let minimum = reducedDecoding ? (size, size) : (Int.max, Int.max)
        let region = try ImageDecoder.decode(
            bytes, source: source, options: decode, minimumSize: minimum, workspace: workspace
        ) { width, height in
            let crop = Geometry.randomResizedCrop(
                width: width, height: height, scale: scale, ratio: ratio, using: &generator)
            flip = Geometry.uniform(0...1, &generator) < flipProbability
            return Rect(
                x0: Double(crop.x), y0: Double(crop.y), x1: Double(crop.x + crop.width),
                y1: Double(crop.y + crop.height))
        }
        // Taps stay inside the crop (torchvision crops, then resizes); with a reduced decode
        // the crop's edges fall inside pixels, which then count whole.
        let box = region.box
        let valid = (
            max(0, Int(box.x0.rounded(.down)))..<min(region.image.width, Int(box.x1.rounded(.up))),
            max(0, Int(box.y0.rounded(.down)))..<min(region.image.height, Int(box.y1.rounded(.up)))
        )
        FloatResampler.resample(
            region.image, box: box, valid: valid, width: size, height: size, filter: filter,
            flip: flip, normalization: normalization, workspace: workspace,
            output: output.baseAddress!)
        workspace.recycle(region)
    }

    /// Augments an already decoded image into `output` (same draws as `apply`).
    public func applyDecoded<G: RandomNumberGenerator>(
        _ image: RGBImage, using generator: inout G, workspace: ResampleWorkspace,
        into output: UnsafeMutableBufferPointer<Float>
    ) throws {
        precondition(output.count >= outputCount, "output buffer too small")
        let crop = Geometry.randomResizedCrop(
            width: image.width, height: image.height, scale: scale, ratio: ratio,
            using: &generator)
        let flip = Geometry.uniform(0...1, &generator) < flipProbability
        let box = Rect(
            x0: Double(crop.x), y0: Double(crop.y), x1: Double(crop.x + crop.width),
            y1: Double(crop.y + crop.height))
        FloatResampler.resample(
            image, box: box, valid: (crop.x..<(crop.x + crop.width), crop.y..<(crop.y + crop.height)),
            width: size, height: size, filter: filter, flip: flip, normalization: normalization,
            workspace: workspace, output: output.baseAddress!)
    }
}

/// Evaluation preprocessing as timm and torchvision do it: the shorter side resized to
/// `floor(size / cropPct)`, the centre `size` x `size` cut out, conversion to float CHW.
public struct EvalTransform: Sendable, Equatable {
    /// Output side in pixels (square).
    public var size: Int
    /// Fraction of the resized image kept by the centre crop (timm's `crop_pct`).
    public var cropPct: Double
    /// Resampling filter (timm's `interpolation`).
    public var filter: ResampleFilter
    /// Float conversion (default: [0, 1], no mean/std).
    public var normalization: Normalization
    /// Decoder options.
    public var decode: DecodeOptions

    /// An evaluation transform; timm's defaults are crop_pct 0.875 and bicubic, CatLIP's
    /// corenet evaluation uses bilinear. `size` and `cropPct` must pass
    /// `Geometry.evalResizeProblem` (a programmer error otherwise: values from files are
    /// validated first, by `ModelConfig.validate` or `TrainConfig`).
    public init(
        size: Int, cropPct: Double = 0.875, filter: ResampleFilter = .bilinear,
        normalization: Normalization = .unit, decode: DecodeOptions = DecodeOptions()
    ) {
        if let problem = Geometry.evalResizeProblem(size: size, cropPct: cropPct) {
            preconditionFailure(problem)
        }
        self.size = size
        self.cropPct = cropPct
        self.filter = filter
        self.normalization = normalization
        self.decode = decode
    }

    /// Floats written per image: 3 * size * size.
    public var outputCount: Int { 3 * size * size }

    /// The preprocessed image as RGB8 (bit-identical to Pillow + torchvision).
    public func image(_ bytes: [UInt8], source: String) throws -> RGBImage {
        let decoded = try ImageDecoder.decode(bytes, source: source, options: decode)
        return decoded.resizedShorterSide(
            to: Geometry.evalResizeSize(size: size, cropPct: cropPct),
            centerCrop: (size, size), filter: filter)
    }

    /// Decodes and preprocesses one encoded image into `output` (`outputCount` floats, CHW).
    public func apply(
        _ bytes: [UInt8], source: String, into output: UnsafeMutableBufferPointer<Float>
    ) throws {
        precondition(output.count >= outputCount, "output buffer too small")
        let pixels = try image(bytes, source: source)
        pixels.writeCHW(normalization: normalization, into: output)
    }
}

extension RGBImage {
    /// The pixels as 3 planes of float (CHW), `(v / 255 - mean) / std` per channel, into
    /// `output` (at least `3 * width * height` floats).
    public func writeCHW(
        normalization: Normalization = .unit, into output: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(output.count >= 3 * width * height, "output buffer too small")
        let plane = width * height
        pixels.withUnsafeBufferPointer { src in
            for c in 0..<3 {
                let (a, b) = (normalization.byteScale(c), normalization.byteShift(c))
                let out = output.baseAddress! + c * plane
                for i in 0..<plane { out[i] = Float(src[3 * i + c]) * a + b }
            }
        }
    }
}

extension EvalTransform {
    /// Decodes and preprocesses `count` images in parallel (one `DispatchQueue.concurrentPerform`
    /// iteration each), image `i` into floats `i * outputCount ..< (i + 1) * outputCount` of
    /// `output`. `load(i)` supplies the encoded bytes and the name used in errors (a path, a
    /// shard key, "image 3 of the request"); it runs on the worker too, so files are read in
    /// parallel. Returns one entry per image: nil when it decoded, else the error (from `load`
    /// or the decoder); the slot of a failed image is left as it was.
    public func applyAll(
        count: Int, into output: UnsafeMutableBufferPointer<Float>,
        load: @Sendable (Int) throws -> (bytes: [UInt8], name: String)
    ) -> [(any Error)?] {
        precondition(output.count >= count * outputCount, "output buffer too small")
        let errors = UnsafeMutableBufferPointer<(any Error)?>.allocate(capacity: count)
        errors.initialize(repeating: nil)
        defer { errors.deallocate() }
        nonisolated(unsafe) let (slots, failures) = (output, errors)
        let per = outputCount
        DispatchQueue.concurrentPerform(iterations: count) { i in
            do {
                let (bytes, name) = try load(i)
                let slot = UnsafeMutableBufferPointer(rebasing: slots[(i * per)..<((i + 1) * per)])
                try apply(bytes, source: name, into: slot)
            } catch {
                failures[i] = error
            }
        }
        return Array(errors)
    }

    /// `applyAll`, then the images that decoded moved to the front of `output`, in order:
    /// returns their indices and the failures (index and error), so that a caller runs the
    /// model on the first `kept.count` images.
    public func decodeBatch(
        count: Int, into output: UnsafeMutableBufferPointer<Float>,
        load: @Sendable (Int) throws -> (bytes: [UInt8], name: String)
    ) -> (kept: [Int], failures: [(index: Int, error: any Error)]) {
        let errors = applyAll(count: count, into: output, load: load)
        let per = outputCount
        var kept: [Int] = []
        var failures: [(index: Int, error: any Error)] = []
        for (i, error) in errors.enumerated() {
            if let error {
                failures.append((i, error))
                continue
            }
            if kept.count != i {
                (output.baseAddress! + kept.count * per).update(from: output.baseAddress! + i * per, count: per)
            }
            kept.append(i)
        }
        return (kept, failures)
    }
}
