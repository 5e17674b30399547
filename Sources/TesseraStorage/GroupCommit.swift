import Foundation
import GRDB
import Synchronization
import TesseraCore

/// Group commit for a node's till writes. Tills that write at the same moment share one
/// transaction and so one disk sync: each write runs in a savepoint of its own (a write that
/// fails is rolled back alone), and every caller hears its answer only once the shared commit
/// is on disk, so "success" still means durable.
///
/// The writes run on one thread of the committer's, never on the callers' (Swift concurrency's
/// few threads would otherwise block on the database and no two tills' writes could ever meet),
/// or on the sync loop's while it holds the writer (`rideAlong`): a till that arrives during a
/// pull page's write is written in that page's part and shares its commit, instead of waiting
/// for that commit and then making one of its own.
/// The store's synchronous methods are unchanged: called inside a batch they use the batch's
/// transaction (`NodeStore.transact`), called anywhere else their own.
final class GroupCommit: @unchecked Sendable {
    private let pool: DatabasePool
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Job] = []
    private var started = false
    private var batches = 0, writes = 0, rides = 0
    /// The thread running a batch now (the committer's or the sync loop's) and its connection.
    /// `batch` is set and read on that thread only, inside the writer.
    private let runner = Mutex<pthread_t?>(nil)
    private var batch: Database?

    fileprivate struct Job {
        /// Runs the write; false if it failed (its savepoint is rolled back).
        var run: () -> Bool
        var finish: ((any Error)?) -> Void
    }

    /// Unchecked: the result is written on the thread that runs the batch and read after the
    /// commit, which the condition (or the caller of `Riders.finish`) orders.
    private final class Outcome<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Runs `call` (a synchronous write of the store's) in the next batch and returns once the
    /// batch is committed.
    func run<T: Sendable>(_ call: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            enqueue(call) { continuation.resume(with: $0) }
        }
    }

    /// Queues `call` for the next batch at once, on the caller's thread; `done` hears its result
    /// once the batch is committed, on the thread that committed it.
    func enqueue<T>(_ call: @escaping () throws -> T, done: @escaping (Result<T, any Error>) -> Void) {
        let outcome = Outcome<T>()
        let job = Job(run: {
                          let result = Result { try call() }
                          outcome.result = result
                          if case .success = result { return true } else { return false }
                      },
                      finish: { commitError in
                          switch outcome.result {
                          case .success(let value)?:
                              // Written but not durable: the caller must not hear "success".
                              done(commitError.map { .failure($0) } ?? .success(value))
                          case .failure(let error)?:
                              done(.failure(error))
                          case nil:
                              done(.failure(commitError ?? CancellationError()))
                          }
                      })
        condition.lock()
        queue.append(job)
        if !started {
            started = true
            let thread = Thread { [self] in
                // Named from inside: on Linux, Foundation applies a name set before the start
                // to its own record only, and profiles and `top -H` showed the thread as its
                // parent's. At most 15 bytes: Linux refuses a longer name.
                Thread.current.name = "tessera-commit"
                loop()
            }
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    private struct NothingWritten: Error {}

    /// Commits made that carried till writes (the committer's, and the sync loop's parts that
    /// took tills along), and the writes they carried.
    var counts: (batches: Int, writes: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (batches, writes)
    }

    /// The sync loop's parts that took till writes along (counted in `counts` too).
    var ridesAlong: Int {
        condition.lock()
        defer { condition.unlock() }
        return rides
    }

    /// Whether a till write is waiting for the writer: a long write of the sync loop's takes it
    /// along (`rideAlong`) and commits. Writes stay queued until a holder of the writer takes
    /// them: the committer takes its batch only once it has the writer. (It used to take the
    /// batch first and then wait, and a till alone, out of the queue at once, waited for a whole
    /// pull page to be written.)
    var hasWaiting: Bool { waitingCount > 0 }

    /// How many till writes wait now (tests).
    var waitingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    /// The batch's connection when called on the thread running a batch, inside it; else nil.
    var current: Database? {
        let me = pthread_self()
        guard runner.withLock({ $0.map { pthread_equal($0, me) != 0 } ?? false }) else { return nil }
        return batch
    }

    /// Till writes that ran inside a transaction of someone else's (`rideAlong`): once that
    /// transaction has committed, or failed, `finish` tells each till.
    struct Riders {
        fileprivate let jobs: [Job]

        /// Call once, when the transaction the writes ran in has committed (nil) or failed.
        /// A failure is the sync loop's (a pulled operation, its commit): each till hears that
        /// its own write was not recorded and may be tried again, as from the committer.
        func finish(_ error: (any Error)?) {
            let told = error.map { error -> any Error in
                if let domain = error as? DomainError, domain.code == .storageUnavailable { return domain }
                return DomainError(.storageUnavailable, "this write was committed with the node's sync, and that commit failed (\(error)); nothing was recorded; retry")
            }
            for job in jobs { job.finish(told) }
        }
    }

    /// Runs the till writes waiting now, each in a savepoint of `db`'s transaction, which the
    /// caller holds (a part of the sync loop's write) and must end at once: the tills hear their
    /// answers from `Riders.finish` after it has committed. Their commit is then the part's,
    /// one disk sync instead of two, and the writer does not change hands in between.
    func rideAlong(_ db: Database) throws -> Riders {
        precondition(db.isInsideTransaction, "till writes ride along in a transaction")
        let jobs = take(ridingAlong: true)
        guard !jobs.isEmpty else { return Riders(jobs: []) }
        do {
            _ = try runBatch(jobs, db)
        } catch {
            // The transaction was rolled back under the writes (a full disk): each till hears why.
            for job in jobs { job.finish(error) }
            throw error
        }
        return Riders(jobs: jobs)
    }

    /// Takes every queued write, counted as one commit's (and as a ride along the sync loop's).
    private func take(ridingAlong: Bool = false) -> [Job] {
        condition.lock()
        defer { condition.unlock() }
        let jobs = queue
        queue.removeAll()
        if !jobs.isEmpty {
            batches += 1
            writes += jobs.count
            if ridingAlong { rides += 1 }
        }
        return jobs
    }

    /// Runs `jobs` in `db`'s transaction on this thread; true if any of them wrote.
    private func runBatch(_ jobs: [Job], _ db: Database) throws -> Bool {
        runner.withLock { $0 = pthread_self() }
        batch = db
        defer {
            batch = nil
            runner.withLock { $0 = nil }
        }
        var wrote = false
        for job in jobs {
            // A failure that made SQLite roll the whole transaction back (a full disk): the
            // writes after it must not run, each in a transaction of its own, durable while
            // their tills are told they failed. (GRDB refuses statements then too; this says
            // why, to every till.)
            guard db.isInsideTransaction else { throw Self.rolledBack }
            if job.run() { wrote = true }
        }
        // The same after the last write: the tills whose writes succeeded before it hear why
        // nothing was recorded, rather than the commit's "no transaction is active".
        guard db.isInsideTransaction else { throw Self.rolledBack }
        return wrote
    }

    private static let rolledBack = DomainError(.storageUnavailable, "the database rolled back this batch of till writes; nothing in it was recorded; retry")

    /// Runs `body` in an immediate transaction of `db`, committed if it returns and rolled back
    /// if it throws (its error is the one thrown), as GRDB's `inTransaction` does, with BEGIN and
    /// COMMIT prepared once: that one parsed them again for every batch (3 % of the committer
    /// thread's time with one till).
    /// GRDB's block also refuses any statement once SQLite has rolled the transaction back by
    /// itself (a full disk), so that none runs on its own, durable. Here `runBatch` checks that
    /// before each write and after the last, and a till write stops at its first failed
    /// statement (its savepoint undoes it only while the transaction is there), so none runs
    /// after one. A till write that went on after a failed statement (a `try?` around one)
    /// would lose that guard. `WriteScheduleTests.rolledBackUnderneath` and
    /// `fullDiskInBatches` check what tills hear and what is on disk.
    static func inTransaction(_ db: Database, _ body: () throws -> Void) throws {
        try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
        do {
            try body()
            try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
        } catch {
            // A failed write or commit; SQLite may have rolled back already (a full disk).
            if db.isInsideTransaction { try? db.rollback() }
            throw error
        }
        assert(!db.isInsideTransaction, "a batch's transaction ends here")
    }

    /// Runs `body` in a savepoint of `db`'s transaction: undone alone if it throws. The same as
    /// GRDB's `inSavepoint` inside a transaction, with its statements prepared once: that one
    /// parsed "SAVEPOINT" and "RELEASE" again for every till write (3 % of a sale's write).
    static func inSavepoint<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        precondition(db.isInsideTransaction, "a savepoint of a batch's transaction")
        try db.cachedStatement(sql: "SAVEPOINT till").execute()
        let result: T
        do {
            result = try body()
        } catch {
            // A failure that made SQLite roll the whole transaction back (a full disk) took the
            // savepoint with it: there is nothing left to undo, and the batch stops (`runBatch`).
            if db.isInsideTransaction {
                do {
                    try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT till").execute()
                    try db.cachedStatement(sql: "RELEASE SAVEPOINT till").execute()
                } catch {
                    // This write could not be undone alone: undo the whole batch rather than
                    // commit half of it (`runBatch` stops, and every till hears it failed).
                    try? db.rollback()
                }
            }
            // The write's own error, as GRDB's `inSavepoint` throws the first.
            throw error
        }
        try db.cachedStatement(sql: "RELEASE SAVEPOINT till").execute()
        return result
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            condition.unlock()
            // The writer first, then the writes: while this thread waits for it, a sync write
            // holding it sees them queued and takes them along.
            var jobs: [Job] = []
            var commitError: (any Error)?
            do {
                try SQLiteFiles.guarded {
                    try pool.writeWithoutTransaction { db in
                        jobs = take()
                        guard !jobs.isEmpty else { return }
                        try Self.inTransaction(db) {
                            // Every write failed (bad input, a member not found): nothing to
                            // make durable. The savepoints left pages marked as written, and a
                            // commit would still write and sync them: roll back instead.
                            guard try runBatch(jobs, db) else { throw NothingWritten() }
                        }
                    }
                }
            } catch is NothingWritten {
                // Each caller hears its own failure.
            } catch {
                commitError = error
            }
            for job in jobs { job.finish(commitError) }
        }
    }
}
