import Foundation
import Support
import ViT
import WordNet

/// CatLIP's "Transfer Init": a copy of a model whose head has one row per target class,
/// initialised from the vocabulary rows the class maps to (their mean, weights and bias, when
/// several), and a trunc-normal row (std 0.02, as timm initialises a head) with the mean of
/// the pretrained biases when the class maps to nothing. Everything else is copied unchanged.
public enum HeadExport {
    /// The new model; `seed` draws the rows of unmapped classes. Throws when a mapping names a
    /// row the model's head does not have (a vocabulary that is not the model's).
    public static func transferInit(model: ViTModel, mappings: [ClassMapping], seed: UInt64 = 0) throws -> ViTModel {
        if let bad = mappings.first(where: { $0.rows.contains { $0 < 0 || $0 >= model.numClasses } }) {
            throw EvaluationError(path: bad.query, problem: "maps to a row outside the model's \(model.numClasses)-row head")
        }
        var config = model.config
        config.modelArgs.numClasses = mappings.count
        config.numClasses = mappings.count
        config.pretrainedCfg.numClasses = mappings.count
        let target = try ViTModel(config: config)
        for spec in model.layout.specs where !spec.name.hasPrefix("head.") {
            let from = model.parameter(spec.name)
            let to = target.parameter(spec.name)
            _ = to.update(fromContentsOf: from)
        }
        let d = model.dim
        let sourceWeight = model.parameter("head.weight"), sourceBias = model.parameter("head.bias")
        let weight = target.parameter("head.weight"), bias = target.parameter("head.bias")
        var rng = SeededGenerator(seed: seed)
        // an unmapped class starts at the average pretrained bias: with CatLIP's BCE head the
        // biases sit near each synset's log-odds (about -7 for a rare one), and a bias of 0
        // would outrank every mapped class under a softmax
        let meanBias = Float(sourceBias.reduce(0.0) { $0 + Double($1) } / Double(max(sourceBias.count, 1)))
        for (c, m) in mappings.enumerated() {
            if m.rows.isEmpty {
                for j in 0..<d { weight[c * d + j] = rng.nextTruncatedNormal(std: 0.02) }
                bias[c] = meanBias
                continue
            }
            let scale = 1 / Float(m.rows.count)
            for j in 0..<d {
                var s: Float = 0
                for r in m.rows { s += sourceWeight[r * d + j] }
                weight[c * d + j] = s * scale
            }
            bias[c] = m.rows.reduce(Float(0)) { $0 + sourceBias[$1] } * scale
        }
        return target
    }

    /// `classes.tsv` of an exported model: class index, class, route, source rows (wnids).
    public static func classesTSV(_ mappings: [ClassMapping], vocabulary: Vocabulary) -> String {
        mappings.enumerated().map { c, m in
            "\(c)\t\(m.query.replacingOccurrences(of: "\t", with: " "))\t\(m.route.rawValue)\t"
                + m.rows.map { vocabulary.entries[$0].wnid }.joined(separator: ",")
        }.joined(separator: "\n") + "\n"
    }
}
