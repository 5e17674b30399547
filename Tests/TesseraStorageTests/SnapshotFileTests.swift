import Foundation
import Testing
import GRDB
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage
import TesseraTestSupport

@Suite("Snapshot files")
struct SnapshotFileTests {
    /// Every row of every state table, in key order, as text: two replicas hold the same state
    /// exactly when these are equal.
    static func stateRows(_ node: NodeStore) throws -> [String: [String]] {
        try node.pool.read { db in
            var all: [String: [String]] = [:]
            for table in Replica.stateTables {
                all[table] = try Row.fetchAll(db, sql: "SELECT * FROM \(table) ORDER BY 1, 2").map(\.description)
            }
            return all
        }
    }

    static func indexes(_ node: NodeStore) throws -> [String] {
        try node.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name || ':' || COALESCE(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY name")
        }
    }

    @Test("a node loads from a snapshot file exactly the rows the paged snapshot gives, with its indexes, and continues its store's sequence",
          arguments: Backend.all)
    func sameStateAsPages(_ backend: Backend) throws {
        let dir = try TempDir()
        let hub = try backend.hubWithTwoStores(dir)
        _ = try hub.publishRules(try Examples.json("fresh-market"))
        let one = try bootstrappedNode(dir, s1, hub: hub)
        var members: [MemberView] = []
        for i in 0..<6 {
            let m = try enrol(one, "F\(i)", "+1555080\(i)")
            _ = try one.recharge(m.id, NodeAPI.Recharge(amount: 2000 + Int64(i) * 300), key: nil)
            _ = try spend(try one.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 450, payFromBalance: i % 2 == 0), key: nil), node: one, hub: hub)
            members.append(m)
        }
        _ = try one.blockCard(try #require(members[0].card), key: nil)
        try sync(one, hub)
        let seq = try #require(try hub.log().filter { $0.op.id.origin == s1 }.map(\.op.id.seq).max())

        // s1's machine is replaced: the new one loads the file; another loads the pages.
        let made = try hub.makeSnapshotFile(for: s1)
        #expect(made.path.hasPrefix(dir.path("snapshots")))
        #expect(made.info.originSeq == seq)
        #expect(made.info.cursor == (try hub.log().map(\.version).max()))
        let fromFile = try NodeStore(path: dir.path("from-file.sqlite"), store: s1)
        let rows = try fromFile.bootstrap(fromFile: made.path)
        #expect(rows == made.info.rows && rows > 30)
        let paged = try NodeStore(path: dir.path("paged.sqlite"), store: s1)
        try paged.bootstrap(try hub.snapshot(for: s1))
        #expect(try Self.stateRows(fromFile) == Self.stateRows(paged))
        #expect(try Self.indexes(fromFile) == Self.indexes(paged))
        #expect(try fromFile.counts().bootstrapped && fromFile.counts().cursor == made.info.cursor)
        #expect(try fromFile.allMembers() == hub.allMembers())
        #expect(try fromFile.programme().version == 1)
        // Loading again changes nothing (already bootstrapped).
        #expect(try fromFile.bootstrap(fromFile: made.path) == 0)

        let answer = try fromFile.recharge(members[2].id, NodeAPI.Recharge(amount: 100), key: nil)
        let txn = try answer.decode(NodeAPI.TransactionResult.self).transaction
        #expect(txn.id == OperationID(origin: s1, seq: seq + 1))
        try sync(fromFile, hub)
        try sync(paged, hub)
        #expect(try fromFile.allMembers() == hub.allMembers())
        #expect(try paged.allMembers() == hub.allMembers())
    }

    @Test("a file that is not a snapshot this build reads is refused as unreadable and changes nothing; a good file then loads")
    func unreadableFiles() throws {
        let dir = try TempDir()
        let hub = try Backend.sqlite.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: hub)
        _ = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)
        let node = try NodeStore(path: dir.path("new.sqlite"), store: s2)

        let garbage = dir.path("garbage.sqlite")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: garbage) }

        let other = try hub.makeSnapshotFile(for: s2)
        try DatabaseQueue(path: other.path).write { try $0.execute(sql: "UPDATE snapshot_meta SET value = '99' WHERE key = 'format'") }
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: other.path) }

        let missing = try hub.makeSnapshotFile(for: s2)
        try DatabaseQueue(path: missing.path).write { try $0.execute(sql: "ALTER TABLE entries DROP COLUMN bonus") }
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: missing.path) }

        #expect(try node.counts().bootstrapped == false)
        #expect(try node.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM members") } == 0)
        #expect(try Self.indexes(node).contains { $0.hasPrefix("entries_member:") })

        let good = try hub.makeSnapshotFile(for: s2)
        try node.bootstrap(fromFile: good.path)
        #expect(try node.allMembers() == hub.allMembers())
        #expect(try node.allMembers().count == 1)
    }
}
