/// Decodes a value straight from a `JSONValue`, with no JSON text in between: the mirror of
/// `JSONValueEncoder`. Every operation the hub ingests, and every one a replica folds, turns its
/// `JSONValue` body into a typed body; going through JSONEncoder's text and JSONDecoder took a
/// third of the hub's ingest. It decodes what the text round trip decodes (a test checks every
/// kind), with the same errors: a missing key, a value of the wrong kind, a number out of range.
public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try T(from: ValueDecoder(value: value, codingPath: []))
    }
}

/// A decoder that can list the names of an object's fields without making a key of each
/// (`rejectUnknownKeys`).
protocol FieldNames {
    /// The first field name that `matches`, in no particular order; nil for none (or for a
    /// value that is not an object: decoding it will say so).
    func firstName(where matches: (String) -> Bool) -> String?
}

private struct ValueDecoder: Decoder, FieldNames {
    func firstName(where matches: (String) -> Bool) -> String? {
        guard case .object(let fields) = value else { return nil }
        return fields.keys.first(where: matches)
    }

    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let fields) = value else { throw mismatch([String: JSONValue].self, value, codingPath) }
        return KeyedDecodingContainer(KeyedContainer<Key>(fields: fields, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch([JSONValue].self, value, codingPath) }
        return UnkeyedContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleContainer(value: value, codingPath: codingPath)
    }
}

private func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: [any CodingKey]) -> DecodingError {
    let found: String
    switch value {
    case .null:
        // A null where a value must be is "not found", as JSONDecoder has it (a till is told the
        // field must not be null, not that its type is wrong).
        let what = type == [String: JSONValue].self ? "keyed decoding container" : "value of type \(type)"
        return DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "Cannot get \(what) -- found null value instead"))
    case .bool: found = "a boolean"
    case .int, .double: found = "a number"
    case .string: found = "a string"
    case .array: found = "an array"
    case .object: found = "an object"
    }
    return DecodingError.typeMismatch(type, .init(codingPath: path, debugDescription: "Expected to decode \(type) but found \(found) instead."))
}

/// The scalars, shared by every container: what JSONDecoder accepts from the same JSON text.
/// The coding path is an autoclosure: it is built only for an error (or a nested value), not
/// for every field read (an array allocated per field was a tenth of decoding an operation).
private enum Scalar {
    static func bool(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch(Bool.self, value, path()) }
        return b
    }

    static func string(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> String {
        guard case .string(let s) = value else { throw mismatch(String.self, value, path()) }
        return s
    }

    static func double(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Double {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw mismatch(Double.self, value, path())
        }
    }

    static func integer<T: FixedWidthInteger>(_ type: T.Type, _ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> T {
        let exact: T?
        switch value {
        case .int(let i): exact = T(exactly: i)
        case .double(let d): exact = T(exactly: d)
        default: throw mismatch(T.self, value, path())
        }
        guard let exact else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "Number \(value.jsonText) does not fit in \(T.self)."))
        }
        return exact
    }

    static func decode<T: Decodable>(_ type: T.Type, _ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> T {
        // The common scalars directly, the rest (structs, arrays, JSONValue) by their own init.
        if T.self == String.self, let s = try string(value, path()) as? T { return s }
        if T.self == Int64.self, let i = try integer(Int64.self, value, path()) as? T { return i }
        if T.self == Int.self, let i = try integer(Int.self, value, path()) as? T { return i }
        if T.self == Bool.self, let b = try bool(value, path()) as? T { return b }
        if T.self == JSONValue.self, let v = value.integralNumbersAsIntegers as? T { return v }
        return try T(from: ValueDecoder(value: value, codingPath: path()))
    }
}

private struct PlainKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) { self.stringValue = "Index \(intValue)"; self.intValue = intValue }
}

private struct KeyedContainer<K: CodingKey>: KeyedDecodingContainerProtocol {
    let fields: [String: JSONValue]
    let codingPath: [any CodingKey]

    var allKeys: [K] { fields.keys.compactMap { K(stringValue: $0) } }
    func contains(_ key: K) -> Bool { fields[key.stringValue] != nil }

    private func value(_ key: K) throws -> JSONValue {
        guard let value = fields[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key.stringValue)."))
        }
        return value
    }

    func decodeNil(forKey key: K) throws -> Bool {
        if case .null = try value(key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: K) throws -> Bool { try Scalar.bool(try value(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: K) throws -> String { try Scalar.string(try value(key), codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: K) throws -> Double { try Scalar.double(try value(key), codingPath + [key]) }
    func decode(_ type: Float.Type, forKey key: K) throws -> Float { Float(try Scalar.double(try value(key), codingPath + [key])) }
    func decode(_ type: Int.Type, forKey key: K) throws -> Int { try Scalar.integer(Int.self, try value(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: K) throws -> Int8 { try Scalar.integer(Int8.self, try value(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: K) throws -> Int16 { try Scalar.integer(Int16.self, try value(key), codingPath + [key]) }
    func decode(_ type: Int32.Type, forKey key: K) throws -> Int32 { try Scalar.integer(Int32.self, try value(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: K) throws -> Int64 { try Scalar.integer(Int64.self, try value(key), codingPath + [key]) }
    func decode(_ type: UInt.Type, forKey key: K) throws -> UInt { try Scalar.integer(UInt.self, try value(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: K) throws -> UInt8 { try Scalar.integer(UInt8.self, try value(key), codingPath + [key]) }
    func decode(_ type: UInt16.Type, forKey key: K) throws -> UInt16 { try Scalar.integer(UInt16.self, try value(key), codingPath + [key]) }
    func decode(_ type: UInt32.Type, forKey key: K) throws -> UInt32 { try Scalar.integer(UInt32.self, try value(key), codingPath + [key]) }
    func decode(_ type: UInt64.Type, forKey key: K) throws -> UInt64 { try Scalar.integer(UInt64.self, try value(key), codingPath + [key]) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: K) throws -> T { try Scalar.decode(T.self, try value(key), codingPath + [key]) }

    // JSONDecoder reads an absent key and a null alike as absent. The concrete kinds too: the
    // protocol's own versions look the key up three times (contains, decodeNil, decode).
    private func present<T: Decodable>(_ type: T.Type, _ key: K) throws -> T? {
        guard let value = present(key) else { return nil }
        return try Scalar.decode(T.self, value, codingPath + [key])
    }

    /// The value of a key that is there and not null.
    private func present(_ key: K) -> JSONValue? {
        guard let value = fields[key.stringValue] else { return nil }
        if case .null = value { return nil }
        return value
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: K) throws -> T? { try present(type, key) }
    // The common kinds without the generic path: it asks the type of each value at run time
    // (`as? T`), a third of decoding a pulled sale's optional fields.
    func decodeIfPresent(_ type: Bool.Type, forKey key: K) throws -> Bool? {
        guard let value = present(key) else { return nil }
        return try Scalar.bool(value, codingPath + [key])
    }
    func decodeIfPresent(_ type: String.Type, forKey key: K) throws -> String? {
        guard let value = present(key) else { return nil }
        return try Scalar.string(value, codingPath + [key])
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: K) throws -> Double? { try present(type, key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: K) throws -> Float? { try present(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: K) throws -> Int? { try present(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: K) throws -> Int8? { try present(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: K) throws -> Int16? { try present(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: K) throws -> Int32? { try present(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: K) throws -> Int64? {
        guard let value = present(key) else { return nil }
        return try Scalar.integer(Int64.self, value, codingPath + [key])
    }
    func decodeIfPresent(_ type: UInt.Type, forKey key: K) throws -> UInt? { try present(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: K) throws -> UInt8? { try present(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: K) throws -> UInt16? { try present(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: K) throws -> UInt32? { try present(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: K) throws -> UInt64? { try present(type, key) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: K) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: K) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        ValueDecoder(value: fields["super"] ?? .null, codingPath: codingPath + [PlainKey(stringValue: "super")])
    }

    func superDecoder(forKey key: K) throws -> any Decoder {
        ValueDecoder(value: fields[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [JSONValue], codingPath: [any CodingKey]) { self.items = items; self.codingPath = codingPath }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next<T>(_ type: T.Type) throws -> (JSONValue, [any CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [PlainKey(intValue: currentIndex)], debugDescription: "Unkeyed container is at end."))
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], codingPath + [PlainKey(intValue: currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, case .null = items[currentIndex] else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { let (v, p) = try next(type); return try Scalar.bool(v, p) }
    mutating func decode(_ type: String.Type) throws -> String { let (v, p) = try next(type); return try Scalar.string(v, p) }
    mutating func decode(_ type: Double.Type) throws -> Double { let (v, p) = try next(type); return try Scalar.double(v, p) }
    mutating func decode(_ type: Float.Type) throws -> Float { let (v, p) = try next(type); return Float(try Scalar.double(v, p)) }
    mutating func decode(_ type: Int.Type) throws -> Int { let (v, p) = try next(type); return try Scalar.integer(Int.self, v, p) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { let (v, p) = try next(type); return try Scalar.integer(Int8.self, v, p) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { let (v, p) = try next(type); return try Scalar.integer(Int16.self, v, p) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { let (v, p) = try next(type); return try Scalar.integer(Int32.self, v, p) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { let (v, p) = try next(type); return try Scalar.integer(Int64.self, v, p) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { let (v, p) = try next(type); return try Scalar.integer(UInt.self, v, p) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (v, p) = try next(type); return try Scalar.integer(UInt8.self, v, p) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { let (v, p) = try next(type); return try Scalar.integer(UInt16.self, v, p) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { let (v, p) = try next(type); return try Scalar.integer(UInt32.self, v, p) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { let (v, p) = try next(type); return try Scalar.integer(UInt64.self, v, p) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { let (v, p) = try next(type); return try Scalar.decode(T.self, v, p) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next([String: JSONValue].self)
        return try ValueDecoder(value: v, codingPath: p).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next([JSONValue].self)
        return try ValueDecoder(value: v, codingPath: p).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next(JSONValue.self)
        return ValueDecoder(value: v, codingPath: p)
    }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { if case .null = value { return true }; return false }
    func decode(_ type: Bool.Type) throws -> Bool { try Scalar.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try Scalar.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try Scalar.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try Scalar.double(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try Scalar.integer(Int.self, value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Scalar.integer(Int8.self, value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Scalar.integer(Int16.self, value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Scalar.integer(Int32.self, value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Scalar.integer(Int64.self, value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try Scalar.integer(UInt.self, value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Scalar.integer(UInt8.self, value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Scalar.integer(UInt16.self, value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Scalar.integer(UInt32.self, value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Scalar.integer(UInt64.self, value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try Scalar.decode(T.self, value, codingPath) }
}

extension JSONValue {
    /// The value as JSON text would read back: a whole number written as a double (2.0) reads
    /// back as an integer, as JSONEncoder writes it "2".
    public var integralNumbersAsIntegers: JSONValue {
        switch self {
        case .double(let d): Int64(exactly: d).map(JSONValue.int) ?? self
        case .array(let items): items.contains(where: \.holdsDouble) ? .array(items.map(\.integralNumbersAsIntegers)) : self
        case .object(let fields): fields.values.contains(where: \.holdsDouble) ? .object(fields.mapValues(\.integralNumbersAsIntegers)) : self
        default: self
        }
    }

    private var holdsDouble: Bool {
        switch self {
        case .double: true
        case .array(let items): items.contains(where: \.holdsDouble)
        case .object(let fields): fields.values.contains(where: \.holdsDouble)
        default: false
        }
    }
}
