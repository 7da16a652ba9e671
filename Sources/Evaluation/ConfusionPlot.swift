import Foundation
import Support

/// A confusion matrix as a picture for a person: an SVG heat map, rows the true classes and
/// columns the predicted ones, each cell shaded by its share of the row (so rare and frequent
/// classes read alike), the diagonal outlined, class names on both axes.
public enum ConfusionPlot {
    /// The SVG text; `confusion[truth][predicted]` counts, square, one row per class.
    public static func svg(classes: [String], confusion: [[Int]], title: String) -> String {
        let n = classes.count
        precondition(confusion.count == n && confusion.allSatisfy { $0.count == n }, "confusion must be classes x classes")
        let cell = n <= 20 ? 24 : n <= 60 ? 12 : n <= 200 ? 6 : 3
        let showNames = cell >= 6
        let labelSpace = showNames ? min(160, 6 * (classes.map(\.count).max() ?? 0) + 10) : 10
        let (left, top) = (labelSpace + 10, labelSpace + 40)
        let side = n * cell
        let (width, height) = (left + side + 20, top + side + 20)
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif">
            <rect width="\(width)" height="\(height)" fill="white"/>
            <text x="\(left)" y="20" font-size="14">\(XMLText.escape(title))</text>
            <text x="\(left)" y="34" font-size="10" fill="#555">rows: true class, columns: predicted; shade: share of the row</text>

            """
        for (t, row) in confusion.enumerated() {
            let total = row.reduce(0, +)
            guard total > 0 else { continue }
            for (p, count) in row.enumerated() where count > 0 {
                let share = Double(count) / Double(total)
                let level = Int((255 * (1 - share)).rounded())
                out += "<rect x=\"\(left + p * cell)\" y=\"\(top + t * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"rgb(\(level),\(level),255)\"><title>\(XMLText.escape(classes[t])) -> \(XMLText.escape(classes[p])): \(count) of \(total)</title></rect>\n"
            }
        }
        for i in 0..<n {
            out += "<rect x=\"\(left + i * cell)\" y=\"\(top + i * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"none\" stroke=\"#c33\" stroke-width=\"0.5\"/>\n"
        }
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(side)\" height=\"\(side)\" fill=\"none\" stroke=\"#333\"/>\n"
        if showNames {
            let size = max(5, cell - 1)
            for (i, name) in classes.enumerated() {
                let y = top + i * cell + cell - 1
                out += "<text x=\"\(left - 3)\" y=\"\(y)\" font-size=\"\(size)\" text-anchor=\"end\">\(XMLText.escape(String(name.prefix(26))))</text>\n"
                let x = left + i * cell + cell - 1
                out += "<text x=\"\(x)\" y=\"\(top - 3)\" font-size=\"\(size)\" transform=\"rotate(-90 \(x) \(top - 3))\">\(XMLText.escape(String(name.prefix(26))))</text>\n"
            }
        }
        return out + "</svg>\n"
    }
}
