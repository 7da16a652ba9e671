import Foundation
import Imaging
import Training
import WordNet

/// A small generated image-text corpus whose captions are predictable from the pixels: the
/// background colour says the first noun, a square in a corner the optional second one.
enum ToyCorpus {
    static let nouns = ["dog", "cat", "car", "tree"]
    static let colours: [(UInt8, UInt8, UInt8)] = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40)]

    /// Writes `count` PNGs of `side` px and `DIR/train.tsv` (path, caption); returns the manifest.
    static func write(directory: String, count: Int, side: Int = 16, seed: UInt64 = 1, name: String = "train") throws -> String {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state >> 33)
        }
        let images = directory + "/" + name
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        var lines: [String] = []
        for i in 0..<count {
            let a = next() % nouns.count
            let b = next() % 2 == 0 ? nil : (a + 1 + next() % (nouns.count - 1)) % nouns.count
            var pixels = [UInt8](repeating: 0, count: side * side * 3)
            for y in 0..<side {
                for x in 0..<side {
                    var c = colours[a]
                    if let b, x >= side / 2, y >= side / 2 { c = colours[b] }
                    let noise = next() % 41 - 20
                    let o = (y * side + x) * 3
                    pixels[o] = UInt8(clamping: Int(c.0) + noise)
                    pixels[o + 1] = UInt8(clamping: Int(c.1) + noise)
                    pixels[o + 2] = UInt8(clamping: Int(c.2) + noise)
                }
            }
            let path = images + String(format: "/%05d.png", i)
            let png = try PNGEncoder.encode(RGBImage(width: side, height: side, pixels: pixels), source: path)
            try Data(png).write(to: URL(fileURLWithPath: path))
            let caption = b.map { "a \(nouns[a]) and a \(nouns[$0]) - clip art" } ?? "photo of a \(nouns[a])"
            lines.append("\(path)\t\(caption)")
        }
        let manifest = directory + "/\(name).tsv"
        try (lines.joined(separator: "\n") + "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        return manifest
    }

    /// The vocabulary of the toy nouns, written to `path`.
    static func writeVocabulary(path: String, database: WordNetDatabase) throws {
        let labeller = Labeller(database: database, mode: .corenet)
        var counts: [SynsetID: Int] = [:]
        for (i, noun) in nouns.enumerated() {
            for s in labeller.synsets("a \(noun)") { counts[s, default: 0] += 100 - i }
        }
        try Vocabulary.build(counts: counts, database: database, minimumCount: 1).write(path: path)
    }

    /// A config for a tiny model on the toy corpus.
    static func config(manifest: String, val: String, vocab: String, runDirectory: String, steps: Int) throws -> TrainConfig {
        try TrainConfig.parse(
            yaml: """
                data:
                  train: \(manifest)
                  val: \(val)
                  vocab: \(vocab)
                  image_size: 16
                  batch_size: 16
                  threads: 2
                  crop_scale: [0.6, 1.0]
                  eval_crop_pct: 1.0
                model:
                  patch_size: 4
                  embed_dim: 32
                  depth: 2
                  num_heads: 2
                  mlp_ratio: 2
                optim:
                  lr: 3.0e-3
                  warmup_steps: 10
                  weight_decay: 0.01
                run:
                  dir: \(runDirectory)
                  steps: \(steps)
                  threads: 2
                  log_every: 5
                  checkpoint_every: 20
                  keep_checkpoints: 3
                """, file: "toy.yaml")
    }
}

/// Collects the trainer's output; can request a stop after a given step.
final class RecordingReporter: TrainReporter {
    var lines: [String] = []
    var stopAfter: Int?
    let stop: StopRequest

    init(stop: StopRequest, stopAfter: Int? = nil) {
        self.stop = stop
        self.stopAfter = stopAfter
    }

    func log(_ line: String) { lines.append(line) }

    func progress(step: Int, total: Int, loss: Double, lr: Double, imagesPerSecond: Double, etaSeconds: Double) {
        if let stopAfter, step == stopAfter { stop.request(SIGTERM) }
    }
}
