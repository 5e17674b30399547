import Foundation
import Synchronization
import Testing
import TesseraCore
import TesseraNode
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// Two `tessera hub` processes on one PostgreSQL database, each with its own fold, and stores
/// whose replicas (in-process, the real till code) push, pull and ask for authorisation
/// through either hub.
final class TwoHubs: @unchecked Sendable {
    let ws: Workspace
    let database: TestDatabase
    private(set) var urls: [URL] = []
    private(set) var tokens: [String: String] = [:]
    let admin: String

    init(stores: [String]) async throws {
        ws = try Workspace()
        database = try TestDatabase()
        ws.onRemove { [database] in database.drop() }
        for store in stores {
            tokens[store] = try ws.lastLine(["store", "add", store, "--name", store, "--database", database.url])
        }
        admin = try ws.lastLine(["admin", "token", "--database", database.url])
        for i in 0..<2 {
            let hub = try ws.start("hub\(i)", ["hub", "--data", ws.path("hub\(i)"), "--database", database.url, "--listen", "127.0.0.1:0"])
            urls.append(try #require(URL(string: try await hub.url())))
        }
    }

    func client(_ store: String, hub: Int) -> HubClient {
        HubClient(base: urls[hub], token: tokens[store] ?? "", authorizeTimeout: 30)
    }

    /// A store's replica, bootstrapped through hub 0.
    func replica(_ store: String) async throws -> NodeStore {
        let node = try NodeStore(path: ws.path("node-\(store).sqlite"), store: try #require(StoreID(rawValue: store)))
        try node.bootstrap(try await client(store, hub: 0).snapshot())
        return node
    }

    /// Pushes a replica's outbox through one hub, `batch` operations at a time; returns the ids.
    func pushAll(_ node: NodeStore, hub: Int, batch: Int) async throws -> [String] {
        var pushed: [String] = []
        let client = self.client(node.store.rawValue, hub: hub)
        while true {
            let ops = try node.pendingBatch(limit: batch)
            if ops.isEmpty { return pushed }
            let answer = try await client.push(PushRequest(store: node.store, ops: ops))
            #expect(answer.results.allSatisfy { $0.status == .accepted })
            try node.recordPush(answer.results)
            pushed += ops.map(\.id.description)
        }
    }

    /// Pulls a replica up to date through one hub.
    func pullAll(_ node: NodeStore, hub: Int) async throws {
        let client = self.client(node.store.rawValue, hub: hub)
        while true {
            let page = try await client.pull(after: try node.counts().cursor, pending: 0)
            try node.applyPull(page)
            if !page.more { return }
        }
    }
}

@Suite("Several hub processes on one PostgreSQL database", .serialized, .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"))
struct MultiHubTests {
    @Test("stores push through two hubs at once; a puller alternating between them sees every operation exactly once, versions without a gap")
    func noSequenceGaps() async throws {
        let stores = ["s1", "s2", "s3", "s4"]
        let hubs = try await TwoHubs(stores: stores)
        var replicas: [NodeStore] = []
        for (i, store) in stores.enumerated() {
            let node = try await hubs.replica(store)
            for m in 0..<40 {
                let answer = try node.enrol(NodeAPI.Enrol(name: "M \(store) \(m)", phone: "+1555\(i)\(String(format: "%06d", m))"), key: nil)
                #expect(answer.status == 201)
                let id = try #require((try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])?["id"] as? String)
                #expect(try node.recharge(MemberID(id), NodeAPI.Recharge(amount: 100), key: nil).status == 201)
            }
            replicas.append(node)
        }
        let expected = 4 * 80
        let done = Atomic(false)
        // Pushers: two stores through each hub, small batches, all at once; a puller meanwhile.
        async let pulled: [(Int64, String)] = {
            var seen: [(Int64, String)] = []
            var cursor: Int64 = 0
            var turn = 0
            while true {
                let finished = done.load(ordering: .acquiring)
                let page = try await hubs.client("s1", hub: turn % 2).pull(after: cursor, pending: 0)
                turn += 1
                seen += page.ops.map { ($0.version, $0.op.id.description) }
                cursor = page.cursor
                if finished && page.ops.isEmpty { return seen }
            }
        }()
        let pushed = try await withThrowingTaskGroup(of: [String].self) { group in
            for (i, node) in replicas.enumerated() {
                group.addTask { try await hubs.pushAll(node, hub: i % 2, batch: 3 + i) }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        done.store(true, ordering: .releasing)
        let seen = try await pulled
        #expect(pushed.count == expected)
        #expect(seen.map(\.0) == Array(1...Int64(expected)), "versions 1...N, each once, in order")
        #expect(Set(seen.map(\.1)) == Set(pushed) && seen.count == pushed.count, "every pushed operation pulled exactly once")
    }

    @Test("the same member spending at two stores at the same instant through two hubs never overdraws")
    func concurrentAuthorisations() async throws {
        let hubs = try await TwoHubs(stores: ["s1", "s2"])
        let one = try await hubs.replica("s1"), two = try await hubs.replica("s2")
        var members: [MemberID] = []
        for m in 0..<12 {
            let answer = try one.enrol(NodeAPI.Enrol(name: "Pat \(m)", phone: "+1555700\(String(format: "%04d", m))"), key: nil)
            let id = MemberID(try #require((try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])?["id"] as? String))
            #expect(try one.recharge(id, NodeAPI.Recharge(amount: 1000), key: nil).status == 201)
            members.append(id)
        }
        _ = try await hubs.pushAll(one, hub: 0, batch: 100)
        try await hubs.pullAll(two, hub: 1)
        // Each member: 700 at s1 through hub 0 and 700 at s2 through hub 1, asked together.
        let buy = NodeAPI.PurchaseRequest(amount: 700, payFromBalance: true)
        var accepted = 0
        for member in members {
            guard case .authorize(let first) = try one.beginPurchase(member, buy, key: nil),
                  case .authorize(let second) = try two.beginPurchase(member, buy, key: nil) else {
                Issue.record("a spend from the balance asks the hub")
                return
            }
            async let a = hubs.client("s1", hub: 0).authorize(AuthorizeRequest(prior: try one.prior(for: first), op: first.op))
            async let b = hubs.client("s2", hub: 1).authorize(AuthorizeRequest(prior: try two.prior(for: second), op: second.op))
            let decisions = try await [a.decision, b.decision]
            #expect(decisions.filter { $0 == .accepted }.count == 1, "\(member): exactly one of two 700 spends of 1000")
            accepted += decisions.filter { $0 == .accepted }.count
        }
        #expect(accepted == members.count)
        for member in members {
            for hub in hubs.urls {
                let view = try await HTTP.get(hub.absoluteString + "/v1/members/\(member)", token: hubs.admin)
                #expect(view.json["balance"] as? Int == 300)
            }
        }
        let exceptions = try await HTTP.get(hubs.urls[0].absoluteString + "/v1/exceptions", token: hubs.admin)
        #expect(!exceptions.text.contains("overdraft"))
    }
}

@Suite("The hub when its PostgreSQL goes away", .serialized, .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"))
struct DatabaseOutageTests {
    /// Refuses (or allows again) every connection to the chain's database, and drops those open.
    func database(_ chain: Chain, allow: Bool) throws {
        let server = try #require(Backend.server), name = try #require(chain.database?.name)
        _ = try PostgresAdmin.strings("ALTER DATABASE \(name) ALLOW_CONNECTIONS \(allow) -- \(UUID())", at: server)
        if !allow {
            _ = try PostgresAdmin.strings("SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '\(name)'", at: server)
        }
    }

    @Test("readiness follows the database; while it is away pushes get 503 and the tills keep working offline; when it is back nothing is lost")
    func outage() async throws {
        let chain = try await Chain(stores: ["o1"], backend: .postgresql)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("o1")
        #expect(try await HTTP.get(chain.hubURL + "/readyz").status == 200)
        #expect(try await HTTP.get(chain.node("o1") + "/readyz").status == 200)

        try database(chain, allow: false)
        let down = try await HTTP.get(chain.hubURL + "/readyz")
        #expect(down.status == 503 && down.errorCode == "storage_unavailable")
        let health = try await HTTP.get(chain.hubURL + "/healthz")
        #expect(health.status == 200 && health.json["database"] as? String == "unavailable")
        let member = try await HTTP.post(chain.node("o1") + "/v1/members", #"{"name":"Ola","phone":"+15552000"}"#)
        #expect(member.status == 201, "the till is served offline")
        let id = try #require(member.json["id"] as? String)
        #expect(try await HTTP.post(chain.node("o1") + "/v1/members/\(id)/recharge", #"{"amount":700}"#).status == 201)
        try await eventually("the node notices the hub cannot take its work") {
            try await chain.status("o1")["online"] as? Bool == false
        }

        try database(chain, allow: true)
        try await eventually("the hub is ready again") { try await HTTP.get(chain.hubURL + "/readyz").status == 200 }
        try await chain.waitSynced(["o1"])
        #expect(try await chain.hubMember(id).json["balance"] as? Int == 700)
    }
}

@Suite("The hub while the chain's write lock is held", .serialized, .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"))
struct WriteLockTests {
    @Test("writes wait for the lock (or answer 503 when it is held too long) while health, readiness and pulls are answered at once")
    func healthWhileWritesWait() async throws {
        let chain = try await Chain(stores: ["w1"], backend: .postgresql)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("w1")
        let database = try #require(chain.database), server = try #require(Backend.server)
        // Another session takes the chain's write lock (as a hub stuck mid-write would) and
        // holds it until this test lets go: no stopwatch decides when it ends (a busy machine
        // made an 8 s sleep run out before the reads below were asked; CI caught it).
        let holder = Process(), orders = Pipe()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["psql", database.url, "-q"]
        holder.standardInput = orders
        holder.standardOutput = FileHandle.nullDevice
        holder.environment = ProcessInfo.processInfo.environment.merging(["PGAPPNAME": "tessera_lock_holder"]) { $1 }
        try holder.run()
        defer { if holder.isRunning { holder.terminate() } }
        orders.fileHandleForWriting.write(Data("BEGIN; SELECT pg_advisory_xact_lock(\(0x7E55_E2A0_0001));\n".utf8))
        let lockHeld = """
            SELECT count(*)::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'tessera_lock_holder' AND a.datname = '\(database.name)'
            """
        try await eventually("the other session holds the write lock") {
            try PostgresAdmin.strings(lockHeld, at: server) != ["0"]
        }
        let token = try #require(chain.tokens["w1"])
        // More waiting writes than the machine has cores (and fewer than the test client's 6
        // connections to one host, which would queue the reads below on the client's side).
        let writes = (0..<4).map { _ in
            Task {
                try await HTTP.call("POST", chain.hubURL + "/v1/sync/push", json: #"{"protocol":1,"store":"w1","ops":[]}"#,
                                    headers: ["Authorization": "Bearer \(token)"], timeout: 40)
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await HTTP.get(chain.hubURL + "/healthz").status == 200)
        #expect(try await HTTP.get(chain.hubURL + "/readyz").status == 200)
        let pull = try await HTTP.call("GET", chain.hubURL + "/v1/sync/pull?after=0", headers: ["Authorization": "Bearer \(token)", "Tessera-Protocol": "1"])
        #expect(pull.status == 200)
        // The other session still holds the lock (only this test ends it), so these answers did
        // not wait for it.
        #expect(try PostgresAdmin.strings(lockHeld, at: server) != ["0"], "answered while the lock is still held")
        orders.fileHandleForWriting.write(Data("COMMIT;\n".utf8))
        try orders.fileHandleForWriting.close()
        for write in writes {
            let answer = try await write.value
            #expect(answer.status == 200 || answer.errorCode == "storage_unavailable", "\(answer.status) \(answer.text)")
        }
    }
}
