import Foundation
import Testing
@testable import TesseraCore
import TesseraProtocol
import TesseraTestSupport

/// `JSONTextEncoder` writes what `JSONValueEncoder` then `jsonText` write, byte for byte: the
/// answers tills hear and the bodies nodes push are written by the first, and were by the second.
@Suite("Encoding straight into JSON text")
struct JSONTextEncoderTests {
    static func throughValue<T: Encodable>(_ value: T) throws -> String { try JSONValueEncoder().encode(value).jsonText }
    static func direct<T: Encodable>(_ value: T) throws -> String { String(decoding: try JSONTextEncoder().encode(value), as: UTF8.self) }

    @Test("every body, and every member's answer with a sale, of random chains and the protocol's vectors, as through a JSON value")
    func bodiesAndAnswers() throws {
        var ops: [TesseraCore.Operation] = []
        for seed in 1...30 { ops += ChainLog.make(seed: UInt64(seed)) }
        for vector in try Vector.all() { ops += vector.ops }
        var compared = 0
        for op in ops {
            guard let body = try? op.decoded(), let payload = Mirror(reflecting: body).children.first?.value as? any Encodable else { continue }
            #expect(try Self.direct(payload) == Self.throughValue(payload), "\(op.kind)")
            compared += 1
        }
        #expect(compared > 500)
        // Members as the fold has them (coupons, tiers, memberships, merges), in a sale's answer.
        for seed in 1...10 {
            let chain = ChainLog.make(seed: UInt64(seed))
            let state = ChainState(folding: chain)
            for op in chain {
                guard let body = try? op.decoded(), let member = body.member, let view = state.view(of: member) else { continue }
                var sale = NodeAPI.Transaction(id: op.id, kind: op.kind, member: member, amount: 1_250, valueChange: -1_000, pointsChange: 12,
                                               pointsEarned: 12, pointsRedeemed: 0, valueSpent: 1_000, refundOf: nil, authorization: .lease)
                sale.cash = 250
                let answer = NodeAPI.TransactionResult(transaction: sale, member: view)
                #expect(try Self.direct(answer) == Self.throughValue(answer))
                #expect(try Self.direct(view) == Self.throughValue(view))
            }
        }
    }

    @Test("scalars of every kind, nesting, optionals left out or null, empty containers, a key given twice keeps its last value")
    func shapes() throws {
        struct Inner: Encodable { var a: Int64; var b: String? }
        struct Numbers: Encodable {
            var small: Int8 = -3, unsigned: UInt64 = .max, wide: Int = .min, ratio: Double = 0.1, tiny: Double = 1e-7, float: Float = 1.5
            var flag = false, text = "a\"b\\c/d\n\u{1}é😀"
        }
        struct Twice: Encodable {
            enum Key: String, CodingKey { case a, b, zed = "Z", accent = "é" }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: Key.self)
                try c.encode("first", forKey: .a)
                try c.encodeNil(forKey: .b)
                try c.encode(Int64(2), forKey: .zed)
                var nested = c.nestedContainer(keyedBy: Key.self, forKey: .accent)
                try nested.encode(1, forKey: .a)
                try c.encode("second", forKey: .a)
                var list = c.nestedUnkeyedContainer(forKey: .b)
                try list.encode(Inner(a: 1, b: nil))
                try list.encodeNil()
                var deeper = list.nestedUnkeyedContainer()
                try deeper.encode(true)
            }
        }
        struct Empty: Encodable {}
        struct Outer: Encodable { var items: [Inner]; var flag: Bool; var n: Int; var doc: JSONValue; var none: String?; var empty: Empty; var list: [Int] }
        let outer = Outer(items: [Inner(a: 1, b: nil), Inner(a: -2, b: "x")], flag: true, n: 7,
                          doc: .object(["ratio": .double(1.5), "list": .array([.int(1), .null])]), none: nil, empty: Empty(), list: [])
        #expect(try Self.direct(outer) == Self.throughValue(outer))
        #expect(try Self.direct(outer) == #"{"doc":{"list":[1,null],"ratio":1.5},"empty":{},"flag":true,"items":[{"a":1},{"a":-2,"b":"x"}],"list":[],"n":7}"#)
        #expect(try Self.direct(Numbers()) == Self.throughValue(Numbers()))
        #expect(try Self.direct(Twice()) == Self.throughValue(Twice()))
        #expect(try Self.direct(Twice()) == #"{"Z":2,"a":"second","b":[{"a":1},null,[true]],"é":{"a":1}}"#)
        #expect(try Self.direct(Empty()) == "{}")
        #expect(try Self.direct([String?]([nil, "x"])) == Self.throughValue([String?]([nil, "x"])))
        #expect(try Self.direct(Optional<Int>.none) == "null")
        #expect(try Self.direct(["k": [1, 2]]) == Self.throughValue(["k": [1, 2]]))
    }
}
