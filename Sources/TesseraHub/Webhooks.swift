import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// Delivers events to head office's webhooks: each webhook in event order, at least once,
/// signed (`Tessera-Signature`), retried with exponential backoff, and every attempt recorded
/// in its delivery log. It runs apart from syncing: a receiver that is down or slow delays only
/// its own webhook, never a store. Several hub processes share the work: a process holds a
/// webhook under a lease (renewed at every attempt) while it delivers, and stops as soon as
/// the ledger says another holds it, so a webhook's events go out in order.
public struct WebhookDispatcher: Service {
    let storage: any HubStorage
    let allowedHosts: Set<String>
    let logger: Logger
    /// The first retry waits this long; each next one twice as long, up to `retryMaxMs`.
    let retryBaseMs: Int64
    static let retryMaxMs: Int64 = 600_000
    /// After this many failed attempts an event is abandoned (it stays in the feed).
    static let attemptsMax = 15
    static let leaseMs: Int64 = 60_000
    let holder = "hub-" + UUID().uuidString.prefix(8).lowercased()

    public init(storage: any HubStorage, allowedHosts: Set<String>, retryBaseMs: Int64 = 1_000, logger: Logger) {
        self.storage = storage
        self.allowedHosts = allowedHosts
        self.retryBaseMs = max(1, retryBaseMs)
        self.logger = logger
    }

    public func run() async throws {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        // Allowed hosts are named by the operator; a redirect could lead anywhere else.
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                var more = false
                do { more = try await round(client) } catch {
                    logger.warning("webhook round failed; trying again shortly", metadata: ["error": "\(error)"])
                }
                if !more { try? await Task.sleep(for: .milliseconds(500)) }
            }
        }
        try? await client.shutdown()
    }

    /// One pass over the webhooks that are due, each in a task of its own (a slow receiver
    /// delays only its own webhook); true when one may have more to deliver now.
    func round(_ client: HTTPClient) async throws -> Bool {
        let due = try await HubApplication.offload { try storage.ledger.webhooks() }
            .filter { $0.revokedAt == nil && $0.retryAtMs <= NodeStore.wallClockMs() }
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            for hook in due {
                group.addTask {
                    let now = NodeStore.wallClockMs()
                    let claimed = try await HubApplication.offload {
                        try storage.ledger.claimWebhook(hook.id, holder: holder, nowMs: now, untilMs: now + Self.leaseMs)
                    }
                    // The row as it stands once this process holds it: another may have moved it on.
                    guard claimed, let current = try await HubApplication.offload({ try storage.ledger.webhook(hook.id) }) else { return false }
                    return try await deliver(current, client)
                }
            }
            var more = false
            for try await answer in group { more = more || answer }
            return more
        }
    }

    /// Delivers what is waiting for one webhook, in order, until one fails, none is left or
    /// another process has taken the webhook over. Each step renews this process's lease.
    private func deliver(_ hook: WebhookRecord, _ client: HTTPClient) async throws -> Bool {
        let page = 50
        let events = try await HubApplication.offload { try storage.ledger.events(after: hook.cursor, limit: page) }
        var cursor = hook.cursor, failures = hook.failures
        for row in events {
            guard let event = row.event, hook.types.contains(event.type) else { cursor = row.id; continue }
            let attempt = failures + 1
            let started = NodeStore.wallClockMs()
            let (status, error) = await post(event, to: hook, client)
            let delivered = error == nil
            let abandoned = !delivered && attempt >= Self.attemptsMax
            let outcome = delivered ? "delivered" : abandoned ? "abandoned" : "failed"
            let record = HubAPI.Delivery(webhook: hook.id, event: event.id, attempt: attempt, outcome: outcome, status: status, error: error,
                                         durationMs: NodeStore.wallClockMs() - started, at: Date().ISO8601Format())
            let wait = min(Self.retryMaxMs, retryBaseMs << Int64(min(attempt - 1, 30)))
            let moveOn = delivered || abandoned
            let (next, nextFailures, retryAt) = moveOn ? (event.id, 0, Int64(0)) : (cursor, attempt, NodeStore.wallClockMs() + wait)
            let kept = try await HubApplication.offload {
                try storage.ledger.recordDelivery(record, holder: holder, cursor: next, failures: nextFailures, retryAtMs: retryAt,
                                                  untilMs: NodeStore.wallClockMs() + Self.leaseMs)
            }
            guard kept else { return false }
            if abandoned {
                logger.error("webhook gave up on an event", metadata: ["webhook": "\(hook.id)", "event": "\(event.id)", "attempts": "\(attempt)"])
            }
            guard moveOn else {
                logger.warning("webhook delivery failed; will retry", metadata: [
                    "webhook": "\(hook.id)", "event": "\(event.id)", "attempt": "\(attempt)", "retry_in_ms": "\(wait)", "error": "\(error ?? "")"])
                return false
            }
            cursor = event.id
            failures = 0
        }
        if cursor > hook.cursor {
            let passed = cursor
            guard try await HubApplication.offload({ try storage.ledger.passOver(hook.id, holder: holder, cursor: passed) }) else { return false }
        }
        return events.count == page
    }

    /// One POST of one event: (HTTP status, nil) on a 2xx answer, else what went wrong.
    private func post(_ event: HubAPI.Event, to hook: WebhookRecord, _ client: HTTPClient) async -> (Int?, String?) {
        guard WebhookRecord.allows(allowedHosts, url: hook.url) else {
            return (nil, "host no longer allowed by --webhook-hosts")
        }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let body = [UInt8](try encoder.encode(event))
            var request = HTTPClientRequest(url: hook.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "tessera-hub")
            request.headers.add(name: "Tessera-Event", value: event.type.rawValue)
            request.headers.add(name: "Tessera-Event-Id", value: String(event.id))
            request.headers.add(name: "Tessera-Webhook", value: hook.id)
            request.headers.add(name: "Tessera-Signature",
                                value: WebhookSignature.header(secret: hook.secret, timestamp: Int64(Date().timeIntervalSince1970), body: body))
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, deadline: .now() + .seconds(15))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            return (200..<300).contains(status) ? (status, nil) : (status, "answered \(status)")
        } catch {
            return (nil, "\(error)".prefix(300).description)
        }
    }
}
