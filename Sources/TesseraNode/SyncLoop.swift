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
}

/// The node's background sync: bootstrap once, then push the outbox and pull new operations,
/// on a timer (never only on new writes), backing off while the hub is unreachable. An
/// operation the hub rejects is marked and set aside; it never blocks the queue.
public final class SyncLoop: Service, Sendable {
    let store: NodeStore
    let client: HubClient
    let intervalMs: Int
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

    public func run() async throws {
        // Stop promptly on shutdown, even in the middle of a back-off sleep.
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    func loop() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await syncOnce()
                if failures > 0 || !state.online {
                    let pending = (try? store.counts().pending) ?? 0
                    logger.notice("hub reachable: online", metadata: ["store.id": "\(store.store)", "pending": "\(pending)"])
                }
                failures = 0
                link.withLock { $0.online = true; $0.lastSyncAt = Date(); $0.lastError = nil }
            } catch {
                failures += 1
                let wasOnline = link.withLock { s -> Bool in
                    let was = s.online
                    s.online = false
                    s.lastError = "\(error)"
                    return was
                }
                if wasOnline || failures == 1 {
                    let pending = (try? store.counts().pending) ?? 0
                    logger.notice("hub unreachable: working offline", metadata: ["store.id": "\(store.store)", "pending": "\(pending)", "error": "\(error)"])
                }
            }
            // Back off while failing, up to 5 s, so a returning hub is not stampeded.
            let delay = failures == 0 ? intervalMs : min(5000, intervalMs << min(failures, 5))
            try? await Task.sleep(for: .milliseconds(delay))
        }
    }

    /// One round: bootstrap if needed, push everything pending, pull everything new.
    public func syncOnce() async throws {
        if try !store.counts().bootstrapped {
            let snapshot = try await client.snapshot(timeout: 120)
            try store.bootstrap(snapshot)
            logger.info("bootstrapped from the hub", metadata: ["cursor": "\(snapshot.cursor)", "members": "\(snapshot.members.count)"])
        }
        while true {
            let batch = try store.pendingBatch(limit: SyncLimits.pushBatchMax)
            if batch.isEmpty { break }
            let response = try await client.push(PushRequest(store: store.store, ops: batch), timeout: 30)
            try store.recordPush(response.results)
            for r in response.results where r.status == .rejected {
                logger.warning("hub rejected an operation", metadata: ["op.id": "\(r.id)", "reason": "\(r.reason ?? "")"])
            }
            if batch.count < SyncLimits.pushBatchMax { break }
        }
        while true {
            let counts = try store.counts()
            let page = try await client.pull(after: counts.cursor, pending: counts.pending, timeout: 30)
            try store.applyPull(page)
            if !page.more { break }
        }
    }
}
