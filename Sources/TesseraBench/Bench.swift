import AsyncHTTPClient
import Foundation
import GRDB
import Logging
import Synchronization
import NIOCore
import NIOHTTP1
import TesseraCore
import TesseraNode
import TesseraProtocol
import TesseraStorage

/// How big each benchmark runs. `quick` finishes in a few minutes on 2 cores; `full` is the
/// size the targets are stated for (it takes much longer, mostly generating the data).
public struct BenchSizes: Sendable {
    public var commits: Int
    public var purchases: Int
    public var ingestStores: Int
    public var ingestOpsPerStore: Int
    public var catchUpStores: [Int]
    public var catchUpOpsPerStore: Int
    /// Catch-up: how many of the stores' replicas fold everything in this process (nil: all).
    /// The others push their outboxes and pull every page as a replica does, but drop what they
    /// pull: on their own machines they fold it in parallel, and here that work would only take
    /// the cores the measured replicas and the hub need.
    public var catchUpReplicas: Int? = nil
    public var bootstrapMembers: Int
    public var bootstrapOpsPerMember: Int
    public var importRows: Int = 100_000
    /// Till: the sales one member makes before the sales measured for a member with a history.
    public var longHistory = 2_000
    /// Head office's reports: a year of this many stores, members and operations.
    public var reportStores = 8
    public var reportMembers = 20_000
    public var reportOps = 200_000
    /// A programme document published at the hub of each chain the till, ingest and catch-up
    /// parts make, before any operation (`--programme`): the built-in one has no tiers and no
    /// points expiry, which every operation of a real chain's programme may touch.
    public var programme: JSONValue? = nil

    public static let quick = BenchSizes(commits: 2000, purchases: 2000, ingestStores: 4, ingestOpsPerStore: 5000,
                                         catchUpStores: [5, 10, 20], catchUpOpsPerStore: 200,
                                         bootstrapMembers: 20_000, bootstrapOpsPerMember: 10)
    /// Tiny: for the test that keeps the suite working (its figures mean nothing).
    public static let smoke = BenchSizes(commits: 50, purchases: 40, ingestStores: 2, ingestOpsPerStore: 100,
                                         catchUpStores: [2, 3], catchUpOpsPerStore: 20,
                                         bootstrapMembers: 100, bootstrapOpsPerMember: 5, importRows: 200, longHistory: 20,
                                         reportStores: 3, reportMembers: 100, reportOps: 1_000)
    public static let full = BenchSizes(commits: 10_000, purchases: 10_000, ingestStores: 10, ingestOpsPerStore: 10_000,
                                        catchUpStores: [10, 100, 1000], catchUpOpsPerStore: 1000,
                                        bootstrapMembers: 1_000_000, bootstrapOpsPerMember: 10, importRows: 1_000_000,
                                        reportStores: 20, reportMembers: 1_000_000, reportOps: 10_000_000)
}

/// One line of the table: Tessera's figure beside the limit measured in the same run.
public struct BenchRow: Sendable {
    public var what: String
    public var tessera: String
    public var limit: String
    public var ratio: String
    public var target: String
}

/// The benchmark suite: real `tessera` processes on loopback, real SQLite files on the disk of
/// `folder`, and the hardware's own limits measured the same way in the same run.
public struct Bench: Sendable {
    let binary: String
    let folder: String
    let sizes: BenchSizes
    let only: Set<String>
    /// A PostgreSQL server for the hub-on-PostgreSQL rows (the bench makes and drops its own databases).
    let postgres: PostgresLocation?
    let report: @Sendable (String) -> Void

    public init(binary: String, folder: String, sizes: BenchSizes, only: Set<String>, postgres: PostgresLocation? = nil,
                report: @escaping @Sendable (String) -> Void) {
        self.binary = binary; self.folder = folder; self.sizes = sizes; self.only = only; self.postgres = postgres; self.report = report
    }

    public static let parts = ["till", "ingest", "catchup", "bootstrap", "reports", "import"]

    func wants(_ part: String) -> Bool { only.isEmpty || only.contains(part) }

    public func run() async throws -> [BenchRow] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let client = LoadClient()
        var rows: [BenchRow] = []
        do {
            report("machine: \(machineDescription())")
            let limits = try await Limits.measure(binary: binary, folder: sub("limits"), sizes: sizes, client: client, report: report)
            var pulls: [(history: Int, ms: Double)] = []
            if wants("till") { rows += try await till(limits, client, &pulls) }
            if wants("ingest") { rows += try await ingest(limits, &pulls) }
            if wants("catchup") { rows += try await catchUp(limits) }
            if wants("bootstrap") { rows += try await bootstrap(limits, client, &pulls) }
            if wants("reports") { rows += try await reports(limits, client) }
            if wants("import") { rows += try importMembers() }
            if let small = pulls.min(by: { $0.history < $1.history }), let large = pulls.max(by: { $0.history < $1.history }), pulls.count > 1 {
                for p in pulls.sorted(by: { $0.history < $1.history }) {
                    rows.append(BenchRow(what: "Pull when up to date, \(p.history) ops of history (p50)", tessera: ms(p.ms),
                                         limit: "empty handler \(ms(limits.empty1.p50))", ratio: String(format: "%.1fx", p.ms / limits.empty1.p50),
                                         target: "constant"))
                }
                rows.append(BenchRow(what: "Pull cost, \(large.history) vs \(small.history) ops of history", tessera: String(format: "%.2fx", large.ms / small.ms),
                                     limit: "1.00x", ratio: "", target: "does not grow"))
            }
            rows.insert(contentsOf: limits.rows, at: 0)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        return rows
    }

    /// `tessera import members` of a generated CSV into a new hub (a real process, the file
    /// read, checked and written as an operator would), beside raw batched inserts of the same
    /// number of log rows (an enrolment and an opening balance a member).
    func importMembers() throws -> [BenchRow] {
        let rows = sizes.importRows
        report("import: \(rows) members from CSV into a new hub")
        let dir = sub("import")
        let chain = try Chain.make(dir, stores: ["north-1", "south-2"])
        let file = (dir as NSString).appendingPathComponent("members.csv")
        var text = "phone,name,birthday,card,principal,bonus,points,store,reference\n"
        text.reserveCapacity(rows * 80)
        for i in 0..<rows {
            text += "+1\(7_000_000_000 + i),Member \(i),19\(50 + i % 50)-0\(1 + i % 9)-1\(i % 10),C\(i),\((i * 37) % 50_000),\((i * 7) % 1_000),\((i * 13) % 5_000),\(i % 3 == 0 ? "south-2" : "north-1"),R\(i)\n"
        }
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["import", "members", file, "--data", chain.hubData]
        process.environment = Server.environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let wall = try seconds {
            try process.run()
            process.waitUntilExit()
        }
        guard process.terminationStatus == 0 else { throw BenchFailure("tessera import members exited \(process.terminationStatus)") }
        let head = try Chain.hubHead(chain.hubData)
        let raw = try Limits.rawBatchedInserts(rows: (0..<Int(head)).map {
            Limits.RawRow(id: "hub:\($0 + 1)", origin: "hub", seq: Int64($0 + 1), hlc: Int64($0), kind: "member.enrolled",
                   body: #"{"member":"m-hub-\#($0)","card":"C\#($0)","name":"Member \#($0)","phone":"+1\#(7_000_000_000 + $0)"}"#, member: "m-hub-\($0)")
        }, folder: dir)
        let perSecond = Double(rows) / wall
        return [
            BenchRow(what: "import members: \(rows) rows (\(head) operations), whole command", tessera: String(format: "%.1f s; %.0f rows/s", wall, perSecond),
                     limit: String(format: "%.0f raw rows/s", raw), ratio: String(format: "%.0f%% (ops/s vs rows/s)", Double(head) / wall / raw * 100),
                     target: "1M rows in minutes"),
            BenchRow(what: "import members: 1,000,000 rows at that rate", tessera: String(format: "%.1f min", 1_000_000 / perSecond / 60),
                     limit: "", ratio: "", target: "minutes, not hours"),
        ]
    }

    func sub(_ name: String) -> String {
        let path = (folder as NSString).appendingPathComponent(name)
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    // MARK: - Till latency

    func till(_ limits: Limits, _ client: LoadClient, _ pulls: inout [(history: Int, ms: Double)]) async throws -> [BenchRow] {
        report("till latency: a hub and a node, purchases through the node's HTTP API")
        let dir = sub("till")
        let chain = try Chain.make(dir, stores: ["bench-1", "bench-2"], programme: sizes.programme)
        // Another store's day of trade, reaching this store's node while its tills sell (below).
        let otherOps = max(400, sizes.purchases * 10)
        let other = try chain.generate(stores: ["bench-2"], opsPerStore: otherOps, membersPerStore: max(1, otherOps / 10),
                                       scratch: sub("till-other")).first ?? []
        let otherBodies = try Self.pushBodies(StoreID(rawValue: "bench-2") ?? .hub, other)
        let hub = try await Server(binary: binary, ["hub", "--data", chain.hubData, "--listen", "127.0.0.1:0", "--rate-limit", "1000000"],
                                   folder: dir, name: "hub")
        defer { hub.stop() }
        let node = try await Server(binary: binary, ["node", "--data", (dir as NSString).appendingPathComponent("node"), "--store", "bench-1",
                                                     "--hub", hub.url, "--token", chain.tokens[0], "--listen", "127.0.0.1:0",
                                                     // 8 tills may pass the node's 2,000 a second: measured, not limited.
                                                     "--rate-limit", "1000000"],
                                    folder: dir, name: "node")
        defer { node.stop() }
        try await waitBootstrapped(node.url, client)
        var members: [String] = []
        for i in 0..<64 {
            let m = try await client.ok(.POST, node.url + "/v1/members", json: #"{"name":"Member \#(i)","phone":"+1555\#(String(format: "%07d", i))"}"#)
            guard let id = m.json["id"] as? String else { throw BenchFailure("no member id") }
            _ = try await client.ok(.POST, node.url + "/v1/members/\(id)/recharge", json: #"{"amount":1000000}"#,
                                    headers: [("Idempotency-Key", "r-\(i)")])
            members.append(id)
        }
        let list = members
        let url = node.url
        @Sendable func purchase(_ i: Int, balance: Bool, member: String? = nil) async throws {
            let body = balance ? #"{"amount":\#(100 + i % 50),"pay_from_balance":true}"# : #"{"amount":\#(1000 + i % 500)}"#
            _ = try await client.ok(.POST, url + "/v1/members/\(member ?? list[i % list.count])/purchase", json: body,
                                    headers: [("Idempotency-Key", "p-\(balance)-\(i)-\(UUID().uuidString)")])
        }
        _ = try await load(concurrency: 1, total: 100) { try await purchase($0 + 1_000_000, balance: false) } // warm up
        let one = try await load(concurrency: 1, total: sizes.purchases) { try await purchase($0, balance: false) }
        let eight = try await load(concurrency: 8, total: sizes.purchases) { try await purchase($0 + 2_000_000, balance: false) }
        let spend = try await load(concurrency: 1, total: max(100, sizes.purchases / 4)) { try await purchase($0 + 3_000_000, balance: true) }
        report(String(format: "  1 till p50 %.2f ms, 8 tills p50 %.2f ms, hub-authorised p50 %.2f ms", one.p50, eight.p50, spend.p50))

        let history = try Chain.hubHead(chain.hubData)
        pulls.append((Int(history), try await pullCost(hub.url, token: chain.tokens[0], head: history)))

        // A till selling while its node folds another store's operations (a store back from an
        // outage, or the chain's busy hour): each pull page is written in parts that give way to it.
        let otherHeaders = [("Authorization", "Bearer \(chain.tokens[1])"), (ProtocolVersion.header, String(ProtocolVersion.current))]
        let caughtUp = Flag()
        let started = Clock.now()
        async let duringSales: [UInt64] = {
            var samples: [UInt64] = []
            var i = 0
            // Cancelled when the pushes or the wait below fail: the scope's end waits for it.
            while !caughtUp.isSet && !Task.isCancelled {
                let t = Clock.now()
                try await purchase(i + 8_000_000, balance: false)
                samples.append(Clock.now() - t)
                i += 1
            }
            return samples
        }()
        for body in otherBodies { _ = try await client.ok(.POST, hub.url + "/v1/sync/push", json: body, headers: otherHeaders) }
        let otherHead = try Chain.hubHead(chain.hubData)
        try await until("the node holds the other store's operations", timeout: 600) {
            (try await client.call(.GET, url + "/v1/status").json["cursor"] as? Int).map { Int64($0) >= otherHead } ?? false
        }
        caughtUp.set()
        let during = Latencies(samples: try await duringSales, wallSeconds: Double(Clock.now() - started) / 1e9)
        report(String(format: "  1 till while its node folds %d operations of another store: p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d sales)",
                      other.count, during.p50, during.p99, during.max, during.samples.count))

        // A member with a long history: each sale is priced from all the member's entries, so
        // its cost must not grow much with them (they are read in member order, in one run).
        // After the pull cost: these sales reach the hub with the node's next sync round, and
        // an "up-to-date" pull would meet them.
        let regular = list[0]
        _ = try await load(concurrency: 1, total: sizes.longHistory) { try await purchase($0 + 6_000_000, balance: false, member: regular) }
        let long = try await load(concurrency: 1, total: max(100, sizes.purchases / 10)) {
            try await purchase($0 + 7_000_000, balance: false, member: regular)
        }
        report(String(format: "  1 till, a member with %d earlier sales: p50 %.2f ms", sizes.longHistory, long.p50))

        // The same spends under escrow leases: once the hub has lent the store a lease of each
        // member, a spend within it is decided at the store, with no round trip to the hub.
        // The chain's programme (`--programme`, or the built-in one) with leases, as its next version.
        let version = (try await client.call(.GET, url + "/v1/rules").json["version"] as? Int ?? 0) + 1
        var rules: [String: JSONValue] = if case .object(let document)? = sizes.programme { document } else { ["name": .string("bench")] }
        rules["version"] = .int(Int64(version))
        rules["leases"] = .object(["share_percent": .int(50)])
        _ = try await client.ok(.PUT, hub.url + "/v1/rules", json: JSONValue.object(rules).jsonText,
                                headers: [("Authorization", "Bearer \(chain.admin)")])
        try await until("the node prices with leases") { try await client.call(.GET, url + "/v1/rules").json["version"] as? Int == version }
        for i in 0..<list.count { try await purchase(i + 4_000_000, balance: true) } // borrowed from the hub; a lease follows
        try await until("the node holds a lease of every member") {
            for id in list where (try await client.call(.GET, url + "/v1/members/\(id)/offline").json["value"] as? Int ?? 0) < 10_000 { return false }
            return true
        }
        let leased = try await load(concurrency: 1, total: max(100, sizes.purchases / 4)) { try await purchase($0 + 5_000_000, balance: true) }
        report(String(format: "  within the store's lease p50 %.2f ms", leased.p50))


        let floor1 = limits.empty1.p50 + limits.commit.p50
        let floor8 = limits.empty8.p50 + limits.commit.p50
        func latency(_ label: String, _ l: Latencies, _ floor: Double, _ emptyLabel: String) -> [BenchRow] {
            [BenchRow(what: "\(label): p50", tessera: ms(l.p50), limit: "\(emptyLabel) + 1 commit = \(ms(floor))",
                      ratio: String(format: "%.1fx", l.p50 / floor), target: "<= 1 ms"),
             BenchRow(what: "\(label): p99 / max", tessera: "\(ms(l.p99)) / \(ms(l.max))", limit: "", ratio: "", target: "p99 <= 5 ms")]
        }
        let pricing = try pricingHistory()
        return latency("Purchase, 1 till", one, floor1, "empty handler")
            + latency("Purchase, 8 tills", eight, floor8, "empty handler x8")
            + [BenchRow(what: "Purchase, 1 till, while its node folds another store's \(other.count) operations: p50 / p99 / max",
                        tessera: "\(ms(during.p50)) / \(ms(during.p99)) / \(ms(during.max))",
                        limit: "1 till alone (above): \(ms(one.p50)) / \(ms(one.p99))",
                        ratio: String(format: "%.1fx", during.p50 / one.p50), target: "")]
            + [BenchRow(what: "Purchase, 1 till, a member with \(sizes.longHistory) earlier sales: p50 / p99", tessera: "\(ms(long.p50)) / \(ms(long.p99))",
                        limit: "\(list.count) members, 1 till (above): \(ms(one.p50))",
                        ratio: String(format: "%.1fx", long.p50 / one.p50), target: "")]
            + [BenchRow(what: "Purchases per second, 1 till", tessera: rate(one.perSecond, "/s"),
                        limit: "\(rate(limits.commit.perSecond, "commits/s")) (raw FULL)",
                        ratio: String(format: "%.0f%%", 100 * one.perSecond / limits.commit.perSecond), target: ">= 50%"),
               BenchRow(what: "Purchases per second, 8 tills", tessera: rate(eight.perSecond, "/s"),
                        limit: "\(rate(limits.commit.perSecond, "commits/s")) (raw FULL)",
                        ratio: String(format: "%.0f%%", 100 * eight.perSecond / limits.commit.perSecond), target: ">= 50%"),
               BenchRow(what: "Stored-value spend, hub authorises, 1 till: p50 / p99", tessera: "\(ms(spend.p50)) / \(ms(spend.p99))",
                        limit: "2 round trips + 2 commits = \(ms(2 * floor1))", ratio: String(format: "%.1fx", spend.p50 / (2 * floor1)), target: ""),
               BenchRow(what: "Stored-value spend within the store's lease (escrow), 1 till: p50 / p99", tessera: "\(ms(leased.p50)) / \(ms(leased.p99))",
                        limit: "empty handler + 1 commit = \(ms(floor1))", ratio: String(format: "%.1fx", leased.p50 / floor1), target: "")]
            + pricing
    }

    func waitBootstrapped(_ node: String, _ client: LoadClient, timeout: Double = 600) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = try? await client.call(.GET, node + "/v1/status"), status.json["bootstrapped"] as? Bool == true { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchFailure("the node did not bootstrap")
    }

    /// Waits (up to a minute) until `done` holds.
    func until(_ what: String, timeout: Double = 60, _ done: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await done()) == true { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchFailure("timed out waiting until \(what)")
    }

    /// The median time of an up-to-date node's pull (nothing new), over 300 calls.
    func pullCost(_ hub: String, token: String, head: Int64) async throws -> Double {
        guard let base = URL(string: hub) else { throw BenchFailure("bad hub URL") }
        let client = HubClient(base: base, token: token, authorizeTimeout: 10)
        _ = try await client.pull(after: head, pending: 0)
        let l = try await load(concurrency: 1, total: 300) { _ in
            let page = try await client.pull(after: head, pending: 0)
            guard page.ops.isEmpty else { throw BenchFailure("an up-to-date pull returned operations") }
        }
        return l.p50
    }

    // MARK: - Hub ingest

    func ingest(_ limits: Limits, _ pulls: inout [(history: Int, ms: Double)]) async throws -> [BenchRow] {
        let stores = (1...sizes.ingestStores).map { "ingest-\($0)" }
        report("hub ingest: \(stores.count) stores push \(sizes.ingestOpsPerStore) operations each, in batches of \(SyncLimits.pushBatchMax)")
        let dir = sub("ingest")
        let chain = try Chain.make(dir, stores: stores, programme: sizes.programme)
        let outboxes = try chain.generate(stores: stores, opsPerStore: sizes.ingestOpsPerStore, membersPerStore: sizes.ingestOpsPerStore / 10,
                                          scratch: scratch("ingest"))
        let total = outboxes.reduce(0) { $0 + $1.count }
        let raw = try Limits.rawBatchedInserts(outboxes.flatMap { $0 }, folder: dir)
        let hub = try await Server(binary: binary, ["hub", "--data", chain.hubData, "--listen", "127.0.0.1:0", "--rate-limit", "1000000"],
                                   folder: dir, name: "hub")
        defer { hub.stop() }
        guard let base = URL(string: hub.url) else { throw BenchFailure("bad hub URL") }
        let wall = try await pushAll(stores: stores, outboxes: outboxes, tokens: chain.tokens, hubs: [base])
        let perSecond = Double(total) / wall
        report(String(format: "  %d ops in %.2f s: %.0f ops/s (raw batched inserts %.0f rows/s)", total, wall, perSecond, raw))
        let history = try Chain.hubHead(chain.hubData)
        pulls.append((Int(history), try await pullCost(hub.url, token: chain.tokens[0], head: history)))
        // The rows the hub now keeps for these operations, written again with no Tessera code.
        let kept = try HubRows.read(hubFile: chain.hubPath, batch: SyncLimits.pushBatchMax)
        let keptRate = try kept.write(folder: dir)
        report(String(format: "  the hub's own rows (%d for %d ops: log, entries, members, summaries, events) written straight: %.0f ops/s",
                      kept.rows, kept.operations, keptRate))
        var rows = [BenchRow(what: "Hub ingest on SQLite, \(stores.count) stores pushing \(SyncLimits.pushBatchMax)-op batches",
                             tessera: rate(perSecond, "ops/s"), limit: "\(rate(raw, "rows/s")) (raw batched inserts)",
                             ratio: String(format: "%.0f%%", 100 * perSecond / raw), target: ">= 50%"),
                    BenchRow(what: "Hub ingest on SQLite, beside the rows the hub keeps for the same operations (\(kept.rows) rows, its schema) written straight",
                             tessera: rate(perSecond, "ops/s"), limit: rate(keptRate, "ops/s"),
                             ratio: String(format: "%.0f%%", 100 * perSecond / keptRate), target: "")]
        if let postgres { rows += try await ingestOnPostgres(postgres, stores: stores, outboxes: outboxes, dir: dir) }
        return rows
    }

    /// Every store pushes its outbox in protocol-sized batches, all stores at once, store i
    /// through hub i mod the number of hubs. Returns the wall time. The push bodies are encoded
    /// before the clock starts: on their own machines the stores encode them, and here that
    /// work would take the hub's cores (it was half of this machine's time under ingest).
    func pushAll(stores: [String], outboxes: [[TesseraCore.Operation]], tokens: [String], hubs: [URL]) async throws -> Double {
        let bodies = try stores.enumerated().map { i, store in try Self.pushBodies(StoreID(rawValue: store) ?? .hub, outboxes[i]) }
        let client = LoadClient()
        defer { Task { await client.shutdown() } }
        return try await secondsAsync {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, batches) in bodies.enumerated() {
                    let url = hubs[i % hubs.count].appendingPathComponent("v1/sync/push").absoluteString
                    let headers = [("Authorization", "Bearer \(tokens[i])"), (ProtocolVersion.header, String(ProtocolVersion.current))]
                    group.addTask {
                        for body in batches {
                            let answer = try await client.ok(.POST, url, json: body, headers: headers)
                            let results = try JSONDecoder().decode(PushResponse.self, from: Data(answer.body.readableBytesView)).results
                            guard results.allSatisfy({ $0.status == .accepted }) else { throw BenchFailure("the hub did not accept a batch") }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    /// `store`'s outbox as the bodies of its pushes, in protocol-sized batches.
    static func pushBodies(_ store: StoreID, _ outbox: [TesseraCore.Operation]) throws -> [String] {
        let encoder = JSONEncoder()
        return try stride(from: 0, to: outbox.count, by: SyncLimits.pushBatchMax).map { start in
            let batch = Array(outbox[start..<min(outbox.count, start + SyncLimits.pushBatchMax)])
            return String(decoding: try encoder.encode(PushRequest(store: store, ops: batch)), as: UTF8.self)
        }
    }

    /// The same outboxes into a hub on PostgreSQL: one hub process, then two on one database;
    /// beside the same rows inserted straight into PostgreSQL; and a new hub process building
    /// its fold from the log.
    func ingestOnPostgres(_ server: PostgresLocation, stores: [String], outboxes: [[TesseraCore.Operation]], dir: String) async throws -> [BenchRow] {
        let total = outboxes.reduce(0) { $0 + $1.count }
        let encoder = JSONEncoder()
        let now = Date().ISO8601Format()
        let logRows = try outboxes.flatMap { $0 }.enumerated().map { i, op in
            LogRow(version: Int64(i + 1), id: op.id.description, origin: op.id.origin.rawValue, seq: Int64(op.id.seq), hlc: op.hlc.packed,
                   kind: op.kind, kindVersion: op.kindVersion, body: String(decoding: try encoder.encode(op.body), as: UTF8.self),
                   member: nil, receivedAt: now)
        }
        var rows: [BenchRow] = []
        var onePerSecond = 0.0
        for hubCount in [1, 2] {
            let name = "tessera_bench_\(getpid())_\(hubCount)"
            try? PostgresAdmin.dropDatabase(name, on: server)
            try PostgresAdmin.createDatabase(name, on: server)
            defer { try? PostgresAdmin.dropDatabase(name, on: server) }
            let database = server.with(database: name)
            let setup = try HubStore(postgres: database, foldPath: (dir as NSString).appendingPathComponent("pg-setup-\(hubCount).sqlite"))
            let tokens = try stores.map { store in
                guard let id = StoreID(rawValue: store) else { throw BenchFailure("bad store id \(store)") }
                return try setup.addStore(id, name: store)
            }
            var servers: [Server] = []
            defer { servers.forEach { $0.stop() } }
            for h in 0..<hubCount {
                servers.append(try await Server(binary: binary, ["hub", "--data", (dir as NSString).appendingPathComponent("pg-fold-\(hubCount)-\(h)"),
                                                                 "--database", database.url, "--listen", "127.0.0.1:0", "--rate-limit", "1000000"],
                                                folder: dir, name: "pg-hub-\(hubCount)-\(h)"))
            }
            let wall = try await pushAll(stores: stores, outboxes: outboxes, tokens: tokens, hubs: servers.compactMap { URL(string: $0.url) })
            let perSecond = Double(total) / wall
            if hubCount == 1 {
                onePerSecond = perSecond
                let raw = Double(total) / (try PostgresAdmin.timeRawInserts(logRows, batch: SyncLimits.pushBatchMax, at: database))
                report(String(format: "  PostgreSQL, 1 hub: %.0f ops/s (raw batched inserts into PostgreSQL %.0f rows/s)", perSecond, raw))
                rows.append(BenchRow(what: "Hub ingest on PostgreSQL, 1 hub process, \(stores.count) stores pushing \(SyncLimits.pushBatchMax)-op batches",
                                     tessera: rate(perSecond, "ops/s"), limit: "\(rate(raw, "rows/s")) (raw batched inserts, PostgreSQL)",
                                     ratio: String(format: "%.0f%%", 100 * perSecond / raw), target: ">= 50%"))
                // A new hub process on this database: its fold is built from the whole log.
                let fresh = try HubStore(postgres: database, foldPath: (dir as NSString).appendingPathComponent("pg-fresh-fold.sqlite"))
                let built = try seconds { try fresh.refresh() }
                report(String(format: "  a new hub process folds the %d-op log in %.2f s (%.0f ops/s)", total, built, Double(total) / built))
                rows.append(BenchRow(what: "New hub process on PostgreSQL builds its fold, \(total) ops", tessera: rate(Double(total) / built, "ops/s"),
                                     limit: "\(rate(raw, "rows/s")) (raw batched inserts, PostgreSQL)",
                                     ratio: String(format: "%.0f%%", 100 * Double(total) / built / raw), target: ""))
            } else {
                report(String(format: "  PostgreSQL, 2 hubs on one database: %.0f ops/s", perSecond))
                rows.append(BenchRow(what: "Hub ingest on PostgreSQL, 2 hub processes on one database (writes serialised by design)",
                                     tessera: rate(perSecond, "ops/s"), limit: "\(rate(onePerSecond, "ops/s")) (1 hub process)",
                                     ratio: String(format: "%.0f%%", 100 * perSecond / onePerSecond), target: "no loss of order"))
            }
        }
        return rows
    }

    /// A folder on a RAM disk for generating data (not timed), when there is one.
    func scratch(_ name: String) -> String {
        let shm = "/dev/shm"
        let base = FileManager.default.fileExists(atPath: shm) ? shm : folder
        let path = (base as NSString).appendingPathComponent("tessera-bench-\(getpid())-\(name)")
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    // MARK: - Catch-up after an outage

    func catchUp(_ limits: Limits) async throws -> [BenchRow] {
        var rows: [BenchRow] = []
        var previous: (stores: Int, seconds: Double)?
        for count in sizes.catchUpStores {
            let k = sizes.catchUpOpsPerStore
            report("catch-up: \(count) stores, \(k) operations each made offline, reconnect at once")
            let dir = sub("catchup-\(count)")
            let stores = (1...count).map { "s\($0)" }
            let chain = try Chain.make(dir, stores: stores, programme: sizes.programme)
            // Each store's node, on disk, bootstrapped while the hub was reachable, then offline.
            let nodes = try stores.enumerated().map { i, store in
                try NodeStore(path: (dir as NSString).appendingPathComponent("\(store).sqlite"), store: StoreID(rawValue: store) ?? .hub)
            }
            let hubStore = try HubStore(path: chain.hubPath)
            for (i, node) in nodes.enumerated() {
                try node.bootstrap(try hubStore.snapshot(for: node.store))
                try Chain.tillWork(node, storeIndex: i, ops: k, members: max(1, k / 10))
            }
            let base = try Chain.hubHead(chain.hubData)
            let target = base + Int64(count * k)
            let hub = try await Server(binary: binary, ["hub", "--data", chain.hubData, "--listen", "127.0.0.1:0", "--rate-limit", "1000000"],
                                       folder: dir, name: "hub")
            defer { hub.stop() }
            guard let url = URL(string: hub.url) else { throw BenchFailure("bad hub URL") }
            // The nodes share this process (on their own machines each has its own connection).
            let http = HubClient.makeHTTPClient(connectionsPerHost: count)
            var logger = Logger(label: "bench")
            logger.logLevel = .critical
            let quiet = logger
            let replicas = min(count, sizes.catchUpReplicas ?? count)
            // The other stores' pushes, encoded before the clock starts (as in the ingest part).
            let pushes = try nodes.dropFirst(replicas).map { node in try Self.pushBodies(node.store, try node.pendingBatch(limit: Int(Int32.max))) }
            // When the hub holds every store's operations (on their own machines, replicas fold
            // in parallel; here they share this one, so the hub's part is worth seeing apart).
            let started = Date()
            let hubHeld = Held()
            let timeline = ProcessInfo.processInfo.environment["TESSERA_BENCH_TIMELINE"] != nil
            let watcher = Task {
                var tick = 0
                var head: Int64 = 0
                while !Task.isCancelled {
                    // Once the hub holds everything, its database is not opened again (on these
                    // two cores, while the replicas are timed) unless the timeline asks.
                    if head < target || timeline {
                        head = (try? Chain.hubHead(chain.hubData)) ?? head
                        if head >= target { hubHeld.set(Date().timeIntervalSince(started)) }
                    }
                    tick += 1
                    // Every half second, with TESSERA_BENCH_TIMELINE set: how far the hub and
                    // the measured replicas are (who waits for whom).
                    if timeline, tick % 5 == 0 {
                        let cursors = nodes.prefix(replicas).map { (try? $0.counts().cursor).map { String($0 - base) } ?? "?" }
                        report(String(format: "  t=%.1f hub %d replicas %@", Date().timeIntervalSince(started), head - base, cursors.joined(separator: " ")))
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { watcher.cancel() }
            let load = LoadClient(connectionsPerHost: max(64, count))
            // The clock stops when the last measured replica holds everything: the other stores
            // may still be in their last wait (a node's sync interval) before they look again.
            let replicasDone = Latest()
            let pulled = Tally()
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (i, node) in nodes.enumerated().prefix(replicas) {
                        let sync = SyncLoop(store: node, client: HubClient(base: url, token: chain.tokens[i], authorizeTimeout: 10, syncTimeout: 300, http: http),
                                            intervalMs: 100, logger: quiet)
                        group.addTask {
                            while true {
                                try await sync.syncOnce()
                                let c = try node.counts()
                                if c.pending == 0 && c.cursor >= target {
                                    replicasDone.note(Date().timeIntervalSince(started))
                                    return
                                }
                                try await Task.sleep(for: .milliseconds(50))
                            }
                        }
                    }
                    for (j, bodies) in pushes.enumerated() {
                        let i = replicas + j
                        let headers = [("Authorization", "Bearer \(chain.tokens[i])"), (ProtocolVersion.header, String(ProtocolVersion.current))]
                        group.addTask {
                            try await Self.pushAndDrop(load, hub: hub.url, headers: headers, bodies: bodies, from: base, until: target,
                                                       received: pulled)
                        }
                    }
                    try await group.waitForAll()
                }
            } catch {
                try? await http.shutdown()
                await load.shutdown()
                throw error
            }
            await load.shutdown()
            try await http.shutdown()
            let wall = replicasDone.seconds
            let folds = replicas * count * k
            let rawSeconds = Double(folds) / limits.batchedRowsPerSecond
            let held = hubHeld.seconds
            let which = replicas == count ? "every replica" : "\(replicas) of the \(count) replicas (the others pulled every page and dropped it)"
            report(String(format: "  %@ folded all %d ops in %.2f s (the hub held them all after %.2f s; hub peak RSS %@)",
                          which, count * k, wall, held ?? -1, megabytes(hub.peakRSSBytes)))
            let carried = String(format: "%.2f GB (%.1f MB a store)", Double(pulled.total) / 1e9, Double(pulled.total) / 1e6 / Double(max(1, count - replicas)))
            if replicas < count { report("  the other \(count - replicas) stores' pulls carried \(carried) over the wire") }
            var growth = ""
            if let previous {
                growth = String(format: " (x%.1f for x%.1f stores)", wall / previous.seconds, Double(count) / Double(previous.stores))
            }
            let holders = replicas == count ? "all replicas" : "\(replicas) measured replicas (the rest pull and drop)"
            rows.append(BenchRow(what: "Catch-up: \(count) stores x \(k) offline ops, \(holders) hold all \(count * k)",
                                 tessera: String(format: "%.2f s", wall) + growth,
                                 limit: String(format: "%.2f s to insert %d rows raw", rawSeconds, folds),
                                 ratio: String(format: "%.1fx", wall / rawSeconds), target: count == 100 && k == 1000 ? "<= 10 s" : "linear"))
            if let held {
                rows.append(BenchRow(what: "Catch-up: \(count) stores x \(k), until the hub holds all \(count * k)", tessera: String(format: "%.2f s", held),
                                     limit: String(format: "%.2f s to insert %d rows raw", Double(count * k) / limits.batchedRowsPerSecond, count * k),
                                     ratio: String(format: "%.1fx", held / (Double(count * k) / limits.batchedRowsPerSecond)), target: ""))
            }
            if replicas < count {
                rows.append(BenchRow(what: "Catch-up: \(count) stores, what the \(count - replicas) dropping stores' pulls carried",
                                     tessera: carried, limit: "", ratio: "", target: ""))
            }
            rows.append(BenchRow(what: "Hub peak memory during the \(count)-store catch-up", tessera: megabytes(hub.peakRSSBytes),
                                 limit: "", ratio: "", target: ""))
            previous = (count, wall)
        }
        return rows
    }

    /// A store whose replica is not measured: pushes its (encoded) outbox, and pulls every page
    /// a replica would, reading only the page's head (`cursor` and `more` come first: the hub
    /// sorts keys) and dropping the operations, from `base` (where every store's node was when
    /// the outage began) until it has pulled past `target`. Like a node (`SyncLoop.syncOnce`),
    /// it pulls while a push slower than `SyncLoop.pullWaitsForPushMs` is under way and again
    /// once it is answered, asks for the next page at once while there is more, and waits its
    /// sync interval (a node's default) once it has everything the hub holds so far.
    static func pushAndDrop(_ client: LoadClient, hub: String, headers: [(String, String)], bodies: [String], from base: Int64, until target: Int64,
                            received: Tally) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for body in bodies {
                    _ = try await client.ok(.POST, hub + "/v1/sync/push", json: body, headers: headers)
                }
                return true
            }
            var cursor = base
            var wait = SyncLoop.pullWaitsForPushMs
            var pushed = false
            while true {
                if !pushed {
                    group.addTask { [wait] in
                        try? await Task.sleep(for: .milliseconds(wait))
                        return false
                    }
                    pushed = try await group.next() == true
                    if pushed { group.cancelAll() }
                    wait = SyncLoop.defaultIntervalMs
                }
                while true {
                    let page = try await client.prefix(hub + "/v1/sync/pull?after=\(cursor)&limit=\(SyncLimits.pullPageMax)&pending=0",
                                                       headers: headers, bytes: 80)
                    received.add(page.received)
                    let head = String(decoding: page.head, as: UTF8.self)
                    guard page.status == 200 else { throw BenchFailure("a pull answered \(page.status): \(head)") }
                    guard let at = head.range(of: #""cursor":"#), let moreAt = head.range(of: #""more":"#),
                          let next = Int64(head[at.upperBound...].prefix { $0.isNumber }) else {
                        throw BenchFailure("a pull page that does not start with its cursor: \(head)")
                    }
                    cursor = next
                    if head[moreAt.upperBound...].hasPrefix("false") { break }
                }
                if pushed {
                    if cursor >= target { return }
                    try await Task.sleep(for: .milliseconds(SyncLoop.defaultIntervalMs))
                }
            }
        }
    }

    /// The latest of times several tasks record.
    final class Latest: Sendable {
        private let value = Mutex<Double>(0)
        func note(_ seconds: Double) { value.withLock { $0 = max($0, seconds) } }
        var seconds: Double { value.withLock { $0 } }
    }

    /// Bytes many tasks add up (what the dropping stores' pulls carried over the wire).
    final class Tally: Sendable {
        private let value = Mutex<Int>(0)
        func add(_ bytes: Int) { value.withLock { $0 += bytes } }
        var total: Int { value.withLock { $0 } }
    }

    /// Set once by one task, read by another.
    final class Flag: Sendable {
        private let value = Mutex<Bool>(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// A time one task records and another reads.
    final class Held: Sendable {
        private let value = Mutex<Double?>(nil)
        func set(_ seconds: Double) { value.withLock { $0 = $0 ?? seconds } }
        var seconds: Double? { value.withLock { $0 } }
    }

    // MARK: - Bootstrap

    func bootstrap(_ limits: Limits, _ client: LoadClient, _ pulls: inout [(history: Int, ms: Double)]) async throws -> [BenchRow] {
        let members = sizes.bootstrapMembers
        // At a million members the chain is the reports part's (a year of 20 stores' trade, made
        // in about an hour and kept with --keep): the till code would take many hours to make it.
        if members >= 1_000_000 {
            let (chain, ingest) = try reportsChain(limits)
            let stamp = Int(Date().timeIntervalSince1970)
            let joiners = try ["joiner-\(stamp)", "joiner-\(stamp)-b"].map { (store: $0, token: try Chain.addStore(chain.hubData, $0)) }
            let history = try Chain.hubHead(chain.hubData)
            return ingest + (try await join(limits, client, hubData: chain.hubData, joiners: joiners, members: members,
                                             history: history, dir: sub("bootstrap")))
        }
        let opsTotal = members * sizes.bootstrapOpsPerMember
        report("bootstrap: a chain of \(members) members and \(opsTotal) operations (generating them takes a while)")
        let dir = sub("bootstrap")
        let generators = (1...4).map { "gen-\($0)" }
        let chain = try Chain.make(dir, stores: generators + ["joiner", "joiner-b"])
        let generated = try seconds {
            try chain.populateHub(stores: generators, opsPerStore: opsTotal / generators.count,
                                  membersPerStore: members / generators.count, scratch: scratch("bootstrap"))
        }
        let history = try Chain.hubHead(chain.hubData)
        report(String(format: "  generated and ingested %d ops in %.0f s", history, generated))
        let joiners = [(store: "joiner", token: chain.tokens[generators.count]), (store: "joiner-b", token: chain.tokens[generators.count + 1])]
        return try await join(limits, client, hubData: chain.hubData, joiners: joiners, members: members,
                              history: history, dir: dir, before: { hub in
            // Before the new node writes anything of its own: an up-to-date pull on this history.
            pulls.append((Int(history), try await self.pullCost(hub, token: chain.tokens[0], head: history)))
        })
    }

    /// New nodes join the chain in `hubData`, each timed from its start until it serves tills:
    /// the first once the hub has made the snapshot file it keeps for new nodes (it does so at
    /// start: that time is reported too), the second from a hub that makes the file when asked.
    private func join(_ limits: Limits, _ client: LoadClient, hubData: String, joiners: [(store: String, token: String)], members: Int,
                      history: Int64, dir: String, before: (String) async throws -> Void = { _ in }) async throws -> [BenchRow] {
        guard joiners.count == 2 else { throw BenchFailure("two joiners") }
        let hubArguments = ["hub", "--data", hubData, "--listen", "127.0.0.1:0", "--rate-limit", "1000000", "--jobs-interval", "86400",
                            "--log-level", "info"]
        var rows: [BenchRow] = []
        var made = 0.0
        for (i, joiner) in joiners.enumerated() {
            let ready = i == 0
            let hub = try await Server(binary: binary, hubArguments + (ready ? [] : ["--snapshot-file-age", "0"]), folder: dir,
                                       name: ready ? "hub" : "hub-on-demand", startTimeout: 600)
            defer { hub.stop() }
            if ready {
                made = try await secondsAsync { try await hub.waitForLog("snapshot file made", timeout: 3600) }
                report(String(format: "  the hub made its snapshot file for new nodes %.2f s after it started listening", made))
                try await before(hub.url)
            }
            let nodeData = (dir as NSString).appendingPathComponent(joiner.store)
            var node: Server?
            let wall = try await secondsAsync {
                let started = try await Server(binary: binary, ["node", "--data", nodeData, "--store", joiner.store, "--hub", hub.url,
                                                                "--token", joiner.token, "--listen", "127.0.0.1:0", "--log-level", "info"],
                                               folder: dir, name: joiner.store)
                node = started
                try await waitBootstrapped(started.url, client, timeout: 3600)
            }
            guard let node else { throw BenchFailure("no node") }
            defer { node.stop() }
            // It serves a till at once: an enrolment (a phone no earlier run used on a kept chain).
            let phone = String(format: "+1999%07d", (Int(Date().timeIntervalSince1970) * 2 + i) % 10_000_000)
            let answer = try await client.ok(.POST, node.url + "/v1/members", json: #"{"name":"New","phone":"\#(phone)"}"#)
            guard answer.status == 201 else { throw BenchFailure("the new node did not serve a till") }
            let rss = node.peakRSSBytes
            let disk = diskBytes((nodeData as NSString).appendingPathComponent("node.sqlite"))
            // What the node received: the same file asked for again, counted as it streams by.
            let bytes = try await client.count(hub.url + "/v1/sync/snapshot/file",
                                               headers: [("Authorization", "Bearer \(joiner.token)"), ("Tessera-Protocol", "1")])
            let split = node.logLine(containing: "bootstrapped from the hub's snapshot file").map { line in
                ["seconds_receiving", "seconds_loading"].compactMap { key in line.range(of: key + "=").map { "\(key)=\(line[$0.upperBound...].prefix { $0.isNumber })" } }
                    .joined(separator: ", ")
            } ?? "no log line"
            let when = ready ? "the hub's file ready" : "the hub makes the file when asked"
            report(String(format: "  %@: serves tills after %.2f s (%@); snapshot file %@; node disk %@; node peak RSS %@",
                          when, wall, split, megabytes(bytes), megabytes(disk), megabytes(rss)))
            let rawSeconds = Double(history) / limits.batchedRowsPerSecond
            rows.append(BenchRow(what: "Bootstrap: new node, \(members) members / \(history) ops, until it serves tills, \(when)",
                                 tessera: String(format: "%.2f s", wall), limit: String(format: "%.2f s to insert %d rows raw", rawSeconds, history),
                                 ratio: String(format: "%.1fx", wall / rawSeconds), target: members >= 1_000_000 ? "<= 30 s" : "<= 30 s at 1M/10M"))
            if ready {
                rows += [
                    BenchRow(what: "Bootstrap: the hub makes its snapshot file (at start, then every 10 min while the chain changes)",
                             tessera: String(format: "%.2f s", made), limit: "", ratio: "", target: ""),
                    BenchRow(what: "Bootstrap: bytes transferred (snapshot file)", tessera: megabytes(bytes), limit: "", ratio: "", target: ""),
                    BenchRow(what: "Bootstrap: node disk size", tessera: megabytes(disk), limit: "", ratio: "", target: ""),
                    BenchRow(what: "Node peak memory with \(members) members", tessera: megabytes(rss), limit: "", ratio: "", target: "<= 200 MB at 1M"),
                ]
            }
        }
        return rows
    }
}

/// The physical limits, measured first: single-row FULL commits, batched inserts, and an
/// empty handler on the same HTTP stack.
struct Limits: Sendable {
    var commit: Latencies
    var batchedRowsPerSecond: Double
    var empty1: Latencies
    var empty8: Latencies

    var rows: [BenchRow] {
        [BenchRow(what: "Limit: SQLite single-row commit (WAL, synchronous=FULL): p50 / rate", tessera: "",
                  limit: "\(ms(commit.p50)) / \(rate(commit.perSecond, "commits/s"))", ratio: "", target: ""),
         BenchRow(what: "Limit: SQLite batched inserts (\(SyncLimits.pushBatchMax) rows a transaction)", tessera: "",
                  limit: rate(batchedRowsPerSecond, "rows/s"), ratio: "", target: ""),
         BenchRow(what: "Limit: empty handler, same HTTP stack: p50, 1 / 8 clients", tessera: "",
                  limit: "\(ms(empty1.p50)) / \(ms(empty8.p50)) (\(rate(empty8.perSecond, "req/s")))", ratio: "", target: "")]
    }

    static func measure(binary: String, folder: String, sizes: BenchSizes, client: LoadClient, report: @Sendable (String) -> Void) async throws -> Limits {
        report("limits: raw SQLite commits and inserts, and an empty HTTP handler")
        let commit = try rawCommits(sizes.commits, folder: folder)
        let rows = (0..<20_000).map { i in RawRow(id: "store-1/\(i)", origin: "store-1", seq: Int64(i), hlc: Int64(i) << 16, kind: "purchase",
                                                  body: String(repeating: "x", count: 400), member: "m-\(i % 1000)") }
        let batched = try rawBatchedInserts(rows: rows, folder: folder)

        let empty = try await Server(binary: binary, ["bench-empty", "--listen", "127.0.0.1:0"], folder: folder, name: "empty")
        let url = empty.url + "/empty"
        let payload = #"{"amount":1234}"#
        _ = try await load(concurrency: 1, total: 200) { _ in _ = try await client.ok(.POST, url, json: payload) }
        let empty1 = try await load(concurrency: 1, total: sizes.purchases) { _ in _ = try await client.ok(.POST, url, json: payload) }
        let empty8 = try await load(concurrency: 8, total: sizes.purchases) { _ in _ = try await client.ok(.POST, url, json: payload) }
        empty.stop()
        report(String(format: "  commit p50 %.3f ms (%.0f/s); batched %.0f rows/s; empty handler p50 %.3f ms", commit.p50, commit.perSecond, batched, empty1.p50))
        return Limits(commit: commit, batchedRowsPerSecond: batched, empty1: empty1, empty8: empty8)
    }

    /// Single-row transactions, one after another, each durable (WAL, synchronous=FULL).
    static func rawCommits(_ count: Int, folder: String) throws -> Latencies {
        let pool = try SQLiteFiles.openPool(path: (folder as NSString).appendingPathComponent("raw.sqlite"))
        guard try SQLiteFiles.synchronousMode(pool) == 2 else { throw BenchFailure("raw SQLite is not at synchronous=FULL") }
        try pool.write { try $0.execute(sql: "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL)") }
        let body = String(repeating: "x", count: 400)
        var samples: [UInt64] = []
        let started = Clock.now()
        for i in 0..<count {
            let t = Clock.now()
            try pool.write { try $0.execute(sql: "INSERT INTO t (id, body) VALUES (?, ?)", arguments: ["row-\(i)", body]) }
            samples.append(Clock.now() - t)
        }
        let commit = Latencies(samples: samples, wallSeconds: Double(Clock.now() - started) / 1e9)
        return commit
    }

    struct RawRow {
        var id: String, origin: String, seq: Int64, hlc: Int64, kind: String, body: String, member: String?
    }

    /// The same rows as the hub's log, inserted straight into SQLite, a batch per transaction.
    static func rawBatchedInserts(_ ops: [TesseraCore.Operation], folder: String) throws -> Double {
        let encoder = JSONEncoder()
        let rows = try ops.map { op in
            RawRow(id: op.id.description, origin: op.id.origin.rawValue, seq: Int64(op.id.seq), hlc: op.hlc.packed, kind: op.kind,
                   body: String(decoding: try encoder.encode(op.body), as: UTF8.self), member: nil)
        }
        return try rawBatchedInserts(rows: rows, folder: folder)
    }

    static func rawBatchedInserts(rows: [RawRow], folder: String) throws -> Double {
        let path = (folder as NSString).appendingPathComponent("raw-batched-\(UUID().uuidString.prefix(8)).sqlite")
        let pool = try SQLiteFiles.openPool(path: path)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE ops (version INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, origin TEXT NOT NULL, seq INTEGER NOT NULL,
                                  hlc INTEGER NOT NULL, kind TEXT NOT NULL, kind_version INTEGER NOT NULL, body TEXT NOT NULL,
                                  member_id TEXT, received_at TEXT NOT NULL)
                """)
        }
        let now = Date().ISO8601Format()
        let wall = try seconds {
            for start in stride(from: 0, to: rows.count, by: SyncLimits.pushBatchMax) {
                try pool.write { db in
                    let statement = try db.cachedStatement(sql: """
                        INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, received_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
                        """)
                    for r in rows[start..<min(rows.count, start + SyncLimits.pushBatchMax)] {
                        try statement.execute(arguments: [r.id, r.origin, r.seq, r.hlc, r.kind, r.body, r.member, now])
                    }
                }
            }
        }
        try? FileManager.default.removeItem(atPath: path)
        return Double(rows.count) / wall
    }
}
