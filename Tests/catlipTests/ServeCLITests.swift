import Foundation
import Imaging
import Serving
import ViT
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `catlip index build`, `catlip serve` and `catlip query` as processes: a round trip on both
/// transports, then SIGTERM with a request in flight (answered, exit 0, socket removed).
final class ServeCLITests: XCTestCase {
    func testIndexServeQueryAndSigtermDrain() throws {
        let binary = try catlipBinary()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("catlip-serve-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        let config = ModelConfig(
            modelArgs: ModelArgs(imgSize: 32, patchSize: 8, numClasses: 6, embedDim: 32, depth: 1, numHeads: 2),
            pretrainedCfg: PretrainedConfig(inputSize: [3, 32, 32], numClasses: 6))
        try ViTModel(config: config, seed: 2).save(directory: dir + "/model")
        var images: [[UInt8]] = []
        for i in 0..<3 {
            let pixels = (0..<(40 * 30 * 3)).map { UInt8(($0 * (i + 2) + i * 31) % 256) }
            let png = try PNGEncoder.encode(RGBImage(width: 40, height: 30, pixels: pixels), source: "img\(i)")
            try Data(png).write(to: URL(fileURLWithPath: dir + "/images/img\(i).png"))
            images.append(png)
        }

        let built = try catlip(["index", "build", "--model", dir + "/model", "--out", dir + "/index.safetensors", dir + "/images"])
        XCTAssertEqual(built.status, 0, built.err)
        XCTAssertTrue(built.err.contains("3 images embedded"), built.err)

        let socketPath = dir + "/serve.sock"
        let daemon = Process()
        daemon.executableURL = binary
        // the daemon at bf16 where the processor has it (the index was built at fp32: a search
        // for an indexed image still finds it first)
        let precision = Gemm.bf16Supported ? "bf16" : "fp32"
        daemon.arguments = ["serve", "--model", dir + "/model", "--socket", socketPath, "--index", dir + "/index.safetensors",
                            "--listen", "127.0.0.1:0", "--precision", precision]
        let log = dir + "/serve.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        daemon.standardError = FileHandle(forWritingAtPath: log)
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }
        var port: Int?
        for _ in 0..<600 where port == nil {
            usleep(50_000)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "http://127.0.0.1:") {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            if !daemon.isRunning { break }
        }
        let port0 = try XCTUnwrap(port, "daemon did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        let classify = try catlip(["query", "--socket", socketPath, "--top-k", "2", "classify", dir + "/images/img1.png"])
        XCTAssertEqual(classify.status, 0, classify.err)
        let labels = (try JSONSerialization.jsonObject(with: Data(classify.out.utf8)) as? [String: Any])?["labels"] as? [Any]
        XCTAssertEqual(labels?.count, 2, classify.out)
        let search = try catlip(["query", "--url", "http://127.0.0.1:\(port0)", "search", dir + "/images/img2.png"])
        XCTAssertEqual(search.status, 0, search.err)
        XCTAssertTrue(search.out.contains("\"key\":\"\(dir)/images/img2.png\""), search.out)
        let bad = try catlip(["query", "--socket", socketPath, "embed", dir + "/index.safetensors"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("index.safetensors: 400"), bad.err)

        // SIGTERM with a 48-image request in flight and an idle keep-alive connection
        let endpoint = ServeEndpoint.unix(socketPath)
        let idle = BlockingHTTPClient(endpoint: endpoint)
        let health = try idle.request(method: "GET", path: "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertTrue(health.text.contains("\"precision\":\"\(precision)\""), health.text)
        let body = "{\"images\": [" + (0..<48).map { "\"" + Data(images[$0 % 3]).base64EncodedString() + "\"" }.joined(separator: ",") + "]}"
        let busy = try endpoint.connectSocket(timeout: 30)
        defer { close(busy) }
        let request = Array("POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        XCTAssertEqual(request.withUnsafeBytes { send(busy, $0.baseAddress!, request.count, Int32(MSG_NOSIGNAL)) }, request.count)
        usleep(20_000)
        kill(daemon.processIdentifier, SIGTERM)
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(busy, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        let text = String(decoding: answer, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), String(text.prefix(300)))
        XCTAssertTrue(text.contains("Connection: close"), String(text.prefix(300)))
        XCTAssertEqual(text.components(separatedBy: "],[").count, 48, "all 48 embeddings arrive")
        let end = Date(timeIntervalSinceNow: 30)
        while daemon.isRunning && Date() < end { usleep(20_000) }
        XCTAssertFalse(daemon.isRunning)
        XCTAssertEqual(daemon.terminationStatus, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socketPath), "the socket file is removed")
        XCTAssertThrowsError(try idle.request(method: "GET", path: "/healthz"), "the idle connection was closed")
        let finalLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(finalLog.contains("draining") && finalLog.contains("stopped"), finalLog)
    }
}
