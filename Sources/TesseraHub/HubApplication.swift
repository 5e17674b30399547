import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import Metrics
import NIOCore
import NIOPosix
import TesseraCore
import TesseraHTTP
import TesseraProtocol
import TesseraStorage

/// The hub's HTTP server: the sync protocol for store nodes (store tokens) and the head-office
/// API (head-office tokens). Handlers only decode, call the store, encode.
public enum HubApplication {
    /// - Parameter rateLimit: requests a second each credential may make on average (twice that
    ///   in a burst); requests without one share a single allowance.
    /// - Parameter webhookHosts: the hosts webhooks may deliver to (`*`: any); none by default.
    /// - Parameter snapshotFileAgeSeconds: how long one snapshot file is sent to new nodes; the
    ///   hub keeps one ready, made again this often while the chain changes (0: made on demand).
    public static func build(storage: any HubStorage, listen: ListenAddress, logger: Logger, jobsIntervalSeconds: Int = 600,
                             snapshotFileAgeSeconds: Int = 600, rateLimit: Double = 1000, tls: TLSConfiguration? = nil,
                             webhookHosts: Set<String> = [], webhookRetryBaseMs: Int64 = 1_000,
                             onRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        Observability.bootstrap()
        let router = Router()
        router.add(middleware: RequestLogMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: RateLimitMiddleware(limiter: RateLimiter(ratePerSecond: rateLimit)))
        // Liveness: the process answers (a restart would not bring a database back), and says
        // how its database is. Readiness: send it traffic only while its database answers.
        router.get("/healthz") { _, _ in
            let database = (try? await offload { try storage.ready() }) == nil ? "unavailable" : "ok"
            return try JSONBody.response(["status": "ok", "database": database])
        }
        // Prometheus scrapes this (keep it off the internet: deploy/nginx does).
        router.get("/metrics") { _, _ in
            try await offload {
                let now = Date()
                for s in try storage.stores() {
                    let labels = [("store", s.id.rawValue)]
                    Observability.gauge("tessera_store_lag_operations", Double(s.head - s.cursor), labels: labels,
                                        help: "Operations of the log the store has not pulled yet")
                    Observability.gauge("tessera_store_pending_operations", Double(s.pending ?? 0), labels: labels,
                                        help: "Operations the store's node said it had not pushed, at its last pull")
                    let last = s.lastSyncAt.flatMap { try? Date($0, strategy: .iso8601) }
                    Observability.gauge("tessera_store_seconds_since_sync", last.map { now.timeIntervalSince($0) } ?? -1, labels: labels,
                                        help: "Seconds since the store last synced (-1: never)")
                    Observability.gauge("tessera_store_operations_accepted", Double(s.opsAccepted), labels: labels,
                                        help: "Operations of the store in the log")
                    Observability.gauge("tessera_log_head", Double(s.head), help: "The log's newest version")
                }
                let (recorded, open) = try storage.exceptionCounts()
                for (kind, count) in recorded {
                    Observability.gauge("tessera_exceptions", Double(count), labels: [("kind", kind)], help: "Exceptions recorded, by kind")
                    Observability.gauge("tessera_exceptions_open", Double(open[kind] ?? 0), labels: [("kind", kind)],
                                        help: "Exceptions head office has not resolved, by kind")
                }
                let bytes = try storage.databaseBytes()
                Observability.gauge("tessera_hub_fold_bytes", Double(bytes.fold), help: "This hub process's SQLite file (the whole hub on SQLite)")
                if let ledger = bytes.ledger { Observability.gauge("tessera_hub_postgres_bytes", Double(ledger), help: "The hub's PostgreSQL database") }
            }
            return Observability.response()
        }
        router.get("/readyz") { _, _ in
            try await offload { try storage.ready() }
            return try JSONBody.response(["status": "ready"])
        }

        let sync = router.group("/v1/sync")
        sync.post("/push") { request, context in
            let store = try await offload { try authenticateStore(request, storage) }
            // Received at once (a store on a slow link holds up no one else), decoded only when
            // its turn is near (`pushesDecoded`).
            let body = try await JSONBody.rawBody(request, limit: SyncLimits.bodyBytesMax)
            let (push, results) = try await pushesDecoded.run {
                let push = try JSONBody.decode(PushRequest.self, data: body)
                try checkProtocol(push.protocol)
                guard push.store == store else { throw DomainError(.originMismatch, "this token belongs to store \(store), not \(push.store)") }
                guard push.ops.count <= SyncLimits.pushBatchMax else {
                    throw DomainError(.invalidRequest, "at most \(SyncLimits.pushBatchMax) operations per push")
                }
                return (push, try await offloadWrite { try storage.push(push.ops, from: store) })
            }
            for (status, list) in Dictionary(grouping: results, by: \.status) {
                Counter(label: "tessera_operations_total", dimensions: [("status", status.rawValue)]).increment(by: list.count)
            }
            let rejected = results.filter { $0.status == .rejected }
            context.logger.log(level: rejected.isEmpty ? .info : .warning, "push", metadata: [
                "store.id": "\(store)", "ops": "\(results.count)", "first_op.id": "\(push.ops.first?.id.description ?? "")",
                "last_op.id": "\(push.ops.last?.id.description ?? "")", "duplicates": "\(results.filter { $0.status == .duplicate }.count)",
                "rejected": "\(rejected.map(\.id.description).joined(separator: ","))"])
            return JSONBody.response(json: PushResponse(results: results).json)
        }
        sync.post("/authorize") { request, context in
            let store = try await offload { try authenticateStore(request, storage) }
            let (auth, _) = try await JSONBody.decode(AuthorizeRequest.self, from: request, limit: SyncLimits.bodyBytesMax)
            try checkProtocol(auth.protocol)
            guard auth.prior.count <= SyncLimits.pushBatchMax else {
                throw DomainError(.invalidRequest, "at most \(SyncLimits.pushBatchMax) prior operations")
            }
            let answer = try await authorizeThreads.runIfActive { try storage.authorize(auth, from: store) }
            Counter(label: "tessera_authorisations_total", dimensions: [("decision", answer.decision.rawValue)]).increment()
            context.logger.info("authorize", metadata: ["store.id": "\(store)", "op.id": "\(auth.op.id)", "decision": "\(answer.decision.rawValue)",
                                                        "code": "\(answer.code?.rawValue ?? "")"])
            return try JSONBody.response(answer)
        }
        sync.get("/pull") { request, _ in
            let store = try await offload { try authenticateStore(request, storage) }
            try checkProtocolHeader(request)
            let after = try request.integerQuery("after") ?? 0
            guard after >= 0 else {
                throw DomainError(.invalidRequest, "after must be a version (a whole number, 0 or more)")
            }
            let limit = Int(clamping: try request.integerQuery("limit") ?? Int64(SyncLimits.pullPageMax))
            let pending = try request.integerQuery("pending")
            let gzip = request.acceptsGzip
            let page = try await offload { try storage.pullPage(after: after, limit: limit, for: store, pending: pending, gzip: gzip) }
            return JSONBody.page(page)
        }
        sync.get("/snapshot") { request, _ in
            let store = try await offload { try authenticateStore(request, storage) }
            try checkProtocolHeader(request)
            // `?page=first`, then `?page=<next>`: the state in pages of `limit` rows, so that
            // neither side holds a large chain in memory at once. Without `page`: all of it.
            let limit = Int(clamping: try request.integerQuery("limit") ?? Int64(SyncLimits.snapshotPageRows))
            if let page = request.uri.queryParameters.get("page") {
                let snapshot = try await offload { try storage.snapshotPage(for: store, page: page == "first" ? nil : page, limit: limit) }
                return try JSONBody.response(snapshot)
            }
            let snapshot = try await offload { try storage.snapshot(for: store) }
            return try JSONBody.response(snapshot)
        }
        // The whole state as one SQLite file (§6.4): what a new node loads at a chain's size.
        sync.get("/snapshot/file") { request, _ in
            let store = try await offload { try authenticateStore(request, storage) }
            try checkProtocolHeader(request)
            // The hub's kept file (every store is sent the same one while it is fresh): opened
            // here, it is read to the end even if a newer file replaces it meanwhile.
            let served = try await offload { try storage.snapshotFile(for: store, maxAge: TimeInterval(snapshotFileAgeSeconds)) }
            let made = served.file
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: made.path))
            var headers: HTTPFields = [.contentType: "application/vnd.sqlite3"]
            headers[.tesseraOriginSeq] = String(served.originSeq)
            let body = ResponseBody(contentLength: Int(made.bytes)) { writer in
                defer { try? handle.close() }
                while true {
                    let chunk = try await offload { try handle.read(upToCount: 1 << 20) ?? Data() }
                    if chunk.isEmpty { break }
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: headers, body: body)
        }

        let office = router.group("/v1")
        office.get("/members/{id}") { request, context in
            try await offload { try authenticateAdmin(request, storage, .reporter) }
            let id = MemberID(try context.parameters.require("id"))
            guard let view = try await offload({ try storage.member(id) }) else { throw DomainError(.notFound, "no member \(id)") }
            return try JSONBody.response(view)
        }
        office.get("/members/{id}/leases") { request, context in
            let id = MemberID(try context.parameters.require("id"))
            return try JSONBody.response(try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.memberLeases(id)
            })
        }
        office.get("/members/{id}/statement") { request, context in
            let csv = try CSVBody.wanted(request)
            let id = MemberID(try context.parameters.require("id"))
            let statement = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.statement(of: id)
            }
            guard csv else { return try JSONBody.response(statement) }
            return CSVBody.response(header: ["version", "op", "kind", "store", "at", "principal", "bonus", "points", "balance", "points_after", "rules_version"],
                                    rows: statement.lines.map {
                ["\($0.version)", $0.op, $0.kind, $0.store, $0.at, "\($0.principal)", "\($0.bonus)", "\($0.points)", "\($0.balance)",
                 "\($0.pointsAfter)", $0.rulesVersion.map(String.init) ?? ""]
            })
        }
        office.get("/members") { request, _ in
            let members = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.allMembers()
            }
            return try JSONBody.response(["members": members])
        }
        office.get("/stores") { request, _ in
            let stores = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.stores()
            }
            return try JSONBody.response(HubAPI.Stores(stores: stores))
        }
        office.post("/members/{id}/points") { request, context in
            let office = try await offload { try authenticateAdmin(request, storage, .admin) }
            let id = MemberID(try context.parameters.require("id"))
            let (award, _) = try await JSONBody.decode(NodeAPI.PointsAward.self, from: request)
            let view = try await offload { try storage.awardPoints(id, award, actor: office.actor) }
            return try JSONBody.response(view, status: .created)
        }
        office.put("/rules") { request, _ in
            let office = try await offload { try authenticateAdmin(request, storage, .admin) }
            let (document, _) = try await JSONBody.decode(JSONValue.self, from: request)
            let published = try await offload { try storage.publishRules(document, actor: office.actor) }
            return try JSONBody.response(published, status: .created)
        }
        office.get("/rules") { request, _ in
            // Head office and stores may both read the rules in force.
            let programme = try await offload {
                if let token = request.bearerToken, try storage.authenticateStore(token: token) != nil {} else {
                    try authenticateAdmin(request, storage, .reporter)
                }
                return try storage.currentRules()
            }
            return try JSONBody.response(programme)
        }
        office.post("/jobs/run") { request, _ in
            let report = try await offload {
                let office = try authenticateAdmin(request, storage, .admin)
                let report = try storage.runJobs(asOfMs: nil)
                try storage.audit(actor: office.actor, action: "jobs.run",
                                  detail: "as of \(report.asOf): \(report.expiries) expiries, \(report.coupons) coupons")
                return report
            }
            return try JSONBody.response(report)
        }
        office.get("/audit") { request, _ in
            let limit = try request.limitQuery(default: 1000, max: 10_000)
            let audit = try await offload {
                try authenticateAdmin(request, storage, .admin)
                return try storage.auditLog(limit: limit)
            }
            return try JSONBody.response(["audit": audit])
        }
        // Events for other tools: a feed to pull, and webhooks the hub delivers.
        office.get("/events") { request, _ in
            let after = try request.integerQuery("after") ?? 0
            guard after >= 0 else { throw DomainError(.invalidRequest, "after must be an event id (0 or more)") }
            let limit = try request.limitQuery(default: 100, max: 1_000)
            let types = try eventTypes(request)
            let page = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.events(after: after, limit: limit, types: types)
            }
            return try JSONBody.response(page)
        }
        office.post("/webhooks") { request, _ in
            let office = try await offload { try authenticateAdmin(request, storage, .admin) }
            let (ask, _) = try await JSONBody.decode(HubAPI.WebhookRequest.self, from: request)
            let hook = try await offload { try storage.addWebhook(ask, allowedHosts: webhookHosts, actor: office.actor) }
            return try JSONBody.response(hook, status: .created)
        }
        office.get("/webhooks") { request, _ in
            let hooks = try await offload {
                try authenticateAdmin(request, storage, .admin)
                return try storage.webhooks()
            }
            return try JSONBody.response(HubAPI.Webhooks(webhooks: hooks))
        }
        office.delete("/webhooks/{id}") { request, context in
            let id = try context.parameters.require("id")
            try await offload {
                let office = try authenticateAdmin(request, storage, .admin)
                try storage.revokeWebhook(id, actor: office.actor)
            }
            return try JSONBody.response(["revoked": id])
        }
        office.get("/webhooks/{id}/deliveries") { request, context in
            let id = try context.parameters.require("id")
            let limit = try request.limitQuery(default: 100, max: 1_000)
            let deliveries = try await offload {
                try authenticateAdmin(request, storage, .admin)
                return try storage.deliveries(webhook: id, limit: limit)
            }
            return try JSONBody.response(HubAPI.Deliveries(deliveries: deliveries))
        }
        office.get("/exceptions") { request, _ in
            let limit = try request.limitQuery(default: 1000, max: 10_000)
            let exceptions = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.exceptions(limit: limit)
            }
            return try JSONBody.response(HubAPI.Exceptions(exceptions: exceptions))
        }

        // Reports: settlement between stores, and what the chain owes its members.
        office.get("/reports/settlement") { request, _ in
            let csv = try CSVBody.wanted(request)
            let period = try request.integerQuery("period").map { Int(clamping: $0) }
            let report = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.settlement(period: period)
            }
            guard csv else { return try JSONBody.response(report) }
            return CSVBody.response(header: ["period", "issuer", "spender", "principal", "bonus", "flows"], rows: report.pairs.map {
                ["\(report.period)", $0.issuer, $0.spender, "\($0.principal)", "\($0.bonus)", "\($0.flows)"]
            })
        }
        office.get("/reports/settlement/flows") { request, _ in
            let csv = try CSVBody.wanted(request)
            let period = try request.integerQuery("period").map { Int(clamping: $0) }
            let limit = try request.limitQuery(default: 1000, max: 100_000)
            let issuer = request.query("issuer"), spender = request.query("spender")
            let flows = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.settlementFlows(period: period, issuer: issuer, spender: spender, limit: limit)
            }
            guard csv else { return try JSONBody.response(flows) }
            return CSVBody.response(header: ["period", "version", "currency", "issuer", "spender", "amount", "load", "spend", "member"], rows: flows.flows.map {
                ["\(flows.period)", "\($0.version)", $0.currency.rawValue, $0.issuer, $0.spender, "\($0.amount)", $0.load, $0.spend, $0.member.rawValue]
            })
        }
        office.post("/reports/settlement/close") { request, _ in
            let report = try await offload {
                let office = try authenticateAdmin(request, storage, .admin)
                return try storage.closeSettlementPeriod(actor: office.actor)
            }
            return try JSONBody.response(report, status: .created)
        }
        office.get("/reports/liabilities") { request, _ in
            let csv = try CSVBody.wanted(request)
            var asOf: LocalDay?
            if let text = request.query("as_of") {
                guard let day = LocalDay(iso: text) else { throw DomainError(.invalidRequest, "as_of is a date, YYYY-MM-DD") }
                asOf = day
            }
            let report = try await offload { [asOf] in
                try authenticateAdmin(request, storage, .reporter)
                return try storage.liabilities(asOf: asOf)
            }
            guard csv else { return try JSONBody.response(report) }
            return CSVBody.response(header: ["store", "principal", "bonus", "owed_principal", "owed_bonus"], rows: report.stores.map {
                [$0.store, "\($0.principal)", "\($0.bonus)", "\($0.owedPrincipal)", "\($0.owedBonus)"]
            } + [["chain", "\(report.principal)", "\(report.bonus)", "\(report.owedPrincipal)", "\(report.owedBonus)"]])
        }

        office.post("/exceptions/{id}/resolve") { request, context in
            guard let id = Int64(try context.parameters.require("id")) else { throw DomainError(.notFound, "no such exception") }
            let office = try await offload { try authenticateAdmin(request, storage, .admin) }
            let (ask, _) = try await JSONBody.decode(HubAPI.ResolveException.self, from: request)
            let record = try await offload { try storage.resolveException(id, ask, actor: office.actor) }
            return try JSONBody.response(record, status: .created)
        }
        office.get("/reports/stores") { request, _ in
            let csv = try CSVBody.wanted(request)
            func day(_ name: String) throws -> LocalDay? {
                guard let text = request.query(name) else { return nil }
                guard let day = LocalDay(iso: text) else { throw DomainError(.invalidRequest, "\(name) is a date, YYYY-MM-DD") }
                return day
            }
            let from = try day("from"), through = try day("to"), store = request.query("store")
            let report = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.storeActivity(from: from, through: through, store: store)
            }
            guard csv else { return try JSONBody.response(report) }
            return CSVBody.response(header: ["store", "day", "operations", "enrolments", "recharges", "recharged", "sales", "sold",
                                             "spent_from_balance", "refunds", "points_earned", "points_redeemed"], rows: report.days.map {
                [$0.store, $0.day, "\($0.operations)", "\($0.enrolments)", "\($0.recharges)", "\($0.recharged)", "\($0.sales)", "\($0.sold)",
                 "\($0.spentFromBalance)", "\($0.refunds)", "\($0.pointsEarned)", "\($0.pointsRedeemed)"]
            })
        }
        office.get("/reports/breakage") { request, _ in
            let csv = try CSVBody.wanted(request)
            let days = try request.integerQuery("untouched_days") ?? 365
            guard (1...36_500).contains(days) else { throw DomainError(.invalidRequest, "untouched_days is 1 to 36500") }
            let list = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.breakageCandidates(untouchedDays: days)
            }
            guard csv else { return try JSONBody.response(HubAPI.Breakage(untouchedDays: days, members: list)) }
            return CSVBody.response(header: ["member", "balance", "last_movement"], rows: list.map { [$0.member.rawValue, "\($0.balance)", $0.lastMovement] })
        }
        office.get("/reports/segments/{name}") { request, context in
            let csv = try CSVBody.wanted(request)
            let name = try context.parameters.require("name")
            let parameters = try segmentParameters(request)
            let report = try await offload {
                try authenticateAdmin(request, storage, .reporter)
                return try storage.segment(name, parameters)
            }
            guard csv else { return try JSONBody.response(report) }
            return CSVBody.response(header: ["member", "name", "phone", "label", "figure"], rows: report.members.map {
                [$0.member.rawValue, $0.name ?? "", $0.phone ?? "", $0.label, "\($0.figure)"]
            })
        }
        office.post("/reports/segments/{name}/coupons") { request, context in
            let name = try context.parameters.require("name")
            let parameters = try segmentParameters(request)
            let office = try await offload { try authenticateAdmin(request, storage, .admin) }
            let (ask, _) = try await JSONBody.decode(HubAPI.SegmentCouponRequest.self, from: request)
            let issued = try await offload { try storage.issueSegmentCoupons(name, parameters, template: ask.template, actor: office.actor) }
            return try JSONBody.response(issued, status: .created)
        }

        // Head office's dashboard in the browser (server-rendered HTML, no scripts).
        Dashboard.register(router, storage: storage)

        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(75)))
        // HTTPS served by the hub itself (or plain HTTP behind a TLS proxy; see deploy/).
        let server = try tls.map { try HTTPServerBuilder.tls(http1, tlsConfiguration: $0) } ?? http1
        return Application(router: router, server: server,
                           configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "tessera-hub",
                                                backlog: HubApplication.listenBacklog),
                           services: [HubJobs(storage: storage, intervalSeconds: max(1, jobsIntervalSeconds), logger: logger),
                                      SnapshotFileKeeper(storage: storage, ageSeconds: snapshotFileAgeSeconds, logger: logger),
                                      WebhookDispatcher(storage: storage, allowedHosts: webhookHosts, retryBaseMs: webhookRetryBaseMs, logger: logger)],
                           onServerRunning: onRunning, logger: logger)
    }

    /// Connections the hub's socket holds before it accepts them. After an outage every store
    /// reconnects at once: with the server's default (256), a thousand stores overflowed it
    /// (the kernel dropped over a thousand connection attempts, and a store's request could
    /// wait minutes for its connection). The kernel caps it at `net.core.somaxconn`
    /// (4096 on current Linux).
    static let listenBacklog = 4096

    /// `?type=a,b`: the event types asked for (nil: every type).
    static func eventTypes(_ request: Request) throws -> Set<HubAPI.EventType>? {
        guard let list = request.uri.queryParameters.get("type") else { return nil }
        guard !list.isEmpty else { throw DomainError(.invalidRequest, "type names one or more event types, comma-separated") }
        return try Set(list.split(separator: ",").map { name in
            guard let type = HubAPI.EventType(rawValue: String(name)) else {
                throw DomainError(.invalidRequest, "unknown event type \(name); types are \(HubAPI.EventType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return type
        })
    }

    /// Storage work (SQLite through GRDB, PostgreSQL through blocking waits) runs on threads of
    /// its own, never on Swift's few cooperative threads: a handler waiting for the chain's
    /// write lock must not keep `/healthz`, `/readyz` or pulls from being answered.
    @discardableResult
    static func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await storageThreads.runIfActive(body)
    }

    /// A store's push: storage work that takes the chain's one writer, on threads of its own.
    /// After an outage a hundred stores push at once; on the shared threads their pushes took
    /// every one of them waiting for the writer, and every pull (a read, which needs no writer)
    /// waited behind them all: replicas sat still until the hub had taken every push.
    static func offloadWrite<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await writeThreads.runIfActive(body)
    }

    /// More threads than cores: they spend most of their time waiting (for the disk, for
    /// PostgreSQL, for the write lock), and NIO's shared pool has one per core.
    static let storageThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    /// One thread writes, the others check and encode the next pushes' operations (done before
    /// the write) or wait their turn.
    static let writeThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// Pushes decoded at once: twice the threads that take them. After an outage every store
    /// pushes at once; each push decoded its operations as it arrived, then waited for a
    /// thread: a thousand stores' 2,000 pushes held a million decoded operations, and the hub
    /// 1.3 GB. The others now wait as the bytes they came as (a third of that), in the order
    /// they came. (Waiting unread would keep even those off the hub, but a few stores on slow
    /// links, sending their pushes slowly, would then hold every turn.)
    static let pushesDecoded = Turnstile(2 * 4)

    /// A till waits for an authorisation (1.5 s by default, then it sells offline): behind a
    /// hundred stores' pushes it would wait for them all; here it waits for the writer only
    /// behind the few pushes `writeThreads` hold.
    static let authorizeThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    /// A segment's parameters from the query (`bands=30,60,90`, `window_days`, `excited`,
    /// `active`, `inert`, `since_days`, `month`, `percent`, `days`); the rest keep their defaults.
    static func segmentParameters(_ request: Request) throws -> Segments.Parameters {
        var p = Segments.Parameters()
        if let bands = request.uri.queryParameters.get("bands") {
            let numbers = bands.split(separator: ",").map { Int64($0.trimmingCharacters(in: .whitespaces)) }
            guard !numbers.isEmpty, numbers.count <= 12, numbers.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= 36_500 }) else {
                throw DomainError(.invalidRequest, "bands takes up to 12 whole numbers of days, e.g. 30,60,90")
            }
            p.bands = numbers.compactMap { $0 }
        }
        func bounded(_ name: String, _ range: ClosedRange<Int64>) throws -> Int64? {
            guard let value = try request.integerQuery(name) else { return nil }
            guard range.contains(value) else { throw DomainError(.invalidRequest, "\(name) must be \(range.lowerBound) to \(range.upperBound)") }
            return value
        }
        if let v = try bounded("window_days", 1...3_650) { p.windowDays = v }
        if let v = try bounded("excited", 1...10_000) { p.excited = Int(v) }
        if let v = try bounded("active", 1...10_000) { p.active = Int(v) }
        if let v = try bounded("inert", 1...10_000) { p.inert = Int(v) }
        if let v = try bounded("since_days", 0...36_500) { p.sinceDays = v }
        if let v = try bounded("month", 1...12) { p.month = v }
        if let v = try bounded("percent", 1...100) { p.percent = v }
        if let v = try bounded("days", 0...3_650) { p.days = v }
        return p
    }

    static func authenticateStore(_ request: Request, _ storage: any HubStorage) throws -> StoreID {
        guard let token = request.bearerToken, let store = try storage.authenticateStore(token: token) else {
            try refused(request, storage, "a store token was missing, unknown or revoked")
            throw DomainError(.unauthorized, "a store token is required (Authorization: Bearer ...)")
        }
        return store
    }

    /// The head-office credential of the request, if it may act with `role` (an admin may do
    /// what a reporter may). A missing or bad token is 401, a reporter changing things 403;
    /// both go to the audit log.
    @discardableResult
    static func authenticateAdmin(_ request: Request, _ storage: any HubStorage, _ role: HeadOffice.Role) throws -> HeadOffice {
        guard let token = request.bearerToken, let office = try storage.authenticateAdmin(token: token) else {
            try refused(request, storage, "a head-office token was missing, unknown or revoked")
            throw DomainError(.unauthorized, "a head-office token is required (Authorization: Bearer ...); `tessera admin token` makes one")
        }
        if role == .admin && office.role != .admin {
            try storage.audit(actor: office.actor, action: "auth.forbidden", detail: "\(request.method.rawValue) \(request.uri.path)")
            throw DomainError(.forbidden, "this head-office token may only read (role \(office.role.rawValue))")
        }
        return office
    }

    /// A refused authentication, for the audit log: what was asked, and which token (by the
    /// start of its hash, never the token).
    static func refused(_ request: Request, _ storage: any HubStorage, _ why: String) throws {
        let which = request.bearerToken.map { " token " + Tokens.hash($0).prefix(8) } ?? " no token"
        try storage.audit(actor: "unauthenticated", action: "auth.failed", detail: "\(request.method.rawValue) \(request.uri.path):\(which); \(why)")
    }

    static func checkProtocol(_ version: Int) throws {
        guard ProtocolVersion.supported.contains(version) else {
            throw DomainError(.unsupportedProtocol,
                              "protocol \(version) is not supported; this hub speaks \(ProtocolVersion.supported.sorted().map(String.init).joined(separator: ", "))")
        }
    }

    static func checkProtocolHeader(_ request: Request) throws {
        guard let text = request.headers[.tesseraProtocol], let version = Int(text) else {
            throw DomainError(.unsupportedProtocol, "send the \(ProtocolVersion.header) header (this hub speaks 1)")
        }
        try checkProtocol(version)
    }
}
