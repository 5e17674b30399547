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
    public struct Flow: Sendable, Hashable, Codable {
        public var version: Int64
        public var currency: Currency
        public var issuer: String
        public var spender: String
        public var amount: Int64
        public var load: String
        public var spend: String
        public var member: MemberID
        public init(version: Int64, currency: Currency, issuer: String, spender: String, amount: Int64, load: String, spend: String, member: MemberID) {
            self.version = version; self.currency = currency; self.issuer = issuer; self.spender = spender
            self.amount = amount; self.load = load; self.spend = spend; self.member = member
        }
    }

    /// Value still held by members, by issuing store (a liability of that store).
    public struct Lot: Sendable, Hashable, Codable {
        public var currency: Currency
        public var store: String
        public var op: String
        public var member: MemberID
        public var amount: Int64
        public init(currency: Currency, store: String, op: String, member: MemberID, amount: Int64) {
            self.currency = currency; self.store = store; self.op = op; self.member = member; self.amount = amount
        }
    }

    /// Value spent that no lot covered yet (an offline overdraft), by spending store.
    public struct Owed: Sendable, Hashable, Codable {
        public var currency: Currency
        public var store: String
        public var op: String
        public var member: MemberID
        public var amount: Int64
        public init(currency: Currency, store: String, op: String, member: MemberID, amount: Int64) {
            self.currency = currency; self.store = store; self.op = op; self.member = member; self.amount = amount
        }
    }

    public struct Allocation: Sendable {
        public var flows: [Flow] = []
        public var lots: [Lot] = []
        public var owed: [Owed] = []
    }

    /// A member's line in one currency: the lots waiting, oldest first, and what the member owes,
    /// oldest first.
    public struct Line: Sendable, Hashable, Codable {
        public var lots: [Lot] = []
        public var owed: [Owed] = []
        public init(lots: [Lot] = [], owed: [Owed] = []) { self.lots = lots; self.owed = owed }

        /// A line as compact text, for a store that keeps it by member and currency (which the text
        /// leaves out): `L` or `O`, store, operation and amount for each lot and debt, in order,
        /// fields apart by U+001F and entries by U+001E (neither can be in a store or operation id).
        /// A fold advances a line at every movement: this is much cheaper than JSON.
        public func text() -> String {
            var out = ""
            func add(_ tag: String, _ store: String, _ op: String, _ amount: Int64) {
                if !out.isEmpty { out += "\u{1E}" }
                out += tag + "\u{1F}" + store + "\u{1F}" + op + "\u{1F}" + String(amount)
            }
            for lot in lots { add("L", lot.store, lot.op, lot.amount) }
            for debt in owed { add("O", debt.store, debt.op, debt.amount) }
            return out
        }
    }
}

extension Settlement.Line {
    /// The line `text()` wrote, for `member` in `currency`; nil when the text is not one.
    public init?(text: String, member: MemberID, currency: Settlement.Currency) {
        self.init()
        guard !text.isEmpty else { return }
        for entry in text.split(separator: "\u{1E}", omittingEmptySubsequences: false) {
            let f = entry.split(separator: "\u{1F}", omittingEmptySubsequences: false)
            guard f.count == 4, let amount = Int64(f[3]) else { return nil }
            switch f[0] {
            case "L": lots.append(Settlement.Lot(currency: currency, store: String(f[1]), op: String(f[2]), member: member, amount: amount))
            case "O": owed.append(Settlement.Owed(currency: currency, store: String(f[1]), op: String(f[2]), member: member, amount: amount))
            default: return nil
            }
        }
    }
}

extension Settlement {
    /// A flow a later refund or reversal may undo, and how much of it is still open.
    public struct OpenFlow: Sendable, Hashable {
        public var id: Int64
        public var flow: Flow
        public var open: Int64
        public init(id: Int64, flow: Flow, open: Int64) { self.id = id; self.flow = flow; self.open = open }
    }

    /// Where an allocation keeps its state: in memory for a pure replay (`allocate`), or in the
    /// hub's fold, advanced as each movement arrives. The rules live in `apply` and `merge`
    /// alone, so both give the same flows.
    public protocol Book {
        associatedtype Failure: Error
        /// The member's line (the member is a root: merges resolved by the caller).
        mutating func line(_ member: MemberID, _ currency: Currency) throws(Failure) -> Line
        mutating func setLine(_ line: Line, _ member: MemberID, _ currency: Currency) throws(Failure)
        /// The flows of the spend `op` in `currency` whose member is now in `member`'s group and
        /// that are not wholly undone yet, newest first.
        mutating func openFlows(spend op: String, _ currency: Currency, member: MemberID) throws(Failure) -> [OpenFlow]
        mutating func record(_ flow: Flow) throws(Failure)
        mutating func undo(_ flow: Int64, by amount: Int64) throws(Failure)
    }

    /// Allocates one movement of `member` (its root, at the movement's version).
    public static func apply<B: Book>(_ m: Movement, member: MemberID, to book: inout B) throws(B.Failure) {
        for currency in Currency.allCases {
            let amount = currency == .principal ? m.principal : m.bonus
            guard amount != 0 else { continue }
            var line = try book.line(member, currency)
            if amount > 0 {
                var left = amount
                if let of = m.of {
                    // Undo the flows of the refunded sale or the reversed spend, newest first.
                    for open in try book.openFlows(spend: of, currency, member: member) where left > 0 && open.open > 0 {
                        let f = open.flow, take = min(left, open.open)
                        try book.undo(open.id, by: take)
                        try book.record(Flow(version: m.version, currency: currency, issuer: f.issuer, spender: f.spender,
                                             amount: -take, load: f.load, spend: m.op, member: member))
                        line.lots.append(Lot(currency: currency, store: f.issuer, op: f.load, member: member, amount: take))
                        left -= take
                    }
                    // What the undone operation still owed is forgiven.
                    if left > 0, let i = line.owed.firstIndex(where: { $0.op == of }) {
                        let take = min(left, line.owed[i].amount)
                        line.owed[i].amount -= take
                        if line.owed[i].amount == 0 { line.owed.remove(at: i) }
                        left -= take
                    }
                }
                if left > 0 { try credit(&line, left, store: m.store, op: m.op, version: m.version, member: member, currency: currency, book: &book) }
            } else {
                var left = -amount
                // A refund of a recharge takes back that recharge's own lot first, in place.
                var order = Array(line.lots.indices)
                if let of = m.of, let i = line.lots.firstIndex(where: { $0.op == of }) {
                    order.removeAll { $0 == i }
                    order.insert(i, at: 0)
                }
                for i in order where left > 0 {
                    let take = min(left, line.lots[i].amount)
                    guard take > 0 else { continue }
                    try book.record(Flow(version: m.version, currency: currency, issuer: line.lots[i].store, spender: m.store,
                                         amount: take, load: line.lots[i].op, spend: m.op, member: member))
                    left -= take
                    line.lots[i].amount -= take
                }
                line.lots.removeAll { $0.amount == 0 }
                if left > 0 { line.owed.append(Owed(currency: currency, store: m.store, op: m.op, member: member, amount: left)) }
            }
            try book.setLine(line, member, currency)
        }
    }

    /// Joins the line of `from` to that of `into` (both roots) at a merge's version.
    public static func merge<B: Book>(from: MemberID, into: MemberID, version: Int64, to book: inout B) throws(B.Failure) {
        for currency in Currency.allCases {
            let gone = try book.line(from, currency)
            if !gone.lots.isEmpty || !gone.owed.isEmpty { try book.setLine(Line(), from, currency) }
            var kept = try book.line(into, currency)
            kept.owed += gone.owed.map { var d = $0; d.member = into; return d }
            // The absorbed member's lots join the line, covering the group's debts first.
            for lot in gone.lots {
                try credit(&kept, lot.amount, store: lot.store, op: lot.op, version: version, member: into, currency: currency, book: &book)
            }
            // And the survivor's own lots cover the absorbed member's debts.
            while var lot = kept.lots.first, let debt = kept.owed.first, debt.amount > 0 {
                let take = min(lot.amount, debt.amount)
                try book.record(Flow(version: version, currency: currency, issuer: lot.store, spender: debt.store,
                                     amount: take, load: lot.op, spend: debt.op, member: into))
                lot.amount -= take
                if lot.amount == 0 { kept.lots.removeFirst() } else { kept.lots[0] = lot }
                if debt.amount == take { kept.owed.removeFirst() } else { kept.owed[0].amount -= take }
            }
            try book.setLine(kept, into, currency)
        }
    }

    /// Value coming in at `version`: covers debts first, oldest first; the rest is a lot.
    private static func credit<B: Book>(_ line: inout Line, _ amount: Int64, store: String, op: String, version: Int64, member: MemberID,
                                        currency: Currency, book: inout B) throws(B.Failure) {
        var left = amount
        while left > 0, var debt = line.owed.first {
            let take = min(left, debt.amount)
            try book.record(Flow(version: version, currency: currency, issuer: store, spender: debt.store,
                                 amount: take, load: op, spend: debt.op, member: member))
            left -= take
            debt.amount -= take
            if debt.amount == 0 { line.owed.removeFirst() } else { line.owed[0] = debt }
        }
        if left > 0 { line.lots.append(Lot(currency: currency, store: store, op: op, member: member, amount: left)) }
    }

    /// The book of a pure replay: everything in memory.
    struct MemoryBook: Book {
        typealias Failure = Never
        var lines: [Key: Line] = [:]
        var flows: [Flow] = []
        /// How much of each flow (by index) later refunds and reversals have undone.
        var undone: [Int: Int64] = [:]
        var alias: [MemberID: MemberID] = [:]

        func root(_ m: MemberID) -> MemberID {
            var current = m
            var seen = 0
            while let next = alias[current], next != current, seen < 1_000 { current = next; seen += 1 }
            return current
        }
        mutating func line(_ member: MemberID, _ currency: Currency) -> Line { lines[Key(member: member, currency: currency)] ?? Line() }
        mutating func setLine(_ line: Line, _ member: MemberID, _ currency: Currency) {
            lines[Key(member: member, currency: currency)] = line.lots.isEmpty && line.owed.isEmpty ? nil : line
        }
        mutating func openFlows(spend op: String, _ currency: Currency, member: MemberID) -> [OpenFlow] {
            flows.indices.reversed().compactMap { i in
                let f = flows[i]
                guard f.spend == op, f.currency == currency, f.amount > 0, f.member == member || root(f.member) == member else { return nil }
                let open = f.amount - (undone[i] ?? 0)
                return open > 0 ? OpenFlow(id: Int64(i), flow: f, open: open) : nil
            }
        }
        mutating func record(_ flow: Flow) { flows.append(flow) }
        mutating func undo(_ flow: Int64, by amount: Int64) { undone[Int(flow), default: 0] += amount }
    }

    /// Allocates `movements` and `merges` (any order: they are taken in version order, a merge
    /// before the movements of its version, then as given): a replay of the whole log.
    public static func allocate(_ movements: [Movement], merges: [Merge] = []) -> Allocation {
        enum Event { case move(Movement), merge(Merge) }
        var book = MemoryBook()
        let events: [(Int64, Int, Event)] = merges.enumerated().map { ($0.element.version, $0.offset, .merge($0.element)) }
            + movements.enumerated().map { ($0.element.version, merges.count + $0.offset, .move($0.element)) }
        for (_, _, event) in events.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            switch event {
            case .merge(let m):
                let from = book.root(m.from), into = book.root(m.into)
                guard from != into else { continue }
                book.alias[from] = into
                merge(from: from, into: into, version: m.version, to: &book)
            case .move(let m):
                apply(m, member: book.root(m.member), to: &book)
            }
        }
        var result = Allocation()
        result.flows = book.flows
        result.lots = book.lines.values.flatMap(\.lots).sorted { ($0.member.rawValue, $0.currency.rawValue, $0.op) < ($1.member.rawValue, $1.currency.rawValue, $1.op) }
        result.owed = book.lines.values.flatMap(\.owed).sorted { ($0.member.rawValue, $0.currency.rawValue, $0.op) < ($1.member.rawValue, $1.currency.rawValue, $1.op) }
        return result
    }

    struct Key: Hashable {
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
        public init(issuer: String, spender: String, principal: Int64, bonus: Int64, flows: Int) {
            self.issuer = issuer; self.spender = spender; self.principal = principal; self.bonus = bonus; self.flows = flows
        }
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
        for f in flows where f.issuer != f.spender {
            let key = f.issuer + "\u{1}" + f.spender
            var pair = pairs[key] ?? Pair(issuer: f.issuer, spender: f.spender, principal: 0, bonus: 0, flows: 0)
            if f.currency == .principal { pair.principal += f.amount } else { pair.bonus += f.amount }
            if f.amount > 0 { pair.flows += 1 }
            pairs[key] = pair
        }
        let sorted = pairs.values.sorted { ($0.issuer, $0.spender) < ($1.issuer, $1.spender) }
        return (sorted, positions(sorted))
    }

    /// Each store's position from the pairs: it receives what it delivered against others'
    /// value and pays what others delivered against its own.
    public static func positions(_ pairs: [Pair]) -> [Position] {
        var positions: [String: Position] = [:]
        func position(_ store: String) -> Position {
            positions[store] ?? Position(store: store, toReceivePrincipal: 0, toReceiveBonus: 0, toPayPrincipal: 0, toPayBonus: 0)
        }
        for pair in pairs where pair.issuer != pair.spender {
            var receiver = position(pair.spender)
            receiver.toReceivePrincipal += pair.principal
            receiver.toReceiveBonus += pair.bonus
            positions[pair.spender] = receiver
            var payer = position(pair.issuer)
            payer.toPayPrincipal += pair.principal
            payer.toPayBonus += pair.bonus
            positions[pair.issuer] = payer
        }
        return positions.values.sorted { $0.store < $1.store }
    }
}
