import AsyncHTTPClient
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A `tessera` server started for a benchmark (hub, node or the empty handler), with its
/// output in a file; stopped with SIGTERM, then SIGKILL.
final class Server: @unchecked Sendable {
    let process = Process()
    let url: String
    let log: String
    var pid: Int32 { process.processIdentifier }

    init(binary: String, _ args: [String], folder: String, name: String, startTimeout: Double = 60) async throws {
        log = (folder as NSString).appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        process.environment = Server.environment
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = process.standardOutput
        try process.run()
        let deadline = Date().addingTimeInterval(startTimeout)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening on http://") }),
               let range = line.range(of: "http://") {
                url = String(line[range.lowerBound...])
                return
            }
            guard process.isRunning else { throw BenchFailure("\(name) exited: \(text)") }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.terminate()
        throw BenchFailure("\(name) did not start")
    }

    /// The environment of every process the bench starts: this one's, less any Tessera
    /// setting (a production database or config file must not reach them), quieter logs.
    static var environment: [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TESSERA_") && $0.key != "LOG_LEVEL" }.merging(["LOG_LEVEL": "warning"]) { $1 }
    }

    var peakRSSBytes: Int { peakRSS(pid: pid) ?? 0 }

    /// The first line of its output that contains `text`.
    func logLine(containing text: String) -> String? {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").first { $0.contains(text) }.map(String.init)
    }

    /// Waits until its output says `text`.
    func waitForLog(_ text: String, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if logLine(containing: text) != nil { return }
            guard process.isRunning else { throw BenchFailure("the server exited before saying \(text)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchFailure("the server did not say \(text) within \(Int(timeout)) s")
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// The load generator's HTTP client: one AsyncHTTPClient for the whole run, the same library
/// the node uses to reach the hub.
final class LoadClient: Sendable {
    let http: HTTPClient

    /// `connectionsPerHost`: at least as many as the stores it stands for make requests at once
    /// (each store on its own machine has a connection of its own). With a thousand stores
    /// sharing 64, the catch-up stalled: the pool stopped opening connections with a thousand
    /// requests queued, none of them at the hub.
    init(connectionsPerHost: Int = 64) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connectionsPerHost
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    struct Answer {
        var status: Int
        var body: ByteBuffer
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:] }
    }

    func call(_ method: HTTPMethod, _ url: String, json: String? = nil, headers: [(String, String)] = [], timeout: Int64 = 120) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await http.execute(request, timeout: .seconds(timeout))
        let body = try await response.body.collect(upTo: 4 << 30)
        return Answer(status: Int(response.status.code), body: body)
    }

    /// A call that must succeed with a 2xx answer.
    func ok(_ method: HTTPMethod, _ url: String, json: String? = nil, headers: [(String, String)] = [], timeout: Int64 = 120) async throws -> Answer {
        let answer = try await call(method, url, json: json, headers: headers, timeout: timeout)
        guard (200..<300).contains(answer.status) else {
            throw BenchFailure("\(method) \(url) answered \(answer.status): \(String(buffer: answer.body).prefix(300))")
        }
        return answer
    }

    /// A GET's status and the first `prefix` bytes of its answer; the rest is read as it
    /// streams by and dropped. The stores that drop pull pages stand for nodes on machines of
    /// their own: gathering each 400 kB page into one buffer here was this process's work, not
    /// the hub's (a copy of the 3.5 GB that 98 stores pull in the 100-store catch-up).
    /// Asked with `Accept-Encoding: gzip`, as a node asks for pull pages: a gzipped answer is
    /// inflated only as far as its first `prefix` bytes.
    /// `received`: the answer's bytes as they came over the wire.
    func prefix(_ url: String, headers: [(String, String)] = [], bytes prefix: Int, timeout: Int64 = 120)
        async throws -> (status: Int, head: [UInt8], received: Int) {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "Accept-Encoding", value: "gzip")
        let response = try await http.execute(request, timeout: .seconds(timeout))
        if response.headers.first(name: "Content-Encoding") == "gzip" {
            var gzipped = try await response.body.collect(upTo: 64 << 20)
            let decompressor = CompressionAlgorithm.gzip().decompressor
            try decompressor.startStream()
            defer { try? decompressor.finishStream() }
            var head = ByteBuffer()
            head.reserveCapacity(prefix)
            // Stops with the buffer full (which it reports as an overflow): only the head is wanted.
            let received = gzipped.readableBytes
            try? decompressor.streamInflate(from: &gzipped, to: &head)
            return (Int(response.status.code), Array(head.readableBytesView.prefix(prefix)), received)
        }
        var head: [UInt8] = []
        var received = 0
        for try await chunk in response.body {
            received += chunk.readableBytes
            if head.count < prefix { head += chunk.readableBytesView.prefix(prefix - head.count) }
        }
        return (Int(response.status.code), head, received)
    }

    /// The size of a GET's answer, counted as it streams by (a snapshot file is not held in memory).
    func count(_ url: String, headers: [(String, String)] = [], timeout: Int64 = 3600) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await http.execute(request, timeout: .seconds(timeout))
        guard (200..<300).contains(Int(response.status.code)) else { throw BenchFailure("GET \(url) answered \(response.status.code)") }
        var bytes = 0
        for try await chunk in response.body { bytes += chunk.readableBytes }
        return bytes
    }

    func shutdown() async { try? await http.shutdown() }
}
