import Testing
import TesseraCore

@Suite("Inter-store settlement")
struct SettlementTests {
    let ada = MemberID("m-a-1"), bo = MemberID("m-b-1")

    func move(_ version: Int64, _ op: String, _ store: String, _ member: MemberID, _ principal: Int64, _ bonus: Int64 = 0,
              of: String? = nil) -> Settlement.Movement {
        Settlement.Movement(version: version, op: op, store: store, member: member, principal: principal, bonus: bonus, of: of)
    }

    @Test("value loaded at A and spent at B: B receives from A, principal and bonus apart, oldest loads first")
    func fifo() {
        let a = Settlement.allocate([
            move(1, "a:1", "a", ada, 1000, 100),
            move(2, "c:1", "c", ada, 500),
            move(3, "b:1", "b", ada, -1200, -100),
        ])
        #expect(a.flows.map { "\($0.currency) \($0.issuer)->\($0.spender) \($0.amount)" } ==
                ["principal a->b 1000", "principal c->b 200", "bonus a->b 100"])
        #expect(a.lots.map { "\($0.store) \($0.amount)" } == ["c 300"])
        let (pairs, positions) = Settlement.net(a.flows)
        #expect(pairs.map { "\($0.issuer)->\($0.spender) \($0.principal)/\($0.bonus)" } == ["a->b 1000/100", "c->b 200/0"])
        #expect(positions.first { $0.store == "b" }?.netPrincipal == 1200)
        #expect(positions.reduce(0) { $0 + $1.netPrincipal } == 0 && positions.reduce(0) { $0 + $1.netBonus } == 0)
    }

    @Test("a spend made offline beyond the balance is owed until value comes in, then settled with the store that loads it")
    func owedUntilLoaded() {
        let a = Settlement.allocate([
            move(1, "a:1", "a", ada, 300),
            move(2, "b:1", "b", ada, -500),
            move(3, "c:1", "c", ada, 1000),
        ])
        #expect(a.flows.map { "\($0.version) \($0.issuer)->\($0.spender) \($0.amount)" } == ["2 a->b 300", "3 c->b 200"])
        #expect(a.owed.isEmpty)
        #expect(a.lots.map(\.amount) == [800])
    }

    @Test("a refunded recharge takes back its own lot first; a refund of a sale is a new lot of the refunding store")
    func refunds() {
        let a = Settlement.allocate([
            move(1, "a:1", "a", ada, 400),
            move(2, "c:1", "c", ada, 600),
            move(3, "c:2", "c", ada, -600, of: "c:1"),
            move(4, "b:1", "b", ada, -100),
            move(5, "b:2", "b", ada, 100),
        ])
        #expect(a.flows.map { "\($0.issuer)->\($0.spender) \($0.amount)" } == ["c->c 600", "a->b 100"])
        #expect(Settlement.net(a.flows).pairs.map { "\($0.issuer)->\($0.spender)" } == ["a->b"], "a store's own refund settles nothing")
        #expect(a.lots.map { "\($0.store) \($0.amount)" }.sorted() == ["a 300", "b 100"])
    }

    @Test("a reversed spend and a refunded sale undo their flows, giving the value back to the store that loaded it")
    func undo() {
        let a = Settlement.allocate([
            move(1, "a:1", "a", ada, 100),
            move(2, "b:1", "b", ada, -60),
            move(3, "hub:1", "hub", ada, 60, of: "b:1"),   // the hub reverses a spend its store voided
            move(4, "b:2", "b", ada, -50),
            move(5, "c:1", "c", ada, 20, of: "b:2"),       // part of that sale refunded at another store
        ])
        let (pairs, _) = Settlement.net(a.flows)
        #expect(pairs.map { "\($0.issuer)->\($0.spender) \($0.principal)" } == ["a->b 30"])
        #expect(!a.lots.contains { $0.store == "hub" || $0.store == "c" }, "value given back belongs to the store that loaded it")
        #expect(a.lots.reduce(0) { $0 + $1.amount } == 70)
    }

    @Test("a merge joins the duplicates' lines at its own version: an earlier period is never changed by it")
    func mergeAtItsVersion() {
        let moves = [move(1, "b:1", "b", ada, -30), move(2, "a:1", "a", bo, 50)]
        let before = Settlement.allocate(moves)
        #expect(before.flows.isEmpty && before.owed.map(\.amount) == [30])
        let after = Settlement.allocate(moves + [move(4, "b:2", "b", ada, -5)],
                                        merges: [Settlement.Merge(version: 3, op: "hub:9", from: bo, into: ada)])
        #expect(after.flows.map { "\($0.version) \($0.issuer)->\($0.spender) \($0.amount)" } == ["3 a->b 30", "4 a->b 5"])
        #expect(after.flows.filter { $0.version <= 2 }.isEmpty && after.owed.isEmpty && after.lots.map(\.amount) == [15])
    }

    @Test("members are settled apart, and the outcome does not depend on the order movements are given in")
    func deterministic() {
        let moves = [
            move(1, "a:1", "a", ada, 500), move(2, "b:1", "b", bo, 500),
            move(3, "b:2", "b", ada, -200), move(4, "a:2", "a", bo, -300),
        ]
        let x = Settlement.allocate(moves), y = Settlement.allocate(moves.reversed())
        #expect(x.flows == y.flows && x.lots == y.lots)
        #expect(Settlement.net(x.flows).positions.map { "\($0.store) \($0.netPrincipal)" } == ["a 100", "b -100"])
    }

    @Test("conservation: flows plus what is still held equal what came in; flows plus what is owed equal what went out",
          arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func conservation(_ seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let stores = ["a", "b", "c"], members = [ada, bo]
        let moves: [Settlement.Movement] = (1...200).map { i in
            let amount = Int64(rng.next() % 1000) * (rng.next() % 3 == 0 ? 1 : -1)
            let bonus = rng.next() % 4 == 0 ? amount / 10 : 0
            return move(Int64(i), "op\(i)", stores[Int(rng.next() % 3)], members[Int(rng.next() % 2)], amount, bonus)
        }
        let a = Settlement.allocate(moves)
        for currency in Settlement.Currency.allCases {
            let net = moves.reduce(0) { $0 + (currency == .principal ? $1.principal : $1.bonus) }
            #expect(a.lots.filter { $0.currency == currency }.reduce(0) { $0 + $1.amount }
                    - a.owed.filter { $0.currency == currency }.reduce(0) { $0 + $1.amount } == net, "what members hold, less what they owe")
            let amounts = moves.map { currency == .principal ? $0.principal : $0.bonus }
            let inflow = amounts.filter { $0 > 0 }.reduce(0, +), outflow = -amounts.filter { $0 < 0 }.reduce(0, +)
            let flowed = a.flows.filter { $0.currency == currency }.reduce(0) { $0 + $1.amount }
            #expect(flowed + a.lots.filter { $0.currency == currency }.reduce(0) { $0 + $1.amount } == inflow)
            #expect(flowed + a.owed.filter { $0.currency == currency }.reduce(0) { $0 + $1.amount } == outflow)
        }
    }
}

@Suite("A settlement line kept as text")
struct SettlementLineTextTests {
    @Test("a line reads back from its text exactly, lots and debts in order; text that is not a line is refused")
    func roundTrip() {
        let ada = MemberID("m-a-1")
        let line = Settlement.Line(
            lots: [Settlement.Lot(currency: .bonus, store: "north-1", op: "north-1:7", member: ada, amount: 1_200),
                   Settlement.Lot(currency: .bonus, store: "hub", op: "hub:3", member: ada, amount: 1)],
            owed: [Settlement.Owed(currency: .bonus, store: "south-2", op: "south-2:40", member: ada, amount: 9_000_000_000)])
        #expect(Settlement.Line(text: line.text(), member: ada, currency: .bonus) == line)
        #expect(Settlement.Line(text: "", member: ada, currency: .principal) == Settlement.Line())
        #expect(Settlement.Line(text: "L\u{1F}a\u{1F}a:1", member: ada, currency: .principal) == nil)
        #expect(Settlement.Line(text: "X\u{1F}a\u{1F}a:1\u{1F}5", member: ada, currency: .principal) == nil)
    }
}
