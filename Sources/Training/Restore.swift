import Distributed
import Foundation
import Shards
import ViT

/// Checkpoints: writing one (rank 0), restoring the newest readable one, sharing it with every
/// rank, and where each rank's loader resumes.
extension Trainer {
    /// Writes a checkpoint of the state and tensors, then prunes the old ones.
    func checkpoint(state: TrainState, model: ViTModel, adam: AdamW, ema: WeightEMA?) throws {
        let blocks = Self.tensorBlocks(model: model, adam: adam, ema: ema).map { UnsafeBufferPointer($0.buffer) }
        var state = state
        state.modelBuffers = Self.bufferBits(model)
        do {
            try CheckpointFile.write(directory: checkpointDirectory, state: state, blocks: blocks)
        } catch {
            throw TrainError("checkpoint: \(error)")
        }
        CheckpointFile.prune(directory: checkpointDirectory, keep: config.run.keepCheckpoints)
    }

    /// The tensor blocks a checkpoint holds, in order: parameters, AdamW's moments, and the EMA
    /// weights with EMA.
    static func tensorBlocks(model: ViTModel, adam: AdamW, ema: WeightEMA?) -> [FloatArena] {
        var blocks = [model.parameters, adam.m, adam.v]
        if let ema { blocks.append(ema.weights) }
        return blocks
    }

    /// The model's buffers (BatchNorm running statistics) as exact bit patterns, nil when it
    /// has none.
    static func bufferBits(_ model: ViTModel) -> [UInt32]? {
        guard model.layout.bufferCount > 0 else { return nil }
        return UnsafeBufferPointer(start: model.buffers.base, count: model.layout.bufferCount).map(\.bitPattern)
    }

    /// Puts a checkpoint's buffers back into the model; throws when their count is not the
    /// model's (a checkpoint of another architecture).
    static func restoreBuffers(_ bits: [UInt32]?, into model: ViTModel, path: String) throws {
        let count = model.layout.bufferCount
        guard (bits?.count ?? 0) == count else {
            throw TrainError("\(path): holds \(bits?.count ?? 0) BatchNorm statistics, the model has \(count)")
        }
        for (i, b) in (bits ?? []).enumerated() { model.buffers.base[i] = Float(bitPattern: b) }
    }

    /// Loads the newest readable checkpoint into the model, optimiser and EMA; unreadable ones
    /// are reported and passed over. Nil when there is none.
    func restore(model: ViTModel, adam: AdamW, ema: WeightEMA?) throws -> TrainState? {
        for path in CheckpointFile.list(directory: checkpointDirectory) {
            do {
                // the whole file is verified first: a damaged header is reported and passed
                // over, not taken for another configuration
                let header = try CheckpointFile.read(path: path)
                if !config.resumes(checkpointFingerprint: header.configFingerprint, worldSize: reducer.worldSize) {
                    throw TrainError("\(path): written under a different configuration (only \(TrainConfig.resumableKeys.sorted().joined(separator: ", ")) may change on resume)")
                }
                if header.hasEMA != (ema != nil) { throw TrainError("\(path): EMA presence differs from the configuration") }
                let blocks = Self.tensorBlocks(model: model, adam: adam, ema: ema).map(\.buffer)
                var state = try CheckpointFile.read(path: path, into: blocks)
                try Self.restoreBuffers(state.modelBuffers, into: model, path: path)
                // the checkpoints this session writes carry this code's fingerprint, also when the
                // one read carries the legacy one
                state.configFingerprint = String(config.fingerprint(worldSize: reducer.worldSize), radix: 16)
                adam.step = state.optimizerStep
                reporter.log("resume: \(path) (step \(state.step))")
                return state
            } catch let error as TrainError {
                throw error
            } catch {
                reporter.log("resume: skipping \(error)")
            }
        }
        return nil
    }

    /// Where rank `rank` of `world` resumes: its own saved position under the same rank count;
    /// otherwise its share of the global prefix the saved ranks consumed (rank r takes the
    /// global samples r, r + world, ... of the epoch), with the batch count of the new
    /// micro-batch size (`batchSize` samples per rank and batch).
    static func loaderPosition(of state: TrainState, rank: Int, world: Int, batchSize: Int) -> LoaderPosition {
        let saved = state.rankLoaders ?? [state.loader]
        if saved.count == world { return saved[rank] }
        let epoch = saved.map(\.epoch).max() ?? 0
        let global = saved.filter { $0.epoch == epoch }.reduce(0) { $0 + $1.consumed }
        let consumed = global > rank ? (global - rank + world - 1) / world : 0
        return LoaderPosition(epoch: epoch, consumed: consumed, batches: global / max(1, batchSize * world))
    }

    /// The state the run continues from and where this rank's loader starts: with `resume`,
    /// the newest readable checkpoint, read by rank 0 and broadcast with its tensors; without
    /// (or when there is none), `fresh` and the seeded initialisation, also broadcast, so that
    /// every rank starts from identical tensors.
    func restoreOrBroadcast(
        fresh: TrainState, resume: Bool, model: ViTModel, adam: AdamW, ema: WeightEMA?
    ) throws -> (state: TrainState, loaderStart: LoaderPosition) {
        let world = reducer.worldSize
        var state = fresh
        var loaderStart = state.loader
        if world == 1 {
            if resume, let restored = try restore(model: model, adam: adam, ema: ema) {
                state = restored
            } else if resume {
                reporter.log("resume: no readable checkpoint in \(checkpointDirectory); starting from step 0")
            }
            loaderStart = Self.loaderPosition(of: state, rank: 0, world: 1, batchSize: config.data.batchSize)
            return (state, loaderStart)
        }
        // rank 0 reads the checkpoint; every rank gets its state and tensors
        var restored: TrainState?
        if isRoot && resume {
            restored = try restore(model: model, adam: adam, ema: ema)
            if restored == nil { reporter.log("resume: no readable checkpoint in \(checkpointDirectory); starting from step 0") }
        }
        let blob = try reducer.broadcast(isRoot ? (try restored.map { Array(try JSONEncoder().encode($0)) } ?? []) : [])
        if !blob.isEmpty {
            guard let shared = try? JSONDecoder().decode(TrainState.self, from: Data(blob)) else {
                throw TrainError("rank \(reducer.rank): the checkpoint state from rank 0 does not decode")
            }
            state = shared
            adam.step = state.optimizerStep
            try Self.restoreBuffers(state.modelBuffers, into: model, path: "rank 0's checkpoint")
            loaderStart = Self.loaderPosition(of: state, rank: reducer.rank, world: world, batchSize: config.data.batchSize)
        }
        // identical starting tensors on every rank (the seeded initialisation or the checkpoint)
        for block in Self.tensorBlocks(model: model, adam: adam, ema: ema) + (model.layout.bufferCount > 0 ? [model.buffers] : []) { try reducer.broadcast(block.base, count: block.count) }
        return (state, loaderStart)
    }
}
