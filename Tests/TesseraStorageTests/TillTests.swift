import Foundation
import Testing
import GRDB
import TesseraCore
import TesseraProtocol
import TesseraStorage

@Suite("A node's till")
struct TillTests {
    let dir: TempDir
    let hub: HubStore
    let clock = TestClock()
    let node: NodeStore

    init() throws {
        dir = try TempDir()
        hub = try HubStore(path: dir.path("hub.sqlite"))
        _ = try hub.addStore(s1, name: "One")
        node = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
    }

    func opCount() throws -> Int { try node.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ops") ?? 0 } }

    func key(_ k: String, _ body: String) -> IdempotencyKey {
        IdempotencyKey(key: k, method: "POST", path: "/x", body: Data(body.utf8))
    }

    @Test("the outbox and the counts by status are read through the index of unacknowledged operations, which pulled operations stay out of")
    func statusIndex() throws {
        let ada = try enrol(node, "Ada", "+15550191")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 500), key: nil)
        try sync(node, hub)
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 700), key: nil)
        try node.pool.read { db in
            // The node's own queries by status (NodeStore), as written there.
            for sql in ["SELECT * FROM ops WHERE status = 'pending' AND status <> 'acked' ORDER BY seq LIMIT 10",
                        "SELECT COUNT(*) FROM ops WHERE status = 'rejected' AND status <> 'acked'",
                        "SELECT * FROM ops WHERE status = 'authorizing' AND status <> 'acked' AND hlc < 5"] {
                let plan = try String.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, adapter: ColumnMapping(["detail": "detail"])).joined(separator: "; ")
                #expect(plan.contains("USING INDEX ops_status") || plan.contains("USING COVERING INDEX ops_status"), "\(sql): \(plan)")
            }
            // Two acknowledged, one pending: only the pending one is in the index.
            #expect(try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'ops_status'")?.hasSuffix("WHERE status <> 'acked'") == true)
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ops INDEXED BY ops_status WHERE status <> 'acked'") == 1)
        }
        #expect(try node.counts().pending == 1 && node.pendingBatch(limit: 10).count == 1)
    }

    @Test("till writes made at once share commits; a bad one fails alone, and every other is on disk when its till hears success")
    func groupCommit() async throws {
        let ada = try enrol(node, "Ada", "+15550190")
        let node = self.node
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<60 {
                group.addTask {
                    let member = i % 6 == 0 ? MemberID("m-nobody-1") : ada.id
                    return (try? await node.committing { try node.recharge(member, NodeAPI.Recharge(amount: 100), key: nil) })?.status == 201
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 50)
        let (batches, writes) = node.groupCommits
        #expect(writes == 60 && batches < writes, "\(batches) commits for \(writes) writes")
        // Durable: a second connection to the file (as after a crash) sees all fifty.
        let reopened = try NodeStore(path: dir.path("\(s1).sqlite"), store: s1)
        #expect(try reopened.member(ada.id).balance == 5_000)
        // A failed write, undone in its savepoint, gives its sequence number back: the store's
        // operations are numbered 1, 2, 3 ... with no gap (the enrolment and the fifty).
        let seqs = try await node.pool.read { try Int.fetchAll($0, sql: "SELECT seq FROM ops WHERE origin = ? ORDER BY seq", arguments: [s1.rawValue]) }
        #expect(seqs == Array(1...51))
    }

    @Test("a node restarted with its wall clock set back (within the clock's bounded drift) stamps its next sale after its last one")
    func clockAfterRestart() throws {
        let ada = try enrol(node, "Ada", "+15550192")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 1_000), key: nil)
        func latest(_ node: NodeStore) throws -> Row? {
            try node.pool.read { try Row.fetchOne($0, sql: "SELECT seq, hlc FROM ops WHERE origin = ? ORDER BY seq DESC LIMIT 1", arguments: [s1.rawValue]) }
        }
        let before = try #require(try latest(node))
        // Two minutes back: within the 5 minutes a replica's clock follows a stamp ahead of it
        // (spec §2); the stamp on disk is the last sale's own (its row), nothing else records it.
        let behind = TestClock(clock.now() - 120_000)
        let restarted = try NodeStore(path: dir.path("\(s1).sqlite"), store: s1, physicalMs: { behind.now() })
        _ = try restarted.recharge(ada.id, NodeAPI.Recharge(amount: 1_000), key: nil)
        let after = try #require(try latest(restarted))
        #expect(after["hlc"] as Int64 > before["hlc"] as Int64)
        #expect(after["seq"] as Int64 == before["seq"] as Int64 + 1)
    }

    @Test("bad input gets a clear error and changes nothing")
    func badInput() throws {
        #expect(throws: DomainError.self) { try node.enrol(NodeAPI.Enrol(name: "", phone: "+15550100"), key: nil) }
        #expect(throws: DomainError.self) { try node.enrol(NodeAPI.Enrol(name: "Ada", phone: "nope"), key: nil) }
        #expect(throws: DomainError.self) { try node.enrol(NodeAPI.Enrol(name: "Ada", phone: "+15550100", birthday: "31/12"), key: nil) }
        let ada = try enrol(node, "Ada", "+15550100")
        let before = try opCount()
        #expect(throws: DomainError.self) { try node.recharge(ada.id, NodeAPI.Recharge(amount: 0), key: nil) }
        #expect(throws: DomainError.self) { try node.recharge(ada.id, NodeAPI.Recharge(amount: -100), key: nil) }
        #expect(throws: DomainError.self) { try node.recharge(MemberID("m-nobody-1"), NodeAPI.Recharge(amount: 100), key: nil) }
        #expect(throws: DomainError.self) { try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 100, redeemPoints: 101), key: nil) }
        #expect(throws: DomainError.self) { try node.enrol(NodeAPI.Enrol(name: "Other", phone: "+1 555 0100"), key: nil) }
        #expect(try opCount() == before)
        #expect(try node.member(ada.id).balance == 0)
    }

    @Test("a full disk or a read-only database: the till gets storage_unavailable, nothing is half-written, writes resume once fixed")
    func diskTrouble() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        // The disk fills up: SQLite may use no more pages than the file has now.
        let pages = try node.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 }
        try node.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA max_page_count = \(pages)") }
        var told: Int64 = 0
        var refusal: DomainError?
        for i in 1...2000 {
            do {
                let answer = try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: key("full-\(i)", "{}"))
                #expect(answer.status == 201)
                told += 100
            } catch let error as DomainError {
                refusal = error
                break
            }
        }
        let full = try #require(refusal, "the disk never filled")
        #expect(full.code == .storageUnavailable && HTTPStatusForError.status(of: full.code) == 503)
        #expect(try node.member(ada.id).balance == told, "the refused write left nothing behind")
        let ops = try opCount()
        try node.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA max_page_count = 1073741823") }
        #expect(try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil).status == 201)
        #expect(try opCount() == ops + 1 && (try node.member(ada.id)).balance == told + 100)

        // The data folder turns read-only.
        try node.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA query_only = ON") }
        #expect(throws: DomainError.self) { try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 50), key: nil) }
        #expect(try opCount() == ops + 1)
        try node.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA query_only = OFF") }
        #expect(try spend(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 50), key: nil), node: node, hub: hub).status == 201)
    }

    @Test("a spend left unsettled (its settling write failed) is voided after a minute; settling it later tells the till it did not happen")
    func staleSpend() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 1000), key: nil)
        let pending = try awaitingHub(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 400, payFromBalance: true), key: nil))
        #expect(try node.voidStaleSpends() == 0, "a spend still within its minute is left alone")
        clock.advance(61_000)
        #expect(try node.voidStaleSpends() == 1)
        #expect(try node.voidStaleSpends() == 0)
        let late = try node.finishSpend(pending, outcome: .unreachable, key: nil)
        #expect(late.status == 409 && late.errorCode == "voided")
        #expect(try node.member(ada.id).balance == 1000)
    }

    @Test("a retry with the same Idempotency-Key returns the first answer and changes nothing")
    func idempotentRetry() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        let k = key("till-7-0001", "{\"amount\":500}")
        let first = try node.recharge(ada.id, NodeAPI.Recharge(amount: 500), key: k)
        let again = try node.recharge(ada.id, NodeAPI.Recharge(amount: 500), key: k)
        #expect(first == again)
        #expect(try node.member(ada.id).balance == 500)
        #expect(throws: DomainError(.idempotencyKeyReused, "this Idempotency-Key was used for a different request")) {
            try node.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: key("till-7-0001", "{\"amount\":900}"))
        }
    }

    @Test("a spend retried with its key after an unreachable hub returns the first answer, and is taken once")
    func idempotentSpend() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 5000), key: nil)
        let k = key("till-1-42", "{\"amount\":1000,\"pay_from_balance\":true}")
        let request = NodeAPI.PurchaseRequest(amount: 1000, payFromBalance: true)
        let first = try spend(try node.beginPurchase(ada.id, request, key: k), node: node, hub: nil, key: k)
        let again = try spend(try node.beginPurchase(ada.id, request, key: k), node: node, hub: hub, key: k)
        #expect(first.status == 201 && first == again)
        #expect(try node.member(ada.id).balance == 4000)
        try sync(node, hub)
        #expect(try hub.member(ada.id)?.balance == 4000)
    }

    @Test("offline, a spend is allowed up to the known balance and the daily limit; the limit resets the next day")
    func offlineLimit() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 50_000), key: nil)
        let pay = { (amount: Int64) throws -> TillAnswer in
            try spend(try self.node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: amount, payFromBalance: true), key: nil), node: self.node, hub: nil)
        }
        let first = try pay(15_000)
        #expect(first.status == 201)
        #expect(try first.decode(NodeAPI.TransactionResult.self).transaction.authorization == .offline)
        let over = try pay(5001)
        #expect(over.status == 402 && over.errorCode == "offline_limit_exceeded")
        #expect(try pay(5000).status == 201)
        clock.advance(86_400_000)
        #expect(try pay(20_000).status == 201)
        #expect(try node.member(ada.id).balance == 10_000)
        // The refused spend left a void, which syncs like any operation; the hub agrees.
        try sync(node, hub)
        #expect(try hub.member(ada.id)?.balance == 10_000)
        #expect(try hub.log().contains { $0.op.kind == "operation.voided" })
    }

    @Test("offline, a spend above the known balance is refused")
    func offlineInsufficient() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 300), key: nil)
        let answer = try spend(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 301, payFromBalance: true), key: nil), node: node, hub: nil)
        #expect(answer.status == 402 && answer.errorCode == "insufficient_balance")
        #expect(try node.member(ada.id).balance == 300)
    }

    @Test("a purchase earns one point per unit, redeems points as cash, and a refund reverses exactly that")
    func purchaseAndRefund() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 10_000), key: nil)
        try sync(node, hub)
        let first = try spend(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 5000), key: nil), node: node, hub: hub)
        #expect(try first.decode(NodeAPI.TransactionResult.self).member.points == 50)
        let second = try spend(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 2540, payFromBalance: true, redeemPoints: 40), key: nil), node: node, hub: hub)
        let result = try second.decode(NodeAPI.TransactionResult.self)
        #expect(result.transaction.valueSpent == 2500 && result.transaction.pointsRedeemed == 40 && result.transaction.pointsEarned == 25)
        #expect(result.member.balance == 7500 && result.member.points == 35)
        let refund = try spend(try node.beginRefund(result.transaction.id, key: nil), node: node, hub: hub)
        #expect(refund.status == 201)
        #expect(try node.member(ada.id).balance == 10_000)
        #expect(try node.member(ada.id).points == 50)
        #expect(throws: DomainError.self) { try node.beginRefund(result.transaction.id, key: nil) }
        try sync(node, hub)
        #expect(try hub.member(ada.id) == (try node.member(ada.id)))
    }

    @Test("refunding a recharge takes the value back only if the member still holds it")
    func rechargeRefund() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        let recharge = try node.recharge(ada.id, NodeAPI.Recharge(amount: 1000), key: nil).decode(NodeAPI.TransactionResult.self).transaction.id
        _ = try spend(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 600, payFromBalance: true), key: nil), node: node, hub: nil)
        try sync(node, hub)
        let refused = try spend(try node.beginRefund(recharge, key: nil), node: node, hub: hub)
        #expect(refused.status == 402)
        #expect(try node.member(ada.id).balance == 400)
    }

    @Test("a blocked card no longer finds the member; a replacement card does, and the balance stays")
    func cards() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 700), key: nil)
        let old = try #require(ada.card)
        let replaced = try node.issueCard(ada.id, NodeAPI.NewCard(), key: nil).decode(MemberView.self)
        let new = try #require(replaced.card)
        #expect(new != old)
        #expect(throws: DomainError(.cardBlocked, "card \(old) is blocked")) { try node.member(card: old) }
        #expect(try node.member(card: new).balance == 700)
        _ = try node.blockCard(new, key: nil)
        #expect(throws: DomainError.self) { try node.member(card: new) }
        #expect(try node.member(ada.id).card == nil)
        #expect(try node.member(ada.id).balance == 700)
    }

    @Test("a spend interrupted by a crash while asking the hub is voided at restart, never applied later")
    func interruptedSpend() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        let pending = try awaitingHub(try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 900, payFromBalance: true), key: nil))
        // The process dies here. At restart:
        let clock = self.clock
        let restarted = try NodeStore(path: dir.path("s1.sqlite"), store: s1, physicalMs: { clock.now() })
        #expect(try restarted.voidInterruptedSpends() == 1)
        try sync(restarted, hub)
        #expect(try hub.authorize(AuthorizeRequest(prior: [], op: pending.op), from: s1).code == .voided)
        #expect(try restarted.member(ada.id).balance == 900)
        #expect(try hub.member(ada.id)?.balance == 900)
    }

    @Test("an operation the hub rejects is set aside and counted; it never blocks the outbox")
    func rejectedIsSetAside() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil)
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 200), key: nil)
        let batch = try node.pendingBatch(limit: 10)
        try node.recordPush([PushResult(id: batch[1].id, status: .rejected, reason: "test")])
        #expect(try node.counts().rejected == 1)
        #expect(try node.pendingBatch(limit: 10).map(\.id) == [batch[0].id, batch[2].id])
        #expect(try node.member(ada.id).balance == 200)
        // Its entry went, and the member's sums with it (the balance above is read from them).
        #expect(try node.entrySumProblems().isEmpty)
        try node.recordPush([PushResult(id: batch[2].id, status: .rejected, reason: "test")])
        #expect(try node.member(ada.id).balance == 0)
        #expect(try node.entrySumProblems().isEmpty)
    }

    @Test("a node's own operations pulled back before their push was answered are acked, counted once, and never pushed again")
    func ownOperationsPulledBack() throws {
        let ada = try enrol(node, "Ada", "+15550100")
        _ = try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil)
        // The push reached the hub, its answer did not: the node still holds both as pending.
        _ = try hub.push(try node.pendingBatch(limit: 10), from: s1)
        #expect(try node.counts().pending == 2)
        try node.applyPull(try hub.pull(after: try node.counts().cursor, limit: 100, for: s1, pending: nil))
        #expect(try node.counts().pending == 0)
        #expect(try node.pendingBatch(limit: 10).isEmpty)
        #expect(try node.member(ada.id).balance == 100)
        #expect(try node.entrySumProblems().isEmpty)
        // Pulled again from the start (a cursor reset), nothing changes.
        try node.applyPull(try hub.pull(after: 0, limit: 100, for: s1, pending: nil))
        #expect(try node.member(ada.id).balance == 100)
        #expect(try hub.member(ada.id)?.balance == 100)
    }

    @Test("a node refuses till writes until it has loaded the chain from the hub")
    func notBootstrapped() throws {
        let fresh = try NodeStore(path: dir.path("fresh.sqlite"), store: s2)
        #expect(throws: DomainError.self) { try fresh.enrol(NodeAPI.Enrol(name: "Ada", phone: "+15550100"), key: nil) }
    }

    @Test("a data folder belongs to one store")
    func storeIdentity() throws {
        #expect(throws: DomainError.self) { try NodeStore(path: dir.path("s1.sqlite"), store: s2) }
    }
}
