import Foundation
import Testing
import TesseraTestSupport

/// `tessera bench` at a tiny size: every part runs against real processes and prints its row.
/// (Its figures are not checked: timings belong to benchmarks, never to tests.)
@Suite struct BenchTests {
    @Test func theBenchmarkSuiteRunsEveryPartAndPrintsItsTable() throws {
        let ws = try Workspace()
        // With a PostgreSQL server, the hub-on-PostgreSQL rows too.
        let postgres = Backend.server.map { ["--postgres", $0.url] } ?? []
        let out = try ws.run(["bench", "--size", "smoke", "--dir", ws.path("bench"), "--out", ws.path("table.md")] + postgres)
        let table = try String(contentsOfFile: ws.path("table.md"), encoding: .utf8)
        for row in ["Limit: SQLite single-row commit", "Limit: empty handler", "Purchase, 1 till: p50", "Purchase, 8 tills: p99",
                    "Purchases per second", "Stored-value spend", "Hub ingest on SQLite", "beside the rows the hub keeps", "Catch-up: 3 stores",
                    "Hub peak memory", "Bootstrap: new node", "Bootstrap: bytes transferred", "Node peak memory",
                    "Pull when up to date", "Pull cost", "import members: 200 rows", "import members: 1,000,000 rows at that rate", "liabilities now (median of 3)", "settlement, open period",
                    "settlement flows, one pair", "segment tiers", "Reports chain: the hub starts", "Upgrade: a hub with no summaries"] {
            #expect(table.contains(row), "no row \(row) in:\n\(out)")
        }
        if Backend.postgresAvailable {
            for row in ["Hub ingest on PostgreSQL, 1 hub process", "Hub ingest on PostgreSQL, 2 hub processes", "New hub process on PostgreSQL builds its fold"] {
                #expect(table.contains(row), "no row \(row) in:\n\(out)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: ws.path("bench")), "the bench folder is removed unless --keep")
    }

    /// Regression: under `--programme` (a chain whose rules are at version 1 already) the till
    /// part stopped at its escrow step, which published version 1 again (409).
    @Test func theChainPartsRunUnderARealProgramme() throws {
        let ws = try Workspace()
        let out = try ws.run(["bench", "--size", "smoke", "--only", "till,ingest", "--programme", Examples.url("fresh-market").path,
                              "--dir", ws.path("bench"), "--out", ws.path("table.md")])
        let table = try String(contentsOfFile: ws.path("table.md"), encoding: .utf8)
        for row in ["Purchase, 1 till: p50", "Stored-value spend within the store's lease", "Hub ingest on SQLite"] {
            #expect(table.contains(row), "no row \(row) in:\n\(out)")
        }
    }
}
