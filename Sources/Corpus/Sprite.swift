import Imaging

/// A drawing with its transparency: `width * height` pixels of premultiplied RGBA8 (colour
/// already multiplied by coverage, so `red <= alpha`), rows top to bottom. Premultiplied
/// samples are what resampling and compositing need: a filter averages them linearly without
/// colour fringes from the invisible colour of transparent pixels, and "over" is
/// `out = colour + (1 - alpha) * background`.
public struct Sprite: Sendable, Equatable {
    /// Width in pixels (at least 1).
    public let width: Int
    /// Height in pixels (at least 1).
    public let height: Int
    /// Premultiplied R, G, B, A interleaved, `width * height * 4` bytes.
    public var pixels: [UInt8]

    /// Wraps premultiplied RGBA pixels.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "a sprite has at least one pixel")
        precondition(pixels.count == width * height * 4, "pixel count does not match the size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The premultiplied colours and the coverage as two RGB images (coverage in all three
    /// channels), the form `RGBImage.resized` works on.
    var planes: (colour: RGBImage, alpha: RGBImage) {
        var colour = [UInt8](repeating: 0, count: width * height * 3)
        var alpha = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            colour[3 * i] = pixels[4 * i]
            colour[3 * i + 1] = pixels[4 * i + 1]
            colour[3 * i + 2] = pixels[4 * i + 2]
            let a = pixels[4 * i + 3]
            alpha[3 * i] = a
            alpha[3 * i + 1] = a
            alpha[3 * i + 2] = a
        }
        return (RGBImage(width: width, height: height, pixels: colour), RGBImage(width: width, height: height, pixels: alpha))
    }

    /// Joins premultiplied colour and coverage planes of the same size; colours are clamped to
    /// the coverage (resampling rounds each plane separately).
    init(colour: RGBImage, alpha: RGBImage) {
        precondition(colour.width == alpha.width && colour.height == alpha.height, "plane sizes differ")
        var out = [UInt8](repeating: 0, count: colour.width * colour.height * 4)
        for i in 0..<(colour.width * colour.height) {
            let a = alpha.pixels[3 * i]
            out[4 * i] = min(colour.pixels[3 * i], a)
            out[4 * i + 1] = min(colour.pixels[3 * i + 1], a)
            out[4 * i + 2] = min(colour.pixels[3 * i + 2], a)
            out[4 * i + 3] = a
        }
        self.init(width: colour.width, height: colour.height, pixels: out)
    }

    /// Decodes a PNG or JPEG keeping its transparency. The image is decoded twice through
    /// `ImageDecoder`, composited onto black and onto white; with 8-bit samples libpng's
    /// compositing gives `black = round(c * a / 255)` and `white = black + (255 - a)` exactly,
    /// so the coverage is `a = 255 - (white - black)` and `black` is the premultiplied colour:
    /// the decoder's C layer needs no second, RGBA path. (16-bit files round at 16 bits first;
    /// their channels are averaged, an error of at most one step.) Opaque images come out with
    /// `a = 255` everywhere.
    public static func decode(_ bytes: [UInt8], source: String, maxPixels: Int = 64_000_000) throws -> Sprite {
        let info = try ImageDecoder.info(bytes, source: source)
        let black = try ImageDecoder.decode(
            bytes, source: source,
            options: DecodeOptions(maxPixels: maxPixels, background: .black))
        if !info.hasAlpha {
            var out = [UInt8](repeating: 255, count: black.width * black.height * 4)
            for i in 0..<(black.width * black.height) {
                out[4 * i] = black.pixels[3 * i]
                out[4 * i + 1] = black.pixels[3 * i + 1]
                out[4 * i + 2] = black.pixels[3 * i + 2]
            }
            return Sprite(width: black.width, height: black.height, pixels: out)
        }
        let white = try ImageDecoder.decode(
            bytes, source: source,
            options: DecodeOptions(maxPixels: maxPixels, background: .white))
        precondition(white.width == black.width && white.height == black.height, "decodes differ in size")
        var out = [UInt8](repeating: 0, count: black.width * black.height * 4)
        for i in 0..<(black.width * black.height) {
            var transparency = 0
            for c in 0..<3 { transparency += Int(white.pixels[3 * i + c]) - Int(black.pixels[3 * i + c]) }
            let a = UInt8(clamping: 255 - (transparency + 1) / 3)
            out[4 * i] = min(black.pixels[3 * i], a)
            out[4 * i + 1] = min(black.pixels[3 * i + 1], a)
            out[4 * i + 2] = min(black.pixels[3 * i + 2], a)
            out[4 * i + 3] = a
        }
        return Sprite(width: black.width, height: black.height, pixels: out)
    }

    /// The smallest rectangle holding every pixel with coverage above `threshold`, or nil when
    /// there is none (an empty drawing).
    public func opaqueBounds(threshold: UInt8 = 8) -> (x: Int, y: Int, width: Int, height: Int)? {
        var x0 = width, y0 = height, x1 = -1, y1 = -1
        for y in 0..<height {
            for x in 0..<width where pixels[(y * width + x) * 4 + 3] > threshold {
                if x < x0 { x0 = x }
                if x > x1 { x1 = x }
                if y < y0 { y0 = y }
                if y > y1 { y1 = y }
            }
        }
        guard x1 >= 0 else { return nil }
        return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    }

    /// The rectangle (`x`, `y`, `width`, `height`) cut out; it must lie inside.
    public func cropped(x: Int, y: Int, width: Int, height: Int) -> Sprite {
        precondition(x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= self.width
            && y + height <= self.height, "crop must lie inside the sprite")
        var out = [UInt8]()
        out.reserveCapacity(width * height * 4)
        for row in y..<(y + height) {
            let start = (row * self.width + x) * 4
            out.append(contentsOf: pixels[start..<(start + width * 4)])
        }
        return Sprite(width: width, height: height, pixels: out)
    }

    /// The sprite resampled to `width` x `height` with Pillow's antialiased filters, the
    /// premultiplied colours and the coverage each resampled like an RGB image.
    public func resized(width: Int, height: Int, filter: ResampleFilter = .bilinear) -> Sprite {
        if width == self.width && height == self.height { return self }
        let (colour, alpha) = planes
        return Sprite(
            colour: colour.resized(width: width, height: height, filter: filter),
            alpha: alpha.resized(width: width, height: height, filter: filter))
    }

    /// The sprite scaled so that its longer side is `side` pixels (the shorter at least 1).
    public func fitted(longerSide side: Int, filter: ResampleFilter = .bilinear) -> Sprite {
        let scale = Double(side) / Double(max(width, height))
        let w = max(1, Int((Double(width) * scale).rounded()))
        let h = max(1, Int((Double(height) * scale).rounded()))
        return resized(width: w, height: h, filter: filter)
    }

    /// The sprite composited over an opaque `background` colour.
    public func flattened(onto background: RGBColor) -> RGBImage {
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bg = [background.red, background.green, background.blue]
        for i in 0..<(width * height) {
            let t = 255 - Int(pixels[4 * i + 3])
            for c in 0..<3 {
                out[3 * i + c] = UInt8(clamping: Int(pixels[4 * i + c]) + (t * Int(bg[c]) + 127) / 255)
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
