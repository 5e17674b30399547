import Foundation
import GRDB
import TesseraCore
import TesseraProtocol

/// The oracle for the summaries: head office's reports computed the slow way, by replaying the
/// log, and a check that the summaries say the same. Liabilities as of a past date use the
/// replay (only the movements stamped by then count, which no running total can give).
extension HubStore {
    /// Every difference between the summaries and a replay of the log (none: they agree).
    /// The simulation runs it on every seed; `tessera check` on a hub.
    public func checkSummaries() throws -> [String] {
        try refresh()
        let now = physicalMs()
        return try pool.read { db in
            var problems: [String] = []
            func compare<T: Equatable>(_ what: String, _ summary: T, _ replay: T) {
                if summary != replay { problems.append("\(what): the summaries give \(summary), a replay of the log gives \(replay)") }
            }
            let flows = try self.allocation(db).flows
            let closed = try self.closedPeriods(db)
            for number in 1...(closed.count + 1) {
                let after = number == 1 ? 0 : closed[number - 2]
                let through = number <= closed.count ? closed[number - 1] : Int64.max
                compare("settlement period \(number)", try self.summaryPairs(period: number, db),
                        Settlement.net(flows.filter { $0.version > after && $0.version <= through }).pairs)
            }
            let programme = try Replica.programme(db)
            compare("liabilities", try self.summaryLiabilities(programme, db), try self.replayedLiabilities(untilMs: .max, programme, db))
            compare("store days", try self.summaryStoreActivity(from: nil, through: nil, store: nil, db).days, try self.replayedStoreDays(db))
            for days in [0, 30] as [Int64] {
                compare("breakage after \(days) days", try self.summaryBreakage(untouchedDays: days, nowMs: now, db),
                        try self.replayedBreakage(untouchedDays: days, nowMs: now, db))
            }
            let window: Int64 = 90
            let summary = try self.profiles(db, windowDays: window, nowMs: now)
            let replay = try self.replayedProfiles(db)
            compare("member profiles", summary.map { Self.activityLine($0, nowMs: now, window: window) }.sorted(),
                    replay.map { Self.activityLine($0, nowMs: now, window: window) }.sorted())
            // Tiers from one pass over the counters, as each member's own standing has them, now and a while ago.
            let views = try Replica.allViews(asOfMs: now, db).filter { $0.mergedInto == nil }
            compare("members", try Replica.memberCount(db), views.count)
            let tiers = try Replica.tierIndexes(programme: programme, asOfMs: now, db)
            compare("tiers", views.map { "\($0.id) \($0.tier ?? "none")" },
                    views.map { "\($0.id) \(tiers[$0.id].flatMap { programme.tiers?.levels[$0].name } ?? "none")" })
            let then = now - 30 * 86_400_000
            let before = try Replica.tierIndexes(programme: programme, asOfMs: then, entriesThroughMs: then, db)
            compare("tiers 30 days ago", try views.map { "\($0.id) \(try Replica.standing(of: $0.id, programme: programme, asOfMs: then, entriesThroughMs: then, db).tierIndex ?? -1)" },
                    views.map { "\($0.id) \(before[$0.id] ?? -1)" })
            problems += try Replica.entrySumProblems(db)
            return problems
        }
    }

    /// Makes the summaries again from the log (what an upgraded hub does once when it opens).
    public func rebuildSummaries() throws {
        try write { db, _ in try HubSummaries.rebuild(db) }
    }

    /// What a profile says of a member's activity, as segments read it.
    private static func activityLine(_ p: Segments.Profile, nowMs: Int64, window: Int64) -> String {
        let recent = p.recentPurchasesMs.filter { nowMs - $0 < window * 86_400_000 && $0 <= nowMs }.count
        return "\(p.id) enrolled \(p.enrolledMs) purchases \(p.purchases) last \(p.lastPurchaseMs ?? -1) recent \(recent) spend \(p.spend)"
    }

    func replayedLiabilities(untilMs: Int64, _ programme: Programme, _ db: Database) throws -> HubAPI.Liabilities {
        let allocation = try self.allocation(db, untilMs: untilMs)
        var stores: [String: HubAPI.StoreLiability] = [:]
        for lot in allocation.lots {
            var s = stores[lot.store] ?? HubAPI.StoreLiability(store: lot.store, principal: 0, bonus: 0, owedPrincipal: 0, owedBonus: 0)
            if lot.currency == .principal { s.principal += lot.amount } else { s.bonus += lot.amount }
            stores[lot.store] = s
        }
        for debt in allocation.owed {
            var s = stores[debt.store] ?? HubAPI.StoreLiability(store: debt.store, principal: 0, bonus: 0, owedPrincipal: 0, owedBonus: 0)
            if debt.currency == .principal { s.owedPrincipal += debt.amount } else { s.owedBonus += debt.amount }
            stores[debt.store] = s
        }
        let list = stores.values.sorted { $0.store < $1.store }
        // Each enrolled member's points (with those merged into it), what its view shows,
        // summed from the entries in one query rather than a view per member.
        var byRoot: [MemberID: Int64] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT member_id, SUM(points) AS points FROM entries WHERE at_ms <= ? GROUP BY member_id"),
                                    arguments: [untilMs]) {
            let root = try Replica.root(of: MemberID(row["member_id"]), db)
            guard try Replica.isEnrolled(root, db) else { continue }
            byRoot[root, default: 0] += row["points"] as Int64
        }
        let points = byRoot.values.reduce(0) { $0 + max(0, $1) }
        return Self.liabilities(list, points: points, programme)
    }

    private func replayedStoreDays(_ db: Database) throws -> [HubAPI.StoreDay] {
        let calendar = try Replica.programme(db).calendar
        struct Key: Hashable { var store: String; var day: Int64 }
        var days: [Key: HubAPI.StoreDay] = [:]
        // Local midnights fall on quarter hours of UTC, so a quarter hour lies in one local
        // day: one time-zone look-up per quarter hour, not per operation.
        var dayOfQuarter: [Int64: LocalDay] = [:]
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT origin, kind, hlc, COALESCE(json_extract(body, '$.amount'), 0), COALESCE(json_extract(body, '$.value_spent'), 0),
                   COALESCE(json_extract(body, '$.points_earned'), 0), COALESCE(json_extract(body, '$.points_redeemed'), 0)
            FROM ops WHERE origin <> 'hub' AND id NOT IN (SELECT of FROM voids)
            """))
        while let row = try rows.next() {
            let wallMs = HLCTimestamp(packed: row[2])?.wallMs ?? 0
            let quarter = wallMs / 900_000
            let day = dayOfQuarter[quarter] ?? calendar.day(ms: quarter * 900_000)
            dayOfQuarter[quarter] = day
            let origin: String = row[0]
            let key = Key(store: origin, day: day.number)
            var d = days[key] ?? HubAPI.StoreDay(store: origin, day: day.iso)
            d.operations += 1
            let kind: String = row[1]
            switch kind {
            case "member.enrolled": d.enrolments += 1
            case "value.recharged": d.recharges += 1; d.recharged += row[3] as Int64
            case "purchase":
                d.sales += 1; d.sold += row[3] as Int64; d.spentFromBalance += row[4] as Int64
                d.pointsEarned += row[5] as Int64; d.pointsRedeemed += row[6] as Int64
            case "refund": d.refunds += 1
            default: break
            }
            days[key] = d
        }
        return days.values.sorted { ($0.day, $0.store) < ($1.day, $1.store) }
    }

    private func replayedBreakage(untouchedDays: Int64, nowMs now: Int64, _ db: Database) throws -> [HubAPI.Dormant] {
        var last: [MemberID: Int64] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT member_id, MAX(at_ms) AS at FROM entries WHERE value <> 0 OR bonus <> 0 GROUP BY member_id")) {
            let root = try Replica.root(of: MemberID(row["member_id"]), db)
            last[root] = max(last[root] ?? 0, row["at"] as Int64)
        }
        return try Replica.allViews(asOfMs: now, db).filter { $0.mergedInto == nil && $0.balance > 0 }.compactMap { view in
            guard let at = last[view.id], (now - at) / 86_400_000 >= untouchedDays else { return nil }
            return HubAPI.Dormant(member: view.id, balance: view.balance, lastMovement: isoTime(ms: at))
        }.sorted { ($0.lastMovement, $0.member.rawValue) < ($1.lastMovement, $1.member.rawValue) }
    }

    private func replayedProfiles(_ db: Database) throws -> [Segments.Profile] {
        var roots: [String: MemberID] = [:]
        func root(_ id: String) throws -> MemberID {
            if let known = roots[id] { return known }
            let found = try Replica.root(of: MemberID(id), db)
            roots[id] = found
            return found
        }
        var purchases: [MemberID: [Int64]] = [:], spend: [MemberID: Int64] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT member_id, hlc, COALESCE(json_extract(body, '$.amount'), 0) AS amount FROM ops
            WHERE kind = 'purchase' AND member_id IS NOT NULL AND id NOT IN (SELECT of FROM voids)
            """)) {
            let member = try root(row["member_id"])
            purchases[member, default: []].append(HLCTimestamp(packed: row["hlc"])?.wallMs ?? 0)
            spend[member, default: 0] += row["amount"] as Int64
        }
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT r.member_id, COALESCE(json_extract(r.body, '$.amount'), 0) AS amount FROM ops r
            JOIN ops p ON p.id = json_extract(r.body, '$.of') AND p.kind = 'purchase'
            WHERE r.kind = 'refund' AND r.member_id IS NOT NULL AND r.id NOT IN (SELECT of FROM voids) AND p.id NOT IN (SELECT of FROM voids)
            """)) {
            spend[try root(row["member_id"]), default: 0] -= row["amount"] as Int64
        }
        let enrolled = Dictionary(try Row.fetchAll(db.cachedStatement(sql: "SELECT id, enrolled FROM members WHERE enrolled IS NOT NULL"))
            .map { (MemberID($0["id"]), Replica.wallMs(ofStampKey: $0["enrolled"]) ?? 0) }, uniquingKeysWith: min)
        return try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, name, phone, birthday FROM members WHERE enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges) ORDER BY id
            """)).map { row in
            let id = MemberID(row["id"])
            return Segments.Profile(id: id, name: row["name"], phone: row["phone"], birthday: row["birthday"], enrolledMs: enrolled[id] ?? 0,
                                    purchasesMs: purchases[id] ?? [], spend: spend[id] ?? 0, tier: nil, membershipUntil: nil)
        }
    }
}
