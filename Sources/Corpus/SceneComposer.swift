import Foundation
import Imaging
import Shards
import Support

/// How scenes are composed. The defaults are the corpus of issue 6.
public struct ComposerConfig: Sendable, Equatable, Codable {
    /// Scene side in pixels.
    public var size: Int
    /// Most distinct drawings in a scene (1 to this many), and most pastes in all.
    public var maxObjects: Int
    /// Chance that one drawing of a scene is pasted two or three times ("two dogs").
    public var repeatProbability: Double
    /// Chance that a paste is rotated (by up to `maxRotationDegrees` either way).
    public var rotationProbability: Double
    /// Largest rotation, degrees.
    public var maxRotationDegrees: Double
    /// Least fraction of each drawing's opaque pixels left visible (in the frame, not covered
    /// by later drawings). Placements are retried until this holds.
    public var minimumVisible: Double

    /// A configuration; the defaults are the corpus.
    public init(
        size: Int = 64, maxObjects: Int = 4, repeatProbability: Double = 0.12,
        rotationProbability: Double = 0.4, maxRotationDegrees: Double = 15,
        minimumVisible: Double = 0.5
    ) {
        self.size = size
        self.maxObjects = maxObjects
        self.repeatProbability = repeatProbability
        self.rotationProbability = rotationProbability
        self.maxRotationDegrees = maxRotationDegrees
        self.minimumVisible = minimumVisible
    }
}

/// One pasted copy of a drawing, as recorded in the sample's metadata.
public struct Paste: Sendable, Equatable {
    /// Index into the sample's objects.
    public var object: Int
    /// Visible bounding box in scene pixels: x0, y0, x1, y1 (exclusive), or all zero.
    public var box: [Int]
    /// Percent of the drawing's opaque pixels visible in the final scene.
    public var visiblePercent: Int
    /// Rotation, whole degrees.
    public var angleDegrees: Int
    /// Mirrored.
    public var flipped: Bool
    /// Longer side of the pasted drawing in pixels.
    public var side: Int
}

/// The background a sample was painted on.
public struct Background: Sendable, Equatable {
    /// `solid`, `gradient`, `noise` or `texture`.
    public var kind: String
    /// The colour name of a solid background painted in a named colour.
    public var colourName: String?
    /// For `texture`: the library index of the drawing the crop was cut from.
    public var textureObject: Int?
}

/// A composed sample: the picture, its caption, and what is in it.
public struct ComposedSample: Sendable {
    /// The picture.
    public var image: RGBImage
    /// The caption.
    public var caption: String
    /// Library indices of the distinct drawings shown, in first-paste order.
    public var objects: [Int]
    /// Copies of each of `objects`.
    public var counts: [Int]
    /// Every paste, back to front.
    public var pastes: [Paste]
    /// The background.
    public var background: Background
    /// True for a single drawing sample, false for a scene.
    public var isSingle: Bool
}

/// Composes scenes and single-drawing samples from a library. Every sample is a pure function
/// of (seed, kind, index): each draws from its own `SeededGenerator`, so samples can be made
/// in any order on any number of threads with the same bytes.
public struct SceneComposer: Sendable {
    /// The drawings.
    public let library: ObjectLibrary
    /// Settings.
    public let config: ComposerConfig
    /// The seed.
    public let seed: UInt64

    /// Seed purposes, apart from the loader's in `Seeds`.
    static let scenePurpose: UInt64 = 0x5343_454E_4500  // "SCENE"
    static let singlePurpose: UInt64 = 0x5349_4E47_4C45  // "SINGLE"

    /// Cumulative sampling weights of the drawings (last = 1).
    let cumulativeWeights: [Double]

    /// A composer over `library`. Drawings are drawn with weight 1 / sqrt(drawings sharing
    /// their noun): a noun's share of the pastes grows with the square root of its drawings,
    /// so the 100-odd playing cards of OpenClipArt do not crowd out nouns drawn once.
    public init(library: ObjectLibrary, config: ComposerConfig, seed: UInt64) {
        precondition(config.size == library.size, "the library must be scaled for the scene size")
        precondition(config.maxObjects >= 1 && config.maxObjects <= 100, "1 to 100 objects per scene")
        self.library = library
        self.config = config
        self.seed = seed
        var perNoun: [String: Int] = [:]
        for o in library.objects { perNoun[o.record.noun, default: 0] += 1 }
        var total = 0.0
        var cumulative: [Double] = []
        for o in library.objects {
            total += 1 / Double(perNoun[o.record.noun]!).squareRoot()
            cumulative.append(total)
        }
        cumulativeWeights = cumulative.map { $0 / total }
    }

    /// A drawing drawn by the weights.
    private func pickObject(_ g: inout SeededGenerator) -> Int {
        let u = uniformUnit(&g)
        var lo = 0, hi = cumulativeWeights.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulativeWeights[mid] > u { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// Named background colours (RGB 0...1), matching `Captions.colourNames`.
    static let namedColours: [SIMD3<Float>] = [
        SIMD3(1, 1, 1), SIMD3(0.05, 0.05, 0.05), SIMD3(0.55, 0.55, 0.55), SIMD3(0.85, 0.12, 0.12),
        SIMD3(0.98, 0.55, 0.1), SIMD3(0.98, 0.88, 0.2), SIMD3(0.2, 0.65, 0.25), SIMD3(0.15, 0.35, 0.85),
        SIMD3(0.5, 0.2, 0.65), SIMD3(0.98, 0.6, 0.75), SIMD3(0.5, 0.32, 0.15),
    ]

    /// Scene number `index`: 1 to `maxObjects` drawings, sometimes one of them repeated,
    /// each scaled, mirrored, rotated and placed so that at least `minimumVisible` of it
    /// shows, over a solid, gradient, noise or texture background.
    public func scene(_ index: Int) -> ComposedSample {
        var g = Seeds.generator(seed: seed, epoch: 0, purpose: Self.scenePurpose, index: index)
        let size = config.size
        let n = library.objects.count

        // What goes in: distinct drawings, then copies.
        let distinct = min(pickObjectCount(&g), n)
        var objects: [Int] = []
        while objects.count < distinct {
            let o = pickObject(&g)
            if !objects.contains(o) { objects.append(o) }
        }
        var counts = [Int](repeating: 1, count: objects.count)
        if objects.count < config.maxObjects && uniformUnit(&g) < config.repeatProbability {
            let extra = min(config.maxObjects - objects.count, 1 + uniformIndex(2, &g))
            counts[uniformIndex(objects.count, &g)] += extra
        }
        var order: [Int] = []
        for (i, c) in counts.enumerated() { order += Array(repeating: i, count: c) }
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, uniformIndex(i + 1, &g)) }

        var canvas = Canvas(size: size)
        let background = paintBackground(&canvas, &g, texturePool: n)

        // Back to front; the owner map says which paste shows at each pixel.
        let total = order.count
        let sideRange: ClosedRange<Double> =
            switch total {
            case 1: 0.55...0.95
            case 2: 0.4...0.72
            case 3: 0.32...0.6
            default: 0.28...0.52
            }
        var owner = [Int8](repeating: -1, count: size * size)
        var visible = [Int](repeating: 0, count: total)
        var opaque = [Int](repeating: 0, count: total)
        var pastes: [Paste] = []
        for (p, objectSlot) in order.enumerated() {
            let object = library.objects[objects[objectSlot]]
            let side = max(4, Int((uniform(sideRange, &g) * Double(size)).rounded()))
            let sprite = object.sprite.fitted(longerSide: side)
            let flipped = uniformIndex(2, &g) == 1
            let angle =
                uniformUnit(&g) < config.rotationProbability
                ? uniform(-config.maxRotationDegrees...config.maxRotationDegrees, &g) * .pi / 180 : 0
            var best: (placed: PlacedSprite, placement: Placement, score: Double)? = nil
            // Centres keep at least three quarters of each side in the frame: drawings may be
            // cut by the border, not pushed out of it.
            let marginX = min(Double(sprite.width) / 4, Double(size) / 2)
            let marginY = min(Double(sprite.height) / 4, Double(size) / 2)
            for _ in 0..<12 {
                let placement = Placement(
                    centerX: uniform(marginX...(Double(size) - marginX), &g),
                    centerY: uniform(marginY...(Double(size) - marginY), &g), angle: angle, flipped: flipped)
                let placed = canvas.place(sprite, at: placement)
                let score = placementScore(placed, owner: owner, visible: visible, opaque: opaque, size: size)
                if best == nil || score > best!.score { best = (placed, placement, score) }
                if score >= config.minimumVisible { break }
            }
            let placed = best!.placed
            canvas.composite(placed)
            opaque[p] = max(placed.opaquePixels, 1)
            for j in 0..<placed.height {
                for i in 0..<placed.width where placed.alpha(i, j) >= 0.5 {
                    let cell = (placed.y + j) * size + placed.x + i
                    if owner[cell] >= 0 { visible[Int(owner[cell])] -= 1 }
                    owner[cell] = Int8(p)
                    visible[p] += 1
                }
            }
            pastes.append(
                Paste(
                    object: objectSlot, box: [], visiblePercent: 0,
                    angleDegrees: Int((angle * 180 / .pi).rounded()), flipped: flipped, side: side))
        }
        // Visible boxes and fractions from the final owner map.
        var boxes = [[Int]](repeating: [Int.max, Int.max, -1, -1], count: total)
        for y in 0..<size {
            for x in 0..<size {
                let o = Int(owner[y * size + x])
                if o < 0 { continue }
                boxes[o][0] = min(boxes[o][0], x)
                boxes[o][1] = min(boxes[o][1], y)
                boxes[o][2] = max(boxes[o][2], x + 1)
                boxes[o][3] = max(boxes[o][3], y + 1)
            }
        }
        for p in 0..<total {
            pastes[p].box = boxes[p][2] < 0 ? [0, 0, 0, 0] : boxes[p]
            pastes[p].visiblePercent = min(100, Int((Double(visible[p]) * 100 / Double(opaque[p])).rounded()))
        }

        let captionObjects = objects.enumerated().map { library.objects[$0.element].captionObject(count: counts[$0.offset]) }
        let caption = Captions.caption(objects: captionObjects, backgroundColour: background.colourName, using: &g)
        return ComposedSample(
            image: canvas.image(), caption: caption, objects: objects, counts: counts, pastes: pastes,
            background: background, isSingle: false)
    }

    /// Single-drawing sample number `index` (drawing `index % count` of the library): the
    /// drawing centred at 75-95% of the frame, mostly on white like clip art on a web page,
    /// otherwise on a plain named colour, with a caption of its own.
    public func single(_ index: Int) -> ComposedSample {
        var g = Seeds.generator(seed: seed, epoch: 0, purpose: Self.singlePurpose, index: index)
        let size = config.size
        let objectIndex = index % library.objects.count
        let object = library.objects[objectIndex]
        var canvas = Canvas(size: size)
        let colour = uniformUnit(&g) < 0.75 ? 0 : uniformIndex(Self.namedColours.count, &g)
        canvas.fill(Self.namedColours[colour])
        let side = max(4, Int((uniform(0.75...0.95, &g) * Double(size)).rounded()))
        let sprite = object.sprite.fitted(longerSide: side)
        // Corner on a pixel corner: the drawing is copied without resampling blur.
        let x0 = (size - sprite.width) / 2, y0 = (size - sprite.height) / 2
        let placed = canvas.place(
            sprite,
            at: Placement(centerX: Double(x0) + Double(sprite.width) / 2, centerY: Double(y0) + Double(sprite.height) / 2))
        canvas.composite(placed)
        let background = Background(kind: "solid", colourName: Captions.colourNames[colour], textureObject: nil)
        let caption = Captions.caption(objects: [object.captionObject()], backgroundColour: background.colourName, using: &g)
        let paste = Paste(
            object: 0, box: [x0, y0, x0 + sprite.width, y0 + sprite.height], visiblePercent: 100,
            angleDegrees: 0, flipped: false, side: side)
        return ComposedSample(
            image: canvas.image(), caption: caption, objects: [objectIndex], counts: [1], pastes: [paste],
            background: background, isSingle: true)
    }

    /// 1 to `maxObjects` distinct drawings: one and two most often.
    private func pickObjectCount(_ g: inout SeededGenerator) -> Int {
        let weights: [Double] = [0.3, 0.35, 0.2, 0.15]
        let u = uniformUnit(&g)
        var acc = 0.0
        for (i, w) in weights.prefix(config.maxObjects).enumerated() {
            acc += w / weights.prefix(config.maxObjects).reduce(0, +)
            if u < acc { return i + 1 }
        }
        return config.maxObjects
    }

    /// The least visible fraction among the earlier pastes and this one if `placed` went on
    /// top now (each earlier paste loses the pixels it covers; this one shows what is in frame).
    private func placementScore(_ placed: PlacedSprite, owner: [Int8], visible: [Int], opaque: [Int], size: Int) -> Double {
        var lost = [Int](repeating: 0, count: visible.count)
        var inFrame = 0
        for j in 0..<placed.height {
            for i in 0..<placed.width where placed.alpha(i, j) >= 0.5 {
                inFrame += 1
                let o = owner[(placed.y + j) * size + placed.x + i]
                if o >= 0 { lost[Int(o)] += 1 }
            }
        }
        var score = placed.opaquePixels == 0 ? 1 : Double(inFrame) / Double(placed.opaquePixels)
        for o in 0..<visible.count where opaque[o] > 0 {
            score = min(score, Double(visible[o] - lost[o]) / Double(opaque[o]))
        }
        return score
    }

    /// Paints one of four backgrounds: a plain colour (named or not), a two-colour gradient,
    /// smooth noise, or an enlarged, lightened crop of a drawing flattened on a colour.
    private func paintBackground(_ canvas: inout Canvas, _ g: inout SeededGenerator, texturePool: Int) -> Background {
        let u = uniformUnit(&g)
        if u < 0.35 {
            if uniformUnit(&g) < 0.6 {
                // Named colours, white most often (clip art on a page).
                let c = uniformUnit(&g) < 0.4 ? 0 : uniformIndex(Self.namedColours.count, &g)
                canvas.fill(Self.namedColours[c])
                return Background(kind: "solid", colourName: Captions.colourNames[c], textureObject: nil)
            }
            canvas.fill(randomColour(&g))
            return Background(kind: "solid", colourName: nil, textureObject: nil)
        }
        if u < 0.55 {
            canvas.linearGradient(from: randomColour(&g), to: randomColour(&g), angle: uniform(0...(2 * .pi), &g))
            return Background(kind: "gradient", colourName: nil, textureObject: nil)
        }
        if u < 0.75 {
            let grid = 2 + uniformIndex(7, &g)
            let base = randomColour(&g)
            let spread = Float(uniform(0.05...0.5, &g))
            var lattice: [SIMD3<Float>] = []
            for _ in 0..<(grid * grid) {
                let jitter = SIMD3<Float>(Float(uniformUnit(&g)), Float(uniformUnit(&g)), Float(uniformUnit(&g))) - 0.5
                lattice.append(base + jitter * 2 * spread)
            }
            canvas.valueNoise(lattice: lattice, grid: grid, grain: Float(uniform(0...0.12, &g)), using: &g)
            return Background(kind: "noise", colourName: nil, textureObject: nil)
        }
        // Texture: a piece of some drawing, flattened on a colour and enlarged to the frame.
        let t = uniformIndex(texturePool, &g)
        let sprite = library.objects[t].sprite
        let colour = randomColour(&g)
        let flat = sprite.flattened(
            onto: RGBColor(red: UInt8(colour.x * 255), green: UInt8(colour.y * 255), blue: UInt8(colour.z * 255)))
        let side = max(2.0, uniform(0.15...0.45, &g) * Double(min(flat.width, flat.height)))
        let x = uniform(0...(Double(flat.width) - side), &g), y = uniform(0...(Double(flat.height) - side), &g)
        var image = flat.resized(
            width: canvas.size, height: canvas.size, filter: .bilinear,
            box: Rect(x0: x, y0: y, x1: x + side, y1: y + side))
        if uniformIndex(2, &g) == 1 { image = image.flippedHorizontally() }
        canvas.paint(image)
        // Lightened toward white or darkened toward black so drawings stand out on it.
        let mix = Float(uniform(0.3...0.7, &g))
        let target: Float = uniformIndex(3, &g) == 0 ? 0 : 1
        for i in 0..<canvas.pixels.count { canvas.pixels[i] += (target - canvas.pixels[i]) * mix }
        return Background(kind: "texture", colourName: nil, textureObject: t)
    }

    private func randomColour(_ g: inout SeededGenerator) -> SIMD3<Float> {
        SIMD3(Float(uniformUnit(&g)), Float(uniformUnit(&g)), Float(uniformUnit(&g)))
    }
}
