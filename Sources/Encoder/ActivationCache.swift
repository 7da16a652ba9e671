import ViT

/// Forward-only activation buffers of a model, planned once per batch size and kept for the
/// few sizes most recently used: a saturated daemon or a long evaluation runs full batches, the
/// tail of a folder or a quiet daemon a few small ones, and none of them should plan (allocate
/// and fault in) buffers per batch. The one cache every image-encoding loop uses.
final class ActivationCache {
    private let model: ViTModel
    private let capacity: Int
    private var entries: [(count: Int, activations: ViTActivations)] = []

    /// A cache for `model` keeping at most `capacity` batch sizes (least recently used dropped).
    init(model: ViTModel, capacity: Int = 4) {
        precondition(capacity >= 1)
        self.model = model
        self.capacity = capacity
    }

    /// Forward-only activations for a batch of `count` images at the model's image size.
    func activations(for count: Int) -> ViTActivations {
        if let i = entries.firstIndex(where: { $0.count == count }) {
            let hit = entries.remove(at: i)
            entries.append(hit)
            return hit.activations
        }
        let made = model.makeActivations(batchSize: count, training: false)
        entries.append((count, made))
        if entries.count > capacity { entries.removeFirst() }
        return made
    }
}
