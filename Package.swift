// swift-tools-version:6.0
// catlip: CatLIP-style image encoder pretraining, evaluation and serving in Swift.
//
// Code generation: release builds of the Swift targets are compiled for a chosen CPU, because
// on x86_64 Linux Swift otherwise targets baseline x86-64 (SSE2, no FMA) and SIMD code runs
// slower than scalar code (../shared/SWIFT_NOTES.md). The CPU comes from the environment
// variable CATLIP_TARGET_CPU: `native` (the default: users build from source on the machine that
// runs it), a CPU name such as `haswell` or `znver4`, or `generic` for a portable build with no
// `-target-cpu` flag. Debug builds never get the flag.
import PackageDescription

let targetCPU = Context.environment["CATLIP_TARGET_CPU"] ?? "native"
let releaseFlags: [SwiftSetting] =
    targetCPU == "generic"
    ? []
    : [
        .unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .release)),
        // the SIMD micro-kernels compile to vector code: ViT's GEMM uses them (Gemm.swift)
        .define("CATLIP_VECTOR_KERNELS", .when(configuration: .release)),
    ]
let cReleaseFlags: [CSetting] =
    targetCPU == "generic"
    ? []
    : [.unsafeFlags(["-march=\(targetCPU)"], .when(configuration: .release))]

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "catlip",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "catlip", targets: ["catlip"]),
        .library(name: "Imaging", targets: ["Imaging"]),
        .library(name: "WordNet", targets: ["WordNet"]),
        .library(name: "Shards", targets: ["Shards"]),
        .library(name: "Corpus", targets: ["Corpus"]),
        .library(name: "ViT", targets: ["ViT"]),
        .library(name: "Encoder", targets: ["Encoder"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Serving", targets: ["Serving"]),
        .library(name: "Distributed", targets: ["Distributed"]),
        .library(name: "Interop", targets: ["Interop"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
    ],
    targets: [
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // The only place that calls setjmp: libjpeg and libpng report errors by longjmp.
        .target(
            name: "CImageCodecs",
            dependencies: ["CJPEG", "CPNG"],
            cSettings: [.unsafeFlags(["-O2"])] + cReleaseFlags),
        // What every module shares: safe file I/O and atomic replacement, the seeded generator,
        // FNV-1a, JSON/XML text, line splitting, skip reports, the monotonic clock. No dependencies.
        .target(name: "Support", swiftSettings: strict + releaseFlags),
        .target(
            name: "Imaging",
            dependencies: ["CImageCodecs", "Support"],
            swiftSettings: strict + releaseFlags),
        .target(
            name: "WordNet",
            dependencies: ["Support"],
            swiftSettings: strict + releaseFlags),
        // Inline helpers the engine cannot spell in Swift: spin hint, prefetch, futex.
        .target(name: "CViTSupport", cSettings: [.unsafeFlags(["-O2"])]),
        .target(
            name: "ViT",
            dependencies: ["COpenBLAS", "CViTSupport", "Support"],
            swiftSettings: strict + releaseFlags),
        // The one image-encoder path: pretrained_cfg's eval preprocessing, forward, rows.
        .target(
            name: "Encoder",
            dependencies: ["Imaging", "ViT"],
            swiftSettings: strict + releaseFlags),
        .target(
            name: "Shards",
            dependencies: ["Support", "Imaging"],
            swiftSettings: strict + releaseFlags),
        .target(
            name: "Corpus",
            dependencies: ["Imaging", "Shards", "WordNet"],
            swiftSettings: strict + releaseFlags),
        // Data-parallel collectives behind a small interface (MPI when launched by mpirun).
        .target(
            name: "Distributed",
            dependencies: ["CMPI", "Support"],
            swiftSettings: strict + releaseFlags),
        .target(
            name: "Training",
            dependencies: [
                "Support", "Imaging", "WordNet", "Shards", "ViT", "Encoder", "Evaluation", "Distributed",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict + releaseFlags),
        .target(
            name: "Evaluation",
            dependencies: ["Support", "WordNet", "Shards", "ViT", "Encoder", "Imaging"],
            swiftSettings: strict + releaseFlags),
        // The daemon: HTTP/1.1 on SwiftNIO, dynamic batching for the engine, the image index.
        .target(
            name: "Serving",
            dependencies: [
                "Support", "Imaging", "WordNet", "Shards", "ViT", "Encoder", "Evaluation", "COpenBLAS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict + releaseFlags),
        // Models in from other frameworks: corenet's and timm's checkpoints to model directories.
        .target(
            name: "Interop",
            dependencies: ["Support", "WordNet", "ViT"],
            swiftSettings: strict + releaseFlags),
        .executableTarget(
            name: "catlip",
            dependencies: [
                "Support",
                "Imaging",
                "WordNet",
                "Shards",
                "Corpus",
                "ViT",
                "Encoder",
                "Training",
                "Evaluation",
                "Serving",
                "Distributed",
                "Interop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict + releaseFlags),
        // Shared by the test targets: the seeded mutators of the fuzz tests.
        .target(
            name: "TestSupport",
            dependencies: ["Imaging", "Support"],
            path: "Tests/TestSupport",
            swiftSettings: strict),
        .testTarget(
            name: "ImagingTests",
            dependencies: ["TestSupport", "Support", "Imaging"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "WordNetTests",
            dependencies: ["TestSupport", "Support", "WordNet", "Imaging"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "ShardsTests",
            dependencies: ["TestSupport", "Support", "Shards", "Imaging", "WordNet"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "ViTTests",
            dependencies: ["TestSupport", "Support", "ViT", "Encoder"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "InteropTests",
            dependencies: ["TestSupport", "Support", "Interop", "ViT", "WordNet"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "CorpusTests",
            dependencies: ["TestSupport", "Support", "Corpus", "Imaging", "Shards", "WordNet"],
            swiftSettings: strict),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["TestSupport", "Support", "Training", "Evaluation", "Shards", "ViT", "WordNet", "Imaging"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "EvaluationTests",
            dependencies: ["TestSupport", "Support", "Evaluation", "WordNet", "ViT", "Encoder", "Imaging"],
            swiftSettings: strict),
        .testTarget(
            name: "ServingTests",
            dependencies: ["TestSupport", "Support", "Serving", "Evaluation", "ViT", "Encoder", "Imaging", "WordNet"],
            swiftSettings: strict),
        .testTarget(
            name: "catlipTests",
            dependencies: ["TestSupport", "Support", "Imaging", "ViT", "Encoder", "Serving", "catlip"],
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
