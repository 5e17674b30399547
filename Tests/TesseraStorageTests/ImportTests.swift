import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// A chain's existing members brought into the hub: ordinary operations, checked first,
/// idempotent by row, and folded by every node like any other operation.
@Suite("Importing members")
final class ImportTests {
    let dir: TempDir
    private(set) var hub: HubStore!
    let clock = TestClock()

    init() throws { dir = try TempDir() }

    func use(_ backend: Backend) throws {
        hub = try backend.hubWithTwoStores(dir)
    }

    static let file = """
        phone,name,birthday,card,principal,bonus,points,store,reference
        +1 555 0100,"Lovelace, Ada",1990-12-10,OLD-1|OLD-2,10000,500,1200,s1,A-1
        +15550101,Bob,,OLD-3,0,0,0,s2,A-2
        +15550102,Cy,12-24,,2550,0,0,s1,A-3

        """

    func rows(_ text: String = ImportTests.file) throws -> [MemberImport.Row] {
        let (rows, problems) = MemberImport.read(Array(text.utf8), format: .csv)
        try #require(problems.isEmpty, "\(problems)")
        return rows
    }

    @Test("imported members hold their opening balances and points as operations; a node folds the same; running the file again changes nothing",
          arguments: Backend.all)
    func importAndReimport(_ backend: Backend) throws {
        try use(backend)
        let report = try hub.importMembers(try rows(), batch: 2)
        #expect(report.imported == 3 && report.skipped.isEmpty && report.problems.isEmpty)
        let log = try hub.log()
        #expect(log.map(\.op.kind).filter { $0 == "balance.opened" }.count == 2)
        #expect(log.allSatisfy { $0.op.id.origin == .hub })

        let members = try hub.allMembers().sorted { $0.phone ?? "" < $1.phone ?? "" }
        #expect(members.map(\.phone) == ["+15550100", "+15550101", "+15550102"])
        let ada = members[0]
        #expect(ada.name == "Lovelace, Ada" && ada.birthday == "1990-12-10")
        #expect(ada.balance == 10_500 && ada.bonus == 500 && ada.points == 1_200)
        #expect(ada.card == CardNumber("OLD-1"), "the first card listed is the current one")
        #expect(members[2].balance == 2_550 && members[2].card?.rawValue.hasPrefix("HUB-") == true)

        // A store's node receives them by sync, with the same numbers, and can find the old cards.
        let node = try bootstrappedNode(dir, s2, hub: hub, clock: clock)
        #expect(try node.member(ada.id) == ada)
        #expect(try node.member(card: CardNumber("OLD-2")).id == ada.id)

        // The value is owed by the joining store (liabilities by store of issue).
        let owes = try hub.liabilities(asOf: nil)
        #expect(owes.principal == 12_550 && owes.bonus == 500)
        #expect(owes.stores.first { $0.store == "s1" }?.principal == 12_550)
        #expect(owes.stores.first { $0.store == "hub" } == nil)
        #expect(try hub.statement(of: ada.id).lines.first { $0.kind == "balance.opened" }?.store == "s1")

        let again = try hub.importMembers(try rows())
        #expect(again.imported == 0)
        #expect(again.skipped.map(\.line) == [2, 3, 4])
        #expect(again.skipped.allSatisfy { $0.reason.hasPrefix("already imported as ") })
        #expect(try hub.log().count == log.count)
    }

    @Test("summaries made again in one write over a log of more members than a write holds counted (10,000) are what a replay gives")
    func rebuildOverManyMembers() throws {
        try use(.sqlite)
        var text = "phone,name,principal,bonus,points,store,reference\n"
        for i in 0..<10_050 { text += "+1555\(String(format: "%07d", i)),M\(i),\(100 + i % 7),\(i % 3),\(i % 11),s\(1 + i % 2),R-\(i)\n" }
        let report = try hub.importMembers(try rows(text), batch: 2_000)
        #expect(report.imported == 10_050)
        let before = try hub.liabilities(asOf: nil)
        try hub.rebuildSummaries()
        #expect(try hub.checkSummaries().isEmpty)
        #expect(try hub.liabilities(asOf: nil) == before)
    }

    @Test("a phone a store already enrolled is reported and skipped; a card another member holds or an unknown store stops the whole import",
          arguments: Backend.all)
    func conflicts(_ backend: Backend) throws {
        try use(backend)
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        let bob = try enrol(one, "Bob", "+15550101")
        try sync(one, hub)
        let before = try hub.log().count

        let taken = try hub.importMembers(try rows("phone,name,card,store\n+15550109,Dee,\(bob.card?.rawValue ?? ""),s1\n+15550110,Eve,,north-9\n"))
        #expect(taken.problems.map(\.line) == [2, 3])
        #expect(taken.problems[0].message.contains("already belongs to member \(bob.id)"))
        #expect(taken.problems[1].message.contains("not registered"))
        #expect(taken.imported == 0)
        #expect(try hub.log().count == before, "nothing is written when any row is bad")

        let report = try hub.importMembers(try rows())
        #expect(report.imported == 2)
        #expect(report.skipped.map(\.line) == [3])
        #expect(report.skipped.first?.member == bob.id)
        #expect(report.skipped.first?.reason.contains("belongs to member") == true)
        #expect(try hub.member(bob.id)?.balance == 0, "the store's member is left as it was")
    }

    @Test("re-running a file after a store changed an imported member's phone finds the member by its reference: no second member, no second balance",
          arguments: Backend.all)
    func reimportAfterPhoneChange(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.importMembers(try rows())
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        let ada = try #require(try hub.allMembers().first { $0.phone == "+15550100" })
        _ = try one.update(ada.id, NodeAPI.Update(phone: "+15559999"), key: nil)
        try sync(one, hub)
        let before = try hub.liabilities(asOf: nil)
        let again = try hub.importMembers(try rows())
        #expect(again.imported == 0 && again.problems.isEmpty)
        #expect(again.skipped.first { $0.line == 2 }?.member == ada.id)
        #expect(try hub.liabilities(asOf: nil) == before)
        #expect(try hub.allMembers().count == 3)
    }

    @Test("a node whose build did not know balance.opened when it stored one applies it once upgraded (reopened by a build that knows it)")
    func upgradedNodeAppliesStoredKinds() throws {
        try use(.sqlite)
        let clock = self.clock
        let path = dir.path("old-node.sqlite")
        var node: NodeStore? = try NodeStore(path: path, store: s2, physicalMs: { clock.now() })
        try node?.bootstrap(try hub.snapshot(for: s2))
        _ = try hub.importMembers(try rows())
        if let node { try sync(node, hub) }
        let ada = try #require(try hub.allMembers().first { $0.phone == "+15550100" })
        // As an older build leaves it: the operation stored, without its effects, and the kinds it knew recorded.
        try node?.pool.write { db in
            try db.execute(sql: "DELETE FROM entries WHERE op_id IN (SELECT id FROM ops WHERE kind = 'balance.opened')")
            try db.execute(sql: "UPDATE ops SET member_id = NULL WHERE kind = 'balance.opened'")
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('known_kinds', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [OperationKind.allCases.map(\.rawValue).filter { $0 != "balance.opened" }.joined(separator: ",")])
        }
        #expect(try node?.member(ada.id).balance == 0)
        node = nil
        let upgraded = try NodeStore(path: path, store: s2, physicalMs: { clock.now() })
        #expect(try upgraded.member(ada.id) == ada, "the stored opening balance takes effect")
        let again = try NodeStore(path: path, store: s2, physicalMs: { clock.now() })
        #expect(try again.member(ada.id) == ada, "and only once")
    }

    @Test("points whose expiry has passed are refused before anything is written", arguments: Backend.all)
    func pastExpiry(_ backend: Backend) throws {
        try use(backend)
        let report = try hub.importMembers(try rows("phone,name,points,points_expire_on,store\n+15550100,Ada,100,2001-01-01,s1\n"))
        #expect(report.problems.map(\.line) == [2] && report.imported == 0)
        #expect(try hub.log().isEmpty)
    }

    @Test("a store may not push an opening balance (only the hub imports)", arguments: Backend.all)
    func storesCannotOpenBalances(_ backend: Backend) throws {
        try use(backend)
        let op = Operation(id: OperationID(origin: s1, seq: 1), hlc: HLCTimestamp(wallMs: clock.now(), counter: 0),
                           body: .balanceOpened(BalanceOpened(member: MemberID("m-s1-1"), store: s1, value: 1_000, bonus: 0, points: 0)))
        let result = try hub.push([op], from: s1)
        #expect(result.map(\.status) == [.rejected])
        #expect(try hub.log().isEmpty)
    }

    @Test("what tessera export writes, tessera import reads back into another hub with the same numbers", arguments: Backend.all)
    func exportRoundTrip(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.importMembers(try rows())
        let exported = try hub.exportMembers()
        let text = CSV.text([ExportedMember.columns] + exported.map(\.fields))
        #expect(text.contains("'+15550100"), "a phone starting with + is kept from running as a formula")

        let other = try Backend.sqlite.hub(dir, "other")
        _ = try other.addStore(s1, name: "One")
        _ = try other.addStore(s2, name: "Two")
        let (rows, problems) = MemberImport.read(Array(text.utf8), format: .csv)
        #expect(problems.isEmpty)
        #expect(try other.importMembers(rows).imported == 3)
        let strip = { (m: ExportedMember) in [m.phone, m.name, m.birthday ?? "", m.card?.rawValue ?? "", "\(m.principal)", "\(m.bonus)", "\(m.points)", m.store, m.reference ?? ""] }
        #expect(try other.exportMembers().map(strip).sorted { $0[0] < $1[0] } == exported.map(strip).sorted { $0[0] < $1[0] })
    }
}
