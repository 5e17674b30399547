/// Reads JSON text (RFC 8259) straight into a `JSONValue`, giving what
/// `JSONDecoder().decode(JSONValue.self, from:)` gives for the same text, and refusing what it
/// refuses; where Foundation's reader is lenient, so is this one, so that nothing a client sends
/// is read differently: a byte order mark before the value, a comma before a closing bracket,
/// the first of two fields of one name, and a number written with a fraction or an exponent
/// that is a whole 64-bit integer (`1.0`, `1e2`) read as that integer.
///
/// Why: `JSONValue`'s `Decodable` conformance cannot ask a JSON decoder which kind of value comes
/// next; it tries the kinds in turn, and each wrong guess throws. Decoding a push of 500
/// operations that way was a fifth of the hub's time under ingest, and the same for every pull
/// a node folds. Here each byte is looked at once.
public enum JSONValueParser {
    /// Deeper nesting than this is refused (JSONDecoder's limit too).
    public static let depthMax = 512

    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        try bytes.withContiguousStorageIfAvailable { buffer in
            var reader = Reader(bytes: UnsafeRawBufferPointer(buffer))
            return try reader.document()
        } ?? parse(Array(bytes))
    }

    /// Reads a document whose outline the caller knows (a sync message's envelope) field by
    /// field, without making a `JSONValue` of the envelope or decoding it through `Decodable`:
    /// a pull page of a thousand operations made three dictionaries and a keyed container per
    /// operation, a fifth of the time a node spent reading it. `read` walks the document with
    /// the scanner; the document must end where `read` leaves it.
    ///
    /// A caller reads only the shapes it expects and throws on anything else, then reads the text
    /// the general way (`parse`, `JSONValueDecoder`), which gives the value or the refusal: what
    /// the general way accepts leniently (a duplicate field, a comma before a closing bracket) is
    /// refused here, so nothing is read in two ways.
    public static func scan<T>(_ bytes: some Collection<UInt8>, _ read: (inout Scanner) throws -> T) throws -> T {
        if let result = try bytes.withContiguousStorageIfAvailable({ buffer in
            var scanner = Scanner(reader: Reader(bytes: UnsafeRawBufferPointer(buffer)))
            scanner.reader.skipSpace()
            let value = try read(&scanner)
            scanner.reader.skipSpace()
            guard scanner.reader.at == scanner.reader.bytes.count else { throw scanner.reader.fail("unexpected text after the JSON value") }
            return value
        }) {
            return result
        }
        return try scan(Array(bytes), read)
    }

    /// A place in a document being scanned (see `scan`).
    public struct Scanner: ~Copyable {
        fileprivate var reader: Reader

        /// An object: `each` is called with each field's name, and must read its value.
        public mutating func fields(_ each: (String, inout Scanner) throws -> Void) throws {
            try elements(UInt8(ascii: "{"), UInt8(ascii: "}")) { s in
                try s.expect(UInt8(ascii: "\""))
                let name = try s.reader.string()
                s.reader.skipSpace()
                try s.expect(UInt8(ascii: ":"))
                s.reader.at += 1
                s.reader.skipSpace()
                try each(name, &s)
            }
        }

        /// An array: `each` is called for each item, and must read it.
        public mutating func items(_ each: (inout Scanner) throws -> Void) throws {
            try elements(UInt8(ascii: "["), UInt8(ascii: "]"), each)
        }

        /// An object's fields or an array's items, between `open` and `close`, separated by
        /// commas, each read by `each` from its first byte; a comma before `close` is refused.
        private mutating func elements(_ open: UInt8, _ close: UInt8, _ each: (inout Scanner) throws -> Void) throws {
            try expect(open)
            try reader.nest()
            reader.at += 1
            if reader.skipTo(close) { reader.depth -= 1; return }
            repeat {
                reader.skipSpace()
                try each(&self)
                reader.skipSpace()
                guard reader.at < reader.bytes.count, reader.bytes[reader.at] != UInt8(ascii: ",") || !followedByClosing() else {
                    throw reader.fail("a comma before a closing bracket")
                }
            } while try !reader.closes(close)
            reader.depth -= 1
        }

        /// Any value.
        public mutating func value() throws -> JSONValue {
            try reader.value()
        }

        /// Any value, and its text as it is in the document.
        public mutating func valueAndText() throws -> (value: JSONValue, text: String) {
            let start = reader.at
            let value = try reader.value()
            return (value, reader.ascii(start..<reader.at)) // UTF-8 already: the value's strings were checked
        }

        /// A string; throws for any other value.
        public mutating func string() throws -> String {
            try expect(UInt8(ascii: "\""))
            return try reader.string()
        }

        /// A whole number that fits in 64 bits, as `parse` reads it (`1.0` and `1e2` too); throws
        /// for any other value.
        public mutating func integer() throws -> Int64 {
            guard reader.at < reader.bytes.count, reader.bytes[reader.at] == UInt8(ascii: "-") || reader.isDigit(reader.bytes[reader.at]),
                  case .int(let integer) = try reader.number() else { throw reader.fail("expected an integer") }
            return integer
        }

        /// `true` or `false`; throws for any other value.
        public mutating func bool() throws -> Bool {
            guard case .bool(let value) = try reader.value() else { throw reader.fail("expected true or false") }
            return value
        }

        private func expect(_ byte: UInt8) throws {
            guard reader.at < reader.bytes.count, reader.bytes[reader.at] == byte else {
                throw reader.fail("expected '\(Character(Unicode.Scalar(byte)))'")
            }
        }

        /// Past a comma: whether a closing bracket comes next (which `parse` takes leniently).
        private func followedByClosing() -> Bool {
            var i = reader.at + 1
            while i < reader.bytes.count {
                switch reader.bytes[i] {
                case 0x20, 0x0A, 0x0D, 0x09: i += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"): return true
                default: return false
                }
            }
            return false
        }
    }

    /// Where and why a text is not JSON.
    public struct Failure: Error, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }
}

private struct Reader {
    let bytes: UnsafeRawBufferPointer
    var at = 0
    var depth = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func fail(_ reason: String) -> JSONValueParser.Failure { .init(offset: at, reason: reason) }

    mutating func document() throws -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { at = 3 }
        skipSpace()
        let value = try self.value()
        skipSpace()
        guard at == bytes.count else { throw fail("unexpected text after the JSON value") }
        return value
    }

    mutating func skipSpace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    mutating func value() throws -> JSONValue {
        guard at < bytes.count else { throw fail("unexpected end of the text") }
        switch bytes[at] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard bytes.count - at >= count else { throw fail("unexpected end of the text") }
        for i in 0..<count where bytes[at + i] != word.utf8Start[i] { throw fail("unexpected character") }
        at += count
    }

    mutating func nest() throws {
        depth += 1
        guard depth <= JSONValueParser.depthMax else { throw fail("nested too deeply") }
    }

    mutating func object() throws -> JSONValue {
        try nest()
        defer { depth -= 1 }
        at += 1 // {
        var fields: [String: JSONValue] = [:]
        if skipTo(UInt8(ascii: "}")) { return .object(fields) }
        repeat {
            skipSpace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("expected a field name") }
            let key = try string()
            skipSpace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            at += 1
            skipSpace()
            let value = try value()
            if fields[key] == nil { fields[key] = value }
        } while try !closes(UInt8(ascii: "}"))
        return .object(fields)
    }

    mutating func array() throws -> JSONValue {
        try nest()
        defer { depth -= 1 }
        at += 1 // [
        var items: [JSONValue] = []
        if skipTo(UInt8(ascii: "]")) { return .array(items) }
        repeat {
            skipSpace()
            items.append(try value())
        } while try !closes(UInt8(ascii: "]"))
        return .array(items)
    }

    /// Skips spaces; true, and past it, when `closing` comes next.
    mutating func skipTo(_ closing: UInt8) -> Bool {
        skipSpace()
        guard at < bytes.count, bytes[at] == closing else { return false }
        at += 1
        return true
    }

    /// After an object's field or an array's item: true past the `closing` bracket, false past
    /// a comma (a comma just before the closing bracket closes it too, as Foundation reads it).
    mutating func closes(_ closing: UInt8) throws -> Bool {
        skipSpace()
        guard at < bytes.count else { throw fail("unexpected end of the text") }
        if bytes[at] == UInt8(ascii: ",") {
            at += 1
            return skipTo(closing)
        }
        guard bytes[at] == closing else { throw fail("expected ',' or '\(Character(Unicode.Scalar(closing)))'") }
        at += 1
        return true
    }

    /// A string: plain runs are copied as they are (after a check that they are UTF-8), escapes
    /// decoded.
    mutating func string() throws -> String {
        at += 1 // opening quote
        let start = at
        var high: UInt8 = 0 // any byte's top bit: not plain ASCII
        // The common case: no escape before the closing quote.
        while at < bytes.count {
            let byte = bytes[at]
            if byte == UInt8(ascii: "\"") {
                let text = try high < 0x80 ? ascii(start..<at) : utf8(start..<at)
                at += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw fail("a control character in a string") }
            high |= byte
            at += 1
        }
        var scalars = Array(bytes[start..<at])
        while at < bytes.count {
            let byte = bytes[at]
            switch byte {
            case UInt8(ascii: "\""):
                at += 1
                guard let text = String(validating: scalars, as: UTF8.self) else { throw fail("a string that is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                at += 1
                guard at < bytes.count else { throw fail("unexpected end of the text") }
                let escape = bytes[at]
                at += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"):
                    var code = UInt32(try hex4())
                    if (0xD800...0xDBFF).contains(code) {
                        // A high surrogate must be followed by an escaped low one.
                        guard bytes.count - at >= 6, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") else {
                            throw fail("an unpaired surrogate in a string")
                        }
                        at += 2
                        let low = UInt32(try hex4())
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("an unpaired surrogate in a string") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw fail("an unpaired surrogate in a string")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("an invalid escape in a string") }
                    UTF8.encode(scalar) { scalars.append($0) }
                default:
                    throw fail("an invalid escape in a string")
                }
            default:
                guard byte >= 0x20 else { throw fail("a control character in a string") }
                scalars.append(byte)
                at += 1
            }
        }
        throw fail("unexpected end of the text")
    }

    mutating func hex4() throws -> UInt16 {
        guard bytes.count - at >= 4 else { throw fail("unexpected end of the text") }
        var code: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[at]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("an invalid escape in a string")
            }
            code = code << 4 | UInt16(digit)
            at += 1
        }
        return code
    }

    /// Plain ASCII (ids, kinds, dates: most strings), which needs no check: `String(validating:)`
    /// is not specialised for a buffer and looked up its generic metadata for every string, an
    /// eighth of the time a node spent reading pull pages.
    func ascii(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]).assumingMemoryBound(to: UInt8.self), as: UTF8.self)
    }

    func utf8(_ range: Range<Int>) throws -> String {
        guard let text = String(validating: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self) else {
            throw JSONValueParser.Failure(offset: range.lowerBound, reason: "a string that is not UTF-8")
        }
        return text
    }

    /// A number: an integer when it has neither fraction nor exponent and fits in 64 bits
    /// (money never passes through a Double), else a Double.
    mutating func number() throws -> JSONValue {
        let start = at
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        guard at < bytes.count, isDigit(bytes[at]) else { throw fail("a number without digits") }
        if bytes[at] == UInt8(ascii: "0") {
            at += 1
            if at < bytes.count, isDigit(bytes[at]) { throw fail("a number with a leading zero") }
        } else {
            while at < bytes.count, isDigit(bytes[at]) { at += 1 }
        }
        var integral = true
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            integral = false
            at += 1
            guard at < bytes.count, isDigit(bytes[at]) else { throw fail("a number without digits after '.'") }
            while at < bytes.count, isDigit(bytes[at]) { at += 1 }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            integral = false
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard at < bytes.count, isDigit(bytes[at]) else { throw fail("a number without digits in its exponent") }
            while at < bytes.count, isDigit(bytes[at]) { at += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
        if integral, let integer = Int64(text) { return .int(integer) }
        guard let double = Double(text), double.isFinite else { throw JSONValueParser.Failure(offset: start, reason: "a number out of range") }
        if !integral, let integer = Int64(exactly: double) { return .int(integer) }
        return .double(double)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
