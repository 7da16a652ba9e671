import CImageCodecs

/// Writes RGB8 images as PNG files (through libpng).
public enum PNGEncoder {
    /// The PNG encoding of `image`; `source` names the destination in errors.
    public static func encode(_ image: RGBImage, source: String) throws -> [UInt8] {
        var png: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        try image.pixels.withUnsafeBufferPointer { pixels in
            try ImageDecoder.check(source: source) { message in
                catlip_png_encode_rgb(
                    pixels.baseAddress!, Int32(image.width), Int32(image.height), &png, &size,
                    message)
            }
        }
        defer { catlip_free(png) }
        return Array(UnsafeBufferPointer(start: png, count: size))
    }
}
