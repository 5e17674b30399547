import Foundation
import TesseraTestSupport
import Testing

/// The programme on a real chain: rules published with the CLI and the HTTP API, a node that
/// is cut off keeping the version it has until it syncs.
@Suite("The programme on a real chain", .serialized)
struct ProgrammeChainTests {
    static func rules(version: Int, pointsPer100: Int) -> String {
        """
        {"version": \(version), "name": "Test programme v\(version)", "time_zone": "UTC",
         "earning": {"points": \(pointsPer100), "per_minor": 100},
         "redemption": {"points": 100, "minor": 100, "max_share_percent": 50},
         "coupons": [{"id": "welcome", "name": "Welcome", "value_minor": 1000, "min_spend_minor": 5000, "valid_days": 30, "issue_on": "signup"}]}
        """
    }

    func receipt(_ answer: HTTP.Answer) -> [String: Any] {
        ((answer.json["transaction"] as? [String: Any])?["receipt"] as? [String: Any]) ?? [:]
    }

    @Test("rules published at the hub reach the node; a node cut off keeps its version until it syncs; receipts never change", arguments: Backend.all)
    func offlineNodeKeepsItsVersion(_ backend: Backend) async throws {
        let chain = try await Chain(stores: ["north"], backend: backend)
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("north")
        let node = chain.node("north")

        let v1 = chain.ws.path("rules-v1.json"), v2 = chain.ws.path("rules-v2.json")
        try Self.rules(version: 1, pointsPer100: 1).write(toFile: v1, atomically: true, encoding: .utf8)
        try Self.rules(version: 2, pointsPer100: 2).write(toFile: v2, atomically: true, encoding: .utf8)
        #expect(try chain.ws.run(["rules", "check", v1]).contains("valid, version 1"))
        #expect(try chain.ws.lastLine(["rules", "apply", v1, "--hub", chain.hubURL, "--token", chain.admin]).contains("published rules version 1"))
        try await eventually("north prices under version 1") { try await HTTP.get(node + "/v1/rules").json["version"] as? Int == 1 }

        let ada = try await HTTP.post(node + "/v1/members", #"{"name":"Ada","phone":"+15550100"}"#)
        let id = try #require(ada.json["id"] as? String)
        let welcome = try #require(((ada.json["coupons"] as? [[String: Any]])?.first)?["id"] as? String)

        // Quote, then commit exactly the quote (with the coupon).
        let quote = try await HTTP.post(node + "/v1/members/\(id)/quote", #"{"amount":6000,"coupon":"\#(welcome)"}"#)
        #expect(quote.status == 200 && quote.json["cash_due"] as? Int == 5000)
        let token = try #require(quote.json["quote"] as? String)
        let first = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":6000,"coupon":"\#(welcome)","quote":"\#(token)"}"#)
        #expect(first.status == 201, "\(first.text)")
        #expect(receipt(first)["rules_version"] as? Int == 1 && receipt(first)["points_earned"] as? Int == 50)
        #expect((first.json["transaction"] as? [String: Any])?["cash"] as? Int == 5000)
        let stale = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":6000,"quote":"\#(token)"}"#)
        #expect(stale.status == 409 && stale.errorCode == "quote_changed", "a quote for other terms is not this sale's")
        try await chain.waitSynced(["north"])

        // The hub goes away; head office publishes version 2 straight into its data folder.
        chain.killHub()
        #expect(try chain.ws.lastLine(["rules", "apply", v2, ] + chain.hubStorage).contains("published rules version 2"))
        let offline = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":10000}"#)
        #expect(offline.status == 201)
        #expect(receipt(offline)["rules_version"] as? Int == 1 && receipt(offline)["points_earned"] as? Int == 100)
        #expect(try await HTTP.get(node + "/v1/rules").json["version"] as? Int == 1)

        try await chain.startHub()
        try await eventually("north prices under version 2 once it has synced") { try await HTTP.get(node + "/v1/rules").json["version"] as? Int == 2 }
        let online = try await HTTP.post(node + "/v1/members/\(id)/purchase", #"{"amount":10000}"#)
        #expect(receipt(online)["rules_version"] as? Int == 2 && receipt(online)["points_earned"] as? Int == 200)
        try await chain.waitSynced(["north"])
        try await eventually("hub and node agree, and the version-1 sales kept their points") {
            let atHub = try await chain.hubMember(id).json
            let atNode = try await HTTP.get(node + "/v1/members/\(id)").json
            return atHub["points"] as? Int == 350 && atHub as NSDictionary == atNode as NSDictionary
        }

        // Refunds over HTTP: half of the last sale, then the rest; a refund is not refundable.
        let sale = try #require((online.json["transaction"] as? [String: Any])?["id"] as? String)
        let half = try await HTTP.post(node + "/v1/transactions/\(sale)/refund", #"{"amount":5000}"#)
        #expect(half.status == 201 && (half.json["transaction"] as? [String: Any])?["points_change"] as? Int == -100)
        let rest = try await HTTP.post(node + "/v1/transactions/\(sale)/refund")
        #expect(rest.status == 201 && (rest.json["transaction"] as? [String: Any])?["points_change"] as? Int == -100)
        let again = try await HTTP.post(node + "/v1/transactions/\(sale)/refund")
        #expect(again.status == 409 && again.errorCode == "already_refunded")
        let refundID = try #require((half.json["transaction"] as? [String: Any])?["id"] as? String)
        let ofRefund = try await HTTP.post(node + "/v1/transactions/\(refundID)/refund")
        #expect(ofRefund.status == 409 && ofRefund.errorCode == "not_refundable")

        // The head-office API: publish, refuse, run the jobs.
        let bad = try await HTTP.call("PUT", chain.hubURL + "/v1/rules", json: #"{"version":3,"name":"x","tiers":{"levels":[]}}"#,
                                      headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(bad.status == 422 && bad.errorCode == "invalid_rules" && bad.text.contains("tiers.levels"))
        let anonymous = try await HTTP.call("PUT", chain.hubURL + "/v1/rules", json: Self.rules(version: 3, pointsPer100: 3))
        #expect(anonymous.status == 401)
        let published = try await HTTP.call("PUT", chain.hubURL + "/v1/rules", json: Self.rules(version: 3, pointsPer100: 3),
                                            headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(published.status == 201 && published.json["version"] as? Int == 3)
        let conflict = try await HTTP.call("PUT", chain.hubURL + "/v1/rules", json: Self.rules(version: 3, pointsPer100: 3),
                                           headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(conflict.status == 409 && conflict.errorCode == "rules_version_conflict")
        let jobs = try await HTTP.call("POST", chain.hubURL + "/v1/jobs/run", headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(jobs.status == 200 && jobs.json["rules_version"] as? Int == 3)
        try await eventually("north prices under version 3") { try await HTTP.get(node + "/v1/rules").json["version"] as? Int == 3 }
    }
}

@Suite("Head office's reports over HTTP", .serialized)
struct ReportsHTTPTests {
    @Test("settlement and liabilities: JSON and CSV give the same numbers; a reporter reads, only an admin closes a period",
          arguments: Backend.all)
    func reports(_ backend: Backend) async throws {
        // Value loaded at d1 and 1,200 of it spent at d2 (the dashboard's tests use the same chain).
        let (chain, id) = try await DashboardTests.chainWithActivity(backend)
        defer { chain.stopAll() }

        let hub = chain.hubURL
        let settlement = try await HTTP.get(hub + "/v1/reports/settlement", token: chain.admin)
        #expect(settlement.status == 200)
        let pairs = try #require(settlement.json["pairs"] as? [[String: Any]])
        #expect(pairs.count == 1 && pairs.first?["issuer"] as? String == "d1" && pairs.first?["spender"] as? String == "d2")
        #expect(pairs.first.map { ($0["principal"] as? Int ?? 0) + ($0["bonus"] as? Int ?? 0) } == 1200)
        let csv = try await HTTP.get(hub + "/v1/reports/settlement?format=csv", token: chain.admin)
        #expect(csv.headers.first { $0.key.lowercased() == "content-type" }?.value.hasPrefix("text/csv") == true)
        let lines = csv.text.split(separator: "\r\n").map(String.init)
        #expect(lines == ["period,issuer,spender,principal,bonus,flows",
                          "1,d1,d2,\(pairs.first?["principal"] as? Int ?? -1),\(pairs.first?["bonus"] as? Int ?? -1),1"])

        // The flows behind the pair: a d1 load paying for a d2 sale, adding up to the pair.
        let flows = try await HTTP.get(hub + "/v1/reports/settlement/flows?issuer=d1&spender=d2", token: chain.admin)
        let behind = try #require(flows.json["flows"] as? [[String: Any]])
        #expect(behind.reduce(0) { $0 + ($1["amount"] as? Int ?? 0) } == 1200 && flows.json["more"] as? Bool == false)
        #expect(behind.allSatisfy { $0["member"] as? String == id && ($0["spend"] as? String)?.hasPrefix("d2:") == true })
        let flowLines = try await HTTP.get(hub + "/v1/reports/settlement/flows?format=csv", token: chain.admin).text.split(separator: "\r\n")
        #expect(flowLines.first == "period,version,currency,issuer,spender,amount,load,spend,member" && flowLines.count == behind.count + 1)
        #expect(try await HTTP.get(hub + "/v1/reports/settlement/flows?period=9", token: chain.admin).status == 404)
        // A page of nothing is refused (the API fuzzer found limit=0 accepted); a page too large is cut.
        let none = try await HTTP.get(hub + "/v1/reports/settlement/flows?limit=0", token: chain.admin)
        #expect(none.status == 400 && none.errorCode == "invalid_request")
        #expect(try await HTTP.get(hub + "/v1/events?limit=-3", token: chain.admin).errorCode == "invalid_request")
        #expect(try await HTTP.get(hub + "/v1/reports/settlement/flows?limit=999999999", token: chain.admin).status == 200)

        let liabilities = try await HTTP.get(hub + "/v1/reports/liabilities", token: chain.admin)
        #expect(liabilities.json["principal"] as? Int == 3800)
        let liabilityLines = try await HTTP.get(hub + "/v1/reports/liabilities?format=csv", token: chain.admin).text.split(separator: "\r\n")
        #expect(liabilityLines.last == "chain,3800,0,0,0")
        #expect(try await HTTP.get(hub + "/v1/reports/liabilities?format=xml", token: chain.admin).errorCode == "invalid_request")
        #expect(try await HTTP.get(hub + "/v1/reports/liabilities?as_of=2000-01-01", token: chain.admin).json["principal"] as? Int == 0)
        #expect(try await HTTP.get(hub + "/v1/reports/liabilities?as_of=soon", token: chain.admin).errorCode == "invalid_request")
        let unknown = try await HTTP.call("POST", hub + "/v1/exceptions/999999/resolve", json: #"{"note":"n/a"}"#,
                                          headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(unknown.status == 404)

        let statement = try await HTTP.get(hub + "/v1/members/\(id)/statement?format=csv", token: chain.admin)
        #expect(statement.text.split(separator: "\r\n").last?.split(separator: ",", omittingEmptySubsequences: false)[8] == "3800")

        let days = try await HTTP.get(hub + "/v1/reports/stores", token: chain.admin).json["days"] as? [[String: Any]]
        #expect(days?.map { $0["store"] as? String ?? "" } == ["d1", "d2"] && days?.last?["spent_from_balance"] as? Int == 1200)
        #expect(try await HTTP.get(hub + "/v1/reports/stores?from=yesterday", token: chain.admin).errorCode == "invalid_request")
        #expect(try await HTTP.get(hub + "/v1/reports/stores?format=csv&store=d1", token: chain.admin).text.split(separator: "\r\n").count == 2)
        let breakage = try await HTTP.get(hub + "/v1/reports/breakage?untouched_days=1", token: chain.admin)
        #expect(breakage.status == 200 && (breakage.json["members"] as? [Any])?.isEmpty == true)
        let top = try await HTTP.get(hub + "/v1/reports/segments/top", token: chain.admin)
        #expect((top.json["members"] as? [[String: Any]])?.first?["member"] as? String == id && top.json["segment_spend"] as? Int == 1200)
        #expect(try await HTTP.get(hub + "/v1/reports/segments/top?format=csv", token: chain.admin).text.hasPrefix("member,name,phone,label,figure\r\n\(id),Dee,"))
        #expect(try await HTTP.get(hub + "/v1/reports/segments/dormant?bands=0", token: chain.admin).errorCode == "invalid_request")
        #expect(try await HTTP.get(hub + "/v1/reports/segments/nope", token: chain.admin).status == 404)
        let noTemplate = try await HTTP.call("POST", hub + "/v1/reports/segments/top/coupons", json: #"{"template":"none-such"}"#,
                                             headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(noTemplate.status == 404)

        let reporter = try chain.ws.lastLine(["admin", "token", "--role", "reporter"] + chain.hubStorage)
        #expect(try await HTTP.get(hub + "/v1/reports/settlement", token: reporter).status == 200)
        #expect(try await HTTP.call("POST", hub + "/v1/reports/segments/top/coupons", json: #"{"template":"x"}"#,
                                    headers: ["Authorization": "Bearer \(reporter)"]).status == 403)
        let refused = try await HTTP.call("POST", hub + "/v1/reports/settlement/close", headers: ["Authorization": "Bearer \(reporter)"])
        #expect(refused.status == 403)
        let closed = try await HTTP.call("POST", hub + "/v1/reports/settlement/close", headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(closed.status == 201 && closed.json["closed"] as? Bool == true)
        let open = try await HTTP.get(hub + "/v1/reports/settlement", token: chain.admin)
        #expect(open.json["period"] as? Int == 2 && (open.json["pairs"] as? [Any])?.isEmpty == true)
        #expect(try await HTTP.get(hub + "/v1/reports/settlement?period=9", token: chain.admin).status == 404)
    }
}
