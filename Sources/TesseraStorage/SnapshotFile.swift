import Foundation
import GRDB
import TesseraCore
import TesseraProtocol

/// A whole snapshot as one SQLite file (spec §6.4): the state tables of the hub's fold copied
/// as they are, in one read transaction, so the file is the state at one version of the log.
///
/// Why a file: at a million members and ten million operations the paged JSON snapshot is
/// eleven million rows, each encoded, sent, decoded and inserted one by one (448 s measured).
/// Here SQLite copies the rows on both sides: the hub writes each table in its key's order,
/// the node appends them in that order and builds its other indexes once, at the end, with one
/// sort each instead of eleven million inserts at random places.
public enum SnapshotFile {
    /// The layout this build writes: the state tables under their own names, and
    /// `snapshot_meta` (key, value) without anything of one store's, so one file serves every
    /// store (the asking store's `origin_seq` comes with the answer, in `Tessera-Origin-Seq`).
    /// Format 1, from older hubs, carried its store's `origin_seq` in the file. A node that
    /// finds another format falls back to pages (an older node does so on format 2: it would
    /// otherwise start its sequence without the store's highest number).
    public static let format = "2"
    static let readable: Set<String> = ["1", format]

    /// What a snapshot file says about itself.
    public struct Info: Sendable, Equatable {
        /// The log's version the state is at: the node pulls after it.
        public var cursor: Int64
        /// The newest stamp in the log (the node's clock starts after it).
        public var maxHLC: HLCTimestamp
        /// Rows of state, over every table.
        public var rows: Int64
    }

    /// A file the hub made: where it is, what it holds, its size and when it was made.
    public struct Made: Sendable {
        public var path: String
        public var info: Info
        public var bytes: Int64
        public var madeAt: Date
    }

    /// A file as served to one store: the file, and that store's highest sequence number, read
    /// when it asked (at or above the one at the file's cursor: the store's next operation is
    /// numbered above every one the hub has of it, whichever came after the file).
    public struct Served: Sendable {
        public var file: Made
        public var originSeq: UInt64
    }

    /// Writes the state of the fold at `foldPath` (attached, only read) into a new file at `path`.
    /// The file is a new node's database as this build makes it (every table, index and
    /// migration of `NodeStore`'s), with the state tables filled and `snapshot_meta` added: a
    /// node of the same schema takes the whole file as its database, a copy of pages
    /// (`adopt`), and any other node loads its state tables by name (`load`).
    /// The file is scratch: no journal, no syncs (a crash leaves a file the hub deletes).
    static func write(foldPath: String, to path: String) throws -> Info {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = OFF")
            try db.execute(sql: "PRAGMA synchronous = OFF")
        }
        let queue = try DatabaseQueue(path: path, configuration: config)
        defer { try? queue.close() }
        try NodeStore.migrator.migrate(queue)
        return try queue.writeWithoutTransaction { db in
            try db.execute(sql: "ATTACH DATABASE ? AS fold", arguments: [foldPath])
            defer { try? db.execute(sql: "DETACH DATABASE fold") }
            try sortingPragmas(db)
            var info = Info(cursor: 0, maxHLC: .zero, rows: 0)
            // One transaction: every table and the cursor are read from one state of the fold.
            try db.inTransaction(.deferred) {
                info.cursor = try Replica.logHead(db, schema: "fold")
                info.maxHLC = HLCTimestamp(packed: try HubStore.maxHLC(db, schema: "fold")) ?? .zero
                info.rows = try fill(db, from: "fold")
                try db.execute(sql: "CREATE TABLE snapshot_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
                for (key, value) in [("format", format), ("cursor", String(info.cursor)),
                                     ("max_hlc", String(info.maxHLC.packed)), ("rows", String(info.rows))] {
                    try db.execute(sql: "INSERT INTO snapshot_meta (key, value) VALUES (?, ?)", arguments: [key, value])
                }
                return .commit
            }
            return info
        }
    }

    /// Settings for filling state tables and sorting their indexes, on the connection that does it.
    /// Sorting ten million keys for the indexes wants more than the default 2 MiB of cache;
    /// SQLite also lets each sort hold as much again in memory before it spills to disk, so
    /// 16 MiB keeps a node well under 200 MB (32 MiB: 193 MB at a million members, and slower).
    /// Each sort may share its work with helper threads, one per core: the index of entries by
    /// operation (before entries were kept in member order: of members), the longest step, took
    /// 13.5 s alone and 9.6 s with two.
    static func sortingPragmas(_ db: Database) throws {
        try db.execute(sql: "PRAGMA main.cache_size = -16384")
        try db.execute(sql: "PRAGMA threads = \(max(1, min(4, ProcessInfo.processInfo.activeProcessorCount)))")
    }

    /// Fills the empty state tables of `main` from the same tables in `schema`, and returns the
    /// rows copied. Secondary indexes are dropped first and made again at the end: one sort
    /// each, instead of ten million inserts at random places in each index. This build's
    /// columns, by name: a source with more columns still loads; one without a column this
    /// build needs fails (SQLITE_ERROR). In key order, which is the source's own order in a
    /// snapshot file: no sort, and each table's key index grows at its end, page after page.
    static func fill(_ db: Database, from schema: String) throws -> Int64 {
        let names = Replica.stateTables.map { "'\($0)'" }.joined(separator: ", ")
        let indexes = try Row.fetchAll(db, sql: """
            SELECT name, sql FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (\(names))
            """).map { (name: $0["name"] as String, sql: $0["sql"] as String) }
        for index in indexes { try db.execute(sql: "DROP INDEX main.\(index.name)") }
        // The entries' sums are copied (or summed once) after them, not upserted for each entry.
        let rows = try Replica.withoutTriggers(on: Replica.stateTables, db) {
            var rows: Int64 = 0
            for table in Replica.stateTables {
                let (columns, key) = try Self.columns(of: "main", table, db)
                try db.execute(sql: "INSERT INTO main.\(table) (\(columns)) SELECT \(columns) FROM \(schema).\(table) ORDER BY \(key)")
                rows += Int64(db.changesCount)
            }
            try Replica.fillEntrySums(from: schema, db)
            return rows
        }
        for index in indexes { try db.execute(sql: index.sql) }
        return rows
    }

    /// A state table's columns and its key's columns, quoted and comma-separated. Every state
    /// table has a key (a snapshot page's place is one, too).
    private static func columns(of schema: String, _ table: String, _ db: Database) throws -> (columns: String, key: String) {
        let info = try Row.fetchAll(db, sql: "PRAGMA \(schema).table_info(\(table))")
        let columns = info.map { "\"\($0["name"] as String)\"" }.joined(separator: ", ")
        let key = info.filter { ($0["pk"] as Int) > 0 }.sorted { ($0["pk"] as Int) < ($1["pk"] as Int) }
            .map { "\"\($0["name"] as String)\"" }.joined(separator: ", ")
        guard !key.isEmpty else { throw DomainError(.internalError, "the state table \(table) has no key") }
        return (columns, key)
    }

    /// What loading a file did: the rows of state it holds (0: the node was bootstrapped
    /// already), and whether the node took the whole file as its database (`adopt`) or loaded
    /// its state tables (`load`).
    public struct Loaded: Sendable, Equatable {
        public var rows: Int64
        public var wholeFile: Bool
    }

    /// Why a file could not be loaded: the node falls back to the paged snapshot.
    public struct Unreadable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Attaches the file at `path` as `snapshot` (a file that is not a database is unreadable).
    static func attach(_ path: String, _ db: Database) throws {
        do {
            try db.execute(sql: "ATTACH DATABASE ? AS snapshot", arguments: [path])
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
            throw Unreadable(description: "the snapshot file is not a database: \(error.message ?? "\(error.resultCode)")")
        }
    }

    /// Loads the file attached as `snapshot` into the replica's empty state tables, in the
    /// caller's transaction. Secondary indexes are dropped first and made again at the end: one
    /// sort each, instead of ten million inserts at random places in each index.
    /// `originSeq`: the asking store's highest sequence number, as the hub answered it with the
    /// file (a format-1 file carries its own). Returns the file's head and the sequence number.
    static func load(_ db: Database, originSeq: UInt64?) throws -> (info: Info, originSeq: UInt64) {
        do {
            return try loadChecked(db, originSeq: originSeq)
        } catch let error as DatabaseError where [.SQLITE_ERROR, .SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
            // Not a database, damaged, or not the tables and columns this build needs.
            throw Unreadable(description: "the snapshot file does not fit this build: \(error.message ?? "\(error.resultCode)")")
        }
    }

    private static func loadChecked(_ db: Database, originSeq answered: UInt64?) throws -> (info: Info, originSeq: UInt64) {
        let (info, originSeq) = try header(db, schema: "snapshot", originSeq: answered)
        let held = try Set(String.fetchAll(db, sql: "SELECT name FROM snapshot.sqlite_master WHERE type = 'table'"))
        for table in Replica.stateTables where !held.contains(table) {
            throw Unreadable(description: "a snapshot file without the table \(table)")
        }
        try Replica.clearState(db)
        let rows = try fill(db, from: "snapshot")
        return (Info(cursor: info.cursor, maxHLC: info.maxHLC, rows: rows), originSeq)
    }

    /// What the file's `snapshot_meta` in `schema` says, checked: a format this build reads, a
    /// cursor, and the store's sequence number.
    private static func header(_ db: Database, schema: String, originSeq answered: UInt64?) throws -> (info: Info, originSeq: UInt64) {
        let meta = try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM \(schema).snapshot_meta")
            .map { (row: Row) -> (String, String) in (row["key"], row["value"]) })
        guard let fileFormat = meta["format"], readable.contains(fileFormat) else {
            throw Unreadable(description: "a snapshot file of format \(meta["format"] ?? "none"); this build reads \(readable.sorted().joined(separator: ", "))")
        }
        guard let cursor = meta["cursor"].flatMap({ Int64($0) }),
              let hlc = meta["max_hlc"].flatMap({ Int64($0) }).flatMap(HLCTimestamp.init(packed:)) else {
            throw Unreadable(description: "a snapshot file without its cursor")
        }
        // Never a guess: a node that numbered its operations from a wrong sequence number would
        // give new operations the ids of its store's old ones (a replaced machine).
        guard let originSeq = fileFormat == "1" ? meta["origin_seq"].flatMap({ UInt64($0) }) : answered else {
            throw Unreadable(description: "a snapshot file without the store's sequence number")
        }
        return (Info(cursor: cursor, maxHLC: hlc, rows: meta["rows"].flatMap { Int64($0) } ?? 0), originSeq)
    }

    /// What `adopt` did.
    enum Adoption: Equatable {
        /// The node was bootstrapped already: nothing was done.
        case alreadyBootstrapped
        /// The node's database is now the file, with the node's settings and the file's rows of state.
        case adopted(rows: Int64)
        /// The file cannot be taken whole (another schema or page size, a file cut short, or a
        /// node with something of its own): nothing was done, and its tables are to be loaded.
        case notAdoptable
    }

    /// Takes the whole file at `path` as the database of the node `pool` opens, when the file
    /// is the database this build would make (the same tables, indexes and migrations, the same
    /// page size, every page there) and the node holds nothing of its own yet but its settings
    /// (`meta`): SQLite's backup copies the file's pages into the node's database in one write,
    /// instead of inserting ten million rows and sorting their indexes again (24-27 s at a
    /// million members). The file is the node's own copy, received for this load, and is
    /// changed: the node's settings and the end of its bootstrap (`finish`) are written into it
    /// first, so the copy is the only commit, and replaces the node's database with a
    /// bootstrapped one at once or not at all. After a failed copy the file is only fit to be
    /// deleted (the caller does, and receives it again). Throws `Unreadable` as `load` does.
    static func adopt(_ path: String, originSeq answered: UInt64?, into pool: DatabasePool,
                      finish: (Info, UInt64, Database) throws -> Void) throws -> Adoption {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = OFF")
            try db.execute(sql: "PRAGMA synchronous = OFF")
        }
        let source: DatabaseQueue
        do {
            source = try DatabaseQueue(path: path, configuration: config)
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT, .SQLITE_CANTOPEN].contains(error.resultCode) {
            throw Unreadable(description: "the snapshot file is not a database: \(error.message ?? "\(error.resultCode)")")
        }
        defer { try? source.close() }
        let bytes = Int64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        return try pool.writeWithoutTransaction { node -> Adoption in
            guard try Meta.get("bootstrapped", node) != "1" else { return .alreadyBootstrapped }
            return try source.inDatabase { file -> Adoption in
                let (info, originSeq): (Info, UInt64)
                do {
                    (info, originSeq) = try header(file, schema: "main", originSeq: answered)
                } catch let error as DatabaseError where [.SQLITE_ERROR, .SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
                    throw Unreadable(description: "the snapshot file does not fit this build: \(error.message ?? "\(error.resultCode)")")
                }
                let pageSize = try Int64.fetchOne(file, sql: "PRAGMA page_size") ?? 0
                // Every page there (the copy reads none of them: a file cut short is loaded by
                // table instead, and found out there).
                guard try schema(file) == schema(node),
                      try pageSize == Int64.fetchOne(node, sql: "PRAGMA page_size"),
                      try bytes == pageSize * (Int64.fetchOne(file, sql: "PRAGMA page_count") ?? 0),
                      try isBlank(file), try isBlank(node) else { return .notAdoptable }
                let settings = try Row.fetchAll(node, sql: "SELECT key, value FROM meta")
                try file.inTransaction {
                    try file.execute(sql: "DROP TABLE snapshot_meta")
                    for row in settings {
                        try file.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [row["key"], row["value"]])
                    }
                    try finish(info, originSeq, file)
                    return .commit
                }
                // The copy's commit would also copy it from the log into the database file before
                // returning (seconds at a million members): the caller has that done beside.
                return try SQLiteFiles.withoutAutocheckpoint(node) {
                    do {
                        try SQLiteFiles.guarded { try file.backup(to: node) }
                    } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
                        throw Unreadable(description: "the snapshot file is damaged: \(error.message ?? "\(error.resultCode)")")
                    }
                    // SQLite tells its log hook of the copy's frames when the connection's next
                    // statement completes: that must happen while the hook is off, or the hook,
                    // back on, copies the whole log into the database first (15 s at a million
                    // members, measured). This statement, read to its end, is that one, and
                    // checks the copy.
                    guard try String.fetchAll(node, sql: "SELECT value FROM meta WHERE key = 'bootstrapped'") == ["1"] else {
                        throw DomainError(.internalError, "a snapshot file was copied in but the node is not bootstrapped")
                    }
                    return .adopted(rows: info.rows)
                }
            }
        }
    }

    /// The tables, indexes and migrations of a database, but the snapshot's own table and
    /// SQLite's statistics: equal for two files of the same schema.
    private static func schema(_ db: Database) throws -> [String] {
        let objects = try String.fetchAll(db, sql: """
            SELECT type || ' ' || name || ' ' || tbl_name || ' ' || COALESCE(sql, '') FROM sqlite_master
            WHERE tbl_name <> 'snapshot_meta' AND name NOT LIKE 'sqlite_stat%' ORDER BY type, name
            """)
        guard try db.tableExists("grdb_migrations") else { return objects }
        let migrations = try String.fetchAll(db, sql: "SELECT 'migration ' || identifier FROM grdb_migrations ORDER BY identifier")
        return objects + migrations
    }

    /// Nothing of a node's own: no operation, no answer kept for a retry, never bootstrapped.
    private static func isBlank(_ db: Database) throws -> Bool {
        try Int.fetchOne(db, sql: "SELECT (SELECT COUNT(*) FROM ops) + (SELECT COUNT(*) FROM idempotency)") == 0
            && Meta.get("bootstrapped", db) != "1"
    }
}
