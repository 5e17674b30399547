import Foundation
import GRDB
import Synchronization
import Testing
import TesseraStorage
import TesseraTestSupport

/// What the tills were told, collected by the load while processes die under it.
final class TillLedger: Sendable {
    struct Told: Sendable { var op: String; var member: String; var valueChange: Int }
    private let state = Mutex<(told: [Told], stop: Bool)>(([], false))
    func record(_ t: Told) { state.withLock { $0.told.append(t) } }
    var told: [Told] { state.withLock { $0.told } }
    func stop() { state.withLock { $0.stop = true } }
    var stopped: Bool { state.withLock { $0.stop } }
}

@Suite("Processes killed under load", .serialized)
struct CrashLoopTests {
    /// Recharges and sales, each retried with its Idempotency-Key until a till gets an answer
    /// (the node may be dead, restarting, or alive): nothing told to a till may be lost or doubled.
    static func load(_ chain: Chain, store: String, members: [String], ledger: TillLedger, seed: UInt64) async {
        var n = 0
        var rng = SystemRandomNumberGenerator()
        _ = seed
        while !ledger.stopped {
            n += 1
            let member = members[n % members.count]
            let purchase = n % 3 == 0
            let path = purchase ? "/v1/members/\(member)/purchase" : "/v1/members/\(member)/recharge"
            let body = purchase ? #"{"amount":\#(Int.random(in: 1...300, using: &rng)),"pay_from_balance":true}"#
                : #"{"amount":\#(Int.random(in: 100...900, using: &rng))}"#
            let key = "\(store)-\(n)"
            // The till retries the same request with the same key until it hears back, however
            // long the node takes to come back: giving up would leave a sale it cannot account for.
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                guard let answer = try? await HTTP.post(chain.node(store) + path, body, key: key) else {
                    try? await Task.sleep(for: .milliseconds(30))
                    continue
                }
                if answer.status == 201, let txn = answer.json["transaction"] as? [String: Any],
                   let op = txn["id"] as? String, let change = txn["value_change"] as? Int {
                    ledger.record(.init(op: op, member: member, valueChange: change))
                }
                if answer.status == 409 && answer.errorCode == "request_in_progress" {
                    try? await Task.sleep(for: .milliseconds(30))
                    continue
                }
                break
            }
        }
    }

    @Test("kill -9 of nodes and the hub at random moments of a write load: databases intact, nothing told to a till lost or applied twice",
          arguments: Backend.all)
    func killLoop(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["k1", "k2"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("k1")
        try await chain.waitBootstrapped("k2")
        var members: [String: [String]] = [:]
        for store in ["k1", "k2"] {
            for i in 0..<3 {
                let m = try await HTTP.post(chain.node(store) + "/v1/members", #"{"name":"M\#(i)","phone":"+1555\#(store == "k1" ? 1 : 2)0\#(i)00"}"#)
                members[store, default: []].append(try #require(m.json["id"] as? String))
            }
        }
        let ledger = TillLedger()
        let enrolled = members
        let loads = [("k1", UInt64(1)), ("k2", UInt64(2))].map { store, seed in
            let mine = enrolled[store] ?? []
            return Task { await Self.load(chain, store: store, members: mine, ledger: ledger, seed: seed) }
        }
        var rng = SystemRandomNumberGenerator()
        let rounds = 10
        for round in 0..<rounds {
            try await Task.sleep(for: .milliseconds(Int.random(in: 150...600, using: &rng)))
            switch round % 3 {
            case 0:
                chain.killNode("k1")
                try await chain.startNode("k1")
            case 1:
                chain.killHub()
                try await Task.sleep(for: .milliseconds(Int.random(in: 50...400, using: &rng)))
                try await chain.startHub()
            default:
                chain.killNode("k2")
                try await chain.startNode("k2")
            }
        }
        // Progress, not speed, is what is checked: on a busy machine the tills get fewer answers
        // during the kills, so the load runs on (everything alive) until some have come back.
        let enough = Date().addingTimeInterval(60)
        while ledger.told.count <= 50 && Date() < enough { try await Task.sleep(for: .milliseconds(100)) }
        ledger.stop()
        for load in loads { await load.value }
        try await chain.waitSynced(["k1", "k2"])
        let told = ledger.told
        print("crash loop: \(rounds) kills (nodes and hub), \(told.count) transactions told to tills")
        #expect(told.count > 50, "the load made progress through the crashes (\(told.count) answers)")

        // Each member holds exactly what its tills were told, at the hub and at both nodes.
        var expected: [String: Int] = [:]
        for t in told { expected[t.member, default: 0] += t.valueChange }
        func converged() async throws -> Bool {
            for (member, balance) in expected {
                for store in ["k1", "k2"] {
                    guard try await HTTP.get(chain.node(store) + "/v1/members/\(member)").json["balance"] as? Int == balance else { return false }
                }
            }
            return true
        }
        let deadline = Date().addingTimeInterval(60)
        while try await !converged(), Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
        if try await !converged() {
            var report: [String] = []
            for (member, balance) in expected.sorted(by: { $0.key < $1.key }) {
                let k1 = try await HTTP.get(chain.node("k1") + "/v1/members/\(member)").json["balance"] as? Int
                let k2 = try await HTTP.get(chain.node("k2") + "/v1/members/\(member)").json["balance"] as? Int
                let hub = try await chain.hubMember(member).json["balance"] as? Int
                report.append("\(member): told \(balance), k1 \(k1 ?? -1), k2 \(k2 ?? -1), hub \(hub ?? -1)")
            }
            for store in ["k1", "k2"] { report.append("\(store) status: \(try await chain.status(store))") }
            let exceptions = try await HTTP.get(chain.hubURL + "/v1/exceptions", token: chain.admin).text
            Issue.record("did not converge on what the tills were told:\n\(report.joined(separator: "\n"))\nexceptions: \(exceptions.prefix(3000))")
            return
        }
        for (member, balance) in expected {
            #expect(try await chain.hubMember(member).json["balance"] as? Int == balance, "member \(member)")
        }
        chain.stopAll()
        // Every operation a till was told about is at the hub exactly once; the files are sound
        // (on PostgreSQL: the log there, and the hub process's fold file).
        let hub = try DatabaseQueue(path: chain.ws.path("hub") + (backend == .sqlite ? "/hub.sqlite" : "/hub-fold.sqlite"))
        let folded = try await hub.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            return try String.fetchAll(db, sql: "SELECT id FROM ops")
        }
        let ids = try chain.database.map { try PostgresAdmin.strings("SELECT id FROM ops", at: $0.location) } ?? folded
        #expect(Set(ids).count == ids.count)
        let missing = Set(told.map(\.op)).subtracting(ids)
        #expect(missing.isEmpty, "acknowledged but missing at the hub: \(missing.sorted().prefix(5))")
        for store in ["k1", "k2"] {
            let node = try DatabaseQueue(path: chain.ws.path("node-\(store)") + "/node.sqlite")
            let check = try await node.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
            #expect(check == "ok", "node \(store)")
        }
    }
}
