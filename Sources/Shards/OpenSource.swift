import Foundation

/// Opens what a user names as data: a manifest (`.tsv`, `.jsonl`, `.json`), a folder of images,
/// or shards (a brace pattern such as `DIR/{00000..00099}.tar`, or a single `.tar`). Manifest
/// lines that cannot be read are kept in the source's `problems` (skipped, never fatal).
public func openSampleSource(_ data: String, shuffle: Bool = true, shuffleBuffer: Int = 1000) throws -> any SampleSource {
    var isDirectory: ObjCBool = false
    if data.hasSuffix(".tsv") || data.hasSuffix(".jsonl") || data.hasSuffix(".json") {
        return ManifestSource(manifest: try Manifest(path: data), shuffle: shuffle)
    }
    if FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory), isDirectory.boolValue {
        return try FolderSource(root: data, shuffle: shuffle)
    }
    return try ShardSource(patterns: data, shuffle: shuffle, shuffleBuffer: shuffleBuffer)
}
