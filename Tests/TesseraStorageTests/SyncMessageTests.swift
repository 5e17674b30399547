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
        for op in ops.prefix(300) {
            guard case .object(var envelope) = try JSONValueParser.parse(try JSONEncoder().encode(op)) else { continue }
            envelope["unknown"] = nil
            for key in ["id", "hlc", "kind", "kind_version", "body", "extra"] {
                for other: JSONValue in [.string("x"), .string("s1:1"), .int(1), .int(-1), .double(1.5), .double(2), .null, .bool(true), .array([]), .object([:])] {
                    var changed = envelope
                    changed[key] = other
                    let text = Data(#"{"protocol":1,"prior":[],"op":"#.utf8) + Data(JSONValue.object(changed).jsonText.utf8) + Data("}".utf8)
                    #expect(Self.same(AuthorizeRequest.self, text) { $0.op == $1.op && $0.prior == $1.prior }, "\(key) = \(other)")
                    if (try? AuthorizeRequest.read(from: text)) == nil { refused += 1 }
                    compared += 1
                }
            }
        }
        #expect(compared > 10_000 && refused > 5_000, "\(compared) compared, \(refused) refused")
        // Text that is not JSON is refused.
        #expect(throws: (any Error).self) { try PushRequest.read(from: Data(#"{"protocol":1,"store":"s1","ops":[}"#.utf8)) }
    }
}
