import Crypto
import Foundation
import TesseraCore
import TesseraProtocol

/// What a till is told: an HTTP status and a JSON body. Stored with its idempotency key in the
/// same transaction as the operation it reports, so a retry gets this very answer back.
public struct TillAnswer: Sendable, Hashable {
    public var status: Int
    public var body: Data
    public init(status: Int, body: Data) { self.status = status; self.body = body }

    static func json<T: Encodable>(_ status: Int, _ value: T) throws -> TillAnswer {
        TillAnswer(status: status, body: try JSONText.data(value))
    }

    static func error(_ error: DomainError) throws -> TillAnswer {
        try json(HTTPStatusForError.status(of: error.code), ErrorBody(code: error.code.rawValue, message: error.message))
    }
}

/// The one place that maps error codes to HTTP statuses (the HTTP edge uses it too).
public enum HTTPStatusForError {
    public static func status(of code: ErrorCode) -> Int {
        switch code {
        case .invalidRequest, .unsupportedProtocol: 400
        case .unauthorized: 401
        case .insufficientBalance, .insufficientPoints, .offlineLimitExceeded, .offlineLeaseExceeded, .balanceLeased: 402
        case .forbidden, .originMismatch: 403
        case .notFound: 404
        case .cardBlocked, .phoneTaken, .cardTaken, .alreadyRefunded, .notRefundable, .requestInProgress, .voided, .storeExists: 409
        case .couponUnavailable, .redemptionRefused, .refundTooLarge, .quoteChanged, .rulesVersionConflict: 409
        case .idempotencyKeyReused, .invalidRules: 422
        case .rateLimited: 429
        case .bootstrapping, .storageUnavailable: 503
        case .internalError: 500
        }
    }
}

/// A till's `Idempotency-Key` with a fingerprint of the request it came with: the same key
/// with a different request is refused rather than answered with another request's result.
public struct IdempotencyKey: Sendable, Hashable {
    public var key: String
    public var fingerprint: String
    public init(key: String, method: String, path: String, body: Data) {
        self.key = key
        var hasher = SHA256()
        hasher.update(data: Data("\(method) \(path)\n".utf8))
        hasher.update(data: body)
        self.fingerprint = Hex.lowercase(hasher.finalize())
    }
}

/// Random bearer tokens, stored only as SHA-256 hashes.
public enum Tokens {
    public static func make(prefix: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return prefix + Hex.lowercase(bytes)
    }
    public static func hash(_ token: String) -> String {
        Hex.lowercase(SHA256.hash(data: Data(token.utf8)))
    }
}
