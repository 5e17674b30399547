import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// One log line per request, with its request id (also sent back as `Tessera-Request-Id`, so
/// a till's error can be found in the server's log): the method, the route's pattern (never
/// the path itself: paths and queries carry card numbers and phones), the status and the time
/// taken. Changes (POST, PUT, PATCH, DELETE) at `info`, reads at `debug` (nodes poll every
/// second), failures of the server at `error`.
public struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    static var requestIDHeader: HTTPField.Name { HTTPField.Name("Tessera-Request-Id")! }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var response = try await next(request, context)
        response.headers[Self.requestIDHeader] = context.id
        let elapsed = ContinuousClock.now - started
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        let status = Int(response.status.code)
        let level: Logger.Level = status >= 500 ? .error : request.method == .get || request.method == .head ? .debug : .info
        context.logger.log(level: level, "request", metadata: [
            "method": "\(request.method)", "route": "\(context.endpointPath ?? "unmatched")", "status": "\(status)",
            "ms": "\(String(format: "%.1f", ms))",
        ])
        return response
    }
}
