import ArgumentParser
import Support

/// The root command: `catlip <command> ...`.
struct Catlip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catlip",
        abstract: "Pretrain image encoders on image-text data the CatLIP way, and use them.",
        subcommands: [ImageCommand.self, VocabCommand.self, ShardsCommand.self, DatasetsCommand.self, TrainCommand.self, EvalCommand.self, EmbedCommand.self, IndexCommand.self, ServeCommand.self, QueryCommand.self, BenchCommand.self, ImportCommand.self])

    // A flag of the root only (CommandConfiguration's `version` would add --version to the
    // help of every subcommand).
    @Flag(help: "Print the version and exit.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(CatlipVersion.string)
    }
}
