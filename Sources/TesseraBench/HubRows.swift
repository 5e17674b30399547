import Foundation
import GRDB
import TesseraProtocol
import TesseraStorage

/// The rows a hub keeps for its operations, written again straight into SQLite: a second
/// limit for the ingest, beside the raw inserts of the log's rows alone.
///
/// Why: the hub keeps more than the log for each operation (its ledger entries, with the sums
/// their triggers keep; the member's rows; head office's summaries; events), each row with the
/// hub's own indexes. The log's rows alone are the limit the target is stated against; this one
/// shows how much of the gap is those rows and how much is Tessera's code.
struct HubRows {
    /// SQLite's and GRDB's own tables: neither written nor made.
    static let own: Set<String> = ["sqlite_sequence", "grdb_migrations", "sqlite_stat1"]
    /// Tables the entries' triggers keep: made with the schema, filled by the triggers as the
    /// entries are written, and their rows counted against the hub's.
    static let triggered = Set(HubStore.entrySumTables)

    struct Table {
        var name: String
        var insert: String
        /// Rows by the batch (of the log's operations) they are written with.
        var batches: [Int: [[DatabaseValue]]] = [:]
    }

    var schema: [String] = []
    var tables: [Table] = []
    var batches = 0
    var rows = 0
    var operations = 0
    /// Rows of the tables the entries' triggers keep, as the hub holds them.
    var triggeredCounts: [String: Int] = [:]

    /// Reads the hub's file (while the hub runs: a read in WAL mode). The log's operations go
    /// in batches of `batch`, in version order; an entry or event goes with its operation; a
    /// member's rows go with the first batch that names the member (its enrolment); other rows
    /// (stores, settings, head office's totals) with the first batch. Within a batch, rows go
    /// in the order of their operations.
    static func read(hubFile: String, batch: Int) throws -> HubRows {
        var config = Configuration()
        config.readonly = true
        let hub = try DatabaseQueue(path: hubFile, configuration: config)
        return try hub.read { db in
            var out = HubRows()
            // Tables, then indexes, then triggers: each as the hub made it.
            out.schema = try String.fetchAll(db, sql: """
                SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND tbl_name NOT IN (\(own.map { "'\($0)'" }.joined(separator: ",")))
                ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid
                """)
            // Where each operation is in the log, and where each member first appears.
            var positionOfOp: [String: Int] = [:]
            var positionOfMember: [String: Int] = [:]
            var index = 0
            let log = try Row.fetchCursor(db, sql: "SELECT id, member_id FROM ops ORDER BY version")
            while let row = try log.next() {
                positionOfOp[row["id"]] = index
                if let member: String = row["member_id"], positionOfMember[member] == nil { positionOfMember[member] = index }
                index += 1
            }
            out.operations = index
            out.batches = (index + batch - 1) / batch
            let names = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
            for name in triggered where names.contains(name) {
                out.triggeredCounts[name] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(name)") ?? 0
            }
            for name in names where !own.contains(name) && !triggered.contains(name) {
                let columns = try db.columns(in: name).map(\.name)
                let quoted = columns.map { "\"\($0)\"" }.joined(separator: ", ")
                var table = Table(name: name, insert: "INSERT INTO \"\(name)\" (\(quoted)) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))")
                let order = name == "ops" ? " ORDER BY version" : ""
                let cursor = try Row.fetchCursor(db, sql: "SELECT \(quoted) FROM \"\(name)\"\(order)")
                // Each row at the position of its operation (or its member's first), so that a
                // batch writes its rows in the order the hub wrote them, not sorted by key.
                var placed: [(position: Int, read: Int, values: [DatabaseValue])] = []
                while let row = try cursor.next() {
                    let values = columns.indices.map { row[$0] as DatabaseValue }
                    let position: Int
                    if name == "ops" {
                        position = positionOfOp[String.fromDatabaseValue(row[columns.firstIndex(of: "id") ?? 0]) ?? ""] ?? 0
                    } else if let at = columns.firstIndex(of: "op_id"), let op = String.fromDatabaseValue(row[at]), let known = positionOfOp[op] {
                        position = known
                    } else if let at = columns.firstIndex(of: name == "members" ? "id" : "member_id"),
                              let member = String.fromDatabaseValue(row[at]), let known = positionOfMember[member] {
                        position = known
                    } else {
                        position = 0
                    }
                    placed.append((position, placed.count, values))
                    out.rows += 1
                }
                placed.sort { ($0.position, $0.read) < ($1.position, $1.read) }
                for row in placed { table.batches[row.position / batch, default: []].append(row.values) }
                out.tables.append(table)
            }
            return out
        }
    }

    /// Writes the rows into a new file with the hub's schema, a batch per transaction
    /// (WAL, synchronous=FULL, as the hub). Returns the log's operations per second.
    func write(folder: String) throws -> Double {
        let path = (folder as NSString).appendingPathComponent("raw-hub-rows-\(UUID().uuidString.prefix(8)).sqlite")
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let pool = try SQLiteFiles.openPool(path: path, cacheMiB: 64)
        try pool.write { db in
            for sql in schema { try db.execute(sql: sql) }
        }
        let wall = try seconds {
            for b in 0..<batches {
                try pool.write { db in
                    for table in tables {
                        guard let rows = table.batches[b] else { continue }
                        let statement = try db.cachedStatement(sql: table.insert)
                        for values in rows { try statement.execute(arguments: StatementArguments(values)) }
                    }
                }
            }
        }
        // The same rows, or the figure means nothing: every table holds what the hub's does,
        // and the entries' triggers made as many sums.
        try pool.read { db in
            for table in tables {
                let written = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(table.name)\"") ?? -1
                let read = table.batches.values.reduce(0) { $0 + $1.count }
                guard written == read else { throw BenchFailure("\(table.name): \(written) rows written of \(read)") }
            }
            for (name, count) in triggeredCounts {
                let made = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(name)\"") ?? -1
                guard made == count else { throw BenchFailure("\(name): the triggers made \(made) rows, the hub holds \(count)") }
            }
        }
        return Double(operations) / wall
    }
}
