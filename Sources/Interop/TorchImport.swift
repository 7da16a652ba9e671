import Foundation
import ViT

/// The torch.save reader (`TorchCheckpoint`) as the importers use it: tensors in file order,
/// and corenet's pickled vocabulary counts.
public enum TorchImport {
    /// The state dict of a torch.save checkpoint, tensors in the pickle's order.
    public static func read(path: String) throws -> [NamedTensor] {
        fatalError("TorchCheckpoint reader not merged yet")
    }

    /// A pickled dict of synset key to count, in its order.
    public static func readPickledCounts(path: String) throws -> [(key: String, count: Int)] {
        fatalError("TorchCheckpoint reader not merged yet")
    }
}
