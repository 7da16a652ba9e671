import Foundation
import ViT

/// A timm `VisionTransformer` state dict (from model.safetensors or a torch.save .pt) and its
/// hub config.json as a catlip model directory: the names and shapes must be exactly the
/// config's (timm's names are catlip's); BatchNorm's `num_batches_tracked` counters, which
/// catlip does not use, are dropped.
public enum TimmImport {
    /// Checks `records` (read from `path`) against `config` and writes the model directory;
    /// returns the names dropped.
    public static func write(
        _ records: [NamedTensor], config: ModelConfig, path: String, to directory: String
    ) throws -> [String] {
        var tensors: [String: FloatTensor] = [:]
        var dropped: [String] = []
        for r in records {
            if r.name.hasSuffix(".num_batches_tracked") {
                dropped.append(r.name)
                continue
            }
            if tensors.updateValue(r.tensor, forKey: r.name) != nil {
                throw ImportError(path: path, problem: "tensor '\(r.name)' appears twice")
            }
        }
        let model = try ViTModel(config: config)
        try model.loadParameters(SafeTensors(tensors: tensors), path: path)
        try model.save(directory: directory)
        return dropped
    }
}
