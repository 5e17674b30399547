import Testing
import TesseraCore

@Suite("Member segments")
struct SegmentsTests {
    let day: Int64 = 86_400_000
    let now: Int64 = 1_800_000_000_000
    var today: LocalDay { ChainCalendar.utc.day(ms: now) }

    func member(_ n: Int, bought daysAgo: [Int64], enrolledDaysAgo: Int64 = 400, spend: Int64 = 0, birthday: String? = nil,
                tier: String? = nil, membershipUntil: String? = nil) -> Segments.Profile {
        Segments.Profile(id: MemberID("m-\(n)"), name: "M\(n)", phone: nil, birthday: birthday, enrolledMs: now - enrolledDaysAgo * day,
                         purchasesMs: daysAgo.map { now - $0 * day }, spend: spend, tier: tier, membershipUntil: membershipUntil)
    }

    @Test("dormant members by days since their last purchase (or enrolment), in bands of any edges")
    func dormant() throws {
        let ms = [member(1, bought: [5]), member(2, bought: [45, 200]), member(3, bought: [75]), member(4, bought: [], enrolledDaysAgo: 120)]
        let out = try Segments.members("dormant", ms, nowMs: now, today: today)
        #expect(out.map { "\($0.member) \($0.label) \($0.figure)" } == ["m-2 30-60 45", "m-3 60-90 75", "m-4 90+ 120"])
        var p = Segments.Parameters()
        p.bands = [7, 100]
        #expect(try Segments.members("dormant", ms, nowMs: now, today: today, p).map(\.label) == ["100+", "7-100", "7-100"])
        p.bands = [0]
        #expect(throws: DomainError.self) { try Segments.members("dormant", ms, nowMs: now, today: today, p) }
    }

    @Test("activity levels by purchases in the window: excited, active, inert, dormant")
    func activity() throws {
        let ms = [member(1, bought: Array(1...8)), member(2, bought: [1, 2, 3]), member(3, bought: [10]), member(4, bought: [200])]
        let out = try Segments.members("activity", ms, nowMs: now, today: today)
        #expect(Dictionary(uniqueKeysWithValues: out.map { ($0.member.rawValue, $0.label) }) ==
                ["m-1": "excited", "m-2": "active", "m-3": "inert", "m-4": "dormant"])
        #expect(Segments.counts(out) == ["excited": 1, "active": 1, "inert": 1, "dormant": 1])
    }

    @Test("one-timers: joined, bought at most once, and not back for a month")
    func oneTimers() throws {
        let ms = [member(1, bought: [40]), member(2, bought: [40, 50]), member(3, bought: [], enrolledDaysAgo: 60), member(4, bought: [3])]
        #expect(try Segments.members("one_timers", ms, nowMs: now, today: today).map { "\($0.member) \($0.label)" } ==
                ["m-1 bought_once", "m-3 never_bought"])
    }

    @Test("the top 20 % by spend, and birthdays, memberships ending and tiers")
    func others() throws {
        let ms = (1...10).map { member($0, bought: [1], spend: Int64($0) * 1000, birthday: $0 % 2 == 0 ? "03-1\($0 % 10)" : "1990-07-01",
                                       tier: $0 > 8 ? "gold" : nil, membershipUntil: $0 == 3 ? today.adding(days: 10).iso : nil) }
        let top = try Segments.members("top", ms, nowMs: now, today: today)
        #expect(top.map(\.member.rawValue).sorted() == ["m-10", "m-9"] && top.reduce(0) { $0 + $1.figure } == 19_000)
        var p = Segments.Parameters()
        p.month = 3
        #expect(try Segments.members("birthdays", ms, nowMs: now, today: today, p).count == 5)
        p.month = 7
        #expect(try Segments.members("birthdays", ms, nowMs: now, today: today, p).count == 5)
        p.days = 5
        #expect(try Segments.members("memberships_ending", ms, nowMs: now, today: today, p).isEmpty)
        p.days = 30
        #expect(try Segments.members("memberships_ending", ms, nowMs: now, today: today, p).map { "\($0.member) \($0.figure)" } == ["m-3 10"])
        #expect(Segments.counts(try Segments.members("tiers", ms, nowMs: now, today: today)) == ["gold": 2, "none": 8])
        #expect(throws: DomainError.self) { try Segments.members("birthdays", ms, nowMs: now, today: today) }
        #expect(throws: DomainError.self) { try Segments.members("nonsense", ms, nowMs: now, today: today) }
    }
}
