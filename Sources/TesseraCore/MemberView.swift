/// A member as a till, head office or the member sees them: profile, current card, balance and
/// points (sums over the member and every member merged into them), and what the programme
/// makes of them today: tier, usable coupons, membership.
public struct MemberView: Hashable, Sendable, Codable {
    public var id: MemberID
    public var card: CardNumber?
    public var name: String?
    public var phone: String?
    public var birthday: String?
    /// Stored value in minor units, principal and bonus together.
    public var balance: Int64
    /// The part of `balance` that is bonus money (spendable, not refundable).
    public var bonus: Int64
    public var points: Int64
    /// Points that may be spent today (points past their expiry are not, even before the hub
    /// has recorded the expiry).
    public var pointsAvailable: Int64
    public var tier: String?
    /// The tier counter of the current period.
    public var qualifying: Int64
    public var coupons: [Coupon]
    public var membership: MembershipPeriod?
    /// Set when `id` was merged into another member; every other field then shows that member.
    public var mergedInto: MemberID?

    enum CodingKeys: String, CodingKey {
        case id, card, name, phone, birthday, balance, bonus, points, tier, qualifying, coupons, membership
        case pointsAvailable = "points_available"
        case mergedInto = "merged_into"
    }

    public init(id: MemberID, card: CardNumber?, name: String?, phone: String?, birthday: String?,
                standing: MemberStanding, mergedInto: MemberID?) {
        self.id = id; self.card = card; self.name = name; self.phone = phone; self.birthday = birthday
        self.balance = standing.balance; self.bonus = standing.bonus; self.points = standing.points
        self.pointsAvailable = standing.pointsAvailable; self.tier = standing.tier?.name; self.qualifying = standing.qualifying
        self.coupons = standing.coupons; self.membership = standing.membership; self.mergedInto = mergedInto
    }
}

/// What a member holds: stored value in minor units (principal and bonus) and points.
public struct Holdings: Hashable, Sendable {
    public var valueMinor: Int64
    public var points: Int64
    /// The bonus part of `valueMinor`.
    public var bonusMinor: Int64
    public init(valueMinor: Int64, points: Int64, bonusMinor: Int64 = 0) {
        self.valueMinor = valueMinor; self.points = points; self.bonusMinor = bonusMinor
    }
    public static let zero = Holdings(valueMinor: 0, points: 0)
}
