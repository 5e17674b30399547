import Foundation
import Testing
import TesseraSimulation

// Serialized: one seed at a time leaves a core for the integration tests' real processes.
@Suite("Deterministic simulation of a chain under faults", .serialized)
struct SimulationTests {
    /// tmpfs when there is one: the simulation crashes processes, not machines.
    static let base = FileManager.default.fileExists(atPath: "/dev/shm")
        ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory

    @Test("every seed keeps every invariant: nothing acknowledged lost, nothing refused applied, replicas converge, money conserved",
          arguments: Array(UInt64(1)...UInt64(200)))
    func seed(_ seed: UInt64) throws {
        let config = SimulationConfig(seed: seed, stores: 2 + Int(seed % 7), steps: 100)
        let folder = Self.base.appendingPathComponent("tessera-sim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let report = try Simulator(config, folder: folder).run()
        #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config)")
        #expect(report.tillAnswers > 0)
    }

    @Test("the same seed replays to the same outcome")
    func replay() throws {
        let config = SimulationConfig(seed: 42, stores: 3, steps: 120)
        let a = try Simulator(config, folder: Self.base.appendingPathComponent("tessera-sim-\(UUID().uuidString)")).run()
        let b = try Simulator(config, folder: Self.base.appendingPathComponent("tessera-sim-\(UUID().uuidString)")).run()
        #expect(a.acknowledged == b.acknowledged && a.faults == b.faults && a.refusedSpends == b.refusedSpends && a.overdrafts == b.overdrafts)
    }
}
