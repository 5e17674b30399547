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
    func authenticateAdmin(token: String) throws -> HeadOffice?
    func audit(actor: String, action: String, detail: String) throws
    func auditLog(limit: Int) throws -> [HubAPI.AuditRecord]
    func push(_ ops: [Operation], from store: StoreID) throws -> [PushResult]
    func authorize(_ request: AuthorizeRequest, from store: StoreID) throws -> AuthorizeResponse
    func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse
    func snapshot(for store: StoreID) throws -> Snapshot
    func member(_ id: MemberID) throws -> MemberView?
    func allMembers() throws -> [MemberView]
    func stores() throws -> [HubAPI.StoreState]
    func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord]
    func publishRules(_ document: JSONValue, actor: String) throws -> HubAPI.RulesVersion
    func currentRules() throws -> Programme
    func runJobs(asOfMs: Int64?) throws -> HubAPI.JobReport
    func awardPoints(_ member: MemberID, _ award: NodeAPI.PointsAward, actor: String) throws -> MemberView
}

public final class HubStore: HubStorage {
    public let pool: DatabasePool
    private let clock: Mutex<HybridLogicalClock>
    private let physicalMs: @Sendable () -> Int64
    private let clockReports = Mutex<[StoreID: Int64]>([:])

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
        try migrator.migrate(pool)
        let last = try pool.read { db in try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(hlc) FROM ops")) ?? 0 }
        var clock = HybridLogicalClock()
        clock.observe(HLCTimestamp(packed: last) ?? .zero, physicalMs: physicalMs())
        self.clock = Mutex(clock)
    }

    // MARK: - Administration (CLI)

    /// Registers a store and returns its token (shown once; only its hash is kept).
    public func addStore(_ id: StoreID, name: String, actor: String = "cli") throws -> String {
        guard id != .hub else { throw DomainError(.invalidRequest, "'hub' is reserved") }
        let name = try Validate.name(name)
        let token = Tokens.make(prefix: "tss_")
        try pool.write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM stores WHERE id = ?)"), arguments: [id.rawValue]) == false else {
                throw DomainError(.storeExists, "store \(id) is already registered")
            }
            try db.cachedStatement(sql: "INSERT INTO stores (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)").execute(
                arguments: [id.rawValue, name, Tokens.hash(token), isoNow()])
            try self.audit(actor, "store.added", "\(id) '\(name)'", db)
        }
        return token
    }

    /// A new token for a store; the old one stops working at once. Also re-admits a revoked store.
    public func rotateStoreToken(_ id: StoreID, actor: String = "cli") throws -> String {
        let token = Tokens.make(prefix: "tss_")
        try pool.write { db in
            try db.cachedStatement(sql: "UPDATE stores SET token_hash = ?, revoked_at = NULL WHERE id = ?").execute(arguments: [Tokens.hash(token), id.rawValue])
            guard db.changesCount == 1 else { throw DomainError(.notFound, "no store \(id)") }
            try self.audit(actor, "store.token_rotated", "\(id)", db)
        }
        return token
    }

    /// The store's token is refused from now on (its node keeps serving its tills offline).
    public func revokeStore(_ id: StoreID, actor: String = "cli") throws {
        try pool.write { db in
            try db.cachedStatement(sql: "UPDATE stores SET revoked_at = ? WHERE id = ?").execute(arguments: [isoNow(), id.rawValue])
            guard db.changesCount == 1 else { throw DomainError(.notFound, "no store \(id)") }
            try self.audit(actor, "store.revoked", "\(id)", db)
        }
    }

    /// Issues a head-office token: `admin` may change things (rules, points, jobs), `reporter`
    /// may only read. Returns the token's id (for revoking it) and the token (shown once).
    public func issueAdminToken(role: HeadOffice.Role = .admin, label: String? = nil, actor: String = "cli") throws -> (id: String, token: String) {
        let token = Tokens.make(prefix: "tsa_")
        let id = "hot-" + Tokens.hash(token).prefix(8)
        try pool.write { db in
            try db.cachedStatement(sql: "INSERT INTO admin_tokens (token_hash, created_at, id, role, label) VALUES (?, ?, ?, ?, ?)").execute(
                arguments: [Tokens.hash(token), isoNow(), id, role.rawValue, label])
            try self.audit(actor, "admin_token.issued", "\(id) role \(role.rawValue)\(label.map { " '\($0)'" } ?? "")", db)
        }
        return (id, token)
    }

    public func revokeAdminToken(_ id: String, actor: String = "cli") throws {
        try pool.write { db in
            try db.cachedStatement(sql: "UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").execute(arguments: [isoNow(), id])
            guard db.changesCount == 1 else { throw DomainError(.notFound, "no live head-office token \(id)") }
            try self.audit(actor, "admin_token.revoked", id, db)
        }
    }

    public func adminTokens() throws -> [HubAPI.AdminToken] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT id, role, label, created_at, revoked_at FROM admin_tokens ORDER BY created_at")).map {
                HubAPI.AdminToken(id: $0["id"], role: $0["role"], label: $0["label"], createdAt: $0["created_at"], revokedAt: $0["revoked_at"])
            }
        }
    }

    public func authenticateStore(token: String) throws -> StoreID? {
        try pool.read { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM stores WHERE token_hash = ? AND revoked_at IS NULL"), arguments: [Tokens.hash(token)])
                .flatMap { StoreID(rawValue: $0) }
        }
    }

    public func authenticateAdmin(token: String) throws -> HeadOffice? {
        try pool.read { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT id, role FROM admin_tokens WHERE token_hash = ? AND revoked_at IS NULL"),
                                             arguments: [Tokens.hash(token)]),
                  let role = HeadOffice.Role(rawValue: row["role"]) else { return nil }
            return HeadOffice(id: row["id"], role: role)
        }
    }

    /// Records an action (or a refused attempt) in the audit log.
    public func audit(actor: String, action: String, detail: String) throws {
        try pool.write { db in try self.audit(actor, action, detail, db) }
    }

    public func auditLog(limit: Int) throws -> [HubAPI.AuditRecord] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?"), arguments: [limit]).map {
                HubAPI.AuditRecord(id: $0["id"], at: $0["at"], actor: $0["actor"], action: $0["action"], detail: $0["detail"])
            }
        }
    }

    private func audit(_ actor: String, _ action: String, _ detail: String, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)").execute(arguments: [isoNow(), actor, action, detail])
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
            if let version = try Int64.fetchOne(db.cachedStatement(sql: "SELECT version FROM ops WHERE id = ?"), arguments: [op.id.description]) {
                return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
            }
            if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT code, message FROM decisions WHERE op_id = ? AND decision = 'refused'"),
                                          arguments: [op.id.description]) {
                return AuthorizeResponse(decision: .refused, code: ErrorCode(rawValue: row["code"] ?? ""), message: row["message"], prior: prior)
            }
            func refuse(_ error: DomainError) throws -> AuthorizeResponse {
                try db.cachedStatement(sql: "INSERT INTO decisions (op_id, decision, code, message, at) VALUES (?, 'refused', ?, ?, ?)").execute(
                    arguments: [op.id.description, error.code.rawValue, error.message, isoNow()])
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
            let result = try self.ingest(op, from: store, authorized: true, db)
            guard result.status != .rejected, let version = result.version else {
                return AuthorizeResponse(decision: .refused, code: .invalidRequest, message: result.reason, prior: prior)
            }
            try db.cachedStatement(sql: "INSERT INTO decisions (op_id, decision, at) VALUES (?, 'accepted', ?)").execute(arguments: [op.id.description, isoNow()])
            return AuthorizeResponse(decision: .accepted, version: version, prior: prior)
        }
    }

    public func pull(after cursor: Int64, limit: Int, for store: StoreID, pending: Int64?) throws -> PullResponse {
        let limit = max(1, min(limit, SyncLimits.pullPageMax))
        let page = try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops WHERE version > ? ORDER BY version LIMIT ?"), arguments: [cursor, limit + 1])
                .map { VersionedOperation(version: $0["version"], op: try Operation(row: $0)) }
        }
        let ops = Array(page.prefix(limit))
        let next = ops.last?.version ?? cursor
        // Bookkeeping for head office's store list. Written only when something changed or the
        // last record is older than 10 s, so idle nodes polling every second cost no disk sync.
        let now = Date()
        try pool.write { db in
            try db.cachedStatement(sql: """
                UPDATE stores SET last_sync_at = ?, cursor = ?, pending = ?
                WHERE id = ? AND (cursor <> ? OR pending IS NOT ? OR last_sync_at IS NULL OR last_sync_at < ?)
                """).execute(arguments: [now.ISO8601Format(), cursor, pending, store.rawValue, cursor, pending,
                                 now.addingTimeInterval(-10).ISO8601Format()])
        }
        return PullResponse(ops: ops, cursor: next, more: page.count > limit)
    }

    public func snapshot(for store: StoreID) throws -> Snapshot {
        try pool.read { db in
            let cursor = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(version), 0) FROM ops")) ?? 0
            let originSeq = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = ?"), arguments: [store.rawValue]) ?? 0
            let rejectedSeq = try String.fetchAll(db.cachedStatement(sql: "SELECT op_id FROM rejected WHERE store = ?"), arguments: [store.rawValue])
                .compactMap { OperationID($0)?.seq }.max() ?? 0
            let refusedSeq = try String.fetchAll(db.cachedStatement(sql: "SELECT op_id FROM decisions")).compactMap(OperationID.init)
                .filter { $0.origin == store }.map(\.seq).max() ?? 0
            let maxHLC = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(hlc), 0) FROM ops")) ?? 0
            let state = try Replica.exportState(db)
            return Snapshot(cursor: cursor, originSeq: max(UInt64(originSeq), rejectedSeq, refusedSeq),
                            maxHLC: HLCTimestamp(packed: maxHLC) ?? .zero,
                            members: state.members, cards: state.cards, entries: state.entries,
                            merges: state.merges, refunds: state.refunds, voided: state.voided, rules: state.rules,
                            coupons: state.coupons, couponUses: state.couponUses, couponRestores: state.couponRestores,
                            memberships: state.memberships)
        }
    }

    // MARK: - Head office

    public func member(_ id: MemberID) throws -> MemberView? {
        try pool.read { db in try Replica.view(of: id, asOfMs: self.physicalMs(), db) }
    }

    public func allMembers() throws -> [MemberView] {
        try allMembers(asOfMs: nil)
    }

    /// Every member's view, as of `asOfMs` (the hub's clock when nil).
    public func allMembers(asOfMs: Int64?) throws -> [MemberView] {
        try pool.read { db in try Replica.allViews(asOfMs: asOfMs ?? self.physicalMs(), db) }
    }

    public func stores() throws -> [HubAPI.StoreState] {
        try pool.read { db in
            let head = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(version), 0) FROM ops")) ?? 0
            return try Row.fetchAll(db.cachedStatement(sql: """
                SELECT s.*, (SELECT COUNT(*) FROM ops WHERE ops.origin = s.id) AS accepted FROM stores s ORDER BY s.id
                """)).compactMap { row in
                guard let id = StoreID(rawValue: row["id"]) else { return nil }
                return HubAPI.StoreState(id: id, name: row["name"], lastSyncAt: row["last_sync_at"], cursor: row["cursor"],
                                         head: head, pending: row["pending"], opsAccepted: row["accepted"])
            }
        }
    }

    public func exceptions(limit: Int) throws -> [HubAPI.ExceptionRecord] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM exceptions ORDER BY id DESC LIMIT ?"), arguments: [limit]).map { row in
                HubAPI.ExceptionRecord(id: row["id"], kind: row["kind"], member: (row["member_id"] as String?).map(MemberID.init),
                                       op: row["op_id"], detail: row["detail"], at: row["at"])
            }
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
        return try pool.write { db in
            let current = try Int.fetchOne(db.cachedStatement(sql: "SELECT MAX(version) FROM rules")) ?? 0
            guard programme.version > current else {
                throw DomainError(.rulesVersionConflict, "version \(programme.version) is not above the published version \(current); publish version \(current + 1)")
            }
            // Stored as the validated programme, defaults written out: every replica reads
            // exactly the rules the hub checked.
            let body = OperationBody.rulesPublished(RulesPublished(version: programme.version, programme: programme.json))
            let op = try self.makeHubOperation(body, db)
            let version = try self.append(op, body, db)
            try self.audit(actor, "rules.published", "version \(programme.version) '\(programme.name)' as \(op.id)", db)
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
        try pool.write { db in
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
            let body = OperationBody.pointsAdjusted(adjustment)
            let op = try self.makeHubOperation(body, db)
            _ = try self.append(op, body, db)
            try self.audit(actor, "points.adjusted", "\(root) \(adjustment.points) points (\(adjustment.reason)) as \(op.id)", db)
            guard let view = try Replica.view(of: member, asOfMs: now, db) else { preconditionFailure("an enrolled member has a view") }
            return view
        }
    }

    public func currentRules() throws -> Programme {
        try pool.read { db in try Replica.programme(db) }
    }

    /// The hub's scheduled work for the local day of `asOfMs` (now when nil): points whose lot
    /// has ended expire (or come back, when a late offline spend shows an expiry took too
    /// many), birthday-month and wake-up coupons are issued. Every result is an operation of
    /// the hub's with a deterministic effect, so running the jobs twice changes nothing.
    public func runJobs(asOfMs: Int64? = nil) throws -> HubAPI.JobReport {
        let now = asOfMs ?? physicalMs()
        return try pool.write { db in
            let programme = try Replica.programme(db)
            let calendar = programme.calendar
            let today = calendar.day(ms: now)
            var report = HubAPI.JobReport(asOf: today.iso, rulesVersion: programme.version, expiries: 0, pointsExpired: 0, coupons: 0)
            let roots = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, birthday, enrolled FROM members WHERE enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges) ORDER BY id
                """))
            // Only members with a lot that has ended (or an expiry already recorded) can owe
            // one; only templates the hub issues need the scan for coupons.
            let holdingLots = Set(try String.fetchAll(db.cachedStatement(sql: """
                SELECT DISTINCT member_id FROM entries WHERE (lot IS NOT NULL AND lot < ?) OR expired <> 0
                """), arguments: [today.number]).map { try Replica.root(of: MemberID($0), db) })
            let issuesCoupons = programme.coupons.contains { $0.issueOn == .birthday || $0.issueOn == .wakeUp }
            let lastPurchase = !issuesCoupons ? [:] : Dictionary(try Row.fetchAll(db.cachedStatement(sql: """
                SELECT member_id, MAX(hlc) AS hlc FROM ops WHERE kind = 'purchase' AND member_id IS NOT NULL GROUP BY member_id
                """)).map { (MemberID($0["member_id"]), HLCTimestamp(packed: $0["hlc"])?.wallMs ?? 0) }, uniquingKeysWith: max)
            for row in roots {
                let member = MemberID(row["id"])
                if holdingLots.contains(member) {
                    let standing = try Replica.standing(of: member, programme: programme, asOfMs: now, db)
                    if standing.expiryDue != 0 {
                        let body = OperationBody.pointsExpired(PointsExpired(member: member, points: standing.expiryDue, asOf: today.adding(days: -1).iso))
                        let op = try self.makeHubOperation(body, db)
                        _ = try self.append(op, body, db)
                        report.expiries += 1
                        report.pointsExpired += standing.expiryDue
                    }
                }
                guard issuesCoupons else { continue }
                let group = try Replica.group(of: member, db)
                var active = group.compactMap { lastPurchase[$0] }.max()
                if active == nil, let enrolled = row["enrolled"] as String? { active = Replica.wallMs(ofStampKey: enrolled) }
                let coupons = try RulesEngine.scheduledCoupons(
                    member: member, birthday: row["birthday"], lastActive: calendar.day(ms: active ?? now), today: today, programme: programme)
                    .filter { try Bool.fetchOne(db.cachedStatement(sql: "SELECT NOT EXISTS (SELECT 1 FROM coupons WHERE id = ?)"), arguments: [$0.id]) ?? false }
                if !coupons.isEmpty {
                    let body = OperationBody.couponsIssued(CouponsIssued(coupons: coupons, reason: "scheduled"))
                    let op = try self.makeHubOperation(body, db)
                    _ = try self.append(op, body, db)
                    report.coupons += coupons.count
                }
            }
            return report
        }
    }

    /// Every operation in version order (tests and audits).
    public func log() throws -> [VersionedOperation] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops ORDER BY version")).map { VersionedOperation(version: $0["version"], op: try Operation(row: $0)) }
        }
    }

    // MARK: - Internals

    private func checkOrigins(_ ops: [Operation], _ store: StoreID) throws {
        if let foreign = ops.first(where: { $0.id.origin != store }) {
            throw DomainError(.originMismatch, "store \(store) may push only its own operations, not \(foreign.id)")
        }
    }

    private func touch(_ store: StoreID, _ db: Database) throws {
        try db.cachedStatement(sql: "UPDATE stores SET last_sync_at = ? WHERE id = ?").execute(arguments: [isoNow(), store.rawValue])
    }

    /// Accepts one operation into the log (or recognises a retry), then applies it and checks
    /// what only the hub can see: overdrafts, duplicate refunds, duplicate enrolments.
    private func ingest(_ op: Operation, from store: StoreID, authorized: Bool, _ db: Database) throws -> PushResult {
        if let version = try Int64.fetchOne(db.cachedStatement(sql: "SELECT version FROM ops WHERE id = ?"), arguments: [op.id.description]) {
            return PushResult(id: op.id, status: .duplicate, version: version)
        }
        if let reason = try String.fetchOne(db.cachedStatement(sql: "SELECT reason FROM rejected WHERE op_id = ?"), arguments: [op.id.description]) {
            return PushResult(id: op.id, status: .rejected, reason: reason)
        }
        func reject(_ reason: String) throws -> PushResult {
            try db.cachedStatement(sql: "INSERT INTO rejected (op_id, store, reason, op, at) VALUES (?, ?, ?, ?, ?)").execute(
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
        try reportClockAhead(op, from: store, db)
        if case .unknown = body { return PushResult(id: op.id, status: .accepted, version: version) }

        switch body {
        case .memberEnrolled(let e):
            try mergeDuplicates(phone: e.phone, db)
        case .memberUpdated(let u):
            if let phone = u.phone, try Replica.roots(withPhone: phone, db).count > 1 {
                try exception("phone_conflict", member: u.member, op: op.id, detail: "phone \(phone) now belongs to more than one member", db)
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
                                  detail: "\(r.of) refunded \(refunded) of \(total) (refunds made offline at different stores)", db)
                }
            }
            for coupon in r.couponsRevoked where try Replica.liveUses(of: coupon, db).count > 1 {
                try exception("coupon_reused", member: r.member, op: op.id,
                              detail: "coupon \(coupon) came with refunded recharge \(r.of) and had already been used", db)
            }
        case .purchase(let p):
            if let coupon = p.coupon {
                let uses = try Replica.liveUses(of: coupon, db)
                if uses.count > 1 {
                    try exception("coupon_reused", member: p.member, op: op.id,
                                  detail: "coupon \(coupon) used by \(uses.joined(separator: ", ")) (redeemed offline at different stores)", db)
                }
            }
        case .operationVoided(let v):
            // The voided spend was already applied here (its authorisation answer was lost):
            // reverse it, entry by entry, with visible operations of the hub's.
            let used = try String.fetchOne(db.cachedStatement(sql: "SELECT coupon FROM coupon_uses WHERE op_id = ?"), arguments: [v.of.description])
            var entries = try Replica.entries(of: v.of, db)
            if entries.isEmpty, used != nil, let member = v.member { entries = [LedgerEntry(member: member)] }
            for (i, e) in entries.enumerated() {
                let reversal = OperationBody.operationReversed(OperationReversed(
                    of: v.of, member: e.member, value: -e.value, bonus: -e.bonus, points: -e.points,
                    pointsExpireOn: e.lot?.iso, qualifying: -e.qualifying, coupon: i == 0 ? used : nil))
                let hubOp = try makeHubOperation(reversal, db)
                _ = try append(hubOp, reversal, db)
                try exception("reversal", member: e.member, op: hubOp.id, detail: "\(v.of) was voided by its store after the hub applied it; reversed", db)
                try checkOverdraft(reversal, hubOp.id, note: "after reversing \(v.of)", db)
            }
        default:
            break
        }
        try settleOverExpiry(body, db)
        try checkOverdraft(body, op.id, note: authorized ? "after a spend the hub authorised at \(store)" : "after \(op.kind) from \(store)", db)
        return PushResult(id: op.id, status: .accepted, version: version)
    }

    /// An operation stamped well ahead of the hub's clock is accepted (it may carry money a till
    /// was told about) but reported, at most once an hour per store: its stamp would win profile
    /// edits and date its points until the store's clock is fixed. The hub's own clock never
    /// follows it beyond the bounded drift (§2).
    private func reportClockAhead(_ op: Operation, from store: StoreID, _ db: Database) throws {
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
                      detail: "store \(store)'s clock is \(ahead / 60_000) minutes ahead of the hub's; fix its time (NTP)", db)
    }

    static let clockAheadReportMs: Int64 = 5 * 60 * 1000

    /// A spend of points stamped before an expiry the hub has already recorded (made offline,
    /// arriving late) means that expiry took points the member had spent: give them back at
    /// once, with a visible operation, rather than report a false overdraft.
    private func settleOverExpiry(_ body: OperationBody, _ db: Database) throws {
        for case .ledger(let e) in body.effects where e.points < 0 && e.lot == nil && e.expired == 0 {
            let root = try Replica.root(of: e.member, db)
            guard try Int64.fetchOne(db.cachedStatement(sql: """
                WITH RECURSIVE grp(id) AS (VALUES (?) UNION SELECT merges.from_id FROM merges JOIN grp ON merges.into_id = grp.id)
                SELECT COALESCE(SUM(expired), 0) FROM entries WHERE member_id IN (SELECT id FROM grp)
                """), arguments: [root.rawValue]) ?? 0 > 0 else { continue }
            let programme = try Replica.programme(db)
            let standing = try Replica.standing(of: root, programme: programme, asOfMs: physicalMs(), db)
            if standing.expiryDue < 0 {
                let today = programme.calendar.day(ms: physicalMs())
                let giveBack = OperationBody.pointsExpired(PointsExpired(member: root, points: standing.expiryDue, asOf: today.adding(days: -1).iso))
                _ = try append(try makeHubOperation(giveBack, db), giveBack, db)
            }
        }
    }

    /// Any operation that takes value or points from a member (an offline spend, a refund that
    /// takes back earned points, a reversal) may leave the member below zero: head office is told.
    private func checkOverdraft(_ body: OperationBody, _ op: OperationID, note: String, _ db: Database) throws {
        for case .ledger(let e) in body.effects where e.value < 0 || e.bonus < 0 || e.points < 0 {
            let member = e.member
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
        try db.cachedStatement(sql: """
            INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [op.id.description, op.id.origin.rawValue, op.id.seq, op.hlc.packed, op.kind, op.kindVersion,
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
        let seq = (try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(seq), 0) FROM ops WHERE origin = 'hub'")) ?? 0) + 1
        let hlc = clock.withLock { $0.tick(physicalMs: physicalMs()) }
        return Operation(id: OperationID(origin: .hub, seq: UInt64(seq)), hlc: hlc, body: body)
    }

    private func exception(_ kind: String, member: MemberID?, op: OperationID?, detail: String, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO exceptions (kind, member_id, op_id, detail, at) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [kind, member?.rawValue, op?.description, detail, isoNow()])
    }
}
