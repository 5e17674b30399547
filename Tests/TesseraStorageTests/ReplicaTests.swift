import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

@Suite("SQLite replicas")
struct ReplicaTests {
    @Test("the writer really runs synchronous=FULL in WAL mode, at a node and at the hub")
    func durabilitySettings() throws {
        let dir = try TempDir()
        let node = try NodeStore(path: dir.path("node.sqlite"), store: s1)
        let hub = try HubStore(path: dir.path("hub.sqlite"))
        for pool in [node.pool, hub.pool] {
            #expect(try SQLiteFiles.synchronousMode(pool) == 2)
            #expect(try SQLiteFiles.journalMode(pool) == "wal")
            #expect(try pool.read { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)
        }
    }

    @Test("a node folds each protocol vector to its expected views, whatever order the pages come in", arguments: try Vector.all())
    func vectorsAtANode(_ vector: Vector) throws {
        let dir = try TempDir()
        for (i, order) in [vector.ops, vector.ops.reversed()].enumerated() {
            let node = try NodeStore(path: dir.path("n\(i).sqlite"), store: StoreID(rawValue: "n0")!)
            for (v, op) in order.enumerated() {
                try node.applyPull(PullResponse(ops: [VersionedOperation(version: Int64(v + 1), op: op)], cursor: Int64(v + 1), more: false))
            }
            #expect(try node.allMembers() == vector.expected, "\(vector.name)")
        }
        // Each store's node holds the lease the vector says it holds.
        for (i, lease) in (vector.expectedLeases ?? []).enumerated() {
            let node = try NodeStore(path: dir.path("lease\(i).sqlite"), store: lease.store)
            for (v, op) in vector.ops.reversed().enumerated() {
                try node.applyPull(PullResponse(ops: [VersionedOperation(version: Int64(v + 1), op: op)], cursor: Int64(v + 1), more: false))
            }
            #expect(try node.ownLeases()[lease.member] == Rights(value: lease.value, points: lease.points), "\(vector.name): \(lease)")
        }
    }

    @Test("SQLite and the pure fold agree on random chain logs, in any order, with duplicates")
    func sqliteMatchesPureFold() throws {
        let dir = try TempDir()
        for seed in UInt64(0)..<25 {
            let ops = ChainLog.make(seed: seed, count: 60)
            var rng = SplitMix64(seed: seed &+ 99)
            var delivered = ops + ops.prefix(10)
            delivered.shuffle(using: &rng)
            // Both compute today's standing at one moment, after some lots of the log have ended.
            let now: Int64 = 1_784_000_000_000 // 2026-07-14
            let node = try NodeStore(path: dir.path("seed\(seed).sqlite"), store: StoreID(rawValue: "n0")!, physicalMs: { now })
            var page: [VersionedOperation] = []
            for (v, op) in delivered.enumerated() {
                page.append(VersionedOperation(version: Int64(v + 1), op: op))
                if page.count == 7 || v == delivered.count - 1 {
                    try node.applyPull(PullResponse(ops: page, cursor: Int64(v + 1), more: false))
                    page = []
                }
            }
            let same = try node.allMembers() == ChainState(folding: ops).allViews(asOfMs: now)
            #expect(same, "seed \(seed)")
            #expect(try node.entrySumProblems().isEmpty, "seed \(seed)")
        }
    }

    @Test("a node bootstrapped from a snapshot folds to the same views as the hub, and keeps folding after it", arguments: Backend.all)
    func snapshotBootstrap(_ backend: Backend) throws {
        let dir = try TempDir()
        let hub = try backend.hubWithTwoStores(dir)
        let one = try bootstrappedNode(dir, s1, hub: hub)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 5000), key: nil)
        _ = try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 1200, payFromBalance: true), key: nil), node: one, hub: hub)
        _ = try one.blockCard(try #require(ada.card), key: nil)
        try sync(one, hub)
        let two = try bootstrappedNode(dir, s2, hub: hub)
        #expect(try two.allMembers() == hub.allMembers())
        #expect(try two.member(ada.id).balance == 3800)
        #expect(try two.member(ada.id).points == 12)
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil)
        try sync(one, hub)
        try sync(two, hub)
        #expect(try two.member(ada.id).balance == 3900)
    }

    @Test("a snapshot in pages of any size loads what the whole one does; work arriving between pages is neither lost nor doubled; an interrupted bootstrap starts again",
          arguments: Backend.all)
    func pagedSnapshot(_ backend: Backend) throws {
        let dir = try TempDir()
        let hub = try backend.hubWithTwoStores(dir)
        _ = try hub.publishRules(try Examples.json("fresh-market"))
        let one = try bootstrappedNode(dir, s1, hub: hub)
        var members: [MemberView] = []
        for i in 0..<6 {
            let m = try enrol(one, "P\(i)", "+1555060\(i)")
            _ = try one.recharge(m.id, NodeAPI.Recharge(amount: 1000 + Int64(i) * 500), key: nil)
            _ = try spend(try one.beginPurchase(m.id, NodeAPI.PurchaseRequest(amount: 300, payFromBalance: true), key: nil), node: one, hub: hub)
            members.append(m)
        }
        _ = try one.blockCard(try #require(members[0].card), key: nil)
        try sync(one, hub)

        for pageRows in [1, 3, 7, 10_000] {
            let node = try NodeStore(path: dir.path("paged-\(pageRows).sqlite"), store: s2)
            // An interrupted bootstrap first: two pages loaded, then the process "dies".
            let early = try hub.snapshotPage(for: s2, page: nil, limit: pageRows)
            try node.beginBootstrap(early)
            if let next = early.next { try node.importSnapshotPage(try hub.snapshotPage(for: s2, page: next, limit: pageRows)) }
            #expect(try node.counts().bootstrapped == false)
            // Again from the first page; the chain keeps working while pages are fetched.
            var page = try hub.snapshotPage(for: s2, page: nil, limit: pageRows)
            try node.beginBootstrap(page)
            var pages = 1
            while let next = page.next {
                if pages == 2 {
                    _ = try one.recharge(members[1].id, NodeAPI.Recharge(amount: 77), key: nil)
                    _ = try enrol(one, "Late \(pageRows)", "+1555070\(pageRows % 10)")
                    try sync(one, hub)
                }
                page = try hub.snapshotPage(for: s2, page: next, limit: pageRows)
                try node.importSnapshotPage(page)
                pages += 1
            }
            try node.finishBootstrap()
            try sync(node, hub)
            #expect(try node.allMembers() == hub.allMembers(), "\(pageRows) rows a page")
            #expect(try node.entrySumProblems().isEmpty, "\(pageRows) rows a page")
            #expect(try node.programme().version == 1)
            if pageRows == 1 { #expect(pages > 20) }
        }
        #expect(throws: DomainError.self) { try hub.snapshotPage(for: s2, page: "not-a-token", limit: 10) }
    }

    @Test("a replaced store machine continues its sequence after what the hub holds: no operation id is reused", arguments: Backend.all)
    func replacedMachineKeepsSequence(_ backend: Backend) throws {
        let dir = try TempDir()
        let hub = try backend.hub(dir)
        _ = try hub.addStore(s1, name: "One")
        let first = try bootstrappedNode(dir, s1, hub: hub)
        let ada = try enrol(first, "Ada", "+15550100")
        _ = try first.recharge(ada.id, NodeAPI.Recharge(amount: 700), key: nil)
        try sync(first, hub)
        let replacement = try NodeStore(path: dir.path("replacement.sqlite"), store: s1)
        try replacement.bootstrap(try hub.snapshot(for: s1))
        let answer = try replacement.recharge(ada.id, NodeAPI.Recharge(amount: 300), key: nil)
        let txn = try answer.decode(NodeAPI.TransactionResult.self).transaction
        #expect(txn.id == OperationID(origin: s1, seq: 3))
        try sync(replacement, hub)
        #expect(try hub.member(ada.id)?.balance == 1000)
    }
}
