import Foundation
import GRDB
import Synchronization
import TesseraCore
import TesseraProtocol

/// The hub's storage: the global operation log (each operation with its version), the folded
/// state, stores and their tokens, authorisation decisions and exceptions. The hub's logic runs
/// here inside single SQLite transactions, behind `HubStorage`, the seam a PostgreSQL
/// implementation will fill too.
public protocol HubStorage: Sendable {
    func authenticateStore(token: String) throws -> StoreID?
    func authenticateAdmin(token: String) throws -> Bool
    func push(_ ops: [Operation], from store: StoreID) throws -> [PushResult]
    func authorize(_ request: AuthorizeRequest, from store: StoreID) throws -> AuthorizeResponse
    func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse
    func snapshot(for store: StoreID) throws -> Snapshot
    func member(_ id: MemberID) throws -> MemberView?
    func allMembers() throws -> [MemberView]
    func stores() throws -> [HubAPI.StoreState]
    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord]
}

public final class HubStore: HubStorage {
    public let pool: DatabasePool
    private let clock: Mutex<HybridLogicalClock>
    private let physicalMs: @Sendable () -> Int64

    public init(path: String, physicalMs: @escaping @Sendable () -> Int64 = NodeStore.wallClockMs) throws {
        self.pool = try SQLiteFiles.openPool(path: path)
        self.physicalMs = physicalMs
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
        try migrator.migrate(pool)
        let last = try pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(hlc) FROM ops") ?? 0 }
        var clock = HybridLogicalClock()
        clock.observe(HLCTimestamp(packed: last) ?? .zero, physicalMs: physicalMs())
        self.clock = Mutex(clock)
    }

    // MARK: - Administration (CLI)

    /// Registers a store and returns its token (shown once; only its hash is kept).
    public func addStore(_ id: StoreID, name: String) throws -> String {
        guard id != .hub else { throw DomainError(.invalidRequest, "'hub' is reserved") }
        let name = try Validate.name(name)
        let token = Tokens.make(prefix: "tss_")
        try pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM stores WHERE id = ?)", arguments: [id.rawValue]) == false else {
                throw DomainError(.storeExists, "store \(id) is already registered")
            }
            try db.execute(sql: "INSERT INTO stores (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [id.rawValue, name, Tokens.hash(token), isoNow()])
        }
        return token
    }

    /// Issues a new head-office token (earlier ones stay valid).
    public func issueAdminToken() throws -> String {
        let token = Tokens.make(prefix: "tsa_")
        try pool.write { db in
            try db.execute(sql: "INSERT INTO admin_tokens (token_hash, created_at) VALUES (?, ?)", arguments: [Tokens.hash(token), isoNow()])
        }
        return token
    }

    public func authenticateStore(token: String) throws -> StoreID? {
        try pool.read { db in
            try String.fetchOne(db, sql: "SELECT id FROM stores WHERE token_hash = ?", arguments: [Tokens.hash(token)])
                .flatMap { StoreID(rawValue: $0) }
        }
    }

    public func authenticateAdmin(token: String) throws -> Bool {
        try pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM admin_tokens WHERE token_hash = ?)", arguments: [Tokens.hash(token)]) ?? false
        }
    }

    // MARK: - Sync

    public func push(_ ops: [Operation], from store: StoreID) throws -> [PushResult] {
        try checkOrigins(ops, store)
        return try pool.write { db in
            let results = try ops.map { try self.ingest($0, from: store, authorized: false, db) }
            try self.touch(store, db)
            return results
        }
    }

    public func authorize(_ request: AuthorizeRequest, from store: StoreID) throws -> AuthorizeResponse {
        try checkOrigins(request.prior + [request.op], store)
        return try pool.write { db in
            let prior = try request.prior.map { try self.ingest($0, from: store, authorized: false, db) }
            try self.touch(store, db)
            let op = request.op
            if let version = try Int64.fetchOne(db, sql: "SELECT version FROM ops WHERE id = ?", arguments: [op.id.description]) {
                return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
            }
            if let row = try Row.fetchOne(db, sql: "SELECT code, message FROM decisions WHERE op_id = ? AND decision = 'refused'",
                                          arguments: [op.id.description]) {
                return AuthorizeResponse(decision: .refused, code: ErrorCode(rawValue: row["code"] ?? ""), message: row["message"], prior: prior)
            }
            func refuse(_ error: DomainError) throws -> AuthorizeResponse {
                try db.execute(sql: "INSERT INTO decisions (op_id, decision, code, message, at) VALUES (?, 'refused', ?, ?, ?)",
                               arguments: [op.id.description, error.code.rawValue, error.message, isoNow()])
                return AuthorizeResponse(decision: .refused, code: error.code, message: error.message, prior: prior)
            }
            if try Replica.isVoided(op.id, db) {
                return try refuse(DomainError(.voided, "the store voided \(op.id) before this request arrived"))
            }
            let body: OperationBody
            do throws(DomainError) { body = try Validate.operation(op) } catch { return try refuse(error) }
            guard let member = body.member, try Replica.view(of: member, db) != nil else {
                return try refuse(DomainError(.notFound, "the hub knows no member \(body.member?.rawValue ?? "")"))
            }
            let held = try Replica.holdings(of: member, db)
            let debit = body.debit
            if debit.valueMinor > 0 && held.valueMinor < debit.valueMinor {
                return try refuse(DomainError(.insufficientBalance, "balance \(held.valueMinor) is less than \(debit.valueMinor)"))
            }
            if debit.points > 0 && held.points < debit.points {
                return try refuse(DomainError(.insufficientBalance, "points \(held.points) are fewer than \(debit.points)"))
            }
            let result = try self.ingest(op, from: store, authorized: true, db)
            guard result.status != .rejected, let version = result.version else {
                return AuthorizeResponse(decision: .refused, code: .invalidRequest, message: result.reason, prior: prior)
            }
            try db.execute(sql: "INSERT INTO decisions (op_id, decision, at) VALUES (?, 'accepted', ?)", arguments: [op.id.description, isoNow()])
            return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
        }
    }

    public func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse {
        let limit = max(1, min(limit, SyncLimits.pullPageMax))
        let page = try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM ops WHERE version > ? ORDER BY version LIMIT ?", arguments: [cursor, limit + 1])
                .map { VersionedOperation(version: $0["version"], op: try Operation(row: $0)) }
        }
        let ops = Array(page.prefix(limit))
        let next = ops.last?.version ?? cursor
        // Bookkeeping for head office's store list. Written only when something changed or the
        // last record is older than 10 s, so idle nodes polling every second cost no disk sync.
        let now = Date()
        try pool.write { db in
            try db.execute(sql: """
                UPDATE stores SET last_sync_at = ?, cursor = ?, pending = ?
                WHERE id = ? AND (cursor <> ? OR pending IS NOT ? OR last_sync_at IS NULL OR last_sync_at < ?)
                """, arguments: [now.ISO8601Format(), cursor, pending, store.rawValue, cursor, pending,
                                 now.addingTimeInterval(-10).ISO8601Format()])
        }
        return PullResponse(ops: ops, cursor: next, more: page.count > limit)
    }

    public func snapshot(for store: StoreID) throws -> Snapshot {
        try pool.read { db in
            let cursor = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM ops") ?? 0
            let originSeq = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = ?", arguments: [store.rawValue]) ?? 0
            let rejectedSeq = try String.fetchAll(db, sql: "SELECT op_id FROM rejected WHERE store = ?", arguments: [store.rawValue])
                .compactMap { OperationID($0)?.seq }.max() ?? 0
            let refusedSeq = try String.fetchAll(db, sql: "SELECT op_id FROM decisions").compactMap(OperationID.init)
                .filter { $0.origin == store }.map(\.seq).max() ?? 0
            let maxHLC = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(hlc), 0) FROM ops") ?? 0
            let state = try Replica.exportState(db)
            return Snapshot(cursor: cursor, originSeq: max(UInt64(originSeq), rejectedSeq, refusedSeq),
                            maxHLC: HLCTimestamp(packed: maxHLC) ?? .zero,
                            members: state.members, cards: state.cards, balances: state.balances,
                            merges: state.merges, refunds: state.refunds, voided: state.voided)
        }
    }

    // MARK: - Head office

    public func member(_ id: MemberID) throws -> MemberView? {
        try pool.read { db in try Replica.view(of: id, db) }
    }

    public func allMembers() throws -> [MemberView] {
        try pool.read { db in try Replica.allViews(db) }
    }

    public func stores() throws -> [HubAPI.StoreState] {
        try pool.read { db in
            let head = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM ops") ?? 0
            return try Row.fetchAll(db, sql: """
                SELECT s.*, (SELECT COUNT(*) FROM ops WHERE ops.origin = s.id) AS accepted FROM stores s ORDER BY s.id
                """).compactMap { row in
                guard let id = StoreID(rawValue: row["id"]) else { return nil }
                return HubAPI.StoreState(id: id, name: row["name"], lastSyncAt: row["last_sync_at"], cursor: row["cursor"],
                                         head: head, pending: row["pending"], opsAccepted: row["accepted"])
            }
        }
    }

    public func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM exceptions ORDER BY id DESC LIMIT ?", arguments: [limit]).map { row in
                HubAPI.ExceptionRecord(id: row["id"], kind: row["kind"], member: (row["member_id"] as String?).map(MemberID.init),
                                       op: row["op_id"], detail: row["detail"], at: row["at"])
            }
        }
    }

    /// Every operation in version order (tests and audits).
    public func log() throws -> [VersionedOperation] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM ops ORDER BY version").map { VersionedOperation(version: $0["version"], op: try Operation(row: $0)) }
        }
    }

    // MARK: - Internals

    private func checkOrigins(_ ops: [Operation], _ store: StoreID) throws {
        if let foreign = ops.first(where: { $0.id.origin != store }) {
            throw DomainError(.originMismatch, "store \(store) may push only its own operations, not \(foreign.id)")
        }
    }

    private func touch(_ store: StoreID, _ db: Database) throws {
        try db.execute(sql: "UPDATE stores SET last_sync_at = ? WHERE id = ?", arguments: [isoNow(), store.rawValue])
    }

    /// Accepts one operation into the log (or recognises a retry), then applies it and checks
    /// what only the hub can see: overdrafts, duplicate refunds, duplicate enrolments.
    private func ingest(_ op: Operation, from store: StoreID, authorized: Bool, _ db: Database) throws -> PushResult {
        if let version = try Int64.fetchOne(db, sql: "SELECT version FROM ops WHERE id = ?", arguments: [op.id.description]) {
            return PushResult(id: op.id, status: .duplicate, version: version)
        }
        if let reason = try String.fetchOne(db, sql: "SELECT reason FROM rejected WHERE op_id = ?", arguments: [op.id.description]) {
            return PushResult(id: op.id, status: .rejected, reason: reason)
        }
        func reject(_ reason: String) throws -> PushResult {
            try db.execute(sql: "INSERT INTO rejected (op_id, store, reason, op, at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [op.id.description, store.rawValue, reason, try JSONText.encode(op), isoNow()])
            try self.exception("rejected", member: nil, op: op.id, detail: reason, db)
            return PushResult(id: op.id, status: .rejected, reason: reason)
        }
        // An operation the hub refused at authorisation is still accepted when pushed: its store
        // never heard the refusal (the answer was lost) and sold offline, so the sale stands,
        // like any offline spend, and is checked for overdraft below.
        if try Replica.isVoided(op.id, db) {
            return try reject("voided by its store")
        }
        let body: OperationBody
        do throws(DomainError) { body = try Validate.operation(op) } catch { return try reject(error.description) }

        let version = try self.append(op, body, db)
        if case .unknown = body { return PushResult(id: op.id, status: .accepted, version: version) }

        switch body {
        case .memberEnrolled(let e):
            try mergeDuplicates(phone: e.phone, db)
        case .memberUpdated(let u):
            if let phone = u.phone, try Replica.roots(withPhone: phone, db).count > 1 {
                try exception("phone_conflict", member: u.member, op: op.id, detail: "phone \(phone) now belongs to more than one member", db)
            }
        case .refund(let r):
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM refunds WHERE of = ?", arguments: [r.of.description]) ?? 0
            if count > 1 {
                try exception("duplicate_refund", member: r.member, op: op.id, detail: "\(r.of) refunded \(count) times (offline at different stores)", db)
            }
        case .operationVoided(let v):
            // The voided spend was already applied here (its authorisation answer was lost):
            // reverse it with a visible operation of the hub's.
            let entries = try Replica.entries(of: v.of, db)
            for (member, value, points) in entries where value != 0 || points != 0 {
                let reversal = OperationBody.operationReversed(OperationReversed(of: v.of, member: member, value: -value, points: -points))
                let hubOp = try makeHubOperation(reversal, db)
                _ = try append(hubOp, reversal, db)
                try exception("reversal", member: member, op: hubOp.id, detail: "\(v.of) was voided by its store after the hub applied it; reversed", db)
                try checkOverdraft(reversal, hubOp.id, note: "after reversing \(v.of)", db)
            }
        default:
            break
        }
        try checkOverdraft(body, op.id, note: authorized ? "after a spend the hub authorised at \(store)" : "after \(op.kind) from \(store)", db)
        return PushResult(id: op.id, status: .accepted, version: version)
    }

    /// Any operation that takes value or points from a member (an offline spend, a refund that
    /// takes back earned points, a reversal) may leave the member below zero: head office is told.
    private func checkOverdraft(_ body: OperationBody, _ op: OperationID, note: String, _ db: Database) throws {
        for case .ledger(let member, let value, let points) in body.effects where value < 0 || points < 0 {
            let held = try Replica.holdings(of: member, db)
            if held.valueMinor < 0 || held.points < 0 {
                try exception("overdraft", member: try Replica.root(of: member, db), op: op,
                              detail: "balance \(held.valueMinor), points \(held.points) \(note)", db)
            }
        }
    }

    private func append(_ op: Operation, _ body: OperationBody, _ db: Database) throws -> Int64 {
        clock.withLock { _ = $0.observe(op.hlc, physicalMs: physicalMs()) }
        let member: String? = if case .unknown = body { nil } else { body.member?.rawValue }
        try db.execute(sql: """
            INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [op.id.description, op.id.origin.rawValue, op.id.seq, op.hlc.packed, op.kind, op.kindVersion,
                             try JSONText.encode(op.body), member, isoNow()])
        let version = db.lastInsertedRowID
        if case .unknown = body {} else { try Replica.apply(body, of: op, db) }
        return version
    }

    /// The same phone enrolled at several stores (offline): the earliest enrolment by
    /// (HLC, origin) survives; the others are merged into it by operations of the hub.
    private func mergeDuplicates(phone: String, _ db: Database) throws {
        let roots = try Replica.roots(withPhone: phone, db)
        guard roots.count > 1, let survivor = roots.first?.0 else { return }
        for (member, _) in roots.dropFirst() {
            let body = OperationBody.memberMerged(MemberMerged(from: member, into: survivor))
            let op = try makeHubOperation(body, db)
            _ = try append(op, body, db)
            try exception("merge", member: survivor, op: op.id, detail: "\(member) enrolled the same phone; merged into \(survivor)", db)
        }
    }

    private func makeHubOperation(_ body: OperationBody, _ db: Database) throws -> Operation {
        let seq = (try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = 'hub'") ?? 0) + 1
        let hlc = clock.withLock { $0.tick(physicalMs: physicalMs()) }
        return Operation(id: OperationID(origin: .hub, seq: UInt64(seq)), hlc: hlc, body: body)
    }

    private func exception(_ kind: String, member: MemberID?, op: OperationID?, detail: String, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO exceptions (kind, member_id, op_id, detail, at) VALUES (?, ?, ?, ?, ?)",
                       arguments: [kind, member?.rawValue, op?.description, detail, isoNow()])
    }
}
