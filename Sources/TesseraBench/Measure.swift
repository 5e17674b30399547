import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Latencies of one run, in nanoseconds, and the wall time it took.
struct Latencies: Sendable {
    var samples: [UInt64]
    var wallSeconds: Double

    var sorted: [UInt64] { samples.sorted() }
    func percentile(_ p: Double) -> Double {
        let s = sorted
        guard !s.isEmpty else { return .nan }
        let rank = Swift.min(s.count - 1, Swift.max(0, Int((p / 100 * Double(s.count)).rounded(.up)) - 1))
        return Double(s[rank]) / 1e6
    }
    var p50: Double { percentile(50) }
    var p99: Double { percentile(99) }
    var max: Double { Double(samples.max() ?? 0) / 1e6 }
    var perSecond: Double { Double(samples.count) / wallSeconds }
}

enum Clock {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}

/// Runs `total` calls of `work` from `concurrency` workers, each waiting for its answer before
/// the next (a till does one sale at a time), and times every call.
func load(concurrency: Int, total: Int, _ work: @escaping @Sendable (Int) async throws -> Void) async throws -> Latencies {
    let started = Clock.now()
    let perWorker = Swift.max(1, total / concurrency)
    let samples = try await withThrowingTaskGroup(of: [UInt64].self) { group in
        for w in 0..<concurrency {
            group.addTask {
                var mine: [UInt64] = []
                mine.reserveCapacity(perWorker)
                for i in 0..<perWorker {
                    let t = Clock.now()
                    try await work(w * perWorker + i)
                    mine.append(Clock.now() - t)
                }
                return mine
            }
        }
        var all: [UInt64] = []
        for try await part in group { all += part }
        return all
    }
    return Latencies(samples: samples, wallSeconds: Double(Clock.now() - started) / 1e9)
}

/// Times a synchronous block in seconds.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t = Clock.now()
    try body()
    return Double(Clock.now() - t) / 1e9
}

func secondsAsync(_ body: () async throws -> Void) async rethrows -> Double {
    let t = Clock.now()
    try await body()
    return Double(Clock.now() - t) / 1e9
}

/// Peak resident memory of a process (VmHWM), in bytes.
func peakRSS(pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// Bytes of a SQLite database with its WAL and shared-memory files.
func diskBytes(_ path: String) -> Int {
    ["", "-wal", "-shm"].reduce(0) { sum, suffix in
        let size = (try? FileManager.default.attributesOfItem(atPath: path + suffix)[.size] as? Int) ?? 0
        return sum + size
    }
}

/// What this machine is, for the record beside the figures.
func machineDescription() -> String {
    let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown CPU"
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let memory = ProcessInfo.processInfo.physicalMemory / (1 << 30)
    var name = utsname()
    uname(&name)
    let kernel = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return "\(cores) cores (\(cpu)), \(memory) GiB, Linux \(kernel)"
}

func ms(_ value: Double) -> String { String(format: value < 10 ? "%.2f ms" : "%.0f ms", value) }
func rate(_ value: Double, _ unit: String) -> String { String(format: "%.0f %@", value, unit) }
func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
