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
/// few threads would otherwise block on the database and no two tills' writes could ever meet).
/// The store's synchronous methods are unchanged: called on the committer's thread they use the
/// batch's transaction (`NodeStore.transact`), called anywhere else their own.
final class GroupCommit: @unchecked Sendable {
    private let pool: DatabasePool
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Job] = []
    private var started = false
    /// The committer has taken a batch and not yet committed it (it may be waiting for the writer).
    private var taken = false
    private var batches = 0, writes = 0
    /// The batch's database connection, set and read on the committer's thread only.
    private var batch: Database?
    /// The committer's thread (`pthread_self`), to know when a write runs inside a batch.
    private let writer = Mutex<pthread_t?>(nil)

    private struct Job {
        /// Runs the write; false if it failed (its savepoint is rolled back).
        var run: () -> Bool
        var finish: ((any Error)?) -> Void
    }

    /// Unchecked: the result is written on the committer's thread and read after the commit,
    /// which the condition orders.
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
                                  if let commitError { continuation.resume(throwing: commitError) } else { continuation.resume(returning: value) }
                              case .failure(let error)?:
                                  continuation.resume(throwing: error)
                              case nil:
                                  continuation.resume(throwing: commitError ?? CancellationError())
                              }
                          })
            condition.lock()
            queue.append(job)
            if !started {
                started = true
                let thread = Thread { [self] in
                    writer.withLock { $0 = pthread_self() }
                    loop()
                }
                // At most 15 bytes: Linux refuses a longer name, and profiles then show the
                // thread under the name of the one that started it.
                thread.name = "tessera-commit"
                thread.start()
            }
            condition.signal()
            condition.unlock()
        }
    }

    private struct NothingWritten: Error {}

    /// Commits made, and the writes they carried.
    var counts: (batches: Int, writes: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (batches, writes)
    }

    /// Whether a till write is waiting, in the queue or in a batch the committer has taken: a
    /// long write of the sync loop's gives way to it (`NodeStore.writeGivingWay`). A taken batch
    /// counts: while the sync loop holds the writer, it is waiting for it. (Only the queue
    /// counted, so a till alone, taken at once, waited for a whole pull page to be written.)
    var hasWaiting: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !queue.isEmpty || taken
    }

    /// The batch's connection when called on the committer's thread inside a batch, else nil.
    var current: Database? {
        let me = pthread_self()
        guard writer.withLock({ $0.map { pthread_equal($0, me) != 0 } ?? false }) else { return nil }
        return batch
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let jobs = queue
            queue.removeAll()
            taken = true
            batches += 1
            writes += jobs.count
            condition.unlock()
            var commitError: (any Error)?
            do {
                try SQLiteFiles.guarded {
                    try pool.write { db in
                        batch = db
                        defer { batch = nil }
                        var wrote = false
                        for job in jobs {
                            // A failure that made SQLite roll the whole transaction back (a full
                            // disk): the writes after it must not run, each in a transaction of
                            // its own, durable while their tills are told they failed. (GRDB
                            // refuses statements then too; this says why, to every till.)
                            guard db.isInsideTransaction else {
                                throw DomainError(.storageUnavailable, "the database rolled back this batch of till writes; nothing in it was recorded; retry")
                            }
                            if job.run() { wrote = true }
                        }
                        // Every write failed (bad input, a member not found): nothing to make
                        // durable. The savepoints left pages marked as written, and a commit
                        // would still write and sync them: roll back instead.
                        if !wrote { throw NothingWritten() }
                    }
                }
            } catch is NothingWritten {
                // Each caller hears its own failure.
            } catch {
                commitError = error
            }
            condition.lock()
            taken = false
            condition.unlock()
            for job in jobs { job.finish(commitError) }
        }
    }
}
