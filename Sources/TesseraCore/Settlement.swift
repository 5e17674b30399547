/// Inter-store settlement: which store's loaded value each spend used.
///
/// Stored value is a liability of the store that took the money (the recharge); when a member
/// spends it in another store, that store delivered the goods and the issuing store owes it the
/// value. Principal and bonus are settled apart (bonus is the chain's gift, usually accounted
/// apart), each as its own currency.
///
/// The rule, per member (a merged member's group counts as one) and per currency, in the order
/// the hub's log received the movements (its versions):
/// - value coming in (a recharge, a refund of a sale, a reversal) is a **lot** of the store that
///   recorded it; it first covers what the member owes (a spend made offline beyond the balance),
///   and the rest waits in line;
/// - value going out (a sale paid from the balance, a refund of a recharge) takes from the oldest
///   lots first (a refund of a recharge from the lot it refunds first); what no lot covers is owed
///   by the member until value comes in;
/// - value coming back for an operation (a refund of a sale, the reversal of a voided spend)
///   undoes that operation's flows, newest first: negative flows now, the value back to the
///   stores whose lots paid; only what exceeds them is a lot of the refunding store;
/// - a merge of duplicate members joins their queues at the merge's version (the absorbed
///   member's lots and debts join the survivor's, and debts are covered by lots there and then).
///
/// Allocating in log order, not till time, is what lets a period be closed: an operation that
/// arrives late (made offline) has a later version, so it never changes what an earlier,
/// closed period allocated. The allocation is a pure fold of the movements: the same log gives
/// the same flows on any machine.
public enum Settlement {
    public enum Currency: String, Sendable, Hashable, Codable, CaseIterable { case principal, bonus }

    /// One ledger entry's value and bonus, as the hub's log has it.
    public struct Movement: Sendable, Hashable {
        public var version: Int64
        public var op: String
        public var store: String
        public var member: MemberID
        public var principal: Int64
        public var bonus: Int64
        /// The operation this one refunds or reverses: going out (a refunded recharge), its lot
        /// is taken first; coming back (a refunded sale, a reversal), its flows are undone.
        public var of: String?
        public init(version: Int64, op: String, store: String, member: MemberID, principal: Int64, bonus: Int64, of: String? = nil) {
            self.version = version; self.op = op; self.store = store; self.member = member
            self.principal = principal; self.bonus = bonus; self.of = of
        }
    }

    /// Duplicate members merged by the hub (`from` into `into`) at a log version.
    public struct Merge: Sendable, Hashable {
        public var version: Int64
        public var op: String
        public var from: MemberID
        public var into: MemberID
        public init(version: Int64, op: String, from: MemberID, into: MemberID) {
            self.version = version; self.op = op; self.from = from; self.into = into
        }
    }

    /// Value issued by `issuer` that went out at `spender`. `version` is the log version at
    /// which it was settled (the later of the spend and the load that covered it).
    public struct Flow: Sendable, Hashable {
        public var version: Int64
        public var currency: Currency
        public var issuer: String
        public var spender: String
        public var amount: Int64
        public var load: String
        public var spend: String
        public var member: MemberID
    }

    /// Value still held by members, by issuing store (a liability of that store).
    public struct Lot: Sendable, Hashable {
        public var currency: Currency
        public var store: String
        public var op: String
        public var member: MemberID
        public var amount: Int64
    }

    /// Value spent that no lot covered yet (an offline overdraft), by spending store.
    public struct Owed: Sendable, Hashable {
        public var currency: Currency
        public var store: String
        public var op: String
        public var member: MemberID
        public var amount: Int64
    }

    public struct Allocation: Sendable {
        public var flows: [Flow] = []
        public var lots: [Lot] = []
        public var owed: [Owed] = []
    }

    /// Allocates `movements` and `merges` (any order: they are taken in version order, a merge
    /// before the movements of its version, then as given).
    public static func allocate(_ movements: [Movement], merges: [Merge] = []) -> Allocation {
        enum Event { case move(Movement), merge(Merge) }
        var result = Allocation()
        var lots: [Key: [Lot]] = [:]
        var owed: [Key: [Owed]] = [:]
        var alias: [MemberID: MemberID] = [:]
        /// How much of each flow (by index) later refunds and reversals have undone.
        var undone: [Int: Int64] = [:]
        func root(_ m: MemberID) -> MemberID {
            var current = m
            var seen = 0
            while let next = alias[current], next != current, seen < 1_000 { current = next; seen += 1 }
            return current
        }
        let events: [(Int64, Int, Event)] = merges.enumerated().map { ($0.element.version, $0.offset, .merge($0.element)) }
            + movements.enumerated().map { ($0.element.version, merges.count + $0.offset, .move($0.element)) }

        /// Value coming in at `version` for `key`: covers debts first, oldest first; the rest is a lot.
        func credit(_ key: Key, _ amount: Int64, store: String, op: String, version: Int64) {
            var left = amount
            while left > 0, var debt = owed[key]?.first {
                let take = min(left, debt.amount)
                result.flows.append(Flow(version: version, currency: key.currency, issuer: store, spender: debt.store,
                                         amount: take, load: op, spend: debt.op, member: key.member))
                left -= take
                debt.amount -= take
                if debt.amount == 0 { owed[key]?.removeFirst() } else { owed[key]?[0] = debt }
            }
            if left > 0 { lots[key, default: []].append(Lot(currency: key.currency, store: store, op: op, member: key.member, amount: left)) }
        }

        for (_, _, event) in events.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            switch event {
            case .merge(let m):
                let from = root(m.from), into = root(m.into)
                guard from != into else { continue }
                alias[from] = into
                for currency in Currency.allCases {
                    let gone = Key(member: from, currency: currency), kept = Key(member: into, currency: currency)
                    let movedLots = lots.removeValue(forKey: gone) ?? [], movedDebts = owed.removeValue(forKey: gone) ?? []
                    owed[kept, default: []] += movedDebts.map { var d = $0; d.member = into; return d }
                    // The absorbed member's lots join the line, covering the group's debts first.
                    for lot in movedLots { credit(kept, lot.amount, store: lot.store, op: lot.op, version: m.version) }
                    // And the survivor's own lots cover the absorbed member's debts.
                    var queue = lots.removeValue(forKey: kept) ?? []
                    while var lot = queue.first, let debt = owed[kept]?.first, debt.amount > 0 {
                        let take = min(lot.amount, debt.amount)
                        result.flows.append(Flow(version: m.version, currency: currency, issuer: lot.store, spender: debt.store,
                                                 amount: take, load: lot.op, spend: debt.op, member: into))
                        lot.amount -= take
                        if lot.amount == 0 { queue.removeFirst() } else { queue[0] = lot }
                        if debt.amount == take { owed[kept]?.removeFirst() } else { owed[kept]?[0].amount -= take }
                    }
                    if !queue.isEmpty { lots[kept] = queue }
                }
            case .move(let m):
                let member = root(m.member)
                for currency in Currency.allCases {
                    let amount = currency == .principal ? m.principal : m.bonus
                    guard amount != 0 else { continue }
                    let key = Key(member: member, currency: currency)
                    if amount > 0 {
                        var left = amount
                        if let of = m.of {
                            // Undo the flows of the refunded sale or the reversed spend, newest first.
                            for i in result.flows.indices.reversed() where left > 0 {
                                let f = result.flows[i]
                                guard f.spend == of, f.currency == currency, f.member == member || root(f.member) == member, f.amount > 0 else { continue }
                                let open = f.amount - (undone[i] ?? 0)
                                guard open > 0 else { continue }
                                let take = min(left, open)
                                undone[i, default: 0] += take
                                result.flows.append(Flow(version: m.version, currency: currency, issuer: f.issuer, spender: f.spender,
                                                         amount: -take, load: f.load, spend: m.op, member: member))
                                lots[key, default: []].append(Lot(currency: currency, store: f.issuer, op: f.load, member: member, amount: take))
                                left -= take
                            }
                            // What the undone operation still owed is forgiven.
                            if left > 0, let i = owed[key]?.firstIndex(where: { $0.op == of }) {
                                let take = min(left, owed[key]?[i].amount ?? 0)
                                owed[key]?[i].amount -= take
                                if owed[key]?[i].amount == 0 { owed[key]?.remove(at: i) }
                                left -= take
                            }
                        }
                        if left > 0 { credit(key, left, store: m.store, op: m.op, version: m.version) }
                    } else {
                        var left = -amount
                        var queue = lots[key] ?? []
                        // A refund of a recharge takes back that recharge's own lot first, in place.
                        var order = Array(queue.indices)
                        if let of = m.of, let i = queue.firstIndex(where: { $0.op == of }) {
                            order.removeAll { $0 == i }
                            order.insert(i, at: 0)
                        }
                        for i in order where left > 0 {
                            let take = min(left, queue[i].amount)
                            guard take > 0 else { continue }
                            result.flows.append(Flow(version: m.version, currency: currency, issuer: queue[i].store, spender: m.store,
                                                     amount: take, load: queue[i].op, spend: m.op, member: member))
                            left -= take
                            queue[i].amount -= take
                        }
                        queue.removeAll { $0.amount == 0 }
                        lots[key] = queue
                        if left > 0 { owed[key, default: []].append(Owed(currency: currency, store: m.store, op: m.op, member: member, amount: left)) }
                    }
                }
            }
        }
        result.lots = lots.values.flatMap { $0 }.sorted { ($0.member.rawValue, $0.currency.rawValue, $0.op) < ($1.member.rawValue, $1.currency.rawValue, $1.op) }
        result.owed = owed.values.flatMap { $0 }.sorted { ($0.member.rawValue, $0.currency.rawValue, $0.op) < ($1.member.rawValue, $1.currency.rawValue, $1.op) }
        return result
    }

    private struct Key: Hashable {
        var member: MemberID
        var currency: Currency
    }

    /// One line of the settlement matrix: what `spender` delivered against value `issuer` holds.
    public struct Pair: Sendable, Hashable, Codable {
        public var issuer: String
        public var spender: String
        public var principal: Int64
        public var bonus: Int64
        public var flows: Int
    }

    /// A store's position for a period: to receive (it delivered against other stores' value),
    /// to pay (others delivered against its value), and the net (positive: it receives).
    public struct Position: Sendable, Hashable, Codable {
        public var store: String
        public var toReceivePrincipal: Int64
        public var toReceiveBonus: Int64
        public var toPayPrincipal: Int64
        public var toPayBonus: Int64
        public var netPrincipal: Int64 { toReceivePrincipal - toPayPrincipal }
        public var netBonus: Int64 { toReceiveBonus - toPayBonus }
    }

    /// The flows between different stores, summed per (issuer, spender) pair and per store.
    public static func net(_ flows: [Flow]) -> (pairs: [Pair], positions: [Position]) {
        var pairs: [String: Pair] = [:]
        var positions: [String: Position] = [:]
        for f in flows where f.issuer != f.spender {
            let key = f.issuer + "\u{1}" + f.spender
            var pair = pairs[key] ?? Pair(issuer: f.issuer, spender: f.spender, principal: 0, bonus: 0, flows: 0)
            var receiver = positions[f.spender] ?? Position(store: f.spender, toReceivePrincipal: 0, toReceiveBonus: 0, toPayPrincipal: 0, toPayBonus: 0)
            if f.currency == .principal { pair.principal += f.amount; receiver.toReceivePrincipal += f.amount } else { pair.bonus += f.amount; receiver.toReceiveBonus += f.amount }
            if f.amount > 0 { pair.flows += 1 }
            pairs[key] = pair
            positions[f.spender] = receiver
            var payer = positions[f.issuer] ?? Position(store: f.issuer, toReceivePrincipal: 0, toReceiveBonus: 0, toPayPrincipal: 0, toPayBonus: 0)
            if f.currency == .principal { payer.toPayPrincipal += f.amount } else { payer.toPayBonus += f.amount }
            positions[f.issuer] = payer
        }
        return (pairs.values.sorted { ($0.issuer, $0.spender) < ($1.issuer, $1.spender) }, positions.values.sorted { $0.store < $1.store })
    }
}
