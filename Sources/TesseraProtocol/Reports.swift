import TesseraCore

/// Head office's reports (hub API), JSON; the same numbers as CSV with `?format=csv`.
extension HubAPI {
    /// Inter-store settlement for a period of the log: who owes whom for value loaded at one
    /// store and spent at another (protocol/spec.md, section 11).
    public struct SettlementReport: Codable, Sendable, Equatable {
        public var period: Int
        /// The period covers log versions above `after` up to `through`.
        public var after: Int64
        public var through: Int64
        /// A closed period never changes; the open one grows until it is closed.
        public var closed: Bool
        public var pairs: [Settlement.Pair]
        public var stores: [StorePosition]
        enum CodingKeys: String, CodingKey { case period, after, through, closed, pairs, stores }
        public init(period: Int, after: Int64, through: Int64, closed: Bool, pairs: [Settlement.Pair], stores: [StorePosition]) {
            self.period = period; self.after = after; self.through = through; self.closed = closed; self.pairs = pairs; self.stores = stores
        }
    }

    /// The flows behind a settlement period (`GET /v1/reports/settlement/flows`): which load
    /// (`load`, the operation that brought the value in) paid for which spend (`spend`), for which
    /// member; negative amounts undo a flow (a refunded sale, a reversed spend).
    public struct SettlementFlows: Codable, Sendable, Equatable {
        public var period: Int
        public var flows: [Settlement.Flow]
        /// More flows than `limit` match: ask again with a larger limit or a narrower filter.
        public var more: Bool
        public init(period: Int, flows: [Settlement.Flow], more: Bool) { self.period = period; self.flows = flows; self.more = more }
    }

    public struct StorePosition: Codable, Sendable, Equatable {
        public var store: String
        public var toReceivePrincipal: Int64
        public var toReceiveBonus: Int64
        public var toPayPrincipal: Int64
        public var toPayBonus: Int64
        public var netPrincipal: Int64
        public var netBonus: Int64
        enum CodingKeys: String, CodingKey {
            case store
            case toReceivePrincipal = "to_receive_principal", toReceiveBonus = "to_receive_bonus"
            case toPayPrincipal = "to_pay_principal", toPayBonus = "to_pay_bonus"
            case netPrincipal = "net_principal", netBonus = "net_bonus"
        }
        public init(_ p: Settlement.Position) {
            store = p.store; toReceivePrincipal = p.toReceivePrincipal; toReceiveBonus = p.toReceiveBonus
            toPayPrincipal = p.toPayPrincipal; toPayBonus = p.toPayBonus; netPrincipal = p.netPrincipal; netBonus = p.netBonus
        }
    }

    /// What the chain owes its members now: stored value by the store that took the money
    /// (principal and bonus apart), value spent offline beyond the balance and not yet covered,
    /// and points outstanding with their cash value under the redemption rate in force.
    public struct Liabilities: Codable, Sendable, Equatable {
        public var principal: Int64
        public var bonus: Int64
        public var owedPrincipal: Int64
        public var owedBonus: Int64
        public var points: Int64
        public var pointsCashValue: Int64
        public var rulesVersion: Int
        public var stores: [StoreLiability]
        /// The local day the figures stand at the end of; absent: now.
        public var asOf: String?
        enum CodingKeys: String, CodingKey {
            case principal, bonus, points, stores, asOf = "as_of"
            case owedPrincipal = "owed_principal", owedBonus = "owed_bonus", pointsCashValue = "points_cash_value", rulesVersion = "rules_version"
        }
        public init(principal: Int64, bonus: Int64, owedPrincipal: Int64, owedBonus: Int64, points: Int64, pointsCashValue: Int64,
                    rulesVersion: Int, stores: [StoreLiability]) {
            self.principal = principal; self.bonus = bonus; self.owedPrincipal = owedPrincipal; self.owedBonus = owedBonus
            self.points = points; self.pointsCashValue = pointsCashValue; self.rulesVersion = rulesVersion; self.stores = stores
        }
    }

    public struct StoreLiability: Codable, Sendable, Equatable {
        public var store: String
        /// Value members hold that this store took (its liability).
        public var principal: Int64
        public var bonus: Int64
        /// Value spent at this store beyond members' balances, not yet covered.
        public var owedPrincipal: Int64
        public var owedBonus: Int64
        enum CodingKeys: String, CodingKey {
            case store, principal, bonus
            case owedPrincipal = "owed_principal", owedBonus = "owed_bonus"
        }
        public init(store: String, principal: Int64, bonus: Int64, owedPrincipal: Int64, owedBonus: Int64) {
            self.store = store; self.principal = principal; self.bonus = bonus; self.owedPrincipal = owedPrincipal; self.owedBonus = owedBonus
        }
    }
}

extension HubAPI {
    /// Every movement behind one member's balance and points, in the order the log holds them,
    /// with the store, the till's time and the rules version: any number can be explained.
    public struct Statement: Codable, Sendable, Equatable {
        public var member: MemberID
        public var lines: [StatementLine]
        public init(member: MemberID, lines: [StatementLine]) { self.member = member; self.lines = lines }
    }

    public struct StatementLine: Codable, Sendable, Equatable {
        public var version: Int64
        public var op: String
        public var kind: String
        public var store: String
        /// The operation's own time (its stamp's wall clock), ISO 8601.
        public var at: String
        public var principal: Int64
        public var bonus: Int64
        public var points: Int64
        /// Principal and bonus together, after this line.
        public var balance: Int64
        public var pointsAfter: Int64
        public var rulesVersion: Int?
        enum CodingKeys: String, CodingKey {
            case version, op, kind, store, at, principal, bonus, points, balance
            case pointsAfter = "points_after", rulesVersion = "rules_version"
        }
        public init(version: Int64, op: String, kind: String, store: String, at: String, principal: Int64, bonus: Int64, points: Int64,
                    balance: Int64, pointsAfter: Int64, rulesVersion: Int?) {
            self.version = version; self.op = op; self.kind = kind; self.store = store; self.at = at; self.principal = principal
            self.bonus = bonus; self.points = points; self.balance = balance; self.pointsAfter = pointsAfter; self.rulesVersion = rulesVersion
        }
    }
}

extension HubAPI {
    /// A segment of members (`GET /v1/reports/segments/{name}`): each member with the label of
    /// the band or level it falls in and the figure behind it, and how many each label holds.
    public struct SegmentReport: Codable, Sendable, Equatable {
        public var segment: String
        public var asOf: String
        public var counts: [String: Int]
        public var members: [Segments.Entry]
        /// `top`: the segment's spend and the chain's, so its share of turnover can be read.
        public var segmentSpend: Int64?
        public var totalSpend: Int64?
        enum CodingKeys: String, CodingKey {
            case segment, counts, members
            case asOf = "as_of", segmentSpend = "segment_spend", totalSpend = "total_spend"
        }
        public init(segment: String, asOf: String, counts: [String: Int], members: [Segments.Entry], segmentSpend: Int64?, totalSpend: Int64?) {
            self.segment = segment; self.asOf = asOf; self.counts = counts; self.members = members
            self.segmentSpend = segmentSpend; self.totalSpend = totalSpend
        }
    }

    /// Coupons issued to a segment's members (`POST /v1/reports/segments/{name}/coupons`).
    public struct SegmentCoupons: Codable, Sendable, Equatable {
        public var segment: String
        public var template: String
        public var issued: Int
        public var alreadyHeld: Int
        public var op: String?
        enum CodingKeys: String, CodingKey {
            case segment, template, issued, op
            case alreadyHeld = "already_held"
        }
        public init(segment: String, template: String, issued: Int, alreadyHeld: Int, op: String?) {
            self.segment = segment; self.template = template; self.issued = issued; self.alreadyHeld = alreadyHeld; self.op = op
        }
    }

    public struct SegmentCouponRequest: Codable, Sendable {
        public var template: String
    }
}

extension HubAPI {
    /// Store operations per local day (the till's day, in the programme's time zone).
    public struct StoreDay: Codable, Sendable, Equatable {
        public var store: String
        public var day: String
        public var operations: Int
        public var enrolments: Int
        public var recharges: Int
        public var recharged: Int64
        public var sales: Int
        public var sold: Int64
        public var spentFromBalance: Int64
        public var refunds: Int
        public var pointsEarned: Int64
        public var pointsRedeemed: Int64
        enum CodingKeys: String, CodingKey {
            case store, day, operations, enrolments, recharges, recharged, sales, sold, refunds
            case spentFromBalance = "spent_from_balance", pointsEarned = "points_earned", pointsRedeemed = "points_redeemed"
        }
        public init(store: String, day: String) {
            self.store = store; self.day = day; operations = 0; enrolments = 0; recharges = 0; recharged = 0; sales = 0; sold = 0
            spentFromBalance = 0; refunds = 0; pointsEarned = 0; pointsRedeemed = 0
        }
    }

    public struct StoreActivity: Codable, Sendable, Equatable {
        public var days: [StoreDay]
        public init(days: [StoreDay]) { self.days = days }
    }

    /// A balance nobody has touched for a while: a candidate for breakage (value the chain may
    /// eventually recognise as income, under its own policy and the law).
    public struct Dormant: Codable, Sendable, Equatable {
        public var member: MemberID
        public var balance: Int64
        public var lastMovement: String
        enum CodingKeys: String, CodingKey { case member, balance, lastMovement = "last_movement" }
        public init(member: MemberID, balance: Int64, lastMovement: String) { self.member = member; self.balance = balance; self.lastMovement = lastMovement }
    }
}

extension HubAPI {
    public struct Breakage: Codable, Sendable, Equatable {
        public var untouchedDays: Int64
        public var total: Int64
        public var members: [Dormant]
        enum CodingKeys: String, CodingKey { case total, members, untouchedDays = "untouched_days" }
        public init(untouchedDays: Int64, members: [Dormant]) {
            self.untouchedDays = untouchedDays; self.members = members; self.total = members.reduce(0) { $0 + $1.balance }
        }
    }
}

extension HubAPI {
    /// Who holds a member's rights under escrow leases (spec §13): the hub, and each store's
    /// lease, with the recalls still open.
    public struct MemberLeases: Codable, Sendable, Equatable {
        public struct Lease: Codable, Sendable, Equatable {
            public var store: StoreID
            public var value: Int64
            public var points: Int64
            /// When the lease ends (ISO 8601); a store stops spending it then and gives it back.
            public var endsAt: String
            /// The part the hub has asked back and the store has not yet given back.
            public var recalledValue: Int64
            public var recalledPoints: Int64
            enum CodingKeys: String, CodingKey {
                case store, value, points
                case endsAt = "ends_at", recalledValue = "recalled_value", recalledPoints = "recalled_points"
            }
            public init(store: StoreID, value: Int64, points: Int64, endsAt: String, recalledValue: Int64, recalledPoints: Int64) {
                self.store = store; self.value = value; self.points = points; self.endsAt = endsAt
                self.recalledValue = recalledValue; self.recalledPoints = recalledPoints
            }
        }
        public var member: MemberID
        /// Whether the programme in force uses leases.
        public var leases: Bool
        public var balance: Int64
        public var pointsAvailable: Int64
        /// What the hub holds (lends, and lets stores borrow online).
        public var hubValue: Int64
        public var hubPoints: Int64
        public var stores: [Lease]
        enum CodingKeys: String, CodingKey {
            case member, leases, balance, stores
            case pointsAvailable = "points_available", hubValue = "hub_value", hubPoints = "hub_points"
        }
        public init(member: MemberID, leases: Bool, balance: Int64, pointsAvailable: Int64, hubValue: Int64, hubPoints: Int64, stores: [Lease]) {
            self.member = member; self.leases = leases; self.balance = balance; self.pointsAvailable = pointsAvailable
            self.hubValue = hubValue; self.hubPoints = hubPoints; self.stores = stores
        }
    }
}
