import Foundation
import Synchronization
import AsyncHTTPClient
import CompressNIO
import NIOCore
import NIOHTTP1
import NIOSSL
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

/// The node's client for sync protocol v1, over AsyncHTTPClient (SwiftNIO). It replaced
/// URLSession: on Linux, FoundationNetworking traps ("Transfer completed, but there's no
/// response") when a connection closes before an answer, which killed the node under the
/// fault-injecting proxy; a broken link must be an error, never a crash.
public final class HubClient: Sendable {
    public let base: URL
    private let token: String
    private let authorizeTimeout: TimeAmount
    private let syncTimeout: TimeAmount
    /// How an `https` hub is verified (nil: the system's roots, full verification).
    private let tls: TLSConfiguration?
    /// The HTTP client (the process-wide one unless given: a benchmark hosting many nodes in one
    /// process gives them a client with a larger connection pool).
    private let http: HTTPClient
    /// How far this machine's clock runs ahead of the hub's (negative: behind), from the `Date`
    /// header of the hub's last answer (to the second).
    private let skew = Mutex<Int64?>(nil)
    public var clockSkewMs: Int64? { skew.withLock { $0 } }
    /// Answers larger than this are refused (a snapshot is the largest).
    static let answerBytesMax = 512 * 1024 * 1024

    /// One client for the process (a static: an HTTPClient must never be deinitialised
    /// without a shutdown). Connection failures fail the request at once instead of being
    /// retried until its deadline: a hub that is down must be noticed in milliseconds, so a
    /// till's spend is decided offline at once and sync resumes as soon as the hub is back.
    static let shared = makeHTTPClient()

    /// An HTTP client set up as a node's (whoever makes one must shut it down).
    public static func makeHTTPClient(connectionsPerHost: Int = 8) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connectionsPerHost
        configuration.timeout = .init(connect: .seconds(2))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    public init(base: URL, token: String, authorizeTimeout: TimeInterval, syncTimeout: TimeInterval = 30,
                tls: TLSConfiguration? = nil, http: HTTPClient? = nil) {
        self.base = base
        self.tls = tls
        self.http = http ?? Self.shared
        self.token = token
        self.authorizeTimeout = .milliseconds(Int64(authorizeTimeout * 1000))
        self.syncTimeout = .milliseconds(Int64(syncTimeout * 1000))
    }

    public func push(_ request: PushRequest) async throws -> PushResponse {
        try await call(syncTimeout, .POST, "/v1/sync/push", body: request)
    }

    public func authorize(_ request: AuthorizeRequest) async throws -> AuthorizeResponse {
        try await call(authorizeTimeout, .POST, "/v1/sync/authorize", body: request)
    }

    public func pull(after cursor: Int64, pending: Int) async throws -> PullResponse {
        // Gzipped where the hub keeps the page so (a whole page: about an eleventh of the bytes).
        try await call(syncTimeout, .GET, "/v1/sync/pull?after=\(cursor)&limit=\(SyncLimits.pullPageMax)&pending=\(pending)",
                       body: Optional<PushRequest>.none, acceptsGzip: true)
    }

    public func snapshot() async throws -> Snapshot {
        try await call(syncTimeout, .GET, "/v1/sync/snapshot", body: Optional<PushRequest>.none)
    }

    /// One page of the snapshot: nil for the first, then the previous page's `next`.
    public func snapshotPage(_ page: String?, limit: Int = SyncLimits.snapshotPageRows) async throws -> Snapshot {
        let token = (page ?? "first").addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? "first"
        return try await call(syncTimeout, .GET, "/v1/sync/snapshot?page=\(token)&limit=\(limit)", body: Optional<PushRequest>.none)
    }

    /// Head office: any GET of the hub's API (with a head-office token), decoded.
    public func get<Answer: Decodable>(_ path: String, as type: Answer.Type = Answer.self) async throws -> Answer {
        try await call(syncTimeout, .GET, path, body: Optional<PushRequest>.none)
    }

    /// Head office: publishes a programme document (with a head-office token).
    public func publishRules(_ document: JSONValue) async throws -> HubAPI.RulesVersion {
        try await call(syncTimeout, .PUT, "/v1/rules", body: document)
    }

    /// The whole snapshot as one SQLite file (§6.4), written to `path` as it arrives (never
    /// held in memory); returns its size and the store's highest sequence number the hub sent
    /// with it (`Tessera-Origin-Seq`; nil from a hub that writes it into the file).
    /// `progress` is told the bytes received so far.
    /// The hub makes the file before it answers (half a minute at a million members), so the
    /// answer may take `snapshotFileWait` to start; after that, a link silent for the sync
    /// timeout is given up as it is for every other call.
    public func downloadSnapshotFile(to path: String, progress: @escaping @Sendable (Int64) -> Void = { _ in }) async throws
        -> (bytes: Int64, originSeq: UInt64?) {
        let request = makeRequest(.GET, "/v1/sync/snapshot/file")
        guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw DomainError(.storageUnavailable, "cannot write the snapshot file at \(path)")
        }
        defer { try? file.close() }
        // When bytes last came, and whether the answer has started.
        let heard = Heard()
        let idle = syncTimeout, wait = Self.snapshotFileWait
        do {
            return try await withThrowingTaskGroup(of: (bytes: Int64, originSeq: UInt64?)?.self) { group in
                group.addTask {
                    let response = try await self.http.execute(request, deadline: .now() + wait)
                    heard.state.withLock { $0 = (.now(), true) }
                    let status = Int(response.status.code)
                    guard (200..<300).contains(status) else {
                        let buffer = try await response.body.collect(upTo: 1 << 20)
                        throw HubCallError.status(status, try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer.readableBytesView)))
                    }
                    let originSeq = response.headers.first(name: SnapshotFileAnswer.originSeqHeader).flatMap { UInt64($0) }
                    var received: Int64 = 0
                    for try await chunk in response.body {
                        try file.write(contentsOf: chunk.readableBytesView)
                        received += Int64(chunk.readableBytes)
                        heard.state.withLock { $0.at = .now() }
                        progress(received)
                    }
                    return (received, originSeq)
                }
                group.addTask {
                    // The watchdog: ends the download when the link goes quiet.
                    while true {
                        try await Task.sleep(for: .milliseconds(250))
                        let (at, started) = heard.state.withLock { $0 }
                        if .now() > at + (started ? idle : wait) {
                            throw HubCallError.unreachable("the snapshot file stopped arriving")
                        }
                    }
                }
                defer { group.cancelAll() }
                while let done = try await group.next() {
                    if let received = done { return received }
                }
                throw HubCallError.unreachable("the snapshot file did not arrive")
            }
        } catch {
            throw Self.linkError(error)
        }
    }

    /// Why an exchange with the hub failed, as a `HubCallError`.
    static func linkError(_ error: any Error) -> HubCallError {
        switch error {
        case let error as HubCallError: error
        // Said plainly: an operator must see at once that the link is up but not trusted.
        case let error as NIOSSLError: .unreachable("TLS with the hub failed (is its certificate trusted? see --hub-ca): \(error)")
        default: .unreachable("\(error)")
        }
    }

    private final class Heard: Sendable {
        let state = Mutex<(at: NIODeadline, started: Bool)>((.now(), false))
    }

    /// How long the hub may take to start sending a snapshot file (it makes it first).
    static let snapshotFileWait = TimeAmount.minutes(10)

    private func makeRequest(_ method: NIOHTTP1.HTTPMethod, _ path: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: base.absoluteString.trimmingSuffix("/") + path)
        request.method = method
        request.tlsConfiguration = tls
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: ProtocolVersion.header, value: String(ProtocolVersion.current))
        return request
    }

    private func call<Body: Encodable, Answer: Decodable>(_ timeout: TimeAmount, _ method: NIOHTTP1.HTTPMethod, _ path: String, body: Body?,
                                                          acceptsGzip: Bool = false) async throws -> Answer {
        var request = makeRequest(method, path)
        if acceptsGzip { request.headers.add(name: "Accept-Encoding", value: "gzip") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            // Written from a JSON value (sorted keys), not by JSONEncoder: a node pushing while
            // its tills sell spent 7 % of its time in JSONEncoder here.
            request.body = .bytes(ByteBuffer(bytes: try JSONTextEncoder().encode(body)))
        }
        let status: Int
        let data: Data
        do {
            // One deadline for the whole exchange, answer included: a slow link counts too.
            let deadline = NIODeadline.now() + timeout
            let response = try await http.execute(request, deadline: deadline)
            status = Int(response.status.code)
            if let header = response.headers.first(name: "Date"), let hubTime = Self.httpDate(header) {
                let offset = Int64((Date().timeIntervalSince1970 - hubTime.timeIntervalSince1970) * 1000)
                skew.withLock { $0 = offset }
            }
            // The deadline covers the answer's body too (the request is cancelled when it passes).
            var buffer = try await response.body.collect(upTo: Self.answerBytesMax)
            if acceptsGzip, response.headers.first(name: "Content-Encoding")?.lowercased() == "gzip" {
                buffer = try Self.gunzip(buffer)
            }
            data = Data(buffer.readableBytesView)
        } catch {
            throw Self.linkError(error)
        }
        guard (200..<300).contains(status) else {
            throw HubCallError.status(status, try? JSONDecoder().decode(ErrorBody.self, from: data))
        }
        do {
            return try decodeJSON(Answer.self, from: data)
        } catch {
            // A truncated or garbled answer is as good as none.
            throw HubCallError.unreachable("unreadable answer: \(error)")
        }
    }
}

extension HubClient {
    /// A gzipped answer (a pull page: 1,000 operations, about 400 kB) inflates to at most this:
    /// a proxy's mistake or a hostile answer must not make the node hold half a gigabyte.
    static let gzippedAnswerBytesMax = 64 * 1024 * 1024

    /// A gzipped answer's JSON (at most `gzippedAnswerBytesMax`); an answer that does not
    /// inflate is as good as none.
    static func gunzip(_ gzipped: ByteBuffer) throws -> ByteBuffer {
        var input = gzipped
        do {
            return try input.decompress(with: .gzip(), maxSize: gzippedAnswerBytesMax)
        } catch {
            throw HubCallError.unreachable("unreadable gzipped answer: \(error)")
        }
    }

    /// An HTTP `Date` header (RFC 9110 IMF-fixdate), e.g. `Mon, 23 Nov 2026 14:38:12 GMT`; nil
    /// for anything else. Read by position: a DateFormatter made for each answer was 7 % of a
    /// node's time under a till's load (the sync loop reads every answer's date).
    static func httpDate(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[4] == 0x20, b[7] == 0x20, b[11] == 0x20, b[16] == 0x20,
              b[19] == UInt8(ascii: ":"), b[22] == UInt8(ascii: ":"), b[25] == 0x20,
              b[26...28].elementsEqual("GMT".utf8) else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard (0x30...0x39).contains(b[i]) else { return nil }
                value = value * 10 + Int(b[i] - 0x30)
            }
            return value
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let hour = number(17..<19), let minute = number(20..<22), let second = number(23..<25),
              hour < 24, minute < 60, second < 61,
              let month = months.firstIndex(where: { b[8..<11].elementsEqual($0.utf8) }),
              let dayOfMonth = number(5..<7), let year = number(12..<16),
              let day = LocalDay(year: Int64(year), month: Int64(month + 1), day: Int64(dayOfMonth)) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(day.number * 86_400 + Int64(hour * 3_600 + minute * 60 + second)))
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
