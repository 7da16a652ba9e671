import Foundation
import Support
import XCTest

@testable import ViT

/// Each kernel against the PyTorch float64 references in kernels.safetensors, every fast kernel
/// against its naive reference, and finite-difference checks of every backward kernel.
final class KernelTests: XCTestCase {

    var kernels: SafeTensors!

    override func setUpWithError() throws {
        kernels = try SafeTensors.read(path: try fixturesRoot() + "/kernels.safetensors")
    }

    func k(_ name: String) throws -> [Float] { try XCTUnwrap(kernels[name], name).values }

    // MARK: PyTorch references

    func testLayerNormAgainstPyTorch() throws {
        let x = try k("layernorm.x")
        let w = try k("layernorm.weight")
        let b = try k("layernorm.bias")
        let dy = try k("layernorm.dy")
        let (R, D) = (5, 7)
        for fast in [false, true] {
            var y = [Float](repeating: 0, count: R * D)
            var mean = [Float](repeating: 0, count: R)
            var rstd = mean
            var dx = [Float](repeating: 0, count: R * D)
            var dw = [Float](repeating: 0, count: D)
            var db = dw
            if fast {
                Kernels.layerNormForward(
                    out: &y, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: R, dim: D)
                Kernels.layerNormBackward(
                    dinp: &dx, dweight: &dw, dbias: &db, dout: dy, inp: x, weight: w, mean: mean,
                    rstd: rstd, rows: R, dim: D)
            } else {
                Kernels.layerNormForwardNaive(
                    out: &y, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: R, dim: D)
                Kernels.layerNormBackwardNaive(
                    dinp: &dx, dweight: &dw, dbias: &db, dout: dy, inp: x, weight: w, mean: mean,
                    rstd: rstd, rows: R, dim: D)
            }
            assertWithinTolerance(
                [
                    elementwise("y", y, try k("layernorm.y"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dx", dx, try k("layernorm.dx"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dweight", dw, try k("layernorm.dweight"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dbias", db, try k("layernorm.dbias"), rtol: 1e-4, atol: 1e-5),
                ], "layernorm fast \(fast)")
        }
    }

    func testGELUAgainstPyTorch() throws {
        let x = try k("gelu.x")
        let dy = try k("gelu.dy")
        for fast in [false, true] {
            var y = [Float](repeating: 0, count: x.count)
            var dx = y
            if fast {
                Kernels.geluForward(out: &y, inp: x, count: x.count)
                Kernels.geluBackward(dinp: &dx, inp: x, dout: dy, count: x.count)
            } else {
                Kernels.geluForwardNaive(out: &y, inp: x, count: x.count)
                Kernels.geluBackwardNaive(dinp: &dx, inp: x, dout: dy, count: x.count)
            }
            // the fast erf (A&S 7.1.26, as PyTorch's vectorised CPU erf) is within 1.5e-7
            assertWithinTolerance(
                [
                    elementwise("y", y, try k("gelu.y"), rtol: 1e-5, atol: 1e-6),
                    elementwise("dx", dx, try k("gelu.dx"), rtol: 1e-5, atol: 1e-6),
                ], "gelu fast \(fast)")
        }
    }

    /// The fast LayerNorm, GELU and softmax against the naive loops on sizes with SIMD tails,
    /// including overwrite mode and multi-worker splits.
    func testFastElementwiseMatchesNaive() {
        for (R, D) in [(1, 1), (3, 7), (5, 16), (9, 33), (70, 192)] {
            let x = [Float].randomNormal(R * D, seed: 91, std: 3).enumerated().map {
                $0.1 + Float($0.0 % 5) * 20
            }
            let w = [Float].randomNormal(D, seed: 92)
            let b = [Float].randomNormal(D, seed: 93)
            let dy = [Float].randomNormal(R * D, seed: 94)
            let dx0 = [Float].randomNormal(R * D, seed: 95)
            var (y1, y2) = (
                [Float](repeating: 0, count: R * D), [Float](repeating: 0, count: R * D)
            )
            var (m1, m2) = ([Float](repeating: 0, count: R), [Float](repeating: 0, count: R))
            var (s1, s2) = (m1, m2)
            var (dx1, dx2) = (dx0, dx0)
            var (dw1, dw2) = (w, w)
            var (db1, db2) = (b, b)
            Kernels.layerNormForwardNaive(
                out: &y1, mean: &m1, rstd: &s1, inp: x, weight: w, bias: b, rows: R, dim: D)
            Kernels.layerNormForward(
                out: &y2, mean: &m2, rstd: &s2, inp: x, weight: w, bias: b, rows: R, dim: D)
            Kernels.layerNormBackwardNaive(
                dinp: &dx1, dweight: &dw1, dbias: &db1, dout: dy, inp: x, weight: w, mean: m1,
                rstd: s1, rows: R, dim: D)
            Kernels.layerNormBackward(
                dinp: &dx2, dweight: &dw2, dbias: &db2, dout: dy, inp: x, weight: w, mean: m2,
                rstd: s2, rows: R, dim: D)
            assertWithinTolerance(
                [
                    elementwise("y", y2, y1, rtol: 1e-5, atol: 1e-5),
                    elementwise("rstd", s2, s1, rtol: 1e-5, atol: 1e-6),
                    elementwise("dx", dx2, dx1, rtol: 1e-4, atol: 1e-5),
                    elementwise("dweight", dw2, dw1, rtol: 1e-4, atol: 1e-5),
                    elementwise("dbias", db2, db1, rtol: 1e-5, atol: 1e-5),
                ], "layernorm \(R)x\(D)")
        }
        for n in [1, 15, 16, 17, 100, 70_000] {
            let x = [Float].randomNormal(n, seed: 96, std: 4)
            let dy = [Float].randomNormal(n, seed: 97)
            var (y1, y2) = ([Float](repeating: 0, count: n), [Float](repeating: 0, count: n))
            Kernels.geluForwardNaive(out: &y1, inp: x, count: n)
            Kernels.geluForward(out: &y2, inp: x, count: n)
            let d0 = [Float].randomNormal(n, seed: 98)
            var (d1, d2, d3) = (d0, d0, [Float](repeating: .nan, count: n))
            Kernels.geluBackwardNaive(dinp: &d1, inp: x, dout: dy, count: n)
            Kernels.geluBackward(dinp: &d2, inp: x, dout: dy, count: n)
            Kernels.geluBackward(dinp: &d3, inp: x, dout: dy, count: n, accumulate: false)
            var fresh = [Float](repeating: 0, count: n)
            Kernels.geluBackwardNaive(dinp: &fresh, inp: x, dout: dy, count: n)
            assertWithinTolerance(
                [
                    elementwise("y", y2, y1, rtol: 1e-5, atol: 1e-6),
                    elementwise("dx", d2, d1, rtol: 1e-5, atol: 1e-6),
                    elementwise("dx overwrite", d3, fresh, rtol: 1e-5, atol: 1e-6),
                ], "gelu \(n)")
        }
        // fc1's fused GELU backward + bias gradient (in place) against the naive kernels
        for (R, C) in [(1, 1), (3, 17), (40, 48), (9, 100)] {
            let x = [Float].randomNormal(R * C, seed: 101, std: 3)
            let dy = [Float].randomNormal(R * C, seed: 102)
            let db0 = [Float].randomNormal(C, seed: 103)
            var want = [Float](repeating: 0, count: R * C)
            Kernels.geluBackwardNaive(dinp: &want, inp: x, dout: dy, count: R * C)
            var wantBias = db0
            Kernels.columnSums(into: &wantBias, want, rows: R, columns: C)
            var d = dy
            var db = db0
            d.withUnsafeMutableBufferPointer { p in
                Kernels.geluBackwardWithBias(
                    dinp: p.baseAddress!, inp: x, dout: p.baseAddress!, dbias: &db, rows: R,
                    columns: C)
            }
            assertWithinTolerance(
                [
                    elementwise("dx in place", d, want, rtol: 1e-5, atol: 1e-6),
                    relativeToMax("dbias", db, wantBias, rel: 1e-5),
                ], "gelu backward with bias \(R)x\(C)")
        }
        // the SIMD exp over its whole range, against libm
        var worst: Float = 0
        var i = -87.0 as Float
        while i < 88 {
            let v = SIMDMath.exp(SIMD16<Float>((0..<16).map { i + Float($0) * 0.0137 }))
            for j in 0..<16 {
                let want = Foundation.exp(i + Float(j) * 0.0137)
                worst = max(worst, abs(v[j] - want) / want)
            }
            i += 0.21
        }
        XCTAssertLessThan(worst, 4e-7, "SIMD exp relative error")
        for n in [1, 5, 16, 17, 65, 197] {
            let row = [Float].randomNormal(n, seed: 99, std: 5)
            var (a, b) = (row, row)
            Kernels.softmaxRow(&a, count: n, max: row.max()!)
            Kernels.softmaxRowFast(&b, count: n)
            XCTAssert(
                elementwise("softmax", b, a, rtol: 1e-5, atol: 1e-7).score <= 1, "softmax \(n)")
        }
    }

    func testAttentionAgainstPyTorch() throws {
        let q = try k("attention.q")
        let kk = try k("attention.k")
        let v = try k("attention.v")
        let dout = try k("attention.dout")
        let (B, T, hd) = (2, 5, 4)
        // pack one head into qkv (B, T, 3·hd)
        var qkv = [Float](repeating: 0, count: B * T * 3 * hd)
        for r in 0..<(B * T) {
            for i in 0..<hd {
                qkv[r * 3 * hd + i] = q[r * hd + i]
                qkv[r * 3 * hd + hd + i] = kk[r * hd + i]
                qkv[r * 3 * hd + 2 * hd + i] = v[r * hd + i]
            }
        }
        for backend in [ComputeBackend.naive, .fast] {
            var out = [Float](repeating: .nan, count: B * T * hd)
            var att = [Float](repeating: 0, count: B * T * T)
            var datt = att
            var dqkv = qkv.map { _ in Float(0) }
            if backend == .naive {
                Kernels.attentionForwardNaive(
                    out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: 1, headDim: hd)
                Kernels.attentionBackwardNaive(
                    dqkv: &dqkv, datt: &datt, dout: dout, qkv: qkv, att: att, batch: B,
                    tokens: T, heads: 1, headDim: hd)
            } else {
                Kernels.attentionForward(
                    out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: 1, headDim: hd)
                Kernels.attentionBackward(
                    dqkv: &dqkv, datt: &datt, dout: dout, qkv: qkv, att: att, batch: B,
                    tokens: T, heads: 1, headDim: hd)
            }
            func part(_ j: Int) -> [Float] {
                var out: [Float] = []
                for r in 0..<(B * T) {
                    let start = r * 3 * hd + j * hd
                    out += dqkv[start..<(start + hd)]
                }
                return out
            }
            assertWithinTolerance(
                [
                    elementwise("out", out, try k("attention.out"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dq", part(0), try k("attention.dq"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dk", part(1), try k("attention.dk"), rtol: 1e-4, atol: 1e-5),
                    elementwise("dv", part(2), try k("attention.dv"), rtol: 1e-4, atol: 1e-5),
                ], "attention [\(backend)]")
        }
    }

    /// Softmax cross-entropy against soft targets (one-hot, label-smoothed, mixed and dense rows,
    /// logits of ±60 and a row shifted by +80) against PyTorch's float64 log_softmax, on both
    /// backends; the fast kernel against the naive one on a wide head, and its result the same
    /// at every thread count.
    func testSoftmaxCrossEntropyAgainstPyTorch() throws {
        let z = try k("softce.logits")
        let y = try k("softce.targets")
        let (B, V) = (4, 9)
        for fast in [false, true] {
            var dz = [Float](repeating: 0, count: B * V)
            let loss: Float
            if fast {
                loss = Kernels.softmaxCrossEntropyForward(logits: z, targets: y, batch: B, classes: V)
                Kernels.softmaxCrossEntropyBackward(dlogits: &dz, logits: z, targets: y, batch: B, classes: V)
            } else {
                loss = Kernels.softmaxCrossEntropyForwardNaive(logits: z, targets: y, batch: B, classes: V)
                Kernels.softmaxCrossEntropyBackwardNaive(dlogits: &dz, logits: z, targets: y, batch: B, classes: V)
            }
            assertWithinTolerance(
                [
                    elementwise("loss", [loss], try k("softce.loss"), rtol: 1e-5, atol: 1e-6),
                    elementwise("dlogits", dz, try k("softce.dlogits"), rtol: 1e-4, atol: 1e-7),
                ], "softmax cross-entropy fast \(fast)")
            // extreme logits stay finite
            let big: [Float] = [1e30, -1e30, 88, -104, 1e37, -1e37, 0, 3]
            let t: [Float] = [0.25, 0.25, 0, 0.5, 0, 0, 0, 0]
            var d = [Float](repeating: 0, count: big.count)
            if fast {
                XCTAssert(Kernels.softmaxCrossEntropyForward(logits: big, targets: t, batch: 1, classes: big.count).isFinite)
                Kernels.softmaxCrossEntropyBackward(dlogits: &d, logits: big, targets: t, batch: 1, classes: big.count)
            } else {
                XCTAssert(Kernels.softmaxCrossEntropyForwardNaive(logits: big, targets: t, batch: 1, classes: big.count).isFinite)
                Kernels.softmaxCrossEntropyBackwardNaive(dlogits: &d, logits: big, targets: t, batch: 1, classes: big.count)
            }
            XCTAssert(d.allSatisfy(\.isFinite), "\(d)")
        }
        // fast against naive on a wide head with a ragged tail, smoothed one-hot targets
        let (b, v) = (5, 1_003)
        let logits = [Float].randomNormal(b * v, seed: 11, std: 4)
        var targets = [Float](repeating: 0.1 / Float(v), count: b * v)
        for r in 0..<b { targets[r * v + (r * 211) % v] += 0.9 }
        let l1 = Kernels.softmaxCrossEntropyForwardNaive(logits: logits, targets: targets, batch: b, classes: v)
        var d1 = [Float](repeating: 0, count: b * v)
        Kernels.softmaxCrossEntropyBackwardNaive(dlogits: &d1, logits: logits, targets: targets, batch: b, classes: v)
        let saved = Parallelism.threads
        defer { Parallelism.threads = saved }
        var first: (Float, [Float])?
        for threads in [1, 2, 3] {
            Parallelism.threads = threads
            let l2 = Kernels.softmaxCrossEntropyForward(logits: logits, targets: targets, batch: b, classes: v)
            var d2 = [Float](repeating: 0, count: b * v)
            Kernels.softmaxCrossEntropyBackward(dlogits: &d2, logits: logits, targets: targets, batch: b, classes: v)
            XCTAssertEqual(l2, l1, accuracy: 1e-5 * l1)
            XCTAssert(relativeToMax("dlogits", d2, d1, rel: 1e-5).score <= 1)
            if let first {
                XCTAssertEqual(first.0, l2, "the loss must not depend on the thread count")
                XCTAssertEqual(first.1, d2)
            } else {
                first = (l2, d2)
            }
        }
    }

    func testBCEAgainstPyTorch() throws {
        let z = try k("bce.logits")
        let y = try k("bce.targets")
        XCTAssert(z.contains(100) && z.contains(-100) && z.contains(50) && z.contains(-50))
        for fast in [false, true] {
            var dz = [Float](repeating: 0, count: 24)
            let loss: Float
            if fast {
                loss = Kernels.bceForward(logits: z, targets: y, batch: 3, classes: 8)
                Kernels.bceBackward(dlogits: &dz, logits: z, targets: y, batch: 3, classes: 8)
            } else {
                loss = Kernels.bceForwardNaive(logits: z, targets: y, batch: 3, classes: 8)
                Kernels.bceBackwardNaive(dlogits: &dz, logits: z, targets: y, batch: 3, classes: 8)
            }
            // dlogits at ±50/±100 are 0, 6.4e-23 and a subnormal: an absolute bound covers them
            assertWithinTolerance(
                [
                    elementwise("loss", [loss], try k("bce.loss"), rtol: 1e-5, atol: 1e-5),
                    elementwise("dlogits", dz, try k("bce.dlogits"), rtol: 1e-5, atol: 1e-7),
                ], "bce fast \(fast)")
            XCTAssert(loss.isFinite && dz.allSatisfy(\.isFinite))
            // extreme logits stay finite
            var big: [Float] = [1e30, -1e30, 88, -104, 1e37, -1e37]
            big += big + big
            let t = (0..<big.count).map { Float($0 % 3 == 0 ? 1 : 0) }
            var d = [Float](repeating: 0, count: big.count)
            if fast {
                XCTAssert(
                    Kernels.bceForward(logits: big, targets: t, batch: 1, classes: big.count)
                        .isFinite)
                Kernels.bceBackward(
                    dlogits: &d, logits: big, targets: t, batch: 1, classes: big.count)
            } else {
                XCTAssert(
                    Kernels.bceForwardNaive(logits: big, targets: t, batch: 1, classes: big.count)
                        .isFinite)
                Kernels.bceBackwardNaive(
                    dlogits: &d, logits: big, targets: t, batch: 1, classes: big.count)
            }
            XCTAssert(d.allSatisfy(\.isFinite))
        }
        // fast against naive on a CatLIP-like batch (mostly negative logits, a few positives)
        let (B, V) = (4, 3_001)
        let logits = [Float].randomNormal(B * V, seed: 7, std: 6).map { $0 - 8 }
        let targets = (0..<(B * V)).map { Float($0 % 997 == 0 ? 1 : 0) }
        let l1 = Kernels.bceForwardNaive(logits: logits, targets: targets, batch: B, classes: V)
        let l2 = Kernels.bceForward(logits: logits, targets: targets, batch: B, classes: V)
        XCTAssertEqual(l2, l1, accuracy: 1e-5 * l1)
        var (d1, d2) = ([Float](repeating: 0, count: B * V), [Float](repeating: 0, count: B * V))
        Kernels.bceBackwardNaive(
            dlogits: &d1, logits: logits, targets: targets, batch: B, classes: V)
        Kernels.bceBackward(dlogits: &d2, logits: logits, targets: targets, batch: B, classes: V)
        XCTAssert(elementwise("dlogits", d2, d1, rtol: 1e-5, atol: 1e-9).score <= 1)
    }

    // MARK: fast kernels against the naive references

    func testSgemmMatchesNaive() {
        var rng = SeededGenerator(seed: 3)
        for (m, n, kk) in [(1, 1, 1), (7, 5, 13), (17, 33, 9), (64, 48, 37)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for beta: Float in [0, 1] {
                        let lda = (transA ? m : kk) + 3
                        let ldb = (transB ? kk : n) + 2
                        let ldc = n + 1
                        let a = (0..<((transA ? kk : m) * lda)).map { _ in Float(rng.nextNormal()) }
                        let b = (0..<((transB ? n : kk) * ldb)).map { _ in Float(rng.nextNormal()) }
                        let c0 = (0..<(m * ldc)).map { _ in Float(rng.nextNormal()) }
                        var c1 = c0
                        var c2 = c0
                        Kernels.sgemmNaive(
                            transA: transA, transB: transB, m: m, n: n, k: kk, alpha: 0.7, a: a,
                            lda: lda, b: b, ldb: ldb, beta: beta, c: &c1, ldc: ldc)
                        Kernels.sgemm(
                            transA: transA, transB: transB, m: m, n: n, k: kk, alpha: 0.7, a: a,
                            lda: lda, b: b, ldb: ldb, beta: beta, c: &c2, ldc: ldc)
                        let d = elementwise("sgemm", c2, c1, rtol: 1e-5, atol: 1e-5)
                        XCTAssert(d.score <= 1, "\(m)x\(n)x\(kk) tA \(transA) tB \(transB): \(d)")
                    }
                }
            }
        }
    }

    func testLinearFastMatchesNaive() {
        for (R, I, O, bias) in [
            (1, 1, 1, true), (7, 13, 5, true), (26, 48, 144, false), (3, 37, 11, true),
            (300, 64, 96, true), (8, 64, 2000, true),
        ] {
            let x = [Float].randomNormal(R * I, seed: 1)
            let w = [Float].randomNormal(O * I, seed: 2)
            let b = [Float].randomNormal(O, seed: 3)
            let dy = [Float].randomNormal(R * O, seed: 4)
            var y1 = [Float](repeating: 0, count: R * O)
            var y2 = y1
            // backward accumulates: start from the same nonzero gradients
            let dx0 = [Float].randomNormal(R * I, seed: 5)
            let dw0 = [Float].randomNormal(O * I, seed: 6)
            let db0 = [Float].randomNormal(O, seed: 7)
            var (dx1, dw1, db1) = (dx0, dw0, db0)
            var (dx2, dw2, db2) = (dx0, dw0, db0)
            b.withUnsafeBufferPointer { bp in
                let bias = bias ? bp.baseAddress : nil
                Kernels.linearForwardNaive(
                    out: &y1, inp: x, weight: w, bias: bias, rows: R, inFeatures: I, outFeatures: O)
                Kernels.linearForward(
                    out: &y2, inp: x, weight: w, bias: bias, rows: R, inFeatures: I, outFeatures: O)
            }
            Kernels.linearBackwardNaive(
                dinp: &dx1, dweight: &dw1, dbias: &db1, dout: dy, inp: x, weight: w, rows: R,
                inFeatures: I, outFeatures: O)
            Kernels.linearBackward(
                dinp: &dx2, dweight: &dw2, dbias: &db2, dout: dy, inp: x, weight: w, rows: R,
                inFeatures: I, outFeatures: O)
            var dx3 = [Float](repeating: .nan, count: R * I)
            var dx4 = [Float](repeating: 0, count: R * I)
            var (dw3, db3) = (dw0, db0)
            var (dw4, db4) = (dw0, db0)
            Kernels.linearBackward(
                dinp: &dx3, dweight: &dw3, dbias: &db3, dout: dy, inp: x, weight: w, rows: R,
                inFeatures: I, outFeatures: O, accumulate: false)
            Kernels.linearBackwardNaive(
                dinp: &dx4, dweight: &dw4, dbias: &db4, dout: dy, inp: x, weight: w, rows: R,
                inFeatures: I, outFeatures: O)
            // sums of up to 2000 products in another order: compare relative to the largest value
            assertWithinTolerance(
                [
                    relativeToMax("y", y2, y1, rel: 1e-5),
                    relativeToMax("dx", dx2, dx1, rel: 1e-5),
                    relativeToMax("dx overwrite", dx3, dx4, rel: 1e-5),
                    relativeToMax("dw", dw2, dw1, rel: 1e-5),
                    relativeToMax("db", db2, db1, rel: 1e-5),
                ], "linear \(R)x\(I)->\(O)")
        }
    }

    func testAttentionFastMatchesNaive() {
        for (B, T, NH, hd) in [
            (1, 1, 1, 1), (2, 5, 3, 4), (3, 26, 3, 16), (2, 17, 2, 7), (4, 65, 3, 64),
        ] {
            let A = NH * hd
            let qkv = [Float].randomNormal(B * T * 3 * A, seed: 11)
            let dout = [Float].randomNormal(B * T * A, seed: 12)
            let dq0 = [Float].randomNormal(B * T * 3 * A, seed: 13)
            var out1 = [Float](repeating: 0, count: B * T * A)
            var out2 = out1
            var att1 = [Float](repeating: 0, count: B * NH * T * T)
            var att2 = att1
            var s1 = att1
            var s2 = att1
            var (d1, d2) = (dq0, dq0)
            Kernels.attentionForwardNaive(
                out: &out1, att: &att1, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd)
            Kernels.attentionForward(
                out: &out2, att: &att2, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd)
            Kernels.attentionBackwardNaive(
                dqkv: &d1, datt: &s1, dout: dout, qkv: qkv, att: att1, batch: B, tokens: T,
                heads: NH, headDim: hd)
            Kernels.attentionBackward(
                dqkv: &d2, datt: &s2, dout: dout, qkv: qkv, att: att2, batch: B, tokens: T,
                heads: NH, headDim: hd)
            // overwrite mode against the naive kernel started from zero
            var d3 = [Float](repeating: .nan, count: qkv.count)
            var d4 = [Float](repeating: 0, count: qkv.count)
            Kernels.attentionBackward(
                dqkv: &d3, datt: &s2, dout: dout, qkv: qkv, att: att2, batch: B, tokens: T,
                heads: NH, headDim: hd, accumulate: false)
            Kernels.attentionBackwardNaive(
                dqkv: &d4, datt: &s1, dout: dout, qkv: qkv, att: att1, batch: B, tokens: T,
                heads: NH, headDim: hd)
            assertWithinTolerance(
                [
                    elementwise("out", out2, out1, rtol: 1e-5, atol: 1e-6),
                    elementwise("att", att2, att1, rtol: 1e-5, atol: 1e-6),
                    elementwise("dqkv", d2, d1, rtol: 1e-4, atol: 1e-5),
                    elementwise("dqkv overwrite", d3, d4, rtol: 1e-4, atol: 1e-5),
                ], "attention B\(B) T\(T) NH\(NH) hd\(hd)")
        }
    }

    /// Attention at bf16 input precision: the scores and softmax are those of the naive
    /// attention on bf16-rounded queries and keys, and the output is the softmax rows, rounded,
    /// times the rounded values (only the float summation order differs): token counts past a
    /// panel of 32, odd head widths and token counts (a zero-padded pair on each side).
    func testBF16AttentionMatchesTheRoundedReference() throws {
        try XCTSkipUnless(Gemm.bf16Supported, "this processor has no AVX512_BF16")
        for (B, T, NH, hd) in [(1, 1, 1, 2), (2, 37, 2, 9), (2, 65, 3, 64)] {
            let A = NH * hd
            let qkv = [Float].randomNormal(B * T * 3 * A, seed: 14)
            let rounded = qkv.map(Gemm.roundedToBF16)
            var (out, att) = ([Float](repeating: .nan, count: B * T * A), [Float](repeating: .nan, count: B * NH * T * T))
            var (outRef, attRef) = ([Float](repeating: 0, count: B * T * A), [Float](repeating: 0, count: B * NH * T * T))
            Kernels.attentionForward(
                out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd, bf16: true)
            Kernels.attentionForwardNaive(
                out: &outRef, att: &attRef, qkv: rounded, batch: B, tokens: T, heads: NH, headDim: hd)
            for b in 0..<B {
                for h in 0..<NH {
                    for t in 0..<T {
                        for d in 0..<hd {
                            var sum = 0.0
                            for u in 0..<T {
                                let pr = Gemm.roundedToBF16(att[((b * NH + h) * T + t) * T + u])
                                sum += Double(pr) * Double(rounded[(b * T + u) * 3 * A + 2 * A + h * hd + d])
                            }
                            outRef[(b * T + t) * A + h * hd + d] = Float(sum)
                        }
                    }
                }
            }
            assertWithinTolerance(
                [
                    elementwise("att", att, attRef, rtol: 1e-5, atol: 1e-6),
                    elementwise("out", out, outRef, rtol: 1e-5, atol: 1e-6),
                ], "bf16 attention B\(B) T\(T) NH\(NH) hd\(hd)")
        }
    }

    /// Attention of the class token alone equals row 0 of the naive full attention: its
    /// output and softmax row, and, with an output gradient on row 0 only, the gradients of
    /// the class token's query and of every key and value.
    func testClassTokenAttentionMatchesNaiveRowZero() {
        for (B, T, NH, hd) in [(1, 1, 1, 1), (2, 5, 3, 4), (3, 26, 3, 16), (2, 17, 2, 7), (2, 65, 3, 64)] {
            let A = NH * hd
            let qkv = [Float].randomNormal(B * T * 3 * A, seed: 31)
            var dout = [Float](repeating: 0, count: B * T * A)
            let doutCls = [Float].randomNormal(B * A, seed: 32)
            for b in 0..<B { for c in 0..<A { dout[b * T * A + c] = doutCls[b * A + c] } }
            var out = [Float](repeating: 0, count: B * T * A)
            var att = [Float](repeating: 0, count: B * NH * T * T)
            var s = att
            var dqkv = [Float](repeating: 0, count: qkv.count)
            Kernels.attentionForwardNaive(
                out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd)
            Kernels.attentionBackwardNaive(
                dqkv: &dqkv, datt: &s, dout: dout, qkv: qkv, att: att, batch: B, tokens: T,
                heads: NH, headDim: hd)
            // the class route's inputs: queries of row 0, keys and values of every row
            var q = [Float](), kv = [Float]()
            var wantOut = [Float](), wantAtt = [Float](), wantDq = [Float](), wantDkv = [Float]()
            for b in 0..<B {
                q += qkv[(b * T * 3 * A)..<(b * T * 3 * A + A)]
                wantOut += out[(b * T * A)..<(b * T * A + A)]
                wantDq += dqkv[(b * T * 3 * A)..<(b * T * 3 * A + A)]
                for h in 0..<NH {
                    let row = (b * NH + h) * T * T
                    wantAtt += att[row..<(row + T)]
                }
                for t in 0..<T {
                    let r = (b * T + t) * 3 * A
                    kv += qkv[(r + A)..<(r + 3 * A)]
                    wantDkv += dqkv[(r + A)..<(r + 3 * A)]
                }
            }
            var gotOut = [Float](repeating: .nan, count: B * A)
            var gotAtt = [Float](repeating: .nan, count: B * NH * T)
            var gotDq = [Float](repeating: .nan, count: B * A)
            var gotDkv = [Float](repeating: .nan, count: B * T * 2 * A)
            var scratch = [Float](repeating: .nan, count: B * NH * T)
            Kernels.classTokenAttentionForward(
                out: &gotOut, att: &gotAtt, q: q, kv: kv, batch: B, tokens: T, heads: NH,
                headDim: hd)
            Kernels.classTokenAttentionBackward(
                dq: &gotDq, dkv: &gotDkv, datt: &scratch, dout: doutCls, q: q, kv: kv,
                att: gotAtt, batch: B, tokens: T, heads: NH, headDim: hd)
            assertWithinTolerance(
                [
                    elementwise("out", gotOut, wantOut, rtol: 1e-5, atol: 1e-6),
                    elementwise("att", gotAtt, wantAtt, rtol: 1e-5, atol: 1e-6),
                    elementwise("dq", gotDq, wantDq, rtol: 1e-4, atol: 1e-5),
                    elementwise("dkv", gotDkv, wantDkv, rtol: 1e-4, atol: 1e-5),
                ], "class-token attention B\(B) T\(T) NH\(NH) hd\(hd)")
        }
    }

    // MARK: finite differences (central, float32 kernels, loss summed in double)

    /// Checks `grad` against central differences of `loss` at `x`, for `samples` coordinates.
    func checkGradient(
        _ what: String, x: [Float], grad: [Float], h: Float = 1e-2, tol: Float = 2e-2,
        loss: ([Float]) -> Double, file: StaticString = #filePath, line: UInt = #line
    ) {
        let scale = max(maxAbs(grad), 1e-3)
        var worst: Float = 0
        for i in x.indices {
            var xp = x
            var xm = x
            xp[i] += h
            xm[i] -= h
            let fd = Float((loss(xp) - loss(xm)) / Double(2 * h))
            worst = max(worst, abs(fd - grad[i]) / scale)
        }
        XCTAssertLessThanOrEqual(
            worst, tol, "\(what): finite differences off by \(worst) of max |grad|", file: file,
            line: line)
    }

    func dot(_ a: [Float], _ r: [Float]) -> Double {
        zip(a, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    func testLayerNormFiniteDifferences() {
        let (R, D) = (3, 6)
        let x = [Float].randomNormal(R * D, seed: 21)
        let w = [Float].randomNormal(D, seed: 22)
        let b = [Float].randomNormal(D, seed: 23)
        let r = [Float].randomNormal(R * D, seed: 24)
        func f(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: R * D)
            var m = [Float](repeating: 0, count: R)
            var s = m
            Kernels.layerNormForward(
                out: &y, mean: &m, rstd: &s, inp: x, weight: w, bias: b, rows: R, dim: D)
            return dot(y, r)
        }
        var y = [Float](repeating: 0, count: R * D)
        var m = [Float](repeating: 0, count: R)
        var s = m
        Kernels.layerNormForward(
            out: &y, mean: &m, rstd: &s, inp: x, weight: w, bias: b, rows: R, dim: D)
        var dx = [Float](repeating: 0, count: R * D)
        var dw = [Float](repeating: 0, count: D)
        var db = dw
        Kernels.layerNormBackward(
            dinp: &dx, dweight: &dw, dbias: &db, dout: r, inp: x, weight: w, mean: m, rstd: s,
            rows: R, dim: D)
        checkGradient("layernorm dx", x: x, grad: dx) { f($0, w, b) }
        checkGradient("layernorm dweight", x: w, grad: dw) { f(x, $0, b) }
        checkGradient("layernorm dbias", x: b, grad: db) { f(x, w, $0) }
    }

    func testGELUFiniteDifferences() {
        let x = [Float].randomNormal(40, seed: 31, std: 2)
        let r = [Float].randomNormal(40, seed: 32)
        var dx = [Float](repeating: 0, count: 40)
        Kernels.geluBackward(dinp: &dx, inp: x, dout: r, count: 40)
        checkGradient("gelu", x: x, grad: dx, h: 1e-3) { x in
            var y = [Float](repeating: 0, count: 40)
            Kernels.geluForward(out: &y, inp: x, count: 40)
            return self.dot(y, r)
        }
    }

    func testLinearFiniteDifferences() {
        let (R, I, O) = (4, 5, 3)
        let x = [Float].randomNormal(R * I, seed: 41)
        let w = [Float].randomNormal(O * I, seed: 42)
        let b = [Float].randomNormal(O, seed: 43)
        let r = [Float].randomNormal(R * O, seed: 44)
        func f(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: R * O)
            Kernels.linearForwardNaive(
                out: &y, inp: x, weight: w, bias: b, rows: R, inFeatures: I, outFeatures: O)
            return dot(y, r)
        }
        var dx = [Float](repeating: 0, count: R * I)
        var dw = [Float](repeating: 0, count: O * I)
        var db = [Float](repeating: 0, count: O)
        Kernels.linearBackwardNaive(
            dinp: &dx, dweight: &dw, dbias: &db, dout: r, inp: x, weight: w, rows: R, inFeatures: I,
            outFeatures: O)
        checkGradient("linear dx", x: x, grad: dx) { f($0, w, b) }
        checkGradient("linear dweight", x: w, grad: dw) { f(x, $0, b) }
        checkGradient("linear dbias", x: b, grad: db) { f(x, w, $0) }
    }

    func testAttentionFiniteDifferences() {
        let (B, T, NH, hd) = (2, 4, 2, 3)
        let A = NH * hd
        let qkv = [Float].randomNormal(B * T * 3 * A, seed: 51)
        let r = [Float].randomNormal(B * T * A, seed: 52)
        func f(_ qkv: [Float]) -> Double {
            var out = [Float](repeating: 0, count: B * T * A)
            var att = [Float](repeating: 0, count: B * NH * T * T)
            Kernels.attentionForwardNaive(
                out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd)
            return dot(out, r)
        }
        var out = [Float](repeating: 0, count: B * T * A)
        var att = [Float](repeating: 0, count: B * NH * T * T)
        var datt = att
        Kernels.attentionForwardNaive(
            out: &out, att: &att, qkv: qkv, batch: B, tokens: T, heads: NH, headDim: hd)
        var dqkv = [Float](repeating: 0, count: qkv.count)
        Kernels.attentionBackwardNaive(
            dqkv: &dqkv, datt: &datt, dout: r, qkv: qkv, att: att, batch: B, tokens: T, heads: NH,
            headDim: hd)
        checkGradient("attention dqkv", x: qkv, grad: dqkv, h: 1e-2, loss: f)
    }

    func testBCEFiniteDifferences() {
        let z = [Float].randomNormal(12, seed: 61, std: 3)
        let y: [Float] = [1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1]
        var dz = [Float](repeating: 0, count: 12)
        Kernels.bceBackward(dlogits: &dz, logits: z, targets: y, batch: 3, classes: 4)
        checkGradient("bce", x: z, grad: dz, h: 1e-2) {
            Double(Kernels.bceForward(logits: $0, targets: y, batch: 3, classes: 4))
        }
    }

    func testPoolingAndEmbeddingFiniteDifferences() {
        let (B, N, D) = (2, 4, 3)
        for cls in [false, true] {
            for avg in [false, true] where avg || cls {
                let prefix = cls ? 1 : 0
                let T = N + prefix
                let patches = [Float].randomNormal(B * N * D, seed: 71)
                let clsToken = [Float].randomNormal(D, seed: 72)
                let pos = [Float].randomNormal(T * D, seed: 73)
                let r = [Float].randomNormal(B * D, seed: 74)
                func f(_ patches: [Float], _ clsToken: [Float], _ pos: [Float]) -> Double {
                    var x = [Float](repeating: 0, count: B * T * D)
                    var pooled = [Float](repeating: 0, count: B * D)
                    clsToken.withUnsafeBufferPointer { c in
                        Kernels.embedForward(
                            out: &x, patches: patches, clsToken: cls ? c.baseAddress : nil,
                            posEmbed: pos, batch: B, numPatches: N, dim: D)
                    }
                    Kernels.poolForward(
                        out: &pooled, inp: x, avg: avg, prefix: prefix, batch: B, tokens: T, dim: D)
                    return dot(pooled, r)
                }
                var dx = [Float](repeating: 0, count: B * T * D)
                Kernels.poolBackward(
                    dinp: &dx, dout: r, avg: avg, prefix: prefix, batch: B, tokens: T, dim: D)
                var dp = [Float](repeating: 0, count: B * N * D)
                var dc = [Float](repeating: 0, count: D)
                var dpos = [Float](repeating: 0, count: T * D)
                dc.withUnsafeMutableBufferPointer { c in
                    Kernels.embedBackward(
                        dpatches: &dp, dclsToken: cls ? c.baseAddress : nil, dposEmbed: &dpos,
                        dout: dx, batch: B, numPatches: N, dim: D)
                }
                let what = "cls \(cls) avg \(avg)"
                checkGradient("\(what) patches", x: patches, grad: dp) { f($0, clsToken, pos) }
                checkGradient("\(what) pos", x: pos, grad: dpos) { f(patches, clsToken, $0) }
                if cls {
                    checkGradient("\(what) cls", x: clsToken, grad: dc) { f(patches, $0, pos) }
                }
            }
        }
    }

    func testUnfoldMatchesConvolution() {
        // conv2d(kernel = stride = P) computed directly vs unfold + Linear, with a ragged edge
        let (B, C, S, P, D) = (2, 3, 10, 4, 5)
        let G = S / P
        let img = [Float].randomNormal(B * C * S * S, seed: 81)
        let w = [Float].randomNormal(D * C * P * P, seed: 82)
        var patches = [Float](repeating: 0, count: B * G * G * C * P * P)
        Kernels.unfoldPatches(
            out: &patches, images: img, batch: B, channels: C, imageSize: S, patchSize: P)
        var y = [Float](repeating: 0, count: B * G * G * D)
        Kernels.linearForwardNaive(
            out: &y, inp: patches, weight: w, bias: nil, rows: B * G * G, inFeatures: C * P * P,
            outFeatures: D)
        var direct = [Float](repeating: 0, count: B * G * G * D)
        for b in 0..<B {
            for gy in 0..<G {
                for gx in 0..<G {
                    for d in 0..<D {
                        var s: Float = 0
                        for c in 0..<C {
                            for py in 0..<P {
                                for px in 0..<P {
                                    s +=
                                        w[((d * C + c) * P + py) * P + px]
                                        * img[((b * C + c) * S + gy * P + py) * S + gx * P + px]
                                }
                            }
                        }
                        direct[((b * G + gy) * G + gx) * D + d] = s
                    }
                }
            }
        }
        let d = elementwise("conv", y, direct, rtol: 1e-5, atol: 1e-5)
        XCTAssert(d.score <= 1, "\(d)")
    }
}
