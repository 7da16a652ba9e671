import Foundation
import ViT

/// The torch.save reader (`TorchCheckpoint`, which executes nothing) as the importers use it:
/// the state dict's tensors in file order, and corenet's pickled vocabulary counts.
public enum TorchImport {
    /// The state dict of a torch.save checkpoint (the top level, or its `state_dict_ema`,
    /// `state_dict` or `model` entry), tensors in the pickle's order, as float32.
    public static func read(path: String) throws -> [NamedTensor] {
        try TorchCheckpoint.read(path: path).tensors.map { NamedTensor(name: $0.name, tensor: $0.values) }
    }

    /// A pickled dict of synset key to count (corenet's `datacomp_1_2B_vocab.pkl`), in its order.
    public static func readPickledCounts(path: String) throws -> [(key: String, count: Int)] {
        try TorchCheckpoint.readPickledCounts(path: path)
    }
}
