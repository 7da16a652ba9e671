import CMPI
import Dispatch
import Foundation
import Support

#if canImport(Glibc)
    import Glibc
#endif

/// Data-parallel collectives on OpenMPI: MPI_Iallreduce per gradient bucket (MPI_IN_PLACE,
/// float sums), MPI_Allreduce for step statistics, MPI_Gatherv / MPI_Bcast for small blobs.
/// MPI runs with MPI_ERRORS_RETURN, so a failed call is a thrown `DistributedError`; a
/// watchdog thread ends the process with a message when one collective takes longer than
/// `timeout` (a dead peer or a broken network would otherwise hang it). Only the thread that
/// created it calls MPI (MPI_THREAD_FUNNELED).
public final class MPIReducer: GradientReducer, @unchecked Sendable {
    /// This process's rank.
    public let rank: Int
    /// Number of ranks.
    public let worldSize: Int
    /// Seconds one collective may take before the watchdog ends the process.
    public let timeout: Double
    private let comm: MPI_Comm
    private var requests: [MPI_Request?] = []
    private let watch = NSLock()
    private var operation: (name: String, started: Double)?
    private var finalized = false

    nonisolated(unsafe) private static var instance: MPIReducer?

    /// The process's reducer (MPI is initialised once per process).
    public static func shared(timeout: Double) throws -> MPIReducer {
        if let instance { return instance }
        let made = try MPIReducer(timeout: timeout)
        instance = made
        return made
    }

    private init(timeout: Double) throws {
        var provided: Int32 = 0
        let status = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        guard status == MPI_SUCCESS else { throw DistributedError("MPI_Init_thread failed (\(status))") }
        comm = catlip_mpi_comm_world()
        MPI_Comm_set_errhandler(comm, catlip_mpi_errors_return())
        var r: Int32 = 0, n: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &n)
        rank = Int(r)
        worldSize = Int(n)
        self.timeout = timeout
        let t = Thread { [weak self] in self?.watchdog() }
        t.name = "catlip-mpi-watchdog"
        t.start()
    }


    private func watchdog() {
        while true {
            sleep(1)
            watch.lock()
            let op = operation
            let done = finalized
            watch.unlock()
            if done { return }
            if let op, MonotonicClock.seconds() - op.started > timeout {
                let line = "rank \(rank) of \(worldSize): \(op.name) did not complete within \(Int(timeout)) s: "
                    + "a rank died or the network failed; stopping (the last checkpoint is intact)\n"
                FileHandle.standardError.write(Data(line.utf8))
                _exit(1)
            }
        }
    }

    /// Runs `body` as the collective `name` under the watchdog, turning MPI's error code
    /// into a `DistributedError`.
    private func collective(_ name: String, _ body: () -> Int32) throws {
        watch.lock()
        operation = (name, MonotonicClock.seconds())
        watch.unlock()
        let status = body()
        watch.lock()
        operation = nil
        watch.unlock()
        guard status == MPI_SUCCESS else {
            var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
            var length: Int32 = 0
            MPI_Error_string(status, &text, &length)
            let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DistributedError("rank \(rank) of \(worldSize): \(name) failed: \(message)")
        }
    }

    /// Starts an in-place float sum (MPI_Iallreduce), in pieces of at most 2^30 floats.
    public func startSum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        var offset = 0
        while offset < count {
            let n = min(count - offset, 1 << 30)
            var request: MPI_Request? = catlip_mpi_request_null()
            try collective("MPI_Iallreduce of \(n) floats") {
                MPI_Iallreduce(
                    catlip_mpi_in_place(), values + offset, Int32(n), catlip_mpi_float(), catlip_mpi_sum(), comm, &request)
            }
            requests.append(request)
            offset += n
        }
    }

    /// Waits for the started sums (MPI_Waitall).
    public func finishSums() throws {
        guard !requests.isEmpty else { return }
        let count = requests.count
        try collective("MPI_Waitall of \(count) gradient buckets") {
            requests.withUnsafeMutableBufferPointer { MPI_Waitall(Int32(count), $0.baseAddress, catlip_mpi_statuses_ignore()) }
        }
        requests.removeAll(keepingCapacity: true)
    }

    /// Sums doubles over the ranks (MPI_Allreduce, in place).
    public func sum(_ values: inout [Double]) throws {
        let n = values.count
        try values.withUnsafeMutableBufferPointer { buffer in
            try collective("MPI_Allreduce of \(n) statistics") {
                MPI_Allreduce(catlip_mpi_in_place(), buffer.baseAddress, Int32(n), catlip_mpi_double(), catlip_mpi_sum(), comm)
            }
        }
    }

    /// Every rank's bytes at rank 0 (MPI_Gather of the lengths, then MPI_Gatherv).
    public func gather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var length = Int64(bytes.count)
        var lengths = [Int64](repeating: 0, count: worldSize)
        try lengths.withUnsafeMutableBufferPointer { out in
            try collective("MPI_Gather of blob lengths") {
                MPI_Gather(&length, 1, catlip_mpi_int64(), out.baseAddress, 1, catlip_mpi_int64(), 0, comm)
            }
        }
        var counts = lengths.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: worldSize)
        for i in 1..<worldSize { displacements[i] = displacements[i - 1] + counts[i - 1] }
        var all = [UInt8](repeating: 0, count: rank == 0 ? Int(lengths.reduce(0, +)) : 0)
        var send = bytes
        try send.withUnsafeMutableBufferPointer { s in
            try all.withUnsafeMutableBufferPointer { a in
                try collective("MPI_Gatherv of blobs") {
                    MPI_Gatherv(s.baseAddress, Int32(s.count), catlip_mpi_byte(), a.baseAddress, &counts, &displacements,
                                catlip_mpi_byte(), 0, comm)
                }
            }
        }
        guard rank == 0 else { return [] }
        return (0..<worldSize).map { Array(all[Int(displacements[$0])..<Int(displacements[$0] + counts[$0])]) }
    }

    /// Rank 0's bytes on every rank (MPI_Bcast of the length, then the bytes).
    public func broadcast(_ bytes: [UInt8]) throws -> [UInt8] {
        var length = Int64(bytes.count)
        try collective("MPI_Bcast of a blob length") { MPI_Bcast(&length, 1, catlip_mpi_int64(), 0, comm) }
        var out = rank == 0 ? bytes : [UInt8](repeating: 0, count: Int(length))
        try out.withUnsafeMutableBufferPointer { b in
            try collective("MPI_Bcast of a blob") { MPI_Bcast(b.baseAddress, Int32(length), catlip_mpi_byte(), 0, comm) }
        }
        return out
    }

    /// Rank 0's floats on every rank (MPI_Bcast in pieces of at most 2^30 floats).
    public func broadcast(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        var offset = 0
        while offset < count {
            let n = min(count - offset, 1 << 30)
            try collective("MPI_Bcast of \(n) floats") { MPI_Bcast(values + offset, Int32(n), catlip_mpi_float(), 0, comm) }
            offset += n
        }
    }

    /// MPI_Finalize (after a barrier, so that no rank leaves while another still sends).
    public func finalize() {
        watch.lock()
        let done = finalized
        watch.unlock()
        guard !done else { return }
        try? collective("MPI_Barrier before MPI_Finalize") { MPI_Barrier(comm) }
        MPI_Finalize()
        watch.lock()
        finalized = true
        watch.unlock()
    }
}
