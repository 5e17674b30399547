import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TesseraProtocol
import TesseraTestSupport
@testable import TesseraNode

/// Pull pages over real HTTP: a store that was away catches up through gzipped whole pages.
@Suite("Pull pages over HTTP", .serialized)
struct PullPagesTests {
    @Test("a store back after a while pulls what it missed, whole pages gzipped by the hub, and holds what the other store holds")
    func catchesUpThroughGzippedPages() async throws {
        let chain = try await Chain(stores: ["p1", "p2"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("p1")
        try await chain.waitBootstrapped("p2")
        chain.killNode("p2")

        // More than two spans of operations while p2 is away: at least one whole page for it.
        let member = try await HTTP.post(chain.node("p1") + "/v1/members", #"{"name":"Ana","phone":"+15550900"}"#)
        let id = try #require(member.json["id"] as? String)
        let recharges = 2 * Int(SyncLimits.pullPageMax) + 10
        for _ in 0..<recharges {
            let answer = try await HTTP.post(chain.node("p1") + "/v1/members/\(id)/recharge", #"{"amount":1}"#)
            try #require(answer.status == 201)
        }
        try await chain.waitSynced(["p1"])

        // The whole page from 1000 to 2000, as a node asks for it: gzipped, and it inflates to
        // the page a client that takes no gzip is sent.
        // Without the client's own decompression (the shared client inflates, and asks for gzip).
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(decompression: .disabled))
        func page(accepting encodings: String?) async throws -> (encoding: String?, vary: String?, body: ByteBuffer) {
            var request = HTTPClientRequest(url: chain.hubURL + "/v1/sync/pull?after=\(SyncLimits.pullPageMax)&limit=\(SyncLimits.pullPageMax)")
            request.headers.add(name: "Authorization", value: "Bearer \(chain.tokens["p2"] ?? "")")
            request.headers.add(name: ProtocolVersion.header, value: String(ProtocolVersion.current))
            if let encodings { request.headers.add(name: "Accept-Encoding", value: encodings) }
            let response = try await client.execute(request, timeout: .seconds(20))
            #expect(response.status == .ok)
            return (response.headers.first(name: "Content-Encoding"), response.headers.first(name: "Vary"),
                    try await response.body.collect(upTo: 8 << 20))
        }
        let gzipped = try await page(accepting: "deflate, gzip")
        let plain = try await page(accepting: nil)
        let refused = try await page(accepting: "gzip;q=0, identity")
        try await client.shutdown()
        #expect(gzipped.encoding == "gzip" && plain.encoding == nil && refused.encoding == nil)
        #expect(refused.body == plain.body)
        #expect(gzipped.vary == "Accept-Encoding" && plain.vary == "Accept-Encoding")
        #expect(gzipped.body.readableBytes * 5 < plain.body.readableBytes)
        #expect(try HubClient.gunzip(gzipped.body) == plain.body)
        let read = try JSONDecoder().decode(PullResponse.self, from: Data(plain.body.readableBytesView))
        #expect(read.more && read.cursor == 2 * Int64(SyncLimits.pullPageMax) && read.ops.count == SyncLimits.pullPageMax)

        // p2 comes back and pulls it all, through that page.
        try await chain.startNode("p2")
        try await eventually("p2 holds every recharge") {
            try await HTTP.get(chain.node("p2") + "/v1/members/\(id)").json["balance"] as? Int == recharges
        }
        try await eventually("p2's cursor is p1's") {
            let two = try await chain.status("p2")["cursor"] as? Int
            let one = try await chain.status("p1")["cursor"] as? Int
            return two != nil && two == one
        }
    }
}
