import Foundation
import HTTPTypes
import Hummingbird
import Synchronization
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// Token buckets, one per client key: `ratePerSecond` requests a second on average, bursts up
/// to `burst`. Pure arithmetic on a clock passed in, so tests can drive it.
public final class RateLimiter: Sendable {
    struct Bucket { var tokens: Double; var at: Double }
    public let ratePerSecond: Double
    public let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Keys kept at most; beyond it, buckets that have refilled (idle clients) are forgotten.
    static let maxKeys = 10_000

    public init(ratePerSecond: Double, burst: Double? = nil) {
        precondition(ratePerSecond > 0)
        self.ratePerSecond = ratePerSecond
        self.burst = max(1, burst ?? ratePerSecond * 2)
    }

    /// Nil when the request may go on; otherwise the seconds to wait before trying again.
    public func admit(_ key: String, now: Double) -> Int? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, at: now)
            bucket.tokens = min(burst, bucket.tokens + max(0, now - bucket.at) * ratePerSecond)
            bucket.at = now
            defer {
                buckets[key] = bucket
                if buckets.count > Self.maxKeys {
                    let burst = self.burst, rate = self.ratePerSecond
                    buckets = buckets.filter { $0.value.tokens + (now - $0.value.at) * rate < burst }
                }
            }
            guard bucket.tokens >= 1 else { return max(1, Int(((1 - bucket.tokens) / ratePerSecond).rounded(.up))) }
            bucket.tokens -= 1
            return nil
        }
    }
}

/// Answers `429 rate_limited` with `Retry-After` to a client over its rate. The key is the
/// client's credential (by hash: a store or head office), or one shared key for requests with
/// none, so a flood of anonymous or guessed-token requests never slows the stores down.
public struct RateLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limiter: RateLimiter
    let clock: @Sendable () -> Double

    public init(limiter: RateLimiter, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.limiter = limiter
        self.clock = clock
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let key = request.bearerToken.map { "t:" + Tokens.hash($0).prefix(16) } ?? "anonymous"
        if let wait = limiter.admit(key, now: clock()) {
            var response = try JSONBody.response(ErrorBody(code: ErrorCode.rateLimited.rawValue,
                                                           message: "too many requests; retry after \(wait) s"),
                                                 status: .tooManyRequests)
            response.headers[HTTPField.Name.retryAfter] = String(wait)
            return response
        }
        return try await next(request, context)
    }
}
