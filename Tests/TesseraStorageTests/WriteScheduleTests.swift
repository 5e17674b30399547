import Foundation
import GRDB
import Testing
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage

/// When writes happen, as opposed to what they write: the write-ahead log copied aside, the
/// sync loop's writes cut in parts that let tills in between, and no commit for failed writes.
@Suite("Write scheduling")
struct WriteScheduleTests {
    static func fileSize(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    /// A database of one table, opened as a replica's, and its file's size before any rows.
    static func blobs(_ dir: TempDir) throws -> (pool: DatabasePool, path: String, before: Int) {
        let path = dir.path("wal.sqlite")
        let pool = try SQLiteFiles.openPool(path: path)
        try pool.write { try $0.execute(sql: "CREATE TABLE t (b BLOB NOT NULL)") }
        return (pool, path, fileSize(path))
    }

    /// Waits (30 s at most) until the database file, not only its log, holds about 1,000 pages more.
    static func copied(_ path: String, since before: Int) -> Bool {
        let deadline = Date().addingTimeInterval(30)
        while fileSize(path) < before + 4_000_000, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return fileSize(path) >= before + 4_000_000
    }

    @Test("the write-ahead log is copied into the database file by a thread of its own once it passes 1,000 pages")
    func checkpointAside() throws {
        let dir = try TempDir()
        let (pool, path, before) = try Self.blobs(dir)
        // 1,500 pages or so, in 30 commits: the hook asks for a checkpoint past 1,000.
        for _ in 0..<30 {
            try pool.write { db in for _ in 0..<50 { try db.execute(sql: "INSERT INTO t VALUES (zeroblob(3000))") } }
        }
        #expect(Self.copied(path, since: before), "the pages are in the database file, not only in its log")
        #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 1_500)
        #expect(try SQLiteFiles.synchronousMode(pool) == 2)
    }

    @Test("with checkpoints suspended (a bootstrap's write) nothing is copied; installed again, it is")
    func checkpointSuspended() throws {
        let dir = try TempDir()
        let (pool, path, before) = try Self.blobs(dir)
        try pool.writeWithoutTransaction { db in
            try SQLiteFiles.withoutAutocheckpoint(db) {
                for _ in 0..<30 {
                    try db.inTransaction { for _ in 0..<50 { try db.execute(sql: "INSERT INTO t VALUES (zeroblob(3000))") }; return .commit }
                }
            }
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(Self.fileSize(path) < before + 1_000_000, "no checkpoint while suspended")
        try pool.write { try $0.execute(sql: "INSERT INTO t VALUES (zeroblob(3000))") }
        #expect(Self.copied(path, since: before))
    }

    @Test("a pull page applied in several transactions leaves the node as one applied whole, the cursor moved by the last")
    func pullInParts() throws {
        let dir = try TempDir()
        let hub = try HubStore(path: dir.path("hub.sqlite"))
        _ = try hub.addStore(s1, name: "One")
        _ = try hub.addStore(s2, name: "Two")
        let seller = try bootstrappedNode(dir, s1, hub: hub)
        for i in 0..<7 {
            let m = try enrol(seller, "Member \(i)", "+1555010\(i)")
            _ = try seller.recharge(m.id, NodeAPI.Recharge(amount: 100 + Int64(i)), key: nil)
            #expect(try spend(try seller.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 50), key: nil), node: seller, hub: nil).status == 201)
        }
        let results = try hub.push(try seller.pendingBatch(limit: 100), from: s1)
        // The seller learns its versions from the push's answer in parts too.
        seller.splitSyncWritesEvery.store(4, ordering: .relaxed)
        try seller.recordPush(results)
        #expect(try seller.counts().pending == 0)

        let whole = try bootstrappedNode(dir, s2, hub: hub)
        let parts = try NodeStore(path: dir.path("parts.sqlite"), store: s2)
        try parts.bootstrap(try hub.snapshot(for: s2))
        parts.splitSyncWritesEvery.store(3, ordering: .relaxed)
        let page = try hub.pull(after: 0, limit: 1_000, for: s2, pending: nil)
        #expect(page.ops.count > 6)
        try whole.applyPull(page)
        try parts.applyPull(page)
        #expect(try parts.allMembers() == whole.allMembers())
        #expect(try parts.counts().cursor == page.cursor)
        #expect(try parts.entrySumProblems().isEmpty)
        // Pulled back at the seller, in parts, its own operations are only acknowledged.
        try seller.applyPull(try hub.pull(after: 0, limit: 1_000, for: s1, pending: nil))
        #expect(try seller.allMembers() == whole.allMembers())
    }

    /// A bootstrapped node of store s1 with one member, Ada (the folder keeps the files).
    static func nodeWithAda() throws -> (TempDir, NodeStore, MemberView) {
        let dir = try TempDir()
        let hub = try HubStore(path: dir.path("hub.sqlite"))
        _ = try hub.addStore(s1, name: "One")
        let node = try bootstrappedNode(dir, s1, hub: hub)
        return (dir, node, try enrol(node, "Ada", "+15550100"))
    }

    @Test("a till write the committer has taken, waiting for the writer, makes the sync loop's writes give way until it is committed")
    func takenWriteIsWaiting() async throws {
        let (dir, node, ada) = try Self.nodeWithAda()
        defer { withExtendedLifetime(dir) {} }
        // The writer held elsewhere, as by a pull page being written.
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        Thread { try? node.pool.writeWithoutTransaction { _ in held.signal(); release.wait() } }.start()
        held.wait()
        let sale = Task { try await node.committing { try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil) } }
        // Taken by the committer (out of the queue), it waits for the writer.
        while node.groupCommits.batches == 0 { try await Task.sleep(for: .milliseconds(1)) }
        #expect(node.tillWriteWaiting, "a sync write holding the writer must give way to it")
        release.signal()
        #expect(try await sale.value.status == 201)
        #expect(!node.tillWriteWaiting)
    }

    @Test("a till write that fails leaves nothing on disk, not even the pages its undone savepoint touched; one that succeeds is written")
    func failedWriteWritesNothing() async throws {
        let (dir, node, ada) = try Self.nodeWithAda()
        defer { withExtendedLifetime(dir) {} }
        let log = node.pool.path + "-wal"
        let before = Self.fileSize(log)
        await #expect(throws: DomainError.self) {
            _ = try await node.committing { try node.beginPurchase(MemberID("m-nobody-1"), NodeAPI.PurchaseRequest(amount: 50), key: nil) }
        }
        #expect(Self.fileSize(log) == before, "no commit for a sale to nobody")
        _ = try await node.committing { try node.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 50), key: nil) }
        #expect(Self.fileSize(log) > before)
        #expect(try node.counts().pending == 2)
    }
}
