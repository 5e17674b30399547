import Foundation
import GRDB
import Synchronization
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

    @Test("a till write waiting for the writer stays queued, so a sync write holding the writer sees it, until it is committed")
    func waitingWriteIsWaiting() throws {
        let (dir, node, ada) = try Self.nodeWithAda()
        defer { withExtendedLifetime(dir) {} }
        // The writer held elsewhere, as by a pull page being written.
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        Thread { node.pool.writeWithoutTransaction { _ in held.signal(); release.wait() } }.start()
        held.wait()
        let sale = Answer<TillAnswer>()
        node.enqueueTillWrite({ try node.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil) }, done: sale.give)
        // The committer wakes and waits for the writer (given time to: it must not take the
        // write out of the queue before it has the writer); the write still counts as waiting.
        Thread.sleep(forTimeInterval: 0.05)
        #expect(node.tillWriteWaiting, "a sync write holding the writer must give way to it")
        #expect(node.groupCommits.batches == 0)
        release.signal()
        #expect(try sale.wait()?.get().status == 201)
        #expect(!node.tillWriteWaiting)
        #expect(node.groupCommits == (1, 1))
    }

    /// Runs `body` on a thread of its own (a blocking write, off Swift concurrency's few threads).
    static func onThread(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            Thread { done.resume(with: Result { try body() }) }.start()
        }
    }

    /// The answer a till write queued with `enqueue` hears, on the thread that committed it.
    /// The tests queue writes at once on their own thread: a task would need one of Swift
    /// concurrency's few threads first, which a loaded test run may not give it for a minute.
    final class Answer<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<T, any Error>?
        private let given = DispatchSemaphore(value: 0)

        func give(_ result: Result<T, any Error>) {
            lock.withLock { self.result = result }
            given.signal()
        }

        /// The answer once given (nil after 60 s without one).
        func wait() -> Result<T, any Error>? {
            _ = given.wait(timeout: .now() + 60)
            given.signal()
            return lock.withLock { result }
        }
    }

    /// Counts the items of a sync write (`NodeStore.afterSyncItem`): a sale arrives at the tenth.
    final class SaleMidPage: Sendable {
        private let items = Mutex(0)
        let answer = Answer<TillAnswer>()

        func isTenth() -> Bool { items.withLock { $0 += 1; return $0 == 10 } }
    }

    /// A group commit on a one-table file, and a sync write's transaction held on a thread of
    /// its own: three till writes are queued (the second fails on its own), then the sync write
    /// takes them along and ends as `fail` says; the riders hear its end.
    static func rideAlong(_ dir: TempDir, fail: Bool) throws -> (pool: DatabasePool, commit: GroupCommit, sales: [Answer<Int>]) {
        let (pool, _, _) = try blobs(dir)
        let commit = GroupCommit(pool: pool)
        let held = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
        struct PartFailed: Error {}
        Thread {
            var riders: GroupCommit.Riders?
            do {
                try pool.write { db in
                    try db.execute(sql: "INSERT INTO t VALUES (x'01')")
                    held.signal()
                    go.wait()
                    riders = try commit.rideAlong(db)
                    if fail { throw PartFailed() }
                }
                riders?.finish(nil)
            } catch {
                riders?.finish(error)
            }
        }.start()
        held.wait()
        let sales = (0..<3).map { i in
            let answer = Answer<Int>()
            commit.enqueue({ () throws -> Int in
                guard let db = commit.current else { throw DomainError(.internalError, "not inside the batch") }
                if i == 1 { throw DomainError(.notFound, "this till's write fails alone") }
                try db.execute(sql: "INSERT INTO t VALUES (x'02')")
                return i
            }, done: answer.give)
            return answer
        }
        // The committer wakes and waits for the writer, all three still queued.
        Thread.sleep(forTimeInterval: 0.05)
        #expect(commit.waitingCount == 3 && commit.counts.batches == 0)
        go.signal()
        return (pool, commit, sales)
    }

    @Test("till writes waiting while a sync write holds the writer run in its transaction, each in a savepoint, and hear their answers after its commit")
    func tillsRideAlong() async throws {
        let dir = try TempDir()
        let (pool, commit, sales) = try Self.rideAlong(dir, fail: false)
        #expect(try sales[0].wait()?.get() == 0)
        #expect(throws: DomainError.self) { try sales[1].wait()?.get() }
        #expect(try sales[2].wait()?.get() == 2)
        // One commit carried them (the sync write's); the failed one wrote nothing.
        #expect(commit.counts == (1, 3))
        #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 3)
        #expect(!commit.hasWaiting)
        // The committer, which waited for the writer meanwhile, found nothing left and still serves.
        #expect(try await commit.run { () throws -> Int in
            try commit.current?.execute(sql: "INSERT INTO t VALUES (x'03')")
            return 7
        } == 7)
        #expect(commit.counts == (2, 4))
    }

    @Test("till writes taken along by a sync write whose transaction fails are told it failed, and nothing of them is on disk")
    func ridersOfAFailedPart() async throws {
        let dir = try TempDir()
        let (pool, _, sales) = try Self.rideAlong(dir, fail: true)
        // Each till hears that its write was not recorded and may be tried again (the one
        // whose write failed on its own hears its own failure).
        for (i, sale) in sales.enumerated() {
            let error = #expect(throws: DomainError.self) { try sale.wait()?.get() }
            #expect(error?.code == (i == 1 ? .notFound : .storageUnavailable))
        }
        #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 0)
    }

    @Test("a till selling while its node applies a page of another store's operations: sales ride along in the page's parts, and the node ends as a node that applied the page alone")
    func sellingWhileAPageIsApplied() async throws {
        let dir = try TempDir()
        let hub = try HubStore(path: dir.path("hub.sqlite"))
        _ = try hub.addStore(s1, name: "One")
        _ = try hub.addStore(s2, name: "Two")
        let node = try bootstrappedNode(dir, s1, hub: hub)
        let alone = try NodeStore(path: dir.path("alone.sqlite"), store: s1)
        try alone.bootstrap(try hub.snapshot(for: s1))
        let ada = try enrol(node, "Ada", "+15550100")
        // Another store's day: 300 operations and more.
        let other = try bootstrappedNode(dir, s2, hub: hub)
        for i in 0..<100 {
            let m = try enrol(other, "Member \(i)", "+1555020\(1000 + i)")
            _ = try other.recharge(m.id, NodeAPI.Recharge(amount: 1_000), key: nil)
            _ = try spend(try other.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 100), key: nil), node: other, hub: nil)
        }
        _ = try hub.push(try other.pendingBatch(limit: 1_000), from: s2)
        let page = try hub.pull(after: try node.counts().cursor, limit: 1_000, for: s1, pending: nil)
        #expect(page.ops.count >= 300)

        // A sale arrives while the page's tenth operation is being written (the sync loop
        // holds the writer): it waits for the writer, and the loop takes it along.
        let arriving = SaleMidPage()
        node.afterSyncItem.withLock {
            $0 = {
                guard arriving.isTenth() else { return }
                node.enqueueTillWrite({ try node.recharge(ada.id, NodeAPI.Recharge(amount: 1), key: nil) }, done: arriving.answer.give)
            }
        }
        try await Self.onThread { try node.applyPull(page) }
        #expect(try arriving.answer.wait()?.get().status == 201)
        #expect(node.tillWritesRiddenAlong > 0, "sales waiting while the page was written rode along in its parts")
        #expect(try node.counts().cursor == page.cursor)
        #expect(try node.entrySumProblems().isEmpty)
        // The same page applied by a node with no till: the same members, Ada aside.
        try alone.applyPull(page)
        #expect(try node.allMembers().filter { $0.id != ada.id } == alone.allMembers())
        // The sale is on disk, with Ada's enrolment.
        #expect(try node.counts().pending == 2)
    }

    #if os(Linux)
    @Test("the committer's thread carries its name, as profiles and top -H show it")
    func committerNamed() async throws {
        let dir = try TempDir()
        let (pool, _, _) = try Self.blobs(dir)
        let commit = GroupCommit(pool: pool)
        // Linux's own record of the thread's name, read on the thread.
        let name = try await commit.run { try String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) }
        #expect(name.trimmingCharacters(in: .whitespacesAndNewlines) == "tessera-commit")
    }
    #endif

    @Test("a batch whose transaction SQLite rolled back on its own under one write: no write after it runs, every till hears storage_unavailable (that one its own error), nothing is on disk",
          arguments: [0, 2])
    func rolledBackUnderneath(_ failing: Int) async throws {
        let dir = try TempDir()
        let (pool, _, _) = try Self.blobs(dir)
        let commit = GroupCommit(pool: pool)
        // The writer held while three till writes queue, so that they are one batch.
        let held = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
        Thread { pool.writeWithoutTransaction { _ in held.signal(); go.wait() } }.start()
        held.wait()
        let ran = Mutex<[Int]>([])
        let sales = (0..<3).map { i in
            let answer = Answer<Int>()
            commit.enqueue({ () throws -> Int in
                guard let db = commit.current else { throw DomainError(.internalError, "not inside the batch") }
                ran.withLock { $0.append(i) }
                try db.execute(sql: "INSERT INTO t VALUES (x'02')")
                if i == failing {
                    // What SQLite does on its own after some errors (a full disk, an I/O
                    // error): the whole transaction is gone, and the statement fails.
                    try db.execute(sql: "ROLLBACK")
                    throw DatabaseError(resultCode: .SQLITE_FULL)
                }
                return i
            }, done: answer.give)
            return answer
        }
        go.signal()
        for (i, sale) in sales.enumerated() {
            let result = try #require(sale.wait(), "till \(i) was never answered")
            guard case .failure(let error) = result else {
                Issue.record("till \(i) was told its write is recorded")
                continue
            }
            if i == failing {
                #expect((error as? DatabaseError)?.resultCode == .SQLITE_FULL)
            } else {
                #expect((error as? DomainError)?.code == .storageUnavailable, "till \(i): \(error)")
            }
        }
        #expect(ran.withLock { $0 } == Array(0...failing), "no write runs after the transaction is gone")
        #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 0)
        // The committer still serves.
        #expect(try await commit.run { () throws -> Int in
            try commit.current?.execute(sql: "INSERT INTO t VALUES (x'03')")
            return 7
        } == 7)
        #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 1)
    }

    @Test("a disk that fills up under batches of till writes: every till told success is on disk, every other till hears storage_unavailable and left nothing")
    func fullDiskInBatches() throws {
        let (dir, node, ada) = try Self.nodeWithAda()
        defer { withExtendedLifetime(dir) {} }
        let pages = try node.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 }
        // A few pages of room, then none: SQLite may use no more pages than that.
        try node.pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA max_page_count = \(pages + 6)") }
        let before = try node.counts().pending
        var told: Int64 = 0, recorded = 0, refused = 0
        for round in 0..<200 where refused < 40 {
            // The writer held while eight tills queue, so that they are committed as one batch.
            let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
            Thread { node.pool.writeWithoutTransaction { _ in held.signal(); release.wait() } }.start()
            held.wait()
            let answers = Mutex<[Result<TillAnswer, any Error>]>([])
            let done = DispatchGroup()
            for i in 0..<8 {
                done.enter()
                node.enqueueTillWrite({ try node.recharge(ada.id, NodeAPI.Recharge(amount: Int64(100 + i)), key: nil) }) { result in
                    answers.withLock { $0.append(result) }
                    done.leave()
                }
            }
            release.signal()
            done.wait()
            for (i, answer) in answers.withLock({ $0 }).enumerated() {
                switch answer {
                case .success(let till):
                    #expect(till.status == 201)
                    recorded += 1
                    // What the till was told the balance gained (the amount and any bonus).
                    let json = try JSONSerialization.jsonObject(with: till.body) as? [String: Any]
                    let change = ((json?["transaction"] as? [String: Any])?["value_change"] as? NSNumber)?.int64Value
                    told += try #require(change, "a recharge's answer says what the balance gained")
                case .failure(let error):
                    refused += 1
                    #expect((error as? DomainError)?.code == .storageUnavailable, "round \(round), write \(i): \(error)")
                }
            }
        }
        #expect(refused > 0, "the disk never filled")
        #expect(try node.member(ada.id).balance == told, "what tills were told is what is on disk")
        #expect(try node.counts().pending == before + recorded)
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
