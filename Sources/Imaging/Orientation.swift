/// EXIF orientation (tag 0x0112): how the stored pixels must be turned to be seen upright.
/// Raw values 1-8 as in the EXIF specification; anything else reads as `.up`.
public enum Orientation: Int, Sendable, Equatable, CaseIterable, Codable {
    /// 1: stored upright.
    case up = 1
    /// 2: mirrored left to right.
    case upMirrored = 2
    /// 3: rotated 180 degrees.
    case down = 3
    /// 4: mirrored top to bottom.
    case downMirrored = 4
    /// 5: transposed (mirrored along the main diagonal).
    case leftMirrored = 5
    /// 6: shown after a 90-degree clockwise turn.
    case right = 6
    /// 7: transversed (mirrored along the anti-diagonal).
    case rightMirrored = 7
    /// 8: shown after a 90-degree counter-clockwise turn.
    case left = 8

    /// Whether width and height trade places when the orientation is applied.
    public var swapsAxes: Bool { rawValue >= 5 }

    /// The upright size of a stored image of `width` x `height`.
    public func orientedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        swapsAxes ? (height, width) : (width, height)
    }

    /// Maps a point of the upright image to the stored image, in continuous coordinates (pixel
    /// edges at integers), for a stored image of `width` x `height`.
    func storedPoint(_ x: Double, _ y: Double, width w: Double, height h: Double) -> (Double, Double) {
        switch self {
        case .up: return (x, y)
        case .upMirrored: return (w - x, y)
        case .down: return (w - x, h - y)
        case .downMirrored: return (x, h - y)
        case .leftMirrored: return (y, x)
        case .right: return (y, h - x)
        case .rightMirrored: return (w - y, h - x)
        case .left: return (w - y, x)
        }
    }

    /// Maps a point of the stored image of `width` x `height` to the upright image.
    func uprightPoint(_ x: Double, _ y: Double, width w: Double, height h: Double) -> (Double, Double) {
        switch self {
        case .up: return (x, y)
        case .upMirrored: return (w - x, y)
        case .down: return (w - x, h - y)
        case .downMirrored: return (x, h - y)
        case .leftMirrored: return (y, x)
        case .right: return (h - y, x)
        case .rightMirrored: return (h - y, w - x)
        case .left: return (y, w - x)
        }
    }

    /// Maps a rectangle of the upright image to the stored image of `width` x `height`.
    func storedRect(_ r: Rect, width: Double, height: Double) -> Rect {
        let a = storedPoint(r.x0, r.y0, width: width, height: height)
        let b = storedPoint(r.x1, r.y1, width: width, height: height)
        return Rect(x0: min(a.0, b.0), y0: min(a.1, b.1), x1: max(a.0, b.0), y1: max(a.1, b.1))
    }

    /// Maps a rectangle of the stored image of `width` x `height` to the upright image.
    func uprightRect(_ r: Rect, width: Double, height: Double) -> Rect {
        let a = uprightPoint(r.x0, r.y0, width: width, height: height)
        let b = uprightPoint(r.x1, r.y1, width: width, height: height)
        return Rect(x0: min(a.0, b.0), y0: min(a.1, b.1), x1: max(a.0, b.0), y1: max(a.1, b.1))
    }
}

/// An axis-aligned rectangle in continuous pixel coordinates: [x0, x1) x [y0, y1).
public struct Rect: Sendable, Equatable {
    /// Left edge.
    public var x0: Double
    /// Top edge.
    public var y0: Double
    /// Right edge (exclusive).
    public var x1: Double
    /// Bottom edge (exclusive).
    public var y1: Double

    /// A rectangle from its edges.
    public init(x0: Double, y0: Double, x1: Double, y1: Double) {
        self.x0 = x0
        self.y0 = y0
        self.x1 = x1
        self.y1 = y1
    }

    /// Width, `x1 - x0`.
    public var width: Double { x1 - x0 }
    /// Height, `y1 - y0`.
    public var height: Double { y1 - y0 }
}

extension RGBImage {
    /// The image turned upright according to `orientation` (the EXIF rule; Pillow's
    /// `ImageOps.exif_transpose` gives the same pixels).
    public func applying(_ orientation: Orientation) -> RGBImage {
        if orientation == .up { return self }
        let (ow, oh) = orientation.orientedSize(width: width, height: height)
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        let w = width, h = height
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        let (sx, sy): (Int, Int)
                        switch orientation {
                        case .up: (sx, sy) = (x, y)
                        case .upMirrored: (sx, sy) = (w - 1 - x, y)
                        case .down: (sx, sy) = (w - 1 - x, h - 1 - y)
                        case .downMirrored: (sx, sy) = (x, h - 1 - y)
                        case .leftMirrored: (sx, sy) = (y, x)
                        case .right: (sx, sy) = (y, h - 1 - x)
                        case .rightMirrored: (sx, sy) = (w - 1 - y, h - 1 - x)
                        case .left: (sx, sy) = (w - 1 - y, x)
                        }
                        let s = (sy * w + sx) * 3
                        let d = (y * ow + x) * 3
                        dst[d] = src[s]
                        dst[d + 1] = src[s + 1]
                        dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}
