import Foundation
import PropertyBased
import Testing
import TesseraCore
import TesseraTestSupport

let s1 = StoreID(rawValue: "store-1")!
let s9 = StoreID(rawValue: "store-9")!
let ada = MemberID("m-store-1-1")

func example(_ name: String) throws -> Programme { try Examples.programme(name) }

func standing(balance: Int64 = 0, bonus: Int64 = 0, points: Int64 = 0, lifetime: Int64 = 0, tier: Programme.Tier? = nil,
              coupons: [Coupon] = []) -> MemberStanding {
    var s = MemberStanding()
    s.balance = balance; s.bonus = bonus; s.points = points; s.lifetimePoints = lifetime; s.tier = tier; s.coupons = coupons
    return s
}

func price(_ programme: Programme, _ terms: PurchaseTerms, _ s: MemberStanding = MemberStanding(), store: StoreID = s1,
           at ms: Int64 = at("2026-03-04 12:00", "Asia/Shanghai"), referral: ReferralLink? = nil) throws(DomainError) -> Purchase {
    try RulesEngine.price(terms, member: ada, standing: s, referral: referral, TillContext(store: store, atMs: ms, programme: programme))
}

@Suite("The programme document")
struct ProgrammeDocumentTests {
    @Test("the example programmes under deploy/examples are valid", arguments: ["fresh-market", "pharmacy", "gym"])
    func examples(_ name: String) throws {
        let programme = try example(name)
        #expect(programme.version == 1)
        // Round trip: what the hub publishes (defaults written out) reads back the same.
        #expect(try Programme.parse(programme.json) == programme)
    }

    @Test("zones a quarter or half hour off whole hours, with or without summer time, may be published",
          arguments: ["Asia/Kathmandu", "Asia/Kolkata", "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham", "GMT+05:30"])
    func quarterHourZones(_ zone: String) throws {
        let programme = try Programme.parse(Data(#"{"version":1,"name":"x","time_zone":"\#(zone)"}"#.utf8))
        #expect(programme.timeZone == zone)
        try programme.checkPublishable()
    }

    @Test("a zone not whole quarter hours from UTC may not be published, but one already in the log is read as it was")
    func oddZone() throws {
        let programme = try Programme.parse(Data(#"{"version":1,"name":"x","time_zone":"GMT+05:07"}"#.utf8))
        #expect(throws: DomainError.self) { try programme.checkPublishable() }
        do {
            try programme.checkPublishable()
        } catch {
            #expect(error.code == .invalidRules && error.message == "time_zone: 'GMT+05:07' is not whole quarter hours from UTC")
        }
    }

    @Test("a wrong document is refused with the field named", arguments: [
        (#"{"name":"x"}"#, "version: required"),
        (#"{"version":0,"name":"x"}"#, "version: must be 1 or more"),
        (#"{"version":1,"name":"x","time_zone":"Mars/Base"}"#, "time_zone"),
        (#"{"version":1,"name":"x","earning":{"point":1}}"#, "earning.point: unknown field"),
        (#"{"version":1,"name":"x","earning":{"per_minor":0}}"#, "earning.per_minor"),
        (#"{"version":1,"name":"x","earning":{"bands":[{"from_minor":500,"points":1,"per_minor":100},{"from_minor":500,"points":2,"per_minor":100}]}}"#, "earning.bands[1].from_minor"),
        (#"{"version":1,"name":"x","earning":{"campaigns":[{"id":"a","percent":200,"weekdays":[8]}]}}"#, "earning.campaigns[0].weekdays"),
        (#"{"version":1,"name":"x","redemption":{"max_share_percent":101}}"#, "redemption.max_share_percent"),
        (#"{"version":1,"name":"x","expiry":{"rule":"after_days"}}"#, "expiry.days"),
        (#"{"version":1,"name":"x","expiry":{"rule":"sometimes"}}"#, "expiry.rule"),
        (#"{"version":1,"name":"x","tiers":{"levels":[{"name":"a","threshold":5}]}}"#, "tiers.levels[0].threshold"),
        (#"{"version":1,"name":"x","tiers":{"levels":[{"name":"a","threshold":0},{"name":"b","threshold":0}]}}"#, "tiers.levels[1].threshold"),
        (#"{"version":1,"name":"x","coupons":[{"id":"a","name":"A","valid_days":3,"issue_on":"signup"}]}"#, "give exactly one of value_minor and percent"),
        (#"{"version":1,"name":"x","coupons":[{"id":"a","name":"A","percent":10,"valid_days":3,"issue_on":"wake_up"}]}"#, "coupons[0].dormant_days"),
        (#"{"version":1,"name":"x","stored_value":{"bonus_bands":[{"from_minor":100,"bonus_minor":10,"coupon":"nope"}]}}"#, "stored_value.bonus_bands[0].coupon"),
        (#"{"version":1,"name":"x","memberships":[{"id":"y","name":"Y","price_minor":100,"days":0}]}"#, "memberships[0].days"),
        (#"[1,2]"#, "document"),
    ] as [(String, String)])
    func refused(_ text: String, _ expected: String) {
        do {
            _ = try Programme.parse(Data(text.utf8))
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.code == .invalidRules)
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("local days: dates round-trip, weekdays, and the day turns at local midnight")
    func localDays() throws {
        #expect(LocalDay(iso: "1970-01-01")?.number == 0)
        #expect(LocalDay(iso: "2024-02-29")?.iso == "2024-02-29")
        #expect(LocalDay(iso: "2025-02-29") == nil)
        #expect(LocalDay(iso: "2026-03-03")?.weekday == 2) // a Tuesday
        let shanghai = try #require(ChainCalendar(identifier: "Asia/Shanghai"))
        #expect(shanghai.day(ms: at("2026-03-03 23:59:59", "Asia/Shanghai")).iso == "2026-03-03")
        #expect(shanghai.day(ms: at("2026-03-04 00:00:00", "Asia/Shanghai")).iso == "2026-03-04")
        // 16:00 UTC is already tomorrow in Shanghai.
        #expect(shanghai.day(ms: at("2026-03-03 16:00:00")).iso == "2026-03-04")
        for n in stride(from: Int64(-25_567), through: LocalDay.never.number, by: 997) {
            #expect(LocalDay(iso: LocalDay(n).iso)?.number == n)
        }
    }
}

@Suite("Earning, redemption, discounts and coupons")
struct PricingTests {
    @Test("staged ratios: a purchase exactly at a band's edge earns at the band's ratio", arguments: [
        (49_999, 499), (50_000, 750), (99_999, 1499), (100_000, 2000), (250_000, 5000),
    ] as [(Int64, Int64)])
    func bands(amount: Int64, points: Int64) throws {
        // 2026-03-04 is a Wednesday: no member-day bonus.
        #expect(try price(try example("fresh-market"), PurchaseTerms(amount: amount)).pointsEarned == points)
    }

    @Test("member day doubles points on Tuesdays only, in the chain's time zone")
    func memberDay() throws {
        let programme = try example("fresh-market")
        let tuesday = try price(programme, PurchaseTerms(amount: 10_000), at: at("2026-03-03 23:59:59", "Asia/Shanghai"))
        let wednesday = try price(programme, PurchaseTerms(amount: 10_000), at: at("2026-03-04 00:00:00", "Asia/Shanghai"))
        #expect(tuesday.pointsEarned == 200 && tuesday.campaign == "member-day")
        #expect(wednesday.pointsEarned == 100 && wednesday.campaign == nil)
    }

    @Test("a store-scoped campaign applies in its stores and dates only", arguments: [
        ("2026-12-01", "store-1", 300), ("2026-12-07", "store-2", 300), ("2026-12-08", "store-1", 200),
        ("2026-11-30", "store-1", 100), ("2026-12-03", "store-9", 100),
    ] as [(String, String, Int64)])
    func storeCampaign(day: String, store: String, points: Int64) throws {
        // 2026-12-01 is a Tuesday: the better campaign (300%) wins over member day (200%).
        let sale = try price(try example("fresh-market"), PurchaseTerms(amount: 10_000), store: StoreID(rawValue: store)!,
                             at: at("\(day) 12:00", "Asia/Shanghai"))
        #expect(sale.pointsEarned == points)
    }

    @Test("tier multiplier and discount, lifetime bands, combined with floors at each step")
    func multipliers() throws {
        var programme = try example("fresh-market")
        let vip = try #require(programme.tiers?.levels.first { $0.name == "vip" })
        let sale = try price(programme, PurchaseTerms(amount: 10_000), standing(tier: vip))
        #expect(sale.discount == 1000 && sale.pointsEarned == 90 * 2 && sale.tier == "vip" && sale.cashDue == 9000)
        programme.earning.lifetimeBands = [Programme.LifetimeBand(fromPoints: 5000, percent: 150)]
        #expect(try price(programme, PurchaseTerms(amount: 10_000), standing(lifetime: 4999)).pointsEarned == 100)
        #expect(try price(programme, PurchaseTerms(amount: 10_000), standing(lifetime: 5000)).pointsEarned == 150)
    }

    @Test("points as payment: the minimum, the maximum share (exactly at the edge), the balance", arguments: [
        (0, nil), (50, ErrorCode.redemptionRefused), (100, nil), (5000, nil), (5100, .redemptionRefused), (150, nil),
    ] as [(Int64, ErrorCode?)])
    func redemption(points: Int64, expected: ErrorCode?) throws {
        // 100 points pay 1.00; at least 100 points; at most 50% of 100.00.
        let programme = try example("fresh-market")
        do throws(DomainError) {
            let sale = try price(programme, PurchaseTerms(amount: 10_000, redeemPoints: points), standing(points: 10_000))
            #expect(expected == nil, "\(points) points were accepted")
            #expect(sale.pointsValue == points && sale.cashDue == 10_000 - points)
            #expect(sale.pointsEarned == (10_000 - points) / 100, "points are earned on the money paid, not on points")
        } catch {
            #expect(error.code == expected, "\(error)")
        }
        var odd = programme
        odd.redemption = Programme.Redemption(points: 3, minor: 2)
        #expect(throws: DomainError.self) { try price(odd, PurchaseTerms(amount: 10_000, redeemPoints: 10), standing(points: 10_000)) }
        #expect(try price(odd, PurchaseTerms(amount: 10_000, redeemPoints: 9), standing(points: 10_000)).pointsValue == 6)
        #expect(throws: DomainError(.insufficientPoints, "the member has 99 points to spend, fewer than 100")) {
            try price(programme, PurchaseTerms(amount: 10_000, redeemPoints: 100), standing(points: 99))
        }
    }

    @Test("coupons: minimum spend at the edge, value capped by the amount, percent, store scope, availability")
    func coupons() throws {
        let programme = try example("fresh-market")
        let welcome = try #require(programme.coupons.first { $0.id == "welcome" }).issue(id: "welcome/store-1:1", to: ada, on: LocalDay(iso: "2026-03-01")!)
        let held = standing(coupons: [welcome])
        #expect(throws: DomainError.self) { try price(programme, PurchaseTerms(amount: 4999, coupon: welcome.id), held) }
        let sale = try price(programme, PurchaseTerms(amount: 5000, coupon: welcome.id), held)
        #expect(sale.couponDiscount == 1000 && sale.cashDue == 4000 && sale.pointsEarned == 40 && sale.coupon == welcome.id)
        #expect(throws: DomainError.self) { try price(programme, PurchaseTerms(amount: 5000, coupon: welcome.id)) }
        var scoped = welcome
        scoped.stores = [s9]
        #expect(throws: DomainError.self) { try price(programme, PurchaseTerms(amount: 5000, coupon: scoped.id), standing(coupons: [scoped])) }
        let birthday = try #require(programme.coupons.first { $0.id == "birthday" }).issue(id: "birthday/\(ada)/2026", to: ada, on: LocalDay(iso: "2026-03-01")!)
        #expect(try price(programme, PurchaseTerms(amount: 3333, coupon: birthday.id), standing(coupons: [birthday])).couponDiscount == 666)
    }

    @Test("stored value: principal first, or in proportion; bonus is spent but kept apart")
    func consumption() throws {
        var programme = try example("fresh-market")
        let rich = standing(balance: 22_000, bonus: 2000)
        let first = try price(programme, PurchaseTerms(amount: 21_000, payFromBalance: true), rich)
        #expect(first.valueSpent == 21_000 && first.bonusSpent == 1000)
        programme.storedValue.consume = .proportional
        let share = try price(programme, PurchaseTerms(amount: 11_000, payFromBalance: true), rich)
        #expect(share.valueSpent == 11_000 && share.bonusSpent == 1000)
    }

    @Test("recharge bonus bands, each edge exactly", arguments: [
        (99_999, 0), (100_000, 5000), (499_999, 5000), (500_000, 50_000), (999_999, 50_000), (1_000_000, 120_000),
    ] as [(Int64, Int64)])
    func rechargeBands(amount: Int64, bonus: Int64) throws {
        let recharge = RulesEngine.recharge(amount: amount, member: ada, op: OperationID(origin: s1, seq: 1),
                                            TillContext(store: s1, atMs: 0, programme: try example("pharmacy")))
        #expect(recharge.amount == amount && recharge.bonus == bonus && recharge.rulesVersion == 1)
    }

    @Test("a recharge band can bundle a coupon; an enrolment brings signup coupons and referral rewards")
    func bundles() throws {
        let programme = try example("fresh-market")
        let context = TillContext(store: s1, atMs: at("2026-03-04 12:00", "Asia/Shanghai"), programme: programme)
        let recharge = RulesEngine.recharge(amount: 20_000, member: ada, op: OperationID(origin: s1, seq: 7), context)
        #expect(recharge.bonus == 2000 && recharge.coupons.map(\.id) == ["recharge-gift/store-1:7"])
        #expect(recharge.coupons.first?.validUntil == "2026-06-01")
        let bea = MemberID("m-store-1-8")
        let enrol = RulesEngine.enrolment(member: bea, referrer: ada, op: OperationID(origin: s1, seq: 8), context)
        #expect(enrol.referralPoints == 10 && enrol.pointsExpireOn == "2027-12-31")
        #expect(enrol.coupons.map(\.member) == [bea])
    }

    @Test("referral share of the referred member's purchases, for the configured days only")
    func referralShare() throws {
        let programme = try example("pharmacy")
        let link = ReferralLink(referrer: MemberID("m-store-1-0"), enrolledAtMs: at("2026-01-01 10:00", "Europe/Madrid"))
        let inside = try price(programme, PurchaseTerms(amount: 1_000_000), at: at("2026-06-30 10:00", "Europe/Madrid"), referral: link)
        let outside = try price(programme, PurchaseTerms(amount: 1_000_000), at: at("2026-07-01 10:00", "Europe/Madrid"), referral: link)
        // 5% of the 100 points the purchase is worth at the base ratio.
        #expect(inside.referralPoints == 5 && inside.referrer == link.referrer)
        #expect(outside.referralPoints == 0 && outside.referrer == nil)
    }

    @Test("memberships: benefits while valid; a renewal starts the day after the current one ends")
    func memberships() throws {
        let programme = try example("gym")
        let context = TillContext(store: s1, atMs: at("2026-03-04 10:00", "America/Sao_Paulo"), programme: programme)
        let sold = try RulesEngine.membership("season", member: ada, standing: MemberStanding(), context)
        #expect(sold.period.from == "2026-03-04" && sold.period.until == "2026-06-01" && sold.priceMinor == 29_900)
        var held = MemberStanding()
        held.membership = sold.period
        let renewed = try RulesEngine.membership("season", member: ada, standing: held, context)
        #expect(renewed.period.from == "2026-06-02")
        let sale = try price(programme, PurchaseTerms(amount: 10_000), held, at: context.atMs)
        #expect(sale.discount == 1000 && sale.pointsEarned == 135 && sale.membership == "season")
        #expect(throws: DomainError.self) { try RulesEngine.membership("lifetime", member: ada, standing: held, context) }
    }
}

@Suite("Member prices, fixed expiry dates")
struct MemberPriceTests {
    @Test("member prices: the basket at member prices, or the tier's percent, whichever is better for the member", arguments: [
        // (tier, amount, member amount, discount)
        ("member", 3280, 2880, 400), ("silver", 3280, 3100, 328), ("silver", 3280, 2880, 400), ("member", 3280, nil, 0),
    ] as [(String, Int64, Int64?, Int64)])
    func memberPrices(tier: String, amount: Int64, memberAmount: Int64?, discount: Int64) throws {
        let programme = try example("pharmacy")
        let level = try #require(programme.tiers?.levels.first { $0.name == tier })
        let sale = try price(programme, PurchaseTerms(amount: amount, memberAmount: memberAmount), standing(tier: level))
        #expect(sale.discount == discount)
    }

    @Test("a member without member prices pays the normal price whatever the till sends; a member amount above the amount is refused")
    func noMemberPrices() throws {
        let programme = try example("pharmacy")
        #expect(try price(programme, PurchaseTerms(amount: 3280, memberAmount: 2880)).discount == 0)
        let member = try #require(programme.tiers?.levels.first)
        #expect(throws: DomainError.self) { try price(programme, PurchaseTerms(amount: 3280, memberAmount: 3281), standing(tier: member)) }
    }

    @Test("fixed-date expiry: points earned up to the date expire at its end; later ones wait for the next version", arguments: [
        ("2026-06-30", "2026-06-30"), ("2026-01-01", "2026-06-30"), ("2026-07-01", "9999-12-31"),
    ])
    func fixedDate(earned: String, lot: String) throws {
        let rule = Programme.Expiry(rule: .fixedDate, date: "2026-06-30")
        #expect(rule.lot(earnedOn: try #require(LocalDay(iso: earned))).iso == lot)
        #expect(throws: DomainError.self) { try Programme(version: 1, name: "x", expiry: .init(rule: .fixedDate)).validate() }
        #expect(throws: DomainError.self) { try Programme(version: 1, name: "x", expiry: .init(rule: .never, date: "2026-06-30")).validate() }
    }
}

@Suite("The rules' arithmetic at its bounds")
struct ArithmeticBoundsTests {
    @Test("every ratio and percent at its maximum and the largest amount: no overflow, earnings capped at the points bound")
    func extremes() throws {
        let programme = Programme(
            version: 1, name: "extreme",
            earning: .init(points: 1000, perMinor: 1, lifetimeBands: [.init(fromPoints: 1, percent: 1000)],
                           campaigns: [.init(id: "x", percent: 1000)]),
            tiers: .init(levels: [.init(name: "top", threshold: 0, pointsPercent: 1000)]),
            referral: .init(purchasePercent: 100, days: 3660))
        try programme.validate()
        var held = standing(lifetime: 10, tier: programme.tiers?.levels.first)
        held.balance = Limits.amountMaxMinor
        let link = ReferralLink(referrer: MemberID("m-store-1-0"), enrolledAtMs: at("2026-03-01"))
        let sale = try price(programme, PurchaseTerms(amount: Limits.amountMaxMinor, payFromBalance: true), held, referral: link)
        #expect(sale.pointsEarned == Limits.pointsMax && sale.referralPoints == Limits.pointsMax)
        #expect(throws: Never.self) { try Validate.operation(TesseraCore.Operation(id: OperationID(origin: s1, seq: 1), hlc: .zero, body: .purchase(sale))) }
    }
}
