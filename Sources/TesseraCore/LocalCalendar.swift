import Foundation

/// A calendar day in the chain's time zone, counted from 1970-01-01 (day 0). Expiry, campaigns,
/// birthdays and tier periods are all decided on these days, so every replica that knows the
/// same time zone decides the same way, whatever the clock of the machine it runs on says.
public struct LocalDay: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var number: Int64
    public init(_ number: Int64) { self.number = number }

    /// Points that never expire sit in this lot: far beyond any real date.
    public static let never = LocalDay(2_932_896) // 9999-12-31

    public static func < (a: LocalDay, b: LocalDay) -> Bool { a.number < b.number }
    public func adding(days: Int64) -> LocalDay { LocalDay(number + days) }

    /// `YYYY-MM-DD`, or nil when the text is not a real date.
    public init?(iso text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int64(parts[0]), let m = Int64(parts[1]), let d = Int64(parts[2]) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    /// A day of years 1900 to 9999, or nil when it is not a real date.
    public init?(year y: Int64, month m: Int64, day d: Int64) {
        guard (1900...9999).contains(y), (1...12).contains(m), (1...LocalDay.daysIn(month: m, year: y)).contains(d) else { return nil }
        self.init(LocalDay.daysFromCivil(y, m, d))
    }

    public var civil: (year: Int64, month: Int64, day: Int64) { LocalDay.civilFromDays(number) }
    public var iso: String {
        let (y, m, d) = civil
        return String(format: "%04lld-%02lld-%02lld", y, m, d)
    }
    public var description: String { iso }
    /// ISO weekday: 1 is Monday, 7 is Sunday (1970-01-01 was a Thursday).
    public var weekday: Int { Int(((number % 7) + 7 + 3) % 7) + 1 }
    public var year: Int64 { civil.year }

    public static func lastDay(ofYear year: Int64) -> LocalDay { LocalDay(daysFromCivil(year, 12, 31)) }
    public static func firstDay(ofYear year: Int64) -> LocalDay { LocalDay(daysFromCivil(year, 1, 1)) }

    static func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
    static func daysIn(month m: Int64, year y: Int64) -> Int64 {
        switch m {
        case 2: isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Howard Hinnant's civil-calendar algorithms: exact integer arithmetic, no tables.
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}

/// The chain's time zone: turns an operation's wall-clock milliseconds into the local day.
public struct ChainCalendar: Sendable, Hashable {
    public let timeZone: TimeZone
    public init(timeZone: TimeZone) { self.timeZone = timeZone }
    public init?(identifier: String) {
        guard let zone = TimeZone(identifier: identifier) else { return nil }
        self.timeZone = zone
    }
    public static let utc = ChainCalendar(timeZone: TimeZone(secondsFromGMT: 0) ?? .current)

    public func day(ms: Int64) -> LocalDay {
        let offset = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(ms) / 1000))) * 1000
        let local = ms + offset
        return LocalDay(local >= 0 ? local / 86_400_000 : (local - 86_399_999) / 86_400_000)
    }

    /// The first millisecond of a local day. Every zone's offset, and so every local midnight,
    /// falls on a quarter hour of UTC: step from UTC midnight a quarter hour at a time.
    public func startMs(of day: LocalDay) -> Int64 {
        var ms = day.number * 86_400_000
        while self.day(ms: ms).number < day.number { ms += 900_000 }
        while self.day(ms: ms - 1).number >= day.number { ms -= 900_000 }
        return ms
    }
}
