import Foundation
import ViT

/// The paper's transfer protocol in small: multinomial logistic regression on frozen
/// embeddings. Features are standardised with the training set's mean and deviation; the
/// weights are fitted by full-batch Adam on the mean cross-entropy plus an L2 penalty.
public struct LinearProbe {
    /// Classes.
    public let classes: Int
    /// Feature width.
    public let dim: Int
    /// Weights (classes x dim) and biases, on standardised features.
    public private(set) var weights: [Float]
    /// Biases.
    public private(set) var biases: [Float]
    private var mean: [Float]
    private var invStd: [Float]

    /// Fits a probe to `features` (n x dim, row-major) with labels in 0..<classes.
    public init(features: [Float], labels: [Int], classes: Int, dim: Int, iterations: Int = 300, lr: Float = 0.01, weightDecay: Float = 1e-4) {
        precondition(classes > 0 && dim > 0 && features.count == labels.count * dim)
        self.classes = classes
        self.dim = dim
        let n = labels.count
        var mean = [Float](repeating: 0, count: dim), sq = [Float](repeating: 0, count: dim)
        for i in 0..<n { for j in 0..<dim { mean[j] += features[i * dim + j] } }
        for j in 0..<dim { mean[j] /= Float(max(n, 1)) }
        for i in 0..<n { for j in 0..<dim { let d = features[i * dim + j] - mean[j]; sq[j] += d * d } }
        self.mean = mean
        invStd = sq.map { 1 / max(($0 / Float(max(n, 1))).squareRoot(), 1e-6) }
        weights = [Float](repeating: 0, count: classes * dim)
        biases = [Float](repeating: 0, count: classes)
        guard n > 0 else { return }
        let x = standardised(features)
        var mW = weights, vW = weights, mB = biases, vB = biases
        var logits = [Float](repeating: 0, count: n * classes)
        var gradW = [Float](repeating: 0, count: classes * dim)
        for t in 1...max(iterations, 1) {
            scores(x, n: n, into: &logits)
            // softmax - one-hot, averaged over the batch
            var gradB = [Float](repeating: 0, count: classes)
            for i in 0..<n {
                let row = i * classes
                var top = -Float.infinity
                for c in 0..<classes { top = max(top, logits[row + c]) }
                var sum: Float = 0
                for c in 0..<classes { logits[row + c] = exp(logits[row + c] - top); sum += logits[row + c] }
                for c in 0..<classes { logits[row + c] = logits[row + c] / sum / Float(n) }
                logits[row + labels[i]] -= 1 / Float(n)
                for c in 0..<classes { gradB[c] += logits[row + c] }
            }
            // gradW (classes x dim) = P^T (classes x n) X (n x dim)
            logits.withUnsafeBufferPointer { p in
                x.withUnsafeBufferPointer { xp in
                    gradW.withUnsafeMutableBufferPointer { g in
                        Gemm.multiply(
                            transA: true, transB: false, m: classes, n: dim, k: n, a: p.baseAddress!, lda: classes,
                            b: xp.baseAddress!, ldb: dim, c: g.baseAddress!, ldc: dim)
                    }
                }
            }
            let (b1, b2): (Float, Float) = (0.9, 0.999)
            let c1 = 1 - pow(b1, Float(t)), c2 = 1 - pow(b2, Float(t))
            for k in weights.indices {
                let g = gradW[k] + weightDecay * weights[k]
                mW[k] = b1 * mW[k] + (1 - b1) * g
                vW[k] = b2 * vW[k] + (1 - b2) * g * g
                weights[k] -= lr * (mW[k] / c1) / ((vW[k] / c2).squareRoot() + 1e-8)
            }
            for c in 0..<classes {
                mB[c] = b1 * mB[c] + (1 - b1) * gradB[c]
                vB[c] = b2 * vB[c] + (1 - b2) * gradB[c] * gradB[c]
                biases[c] -= lr * (mB[c] / c1) / ((vB[c] / c2).squareRoot() + 1e-8)
            }
        }
    }

    private func standardised(_ features: [Float]) -> [Float] {
        var x = features
        for i in 0..<(x.count / dim) { for j in 0..<dim { x[i * dim + j] = (x[i * dim + j] - mean[j]) * invStd[j] } }
        return x
    }

    private func scores(_ x: [Float], n: Int, into out: inout [Float]) {
        x.withUnsafeBufferPointer { xp in
            weights.withUnsafeBufferPointer { w in
                biases.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { o in
                        Gemm.multiply(
                            transA: false, transB: true, m: n, n: classes, k: dim, a: xp.baseAddress!, lda: dim,
                            b: w.baseAddress!, ldb: dim, c: o.baseAddress!, ldc: classes, bias: b.baseAddress!)
                    }
                }
            }
        }
    }

    /// Class scores (n x classes) of `features` (n x dim).
    public func predict(_ features: [Float]) -> [Float] {
        let n = features.count / dim
        var out = [Float](repeating: 0, count: n * classes)
        if n > 0 { scores(standardised(features), n: n, into: &out) }
        return out
    }
}
