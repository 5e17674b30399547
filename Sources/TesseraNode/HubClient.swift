import Foundation
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
    private let session: URLSession

    public init(base: URL, token: String) {
        self.base = base
        self.token = token
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 30
        config.httpMaximumConnectionsPerHost = 4
        self.session = URLSession(configuration: config)
    }

    public func push(_ request: PushRequest, timeout: TimeInterval) async throws -> PushResponse {
        try await call("POST", "/v1/sync/push", body: request, timeout: timeout)
    }

    public func authorize(_ request: AuthorizeRequest, timeout: TimeInterval) async throws -> AuthorizeResponse {
        try await call("POST", "/v1/sync/authorize", body: request, timeout: timeout)
    }

    public func pull(after cursor: Int64, pending: Int, timeout: TimeInterval) async throws -> PullResponse {
        try await call("GET", "/v1/sync/pull?after=\(cursor)&limit=\(SyncLimits.pullPageMax)&pending=\(pending)", body: Optional<PushRequest>.none, timeout: timeout)
    }

    public func snapshot(timeout: TimeInterval) async throws -> Snapshot {
        try await call("GET", "/v1/sync/snapshot", body: Optional<PushRequest>.none, timeout: timeout)
    }

    private func call<Body: Encodable, Answer: Decodable>(_ method: String, _ path: String, body: Body?, timeout: TimeInterval) async throws -> Answer {
        guard let url = URL(string: base.absoluteString.trimmingSuffix("/") + path) else {
            throw HubCallError.unreachable("bad hub URL")
        }
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
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

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
