import Foundation
import XCTest

@testable import Interop
@testable import ViT

/// `catlip import timm`: a state dict in timm's names and its config become a model directory
/// with the same tensors; a name or shape the config does not have is refused by name, and
/// BatchNorm's counters are dropped.
final class TimmImportTests: XCTestCase {
    func testStateDictBecomesTheSameModel() throws {
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 32, patchSize: 8, numClasses: 6, embedDim: 16, depth: 2, numHeads: 2))
        let model = try ViTModel(config: config, seed: 3)
        let records = model.layout.specs.map {
            NamedTensor(name: $0.name, tensor: FloatTensor(shape: $0.shape, values: Array(model.parameter($0.name))))
        }
        let dir = NSTemporaryDirectory() + "timm-import-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let counter = NamedTensor(name: "patch_embed.backbone.0.bn.num_batches_tracked", tensor: FloatTensor(shape: [], values: [7]))
        let dropped = try TimmImport.write(records + [counter], config: config, path: "w.pt", to: dir)
        XCTAssertEqual(dropped, [counter.name])
        let back = try ViTModel.load(directory: dir)
        for s in model.layout.specs { XCTAssert(Array(back.parameter(s.name)) == Array(model.parameter(s.name)), s.name) }

        var extra = records
        extra.append(NamedTensor(name: "reg_token", tensor: FloatTensor(shape: [1, 1, 16], values: [Float](repeating: 0, count: 16))))
        XCTAssertThrowsError(try TimmImport.write(extra, config: config, path: "w.pt", to: dir + "-x")) {
            XCTAssert("\($0)".contains("unexpected tensors: reg_token"), "\($0)")
        }
        var wrong = records
        wrong[wrong.firstIndex { $0.name == "head.bias" }!].tensor = FloatTensor(shape: [5], values: [0, 0, 0, 0, 0])
        XCTAssertThrowsError(try TimmImport.write(wrong, config: config, path: "w.pt", to: dir + "-y")) {
            XCTAssert("\($0)".contains("'head.bias' has shape [5], the config needs [6]"), "\($0)")
        }
    }
}
