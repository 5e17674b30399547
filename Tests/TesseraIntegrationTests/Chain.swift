import Foundation
import TesseraTestSupport

/// A real chain on loopback: a `tessera hub` process and `tessera node` processes, each with
/// its own SQLite files in a temporary folder; the hub on SQLite there, or on a new PostgreSQL
/// database of the test server.
final class Chain: @unchecked Sendable {
    let ws: Workspace
    let backend: Backend
    let database: TestDatabase?
    let hubPort: Int
    let hubURL: String
    let admin: String
    private(set) var hub: TesseraProcess?
    private(set) var tokens: [String: String] = [:]
    private(set) var nodes: [String: TesseraProcess] = [:]
    private(set) var nodeURLs: [String: String] = [:]

    /// Options of the hub's beyond its storage and address.
    let hubOptions: [String]

    init(stores: [String], backend: Backend = .sqlite, hubOptions: [String] = []) async throws {
        ws = try Workspace()
        self.hubOptions = hubOptions
        self.backend = backend
        database = backend == .postgresql ? try TestDatabase() : nil
        if let database { ws.onRemove { database.drop() } }
        let storage = ["--data", ws.path("hub")] + (database.map { ["--database", $0.url] } ?? [])
        for store in stores {
            tokens[store] = try ws.lastLine(["store", "add", store, "--name", "Store \(store)"] + storage)
        }
        admin = try ws.lastLine(["admin", "token"] + storage)
        hubPort = try freePort()
        hubURL = "http://127.0.0.1:\(hubPort)"
        try await startHub()
        for store in stores { try await startNode(store) }
    }

    func startHub() async throws {
        let hub = try ws.start("hub", ["hub", "--listen", "127.0.0.1:\(hubPort)"] + hubStorage + hubOptions)
        _ = try await hub.url()
        self.hub = hub
    }

    /// The options that name the hub's storage, for `tessera hub`, `store`, `admin`, `rules`.
    var hubStorage: [String] { ["--data", ws.path("hub")] + (database.map { ["--database", $0.url] } ?? []) }

    func killHub() { hub?.kill9(); hub = nil }

    /// Starts (or restarts) a store's node; it keeps its port across restarts.
    func startNode(_ store: String, offlineLimit: Int = 20_000, hub: String? = nil) async throws {
        let listen = nodeURLs[store].map { $0.replacingOccurrences(of: "http://", with: "") } ?? "127.0.0.1:0"
        let node = try ws.start(store, ["node", "--data", ws.path("node-\(store)"), "--store", store, "--hub", hub ?? hubURL,
                                        "--token", tokens[store] ?? "", "--listen", listen, "--offline-limit", String(offlineLimit),
                                        "--sync-interval-ms", "100", "--authorize-timeout-ms", "1000"])
        nodeURLs[store] = try await node.url()
        nodes[store] = node
    }

    /// A store that joins the running chain: registered at the hub, its node started from nothing.
    func addStore(_ store: String) async throws {
        tokens[store] = try ws.lastLine(["store", "add", store, "--name", "Store \(store)"] + hubStorage)
        try await startNode(store)
    }

    func killNode(_ store: String) { nodes[store]?.kill9(); nodes[store] = nil }

    func node(_ store: String) -> String { nodeURLs[store] ?? "" }

    func nodeProcess(_ store: String) -> TesseraProcess? { nodes[store] }

    func status(_ store: String) async throws -> [String: Any] { try await HTTP.get(node(store) + "/v1/status").json }

    func waitBootstrapped(_ store: String) async throws {
        try await eventually("\(store) has loaded the chain") { try await self.status(store)["bootstrapped"] as? Bool == true }
    }

    func waitSynced(_ stores: [String]) async throws {
        for store in stores {
            try await eventually("\(store) has nothing pending and is online") {
                let s = try await self.status(store)
                return s["pending_ops"] as? Int == 0 && s["online"] as? Bool == true
            }
        }
    }

    func hubMember(_ id: String) async throws -> HTTP.Answer { try await HTTP.get(hubURL + "/v1/members/\(id)", token: admin) }

    func stopAll() {
        for (_, p) in nodes { p.kill9() }
        hub?.kill9()
    }
}
