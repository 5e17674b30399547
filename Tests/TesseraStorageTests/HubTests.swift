import Foundation
import Testing
import TesseraCore
import TesseraProtocol
@testable import TesseraStorage
import GRDB
import CompressNIO
import TesseraTestSupport

/// Every case runs on each database the hub can use (PostgreSQL when a server is given).
@Suite("The hub")
final class HubTests {
    let dir: TempDir
    private(set) var hub: HubStore!
    let clock = TestClock()

    init() throws {
        dir = try TempDir()
    }

    func use(_ backend: Backend) throws {
        hub = try backend.hubWithTwoStores(dir)
    }

    func node(_ store: StoreID, limit: Int64 = 20_000) throws -> NodeStore {
        try bootstrappedNode(dir, store, hub: hub, clock: clock, limit: limit)
    }

    /// Store s1's node with Ada enrolled and recharged 900, and its outbox (those two, not pushed).
    func enrolledAndRecharged(_ backend: Backend) throws -> (NodeStore, MemberView, [TesseraCore.Operation]) {
        try use(backend)
        let one = try node(s1)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        return (one, ada, try one.pendingBatch(limit: 100))
    }

    @Test("pushing the same batch twice changes nothing: the retry gets the first versions back", arguments: Backend.all)
    func pushIsIdempotent(_ backend: Backend) throws {
        let (_, ada, batch) = try enrolledAndRecharged(backend)
        let first = try hub.push(batch, from: s1)
        let second = try hub.push(batch, from: s1)
        #expect(first.map(\.status) == [.accepted, .accepted])
        #expect(second.map(\.status) == [.duplicate, .duplicate])
        #expect(first.map(\.version) == second.map(\.version))
        #expect(try hub.log().count == 2)
        #expect(try hub.member(ada.id)?.balance == 900)
    }

    @Test("a push that carries an operation twice, or a void of one before it, gets the answers a push of one at a time would get", arguments: Backend.all)
    func pushWithinOneBatch(_ backend: Backend) throws {
        let (one, ada, batch) = try enrolledAndRecharged(backend)
        let twice = try hub.push([batch[0], batch[1], batch[0], batch[1]], from: s1)
        #expect(twice.map(\.status) == [.accepted, .accepted, .duplicate, .duplicate])
        #expect(twice[2].version == twice[0].version && twice[3].version == twice[1].version)
        #expect(try hub.log().count == 2)
        #expect(try hub.member(ada.id)?.balance == 900)

        // A recharge its store voided, the void ahead of it in the same push (and the recharge
        // twice): refused as voided, both times, and never counted.
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 500), key: nil)
        let recharge = try #require(try one.pendingBatch(limit: 100).last)
        let void = Operation(id: OperationID(origin: s1, seq: recharge.id.seq + 1_000), hlc: try #require(HLCTimestamp(packed: recharge.hlc.packed + 1)),
                             body: .operationVoided(OperationVoided(of: recharge.id, member: ada.id, reason: "test")))
        let answers = try hub.push([void, recharge, recharge], from: s1)
        #expect(answers.map(\.status) == [.accepted, .rejected, .rejected])
        #expect(answers[1].reason == answers[2].reason)
        #expect(try hub.member(ada.id)?.balance == 900)

        // The same a push apart (each operation once in its push: answered from what the push
        // read at its start): the void, then the voided recharge beside the one refused above.
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 300), key: nil)
        let third = try #require(try one.pendingBatch(limit: 100).last)
        let voidThird = Operation(id: OperationID(origin: s1, seq: third.id.seq + 2_000), hlc: try #require(HLCTimestamp(packed: third.hlc.packed + 1)),
                                  body: .operationVoided(OperationVoided(of: third.id, member: ada.id, reason: "test")))
        #expect(try hub.push([voidThird], from: s1).map(\.status) == [.accepted])
        let later = try hub.push([third, recharge, batch[1]], from: s1)
        #expect(later.map(\.status) == [.rejected, .rejected, .duplicate])
        #expect(later[1].reason == answers[1].reason && later[2].version == twice[1].version)
        #expect(try hub.member(ada.id)?.balance == 900)
        #expect(try hub.checkSummaries().isEmpty)
    }

    @Test("one push of many sales by a few members, a refund and a void among them: members' sums and activity, added up within the write, are what a replay of the log gives",
          arguments: Backend.all)
    func summariesAddedUpInAPush(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ada = try enrol(one, "Ada", "+15550100"), bob = try enrol(one, "Bob", "+15550101")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 5_000), key: nil)
        var sales: [OperationID] = []
        for i in 0..<12 {
            let member = i % 3 == 0 ? bob.id : ada.id
            guard case .answered(let answer) = try one.beginPurchase(member, NodeAPI.PurchaseRequest(amount: 700 + Int64(i), payFromBalance: false), key: nil),
                  answer.status == 201, let sale = try one.pendingBatch(limit: 100).last?.id else {
                Issue.record("sale \(i) not made")
                return
            }
            sales.append(sale)
        }
        guard case .answered(let refunded) = try one.beginRefund(sales[1], NodeAPI.RefundRequest(amount: 300), key: nil), refunded.status == 201 else {
            Issue.record("no refund")
            return
        }
        var batch = try one.pendingBatch(limit: 100)
        // The store voids one of Ada's sales after it was made: the hub reverses it and counts the
        // member's activity again from the log, in the middle of the push.
        let voided = try #require(batch.first { $0.id == sales[2] })
        let last = try #require(batch.last)
        batch.append(Operation(id: OperationID(origin: s1, seq: last.id.seq + 1), hlc: try #require(HLCTimestamp(packed: last.hlc.packed + 1)),
                               body: .operationVoided(OperationVoided(of: voided.id, member: ada.id, reason: "test"))))
        batch += try (0..<3).map { i in
            Operation(id: OperationID(origin: s1, seq: last.id.seq + 2 + UInt64(i)), hlc: try #require(HLCTimestamp(packed: last.hlc.packed + 2 + Int64(i))),
                      body: .purchase(Purchase(member: bob.id, amount: 100 + Int64(i))))
        }
        #expect(try hub.push(batch, from: s1).allSatisfy { $0.status == .accepted })
        // The replay's profiles (purchases, the last, spend less refunds), breakage and liabilities.
        #expect(try hub.checkSummaries().isEmpty)
        #expect(try hub.member(bob.id)?.balance == 0 && hub.member(ada.id)?.balance == 5_000)
        // Made again in one pass over the log (an upgraded hub's), with the void in it.
        try hub.rebuildSummaries()
        let rebuilt = try hub.checkSummaries()
        #expect(rebuilt.isEmpty, "\(rebuilt)")
    }

    @Test("a pull page written straight from the log is the page JSONEncoder makes of the operations, byte for byte on SQLite", arguments: Backend.all)
    func pullPageText(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        // Names that need escaping, every kind of body value, and more than one page.
        let ada = try enrol(one, "Ada \"the\" \\ Lovelace\u{7}\t/é😀", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        _ = try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 450, payFromBalance: false), key: nil)
        for i in 0..<5 { _ = try enrol(one, "M\(i)", "+1555020\(i)") }
        try sync(one, hub)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var cursor: Int64 = 0
        var pages = 0
        while true {
            let typed = try hub.pull(after: cursor, limit: 3, for: s2, pending: nil)
            let text = Array(try hub.pullJSON(after: cursor, limit: 3, for: s2, pending: nil).readableBytesView)
            let read = try JSONDecoder().decode(PullResponse.self, from: Data(text))
            #expect(read.ops == typed.ops && read.cursor == typed.cursor && read.more == typed.more && read.protocol == typed.protocol)
            // As a node reads it: scanned, with each body's text as the hub wrote it, which is
            // the text the node would write of the body itself (it stores it as it is).
            let scanned = try PullResponse.read(from: Data(text))
            #expect(scanned.ops == typed.ops && scanned.cursor == typed.cursor && scanned.more == typed.more && scanned.protocol == typed.protocol)
            #expect(scanned.bodyTexts == typed.ops.map(\.op.body.jsonText))
            if backend == .sqlite {
                #expect(String(decoding: text, as: UTF8.self) == String(decoding: try encoder.encode(typed), as: UTF8.self))
            }
            pages += 1
            cursor = typed.cursor
            if !typed.more { break }
        }
        #expect(pages >= 3)
        let empty = Array(try hub.pullJSON(after: cursor, limit: 3, for: s2, pending: 0).readableBytesView)
        #expect(String(decoding: empty, as: UTF8.self) == #"{"cursor":\#(cursor),"more":false,"ops":[],"protocol":1}"#)
    }

    @Test("pull pages served from the operations kept from earlier pages are the pages read from the log, from every cursor, as the log grows and as kept ones are let go",
          arguments: Backend.all)
    func pullPagesKept(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        func work(_ n: Int, _ tag: String) throws {
            for i in 0..<n {
                let m = try enrol(one, "\(tag)\(i)", "+1555\(tag == "A" ? "03" : "04")00\(i)")
                _ = try one.recharge(m.id, NodeAPI.Recharge(amount: 100 + Int64(i)), key: nil)
            }
            try sync(one, hub)
        }
        /// Every page from every cursor (0 and each version) at limits 1 to 4, as `pullJSON`
        /// serves it, checked against the page `pull` reads from the log.
        func everyPage() throws -> Int {
            let versions = try [0] + hub.log().map(\.version)
            var checked = 0
            for cursor in versions {
                for limit in 1...4 {
                    let typed = try hub.pull(after: cursor, limit: limit, for: s2, pending: nil)
                    let text = Array(try hub.pullJSON(after: cursor, limit: limit, for: s2, pending: nil).readableBytesView)
                    let read = try JSONDecoder().decode(PullResponse.self, from: Data(text))
                    #expect(read.ops == typed.ops && read.cursor == typed.cursor && read.more == typed.more, "after \(cursor), limit \(limit)")
                    checked += 1
                }
            }
            return checked
        }
        try work(4, "A")
        #expect(try everyPage() >= 36)
        let kept = hub.pullCache.held
        #expect(kept.links == (try hub.log().count), "every operation is kept under the version before it")
        // The log grows: pages that ended at the head (no link past it) now go on past it.
        try work(3, "B")
        _ = try everyPage()
        #expect(hub.pullCache.held.links == (try hub.log().count))

        // A small cache lets the oldest links go and still serves every page right.
        let small = PullCache(capacityBytes: 2_000)
        let rows = try hub.ledger.page(after: 0, limit: 1_000)
        small.keep(after: 0, rows.map { PullCache.Link(version: $0.version, id: $0.id, json: HubStore.pullElement($0)) })
        #expect(small.held.bytes <= 2_000 && small.held.links < rows.count && small.held.links > 0)
        #expect(small.links(after: 0, limit: 1_000).isEmpty, "the first links went first")
        let tail = try #require(rows.last)
        let before = try #require(rows.dropLast().last)
        #expect(small.links(after: before.version, limit: 5).map(\.version) == [tail.version])

        // A PostgreSQL log that went back in time under the hub (restored or failed over, here
        // one operation's row made another's): nothing kept from before is served again.
        if let postgres = hub.ledger as? PostgresLedger {
            let renamed = OperationID(origin: s1, seq: 999_999).description
            _ = try postgres.link.run("UPDATE ops SET id = \(renamed) WHERE version = \(tail.version)")
            let page = try JSONDecoder().decode(PullResponse.self, from: Data(try hub.pullJSON(after: before.version, limit: 5, for: s2, pending: nil).readableBytesView))
            #expect(page.ops.map(\.op.id.description) == [renamed])
            #expect(try hub.pull(after: 0, limit: 1_000, for: s2, pending: nil).ops ==
                    JSONDecoder().decode(PullResponse.self, from: Data(try hub.pullJSON(after: 0, limit: 1_000, for: s2, pending: nil).readableBytesView)).ops)
        }
    }

    @Test("a page ends at the next multiple of the span: at the boundary itself once anything beyond it is known, even across versions the log skipped")
    func pageCut() {
        let span = PullPaging.span
        func cut(_ cursor: Int64, _ versions: [Int64], _ limit: Int64) -> [Int64] {
            let c = PullPaging.cut(after: cursor, versions: versions, limit: Int(limit))
            return [Int64(c.count), c.next, c.more ? 1 : 0]
        }
        #expect(cut(0, [], 5) == [0, 0, 0], "nothing new: the cursor stays")
        #expect(cut(7, [8, 9, 10], span) == [3, 10, 0], "at the head: the last operation")
        #expect(cut(0, [1, 2, 3], 2) == [2, 2, 1], "cut by the limit: the last operation, more")
        #expect(cut(span - 2, [span - 1, span, span + 1], span) == [2, span, 1], "cut at the boundary")
        #expect(cut(span - 2, [span - 1, span + 1], span) == [1, span, 1], "the boundary skipped: the cursor moves to it")
        #expect(cut(0, [span + 5, span + 6], span) == [0, span, 1], "a whole span skipped: an empty page, and the store asks on from the boundary")
        #expect(cut(span + 500, [span + 501, 2 * span + 1], span) == [1, 2 * span, 1])
        #expect(cut(span, Array((span + 1)...(2 * span + 1)), span) == [span, 2 * span, 1], "a whole page")
        #expect(cut(span, Array((span + 1)...(2 * span)), span) == [span, 2 * span, 0], "up to the head, nothing beyond yet: not known whole")
        #expect(PullPaging.boundary(after: 0) == span && PullPaging.boundary(after: span - 1) == span && PullPaging.boundary(after: span) == 2 * span)
        // A cursor at the very end of Int64 (any store may send one): no trap, nothing there.
        #expect(PullPaging.boundary(after: .max) == .max && PullPaging.boundary(after: .max - span / 2) == .max)
        #expect(PullPaging.boundary(after: .max - span) == .max / span * span)
        #expect(cut(.max, [], span) == [0, .max, 0])
    }

    @Test("pages end at multiples of the span, every operation is pulled once from any cursor, and whole pages go out gzipped, made once", arguments: Backend.all)
    func wholePages(_ backend: Backend) throws {
        try use(backend)
        let span = PullPaging.span
        let one = try node(s1)
        let ada = try enrol(one, "Ada", "+15550100")
        for _ in 0..<(2 * Int(span) + 100) { _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 1), key: nil) }
        try sync(one, hub)
        let log = try hub.log().map(\.version)
        let head = try #require(log.last)
        #expect(head > 2 * span)

        #expect(try hub.pull(after: .max, limit: SyncLimits.pullPageMax, for: s2, pending: nil).ops.isEmpty)
        #expect(try !hub.pullPage(after: .max, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true).gzipped)

        // From 0, from within a page and from a boundary: pages end at the next boundary (or the
        // head), and following them gives every operation once.
        for start in [Int64(0), 1, span / 2, span - 1, span, span + 1] {
            var cursor = start
            var pulled: [Int64] = []
            while true {
                let page = try hub.pull(after: cursor, limit: SyncLimits.pullPageMax, for: s2, pending: nil)
                let end = PullPaging.boundary(after: cursor)
                #expect(page.ops.allSatisfy { $0.version > cursor && $0.version <= end }, "after \(cursor)")
                #expect(page.cursor == (page.more ? end : head), "after \(cursor)")
                pulled += page.ops.map(\.version)
                cursor = page.cursor
                if !page.more { break }
            }
            #expect(pulled == log.filter { $0 > start }, "from \(start)")
        }

        // A whole page, asked for gzipped: gzipped once, kept, and it inflates to the page as
        // written for a store that does not take gzip.
        let plain = try hub.pullJSON(after: span, limit: SyncLimits.pullPageMax, for: s2, pending: nil)
        let gzipped = try hub.pullPage(after: span, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true)
        #expect(gzipped.gzipped && gzipped.body.readableBytes * 5 < plain.readableBytes)
        var packed = gzipped.body
        #expect(try packed.decompress(with: .gzip()) == plain)
        #expect(hub.sharedPages.held.pages == 1)
        #expect(try hub.pullPage(after: span, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true).body == gzipped.body)
        #expect(hub.sharedPages.held.pages == 1, "served from the one kept")
        // Not whole, or not asked for the whole page: sent as written.
        #expect(try !hub.pullPage(after: 2 * span, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true).gzipped, "at the head")
        #expect(try !hub.pullPage(after: span + 1, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true).gzipped, "from within a page")
        #expect(try !hub.pullPage(after: span, limit: 10, for: s2, pending: nil, gzip: true).gzipped, "a smaller page")
        #expect(try !hub.pullPage(after: 0, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: false).gzipped, "a store that does not take gzip")
        #expect(hub.sharedPages.held.pages == 1)

        // A PostgreSQL log that went back in time under the hub: a kept page is not served again.
        if let postgres = hub.ledger as? PostgresLedger {
            let renamed = OperationID(origin: s1, seq: 999_999).description
            let last = try #require(log.last { $0 <= 2 * span })
            _ = try postgres.link.run("UPDATE ops SET id = \(renamed) WHERE version = \(last)")
            var page = try hub.pullPage(after: span, limit: SyncLimits.pullPageMax, for: s2, pending: nil, gzip: true).body
            let read = try JSONDecoder().decode(PullResponse.self, from: Data(try page.decompress(with: .gzip()).readableBytesView))
            #expect(read.ops.last?.op.id.description == renamed)
        }
    }

    @Test("kept links follow versions the log skipped, stretches kept out of order and far apart, runs kept one after another, and let the oldest kept go first")
    func pullCacheRuns() {
        func links(_ versions: [Int64]) -> [PullCache.Link] {
            versions.map { PullCache.Link(version: $0, id: "s1:\($0)", json: Array(repeating: 0x20, count: 100)) }
        }
        let cache = PullCache(capacityBytes: 100_000)
        // Versions 3, 4 and 8 skipped (a hole is an empty slot, stepped over).
        cache.keep(after: 0, links([1, 2, 5, 6, 7, 9]))
        #expect(cache.links(after: 0, limit: 10).map(\.version) == [1, 2, 5, 6, 7, 9])
        #expect(cache.links(after: 2, limit: 2).map(\.version) == [5, 6])
        #expect(cache.links(after: 3, limit: 10).isEmpty, "no link kept after a version the log never had")
        #expect(cache.links(after: 9, limit: 10).isEmpty)
        // The next stretch (a run of its own, walked on from the first), then ones far apart.
        cache.keep(after: 9, links([10, 11]))
        #expect(cache.links(after: 5, limit: 10).map(\.version) == [6, 7, 9, 10, 11])
        let below = PullCache(capacityBytes: 100_000)
        below.keep(after: 500, links([501, 502]))
        below.keep(after: 100, links([101, 102]))
        #expect(below.links(after: 100, limit: 10).map(\.version) == [101, 102])
        #expect(below.links(after: 500, limit: 10).map(\.version) == [501, 502])
        #expect(below.held.links == 4)
        below.keep(after: 50_000_000, links([50_000_001, 50_000_002]))
        #expect(below.links(after: 50_000_000, limit: 10).map(\.version) == [50_000_001, 50_000_002])
        #expect(below.links(after: 502, limit: 10).isEmpty)
        #expect(below.held.links == 6)
        // Past capacity the oldest kept go first; a stretch read again is kept again, as the newest.
        let small = PullCache(capacityBytes: 2_000)
        small.keep(after: 0, links(Array(1...40)))
        let held = small.held
        #expect(held.bytes <= 2_000 && held.links > 0 && held.links < 40)
        #expect(small.links(after: 0, limit: 5).isEmpty)
        #expect(small.links(after: Int64(40 - held.links), limit: 100).map(\.version) == Array(Int64(41 - held.links)...40))
        small.keep(after: 0, links([1, 2]))
        #expect(small.links(after: 0, limit: 2).map(\.version) == [1, 2])
        #expect(small.held.bytes <= 2_000)
        // Many pages through a small window: compaction keeps what is served right.
        let rolling = PullCache(capacityBytes: 50_000)
        for start in stride(from: Int64(0), to: 20_000, by: 100) {
            rolling.keep(after: start, links(Array((start + 1)...(start + 100))))
            #expect(rolling.links(after: start, limit: 100).map(\.version) == Array((start + 1)...(start + 100)))
        }
        #expect(rolling.held.bytes <= 50_000)
    }

    @Test("an operation from a store whose clock runs an hour ahead is kept, reported once, and does not drag the hub's clock", arguments: Backend.all)
    func clockAhead(_ backend: Backend) throws {
        try use(backend)
        let clock = TestClock(1_800_000_000_000)
        let hub = try backend.hub(dir, "skew", physicalMs: { clock.now() })
        _ = try hub.addStore(s1, name: "One")
        let ahead = HLCTimestamp(wallMs: clock.now() + 3_600_000, counter: 0)
        let ops = (1...3).map { seq in
            TesseraCore.Operation(id: OperationID(origin: s1, seq: UInt64(seq)), hlc: HLCTimestamp(wallMs: ahead.wallMs, counter: UInt16(seq)),
                                  body: .memberEnrolled(MemberEnrolled(member: MemberID(enrolment: OperationID(origin: s1, seq: UInt64(seq))),
                                                                       card: CardNumber("C\(seq)"), name: "Ahead", phone: "+1555099\(seq)")))
        }
        #expect(try hub.push(Array(ops.prefix(2)), from: s1).map(\.status) == [.accepted, .accepted])
        let reports = try hub.exceptions(limit: 10).filter { $0.kind == "clock_ahead" }
        #expect(reports.count == 1 && reports.first?.detail.contains("60 minutes ahead") == true)
        // The hub's own next operation is stamped near its own time, not an hour on.
        let published = try hub.publishRules(Programme(version: 1, name: "t").json)
        let stamped = try #require(try hub.log().first { $0.op.id == published.op }).op.hlc.wallMs
        #expect(stamped - clock.now() <= 5 * 60 * 1000)
        // More from the same store within the hour: no second report.
        clock.advance(60_000)
        #expect(try hub.push([ops[2]], from: s1).first?.status == .accepted)
        #expect(try hub.exceptions(limit: 10).filter { $0.kind == "clock_ahead" }.count == 1)
        // A snapshot, and the hub's clock when it opens again, start from the log's highest stamp.
        #expect(try hub.snapshotPage(for: s1, page: nil, limit: 10).maxHLC == (try hub.log().map(\.op.hlc).max()))
        #expect(try hub.pool.read { db in try HubStore.maxHLC(db) } == (try hub.pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(hlc) FROM ops") }))
    }

    @Test("a programme whose zone is not whole quarter hours from UTC is refused at publishing, and nothing is written")
    func oddZoneRefused() throws {
        try use(.sqlite)
        let before = try hub.log().count
        var odd = Programme(version: 1, name: "odd")
        odd.timeZone = "GMT+05:07"
        #expect(throws: DomainError.self) { try hub.publishRules(odd.json) }
        #expect(try hub.log().count == before)
        odd.timeZone = "Asia/Kathmandu"
        _ = try hub.publishRules(odd.json)
        #expect(try hub.currentRules().timeZone == "Asia/Kathmandu")
    }

    @Test("the log's highest stamp is read through the (kind, hlc) index by seeks, not a walk over every operation (every snapshot page asks for it)")
    func highestStampBySeeks() throws {
        try use(.sqlite)
        #expect(try hub.pool.read { db in try HubStore.maxHLC(db) } == 0)
        let one = try node(s1)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        _ = try hub.push(try one.pendingBatch(limit: 100), from: s1)
        let plan = try hub.pool.read { db in try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + HubStore.maxHLCQuery(in: "main")).map { $0["detail"] as String } }
        // Seeks by kind ("kind=?"): a bare MAX(hlc) walks the whole index instead.
        #expect(plan.contains { $0.contains("ops_kind_hlc (kind=?)") } && !plan.contains { $0.hasPrefix("SCAN ops") }, "\(plan)")
        #expect(try hub.pool.read { db in try HubStore.maxHLC(db) } == (try hub.log().map(\.op.hlc.packed).max()))
    }

    @Test("a store may push only its own operations", arguments: Backend.all)
    func originIsChecked(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        _ = try enrol(one, "Ada", "+15550100")
        #expect(throws: DomainError(.originMismatch, "store s2 may push only its own operations, not s1:1")) {
            try hub.push(try one.pendingBatch(limit: 10), from: s2)
        }
        #expect(try hub.log().isEmpty)
    }

    @Test("a malformed operation is rejected, kept and reported, and does not block the rest of the batch", arguments: Backend.all)
    func rejectionIsReported(_ backend: Backend) throws {
        try use(backend)
        let bad = Operation(id: OperationID(origin: s1, seq: 1), hlc: HLCTimestamp(wallMs: 1, counter: 0), kind: "value.recharged", kindVersion: 1,
                            body: .object(["member": .string("m-s1-9"), "amount": .int(-5)]))
        let good = Operation(id: OperationID(origin: s1, seq: 2), hlc: HLCTimestamp(wallMs: 2, counter: 0), kind: "coupon.issued", kindVersion: 1,
                             body: .object(["code": .string("X")]))
        let results = try hub.push([bad, good], from: s1)
        #expect(results.map(\.status) == [.rejected, .accepted])
        #expect(try hub.push([bad], from: s1).first?.status == .rejected)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "rejected" && $0.op == "s1:1" })
        // The unknown kind is served to nodes exactly as it came.
        let pulled = try hub.pull(after: 0, limit: 10, for: s2, pending: nil)
        #expect(pulled.ops.map(\.op) == [good])
    }

    @Test("an operation with a kind that is not plain text, a kind_version or a sequence number out of range is rejected; the rest of the batch goes on",
          arguments: Backend.all)
    func oddOperationsAreRejected(_ backend: Backend) throws {
        try use(backend)
        let stamp = HLCTimestamp(wallMs: 1, counter: 0)
        let odd = [
            Operation(id: OperationID(origin: s1, seq: 1), hlc: stamp, kind: "x\u{0}y", kindVersion: 1, body: .object([:])),
            Operation(id: OperationID(origin: s1, seq: 2), hlc: stamp, kind: "future.kind", kindVersion: 4_294_967_296, body: .object([:])),
            Operation(id: OperationID(origin: s1, seq: UInt64.max), hlc: stamp, kind: "future.kind", kindVersion: 1, body: .object([:])),
        ]
        let good = Operation(id: OperationID(origin: s1, seq: 3), hlc: stamp, kind: "future.kind", kindVersion: 2, body: .object(["x": .int(1)]))
        #expect(try hub.push(odd + [good], from: s1).map(\.status) == [.rejected, .rejected, .rejected, .accepted])
        #expect(try hub.pull(after: 0, limit: 10, for: s2, pending: nil).ops.map(\.op) == [good])
    }

    @Test("numbers at Int64's very end are refused, never a trap (abs(Int64.min) would crash the hub)", arguments: Backend.all)
    func extremeNumbersAreRejected(_ backend: Backend) throws {
        try use(backend)
        let stamp = HLCTimestamp(wallMs: 1, counter: 0)
        let odd = [
            Operation(id: OperationID(origin: s1, seq: 1), hlc: stamp, kind: "points.adjusted", kindVersion: 1,
                      body: .object(["member": .string("m-s1-9"), "points": .int(.min), "reason": .string("x")])),
            Operation(id: OperationID(origin: s1, seq: 2), hlc: stamp, kind: "refund", kindVersion: 1,
                      body: .object(["member": .string("m-s1-9"), "of": .string("s1:9"), "amount": .int(1), "value": .int(.min), "bonus": .int(0)])),
        ]
        #expect(try hub.push(odd, from: s1).map(\.status) == [.rejected, .rejected])
        let (_, problems) = MemberImport.read(Array("phone,name,points,store\n+15550100,Ada,-9223372036854775808,s1\n".utf8), format: .csv)
        #expect(problems.map(\.line) == [2])
    }

    @Test("the same phone enrolled at two stores offline merges into the earlier enrolment; ids, cards and money resolve to it", arguments: Backend.all)
    func duplicateEnrolmentsMerge(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let early = try enrol(two, "Bo", "+15550200")
        _ = try two.recharge(early.id, NodeAPI.Recharge(amount: 2000), key: nil)
        clock.advance(1000)
        let late = try enrol(one, "Bo", "+15550200")
        _ = try one.recharge(late.id, NodeAPI.Recharge(amount: 3000), key: nil)
        try sync(one, hub)
        try sync(two, hub)
        try sync(one, hub)
        for replica in [try one.member(late.id), try two.member(late.id), try #require(try hub.member(late.id))] {
            #expect(replica.mergedInto == early.id)
            #expect(replica.balance == 5000)
        }
        #expect(try one.member(card: try #require(late.card)).mergedInto == early.id)
        #expect(try one.allMembers() == hub.allMembers())
        #expect(try two.allMembers() == hub.allMembers())
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "merge" && $0.member == early.id })
    }

    @Test("two stores spending the same money offline: both sales stand, the hub records an overdraft, and refuses further spends online", arguments: Backend.all)
    func offlineOverdraft(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let cy = try enrol(one, "Cy", "+15550300")
        _ = try one.recharge(cy.id, NodeAPI.Recharge(amount: 5000), key: nil)
        try sync(one, hub)
        try sync(two, hub)
        let buy = NodeAPI.PurchaseRequest(amount: 4000, payFromBalance: true)
        #expect(try spend(try one.beginPurchase(cy.id, buy, key: nil), node: one, hub: nil).status == 201)
        #expect(try spend(try two.beginPurchase(cy.id, buy, key: nil), node: two, hub: nil).status == 201)
        try sync(one, hub)
        try sync(two, hub)
        try sync(one, hub)
        #expect(try hub.member(cy.id)?.balance == -3000)
        #expect(try one.member(cy.id).balance == -3000)
        #expect(try two.member(cy.id).balance == -3000)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "overdraft" && $0.member == cy.id })
        let small = try spend(try one.beginPurchase(cy.id, NodeAPI.PurchaseRequest(amount: 100, payFromBalance: true), key: nil), node: one, hub: hub)
        #expect(small.status == 402)
        #expect(small.errorCode == "insufficient_balance")
    }

    /// A member holding 5000 known to the hub, and a spend of 3000 at a node whose offline limit
    /// is 1000, written and waiting for the hub's answer.
    func spendAboveOfflineLimit() throws -> (NodeStore, MemberView, PendingSpend) {
        let one = try node(s1, limit: 1000)
        let gi = try enrol(one, "Gi", "+15550700")
        _ = try one.recharge(gi.id, NodeAPI.Recharge(amount: 5000), key: nil)
        try sync(one, hub)
        let pending = try awaitingHub(try one.beginPurchase(gi.id, NodeAPI.PurchaseRequest(amount: 3000, payFromBalance: true), key: nil))
        return (one, gi, pending)
    }

    @Test("a spend authorised by the hub whose answer was lost, then refused and voided by the node, is reversed visibly at the hub", arguments: Backend.all)
    func lostAuthorisationIsReversed(_ backend: Backend) throws {
        try use(backend)
        let (one, gi, pending) = try spendAboveOfflineLimit()
        // The hub accepts, but the answer never reaches the node ...
        #expect(try hub.authorize(AuthorizeRequest(prior: try one.prior(for: pending), op: pending.op), from: s1).decision == .accepted)
        // ... which decides offline: 3000 is above its limit of 1000, so the till is told no.
        let answer = try one.finishSpend(pending, outcome: .unreachable, key: nil)
        #expect(answer.status == 402 && answer.errorCode == "offline_limit_exceeded")
        try sync(one, hub)
        try sync(one, hub)
        #expect(try hub.member(gi.id)?.balance == 5000)
        #expect(try one.member(gi.id).balance == 5000)
        #expect(try one.member(gi.id).points == 0)
        #expect(try hub.log().contains { $0.op.kind == "operation.reversed" })
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "reversal" })
    }

    @Test("a spend voided before its authorisation reaches the hub is refused there, never applied", arguments: Backend.all)
    func lateAuthorisationAfterVoid(_ backend: Backend) throws {
        try use(backend)
        let (one, gi, pending) = try spendAboveOfflineLimit()
        _ = try one.finishSpend(pending, outcome: .unreachable, key: nil)
        try sync(one, hub)
        let late = try hub.authorize(AuthorizeRequest(prior: [], op: pending.op), from: s1)
        #expect(late.decision == .refused && late.code == .voided)
        #expect(try hub.member(gi.id)?.balance == 5000)
    }

    @Test("a hub's refusal stands for that request; a store that never heard it and sold offline is honoured and checked for overdraft", arguments: Backend.all)
    func refusalAndLostAnswer(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let di = try enrol(one, "Di", "+15550400")
        _ = try one.recharge(di.id, NodeAPI.Recharge(amount: 300), key: nil)
        try sync(one, hub)
        _ = try one.recharge(di.id, NodeAPI.Recharge(amount: 300), key: nil) // not yet at the hub
        let pending = try awaitingHub(try one.beginPurchase(di.id, NodeAPI.PurchaseRequest(amount: 500, payFromBalance: true), key: nil))
        #expect(try hub.authorize(AuthorizeRequest(prior: [], op: pending.op), from: s1).code == .insufficientBalance)
        try sync(one, hub)
        // The same request gets the same answer, even though the balance now covers it.
        #expect(try hub.authorize(AuthorizeRequest(prior: [], op: pending.op), from: s1).decision == .refused)
        // The node never heard the refusal: its policy allows 500 of the 600 it knows, the till is told paid.
        let answer = try one.finishSpend(pending, outcome: .unreachable, key: nil)
        #expect(answer.status == 201)
        try sync(one, hub)
        #expect(try hub.member(di.id)?.balance == 100)
        #expect(try one.member(di.id).balance == 100)
        #expect(try one.counts().rejected == 0)
    }

    @Test("an authorisation carries the node's offline enrolment and recharge, so the hub decides on them", arguments: Backend.all)
    func authorisationIngestsPrior(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1)
        let ed = try enrol(one, "Ed", "+15550500")
        _ = try one.recharge(ed.id, NodeAPI.Recharge(amount: 2500), key: nil)
        let answer = try spend(try one.beginPurchase(ed.id, NodeAPI.PurchaseRequest(amount: 2000, payFromBalance: true), key: nil), node: one, hub: hub)
        #expect(answer.status == 201)
        #expect(try answer.decode(NodeAPI.TransactionResult.self).transaction.authorization == .hub)
        #expect(try one.counts().pending == 0)
        #expect(try hub.member(ed.id)?.balance == 500)
    }

    @Test("the same purchase refunded offline at two stores is reported as a duplicate refund", arguments: Backend.all)
    func duplicateRefund(_ backend: Backend) throws {
        try use(backend)
        let one = try node(s1), two = try node(s2)
        let fe = try enrol(one, "Fe", "+15550600")
        let bought = try spend(try one.beginPurchase(fe.id, NodeAPI.PurchaseRequest(amount: 1000), key: nil), node: one, hub: nil)
        let txn = try bought.decode(NodeAPI.TransactionResult.self).transaction.id
        try sync(one, hub)
        try sync(two, hub)
        #expect(try spend(try one.beginRefund(txn, key: nil), node: one, hub: nil).status == 201)
        #expect(try spend(try two.beginRefund(txn, key: nil), node: two, hub: nil).status == 201)
        try sync(one, hub)
        try sync(two, hub)
        #expect(try hub.exceptions(limit: 10).contains { $0.kind == "duplicate_refund" })
    }

    @Test("tokens: a store token authenticates its store only, a head-office token is separate, both are stored hashed", arguments: Backend.all)
    func tokens(_ backend: Backend) throws {
        try use(backend)
        let token = try hub.addStore(StoreID(rawValue: "s3")!, name: "Three")
        #expect(try hub.authenticateStore(token: token) == StoreID(rawValue: "s3"))
        #expect(try hub.authenticateStore(token: token + "x") == nil)
        #expect(try hub.authenticateAdmin(token: token) == nil)
        let admin = try hub.issueAdminToken().token
        #expect(try hub.authenticateAdmin(token: admin)?.role == .admin)
        #expect(try hub.authenticateStore(token: admin) == nil)
        let query = "SELECT token_hash FROM stores UNION ALL SELECT token_hash FROM admin_tokens"
        let stored = switch backend {
        case .sqlite: try hub.pool.read { try String.fetchAll($0, sql: query) }
        case .postgresql: try PostgresAdmin.strings(query, at: try #require(hub.postgres))
        }
        #expect(stored.count == 4)
        #expect(!stored.contains(token) && !stored.contains(admin))
        #expect(throws: DomainError.self) { try hub.addStore(StoreID(rawValue: "s3")!, name: "Again") }
    }

    @Test("credentials: a rotated store token replaces the old at once, a revoked one is refused at once, roles, an audit trail", arguments: Backend.all)
    func credentials(_ backend: Backend) throws {
        try use(backend)
        let s3 = StoreID(rawValue: "s3")!
        let first = try hub.addStore(s3, name: "Three")
        let second = try hub.rotateStoreToken(s3)
        #expect(try hub.authenticateStore(token: first) == nil)
        #expect(try hub.authenticateStore(token: second) == s3)
        try hub.revokeStore(s3)
        #expect(try hub.authenticateStore(token: second) == nil)
        let third = try hub.rotateStoreToken(s3)
        #expect(try hub.authenticateStore(token: third) == s3, "rotation re-admits a revoked store")
        #expect(throws: DomainError.self) { try hub.revokeStore(StoreID(rawValue: "nope")!) }

        let reporter = try hub.issueAdminToken(role: .reporter, label: "finance dashboard")
        #expect(try hub.authenticateAdmin(token: reporter.token) == HeadOffice(id: reporter.id, role: .reporter))
        try hub.revokeAdminToken(reporter.id)
        #expect(try hub.authenticateAdmin(token: reporter.token) == nil)
        #expect(throws: DomainError.self) { try hub.revokeAdminToken(reporter.id) }
        #expect(try hub.adminTokens().first { $0.id == reporter.id }?.revokedAt != nil)

        let actions = try hub.auditLog(limit: 100).map(\.action)
        #expect(actions.filter { $0 == "store.token_rotated" }.count == 2)
        #expect(actions.contains("store.revoked") && actions.contains("admin_token.issued") && actions.contains("admin_token.revoked"))
        let log = try hub.auditLog(limit: 100).map { "\($0.actor) \($0.action) \($0.detail)" }.joined(separator: "\n")
        #expect(!log.contains(first) && !log.contains(second) && !log.contains(reporter.token), "tokens never reach the audit log")
    }
}

@Suite("The hub on PostgreSQL", .enabled(if: Backend.postgresAvailable, "\(Backend.skipNote)"))
struct PostgresHubTests {
    @Test("a hub process's fold is a cache: one made from another database, or ahead of a database restored from a backup, is rebuilt from the log")
    func foldIsRebuilt() throws {
        let dir = try TempDir()
        let first = try TestDatabase(), second = try TestDatabase()
        dir.onRemove { first.drop(); second.drop() }
        let fold = dir.path("fold.sqlite")
        var hub: HubStore? = try HubStore(postgres: first.location, foldPath: fold)
        _ = try hub?.addStore(s1, name: "One")
        let one = try bootstrappedNode(dir, s1, hub: try #require(hub))
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        try sync(one, try #require(hub))
        #expect(try hub?.log().count == 2)
        hub = nil

        // The same fold file, another chain's database: nothing of the first chain shows.
        hub = try HubStore(postgres: second.location, foldPath: fold)
        #expect(try hub?.log().isEmpty == true)
        #expect(try hub?.member(ada.id) == nil)
        hub = nil

        // The first database "restored" to before the recharge: the fold is ahead, and rebuilt.
        _ = try PostgresAdmin.strings("DELETE FROM ops WHERE version > 1 RETURNING id", at: first.location)
        hub = try HubStore(postgres: first.location, foldPath: fold)
        #expect(try hub?.log().map(\.op.id) == [OperationID(origin: s1, seq: 1)])
        #expect(try hub?.member(ada.id)?.balance == 0)
    }

    @Test("a database that goes back in time under a running hub (commits lost in a failover): writes are refused and it is not ready, until a restart rebuilds its fold")
    func databaseBehindTheFold() throws {
        let dir = try TempDir()
        let database = try TestDatabase()
        dir.onRemove { database.drop() }
        let fold = dir.path("fold.sqlite")
        var hub = try HubStore(postgres: database.location, foldPath: fold)
        _ = try hub.addStore(s1, name: "One")
        let one = try bootstrappedNode(dir, s1, hub: hub)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        try sync(one, hub)
        try hub.ready()
        _ = try PostgresAdmin.strings("DELETE FROM ops WHERE version > 1 RETURNING id", at: database.location)
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 100), key: nil)
        #expect(throws: DomainError.self) { try hub.push(try one.pendingBatch(limit: 10), from: s1) }
        do { try hub.ready(); Issue.record("a hub ahead of its database is not ready") } catch let error as DomainError {
            #expect(error.code == .storageUnavailable && error.message.contains("restart"))
        }
        hub = try HubStore(postgres: database.location, foldPath: fold)
        try hub.ready()
        #expect(try hub.push(try one.pendingBatch(limit: 10), from: s1).map(\.status) == [.accepted])
        #expect(try hub.log().map(\.version) == [1, 2])
    }

    @Test("a running hub whose head the database lost, and another hub has since reused those versions, notices: reads and writes refused, not ready")
    func headReplacedUnderARunningHub() throws {
        let dir = try TempDir()
        let database = try TestDatabase()
        dir.onRemove { database.drop() }
        let a = try HubStore(postgres: database.location, foldPath: dir.path("fold-a.sqlite"))
        _ = try a.addStore(s1, name: "One")
        let one = try bootstrappedNode(dir, s1, hub: a)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 900), key: nil)
        try sync(one, a)
        // Versions 2 and on lost (a failover without synchronous replication); hub B, started
        // afresh, takes new work that reuses version 2 and goes beyond.
        _ = try PostgresAdmin.strings("DELETE FROM ops WHERE version > 1 RETURNING id", at: database.location)
        let b = try HubStore(postgres: database.location, foldPath: dir.path("fold-b.sqlite"))
        _ = try b.publishRules(Programme(version: 1, name: "v1").json)
        _ = try b.publishRules(Programme(version: 2, name: "v2").json)
        #expect(try b.log().count == 3)
        #expect(throws: DomainError.self) { try a.member(ada.id) }
        #expect(throws: DomainError.self) { try a.ready() }
        #expect(throws: DomainError.self) { try a.publishRules(Programme(version: 3, name: "v3").json) }
        try b.ready()
    }

    @Test("a hub whose PostgreSQL cannot be reached at start says so with storage_unavailable")
    func unreachable() throws {
        let nowhere = try PostgresLocation(url: "postgres://tessera@127.0.0.1:\(try freeLoopbackPort())/none")
        #expect(throws: DomainError.self) { try HubStore(postgres: nowhere, foldPath: try TempDir().path("fold.sqlite")) }
        do {
            _ = try HubStore(postgres: nowhere, foldPath: try TempDir().path("fold.sqlite"))
        } catch let error as DomainError {
            #expect(error.code == .storageUnavailable)
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
