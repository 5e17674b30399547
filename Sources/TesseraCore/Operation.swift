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

    enum CodingKeys: String, CodingKey {
        case id, hlc, kind, body
        case kindVersion = "kind_version"
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
        case .unknown: nil
        }
    }

    /// What the operation takes from a member: it needs the hub's authorisation when online and
    /// the offline policy's consent otherwise.
    public var debit: Debit {
        switch self {
        case .purchase(let p): Debit(valueMinor: p.valueSpent, points: p.pointsRedeemed)
        case .refund(let r): Debit(valueMinor: max(0, -r.value), points: 0)
        default: Debit(valueMinor: 0, points: 0)
        }
    }

    var json: JSONValue {
        func encode<T: Encodable>(_ value: T) -> JSONValue {
            // Encoding our own plain structs into JSON cannot fail.
            guard let data = try? JSONEncoder().encode(value),
                  let json = try? JSONDecoder().decode(JSONValue.self, from: data)
            else { preconditionFailure("operation body failed to encode") }
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
        case .unknown: preconditionFailure("an unknown body is passed on as it came")
        }
    }

    static func decode(kind: OperationKind, body: JSONValue) throws -> OperationBody {
        let data = try JSONEncoder().encode(body)
        let d = JSONDecoder()
        switch kind {
        case .memberEnrolled: return .memberEnrolled(try d.decode(MemberEnrolled.self, from: data))
        case .memberUpdated: return .memberUpdated(try d.decode(MemberUpdated.self, from: data))
        case .cardIssued: return .cardIssued(try d.decode(CardIssued.self, from: data))
        case .cardBlocked: return .cardBlocked(try d.decode(CardBlocked.self, from: data))
        case .valueRecharged: return .valueRecharged(try d.decode(ValueRecharged.self, from: data))
        case .purchase: return .purchase(try d.decode(Purchase.self, from: data))
        case .refund: return .refund(try d.decode(Refund.self, from: data))
        case .pointsAdjusted: return .pointsAdjusted(try d.decode(PointsAdjusted.self, from: data))
        case .memberMerged: return .memberMerged(try d.decode(MemberMerged.self, from: data))
        case .operationVoided: return .operationVoided(try d.decode(OperationVoided.self, from: data))
        case .operationReversed: return .operationReversed(try d.decode(OperationReversed.self, from: data))
        }
    }
}

/// What an operation takes from a member's stored value and points.
public struct Debit: Hashable, Sendable {
    public var valueMinor: Int64
    public var points: Int64
    public init(valueMinor: Int64, points: Int64) {
        self.valueMinor = valueMinor
        self.points = points
    }
    public var isZero: Bool { valueMinor == 0 && points == 0 }
}

// MARK: - Bodies (JSON keys in snake_case; money in minor units, points as integers)

public struct MemberEnrolled: Hashable, Sendable, Codable {
    public var member: MemberID
    public var card: CardNumber
    public var name: String
    public var phone: String
    public var birthday: String?
    public var referrer: MemberID?
    public init(member: MemberID, card: CardNumber, name: String, phone: String, birthday: String? = nil, referrer: MemberID? = nil) {
        self.member = member; self.card = card; self.name = name; self.phone = phone
        self.birthday = birthday; self.referrer = referrer
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

public struct ValueRecharged: Hashable, Sendable, Codable {
    public var member: MemberID
    public var amount: Int64
    public init(member: MemberID, amount: Int64) { self.member = member; self.amount = amount }
}

/// A sale at a till. `valueSpent` is paid from the stored-value balance, `pointsRedeemed` are
/// taken as payment, `pointsEarned` are awarded under the rules the till applied.
public struct Purchase: Hashable, Sendable, Codable {
    public var member: MemberID
    public var amount: Int64
    public var valueSpent: Int64
    public var pointsRedeemed: Int64
    public var pointsEarned: Int64
    enum CodingKeys: String, CodingKey {
        case member, amount
        case valueSpent = "value_spent"
        case pointsRedeemed = "points_redeemed"
        case pointsEarned = "points_earned"
    }
    public init(member: MemberID, amount: Int64, valueSpent: Int64, pointsRedeemed: Int64, pointsEarned: Int64) {
        self.member = member; self.amount = amount; self.valueSpent = valueSpent
        self.pointsRedeemed = pointsRedeemed; self.pointsEarned = pointsEarned
    }
}

/// Reverses a purchase or a recharge (`of`). `value` and `points` are the signed changes the
/// refund makes, written out so that every replica folds the same numbers without needing the
/// original operation.
public struct Refund: Hashable, Sendable, Codable {
    public var member: MemberID
    public var of: OperationID
    public var value: Int64
    public var points: Int64
    public init(member: MemberID, of: OperationID, value: Int64, points: Int64) {
        self.member = member; self.of = of; self.value = value; self.points = points
    }
}

public struct PointsAdjusted: Hashable, Sendable, Codable {
    public var member: MemberID
    public var points: Int64
    public var reason: String
    public init(member: MemberID, points: Int64, reason: String) {
        self.member = member; self.points = points; self.reason = reason
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

/// Made by the hub when a voided operation had already been applied: the visible correction.
public struct OperationReversed: Hashable, Sendable, Codable {
    public var of: OperationID
    public var member: MemberID
    public var value: Int64
    public var points: Int64
    public init(of: OperationID, member: MemberID, value: Int64, points: Int64) {
        self.of = of; self.member = member; self.value = value; self.points = points
    }
}
