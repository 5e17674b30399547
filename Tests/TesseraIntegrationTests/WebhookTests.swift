import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Testing
import TesseraTestSupport

/// A receiver of webhooks on loopback: records what arrives, refuses the first `failFirst`.
final class WebhookReceiver: @unchecked Sendable {
    struct Delivery { var id: Int; var type: String; var signature: String; var body: Data }
    private let lock = NSLock()
    private var received: [Delivery] = []
    private var refused = 0
    private let failFirst: Int
    private var task: Task<Void, any Error>?
    private(set) var port = 0

    init(failFirst: Int) { self.failFirst = failFirst }

    var deliveries: [Delivery] { lock.withLock { received } }
    var refusals: Int { lock.withLock { refused } }

    func start() async throws {
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let body = Data(buffer: try await request.body.collect(upTo: 1 << 20))
            let accept = self.lock.withLock { () -> Bool in
                if self.refused < self.failFirst { self.refused += 1; return false }
                self.received.append(Delivery(id: Int(request.headers[HTTPField.Name("Tessera-Event-Id")!] ?? "") ?? -1,
                                              type: request.headers[HTTPField.Name("Tessera-Event")!] ?? "",
                                              signature: request.headers[HTTPField.Name("Tessera-Signature")!] ?? "", body: body))
                return true
            }
            return Response(status: accept ? .noContent : .serviceUnavailable)
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        task = Task { try await app.runService() }
        for await port in ports { self.port = port; break }
    }

    func stop() { task?.cancel() }

    /// Whether the signature is the HMAC-SHA256 of "<t>.<body>" under `secret`.
    static func verify(_ header: String, body: Data, secret: String) -> Bool {
        let parts = Dictionary(uniqueKeysWithValues: header.split(separator: ",").compactMap { part -> (String, String)? in
            let kv = part.split(separator: "=", maxSplits: 1)
            return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
        })
        guard let t = parts["t"], let v1 = parts["v1"] else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(t).".utf8) + body, using: SymmetricKey(data: Data(secret.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined() == v1
    }
}

@Suite("Webhooks from a real hub", .serialized)
struct WebhookTests {
    @Test("events reach a webhook in order, signed, after the receiver's failures are retried; a receiver that is down never holds up syncing")
    func delivered() async throws {
        let receiver = WebhookReceiver(failFirst: 2)
        try await receiver.start()
        defer { receiver.stop() }
        let chain = try await Chain(stores: ["a1", "b2"], hubOptions: ["--webhook-hosts", "127.0.0.1", "--webhook-retry-base-ms", "100"])
        defer { chain.stopAll() }
        try await chain.waitBootstrapped("a1")
        try await chain.waitBootstrapped("b2")
        let secret = "a-secret-of-the-chain-0123456789"
        let made = try await HTTP.call("POST", chain.hubURL + "/v1/webhooks",
                                       json: #"{"url":"http://127.0.0.1:\#(receiver.port)/hook","events":["member.enrolled","value.recharged"],"secret":"\#(secret)"}"#,
                                       headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(made.status == 201, "\(made.text)")
        let hook = try #require(made.json["id"] as? String)
        // A second webhook whose receiver is down: its failures must not stop anything else.
        let dead = try freePort()
        let down = try await HTTP.call("POST", chain.hubURL + "/v1/webhooks",
                                       json: #"{"url":"http://127.0.0.1:\#(dead)/hook","events":["member.enrolled"]}"#,
                                       headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(down.status == 201)
        let elsewhere = try await HTTP.call("POST", chain.hubURL + "/v1/webhooks", json: #"{"url":"http://example.com/hook","events":["overdraft"]}"#,
                                            headers: ["Authorization": "Bearer \(chain.admin)"])
        #expect(elsewhere.status == 400 && elsewhere.errorCode == "invalid_request")

        for i in 0..<3 { #expect(try await HTTP.post(chain.node("a1") + "/v1/members", #"{"name":"M\#(i)","phone":"+1555010\#(i)"}"#).status == 201) }
        #expect(try await HTTP.post(chain.node("a1") + "/v1/members/m-a1-1/recharge", #"{"amount":5000}"#).status == 201)
        try await chain.waitSynced(["a1"])
        // Syncing goes on while the dead receiver fails: b2 sees a1's members.
        try await eventually("b2 has a1's members") { try await HTTP.get(chain.node("b2") + "/v1/members/m-a1-3").status == 200 }

        try await eventually("the receiver has every event") { receiver.deliveries.count >= 4 }
        let got = receiver.deliveries
        #expect(receiver.refusals == 2)
        #expect(got.map(\.type) == ["member.enrolled", "member.enrolled", "member.enrolled", "value.recharged"])
        #expect(got.map(\.id) == got.map(\.id).sorted() && Set(got.map(\.id)).count == 4)
        #expect(got.allSatisfy { WebhookReceiver.verify($0.signature, body: $0.body, secret: secret) })
        #expect(!WebhookReceiver.verify(got[0].signature, body: got[1].body, secret: secret))
        let first = try JSONSerialization.jsonObject(with: got[0].body) as? [String: Any]
        #expect(first?["member"] as? String == "m-a1-1" && (first?["data"] as? [String: Any])?["phone"] as? String == "+15550100")

        // The hub records a delivery once the receiver's answer is back, a moment after the
        // receiver has counted it.
        var outcomes: [String] = []
        try await eventually("the hub's log has every delivery") {
            let log = try await HTTP.get(chain.hubURL + "/v1/webhooks/\(hook)/deliveries", token: chain.admin)
            outcomes = (log.json["deliveries"] as? [[String: Any]] ?? []).reversed().map { $0["outcome"] as? String ?? "" }
            return outcomes.count >= 6
        }
        #expect(outcomes == ["failed", "failed", "delivered", "delivered", "delivered", "delivered"])
        let feed = try await HTTP.get(chain.hubURL + "/v1/events?after=0&type=member.enrolled", token: chain.admin)
        #expect((feed.json["events"] as? [[String: Any]])?.count == 3)
        try await eventually("the dead receiver's failures are in its log") {
            let hooks = try await HTTP.get(chain.hubURL + "/v1/webhooks", token: chain.admin).json["webhooks"] as? [[String: Any]] ?? []
            return hooks.contains { ($0["url"] as? String)?.contains(":\(dead)/") == true && ($0["failures"] as? Int ?? 0) >= 2 }
        }
        #expect(try await HTTP.call("DELETE", chain.hubURL + "/v1/webhooks/\(hook)", headers: ["Authorization": "Bearer \(chain.admin)"]).status == 200)
    }
}
