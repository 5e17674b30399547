import Foundation
import GRDB
import GRDBSQLite
import Synchronization
import TesseraCore

/// Opens SQLite files the way every Tessera replica needs them: WAL, and `synchronous=FULL` on
/// the writer so that a committed operation survives a power cut (a till's success answer
/// promises that). GRDB's DatabasePool sets its writer to NORMAL after `prepareDatabase`, so
/// FULL is set again on the writer after opening; `synchronousMode` lets tests check it.
public enum SQLiteFiles {
    /// The size of a SQLite database with its write-ahead log, in bytes.
    public static func bytes(_ path: String) -> Int64 {
        ["", "-wal"].reduce(Int64(0)) { total, suffix in
            total + Int64((try? FileManager.default.attributesOfItem(atPath: path + suffix)[.size] as? Int) ?? 0)
        }
    }

    /// - Parameter cacheMiB: SQLite's page cache per connection (its default is 2 MiB). The hub
    ///   gives its fold more: at ten million operations its writes were mostly reads of pages
    ///   the default cache had let go (a `pread` for each), not work.
    public static func openPool(path: String, cacheMiB: Int? = nil) throws -> DatabasePool {
        var config = Configuration()
        config.busyMode = .timeout(10) // another process (e.g. `tessera store add`) may hold the lock briefly
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            if let cacheMiB { try db.execute(sql: "PRAGMA cache_size = -\(cacheMiB * 1024)") }
            // Once a large write (a bootstrap) is copied from the write-ahead log into the
            // database, the log starts over and is cut back to this size, not kept at the write's.
            try db.execute(sql: "PRAGMA journal_size_limit = \(64 << 20)")
        }
        let pool = try DatabasePool(path: path, configuration: config)
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            BackgroundCheckpoint.install(db)
        }
        return pool
    }

    /// Copies what the write-ahead log of the database at `path` holds into the database, on a
    /// connection and a thread of its own, without waiting for (or holding up) readers and
    /// writers: after a bootstrap the log holds the whole state, and the copy takes seconds that
    /// tills need not wait for. Reads meanwhile find their pages in the log; a crash meanwhile
    /// loses nothing (the log is the committed state). The writer's own checkpoints, which
    /// would otherwise make a till's commit do this copy, find this one running and pass.
    static func checkpointAside(_ path: String) {
        Thread.detachNewThread {
            do {
                let queue = try DatabaseQueue(path: path)
                defer { try? queue.close() }
                try queue.writeWithoutTransaction { db in
                    try db.execute(sql: "PRAGMA synchronous = FULL")
                    _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)")
                }
            } catch {
                // The next checkpoint of the writer's does the copy instead.
            }
        }
    }

    /// Runs `body` on `db` with its automatic checkpoints off, restored after: a write of the
    /// whole state (a bootstrap) is then not copied from the log into the database before its
    /// commit returns; `checkpointAside` makes that copy.
    static func withoutAutocheckpoint<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        BackgroundCheckpoint.suspend(db)
        defer { BackgroundCheckpoint.install(db) }
        return try body()
    }

    /// Runs a write, turning the disk's refusals (full, read-only, I/O error) into a clear
    /// `storage_unavailable`. SQLite rolls the whole transaction back, so nothing is
    /// half-written, and the till is told the operation did not happen.
    public static func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DatabaseError
            where [.SQLITE_FULL, .SQLITE_READONLY, .SQLITE_IOERR, .SQLITE_CANTOPEN, .SQLITE_CORRUPT, .SQLITE_NOTADB].contains(error.resultCode) {
            throw DomainError(.storageUnavailable,
                              "the database could not be written (\(error.resultCode): \(error.message ?? "")); nothing was recorded; free disk space or fix the data folder's permissions, then retry")
        }
    }

    /// `PRAGMA synchronous` as the writer connection sees it (2 means FULL).
    public static func synchronousMode(_ pool: DatabasePool) throws -> Int {
        try pool.writeWithoutTransaction { db in
            try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
        }
    }

    public static func journalMode(_ pool: DatabasePool) throws -> String {
        try pool.writeWithoutTransaction { db in
            try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? ""
        }
    }

    public static func integrityCheck(_ pool: DatabasePool) throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "" }
    }
}

/// JSON as Tessera writes it to disk and to the wire: sorted keys, so one value has one text.
/// It is what JSONEncoder with `[.sortedKeys, .withoutEscapingSlashes]` writes, byte for byte,
/// made by `JSONValueEncoder` and `JSONValue.jsonText` (tested to agree): a till's answer
/// is encoded in the writer's transaction (it is stored with its idempotency key), and
/// JSONEncoder was a tenth of the writer's time there.
enum JSONText {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONTextEncoder().encode(value), as: UTF8.self)
    }
    static func data<T: Encodable>(_ value: T) throws -> Data {
        Data(try JSONTextEncoder().encode(value))
    }
    /// Reads text through `JSONValueParser` and `JSONValueDecoder` (the same values and refusals
    /// as JSONDecoder, tested): every stored operation a node pushes or a hub reads back is read
    /// this way.
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let value = try JSONValueParser.parse(Data(text.utf8))
        if T.self == JSONValue.self, let value = value as? T { return value }
        return try JSONValueDecoder().decode(type, from: value)
    }
}

/// Now, as `isoTime` writes it. The hub stamps every pushed operation (`received_at`) and
/// every event with it: the text is made once per second and handed out until the next.
func isoNow() -> String {
    let ms = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    let second = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
    return isoNowText.withLock { kept in
        if kept.second != second { kept = (second, isoTime(ms: ms)) }
        return kept.text
    }
}

/// The second `isoNow` last wrote, and its text.
private let isoNowText = Mutex<(second: Int64, text: String)>((.min, ""))

/// A wall-clock time in milliseconds (an operation's stamp) as ISO 8601 in UTC to the second,
/// as `Date.ISO8601Format()` writes it (tested): `2026-12-03T20:50:25Z`. Written by hand: the
/// format style made for each call was 3 % of the hub's write time under ingest.
func isoTime(ms: Int64) -> String {
    let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let (y, m, d) = LocalDay(days).civil
    let inDay = seconds - days * 86_400
    func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    let year = y < 0 ? "-" + String(repeating: "0", count: max(0, 4 - String(-y).count)) + String(-y)
                     : String(repeating: "0", count: max(0, 4 - String(y).count)) + String(y)
    return "\(year)-\(two(m))-\(two(d))T\(two(inDay / 3_600)):\(two(inDay / 60 % 60)):\(two(inDay % 60))Z"
}

/// Copies the write-ahead log into the database file away from the writer. SQLite's automatic
/// checkpoint runs inside the commit that takes the log past 1,000 pages: about one till sale in
/// eighty (a sale writes a dozen pages) waited for a thousand pages to be copied and the database
/// file synced (the tills' commit p99 was 1 to 1.6 ms, and a commit took a whole second once the
/// disk was busy). Here the writer's commit only notes the log's length (SQLite's write-ahead-log
/// hook replaces its automatic checkpoint); past `frames` it asks one thread of the process for a
/// passive checkpoint on a connection of its own, which neither waits for nor holds up the writer
/// and the readers. The log starts over from its beginning only after a checkpoint that copied
/// all of it, and under steady writes the background one never quite does (pages keep coming):
/// a log that only grows makes every commit's sync slower (the file's size changes each time),
/// so once the background has copied all but `remainder` pages, the writer's next commit copies
/// those few itself, and the log starts over. Should the background fall behind (a disk far
/// slower than the writes), the writer copies everything itself past `writerFrames`.
enum BackgroundCheckpoint {
    static let frames: Int32 = 1_000
    static let remainder: Int32 = 128
    static let writerFrames: Int32 = 16_000

    private static let worker = DispatchQueue(label: "tessera-checkpoint")

    /// A writer connection's file and what the background has copied of its log.
    private final class Target: Sendable {
        let path: String
        /// What the last background checkpoint found: the log's length and how much of it was
        /// copied. `log` of a log that has started over since is larger than the current log:
        /// forgotten then. `round` counts forgettings, so that a copy begun before one is ignored.
        struct Progress {
            var asked = false, log: Int32 = 0, copied: Int32 = 0, round = 0
            mutating func forget() { log = 0; copied = 0; round += 1 }
        }
        let progress = Mutex(Progress())
        init(path: String) { self.path = path }
    }

    /// Replaces the automatic checkpoint of `db` (a pool's writer) with the background one.
    static func install(_ db: Database) {
        guard let connection = db.sqliteConnection, let name = sqlite3_db_filename(connection, "main") else { return }
        let path = String(cString: name)
        guard !path.isEmpty else { return } // in memory: no log to copy
        // Retained for as long as the connection may call the hook: a few bytes a database opened.
        let target = Unmanaged.passRetained(Target(path: path)).toOpaque()
        sqlite3_wal_hook(connection, { target, connection, schema, pages in
            guard let target else { return SQLITE_OK }
            let file = Unmanaged<Target>.fromOpaque(target).takeUnretainedValue()
            let copied = file.progress.withLock { p -> Int32 in
                // Every commit looks: a log that started over since the last copy (shorter than
                // the log that copy saw) owes it nothing, and copying "the last few pages" of
                // it would be copying all of them in the commit.
                if pages < p.log { p.forget() }
                return p.copied
            }
            guard pages >= BackgroundCheckpoint.frames else { return SQLITE_OK }
            if pages - copied <= BackgroundCheckpoint.remainder || pages >= BackgroundCheckpoint.writerFrames {
                sqlite3_wal_checkpoint_v2(connection, schema, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                file.progress.withLock { $0.forget() }
            } else {
                BackgroundCheckpoint.ask(file)
            }
            return SQLITE_OK
        }, target)
    }

    /// No checkpoint at all on `db` until `install` again (a bootstrap writing the whole state).
    static func suspend(_ db: Database) {
        guard let connection = db.sqliteConnection else { return }
        sqlite3_wal_hook(connection, nil, nil)
    }

    private static func ask(_ file: Target) {
        let asked: Int? = file.progress.withLock { p in
            if p.asked { return nil }
            p.asked = true
            return p.round
        }
        guard let round = asked else { return }
        worker.async {
            let done = checkpoint(file.path)
            file.progress.withLock { p in
                p.asked = false
                if let done, p.round == round { p.log = done.log; p.copied = done.copied }
            }
        }
    }

    /// A passive checkpoint of the file at `path` on a connection of its own: the log's length
    /// and how much of it is copied, or nil if it did not run (a file gone, as a test's folder
    /// once it is done).
    @discardableResult
    static func checkpoint(_ path: String) -> (log: Int32, copied: Int32)? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            return try queue.writeWithoutTransaction { db -> (log: Int32, copied: Int32)? in
                // The log starts over only once the copy is synced into the database file.
                try db.execute(sql: "PRAGMA synchronous = FULL")
                var log: Int32 = 0, copied: Int32 = 0
                guard sqlite3_wal_checkpoint_v2(db.sqliteConnection, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) == SQLITE_OK else { return nil }
                return (log, copied)
            }
        } catch {
            // The next one, or the writer's own, copies instead.
            return nil
        }
    }
}
