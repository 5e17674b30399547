import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TesseraCore
import TesseraHTTP
import TesseraProtocol
import TesseraStorage

/// A store node: the till API over the local replica, spends authorised by the hub when it
/// answers in time and by the offline policy when it does not.
public final class Node: Sendable {
    public let store: NodeStore
    public let client: HubClient
    public let sync: SyncLoop
    let inFlight = Mutex<Set<String>>([])

    public init(store: NodeStore, client: HubClient, sync: SyncLoop) {
        self.store = store
        self.client = client
        self.sync = sync
    }

    /// Runs a spend to its end: ask the hub, then settle on disk with whatever came of it.
    func spend(_ step: SpendStep, key: IdempotencyKey?) async throws -> TillAnswer {
        switch step {
        case .answered(let answer):
            return answer
        case .authorize(let pending):
            let outcome: AuthorizationOutcome
            if sync.recentlyUnreachable {
                // The hub did not answer moments ago: decide now rather than make the till wait.
                return try await store.committing { [store] in try store.finishSpend(pending, outcome: .unreachable, key: key) }
            }
            do {
                let prior = try store.prior(for: pending)
                let answer = try await client.authorize(AuthorizeRequest(prior: prior, op: pending.op))
                switch answer.decision {
                case .accepted:
                    outcome = .accepted(version: answer.version ?? 0, prior: answer.prior)
                case .refused:
                    outcome = .refused(answer.code ?? .insufficientBalance, answer.message ?? "refused by the hub", prior: answer.prior)
                }
            } catch {
                sync.markUnreachable(error)
                outcome = .unreachable
            }
            let settled = outcome
            return try await store.committing { [store] in try store.finishSpend(pending, outcome: settled, key: key) }
        }
    }

    /// One request per idempotency key at a time: a retry arriving while the first attempt is
    /// still waiting for the hub is told to retry, not run twice.
    func exclusive<T>(_ key: IdempotencyKey?, _ work: () async throws -> T) async throws -> T {
        guard let key else { return try await work() }
        let claimed = inFlight.withLock { $0.insert(key.key).inserted }
        guard claimed else { throw DomainError(.requestInProgress, "a request with this Idempotency-Key is still in progress; retry shortly") }
        defer { _ = inFlight.withLock { $0.remove(key.key) } }
        return try await work()
    }

    public func status() throws -> NodeAPI.Status {
        let counts = try store.counts()
        let link = sync.state
        return NodeAPI.Status(store: store.store, online: link.online, bootstrapped: counts.bootstrapped, pendingOps: counts.pending,
                              rejectedOps: counts.rejected, cursor: counts.cursor,
                              lastSyncAt: link.lastSyncAt?.ISO8601Format(), lastError: link.lastError,
                              clockSkewMs: client.clockSkewMs, progress: link.progress)
    }
}

public enum NodeApplication {
    /// Requests a second from a node's tills (twice that in a burst): far above what a store's
    /// tills send; a benchmark's load raises it (`tessera node --rate-limit`).
    public static let defaultRateLimit: Double = 2000

    public static func build(node: Node, listen: ListenAddress, logger: Logger, rateLimit: Double = defaultRateLimit,
                             onRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
        Observability.bootstrap()
        let router = Router()
        router.add(middleware: RequestLogMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        // Tills carry no credentials: one allowance for the whole node, far above what a
        // store's tills send, so a runaway client cannot starve the others for long.
        router.add(middleware: RateLimitMiddleware(limiter: RateLimiter(ratePerSecond: rateLimit)))
        router.get("/healthz") { _, _ in try JSONBody.response(["status": "ok"]) }
        // Ready for tills once the chain is loaded (with or without the hub: offline is normal).
        router.get("/readyz") { _, _ in
            guard try node.store.counts().bootstrapped else {
                throw DomainError(.bootstrapping, "this node has not loaded the chain from the hub yet")
            }
            return try JSONBody.response(["status": "ready"])
        }
        router.get("/v1/status") { _, _ in try JSONBody.response(try node.status()) }
        router.get("/metrics") { _, _ in
            let status = try node.status()
            let labels = [("store", status.store.rawValue)]
            Observability.gauge("tessera_node_pending_operations", Double(status.pendingOps), labels: labels, help: "Operations the hub has not acknowledged")
            Observability.gauge("tessera_node_rejected_operations", Double(status.rejectedOps), labels: labels, help: "Operations the hub set aside")
            Observability.gauge("tessera_node_online", status.online ? 1 : 0, labels: labels, help: "1 while the hub answers")
            Observability.gauge("tessera_node_bootstrapped", status.bootstrapped ? 1 : 0, labels: labels, help: "1 once the chain is loaded")
            Observability.gauge("tessera_node_cursor", Double(status.cursor), labels: labels, help: "The newest log version this node holds")
            let last = status.lastSyncAt.flatMap { try? Date($0, strategy: .iso8601) }
            Observability.gauge("tessera_node_seconds_since_sync", last.map { Date().timeIntervalSince($0) } ?? -1, labels: labels,
                                help: "Seconds since the last successful sync (-1: never)")
            Observability.gauge("tessera_node_database_bytes", Double(SQLiteFiles.bytes(node.store.pool.path)), labels: labels,
                                help: "The node's SQLite file with its write-ahead log")
            let commits = node.store.groupCommits
            Observability.gauge("tessera_node_till_commits", Double(commits.batches), labels: labels,
                                help: "Commits of till writes since start (writes made together share one)")
            Observability.gauge("tessera_node_till_writes", Double(commits.writes), labels: labels, help: "Till writes since start")
            return Observability.response()
        }

        /// Decodes the body (or takes `whenEmpty` for an empty one), derives the idempotency key,
        /// and runs the till write.
        @Sendable func till<T: Decodable & Sendable>(_ type: T.Type, _ request: Request, whenEmpty: T? = nil,
                                _ work: @escaping @Sendable (T, IdempotencyKey?) async throws -> TillAnswer) async throws -> Response {
            let data = try await JSONBody.rawBody(request)
            let body: T
            if data.isEmpty, let whenEmpty { body = whenEmpty } else { body = try JSONBody.decode(type, data: data) }
            let key = try idempotencyKey(request, data)
            let answer = try await node.exclusive(key) { try await work(body, key) }
            return JSONBody.raw(status: answer.status, body: answer.body)
        }
        @Sendable func tillNoBody(_ request: Request, _ work: @escaping @Sendable (IdempotencyKey?) async throws -> TillAnswer) async throws -> Response {
            let key = try idempotencyKey(request, Data())
            let answer = try await node.exclusive(key) { try await work(key) }
            return JSONBody.raw(status: answer.status, body: answer.body)
        }

        router.post("/v1/members") { request, _ in
            try await till(NodeAPI.Enrol.self, request) { body, key in try await node.store.committing { try node.store.enrol(body, key: key) } }
        }
        router.get("/v1/members") { request, _ in
            guard let phone = request.query("phone") else { throw DomainError(.invalidRequest, "give ?phone=") }
            return try JSONBody.response(try node.store.member(phone: phone))
        }
        router.get("/v1/members/{id}") { _, context in
            try JSONBody.response(try node.store.member(MemberID(try context.parameters.require("id"))))
        }
        router.get("/v1/members/{id}/offline") { _, context in
            try JSONBody.response(try node.store.offlineAllowance(MemberID(try context.parameters.require("id"))))
        }
        router.patch("/v1/members/{id}") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.Update.self, request) { body, key in try await node.store.committing { try node.store.update(id, body, key: key) } }
        }
        router.post("/v1/members/{id}/recharge") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.Recharge.self, request) { body, key in try await node.store.committing { try node.store.recharge(id, body, key: key) } }
        }
        router.post("/v1/members/{id}/purchase") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.PurchaseRequest.self, request) { body, key in
                try await node.spend(try await node.store.committing { try node.store.beginPurchase(id, body, key: key) }, key: key)
            }
        }
        router.post("/v1/members/{id}/quote") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            let (body, _) = try await JSONBody.decode(NodeAPI.PurchaseRequest.self, from: request)
            return try JSONBody.response(try node.store.quote(id, body))
        }
        router.post("/v1/members/{id}/activities") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.ActivityRequest.self, request) { body, key in try await node.store.committing { try node.store.awardActivity(id, body, key: key) } }
        }
        router.post("/v1/members/{id}/memberships") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.MembershipRequest.self, request) { body, key in try await node.store.committing { try node.store.sellMembership(id, body, key: key) } }
        }
        router.get("/v1/rules") { _, _ in try JSONBody.response(try node.store.programme()) }
        router.post("/v1/members/{id}/cards") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try await till(NodeAPI.NewCard.self, request) { body, key in try await node.store.committing { try node.store.issueCard(id, body, key: key) } }
        }
        router.post("/v1/transactions/{id}/refund") { request, context in
            let raw = try context.parameters.require("id")
            guard let txn = OperationID(raw) else { throw DomainError(.invalidRequest, "'\(raw)' is not a transaction id") }
            // The body is optional: none (or `{}`) refunds all that is left.
            return try await till(NodeAPI.RefundRequest.self, request, whenEmpty: NodeAPI.RefundRequest()) { body, key in
                try await node.spend(try await node.store.committing { try node.store.beginRefund(txn, body, key: key) }, key: key)
            }
        }
        router.get("/v1/cards/{card}") { _, context in
            try JSONBody.response(try node.store.member(card: CardNumber(try context.parameters.require("card"))))
        }
        router.post("/v1/cards/{card}/block") { request, context in
            let card = CardNumber(try context.parameters.require("card"))
            return try await tillNoBody(request) { key in try await node.store.committing { try node.store.blockCard(card, key: key) } }
        }

        return Application(router: router, server: .http1(configuration: .init(idleTimeout: .seconds(75))),
                           configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "tessera-node"),
                           services: [node.sync], onServerRunning: onRunning, logger: logger)
    }

    static func idempotencyKey(_ request: Request, _ body: Data) throws -> IdempotencyKey? {
        guard let key = request.headers[.idempotencyKey] else { return nil }
        guard (1...255).contains(key.utf8.count) else { throw DomainError(.invalidRequest, "Idempotency-Key must be 1 to 255 characters") }
        return IdempotencyKey(key: key, method: request.method.rawValue, path: request.uri.path, body: body)
    }
}
