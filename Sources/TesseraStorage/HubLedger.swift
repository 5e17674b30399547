import Foundation
import GRDB
import TesseraCore
import TesseraProtocol

/// The hub's record of truth: the operation log with its versions, store and head-office
/// credentials, the audit trail, authorisation decisions, rejected operations and exceptions.
///
/// The fold of the log (members, balances, points: the `Replica` tables) is always a local
/// SQLite database. On SQLite (`SQLiteLedger`) the ledger shares that file and its
/// transactions. On PostgreSQL (`PostgresLedger`) the ledger is shared by every hub process of
/// the chain, and each process's fold is a cache of the log that it catches up before every
/// decision and every read, and can rebuild from the log at any time.
public protocol HubLedger: Sendable {
    /// "sqlite" or "postgresql", for status and logs.
    var kind: String { get }

    /// One write of the chain. `body` runs inside one transaction of the fold, with the
    /// ledger's write lock held and the fold caught up to the log's head (`foldIn` applies one
    /// row of the log the fold has not seen); whatever `body` records reaches the ledger in the
    /// same commit, or nothing does.
    func write<T>(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void,
                  _ body: (Database, any LedgerWrites) throws -> T) throws -> T

    /// A write of the ledger alone (credentials, the audit trail): no fold, no write lock.
    func administer<T>(_ body: (any LedgerWrites) throws -> T) throws -> T

    /// Catches the fold up to the log's head, so that a read sees every committed operation.
    func refresh(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void) throws

    func storeID(tokenHash: String) throws -> String?
    func admin(tokenHash: String) throws -> (id: String, role: String)?
    func adminTokens() throws -> [HubAPI.AdminToken]
    func auditLog(limit: Int) throws -> [HubAPI.AuditRecord]
    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord]
    func exception(id: Int64) throws -> HubAPI.ExceptionRecord?
    /// How many exceptions of each kind were recorded (for metrics: a count, not the list).
    func exceptionCounts() throws -> [String: Int]
    /// Operations after `cursor` in version order: a page of the pull.
    /// The log's rows after `cursor`, in version order, as stored.
    func page(after cursor: Int64, limit: Int) throws -> [LogRow]
    /// A store's sync position, for head office's list of stores.
    /// Records where stores' nodes pulled to (head office's store list), several at once.
    func recordPulls(_ pulls: [PullRecord]) throws
    func stores() throws -> [HubAPI.StoreState]
    /// Ids of the store's operations the hub set aside: rejected, or refused at authorisation.
    func setAside(by store: String) throws -> [String]
    /// Throws when the ledger cannot be reached (readiness).
    func ping() throws
    /// The id of the operation the log holds at `version`, if any.
    func operationID(at version: Int64) throws -> String?
    /// Whether the log may lose operations while this process runs: a PostgreSQL restored from
    /// a backup, or failed over with commits lost, under running hub processes. A SQLite log is
    /// this process's own file; restoring it means stopping the hub first.
    var mayGoBack: Bool { get }

    /// Events after `cursor`, oldest first (the feed, and what webhooks deliver); `event` is
    /// nil for a type this build does not know (readers pass over it).
    func events(after cursor: Int64, limit: Int) throws -> [StoredEvent]
    /// One webhook, with its secret.
    func webhook(_ id: String) throws -> WebhookRecord?
    /// Every webhook, with its secret (the dispatcher signs with it; the API never shows it).
    func webhooks() throws -> [WebhookRecord]
    /// A webhook's delivery attempts, newest first.
    func deliveries(webhook: String, limit: Int) throws -> [HubAPI.Delivery]
    /// Takes the webhook for `holder` until `untilMs` unless another process holds it and its
    /// lease runs: one hub process at a time delivers a webhook, in order.
    func claimWebhook(_ id: String, holder: String, nowMs: Int64, untilMs: Int64) throws -> Bool
    /// Records one attempt and moves the webhook on (cursor, failures, when to try next), and
    /// renews `holder`'s lease until `untilMs`; false (nothing recorded) when `holder` no
    /// longer holds the webhook: another process took it over, and this one must stop.
    func recordDelivery(_ delivery: HubAPI.Delivery, holder: String, cursor: Int64, failures: Int, retryAtMs: Int64, untilMs: Int64) throws -> Bool
    /// Passes over events the webhook does not take (false: `holder` lost the webhook).
    func passOver(_ id: String, holder: String, cursor: Int64) throws -> Bool
}

/// A row of the events table.
public struct StoredEvent: Sendable {
    public var id: Int64
    public var event: HubAPI.Event?
}

/// A webhook as the ledger holds it: where to deliver, the HMAC key, the event types it takes,
/// how far it has got, and which hub process delivers it now.
public struct WebhookRecord: Sendable, Hashable {
    public var id: String
    public var url: String
    public var secret: String
    public var types: [HubAPI.EventType]
    public var createdAt: String
    public var revokedAt: String?
    public var cursor: Int64
    public var failures: Int
    public var retryAtMs: Int64

    public var view: HubAPI.Webhook {
        HubAPI.Webhook(id: id, url: url, events: types, createdAt: createdAt, revokedAt: revokedAt, cursor: cursor, failures: failures,
                       retryAt: retryAtMs > 0 ? isoTime(ms: retryAtMs) : nil)
    }

    /// Whether the operator lets the hub call this URL's host (`*`: any host).
    public static func allows(_ hosts: Set<String>, url: String) -> Bool {
        guard let host = URL(string: url)?.host?.lowercased() else { return false }
        return hosts.contains(host) || hosts.contains("*")
    }

    static func types(_ text: String) -> [HubAPI.EventType] {
        text.split(separator: ",").compactMap { HubAPI.EventType(rawValue: String($0)) }
    }
}

/// What a write records in the ledger besides the fold.
public protocol LedgerWrites {
    /// A hint: the batch about to be ingested, so that its retries are recognised in one query.
    func prefetch(_ ids: [String]) throws
    func rejection(of op: String) throws -> String?
    func reject(_ op: String, store: String, reason: String, json: String, at: String) throws
    /// The code and message of a refusal the hub gave at authorisation.
    func refusal(of op: String) throws -> (code: String?, message: String?)?
    func decide(_ op: String, accepted: Bool, code: String?, message: String?, at: String) throws
    func exception(kind: String, member: String?, op: String?, detail: String, at: String) throws
    func audit(actor: String, action: String, detail: String, at: String) throws
    func touch(_ store: String, at: String) throws
    /// An operation appended to the fold at `row.version`: the ledger's log gets the same row.
    func appended(_ row: LogRow) throws

    func storeExists(_ id: String) throws -> Bool
    func addStore(id: String, name: String, tokenHash: String, at: String) throws
    func setStoreToken(_ id: String, tokenHash: String) throws -> Bool
    func revokeStore(_ id: String, at: String) throws -> Bool
    func addAdminToken(id: String, tokenHash: String, role: String, label: String?, at: String) throws
    func revokeAdminToken(_ id: String, at: String) throws -> Bool

    /// An event, once per `key` (a second one with the same key is dropped): events of
    /// operations are keyed by the operation, events of the calendar by member and period.
    func event(key: String, type: HubAPI.EventType, member: String?, op: String?, data: String, at: String) throws
    /// The newest event id (a new webhook starts after it).
    func eventHead() throws -> Int64
    func addWebhook(_ webhook: WebhookRecord) throws
    func revokeWebhook(_ id: String, at: String) throws -> Bool
}

/// One row of the operation log, as stored on either database.
public struct LogRow: Sendable, Equatable {
    public var version: Int64
    public var id: String
    public var origin: String
    public var seq: Int64
    public var hlc: Int64
    public var kind: String
    public var kindVersion: Int
    public var body: String
    public var member: String?
    public var receivedAt: String

    public init(version: Int64, id: String, origin: String, seq: Int64, hlc: Int64, kind: String, kindVersion: Int, body: String,
                member: String?, receivedAt: String) {
        self.version = version; self.id = id; self.origin = origin; self.seq = seq; self.hlc = hlc; self.kind = kind
        self.kindVersion = kindVersion; self.body = body; self.member = member; self.receivedAt = receivedAt
    }

    public func operation() throws -> Operation {
        guard let id = OperationID(id), let hlc = HLCTimestamp(packed: hlc) else {
            throw DomainError(.internalError, "corrupt operation row \(version)")
        }
        return Operation(id: id, hlc: hlc, kind: kind, kindVersion: kindVersion, body: try JSONText.decode(JSONValue.self, body))
    }
}

/// The ledger in the hub's own SQLite file: the fold's transactions are the ledger's.
struct SQLiteLedger: HubLedger {
    let pool: DatabasePool
    var kind: String { "sqlite" }

    func write<T>(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void,
                  _ body: (Database, any LedgerWrites) throws -> T) throws -> T {
        try pool.write { db in try body(db, SQLiteWrites(db: db)) }
    }

    func administer<T>(_ body: (any LedgerWrites) throws -> T) throws -> T {
        try pool.write { db in try body(SQLiteWrites(db: db)) }
    }

    func refresh(_ fold: DatabasePool, foldIn: (Database, LogRow) throws -> Void) throws {}

    func storeID(tokenHash: String) throws -> String? {
        // One statement, which SQLite reads in a transaction of its own: the explicit one a
        // `read` wraps it in was half the cost of authenticating every push and pull (5 % of a
        // hub serving a hundred stores' catch-up).
        try pool.unsafeRead { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM stores WHERE token_hash = ? AND revoked_at IS NULL"), arguments: [tokenHash])
        }
    }

    func admin(tokenHash: String) throws -> (id: String, role: String)? {
        try pool.unsafeRead { db in // one statement, as above
            try Row.fetchOne(db.cachedStatement(sql: "SELECT id, role FROM admin_tokens WHERE token_hash = ? AND revoked_at IS NULL"),
                             arguments: [tokenHash]).map { ($0["id"], $0["role"]) }
        }
    }

    func adminTokens() throws -> [HubAPI.AdminToken] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT id, role, label, created_at, revoked_at FROM admin_tokens ORDER BY created_at")).map {
                HubAPI.AdminToken(id: $0["id"], role: $0["role"], label: $0["label"], createdAt: $0["created_at"], revokedAt: $0["revoked_at"])
            }
        }
    }

    func auditLog(limit: Int) throws -> [HubAPI.AuditRecord] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?"), arguments: [limit]).map {
                HubAPI.AuditRecord(id: $0["id"], at: $0["at"], actor: $0["actor"], action: $0["action"], detail: $0["detail"])
            }
        }
    }

    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM exceptions ORDER BY id DESC LIMIT ?"), arguments: [limit]).map(Self.exception)
        }
    }

    func exception(id: Int64) throws -> HubAPI.ExceptionRecord? {
        try pool.read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM exceptions WHERE id = ?"), arguments: [id]).map(Self.exception) }
    }

    func exceptionCounts() throws -> [String: Int] {
        try pool.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db.cachedStatement(sql: "SELECT kind, COUNT(*) AS n FROM exceptions GROUP BY kind"))
                .map { ($0["kind"] as String, $0["n"] as Int) })
        }
    }

    private static func exception(_ row: Row) -> HubAPI.ExceptionRecord {
        HubAPI.ExceptionRecord(id: row["id"], kind: row["kind"], member: (row["member_id"] as String?).map(MemberID.init),
                               op: row["op_id"], detail: row["detail"], at: row["at"])
    }

    func page(after cursor: Int64, limit: Int) throws -> [LogRow] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT version, id, origin, seq, hlc, kind, kind_version, body, member_id, received_at FROM ops WHERE version > ? ORDER BY version LIMIT ?
                """), arguments: [cursor, limit])
                .map { LogRow(version: $0[0], id: $0[1], origin: $0[2], seq: $0[3], hlc: $0[4], kind: $0[5], kindVersion: $0[6], body: $0[7],
                              member: $0[8], receivedAt: $0[9]) }
        }
    }

    func recordPulls(_ pulls: [PullRecord]) throws {
        try pool.write { db in
            for pull in pulls {
                // A push may have touched the store since this pull: its time is not put back.
                try db.cachedStatement(sql: "UPDATE stores SET last_sync_at = MAX(COALESCE(last_sync_at, ''), ?), cursor = ?, pending = ? WHERE id = ?")
                    .execute(arguments: [pull.at.ISO8601Format(), pull.cursor, pull.pending, pull.store])
            }
        }
    }

    func stores() throws -> [HubAPI.StoreState] {
        try pool.read { db in
            let head = try Replica.logHead(db)
            return try Row.fetchAll(db.cachedStatement(sql: """
                SELECT s.*, (SELECT COUNT(*) FROM ops WHERE ops.origin = s.id) AS accepted FROM stores s ORDER BY s.id
                """)).compactMap { row in
                guard let id = StoreID(rawValue: row["id"]) else { return nil }
                return HubAPI.StoreState(id: id, name: row["name"], lastSyncAt: row["last_sync_at"], cursor: row["cursor"],
                                         head: head, pending: row["pending"], opsAccepted: row["accepted"])
            }
        }
    }

    func setAside(by store: String) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db.cachedStatement(sql: "SELECT op_id FROM rejected WHERE store = ?"), arguments: [store])
                + String.fetchAll(db.cachedStatement(sql: "SELECT op_id FROM decisions WHERE decision = 'refused' AND op_id LIKE ? || ':%'"),
                                  arguments: [store])
        }
    }

    func ping() throws {
        _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    var mayGoBack: Bool { false }

    func operationID(at version: Int64) throws -> String? {
        try pool.read { db in try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM ops WHERE version = ?"), arguments: [version]) }
    }

    func events(after cursor: Int64, limit: Int) throws -> [StoredEvent] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT id, type, member_id, op_id, data, at FROM events WHERE id > ? ORDER BY id LIMIT ?"),
                             arguments: [cursor, limit]).map {
                StoredEvent(id: $0["id"], event: try HubAPI.Event(id: $0["id"], type: $0["type"], member: $0["member_id"], op: $0["op_id"],
                                                                   data: $0["data"], at: $0["at"]))
            }
        }
    }

    func webhooks() throws -> [WebhookRecord] {
        try pool.read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM webhooks ORDER BY created_at, id")).map(Self.webhook) }
    }

    func webhook(_ id: String) throws -> WebhookRecord? {
        try pool.read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM webhooks WHERE id = ?"), arguments: [id]).map(Self.webhook) }
    }

    private static func webhook(_ row: Row) -> WebhookRecord {
        WebhookRecord(id: row["id"], url: row["url"], secret: row["secret"], types: WebhookRecord.types(row["types"]),
                      createdAt: row["created_at"], revokedAt: row["revoked_at"], cursor: row["cursor"], failures: row["failures"],
                      retryAtMs: row["retry_at_ms"])
    }

    func deliveries(webhook: String, limit: Int) throws -> [HubAPI.Delivery] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?"),
                             arguments: [webhook, limit]).map {
                HubAPI.Delivery(webhook: $0["webhook_id"], event: $0["event_id"], attempt: $0["attempt"], outcome: $0["outcome"],
                                status: $0["status"], error: $0["error"], durationMs: $0["duration_ms"], at: $0["at"])
            }
        }
    }

    func claimWebhook(_ id: String, holder: String, nowMs: Int64, untilMs: Int64) throws -> Bool {
        try pool.write { db in
            try db.cachedStatement(sql: """
                UPDATE webhooks SET lease_holder = ?, lease_until_ms = ?
                WHERE id = ? AND revoked_at IS NULL AND (lease_holder IS NULL OR lease_holder = ? OR lease_until_ms < ?)
                """).execute(arguments: [holder, untilMs, id, holder, nowMs])
            return db.changesCount == 1
        }
    }

    func recordDelivery(_ d: HubAPI.Delivery, holder: String, cursor: Int64, failures: Int, retryAtMs: Int64, untilMs: Int64) throws -> Bool {
        try pool.write { db in
            try db.cachedStatement(sql: """
                UPDATE webhooks SET cursor = MAX(cursor, ?), failures = ?, retry_at_ms = ?, lease_until_ms = ? WHERE id = ? AND lease_holder = ?
                """).execute(arguments: [cursor, failures, retryAtMs, untilMs, d.webhook, holder])
            guard db.changesCount == 1 else { return false }
            try db.cachedStatement(sql: """
                INSERT INTO deliveries (webhook_id, event_id, attempt, outcome, status, error, duration_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [d.webhook, d.event, d.attempt, d.outcome, d.status, d.error, d.durationMs, d.at])
            return true
        }
    }

    func passOver(_ id: String, holder: String, cursor: Int64) throws -> Bool {
        try pool.write { db in
            try db.cachedStatement(sql: "UPDATE webhooks SET cursor = MAX(cursor, ?) WHERE id = ? AND lease_holder = ?").execute(arguments: [cursor, id, holder])
            return db.changesCount == 1
        }
    }
}

/// The rejections of a push's operations as one write knows them: read at once (`prefetch`)
/// for the operations it was told of, and those it made since. One look-up per operation,
/// nearly always finding nothing, was 6 % of the hub's writer under a catch-up on SQLite, and a
/// round trip each on PostgreSQL. Used by one write, on its thread.
final class KnownRejections: @unchecked Sendable {
    private var reasons: [String: String] = [:]
    private var asked: Set<String> = []

    /// The rejections found among `ids`: every other of them has none.
    func learn(_ ids: [String], found: [(id: String, reason: String)]) {
        for (id, reason) in found { reasons[id] = reason }
        asked.formUnion(ids)
    }

    func rejected(_ op: String, reason: String) { reasons[op] = reason }

    /// The rejection of `op`, when known; else `read` it.
    func reason(of op: String, read: () throws -> String?) rethrows -> String? {
        if let reason = reasons[op] { return reason }
        return asked.contains(op) ? nil : try read()
    }
}

struct SQLiteWrites: LedgerWrites {
    let db: Database
    private let known = KnownRejections()

    init(db: Database) { self.db = db }

    func prefetch(_ ids: [String]) throws {
        guard !ids.isEmpty else { return }
        let rows = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT op_id, reason FROM rejected WHERE op_id IN (SELECT value FROM json_each(?))
            """), arguments: [JSONValue.array(ids.map { .string($0) }).jsonText])
        known.learn(ids, found: rows.map { (id: $0[0], reason: $0[1]) })
    }

    func rejection(of op: String) throws -> String? {
        try known.reason(of: op) {
            try String.fetchOne(db.cachedStatement(sql: "SELECT reason FROM rejected WHERE op_id = ?"), arguments: [op])
        }
    }

    func reject(_ op: String, store: String, reason: String, json: String, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO rejected (op_id, store, reason, op, at) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [op, store, reason, json, at])
        known.rejected(op, reason: reason)
    }

    func refusal(of op: String) throws -> (code: String?, message: String?)? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT code, message FROM decisions WHERE op_id = ? AND decision = 'refused'"),
                         arguments: [op]).map { ($0["code"], $0["message"]) }
    }

    func decide(_ op: String, accepted: Bool, code: String?, message: String?, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO decisions (op_id, decision, code, message, at) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [op, accepted ? "accepted" : "refused", code, message, at])
    }

    func exception(kind: String, member: String?, op: String?, detail: String, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO exceptions (kind, member_id, op_id, detail, at) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [kind, member, op, detail, at])
    }

    func audit(actor: String, action: String, detail: String, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)").execute(arguments: [at, actor, action, detail])
    }

    func touch(_ store: String, at: String) throws {
        try db.cachedStatement(sql: "UPDATE stores SET last_sync_at = ? WHERE id = ?").execute(arguments: [at, store])
    }

    /// The fold's `ops` table is the log itself.
    func appended(_ row: LogRow) throws {}

    func storeExists(_ id: String) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM stores WHERE id = ?)"), arguments: [id]) ?? false
    }

    func addStore(id: String, name: String, tokenHash: String, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO stores (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)").execute(
            arguments: [id, name, tokenHash, at])
    }

    func setStoreToken(_ id: String, tokenHash: String) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE stores SET token_hash = ?, revoked_at = NULL WHERE id = ?").execute(arguments: [tokenHash, id])
        return db.changesCount == 1
    }

    func revokeStore(_ id: String, at: String) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE stores SET revoked_at = ? WHERE id = ?").execute(arguments: [at, id])
        return db.changesCount == 1
    }

    func addAdminToken(id: String, tokenHash: String, role: String, label: String?, at: String) throws {
        try db.cachedStatement(sql: "INSERT INTO admin_tokens (token_hash, created_at, id, role, label) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [tokenHash, at, id, role, label])
    }

    func revokeAdminToken(_ id: String, at: String) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").execute(arguments: [at, id])
        return db.changesCount == 1
    }

    func event(key: String, type: HubAPI.EventType, member: String?, op: String?, data: String, at: String) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO events (key, type, member_id, op_id, data, at) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [key, type.rawValue, member, op, data, at])
    }

    func eventHead() throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(id), 0) FROM events")) ?? 0
    }

    func addWebhook(_ w: WebhookRecord) throws {
        try db.cachedStatement(sql: "INSERT INTO webhooks (id, url, secret, types, created_at, cursor) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [w.id, w.url, w.secret, w.types.map(\.rawValue).joined(separator: ","), w.createdAt, w.cursor])
    }

    func revokeWebhook(_ id: String, at: String) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE webhooks SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").execute(arguments: [at, id])
        return db.changesCount == 1
    }
}

extension HubAPI.Event {
    /// From a stored row; nil for a type this build does not know.
    init?(id: Int64, type: String, member: String?, op: String?, data: String, at: String) throws {
        guard let type = HubAPI.EventType(rawValue: type) else { return nil }
        guard case .object(let fields) = try JSONText.decode(JSONValue.self, data) else { return nil }
        self.init(id: id, type: type, member: member.map(MemberID.init), op: op, at: at, data: fields)
    }
}

/// Where a store's node last pulled to, and when.
public struct PullRecord: Sendable, Equatable {
    public var store: String
    public var cursor: Int64
    public var pending: Int64?
    public var at: Date
}
