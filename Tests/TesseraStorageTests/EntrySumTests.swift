import Foundation
import Testing
import GRDB
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage
import TesseraTestSupport

@Suite("Entry sums")
struct EntrySumTests {
    /// Random entries inserted and deleted straight into a replica's table (every path that
    /// writes entries goes through the same triggers), merged members, lots that ended and lots
    /// to come, some netting to zero: after every step the sums are the entries grouped, and a
    /// standing's ledger read from the sums is the one the entries give.
    @Test("the sums the triggers keep are the entries grouped, and a ledger read from them is the one read from the entries, whatever is inserted or deleted",
          arguments: UInt64(0)..<12)
    func sumsFollowEntries(_ seed: UInt64) throws {
        let dir = try TempDir()
        let node = try NodeStore(path: dir.path("n.sqlite"), store: s1)
        let programme = try Examples.programme("fresh-market")
        let pharmacy = try Examples.programme("pharmacy")
        let now: Int64 = 1_784_000_000_000 // 2026-07-14
        let today = programme.calendar.day(ms: now)
        var rng = SplitMix64(seed: seed &+ 7)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        let members = (0..<5).map { "m-s1-\($0)" }
        var ops: [String] = []
        var spendsRead = 0
        for step in 0..<8 {
            try node.pool.write { db in
                for i in 0..<(20 + pick(30)) {
                    let op = "s1:\(step * 100 + i)"
                    ops.append(op)
                    for part in 0..<(1 + pick(2)) {
                        // Lots a few days either side of today (some ended), or none.
                        let lot: Int64? = pick(3) == 0 ? nil : today.number + Int64(pick(7)) - 3
                        let points = Int64(pick(200)) - 60
                        try db.execute(sql: """
                            INSERT OR IGNORE INTO entries (op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """, arguments: [op, part, members[pick(members.count)], Int64(pick(5_000)) - 2_000, Int64(pick(300)),
                                             points, lot, lot == nil && pick(6) == 0 ? -points : 0, Int64(pick(100)),
                                             now - Int64(pick(10)) * 45 * 86_400_000]) // over two years (a yearly tier reset)
                    }
                }
                // A replay of an entry already held changes nothing.
                if let op = ops.randomElement(using: &rng) {
                    try db.execute(sql: "INSERT OR IGNORE INTO entries (op_id, part, member_id, value, points) SELECT op_id, part, member_id, 999, 999 FROM entries WHERE op_id = ?",
                                   arguments: [op])
                }
                // Operations the hub rejected: their entries go.
                for _ in 0..<pick(8) {
                    guard !ops.isEmpty else { break }
                    try db.execute(sql: "DELETE FROM entries WHERE op_id = ?", arguments: [ops.remove(at: pick(ops.count))])
                }
                if step == 3 {
                    try db.execute(sql: "INSERT INTO merges (from_id, into_id, stamp) VALUES (?, ?, 'x')", arguments: [members[4], members[0]])
                }
            }
            try node.pool.read { db in
                #expect(try Replica.entrySumProblems(db).isEmpty, "seed \(seed) step \(step)")
                for member in members.prefix(4) {
                    let group = try Replica.group(of: MemberID(member), db)
                    let fromSums = try Replica.ledgerSummary(group: group, programme: programme, asOfMs: now, db)
                    let fromEntries = try Replica.ledgerSummary(group: group, programme: programme, asOfMs: now, entriesThroughMs: .max - 1, db)
                    #expect(fromSums == fromEntries, "seed \(seed) step \(step) \(member)")
                    spendsRead += fromSums.spends.count
                    // The tier the hub reads alone (for tier events) is the standing's, with a
                    // yearly reset (fresh market) and without (pharmacy).
                    for rules in [programme, pharmacy] {
                        let standing = try Replica.standing(of: MemberID(member), programme: rules, asOfMs: now, db)
                        #expect(try Replica.tier(of: MemberID(member), programme: rules, asOfMs: now, db) == standing.tier,
                                "seed \(seed) step \(step) \(member) \(rules.name)")
                    }
                }
            }
        }
        // Spends before the last ended lot were read from the buckets (and compared above).
        #expect(spendsRead > 0, "seed \(seed)")
        // A row of each kept table changed behind the triggers' back: the check names each table.
        try node.pool.write { db in
            for (table, column) in [("entry_sums", "balance"), ("lot_sums", "points"), ("qualifying_periods", "qualifying"), ("spend_buckets", "spent")] {
                try db.execute(sql: "UPDATE \(table) SET \(column) = \(column) + 1 WHERE member_id = (SELECT MIN(member_id) FROM \(table))")
            }
        }
        let problems = try node.entrySumProblems()
        for what in ["entry sums", "points by lot", "tier counter by period", "points spent by quarter hour"] {
            #expect(problems.contains { $0.hasPrefix(what + " of ") }, "seed \(seed): \(what)")
        }
        // Emptied for a new bootstrap: no sums are left without their entries.
        try node.pool.write { db in try Replica.clearState(db) }
        let left = Replica.entrySumTables.map { "(SELECT COUNT(*) FROM \($0))" }.joined(separator: " + ")
        #expect(try node.pool.read { try Int.fetchOne($0, sql: "SELECT \(left)") } == 0)
        #expect(try node.entrySumProblems().isEmpty)
    }

    /// The tier counter's period, in Swift and in SQLite's triggers, is the same moment, and
    /// every time zone puts it in the year it puts the stamp in: stamps at random and around
    /// every UTC new year from 1990 to 2100, in the zones farthest from UTC and in ones with
    /// odd offsets.
    @Test("a stamp's tier period is the same in Swift and in SQL, and in the stamp's local year in every time zone")
    func periodsKeepTheYear() throws {
        let zones = ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Shanghai", "America/St_Johns", "Asia/Kathmandu", "Europe/London", "UTC"]
            .compactMap(ChainCalendar.init(identifier:))
        #expect(zones.count == 7)
        var stamps: [Int64] = []
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2_000 { stamps.append(631_152_000_000 + Int64(rng.next() % 3_471_292_800_000)) } // 1990 to 2100
        for year in Int64(1990)...2100 {
            let newYear = LocalDay.firstDay(ofYear: year).number * 86_400_000
            for offset: Int64 in [-2 * 86_400_000 - 1, -2 * 86_400_000, -86_400_000 - 1, -86_400_000, -900_001, -1, 0, 1, 899_999,
                                  86_400_000 - 1, 86_400_000, 2 * 86_400_000 - 1, 2 * 86_400_000] {
                stamps.append(newYear + offset)
            }
        }
        let queue = try DatabaseQueue()
        let sql = "SELECT \(Replica.periodSQL("?"))", uses = sql.filter { $0 == "?" }.count
        let inSQL = try queue.read { db in
            try stamps.map { try Int64.fetchOne(db, sql: sql, arguments: StatementArguments(Array(repeating: $0, count: uses))) }
        }
        for (stamp, fromSQL) in zip(stamps, inSQL) {
            let period = LedgerSummary.period(stamp)
            #expect(fromSQL == period, "stamp \(stamp)")
            for zone in zones {
                #expect(zone.day(ms: period).year == zone.day(ms: stamp).year, "stamp \(stamp) in \(zone.timeZone.identifier)")
            }
        }
        // A month's stamps share one period but on its two days around a new year.
        let june = LocalDay.firstDay(ofYear: 2027).number * 86_400_000 + 160 * 86_400_000
        #expect(LedgerSummary.period(june) == LedgerSummary.period(june + 5 * 86_400_000))
    }
}
