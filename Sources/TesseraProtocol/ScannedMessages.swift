import struct Foundation.Data
import TesseraCore

/// The sync messages read most often, scanned field by field (`JSONValueParser.scan`): a pull
/// page at a node, a push at the hub. Their envelopes are read straight into their types; only
/// the operations' bodies become `JSONValue`s. Why: a node reading a page of a thousand
/// operations made three dictionaries and a keyed container per operation (a tenth of a
/// replica's work folding a catch-up), and wrote each body's text again to store it.
///
/// Anything but the expected fields, each once, with values of their types, is not scanned:
/// the text is then read the general way, which gives the same value or the refusal it always
/// gave (tests compare both ways on the same texts).
public protocol ScannedMessage: SyncMessage {
    /// The message scanned from `data`; throws when it is not the outline the scan takes.
    static func scanned(_ data: Data) throws -> Self
}

/// `data` scanned as a `T`, when `T` is a scanned message and `data` the outline its scan
/// takes (a strict reader's fast path: a scan takes only the message's own fields); nil otherwise.
public func scannedMessage<T>(_ type: T.Type, _ data: Data) -> T? {
    guard let scanned = T.self as? any ScannedMessage.Type else { return nil }
    return (try? scanned.scanned(data)) as? T
}

/// Not the outline a scan expects: read the text the general way.
struct Unscanned: Error {}

extension ScannedMessage {
    public static func read(from data: Data) throws -> Self {
        if let message = try? scanned(data) { return message }
        return try readGenerally(from: data)
    }
}

extension Operation {
    /// An operation's envelope (its five fields), and its body's text as it is written there
    /// when `keepText` (empty otherwise).
    static func scanned(_ s: inout JSONValueParser.Scanner, keepText: Bool) throws -> (op: Operation, bodyText: String) {
        var id: OperationID?, hlc: HLCTimestamp?, kind: String?, kindVersion: Int?, body: (value: JSONValue, text: String)?
        try s.fields { name, s in
            switch name {
            case "id" where id == nil: id = try OperationID(s.string()) ?? { throw Unscanned() }()
            case "hlc" where hlc == nil: hlc = try HLCTimestamp(packed: s.integer()) ?? { throw Unscanned() }()
            case "kind" where kind == nil: kind = try s.string()
            case "kind_version" where kindVersion == nil: kindVersion = try Int(exactly: s.integer()) ?? { throw Unscanned() }()
            case "body" where body == nil: body = try keepText ? s.valueAndText() : (s.value(), "")
            default: throw Unscanned()
            }
        }
        guard let id, let hlc, let kind, let kindVersion, let body else { throw Unscanned() }
        // As `JSONValueDecoder` reads a body (a whole number beyond 64 bits that is exactly one as a double).
        return (Operation(id: id, hlc: hlc, kind: kind, kindVersion: kindVersion, body: body.value.integralNumbersAsIntegers), body.text)
    }
}

extension PullResponse: ScannedMessage {
    public static func scanned(_ data: Data) throws -> PullResponse {
        try JSONValueParser.scan(data) { s in
            var version: Int?, ops: [VersionedOperation]?, texts: [String] = [], cursor: Int64?, more: Bool?
            try s.fields { name, s in
                switch name {
                case "protocol" where version == nil: version = try Int(exactly: s.integer()) ?? { throw Unscanned() }()
                case "cursor" where cursor == nil: cursor = try s.integer()
                case "more" where more == nil: more = try s.bool()
                case "ops" where ops == nil:
                    var list: [VersionedOperation] = []
                    try s.items { s in
                        var at: Int64?, op: (op: Operation, bodyText: String)?
                        try s.fields { name, s in
                            switch name {
                            case "version" where at == nil: at = try s.integer()
                            case "op" where op == nil: op = try Operation.scanned(&s, keepText: true)
                            default: throw Unscanned()
                            }
                        }
                        guard let at, let op else { throw Unscanned() }
                        list.append(VersionedOperation(version: at, op: op.op))
                        texts.append(op.bodyText)
                    }
                    ops = list
                default: throw Unscanned()
                }
            }
            guard let version, let ops, let cursor, let more else { throw Unscanned() }
            var page = PullResponse(ops: ops, cursor: cursor, more: more)
            page.protocol = version
            page.bodyTexts = texts
            return page
        }
    }
}

extension PushRequest: ScannedMessage {
    public static func scanned(_ data: Data) throws -> PushRequest {
        try JSONValueParser.scan(data) { s in
            var version: Int?, store: StoreID?, ops: [Operation]?
            try s.fields { name, s in
                switch name {
                case "protocol" where version == nil: version = try Int(exactly: s.integer()) ?? { throw Unscanned() }()
                case "store" where store == nil: store = try StoreID(rawValue: s.string()) ?? { throw Unscanned() }()
                case "ops" where ops == nil:
                    var list: [Operation] = []
                    try s.items { s in list.append(try Operation.scanned(&s, keepText: false).op) }
                    ops = list
                default: throw Unscanned()
                }
            }
            guard let version, let store, let ops else { throw Unscanned() }
            var push = PushRequest(store: store, ops: ops)
            push.protocol = version
            return push
        }
    }
}
