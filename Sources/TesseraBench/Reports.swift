import Foundation
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// Head office's reports on a chain of a head office's size (issue 7: at least a million
/// members and ten million operations): a year of a chain's operations pushed into a hub the
/// way stores push them, then each report asked over HTTP of a real hub process.
extension Bench {
    func reports(_ limits: Limits, _ client: LoadClient) async throws -> [BenchRow] {
        let members = sizes.reportMembers
        let folder = (self.folder as NSString).appendingPathComponent("reports")
        let (chain, ingestRow) = try reportsChain(limits)
        let history = try Chain.hubHead(chain.hubData)
        let arguments = ["hub", "--data", chain.hubData, "--listen", "127.0.0.1:0", "--rate-limit", "1000000", "--jobs-interval", "86400"]
        var opened = Date()
        var hub = try await Server(binary: binary, arguments, folder: folder, name: "reports-hub", startTimeout: 3600)
        let start = Date().timeIntervalSince(opened)
        let disk = diskBytes(chain.hubPath)
        report(String(format: "  hub file %@; the hub starts in %.1f s", megabytes(disk), start))
        var rows = ingestRow + [BenchRow(what: "Reports chain: hub file with its summaries, \(members) members / \(history) ops", tessera: megabytes(disk),
                                         limit: "", ratio: "", target: ""),
                                BenchRow(what: "Reports chain: the hub starts (until it listens)", tessera: String(format: "%.1f s", start),
                                         limit: "", ratio: "", target: "")]
        rows += try await reportTimings(hub.url, chain: chain, client: client, members: members, history: history)
        // An upgrade from a build without summaries: the hub makes them from its log as it opens.
        hub.stop()
        try Chain.forgetSummaries(chain.hubData)
        opened = Date()
        hub = try await Server(binary: binary, arguments, folder: folder, name: "reports-hub-rebuild", startTimeout: 7200)
        let rebuilt = Date().timeIntervalSince(opened)
        hub.stop()
        report(String(format: "  a hub with no summaries made them from its log as it opened: %.1f s (%.0f ops/s)", rebuilt, Double(history) / rebuilt))
        rows.append(BenchRow(what: "Upgrade: a hub with no summaries makes them from its \(history)-op log as it opens", tessera: String(format: "%.0f s", rebuilt),
                             limit: String(format: "%.0f s to insert the rows raw", Double(history) / limits.batchedRowsPerSecond),
                             ratio: String(format: "%.0f ops/s", Double(history) / rebuilt), target: "once per upgrade"))
        return rows
    }

    /// The reports chain: kept by an earlier run with --keep (generating the full size takes
    /// about an hour) or made now; with the row of its ingest when it was made now.
    func reportsChain(_ limits: Limits) throws -> (Chain, ingest: [BenchRow]) {
        let members = sizes.reportMembers, total = sizes.reportOps
        let stores = (1...sizes.reportStores).map { "shop-\($0)" }
        let folder = (self.folder as NSString).appendingPathComponent("reports")
        // Any other folder is started afresh.
        let marker = (folder as NSString).appendingPathComponent("complete-\(members)-\(total)-\(stores.count)")
        if FileManager.default.fileExists(atPath: marker), let kept = try? JSONDecoder().decode(KeptChain.self, from: Data(contentsOf: URL(fileURLWithPath: marker))) {
            report("reports: the chain of \(members) members and \(total) operations kept by an earlier run")
            return (Chain(hubData: kept.hubData, tokens: kept.tokens, admin: kept.admin), [])
        }
        report("reports: a year of \(stores.count) stores, \(members) members, \(total) operations, pushed into a hub (generating takes a while)")
        let dir = sub("reports")
        let chain = try Chain.make(dir, stores: stores)
        let (pushed, wall) = try ReportChain.populate(chain, stores: stores, members: members, operations: total, report: report)
        report(String(format: "  pushed %d operations in %.0f s: %.0f ops/s, summaries kept as they arrived", pushed, wall, Double(pushed) / wall))
        let ingestRow = [BenchRow(what: "Hub ingest with head office's summaries, \(pushed) ops of a year's trade pushed in 500-op batches (in process)",
                                  tessera: rate(Double(pushed) / wall, "ops/s"), limit: rate(limits.batchedRowsPerSecond, "rows/s"),
                                  ratio: String(format: "%.0f%%", Double(pushed) / wall / limits.batchedRowsPerSecond * 100), target: "")]
        try JSONEncoder().encode(KeptChain(hubData: chain.hubData, tokens: chain.tokens, admin: chain.admin)).write(to: URL(fileURLWithPath: marker))
        return (chain, ingestRow)
    }

    /// Head office's reports: each asked three times, the median kept.
    func reportTimings(_ hub: String, chain: Chain, client: LoadClient, members: Int, history: Int64) async throws -> [BenchRow] {
        // The token as a bearer for the API, and as the dashboard's sign-in cookie for its pages.
        let auth = [("Authorization", "Bearer \(chain.admin)"), ("Cookie", "tessera_dashboard=\(chain.admin)")]
        var rows: [BenchRow] = []
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC") ?? .current, formatOptions: [.withFullDate])
        let monthAgo = ISO8601DateFormatter.string(from: Date().addingTimeInterval(-30 * 86_400), timeZone: TimeZone(identifier: "UTC") ?? .current,
                                                   formatOptions: [.withFullDate])
        for (name, path) in [("liabilities now", "/v1/reports/liabilities"),
                             ("settlement, open period", "/v1/reports/settlement"),
                             ("settlement flows, one pair (first 1,000)", "/v1/reports/settlement/flows?issuer=shop-1&spender=shop-2"),
                             ("store operations per day, a month", "/v1/reports/stores?from=\(monthAgo)&to=\(today)"),
                             ("store operations per day, the year", "/v1/reports/stores"),
                             ("breakage candidates (untouched 180 days)", "/v1/reports/breakage?untouched_days=180"),
                             ("segment dormant (every member in a band)", "/v1/reports/segments/dormant"),
                             ("segment activity (every member)", "/v1/reports/segments/activity"),
                             ("segment top 20 %", "/v1/reports/segments/top"),
                             ("segment tiers (each member's standing)", "/v1/reports/segments/tiers"),
                             ("segment points expiring within 30 days", "/v1/reports/segments/points_expiring?days=30"),
                             ("member statement", "/v1/members/m-shop-1-1/statement"),
                             ("events feed page", "/v1/events?after=0"),
                             ("dashboard: the chain overview page", "/dashboard"),
                             ("liabilities as of 30 days ago (a replay of the log)", "/v1/reports/liabilities?as_of=\(monthAgo)")] {
            var times: [Double] = []
            var bytes = 0
            for _ in 0..<3 {
                let t = Clock.now()
                let answer = try await client.ok(.GET, hub + path, headers: auth, timeout: 1800)
                times.append(Double(Clock.now() - t) / 1e6)
                bytes = answer.body.readableBytes
            }
            let median = times.sorted()[1]
            report("  report \(name): \(ms(median)), \(megabytes(bytes))")
            rows.append(BenchRow(what: "Report at \(members) members / \(history) ops: \(name) (median of 3)", tessera: "\(ms(median)); \(megabytes(bytes))",
                                 limit: "", ratio: "", target: "fast at 1M/10M"))
        }
        return rows
    }
}

private struct KeptChain: Codable {
    var hubData: String
    var tokens: [String]
    var admin: String
}

/// A year of a chain's trade, made up quickly but valid for the hub: enrolments spread over the
/// year, recharges, and sales paid in cash (earning points) or from the balance, mostly at the
/// member's own store and sometimes at another (so value crosses between stores). Operations
/// are pushed window by window, each store's in its own order; a member spends at another
/// store, or from value recharged, only what was pushed in an earlier window, so the hub never
/// sees a sale before what it depends on (no overdraft, no unknown member).
enum ReportChain {
    static func populate(_ chain: Chain, stores names: [String], members: Int, operations: Int,
                         report: @Sendable (String) -> Void) throws -> (pushed: Int, seconds: Double) {
        let hub = try HubStore(path: chain.hubPath)
        let stores = try names.map { name -> StoreID in
            guard let id = StoreID(rawValue: name) else { throw BenchFailure("bad store id \(name)") }
            return id
        }
        var rng = SplitMix64(seed: 42)
        func uniform(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        func chance(_ p: Double) -> Bool { Double(rng.next() % 1_000_000) < p * 1_000_000 }

        let yearMs: Int64 = 365 * 86_400_000
        let startMs = NodeStore.wallClockMs() - yearMs - 3_600_000
        let stepMs = max(1, yearMs / Int64(operations))
        let window = 50_000
        var seqs = [UInt64](repeating: 0, count: stores.count)
        var ids: [MemberID] = [], home: [Int] = [], balance: [Int64] = [], joined: [Int] = [], charged: [Int] = []
        ids.reserveCapacity(members); home.reserveCapacity(members); balance.reserveCapacity(members)
        var pushed = 0
        let started = Date()
        var lastReport = started
        var start = 0
        while start < operations {
            let end = min(operations, start + window), w = start / window
            var batches = [[TesseraCore.Operation]](repeating: [], count: stores.count)
            for i in start..<end {
                let at = HLCTimestamp(wallMs: startMs + Int64(i) * stepMs, counter: 0)
                let enrol = ids.isEmpty || (ids.count < members && uniform(operations - i) < members - ids.count)
                var s: Int, body: OperationBody
                if enrol {
                    s = uniform(stores.count)
                    seqs[s] += 1
                    let id = OperationID(origin: stores[s], seq: seqs[s])
                    let member = MemberID(enrolment: id)
                    body = .memberEnrolled(MemberEnrolled(member: member, card: CardNumber(issuedBy: stores[s], seq: seqs[s]), name: "Member \(ids.count)",
                                                          phone: "+1" + String(format: "%011d", 50_000_000_000 + ids.count)))
                    ids.append(member); home.append(s); balance.append(0); joined.append(w); charged.append(-1)
                    batches[s].append(TesseraCore.Operation(id: id, hlc: at, body: body))
                    continue
                }
                // Some members shop far more than others.
                let u = Double(rng.next() % 1_000_000) / 1_000_000
                let m = min(ids.count - 1, Int(Double(ids.count) * u * u))
                s = joined[m] < w && chance(0.2) ? uniform(stores.count) : home[m]
                if chance(0.12) {
                    let amount = Int64(5 + uniform(46)) * 1_000
                    body = .valueRecharged(ValueRecharged(member: ids[m], amount: amount))
                    balance[m] += amount
                    charged[m] = w
                } else {
                    let amount = Int64(300 + uniform(15_000))
                    if charged[m] >= 0 && charged[m] < w && balance[m] >= amount && chance(0.5) {
                        body = .purchase(Purchase(member: ids[m], amount: amount, valueSpent: amount))
                        balance[m] -= amount
                    } else {
                        body = .purchase(Purchase(member: ids[m], amount: amount, pointsEarned: amount / 100, qualifying: amount))
                    }
                }
                seqs[s] += 1
                batches[s].append(TesseraCore.Operation(id: OperationID(origin: stores[s], seq: seqs[s]), hlc: at, body: body))
            }
            for (s, ops) in batches.enumerated() {
                for from in stride(from: 0, to: ops.count, by: SyncLimits.pushBatchMax) {
                    let batch = Array(ops[from..<min(ops.count, from + SyncLimits.pushBatchMax)])
                    let results = try hub.push(batch, from: stores[s])
                    if let refused = results.first(where: { $0.status != .accepted }) {
                        throw BenchFailure("the hub did not accept \(refused.id): \(refused.status) \(refused.reason ?? "")")
                    }
                    pushed += batch.count
                }
            }
            start = end
            if Date().timeIntervalSince(lastReport) > 30 {
                lastReport = Date()
                let wall = lastReport.timeIntervalSince(started)
                report(String(format: "  %d of %d operations (%d members) in %.0f s, %.0f ops/s", pushed, operations, ids.count, wall, Double(pushed) / wall))
            }
        }
        return (pushed, Date().timeIntervalSince(started))
    }
}
