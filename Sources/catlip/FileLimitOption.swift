import ArgumentParser
import Imaging

/// `--max-file-mb N`: the size cap on each image file a command reads (manifest lines, folder
/// entries, files named on the command line). Larger files, and paths that are not regular
/// files (FIFOs, devices such as /dev/zero, directories), are skipped and reported as bad
/// samples instead of being read.
struct MaxFileOption: ParsableArguments {
    @Option(
        name: .customLong("max-file-mb"),
        help: "Largest image file read, in MiB (default 256: 64 megapixels, the decoder's limit, of uncompressed 8-bit RGBA); larger files and non-regular files (FIFOs, devices) are skipped as bad samples.")
    var maxFileMB: Int = defaultMaxImageFileBytes >> 20

    /// The largest cap accepted: 1 TiB, far beyond any image and still an exact byte count.
    static let largestMB = 1 << 20

    func validate() throws {
        guard (1...Self.largestMB).contains(maxFileMB) else {
            throw ValidationError("--max-file-mb must be in 1...\(Self.largestMB)")
        }
    }

    /// The cap in bytes.
    var bytes: Int { min(max(1, maxFileMB), Self.largestMB) << 20 }
}
