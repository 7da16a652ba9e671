import Foundation
import Support

/// timm's `Mixup` in its default per-batch mode, for classification: with probability `prob` a
/// batch is mixed with itself reversed, by mixup (x = λ x + (1 - λ) x.flip(0)) or, with
/// probability `switchProb` when both are on, by cutmix (a box of area about (1 - λ) pasted from
/// the reversed batch, λ then corrected to the box's actual share); λ ~ Beta(α, α) of the chosen
/// kind; the (smoothed) target rows are mixed with the same λ. The draws come from a generator
/// seeded by the run's seed and the micro-batch's number, so a resumed run mixes exactly as
/// the uninterrupted one.
struct Mixup: Sendable, Equatable {
    /// Mixup's α (0 = off); timm's `--mixup`.
    var mixupAlpha: Double
    /// Cutmix's α (0 = off); timm's `--cutmix`.
    var cutmixAlpha: Double
    /// Probability that a batch is mixed; timm's `--mixup-prob`.
    var prob: Double
    /// Probability of cutmix rather than mixup when both are on; timm's `--mixup-switch-prob`.
    var switchProb: Double

    /// Whether any mixing can happen.
    var isOn: Bool { prob > 0 && (mixupAlpha > 0 || cutmixAlpha > 0) }

    /// How one batch is mixed.
    struct Draw: Equatable {
        /// The weight of each image itself (of its own target row).
        var lambda: Double
        /// Cutmix's box in pixels (rows yl..<yh, columns xl..<xh), nil for mixup.
        var box: (yl: Int, yh: Int, xl: Int, xh: Int)?

        static func == (a: Draw, b: Draw) -> Bool {
            a.lambda == b.lambda && a.box?.yl == b.box?.yl && a.box?.yh == b.box?.yh && a.box?.xl == b.box?.xl
                && a.box?.xh == b.box?.xh
        }
    }

    /// The draws for a batch of `side` x `side` images (nil: not mixed), in timm's order:
    /// whether to mix, cutmix or mixup, λ, then the box's centre.
    func draw(_ g: inout SeededGenerator, side: Int) -> Draw? {
        guard isOn, g.nextUnit() < prob else { return nil }
        let cutmix = mixupAlpha > 0 && cutmixAlpha > 0 ? g.nextUnit() < switchProb : cutmixAlpha > 0
        let lambda = Self.beta(cutmix ? cutmixAlpha : mixupAlpha, &g)
        guard cutmix else { return Draw(lambda: lambda, box: nil) }
        // timm's rand_bbox: a square-ish box of sides int(S·sqrt(1 - λ)) around a uniform centre,
        // clipped to the image; λ becomes 1 - (box area / image area)
        let cut = Int(Double(side) * (1 - lambda).squareRoot())
        let cy = Int(g.next() % UInt64(side)), cx = Int(g.next() % UInt64(side))
        let yl = min(max(cy - cut / 2, 0), side), yh = min(max(cy + (cut + 1) / 2, 0), side)
        let xl = min(max(cx - cut / 2, 0), side), xh = min(max(cx + (cut + 1) / 2, 0), side)
        let corrected = 1 - Double((yh - yl) * (xh - xl)) / Double(side * side)
        return Draw(lambda: corrected, box: (yl, yh, xl, xh))
    }

    /// Mixes `count` images (CHW, 3 x `side` x `side` floats each) with the batch reversed, in
    /// place, as `draw` says.
    static func mixImages(_ x: UnsafeMutablePointer<Float>, count: Int, side: Int, draw: Draw) {
        let per = 3 * side * side
        let source = UnsafeMutablePointer<Float>.allocate(capacity: count * per)
        defer { source.deallocate() }
        source.update(from: x, count: count * per)
        let lam = Float(draw.lambda), rest = Float(1 - draw.lambda)
        for i in 0..<count {
            let (dst, src) = (x + i * per, source + (count - 1 - i) * per)
            if let box = draw.box {
                for c in 0..<3 {
                    for y in box.yl..<box.yh {
                        let row = c * side * side + y * side
                        (dst + row + box.xl).update(from: src + row + box.xl, count: box.xh - box.xl)
                    }
                }
            } else {
                for j in 0..<per { dst[j] = dst[j] * lam + src[j] * rest }
            }
        }
    }

    /// Mixes `count` target rows of `classes` with the rows reversed: λ t + (1 - λ) t.flip(0).
    static func mixTargets(_ t: UnsafeMutablePointer<Float>, count: Int, classes: Int, lambda: Double) {
        let source = Array(UnsafeBufferPointer(start: t, count: count * classes))
        let lam = Float(lambda), rest = Float(1 - lambda)
        for i in 0..<count {
            let (dst, src) = (i * classes, (count - 1 - i) * classes)
            for c in 0..<classes { t[dst + c] = source[dst + c] * lam + source[src + c] * rest }
        }
    }

    /// A Beta(α, α) sample: X / (X + Y) of two Gamma(α) draws.
    static func beta(_ alpha: Double, _ g: inout SeededGenerator) -> Double {
        let x = gamma(alpha, &g), y = gamma(alpha, &g)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// A Gamma(α, 1) sample (Marsaglia and Tsang; α < 1 through Gamma(α + 1) · U^(1/α)).
    static func gamma(_ alpha: Double, _ g: inout SeededGenerator) -> Double {
        if alpha < 1 {
            var u = g.nextUnit()
            while u <= 0 { u = g.nextUnit() }
            return gamma(alpha + 1, &g) * pow(u, 1 / alpha)
        }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat {
                x = g.nextNormal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = g.nextUnit()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if u > 0, log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }
}
