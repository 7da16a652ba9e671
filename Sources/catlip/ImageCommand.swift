import ArgumentParser
import Foundation
import Imaging
import Support

/// `catlip image info|convert`: look at and convert single images.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Inspect and convert images (JPEG, PNG).",
        subcommands: [Info.self, Convert.self])

    /// `catlip image info FILE`: the header as one JSON object.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an image's header as JSON: format, width, height (upright, EXIF "
                + "orientation applied), channels, bit depth, orientation, colour space.")

        @Argument(help: "The image file (format recognised by content).")
        var file: String

        func run() throws {
            let info = try cliRun { try ImageDecoder.info(readFileBytes(file), source: file) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(info), as: UTF8.self))
        }
    }

    /// `catlip image convert FILE --out OUT.png`: decode, optionally eval-preprocess, write PNG.
    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode an image (upright, transparency over the background) and write it "
                + "as an RGB PNG, optionally resized and centre-cropped as torchvision does.")

        @Argument(help: "The image file.")
        var file: String

        @Option(name: .long, help: "Output PNG path.")
        var out: String

        @Option(help: "Scale the shorter side to N pixels (torchvision Resize(N)).")
        var resize: Int?

        @Option(name: .customLong("center-crop"), help: "Cut out the centre N x N pixels.")
        var centerCrop: Int?

        @Option(help: "Resampling filter: bilinear or bicubic.")
        var filter: ResampleFilter = .bilinear

        @Option(help: "Background for transparent pixels, as RRGGBB hex.")
        var background: String = "ffffff"

        @Option(name: .customLong("max-pixels"), help: "Refuse images with more pixels than this.")
        var maxPixels: Int = 64_000_000

        @Flag(help: "Decode damaged JPEGs as far as possible instead of refusing them.")
        var lenient = false

        func validate() throws {
            if let r = resize, r <= 0 { throw ValidationError("--resize must be positive") }
            if let c = centerCrop, c <= 0 { throw ValidationError("--center-crop must be positive") }
            if parseHexColor(background) == nil {
                throw ValidationError("--background must be six hex digits, e.g. ffffff")
            }
            if maxPixels <= 0 { throw ValidationError("--max-pixels must be positive") }
        }

        func run() throws {
            let options = DecodeOptions(
                maxPixels: maxPixels, strict: !lenient, background: parseHexColor(background)!)
            let png = try cliRun { () -> [UInt8] in
                var image = try ImageDecoder.decode(readFileBytes(file), source: file, options: options)
                if let resize {
                    let crop = centerCrop.map { (width: $0, height: $0) }
                    image = image.resizedShorterSide(to: resize, centerCrop: crop, filter: filter)
                } else if let c = centerCrop {
                    let o = Geometry.centerCropOrigin(
                        width: image.width, height: image.height, cropWidth: c, cropHeight: c)
                    image = image.cropped(x: o.x, y: o.y, width: c, height: c)
                }
                return try PNGEncoder.encode(image, source: out)
            }
            do {
                try SafeFile.writeAtomically(out, bytes: png)
            } catch let error as FileIOError {
                throw CLIError("\(out): cannot write: \(error.problem)")
            }
        }
    }
}

/// `RRGGBB` hex to a colour.
func parseHexColor(_ text: String) -> RGBColor? {
    guard text.count == 6, let v = UInt32(text, radix: 16) else { return nil }
    return RGBColor(
        red: UInt8(v >> 16 & 0xFF), green: UInt8(v >> 8 & 0xFF), blue: UInt8(v & 0xFF))
}
