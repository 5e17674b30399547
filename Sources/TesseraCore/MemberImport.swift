import Foundation

/// Members brought over from a chain's old system: the rows of a CSV file (with a header) or
/// of JSON lines, read and checked as a whole before anything is written. Pure: the hub checks
/// the rows against what it already holds and writes them as ordinary operations.
public enum MemberImport {
    public enum Format: String, Sendable, CaseIterable {
        case csv
        case jsonLines = "jsonl"
    }

    /// One member to import, as checked. Amounts are minor units; `cards` may be empty (the
    /// hub then issues a card number of its own).
    public struct Row: Hashable, Sendable {
        public var line: Int
        public var phone: String
        public var name: String
        public var birthday: String?
        public var cards: [CardNumber]
        public var principal: Int64
        public var bonus: Int64
        public var points: Int64
        public var pointsExpireOn: String?
        public var store: StoreID
        public var reference: String?

        public init(line: Int, phone: String, name: String, birthday: String? = nil, cards: [CardNumber] = [], principal: Int64 = 0,
                    bonus: Int64 = 0, points: Int64 = 0, pointsExpireOn: String? = nil, store: StoreID, reference: String? = nil) {
            self.line = line; self.phone = phone; self.name = name; self.birthday = birthday; self.cards = cards
            self.principal = principal; self.bonus = bonus; self.points = points; self.pointsExpireOn = pointsExpireOn
            self.store = store; self.reference = reference
        }
    }

    /// A row that cannot be imported, and why; `line` is where its record starts in the file.
    public struct Problem: Hashable, Sendable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public init(line: Int, message: String) { self.line = line; self.message = message }
        public var description: String { "line \(line): \(message)" }
    }

    /// The columns a row may have. `phone` and `name` are required, and `store` unless the
    /// import names a default store. `card` may list several cards separated by `|`.
    public static let columns = ["phone", "name", "birthday", "card", "principal", "bonus", "points", "points_expire_on", "store", "reference"]
    /// Columns `tessera export` writes beside those, read back without effect.
    public static let informational = ["id", "tier"]

    /// Reads and checks every row; `rows` holds the good ones, `problems` every bad one (the
    /// import writes nothing unless `problems` is empty).
    public static func read(_ bytes: [UInt8], format: Format, defaultStore: StoreID? = nil) -> (rows: [Row], problems: [Problem]) {
        var records: [(line: Int, fields: [String: String])] = []
        var problems: [Problem] = []
        switch format {
        case .csv:
            let (header, body, csvProblems) = CSV.records(bytes)
            problems += csvProblems
            guard let header else {
                return ([], problems + [Problem(line: 1, message: "the file is empty: a CSV import starts with a header of column names")])
            }
            let names = header.fields.map { $0.trimmingWhitespace().lowercased() }
            var seen = Set<String>()
            for name in names {
                if !columns.contains(name) && !informational.contains(name) {
                    problems.append(Problem(line: header.line, message: "unknown column '\(name)'; columns are \(columns.joined(separator: ", "))"))
                }
                if !seen.insert(name).inserted { problems.append(Problem(line: header.line, message: "column '\(name)' appears twice")) }
            }
            for required in ["phone", "name"] + (defaultStore == nil ? ["store"] : []) where !names.contains(required) {
                problems.append(Problem(line: header.line, message: "the header lacks the column '\(required)'"))
            }
            guard problems.isEmpty else { return ([], problems) }
            for record in body {
                if record.fields.count == 1 && record.fields[0].trimmingWhitespace().isEmpty { continue } // a blank line
                guard record.fields.count == names.count else {
                    problems.append(Problem(line: record.line, message: "\(record.fields.count) fields where the header has \(names.count)"))
                    continue
                }
                records.append((record.line, Dictionary(uniqueKeysWithValues: zip(names, record.fields))))
            }
        case .jsonLines:
            var line = 0
            for slice in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
                line += 1
                let text = String(decoding: slice, as: UTF8.self)
                if text.trimmingWhitespace().isEmpty { continue }
                guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(slice)), case .object(let object) = value else {
                    problems.append(Problem(line: line, message: "not a JSON object"))
                    continue
                }
                var fields: [String: String] = [:]
                var bad = false
                for (key, value) in object {
                    guard columns.contains(key) || informational.contains(key) else {
                        problems.append(Problem(line: line, message: "unknown field '\(key)'; fields are \(columns.joined(separator: ", "))"))
                        bad = true
                        continue
                    }
                    switch value {
                    case .string(let s): fields[key] = s
                    case .int(let n): fields[key] = String(n)
                    case .null: break
                    case .array(let items) where key == "card":
                        let cards = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
                        guard cards.count == items.count else { bad = true; problems.append(Problem(line: line, message: "card lists strings")); continue }
                        fields[key] = cards.joined(separator: "|")
                    default:
                        problems.append(Problem(line: line, message: "\(key) must be a string or a whole number"))
                        bad = true
                    }
                }
                if !bad { records.append((line, fields)) }
            }
        }

        var rows: [Row] = []
        rows.reserveCapacity(records.count)
        var phones: [String: Int] = [:], cards: [String: Int] = [:], references: [String: Int] = [:]
        for (line, fields) in records {
            do throws(DomainError) {
                let row = try check(fields, line: line, defaultStore: defaultStore)
                if let first = phones[row.phone] {
                    problems.append(Problem(line: line, message: "phone \(row.phone) is also on line \(first)"))
                    continue
                }
                if let card = row.cards.first(where: { cards[$0.rawValue] != nil }), let first = cards[card.rawValue] {
                    problems.append(Problem(line: line, message: "card \(card) is also on line \(first)"))
                    continue
                }
                if let reference = row.reference, let first = references[reference] {
                    problems.append(Problem(line: line, message: "reference \(reference) is also on line \(first)"))
                    continue
                }
                phones[row.phone] = line
                for card in row.cards { cards[card.rawValue] = line }
                if let reference = row.reference { references[reference] = line }
                rows.append(row)
            } catch {
                problems.append(Problem(line: line, message: error.message))
            }
        }
        return (rows, problems)
    }

    /// One row's fields, checked as a till's enrolment is, plus the opening balance.
    static func check(_ fields: [String: String], line: Int, defaultStore: StoreID?) throws(DomainError) -> Row {
        func text(_ key: String) -> String? {
            guard var value = fields[key]?.trimmingWhitespace(), !value.isEmpty else { return nil }
            // A field a spreadsheet might run as a formula is written with a ' before it
            // (`CSV.field`, `tessera export`): read back as it was.
            if value.first == "'", let next = value.dropFirst().first, "=+-@".contains(next) { value.removeFirst() }
            return value
        }
        let rawName = text("name")
        func amount(_ key: String) throws(DomainError) -> Int64 {
            guard let raw = text(key) else { return 0 }
            guard let value = Int64(raw) else {
                throw DomainError(.invalidRequest, "\(key) '\(raw)' is not a whole number of minor units (write 1250 for 12.50)")
            }
            guard (0...Limits.amountMaxMinor).contains(value) else {
                throw DomainError(.invalidRequest, "\(key) must be between 0 and \(Limits.amountMaxMinor)")
            }
            return value
        }
        guard let rawPhone = text("phone") else { throw DomainError(.invalidRequest, "phone is missing") }
        let phone = try Validate.phone(rawPhone)
        guard let rawName else { throw DomainError(.invalidRequest, "name is missing") }
        let name = try Validate.name(rawName)
        let birthday = try text("birthday").map { value throws(DomainError) in try Validate.birthday(value) }
        var cards: [CardNumber] = []
        for part in (text("card") ?? "").split(separator: "|") {
            let card = try Validate.card(String(part))
            if cards.contains(card) { throw DomainError(.invalidRequest, "card \(card) is listed twice") }
            cards.append(card)
        }
        let principal = try amount("principal"), bonus = try amount("bonus")
        let points: Int64
        if let raw = text("points") {
            guard let value = Int64(raw) else { throw DomainError(.invalidRequest, "points '\(raw)' is not a whole number") }
            try Validate.points(value, "points")
            points = value
        } else {
            points = 0
        }
        let expiry = text("points_expire_on")
        try Validate.date(expiry, "points_expire_on")
        let store: StoreID
        if let raw = text("store") {
            guard let id = StoreID(rawValue: raw), id != .hub else { throw DomainError(.invalidRequest, "store '\(raw)' is not a store id") }
            store = id
        } else if let defaultStore {
            store = defaultStore
        } else {
            throw DomainError(.invalidRequest, "store is missing (or give the import a default store)")
        }
        let reference = text("reference")
        if let reference, reference.count > 200 { throw DomainError(.invalidRequest, "reference is longer than 200 characters") }
        return Row(line: line, phone: phone, name: name, birthday: birthday, cards: cards, principal: principal, bonus: bonus,
                   points: points, pointsExpireOn: expiry, store: store, reference: reference)
    }
}

/// RFC 4180 CSV: fields separated by commas, records by CRLF or LF, quoted fields may hold
/// commas, quotes (doubled) and line breaks. A byte order mark at the start is skipped.
public enum CSV {
    public struct Record: Sendable {
        /// The line of the file the record starts on (1-based).
        public var line: Int
        public var fields: [String]
    }

    /// The header (the first record), the records after it, and any malformed quoting.
    public static func records(_ bytes: [UInt8]) -> (header: Record?, body: [Record], problems: [MemberImport.Problem]) {
        var records: [Record] = []
        var problems: [MemberImport.Problem] = []
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        var fields: [String] = []
        var field: [UInt8] = []
        var start = 1
        var quoted = false, wasQuoted = false, any = false
        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            wasQuoted = false
        }
        func endRecord() {
            endField()
            records.append(Record(line: start, fields: fields))
            fields.removeAll(keepingCapacity: true)
            any = false
        }
        while i < bytes.count {
            let b = bytes[i]
            if quoted {
                if b == 0x22 {
                    if i + 1 < bytes.count && bytes[i + 1] == 0x22 { field.append(0x22); i += 2; continue }
                    quoted = false
                } else {
                    if b == 0x0A { line += 1 }
                    field.append(b)
                }
                i += 1
                continue
            }
            if !any { start = line; any = true }
            switch b {
            case 0x22 where field.isEmpty && !wasQuoted:
                quoted = true; wasQuoted = true
            case 0x22:
                problems.append(MemberImport.Problem(line: line, message: "a quote inside an unquoted field (quote the whole field and double its quotes)"))
                field.append(b)
            case 0x2C:
                endField()
            case 0x0D where i + 1 < bytes.count && bytes[i + 1] == 0x0A:
                break
            case 0x0A:
                endRecord()
                line += 1
            default:
                field.append(b)
            }
            i += 1
        }
        if quoted { problems.append(MemberImport.Problem(line: start, message: "a quoted field is never closed")) }
        if any || !fields.isEmpty || !field.isEmpty { endRecord() }
        guard let header = records.first else { return (nil, [], problems) }
        return (header, Array(records.dropFirst()), problems)
    }

    /// One field as written for a spreadsheet: text starting with = + @ or a control
    /// character, or - not starting a number, gets a ' before it (names and phones that stores
    /// sent must never run as a formula); quoted when it holds a comma, a quote or a line break.
    public static func field(_ raw: String) -> String {
        var text = raw
        if let first = text.first, "=+@\t\r".contains(first) || (first == "-" && !(text.dropFirst().first?.isNumber ?? false)) {
            text = "'" + text
        }
        return text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    /// Lines of fields, CRLF after each (RFC 4180).
    public static func text(_ rows: [[String]]) -> String {
        rows.map { $0.map(field).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
    }
}
