import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// Escrow leases on real SQLite nodes and the hub on each database: stores spend offline only
/// what their leases hold, so no sequence of partitions can overdraw a member.
@Suite("Escrow leases")
final class LeaseStoreTests {
    let dir: TempDir
    let clock = TestClock(1_800_000_000_000)
    private(set) var hub: HubStore!
    static let policy = Programme.Leases(sharePercent: 50, stores: 2, memberCapMinor: 100_000, memberCapPoints: 10_000, hours: 24)

    init() throws {
        dir = try TempDir()
    }

    /// A hub on the test clock with two stores and a programme that uses leases.
    func use(_ backend: Backend, leases: Programme.Leases? = LeaseStoreTests.policy) throws {
        hub = try backend.hubWithTwoStores(dir, clock: clock)
        _ = try hub.publishRules(Programme(version: 1, name: "leased", leases: leases).json)
    }

    func node(_ store: StoreID) throws -> NodeStore {
        try bootstrappedNode(dir, store, hub: hub, clock: clock)
    }

    func buy(_ amount: Int64, _ member: MemberView, at node: NodeStore, online: Bool) throws -> TillAnswer {
        try spend(try node.beginPurchase(member.id, NodeAPI.PurchaseRequest(amount: amount, payFromBalance: true), key: nil),
                  node: node, hub: online ? hub : nil)
    }

    /// Ada, enrolled at `node` with 10,000 recharged there; `settled` syncs twice, so the hub's
    /// recall of what is above the store's target has been answered.
    func ada(_ phone: String, at node: NodeStore, settled: Bool = true) throws -> MemberView {
        let ada = try enrol(node, "Ada", phone)
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 10_000), key: nil)
        if settled { for _ in 0..<2 { try sync(node, hub) } }
        return ada
    }

    func hubLeases(_ member: MemberView) throws -> [StoreID: Rights] {
        ChainState(folding: try hub.log().map(\.op)).leases(of: member.id)
    }

    @Test("a recharge is spendable offline at its store at once; a spend beyond the store's lease is refused offline and takes nothing",
          arguments: Backend.all)
    func rechargeSpendableOffline(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try self.ada("+15551100", at: one, settled: false)
        #expect(try one.ownLeases()[ada.id] == Rights(value: 10_000))
        // Covered by the store's lease: decided at the store, without asking the hub.
        let first = try buy(3_000, ada, at: one, online: false)
        #expect(first.status == 201)
        #expect(try first.decode(NodeAPI.TransactionResult.self).transaction.authorization == .lease)
        // Back online, the hub asks for what is above the store's target (half of 7,000) back.
        try sync(one, hub); try sync(one, hub)
        #expect(try one.ownLeases()[ada.id]?.value == 3_500)
        let beyond = try buy(4_000, ada, at: one, online: false)
        #expect(beyond.status == 402)
        #expect(beyond.errorCode == "offline_lease_exceeded")
        #expect(try one.member(ada.id).balance == 7_000)
        #expect(try buy(3_500, ada, at: one, online: false).status == 201)
        #expect(try one.ownLeases()[ada.id]?.value == 0)
        try sync(one, hub)
        #expect(try hub.member(ada.id)?.balance == 3_500)
        #expect(try hub.exceptions(limit: 10).isEmpty)
    }

    @Test("two stores offline never spend the same money: each spends only its lease, and no overdraft follows (v1 overdraws here)",
          arguments: Backend.all)
    func noDoubleSpendAcrossPartitions(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let ada = try self.ada("+15551200", at: one)  // store one holds its target of the 10,000
        try sync(two, hub)
        // Ada shops at store two (online): it borrows from the hub, and is lent a lease there.
        #expect(try buy(1_000, ada, at: two, online: true).status == 201)
        try sync(two, hub)
        let leases = try hubLeases(ada)
        let atOne = try #require(leases[s1]).value, atTwo = try #require(leases[s2]).value
        #expect(atOne > 0 && atTwo > 0 && atOne + atTwo <= 9_000)
        // Both stores lose the hub. Each tries to spend all 9,000 the member holds.
        #expect(try buy(9_000, ada, at: one, online: false).errorCode == "offline_lease_exceeded")
        #expect(try buy(9_000, ada, at: two, online: false).errorCode == "offline_lease_exceeded")
        #expect(try buy(atOne, ada, at: one, online: false).status == 201)
        #expect(try buy(atTwo, ada, at: two, online: false).status == 201)
        try sync(one, hub); try sync(two, hub); try sync(one, hub)
        #expect(try hub.member(ada.id)?.balance == 9_000 - atOne - atTwo)
        #expect(try one.member(ada.id).balance == 9_000 - atOne - atTwo)
        #expect(try hub.exceptions(limit: 10).filter { $0.kind == "overdraft" }.isEmpty)
    }

    @Test("online, a spend beyond what the hub holds is refused with balance_leased and the other store is asked back; once it has synced, the spend goes through",
          arguments: Backend.all)
    func borrowAndRecall(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let ada = try self.ada("+15551300", at: one)
        try sync(two, hub)
        let free = 10_000 - (try hubLeases(ada).values.reduce(Rights.zero, +).value)
        #expect(free > 0 && free < 8_000)
        let refused = try buy(8_000, ada, at: two, online: true)
        #expect(refused.status == 402)
        #expect(refused.errorCode == "balance_leased")
        #expect(try two.member(ada.id).balance == 10_000)
        try sync(one, hub)  // store one hears the recall ...
        try sync(one, hub)  // ... and gives its lease back
        #expect(try hubLeases(ada)[s1] == .zero)
        #expect(try buy(8_000, ada, at: two, online: true).status == 201)
        try sync(two, hub)
        #expect(try hub.member(ada.id)?.balance == 2_000)
    }

    @Test("a lease that ended is spent no more offline; its store gives it back and the hub may lend it again", arguments: Backend.all)
    func leaseEnds(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try self.ada("+15551400", at: one)
        let held = try #require(try one.ownLeases()[ada.id])
        #expect(held.value > 0)
        clock.advance(25 * 3_600_000)
        #expect(try buy(100, ada, at: one, online: false).errorCode == "offline_lease_exceeded")
        #expect(try one.settleLeases() == 1)
        #expect(try one.ownLeases()[ada.id] == .zero)
        try sync(one, hub)
        // Back with the hub: the spend borrows online, and the store is lent a new lease.
        #expect(try buy(100, ada, at: one, online: true).status == 201)
        try sync(one, hub)
        #expect((try one.ownLeases()[ada.id]?.value ?? 0) > 0)
        #expect(try hub.member(ada.id)?.balance == 9_900)
    }

    @Test("a chain that stops using leases gets every lease back, and offline spending follows the daily limit again", arguments: Backend.all)
    func leasesOff(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let ada = try self.ada("+15551500", at: one)
        try sync(two, hub)
        #expect(try buy(1_000, ada, at: two, online: true).status == 201)
        try sync(two, hub); try sync(one, hub)
        _ = try hub.publishRules(Programme(version: 2, name: "unleased").json)
        for _ in 0..<2 { try sync(one, hub); try sync(two, hub) }
        #expect(try hubLeases(ada).values.allSatisfy(\.isZero))
        // 9,000 is within the node's v1 limit of 20,000 a day and the balance it knows.
        let offline = try buy(9_000, ada, at: two, online: false)
        #expect(offline.status == 201)
        #expect(try offline.decode(NodeAPI.TransactionResult.self).transaction.authorization == .offline)
    }

    @Test("revoking a store gives its leases back to the hub at once", arguments: Backend.all)
    func revokedStoreLeasesComeBack(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try self.ada("+15551800", at: one, settled: false)
        try sync(one, hub)
        #expect((try hubLeases(ada)[s1]?.value ?? 0) > 0)
        try hub.revokeStore(s1)
        #expect(try hubLeases(ada)[s1] == .zero)
        #expect(try hub.memberLeases(ada.id).hubValue == 10_000)
    }

    @Test("a store may not lend itself rights, give back another store's lease, or draw more from its lease than it spends", arguments: Backend.all)
    func storesCannotForgeRights(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try enrol(one, "Ada", "+15551600")
        try sync(one, hub)
        func op(_ seq: UInt64, _ body: OperationBody) -> TesseraCore.Operation {
            TesseraCore.Operation(id: OperationID(origin: s1, seq: 1_000 + seq), hlc: HLCTimestamp(wallMs: clock.now(), counter: UInt16(seq)), body: body)
        }
        var overdrawn = Purchase(member: ada.id, amount: 100, valueSpent: 100)
        overdrawn.leaseValue = -200
        let forged = [
            op(1, .leaseGranted(LeaseGranted(member: ada.id, store: s1, value: 5_000, points: 0, expiresMs: clock.now() + 1_000))),
            op(2, .leaseReturned(LeaseReturned(member: ada.id, store: s2, value: 5_000, points: 0, reason: "expired"))),
            op(3, .purchase(overdrawn)),
            op(4, .leaseRecalled(LeaseRecalled(member: ada.id, store: s2, value: 1, points: 0))),
        ]
        #expect(try hub.push(forged, from: s1).map(\.status) == [.rejected, .rejected, .rejected, .rejected])
        #expect(try hubLeases(ada).isEmpty)
    }

    @Test("a spend the node voided after the hub had accepted it gives its draw back to the store's lease", arguments: Backend.all)
    func voidedSpendReturnsItsDraw(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try self.ada("+15551700", at: one)
        // Beyond the lease (its target is half of the 10,000): the hub must lend the rest.
        let pending = try awaitingHub(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 6_000, payFromBalance: true), key: nil))
        #expect(try hub.authorize(AuthorizeRequest(prior: try one.prior(for: pending), op: pending.op), from: s1).decision == .accepted)
        // The answer is lost, and the node crashes before it can settle: the spend is voided.
        #expect(try one.voidInterruptedSpends() == 1)
        for _ in 0..<2 { try sync(one, hub) }
        #expect(try hub.member(ada.id)?.balance == 10_000)
        let atNode = try #require(try one.ownLeases()[ada.id])
        #expect(try hubLeases(ada)[s1] == atNode)
        // The draw came back with the reversal: the leases hold no more than the member.
        #expect(try hubLeases(ada).values.reduce(0) { $0 + $1.value } <= 10_000)
        #expect(atNode.value >= 5_000)
    }
}
