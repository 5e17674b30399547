import Foundation
import GRDB
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// A chain's hub data folder with its stores registered, and the data a benchmark needs made
/// by the real till code (not timed).
struct Chain {
    let hubData: String
    let tokens: [String]
    /// A head-office token (admin: the bench also publishes a programme), for the reports' timings.
    let admin: String
    var hubPath: String { (hubData as NSString).appendingPathComponent("hub.sqlite") }

    static func make(_ dir: String, stores: [String], programme: JSONValue? = nil) throws -> Chain {
        let hubData = (dir as NSString).appendingPathComponent("hub")
        try FileManager.default.createDirectory(atPath: hubData, withIntermediateDirectories: true)
        let hub = try HubStore(path: (hubData as NSString).appendingPathComponent("hub.sqlite"))
        if let programme { _ = try hub.publishRules(programme, actor: "bench") }
        let tokens = try stores.map { store in
            guard let id = StoreID(rawValue: store) else { throw BenchFailure("bad store id \(store)") }
            return try hub.addStore(id, name: store)
        }
        return Chain(hubData: hubData, tokens: tokens, admin: try hub.issueAdminToken(role: .admin, label: "bench").token)
    }

    /// Registers another store at the hub in `hubData`; returns its token.
    static func addStore(_ hubData: String, _ store: String) throws -> String {
        guard let id = StoreID(rawValue: store) else { throw BenchFailure("bad store id \(store)") }
        let hub = try HubStore(path: (hubData as NSString).appendingPathComponent("hub.sqlite"))
        defer { try? hub.pool.close() }
        return try hub.addStore(id, name: store)
    }

    /// The hub's newest version (read straight from its file).
    static func hubHead(_ hubData: String) throws -> Int64 {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: (hubData as NSString).appendingPathComponent("hub.sqlite"), configuration: configuration)
        return try queue.read { try Int64.fetchOne($0, sql: "SELECT COALESCE(MAX(version), 0) FROM ops") ?? 0 }
    }

    /// Makes the hub's summaries look older than this build's, as a hub upgraded from a build
    /// without them (it makes them again from its log when it opens).
    static func forgetSummaries(_ hubData: String) throws {
        let queue = try DatabaseQueue(path: (hubData as NSString).appendingPathComponent("hub.sqlite"))
        try queue.write { try $0.execute(sql: "DELETE FROM meta WHERE key = 'summaries'") }
        try queue.close()
    }

    /// What a store's tills do over a day: enrol members, recharge some, and sell (cash sales
    /// earning points, nine in ten operations). Phones are unique across stores.
    static func tillWork(_ node: NodeStore, storeIndex: Int, ops: Int, members: Int) throws {
        var ids: [MemberID] = []
        var rng = SplitMix64(seed: UInt64(storeIndex + 1))
        for i in 0..<ops {
            if ids.count < members && (ids.isEmpty || i % 10 == 0 || ops - i <= members - ids.count) {
                let phone = "+1" + String(format: "%011d", storeIndex * 10_000_000 + ids.count)
                let answer = try node.enrol(NodeAPI.Enrol(name: "Member \(storeIndex)-\(ids.count)", phone: phone), key: nil)
                guard answer.status == 201,
                      let json = try JSONSerialization.jsonObject(with: answer.body) as? [String: Any],
                      let id = (json["id"] as? String).map(MemberID.init) else {
                    throw BenchFailure("enrolment answered \(answer.status): \(String(decoding: answer.body, as: UTF8.self))")
                }
                ids.append(id)
                continue
            }
            let member = ids[Int(rng.next() % UInt64(ids.count))]
            if i % 10 == 5 {
                let answer = try node.recharge(member, NodeAPI.Recharge(amount: 5000), key: nil)
                guard answer.status == 201 else { throw BenchFailure("recharge answered \(answer.status)") }
            } else {
                let amount = Int64(500 + rng.next() % 20_000)
                guard case .answered(let answer) = try node.beginPurchase(member, NodeAPI.PurchaseRequest(amount: amount), key: nil),
                      answer.status == 201 else { throw BenchFailure("a cash purchase was not answered at once") }
            }
        }
    }

    /// Each store's outbox after its till work, made on replicas in `scratch`.
    func generate(stores: [String], opsPerStore: Int, membersPerStore: Int, scratch: String) throws -> [[TesseraCore.Operation]] {
        let hub = try HubStore(path: hubPath)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        return try stores.enumerated().map { i, store in
            try worked(store, storeIndex: 1000 + i, ops: opsPerStore, members: membersPerStore, hub: hub, scratch: scratch)
                .pendingBatch(limit: opsPerStore + 1)
        }
    }

    /// Fills the hub's log with the stores' till work (pushed in-process, batch by batch, as the
    /// sync loop would).
    func populateHub(stores: [String], opsPerStore: Int, membersPerStore: Int, scratch: String) throws {
        let hub = try HubStore(path: hubPath)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        for (i, store) in stores.enumerated() {
            let node = try worked(store, storeIndex: 2000 + i, ops: opsPerStore, members: membersPerStore, hub: hub, scratch: scratch)
            while true {
                let batch = try node.pendingBatch(limit: SyncLimits.pushBatchMax)
                if batch.isEmpty { break }
                try node.recordPush(try hub.push(batch, from: node.store))
            }
        }
    }

    /// A store's replica in `scratch`, bootstrapped from the hub, after its till work.
    private func worked(_ store: String, storeIndex: Int, ops: Int, members: Int, hub: HubStore, scratch: String) throws -> NodeStore {
        guard let id = StoreID(rawValue: store) else { throw BenchFailure("bad store id \(store)") }
        let node = try NodeStore(path: (scratch as NSString).appendingPathComponent("\(store).sqlite"), store: id)
        try node.bootstrap(try hub.snapshot(for: id))
        try Chain.tillWork(node, storeIndex: storeIndex, ops: ops, members: members)
        return node
    }
}
