import Foundation
import Testing
import TesseraSimulation
import TesseraStorage
import TesseraTestSupport

// Serialized: one seed at a time leaves a core for the integration tests' real processes.
@Suite("Deterministic simulation of a chain under faults", .serialized)
struct SimulationTests {
    @Test("every seed keeps every invariant: nothing acknowledged lost, nothing refused applied, replicas converge, money conserved",
          arguments: Array(UInt64(1)...UInt64(200)))
    func seed(_ seed: UInt64) throws {
        let config = SimulationConfig(seed: seed, stores: 2 + Int(seed % 7), steps: 100)
        let report = try Simulator.run(config)
        #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config)")
        #expect(report.tillAnswers > 0)
    }

    @Test("the same invariants with the hub on PostgreSQL (a database per seed; hub crashes restart it on the same one)",
          .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"), arguments: Array(UInt64(1)...UInt64(25)))
    func seedOnPostgres(_ seed: UInt64) throws {
        let database = try TestDatabase()
        defer { database.drop() }
        let config = SimulationConfig(seed: seed, stores: 2 + Int(seed % 7), steps: 100, hubDatabase: database.location)
        let report = try Simulator.run(config)
        #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config) on PostgreSQL")
        #expect(report.tillAnswers > 0)
    }

    @Test("the same seed replays to the same outcome")
    func replay() throws {
        let config = SimulationConfig(seed: 42, stores: 3, steps: 120)
        let a = try Simulator.run(config)
        let b = try Simulator.run(config)
        #expect(a.acknowledged == b.acknowledged && a.faults == b.faults && a.refusedSpends == b.refusedSpends && a.overdrafts == b.overdrafts)
    }
}
