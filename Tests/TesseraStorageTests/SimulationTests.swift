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

    @Test("under escrow leases every seed keeps the same invariants, with no overdraft at all, no store spending beyond its lease, and every right back at the end",
          arguments: Array(UInt64(1)...UInt64(150)))
    func escrowSeed(_ seed: UInt64) throws {
        let config = SimulationConfig(seed: seed, stores: 2 + Int(seed % 7), steps: 100, policy: .escrow,
                                      workload: seed % 2 == 0 ? .loyal : .uniform)
        let report = try Simulator.run(config)
        #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config)")
        #expect(report.overdrafts == 0)
    }

    @Test("escrow leases on the hub on PostgreSQL", .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"),
          arguments: Array(UInt64(1)...UInt64(10)))
    func escrowSeedOnPostgres(_ seed: UInt64) throws {
        let database = try TestDatabase()
        defer { database.drop() }
        let config = SimulationConfig(seed: seed, stores: 2 + Int(seed % 7), steps: 100, hubDatabase: database.location,
                                      policy: .escrow, workload: .loyal)
        let report = try Simulator.run(config)
        #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config) on PostgreSQL")
    }

    @Test("on the same seeds and a loyal workload, v1's limit overdraws members and leases never do, while still accepting offline spends")
    func escrowAgainstLimit() throws {
        var overdrafts: [SimulationConfig.OfflinePolicyChoice: Int] = [:], accepted: [SimulationConfig.OfflinePolicyChoice: Int] = [:]
        for seed in UInt64(1)...UInt64(40) {
            for policy in SimulationConfig.OfflinePolicyChoice.allCases {
                let report = try Simulator.run(SimulationConfig(seed: seed, stores: 4, steps: 150, policy: policy, workload: .loyal))
                overdrafts[policy, default: 0] += report.overdrafts
                accepted[policy, default: 0] += report.offlineAccepted
            }
        }
        #expect(overdrafts[.escrow] == 0)
        #expect((overdrafts[.limit] ?? 0) > 0)
        #expect((accepted[.escrow] ?? 0) > 0)
    }

    @Test("some seeds cross a new year while stores are offline (yearly tier resets, the tier counter's new-year periods) and keep every invariant")
    func newYear() throws {
        var crossed = 0
        for seed in UInt64(301)...UInt64(315) {
            let config = SimulationConfig(seed: seed, stores: 3, steps: 150)
            let report = try Simulator.run(config)
            #expect(report.violations.isEmpty, "\(report.violations.joined(separator: "\n"))\nreplay: \(config)")
            if report.crossedNewYear { crossed += 1 }
        }
        #expect(crossed >= 2, "\(crossed) of 15 seeds crossed a new year")
    }

    @Test("the same seed replays to the same outcome")
    func replay() throws {
        let config = SimulationConfig(seed: 42, stores: 3, steps: 120)
        let a = try Simulator.run(config)
        let b = try Simulator.run(config)
        #expect(a.acknowledged == b.acknowledged && a.faults == b.faults && a.refusedSpends == b.refusedSpends && a.overdrafts == b.overdrafts)
    }
}
