import Foundation
import TesseraCore
import TesseraProtocol
import TesseraStorage

extension Bench {
    /// Pricing a sale for a member with years of history, in process: what a till's sale reads
    /// before it writes. The till part's long-history member has no lot that has ended (its
    /// sales are all from today), so it cannot show what points expiry reads once lots end:
    /// here the history is three years of sales stamped in the past, pushed to a hub as a
    /// store's would be, under a programme whose points expire at the end of the following
    /// year and whose tiers reset yearly. A member with ten sales, one lot ended too, is the
    /// comparison.
    func pricingHistory() throws -> [BenchRow] {
        let sales = sizes.longHistory
        report("pricing: a member with \(sales) sales over three years (lots ended), against one with 10")
        let dir = sub("history")
        let hub = try HubStore(path: (dir as NSString).appendingPathComponent("hub.sqlite"))
        defer { try? hub.pool.close() }
        let document = #"""
            {"version": 1, "name": "bench: points expire, tiers reset yearly", "time_zone": "Asia/Shanghai",
             "earning": {"points": 1, "per_minor": 100}, "redemption": {"points": 1, "minor": 1},
             "expiry": {"rule": "end_of_following_year"},
             "tiers": {"qualify_on": "points", "reset": "yearly", "downgrade": "one_level",
                       "levels": [{"name": "regular", "threshold": 0}, {"name": "silver", "threshold": 1000},
                                  {"name": "gold", "threshold": 5000, "points_percent": 120}]}}
            """#
        let rules = try JSONValueParser.parse(Array(document.utf8))
        let programme = try Programme.parse(rules)
        _ = try hub.publishRules(rules, actor: "bench")
        guard let store = StoreID(rawValue: "history-1") else { throw BenchFailure("bad store id") }
        _ = try hub.addStore(store, name: "history-1")

        // Two members enrolled three years ago; sales spread evenly from then to an hour ago,
        // one in ten also paying with points (a spend outside any lot).
        let now = NodeStore.wallClockMs()
        let startMs = now - 3 * 365 * 86_400_000
        var seq: UInt64 = 0
        var ops: [TesseraCore.Operation] = []
        func add(_ atMs: Int64, _ body: OperationBody) {
            seq += 1
            ops.append(TesseraCore.Operation(id: OperationID(origin: store, seq: seq), hlc: HLCTimestamp(wallMs: atMs, counter: 0), body: body))
        }
        var members: [MemberID] = []
        for (i, count) in [sales, 10].enumerated() {
            let member = MemberID(enrolment: OperationID(origin: store, seq: seq + 1))
            add(startMs + Int64(i), .memberEnrolled(MemberEnrolled(member: member, card: CardNumber(issuedBy: store, seq: seq + 1),
                                                                   name: "History \(i)", phone: "+1888000000\(i)")))
            members.append(member)
            let step = (now - 3_600_000 - startMs) / Int64(count)
            for n in 0..<count {
                let atMs = startMs + 60_000 + Int64(n) * step
                let amount = Int64(300 + (n * 7_919) % 15_000)
                let lot = programme.expiry.lot(earnedOn: programme.calendar.day(ms: atMs))
                add(atMs, .purchase(Purchase(member: member, amount: amount, pointsRedeemed: n % 10 == 9 ? 20 : 0,
                                             pointsValue: n % 10 == 9 ? 20 : 0, pointsEarned: amount / 100, pointsExpireOn: lot.iso,
                                             qualifying: amount / 100, rulesVersion: 1)))
            }
        }
        for from in stride(from: 0, to: ops.count, by: SyncLimits.pushBatchMax) {
            let results = try hub.push(Array(ops[from..<min(ops.count, from + SyncLimits.pushBatchMax)]), from: store)
            if let refused = results.first(where: { $0.status != .accepted }) {
                throw BenchFailure("the hub did not accept \(refused.id): \(refused.status) \(refused.reason ?? "")")
            }
        }
        let node = try NodeStore(path: (dir as NSString).appendingPathComponent("node.sqlite"), store: store)
        defer { try? node.pool.close() }
        try node.bootstrap(try hub.snapshot(for: store))

        // Alternately, so that both see the same machine.
        var long: [UInt64] = [], short: [UInt64] = []
        let request = NodeAPI.PurchaseRequest(amount: 5_000)
        for _ in 0..<max(200, sizes.purchases) {
            for (i, member) in members.enumerated() {
                let t = Clock.now()
                _ = try node.quote(member, request)
                let took = Clock.now() - t
                if i == 0 { long.append(took) } else { short.append(took) }
            }
        }
        let longP50 = Latencies(samples: long, wallSeconds: 1).p50, shortP50 = Latencies(samples: short, wallSeconds: 1).p50
        report(String(format: "  pricing p50: %d sales %.3f ms, 10 sales %.3f ms", sales, longP50, shortP50))
        return [BenchRow(what: "Pricing a sale (in process), a member with \(sales) sales over 3 years, lots ended, a tenth paid with points: p50",
                         tessera: String(format: "%.3f ms", longP50), limit: String(format: "a member with 10 sales: %.3f ms", shortP50),
                         ratio: String(format: "%.1fx", longP50 / shortP50), target: "")]
    }
}
