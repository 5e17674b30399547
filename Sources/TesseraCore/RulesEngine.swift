/// The rules engine: pure functions from a programme, a member's standing and a till's request
/// to the operation body the till records. Nothing here reads a clock or a database; the time
/// and store are the till's, passed in.
public struct TillContext: Sendable {
    public var store: StoreID
    public var atMs: Int64
    public var programme: Programme
    public init(store: StoreID, atMs: Int64, programme: Programme) { self.store = store; self.atMs = atMs; self.programme = programme }
    public var day: LocalDay { programme.calendar.day(ms: atMs) }
}

/// What a till asks for when it sells.
public struct PurchaseTerms: Hashable, Sendable {
    public var amount: Int64
    public var payFromBalance: Bool
    public var redeemPoints: Int64
    public var coupon: String?
    /// The basket at member prices (the till knows its price list); used when the member's tier
    /// or membership grants member prices.
    public var memberAmount: Int64?
    public init(amount: Int64, payFromBalance: Bool = false, redeemPoints: Int64 = 0, coupon: String? = nil, memberAmount: Int64? = nil) {
        self.amount = amount; self.payFromBalance = payFromBalance; self.redeemPoints = redeemPoints; self.coupon = coupon
        self.memberAmount = memberAmount
    }
}

/// The member who referred the buyer, and when the buyer enrolled.
public struct ReferralLink: Hashable, Sendable {
    public var referrer: MemberID
    public var enrolledAtMs: Int64
    public init(referrer: MemberID, enrolledAtMs: Int64) { self.referrer = referrer; self.enrolledAtMs = enrolledAtMs }
}

public enum RulesEngine {
    /// Prices a sale: discounts, coupon, points as payment, stored value, points earned,
    /// referral reward, tier counter. The same inputs give the same body on every replica.
    public static func price(_ terms: PurchaseTerms, member: MemberID, standing: MemberStanding, referral: ReferralLink?,
                             _ context: TillContext) throws(DomainError) -> Purchase {
        let programme = context.programme
        let day = context.day
        let amount = terms.amount

        var discountPercent = standing.tier?.discountPercent ?? 0
        var pointsPercent = standing.tier?.pointsPercent ?? 100
        if let membership = standing.membership {
            discountPercent = max(discountPercent, membership.discountPercent)
            pointsPercent = max(pointsPercent, membership.pointsPercent)
        }
        var discount = mulDiv(amount, discountPercent, 100)
        // Member prices: the better of the two for the member.
        if let memberAmount = terms.memberAmount, standing.tier?.memberPrices == true || standing.membership?.memberPrices == true {
            guard (0...amount).contains(memberAmount) else {
                throw DomainError(.invalidRequest, "member_amount must be between 0 and the amount \(amount)")
            }
            discount = max(discount, amount - memberAmount)
        }
        let afterDiscount = amount - discount

        var couponDiscount: Int64 = 0
        if let id = terms.coupon {
            guard let coupon = standing.coupons.first(where: { $0.id == id }) else {
                throw DomainError(.couponUnavailable, "coupon \(id) is not available to this member (unknown, already used, or outside its dates)")
            }
            if let stores = coupon.stores, !stores.contains(context.store) {
                throw DomainError(.couponUnavailable, "coupon \(id) is not valid at store \(context.store)")
            }
            guard afterDiscount >= coupon.minSpendMinor else {
                throw DomainError(.couponUnavailable, "coupon \(id) needs a purchase of at least \(coupon.minSpendMinor)")
            }
            couponDiscount = coupon.valueMinor.map { min($0, afterDiscount) } ?? mulDiv(afterDiscount, coupon.percent ?? 0, 100)
        }
        let due = afterDiscount - couponDiscount

        var pointsValue: Int64 = 0
        let redeem = terms.redeemPoints
        if redeem > 0 {
            let rate = programme.redemption
            guard redeem >= rate.minPoints else {
                throw DomainError(.redemptionRefused, "at least \(rate.minPoints) points must be redeemed at once")
            }
            guard (redeem * rate.minor) % rate.points == 0 else {
                throw DomainError(.invalidRequest, "points redeem in steps of \(rate.points / gcd(rate.points, rate.minor)) (\(rate.points) points pay \(rate.minor))")
            }
            pointsValue = redeem * rate.minor / rate.points
            let most = mulDiv(due, rate.maxSharePercent, 100)
            guard pointsValue <= most else {
                throw DomainError(.redemptionRefused, "points may pay at most \(rate.maxSharePercent)% of \(due), that is \(most); \(redeem) points are worth \(pointsValue)")
            }
            guard redeem <= standing.pointsAvailable else {
                throw DomainError(.insufficientPoints, "the member has \(standing.pointsAvailable) points to spend, fewer than \(redeem)")
            }
        }
        let paid = due - pointsValue
        let valueSpent = terms.payFromBalance ? paid : 0
        let bonusSpent: Int64
        switch programme.storedValue.consume {
        case .principalFirst:
            bonusSpent = min(max(0, valueSpent - max(0, standing.principal)), max(0, standing.bonus))
        case .proportional:
            bonusSpent = standing.balance > 0 ? min(mulDiv(valueSpent, max(0, standing.bonus), standing.balance), max(0, standing.bonus)) : 0
        }

        let earning = programme.earning
        let band = earning.bands.last { $0.fromMinor <= paid }
        // Each step rounds down; mulDiv keeps the products exact (up to 10^18 with every bound at
        // its maximum), and a sale earns at most the points bound.
        var earned = mulDiv(paid, band?.points ?? earning.points, band?.perMinor ?? earning.perMinor)
        earned = mulDiv(earned, earning.lifetimeBands.last { $0.fromPoints <= standing.lifetimePoints }?.percent ?? 100, 100)
        earned = mulDiv(earned, pointsPercent, 100)
        let campaign = earning.campaigns.filter { $0.applies(on: day, at: context.store) }.max { ($0.percent, $1.id) < ($1.percent, $0.id) }
        earned = min(mulDiv(earned, campaign?.percent ?? 100, 100), Limits.pointsMax)
        let lot = programme.expiry.lot(earnedOn: day)

        var referrer: MemberID?
        var referralPoints: Int64 = 0
        if let referral, programme.referral.purchasePercent > 0,
           day <= programme.calendar.day(ms: referral.enrolledAtMs).adding(days: programme.referral.days) {
            referralPoints = min(mulDiv(mulDiv(paid, earning.points, earning.perMinor), programme.referral.purchasePercent, 100), Limits.pointsMax)
            if referralPoints > 0 { referrer = referral.referrer }
        }

        return Purchase(
            member: member, amount: amount, discount: discount, coupon: terms.coupon, couponDiscount: couponDiscount,
            pointsRedeemed: redeem, pointsValue: pointsValue, valueSpent: valueSpent, bonusSpent: bonusSpent,
            pointsEarned: earned, pointsExpireOn: lot == .never ? nil : lot.iso,
            qualifying: programme.tiers?.qualifyOn == .spend ? paid : earned,
            tier: standing.tier?.name, membership: standing.membership?.plan, campaign: campaign?.id,
            referrer: referrer, referralPoints: referralPoints, rulesVersion: programme.version)
    }

    /// Loads money: the best bonus band's bonus (kept apart from principal) and its coupon.
    public static func recharge(amount: Int64, member: MemberID, op: OperationID, _ context: TillContext) -> ValueRecharged {
        let programme = context.programme
        let band = programme.storedValue.bonusBands.last { $0.fromMinor <= amount }
        let coupons = band?.coupon.flatMap { id in programme.coupons.first { $0.id == id } }
            .map { [$0.issue(id: "\($0.id)/\(op)", to: member, on: context.day)] } ?? []
        return ValueRecharged(member: member, amount: amount, bonus: band?.bonusMinor ?? 0, coupons: coupons, rulesVersion: programme.version)
    }

    /// What an enrolment brings: signup coupons for the member, and for the referrer, points
    /// and referral coupons.
    public static func enrolment(member: MemberID, referrer: MemberID?, op: OperationID, _ context: TillContext)
        -> (referralPoints: Int64, pointsExpireOn: String?, coupons: [Coupon]) {
        let programme = context.programme
        var coupons = programme.coupons.filter { $0.issueOn == .signup }
            .map { $0.issue(id: "\($0.id)/\(op)", to: member, on: context.day) }
        var points: Int64 = 0
        if let referrer {
            coupons += programme.coupons.filter { $0.issueOn == .referral }
                .map { $0.issue(id: "\($0.id)/\(op)", to: referrer, on: context.day) }
            points = programme.referral.enrolPoints
        }
        let lot = programme.expiry.lot(earnedOn: context.day)
        return (points, points > 0 && lot != .never ? lot.iso : nil, coupons)
    }

    /// Reverses `amount` (all that is left when nil) of a purchase, in proportion. Shares are
    /// differences of cumulative floors, so partial refunds that add up to the whole reverse
    /// exactly what the purchase created, to the unit.
    public static func refund(_ p: Purchase, of original: OperationID, member: MemberID, refundedSoFar: Int64,
                              amount: Int64?) throws(DomainError) -> Refund {
        let (r, share) = try portion(total: p.amount, refundedSoFar: refundedSoFar, amount: amount, original)
        let full = refundedSoFar + r == p.amount
        let referral = share(p.referralPoints)
        return Refund(member: member, of: original, amount: r,
                      value: share(p.valueSpent - p.bonusSpent), bonus: share(p.bonusSpent),
                      pointsRestored: share(p.pointsRedeemed), pointsReversed: share(p.pointsEarned),
                      pointsExpireOn: p.pointsExpireOn, qualifying: -share(p.qualifying),
                      referrer: referral > 0 ? p.referrer : nil, referralPoints: referral,
                      coupon: full ? p.coupon : nil, cashBack: share(p.cashDue))
    }

    /// Takes back `amount` (all that is left when nil) of a recharge's principal and the same
    /// share of its bonus; only principal is paid back. The refund that completes the whole also
    /// takes back the coupons the recharge brought.
    public static func refund(_ recharge: ValueRecharged, of original: OperationID, member: MemberID, refundedSoFar: Int64,
                              amount: Int64?) throws(DomainError) -> Refund {
        let (r, share) = try portion(total: recharge.amount, refundedSoFar: refundedSoFar, amount: amount, original)
        let full = refundedSoFar + r == recharge.amount
        return Refund(member: member, of: original, amount: r, value: -share(recharge.amount), bonus: -share(recharge.bonus),
                      couponsRevoked: full ? recharge.coupons.map(\.id) : [], cashBack: share(recharge.amount))
    }

    static func portion(total: Int64, refundedSoFar: Int64, amount: Int64?, _ original: OperationID) throws(DomainError)
        -> (Int64, (Int64) -> Int64) {
        let left = total - refundedSoFar
        guard left > 0 else { throw DomainError(.alreadyRefunded, "transaction \(original) is already refunded in full") }
        let r = amount ?? left
        guard r >= 1, r <= left else {
            throw DomainError(.refundTooLarge, "at most \(left) of transaction \(original) can still be refunded, not \(r)")
        }
        let share: (Int64) -> Int64 = { x in mulDiv(x, refundedSoFar + r, total) - mulDiv(x, refundedSoFar, total) }
        return (r, share)
    }

    /// Participation points for a named activity of the programme.
    public static func activity(_ name: String, member: MemberID, _ context: TillContext) throws(DomainError) -> PointsAdjusted {
        let programme = context.programme
        guard let activity = programme.activities.first(where: { $0.name == name }) else {
            throw DomainError(.notFound, "rules version \(programme.version) has no activity '\(name)'")
        }
        let lot = programme.expiry.lot(earnedOn: context.day)
        return PointsAdjusted(member: member, points: activity.points, reason: "activity: \(name)", activity: name,
                              pointsExpireOn: lot == .never ? nil : lot.iso, rulesVersion: programme.version)
    }

    /// A membership sale; a renewal while one is valid starts the day after it ends.
    public static func membership(_ planID: String, member: MemberID, standing: MemberStanding,
                                  _ context: TillContext) throws(DomainError) -> MembershipPurchased {
        let programme = context.programme
        guard let plan = programme.memberships.first(where: { $0.id == planID }) else {
            throw DomainError(.notFound, "rules version \(programme.version) has no membership plan '\(planID)'")
        }
        var from = context.day
        if let current = standing.membership, current.plan == planID, let end = LocalDay(iso: current.until), end >= from {
            from = end.adding(days: 1)
        }
        let period = MembershipPeriod(member: member, plan: plan.id, name: plan.name, from: from.iso,
                                      until: from.adding(days: plan.days - 1).iso, discountPercent: plan.discountPercent,
                                      pointsPercent: plan.pointsPercent, memberPrices: plan.memberPrices)
        return MembershipPurchased(period: period, priceMinor: plan.priceMinor, rulesVersion: programme.version)
    }

    /// Coupons the hub issues on `today`: birthday coupons in the member's birthday month (once
    /// a year) and wake-up coupons to a member asleep since `lastActive` (the deepest template
    /// the sleep has reached, once per template and sleep). Ids are deterministic, so a job that
    /// runs twice issues nothing twice.
    public static func scheduledCoupons(member: MemberID, birthday: String?, lastActive: LocalDay, today: LocalDay,
                                        programme: Programme) -> [Coupon] {
        var out: [Coupon] = []
        if let birthday, let month = birthdayMonth(birthday), month == today.civil.month {
            out += programme.coupons.filter { $0.issueOn == .birthday }
                .map { $0.issue(id: "\($0.id)/\(member)/\(today.year)", to: member, on: today) }
        }
        let asleep = today.number - lastActive.number
        if let deepest = programme.coupons.filter({ $0.issueOn == .wakeUp && ($0.dormantDays ?? .max) <= asleep })
            .max(by: { ($0.dormantDays ?? 0) < ($1.dormantDays ?? 0) }) {
            out.append(deepest.issue(id: "\(deepest.id)/\(member)/\(lastActive.iso)", to: member, on: today))
        }
        return out
    }

    public static func birthdayMonth(_ text: String) -> Int64? {
        let parts = text.split(separator: "-")
        guard parts.count >= 2 else { return nil }
        return Int64(parts[parts.count - 2])
    }
}

/// a * b / c rounded toward zero, for non-negative b and positive c, exact even when a * b
/// overflows 64 bits.
public func mulDiv(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
    precondition(b >= 0 && c > 0, "mulDiv takes a non-negative factor and a positive divisor")
    if a < 0 { return -mulDiv(-a, b, c) }
    let product = a.multipliedFullWidth(by: b)
    return c.dividingFullWidth((high: product.high, low: product.low)).quotient
}

func gcd(_ a: Int64, _ b: Int64) -> Int64 { b == 0 ? a : gcd(b, a % b) }
