import Foundation

/// What data-parallel training needs from the ranks: sums of gradient buffers (started as
/// soon as each part is final, finished together), sums of small per-step statistics, and
/// moving small byte blobs between rank 0 and the others. Training only sees this interface;
/// `LocalReducer` is the single process, `MPIReducer` the MPI job.
public protocol GradientReducer: AnyObject {
    /// This process's rank, 0 ..< worldSize.
    var rank: Int { get }
    /// Number of ranks.
    var worldSize: Int { get }
    /// Starts summing `count` floats at `values` over the ranks, in place; the memory must not
    /// be touched until `finishSums()` returns.
    func startSum(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    /// Waits for every sum started since the last call.
    func finishSums() throws
    /// Sums `values` over the ranks, in place (step statistics, stop votes).
    func sum(_ values: inout [Double]) throws
    /// Every rank's `bytes`, in rank order, at rank 0 (empty elsewhere).
    func gather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Rank 0's `bytes` on every rank.
    func broadcast(_ bytes: [UInt8]) throws -> [UInt8]
    /// Rank 0's `count` floats at `values` on every rank, in place.
    func broadcast(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    /// Ends the job's communication once this rank is done with it (for MPI: a barrier, so
    /// that no rank leaves while another still sends, then MPI_Finalize). Every process that
    /// made a reducer calls it before exiting normally; later calls do nothing.
    func finalize()
}

/// A failure of the job's communication, naming the rank and the operation.
public struct DistributedError: Error, Sendable, CustomStringConvertible {
    /// What failed.
    public var description: String
    /// An error with its message.
    public init(_ description: String) { self.description = description }
}

/// The single-process reducer: one rank, every operation the identity.
public final class LocalReducer: GradientReducer {
    /// Always 0.
    public let rank = 0
    /// Always 1.
    public let worldSize = 1
    /// The one-rank reducer.
    public init() {}
    /// Nothing to sum.
    public func startSum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {}
    /// Nothing to wait for.
    public func finishSums() throws {}
    /// The sum over one rank is the value.
    public func sum(_ values: inout [Double]) throws {}
    /// This rank's bytes.
    public func gather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    /// This rank's bytes.
    public func broadcast(_ bytes: [UInt8]) throws -> [UInt8] { bytes }
    /// Nothing to copy.
    public func broadcast(_ values: UnsafeMutablePointer<Float>, count: Int) throws {}
    /// Nothing to end.
    public func finalize() {}
}

/// The reducer for this process: `MPIReducer` when launched by mpirun (OpenMPI's
/// `OMPI_COMM_WORLD_SIZE` is set), else `LocalReducer`. `timeout` bounds every collective:
/// a rank that died or a network that failed ends the process with an error naming the
/// operation instead of hanging.
public func makeReducer(timeout: Double = 300) throws -> any GradientReducer {
    let env = ProcessInfo.processInfo.environment
    guard env["OMPI_COMM_WORLD_SIZE"] != nil else { return LocalReducer() }
    return try MPIReducer.shared(timeout: timeout)
}
