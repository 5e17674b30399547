import Foundation
import Testing
@testable import TesseraNode

/// The hub's `Date` header sets the node's estimate of its clock's skew (the sync loop reads it
/// from every answer), so it must read exactly what a DateFormatter read, and nothing else.
@Suite struct HubClientTests {
    @Test func readsIMFFixdate() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        var seconds: TimeInterval = 0
        // Every month, leap days, the ends of days and years, over two centuries.
        while seconds < 7_258_118_400 {
            let date = Date(timeIntervalSince1970: seconds)
            let text = formatter.string(from: date)
            #expect(HubClient.httpDate(text) == date, "\(text)")
            seconds += 86_400 * 13 + 3_607
        }
        #expect(HubClient.httpDate("Thu, 29 Feb 2024 23:59:59 GMT") == Date(timeIntervalSince1970: 1_709_251_199))
        #expect(HubClient.httpDate("Mon, 23 Nov 2026 14:38:12 GMT") == Date(timeIntervalSince1970: 1_795_444_692))
    }

    @Test func refusesAnythingElse() {
        for text in ["", "Mon, 23 Nov 2026 14:38:12 UTC", "Mon, 23 Nov 2026 14:38:12", "Mon, 31 Nov 2026 14:38:12 GMT",
                     "Thu, 29 Feb 2023 10:00:00 GMT", "Mon, 23 Foo 2026 14:38:12 GMT", "Mon, 23 Nov 2026 24:00:00 GMT",
                     "Mon, 2x Nov 2026 14:38:12 GMT", "Mon, +5 Nov 2026 14:38:12 GMT", "Mon, 05 Nov +026 14:38:12 GMT", "Monday, 23-Nov-26 14:38:12 GMT", "Mon, 23 Nov 2026 14:38:12 GMTX"] {
            #expect(HubClient.httpDate(text) == nil, "\(text)")
        }
    }
}
