import Foundation
import Shards
import Support

/// The results of a k-shot transfer study (`TransferStudy`): every run, and per (shots,
/// setting) the median test top-1 and top-5 over the seeds, as the printed table, Markdown,
/// JSON and an SVG bar chart.
public struct TransferReport: Sendable {
    /// One k of the study: the training images it gives.
    public struct Shots: Sendable, Equatable {
        /// k.
        public var shots: ShotCount
        /// Training images over all classes.
        public var trainImages: Int
        /// Classes with fewer than k training images (they train on what they have).
        public var shortClasses: Int

        /// A k and its counts.
        public init(shots: ShotCount, trainImages: Int, shortClasses: Int) {
            self.shots = shots
            self.trainImages = trainImages
            self.shortClasses = shortClasses
        }
    }

    /// The median result of one (shots, setting) over the seeds it ran with.
    public struct Cell: Sendable, Equatable {
        /// k.
        public var shots: ShotCount
        /// The setting.
        public var setting: TransferSetting
        /// Median test top-1 over the seeds.
        public var top1: Double
        /// Median test top-5 over the seeds.
        public var top5: Double
        /// Test top-1 per seed, in seed order.
        public var top1PerSeed: [Double]
        /// Test top-5 per seed, in seed order.
        public var top5PerSeed: [Double]
    }

    /// The pretrained model directory.
    public var model: String
    /// The labelled images.
    public var data: String
    /// The fine-tuning configuration file.
    public var config: String
    /// Its overrides.
    public var overrides: [String]
    /// Optimiser steps of every run.
    public var steps: Int
    /// The classes of the split (at least two images each).
    public var classes: [String]
    /// The classes left out (fewer than two images).
    public var skipped: [KShotSplit.SkippedClass]
    /// Test images (the odd half of every class).
    public var testImages: Int
    /// The k values, in order.
    public var shots: [Shots]
    /// The settings, in order.
    public var settings: [TransferSetting]
    /// The seeds.
    public var seeds: [Int]
    /// Every run.
    public var runs: [TransferRun]

    /// A report from its parts (`TransferStudy.run` makes it).
    public init(
        model: String, data: String, config: String, overrides: [String], steps: Int, classes: [String],
        skipped: [KShotSplit.SkippedClass], testImages: Int, shots: [Shots], settings: [TransferSetting], seeds: [Int],
        runs: [TransferRun]
    ) {
        self.model = model
        self.data = data
        self.config = config
        self.overrides = overrides
        self.steps = steps
        self.classes = classes
        self.skipped = skipped
        self.testImages = testImages
        self.shots = shots
        self.settings = settings
        self.seeds = seeds
        self.runs = runs
    }

    /// The median of `values`: the middle one, or the mean of the two middle ones when their
    /// count is even; NaN when there are none.
    public static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let m = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2
    }

    /// The (shots, setting) cells that have runs, in table order (shots, then setting).
    public var cells: [Cell] {
        shots.flatMap { k in settings.compactMap { cell(k.shots, $0) } }
    }

    /// The cell of (shots, setting): medians over its runs' seeds; nil when it has no runs.
    public func cell(_ shots: ShotCount, _ setting: TransferSetting) -> Cell? {
        let mine = runs.filter { $0.shots == shots && $0.setting == setting }.sorted { $0.seed < $1.seed }
        if mine.isEmpty { return nil }
        return Cell(
            shots: shots, setting: setting, top1: Self.median(mine.map(\.top1)), top5: Self.median(mine.map(\.top5)),
            top1PerSeed: mine.map(\.top1), top5PerSeed: mine.map(\.top5))
    }

    /// Top-1 of always answering one class: 1 / classes.
    public var chance: Double { classes.isEmpty ? 0 : 1 / Double(classes.count) }

    /// What was compared, in two lines (the table's heading).
    public var heading: [String] {
        let left = skipped.isEmpty ? "" : ", \(skipped.count) with fewer than two images left out"
        let seedText = seeds.count == 1 ? "seed \(seeds[0])" : "median over seeds \(seeds.map(String.init).joined(separator: ","))"
        let settingText = config + (overrides.isEmpty ? "" : " " + overrides.map { "--set " + $0 }.joined(separator: " "))
        return [
            "k-shot transfer of \(model) on \(data): \(classes.count) classes\(left); \(testImages) test images "
                + String(format: "(chance top-1 %.4f)", chance),
            "test top-1 / top-5 after \(steps) steps of \(settingText), \(seedText)",
        ]
    }

    /// The table's rows: shots, training images, then "top-1 / top-5" per setting ("-" for a
    /// cell without runs).
    func rows() -> [[String]] {
        shots.map { k in
            [k.shots.description, String(k.trainImages)]
                + settings.map { s in
                    cell(k.shots, s).map { String(format: "%.4f / %.4f", $0.top1, $0.top5) } ?? "-"
                }
        }
    }

    /// The header of the table's columns.
    func columns() -> [String] { ["shots", "train images"] + settings.map(\.label) }

    /// The table for a terminal: the heading, then aligned columns.
    public func table() -> String {
        let all = [columns()] + rows()
        let widths = all[0].indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        let lines = all.map { row in
            row.enumerated().map { i, text in text.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return (heading + lines).joined(separator: "\n") + "\n"
    }

    /// The table as Markdown (the best top-1 of each row in bold), with the heading and, when
    /// there are several seeds, every run's top-1.
    public func markdown() -> String {
        var text = "# k-shot transfer\n\n" + heading.joined(separator: "\n") + ".\n\n"
        text += "| " + columns().joined(separator: " | ") + " |\n"
        text += "|" + String(repeating: "---|", count: columns().count) + "\n"
        for (k, row) in zip(shots, rows()) {
            let best = settings.compactMap { cell(k.shots, $0)?.top1 }.max()
            let marked = row.enumerated().map { i, text -> String in
                guard i >= 2, let c = cell(k.shots, settings[i - 2]), c.top1 == best else { return text }
                return "**" + String(format: "%.4f", c.top1) + "**" + String(format: " / %.4f", c.top5)
            }
            text += "| " + marked.joined(separator: " | ") + " |\n"
        }
        if seeds.count > 1 {
            text += "\nTest top-1 per seed (\(seeds.map(String.init).joined(separator: ", "))):\n\n"
            for c in cells {
                text += "- k = \(c.shots), \(c.setting.label): " + c.top1PerSeed.map { String(format: "%.4f", $0) }.joined(separator: ", ") + "\n"
            }
        }
        let short = shots.filter { $0.shortClasses > 0 }
        if !short.isEmpty {
            text += "\n" + short.map { "k = \($0.shots): \($0.shortClasses) classes have fewer training images and train on what they have." }
                .joined(separator: " ") + "\n"
        }
        if !skipped.isEmpty {
            text += "\nLeft out (fewer than two images): " + skipped.map { "\($0.name) (\($0.images))" }.joined(separator: ", ") + "\n"
        }
        return text
    }

    /// transfer.json: what was compared, every run, and the medians.
    public func json() throws -> Data {
        let object: [String: Any] = [
            "model": model, "data": data, "config": config, "overrides": overrides, "steps": steps, "seeds": seeds,
            "classes": classes.count, "test_images": testImages, "chance_top1": chance,
            "skipped_classes": skipped.map { ["class": $0.name, "images": $0.images] },
            "shots": shots.map { ["shots": $0.shots.description, "train_images": $0.trainImages, "short_classes": $0.shortClasses] },
            "settings": settings.map { ["setting": $0.rawValue, "label": $0.label] },
            "runs": runs.map {
                [
                    "shots": $0.shots.description, "setting": $0.setting.rawValue, "seed": $0.seed, "top1": $0.top1, "top5": $0.top5,
                    "train_seconds": $0.seconds, "run": $0.runDirectory,
                ] as [String: Any]
            },
            "results": cells.map {
                [
                    "shots": $0.shots.description, "setting": $0.setting.rawValue, "top1": $0.top1, "top5": $0.top5,
                    "top1_per_seed": $0.top1PerSeed, "top5_per_seed": $0.top5PerSeed,
                ] as [String: Any]
            },
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    }

    /// transfer.svg: grouped bars of the median test top-1, one group per k and one bar per
    /// setting (in `LossCurve`'s colours), each seed's top-1 as a dot on its bar when there
    /// are several, the value above each bar, chance as a dashed line, a legend below (with chance). Names
    /// are escaped for XML.
    public func svg(width: Int = 720, height: Int = 405) -> String {
        let width = max(width, 320)
        let height = max(height, 200)
        let values = cells.flatMap { $0.top1PerSeed + [$0.top1] }.filter(\.isFinite)
        let axis = LossCurve.Axis(low: 0, high: max(values.max() ?? 0, chance, 0.01) * 1.08)
        let longestYLabel = axis.labels.map(\.count).max() ?? 1
        let (left, right, top, bottom) = (34.0 + 6.5 * Double(longestYLabel), 18.0, 38.0, 74.0)
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        let py = { (y: Double) in top + (axis.high - y) / (axis.high - axis.low) * plotHeight }
        let f = LossCurve.f
        // the model's folder and its parent (runs/demo/model: demo/model), the data's folder
        let modelName = model.split(separator: "/").suffix(2).joined(separator: "/")
        let title = "k-shot transfer: \(modelName) on \(data.split(separator: "/").last ?? "")"

        var svg = LossCurve.header(width: width, height: height, title: title)
        svg += "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n"
        for tick in axis.ticks { svg += LossCurve.line(left, py(tick), left + plotWidth, py(tick)) }
        svg += "</g>\n<g class=\"yticks\" text-anchor=\"end\">\n"
        for (tick, label) in zip(axis.ticks, axis.labels) {
            svg += LossCurve.line(left - 4, py(tick), left, py(tick), "stroke=\"#444\"")
            svg += LossCurve.text(label, left - 7, py(tick), "class=\"ytick\" dy=\"0.35em\"")
        }
        svg += "</g>\n"
        let middleY = top + plotHeight / 2
        let seedText = seeds.count == 1 ? "seed \(seeds[0])" : "median of \(seeds.count) seeds"
        svg += LossCurve.text(
            "test top-1 (\(seedText))", 14, middleY,
            "class=\"ylabel\" transform=\"rotate(-90 \(f(14)) \(f(middleY)))\" dy=\"0.35em\" text-anchor=\"middle\" font-size=\"12\"")

        // bars: groups of k, one bar per setting
        let groupWidth = plotWidth / Double(max(shots.count, 1))
        let barWidth = groupWidth * 0.8 / Double(max(settings.count, 1))
        svg += "<g class=\"bars\">\n"
        for (g, k) in shots.enumerated() {
            let groupLeft = left + Double(g) * groupWidth + groupWidth * 0.1
            for (s, setting) in settings.enumerated() {
                guard let c = cell(k.shots, setting), c.top1.isFinite else { continue }
                let x = groupLeft + Double(s) * barWidth
                let colour = LossCurve.palette[s % LossCurve.palette.count]
                let name = XMLText.escape("\(setting.label), k = \(k.shots)")
                let perSeed = c.top1PerSeed.map { String(format: "%.4f", $0) }.joined(separator: ", ")
                svg += """
                    <rect class="bar" x="\(f(x + 1))" y="\(f(py(c.top1)))" width="\(f(max(barWidth - 2, 1)))" \
                    height="\(f(py(0) - py(c.top1)))" fill="\(colour)"><title>\(name): test top-1 \
                    \(String(format: "%.4f", c.top1)), top-5 \(String(format: "%.4f", c.top5)) (seeds: \(perSeed))</title></rect>

                    """
                if c.top1PerSeed.count > 1 {
                    for v in c.top1PerSeed where v.isFinite {
                        svg += "<circle class=\"seed\" cx=\"\(f(x + barWidth / 2))\" cy=\"\(f(py(v)))\" r=\"2\" fill=\"#222\"/>\n"
                    }
                }
                svg += LossCurve.text(
                    String(format: "%.3f", c.top1), x + barWidth / 2, py(c.top1) - 4, "class=\"value\" text-anchor=\"middle\" font-size=\"9\"")
            }
            let centre = left + (Double(g) + 0.5) * groupWidth
            svg += LossCurve.text(
                "k = \(k.shots)", centre, top + plotHeight + 16,
                "class=\"xtick\" text-anchor=\"middle\"")
            svg += LossCurve.text(
                "\(k.trainImages) training images", centre, top + plotHeight + 30, "class=\"xtick\" text-anchor=\"middle\" fill=\"#666\"")
        }
        svg += "</g>\n"
        // chance, the axis line and the frame's left edge
        let chanceY = py(chance)
        svg += LossCurve.line(left, chanceY, left + plotWidth, chanceY, "class=\"chance\" stroke=\"#888\" stroke-dasharray=\"4 3\"")
        svg += LossCurve.line(left, py(0), left + plotWidth, py(0), "stroke=\"#444\"")
        svg += LossCurve.line(left, top, left, py(0), "stroke=\"#444\"")

        // legend: one row under the axis, the settings then chance
        svg += "<g class=\"legend\">\n"
        let entryWidth = plotWidth / Double(settings.count + 1)
        let y = Double(height) - 14
        for (s, setting) in settings.enumerated() {
            let x = left + Double(s) * entryWidth
            svg += "<rect x=\"\(f(x))\" y=\"\(f(y - 5))\" width=\"10\" height=\"10\" fill=\"\(LossCurve.palette[s % LossCurve.palette.count])\"/>\n"
            svg += LossCurve.text(setting.label, x + 14, y, "dy=\"0.35em\"")
        }
        let x = left + Double(settings.count) * entryWidth
        svg += LossCurve.line(x, y, x + 18, y, "stroke=\"#888\" stroke-dasharray=\"4 3\"")
        svg += LossCurve.text(String(format: "chance %.3f", chance), x + 22, y, "class=\"chance\" dy=\"0.35em\"")
        svg += "</g>\n</svg>\n"
        return svg
    }
}
