import Foundation
import Testing
@testable import TesseraCore

@Suite("Lease plans and the fold of rights")
struct LeaseTests {
    let a = StoreID(rawValue: "a")!, b = StoreID(rawValue: "b")!, c = StoreID(rawValue: "c")!
    let policy = Programme.Leases(sharePercent: 50, stores: 2, memberCapMinor: 4_000, memberCapPoints: 1_000, hours: 24)

    @Test("the lent share is split between the member's two most recent stores by visits; the rounding goes to the most visited")
    func targets() {
        let t = LeasePlan.targets(policy: policy, total: Rights(value: 5_001, points: 301), visits: [(a, 2), (b, 1), (c, 5)])
        #expect(t.keys.sorted() == [a, b])
        #expect(t[a] == Rights(value: 1_667, points: 100) && t[b] == Rights(value: 833, points: 50))
        // The cap per member bounds the total whatever the balance.
        let capped = LeasePlan.targets(policy: policy, total: Rights(value: 1_000_000, points: 0), visits: [(a, 1)])
        #expect(capped[a] == Rights(value: 4_000, points: 0))
        #expect(LeasePlan.targets(policy: policy, total: Rights(value: 1_000), visits: []).isEmpty)
    }

    @Test("grants never exceed what the hub holds, go only to a store in contact, and top up only below 90 % of the target")
    func grants() {
        let total = Rights(value: 6_000, points: 0)
        let actions = LeasePlan.actions(policy: policy, total: total, held: [a: Rights(value: 5_500)], visits: [(b, 3), (a, 1)],
                                        online: [b], storeRoom: [:], endingSoon: [], recalled: [])
        // The hub holds 500: store b's target is 2,250, it is lent 500; store a holds far above its
        // target of 750 and is asked for the excess.
        #expect(actions.contains(.grant(b, Rights(value: 500))))
        #expect(actions.contains(.recall(a, Rights(value: 4_750))))
        #expect(!actions.contains { if case .grant(a, _) = $0 { true } else { false } })
        let nearTarget = LeasePlan.actions(policy: policy, total: total, held: [b: Rights(value: 2_800)], visits: [(b, 1)],
                                           online: [b], storeRoom: [:], endingSoon: [], recalled: [])
        #expect(nearTarget.isEmpty)
        let renewed = LeasePlan.actions(policy: policy, total: total, held: [b: Rights(value: 2_800)], visits: [(b, 1)],
                                        online: [b], storeRoom: [:], endingSoon: [b], recalled: [])
        #expect(renewed == [.grant(b, Rights(value: 200))])
        let roomy = LeasePlan.actions(policy: policy, total: total, held: [:], visits: [(b, 1)],
                                      online: [b], storeRoom: [b: 100], endingSoon: [], recalled: [])
        #expect(roomy == [.grant(b, Rights(value: 100))])
    }

    @Test("a store the member left is asked for all of its lease, once")
    func recalls() {
        let held = [c: Rights(value: 300, points: 20)]
        let first = LeasePlan.actions(policy: policy, total: Rights(value: 1_000, points: 100), held: held, visits: [(a, 1)],
                                      online: [], storeRoom: [:], endingSoon: [], recalled: [])
        #expect(first == [.recall(c, Rights(value: 300, points: 20))])
        let again = LeasePlan.actions(policy: policy, total: Rights(value: 1_000, points: 100), held: held, visits: [(a, 1)],
                                      online: [], storeRoom: [:], endingSoon: [], recalled: [c])
        #expect(again.isEmpty)
    }

    @Test("a spend draws from the lease as far as it covers it; offline, only a fully covered spend is allowed")
    func draws() {
        #expect(LeasePlan.drawn(value: 700, points: 50, lease: Rights(value: 500, points: 80)) == Rights(value: 500, points: 50))
        #expect(LeasePlan.offlineRefusal(Debit(valueMinor: 700, points: 50), drawn: Rights(value: 500, points: 50))?.code == .offlineLeaseExceeded)
        #expect(LeasePlan.offlineRefusal(Debit(valueMinor: 500, points: 50), drawn: Rights(value: 500, points: 50)) == nil)
    }

    @Test("the rights fold is order-free: any order of grants, spends and returns gives every store the same lease")
    func foldCommutes() {
        let m = MemberID("m-a-1")
        let hub = StoreID.hub
        func op(_ origin: StoreID, _ seq: UInt64, _ body: OperationBody) -> TesseraCore.Operation {
            TesseraCore.Operation(id: OperationID(origin: origin, seq: seq), hlc: HLCTimestamp(wallMs: 1_000 + Int64(seq), counter: 0), body: body)
        }
        let ops = [
            op(a, 1, .valueRecharged(ValueRecharged(member: m, amount: 1_000, leaseValue: 1_000))),
            op(hub, 1, .leaseGranted(LeaseGranted(member: m, store: b, value: 300, points: 5, expiresMs: 9_999))),
            op(a, 2, .purchase(drawing(400))),
            op(b, 1, .purchase(drawing(100))),
            op(hub, 2, .leaseRecalled(LeaseRecalled(member: m, store: a, value: 600, points: 0))),
            op(a, 3, .leaseReturned(LeaseReturned(member: m, store: a, value: 600, points: 0, reason: "recalled", recall: OperationID(origin: hub, seq: 2)))),
        ]
        func drawing(_ value: Int64) -> Purchase {
            var p = Purchase(member: m, amount: value, valueSpent: value)
            p.leaseValue = -value
            return p
        }
        let expected: [StoreID: Rights] = [a: .zero, b: Rights(value: 200, points: 5)]
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20 {
            let state = ChainState(folding: (ops + ops.prefix(2)).shuffled(using: &rng))
            #expect(state.leases(of: m) == expected)
            #expect(state.recallAnswers == [OperationID(origin: hub, seq: 2)])
        }
    }

    @Test("a programme's lease policy is checked: percents, store counts, caps and hours in range")
    func policyValidation() throws {
        var p = Programme(version: 1, name: "p", leases: Programme.Leases())
        try p.validate()
        p.leases?.sharePercent = 101
        #expect(throws: DomainError.self) { try p.validate() }
        p.leases = Programme.Leases(stores: 0)
        #expect(throws: DomainError.self) { try p.validate() }
        p.leases = Programme.Leases(hours: 0)
        #expect(throws: DomainError.self) { try p.validate() }
        let parsed = try Programme.parse(Data(#"{"version":1,"name":"p","leases":{"share_percent":30}}"#.utf8))
        #expect(parsed.leases == Programme.Leases(sharePercent: 30))
        #expect(throws: DomainError.self) { try Programme.parse(Data(#"{"version":1,"name":"p","leases":{"share":30}}"#.utf8)) }
    }
}
