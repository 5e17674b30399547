import GRDB
import TesseraCore
import TesseraProtocol

/// The folded state every replica (node or hub) keeps in SQLite, and the functions that apply
/// operation effects to it. It mirrors `ChainState` effect for effect: each statement below
/// commutes and is idempotent, so operations may arrive in any order, and more than once.
/// Balances are never stored: they are sums over the `entries` rows, one per operation.
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
    }

    /// Applies the effects of one operation body, stamped with the operation's (HLC, origin).
    static func apply(_ body: OperationBody, of op: Operation, _ db: Database) throws {
        let stamp = op.stamp.key
        let opID = op.id.description
        for effect in body.effects {
            switch effect {
            case .enrol(let member, let referrer):
                try db.execute(sql: """
                    INSERT INTO members (id, enrolled, referrer) VALUES (?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET enrolled = excluded.enrolled, referrer = excluded.referrer
                    WHERE members.enrolled IS NULL OR excluded.enrolled < members.enrolled
                    """, arguments: [member.rawValue, stamp, referrer?.rawValue])
            case .field(let member, let field, let value):
                let column = field.rawValue // from a closed enum: safe to splice
                try db.execute(sql: """
                    INSERT INTO members (id, \(column), \(column)_stamp) VALUES (?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET \(column) = excluded.\(column), \(column)_stamp = excluded.\(column)_stamp
                    WHERE excluded.\(column)_stamp > members.\(column)_stamp
                    """, arguments: [member.rawValue, value, stamp])
            case .issueCard(let card, let member):
                try db.execute(sql: """
                    INSERT INTO cards (card, member_id, issued) VALUES (?, ?, ?)
                    ON CONFLICT(card) DO UPDATE SET member_id = excluded.member_id, issued = excluded.issued
                    WHERE cards.issued IS NULL OR excluded.issued < cards.issued
                    """, arguments: [card.rawValue, member.rawValue, stamp])
            case .blockCard(let card):
                try db.execute(sql: """
                    INSERT INTO cards (card, blocked) VALUES (?, 1) ON CONFLICT(card) DO UPDATE SET blocked = 1
                    """, arguments: [card.rawValue])
            case .ledger(let member, let value, let points):
                try db.execute(sql: "INSERT OR IGNORE INTO entries (op_id, member_id, value, points) VALUES (?, ?, ?, ?)",
                               arguments: [opID, member.rawValue, value, points])
            case .merge(let from, let into):
                try db.execute(sql: """
                    INSERT INTO merges (from_id, into_id, stamp) VALUES (?, ?, ?)
                    ON CONFLICT(from_id) DO UPDATE SET into_id = excluded.into_id, stamp = excluded.stamp
                    WHERE excluded.stamp < merges.stamp
                    """, arguments: [from.rawValue, into.rawValue, stamp])
            case .refund(let of):
                try db.execute(sql: "INSERT OR IGNORE INTO refunds (of, by) VALUES (?, ?)", arguments: [of.description, opID])
            case .void(let of):
                try db.execute(sql: "INSERT OR IGNORE INTO voids (of, by) VALUES (?, ?)", arguments: [of.description, opID])
            }
        }
    }

    // MARK: Queries

    static func root(of member: MemberID, _ db: Database) throws -> MemberID {
        var current = member
        for _ in 0..<64 {
            guard let next = try String.fetchOne(db, sql: "SELECT into_id FROM merges WHERE from_id = ?", arguments: [current.rawValue])
            else { return current }
            current = MemberID(next)
        }
        preconditionFailure("merge chain longer than 64: a cycle")
    }

    /// Every member id that resolves to `root` (root included).
    static func group(of root: MemberID, _ db: Database) throws -> [MemberID] {
        try String.fetchAll(db, sql: """
            WITH RECURSIVE grp(id) AS (VALUES (?) UNION SELECT merges.from_id FROM merges JOIN grp ON merges.into_id = grp.id)
            SELECT id FROM grp
            """, arguments: [root.rawValue]).map(MemberID.init)
    }

    /// What the member (resolved through merges) holds: the sum of its ledger entries.
    static func holdings(of member: MemberID, _ db: Database) throws -> Holdings {
        let root = try root(of: member, db)
        let row = try Row.fetchOne(db, sql: """
            WITH RECURSIVE grp(id) AS (VALUES (?) UNION SELECT merges.from_id FROM merges JOIN grp ON merges.into_id = grp.id)
            SELECT COALESCE(SUM(value), 0) AS value, COALESCE(SUM(points), 0) AS points
            FROM entries WHERE member_id IN (SELECT id FROM grp)
            """, arguments: [root.rawValue])
        return Holdings(valueMinor: row?["value"] ?? 0, points: row?["points"] ?? 0)
    }

    static func isEnrolled(_ member: MemberID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT enrolled IS NOT NULL FROM members WHERE id = ?", arguments: [member.rawValue]) ?? false
    }

    /// The member view: nil when neither the member nor its survivor is enrolled here.
    static func view(of member: MemberID, _ db: Database) throws -> MemberView? {
        let root = try root(of: member, db)
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM members WHERE id = ? AND enrolled IS NOT NULL", arguments: [root.rawValue])
        else { return nil }
        let card = try String.fetchOne(db, sql: """
            SELECT card FROM cards WHERE member_id = ? AND blocked = 0 AND issued IS NOT NULL
            ORDER BY issued DESC, card DESC LIMIT 1
            """, arguments: [root.rawValue])
        let holdings = try holdings(of: root, db)
        return MemberView(
            id: member, card: card.map(CardNumber.init),
            name: row["name"], phone: row["phone"], birthday: row["birthday"],
            balance: holdings.valueMinor, points: holdings.points,
            mergedInto: root == member ? nil : root)
    }

    static func allViews(_ db: Database) throws -> [MemberView] {
        let ids = try String.fetchAll(db, sql: "SELECT id FROM members WHERE enrolled IS NOT NULL")
        return try ids.map(MemberID.init).sorted().compactMap { try view(of: $0, db) }
    }

    struct CardRecord {
        var member: MemberID?
        var blocked: Bool
    }

    static func card(_ card: CardNumber, _ db: Database) throws -> CardRecord? {
        guard let row = try Row.fetchOne(db, sql: "SELECT member_id, blocked FROM cards WHERE card = ?", arguments: [card.rawValue])
        else { return nil }
        let member: String? = row["member_id"]
        return CardRecord(member: member.map(MemberID.init), blocked: row["blocked"])
    }

    /// Enrolled members that are not merged into another and carry this phone.
    static func roots(withPhone phone: String, _ db: Database) throws -> [(MemberID, String)] {
        try Row.fetchAll(db, sql: """
            SELECT id, enrolled FROM members
            WHERE phone = ? AND enrolled IS NOT NULL AND id NOT IN (SELECT from_id FROM merges)
            ORDER BY enrolled
            """, arguments: [phone]).map { (MemberID($0["id"]), $0["enrolled"]) }
    }

    static func isRefunded(_ op: OperationID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM refunds WHERE of = ?)", arguments: [op.description]) ?? false
    }

    static func isVoided(_ op: OperationID, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM voids WHERE of = ?)", arguments: [op.description]) ?? false
    }

    static func entries(of op: OperationID, _ db: Database) throws -> [(MemberID, Int64, Int64)] {
        try Row.fetchAll(db, sql: "SELECT member_id, value, points FROM entries WHERE op_id = ?", arguments: [op.description])
            .map { (MemberID($0["member_id"]), $0["value"], $0["points"]) }
    }

    // MARK: Snapshot (the folded state as a new node loads it)

    static func exportState(_ db: Database) throws -> (members: [Snapshot.Member], cards: [Snapshot.Card], balances: [Snapshot.Balance],
                                                      merges: [Snapshot.Merge], refunds: [Snapshot.Pair], voided: [OperationID]) {
        let members = try Row.fetchAll(db, sql: "SELECT * FROM members").map { row in
            Snapshot.Member(id: MemberID(row["id"]), enrolled: row["enrolled"], referrer: (row["referrer"] as String?).map(MemberID.init),
                            name: row["name"], nameStamp: row["name_stamp"], phone: row["phone"], phoneStamp: row["phone_stamp"],
                            birthday: row["birthday"], birthdayStamp: row["birthday_stamp"])
        }
        let cards = try Row.fetchAll(db, sql: "SELECT * FROM cards").map { row in
            Snapshot.Card(card: CardNumber(row["card"]), member: (row["member_id"] as String?).map(MemberID.init),
                          issued: row["issued"], blocked: row["blocked"])
        }
        let balances = try Row.fetchAll(db, sql: "SELECT member_id, SUM(value) AS value, SUM(points) AS points FROM entries GROUP BY member_id")
            .map { Snapshot.Balance(member: MemberID($0["member_id"]), value: $0["value"], points: $0["points"]) }
        let merges = try Row.fetchAll(db, sql: "SELECT from_id, into_id, stamp FROM merges").map {
            Snapshot.Merge(from: MemberID($0["from_id"]), into: MemberID($0["into_id"]), stamp: $0["stamp"])
        }
        let refunds = try Row.fetchAll(db, sql: "SELECT of, by FROM refunds").map { Snapshot.Pair(from: $0["of"], to: $0["by"]) }
        let voided = try String.fetchAll(db, sql: "SELECT of FROM voids").compactMap(OperationID.init)
        return (members, cards, balances, merges, refunds, voided)
    }

    /// Loads a snapshot into an empty replica. Balances become one opening entry per member,
    /// attributed to the snapshot's cursor, so they stay sums of entries.
    static func importState(_ s: Snapshot, _ db: Database) throws {
        for m in s.members {
            try db.execute(sql: """
                INSERT INTO members (id, enrolled, referrer, name, name_stamp, phone, phone_stamp, birthday, birthday_stamp)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [m.id.rawValue, m.enrolled, m.referrer?.rawValue, m.name, m.nameStamp, m.phone, m.phoneStamp, m.birthday, m.birthdayStamp])
        }
        for c in s.cards {
            try db.execute(sql: "INSERT INTO cards (card, member_id, issued, blocked) VALUES (?, ?, ?, ?)",
                           arguments: [c.card.rawValue, c.member?.rawValue, c.issued, c.blocked])
        }
        for b in s.balances {
            try db.execute(sql: "INSERT INTO entries (op_id, member_id, value, points) VALUES (?, ?, ?, ?)",
                           arguments: ["snapshot@\(s.cursor)", b.member.rawValue, b.value, b.points])
        }
        for m in s.merges {
            try db.execute(sql: "INSERT INTO merges (from_id, into_id, stamp) VALUES (?, ?, ?)", arguments: [m.from.rawValue, m.into.rawValue, m.stamp])
        }
        for p in s.refunds {
            try db.execute(sql: "INSERT INTO refunds (of, by) VALUES (?, ?)", arguments: [p.from, p.to])
        }
        for v in s.voided {
            try db.execute(sql: "INSERT INTO voids (of, by) VALUES (?, 'snapshot')", arguments: [v.description])
        }
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
