/// Escrow leases (the escrow method, O'Neil 1986; bounded counters, Balegas et al. 2015): a
/// member's stored value and points are split into rights. The hub holds what no store holds
/// and lends stores part of it; a store spends offline only what its lease holds. Rights move
/// only by operations in the log, and the hub counts rights a store gave back only once the
/// store's own operation saying so has arrived, so whatever the partitions, the rights never
/// add up to more than the member holds and no interleaving can overdraw.
///
/// Every operation that changes a store's lease says by how much (`lease_value` and
/// `lease_points` on the store's own purchases, refunds and recharges; `lease.granted` and
/// `lease.returned`), so the fold adds recorded numbers and never decides anything.

/// Value and points, as rights (minor units and points).
public struct Rights: Hashable, Sendable, Codable {
    public var value: Int64
    public var points: Int64
    public init(value: Int64 = 0, points: Int64 = 0) { self.value = value; self.points = points }
    public static let zero = Rights()
    public var isZero: Bool { value == 0 && points == 0 }
    public static func + (a: Rights, b: Rights) -> Rights { Rights(value: a.value + b.value, points: a.points + b.points) }
    public static func - (a: Rights, b: Rights) -> Rights { Rights(value: a.value - b.value, points: a.points - b.points) }
}

extension Programme {
    /// Head office's lease policy. Present: stores spend offline only what their leases hold
    /// (no overdraft is possible). Absent: the v1 policy (offline spends up to a daily limit per
    /// member and store, overdrafts reported afterwards).
    public struct Leases: Codable, Hashable, Sendable {
        /// The share of a member's balance and points the hub lends to stores in all.
        public var sharePercent: Int64
        /// Leases go to the member's stores, up to this many: those where the member last
        /// bought or recharged, weighted by how often, the joining store among them.
        public var stores: Int
        /// The most one member's leases hold in all: value (minor units) and points.
        public var memberCapMinor: Int64
        public var memberCapPoints: Int64
        /// The most one store holds in leases, all members together (its exposure); none when absent.
        public var storeCapMinor: Int64?
        /// A lease ends this long after it was granted or renewed; its store then gives it back.
        public var hours: Int64

        enum CodingKeys: String, CodingKey, CaseIterable {
            case stores, hours
            case sharePercent = "share_percent", memberCapMinor = "member_cap_minor", memberCapPoints = "member_cap_points"
            case storeCapMinor = "store_cap_minor"
        }
        public init(sharePercent: Int64 = 50, stores: Int = 2, memberCapMinor: Int64 = 50_000, memberCapPoints: Int64 = 50_000,
                    storeCapMinor: Int64? = nil, hours: Int64 = 720) {
            self.sharePercent = sharePercent; self.stores = stores; self.memberCapMinor = memberCapMinor
            self.memberCapPoints = memberCapPoints; self.storeCapMinor = storeCapMinor; self.hours = hours
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Leases()
            sharePercent = try c.decodeIfPresent(Int64.self, forKey: .sharePercent) ?? defaults.sharePercent
            stores = try c.decodeIfPresent(Int.self, forKey: .stores) ?? defaults.stores
            memberCapMinor = try c.decodeIfPresent(Int64.self, forKey: .memberCapMinor) ?? defaults.memberCapMinor
            memberCapPoints = try c.decodeIfPresent(Int64.self, forKey: .memberCapPoints) ?? defaults.memberCapPoints
            storeCapMinor = try c.decodeIfPresent(Int64.self, forKey: .storeCapMinor)
            hours = try c.decodeIfPresent(Int64.self, forKey: .hours) ?? defaults.hours
        }

        public var lifetimeMs: Int64 { hours * 3_600_000 }

        func validate() throws(DomainError) {
            func check(_ ok: Bool, _ path: String, _ message: String) throws(DomainError) {
                if !ok { throw DomainError(.invalidRules, "leases.\(path): \(message)") }
            }
            try check((0...100).contains(sharePercent), "share_percent", "must be a percent between 0 and 100")
            try check((1...10).contains(stores), "stores", "must be 1 to 10")
            try check((0...Limits.amountMaxMinor).contains(memberCapMinor), "member_cap_minor", "must be 0 to \(Limits.amountMaxMinor)")
            try check((0...Limits.pointsMax).contains(memberCapPoints), "member_cap_points", "must be 0 to \(Limits.pointsMax)")
            try check(storeCapMinor.map { (0...Limits.amountMaxMinor).contains($0) } ?? true, "store_cap_minor", "must be 0 to \(Limits.amountMaxMinor)")
            try check((1...8_760).contains(hours), "hours", "must be 1 to 8760 (a year)")
        }
    }
}

// MARK: - Operation bodies

/// Made by the hub: `value` and `points` of the member's rights lent to `store` (either may be
/// 0, which renews the lease), spendable there offline until `expires_ms` (Unix ms).
public struct LeaseGranted: Hashable, Sendable, Codable {
    public var member: MemberID
    public var store: StoreID
    public var value: Int64
    public var points: Int64
    public var expiresMs: Int64
    enum CodingKeys: String, CodingKey { case member, store, value, points; case expiresMs = "expires_ms" }
    public init(member: MemberID, store: StoreID, value: Int64, points: Int64, expiresMs: Int64) {
        self.member = member; self.store = store; self.value = value; self.points = points; self.expiresMs = expiresMs
    }
}

/// Made by a store: it gives back `value` and `points` of its lease of the member, because the
/// lease ended, the hub recalled it (`recall`), or the chain stopped using leases. Its arrival at
/// the hub is the store's acknowledgement: only then may the hub lend the rights again.
public struct LeaseReturned: Hashable, Sendable, Codable {
    public var member: MemberID
    public var store: StoreID
    public var value: Int64
    public var points: Int64
    public var reason: String
    public var recall: OperationID?
    public init(member: MemberID, store: StoreID, value: Int64, points: Int64, reason: String, recall: OperationID? = nil) {
        self.member = member; self.store = store; self.value = value; self.points = points; self.reason = reason; self.recall = recall
    }
}

/// Made by the hub: it asks `store` to give back up to `value` and `points` of its lease of the
/// member (the member shops elsewhere now). The store answers with a `lease.returned` naming
/// this operation; until then the rights stay the store's.
public struct LeaseRecalled: Hashable, Sendable, Codable {
    public var member: MemberID
    public var store: StoreID
    public var value: Int64
    public var points: Int64
    public init(member: MemberID, store: StoreID, value: Int64, points: Int64) {
        self.member = member; self.store = store; self.value = value; self.points = points
    }
}

// MARK: - Decisions (pure)

public enum LeasePlan {
    /// One change the hub makes to a member's leases.
    public enum Action: Hashable, Sendable {
        /// Lend `rights` (possibly zero: a renewal) to the store until the lease's new end.
        case grant(StoreID, Rights)
        /// Ask the store to give back `rights`.
        case recall(StoreID, Rights)
    }

    /// What a member's leases should be, given what the member holds (`total`: value and
    /// unexpired points), what each store holds now, how often the member used each store
    /// lately (`visits`, most recent first; the joining store counted once more), how much each
    /// store may still take under the store cap, which leases end within half their life, and
    /// which stores were asked back already. `online` are the stores that may be lent to now
    /// (a grant to a store that cannot receive it would only lock the rights away).
    public static func actions(policy: Programme.Leases, total: Rights, held: [StoreID: Rights],
                               visits: [(store: StoreID, count: Int)], online: Set<StoreID>,
                               storeRoom: [StoreID: Int64], endingSoon: Set<StoreID>, recalled: Set<StoreID>) -> [Action] {
        let lent = held.values.reduce(Rights.zero, +)
        // What the hub holds: never below zero (an expiry can leave leased points above the points
        // held until their stores give them back).
        var free = Rights(value: max(0, total.value - lent.value), points: max(0, total.points - lent.points))
        let targets = self.targets(policy: policy, total: total, visits: visits)
        var out: [Action] = []
        for (store, target) in targets.sorted(by: { $0.key < $1.key }) where online.contains(store) {
            let now = held[store] ?? .zero
            var add = Rights(value: min(max(0, target.value - now.value), free.value),
                             points: min(max(0, target.points - now.points), free.points))
            if let room = storeRoom[store] { add.value = min(add.value, max(0, room)) }
            // Topped up only below 90 % of the target, so that not every sale brings a grant;
            // renewed when half the lease's life has passed.
            let low = now.value * 10 < target.value * 9 || now.points * 10 < target.points * 9
            if (low && !add.isZero) || (endingSoon.contains(store) && !(now + add).isZero) {
                out.append(.grant(store, add))
                free = free - add
            }
        }
        // Stores the member left are asked for all of their lease; a store holding half again
        // its target (a large recharge there, say) for what is above it, so that the member can
        // spend it elsewhere too.
        for (store, now) in held.sorted(by: { $0.key < $1.key }) where !recalled.contains(store) {
            let keep = targets[store] ?? .zero
            let over = { (held: Int64, target: Int64) -> Int64 in
                targets[store] == nil || held > target + target / 2 ? max(0, held - target) : 0
            }
            let back = Rights(value: over(now.value, keep.value), points: over(now.points, keep.points))
            if !back.isZero { out.append(.recall(store, back)) }
        }
        return out
    }

    /// The lease each of the member's stores should hold: the lent share of what the member
    /// holds, capped per member, split by visits (integer shares, the remainder to the most
    /// visited store).
    public static func targets(policy: Programme.Leases, total: Rights, visits: [(store: StoreID, count: Int)]) -> [StoreID: Rights] {
        let chosen = Array(visits.filter { $0.count > 0 }.prefix(policy.stores))
        guard !chosen.isEmpty else { return [:] }
        let lend = Rights(value: min(mulDiv(max(0, total.value), policy.sharePercent, 100), policy.memberCapMinor),
                          points: min(mulDiv(max(0, total.points), policy.sharePercent, 100), policy.memberCapPoints))
        let weight = Int64(chosen.reduce(0) { $0 + $1.count })
        var out: [StoreID: Rights] = [:]
        var given = Rights.zero
        for (store, count) in chosen {
            let share = Rights(value: mulDiv(lend.value, Int64(count), weight), points: mulDiv(lend.points, Int64(count), weight))
            out[store] = share
            given = given + share
        }
        if let first = chosen.max(by: { ($0.count, $1.store) < ($1.count, $0.store) })?.store {
            out[first] = (out[first] ?? .zero) + (lend - given)
        }
        return out
    }

    /// How a store's lease covers a debit of `value` and `points`: the part drawn from the lease
    /// (the rest must come from the hub, online).
    public static func drawn(value: Int64, points: Int64, lease: Rights) -> Rights {
        Rights(value: min(max(0, value), max(0, lease.value)), points: min(max(0, points), max(0, lease.points)))
    }
}

extension LeasePlan {
    /// Why a spend may not be made offline under leases: it takes more than it drew from the
    /// store's lease (nil when the lease covers all of it).
    public static func offlineRefusal(_ debit: Debit, drawn: Rights) -> DomainError? {
        guard drawn.value < debit.valueMinor || drawn.points < debit.points else { return nil }
        return DomainError(.offlineLeaseExceeded,
            "the hub is unreachable and this store's lease of the member covers \(drawn.value) of \(debit.valueMinor) in value and \(drawn.points) of \(debit.points) points; the rest is available online")
    }

    /// Why the store may not allow the spend on its own (at once, or with the hub unreachable):
    /// the member, as the store knows it, cannot bear it, or the store's lease does not cover it.
    public static func refusal(_ debit: Debit, drawn: Rights, known: MemberStanding) -> DomainError? {
        known.refusal(of: debit) ?? offlineRefusal(debit, drawn: drawn)
    }
}

extension OperationBody {
    /// What a spend priced under leases draws from its store's lease; nil for a body priced
    /// without leases (the v1 offline limit then decides offline).
    public var leaseDrawn: Rights? {
        switch self {
        case .purchase(let p):
            // `lease_points` nets the points earned (which join the lease) and those drawn.
            guard p.leaseValue != nil || p.leasePoints != nil else { return nil }
            return Rights(value: -(p.leaseValue ?? 0), points: p.leasePoints.map { p.pointsEarned - $0 } ?? 0)
        case .refund(let r):
            guard let value = r.leaseValue else { return nil }
            return Rights(value: max(0, -value), points: max(0, -(r.leasePoints ?? 0)))
        default:
            return nil
        }
    }

    /// The change the operation makes to its own store's lease (zero when none).
    public var ownLeaseChange: Rights {
        switch self {
        case .purchase(let p): Rights(value: p.leaseValue ?? 0, points: p.leasePoints ?? 0)
        case .refund(let r): Rights(value: r.leaseValue ?? 0, points: r.leasePoints ?? 0)
        case .valueRecharged(let v): Rights(value: v.leaseValue ?? 0)
        default: .zero
        }
    }
}
