import Foundation
import Support
import XCTest

@testable import ViT

/// The fixture folder copied into the test bundle.
func fixturesRoot() throws -> String {
    try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path
}

/// A fresh temporary directory, removed by the test's teardown block.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = NSTemporaryDirectory() + "vit-tests-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

func maxAbs<C: Collection>(_ a: C) -> Float where C.Element == Float {
    a.reduce(0) { max($0, abs($1)) }
}

/// The largest difference between two tensors and how it compares with a tolerance.
struct Difference: CustomStringConvertible {
    var name: String
    /// max |got - ref|.
    var maxDiff: Float
    /// max |ref|.
    var refMax: Float
    /// <= 1 passes.
    var score: Float
    var rule: String

    var description: String {
        "\(name): max |diff| \(maxDiff), max |ref| \(refMax), \(String(format: "%.4f", score)) "
            + "of the tolerance (\(rule))"
    }
}

/// Elementwise |got - ref| <= atol + rtol |ref|.
func elementwise(_ name: String, _ got: [Float], _ ref: [Float], rtol: Float, atol: Float)
    -> Difference
{
    precondition(got.count == ref.count, "\(name): \(got.count) vs \(ref.count) values")
    var worst: Float = 0
    var maxDiff: Float = 0
    for i in got.indices {
        let d = abs(got[i] - ref[i])
        if !d.isFinite {
            return Difference(
                name: name, maxDiff: .nan, refMax: maxAbs(ref), score: .infinity, rule: "non-finite"
            )
        }
        maxDiff = max(maxDiff, d)
        worst = max(worst, d / (atol + rtol * abs(ref[i])))
    }
    return Difference(
        name: name, maxDiff: maxDiff, refMax: maxAbs(ref), score: worst,
        rule: "rtol \(rtol), atol \(atol)")
}

/// max |got - ref| <= rel · max |ref| (or <= abs when given: an absolute bound).
func relativeToMax(
    _ name: String, _ got: [Float], _ ref: [Float], rel: Float, absolute: Float? = nil
)
    -> Difference
{
    precondition(got.count == ref.count, "\(name): \(got.count) vs \(ref.count) values")
    var maxDiff: Float = 0
    for i in got.indices {
        let d = abs(got[i] - ref[i])
        if !d.isFinite {
            return Difference(
                name: name, maxDiff: .nan, refMax: maxAbs(ref), score: .infinity, rule: "non-finite"
            )
        }
        maxDiff = max(maxDiff, d)
    }
    let refMax = maxAbs(ref)
    if let absolute {
        return Difference(
            name: name, maxDiff: maxDiff, refMax: refMax, score: maxDiff / absolute,
            rule: "absolute \(absolute)")
    }
    let bound = rel * refMax
    return Difference(
        name: name, maxDiff: maxDiff, refMax: refMax,
        score: bound > 0 ? maxDiff / bound : (maxDiff == 0 ? 0 : .infinity),
        rule: "\(rel) x max |ref|")
}

/// Splits `.attn.qkv.` tensors into their q, k, v row blocks, named `name[q]` etc.
func qkvBlocks(_ name: String, _ values: [Float]) -> [(String, [Float])] {
    guard name.contains(".attn.qkv.") else { return [(name, values)] }
    let n = values.count / 3
    return ["q", "k", "v"].enumerated().map { j, part in
        ("\(name)[\(part)]", Array(values[(j * n)..<((j + 1) * n)]))
    }
}

/// Fails the test with every tensor over its tolerance (largest difference per tensor).
func assertWithinTolerance(
    _ diffs: [Difference], _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
    let bad = diffs.filter { !($0.score <= 1) }
    if !bad.isEmpty {
        XCTFail(
            "\(what): \(bad.count) tensor(s) over tolerance:\n"
                + bad.map { "  " + $0.description }.joined(separator: "\n"), file: file, line: line)
    }
}

extension Array where Element == Float {
    /// Random normal values from a seeded generator.
    static func randomNormal(_ count: Int, seed: UInt64, std: Float = 1) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Float(g.nextNormal()) * std }
    }
}

/// Each parameter tensor of `m` against central differences (step 1e-2) of the loss of
/// `images` and `targets` through `acts`: the largest |finite difference − gradient| over up
/// to 6 coordinates per tensor, as a fraction of the tensor's largest gradient (`scale`).
func finiteDifferenceErrors(
    _ m: ViTModel, images: [Float], targets: [Float], acts: ViTActivations
) -> [(name: String, worst: Float, scale: Float)] {
    func loss() -> Double {
        m.forward(images: images, activations: acts)
        return Double(m.loss(targets: targets, activations: acts))
    }
    _ = loss()
    m.zeroGradients()
    m.backward(targets: targets, activations: acts)
    let h: Float = 1e-2
    return m.layout.specs.map { s in
        let g = m.gradient(s.name)
        let scale = max(maxAbs(g), 1e-4)
        var worst: Float = 0
        let step = max(1, s.count / 6)
        for i in stride(from: 0, to: s.count, by: step) {
            let p = m.parameters.base + s.offset + i
            let old = p.pointee
            p.pointee = old + h
            let lp = loss()
            p.pointee = old - h
            let lm = loss()
            p.pointee = old
            worst = max(worst, abs(Float((lp - lm) / Double(2 * h)) - g[i]) / scale)
        }
        return (s.name, worst, scale)
    }
}
