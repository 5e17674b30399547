import Foundation
import Testing

@Suite("A faulty network between a node and the hub", .serialized)
struct FaultyNetworkTests {
    @Test("resets, stalls, slow links, half-open connections, truncated answers: tills always answered, sync converges, nothing lost or doubled")
    func faultyLink() async throws {
        let chain = try await Chain(stores: ["f1"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("f1")
        // Half the connections work, the other half fail in one of five ways.
        let proxy = try FaultProxy(upstreamPort: chain.hubPort,
                                   faults: [.pass, .pass, .pass, .pass, .pass, .reset, .stall, .slow, .truncate, .halfOpen])
        defer { proxy.stop() }
        // From now on the node reaches the hub only through the faulty link.
        chain.killNode("f1")
        try await chain.startNode("f1", hub: proxy.url)
        let node = chain.node("f1")
        let m = try await HTTP.post(node + "/v1/members", #"{"name":"Flo","phone":"+15550900"}"#)
        let id = try #require(m.json["id"] as? String)

        var told = 0
        var slowest = 0.0
        // Tills keep selling for at least 8 s, and until the link has carried a dozen
        // connections (a loaded machine syncs less often), while sync and authorisations cross it.
        let until = Date().addingTimeInterval(8), cap = Date().addingTimeInterval(90)
        var i = 0
        while Date() < cap && (Date() < until || proxy.counts.values.reduce(0, +) < 12) {
            i += 1
            let purchase = i % 3 == 0
            let body = purchase ? #"{"amount":\#(50 + i),"pay_from_balance":true}"# : #"{"amount":\#(500 + i)}"#
            let path = purchase ? "/v1/members/\(id)/purchase" : "/v1/members/\(id)/recharge"
            let started = Date()
            var answer: HTTP.Answer?
            // The till retries with its key; a node that stopped answering altogether (it once
            // crashed on a cut answer) fails the test instead of spinning it forever.
            while answer == nil || answer?.status == 409 {
                answer = try? await HTTP.post(node + path, body, key: "f1-\(i)")
                if answer == nil || answer?.status == 409 {
                    guard Date().timeIntervalSince(started) < 30 else { throw TestFailure("the node stopped answering its tills") }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            slowest = max(slowest, Date().timeIntervalSince(started))
            if answer?.status == 201, let change = (answer?.json["transaction"] as? [String: Any])?["value_change"] as? Int {
                told += change
            }
        }
        // The node decides on its own when the hub does not answer in time: a till never waits
        // on the link (the authorisation timeout is 1 s here).
        #expect(slowest < 10, "the slowest till answer took \(slowest) s")

        proxy.use([.clean])
        let healed = Date()
        try await chain.waitSynced(["f1"])
        print("fault proxy: synced \(Date().timeIntervalSince(healed)) s after healing; status \(try await chain.status("f1"))")
        try await eventually("hub and node agree with what the tills were told") {
            let atHub = try await chain.hubMember(id).json
            let atNode = try await HTTP.get(node + "/v1/members/\(id)").json
            return atHub["balance"] as? Int == told && atNode["balance"] as? Int == told
        }
        let counts = proxy.counts
        print("fault proxy: connections by fault \(counts.map { "\($0.key): \($0.value)" }.sorted().joined(separator: ", ")); slowest till answer \(String(format: "%.2f", slowest)) s")
        #expect(counts.values.reduce(0, +) > 8, "the link was exercised: \(counts)")
    }
}
