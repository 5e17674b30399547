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
///   by the member until value comes in.
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
        /// For a refund of a recharge: the recharge, whose lot it takes back first.
        public var refundOf: String?
        public init(version: Int64, op: String, store: String, member: MemberID, principal: Int64, bonus: Int64, refundOf: String? = nil) {
            self.version = version; self.op = op; self.store = store; self.member = member
            self.principal = principal; self.bonus = bonus; self.refundOf = refundOf
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

    /// Allocates `movements` (any order: they are taken in version order, then as given).
    public static func allocate(_ movements: [Movement]) -> Allocation {
        var result = Allocation()
        var lots: [Key: [Lot]] = [:]
        var owed: [Key: [Owed]] = [:]
        let ordered = movements.enumerated().sorted { ($0.element.version, $0.offset) < ($1.element.version, $1.offset) }.map(\.element)
        for m in ordered {
            for currency in Currency.allCases {
                let amount = currency == .principal ? m.principal : m.bonus
                guard amount != 0 else { continue }
                let key = Key(member: m.member, currency: currency)
                if amount > 0 {
                    var left = amount
                    // What the member owes is covered first, oldest first.
                    while left > 0, var debt = owed[key]?.first {
                        let take = min(left, debt.amount)
                        result.flows.append(Flow(version: m.version, currency: currency, issuer: m.store, spender: debt.store,
                                                 amount: take, load: m.op, spend: debt.op, member: m.member))
                        left -= take
                        debt.amount -= take
                        if debt.amount == 0 { owed[key]?.removeFirst() } else { owed[key]?[0] = debt }
                    }
                    if left > 0 { lots[key, default: []].append(Lot(currency: currency, store: m.store, op: m.op, member: m.member, amount: left)) }
                } else {
                    var left = -amount
                    var queue = lots[key] ?? []
                    // A refund of a recharge takes back that recharge's own lot first.
                    if let of = m.refundOf, let i = queue.firstIndex(where: { $0.op == of }), i > 0 {
                        queue.insert(queue.remove(at: i), at: 0)
                    }
                    while left > 0, var lot = queue.first {
                        let take = min(left, lot.amount)
                        result.flows.append(Flow(version: m.version, currency: currency, issuer: lot.store, spender: m.store,
                                                 amount: take, load: lot.op, spend: m.op, member: m.member))
                        left -= take
                        lot.amount -= take
                        if lot.amount == 0 { queue.removeFirst() } else { queue[0] = lot }
                    }
                    lots[key] = queue
                    if left > 0 { owed[key, default: []].append(Owed(currency: currency, store: m.store, op: m.op, member: m.member, amount: left)) }
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
            pair.flows += 1
            pairs[key] = pair
            positions[f.spender] = receiver
            var payer = positions[f.issuer] ?? Position(store: f.issuer, toReceivePrincipal: 0, toReceiveBonus: 0, toPayPrincipal: 0, toPayBonus: 0)
            if f.currency == .principal { payer.toPayPrincipal += f.amount } else { payer.toPayBonus += f.amount }
            positions[f.issuer] = payer
        }
        return (pairs.values.sorted { ($0.issuer, $0.spender) < ($1.issuer, $1.spender) }, positions.values.sorted { $0.store < $1.store })
    }
}
