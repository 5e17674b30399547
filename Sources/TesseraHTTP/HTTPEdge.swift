import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TesseraCore
import TesseraProtocol
import TesseraStorage

// Foundation has an `Operation` too; in this module the name means ours.
public typealias Operation = TesseraCore.Operation

/// Domain errors leave the server as `{"error": {"code", "message"}}` with the status the
/// edge assigns to their code.
extension DomainError: HTTPResponseError {
    public var status: HTTPResponse.Status { .init(code: HTTPStatusForError.status(of: code)) }
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try JSONBody.response(ErrorBody(code: code.rawValue, message: message), status: status)
    }
}

/// Turns every other error into a JSON answer as well, so a client never has to parse text.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}
    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as DomainError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code: ErrorCode = error.status == .notFound ? .notFound : error.status.code < 500 ? .invalidRequest : .internalError
            return try JSONBody.response(ErrorBody(code: code.rawValue, message: error.body ?? error.status.reasonPhrase), status: error.status)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            return try JSONBody.response(ErrorBody(code: ErrorCode.internalError.rawValue, message: "internal error"), status: .internalServerError)
        }
    }
}

public enum JSONBody {
    /// Reads and decodes a JSON body; malformed input is an `invalid_request` naming the field.
    public static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 1 << 20) async throws -> (T, Data) {
        let data = try await rawBody(request, limit: limit)
        return (try decode(type, data: data), data)
    }

    /// The request's body bytes, refused beyond `limit`.
    public static func rawBody(_ request: Request, limit: Int = 1 << 20) async throws -> Data {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: limit) } catch {
            throw DomainError(.invalidRequest, "the body is larger than \(limit) bytes")
        }
        return Data(buffer.readableBytesView)
    }

    public static func decode<T: Decodable>(_ type: T.Type, data: Data) throws -> T {
        if let strict = T.self as? any StrictBody.Type {
            return try decodeStrict(type, strict.fields, data: data)
        }
        do {
            let value: T
            do {
                value = try decodeJSON(type, from: data)
            } catch let failure as JSONValueParser.Failure {
                throw DomainError(.invalidRequest, "the body is not valid JSON (\(failure))")
            }
            return value
        } catch let error as DecodingError {
            throw DomainError(.invalidRequest, describe(error))
        }
    }

    /// A till's or head office's request: read once into a `JSONValue`, which gives both the
    /// value (through `JSONValueDecoder`, which decodes and refuses as JSONDecoder does) and the
    /// top-level names to check. JSONDecoder, twice, was a quarter of a till's request outside
    /// the writer.
    static func decodeStrict<T: Decodable>(_ type: T.Type, _ fields: Set<String>, data: Data) throws -> T {
        // A push, scanned: its scan takes its own fields only (a tenth of the hub's time
        // outside the writer went to reading pushes into `JSONValue`s, then decoding them).
        if let scanned = scannedMessage(type, data) { return scanned }
        let json: JSONValue
        do { json = try JSONValueParser.parse(data) } catch let failure as JSONValueParser.Failure {
            throw DomainError(.invalidRequest, "the body is not valid JSON (\(failure))")
        }
        let value: T
        do { value = try JSONValueDecoder().decode(type, from: json) } catch let error as DecodingError {
            throw DomainError(.invalidRequest, describe(error))
        }
        if case .object(let names) = json, let unknown = names.keys.filter({ !fields.contains($0) }).min() {
            throw DomainError(.invalidRequest, "unknown field '\(unknown)'; this request takes \(fields.sorted().joined(separator: ", "))")
        }
        return value
    }

    public static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        // What JSONEncoder with sorted keys writes, byte for byte, without it (see `JSONText`).
        raw(status: Int(status.code), body: try JSONTextEncoder().encode(value))
    }

    /// A JSON answer from a value made already.
    public static func response(json: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        raw(status: Int(status.code), body: json.jsonBytes)
    }

    /// A JSON answer from its bytes as they are (`Data`, or a pull page's bytes: 400 kB for
    /// 1,000 operations, copied once into the response's buffer rather than through `Data`).
    public static func raw(status: Int, body: some Sequence<UInt8>) -> Response {
        raw(status: status, body: ByteBuffer(bytes: body))
    }

    /// A body written already where it is sent from (a pull page).
    public static func raw(status: Int, body: ByteBuffer) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: body))
    }

    /// A pull page: gzipped or not, as the hub made it. Either way, caches are told the answer
    /// depends on `Accept-Encoding`.
    public static func page(_ page: PullPage) -> Response {
        var response = raw(status: 200, body: page.body)
        if page.gzipped { response.headers[.contentEncoding] = "gzip" }
        response.headers[.vary] = "Accept-Encoding"
        return response
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        // Every request body is an object: a body of another kind, or null, is said so.
        case .typeMismatch(_, let ctx) where ctx.codingPath.isEmpty, .valueNotFound(_, let ctx) where ctx.codingPath.isEmpty:
            return "the body must be a JSON object"
        case .keyNotFound(let key, let ctx): return "missing field '\(path(ctx.codingPath + [key]))'"
        case .typeMismatch(_, let ctx): return "field '\(path(ctx.codingPath))' has the wrong type"
        case .valueNotFound(_, let ctx): return "field '\(path(ctx.codingPath))' must not be null"
        case .dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "the body is not valid JSON" : "field '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        @unknown default: return "the body could not be read"
        }
    }
}

extension Request {
    /// Whether the client takes gzipped answers (`Accept-Encoding: gzip`, not with `q=0`).
    public var acceptsGzip: Bool {
        headers[values: .acceptEncoding].contains { value in
            value.split(separator: ",").contains { part in
                let fields = part.split(separator: ";").map { $0.trimmingHTTPSpace.lowercased() }
                guard let coding = fields.first, coding == "gzip" || coding == "x-gzip" else { return false }
                let weight = fields.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
                return weight > 0
            }
        }
    }

    public var bearerToken: String? {
        guard let value = headers[.authorization], value.hasPrefix("Bearer ") else { return nil }
        let token = value.dropFirst("Bearer ".count).trimmingHTTPSpace
        return token.isEmpty ? nil : String(token)
    }

    public func query(_ name: String) -> String? {
        uri.queryParameters[Substring(name)].map(String.init)
    }

    /// A whole-number query parameter: nil when absent, `invalid_request` when not a number.
    public func integerQuery(_ name: String) throws -> Int64? {
        guard let text = query(name) else { return nil }
        guard let value = Int64(text) else { throw DomainError(.invalidRequest, "\(name) must be a whole number") }
        return value
    }

    /// `?limit=`: `default` when absent, at most `max` (a page larger than that is cut to it);
    /// less than 1 is refused (`invalid_request`): a page of nothing is a caller's mistake.
    public func limitQuery(default value: Int64, max: Int64) throws -> Int {
        let asked = try integerQuery("limit") ?? value
        guard asked >= 1 else { throw DomainError(.invalidRequest, "limit is 1 or more (at most \(max))") }
        return Int(Swift.min(asked, max))
    }
}

extension HTTPField.Name {
    public static let tesseraProtocol = HTTPField.Name(ProtocolVersion.header)!
    public static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    /// With a snapshot file (§6.4): the asking store's highest sequence number.
    public static let tesseraOriginSeq = HTTPField.Name(SnapshotFileAnswer.originSeqHeader)!
}

/// `host:port` as given on the command line.
public struct ListenAddress: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }
    public var description: String { "\(host):\(port)" }
}

/// Prints the address a server really listens on (port 0 picks a free one), so scripts and
/// tests can read it from the first line.
public func announce(_ label: String, _ channel: any Channel, scheme: String = "http") {
    let port = channel.localAddress?.port ?? 0
    let host = channel.localAddress?.ipAddress ?? "127.0.0.1"
    let shown = host.contains(":") ? "[\(host)]" : host
    FileHandle.standardOutput.write(Data("\(label) listening on \(scheme)://\(shown):\(port)\n".utf8))
}


/// Reports as CSV (`?format=csv`): a header line, then one line a row, fields quoted when needed.
public enum CSVBody {
    public static func response(header: [String], rows: [[String]]) -> Response {
        let text = CSV.text([header] + rows)
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Data(text.utf8))))
    }

    /// Whether the request asks for CSV (`format=csv`); anything but json or csv is refused.
    public static func wanted(_ request: Request) throws -> Bool {
        switch request.uri.queryParameters.get("format") ?? "json" {
        case "json": return false
        case "csv": return true
        default: throw DomainError(.invalidRequest, "format is json or csv")
        }
    }
}

extension StringProtocol where SubSequence == Substring {
    /// Without spaces and tabs at either end (a header's optional whitespace). Foundation's
    /// `trimmingCharacters(in:)` goes through NSString: with a thousand stores pulling, the
    /// bearer token's trim alone was 2 % of the hub's samples.
    var trimmingHTTPSpace: Substring {
        var part = self[...]
        while let c = part.utf8.first, c == 0x20 || c == 0x09 { part = part.dropFirst() }
        while let c = part.utf8.last, c == 0x20 || c == 0x09 { part = part.dropLast() }
        return part
    }
}
