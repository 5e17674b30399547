import Foundation
import Testing

/// Every option from the environment or a config file, and `tessera config check`.
@Suite("Configuration")
struct ConfigTests {
    @Test("a config file is checked before a restart: good files list each setting and where it comes from; mistakes name their line")
    func check() throws {
        let ws = try Workspace()
        let good = ws.path("good.conf")
        try """
            # the hub machine
            database = postgres://tessera:s3cret@db.internal:5432/tessera
            [hub]
            listen = 127.0.0.1:7700
            jobs_interval = 300
            webhook-hosts = "crm.example.com"
            [node]
            store = north-1
            hub = https://hub.example.com
            token = tst_not_a_real_one
            data = /var/lib/tessera/node
            """.write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try runCapturing(Binary.path, ["config", "check", good])
        #expect(ok.status == 0, "\(ok.errors)")
        #expect(ok.output.contains("jobs-interval = 300    (\(good):5)"))
        #expect(ok.output.contains("database = postgres://tessera:****@db.internal:5432/tessera"), "a password is never printed")
        #expect(!ok.output.contains("tst_not_a_real_one"), "a token is never printed")
        let overridden = try runCapturing(Binary.path, ["config", "check", good], environment: ["TESSERA_LISTEN": "127.0.0.1:7800"])
        #expect(overridden.output.contains("listen = 127.0.0.1:7800    (environment TESSERA_LISTEN)"))

        // The operator's example in deploy/ is a valid file.
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/tessera.conf.example").path
        let shipped = try runCapturing(Binary.path, ["config", "check", example])
        #expect(shipped.status == 0, "\(shipped.errors)")
        #expect(shipped.output.contains("webhook-hosts = crm.example.com, hooks.sms.example"))

        let bad = ws.path("bad.conf")
        try "[hub]\nlisten = 127.0.0.1:7700\ncolour = blue\n[hubb]\nx = 1\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try runCapturing(Binary.path, ["config", "check", bad])
        #expect(refused.status == 1)
        #expect(refused.errors.contains("bad.conf:3: [hub] has no option colour"))
        #expect(refused.errors.contains("bad.conf:4: [hubb] is not a command"))

        let wrong = ws.path("wrong.conf")
        try "[hub]\nlisten = nowhere\njobs-interval = soon\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let values = try runCapturing(Binary.path, ["config", "check", wrong])
        #expect(values.status == 1)
        #expect(values.errors.contains("jobs-interval"), "\(values.errors)")
    }

    @Test("settings that change what a command does come only from its command line or its own section")
    func whatSettingsMayNotChange() throws {
        let ws = try Workspace()
        let rules = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/examples/pharmacy.json").path
        // A hub folder in the environment must not turn a publish over HTTP into a local one.
        let dead = try freePort()
        let publish = try runCapturing(Binary.path, ["rules", "apply", rules, "--hub", "http://127.0.0.1:\(dead)", "--token", "tsa_x"],
                                       environment: ["TESSERA_DATA": ws.path("elsewhere")])
        #expect(publish.status != 0 && !publish.output.contains("published"), "\(publish.output)")
        #expect(!FileManager.default.fileExists(atPath: ws.path("elsewhere")))
        // A node's TESSERA_STORE is not an import's joining store.
        _ = try ws.run(["store", "add", "north-1", "--name", "North", "--data", ws.path("hub")])
        let file = ws.path("members.csv")
        try "phone,name\n+15550100,Ada\n".write(toFile: file, atomically: true, encoding: .utf8)
        let imported = try runCapturing(Binary.path, ["import", "members", file, "--data", ws.path("hub")], environment: ["TESSERA_STORE": "north-1"])
        #expect(imported.status == 1 && imported.errors.contains("'store'"), "\(imported.errors)")
        // LOG_LEVEL is the environment's too, and wins over a file.
        let config = ws.path("t.conf")
        try "[hub]\nlog-level = debug\n".write(toFile: config, atomically: true, encoding: .utf8)
        let checked = try runCapturing(Binary.path, ["config", "check", config], environment: ["LOG_LEVEL": "error"])
        #expect(checked.output.contains("log-level = error    (environment LOG_LEVEL)"), "\(checked.output)")
    }

    @Test("a hub and a node take their options from a config file and the environment; the command line wins over both")
    func serversFromSettings() async throws {
        let ws = try Workspace()
        let token = try ws.lastLine(["store", "add", "north-1", "--name", "North", "--data", ws.path("hub")])
        let hubPort = try freePort()
        let config = ws.path("tessera.conf")
        try """
            [hub]
            data = \(ws.path("hub"))
            listen = 127.0.0.1:1
            [node]
            data = \(ws.path("node"))
            hub = http://127.0.0.1:\(hubPort)
            listen = 127.0.0.1:0
            sync-interval-ms = 100
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // The file's listen address is overridden by the environment.
        let hub = try ws.start("hub", ["hub"], environment: ["TESSERA_CONFIG": config, "TESSERA_LISTEN": "127.0.0.1:\(hubPort)"])
        #expect(try await hub.url() == "http://127.0.0.1:\(hubPort)")
        let node = try ws.start("node", ["node", "--config", config, "--store", "north-1"], environment: ["TESSERA_TOKEN": token])
        let url = try await node.url()
        // Listening is not ready: it serves tills once it has loaded the chain from the hub it was given.
        try await eventually("the node has bootstrapped from the configured hub") {
            try await HTTP.get(url + "/v1/status").json["bootstrapped"] as? Bool == true
        }
        #expect(try await HTTP.post(url + "/v1/members", #"{"name":"Ada","phone":"+15550100"}"#).status == 201)
        try await eventually("the node syncs with the hub it was configured with") {
            try await HTTP.get(url + "/v1/status").json["pending_ops"] as? Int == 0
        }
        // A value the environment gives is checked like one typed: a clear error, no start.
        let refused = try runCapturing(Binary.path, ["hub", "--data", ws.path("hub2")], environment: ["TESSERA_JOBS_INTERVAL": "soon"])
        #expect(refused.status != 0)
        #expect(refused.errors.contains("TESSERA_JOBS_INTERVAL"), "\(refused.errors)")
    }
}
