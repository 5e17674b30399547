/// One ledger entry as a replica stores it: the entry and the wall-clock time of its operation.
public struct LedgerRow: Hashable, Sendable {
    public var entry: LedgerEntry
    public var atMs: Int64
    public init(_ entry: LedgerEntry, atMs: Int64) { self.entry = entry; self.atMs = atMs }
}

/// Everything the rules need to know about a member (resolved through merges) at one moment,
/// derived from the member's ledger rows, coupons and memberships under one programme. Both
/// the pure fold and the SQLite replicas call `derive`, so every replica agrees.
public struct MemberStanding: Hashable, Sendable {
    /// Stored value: principal plus bonus.
    public var balance: Int64 = 0
    public var bonus: Int64 = 0
    /// The ledger's points (what the recorded operations add up to).
    public var points: Int64 = 0
    /// Points the rules say have expired but no `points.expired` operation has taken yet
    /// (negative when an expiry took too many and the hub has yet to give them back).
    public var expiryDue: Int64 = 0
    /// Points ever earned into lots, net of reversals (lifetime bands).
    public var lifetimePoints: Int64 = 0
    /// The tier counter of the current period (all history with no reset).
    public var qualifying: Int64 = 0
    public var tierIndex: Int?
    public var tier: Programme.Tier?
    /// The best membership valid on the day, if any.
    public var membership: MembershipPeriod?
    /// Coupons issued, not used (or whose use was refunded), valid on the day, soonest ending first.
    public var coupons: [Coupon] = []
    public var lastPurchaseDay: LocalDay?

    public init() {}

    /// Points that may be spent now: expired points are not, even before the hub records it.
    public var pointsAvailable: Int64 { points - max(0, expiryDue) }
    public var principal: Int64 { balance - bonus }
    public var holdings: Holdings { Holdings(valueMinor: balance, points: points, bonusMinor: bonus) }

    /// - Parameters:
    ///   - couponUses: for each coupon id, the operations that used it.
    ///   - couponRestores: for each coupon id, the uses whose purchase was refunded in full.
    ///   - purchaseTimes: wall-clock ms of the member's purchases (dormancy).
    public static func derive(rows: [LedgerRow], coupons: [Coupon], couponUses: [String: Set<OperationID>],
                              couponRestores: [String: Set<OperationID>], memberships: [MembershipPeriod],
                              purchaseTimes: [Int64], programme: Programme, asOfMs: Int64) -> MemberStanding {
        let calendar = programme.calendar
        let today = calendar.day(ms: asOfMs)
        var s = MemberStanding()
        var recordedExpiry: Int64 = 0
        for row in rows {
            let e = row.entry
            s.balance += e.value + e.bonus
            s.bonus += e.bonus
            s.points += e.points
            recordedExpiry += e.expired
            if e.lot != nil { s.lifetimePoints += e.points }
        }
        s.expiryDue = PointsExpiry.target(rows: rows, calendar: calendar, today: today) - recordedExpiry
        if let tiers = programme.tiers {
            let standing = TierRule.standing(tiers, rows: rows, calendar: calendar, today: today)
            s.tierIndex = standing.index
            s.tier = tiers.levels[standing.index]
            s.qualifying = standing.qualifying
        } else {
            s.qualifying = TierRule.periodTotal(rows: rows, calendar: calendar, year: nil)
        }
        s.membership = memberships.filter { $0.covers(today) }
            .max { ($0.discountPercent, $0.pointsPercent, $0.until, $0.from, $0.plan, $0.member.rawValue)
                < ($1.discountPercent, $1.pointsPercent, $1.until, $1.from, $1.plan, $1.member.rawValue) }
        s.coupons = coupons
            .filter { c in c.isValid(on: today) && (couponUses[c.id] ?? []).subtracting(couponRestores[c.id] ?? []).isEmpty }
            .sorted { ($0.validUntil, $0.id) < ($1.validUntil, $1.id) }
        s.lastPurchaseDay = purchaseTimes.max().map { calendar.day(ms: $0) }
        return s
    }
}

/// Points expire lot by lot, and spending takes the oldest-expiring points first. Which lot a
/// spend took from depends on the order of spends, which replicas may see differently; the
/// total that has expired does not: at the end of each lot's last day, what has expired in all
/// is the largest excess, over the days lots ended, of points earned into lots ending by that
/// day over points spent by that day. A function of the set of operations, so the hub's
/// `points.expired` operations and every replica's view agree, and an offline spend that
/// reaches the hub after an expiry gives the points back (a negative expiry).
public enum PointsExpiry {
    public static func target(rows: [LedgerRow], calendar: ChainCalendar, today: LocalDay) -> Int64 {
        var earnedByLot: [LocalDay: Int64] = [:]
        var spentByDay: [(LocalDay, Int64)] = []
        for row in rows {
            let e = row.entry
            if let lot = e.lot {
                if lot < today { earnedByLot[lot, default: 0] += e.points }
            } else if e.expired == 0, e.points != 0 {
                spentByDay.append((calendar.day(ms: row.atMs), -e.points))
            }
        }
        guard !earnedByLot.isEmpty else { return 0 }
        spentByDay.sort { $0.0 < $1.0 }
        var best: Int64 = 0, earned: Int64 = 0, spent: Int64 = 0, next = 0
        for lot in earnedByLot.keys.sorted() {
            earned += earnedByLot[lot] ?? 0
            while next < spentByDay.count, spentByDay[next].0 <= lot {
                spent += spentByDay[next].1
                next += 1
            }
            best = max(best, earned - spent)
        }
        return best
    }
}

/// Tiers are derived from the qualifying counter (never the spendable balance).
public enum TierRule {
    public static func level(for total: Int64, in levels: [Programme.Tier]) -> Int {
        var index = 0
        for (i, level) in levels.enumerated() where total >= level.threshold { index = i }
        return index
    }

    static func periodTotal(rows: [LedgerRow], calendar: ChainCalendar, year: Int64?) -> Int64 {
        rows.reduce(0) { sum, row in
            guard row.entry.qualifying != 0 else { return sum }
            if let year, calendar.day(ms: row.atMs).year != year { return sum }
            return sum + row.entry.qualifying
        }
    }

    /// The tier on `today` and the counter of the current period. With a yearly reset, a
    /// member keeps a level for the next year only by earning it again this year; otherwise
    /// the downgrade policy applies. Within a year, reaching a threshold promotes at once.
    public static func standing(_ tiers: Programme.Tiers, rows: [LedgerRow], calendar: ChainCalendar,
                                today: LocalDay) -> (index: Int, qualifying: Int64) {
        switch tiers.reset {
        case .never:
            let total = periodTotal(rows: rows, calendar: calendar, year: nil)
            return (level(for: total, in: tiers.levels), total)
        case .yearly:
            var byYear: [Int64: Int64] = [:]
            for row in rows where row.entry.qualifying != 0 {
                byYear[calendar.day(ms: row.atMs).year, default: 0] += row.entry.qualifying
            }
            let current = today.year
            guard let first = byYear.keys.min(), first < current else {
                let total = byYear[current] ?? 0
                return (level(for: total, in: tiers.levels), total)
            }
            var start = 0
            for year in first..<current {
                let earned = level(for: byYear[year] ?? 0, in: tiers.levels)
                let held = max(start, earned)
                if earned >= held {
                    start = held
                } else {
                    start = switch tiers.downgrade {
                    case .oneLevel: max(earned, held - 1)
                    case .toEarned: earned
                    }
                }
            }
            let total = byYear[current] ?? 0
            return (max(start, level(for: total, in: tiers.levels)), total)
        }
    }
}
