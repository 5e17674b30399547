import Foundation
import TesseraTestSupport
import Testing
import GRDB
import TesseraCore
import TesseraStorage

/// These start real `tessera` processes on loopback ports, with SQLite files in temporary
/// folders, and cut them off the hard way.
@Suite("A real chain on loopback", .serialized)
struct ChainTests {
    @Test("hub down, both stores keep trading; hub back, every replica converges with nothing lost or doubled", arguments: Backend.all)
    func convergesAfterHubOutage(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["north", "south"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("north")
        try await chain.waitBootstrapped("south")

        let ada = try await HTTP.post(chain.node("north") + "/v1/members", #"{"name":"Ada","phone":"+15550100"}"#)
        #expect(ada.status == 201)
        let adaID = try #require(ada.json["id"] as? String)
        #expect(try await HTTP.post(chain.node("north") + "/v1/members/\(adaID)/recharge", #"{"amount":10000}"#).status == 201)
        try await eventually("south knows Ada's balance") {
            try await HTTP.get(chain.node("south") + "/v1/members/\(adaID)").json["balance"] as? Int == 10000
        }

        chain.killHub()
        // Offline at both stores: spends within the offline limit, and the same phone enrolled twice.
        let n1 = try await HTTP.post(chain.node("north") + "/v1/members/\(adaID)/purchase", #"{"amount":3000,"pay_from_balance":true}"#)
        #expect(n1.status == 201)
        #expect((n1.json["transaction"] as? [String: Any])?["authorization"] as? String == "offline")
        let s1 = try await HTTP.post(chain.node("south") + "/v1/members/\(adaID)/purchase", #"{"amount":2000,"pay_from_balance":true}"#)
        #expect(s1.status == 201)
        let boSouth = try await HTTP.post(chain.node("south") + "/v1/members", #"{"name":"Bo","phone":"+15550200"}"#)
        try await Task.sleep(for: .milliseconds(20))
        let boNorth = try await HTTP.post(chain.node("north") + "/v1/members", #"{"name":"Bo B.","phone":"+1 555 0200"}"#)
        #expect(boSouth.status == 201 && boNorth.status == 201)
        let boS = try #require(boSouth.json["id"] as? String), boN = try #require(boNorth.json["id"] as? String)
        #expect(try await HTTP.post(chain.node("south") + "/v1/members/\(boS)/recharge", #"{"amount":700}"#).status == 201)
        #expect(try await HTTP.post(chain.node("north") + "/v1/members/\(boN)/recharge", #"{"amount":500}"#).status == 201)
        try await eventually("north reports it is offline with operations queued") {
            let s = try await chain.status("north")
            return s["online"] as? Bool == false && s["pending_ops"] as? Int == 3
        }

        try await chain.startHub()
        try await chain.waitSynced(["north", "south"])
        try await eventually("no long work is reported once caught up") { try await chain.status("north")["progress"] == nil }
        try await eventually("every replica shows the merge and the same numbers") {
            for base in [chain.node("north"), chain.node("south")] {
                let ada = try await HTTP.get(base + "/v1/members/\(adaID)").json
                guard ada["balance"] as? Int == 5000, ada["points"] as? Int == 50 else { return false }
                let bo = try await HTTP.get(base + "/v1/members/\(boN)").json
                guard bo["merged_into"] as? String == boS, bo["balance"] as? Int == 1200 else { return false }
            }
            return true
        }
        for id in [adaID, boS, boN] {
            let atHub = try await chain.hubMember(id).json as NSDictionary
            #expect(try await HTTP.get(chain.node("north") + "/v1/members/\(id)").json as NSDictionary == atHub)
            #expect(try await HTTP.get(chain.node("south") + "/v1/members/\(id)").json as NSDictionary == atHub)
        }
        let exceptions = try await HTTP.get(chain.hubURL + "/v1/exceptions", token: chain.admin).json["exceptions"] as? [[String: Any]] ?? []
        #expect(exceptions.contains { $0["kind"] as? String == "merge" })
        let stores = try await HTTP.get(chain.hubURL + "/v1/stores", token: chain.admin).json["stores"] as? [[String: Any]] ?? []
        #expect(Set(stores.compactMap { $0["id"] as? String }) == ["north", "south"])

        // A store that joins now loads the chain from the hub's snapshot file (§6.4): the one
        // the hub made when it started again, before the work above reached it, so the node
        // pulls that work after the file's cursor.
        try await chain.addStore("west")
        try await chain.waitBootstrapped("west")
        #expect(chain.nodeProcess("west")?.errors.contains("bootstrapped from the hub's snapshot file") == true)
        try await eventually("west holds every member as the hub does") {
            for id in [adaID, boS, boN] {
                let atHub = try await chain.hubMember(id).json as NSDictionary
                guard try await HTTP.get(chain.node("west") + "/v1/members/\(id)").json as NSDictionary == atHub else { return false }
            }
            return true
        }
    }

    @Test("a node killed right after telling the till 'success' still has the operation after restart, and syncs it")
    func acknowledgedSurvivesKill() async throws {
        let chain = try await Chain(stores: ["east"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("east")
        chain.killHub() // keep everything pending, so only the node's disk holds it
        let member = try await HTTP.post(chain.node("east") + "/v1/members", #"{"name":"Cy","phone":"+15550300"}"#)
        let id = try #require(member.json["id"] as? String)
        var total = 0
        for i in 1...25 {
            let r = try await HTTP.post(chain.node("east") + "/v1/members/\(id)/recharge", #"{"amount":\#(i * 10)}"#)
            #expect(r.status == 201)
            total += i * 10
        }
        chain.killNode("east") // SIGKILL, straight after the last success answer
        try await chain.startNode("east")
        let after = try await HTTP.get(chain.node("east") + "/v1/members/\(id)").json
        #expect(after["balance"] as? Int == total)
        #expect(try await chain.status("east")["pending_ops"] as? Int == 26)
        try await chain.startHub()
        try await chain.waitSynced(["east"])
        #expect(try await chain.hubMember(id).json["balance"] as? Int == total)
    }

    @Test("online, the hub authorises spends: no overdraft across stores, and a refused spend changes nothing", arguments: Backend.all)
    func onlineAuthorisation(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["a1", "b2"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("a1")
        try await chain.waitBootstrapped("b2")
        let m = try await HTTP.post(chain.node("a1") + "/v1/members", #"{"name":"Di","phone":"+15550400"}"#)
        let id = try #require(m.json["id"] as? String)
        _ = try await HTTP.post(chain.node("a1") + "/v1/members/\(id)/recharge", #"{"amount":1000}"#)
        // Once the recharge is at the hub (b2 may not have pulled it yet: the hub decides, 800 of
        // 1000 is fine). Waiting for a1's push matters: before it, the hub rightly refuses.
        try await chain.waitSynced(["a1"])
        try await eventually("b2 knows the member") { try await HTTP.get(chain.node("b2") + "/v1/members/\(id)").status == 200 }
        let first = try await HTTP.post(chain.node("b2") + "/v1/members/\(id)/purchase", #"{"amount":800,"pay_from_balance":true}"#)
        #expect(first.status == 201)
        #expect((first.json["transaction"] as? [String: Any])?["authorization"] as? String == "hub")
        let second = try await HTTP.post(chain.node("a1") + "/v1/members/\(id)/purchase", #"{"amount":800,"pay_from_balance":true}"#)
        #expect(second.status == 402)
        #expect(second.errorCode == "insufficient_balance")
        try await chain.waitSynced(["a1", "b2"])
        #expect(try await chain.hubMember(id).json["balance"] as? Int == 200)
        try await eventually("a1 shows 200") { try await HTTP.get(chain.node("a1") + "/v1/members/\(id)").json["balance"] as? Int == 200 }
    }

    @Test("on SIGTERM the node finishes its sync round and the hub its requests; both exit 0, and after a restart nothing is missing",
          arguments: Backend.all)
    func gracefulShutdown(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["g1"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("g1")
        for i in 0..<30 {
            let enrolled = try await HTTP.post(chain.node("g1") + "/v1/members", #"{"name":"G \#(i)","phone":"+1555300\#(1000 + i)"}"#)
            #expect(enrolled.status == 201)
        }
        let node = try #require(chain.nodes["g1"]), hub = try #require(chain.hub)
        node.process.terminate()
        #expect(await node.waitForExit(timeout: 20))
        #expect(node.process.terminationStatus == 0)
        hub.process.terminate()
        #expect(await hub.waitForExit(timeout: 20))
        #expect(hub.process.terminationStatus == 0)
        try await chain.startHub()
        try await chain.startNode("g1")
        try await chain.waitSynced(["g1"])
        let members = try await HTTP.get(chain.hubURL + "/v1/members", token: chain.admin)
        #expect((members.json["members"] as? [Any])?.count == 30)
    }
}

@Suite("A hub that never answers", .serialized)
struct HangingHubTests {
    @Test("the till still gets an answer within the authorisation timeout, decided by the offline policy")
    func tillNeverBlocks() async throws {
        let chain = try await Chain(stores: ["mid"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("mid")
        let m = try await HTTP.post(chain.node("mid") + "/v1/members", #"{"name":"Hu","phone":"+15550900"}"#)
        let id = try #require(m.json["id"] as? String)
        _ = try await HTTP.post(chain.node("mid") + "/v1/members/\(id)/recharge", #"{"amount":30000}"#)
        try await chain.waitSynced(["mid"])
        chain.killNode("mid")
        let hole = try BlackHole()
        try await chain.startNode("mid", hub: hole.url)
        let started = Date()
        let allowed = try await HTTP.post(chain.node("mid") + "/v1/members/\(id)/purchase", #"{"amount":15000,"pay_from_balance":true}"#, key: "t1")
        let waited = Date().timeIntervalSince(started)
        #expect(allowed.status == 201)
        #expect((allowed.json["transaction"] as? [String: Any])?["authorization"] as? String == "offline")
        #expect(waited < 8, "the till waited \(waited) s")
        let refused = try await HTTP.post(chain.node("mid") + "/v1/members/\(id)/purchase", #"{"amount":6000,"pay_from_balance":true}"#)
        #expect(refused.status == 402 && refused.errorCode == "offline_limit_exceeded")
        // Back to the real hub: the offline sale and the void of the refused one sync; the hub agrees.
        chain.killNode("mid")
        try await chain.startNode("mid")
        try await chain.waitSynced(["mid"])
        #expect(try await chain.hubMember(id).json["balance"] as? Int == 15000)
    }
}

@Suite("An outbox that cannot get stuck", .serialized)
struct OutboxTests {
    @Test("an operation the hub cannot even read is set aside; the operations behind it still sync", arguments: Backend.all)
    func unreadableOperationIsSetAside(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["q1"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("q1")
        chain.killHub()
        let m = try await HTTP.post(chain.node("q1") + "/v1/members", #"{"name":"Jo","phone":"+15551000"}"#)
        let id = try #require(m.json["id"] as? String)
        chain.killNode("q1")
        // Damage the outbox the way a bug or a bad disk might: one operation the node cannot read
        // back (a negative clock), one the hub refuses to read (a 9 MB body, above its request
        // limit), and one stamped in the year 6429, which must not drag the node's clock along.
        let store = try NodeStore(path: chain.ws.path("node-q1") + "/node.sqlite", store: StoreID(rawValue: "q1")!)
        try await store.pool.write { db in
            try db.execute(sql: """
                INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, status) VALUES ('q1:2', 'q1', 2, -5, 'coupon.issued', 1, '{}', 'pending');
                INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, status) VALUES ('q1:4', 'q1', 4, 9223372036854775807, 'coupon.issued', 1, '{}', 'pending');
                INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, status) VALUES ('q1:3', 'q1', 3, 65536000, 'coupon.issued', 1, '{"blob":"' || printf('%.9000000c', 'x') || '"}', 'pending');
                INSERT INTO meta (key, value) VALUES ('last_seq', '4') ON CONFLICT(key) DO UPDATE SET value = '4';
                """)
        }
        try await chain.startHub()
        try await chain.startNode("q1")
        let recharge = try await HTTP.post(chain.node("q1") + "/v1/members/\(id)/recharge", #"{"amount":400}"#)
        #expect(recharge.status == 201)
        try await eventually("the outbox is empty and both operations are set aside") {
            let s = try await chain.status("q1")
            return s["pending_ops"] as? Int == 0 && s["rejected_ops"] as? Int == 2
        }
        #expect(try await chain.hubMember(id).json["balance"] as? Int == 400)
    }
}
