import Evaluation
import XCTest

/// The logistic-regression probe against data whose answer is known.
final class LinearProbeTests: XCTestCase {
    /// Gaussian blobs around 3 centres in 8 dimensions (features offset and scaled, which the
    /// standardisation must undo): held-out points are classified almost perfectly, and a
    /// probe on shuffled labels does no better than chance on them.
    func testSeparatesBlobsAndNotNoise() {
        var state: UInt64 = 12345
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24)
        }
        func normal() -> Float { (-2 * log(max(uniform(), 1e-7))).squareRoot() * cos(2 * .pi * uniform()) }
        let dim = 8, classes = 3
        let centres: [[Float]] = (0..<classes).map { c in (0..<dim).map { j in j == c ? 3 : 0 } }
        func sample(_ n: Int) -> ([Float], [Int]) {
            var x: [Float] = [], y: [Int] = []
            for i in 0..<n {
                let c = i % classes
                y.append(c)
                for j in 0..<dim { x.append((centres[c][j] + normal()) * 40 + 1000) }
            }
            return (x, y)
        }
        let (trainX, trainY) = sample(300), (testX, testY) = sample(150)
        func accuracy(_ probe: LinearProbe) -> Double {
            let s = probe.predict(testX)
            var hits = 0
            for i in testY.indices {
                let row = s[(i * classes)..<((i + 1) * classes)]
                if row.firstIndex(of: row.max()!)! - i * classes == testY[i] { hits += 1 }
            }
            return Double(hits) / Double(testY.count)
        }
        let probe = LinearProbe(features: trainX, labels: trainY, classes: classes, dim: dim)
        XCTAssertGreaterThan(accuracy(probe), 0.93, "the Bayes error here is about 2%")
        // labels drawn independently of the features
        let random = trainY.map { _ in min(Int(uniform() * Float(classes)), classes - 1) }
        let noise = LinearProbe(features: trainX, labels: random, classes: classes, dim: dim)
        XCTAssertLessThan(accuracy(noise), 0.6)
    }
}
