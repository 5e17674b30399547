import Foundation
import TesseraTestSupport
import Testing

@Suite("HTTP contract of node and hub", .serialized)
struct HTTPContractTests {
    @Test("errors are JSON with a status and a code; retries with an Idempotency-Key change nothing")
    func nodeContract() async throws {
        let chain = try await Chain(stores: ["west"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("west")
        let node = chain.node("west")
        let bad = try await HTTP.post(node + "/v1/members", #"{"name":"Ada"}"#)
        #expect(bad.status == 400 && bad.errorCode == "invalid_request")
        #expect(try await HTTP.post(node + "/v1/members", "not json").errorCode == "invalid_request")
        #expect(try await HTTP.get(node + "/v1/members/m-nobody-1").status == 404)
        #expect(try await HTTP.get(node + "/v1/cards/NOPE").errorCode == "not_found")
        let ada = try await HTTP.post(node + "/v1/members", #"{"name":"Ada","phone":"+15550100","birthday":"1990-04-01"}"#, key: "k-enrol")
        let again = try await HTTP.post(node + "/v1/members", #"{"name":"Ada","phone":"+15550100","birthday":"1990-04-01"}"#, key: "k-enrol")
        #expect(ada.status == 201 && again.status == 201 && ada.data == again.data)
        let id = try #require(ada.json["id"] as? String)
        let card = try #require(ada.json["card"] as? String)
        #expect(try await HTTP.post(node + "/v1/members", #"{"name":"Eve","phone":"+15550100"}"#).errorCode == "phone_taken")
        let r1 = try await HTTP.post(node + "/v1/members/\(id)/recharge", #"{"amount":500}"#, key: "k-r")
        let r2 = try await HTTP.post(node + "/v1/members/\(id)/recharge", #"{"amount":500}"#, key: "k-r")
        #expect(r1.data == r2.data)
        #expect(try await HTTP.post(node + "/v1/members/\(id)/recharge", #"{"amount":600}"#, key: "k-r").errorCode == "idempotency_key_reused")
        #expect(try await HTTP.post(node + "/v1/members/\(id)/recharge", #"{"amount":-5}"#).status == 400)
        // A field the request does not take is refused, never applied or dropped.
        let smuggled = try await HTTP.post(node + "/v1/members/\(id)/recharge", #"{"amount":5,"balance":999999}"#)
        #expect(smuggled.status == 400 && smuggled.errorCode == "invalid_request" && smuggled.text.contains("balance"))
        let misspelt = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":5,"redeem_point":5}"#)
        #expect(misspelt.status == 400 && misspelt.text.contains("redeem_point"))
        #expect(try await HTTP.get(node + "/v1/members/\(id)").json["balance"] as? Int == 500)
        let patched = try await HTTP.call("PATCH", node + "/v1/members/\(id)", json: #"{"name":"Ada Lovelace"}"#)
        #expect(patched.json["name"] as? String == "Ada Lovelace")
        #expect(try await HTTP.get(node + "/v1/members?phone=%2B15550100").json["id"] as? String == id)
        #expect(try await HTTP.get(node + "/v1/cards/\(card)").json["id"] as? String == id)
        #expect(try await HTTP.post(node + "/v1/cards/\(card)/block").status == 200)
        #expect(try await HTTP.get(node + "/v1/cards/\(card)").errorCode == "card_blocked")
        let replacement = try await HTTP.post(node + "/v1/members/\(id)/cards")
        #expect(replacement.status == 201)
        let newCard = try #require(replacement.json["card"] as? String)
        #expect(try await HTTP.get(node + "/v1/cards/\(newCard)").json["balance"] as? Int == 500)
        let sale = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":400,"pay_from_balance":true}"#)
        let txn = try #require((sale.json["transaction"] as? [String: Any])?["id"] as? String)
        #expect(try await HTTP.post(node + "/v1/transactions/\(txn)/refund").status == 201)
        #expect(try await HTTP.post(node + "/v1/transactions/\(txn)/refund").errorCode == "already_refunded")
        #expect(try await HTTP.get(node + "/v1/members/\(id)").json["balance"] as? Int == 500)
        let status = try await chain.status("west")
        #expect(status["store"] as? String == "west")
        #expect(status["cursor"] is Int && status["last_sync_at"] != nil)
        #expect(abs(status["clock_skew_ms"] as? Int ?? .max) < 5_000, "same machine, same clock: \(status)")
    }

    @Test("the hub checks tokens, origins and the protocol version", arguments: Backend.all)
    func hubContract(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["p1", "p2"], backend: backend)
        defer { chain.stopAll() }
        let hub = chain.hubURL
        #expect(try await HTTP.get(hub + "/healthz").json["status"] as? String == "ok")
        #expect(try await HTTP.get(hub + "/v1/stores").status == 401)
        #expect(try await HTTP.get(hub + "/v1/stores", token: chain.tokens["p1"]).status == 401) // a store token is not head office's
        #expect(try await HTTP.get(hub + "/v1/stores", token: chain.admin).status == 200)
        let p1 = ["Authorization": "Bearer \(chain.tokens["p1"] ?? "")"]
        let op = #"{"id":"p2:1","hlc":65536000,"kind":"coupon.issued","kind_version":1,"body":{}}"#
        let foreign = try await HTTP.call("POST", hub + "/v1/sync/push", json: #"{"protocol":1,"store":"p1","ops":[\#(op)]}"#, headers: p1)
        #expect(foreign.status == 403 && foreign.errorCode == "origin_mismatch")
        let extra = try await HTTP.call("POST", hub + "/v1/sync/push", json: #"{"protocol":1,"store":"p1","ops":[],"admin":true}"#, headers: p1)
        #expect(extra.status == 400 && extra.errorCode == "invalid_request")
        let envelope = #"{"id":"p1:1","hlc":65536000,"kind":"coupon.issued","kind_version":1,"body":{},"version":7}"#
        let odd = try await HTTP.call("POST", hub + "/v1/sync/push", json: #"{"protocol":1,"store":"p1","ops":[\#(envelope)]}"#, headers: p1)
        #expect(odd.status == 400 && odd.errorCode == "invalid_request")
        let future = try await HTTP.call("POST", hub + "/v1/sync/push", json: #"{"protocol":2,"store":"p1","ops":[]}"#, headers: p1)
        #expect(future.status == 400 && future.errorCode == "unsupported_protocol")
        let noHeader = try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: p1)
        #expect(noHeader.errorCode == "unsupported_protocol")
        var withHeader = p1
        withHeader["Tessera-Protocol"] = "1"
        #expect(try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: withHeader).status == 200)
        #expect(try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: ["Tessera-Protocol": "1"]).status == 401)
        // Snapshots: whole, or in pages; a limit that is not a number, or a page token the hub
        // never gave, is refused (found by the API fuzzer).
        #expect(try await HTTP.call("GET", hub + "/v1/sync/snapshot", headers: withHeader).status == 200)
        let firstPage = try await HTTP.call("GET", hub + "/v1/sync/snapshot?page=first&limit=1", headers: withHeader)
        #expect(firstPage.status == 200 && firstPage.json["cursor"] is Int)
        #expect(try await HTTP.call("GET", hub + "/v1/sync/snapshot?limit=null", headers: withHeader).errorCode == "invalid_request")
        #expect(try await HTTP.call("GET", hub + "/v1/sync/snapshot?page=bogus", headers: withHeader).errorCode == "invalid_request")

        // Roles: a reporter reads, never changes; an admin sees the audit trail of it all.
        let reporter = try chain.ws.lastLine(["admin", "token", "--role", "reporter", "--label", "dashboard"] + chain.hubStorage)
        #expect(try await HTTP.get(hub + "/v1/stores", token: reporter).status == 200)
        let denied = try await HTTP.call("PUT", hub + "/v1/rules", json: #"{"version":1,"name":"x"}"#, headers: ["Authorization": "Bearer \(reporter)"])
        #expect(denied.status == 403 && denied.errorCode == "forbidden")
        #expect(try await HTTP.get(hub + "/v1/audit", token: reporter).status == 403)
        let audit = try await HTTP.get(hub + "/v1/audit", token: chain.admin)
        let actions = ((audit.json["audit"] as? [[String: Any]]) ?? []).compactMap { $0["action"] as? String }
        #expect(actions.contains("auth.failed") && actions.contains("auth.forbidden") && actions.contains("admin_token.issued"))
        #expect(!audit.text.contains(reporter) && !audit.text.contains(chain.tokens["p1"] ?? "-"))

        // A revoked store is refused at once; a rotated token replaces the old one.
        _ = try chain.ws.run(["store", "revoke", "p1"] + chain.hubStorage)
        #expect(try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: withHeader).status == 401)
        let rotated = try chain.ws.lastLine(["store", "rotate-token", "p1"] + chain.hubStorage)
        #expect(try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: withHeader).status == 401)
        #expect(try await HTTP.call("GET", hub + "/v1/sync/pull?after=0", headers: ["Authorization": "Bearer \(rotated)", "Tessera-Protocol": "1"]).status == 200)
    }

    @Test("a client over its rate gets 429 with Retry-After, at the hub and at a node; a flood without credentials never slows a store")
    func rateLimits() async throws {
        let ws = try Workspace()
        let token = try ws.lastLine(["store", "add", "r1", "--name", "R1", "--data", ws.path("hub")])
        let hub = try ws.start("hub", ["hub", "--data", ws.path("hub"), "--listen", "127.0.0.1:0", "--rate-limit", "2"])
        defer { hub.kill9() }
        let url = try await hub.url()
        var limited: HTTP.Answer?
        for _ in 0..<10 {
            let answer = try await HTTP.get(url + "/v1/stores", token: "tsa_guessing")
            if answer.status == 429 { limited = answer; break }
            #expect(answer.status == 401)
        }
        let refused = try #require(limited, "ten quick requests at 2 a second (burst 4) must be limited")
        #expect(refused.errorCode == "rate_limited")
        #expect(Int(refused.headers["Retry-After"] ?? "") ?? 0 >= 1)
        // The store's own allowance is untouched by the anonymous flood.
        let pull = try await HTTP.call("GET", url + "/v1/sync/pull?after=0", headers: ["Authorization": "Bearer \(token)", "Tessera-Protocol": "1"])
        #expect(pull.status == 200)

        // A node's tills share one allowance (2,000 a second by default), set by `--rate-limit`.
        let node = try ws.start("r1", ["node", "--data", ws.path("node"), "--store", "r1", "--hub", url, "--token", token,
                                       "--listen", "127.0.0.1:0", "--rate-limit", "2"])
        defer { node.kill9() }
        let nodeURL = try await node.url()
        var tillLimited: HTTP.Answer?
        for _ in 0..<10 {
            let answer = try await HTTP.get(nodeURL + "/v1/members/m-nobody")
            if answer.status == 429 { tillLimited = answer; break }
        }
        let tillRefused = try #require(tillLimited, "ten quick till requests at 2 a second (burst 4) must be limited")
        #expect(tillRefused.errorCode == "rate_limited")
        #expect(Int(tillRefused.headers["Retry-After"] ?? "") ?? 0 >= 1)
        let zero = try runToEnd(Binary.path, ["node", "--data", ws.path("node-0"), "--store", "r1", "--hub", url, "--token", token,
                                              "--rate-limit", "0"])
        #expect(zero.status != 0)
    }

    @Test("`tessera up` starts a hub and two nodes under one folder, and Ctrl-C stops them all")
    func up() async throws {
        let ws = try Workspace()
        let port = try freePorts(3)
        let up = try ws.start("up", ["up", "--dir", ws.path(".tessera"), "--port", String(port)])
        // The three servers start together, in no fixed order: wait for the hub's line too.
        _ = try await up.url(label: "node store-2 listening on")
        _ = try await up.url(label: "hub listening on")
        #expect(try await HTTP.get("http://127.0.0.1:\(port)/healthz").status == 200)
        try await eventually("both nodes have loaded the chain") {
            let a = try await HTTP.get("http://127.0.0.1:\(port + 1)/v1/status").json["bootstrapped"] as? Bool
            let b = try await HTTP.get("http://127.0.0.1:\(port + 2)/v1/status").json["bootstrapped"] as? Bool
            return a == true && b == true
        }
        #expect(up.output.contains("head-office token"))
        up.interrupt()
        #expect(await up.waitForExit(timeout: 15))
    }
}
