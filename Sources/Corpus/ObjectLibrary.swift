import Dispatch
import Foundation
import Imaging
import WordNet

/// A drawing ready to paste: its record, its pixels trimmed to the visible drawing and scaled
/// to the working size, and how captions may name it.
public struct LibraryObject: Sendable {
    /// The manifest record.
    public let record: ObjectRecord
    /// Premultiplied RGBA, transparent margins trimmed, longer side = the library's size.
    public let sprite: Sprite
    /// The noun's plural when it labels back to the noun, else nil.
    public let plural: String?
    /// Whether the name alone labels as the noun.
    public let nameCarriesNoun: Bool

    /// What a caption says about `count` copies of it.
    public func captionObject(count: Int = 1) -> CaptionObject {
        CaptionObject(
            name: record.name, noun: record.noun, plural: plural, keywords: record.keywords,
            count: count, nameCarriesNoun: nameCarriesNoun)
    }
}

/// The drawings scenes are made of, decoded once and shared read-only by the workers.
public final class ObjectLibrary: Sendable {
    /// The usable drawings, in manifest order.
    public let objects: [LibraryObject]
    /// Side the sprites are scaled to (their longer side).
    public let size: Int
    /// Records left out, by reason ("held out", "unreadable image: ...", "empty drawing"),
    /// with up to 10 examples each.
    public let skipped: [String: Int]
    /// Examples of the skipped records per reason.
    public let skippedExamples: [String: [String]]

    /// Decodes `records` with their transparency, except those whose `group` or `source:item`
    /// is in `heldout` (they never reach a scene: not as objects, not as background textures).
    /// Each sprite is trimmed to the pixels with coverage above 8/255 and scaled so its longer
    /// side is `size`. `labeller` checks how captions may name each noun (the labeller of the
    /// vocabulary the corpus is for). Decoding runs on `threads` threads; the result does not
    /// depend on their number. Unreadable or empty drawings are skipped and counted; throws
    /// when nothing usable is left.
    public init(
        records: [ObjectRecord], heldout: [ObjectRecord] = [], size: Int, labeller: Labeller,
        threads: Int = 2
    ) throws {
        precondition(size > 0 && threads > 0, "size and threads must be positive")
        self.size = size
        let heldoutKeys = Set(heldout.flatMap { [$0.group, "\($0.source):\($0.item)"] })
        var skipped: [String: Int] = [:]
        var examples: [String: [String]] = [:]
        func skip(_ reason: String, _ example: String) {
            skipped[reason, default: 0] += 1
            if examples[reason, default: []].count < 10 { examples[reason, default: []].append(example) }
        }
        var usable: [ObjectRecord] = []
        for record in records {
            if heldoutKeys.contains(record.group) || heldoutKeys.contains("\(record.source):\(record.item)") {
                skip("held out", "\(record.source):\(record.item)")
            } else {
                usable.append(record)
            }
        }
        let kept = usable

        let results = DecodeResults(count: kept.count)
        DispatchQueue.concurrentPerform(iterations: threads) { worker in
            for i in stride(from: worker, to: kept.count, by: threads) {
                results.set(i, Self.prepare(kept[i], size: size))
            }
        }

        // Nouns are checked once each, in manifest order (the labeller memoises; one thread).
        var pluralOf: [String: String?] = [:]
        var objects: [LibraryObject] = []
        for (i, record) in kept.enumerated() {
            let sprite: Sprite
            switch results.get(i) {
            case .success(let s): sprite = s
            case .failure(let reason): skip(reason.kind, "\(record.image): \(reason.message)"); continue
            }
            let nounSynsets = Set(labeller.synsets(record.noun))
            if pluralOf[record.noun] == nil {
                // A plural is used only when it labels as the singular does ("men" does not
                // label as man under corenet's rule); a noun without labels ("whale" under
                // corenet's rule) has nothing to lose.
                let plural = Captions.plural(record.noun)
                let labelsBack = Set(labeller.synsets(plural)) == nounSynsets
                pluralOf[record.noun] = .some(labelsBack ? plural : nil)
            }
            let carries = nounSynsets.isSubset(of: labeller.synsets(record.name))
            objects.append(
                LibraryObject(record: record, sprite: sprite, plural: pluralOf[record.noun]!, nameCarriesNoun: carries))
        }
        self.objects = objects
        self.skipped = skipped
        self.skippedExamples = examples
        if objects.isEmpty {
            throw CorpusError(path: records.first?.image ?? "objects", message: "no usable drawing among \(records.count) records")
        }
    }

    /// A failed drawing: a reason for the report and the detail.
    struct Failure: Error {
        var kind: String
        var message: String
    }

    /// Decode, trim and scale one drawing.
    static func prepare(_ record: ObjectRecord, size: Int) -> Result<Sprite, Failure> {
        let bytes: [UInt8]
        do { bytes = try readFileBytes(record.image) } catch {
            return .failure(Failure(kind: "unreadable image file", message: "\(error)"))
        }
        var sprite: Sprite
        do { sprite = try Sprite.decode(bytes, source: record.image) } catch let error as ImageError {
            return .failure(Failure(kind: "undecodable image (\(error.kind.rawValue))", message: error.message))
        } catch {
            return .failure(Failure(kind: "undecodable image", message: "\(error)"))
        }
        guard let box = sprite.opaqueBounds() else {
            return .failure(Failure(kind: "empty drawing", message: "no pixel with coverage above 8/255"))
        }
        sprite = sprite.cropped(x: box.x, y: box.y, width: box.width, height: box.height)
        // Large drawings are box-reduced first (exact averages of premultiplied pixels) to at
        // most twice the size, so the antialiased resize has little left to do.
        let factor = max(sprite.width, sprite.height) / (2 * size)
        if factor >= 2 { sprite = sprite.boxReduced(by: factor) }
        return .success(sprite.fitted(longerSide: size))
    }
}

/// One slot per drawing, each written by exactly one worker.
private final class DecodeResults: @unchecked Sendable {
    private var slots: [Result<Sprite, ObjectLibrary.Failure>?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ value: Result<Sprite, ObjectLibrary.Failure>) {
        lock.lock()
        slots[i] = value
        lock.unlock()
    }

    func get(_ i: Int) -> Result<Sprite, ObjectLibrary.Failure> {
        lock.lock()
        defer { lock.unlock() }
        return slots[i]!
    }
}

extension Sprite {
    /// The sprite shrunk by an integer `factor`: each output pixel the mean of a
    /// `factor` x `factor` block (partial blocks at the right and bottom edges averaged over
    /// the pixels they have).
    public func boxReduced(by factor: Int) -> Sprite {
        precondition(factor >= 1, "factor must be positive")
        if factor == 1 { return self }
        let w = (width + factor - 1) / factor, h = (height + factor - 1) / factor
        var out = [UInt8](repeating: 0, count: w * h * 4)
        for oy in 0..<h {
            for ox in 0..<w {
                var sum = SIMD4<UInt32>(repeating: 0)
                var n: UInt32 = 0
                for y in (oy * factor)..<min((oy + 1) * factor, height) {
                    for x in (ox * factor)..<min((ox + 1) * factor, width) {
                        let p = (y * width + x) * 4
                        sum &+= SIMD4(UInt32(pixels[p]), UInt32(pixels[p + 1]), UInt32(pixels[p + 2]), UInt32(pixels[p + 3]))
                        n += 1
                    }
                }
                let o = (oy * w + ox) * 4
                for k in 0..<4 { out[o + k] = UInt8((sum[k] + n / 2) / n) }
            }
        }
        return Sprite(width: w, height: h, pixels: out)
    }
}
