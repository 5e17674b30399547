/// The pure, deterministic fold of a set of operations into the state of the chain. Applying
/// operations in any order, with any duplicates, yields equal states: every effect commutes and
/// each operation is applied once. The SQLite stores implement the same effects; tests check
/// that both agree (and the protocol vectors pin the expected results).
public struct ChainState: Equatable, Sendable {
    public static func == (a: ChainState, b: ChainState) -> Bool {
        a.applied == b.applied && a.members == b.members && a.cards == b.cards && a.entries == b.entries
            && a.refunds == b.refunds && a.voided == b.voided && a.unknownKinds == b.unknownKinds
            && a.merges.mapValues(\.into) == b.merges.mapValues(\.into)
            && a.merges.mapValues(\.stamp) == b.merges.mapValues(\.stamp)
            && a.rules == b.rules && a.coupons.mapValues(\.coupon) == b.coupons.mapValues(\.coupon)
            && a.couponUses == b.couponUses && a.couponRestores == b.couponRestores && a.memberships == b.memberships
            && a.leases == b.leases && a.recalls == b.recalls && a.recallAnswers == b.recallAnswers
    }

    /// One operation's change to a store's lease of a member.
    public struct LeaseRow: Hashable, Sendable {
        public var member: MemberID
        public var store: StoreID
        public var change: Rights
        public var expiresMs: Int64?
        public var atMs: Int64
    }
    public struct RecallRow: Hashable, Sendable {
        public var member: MemberID
        public var store: StoreID
        public var rights: Rights
    }

    public struct FieldValue: Hashable, Sendable {
        public var value: String?
        public var stamp: Stamp
    }
    public struct MemberRecord: Hashable, Sendable {
        public var enrolled: Stamp?
        public var referrer: MemberID?
        public var fields: [ProfileField: FieldValue] = [:]
    }
    public struct CardRecord: Hashable, Sendable {
        public var member: MemberID?
        public var issued: Stamp?
        public var blocked = false
    }

    public private(set) var applied: Set<OperationID> = []
    public private(set) var members: [MemberID: MemberRecord] = [:]
    public private(set) var cards: [CardNumber: CardRecord] = [:]
    /// from -> (into, stamp of the merge). The hub merges a member once; should two merges of one
    /// member ever meet, the earlier stamp wins, so the fold stays order-free.
    public private(set) var merges: [MemberID: (into: MemberID, stamp: Stamp)] = [:]
    public private(set) var entries: [OperationID: [LedgerRow]] = [:]
    /// refunded operation -> refund operation -> amount refunded
    public private(set) var refunds: [OperationID: [OperationID: Int64]] = [:]
    public private(set) var voided: Set<OperationID> = []
    /// Operations whose kind this build does not know: kept, passed on, no effect.
    public private(set) var unknownKinds: Set<OperationID> = []
    /// Programme versions as published (JSON documents).
    public private(set) var rules: [Int: JSONValue] = [:]
    public private(set) var coupons: [String: (coupon: Coupon, stamp: Stamp)] = [:]
    public private(set) var couponUses: [String: Set<OperationID>] = [:]
    public private(set) var couponRestores: [String: Set<OperationID>] = [:]
    public private(set) var memberships: [OperationID: MembershipPeriod] = [:]
    public private(set) var leases: [OperationID: LeaseRow] = [:]
    public private(set) var recalls: [OperationID: RecallRow] = [:]
    public private(set) var recallAnswers: Set<OperationID> = []

    public init() {}

    public init(folding ops: some Sequence<Operation>) {
        self.init()
        for op in ops { apply(op) }
    }

    /// Applies one operation. A malformed body of a known kind has no effect (the hub rejects
    /// such operations before they reach any replica).
    public mutating func apply(_ op: Operation) {
        guard applied.insert(op.id).inserted else { return }
        guard let body = try? op.decoded() else { return }
        if case .unknown = body {
            unknownKinds.insert(op.id)
            return
        }
        for effect in body.effects { apply(effect, of: op) }
    }

    mutating func apply(_ effect: Effect, of op: Operation) {
        let stamp = op.stamp
        switch effect {
        case .enrol(let member, let referrer):
            var record = members[member, default: MemberRecord()]
            if record.enrolled.map({ stamp < $0 }) ?? true {
                record.enrolled = stamp
                record.referrer = referrer
            }
            members[member] = record
        case .field(let member, let field, let value):
            var record = members[member, default: MemberRecord()]
            if let current = record.fields[field], current.stamp >= stamp {
                // The later writer already won.
            } else {
                record.fields[field] = FieldValue(value: value, stamp: stamp)
            }
            members[member] = record
        case .issueCard(let card, let member):
            var record = cards[card, default: CardRecord()]
            if record.issued.map({ stamp < $0 }) ?? true {
                record.issued = stamp
                record.member = member
            }
            cards[card] = record
        case .blockCard(let card):
            cards[card, default: CardRecord()].blocked = true
        case .ledger(let entry):
            entries[op.id, default: []].append(LedgerRow(entry, atMs: op.hlc.wallMs))
        case .merge(let from, let into):
            if merges[from].map({ stamp < $0.stamp }) ?? true {
                merges[from] = (into, stamp)
            }
        case .refund(let of, let amount):
            refunds[of, default: [:]][op.id] = amount
        case .void(let of):
            voided.insert(of)
        case .rules(let version, let document):
            rules[version] = document
        case .coupon(let coupon):
            if coupons[coupon.id].map({ stamp < $0.stamp }) ?? true {
                coupons[coupon.id] = (coupon, stamp)
            }
        case .couponUsed(let id):
            couponUses[id, default: []].insert(op.id)
        case .couponRestored(let id, let use):
            couponRestores[id, default: []].insert(use)
        case .membership(let period):
            memberships[op.id] = period
        case .rights(let member, let store, let change, let expiresMs):
            leases[op.id] = LeaseRow(member: member, store: store ?? op.id.origin, change: change, expiresMs: expiresMs, atMs: op.hlc.wallMs)
        case .recall(let member, let store, let rights):
            recalls[op.id] = RecallRow(member: member, store: store, rights: rights)
        case .recallAnswered(let recall):
            recallAnswers.insert(recall)
        }
    }

    /// What each store's lease of the member (resolved through merges) holds.
    public func leases(of member: MemberID) -> [StoreID: Rights] {
        let root = root(of: member)
        var out: [StoreID: Rights] = [:]
        for row in leases.values where self.root(of: row.member) == root {
            out[row.store, default: .zero] = out[row.store, default: .zero] + row.change
        }
        return out
    }

    // MARK: Queries

    /// The member that `member` resolves to after merges.
    public func root(of member: MemberID) -> MemberID {
        var current = member
        for _ in 0..<64 {
            guard let next = merges[current]?.into else { return current }
            current = next
        }
        preconditionFailure("merge chain longer than 64: a cycle")
    }

    /// The newest programme version published (the built-in one before any).
    public var programme: Programme {
        guard let version = rules.keys.max(), let document = rules[version],
              let programme = try? Programme.parse(document) else { return .builtIn }
        return programme
    }

    /// The latest wall-clock time of any operation: the default "now" of a pure fold.
    public var latestMs: Int64 {
        entries.values.flatMap { $0 }.map(\.atMs).max() ?? 0
    }

    public func holdings(of member: MemberID) -> Holdings {
        standing(of: member, asOfMs: latestMs).holdings
    }

    public func standing(of member: MemberID, asOfMs: Int64) -> MemberStanding {
        let root = root(of: member)
        let rows = entries.values.flatMap { $0 }.filter { self.root(of: $0.entry.member) == root }
        let held = coupons.values.map(\.coupon).filter { self.root(of: $0.member) == root }
        return MemberStanding.derive(
            rows: rows, coupons: held, couponUses: couponUses, couponRestores: couponRestores,
            memberships: memberships.values.filter { self.root(of: $0.member) == root },
            programme: programme, asOfMs: asOfMs)
    }

    /// The view of an enrolled member, or nil if no enrolment of it (or its survivor) is known.
    public func view(of member: MemberID, asOfMs: Int64? = nil) -> MemberView? {
        let root = root(of: member)
        guard let record = members[root], record.enrolled != nil else { return nil }
        // The current card is the member's latest issued card that is not blocked.
        let card = cards
            .compactMap { number, card -> (Stamp, CardNumber)? in
                guard card.member == root, !card.blocked, let issued = card.issued else { return nil }
                return (issued, number)
            }
            .max { $0 < $1 }?.1
        return MemberView(
            id: member, card: card,
            name: record.fields[.name]?.value, phone: record.fields[.phone]?.value,
            birthday: record.fields[.birthday]?.value,
            standing: standing(of: root, asOfMs: asOfMs ?? latestMs),
            mergedInto: root == member ? nil : root
        )
    }

    /// Views of every enrolled member, sorted by id: what two replicas compare to converge.
    public func allViews(asOfMs: Int64? = nil) -> [MemberView] {
        let now = asOfMs ?? latestMs
        return members.keys.sorted().compactMap { view(of: $0, asOfMs: now) }
    }
}
