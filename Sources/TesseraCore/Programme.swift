import Foundation

/// The membership programme head office configures: one versioned JSON document. The hub
/// publishes it as an operation (`rules.published`), so it reaches every node through the sync
/// log; a node computes every till operation under the newest version it holds and records that
/// version in the operation, so a receipt never changes after the fact.
///
/// Decoding is strict: a field this build does not know is an error (a typo must not silently
/// turn a rule off), and `validate()` checks every bound and reference.
public struct Programme: Codable, Hashable, Sendable {
    public var version: Int
    public var name: String
    /// IANA zone (e.g. `Asia/Shanghai`): days for expiry, campaigns, birthdays and tier periods.
    public var timeZone: String
    public var earning: Earning
    public var redemption: Redemption
    public var expiry: Expiry
    public var tiers: Tiers?
    public var storedValue: StoredValue
    public var referral: Referral
    public var activities: [Activity]
    public var coupons: [CouponTemplate]
    public var memberships: [MembershipPlan]
    /// Escrow leases for offline spending; absent, the v1 offline limit applies.
    public var leases: Leases?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case version, name, earning, redemption, expiry, tiers, referral, activities, coupons, memberships, leases
        case timeZone = "time_zone", storedValue = "stored_value"
    }

    public init(version: Int, name: String, timeZone: String = "UTC", earning: Earning = Earning(),
                redemption: Redemption = Redemption(), expiry: Expiry = Expiry(), tiers: Tiers? = nil,
                storedValue: StoredValue = StoredValue(), referral: Referral = Referral(), activities: [Activity] = [],
                coupons: [CouponTemplate] = [], memberships: [MembershipPlan] = [], leases: Leases? = nil) {
        self.version = version; self.name = name; self.timeZone = timeZone; self.earning = earning
        self.redemption = redemption; self.expiry = expiry; self.tiers = tiers; self.storedValue = storedValue
        self.referral = referral; self.activities = activities; self.coupons = coupons; self.memberships = memberships
        self.leases = leases
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        name = try c.decode(String.self, forKey: .name)
        timeZone = try c.decodeIfPresent(String.self, forKey: .timeZone) ?? "UTC"
        earning = try c.decodeIfPresent(Earning.self, forKey: .earning) ?? Earning()
        redemption = try c.decodeIfPresent(Redemption.self, forKey: .redemption) ?? Redemption()
        expiry = try c.decodeIfPresent(Expiry.self, forKey: .expiry) ?? Expiry()
        tiers = try c.decodeIfPresent(Tiers.self, forKey: .tiers)
        storedValue = try c.decodeIfPresent(StoredValue.self, forKey: .storedValue) ?? StoredValue()
        referral = try c.decodeIfPresent(Referral.self, forKey: .referral) ?? Referral()
        activities = try c.decodeIfPresent([Activity].self, forKey: .activities) ?? []
        coupons = try c.decodeIfPresent([CouponTemplate].self, forKey: .coupons) ?? []
        memberships = try c.decodeIfPresent([MembershipPlan].self, forKey: .memberships) ?? []
        leases = try c.decodeIfPresent(Leases.self, forKey: .leases)
    }

    /// The programme before head office publishes one (version 0): one point per whole currency
    /// unit paid, a point redeems for one minor unit, nothing expires, no tiers, no bonus.
    public static let builtIn = Programme(version: 0, name: "built-in default")

    public var calendar: ChainCalendar { ChainCalendar(identifier: timeZone) ?? .utc }

    // MARK: Sections

    public struct Earning: Codable, Hashable, Sendable {
        /// `points` per `per_minor` minor units paid (1 per 100 = one point per whole unit).
        public var points: Int64
        public var perMinor: Int64
        /// Purchase-size stages: the band with the highest `from_minor` at or below the amount
        /// paid replaces the base ratio.
        public var bands: [EarnBand]
        /// Lifetime stages: a member whose lifetime earned points reach `from_points` earns
        /// `percent` of the points (150 = one and a half times).
        public var lifetimeBands: [LifetimeBand]
        public var campaigns: [Campaign]

        enum CodingKeys: String, CodingKey, CaseIterable {
            case points, bands, campaigns
            case perMinor = "per_minor", lifetimeBands = "lifetime_bands"
        }
        public init(points: Int64 = 1, perMinor: Int64 = 100, bands: [EarnBand] = [], lifetimeBands: [LifetimeBand] = [], campaigns: [Campaign] = []) {
            self.points = points; self.perMinor = perMinor; self.bands = bands; self.lifetimeBands = lifetimeBands; self.campaigns = campaigns
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            points = try c.decodeIfPresent(Int64.self, forKey: .points) ?? 1
            perMinor = try c.decodeIfPresent(Int64.self, forKey: .perMinor) ?? 100
            bands = try c.decodeIfPresent([EarnBand].self, forKey: .bands) ?? []
            lifetimeBands = try c.decodeIfPresent([LifetimeBand].self, forKey: .lifetimeBands) ?? []
            campaigns = try c.decodeIfPresent([Campaign].self, forKey: .campaigns) ?? []
        }
    }

    public struct EarnBand: Codable, Hashable, Sendable {
        public var fromMinor: Int64
        public var points: Int64
        public var perMinor: Int64
        enum CodingKeys: String, CodingKey, CaseIterable { case points; case fromMinor = "from_minor", perMinor = "per_minor" }
        public init(fromMinor: Int64, points: Int64, perMinor: Int64) { self.fromMinor = fromMinor; self.points = points; self.perMinor = perMinor }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            fromMinor = try c.decode(Int64.self, forKey: .fromMinor)
            points = try c.decode(Int64.self, forKey: .points)
            perMinor = try c.decode(Int64.self, forKey: .perMinor)
        }
    }

    public struct LifetimeBand: Codable, Hashable, Sendable {
        public var fromPoints: Int64
        public var percent: Int64
        enum CodingKeys: String, CodingKey, CaseIterable { case percent; case fromPoints = "from_points" }
        public init(fromPoints: Int64, percent: Int64) { self.fromPoints = fromPoints; self.percent = percent }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            fromPoints = try c.decode(Int64.self, forKey: .fromPoints)
            percent = try c.decode(Int64.self, forKey: .percent)
        }
    }

    /// Extra points for a while: `percent` of the points (200 = double) on the listed weekdays
    /// (1 Monday ... 7 Sunday) and/or days of the month, between `from` and `until` (local dates,
    /// both included), in the listed stores (all when absent). The best matching campaign applies.
    public struct Campaign: Codable, Hashable, Sendable {
        public var id: String
        public var name: String?
        public var percent: Int64
        public var from: String?
        public var until: String?
        public var weekdays: [Int]?
        public var daysOfMonth: [Int]?
        public var stores: [StoreID]?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, name, percent, from, until, weekdays, stores
            case daysOfMonth = "days_of_month"
        }
        public init(id: String, name: String? = nil, percent: Int64, from: String? = nil, until: String? = nil,
                    weekdays: [Int]? = nil, daysOfMonth: [Int]? = nil, stores: [StoreID]? = nil) {
            self.id = id; self.name = name; self.percent = percent; self.from = from; self.until = until
            self.weekdays = weekdays; self.daysOfMonth = daysOfMonth; self.stores = stores
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            name = try c.decodeIfPresent(String.self, forKey: .name)
            percent = try c.decode(Int64.self, forKey: .percent)
            from = try c.decodeIfPresent(String.self, forKey: .from)
            until = try c.decodeIfPresent(String.self, forKey: .until)
            weekdays = try c.decodeIfPresent([Int].self, forKey: .weekdays)
            daysOfMonth = try c.decodeIfPresent([Int].self, forKey: .daysOfMonth)
            stores = try c.decodeIfPresent([StoreID].self, forKey: .stores)
        }

        public func applies(on day: LocalDay, at store: StoreID) -> Bool {
            if let from, let start = LocalDay(iso: from), day < start { return false }
            if let until, let end = LocalDay(iso: until), day > end { return false }
            if let weekdays, !weekdays.contains(day.weekday) { return false }
            if let daysOfMonth, !daysOfMonth.contains(Int(day.civil.day)) { return false }
            if let stores, !stores.contains(store) { return false }
            return true
        }
    }

    /// Points as payment: `points` points pay `minor` minor units. A redemption needs at least
    /// `min_points` and may pay at most `max_share_percent` of what is due after discounts.
    public struct Redemption: Codable, Hashable, Sendable {
        public var points: Int64
        public var minor: Int64
        public var minPoints: Int64
        public var maxSharePercent: Int64
        enum CodingKeys: String, CodingKey, CaseIterable {
            case points, minor
            case minPoints = "min_points", maxSharePercent = "max_share_percent"
        }
        public init(points: Int64 = 1, minor: Int64 = 1, minPoints: Int64 = 0, maxSharePercent: Int64 = 100) {
            self.points = points; self.minor = minor; self.minPoints = minPoints; self.maxSharePercent = maxSharePercent
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            points = try c.decodeIfPresent(Int64.self, forKey: .points) ?? 1
            minor = try c.decodeIfPresent(Int64.self, forKey: .minor) ?? 1
            minPoints = try c.decodeIfPresent(Int64.self, forKey: .minPoints) ?? 0
            maxSharePercent = try c.decodeIfPresent(Int64.self, forKey: .maxSharePercent) ?? 100
        }
    }

    public enum ExpiryRule: String, Codable, Hashable, Sendable {
        case never
        /// Points expire `days` days after the day they were earned (at local midnight).
        case afterDays = "after_days"
        /// Points earned in a year expire at the end of the next year.
        case endOfFollowingYear = "end_of_following_year"
        /// Points earned up to `date` expire at the end of `date`; points earned later do not
        /// expire until a new version sets a new date.
        case fixedDate = "fixed_date"
    }

    public struct Expiry: Codable, Hashable, Sendable {
        public var rule: ExpiryRule
        public var days: Int64?
        public var date: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case rule, days, date }
        public init(rule: ExpiryRule = .never, days: Int64? = nil, date: String? = nil) { self.rule = rule; self.days = days; self.date = date }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            rule = try c.decodeIfPresent(ExpiryRule.self, forKey: .rule) ?? .never
            days = try c.decodeIfPresent(Int64.self, forKey: .days)
            date = try c.decodeIfPresent(String.self, forKey: .date)
        }

        /// The last local day on which points earned on `day` can be spent.
        public func lot(earnedOn day: LocalDay) -> LocalDay {
            switch rule {
            case .never: .never
            case .afterDays: day.adding(days: days ?? 0)
            case .endOfFollowingYear: .lastDay(ofYear: day.year + 1)
            case .fixedDate: date.flatMap(LocalDay.init(iso:)).map { day <= $0 ? $0 : .never } ?? .never
            }
        }
    }

    public enum TierCounter: String, Codable, Hashable, Sendable {
        /// Points earned on purchases (never the spendable balance).
        case points
        /// Money paid on purchases, in minor units.
        case spend
    }
    public enum TierReset: String, Codable, Hashable, Sendable {
        case never
        /// Qualification restarts each local calendar year.
        case yearly
    }
    public enum Downgrade: String, Codable, Hashable, Sendable {
        /// A member who did not re-qualify drops one level (never below what the year earned).
        case oneLevel = "one_level"
        /// A member who did not re-qualify drops to the level last year's total earned.
        case toEarned = "to_earned"
    }

    public struct Tiers: Codable, Hashable, Sendable {
        public var qualifyOn: TierCounter
        public var reset: TierReset
        public var downgrade: Downgrade
        /// Lowest first; the first level's threshold is 0.
        public var levels: [Tier]
        enum CodingKeys: String, CodingKey, CaseIterable {
            case reset, downgrade, levels
            case qualifyOn = "qualify_on"
        }
        public init(qualifyOn: TierCounter = .points, reset: TierReset = .never, downgrade: Downgrade = .toEarned, levels: [Tier]) {
            self.qualifyOn = qualifyOn; self.reset = reset; self.downgrade = downgrade; self.levels = levels
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            qualifyOn = try c.decodeIfPresent(TierCounter.self, forKey: .qualifyOn) ?? .points
            reset = try c.decodeIfPresent(TierReset.self, forKey: .reset) ?? .never
            downgrade = try c.decodeIfPresent(Downgrade.self, forKey: .downgrade) ?? .toEarned
            levels = try c.decode([Tier].self, forKey: .levels)
        }
    }

    public struct Tier: Codable, Hashable, Sendable {
        public var name: String
        public var threshold: Int64
        /// Percent off the purchase amount for members of this tier.
        public var discountPercent: Int64
        /// Percent of the points earned (200 = double).
        public var pointsPercent: Int64
        /// Members of this tier pay member prices: the till sends the basket at member prices
        /// (`member_amount`) and the difference is the discount.
        public var memberPrices: Bool
        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, threshold
            case discountPercent = "discount_percent", pointsPercent = "points_percent", memberPrices = "member_prices"
        }
        public init(name: String, threshold: Int64, discountPercent: Int64 = 0, pointsPercent: Int64 = 100, memberPrices: Bool = false) {
            self.name = name; self.threshold = threshold; self.discountPercent = discountPercent; self.pointsPercent = pointsPercent
            self.memberPrices = memberPrices
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            threshold = try c.decode(Int64.self, forKey: .threshold)
            discountPercent = try c.decodeIfPresent(Int64.self, forKey: .discountPercent) ?? 0
            pointsPercent = try c.decodeIfPresent(Int64.self, forKey: .pointsPercent) ?? 100
            memberPrices = try c.decodeIfPresent(Bool.self, forKey: .memberPrices) ?? false
        }
    }

    public enum Consumption: String, Codable, Hashable, Sendable {
        /// Spending takes principal first, bonus money only when the principal is used up.
        case principalFirst = "principal_first"
        /// Spending takes principal and bonus in proportion to what the member holds.
        case proportional
    }

    public struct StoredValue: Codable, Hashable, Sendable {
        /// The band with the highest `from_minor` at or below a recharge gives its bonus.
        public var bonusBands: [BonusBand]
        public var consume: Consumption
        enum CodingKeys: String, CodingKey, CaseIterable { case consume; case bonusBands = "bonus_bands" }
        public init(bonusBands: [BonusBand] = [], consume: Consumption = .principalFirst) { self.bonusBands = bonusBands; self.consume = consume }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            bonusBands = try c.decodeIfPresent([BonusBand].self, forKey: .bonusBands) ?? []
            consume = try c.decodeIfPresent(Consumption.self, forKey: .consume) ?? .principalFirst
        }
    }

    public struct BonusBand: Codable, Hashable, Sendable {
        public var fromMinor: Int64
        public var bonusMinor: Int64
        /// A coupon template issued with the recharge.
        public var coupon: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case coupon; case fromMinor = "from_minor", bonusMinor = "bonus_minor" }
        public init(fromMinor: Int64, bonusMinor: Int64, coupon: String? = nil) { self.fromMinor = fromMinor; self.bonusMinor = bonusMinor; self.coupon = coupon }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            fromMinor = try c.decode(Int64.self, forKey: .fromMinor)
            bonusMinor = try c.decodeIfPresent(Int64.self, forKey: .bonusMinor) ?? 0
            coupon = try c.decodeIfPresent(String.self, forKey: .coupon)
        }
    }

    /// Rewards for the member who referred a new one: fixed points when the referred member
    /// enrols, and `purchase_percent` of each purchase of theirs (converted to points at the base
    /// ratio) for `days` days after the enrolment.
    public struct Referral: Codable, Hashable, Sendable {
        public var enrolPoints: Int64
        public var purchasePercent: Int64
        public var days: Int64
        enum CodingKeys: String, CodingKey, CaseIterable {
            case days
            case enrolPoints = "enrol_points", purchasePercent = "purchase_percent"
        }
        public init(enrolPoints: Int64 = 0, purchasePercent: Int64 = 0, days: Int64 = 0) {
            self.enrolPoints = enrolPoints; self.purchasePercent = purchasePercent; self.days = days
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enrolPoints = try c.decodeIfPresent(Int64.self, forKey: .enrolPoints) ?? 0
            purchasePercent = try c.decodeIfPresent(Int64.self, forKey: .purchasePercent) ?? 0
            days = try c.decodeIfPresent(Int64.self, forKey: .days) ?? 0
        }
    }

    /// Participation points: a till or head office awards `points` for the named activity.
    public struct Activity: Codable, Hashable, Sendable {
        public var name: String
        public var points: Int64
        enum CodingKeys: String, CodingKey, CaseIterable { case name, points }
        public init(name: String, points: Int64) { self.name = name; self.points = points }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            points = try c.decode(Int64.self, forKey: .points)
        }
    }

    public enum CouponTrigger: String, Codable, Hashable, Sendable, CaseIterable {
        /// Issued with the enrolment.
        case signup
        /// Issued by the hub on the first day of the member's birthday month.
        case birthday
        /// Issued to the referrer when the member they referred enrols.
        case referral
        /// Issued with a recharge whose bonus band names it.
        case recharge
        /// Issued by the hub to a member with no purchase for `dormant_days` days.
        case wakeUp = "wake_up"
    }

    public struct CouponTemplate: Codable, Hashable, Sendable {
        public var id: String
        public var name: String
        public var valueMinor: Int64?
        public var percent: Int64?
        public var minSpendMinor: Int64
        public var validDays: Int64
        public var stores: [StoreID]?
        public var issueOn: CouponTrigger
        public var dormantDays: Int64?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, name, percent, stores
            case valueMinor = "value_minor", minSpendMinor = "min_spend_minor", validDays = "valid_days"
            case issueOn = "issue_on", dormantDays = "dormant_days"
        }
        public init(id: String, name: String, valueMinor: Int64? = nil, percent: Int64? = nil, minSpendMinor: Int64 = 0,
                    validDays: Int64, stores: [StoreID]? = nil, issueOn: CouponTrigger, dormantDays: Int64? = nil) {
            self.id = id; self.name = name; self.valueMinor = valueMinor; self.percent = percent; self.minSpendMinor = minSpendMinor
            self.validDays = validDays; self.stores = stores; self.issueOn = issueOn; self.dormantDays = dormantDays
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            name = try c.decode(String.self, forKey: .name)
            valueMinor = try c.decodeIfPresent(Int64.self, forKey: .valueMinor)
            percent = try c.decodeIfPresent(Int64.self, forKey: .percent)
            minSpendMinor = try c.decodeIfPresent(Int64.self, forKey: .minSpendMinor) ?? 0
            validDays = try c.decode(Int64.self, forKey: .validDays)
            stores = try c.decodeIfPresent([StoreID].self, forKey: .stores)
            issueOn = try c.decode(CouponTrigger.self, forKey: .issueOn)
            dormantDays = try c.decodeIfPresent(Int64.self, forKey: .dormantDays)
        }

        /// The coupon this template makes for `member`, valid from `day` for `valid_days` days.
        public func issue(id couponID: String, to member: MemberID, on day: LocalDay) -> Coupon {
            Coupon(id: couponID, member: member, template: id, name: name, valueMinor: valueMinor, percent: percent,
                   minSpendMinor: minSpendMinor, validFrom: day.iso, validUntil: day.adding(days: validDays - 1).iso, stores: stores)
        }
    }

    /// A paid, time-limited membership (season card, year card) and its benefits while valid.
    public struct MembershipPlan: Codable, Hashable, Sendable {
        public var id: String
        public var name: String
        public var priceMinor: Int64
        public var days: Int64
        public var discountPercent: Int64
        public var pointsPercent: Int64
        public var memberPrices: Bool
        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, name, days
            case priceMinor = "price_minor", discountPercent = "discount_percent", pointsPercent = "points_percent"
            case memberPrices = "member_prices"
        }
        public init(id: String, name: String, priceMinor: Int64, days: Int64, discountPercent: Int64 = 0, pointsPercent: Int64 = 100,
                    memberPrices: Bool = false) {
            self.id = id; self.name = name; self.priceMinor = priceMinor; self.days = days
            self.discountPercent = discountPercent; self.pointsPercent = pointsPercent; self.memberPrices = memberPrices
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            name = try c.decode(String.self, forKey: .name)
            priceMinor = try c.decode(Int64.self, forKey: .priceMinor)
            days = try c.decode(Int64.self, forKey: .days)
            discountPercent = try c.decodeIfPresent(Int64.self, forKey: .discountPercent) ?? 0
            pointsPercent = try c.decodeIfPresent(Int64.self, forKey: .pointsPercent) ?? 100
            memberPrices = try c.decodeIfPresent(Bool.self, forKey: .memberPrices) ?? false
        }
    }
}

// MARK: - Reading and validating a document

extension Programme {
    /// Decodes and validates a rules document; every problem is an `invalid_rules` error naming
    /// the field (`earning.bands[1].per_minor: ...`).
    public static func parse(_ data: Data) throws(DomainError) -> Programme {
        let programme: Programme
        do {
            programme = try JSONDecoder().decode(Programme.self, from: data)
        } catch let error as DecodingError {
            throw DomainError(.invalidRules, Self.describe(error))
        } catch {
            throw DomainError(.invalidRules, "not a JSON rules document: \(error)")
        }
        try programme.validate()
        return programme
    }

    public static func parse(_ json: JSONValue) throws(DomainError) -> Programme {
        let data: Data
        do { data = try JSONEncoder().encode(json) } catch { throw DomainError(.invalidRules, "unencodable rules document") }
        return try parse(data)
    }

    public var json: JSONValue {
        guard let data = try? JSONEncoder().encode(self), let json = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            preconditionFailure("a programme always encodes")
        }
        return json
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            var out = ""
            for key in keys {
                if let i = key.intValue { out += "[\(i)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return out.isEmpty ? "document" : out
        }
        switch error {
        case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])): required"
        case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)): expected \(type)"
        case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)): expected \(type), found null"
        case .dataCorrupted(let ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// What a document must also meet to be published now. Not part of `validate`, which also
    /// reads the programmes already in the log: one an older build published is read as it was.
    ///
    /// A tier counter keeps quarter hours on the days around a new year (`LedgerSummary.period`):
    /// a zone whose clock is not whole quarter hours from UTC (a made-up `GMT+05:07`, which
    /// Foundation takes; no IANA zone since 1972) would count a sale just after its local
    /// midnight on 1 January in the year before.
    public func checkPublishable() throws(DomainError) {
        guard let zone = TimeZone(identifier: timeZone) else { return } // `validate` refuses it
        let january = Date(timeIntervalSince1970: 1_798_761_600), july = Date(timeIntervalSince1970: 1_814_486_400) // in 2027
        guard zone.secondsFromGMT(for: january) % 900 == 0 && zone.secondsFromGMT(for: july) % 900 == 0 else {
            throw DomainError(.invalidRules, "time_zone: '\(timeZone)' is not whole quarter hours from UTC")
        }
    }

    /// Every bound and reference of the document. With these bounds (amounts ≤ 10^12, ratios
    /// and percents ≤ 1000) the rules' products stay within 10^18 when computed with `mulDiv`.
    public func validate() throws(DomainError) {
        func fail(_ path: String, _ message: String) -> DomainError { DomainError(.invalidRules, "\(path): \(message)") }
        func check(_ ok: Bool, _ path: String, _ message: String) throws(DomainError) { if !ok { throw fail(path, message) } }
        func percent(_ v: Int64, _ path: String, max: Int64 = 1000) throws(DomainError) {
            try check((0...max).contains(v), path, "must be a percent between 0 and \(max)")
        }
        func date(_ text: String?, _ path: String) throws(DomainError) -> LocalDay? {
            guard let text else { return nil }
            guard let day = LocalDay(iso: text) else { throw fail(path, "must be a date YYYY-MM-DD") }
            return day
        }
        try check(version >= 1, "version", "must be 1 or more (0 is the built-in programme)")
        try check(!name.trimmingWhitespace().isEmpty && name.count <= Limits.nameMaxLength, "name", "must be 1 to \(Limits.nameMaxLength) characters")
        try check(TimeZone(identifier: timeZone) != nil, "time_zone", "'\(timeZone)' is not an IANA time zone")
        try leases?.validate()

        try check((0...1000).contains(earning.points), "earning.points", "must be between 0 and 1000")
        try check((1...Limits.amountMaxMinor).contains(earning.perMinor), "earning.per_minor", "must be at least 1")
        var last: Int64 = 0
        for (i, band) in earning.bands.enumerated() {
            let p = "earning.bands[\(i)]"
            try check(band.fromMinor > last, "\(p).from_minor", "must be positive and above the previous band's")
            try check((0...1000).contains(band.points), "\(p).points", "must be between 0 and 1000")
            try check((1...Limits.amountMaxMinor).contains(band.perMinor), "\(p).per_minor", "must be at least 1")
            last = band.fromMinor
        }
        last = 0
        for (i, band) in earning.lifetimeBands.enumerated() {
            try check(band.fromPoints > last, "earning.lifetime_bands[\(i)].from_points", "must be positive and above the previous band's")
            try percent(band.percent, "earning.lifetime_bands[\(i)].percent")
            last = band.fromPoints
        }
        var ids = Set<String>()
        for (i, campaign) in earning.campaigns.enumerated() {
            let p = "earning.campaigns[\(i)]"
            try check(!campaign.id.isEmpty && ids.insert(campaign.id).inserted, "\(p).id", "must be non-empty and unique")
            try percent(campaign.percent, "\(p).percent")
            let from = try date(campaign.from, "\(p).from"), until = try date(campaign.until, "\(p).until")
            if let from, let until { try check(from <= until, "\(p).until", "must not be before from") }
            try check(campaign.weekdays?.allSatisfy { (1...7).contains($0) } ?? true, "\(p).weekdays", "must be 1 (Monday) to 7 (Sunday)")
            try check(campaign.daysOfMonth?.allSatisfy { (1...31).contains($0) } ?? true, "\(p).days_of_month", "must be 1 to 31")
        }

        try check((1...1_000_000).contains(redemption.points), "redemption.points", "must be between 1 and 1000000")
        try check((1...1_000_000).contains(redemption.minor), "redemption.minor", "must be between 1 and 1000000")
        try check((0...Limits.pointsMax).contains(redemption.minPoints), "redemption.min_points", "must not be negative")
        try percent(redemption.maxSharePercent, "redemption.max_share_percent", max: 100)

        if expiry.rule == .afterDays {
            try check((1...36_500).contains(expiry.days ?? 0), "expiry.days", "must be 1 to 36500 with rule after_days")
        } else {
            try check(expiry.days == nil, "expiry.days", "is used only with rule after_days")
        }
        if expiry.rule == .fixedDate {
            _ = try date(expiry.date, "expiry.date")
            try check(expiry.date != nil, "expiry.date", "a date YYYY-MM-DD is required with rule fixed_date")
        } else {
            try check(expiry.date == nil, "expiry.date", "is used only with rule fixed_date")
        }

        if let tiers {
            try check(!tiers.levels.isEmpty, "tiers.levels", "needs at least one level")
            var names = Set<String>()
            for (i, level) in tiers.levels.enumerated() {
                let p = "tiers.levels[\(i)]"
                try check(!level.name.isEmpty && names.insert(level.name).inserted, "\(p).name", "must be non-empty and unique")
                if i == 0 {
                    try check(level.threshold == 0, "\(p).threshold", "the first level starts at 0")
                } else {
                    try check(level.threshold > tiers.levels[i - 1].threshold, "\(p).threshold", "must be above the previous level's")
                }
                try percent(level.discountPercent, "\(p).discount_percent", max: 100)
                try percent(level.pointsPercent, "\(p).points_percent")
            }
        }

        var templates = Set<String>()
        for (i, t) in coupons.enumerated() {
            let p = "coupons[\(i)]"
            try check(!t.id.isEmpty && !t.id.contains("/") && templates.insert(t.id).inserted, "\(p).id", "must be non-empty, without '/', and unique")
            try check(!t.name.isEmpty, "\(p).name", "must not be empty")
            try check((t.valueMinor == nil) != (t.percent == nil), p, "give exactly one of value_minor and percent")
            if let v = t.valueMinor { try check((1...Limits.amountMaxMinor).contains(v), "\(p).value_minor", "must be positive") }
            if let v = t.percent { try check((1...100).contains(v), "\(p).percent", "must be 1 to 100") }
            try check((0...Limits.amountMaxMinor).contains(t.minSpendMinor), "\(p).min_spend_minor", "must not be negative")
            try check((1...3660).contains(t.validDays), "\(p).valid_days", "must be 1 to 3660")
            if t.issueOn == .wakeUp {
                try check((1...3660).contains(t.dormantDays ?? 0), "\(p).dormant_days", "a wake_up coupon needs dormant_days 1 to 3660")
            } else {
                try check(t.dormantDays == nil, "\(p).dormant_days", "is used only by wake_up coupons")
            }
        }

        last = 0
        for (i, band) in storedValue.bonusBands.enumerated() {
            let p = "stored_value.bonus_bands[\(i)]"
            try check(band.fromMinor > last && band.fromMinor <= Limits.amountMaxMinor, "\(p).from_minor", "must be positive and above the previous band's")
            try check((0...band.fromMinor * 10).contains(band.bonusMinor), "\(p).bonus_minor", "must be between 0 and ten times from_minor")
            if let coupon = band.coupon {
                try check(coupons.contains { $0.id == coupon && $0.issueOn == .recharge }, "\(p).coupon", "names no coupon template with issue_on recharge")
            }
            last = band.fromMinor
        }

        try check((0...Limits.pointsMax).contains(referral.enrolPoints), "referral.enrol_points", "must not be negative")
        try percent(referral.purchasePercent, "referral.purchase_percent", max: 100)
        try check((0...3660).contains(referral.days), "referral.days", "must be 0 to 3660")

        var activityNames = Set<String>()
        for (i, a) in activities.enumerated() {
            try check(!a.name.isEmpty && activityNames.insert(a.name).inserted, "activities[\(i)].name", "must be non-empty and unique")
            try check((1...1_000_000).contains(a.points), "activities[\(i)].points", "must be 1 to 1000000")
        }

        var plans = Set<String>()
        for (i, plan) in memberships.enumerated() {
            let p = "memberships[\(i)]"
            try check(!plan.id.isEmpty && plans.insert(plan.id).inserted, "\(p).id", "must be non-empty and unique")
            try check(!plan.name.isEmpty, "\(p).name", "must not be empty")
            try check((0...Limits.amountMaxMinor).contains(plan.priceMinor), "\(p).price_minor", "must not be negative")
            try check((1...3660).contains(plan.days), "\(p).days", "must be 1 to 3660")
            try percent(plan.discountPercent, "\(p).discount_percent", max: 100)
            try percent(plan.pointsPercent, "\(p).points_percent")
        }
    }
}

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

extension Decoder {
    /// Throws for a key the type does not define: a misspelt field is an error, not a default.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
        // Each name asked of the keys themselves (a switch over their names), not a set made of
        // them, and read straight off a JSON value's fields where that is what is decoded: every
        // pushed operation is checked here, and the set and the list of keys were two thirds of
        // decoding one.
        let unknown: String? = if let fields = self as? any FieldNames {
            fields.firstName(where: { Keys(stringValue: $0) == nil })
        } else {
            try self.container(keyedBy: AnyCodingKey.self).allKeys.first(where: { Keys(stringValue: $0.stringValue) == nil })?.stringValue
        }
        if let unknown {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [AnyCodingKey(stringValue: unknown)], debugDescription: "unknown field"))
        }
    }
}
