import ArgumentParser
import Foundation

/// Every option of every command may also come from the environment (`TESSERA_` and the
/// option's name in capitals, `-` as `_`: `--jobs-interval` is `TESSERA_JOBS_INTERVAL`) and
/// from a config file (`--config FILE` or `TESSERA_CONFIG`). The command line wins over the
/// environment, which wins over the file's section for the command (`[hub]`, `[node]`,
/// `[admin token]`), which wins over the file's top (settings for any command that takes them,
/// such as `database`). The settings become ordinary options before parsing, so they are
/// checked exactly as typed ones are.
enum Settings {
    /// An option of a command, by its long name, and whether it is a flag (takes no value).
    struct OptionSpec: Hashable {
        var name: String
        var flag: Bool
        var environment: String { "TESSERA_" + name.uppercased().replacingOccurrences(of: "-", with: "_") }
    }

    /// One `key = value` of a config file.
    struct Entry: Hashable {
        var key: String
        var value: String
        var line: Int
    }

    struct File {
        var path: String
        /// Settings at the top of the file, for every command that takes them.
        var common: [Entry] = []
        /// Settings for one command, by its path (`hub`, `store add`).
        var sections: [String: [Entry]] = [:]
        var sectionLines: [String: Int] = [:]
    }

    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    // MARK: - Reading a file

    static func read(_ path: String) throws -> File {
        guard let data = FileManager.default.contents(atPath: path) else { throw Problem(description: "cannot read the config file \(path)") }
        var file = File(path: path)
        var section: String?
        for (i, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = i + 1
            var text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty || text.hasPrefix("#") || text.hasPrefix(";") { continue }
            if text.hasPrefix("[") {
                guard text.hasSuffix("]") else { throw Problem(description: "\(path):\(line): a section is written [command]") }
                let name = text.dropFirst().dropLast().split(separator: " ").joined(separator: " ").lowercased()
                section = name
                if file.sectionLines[name] != nil { throw Problem(description: "\(path):\(line): section [\(name)] appears twice") }
                file.sectionLines[name] = line
                file.sections[name, default: []] = []
                continue
            }
            guard let equals = text.firstIndex(of: "=") else { throw Problem(description: "\(path):\(line): expected key = value") }
            let key = text[..<equals].trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: "_", with: "-")
            text = String(text[text.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
                text = String(text.dropFirst().dropLast())
            }
            guard !key.isEmpty else { throw Problem(description: "\(path):\(line): a setting needs a name before =") }
            let entry = Entry(key: key, value: text, line: line)
            let entries = section.map { file.sections[$0] ?? [] } ?? file.common
            if entries.contains(where: { $0.key == key }) { throw Problem(description: "\(path):\(line): \(key) is set twice here") }
            if let section { file.sections[section, default: []].append(entry) } else { file.common.append(entry) }
        }
        return file
    }

    // MARK: - Commands and their options

    /// The command named by the start of `args` (`hub`, `store add`), and how many words named it.
    static func command(of args: [String]) -> (type: any ParsableCommand.Type, path: [String]) {
        var type: any ParsableCommand.Type = Tessera.self
        var path: [String] = []
        for arg in args {
            guard let sub = type.configuration.subcommands.first(where: { $0._commandName == arg }) else { break }
            type = sub
            path.append(arg)
        }
        return (type, path)
    }

    /// Every command with options, by path, for checking a file's sections.
    static func commands(_ type: any ParsableCommand.Type = Tessera.self, _ path: [String] = []) -> [(path: String, type: any ParsableCommand.Type)] {
        let here = path.isEmpty ? [] : [(path.joined(separator: " "), type)]
        return here + type.configuration.subcommands.filter { $0.configuration.shouldDisplay }.flatMap { commands($0, path + [$0._commandName]) }
    }

    /// A command's options (its option groups' too), from its declaration: each `@Option` and
    /// `@Flag` under ArgumentParser's default name, the property's name in kebab case.
    static func options(of type: any ParsableArguments.Type) -> [OptionSpec] {
        var out: [OptionSpec] = []
        for child in Mirror(reflecting: type.init()).children {
            guard let label = child.label, label.hasPrefix("_") else { continue }
            if let group = child.value as? any OptionGroupMarker {
                out += options(of: group.groupType)
            } else if child.value is any OptionMarker || child.value is any FlagMarker {
                out.append(OptionSpec(name: kebab(String(label.dropFirst())), flag: child.value is any FlagMarker))
            }
        }
        return out
    }

    static func kebab(_ camel: String) -> String {
        var out = ""
        for ch in camel {
            if ch.isUppercase { out += "-" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    // MARK: - What settings may fill

    /// Tools for trying and measuring Tessera take their options from the command line only
    /// (but the log level): a production `TESSERA_DATABASE` or config file must never reach a
    /// benchmark's hubs.
    static let commandLineOnly: Set<String> = ["up", "simulate", "bench", "bench-empty"]
    /// Options that change what a command does, not only how: they come from the command line
    /// or the command's own section, never from the environment or the file's top (a hub
    /// folder in the environment must not turn `rules apply --hub URL` into a local publish, a
    /// node's TESSERA_STORE must not become an import's joining store).
    static let sectionOnly: [String: Set<String>] = ["rules apply": ["data", "database"], "import members": ["store"]]
    /// Older names the environment may use for an option.
    static let aliases: [String: String] = ["log-level": "LOG_LEVEL"]

    // MARK: - Expanding

    /// Where a setting came from, for `tessera config check`.
    enum Source: Equatable, CustomStringConvertible {
        case commandLine, environment(String), file(String, Int)
        var description: String {
            switch self {
            case .commandLine: "command line"
            case .environment(let name): "environment \(name)"
            case .file(let path, let line): "\(path):\(line)"
            }
        }
    }

    /// The arguments with the settings the command line lacks added from the environment and
    /// the config file, and where each setting came from.
    static func expand(_ args: [String], environment: [String: String]) throws -> (args: [String], sources: [(OptionSpec, String, Source)]) {
        var args = args
        var configPath = environment["TESSERA_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        if let i = args.firstIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) {
            if args[i] == "--config" {
                guard i + 1 < args.count else { throw Problem(description: "--config needs a file") }
                configPath = args[i + 1]
                args.removeSubrange(i...(i + 1))
            } else {
                configPath = String(args[i].dropFirst("--config=".count))
                args.remove(at: i)
            }
        }
        let (type, path) = command(of: args)
        let name = path.joined(separator: " ")
        // The tools take only their log level from outside the command line.
        let specs = options(of: type).filter { !commandLineOnly.contains(name) || $0.name == "log-level" }
        guard !specs.isEmpty else { return (args, []) }
        let ownSectionOnly = sectionOnly[name] ?? []
        // Stop at `--`: what follows is not options.
        let given = Set((args.firstIndex(of: "--").map { Array(args[..<$0]) } ?? args).compactMap { arg -> String? in
            guard arg.hasPrefix("--") else { return nil }
            return String(arg.dropFirst(2).split(separator: "=", maxSplits: 1).first ?? "")
        })
        let file = try configPath.map(read)
        let section = file?.sections[name] ?? []
        var added: [String] = []
        var sources: [(OptionSpec, String, Source)] = []
        for spec in specs {
            if given.contains(spec.name) { continue }
            let shared = !ownSectionOnly.contains(spec.name)
            let variable = [spec.environment, aliases[spec.name]].compactMap { $0 }.first { !(environment[$0] ?? "").isEmpty }
            let value: String, source: Source
            if shared, let variable, let env = environment[variable] {
                (value, source) = (env, .environment(variable))
            } else if let entry = section.first(where: { $0.key == spec.name }) ?? (shared ? file?.common.first(where: { $0.key == spec.name }) : nil),
                      let file {
                (value, source) = (entry.value, .file(file.path, entry.line))
            } else {
                continue
            }
            if spec.flag {
                switch value.lowercased() {
                case "1", "true", "yes", "on": added.append("--" + spec.name)
                case "0", "false", "no", "off", "": break
                default: throw Problem(description: "\(spec.name) (\(source)) takes true or false, not '\(value)'")
                }
            } else {
                added += ["--" + spec.name, value]
            }
            sources.append((spec, value, source))
        }
        // Options go before a `--`, if any (none of Tessera's commands takes one today).
        let at = args.firstIndex(of: "--") ?? args.endIndex
        args.insert(contentsOf: added, at: at)
        return (args, sources)
    }
}

/// Markers that let `Settings.options` tell ArgumentParser's property wrappers apart.
protocol OptionMarker {}
protocol FlagMarker {}
protocol OptionGroupMarker { var groupType: any ParsableArguments.Type { get } }
extension Option: OptionMarker {}
extension Flag: FlagMarker {}
extension OptionGroup: OptionGroupMarker {
    var groupType: any ParsableArguments.Type { Value.self }
}

/// `tessera config check FILE`: reads a config file as the commands would at start, and says
/// what each section sets and from where, or what is wrong, before a restart picks it up.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Check configuration files.",
                                                    subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file: sections name commands, keys name their options, values parse as the command would take them.")
        @Argument(help: "The config file.") var file: String

        func run() async throws {
            let file: Settings.File
            do { file = try Settings.read(self.file) } catch { throw failure("\(error)") }
            let commands = Settings.commands().filter { !Settings.options(of: $0.type).isEmpty }
            var problems: [String] = []
            let every = Set(commands.flatMap { Settings.options(of: $0.type).map(\.name) })
            for entry in file.common where !every.contains(entry.key) {
                problems.append("\(self.file):\(entry.line): no command takes \(entry.key)")
            }
            for (name, entries) in file.sections.sorted(by: { $0.key < $1.key }) {
                guard let command = commands.first(where: { $0.path == name }) else {
                    problems.append("\(self.file):\(file.sectionLines[name] ?? 0): [\(name)] is not a command with options (\(commands.map(\.path).joined(separator: ", ")))")
                    continue
                }
                let names = Set(Settings.options(of: command.type).map(\.name))
                for entry in entries where !names.contains(entry.key) {
                    problems.append("\(self.file):\(entry.line): [\(name)] has no option \(entry.key) (it takes \(names.sorted().joined(separator: ", ")))")
                }
            }
            guard problems.isEmpty else { throw failure(listing: problems, "\(problems.count) problem(s) in \(self.file)") }
            // Each section as its command would read it now (with this environment).
            for name in file.sections.keys.sorted() where commands.contains(where: { $0.path == name }) {
                let path = name.split(separator: " ").map(String.init)
                let (args, sources) = try Settings.expand(path + ["--config", self.file], environment: ProcessInfo.processInfo.environment)
                do {
                    _ = try Tessera.parseAsRoot(args)
                } catch {
                    let message = Tessera.message(for: error)
                    // A command's own arguments (a store id, a file) come on the command line.
                    if !message.hasPrefix("Missing expected argument") {
                        problems.append("[\(name)]: \(message)")
                    }
                }
                for (spec, value, source) in sources {
                    if let problem = Self.check(spec.name, value) { problems.append("[\(name)] \(spec.name) (\(source)): \(problem)") }
                }
                say("[\(name)]")
                for (spec, value, source) in sources {
                    say("  \(spec.name) = \(Self.masked(spec.name, value))    (\(source))")
                }
            }
            guard problems.isEmpty else { throw failure(listing: problems, "\(problems.count) problem(s) in \(self.file)") }
            say("\(self.file): valid")
        }

        /// What the commands check only when they start, checked now.
        static func check(_ name: String, _ value: String) -> String? {
            switch name {
            case "listen":
                return (try? parseListen(value)) == nil ? "takes HOST:PORT, e.g. 127.0.0.1:7700" : nil
            case "hub":
                return (try? parseHubURL(value, ca: nil)) == nil ? "takes a URL such as https://hub.example.com" : nil
            case "store":
                return (try? parseStore(value)) == nil ? "is not a store id" : nil
            case "tls-cert", "tls-key", "hub-ca":
                return FileManager.default.isReadableFile(atPath: value) ? nil : "cannot read \(value)"
            case "database":
                return value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") ? nil : "takes postgres://USER@HOST:PORT/DATABASE"
            default:
                return nil
            }
        }

        /// Secrets are not printed: tokens, and a password inside a database URL.
        static func masked(_ name: String, _ value: String) -> String {
            if name.contains("token") || name.contains("secret") { return "(set, \(value.count) characters)" }
            if name == "database", let at = value.firstIndex(of: "@"), let scheme = value.range(of: "://"),
               let colon = value[scheme.upperBound..<at].firstIndex(of: ":") {
                return String(value[..<value.index(after: colon)]) + "****" + String(value[at...])
            }
            return value
        }
    }
}
