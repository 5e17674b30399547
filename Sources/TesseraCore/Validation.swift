/// Bounds and formats every operation and request must respect. A value outside them is a
/// client's mistake (`invalid_request`), never silently clamped.
public enum Limits {
    /// The largest single amount, in minor units (10 billion units of currency).
    public static let amountMaxMinor: Int64 = 1_000_000_000_000
    public static let pointsMax: Int64 = 1_000_000_000_000
    public static let nameMaxLength = 200
    public static let reasonMaxLength = 500
    public static let cardMaxLength = 64
}

public enum Validate {
    public static func amount(_ value: Int64, _ field: String = "amount") throws(DomainError) {
        guard value > 0, value <= Limits.amountMaxMinor else {
            throw DomainError(.invalidRequest, "\(field) must be a whole number of minor units between 1 and \(Limits.amountMaxMinor)")
        }
    }

    public static func points(_ value: Int64, _ field: String, allowNegative: Bool = false) throws(DomainError) {
        // Ranges, not abs(): abs(Int64.min) traps.
        guard (-Limits.pointsMax...Limits.pointsMax).contains(value), allowNegative || value >= 0 else {
            throw DomainError(.invalidRequest, "\(field) must be a whole number of points between \(allowNegative ? -Limits.pointsMax : 0) and \(Limits.pointsMax)")
        }
    }

    static func nonNegative(_ value: Int64, _ field: String) throws(DomainError) {
        guard (0...Limits.amountMaxMinor).contains(value) else {
            throw DomainError(.invalidRequest, "\(field) must be between 0 and \(Limits.amountMaxMinor)")
        }
    }

    static func date(_ value: String?, _ field: String) throws(DomainError) {
        if let value, LocalDay(iso: value) == nil { throw DomainError(.invalidRequest, "\(field) must be a date YYYY-MM-DD") }
    }

    static func coupon(_ c: Coupon) throws(DomainError) {
        guard !c.id.isEmpty, c.id.count <= 200, LocalDay(iso: c.validFrom) != nil, LocalDay(iso: c.validUntil) != nil,
              (c.valueMinor ?? 1) > 0, (1...100).contains(c.percent ?? 1) else {
            throw DomainError(.invalidRequest, "malformed coupon \(c.id)")
        }
    }

    public static func name(_ value: String) throws(DomainError) -> String {
        let trimmed = value.trimmingWhitespace()
        // Counted in Unicode scalars, before trimming, as JSON Schema's maxLength counts.
        guard !trimmed.isEmpty, value.unicodeScalars.count <= Limits.nameMaxLength else {
            throw DomainError(.invalidRequest, "name must be 1 to \(Limits.nameMaxLength) characters")
        }
        return trimmed
    }

    /// Phones are the natural key of a member. Spaces, dashes, dots and brackets are dropped;
    /// what is left is an optional `+` and 5 to 20 digits.
    public static func phone(_ value: String) throws(DomainError) -> String {
        var out = ""
        for (i, ch) in value.trimmingWhitespace().enumerated() {
            if ch.isASCII && ch.isNumber { out.append(ch) }
            else if ch == "+" && i == 0 { out.append(ch) }
            else if " -.()".contains(ch) { continue }
            else { throw DomainError(.invalidRequest, "phone may hold only digits, an initial +, spaces, dashes, dots and brackets") }
        }
        let digits = out.filter(\.isNumber).count
        guard (5...20).contains(digits) else { throw DomainError(.invalidRequest, "phone must have 5 to 20 digits") }
        return out
    }

    /// `YYYY-MM-DD`, or `MM-DD` when the year is not given.
    public static func birthday(_ value: String) throws(DomainError) -> String {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        let numbers = parts.map { Int($0) }
        let ok: Bool
        switch parts.count {
        case 3:
            ok = parts[0].count == 4 && parts[1].count == 2 && parts[2].count == 2
                && (1900...2200).contains(numbers[0] ?? 0) && (1...12).contains(numbers[1] ?? 0) && (1...31).contains(numbers[2] ?? 0)
        case 2:
            ok = parts[0].count == 2 && parts[1].count == 2 && (1...12).contains(numbers[0] ?? 0) && (1...31).contains(numbers[1] ?? 0)
        default:
            ok = false
        }
        guard ok else { throw DomainError(.invalidRequest, "birthday must be YYYY-MM-DD or MM-DD") }
        return value
    }

    /// A lease change is absent (no leases) or within what the operation moves.
    static func lease(_ value: Int64?, within range: ClosedRange<Int64>, _ field: String) throws(DomainError) {
        if let value, !range.contains(value) {
            throw DomainError(.invalidRequest, "\(field) must be between \(range.lowerBound) and \(range.upperBound) for this operation")
        }
    }

    public static func card(_ value: String) throws(DomainError) -> CardNumber {
        let trimmed = value.trimmingWhitespace()
        guard !trimmed.isEmpty, trimmed.count <= Limits.cardMaxLength,
              trimmed.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else { throw DomainError(.invalidRequest, "card must be 1 to \(Limits.cardMaxLength) letters, digits, '-' or '_'") }
        return CardNumber(trimmed)
    }

    /// Checks an operation body received from another replica. Unknown kinds pass (they are
    /// stored and passed on); a known kind must be well-formed.
    public static func operation(_ op: Operation) throws(DomainError) -> OperationBody {
        // Kinds the hub does not know yet are kept and passed on, so a kind is checked for
        // shape only: 1 to 64 of a-z, 0-9, '.', '_', '-' (it is stored, indexed and logged).
        guard (1...64).contains(op.kind.utf8.count),
              op.kind.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }) else {
            throw DomainError(.invalidRequest, "an operation kind is 1 to 64 characters a-z, 0-9, '.', '_' or '-'")
        }
        // Kinds only the hub writes (a store's push of one would close head office's periods).
        guard !["settlement.period_closed", "exception.resolved", "balance.opened"].contains(op.kind) else {
            throw DomainError(.invalidRequest, "\(op.kind) is written by the hub only")
        }
        guard op.id.seq <= UInt64(Int64.max) else {
            throw DomainError(.invalidRequest, "an operation's sequence number is at most \(Int64.max)")
        }
        guard (1...1_000).contains(op.kindVersion) else {
            throw DomainError(.invalidRequest, "kind_version must be 1 to 1000")
        }
        let body: OperationBody
        do { body = try op.decoded() } catch {
            throw DomainError(.invalidRequest, "malformed \(op.kind) body: \(error)")
        }
        switch body {
        case .memberEnrolled(let b):
            guard b.member == MemberID(enrolment: op.id) else {
                throw DomainError(.invalidRequest, "an enrolment's member id must be made from its operation id")
            }
            _ = try name(b.name)
            _ = try phone(b.phone)
            if let day = b.birthday { _ = try birthday(day) }
            _ = try card(b.card.rawValue)
            try points(b.referralPoints, "referral_points")
            try date(b.pointsExpireOn, "points_expire_on")
            for c in b.coupons { try coupon(c) }
            guard b.store == nil || op.id.origin == .hub else {
                throw DomainError(.invalidRequest, "only the hub enrols a member on behalf of a store")
            }
            if let reference = b.reference, reference.isEmpty || reference.count > 200 {
                throw DomainError(.invalidRequest, "an enrolment's reference is 1 to 200 characters")
            }
        case .memberUpdated(let b):
            if let n = b.name { _ = try name(n) }
            if let p = b.phone { _ = try phone(p) }
            if let day = b.birthday { _ = try birthday(day) }
        case .cardIssued(let b):
            _ = try card(b.card.rawValue)
        case .cardBlocked:
            break
        case .valueRecharged(let b):
            try amount(b.amount)
            try nonNegative(b.bonus, "bonus")
            for c in b.coupons { try coupon(c) }
            try lease(b.leaseValue, within: 0...(b.amount + b.bonus), "lease_value")
        case .purchase(let p):
            try amount(p.amount)
            try points(p.pointsRedeemed, "points_redeemed")
            try points(p.pointsEarned, "points_earned")
            try points(p.referralPoints, "referral_points")
            for (field, value) in [("discount", p.discount), ("coupon_discount", p.couponDiscount), ("points_value", p.pointsValue),
                                   ("value_spent", p.valueSpent), ("bonus_spent", p.bonusSpent), ("qualifying", p.qualifying)] {
                try nonNegative(value, field)
            }
            guard p.bonusSpent <= p.valueSpent else { throw DomainError(.invalidRequest, "bonus_spent exceeds value_spent") }
            guard p.discount + p.couponDiscount + p.pointsValue + p.valueSpent <= p.amount else {
                throw DomainError(.invalidRequest, "discounts, points and stored value together exceed the amount")
            }
            guard p.coupon != nil || p.couponDiscount == 0 else {
                throw DomainError(.invalidRequest, "coupon_discount needs a coupon")
            }
            try date(p.pointsExpireOn, "points_expire_on")
            try lease(p.leaseValue, within: -p.valueSpent...0, "lease_value")
            try lease(p.leasePoints, within: -p.pointsRedeemed...p.pointsEarned, "lease_points")
        case .refund(let r):
            for (field, value) in [("amount", r.amount), ("points_restored", r.pointsRestored), ("points_reversed", r.pointsReversed),
                                   ("referral_points", r.referralPoints), ("cash_back", r.cashBack)] {
                try nonNegative(value, field)
            }
            let range = -Limits.amountMaxMinor...Limits.amountMaxMinor
            guard range.contains(r.value), range.contains(r.bonus), r.qualifying <= 0, r.qualifying >= -Limits.amountMaxMinor * 1_000 else {
                throw DomainError(.invalidRequest, "refund value, bonus or qualifying out of range")
            }
            try date(r.pointsExpireOn, "points_expire_on")
            let moved = r.value + r.bonus
            try lease(r.leaseValue, within: min(0, moved)...max(0, moved), "lease_value")
            try lease(r.leasePoints, within: -r.pointsReversed...r.pointsRestored, "lease_points")
        case .pointsAdjusted(let a):
            try points(a.points, "points", allowNegative: true)
            guard !a.reason.isEmpty, a.reason.count <= Limits.reasonMaxLength else {
                throw DomainError(.invalidRequest, "an adjustment needs a reason of 1 to \(Limits.reasonMaxLength) characters")
            }
            try date(a.pointsExpireOn, "points_expire_on")
        case .leaseGranted(let g):
            guard op.id.origin == .hub else { throw DomainError(.forbidden, "only the hub may make \(op.kind)") }
            try nonNegative(g.value, "value")
            try points(g.points, "points")
        case .leaseRecalled(let r):
            guard op.id.origin == .hub else { throw DomainError(.forbidden, "only the hub may make \(op.kind)") }
            try nonNegative(r.value, "value")
            try points(r.points, "points")
        case .leaseReturned(let r):
            guard op.id.origin == .hub || r.store == op.id.origin else {
                throw DomainError(.forbidden, "a store may give back only its own leases")
            }
            try nonNegative(r.value, "value")
            try points(r.points, "points")
            guard !r.reason.isEmpty, r.reason.count <= Limits.reasonMaxLength else {
                throw DomainError(.invalidRequest, "a lease's return needs a reason of 1 to \(Limits.reasonMaxLength) characters")
            }
        case .memberMerged, .operationReversed, .rulesPublished, .pointsExpired, .couponsIssued:
            // Only the hub makes these.
            guard op.id.origin == .hub else { throw DomainError(.forbidden, "only the hub may make \(op.kind)") }
        case .membershipPurchased(let purchase):
            let m = purchase.period
            guard let from = LocalDay(iso: m.from), let until = LocalDay(iso: m.until), from <= until else {
                throw DomainError(.invalidRequest, "a membership needs dates from <= until (YYYY-MM-DD)")
            }
            try nonNegative(purchase.priceMinor, "price_minor")
            guard (0...100).contains(m.discountPercent), (0...1000).contains(m.pointsPercent) else {
                throw DomainError(.invalidRequest, "membership percents out of range")
            }
        case .operationVoided(let v):
            guard v.of.origin == op.id.origin else {
                throw DomainError(.forbidden, "a store may void only its own operations")
            }
        case .balanceOpened(let b):
            try nonNegative(b.value, "value")
            try nonNegative(b.bonus, "bonus")
            try points(b.points, "points")
            try date(b.pointsExpireOn, "points_expire_on")
        case .unknown:
            break
        }
        return body
    }
}

extension String {
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
