/// Typed identifiers. They are plain strings on the wire and on disk; the types keep a member id
/// from being passed where a card number is expected.

/// A store (and its node). Lower-case letters, digits, `-` and `_`, 1 to 32 characters.
/// `hub` is reserved for operations the hub itself makes (merges, reversals).
public struct StoreID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard StoreID.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let id = StoreID(rawValue: raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid store id '\(raw)'"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
    public static let hub = StoreID(uncheckedRawValue: "hub")
    init(uncheckedRawValue: String) { self.rawValue = uncheckedRawValue }

    public static func isValid(_ raw: String) -> Bool {
        guard (1...32).contains(raw.utf8.count), let first = raw.utf8.first else { return false }
        func ok(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x5f }
        return raw.utf8.allSatisfy(ok) && first != 0x2d && first != 0x5f
    }
    public var description: String { rawValue }
    public static func < (a: StoreID, b: StoreID) -> Bool { a.rawValue < b.rawValue }
}

/// A string identifier with no structure the domain relies on (members, cards).
public protocol StringIdentifier: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible
where RawValue == String {
    init(_ raw: String)
}

extension StringIdentifier {
    public init?(rawValue: String) { self.init(rawValue) }
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
    public var description: String { rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A member. Made by the enrolling store from its enrolment operation: `m-<store>-<seq>`.
public struct MemberID: StringIdentifier {
    public let rawValue: String
    public init(_ raw: String) { self.rawValue = raw }
    public init(enrolment: OperationID) { self.rawValue = "m-\(enrolment.origin.rawValue)-\(enrolment.seq)" }
}

/// A card number as printed on the card or encoded in its barcode / QR code.
public struct CardNumber: StringIdentifier {
    public let rawValue: String
    public init(_ raw: String) { self.rawValue = raw }
    /// A number made by the store that issues the card: `<STORE>-<seq, 6 digits at least>`.
    public init(issuedBy store: StoreID, seq: UInt64) {
        let digits = String(seq)
        let padded = String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        self.rawValue = "\(store.rawValue.uppercased())-\(padded)"
    }
}

/// The globally unique id of an operation: the store that made it and that store's sequence
/// number (1, 2, 3, ...). Written `origin:seq`. It never expires: retries after any outage dedupe.
public struct OperationID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let origin: StoreID
    public let seq: UInt64
    /// "origin:seq", made once: the id is written as text many times over for each operation
    /// (its row, its entries, look-ups by id, events), at every replica and the hub.
    public let description: String

    public init(origin: StoreID, seq: UInt64) {
        precondition(seq > 0, "sequence numbers start at 1")
        self.origin = origin
        self.seq = seq
        self.description = "\(origin.rawValue):\(seq)"
    }

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"),
              let origin = StoreID(rawValue: String(text[..<colon])),
              let seq = UInt64(text[text.index(after: colon)...]), seq > 0
        else { return nil }
        self.init(origin: origin, seq: seq)
    }

    // The text follows from the origin and the number: equal ids are equal by these two.
    public static func == (a: OperationID, b: OperationID) -> Bool { a.seq == b.seq && a.origin == b.origin }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(origin)
        hasher.combine(seq)
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let id = OperationID(raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid operation id '\(raw)'"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
    public static func < (a: OperationID, b: OperationID) -> Bool {
        (a.origin, a.seq) < (b.origin, b.seq)
    }
}
