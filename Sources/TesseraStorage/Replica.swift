import Foundation
import GRDB
import Synchronization
import TesseraCore
import TesseraProtocol

/// The folded state every replica (node or hub) keeps in SQLite, and the functions that apply
/// operation effects to it. It mirrors `ChainState` effect for effect: each statement below
/// commutes and is idempotent, so operations may arrive in any order, and more than once.
/// Balances are never written by this code: they are sums over the `entries` rows, one per
/// operation (`entry_sums` keeps those sums per member, by triggers on `entries`, as a cache).
enum Replica {
    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("replica-v1") { db in
            try db.execute(sql: """
                CREATE TABLE members (
                    id TEXT PRIMARY KEY NOT NULL,
                    enrolled TEXT,
                    referrer TEXT,
                    name TEXT, name_stamp TEXT NOT NULL DEFAULT '',
                    phone TEXT, phone_stamp TEXT NOT NULL DEFAULT '',
                    birthday TEXT, birthday_stamp TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX members_phone ON members(phone);
                CREATE TABLE cards (
                    card TEXT PRIMARY KEY NOT NULL,
                    member_id TEXT,
                    issued TEXT,
                    blocked INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1))
                );
                CREATE INDEX cards_member ON cards(member_id);
                CREATE TABLE merges (
                    from_id TEXT PRIMARY KEY NOT NULL,
                    into_id TEXT NOT NULL CHECK (into_id <> from_id),
                    stamp TEXT NOT NULL
                );
                CREATE INDEX merges_into ON merges(into_id);
                CREATE TABLE entries (
                    op_id TEXT NOT NULL,
                    member_id TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    points INTEGER NOT NULL,
                    PRIMARY KEY (op_id, member_id)
                );
                CREATE INDEX entries_member ON entries(member_id);
                CREATE TABLE refunds (of TEXT NOT NULL, by TEXT NOT NULL, PRIMARY KEY (of, by));
                CREATE TABLE voids (of TEXT PRIMARY KEY NOT NULL, by TEXT NOT NULL);
                """)
        }
        // The programme: entries carry bonus money, expiry lots, expiry and the tier counter,
        // several per operation; refunds their amount; rules, coupons and memberships.
        migrator.registerMigration("replica-v2-programme") { db in
            try db.execute(sql: """
                CREATE TABLE entries_v2 (
                    op_id TEXT NOT NULL,
                    part INTEGER NOT NULL,
                    member_id TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    bonus INTEGER NOT NULL DEFAULT 0,
                    points INTEGER NOT NULL,
                    lot INTEGER,
                    expired INTEGER NOT NULL DEFAULT 0,
                    qualifying INTEGER NOT NULL DEFAULT 0,
                    at_ms INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (op_id, part)
                );
                -- A v1 entry netted what an operation earned and spent: points it added are kept as
                -- points that never expire (lot 9999-12-31), points it took as a spend.
                INSERT INTO entries_v2 (op_id, part, member_id, value, points, lot)
                    SELECT op_id, ROW_NUMBER() OVER (PARTITION BY op_id ORDER BY member_id) - 1, member_id, value, points,
                           CASE WHEN points > 0 THEN 2932896 END
                    FROM entries;
                DROP TABLE entries;
                ALTER TABLE entries_v2 RENAME TO entries;
                CREATE INDEX entries_member ON entries(member_id);
                ALTER TABLE refunds ADD COLUMN amount INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE rules (version INTEGER PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE coupons (
                    id TEXT PRIMARY KEY NOT NULL,
                    member_id TEXT NOT NULL,
                    body TEXT NOT NULL,
                    stamp TEXT NOT NULL
                );
                CREATE INDEX coupons_member ON coupons(member_id);
                CREATE TABLE coupon_uses (coupon TEXT NOT NULL, op_id TEXT NOT NULL, PRIMARY KEY (coupon, op_id));
                CREATE TABLE coupon_restores (coupon TEXT NOT NULL, use_op TEXT NOT NULL, PRIMARY KEY (coupon, use_op));
                CREATE TABLE memberships (op_id TEXT PRIMARY KEY NOT NULL, member_id TEXT NOT NULL, body TEXT NOT NULL);
                CREATE INDEX memberships_member ON memberships(member_id);
                """)
        }
        // Escrow leases (spec §13): each operation's change to a store's lease of a member, the
        // hub's recalls, and the operations that answered them.
        migrator.registerMigration("replica-v3-leases") { db in
            try db.execute(sql: """
                CREATE TABLE leases (
                    op_id TEXT PRIMARY KEY NOT NULL,
                    member_id TEXT NOT NULL,
                    store TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    points INTEGER NOT NULL,
                    expires_ms INTEGER,
                    at_ms INTEGER NOT NULL,
                    reverses TEXT
                );
                CREATE INDEX leases_member ON leases(member_id, store);
                CREATE INDEX leases_store ON leases(store, member_id);
                CREATE TABLE recalls (
                    op_id TEXT PRIMARY KEY NOT NULL,
                    member_id TEXT NOT NULL,
                    store TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    points INTEGER NOT NULL
                );
                CREATE INDEX recalls_store ON recalls(store, member_id);
                CREATE TABLE recall_answers (recall_op TEXT PRIMARY KEY NOT NULL, by TEXT NOT NULL);
                """)
        }
    }

    /// Migrations of the replica's tables registered after the node's and the hub's own (so a
    /// new file and an upgraded one run them in the same order).
    static func migrateLater(_ migrator: inout DatabaseMigrator) {
        // Entries stored as the B-tree of their key (op, part) alone: a rowid table kept a
        // second B-tree of every entry for its key. One B-tree fewer to write for each entry
        // (every operation's fold), a tenth less disk, and a new node loading ten million
        // entries from a snapshot file did so in 6 s instead of 11. Indexes on the table
        // (the hub's too) are made again as they were.
        migrator.registerMigration("replica-v4-entries-by-key") { db in
            let indexes = try String.fetchAll(db, sql: """
                SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL ORDER BY name
                """)
            try db.execute(sql: """
                CREATE TABLE entries_v4 (
                    op_id TEXT NOT NULL,
                    part INTEGER NOT NULL,
                    member_id TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    bonus INTEGER NOT NULL DEFAULT 0,
                    points INTEGER NOT NULL,
                    lot INTEGER,
                    expired INTEGER NOT NULL DEFAULT 0,
                    qualifying INTEGER NOT NULL DEFAULT 0,
                    at_ms INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (op_id, part)
                ) WITHOUT ROWID;
                INSERT INTO entries_v4 (op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms)
                    SELECT op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms FROM entries ORDER BY op_id, part;
                DROP TABLE entries;
                ALTER TABLE entries_v4 RENAME TO entries;
                """)
            for sql in indexes { try db.execute(sql: sql) }
        }
        // Entries kept in member order: a till's every sale sums its member's entries (twice:
        // to price it, and for the answer), and by an index of members each entry was a look-up
        // in the table by its key, so a sale cost as many B-tree searches as the member had
        // entries. Now they are one run of the table's own B-tree, and the look-up by operation
        // (undoing, reversing, the hub's summaries: a few entries each) goes through the index
        // instead. The same size: the index of members, a third of a node's disk at a million
        // members, is replaced by the index of operations.
        migrator.registerMigration("replica-v5-entries-by-member") { db in
            let indexes = try String.fetchAll(db, sql: """
                SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL AND name <> 'entries_member'
                ORDER BY name
                """)
            try db.execute(sql: """
                CREATE TABLE entries_v5 (
                    op_id TEXT NOT NULL,
                    part INTEGER NOT NULL,
                    member_id TEXT NOT NULL,
                    value INTEGER NOT NULL,
                    bonus INTEGER NOT NULL DEFAULT 0,
                    points INTEGER NOT NULL,
                    lot INTEGER,
                    expired INTEGER NOT NULL DEFAULT 0,
                    qualifying INTEGER NOT NULL DEFAULT 0,
                    at_ms INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (member_id, op_id, part)
                ) WITHOUT ROWID;
                INSERT INTO entries_v5 (op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms)
                    SELECT op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms FROM entries ORDER BY member_id, op_id, part;
                DROP TABLE entries;
                ALTER TABLE entries_v5 RENAME TO entries;
                CREATE UNIQUE INDEX entries_op ON entries(op_id, part);
                """)
            for sql in indexes { try db.execute(sql: sql) }
        }
        // Each member's sums of its entries, and its points by lot, kept by triggers in the
        // transaction that inserts or deletes an entry: exactly what grouping the entries by
        // member (and lot) gives, a row for each group there is (caches of the fold, never
        // written otherwise: `entrySumProblems` checks them against the entries). A standing
        // read every entry of the member, twice a sale: a member with 2,000 sales paid 2 ms a
        // sale for it. Rebuilding `entries` (a later migration) drops these triggers with it.
        migrator.registerMigration("replica-v6-entry-sums") { db in
            try db.execute(sql: """
                CREATE TABLE entry_sums (
                    member_id TEXT PRIMARY KEY NOT NULL,
                    balance INTEGER NOT NULL DEFAULT 0, bonus INTEGER NOT NULL DEFAULT 0, points INTEGER NOT NULL DEFAULT 0,
                    expired INTEGER NOT NULL DEFAULT 0, lifetime INTEGER NOT NULL DEFAULT 0, qualifying INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                CREATE TABLE lot_sums (
                    member_id TEXT NOT NULL, lot INTEGER NOT NULL, points INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (member_id, lot)
                ) WITHOUT ROWID;
                INSERT INTO entry_sums (member_id, balance, bonus, points, expired, lifetime, qualifying)
                    SELECT member_id, SUM(value + bonus), SUM(bonus), SUM(points), SUM(expired),
                           SUM(CASE WHEN lot IS NOT NULL THEN points ELSE 0 END), SUM(qualifying)
                    FROM entries GROUP BY member_id;
                INSERT INTO lot_sums (member_id, lot, points)
                    SELECT member_id, lot, SUM(points) FROM entries WHERE lot IS NOT NULL GROUP BY member_id, lot;
                CREATE TRIGGER entries_sums_insert AFTER INSERT ON entries BEGIN
                    INSERT INTO entry_sums (member_id, balance, bonus, points, expired, lifetime, qualifying)
                        VALUES (NEW.member_id, NEW.value + NEW.bonus, NEW.bonus, NEW.points, NEW.expired,
                                CASE WHEN NEW.lot IS NOT NULL THEN NEW.points ELSE 0 END, NEW.qualifying)
                        ON CONFLICT (member_id) DO UPDATE SET balance = balance + excluded.balance, bonus = bonus + excluded.bonus,
                            points = points + excluded.points, expired = expired + excluded.expired,
                            lifetime = lifetime + excluded.lifetime, qualifying = qualifying + excluded.qualifying;
                    INSERT INTO lot_sums (member_id, lot, points) SELECT NEW.member_id, NEW.lot, NEW.points WHERE NEW.lot IS NOT NULL
                        ON CONFLICT (member_id, lot) DO UPDATE SET points = points + excluded.points;
                END;
                CREATE TRIGGER entries_sums_delete AFTER DELETE ON entries BEGIN
                    UPDATE entry_sums SET balance = balance - (OLD.value + OLD.bonus), bonus = bonus - OLD.bonus,
                        points = points - OLD.points, expired = expired - OLD.expired,
                        lifetime = lifetime - CASE WHEN OLD.lot IS NOT NULL THEN OLD.points ELSE 0 END,
                        qualifying = qualifying - OLD.qualifying
                        WHERE member_id = OLD.member_id;
                    UPDATE lot_sums SET points = points - OLD.points WHERE member_id = OLD.member_id AND lot = OLD.lot;
                    DELETE FROM entry_sums WHERE member_id = OLD.member_id
                        AND NOT EXISTS (SELECT 1 FROM entries WHERE member_id = OLD.member_id);
                    DELETE FROM lot_sums WHERE member_id = OLD.member_id AND lot = OLD.lot
                        AND NOT EXISTS (SELECT 1 FROM entries WHERE member_id = OLD.member_id AND lot = OLD.lot);
                END;
                """)
        }
        // Each member's tier counter by quarter hour, kept by triggers like the sums above. Under a
        // programme with a yearly tier reset, pricing a sale (and the hub's tier before each
        // operation) read every qualifying entry of the member and grouped it by quarter hour:
        // 0.47 ms for a member with 2,300 entries, and the sale of a member with 2,000 earlier
        // sales took 1.5 to 1.9x another's. A bucket's row is there while an entry with a
        // counter is in it, as grouping the entries gives. (As with v6: a later migration that
        // rebuilds `entries` drops these triggers with it, and must make both sets again.)
        migrator.registerMigration("replica-v7-qualifying-buckets") { db in
            try db.execute(sql: """
                CREATE TABLE qualifying_buckets (
                    member_id TEXT NOT NULL, bucket INTEGER NOT NULL, qualifying INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (member_id, bucket)
                ) WITHOUT ROWID;
                INSERT INTO qualifying_buckets (member_id, bucket, qualifying)
                    SELECT member_id, \(bucketSQL("at_ms")) AS b, SUM(qualifying) FROM main.entries WHERE qualifying <> 0 GROUP BY member_id, b;
                CREATE TRIGGER entries_buckets_insert AFTER INSERT ON entries WHEN NEW.qualifying <> 0 BEGIN
                    INSERT INTO qualifying_buckets (member_id, bucket, qualifying) VALUES (NEW.member_id, \(bucketSQL("NEW.at_ms")), NEW.qualifying)
                        ON CONFLICT (member_id, bucket) DO UPDATE SET qualifying = qualifying + excluded.qualifying;
                END;
                CREATE TRIGGER entries_buckets_delete AFTER DELETE ON entries WHEN OLD.qualifying <> 0 BEGIN
                    UPDATE qualifying_buckets SET qualifying = qualifying - OLD.qualifying
                        WHERE member_id = OLD.member_id AND bucket = \(bucketSQL("OLD.at_ms"));
                    DELETE FROM qualifying_buckets WHERE member_id = OLD.member_id AND bucket = \(bucketSQL("OLD.at_ms"))
                        AND NOT EXISTS (SELECT 1 FROM entries WHERE member_id = OLD.member_id AND qualifying <> 0
                                        AND \(bucketSQL("at_ms")) = \(bucketSQL("OLD.at_ms")));
                END;
                """)
        }
        // Two more of a member's sums by time, kept the same way.
        // - The tier counter by period (`LedgerSummary.period`: a UTC month, or a quarter hour
        //   on the two days around a UTC new year) replaces v7's quarter hours: those were one
        //   row per visit, so pricing the sale of a member with 2,000 earlier sales over three
        //   years still read 2,000 rows (2.7 ms against 0.22 ms for a member with 10 sales).
        // - The points spent outside lots, by quarter hour: once a lot has ended (under
        //   `end_of_following_year`, for every member who earned two years ago), pricing a sale
        //   read every entry of the member to sum its spends up to the last ended lot's bound.
        // A row is there while an entry with a counter (a spend) is in it, as grouping gives.
        // (As with v6 and v7: a later migration that rebuilds `entries` drops these triggers.)
        // A replica opened by 99868d1 ran a first version of this migration, with the spends
        // alone (`replica-v8-spend-buckets`): they are made again here with the periods.
        migrator.registerMigration("replica-v8-tier-periods-and-spends") { db in
            try db.execute(sql: """
                DROP TRIGGER IF EXISTS entries_spends_insert;
                DROP TRIGGER IF EXISTS entries_spends_delete;
                DROP TABLE IF EXISTS spend_buckets;
                DROP TRIGGER entries_buckets_insert;
                DROP TRIGGER entries_buckets_delete;
                DROP TABLE qualifying_buckets;
                \(groupedTable("periods", table: "qualifying_periods", key: "period", keyOf: periodSQL, column: "qualifying",
                               of: { "\($0).qualifying <> 0" }, value: { "\($0).qualifying" }, grouped: groupedPeriods))
                \(groupedTable("spends", table: "spend_buckets", key: "bucket", keyOf: bucketSQL, column: "spent",
                               of: isSpend, value: { "(-\($0).points)" }, grouped: groupedSpends))
                """)
        }
    }

    /// `table`, filled with `grouped`, and the triggers that keep it the entries that `of` takes
    /// (an expression of a row: NEW, OLD or the table), grouped by member and by `keyOf` their
    /// stamp, with `value` summed in `column`. A row is there while an entry of its group is (it
    /// may sum to zero), as grouping the entries gives; a deleted entry (a rejection) looks for
    /// another.
    static func groupedTable(_ name: String, table: String, key: String, keyOf: (String) -> String, column: String,
                             of: (String) -> String, value: (String) -> String, grouped: String) -> String {
        """
        CREATE TABLE \(table) (
            member_id TEXT NOT NULL, \(key) INTEGER NOT NULL, \(column) INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (member_id, \(key))
        ) WITHOUT ROWID;
        INSERT INTO \(table) (member_id, \(key), \(column)) \(grouped);
        CREATE TRIGGER entries_\(name)_insert AFTER INSERT ON entries WHEN \(of("NEW")) BEGIN
            INSERT INTO \(table) (member_id, \(key), \(column)) VALUES (NEW.member_id, \(keyOf("NEW.at_ms")), \(value("NEW")))
                ON CONFLICT (member_id, \(key)) DO UPDATE SET \(column) = \(column) + excluded.\(column);
        END;
        CREATE TRIGGER entries_\(name)_delete AFTER DELETE ON entries WHEN \(of("OLD")) BEGIN
            UPDATE \(table) SET \(column) = \(column) - \(value("OLD")) WHERE member_id = OLD.member_id AND \(key) = \(keyOf("OLD.at_ms"));
            DELETE FROM \(table) WHERE member_id = OLD.member_id AND \(key) = \(keyOf("OLD.at_ms"))
                AND NOT EXISTS (SELECT 1 FROM entries WHERE member_id = OLD.member_id AND \(of("entries"))
                                AND \(keyOf("at_ms")) = \(keyOf("OLD.at_ms")));
        END;
        """
    }

    /// A table the triggers on `entries` keep (see "replica-v6-entry-sums"): not state a
    /// snapshot carries as such, but copied with the entries of a snapshot file, or summed from
    /// them. `grouped` is the entries of `main` grouped as the table holds them (its columns in
    /// their order): what a file without the table fills it with, and what the check compares.
    struct EntrySum {
        let table: String
        let columns: String
        let grouped: String
        /// What the table holds, for the check's reports.
        let what: String
    }

    static let entrySums = [
        EntrySum(table: "entry_sums", columns: "member_id, balance, bonus, points, expired, lifetime, qualifying", grouped: groupedSums,
                 what: "entry sums"),
        EntrySum(table: "lot_sums", columns: "member_id, lot, points", grouped: groupedLots, what: "points by lot"),
        EntrySum(table: "qualifying_periods", columns: "member_id, period, qualifying", grouped: groupedPeriods, what: "tier counter by period"),
        EntrySum(table: "spend_buckets", columns: "member_id, bucket, spent", grouped: groupedSpends, what: "points spent by quarter hour"),
    ]
    static var entrySumTables: [String] { entrySums.map(\.table) }

    private static let groupedSums = """
        SELECT member_id, SUM(value + bonus), SUM(bonus), SUM(points), SUM(expired),
               SUM(CASE WHEN lot IS NOT NULL THEN points ELSE 0 END), SUM(qualifying) FROM main.entries GROUP BY member_id
        """
    private static let groupedLots = "SELECT member_id, lot, SUM(points) FROM main.entries WHERE lot IS NOT NULL GROUP BY member_id, lot"
    private static let groupedPeriods = """
        SELECT member_id, \(periodSQL("at_ms")) AS p, SUM(qualifying) FROM main.entries WHERE qualifying <> 0 GROUP BY member_id, p
        """
    private static let groupedSpends = """
        SELECT member_id, \(bucketSQL("at_ms")) AS b, -SUM(points) FROM main.entries WHERE \(isSpend("entries")) GROUP BY member_id, b
        """

    /// Whether an entry of `row` (a table or NEW / OLD) spends points, or gives spent points
    /// back, as points expiry counts them: points outside any lot, not an expiry's.
    static func isSpend(_ row: String) -> String {
        "\(row).lot IS NULL AND \(row).expired = 0 AND \(row).points <> 0"
    }

    /// The start of the quarter hour a stamp (a column or expression, in ms) is in: in SQL what
    /// `LedgerSummary.bucket` is in Swift (integer division, as Swift's).
    static func bucketSQL(_ ms: String) -> String {
        "(\(ms) / \(LedgerSummary.bucketMs)) * \(LedgerSummary.bucketMs)"
    }

    /// The tier counter's period of a stamp: in SQL what `LedgerSummary.period` is in Swift
    /// (SQLite's dates are UTC's proleptic Gregorian calendar, as `LocalDay`'s civil one is).
    static func periodSQL(_ ms: String) -> String {
        """
        CASE WHEN strftime('%m%d', \(ms) / 1000, 'unixepoch') IN ('1231', '0101') THEN \(bucketSQL(ms)) \
        ELSE CAST(strftime('%s', \(ms) / 1000, 'unixepoch', 'start of month', '+14 days') AS INTEGER) * 1000 END
        """
    }

    /// Fills the empty entry sums of `main` from a snapshot file's (in `schema`) when it has
    /// them, else sums them from `main`'s entries (a file from an older hub). Triggers are off
    /// meanwhile (see `withoutTriggers`): the caller loaded the entries with them off.
    /// A file's sums are taken as they are: a build that changes what a column means must give
    /// the tables new names (a new migration), so that files of older hubs are summed instead.
    /// Table by table: a file of a hub from before "replica-v8-tier-periods-and-spends" has
    /// the sums and lots only (and perhaps v7's tier counter by quarter hour, which this build
    /// does not keep); one from before "replica-v6-entry-sums" none.
    static func fillEntrySums(from schema: String, _ db: Database) throws {
        let held = try Set(String.fetchAll(db, sql: "SELECT name FROM \(schema).sqlite_master WHERE type = 'table'"))
        for sum in entrySums {
            // In the table's key order (member, then lot, period or bucket; entry_sums: member).
            let copied = "SELECT \(sum.columns) FROM \(schema).\(sum.table) ORDER BY member_id, 2"
            try db.execute(sql: "INSERT INTO main.\(sum.table) (\(sum.columns)) \(held.contains(sum.table) ? copied : sum.grouped)")
        }
    }

    /// Runs `body` with the triggers on `tables` of `main` dropped, and makes them again after
    /// (as they were): a bulk load or clear of entries, whose sums the caller makes once,
    /// instead of a trigger's upsert for each of ten million rows.
    /// Only inside a transaction: if `body` throws, its rollback brings the triggers back.
    static func withoutTriggers<T>(on tables: [String], _ db: Database, _ body: () throws -> T) throws -> T {
        precondition(db.isInsideTransaction, "triggers dropped outside a transaction could stay dropped")
        let names = tables.map { "'\($0)'" }.joined(separator: ", ")
        let triggers = try Row.fetchAll(db, sql: """
            SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name IN (\(names)) ORDER BY name
            """).map { (name: $0["name"] as String, sql: $0["sql"] as String) }
        for trigger in triggers { try db.execute(sql: "DROP TRIGGER main.\(trigger.name)") }
        let result = try body()
        for trigger in triggers { try db.execute(sql: trigger.sql) }
        return result
    }

    /// Every difference between the entry sums and the entries they sum (none: they agree).
    /// The simulation checks every replica's; `HubStore.checkSummaries` the hub's.
    static func entrySumProblems(_ db: Database) throws -> [String] {
        // Rows in one and not the other, either way: a row for each group that differs.
        func differences(_ grouped: String, _ table: String, _ what: String) throws -> [String] {
            try Row.fetchAll(db, sql: """
                SELECT * FROM (\(grouped) EXCEPT SELECT * FROM \(table))
                UNION ALL SELECT * FROM (SELECT * FROM \(table) EXCEPT \(grouped))
                """).map { "\(what) of \($0[0] as String) differ from its entries: \($0)" }
        }
        return try entrySums.flatMap { try differences($0.grouped, $0.table, $0.what) }
    }

    /// The kinds every build knew before builds recorded which they know (this list is fixed:
    /// a new kind is never added here).
    static let kindsBeforeRecording: Set<String> = Set(OperationKind.allCases.map(\.rawValue))
        .subtracting(["balance.opened", "lease.granted", "lease.returned", "lease.recalled"])

    /// Operations a newer peer made, stored here while this build did not know their kind
    /// (with no effect, §4), take effect once a build that knows the kind opens the file: each
    /// build records the kinds it knows, and one that knows more applies the stored operations
    /// of the kinds it has learnt. Effects are idempotent and commute, so applying them late
    /// gives the state that applying them on arrival would have given.
    /// Returns whether it applied any.
    @discardableResult
    static func applyNewlyKnownKinds(_ db: Database) throws -> Bool {
        let known = OperationKind.allCases.map(\.rawValue).sorted()
        let recorded = try Meta.get("known_kinds", db).map { Set($0.split(separator: ",").map(String.init)) } ?? kindsBeforeRecording
        let learnt = known.filter { !recorded.contains($0) }
        var applied = false
        for kind in learnt {
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM ops WHERE kind = ? AND kind_version = 1"), arguments: [kind]) {
                let op = try Operation(row: row)
                guard let body = try? op.decoded(), body != .unknown else { continue }
                try db.cachedStatement(sql: "UPDATE ops SET member_id = ? WHERE id = ?").execute(arguments: [body.member?.rawValue, op.id.description])
                try apply(body, of: op, db)
                applied = true
            }
        }
        if recorded != Set(known) { try Meta.set("known_kinds", known.joined(separator: ","), db) }
        return applied
    }

    /// Applies the effects of one operation body, stamped with the operation's (HLC, origin).
    static func apply(_ body: OperationBody, of op: Operation, _ db: Database) throws {
        // Made only for the effects that record it (a sale's entries do not).
        lazy var stamp = op.stamp.key
        let opID = op.id.description
        var part = 0
        for effect in body.effects {
            switch effect {
            case .enrol(let member, let referrer):
                try db.cachedStatement(sql: """
                    INSERT INTO members (id, enrolled, referrer) VALUES (?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET enrolled = excluded.enrolled, referrer = excluded.referrer
                    WHERE members.enrolled IS NULL OR excluded.enrolled < members.enrolled
                    """).execute(arguments: [member.rawValue, stamp, referrer?.rawValue])
            case .field(let member, let field, let value):
                let column = field.rawValue // from a closed enum: safe to splice
                try db.cachedStatement(sql: """
                    INSERT INTO members (id, \(column), \(column)_stamp) VALUES (?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET \(column) = excluded.\(column), \(column)_stamp = excluded.\(column)_stamp
                    WHERE excluded.\(column)_stamp > members.\(column)_stamp
                    """).execute(arguments: [member.rawValue, value, stamp])
            case .issueCard(let card, let member):
                try db.cachedStatement(sql: """
                    INSERT INTO cards (card, member_id, issued) VALUES (?, ?, ?)
                    ON CONFLICT(card) DO UPDATE SET member_id = excluded.member_id, issued = excluded.issued
                    WHERE cards.issued IS NULL OR excluded.issued < cards.issued
                    """).execute(arguments: [card.rawValue, member.rawValue, stamp])
            case .blockCard(let card):
                try db.cachedStatement(sql: """
                    INSERT INTO cards (card, blocked) VALUES (?, 1) ON CONFLICT(card) DO UPDATE SET blocked = 1
                    """).execute(arguments: [card.rawValue])
            case .ledger(let e):
                try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO entries (op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [opID, part, e.member.rawValue, e.value, e.bonus, e.points, e.lot?.number, e.expired, e.qualifying, op.hlc.wallMs])
                part += 1
            case .merge(let from, let into):
                try db.cachedStatement(sql: """
                    INSERT INTO merges (from_id, into_id, stamp) VALUES (?, ?, ?)
                    ON CONFLICT(from_id) DO UPDATE SET into_id = excluded.into_id, stamp = excluded.stamp
                    WHERE excluded.stamp < merges.stamp
                    """).execute(arguments: [from.rawValue, into.rawValue, stamp])
            case .refund(let of, let amount):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO refunds (of, by, amount) VALUES (?, ?, ?)").execute(arguments: [of.description, opID, amount])
            case .void(let of):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO voids (of, by) VALUES (?, ?)").execute(arguments: [of.description, opID])
            case .rules(let version, let document):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO rules (version, body) VALUES (?, ?)").execute(arguments: [version, try JSONText.encode(document)])
                WriteMemo.update(db) { $0.programme = nil }
            case .coupon(let coupon):
                try db.cachedStatement(sql: """
                    INSERT INTO coupons (id, member_id, body, stamp) VALUES (?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET member_id = excluded.member_id, body = excluded.body, stamp = excluded.stamp
                    WHERE excluded.stamp < coupons.stamp
                    """).execute(arguments: [coupon.id, coupon.member.rawValue, try JSONText.encode(coupon), stamp])
            case .couponUsed(let coupon):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO coupon_uses (coupon, op_id) VALUES (?, ?)").execute(arguments: [coupon, opID])
            case .couponRestored(let coupon, let use):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO coupon_restores (coupon, use_op) VALUES (?, ?)").execute(arguments: [coupon, use.description])
            case .membership(let period):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO memberships (op_id, member_id, body) VALUES (?, ?, ?)").execute(
                    arguments: [opID, period.member.rawValue, try JSONText.encode(period)])
            case .rights(let member, let store, let change, let expiresMs):
                // A reversal's row names the operation it reverses (see `settled`).
                let reverses: String? = if case .operationReversed(let r) = body { r.of.description } else { nil }
                try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO leases (op_id, member_id, store, value, points, expires_ms, at_ms, reverses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [opID, member.rawValue, (store ?? op.id.origin).rawValue, change.value, change.points, expiresMs,
                                             op.hlc.wallMs, reverses])
            case .recall(let member, let store, let rights):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO recalls (op_id, member_id, store, value, points) VALUES (?, ?, ?, ?, ?)").execute(
                    arguments: [opID, member.rawValue, store.rawValue, rights.value, rights.points])
            case .recallAnswered(let recall):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO recall_answers (recall_op, by) VALUES (?, ?)").execute(arguments: [recall.description, opID])
            }
        }
    }

    // MARK: Queries

    static func root(of member: MemberID, _ db: Database) throws -> MemberID {
        var current = member
        for _ in 0..<64 {
            guard let next = try String.fetchOne(db.cachedStatement(sql: "SELECT into_id FROM merges WHERE from_id = ?"), arguments: [current.rawValue])
            else { return current }
            current = MemberID(next)
        }
        preconditionFailure("merge chain longer than 64: a cycle")
    }

    /// The ids that resolve to a root (its one parameter), root included, as the table `grp`
    /// (`group(of:)` reads it for a root something was merged into).
    private static let groupOfRoot = "WITH RECURSIVE grp(id) AS (VALUES (?) UNION SELECT merges.from_id FROM merges JOIN grp ON merges.into_id = grp.id)"

    /// The condition on `member_id` that takes a group's members, and its one argument: a
    /// member alone (most are) by its id. `IN` a `json_each` list is a temporary B-tree made
    /// each time its statement runs (and a grouped read over it sorts), and a till's sale read
    /// six such (its standing's sums, lots, spends, periods, coupons, memberships).
    static func members(_ group: [MemberID]) throws -> (condition: String, argument: String) {
        if group.count == 1, let only = group.first { return ("= ?", only.rawValue) }
        return ("IN (SELECT value FROM json_each(?))", try JSONText.encode(group.map(\.rawValue)))
    }

    /// `members` of the group `member` resolves to (through merges).
    static func members(of member: MemberID, _ db: Database) throws -> (condition: String, argument: String) {
        try members(group(of: root(of: member, db), db))
    }

    /// Every member id that resolves to `root` (root included, first). A member nothing was
    /// merged into (most) is itself, without the recursive query: its queue is a temporary
    /// B-tree, opened and closed each time it runs, which every till's sale paid for, and the
    /// hub for each tier counter under ingest. Read a group's rows with `members`.
    static func group(of root: MemberID, _ db: Database) throws -> [MemberID] {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM merges WHERE into_id = ?)"),
                                arguments: [root.rawValue]) ?? true else { return [root] }
        return try String.fetchAll(db.cachedStatement(sql: """
            \(groupOfRoot)
            SELECT id FROM grp
            """), arguments: [root.rawValue]).map(MemberID.init)
    }

    /// What the member (resolved through merges) holds: the sums of its ledger entries (as the
    /// entry sums keep them: a row a member of the group, whatever its history).
    static func holdings(of member: MemberID, _ db: Database) throws -> Holdings {
        let (of, group) = try members(of: member, db)
        let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT COALESCE(SUM(balance), 0) AS value, COALESCE(SUM(bonus), 0) AS bonus, COALESCE(SUM(points), 0) AS points
            FROM entry_sums WHERE member_id \(of)
            """), arguments: [group])
        return Holdings(valueMinor: row?["value"] ?? 0, points: row?["points"] ?? 0, bonusMinor: row?["bonus"] ?? 0)
    }

    /// A store's lease of a member: what it holds, and when it ends (the latest end of its
    /// grants; rights a store added itself, by a recharge say, count as granted when added).
    struct LeaseHolding: Hashable, Sendable {
        var rights: Rights
        var endsMs: Int64
    }

    /// Lease rows that count: a spend its store voided, and the hub's reversal of it, cancel
    /// out, so both are left aside. (A node that pulls a spend it voided before the reversal
    /// arrives would otherwise count, for a while, what the spend gave its lease: points it
    /// earned, which the reversal takes back.)
    static let settled = """
        op_id NOT IN (SELECT of FROM voids) AND (reverses IS NULL OR reverses NOT IN (SELECT of FROM voids))
        """

    /// A lease's end, over its rows: the latest grant's `expires_ms`, or `at + lifetime` (the
    /// one parameter) of a change the store made itself; 0 without either.
    static let leaseEnds = """
        COALESCE(MAX(CASE WHEN expires_ms IS NOT NULL THEN expires_ms WHEN value > 0 OR points > 0 THEN at_ms + ? END), 0)
        """

    /// Every store's lease of the member (resolved through merges).
    static func leases(of member: MemberID, lifetimeMs: Int64, _ db: Database) throws -> [StoreID: LeaseHolding] {
        let (of, group) = try members(of: member, db)
        var out: [StoreID: LeaseHolding] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT store, SUM(value) AS value, SUM(points) AS points, \(leaseEnds) AS ends
            FROM leases WHERE member_id \(of) AND \(settled) GROUP BY store
            """), arguments: [lifetimeMs, group]) {
            guard let store = StoreID(rawValue: row["store"]) else { continue }
            out[store] = LeaseHolding(rights: Rights(value: row["value"], points: row["points"]), endsMs: row["ends"])
        }
        return out
    }

    /// Every member's lease at one store (members resolved through merges; the end is the latest
    /// of the member's group).
    static func storeLeases(_ store: StoreID, lifetimeMs: Int64, _ db: Database) throws -> [MemberID: LeaseHolding] {
        var out: [MemberID: LeaseHolding] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT member_id, SUM(value) AS value, SUM(points) AS points, \(leaseEnds) AS ends
            FROM leases WHERE store = ? AND \(settled) GROUP BY member_id
            """), arguments: [lifetimeMs, store.rawValue]) {
            let root = try root(of: MemberID(row["member_id"]), db)
            let here = LeaseHolding(rights: Rights(value: row["value"], points: row["points"]), endsMs: row["ends"])
            out[root] = out[root].map { LeaseHolding(rights: $0.rights + here.rights, endsMs: max($0.endsMs, here.endsMs)) } ?? here
        }
        return out
    }

    /// What the store's lease of the member lets it spend at `atMs`: nothing once it has ended.
    static func spendableLease(of member: MemberID, at store: StoreID, policy: Programme.Leases, atMs: Int64, _ db: Database) throws -> Rights {
        guard let holding = try leases(of: member, lifetimeMs: policy.lifetimeMs, db)[store], atMs < holding.endsMs else { return .zero }
        return Rights(value: max(0, holding.rights.value), points: max(0, holding.rights.points))
    }

    /// An open recall: the hub asked `store` for `rights` of `member` and has no answer yet.
    struct OpenRecall: Sendable {
        var op: OperationID
        var member: MemberID
        var store: StoreID
        var rights: Rights
    }

    /// The open recalls to `store` (every store when nil) about `members` (every member when nil).
    static func openRecalls(to store: StoreID?, members: [MemberID]? = nil, _ db: Database) throws -> [OpenRecall] {
        try Row.fetchAll(db.cachedStatement(sql: """
            SELECT op_id, member_id, store, value, points FROM recalls r
            WHERE (?1 IS NULL OR store = ?1) AND (?2 IS NULL OR member_id IN (SELECT value FROM json_each(?2)))
              AND NOT EXISTS (SELECT 1 FROM recall_answers a WHERE a.recall_op = r.op_id)
            ORDER BY op_id
            """), arguments: [store?.rawValue, try members.map { try JSONText.encode($0.map(\.rawValue)) }]).compactMap { row in
            guard let op = OperationID(row["op_id"] as String), let to = StoreID(rawValue: row["store"]) else { return nil }
            return OpenRecall(op: op, member: MemberID(row["member_id"]), store: to, rights: Rights(value: row["value"], points: row["points"]))
        }
    }

    /// The newest programme version this replica holds (the built-in one before any).
    static func programme(_ db: Database) throws -> Programme {
        if let known = WriteMemo.values(db)?.programme { return known }
        let programme: Programme
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT body FROM rules ORDER BY version DESC LIMIT 1")) {
            programme = try ProgrammeCache.programme(text: row["body"])
        } else {
            programme = .builtIn
        }
        WriteMemo.update(db) { $0.programme = programme }
        return programme
    }

    /// Everything the rules need to know about the member (resolved through merges) at `asOfMs`.
    /// - Parameter entriesThroughMs: count only entries stamped by then (a standing as it was
    ///   at a past moment, with `asOfMs` the same moment); every entry by default.
    static func standing(of member: MemberID, programme: Programme, asOfMs: Int64, entriesThroughMs: Int64 = .max,
                         _ db: Database) throws -> MemberStanding {
        try standingInputs(of: member, programme: programme, asOfMs: asOfMs, entriesThroughMs: entriesThroughMs, db)
            .standing(programme, asOfMs: asOfMs)
    }

    /// What a member's standing is derived from, as read from the fold.
    struct StandingInputs: Sendable {
        var root: MemberID
        /// The root and the members merged into it.
        var group: Set<MemberID>
        var ledger: LedgerSummary
        var coupons: [Coupon]
        var uses: [String: Set<OperationID>]
        var restores: [String: Set<OperationID>]
        var memberships: [MembershipPeriod]
        /// The day `ledger` was summed for (its ended lots are those before it).
        var today: LocalDay

        func standing(_ programme: Programme, asOfMs: Int64) -> MemberStanding {
            MemberStanding.derive(ledger: ledger, coupons: coupons, couponUses: uses, couponRestores: restores,
                                  memberships: memberships, programme: programme, asOfMs: asOfMs)
        }

        /// The inputs once `body` (operation `op`, stamped `atMs`) is applied, as the fold would
        /// read them back: for a till's answer, without reading the standing again. Nil for an
        /// operation whose effects this does not follow (coupons issued or restored, memberships,
        /// a lot that has already ended): the caller reads the fold instead.
        func applying(_ body: OperationBody, op: OperationID, atMs: Int64, programme: Programme) -> StandingInputs? {
            var after = self
            let byBucket = MemberStanding.needsQualifyingBuckets(programme)
            for effect in body.effects {
                switch effect {
                case .ledger(let e):
                    guard group.contains(e.member) else { continue }
                    if let lot = e.lot, lot < today { return nil }
                    after.ledger.addSums(e)
                    // As `ledgerSummary` buckets spends (up to the last ended lot) and tier counters.
                    if let last = ledger.endedLots.keys.max(), e.lot == nil, e.expired == 0, e.points != 0,
                       atMs < PointsExpiry.spendsBound(lastEndedLot: last) {
                        after.ledger.spends[LedgerSummary.bucket(atMs), default: 0] -= e.points
                    }
                    if byBucket, e.qualifying != 0 { after.ledger.qualifying[LedgerSummary.period(atMs), default: 0] += e.qualifying }
                case .couponUsed(let coupon):
                    guard coupons.contains(where: { $0.id == coupon }) else { return nil }
                    after.uses[coupon, default: []].insert(op)
                case .rights, .recall:
                    continue // leases: not part of a standing
                default:
                    return nil
                }
            }
            return after
        }
    }

    static func standingInputs(of member: MemberID, programme: Programme, asOfMs: Int64, entriesThroughMs: Int64 = .max,
                               _ db: Database) throws -> StandingInputs {
        let root = try root(of: member, db)
        let members = try Self.group(of: root, db)
        let (of, group) = try Self.members(members)
        let ledger = try ledgerSummary(group: members, programme: programme, asOfMs: asOfMs, entriesThroughMs: entriesThroughMs, db)
        let coupons = try String.fetchAll(db.cachedStatement(sql: "SELECT body FROM coupons WHERE member_id \(of)"),
                                          arguments: [group]).map { try JSONText.decode(Coupon.self, $0) }
        var uses: [String: Set<OperationID>] = [:], restores: [String: Set<OperationID>] = [:]
        if !coupons.isEmpty {
            let ids = try JSONText.encode(coupons.map(\.id))
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT coupon, op_id FROM coupon_uses WHERE coupon IN (SELECT value FROM json_each(?))"), arguments: [ids]) {
                if let op = OperationID(row["op_id"] as String) { uses[row["coupon"], default: []].insert(op) }
            }
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT coupon, use_op FROM coupon_restores WHERE coupon IN (SELECT value FROM json_each(?))"), arguments: [ids]) {
                if let op = OperationID(row["use_op"] as String) { restores[row["coupon"], default: []].insert(op) }
            }
        }
        let memberships = try String.fetchAll(db.cachedStatement(sql: "SELECT body FROM memberships WHERE member_id \(of)"),
                                              arguments: [group]).map { try JSONText.decode(MembershipPeriod.self, $0) }
        return StandingInputs(root: root, group: Set(members), ledger: ledger, coupons: coupons, uses: uses, restores: restores,
                              memberships: memberships, today: programme.calendar.day(ms: asOfMs))
    }

    /// A member's tier counter: its total, and by period (`LedgerSummary.period`): what a yearly reset
    /// needs (`TierRule.standing` reads only the total otherwise).
    struct TierCounter: Sendable {
        var total: Int64 = 0
        var byBucket: [Int64: Int64] = [:]

        /// An entry's counter, stamped `atMs`, added (as its entry would add it).
        mutating func add(_ qualifying: Int64, atMs: Int64) {
            total += qualifying
            byBucket[LedgerSummary.period(atMs), default: 0] += qualifying
        }

        func tier(_ programme: Programme, asOfMs: Int64) -> Programme.Tier? {
            guard let tiers = programme.tiers else { return nil }
            let calendar = programme.calendar
            return tiers.levels[TierRule.standing(tiers, total: total, byBucket: byBucket, calendar: calendar, today: calendar.day(ms: asOfMs)).index]
        }
    }

    /// The tier counter of the member (resolved through merges), read alone: the hub asks for
    /// the tier before every operation that moves a counter (for `tier.changed`), and a whole
    /// standing (lots, coupons, memberships) is five more statements each time.
    static func tierCounter(of member: MemberID, programme: Programme, _ db: Database) throws -> TierCounter {
        try tierCounter(ofRoot: try root(of: member, db), programme: programme, db)
    }

    /// The same for a root (a member no merge sends elsewhere).
    /// With a yearly reset, the total is the sum of the periods read (`qualifying_periods`; it
    /// was read apart, from the entry sums: under a programme with a yearly reset that and the
    /// group's recursive query were a tenth of the hub's samples under ingest).
    static func tierCounter(ofRoot root: MemberID, programme: Programme, _ db: Database) throws -> TierCounter {
        let (of, group) = try members(group(of: root, db))
        var counter = TierCounter()
        if MemberStanding.needsQualifyingBuckets(programme) {
            let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT period AS p, SUM(qualifying) AS q FROM qualifying_periods WHERE member_id \(of) GROUP BY p
                """), arguments: [group])
            while let row = try rows.next() {
                let amount: Int64 = row[1]
                counter.byBucket[row[0]] = amount
                counter.total += amount
            }
        } else {
            counter.total = try Int64.fetchOne(db.cachedStatement(sql: """
                SELECT COALESCE(SUM(qualifying), 0) FROM entry_sums WHERE member_id \(of)
                """), arguments: [group]) ?? 0
        }
        return counter
    }

    /// The member's tier (resolved through merges) at `asOfMs`, as its standing has it, from
    /// its tier counter alone. Nil with no tiers in the programme.
    static func tier(of member: MemberID, programme: Programme, asOfMs: Int64, _ db: Database) throws -> Programme.Tier? {
        guard programme.tiers != nil else { return nil }
        return try tierCounter(of: member, programme: programme, db).tier(programme, asOfMs: asOfMs)
    }

    /// Every enrolled member's tier (its index in the programme's levels, by root), as each
    /// member's standing has it, from one pass over the tier counters of every entry: what a
    /// segment over all members needs, without a standing per member. Empty with no tiers.
    static func tierIndexes(programme: Programme, asOfMs: Int64, entriesThroughMs: Int64 = .max, _ db: Database) throws -> [MemberID: Int] {
        guard let tiers = programme.tiers else { return [:] }
        let alias = try mergedAway(db)
        var totals: [MemberID: Int64] = [:], buckets: [MemberID: [Int64: Int64]] = [:]
        let byBucket = MemberStanding.needsQualifyingBuckets(programme)
        // Every entry: the counters the triggers keep, not a pass over ten million entries.
        let all = entriesThroughMs == .max
        let sql = switch (byBucket, all) {
        case (true, true): "SELECT member_id, qualifying, period FROM qualifying_periods"
        case (false, true): "SELECT member_id, qualifying FROM entry_sums WHERE qualifying <> 0"
        case (true, false): """
            SELECT member_id, SUM(qualifying), \(periodSQL("at_ms")) AS p FROM entries
            WHERE qualifying <> 0 AND at_ms <= ? GROUP BY member_id, p
            """
        case (false, false): "SELECT member_id, SUM(qualifying) FROM entries WHERE qualifying <> 0 AND at_ms <= ? GROUP BY member_id"
        }
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: all ? [] : [entriesThroughMs])
        while let row = try rows.next() {
            let id: String = row[0], amount: Int64 = row[1]
            let member = alias[id] ?? MemberID(id)
            totals[member, default: 0] += amount
            if byBucket { buckets[member, default: [:]][row[2], default: 0] += amount }
        }
        let calendar = programme.calendar, today = calendar.day(ms: asOfMs)
        let none = TierRule.standing(tiers, total: 0, byBucket: [:], calendar: calendar, today: today).index
        var out: [MemberID: Int] = [:]
        for id in try String.fetchAll(db.cachedStatement(sql: "SELECT id FROM members WHERE enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges)")) {
            let member = MemberID(id)
            guard let total = totals[member] else { out[member] = none; continue }
            out[member] = TierRule.standing(tiers, total: total, byBucket: buckets[member] ?? [:], calendar: calendar, today: today).index
        }
        return out
    }

    /// Each member merged into another, with the root it now counts under: few, so a pass over
    /// every member's rows can send theirs to the root with a look-up.
    static func mergedAway(_ db: Database) throws -> [String: MemberID] {
        var roots: [String: MemberID] = [:]
        for id in try String.fetchAll(db.cachedStatement(sql: "SELECT from_id FROM merges")) { roots[id] = try root(of: MemberID(id), db) }
        return roots
    }

    /// `LedgerSummary` computed in SQL over the member group's entries: from the entry sums
    /// for every entry, else over the entries (in member order: a range of the table); the
    /// buckets of spends and tier counters from the tables the triggers keep too. Entries up to
    /// a moment (a replay) are summed from the entries themselves.
    /// The pure fold computes the same from rows in memory.
    static func ledgerSummary(group list: [MemberID], programme: Programme, asOfMs: Int64, entriesThroughMs: Int64 = .max,
                              _ db: Database) throws -> LedgerSummary {
        var ledger = LedgerSummary()
        let (of, group) = try Self.members(list)
        // The group's entries stamped by `entriesThroughMs` (every one by default).
        let members = "member_id \(of) AND at_ms <= ?"
        // Every entry: the sums the triggers keep (a row a member), not a pass over its history.
        let all = entriesThroughMs == .max
        let sums = all ? """
            SELECT COALESCE(SUM(balance), 0) AS balance, COALESCE(SUM(bonus), 0) AS bonus, COALESCE(SUM(points), 0) AS points,
                   COALESCE(SUM(expired), 0) AS expired, COALESCE(SUM(lifetime), 0) AS lifetime, COALESCE(SUM(qualifying), 0) AS qualifying
            FROM entry_sums WHERE member_id \(of)
            """ : """
            SELECT COALESCE(SUM(value + bonus), 0) AS balance, COALESCE(SUM(bonus), 0) AS bonus, COALESCE(SUM(points), 0) AS points,
                   COALESCE(SUM(expired), 0) AS expired, COALESCE(SUM(CASE WHEN lot IS NOT NULL THEN points ELSE 0 END), 0) AS lifetime,
                   COALESCE(SUM(qualifying), 0) AS qualifying
            FROM entries WHERE \(members)
            """
        if let row = try Row.fetchOne(db.cachedStatement(sql: sums), arguments: all ? [group] : [group, entriesThroughMs]) {
            ledger.balance = row["balance"]; ledger.bonus = row["bonus"]; ledger.points = row["points"]
            ledger.expired = row["expired"]; ledger.lifetimePoints = row["lifetime"]; ledger.qualifyingTotal = row["qualifying"]
        }
        let today = programme.calendar.day(ms: asOfMs)
        let lots = all ? """
            SELECT lot, SUM(points) AS points FROM lot_sums WHERE member_id \(of) AND lot < ? GROUP BY lot
            """ : """
            SELECT lot, SUM(points) AS points FROM entries WHERE \(members) AND lot IS NOT NULL AND lot < ? GROUP BY lot
            """
        for row in try Row.fetchAll(db.cachedStatement(sql: lots),
                                    arguments: all ? [group, today.number] : [group, entriesThroughMs, today.number]) {
            ledger.endedLots[LocalDay(row["lot"])] = row["points"]
        }
        if let last = ledger.endedLots.keys.max() {
            // Every entry: the spends the triggers keep by quarter hour. The bound is a UTC
            // midnight, so a bucket is before it exactly when its entries are.
            let bound = PointsExpiry.spendsBound(lastEndedLot: last)
            assert(bound % LedgerSummary.bucketMs == 0, "the spends' bound splits a quarter hour")
            let spends = all ? """
                SELECT bucket AS b, SUM(spent) AS spent FROM spend_buckets
                WHERE member_id \(of) AND bucket < ? GROUP BY b
                """ : """
                SELECT \(bucketSQL("at_ms")) AS b, -SUM(points) AS spent FROM entries
                WHERE \(members) AND \(isSpend("entries")) AND at_ms < ? GROUP BY b
                """
            // By column index, from a cursor: a row by name is a lower-cased look-up, and a row
            // of `fetchAll` a copy, which a member's hundreds of rows made a third of a sale's cost.
            let rows = try Row.fetchCursor(db.cachedStatement(sql: spends), arguments: all ? [group, bound] : [group, entriesThroughMs, bound])
            while let row = try rows.next() { ledger.spends[row[0]] = row[1] as Int64 }
        }
        if MemberStanding.needsQualifyingBuckets(programme) {
            // Every entry: the periods the triggers keep (a dozen rows a year).
            let periods = all ? """
                SELECT period AS p, SUM(qualifying) AS q FROM qualifying_periods WHERE member_id \(of) GROUP BY p
                """ : """
                SELECT \(periodSQL("at_ms")) AS p, SUM(qualifying) AS q FROM entries
                WHERE \(members) AND qualifying <> 0 GROUP BY p
                """
            let rows = try Row.fetchCursor(db.cachedStatement(sql: periods), arguments: all ? [group] : [group, entriesThroughMs])
            while let row = try rows.next() { ledger.qualifying[row[0]] = row[1] as Int64 }
        }
        return ledger
    }

    static func isEnrolled(_ member: MemberID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT enrolled IS NOT NULL FROM members WHERE id = ?"), arguments: [member.rawValue]) ?? false
    }

    /// The member view: nil when neither the member nor its survivor is enrolled here.
    static func view(of member: MemberID, asOfMs: Int64, _ db: Database) throws -> MemberView? {
        try view(of: member, programme: try programme(db), asOfMs: asOfMs, db)
    }

    static func view(of member: MemberID, programme: Programme, asOfMs: Int64, _ db: Database) throws -> MemberView? {
        let root = try root(of: member, db)
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM members WHERE id = ? AND enrolled IS NOT NULL"), arguments: [root.rawValue])
        else { return nil }
        return MemberView(
            id: member, card: try currentCard(of: root, db),
            name: row["name"], phone: row["phone"], birthday: row["birthday"],
            standing: try standing(of: root, programme: programme, asOfMs: asOfMs, db),
            mergedInto: root == member ? nil : root)
    }

    /// The member's latest issued card that is not blocked.
    static func currentCard(of root: MemberID, _ db: Database) throws -> CardNumber? {
        // The latest issued, then the greatest number, compared byte by byte as SQLite's
        // `ORDER BY issued DESC, card DESC` compares them: a member has a card or two, and that
        // `ORDER BY ... LIMIT 1` built a temporary B-tree each time (every sale's answer reads it).
        var current: (issued: String, card: String)?
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT issued, card FROM cards WHERE member_id = ? AND blocked = 0 AND issued IS NOT NULL
            """), arguments: [root.rawValue])
        while let row = try rows.next() {
            let candidate: (issued: String, card: String) = (row[0], row[1])
            if let best = current, !Self.bytes(of: best, before: candidate) { continue }
            current = candidate
        }
        return current.map { CardNumber($0.card) }
    }

    /// Whether `a` sorts before `b` by their UTF-8 bytes, field by field (SQLite's BINARY order).
    static func bytes(of a: (String, String), before b: (String, String)) -> Bool {
        if !a.0.utf8.elementsEqual(b.0.utf8) { return a.0.utf8.lexicographicallyPrecedes(b.0.utf8) }
        return a.1.utf8.lexicographicallyPrecedes(b.1.utf8)
    }

    /// The wall-clock ms of a stored stamp key (`16 hex digits/origin`).
    static func wallMs(ofStampKey key: String) -> Int64? {
        // The 16 hex digits before the "/", read byte by byte: segments read one per member,
        // and splitting the string was most of their time at a million members.
        var packed: UInt64 = 0, digits = 0
        for byte in key.utf8 {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "/"):
                guard digits > 0, let hlc = HLCTimestamp(packed: Int64(bitPattern: packed)) else { return nil }
                return hlc.wallMs
            default: return nil
            }
            guard digits < 16 else { return nil }
            packed = packed << 4 | UInt64(digit)
            digits += 1
        }
        return nil
    }

    static func allViews(asOfMs: Int64, _ db: Database) throws -> [MemberView] {
        let programme = try programme(db)
        let ids = try String.fetchAll(db.cachedStatement(sql: "SELECT id FROM members WHERE enrolled IS NOT NULL"))
        return try ids.map(MemberID.init).sorted().compactMap { try view(of: $0, programme: programme, asOfMs: asOfMs, db) }
    }

    /// Members enrolled and not merged into another: the members `allViews` gives with no
    /// `mergedInto`, counted without making their views.
    static func memberCount(_ db: Database) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: """
            SELECT COUNT(*) FROM members WHERE enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges)
            """)) ?? 0
    }

    struct CardRecord {
        var member: MemberID?
        var blocked: Bool
    }

    static func card(_ card: CardNumber, _ db: Database) throws -> CardRecord? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT member_id, blocked FROM cards WHERE card = ?"), arguments: [card.rawValue])
        else { return nil }
        let member: String? = row["member_id"]
        return CardRecord(member: member.map(MemberID.init), blocked: row["blocked"])
    }

    /// Enrolled members that are not merged into another and carry this phone.
    static func roots(withPhone phone: String, _ db: Database) throws -> [(MemberID, String)] {
        try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, enrolled FROM members
            WHERE phone = ? AND enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges)
            ORDER BY enrolled
            """), arguments: [phone]).map { (MemberID($0["id"]), $0["enrolled"]) }
    }

    /// How much of the operation's amount refunds have taken back so far.
    static func refundedAmount(_ op: OperationID, _ db: Database) throws -> Int64 {
        // A refund its store voided (its answer lost, the hub reversed it) refunded nothing.
        try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE of = ? AND by NOT IN (SELECT of FROM voids)
            """), arguments: [op.description]) ?? 0
    }

    static func isVoided(_ op: OperationID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM voids WHERE of = ?)"), arguments: [op.description]) ?? false
    }

    static func entries(of op: OperationID, _ db: Database) throws -> [LedgerEntry] {
        try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM entries WHERE op_id = ? ORDER BY part"), arguments: [op.description]).map { row in
            LedgerEntry(member: MemberID(row["member_id"]), value: row["value"], bonus: row["bonus"], points: row["points"],
                        lot: (row["lot"] as Int64?).map(LocalDay.init), expired: row["expired"], qualifying: row["qualifying"])
        }
    }

    /// Operations that used the coupon and whose use no full refund undid.
    static func liveUses(of coupon: String, _ db: Database) throws -> [String] {
        try String.fetchAll(db.cachedStatement(sql: """
            SELECT op_id FROM coupon_uses u WHERE coupon = ?
            AND NOT EXISTS (SELECT 1 FROM coupon_restores r WHERE r.coupon = u.coupon AND r.use_op = u.op_id)
            ORDER BY op_id
            """), arguments: [coupon])
    }

    // MARK: Snapshot (the folded state as a new node loads it)

    struct State {
        var members: [Snapshot.Member]
        var cards: [Snapshot.Card]
        var entries: [Snapshot.Entry]
        var merges: [Snapshot.Merge]
        var refunds: [Snapshot.Refunded]
        var voided: [OperationID]
        var rules: [RulesPublished]
        var coupons: [Snapshot.HeldCoupon]
        var couponUses: [Snapshot.Pair]
        var couponRestores: [Snapshot.Pair]
        var memberships: [Snapshot.Membership]
        var leases: [Snapshot.Lease] = []
        var recalls: [Snapshot.Recall] = []
        var recallAnswers: [Snapshot.Pair] = []
    }

    /// The log's newest version (0 when empty).
    /// `schema`: the database in `db` whose log is meant (`main`, or one attached).
    static func logHead(_ db: Database, schema: String = "main") throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(version), 0) FROM \(schema).ops")) ?? 0
    }

    /// Where a paged export stands: the table it is in, and the key of the last row sent.
    struct PagePosition: Equatable, Sendable {
        var table: Int
        var key: [String]
    }

    /// One table of the state, exported in the order of its primary key.
    private struct Table: Sendable {
        var name: String
        var columns: String
        var keys: [String]
        /// Key columns holding integers (bound back as integers).
        var integerKeys: Set<String> = []
        var append: @Sendable (Row, inout State) throws -> Void
    }

    private static let tables: [Table] = [
        // The three large tables are read by column position: a look-up by name lowercases the
        // name every time, which was the largest single cost of a page at a million members.
        Table(name: "members", columns: "id, enrolled, referrer, name, name_stamp, phone, phone_stamp, birthday, birthday_stamp", keys: ["id"]) { row, s in
            s.members.append(Snapshot.Member(id: MemberID(row[0]), enrolled: row[1], referrer: (row[2] as String?).map(MemberID.init),
                                             name: row[3], nameStamp: row[4], phone: row[5], phoneStamp: row[6],
                                             birthday: row[7], birthdayStamp: row[8]))
        },
        Table(name: "cards", columns: "card, member_id, issued, blocked", keys: ["card"]) { row, s in
            s.cards.append(Snapshot.Card(card: CardNumber(row[0]), member: (row[1] as String?).map(MemberID.init),
                                         issued: row[2], blocked: row[3]))
        },
        Table(name: "entries", columns: "op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms",
              keys: ["member_id", "op_id", "part"], integerKeys: ["part"]) { row, s in
            s.entries.append(Snapshot.Entry(op: row[0], part: row[1], member: MemberID(row[2]), value: row[3],
                                            bonus: row[4], points: row[5], lot: (row[6] as Int64?).map { LocalDay($0).iso },
                                            expired: row[7], qualifying: row[8], atMs: row[9]))
        },
        Table(name: "merges", columns: "from_id, into_id, stamp", keys: ["from_id"]) { row, s in
            s.merges.append(Snapshot.Merge(from: MemberID(row["from_id"]), into: MemberID(row["into_id"]), stamp: row["stamp"]))
        },
        Table(name: "refunds", columns: "of, by, amount", keys: ["of", "by"]) { row, s in
            s.refunds.append(Snapshot.Refunded(of: row["of"], by: row["by"], amount: row["amount"]))
        },
        Table(name: "voids", columns: "of", keys: ["of"]) { row, s in
            if let id = OperationID(row["of"]) { s.voided.append(id) }
        },
        Table(name: "rules", columns: "version, body", keys: ["version"], integerKeys: ["version"]) { row, s in
            s.rules.append(RulesPublished(version: row["version"], programme: try JSONText.decode(JSONValue.self, row["body"])))
        },
        Table(name: "coupons", columns: "id, body, stamp", keys: ["id"]) { row, s in
            s.coupons.append(Snapshot.HeldCoupon(coupon: try JSONText.decode(Coupon.self, row["body"]), stamp: row["stamp"]))
        },
        Table(name: "coupon_uses", columns: "coupon, op_id", keys: ["coupon", "op_id"]) { row, s in
            s.couponUses.append(Snapshot.Pair(from: row["coupon"], to: row["op_id"]))
        },
        Table(name: "coupon_restores", columns: "coupon, use_op", keys: ["coupon", "use_op"]) { row, s in
            s.couponRestores.append(Snapshot.Pair(from: row["coupon"], to: row["use_op"]))
        },
        Table(name: "memberships", columns: "op_id, body", keys: ["op_id"]) { row, s in
            s.memberships.append(Snapshot.Membership(op: row["op_id"], period: try JSONText.decode(MembershipPeriod.self, row["body"])))
        },
        Table(name: "leases", columns: "*", keys: ["op_id"]) { row, s in
            guard let store = StoreID(rawValue: row["store"]) else { throw DomainError(.internalError, "corrupt lease row") }
            s.leases.append(Snapshot.Lease(op: row["op_id"], member: MemberID(row["member_id"]), store: store, value: row["value"],
                                           points: row["points"], expiresMs: row["expires_ms"], atMs: row["at_ms"], reverses: row["reverses"]))
        },
        Table(name: "recalls", columns: "*", keys: ["op_id"]) { row, s in
            guard let store = StoreID(rawValue: row["store"]) else { throw DomainError(.internalError, "corrupt recall row") }
            s.recalls.append(Snapshot.Recall(op: row["op_id"], member: MemberID(row["member_id"]), store: store, value: row["value"], points: row["points"]))
        },
        Table(name: "recall_answers", columns: "recall_op, by", keys: ["recall_op"]) { row, s in
            s.recallAnswers.append(Snapshot.Pair(from: row["recall_op"], to: row["by"]))
        },
    ]

    /// Up to `limit` rows of the state after `position` (all of it when `limit` is nil), the
    /// tables in a fixed order and each in its key order, and where the next page starts (nil
    /// at the end). Keys, not row ids, mark the place, so the next page may come from another
    /// hub process's fold.
    static func exportPage(after position: PagePosition?, limit: Int?, _ db: Database) throws -> (state: State, next: PagePosition?) {
        var state = State(members: [], cards: [], entries: [], merges: [], refunds: [], voided: [], rules: [],
                          coupons: [], couponUses: [], couponRestores: [], memberships: [])
        var room = limit ?? Int.max
        var table = position?.table ?? 0
        var after = position?.key
        guard table >= 0 && table <= tables.count else { throw DomainError(.invalidRequest, "no such snapshot page") }
        while table < tables.count {
            let spec = tables[table]
            let order = spec.keys.joined(separator: ", ")
            var arguments: [(any DatabaseValueConvertible)?] = []
            var sql = "SELECT \(spec.columns) FROM \(spec.name)"
            if let after {
                guard after.count == spec.keys.count else { throw DomainError(.invalidRequest, "a snapshot page token that does not fit") }
                sql += " WHERE (\(order)) > (\(spec.keys.map { _ in "?" }.joined(separator: ", ")))"
                for (column, value) in zip(spec.keys, after) {
                    if spec.integerKeys.contains(column) {
                        guard let number = Int64(value) else { throw DomainError(.invalidRequest, "a snapshot page token that does not fit") }
                        arguments.append(number)
                    } else {
                        arguments.append(value)
                    }
                }
            }
            sql += " ORDER BY \(order)"
            if limit != nil { sql += " LIMIT \(room)" }
            let rows = try Row.fetchAll(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
            for row in rows { try spec.append(row, &state) }
            room -= rows.count
            if limit != nil && room <= 0, let last = rows.last {
                let key = spec.keys.map { column -> String in
                    let value = last[column] as DatabaseValue
                    return switch value.storage {
                    case .int64(let n): String(n)
                    case .string(let text): text
                    default: value.description
                    }
                }
                return (state, PagePosition(table: table, key: key))
            }
            table += 1
            after = nil
        }
        return (state, nil)
    }

    /// The state tables, in the order a snapshot carries them.
    static var stateTables: [String] { tables.map(\.name) }

    /// Empties the state tables (a bootstrap that was interrupted starts again).
    static func clearState(_ db: Database) throws {
        WriteMemo.update(db) { $0.programme = nil }
        // Without the triggers: their sums go with the entries, and the deletes stay whole-table ones.
        try withoutTriggers(on: stateTables, db) {
            for table in stateTables + entrySumTables { try db.execute(sql: "DELETE FROM \(table)") }
        }
    }

    /// Loads a snapshot into an empty replica, entry for entry.
    static func importState(_ s: Snapshot, _ db: Database) throws {
        WriteMemo.update(db) { $0.programme = nil }
        for m in s.members {
            try db.cachedStatement(sql: """
                INSERT INTO members (id, enrolled, referrer, name, name_stamp, phone, phone_stamp, birthday, birthday_stamp)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [m.id.rawValue, m.enrolled, m.referrer?.rawValue, m.name, m.nameStamp, m.phone, m.phoneStamp, m.birthday, m.birthdayStamp])
        }
        for c in s.cards {
            try db.cachedStatement(sql: "INSERT INTO cards (card, member_id, issued, blocked) VALUES (?, ?, ?, ?)").execute(
                arguments: [c.card.rawValue, c.member?.rawValue, c.issued, c.blocked])
        }
        for e in s.entries {
            try db.cachedStatement(sql: """
                INSERT INTO entries (op_id, part, member_id, value, bonus, points, lot, expired, qualifying, at_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [e.op, e.part, e.member.rawValue, e.value, e.bonus, e.points, e.lot.flatMap(LocalDay.init(iso:))?.number,
                                 e.expired, e.qualifying, e.atMs])
        }
        for m in s.merges {
            try db.cachedStatement(sql: "INSERT INTO merges (from_id, into_id, stamp) VALUES (?, ?, ?)").execute(arguments: [m.from.rawValue, m.into.rawValue, m.stamp])
        }
        for r in s.refunds {
            try db.cachedStatement(sql: "INSERT INTO refunds (of, by, amount) VALUES (?, ?, ?)").execute(arguments: [r.of, r.by, r.amount])
        }
        for v in s.voided {
            try db.cachedStatement(sql: "INSERT INTO voids (of, by) VALUES (?, 'snapshot')").execute(arguments: [v.description])
        }
        for r in s.rules {
            try db.cachedStatement(sql: "INSERT INTO rules (version, body) VALUES (?, ?)").execute(arguments: [r.version, try JSONText.encode(r.programme)])
        }
        for c in s.coupons {
            try db.cachedStatement(sql: "INSERT INTO coupons (id, member_id, body, stamp) VALUES (?, ?, ?, ?)").execute(
                arguments: [c.coupon.id, c.coupon.member.rawValue, try JSONText.encode(c.coupon), c.stamp])
        }
        for u in s.couponUses {
            try db.cachedStatement(sql: "INSERT INTO coupon_uses (coupon, op_id) VALUES (?, ?)").execute(arguments: [u.from, u.to])
        }
        for r in s.couponRestores {
            try db.cachedStatement(sql: "INSERT INTO coupon_restores (coupon, use_op) VALUES (?, ?)").execute(arguments: [r.from, r.to])
        }
        for m in s.memberships {
            try db.cachedStatement(sql: "INSERT INTO memberships (op_id, member_id, body) VALUES (?, ?, ?)").execute(
                arguments: [m.op, m.period.member.rawValue, try JSONText.encode(m.period)])
        }
        for l in s.leases ?? [] {
            try db.cachedStatement(sql: """
                INSERT INTO leases (op_id, member_id, store, value, points, expires_ms, at_ms, reverses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [l.op, l.member.rawValue, l.store.rawValue, l.value, l.points, l.expiresMs, l.atMs, l.reverses])
        }
        for r in s.recalls ?? [] {
            try db.cachedStatement(sql: "INSERT INTO recalls (op_id, member_id, store, value, points) VALUES (?, ?, ?, ?, ?)").execute(
                arguments: [r.op, r.member.rawValue, r.store.rawValue, r.value, r.points])
        }
        for a in s.recallAnswers ?? [] {
            try db.cachedStatement(sql: "INSERT INTO recall_answers (recall_op, by) VALUES (?, ?)").execute(arguments: [a.from, a.to])
        }
    }
}

/// What one write of the hub's reads again and again, remembered for that write only (by
/// connection), and forgotten where the write changes it: the programme in force (a new
/// version applied) and the summaries' settings (set). Inside `remembering` nothing else writes
/// (the chain has one writer), so what was read stays true until the write changes it; outside
/// it, nothing is remembered and every read goes to the database. (Forgetting at the end of
/// the transaction with a GRDB transaction observer instead made GRDB do observers'
/// bookkeeping on every statement: a tenth of the writer's time under ingest.)
enum WriteMemo {
    struct Values: Sendable {
        var settings: HubSummaries.Settings?
        var programme: Programme?
        /// Store days counted by this write and not yet added to `store_days`: a push's 500
        /// operations of one store, mostly of one day, were 500 upserts of the same row (a
        /// sixth of the hub's writer). Added when the outermost `remembering` ends, or before
        /// anything else reads or clears the table (`HubSummaries.flushCounts`).
        var days: [HubSummaries.DayKey: HubSummaries.DayCounts] = [:]
        /// Members' sums and activity counted by this write and not yet written, the same way.
        var sums: [String: HubSummaries.SumsDelta] = [:]
        var activity: [String: HubSummaries.ActivityDelta] = [:]
    }

    private static let memo = Mutex<[ObjectIdentifier: Values]>([:])

    /// Runs `body`, one write transaction (or part of one), remembering; inside another such
    /// run it only runs `body`.
    static func remembering<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        precondition(db.isInsideTransaction, "what a write remembers holds for its transaction only")
        let key = ObjectIdentifier(db)
        let outermost = memo.withLock { memo -> Bool in
            guard memo[key] == nil else { return false }
            memo[key] = Values()
            return true
        }
        defer { if outermost { _ = memo.withLock { $0.removeValue(forKey: key) } } }
        guard outermost else { return try body() }
        let result: T
        do {
            result = try body()
        } catch {
            // The write fails and its transaction is rolled back (every caller's is, and SQLite
            // may have rolled it back already, when writing now would go to the database
            // outside any transaction): what it counted goes with it, unwritten.
            throw error
        }
        try HubSummaries.flushCounts(db)
        return result
    }

    /// What this write remembers (nil outside a remembering write).
    static func values(_ db: Database) -> Values? {
        memo.withLock { $0[ObjectIdentifier(db)] }
    }

    /// Changes what this write remembers (nothing outside a remembering write), in place: a
    /// copy would copy the store days' dictionary at each change. False outside.
    @discardableResult
    static func update(_ db: Database, _ change: (inout Values) -> Void) -> Bool {
        memo.withLock { memo in
            let key = ObjectIdentifier(db)
            guard memo[key] != nil else { return false }
            change(&memo[key, default: Values()])
            return true
        }
    }
}

/// Decoded programmes by document text: a till reads the rules on every sale, and decoding
/// and validating the document each time would cost more than the sale's SQL.
enum ProgrammeCache {
    private static let cache = Mutex<[String: Programme]>([:])

    static func programme(text: String) throws -> Programme {
        if let hit = cache.withLock({ $0[text] }) { return hit }
        let programme = try Programme.parse(Data(text.utf8))
        cache.withLock { if $0.count > 64 { $0.removeAll() }; $0[text] = programme }
        return programme
    }
}

extension Operation {
    /// The operation as stored: its body is canonical JSON text.
    init(row: Row) throws {
        guard let id = OperationID(row["id"] as String), let hlc = HLCTimestamp(packed: row["hlc"]) else {
            throw DomainError(.internalError, "corrupt operation row")
        }
        self.init(id: id, hlc: hlc, kind: row["kind"], kindVersion: row["kind_version"],
                  body: try JSONText.decode(JSONValue.self, row["body"]))
    }
}
