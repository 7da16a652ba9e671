/// Writes NumPy `.npy` files (format version 1.0), the array format `numpy.load` reads: what
/// `catlip embed` writes so that its embeddings open in Python without a converter. Here, below
/// every module, so that any module that hands arrays to Python writes them the same way.
public enum NPYWriter {
    /// The bytes of a little-endian float32 `.npy` file holding `values` in C order with `shape`
    /// (the product of `shape` must be `values.count`): magic, version 1.0, the header dict
    /// padded with spaces to a multiple of 64 bytes and ended by a newline, then the data.
    public static func float32(_ values: [Float], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "NPYWriter: shape \(shape) does not hold \(values.count) values")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let length = UInt16(header.utf8.count)
        out += [UInt8(length & 0xFF), UInt8(length >> 8)]
        out += Array(header.utf8)
        values.withUnsafeBytes { out += $0 }  // little-endian on every platform Swift runs here
        return out
    }
}
