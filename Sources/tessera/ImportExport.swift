import ArgumentParser
import Foundation
import TesseraCore
import TesseraStorage

/// A chain's existing members into the hub: every row checked first, then written as ordinary
/// operations that reach every store by sync.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Bring a chain's existing members into the hub.",
                                                    subcommands: [Members.self])

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import members from CSV (with a header) or JSON lines: phone, name, birthday, card, principal, bonus, points, points_expire_on, store, reference.",
            discussion: """
                Amounts are whole minor units (1250 for 12.50); card may list several cards separated by |. \
                Every row is checked before anything is written: any bad row is reported with its line and nothing changes (exit 1). \
                A phone the hub already holds is reported and skipped, so running the same file again changes nothing.
                """)
        @Argument(help: "The file (.csv, or .jsonl / .ndjson for JSON lines).") var file: String
        @Option(help: "csv or jsonl (default: from the file's name).") var format: String?
        @Option(help: "The store members join at when a row names none.") var store: String?
        @Flag(help: "Check the file against the hub and report; write nothing.") var dryRun = false
        @Option(help: "Rows written per transaction.") var batch: Int = 2_000
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            let format: MemberImport.Format
            switch self.format ?? ((file.hasSuffix(".jsonl") || file.hasSuffix(".ndjson")) ? "jsonl" : "csv") {
            case "csv": format = .csv
            case "jsonl", "ndjson": format = .jsonLines
            default: throw ValidationError("--format takes csv or jsonl")
            }
            let defaultStore = try store.map(parseStore)
            guard let data = FileManager.default.contents(atPath: file) else { throw failure("cannot read \(file)") }
            let started = Date()
            let (rows, problems) = MemberImport.read([UInt8](data), format: format, defaultStore: defaultStore)
            let hub = try storage.open()
            guard problems.isEmpty else {
                // The rows that read well are checked against the hub too: every bad row at once.
                let more = try hub.importMembers(rows, checkOnly: true).problems
                throw Self.refuse((problems + more).sorted { $0.line < $1.line }, file: file)
            }
            say("\(file): \(rows.count) rows read and checked in \(Self.seconds(since: started))")
            let meter = ProgressMeter(total: rows.count, what: "rows")
            let report = try hub.importMembers(rows, batch: max(1, batch), checkOnly: dryRun) { meter.update($0) }
            meter.finish()
            guard report.problems.isEmpty else { throw Self.refuse(report.problems, file: file) }
            for skip in report.skipped.prefix(100) { say("line \(skip.line): \(skip.reason)") }
            if report.skipped.count > 100 { say("... and \(report.skipped.count - 100) more rows skipped") }
            let rate = Double(report.imported) / max(0.001, Date().timeIntervalSince(started))
            if dryRun {
                say("dry run: \(rows.count - report.skipped.count) members would be imported, \(report.skipped.count) skipped; nothing written")
            } else {
                say("imported \(report.imported) members, skipped \(report.skipped.count) (already at the hub) in \(Self.seconds(since: started)) (\(Int(rate)) rows/s); stores receive them with their next sync")
            }
        }

        static func refuse(_ problems: [MemberImport.Problem], file: String) -> ExitCode {
            failure(listing: problems.map { "\(file): \($0)" }, limit: 1_000, "\(problems.count) bad row(s); nothing was imported")
        }

        static func seconds(since start: Date) -> String { String(format: "%.1f s", Date().timeIntervalSince(start)) }
    }
}

/// The hub's members as they stand now, in the columns `tessera import members` reads.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write the hub's current state to a file.",
                                                    subcommands: [Members.self])

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every member (merged duplicates left out): id, phone, name, birthday, card, principal, bonus, points (spendable), store, reference, tier.")
        @Option(help: "The file to write (default: standard output).") var out: String?
        @Option(help: "csv or jsonl.") var format: String = "csv"
        @OptionGroup var storage: HubDatabase

        func run() async throws {
            guard ["csv", "jsonl"].contains(format) else { throw ValidationError("--format takes csv or jsonl") }
            let members = try storage.open().exportMembers()
            var text: String
            if format == "csv" {
                text = CSV.text([ExportedMember.columns] + members.map(\.fields))
            } else {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                text = ""
                for m in members {
                    var object: [String: JSONValue] = [:]
                    for (key, value) in zip(ExportedMember.columns, m.fields) where !value.isEmpty {
                        object[key] = ["principal", "bonus", "points"].contains(key) ? .int(Int64(value) ?? 0) : .string(value)
                    }
                    text += String(decoding: try encoder.encode(JSONValue.object(object)), as: UTF8.self) + "\n"
                }
            }
            if let out {
                do { try text.write(toFile: out, atomically: true, encoding: .utf8) } catch { throw failure("cannot write \(out): \(error)") }
                FileHandle.standardError.write(Data("wrote \(members.count) members to \(out)\n".utf8))
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
    }
}

/// Progress of long work on standard error: one line rewritten in place on a terminal (rate
/// and time left), plain lines every few seconds otherwise (logs, CI).
final class ProgressMeter: @unchecked Sendable {
    private let total: Int
    private let what: String
    private let started = Date()
    private var last = Date.distantPast
    private var shown = false
    private let terminal = isatty(STDERR_FILENO) == 1

    init(total: Int, what: String) { self.total = total; self.what = what }

    func update(_ done: Int) {
        let now = Date()
        guard done >= total || now.timeIntervalSince(last) >= (terminal ? 0.2 : 5) else { return }
        last = now
        let elapsed = now.timeIntervalSince(started)
        let rate = Double(done) / max(elapsed, 0.001)
        let left = rate > 0 ? Double(total - done) / rate : 0
        let line = "\(done) of \(total) \(what) (\(Int(rate)) \(what)/s, about \(Int(left.rounded(.up))) s left)"
        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
        shown = true
    }

    func finish() {
        if terminal && shown { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
