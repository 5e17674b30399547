import Foundation
import TesseraCore
import TesseraStorage

/// The database a hub test runs on: SQLite always, PostgreSQL when `TESSERA_TEST_POSTGRES`
/// names a server (scripts/with-postgres starts one; scripts/test does so when PostgreSQL is
/// installed). Cases that need PostgreSQL are skipped without it, and say so.
public enum Backend: String, Sendable, CaseIterable {
    case sqlite, postgresql

    public static let server: PostgresLocation? = ProcessInfo.processInfo.environment["TESSERA_TEST_POSTGRES"]
        .flatMap { $0.isEmpty ? nil : try? PostgresLocation(url: $0) }
    public static var all: [Backend] { server == nil ? [.sqlite] : [.sqlite, .postgresql] }
    public static var postgresAvailable: Bool { server != nil }
    public static let skipNote = "no PostgreSQL server: set TESSERA_TEST_POSTGRES (scripts/with-postgres does)"
}

/// A new, empty PostgreSQL database on the test server; `drop()` removes it.
public final class TestDatabase: Sendable {
    public let name: String
    public let location: PostgresLocation
    private let server: PostgresLocation

    public init() throws {
        guard let server = Backend.server else { throw DomainError(.invalidRequest, Backend.skipNote) }
        self.server = server
        name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        try PostgresAdmin.createDatabase(name, on: server)
        location = server.with(database: name)
    }

    public var url: String { "postgres://\(location.user)@\(location.host):\(location.port)/\(name)" }

    public func drop() { try? PostgresAdmin.dropDatabase(name, on: server) }
}
