/// An expected failure with a stable, machine-readable code. HTTP statuses are chosen at the
/// edge (TesseraHTTP), never here.
public struct DomainError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// Wire codes. New codes may be added; existing ones never change meaning.
public enum ErrorCode: String, Sendable, Codable, CaseIterable {
    case invalidRequest = "invalid_request"
    case notFound = "not_found"
    case insufficientBalance = "insufficient_balance"
    case offlineLimitExceeded = "offline_limit_exceeded"
    case cardBlocked = "card_blocked"
    case phoneTaken = "phone_taken"
    case cardTaken = "card_taken"
    case alreadyRefunded = "already_refunded"
    case notRefundable = "not_refundable"
    case idempotencyKeyReused = "idempotency_key_reused"
    case requestInProgress = "request_in_progress"
    case unauthorized = "unauthorized"
    case forbidden = "forbidden"
    case originMismatch = "origin_mismatch"
    case unsupportedProtocol = "unsupported_protocol"
    case bootstrapping = "bootstrapping"
    case voided = "voided"
    case storeExists = "store_exists"
    case insufficientPoints = "insufficient_points"
    case redemptionRefused = "redemption_refused"
    case couponUnavailable = "coupon_unavailable"
    case refundTooLarge = "refund_too_large"
    case invalidRules = "invalid_rules"
    case rulesVersionConflict = "rules_version_conflict"
    case quoteChanged = "quote_changed"
    case rateLimited = "rate_limited"
    case storageUnavailable = "storage_unavailable"
    case internalError = "internal_error"
    /// Under leases: the hub is unreachable and this store's lease does not cover the spend.
    case offlineLeaseExceeded = "offline_lease_exceeded"
    /// Under leases: the member holds the amount, but part of it is lent to other stores for
    /// their offline use; the hub has asked for it back.
    case balanceLeased = "balance_leased"
}
