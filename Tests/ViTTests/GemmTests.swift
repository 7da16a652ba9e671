import Foundation
import XCTest

@testable import ViT
import CViTSupport

/// `body` with the array's storage, or nil.
func withOptionalPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The engine's own SGEMM (`Gemm`) against `Kernels.sgemmNaive` over awkward shapes, every
/// transpose, alpha/beta, the fused bias/residual/GELU epilogues, blocking edges and worker
/// splits.
final class GemmTests: XCTestCase {

    override func setUp() {
        // the micro-kernels even in a debug build (where `multiply` would use OpenBLAS)
        Gemm.forceOwnKernels = true
    }

    override func tearDown() {
        Gemm.forceOwnKernels = false
        Parallelism.threads = min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 64)
    }

    /// The reference: naive product, then bias, residual and the activation, elementwise.
    func reference(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
        b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int, bias: [Float]?,
        residual: [Float]?, activation: String, pre: [Float]
    ) -> (c: [Float], out: [Float]) {
        var c = c
        Kernels.sgemmNaive(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
            ldb: ldb, beta: beta, c: &c, ldc: ldc)
        var out = [Float](repeating: 0, count: m * ldc)
        for i in 0..<m {
            for j in 0..<n {
                var y = c[i * ldc + j]
                if let bias { y += bias[j] }
                if let residual { y += residual[i * ldc + j] }
                switch activation {
                case "gelu": out[i * ldc + j] = Kernels.gelu(y)
                case "geluOnly": y = Kernels.gelu(y)
                case "geluBackward": y *= Kernels.geluDerivative(pre[i * ldc + j])
                default: break
                }
                c[i * ldc + j] = y
            }
        }
        return (c, out)
    }

    func check(
        m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float,
        bias: Bool, residual: Bool, activation: String = "none", threads: [Int] = [1, 2],
        seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line
    ) {
        let lda = (transA ? m : k) + 3
        let ldb = (transB ? k : n) + 1
        let ldc = n + 2
        let a = [Float].randomNormal((transA ? k : m) * lda, seed: seed)
        let b = [Float].randomNormal((transB ? n : k) * ldb, seed: seed + 1)
        let c0 = [Float].randomNormal(m * ldc, seed: seed + 2)
        let biasValues = bias ? [Float].randomNormal(n, seed: seed + 3) : nil
        let residualValues = residual ? [Float].randomNormal(m * ldc, seed: seed + 4) : nil
        let pre = [Float].randomNormal(m * ldc, seed: seed + 5, std: 2)
        let want = reference(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
            ldb: ldb, beta: beta, c: c0, ldc: ldc, bias: biasValues, residual: residualValues,
            activation: activation, pre: pre)
        var results: [[Float]] = []
        for t in threads {
            Parallelism.threads = t
            // beta 0 must not read C: start from NaN
            var c = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : c0
            for i in 0..<m {
                for j in n..<ldc { c[i * ldc + j] = c0[i * ldc + j] }
            }
            var out = [Float](repeating: 0, count: m * ldc)
            let act: (UnsafeMutablePointer<Float>, UnsafePointer<Float>) -> GemmActivation = {
                outPointer, prePointer in
                switch activation {
                case "gelu": return .gelu(out: outPointer, ld: ldc)
                case "geluOnly": return .geluOnly
                case "geluBackward": return .geluBackward(preactivation: prePointer, ld: ldc)
                default: return .none
                }
            }
            withOptionalPointer(biasValues) { bp in
                withOptionalPointer(residualValues) { rp in
                    out.withUnsafeMutableBufferPointer { o in
                        pre.withUnsafeBufferPointer { p in
                            Gemm.multiply(
                                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &c, ldc: ldc,
                                bias: bp, residual: rp, ldr: ldc,
                                activation: act(o.baseAddress!, p.baseAddress!))
                        }
                    }
                }
            }
            let what =
                "\(m)x\(n)x\(k) tA \(transA) tB \(transB) alpha \(alpha) beta \(beta) bias \(bias) "
                + "residual \(residual) \(activation) threads \(t)"
            let d = relativeToMax("C", c, want.c, rel: 2e-5)
            XCTAssert(d.score <= 1, "\(what): \(d)", file: file, line: line)
            if activation == "gelu" {
                let e = relativeToMax("gelu out", out, want.out, rel: 2e-5)
                XCTAssert(e.score <= 1, "\(what): \(e)", file: file, line: line)
            }
            results.append(c + out)
        }
        // the split over workers never changes a result
        for r in results.dropFirst() {
            XCTAssertEqual(
                r, results[0], "\(m)x\(n)x\(k) differs between thread counts", file: file,
                line: line)
        }
    }

    /// The transposing panel packer (8 x 8 register transposes in C) against its definition,
    /// for every panel width, ragged column counts and lengths, and a leading dimension past
    /// the packed range; the padding columns are zero.
    func testTransposedPacking() {
        let ldb = 45
        let b = [Float].randomNormal(32 * ldb, seed: 41)
        for pw in [16, 32] {
            for w in 1...pw {
                for kb in [1, 7, 8, 9, 16, 23, 40] {
                    var got = [Float](repeating: .nan, count: kb * pw)
                    catlip_pack_transposed(&got, b, ldb, kb, w, pw)
                    var want = [Float](repeating: 0, count: kb * pw)
                    for p in 0..<kb { for j in 0..<w { want[p * pw + j] = b[j * ldb + p] } }
                    XCTAssertEqual(got, want, "pw \(pw) w \(w) kb \(kb)")
                }
            }
        }
    }

    func testShapesAndTransposes() {
        for (m, n, k) in [
            (1, 1, 1), (1, 17, 3), (13, 5, 7), (14, 32, 16), (15, 33, 17), (29, 65, 64),
            (65, 65, 64), (17, 18, 0),
            // last blocks of 4, 7, 8 and 11 rows: each of the short-tile kernels at its edge
            (18, 20, 5), (21, 40, 9), (22, 33, 12), (25, 17, 6),
            // a transposed A packed for more than one panel (Gemm.packA): tiles of 14 and of
            // 11 and 13 rows (zero-padded), over one and two blocks of k
            (25, 70, 40), (13, 70, 390), (28, 48, 400),
        ] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for beta: Float in [0, 1.3] {
                        check(
                            m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.7,
                            beta: beta, bias: false, residual: false)
                    }
                }
            }
        }
    }

    /// Blocks of k (384) and of n, rows past 256 (packed B), the split over rows and over
    /// columns (products of more than 2^18 multiply-adds), with bias and residual.
    func testBlockingAndWorkerSplits() {
        for (m, n, k) in [
            (300, 48, 20), (20, 400, 400), (61, 130, 800), (29, 97, 390),
            (1010, 40, 20),  // more row parts than workers
        ] {
            for (transA, transB) in [(false, true), (false, false), (true, false), (true, true)] {
                check(
                    m: m, n: n, k: k, transA: transA, transB: transB, alpha: 1, beta: 0,
                    bias: true, residual: true, threads: [1, 2, 3])
                check(
                    m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.5, beta: 1,
                    bias: false, residual: false, threads: [1, 2])
            }
        }
    }

    /// The fused GELU epilogues (fc1 forward with and without the pre-activation kept, and the
    /// MLP backward), on full and narrow tiles.
    func testActivationEpilogues() {
        for (m, n, k) in [(15, 48, 9), (30, 24, 33), (300, 40, 16)] {
            for activation in ["gelu", "geluOnly", "geluBackward"] {
                check(
                    m: m, n: n, k: k, transA: false, transB: activation != "geluBackward",
                    alpha: 1, beta: 0, bias: activation != "geluBackward", residual: false,
                    activation: activation)
            }
        }
    }

    /// The OpenBLAS route (debug and generic builds) with every epilogue.
    func testBLASRoute() {
        Gemm.forceOwnKernels = false
        if Gemm.ownKernelsAreFast { return }  // a release build never takes it
        for (m, n, k) in [(15, 48, 9), (30, 24, 33), (65, 65, 0)] {
            for activation in ["none", "gelu", "geluOnly", "geluBackward"] {
                check(
                    m: m, n: n, k: k, transA: activation == "none", transB: true, alpha: 0.5,
                    beta: activation == "none" ? 1 : 0, bias: true, residual: true,
                    activation: activation)
            }
        }
    }

    /// `multiplySerial` (attention's per-head products) is `multiply` on one thread.
    func testSerialMatchesParallel() {
        let (m, n, k) = (65, 65, 64)
        let a = [Float].randomNormal(m * k, seed: 5)
        let b = [Float].randomNormal(n * k, seed: 6)
        var c1 = [Float](repeating: 0, count: m * n)
        var c2 = c1
        Parallelism.threads = 2
        Gemm.multiply(
            transA: false, transB: true, m: m, n: n, k: k, alpha: 0.125, a: a, lda: k, b: b,
            ldb: k, c: &c1, ldc: n)
        ScratchPool.shared.withBuffer(count: Gemm.workspaceFloats) { ws in
            Gemm.multiplySerial(
                transA: false, transB: true, m: m, n: n, k: k, alpha: 0.125, a: a, lda: k, b: b,
                ldb: k, c: &c2, ldc: n, workspace: ws)
        }
        XCTAssertEqual(c1, c2)
    }
    /// The bf16 product (AVX512_BF16 kernels in C) against the float reference on inputs
    /// rounded to bf16 the way the kernels round them (so only the order of the float sums
    /// differs): ragged rows (1-14-row tiles), odd k (a zero-padded pair), columns past a
    /// multiple of 32 and of 16, every epilogue, one and two workers (identical results).
    func testBF16ProductMatchesTheRoundedReference() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        for (m, n, k, activation) in [
            (1, 32, 2, "none"), (13, 33, 7, "geluOnly"), (29, 17, 192, "none"),
            (200, 96, 65, "gelu"), (197, 70, 768, "none"), (64, 8, 1, "geluOnly"),
        ] {
            let ldc = n + 3
            let a = [Float].randomNormal(m * (k + 2), seed: UInt64(m + k))
            let w = [Float].randomNormal(n * k, seed: UInt64(n))
            let bias = [Float].randomNormal(n, seed: 7)
            let residual = [Float].randomNormal(m * ldc, seed: 8)
            let (ar, wr) = (a.map(Gemm.roundedToBF16), w.map(Gemm.roundedToBF16))
            let want = reference(
                transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: ar, lda: k + 2,
                b: wr, ldb: k, beta: 0, c: [Float](repeating: 0, count: m * ldc), ldc: ldc,
                bias: bias, residual: residual, activation: activation, pre: [])
            let bytes = Gemm.bf16PackedBytes(k: k, n: n)
            let packed = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { packed.deallocate() }
            let weight = w.withUnsafeBufferPointer {
                Gemm.packBF16(into: packed, weight: $0.baseAddress!, k: k, n: n)
            }
            var results: [[Float]] = []
            for t in [1, 2] {
                Parallelism.threads = t
                var c = [Float](repeating: .nan, count: m * ldc)
                var out = [Float](repeating: 0, count: m * ldc)
                out.withUnsafeMutableBufferPointer { o in
                    let act: GemmActivation =
                        activation == "gelu" ? .gelu(out: o.baseAddress!, ld: ldc)
                        : activation == "geluOnly" ? .geluOnly : .none
                    Gemm.multiplyBF16(
                        m: m, a: a, lda: k + 2, weight: weight, c: &c, ldc: ldc, bias: bias,
                        residual: residual, ldr: ldc, activation: act)
                }
                let what = "\(m)x\(n)x\(k) \(activation) threads \(t)"
                for i in 0..<m {
                    for j in 0..<n {
                        let (got, ref) = (c[i * ldc + j], want.c[i * ldc + j])
                        XCTAssertEqual(got, ref, accuracy: 2e-5 * (1 + abs(ref)), "\(what) C[\(i), \(j)]")
                        if activation == "gelu" {
                            XCTAssertEqual(
                                out[i * ldc + j], want.out[i * ldc + j],
                                accuracy: 2e-5 * (1 + abs(ref)), "\(what) gelu[\(i), \(j)]")
                        }
                    }
                    // columns past n are never written
                    XCTAssertTrue(c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy(\.isNaN), what)
                }
                results.append(c.map { $0.isNaN ? 0 : $0 } + out)
            }
            XCTAssertEqual(results[0], results[1], "\(m)x\(n)x\(k): the worker split changed a result")
        }
    }

    /// Rounding to bf16: nearest, ties to even, NaN kept, infinities and the largest values.
    func testRoundingToBF16() {
        XCTAssertEqual(Gemm.roundedToBF16(1), 1)
        XCTAssertEqual(Gemm.roundedToBF16(Float(bitPattern: 0x3F80_8000)), 1)  // tie: to even
        XCTAssertEqual(Gemm.roundedToBF16(Float(bitPattern: 0x3F81_8000)), Float(bitPattern: 0x3F82_0000))
        XCTAssertEqual(Gemm.roundedToBF16(Float(bitPattern: 0x3F80_8001)), Float(bitPattern: 0x3F81_0000))
        XCTAssertEqual(Gemm.roundedToBF16(-0.1), -0.10009765625)
        XCTAssertEqual(Gemm.roundedToBF16(.infinity), .infinity)
        XCTAssertEqual(Gemm.roundedToBF16(.greatestFiniteMagnitude), .infinity)  // rounds up, overflows
        XCTAssertTrue(Gemm.roundedToBF16(.nan).isNaN)
        XCTAssertEqual(Gemm.roundedToBF16(Float(bitPattern: 0x8040_0000)).bitPattern, 0x8000_0000)  // denormal
    }

    /// The kernels' conversion (VCVTNEPS2BF16) rounds like `roundedToBF16` (normal values, ties
    /// both ways, infinities, overflow, denormals to zero), and pads an odd row with a zero.
    func testKernelConversionMatchesRoundedToBF16() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        let values: [Float] = [
            1, -1, 0.1, -0.1, 3.14159, 65504, -1e30, .infinity, -.infinity, .greatestFiniteMagnitude,
            Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0xBF80_8001),
            Float(bitPattern: 0x0040_0000), Float(bitPattern: 0x8000_0001), 0, -0.0,
        ] + [Float].randomNormal(20, seed: 3)
        var bits = [UInt16](repeating: 0xFFFF, count: values.count + 1)
        bits.withUnsafeMutableBytes { catlip_bf16_convert_rows($0.baseAddress!, values, values.count, 1, values.count) }
        for (x, b) in zip(values, bits) {
            XCTAssertEqual(UInt32(b) << 16, Gemm.roundedToBF16(x).bitPattern, "\(x)")
        }
        XCTAssertEqual(bits[values.count], 0, "the padding of an odd row")
    }
}
