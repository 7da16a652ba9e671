import Dispatch
import Foundation
import Imaging
import Shards
import Support

/// What `CorpusWriter.write` made, counted for summary.json.
public struct CorpusSummary: Sendable, Equatable {
    /// Composed scenes written.
    public var scenes = 0
    /// Single-drawing samples written.
    public var singles = 0
    /// Shards written.
    public var shards = 0
    /// Bytes of PNG written.
    public var imageBytes = 0
    /// Per source: drawings in the library, pastes in scenes, scenes showing it, single samples.
    public var perSource: [String: [String: Int]] = [:]
    /// Pastes (scene copies plus single samples) per object name.
    public var perName: [String: Int] = [:]
    /// Samples showing each head noun.
    public var perNoun: [String: Int] = [:]
    /// Scenes by number of pastes.
    public var pastesPerScene: [String: Int] = [:]
    /// Samples per background kind.
    public var backgrounds: [String: Int] = [:]
    /// Pastes whose visible fraction is below the configured minimum (placement gave up).
    public var underVisible = 0

    mutating func add(_ other: CorpusSummary) {
        scenes += other.scenes
        singles += other.singles
        shards += other.shards
        imageBytes += other.imageBytes
        underVisible += other.underVisible
        for (source, counts) in other.perSource {
            for (k, v) in counts { perSource[source, default: [:]][k, default: 0] += v }
        }
        for (k, v) in other.perName { perName[k, default: 0] += v }
        for (k, v) in other.perNoun { perNoun[k, default: 0] += v }
        for (k, v) in other.pastesPerScene { pastesPerScene[k, default: 0] += v }
        for (k, v) in other.backgrounds { backgrounds[k, default: 0] += v }
    }
}

/// Writes a composed corpus as webdataset shards: `OUT/NNNNN.tar` holding `KEY.png`, `KEY.txt`
/// (caption) and `KEY.json` (what is in the picture), as `catlip shards create` lays them out.
/// Samples are numbered 0..<(scenes + singles) with the single drawings spread evenly among
/// the scenes; KEY is the 9-digit sample number. Shards are made by `threads` workers, one
/// whole shard at a time, so the bytes of every shard are the same for any thread count.
public struct CorpusWriter: Sendable {
    /// The composer.
    public let composer: SceneComposer
    /// Composed scenes.
    public let scenes: Int
    /// Single-drawing samples (each library drawing once per `library.count` of them).
    public let singles: Int
    /// Samples per shard.
    public let perShard: Int

    /// A writer of `scenes` scenes and `singles` single-drawing samples.
    public init(composer: SceneComposer, scenes: Int, singles: Int, perShard: Int) {
        precondition(scenes >= 0 && singles >= 0 && perShard > 0, "counts must be non-negative")
        self.composer = composer
        self.scenes = scenes
        self.singles = singles
        self.perShard = perShard
    }

    /// Samples in all.
    public var total: Int { scenes + singles }

    /// Shards in all.
    public var shardCount: Int { (total + perShard - 1) / perShard }

    /// Sample `j` as (is single, scene or single index): singles sit where
    /// `floor(j * singles / total)` steps up.
    public func sampleKind(_ j: Int) -> (single: Bool, index: Int) {
        let before = total == 0 ? 0 : j * singles / total
        let after = total == 0 ? 0 : (j + 1) * singles / total
        return after > before ? (true, before) : (false, j - before)
    }

    /// The sample `j`.
    public func sample(_ j: Int) -> ComposedSample {
        let kind = sampleKind(j)
        return kind.single ? composer.single(kind.index) : composer.scene(kind.index)
    }

    /// Writes every shard into `directory` (created if missing; stale NNNNN.tar files beyond
    /// the new count are removed). `progress` is called after each shard with the shards and
    /// samples done so far. Throws the first write or encode failure.
    public func write(
        to directory: String, threads: Int, progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> CorpusSummary {
        precondition(threads > 0, "threads must be positive")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CorpusError(path: directory, message: "cannot create the folder: \(error.localizedDescription)")
        }
        if let names = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for name in names where name.count == 9 && name.hasSuffix(".tar") {
                if let number = Int(name.prefix(5)), number >= shardCount {
                    try? FileManager.default.removeItem(atPath: directory + "/" + name)
                }
            }
        }
        let state = WriterState(shards: shardCount)
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while let shard = state.nextShard() {
                do {
                    let summary = try writeShard(shard, directory: directory)
                    let (shardsDone, samplesDone) = state.finish(shard, summary)
                    progress?(shardsDone, samplesDone)
                } catch {
                    state.fail(error)
                }
            }
        }
        return try state.result()
    }

    /// Writes shard `shard` and counts what is in it.
    func writeShard(_ shard: Int, directory: String) throws -> CorpusSummary {
        let path = directory + "/" + String(format: "%05d.tar", shard)
        let writer = try TarWriter(path: path)
        var summary = CorpusSummary()
        summary.shards = 1
        let library = composer.library
        for j in (shard * perShard)..<min((shard + 1) * perShard, total) {
            let sample = sample(j)
            let key = String(format: "%09d", j)
            let png = try PNGEncoder.encode(sample.image, source: path + ":" + key + ".png")
            try writer.add(name: key + ".png", data: png)
            try writer.add(name: key + ".txt", data: Array(sample.caption.utf8))
            try writer.add(name: key + ".json", data: Array(metadata(sample, key: key).utf8))
            summary.imageBytes += png.count
            if sample.isSingle { summary.singles += 1 } else { summary.scenes += 1 }
            summary.backgrounds[sample.background.kind, default: 0] += 1
            if !sample.isSingle { summary.pastesPerScene[String(sample.pastes.count), default: 0] += 1 }
            var sourcesSeen = Set<String>()
            for (slot, o) in sample.objects.enumerated() {
                let record = library.objects[o].record
                summary.perName[record.name, default: 0] += sample.counts[slot]
                summary.perNoun[record.noun, default: 0] += 1
                let kind = sample.isSingle ? "singles" : "pastes"
                summary.perSource[record.source, default: [:]][kind, default: 0] += sample.counts[slot]
                if !sample.isSingle && sourcesSeen.insert(record.source).inserted {
                    summary.perSource[record.source, default: [:]]["scenes", default: 0] += 1
                }
            }
            let minimum = Int((composer.config.minimumVisible * 100).rounded(.down))
            summary.underVisible += sample.pastes.filter { $0.visiblePercent < minimum }.count
        }
        try writer.finish()
        return summary
    }

    /// KEY.json: the key, the kind and number of the sample, the caption, the background (with
    /// the texture's source drawing), the drawings shown (source, item, name, noun, copies)
    /// and every paste (object slot, visible box, visible percent, angle, flip, side).
    /// Written by hand with sorted keys so the bytes never depend on a JSON library.
    func metadata(_ sample: ComposedSample, key: String) -> String {
        let library = composer.library
        let kind = sampleKind(Int(key)!)
        var background = "{\"kind\":\(JSONText.quote(sample.background.kind))"
        if let name = sample.background.colourName { background += ",\"colour\":\(JSONText.quote(name))" }
        if let t = sample.background.textureObject {
            let r = library.objects[t].record
            background += ",\"texture\":{\"item\":\(JSONText.quote(r.item)),\"source\":\(JSONText.quote(r.source))}"
        }
        background += "}"
        let objects = sample.objects.enumerated().map { slot, o in
            let r = library.objects[o].record
            return "{\"copies\":\(sample.counts[slot]),\"item\":\(JSONText.quote(r.item)),\"name\":\(JSONText.quote(r.name)),"
                + "\"noun\":\(JSONText.quote(r.noun)),\"source\":\(JSONText.quote(r.source))}"
        }
        let pastes = sample.pastes.map { p in
            "{\"angle\":\(p.angleDegrees),\"box\":[\(p.box.map(String.init).joined(separator: ","))],"
                + "\"flipped\":\(p.flipped),\"object\":\(p.object),\"side\":\(p.side),\"visible\":\(p.visiblePercent)}"
        }
        return "{\"background\":\(background),\"caption\":\(JSONText.quote(sample.caption)),\"index\":\(kind.index),"
            + "\"key\":\(JSONText.quote(key)),\"kind\":\(JSONText.quote(sample.isSingle ? "drawing" : "scene")),"
            + "\"objects\":[\(objects.joined(separator: ","))],\"pastes\":[\(pastes.joined(separator: ","))]}"
    }
}

/// Shared by the writer's workers: the next shard to make, the merged counts, the first error.
private final class WriterState: @unchecked Sendable {
    private let lock = NSLock()
    private let shards: Int
    private var next = 0
    private var done = 0
    private var samples = 0
    private var perShard: [CorpusSummary?]
    private var error: (any Error)?

    init(shards: Int) {
        self.shards = shards
        perShard = Array(repeating: nil, count: shards)
    }

    func nextShard() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard error == nil, next < shards else { return nil }
        next += 1
        return next - 1
    }

    func finish(_ shard: Int, _ summary: CorpusSummary) -> (Int, Int) {
        lock.lock()
        defer { lock.unlock() }
        perShard[shard] = summary
        done += 1
        samples += summary.scenes + summary.singles
        return (done, samples)
    }

    func fail(_ error: any Error) {
        lock.lock()
        if self.error == nil { self.error = error }
        lock.unlock()
    }

    /// The counts merged in shard order, or the first error.
    func result() throws -> CorpusSummary {
        lock.lock()
        defer { lock.unlock() }
        if let error { throw error }
        var total = CorpusSummary()
        for s in perShard { total.add(s!) }
        return total
    }
}
