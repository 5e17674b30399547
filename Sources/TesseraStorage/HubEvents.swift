import Crypto
import Foundation
import GRDB
import TesseraCore
import TesseraProtocol

/// Events for head office's other tools. They are recorded in the ledger in the same write as
/// the operation (or the job) behind them, once per key, so a retried push, a job run twice or
/// a second hub process never records one twice; their ids only grow, in commit order (writes
/// go one at a time: §6.2 of the spec), so a reader after id N never misses one.
extension HubStore {
    /// Days without a purchase after which a member is reported dormant (each band once per
    /// spell: a purchase starts a new one).
    static let dormantBands: [Int64] = [30, 60, 90]
    /// Points expiring within this many days are reported, once per lot.
    static let expiringWithinDays: Int64 = 30

    func emit(_ type: HubAPI.EventType, key: String, member: MemberID?, op: OperationID?, data: [String: JSONValue],
              _ db: Database, _ w: any LedgerWrites) throws {
        var data = data
        // Member-centred events carry what a messaging tool needs to reach the member.
        if let member, [.memberEnrolled, .tierChanged, .memberDormant, .memberBirthday, .pointsExpiring].contains(type),
           let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT name, phone FROM members WHERE id = ?"), arguments: [member.rawValue]) {
            if let name: String = row["name"] { data["name"] = .string(name) }
            if let phone: String = row["phone"] { data["phone"] = .string(phone) }
        }
        try w.event(key: key, type: type, member: member?.rawValue, op: op?.description, data: JSONValue.object(data).jsonText, at: isoNow())
    }

    /// Events an operation from a store makes at once: enrolments, recharges (overdrafts and
    /// tier changes are recorded where they are found).
    func emitEvents(of op: Operation, _ body: OperationBody, _ db: Database, _ w: any LedgerWrites) throws {
        switch body {
        case .memberEnrolled(let e) where e.store == nil:
            var data: [String: JSONValue] = ["store": .string(op.id.origin.rawValue), "card": .string(e.card.rawValue)]
            if let birthday = e.birthday { data["birthday"] = .string(birthday) }
            try emit(.memberEnrolled, key: "enrolled:\(op.id)", member: e.member, op: op.id, data: data, db, w)
        case .valueRecharged(let r):
            try emit(.valueRecharged, key: "recharge:\(op.id)", member: try Replica.root(of: r.member, db), op: op.id,
                     data: ["store": .string(op.id.origin.rawValue), "amount": .int(r.amount), "bonus": .int(r.bonus)], db, w)
        default:
            break
        }
    }

    /// The tiers of the members whose tier counter `op` moves, before it is applied, and their
    /// counters after it (empty when the programme has no tiers).
    struct TierMoves {
        var programme: Programme
        var asOfMs: Int64
        var members: [MemberID: (from: String, after: Replica.TierCounter)] = [:]
    }

    func tiersBefore(_ op: Operation, _ body: OperationBody, _ db: Database) throws -> TierMoves? {
        // Every pushed operation passes here: the programme is read only for one that moves a
        // tier counter.
        let moved = body.effects.compactMap { effect -> LedgerEntry? in
            if case .ledger(let e) = effect, e.qualifying != 0 { e } else { nil }
        }
        guard !moved.isEmpty else { return nil }
        let programme = try Replica.programme(db)
        guard programme.tiers != nil else { return nil }
        var moves = TierMoves(programme: programme, asOfMs: physicalMs())
        for entry in moved {
            let root = try Replica.root(of: entry.member, db)
            if moves.members[root] == nil {
                let counter = try Replica.tierCounter(ofRoot: root, programme: programme, db)
                moves.members[root] = (counter.tier(programme, asOfMs: moves.asOfMs)?.name ?? "", counter)
            }
            // After the operation: its entries, stamped with its time, added to the counter
            // read before (one read per operation, not one before and one after).
            moves.members[root]?.after.add(entry.qualifying, atMs: op.hlc.wallMs)
        }
        return moves
    }

    /// A `tier.changed` event for each member whose tier `op` moved.
    func emitTierChanges(_ moves: TierMoves?, op: Operation, _ db: Database, _ w: any LedgerWrites) throws {
        guard let moves else { return }
        for (member, move) in moves.members.sorted(by: { $0.key < $1.key }) {
            let to = move.after.tier(moves.programme, asOfMs: moves.asOfMs)?.name ?? ""
            // (Debug builds, the tests and the simulation: the counter added to is the one the
            // fold now holds.)
            assert(((try? Replica.tier(of: member, programme: moves.programme, asOfMs: moves.asOfMs, db)) ?? nil)?.name ?? "" == to,
                   "tier after \(op.id) of \(member): the counter added to differs from the fold's")
            guard to != move.from else { continue }
            try emit(.tierChanged, key: "tier:\(op.id):\(member)", member: member, op: op.id,
                     data: ["from": move.from.isEmpty ? .null : .string(move.from), "to": to.isEmpty ? .null : .string(to),
                            "store": .string(op.id.origin.rawValue)], db, w)
        }
    }

    /// The calendar's events for one member, from the hub's jobs: the birthday month, a
    /// dormancy band reached, points expiring soon.
    func emitCalendarEvents(member: MemberID, birthday: String?, lastActiveMs: Int64, today: LocalDay, now: Int64,
                            expiringLot: Int64?, programme: Programme, _ db: Database, _ w: any LedgerWrites) throws {
        let month = String(today.iso.prefix(7))
        if let birthday, RulesEngine.birthdayMonth(birthday) == today.civil.month {
            try emit(.memberBirthday, key: "birthday:\(member):\(month)", member: member, op: nil,
                     data: ["birthday": .string(birthday), "month": .string(month)], db, w)
        }
        let idle = today.number - programme.calendar.day(ms: lastActiveMs).number
        if let band = Self.dormantBands.last(where: { $0 <= idle }) {
            try emit(.memberDormant, key: "dormant:\(member):\(lastActiveMs):\(band)", member: member, op: nil,
                     data: ["days": .int(band), "idle_days": .int(idle), "last_active": .string(isoTime(ms: lastActiveMs))], db, w)
        }
        if let lot = expiringLot {
            let points = try Self.pointsExpiring(member, withinDays: Self.expiringWithinDays, programme: programme, now: now, db)
            if points > 0 {
                let day = LocalDay(lot)
                try emit(.pointsExpiring, key: "expiring:\(member):\(day.iso)", member: member, op: nil,
                         data: ["points": .int(points), "expires_on": .string(day.iso), "within_days": .int(Self.expiringWithinDays)], db, w)
            }
        }
    }

    /// Points the rules will have expired within `days`, less what is due already.
    static func pointsExpiring(_ member: MemberID, withinDays days: Int64, programme: Programme, now: Int64, _ db: Database) throws -> Int64 {
        let due = try Replica.standing(of: member, programme: programme, asOfMs: now, db).expiryDue
        let later = try Replica.standing(of: member, programme: programme, asOfMs: now + days * 86_400_000, db).expiryDue
        return max(0, later - max(0, due))
    }

    // MARK: - The feed and webhooks (head office)

    /// Up to `limit` events after `cursor` of the given types (all when nil). `next` is the last
    /// event passed, matched or not, so a reader asking `after=next` never reads one twice nor
    /// misses one; `more` says whether events lie beyond it. A page scans at most ten pages of
    /// other types (and of types this build does not know) before it answers.
    public func events(after cursor: Int64, limit: Int, types: Set<HubAPI.EventType>?) throws -> HubAPI.EventPage {
        let limit = max(1, min(limit, 1_000))
        var next = cursor, out: [HubAPI.Event] = []
        for _ in 0..<10 {
            let page = try ledger.events(after: next, limit: limit)
            for row in page {
                next = row.id
                if let event = row.event, types?.contains(event.type) ?? true { out.append(event) }
                if out.count == limit { break }
            }
            if out.count == limit || page.count < limit { break }
        }
        let more = !(try ledger.events(after: next, limit: 1)).isEmpty
        return HubAPI.EventPage(events: out, next: next, more: more)
    }

    /// Registers a webhook for events from now on. `allowedHosts` are the hosts the operator
    /// lets the hub call (`tessera hub --webhook-hosts`): the hub never calls anywhere else.
    public func addWebhook(_ request: HubAPI.WebhookRequest, allowedHosts: Set<String>, actor: String) throws -> HubAPI.Webhook {
        guard let url = URL(string: request.url), let scheme = url.scheme, ["http", "https"].contains(scheme), let host = url.host,
              request.url.unicodeScalars.count <= 2_000 else {
            throw DomainError(.invalidRequest, "url must be an http:// or https:// URL")
        }
        guard url.user == nil && url.password == nil else {
            throw DomainError(.invalidRequest, "url must not carry a user or password (the receiver checks the signature instead)")
        }
        guard WebhookRecord.allows(allowedHosts, url: request.url) else {
            throw DomainError(.invalidRequest, "the hub delivers only to hosts its operator allows (tessera hub --webhook-hosts); \(host) is not one of them")
        }
        guard !request.events.isEmpty else { throw DomainError(.invalidRequest, "events lists at least one event type") }
        let secret: String
        if let given = request.secret {
            guard (16...200).contains(given.unicodeScalars.count) else { throw DomainError(.invalidRequest, "secret must be 16 to 200 characters") }
            secret = given
        } else {
            secret = Tokens.make(prefix: "whsec_")
        }
        let types = HubAPI.EventType.allCases.filter(Set(request.events).contains)
        let id = "wh-" + Tokens.make(prefix: "").prefix(12)
        return try ledger.administer { w in
            let record = WebhookRecord(id: id, url: request.url, secret: secret, types: types, createdAt: isoNow(), revokedAt: nil,
                                       cursor: try w.eventHead(), failures: 0, retryAtMs: 0)
            try w.addWebhook(record)
            try w.audit(actor: actor, action: "webhook.added", detail: "\(id) \(host) for \(types.map(\.rawValue).joined(separator: ","))", at: isoNow())
            var view = record.view
            view.secret = secret
            return view
        }
    }

    public func webhooks() throws -> [HubAPI.Webhook] { try ledger.webhooks().map(\.view) }

    public func revokeWebhook(_ id: String, actor: String) throws {
        try ledger.administer { w in
            guard try w.revokeWebhook(id, at: isoNow()) else { throw DomainError(.notFound, "no active webhook \(id)") }
            try w.audit(actor: actor, action: "webhook.revoked", detail: id, at: isoNow())
        }
    }

    public func deliveries(webhook: String, limit: Int) throws -> [HubAPI.Delivery] {
        guard try ledger.webhook(webhook) != nil else { throw DomainError(.notFound, "no webhook \(webhook)") }
        return try ledger.deliveries(webhook: webhook, limit: max(1, min(limit, 1_000)))
    }
}

/// The signature a webhook receiver checks: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
/// under the webhook's secret. The time lets a receiver refuse old replays.
public enum WebhookSignature {
    public static func header(secret: String, timestamp: Int64, body: [UInt8]) -> String {
        var message = Array("\(timestamp).".utf8)
        message += body
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(secret.utf8)))
        return "t=\(timestamp),v1=" + Hex.lowercase(mac)
    }
}
