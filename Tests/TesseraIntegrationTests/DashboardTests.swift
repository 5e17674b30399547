import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TesseraCore
import TesseraProtocol
import TesseraTestSupport

/// Head office's dashboard: pages served by the hub, checked against the JSON API, and (when
/// Chromium is installed) loaded in a real headless browser, a screenshot of each main page
/// kept under .build/artefacts/dashboard.
@Suite("Head office's dashboard", .serialized)
struct DashboardTests {
    /// A browser-like client that does not follow redirects and keeps one cookie.
    final class Browser: @unchecked Sendable {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        var cookie: String?
        deinit { try? client.syncShutdown() }

        func get(_ url: String) async throws -> (status: Int, location: String?, body: String) {
            try await send(HTTPClientRequest(url: url))
        }

        func post(_ url: String, form: String) async throws -> (status: Int, location: String?, body: String) {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form))
            return try await send(request)
        }

        private func send(_ request: HTTPClientRequest) async throws -> (status: Int, location: String?, body: String) {
            var request = request
            if let cookie { request.headers.add(name: "Cookie", value: cookie) }
            let response = try await client.execute(request, timeout: .seconds(20))
            if let set = response.headers.first(name: "Set-Cookie") { cookie = set.split(separator: ";").first.map(String.init) }
            let body = try await response.body.collect(upTo: 8 << 20)
            return (Int(response.status.code), response.headers.first(name: "Location"), String(buffer: body))
        }
    }

    /// A chain where value loaded at d1 was spent at d2.
    static func chainWithActivity(_ backend: Backend) async throws -> (Chain, String) {
        let chain = try await Chain(stores: ["d1", "d2"], backend: backend)
        try await chain.waitBootstrapped("d1")
        try await chain.waitBootstrapped("d2")
        let m = try await HTTP.post(chain.node("d1") + "/v1/members", #"{"name":"Dee","phone":"+15557700"}"#)
        let id = try #require(m.json["id"] as? String)
        #expect(try await HTTP.post(chain.node("d1") + "/v1/members/\(id)/recharge", #"{"amount":5000}"#).status == 201)
        try await chain.waitSynced(["d1"])
        try await eventually("d2 knows the balance") { try await HTTP.get(chain.node("d2") + "/v1/members/\(id)").json["balance"] as? Int == 5000 }
        #expect(try await HTTP.post(chain.node("d2") + "/v1/members/\(id)/purchase", #"{"amount":1200,"pay_from_balance":true}"#).status == 201)
        try await chain.waitSynced(["d2"])
        return (chain, id)
    }

    @Test("sign in with a head-office token; pages show the numbers the JSON API reports; a wrong or revoked token is turned away",
          arguments: Backend.all)
    func pages(_ backend: Backend) async throws {
        let (chain, id) = try await Self.chainWithActivity(backend)
        defer { chain.stopAll() }
        let hub = chain.hubURL, browser = Browser()
        #expect(try await browser.get(hub + "/dashboard").location == "/dashboard/login")
        #expect(try await browser.post(hub + "/dashboard/login", form: "token=tsa_wrong").location == "/dashboard/login?failed=1")
        #expect(browser.cookie == nil)
        let signIn = try await browser.post(hub + "/dashboard/login", form: "token=" + chain.admin)
        #expect(signIn.status == 303 && signIn.location == "/dashboard" && browser.cookie != nil)

        let liabilities = try await HTTP.get(hub + "/v1/reports/liabilities", token: chain.admin).json
        let held = (liabilities["principal"] as? Int ?? 0) + (liabilities["bonus"] as? Int ?? 0)
        #expect(held == 3800)
        let overview = try await browser.get(hub + "/dashboard")
        #expect(overview.status == 200)
        #expect(overview.body.contains(#"id="held">38.00<"#) && overview.body.contains(#"id="members">1<"#))
        #expect(overview.body.contains("<svg") && !overview.body.contains("<script"))
        // Today's sales as the store days report them (a sale of 12.00 at d2), in the last 14 days' chart.
        let days = try #require(try await HTTP.get(hub + "/v1/reports/stores", token: chain.admin).json["days"] as? [[String: Any]])
        let today = try #require(days.compactMap { $0["day"] as? String }.max())
        #expect(days.filter { $0["day"] as? String == today }.reduce(0) { $0 + ($1["sold"] as? Int ?? 0) } == 1200)
        #expect(overview.body.contains("Sales, last 14 days") && overview.body.contains(">\(today)</text>"))
        #expect(overview.body.range(of: ">\(today)</text>")
            .map { overview.body[$0.upperBound...].prefix(300).contains(">12.00</text>") } == true)
        let settlement = try await browser.get(hub + "/dashboard/settlement")
        #expect(settlement.body.contains("<td>d1</td><td>d2</td><td class=n>12.00</td>"))
        let member = try await browser.get(hub + "/dashboard/members?id=\(id)")
        #expect(member.body.contains(#"id="balance">38.00<"#) && member.body.contains("value.recharged") && member.body.contains("purchase"))
        for path in ["/dashboard/stores", "/dashboard/liabilities", "/dashboard/segments?name=top", "/dashboard/exceptions"] {
            #expect(try await browser.get(hub + path).status == 200, "\(path)")
        }
        #expect(try await browser.get(hub + "/dashboard/segments?name=nonsense").status == 404)

        // A reporter reads the dashboard too; once the admin token is revoked its browser is out.
        let reporter = Browser()
        let reporterToken = try chain.ws.lastLine(["admin", "token", "--role", "reporter"] + chain.hubStorage)
        _ = try await reporter.post(hub + "/dashboard/login", form: "token=" + reporterToken)
        #expect(try await reporter.get(hub + "/dashboard/stores").status == 200)
        let adminID = try #require(try chain.ws.run(["admin", "list"] + chain.hubStorage).split(separator: "\n")
            .first { $0.contains("admin") && !$0.contains("revoked") }?.split(separator: " ").first.map(String.init))
        _ = try chain.ws.run(["admin", "revoke", adminID] + chain.hubStorage)
        #expect(try await browser.get(hub + "/dashboard").location?.hasPrefix("/dashboard/login") == true)
    }

    @Test("numbers agree everywhere: after the hub was down and both stores sold offline, the dashboard, the CSV, the JSON API and a fold of the raw log show the same totals",
          arguments: Backend.all)
    func numbersAgreeEverywhere(_ backend: Backend) async throws {
        let (chain, id) = try await Self.chainWithActivity(backend)
        defer { chain.stopAll() }
        let second = try #require(try await HTTP.post(chain.node("d2") + "/v1/members", #"{"name":"Eve","phone":"+15557701"}"#).json["id"] as? String)
        #expect(try await HTTP.post(chain.node("d2") + "/v1/members/\(second)/recharge", #"{"amount":30000}"#).status == 201)
        try await chain.waitSynced(["d2"])
        // d1 must hold Eve's recharge too, not only her enrolment, before it sells from it offline.
        try await eventually("d1 knows Eve's balance") { try await HTTP.get(chain.node("d1") + "/v1/members/\(second)").json["balance"] as? Int == 30_000 }
        // The hub goes down; both stores keep selling from balances, one beyond the limit it knows.
        chain.killHub()
        #expect(try await HTTP.post(chain.node("d1") + "/v1/members/\(second)/purchase", #"{"amount":4500,"pay_from_balance":true}"#).status == 201)
        #expect(try await HTTP.post(chain.node("d2") + "/v1/members/\(id)/purchase", #"{"amount":800,"pay_from_balance":true}"#).status == 201)
        #expect(try await HTTP.post(chain.node("d1") + "/v1/members/\(id)/recharge", #"{"amount":1000}"#).status == 201)
        try await chain.startHub()
        try await chain.waitSynced(["d1", "d2"])

        let hub = chain.hubURL
        let json = try await HTTP.get(hub + "/v1/reports/liabilities", token: chain.admin).json
        let held = (json["principal"] as? Int ?? 0) + (json["bonus"] as? Int ?? 0) - (json["owed_principal"] as? Int ?? 0) - (json["owed_bonus"] as? Int ?? 0)
        let csv = try await HTTP.get(hub + "/v1/reports/liabilities?format=csv", token: chain.admin).text
        let chainLine = try #require(csv.split(separator: "\r\n").last?.split(separator: ",").map { Int($0) ?? 0 })
        #expect(chainLine[1] + chainLine[2] - chainLine[3] - chainLine[4] == held)
        // A fold of the raw log, pulled as a node would.
        var ops: [TesseraCore.Operation] = [], cursor: Int64 = 0
        while true {
            let page = try await HTTP.call("GET", hub + "/v1/sync/pull?after=\(cursor)",
                                           headers: ["Authorization": "Bearer \(chain.tokens["d1"] ?? "")", "Tessera-Protocol": "1"])
            let pulled = try JSONDecoder().decode(PullResponse.self, from: page.data)
            ops += pulled.ops.map(\.op)
            cursor = pulled.cursor
            if !pulled.more { break }
        }
        let folded = ChainState(folding: ops).entries.values.flatMap { $0 }.reduce(Int64(0)) { $0 + $1.entry.value + $1.entry.bonus }
        #expect(Int(folded) == held, "the raw log folds to what the reports say")
        #expect(held == 5_000 - 1_200 - 800 + 1_000 + 30_000 - 4_500)
        // The dashboard, as head office reads it.
        let browser = Browser()
        _ = try await browser.post(hub + "/dashboard/login", form: "token=" + chain.admin)
        let overview = try await browser.get(hub + "/dashboard").body
        #expect(overview.contains(#"id="held">\#(held / 100).\#(String(format: "%02d", held % 100))<"#))
        let settlement = try await HTTP.get(hub + "/v1/reports/settlement", token: chain.admin).json
        let nets = (settlement["stores"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["net_principal"] as? Int ?? 0) + ($1["net_bonus"] as? Int ?? 0) }
        #expect(nets == 0)
        // From the matrix to the flows behind a number, and on to the member.
        let matrix = try await browser.get(hub + "/dashboard/settlement").body
        #expect(matrix.contains("/dashboard/settlement/flows?period=1&amp;issuer=d1&amp;spender=d2"))
        let behind = try await browser.get(hub + "/dashboard/settlement/flows?period=1&issuer=d1&spender=d2").body
        #expect(behind.contains("Settlement flows") && behind.contains("/dashboard/members?id="))
    }

    @Test("GET /metrics on hub and node, in Prometheus's format: requests per route, operations, sync lag, pending work, database sizes")
    func metrics() async throws {
        let (chain, _) = try await Self.chainWithActivity(.sqlite)
        defer { chain.stopAll() }
        let hub = try await HTTP.get(chain.hubURL + "/metrics")
        #expect(hub.headers.first { $0.key.lowercased() == "content-type" }?.value.hasPrefix("text/plain") == true)
        for line in [#"tessera_store_lag_operations{store="d1"}"#, #"tessera_store_seconds_since_sync{store="d2"}"#,
                     #"tessera_operations_total{status="accepted"}"#, #"tessera_authorisations_total{decision="accepted"} 1"#,
                     "tessera_log_head ", "tessera_hub_fold_bytes ", #"http_server_request_duration_bucket{http_route="/v1/sync/push""#] {
            #expect(hub.text.contains(line), "hub metrics: \(line)")
        }
        // And at a glance, from the command line.
        let status = try chain.ws.run(["status", "--hub", chain.hubURL, "--token", chain.admin])
        #expect(status.hasPrefix("STORE") && status.contains("d1  ") && status.contains("d2  "), "\(status)")
        #expect(status.contains("chain: 2 stores, 2 online; stored value held 38.00"), "\(status)")
        #expect(throws: (any Error).self) { try chain.ws.run(["status", "--hub", chain.hubURL, "--token", "tsa_wrong"]) }
        let node = try await HTTP.get(chain.node("d1") + "/metrics").text
        for line in [#"tessera_node_pending_operations{store="d1"} 0"#, #"tessera_node_online{store="d1"} 1"#, #"tessera_node_database_bytes{store="d1"}"#,
                     #"http_server_request_duration_bucket{http_route="/v1/members/{id}/recharge""#] {
            #expect(node.contains(line), "node metrics: \(line)")
        }
    }

    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("in a real headless browser (Chromium): a one-time link signs in, every main page renders, a screenshot of each is kept",
          .enabled(if: chromium != nil, "Chromium is not installed (apt-get install chromium); the browser check is skipped"))
    func inChromium() async throws {
        let (chain, id) = try await Self.chainWithActivity(.sqlite)
        defer { chain.stopAll() }
        let link = try await HTTP.call("POST", chain.hubURL + "/v1/dashboard/links", headers: ["Authorization": "Bearer \(chain.admin)"])
        let path = try #require(link.json["path"] as? String)
        let artefacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/artefacts/dashboard")
        try FileManager.default.createDirectory(at: artefacts, withIntermediateDirectories: true)
        let profile = chain.ws.path("chromium-profile")
        func chromium(_ args: [String]) throws -> String {
            try runToEnd(try #require(Self.chromium), ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                                                      "--window-size=1280,1000", "--user-data-dir=\(profile)"] + args).output
        }
        // The link signs the browser in (a cookie in its profile) and lands on the overview.
        let dom = try chromium(["--dump-dom", chain.hubURL + path])
        #expect(dom.contains(#"id="held">38.00<"#), "the overview after the one-time link: \(dom.prefix(400))")
        #expect(try chromium(["--dump-dom", chain.hubURL + path]).contains("Sign in"), "a link works once")
        for (name, page) in [("overview", "/dashboard"), ("stores", "/dashboard/stores"), ("liabilities", "/dashboard/liabilities"),
                             ("settlement", "/dashboard/settlement"), ("segments", "/dashboard/segments?name=activity"),
                             ("exceptions", "/dashboard/exceptions"), ("member", "/dashboard/members?id=\(id)")] {
            let file = artefacts.appendingPathComponent("\(name).png").path
            try? FileManager.default.removeItem(atPath: file)
            _ = try chromium(["--screenshot=\(file)", chain.hubURL + page])
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            #expect(size > 5_000, "a screenshot of \(page) at \(file)")
        }
        print("dashboard screenshots: \(artefacts.path)")
    }
}
