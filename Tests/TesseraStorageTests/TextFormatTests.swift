import Foundation
import Testing
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage

/// The hand-written forms of what Foundation wrote before: the same text, so stored and logged
/// times and answers read as they always did.
@Suite("Text the store writes")
struct TextFormatTests {
    @Test func isoTimeIsISO8601Format() {
        var ms: Int64 = -86_400_000 * 400
        while ms < 7_258_118_400_000 {
            let date = Date(timeIntervalSince1970: TimeInterval(ms) / 1000)
            #expect(isoTime(ms: ms) == date.ISO8601Format(), "\(ms)")
            ms += 86_400_000 * 11 + 3_607_123
        }
        for ms: Int64 in [0, 999, 1_000, -1, -999, -1_000, -1_001, 951_782_399_999, 951_782_400_000] {
            #expect(isoTime(ms: ms) == Date(timeIntervalSince1970: TimeInterval(ms) / 1000).ISO8601Format(), "\(ms)")
        }
    }

    @Test func jsonTextIsJSONEncoderText() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let answers: [any Encodable] = [
            ErrorBody(code: "invalid_request", message: "a \"quoted\" line\nand a tab\t, a slash / and é"),
            ["b": [1, 2], "a": [3]] as [String: [Int64]],
            [HubAPI.RulesVersion(version: 3, op: OperationID(origin: .hub, seq: 7), logVersion: 42)],
        ]
        for answer in answers {
            #expect(try JSONText.encode(answer) == String(decoding: try encoder.encode(answer), as: UTF8.self))
        }
        #expect(try JSONText.decode([String: [Int64]].self, #"{"a": [1, 2], "b": []}"#) == ["a": [1, 2], "b": []])
        #expect(throws: (any Error).self) { try JSONText.decode([String: Int64].self, #"{"a": 1.5}"#) }
        #expect(throws: (any Error).self) { try JSONText.decode(JSONValue.self, #"{"a": 1"#) }
    }
}
