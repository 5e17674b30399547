import Foundation
import GRDB
import Synchronization
import TesseraCore

/// Head office's reports at a chain's size: summary tables in the hub's fold, advanced as each
/// operation is appended (or folded in from PostgreSQL), in log order, in the same transaction.
/// A report then reads a few rows instead of replaying ten million operations.
///
/// - the settlement allocation (`Settlement.apply` over a book kept here): each member's line
///   of lots and debts, every flow (for refunds and reversals to undo, and for head office to
///   see what is behind a number), the pairs per period and each store's totals;
/// - each member's sums (value, bonus, points, the last movement of value);
/// - each member's purchases (how many, the last, spend less refunds);
/// - each store's operations per local day.
///
/// They are caches of folds, never a record: `rebuild` makes them again from the log, which the
/// hub does when they are older than this build's (`version`), and `HubStore.checkSummaries`
/// compares them with a replay (the simulation does, on every seed).
enum HubSummaries {
    /// Raise to have every hub rebuild its summaries from the log when it opens (their meaning changed).
    static let version = "1"

    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("hub-v4-summaries") { db in
            try db.execute(sql: """
                CREATE TABLE settle_lines (
                    member_id TEXT NOT NULL, currency TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY (member_id, currency)
                );
                CREATE TABLE settle_flows (
                    id INTEGER PRIMARY KEY, version INTEGER NOT NULL, period INTEGER NOT NULL, currency TEXT NOT NULL,
                    issuer TEXT NOT NULL, spender TEXT NOT NULL, amount INTEGER NOT NULL, load TEXT NOT NULL, spend TEXT NOT NULL,
                    member_id TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX settle_flows_spend ON settle_flows(spend);
                CREATE INDEX settle_flows_pair ON settle_flows(period, issuer, spender);
                CREATE TABLE settle_pairs (
                    period INTEGER NOT NULL, issuer TEXT NOT NULL, spender TEXT NOT NULL,
                    principal INTEGER NOT NULL DEFAULT 0, bonus INTEGER NOT NULL DEFAULT 0, flows INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (period, issuer, spender)
                );
                CREATE TABLE settle_totals (
                    store TEXT NOT NULL, currency TEXT NOT NULL, held INTEGER NOT NULL DEFAULT 0, owed INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (store, currency)
                );
                CREATE TABLE member_sums (
                    member_id TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL DEFAULT 0, bonus INTEGER NOT NULL DEFAULT 0,
                    points INTEGER NOT NULL DEFAULT 0, value_at_ms INTEGER
                );
                CREATE TABLE member_activity (
                    member_id TEXT PRIMARY KEY NOT NULL, purchases INTEGER NOT NULL DEFAULT 0, last_ms INTEGER,
                    spend INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE store_days (
                    store TEXT NOT NULL, day INTEGER NOT NULL,
                    operations INTEGER NOT NULL DEFAULT 0, enrolments INTEGER NOT NULL DEFAULT 0,
                    recharges INTEGER NOT NULL DEFAULT 0, recharged INTEGER NOT NULL DEFAULT 0,
                    sales INTEGER NOT NULL DEFAULT 0, sold INTEGER NOT NULL DEFAULT 0, spent INTEGER NOT NULL DEFAULT 0,
                    points_earned INTEGER NOT NULL DEFAULT 0, points_redeemed INTEGER NOT NULL DEFAULT 0, refunds INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (store, day)
                );
                CREATE INDEX store_days_day ON store_days(day);
                -- Operations by kind and time: purchases in a window, a kind's few operations.
                CREATE INDEX ops_kind_hlc ON ops(kind, hlc);
                """)
        }
        // Measured at 1M members / 10M operations: points lots by the day they end (who has points
        // expiring soon), flows of a pair in order, and whether a member's sums are an enrolled
        // member's (the points outstanding without a look-up of each member).
        migrator.registerMigration("hub-v5-summaries-at-scale") { db in
            try db.execute(sql: """
                CREATE INDEX entries_lot ON entries(lot) WHERE lot IS NOT NULL;
                DROP INDEX settle_flows_pair;
                CREATE INDEX settle_flows_pair ON settle_flows(period, issuer, spender, id);
                ALTER TABLE member_sums ADD COLUMN enrolled INTEGER NOT NULL DEFAULT 0;
                UPDATE member_sums SET enrolled = 1 WHERE member_id IN (SELECT id FROM members WHERE enrolled IS NOT NULL);
                DROP INDEX IF EXISTS member_sums_value_at;
                """)
        }
    }

    static let tables = ["settle_lines", "settle_flows", "settle_pairs", "settle_totals", "member_sums", "member_activity", "store_days"]

    /// Makes the summaries again from the log when they are not this build's (a new hub's are
    /// empty and current; an upgraded hub's are made once, in one pass over the log).
    static func rebuildIfStale(_ db: Database) throws {
        guard try Meta.get("summaries", db) != version else { return }
        try rebuild(db)
    }

    static func rebuild(_ db: Database) throws {
        try WriteMemo.remembering(db) { try rebuildRemembering(db) }
    }

    private static func rebuildRemembering(_ db: Database) throws {
        try flushCounts(db)
        for table in tables { try db.execute(sql: "DELETE FROM \(table)") }
        try setSetting("settle_period", "1", db)
        try setSetting("summary_zone", try Replica.programme(db).timeZone, db)
        let rows = try Row.fetchCursor(db.makeStatement(sql: "SELECT * FROM ops ORDER BY version"))
        while let row = try rows.next() {
            let op = try Operation(row: row)
            let body = try op.decoded()
            try apply(op, body, version: row["version"], db)
        }
        try Meta.set("summaries", version, db)
    }

    /// Advances the summaries by one operation, just appended to the log at `version` and applied
    /// to the fold (so its entries, merges and voids are there).
    /// - Parameter checkedNotVoided: the caller has just found that no void of `op` is in the
    ///   fold (a push, checked before its append), so the summaries need not look again.
    static func apply(_ op: TesseraCore.Operation, _ body: OperationBody, version: Int64, checkedNotVoided: Bool = false,
                      _ db: Database) throws {
        let opID = op.id.description
        let fields: [String: JSONValue] = if case .object(let f) = op.body { f } else { [:] }
        if op.kind == HubStore.periodClosedKind && op.id.origin == .hub {
            try setSetting("settle_period", String(try period(db) + 1), db)
        }
        var book = FoldBook(db: db, period: try period(db))
        if case .memberMerged(let m) = body {
            let into = try Replica.root(of: m.into, db)
            // The hub merges roots only; the fold now sends `from` to `into`.
            if m.from != into, try Replica.root(of: m.from, db) == into {
                try Settlement.merge(from: m.from, into: into, version: version, to: &book)
            }
        }
        let store = HubStore.movementStore(kind: op.kind, origin: op.id.origin.rawValue, body: fields)
        var of: String?
        if op.kind == OperationKind.refund.rawValue || op.kind == OperationKind.operationReversed.rawValue, case .string(let target)? = fields["of"] {
            of = target
        }
        if case .memberEnrolled(let m) = body {
            try addSums(m.member.rawValue, SumsDelta(enrolled: true), db)
        }
        // The operation's entries, as the fold has just stored them (one for each ledger effect,
        // in order, stamped with the operation's time): from the body, not read back.
        for case .ledger(let entry) in body.effects {
            let member = entry.member
            let value = entry.value, bonus = entry.bonus, points = entry.points
            let moves = value != 0 || bonus != 0
            try addSums(member.rawValue, SumsDelta(value: value, bonus: bonus, points: points, valueAtMs: moves ? op.hlc.wallMs : nil), db)
            guard moves else { continue }
            // Members with no enrolment the hub knows hold nothing anyone can spend (as in their views).
            let root = try Replica.root(of: member, db)
            guard try Replica.isEnrolled(root, db) else { continue }
            try Settlement.apply(Settlement.Movement(version: version, op: opID, store: store, member: member, principal: value, bonus: bonus, of: of),
                                 member: root, to: &book)
        }
        if case .rulesPublished = body { try followZone(through: version, db) }
        // A void takes its operation out of the counts, if that arrived first (and this is the
        // void the fold keeps: a second void of the same operation changes nothing).
        // (A void of itself was never counted: nothing to take out; the guard below leaves it out.)
        if case .operationVoided(let v) = body, v.of != op.id,
           try String.fetchOne(db.cachedStatement(sql: "SELECT by FROM voids WHERE of = ?"), arguments: [v.of.description]) == opID {
            try unwind(v.of.description, through: version, db)
        }
        guard op.id.origin != .hub, try checkedNotVoided || !isVoided(opID, through: version, db) else { return }
        // From the operation in hand: reading its row back (four `json_extract`s of its body) was
        // a quarter of the hub's write time under ingest.
        try count(Counted(origin: op.id.origin.rawValue, kind: op.kind, wallMs: op.hlc.wallMs, member: body.member?.rawValue,
                          amount: integer(fields["amount"]), spent: integer(fields["value_spent"]),
                          earned: integer(fields["points_earned"]), redeemed: integer(fields["points_redeemed"])), sign: 1, db)
        if op.kind == OperationKind.refund.rawValue, let of, let member = body.member,
           try Bool.fetchOne(db.cachedStatement(sql: "SELECT kind = 'purchase' FROM ops WHERE id = ?"), arguments: [of]) == true,
           try !isVoided(of, through: version, db), case .int(let amount)? = fields["amount"] {
            // Under the refund's member, which may not be the sale's (merged since): the groups add up.
            try addActivity(member.rawValue, ActivityDelta(spend: -amount), db)
        }
    }

    private static func period(_ db: Database) throws -> Int64 {
        try settings(db).period
    }

    /// The settlement period and the time zone the summaries count in, as this transaction
    /// sees them. Read from `meta` once per write of the hub's (`WriteMemo`), not for each
    /// operation (twice per operation, they were 9 % of the hub's write time under ingest);
    /// forgotten when that write ends, either way, and whenever they are set. Outside such a
    /// write they are read each time.
    struct Settings: Sendable {
        var period: Int64
        var zone: String
    }

    private static func settings(_ db: Database) throws -> Settings {
        if let known = WriteMemo.values(db)?.settings { return known }
        let read = Settings(period: try Meta.get("settle_period", db).flatMap { Int64($0) } ?? 1,
                            zone: try Meta.get("summary_zone", db) ?? "UTC")
        WriteMemo.update(db) { $0.settings = read }
        return read
    }

    private static func setSetting(_ name: String, _ value: String, _ db: Database) throws {
        try Meta.set(name, value, db)
        WriteMemo.update(db) { $0.settings = nil }
    }

    /// Whether `op` is voided by an operation at `version` or before. Appending, that is any void
    /// the fold holds; a rebuild (one pass over a whole log, its fold complete) must not see the
    /// voids that come later in the log, or it would leave an operation out when it meets it and
    /// take it out again when it meets its void.
    private static func isVoided(_ op: String, through version: Int64, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: """
            SELECT EXISTS (SELECT 1 FROM voids v JOIN ops o ON o.id = v.by WHERE v.of = ? AND o.version <= ?)
            """), arguments: [op, version]) ?? false
    }

    /// Adds (or, for an operation voided after it arrived, takes away) what one operation of a
    /// store counts for in its store's day, and a purchase in its member's activity.
    private static func count(_ op: String, sign: Int64, _ db: Database, dayOnly: Bool = false) throws {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT origin, kind, hlc, member_id, COALESCE(json_extract(body, '$.amount'), 0), COALESCE(json_extract(body, '$.value_spent'), 0),
                   COALESCE(json_extract(body, '$.points_earned'), 0), COALESCE(json_extract(body, '$.points_redeemed'), 0)
            FROM ops WHERE id = ?
            """), arguments: [op]) else { return }
        try count(Counted(origin: row[0], kind: row[1], wallMs: HLCTimestamp(packed: row[2])?.wallMs ?? 0, member: row[3],
                          amount: row[4], spent: row[5], earned: row[6], redeemed: row[7]), sign: sign, db, dayOnly: dayOnly)
    }

    /// What an operation counts for: its store, kind, time, member and amounts.
    private struct Counted {
        var origin: String, kind: String, wallMs: Int64, member: String?
        var amount: Int64, spent: Int64, earned: Int64, redeemed: Int64
    }

    /// A body's number as `json_extract` reads it back from the log (absent: 0).
    private static func integer(_ value: JSONValue?) -> Int64 {
        switch value {
        case .int(let i)?: i
        case .double(let d)?: Int64(exactly: d.rounded(.towardZero)) ?? 0
        case .bool(let b)?: b ? 1 : 0
        default: 0
        }
    }

    private static func count(_ counted: Counted, sign: Int64, _ db: Database, dayOnly: Bool = false) throws {
        let origin = counted.origin, kind = counted.kind, member = counted.member, wallMs = counted.wallMs
        let amount = counted.amount, spent = counted.spent, earned = counted.earned, redeemed = counted.redeemed
        guard origin != "hub" else { return }
        var c = DayCounts(operations: sign)
        switch kind {
        case "member.enrolled": c.enrolments = sign
        case "value.recharged": c.recharges = sign; c.recharged = amount * sign
        case "purchase": c.sales = sign; c.sold = amount * sign; c.spent = spent * sign; c.earned = earned * sign; c.redeemed = redeemed * sign
        case "refund": c.refunds = sign
        default: break
        }
        let key = DayKey(store: origin, day: try calendar(db).day(ms: wallMs).number)
        // Within a write, added up and written once at its end; outside one, now.
        try hold(key, c, \.days, db, else: addDay)
        if kind == "purchase", let member, sign > 0, !dayOnly {
            try addActivity(member, ActivityDelta(purchases: 1, lastMs: wallMs, spend: amount), db)
        }
    }

    /// A store's day, as `store_days` keys it.
    struct DayKey: Hashable, Sendable {
        var store: String
        var day: Int64
    }

    /// What operations add to a store's day.
    struct DayCounts: HeldCount {
        var operations: Int64 = 0, enrolments: Int64 = 0, recharges: Int64 = 0, recharged: Int64 = 0, sales: Int64 = 0
        var sold: Int64 = 0, spent: Int64 = 0, earned: Int64 = 0, redeemed: Int64 = 0, refunds: Int64 = 0

        mutating func add(_ o: DayCounts) {
            operations += o.operations; enrolments += o.enrolments; recharges += o.recharges; recharged += o.recharged
            sales += o.sales; sold += o.sold; spent += o.spent; earned += o.earned; redeemed += o.redeemed; refunds += o.refunds
        }
    }

    private static func addDay(_ key: DayKey, _ c: DayCounts, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO store_days (store, day, operations, enrolments, recharges, recharged, sales, sold, spent, points_earned, points_redeemed, refunds)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(store, day) DO UPDATE SET operations = operations + excluded.operations, enrolments = enrolments + excluded.enrolments,
                recharges = recharges + excluded.recharges, recharged = recharged + excluded.recharged, sales = sales + excluded.sales,
                sold = sold + excluded.sold, spent = spent + excluded.spent, points_earned = points_earned + excluded.points_earned,
                points_redeemed = points_redeemed + excluded.points_redeemed, refunds = refunds + excluded.refunds
            """).execute(arguments: [key.store, key.day, c.operations, c.enrolments, c.recharges, c.recharged, c.sales, c.sold,
                                     c.spent, c.earned, c.redeemed, c.refunds])
    }

    /// What operations add to one summary row (a store's day, a member's sums or activity), added up.
    protocol HeldCount: Sendable {
        init()
        mutating func add(_ other: Self)
    }

    /// What operations add to a member's sums (`member_sums`).
    struct SumsDelta: HeldCount {
        var value: Int64 = 0, bonus: Int64 = 0, points: Int64 = 0
        /// The last movement of value (nil: none).
        var valueAtMs: Int64?
        var enrolled = false

        mutating func add(_ o: SumsDelta) {
            value += o.value; bonus += o.bonus; points += o.points
            valueAtMs = HubSummaries.later(valueAtMs, o.valueAtMs)
            enrolled = enrolled || o.enrolled
        }
    }

    /// What operations add to a member's purchases (`member_activity`).
    struct ActivityDelta: HeldCount {
        var purchases: Int64 = 0
        var lastMs: Int64?
        var spend: Int64 = 0

        mutating func add(_ o: ActivityDelta) {
            purchases += o.purchases; spend += o.spend
            lastMs = HubSummaries.later(lastMs, o.lastMs)
        }
    }

    /// The later of two times, either of which may be unknown (as SQL's `MAX(COALESCE(...))` below).
    private static func later(_ a: Int64?, _ b: Int64?) -> Int64? {
        guard let a else { return b }
        guard let b else { return a }
        return max(a, b)
    }

    /// Rows of one table counted within one write before they are written anyway: a rebuild of
    /// the summaries is one write over the whole log, and would otherwise hold every member.
    private static let rowsHeldMax = 10_000

    // A member's sums and activity, like a store's day: within a write, added up and written
    // once at its end (a push's operations are a few each of fewer members; one upsert per
    // entry and per sale was a third of the summaries' time in a catch-up); outside one, now.
    // Every write of either is an addition, so adding up first changes nothing but the count.

    private static func addSums(_ member: String, _ delta: SumsDelta, _ db: Database) throws {
        try hold(member, delta, \.sums, db, else: writeSums)
    }

    /// What an operation adds to the row `key`, held by the write in `held` and written by
    /// `flushCounts` (or written at once by `write`, outside a write).
    private static func hold<Key: Hashable, Count: HeldCount>(_ key: Key, _ count: Count, _ held: WritableKeyPath<WriteMemo.Values, [Key: Count]>,
                                                              _ db: Database, else write: (Key, Count, Database) throws -> Void) throws {
        var rows = 0
        guard WriteMemo.update(db, { $0[keyPath: held][key, default: Count()].add(count); rows = $0[keyPath: held].count }) else {
            return try write(key, count, db)
        }
        if rows >= rowsHeldMax { try flushCounts(db) }
    }

    private static func writeSums(_ member: String, _ d: SumsDelta, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO member_sums (member_id, value, bonus, points, value_at_ms, enrolled) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(member_id) DO UPDATE SET value = value + excluded.value, bonus = bonus + excluded.bonus,
                points = points + excluded.points, value_at_ms = MAX(COALESCE(value_at_ms, excluded.value_at_ms), COALESCE(excluded.value_at_ms, value_at_ms)),
                enrolled = MAX(enrolled, excluded.enrolled)
            """).execute(arguments: [member, d.value, d.bonus, d.points, d.valueAtMs, d.enrolled ? 1 : 0])
    }

    private static func addActivity(_ member: String, _ delta: ActivityDelta, _ db: Database) throws {
        try hold(member, delta, \.activity, db, else: writeActivity)
    }

    private static func writeActivity(_ member: String, _ d: ActivityDelta, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO member_activity (member_id, purchases, last_ms, spend) VALUES (?, ?, ?, ?)
            ON CONFLICT(member_id) DO UPDATE SET purchases = purchases + excluded.purchases,
                last_ms = MAX(COALESCE(last_ms, excluded.last_ms), COALESCE(excluded.last_ms, last_ms)), spend = spend + excluded.spend
            """).execute(arguments: [member, d.purchases, d.lastMs, d.spend])
    }

    /// Writes what this write has counted so far (store days, members' sums and activity) to
    /// their tables, in a fixed order (the same writes make the same pages on every run).
    /// Called when the write ends, and before anything in it reads those tables or sets a row
    /// of them outright. Outside a write: nothing to write.
    static func flushCounts(_ db: Database) throws {
        var days: [DayKey: DayCounts] = [:]
        var sums: [String: SumsDelta] = [:]
        var activity: [String: ActivityDelta] = [:]
        WriteMemo.update(db) { swap(&days, &$0.days); swap(&sums, &$0.sums); swap(&activity, &$0.activity) }
        for (key, counts) in days.sorted(by: { ($0.key.store, $0.key.day) < ($1.key.store, $1.key.day) }) {
            try addDay(key, counts, db)
        }
        for (member, delta) in sums.sorted(by: { $0.key < $1.key }) { try writeSums(member, delta, db) }
        for (member, delta) in activity.sorted(by: { $0.key < $1.key }) { try writeActivity(member, delta, db) }
    }

    /// A store's operation the hub reversed after it arrived (a spend its store voided): out of
    /// its store's day, and its member's activity counted again without it.
    private static func unwind(_ voided: String, through version: Int64, _ db: Database) throws {
        guard let member = try Row.fetchOne(db.cachedStatement(sql: "SELECT origin, member_id FROM ops WHERE id = ?"), arguments: [voided]),
              member[0] as String != "hub" else { return }
        try count(voided, sign: -1, db)
        // Its member, and the members its refunds were recorded under (a merge may have come between).
        var members = Set(try String.fetchAll(db.cachedStatement(sql: """
            SELECT member_id FROM ops WHERE member_id IS NOT NULL AND id IN (SELECT by FROM refunds WHERE of = ?)
            """), arguments: [voided]))
        if let id = member[1] as String? { members.insert(id) }
        for id in members.sorted() { try recount(MemberID(id), through: version, db) }
    }

    /// A member's purchases and spend, counted from the log up to `version` (after a void: rare),
    /// as they stood then (a rebuild meets the later ones in its own pass).
    private static func recount(_ member: MemberID, through version: Int64, _ db: Database) throws {
        try flushCounts(db) // set outright below: what this write added so far goes first
        let purchases = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT COUNT(*), MAX(hlc), COALESCE(SUM(json_extract(body, '$.amount')), 0) FROM ops
            WHERE member_id = ?1 AND kind = 'purchase' AND version <= ?2
              AND id NOT IN (SELECT v.of FROM voids v JOIN ops o ON o.id = v.by WHERE o.version <= ?2)
            """), arguments: [member.rawValue, version])
        let refunded = try Int64.fetchOne(db.cachedStatement(sql: """
            WITH voided AS (SELECT v.of FROM voids v JOIN ops o ON o.id = v.by WHERE o.version <= ?2)
            SELECT COALESCE(SUM(json_extract(r.body, '$.amount')), 0) FROM ops r JOIN ops p ON p.id = json_extract(r.body, '$.of') AND p.kind = 'purchase'
            WHERE r.member_id = ?1 AND r.kind = 'refund' AND r.version <= ?2
              AND r.id NOT IN (SELECT of FROM voided) AND p.id NOT IN (SELECT of FROM voided)
            """), arguments: [member.rawValue, version]) ?? 0
        let count: Int64 = purchases?[0] ?? 0
        let last: Int64? = (purchases?[1] as Int64?).flatMap { HLCTimestamp(packed: $0)?.wallMs }
        let spend: Int64 = (purchases?[2] ?? 0) - refunded
        try db.cachedStatement(sql: """
            INSERT INTO member_activity (member_id, purchases, last_ms, spend) VALUES (?, ?, ?, ?)
            ON CONFLICT(member_id) DO UPDATE SET purchases = excluded.purchases, last_ms = excluded.last_ms, spend = excluded.spend
            """).execute(arguments: [member.rawValue, count, last, spend])
    }

    /// Store days are counted in the chain's time zone: when a new programme changes it, they
    /// are counted again (once, a pass over the stores' operations).
    private static func followZone(through version: Int64, _ db: Database) throws {
        let zone = try Replica.programme(db).timeZone
        guard try settings(db).zone != zone else { return }
        try setSetting("summary_zone", zone, db)
        try flushCounts(db)
        try db.execute(sql: "DELETE FROM store_days")
        // Up to this operation only: a rebuild meets the later ones in its own pass.
        let ids = try String.fetchCursor(db.makeStatement(sql: """
            SELECT id FROM ops WHERE version <= ? AND origin <> 'hub' AND id NOT IN (SELECT of FROM voids) ORDER BY version
            """), arguments: [version])
        while let id = try ids.next() { try countDay(id, db) }
    }

    /// Only the store day of one operation (a recount after the zone changed).
    private static func countDay(_ op: String, _ db: Database) throws {
        try count(op, sign: 1, db, dayOnly: true)
    }

    private static let calendars = Mutex<[String: ChainCalendar]>([:])

    private static func calendar(_ db: Database) throws -> ChainCalendar {
        let zone = try settings(db).zone
        if let known = calendars.withLock({ $0[zone] }) { return known }
        let made = ChainCalendar(identifier: zone) ?? .utc
        calendars.withLock { $0[zone] = made }
        return made
    }

    /// The book of the allocation in the hub's fold.
    struct FoldBook: Settlement.Book {
        typealias Failure = any Error
        let db: Database
        let period: Int64

        /// The lines as read, to know what each step changed (a line is read before it is set).
        var read: [String: Settlement.Line] = [:]

        mutating func line(_ member: MemberID, _ currency: Settlement.Currency) throws -> Settlement.Line {
            let key = member.rawValue + "\u{1F}" + currency.rawValue
            if let known = read[key] { return known }
            var line = Settlement.Line()
            if let text = try String.fetchOne(db.cachedStatement(sql: "SELECT line FROM settle_lines WHERE member_id = ? AND currency = ?"),
                                              arguments: [member.rawValue, currency.rawValue]) {
                guard let stored = Settlement.Line(text: text, member: member, currency: currency) else {
                    throw DomainError(.internalError, "a settlement line of \(member) that does not read back: rebuild the summaries")
                }
                line = stored
            }
            read[key] = line
            return line
        }

        mutating func setLine(_ line: Settlement.Line, _ member: MemberID, _ currency: Settlement.Currency) throws {
            let before = try self.line(member, currency)
            read[member.rawValue + "\u{1F}" + currency.rawValue] = line
            // Each store's totals move by the difference the step made to this line.
            var delta: [String: (held: Int64, owed: Int64)] = [:]
            for lot in before.lots { delta[lot.store, default: (0, 0)].held -= lot.amount }
            for debt in before.owed { delta[debt.store, default: (0, 0)].owed -= debt.amount }
            for lot in line.lots { delta[lot.store, default: (0, 0)].held += lot.amount }
            for debt in line.owed { delta[debt.store, default: (0, 0)].owed += debt.amount }
            for (store, d) in delta where d.held != 0 || d.owed != 0 {
                try db.cachedStatement(sql: """
                    INSERT INTO settle_totals (store, currency, held, owed) VALUES (?, ?, ?, ?)
                    ON CONFLICT(store, currency) DO UPDATE SET held = held + excluded.held, owed = owed + excluded.owed
                    """).execute(arguments: [store, currency.rawValue, d.held, d.owed])
            }
            if line.lots.isEmpty && line.owed.isEmpty {
                try db.cachedStatement(sql: "DELETE FROM settle_lines WHERE member_id = ? AND currency = ?").execute(arguments: [member.rawValue, currency.rawValue])
            } else {
                try db.cachedStatement(sql: """
                    INSERT INTO settle_lines (member_id, currency, line) VALUES (?, ?, ?)
                    ON CONFLICT(member_id, currency) DO UPDATE SET line = excluded.line
                    """).execute(arguments: [member.rawValue, currency.rawValue, line.text()])
            }
        }

        func openFlows(spend op: String, _ currency: Settlement.Currency, member: MemberID) throws -> [Settlement.OpenFlow] {
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, version, issuer, spender, amount, load, member_id, undone FROM settle_flows
                WHERE spend = ? AND currency = ? AND amount > undone ORDER BY id DESC
                """), arguments: [op, currency.rawValue]).compactMap { row in
                let owner = MemberID(row["member_id"])
                guard try owner == member || Replica.root(of: owner, db) == member else { return nil }
                let amount: Int64 = row["amount"], undone: Int64 = row["undone"]
                return Settlement.OpenFlow(id: row["id"], flow: Settlement.Flow(
                    version: row["version"], currency: currency, issuer: row["issuer"], spender: row["spender"], amount: amount,
                    load: row["load"], spend: op, member: owner), open: amount - undone)
            }
        }

        func record(_ flow: Settlement.Flow) throws {
            try db.cachedStatement(sql: """
                INSERT INTO settle_flows (version, period, currency, issuer, spender, amount, load, spend, member_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [flow.version, period, flow.currency.rawValue, flow.issuer, flow.spender, flow.amount, flow.load, flow.spend,
                                         flow.member.rawValue])
            guard flow.issuer != flow.spender else { return }
            let principal = flow.currency == .principal ? flow.amount : 0, bonus = flow.currency == .bonus ? flow.amount : 0
            try db.cachedStatement(sql: """
                INSERT INTO settle_pairs (period, issuer, spender, principal, bonus, flows) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(period, issuer, spender) DO UPDATE SET principal = principal + excluded.principal, bonus = bonus + excluded.bonus,
                    flows = flows + excluded.flows
                """).execute(arguments: [period, flow.issuer, flow.spender, principal, bonus, flow.amount > 0 ? 1 : 0])
        }

        func undo(_ flow: Int64, by amount: Int64) throws {
            try db.cachedStatement(sql: "UPDATE settle_flows SET undone = undone + ? WHERE id = ?").execute(arguments: [amount, flow])
        }
    }
}
