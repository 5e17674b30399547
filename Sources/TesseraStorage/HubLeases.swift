import Foundation
import GRDB
import TesseraCore
import TesseraProtocol

/// The hub's side of escrow leases (spec §13): what it holds of each member's rights, what it
/// lends, recalls and lets a store borrow online. Everything runs inside the hub's serial write,
/// so two stores can never be lent the same rights.
extension HubStore {
    /// What the hub itself holds of the member's rights: what the member holds (value, and
    /// points not yet expired) less what every store's lease holds. Never below zero for the
    /// purpose of lending (an expiry can leave leased points above the points held until their
    /// stores give them back; the hub then lends none).
    static func hubHeld(_ standing: MemberStanding, leases: [StoreID: Replica.LeaseHolding]) -> Rights {
        let lent = leases.values.map(\.rights).reduce(Rights.zero, +)
        return Rights(value: standing.balance - lent.value, points: min(standing.points, standing.pointsAvailable) - lent.points)
    }

    /// Who holds the member's rights (`GET /v1/members/{id}/leases`).
    public func memberLeases(_ member: MemberID) throws -> HubAPI.MemberLeases {
        try refresh()
        return try pool.read { db in
            let root = try Replica.root(of: member, db)
            guard try Replica.isEnrolled(root, db) else { throw DomainError(.notFound, "no member \(member)") }
            let programme = try Replica.programme(db)
            let lifetime = programme.leases?.lifetimeMs ?? Programme.Leases().lifetimeMs
            let standing = try Replica.standing(of: root, programme: programme, asOfMs: physicalMs(), db)
            let leases = try Replica.leases(of: root, lifetimeMs: lifetime, db)
            let held = Self.hubHeld(standing, leases: leases)
            var recalled: [StoreID: Rights] = [:]
            for r in try Replica.openRecalls(to: nil, members: try Replica.group(of: root, db), db) {
                recalled[r.store, default: .zero] = recalled[r.store, default: .zero] + r.rights
            }
            let stores = leases.sorted { $0.key < $1.key }.filter { !$0.value.rights.isZero }.map { store, holding in
                let asked = recalled[store] ?? .zero
                return HubAPI.MemberLeases.Lease(store: store, value: holding.rights.value, points: holding.rights.points,
                                                 endsAt: isoTime(ms: holding.endsMs), recalledValue: min(asked.value, holding.rights.value),
                                                 recalledPoints: min(asked.points, holding.rights.points))
            }
            return HubAPI.MemberLeases(member: root, leases: programme.leases != nil, balance: standing.balance,
                                       pointsAvailable: standing.pointsAvailable, hubValue: held.value, hubPoints: held.points, stores: stores)
        }
    }

    /// Online, under leases: may the hub let `store` take `debit`, of which `drawn` comes out of
    /// the store's own lease? The rest is borrowed from what the hub holds, or refused with
    /// `balance_leased`, and the stores holding the rest are asked to give it back.
    func leaseRefusal(_ body: OperationBody, debit: Debit, member root: MemberID, standing: MemberStanding, from store: StoreID,
                      policy: Programme.Leases, _ db: Database, _ w: any LedgerWrites) throws -> DomainError? {
        let drawn = body.leaseDrawn ?? .zero
        let leases = try Replica.leases(of: root, lifetimeMs: policy.lifetimeMs, db)
        let own = leases[store]?.rights ?? .zero
        if drawn.value > own.value || drawn.points > own.points {
            return DomainError(.invalidRequest, "the spend draws \(drawn.value)/\(drawn.points) from a lease of \(own.value)/\(own.points)")
        }
        let borrow = Rights(value: max(0, debit.valueMinor - drawn.value), points: max(0, debit.points - drawn.points))
        let free = Self.hubHeld(standing, leases: leases)
        guard borrow.value > free.value || borrow.points > free.points else { return nil }
        // The member spends here now: the other stores are asked to give their leases back.
        let recalled = Set(try Replica.openRecalls(to: nil, members: try Replica.group(of: root, db), db).map(\.store))
        var elsewhere: [String] = []
        for (other, holding) in leases.sorted(by: { $0.key < $1.key }) where other != store {
            let back = Rights(value: max(0, holding.rights.value), points: max(0, holding.rights.points))
            guard !back.isZero else { continue }
            elsewhere.append("\(other) \(back.value)/\(back.points)")
            if !recalled.contains(other) {
                try appendHubOperation(.leaseRecalled(LeaseRecalled(member: root, store: other, value: back.value, points: back.points)), db, w)
            }
        }
        return DomainError(.balanceLeased,
            "the hub can lend \(max(0, free.value))/\(max(0, free.points)) of the \(borrow.value)/\(borrow.points) this spend needs beyond this store's lease; the rest is lent to other stores for their offline sales (\(elsewhere.joined(separator: ", "))) and has been asked back: try again once they have synced")
    }

    /// Under leases, after a store's sale, recharge or enrolment of a member: lend that store its
    /// share of what the hub holds (or renew its lease when half its life has passed), and recall
    /// the leases of stores the member no longer uses. Only the store in contact is lent to: a
    /// grant it could not receive would lock the rights away until it came back.
    func rebalanceLeases(of member: MemberID, at store: StoreID, programme: Programme, policy: Programme.Leases,
                         _ db: Database, _ w: any LedgerWrites) throws {
        guard store != .hub else { return }
        let root = try Replica.root(of: member, db)
        guard try Replica.isEnrolled(root, db) else { return }
        let now = physicalMs()
        let standing = try Replica.standing(of: root, programme: programme, asOfMs: now, db)
        let leases = try Replica.leases(of: root, lifetimeMs: policy.lifetimeMs, db)
        let members = try Replica.group(of: root, db)
        let group = try JSONText.encode(members.map(\.rawValue))
        // The member's last visits, most recent first (its joining store among them).
        var visits: [(store: StoreID, count: Int)] = []
        for origin in try String.fetchAll(db.cachedStatement(sql: """
            SELECT origin FROM ops WHERE member_id IN (SELECT value FROM json_each(?)) AND origin <> 'hub'
              AND kind IN ('purchase', 'value.recharged', 'member.enrolled') ORDER BY version DESC LIMIT 20
            """), arguments: [group]) {
            guard let id = StoreID(rawValue: origin) else { continue }
            if let i = visits.firstIndex(where: { $0.store == id }) { visits[i].count += 1 } else { visits.append((id, 1)) }
        }
        let recalled = Set(try Replica.openRecalls(to: nil, members: members, db).map(\.store))
        var room: [StoreID: Int64] = [:]
        if let cap = policy.storeCapMinor {
            let lent = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(SUM(value), 0) FROM leases WHERE store = ? AND \(Replica.settled)"),
                                          arguments: [store.rawValue]) ?? 0
            room[store] = cap - lent
        }
        let endingSoon = Set(leases.filter { $0.value.endsMs - now < policy.lifetimeMs / 2 }.map(\.key))
        let total = Rights(value: standing.balance, points: min(standing.points, standing.pointsAvailable))
        let actions = LeasePlan.actions(policy: policy, total: total, held: leases.mapValues(\.rights), visits: visits,
                                        online: [store], storeRoom: room, endingSoon: endingSoon, recalled: recalled)
        for action in actions {
            switch action {
            case .grant(let to, let rights):
                try appendHubOperation(.leaseGranted(LeaseGranted(member: root, store: to, value: rights.value, points: rights.points,
                                                                  expiresMs: now + policy.lifetimeMs)), db, w)
            case .recall(let from, let rights):
                try appendHubOperation(.leaseRecalled(LeaseRecalled(member: root, store: from, value: rights.value, points: rights.points)), db, w)
            }
        }
    }

    /// After a push or an authorisation: rebalances the leases of each member a sale, recharge
    /// or enrolment just accepted from `store` was about (once per member).
    func rebalanceLeases(after ops: [TesseraCore.Operation], _ results: [PushResult], from store: StoreID, _ db: Database, _ w: any LedgerWrites) throws {
        let programme = try Replica.programme(db)
        guard let policy = programme.leases else { return }
        var done = Set<MemberID>()
        for (op, result) in zip(ops, results) where result.status == .accepted
            && ["purchase", "value.recharged", "member.enrolled"].contains(op.kind) {
            guard let member = try? op.decoded().member else { continue }
            let root = try Replica.root(of: member, db)
            if done.insert(root).inserted { try rebalanceLeases(of: root, at: store, programme: programme, policy: policy, db, w) }
        }
    }

    /// Gives a revoked store's leases back to the hub, with returns of the hub's on its behalf:
    /// it can push nothing more, so what it holds would otherwise be locked away for good. (If
    /// its token is rotated later, sales it made against these leases while cut off may arrive
    /// and overdraw a member; the hub reports that like any overdraft.)
    func reclaimLeases(of store: StoreID, _ db: Database, _ w: any LedgerWrites) throws {
        for (member, holding) in try Replica.storeLeases(store, lifetimeMs: 0, db).sorted(by: { $0.key < $1.key }) {
            let back = Rights(value: max(0, holding.rights.value), points: max(0, holding.rights.points))
            guard !back.isZero else { continue }
            try appendHubOperation(.leaseReturned(LeaseReturned(member: member, store: store, value: back.value, points: back.points,
                                                                reason: "store_revoked")), db, w)
        }
    }

    /// Points that expired while leased stay with their store until it gives them back: the
    /// hub records an expiry only of points no lease holds, so the leases never hold more
    /// points than the member has. The rest expires once the leases come back.
    static func expiryUnderLeases(_ due: Int64, standing: MemberStanding, member: MemberID, policy: Programme.Leases?, _ db: Database) throws -> Int64 {
        guard let policy, due > 0 else { return due }
        let lent = try Replica.leases(of: member, lifetimeMs: policy.lifetimeMs, db).values.map(\.rights.points).reduce(0, +)
        return min(due, max(0, standing.points - max(0, lent)))
    }
}
