/// Reading the EXIF orientation of a JPEG without decoding it: a walk over the marker segments
/// before the first scan, then over IFD0 of the TIFF structure inside APP1 "Exif". Every offset
/// is bounds-checked: a damaged EXIF block means "no orientation", never a crash.
enum EXIF {
    /// What the marker segments before the first scan say: the frame size (SOFn) and the EXIF
    /// orientation. `nil` size when no frame header precedes the scan (libjpeg then reports why).
    struct JPEGLayout: Equatable {
        var width: Int?
        var height: Int?
        var orientation: Orientation = .up
    }

    /// The orientation recorded in the JPEG `bytes`, or `.up` when there is none.
    static func jpegOrientation(_ bytes: UnsafeRawBufferPointer) -> Orientation {
        jpegLayout(bytes).orientation
    }

    /// Walks the marker segments of the JPEG `bytes` up to the first scan.
    static func jpegLayout(_ bytes: UnsafeRawBufferPointer) -> JPEGLayout {
        var layout = JPEGLayout()
        var sawExif = false
        var p = 2  // after SOI
        while p + 4 <= bytes.count {
            guard bytes[p] == 0xFF else { return layout }
            let marker = bytes[p + 1]
            if marker == 0xFF { p += 1; continue }  // fill byte
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { p += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return layout }  // image data starts
            let length = Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
            guard length >= 2, p + 2 + length <= bytes.count else { return layout }
            let isFrame = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8
                && marker != 0xCC
            if isFrame, length >= 8, layout.width == nil {
                layout.height = Int(bytes[p + 5]) << 8 | Int(bytes[p + 6])
                layout.width = Int(bytes[p + 7]) << 8 | Int(bytes[p + 8])
            }
            if marker == 0xE1, length >= 8, !sawExif {
                let start = p + 4
                let header: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0, 0]  // "Exif\0\0"
                if (0..<6).allSatisfy({ bytes[start + $0] == header[$0] }) {
                    sawExif = true
                    let tiff = UnsafeRawBufferPointer(rebasing: bytes[(start + 6)..<(p + 2 + length)])
                    if let o = tiffOrientation(tiff) { layout.orientation = o }
                }
            }
            p += 2 + length
        }
        return layout
    }

    /// Tag 0x0112 of IFD0 in a TIFF structure, if present and valid.
    static func tiffOrientation(_ t: UnsafeRawBufferPointer) -> Orientation? {
        guard t.count >= 8 else { return nil }
        let little: Bool
        if t[0] == 0x49 && t[1] == 0x49 { little = true } else if t[0] == 0x4D && t[1] == 0x4D { little = false } else { return nil }
        func u16(_ o: Int) -> Int? {
            guard o >= 0, o + 2 <= t.count else { return nil }
            return little ? Int(t[o]) | Int(t[o + 1]) << 8 : Int(t[o]) << 8 | Int(t[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard let a = u16(o), let b = u16(o + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for i in 0..<count {
            let entry = ifd + 2 + 12 * i
            guard let tag = u16(entry) else { return nil }
            if tag == 0x0112 {
                guard u16(entry + 2) == 3, let value = u16(entry + 8) else { return nil }
                return Orientation(rawValue: value)
            }
        }
        return nil
    }
}
