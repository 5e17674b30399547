import Foundation

/// Encodes a value straight into a `JSONValue`, with no JSON text in between. Every operation a
/// till or the hub makes turns its typed body into a `JSONValue` (the form operations travel
/// and are stored in); going through text and back cost a quarter of an import's time (the
/// decode guesses each value's kind, and each wrong guess throws). The result is the value
/// that encoding to JSON text and decoding it as `JSONValue` gives (a test checks every kind).
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let node = Node()
        try node.store(value, path: [])
        return node.value
    }

    /// One value being built: a scalar, an object or an array of further nodes (a class, so
    /// containers add to their node in place). `JSONTextEncoder` builds the same and writes
    /// it as text instead.
    final class Node {
        enum Kind { case empty, scalar, object, array }
        var kind: Kind = .empty
        var scalar: JSONValue = .null
        /// In the order encoded; a key given twice counts once, with its last value (as a
        /// dictionary's assignment).
        var fields: [(key: String, node: Node)] = []
        var items: [Node] = []

        var value: JSONValue {
            switch kind {
            case .empty: .object([:])
            case .scalar: scalar
            case .object: .object(Dictionary(fields.lazy.map { ($0.key, $0.node.value) }, uniquingKeysWith: { _, last in last }))
            case .array: .array(items.map(\.value))
            }
        }

        /// `value`'s JSON text (`jsonText`), written without making `value`.
        func write(into out: inout [UInt8]) {
            switch kind {
            case .empty:
                out.append(contentsOf: "{}".utf8)
            case .scalar:
                scalar.write(into: &out)
            case .array:
                out.append(0x5B)
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(0x2C) }
                    item.write(into: &out)
                }
                out.append(0x5D)
            case .object:
                out.append(0x7B)
                // Keys in the order of their UTF-8 bytes, as `jsonText`; of a key given twice,
                // its last value, as `value` keeps it.
                let sorted = fields.indices.sorted { a, b in
                    let (x, y) = (fields[a].key, fields[b].key)
                    return x == y ? a < b : x.utf8.lexicographicallyPrecedes(y.utf8)
                }
                var first = true
                for (n, index) in sorted.enumerated() {
                    if n + 1 < sorted.count, fields[sorted[n + 1]].key == fields[index].key { continue }
                    if !first { out.append(0x2C) }
                    first = false
                    JSONValue.write(string: fields[index].key, into: &out)
                    out.append(0x3A)
                    fields[index].node.write(into: &out)
                }
                out.append(0x7D)
            }
        }

        func set(_ value: JSONValue) {
            kind = .scalar
            scalar = value
        }

        func store<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
            switch value {
            case let v as String: set(.string(v))
            case let v as Int64: set(.int(v))
            case let v as Int: set(.int(Int64(v)))
            case let v as JSONValue: set(v)
            case let v as Bool: set(.bool(v))
            case let v as any BinaryInteger: set(Int64(exactly: v).map(JSONValue.int) ?? .double(Double(v)))
            case let v as Double: set(.double(v))
            case let v as Float: set(.double(Double(v)))
            default: try value.encode(to: NodeEncoder(node: self, codingPath: path))
            }
        }

        func beObject() { if kind != .object { kind = .object; fields = [] } }
        func beArray() { if kind != .array { kind = .array; items = [] } }

        func child(_ key: String) -> Node {
            beObject()
            let node = Node()
            fields.append((key, node))
            return node
        }

        func append() -> Node {
            beArray()
            let node = Node()
            items.append(node)
            return node
        }
    }

    struct NodeEncoder: Encoder {
        let node: Node
        var codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            node.beObject()
            return KeyedEncodingContainer(Keyed<Key>(node: node, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            node.beArray()
            return Unkeyed(node: node, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer { Single(node: node, codingPath: codingPath) }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        var codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { node.child(key.stringValue).set(.null) }
        // The common scalars without the casts of `store`.
        mutating func encode(_ value: String, forKey key: Key) throws { node.child(key.stringValue).set(.string(value)) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { node.child(key.stringValue).set(.int(value)) }
        mutating func encode(_ value: Int, forKey key: Key) throws { node.child(key.stringValue).set(.int(Int64(value))) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try node.child(key.stringValue).store(value, path: codingPath + [key])
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            let child = node.child(key.stringValue)
            child.beObject()
            return KeyedEncodingContainer(Keyed<NestedKey>(node: child, codingPath: codingPath + [key]))
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let child = node.child(key.stringValue)
            child.beArray()
            return Unkeyed(node: child, codingPath: codingPath + [key])
        }
        mutating func superEncoder() -> any Encoder { NodeEncoder(node: node.child("super"), codingPath: codingPath) }
        mutating func superEncoder(forKey key: Key) -> any Encoder { NodeEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]) }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey]
        var count: Int { node.items.count }

        mutating func encodeNil() throws { node.append().set(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try node.append().store(value, path: codingPath) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let child = node.append()
            child.beObject()
            return KeyedEncodingContainer(Keyed<NestedKey>(node: child, codingPath: codingPath))
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let child = node.append()
            child.beArray()
            return Unkeyed(node: child, codingPath: codingPath)
        }
        mutating func superEncoder() -> any Encoder { NodeEncoder(node: node.append(), codingPath: codingPath) }
    }

    struct Single: SingleValueEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey]

        mutating func encodeNil() throws { node.set(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try node.store(value, path: codingPath) }
    }
}

/// Encodes a value straight into JSON text: byte for byte what `JSONValueEncoder` and then
/// `jsonText` write (sorted keys, compact; `JSONTextEncoderTests` compares the two on every
/// kind of answer and body), from the same nodes without the `JSONValue` in between. Every
/// answer a till hears is written this way: through the value, a sale's answer (the sale and
/// the member's standing) made a dictionary per object, then a sorted copy of each, a tenth of
/// the sale's time in the node's writer.
public struct JSONTextEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let node = JSONValueEncoder.Node()
        try node.store(value, path: [])
        var out: [UInt8] = []
        out.reserveCapacity(512)
        node.write(into: &out)
        return out
    }
}

extension JSONValue {
    /// Compact JSON text with sorted keys, byte for byte what `JSONEncoder` with
    /// `[.sortedKeys, .withoutEscapingSlashes]` writes (tested), without going through
    /// `Encodable`: every operation stored or logged is written this way.
    public var jsonText: String {
        String(decoding: jsonBytes, as: UTF8.self)
    }

    /// `jsonText` as UTF-8 bytes (what a request body is made of).
    public var jsonBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): Self.write(integer: i, into: &out)
        case .double(let d):
            // JSONEncoder's own number format ("100", "1e-07"), from JSONEncoder itself.
            let encoder = JSONEncoder()
            let text = (try? encoder.encode([d])).map { String(decoding: $0.dropFirst().dropLast(), as: UTF8.self) } ?? "null"
            out.append(contentsOf: text.utf8)
        case .string(let s): Self.write(string: s, into: &out)
        case .array(let items):
            out.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(0x2C) }
                item.write(into: &out)
            }
            out.append(0x5D)
        case .object(let fields):
            out.append(0x7B)
            // Keys in the order of their UTF-8 bytes, as JSONEncoder's sortedKeys. The pairs are
            // sorted, not the keys alone: each value is then at hand, not looked up again.
            for (i, field) in fields.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
                if i > 0 { out.append(0x2C) }
                Self.write(string: field.key, into: &out)
                out.append(0x3A)
                field.value.write(into: &out)
            }
            out.append(0x7D)
        }
    }

    /// An integer in decimal, written digit by digit (no String made for it).
    static func write(integer: Int64, into out: inout [UInt8]) {
        if integer < 0 { out.append(0x2D) }
        // The magnitude as unsigned (Int64.min has no positive counterpart), lowest digit first.
        var magnitude = integer.magnitude
        let first = out.count
        repeat {
            out.append(0x30 + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        out[first...].reverse()
    }

    /// `string` as a JSON string, escaped as `jsonText` escapes it (as JSONEncoder does).
    public static func write(string: String, into out: inout [UInt8]) {
        out.append(0x22)
        for byte in string.utf8 {
            switch byte {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0x08: out += [0x5C, 0x62]
            case 0x0C: out += [0x5C, 0x66]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default: out.append(byte)
            }
        }
        out.append(0x22)
    }
}
