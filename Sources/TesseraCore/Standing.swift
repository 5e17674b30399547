/// One ledger entry as a replica stores it: the entry and the wall-clock time of its operation.
public struct LedgerRow: Hashable, Sendable {
    public var entry: LedgerEntry
    public var atMs: Int64
    public init(_ entry: LedgerEntry, atMs: Int64) { self.entry = entry; self.atMs = atMs }
}

/// What the rules need from a member's ledger, in a form SQL can aggregate: sums, the points
/// of each ended lot, spends in quarter-hour buckets (every time zone's offset is a multiple of
/// a quarter hour, so a bucket never straddles a local midnight), and tier counters by `period`.
public struct LedgerSummary: Hashable, Sendable {
    public static let bucketMs: Int64 = 900_000

    public var balance: Int64 = 0
    public var bonus: Int64 = 0
    public var points: Int64 = 0
    public var expired: Int64 = 0
    /// Points earned into lots, net of reversals.
    public var lifetimePoints: Int64 = 0
    public var qualifyingTotal: Int64 = 0
    /// Net points per lot day, for lots that ended before the day asked about.
    public var endedLots: [LocalDay: Int64] = [:]
    /// Points spent (positive) or given back (negative), by bucket start, up to the last ended lot.
    public var spends: [Int64: Int64] = [:]
    /// The tier counter by period (`period`; filled only when a yearly reset needs it).
    public var qualifying: [Int64: Int64] = [:]

    public init() {}

    public static func bucket(_ ms: Int64) -> Int64 { (ms / bucketMs) * bucketMs }

    /// The period of the tier counter a stamp (after 1970) is counted in: what a yearly reset
    /// needs is the counter by local year, in the programme's time zone, which a later version
    /// may change. Every zone's new year falls within 14 hours of UTC's, on the 31st of December
    /// or the 1st of January (UTC): a stamp on any other day is in the same year in every zone,
    /// so it counts in its UTC month, named by the month's 15th at 00:00 UTC (a moment every
    /// zone puts in that year). A stamp on those two days counts in its quarter hour, as
    /// spends do. A member's counter is then a dozen rows a year, not one a visit.
    public static func period(_ ms: Int64) -> Int64 {
        let days = ms / 86_400_000
        let (year, month, day) = LocalDay.civilFromDays(days)
        if (month == 12 && day == 31) || (month == 1 && day == 1) { return bucket(ms) }
        return LocalDay.daysFromCivil(year, month, 15) * 86_400_000
    }

    /// Adds an entry to the sums (not to the ended lots or the buckets, which depend on the day
    /// asked about and on the other entries).
    public mutating func addSums(_ e: LedgerEntry) {
        balance += e.value + e.bonus
        bonus += e.bonus
        points += e.points
        expired += e.expired
        qualifyingTotal += e.qualifying
        if e.lot != nil { lifetimePoints += e.points }
    }

    /// The summary of ledger rows held in memory (the pure fold); SQLite computes the same in SQL.
    public init(rows: [LedgerRow], calendar: ChainCalendar, today: LocalDay, byBucket: Bool) {
        for row in rows {
            addSums(row.entry)
            if let lot = row.entry.lot, lot < today { endedLots[lot, default: 0] += row.entry.points }
        }
        if let last = endedLots.keys.max() {
            let bound = PointsExpiry.spendsBound(lastEndedLot: last)
            for row in rows where row.entry.lot == nil && row.entry.expired == 0 && row.entry.points != 0 && row.atMs < bound {
                spends[Self.bucket(row.atMs), default: 0] -= row.entry.points
            }
        }
        if byBucket {
            for row in rows where row.entry.qualifying != 0 { qualifying[Self.period(row.atMs), default: 0] += row.entry.qualifying }
        }
    }
}

/// Everything the rules need to know about a member (resolved through merges) at one moment,
/// derived from the member's ledger, coupons and memberships under one programme. Both the
/// pure fold and the SQLite replicas call `derive`, so every replica agrees.
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

    public init() {}

    /// Points that may be spent now: expired points are not, even before the hub records it.
    public var pointsAvailable: Int64 { points - max(0, expiryDue) }
    public var principal: Int64 { balance - bonus }
    public var holdings: Holdings { Holdings(valueMinor: balance, points: points, bonusMinor: bonus) }

    /// Whether `derive` needs the tier counter by bucket (a yearly reset) or only its total.
    public static func needsQualifyingBuckets(_ programme: Programme) -> Bool { programme.tiers?.reset == .yearly }

    /// - Parameters:
    ///   - couponUses: for each coupon id, the operations that used it.
    ///   - couponRestores: for each coupon id, the uses whose purchase was refunded in full.
    public static func derive(ledger: LedgerSummary, coupons: [Coupon], couponUses: [String: Set<OperationID>],
                              couponRestores: [String: Set<OperationID>], memberships: [MembershipPeriod],
                              programme: Programme, asOfMs: Int64) -> MemberStanding {
        let calendar = programme.calendar
        let today = calendar.day(ms: asOfMs)
        var s = MemberStanding()
        s.balance = ledger.balance
        s.bonus = ledger.bonus
        s.points = ledger.points
        s.lifetimePoints = ledger.lifetimePoints
        s.expiryDue = PointsExpiry.target(endedLots: ledger.endedLots, spends: ledger.spends, calendar: calendar) - ledger.expired
        if let tiers = programme.tiers {
            let standing = TierRule.standing(tiers, total: ledger.qualifyingTotal, byBucket: ledger.qualifying, calendar: calendar, today: today)
            s.tierIndex = standing.index
            s.tier = tiers.levels[standing.index]
            s.qualifying = standing.qualifying
        } else {
            s.qualifying = ledger.qualifyingTotal
        }
        s.membership = memberships.filter { $0.covers(today) }
            .max { ($0.discountPercent, $0.pointsPercent, $0.until, $0.from, $0.plan, $0.member.rawValue)
                < ($1.discountPercent, $1.pointsPercent, $1.until, $1.from, $1.plan, $1.member.rawValue) }
        s.coupons = coupons
            .filter { c in c.isValid(on: today) && (couponUses[c.id] ?? []).subtracting(couponRestores[c.id] ?? []).isEmpty }
            .sorted { ($0.validUntil, $0.id) < ($1.validUntil, $1.id) }
        return s
    }

    /// The same from ledger rows held in memory.
    public static func derive(rows: [LedgerRow], coupons: [Coupon], couponUses: [String: Set<OperationID>],
                              couponRestores: [String: Set<OperationID>], memberships: [MembershipPeriod],
                              programme: Programme, asOfMs: Int64) -> MemberStanding {
        let ledger = LedgerSummary(rows: rows, calendar: programme.calendar, today: programme.calendar.day(ms: asOfMs),
                                   byBucket: needsQualifyingBuckets(programme))
        return derive(ledger: ledger, coupons: coupons, couponUses: couponUses, couponRestores: couponRestores,
                      memberships: memberships, programme: programme, asOfMs: asOfMs)
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
    /// Spends after this moment cannot matter to lots that ended by `lastEndedLot` (local
    /// midnights lie within 14 hours of UTC ones).
    public static func spendsBound(lastEndedLot: LocalDay) -> Int64 { (lastEndedLot.number + 2) * 86_400_000 }

    /// - Parameters:
    ///   - endedLots: net points of each lot whose last day is before today.
    ///   - spends: points spent by bucket start (wall-clock ms).
    public static func target(endedLots: [LocalDay: Int64], spends: [Int64: Int64], calendar: ChainCalendar) -> Int64 {
        guard !endedLots.isEmpty else { return 0 }
        var spentByDay: [LocalDay: Int64] = [:]
        for (bucket, points) in spends { spentByDay[calendar.day(ms: bucket), default: 0] += points }
        let days = spentByDay.keys.sorted()
        var best: Int64 = 0, earned: Int64 = 0, spent: Int64 = 0, next = 0
        for lot in endedLots.keys.sorted() {
            earned += endedLots[lot] ?? 0
            while next < days.count, days[next] <= lot {
                spent += spentByDay[days[next]] ?? 0
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

    /// The tier on `today` and the counter of the current period. With a yearly reset, a
    /// member keeps a level for the next year only by earning it again this year; otherwise
    /// the downgrade policy applies. Within a year, reaching a threshold promotes at once.
    /// - Parameters:
    ///   - total: the counter over all history (no reset).
    ///   - byBucket: the counter by period (`LedgerSummary.period`; a yearly reset): any moment
    ///     of a period is in the year of all the period's stamps.
    public static func standing(_ tiers: Programme.Tiers, total: Int64, byBucket: [Int64: Int64], calendar: ChainCalendar,
                                today: LocalDay) -> (index: Int, qualifying: Int64) {
        switch tiers.reset {
        case .never:
            return (level(for: total, in: tiers.levels), total)
        case .yearly:
            var byYear: [Int64: Int64] = [:]
            for (bucket, amount) in byBucket { byYear[calendar.day(ms: bucket).year, default: 0] += amount }
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

    /// The same from ledger rows held in memory.
    public static func standing(_ tiers: Programme.Tiers, rows: [LedgerRow], calendar: ChainCalendar,
                                today: LocalDay) -> (index: Int, qualifying: Int64) {
        let ledger = LedgerSummary(rows: rows, calendar: calendar, today: today, byBucket: true)
        return standing(tiers, total: ledger.qualifyingTotal, byBucket: ledger.qualifying, calendar: calendar, today: today)
    }
}
