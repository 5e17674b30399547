import Foundation
import Testing
import TesseraCore
import TesseraTestSupport

/// JSON text read straight into JSONValues gives what JSONDecoder gives, and refuses what it
/// refuses: the hub and nodes read every push and pull this way.
@Suite("Reading JSON text into JSON values")
struct JSONValueParserTests {
    static func foundation(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    static func parsed(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONValueParser.parse(bytes)
    }

    static func agree(_ bytes: [UInt8], _ comment: Comment? = nil) {
        let a = foundation(bytes), b = parsed(bytes)
        #expect(a == b, "\(String(decoding: bytes, as: UTF8.self)): JSONDecoder \(String(describing: a)), parser \(String(describing: b)) \(comment.map { "\($0)" } ?? "")")
    }

    @Test("the grammar's corners: numbers, escapes, surrogates, whitespace, nesting, and text that is not JSON")
    func corners() {
        let texts = [
            "0", "-0", "1", "-1", "1.0", "-1.5", "1e2", "1E-2", "2.5e+3", "0.1", "123456789012345678", "9223372036854775807",
            "-9223372036854775808", "9223372036854775808", "-9223372036854775809", "1e400", "-1e400", "1.7976931348623157e308",
            "01", "-", "1.", ".5", "1e", "+1", "0x10", "NaN", "Infinity", "1.0e", "--1",
            "true", "false", "null", "tru", "nul", "True", " true ", "\ttrue\n", "\u{0B}true",
            #""""#, #""a""#, #""é""#, #""\u00e9""#, #""\uD83D\uDE00""#, #""😀""#, #""\uD83D""#, #""\uDE00""#, #""\uD83Dx""#,
            #""\n\t\r\b\f\/\\\"""#, #""\x""#, #""\u12""#, #""\u12G4""#, "\"a\u{01}b\"", "\"a\nb\"", #""\u0000""#, #""abc"#,
            "{}", "[]", "[1,2,3]", "[1,]", "[,1]", "[1 2]", #"{"a":1}"#, #"{"a":1,}"#, #"{"a" 1}"#, #"{a:1}"#, #"{"a":1,"a":2}"#,
            #"{"a":{"b":[1,{"c":null}]}}"#, "{", "[", "]", "}", "", " ", "1 2", "[] []", #"{"a":1}x"#,
            String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
            String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
        ]
        for text in texts { Self.agree(Array(text.utf8)) }
        Self.agree([0x22, 0xC3, 0x28, 0x22]) // a string that is not UTF-8
        Self.agree([0x22, 0xFF, 0x22])
        Self.agree([0xEF, 0xBB, 0xBF] + Array("{}".utf8)) // a byte order mark
    }

    static func pick(_ bytes: [UInt8], _ rng: inout SplitMix64) -> UInt8 { bytes[Int(rng.next() % UInt64(bytes.count))] }

    static func randomValue(_ rng: inout SplitMix64, depth: Int = 0) -> JSONValue {
        let pick = rng.next() % (depth > 3 ? 5 : 7)
        switch pick {
        case 0: return .null
        case 1: return .bool(rng.next() % 2 == 0)
        case 2:
            let magnitude = [UInt64(10), 1_000, 1 << 31, 1 << 53, UInt64(Int64.max)][Int(rng.next() % 5)]
            let n = Int64(bitPattern: rng.next() % magnitude)
            return .int(rng.next() % 2 == 0 ? n : -n)
        case 3: return .double(Double(Int64(bitPattern: rng.next() % 2_000_000) - 1_000_000) / [1.0, 3.0, 1000.0, 1e-5][Int(rng.next() % 4)])
        case 4:
            let alphabet: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "中", "😀", "\u{7F}", "\u{2028}"]
            return .string((0..<Int(rng.next() % 12)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined())
        case 5: return .array((0..<Int(rng.next() % 5)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var fields: [String: JSONValue] = [:]
            for i in 0..<Int(rng.next() % 5) { fields["k\(i)\(["", "é", "\"", "_x"][Int(rng.next() % 4)])"] = randomValue(&rng, depth: depth + 1) }
            return .object(fields)
        }
    }

    @Test("random documents, as JSONEncoder writes them and as the log's text is written, then damaged: the same values, the same refusals")
    func randomAndDamaged() throws {
        var rng = SplitMix64(seed: 0x15_0A)
        var compared = 0, refused = 0
        for _ in 0..<1_500 {
            let value = Self.randomValue(&rng)
            for text in [Array(try JSONEncoder().encode(value)), Array(value.jsonText.utf8)] {
                #expect(Self.parsed(text) == Self.foundation(text))
                #expect(Self.parsed(text) != nil)
                compared += 1
                // Damaged copies: cut short, a byte changed, a byte dropped, a byte added.
                for _ in 0..<4 {
                    var damaged = text
                    guard !damaged.isEmpty else { break }
                    let i = Int(rng.next() % UInt64(damaged.count))
                    switch rng.next() % 4 {
                    case 0: damaged = Array(damaged[..<i])
                    case 1: damaged[i] = Self.pick(Array(#"{}[],:"\0123456789.eE+-tfnu "#.utf8), &rng)
                    case 2: damaged.remove(at: i)
                    default: damaged.insert(Self.pick(Array(#"{}[],:"\0e.-x "#.utf8), &rng), at: i)
                    }
                    Self.agree(damaged)
                    if Self.parsed(damaged) == nil { refused += 1 }
                    compared += 1
                }
            }
        }
        #expect(compared > 10_000 && refused > 1_000, "\(compared) texts, \(refused) refused")
    }

    @Test("every operation of random chains and the protocol's vectors, in a push as nodes send it, reads as through JSONDecoder")
    func pushesOfRealOperations() throws {
        var ops: [TesseraCore.Operation] = []
        for seed in 1...20 { ops += ChainLog.make(seed: UInt64(seed)) }
        for vector in try Vector.all() { ops += vector.ops }
        let text = Array(try JSONEncoder().encode(["ops": ops]))
        #expect(Self.parsed(text) == Self.foundation(text))
        #expect(ops.count > 500)
    }
}
