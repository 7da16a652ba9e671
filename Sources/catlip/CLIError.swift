import ArgumentParser

/// A failure reported as one line on stderr with a non-zero exit status.
struct CLIError: Error, CustomStringConvertible {
    /// The line printed, naming the file or request and the problem.
    let description: String

    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning library errors into one-line CLI errors.
func cliRun<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as any CustomStringConvertible & Error {
        throw CLIError(error.description)
    }
}
