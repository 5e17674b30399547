import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import TesseraCore
import TesseraHTTP
import TesseraProtocol
import TesseraStorage

/// Head office's dashboard: server-rendered HTML pages with small SVG charts drawn here (no
/// scripts, no external assets), showing the numbers the JSON API reports, from the same calls.
///
/// Login: a head-office token (admin or reporter) typed once into a form; the browser keeps it
/// in an HttpOnly, SameSite=Strict cookie and every page checks it with the hub's storage, so
/// any hub process serves any page and a revoked token is refused at once. A one-time login
/// link (`POST /v1/dashboard/links`, an admin token) signs a browser in without typing, for
/// kiosks and the tests' headless browser; the link works once, within a minute, on the hub
/// process that made it.
enum Dashboard {
    static let cookie = "tessera_dashboard"

    static func register(_ router: Router<BasicRequestContext>, storage: any HubStorage) {
        let links = LoginLinks()
        router.get("/dashboard/login") { request, _ in
            page("Sign in", nil, loginForm(error: request.query("failed") != nil ? "That token is not a live head-office token." : nil))
        }
        router.post("/dashboard/login") { request, _ in
            let body = try await request.body.collect(upTo: 4096)
            let form = formFields(String(buffer: body))
            guard let token = form["token"], !token.isEmpty,
                  try await HubApplication.offload({ try storage.authenticateAdmin(token: token) }) != nil else {
                return redirect("/dashboard/login?failed=1")
            }
            return signedIn(token, request)
        }
        router.get("/dashboard/login/link/{code}") { request, context in
            let code = try context.parameters.require("code")
            guard let token = links.use(code), try await HubApplication.offload({ try storage.authenticateAdmin(token: token) }) != nil else {
                return redirect("/dashboard/login?failed=1")
            }
            return signedIn(token, request)
        }
        router.post("/dashboard/logout") { _, _ in
            var response = redirect("/dashboard/login")
            response.headers[.setCookie] = "\(cookie)=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        router.post("/v1/dashboard/links") { request, _ in
            guard let token = request.bearerToken,
                  let office = try await HubApplication.offload({ try storage.authenticateAdmin(token: token) }), office.role == .admin else {
                throw DomainError(.unauthorized, "an admin head-office token is required (Authorization: Bearer ...)")
            }
            return try JSONBody.response(["path": "/dashboard/login/link/" + links.make(token)], status: .created)
        }

        let pages = router.group("/dashboard")
        router.get("/dashboard") { request, _ in
            try await signed(request, storage) { office in
                // Counted, not a view made of each (at a million members that took minutes).
                let members = try storage.memberCount()
                let owes = try storage.liabilities(asOf: nil)
                let stores = try storage.stores()
                let settlement = try storage.settlement(period: nil)
                // The last 14 local days' sales, from the store days kept as operations arrive. (Member
                // activity needs a pass over every member, seconds at a million: it has the segments page.)
                let calendar = try storage.currentRules().calendar
                let today = calendar.day(ms: Int64(Date().timeIntervalSince1970 * 1000))
                var sold: [String: Int64] = [:]
                for day in try storage.storeActivity(from: today.adding(days: -13), through: today, store: nil).days { sold[day.day, default: 0] += day.sold }
                let exceptions = try storage.exceptions(limit: 10_000)
                var html = "<section class=cards>"
                html += card("Members", "\(members)", id: "members")
                html += card("Stored value held", money(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus), id: "held")
                html += card("Points outstanding", "\(owes.points)", id: "points")
                html += card("Stores online in the last minute", "\(stores.filter { recent($0.lastSyncAt) }.count) of \(stores.count)", id: "online")
                html += card("Exceptions", "\(exceptions.count)", id: "exceptions")
                html += "</section>"
                html += "<h2>Stored value by issuing store</h2>" + bars(owes.stores.map { ($0.store, $0.principal + $0.bonus) }, money: true)
                html += "<h2>Settlement, period \(settlement.period) (open)</h2>" + settlementTable(settlement)
                html += "<h2 id=sales>Sales, last 14 days</h2>" + bars((-13...0).map { today.adding(days: Int64($0)).iso }.map { ($0, sold[$0] ?? 0) }, money: true)
                html += "<p>Members by activity (excited, active, inert, dormant): <a href=\"/dashboard/segments?name=activity\">segments</a>.</p>"
                return page("Chain overview", office, html)
            }
        }
        pages.get("/stores") { request, _ in
            try await signed(request, storage) { office in
                let stores = try storage.stores()
                var html = "<table><tr><th>Store</th><th>Name</th><th>Last contact</th><th>Cursor</th><th>Behind</th><th>Pending</th><th>Operations</th></tr>"
                for s in stores {
                    html += "<tr><td>\(e(s.id.rawValue))</td><td>\(e(s.name))</td><td>\(e(s.lastSyncAt ?? "never"))</td><td class=n>\(s.cursor)</td>"
                    html += "<td class=n>\(s.head - s.cursor)</td><td class=n>\(s.pending.map(String.init) ?? "")</td><td class=n>\(s.opsAccepted)</td></tr>"
                }
                return page("Stores", office, html + "</table>" + "<h2>Operations accepted</h2>" + bars(stores.map { ($0.id.rawValue, $0.opsAccepted) }))
            }
        }
        pages.get("/liabilities") { request, _ in
            try await signed(request, storage) { office in
                let owes = try storage.liabilities(asOf: nil)
                var html = "<section class=cards>" + card("Principal", money(owes.principal), id: "principal") + card("Bonus", money(owes.bonus), id: "bonus")
                html += card("Spent beyond balances", money(owes.owedPrincipal + owes.owedBonus), id: "owed")
                html += card("Points (cash value)", "\(owes.points) (\(money(owes.pointsCashValue)))", id: "points") + "</section>"
                html += "<table><tr><th>Store</th><th>Principal</th><th>Bonus</th><th>Owed principal</th><th>Owed bonus</th></tr>"
                for s in owes.stores {
                    html += "<tr><td>\(e(s.store))</td><td class=n>\(money(s.principal))</td><td class=n>\(money(s.bonus))</td>"
                    html += "<td class=n>\(money(s.owedPrincipal))</td><td class=n>\(money(s.owedBonus))</td></tr>"
                }
                return page("Liabilities", office, html + "</table>" + bars(owes.stores.map { ($0.store, $0.principal + $0.bonus) }, money: true))
            }
        }
        pages.get("/settlement") { request, _ in
            let period = try request.integerQuery("period").map { Int(clamping: $0) }
            return try await signed(request, storage) { office in
                let report = try storage.settlement(period: period)
                var html = "<p>Period \(report.period), log versions \(report.after + 1) to \(report.through), \(report.closed ? "closed" : "open").</p>"
                html += settlementTable(report)
                html += "<h2>Net per store (positive: receives)</h2>" + bars(report.stores.map { ($0.store, $0.netPrincipal + $0.netBonus) }, money: true)
                if report.period > 1 { html += "<p><a href=\"/dashboard/settlement?period=\(report.period - 1)\">Previous period</a></p>" }
                return page("Settlement", office, html)
            }
        }
        pages.get("/settlement/flows") { request, _ in
            let period = try request.integerQuery("period").map { Int(clamping: $0) }
            let issuer = request.query("issuer"), spender = request.query("spender")
            return try await signed(request, storage) { office in
                let report = try storage.settlementFlows(period: period, issuer: issuer, spender: spender, limit: 500)
                var html = "<p>Period \(report.period): \(e(issuer ?? "any store"))'s value spent at \(e(spender ?? "any store")). "
                html += "Each line is a load (the operation that brought the value in) paying for a spend; a negative amount undoes one (a refund, a reversal).</p>"
                html += "<table><tr><th>Log version</th><th>Currency</th><th>Load</th><th>Spend</th><th>Member</th><th>Amount</th></tr>"
                for f in report.flows {
                    html += "<tr><td class=n>\(f.version)</td><td>\(f.currency.rawValue)</td><td>\(e(f.load)) (\(e(f.issuer)))</td><td>\(e(f.spend)) (\(e(f.spender)))</td>"
                    html += "<td><a href=\"/dashboard/members?id=\(e(query(f.member.rawValue)))\">\(e(f.member.rawValue))</a></td><td class=n>\(money(f.amount))</td></tr>"
                }
                html += "</table>"
                if report.more { html += "<p>The first 500 flows; all of them from <code>GET /v1/reports/settlement/flows?format=csv</code>.</p>" }
                return page("Settlement flows", office, html + "<p><a href=\"/dashboard/settlement?period=\(report.period)\">Back to the period</a></p>")
            }
        }
        pages.get("/segments") { request, _ in
            let name = request.query("name") ?? "dormant"
            let parameters = try HubApplication.segmentParameters(request)
            return try await signed(request, storage) { office in
                let report = try storage.segment(name, parameters)
                var html = "<nav class=tabs>" + Segments.names.map { "<a href=\"/dashboard/segments?name=\($0)\($0 == "birthdays" ? "&amp;month=1" : "")\">\($0)</a>" }.joined(separator: " ") + "</nav>"
                html += bars(report.counts.sorted { $0.key < $1.key }.map { ($0.key, Int64($0.value)) })
                html += "<p><a href=\"/v1/reports/segments/\(e(name))?format=csv\">CSV</a> (with a head-office token)</p>"
                html += "<table><tr><th>Member</th><th>Name</th><th>Phone</th><th>Band</th><th>Figure</th></tr>"
                for m in report.members.prefix(500) {
                    html += "<tr><td><a href=\"/dashboard/members?id=\(e(m.member.rawValue))\">\(e(m.member.rawValue))</a></td><td>\(e(m.name ?? ""))</td>"
                    html += "<td>\(e(m.phone ?? ""))</td><td>\(e(m.label))</td><td class=n>\(m.figure)</td></tr>"
                }
                return page("Segment: \(name)", office, html + "</table>")
            }
        }
        pages.get("/exceptions") { request, _ in
            try await signed(request, storage) { office in
                let list = try storage.exceptions(limit: 500)
                var html = bars(Dictionary(grouping: list, by: \.kind).map { ($0.key, Int64($0.value.count)) }.sorted { $0.0 < $1.0 })
                html += "<p>\(list.filter { $0.resolution == nil }.count) open; resolve one with POST /v1/exceptions/{id}/resolve (an admin token).</p>"
                html += "<table><tr><th>Id</th><th>When</th><th>Kind</th><th>Member</th><th>Operation</th><th>Detail</th><th>Resolution</th></tr>"
                for x in list {
                    html += "<tr><td class=n>\(x.id)</td><td>\(e(x.at))</td><td>\(e(x.kind))</td><td>\(e(x.member?.rawValue ?? ""))</td><td>\(e(x.op ?? ""))</td>"
                    html += "<td>\(e(x.detail))</td><td>\(x.resolution.map { e($0.note + " (" + $0.by + ")") } ?? "open")</td></tr>"
                }
                return page("Exceptions", office, html + "</table>")
            }
        }
        pages.get("/members") { request, _ in
            let id = request.query("id")?.trimmingCharacters(in: .whitespaces) ?? ""
            return try await signed(request, storage) { office in
                var html = "<form method=get action=/dashboard/members><input name=id placeholder=\"member id\" value=\"\(e(id))\"> <button>Look up</button></form>"
                guard !id.isEmpty else { return page("Member", office, html) }
                guard let view = try storage.member(MemberID(id)) else { return page("Member", office, html + "<p>No member \(e(id)).</p>") }
                let statement = try storage.statement(of: MemberID(id))
                html += "<section class=cards>" + card("Balance", money(view.balance), id: "balance") + card("Points", "\(view.points)", id: "points")
                html += card("Tier", e(view.tier ?? "none"), id: "tier") + "</section>"
                let leases = try storage.memberLeases(MemberID(id))
                if leases.leases || !leases.stores.isEmpty {
                    // Who may spend the member's money offline, and how much (escrow leases).
                    html += "<h2>Leases</h2><table id=leases><tr><th>Held by</th><th>Value</th><th>Points</th><th>Ends</th><th>Asked back</th></tr>"
                    html += "<tr><td>hub</td><td class=n>\(money(leases.hubValue))</td><td class=n>\(leases.hubPoints)</td><td></td><td></td></tr>"
                    for l in leases.stores {
                        html += "<tr><td>\(e(l.store.rawValue))</td><td class=n>\(money(l.value))</td><td class=n>\(l.points)</td><td>\(e(l.endsAt))</td>"
                        html += "<td class=n>\(l.recalledValue > 0 || l.recalledPoints > 0 ? money(l.recalledValue) + " / \(l.recalledPoints)" : "")</td></tr>"
                    }
                    html += "</table><h2>Statement</h2>"
                }
                html += "<table><tr><th>Version</th><th>Time</th><th>Store</th><th>Operation</th><th>Value</th><th>Points</th><th>Balance</th><th>Rules</th></tr>"
                for line in statement.lines {
                    html += "<tr><td class=n>\(line.version)</td><td>\(e(line.at))</td><td>\(e(line.store))</td><td>\(e(line.kind)) \(e(line.op))</td>"
                    html += "<td class=n>\(money(line.principal + line.bonus))</td><td class=n>\(line.points)</td><td class=n>\(money(line.balance))</td>"
                    html += "<td class=n>\(line.rulesVersion.map(String.init) ?? "")</td></tr>"
                }
                return page("Member \(view.name ?? id)", office, html + "</table>")
            }
        }
    }

    // MARK: - Sessions

    /// Runs `body` for a signed-in browser (any head-office role); otherwise to the login page.
    static func signed(_ request: Request, _ storage: any HubStorage, _ body: @escaping @Sendable (HeadOffice) throws -> Response) async throws -> Response {
        guard let token = cookieValue(request) else { return redirect("/dashboard/login") }
        return try await HubApplication.offload {
            guard let office = try storage.authenticateAdmin(token: token) else { return redirect("/dashboard/login?failed=1") }
            return try body(office)
        }
    }

    static func cookieValue(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookie + "=") { return String(pair.dropFirst(cookie.count + 1)).removingPercentEncoding }
            }
        }
        return nil
    }

    static func signedIn(_ token: String, _ request: Request) -> Response {
        var response = redirect("/dashboard")
        // Secure when the browser came over HTTPS (the hub's own, or a proxy that says so).
        let secure = request.uri.scheme?.rawValue == "https" || request.headers[HTTPField.Name("X-Forwarded-Proto")!] == "https"
        let value = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? token
        response.headers[.setCookie] = "\(cookie)=\(value); Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200" + (secure ? "; Secure" : "")
        return response
    }

    static func redirect(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    static func formFields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    /// One-time login links: code -> token, for a minute, used once.
    final class LoginLinks: Sendable {
        private let links = Mutex<[String: (token: String, until: Date)]>([:])
        func make(_ token: String) -> String {
            let code = Tokens.make(prefix: "dl_")
            links.withLock { all in
                all = all.filter { $0.value.until > Date() }
                all[code] = (token, Date().addingTimeInterval(60))
            }
            return code
        }
        func use(_ code: String) -> String? {
            links.withLock { all in
                guard let link = all.removeValue(forKey: code), link.until > Date() else { return nil }
                return link.token
            }
        }
    }

    // MARK: - HTML

    /// A value for a URL's query (store and member ids are plain, but nothing is assumed).
    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.:"))) ?? text
    }

    static func e(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    static func money(_ minor: Int64) -> String { MinorUnits.text(minor) }

    static func recent(_ iso: String?) -> Bool {
        guard let iso, let date = try? Date(iso, strategy: .iso8601) else { return false }
        return Date().timeIntervalSince(date) < 60
    }

    static func card(_ title: String, _ value: String, id: String) -> String {
        "<div class=card><div class=t>\(e(title))</div><div class=v id=\"\(id)\">\(value)</div></div>"
    }

    static func settlementTable(_ report: HubAPI.SettlementReport) -> String {
        guard !report.pairs.isEmpty else { return "<p>No value crossed between stores in this period.</p>" }
        var html = "<table><tr><th>Issuing store (pays)</th><th>Spending store (receives)</th><th>Principal</th><th>Bonus</th><th>Flows</th></tr>"
        for p in report.pairs {
            let behind = "/dashboard/settlement/flows?period=\(report.period)&amp;issuer=\(e(query(p.issuer)))&amp;spender=\(e(query(p.spender)))"
            html += "<tr><td>\(e(p.issuer))</td><td>\(e(p.spender))</td><td class=n>\(money(p.principal))</td><td class=n>\(money(p.bonus))</td>"
            html += "<td class=n><a href=\"\(behind)\">\(p.flows)</a></td></tr>"
        }
        return html + "</table>"
    }

    /// A horizontal bar chart as inline SVG (negative values drawn to the left of the axis).
    static func bars(_ data: [(String, Int64)], money asMoney: Bool = false) -> String {
        guard !data.isEmpty else { return "<p>Nothing yet.</p>" }
        let width = 640, row = 26, label = 150, maxBar = width - label - 120
        let biggest = max(1, data.map { $0.1.magnitude }.max() ?? 1)
        var svg = "<svg class=chart role=img width=\"\(width)\" height=\"\(data.count * row + 8)\" viewBox=\"0 0 \(width) \(data.count * row + 8)\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, (name, value)) in data.enumerated() {
            let y = i * row + 4
            let length = Int(value.magnitude * UInt64(maxBar) / biggest)
            svg += "<text x=\"\(label - 8)\" y=\"\(y + 17)\" text-anchor=\"end\">\(e(name))</text>"
            svg += "<rect x=\"\(label)\" y=\"\(y + 4)\" width=\"\(max(1, length))\" height=\"\(row - 8)\" class=\"\(value < 0 ? "neg" : "pos")\"/>"
            svg += "<text x=\"\(label + length + 6)\" y=\"\(y + 17)\">\(asMoney ? money(value) : String(value))</text>"
        }
        return svg + "</svg>"
    }

    static func loginForm(error: String?) -> String {
        (error.map { "<p class=error>\(e($0))</p>" } ?? "")
            + "<form method=post action=/dashboard/login><label>Head-office token <input type=password name=token autocomplete=off required></label> <button>Sign in</button></form>"
            + "<p>A token comes from <code>tessera admin token</code> (a reporter token reads only).</p>"
    }

    static func page(_ title: String, _ office: HeadOffice?, _ body: String) -> Response {
        let nav = office == nil ? "" : """
            <nav><a href="/dashboard">Overview</a> <a href="/dashboard/stores">Stores</a> <a href="/dashboard/liabilities">Liabilities</a> \
            <a href="/dashboard/settlement">Settlement</a> <a href="/dashboard/segments">Segments</a> <a href="/dashboard/exceptions">Exceptions</a> \
            <a href="/dashboard/members">Members</a> <form method=post action=/dashboard/logout class=out><button>Sign out</button></form></nav>
            """
        let html = """
            <!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
            <title>\(e(title)) · Tessera</title><style>
            body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
            header{background:#1d2430;color:#fff;padding:10px 16px}header b{font-size:17px}
            nav{display:flex;flex-wrap:wrap;gap:12px;padding:8px 16px;background:#e6e9ee;align-items:center}nav a{color:#1d2430}
            nav .out{margin-left:auto}main{padding:12px 16px;max-width:1100px}
            .cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:10px 14px;min-width:160px}
            .card .t{font-size:12px;color:#5a6473}.card .v{font-size:22px;font-weight:600}
            table{border-collapse:collapse;background:#fff;margin:8px 0;width:100%;max-width:1100px}
            th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
            .chart text{font-size:12px;fill:#1d2430}.chart .pos{fill:#3b6fb6}.chart .neg{fill:#c0504d}.error{color:#c0504d}
            .tabs a{margin-right:8px}
            </style></head><body><header><b>Tessera</b> · head office\(office.map { " · " + e($0.id) + " (" + $0.role.rawValue + ")" } ?? "")</header>
            \(nav)<main><h1>\(e(title))</h1>\(body)</main></body></html>
            """
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}
