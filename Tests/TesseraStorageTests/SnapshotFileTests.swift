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

    /// The entry sums the triggers keep, as text.
    static func sums(_ node: NodeStore) throws -> [String] {
        try node.pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM entry_sums ORDER BY member_id").map(\.description) }
    }

    /// The tier counters and the spends by quarter hour the triggers keep, as text.
    static func buckets(_ node: NodeStore) throws -> [String] {
        try node.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM qualifying_periods ORDER BY member_id, period").map(\.description)
                + Row.fetchAll(db, sql: "SELECT * FROM spend_buckets ORDER BY member_id, bucket").map { "spent \($0)" }
        }
    }

    /// The hub's file as a node receives it: a copy of its own (a node changes the copy it loads).
    static func received(_ file: SnapshotFile.Made, _ dir: TempDir) throws -> String {
        let path = dir.path("received-\(UUID().uuidString).sqlite")
        try FileManager.default.copyItem(atPath: file.path, toPath: path)
        return path
    }

    /// Indexes and triggers.
    static func indexes(_ node: NodeStore) throws -> [String] {
        try node.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name || ':' || COALESCE(sql, '') FROM sqlite_master WHERE type IN ('index', 'trigger') ORDER BY name")
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
        let served = try hub.snapshotFile(for: s1, maxAge: 600)
        let made = served.file
        #expect(made.path.hasPrefix(dir.path("snapshots")))
        #expect(served.originSeq == seq)
        #expect(made.info.cursor == (try hub.log().map(\.version).max()))
        let fromFile = try NodeStore(path: dir.path("from-file.sqlite"), store: s1)
        let loaded = try fromFile.bootstrap(fromFile: try Self.received(made, dir), originSeq: served.originSeq)
        #expect(loaded == SnapshotFile.Loaded(rows: made.info.rows, wholeFile: true) && loaded.rows > 30)
        let paged = try NodeStore(path: dir.path("paged.sqlite"), store: s1)
        try paged.bootstrap(try hub.snapshot(for: s1))
        #expect(try Self.stateRows(fromFile) == Self.stateRows(paged))
        #expect(try Self.indexes(fromFile) == Self.indexes(paged))
        #expect(try fromFile.counts().bootstrapped && fromFile.counts().cursor == made.info.cursor)
        #expect(try fromFile.allMembers() == hub.allMembers())
        #expect(try fromFile.programme().version == 1)
        // Loading again changes nothing (already bootstrapped).
        #expect(try fromFile.bootstrap(fromFile: try Self.received(made, dir), originSeq: served.originSeq).rows == 0)
        // The node's file is still its own: durable writes, WAL, its store, nothing of the hub's.
        #expect(try SQLiteFiles.synchronousMode(fromFile.pool) == 2)
        let (mode, owner, leftover) = try fromFile.pool.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Meta.get("store", db), try db.tableExists("snapshot_meta"))
        }
        #expect(mode == "wal" && owner == s1.rawValue && !leftover)

        let answer = try fromFile.recharge(members[2].id, NodeAPI.Recharge(amount: 100), key: nil)
        let txn = try answer.decode(NodeAPI.TransactionResult.self).transaction
        #expect(txn.id == OperationID(origin: s1, seq: seq + 1))
        try sync(fromFile, hub)
        try sync(paged, hub)
        #expect(try fromFile.allMembers() == hub.allMembers())
        #expect(try paged.allMembers() == hub.allMembers())
        // Opened again (a restart), the node taken from the file is as it was.
        let reopened = try NodeStore(path: dir.path("from-file.sqlite"), store: s1)
        #expect(try reopened.counts().bootstrapped && reopened.allMembers() == hub.allMembers())
    }

    @Test("a node takes the hub's file whole only when it is the database this build makes; a file of another schema has its tables loaded, with the same state")
    func wholeFileOrTables() throws {
        let dir = try TempDir()
        let hub = try Backend.sqlite.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: hub)
        for i in 0..<3 {
            let m = try enrol(one, "W\(i)", "+1555090\(i)")
            _ = try one.recharge(m.id, NodeAPI.Recharge(amount: 1000), key: nil)
            // A sale: a tier counter, so a bucket of it; another pays with its points, a spend.
            _ = try spend(try one.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 500 + Int64(i)), key: nil), node: one, hub: hub)
            _ = try spend(try one.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 300, redeemPoints: 2), key: nil), node: one, hub: hub)
        }
        try sync(one, hub)
        let served = try hub.snapshotFile(for: s2, maxAge: 600)
        let paged = try NodeStore(path: dir.path("paged.sqlite"), store: s2)
        try paged.bootstrap(try hub.snapshot(for: s2))
        // A newer hub's file (a column this build does not know) and an older hub's (no
        // migrations recorded, format 2 as hubs wrote it before files were nodes' databases).
        // Older still: no tier counter by quarter hour, and no entry sums at all (the node sums
        // its entries once).
        for (name, change) in [("newer", "ALTER TABLE members ADD COLUMN nickname TEXT"), ("older", "DROP TABLE grdb_migrations"),
                               ("without spends", "DROP TABLE grdb_migrations; DROP TABLE spend_buckets"),
                               ("without periods", "DROP TABLE grdb_migrations; DROP TABLE qualifying_periods; DROP TABLE spend_buckets"),
                               // v7's tier counter by quarter hour, which this build does not keep (wrong on purpose: not read).
                               ("with v7's buckets", """
                                   DROP TABLE grdb_migrations; DROP TABLE qualifying_periods; DROP TABLE spend_buckets;
                                   CREATE TABLE qualifying_buckets (member_id TEXT NOT NULL, bucket INTEGER NOT NULL, qualifying INTEGER NOT NULL DEFAULT 0,
                                       PRIMARY KEY (member_id, bucket)) WITHOUT ROWID;
                                   INSERT INTO qualifying_buckets SELECT member_id, 0, 999 FROM entry_sums
                                   """),
                               ("without sums", """
                                   DROP TABLE grdb_migrations; DROP TABLE entry_sums; DROP TABLE lot_sums; DROP TABLE qualifying_periods;
                                   DROP TABLE spend_buckets
                                   """)] {
            let path = dir.path("\(name).sqlite")
            try FileManager.default.copyItem(atPath: served.file.path, toPath: path)
            try DatabaseQueue(path: path).write { try $0.execute(sql: change) }
            let node = try NodeStore(path: dir.path("\(name)-node.sqlite"), store: s2)
            let loaded = try node.bootstrap(fromFile: path, originSeq: served.originSeq)
            #expect(loaded == SnapshotFile.Loaded(rows: served.file.info.rows, wholeFile: false), "\(name)")
            #expect(try Self.stateRows(node) == Self.stateRows(paged), "\(name)")
            #expect(try Self.indexes(node) == Self.indexes(paged), "\(name)")
            #expect(try Self.sums(node) == Self.sums(paged) && Self.sums(node).count == 3, "\(name)")
            #expect(try Self.buckets(node) == Self.buckets(paged) && Self.buckets(node).filter { $0.hasPrefix("spent") }.count == 3, "\(name)")
            #expect(try node.entrySumProblems().isEmpty, "\(name)")
        }
        // A file cut short in transit is never copied in whole; loading its tables finds it out.
        let short = try Self.received(served.file, dir)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: short))
        try handle.truncate(atOffset: UInt64((try FileManager.default.attributesOfItem(atPath: short)[.size] as? Int ?? 0) / 2))
        try handle.close()
        let cut = try NodeStore(path: dir.path("cut-node.sqlite"), store: s2)
        #expect(throws: SnapshotFile.Unreadable.self) { try cut.bootstrap(fromFile: short, originSeq: served.originSeq) }
        #expect(try cut.counts().bootstrapped == false)
        // A node with something of its own (an answer kept for a retry) is never replaced.
        let own = try NodeStore(path: dir.path("own-node.sqlite"), store: s2)
        try own.pool.write { db in
            try db.execute(sql: "INSERT INTO idempotency (key, fingerprint, status, body, created_at) VALUES ('k', 'f', 201, x'7b7d', 'now')")
        }
        #expect(try own.bootstrap(fromFile: try Self.received(served.file, dir), originSeq: served.originSeq).wholeFile == false)
        #expect(try Self.stateRows(own) == Self.stateRows(paged))
        #expect(try own.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM idempotency") } == 1)

        let whole = try NodeStore(path: dir.path("whole.sqlite"), store: s2)
        #expect(try whole.bootstrap(fromFile: try Self.received(served.file, dir), originSeq: served.originSeq).wholeFile)
        #expect(try Self.stateRows(whole) == Self.stateRows(paged))
        #expect(try whole.allMembers() == hub.allMembers() && whole.allMembers().count == 3)
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
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: garbage, originSeq: 0) }

        // A copy of the hub's file for each damage (the hub keeps its own for other nodes).
        let served = try hub.snapshotFile(for: s2, maxAge: 600)
        func copy(_ name: String, _ damage: String) throws -> String {
            let path = dir.path(name)
            try FileManager.default.copyItem(atPath: served.file.path, toPath: path)
            try DatabaseQueue(path: path).write { try $0.execute(sql: damage) }
            return path
        }
        let other = try copy("other.sqlite", "UPDATE snapshot_meta SET value = '99' WHERE key = 'format'")
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: other, originSeq: served.originSeq) }
        let missing = try copy("missing.sqlite", "DROP TRIGGER entries_sums_insert; DROP TRIGGER entries_sums_delete; ALTER TABLE entries DROP COLUMN bonus")
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: missing, originSeq: served.originSeq) }
        // A shared file without the store's sequence number (a hub that did not send it) is
        // never loaded with a guessed one.
        #expect(throws: SnapshotFile.Unreadable.self) { try node.bootstrap(fromFile: try Self.received(served.file, dir), originSeq: nil) }

        #expect(try node.counts().bootstrapped == false)
        #expect(try node.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM members") } == 0)
        #expect(try Self.indexes(node).contains { $0.hasPrefix("entries_op:") })

        try node.bootstrap(fromFile: try Self.received(served.file, dir), originSeq: served.originSeq)
        #expect(try node.allMembers() == hub.allMembers())
        #expect(try node.allMembers().count == 1)
    }

    @Test("one snapshot file serves every store while it is fresh, each with its own sequence number; a stale one is made again once the log moves")
    func sharedFile() throws {
        let dir = try TempDir()
        let hub = try Backend.sqlite.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: hub)
        _ = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)

        let kept = try #require(try hub.keepSnapshotFile(maxAge: 600))
        #expect(try hub.keepSnapshotFile(maxAge: 600) == nil, "a fresh file is kept")
        let forOne = try hub.snapshotFile(for: s1, maxAge: 600)
        let forTwo = try hub.snapshotFile(for: s2, maxAge: 600)
        #expect(forOne.file.path == kept.path && forTwo.file.path == kept.path)
        func lastSeq() throws -> UInt64 { try #require(try hub.log().filter { $0.op.id.origin == s1 }.map(\.op.id.seq).max()) }
        #expect(try forOne.originSeq == lastSeq() && forTwo.originSeq == 0)

        // Work after the file: a store's number is read when it asks, so it counts operations
        // the file does not hold, and a node loading the file pulls them after its cursor.
        _ = try enrol(one, "Bo", "+15550101")
        try sync(one, hub)
        let later = try hub.snapshotFile(for: s1, maxAge: 600)
        #expect(try later.file.path == kept.path && later.originSeq == lastSeq() && later.originSeq > forOne.originSeq)
        let replaced = try NodeStore(path: dir.path("replaced.sqlite"), store: s1)
        try replaced.bootstrap(fromFile: try Self.received(later.file, dir), originSeq: later.originSeq)
        try sync(replaced, hub)
        #expect(try replaced.allMembers() == hub.allMembers() && replaced.allMembers().count == 2)
        let txn = try replaced.recharge(try #require(try hub.allMembers().first).id, NodeAPI.Recharge(amount: 100), key: nil)
        #expect(try txn.decode(NodeAPI.TransactionResult.self).transaction.id == OperationID(origin: s1, seq: later.originSeq + 1))

        // Stale (any age is stale at 0) and the log moved: a new file replaces the kept one.
        let made = try #require(try hub.keepSnapshotFile(maxAge: 0))
        #expect(made.path != kept.path && made.info.cursor > kept.info.cursor)
        #expect(!FileManager.default.fileExists(atPath: kept.path))
        // Stale but nothing new since: still sent.
        #expect(try hub.snapshotFile(for: s2, maxAge: 0).file.path == made.path)
        hub.discardSnapshotFile()
        #expect(!FileManager.default.fileExists(atPath: made.path))
    }

    @Test("a replica made before entries were stored by their key, then by member, keeps every entry and index when upgraded")
    func entriesByKeyUpgrade() throws {
        let dir = try TempDir()
        var hub: HubStore? = try Backend.sqlite.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: try #require(hub))
        for i in 0..<4 {
            let m = try enrol(one, "U\(i)", "+1555090\(i)")
            _ = try one.recharge(m.id, NodeAPI.Recharge(amount: 1000 + Int64(i)), key: nil)
        }
        try sync(one, try #require(hub))
        let members = try #require(hub).allMembers()
        func entries(_ pool: DatabasePool) throws -> [String] {
            try pool.read { try Row.fetchAll($0, sql: "SELECT * FROM entries ORDER BY op_id, part").map(\.description) }
        }
        func schema(_ pool: DatabasePool) throws -> [String] {
            try pool.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE tbl_name = 'entries' ORDER BY name") }
        }
        let before = try entries(try #require(hub).pool)
        #expect(before.count == 4, "one entry for each recharge")
        let indexes = try schema(try #require(hub).pool)
        #expect(indexes == ["entries", "entries_lot", "entries_op", "entries_periods_delete", "entries_periods_insert",
                            "entries_spends_delete", "entries_spends_insert", "entries_sums_delete", "entries_sums_insert"])
        // As an older build left it: entries in a rowid table with an index of members, no
        // entry sums or buckets, none of the five migrations run yet.
        let path = try #require(hub).pool.path
        try #require(hub).pool.barrierWriteWithoutTransaction { db in
            let lot = try String.fetchAll(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'entries_lot'") + ["CREATE INDEX entries_member ON entries(member_id)"]
            try db.execute(sql: """
                CREATE TABLE entries_old AS SELECT * FROM entries;
                DROP TABLE entries;
                CREATE TABLE entries (op_id TEXT NOT NULL, part INTEGER NOT NULL, member_id TEXT NOT NULL, value INTEGER NOT NULL,
                    bonus INTEGER NOT NULL DEFAULT 0, points INTEGER NOT NULL, lot INTEGER, expired INTEGER NOT NULL DEFAULT 0,
                    qualifying INTEGER NOT NULL DEFAULT 0, at_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (op_id, part));
                INSERT INTO entries SELECT * FROM entries_old;
                DROP TABLE entries_old;
                DROP TABLE entry_sums;
                DROP TABLE lot_sums;
                DROP TABLE qualifying_periods;
                DROP TABLE spend_buckets;
                DELETE FROM grdb_migrations WHERE identifier IN ('replica-v4-entries-by-key', 'replica-v5-entries-by-member', 'replica-v6-entry-sums',
                                                                 'replica-v7-qualifying-buckets', 'replica-v8-tier-periods-and-spends');
                """)
            for sql in lot { try db.execute(sql: sql) }
        }
        try #require(hub).pool.close()
        hub = nil
        let upgraded = try HubStore(path: path)
        let table = try upgraded.pool.read { try String.fetchOne($0, sql: "SELECT sql FROM sqlite_master WHERE name = 'entries'") } ?? ""
        #expect(table.contains("WITHOUT ROWID") && table.contains("PRIMARY KEY (member_id, op_id, part)"))
        // A member's entries are read in the table's own order, with no index.
        let plan = try upgraded.pool.read {
            try Row.fetchAll($0, sql: "EXPLAIN QUERY PLAN SELECT SUM(value) FROM entries WHERE member_id = 'm' AND at_ms <= 5")
                .map { $0["detail"] as String? ?? "" }.joined(separator: " ")
        }
        #expect(plan.contains("PRIMARY KEY") && !plan.contains("entries_"), "\(plan)")
        #expect(try entries(upgraded.pool) == before)
        #expect(try schema(upgraded.pool) == indexes)
        #expect(try upgraded.allMembers() == members)
        // The sums are made from the entries once, and kept by the triggers after.
        #expect(try upgraded.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM entry_sums") } == 4)
        #expect(try upgraded.pool.read { try Replica.entrySumProblems($0) }.isEmpty)
    }
}

extension SnapshotFileTests {
    @Test("a replica migrated by the first build of v8 (spends kept, v7's tier buckets still there) is upgraded to the tier periods")
    func firstV8Upgrade() throws {
        let dir = try TempDir()
        var hub: HubStore? = try Backend.sqlite.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: try #require(hub))
        let ada = try enrol(one, "Ada", "+15550901")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 10_000), key: nil)
        try sync(one, try #require(hub))
        // A sale that earns points (a tier counter), then one that spends some (a spend).
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 5_000), key: nil), node: one, hub: try #require(hub))
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 1_000, redeemPoints: 20), key: nil), node: one, hub: try #require(hub))
        try sync(one, try #require(hub))
        let members = try #require(hub).allMembers()
        let path = try #require(hub).pool.path
        // As 99868d1 left it: `replica-v8-spend-buckets` run (the spends and their triggers),
        // v7's tier buckets and their triggers still there, no tier periods.
        try #require(hub).pool.barrierWriteWithoutTransaction { db in
            try db.execute(sql: """
                DROP TRIGGER entries_periods_insert;
                DROP TRIGGER entries_periods_delete;
                DROP TABLE qualifying_periods;
                CREATE TABLE qualifying_buckets (member_id TEXT NOT NULL, bucket INTEGER NOT NULL, qualifying INTEGER NOT NULL DEFAULT 0,
                                                 PRIMARY KEY (member_id, bucket)) WITHOUT ROWID;
                CREATE TRIGGER entries_buckets_insert AFTER INSERT ON entries WHEN NEW.qualifying <> 0 BEGIN SELECT 1; END;
                CREATE TRIGGER entries_buckets_delete AFTER DELETE ON entries WHEN OLD.qualifying <> 0 BEGIN SELECT 1; END;
                UPDATE grdb_migrations SET identifier = 'replica-v8-spend-buckets' WHERE identifier = 'replica-v8-tier-periods-and-spends';
                """)
        }
        try #require(hub).pool.close()
        hub = nil
        let upgraded = try HubStore(path: path)
        let names = try upgraded.pool.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE tbl_name = 'entries' ORDER BY name") }
        #expect(names == ["entries", "entries_lot", "entries_op", "entries_periods_delete", "entries_periods_insert",
                          "entries_spends_delete", "entries_spends_insert", "entries_sums_delete", "entries_sums_insert"])
        #expect(try upgraded.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM qualifying_periods") } ?? 0 > 0)
        #expect(try upgraded.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM spend_buckets") } ?? 0 > 0)
        #expect(try upgraded.pool.read { try Replica.entrySumProblems($0) }.isEmpty)
        #expect(try upgraded.allMembers() == members)
    }
}
