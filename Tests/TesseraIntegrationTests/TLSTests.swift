import Foundation
import Testing

/// The hub serving HTTPS itself and nodes that verify it: trusting the chain's private CA,
/// pinning the hub's own certificate, and refusing any other (while their tills keep working).
/// The certificates are test fixtures (Tests/Fixtures/tls, valid until 2126, keys for tests only).
@Suite(.serialized) struct TLSTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tls")
    static func file(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    struct TLSChain {
        let ws: Workspace
        let hubURL: String
        let tokens: [String: String]
        let admin: String

        init(certificate: String, key: String, stores: [String]) async throws {
            ws = try Workspace()
            var tokens: [String: String] = [:]
            for store in stores {
                tokens[store] = try ws.lastLine(["store", "add", store, "--name", store, "--data", ws.path("hub")])
            }
            self.tokens = tokens
            admin = try ws.lastLine(["admin", "token", "--data", ws.path("hub")])
            let hub = try ws.start("hub", ["hub", "--data", ws.path("hub"), "--listen", "127.0.0.1:0",
                                           "--tls-cert", TLSTests.file(certificate), "--tls-key", TLSTests.file(key)])
            hubURL = try await hub.url()
        }

        func node(_ store: String, trusting ca: String?, name: String? = nil) async throws -> String {
            var args = ["node", "--data", ws.path("node-\(name ?? store)"), "--store", store, "--hub", hubURL,
                        "--token", tokens[store] ?? "", "--listen", "127.0.0.1:0", "--sync-interval-ms", "100"]
            if let ca { args += ["--hub-ca", TLSTests.file(ca)] }
            return try await ws.start(name ?? store, args).url()
        }
    }

    static func status(_ node: String) async throws -> [String: Any] { try await HTTP.get(node + "/v1/status").json }

    @Test func nodesVerifyTheHubsCertificateAgainstTheChainsCA() async throws {
        let chain = try await TLSChain(certificate: "hub.pem", key: "hub.key", stores: ["north", "south"])
        #expect(chain.hubURL.hasPrefix("https://127.0.0.1:"))

        let north = try await chain.node("north", trusting: "ca.pem")
        // South trusts another CA only: the hub's certificate must be refused.
        let south = try await chain.node("south", trusting: "other.pem")

        let ada = try await HTTP.post(north + "/v1/members", #"{"name":"Ada","phone":"+15550100"}"#)
        #expect(ada.status == 201)
        let id = try #require(ada.json["id"] as? String)
        #expect(try await HTTP.post(north + "/v1/members/\(id)/recharge", #"{"amount":5000}"#, key: "r1").status == 201)
        try await eventually("north has pushed over TLS") {
            let s = try await Self.status(north)
            return s["online"] as? Bool == true && s["pending_ops"] as? Int == 0
        }

        try await eventually("south reports the untrusted certificate") {
            let s = try await Self.status(south)
            return s["online"] as? Bool == false && (s["last_error"] as? String ?? "").contains("certificate")
        }
        // A new node that never reached the hub says why it cannot serve yet, clearly.
        let refused = try await HTTP.post(south + "/v1/members", #"{"name":"Bo","phone":"+15550101"}"#)
        #expect(refused.status == 503 && refused.errorCode == "bootstrapping")

        // Head office publishes over HTTPS with the same trust.
        let rules = chain.ws.path("rules.json")
        try ProgrammeChainTests.rules(version: 1, pointsPer100: 1).write(toFile: rules, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) {
            try chain.ws.run(["rules", "apply", rules, "--hub", chain.hubURL, "--token", chain.admin, "--hub-ca", Self.file("other.pem")])
        }
        #expect(try chain.ws.lastLine(["rules", "apply", rules, "--hub", chain.hubURL, "--token", chain.admin,
                                       "--hub-ca", Self.file("ca.pem")]).contains("published rules version 1"))

        // A second south node that trusts the CA catches up with what north wrote.
        let south2 = try await chain.node("south", trusting: "ca.pem", name: "south-2")
        try await eventually("south-2 sees north's member and balance") {
            (try await HTTP.get(south2 + "/v1/members/\(id)").json["balance"] as? Int ?? 0) >= 5000
        }
        try await eventually("south-2 prices under the published rules") {
            try await HTTP.get(south2 + "/v1/rules").json["version"] as? Int == 1
        }
    }

    @Test func aNodePinsTheHubsOwnCertificate() async throws {
        let chain = try await TLSChain(certificate: "self.pem", key: "self.key", stores: ["north"])
        let pinned = try await chain.node("north", trusting: "self.pem", name: "pinned")
        try await eventually("the pinned node syncs") { try await Self.status(pinned)["online"] as? Bool == true }
        // Trusting the chain's CA does not admit a certificate it did not sign; nor do the
        // system's roots admit a self-signed one.
        for (name, ca) in [("ca-only", "ca.pem"), ("system-roots", nil)] as [(String, String?)] {
            let node = try await chain.node("north", trusting: ca, name: name)
            try await eventually("\(name) refuses the hub's certificate") {
                let s = try await Self.status(node)
                return s["online"] as? Bool == false && (s["last_error"] as? String ?? "").contains("certificate")
            }
        }
    }

    @Test func theHubRefusesHalfATLSSetupAndUnreadableFiles() throws {
        let ws = try Workspace()
        #expect(throws: (any Error).self) {
            try ws.run(["hub", "--data", ws.path("hub"), "--listen", "127.0.0.1:0", "--tls-cert", Self.file("hub.pem")])
        }
        #expect(throws: (any Error).self) {
            try ws.run(["hub", "--data", ws.path("hub"), "--listen", "127.0.0.1:0", "--tls-cert", Self.file("hub.pem"),
                        "--tls-key", Self.file("missing.key")])
        }
        // --hub-ca with a plain-HTTP hub is a mistake, not a silent no-op.
        #expect(throws: (any Error).self) {
            try ws.run(["node", "--data", ws.path("n"), "--store", "north", "--hub", "http://127.0.0.1:9", "--token", "x",
                        "--hub-ca", Self.file("ca.pem")])
        }
    }
}
