import Foundation
import FoundationNetworking
import GRDB
import TesseraTestSupport
import Testing
import Synchronization
@testable import TesseraHub

/// After an outage a hundred stores push at once, and the hub's one writer takes the pushes one
/// by one; reads (pulls) need no writer and must not queue behind them.
@Suite("The hub while its writer is busy", .serialized)
struct HubUnderLoadTests {
    @Test("a pull is answered while more pushes than the hub has storage threads wait for its writer")
    func pullsPassWaitingPushes() async throws {
        let chain = try await Chain(stores: ["w1", "w2"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("w1")
        try await chain.waitBootstrapped("w2")
        let hub = chain.hubURL
        func headers(_ store: String) -> [String: String] {
            ["Authorization": "Bearer \(chain.tokens[store] ?? "")", "Tessera-Protocol": "1"]
        }

        // Another process holds the hub's write lock (as `tessera store add` may, briefly): the
        // hub's writer waits for it, up to its busy timeout (10 s).
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.allowsUnsafeTransactions = true // the lock is held across accesses
        let holder = try DatabaseQueue(path: chain.ws.path("hub") + "/hub.sqlite", configuration: configuration)
        try await holder.writeWithoutTransaction { db in try db.execute(sql: "BEGIN IMMEDIATE") }
        var held = true
        defer { if held { try? holder.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") } } }

        // More pushes than the hub's shared storage threads (16), each on its own connection.
        let session = URLSession(configuration: {
            let c = URLSessionConfiguration.ephemeral
            c.httpMaximumConnectionsPerHost = 64
            return c
        }())
        var request = URLRequest(url: try #require(URL(string: hub + "/v1/sync/push")), timeoutInterval: 30)
        request.httpMethod = "POST"
        for (k, v) in headers("w1") { request.setValue(v, forHTTPHeaderField: k) }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"protocol":1,"store":"w1","ops":[]}"#.utf8)
        let push = request
        // Each push's status and when it was answered.
        let pushes = Task {
            try await withThrowingTaskGroup(of: (Int, Date).self) { group in
                for _ in 0..<24 {
                    group.addTask {
                        let (_, response) = try await session.data(for: push)
                        return ((response as? HTTPURLResponse)?.statusCode ?? 0, Date())
                    }
                }
                var answers: [(Int, Date)] = []
                for try await answer in group { answers.append(answer) }
                return answers
            }
        }
        defer { session.finishTasksAndInvalidate() }
        // Let them reach the hub and wait there.
        try await Task.sleep(for: .seconds(1))

        let pull: HTTP.Answer
        do {
            let url = hub + "/v1/sync/pull?after=0&pending=0"
            do {
                pull = try await HTTP.call("GET", url, headers: headers("w2"), timeout: 5)
            } catch let error as URLError where error.code == .networkConnectionLost || error.code == .cannotConnectToHost {
                // A pooled connection to an earlier test's server on the same port (see `HTTP.get`).
                pull = try await HTTP.call("GET", url, headers: headers("w2"), timeout: 5)
            }
        } catch {
            // The hub stops only once every push is answered: a connection closed under a
            // waiting request can stop this whole test process (FoundationNetworking).
            try await holder.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") }
            held = false
            _ = try? await pushes.value
            throw error
        }
        let pulled = Date()
        #expect(pull.status == 200)

        try await holder.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") }
        held = false
        let answers = try await pushes.value
        #expect(answers.count == 24 && answers.allSatisfy { $0.0 == 200 }, "\(answers)")
        #expect(answers.allSatisfy { $0.1 > pulled }, "the pushes waited for the writer while the pull was answered")
    }

    @Test("the hub decodes a push only when its turn is near: at most so many at once, the others waiting in the order they came")
    func turnstile() async throws {
        final class Inside: Sendable {
            let state = Mutex((now: 0, entered: 0, most: 0, order: [Int](), open: false))
        }
        /// `count` tasks through a turnstile of `limit`, each arriving once the one before it
        /// has entered or is waiting, held inside until all have arrived.
        func pass(_ count: Int, limit: Int) async throws -> (most: Int, order: [Int], waitedAtOnce: Int) {
            let gate = Turnstile(limit)
            let inside = Inside()
            var waitedAtOnce = 0
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<count {
                    group.addTask {
                        try await gate.run {
                            inside.state.withLock { $0.now += 1; $0.entered += 1; $0.most = max($0.most, $0.now); $0.order.append(i) }
                            while !inside.state.withLock({ $0.open }) { try await Task.sleep(for: .milliseconds(1)) }
                            inside.state.withLock { $0.now -= 1 }
                        }
                    }
                    while inside.state.withLock({ $0.entered }) + gate.waiting < i + 1 { try await Task.sleep(for: .milliseconds(1)) }
                }
                waitedAtOnce = gate.waiting
                inside.state.withLock { $0.open = true }
                try await group.waitForAll()
            }
            #expect(gate.waiting == 0 && inside.state.withLock { $0.now } == 0)
            let seen = inside.state.withLock { $0 }
            return (seen.most, seen.order, waitedAtOnce)
        }
        let two = try await pass(6, limit: 2)
        #expect(two.most == 2 && two.waitedAtOnce == 4 && Set(two.order) == Set(0..<6))
        // One at a time, the order they entered is the order they came.
        let one = try await pass(6, limit: 1)
        #expect(one.most == 1 && one.waitedAtOnce == 5 && one.order == Array(0..<6))
    }
}
