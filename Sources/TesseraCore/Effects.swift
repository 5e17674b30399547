/// What an operation does to the replicated state, as a list of effects that commute: applying
/// the effects of a set of operations in any order, any number of times, gives the same state.
/// The pure fold (`ChainState`) and the SQLite stores both apply exactly these effects.
public enum ProfileField: String, Sendable, CaseIterable, Hashable {
    case name, phone, birthday
}

/// One signed change to a member's holdings. Sums commute, so balances are order-free.
public struct LedgerEntry: Hashable, Sendable {
    public var member: MemberID
    /// Principal stored value (minor units).
    public var value: Int64
    /// Bonus stored value (minor units), kept apart from principal.
    public var bonus: Int64
    /// Spendable points.
    public var points: Int64
    /// Set when the entry earns points into (or takes earned points back from) a lot that can be
    /// spent until this local day. Nil for spending points, giving spent points back, and expiry.
    public var lot: LocalDay?
    /// Points an expiry took (positive) or gave back (negative); `points` is then `-expired`.
    public var expired: Int64
    /// Change of the tier-qualifying counter.
    public var qualifying: Int64

    public init(member: MemberID, value: Int64 = 0, bonus: Int64 = 0, points: Int64 = 0, lot: LocalDay? = nil,
                expired: Int64 = 0, qualifying: Int64 = 0) {
        self.member = member; self.value = value; self.bonus = bonus; self.points = points; self.lot = lot
        self.expired = expired; self.qualifying = qualifying
    }

    var isZero: Bool { value == 0 && bonus == 0 && points == 0 && expired == 0 && qualifying == 0 }
}

/// A time-limited membership and the benefits it was sold with.
public struct MembershipPeriod: Hashable, Sendable, Codable {
    public var member: MemberID
    public var plan: String
    public var name: String
    public var from: String
    public var until: String
    public var discountPercent: Int64
    public var pointsPercent: Int64
    public var memberPrices: Bool
    enum CodingKeys: String, CodingKey {
        case member, plan, name, from, until
        case discountPercent = "discount_percent", pointsPercent = "points_percent", memberPrices = "member_prices"
    }
    public init(member: MemberID, plan: String, name: String, from: String, until: String, discountPercent: Int64, pointsPercent: Int64,
                memberPrices: Bool = false) {
        self.member = member; self.plan = plan; self.name = name; self.from = from; self.until = until
        self.discountPercent = discountPercent; self.pointsPercent = pointsPercent; self.memberPrices = memberPrices
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        member = try c.decode(MemberID.self, forKey: .member)
        plan = try c.decode(String.self, forKey: .plan)
        name = try c.decode(String.self, forKey: .name)
        from = try c.decode(String.self, forKey: .from)
        until = try c.decode(String.self, forKey: .until)
        discountPercent = try c.decode(Int64.self, forKey: .discountPercent)
        pointsPercent = try c.decode(Int64.self, forKey: .pointsPercent)
        memberPrices = try c.decodeIfPresent(Bool.self, forKey: .memberPrices) ?? false
    }
    public func covers(_ day: LocalDay) -> Bool {
        guard let start = LocalDay(iso: from), let end = LocalDay(iso: until) else { return false }
        return start <= day && day <= end
    }
}

public enum Effect: Hashable, Sendable {
    /// The member exists from this operation on (its stamp is the enrolment's order).
    case enrol(MemberID, referrer: MemberID?)
    /// Last-writer-wins by the operation's stamp, field by field.
    case field(MemberID, ProfileField, String?)
    /// The card belongs to the member; if two issues claim one number, the earlier stamp wins.
    case issueCard(CardNumber, MemberID)
    /// Blocking is final: a blocked card stays blocked whatever order the operations arrive in.
    case blockCard(CardNumber)
    /// A ledger entry (the n-th of its operation).
    case ledger(LedgerEntry)
    case merge(from: MemberID, into: MemberID)
    /// `amount` of the operation `of` was refunded by this operation.
    case refund(of: OperationID, amount: Int64)
    case void(of: OperationID)
    /// A programme version; versions are immutable, so the set of them is order-free.
    case rules(version: Int, JSONValue)
    /// A coupon exists; ids are unique in the chain.
    case coupon(Coupon)
    /// This operation used the coupon. Two unrefunded uses are a double redemption.
    case couponUsed(String)
    /// The use of the coupon by operation `use` was refunded in full: the coupon is free again.
    case couponRestored(String, use: OperationID)
    case membership(MembershipPeriod)
    /// A change to the store's lease of the member's rights (`store` nil: the operation's own
    /// store), and, for a grant, when the lease ends.
    case rights(MemberID, store: StoreID?, Rights, expiresMs: Int64?)
    /// The hub asked the store to give back up to these rights.
    case recall(MemberID, store: StoreID, Rights)
    /// A store answered the recall made by this operation.
    case recallAnswered(OperationID)
}

extension OperationBody {
    public var effects: [Effect] {
        func lot(_ iso: String?) -> LocalDay { iso.flatMap(LocalDay.init(iso:)) ?? .never }
        var out: [Effect] = []
        func ledger(_ entry: LedgerEntry) { if !entry.isZero { out.append(.ledger(entry)) } }
        func lease(_ member: MemberID, _ store: StoreID?, _ change: Rights) {
            if !change.isZero { out.append(.rights(member, store: store, change, expiresMs: nil)) }
        }
        switch self {
        case .memberEnrolled(let b):
            out = [
                .enrol(b.member, referrer: b.referrer),
                .field(b.member, .name, b.name),
                .field(b.member, .phone, b.phone),
                .field(b.member, .birthday, b.birthday),
                .issueCard(b.card, b.member),
            ]
            if let referrer = b.referrer { ledger(LedgerEntry(member: referrer, points: b.referralPoints, lot: lot(b.pointsExpireOn))) }
            out += b.coupons.map(Effect.coupon)
        case .memberUpdated(let b):
            if let name = b.name { out.append(.field(b.member, .name, name)) }
            if let phone = b.phone { out.append(.field(b.member, .phone, phone)) }
            if let birthday = b.birthday { out.append(.field(b.member, .birthday, birthday)) }
        case .cardIssued(let b):
            out.append(.issueCard(b.card, b.member))
            if let old = b.replaces { out.append(.blockCard(old)) }
        case .cardBlocked(let b):
            out.append(.blockCard(b.card))
        case .valueRecharged(let b):
            ledger(LedgerEntry(member: b.member, value: b.amount, bonus: b.bonus))
            out += b.coupons.map(Effect.coupon)
            lease(b.member, nil, ownLeaseChange)
        case .purchase(let p):
            // Spending (value, bonus, redeemed points) and earning are separate entries: expiry
            // takes spent points from the oldest lots, earned points join their own lot.
            ledger(LedgerEntry(member: p.member, value: -(p.valueSpent - p.bonusSpent), bonus: -p.bonusSpent, points: -p.pointsRedeemed))
            ledger(LedgerEntry(member: p.member, points: p.pointsEarned, lot: lot(p.pointsExpireOn), qualifying: p.qualifying))
            if let referrer = p.referrer { ledger(LedgerEntry(member: referrer, points: p.referralPoints, lot: lot(p.pointsExpireOn))) }
            if let coupon = p.coupon { out.append(.couponUsed(coupon)) }
            lease(p.member, nil, ownLeaseChange)
        case .refund(let r):
            ledger(LedgerEntry(member: r.member, value: r.value, bonus: r.bonus, points: r.pointsRestored))
            ledger(LedgerEntry(member: r.member, points: -r.pointsReversed, lot: lot(r.pointsExpireOn), qualifying: r.qualifying))
            if let referrer = r.referrer { ledger(LedgerEntry(member: referrer, points: -r.referralPoints, lot: lot(r.pointsExpireOn))) }
            out.append(.refund(of: r.of, amount: r.amount))
            if let coupon = r.coupon { out.append(.couponRestored(coupon, use: r.of)) }
            out += r.couponsRevoked.map(Effect.couponUsed)
            lease(r.member, nil, ownLeaseChange)
        case .pointsAdjusted(let a):
            // Points given join a lot; points taken are spent like a redemption.
            ledger(LedgerEntry(member: a.member, points: a.points, lot: a.points > 0 ? lot(a.pointsExpireOn) : nil))
        case .memberMerged(let m):
            out.append(.merge(from: m.from, into: m.into))
        case .operationVoided(let v):
            out.append(.void(of: v.of))
        case .operationReversed(let r):
            let lotted = r.pointsExpireOn != nil || r.qualifying != 0
            ledger(LedgerEntry(member: r.member, value: r.value, bonus: r.bonus, points: r.points,
                               lot: lotted ? lot(r.pointsExpireOn) : nil, qualifying: r.qualifying))
            if let coupon = r.coupon { out.append(.couponRestored(coupon, use: r.of)) }
            if let store = r.leaseStore { lease(r.member, store, Rights(value: r.leaseValue ?? 0, points: r.leasePoints ?? 0)) }
        case .rulesPublished(let r):
            out.append(.rules(version: r.version, r.programme))
        case .pointsExpired(let e):
            ledger(LedgerEntry(member: e.member, points: -e.points, expired: e.points))
        case .couponsIssued(let c):
            out += c.coupons.map(Effect.coupon)
        case .membershipPurchased(let m):
            out.append(.membership(m.period))
        case .balanceOpened(let b):
            // Value as a load; points in a lot of their own, like points given by hand.
            ledger(LedgerEntry(member: b.member, value: b.value, bonus: b.bonus))
            ledger(LedgerEntry(member: b.member, points: b.points, lot: b.points > 0 ? lot(b.pointsExpireOn) : nil))
        case .leaseGranted(let g):
            out.append(.rights(g.member, store: g.store, Rights(value: g.value, points: g.points), expiresMs: g.expiresMs))
        case .leaseReturned(let r):
            out.append(.rights(r.member, store: r.store, Rights(value: -r.value, points: -r.points), expiresMs: nil))
            if let recall = r.recall { out.append(.recallAnswered(recall)) }
        case .leaseRecalled(let r):
            out.append(.recall(r.member, store: r.store, Rights(value: r.value, points: r.points)))
        case .unknown:
            break
        }
        return out
    }
}
