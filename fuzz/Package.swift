// swift-tools-version: 6.1
// A libFuzzer target for the protocol's operation decoder and validator, the fold, and the
// programme (rules) parser and pricing. Kept apart from the main package: it needs the fuzzer
// and address sanitizers. Build and run (from this folder):
//   swift build -c release --sanitize fuzzer --sanitize address
//   .build/release/TesseraFuzz corpus -max_total_time=300
// TesseraCore is the main package's own source folder (a symlink), not a copy.
import PackageDescription

let package = Package(
    name: "TesseraFuzz",
    platforms: [.macOS(.v15)],
    targets: [
        // Coverage is asked for explicitly: `--sanitize fuzzer` alone left the counters out here.
        .target(name: "TesseraCore", swiftSettings: [
            .enableUpcomingFeature("ExistentialAny"), .unsafeFlags(["-sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp"]),
        ]),
        .executableTarget(
            name: "TesseraFuzz",
            dependencies: ["TesseraCore"],
            swiftSettings: [.unsafeFlags(["-parse-as-library", "-sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp"])]
        ),
    ]
)
