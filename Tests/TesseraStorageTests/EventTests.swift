import Foundation
import Testing
import TesseraCore
import TesseraProtocol
import TesseraStorage
import TesseraTestSupport

/// Events for other tools: recorded with what caused them, once each, in a feed that only grows.
@Suite("Events for other tools", .serialized)
final class EventTests {
    let dir: TempDir
    let clock = TestClock(at("2026-03-04 12:00", "Asia/Shanghai"))
    private(set) var hub: HubStore!

    init() throws { dir = try TempDir() }

    func use(_ backend: Backend) throws {
        hub = try backend.hubWithTwoStores(dir, clock: clock)
    }

    func feed(_ types: Set<HubAPI.EventType>? = nil) throws -> [HubAPI.Event] {
        try hub.events(after: 0, limit: 1_000, types: types).events
    }

    @Test("enrolments, recharges and overdrafts are events once each, whatever retries a store makes; the feed pages and filters",
          arguments: Backend.all)
    func operationEvents(_ backend: Backend) throws {
        try use(backend)
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock), two = try bootstrappedNode(dir, s2, hub: hub, clock: clock)
        let cy = try enrol(one, "Cy", "+15550300")
        _ = try one.recharge(cy.id, NodeAPI.Recharge(amount: 5000), key: nil)
        let batch = try one.pendingBatch(limit: 100)
        _ = try hub.push(batch, from: s1)
        _ = try hub.push(batch, from: s1) // a retry
        try sync(one, hub); try sync(two, hub)
        let buy = NodeAPI.PurchaseRequest(amount: 4000, payFromBalance: true)
        #expect(try spend(try one.beginPurchase(cy.id, buy, key: nil), node: one, hub: nil).status == 201)
        #expect(try spend(try two.beginPurchase(cy.id, buy, key: nil), node: two, hub: nil).status == 201)
        try sync(one, hub); try sync(two, hub)

        let events = try feed()
        #expect(events.map(\.type) == [.memberEnrolled, .valueRecharged, .overdraft])
        #expect(events.map(\.id) == events.map(\.id).sorted())
        #expect(events[0].member == cy.id && events[0].data["phone"] == .string("+15550300") && events[0].data["store"] == .string("s1"))
        #expect(events[1].data["amount"] == .int(5000))
        #expect(events[2].data["balance"] == .int(-3000) && events[2].op?.hasPrefix("s2:") == true)

        let first = try hub.events(after: 0, limit: 2, types: nil)
        #expect(first.events.count == 2 && first.more && first.next == events[1].id)
        let rest = try hub.events(after: first.next, limit: 2, types: nil)
        #expect(rest.events.map(\.type) == [.overdraft] && !rest.more)
        #expect(try feed([.overdraft]).map(\.id) == [events[2].id])

        // The metrics' counts of exceptions, recorded and open, without reading the list.
        let counts = try hub.exceptionCounts()
        let overdrafts = try hub.exceptions(limit: 100).filter { $0.kind == "overdraft" }
        #expect(counts.recorded["overdraft"] == overdrafts.count && counts.open["overdraft"] == overdrafts.count)
        _ = try hub.resolveException(try #require(overdrafts.first).id, HubAPI.ResolveException(note: "settled at the till", points: nil), actor: "t")
        #expect(try hub.exceptionCounts().open["overdraft"] == overdrafts.count - 1)
    }

    @Test("a push of hundreds of enrolments makes their events in the log's order, once each, pushed again or not", arguments: Backend.all)
    func manyEventsInOnePush(_ backend: Backend) throws {
        try use(backend)
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        // More than two of the PostgreSQL hub's multi-row inserts of events (100 rows each).
        let members = try (0..<250).map { i in try enrol(one, "Member \(i)", "+1555040\(1000 + i)") }
        let batch = try one.pendingBatch(limit: 1_000)
        _ = try hub.push(batch, from: s1)
        _ = try hub.push(batch, from: s1) // a retry
        let events = try feed()
        #expect(events.count == 250)
        #expect(events.map(\.member) == members.map(\.id))
        #expect(events.map(\.op) == batch.map(\.id.description))
        #expect(events.map(\.id) == events.map(\.id).sorted() && Set(events.map(\.id)).count == 250)
    }

    @Test("a sale that moves a member up a tier is a tier.changed event", arguments: Backend.all)
    func tierChange(_ backend: Backend) throws {
        try use(backend)
        _ = try hub.publishRules(try Examples.json("fresh-market"))
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        let ada = try enrol(one, "Ada", "+15550100")
        _ = try one.recharge(ada.id, NodeAPI.Recharge(amount: 200_000), key: nil)
        #expect(try spend(try one.beginPurchase(ada.id, NodeAPI.PurchaseRequest(amount: 150_000, payFromBalance: true), key: nil),
                          node: one, hub: hub).status == 201)
        try sync(one, hub)
        let changes = try feed([.tierChanged])
        #expect(changes.count == 1)
        #expect(changes.first?.data["from"] == .string("regular") && changes.first?.data["to"] == .string("silver"))
        #expect(changes.first?.member == ada.id)

        // The same movement as a segment: tiers then (a day ago) and now.
        let moved = try hub.segment("tier_movements", { var p = Segments.Parameters(); p.days = 1; return p }())
        #expect(moved.members.map(\.member) == [ada.id])
        #expect(moved.members.first?.label == "regular -> silver" && moved.members.first?.figure == 1)
        clock.advance(2 * 86_400_000)
        #expect(try hub.segment("tier_movements", { var p = Segments.Parameters(); p.days = 1; return p }()).members.isEmpty,
                "no movement in the last day")
    }

    @Test("the hub's jobs report birthdays in the month, dormancy bands and points expiring soon, once each however often they run",
          arguments: Backend.all)
    func calendarEvents(_ backend: Backend) throws {
        try use(backend)
        let file = """
            phone,name,birthday,points,points_expire_on,store
            +15550100,Ada,1990-03-20,500,2026-03-20,s1
            +15550101,Bob,05-01,0,,s1

            """
        let (rows, problems) = MemberImport.read(Array(file.utf8), format: .csv)
        #expect(problems.isEmpty)
        _ = try hub.importMembers(rows)
        _ = try hub.runJobs()
        _ = try hub.runJobs()
        let ada = try #require(try hub.allMembers().first { $0.name == "Ada" })
        #expect(try feed().map(\.type) == [.memberBirthday, .pointsExpiring])
        #expect(try feed([.pointsExpiring]).first?.data["points"] == .int(500))
        #expect(try feed([.memberBirthday]).first?.member == ada.id)

        clock.advance(31 * 86_400_000) // April: nothing bought for 31 days
        _ = try hub.runJobs()
        _ = try hub.runJobs()
        #expect(try feed([.memberDormant]).map { $0.data["days"] } == [.int(30), .int(30)])
        clock.advance(30 * 86_400_000) // May: Bob's birthday, and the 60-day band
        _ = try hub.runJobs()
        #expect(try feed([.memberDormant]).map { $0.data["days"] } == [.int(30), .int(30), .int(60), .int(60)])
        #expect(try feed([.memberBirthday]).map { $0.data["month"] } == [.string("2026-03"), .string("2026-05")])
    }

    @Test("a webhook starts after the newest event, only to hosts the operator allows, and can be revoked", arguments: Backend.all)
    func webhooks(_ backend: Backend) throws {
        try use(backend)
        let one = try bootstrappedNode(dir, s1, hub: hub, clock: clock)
        _ = try enrol(one, "Ada", "+15550100")
        try sync(one, hub)
        let allowed: Set<String> = ["hooks.example"]
        #expect(throws: DomainError.self) {
            try self.hub.addWebhook(HubAPI.WebhookRequest(url: "https://elsewhere.example/x", events: [.memberEnrolled]), allowedHosts: allowed, actor: "t")
        }
        #expect(throws: DomainError.self) {
            try self.hub.addWebhook(HubAPI.WebhookRequest(url: "ftp://hooks.example/x", events: [.memberEnrolled]), allowedHosts: allowed, actor: "t")
        }
        let hook = try hub.addWebhook(HubAPI.WebhookRequest(url: "https://hooks.example/x", events: [.valueRecharged, .memberEnrolled]),
                                      allowedHosts: allowed, actor: "t")
        #expect(hook.secret?.hasPrefix("whsec_") == true && hook.cursor == 1 && hook.events == [.memberEnrolled, .valueRecharged])
        #expect(try hub.webhooks().map(\.secret) == [nil], "a secret is shown once")
        try hub.revokeWebhook(hook.id, actor: "t")
        #expect(try hub.webhooks().first?.revokedAt != nil)
        #expect(throws: DomainError.self) { try self.hub.revokeWebhook(hook.id, actor: "t") }
        #expect(try hub.auditLog(limit: 10).map(\.action).contains("webhook.added"))
    }
}
