import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import TesseraBench
import TesseraCore
import TesseraHTTP
import TesseraHub
import TesseraNode
import TesseraProtocol
import TesseraSimulation
import TesseraStorage

@main
struct Tessera: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Membership cards for chain stores: store nodes that work offline, and a hub.",
        subcommands: [HubCommand.self, StoreCommand.self, AdminCommand.self, RulesCommand.self, JobsCommand.self, StatusCommand.self, NodeCommand.self,
                      ImportCommand.self, ExportCommand.self, ConfigCommand.self,
                      UpCommand.self, SimulateCommand.self, BenchCommand.self, BenchEmptyCommand.self])

    /// Options may also come from the environment and a config file (`Settings`): they are
    /// added to the command line before it is parsed.
    static func main() async {
        let expanded: (args: [String], sources: [(Settings.OptionSpec, String, Settings.Source)])
        do {
            expanded = try Settings.expand(Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Foundation.exit(2)
        }
        // A bad value from the environment or the file: say where it came from.
        if !expanded.sources.isEmpty {
            do { _ = try Self.parseAsRoot(expanded.args) } catch where Self.exitCode(for: error) != .success {
                let origins = expanded.sources.map { "--\($0.0.name) from \($0.2)" }.joined(separator: ", ")
                FileHandle.standardError.write(Data("note: options added from outside the command line: \(origins)\n".utf8))
            } catch {}
        }
        await Self.main(expanded.args)
    }
}

struct LogOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func logger(_ label: String) -> Logger {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }
}

func parseListen(_ text: String) throws -> ListenAddress {
    guard let address = ListenAddress(text) else { throw ValidationError("--listen takes HOST:PORT, e.g. 127.0.0.1:7700") }
    return address
}

func parseStore(_ text: String) throws -> StoreID {
    guard let id = StoreID(rawValue: text) else {
        throw ValidationError("a store id is 1 to 32 lower-case letters, digits, '-' or '_', starting with a letter or digit")
    }
    return id
}

func openHub(_ data: String) throws -> HubStore {
    try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
    return try HubStore(path: (data as NSString).appendingPathComponent("hub.sqlite"))
}

/// Where a hub's storage is: a data folder (SQLite), or PostgreSQL with the folder holding this
/// process's fold of the log (a cache, rebuilt from PostgreSQL when missing).
struct HubDatabase: ParsableArguments {
    @Option(help: "The hub's data folder: its SQLite database; with --database, this hub process's fold of the log (its own, one per process).")
    var data: String?
    @Option(help: ArgumentHelp("The hub's PostgreSQL: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require|verify-full]. Also read from TESSERA_DATABASE.",
                               valueName: "url"))
    var database: String?

    var url: String? { database ?? ProcessInfo.processInfo.environment["TESSERA_DATABASE"].flatMap { $0.isEmpty ? nil : $0 } }
    var given: Bool { data != nil || url != nil }

    /// Opens the hub's storage. A command that needs no fold (credentials, the audit log) may
    /// omit --data with --database: a temporary fold is used and removed.
    func open(needsFold: Bool = false) throws -> HubStore {
        guard let url else {
            guard let data else { throw ValidationError("give --data (SQLite), or --database (PostgreSQL)") }
            return try openHub(data)
        }
        let location: PostgresLocation
        do { location = try PostgresLocation(url: url) } catch { throw ValidationError(error.message) }
        let folder: String
        if let data {
            folder = data
        } else if needsFold {
            throw ValidationError("--database needs --data too: a folder for this hub process's fold of the log")
        } else {
            folder = NSTemporaryDirectory() + "tessera-fold-\(UUID().uuidString)"
            temporaryFold = folder
            atexit { if let folder = temporaryFold { try? FileManager.default.removeItem(atPath: folder) } }
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        do {
            return try HubStore(postgres: location, foldPath: (folder as NSString).appendingPathComponent("hub-fold.sqlite"))
        } catch let error as DomainError {
            throw failure(error.message)
        }
    }
}

/// A fold made for one command, removed when the process exits.
nonisolated(unsafe) private var temporaryFold: String?

struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hub", abstract: "Run the hub: on SQLite in a data folder, or on PostgreSQL (several hub processes may share one database).")
    @OptionGroup var storage: HubDatabase
    @Option(help: "Address to listen on.") var listen: String = "127.0.0.1:7700"
    @Option(help: "Seconds between runs of the scheduled jobs (points expiry, birthday and wake-up coupons).") var jobsInterval: Int = 600
    @Option(help: "Requests a second each credential may make on average (twice that in a burst); over it: 429 with Retry-After.") var rateLimit: Double = 1000
    @Option(help: "Seconds a snapshot file for new nodes is served before a new one is made; the hub keeps one ready, made again this often while the chain changes (0: made only when a node asks).")
    var snapshotFileAge: Int = 600
    @Option(help: "Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.") var tlsCert: String?
    @Option(help: "The private key (PEM) of --tls-cert.") var tlsKey: String?
    @Option(help: "Hosts webhooks may deliver to, comma-separated (e.g. crm.example.com,hooks.sms.example); none by default.")
    var webhookHosts: String = ""
    @Option(help: ArgumentHelp("The first webhook retry's wait (each next one doubles, up to 10 minutes).", visibility: .hidden))
    var webhookRetryBaseMs: Int64 = 1_000
    @OptionGroup var log: LogOptions

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    func run() async throws {
        let logger = log.logger("tessera.hub")
        guard rateLimit > 0 else { throw ValidationError("--rate-limit must be above 0") }
        guard snapshotFileAge >= 0 else { throw ValidationError("--snapshot-file-age must be 0 or more") }
        var tls: TLSConfiguration?
        if let tlsCert, let tlsKey {
            do { tls = try TLSFiles.server(certificate: tlsCert, key: tlsKey) } catch { throw failure("\(error)") }
        }
        let storage = try self.storage.open(needsFold: true)
        logger.info("hub storage: \(storage.ledger.kind)\(storage.postgres.map { " at \($0)" } ?? "")")
        let scheme = tls == nil ? "http" : "https"
        let app = try HubApplication.build(storage: storage, listen: try parseListen(listen), logger: logger,
                                           jobsIntervalSeconds: jobsInterval, snapshotFileAgeSeconds: snapshotFileAge,
                                           rateLimit: rateLimit, tls: tls, webhookHosts: Self.hosts(webhookHosts), webhookRetryBaseMs: webhookRetryBaseMs) {
            announce("tessera hub", $0, scheme: scheme)
        }
        try await app.runService()
    }

    static func hosts(_ list: String) -> Set<String> {
        Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty })
    }
}

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store", abstract: "Manage the chain's stores.",
                                                    subcommands: [Add.self, RotateToken.self, Revoke.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a store; prints its token as the last line.")
        @Argument(help: "The store's id, e.g. north-1.") var storeID: String
        @Option(help: "The store's name.") var name: String
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            let token = try storage.open().addStore(try parseStore(storeID), name: name)
            say("store \(storeID) registered; its node authenticates with this token (shown once):")
            say(token)
        }
    }

    struct RotateToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rotate-token",
            abstract: "Issue a new token for a store (the old one stops working at once; a revoked store is re-admitted); prints it as the last line.")
        @Argument(help: "The store's id.") var storeID: String
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            let token = try storage.open().rotateStoreToken(try parseStore(storeID))
            say("store \(storeID) has a new token (shown once); restart its node with it:")
            say(token)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refuse a store's token from now on (its node keeps serving its tills offline).")
        @Argument(help: "The store's id.") var storeID: String
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            try storage.open().revokeStore(try parseStore(storeID))
            say("store \(storeID) is revoked; `tessera store rotate-token` re-admits it with a new token")
        }
    }
}

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "admin", abstract: "Head-office access.",
                                                    subcommands: [Token.self, Revoke.self, List.self, Audit.self])

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a head-office token; prints it as the last line.")
        @OptionGroup var storage: HubDatabase
        @Option(help: "admin (reads and changes) or reporter (reads only).") var role: String = "admin"
        @Option(help: "Who or what holds it, for the audit log.") var label: String?

        func run() async throws {
            guard let role = HeadOffice.Role(rawValue: role) else { throw ValidationError("--role takes admin or reporter") }
            let issued = try storage.open().issueAdminToken(role: role, label: label)
            say("head-office token \(issued.id), role \(role.rawValue) (shown once; use as Authorization: Bearer TOKEN):")
            say(issued.token)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refuse a head-office token from now on.")
        @Argument(help: "The token's id (hot-...), from `tessera admin list`.") var id: String
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            try storage.open().revokeAdminToken(id)
            say("head-office token \(id) is revoked")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List head-office tokens (ids and roles, never the tokens).")
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            for t in try storage.open().adminTokens() {
                say("\(t.id)  \(t.role)  created \(t.createdAt)\(t.revokedAt.map { "  revoked \($0)" } ?? "")\(t.label.map { "  \($0)" } ?? "")")
            }
        }
    }

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the audit log, newest first.")
        @OptionGroup var storage: HubDatabase
        @Option(help: "How many lines.") var limit: Int = 100

        func run() async throws {
            for r in try storage.open().auditLog(limit: max(1, limit)) { say("\(r.at)  \(r.actor)  \(r.action)  \(r.detail)") }
        }
    }
}

/// The programme: check a rules file, and publish it to the hub (over HTTP with a head-office
/// token, or straight into the hub's data folder).
struct RulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rules", abstract: "Check and publish the membership programme.",
                                                    subcommands: [Check.self, Apply.self, Show.self])

    static func load(_ file: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: file) else { throw failure("cannot read \(file)") }
        do throws(DomainError) {
            try Programme.parse(data).checkPublishable()
        } catch {
            throw failure("\(file): \(error.message)")
        }
        return try JSONDecoder().decode(JSONValue.self, from: data)
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a rules file; prints what it configures.")
        @Argument(help: "The rules file (JSON).") var file: String

        func run() async throws {
            let programme = try Programme.parse(try RulesCommand.load(file))
            say("\(file): valid, version \(programme.version) '\(programme.name)', time zone \(programme.timeZone)")
            say("  earning \(programme.earning.points) point(s) per \(programme.earning.perMinor) minor units, \(programme.earning.bands.count) band(s), \(programme.earning.campaigns.count) campaign(s)")
            say("  tiers: \(programme.tiers?.levels.map(\.name).joined(separator: ", ") ?? "none"); expiry: \(programme.expiry.rule.rawValue)")
            say("  \(programme.storedValue.bonusBands.count) recharge bonus band(s), \(programme.coupons.count) coupon template(s), \(programme.memberships.count) membership plan(s)")
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a rules file as the next version; nodes receive it when they sync.")
        @Argument(help: "The rules file (JSON); its version must be above the published one.") var file: String
        @Option(help: "The hub's URL (with --token).") var hub: String?
        @Option(help: "A head-office token.") var token: String?
        @Option(help: "Trust only the certificates in this PEM file for an https hub (a private CA, or the hub's own certificate to pin it).") var hubCa: String?
        @OptionGroup(title: "Or publish straight into the hub's storage, without the HTTP API") var storage: HubDatabase

        func run() async throws {
            let document = try RulesCommand.load(file)
            let published: HubAPI.RulesVersion
            if storage.given {
                published = try storage.open().publishRules(document)
            } else if let hub, let token {
                let client = HubClient(base: try parseHubURL(hub, ca: hubCa), token: token, authorizeTimeout: 30,
                                       tls: try clientTLS(hubCa))
                do { published = try await client.publishRules(document) } catch { throw failure("\(error)") }
            } else {
                throw ValidationError("give --hub and --token, or --data / --database")
            }
            say("published rules version \(published.version) as \(published.op); nodes use it from their next sync")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the rules in force at a hub's data folder.")
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            say(String(decoding: try encoder.encode(try storage.open().currentRules()), as: UTF8.self))
        }
    }
}

/// The chain at a glance, from a hub's API: every store's sync state and the chain's totals.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status",
        abstract: "The chain at a glance: each store (online, last sync, pending, lag) and the chain's totals, from a hub.")
    @Option(help: "The hub's URL.") var hub: String
    @Option(help: "A head-office token (admin or reporter); also read from TESSERA_TOKEN.") var token: String?
    @Option(help: "Trust only the certificates in this PEM file for an https hub.") var hubCa: String?

    func run() async throws {
        guard let token = token ?? ProcessInfo.processInfo.environment["TESSERA_TOKEN"] else {
            throw ValidationError("give --token (or TESSERA_TOKEN): a head-office token from `tessera admin token`")
        }
        let client = HubClient(base: try parseHubURL(hub, ca: hubCa), token: token, authorizeTimeout: 10, syncTimeout: 30, tls: try clientTLS(hubCa))
        let stores: HubAPI.Stores, owes: HubAPI.Liabilities, exceptions: HubAPI.Exceptions
        do {
            stores = try await client.get("/v1/stores")
            owes = try await client.get("/v1/reports/liabilities")
            exceptions = try await client.get("/v1/exceptions?limit=10000")
        } catch { throw failure("\(error)") }
        let now = Date()
        func ago(_ iso: String?) -> (String, Bool) {
            guard let iso, let date = try? Date(iso, strategy: .iso8601) else { return ("never", false) }
            let seconds = Int(now.timeIntervalSince(date))
            let text = seconds < 120 ? "\(seconds) s ago" : seconds < 7_200 ? "\(seconds / 60) min ago" : "\(seconds / 3_600) h ago"
            return (text, seconds < 60)
        }
        let rows = stores.stores.map { s -> [String] in
            let (last, online) = ago(s.lastSyncAt)
            return [s.id.rawValue, online ? "yes" : "no", last, s.pending.map(String.init) ?? "-", String(s.head - s.cursor), String(s.opsAccepted)]
        }
        let header = ["STORE", "ONLINE", "LAST SYNC", "PENDING", "LAG", "OPERATIONS"]
        let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        for row in [header] + rows {
            say(row.enumerated().map { $0.offset == row.count - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
        let online = rows.filter { $0[1] == "yes" }.count
        say("")
        say("chain: \(stores.stores.count) stores, \(online) online; stored value held \(MinorUnits.text(owes.principal + owes.bonus - owes.owedPrincipal - owes.owedBonus)) (principal \(MinorUnits.text(owes.principal)), bonus \(MinorUnits.text(owes.bonus)), spent beyond balances \(MinorUnits.text(owes.owedPrincipal + owes.owedBonus)))")
        say("points outstanding \(owes.points) (worth \(MinorUnits.text(owes.pointsCashValue))); open exceptions \(exceptions.exceptions.filter { $0.resolution == nil }.count); rules version \(owes.rulesVersion)")
    }
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "Run the hub's scheduled jobs once (the hub also runs them on a timer).")
    @OptionGroup var storage: HubDatabase

    func run() async throws {
        let report = try storage.open().runJobs(asOfMs: nil)
        say("as of \(report.asOf) under rules version \(report.rulesVersion): \(report.expiries) expiries (\(report.pointsExpired) points), \(report.coupons) coupons issued")
    }
}

struct NodeOptions: ParsableArguments {
    @Option(help: "Folder for the node's database.") var data: String
    @Option(help: "This node's store id (as registered at the hub).") var store: String
    @Option(help: "The hub's URL, e.g. http://127.0.0.1:7700 (or https://...: the hub's certificate is verified).") var hub: String
    @Option(help: "The store's token from `tessera store add`.") var token: String
    @Option(help: "Trust only the certificates in this PEM file for an https hub (a private CA, or the hub's own certificate to pin it); default: the system's roots.") var hubCa: String?
    @Option(help: "Address to listen on.") var listen: String = "127.0.0.1:7701"
    @Option(help: "Offline spending allowed per member per day at this store, in minor units.") var offlineLimit: Int64 = 20_000
    @Option(help: "How long a till waits for the hub to authorise a spend before the node decides alone.") var authorizeTimeoutMs: Int = 1500
    @Option(help: "Pause between sync rounds.") var syncIntervalMs: Int = SyncLoop.defaultIntervalMs
    @Option(help: "Requests a second the node takes from its tills on average (twice that in a burst); over it: 429 with Retry-After.")
    var rateLimit: Double = NodeApplication.defaultRateLimit
}

func makeNode(_ o: NodeOptions, logger: Logger) throws -> Node {
    let store = try parseStore(o.store)
    // Every line a node logs names its store.
    var logger = logger
    logger[metadataKey: "store.id"] = "\(store)"
    let hub = try parseHubURL(o.hub, ca: o.hubCa)
    let tls = try clientTLS(o.hubCa)
    guard o.offlineLimit >= 0 else { throw ValidationError("--offline-limit must be 0 or more") }
    guard o.rateLimit > 0 else { throw ValidationError("--rate-limit must be above 0") }
    try FileManager.default.createDirectory(atPath: o.data, withIntermediateDirectories: true)
    let nodeStore = try NodeStore(path: (o.data as NSString).appendingPathComponent("node.sqlite"), store: store,
                                  offlinePolicy: OfflineSpendPolicy(limitMinorPerDay: o.offlineLimit))
    let voided = try nodeStore.voidInterruptedSpends()
    if voided > 0 { logger.notice("voided spends interrupted by a restart", metadata: ["count": "\(voided)"]) }
    let client = HubClient(base: hub, token: o.token, authorizeTimeout: Double(max(50, o.authorizeTimeoutMs)) / 1000, tls: tls)
    let sync = SyncLoop(store: nodeStore, client: client, intervalMs: max(10, o.syncIntervalMs), logger: logger)
    return Node(store: nodeStore, client: client, sync: sync)
}

func parseHubURL(_ text: String, ca: String?) throws -> URL {
    guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
        throw ValidationError("--hub takes a URL such as http://127.0.0.1:7700 or https://hub.example.com")
    }
    if ca != nil && url.scheme != "https" { throw ValidationError("--hub-ca needs an https:// hub URL") }
    return url
}

/// The client side of TLS to the hub: nil (AsyncHTTPClient's default: system roots, full
/// verification) unless a CA or pinned certificate file is given.
func clientTLS(_ ca: String?) throws -> TLSConfiguration? {
    guard let ca else { return nil }
    do { return try TLSFiles.client(trusting: ca) } catch { throw failure("\(error)") }
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run a store node: the till API on a local SQLite replica.")
    @OptionGroup var options: NodeOptions
    @OptionGroup var log: LogOptions

    func run() async throws {
        var logger = log.logger("tessera.node")
        logger[metadataKey: "store.id"] = "\(options.store)"
        let node = try makeNode(options, logger: logger)
        let app = NodeApplication.build(node: node, listen: try parseListen(options.listen), logger: logger,
                                        rateLimit: options.rateLimit) {
            announce("tessera node \(options.store)", $0)
        }
        try await app.runService()
    }
}

/// The one-command start: a hub and two store nodes under ./.tessera, on SQLite.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start a hub and two store nodes under ./.tessera; Ctrl-C stops all.")
    @Option(help: "Folder for everything.") var dir: String = ".tessera"
    @Option(help: "Host to listen on.") var host: String = "127.0.0.1"
    @Option(help: "The hub's port; the nodes take the next two.") var port: Int = 7700
    @OptionGroup var log: LogOptions

    struct Credentials: Codable {
        var admin: String
        var stores: [String: String]
    }

    func run() async throws {
        let logger = log.logger("tessera.up")
        let hubData = (dir as NSString).appendingPathComponent("hub")
        let hub = try openHub(hubData)
        let credentialsPath = (dir as NSString).appendingPathComponent("credentials.json")
        let stores = ["store-1": "Store 1", "store-2": "Store 2"]
        var credentials: Credentials
        if let data = FileManager.default.contents(atPath: credentialsPath) {
            credentials = try JSONDecoder().decode(Credentials.self, from: data)
        } else {
            credentials = Credentials(admin: try hub.issueAdminToken(label: "tessera up").token, stores: [:])
            for (id, name) in stores.sorted(by: { $0.key < $1.key }) {
                credentials.stores[id] = try hub.addStore(try parseStore(id), name: name)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            _ = FileManager.default.createFile(atPath: credentialsPath, contents: try encoder.encode(credentials),
                                           attributes: [.posixPermissions: 0o600])
        }
        let hubURL = "http://\(host):\(port)"
        // Webhooks from a trial chain go only to this machine.
        var services: [any Service] = [try HubApplication.build(storage: hub, listen: ListenAddress(host: host, port: port), logger: logger,
                                                                webhookHosts: ["127.0.0.1", "localhost", "::1"]) { announce("hub", $0) }]
        say("Tessera is starting under \(dir):")
        say("  hub      \(hubURL)   head-office token: \(credentials.admin)")
        for (i, id) in stores.keys.sorted().enumerated() {
            guard let token = credentials.stores[id] else { throw ValidationError("\(credentialsPath) lacks store \(id)") }
            let nodePort = port + 1 + i
            let options = try NodeOptions.parse(["--data", (dir as NSString).appendingPathComponent(id), "--store", id,
                                                 "--hub", hubURL, "--token", token, "--listen", "\(host):\(nodePort)"])
            let node = try makeNode(options, logger: logger)
            services.append(NodeApplication.build(node: node, listen: ListenAddress(host: host, port: nodePort), logger: logger) {
                announce("node \(id)", $0)
            })
            say("  \(id)  http://\(host):\(nodePort)   store token: \(token)")
        }
        say("Try: curl -s -X POST http://\(host):\(port + 1)/v1/members -d '{\"name\":\"Ada\",\"phone\":\"+15550100\"}'")
        say("Ctrl-C stops all.")
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Reports a failure on stderr and exits with status 1 (no usage text: the input was wrong, not the command line).
func failure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(1)
}

/// Lists problems on stderr (at most `limit`, then how many more) and fails with `summary`.
func failure(listing problems: [String], limit: Int = .max, _ summary: String) -> ExitCode {
    for problem in problems.prefix(limit) { FileHandle.standardError.write(Data("\(problem)\n".utf8)) }
    if problems.count > limit { FileHandle.standardError.write(Data("... and \(problems.count - limit) more\n".utf8)) }
    return failure(summary)
}

/// Writes a line to stdout at once (print buffers when stdout is a pipe, and scripts read these).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Runs the deterministic chain simulation over many seeds and reports any invariant broken,
/// with the command that replays the failing seed exactly.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "simulate",
        abstract: "Simulate a chain under faults (lost and duplicated messages, partitions, crashes, clock skew) and check its invariants.")
    @Option(help: "The first seed.") var seed: UInt64 = 1
    @Option(help: "How many seeds, from --seed on.") var seeds: Int = 1
    @Option(help: "Stores per simulated chain (1 to 50).") var stores: Int = 4
    @Option(help: "Till actions and faults per seed.") var steps: Int = 200
    @Option(help: "Offline limit per member per day, minor units (default: drawn from each seed).") var offlineLimit: Int64?
    @Option(help: "Offline spending: limit (v1's daily limit, overdrafts reported) or escrow (leases, no overdraft).")
    var policy: String = "limit"
    @Option(help: "Who shops where: uniform (any member anywhere) or loyal (members mostly at one or two stores).")
    var workload: String = "uniform"
    @Option(help: "Under escrow: the share of each member's balance lent to stores, percent.") var leaseShare: Int64 = 60
    @Flag(help: "Run every seed under both policies and print them side by side.") var compare = false

    func run() async throws {
        guard (1...50).contains(stores) else { throw ValidationError("--stores takes 1 to 50") }
        guard let policy = SimulationConfig.OfflinePolicyChoice(rawValue: policy) else { throw ValidationError("--policy takes limit or escrow") }
        guard let workload = SimulationConfig.Workload(rawValue: workload) else { throw ValidationError("--workload takes uniform or loyal") }
        let policies: [SimulationConfig.OfflinePolicyChoice] = compare ? [.limit, .escrow] : [policy]
        var failed = 0
        var rows: [[String]] = []
        for policy in policies {
            var acknowledged = 0, faults = 0, crashes = 0, overdrafts = 0, expiries = 0, coupons = 0
            var attempts = 0, accepted = 0, byPolicy = 0, leaseOps = 0, rights = 0, leased = 0, failedHere = 0, newYears = 0
            let started = Date()
            for s in seed..<(seed + UInt64(max(0, seeds))) {
                let config = SimulationConfig(seed: s, stores: stores, steps: steps, offlineLimit: offlineLimit, policy: policy, workload: workload,
                                              leaseShare: leaseShare)
                let report = try Simulator.run(config)
                acknowledged += report.acknowledged; faults += report.faults; crashes += report.crashes; overdrafts += report.overdrafts
                expiries += report.expiries; coupons += report.couponsUsed; newYears += report.crossedNewYear ? 1 : 0
                attempts += report.offlineAttempts; accepted += report.offlineAccepted; leaseOps += report.leaseOperations
                byPolicy += report.offlineRefusedByPolicy; rights += report.rightsViolations; leased += report.onlineLeaseRefusals
                if !report.violations.isEmpty {
                    failedHere += 1
                    say("seed \(s): \(report.violations.count) violation(s): \(report.violations.prefix(3).joined(separator: "; "))")
                    say("  replay: \(config)")
                }
            }
            failed += failedHere
            let share = attempts == 0 ? 0 : Double(accepted) / Double(attempts) * 100
            say("\(policy.rawValue): \(seeds) seeds x \(steps) steps, \(stores) stores, \(workload.rawValue) workload: \(failedHere) failed; "
                + "\(acknowledged) operations acknowledged to tills, \(faults) network faults, \(crashes) crashes, \(overdrafts) overdrafts reported, "
                + "\(accepted) of \(attempts) offline spends accepted (\(String(format: "%.1f", share)) %), \(byPolicy) refused by the policy itself, \(leaseOps) lease operations, \(rights) rights created or lost, \(leased) online spends refused as balance_leased, "
                + "\(expiries) points expiries, \(coupons) coupons redeemed, \(newYears) seeds crossed a new year; \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
            let refusedShare = attempts == 0 ? 0 : Double(byPolicy) / Double(attempts) * 100
            rows.append([policy == .escrow ? "escrow (share \(leaseShare) %)" : (offlineLimit.map { "limit (\($0) a day)" } ?? "limit (drawn per seed)"), "\(seeds)", "\(overdrafts)", "\(accepted) / \(attempts)", String(format: "%.1f %%", share),
                         "\(byPolicy) (\(String(format: "%.1f", refusedShare)) %)", "\(leased)", "\(leaseOps)", policy == .escrow ? "\(rights)" : "n/a", "\(failedHere)"])
        }
        if compare {
            say("")
            say("| policy | seeds | overdrafts | offline spends accepted | share | refused by the policy itself | online refusals balance_leased | lease operations | rights created or lost | seeds failed |")
            say("|---|---|---|---|---|---|---|---|---|---|")
            for row in rows { say("| " + row.joined(separator: " | ") + " |") }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// The benchmark suite: real processes on loopback, each figure beside the limit measured in
/// the same run (raw SQLite commits and inserts, an empty handler on the same HTTP stack).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench",
        abstract: "Measure till latency, hub ingest, catch-up, bootstrap, memory and pull cost; prints a table.")
    @Flag(help: "The sizes the targets are stated for (100 stores x 1,000 ops, 1M members / 10M ops): takes hours.") var full = false
    @Option(help: ArgumentHelp("smoke (seconds; figures meaningless), quick (the default, a few minutes) or full.", visibility: .hidden))
    var size: String = "quick"
    @Option(help: "Only these parts, comma-separated: \(Bench.parts.joined(separator: ", ")).") var only: String?
    @Option(help: "Folder for the databases (on the disk to measure); removed at the end unless --keep.") var dir: String?
    @Flag(help: "Keep the folder.") var keep = false
    @Option(help: "Also write the table (Markdown) to this file.") var out: String?
    @Option(help: ArgumentHelp("A PostgreSQL server (postgres://USER@HOST:PORT/DB) for the hub-on-PostgreSQL rows; the bench makes and drops its own databases there.",
                               valueName: "url"))
    var postgres: String?
    @Option(help: ArgumentHelp("Catch-up: how many stores reconnect at once, comma-separated runs (e.g. 10,100); the size's by default.",
                               valueName: "counts"))
    var catchupStores: String?
    @Option(help: ArgumentHelp("Catch-up: operations each store makes offline; the size's by default.", valueName: "n"))
    var catchupOps: Int?
    @Option(help: ArgumentHelp("Catch-up: how many replicas fold everything here (all by default); the other stores push and pull every page but drop it, as if their replicas folded on machines of their own.",
                               valueName: "n"))
    var catchupReplicas: Int?
    @Option(help: ArgumentHelp("A programme document (JSON, e.g. deploy/examples/fresh-market.json) published in the chains of the till, ingest and catch-up parts; the built-in programme (no tiers, no expiry) by default.",
                               valueName: "file"))
    var programme: String?

    func run() async throws {
        let parts = Set((only ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        if let unknown = parts.subtracting(Bench.parts).first { throw ValidationError("unknown part \(unknown); parts: \(Bench.parts.joined(separator: ", "))") }
        let folder = dir ?? (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(".tessera-bench")
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var sizes: BenchSizes
        switch full ? "full" : size {
        case "smoke": sizes = .smoke
        case "quick": sizes = .quick
        case "full": sizes = .full
        default: throw ValidationError("--size takes smoke, quick or full")
        }
        if let catchupStores {
            let counts = catchupStores.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw ValidationError("--catchup-stores takes counts of 1 or more, e.g. 10,100") }
            sizes.catchUpStores = counts.compactMap { $0 }
        }
        if let catchupOps {
            guard catchupOps >= 1 else { throw ValidationError("--catchup-ops takes 1 or more") }
            sizes.catchUpOpsPerStore = catchupOps
        }
        if let catchupReplicas {
            guard catchupReplicas >= 1 else { throw ValidationError("--catchup-replicas takes 1 or more") }
            sizes.catchUpReplicas = catchupReplicas
        }
        if let programme {
            guard let data = FileManager.default.contents(atPath: programme) else { throw ValidationError("cannot read \(programme)") }
            do {
                let document = try JSONValueParser.parse(data)
                _ = try Programme.parse(data) // refused here, not halfway through a run
                sizes.programme = document
            } catch { throw ValidationError("\(programme) is not a programme: \(error)") }
        }
        var server: PostgresLocation?
        if let postgres {
            do { server = try PostgresLocation(url: postgres) } catch { throw ValidationError(error.message) }
        }
        let bench = Bench(binary: binary, folder: folder, sizes: sizes, only: parts, postgres: server) { say($0) }
        let started = Date()
        let rows = try await bench.run()
        if !keep { try? FileManager.default.removeItem(atPath: folder) }
        var table = ["| measure | Tessera | limit (same run) | Tessera / limit | target |", "|---|---|---|---|---|"]
        table += rows.map { "| \($0.what) | \($0.tessera) | \($0.limit) | \($0.ratio) | \($0.target) |" }
        say("")
        table.forEach(say)
        say(String(format: "\n%@ sizes, %.0f s", full ? "full" : size, Date().timeIntervalSince(started)))
        if let out { try (table.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8) }
    }
}

/// An empty handler on the hub's and node's HTTP stack (Hummingbird, HTTP/1.1): the floor
/// under every request's latency, for `tessera bench`.
struct BenchEmptyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-empty", abstract: "An empty HTTP handler (for tessera bench).",
                                                    shouldDisplay: false)
    @Option var listen: String = "127.0.0.1:0"

    func run() async throws {
        let address = try parseListen(listen)
        let router = Router()
        router.post("/empty") { request, _ in
            _ = try await request.body.collect(upTo: 1 << 20)
            return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        let app = Application(router: router, server: .http1(configuration: .init(idleTimeout: .seconds(75))),
                              configuration: .init(address: .hostname(address.host, port: address.port), serverName: "tessera-bench"),
                              onServerRunning: { announce("bench-empty", $0) })
        try await app.runService()
    }
}
