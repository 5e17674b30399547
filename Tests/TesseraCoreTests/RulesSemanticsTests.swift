import Foundation
import PropertyBased
import Testing
import TesseraCore
import TesseraTestSupport

/// A small log builder: operations of one store at given local times, plus the hub's.
struct Log {
    var ops: [TesseraCore.Operation] = []
    var seq: UInt64 = 0
    var hubSeq: UInt64 = 0

    @discardableResult
    mutating func add(_ body: OperationBody, at ms: Int64, hub: Bool = false) -> OperationID {
        let id: OperationID
        if hub { hubSeq += 1; id = OperationID(origin: .hub, seq: hubSeq) } else { seq += 1; id = OperationID(origin: s1, seq: seq) }
        ops.append(TesseraCore.Operation(id: id, hlc: HLCTimestamp(wallMs: ms, counter: UInt16(seq + hubSeq)), body: body))
        return id
    }

    mutating func enrol(at ms: Int64) -> MemberID {
        let id = OperationID(origin: s1, seq: seq + 1)
        let member = MemberID(enrolment: id)
        add(.memberEnrolled(MemberEnrolled(member: member, card: CardNumber("C\(id.seq)"), name: "Ada", phone: "+1555000\(id.seq)")), at: ms)
        return member
    }

    mutating func publish(_ programme: Programme, at ms: Int64) {
        add(.rulesPublished(RulesPublished(version: programme.version, programme: programme.json)), at: ms, hub: true)
    }

    var state: ChainState { ChainState(folding: ops) }
}

func zoneProgramme(expiry: Programme.Expiry, tiers: Programme.Tiers? = nil) -> Programme {
    Programme(version: 1, name: "test", timeZone: "Asia/Shanghai", expiry: expiry, tiers: tiers)
}

@Suite("Refunds reverse exactly what the sale created")
struct RefundTests {
    static let sale = Purchase(member: ada, amount: 10_001, discount: 500, coupon: "welcome/store-1:1", couponDiscount: 1000,
                               pointsRedeemed: 333, pointsValue: 333, valueSpent: 7000, bonusSpent: 777, pointsEarned: 81,
                               pointsExpireOn: "2027-12-31", qualifying: 81, referrer: MemberID("m-store-1-0"), referralPoints: 7)

    @Test("partial refunds that add up to the whole reverse every number to the unit, whatever the split")
    func splitsAddUp() async {
        await propertyCheck(count: 300, input: Gen.uint64()) { seed in
            var rng = SplitMix64(seed: seed)
            let sale = Self.sale
            var refunded: Int64 = 0
            var parts: [Refund] = []
            while refunded < sale.amount {
                let left = sale.amount - refunded
                let amount = Bool.random(using: &rng) ? Int64.random(in: 1...left, using: &rng) : min(left, Int64.random(in: 1...7, using: &rng))
                let last = refunded + amount == sale.amount
                let part = try! RulesEngine.refund(sale, of: OperationID(origin: s1, seq: 2), member: ada, refundedSoFar: refunded,
                                                   amount: last && Bool.random(using: &rng) ? nil : amount)
                refunded += part.amount
                parts.append(part)
            }
            #expect(parts.reduce(0) { $0 + $1.value + $1.bonus } == sale.valueSpent, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.bonus } == sale.bonusSpent, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.pointsRestored } == sale.pointsRedeemed, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.pointsReversed } == sale.pointsEarned, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.qualifying } == -sale.qualifying, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.referralPoints } == sale.referralPoints, "seed \(seed)")
            #expect(parts.reduce(0) { $0 + $1.cashBack } == sale.cashDue, "seed \(seed)")
            #expect(parts.compactMap(\.coupon) == [sale.coupon!], "only the refund that completes the whole frees the coupon")
        }
    }

    @Test("nothing can be refunded twice over, and a refund cannot exceed what is left")
    func bounds() throws {
        let of = OperationID(origin: s1, seq: 2)
        #expect(throws: DomainError(.alreadyRefunded, "transaction store-1:2 is already refunded in full")) {
            try RulesEngine.refund(Self.sale, of: of, member: ada, refundedSoFar: 10_001, amount: nil)
        }
        #expect(throws: DomainError(.refundTooLarge, "at most 1 of transaction store-1:2 can still be refunded, not 2")) {
            try RulesEngine.refund(Self.sale, of: of, member: ada, refundedSoFar: 10_000, amount: 2)
        }
    }

    @Test("a recharge refund takes its principal and bonus back, and pays back only the principal")
    func recharge() throws {
        let recharge = ValueRecharged(member: ada, amount: 20_000, bonus: 2000)
        let half = try RulesEngine.refund(recharge, of: OperationID(origin: s1, seq: 3), member: ada, refundedSoFar: 0, amount: 10_000)
        #expect(half.value == -10_000 && half.bonus == -1000 && half.cashBack == 10_000)
        #expect(half.debitTaken == 11_000)
    }

    @Test("regression (Odoo class): a refunded sale keeps no points and no tier progress")
    func refundKeepsNoPoints() throws {
        var log = Log()
        let tiers = Programme.Tiers(levels: [.init(name: "regular", threshold: 0), .init(name: "silver", threshold: 100)])
        log.publish(zoneProgramme(expiry: .init(), tiers: tiers), at: 1000)
        let member = log.enrol(at: 2000)
        let sale = Purchase(member: member, amount: 100, pointsEarned: 100, qualifying: 100)
        let saleID = log.add(.purchase(sale), at: 3000)
        #expect(log.state.view(of: member)?.tier == "silver")
        let refund = try RulesEngine.refund(sale, of: saleID, member: member, refundedSoFar: 0, amount: 1)
        log.add(.refund(refund), at: 4000)
        // A refund of 1 minor unit takes back the one point that made silver: the threshold is
        // crossed downward by the reversal.
        let view = try #require(log.state.view(of: member))
        #expect(view.points == 99 && view.qualifying == 99 && view.tier == "regular")
        log.add(.refund(try RulesEngine.refund(sale, of: saleID, member: member, refundedSoFar: 1, amount: nil)), at: 5000)
        let after = try #require(log.state.view(of: member))
        #expect(after.points == 0 && after.qualifying == 0)
    }

    @Test("regression (Odoo class): a sale delivered twice (an offline retry) counts once")
    func retryCountsOnce() {
        var log = Log()
        let member = log.enrol(at: 1000)
        log.add(.purchase(Purchase(member: member, amount: 5000, pointsEarned: 50, qualifying: 50)), at: 2000)
        let twice = ChainState(folding: log.ops + log.ops.reversed())
        #expect(twice.view(of: member)?.points == 50)
        #expect(twice == log.state)
    }
}

extension Refund {
    /// What the refund takes from the member's stored value.
    var debitTaken: Int64 { OperationBody.refund(self).debit.valueMinor }
}

@Suite("Points expiry")
struct ExpiryTests {
    static let programme = zoneProgramme(expiry: .init(rule: .afterDays, days: 30))

    func standing(_ log: Log, _ member: MemberID, at ms: Int64) -> MemberStanding {
        log.state.standing(of: member, asOfMs: ms)
    }

    @Test("points expire at midnight in the chain's time zone, not a second before")
    func midnight() {
        var log = Log()
        log.publish(Self.programme, at: 1000)
        let member = log.enrol(at: at("2026-03-01 09:00", "Asia/Shanghai"))
        log.add(.purchase(Purchase(member: member, amount: 10_000, pointsEarned: 100, pointsExpireOn: "2026-03-31")), at: at("2026-03-01 10:00", "Asia/Shanghai"))
        let before = standing(log, member, at: at("2026-03-31 23:59:59", "Asia/Shanghai"))
        let after = standing(log, member, at: at("2026-04-01 00:00:00", "Asia/Shanghai"))
        #expect(before.pointsAvailable == 100 && before.expiryDue == 0)
        #expect(after.pointsAvailable == 0 && after.expiryDue == 100 && after.points == 100)
    }

    @Test("spending takes the oldest-expiring points first", arguments: [(150, 0, 50), (50, 50, 100), (100, 0, 100)] as [(Int64, Int64, Int64)])
    func oldestFirst(spent: Int64, expired: Int64, left: Int64) {
        var log = Log()
        log.publish(Self.programme, at: 1000)
        let member = log.enrol(at: at("2026-01-01"))
        log.add(.purchase(Purchase(member: member, amount: 10_000, pointsEarned: 100, pointsExpireOn: "2026-03-03")), at: at("2026-02-01"))
        log.add(.purchase(Purchase(member: member, amount: 10_000, pointsEarned: 100, pointsExpireOn: "2026-12-31")), at: at("2026-02-02"))
        log.add(.purchase(Purchase(member: member, amount: spent, pointsRedeemed: spent)), at: at("2026-03-01"))
        let s = standing(log, member, at: at("2026-03-05"))
        #expect(s.expiryDue == expired && s.pointsAvailable == left)
    }

    @Test("an offline spend from before an expiry, arriving after it, gives the over-expired points back")
    func lateOfflineSpend() {
        var log = Log()
        log.publish(Self.programme, at: 1000)
        let member = log.enrol(at: at("2026-01-01"))
        log.add(.purchase(Purchase(member: member, amount: 10_000, pointsEarned: 100, pointsExpireOn: "2026-03-03")), at: at("2026-02-01"))
        // The hub's expiry job, on the 4th, took all 100.
        log.add(.pointsExpired(PointsExpired(member: member, points: 100, asOf: "2026-03-03")), at: at("2026-03-04"), hub: true)
        #expect(standing(log, member, at: at("2026-03-05")).expiryDue == 0)
        // A sale made offline on the 2nd, paying 30 points, reaches the hub on the 5th.
        log.add(.purchase(Purchase(member: member, amount: 30, pointsRedeemed: 30)), at: at("2026-03-02"))
        let s = standing(log, member, at: at("2026-03-05"))
        #expect(s.expiryDue == -30 && s.points == -30)
        log.add(.pointsExpired(PointsExpired(member: member, points: -30, asOf: "2026-03-04")), at: at("2026-03-05"), hub: true)
        let settled = standing(log, member, at: at("2026-03-05"))
        #expect(settled.expiryDue == 0 && settled.points == 0 && settled.pointsAvailable == 0)
    }

    @Test("end of the following year: points earned in 2026 are spendable through 2027-12-31")
    func followingYear() throws {
        let rule = Programme.Expiry(rule: .endOfFollowingYear)
        #expect(rule.lot(earnedOn: try #require(LocalDay(iso: "2026-01-01"))).iso == "2027-12-31")
        #expect(rule.lot(earnedOn: try #require(LocalDay(iso: "2026-12-31"))).iso == "2027-12-31")
        #expect(Programme.Expiry().lot(earnedOn: try #require(LocalDay(iso: "2026-12-31"))) == .never)
    }
}

@Suite("Tiers from the qualifying counter")
struct TierTests {
    static let levels: [Programme.Tier] = [
        .init(name: "regular", threshold: 0), .init(name: "silver", threshold: 1000),
        .init(name: "gold", threshold: 5000), .init(name: "vip", threshold: 20_000),
    ]

    func rows(_ items: [(String, Int64)]) -> [LedgerRow] {
        items.map { LedgerRow(LedgerEntry(member: ada, qualifying: $0.1), atMs: at($0.0, "Asia/Shanghai")) }
    }

    @Test("lifetime: a threshold reached exactly promotes", arguments: [(999, "regular"), (1000, "silver"), (19_999, "gold"), (20_000, "vip")] as [(Int64, String)])
    func lifetime(total: Int64, tier: String) throws {
        let tiers = Programme.Tiers(levels: Self.levels)
        let calendar = try #require(ChainCalendar(identifier: "Asia/Shanghai"))
        let got = TierRule.standing(tiers, rows: rows([("2025-05-01", total - 1), ("2026-05-01", 1)]), calendar: calendar,
                                    today: try #require(LocalDay(iso: "2026-06-01")))
        #expect(Self.levels[got.index].name == tier && got.qualifying == total)
    }

    @Test("yearly reset: keep a level by earning it again, else drop one level or to what the year earned", arguments: [
        (Programme.Downgrade.oneLevel, "2026-06-01", "vip"), (.oneLevel, "2027-06-01", "gold"), (.oneLevel, "2028-06-01", "silver"),
        (.toEarned, "2026-06-01", "vip"), (.toEarned, "2027-06-01", "silver"), (.toEarned, "2028-06-01", "regular"),
    ] as [(Programme.Downgrade, String, String)])
    func yearly(downgrade: Programme.Downgrade, today: String, tier: String) throws {
        // vip earned in 2025; 2026 earns only silver; nothing after.
        let tiers = Programme.Tiers(reset: .yearly, downgrade: downgrade, levels: Self.levels)
        let calendar = try #require(ChainCalendar(identifier: "Asia/Shanghai"))
        let got = TierRule.standing(tiers, rows: rows([("2025-03-01", 20_000), ("2026-03-01", 1500)]), calendar: calendar,
                                    today: try #require(LocalDay(iso: today)))
        #expect(Self.levels[got.index].name == tier)
    }

    @Test("yearly reset: the year turns at local midnight", arguments: [("2025-12-31 23:59:59", 1500 as Int64), ("2026-01-01 00:00:00", 0)])
    func yearBoundary(now: String, qualifying: Int64) throws {
        let tiers = Programme.Tiers(reset: .yearly, levels: Self.levels)
        let calendar = try #require(ChainCalendar(identifier: "Asia/Shanghai"))
        let got = TierRule.standing(tiers, rows: rows([("2025-12-31 23:30", 1500)]), calendar: calendar,
                                    today: calendar.day(ms: at(now, "Asia/Shanghai")))
        #expect(got.qualifying == qualifying)
        #expect(Self.levels[got.index].name == "silver", "the level earned in 2025 holds through 2026")
    }

    @Test("regression (Odoo class): spending points never demotes, and points given by hand never promote")
    func wrongCounter() {
        var log = Log()
        log.publish(Programme(version: 1, name: "t", tiers: Programme.Tiers(levels: Self.levels)), at: 1000)
        let member = log.enrol(at: 2000)
        log.add(.purchase(Purchase(member: member, amount: 100_000, pointsEarned: 1000, qualifying: 1000)), at: 3000)
        log.add(.purchase(Purchase(member: member, amount: 1000, pointsRedeemed: 1000, pointsValue: 1000)), at: 4000)
        #expect(log.state.view(of: member)?.points == 0 && log.state.view(of: member)?.tier == "silver")
        log.add(.pointsAdjusted(PointsAdjusted(member: member, points: 50_000, reason: "goodwill")), at: 5000)
        #expect(log.state.view(of: member)?.points == 50_000 && log.state.view(of: member)?.tier == "silver")
    }
}

@Suite("Coupons in the fold")
struct CouponFoldTests {
    @Test("a coupon used is gone; a full refund of the sale frees it; two uses are visible to the hub")
    func useAndRestore() throws {
        var log = Log()
        let member = log.enrol(at: at("2026-03-01"))
        let coupon = Coupon(id: "welcome/store-1:1", member: member, template: "welcome", name: "W", valueMinor: 1000, percent: nil,
                            minSpendMinor: 0, validFrom: "2026-03-01", validUntil: "2026-03-30", stores: nil)
        log.add(.couponsIssued(CouponsIssued(coupons: [coupon], reason: "test")), at: at("2026-03-01"), hub: true)
        let now = at("2026-03-10")
        #expect(log.state.view(of: member, asOfMs: now)?.coupons == [coupon])
        #expect(log.state.view(of: member, asOfMs: at("2026-03-31"))?.coupons == [], "outside its dates")
        let sale = Purchase(member: member, amount: 5000, coupon: coupon.id, couponDiscount: 1000)
        let saleID = log.add(.purchase(sale), at: at("2026-03-05"))
        #expect(log.state.view(of: member, asOfMs: now)?.coupons == [])
        log.add(.refund(try RulesEngine.refund(sale, of: saleID, member: member, refundedSoFar: 0, amount: nil)), at: at("2026-03-06"))
        #expect(log.state.view(of: member, asOfMs: now)?.coupons == [coupon])
        log.add(.purchase(sale), at: at("2026-03-07"))
        log.add(.purchase(sale), at: at("2026-03-07"))
        #expect(log.state.couponUses[coupon.id]?.count == 3)
    }

    @Test("views under a rules version agree in any order of the log, at any moment")
    func anyOrderAnyMoment() async {
        await propertyCheck(count: 60, input: Gen.uint64()) { seed in
            let ops = ChainLog.make(seed: seed)
            var rng = SplitMix64(seed: seed ^ 0x9E37)
            let reference = ChainState(folding: ops)
            let shuffled = ChainState(folding: ops.shuffled(using: &rng))
            for moment in [at("1970-01-02"), at("2026-02-15"), at("2026-07-14"), at("2028-01-01")] {
                let same = shuffled.allViews(asOfMs: moment) == reference.allViews(asOfMs: moment)
                #expect(same, "seed \(seed), moment \(moment)")
            }
        }
    }
}
