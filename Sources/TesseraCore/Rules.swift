/// The programme's rules until head office configures its own (the rules engine comes later):
/// one point per whole currency unit of the purchase amount, however it is paid; no recharge
/// bonus; no tiers; a redeemed point is worth one minor unit.
public enum DefaultRules {
    public static let minorUnitsPerPoint: Int64 = 100
    public static let pointValueMinor: Int64 = 1

    public static func pointsEarned(amountMinor: Int64) -> Int64 {
        precondition(amountMinor >= 0)
        return amountMinor / minorUnitsPerPoint
    }
}

/// The node's decision when the hub cannot authorise a spend: allowed only up to what the node
/// knows the member holds, and up to a per-member, per-store, per-day limit (value and points
/// at their cash value count together).
public struct OfflineSpendPolicy: Sendable, Hashable {
    public var limitMinorPerDay: Int64

    public init(limitMinorPerDay: Int64 = 20_000) {
        self.limitMinorPerDay = limitMinorPerDay
    }

    /// `spentToday` is what this store already let the member spend offline today.
    public func decide(_ debit: Debit, known: Holdings, spentToday: Int64) -> DomainError? {
        if debit.valueMinor > 0 && known.valueMinor < debit.valueMinor {
            return DomainError(.insufficientBalance, "balance \(known.valueMinor) is less than \(debit.valueMinor)")
        }
        if debit.points > 0 && known.points < debit.points {
            return DomainError(.insufficientBalance, "points \(known.points) are fewer than \(debit.points)")
        }
        let cost = debit.valueMinor + debit.points * DefaultRules.pointValueMinor
        if spentToday + cost > limitMinorPerDay {
            return DomainError(.offlineLimitExceeded,
                "the hub is unreachable and offline spending for this member today would reach \(spentToday + cost), above the limit \(limitMinorPerDay)")
        }
        return nil
    }

    /// Days for the limit are UTC days of the node's hybrid clock.
    public static func day(of hlc: HLCTimestamp) -> Int64 { hlc.wallMs / 86_400_000 }
}
