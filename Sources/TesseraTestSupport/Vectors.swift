import Foundation
import Testing
import TesseraCore

/// A protocol test vector from protocol/vectors: an operation set and the member views every
/// replica must fold it to.
public struct Vector: Decodable, Sendable, CustomTestStringConvertible {
    public var name: String
    public var description: String
    public var ops: [TesseraCore.Operation]
    public var expected: [MemberView]
    /// Each store's lease of each member after the fold (escrow leases), when the vector says.
    public var expectedLeases: [ExpectedLease]?

    public struct ExpectedLease: Decodable, Sendable, Hashable {
        public var member: MemberID
        public var store: StoreID
        public var value: Int64
        public var points: Int64
    }

    enum CodingKeys: String, CodingKey {
        case name, description, ops, expected
        case expectedLeases = "expected_leases"
    }

    public var testDescription: String { name }

    public static func all() throws -> [Vector] {
        let folder = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("protocol/vectors")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        return try files.map { try JSONDecoder().decode(Vector.self, from: Data(contentsOf: folder.appendingPathComponent($0))) }
    }
}
