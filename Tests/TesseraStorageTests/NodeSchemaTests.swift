import Foundation
import Testing
import GRDB
import TesseraCore
@testable import TesseraStorage

@Suite("A node's table of operations")
struct NodeSchemaTests {
    let dir: TempDir

    init() throws { dir = try TempDir() }

    @Test("made again lean (node-v3): a node's operations are kept with their rowids; the same id twice and an unknown status are still refused; an insert builds no temporary B-tree")
    func leanOperations() throws {
        let path = dir.path("old.sqlite")
        // A node as a build before node-v3 left it, with an operation of its own and one pulled.
        do {
            let queue = try DatabaseQueue(path: path)
            try NodeStore.migrator.migrate(queue, upTo: "node-v2-ops-status-unacked")
            try queue.write { db in
                try db.execute(sql: """
                    INSERT INTO ops (rowid, id, origin, seq, hlc, kind, kind_version, body, member_id, status, offline_minor, day)
                        VALUES (7, 's1:1', 's1', 1, 100, 'purchase', 1, '{"a":1}', 'm-1', 'pending', 250, 20000);
                    INSERT INTO ops (rowid, id, origin, seq, hlc, kind, kind_version, body, member_id, status, version)
                        VALUES (9, 's2:4', 's2', 4, 200, 'value.recharged', 1, '{"b":2}', 'm-2', 'acked', 31);
                    """)
            }
            try queue.close()
        }
        let node = try NodeStore(path: path, store: s1)
        try node.pool.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT rowid, id, status, version, offline_minor, day, body FROM ops ORDER BY rowid")
            #expect(rows.map { $0[0] as Int64 } == [7, 9])
            #expect(rows.map { $0[1] as String } == ["s1:1", "s2:4"])
            #expect(rows[0][2] as String == "pending" && rows[0][4] as Int64 == 250 && rows[0][5] as Int64 == 20000)
            #expect(rows[1][3] as Int64 == 31 && rows[1][6] as String == #"{"b":2}"#)
            // Its indexes: the id's, the unacknowledged by status, the offline spends by member and
            // day (both partial); not (origin, seq), not every operation by member.
            let indexes = try Row.fetchAll(db, sql: "PRAGMA index_list(ops)").map { $0["name"] as String }.sorted()
            #expect(indexes == ["ops_offline", "ops_status", "sqlite_autoindex_ops_1"])
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ops INDEXED BY ops_status WHERE status <> 'acked'") == 1)
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ops INDEXED BY ops_offline WHERE day IS NOT NULL") == 1)
            // A member's offline spends of a day are read through it (NodeStore.offlineSpent, as written there).
            let plan = try String.fetchAll(db, sql: """
                EXPLAIN QUERY PLAN SELECT COALESCE(SUM(offline_minor), 0) FROM ops WHERE origin = ? AND day = ? AND member_id = ?
                """, arguments: ["s1", 20000, "m-1"], adapter: ColumnMapping(["detail": "detail"])).joined(separator: "; ")
            #expect(plan.contains("USING INDEX ops_offline"), "\(plan)")

            let insert = """
                INSERT INTO ops (id, origin, seq, hlc, kind, kind_version, body, member_id, status, version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: ["s2:4", "s2", 4, 1, "purchase", 1, "{}", nil, "acked", 1]) }
            #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: ["s2:5", "s2", 5, 1, "purchase", 1, "{}", nil, "lost", 1]) }
            #expect(throws: DatabaseError.self) { try db.execute(sql: insert, arguments: ["s2:0", "s2", 0, 1, "purchase", 1, "{}", nil, "acked", 1]) }
            for status in ["pending", "acked", "authorizing", "refused", "voided", "rejected"] {
                try db.execute(sql: insert, arguments: ["s3:\(status.count)\(status.first!)", "s3", status.count * 100 + Int(status.first!.asciiValue!), 1,
                                                        "purchase", 1, "{}", nil, status, 1])
            }
            // A check with `IN` a list of more than two values built one for every statement run.
            for (sql, count) in [(insert, 10), ("UPDATE ops SET status = ?, version = ? WHERE id = ?", 3)] {
                let program = try String.fetchAll(db, sql: "EXPLAIN " + sql, arguments: StatementArguments(Array(repeating: nil as String?, count: count)),
                                                  adapter: ColumnMapping(["opcode": "opcode"]))
                #expect(!program.contains("OpenEphemeral"), "\(sql)")
            }
        }
    }
}
