import Foundation
import Support

/// Loss curves as standalone SVG line charts, and the smoothing that TensorBoard applies to them.
public enum LossCurve {
    /// A standalone SVG document (UTF-8 XML, no scripts or external resources) plotting each
    /// series as a polyline in its own colour, in the plot order given, with a title, axis labels,
    /// 4–6 labelled ticks per axis at multiples of 1, 2 or 5 × 10^k, light grid lines, and a
    /// legend in the upper right corner.
    ///
    /// Both axes span the finite points of all series, widened to the ticks around them unless
    /// that wastes much room (then the ticks lie inside the data range). Points whose x or y is
    /// NaN, infinite or beyond ±1e300 are skipped. A series with more than 2,000 points is reduced
    /// to the lowest and highest point of each of 1,000 consecutive buckets, which keeps the
    /// spikes of a noisy series. A series that zigzags far more than the smoothest one (its total
    /// variation is over four times its range, and its ratio at least three times the smoothest
    /// series') is drawn thin and translucent beneath the others, so a raw loss and its `smoothed`
    /// version read well together. A series with a single point is drawn as a dot; an empty chart
    /// shows "no data". Text is escaped for XML and control characters are dropped. `width` and
    /// `height` are in pixels and are raised to at least 240 × 160.
    public static func svg(
        series: [(name: String, points: [(x: Double, y: Double)])],
        title: String, xLabel: String, yLabel: String,
        width: Int = 720, height: Int = 405
    ) -> String {
        let width = max(width, 240)
        let height = max(height, 160)
        let plotted = series.map { downsample(plottable($0.points), maxPoints: 2000) }
        let all = plotted.joined()
        let hasData = !all.isEmpty
        let xAxis = Axis(low: all.map(\.x).min() ?? 0, high: all.map(\.x).max() ?? 1)
        let yAxis = Axis(low: all.map(\.y).min() ?? 0, high: all.map(\.y).max() ?? 1)

        // Layout: title on top, x tick labels and x label below, y tick labels and the rotated
        // y label on the left; the left margin grows with the longest y tick label.
        let longestYLabel = yAxis.labels.map(\.count).max() ?? 1
        let left = 34.0 + 6.5 * Double(longestYLabel)
        let right = 18.0
        let top = 38.0
        let bottom = 50.0
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        let px = { (x: Double) in left + (x - xAxis.low) / (xAxis.high - xAxis.low) * plotWidth }
        let py = { (y: Double) in top + (yAxis.high - y) / (yAxis.high - yAxis.low) * plotHeight }

        var svg = header(width: width, height: height, title: title)

        // Grid lines, frame, ticks and their labels.
        svg += "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n"
        for tick in xAxis.ticks { svg += line(px(tick), top, px(tick), top + plotHeight) }
        for tick in yAxis.ticks { svg += line(left, py(tick), left + plotWidth, py(tick)) }
        svg += "</g>\n"
        svg += """
            <rect class="frame" x="\(f(left))" y="\(f(top))" width="\(f(plotWidth))" \
            height="\(f(plotHeight))" fill="none" stroke="#444" stroke-width="1"/>

            """
        svg += "<g class=\"xticks\" text-anchor=\"middle\">\n"
        let bottomEdge = top + plotHeight
        for (tick, label) in zip(xAxis.ticks, xAxis.labels) {
            svg += line(px(tick), bottomEdge, px(tick), bottomEdge + 4, "stroke=\"#444\"")
            svg += text(label, px(tick), bottomEdge + 16, "class=\"xtick\"")
        }
        svg += "</g>\n<g class=\"yticks\" text-anchor=\"end\">\n"
        for (tick, label) in zip(yAxis.ticks, yAxis.labels) {
            svg += line(left - 4, py(tick), left, py(tick), "stroke=\"#444\"")
            svg += text(label, left - 7, py(tick), "class=\"ytick\" dy=\"0.35em\"")
        }
        svg += "</g>\n"
        let middleX = left + plotWidth / 2
        let middleY = top + plotHeight / 2
        let centred = "text-anchor=\"middle\" font-size=\"12\""
        svg += text(xLabel, middleX, Double(height) - 10, "class=\"xlabel\" \(centred)")
        let rotation = "transform=\"rotate(-90 \(f(14)) \(f(middleY)))\""
        svg += text(yLabel, 14, middleY, "class=\"ylabel\" \(rotation) dy=\"0.35em\" \(centred)")
        svg += """
            <clipPath id="catlip-plot-area"><rect x="\(f(left))" y="\(f(top))" \
            width="\(f(plotWidth))" height="\(f(plotHeight))"/></clipPath>

            """
        if !hasData {
            let grey = "class=\"nodata\" text-anchor=\"middle\" fill=\"#888\" font-size=\"14\""
            svg += text("no data", middleX, middleY, grey)
        }

        // Series: noisy ones first (thin, translucent), then the others on top.
        let noisy = noisySeries(plotted)
        let order = series.indices.filter { noisy[$0] } + series.indices.filter { !noisy[$0] }
        svg += """
            <g class="series" clip-path="url(#catlip-plot-area)" fill="none" \
            stroke-linejoin="round" stroke-linecap="round">

            """
        for s in order {
            let points = plotted[s]
            let colour = palette[s % palette.count]
            let style = lineStyle(index: s, noisy: noisy[s], colour: colour)
            let name = XMLText.escape(series[s].name)
            if points.count == 1 {
                svg += """
                    <circle class="point" cx="\(f(px(points[0].x)))" cy="\(f(py(points[0].y)))" \
                    r="3" fill="\(colour)" stroke="none"><title>\(name)</title></circle>

                    """
            } else if points.count > 1 {
                var coordinates = ""
                coordinates.reserveCapacity(points.count * 16)
                for (i, point) in points.enumerated() {
                    if i > 0 { coordinates += " " }
                    coordinates += f(px(point.x)) + "," + f(py(point.y))
                }
                svg += """
                    <polyline class="line" \(style) points="\(coordinates)">\
                    <title>\(name)</title></polyline>

                    """
            }
        }
        svg += "</g>\n"

        // Legend, upper right inside the plot, in the caller's order.
        if !series.isEmpty {
            let longestName = series.map { $0.name.count }.max() ?? 0
            let boxWidth = 38 + 6.2 * Double(longestName)
            let boxHeight = 8 + 16 * Double(series.count)
            let boxX = left + plotWidth - boxWidth - 8
            let boxY = top + 8
            svg += """
                <g class="legend">
                <rect x="\(f(boxX))" y="\(f(boxY))" width="\(f(boxWidth))" \
                height="\(f(boxHeight))" fill="white" fill-opacity="0.85" stroke="#bbb" rx="3"/>

                """
            for s in series.indices {
                let y = boxY + 12 + 16 * Double(s)
                let colour = palette[s % palette.count]
                let style = lineStyle(index: s, noisy: false, colour: colour)
                svg += line(boxX + 8, y, boxX + 28, y, style)
                svg += text(series[s].name, boxX + 33, y, "dy=\"0.35em\"")
            }
            svg += "</g>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    /// TensorBoard's smoothing: a debiased exponential moving average,
    ///
    ///     mₙ = weight · mₙ₋₁ + (1 − weight) · yₙ,   m₀ = 0,   smoothedₙ = mₙ / (1 − weightⁿ)
    ///
    /// where n counts the points used so far. Points whose x or y is not finite are skipped (left
    /// out of the result and of n), so one NaN loss does not poison the rest of the curve. The
    /// result keeps the x of every point used. `weight` must be in 0..<1; 0 returns the points.
    public static func smoothed(_ points: [(x: Double, y: Double)], weight: Double = 0.9)
        -> [(x: Double, y: Double)]
    {
        precondition(weight >= 0 && weight < 1, "smoothed: weight \(weight) is not in 0..<1")
        var result: [(x: Double, y: Double)] = []
        result.reserveCapacity(points.count)
        var average = 0.0
        var decay = 1.0  // weight^n
        for point in points where point.x.isFinite && point.y.isFinite {
            average = weight * average + (1 - weight) * point.y
            decay *= weight
            result.append((point.x, average / (1 - decay)))
        }
        return result
    }

    // MARK: - Helpers

    /// The start of a chart: the XML prologue, the open `<svg>` element with the charts' font,
    /// a white background and the centred bold title (escaped).
    static func header(width: Int, height: Int, title: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" \
        viewBox="0 0 \(width) \(height)" font-family="Helvetica, Arial, sans-serif" \
        font-size="11" fill="#222">
        <rect width="\(width)" height="\(height)" fill="white"/>
        <text class="title" x="\(f(Double(width) / 2))" y="24" text-anchor="middle" \
        font-size="15" font-weight="bold">\(XMLText.escape(title))</text>

        """
    }

    /// Matplotlib's "tab10" colours; series beyond ten reuse them dashed.
    static let palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]

    /// A `<line>` element and a newline.
    static func line(
        _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ attributes: String = ""
    ) -> String {
        let end = attributes.isEmpty ? "" : " " + attributes
        return "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\"\(end)/>\n"
    }

    /// A `<text>` element holding `content`, escaped, and a newline.
    static func text(_ content: String, _ x: Double, _ y: Double, _ attributes: String) -> String {
        "<text \(attributes) x=\"\(f(x))\" y=\"\(f(y))\">\(XMLText.escape(content))</text>\n"
    }

    /// The stroke of series `index`: thin and translucent when noisy, dashed past the palette.
    static func lineStyle(index: Int, noisy: Bool, colour: String) -> String {
        var style =
            noisy
            ? "stroke=\"\(colour)\" stroke-width=\"1\" stroke-opacity=\"0.45\""
            : "stroke=\"\(colour)\" stroke-width=\"2\""
        if index >= palette.count { style += " stroke-dasharray=\"6 3\"" }
        return style
    }

    /// The points that can be drawn: finite, and small enough that spans stay finite.
    static func plottable(_ points: [(x: Double, y: Double)]) -> [(x: Double, y: Double)] {
        points.filter { $0.x.isFinite && $0.y.isFinite && abs($0.x) <= 1e300 && abs($0.y) <= 1e300 }
    }

    /// At most `maxPoints` points: the lowest and highest of each of `maxPoints / 2` consecutive
    /// buckets, in their original order.
    static func downsample(_ points: [(x: Double, y: Double)], maxPoints: Int)
        -> [(x: Double, y: Double)]
    {
        guard points.count > maxPoints else { return points }
        let buckets = maxPoints / 2
        var result: [(x: Double, y: Double)] = []
        result.reserveCapacity(maxPoints)
        for b in 0..<buckets {
            let start = b * points.count / buckets
            let end = (b + 1) * points.count / buckets
            var lowest = start
            var highest = start
            for i in start..<end {
                if points[i].y < points[lowest].y { lowest = i }
                if points[i].y > points[highest].y { highest = i }
            }
            result.append(points[min(lowest, highest)])
            if lowest != highest { result.append(points[max(lowest, highest)]) }
        }
        return result
    }

    /// How much a series zigzags: its total variation over its range (1 for a monotone
    /// series; 0 when it has fewer than 20 points or is flat).
    static func roughness(_ points: [(x: Double, y: Double)]) -> Double {
        guard points.count >= 20 else { return 0 }
        var variation = 0.0
        var low = points[0].y
        var high = points[0].y
        for i in 1..<points.count {
            variation += abs(points[i].y - points[i - 1].y)
            low = min(low, points[i].y)
            high = max(high, points[i].y)
        }
        return high > low ? variation / (high - low) : 0
    }

    /// Which series to draw faded: those that zigzag (roughness over 4) at least three times as
    /// much as the smoothest series. A lone series is never faded.
    static func noisySeries(_ plotted: [[(x: Double, y: Double)]]) -> [Bool] {
        let rough = plotted.map(roughness)
        let drawn = plotted.indices.filter { plotted[$0].count >= 2 }
        let smoothest = drawn.map { rough[$0] }.min() ?? 0
        return plotted.indices.map {
            rough[$0] > 4 && rough[$0] >= 3 * smoothest && drawn.count > 1
        }
    }

    /// A coordinate with two decimals; callers only pass finite values.
    static func f(_ value: Double) -> String {
        String(format: "%.2f", value.isFinite ? value : 0)
    }
}

extension LossCurve {
    /// An axis range with "nice" ticks: 4–6 multiples of 1, 2 or 5 × 10^k, with their labels.
    struct Axis {
        let low: Double
        let high: Double
        let ticks: [Double]
        let labels: [String]

        /// Takes the data range; an empty or near-empty range (narrower than 1e-9 of its magnitude)
        /// is widened around its centre first.
        init(low dataLow: Double, high dataHigh: Double) {
            var low = dataLow
            var high = dataHigh
            let magnitude = max(abs(low), abs(high))
            if !(high - low > magnitude * 1e-9) {
                let centre = low / 2 + high / 2
                let pad = magnitude > 0 ? magnitude * 0.1 : 1
                low = centre - pad
                high = centre + pad
            }
            let span = high - low
            let base = floor(log10(span))
            // Steps of 1, 2 or 5 × 10^e around the span's decade, each tried two ways: ticks out
            // to cover the data (the axis ends on a tick) or ticks inside it (the axis is the data
            // range). Among the ways with 4–6 ticks the one that wastes the least room wins; ticks
            // inside count as a quarter of the range wasted, as their ends are unlabelled. Some
            // way always has 4–6 ticks: consecutive steps differ by at most 2.5, and covering
            // works for span/step in (2, 4], inside for [4, 6).
            var best: (score: Double, first: Double, last: Double, step: Double, e: Double)?
            for e in stride(from: base - 2, through: base + 1, by: 1) {
                for mantissa in [1.0, 2.0, 5.0] {
                    let step = mantissa * pow(10, e)
                    let ways = [
                        (floor(low / step + 1e-9), ceil(high / step - 1e-9), true),
                        (ceil(low / step - 1e-9), floor(high / step + 1e-9), false),
                    ]
                    for (first, last, covers) in ways {
                        let count = last - first + 1
                        guard count.isFinite, count >= 2, count <= 50 else { continue }
                        let score =
                            (4...6).contains(Int(count))
                            ? (covers ? (last - first) * step / span - 1 : 0.25)
                            : 10 + abs(count - 5)
                        if best == nil || score < best!.score {
                            best = (score, first, last, step, e)
                        }
                    }
                }
            }
            guard let chosen = best else {
                // Not reached for finite ranges within ±1e300; kept so that a chart never traps.
                self.low = low
                self.high = high
                ticks = [low, high]
                labels = [low, high].map { String(format: "%g", $0) }
                return
            }
            var ticks: [Double] = []
            for i in 0...Int(chosen.last - chosen.first) {
                let value = (chosen.first + Double(i)) * chosen.step
                ticks.append(abs(value) < chosen.step * 1e-6 ? 0 : value)
            }
            self.low = min(ticks[0], low)
            self.high = max(ticks[ticks.count - 1], high)
            self.ticks = ticks
            labels = Axis.format(ticks, exponent: Int(chosen.e))
        }

        /// Labels that show every tick exactly at the step's precision: plain decimals, k/M/G
        /// suffixes for large round numbers, exponent notation for very small or huge ones.
        static func format(_ ticks: [Double], exponent e: Int) -> [String] {
            let largest = ticks.map(abs).max() ?? 0
            if e < -4 || largest >= 1e15 {
                let digits = max(1, Int(floor(log10(max(largest, 1e-300)))) - e + 1)
                return ticks.map { $0 == 0 ? "0" : String(format: "%.\(digits)g", $0) }
            }
            let units = [(9, "G"), (6, "M"), (3, "k")]
            if largest >= 1e4, let (unitExponent, suffix) = units.first(where: { e >= $0.0 }) {
                // The step is a multiple of the unit, so every label is a whole number of units.
                let unit = pow(10, Double(unitExponent))
                return ticks.map { $0 == 0 ? "0" : String(format: "%.0f", $0 / unit) + suffix }
            }
            let decimals = max(0, -e)
            return ticks.map { String(format: "%.\(decimals)f", $0) }
        }
    }
}
