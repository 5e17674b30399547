import struct Foundation.Data
import class Foundation.JSONDecoder
import TesseraCore

/// Sync protocol versions. Every message carries `protocol`; GET requests send the
/// `Tessera-Protocol` header. A hub answers a version it does not support with
/// `400 unsupported_protocol` and the list it does.
public enum ProtocolVersion {
    public static let current = 1
    public static let supported: Set<Int> = [1]
    public static let header = "Tessera-Protocol"
}

/// A sync message, read from JSON text by `JSONValueParser` and `JSONValueDecoder` instead of
/// `JSONDecoder`: the same values and the same refusals (tests compare them), and pushes and
/// pulls of hundreds of operations are read several times faster.
public protocol SyncMessage: Decodable {
    /// Reads the message from JSON text.
    static func read(from data: Data) throws -> Self
}

extension SyncMessage {
    /// Reads the message from JSON text.
    public static func read(from data: Data) throws -> Self {
        try readGenerally(from: data)
    }

    /// Reads the message through a `JSONValue` of the whole text (what a scanned message falls back to).
    public static func readGenerally(from data: Data) throws -> Self {
        try JSONValueDecoder().decode(Self.self, from: try JSONValueParser.parse(data))
    }
}

/// Decodes `T` from JSON text: a sync message through `read(from:)`, anything else through
/// JSONDecoder. Throws `JSONValueParser.Failure` for a sync message that is not JSON.
public func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    if let message = T.self as? any SyncMessage.Type, let value = try message.read(from: data) as? T { return value }
    return try JSONDecoder().decode(T.self, from: data)
}

extension PushRequest: SyncMessage {}
extension PushResponse: SyncMessage {}
extension PullResponse: SyncMessage {}
extension AuthorizeRequest: SyncMessage {}
extension AuthorizeResponse: SyncMessage {}

/// Limits that keep every request bounded.
public enum SyncLimits {
    public static let pushBatchMax = 500
    public static let pullPageMax = 1000
    public static let bodyBytesMax = 8 * 1024 * 1024
    /// Rows of state in a snapshot page: by default, and at most.
    public static let snapshotPageRows = 5_000
    public static let snapshotPageRowsMax = 20_000
}

/// Node -> hub: operations the hub has not acknowledged yet, in the node's sequence order.
public struct PushRequest: Codable, Sendable {
    public var `protocol`: Int
    public var store: StoreID
    public var ops: [Operation]
    public init(store: StoreID, ops: [Operation]) {
        self.protocol = ProtocolVersion.current
        self.store = store
        self.ops = ops
    }
}

public enum PushStatus: String, Codable, Sendable {
    /// Newly accepted, with its version.
    case accepted
    /// The hub had it already (a retry); `version` is the one it got the first time.
    case duplicate
    /// Refused for good, with a reason; kept at the hub as an exception, never silently dropped.
    case rejected
}

public struct PushResult: Codable, Sendable, Hashable {
    public var id: OperationID
    public var status: PushStatus
    public var version: Int64?
    public var reason: String?
    public init(id: OperationID, status: PushStatus, version: Int64? = nil, reason: String? = nil) {
        self.id = id; self.status = status; self.version = version; self.reason = reason
    }
}

public struct PushResponse: Codable, Sendable {
    public var `protocol`: Int
    public var results: [PushResult]
    public init(results: [PushResult]) {
        self.protocol = ProtocolVersion.current
        self.results = results
    }

    /// What `Encodable` makes of it (tested), made directly: the hub answers every push of
    /// 500 operations with one, and through the encoder that was 3 % of its time.
    public var json: JSONValue {
        .object(["protocol": .int(Int64(`protocol`)), "results": .array(results.map(\.json))])
    }
}

extension PushResult {
    var json: JSONValue {
        var fields: [String: JSONValue] = ["id": .string(id.description), "status": .string(status.rawValue)]
        if let version { fields["version"] = .int(version) }
        if let reason { fields["reason"] = .string(reason) }
        return .object(fields)
    }
}

/// One operation as the hub serves it: with its global version.
public struct VersionedOperation: Codable, Sendable, Hashable {
    public var version: Int64
    public var op: Operation
    public init(version: Int64, op: Operation) { self.version = version; self.op = op }
}

/// Hub -> node: operations after the node's cursor, in version order. `cursor` is the version
/// to ask after next time; `more` says another page is waiting.
public struct PullResponse: Codable, Sendable {
    public var `protocol`: Int
    public var ops: [VersionedOperation] { didSet { bodyTexts = [] } } // the texts go with the operations they were read with
    public var cursor: Int64
    public var more: Bool
    /// Each operation's body as its text is written in the page (the hub's own text of it), when
    /// the page was scanned from text (`read(from:)`); empty otherwise. A node stores it as it
    /// is instead of writing the body again. Not part of the message.
    public var bodyTexts: [String] = []
    enum CodingKeys: String, CodingKey { case `protocol`, ops, cursor, more }
    public init(ops: [VersionedOperation], cursor: Int64, more: Bool) {
        self.protocol = ProtocolVersion.current
        self.ops = ops; self.cursor = cursor; self.more = more
    }
}

/// Node -> hub: authorise a spend now. `prior` carries the node's unacknowledged operations
/// about the same member (an enrolment or recharge made offline), which the hub ingests first
/// exactly as if pushed, so it decides on everything the node knows.
public struct AuthorizeRequest: Codable, Sendable {
    public var `protocol`: Int
    public var prior: [Operation]
    public var op: Operation
    public init(prior: [Operation], op: Operation) {
        self.protocol = ProtocolVersion.current
        self.prior = prior; self.op = op
    }
}

public enum AuthorizeDecision: String, Codable, Sendable {
    case accepted, refused
}

public struct AuthorizeResponse: Codable, Sendable {
    public var `protocol`: Int
    public var decision: AuthorizeDecision
    /// The version the operation got when accepted.
    public var version: Int64?
    /// Why it was refused (`insufficient_balance`, `card_blocked`, `voided`, `not_found`, ...).
    public var code: ErrorCode?
    public var message: String?
    public var prior: [PushResult]
    public init(decision: AuthorizeDecision, version: Int64? = nil, code: ErrorCode? = nil, message: String? = nil, prior: [PushResult]) {
        self.protocol = ProtocolVersion.current
        self.decision = decision; self.version = version; self.code = code; self.message = message; self.prior = prior
    }
}

/// The folded state at a version, for a new node: it loads this, then pulls after `cursor`.
/// Paged, the first page's `cursor`, `origin_seq` and `max_hlc` are the ones that count: every
/// later page holds rows of a state at or after that cursor, and the fold's effects are
/// idempotent and commute, so pulling after the first cursor counts nothing twice.
public struct Snapshot: Codable, Sendable {
    public struct Member: Codable, Sendable, Hashable {
        public var id: MemberID
        public var enrolled: String?
        public var referrer: MemberID?
        public var name: String?
        public var nameStamp: String
        public var phone: String?
        public var phoneStamp: String
        public var birthday: String?
        public var birthdayStamp: String
        enum CodingKeys: String, CodingKey {
            case id, enrolled, referrer, name, phone, birthday
            case nameStamp = "name_stamp", phoneStamp = "phone_stamp", birthdayStamp = "birthday_stamp"
        }
        public init(id: MemberID, enrolled: String?, referrer: MemberID?, name: String?, nameStamp: String,
                    phone: String?, phoneStamp: String, birthday: String?, birthdayStamp: String) {
            self.id = id; self.enrolled = enrolled; self.referrer = referrer; self.name = name; self.nameStamp = nameStamp
            self.phone = phone; self.phoneStamp = phoneStamp; self.birthday = birthday; self.birthdayStamp = birthdayStamp
        }
    }
    public struct Card: Codable, Sendable, Hashable {
        public var card: CardNumber
        public var member: MemberID?
        public var issued: String?
        public var blocked: Bool
        public init(card: CardNumber, member: MemberID?, issued: String?, blocked: Bool) {
            self.card = card; self.member = member; self.issued = issued; self.blocked = blocked
        }
    }
    /// One ledger entry, exactly as the hub holds it: balances stay sums of entries, and
    /// expiry lots and tier counters survive the snapshot.
    public struct Entry: Codable, Sendable, Hashable {
        public var op: String
        public var part: Int
        public var member: MemberID
        public var value: Int64
        public var bonus: Int64
        public var points: Int64
        public var lot: String?
        public var expired: Int64
        public var qualifying: Int64
        public var atMs: Int64
        enum CodingKeys: String, CodingKey {
            case op, part, member, value, bonus, points, lot, expired, qualifying
            case atMs = "at_ms"
        }
        public init(op: String, part: Int, member: MemberID, value: Int64, bonus: Int64, points: Int64, lot: String?,
                    expired: Int64, qualifying: Int64, atMs: Int64) {
            self.op = op; self.part = part; self.member = member; self.value = value; self.bonus = bonus; self.points = points
            self.lot = lot; self.expired = expired; self.qualifying = qualifying; self.atMs = atMs
        }
    }
    public struct Refunded: Codable, Sendable, Hashable {
        public var of: String
        public var by: String
        public var amount: Int64
        public init(of: String, by: String, amount: Int64) { self.of = of; self.by = by; self.amount = amount }
    }
    public struct HeldCoupon: Codable, Sendable, Hashable {
        public var coupon: Coupon
        public var stamp: String
        public init(coupon: Coupon, stamp: String) { self.coupon = coupon; self.stamp = stamp }
    }
    public struct Membership: Codable, Sendable, Hashable {
        public var op: String
        public var period: MembershipPeriod
        public init(op: String, period: MembershipPeriod) { self.op = op; self.period = period }
    }
    public struct Merge: Codable, Sendable, Hashable {
        public var from: MemberID
        public var into: MemberID
        public var stamp: String
        public init(from: MemberID, into: MemberID, stamp: String) { self.from = from; self.into = into; self.stamp = stamp }
    }
    public struct Pair: Codable, Sendable, Hashable {
        public var from: String
        public var to: String
        public init(from: String, to: String) { self.from = from; self.to = to }
    }
    /// One operation's change to a store's lease of a member (escrow leases, spec §13).
    public struct Lease: Codable, Sendable, Hashable {
        public var op: String
        public var member: MemberID
        public var store: StoreID
        public var value: Int64
        public var points: Int64
        public var expiresMs: Int64?
        public var atMs: Int64
        /// For a reversal's row: the operation it reverses.
        public var reverses: String?
        enum CodingKeys: String, CodingKey {
            case op, member, store, value, points, reverses
            case expiresMs = "expires_ms", atMs = "at_ms"
        }
        public init(op: String, member: MemberID, store: StoreID, value: Int64, points: Int64, expiresMs: Int64?, atMs: Int64, reverses: String? = nil) {
            self.op = op; self.member = member; self.store = store; self.value = value; self.points = points
            self.expiresMs = expiresMs; self.atMs = atMs; self.reverses = reverses
        }
    }
    public struct Recall: Codable, Sendable, Hashable {
        public var op: String
        public var member: MemberID
        public var store: StoreID
        public var value: Int64
        public var points: Int64
        public init(op: String, member: MemberID, store: StoreID, value: Int64, points: Int64) {
            self.op = op; self.member = member; self.store = store; self.value = value; self.points = points
        }
    }

    public var `protocol`: Int
    public var cursor: Int64
    /// The highest sequence number the hub holds from the asking store: a replaced store
    /// machine continues after it, so it never reuses an operation id.
    public var originSeq: UInt64
    public var maxHLC: HLCTimestamp
    public var members: [Member]
    public var cards: [Card]
    public var entries: [Entry]
    public var merges: [Merge]
    public var refunds: [Refunded]
    public var voided: [OperationID]
    /// Every programme version published.
    public var rules: [RulesPublished]
    public var coupons: [HeldCoupon]
    /// coupon id -> operation that used it
    public var couponUses: [Pair]
    /// coupon id -> use that a full refund undid
    public var couponRestores: [Pair]
    public var memberships: [Membership]
    /// Lease changes, recalls, and recalls answered (recall -> answering operation). Absent
    /// from a hub older than leases: none.
    public var leases: [Lease]?
    public var recalls: [Recall]?
    public var recallAnswers: [Pair]?
    /// Rows of state this page (or snapshot) holds.
    public var rowCount: Int {
        members.count + cards.count + entries.count + merges.count + refunds.count + voided.count + rules.count + coupons.count
            + couponUses.count + couponRestores.count + memberships.count
            + (leases?.count ?? 0) + (recalls?.count ?? 0) + (recallAnswers?.count ?? 0)
    }

    /// Paged snapshots (`?page=`): the token of the next page; absent on the last page and on
    /// a whole snapshot. Rows come in a fixed order of tables and keys, so pages never overlap.
    public var next: String?

    enum CodingKeys: String, CodingKey {
        case `protocol`, cursor, members, cards, entries, merges, refunds, voided, rules, coupons, memberships, next, leases, recalls
        case originSeq = "origin_seq", maxHLC = "max_hlc", couponUses = "coupon_uses", couponRestores = "coupon_restores"
        case recallAnswers = "recall_answers"
    }

    public init(cursor: Int64, originSeq: UInt64, maxHLC: HLCTimestamp, members: [Member], cards: [Card],
                entries: [Entry], merges: [Merge], refunds: [Refunded], voided: [OperationID], rules: [RulesPublished],
                coupons: [HeldCoupon], couponUses: [Pair], couponRestores: [Pair], memberships: [Membership],
                leases: [Lease] = [], recalls: [Recall] = [], recallAnswers: [Pair] = []) {
        self.protocol = ProtocolVersion.current
        self.cursor = cursor; self.originSeq = originSeq; self.maxHLC = maxHLC; self.members = members; self.cards = cards
        self.entries = entries; self.merges = merges; self.refunds = refunds; self.voided = voided; self.rules = rules
        self.coupons = coupons; self.couponUses = couponUses; self.couponRestores = couponRestores; self.memberships = memberships
        self.leases = leases; self.recalls = recalls; self.recallAnswers = recallAnswers
    }
}

/// The body of every error answer: `{"error": {"code": ..., "message": ...}}`.
public struct ErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public var code: String
        public var message: String
    }
    public var error: Detail
    public init(code: String, message: String) { self.error = Detail(code: code, message: message) }
}

/// The answer to `GET /v1/sync/snapshot/file` (§6.4) besides the file itself.
public enum SnapshotFileAnswer {
    /// The asking store's highest sequence number the hub holds, read when it asked (the file
    /// is shared by every store, so it cannot say).
    public static let originSeqHeader = "Tessera-Origin-Seq"
}
