/// The node's decision when the hub cannot authorise a spend: allowed only up to what the node
/// knows the member holds, and up to a per-member, per-store, per-day limit on what the spend
/// is worth (stored value, points at their redemption value and coupon discounts together).
public struct OfflineSpendPolicy: Sendable, Hashable {
    public var limitMinorPerDay: Int64

    public init(limitMinorPerDay: Int64 = 20_000) {
        self.limitMinorPerDay = limitMinorPerDay
    }

    /// `spentToday` is what this store already let the member spend offline today.
    public func decide(_ debit: Debit, known: MemberStanding, spentToday: Int64) -> DomainError? {
        if let refusal = known.refusal(of: debit) { return refusal }
        if spentToday + debit.costMinor > limitMinorPerDay {
            return DomainError(.offlineLimitExceeded,
                "the hub is unreachable and offline spending for this member today would reach \(spentToday + debit.costMinor), above the limit \(limitMinorPerDay)")
        }
        return nil
    }

    /// Days for the limit are UTC days of the node's hybrid clock.
    public static func day(of hlc: HLCTimestamp) -> Int64 { hlc.wallMs / 86_400_000 }
}

extension MemberStanding {
    /// Why the member cannot bear `debit` (stored value, points available, the coupon), or nil.
    /// The hub decides authorisations with it, and a node its offline spends.
    public func refusal(of debit: Debit) -> DomainError? {
        if debit.valueMinor > 0 && balance < debit.valueMinor {
            return DomainError(.insufficientBalance, "balance \(balance) is less than \(debit.valueMinor)")
        }
        if debit.points > 0 && pointsAvailable < debit.points {
            return DomainError(.insufficientPoints, "points \(pointsAvailable) are fewer than \(debit.points)")
        }
        if let coupon = debit.coupon, !coupons.contains(where: { $0.id == coupon }) {
            return DomainError(.couponUnavailable, "coupon \(coupon) is not available to this member (unknown, used, or outside its dates)")
        }
        return nil
    }
}
