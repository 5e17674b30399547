import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

extension TillAnswer {
    /// The body the till's operation recorded (its receipt).
    func receipt<T: Decodable>(_ type: T.Type) throws -> T {
        let result = try decode(NodeAPI.TransactionResult.self)
        let json = try #require(result.transaction.receipt)
        return try JSONDecoder().decode(type, from: try JSONEncoder().encode(json))
    }
}

/// A programme with one rule changed, published as the next version.
func nextVersion(_ programme: Programme, _ change: (inout Programme) -> Void) -> JSONValue {
    var next = programme
    next.version += 1
    change(&next)
    return next.json
}

/// Every case runs on each database the hub can use (PostgreSQL when a server is given).
@Suite("The programme across hub and nodes", .serialized)
final class ProgrammeStoreTests {
    let dir: TempDir
    let clock = TestClock(at("2026-03-04 12:00", "Asia/Shanghai")) // a Wednesday
    private(set) var hub: HubStore!
    private(set) var one: NodeStore!
    private(set) var freshMarket: Programme!

    init() throws {
        dir = try TempDir()
    }

    func use(_ backend: Backend) throws {
        hub = try backend.hubWithTwoStores(dir, clock: clock)
        one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        freshMarket = try Examples.programme("fresh-market")
        #expect(try hub.publishRules(try Examples.json("fresh-market")).version == 1)
        try sync(one, hub)
    }

    func ops(_ node: NodeStore) throws -> Int { try node.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ops") ?? 0 } }

    @Test("a published version reaches the node through sync; enrolment, recharge and sale apply it and record it", arguments: Backend.all)
    func publishedAndApplied(_ backend: Backend) throws {
        try use(backend)
        #expect(try one.programme().version == 1)
        let ada = try enrol(one, "Ada", "+15550100")
        #expect(ada.coupons.map(\.template) == ["welcome"] && ada.tier == "regular")
        let recharge = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        let loaded = try recharge.receipt(ValueRecharged.self)
        #expect(loaded.bonus == 2000 && loaded.rulesVersion == 1 && loaded.coupons.map(\.template) == ["recharge-gift"])
        let welcome = try #require(ada.coupons.first).id
        let sale = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 10_000, payFromBalance: true, coupon: welcome), key: nil),
                             node: one, hub: hub)
        #expect(sale.status == 201)
        let body = try sale.receipt(Purchase.self)
        #expect(body.couponDiscount == 1000 && body.valueSpent == 9000 && body.bonusSpent == 0 && body.pointsEarned == 90)
        #expect(body.rulesVersion == 1 && body.pointsExpireOn == "2027-12-31" && body.qualifying == 90 && body.coupon == welcome)
        try sync(one, hub)
        let atNode = try one.member(ada.id), atHub = try #require(try hub.member(ada.id))
        #expect(atNode == atHub)
        #expect(atHub.balance == 13_000 && atHub.bonus == 2000 && atHub.points == 90 && atHub.coupons.map(\.template) == ["recharge-gift"])
    }

    @Test("versions only go up, and a wrong document is refused with the field named", arguments: Backend.all)
    func publishingRules(_ backend: Backend) throws {
        try use(backend)
        #expect(throws: DomainError(.rulesVersionConflict, "version 1 is not above the published version 1; publish version 2")) {
            try hub.publishRules(try Examples.json("fresh-market"))
        }
        do {
            _ = try hub.publishRules(.object(["version": .int(2), "name": .string("x"), "earning": .object(["per_minor": .int(0)])]))
            Issue.record("accepted")
        } catch let error as DomainError {
            #expect(error.code == .invalidRules && error.message.hasPrefix("earning.per_minor"))
        }
        #expect(try hub.currentRules() == freshMarket)
    }

    @Test("a quote is committed exactly; if the rules change in between, the commit is refused and nothing is recorded", arguments: Backend.all)
    func quoteThenCommit(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        let quote = try one.quote(ada.id, NodeAPI.PurchaseRequest(amount: 5000))
        #expect(quote.purchase.pointsEarned == 50 && quote.cashDue == 5000)
        let sale = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 5000, quote: quote.quote), key: nil), node: one, hub: hub)
        #expect(try sale.receipt(Purchase.self) == quote.purchase)

        let again = try one.quote(ada.id, NodeAPI.PurchaseRequest(amount: 5000))
        _ = try hub.publishRules(nextVersion(freshMarket) { $0.earning.points = 2 })
        try sync(one, hub)
        let before = try ops(one)
        #expect(throws: DomainError.self) {
            try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 5000, quote: again.quote), key: nil)
        }
        #expect(try ops(one) == before)
        #expect(try one.quote(ada.id, NodeAPI.PurchaseRequest(amount: 5000)).purchase.pointsEarned == 100)
    }

    @Test("an offline node keeps its version; the new one arrives with the next sync; no receipt changes after the fact", arguments: Backend.all)
    func offlineKeepsItsVersion(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)
        _ = try hub.publishRules(nextVersion(freshMarket) { $0.earning.points = 3 })
        // The node has not synced: it still prices under version 1.
        let offline = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 10_000), key: nil), node: one, hub: nil)
        let old = try offline.receipt(Purchase.self)
        #expect(old.rulesVersion == 1 && old.pointsEarned == 100)
        try sync(one, hub)
        #expect(try one.programme().version == 2)
        let online = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 10_000), key: nil), node: one, hub: hub)
        #expect(try online.receipt(Purchase.self).rulesVersion == 2 && (try online.receipt(Purchase.self)).pointsEarned == 300)
        try sync(one, hub)
        // The first sale still counts 100 points everywhere: nothing was recomputed.
        #expect(try one.member(ada.id).points == 400 && (try hub.member(ada.id))?.points == 400)
        let logged = try hub.log().compactMap { item -> Purchase? in
            if case .purchase(let p) = try item.op.decoded() { return p } else { return nil }
        }
        #expect(logged.map(\.rulesVersion) == [1, 2] && logged.map(\.pointsEarned) == [100, 300])
    }

    @Test("one coupon redeemed offline at two stores is reported to head office, like an overdraft", arguments: Backend.all)
    func couponRedeemedTwice(_ backend: Backend) throws {
        try use(backend)
        let two = try bootstrappedNode(dir, s2, hub: hub, clock: clock)
        let ada = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)
        try sync(two, hub)
        let coupon = try #require(ada.coupons.first).id
        #expect(try two.member(ada.id).coupons.map(\.id) == [coupon])
        let buy = NodeAPI.PurchaseRequest(amount: 6000, coupon: coupon)
        #expect(try spend(try one.beginPurchase(ada.id, buy, key: nil), node: one, hub: nil).status == 201)
        #expect(try spend(try two.beginPurchase(ada.id, buy, key: nil), node: two, hub: nil).status == 201)
        try sync(one, hub)
        try sync(two, hub)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "coupon_reused" && $0.detail.contains(coupon) })
        // Both uses stand (the sales were made); the coupon is gone everywhere now.
        #expect(throws: DomainError.self) { try one.beginPurchase(ada.id, buy, key: nil) }
        #expect(try hub.member(ada.id)?.coupons.isEmpty == true)
    }

    @Test("expiry is an operation of the hub's: every replica shows the same number, and running the job twice changes nothing", arguments: Backend.all)
    func expiryJob(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.publishRules(nextVersion(freshMarket) { $0.expiry = .init(rule: .afterDays, days: 30) })
        try sync(one, hub)
        let ada = try enrol(one, "Ada", "+15550100")
        let sale = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 30_000), key: nil), node: one, hub: hub)
        #expect(try sale.receipt(Purchase.self).pointsExpireOn == "2026-04-03" && (try sale.receipt(Purchase.self)).pointsEarned == 300)
        clock.advance(10 * 86_400_000) // 2026-03-14: 100 points pay; 39 more are earned, until 2026-04-13
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 4000, redeemPoints: 100), key: nil), node: one, hub: hub)
        try sync(one, hub)
        clock.advance(20 * 86_400_000) // 2026-04-03, noon: the first lot is still spendable today
        #expect(try hub.runJobs(asOfMs: nil).expiries == 0)
        #expect(try one.member(ada.id).pointsAvailable == 239)
        clock.advance(86_400_000) // 2026-04-04: the first lot has ended; the 100 spent came out of it
        #expect(try one.member(ada.id).pointsAvailable == 39, "the node stops spending expired points before the hub records it")
        let report = try hub.runJobs(asOfMs: nil)
        #expect(report.expiries == 1 && report.pointsExpired == 200)
        #expect(try hub.runJobs(asOfMs: nil).expiries == 0)
        try sync(one, hub)
        let atNode = try one.member(ada.id), atHub = try #require(try hub.member(ada.id))
        #expect(atNode == atHub && atHub.points == 39 && atHub.pointsAvailable == 39)
    }

    @Test("birthday-month and wake-up coupons are issued once, deeper the longer a member sleeps", arguments: Backend.all)
    func scheduledCoupons(_ backend: Backend) throws {
        try use(backend)
        let ada = try one.enrol(NodeAPI.Enrol(name: "Ada", phone: "+15550100", birthday: "1990-03-21"), key: nil).decode(MemberView.self)
        let bo = try enrol(one, "Bo", "+15550101")
        _ = try spend(try one.beginPurchase(bo.id, NodeAPI.PurchaseRequest(amount: 1000), key: nil), node: one, hub: hub)
        try sync(one, hub)
        #expect(try hub.runJobs(asOfMs: nil).coupons == 1) // Ada's birthday month
        #expect(try hub.runJobs(asOfMs: nil).coupons == 0)
        clock.advance(31 * 86_400_000) // 2026-04-04: Bo asleep 31 days, Ada 31 days since enrolling
        #expect(try hub.runJobs(asOfMs: nil).coupons == 2)
        clock.advance(30 * 86_400_000)
        #expect(try hub.runJobs(asOfMs: nil).coupons == 2) // 61 days: wake-60 for both
        try sync(one, hub)
        #expect(try one.member(bo.id).coupons.map(\.template).sorted() == ["wake-60"], "wake-30 has lapsed after 14 days")
        #expect(try one.member(ada.id).coupons.map(\.template).contains("wake-60"))
    }

    @Test("refunds: in part at another store, proportionally; a refund is not refundable; never more than the sale", arguments: Backend.all)
    func refunds(_ backend: Backend) throws {
        try use(backend)
        let two = try bootstrappedNode(dir, s2, hub: hub, clock: clock)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        let sale = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 9999, payFromBalance: true), key: nil), node: one, hub: hub)
        let txn = try sale.decode(NodeAPI.TransactionResult.self).transaction.id
        try sync(one, hub)
        try sync(two, hub)
        let part = try spend(try two.beginRefund(txn, NodeAPI.RefundRequest(amount: 3333), key: nil), node: two, hub: hub)
        #expect(part.status == 201)
        let refund = try part.receipt(Refund.self)
        #expect(refund.value == 3333 && refund.pointsReversed == 33 && refund.qualifying == -33)
        #expect(throws: DomainError(.notRefundable, "s2:1 is itself a refund and cannot be refunded; record a new sale instead")) {
            try two.beginRefund(try part.decode(NodeAPI.TransactionResult.self).transaction.id, key: nil)
        }
        #expect(throws: DomainError(.refundTooLarge, "at most 6666 of transaction \(txn) can still be refunded, not 6667")) {
            try two.beginRefund(txn, NodeAPI.RefundRequest(amount: 6667), key: nil)
        }
        let rest = try spend(try two.beginRefund(txn, key: nil), node: two, hub: hub)
        #expect(try rest.receipt(Refund.self).pointsReversed == 99 - 33)
        try sync(two, hub)
        try sync(one, hub)
        let view = try one.member(ada.id)
        #expect(view.balance == 22_000 && view.points == 0 && view.qualifying == 0)
        #expect(try two.member(ada.id) == view)
    }

    @Test("a refunded recharge takes back its bonus and its coupon; a coupon already spent is reported", arguments: Backend.all)
    func rechargeRefund(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        let first = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        let firstID = try first.decode(NodeAPI.TransactionResult.self).transaction.id
        let refund = try spend(try one.beginRefund(firstID, key: nil), node: one, hub: hub)
        #expect(try refund.receipt(Refund.self).couponsRevoked == ["recharge-gift/\(firstID)"])
        let after = try one.member(ada.id)
        #expect(after.balance == 0 && after.bonus == 0 && !after.coupons.contains { $0.template == "recharge-gift" })

        let second = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        let secondID = try second.decode(NodeAPI.TransactionResult.self).transaction.id
        let gift = try #require(try one.member(ada.id).coupons.first { $0.template == "recharge-gift" }).id
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 3000, coupon: gift), key: nil), node: one, hub: hub)
        #expect(try spend(try one.beginRefund(secondID, key: nil), node: one, hub: hub).status == 201)
        try sync(one, hub)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "coupon_reused" && $0.detail.contains(gift) })
    }

    @Test("a refund its store voided after the hub applied it refunded nothing: the recharge can still be refunded in full", arguments: Backend.all)
    func voidedRefund(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        let recharge = try one.recharge(ada.id, NodeAPI.Recharge(amount: 20_000), key: nil)
        let rechargeID = try recharge.decode(NodeAPI.TransactionResult.self).transaction.id
        try sync(one, hub)
        // The hub accepts the refund, the answer is lost, the node dies: at restart it voids it.
        let pending = try awaitingHub(try one.beginRefund(rechargeID, key: nil))
        _ = try hub.authorize(AuthorizeRequest(prior: try one.prior(for: pending), op: pending.op), from: s1)
        #expect(try one.voidInterruptedSpends() == 1)
        try sync(one, hub)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "reversal" })
        #expect(try hub.member(ada.id)?.balance == 22_000)
        let again = try spend(try one.beginRefund(rechargeID, key: nil), node: one, hub: hub)
        #expect(again.status == 201)
        #expect(try again.receipt(Refund.self).cashBack == 20_000)
        try sync(one, hub)
        #expect(try hub.member(ada.id)?.balance == 0)
        #expect(try one.member(ada.id).balance == 0)
        let exceptions = try hub.exceptions(limit: 20)
        #expect(!exceptions.contains { $0.kind == "duplicate_refund" })
    }

    @Test("participation points and paid memberships follow the rules in force", arguments: Backend.all)
    func activitiesAndMemberships(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.publishRules(try Examples.programme("gym").json.with(version: 2))
        try sync(one, hub)
        let ada = try enrol(one, "Ada", "+15550100")
        let after = try one.awardActivity(ada.id, NodeAPI.ActivityRequest(activity: "class"), key: nil).decode(MemberView.self)
        #expect(after.points == 10)
        #expect(throws: DomainError.self) { try one.awardActivity(ada.id, NodeAPI.ActivityRequest(activity: "nap"), key: nil) }
        let member = try one.sellMembership(ada.id, NodeAPI.MembershipRequest(plan: "year"), key: nil).decode(MemberView.self)
        #expect(member.membership?.plan == "year" && member.membership?.until == "2027-03-03")
        let sale = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 10_000), key: nil), node: one, hub: hub)
        let body = try sale.receipt(Purchase.self)
        #expect(body.discount == 2000 && body.pointsEarned == 160 && body.membership == "year")
        try sync(one, hub)
        #expect(try hub.member(ada.id) == (try one.member(ada.id)))
    }

    @Test("head office awards points for an activity or by hand; taking more than the member has is refused", arguments: Backend.all)
    func headOfficePoints(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.publishRules(nextVersion(freshMarket) { $0.expiry = .init(rule: .afterDays, days: 30) })
        let ada = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)
        #expect(try hub.awardPoints(ada.id, NodeAPI.PointsAward(activity: "review")).points == 20)
        #expect(try hub.awardPoints(ada.id, NodeAPI.PointsAward(points: 100, reason: "apology for a late delivery")).points == 120)
        #expect(throws: DomainError.self) { try hub.awardPoints(ada.id, NodeAPI.PointsAward(points: 5)) }
        #expect(throws: DomainError.self) { try hub.awardPoints(ada.id, NodeAPI.PointsAward(activity: "nap")) }
        #expect(throws: DomainError(.insufficientPoints, "the member has 120 points to spend, fewer than 121")) {
            try hub.awardPoints(ada.id, NodeAPI.PointsAward(points: -121, reason: "correction"))
        }
        #expect(try hub.awardPoints(ada.id, NodeAPI.PointsAward(points: -20, reason: "correction")).points == 100)
        try sync(one, hub)
        #expect(try one.member(ada.id) == (try hub.member(ada.id)))
        clock.advance(31 * 86_400_000) // the awarded points follow the expiry rule like earned ones
        #expect(try one.member(ada.id).pointsAvailable == 0)
    }

    @Test("a node bootstrapped later gets the rules, lots, coupons and memberships in its snapshot", arguments: Backend.all)
    func snapshotCarriesTheProgramme(_ backend: Backend) throws {
        try use(backend)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 50_000), key: nil)
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 12_345, payFromBalance: true), key: nil), node: one, hub: hub)
        try sync(one, hub)
        let late = try bootstrappedNode(dir, s2, hub: hub, clock: clock)
        #expect(try late.programme() == freshMarket)
        #expect(try late.member(ada.id) == (try hub.member(ada.id)))
        #expect(try late.allMembers() == (try hub.allMembers()))
    }
}

extension JSONValue {
    /// The same document with another `version`.
    func with(version: Int) -> JSONValue {
        guard case .object(var fields) = self else { return self }
        fields["version"] = .int(Int64(version))
        return .object(fields)
    }
}
