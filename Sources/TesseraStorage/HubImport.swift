import Foundation
import GRDB
import TesseraCore

/// What an import did, row by row where it did not import one.
public struct ImportReport: Sendable {
    /// A row the hub already holds: its phone belongs to a member (imported by an earlier run
    /// of the same file, or enrolled at a store). Nothing is written for it.
    public struct Skip: Sendable, Hashable {
        public var line: Int
        public var member: MemberID
        public var reason: String
    }
    public var imported = 0
    public var skipped: [Skip] = []
    /// Rows the hub cannot take (a store it does not know, a card another member holds). Any
    /// problem means nothing was written.
    public var problems: [MemberImport.Problem] = []
}

/// One member as `tessera export` writes it (and `tessera import` reads it back).
public struct ExportedMember: Sendable, Hashable {
    public var id: MemberID
    public var phone: String
    public var name: String
    public var birthday: String?
    public var card: CardNumber?
    public var principal: Int64
    public var bonus: Int64
    public var points: Int64
    public var store: String
    public var reference: String?
    public var tier: String?

    public static let columns = ["id", "phone", "name", "birthday", "card", "principal", "bonus", "points", "store", "reference", "tier"]
    public var fields: [String] {
        [id.rawValue, phone, name, birthday ?? "", card?.rawValue ?? "", String(principal), String(bonus), String(points), store,
         reference ?? "", tier ?? ""]
    }
}

extension HubStore {
    /// Imports checked rows as ordinary operations of the hub's: an enrolment on behalf of the
    /// member's store (`member.enrolled` with `store`), further cards (`card.issued`), and the
    /// opening balance (`balance.opened`): balances stay folds of the log, and every node gets
    /// the members by sync. First every row is checked against what the hub holds; a problem
    /// means nothing is written. A phone the hub already knows is skipped and reported, so
    /// running the same file again changes nothing. Rows are written `batch` to a transaction.
    public func importMembers(_ rows: [MemberImport.Row], batch: Int = 2_000, checkOnly: Bool = false, actor: String = "cli",
                              progress: (Int) -> Void = { _ in }) throws -> ImportReport {
        try refresh()
        var report = ImportReport()
        let stores = Set(try ledger.stores().map(\.id))
        var toWrite: [MemberImport.Row] = []
        var imported: [String: MemberID] = [:]
        try pool.read { db in
            imported = try Self.importedReferences(db)
            let today = try Replica.programme(db).calendar.day(ms: self.physicalMs())
            for row in rows {
                if !stores.contains(row.store) {
                    report.problems.append(.init(line: row.line, message: "store \(row.store) is not registered at the hub (tessera store add)"))
                    continue
                }
                if let expiry = row.pointsExpireOn.flatMap(LocalDay.init(iso:)), expiry < today {
                    report.problems.append(.init(line: row.line, message: "points_expire_on \(expiry.iso) has passed: leave such points out"))
                }
                let holder = try Self.holder(of: row, imported, db)
                for card in row.cards {
                    if let owner = try Replica.card(card, db)?.member, try Replica.root(of: owner, db) != holder?.member {
                        report.problems.append(.init(line: row.line, message: "card \(card) already belongs to member \(owner)"))
                    }
                }
                if let holder {
                    report.skipped.append(ImportReport.Skip(line: row.line, member: holder.member, reason: holder.reason))
                } else {
                    toWrite.append(row)
                }
            }
        }
        guard report.problems.isEmpty, !checkOnly else { return report }
        var done = rows.count - toWrite.count
        progress(done)
        var start = 0
        while start < toWrite.count {
            let chunk = toWrite[start..<min(start + max(1, batch), toWrite.count)]
            let (count, skipped) = try write { db, w in
                var written = 0
                var skipped: [ImportReport.Skip] = []
                let programme = try Replica.programme(db)
                let lot = programme.expiry.lot(earnedOn: programme.calendar.day(ms: self.physicalMs()))
                for row in chunk {
                    // A store may have enrolled the phone since the check: its member stands.
                    if let holder = try Self.holder(of: row, imported, db) {
                        skipped.append(ImportReport.Skip(line: row.line, member: holder.member, reason: holder.reason))
                        continue
                    }
                    let member = try self.importRow(row, programme: programme, lot: lot, db, w)
                    // (A write that fails ends the import: what it added here is never used.)
                    if let reference = row.reference { imported[reference] = member }
                    written += 1
                }
                try w.audit(actor: actor, action: "members.imported",
                            detail: "\(written) members (lines \(chunk.first?.line ?? 0)-\(chunk.last?.line ?? 0))", at: isoNow())
                return (written, skipped)
            }
            report.imported += count
            report.skipped += skipped
            done += chunk.count
            progress(done)
            start += chunk.count
        }
        report.skipped.sort { $0.line < $1.line }
        return report
    }

    /// The references of the members the hub imported, and who they are now.
    private static func importedReferences(_ db: Database) throws -> [String: MemberID] {
        var out: [String: MemberID] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT json_extract(body, '$.reference') AS reference, member_id FROM ops
            WHERE kind = 'member.enrolled' AND origin = 'hub' AND json_extract(body, '$.reference') IS NOT NULL
            """)) {
            out[row["reference"]] = MemberID(row["member_id"])
        }
        return out
    }

    /// Who already holds a row: the member imported under its reference (even if a store has
    /// changed that member's phone since), or the member with its phone.
    private static func holder(of row: MemberImport.Row, _ imported: [String: MemberID], _ db: Database) throws -> (member: MemberID, reason: String)? {
        if let reference = row.reference, let member = imported[reference] {
            let root = try Replica.root(of: member, db)
            return (root, "already imported as \(root)")
        }
        guard let holder = try Replica.roots(withPhone: row.phone, db).first?.0 else { return nil }
        let reference = try String.fetchOne(db.cachedStatement(sql: """
            SELECT json_extract(body, '$.reference') FROM ops WHERE kind = 'member.enrolled' AND member_id = ?
            """), arguments: [holder.rawValue])
        if reference != nil && row.reference == nil { return (holder, "already imported as \(holder)") }
        return (holder, "phone already belongs to member \(holder); not imported")
    }

    private func importRow(_ row: MemberImport.Row, programme: Programme, lot: LocalDay, _ db: Database, _ w: any LedgerWrites) throws -> MemberID {
        let (id, hlc) = try nextHubStamp(db)
        let member = MemberID(enrolment: id)
        // The newest card issued is the member's current one: the first listed is issued last.
        let cards = row.cards.dropFirst() + row.cards.prefix(1)
        let generated = CardNumber(issuedBy: .hub, seq: id.seq)
        var card = cards.first ?? generated
        var n = 1
        while cards.isEmpty, try Replica.card(card, db) != nil {
            n += 1
            card = CardNumber("\(generated.rawValue)-\(n)")
        }
        let enrolment = OperationBody.memberEnrolled(MemberEnrolled(
            member: member, card: card, name: row.name, phone: row.phone, birthday: row.birthday,
            rulesVersion: programme.version, store: row.store, reference: row.reference))
        _ = try append(Operation(id: id, hlc: hlc, body: enrolment), enrolment, db, w)
        for extra in cards.dropFirst() {
            let issued = OperationBody.cardIssued(CardIssued(member: member, card: extra))
            try appendHubOperation(issued, db, w)
        }
        guard row.principal > 0 || row.bonus > 0 || row.points > 0 else { return member }
        let expiry = row.pointsExpireOn ?? (row.points > 0 && lot != .never ? lot.iso : nil)
        let opening = OperationBody.balanceOpened(BalanceOpened(
            member: member, store: row.store, value: row.principal, bonus: row.bonus, points: row.points,
            pointsExpireOn: expiry, reference: row.reference))
        try appendHubOperation(opening, db, w)
        return member
    }

    /// Every member (merged duplicates left out) as the hub holds them now.
    public func exportMembers() throws -> [ExportedMember] {
        try refresh()
        let now = physicalMs()
        return try pool.read { db in
            var joined: [String: (store: String, reference: String?)] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: """
                SELECT member_id, origin, json_extract(body, '$.store') AS store, json_extract(body, '$.reference') AS reference
                FROM ops WHERE kind = 'member.enrolled' AND member_id IS NOT NULL
                """)) {
                let store: String? = row["store"]
                joined[row["member_id"]] = (store ?? row["origin"], row["reference"])
            }
            return try Replica.allViews(asOfMs: now, db).filter { $0.mergedInto == nil }.map { v in
                ExportedMember(id: v.id, phone: v.phone ?? "", name: v.name ?? "", birthday: v.birthday, card: v.card,
                               principal: v.balance - v.bonus, bonus: v.bonus, points: v.pointsAvailable,
                               store: joined[v.id.rawValue]?.store ?? "", reference: joined[v.id.rawValue]?.reference, tier: v.tier)
            }
        }
    }
}
