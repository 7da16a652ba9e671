import Foundation
import Shards
import WordNet

/// Label caches stored beside the data: `M.tsv.labels` next to a manifest, `NNNNN.tar.labels`
/// next to each shard. Training loads the ones of its data into one key -> labels table.
public enum LabelFiles {
    /// The label cache file of a manifest or shard.
    public static func path(for dataFile: String) -> String { dataFile + ".labels" }

    /// The data files a source's label caches belong to: the manifest, or every shard.
    public static func dataFiles(of source: any SampleSource) -> [String] {
        switch source {
        case let manifest as ManifestSource: return [manifest.path]
        case let shards as ShardSource: return shards.shards
        default: return []
        }
    }

    /// All samples of `source` in stream order without shuffling, as (data file, key, caption).
    public static func captions(of source: any SampleSource) throws -> [(file: String, key: String, caption: String)] {
        var out: [(file: String, key: String, caption: String)] = []
        try source.forEachSample(seed: 0, epoch: 0) { sample in
            if !sample.key.hasPrefix("<shard>") { out.append((sample.source, sample.key, sample.caption)) }
            return true
        }
        return out
    }

    /// Loads the caches of `files` (checking each was built for `fingerprint`) into one table.
    /// Throws `LabelCacheError` naming a missing, damaged or stale cache.
    public static func load(files: [String], expectedFingerprint: UInt64) throws -> [String: [UInt32]] {
        var table: [String: [UInt32]] = [:]
        for file in files {
            let cache = try LabelCache.load(path: path(for: file), expectedFingerprint: expectedFingerprint)
            for i in 0..<cache.count { table[cache.keys[i]] = Array(cache.labels(at: i)) }
        }
        return table
    }
}
