import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TesseraCore
import TesseraProtocol

/// Why a call to the hub did not produce an answer we can act on.
public enum HubCallError: Error, CustomStringConvertible {
    /// Connection refused, timeout, reset: the hub may or may not have acted.
    case unreachable(String)
    /// The hub answered with an error status.
    case status(Int, ErrorBody?)

    /// The hub read the request and refused its content (not its credentials, its protocol
    /// version or its rate): sending it again unchanged will never succeed.
    public var refusesTheRequest: Bool {
        guard case .status(let code, let body) = self else { return false }
        return (code == 400 && body?.error.code == ErrorCode.invalidRequest.rawValue) || code == 413
    }

    public var description: String {
        switch self {
        case .unreachable(let why): "hub unreachable: \(why)"
        case .status(let code, let body): "hub answered \(code)\(body.map { " \($0.error.code): \($0.error.message)" } ?? "")"
        }
    }
}

/// The node's client for sync protocol v1, over URLSession (libcurl on Linux).
public final class HubClient: Sendable {
    public let base: URL
    private let token: String
    /// Two sessions because on Linux a request's own `timeoutInterval` does not shorten its
    /// session's: a till's authorisation must give up after `authorizeTimeout` (measured: with
    /// one 30 s session it waited 30 s on a hub that accepted the connection and never answered).
    private let syncSession: URLSession
    private let authorizeSession: URLSession
    /// How far this machine's clock runs ahead of the hub's (negative: behind), from the `Date`
    /// header of the hub's last answer (to the second).
    private let skew = Mutex<Int64?>(nil)
    public var clockSkewMs: Int64? { skew.withLock { $0 } }

    public init(base: URL, token: String, authorizeTimeout: TimeInterval, syncTimeout: TimeInterval = 30) {
        self.base = base
        self.token = token
        func session(_ timeout: TimeInterval) -> URLSession {
            let config = URLSessionConfiguration.ephemeral
            config.timeoutIntervalForRequest = timeout
            config.timeoutIntervalForResource = timeout
            config.httpMaximumConnectionsPerHost = 4
            return URLSession(configuration: config)
        }
        self.syncSession = session(syncTimeout)
        self.authorizeSession = session(authorizeTimeout)
    }

    public func push(_ request: PushRequest) async throws -> PushResponse {
        try await call(syncSession, "POST", "/v1/sync/push", body: request)
    }

    public func authorize(_ request: AuthorizeRequest) async throws -> AuthorizeResponse {
        try await call(authorizeSession, "POST", "/v1/sync/authorize", body: request)
    }

    public func pull(after cursor: Int64, pending: Int) async throws -> PullResponse {
        try await call(syncSession, "GET", "/v1/sync/pull?after=\(cursor)&limit=\(SyncLimits.pullPageMax)&pending=\(pending)", body: Optional<PushRequest>.none)
    }

    public func snapshot() async throws -> Snapshot {
        try await call(syncSession, "GET", "/v1/sync/snapshot", body: Optional<PushRequest>.none)
    }

    private func call<Body: Encodable, Answer: Decodable>(_ session: URLSession, _ method: String, _ path: String, body: Body?) async throws -> Answer {
        guard let url = URL(string: base.absoluteString.trimmingSuffix("/") + path) else {
            throw HubCallError.unreachable("bad hub URL")
        }
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue(String(ProtocolVersion.current), forHTTPHeaderField: ProtocolVersion.header)
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONEncoder().encode(body)
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            throw HubCallError.unreachable("\(error.localizedDescription)")
        }
        guard let http = response as? HTTPURLResponse else { throw HubCallError.unreachable("not an HTTP answer") }
        if let header = http.value(forHTTPHeaderField: "Date"), let hubTime = Self.httpDate(header) {
            let offset = Int64((Date().timeIntervalSince1970 - hubTime.timeIntervalSince1970) * 1000)
            skew.withLock { $0 = offset }
        }
        guard (200..<300).contains(http.statusCode) else {
            throw HubCallError.status(http.statusCode, try? JSONDecoder().decode(ErrorBody.self, from: data))
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            // A truncated or garbled answer is as good as none.
            throw HubCallError.unreachable("unreadable answer: \(error)")
        }
    }
}

extension HubClient {
    /// An HTTP `Date` header (RFC 9110 IMF-fixdate), e.g. `Mon, 23 Nov 2026 14:38:12 GMT`.
    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text)
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
