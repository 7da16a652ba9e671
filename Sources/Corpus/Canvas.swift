import Foundation
import Imaging

/// Where and how a sprite lands on a canvas: its centre in canvas pixels (continuous
/// coordinates, the canvas's top-left corner at 0, 0), a rotation in radians (clockwise on
/// screen) and an optional mirror image. The sprite keeps its size: scale it first.
public struct Placement: Sendable, Equatable {
    /// Centre, x.
    public var centerX: Double
    /// Centre, y.
    public var centerY: Double
    /// Rotation in radians.
    public var angle: Double
    /// Mirrored left to right before rotating.
    public var flipped: Bool

    /// A placement.
    public init(centerX: Double, centerY: Double, angle: Double = 0, flipped: Bool = false) {
        self.centerX = centerX
        self.centerY = centerY
        self.angle = angle
        self.flipped = flipped
    }
}

/// A sprite resampled into canvas pixels by a placement: premultiplied RGBA as floats in 0...1
/// over the part of its bounding box that lies on the canvas.
public struct PlacedSprite: Sendable {
    /// The block's first canvas column.
    public let x: Int
    /// The block's first canvas row.
    public let y: Int
    /// Block width (0 when nothing lands on the canvas).
    public let width: Int
    /// Block height.
    public let height: Int
    /// Premultiplied R, G, B, A per block pixel, `width * height * 4`.
    public let pixels: [Float]
    /// Pixels with coverage of at least one half over the whole bounding box, on the canvas or
    /// off it: the denominator of how much of the drawing is visible.
    public let opaquePixels: Int

    /// Coverage at block pixel (`i`, `j`).
    @inline(__always)
    func alpha(_ i: Int, _ j: Int) -> Float { pixels[(j * width + i) * 4 + 3] }
}

/// An RGB canvas of floats in 0...1, `size` x `size`, painted back to front: a background, then
/// sprites composited "over" it. Converted to 8 bits once, at the end.
public struct Canvas: Sendable {
    /// Side in pixels.
    public let size: Int
    /// R, G, B per pixel, `size * size * 3`.
    public var pixels: [Float]

    /// A black canvas.
    public init(size: Int) {
        precondition(size > 0, "canvas size must be positive")
        self.size = size
        pixels = [Float](repeating: 0, count: size * size * 3)
    }

    /// Every pixel `colour` (components in 0...1).
    public mutating func fill(_ colour: SIMD3<Float>) {
        for i in 0..<(size * size) {
            pixels[3 * i] = colour.x
            pixels[3 * i + 1] = colour.y
            pixels[3 * i + 2] = colour.z
        }
    }

    /// A linear gradient from `start` to `end` along the direction `angle` (radians), spanning
    /// the canvas.
    public mutating func linearGradient(from start: SIMD3<Float>, to end: SIMD3<Float>, angle: Double) {
        let dx = Float(cos(angle)), dy = Float(sin(angle))
        let half = Float(size) / 2
        // Projections of the corners bound the ramp, so it spans the canvas in any direction.
        let extent = half * (abs(dx) + abs(dy))
        for y in 0..<size {
            for x in 0..<size {
                let p = ((Float(x) + 0.5 - half) * dx + (Float(y) + 0.5 - half) * dy) / (2 * extent) + 0.5
                let c = start + (end - start) * min(max(p, 0), 1)
                let i = (y * size + x) * 3
                pixels[i] = c.x
                pixels[i + 1] = c.y
                pixels[i + 2] = c.z
            }
        }
    }

    /// Smooth value noise: a `grid` x `grid` lattice of colours (row-major, `grid * grid`
    /// entries) interpolated bilinearly over the canvas, plus per-pixel grain of up to
    /// `grain` (0...1) drawn from `generator`.
    public mutating func valueNoise<G: RandomNumberGenerator>(
        lattice: [SIMD3<Float>], grid: Int, grain: Float, using generator: inout G
    ) {
        precondition(grid >= 2 && lattice.count == grid * grid, "lattice must be grid x grid")
        let step = Float(grid - 1) / Float(size)
        for y in 0..<size {
            let fy = (Float(y) + 0.5) * step
            let gy = min(Int(fy), grid - 2)
            let ty = fy - Float(gy)
            for x in 0..<size {
                let fx = (Float(x) + 0.5) * step
                let gx = min(Int(fx), grid - 2)
                let tx = fx - Float(gx)
                let top = lattice[gy * grid + gx] * (1 - tx) + lattice[gy * grid + gx + 1] * tx
                let bottom = lattice[(gy + 1) * grid + gx] * (1 - tx) + lattice[(gy + 1) * grid + gx + 1] * tx
                var c = top * (1 - ty) + bottom * ty
                if grain > 0 {
                    let n = Float(generator.next() >> 40) / Float(1 << 24) - 0.5
                    c += SIMD3(repeating: n * 2 * grain)
                }
                let i = (y * size + x) * 3
                pixels[i] = min(max(c.x, 0), 1)
                pixels[i + 1] = min(max(c.y, 0), 1)
                pixels[i + 2] = min(max(c.z, 0), 1)
            }
        }
    }

    /// Copies an 8-bit image of the canvas's size.
    public mutating func paint(_ image: RGBImage) {
        precondition(image.width == size && image.height == size, "image must match the canvas")
        for i in 0..<(size * size * 3) { pixels[i] = Float(image.pixels[i]) / 255 }
    }

    /// `sprite` resampled into canvas pixels by `placement`: each canvas pixel centre is mapped
    /// back into the sprite (inverse rotation about the centres, then the mirror) and sampled
    /// bilinearly, transparent outside the sprite. Without rotation and with the sprite's
    /// corner on a pixel corner, every sample lands on a sprite pixel centre and the sprite is
    /// copied exactly.
    public func place(_ sprite: Sprite, at placement: Placement) -> PlacedSprite {
        let w = Double(sprite.width), h = Double(sprite.height)
        let c = cos(placement.angle), s = sin(placement.angle)
        let halfW = (abs(c) * w + abs(s) * h) / 2, halfH = (abs(s) * w + abs(c) * h) / 2
        // The bounding box in canvas pixels, before clipping.
        let bx0 = Int((placement.centerX - halfW).rounded(.down))
        let by0 = Int((placement.centerY - halfH).rounded(.down))
        let bx1 = Int((placement.centerX + halfW).rounded(.up))
        let by1 = Int((placement.centerY + halfH).rounded(.up))
        let x0 = max(bx0, 0), y0 = max(by0, 0), x1 = min(bx1, size), y1 = min(by1, size)
        let blockW = max(x1 - x0, 0), blockH = max(y1 - y0, 0)
        var block = [Float](repeating: 0, count: blockW * blockH * 4)
        var opaque = 0
        sprite.pixels.withUnsafeBufferPointer { src in
            let sw = sprite.width, sh = sprite.height
            @inline(__always) func tap(_ ix: Int, _ iy: Int, _ k: Int) -> Float {
                if ix < 0 || iy < 0 || ix >= sw || iy >= sh { return 0 }
                return Float(src[(iy * sw + ix) * 4 + k])
            }
            for y in by0..<by1 {
                for x in bx0..<bx1 {
                    let dx = Double(x) + 0.5 - placement.centerX
                    let dy = Double(y) + 0.5 - placement.centerY
                    var u = c * dx + s * dy + w / 2
                    let v = -s * dx + c * dy + h / 2
                    if placement.flipped { u = w - u }
                    let fx = u - 0.5, fy = v - 0.5
                    let ixD = fx.rounded(.down), iyD = fy.rounded(.down)
                    let ix = Int(ixD), iy = Int(iyD)
                    if ix < -1 || iy < -1 || ix >= sw || iy >= sh { continue }
                    let tx = Float(fx - ixD), ty = Float(fy - iyD)
                    let w00 = (1 - tx) * (1 - ty), w10 = tx * (1 - ty), w01 = (1 - tx) * ty, w11 = tx * ty
                    let a = (tap(ix, iy, 3) * w00 + tap(ix + 1, iy, 3) * w10 + tap(ix, iy + 1, 3) * w01
                        + tap(ix + 1, iy + 1, 3) * w11) / 255
                    if a >= 0.5 { opaque += 1 }
                    guard x >= x0 && x < x1 && y >= y0 && y < y1, a > 0 else { continue }
                    let o = ((y - y0) * blockW + (x - x0)) * 4
                    for k in 0..<3 {
                        block[o + k] = (tap(ix, iy, k) * w00 + tap(ix + 1, iy, k) * w10
                            + tap(ix, iy + 1, k) * w01 + tap(ix + 1, iy + 1, k) * w11) / 255
                    }
                    block[o + 3] = a
                }
            }
        }
        return PlacedSprite(x: x0, y: y0, width: blockW, height: blockH, pixels: block, opaquePixels: opaque)
    }

    /// Composites a placed sprite over the canvas: `out = colour + (1 - alpha) * canvas`, the
    /// Porter-Duff "over" operator on premultiplied colour.
    public mutating func composite(_ placed: PlacedSprite) {
        for j in 0..<placed.height {
            for i in 0..<placed.width {
                let o = (j * placed.width + i) * 4
                let a = placed.pixels[o + 3]
                if a <= 0 { continue }
                let p = ((placed.y + j) * size + placed.x + i) * 3
                let t = 1 - a
                pixels[p] = min(placed.pixels[o] + t * pixels[p], 1)
                pixels[p + 1] = min(placed.pixels[o + 1] + t * pixels[p + 1], 1)
                pixels[p + 2] = min(placed.pixels[o + 2] + t * pixels[p + 2], 1)
            }
        }
    }

    /// The canvas in 8 bits (rounded to nearest).
    public func image() -> RGBImage {
        var out = [UInt8](repeating: 0, count: size * size * 3)
        for i in 0..<out.count { out[i] = UInt8(min(max(pixels[i] * 255 + 0.5, 0), 255)) }
        return RGBImage(width: size, height: size, pixels: out)
    }
}
