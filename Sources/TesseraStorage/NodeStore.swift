import Foundation
import GRDB
import Synchronization
import TesseraCore
import TesseraProtocol

/// A spend (or a refund that takes value back) written to disk before the hub is asked, so its
/// id is never reused whatever happens next.
public struct PendingSpend: Sendable {
    public var op: Operation
    public var body: OperationBody
    public var debit: Debit
}

public enum SpendStep: Sendable {
    case answered(TillAnswer)
    case authorize(PendingSpend)
}

/// What came of asking the hub.
public enum AuthorizationOutcome: Sendable {
    case accepted(version: Int64, prior: [PushResult])
    case refused(ErrorCode, String, prior: [PushResult])
    /// No answer (refused connection, timeout, 5xx): the hub may or may not have applied it.
    case unreachable
}

/// A store node's SQLite replica: the operation log with its outbox, the folded state, and the
/// till's intent-named writes. Every write is one transaction on a `synchronous=FULL` WAL
/// database: when a method returns, the operation and its effects are on disk together.
public final class NodeStore: Sendable {
    public let pool: DatabasePool
    public let store: StoreID
    public let offlinePolicy: OfflineSpendPolicy
    private let clock: Mutex<HybridLogicalClock>
    private let physicalMs: @Sendable () -> Int64
    private let committer: GroupCommit
    /// Tests only: when above zero, the sync loop's writes commit after every so many items,
    /// whether a till waits or not (`writeGivingWay`).
    let splitSyncWritesEvery = Atomic<Int>(0)
    /// Tests only: called after each item the sync loop's writes write, inside the transaction
    /// (a test makes a till write wait there, as one arriving mid-page would).
    let afterSyncItem = Mutex<(@Sendable () -> Void)?>(nil)
    /// Set once a till write has found the chain loaded (it is never unloaded).
    private let bootstrapSeen = Atomic<Bool>(false)

    public static func wallClockMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The node's schema: the replica's tables and the node's own, in the order every node file
    /// (and every snapshot file a hub makes for nodes, §6.4) runs them.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        Replica.migrate(&migrator)
        migrator.registerMigration("node-v1") { db in
            try db.execute(sql: """
                CREATE TABLE ops (
                    id TEXT PRIMARY KEY NOT NULL,
                    origin TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq > 0),
                    hlc INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    kind_version INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    member_id TEXT,
                    status TEXT NOT NULL CHECK (status IN ('pending', 'acked', 'authorizing', 'refused', 'voided', 'rejected')),
                    version INTEGER,
                    offline_minor INTEGER NOT NULL DEFAULT 0 CHECK (offline_minor >= 0),
                    day INTEGER,
                    reason TEXT,
                    UNIQUE (origin, seq)
                );
                CREATE INDEX ops_status ON ops(status, seq);
                CREATE INDEX ops_member ON ops(member_id);
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE idempotency (
                    key TEXT PRIMARY KEY NOT NULL,
                    fingerprint TEXT NOT NULL,
                    status INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    created_at TEXT NOT NULL
                );
                """)
        }
        Replica.migrateLater(&migrator)
        // Operations by status, for those not acknowledged only (the outbox, the ones being
        // authorised, the rejected): every operation pulled from the hub is acknowledged, and
        // keeping it in this index was one of the five B-trees each pulled operation's row
        // went into. SQLite uses a partial index only for a query that says the index's own
        // condition, so each query by status also says `status <> 'acked'`.
        migrator.registerMigration("node-v2-ops-status-unacked") { db in
            try db.execute(sql: """
                DROP INDEX ops_status;
                CREATE INDEX ops_status ON ops(status, seq) WHERE status <> 'acked';
                """)
        }
        // The operations' table made again, the same rows (rowids kept) with two things less:
        // - The check on `status` is a chain of comparisons instead of `IN` a list: SQLite
        //   builds a list of more than two values into a temporary B-tree each time a statement
        //   runs, so every insert of an operation (a sale, each one pulled) and every change of
        //   its status opened, filled and closed one.
        // - No unique index on (origin, seq): the id is "origin:seq" (`OperationID`), and its
        //   own unique index already refuses the same operation twice. Nothing looks operations
        //   up by (origin, seq) here; that index was one more B-tree per row.
        // - No index of every operation by member: a node reads operations by member only for
        //   its offline spends of a day (`offlineSpent`, which this partial index serves) and its
        //   outbox (by status). Every pulled operation and every sale went into it.
        migrator.registerMigration("node-v3-ops-lean") { db in
            try db.execute(sql: """
                CREATE TABLE ops_v3 (
                    id TEXT PRIMARY KEY NOT NULL,
                    origin TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq > 0),
                    hlc INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    kind_version INTEGER NOT NULL,
                    body TEXT NOT NULL,
                    member_id TEXT,
                    status TEXT NOT NULL CHECK (status = 'pending' OR status = 'acked' OR status = 'authorizing'
                                                OR status = 'refused' OR status = 'voided' OR status = 'rejected'),
                    version INTEGER,
                    offline_minor INTEGER NOT NULL DEFAULT 0 CHECK (offline_minor >= 0),
                    day INTEGER,
                    reason TEXT
                );
                INSERT INTO ops_v3 (rowid, id, origin, seq, hlc, kind, kind_version, body, member_id, status, version, offline_minor, day, reason)
                    SELECT rowid, id, origin, seq, hlc, kind, kind_version, body, member_id, status, version, offline_minor, day, reason
                    FROM ops ORDER BY rowid;
                DROP TABLE ops;
                ALTER TABLE ops_v3 RENAME TO ops;
                CREATE INDEX ops_status ON ops(status, seq) WHERE status <> 'acked';
                CREATE INDEX ops_offline ON ops(member_id, day) WHERE day IS NOT NULL;
                """)
        }
        return migrator
    }

    public init(path: String, store: StoreID, offlinePolicy: OfflineSpendPolicy = OfflineSpendPolicy(),
                physicalMs: @escaping @Sendable () -> Int64 = NodeStore.wallClockMs) throws {
        self.pool = try SQLiteFiles.openPool(path: path)
        self.committer = GroupCommit(pool: pool)
        self.store = store
        self.offlinePolicy = offlinePolicy
        self.physicalMs = physicalMs
        try Self.migrator.migrate(pool)
        let start = try pool.write { db -> HLCTimestamp in
            if let owner = try Meta.get("store", db) {
                guard owner == store.rawValue else {
                    throw DomainError(.forbidden, "this data folder belongs to store '\(owner)', not '\(store.rawValue)'")
                }
            } else {
                try Meta.set("store", store.rawValue, db)
            }
            try Replica.applyNewlyKnownKinds(db)
            let maxOp = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(hlc) FROM ops")) ?? 0
            let saved = try Meta.get("hlc", db).flatMap { Int64($0) } ?? 0
            return HLCTimestamp(packed: max(maxOp, saved)) ?? .zero
        }
        // Resume after the latest timestamp on disk, unless it lies implausibly far ahead (a
        // damaged row, a clock that was once set years ahead): that must not drag every future
        // operation's clock with it.
        var clock = HybridLogicalClock()
        clock.observe(start, physicalMs: physicalMs())
        self.clock = Mutex(clock)
    }

    // MARK: - Till writes

    public func enrol(_ req: NodeAPI.Enrol, key: IdempotencyKey?) throws -> TillAnswer {
        let name = try Validate.name(req.name)
        let phone = try Validate.phone(req.phone)
        let birthday = try req.birthday.map { v throws(DomainError) in try Validate.birthday(v) }
        let card = try req.card.map { v throws(DomainError) in try Validate.card(v) }
        return try write(key) { db in
            if let taken = try Replica.roots(withPhone: phone, db).first {
                throw DomainError(.phoneTaken, "phone already belongs to member \(taken.0)")
            }
            if let referrer = req.referrer, try !Replica.isEnrolled(try Replica.root(of: referrer, db), db) {
                throw DomainError(.invalidRequest, "referrer \(referrer) is not a known member")
            }
            if let card, try Replica.card(card, db) != nil {
                throw DomainError(.cardTaken, "card \(card) is already issued")
            }
            let referrer = try req.referrer.map { try Replica.root(of: $0, db) }
            let (op, body) = try self.makeOperation(db) { id, context in
                let member = MemberID(enrolment: id)
                let rewards = RulesEngine.enrolment(member: member, referrer: referrer, op: id, context)
                return .memberEnrolled(MemberEnrolled(
                    member: member, card: card ?? CardNumber(issuedBy: self.store, seq: id.seq),
                    name: name, phone: phone, birthday: birthday, referrer: referrer,
                    referralPoints: rewards.referralPoints, pointsExpireOn: rewards.pointsExpireOn, coupons: rewards.coupons,
                    rulesVersion: context.programme.version))
            }
            try self.record(op, body, status: "pending", db)
            guard let member = body.member else { preconditionFailure("an enrolment names its member") }
            return try .json(201, try self.view(member, db))
        }
    }

    public func update(_ member: MemberID, _ req: NodeAPI.Update, key: IdempotencyKey?) throws -> TillAnswer {
        let name = try req.name.map { v throws(DomainError) in try Validate.name(v) }
        let phone = try req.phone.map { v throws(DomainError) in try Validate.phone(v) }
        let birthday = try req.birthday.map { v throws(DomainError) in try Validate.birthday(v) }
        guard name != nil || phone != nil || birthday != nil else {
            throw DomainError(.invalidRequest, "give at least one of name, phone, birthday")
        }
        return try write(key) { db in
            let root = try self.enrolledRoot(member, db)
            if let phone, let other = try Replica.roots(withPhone: phone, db).first(where: { $0.0 != root }) {
                throw DomainError(.phoneTaken, "phone already belongs to member \(other.0)")
            }
            let (op, body) = try self.makeOperation(db) { _, _ in
                .memberUpdated(MemberUpdated(member: root, name: name, phone: phone, birthday: birthday))
            }
            try self.record(op, body, status: "pending", db)
            return try .json(200, try self.view(member, db))
        }
    }

    public func recharge(_ member: MemberID, _ req: NodeAPI.Recharge, key: IdempotencyKey?) throws -> TillAnswer {
        try Validate.amount(req.amount)
        return try write(key) { db in
            let root = try self.enrolledRoot(member, db)
            let (op, body) = try self.makeOperation(db) { id, context in
                try self.leased(.valueRecharged(RulesEngine.recharge(amount: req.amount, member: root, op: id, context)), context, db)
            }
            try self.record(op, body, status: "pending", db)
            return try .json(201, NodeAPI.TransactionResult(
                transaction: Self.transaction(op, body, authorization: .none), member: try self.view(member, db)))
        }
    }

    public func blockCard(_ card: CardNumber, key: IdempotencyKey?) throws -> TillAnswer {
        try write(key) { db in
            guard let record = try Replica.card(card, db), let owner = record.member else {
                throw DomainError(.notFound, "no card \(card)")
            }
            if !record.blocked {
                let (op, body) = try self.makeOperation(db) { _, _ in .cardBlocked(CardBlocked(card: card, member: owner)) }
                try self.record(op, body, status: "pending", db)
            }
            return try .json(200, try self.view(owner, db))
        }
    }

    /// A replacement card: the member's current card, if any, is blocked by it.
    public func issueCard(_ member: MemberID, _ req: NodeAPI.NewCard, key: IdempotencyKey?) throws -> TillAnswer {
        let card = try req.card.map { v throws(DomainError) in try Validate.card(v) }
        return try write(key) { db in
            let root = try self.enrolledRoot(member, db)
            if let card, try Replica.card(card, db) != nil {
                throw DomainError(.cardTaken, "card \(card) is already issued")
            }
            let current = try Replica.currentCard(of: root, db)
            let (op, body) = try self.makeOperation(db) { id, _ in
                .cardIssued(CardIssued(member: root, card: card ?? CardNumber(issuedBy: self.store, seq: id.seq), replaces: current))
            }
            try self.record(op, body, status: "pending", db)
            return try .json(201, try self.view(member, db))
        }
    }

    public func beginPurchase(_ member: MemberID, _ req: NodeAPI.PurchaseRequest, key: IdempotencyKey?) throws -> SpendStep {
        let terms = try Self.terms(req)
        return try begin(key) { db, context, before in
            let purchase = try self.price(member, terms, context, db, before: &before)
            if let quote = req.quote, quote != (try Self.quoteHash(purchase)) {
                throw DomainError(.quoteChanged, "the sale no longer prices as quoted (rules version \(purchase.rulesVersion), points \(purchase.pointsEarned), discount \(purchase.discount + purchase.couponDiscount), cash due \(purchase.cashDue)); quote again")
            }
            return .purchase(purchase)
        }
    }

    /// Prices a sale without recording anything: what `purchase` would record now.
    public func quote(_ member: MemberID, _ req: NodeAPI.PurchaseRequest) throws -> NodeAPI.Quote {
        let terms = try Self.terms(req)
        return try pool.read { db in
            try self.requireBootstrapped(db)
            let context = TillContext(store: self.store, atMs: self.nowMs(), programme: try Replica.programme(db))
            var before: Replica.StandingInputs?
            let purchase = try self.price(member, terms, context, db, before: &before)
            return NodeAPI.Quote(quote: try Self.quoteHash(purchase), purchase: purchase)
        }
    }

    static func terms(_ req: NodeAPI.PurchaseRequest) throws -> PurchaseTerms {
        try Validate.amount(req.amount)
        let redeem = req.redeemPoints ?? 0
        try Validate.points(redeem, "redeem_points")
        if let coupon = req.coupon, coupon.isEmpty || coupon.count > 200 {
            throw DomainError(.invalidRequest, "coupon must be a coupon id of 1 to 200 characters")
        }
        if let memberAmount = req.memberAmount { try Validate.amount(memberAmount, "member_amount") }
        return PurchaseTerms(amount: req.amount, payFromBalance: req.payFromBalance ?? false, redeemPoints: redeem, coupon: req.coupon,
                             memberAmount: req.memberAmount)
    }

    /// A quote names its pricing by a hash of the body it would record.
    static func quoteHash(_ purchase: Purchase) throws -> String {
        "q1-" + Tokens.hash(try JSONText.encode(purchase)).prefix(32)
    }

    /// - Parameter before: what the member's standing was derived from, for the sale's answer.
    private func price(_ member: MemberID, _ terms: PurchaseTerms, _ context: TillContext, _ db: Database,
                       before: inout Replica.StandingInputs?) throws -> Purchase {
        let root = try enrolledRoot(member, db)
        let inputs = try Replica.standingInputs(of: root, programme: context.programme, asOfMs: context.atMs, db)
        before = inputs
        let standing = inputs.standing(context.programme, asOfMs: context.atMs)
        var referral: ReferralLink?
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT referrer, enrolled FROM members WHERE id = ?"), arguments: [root.rawValue]),
           let referrer = row["referrer"] as String?, let enrolled = row["enrolled"] as String?, let ms = Replica.wallMs(ofStampKey: enrolled) {
            referral = ReferralLink(referrer: try Replica.root(of: MemberID(referrer), db), enrolledAtMs: ms)
        }
        return try RulesEngine.price(terms, member: root, standing: standing, referral: referral, context)
    }


    /// Reverses exactly what a purchase or a recharge did, in full or in part (`amount` of the
    /// original amount), whichever store made it (as long as this node holds it).
    public func beginRefund(_ txn: OperationID, _ req: NodeAPI.RefundRequest = NodeAPI.RefundRequest(), key: IdempotencyKey?) throws -> SpendStep {
        if let amount = req.amount { try Validate.amount(amount) }
        return try begin(key) { db, _, _ in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM ops WHERE id = ?"), arguments: [txn.description]) else {
                throw DomainError(.notFound, "no transaction \(txn) at this store")
            }
            let status: String = row["status"]
            guard status == "pending" || status == "acked" else {
                throw DomainError(.notRefundable, "transaction \(txn) never took effect")
            }
            let original = try Operation(row: row)
            let refunded = try Replica.refundedAmount(txn, db)
            switch try original.decoded() {
            case .purchase(let p):
                let root = try Replica.root(of: p.member, db)
                return .refund(try RulesEngine.refund(p, of: txn, member: root, refundedSoFar: refunded, amount: req.amount))
            case .valueRecharged(let r):
                let root = try Replica.root(of: r.member, db)
                return .refund(try RulesEngine.refund(r, of: txn, member: root, refundedSoFar: refunded, amount: req.amount))
            case .refund:
                throw DomainError(.notRefundable, "\(txn) is itself a refund and cannot be refunded; record a new sale instead")
            default:
                throw DomainError(.notRefundable, "only purchases and recharges can be refunded")
            }
        }
    }

    /// Participation points for a named activity of the programme (a review, an event).
    public func awardActivity(_ member: MemberID, _ req: NodeAPI.ActivityRequest, key: IdempotencyKey?) throws -> TillAnswer {
        try write(key) { db in
            let root = try self.enrolledRoot(member, db)
            let (op, body) = try self.makeOperation(db) { _, context in
                .pointsAdjusted(try RulesEngine.activity(req.activity, member: root, context))
            }
            try self.record(op, body, status: "pending", db)
            return try .json(201, try self.view(member, db))
        }
    }

    /// A paid, time-limited membership; the price is paid at the till (cash or bank card).
    public func sellMembership(_ member: MemberID, _ req: NodeAPI.MembershipRequest, key: IdempotencyKey?) throws -> TillAnswer {
        try write(key) { db in
            let root = try self.enrolledRoot(member, db)
            let (op, body) = try self.makeOperation(db) { _, context in
                let standing = try Replica.standing(of: root, programme: context.programme, asOfMs: context.atMs, db)
                return .membershipPurchased(try RulesEngine.membership(req.plan, member: root, standing: standing, context))
            }
            try self.record(op, body, status: "pending", db)
            return try .json(201, try self.view(member, db))
        }
    }

    /// The programme this node prices with now.
    public func programme() throws -> Programme {
        try pool.read { db in try Replica.programme(db) }
    }

    /// Settles a spend after asking the hub. An accepted spend is applied; a refused one never
    /// takes effect; an unanswered one is decided by the offline policy, and if refused, voided
    /// by a new operation so the hub can never apply it later (or reverses it if it did).
    public func finishSpend(_ spend: PendingSpend, outcome: AuthorizationOutcome, key: IdempotencyKey?) throws -> TillAnswer {
        try write(key) { db in
            let op = spend.op
            switch outcome {
            case .accepted(_, let prior), .refused(_, _, let prior): try self.recordResults(prior, db)
            case .unreachable: break
            }
            let status = try String.fetchOne(db.cachedStatement(sql: "SELECT status FROM ops WHERE id = ?"), arguments: [op.id.description])
            if status == "voided" {
                // It waited so long that the node voided it (a write that failed, a stuck
                // answer): the till is told it did not happen, and it never will.
                return try .error(DomainError(.voided, "this spend waited too long to be settled and was voided; nothing was taken"))
            }
            guard status == "authorizing" || status == "acked" else {
                preconditionFailure("spend \(op.id) is \(status ?? "missing") while being settled")
            }
            if status == "acked" {
                // A pull already brought the hub's acceptance.
                return try self.spendAnswer(spend, authorization: .hub, db)
            }
            switch outcome {
            case .accepted(let version, _):
                try db.cachedStatement(sql: "UPDATE ops SET status = 'acked', version = ? WHERE id = ?").execute(arguments: [version, op.id.description])
                try Replica.apply(spend.body, of: op, db)
                return try self.spendAnswer(spend, authorization: .hub, db)
            case .refused(let code, let message, _):
                try db.cachedStatement(sql: "UPDATE ops SET status = 'refused', reason = ? WHERE id = ?").execute(
                    arguments: ["\(code.rawValue): \(message)", op.id.description])
                return try .error(DomainError(code, message))
            case .unreachable:
                let member = spend.body.member ?? MemberID("")
                let known = try Replica.standing(of: member, programme: try Replica.programme(db), asOfMs: op.hlc.wallMs, db)
                let day = OfflineSpendPolicy.day(of: op.hlc)
                let spentToday = try self.offlineSpent(member: member, day: day, db)
                // A spend priced under leases may be made offline only within this store's lease
                // (no limit then: nothing it takes can be taken twice); else the v1 daily limit.
                let refusal = if let drawn = spend.body.leaseDrawn {
                    LeasePlan.refusal(spend.debit, drawn: drawn, known: known)
                } else {
                    self.offlinePolicy.decide(spend.debit, known: known, spentToday: spentToday)
                }
                if let refusal {
                    try db.cachedStatement(sql: "UPDATE ops SET status = 'voided', reason = ? WHERE id = ?").execute(
                        arguments: [refusal.description, op.id.description])
                    let (void, voidBody) = try self.makeOperation(db) { _, _ in
                        .operationVoided(OperationVoided(of: op.id, member: member, reason: refusal.code.rawValue))
                    }
                    try self.record(void, voidBody, status: "pending", db)
                    return try .error(refusal)
                }
                let cost = spend.debit.costMinor
                try db.cachedStatement(sql: "UPDATE ops SET status = 'pending', offline_minor = ?, day = ? WHERE id = ?").execute(
                    arguments: [cost, day, op.id.description])
                try Replica.apply(spend.body, of: op, db)
                return try self.spendAnswer(spend, authorization: .offline, db)
            }
        }
    }

    /// The node's unacknowledged operations about the spend's member (and members merged with
    /// it), oldest first: sent along with the authorisation so the hub decides on everything the
    /// node knows. Read only when the hub is actually asked.
    public func prior(for spend: PendingSpend) throws -> [Operation] {
        try pool.read { db in
            let (of, group) = try Replica.members(of: spend.body.member ?? MemberID(""), db)
            return try Row.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM ops WHERE status = 'pending' AND status <> 'acked' AND member_id \(of) ORDER BY seq LIMIT ?
                """), arguments: [group, SyncLimits.pushBatchMax]).map(Operation.init(row:))
        }
    }

    /// After a crash, spends that were waiting for the hub's answer were never answered to a
    /// till: void them so the hub can never apply them later.
    public func voidInterruptedSpends() throws -> Int {
        try voidSpends(reason: "interrupted", olderThanMs: nil)
    }

    /// Spends still waiting to be settled long after any till could still be waiting for them
    /// (the write that settles them failed, on a full disk say): voided like interrupted ones,
    /// so a spend the hub accepted but the till never heard of is reversed, not kept.
    public func voidStaleSpends(olderThanMs age: Int64 = 60_000) throws -> Int {
        try voidSpends(reason: "stale", olderThanMs: age)
    }

    private func voidSpends(reason: String, olderThanMs age: Int64?) throws -> Int {
        let before = age.map { HLCTimestamp(wallMs: max(0, nowMs() - $0), counter: 0).packed }
        // Nothing to do is the common case: read first, so an idle node writes nothing.
        let waiting = try pool.read { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM ops WHERE status = 'authorizing' AND status <> 'acked' AND hlc < ?"),
                             arguments: [before ?? Int64.max]) ?? 0
        }
        guard waiting > 0 else { return 0 }
        return try SQLiteFiles.guarded { try pool.write { db in
            let rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops WHERE status = 'authorizing' AND status <> 'acked' AND hlc < ?"),
                                        arguments: [before ?? Int64.max])
            for row in rows {
                let op = try Operation(row: row)
                try db.cachedStatement(sql: "UPDATE ops SET status = 'voided', reason = ? WHERE id = ?").execute(arguments: [reason, op.id.description])
                let (void, body) = try self.makeOperation(db) { _, _ in
                    .operationVoided(OperationVoided(of: op.id, member: (try? op.decoded())?.member, reason: reason))
                }
                try self.record(void, body, status: "pending", db)
            }
            return rows.count
        } }
    }

    // MARK: - Till reads

    public func member(_ id: MemberID) throws -> MemberView {
        try pool.read { db in try self.view(id, db) }
    }

    public func member(card: CardNumber) throws -> MemberView {
        try pool.read { db in
            guard let record = try Replica.card(card, db), let owner = record.member else {
                throw DomainError(.notFound, "no card \(card)")
            }
            guard !record.blocked else { throw DomainError(.cardBlocked, "card \(card) is blocked") }
            return try self.view(owner, db)
        }
    }

    public func member(phone: String) throws -> MemberView {
        let phone = try Validate.phone(phone)
        return try pool.read { db in
            guard let root = try Replica.roots(withPhone: phone, db).first else { throw DomainError(.notFound, "no member with that phone") }
            return try self.view(root.0, db)
        }
    }

    /// What this store may take from the member offline now (`GET /v1/members/{id}/offline`).
    public func offlineAllowance(_ member: MemberID) throws -> NodeAPI.OfflineAllowance {
        try pool.read { db in
            let root = try self.enrolledRoot(member, db)
            let programme = try Replica.programme(db)
            let now = self.nowMs()
            let standing = try Replica.standing(of: root, programme: programme, asOfMs: now, db)
            let known = Rights(value: max(0, standing.balance), points: max(0, standing.pointsAvailable))
            if let policy = programme.leases {
                let holding = try Replica.leases(of: root, lifetimeMs: policy.lifetimeMs, db)[self.store]
                let lease = try Replica.spendableLease(of: root, at: self.store, policy: policy, atMs: now, db)
                return NodeAPI.OfflineAllowance(member: root, store: self.store, policy: .leases, value: min(lease.value, known.value),
                                                points: min(lease.points, known.points), endsAt: holding.map { isoTime(ms: $0.endsMs) })
            }
            let left = max(0, self.offlinePolicy.limitMinorPerDay - (try self.offlineSpent(member: root, day: now / 86_400_000, db)))
            return NodeAPI.OfflineAllowance(member: root, store: self.store, policy: .dailyLimit, value: min(known.value, left),
                                            points: min(known.points, left), endsAt: nil)
        }
    }

    /// What this store's leases hold, per member (resolved through merges): what it may spend
    /// offline under leases, before their ends.
    public func ownLeases() throws -> [MemberID: Rights] {
        try pool.read { db in try Replica.storeLeases(store, lifetimeMs: 0, db).mapValues(\.rights) }
    }

    /// Every difference between the entry sums the triggers keep and the entries (none: they agree).
    public func entrySumProblems() throws -> [String] {
        try pool.read { db in try Replica.entrySumProblems(db) }
    }

    /// Every member's view, as of `asOfMs` (the node's clock when nil).
    public func allMembers(asOfMs: Int64? = nil) throws -> [MemberView] {
        try pool.read { db in try Replica.allViews(asOfMs: asOfMs ?? self.nowMs(), db) }
    }

    // MARK: - Sync

    public struct Counts: Sendable {
        public var pending: Int
        public var rejected: Int
        public var cursor: Int64
        public var bootstrapped: Bool
    }

    public func counts() throws -> Counts {
        try pool.read { db in
            Counts(pending: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM ops WHERE status = 'pending' AND status <> 'acked'")) ?? 0,
                   rejected: try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM ops WHERE status = 'rejected' AND status <> 'acked'")) ?? 0,
                   cursor: try Meta.get("cursor", db).flatMap { Int64($0) } ?? 0,
                   bootstrapped: try Meta.get("bootstrapped", db) == "1")
        }
    }

    /// The outbox: operations the hub has not acknowledged, oldest first.
    /// An operation this node cannot even read back (a bug, a damaged disk) is set aside as
    /// rejected rather than left to block every operation behind it.
    public func pendingBatch(limit: Int) throws -> [Operation] {
        let rows = try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops WHERE status = 'pending' AND status <> 'acked' ORDER BY seq LIMIT ?"), arguments: [limit])
        }
        var ops: [Operation] = []
        var unreadable: [PushResult] = []
        for row in rows {
            if let op = try? Operation(row: row) {
                ops.append(op)
            } else if let id = OperationID(row["id"] as String) {
                unreadable.append(PushResult(id: id, status: .rejected, reason: "unreadable at the node"))
            }
        }
        if !unreadable.isEmpty { try recordPush(unreadable) }
        return ops
    }

    public func recordPush(_ results: [PushResult]) throws {
        try writeGivingWay(results) { r, db in try self.recordResult(r, db) }
    }

    /// Applies one page of operations from the hub and moves the cursor, in one transaction.
    public func applyPull(_ page: PullResponse) throws {
        // Nothing new: no write, so no disk sync for an idle poll.
        if page.ops.isEmpty, try pool.read({ try Meta.get("cursor", $0) }) == String(page.cursor) { return }
        // Other stores' operations are read (body decoded, text written) before the write: a
        // page of a thousand held the writer, and the tills waiting for it, twice as long
        // doing so inside. The store's own are mostly known already and only learn their
        // version; they are read inside if not.
        let texts = page.bodyTexts.count == page.ops.count ? page.bodyTexts : nil
        let prepared = page.ops.enumerated().map { i, item in
            item.op.id.origin == store ? nil : PulledOperation(item.op, text: texts?[i])
        }
        // The cursor moves with the page's last part: a page cut short (a crash) is pulled
        // again, and applying an operation twice leaves it as applied once.
        try writeGivingWay(Array(zip(page.ops, prepared)), last: { db in
            try Meta.set("cursor", String(page.cursor), db)
            try Meta.set("hlc", String(self.clock.withLock { $0.last.packed }), db)
        }) { pair, db in
            let (item, prepared) = pair
            let op = item.op
            self.clock.withLock { _ = $0.observe(op.hlc, physicalMs: self.physicalMs()) }
            // An operation of ours that is applied here already (pending or acked) only
            // learns its version: a node selling while it syncs pulls back every sale it
            // pushed, and decoding and applying each again was about 5 % of its time. Most
            // learnt it from the push's answer already: those are not written again.
            if op.id.origin == self.store, let known = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT status, version FROM ops WHERE id = ?"), arguments: [op.id.description]),
               let status = known[0] as String?, status == "pending" || status == "acked" {
                if status == "pending" || known[1] as Int64? != item.version {
                    try db.cachedStatement(sql: "UPDATE ops SET status = 'acked', version = ? WHERE id = ?").execute(
                        arguments: [item.version, op.id.description])
                }
                return
            }
            let read = prepared ?? PulledOperation(op)
            let body = read.body
            try db.cachedStatement(sql: """
                INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, status, version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'acked', ?)
                ON CONFLICT(id) DO UPDATE SET status = 'acked', version = excluded.version
                """).execute(arguments: [op.id.description, op.id.origin.rawValue, op.id.seq, op.hlc.packed, op.kind, op.kindVersion,
                                 read.text, body == .unknown ? nil : body.member?.rawValue, item.version])
            // Applying effects is idempotent, so an operation of ours that is already applied
            // is unchanged, and one we had voided or not yet applied now takes effect as at the hub.
            if body != .unknown { try Replica.apply(body, of: op, db) }
        }
    }

    /// Loads a whole snapshot in one transaction.
    public func bootstrap(_ snapshot: Snapshot) throws {
        try pool.write { db in
            guard try Meta.get("bootstrapped", db) != "1" else { return }
            try Replica.importState(snapshot, db)
            try self.finishBootstrap(cursor: snapshot.cursor, originSeq: snapshot.originSeq, maxHLC: snapshot.maxHLC, db)
        }
    }

    /// Where a snapshot file is received, beside the node's database.
    public var snapshotFilePath: String { pool.path + "-snapshot" }

    /// Loads a snapshot file (§6.4) in one transaction and finishes the bootstrap: the node
    /// pulls after the file's cursor. `originSeq`: the store's highest sequence number as the hub
    /// answered it with the file (`Tessera-Origin-Seq`; nil from a hub that puts it in the file).
    /// Throws `SnapshotFile.Unreadable` for a file this build cannot read (the node then loads
    /// the paged snapshot instead). The node takes the whole file as its database when it can
    /// (`SnapshotFile.adopt`), and loads its state tables otherwise. The file is the node's own
    /// copy, received for this load: it is changed, and deleted by the caller after.
    @discardableResult
    public func bootstrap(fromFile path: String, originSeq: UInt64?) throws -> SnapshotFile.Loaded {
        switch try SnapshotFile.adopt(path, originSeq: originSeq, into: pool, finish: { info, originSeq, db in
            try self.finishBootstrap(cursor: info.cursor, originSeq: originSeq, maxHLC: info.maxHLC, db)
        }) {
        case .alreadyBootstrapped:
            return SnapshotFile.Loaded(rows: 0, wholeFile: false)
        case .adopted(let rows):
            SQLiteFiles.checkpointAside(pool.path)
            return SnapshotFile.Loaded(rows: rows, wholeFile: true)
        case .notAdoptable:
            break
        }
        // A file of another schema (another build's hub), or a node with something of its own:
        // the state tables are loaded by name instead.
        let rows = try pool.writeWithoutTransaction { db -> Int64 in
            guard try Meta.get("bootstrapped", db) != "1" else { return 0 }
            try SnapshotFile.attach(path, db)
            defer { try? db.execute(sql: "DETACH DATABASE snapshot") }
            let cache = try Int.fetchOne(db, sql: "PRAGMA main.cache_size") ?? -2000
            let threads = try Int.fetchOne(db, sql: "PRAGMA threads") ?? 0
            try SnapshotFile.sortingPragmas(db)
            defer {
                try? db.execute(sql: "PRAGMA main.cache_size = \(cache)")
                try? db.execute(sql: "PRAGMA threads = \(threads)")
            }
            var rows: Int64 = 0
            // The commit would copy the whole load from the log into the database file before it
            // returned (3.5 s at a million members): that copy is made beside, below.
            try SQLiteFiles.withoutAutocheckpoint(db) {
                try SQLiteFiles.guarded {
                    try db.inTransaction {
                        let (info, originSeq) = try SnapshotFile.load(db, originSeq: originSeq)
                        rows = info.rows
                        try self.finishBootstrap(cursor: info.cursor, originSeq: originSeq, maxHLC: info.maxHLC, db)
                        return .commit
                    }
                }
            }
            return rows
        }
        if rows > 0 { SQLiteFiles.checkpointAside(pool.path) }
        return SnapshotFile.Loaded(rows: rows, wholeFile: false)
    }

    /// A paged bootstrap, first page: clears what an interrupted bootstrap left, loads the
    /// page, and keeps its cursor (the one the node pulls after) until `finishBootstrap`.
    public func beginBootstrap(_ first: Snapshot) throws {
        try pool.write { db in
            guard try Meta.get("bootstrapped", db) != "1" else { return }
            try Replica.clearState(db)
            try Replica.importState(first, db)
            try Meta.set("bootstrap_cursor", String(first.cursor), db)
            try Meta.set("bootstrap_origin_seq", String(first.originSeq), db)
            try Meta.set("bootstrap_hlc", String(first.maxHLC.packed), db)
        }
    }

    /// A paged bootstrap, every later page, each in its own transaction.
    public func importSnapshotPage(_ page: Snapshot) throws {
        try pool.write { db in
            guard try Meta.get("bootstrapped", db) != "1" else { return }
            guard try Meta.get("bootstrap_cursor", db) != nil else {
                throw DomainError(.invalidRequest, "a snapshot page before the first one")
            }
            try Replica.importState(page, db)
            // Later pages may hold newer stamps: the clock starts after the newest seen.
            let seen = try Meta.get("bootstrap_hlc", db).flatMap { Int64($0) } ?? 0
            try Meta.set("bootstrap_hlc", String(max(seen, page.maxHLC.packed)), db)
        }
    }

    /// A paged bootstrap, done: the node pulls after the first page's cursor and serves tills.
    public func finishBootstrap() throws {
        try pool.write { db in
            guard try Meta.get("bootstrapped", db) != "1" else { return }
            guard let cursor = try Meta.get("bootstrap_cursor", db).flatMap({ Int64($0) }),
                  let originSeq = try Meta.get("bootstrap_origin_seq", db).flatMap({ UInt64($0) }),
                  let hlc = try Meta.get("bootstrap_hlc", db).flatMap({ Int64($0) }).flatMap(HLCTimestamp.init(packed:)) else {
                throw DomainError(.invalidRequest, "no snapshot page was loaded")
            }
            try self.finishBootstrap(cursor: cursor, originSeq: originSeq, maxHLC: hlc, db)
        }
    }

    private func finishBootstrap(cursor: Int64, originSeq: UInt64, maxHLC: HLCTimestamp, _ db: Database) throws {
        let lastSeq = try Meta.get("last_seq", db).flatMap { UInt64($0) } ?? 0
        try Meta.set("last_seq", String(max(lastSeq, originSeq)), db)
        try Meta.set("cursor", String(cursor), db)
        try Meta.set("bootstrapped", "1", db)
        clock.withLock { _ = $0.observe(maxHLC, physicalMs: self.physicalMs()) }
        try Meta.set("hlc", String(clock.withLock { $0.last.packed }), db)
    }

    // MARK: - Internals

    /// Runs `call` (one of this store's till writes) with the group commit: writes that arrive
    /// together share one transaction and one disk sync, and each returns once it is durable.
    /// The HTTP layer writes through this; in-process callers may call the writes directly.
    public func committing<T: Sendable>(_ call: @escaping @Sendable () throws -> T) async throws -> T {
        try await committer.run(call)
    }

    /// Tests only: queues a till write at once, on the caller's thread (`committing` needs a
    /// task to run first, which a loaded test run may not schedule for a long time); `done`
    /// hears its answer once it is committed.
    func enqueueTillWrite<T>(_ call: @escaping () throws -> T, done: @escaping (Result<T, any Error>) -> Void) {
        committer.enqueue(call, done: done)
    }

    /// The group commit's commits so far and the till writes they carried.
    public var groupCommits: (batches: Int, writes: Int) { committer.counts }

    /// Whether a till write waits for the writer (the sync loop's writes give way to it).
    var tillWriteWaiting: Bool { committer.hasWaiting }

    /// The sync loop's write parts that took waiting till writes along into their commit.
    var tillWritesRiddenAlong: Int { committer.ridesAlong }

    /// One transaction for a till write: called by the group commit, a savepoint of its batch
    /// (a write that fails is undone alone); called anywhere else, a transaction of its own.
    /// The programme in force is read once per write (`WriteMemo`): a sale read and looked it
    /// up twice, to price and again for its answer.
    private func transact<T>(_ body: (Database) throws -> T) throws -> T {
        guard let db = committer.current else {
            return try SQLiteFiles.guarded { try pool.write { db in try WriteMemo.remembering(db) { try body(db) } } }
        }
        return try SQLiteFiles.guarded { try GroupCommit.inSavepoint(db) { try WriteMemo.remembering(db) { try body(db) } } }
    }

    /// Runs a till write in one transaction, answering a retried idempotency key from disk.
    private func write(_ key: IdempotencyKey?, _ body: @escaping (Database) throws -> TillAnswer) throws -> TillAnswer {
        try transact { db in
            if let stored = try self.replay(key, db) { return stored }
            try self.requireBootstrapped(db)
            let answer = try body(db)
            try self.remember(key, answer, db)
            return answer
        }
    }

    /// - Parameter build: makes the body; it may leave what the member's standing was derived
    ///   from before it (read to price it), so that the answer need not read it again.
    private func begin(_ key: IdempotencyKey?,
                       _ build: @escaping (Database, TillContext, inout Replica.StandingInputs?) throws -> OperationBody) throws -> SpendStep {
        try transact { db in
            if let stored = try self.replay(key, db) { return .answered(stored) }
            try self.requireBootstrapped(db)
            var before: Replica.StandingInputs?
            var programme: Programme?
            let (op, body) = try self.makeOperation(db) { _, context in
                programme = context.programme
                return try self.leased(try build(db, context, &before), context, db)
            }
            let debit = body.debit
            // The member's standing after the spend, from before it and the spend's own effects.
            let after: (inputs: Replica.StandingInputs, programme: Programme)? =
                if let before, let programme, before.root == body.member,
                   let inputs = before.applying(body, op: op.id, atMs: op.hlc.wallMs, programme: programme) {
                    (inputs, programme)
                } else {
                    nil
                }
            if debit.isZero {
                try self.record(op, body, status: "pending", db)
                let answer = try self.spendAnswer(PendingSpend(op: op, body: body, debit: debit), authorization: .none, after: after, db)
                try self.remember(key, answer, db)
                return .answered(answer)
            }
            // Under leases, a spend this store's lease covers is the store's to allow, online or
            // not: no round trip to the hub (the lease is rights no other store holds). A coupon
            // still goes to the hub, which alone sees every use of it.
            if let drawn = body.leaseDrawn, debit.coupon == nil, let member = body.member, let programme,
               LeasePlan.refusal(debit, drawn: drawn,
                                 known: try before.flatMap { $0.root == member ? $0.standing(programme, asOfMs: op.hlc.wallMs) : nil }
                                    ?? Replica.standing(of: member, programme: programme, asOfMs: op.hlc.wallMs, db)) == nil {
                try self.record(op, body, status: "pending", db)
                let answer = try self.spendAnswer(PendingSpend(op: op, body: body, debit: debit), authorization: .lease, after: after, db)
                try self.remember(key, answer, db)
                return .answered(answer)
            }
            // Durable before the hub hears of it: the id is never reused, whatever happens next.
            try self.record(op, body, status: "authorizing", apply: false, db)
            return .authorize(PendingSpend(op: op, body: body, debit: debit))
        }
    }

    private func replay(_ key: IdempotencyKey?, _ db: Database) throws -> TillAnswer? {
        guard let key else { return nil }
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT fingerprint, status, body FROM idempotency WHERE key = ?"), arguments: [key.key])
        else { return nil }
        guard row["fingerprint"] == key.fingerprint else {
            throw DomainError(.idempotencyKeyReused, "this Idempotency-Key was used for a different request")
        }
        return TillAnswer(status: row["status"], body: row["body"])
    }

    private func remember(_ key: IdempotencyKey?, _ answer: TillAnswer, _ db: Database) throws {
        guard let key else { return }
        try db.cachedStatement(sql: "INSERT INTO idempotency (key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?)").execute(
            arguments: [key.key, key.fingerprint, answer.status, answer.body, isoNow()])
    }

    /// Once loaded, a node stays loaded: that is read from disk until it is seen once.
    private func requireBootstrapped(_ db: Database) throws {
        if bootstrapSeen.load(ordering: .relaxed) { return }
        guard try Meta.get("bootstrapped", db) == "1" else {
            throw DomainError(.bootstrapping, "this node has not loaded the chain from the hub yet; it needs the hub once, at its first start")
        }
        bootstrapSeen.store(true, ordering: .relaxed)
    }

    /// Makes the node's next operation. The body is built under the rules the node holds now,
    /// at the operation's own time, so the recorded numbers match the recorded version.
    private func makeOperation(_ db: Database, _ build: (OperationID, TillContext) throws -> OperationBody) throws -> (Operation, OperationBody) {
        let seq = (try Meta.get("last_seq", db).flatMap { UInt64($0) } ?? 0) + 1
        try Meta.set("last_seq", String(seq), db)
        // The clock is not written here: the operation's row holds its stamp, and a restart
        // resumes after the latest stamp on disk, in `meta` or in `ops` (`init`).
        let hlc = clock.withLock { $0.tick(physicalMs: physicalMs()) }
        let id = OperationID(origin: store, seq: seq)
        let context = TillContext(store: store, atMs: hlc.wallMs, programme: try Replica.programme(db))
        let body = try build(id, context)
        return (Operation(id: id, hlc: hlc, body: body), body)
    }

    private func record(_ op: Operation, _ body: OperationBody, status: String, apply: Bool = true, _ db: Database) throws {
        assert(op.id.origin == store, "a node records only its own new operations here")
        try db.cachedStatement(sql: """
            INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, status)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [op.id.description, op.id.origin.rawValue, op.id.seq, op.hlc.packed, op.kind, op.kindVersion,
                             op.body.jsonText, body.member?.rawValue, status])
        if apply { try Replica.apply(body, of: op, db) }
    }

    private func recordResults(_ results: [PushResult], _ db: Database) throws {
        for r in results { try recordResult(r, db) }
    }

    private func recordResult(_ r: PushResult, _ db: Database) throws {
        switch r.status {
        case .accepted, .duplicate:
            try db.cachedStatement(sql: "UPDATE ops SET status = 'acked', version = ? WHERE id = ? AND status = 'pending'").execute(
                arguments: [r.version, r.id.description])
        case .rejected:
            // The hub will never hold it: take its ledger entries out so this replica folds
            // the same set as every other; the op stays, marked, and is counted in /v1/status.
            try db.cachedStatement(sql: "UPDATE ops SET status = 'rejected', reason = ? WHERE id = ? AND status = 'pending'").execute(
                arguments: [r.reason, r.id.description])
            if db.changesCount > 0 {
                try db.cachedStatement(sql: "DELETE FROM entries WHERE op_id = ?").execute(arguments: [r.id.description])
                try db.cachedStatement(sql: "DELETE FROM leases WHERE op_id = ?").execute(arguments: [r.id.description])
            }
        }
    }

    /// Writes `items` for the sync loop in transactions that give way to the tills: once a till
    /// write is waiting and this transaction has held the writer for `giveWayAfter`, the waiting
    /// till writes run in it too (each in its savepoint, `GroupCommit.rideAlong`), it commits,
    /// the tills hear their answers, and the rest follows in the next one. A page of a thousand
    /// operations in one transaction held every till behind it for tens of milliseconds (the
    /// tills' p99); committing the part and then letting the tills make a commit of their own
    /// cost each of them a second disk sync. `last` runs in the final transaction (with no
    /// items, in one of its own). Each item must be safe to write again: a crash between the
    /// transactions leaves the rest for the next round.
    private func writeGivingWay<Item>(_ items: [Item], last: ((Database) throws -> Void)? = nil,
                                      _ write: (Item, Database) throws -> Void) throws {
        var next = 0
        let split = splitSyncWritesEvery.load(ordering: .relaxed)
        repeat {
            // Till writes taken along in this part: they hear their answers after its commit.
            var riders: GroupCommit.Riders?
            do {
                try pool.write { db in
                    let began = ContinuousClock.now
                    var written = 0
                    let afterItem = afterSyncItem.withLock { $0 }
                    while next < items.count {
                        try write(items[next], db)
                        next += 1
                        written += 1
                        afterItem?()
                        guard next < items.count else { break }
                        if split > 0 {
                            if written == split { return }
                        } else if ContinuousClock.now - began >= Self.giveWayAfter && committer.hasWaiting {
                            riders = try committer.rideAlong(db)
                            return
                        }
                    }
                    try last?(db)
                }
            } catch {
                riders?.finish(error)
                throw error
            }
            riders?.finish(nil)
        } while next < items.count
    }

    /// Short: a till waits for the rest of the part and for its commit (the part's pages synced).
    /// Measured with a till selling while its node folds 20,000 operations of another store:
    /// after 1 ms and every 8 items, a sale's p50 was 3.0 to 3.1 ms; after 0.2 ms, at any
    /// item, 2.1 to 2.2 ms (p99 14 against 12 ms).
    static let giveWayAfter = Duration.microseconds(200)

    /// Under leases, the body says how it changes this store's lease of the member: it draws
    /// as much of what it takes as the lease covers (the rest the hub must lend, online), and
    /// what it gives (a recharge, value a refund returns) joins the lease at once.
    private func leased(_ body: OperationBody, _ context: TillContext, _ db: Database) throws -> OperationBody {
        guard let policy = context.programme.leases, let member = body.member else { return body }
        func lease() throws -> Rights { try Replica.spendableLease(of: member, at: store, policy: policy, atMs: context.atMs, db) }
        switch body {
        case .purchase(var p):
            // Points the sale earns join the lease too: a refund here can take them back from it.
            let drawn = LeasePlan.drawn(value: p.valueSpent, points: p.pointsRedeemed, lease: try lease())
            p.leaseValue = -drawn.value
            p.leasePoints = p.pointsEarned - drawn.points
            return .purchase(p)
        case .refund(var r):
            let held = try lease()
            let moved = r.value + r.bonus
            r.leaseValue = moved >= 0 ? moved : -LeasePlan.drawn(value: -moved, points: 0, lease: held).value
            let net = r.pointsRestored - r.pointsReversed
            if net >= 0 {
                r.leasePoints = net
            } else {
                // Earned points are taken back only as far as this store's lease holds them:
                // the rest the member may already have spent elsewhere, and taking them would
                // overdraw the member. They are the member's to keep.
                let drawn = min(-net, held.points)
                r.pointsReversed = r.pointsRestored + drawn
                r.leasePoints = -drawn
            }
            return .refund(r)
        case .valueRecharged(var v):
            v.leaseValue = v.amount + v.bonus
            return .valueRecharged(v)
        default:
            return body
        }
    }

    /// Gives back, with operations of this store's, the leases it should no longer hold: those
    /// that ended, those the hub recalled (as far as they still hold anything), and all of them
    /// once the chain's programme no longer uses leases. Works offline too: the operations wait
    /// in the outbox, and their arrival is what lets the hub lend the rights again.
    /// Returns how many it wrote.
    @discardableResult
    public func settleLeases() throws -> Int {
        // Read first, so that a node with nothing to give back writes nothing.
        let (due, recalls) = try pool.read { db -> ([MemberID], [MemberID]) in
            guard try Meta.get("bootstrapped", db) == "1" else { return ([], []) }
            let policy = try Replica.programme(db).leases
            let now = self.nowMs()
            let due = try Replica.storeLeases(self.store, lifetimeMs: policy?.lifetimeMs ?? 0, db).filter { _, holding in
                (holding.rights.value > 0 || holding.rights.points > 0) && (policy == nil || now >= holding.endsMs)
            }.map(\.key).sorted()
            return (due, try Replica.openRecalls(to: self.store, db).map(\.member))
        }
        guard !due.isEmpty || !recalls.isEmpty else { return 0 }
        return try SQLiteFiles.guarded { try pool.write { db in
            let policy = try Replica.programme(db).leases
            let now = self.nowMs()
            var written = 0
            var roots: [MemberID] = []
            for member in due + recalls {
                let root = try Replica.root(of: member, db)
                if !roots.contains(root) { roots.append(root) }
            }
            for root in roots {
                let holding = try Replica.leases(of: root, lifetimeMs: policy?.lifetimeMs ?? 0, db)[self.store]
                var held = Rights(value: max(0, holding?.rights.value ?? 0), points: max(0, holding?.rights.points ?? 0))
                func give(_ rights: Rights, _ reason: String, recall: OperationID?) throws {
                    let (op, body) = try self.makeOperation(db) { _, _ in
                        .leaseReturned(LeaseReturned(member: root, store: self.store, value: rights.value, points: rights.points,
                                                     reason: reason, recall: recall))
                    }
                    try self.record(op, body, status: "pending", db)
                    held = held - rights
                    written += 1
                }
                let ended = policy == nil || now >= (holding?.endsMs ?? 0)
                var open = try Replica.openRecalls(to: self.store, members: try Replica.group(of: root, db), db)
                if ended && !held.isZero {
                    try give(held, policy == nil ? "leases_off" : "expired", recall: open.first?.op)
                    if !open.isEmpty { open.removeFirst() }
                }
                for recall in open {
                    // Every recall is answered, with what is still held of it (perhaps nothing).
                    try give(Rights(value: min(recall.rights.value, held.value), points: min(recall.rights.points, held.points)),
                             "recalled", recall: recall.op)
                }
            }
            return written
        } }
    }

    private func offlineSpent(member: MemberID, day: Int64, _ db: Database) throws -> Int64 {
        let (of, group) = try Replica.members(of: member, db)
        return try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT COALESCE(SUM(offline_minor), 0) FROM ops
            WHERE origin = ? AND day = ? AND member_id \(of)
            """), arguments: [store.rawValue, day, group]) ?? 0
    }

    private func enrolledRoot(_ member: MemberID, _ db: Database) throws -> MemberID {
        let root = try Replica.root(of: member, db)
        guard try Replica.isEnrolled(root, db) else { throw DomainError(.notFound, "no member \(member)") }
        return root
    }

    /// The time views and quotes are computed at: the node's clock, never behind its log.
    func nowMs() -> Int64 { max(physicalMs(), clock.withLock { $0.last.wallMs }) }

    private func view(_ member: MemberID, _ db: Database) throws -> MemberView {
        guard let view = try Replica.view(of: member, asOfMs: nowMs(), db) else { throw DomainError(.notFound, "no member \(member)") }
        return view
    }

    /// - Parameter after: what the member's standing is derived from once the spend is
    ///   applied, when known without reading the fold again.
    private func spendAnswer(_ spend: PendingSpend, authorization: NodeAPI.Authorization,
                             after: (inputs: Replica.StandingInputs, programme: Programme)? = nil,
                             _ db: Database) throws -> TillAnswer {
        guard let member = spend.body.member else { preconditionFailure("a spend has a member") }
        let view = try after.flatMap { try self.view(member, after: $0.inputs, programme: $0.programme, db) } ?? self.view(member, db)
        #if DEBUG
        // Debug builds (the tests, the simulation) check every such answer against the fold.
        let folded = try self.view(member, db)
        assert(view == folded, "a spend's answer shows the member as the fold has it: \(view) against \(folded)")
        #endif
        return try .json(201, NodeAPI.TransactionResult(
            transaction: Self.transaction(spend.op, spend.body, authorization: authorization), member: view))
    }

    /// The member's view from its standing's inputs, with the profile and card read from the
    /// fold; nil when the day has turned since they were read (what has ended changes).
    private func view(_ member: MemberID, after inputs: Replica.StandingInputs, programme: Programme,
                      _ db: Database) throws -> MemberView? {
        let now = nowMs()
        guard programme.calendar.day(ms: now) == inputs.today,
              let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT name, phone, birthday FROM members WHERE id = ? AND enrolled IS NOT NULL"),
                                         arguments: [inputs.root.rawValue])
        else { return nil }
        return MemberView(id: member, card: try Replica.currentCard(of: inputs.root, db), name: row["name"], phone: row["phone"],
                          birthday: row["birthday"], standing: inputs.standing(programme, asOfMs: now),
                          mergedInto: inputs.root == member ? nil : inputs.root)
    }

    static func transaction(_ op: Operation, _ body: OperationBody, authorization: NodeAPI.Authorization) -> NodeAPI.Transaction {
        var txn: NodeAPI.Transaction
        switch body {
        case .purchase(let p):
            txn = .init(id: op.id, kind: op.kind, member: p.member, amount: p.amount, valueChange: -p.valueSpent,
                        pointsChange: p.pointsEarned - p.pointsRedeemed, pointsEarned: p.pointsEarned,
                        pointsRedeemed: p.pointsRedeemed, valueSpent: p.valueSpent, refundOf: nil, authorization: authorization)
            txn.cash = p.cashDue
        case .valueRecharged(let r):
            txn = .init(id: op.id, kind: op.kind, member: r.member, amount: r.amount, valueChange: r.amount + r.bonus, pointsChange: 0,
                        pointsEarned: nil, pointsRedeemed: nil, valueSpent: nil, refundOf: nil, authorization: authorization)
        case .refund(let r):
            txn = .init(id: op.id, kind: op.kind, member: r.member, amount: r.amount, valueChange: r.value + r.bonus,
                        pointsChange: r.pointsRestored - r.pointsReversed,
                        pointsEarned: nil, pointsRedeemed: nil, valueSpent: nil, refundOf: r.of, authorization: authorization)
            txn.cash = r.cashBack
        default:
            preconditionFailure("\(op.kind) is not a till transaction")
        }
        txn.receipt = op.body
        return txn
    }
}

/// Small key-value settings of a replica (its store id, cursor, last sequence number).
enum Meta {
    static func get(_ key: String, _ db: Database) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM meta WHERE key = ?"), arguments: [key])
    }
    static func set(_ key: String, _ value: String, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").execute(
            arguments: [key, value])
    }
}

/// A pulled operation as the node stores and applies it: its body read (`unknown` for a kind
/// or version this build cannot read, kept and passed on as it is) and its text as stored.
private struct PulledOperation {
    var body: OperationBody
    var text: String

    /// `text`: the body's text as the hub wrote it in the page, if the page was read from text.
    init(_ op: Operation, text: String? = nil) {
        body = (try? op.decoded()) ?? .unknown
        self.text = text ?? op.body.jsonText
    }
}
