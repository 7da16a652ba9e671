import COpenBLAS
import CViTSupport
import Dispatch
import Foundation

/// The engine's own single-precision matrix product, row-major with leading dimensions like
/// `cblas_sgemm`, plus two fused epilogues (a bias row and a residual matrix):
///
///     C (M, N) = alpha · op(A) · op(B) + beta · C + bias (N, every row) + residual (M, N)
///
/// Why not OpenBLAS: the products here have one small side (K or N is the model width, 192 for
/// ViT-Ti) or are tiny (one attention head), so OpenBLAS spends a tenth of its time packing A and
/// B and more in per-call set-up, and its kernel choice depends on OPENBLAS_CORETYPE. This one
/// never packs A: the micro-kernel broadcasts A straight from memory (any row and column stride,
/// so op(A) = A^T costs nothing), and it packs B only where that pays (B^T, or many rows of A
/// to share the packed panels). The micro-kernels (GemmKernels.swift) hold a 14×32 tile of C in
/// SIMD16 accumulators; k is blocked by 384 and n so that a packed block of B stays in L2.
///
/// `multiply` splits C over `Parallelism.threads` workers (rows when there are enough, else
/// columns); `multiplySerial` runs on the calling thread (for callers that are already
/// parallel, such as attention over (batch, head) pairs). Both are tested against
/// `Kernels.sgemmNaive`.
public enum Gemm {
    /// Rows of C per micro-kernel call (the tile is mr × 32, or mr × 16 at a narrow edge).
    static let mr = 14
    /// Block of k: A's tile (mr × kc floats) stays in L1 while B's block streams from L2.
    static let kc = 384
    /// Floats of packed B per block (512 KB, half of a Zen 4 L2).
    static let packBudget = 131_072
    /// Floats of workspace one serial product needs: a packed block of B, one 32-wide panel,
    /// and a packed block of A (`packA`).
    static let workspaceFloats = packBudget + 32 * kc + mr * kc

    /// C (M, N) = act(alpha · op(A) · op(B) + beta · C + bias + residual), split over the
    /// workers. op(A) is (M, K): A (M, K) with row stride lda, or A^T for A (K, M). op(B) is
    /// (K, N): B (K, N) with row stride ldb, or B^T for B (N, K). `bias` (N) is added to every
    /// row, `residual` (M, N, row stride ldr) elementwise, then `activation` applies; beta 0
    /// never reads C (it may hold NaN). C must not overlap the inputs.
    public static func multiply(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
        residual: UnsafePointer<Float>? = nil, ldr: Int = 0,
        activation: GemmActivation = .none, packedB: UnsafePointer<Float>? = nil
    ) {
        if m <= 0 || n <= 0 { return }
        if !useOwnKernels {
            multiplyThroughBLAS(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias, residual: residual,
                ldr: ldr, activation: activation, parallel: true)
            return
        }
        let threads = Parallelism.threads
        let ppacked = packedB.map { SendablePointer($0) }
        let work = m * n * max(k, 1)
        let (rsA, csA) = transA ? (1, lda) : (lda, 1)
        let (pa, pb, pc) = (SendablePointer(a), SendablePointer(b), SendablePointer(c))
        let epilogue = Epilogue(
            alpha: alpha, beta: beta, bias: bias, residual: residual, ldr: ldr,
            activation: activation)
        if threads > 1 && work >= 1 << 18 {
            let tiles = (m + mr - 1) / mr
            if tiles >= 4 * threads {
                // rows of C, in whole tiles; each worker packs the B panels it needs itself
                let parts = threads
                Parallelism.forParts(parts, costPerItem: 1 << 20) { part, _, _ in
                    let m0 = min(m, tiles * part / parts * mr)
                    let m1 = min(m, tiles * (part + 1) / parts * mr)
                    if m0 >= m1 { return }
                    ScratchPool.shared.withBuffer(count: workspaceFloats) { ws in
                        product(
                            m: m1 - m0, n: n, k: k, a: pa.p + m0 * rsA, rsA: rsA, csA: csA,
                            b: pb.p, ldb: ldb, transB: transB, c: pc.p + m0 * ldc, ldc: ldc,
                            epilogue: epilogue.shifted(row: m0, column: 0), workspace: ws,
                            packedB: ppacked?.p)
                    }
                }
                return
            }
            let panels = (n + 31) / 32
            if panels >= 2 * threads {
                // columns of C, in whole 32-wide panels
                let parts = threads
                Parallelism.forParts(parts, costPerItem: 1 << 20) { part, _, _ in
                    let n0 = min(n, panels * part / parts * 32)
                    let n1 = min(n, panels * (part + 1) / parts * 32)
                    if n0 >= n1 { return }
                    let bOffset = transB ? n0 * ldb : n0
                    ScratchPool.shared.withBuffer(count: workspaceFloats) { ws in
                        product(
                            m: m, n: n1 - n0, k: k, a: pa.p, rsA: rsA, csA: csA,
                            b: pb.p + bOffset, ldb: ldb, transB: transB, c: pc.p + n0, ldc: ldc,
                            epilogue: epilogue.shifted(row: 0, column: n0), workspace: ws,
                            packedB: ppacked.map { UnsafePointer($0.p + n0 * k) })
                    }
                }
                return
            }
        }
        ScratchPool.shared.withBuffer(count: workspaceFloats) { ws in
            product(
                m: m, n: n, k: k, a: a, rsA: rsA, csA: csA, b: b, ldb: ldb, transB: transB,
                c: c, ldc: ldc, epilogue: epilogue, workspace: ws, packedB: packedB)
        }
    }

    /// Whether the micro-kernels of this build run as vector FMA code. Release builds compiled
    /// for a CPU (`-target-cpu`, which Package.swift marks with CATLIP_VECTOR_KERNELS) on a
    /// processor with vector FMA do (about 100 GFLOP/s per core); debug builds and
    /// CATLIP_TARGET_CPU=generic ones compile SIMD16 arithmetic to scalar `fmaf` calls, about 100
    /// times slower than OpenBLAS's runtime-dispatched kernels, so `multiply` goes through
    /// OpenBLAS there (`multiplyThroughBLAS`). Decided by the build and the processor's
    /// features, never by timing, so which kernels run (and so the exact bits of a run) cannot
    /// depend on the machine's load at start-up.
    static let ownKernelsAreFast: Bool = {
        #if CATLIP_VECTOR_KERNELS
            return catlip_vector_fma_supported() != 0
        #else
            return false
        #endif
    }()

    /// Makes `multiply` use the micro-kernels even where they are slow (the tests of a debug
    /// build, which check them against the naive product).
    nonisolated(unsafe) static var forceOwnKernels = false

    static var useOwnKernels: Bool { forceOwnKernels || ownKernelsAreFast }

    /// `multiply` on OpenBLAS (single-threaded calls, rows split over the workers when
    /// `parallel`): the bias copied into C first (beta 0) or added after, the residual added
    /// after, the activation as a pass over the block of rows with the fast kernels' SIMD
    /// functions (so that a fused and an unfused GELU agree exactly).
    static func multiplyThroughBLAS(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?,
        residual: UnsafePointer<Float>?, ldr: Int, activation: GemmActivation, parallel: Bool
    ) {
        let (pa, pb, pc) = (SendablePointer(a), SendablePointer(b), SendablePointer(c))
        let pbias = bias.map { SendablePointer($0) }
        let pres = residual.map { SendablePointer($0) }
        let body: (Int, Int) -> Void = { m0, m1 in
            let rows = m1 - m0
            let cRows = pc.p + m0 * ldc
            var betaNow = beta
            if let pbias, beta == 0 {
                for i in 0..<rows { (cRows + i * ldc).update(from: pbias.p, count: n) }
                betaNow = 1
            } else if beta == 0 && k == 0 {
                for i in 0..<rows { (cRows + i * ldc).update(repeating: 0, count: n) }
            }
            if k > 0 {
                cblas_sgemm(
                    CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans, Int32(rows), Int32(n), Int32(k), alpha,
                    pa.p + (transA ? m0 : m0 * lda), Int32(lda), pb.p, Int32(ldb), betaNow,
                    cRows, Int32(ldc))
            } else if beta != 0 && beta != 1 {
                for i in 0..<rows {
                    for j in 0..<n { cRows[i * ldc + j] *= beta }
                }
            }
            for i in 0..<rows {
                let row = cRows + i * ldc
                if let pbias, beta != 0 { Kernels.addInPlace(row, pbias.p, count: n) }
                if let pres { Kernels.addInPlace(row, pres.p + (m0 + i) * ldr, count: n) }
            }
            for i in 0..<rows {
                let row = cRows + i * ldc
                switch activation {
                case .none: break
                case .geluOnly: geluRow(row, row, count: n)
                case .gelu(let out, let ld): geluRow(out + (m0 + i) * ld, row, count: n)
                case .geluBackward(let pre, let ld):
                    let x = pre + (m0 + i) * ld
                    var j = 0
                    while j < n {
                        let count = min(16, n - j)
                        let g = SIMDMath.loadPartial(row + j, count: count)
                        let d = SIMDMath.geluDerivative(SIMDMath.loadPartial(x + j, count: count))
                        SIMDMath.storePartial(g * d, row + j, count: count)
                        j += 16
                    }
                }
            }
        }
        if parallel {
            Parallelism.forRanges(m, costPerItem: n * max(k, 1), body)
        } else {
            body(0, m)
        }
    }

    /// out = GELU(x) over one row, 16 at a time (the last vector zero-padded).
    static func geluRow(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        var j = 0
        while j < count {
            let n = min(16, count - j)
            let y = SIMDMath.gelu(SIMDMath.loadPartial(x + j, count: n))
            SIMDMath.storePartial(y, out + j, count: n)
            j += 16
        }
    }

    /// Floats that `pack` writes for op(B) of (k, n).
    public static func packedCount(k: Int, n: Int) -> Int { k * ((n + 31) / 32 * 32) }

    /// Packs op(B) (k, n) once, for several products against the same B (`multiply`'s
    /// `packedB`; inference packs each weight once and multiplies it by every chunk of the
    /// batch): panels of 32 columns over the whole k, the last one 16 or 32 wide and
    /// zero-padded, panel q at 32·q·k. Panels are split over the workers.
    public static func pack(
        into dst: UnsafeMutablePointer<Float>, transB: Bool, k: Int, n: Int,
        b: UnsafePointer<Float>, ldb: Int
    ) {
        let (pd, pb) = (SendablePointer(dst), SendablePointer(b))
        Parallelism.forRanges((n + 31) / 32, costPerItem: 32 * k) { q0, q1 in
            let j0 = 32 * q0
            packPanels(
                pd.p + j0 * k, b: pb.p, ldb: ldb, transB: transB, p0: 0, kb: k, j0: j0,
                columns: min(n, 32 * q1) - j0)
        }
    }

    /// `multiply` on the calling thread, packing into `workspace` (`workspaceFloats` floats).
    public static func multiplySerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
        residual: UnsafePointer<Float>? = nil, ldr: Int = 0,
        activation: GemmActivation = .none, workspace: UnsafeMutablePointer<Float>
    ) {
        if m <= 0 || n <= 0 { return }
        if !useOwnKernels {
            multiplyThroughBLAS(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias, residual: residual,
                ldr: ldr, activation: activation, parallel: false)
            return
        }
        let (rsA, csA) = transA ? (1, lda) : (lda, 1)
        product(
            m: m, n: n, k: k, a: a, rsA: rsA, csA: csA, b: b, ldb: ldb, transB: transB, c: c,
            ldc: ldc,
            epilogue: Epilogue(
                alpha: alpha, beta: beta, bias: bias, residual: residual, ldr: ldr,
                activation: activation),
            workspace: workspace)
    }

    /// What happens to each product before it lands in C (see `multiply`), positioned at the
    /// top-left of the current sub-matrix.
    struct Epilogue: @unchecked Sendable {
        var alpha: Float
        var beta: Float
        var bias: UnsafePointer<Float>?
        var residual: UnsafePointer<Float>?
        var ldr: Int
        var activation: GemmActivation

        /// The epilogue of the sub-matrix starting at (row, column).
        func shifted(row: Int, column: Int) -> Epilogue {
            var e = self
            e.bias = bias.map { $0 + column }
            e.residual = residual.map { $0 + row * ldr + column }
            e.activation = activation.shifted(row: row, column: column)
            return e
        }

        /// The epilogue of a later block of k: C already holds the first blocks' sum, and the
        /// bias, residual and activation wait for the last block.
        var accumulating: Epilogue {
            Epilogue(alpha: alpha, beta: 1, bias: nil, residual: nil, ldr: 0, activation: .none)
        }

        /// The epilogue of a block of k that is not the last: bias, residual and activation
        /// wait (`beta` stays).
        var partial: Epilogue {
            Epilogue(alpha: alpha, beta: beta, bias: nil, residual: nil, ldr: 0, activation: .none)
        }

        /// One element: y = act(alpha · sum + beta · c + bias[j] + residual[i, j]).
        @inline(__always)
        func apply(_ sum: Float, c: Float, row i: Int, column j: Int) -> Float {
            var x = alpha * sum
            if beta != 0 { x += beta * c }
            if let bias { x += bias[j] }
            if let residual { x += residual[i * ldr + j] }
            switch activation {
            case .none: break
            // the SIMD functions on one lane: the same values as in a full tile
            case .gelu(let out, let ld): out[i * ld + j] = SIMDMath.gelu(SIMD16(repeating: x))[0]
            case .geluOnly: x = SIMDMath.gelu(SIMD16(repeating: x))[0]
            case .geluBackward(let pre, let ld):
                x *= SIMDMath.geluDerivative(SIMD16(repeating: pre[i * ld + j]))[0]
            }
            return x
        }
    }

    /// The blocked product on one thread, with op(A)(i, p) = a[i·rsA + p·csA].
    static func product(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, rsA: Int, csA: Int,
        b: UnsafePointer<Float>, ldb: Int, transB: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
        epilogue: Epilogue, workspace: UnsafeMutablePointer<Float>,
        packedB: UnsafePointer<Float>? = nil
    ) {
        if k <= 0 {
            // no products: the epilogue alone
            for i in 0..<m {
                for j in 0..<n {
                    c[i * ldc + j] = epilogue.apply(
                        0, c: epilogue.beta == 0 ? 0 : c[i * ldc + j], row: i, column: j)
                }
            }
            return
        }
        // a few columns past a multiple of 16 of a B^T product (attention's T = 16·q + 1): dot
        // products, instead of a 16-wide panel that is mostly padding
        let narrow = n % 16
        if transB && narrow > 0 && narrow <= 4 && n > 16 && packedB == nil {
            let n0 = n - narrow
            dotColumns(
                m: m, columns: narrow, k: k, a: a, rsA: rsA, csA: csA, b: b + n0 * ldb, ldb: ldb,
                c: c + n0, ldc: ldc, epilogue: epilogue.shifted(row: 0, column: n0))
            product(
                m: m, n: n0, k: k, a: a, rsA: rsA, csA: csA, b: b, ldb: ldb, transB: true, c: c,
                ldc: ldc, epilogue: epilogue, workspace: workspace)
            return
        }
        // B straight from memory only where its rows are contiguous and few rows of A share a
        // panel (packing costs one pass over B per worker; it pays back over many rows)
        let packAll = (transB || m >= 256) && packedB == nil
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * mr) { accBuffer in
            let acc = accBuffer.baseAddress!
            var p0 = 0
            while p0 < k {
                let kb = min(kc, k - p0)
                let blockEpilogue =
                    p0 == 0
                    ? (kb == k ? epilogue : epilogue.partial)
                    : (p0 + kb == k
                        ? Epilogue(
                            alpha: epilogue.alpha, beta: 1, bias: epilogue.bias,
                            residual: epilogue.residual, ldr: epilogue.ldr,
                            activation: epilogue.activation)
                        : epilogue.accumulating)
                let nb = max(32, packBudget / kb / 32 * 32)
                var j0 = 0
                while j0 < n {
                    let nw = min(nb, n - j0)
                    if packAll {
                        packPanels(
                            workspace, b: b, ldb: ldb, transB: transB, p0: p0, kb: kb, j0: j0,
                            columns: nw)
                    } else if nw % 16 != 0 && packedB == nil {
                        // only the ragged last panel: loads past it would leave the rows
                        let jt = nw / 32 * 32
                        packPanels(
                            workspace + jt * kb, b: b, ldb: ldb, transB: false, p0: p0, kb: kb,
                            j0: j0 + jt, columns: nw - jt)
                    }
                    var i0 = 0
                    while i0 < m {
                        let rows = min(mr, m - i0)
                        let aTile = a + i0 * rsA + p0 * csA
                        // a transposed A reads its rows a whole row of memory apart per step of
                        // k, lines that collide in a few L1 sets: packed once for its panels
                        let aPacked: UnsafePointer<Float>? =
                            csA != 1 && rows > 10 && nw > 32
                            ? packA(workspace + packBudget + 32 * kc, aTile, rsA: rsA, csA: csA, rows: rows, k: kb)
                            : nil
                        var jp = 0
                        while jp < nw {
                            let w = min(32, nw - jp)
                            let bp: UnsafePointer<Float>
                            let lb: Int
                            if let packedB {
                                // panel (j0 + jp) / 32 of the whole-k packing, from row p0
                                lb = w > 16 ? 32 : 16
                                bp = packedB + (j0 + jp) * k + p0 * lb
                            } else if packAll || (nw % 16 != 0 && jp + 32 > nw) {
                                bp = UnsafePointer(workspace + jp * kb)
                                lb = w > 16 ? 32 : 16
                            } else {
                                bp = b + p0 * ldb + j0 + jp
                                lb = ldb
                            }
                            let j = j0 + jp
                            // the next tile's lines of C (and of the matrices its epilogue
                            // reads or writes besides), so that they arrive while this tile
                            // computes
                            let (ni, nj) = jp + 32 < nw ? (i0, jp + 32) : (i0 + mr, 0)
                            if ni < m {
                                prefetchTile(
                                    c: c, ldc: ldc, row: ni, column: j0 + nj,
                                    rows: min(mr, m - ni), columns: min(32, nw - nj),
                                    epilogue: blockEpilogue)
                            }
                            if let aPacked {
                                if w > 16 {
                                    tile14x32Packed(acc, aPacked, bp, ldb: lb, k: kb)
                                } else {
                                    tile14x16Packed(acc, aPacked, bp, ldb: lb, k: kb)
                                }
                            } else {
                                tile(
                                    acc, aTile, rsA: rsA, csA: csA, rows: rows, bp, ldb: lb, k: kb,
                                    wide: w > 16)
                            }
                            storeTile(
                                acc, rows: rows, columns: w, vectors: w > 16 ? 2 : 1,
                                c: c + i0 * ldc + j, ldc: ldc,
                                epilogue: blockEpilogue.shifted(row: i0, column: j))
                            jp += 32
                        }
                        i0 += mr
                    }
                    j0 += nw
                }
                p0 += kb
            }
        }
    }

    /// The micro-kernel for a tile of `rows` (at most `mr`) rows, 32 columns wide (`wide`) or
    /// 16: the 14-row kernels, or for a short last block of rows the smallest of the 10-, 7- and
    /// 4-row ones that holds it (the same sums in the same order: results do not depend on the
    /// kernel).
    @inline(__always)
    static func tile(
        _ acc: UnsafeMutablePointer<SIMD16<Float>>, _ a: UnsafePointer<Float>, rsA: Int, csA: Int,
        rows: Int, _ b: UnsafePointer<Float>, ldb: Int, k: Int, wide: Bool
    ) {
        if wide {
            if rows > 10 {
                tile14x32(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else if rows > 7 {
                tile10x32(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else if rows > 4 {
                tile7x32(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else {
                tile4x32(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            }
        } else {
            if rows > 10 {
                tile14x16(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else if rows > 7 {
                tile10x16(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else if rows > 4 {
                tile7x16(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            } else {
                tile4x16(acc, a, rsA: rsA, csA: csA, rows: rows, b, ldb: ldb, k: k)
            }
        }
    }

    /// C (m, columns) = epilogue(op(A) · B^T) for B (columns, k) with row stride ldb, one dot
    /// product per element, four rows of A at a time (SIMD over k when A's rows are
    /// contiguous).
    static func dotColumns(
        m: Int, columns: Int, k: Int, a: UnsafePointer<Float>, rsA: Int, csA: Int,
        b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        epilogue: Epilogue
    ) {
        let vec = csA == 1 ? k / 16 * 16 : 0
        for j in 0..<columns {
            let col = b + j * ldb
            var i = 0
            while i < m {
                let count = min(4, m - i)
                // rows past m repeat the last one (computed, not stored)
                let r0 = a + i * rsA
                let r1 = a + min(i + 1, m - 1) * rsA
                let r2 = a + min(i + 2, m - 1) * rsA
                let r3 = a + min(i + 3, m - 1) * rsA
                var (s0, s1) = (SIMD16<Float>(), SIMD16<Float>())
                var (s2, s3) = (SIMD16<Float>(), SIMD16<Float>())
                var p = 0
                while p < vec {
                    let bv = SIMDMath.load(col + p)
                    s0 = s0.addingProduct(SIMDMath.load(r0 + p), bv)
                    s1 = s1.addingProduct(SIMDMath.load(r1 + p), bv)
                    s2 = s2.addingProduct(SIMDMath.load(r2 + p), bv)
                    s3 = s3.addingProduct(SIMDMath.load(r3 + p), bv)
                    p += 16
                }
                var sums = SIMD4<Float>(
                    SIMDMath.horizontalSum(s0), SIMDMath.horizontalSum(s1),
                    SIMDMath.horizontalSum(s2), SIMDMath.horizontalSum(s3))
                while p < k {
                    let bv = col[p]
                    sums += SIMD4(r0[p * csA], r1[p * csA], r2[p * csA], r3[p * csA]) * bv
                    p += 1
                }
                for r in 0..<count {
                    let e = c + (i + r) * ldc + j
                    e.pointee = epilogue.apply(
                        sums[r], c: epilogue.beta == 0 ? 0 : e.pointee, row: i + r, column: j)
                }
                i += 4
            }
        }
    }

    /// Copies A(r, p) = a[r·rsA + p·csA] for r < rows (at most `mr`), p < k into `dst` k-major,
    /// `mr` values per step of k (dst[mr·p + r]), rows past `rows` zero (their sums are dropped),
    /// for the Packed micro-kernels. Returns `dst`.
    static func packA(
        _ dst: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, rsA: Int, csA: Int, rows: Int, k: Int
    ) -> UnsafePointer<Float> {
        if rsA == 1 && rows == mr {
            // each step of k: mr consecutive values
            for p in 0..<k { (dst + p * mr).update(from: a + p * csA, count: mr) }
        } else {
            for p in 0..<k {
                let d = dst + p * mr
                for r in 0..<rows { d[r] = a[r * rsA + p * csA] }
                for r in rows..<mr { d[r] = 0 }
            }
        }
        return UnsafePointer(dst)
    }

    /// Copies op(B)(p0 ..< p0+kb, j0 ..< j0+columns) into panels of 32 columns (the last one 16
    /// or 32 wide, zero-padded), each kb rows of contiguous floats, panel q at dst + 32·q·kb.
    static func packPanels(
        _ dst: UnsafeMutablePointer<Float>, b: UnsafePointer<Float>, ldb: Int, transB: Bool,
        p0: Int, kb: Int, j0: Int, columns: Int
    ) {
        var jp = 0
        while jp < columns {
            let w = min(32, columns - jp)
            let pw = w > 16 ? 32 : 16
            let panel = dst + jp * kb
            if !transB {
                for p in 0..<kb {
                    let src = b + (p0 + p) * ldb + j0 + jp
                    let d = panel + p * pw
                    if w == pw {
                        SIMDMath.store(SIMDMath.load(src), d)
                        if pw == 32 { SIMDMath.store(SIMDMath.load(src + 16), d + 16) }
                    } else {
                        for j in 0..<w { d[j] = src[j] }
                        for j in w..<pw { d[j] = 0 }
                    }
                }
            } else {
                // op(B)(p, j) = b[j·ldb + p]: 8 x 8 blocks transposed in registers (C, AVX2;
                // 1-1.5% faster inference at batch 32 than four scalar gathers per step)
                catlip_pack_transposed(panel, b + (j0 + jp) * ldb + p0, ldb, kb, w, pw)
            }
            jp += 32
        }
    }

    /// Prefetches each 64-byte line of a C tile (rows, columns) for writing, so that the lines
    /// arrive while the micro-kernel runs; without it the tile's own stores at the end miss,
    /// fill the store queue, and the next call's register saves stall. (Stores of zeros did the
    /// same but waited in the store queue themselves.)
    @inline(__always)
    static func claimLines(_ c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ldc: Int) {
        for r in 0..<rows {
            let row = c + r * ldc
            var j = 0
            while j < columns {
                catlip_prefetch_write(row + j)
                j += 16
            }
            catlip_prefetch_write(row + columns - 1)
        }
    }

    /// Prefetches each 64-byte line of a tile (rows, columns) of x (row stride ld) for reading.
    @inline(__always)
    static func prefetchLines(_ x: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int) {
        for r in 0..<rows {
            let row = x + r * ld
            var j = 0
            while j < columns {
                catlip_prefetch_read(row + j)
                j += 16
            }
            catlip_prefetch_read(row + columns - 1)
        }
    }

    /// Prefetches the tile of C at (row, column) (rows, columns) for writing, and the same
    /// tile of the residual and of the activation's matrix when `epilogue` (positioned at C's
    /// top-left) uses them. Not inlined: `product`'s loop stays small.
    @inline(never)
    static func prefetchTile(
        c: UnsafeMutablePointer<Float>, ldc: Int, row: Int, column: Int, rows: Int,
        columns: Int, epilogue e: Epilogue
    ) {
        claimLines(c + row * ldc + column, rows: rows, columns: columns, ldc: ldc)
        if let res = e.residual {
            prefetchLines(res + row * e.ldr + column, rows: rows, columns: columns, ld: e.ldr)
        }
        switch e.activation {
        case .none, .geluOnly: break
        case .gelu(let out, let ld):
            claimLines(out + row * ld + column, rows: rows, columns: columns, ldc: ld)
        case .geluBackward(let pre, let ld):
            prefetchLines(pre + row * ld + column, rows: rows, columns: columns, ld: ld)
        }
    }

    /// C tile (rows, columns) = epilogue(acc), acc holding `vectors` SIMD16 per row; the
    /// epilogue is positioned at the tile. Not inlined: `product` stays small, and the plain
    /// case (no activation, full width) is a short loop of its own.
    @inline(never)
    static func storeTile(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, columns: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue
    ) {
        if columns != 16 * vectors {
            storeNarrowTile(
                acc, rows: rows, columns: columns, vectors: vectors, c: c, ldc: ldc, epilogue: e)
            return
        }
        switch e.activation {
        case .none: storePlain(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e)
        case .gelu(let out, let ld):
            storeGelu(
                acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e, out: out, ld: ld)
        case .geluOnly:
            storeGeluOnly(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e)
        case .geluBackward(let pre, let ld):
            storeGeluBackward(
                acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e, pre: pre, ld: ld)
        }
    }

    /// A tile narrower than its vectors: staged through zero-padded copies of C, the bias, the
    /// residual and the activation's matrix, so that every element takes the same SIMD path as
    /// in a full tile (results do not depend on where a tile edge falls).
    @inline(never)
    static func storeNarrowTile(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, columns: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue
    ) {
        let width = 16 * vectors
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * mr * 32 + 32) { buffer in
            let stage = buffer.baseAddress!
            stage.initialize(repeating: 0, count: 3 * mr * 32 + 32)
            // C, residual, activation matrix (rows × width each), bias (width)
            let (tc, tr) = (stage, stage + mr * 32)
            let (tx, tb) = (stage + 2 * mr * 32, stage + 3 * mr * 32)
            var staged = e
            if let bias = e.bias {
                tb.update(from: bias, count: columns)
                staged.bias = UnsafePointer(tb)
            }
            if let res = e.residual {
                for r in 0..<rows { (tr + r * width).update(from: res + r * e.ldr, count: columns) }
                staged.residual = UnsafePointer(tr)
                staged.ldr = width
            }
            if e.beta != 0 {
                for r in 0..<rows { (tc + r * width).update(from: c + r * ldc, count: columns) }
            }
            switch e.activation {
            case .none, .geluOnly: break
            case .gelu: staged.activation = .gelu(out: tx, ld: width)
            case .geluBackward(let pre, let ld):
                for r in 0..<rows { (tx + r * width).update(from: pre + r * ld, count: columns) }
                staged.activation = .geluBackward(preactivation: UnsafePointer(tx), ld: width)
            }
            storeTile(
                acc, rows: rows, columns: width, vectors: vectors, c: tc, ldc: width,
                epilogue: staged)
            for r in 0..<rows { (c + r * ldc).update(from: tc + r * width, count: columns) }
            if case .gelu(let out, let ld) = e.activation {
                for r in 0..<rows { (out + r * ld).update(from: tx + r * width, count: columns) }
            }
        }
    }

    @inline(never)
    static func storePlain(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue
    ) {
        storeRows(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e) { x, _, _ in x }
    }

    @inline(never)
    static func storeGelu(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue,
        out: UnsafeMutablePointer<Float>, ld: Int
    ) {
        storeRows(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e) { x, r, j in
            SIMDMath.store(SIMDMath.gelu(x), out + r * ld + j)
            return x
        }
    }

    @inline(never)
    static func storeGeluOnly(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue
    ) {
        storeRows(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e) { x, _, _ in
            SIMDMath.gelu(x)
        }
    }

    @inline(never)
    static func storeGeluBackward(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue,
        pre: UnsafePointer<Float>, ld: Int
    ) {
        storeRows(acc, rows: rows, vectors: vectors, c: c, ldc: ldc, epilogue: e) { x, r, j in
            x * SIMDMath.geluDerivative(SIMDMath.load(pre + r * ld + j))
        }
    }

    /// The full-width rows of `storeTile`, with the activation as `act(y, row, column)`: one
    /// specialised loop per activation (the GELU code inlines into a small function, where a
    /// switch per vector kept it out of line).
    @inline(__always)
    static func storeRows(
        _ acc: UnsafePointer<SIMD16<Float>>, rows: Int, vectors: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, epilogue e: Epilogue,
        _ act: (SIMD16<Float>, Int, Int) -> SIMD16<Float>
    ) {
        let (alpha, beta) = (SIMD16<Float>(repeating: e.alpha), SIMD16<Float>(repeating: e.beta))
        for r in 0..<rows {
            let row = c + r * ldc
            let res = e.residual.map { $0 + r * e.ldr }
            for v in 0..<vectors {
                var x = acc[r * vectors + v] * alpha
                if e.beta != 0 { x = x.addingProduct(beta, SIMDMath.load(row + 16 * v)) }
                if let bias = e.bias { x += SIMDMath.load(bias + 16 * v) }
                if let res { x += SIMDMath.load(res + 16 * v) }
                SIMDMath.store(act(x, r, 16 * v), row + 16 * v)
            }
        }
    }
}

/// An elementwise step fused into `Gemm`'s epilogue, applied to each y = alpha · acc + beta · C
/// + bias + residual while the tile is still in registers (saving a pass over the matrix).
public enum GemmActivation: @unchecked Sendable {
    /// C = y.
    case none
    /// C = y and out = GELU(y), out (M, N) with row stride ld: fc1 in training, which keeps the
    /// pre-activation for the backward pass.
    case gelu(out: UnsafeMutablePointer<Float>, ld: Int)
    /// C = GELU(y): fc1 in inference.
    case geluOnly
    /// C = y · GELU'(x) for x (M, N) with row stride ld: the MLP backward, dL/dfc1 from the
    /// product that gives dL/dgelu.
    case geluBackward(preactivation: UnsafePointer<Float>, ld: Int)

    /// The same step for the sub-matrix starting at (row, column).
    func shifted(row: Int, column: Int) -> GemmActivation {
        switch self {
        case .none, .geluOnly: return self
        case .gelu(let out, let ld): return .gelu(out: out + row * ld + column, ld: ld)
        case .geluBackward(let x, let ld):
            return .geluBackward(preactivation: x + row * ld + column, ld: ld)
        }
    }
}

/// Reusable float buffers for the products' packing (and other scratch), so that a training
/// step allocates nothing once the first one has grown the pool. Thread-safe: each caller holds
/// its buffer for the duration of `withBuffer`.
final class ScratchPool: @unchecked Sendable {
    static let shared = ScratchPool()

    private let lock = NSLock()
    private var free: [(pointer: UnsafeMutablePointer<Float>, count: Int)] = []

    /// Runs `body` with a buffer of at least `count` floats (contents unspecified, 64-byte
    /// aligned), returned to the pool afterwards.
    func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        lock.lock()
        var buffer: (pointer: UnsafeMutablePointer<Float>, count: Int)
        if let i = free.firstIndex(where: { $0.count >= count }) {
            buffer = free.remove(at: i)
        } else {
            if !free.isEmpty {
                // a too-small buffer is replaced, so the pool does not grow without bound
                let old = free.removeLast()
                UnsafeMutableRawPointer(old.pointer).deallocate()
            }
            let raw = UnsafeMutableRawPointer.allocate(
                byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
            buffer = (raw.bindMemory(to: Float.self, capacity: max(count, 1)), count)
        }
        lock.unlock()
        defer {
            lock.lock()
            free.append(buffer)
            lock.unlock()
        }
        return body(buffer.pointer)
    }
}
