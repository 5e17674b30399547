import Foundation

/// Encodes a value straight into JSON text: byte for byte what `JSONValueEncoder` and then
/// `jsonText` write (sorted keys, compact; `JSONTextEncoderTests` compares the two on every
/// kind of answer and body), without the `JSONValue` in between. Every answer a till hears is
/// written this way: through the value, a sale's answer (the sale and the member's standing)
/// built an object of nodes, a dictionary per object, a second dictionary of values and a
/// sorted copy of each, a tenth of the sale's time in the node's writer.
public struct JSONTextEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let node = Node()
        try node.store(value, path: [])
        var out: [UInt8] = []
        out.reserveCapacity(512)
        node.write(into: &out)
        return out
    }

    /// One value being written: a scalar's text, or an object's or an array's parts.
    final class Node {
        enum Kind { case empty, scalar, object, array }
        var kind: Kind = .empty
        var text: [UInt8] = []
        /// In the order encoded; sorted, and a key given twice kept once (its last), when written.
        var fields: [(key: String, node: Node)] = []
        var items: [Node] = []

        func set(_ text: [UInt8]) {
            kind = .scalar
            self.text = text
        }

        func set(string: String) {
            var out: [UInt8] = []
            out.reserveCapacity(string.utf8.count + 2)
            JSONValue.write(string: string, into: &out)
            set(out)
        }

        func set(integer: Int64) {
            var out: [UInt8] = []
            JSONValue.write(integer: integer, into: &out)
            set(out)
        }

        /// As `JSONValueEncoder.Node.store`: the same scalars, the same value for each.
        func store<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
            switch value {
            case let v as String: set(string: v)
            case let v as Int64: set(integer: v)
            case let v as Int: set(integer: Int64(v))
            case let v as JSONValue: set(v.jsonBytes)
            case let v as Bool: set(Array((v ? "true" : "false").utf8))
            case let v as any BinaryInteger: set(Int64(exactly: v).map { JSONValue.int($0) }?.jsonBytes ?? JSONValue.double(Double(v)).jsonBytes)
            case let v as Double: set(JSONValue.double(v).jsonBytes)
            case let v as Float: set(JSONValue.double(Double(v)).jsonBytes)
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

        func write(into out: inout [UInt8]) {
            switch kind {
            case .empty:
                out.append(contentsOf: "{}".utf8)
            case .scalar:
                out.append(contentsOf: text)
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
                // the last (a dictionary's assignment, as `JSONValueEncoder` keeps them).
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

        mutating func encodeNil(forKey key: Key) throws { node.child(key.stringValue).set(Array("null".utf8)) }
        mutating func encode(_ value: String, forKey key: Key) throws { node.child(key.stringValue).set(string: value) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { node.child(key.stringValue).set(integer: value) }
        mutating func encode(_ value: Int, forKey key: Key) throws { node.child(key.stringValue).set(integer: Int64(value)) }
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

        mutating func encodeNil() throws { node.append().set(Array("null".utf8)) }
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

        mutating func encodeNil() throws { node.set(Array("null".utf8)) }
        mutating func encode<T: Encodable>(_ value: T) throws { try node.store(value, path: codingPath) }
    }
}
