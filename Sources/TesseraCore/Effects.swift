/// What an operation does to the replicated state, as a list of effects that commute: applying
/// the effects of a set of operations in any order, any number of times, gives the same state.
/// The pure fold (`ChainState`) and the SQLite stores both apply exactly these effects.
public enum ProfileField: String, Sendable, CaseIterable, Hashable {
    case name, phone, birthday
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
    /// A ledger entry: signed changes of stored value (minor units) and points. Sums commute.
    case ledger(MemberID, valueMinor: Int64, points: Int64)
    case merge(from: MemberID, into: MemberID)
    case refund(of: OperationID)
    case void(of: OperationID)
}

extension OperationBody {
    public var effects: [Effect] {
        switch self {
        case .memberEnrolled(let b):
            return [
                .enrol(b.member, referrer: b.referrer),
                .field(b.member, .name, b.name),
                .field(b.member, .phone, b.phone),
                .field(b.member, .birthday, b.birthday),
                .issueCard(b.card, b.member),
            ]
        case .memberUpdated(let b):
            var out: [Effect] = []
            if let name = b.name { out.append(.field(b.member, .name, name)) }
            if let phone = b.phone { out.append(.field(b.member, .phone, phone)) }
            if let birthday = b.birthday { out.append(.field(b.member, .birthday, birthday)) }
            return out
        case .cardIssued(let b):
            var out: [Effect] = [.issueCard(b.card, b.member)]
            if let old = b.replaces { out.append(.blockCard(old)) }
            return out
        case .cardBlocked(let b):
            return [.blockCard(b.card)]
        case .valueRecharged(let b):
            return [.ledger(b.member, valueMinor: b.amount, points: 0)]
        case .purchase(let p):
            return [.ledger(p.member, valueMinor: -p.valueSpent, points: p.pointsEarned - p.pointsRedeemed)]
        case .refund(let r):
            return [.ledger(r.member, valueMinor: r.value, points: r.points), .refund(of: r.of)]
        case .pointsAdjusted(let a):
            return [.ledger(a.member, valueMinor: 0, points: a.points)]
        case .memberMerged(let m):
            return [.merge(from: m.from, into: m.into)]
        case .operationVoided(let v):
            return [.void(of: v.of)]
        case .operationReversed(let r):
            return [.ledger(r.member, valueMinor: r.value, points: r.points)]
        case .unknown:
            return []
        }
    }
}
