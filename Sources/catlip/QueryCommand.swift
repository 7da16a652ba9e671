import ArgumentParser
import Foundation
import Imaging
import Serving

/// `catlip query`: the daemon's client for people and scripts.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Ask a running catlip serve: embed, classify or search images; or health.",
        discussion: "Prints one JSON line per file: {\"file\", \"embedding\"}, {\"file\", \"labels\"} or "
            + "{\"file\", \"matches\"}. A file the daemon rejects is reported on stderr and the exit status is 1. "
            + "Answers over 256 MiB, malformed answers and a socket or daemon of another user's are errors.")

    @OptionGroup var daemon: EndpointOptions

    @Option(help: "Results per image (classify, search).")
    var topK: Int?

    @Option(help: "Seconds to send each request and receive its whole answer (above 0, at most 86400).")
    var timeout = 120.0

    @Argument(help: "embed, classify, search or health.")
    var action: QueryAction

    @Option(help: "search only: words instead of images (\"red car\"): through WordNet to the model's head rows; prints {\"text\", \"synsets\", \"matches\"}.")
    var text: String?

    @Argument(help: "Image files.")
    var files: [String] = []

    func validate() throws {
        if text != nil && action != .search { throw ValidationError("--text goes with search") }
        if text != nil && !files.isEmpty { throw ValidationError("give --text or image files, not both") }
        if action != .health && files.isEmpty && text == nil { throw ValidationError("give at least one image file") }
        if daemon.socket != nil && daemon.url != nil { throw ValidationError("give --socket or --url, not both") }
        if let topK, !(1...1000).contains(topK) { throw ValidationError("--top-k must be in 1...1000") }
        do {
            try BlockingHTTPClient.checkTimeout(timeout, option: "--timeout")
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        let client = BlockingHTTPClient(endpoint: try daemon.endpoint(), timeout: timeout)
        guard let endpoint = action.endpoint else {
            let r = try cliRun { try client.request(method: "GET", path: "/healthz") }
            print(r.text.trimmingCharacters(in: .newlines))
            if r.status != 200 { throw ExitCode(1) }
            return
        }
        let query = topK.map { "?top_k=\($0)" } ?? ""
        if let text {
            var request: [String: Any] = ["text": text]
            if let topK { request["top_k"] = topK }
            let body = try JSONSerialization.data(withJSONObject: request)
            let r = try cliRun {
                try client.request(method: "POST", path: endpoint.path, contentType: "application/json", body: Array(body))
            }
            guard r.status == 200, let object = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
                let message = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
                    .flatMap { $0["error"] as? [String: Any] }.map { "\($0["code"] ?? "") \($0["message"] ?? "")" } ?? r.text
                throw CLIError("'\(text)': \(r.status) \(message)")
            }
            let line: [String: Any] = [
                "text": text, "synsets": (object["query"] as? [String: Any])?["synsets"] ?? [],
                "matches": ((object["results"] as? [[String: Any]])?.first)?["matches"] ?? [],
            ]
            let out = try JSONSerialization.data(withJSONObject: line, options: [.withoutEscapingSlashes, .sortedKeys])
            print(String(decoding: out, as: UTF8.self))
            return
        }
        var failed = 0
        for file in files {
            // a regular file within the image cap: a FIFO or /dev/zero is reported, not sent
            let data: [UInt8]
            do { data = try readFileBytes(file) } catch {
                printError("\(error)")
                failed += 1
                continue
            }
            let r = try cliRun {
                try client.request(method: "POST", path: endpoint.path + query, contentType: "application/octet-stream", body: data)
            }
            guard r.status == 200,
                let object = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
            else {
                let message = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
                    .flatMap { $0["error"] as? [String: Any] }.map { "\($0["code"] ?? "") \($0["message"] ?? "")" } ?? r.text
                printError("\(file): \(r.status) \(message)")
                failed += 1
                continue
            }
            var line: [String: Any] = ["file": file]
            switch endpoint {
            case .embed: line["embedding"] = (object["embeddings"] as? [Any])?.first
            case .classify: line["labels"] = ((object["results"] as? [[String: Any]])?.first)?["labels"]
            case .search: line["matches"] = ((object["results"] as? [[String: Any]])?.first)?["matches"]
            }
            let text = try JSONSerialization.data(withJSONObject: line, options: [.withoutEscapingSlashes, .sortedKeys])
            print(String(decoding: text, as: UTF8.self))
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
