import Foundation
import FoundationXML
import Training
import XCTest

/// The 64-bit LCG (Knuth's MMIX constants) that also generated the scikit-learn references;
/// `next24` returns the top 24 bits, so `Float(k) / 2^24` is exact in both languages.
private struct LCG {
    var state: UInt64
    mutating func next24() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 40
    }
}

/// Average precision against hand computations, scikit-learn 1.9.1 and a naive reference.
final class AveragePrecisionTests: XCTestCase {
    /// Reference values are from `sklearn.metrics.average_precision_score(y, scores)`; the hand
    /// fractions are Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct thresholds.
    func testSmallCasesMatchHandAndScikitLearn() {
        let cases:
            [(name: String, scores: [Float], positives: [Int], hand: Double, sklearn: Double)] = [
                // 0.8 (+): R ½ P 1; 0.4 (−); 0.35 (+): R 1 P ⅔  →  ½ + ⅓
                (
                    "doc", [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 1.0 / 2 + 1.0 / 3,
                    0.8333333333333333
                ),
                // one threshold at 0.5 holds both positives and a negative: R 1 P ⅔
                ("ties", [0.5, 0.5, 0.5, 0.2], [1, 0, 1, 0], 2.0 / 3, 0.6666666666666666),
                // every score tied: AP is the prevalence
                ("all tied", [0.3, 0.3, 0.3, 0.3, 0.3], [0, 1, 0, 1, 0], 2.0 / 5, 0.4),
                // the only positive ranked third
                ("single", [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0], 1.0 / 3, 0.3333333333333333),
                // 1 (−); 0.5 (+,−,+): R ⅔ P ½; 0 (+): R 1 P ⅗  →  ⅓ + ⅕
                (
                    "mixed", [1, 0.5, 0.5, 0.5, 0], [0, 1, 0, 1, 1], 1.0 / 3 + 1.0 / 5,
                    0.5333333333333333
                ),
                ("all positive", [0.2, 0.9, 0.4], [1, 1, 1], 1, 1.0),
                ("worst", [0.9, 0.8, 0.7, 0.1], [0, 0, 0, 1], 1.0 / 4, 0.25),
                // -0.0 and 0.0 tie: the same as "mixed"
                (
                    "signed zeros", [2, 1, -1, 0, -0.0], [0, 1, 1, 0, 1], 1.0 / 3 + 1.0 / 5,
                    0.5333333333333333
                ),
            ]
        for c in cases {
            let ap = AveragePrecision.averagePrecision(
                scores: c.scores, positives: c.positives.map { $0 == 1 })
            XCTAssertEqual(ap ?? -1, c.hand, accuracy: 1e-15, c.name)
            XCTAssertEqual(ap ?? -1, c.sklearn, accuracy: 1e-15, c.name)
        }
    }

    func testNoPositiveIsNil() {
        XCTAssertNil(
            AveragePrecision.averagePrecision(scores: [0.3, 0.9], positives: [false, false]))
        XCTAssertNil(AveragePrecision.averagePrecision(scores: [], positives: []))
    }

    /// Scores that scikit-learn rejects: infinities are ordinary scores, NaN ranks last.
    func testInfinityAndNaN() {
        // The "signed zeros" case with the extremes replaced by infinities.
        let infinite = AveragePrecision.averagePrecision(
            scores: [.infinity, 1, -.infinity, 0, -0.0],
            positives: [false, true, true, false, true])
        XCTAssertEqual(infinite ?? -1, 1.0 / 3 + 1.0 / 5, accuracy: 1e-15)
        // 0.5 (−), 0.2 (−), NaN (+): the positive is found at rank 3.
        let nan = AveragePrecision.averagePrecision(
            scores: [.nan, 0.5, 0.2], positives: [true, false, false])
        XCTAssertEqual(nan ?? -1, 1.0 / 3, accuracy: 1e-15)
        // All NaNs form one threshold below -infinity.
        let nans = AveragePrecision.averagePrecision(
            scores: [.nan, -.infinity, .nan, .nan], positives: [true, false, false, true])
        XCTAssertEqual(nans ?? -1, 2.0 / 4, accuracy: 1e-15)
    }

    func testTiedOrderDoesNotMatter() {
        let scores: [Float] = [0.7, 0.4, 0.4, 0.4, 0.4, 0.1, 0.4]
        let positives = [false, true, false, false, true, true, false]
        let reference = AveragePrecision.averagePrecision(scores: scores, positives: positives)
        let order = [6, 3, 2, 0, 5, 4, 1]
        let permuted = AveragePrecision.averagePrecision(
            scores: order.map { scores[$0] }, positives: order.map { positives[$0] })
        XCTAssertEqual(reference, permuted)
    }

    /// A 200 × 7 matrix from the LCG; class 1 has 8 score levels and class 2 four (many ties),
    /// class 4 a single positive, class 5 all scores tied and class 6 no positive. The expected
    /// values are `average_precision_score(Y[:, c], S[:, c])` from scikit-learn 1.9.1.
    func testRandomMatrixMatchesScikitLearn() {
        let (images, classes) = (200, 7)
        let prevalence = [0.3, 0.1, 0.5, 0.02, 0.0, 0.25, 0.0]
        var rng = LCG(state: 20_240_611)
        var scores = [Float](repeating: 0, count: images * classes)
        var labels = [[UInt32]](repeating: [], count: images)
        for i in 0..<images {
            for c in 0..<classes {
                let u = rng.next24()
                var k = rng.next24()
                var positive = (u >> 14) < UInt64(prevalence[c] * 1024)
                if c == 4 { positive = i == 17 }
                if positive && [0, 1, 3].contains(c) { k = min(k + (1 << 22), (1 << 24) - 1) }
                if c == 1 { k = (k >> 21) << 21 }
                if c == 2 { k = (k >> 22) << 22 }
                if c == 5 { k = 1 << 23 }
                scores[i * classes + c] = Float(k) / 16_777_216
                if positive { labels[i].append(UInt32(c)) }
            }
        }
        // The generator agrees with the Python one.
        XCTAssertEqual(scores.reduce(0.0) { $0 + Double($1) }, 690.4123169183731, accuracy: 1e-9)
        XCTAssertEqual(scores[0], 0.9472631812095642)
        XCTAssertEqual(scores[199 * classes + 3], 0.7771417498588562)
        let counts = (0..<classes).map { c in labels.filter { $0.contains(UInt32(c)) }.count }
        XCTAssertEqual(counts, [70, 15, 103, 2, 1, 44, 0])

        let sklearn: [Double?] = [
            0.6352904467000597, 0.1516251732165225, 0.5464584121380238, 0.012775976532345221,
            0.023809523809523808, 0.22, nil,
        ]
        let result = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: labels, classes: classes)
        }
        XCTAssertEqual(result.classesEvaluated, 6)
        XCTAssertEqual(result.map, 0.2649932553994125, accuracy: 1e-12)
        XCTAssertEqual(result.perClass.count, classes)
        for c in 0..<classes {
            if let expected = sklearn[c] {
                XCTAssertEqual(result.perClass[c] ?? -1, expected, accuracy: 1e-12, "class \(c)")
            } else {
                XCTAssertNil(result.perClass[c], "class \(c)")
            }
            // The one-class function gives the same number.
            let column = (0..<images).map { scores[$0 * classes + c] }
            let positives = labels.map { $0.contains(UInt32(c)) }
            XCTAssertEqual(
                AveragePrecision.averagePrecision(scores: column, positives: positives),
                result.perClass[c])
        }
    }

    /// Straight from the definition: for each distinct score, count what is at or above it.
    private func naiveAP(_ scores: [Float], _ positives: [Bool]) -> Double? {
        let total = positives.filter { $0 }.count
        guard total > 0 else { return nil }
        var sum = 0.0
        var previousRecall = 0.0
        for threshold in Set(scores).sorted(by: >) {
            let above = scores.indices.filter { scores[$0] >= threshold }
            let truePositives = above.filter { positives[$0] }.count
            let recall = Double(truePositives) / Double(total)
            sum += (recall - previousRecall) * Double(truePositives) / Double(above.count)
            previousRecall = recall
        }
        return sum
    }

    /// Large enough (over 2^20 scores) to take the parallel path; checks a naive reference on
    /// some classes, the one-class function on all, and bitwise repeatability.
    func testParallelMAPMatchesReferenceAndIsDeterministic() {
        let (images, classes) = (600, 1800)
        var rng = LCG(state: 7)
        var scores = [Float](repeating: 0, count: images * classes)
        var labels = [[UInt32]](repeating: [], count: images)
        var isPositive = [Bool](repeating: false, count: images * classes)
        for i in 0..<images {
            for c in 0..<classes {
                // Class c has prevalence about c / (4 · classes); scores have 64 levels (ties).
                let positive = rng.next24() % UInt64(4 * classes) < UInt64(c)
                let k = (rng.next24() >> 18) + (positive ? 16 : 0)
                scores[i * classes + c] = Float(k) / 80
                isPositive[i * classes + c] = positive
                if positive { labels[i].append(UInt32(c)) }
            }
        }
        labels[3].append(labels[3].first ?? 5)  // a duplicate label counts once
        let first = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: labels, classes: classes)
        }
        let second = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: labels, classes: classes)
        }
        XCTAssertEqual(first.map.bitPattern, second.map.bitPattern)
        XCTAssertEqual(first.perClass, second.perClass)

        var sum = 0.0
        var evaluated = 0
        for c in 0..<classes {
            let column = (0..<images).map { scores[$0 * classes + c] }
            let positives = (0..<images).map { isPositive[$0 * classes + c] }
            let single = AveragePrecision.averagePrecision(scores: column, positives: positives)
            XCTAssertEqual(first.perClass[c], single, "class \(c)")
            if c % 97 == 0 || c == 1 {
                let naive = naiveAP(column, positives)
                XCTAssertEqual(naive == nil, single == nil, "class \(c)")
                XCTAssertEqual(single ?? 0, naive ?? 0, accuracy: 1e-12, "class \(c)")
            }
            if let ap = single {
                sum += ap
                evaluated += 1
            }
        }
        XCTAssertNil(first.perClass[0])  // prevalence 0
        XCTAssertEqual(first.classesEvaluated, evaluated)
        XCTAssertEqual(first.map, sum / Double(evaluated), accuracy: 1e-12)
    }

    func testMAPSkipsClassesWithoutPositives() {
        // 4 images × 3 classes; class 1 has no positive; image 2 lists class 2 twice.
        let scores: [Float] = [
            0.9, 0.5, 0.1,
            0.2, 0.4, 0.8,
            0.6, 0.3, 0.7,
            0.1, 0.2, 0.3,
        ]
        let labels: [[UInt32]] = [[0], [2], [2, 2, 0], []]
        let result = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: labels, classes: 3)
        }
        // Class 0: 0.9 (+), 0.6 (+) → 1. Class 2: 0.8 (+), 0.7 (+) → 1.
        XCTAssertEqual(result.perClass[0] ?? -1, 1, accuracy: 1e-15)
        XCTAssertNil(result.perClass[1])
        XCTAssertEqual(result.perClass[2] ?? -1, 1, accuracy: 1e-15)
        XCTAssertEqual(result.classesEvaluated, 2)
        XCTAssertEqual(result.map, 1, accuracy: 1e-15)

        let none = [Float]().withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: [], classes: 4)
        }
        XCTAssertEqual(none.map, 0)
        XCTAssertEqual(none.classesEvaluated, 0)
        XCTAssertEqual(none.perClass, [nil, nil, nil, nil])
    }

    func testFrequencyBaselineEqualsMAPOfConstantScores() {
        let (images, classes) = (300, 40)
        var rng = LCG(state: 99)
        var labels = [[UInt32]](repeating: [], count: images)
        for i in 0..<images {
            for c in 0..<classes where rng.next24() % 100 < UInt64(c % 10) {
                labels[i].append(UInt32(c))
            }
        }
        labels[7] += labels[7]  // duplicates count once
        let trainCounts = (0..<classes).map { _ in Int(rng.next24() % 5000) }
        let baseline = AveragePrecision.frequencyBaseline(
            trainCounts: trainCounts, labels: labels, classes: classes)

        var scores = [Float](repeating: 0, count: images * classes)
        for i in 0..<images {
            for c in 0..<classes { scores[i * classes + c] = Float(trainCounts[c]) }
        }
        let constant = scores.withUnsafeBufferPointer {
            AveragePrecision.meanAveragePrecision(scores: $0, labels: labels, classes: classes)
        }
        XCTAssertEqual(baseline, constant.map, accuracy: 1e-15)
        XCTAssertLessThan(constant.classesEvaluated, classes)  // classes 0, 10, 20, 30 are empty

        // The closed form: mean prevalence over classes with a positive.
        var prevalences: [Double] = []
        for c in 0..<classes {
            let count = labels.filter { $0.contains(UInt32(c)) }.count
            if count > 0 { prevalences.append(Double(count) / Double(images)) }
        }
        XCTAssertEqual(
            baseline, prevalences.reduce(0, +) / Double(prevalences.count), accuracy: 1e-15)
        XCTAssertEqual(
            AveragePrecision.frequencyBaseline(trainCounts: [1, 2], labels: [[], []], classes: 2), 0
        )
    }
}

/// The SVG loss chart and the smoothing.
final class LossCurveTests: XCTestCase {
    func testSmoothedIsDebiasedEMA() {
        let points: [(x: Double, y: Double)] = [(1, 1), (2, 2), (3, 3)]
        let smooth = LossCurve.smoothed(points, weight: 0.5)
        // m = 0.5, 1.25, 2.125; debiased by 1 − 0.5ⁿ.
        let expected = [1, 1.25 / 0.75, 2.125 / 0.875]
        XCTAssertEqual(smooth.map(\.x), [1, 2, 3])
        for (s, e) in zip(smooth.map(\.y), expected) { XCTAssertEqual(s, e, accuracy: 1e-12) }

        // Non-finite points are skipped and do not count towards the debiasing.
        let gappy = LossCurve.smoothed(
            [(1, 1), (2, .nan), (3, 3), (.infinity, 4), (5, -.infinity)], weight: 0.5)
        XCTAssertEqual(gappy.map(\.x), [1, 3])
        XCTAssertEqual(gappy[1].y, 1.75 / 0.75, accuracy: 1e-12)

        let constant = LossCurve.smoothed((0..<1000).map { (Double($0), 2.5) })
        XCTAssertTrue(constant.allSatisfy { abs($0.y - 2.5) < 1e-9 })
        let identity = LossCurve.smoothed(points, weight: 0)
        XCTAssertEqual(identity.map(\.y), [1, 2, 3])
        XCTAssertTrue(LossCurve.smoothed([]).isEmpty)
    }

    /// Parses the SVG and checks every coordinate attribute is a finite number inside the image.
    private func checkSVG(
        _ svg: String, width: Double = 720, height: Double = 405, _ message: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> XMLDocument {
        let lower = svg.lowercased()
        XCTAssertFalse(lower.contains("nan"), "NaN text: \(message)", file: file, line: line)
        XCTAssertFalse(lower.contains("inf"), "infinity text: \(message)", file: file, line: line)
        let document = try XMLDocument(data: Data(svg.utf8))
        let root = try XCTUnwrap(document.rootElement(), file: file, line: line)
        XCTAssertEqual(root.name, "svg", file: file, line: line)
        var numbers: [Double] = []
        func visit(_ element: XMLElement) {
            for attribute in element.attributes ?? [] {
                guard let name = attribute.name, let value = attribute.stringValue else { continue }
                switch name {
                case "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "width", "height":
                    numbers.append(Double(value) ?? .nan)
                case "points":
                    for pair in value.split(separator: " ") {
                        let xy = pair.split(separator: ",")
                        XCTAssertEqual(xy.count, 2, message, file: file, line: line)
                        numbers += xy.map { Double($0) ?? .nan }
                    }
                default: break
                }
            }
            for case let child as XMLElement in element.children ?? [] { visit(child) }
        }
        visit(root)
        XCTAssertFalse(numbers.isEmpty, message, file: file, line: line)
        for n in numbers {
            XCTAssertTrue(
                n.isFinite && n >= -1 && n <= max(width, height) + 1, "\(n): \(message)",
                file: file, line: line)
        }
        return document
    }

    private func elements(_ document: XMLDocument, _ xpath: String) throws -> [XMLElement] {
        try document.nodes(forXPath: xpath).compactMap { $0 as? XMLElement }
    }

    /// An attribute by name (`attribute(forName:)` misses attributes of namespaced elements
    /// in swift-corelibs-foundation).
    private func attribute(_ element: XMLElement, _ name: String) -> String? {
        element.attributes?.first { $0.name == name }?.stringValue
    }

    func testRawAndSmoothedChart() throws {
        var rng = LCG(state: 3)
        let raw: [(x: Double, y: Double)] = (1...5000).map { step in
            let noise = Double(rng.next24()) / 16_777_216 - 0.5
            return (Double(step), 7 * exp(-Double(step) / 800) + 2 + 0.6 * noise)
        }
        let smooth = LossCurve.smoothed(raw, weight: 0.95)
        let svg = LossCurve.svg(
            series: [("train loss", raw), ("train loss (smoothed)", smooth)],
            title: "ViT-Ti/16 pretraining", xLabel: "step", yLabel: "BCE loss")
        let document = try checkSVG(svg, "raw and smoothed")
        let lines = try elements(document, "//*[local-name()='polyline']")
        XCTAssertEqual(lines.count, 2)
        for line in lines {
            let count = attribute(line, "points")?.split(separator: " ").count ?? 0
            XCTAssertGreaterThan(count, 1000)
            XCTAssertLessThanOrEqual(count, 2000)
        }
        // The noisy raw series is drawn first, thin and translucent, under the smoothed one.
        XCTAssertEqual(attribute(lines[0], "stroke-opacity"), "0.45")
        XCTAssertNil(attribute(lines[1], "stroke-opacity"))
        XCTAssertNotEqual(
            attribute(lines[0], "stroke"), attribute(lines[1], "stroke"))
        for axis in ["xtick", "ytick"] {
            let labels = try elements(document, "//*[@class='\(axis)']").compactMap(\.stringValue)
            XCTAssertTrue((4...6).contains(labels.count), "\(axis): \(labels)")
            XCTAssertEqual(Set(labels).count, labels.count, "\(axis): \(labels)")
        }
        let text = try elements(document, "//*[local-name()='text']").compactMap(\.stringValue)
        for expected in [
            "ViT-Ti/16 pretraining", "step", "BCE loss", "train loss", "train loss (smoothed)",
        ] {
            XCTAssertTrue(text.contains(expected), expected)
        }
    }

    func testEdgeCasesStayFinite() throws {
        let many: [(x: Double, y: Double)] = (0..<300_000).map {
            (i: Int) -> (x: Double, y: Double) in
            let x = Double(i)
            return (x, Double(i % 17) + 1 / (x + 1))
        }
        let cases: [(String, [(name: String, points: [(x: Double, y: Double)])])] = [
            ("no series", []),
            ("empty series", [("empty", []), ("also empty", [])]),
            ("one point", [("one", [(3, 2.5)])]),
            ("one point at zero", [("zero", [(0, 0)])]),
            ("all equal y", [("flat", (0..<50).map { (Double($0), 4.0) })]),
            ("all equal x", [("vertical", (0..<50).map { (7.0, Double($0)) })]),
            (
                "non-finite y",
                [
                    (
                        "gaps",
                        [(0, 1), (1, .nan), (2, .infinity), (3, -.infinity), (4, 0.5), (.nan, 3)]
                    )
                ]
            ),
            ("only non-finite", [("bad", [(0, .nan), (1, .infinity)])]),
            ("huge count", [("many", many), ("smooth", LossCurve.smoothed(many))]),
            ("tiny range", [("tiny", (0..<10).map { (Double($0), 1 + Double($0) * 1e-13) })]),
            ("tiny values", [("tiny", (0..<10).map { (Double($0) * 1e-9, Double($0) * 3e-12) })]),
            ("huge values", [("huge", [(-1e300, 1e300), (1e300, -1e300), (0, 1e308)])]),
            ("negative", [("neg", (0..<30).map { (Double(-$0), -Double($0 * $0)) })]),
            ("large steps", [("steps", (0..<200).map { (Double($0) * 1000, 1 / Double($0 + 1)) })]),
            (
                "twelve series",
                (0..<12).map { s in ("s\(s)", (0..<5).map { (Double($0), Double(s + $0)) }) }
            ),
            (
                "awkward names",
                [
                    ("<b>&amp;\"quoted\"'s\u{0}\u{7}\ttab\nline", [(0, 1), (1, 2)]),
                    ("", [(0, 2), (1, 1)]),
                ]
            ),
        ]
        for (name, series) in cases {
            let svg = LossCurve.svg(
                series: series, title: "edge case: <\(name)> & \"more\"", xLabel: "step ’ü",
                yLabel: "loss \u{1}")
            let document = try checkSVG(svg, name)
            for axis in ["xtick", "ytick"] {
                let labels = try elements(document, "//*[@class='\(axis)']").compactMap(
                    \.stringValue)
                XCTAssertTrue((4...6).contains(labels.count), "\(name) \(axis): \(labels)")
                XCTAssertEqual(Set(labels).count, labels.count, "\(name) \(axis): \(labels)")
            }
            for line in try elements(document, "//*[local-name()='polyline']") {
                let count = attribute(line, "points")?.split(separator: " ").count ?? 0
                XCTAssertLessThanOrEqual(count, 2000, name)
            }
        }
        let tiny = LossCurve.svg(
            series: [("a", [(0, 1), (1, 2)])], title: "t", xLabel: "x", yLabel: "y", width: 10,
            height: 0)
        _ = try checkSVG(tiny, width: 240, height: 160, "tiny canvas")
        let escaped = LossCurve.svg(
            series: [("a&b", [(0, 1)])], title: "<title>", xLabel: "x", yLabel: "y")
        XCTAssertTrue(escaped.contains("&lt;title&gt;"))
        XCTAssertTrue(escaped.contains("a&amp;b"))
    }

    /// Ticks over many ranges: 4–6 of them, distinct labels, steps of 1, 2 or 5 × 10^k, and the
    /// axis covers the data.
    func testTicksAreNice() throws {
        var rng = LCG(state: 11)
        for trial in 0..<300 {
            let scale = pow(10, Double(Int(rng.next24() % 13)) - 6)
            let a = (Double(rng.next24()) / 16_777_216 - 0.3) * scale
            let b = a + Double(rng.next24() % 1000 + 1) / 1000 * scale * (trial % 3 == 0 ? 0.01 : 1)
            let svg = LossCurve.svg(
                series: [("r", [(a, a), (b, b)])], title: "t", xLabel: "x", yLabel: "y")
            XCTAssertFalse(svg.lowercased().contains("nan") || svg.lowercased().contains("inf"))
            let labels = svg.components(separatedBy: "class=\"ytick\"").dropFirst().map {
                String($0.split(separator: ">")[1].split(separator: "<")[0])
            }
            XCTAssertTrue((4...6).contains(labels.count), "[\(a), \(b)]: \(labels)")
            XCTAssertEqual(Set(labels).count, labels.count, "[\(a), \(b)]: \(labels)")
            let values = labels.compactMap(Double.init)
            guard values.count == labels.count, values.count >= 2 else { continue }  // k/M suffixes
            // Ticks cover the data or lie inside it.
            XCTAssertTrue(
                values.first! <= a + (b - a) * 0.5 && values.last! >= b - (b - a) * 0.5, "\(labels)"
            )
            let step = (values.last! - values.first!) / Double(values.count - 1)
            let mantissa = step / pow(10, floor(log10(step)))
            XCTAssertTrue(
                [1, 2, 5, 10].contains { abs(mantissa - $0) < 1e-3 }, "step \(step): \(labels)")
        }
    }
}
