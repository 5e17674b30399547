import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// A temporary folder removed when the test ends.
final class TempDir {
    let url: URL
    private var cleanups: [() -> Void] = []
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func onRemove(_ cleanup: @escaping () -> Void) { cleanups.append(cleanup) }
    deinit {
        cleanups.forEach { $0() }
        try? FileManager.default.removeItem(at: url)
    }
}

let s1 = StoreID(rawValue: "s1")!
let s2 = StoreID(rawValue: "s2")!

/// A manual clock for stores under test.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var ms: Int64
    init(_ ms: Int64 = 1_700_000_000_000) { self.ms = ms }
    func now() -> Int64 { lock.lock(); defer { lock.unlock() }; return ms }
    func advance(_ by: Int64) { lock.lock(); ms += by; lock.unlock() }
}

extension TillAnswer {
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONDecoder().decode(type, from: body) }
    var errorCode: String? { (try? JSONDecoder().decode(ErrorBody.self, from: body))?.error.code }
}

/// A node bootstrapped from an empty hub, as a fresh store would be.
func bootstrappedNode(_ dir: TempDir, _ store: StoreID, hub: HubStore, clock: TestClock = TestClock(),
                      limit: Int64 = 20_000) throws -> NodeStore {
    let node = try NodeStore(path: dir.path("\(store).sqlite"), store: store,
                             offlinePolicy: OfflineSpendPolicy(limitMinorPerDay: limit), physicalMs: { clock.now() })
    try node.bootstrap(try hub.snapshot(for: store))
    return node
}

/// One sync round done in-process: push the outbox, pull everything new.
func sync(_ node: NodeStore, _ hub: HubStore) throws {
    try node.settleLeases() // as the sync loop does at the start of a round
    while true {
        let batch = try node.pendingBatch(limit: SyncLimits.pushBatchMax)
        if batch.isEmpty { break }
        try node.recordPush(try hub.push(batch, from: node.store))
    }
    while true {
        let page = try hub.pull(after: try node.counts().cursor, limit: 100, for: node.store, pending: nil)
        try node.applyPull(page)
        if !page.more { break }
    }
}

func enrol(_ node: NodeStore, _ name: String, _ phone: String) throws -> MemberView {
    let answer = try node.enrol(NodeAPI.Enrol(name: name, phone: phone), key: nil)
    precondition(answer.status == 201, String(decoding: answer.body, as: UTF8.self))
    return try answer.decode(MemberView.self)
}

/// Runs a spend with the hub in-process (or unreachable) and returns the till's answer.
func spend(_ step: SpendStep, node: NodeStore, hub: HubStore?, key: IdempotencyKey? = nil) throws -> TillAnswer {
    switch step {
    case .answered(let answer): return answer
    case .authorize(let pending):
        guard let hub else { return try node.finishSpend(pending, outcome: .unreachable, key: key) }
        let answer = try hub.authorize(AuthorizeRequest(prior: try node.prior(for: pending), op: pending.op), from: node.store)
        let outcome: AuthorizationOutcome = answer.decision == .accepted
            ? .accepted(version: answer.version ?? 0, prior: answer.prior)
            : .refused(answer.code ?? .insufficientBalance, answer.message ?? "", prior: answer.prior)
        return try node.finishSpend(pending, outcome: outcome, key: key)
    }
}

/// The spend a till step left waiting for the hub (fails the test if it needed no authorisation).
func awaitingHub(_ step: SpendStep) throws -> PendingSpend {
    guard case .authorize(let pending) = step else { throw TestFailure("this spend needed no authorisation") }
    return pending
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Backend {
    /// A hub on this database with the stores s1 and s2 registered, on `clock` when given.
    func hubWithTwoStores(_ dir: TempDir, clock: TestClock? = nil) throws -> HubStore {
        let now: @Sendable () -> Int64
        if let clock { now = { clock.now() } } else { now = NodeStore.wallClockMs }
        let hub = try self.hub(dir, physicalMs: now)
        _ = try hub.addStore(s1, name: "One")
        _ = try hub.addStore(s2, name: "Two")
        return hub
    }

    func hub(_ dir: TempDir, _ name: String = "hub", physicalMs: @escaping @Sendable () -> Int64 = NodeStore.wallClockMs) throws -> HubStore {
        switch self {
        case .sqlite:
            return try HubStore(path: dir.path("\(name).sqlite"), physicalMs: physicalMs)
        case .postgresql:
            let database = try TestDatabase()
            dir.onRemove { database.drop() }
            return try HubStore(postgres: database.location, foldPath: dir.path("\(name)-fold.sqlite"), physicalMs: physicalMs)
        }
    }
}
