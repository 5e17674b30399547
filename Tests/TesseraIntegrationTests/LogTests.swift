import Foundation
import Testing

@Suite("What the servers log")
struct LogTests {
    @Test("every request is logged with its id (sent back to the caller), the route's pattern, its store and operations; never a phone, card or token")
    func structuredAndPrivate() async throws {
        let chain = try await Chain(stores: ["a1"], hubOptions: ["--log-level", "debug"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("a1")
        let phone = "+15550142", card = "VIP-778899"
        let enrolled = try await HTTP.post(chain.node("a1") + "/v1/members", #"{"name":"Ada Private","phone":"\#(phone)","card":"\#(card)"}"#)
        #expect(enrolled.status == 201)
        let requestID = try #require(enrolled.headers["Tessera-Request-Id"] ?? enrolled.headers["tessera-request-id"])
        #expect(try await HTTP.get(chain.node("a1") + "/v1/members?phone=\(phone)").status == 200)
        #expect(try await HTTP.get(chain.node("a1") + "/v1/cards/\(card)").status == 200)
        try await chain.waitSynced(["a1"])
        #expect(try await HTTP.get(chain.hubURL + "/v1/members/m-a1-1", token: "tsa_not_a_token_of_this_hub").status == 401)
        #expect(try await HTTP.get(chain.hubURL + "/v1/members/m-a1-1", token: chain.admin).status == 200)

        let node = try #require(chain.nodeProcess("a1")).errors
        let hub = try #require(chain.hub).errors
        let nodeLine = try #require(node.split(separator: "\n").first { $0.contains(requestID) }, "the caller's request id is in the node's log")
        #expect(nodeLine.contains("route=/v1/members") && nodeLine.contains("status=201") && nodeLine.contains("store.id=a1"))
        #expect(hub.contains("push") && hub.contains("store.id=a1") && hub.contains("first_op.id=a1:1"))
        #expect(hub.contains("route=/v1/members/{id}"), "reads are logged at debug, by their route's pattern")
        for secret in ["5550142", card, chain.admin, chain.tokens["a1"] ?? "", "tsa_not_a_token_of_this_hub", "Ada Private"] {
            #expect(!node.contains(secret) && !hub.contains(secret), "\(secret) must not be logged")
        }
    }
}
