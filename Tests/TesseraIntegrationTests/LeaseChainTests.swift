import Foundation
import TesseraTestSupport
import Testing

/// Escrow leases through real `tessera` processes: the sync loop gives leases back, the hub
/// lends them, and a store cut off sells within its lease only.
@Suite("Escrow leases on a real chain", .serialized)
struct LeaseChainTests {
    @Test("with leases, a store cut off from the hub sells within its lease and refuses beyond it; when it is back, nothing is overdrawn",
          arguments: Backend.all)
    func offlineWithinLease(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["north", "south"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("north")
        try await chain.waitBootstrapped("south")
        let rules = chain.ws.path("leased.json")
        try #"{"version": 1, "name": "leased", "leases": {"share_percent": 50, "stores": 2, "hours": 24}}"#
            .write(toFile: rules, atomically: true, encoding: .utf8)
        #expect(try chain.ws.lastLine(["rules", "apply", rules, "--hub", chain.hubURL, "--token", chain.admin]).contains("published rules version 1"))
        for store in ["north", "south"] {
            try await eventually("\(store) prices with leases") { try await HTTP.get(chain.node(store) + "/v1/rules").json["version"] as? Int == 1 }
        }
        let ada = try await HTTP.post(chain.node("north") + "/v1/members", #"{"name":"Ada","phone":"+15550100"}"#)
        let id = try #require(ada.json["id"] as? String)
        #expect(try await HTTP.post(chain.node("north") + "/v1/members/\(id)/recharge", #"{"amount":10000}"#).status == 201)
        // The hub asks north for what is above its target (half) back, and north's sync loop gives it.
        try await eventually("north holds half of the balance, the hub the other half") {
            let leases = try await HTTP.get(chain.hubURL + "/v1/members/\(id)/leases", token: chain.admin).json
            let north = (leases["stores"] as? [[String: Any]])?.first { $0["store"] as? String == "north" }
            return leases["hub_value"] as? Int == 5000 && north?["value"] as? Int == 5000
        }
        try await eventually("north's tills see the same") {
            let allowance = try await HTTP.get(chain.node("north") + "/v1/members/\(id)/offline").json
            return allowance["policy"] as? String == "leases" && allowance["value"] as? Int == 5000
        }
        // Ada shops at south, online: south borrows from the hub, and is lent a lease there.
        try await eventually("south knows Ada") { try await HTTP.get(chain.node("south") + "/v1/members/\(id)").status == 200 }
        let borrowed = try await HTTP.post(chain.node("south") + "/v1/members/\(id)/purchase", #"{"amount":1000,"pay_from_balance":true}"#)
        #expect(borrowed.status == 201 && (borrowed.json["transaction"] as? [String: Any])?["authorization"] as? String == "hub", "\(borrowed.text)")
        var southLease = 0, northLease = 0
        // Settled: south holds a lease, nothing is being asked back, and each store's tills see
        // the lease the hub records for it (read earlier, north's could still shrink to a recall
        // after south's borrow, and a sale of the old amount would then be refused).
        try await eventually("south holds a lease of Ada, and both stores' leases are settled") {
            let leases = try await HTTP.get(chain.hubURL + "/v1/members/\(id)/leases", token: chain.admin).json
            let stores = leases["stores"] as? [[String: Any]] ?? []
            func held(_ store: String) -> (value: Int, recalled: Int)? {
                stores.first { $0["store"] as? String == store }.map { ($0["value"] as? Int ?? -1, $0["recalled_value"] as? Int ?? -1) }
            }
            southLease = try await HTTP.get(chain.node("south") + "/v1/members/\(id)/offline").json["value"] as? Int ?? 0
            northLease = try await HTTP.get(chain.node("north") + "/v1/members/\(id)/offline").json["value"] as? Int ?? 0
            guard southLease > 0, let south = held("south"), let north = held("north") else { return false }
            return south.recalled == 0 && north.recalled == 0 && south.value == southLease && north.value == northLease
        }
        #expect(northLease + southLease <= 9000)

        chain.killHub()
        let beyond = try await HTTP.post(chain.node("north") + "/v1/members/\(id)/purchase", #"{"amount":\#(northLease + 1),"pay_from_balance":true}"#)
        #expect(beyond.status == 402 && beyond.errorCode == "offline_lease_exceeded", "\(beyond.text)")
        let atNorth = try await HTTP.post(chain.node("north") + "/v1/members/\(id)/purchase", #"{"amount":\#(northLease),"pay_from_balance":true}"#)
        // Within its lease, north decides alone, as it does online.
        #expect(atNorth.status == 201 && (atNorth.json["transaction"] as? [String: Any])?["authorization"] as? String == "lease")
        let atSouth = try await HTTP.post(chain.node("south") + "/v1/members/\(id)/purchase", #"{"amount":\#(southLease),"pay_from_balance":true}"#)
        #expect(atSouth.status == 201, "\(atSouth.text)")

        try await chain.startHub()
        try await chain.waitSynced(["north", "south"])
        try await eventually("the hub holds what the tills were told") {
            try await chain.hubMember(id).json["balance"] as? Int == 9000 - northLease - southLease
        }
        let exceptions = try await HTTP.get(chain.hubURL + "/v1/exceptions", token: chain.admin).json["exceptions"] as? [[String: Any]] ?? []
        #expect(!exceptions.contains { $0["kind"] as? String == "overdraft" })
        // Head office sees who holds the member's rights on the member's page.
        let browser = DashboardTests.Browser()
        #expect(try await browser.post(chain.hubURL + "/dashboard/login", form: "token=" + chain.admin).status == 303)
        let page = try await browser.get(chain.hubURL + "/dashboard/members?id=\(id)")
        #expect(page.status == 200 && page.body.contains("<table id=leases>") && page.body.contains("<tr><td>hub</td>"))
    }
}
