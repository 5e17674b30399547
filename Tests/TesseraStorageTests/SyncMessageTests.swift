import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraTestSupport

/// Pushes, pulls and authorisations are read with `JSONValueParser` and `JSONValueDecoder`:
/// the same messages as JSONDecoder reads, and the same refusals, for real operations and for
/// damaged copies of them.
@Suite("Reading sync messages")
struct SyncMessageTests {
    static func same<M: SyncMessage>(_ type: M.Type, _ data: Data, _ equal: (M, M) -> Bool) -> Bool {
        switch (Result { try M.read(from: data) }, Result { try JSONDecoder().decode(M.self, from: data) }) {
        case (.success(let a), .success(let b)): return equal(a, b)
        case (.failure, .failure): return true
        default: return false
        }
    }

    /// Each operation's envelope as JSON text with each of its fields (and one more) changed to every other kind of value.
    static func damagedEnvelopes(_ ops: some Sequence<TesseraCore.Operation>, _ each: (String, JSONValue, String) throws -> Void) throws {
        for op in ops {
            guard case .object(var envelope) = try JSONValueParser.parse(try JSONEncoder().encode(op)) else { continue }
            envelope["unknown"] = nil
            for key in ["id", "hlc", "kind", "kind_version", "body", "extra"] {
                for other: JSONValue in [.string("x"), .string("s1:1"), .int(1), .int(-1), .double(1.5), .double(2), .null, .bool(true), .array([]), .object([:])] {
                    var changed = envelope
                    changed[key] = other
                    try each(key, other, JSONValue.object(changed).jsonText)
                }
            }
        }
    }

    @Test("pushes, pulls and authorisations of real operations, whole and with each envelope field damaged, read as JSONDecoder reads them")
    func sameAsJSONDecoder() throws {
        var ops: [TesseraCore.Operation] = []
        for seed in 1...10 { ops += ChainLog.make(seed: UInt64(seed)) }
        for vector in try Vector.all() { ops += vector.ops }
        let store = try #require(StoreID(rawValue: "s1"))
        let push = try JSONEncoder().encode(PushRequest(store: store, ops: ops))
        #expect(Self.same(PushRequest.self, push) { $0.ops == $1.ops && $0.store == $1.store && $0.protocol == $1.protocol })
        let pull = try JSONEncoder().encode(PullResponse(ops: ops.enumerated().map { VersionedOperation(version: Int64($0 + 1), op: $1) }, cursor: 9, more: true))
        #expect(Self.same(PullResponse.self, pull) { $0.ops == $1.ops && $0.cursor == $1.cursor && $0.more == $1.more })
        #expect(try PullResponse.read(from: pull).ops.count == ops.count)

        // One operation at a time, with each envelope field changed to every other kind of value.
        var compared = 0, refused = 0
        try Self.damagedEnvelopes(ops.prefix(300)) { key, other, envelope in
            let text = Data(#"{"protocol":1,"prior":[],"op":"#.utf8) + Data(envelope.utf8) + Data("}".utf8)
            #expect(Self.same(AuthorizeRequest.self, text) { $0.op == $1.op && $0.prior == $1.prior }, "\(key) = \(other)")
            if (try? AuthorizeRequest.read(from: text)) == nil { refused += 1 }
            compared += 1
        }
        #expect(compared > 10_000 && refused > 5_000, "\(compared) compared, \(refused) refused")
        // The same damaged envelopes in a push and in a pull page (which are scanned, not decoded).
        var scannedRefused = 0
        try Self.damagedEnvelopes(ops.prefix(60)) { key, other, text in
            let push = Data(#"{"protocol":1,"store":"s1","ops":["#.utf8) + Data(text.utf8) + Data("]}".utf8)
            #expect(Self.same(PushRequest.self, push) { $0.ops == $1.ops && $0.store == $1.store }, "\(key) = \(other)")
            let pull = Data(#"{"cursor":3,"more":false,"ops":[{"op":"#.utf8) + Data(text.utf8) + Data(#","version":3}],"protocol":1}"#.utf8)
            #expect(Self.same(PullResponse.self, pull) { $0.ops == $1.ops && $0.cursor == $1.cursor }, "\(key) = \(other)")
            if (try? PushRequest.read(from: push)) == nil { scannedRefused += 1 }
        }
        #expect(scannedRefused > 1_000)
        // Text that is not JSON is refused.
        #expect(throws: (any Error).self) { try PushRequest.read(from: Data(#"{"protocol":1,"store":"s1","ops":[}"#.utf8)) }
    }

    @Test("a pull page and a push are scanned into what the general reader gives, and what the scan does not take is read the general way: lenient text, unknown fields, damage")
    func scannedAsRead() throws {
        let ops = ChainLog.make(seed: 7)
        let pull = PullResponse(ops: ops.enumerated().map { VersionedOperation(version: Int64($0 + 1), op: $1) }, cursor: 40, more: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try encoder.encode(pull), as: UTF8.self)
        let page = try PullResponse.read(from: Data(text.utf8))
        #expect(page.ops == pull.ops && page.cursor == 40 && page.more && page.protocol == ProtocolVersion.current)
        // Each body's text as it stands in the page, which reads back as the body.
        #expect(page.bodyTexts.count == ops.count)
        for (body, op) in zip(page.bodyTexts, ops) { #expect(try JSONValueParser.parse(Data(body.utf8)) == op.body) }
        let spaced = try PullResponse.read(from: Data(String(decoding: try { let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted]; return try e.encode(pull) }(), as: UTF8.self).utf8))
        #expect(spaced.ops == pull.ops && spaced.bodyTexts.count == ops.count)

        // Text the general reader takes leniently, or with fields it ignores: the same values,
        // read the general way (no body texts then: the node writes them itself).
        let first = try #require(ops.first)
        let op = String(decoding: try encoder.encode(first), as: UTF8.self)
        let variants = [
            "\u{FEFF}" + text, // a byte order mark
            text.replacingOccurrences(of: #""more":true"#, with: #""more":true,"more":false"#), // the first of two fields
            text.replacingOccurrences(of: #""ops":["#, with: #""extra":{"a":[1]},"ops":["#), // a field a newer hub adds
            #"{"cursor":1,"more":false,"ops":[{"op":\#(op),"version":1,"note":"x"},],"protocol":1}"#, // a comma before ']'
            #"{"cursor":1,"more":false,"ops":[{"op":\#(op),"version":1,}],"protocol":1}"#, // and before '}'
            #"{"cursor":1,"more":false,"ops":[{"op":\#(op),"version":1.0}],"protocol":1}"#, // a whole number with a fraction (read as 1 either way)
        ]
        for variant in variants {
            let data = Data(variant.utf8)
            #expect(Self.same(PullResponse.self, data) { $0.ops == $1.ops && $0.cursor == $1.cursor && $0.more == $1.more }, "\(variant.prefix(80))")
            #expect((try? PullResponse.read(from: data)) != nil, "\(variant.prefix(80))")
        }
        // A body's numbers as the general reader gives them: one beyond 64 bits that is exactly one as a double.
        let edge = Data(#"{"cursor":1,"more":false,"ops":[{"op":{"body":{"n":-9223372036854775809,"m":1e400},"hlc":1,"id":"s1:1","kind":"x","kind_version":1},"version":1}],"protocol":1}"#.utf8)
        #expect(Self.same(PullResponse.self, edge) { $0.ops == $1.ops })
        let small = Data(#"{"cursor":1,"more":false,"ops":[{"op":{"body":{"n":-9223372036854775809},"hlc":1,"id":"s1:1","kind":"x","kind_version":1},"version":1}],"protocol":1}"#.utf8)
        // (JSONDecoder reads it as a double: the general reader, which the scan follows, as Int64.min.)
        #expect(try PullResponse.read(from: small).ops.first?.op.body == JSONValueDecoder().decode(PullResponse.self, from: JSONValueParser.parse(small)).ops.first?.op.body)
        // Refused as before: an operation's unknown field, a missing field, a version that is not a number.
        for refused in [
            #"{"cursor":1,"more":false,"ops":[{"op":\#(op.dropLast()),"x":1},"version":1}],"protocol":1}"#,
            #"{"cursor":1,"ops":[],"protocol":1}"#,
            #"{"cursor":1,"more":false,"ops":[{"op":\#(op),"version":"1"}],"protocol":1}"#,
        ] {
            #expect(throws: (any Error).self) { try PullResponse.read(from: Data(refused.utf8)) }
            #expect(Self.same(PullResponse.self, Data(refused.utf8)) { _, _ in false })
        }
        // A push: the same operations either way, and its unknown fields still refused by the hub's reader.
        let push = try encoder.encode(PushRequest(store: try #require(StoreID(rawValue: "s1")), ops: ops))
        #expect(try PushRequest.read(from: push).ops == ops)
        let lenient = Data((String(decoding: push, as: UTF8.self).dropLast() + #","note":1,}"#).utf8)
        #expect(Self.same(PushRequest.self, lenient) { $0.ops == $1.ops && $0.store == $1.store })
    }
}
