import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization
import TesseraCore

/// Where the hub's PostgreSQL is, from a libpq-style URL:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require|verify-full&sslrootcert=PEM]`,
/// or a Unix socket with `?host=/run/postgresql` (the socket's folder).
public struct PostgresLocation: Sendable, CustomStringConvertible {
    public enum Security: String, Sendable { case disable, require, verifyFull = "verify-full" }

    public var host: String
    public var port: Int
    public var socketFolder: String?
    public var user: String
    public var password: String?
    public var database: String
    public var security: Security
    public var rootCertificate: String?

    public init(url text: String) throws(DomainError) {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? "") else {
            throw DomainError(.invalidRequest, "--database takes postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        host = url.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        port = url.port ?? 5432
        socketFolder = query["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        // URLComponents decodes percent-escapes already (a password "50%25off" is "50%off").
        user = url.user ?? ProcessInfo.processInfo.environment["USER"] ?? "postgres"
        password = url.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        guard !path.isEmpty, !path.contains("/") else { throw DomainError(.invalidRequest, "the PostgreSQL URL names no database (…/DATABASE)") }
        database = path
        guard let security = Security(rawValue: query["sslmode"] ?? "disable") else {
            throw DomainError(.invalidRequest, "sslmode is disable, require or verify-full")
        }
        self.security = security
        rootCertificate = query["sslrootcert"]
    }

    /// The same server, another database (tests make one per case).
    public func with(database: String) -> PostgresLocation {
        var copy = self
        copy.database = database
        return copy
    }

    /// The URL again, password included (for starting another process on the same database).
    public var url: String {
        let secret = password.map { ":" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? $0) } ?? ""
        var query: [String] = []
        if let socketFolder { query.append("host=\(socketFolder)") }
        if security != .disable { query.append("sslmode=\(security.rawValue)") }
        if let rootCertificate { query.append("sslrootcert=\(rootCertificate)") }
        let userPart = user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? user
        return "postgres://\(userPart)\(secret)@\(socketFolder == nil ? host : ""):\(port)/\(database)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
    }

    /// For logs: never the password.
    public var description: String {
        "postgres://\(user)@\(socketFolder ?? "\(host):\(port)")/\(database)"
    }

    func configuration() throws -> PostgresConnection.Configuration {
        if let socketFolder {
            return .init(unixSocketPath: "\(socketFolder)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        let tls: PostgresConnection.Configuration.TLS
        switch security {
        case .disable:
            tls = .disable
        case .require:
            // libpq's `require`: encrypted, the server's certificate not checked.
            var config = TLSConfiguration.makeClientConfiguration()
            config.certificateVerification = .none
            tls = .require(try NIOSSLContext(configuration: config))
        case .verifyFull:
            var config = TLSConfiguration.makeClientConfiguration()
            if let rootCertificate { config.trustRoots = .file(rootCertificate) }
            tls = .require(try NIOSSLContext(configuration: config))
        }
        return .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
    }
}

/// Blocking access to PostgreSQL for the hub's storage, whose API is synchronous like GRDB's:
/// a call waits on PostgresNIO's futures, which run on NIO's own threads (never on the
/// caller's), so a caller from Swift concurrency blocks only itself, as it does on SQLite.
/// Connections are kept idle between calls and opened again after a failure.
final class PostgresLink: Sendable {
    let location: PostgresLocation
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private let idle = Mutex<[PostgresConnection]>([])
    private let nextID = Atomic<Int>(1)
    static let statementTimeout = TimeAmount.seconds(30)

    init(_ location: PostgresLocation) throws {
        self.location = location
        do {
            var configuration = try location.configuration()
            configuration.options.connectTimeout = .seconds(5)
            // The server's side of the client's timeouts: a hub that vanished mid-transaction
            // (a network that drops packets) must not hold the chain's write lock for the
            // hours TCP takes to notice, nor may a write wait for the lock without end.
            configuration.options.additionalStartupParameters = [
                ("idle_in_transaction_session_timeout", "20000"),
                ("lock_timeout", "25000"),
                ("statement_timeout", "25000"),
            ]
            self.configuration = configuration
        } catch {
            throw DomainError(.invalidRequest, "TLS for PostgreSQL: \(error)")
        }
        var logger = Logger(label: "tessera.postgres")
        logger.logLevel = .warning
        self.logger = logger
    }

    deinit {
        for connection in idle.withLock({ $0 }) { connection.closeNow() }
    }

    /// Closes the idle connections and waits until they are closed.
    func shutdown() {
        for connection in idle.withLock({ list in defer { list.removeAll() }; return list }) {
            let future: EventLoopFuture<Void> = connection.close()
            try? future.wait()
        }
    }

    /// Runs `body` on one connection (a transaction must stay on one).
    func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        // An idle connection the server closed meanwhile (a restart, a failover) is dropped here.
        var reused: PostgresConnection?
        while let candidate = idle.withLock({ $0.popLast() }) {
            if !candidate.isClosed { reused = candidate; break }
        }
        let connection = try reused ?? connect()
        let handle = Connection(connection: connection, logger: logger)
        do {
            let result = try body(handle)
            release(connection)
            return result
        } catch {
            if handle.healthy { release(connection) } else { connection.closeNow() }
            if error is DomainError { throw error }
            // A broken connection means the database could not be reached (503: retry later);
            // a statement the server refused is a bug of ours (500); other errors (the fold's
            // SQLite, say) go as they are.
            if !handle.healthy { throw PostgresLink.unavailable(error, location) }
            if let state = PostgresLink.sqlState(error), ["55P03", "57014", "25P03", "40001", "40P01"].contains(state) {
                // Waited too long for the write lock, cancelled, or a conflict: retry later.
                throw DomainError(.storageUnavailable, "the hub's PostgreSQL is busy: \(PostgresLink.describe(error)); retry")
            }
            if error is PSQLError { throw DomainError(.internalError, "PostgreSQL refused a statement: \(PostgresLink.describe(error))") }
            throw error
        }
    }

    /// One statement on any connection.
    @discardableResult
    func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try withConnection { try $0.run(query) }
    }

    private func release(_ connection: PostgresConnection) {
        guard !connection.isClosed else { return }
        let kept = idle.withLock { list -> Bool in
            guard list.count < 8 else { return false }
            list.append(connection)
            return true
        }
        if !kept { connection.closeNow() }
    }

    private func connect() throws -> PostgresConnection {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        do {
            return try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                                                  id: id, logger: logger).wait()
        } catch {
            throw PostgresLink.unavailable(error, location)
        }
    }

    static func unavailable(_ error: any Error, _ location: PostgresLocation) -> DomainError {
        DomainError(.storageUnavailable, "the hub's PostgreSQL (\(location)) is unavailable: \(PostgresLink.describe(error))")
    }

    /// PostgresNIO keeps details out of `description` (they may hold data); the server's
    /// message and SQLSTATE are what an operator needs.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
            }
            return "\(error.code)"
        }
        return "\(error)"
    }

    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// A connection lent for one call or one transaction.
    final class Connection {
        let connection: PostgresConnection
        let logger: Logger
        /// False once a failure leaves the connection unusable or its state unknown.
        private(set) var healthy = true

        init(connection: PostgresConnection, logger: Logger) {
            self.connection = connection
            self.logger = logger
        }

        @discardableResult
        func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
            try wait(send(query))
        }

        /// Sends without waiting: statements on one connection run in order, so several can be
        /// in flight and waited for together (one round trip instead of several).
        func send(_ query: PostgresQuery) -> EventLoopFuture<PostgresQueryResult> {
            connection.query(query, logger: logger)
        }

        func wait(_ future: EventLoopFuture<PostgresQueryResult>) throws -> PostgresQueryResult {
            // A statement that gets no answer (a network that drops packets, a server that
            // hangs) fails after `statementTimeout` and takes its connection with it, so a
            // caller never blocks forever.
            let answer = future.eventLoop.makePromise(of: PostgresQueryResult.self)
            future.cascade(to: answer)
            let timer = future.eventLoop.scheduleTask(in: PostgresLink.statementTimeout) {
                answer.fail(DomainError(.storageUnavailable, "PostgreSQL did not answer within \(PostgresLink.statementTimeout.nanoseconds / 1_000_000_000) s"))
            }
            defer { timer.cancel() }
            do {
                return try answer.futureResult.wait()
            } catch let error as PSQLError where error.serverInfo != nil {
                throw error  // the server answered: the connection is fine, the statement failed
            } catch {
                healthy = false
                throw error
            }
        }

        /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
        func transaction<T>(_ body: () throws -> T) throws -> T {
            // Read committed whatever the database's default: a write must see the commit of
            // the writer that held the lock before it (each statement its own snapshot).
            try run("BEGIN ISOLATION LEVEL READ COMMITTED")
            do {
                let result = try body()
                try run("COMMIT")
                return result
            } catch {
                if healthy {
                    do { try run("ROLLBACK") } catch { healthy = false }
                }
                throw error
            }
        }
    }
}

extension PostgresConnection {
    /// Closes without waiting (the future-returning overload; the async one would need a task).
    fileprivate func closeNow() {
        let future: EventLoopFuture<Void> = close()
        // PostgresNIO asserts that a connection is closed before it goes: keep it until then.
        future.whenComplete { _ in withExtendedLifetime(self) {} }
    }
}

/// Set-up and inspection of a PostgreSQL server for tests, benchmarks and first installs.
public enum PostgresAdmin {
    /// Creates an empty database on the server of `server` (connecting to its database).
    public static func createDatabase(_ name: String, on server: PostgresLocation) throws {
        try check(name)
        let link = try PostgresLink(server)
        defer { link.shutdown() }
        try link.run(PostgresQuery(unsafeSQL: "CREATE DATABASE \"\(name)\""))
    }

    /// Drops a database, closing the connections still open to it.
    public static func dropDatabase(_ name: String, on server: PostgresLocation) throws {
        try check(name)
        let link = try PostgresLink(server)
        defer { link.shutdown() }
        try link.run(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)"))
    }

    /// Database names made here are plain lower-case ASCII (they are spliced, quoted, into SQL).
    private static func check(_ name: String) throws {
        guard !name.isEmpty, name.count <= 63, name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }) else {
            throw DomainError(.invalidRequest, "a database name of 1 to 63 characters a-z, 0-9 or _: \(name)")
        }
    }

    /// The benchmark's limit: `rows` inserted into a plain copy of the hub's log table, `batch`
    /// rows a transaction with the statement the hub uses, on one connection. Returns seconds.
    public static func timeRawInserts(_ rows: [LogRow], batch: Int, at location: PostgresLocation) throws -> Double {
        let link = try PostgresLink(location)
        defer { link.shutdown() }
        let table = "raw_inserts_\(UInt32.random(in: 0...UInt32.max))"
        try link.run(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (LIKE ops INCLUDING ALL)"))
        defer { _ = try? link.run(PostgresQuery(unsafeSQL: "DROP TABLE \(table)")) }
        let started = Date()
        try link.withConnection { c in
            for start in stride(from: 0, to: rows.count, by: batch) {
                try c.transaction { try c.run(PostgresWrites.insert(rows[start..<min(rows.count, start + batch)], into: table)) }
            }
        }
        return Date().timeIntervalSince(started)
    }

    /// The first column of a query's rows, as text.
    public static func strings(_ sql: String, at location: PostgresLocation) throws -> [String] {
        let link = try PostgresLink(location)
        defer { link.shutdown() }
        return try link.run(PostgresQuery(unsafeSQL: sql)).map { try $0.decode(String.self) }
    }
}
