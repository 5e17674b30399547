import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// Settlement and liabilities at the hub, on each database the hub can use.
@Suite("Settlement between stores and the chain's liabilities")
final class SettlementStoreTests {
    let dir: TempDir
    let clock = TestClock(at("2026-03-04 12:00", "Asia/Shanghai"))
    private(set) var hub: HubStore!
    private(set) var one: NodeStore!
    private(set) var two: NodeStore!

    init() throws { dir = try TempDir() }

    func use(_ backend: Backend) throws {
        hub = try backend.hubWithTwoStores(dir, clock: clock)
        _ = try hub.publishRules(try Examples.json("fresh-market"))  // 20,000 loaded earns 2,000 bonus
        one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        two = try bootstrappedNode(dir, s2, hub: hub, clock: clock, limit: 50_000)
    }

    /// The total stored value members hold, from the members' own views.
    func held() throws -> Int64 {
        try hub.allMembers().filter { $0.mergedInto == nil }.reduce(0) { $0 + $1.balance }
    }

    @Test("value loaded at one store and spent at another is owed by the first to the second; periods close and never change; late offline sales land in the next",
          arguments: Backend.all)
    func settlementAcrossPeriods(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        try sync(one, hub)
        try sync(two, hub)
        // Ada spends 15,000 at store two, paid from her balance (the hub authorises it).
        let sale = try spend(try two.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 15_000, payFromBalance: true), key: nil), node: two, hub: hub)
        #expect(sale.status == 201)
        let spent = try sale.decode(NodeAPI.TransactionResult.self).transaction.valueSpent ?? 0
        #expect(spent == 15_000)

        let open = try hub.settlement(period: nil)
        #expect(open.period == 1 && !open.closed)
        #expect(open.pairs.count == 1)
        let pair = try #require(open.pairs.first)
        #expect(pair.issuer == "s1" && pair.spender == "s2" && pair.principal + pair.bonus == spent)
        #expect(open.stores.first { $0.store == "s2" }.map { $0.netPrincipal + $0.netBonus } == spent)
        #expect(open.stores.reduce(0) { $0 + $1.netPrincipal + $1.netBonus } == 0, "what one store receives another pays")

        // Liabilities: what members hold, by the store that took the money.
        var owes = try hub.liabilities(asOf: nil)
        #expect(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus == (try held()))
        #expect(owes.principal + owes.bonus == 22_000 - spent)
        #expect(owes.stores.map(\.store) == ["s1"])

        let closed = try hub.closeSettlementPeriod(actor: "test")
        #expect(closed.period == 1 && closed.closed && closed.pairs == open.pairs)
        #expect(throws: DomainError.self) { try hub.closeSettlementPeriod(actor: "test") }

        // Store two sells offline (the hub never hears), then syncs: a later period.
        clock.advance(60_000)
        let offline = try spend(try two.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 3_000, payFromBalance: true), key: nil), node: two, hub: nil)
        #expect(offline.status == 201)
        try sync(two, hub)
        try sync(one, hub)
        #expect(try hub.settlement(period: 1) == closed, "a closed period never changes")
        let next = try hub.settlement(period: nil)
        #expect(next.period == 2 && next.after == closed.through)
        #expect(next.pairs.map { "\($0.issuer)->\($0.spender) \($0.principal + $0.bonus)" } == ["s1->s2 3000"])
        #expect(throws: DomainError.self) { try hub.settlement(period: 3) }
        // Behind each number, its flows: the load that paid and the sale it paid for.
        let behind = try hub.settlementFlows(period: 1, issuer: "s1", spender: "s2", limit: 100)
        #expect(behind.flows.reduce(0) { $0 + $1.amount } == pair.principal + pair.bonus && !behind.more)
        #expect(Set(behind.flows.map(\.member)) == [ada.id] && behind.flows.allSatisfy { $0.spend.hasPrefix("s2:") && $0.load.hasPrefix("s1:") })
        #expect(try hub.settlementFlows(period: 1, issuer: "s1", spender: "s2", limit: 1).more == (behind.flows.count > 1))
        #expect(try hub.settlementFlows(period: 2, issuer: nil, spender: nil, limit: 100).flows.map(\.amount) == [3_000])
        #expect(throws: DomainError.self) { try hub.settlementFlows(period: 9, issuer: nil, spender: nil, limit: 10) }

        owes = try hub.liabilities(asOf: nil)
        #expect(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus == (try held()))
        #expect(owes.points > 0 && owes.rulesVersion == 1 && owes.asOf == nil)
        // As of a past day: what members held at its end (here, before anything: nothing).
        let before = try hub.liabilities(asOf: LocalDay(iso: "2026-03-03"))
        #expect(before.principal == 0 && before.bonus == 0 && before.points == 0 && before.asOf == "2026-03-03")
        let today = try hub.liabilities(asOf: LocalDay(iso: "2026-03-04"))
        #expect(today.principal == owes.principal && today.bonus == owes.bonus && today.stores == owes.stores && today.points == owes.points)
        #expect(try hub.auditLog(limit: 10).contains { $0.action == "settlement.closed" })
        // Ada's statement explains her balance line by line, with stores and rules versions.
        let statement = try hub.statement(of: ada.id)
        let view = try #require(try hub.member(ada.id))
        #expect(statement.lines.last?.balance == view.balance && statement.lines.last?.pointsAfter == view.points)
        // (A sale may have several entries: the value it spent, the points it earned.)
        #expect(statement.lines.first?.kind == "value.recharged" && statement.lines.first?.store == "s1")
        #expect(Set(statement.lines.dropFirst().map(\.kind)) == ["purchase"] && Set(statement.lines.dropFirst().map(\.store)) == ["s2"])
        #expect(Set(statement.lines.map(\.op)).count == 3 && statement.lines.allSatisfy { $0.rulesVersion == 1 })
        #expect(throws: DomainError.self) { try hub.statement(of: MemberID("m-nobody-1")) }
        // Nodes hold the period's closing like any operation of the hub's (a kind they pass on).
        #expect(try two.allMembers() == hub.allMembers())
    }

    @Test("segments from the log: top spenders and their share, the dormant; a coupon to a segment once a day, reaching the stores",
          arguments: Backend.all)
    func segments(_ backend: Backend) throws {
        try use(backend)
        var members: [MemberView] = []
        for i in 0..<5 {
            let m = try enrol(one, "S\(i)", "+1555090\(i)")
            _ = try spend(try one.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: Int64(i + 1) * 1_000), key: nil), node: one, hub: nil)
            members.append(m)
        }
        try sync(one, hub)
        let top = try hub.segment("top", Segments.Parameters())
        #expect(top.members.map(\.member) == [members[4].id] && top.segmentSpend == 5_000 && top.totalSpend == 15_000)
        clock.advance(45 * 86_400_000)
        let asleep = try hub.segment("dormant", Segments.Parameters())
        #expect(asleep.counts == ["30-60": 5])
        #expect(throws: DomainError.self) { try hub.segment("nonsense", Segments.Parameters()) }
        // Points earned in 2026 expire at the end of 2027 under this programme.
        var soon = Segments.Parameters()
        soon.days = 30
        #expect(try hub.segment("points_expiring", soon).members.isEmpty)
        soon.days = 700
        let expiring = try hub.segment("points_expiring", soon)
        #expect(expiring.members.count == 5 && expiring.members.allSatisfy { $0.figure > 0 })
        #expect(expiring.members.first { $0.member == members[4].id }?.figure == (try hub.member(members[4].id))?.points)

        let issued = try hub.issueSegmentCoupons("dormant", Segments.Parameters(), template: "recharge-gift", actor: "test")
        #expect(issued.issued == 5 && issued.alreadyHeld == 0 && issued.op != nil)
        let again = try hub.issueSegmentCoupons("dormant", Segments.Parameters(), template: "recharge-gift", actor: "test")
        #expect(again.issued == 0 && again.alreadyHeld == 5 && again.op == nil)
        #expect(throws: DomainError.self) { try hub.issueSegmentCoupons("dormant", Segments.Parameters(), template: "no-such", actor: "test") }
        try sync(one, hub)
        #expect(try one.member(members[0].id).coupons.contains { $0.template == "recharge-gift" })
    }

    @Test("numbers agree: after offline periods, refunds and a merge, the liabilities, members' views and a pure fold of the raw log give the same totals; every period's settlement nets to zero",
          arguments: Backend.all)
    func numbersAgree(_ backend: Backend) throws {
        try use(backend)
        var members: [MemberView] = []
        for i in 0..<4 {
            let m = try enrol(i % 2 == 0 ? one : two, "N\(i)", "+1555110\(i)")
            _ = try (i % 2 == 0 ? one : two).recharge(m.id, NodeAPI.Recharge(amount: 20_000 + Int64(i) * 1_000), key: nil)
            members.append(m)
        }
        try sync(one, hub); try sync(two, hub); try sync(one, hub)
        _ = try hub.closeSettlementPeriod(actor: "test")
        // Offline at both stores: sales from balance, one beyond it, a refund; a duplicate enrolment.
        for (i, m) in members.enumerated() {
            let node: NodeStore = i % 2 == 0 ? two : one
            let sale = try spend(try node.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 7_000 + Int64(i) * 100, payFromBalance: true), key: nil),
                                 node: node, hub: nil)
            #expect(sale.status == 201)
            if i == 1 {
                let txn = try sale.decode(NodeAPI.TransactionResult.self).transaction.id
                #expect(try spend(try node.beginRefund(txn, key: nil), node: node, hub: nil).status == 201)
            }
        }
        // One person enrolled at both stores while they were apart: the hub merges the two.
        let first = try enrol(one, "Dup", "+15551199")
        _ = try one.recharge(first.id, NodeAPI.Recharge(amount: 3_000), key: nil)
        clock.advance(1_000)
        let twin = try enrol(two, "Dup again", "+15551199")
        _ = try two.recharge(twin.id, NodeAPI.Recharge(amount: 2_000), key: nil)
        _ = try spend(try two.beginPurchase(twin.id, NodeAPI.PurchaseRequest(amount: 2_500, payFromBalance: true), key: nil), node: two, hub: nil)
        try sync(two, hub); try sync(one, hub); try sync(two, hub)
        _ = try hub.closeSettlementPeriod(actor: "test")

        let views = try hub.allMembers().filter { $0.mergedInto == nil }
        let owes = try hub.liabilities(asOf: nil)
        let fold = ChainState(folding: try hub.log().map(\.op))
        let folded = fold.entries.values.flatMap { $0 }.reduce(Int64(0)) { $0 + $1.entry.value + $1.entry.bonus }
        #expect(views.count == 5, "the twin merged")
        #expect(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus == views.reduce(0) { $0 + $1.balance })
        #expect(views.reduce(0) { $0 + $1.balance } == folded, "the hub's views and a pure fold of its raw log agree")
        #expect(owes.stores.reduce(0) { $0 + $1.principal + $1.bonus } == owes.principal + owes.bonus)
        for period in 1...3 {
            let report = try hub.settlement(period: period)
            #expect(report.stores.reduce(0) { $0 + $1.netPrincipal + $1.netBonus } == 0, "period \(period) nets to zero")
        }
        #expect(try hub.settlement(period: 2).pairs.contains { $0.issuer != $0.spender })

        // The reports come from summaries kept as operations arrive: they say what a replay of
        // the log says, and made again from the log (as an upgraded hub does) they are the same.
        try expectAgree(hub)
        let reports = try (1...3).map { try hub.settlement(period: $0) }
        let days = try hub.storeActivity(from: nil, through: nil, store: nil)
        let top = try hub.segment("top", Segments.Parameters())
        try hub.rebuildSummaries()
        #expect(try hub.liabilities(asOf: nil) == owes)
        #expect(try (1...3).map { try hub.settlement(period: $0) } == reports)
        #expect(try hub.storeActivity(from: nil, through: nil, store: nil) == days)
        #expect(try hub.segment("top", Segments.Parameters()) == top)
        try expectAgree(hub)
    }

    @Test("an operation that voids itself (nonsense, but valid) is counted by the summaries as a replay of the log counts it",
          arguments: Backend.all)
    func selfVoidCountedAsReplayed(_ backend: Backend) throws {
        try use(backend)
        let a = try enrol(one, "Vi", "+15551300")
        _ = try one.recharge(a.id, NodeAPI.Recharge(amount: 5_000), key: nil)
        try sync(one, hub)
        let id = OperationID(origin: s1, seq: 9_000)
        let odd = Operation(id: id, hlc: HLCTimestamp(wallMs: clock.now(), counter: 0),
                            body: .operationVoided(OperationVoided(of: id, member: a.id, reason: "test")))
        #expect(try hub.push([odd], from: s1).map(\.status) == [.accepted])
        try expectAgree(hub)
    }

    @Test("store operations per day, and balances left untouched (breakage candidates)", arguments: Backend.all)
    func storeDaysAndBreakage(_ backend: Backend) throws {
        try use(backend)
        let a = try enrol(one, "Al", "+15551200")
        _ = try one.recharge(a.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        _ = try spend(try one.beginPurchase(a.id, NodeAPI.PurchaseRequest(amount: 4_000, payFromBalance: true), key: nil), node: one, hub: hub)
        clock.advance(86_400_000)
        let b = try enrol(two, "Bea", "+15551201")
        _ = try two.recharge(b.id, NodeAPI.Recharge(amount: 1_000), key: nil)
        try sync(one, hub); try sync(two, hub)
        let days = try hub.storeActivity(from: nil, through: nil, store: nil).days
        #expect(days.map { "\($0.store) \($0.day)" } == ["s1 2026-03-04", "s2 2026-03-05"])
        let first = try #require(days.first)
        #expect(first.enrolments == 1 && first.recharges == 1 && first.recharged == 20_000 && first.sales == 1 && first.sold == 4_000)
        #expect(first.spentFromBalance == 4_000 && first.pointsEarned > 0 && first.operations == 3)
        #expect(try hub.storeActivity(from: LocalDay(iso: "2026-03-05"), through: nil, store: nil).days.map(\.store) == ["s2"])
        #expect(try hub.storeActivity(from: nil, through: nil, store: "s1").days.count == 1)
        // A programme in another time zone counts the days again, in that zone (noon in
        // Shanghai is the evening before in Los Angeles).
        guard case .object(var fields) = try Examples.json("fresh-market") else { Issue.record("a programme is an object"); return }
        fields["version"] = .int(2)
        fields["time_zone"] = .string("America/Los_Angeles")
        _ = try hub.publishRules(.object(fields))
        #expect(try hub.storeActivity(from: nil, through: nil, store: nil).days.map { "\($0.store) \($0.day)" } == ["s1 2026-03-03", "s2 2026-03-04"])
        try expectAgree(hub)
        // A sale after the change; then the summaries made again from the log (the zone changes
        // twice on the way): the same days, each operation counted once.
        _ = try spend(try one.beginPurchase(a.id, NodeAPI.PurchaseRequest(amount: 100), key: nil), node: one, hub: nil)
        try sync(one, hub)
        let counted = try hub.storeActivity(from: nil, through: nil, store: nil)
        #expect(counted.days.reduce(0) { $0 + $1.operations } == 6)
        try hub.rebuildSummaries()
        #expect(try hub.storeActivity(from: nil, through: nil, store: nil) == counted)
        try expectAgree(hub)

        #expect(try hub.breakageCandidates(untouchedDays: 30).isEmpty)
        clock.advance(40 * 86_400_000)
        let dormant = try hub.breakageCandidates(untouchedDays: 30)
        #expect(dormant.map(\.member) == [a.id, b.id] && dormant.map(\.balance) == [18_000, 1_000])
    }

    @Test("offline sales at two stores beyond a balance: what no load covers is owed, and settled by the next recharge",
          arguments: Backend.all)
    func overdraftIsOwedThenSettled(_ backend: Backend) throws {
        try use(backend)
        let bo = try enrol(one, "Bo", "+15550200")
        _ = try one.recharge(bo.id, NodeAPI.Recharge(amount: 1_000), key: nil)
        try sync(one, hub)
        try sync(two, hub)
        _ = try spend(try one.beginPurchase(bo.id, NodeAPI.PurchaseRequest(amount: 800, payFromBalance: true), key: nil), node: one, hub: nil)
        _ = try spend(try two.beginPurchase(bo.id, NodeAPI.PurchaseRequest(amount: 800, payFromBalance: true), key: nil), node: two, hub: nil)
        try sync(one, hub)
        try sync(two, hub)
        var owes = try hub.liabilities(asOf: nil)
        #expect(owes.owedPrincipal + owes.owedBonus == 600)
        #expect(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus == (try held()))
        #expect(try held() == -600)
        _ = try one.recharge(bo.id, NodeAPI.Recharge(amount: 1_000), key: nil)
        try sync(one, hub)
        owes = try hub.liabilities(asOf: nil)
        #expect(owes.owedPrincipal + owes.owedBonus == 0)
        #expect(owes.principal + owes.bonus == 400)
        let report = try hub.settlement(period: nil)
        #expect(report.pairs.map { "\($0.issuer)->\($0.spender) \($0.principal + $0.bonus)" } == ["s1->s2 800"])

        // Head office resolves the overdraft: a note and 50 points of goodwill, in one write.
        let overdraft = try #require(try hub.exceptions(limit: 100).first { $0.kind == "overdraft" && $0.resolution == nil })
        let pointsBefore = try #require(try hub.member(bo.id)).points
        let resolved = try hub.resolveException(overdraft.id, HubAPI.ResolveException(note: "spoke to Bo; goodwill", points: 50), actor: "test")
        #expect(resolved.resolution?.note == "spoke to Bo; goodwill" && resolved.resolution?.adjustment != nil)
        #expect(try hub.member(bo.id)?.points == pointsBefore + 50)
        #expect(try hub.exceptions(limit: 100).first { $0.id == overdraft.id }?.resolution?.op == resolved.resolution?.op)
        #expect(throws: DomainError.self) { try hub.resolveException(overdraft.id, HubAPI.ResolveException(note: "again", points: 50), actor: "test") }
        #expect(try hub.member(bo.id)?.points == pointsBefore + 50, "a refused second resolution adjusts nothing")
        #expect(throws: DomainError.self) { try hub.resolveException(999_999, HubAPI.ResolveException(note: "x", points: nil), actor: "test") }
        #expect(throws: DomainError.self) { try hub.resolveException(overdraft.id, HubAPI.ResolveException(note: " ", points: nil), actor: "test") }
        try sync(two, hub)
        #expect(try two.member(bo.id).points == pointsBefore + 50, "the adjustment reaches the stores")
    }
}

/// The hub's summaries say what a replay of its log says (each difference named).
func expectAgree(_ hub: HubStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let problems = try hub.checkSummaries()
    #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
}
