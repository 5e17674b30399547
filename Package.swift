// swift-tools-version: 6.1
import PackageDescription

// One set of settings for every target: Swift 6 language mode (strict concurrency) everywhere.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Tessera",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tessera", targets: ["tessera"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // gzip for pull pages (zlib, which AsyncHTTPClient's decompression links already).
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        // The pure domain: operations, money, clocks, the fold, the default rules. No I/O.
        .target(name: "TesseraCore", swiftSettings: swiftSettings),
        // Wire messages of sync protocol v1 and the node/hub HTTP APIs (pure Codable types).
        .target(name: "TesseraProtocol", dependencies: ["TesseraCore"], swiftSettings: swiftSettings),
        // SQLite storage for nodes and the hub (GRDB); the hub's ledger on PostgreSQL (PostgresNIO).
        .target(
            name: "TesseraStorage",
            dependencies: [
                "TesseraCore", "TesseraProtocol",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the write-ahead log's hook (`BackgroundCheckpoint`).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Shared HTTP edge: JSON bodies, error mapping.
        .target(
            name: "TesseraHTTP",
            dependencies: [
                "TesseraCore", "TesseraProtocol", "TesseraStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TesseraHub",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TesseraNode",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                "TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "tessera",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                "TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraHub", "TesseraNode", "TesseraSimulation", "TesseraBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The benchmark suite (`tessera bench`): real processes, figures beside the raw limits.
        .target(
            name: "TesseraBench",
            dependencies: [
                "TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraNode",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // A deterministic simulation of a whole chain over the real storage and sync code.
        .target(
            name: "TesseraSimulation",
            dependencies: ["TesseraCore", "TesseraProtocol", "TesseraStorage"],
            swiftSettings: swiftSettings
        ),
        // Generators and fixtures shared by the test targets (not part of the product).
        .target(name: "TesseraTestSupport", dependencies: ["TesseraCore", "TesseraStorage"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TesseraCoreTests",
            dependencies: [
                "TesseraCore", "TesseraProtocol", "TesseraTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TesseraStorageTests",
            dependencies: ["TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraSimulation", "TesseraTestSupport",
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "CompressNIO", package: "compress-nio")],
            swiftSettings: swiftSettings
        ),
        // Starts real `tessera` processes on loopback ports with SQLite files in temporary folders.
        .testTarget(
            name: "TesseraIntegrationTests",
            dependencies: [
                "TesseraCore", "TesseraProtocol", "TesseraStorage", "TesseraNode", "TesseraHub", "TesseraTestSupport", "tessera",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
