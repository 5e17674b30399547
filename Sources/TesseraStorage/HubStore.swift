import Foundation
import GRDB
import NIOCore
import Synchronization
import TesseraCore
import TesseraProtocol

/// A snapshot page's place, as the opaque `next` token: base64url of `[table, key...]`.
enum SnapshotToken {
    static func encode(_ position: Replica.PagePosition) -> String {
        let parts: [JSONValue] = [.int(Int64(position.table))] + position.key.map { .string($0) }
        let json = (try? JSONText.encode(parts)) ?? "[]"
        return Data(json.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ token: String) throws -> Replica.PagePosition {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard token.count <= 4096, let data = Data(base64Encoded: base64),
              let parts = try? JSONText.decode([JSONValue].self, String(decoding: data, as: UTF8.self)),
              case .int(let table)? = parts.first, table >= 0, table < 64 else {
            throw DomainError(.invalidRequest, "page is not a token this hub gave (start with page=first)")
        }
        let key = try parts.dropFirst().map { part -> String in
            guard case .string(let text) = part else { throw DomainError(.invalidRequest, "page is not a token this hub gave (start with page=first)") }
            return text
        }
        return Replica.PagePosition(table: Int(table), key: key)
    }
}

/// The hub's storage: the global operation log (each operation with its version), the folded
/// state, stores and their tokens, authorisation decisions and exceptions. The hub's logic runs
/// in `HubStore` over the fold (SQLite) and a `HubLedger` (the record of truth: the same SQLite
/// file, or PostgreSQL shared by several hub processes).
public protocol HubStorage: Sendable {
    func authenticateStore(token: String) throws -> StoreID?
    func authenticateAdmin(token: String) throws -> HeadOffice?
    func audit(actor: String, action: String, detail: String) throws
    func auditLog(limit: Int) throws -> [HubAPI.AuditRecord]
    func push(_ ops: [Operation], from store: StoreID) throws -> [PushResult]
    func authorize(_ request: AuthorizeRequest, from store: StoreID) throws -> AuthorizeResponse
    func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse
    func pullJSON(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> ByteBuffer
    /// The page as the hub sends it: gzipped when `gzip` and the page is a whole one (`PullPaging`).
    func pullPage(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?, gzip: Bool) throws -> PullPage
    func snapshot(for store: StoreID) throws -> Snapshot
    /// A page of the snapshot: `page` nil for the first, else the `next` of the previous one.
    func snapshotPage(for store: StoreID, page: String?, limit: Int) throws -> Snapshot
    /// The whole snapshot as one SQLite file (spec §6.4): the kept file while it is younger than
    /// `maxAge` seconds (or nothing was written since), else a new one; and `store`'s sequence number.
    func snapshotFile(for store: StoreID, maxAge: TimeInterval) throws -> SnapshotFile.Served
    func keepSnapshotFile(maxAge: TimeInterval) throws -> SnapshotFile.Made?
    func discardSnapshotFile()
    func member(_ id: MemberID) throws -> MemberView?
    func allMembers() throws -> [MemberView]
    /// How many members there are (enrolled, not merged into another): one count, not a view each.
    func memberCount() throws -> Int
    func stores() throws -> [HubAPI.StoreState]
    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord]
    func exceptionCounts() throws -> (recorded: [String: Int], open: [String: Int])
    func publishRules(_ document: JSONValue, actor: String) throws -> HubAPI.RulesVersion
    func currentRules() throws -> Programme
    func runJobs(asOfMs: Int64?) throws -> HubAPI.JobReport
    func awardPoints(_ member: MemberID, _ award: NodeAPI.PointsAward, actor: String) throws -> MemberView
    /// Throws when the hub's database cannot be reached (readiness).
    func ready() throws
    func databaseBytes() throws -> (fold: Int64, ledger: Int64?)
    func settlement(period: Int?) throws -> HubAPI.SettlementReport
    func closeSettlementPeriod(actor: String) throws -> HubAPI.SettlementReport
    func settlementFlows(period: Int?, issuer: String?, spender: String?, limit: Int) throws -> HubAPI.SettlementFlows
    func liabilities(asOf: LocalDay?) throws -> HubAPI.Liabilities
    func statement(of member: MemberID) throws -> HubAPI.Statement
    func memberLeases(_ member: MemberID) throws -> HubAPI.MemberLeases
    func resolveException(_ id: Int64, _ request: HubAPI.ResolveException, actor: String) throws -> HubAPI.ExceptionRecord
    func storeActivity(from: LocalDay?, through: LocalDay?, store: String?) throws -> HubAPI.StoreActivity
    func breakageCandidates(untouchedDays: Int64) throws -> [HubAPI.Dormant]
    func segment(_ name: String, _ parameters: Segments.Parameters) throws -> HubAPI.SegmentReport
    func issueSegmentCoupons(_ name: String, _ parameters: Segments.Parameters, template: String, actor: String) throws -> HubAPI.SegmentCoupons
    func events(after cursor: Int64, limit: Int, types: Set<HubAPI.EventType>?) throws -> HubAPI.EventPage
    func addWebhook(_ request: HubAPI.WebhookRequest, allowedHosts: Set<String>, actor: String) throws -> HubAPI.Webhook
    func webhooks() throws -> [HubAPI.Webhook]
    func revokeWebhook(_ id: String, actor: String) throws
    func deliveries(webhook: String, limit: Int) throws -> [HubAPI.Delivery]
    /// The ledger, for the webhook dispatcher.
    var ledger: any HubLedger { get }
}

public final class HubStore: HubStorage {
    /// The fold of the log (and, on SQLite, the ledger too).
    public let pool: DatabasePool
    public let ledger: any HubLedger
    private let clock: Mutex<HybridLogicalClock>
    let physicalMs: @Sendable () -> Int64
    private let clockReports = Mutex<[StoreID: Int64]>([:])

    /// The fold's tables the triggers on `entries` keep (never written otherwise).
    public static var entrySumTables: [String] { Replica.entrySumTables }
    /// The local day this process last recorded the calendar's events for (birthdays,
    /// dormancy, expiring points): once a day is enough, and spares a pass over every member
    /// at every run of the jobs. A restart does the day's pass again (events are once per key).
    private let calendarDay = Mutex<Int64?>(nil)
    /// The snapshot file new nodes are sent, made one at a time (each reads the whole state, so
    /// two at once would only share the disk) and served to every store while it is fresh: a
    /// crowd of new nodes reads one file, and a node whose hub keeps one ready waits for no make.
    private let snapshotFiles = Mutex<SnapshotFile.Made?>(nil)
    /// Where stores' nodes pulled to since the last write of it (one record a store), and when
    /// that write was; written every `pullRecordSeconds` (and before the store list is read).
    private let pullRecords = Mutex<(pending: [String: PullRecord], writtenAt: Date)>(([:], .distantPast))
    static let pullRecordSeconds: TimeInterval = 5
    /// Pull pages' operations as written last, for the next store pulling the same stretch.
    /// 64 MiB holds about 180,000 operations: a hundred stores' outage of a thousand each.
    let pullCache = PullCache(capacityBytes: 64 << 20)
    /// Whole pull pages, gzipped (about 28 kB a thousand operations: 32 MiB holds a million).
    let sharedPages = SharedPages(capacityBytes: 32 << 20)

    /// The hub on one SQLite file: log, fold and credentials.
    public convenience init(path: String, physicalMs: @escaping @Sendable () -> Int64 = NodeStore.wallClockMs) throws {
        let pool = try HubStore.openFold(path: path)
        try self.init(pool: pool, ledger: SQLiteLedger(pool: pool), physicalMs: physicalMs)
    }

    /// The hub on PostgreSQL: the ledger there (migrated on start), the fold a local cache at
    /// `foldPath`, rebuilt when it is not a fold of this database's log. Several hub
    /// processes may share the database, each with its own fold.
    public convenience init(postgres location: PostgresLocation, foldPath: String,
                            physicalMs: @escaping @Sendable () -> Int64 = NodeStore.wallClockMs) throws {
        let ledger = try PostgresLedger(location)
        var pool = try HubStore.openFold(path: foldPath)
        if try !ledger.owns(pool) {
            // Made from another database, or ahead of this one (restored from a backup).
            try pool.close()
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: foldPath + suffix) }
            pool = try HubStore.openFold(path: foldPath)
            guard try ledger.owns(pool) else { throw DomainError(.internalError, "a new fold is not claimed by the ledger") }
        }
        try self.init(pool: pool, ledger: ledger, physicalMs: physicalMs)
    }

    private init(pool: DatabasePool, ledger: any HubLedger, physicalMs: @escaping @Sendable () -> Int64) throws {
        self.pool = pool
        self.ledger = ledger
        self.physicalMs = physicalMs
        let last = try pool.read { db in try HubStore.maxHLC(db) }
        var clock = HybridLogicalClock()
        clock.observe(HLCTimestamp(packed: last) ?? .zero, physicalMs: physicalMs())
        self.clock = Mutex(clock)
        // Snapshot files a crash left behind (an hour old: another hub process sharing the
        // folder may be sending one now).
        let scratch = snapshotDirectory
        for name in (try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? [] {
            let file = scratch.appendingPathComponent(name).path
            let made = (try? FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date) ?? Date()
            if Date().timeIntervalSince(made) > 3600 { try? FileManager.default.removeItem(atPath: file) }
        }
    }

    /// Where snapshot files are made: beside the fold (they are as large as its state; a
    /// temporary folder may be small, or in memory).
    var snapshotDirectory: URL {
        URL(fileURLWithPath: pool.path).deletingLastPathComponent().appendingPathComponent("snapshots", isDirectory: true)
    }

    /// The highest stamp in the log (0 when empty), read through the (kind, hlc) index one kind at
    /// a time: a few dozen seeks. `MAX(hlc)` alone scans every operation (a second at ten million),
    /// and every snapshot page asked for it: a new node's bootstrap ran at one page a second.
    /// `schema`: the fold's name in `db` (`fold` where a snapshot file is being made).
    static func maxHLC(_ db: Database, schema: String = "main") throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: maxHLCQuery(in: schema))) ?? 0
    }

    static func maxHLCQuery(in schema: String) -> String {
        """
        WITH RECURSIVE kinds(kind) AS (
            SELECT MIN(kind) FROM \(schema).ops
            UNION ALL
            SELECT (SELECT MIN(kind) FROM \(schema).ops WHERE kind > kinds.kind) FROM kinds WHERE kinds.kind IS NOT NULL)
        SELECT COALESCE(MAX((SELECT MAX(hlc) FROM \(schema).ops WHERE ops.kind = kinds.kind)), 0) FROM kinds WHERE kind IS NOT NULL
        """
    }

    /// Where a snapshot of the fold stands, read in the snapshot's own transaction: the log's
    /// head (the node pulls after it), the highest sequence number `store` has used, and the
    /// newest stamp (the node's clock starts after it).
    static func snapshotHead(for store: StoreID, setAsideSeq: UInt64,
                             _ db: Database) throws -> (cursor: Int64, originSeq: UInt64, maxHLC: HLCTimestamp) {
        (try Replica.logHead(db), try originSeq(of: store, setAsideSeq: setAsideSeq, db), HLCTimestamp(packed: try maxHLC(db)) ?? .zero)
    }

    /// The highest sequence number `store` has used: in the log, or by the operations the hub
    /// set aside (`setAsideSeq`), which used theirs too.
    static func originSeq(of store: StoreID, setAsideSeq: UInt64, _ db: Database) throws -> UInt64 {
        let seq = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = ?"),
                                     arguments: [store.rawValue]) ?? 0
        return max(UInt64(max(0, seq)), setAsideSeq)
    }

    /// The highest sequence number among `store`'s operations the hub set aside (0: none).
    private func setAsideSeq(of store: StoreID) throws -> UInt64 {
        try ledger.setAside(by: store.rawValue).compactMap(OperationID.init).filter { $0.origin == store }.map(\.seq).max() ?? 0
    }

    private static func openFold(path: String) throws -> DatabasePool {
        let pool = try SQLiteFiles.openPool(path: path, cacheMiB: 64)
        var migrator = DatabaseMigrator()
        Replica.migrate(&migrator)
        migrator.registerMigration("hub-v1") { db in
            try db.execute(sql: """
                CREATE TABLE ops (
                    version INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    origin TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq > 0),
                    hlc INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    kind_version INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    member_id TEXT,
                    received_at TEXT NOT NULL,
                    UNIQUE (origin, seq)
                );
                CREATE INDEX ops_member ON ops(member_id);
                CREATE TABLE stores (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    token_hash TEXT NOT NULL UNIQUE,
                    created_at TEXT NOT NULL,
                    last_sync_at TEXT,
                    cursor INTEGER NOT NULL DEFAULT 0,
                    pending INTEGER
                );
                CREATE TABLE admin_tokens (token_hash TEXT PRIMARY KEY NOT NULL, created_at TEXT NOT NULL);
                CREATE TABLE decisions (
                    op_id TEXT PRIMARY KEY NOT NULL,
                    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'refused')),
                    code TEXT, message TEXT, at TEXT NOT NULL
                );
                CREATE TABLE rejected (op_id TEXT PRIMARY KEY NOT NULL, store TEXT NOT NULL, reason TEXT NOT NULL, op TEXT NOT NULL, at TEXT NOT NULL);
                CREATE TABLE exceptions (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL, member_id TEXT, op_id TEXT, detail TEXT NOT NULL, at TEXT NOT NULL
                );
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """)
        }
        // Credentials that can be rotated and revoked, head-office roles, and the audit log.
        migrator.registerMigration("hub-v2-credentials") { db in
            try db.execute(sql: """
                ALTER TABLE stores ADD COLUMN revoked_at TEXT;
                ALTER TABLE admin_tokens ADD COLUMN id TEXT;
                ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'reporter'));
                ALTER TABLE admin_tokens ADD COLUMN label TEXT;
                ALTER TABLE admin_tokens ADD COLUMN revoked_at TEXT;
                UPDATE admin_tokens SET id = 'hot-' || substr(token_hash, 1, 8) WHERE id IS NULL;
                CREATE UNIQUE INDEX admin_tokens_id ON admin_tokens(id);
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    detail TEXT NOT NULL
                );
                """)
        }
        // Events for other tools (the feed and webhooks), and webhooks' delivery log.
        migrator.registerMigration("hub-v3-events") { db in
            try db.execute(sql: HubStore.eventTables(serial: "INTEGER PRIMARY KEY AUTOINCREMENT").joined(separator: ";\n"))
        }
        HubSummaries.migrate(&migrator)
        Replica.migrateLater(&migrator)
        try migrator.migrate(pool)
        try pool.write { db in
            // Operations of kinds this build learnt change the fold, and so the summaries.
            if try Replica.applyNewlyKnownKinds(db) { try HubSummaries.rebuild(db) } else { try HubSummaries.rebuildIfStale(db) }
        }
        return pool
    }

    /// The event and webhook tables, the same on SQLite and PostgreSQL but for the serial key.
    static func eventTables(serial: String) -> [String] {
        [
            """
            CREATE TABLE events (
                id \(serial), key TEXT NOT NULL UNIQUE, type TEXT NOT NULL, member_id TEXT, op_id TEXT, data TEXT NOT NULL, at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE webhooks (
                id TEXT PRIMARY KEY NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL, types TEXT NOT NULL, created_at TEXT NOT NULL,
                revoked_at TEXT, cursor BIGINT NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, retry_at_ms BIGINT NOT NULL DEFAULT 0,
                lease_holder TEXT, lease_until_ms BIGINT NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE deliveries (
                id \(serial), webhook_id TEXT NOT NULL, event_id BIGINT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL,
                status INTEGER, error TEXT, duration_ms BIGINT NOT NULL, at TEXT NOT NULL
            )
            """,
            "CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id)",
        ]
    }

    /// The fold's size on disk, and the PostgreSQL database's (nil on SQLite, where the fold is all).
    public func databaseBytes() throws -> (fold: Int64, ledger: Int64?) {
        let fold = SQLiteFiles.bytes(pool.path)
        guard let postgres = ledger as? PostgresLedger else { return (fold, nil) }
        return (fold, try postgres.databaseBytes())
    }

    /// Where the ledger is, when it is on PostgreSQL.
    public var postgres: PostgresLocation? { (ledger as? PostgresLedger)?.link.location }

    public func ready() throws {
        do {
            if let postgres = ledger as? PostgresLedger { try postgres.ready(pool) } else { try ledger.ping() }
        } catch let error as DomainError where error.code == .storageUnavailable {
            throw error
        } catch {
            throw DomainError(.storageUnavailable, "the hub's database does not answer: \(error)")
        }
    }

    /// Brings the fold up to the log's head (a no-op on SQLite, where the fold is the log).
    public func refresh() throws {
        try ledger.refresh(pool, foldIn: foldIn)
    }

    /// One write of the chain, with the fold caught up and the ledger's write lock held.
    func write<T>(_ body: (Database, any LedgerWrites) throws -> T) throws -> T {
        try ledger.write(pool, foldIn: foldIn) { db, w in try WriteMemo.remembering(db) { try body(db, w) } }
    }

    /// Applies a row of the log written by another hub process (PostgreSQL only).
    private func foldIn(_ db: Database, _ row: LogRow) throws {
        let op = try row.operation()
        clock.withLock { _ = $0.observe(op.hlc, physicalMs: physicalMs()) }
        try db.cachedStatement(sql: """
            INSERT INTO ops (version, id, origin, seq, hlc, kind, kind_version, body, member_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [row.version, row.id, row.origin, row.seq, row.hlc, row.kind, row.kindVersion, row.body, row.member, row.receivedAt])
        let body = try op.decoded()
        if case .unknown = body {} else { try Replica.apply(body, of: op, db) }
        try HubSummaries.apply(op, body, version: row.version, db)
    }

    // MARK: - Administration (CLI)

    /// Registers a store and returns its token (shown once; only its hash is kept).
    public func addStore(_ id: StoreID, name: String, actor: String = "cli") throws -> String {
        guard id != .hub else { throw DomainError(.invalidRequest, "'hub' is reserved") }
        let name = try Validate.name(name)
        let token = Tokens.make(prefix: "tss_")
        try ledger.administer { w in
            guard try !w.storeExists(id.rawValue) else { throw DomainError(.storeExists, "store \(id) is already registered") }
            try w.addStore(id: id.rawValue, name: name, tokenHash: Tokens.hash(token), at: isoNow())
            try w.audit(actor: actor, action: "store.added", detail: "\(id) '\(name)'", at: isoNow())
        }
        return token
    }

    /// A new token for a store; the old one stops working at once. Also re-admits a revoked store.
    public func rotateStoreToken(_ id: StoreID, actor: String = "cli") throws -> String {
        let token = Tokens.make(prefix: "tss_")
        try ledger.administer { w in
            guard try w.setStoreToken(id.rawValue, tokenHash: Tokens.hash(token)) else { throw DomainError(.notFound, "no store \(id)") }
            try w.audit(actor: actor, action: "store.token_rotated", detail: "\(id)", at: isoNow())
        }
        return token
    }

    /// The store's token is refused from now on (its node keeps serving its tills offline).
    public func revokeStore(_ id: StoreID, actor: String = "cli") throws {
        try ledger.administer { w in
            guard try w.revokeStore(id.rawValue, at: isoNow()) else { throw DomainError(.notFound, "no store \(id)") }
            try w.audit(actor: actor, action: "store.revoked", detail: "\(id)", at: isoNow())
        }
        // A revoked store can push nothing more, so its leases come back to the hub at once.
        try write { db, w in try self.reclaimLeases(of: id, db, w) }
    }

    /// Issues a head-office token: `admin` may change things (rules, points, jobs), `reporter`
    /// may only read. Returns the token's id (for revoking it) and the token (shown once).
    public func issueAdminToken(role: HeadOffice.Role = .admin, label: String? = nil, actor: String = "cli") throws -> (id: String, token: String) {
        let token = Tokens.make(prefix: "tsa_")
        let id = "hot-" + Tokens.hash(token).prefix(8)
        try ledger.administer { w in
            try w.addAdminToken(id: id, tokenHash: Tokens.hash(token), role: role.rawValue, label: label, at: isoNow())
            try w.audit(actor: actor, action: "admin_token.issued", detail: "\(id) role \(role.rawValue)\(label.map { " '\($0)'" } ?? "")", at: isoNow())
        }
        return (id, token)
    }

    public func revokeAdminToken(_ id: String, actor: String = "cli") throws {
        try ledger.administer { w in
            guard try w.revokeAdminToken(id, at: isoNow()) else { throw DomainError(.notFound, "no live head-office token \(id)") }
            try w.audit(actor: actor, action: "admin_token.revoked", detail: id, at: isoNow())
        }
    }

    public func adminTokens() throws -> [HubAPI.AdminToken] {
        try ledger.adminTokens()
    }

    public func authenticateStore(token: String) throws -> StoreID? {
        try ledger.storeID(tokenHash: Tokens.hash(token)).flatMap { StoreID(rawValue: $0) }
    }

    public func authenticateAdmin(token: String) throws -> HeadOffice? {
        guard let (id, role) = try ledger.admin(tokenHash: Tokens.hash(token)), let role = HeadOffice.Role(rawValue: role) else { return nil }
        return HeadOffice(id: id, role: role)
    }

    /// Records an action (or a refused attempt) in the audit log.
    public func audit(actor: String, action: String, detail: String) throws {
        try ledger.administer { w in try w.audit(actor: actor, action: action, detail: detail, at: isoNow()) }
    }

    public func auditLog(limit: Int) throws -> [HubAPI.AuditRecord] {
        try ledger.auditLog(limit: limit)
    }

    // MARK: - Sync

    public func push(_ ops: [Operation], from store: StoreID) throws -> [PushResult] {
        try checkOrigins(ops, store)
        // Checked and encoded before the write: the chain's one writer does not wait for it.
        let prepared = ops.map(PreparedOperation.init)
        return try write { db, w in
            try w.prefetch(ops.map(\.id.description))
            let known = try PushLookups(prepared, db)
            let results = try prepared.map { try self.ingest($0, from: store, authorized: false, known: known, db, w) }
            try w.touch(store.rawValue, at: isoNow())
            try self.rebalanceLeases(after: ops, results, from: store, db, w)
            return results
        }
    }

    public func authorize(_ request: AuthorizeRequest, from store: StoreID) throws -> AuthorizeResponse {
        try checkOrigins(request.prior + [request.op], store)
        return try write { db, w in
            try w.prefetch((request.prior + [request.op]).map(\.id.description))
            let prior = try request.prior.map { try self.ingest(PreparedOperation($0), from: store, authorized: false, db, w) }
            try w.touch(store.rawValue, at: isoNow())
            let op = request.op
            if let version = try Int64.fetchOne(db.cachedStatement(sql: "SELECT version FROM ops WHERE id = ?"), arguments: [op.id.description]) {
                return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
            }
            if let refusal = try w.refusal(of: op.id.description) {
                return AuthorizeResponse(decision: .refused, code: ErrorCode(rawValue: refusal.code ?? ""), message: refusal.message, prior: prior)
            }
            func refuse(_ error: DomainError) throws -> AuthorizeResponse {
                try w.decide(op.id.description, accepted: false, code: error.code.rawValue, message: error.message, at: isoNow())
                return AuthorizeResponse(decision: .refused, code: error.code, message: error.message, prior: prior)
            }
            if try Replica.isVoided(op.id, db) {
                return try refuse(DomainError(.voided, "the store voided \(op.id) before this request arrived"))
            }
            let body: OperationBody
            do throws(DomainError) { body = try Validate.operation(op) } catch { return try refuse(error) }
            guard let member = body.member, try Replica.isEnrolled(try Replica.root(of: member, db), db) else {
                return try refuse(DomainError(.notFound, "the hub knows no member \(body.member?.rawValue ?? "")"))
            }
            // Points are counted at the later of the hub's time and the spend's own: the fold dates
            // the spend by its stamp, so a spend stamped after a lot ended must not use that lot.
            let held = try Replica.standing(of: member, programme: try Replica.programme(db),
                                            asOfMs: max(self.physicalMs(), op.hlc.wallMs), db)
            let debit = body.debit
            if let refusal = held.refusal(of: debit) { return try refuse(refusal) }
            if let policy = try Replica.programme(db).leases,
               let refusal = try self.leaseRefusal(body, debit: debit, member: try Replica.root(of: member, db), standing: held,
                                                   from: store, policy: policy, db, w) {
                return try refuse(refusal)
            }
            let result = try self.ingest(PreparedOperation(op, body: .success(body)), from: store, authorized: true, db, w)
            guard result.status != .rejected, let version = result.version else {
                return AuthorizeResponse(decision: .refused, code: .invalidRequest, message: result.reason, prior: prior)
            }
            try w.decide(op.id.description, accepted: true, code: nil, message: nil, at: isoNow())
            try self.rebalanceLeases(after: request.prior + [op], prior + [result], from: store, db, w)
            return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
        }
    }

    public func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse {
        let (rows, next, more) = try pullRows(after: cursor, limit: limit, for: store, pending: pending)
        return PullResponse(ops: try rows.map { VersionedOperation(version: $0.version, op: try $0.operation()) }, cursor: next, more: more)
    }

    /// The same page as `pull`, as the JSON text JSONBody would make of it, written straight from
    /// the log's rows: each body is spliced in as stored (canonical JSON, sorted keys), not
    /// read into values and encoded again. After an outage, a hundred nodes pulling a hundred
    /// thousand operations each had the hub encode ten million operations; that was its work.
    /// Each operation's part is kept (`PullCache`) for the next store pulling past it.
    public func pullJSON(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> ByteBuffer {
        try pullPage(after: cursor, limit: limit, for: store, pending: pending, gzip: false).body
    }

    /// `pullJSON`'s page, gzipped when `gzip` (the store accepts it) and the page is a whole one
    /// (`PullPaging`): those are compressed once and kept (`sharedPages`) for every store.
    public func pullPage(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?, gzip: Bool) throws -> PullPage {
        let limit = max(1, min(limit, SyncLimits.pullPageMax))
        let whole = gzip && limit == SyncLimits.pullPageMax && cursor % PullPaging.span == 0
        if whole, let kept = sharedPages.page(after: cursor), try stillInLog(kept.last) {
            recordPull(PullRecord(store: store.rawValue, cursor: cursor, pending: pending, at: Date()))
            return PullPage(body: kept.gzip, gzipped: true)
        }
        // One operation more than the page, to tell whether there is more.
        var links = pullCache.links(after: cursor, limit: limit + 1)
        if try !stillInLog(links.prefix(limit).last.map { ($0.version, $0.id) }) { links = [] }
        if links.count <= limit {
            let last = links.last?.version ?? cursor
            // Read from the ledger itself: on PostgreSQL, every hub process serves the same pages.
            let read = try ledger.page(after: last, limit: limit + 1 - links.count).map {
                PullCache.Link(version: $0.version, id: $0.id, json: Self.pullElement($0))
            }
            pullCache.keep(after: last, read)
            links += read
        }
        let (count, next, more) = PullPaging.cut(after: cursor, versions: links.lazy.map(\.version), limit: limit)
        let page = links.prefix(count)
        recordPull(PullRecord(store: store.rawValue, cursor: cursor, pending: pending, at: Date()))
        // Written once, into the buffer the response is sent from.
        var bytes = 64
        for link in page { bytes += link.json.count + 1 }
        var out = ByteBufferAllocator().buffer(capacity: bytes)
        out.writeString(#"{"cursor":\#(next),"more":\#(more),"ops":["#)
        var first = true
        for link in page {
            if !first { out.writeInteger(UInt8(ascii: ",")) }
            first = false
            out.writeBytes(link.json)
        }
        out.writeString(#"],"protocol":\#(ProtocolVersion.current)}"#)
        // A whole page: from a boundary to the next, with more beyond (so it never changes).
        if whole, more, next == PullPaging.boundary(after: cursor) {
            let shared = SharedPages.Page(gzip: try SharedPages.gzip(out), last: page.last.map { ($0.version, $0.id) })
            sharedPages.keep(after: cursor, shared)
            return PullPage(body: shared.gzip, gzipped: true)
        }
        return PullPage(body: out, gzipped: false)
    }

    /// Whether what was kept up to `last` (links, or a whole page) may be served again. Where the
    /// log may go back in time under this process (PostgreSQL), the last kept operation, still
    /// in the log as the same operation, vouches for every one before it (the log only grows,
    /// in version order); not there, nothing kept is served again: both are let go.
    private func stillInLog(_ last: (version: Int64, id: String)?) throws -> Bool {
        guard ledger.mayGoBack, let last, try ledger.operationID(at: last.version) != last.id else { return true }
        pullCache.clear()
        sharedPages.clear()
        return false
    }

    /// One operation of a pull page's `ops`, as JSONEncoder writes a `VersionedOperation`.
    static func pullElement(_ row: LogRow) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(row.body.utf8.count + row.id.utf8.count + row.kind.utf8.count + 80)
        out += Array(#"{"op":{"body":"#.utf8)
        out += Array(row.body.utf8)
        out += Array(#","hlc":\#(row.hlc),"id":"#.utf8)
        JSONValue.write(string: row.id, into: &out)
        out += Array(#","kind":"#.utf8)
        JSONValue.write(string: row.kind, into: &out)
        out += Array(#","kind_version":\#(row.kindVersion)},"version":\#(row.version)}"#.utf8)
        return out
    }

    private func pullRows(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> (rows: [LogRow], cursor: Int64, more: Bool) {
        let limit = max(1, min(limit, SyncLimits.pullPageMax))
        // Read from the ledger itself: on PostgreSQL, every hub process serves the same pages.
        let page = try ledger.page(after: cursor, limit: limit + 1)
        let (count, next, more) = PullPaging.cut(after: cursor, versions: page.lazy.map(\.version), limit: limit)
        let rows = Array(page.prefix(count))
        // Bookkeeping for head office's store list: kept here and written a few seconds later
        // with every other store's. Written at each pull, it was a commit (and a disk sync) on
        // the chain's one writer for every page a node pulled: after an outage, a hundred
        // stores' pulls queued behind the pushes they came with, and pushes behind them.
        recordPull(PullRecord(store: store.rawValue, cursor: cursor, pending: pending, at: Date()))
        return (rows, next, more)
    }

    /// Keeps a pull's record, writing those kept when the last write is `pullRecordSeconds` old.
    /// Bookkeeping only: a write that fails (a full disk) keeps the records for the next one
    /// and never fails the pull. Written on a queue of its own: the pull is answered without
    /// waiting for the chain's writer, which after an outage is busy with every store's push.
    private func recordPull(_ record: PullRecord) {
        pullRecordWrites.async { try? self.writePullRecords(adding: record, force: false) }
    }

    /// Where pull records are written, one write at a time and in the order they were kept
    /// (a later record of a store never lands before an earlier one).
    private let pullRecordWrites = DispatchQueue(label: "tessera-pull-records")

    /// Writes the kept pull records (with `record`): when the last write is `pullRecordSeconds`
    /// old, or now with `force` (before the store list is read). Records a failed write took
    /// are kept again, unless a newer pull of the same store replaced them meanwhile.
    private func writePullRecords(adding record: PullRecord? = nil, force: Bool) throws {
        let due: [PullRecord] = pullRecords.withLock { kept in
            if let record { kept.pending[record.store] = record }
            guard force || Date().timeIntervalSince(kept.writtenAt) >= Self.pullRecordSeconds else { return [] }
            kept.writtenAt = Date()
            defer { kept.pending = [:] }
            return Array(kept.pending.values)
        }
        guard !due.isEmpty else { return }
        do {
            try ledger.recordPulls(due.sorted { $0.store < $1.store })
        } catch {
            pullRecords.withLock { kept in
                for record in due where kept.pending[record.store] == nil { kept.pending[record.store] = record }
            }
            throw error
        }
    }

    public func snapshot(for store: StoreID) throws -> Snapshot {
        try snapshot(for: store, after: nil, limit: nil)
    }

    public func snapshotPage(for store: StoreID, page: String?, limit: Int) throws -> Snapshot {
        try snapshot(for: store, after: try page.map(SnapshotToken.decode), limit: max(1, min(limit, SyncLimits.snapshotPageRowsMax)))
    }

    /// The snapshot file for `store`'s new node: the kept file if it is younger than `maxAge`
    /// seconds or nothing was written since it was made, else a new one (which every store is
    /// sent from then on). Nodes pull what came after the file's cursor, so any age is correct;
    /// the age only bounds how much they pull.
    public func snapshotFile(for store: StoreID, maxAge: TimeInterval) throws -> SnapshotFile.Served {
        try refresh()
        let file = try snapshotFiles.withLock { kept in
            if let file = kept, try isFresh(file, maxAge: maxAge) { return file }
            return try makeSnapshotFile(&kept)
        }
        // Read after the file was made, so at or above the store's number at its cursor.
        let setAside = try setAsideSeq(of: store)
        let originSeq = try pool.read { db in try HubStore.originSeq(of: store, setAsideSeq: setAside, db) }
        return SnapshotFile.Served(file: file, originSeq: originSeq)
    }

    /// Makes a new snapshot file when the kept one is older than `maxAge` seconds and the log
    /// has moved since (or none is kept), so that a new node finds one ready. Returns the file
    /// made, if any.
    @discardableResult
    public func keepSnapshotFile(maxAge: TimeInterval) throws -> SnapshotFile.Made? {
        try refresh()
        return try snapshotFiles.withLock { kept in
            if let file = kept, try isFresh(file, maxAge: maxAge) { return nil }
            return try makeSnapshotFile(&kept)
        }
    }

    /// Deletes the kept snapshot file (at shutdown: a new process makes its own).
    public func discardSnapshotFile() {
        snapshotFiles.withLock { kept in
            if let file = kept { try? FileManager.default.removeItem(atPath: file.path) }
            kept = nil
        }
    }

    /// Whether a kept file may still be sent: younger than `maxAge`, or nothing written since.
    private func isFresh(_ file: SnapshotFile.Made, maxAge: TimeInterval) throws -> Bool {
        guard FileManager.default.fileExists(atPath: file.path) else { return false }
        return try Date().timeIntervalSince(file.madeAt) < maxAge || pool.read { try Replica.logHead($0) } == file.info.cursor
    }

    /// Makes a snapshot file and keeps it in place of `kept`, whose file goes (a node still
    /// receiving it reads on: the file is gone from the folder, not from its open handle).
    private func makeSnapshotFile(_ kept: inout SnapshotFile.Made?) throws -> SnapshotFile.Made {
        let scratch = snapshotDirectory
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let path = scratch.appendingPathComponent("\(UUID().uuidString).sqlite").path
        let made: SnapshotFile.Made
        do {
            let info = try SnapshotFile.write(foldPath: pool.path, to: path)
            made = SnapshotFile.Made(path: path, info: info, bytes: SQLiteFiles.bytes(path), madeAt: Date())
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        if let old = kept { try? FileManager.default.removeItem(atPath: old.path) }
        kept = made
        return made
    }

    private func snapshot(for store: StoreID, after position: Replica.PagePosition?, limit: Int?) throws -> Snapshot {
        // Caught up first: every page comes from a state at or after the first page's cursor,
        // whichever hub process serves it.
        try refresh()
        let setAsideSeq = try setAsideSeq(of: store)
        return try pool.read { db in
            let head = try HubStore.snapshotHead(for: store, setAsideSeq: setAsideSeq, db)
            let (state, next) = try Replica.exportPage(after: position, limit: limit, db)
            var snapshot = Snapshot(cursor: head.cursor, originSeq: head.originSeq, maxHLC: head.maxHLC,
                                    members: state.members, cards: state.cards, entries: state.entries,
                                    merges: state.merges, refunds: state.refunds, voided: state.voided, rules: state.rules,
                                    coupons: state.coupons, couponUses: state.couponUses, couponRestores: state.couponRestores,
                                    memberships: state.memberships, leases: state.leases, recalls: state.recalls,
                                    recallAnswers: state.recallAnswers)
            snapshot.next = next.map(SnapshotToken.encode)
            return snapshot
        }
    }

    // MARK: - Head office

    public func member(_ id: MemberID) throws -> MemberView? {
        try refresh()
        return try pool.read { db in try Replica.view(of: id, asOfMs: self.physicalMs(), db) }
    }

    public func allMembers() throws -> [MemberView] {
        try allMembers(asOfMs: nil)
    }

    public func memberCount() throws -> Int {
        try refresh()
        return try pool.read { db in try Replica.memberCount(db) }
    }

    /// Every member's view, as of `asOfMs` (the hub's clock when nil).
    public func allMembers(asOfMs: Int64?) throws -> [MemberView] {
        try refresh()
        return try pool.read { db in try Replica.allViews(asOfMs: asOfMs ?? self.physicalMs(), db) }
    }

    public func stores() throws -> [HubAPI.StoreState] {
        try pullRecordWrites.sync { try writePullRecords(force: true) }
        return try ledger.stores()
    }

    public func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord] {
        let list = try ledger.exceptions(limit: limit)
        try refresh()
        let resolutions = try pool.read { db in try self.resolutions(db) }
        return list.map { var x = $0; x.resolution = resolutions[x.id]; return x }
    }

    static let exceptionResolvedKind = "exception.resolved"

    /// Exceptions recorded and still open, by kind: counts from the ledger, less the resolved
    /// ones (few, looked up by id), never the whole list (metrics are scraped every few seconds).
    public func exceptionCounts() throws -> (recorded: [String: Int], open: [String: Int]) {
        let recorded = try ledger.exceptionCounts()
        try refresh()
        var open = recorded
        for id in try pool.read({ db in try self.resolutions(db) }).keys {
            if let kind = try ledger.exception(id: id)?.kind { open[kind, default: 0] -= 1 }
        }
        return (recorded, open)
    }

    /// Resolutions recorded in the log, by exception id (the hub's own operations only).
    private func resolutions(_ db: Database) throws -> [Int64: HubAPI.ExceptionResolution] {
        var out: [Int64: HubAPI.ExceptionResolution] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT id, hlc, body FROM ops WHERE kind = ? AND origin = 'hub' ORDER BY version"),
                                    arguments: [Self.exceptionResolvedKind]) {
            guard case .object(let body)? = try? JSONText.decode(JSONValue.self, row["body"]), case .int(let exception)? = body["exception"],
                  case .string(let note)? = body["note"], case .string(let by)? = body["by"] else { continue }
            var adjustment: String?
            if case .string(let op)? = body["adjustment"] { adjustment = op }
            let at = isoTime(ms: HLCTimestamp(packed: row["hlc"])?.wallMs ?? 0)
            out[exception] = HubAPI.ExceptionResolution(note: note, by: by, op: row["id"], at: at, adjustment: adjustment)
        }
        return out
    }

    /// Head office resolves an exception: a note, and optionally points given or taken for its
    /// member, each an operation of the hub's (so every store and the statement show it).
    public func resolveException(_ id: Int64, _ request: HubAPI.ResolveException, actor: String) throws -> HubAPI.ExceptionRecord {
        let note = request.note.trimmingWhitespace()
        guard !note.isEmpty, note.count <= 400 else {
            throw DomainError(.invalidRequest, "a resolution needs a note of 1 to 400 characters")
        }
        guard var record = try ledger.exception(id: id) else {
            throw DomainError(.notFound, "no exception \(id)")
        }
        if request.points != nil && record.member == nil { throw DomainError(.invalidRequest, "exception \(id) names no member to adjust") }
        // One write: the adjustment and the resolution land together, or neither does.
        try write { db, w in
            guard try self.resolutions(db)[id] == nil else { throw DomainError(.invalidRequest, "exception \(id) is already resolved") }
            var adjustment: String?
            if let points = request.points, points != 0, let member = record.member {
                let award = NodeAPI.PointsAward(activity: nil, points: points, reason: "exception \(id): \(note)")
                adjustment = try self.awardPoints(member, award, actor: actor, db, w).op.id.description
            }
            var body: [String: JSONValue] = ["exception": .int(id), "note": .string(note), "by": .string(actor)]
            if let adjustment { body["adjustment"] = .string(adjustment) }
            let op = try self.makeHubOperation(kind: Self.exceptionResolvedKind, body: .object(body), db)
            _ = try self.append(op, .unknown, db, w)
            try w.audit(actor: actor, action: "exception.resolved", detail: "exception \(id) as \(op.id)", at: isoNow())
        }
        record.resolution = try pool.read { db in try self.resolutions(db)[id] }
        return record
    }

    // MARK: - Settlement and liabilities

    /// Every movement of stored value in the log, in version order, under the member id each
    /// operation named (the allocation follows the log's merges itself), and the merges.
    /// Members with no enrolment the hub knows hold nothing anyone can spend: left out, as
    /// members' views leave them out.
    private func movements(_ db: Database, untilMs: Int64 = .max) throws -> (movements: [Settlement.Movement], merges: [Settlement.Merge]) {
        var enrolled: [String: Bool] = [:]
        let movements = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT o.version, e.op_id, o.origin, e.member_id, e.value, e.bonus, o.kind, o.body
            FROM entries e JOIN ops o ON o.id = e.op_id
            WHERE (e.value <> 0 OR e.bonus <> 0) AND e.at_ms <= ? ORDER BY o.version, e.part
            """), arguments: [untilMs]).compactMap { row -> Settlement.Movement? in
            let member: String = row["member_id"]
            let known = try enrolled[member] ?? Replica.isEnrolled(try Replica.root(of: MemberID(member), db), db)
            enrolled[member] = known
            guard known else { return nil }
            // A refund (of a recharge or of a sale) and a reversal name the operation they undo.
            let kind: String = row["kind"]
            let undoes = kind == "refund" || kind == "operation.reversed"
            var body: [String: JSONValue]?
            if undoes || kind == OperationKind.balanceOpened.rawValue, case .object(let fields)? = try? JSONText.decode(JSONValue.self, row["body"]) {
                body = fields
            }
            var of: String?
            if undoes, case .string(let target)? = body?["of"] { of = target }
            return Settlement.Movement(version: row["version"], op: row["op_id"], store: Self.movementStore(kind: kind, origin: row["origin"], body: body),
                                       member: MemberID(member),
                                       principal: row["value"], bonus: row["bonus"], of: of)
        }
        let merges = try Row.fetchAll(db.cachedStatement(sql: "SELECT version, id, hlc, body FROM ops WHERE kind = 'member.merged' ORDER BY version"))
            .compactMap { row -> Settlement.Merge? in
                guard (HLCTimestamp(packed: row["hlc"])?.wallMs ?? 0) <= untilMs else { return nil }
                guard case .object(let body)? = try? JSONText.decode(JSONValue.self, row["body"]),
                      case .string(let from)? = body["from"], case .string(let into)? = body["into"] else { return nil }
                return Settlement.Merge(version: row["version"], op: row["id"], from: MemberID(from), into: MemberID(into))
            }
        return (movements, merges)
    }

    /// The store a movement of value counts at: the operation's origin, but for an imported
    /// opening balance the member's joining store (settlement, liabilities and statements alike).
    static func movementStore(kind: String, origin: String, body: [String: JSONValue]?) -> String {
        if kind == OperationKind.balanceOpened.rawValue, case .string(let owner)? = body?["store"] { return owner }
        return origin
    }

    func allocation(_ db: Database, untilMs: Int64 = .max) throws -> Settlement.Allocation {
        let (movements, merges) = try self.movements(db, untilMs: untilMs)
        return Settlement.allocate(movements, merges: merges)
    }

    /// The closed settlement periods: the log version each one ends at, in order.
    func closedPeriods(_ db: Database) throws -> [Int64] {
        // The hub's own closings only (a store may not push this kind: Validate refuses it).
        try String.fetchAll(db.cachedStatement(sql: "SELECT body FROM ops WHERE kind = ? AND origin = 'hub' ORDER BY version"), arguments: [Self.periodClosedKind])
            .compactMap { text -> Int64? in
                guard case .object(let body)? = try? JSONText.decode(JSONValue.self, text), case .int(let through)? = body["through"] else { return nil }
                return through
            }
    }

    static let periodClosedKind = "settlement.period_closed"

    /// The period asked for (nil: the open one), if there is one.
    static func periodNumber(_ period: Int?, closed: [Int64]) throws -> Int {
        let number = period ?? closed.count + 1
        guard number >= 1 && number <= closed.count + 1 else {
            throw DomainError(.notFound, "no settlement period \(number); periods 1 to \(closed.count) are closed, \(closed.count + 1) is open")
        }
        return number
    }

    /// Inter-store settlement for period `period` (1 is the first; nil: the open one).
    public func settlement(period: Int?) throws -> HubAPI.SettlementReport {
        try refresh()
        return try pool.read { db in
            let closed = try self.closedPeriods(db)
            let number = try Self.periodNumber(period, closed: closed)
            let after = number == 1 ? 0 : closed[number - 2]
            let head = try Replica.logHead(db)
            let through = number <= closed.count ? closed[number - 1] : head
            // The summary the allocation keeps per period (flows are settled in log order, so a
            // flow's period is the one open when it was made).
            let pairs = try self.summaryPairs(period: number, db)
            return HubAPI.SettlementReport(period: number, after: after, through: through, closed: number <= closed.count,
                                           pairs: pairs, stores: Settlement.positions(pairs).map(HubAPI.StorePosition.init))
        }
    }

    func summaryPairs(period: Int, _ db: Database) throws -> [Settlement.Pair] {
        try Row.fetchAll(db.cachedStatement(sql: """
            SELECT issuer, spender, principal, bonus, flows FROM settle_pairs WHERE period = ? ORDER BY issuer, spender
            """), arguments: [period]).map {
            Settlement.Pair(issuer: $0["issuer"], spender: $0["spender"], principal: $0["principal"], bonus: $0["bonus"], flows: $0["flows"])
        }
    }

    /// The flows behind a settlement period's numbers (optionally one issuer's or spender's):
    /// which load paid for which spend, for which member, at which log version.
    public func settlementFlows(period: Int?, issuer: String?, spender: String?, limit: Int) throws -> HubAPI.SettlementFlows {
        try refresh()
        return try pool.read { db in
            let number = try Self.periodNumber(period, closed: try self.closedPeriods(db))
            // Only the filters asked for in the statement, so that the index of a pair's flows serves it.
            var filters = "period = ? AND issuer <> spender", arguments: StatementArguments = [number]
            if let issuer { filters += " AND issuer = ?"; arguments += [issuer] }
            if let spender { filters += " AND spender = ?"; arguments += [spender] }
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT version, currency, issuer, spender, amount, load, spend, member_id FROM settle_flows WHERE \(filters) ORDER BY id LIMIT ?
                """), arguments: arguments + [limit + 1])
            let flows = try rows.prefix(limit).map { row in
                guard let currency = Settlement.Currency(rawValue: row["currency"]) else { throw DomainError(.internalError, "a flow in no currency") }
                return Settlement.Flow(version: row["version"], currency: currency, issuer: row["issuer"], spender: row["spender"],
                                       amount: row["amount"], load: row["load"], spend: row["spend"], member: MemberID(row["member_id"]))
            }
            return HubAPI.SettlementFlows(period: number, flows: Array(flows), more: rows.count > limit)
        }
    }

    /// Closes the open settlement period at the log's head, with an operation of the hub's:
    /// operations arriving later (made offline) fall in the next period; a closed one never changes.
    public func closeSettlementPeriod(actor: String) throws -> HubAPI.SettlementReport {
        let number = try write { db, w -> Int in
            let closed = try self.closedPeriods(db)
            let head = try Replica.logHead(db)
            // Only the closings themselves since the last one: an empty period is not closed.
            // From the log's end back to the first operation that is not a closing (not a pass over the log).
            let worked = try Int64.fetchOne(db.cachedStatement(sql: "SELECT version FROM ops WHERE NOT (kind = ? AND origin = 'hub') ORDER BY version DESC LIMIT 1"),
                                            arguments: [Self.periodClosedKind]) ?? 0
            guard worked > (closed.last ?? 0) else {
                throw DomainError(.invalidRequest, "nothing has happened since period \(closed.count) was closed")
            }
            let op = try self.makeHubOperation(kind: Self.periodClosedKind,
                                               body: .object(["period": .int(Int64(closed.count + 1)), "through": .int(head)]), db)
            _ = try self.append(op, .unknown, db, w)
            try w.audit(actor: actor, action: "settlement.closed", detail: "period \(closed.count + 1) through version \(head) as \(op.id)", at: isoNow())
            return closed.count + 1
        }
        return try settlement(period: number)
    }

    /// What the chain owes its members (stored value by issuing store, points): now, from the
    /// summaries; or at the end of the local day `asOf` (the movements stamped by then, as the log
    /// holds them now), by replaying the log up to then.
    public func liabilities(asOf: LocalDay?) throws -> HubAPI.Liabilities {
        try refresh()
        return try pool.read { db in
            let programme = try Replica.programme(db)
            if let asOf {
                // The last millisecond of that local day.
                var report = try self.replayedLiabilities(untilMs: programme.calendar.startMs(of: asOf.adding(days: 1)) - 1, programme, db)
                report.asOf = asOf.iso
                return report
            }
            return try self.summaryLiabilities(programme, db)
        }
    }

    func summaryLiabilities(_ programme: Programme, _ db: Database) throws -> HubAPI.Liabilities {
            var stores: [String: HubAPI.StoreLiability] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT store, currency, held, owed FROM settle_totals WHERE held <> 0 OR owed <> 0")) {
                let store: String = row["store"], held: Int64 = row["held"], owed: Int64 = row["owed"]
                var s = stores[store] ?? HubAPI.StoreLiability(store: store, principal: 0, bonus: 0, owedPrincipal: 0, owedBonus: 0)
                if row["currency"] as String == Settlement.Currency.principal.rawValue {
                    s.principal += held; s.owedPrincipal += owed
                } else {
                    s.bonus += held; s.owedBonus += owed
                }
                stores[store] = s
            }
            return Self.liabilities(stores.values.sorted { $0.store < $1.store }, points: try self.pointsOutstanding(db), programme)
    }

    static func liabilities(_ list: [HubAPI.StoreLiability], points: Int64, _ programme: Programme) -> HubAPI.Liabilities {
        HubAPI.Liabilities(
            principal: list.reduce(0) { $0 + $1.principal }, bonus: list.reduce(0) { $0 + $1.bonus },
            owedPrincipal: list.reduce(0) { $0 + $1.owedPrincipal }, owedBonus: list.reduce(0) { $0 + $1.owedBonus },
            points: points, pointsCashValue: mulDiv(points, programme.redemption.minor, max(1, programme.redemption.points)),
            rulesVersion: programme.version, stores: list)
    }

    /// The points enrolled members hold (a group's together, never below zero), from the sums:
    /// members in no merge in one query, the few merged groups one by one.
    private func pointsOutstanding(_ db: Database) throws -> Int64 {
        try HubSummaries.flushCounts(db) // inside a write, what it has counted so far
        var points = try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT COALESCE(SUM(MAX(0, points)), 0) FROM member_sums
            WHERE enrolled = 1 AND member_id NOT IN (SELECT from_id FROM merges) AND member_id NOT IN (SELECT into_id FROM merges)
            """)) ?? 0
        for root in try self.mergedRoots(db) {
            let group = try JSONText.encode(try Replica.group(of: root, db).map(\.rawValue))
            points += max(0, try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(SUM(points), 0) FROM member_sums WHERE member_id IN (SELECT value FROM json_each(?))"),
                                                arguments: [group]) ?? 0)
        }
        return points
    }

    /// Enrolled members that absorbed others (the roots of merged groups).
    private func mergedRoots(_ db: Database) throws -> [MemberID] {
        try String.fetchAll(db.cachedStatement(sql: """
            SELECT DISTINCT g.into_id FROM merges g JOIN members m ON m.id = g.into_id
            WHERE m.enrolled IS NOT NULL AND g.into_id NOT IN (SELECT from_id FROM merges) ORDER BY g.into_id
            """)).map(MemberID.init)
    }

    /// One member's statement: every ledger entry of the member's group, in log order.
    public func statement(of member: MemberID) throws -> HubAPI.Statement {
        try refresh()
        return try pool.read { db in
            let root = try Replica.root(of: member, db)
            guard try Replica.isEnrolled(root, db) else { throw DomainError(.notFound, "no member \(member)") }
            let group = try Replica.group(of: root, db).map(\.rawValue)
            var balance: Int64 = 0, points: Int64 = 0
            let lines = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT o.version, e.op_id, o.kind, o.origin, o.hlc, o.body, e.value, e.bonus, e.points
                FROM entries e JOIN ops o ON o.id = e.op_id
                WHERE e.member_id IN (SELECT value FROM json_each(?)) ORDER BY o.version, e.part
                """), arguments: [try JSONText.encode(group)]).map { row -> HubAPI.StatementLine in
                let value: Int64 = row["value"], bonus: Int64 = row["bonus"], earned: Int64 = row["points"]
                balance += value + bonus
                points += earned
                let wallMs = HLCTimestamp(packed: row["hlc"])?.wallMs ?? 0
                var rules: Int?
                var body: [String: JSONValue]?
                if case .object(let fields)? = try? JSONText.decode(JSONValue.self, row["body"]) { body = fields }
                if case .int(let v)? = body?["rules_version"] { rules = Int(v) }
                return HubAPI.StatementLine(version: row["version"], op: row["op_id"], kind: row["kind"],
                                            store: Self.movementStore(kind: row["kind"], origin: row["origin"], body: body),
                                            at: isoTime(ms: wallMs),
                                            principal: value, bonus: bonus, points: earned, balance: balance, pointsAfter: points, rulesVersion: rules)
            }
            return HubAPI.Statement(member: root, lines: lines)
        }
    }

    // MARK: - Store operations

    /// What each store did, day by day (the till's local day), voided operations left out: the
    /// summary kept per store and day.
    public func storeActivity(from: LocalDay?, through: LocalDay?, store: String?) throws -> HubAPI.StoreActivity {
        try refresh()
        return try pool.read { db in try self.summaryStoreActivity(from: from, through: through, store: store, db) }
    }

    func summaryStoreActivity(from: LocalDay?, through: LocalDay?, store: String?, _ db: Database) throws -> HubAPI.StoreActivity {
        try HubSummaries.flushCounts(db) // inside a write, what it has counted so far
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT store, day, operations, enrolments, recharges, recharged, sales, sold, spent, points_earned, points_redeemed, refunds
                FROM store_days WHERE operations > 0 AND (? IS NULL OR store = ?) AND (? IS NULL OR day >= ?) AND (? IS NULL OR day <= ?)
                ORDER BY day, store
                """), arguments: [store, store, from?.number, from?.number, through?.number, through?.number])
            return HubAPI.StoreActivity(days: rows.map { row in
                var d = HubAPI.StoreDay(store: row[0], day: LocalDay(row[1] as Int64).iso)
                d.operations = row[2]; d.enrolments = row[3]; d.recharges = row[4]; d.recharged = row[5]; d.sales = row[6]
                d.sold = row[7]; d.spentFromBalance = row[8]; d.pointsEarned = row[9]; d.pointsRedeemed = row[10]; d.refunds = row[11]
                return d
            })
    }

    /// Members holding stored value that no movement has touched for `untouchedDays` days (the
    /// sums: members in no merge in one query, merged groups one by one).
    public func breakageCandidates(untouchedDays: Int64) throws -> [HubAPI.Dormant] {
        try refresh()
        let now = physicalMs()
        return try pool.read { db in try self.summaryBreakage(untouchedDays: untouchedDays, nowMs: now, db) }
    }

    func summaryBreakage(untouchedDays: Int64, nowMs now: Int64, _ db: Database) throws -> [HubAPI.Dormant] {
        try HubSummaries.flushCounts(db) // inside a write, what it has counted so far
            var out = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT member_id, value + bonus, value_at_ms FROM member_sums
                WHERE enrolled = 1 AND value + bonus > 0 AND value_at_ms IS NOT NULL AND (? - value_at_ms) / 86400000 >= ?
                  AND member_id NOT IN (SELECT from_id FROM merges) AND member_id NOT IN (SELECT into_id FROM merges)
                """), arguments: [now, untouchedDays]).map { row in
                HubAPI.Dormant(member: MemberID(row[0]), balance: row[1], lastMovement: isoTime(ms: row[2]))
            }
            for root in try self.mergedRoots(db) {
                let group = try JSONText.encode(try Replica.group(of: root, db).map(\.rawValue))
                guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                    SELECT COALESCE(SUM(value + bonus), 0), MAX(value_at_ms) FROM member_sums WHERE member_id IN (SELECT value FROM json_each(?))
                    """), arguments: [group]), let at = row[1] as Int64?, row[0] as Int64 > 0, (now - at) / 86_400_000 >= untouchedDays else { continue }
                out.append(HubAPI.Dormant(member: root, balance: row[0], lastMovement: isoTime(ms: at)))
            }
            return out.sorted { ($0.lastMovement, $0.member.rawValue) < ($1.lastMovement, $1.member.rawValue) }
    }

    // MARK: - Segments

    /// Each member's activity (a merged group's together) from the summaries: enrolment,
    /// purchases (how many, the last), spend less refunds; the purchases of the last
    /// `windowDays` when asked (read by time from the log's index).
    func profiles(_ db: Database, windowDays: Int64? = nil, nowMs: Int64 = 0) throws -> [Segments.Profile] {
        try HubSummaries.flushCounts(db) // inside a write (coupons for a segment), what it has counted so far
        // The few merged groups: the absorbed members' activity joins their survivor's.
        let alias = try Replica.mergedAway(db)
        var absorbed: [MemberID: [String]] = [:]
        for (id, root) in alias { absorbed[root, default: []].append(id) }
        var recent: [MemberID: [Int64]] = [:]
        if let windowDays {
            // Purchases stamped within the window (and not after now), voided ones left out.
            let since = HLCTimestamp(wallMs: max(0, nowMs - windowDays * 86_400_000), counter: 0).packed
            let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT member_id, hlc FROM ops WHERE kind = 'purchase' AND hlc >= ? AND member_id IS NOT NULL AND id NOT IN (SELECT of FROM voids)
                """), arguments: [since])
            while let row = try rows.next() {
                let id: String = row[0]
                recent[alias[id] ?? MemberID(id), default: []].append(HLCTimestamp(packed: row[1])?.wallMs ?? 0)
            }
        }
        // One pass over the members, each with its activity beside it.
        var out: [Segments.Profile] = []
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT m.id, m.name, m.phone, m.birthday, m.enrolled, COALESCE(a.purchases, 0), a.last_ms, COALESCE(a.spend, 0)
            FROM members m LEFT JOIN member_activity a ON a.member_id = m.id
            WHERE m.enrolled IS NOT NULL AND m.id NOT IN (SELECT from_id FROM merges)
            """))
        while let row = try rows.next() {
            let id = MemberID(row[0] as String)
            var purchases: Int = row[5], last: Int64? = row[6], spend: Int64 = row[7]
            for other in absorbed[id] ?? [] {
                guard let a = try Row.fetchOne(db.cachedStatement(sql: "SELECT purchases, last_ms, spend FROM member_activity WHERE member_id = ?"),
                                               arguments: [other]) else { continue }
                purchases += a[0] as Int
                if let l = a[1] as Int64? { last = max(last ?? l, l) }
                spend += a[2] as Int64
            }
            out.append(Segments.Profile(id: id, name: row[1], phone: row[2], birthday: row[3], enrolledMs: Replica.wallMs(ofStampKey: row[4]) ?? 0,
                                        purchases: purchases, lastPurchaseMs: last, recentPurchasesMs: recent[id] ?? [], spend: spend,
                                        tier: nil, membershipUntil: nil))
        }
        return out
    }

    public func segment(_ name: String, _ parameters: Segments.Parameters) throws -> HubAPI.SegmentReport {
        try refresh()
        return try pool.read { db in try self.segment(name, parameters, db) }
    }

    private func segment(_ name: String, _ parameters: Segments.Parameters, _ db: Database) throws -> HubAPI.SegmentReport {
        let now = physicalMs()
        let programme = try Replica.programme(db)
        let today = programme.calendar.day(ms: now)
        var profiles = try self.profiles(db, windowDays: name == "activity" ? parameters.windowDays : nil, nowMs: now)
        if name == "tier_movements" && parameters.days < 1 { throw DomainError(.invalidRequest, "days is 1 or more") }
        if name == "tiers" || name == "tier_movements" {
            // Every member's tier from one pass over the tier counters (not a standing per member).
            let after = try Replica.tierIndexes(programme: programme, asOfMs: now, db)
            let then = now - parameters.days * 86_400_000
            let before = name == "tier_movements" ? try Replica.tierIndexes(programme: programme, asOfMs: then, entriesThroughMs: then, db) : [:]
            for i in profiles.indices {
                let id = profiles[i].id
                profiles[i].tier = after[id].flatMap { programme.tiers?.levels[$0].name }
                profiles[i].tierBefore = before[id].flatMap { programme.tiers?.levels[$0].name }
                profiles[i].tierStep = Int64((after[id] ?? -1) - (before[id] ?? -1))
            }
        }
        if name == "memberships_ending" {
            // Only members who ever bought one can have a membership ending.
            let holders = Set(try String.fetchAll(db.cachedStatement(sql: "SELECT DISTINCT member_id FROM memberships")).map { try Replica.root(of: MemberID($0), db) })
            for i in profiles.indices where holders.contains(profiles[i].id) {
                profiles[i].membershipUntil = try Replica.standing(of: profiles[i].id, programme: programme, asOfMs: now, db).membership?.until
            }
        }
        if name == "points_expiring" {
            // What the rules will have expired by then, less what is due already: only members
            // with a lot ending within the window can have any (read by the lots' index).
            guard (0...3_650).contains(parameters.days) else { throw DomainError(.invalidRequest, "days is 0 to 3650") }
            let last = programme.calendar.day(ms: now + parameters.days * 86_400_000)
            var candidates = Set<MemberID>()
            for id in try String.fetchAll(db.cachedStatement(sql: """
                SELECT DISTINCT member_id FROM entries WHERE lot IS NOT NULL AND lot BETWEEN ? AND ? AND points <> 0
                """), arguments: [today.number - 1, last.number + 1]) {
                candidates.insert(try Replica.root(of: MemberID(id), db))
            }
            for i in profiles.indices where candidates.contains(profiles[i].id) {
                profiles[i].pointsExpiring = try Self.pointsExpiring(profiles[i].id, withinDays: parameters.days, programme: programme, now: now, db)
            }
        }
        let members = try Segments.members(name, profiles, nowMs: now, today: today, parameters)
        let top = name == "top"
        return HubAPI.SegmentReport(segment: name, asOf: today.iso, counts: Segments.counts(members), members: members,
                                    segmentSpend: top ? members.reduce(0) { $0 + $1.figure } : nil,
                                    totalSpend: top ? profiles.reduce(0) { $0 + max(0, $1.spend) } : nil)
    }

    /// Issues a coupon of the programme's template `template` to every member of a segment, as
    /// one operation of the hub's. Coupon ids name the template, member, segment and day, so
    /// asking twice on one day issues nothing more.
    public func issueSegmentCoupons(_ name: String, _ parameters: Segments.Parameters, template: String, actor: String) throws -> HubAPI.SegmentCoupons {
        try write { db, w in
            // Computed inside the write: no merge can slip in between (coupons go to roots).
            let report = try self.segment(name, parameters, db)
            let programme = try Replica.programme(db)
            guard let coupon = programme.coupons.first(where: { $0.id == template }) else {
                throw DomainError(.notFound, "the programme in force (version \(programme.version)) has no coupon template \(template)")
            }
            let today = programme.calendar.day(ms: self.physicalMs())
            var fresh: [Coupon] = []
            for entry in report.members {
                let issued = coupon.issue(id: "\(template)/\(entry.member)/\(name)-\(today.iso)", to: entry.member, on: today)
                if try Bool.fetchOne(db.cachedStatement(sql: "SELECT NOT EXISTS (SELECT 1 FROM coupons WHERE id = ?)"), arguments: [issued.id]) ?? false {
                    fresh.append(issued)
                }
            }
            var opID: String?
            if !fresh.isEmpty {
                let op = try self.appendHubOperation(.couponsIssued(CouponsIssued(coupons: fresh, reason: "segment \(name)")), db, w)
                opID = op.id.description
                try w.audit(actor: actor, action: "segment.coupons", detail: "\(fresh.count) coupon(s) \(template) to segment \(name) as \(op.id)", at: isoNow())
            }
            return HubAPI.SegmentCoupons(segment: name, template: template, issued: fresh.count,
                                         alreadyHeld: report.members.count - fresh.count, op: opID)
        }
    }

    // MARK: - The programme

    /// Publishes a new version of the programme as an operation of the hub's, so it reaches
    /// every node through the log. Versions only go up; each is immutable once published.
    public func publishRules(_ document: JSONValue) throws -> HubAPI.RulesVersion {
        try publishRules(document, actor: "cli")
    }

    public func publishRules(_ document: JSONValue, actor: String) throws -> HubAPI.RulesVersion {
        let programme = try Programme.parse(document)
        try programme.checkPublishable()
        return try write { db, w in
            let current = try Int.fetchOne(db.cachedStatement(sql: "SELECT MAX(version) FROM rules")) ?? 0
            guard programme.version > current else {
                throw DomainError(.rulesVersionConflict, "version \(programme.version) is not above the published version \(current); publish version \(current + 1)")
            }
            // Stored as the validated programme, defaults written out: every replica reads
            // exactly the rules the hub checked.
            let body = OperationBody.rulesPublished(RulesPublished(version: programme.version, programme: programme.json))
            let op = try self.makeHubOperation(body, db)
            let version = try self.append(op, body, db, w)
            try w.audit(actor: actor, action: "rules.published", detail: "version \(programme.version) '\(programme.name)' as \(op.id)", at: isoNow())
            return HubAPI.RulesVersion(version: programme.version, op: op.id, logVersion: version)
        }
    }

    /// Points head office gives (for a named activity of the programme, or by hand with a
    /// reason) or takes (by hand, never more than the member has to spend), as an operation of
    /// the hub's that reaches every store.
    public func awardPoints(_ member: MemberID, _ award: NodeAPI.PointsAward) throws -> MemberView {
        try awardPoints(member, award, actor: "cli")
    }

    public func awardPoints(_ member: MemberID, _ award: NodeAPI.PointsAward, actor: String) throws -> MemberView {
        try write { db, w in try self.awardPoints(member, award, actor: actor, db, w).view }
    }

    /// The adjustment itself, inside a write of the caller's.
    private func awardPoints(_ member: MemberID, _ award: NodeAPI.PointsAward, actor: String, _ db: Database,
                             _ w: any LedgerWrites) throws -> (op: Operation, view: MemberView) {
        let root = try Replica.root(of: member, db)
        guard try Replica.isEnrolled(root, db) else { throw DomainError(.notFound, "no member \(member)") }
        let programme = try Replica.programme(db)
        let now = self.physicalMs()
        let context = TillContext(store: .hub, atMs: now, programme: programme)
        let adjustment: PointsAdjusted
        switch (award.activity, award.points) {
        case (let activity?, nil):
            adjustment = try RulesEngine.activity(activity, member: root, context)
        case (nil, let points?) where points != 0:
            try Validate.points(points, "points", allowNegative: true)
            guard let reason = award.reason?.trimmingWhitespace(), !reason.isEmpty, reason.count <= Limits.reasonMaxLength else {
                throw DomainError(.invalidRequest, "points given or taken by hand need a reason of 1 to \(Limits.reasonMaxLength) characters")
            }
            if points < 0 {
                let standing = try Replica.standing(of: root, programme: programme, asOfMs: now, db)
                guard standing.pointsAvailable >= -points else {
                    throw DomainError(.insufficientPoints, "the member has \(standing.pointsAvailable) points to spend, fewer than \(-points)")
                }
            }
            let lot = programme.expiry.lot(earnedOn: context.day)
            adjustment = PointsAdjusted(member: root, points: points, reason: reason,
                                        pointsExpireOn: points > 0 && lot != .never ? lot.iso : nil, rulesVersion: programme.version)
        default:
            throw DomainError(.invalidRequest, "give either an activity of the programme, or non-zero points with a reason")
        }
        let op = try self.appendHubOperation(.pointsAdjusted(adjustment), db, w)
        try w.audit(actor: actor, action: "points.adjusted", detail: "\(root) \(adjustment.points) points (\(adjustment.reason)) as \(op.id)", at: isoNow())
        guard let view = try Replica.view(of: member, asOfMs: now, db) else { preconditionFailure("an enrolled member has a view") }
        return (op, view)
    }

    public func currentRules() throws -> Programme {
        try refresh()
        return try pool.read { db in try Replica.programme(db) }
    }

    /// The hub's scheduled work for the local day of `asOfMs` (now when nil): points whose lot
    /// has ended expire (or come back, when a late offline spend shows an expiry took too
    /// many), birthday-month and wake-up coupons are issued. Every result is an operation of
    /// the hub's with a deterministic effect, so running the jobs twice changes nothing.
    public func runJobs(asOfMs: Int64? = nil) throws -> HubAPI.JobReport {
        let now = asOfMs ?? physicalMs()
        let report = try write { db, w in
            let programme = try Replica.programme(db)
            let calendar = programme.calendar
            let today = calendar.day(ms: now)
            var report = HubAPI.JobReport(asOf: today.iso, rulesVersion: programme.version, expiries: 0, pointsExpired: 0, coupons: 0)
            let roots = try Self.roots(db)
            // Only members with a lot that has ended (or an expiry already recorded) can owe
            // one; only templates the hub issues need the scan for coupons.
            let holdingLots = Set(try String.fetchAll(db.cachedStatement(sql: """
                SELECT DISTINCT member_id FROM entries WHERE (lot IS NOT NULL AND lot < ?) OR expired <> 0
                """), arguments: [today.number]).map { try Replica.root(of: MemberID($0), db) })
            let issuesCoupons = programme.coupons.contains { $0.issueOn == .birthday || $0.issueOn == .wakeUp }
            let lastPurchase = issuesCoupons ? try Self.lastPurchases(db) : [:]
            for row in roots {
                let member = MemberID(row["id"])
                if holdingLots.contains(member) {
                    let standing = try Replica.standing(of: member, programme: programme, asOfMs: now, db)
                    let due = try Self.expiryUnderLeases(standing.expiryDue, standing: standing, member: member, policy: programme.leases, db)
                    if due != 0 {
                        try self.appendHubOperation(.pointsExpired(PointsExpired(member: member, points: due, asOf: today.adding(days: -1).iso)), db, w)
                        report.expiries += 1
                        report.pointsExpired += due
                    }
                }
                guard issuesCoupons else { continue }
                let active = try Self.lastActive(member, enrolled: row["enrolled"], lastPurchase, db) ?? now
                let coupons = try RulesEngine.scheduledCoupons(
                    member: member, birthday: row["birthday"], lastActive: calendar.day(ms: active), today: today, programme: programme)
                    .filter { try Bool.fetchOne(db.cachedStatement(sql: "SELECT NOT EXISTS (SELECT 1 FROM coupons WHERE id = ?)"), arguments: [$0.id]) ?? false }
                if !coupons.isEmpty {
                    try self.appendHubOperation(.couponsIssued(CouponsIssued(coupons: coupons, reason: "scheduled")), db, w)
                    report.coupons += coupons.count
                }
            }
            return report
        }
        try recordCalendarEvents(now: now)
        return report
    }

    /// The calendar's events (birthdays this month, dormancy bands, points expiring soon), once
    /// a day per process, in writes of `batch` members: the chain's write lock is never held
    /// for a pass over every member, so tills' spends do not wait behind it.
    func recordCalendarEvents(now: Int64, batch: Int = 2_000) throws {
        try refresh()
        let today = try pool.read { db in try Replica.programme(db).calendar.day(ms: now) }
        guard calendarDay.withLock({ $0 != today.number }) else { return }
        let (roots, lastPurchase, expiring) = try pool.read { db in
            // Members with points in a lot that ends soon: a `points.expiring` event each.
            var expiring: [MemberID: Int64] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: """
                SELECT member_id, MIN(lot) AS lot FROM entries WHERE lot >= ? AND lot < ? AND points > 0 GROUP BY member_id
                """), arguments: [today.number, today.number + Self.expiringWithinDays]) {
                let root = try Replica.root(of: MemberID(row["member_id"]), db)
                expiring[root] = min(expiring[root] ?? .max, row["lot"] as Int64)
            }
            return (try Self.roots(db), try Self.lastPurchases(db), expiring)
        }
        for start in stride(from: 0, to: roots.count, by: batch) {
            try write { db, w in
                let programme = try Replica.programme(db)
                for row in roots[start..<min(roots.count, start + batch)] {
                    let member = MemberID(row["id"])
                    let active = try Self.lastActive(member, enrolled: row["enrolled"], lastPurchase, db) ?? now
                    try emitCalendarEvents(member: member, birthday: row["birthday"], lastActiveMs: active, today: today, now: now,
                                           expiringLot: expiring[member], programme: programme, db, w)
                }
            }
        }
        calendarDay.withLock { $0 = today.number }
    }

    /// Enrolled members that are not merged into another, with their birthday and enrolment.
    private static func roots(_ db: Database) throws -> [Row] {
        try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, birthday, enrolled FROM members WHERE enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges) ORDER BY id
            """))
    }

    /// Each member id's last purchase (its stamp's wall clock).
    private static func lastPurchases(_ db: Database) throws -> [MemberID: Int64] {
        Dictionary(try Row.fetchAll(db.cachedStatement(sql: """
            SELECT member_id, MAX(hlc) AS hlc FROM ops WHERE kind = 'purchase' AND member_id IS NOT NULL GROUP BY member_id
            """)).map { (MemberID($0["member_id"]), HLCTimestamp(packed: $0["hlc"])?.wallMs ?? 0) }, uniquingKeysWith: max)
    }

    /// When a member (with those merged into it) last bought, or else enrolled.
    private static func lastActive(_ member: MemberID, enrolled: String?, _ lastPurchase: [MemberID: Int64], _ db: Database) throws -> Int64? {
        try Replica.group(of: member, db).compactMap { lastPurchase[$0] }.max() ?? enrolled.flatMap(Replica.wallMs(ofStampKey:))
    }

    /// Every operation in version order (tests and audits).
    public func log() throws -> [VersionedOperation] {
        try refresh()
        return try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops ORDER BY version")).map { VersionedOperation(version: $0["version"], op: try Operation(row: $0)) }
        }
    }

    // MARK: - Internals

    private func checkOrigins(_ ops: [Operation], _ store: StoreID) throws {
        if let foreign = ops.first(where: { $0.id.origin != store }) {
            throw DomainError(.originMismatch, "store \(store) may push only its own operations, not \(foreign.id)")
        }
    }

    /// Accepts one operation into the log (or recognises a retry), then applies it and checks
    /// what only the hub can see: overdrafts, duplicate refunds, duplicate enrolments.
    private func ingest(_ prepared: PreparedOperation, from store: StoreID, authorized: Bool, known: PushLookups? = nil,
                        _ db: Database, _ w: any LedgerWrites) throws -> PushResult {
        let op = prepared.op
        let settled = known?.settles(op.id.description) == true
        if let version = try settled ? known?.versions[op.id.description]
            : Int64.fetchOne(db.cachedStatement(sql: "SELECT version FROM ops WHERE id = ?"), arguments: [op.id.description]) {
            return PushResult(id: op.id, status: .duplicate, version: version)
        }
        if let reason = try w.rejection(of: op.id.description) {
            return PushResult(id: op.id, status: .rejected, reason: reason)
        }
        func reject(_ reason: String) throws -> PushResult {
            try w.reject(op.id.description, store: store.rawValue, reason: reason, json: try JSONText.encode(op), at: isoNow())
            try self.exception("rejected", member: nil, op: op.id, detail: reason, w)
            return PushResult(id: op.id, status: .rejected, reason: reason)
        }
        // An operation the hub refused at authorisation is still accepted when pushed: its store
        // never heard the refusal (the answer was lost) and sold offline, so the sale stands,
        // like any offline spend, and is checked for overdraft below.
        if try settled ? known?.voided.contains(op.id.description) == true : Replica.isVoided(op.id, db) {
            return try reject("voided by its store")
        }
        let body: OperationBody
        switch prepared.body {
        case .success(let checked): body = checked
        case .failure(let error): return try reject(error.description)
        }

        let tiers = try tiersBefore(op, body, db)
        // Not voided, as looked for above; unless it voids itself (nonsense, but valid): its own
        // apply records that void, and the summaries must see it as a rebuild would.
        let voidsItself = if case .operationVoided(let v) = body { v.of == op.id } else { false }
        let version = try self.append(op, body, text: prepared.text, checkedNotVoided: !voidsItself, db, w)
        try reportClockAhead(op, from: store, w)
        if case .unknown = body { return PushResult(id: op.id, status: .accepted, version: version) }
        try emitEvents(of: op, body, db, w)
        try emitTierChanges(tiers, op: op, db, w)

        switch body {
        case .memberEnrolled(let e):
            try mergeDuplicates(phone: e.phone, db, w)
        case .memberUpdated(let u):
            if let phone = u.phone, try Replica.roots(withPhone: phone, db).count > 1 {
                try exception("phone_conflict", member: u.member, op: op.id, detail: "phone \(phone) now belongs to more than one member", w)
            }
        case .refund(let r):
            // Refunds of one sale made offline at different stores may add up to more than it.
            let refunded = try Replica.refundedAmount(r.of, db)
            if let original = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM ops WHERE id = ?"), arguments: [r.of.description]) {
                let total: Int64? = switch try? Operation(row: original).decoded() {
                case .purchase(let p): p.amount
                case .valueRecharged(let v): v.amount
                default: nil
                }
                if let total, refunded > total {
                    try exception("duplicate_refund", member: r.member, op: op.id,
                                  detail: "\(r.of) refunded \(refunded) of \(total) (refunds made offline at different stores)", w)
                }
            }
            for coupon in r.couponsRevoked where try Replica.liveUses(of: coupon, db).count > 1 {
                try exception("coupon_reused", member: r.member, op: op.id,
                              detail: "coupon \(coupon) came with refunded recharge \(r.of) and had already been used", w)
            }
        case .purchase(let p):
            if let coupon = p.coupon {
                let uses = try Replica.liveUses(of: coupon, db)
                if uses.count > 1 {
                    try exception("coupon_reused", member: p.member, op: op.id,
                                  detail: "coupon \(coupon) used by \(uses.joined(separator: ", ")) (redeemed offline at different stores)", w)
                }
            }
        case .operationVoided(let v):
            // The voided spend was already applied here (its authorisation answer was lost):
            // reverse it, entry by entry, with visible operations of the hub's.
            let used = try String.fetchOne(db.cachedStatement(sql: "SELECT coupon FROM coupon_uses WHERE op_id = ?"), arguments: [v.of.description])
            var entries = try Replica.entries(of: v.of, db)
            let programme = try Replica.programme(db)
            let lease = try Row.fetchOne(db.cachedStatement(sql: "SELECT member_id, store, value, points FROM leases WHERE op_id = ?"),
                                         arguments: [v.of.description])
            if entries.isEmpty, used != nil || lease != nil, let member = v.member { entries = [LedgerEntry(member: member)] }
            for (i, e) in entries.enumerated() {
                var body = OperationReversed(
                    of: v.of, member: e.member, value: -e.value, bonus: -e.bonus, points: -e.points,
                    pointsExpireOn: e.lot?.iso, qualifying: -e.qualifying, coupon: i == 0 ? used : nil)
                if i == 0, let lease {
                    // The voided spend's draw on its store's lease goes back to that lease.
                    body.leaseStore = StoreID(rawValue: lease["store"])
                    body.leaseValue = -(lease["value"] as Int64)
                    body.leasePoints = -(lease["points"] as Int64)
                }
                if let policy = programme.leases, body.points < 0 {
                    // Points the voided spend earned may have been lent to a store
                    // since: only what the hub still holds is taken back, else the leases would
                    // hold more than the member has. The rest is the member's to keep.
                    let root = try Replica.root(of: e.member, db)
                    let standing = try Replica.standing(of: root, programme: programme, asOfMs: physicalMs(), db)
                    let free = Self.hubHeld(standing, leases: try Replica.leases(of: root, lifetimeMs: policy.lifetimeMs, db))
                    body.points = -min(-body.points, max(0, free.points))
                }
                let reversal = OperationBody.operationReversed(body)
                let hubOp = try appendHubOperation(reversal, db, w)
                try exception("reversal", member: e.member, op: hubOp.id, detail: "\(v.of) was voided by its store after the hub applied it; reversed", w)
                try checkOverdraft(reversal, hubOp.id, note: "after reversing \(v.of)", db, w)
            }
        default:
            break
        }
        try settleOverExpiry(body, db, w)
        try checkOverdraft(body, op.id, note: authorized ? "after a spend the hub authorised at \(store)" : "after \(op.kind) from \(store)", db, w)
        return PushResult(id: op.id, status: .accepted, version: version)
    }

    /// An operation stamped well ahead of the hub's clock is accepted (it may carry money a till
    /// was told about) but reported, at most once an hour per store: its stamp would win profile
    /// edits and date its points until the store's clock is fixed. The hub's own clock never
    /// follows it beyond the bounded drift (§2).
    private func reportClockAhead(_ op: Operation, from store: StoreID, _ w: any LedgerWrites) throws {
        let now = physicalMs()
        let ahead = op.hlc.wallMs - now
        guard ahead > HubStore.clockAheadReportMs else { return }
        let due = clockReports.withLock { reports -> Bool in
            if let last = reports[store], now - last < 3_600_000 { return false }
            reports[store] = now
            return true
        }
        guard due else { return }
        try exception("clock_ahead", member: nil, op: op.id,
                      detail: "store \(store)'s clock is \(ahead / 60_000) minutes ahead of the hub's; fix its time (NTP)", w)
    }

    static let clockAheadReportMs: Int64 = 5 * 60 * 1000

    /// A spend of points stamped before an expiry the hub has already recorded (made offline,
    /// arriving late) means that expiry took points the member had spent: give them back at
    /// once, with a visible operation, rather than report a false overdraft.
    private func settleOverExpiry(_ body: OperationBody, _ db: Database, _ w: any LedgerWrites) throws {
        for case .ledger(let e) in body.effects where e.points < 0 && e.lot == nil && e.expired == 0 {
            let root = try Replica.root(of: e.member, db)
            let (of, group) = try Replica.members(Replica.group(of: root, db))
            guard try Int64.fetchOne(db.cachedStatement(sql: """
                SELECT COALESCE(SUM(expired), 0) FROM entry_sums WHERE member_id \(of)
                """), arguments: [group]) ?? 0 > 0 else { continue }
            let programme = try Replica.programme(db)
            let standing = try Replica.standing(of: root, programme: programme, asOfMs: physicalMs(), db)
            if standing.expiryDue < 0 {
                let today = programme.calendar.day(ms: physicalMs())
                let giveBack = OperationBody.pointsExpired(PointsExpired(member: root, points: standing.expiryDue, asOf: today.adding(days: -1).iso))
                try appendHubOperation(giveBack, db, w)
            }
        }
    }

    /// Any operation that takes value or points from a member (an offline spend, a refund that
    /// takes back earned points, a reversal) may leave the member below zero: head office is told.
    private func checkOverdraft(_ body: OperationBody, _ op: OperationID, note: String, _ db: Database, _ w: any LedgerWrites) throws {
        for case .ledger(let e) in body.effects where e.value < 0 || e.bonus < 0 || e.points < 0 {
            let member = e.member
            let held = try Replica.holdings(of: member, db)
            if held.valueMinor < 0 || held.points < 0 {
                let root = try Replica.root(of: member, db)
                try exception("overdraft", member: root, op: op, detail: "balance \(held.valueMinor), points \(held.points) \(note)", w)
                try emit(.overdraft, key: "overdraft:\(op):\(root)", member: root, op: op,
                         data: ["balance": .int(held.valueMinor), "points": .int(held.points), "detail": .string(note)], db, w)
            }
        }
    }

    /// Appends to the log at the next version (the fold is at the log's head: the ledger's
    /// write lock is held) and applies the operation to the fold.
    /// `text`: the body as the log stores it, when made already (`PreparedOperation`).
    /// `checkedNotVoided`: the caller found no void of `op` in the fold just before (a push).
    func append(_ op: Operation, _ body: OperationBody, text: String? = nil, checkedNotVoided: Bool = false,
                _ db: Database, _ w: any LedgerWrites) throws -> Int64 {
        clock.withLock { _ = $0.observe(op.hlc, physicalMs: physicalMs()) }
        let member: String? = if case .unknown = body { nil } else { body.member?.rawValue }
        let row = LogRow(version: 0, id: op.id.description, origin: op.id.origin.rawValue, seq: Int64(op.id.seq), hlc: op.hlc.packed,
                         kind: op.kind, kindVersion: op.kindVersion, body: text ?? op.body.jsonText, member: member, receivedAt: isoNow())
        try db.cachedStatement(sql: """
            INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [row.id, row.origin, row.seq, row.hlc, row.kind, row.kindVersion, row.body, row.member, row.receivedAt])
        var appended = row
        appended.version = db.lastInsertedRowID
        try w.appended(appended)
        if case .unknown = body {} else { try Replica.apply(body, of: op, db) }
        try HubSummaries.apply(op, body, version: appended.version, checkedNotVoided: checkedNotVoided, db)
        return appended.version
    }

    /// The same phone enrolled at several stores (offline): the earliest enrolment by
    /// (HLC, origin) survives; the others are merged into it by operations of the hub.
    private func mergeDuplicates(phone: String, _ db: Database, _ w: any LedgerWrites) throws {
        let roots = try Replica.roots(withPhone: phone, db)
        guard roots.count > 1, let survivor = roots.first?.0 else { return }
        for (member, _) in roots.dropFirst() {
            let op = try appendHubOperation(.memberMerged(MemberMerged(from: member, into: survivor)), db, w)
            try exception("merge", member: survivor, op: op.id, detail: "\(member) enrolled the same phone; merged into \(survivor)", w)
        }
    }

    func makeHubOperation(_ body: OperationBody, _ db: Database) throws -> Operation {
        let (id, hlc) = try nextHubStamp(db)
        return Operation(id: id, hlc: hlc, body: body)
    }

    /// Makes an operation of the hub's and appends it to the log (inside a write).
    @discardableResult
    func appendHubOperation(_ body: OperationBody, _ db: Database, _ w: any LedgerWrites) throws -> Operation {
        let op = try makeHubOperation(body, db)
        _ = try append(op, body, db, w)
        return op
    }

    /// An operation of the hub's of a kind only the hub writes (no body type of its own: nodes
    /// store and pass it on like any kind they do not know).
    private func makeHubOperation(kind: String, body: JSONValue, _ db: Database) throws -> Operation {
        let (id, hlc) = try nextHubStamp(db)
        return Operation(id: id, hlc: hlc, kind: kind, kindVersion: 1, body: body)
    }

    /// The hub's next operation id and stamp (inside a write: the fold is at the log's head).
    func nextHubStamp(_ db: Database) throws -> (OperationID, HLCTimestamp) {
        let seq = (try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = 'hub'")) ?? 0) + 1
        return (OperationID(origin: .hub, seq: UInt64(seq)), clock.withLock { $0.tick(physicalMs: physicalMs()) })
    }

    func exception(_ kind: String, member: MemberID?, op: OperationID?, detail: String, _ w: any LedgerWrites) throws {
        try w.exception(kind: kind, member: member?.rawValue, op: op?.description, detail: detail, at: isoNow())
    }
}

/// What a push's operations find in the fold before the first is taken, read in two queries:
/// whether each is in the log already (a retry) and whether its store voided it. One look-up
/// of each per operation, nearly always finding nothing, was a tenth of the hub's writer.
/// The answers hold through the push for an operation that appears in it once, in a push
/// that voids nothing (the operations the hub appends meanwhile are its own, with ids of its
/// own, and void nothing); any other is looked up when its turn comes, as before.
struct PushLookups {
    var versions: [String: Int64] = [:]
    var voided: Set<String> = []
    private var once: Set<String> = []

    init?(_ prepared: [PreparedOperation], _ db: Database) throws {
        let voids = prepared.contains { if case .success(.operationVoided) = $0.body { true } else { false } }
        guard !voids, !prepared.isEmpty else { return nil }
        var seen: [String: Int] = [:]
        for p in prepared { seen[p.op.id.description, default: 0] += 1 }
        once = Set(seen.filter { $0.value == 1 }.keys)
        let ids = JSONValue.array(seen.keys.sorted().map { .string($0) }).jsonText
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT id, version FROM ops WHERE id IN (SELECT value FROM json_each(?))"),
                                    arguments: [ids]) {
            versions[row[0]] = row[1]
        }
        voided = Set(try String.fetchAll(db.cachedStatement(sql: "SELECT of FROM voids WHERE of IN (SELECT value FROM json_each(?))"),
                                         arguments: [ids]))
    }

    /// Whether the answers above hold for this operation.
    func settles(_ id: String) -> Bool { once.contains(id) }
}

/// What the hub makes of a pushed operation without its database: its body checked and read
/// (or why not), and the body's text as the log stores it. Pushes make these before their
/// write, on the request's own thread: on the chain's one writer they were a fifth of the
/// time each operation held it.
struct PreparedOperation: Sendable {
    var op: Operation
    var body: Result<OperationBody, DomainError>
    var text: String

    init(_ op: Operation) {
        self.init(op, body: Result { () throws(DomainError) in try Validate.operation(op) })
    }

    init(_ op: Operation, body: Result<OperationBody, DomainError>) {
        self.op = op
        self.body = body
        self.text = op.body.jsonText
    }
}
