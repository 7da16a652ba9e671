import Foundation
import Shards
import Support
import WordNet

/// The training data and its labels: sample sources opened from the configuration, and the
/// class indices of every sample (from the label caches beside the data, or labelled now).
extension Trainer {
    /// The samples of `data` (shards, a manifest or a folder); `key` names the setting in errors.
    func openSource(_ data: String, key: String, shuffle: Bool) throws -> any SampleSource {
        do {
            return try openSampleSource(data, shuffle: shuffle, shuffleBuffer: config.data.shuffleBuffer)
        } catch {
            throw TrainError("\(key): \(error)")
        }
    }

    /// Class indices per sample key: the label cache files beside the data when they match
    /// the vocabulary, otherwise labelled now (and not written anywhere).
    func labelTable(source: any SampleSource, what: String, vocabulary: Vocabulary, mode: LabelMode) throws -> [String: [UInt32]] {
        let fingerprint = LabelCache.fingerprint(vocabulary: vocabulary, mode: mode)
        let files = LabelFiles.dataFiles(of: source)
        if !files.isEmpty, let table = try? LabelFiles.load(files: files, expectedFingerprint: fingerprint) {
            reporter.log("labels: \(table.count) \(what) samples from label caches beside the data")
            return table
        }
        let start = MonotonicClock.seconds()
        let samples: [(file: String, key: String, caption: String)]
        do { samples = try LabelFiles.captions(of: source) } catch { throw TrainError("\(what) data: \(error)") }
        let (labels, empty) = labelCaptions(samples.map(\.caption), mode: mode, vocabulary: vocabulary)
        let table = Dictionary(zip(samples.map(\.key), labels), uniquingKeysWith: { $1 })
        reporter.log(String(format: "labels: %d %@ captions labelled in %.1f s (%d with no synset of the vocabulary: trained as all-negative)", labels.count, what, MonotonicClock.seconds() - start, empty))
        return table
    }

    /// Labels `captions` now (nothing cached): the class indices of each, and how many have none.
    func labelCaptions(_ captions: [String], mode: LabelMode, vocabulary: Vocabulary) -> (labels: [[UInt32]], empty: Int) {
        let cache = LabelCache.build(
            keys: captions.indices.map(String.init), captions: captions, vocabulary: vocabulary, database: database,
            mode: mode, threads: max(1, config.data.threads))
        let labels = (0..<cache.count).map { Array(cache.labels(at: $0)) }
        return (labels, labels.filter(\.isEmpty).count)
    }

    /// `data.captions: sampled`: per sample key, the class indices of each of its captions (the
    /// non-blank lines of its caption text, labelled one by one; a one-line caption is one
    /// entry). Labelled here from the captions: the label caches beside the data hold the
    /// joined captions' labels only.
    func sampledLabelTable(source: any SampleSource, vocabulary: Vocabulary, mode: LabelMode) throws -> [String: [[UInt32]]] {
        let start = MonotonicClock.seconds()
        let samples: [(file: String, key: String, caption: String)]
        do { samples = try LabelFiles.captions(of: source) } catch { throw TrainError("training data: \(error)") }
        var owners: [Int] = [], lines: [String] = []
        for (i, sample) in samples.enumerated() {
            let parts = sample.caption.split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.allSatisfy(\.isWhitespace) }
            for part in parts.isEmpty ? [sample.caption] : parts {
                owners.append(i)
                lines.append(part)
            }
        }
        let (labels, empty) = labelCaptions(lines, mode: mode, vocabulary: vocabulary)
        var table: [String: [[UInt32]]] = [:]
        table.reserveCapacity(samples.count)
        for (owner, l) in zip(owners, labels) { table[samples[owner].key, default: []].append(l) }
        reporter.log(String(format: "labels: %d training captions of %d samples labelled in %.1f s, one drawn per sample and epoch (%d captions with no synset of the vocabulary)", labels.count, table.count, MonotonicClock.seconds() - start, empty))
        return table
    }

    /// Which of a sample's `count` captions it is trained on in `epoch`: a hash of the run's
    /// seed, the epoch and the key, so the same on every rank, thread count and resume.
    static func captionChoice(seed: UInt64, epoch: Int, key: String, count: Int) -> Int {
        var g = Seeds.generator(seed: seed, epoch: epoch, purpose: Seeds.caption, index: Int(truncatingIfNeeded: FNV1a.hash(key.utf8)))
        return Int(g.next() % UInt64(count))
    }

}
