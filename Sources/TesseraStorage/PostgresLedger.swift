import Foundation
import GRDB
import PostgresNIO
import TesseraCore
import TesseraProtocol

/// The hub's ledger on PostgreSQL, shared by every hub process of the chain.
///
/// **Versions without gaps.** Every write of the chain (a push, an authorisation, a rule or
/// job of head office) takes one transaction-scoped advisory lock, catches its fold up to the
/// log's head, and numbers the operations it appends from that head. PostgreSQL makes a
/// transaction visible before it releases its locks, so the next writer sees every version
/// below its own, and a version becomes visible only after every lower one is: a pull that
/// sees version N has seen all below N, and one at cursor N never skips an operation that
/// commits later (the sequence-gap problem of change feeds, where a sequence hands out N+1
/// while N is still uncommitted). The same lock serialises spend authorisations across hubs,
/// so two hubs can never both approve the last of a balance. Reads (pulls, snapshots, head
/// office) take no lock and scale with the number of hub processes; writes go one at a time,
/// as on SQLite. protocol/spec.md section 6 states the rule.
final class PostgresLedger: HubLedger {
    let link: PostgresLink
    var kind: String { "postgresql" }

    static let writeLock: Int64 = 0x7E55_E2A0_0001
    static let migrationLock: Int64 = 0x7E55_E2A0_0002
    static let catchUpPage = 2_000

    init(_ location: PostgresLocation) throws {
        link = try PostgresLink(location)
        try migrate()
    }

    // MARK: - Schema

    /// Migrations run on start, one at a time across hub processes (an advisory lock), each
    /// recorded once. Statements only: the extended protocol runs one per query.
    static let migrations: [(name: String, statements: [String])] = [
        ("v1", [
            """
            CREATE TABLE ops (
                version BIGINT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                origin TEXT NOT NULL,
                seq BIGINT NOT NULL CHECK (seq > 0),
                hlc BIGINT NOT NULL,
                kind TEXT NOT NULL,
                kind_version BIGINT NOT NULL,
                body TEXT NOT NULL,
                member_id TEXT,
                received_at TEXT NOT NULL,
                UNIQUE (origin, seq)
            )
            """,
            "CREATE INDEX ops_member ON ops (member_id)",
            """
            CREATE TABLE stores (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                last_sync_at TEXT,
                cursor BIGINT NOT NULL DEFAULT 0,
                pending BIGINT,
                revoked_at TEXT
            )
            """,
            """
            CREATE TABLE admin_tokens (
                id TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL CHECK (role IN ('admin', 'reporter')),
                label TEXT,
                created_at TEXT NOT NULL,
                revoked_at TEXT
            )
            """,
            """
            CREATE TABLE decisions (
                op_id TEXT PRIMARY KEY,
                decision TEXT NOT NULL CHECK (decision IN ('accepted', 'refused')),
                code TEXT, message TEXT, at TEXT NOT NULL
            )
            """,
            "CREATE TABLE rejected (op_id TEXT PRIMARY KEY, store TEXT NOT NULL, reason TEXT NOT NULL, op TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE INDEX rejected_store ON rejected (store)",
            """
            CREATE TABLE exceptions (
                id BIGSERIAL PRIMARY KEY,
                kind TEXT NOT NULL, member_id TEXT, op_id TEXT, detail TEXT NOT NULL, at TEXT NOT NULL
            )
            """,
            "CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]),
        ("v2-events", HubStore.eventTables(serial: "BIGSERIAL PRIMARY KEY")),
    ]

    private func migrate() throws {
        try link.withConnection { c in
            try c.transaction {
                try c.run("SELECT pg_advisory_xact_lock(\(Self.migrationLock))")
                try c.run("CREATE TABLE IF NOT EXISTS tessera_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                let done = Set(try c.run("SELECT name FROM tessera_migrations").map { try $0.decode(String.self) })
                for migration in Self.migrations where !done.contains(migration.name) {
                    for statement in migration.statements { try c.run(PostgresQuery(unsafeSQL: statement)) }
                    try c.run("INSERT INTO tessera_migrations (name, applied_at) VALUES (\(migration.name), \(isoNow()))")
                }
                // The chain's identity: a fold made from another database is never reused.
                try c.run("INSERT INTO meta (key, value) VALUES ('chain_id', \(UUID().uuidString)) ON CONFLICT (key) DO NOTHING")
            }
        }
    }

    func chainID() throws -> String {
        guard let row = try link.run("SELECT value FROM meta WHERE key = 'chain_id'").first else {
            throw DomainError(.internalError, "the hub's PostgreSQL database has no chain id")
        }
        return try row.decode(String.self)
    }

    // MARK: - The fold

    /// Whether `fold` is a fold of this ledger's log: made from this database, and agreeing
    /// with it at its head. (A fold ahead of the log, after the database was restored from a
    /// backup, or made from another chain, must be rebuilt.) An empty fold is claimed.
    func owns(_ fold: DatabasePool) throws -> Bool {
        let chain = try chainID()
        let local = try fold.read { db -> (chain: String?, head: Int64, id: String?) in
            let head = try Replica.logHead(db)
            return (try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'postgres_chain'"), head,
                    try String.fetchOne(db, sql: "SELECT id FROM ops WHERE version = ?", arguments: [head]))
        }
        if local.head == 0 {
            try fold.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('postgres_chain', ?)", arguments: [chain])
            }
            return true
        }
        guard local.chain == chain else { return false }
        let there = try link.run("SELECT id FROM ops WHERE version = \(local.head)").first.map { try $0.decode(String.self) }
        return there == local.id
    }

    func refresh(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void) throws {
        var head = try Self.head(fold)
        while true {
            // From the fold's head itself: the log must still hold it, the same operation.
            let rows = try link.withConnection { try Self.rows(from: head, $0) }
            try Self.checkHead(head, rows)
            let new = rows.filter { $0.version > head.version }
            guard let last = new.last else { return }
            try fold.write { db in try Self.apply(new, db, foldIn) }
            head = (last.version, last.id)
            if rows.count < Self.catchUpPage { return }
        }
    }

    /// The fold's newest operation: (0, "") when it is empty.
    private static func head(_ fold: DatabasePool) throws -> (version: Int64, id: String) {
        try fold.read { db in try head(db) }
    }

    private static func head(_ db: Database) throws -> (version: Int64, id: String) {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT version, id FROM ops ORDER BY version DESC LIMIT 1")) else { return (0, "") }
        return (row["version"], row["id"])
    }

    /// Rows of the log from `head` on (the head itself first, unless the fold is empty).
    private static func rows(from head: (version: Int64, id: String), _ c: PostgresLink.Connection) throws -> [LogRow] {
        try rows(after: max(0, head.version - 1), c)
    }

    /// The log must still hold the fold's head, as the same operation. It does not when the
    /// database went back in time under this process (restored from a backup, or a failover
    /// to a replica that had not received the last commits), even once newer operations have
    /// reused those versions: folding on would give wrong balances and numbers, so reads and
    /// writes are refused until the process restarts and rebuilds its fold.
    private static func checkHead(_ head: (version: Int64, id: String), _ rows: [LogRow]) throws {
        guard head.version > 0 else { return }
        guard let first = rows.first, first.version == head.version, first.id == head.id else { throw behind(head.version) }
    }

    func write<T>(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void,
                  _ body: (Database, any LedgerWrites) throws -> T) throws -> T {
        // Most of any catch-up happens here, before the lock, so other hubs' writes wait less.
        try refresh(fold, foldIn: foldIn)
        return try link.withConnection { c in
            // PostgreSQL commits first: if the fold's commit then fails, the next catch-up
            // brings the fold level; if PostgreSQL's fails, the fold rolls back with it.
            try fold.write { db in
                try c.transaction {
                    try c.run("SELECT pg_advisory_xact_lock(\(Self.writeLock))")
                    while true {
                        let head = try Self.head(db)
                        let rows = try Self.rows(from: head, c)
                        try Self.checkHead(head, rows)
                        try Self.apply(rows.filter { $0.version > head.version }, db, foldIn)
                        if rows.count < Self.catchUpPage { break }
                    }
                    let writes = PostgresWrites(c)
                    let result = try body(db, writes)
                    try writes.flush()
                    return result
                }
            }
        }
    }

    static func behind(_ version: Int64) -> DomainError {
        DomainError(.storageUnavailable, "the hub's PostgreSQL no longer holds version \(version) of the log, which this hub process folded (restored from a backup, or failed over with commits lost); restart the process to rebuild its fold, and see deploy/README.md")
    }

    func administer<T>(_ body: (any LedgerWrites) throws -> T) throws -> T {
        try link.withConnection { c in
            try c.transaction {
                let writes = PostgresWrites(c)
                let result = try body(writes)
                try writes.flush()
                return result
            }
        }
    }

    /// Rows of the log after `version`, in order: a catch-up page, or a pull's.
    private static func rows(after version: Int64, limit: Int = catchUpPage, _ c: PostgresLink.Connection) throws -> [LogRow] {
        try c.run("""
            SELECT version, id, origin, seq, hlc, kind, kind_version, body, member_id, received_at
            FROM ops WHERE version > \(version) ORDER BY version LIMIT \(limit)
            """).map(LogRow.init(postgres:))
    }

    /// Folds rows in, skipping what the fold already holds; a gap would be a broken invariant.
    private static func apply(_ rows: [LogRow], _ db: Database, _ foldIn: (Database, LogRow) throws -> Void) throws {
        var head = try Replica.logHead(db)
        for row in rows where row.version > head {
            guard row.version == head + 1 else {
                throw DomainError(.internalError, "the log has a gap: version \(row.version) follows \(head)")
            }
            try foldIn(db, row)
            head = row.version
        }
    }

    // MARK: - Reads

    func storeID(tokenHash: String) throws -> String? {
        try link.run("SELECT id FROM stores WHERE token_hash = \(tokenHash) AND revoked_at IS NULL").first.map { try $0.decode(String.self) }
    }

    func admin(tokenHash: String) throws -> (id: String, role: String)? {
        try link.run("SELECT id, role FROM admin_tokens WHERE token_hash = \(tokenHash) AND revoked_at IS NULL").first
            .map { try $0.decode((String, String).self) }.map { (id: $0.0, role: $0.1) }
    }

    func adminTokens() throws -> [HubAPI.AdminToken] {
        try link.run("SELECT id, role, label, created_at, revoked_at FROM admin_tokens ORDER BY created_at").map {
            let (id, role, label, created, revoked) = try $0.decode((String, String, String?, String, String?).self)
            return HubAPI.AdminToken(id: id, role: role, label: label, createdAt: created, revokedAt: revoked)
        }
    }

    func auditLog(limit: Int) throws -> [HubAPI.AuditRecord] {
        try link.run("SELECT id, at, actor, action, detail FROM audit ORDER BY id DESC LIMIT \(limit)").map {
            let (id, at, actor, action, detail) = try $0.decode((Int64, String, String, String, String).self)
            return HubAPI.AuditRecord(id: id, at: at, actor: actor, action: action, detail: detail)
        }
    }

    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord] {
        try link.run("SELECT id, kind, member_id, op_id, detail, at FROM exceptions ORDER BY id DESC LIMIT \(limit)").map(Self.exception)
    }

    func exception(id: Int64) throws -> HubAPI.ExceptionRecord? {
        try link.run("SELECT id, kind, member_id, op_id, detail, at FROM exceptions WHERE id = \(id)").first.map(Self.exception)
    }

    func exceptionCounts() throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: try link.run("SELECT kind, COUNT(*) FROM exceptions GROUP BY kind").map {
            let (kind, n) = try $0.decode((String, Int64).self)
            return (kind, Int(n))
        })
    }

    private static func exception(_ row: PostgresRow) throws -> HubAPI.ExceptionRecord {
        let (id, kind, member, op, detail, at) = try row.decode((Int64, String, String?, String?, String, String).self)
        return HubAPI.ExceptionRecord(id: id, kind: kind, member: member.map(MemberID.init), op: op, detail: detail, at: at)
    }

    func events(after cursor: Int64, limit: Int) throws -> [StoredEvent] {
        try link.run("SELECT id, type, member_id, op_id, data, at FROM events WHERE id > \(cursor) ORDER BY id LIMIT \(limit)").map {
            let (id, type, member, op, data, at) = try $0.decode((Int64, String, String?, String?, String, String).self)
            return StoredEvent(id: id, event: try HubAPI.Event(id: id, type: type, member: member, op: op, data: data, at: at))
        }
    }

    func webhooks() throws -> [WebhookRecord] {
        try link.run("""
            SELECT id, url, secret, types, created_at, revoked_at, cursor, failures, retry_at_ms FROM webhooks ORDER BY created_at, id
            """).map(Self.webhook)
    }

    func webhook(_ id: String) throws -> WebhookRecord? {
        try link.run("""
            SELECT id, url, secret, types, created_at, revoked_at, cursor, failures, retry_at_ms FROM webhooks WHERE id = \(id)
            """).first.map(Self.webhook)
    }

    private static func webhook(_ row: PostgresRow) throws -> WebhookRecord {
        let (id, url, secret, types, created, revoked, cursor, failures, retry) =
            try row.decode((String, String, String, String, String, String?, Int64, Int32, Int64).self)
        return WebhookRecord(id: id, url: url, secret: secret, types: WebhookRecord.types(types), createdAt: created, revokedAt: revoked,
                             cursor: cursor, failures: Int(failures), retryAtMs: retry)
    }

    func deliveries(webhook: String, limit: Int) throws -> [HubAPI.Delivery] {
        try link.run("""
            SELECT webhook_id, event_id, attempt, outcome, status, error, duration_ms, at FROM deliveries
            WHERE webhook_id = \(webhook) ORDER BY id DESC LIMIT \(limit)
            """).map {
            let (hook, event, attempt, outcome, status, error, duration, at) =
                try $0.decode((String, Int64, Int32, String, Int32?, String?, Int64, String).self)
            return HubAPI.Delivery(webhook: hook, event: event, attempt: Int(attempt), outcome: outcome, status: status.map(Int.init),
                                   error: error, durationMs: duration, at: at)
        }
    }

    func claimWebhook(_ id: String, holder: String, nowMs: Int64, untilMs: Int64) throws -> Bool {
        try link.run("""
            UPDATE webhooks SET lease_holder = \(holder), lease_until_ms = \(untilMs)
            WHERE id = \(id) AND revoked_at IS NULL AND (lease_holder IS NULL OR lease_holder = \(holder) OR lease_until_ms < \(nowMs))
            """).metadata.rows == 1
    }

    func recordDelivery(_ d: HubAPI.Delivery, holder: String, cursor: Int64, failures: Int, retryAtMs: Int64, untilMs: Int64) throws -> Bool {
        try link.withConnection { c in
            try c.transaction {
                let updated = try c.run("""
                    UPDATE webhooks SET cursor = GREATEST(cursor, \(cursor)), failures = \(Int32(clamping: failures)), retry_at_ms = \(retryAtMs),
                                        lease_until_ms = \(untilMs)
                    WHERE id = \(d.webhook) AND lease_holder = \(holder)
                    """).metadata.rows == 1
                guard updated else { return false }
                try c.run("""
                    INSERT INTO deliveries (webhook_id, event_id, attempt, outcome, status, error, duration_ms, at)
                    VALUES (\(d.webhook), \(d.event), \(Int32(clamping: d.attempt)), \(d.outcome), \(d.status.map { Int32(clamping: $0) }), \(d.error.map(pgText)), \(d.durationMs), \(d.at))
                    """)
                return true
            }
        }
    }

    func passOver(_ id: String, holder: String, cursor: Int64) throws -> Bool {
        try link.run("UPDATE webhooks SET cursor = GREATEST(cursor, \(cursor)) WHERE id = \(id) AND lease_holder = \(holder)").metadata.rows == 1
    }

    func page(after cursor: Int64, limit: Int) throws -> [LogRow] {
        try link.withConnection { try Self.rows(after: cursor, limit: limit, $0) }
    }

    func recordPulls(_ pulls: [PullRecord]) throws {
        for pull in pulls {
            try link.run("""
                UPDATE stores SET last_sync_at = GREATEST(COALESCE(last_sync_at, ''), \(pull.at.ISO8601Format())), cursor = \(pull.cursor), pending = \(pull.pending)
                WHERE id = \(pull.store)
                """)
        }
    }

    func stores() throws -> [HubAPI.StoreState] {
        try link.withConnection { c in
            let head = try c.run("SELECT COALESCE(MAX(version), 0) FROM ops").first.map { try $0.decode(Int64.self) } ?? 0
            return try c.run("""
                SELECT s.id, s.name, s.last_sync_at, s.cursor, s.pending, (SELECT COUNT(*) FROM ops WHERE ops.origin = s.id)
                FROM stores s ORDER BY s.id
                """).compactMap { row in
                let (id, name, lastSync, cursor, pending, accepted) = try row.decode((String, String, String?, Int64, Int64?, Int64).self)
                guard let store = StoreID(rawValue: id) else { return nil }
                return HubAPI.StoreState(id: store, name: name, lastSyncAt: lastSync, cursor: cursor, head: head,
                                         pending: pending, opsAccepted: accepted)
            }
        }
    }

    func setAside(by store: String) throws -> [String] {
        try link.withConnection { c in
            try c.run("SELECT op_id FROM rejected WHERE store = \(store)").map { try $0.decode(String.self) }
                + c.run("SELECT op_id FROM decisions WHERE decision = 'refused' AND starts_with(op_id, \(store + ":"))")
                    .map { try $0.decode(String.self) }
        }
    }

    func ping() throws {
        try link.run("SELECT 1")
    }

    var mayGoBack: Bool { true }

    func operationID(at version: Int64) throws -> String? {
        try link.run("SELECT id FROM ops WHERE version = \(version)").first.map { try $0.decode(String.self) }
    }

    func databaseBytes() throws -> Int64 {
        try link.run("SELECT pg_database_size(current_database())").first.map { try $0.decode(Int64.self) } ?? 0
    }

    /// Ready when the database answers and still holds what this process's fold holds.
    func ready(_ fold: DatabasePool) throws {
        let head = try Self.head(fold)
        guard head.version > 0 else { return try ping() }
        guard try operationID(at: head.version) == head.id else { throw Self.behind(head.version) }
    }
}

/// PostgreSQL's text cannot hold U+0000, which SQLite's can: a reason or detail quoting what a
/// store sent keeps a visible mark in its place rather than failing the whole write.
func pgText(_ text: String) -> String {
    text.contains("\u{0}") ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
}

extension LogRow {
    init(postgres row: PostgresRow) throws {
        let (version, id, origin, seq, hlc, kind, kindVersion, body, member, receivedAt) =
            try row.decode((Int64, String, String, Int64, Int64, String, Int64, String, String?, String).self)
        self.init(version: version, id: id, origin: origin, seq: seq, hlc: hlc, kind: kind, kindVersion: Int(kindVersion),
                  body: body, member: member, receivedAt: receivedAt)
    }
}

/// A write's records, sent to PostgreSQL within its transaction: the operations and the events
/// as multi-row INSERTs of `sendEvery` as the fold makes them, the rest (rejections, decisions,
/// exceptions, audit) just before the commit, after them, on the same connection (PostgresNIO
/// runs them one after another, in order: events keep the order of their ids).
final class PostgresWrites: LedgerWrites {
    private let c: PostgresLink.Connection
    private var queued: [PostgresQuery] = []
    private var log: [LogRow] = []
    private var events: [EventRow] = []
    /// Inserts sent and not yet waited for.
    private var sent: [EventLoopFuture<PostgresQueryResult>] = []
    private let known = KnownRejections()

    init(_ c: PostgresLink.Connection) { self.c = c }

    /// Rows per INSERT sent while the fold goes on: PostgreSQL inserts them while this process
    /// folds the next ones. All sent at the end, the hub's writer waited for them, and each
    /// event was a statement of its own (a round trip each: a quarter of a push's time).
    static let sendEvery = 100

    /// An event as `event(key:...)` records it.
    struct EventRow {
        var key: String, type: String, member: String?, op: String?, data: String, at: String
    }

    /// Sends what is queued and waits for all of it; reads call it first, so they see it.
    func flush() throws {
        sendLog()
        sendEvents()
        var futures = sent
        sent.removeAll()
        futures += queued.map(c.send)
        queued.removeAll()
        var failure: (any Error)?
        for future in futures {
            // Once the connection is broken or timed out, the rest fail with it when it is
            // closed: waiting for each in turn would block the write for 30 s apiece.
            guard c.healthy else { break }
            do { _ = try c.wait(future) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }

    /// One multi-row INSERT of log rows (the benchmark's raw limit uses the same statement).
    static func insert(_ rows: ArraySlice<LogRow>, into table: String) -> PostgresQuery {
        multiRow("INSERT INTO \(table) (version, id, origin, seq, hlc, kind, kind_version, body, member_id, received_at)", rows, columns: 10) { row, b in
            b.append(row.version); b.append(row.id); b.append(row.origin); b.append(row.seq)
            b.append(row.hlc); b.append(row.kind); b.append(Int64(row.kindVersion)); b.append(row.body)
            b.append(row.member.map(pgText)); b.append(row.receivedAt)
        }
    }

    /// `insert` (the statement up to VALUES) with a row of `columns` parameters for each of
    /// `rows`, which `bind` appends in order, then `suffix`.
    static func multiRow<Rows: Collection>(_ insert: String, _ rows: Rows, columns: Int, suffix: String = "",
                                           bind: (Rows.Element, inout PostgresBindings) -> Void) -> PostgresQuery {
        var bindings = PostgresBindings(capacity: rows.count * columns)
        var values: [String] = []
        for row in rows {
            let n = bindings.count
            values.append("(" + (1...columns).map { "$\(n + $0)" }.joined(separator: ", ") + ")")
            bind(row, &bindings)
            assert(bindings.count == n + columns, "a row binds one value per column")
        }
        return PostgresQuery(unsafeSQL: "\(insert) VALUES \(values.joined(separator: ", "))\(suffix)", binds: bindings)
    }

    private func read(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try flush()
        return try c.run(query)
    }

    func prefetch(_ ids: [String]) throws {
        guard !ids.isEmpty else { return }
        let found = try read("SELECT op_id, reason FROM rejected WHERE op_id = ANY(\(ids))").map { row in
            let (id, reason) = try row.decode((String, String).self)
            return (id: id, reason: reason)
        }
        known.learn(ids, found: found)
    }

    func rejection(of op: String) throws -> String? {
        try known.reason(of: op) {
            try read("SELECT reason FROM rejected WHERE op_id = \(op)").first.map { try $0.decode(String.self) }
        }
    }

    func reject(_ op: String, store: String, reason: String, json: String, at: String) throws {
        known.rejected(op, reason: reason)
        queued.append("INSERT INTO rejected (op_id, store, reason, op, at) VALUES (\(op), \(store), \(pgText(reason)), \(pgText(json)), \(at))")
    }

    func refusal(of op: String) throws -> (code: String?, message: String?)? {
        try read("SELECT code, message FROM decisions WHERE op_id = \(op) AND decision = 'refused'").first
            .map { try $0.decode((String?, String?).self) }.map { (code: $0.0, message: $0.1) }
    }

    func decide(_ op: String, accepted: Bool, code: String?, message: String?, at: String) throws {
        queued.append("INSERT INTO decisions (op_id, decision, code, message, at) VALUES (\(op), \(accepted ? "accepted" : "refused"), \(code), \(message.map(pgText)), \(at))")
    }

    func exception(kind: String, member: String?, op: String?, detail: String, at: String) throws {
        queued.append("INSERT INTO exceptions (kind, member_id, op_id, detail, at) VALUES (\(kind), \(member.map(pgText)), \(op), \(pgText(detail)), \(at))")
    }

    func audit(actor: String, action: String, detail: String, at: String) throws {
        queued.append("INSERT INTO audit (at, actor, action, detail) VALUES (\(at), \(pgText(actor)), \(action), \(pgText(detail)))")
    }

    func touch(_ store: String, at: String) throws {
        queued.append("UPDATE stores SET last_sync_at = \(at) WHERE id = \(store)")
    }

    func appended(_ row: LogRow) throws {
        log.append(row)
        if log.count >= Self.sendEvery { sendLog() }
    }

    private func sendLog() {
        guard !log.isEmpty else { return }
        sent.append(c.send(Self.insert(log[...], into: "ops")))
        log.removeAll(keepingCapacity: true)
    }

    private func sendEvents() {
        guard !events.isEmpty else { return }
        sent.append(c.send(Self.multiRow("INSERT INTO events (key, type, member_id, op_id, data, at)", events, columns: 6,
                                         suffix: " ON CONFLICT (key) DO NOTHING") { e, b in
            b.append(pgText(e.key)); b.append(e.type); b.append(e.member.map(pgText)); b.append(e.op)
            b.append(pgText(e.data)); b.append(e.at)
        }))
        events.removeAll(keepingCapacity: true)
    }

    func storeExists(_ id: String) throws -> Bool {
        try !read("SELECT 1 FROM stores WHERE id = \(id)").rows.isEmpty
    }

    func addStore(id: String, name: String, tokenHash: String, at: String) throws {
        queued.append("INSERT INTO stores (id, name, token_hash, created_at) VALUES (\(id), \(name), \(tokenHash), \(at))")
    }

    func setStoreToken(_ id: String, tokenHash: String) throws -> Bool {
        try read("UPDATE stores SET token_hash = \(tokenHash), revoked_at = NULL WHERE id = \(id)").metadata.rows == 1
    }

    func revokeStore(_ id: String, at: String) throws -> Bool {
        try read("UPDATE stores SET revoked_at = \(at) WHERE id = \(id)").metadata.rows == 1
    }

    func addAdminToken(id: String, tokenHash: String, role: String, label: String?, at: String) throws {
        queued.append("INSERT INTO admin_tokens (id, token_hash, role, label, created_at) VALUES (\(id), \(tokenHash), \(role), \(label), \(at))")
    }

    func revokeAdminToken(_ id: String, at: String) throws -> Bool {
        try read("UPDATE admin_tokens SET revoked_at = \(at) WHERE id = \(id) AND revoked_at IS NULL").metadata.rows == 1
    }

    func event(key: String, type: HubAPI.EventType, member: String?, op: String?, data: String, at: String) throws {
        events.append(EventRow(key: key, type: type.rawValue, member: member, op: op, data: data, at: at))
        if events.count >= Self.sendEvery { sendEvents() }
    }

    func eventHead() throws -> Int64 {
        try read("SELECT COALESCE(MAX(id), 0) FROM events").first.map { try $0.decode(Int64.self) } ?? 0
    }

    func addWebhook(_ w: WebhookRecord) throws {
        queued.append("""
            INSERT INTO webhooks (id, url, secret, types, created_at, cursor)
            VALUES (\(w.id), \(pgText(w.url)), \(pgText(w.secret)), \(w.types.map(\.rawValue).joined(separator: ",")), \(w.createdAt), \(w.cursor))
            """)
    }

    func revokeWebhook(_ id: String, at: String) throws -> Bool {
        try read("UPDATE webhooks SET revoked_at = \(at) WHERE id = \(id) AND revoked_at IS NULL").metadata.rows == 1
    }
}
