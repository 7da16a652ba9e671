import ArgumentParser

/// The root command: `catlip <command> ...`.
struct Catlip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catlip",
        abstract: "Pretrain image encoders on image-text data the CatLIP way, and use them.",
        subcommands: [ImageCommand.self, VocabCommand.self, ShardsCommand.self, DatasetsCommand.self, TrainCommand.self, EvalCommand.self, EmbedCommand.self, IndexCommand.self, ServeCommand.self, QueryCommand.self, BenchCommand.self])
}
