import Foundation
import Support

/// One image-caption sample of a manifest.
public struct ManifestSample: Sendable, Equatable {
    /// The sample's key: the image path as written in the manifest.
    public var key: String
    /// The image path, resolved against the manifest's folder when relative.
    public var imagePath: String
    /// The caption (may be empty).
    public var caption: String

    /// A sample from its fields.
    public init(key: String, imagePath: String, caption: String) {
        self.key = key
        self.imagePath = imagePath
        self.caption = caption
    }
}

/// A manifest line that could not be read: skipped, counted and reported, never fatal.
public struct ManifestProblem: Sendable, Equatable, CustomStringConvertible {
    /// The manifest file.
    public var path: String
    /// 1-based line number.
    public var line: Int
    /// What is wrong.
    public var message: String

    /// `path:line: message`.
    public var description: String { "\(path):\(line): \(message)" }
}

/// Image-caption manifests: TSV (`path<TAB>caption`) or JSONL (`{"image": path, "caption":
/// text}`), recognised by the file's extension (`.jsonl`, `.json`) or else by its first
/// non-blank character (`{`).
public struct Manifest: Sendable {
    /// The manifest file.
    public let path: String
    /// The samples, in file order.
    public let samples: [ManifestSample]
    /// The lines skipped (no tab, invalid JSON, no image path, ...).
    public let problems: [ManifestProblem]

    /// The largest manifest read: 4 GiB (about 20 million lines of path and caption; the
    /// samples are held in memory, several times the file's size). A FIFO, device or larger file
    /// is refused with a `ManifestError`.
    public static let maximumFileBytes = 4 << 30

    /// Reads a manifest. Throws `ManifestError` when the file cannot be read at all (missing,
    /// not a regular file, over `maximumFileBytes`); bad lines are collected in `problems`.
    public init(path: String) throws {
        self.path = path
        let data: Data
        do {
            data = Data(try SafeFile.read(path, maxBytes: Self.maximumFileBytes))
        } catch let error as FileIOError {
            throw ManifestError(path: path, message: "cannot read the manifest: \(error.problem)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        func resolve(_ image: String) -> String {
            image.hasPrefix("/") ? image : base + "/" + image
        }
        let lines = textLines(data)
        let firstChar = lines.lazy.compactMap { $0.first(where: { !$0.isWhitespace }) }.first
        let jsonl = path.hasSuffix(".jsonl") || path.hasSuffix(".json") || firstChar == "{"
        var samples: [ManifestSample] = []
        var problems: [ManifestProblem] = []
        var number = 0
        for line in lines {
            number += 1
            if line.allSatisfy({ $0.isWhitespace }) { continue }
            if jsonl {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                else {
                    problems.append(ManifestProblem(path: path, line: number, message: "not a JSON object"))
                    continue
                }
                guard let image = (object["image"] ?? object["path"]) as? String, !image.isEmpty else {
                    problems.append(ManifestProblem(path: path, line: number, message: "no \"image\" path"))
                    continue
                }
                let caption = (object["caption"] ?? object["text"]) as? String ?? ""
                samples.append(ManifestSample(key: image, imagePath: resolve(image), caption: caption))
            } else {
                guard let tab = line.firstIndex(of: "\t") else {
                    problems.append(
                        ManifestProblem(path: path, line: number, message: "no tab between path and caption"))
                    continue
                }
                let image = String(line[..<tab])
                guard !image.isEmpty else {
                    problems.append(ManifestProblem(path: path, line: number, message: "empty image path"))
                    continue
                }
                let caption = String(line[line.index(after: tab)...])
                samples.append(ManifestSample(key: image, imagePath: resolve(image), caption: caption))
            }
        }
        self.samples = samples
        self.problems = problems
    }
}

/// A manifest that cannot be read at all.
public struct ManifestError: Error, Sendable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// What is wrong.
    public let message: String

    /// `path: message`.
    public var description: String { "\(path): \(message)" }
}
