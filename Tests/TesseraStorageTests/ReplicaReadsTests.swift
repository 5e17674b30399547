import Foundation
import Testing
import GRDB
import TesseraCore
@testable import TesseraStorage

@Suite("Reads of a member's state")
struct ReplicaReadsTests {
    @Test("a member's current card is the one SQLite's ORDER BY issued DESC, card DESC would take first: blocked and unissued cards left out, ties by number, bytes compared as SQLite does")
    func currentCard() throws {
        let dir = try TempDir()
        let node = try NodeStore(path: dir.path("n.sqlite"), store: s1)
        var rng = SplitMix64(seed: 7)
        // Stamps and numbers from a few values, so that ties happen; "é" in two forms (one
        // byte sequence sorts before the other, though Swift finds them equal).
        let stamps = ["0000000000000001/s1", "0000000000000002/s1", "0000000000000002/s2", "e\u{301}", "\u{e9}", nil]
        let numbers = ["S1-000001", "S1-000002", "S2-000001", "c\u{e9}", "ce\u{301}"]
        try node.pool.write { db in
            for round in 0..<200 {
                let member = "m-\(round)"
                let count = Int(rng.next() % 4)
                for i in 0..<count {
                    let issued = stamps[Int(rng.next() % UInt64(stamps.count))]
                    let card = numbers[Int(rng.next() % UInt64(numbers.count))] + "-\(round)-\(i % 2)"
                    try db.execute(sql: "INSERT OR IGNORE INTO cards (card, member_id, issued, blocked) VALUES (?, ?, ?, ?)",
                                   arguments: [card, member, issued, rng.next() % 4 == 0 ? 1 : 0])
                }
                let sorted = try String.fetchOne(db, sql: """
                    SELECT card FROM cards WHERE member_id = ? AND blocked = 0 AND issued IS NOT NULL
                    ORDER BY issued DESC, card DESC LIMIT 1
                    """, arguments: [member])
                #expect(try Replica.currentCard(of: MemberID(member), db)?.rawValue == sorted, "\(member)")
            }
        }
    }
}
