import CImageCodecs
import Support

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How images are decoded.
public struct DecodeOptions: Sendable, Equatable {
    /// Images announcing more pixels than this are refused from their header, before any
    /// allocation (decompression bombs). Default 64 megapixels.
    public var maxPixels: Int
    /// When true (the default), any defect the codec would paper over (a truncated JPEG filled
    /// with grey, corrupt entropy data) is an error.
    public var strict: Bool
    /// The colour transparent pixels are composited onto. Default white.
    public var background: RGBColor
    /// When true (the default), EXIF orientation is applied so that images come out upright.
    public var applyOrientation: Bool
    /// Progressive JPEG scans allowed before the file is refused as hostile. Default 1000.
    public var maxScans: Int

    /// Options with the defaults above, any of them overridden.
    public init(
        maxPixels: Int = 64_000_000, strict: Bool = true, background: RGBColor = .white,
        applyOrientation: Bool = true, maxScans: Int = 1000
    ) {
        self.maxPixels = maxPixels
        self.strict = strict
        self.background = background
        self.applyOrientation = applyOrientation
        self.maxScans = maxScans
    }
}

/// What an image file's header says, read without decoding its pixels.
public struct ImageInfo: Sendable, Equatable, Codable {
    /// The format, recognised by content.
    public var format: ImageFormat
    /// Width of the decoded image: upright, EXIF orientation applied.
    public var width: Int
    /// Height of the decoded image: upright, EXIF orientation applied.
    public var height: Int
    /// Channels stored in the file: 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha or CMYK.
    public var channels: Int
    /// Bits per stored sample: 8 for JPEG; 1, 2, 4, 8 or 16 for PNG.
    public var bitDepth: Int
    /// EXIF orientation (1-8); 1 when the file has none.
    public var orientation: Int
    /// The stored colour model: `grayscale`, `rgb`, `ycbcr`, `cmyk`, `ycck`, `palette`,
    /// `grayscale+alpha`, `rgba`.
    public var colorSpace: String
    /// Progressive JPEG or Adam7-interlaced PNG.
    public var interlaced: Bool
    /// Whether the image carries transparency (PNG alpha channel or tRNS).
    public var hasAlpha: Bool

    enum CodingKeys: String, CodingKey {
        case format, width, height, channels, orientation, interlaced
        case bitDepth = "bit_depth"
        case colorSpace = "color_space"
        case hasAlpha = "has_alpha"
    }
}

/// A decoded part of an image and where a requested rectangle lies in it. Produced by
/// `ImageDecoder.decode(_:source:options:crop:minimumSize:)`.
public struct DecodedRegion: Sendable {
    /// The decoded pixels: upright, possibly reduced in the DCT domain, covering at least the
    /// requested rectangle.
    public var image: RGBImage
    /// The requested rectangle in `image`'s continuous pixel coordinates.
    public var box: Rect
    /// The DCT-domain reduction used: 1, 2, 4 or 8.
    public var scaleDenominator: Int
}

/// Decodes JPEG and PNG bytes to RGB8. Every function is thread-safe and throws `ImageError`
/// naming `source` for bad input; none prints, exits or traps on any input.
public enum ImageDecoder {
    /// Reads the header of an image.
    public static func info(_ bytes: [UInt8], source: String) throws -> ImageInfo {
        try bytes.withUnsafeBytes { try info(buffer: $0, source: source) }
    }

    /// Decodes a whole image, upright unless `options.applyOrientation` is false.
    public static func decode(
        _ bytes: [UInt8], source: String, options: DecodeOptions = DecodeOptions()
    ) throws -> RGBImage {
        try bytes.withUnsafeBytes { buffer in
            switch try format(buffer, source: source) {
            case .png:
                return try decodePNG(buffer, source: source, options: options)
            case .jpeg:
                let header = try jpegHeader(buffer, source: source)
                var pixels: [UInt8] = []
                let decoded = try decodeJPEG(
                    buffer, source: source, options: options, fullWidth: Int(header.width),
                    fullHeight: Int(header.height), scale: 1, x: 0, y: 0, width: 0, height: 0,
                    pixels: &pixels)
                let orientation = options.applyOrientation ? EXIF.jpegOrientation(buffer) : .up
                return decoded.image.applying(orientation)
            }
        }
    }

    /// Decodes a whole image, upright, for a caller that will resize it to at least
    /// `minimumSize`: a JPEG is reduced in the DCT domain by the strongest of 1/2, 1/4, 1/8 that
    /// keeps both sides at least that large (much cheaper than decoding at full size and
    /// resizing); a PNG is decoded at full size. The region's `box` is the whole image in the
    /// returned pixels' coordinates.
    public static func decode(
        _ bytes: [UInt8], source: String, options: DecodeOptions = DecodeOptions(),
        minimumSize: (width: Int, height: Int)
    ) throws -> DecodedRegion {
        try decode(bytes, source: source, options: options, minimumSize: minimumSize) {
            Rect(x0: 0, y0: 0, x1: Double($0), y1: Double($1))
        }
    }

    /// Decodes the part of an image needed to resample the upright rectangle `crop` (full-size
    /// coordinates) to `minimumSize`: for a JPEG, only the rows and iMCU columns under the
    /// rectangle, at the strongest DCT-domain reduction (1/2, 1/4, 1/8) that keeps the rectangle
    /// at least `minimumSize` on both sides; for a PNG, the whole image. Strict mode checks the
    /// data that is decoded: a JPEG is not read past the last row under the rectangle.
    public static func decode(
        _ bytes: [UInt8], source: String, options: DecodeOptions = DecodeOptions(), crop: Rect,
        minimumSize: (width: Int, height: Int)
    ) throws -> DecodedRegion {
        try decode(bytes, source: source, options: options, minimumSize: minimumSize) { _, _ in
            crop
        }
    }

    /// Like `decode(_:source:options:crop:minimumSize:)`, with the rectangle chosen by
    /// `chooseCrop` from the upright size of the image (read from the header, before any pixel
    /// is decoded). A rectangle outside the image is an `.invalidArgument` error.
    /// With a `workspace`, a JPEG region is decoded into its reusable pixel buffer (hand the
    /// buffer back with `ResampleWorkspace.recycle(_:)` once done with the region).
    public static func decode(
        _ bytes: [UInt8], source: String, options: DecodeOptions = DecodeOptions(),
        minimumSize: (width: Int, height: Int), workspace: ResampleWorkspace? = nil,
        chooseCrop: (Int, Int) throws -> Rect
    ) throws -> DecodedRegion {
        try bytes.withUnsafeBytes { buffer in
            switch try format(buffer, source: source) {
            case .png:
                let image = try decodePNG(buffer, source: source, options: options)
                let crop = try chooseCrop(image.width, image.height)
                try checkCrop(crop, width: image.width, height: image.height, source: source)
                return DecodedRegion(image: image, box: crop, scaleDenominator: 1)
            case .jpeg:
                var layout = EXIF.jpegLayout(buffer)
                if !options.applyOrientation { layout.orientation = .up }
                var width = layout.width ?? 0, height = layout.height ?? 0
                if width == 0 || height == 0 {
                    // No usable frame header before the scan: let libjpeg say what is wrong.
                    let header = try jpegHeader(buffer, source: source)
                    (width, height) = (Int(header.width), Int(header.height))
                }
                let upright = layout.orientation.orientedSize(width: width, height: height)
                let crop = try chooseCrop(upright.width, upright.height)
                var pixels = workspace?.takePixels() ?? []
                return try decodeJPEGRegion(
                    buffer, source: source, options: options, width: width, height: height,
                    orientation: layout.orientation, crop: crop, minimumSize: minimumSize,
                    pixels: &pixels)
            }
        }
    }

    /// The strongest reduction 1/d (d in 8, 4, 2, 1) that keeps `width` x `height` at least
    /// `minimumWidth` x `minimumHeight`.
    public static func scaleDenominator(
        width: Double, height: Double, minimumWidth: Int, minimumHeight: Int
    ) -> Int {
        for d in [8, 4, 2] where width / Double(d) >= Double(minimumWidth)
            && height / Double(d) >= Double(minimumHeight)
        {
            return d
        }
        return 1
    }

    // MARK: - Internals

    static func format(_ buffer: UnsafeRawBufferPointer, source: String) throws -> ImageFormat {
        switch ImageFormat.sniff(buffer) {
        case .success(let format): return format
        case .failure(let other):
            throw ImageError(
                .unsupportedFormat, source: source,
                message: "unsupported format (\(other.name)); catlip decodes JPEG and PNG")
        }
    }

    static func info(buffer: UnsafeRawBufferPointer, source: String) throws -> ImageInfo {
        switch try format(buffer, source: source) {
        case .jpeg:
            let h = try jpegHeader(buffer, source: source)
            let orientation = EXIF.jpegOrientation(buffer)
            let (w, hh) = orientation.orientedSize(width: Int(h.width), height: Int(h.height))
            let spaces = [1: "grayscale", 2: "rgb", 3: "ycbcr", 4: "cmyk", 5: "ycck"]
            return ImageInfo(
                format: .jpeg, width: w, height: hh, channels: Int(h.components), bitDepth: 8,
                orientation: orientation.rawValue,
                colorSpace: spaces[Int(h.color_space)] ?? "unknown",
                interlaced: h.progressive != 0, hasAlpha: false)
        case .png:
            var h = catlip_png_header()
            try check(
                source: source,
                call: { catlip_png_read_header(base(buffer), buffer.count, &h, $0) })
            let types = [0: "grayscale", 2: "rgb", 3: "palette", 4: "grayscale+alpha", 6: "rgba"]
            let channels = [0: 1, 2: 3, 3: 3, 4: 2, 6: 4][Int(h.color_type)] ?? 0
            return ImageInfo(
                format: .png, width: Int(h.width), height: Int(h.height), channels: channels,
                bitDepth: Int(h.bit_depth), orientation: 1,
                colorSpace: types[Int(h.color_type)] ?? "unknown", interlaced: h.interlaced != 0,
                hasAlpha: h.has_alpha != 0)
        }
    }

    static func jpegHeader(_ buffer: UnsafeRawBufferPointer, source: String) throws
        -> catlip_jpeg_header
    {
        var header = catlip_jpeg_header()
        try check(source: source) { catlip_jpeg_read_header(base(buffer), buffer.count, &header, $0) }
        if header.width == 0 || header.height == 0 {
            throw ImageError(.empty, source: source, message: "image has zero width or height")
        }
        return header
    }

    static func decodePNG(_ buffer: UnsafeRawBufferPointer, source: String, options: DecodeOptions)
        throws -> RGBImage
    {
        var header = catlip_png_header()
        try check(source: source) { catlip_png_read_header(base(buffer), buffer.count, &header, $0) }
        let w = Int(header.width), h = Int(header.height)
        if w == 0 || h == 0 {
            throw ImageError(.empty, source: source, message: "image has zero width or height")
        }
        try checkPixels(width: w, height: h, options: options, source: source)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        let bg = options.background
        let background: [UInt8] = [bg.red, bg.green, bg.blue]
        try pixels.withUnsafeMutableBytes { out in
            try check(source: source) { message in
                catlip_png_decode(
                    base(buffer), buffer.count, background, Int64(options.maxPixels),
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count, message)
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// Decodes rows [y, y + height) and at least columns [x, x + width) of the image reduced by
    /// 1/`scale` (0 sizes mean "to the edge"), in stored orientation.
    static func decodeJPEG(
        _ buffer: UnsafeRawBufferPointer, source: String, options: DecodeOptions,
        fullWidth: Int, fullHeight: Int, scale: Int, x: Int, y: Int, width: Int, height: Int,
        pixels: inout [UInt8]
    ) throws -> (image: RGBImage, x: Int, y: Int) {
        try checkPixels(width: fullWidth, height: fullHeight, options: options, source: source)
        var sw: Int32 = 0, sh: Int32 = 0
        catlip_jpeg_scaled_size(Int32(fullWidth), Int32(fullHeight), Int32(scale), &sw, &sh)
        let rows = height > 0 ? height : Int(sh) - y
        // libjpeg may widen the columns to whole iMCUs, never past the scaled width.
        // `pixels` may be a reused buffer: only its capacity matters, its contents are overwritten.
        resize(&pixels, to: rows * Int(sw) * 3)
        var request = catlip_jpeg_request(
            scale_denom: Int32(scale), x: Int32(x), y: Int32(y), width: Int32(width),
            height: Int32(height), strict: options.strict ? 1 : 0, max_scans: Int32(options.maxScans))
        var result = catlip_jpeg_result()
        try pixels.withUnsafeMutableBytes { out in
            try check(source: source) { message in
                catlip_jpeg_decode(
                    base(buffer), buffer.count, &request, Int64(options.maxPixels),
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count, &result,
                    message)
            }
        }
        let count = Int(result.width) * Int(result.height) * 3
        resize(&pixels, to: count)
        let image = RGBImage(width: Int(result.width), height: Int(result.height), pixels: pixels)
        pixels = []
        return (image, Int(result.x), Int(result.y))
    }

    static func decodeJPEGRegion(
        _ buffer: UnsafeRawBufferPointer, source: String, options: DecodeOptions,
        width: Int, height: Int, orientation: Orientation, crop: Rect,
        minimumSize: (width: Int, height: Int), pixels: inout [UInt8]
    ) throws -> DecodedRegion {
        let fullW = Double(width), fullH = Double(height)
        let (uw, uh) = orientation.orientedSize(width: width, height: height)
        try checkCrop(crop, width: uw, height: uh, source: source)
        try checkPixels(width: width, height: height, options: options, source: source)
        let scale = scaleDenominator(
            width: crop.width, height: crop.height, minimumWidth: minimumSize.width,
            minimumHeight: minimumSize.height)
        var sw: Int32 = 0, sh: Int32 = 0
        catlip_jpeg_scaled_size(Int32(width), Int32(height), Int32(scale), &sw, &sh)
        // The rectangle in stored, scaled coordinates.
        let stored = orientation.storedRect(crop, width: fullW, height: fullH)
        let s = Double(scale)
        let scaled = Rect(x0: stored.x0 / s, y0: stored.y0 / s, x1: stored.x1 / s, y1: stored.y1 / s)
        // A margin keeps the edges of the region away from the pixels wanted: at a cut, libjpeg's
        // chroma upsampling has no neighbour and replicates the edge sample.
        let margin = 2
        let rx0 = max(0, Int(scaled.x0.rounded(.down)) - margin)
        let ry0 = max(0, Int(scaled.y0.rounded(.down)) - margin)
        let rx1 = max(rx0 + 1, min(Int(sw), Int(scaled.x1.rounded(.up)) + margin))
        let ry1 = max(ry0 + 1, min(Int(sh), Int(scaled.y1.rounded(.up)) + margin))
        let decoded = try decodeJPEG(
            buffer, source: source, options: options, fullWidth: width, fullHeight: height,
            scale: scale, x: rx0, y: ry0, width: rx1 - rx0, height: ry1 - ry0, pixels: &pixels)
        let local = Rect(
            x0: scaled.x0 - Double(decoded.x), y0: scaled.y0 - Double(decoded.y),
            x1: scaled.x1 - Double(decoded.x), y1: scaled.y1 - Double(decoded.y))
        let box = orientation.uprightRect(
            local, width: Double(decoded.image.width), height: Double(decoded.image.height))
        return DecodedRegion(
            image: decoded.image.applying(orientation), box: box, scaleDenominator: scale)
    }

    /// Sets `buffer.count` to `count`, keeping its storage when it is large enough.
    static func resize(_ buffer: inout [UInt8], to count: Int) {
        if buffer.count > count {
            buffer.removeLast(buffer.count - count)
        } else if buffer.count < count {
            buffer.append(contentsOf: repeatElement(0, count: count - buffer.count))
        }
    }

    static func checkCrop(_ crop: Rect, width: Int, height: Int, source: String) throws {
        guard crop.x0 >= 0, crop.y0 >= 0, crop.x1 <= Double(width), crop.y1 <= Double(height),
            crop.width > 0, crop.height > 0
        else {
            throw ImageError(
                .invalidArgument, source: source,
                message: "crop \(crop) is outside the \(width)x\(height) image")
        }
    }

    static func checkPixels(width: Int, height: Int, options: DecodeOptions, source: String) throws {
        if width.multipliedReportingOverflow(by: height).partialValue > options.maxPixels {
            throw ImageError(
                .tooLarge, source: source,
                message: "image is \(width)x\(height) (\(width * height) pixels), over the limit "
                    + "of \(options.maxPixels) pixels")
        }
    }

    /// Runs a C codec call with a message buffer and turns a failure into an `ImageError`.
    static func check(source: String, call: (UnsafeMutablePointer<CChar>) -> Int32) throws {
        var message = [CChar](repeating: 0, count: Int(CATLIP_MESSAGE_LENGTH))
        let status = message.withUnsafeMutableBufferPointer { call($0.baseAddress!) }
        if Int(status) == CATLIP_OK { return }
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let kind: ImageError.Kind
        switch Int(status) {
        case CATLIP_ERROR_TRUNCATED: kind = .truncated
        case CATLIP_ERROR_TOO_LARGE: kind = .tooLarge
        case CATLIP_ERROR_EMPTY_IMAGE: kind = .empty
        case CATLIP_ERROR_UNSUPPORTED: kind = .invalidArgument
        default: kind = .corrupt
        }
        let prefix = kind == .truncated ? "truncated: " : (kind == .corrupt ? "corrupt: " : "")
        throw ImageError(kind, source: source, message: prefix + (text.isEmpty ? kind.rawValue : text))
    }
}

/// The first byte of a buffer as the C codecs want it. Callers have sniffed the format first,
/// which refuses empty buffers, so the address exists.
@inline(__always)
func base(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8> {
    buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
}

/// The default cap on an image file's size for `readFileBytes`: 256 MiB. No real image is
/// near it: images over 64 megapixels are refused anyway (`DecodeOptions.maxPixels`), and 64
/// megapixels of 8-bit RGBA stored without any compression is 256 MiB; it is also the tar
/// reader's member limit (`TarReader.defaultMemberSizeLimit`), so a file read here fits in a
/// shard. Commands that read image files raise it with `--max-file-mb`.
public let defaultMaxImageFileBytes = 256 << 20

/// Reads a whole image file into memory: regular files only (a symbolic link to one is
/// followed), at most `maxBytes` bytes (`SafeFile.read`: a FIFO, `/dev/zero` or a sparse file
/// announcing terabytes is refused before anything is read or allocated). Throws an
/// `ImageError` naming the path, of kind `.notRegularFile` (directories, FIFOs, devices,
/// sockets), `.fileTooLarge` (over `maxBytes`), or `.io` (missing, unreadable).
public func readFileBytes(_ path: String, maxBytes: Int = defaultMaxImageFileBytes) throws -> [UInt8] {
    do {
        return try SafeFile.read(path, maxBytes: max(0, maxBytes))
    } catch let error as FileIOError {
        let kind: ImageError.Kind
        switch error.kind {
        case .notRegularFile: kind = .notRegularFile
        case .tooLarge: kind = .fileTooLarge
        case .cannotOpen, .readFailed, .writeFailed: kind = .io
        }
        throw ImageError(kind, source: path, message: error.problem)
    }
}
