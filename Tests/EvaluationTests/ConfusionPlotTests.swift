import Evaluation
import FoundationXML
import XCTest

final class ConfusionPlotTests: XCTestCase {
    /// Well-formed SVG with one shaded cell per non-zero count, names escaped, and any size.
    func testShadedCellsAndEscapedNames() throws {
        let classes = ["dog", "cat & <mouse>", "\"quoted\"\u{1}"]
        let confusion = [[3, 1, 0], [0, 0, 0], [2, 0, 5]]
        let svg = ConfusionPlot.svg(classes: classes, confusion: confusion, title: "t <1>")
        let document = try XMLDocument(data: Data(svg.utf8))
        let root = try XCTUnwrap(document.rootElement())
        let shaded = (root.children ?? []).compactMap { $0 as? XMLElement }.filter { $0.name == "rect" && $0.children?.isEmpty == false }
        XCTAssertEqual(shaded.count, 4, "one rect with a tooltip per non-zero cell")
        XCTAssertTrue(svg.contains("cat &amp; &lt;mouse&gt;"))
        XCTAssertTrue(svg.contains("dog -> cat &amp; &lt;mouse&gt;: 1 of 4"), svg)
        for n in [1, 59, 250] {
            let big = ConfusionPlot.svg(classes: (0..<n).map { "c\($0)" }, confusion: (0..<n).map { t in (0..<n).map { $0 == t ? 1 : 0 } }, title: "n")
            XCTAssertNoThrow(try XMLDocument(data: Data(big.utf8)), "\(n) classes")
            XCTAssertFalse(big.contains("nan"))
        }
    }
}
