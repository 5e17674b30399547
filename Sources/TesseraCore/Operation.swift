import Foundation

/// An immutable record of one change, made once by one store (or by the hub) and replicated
/// everywhere. All state is a fold of the set of operations.
public struct Operation: Hashable, Sendable, Codable {
    public let id: OperationID
    public let hlc: HLCTimestamp
    /// The kind, e.g. `purchase`. Kinds this build does not know are stored and passed on.
    public let kind: String
    /// The version of the kind's body schema. A new field that old code may ignore keeps the
    /// version; a change old code would misread gets a new kind version, which old code treats
    /// like an unknown kind (stored, passed on, no effect) until it is upgraded.
    public let kindVersion: Int
    public let body: JSONValue

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, hlc, kind, body
        case kindVersion = "kind_version"
    }

    /// The envelope is strict (an unknown field is an error); bodies are not, so a field a
    /// newer build adds is carried by an older one (see the protocol's versioning rules).
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(OperationID.self, forKey: .id)
        hlc = try c.decode(HLCTimestamp.self, forKey: .hlc)
        kind = try c.decode(String.self, forKey: .kind)
        kindVersion = try c.decode(Int.self, forKey: .kindVersion)
        body = try c.decode(JSONValue.self, forKey: .body)
    }

    public init(id: OperationID, hlc: HLCTimestamp, kind: String, kindVersion: Int = 1, body: JSONValue) {
        self.id = id
        self.hlc = hlc
        self.kind = kind
        self.kindVersion = kindVersion
        self.body = body
    }

    public init(id: OperationID, hlc: HLCTimestamp, body: OperationBody) {
        self.init(id: id, hlc: hlc, kind: body.kind.rawValue, kindVersion: 1, body: body.json)
    }

    public var stamp: Stamp { Stamp(hlc: hlc, origin: id.origin) }

    /// The typed body, or `.unknown` for a kind (or kind version) this build does not know.
    /// Throws when a known kind's body is malformed.
    public func decoded() throws -> OperationBody {
        guard let kind = OperationKind(rawValue: kind), kindVersion == 1 else { return .unknown }
        return try OperationBody.decode(kind: kind, body: body)
    }
}

public enum OperationKind: String, Sendable, CaseIterable {
    case memberEnrolled = "member.enrolled"
    case memberUpdated = "member.updated"
    case cardIssued = "card.issued"
    case cardBlocked = "card.blocked"
    case valueRecharged = "value.recharged"
    case purchase = "purchase"
    case refund = "refund"
    case pointsAdjusted = "points.adjusted"
    case memberMerged = "member.merged"
    case operationVoided = "operation.voided"
    case operationReversed = "operation.reversed"
    case rulesPublished = "rules.published"
    case pointsExpired = "points.expired"
    case couponsIssued = "coupons.issued"
    case membershipPurchased = "membership.purchased"
    case balanceOpened = "balance.opened"
    case leaseGranted = "lease.granted"
    case leaseReturned = "lease.returned"
    case leaseRecalled = "lease.recalled"
}

/// The typed bodies of the kinds this build knows.
public enum OperationBody: Hashable, Sendable {
    case memberEnrolled(MemberEnrolled)
    case memberUpdated(MemberUpdated)
    case cardIssued(CardIssued)
    case cardBlocked(CardBlocked)
    case valueRecharged(ValueRecharged)
    case purchase(Purchase)
    case refund(Refund)
    case pointsAdjusted(PointsAdjusted)
    case memberMerged(MemberMerged)
    case operationVoided(OperationVoided)
    case operationReversed(OperationReversed)
    case rulesPublished(RulesPublished)
    case pointsExpired(PointsExpired)
    case couponsIssued(CouponsIssued)
    case membershipPurchased(MembershipPurchased)
    case balanceOpened(BalanceOpened)
    case leaseGranted(LeaseGranted)
    case leaseReturned(LeaseReturned)
    case leaseRecalled(LeaseRecalled)
    case unknown

    public var kind: OperationKind {
        switch self {
        case .memberEnrolled: .memberEnrolled
        case .memberUpdated: .memberUpdated
        case .cardIssued: .cardIssued
        case .cardBlocked: .cardBlocked
        case .valueRecharged: .valueRecharged
        case .purchase: .purchase
        case .refund: .refund
        case .pointsAdjusted: .pointsAdjusted
        case .memberMerged: .memberMerged
        case .operationVoided: .operationVoided
        case .operationReversed: .operationReversed
        case .rulesPublished: .rulesPublished
        case .pointsExpired: .pointsExpired
        case .couponsIssued: .couponsIssued
        case .membershipPurchased: .membershipPurchased
        case .balanceOpened: .balanceOpened
        case .leaseGranted: .leaseGranted
        case .leaseReturned: .leaseReturned
        case .leaseRecalled: .leaseRecalled
        case .unknown: preconditionFailure("an unknown body has no kind of ours")
        }
    }

    /// The member whose balance, points or profile the operation touches (for indexing).
    public var member: MemberID? {
        switch self {
        case .memberEnrolled(let b): b.member
        case .memberUpdated(let b): b.member
        case .cardIssued(let b): b.member
        case .cardBlocked(let b): b.member
        case .valueRecharged(let b): b.member
        case .purchase(let b): b.member
        case .refund(let b): b.member
        case .pointsAdjusted(let b): b.member
        case .memberMerged(let b): b.into
        case .operationVoided(let b): b.member
        case .operationReversed(let b): b.member
        case .rulesPublished: nil
        case .pointsExpired(let b): b.member
        case .couponsIssued(let b): b.coupons.first?.member
        case .membershipPurchased(let b): b.member
        case .balanceOpened(let b): b.member
        case .leaseGranted(let b): b.member
        case .leaseReturned(let b): b.member
        case .leaseRecalled(let b): b.member
        case .unknown: nil
        }
    }

    /// What the operation takes from a member: it needs the hub's authorisation when online and
    /// the offline policy's consent otherwise. A coupon is taken too: it may be used once.
    public var debit: Debit {
        switch self {
        case .purchase(let p):
            Debit(valueMinor: p.valueSpent, points: p.pointsRedeemed, coupon: p.coupon,
                  costMinor: p.valueSpent + p.pointsValue + p.couponDiscount)
        case .refund(let r):
            Debit(valueMinor: max(0, -(r.value + r.bonus)), points: 0, coupon: nil, costMinor: max(0, -(r.value + r.bonus)))
        default:
            Debit(valueMinor: 0, points: 0)
        }
    }

    var json: JSONValue {
        func encode<T: Encodable>(_ value: T) -> JSONValue {
            // Encoding our own plain structs cannot fail. Straight into a JSONValue: the same
            // value as through JSON text and back (JSONValueEncoderTests), without the text.
            guard let json = try? JSONValueEncoder().encode(value) else { preconditionFailure("operation body failed to encode") }
            return json
        }
        switch self {
        case .memberEnrolled(let b): return encode(b)
        case .memberUpdated(let b): return encode(b)
        case .cardIssued(let b): return encode(b)
        case .cardBlocked(let b): return encode(b)
        case .valueRecharged(let b): return encode(b)
        case .purchase(let b): return encode(b)
        case .refund(let b): return encode(b)
        case .pointsAdjusted(let b): return encode(b)
        case .memberMerged(let b): return encode(b)
        case .operationVoided(let b): return encode(b)
        case .operationReversed(let b): return encode(b)
        case .rulesPublished(let b): return encode(b)
        case .pointsExpired(let b): return encode(b)
        case .couponsIssued(let b): return encode(b)
        case .membershipPurchased(let b): return encode(b)
        case .balanceOpened(let b): return encode(b)
        case .leaseGranted(let b): return encode(b)
        case .leaseReturned(let b): return encode(b)
        case .leaseRecalled(let b): return encode(b)
        case .unknown: preconditionFailure("an unknown body is passed on as it came")
        }
    }

    static func decode(kind: OperationKind, body: JSONValue) throws -> OperationBody {
        // The commonest kinds field by field (DirectBody); anything else, or anything those
        // do not plainly read, straight from the JSON value (see JSONValueDecoder).
        if let direct = DirectBody.decode(kind: kind, body) { return direct }
        return try decode(kind: kind, from: JSONValueBodySource(value: body))
    }

    /// The body of a known kind, read by `source` as that kind's type.
    public static func decode(kind: OperationKind, from d: some BodySource) throws -> OperationBody {
        switch kind {
        case .memberEnrolled: return .memberEnrolled(try d.decode(MemberEnrolled.self))
        case .memberUpdated: return .memberUpdated(try d.decode(MemberUpdated.self))
        case .cardIssued: return .cardIssued(try d.decode(CardIssued.self))
        case .cardBlocked: return .cardBlocked(try d.decode(CardBlocked.self))
        case .valueRecharged: return .valueRecharged(try d.decode(ValueRecharged.self))
        case .purchase: return .purchase(try d.decode(Purchase.self))
        case .refund: return .refund(try d.decode(Refund.self))
        case .pointsAdjusted: return .pointsAdjusted(try d.decode(PointsAdjusted.self))
        case .memberMerged: return .memberMerged(try d.decode(MemberMerged.self))
        case .operationVoided: return .operationVoided(try d.decode(OperationVoided.self))
        case .operationReversed: return .operationReversed(try d.decode(OperationReversed.self))
        case .rulesPublished: return .rulesPublished(try d.decode(RulesPublished.self))
        case .pointsExpired: return .pointsExpired(try d.decode(PointsExpired.self))
        case .couponsIssued: return .couponsIssued(try d.decode(CouponsIssued.self))
        case .membershipPurchased: return .membershipPurchased(try d.decode(MembershipPurchased.self))
        case .balanceOpened: return .balanceOpened(try d.decode(BalanceOpened.self))
        case .leaseGranted: return .leaseGranted(try d.decode(LeaseGranted.self))
        case .leaseReturned: return .leaseReturned(try d.decode(LeaseReturned.self))
        case .leaseRecalled: return .leaseRecalled(try d.decode(LeaseRecalled.self))
        }
    }
}

/// Reads an operation body as a given type: from its JSON value (`JSONValueBodySource`), or
/// any other way (the tests read it through JSON text too, to check both agree).
public protocol BodySource {
    func decode<T: Decodable>(_ type: T.Type) throws -> T
}

struct JSONValueBodySource: BodySource {
    let value: JSONValue
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONValueDecoder().decode(type, from: value) }
}

/// What an operation takes from a member's stored value, points and coupons. `costMinor` is its
/// cash worth (value, points at their redemption value, coupon discount): the offline limit counts it.
public struct Debit: Hashable, Sendable {
    public var valueMinor: Int64
    public var points: Int64
    public var coupon: String?
    public var costMinor: Int64
    public init(valueMinor: Int64, points: Int64, coupon: String? = nil, costMinor: Int64? = nil) {
        self.valueMinor = valueMinor
        self.points = points
        self.coupon = coupon
        self.costMinor = costMinor ?? valueMinor + points
    }
    public var isZero: Bool { valueMinor == 0 && points == 0 && coupon == nil }
}

// MARK: - Bodies (JSON keys in snake_case; money in minor units, points as integers)
//
// Every number a till computed under the rules (points earned, discounts, bonus, expiry dates)
// is written into the body, with the rules version it was computed under: replicas fold the
// recorded numbers and never recompute them, so a receipt never changes after the fact.
// Fields added since the first version decode with their neutral default when absent.

public struct MemberEnrolled: Hashable, Sendable, Codable {
    public var member: MemberID
    public var card: CardNumber
    public var name: String
    public var phone: String
    public var birthday: String?
    public var referrer: MemberID?
    /// Points the referrer earns for this enrolment, and the last day they can be spent.
    public var referralPoints: Int64
    public var pointsExpireOn: String?
    /// Signup coupons for the member and referral coupons for the referrer.
    public var coupons: [Coupon]
    public var rulesVersion: Int
    /// The store the member joined at, when the hub enrols on a store's behalf (members
    /// imported from a chain's old system); absent, it is the operation's origin.
    public var store: StoreID?
    /// The member's key in the system it was imported from (the import's row key).
    public var reference: String?
    enum CodingKeys: String, CodingKey {
        case member, card, name, phone, birthday, referrer, coupons, store, reference
        case referralPoints = "referral_points", pointsExpireOn = "points_expire_on", rulesVersion = "rules_version"
    }
    public init(member: MemberID, card: CardNumber, name: String, phone: String, birthday: String? = nil, referrer: MemberID? = nil,
                referralPoints: Int64 = 0, pointsExpireOn: String? = nil, coupons: [Coupon] = [], rulesVersion: Int = 0,
                store: StoreID? = nil, reference: String? = nil) {
        self.member = member; self.card = card; self.name = name; self.phone = phone
        self.birthday = birthday; self.referrer = referrer; self.referralPoints = referralPoints
        self.pointsExpireOn = pointsExpireOn; self.coupons = coupons; self.rulesVersion = rulesVersion
        self.store = store; self.reference = reference
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        member = try c.decode(MemberID.self, forKey: .member)
        card = try c.decode(CardNumber.self, forKey: .card)
        name = try c.decode(String.self, forKey: .name)
        phone = try c.decode(String.self, forKey: .phone)
        birthday = try c.decodeIfPresent(String.self, forKey: .birthday)
        referrer = try c.decodeIfPresent(MemberID.self, forKey: .referrer)
        referralPoints = try c.decodeIfPresent(Int64.self, forKey: .referralPoints) ?? 0
        pointsExpireOn = try c.decodeIfPresent(String.self, forKey: .pointsExpireOn)
        coupons = try c.decodeIfPresent([Coupon].self, forKey: .coupons) ?? []
        rulesVersion = try c.decodeIfPresent(Int.self, forKey: .rulesVersion) ?? 0
        store = try c.decodeIfPresent(StoreID.self, forKey: .store)
        reference = try c.decodeIfPresent(String.self, forKey: .reference)
    }
}

/// What a member held in the chain's old system when it was imported: stored value (principal
/// and bonus apart) and points, as one operation of the hub's, so the balance is a fold of the
/// log like any other and never an edited number. `store` is the store the value is owed by
/// (the member's joining store): settlement and liabilities count it as loaded there.
public struct BalanceOpened: Hashable, Sendable, Codable {
    public var member: MemberID
    public var store: StoreID
    public var value: Int64
    public var bonus: Int64
    public var points: Int64
    public var pointsExpireOn: String?
    public var reference: String?
    enum CodingKeys: String, CodingKey {
        case member, store, value, bonus, points, reference
        case pointsExpireOn = "points_expire_on"
    }
    public init(member: MemberID, store: StoreID, value: Int64, bonus: Int64, points: Int64, pointsExpireOn: String? = nil, reference: String? = nil) {
        self.member = member; self.store = store; self.value = value; self.bonus = bonus; self.points = points
        self.pointsExpireOn = pointsExpireOn; self.reference = reference
    }
}

/// Profile fields to change; a field left out is unchanged. Each field is last-writer-wins on its own.
public struct MemberUpdated: Hashable, Sendable, Codable {
    public var member: MemberID
    public var name: String?
    public var phone: String?
    public var birthday: String?
    public init(member: MemberID, name: String? = nil, phone: String? = nil, birthday: String? = nil) {
        self.member = member; self.name = name; self.phone = phone; self.birthday = birthday
    }
}

/// A new card for a member; `replaces` names the card it replaces, which is blocked by it.
public struct CardIssued: Hashable, Sendable, Codable {
    public var member: MemberID
    public var card: CardNumber
    public var replaces: CardNumber?
    public init(member: MemberID, card: CardNumber, replaces: CardNumber? = nil) {
        self.member = member; self.card = card; self.replaces = replaces
    }
}

public struct CardBlocked: Hashable, Sendable, Codable {
    public var card: CardNumber
    public var member: MemberID?
    public init(card: CardNumber, member: MemberID?) { self.card = card; self.member = member }
}

/// Money loaded onto the card: `amount` is principal (refundable), `bonus` the band's free money
/// (spendable, never paid out), kept apart so both can be accounted for.
public struct ValueRecharged: Hashable, Sendable, Codable {
    public var member: MemberID
    public var amount: Int64
    public var bonus: Int64
    public var coupons: [Coupon]
    public var rulesVersion: Int
    /// Under leases: what the recharge adds to its store's lease (all of it, spendable there at once).
    public var leaseValue: Int64?
    enum CodingKeys: String, CodingKey {
        case member, amount, bonus, coupons
        case rulesVersion = "rules_version", leaseValue = "lease_value"
    }
    public init(member: MemberID, amount: Int64, bonus: Int64 = 0, coupons: [Coupon] = [], rulesVersion: Int = 0, leaseValue: Int64? = nil) {
        self.member = member; self.amount = amount; self.bonus = bonus; self.coupons = coupons; self.rulesVersion = rulesVersion
        self.leaseValue = leaseValue
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        member = try c.decode(MemberID.self, forKey: .member)
        amount = try c.decode(Int64.self, forKey: .amount)
        bonus = try c.decodeIfPresent(Int64.self, forKey: .bonus) ?? 0
        coupons = try c.decodeIfPresent([Coupon].self, forKey: .coupons) ?? []
        rulesVersion = try c.decodeIfPresent(Int.self, forKey: .rulesVersion) ?? 0
        leaseValue = try c.decodeIfPresent(Int64.self, forKey: .leaseValue)
    }
}

/// A sale at a till, as the rules priced it. Of `amount`, `discount` is the tier's or
/// membership's percentage, `coupon_discount` the coupon's, `points_value` is paid with
/// `points_redeemed` points, `value_spent` from the stored-value balance (of which `bonus_spent`
/// is bonus money) and the rest in cash. `points_earned` are credited to a lot that can be spent
/// until `points_expire_on`; `qualifying` counts toward the tier; `referral_points` go to the
/// referrer.
public struct Purchase: Hashable, Sendable, Codable {
    public var member: MemberID
    public var amount: Int64
    public var discount: Int64
    public var coupon: String?
    public var couponDiscount: Int64
    public var pointsRedeemed: Int64
    public var pointsValue: Int64
    public var valueSpent: Int64
    public var bonusSpent: Int64
    public var pointsEarned: Int64
    public var pointsExpireOn: String?
    public var qualifying: Int64
    public var tier: String?
    public var membership: String?
    public var campaign: String?
    public var referrer: MemberID?
    public var referralPoints: Int64
    public var rulesVersion: Int
    /// Under leases: the change the sale makes to its store's lease (minus what it drew from it).
    public var leaseValue: Int64?
    public var leasePoints: Int64?
    enum CodingKeys: String, CodingKey {
        case member, amount, discount, coupon, qualifying, tier, membership, campaign, referrer
        case couponDiscount = "coupon_discount", pointsRedeemed = "points_redeemed", pointsValue = "points_value"
        case valueSpent = "value_spent", bonusSpent = "bonus_spent", pointsEarned = "points_earned"
        case pointsExpireOn = "points_expire_on", referralPoints = "referral_points", rulesVersion = "rules_version"
        case leaseValue = "lease_value", leasePoints = "lease_points"
    }
    public init(member: MemberID, amount: Int64, discount: Int64 = 0, coupon: String? = nil, couponDiscount: Int64 = 0,
                pointsRedeemed: Int64 = 0, pointsValue: Int64? = nil, valueSpent: Int64 = 0, bonusSpent: Int64 = 0,
                pointsEarned: Int64 = 0, pointsExpireOn: String? = nil, qualifying: Int64 = 0, tier: String? = nil,
                membership: String? = nil, campaign: String? = nil, referrer: MemberID? = nil, referralPoints: Int64 = 0, rulesVersion: Int = 0) {
        self.member = member; self.amount = amount; self.discount = discount; self.coupon = coupon; self.couponDiscount = couponDiscount
        self.pointsRedeemed = pointsRedeemed; self.pointsValue = pointsValue ?? pointsRedeemed; self.valueSpent = valueSpent
        self.bonusSpent = bonusSpent; self.pointsEarned = pointsEarned; self.pointsExpireOn = pointsExpireOn; self.qualifying = qualifying
        self.tier = tier; self.membership = membership; self.campaign = campaign; self.referrer = referrer
        self.referralPoints = referralPoints; self.rulesVersion = rulesVersion
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        member = try c.decode(MemberID.self, forKey: .member)
        amount = try c.decode(Int64.self, forKey: .amount)
        discount = try c.decodeIfPresent(Int64.self, forKey: .discount) ?? 0
        coupon = try c.decodeIfPresent(String.self, forKey: .coupon)
        couponDiscount = try c.decodeIfPresent(Int64.self, forKey: .couponDiscount) ?? 0
        pointsRedeemed = try c.decodeIfPresent(Int64.self, forKey: .pointsRedeemed) ?? 0
        pointsValue = try c.decodeIfPresent(Int64.self, forKey: .pointsValue) ?? pointsRedeemed
        valueSpent = try c.decodeIfPresent(Int64.self, forKey: .valueSpent) ?? 0
        bonusSpent = try c.decodeIfPresent(Int64.self, forKey: .bonusSpent) ?? 0
        pointsEarned = try c.decodeIfPresent(Int64.self, forKey: .pointsEarned) ?? 0
        pointsExpireOn = try c.decodeIfPresent(String.self, forKey: .pointsExpireOn)
        qualifying = try c.decodeIfPresent(Int64.self, forKey: .qualifying) ?? 0
        tier = try c.decodeIfPresent(String.self, forKey: .tier)
        membership = try c.decodeIfPresent(String.self, forKey: .membership)
        campaign = try c.decodeIfPresent(String.self, forKey: .campaign)
        referrer = try c.decodeIfPresent(MemberID.self, forKey: .referrer)
        referralPoints = try c.decodeIfPresent(Int64.self, forKey: .referralPoints) ?? 0
        rulesVersion = try c.decodeIfPresent(Int.self, forKey: .rulesVersion) ?? 0
        leaseValue = try c.decodeIfPresent(Int64.self, forKey: .leaseValue)
        leasePoints = try c.decodeIfPresent(Int64.self, forKey: .leasePoints)
    }

    /// What the member paid outside the card (cash, bank card).
    public var cashDue: Int64 { amount - discount - couponDiscount - pointsValue - valueSpent }
    /// The money actually paid (cash and stored value): what points are earned on.
    public var paid: Int64 { amount - discount - couponDiscount - pointsValue }
}

/// Reverses all or part (`amount` of the original's amount) of a purchase or a recharge (`of`),
/// with the exact numbers, so every replica folds the same change without the original: `value`
/// and `bonus` come back (or, for a recharge, go out), `points_restored` redeemed points return,
/// `points_reversed` earned points leave their lot, `qualifying` leaves the tier counter, the
/// referrer loses `referral_points`, and `coupon` becomes usable again (full refunds only).
public struct Refund: Hashable, Sendable, Codable {
    public var member: MemberID
    public var of: OperationID
    public var amount: Int64
    public var value: Int64
    public var bonus: Int64
    public var pointsRestored: Int64
    public var pointsReversed: Int64
    public var pointsExpireOn: String?
    public var qualifying: Int64
    public var referrer: MemberID?
    public var referralPoints: Int64
    public var coupon: String?
    /// Coupons the refunded recharge brought, taken back with it (a full refund): used up by
    /// this operation, so a coupon already spent shows as used twice.
    public var couponsRevoked: [String]
    public var cashBack: Int64
    /// Under leases: the change the refund makes to its store's lease (value and points given
    /// back join it; value and points taken back are drawn from it).
    public var leaseValue: Int64?
    public var leasePoints: Int64?
    enum CodingKeys: String, CodingKey {
        case member, of, amount, value, bonus, qualifying, referrer, coupon
        case pointsRestored = "points_restored", pointsReversed = "points_reversed", pointsExpireOn = "points_expire_on"
        case referralPoints = "referral_points", cashBack = "cash_back", couponsRevoked = "coupons_revoked"
        case leaseValue = "lease_value", leasePoints = "lease_points"
    }
    public init(member: MemberID, of: OperationID, amount: Int64, value: Int64, bonus: Int64 = 0, pointsRestored: Int64 = 0,
                pointsReversed: Int64 = 0, pointsExpireOn: String? = nil, qualifying: Int64 = 0, referrer: MemberID? = nil,
                referralPoints: Int64 = 0, coupon: String? = nil, couponsRevoked: [String] = [], cashBack: Int64 = 0) {
        self.member = member; self.of = of; self.amount = amount; self.value = value; self.bonus = bonus
        self.pointsRestored = pointsRestored; self.pointsReversed = pointsReversed; self.pointsExpireOn = pointsExpireOn
        self.qualifying = qualifying; self.referrer = referrer; self.referralPoints = referralPoints; self.coupon = coupon
        self.couponsRevoked = couponsRevoked; self.cashBack = cashBack
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        member = try c.decode(MemberID.self, forKey: .member)
        of = try c.decode(OperationID.self, forKey: .of)
        amount = try c.decodeIfPresent(Int64.self, forKey: .amount) ?? 0
        value = try c.decodeIfPresent(Int64.self, forKey: .value) ?? 0
        bonus = try c.decodeIfPresent(Int64.self, forKey: .bonus) ?? 0
        pointsRestored = try c.decodeIfPresent(Int64.self, forKey: .pointsRestored) ?? 0
        pointsReversed = try c.decodeIfPresent(Int64.self, forKey: .pointsReversed) ?? 0
        pointsExpireOn = try c.decodeIfPresent(String.self, forKey: .pointsExpireOn)
        qualifying = try c.decodeIfPresent(Int64.self, forKey: .qualifying) ?? 0
        referrer = try c.decodeIfPresent(MemberID.self, forKey: .referrer)
        referralPoints = try c.decodeIfPresent(Int64.self, forKey: .referralPoints) ?? 0
        coupon = try c.decodeIfPresent(String.self, forKey: .coupon)
        couponsRevoked = try c.decodeIfPresent([String].self, forKey: .couponsRevoked) ?? []
        cashBack = try c.decodeIfPresent(Int64.self, forKey: .cashBack) ?? 0
        leaseValue = try c.decodeIfPresent(Int64.self, forKey: .leaseValue)
        leasePoints = try c.decodeIfPresent(Int64.self, forKey: .leasePoints)
    }
}

/// Points given or taken by hand (head office, a till's goodwill) or for a named activity
/// under the rules. Positive points go to a lot expiring on `points_expire_on` (never when absent).
public struct PointsAdjusted: Hashable, Sendable, Codable {
    public var member: MemberID
    public var points: Int64
    public var reason: String
    public var activity: String?
    public var pointsExpireOn: String?
    public var rulesVersion: Int?
    enum CodingKeys: String, CodingKey {
        case member, points, reason, activity
        case pointsExpireOn = "points_expire_on", rulesVersion = "rules_version"
    }
    public init(member: MemberID, points: Int64, reason: String, activity: String? = nil, pointsExpireOn: String? = nil, rulesVersion: Int? = nil) {
        self.member = member; self.points = points; self.reason = reason; self.activity = activity
        self.pointsExpireOn = pointsExpireOn; self.rulesVersion = rulesVersion
    }
}

/// Made by the hub when two members share a phone: `from` and its cards resolve to `into`.
public struct MemberMerged: Hashable, Sendable, Codable {
    public var from: MemberID
    public var into: MemberID
    public init(from: MemberID, into: MemberID) { self.from = from; self.into = into }
}

/// Made by a node whose spend authorisation went unanswered and which then refused the sale:
/// the hub must never accept `of` afterwards, and if it already had, it reverses it.
public struct OperationVoided: Hashable, Sendable, Codable {
    public var of: OperationID
    public var member: MemberID?
    public var reason: String
    public init(of: OperationID, member: MemberID?, reason: String) {
        self.of = of; self.member = member; self.reason = reason
    }
}

/// Made by the hub when a voided operation had already been applied: the visible correction of
/// one of its ledger entries (`value` and `bonus` money, `points`, the lot and tier counter).
public struct OperationReversed: Hashable, Sendable, Codable {
    public var of: OperationID
    public var member: MemberID
    public var value: Int64
    public var bonus: Int64
    public var points: Int64
    public var pointsExpireOn: String?
    public var qualifying: Int64
    /// A coupon the reversed operation used: free again.
    public var coupon: String?
    /// The reversed operation's change to its store's lease, undone.
    public var leaseStore: StoreID?
    public var leaseValue: Int64?
    public var leasePoints: Int64?
    enum CodingKeys: String, CodingKey {
        case of, member, value, bonus, points, qualifying, coupon
        case pointsExpireOn = "points_expire_on", leaseStore = "lease_store", leaseValue = "lease_value", leasePoints = "lease_points"
    }
    public init(of: OperationID, member: MemberID, value: Int64, bonus: Int64 = 0, points: Int64, pointsExpireOn: String? = nil,
                qualifying: Int64 = 0, coupon: String? = nil) {
        self.of = of; self.member = member; self.value = value; self.bonus = bonus; self.points = points
        self.pointsExpireOn = pointsExpireOn; self.qualifying = qualifying; self.coupon = coupon
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        of = try c.decode(OperationID.self, forKey: .of)
        member = try c.decode(MemberID.self, forKey: .member)
        value = try c.decodeIfPresent(Int64.self, forKey: .value) ?? 0
        bonus = try c.decodeIfPresent(Int64.self, forKey: .bonus) ?? 0
        points = try c.decodeIfPresent(Int64.self, forKey: .points) ?? 0
        pointsExpireOn = try c.decodeIfPresent(String.self, forKey: .pointsExpireOn)
        qualifying = try c.decodeIfPresent(Int64.self, forKey: .qualifying) ?? 0
        coupon = try c.decodeIfPresent(String.self, forKey: .coupon)
        leaseStore = try c.decodeIfPresent(StoreID.self, forKey: .leaseStore)
        leaseValue = try c.decodeIfPresent(Int64.self, forKey: .leaseValue)
        leasePoints = try c.decodeIfPresent(Int64.self, forKey: .leasePoints)
    }
}

/// Made by the hub when head office publishes a new version of the programme.
public struct RulesPublished: Hashable, Sendable, Codable {
    public var version: Int
    public var programme: JSONValue
    public init(version: Int, programme: JSONValue) { self.version = version; self.programme = programme }
}

/// Made by the hub: `points` of the member's points expired as of the end of `as_of` (local
/// day). Negative when points an earlier expiry took are given back, because a spend made
/// before the expiry, offline, reached the hub only afterwards.
public struct PointsExpired: Hashable, Sendable, Codable {
    public var member: MemberID
    public var points: Int64
    public var asOf: String
    enum CodingKeys: String, CodingKey { case member, points; case asOf = "as_of" }
    public init(member: MemberID, points: Int64, asOf: String) { self.member = member; self.points = points; self.asOf = asOf }
}

/// Made by the hub (birthday, wake-up coupons) or by a till (goodwill).
public struct CouponsIssued: Hashable, Sendable, Codable {
    public var coupons: [Coupon]
    public var reason: String
    public init(coupons: [Coupon], reason: String) { self.coupons = coupons; self.reason = reason }
}

/// A paid, time-limited membership: the period and the benefits of its plan as sold, the
/// price paid at the till and the rules version. On the wire its fields sit flat in the body.
public struct MembershipPurchased: Hashable, Sendable, Codable {
    public var period: MembershipPeriod
    public var priceMinor: Int64
    public var rulesVersion: Int
    enum CodingKeys: String, CodingKey {
        case priceMinor = "price_minor", rulesVersion = "rules_version"
    }
    public init(period: MembershipPeriod, priceMinor: Int64, rulesVersion: Int) {
        self.period = period; self.priceMinor = priceMinor; self.rulesVersion = rulesVersion
    }
    public init(from decoder: any Decoder) throws {
        period = try MembershipPeriod(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        priceMinor = try c.decode(Int64.self, forKey: .priceMinor)
        rulesVersion = try c.decode(Int.self, forKey: .rulesVersion)
    }
    public func encode(to encoder: any Encoder) throws {
        try period.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(priceMinor, forKey: .priceMinor)
        try c.encode(rulesVersion, forKey: .rulesVersion)
    }
    public var member: MemberID { period.member }
}

/// A coupon held by a member: worth `value_minor` off or `percent` off a purchase of at least
/// `min_spend_minor`, usable once between `valid_from` and `valid_until` (local dates), in the
/// listed stores (all when absent). Its id is unique in the chain: `template/operation` for a
/// till's coupon, `template/member/key` for the hub's (so a retried hub job issues it once).
public struct Coupon: Hashable, Sendable, Codable {
    public var id: String
    public var member: MemberID
    public var template: String
    public var name: String
    public var valueMinor: Int64?
    public var percent: Int64?
    public var minSpendMinor: Int64
    public var validFrom: String
    public var validUntil: String
    public var stores: [StoreID]?
    enum CodingKeys: String, CodingKey {
        case id, member, template, name, percent, stores
        case valueMinor = "value_minor", minSpendMinor = "min_spend_minor", validFrom = "valid_from", validUntil = "valid_until"
    }
    public init(id: String, member: MemberID, template: String, name: String, valueMinor: Int64?, percent: Int64?,
                minSpendMinor: Int64, validFrom: String, validUntil: String, stores: [StoreID]?) {
        self.id = id; self.member = member; self.template = template; self.name = name; self.valueMinor = valueMinor
        self.percent = percent; self.minSpendMinor = minSpendMinor; self.validFrom = validFrom; self.validUntil = validUntil
        self.stores = stores
    }

    public func isValid(on day: LocalDay) -> Bool {
        guard let from = LocalDay(iso: validFrom), let until = LocalDay(iso: validUntil) else { return false }
        return from <= day && day <= until
    }
}
