import Foundation
import TesseraCore

/// Wall-clock ms of a local date and time in a zone: `at("2026-03-03 23:59:59", "Asia/Shanghai")`
/// (noon when the time is left out).
public func at(_ text: String, _ zone: String = "UTC") -> Int64 {
    let parts = text.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" }).compactMap { Int($0) }
    precondition(parts.count >= 3, "at() takes YYYY-MM-DD[ HH[:MM[:SS]]]")
    var components = DateComponents()
    components.year = parts[0]; components.month = parts[1]; components.day = parts[2]
    components.hour = parts.count > 3 ? parts[3] : 12
    components.minute = parts.count > 4 ? parts[4] : 0
    components.second = parts.count > 5 ? parts[5] : 0
    var calendar = Calendar(identifier: .gregorian)
    guard let timeZone = TimeZone(identifier: zone) else { preconditionFailure("unknown zone \(zone)") }
    calendar.timeZone = timeZone
    guard let date = calendar.date(from: components) else { preconditionFailure("not a date: \(text)") }
    return Int64(date.timeIntervalSince1970 * 1000)
}

/// The example programmes under deploy/examples.
public enum Examples {
    public static func url(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/examples/\(name).json")
    }
    public static func programme(_ name: String) throws -> Programme {
        try Programme.parse(try Data(contentsOf: url(name)))
    }
    public static func json(_ name: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: try Data(contentsOf: url(name)))
    }
}
