import Foundation
import ViT
import XCTest

/// Model directories with out-of-range config values (issue 17) stop `catlip serve`, `embed` and
/// `index build` at load time with one line naming config.json and the value, instead of
/// starting and trapping on the first image.
final class HostileModelCLITests: XCTestCase {
    /// Runs catlip to its end, terminating it (and failing) if it is still running after a
    /// generous `deadline` seconds: a daemon that started despite a bad model would never end.
    func finish(_ arguments: [String], deadline: Double = 120) throws -> (status: Int32, err: String) {
        let process = Process()
        process.executableURL = try catlipBinary()
        process.arguments = arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let end = Date().addingTimeInterval(deadline)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            XCTFail("catlip \(arguments.first ?? "") was still running after \(deadline) s: it accepted the model")
        }
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testTinyCropPctStopsServeEmbedAndIndexAtLoadTime() throws {
        _ = try catlipBinary()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-hostile-model-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/model"
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 16, patchSize: 8, numClasses: 4, embedDim: 8, depth: 1, numHeads: 2))
        try ViTModel(config: config, seed: 1).save(directory: model)
        let path = model + "/config.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.contains("\"crop_pct\" : 0.875"), text)
        try text.replacingOccurrences(of: "\"crop_pct\" : 0.875", with: "\"crop_pct\" : 1e-300")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let image = dir + "/a.png"
        XCTAssertTrue(FileManager.default.createFile(atPath: image, contents: Data([0x89, 0x50])))
        let runs: [[String]] = [
            ["serve", "--model", model, "--socket", dir + "/s.sock"],
            ["embed", "--model", model, "--out", dir + "/e.npy", image],
            ["index", "build", "--model", model, "--out", dir + "/i.safetensors", image],
        ]
        for arguments in runs {
            let r = try finish(arguments)
            XCTAssertNotEqual(r.status, 0, "\(arguments[0]): \(r.err)")
            let lines = r.err.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments[0]): not one line:\n\(r.err)")
            XCTAssertTrue(r.err.contains(path + ": pretrained_cfg.crop_pct 1e-300 is out of range"), "\(arguments[0]): \(r.err)")
        }
    }
}
