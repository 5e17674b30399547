import Foundation
import Testing
import GRDB
import Synchronization
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage

@Suite("Reads of a member's state")
struct ReplicaReadsTests {
    @Test("a member's current card is the one SQLite's ORDER BY issued DESC, card DESC would take first: blocked and unissued cards left out, ties by number, bytes compared as SQLite does")
    func currentCard() throws {
        let dir = try TempDir()
        let node = try NodeStore(path: dir.path("n.sqlite"), store: s1)
        var rng = SplitMix64(seed: 7)
        // Stamps and numbers from a few values, so that ties happen; "é" in two forms (one
        // byte sequence sorts before the other, though Swift finds them equal).
        let stamps = ["0000000000000001/s1", "0000000000000002/s1", "0000000000000002/s2", "e\u{301}", "\u{e9}", nil]
        let numbers = ["S1-000001", "S1-000002", "S2-000001", "c\u{e9}", "ce\u{301}"]
        try node.pool.write { db in
            for round in 0..<200 {
                let member = "m-\(round)"
                let count = Int(rng.next() % 4)
                for i in 0..<count {
                    let issued = stamps[Int(rng.next() % UInt64(stamps.count))]
                    let card = numbers[Int(rng.next() % UInt64(numbers.count))] + "-\(round)-\(i % 2)"
                    try db.execute(sql: "INSERT OR IGNORE INTO cards (card, member_id, issued, blocked) VALUES (?, ?, ?, ?)",
                                   arguments: [card, member, issued, rng.next() % 4 == 0 ? 1 : 0])
                }
                let sorted = try String.fetchOne(db, sql: """
                    SELECT card FROM cards WHERE member_id = ? AND blocked = 0 AND issued IS NOT NULL
                    ORDER BY issued DESC, card DESC LIMIT 1
                    """, arguments: [member])
                #expect(try Replica.currentCard(of: MemberID(member), db)?.rawValue == sorted, "\(member)")
            }
        }
    }
}

/// The statements a sync and a till's day run, each read back with EXPLAIN: none may build a
/// temporary B-tree (`OpenEphemeral`: an `IN` list of more than two values, `IN` a subquery or
/// `json_each`, a recursive query's queue, `ORDER BY ... LIMIT` without an index), which SQLite
/// makes and drops each time the statement runs. Three such were a tenth of a sale and of a
/// replica's fold.
@Suite("Statements of the hot paths")
struct HotStatementsTests {
    @Test("pushes, pulls, authorisations and a till's sales, enrolments and recharges run no statement that builds a temporary B-tree")
    func noTemporaryBTrees() throws {
        let dir = try TempDir()
        let hub = try HubStore(path: dir.path("hub.sqlite"))
        _ = try hub.addStore(s1, name: "One")
        _ = try hub.addStore(s2, name: "Two")
        let one = try bootstrappedNode(dir, s1, hub: hub)
        let two = try bootstrappedNode(dir, s2, hub: hub)
        let pools = [hub.pool, one.pool, two.pool]
        let seen = Mutex<[Int: Set<String>]>([:])
        for (i, pool) in pools.enumerated() {
            try pool.writeWithoutTransaction { db in
                db.trace { event in
                    if case .statement(let statement) = event { _ = seen.withLock { $0[i, default: []].insert(statement.sql) } }
                }
            }
        }
        let ada = try enrol(one, "Ada", "+15550101")
        let bob = try enrol(one, "Bob", "+15550102")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 10_000), key: nil)
        for round in 0..<3 {
            #expect(try spend(one.beginPurchase(bob.id, NodeAPI.PurchaseRequest(amount: 1_000 + Int64(round)), key: nil), node: one, hub: hub).status == 201)
            var fromBalance = NodeAPI.PurchaseRequest(amount: 500)
            fromBalance.payFromBalance = true
            #expect(try spend(one.beginPurchase(ada.id, fromBalance, key: nil), node: one, hub: hub).status == 201)
            try sync(one, hub)
            try sync(two, hub)
            #expect(try spend(two.beginPurchase(ada.id, fromBalance, key: nil), node: two, hub: hub).status == 201)
            #expect(try spend(two.beginPurchase(ada.id, fromBalance, key: nil), node: two, hub: nil).status == 201) // offline
            try sync(two, hub)
        }
        var building: [String] = [], count = 0
        // Transactions and pragmas, and the statements of triggers (traced as "-- " and their text, of NEW and OLD).
        let skipped = ["BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK", "PRAGMA", "EXPLAIN", "--"]
        for (i, pool) in pools.enumerated() {
            let statements = seen.withLock { $0[i] ?? [] }.filter { sql in !skipped.contains { sql.uppercased().hasPrefix($0) } }
            count += statements.count
            try pool.writeWithoutTransaction { db in
                for sql in statements.sorted() {
                    let statement = try db.makeStatement(sql: "EXPLAIN " + sql)
                    statement.setUncheckedArguments(StatementArguments())
                    if try Row.fetchAll(statement).contains(where: { $0["opcode"] as String == "OpenEphemeral" }) { building.append(sql) }
                }
            }
        }
        // Once a push, not once an operation: the hub looks a whole batch's ids up at once.
        let perPush: Set<String> = [
            "SELECT id, version FROM ops WHERE id IN (SELECT value FROM json_each(?))",
            "SELECT of FROM voids WHERE of IN (SELECT value FROM json_each(?))",
            "SELECT op_id, reason FROM rejected WHERE op_id IN (SELECT value FROM json_each(?))",
        ]
        building.removeAll { perPush.contains($0) }
        #expect(building.isEmpty, "\(building.count) statements build a temporary B-tree:\n\(building.joined(separator: "\n---\n"))")
        #expect(count > 40, "\(count) statements seen")
    }
}
