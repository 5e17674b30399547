import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// What the node knows of its link to the hub, for `/v1/status`.
public struct LinkState: Sendable {
    public var online = false
    public var lastSyncAt: Date?
    public var lastError: String?
    /// Long work under way, for `/v1/status` (nil when there is none).
    public var progress: String?
    public var lastFailureAt: Date?
    /// When the node last gave back the leases it should no longer hold.
    var leasesSettledAt = Date.distantPast
}

/// The node's background sync: bootstrap once, then push the outbox and pull new operations,
/// on a timer (never only on new writes), backing off while the hub is unreachable. An
/// operation the hub rejects is marked and set aside; it never blocks the queue.
public final class SyncLoop: Service, Sendable {
    let store: NodeStore
    let client: HubClient
    let intervalMs: Int
    /// The pause between rounds a node takes unless told otherwise (`--sync-interval-ms`).
    public static let defaultIntervalMs = 1000
    let logger: Logger
    let link: Mutex<LinkState>

    public init(store: NodeStore, client: HubClient, intervalMs: Int, logger: Logger) {
        self.store = store
        self.client = client
        self.intervalMs = intervalMs
        self.logger = logger
        self.link = Mutex(LinkState())
    }

    public var state: LinkState { link.withLock { $0 } }

    /// How long after failing to reach the hub the node decides spends alone without asking
    /// again, so a till never waits on a hub that just failed (a timeout can take seconds).
    public static let unreachableGraceSeconds: TimeInterval = 5

    /// True when the hub could not be reached in the last few seconds and has not been since.
    public var recentlyUnreachable: Bool {
        link.withLock { s in
            guard !s.online, let failed = s.lastFailureAt else { return false }
            return Date().timeIntervalSince(failed) < Self.unreachableGraceSeconds
        }
    }

    /// Records that the hub could not be reached (by a sync round or a till's authorisation);
    /// returns whether the node thought it was online until now.
    @discardableResult
    public func markUnreachable(_ error: any Error) -> Bool {
        link.withLock { s in
            let was = s.online
            s.online = false
            s.lastFailureAt = Date()
            s.lastError = "\(error)"
            return was
        }
    }

    /// On a graceful shutdown (SIGTERM, Ctrl-C) the round in progress finishes (a batch the hub
    /// took is recorded as taken), then the loop stops, even in the middle of a back-off sleep.
    public func run() async throws {
        await loop()
    }

    func loop() async {
        var failures = 0
        var skewed = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await syncOnce()
                // A clock far from the hub's dates this store's operations wrongly (expiry days,
                // campaigns, profile edits that win): say so once, and again when it is fixed.
                if let skew = client.clockSkewMs, (abs(skew) > 300_000) != skewed {
                    skewed.toggle()
                    if skewed {
                        logger.warning("this machine's clock is off from the hub's; fix its time (NTP)", metadata: ["clock_skew_ms": "\(skew)"])
                    } else {
                        logger.notice("clock agrees with the hub's again", metadata: ["clock_skew_ms": "\(skew)"])
                    }
                }
                if failures > 0 || !state.online {
                    let pending = (try? store.counts().pending) ?? 0
                    logger.notice("hub reachable: online", metadata: ["store.id": "\(store.store)", "pending": "\(pending)"])
                }
                failures = 0
                link.withLock { $0.online = true; $0.lastSyncAt = Date(); $0.lastError = nil; $0.lastFailureAt = nil }
            } catch {
                failures += 1
                if markUnreachable(error) || failures == 1 {
                    let pending = (try? store.counts().pending) ?? 0
                    logger.notice("hub unreachable: working offline", metadata: ["store.id": "\(store.store)", "pending": "\(pending)", "error": "\(error)"])
                }
            }
            // Back off while failing, up to 5 s, so a returning hub is not stampeded.
            let delay = failures == 0 ? intervalMs : min(5000, intervalMs << min(failures, 5))
            await cancelWhenGracefulShutdown { try? await Task.sleep(for: .milliseconds(delay)) }
        }
    }

    func pushOneByOne(_ batch: [TesseraCore.Operation]) async throws -> [PushResult] {
        var results: [PushResult] = []
        for op in batch {
            do {
                results += try await client.push(PushRequest(store: store.store, ops: [op])).results
            } catch let error as HubCallError where error.refusesTheRequest {
                logger.error("the hub cannot read an operation; it is set aside", metadata: ["op.id": "\(op.id)", "error": "\(error)"])
                results.append(PushResult(id: op.id, status: .rejected, reason: "\(error)"))
            }
        }
        return results
    }

    /// Bootstraps from the hub's snapshot file (§6.4). False when the hub has none (an older
    /// hub) or sent one this build cannot read: the node then loads the paged snapshot.
    private func bootstrapFromFile() async throws -> Bool {
        let started = Date()
        let path = store.snapshotFilePath
        defer {
            try? FileManager.default.removeItem(atPath: path)
            link.withLock { $0.progress = nil }
        }
        let bytes: Int64, originSeq: UInt64?
        do {
            link.withLock { $0.progress = "bootstrap: asking the hub for the snapshot file" }
            (bytes, originSeq) = try await client.downloadSnapshotFile(to: path) { received in
                self.link.withLock { $0.progress = "bootstrap: \(received / 1_000_000) MB of the snapshot file received" }
            }
        } catch HubCallError.status(let code, _) where code == 404 {
            logger.info("the hub sends no snapshot file; loading the paged snapshot")
            return false
        }
        let received = Date()
        link.withLock { $0.progress = "bootstrap: loading the snapshot file (\(bytes / 1_000_000) MB)" }
        let loaded: SnapshotFile.Loaded
        do {
            loaded = try store.bootstrap(fromFile: path, originSeq: originSeq)
        } catch let error as SnapshotFile.Unreadable {
            logger.warning("the hub's snapshot file could not be read; loading the paged snapshot", metadata: ["why": "\(error)"])
            return false
        }
        logger.info("bootstrapped from the hub's snapshot file", metadata: [
            "bytes": "\(bytes)", "rows": "\(loaded.rows)", "taken": "\(loaded.wholeFile ? "whole file" : "state tables")",
            "seconds_receiving": "\(Int(received.timeIntervalSince(started)))", "seconds_loading": "\(Int(Date().timeIntervalSince(received)))"])
        return true
    }

    /// One round: bootstrap if needed, push everything pending, pull everything new.
    public func syncOnce() async throws {
        let stale = try store.voidStaleSpends()
        if stale > 0 { logger.warning("voided spends that were never settled", metadata: ["count": "\(stale)"]) }
        // Leases that ended or were recalled are given back every few seconds, online or not
        // (the returns wait in the outbox); the hub lends them again once they arrive.
        if Date().timeIntervalSince(link.withLock { $0.leasesSettledAt }) >= 5 {
            let returned = try store.settleLeases()
            link.withLock { $0.leasesSettledAt = Date() }
            if returned > 0 { logger.info("gave leases back to the hub", metadata: ["store.id": "\(store.store)", "operations": "\(returned)"]) }
        }
        if try !store.counts().bootstrapped, try await !bootstrapFromFile() {
            // Page by page, each in its own transaction: memory stays flat however large the
            // chain. An interrupted bootstrap starts again from the first page.
            let started = Date()
            let first = try await client.snapshotPage(nil)
            try store.beginBootstrap(first)
            var next = first.next
            var pages = 1, rows = first.rowCount
            defer { link.withLock { $0.progress = nil } }
            while let token = next {
                let page = try await client.snapshotPage(token)
                try store.importSnapshotPage(page)
                next = page.next
                pages += 1
                rows += page.rowCount
                let rate = Int(Double(rows) / max(0.001, Date().timeIntervalSince(started)))
                link.withLock { $0.progress = "bootstrap: \(rows) rows in \(pages) pages loaded, \(rate) rows/s" }
                if pages % 20 == 0 { logger.info("bootstrapping", metadata: ["pages": "\(pages)", "rows": "\(rows)", "rows_per_s": "\(rate)"]) }
            }
            try store.finishBootstrap()
            logger.info("bootstrapped from the hub", metadata: ["cursor": "\(first.cursor)", "pages": "\(pages)", "rows": "\(rows)",
                                                                "seconds": "\(Int(Date().timeIntervalSince(started)))"])
        }
        // Push and pull. A push answered within `pullWaitsForPushMs` is waited for, so that the
        // pull brings what the hub made of it (a merge, a reversal) in the same round. One
        // that takes longer (after an outage every store's push queues at the hub's one
        // writer, a hundred stores' for seconds) is not: the node pulls meanwhile, every sync
        // interval, and once more when the push is answered. Pulling the store's own
        // operations before their push is answered is safe: they learn their versions from the
        // page, and the answer then changes nothing.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await self.pushOutbox()
                return true
            }
            var wait = Self.pullWaitsForPushMs
            while true {
                group.addTask { [wait] in
                    try? await Task.sleep(for: .milliseconds(wait))
                    return false
                }
                let pushed = try await group.next() == true
                if pushed { group.cancelAll() }
                do {
                    try await pullAll()
                } catch {
                    // The push runs on: the hub may be taking it, and its answer is recorded
                    // rather than the push made again next round (on the hub's one writer,
                    // at the worst moment).
                    if !pushed {
                        while let next = try? await group.next(), next != true {}
                    }
                    throw error
                }
                if pushed { return }
                wait = intervalMs
            }
        }
    }

    /// How long a round's pull waits for its push to be answered before it starts anyway.
    public static let pullWaitsForPushMs = 100

    /// Pushes the outbox, 500 operations a request, and records the hub's answers.
    private func pushOutbox() async throws {
        while true {
            let batch = try store.pendingBatch(limit: SyncLimits.pushBatchMax)
            if batch.isEmpty { break }
            let results: [PushResult]
            do {
                results = try await client.push(PushRequest(store: store.store, ops: batch)).results
            } catch let error as HubCallError where error.refusesTheRequest {
                // The hub refuses the batch as a whole (it cannot even read one operation):
                // push one by one, and set aside the operation it refuses, so the queue moves on.
                results = try await pushOneByOne(batch)
            }
            try store.recordPush(results)
            for r in results where r.status == .rejected {
                logger.warning("hub rejected an operation", metadata: ["op.id": "\(r.id)", "reason": "\(r.reason ?? "")"])
            }
            if batch.count < SyncLimits.pushBatchMax { break }
        }
    }

    /// Pulls everything new; a long catch-up (after an outage) says how far it is.
    private func pullAll() async throws {
        let started = Date()
        var pulled = 0, pages = 0
        defer { if pages > 1 { link.withLock { $0.progress = nil } } }
        while true {
            let counts = try store.counts()
            let page = try await client.pull(after: counts.cursor, pending: counts.pending)
            try store.applyPull(page)
            pulled += page.ops.count
            pages += 1
            if !page.more {
                if pages > 1 { logger.info("caught up", metadata: ["operations": "\(pulled)", "cursor": "\(page.cursor)"]) }
                break
            }
            let rate = Int(Double(pulled) / max(0.001, Date().timeIntervalSince(started)))
            link.withLock { $0.progress = "catching up: \(pulled) operations applied, at version \(page.cursor), \(rate) operations/s" }
            if pages % 20 == 0 { logger.info("catching up", metadata: ["operations": "\(pulled)", "cursor": "\(page.cursor)", "per_s": "\(rate)"]) }
        }
    }
}
