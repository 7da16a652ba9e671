import Dispatch
import Support

/// Images per second out of the batch loader (read, decode, augment, float CHW, multi-hot
/// targets), the loop `catlip bench loader` times. Labels are not the point here: a hash of each
/// sample's key picks one class, so any data with or without captions can be timed.
public enum LoaderBench {
    /// What a run measured.
    public struct Result: Sendable, Equatable {
        /// Images delivered by the last epoch.
        public var images: Int
        /// Samples the loader skipped, over all epochs.
        public var skipped: Int
        /// Images per second of each timed epoch, in order.
        public var imagesPerSecond: [Double]
    }

    /// Epoch 0 (which warms the page cache) and then `repeats` timed epochs over `source`.
    /// Throws when the stream itself fails (a shard that cannot be read).
    public static func run(source: any SampleSource, config: LoaderConfig, repeats: Int) throws -> Result {
        let classes = UInt32(config.classCount)
        let loader = BatchLoader(source: source, config: config) { key in
            // a hash of the key: any fixed spread over the classes does
            [UInt32(FNV1a.hash(key.utf8) % UInt64(classes))]
        }
        var rates: [Double] = []
        var images = 0
        for epoch in 0...repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            loader.start(at: LoaderPosition(epoch: epoch))
            images = 0
            while let b = try loader.next() { images += b.count }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if epoch > 0 { rates.append(Double(images) / seconds) }
        }
        return Result(images: images, skipped: loader.skipped.total, imagesPerSecond: rates)
    }
}
