import Foundation
import Testing
@testable import TesseraCore
import TesseraProtocol
import TesseraTestSupport

/// Operation bodies become JSONValues without JSON text in between: the same values as the
/// text round trip gives, for every kind the build knows.
@Suite("Encoding bodies straight into JSON values")
struct JSONValueEncoderTests {
    static func throughText<T: Encodable>(_ value: T) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
    }

    @Test("every operation of random chains and of the protocol's vectors encodes as through text")
    func sameAsThroughText() throws {
        var bodies: [OperationBody] = []
        for seed in 1...40 { bodies += ChainLog.make(seed: UInt64(seed)).compactMap { try? $0.decoded() } }
        for vector in try Vector.all() { bodies += vector.ops.compactMap { try? $0.decoded() } }
        bodies += [
            .balanceOpened(BalanceOpened(member: MemberID("m-hub-1"), store: StoreID(rawValue: "s1")!, value: 1, bonus: 0, points: 3,
                                         pointsExpireOn: "2027-12-31", reference: "A-1")),
            .memberEnrolled(MemberEnrolled(member: MemberID("m-hub-2"), card: CardNumber("C-2"), name: "Ada \"A\" \\ é", phone: "+1",
                                           birthday: "12-24", store: StoreID(rawValue: "s1"), reference: "R")),
        ]
        bodies = bodies.filter { if case .unknown = $0 { false } else { true } }
        let kinds = Set(bodies.compactMap { body -> OperationKind? in if case .unknown = body { nil } else { body.kind } })
        #expect(kinds.count >= 10, "the sample covers most kinds: \(kinds.map(\.rawValue).sorted())")
        for body in bodies {
            let op = Operation(id: OperationID(origin: .hub, seq: 1), hlc: HLCTimestamp(wallMs: 1, counter: 0), body: body)
            // The typed payload of the body's case, through JSON text and back (the old way).
            let payload = try #require(Mirror(reflecting: body).children.first?.value as? any Encodable)
            let expected = try Self.throughText(payload)
            #expect(op.body == expected, "\(op.kind)")
        }
    }

    static func encoderText(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test("a JSON value's text is byte for byte what JSONEncoder writes: escapes, key order, numbers, nesting")
    func textAsJSONEncoder() throws {
        var values: [JSONValue] = [
            .string("a\"b\\c/d\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀\u{7f}\u{2028}"),
            .object(["b": .int(1), "B": .int(2), "a": .int(3), "_": .int(4), "10": .int(5), "9": .int(6), "é": .int(7), "z": .null]),
            .array([.double(1.5), .double(1e-7), .double(1e21), .double(0.1), .double(100), .double(-0.0), .int(.min), .int(.max)]),
            .array([0, -1, 9, 10, -10, 99, 100, 1_000_000_007, -999_999_999_999, .max - 1, .min + 1].map(JSONValue.int)),
            .object(["nested": .array([.object([:]), .array([]), .bool(true), .bool(false), .string("")])]),
        ]
        for seed in 1...20 { values += ChainLog.make(seed: UInt64(seed)).map(\.body) }
        for vector in try Vector.all() { values += vector.ops.map(\.body) }
        for (i, value) in values.enumerated() {
            #expect(value.jsonText == (try Self.encoderText(value)))
            // (Integral doubles read back as integers, through JSONEncoder too.)
            if i != 2 { #expect(try JSONDecoder().decode(JSONValue.self, from: Data(value.jsonText.utf8)) == value) }
        }
    }

    @Test("scalars, nesting, optionals left out, arrays of objects, JSON values carried as they are")
    func shapes() throws {
        struct Inner: Encodable { var a: Int64; var b: String? }
        struct Outer: Encodable { var items: [Inner]; var flag: Bool; var n: Int; var doc: JSONValue; var none: String? }
        let value = Outer(items: [Inner(a: 1, b: nil), Inner(a: -2, b: "x")], flag: true, n: 7,
                          doc: .object(["ratio": .double(1.5), "list": .array([.int(1), .null])]), none: nil)
        let encoded = try JSONValueEncoder().encode(value)
        #expect(encoded == .object(["items": .array([.object(["a": .int(1)]), .object(["a": .int(-2), "b": .string("x")])]),
                                    "flag": .bool(true), "n": .int(7), "doc": .object(["ratio": .double(1.5), "list": .array([.int(1), .null])])]))
    }

    @Test("a push's answer made directly is what its encoder makes: each status, versions and reasons left out or not")
    func pushAnswer() throws {
        let s1 = try #require(StoreID(rawValue: "s1"))
        let results = [
            PushResult(id: OperationID(origin: s1, seq: 1), status: .accepted, version: 7),
            PushResult(id: OperationID(origin: s1, seq: 2), status: .duplicate, version: 3),
            PushResult(id: OperationID(origin: s1, seq: 3), status: .rejected, reason: "voided by its store \"s1\""),
        ]
        for answer in [PushResponse(results: results), PushResponse(results: [])] {
            #expect(answer.json == (try JSONValueEncoder().encode(answer)))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            #expect(answer.json.jsonText == String(decoding: try encoder.encode(answer), as: UTF8.self))
        }
    }

    /// A body decoded the old way: JSON text written by JSONEncoder, read by JSONDecoder.
    struct ThroughText: BodySource {
        let data: Data
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONDecoder().decode(type, from: data) }
    }

    static func throughText(_ kind: OperationKind, _ body: JSONValue) throws -> OperationBody {
        try OperationBody.decode(kind: kind, from: ThroughText(data: try JSONEncoder().encode(body)))
    }

    @Test("every body of random chains and the protocol's vectors decodes straight from its JSON value as through text; so does every damaged copy, or both refuse it")
    func decodesAsThroughText() throws {
        var ops: [TesseraCore.Operation] = []
        for seed in 1...40 { ops += ChainLog.make(seed: UInt64(seed)) }
        for vector in try Vector.all() { ops += vector.ops }
        var kinds = Set<OperationKind>(), compared = 0
        for op in ops {
            guard let kind = OperationKind(rawValue: op.kind), op.kindVersion == 1, case .object(let fields) = op.body else { continue }
            kinds.insert(kind)
            // The body itself, and copies with each field gone, of another kind, fractional, or null.
            var extra = fields
            extra["unknown_field"] = JSONValue.int(1)
            var variants: [JSONValue] = [op.body, .object(extra)]
            for (key, value) in fields {
                var gone = fields; gone[key] = nil
                variants.append(.object(gone))
                for other: JSONValue in [.string("1"), .int(1), .double(1.5), .double(2), .null, .bool(true), .array([value]), .object([:]),
                                         .int(Int64(Int32.max) + 1)] where other != value {
                    var changed = fields; changed[key] = other
                    variants.append(.object(changed))
                }
            }
            for body in variants {
                let straight = Result { try TesseraCore.Operation(id: op.id, hlc: op.hlc, kind: op.kind, body: body).decoded() }
                let text = Result { try Self.throughText(kind, body) }
                switch (straight, text) {
                case (.success(let a), .success(let b)): #expect(a == b, "\(op.kind) \(String(describing: body))")
                case (.failure, .failure): break
                default: Issue.record("\(op.kind): straight \(String(describing: straight)), through text \(String(describing: text)) for \(String(describing: body))")
                }
                compared += 1
            }
        }
        #expect(kinds.count >= 10 && compared > 10_000, "\(kinds.count) kinds, \(compared) bodies")
    }

    @Test("sales, recharges and enrolments are read field by field (DirectBody), as the general way reads them; those types have no field it does not read")
    func directBodies() throws {
        var read = [OperationKind: Int]()
        for seed in 1...20 {
            for op in ChainLog.make(seed: UInt64(seed)) {
                guard let kind = OperationKind(rawValue: op.kind), [.purchase, .valueRecharged, .memberEnrolled].contains(kind) else { continue }
                let general = try OperationBody.decode(kind: kind, from: JSONValueBodySource(value: op.body))
                guard let direct = DirectBody.decode(kind: kind, op.body) else {
                    // Only coupons are left to the general way.
                    guard case .object(let fields) = op.body, case .array(let coupons)? = fields["coupons"] else {
                        Issue.record("\(op.kind) not read directly: \(op.body.jsonText)"); continue
                    }
                    #expect(!coupons.isEmpty, "\(op.kind) \(op.body.jsonText)")
                    continue
                }
                #expect(direct == general, "\(op.kind) \(op.body.jsonText)")
                read[kind, default: 0] += 1
            }
        }
        #expect(read.count == 3 && read.values.allSatisfy { $0 > 20 }, "\(read)")
        // A field added to one of these types must be read by DirectBody too (or the type left to the general way).
        let member = MemberID("m-1")
        #expect(Mirror(reflecting: Purchase(member: member, amount: 1)).children.count == 20)
        #expect(Mirror(reflecting: ValueRecharged(member: member, amount: 1)).children.count == 6)
        #expect(Mirror(reflecting: MemberEnrolled(member: member, card: CardNumber("c"), name: "n", phone: "p")).children.count == 12)
    }
}

@Suite struct HexTests {
    @Test func matchesFormattedBytes() {
        let bytes = (0...255).map(UInt8.init) + [0, 15, 16, 255]
        #expect(Hex.lowercase(bytes) == bytes.map { String(format: "%02x", $0) }.joined())
        #expect(Hex.lowercase([UInt8]()) == "")
    }
}
