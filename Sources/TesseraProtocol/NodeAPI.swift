import TesseraCore

/// Request and response bodies of a node's till API (JSON, snake_case, minor units).
public enum NodeAPI {
    public struct Enrol: Codable, Sendable {
        public var name: String
        public var phone: String
        public var birthday: String?
        public var referrer: MemberID?
        /// A pre-printed card number; the node makes one when absent.
        public var card: String?
        public init(name: String, phone: String, birthday: String? = nil, referrer: MemberID? = nil, card: String? = nil) {
            self.name = name; self.phone = phone; self.birthday = birthday; self.referrer = referrer; self.card = card
        }
    }

    public struct Update: Codable, Sendable {
        public var name: String?
        public var phone: String?
        public var birthday: String?
        public init(name: String? = nil, phone: String? = nil, birthday: String? = nil) {
            self.name = name; self.phone = phone; self.birthday = birthday
        }
    }

    public struct Recharge: Codable, Sendable {
        public var amount: Int64
        public init(amount: Int64) { self.amount = amount }
    }

    public struct PurchaseRequest: Codable, Sendable {
        public var amount: Int64
        /// Pay what discounts, coupon and redeemed points leave from the stored-value balance.
        public var payFromBalance: Bool?
        /// Points to take as payment, at the programme's redemption rate.
        public var redeemPoints: Int64?
        /// A coupon of the member's to use.
        public var coupon: String?
        /// The `quote` of an earlier quote: the sale is made only if it prices exactly the same.
        public var quote: String?
        /// The basket at member prices, for members whose tier or membership grants them.
        public var memberAmount: Int64?
        enum CodingKeys: String, CodingKey {
            case amount, coupon, quote
            case payFromBalance = "pay_from_balance"
            case redeemPoints = "redeem_points"
            case memberAmount = "member_amount"
        }
        public init(amount: Int64, payFromBalance: Bool? = nil, redeemPoints: Int64? = nil, coupon: String? = nil, quote: String? = nil,
                    memberAmount: Int64? = nil) {
            self.amount = amount; self.payFromBalance = payFromBalance; self.redeemPoints = redeemPoints
            self.coupon = coupon; self.quote = quote; self.memberAmount = memberAmount
        }
    }

    /// What a sale would be, priced under the node's current rules, before committing it.
    public struct Quote: Codable, Sendable {
        /// Pass this back with the purchase to commit exactly this pricing.
        public var quote: String
        public var purchase: Purchase
        public var cashDue: Int64
        enum CodingKeys: String, CodingKey { case quote, purchase; case cashDue = "cash_due" }
        public init(quote: String, purchase: Purchase) { self.quote = quote; self.purchase = purchase; self.cashDue = purchase.cashDue }
    }

    public struct RefundRequest: Codable, Sendable {
        /// The part of the original amount to refund; all that is left when absent.
        public var amount: Int64?
        public init(amount: Int64? = nil) { self.amount = amount }
    }

    public struct ActivityRequest: Codable, Sendable {
        public var activity: String
        public init(activity: String) { self.activity = activity }
    }

    /// Points head office awards: for a named activity of the programme, or by hand.
    public struct PointsAward: Codable, Sendable {
        public var activity: String?
        public var points: Int64?
        public var reason: String?
        public init(activity: String? = nil, points: Int64? = nil, reason: String? = nil) {
            self.activity = activity; self.points = points; self.reason = reason
        }
    }

    public struct MembershipRequest: Codable, Sendable {
        public var plan: String
        public init(plan: String) { self.plan = plan }
    }

    public struct NewCard: Codable, Sendable {
        public var card: String?
        public init(card: String? = nil) { self.card = card }
    }

    /// How a spend was authorised: by the hub, by the node alone while the hub was unreachable,
    /// or not needed (nothing was taken from the balance or points).
    /// Who allowed a spend: the hub (online), the node's offline policy (the hub unreachable),
    /// the store's own lease (escrow leases: decided at the store, online or not), or nobody
    /// (nothing was taken).
    public enum Authorization: String, Codable, Sendable {
        case hub, offline, lease, none
    }

    public struct Transaction: Codable, Sendable, Hashable {
        public var id: OperationID
        public var kind: String
        public var member: MemberID
        public var amount: Int64?
        public var valueChange: Int64
        public var pointsChange: Int64
        public var pointsEarned: Int64?
        public var pointsRedeemed: Int64?
        public var valueSpent: Int64?
        public var refundOf: OperationID?
        public var authorization: Authorization
        /// Paid outside the card (a purchase) or paid back (a refund).
        public var cash: Int64?
        /// The operation's body as recorded: every number the rules computed, and their version.
        public var receipt: JSONValue?
        enum CodingKeys: String, CodingKey {
            case id, kind, member, amount, authorization, cash, receipt
            case valueChange = "value_change", pointsChange = "points_change"
            case pointsEarned = "points_earned", pointsRedeemed = "points_redeemed", valueSpent = "value_spent"
            case refundOf = "refund_of"
        }
        public init(id: OperationID, kind: String, member: MemberID, amount: Int64?, valueChange: Int64, pointsChange: Int64,
                    pointsEarned: Int64?, pointsRedeemed: Int64?, valueSpent: Int64?, refundOf: OperationID?, authorization: Authorization) {
            self.id = id; self.kind = kind; self.member = member; self.amount = amount; self.valueChange = valueChange
            self.pointsChange = pointsChange; self.pointsEarned = pointsEarned; self.pointsRedeemed = pointsRedeemed
            self.valueSpent = valueSpent; self.refundOf = refundOf; self.authorization = authorization
        }
    }

    public struct TransactionResult: Codable, Sendable {
        public var transaction: Transaction
        public var member: MemberView
        public init(transaction: Transaction, member: MemberView) { self.transaction = transaction; self.member = member }
    }

    public struct Status: Codable, Sendable {
        public var store: StoreID
        public var online: Bool
        public var bootstrapped: Bool
        public var pendingOps: Int
        public var rejectedOps: Int
        public var cursor: Int64
        public var lastSyncAt: String?
        public var lastError: String?
        /// How far this node's clock runs ahead of the hub's (negative: behind), to the second.
        public var clockSkewMs: Int64?
        /// Long work under way (a first bootstrap, a catch-up after an outage): how far it is.
        public var progress: String?
        enum CodingKeys: String, CodingKey {
            case store, online, bootstrapped, cursor, progress
            case pendingOps = "pending_ops", rejectedOps = "rejected_ops"
            case lastSyncAt = "last_sync_at", lastError = "last_error", clockSkewMs = "clock_skew_ms"
        }
        public init(store: StoreID, online: Bool, bootstrapped: Bool, pendingOps: Int, rejectedOps: Int, cursor: Int64,
                    lastSyncAt: String?, lastError: String?, clockSkewMs: Int64? = nil, progress: String? = nil) {
            self.store = store; self.online = online; self.bootstrapped = bootstrapped; self.pendingOps = pendingOps
            self.rejectedOps = rejectedOps; self.cursor = cursor; self.lastSyncAt = lastSyncAt; self.lastError = lastError
            self.clockSkewMs = clockSkewMs; self.progress = progress
        }
    }
}

/// Head office's view of the hub.
public enum HubAPI {
    public struct StoreState: Codable, Sendable, Hashable {
        public var id: StoreID
        public var name: String
        public var lastSyncAt: String?
        public var cursor: Int64
        public var head: Int64
        public var pending: Int64?
        public var opsAccepted: Int64
        enum CodingKeys: String, CodingKey {
            case id, name, cursor, head, pending
            case lastSyncAt = "last_sync_at", opsAccepted = "ops_accepted"
        }
        public init(id: StoreID, name: String, lastSyncAt: String?, cursor: Int64, head: Int64, pending: Int64?, opsAccepted: Int64) {
            self.id = id; self.name = name; self.lastSyncAt = lastSyncAt; self.cursor = cursor; self.head = head
            self.pending = pending; self.opsAccepted = opsAccepted
        }
    }

    public struct ExceptionRecord: Codable, Sendable, Hashable {
        public var id: Int64
        /// `overdraft`, `merge`, `rejected`, `duplicate_refund`, `reversal`
        public var kind: String
        public var member: MemberID?
        public var op: String?
        public var detail: String
        public var at: String
        /// How head office settled it (absent while it is open).
        public var resolution: ExceptionResolution?
        public init(id: Int64, kind: String, member: MemberID?, op: String?, detail: String, at: String) {
            self.id = id; self.kind = kind; self.member = member; self.op = op; self.detail = detail; self.at = at
        }
    }

    /// Head office's resolution of an exception: a note, who, when, the operation of the hub's
    /// that records it, and the points adjustment it made, if any (itself an operation).
    public struct ExceptionResolution: Codable, Sendable, Hashable {
        public var note: String
        public var by: String
        public var op: String
        public var at: String
        public var adjustment: String?
        public init(note: String, by: String, op: String, at: String, adjustment: String?) {
            self.note = note; self.by = by; self.op = op; self.at = at; self.adjustment = adjustment
        }
    }

    /// `POST /v1/exceptions/{id}/resolve`: a note, and optionally points given or taken for the
    /// member concerned (with the note as the reason).
    public struct ResolveException: Codable, Sendable {
        public var note: String
        public var points: Int64?
        public init(note: String, points: Int64?) { self.note = note; self.points = points }
    }

    public struct RulesVersion: Codable, Sendable, Hashable {
        public var version: Int
        /// The hub's `rules.published` operation that carries it to the nodes.
        public var op: OperationID
        public var logVersion: Int64
        enum CodingKeys: String, CodingKey { case version, op; case logVersion = "log_version" }
        public init(version: Int, op: OperationID, logVersion: Int64) { self.version = version; self.op = op; self.logVersion = logVersion }
    }

    public struct JobReport: Codable, Sendable, Hashable {
        public var asOf: String
        public var rulesVersion: Int
        /// Members whose points expired (or came back) in this run, and the net points taken.
        public var expiries: Int
        public var pointsExpired: Int64
        public var coupons: Int
        enum CodingKeys: String, CodingKey {
            case expiries, coupons
            case asOf = "as_of", rulesVersion = "rules_version", pointsExpired = "points_expired"
        }
        public init(asOf: String, rulesVersion: Int, expiries: Int, pointsExpired: Int64, coupons: Int) {
            self.asOf = asOf; self.rulesVersion = rulesVersion; self.expiries = expiries; self.pointsExpired = pointsExpired; self.coupons = coupons
        }
    }

    public struct AdminToken: Codable, Sendable, Hashable {
        public var id: String
        public var role: String
        public var label: String?
        public var createdAt: String
        public var revokedAt: String?
        enum CodingKeys: String, CodingKey { case id, role, label; case createdAt = "created_at", revokedAt = "revoked_at" }
        public init(id: String, role: String, label: String?, createdAt: String, revokedAt: String?) {
            self.id = id; self.role = role; self.label = label; self.createdAt = createdAt; self.revokedAt = revokedAt
        }
    }

    /// One line of the audit log: who did what (head-office actions, credential changes, refused
    /// authentications).
    public struct AuditRecord: Codable, Sendable, Hashable {
        public var id: Int64
        public var at: String
        public var actor: String
        public var action: String
        public var detail: String
        public init(id: Int64, at: String, actor: String, action: String, detail: String) {
            self.id = id; self.at = at; self.actor = actor; self.action = action; self.detail = detail
        }
    }

    public struct Stores: Codable, Sendable { public var stores: [StoreState]; public init(stores: [StoreState]) { self.stores = stores } }
    public struct Exceptions: Codable, Sendable { public var exceptions: [ExceptionRecord]; public init(exceptions: [ExceptionRecord]) { self.exceptions = exceptions } }
}

extension NodeAPI {
    /// What this store may take from a member while the hub is unreachable: under escrow
    /// leases, its lease (until it ends); under the v1 policy, the balance and points it knows,
    /// within what is left of today's offline limit.
    public struct OfflineAllowance: Codable, Sendable, Equatable {
        public enum Policy: String, Codable, Sendable { case leases, dailyLimit = "daily_limit" }
        public var member: MemberID
        public var store: StoreID
        public var policy: Policy
        public var value: Int64
        public var points: Int64
        /// Under leases, when this store's lease ends (ISO 8601).
        public var endsAt: String?
        enum CodingKeys: String, CodingKey {
            case member, store, policy, value, points
            case endsAt = "ends_at"
        }
        public init(member: MemberID, store: StoreID, policy: Policy, value: Int64, points: Int64, endsAt: String?) {
            self.member = member; self.store = store; self.policy = policy; self.value = value; self.points = points; self.endsAt = endsAt
        }
    }
}
