import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Where the `tessera` executable under test is: next to the test bundle (SwiftPM builds it
/// because this target depends on it), or wherever TESSERA_BIN says.
enum Binary {
    static let path: String = {
        if let env = ProcessInfo.processInfo.environment["TESSERA_BIN"] { return env }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tessera").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/tessera").path
    }()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A temporary folder for one test, removed at the end (after its processes are stopped).
final class Workspace: @unchecked Sendable {
    let url: URL
    private var processes: [TesseraProcess] = []
    private var cleanups: [() -> Void] = []
    private let lock = NSLock()

    /// Runs after the processes are stopped (dropping a test database, say).
    func onRemove(_ cleanup: @escaping () -> Void) { lock.lock(); cleanups.append(cleanup); lock.unlock() }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-it-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Runs a short command to completion and returns its stdout.
    func run(_ args: [String]) throws -> String {
        let (status, output) = try runToEnd(Binary.path, args)
        guard status == 0 else { throw TestFailure("tessera \(args.joined(separator: " ")) exited \(status)") }
        return output
    }

    /// The last line a command printed (tokens are printed that way).
    func lastLine(_ args: [String]) throws -> String {
        try run(args).split(separator: "\n").last.map(String.init) ?? ""
    }

    func start(_ name: String, _ args: [String], environment: [String: String] = [:]) throws -> TesseraProcess {
        let process = try TesseraProcess(name: name, args: args, logFolder: url, environment: environment)
        lock.lock(); processes.append(process); lock.unlock()
        return process
    }

    deinit {
        for p in processes { p.kill9() }
        cleanups.forEach { $0() }
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs a program to completion: its exit status and what it printed (stderr is dropped).
func runToEnd(_ executable: String, _ args: [String]) throws -> (status: Int32, output: String) {
    let (status, output, _) = try runCapturing(executable, args)
    return (status, output)
}

/// Runs a program to completion with more environment: its exit status, stdout and stderr.
func runCapturing(_ executable: String, _ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, errors: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both while it runs: a full pipe would block it.
    let errors = Box<Data>()
    let done = DispatchGroup()
    done.enter()
    DispatchQueue.global().async { errors.value = err.fileHandleForReading.readDataToEndOfFile(); done.leave() }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    done.wait()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errors.value ?? Data(), as: UTF8.self))
}

private final class Box<T>: @unchecked Sendable { var value: T? }

/// A `tessera` server process whose stdout and stderr go to files, so it never blocks on a pipe.
final class TesseraProcess: @unchecked Sendable {
    let name: String
    let process = Process()
    let stdoutPath: String

    init(name: String, args: [String], logFolder: URL, environment: [String: String] = [:]) throws {
        self.name = name
        stdoutPath = logFolder.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(6)).out").path
        let errPath = stdoutPath.replacingOccurrences(of: ".out", with: ".err")
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Binary.path)
        process.arguments = args
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    /// What it logged (its standard error).
    var errors: String { (try? String(contentsOfFile: stdoutPath.replacingOccurrences(of: ".out", with: ".err"), encoding: .utf8)) ?? "" }

    /// Waits for `... listening on http://HOST:PORT` and returns the base URL.
    func url(label: String = "listening on ", timeout: Double = 90) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            for line in output.split(separator: "\n") where line.contains(label) {
                if let range = line.range(of: "https://") ?? line.range(of: "http://") { return String(line[range.lowerBound...]) }
            }
            guard process.isRunning else { throw TestFailure("\(name) exited \(process.terminationStatus): \(output)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("\(name) did not start listening: \(output)")
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func interrupt() { process.interrupt() }

    func waitForExit(timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return !process.isRunning
    }
}

/// Minimal JSON over HTTP for the tests (loopback only).
struct HTTP {
    struct Answer {
        var status: Int
        var data: Data
        var headers: [String: String] = [:]
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:] }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
        var text: String { String(decoding: data, as: UTF8.self) }
    }

    static func call(_ method: String, _ url: String, json: String? = nil, headers: [String: String] = [:], timeout: Double = 10) async throws -> Answer {
        var request = URLRequest(url: URL(string: url)!, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let json {
            request.httpBody = Data(json.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http?.allHeaderFields ?? [:] {
            if let key = key as? String, let value = value as? String { headers[key] = value }
        }
        return Answer(status: http?.statusCode ?? 0, data: data, headers: headers)
    }

    /// A GET, asked a second time if the first dies on the wire: tests kill servers and the
    /// kernel hands their ports to the next test's, so a pooled connection may lead nowhere.
    static func get(_ url: String, token: String? = nil) async throws -> Answer {
        let headers = token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
        do {
            return try await call("GET", url, headers: headers)
        } catch let error as URLError where error.code == .networkConnectionLost || error.code == .cannotConnectToHost {
            try await Task.sleep(for: .milliseconds(100))
            return try await call("GET", url, headers: headers)
        }
    }

    static func post(_ url: String, _ json: String = "{}", key: String? = nil) async throws -> Answer {
        try await call("POST", url, json: json, headers: key.map { ["Idempotency-Key": $0] } ?? [:])
    }
}

/// Polls until `check` returns true, or fails the test after `timeout` seconds.
func eventually(_ what: String, timeout: Double = 90, _ check: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? await check()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("timed out waiting until \(what)")
}

/// A TCP socket bound to a free loopback port (port 0 lets the kernel choose), and that port.
func bindLoopback(port: Int = 0) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard bound else {
        close(fd)
        throw TestFailure("could not bind a loopback port")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A port nothing listens on right now.
func freePort() throws -> Int {
    let (fd, port) = try bindLoopback()
    close(fd)
    return port
}

/// The first of `count` consecutive ports nothing uses right now (`tessera up` takes a port
/// and the next two). Below Linux's ephemeral range (32768 and up), where the kernel also
/// picks the source ports of the suite's own client connections: a port after one it picked
/// could be one of those (`tessera up` then failed to bind a node's, and stopped the others).
func freePorts(_ count: Int) throws -> Int {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let first = Int.random(in: 20_000..<(32_000 - count), using: &rng)
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for port in first..<(first + count) {
            guard let (fd, _) = try? bindLoopback(port: port) else { break }
            held.append(fd)
        }
        if held.count == count { return first }
    }
    throw TestFailure("no \(count) consecutive free loopback ports")
}

/// A listening socket that never accepts: connections complete in the kernel's backlog and
/// requests are sent, but no answer ever comes (a hub that hangs, or a half-open link).
final class BlackHole {
    let fd: Int32
    let port: Int
    init() throws {
        (fd, port) = try bindLoopback()
        guard listen(fd, 64) == 0 else { throw TestFailure("could not listen") }
    }
    var url: String { "http://127.0.0.1:\(port)" }
    deinit { close(fd) }
}
