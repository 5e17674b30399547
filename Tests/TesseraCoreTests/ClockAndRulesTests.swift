import Testing
import TesseraCore

@Suite("Hybrid logical clock")
struct ClockTests {
    @Test("ticks grow strictly even when the physical clock stands still or goes back")
    func monotonic() {
        var clock = HybridLogicalClock()
        var last = HLCTimestamp.zero
        for physical in [1000, 1000, 999, 500, 1001, 1001] as [Int64] {
            let t = clock.tick(physicalMs: physical)
            #expect(t > last)
            last = t
        }
    }

    @Test("a stamp's key is its clock in 16 hex digits, '/' and its origin, and keys sort as stamps do")
    func stampKeys() throws {
        var random = SystemRandomNumberGenerator()
        let origins = ["a", "s1", "north-1", "hub"].compactMap { StoreID(rawValue: $0) }
        var stamps: [Stamp] = []
        for packed in [0, 1, 15, 16, 255, Int64(UInt32.max), .max] + (0..<200).map({ _ in Int64.random(in: 0 ... .max, using: &random) }) {
            let hlc = try #require(HLCTimestamp(packed: packed))
            for origin in origins {
                let stamp = Stamp(hlc: hlc, origin: origin)
                let hex = String(UInt64(packed), radix: 16)
                #expect(stamp.key == String(repeating: "0", count: 16 - hex.count) + hex + "/" + origin.rawValue)
                stamps.append(stamp)
            }
        }
        #expect(stamps.sorted().map(\.key) == stamps.map(\.key).sorted())
    }

    @Test("an operation id's text is origin:seq however it was read, and ids equal by origin and number")
    func operationIDs() throws {
        let s1 = try #require(StoreID(rawValue: "s1"))
        let read = try #require(OperationID("s1:007"))
        #expect(read == OperationID(origin: s1, seq: 7) && read.description == "s1:7")
        #expect(Set([read, OperationID(origin: s1, seq: 7), OperationID(origin: s1, seq: 8)]).count == 2)
        #expect(OperationID("north:1:2")?.description == nil, "an origin cannot hold ':'")
    }

    @Test("a remote timestamp ahead is adopted, so the next local event orders after it")
    func observe() {
        var clock = HybridLogicalClock()
        _ = clock.tick(physicalMs: 1000)
        let adopted = clock.observe(HLCTimestamp(wallMs: 2000, counter: 7), physicalMs: 1000)
        #expect(adopted)
        #expect(clock.tick(physicalMs: 1000) == HLCTimestamp(wallMs: 2000, counter: 8))
    }

    @Test("a remote timestamp further ahead than the allowed drift is not adopted")
    func boundedDrift() {
        var clock = HybridLogicalClock(maxDriftMs: 60_000)
        _ = clock.tick(physicalMs: 1000)
        let adopted = clock.observe(HLCTimestamp(wallMs: 1000 + 86_400_000, counter: 0), physicalMs: 1000)
        #expect(!adopted)
        #expect(clock.tick(physicalMs: 1001).wallMs == 1001)
    }

    @Test("an exhausted counter borrows the next millisecond")
    func counterOverflow() {
        var clock = HybridLogicalClock(last: HLCTimestamp(wallMs: 5, counter: .max))
        #expect(clock.tick(physicalMs: 5) == HLCTimestamp(wallMs: 6, counter: 0))
    }

    @Test("the packed form orders like the timestamp, and stamps order by HLC then origin")
    func ordering() throws {
        let a = HLCTimestamp(wallMs: 10, counter: 65535), b = HLCTimestamp(wallMs: 11, counter: 0)
        #expect(a < b && a.packed < b.packed)
        let s1 = try #require(StoreID(rawValue: "s1")), s2 = try #require(StoreID(rawValue: "s2"))
        #expect(Stamp(hlc: b, origin: s1) < Stamp(hlc: b, origin: s2))
        #expect(Stamp(hlc: a, origin: s2).key < Stamp(hlc: b, origin: s1).key)
        #expect(Stamp(hlc: b, origin: s1).key < Stamp(hlc: b, origin: s2).key)
    }
}

@Suite("Default rules, the offline policy and validation")
struct RulesTests {
    @Test("the built-in programme: one point per whole currency unit paid", arguments: [(1, 0), (99, 0), (100, 1), (2550, 25), (10_000, 100)] as [(Int64, Int64)])
    func points(amount: Int64, points: Int64) throws {
        let context = TillContext(store: try #require(StoreID(rawValue: "s1")), atMs: 0, programme: .builtIn)
        let sale = try RulesEngine.price(PurchaseTerms(amount: amount), member: MemberID("m"), standing: MemberStanding(), referral: nil, context)
        #expect(sale.pointsEarned == points && sale.rulesVersion == 0 && sale.cashDue == amount)
    }

    @Test("offline spends are allowed up to the known balance and the daily limit, exactly")
    func offlinePolicy() {
        func known(_ value: Int64, _ points: Int64) -> MemberStanding {
            var s = MemberStanding()
            s.balance = value
            s.points = points
            return s
        }
        let policy = OfflineSpendPolicy(limitMinorPerDay: 20_000)
        let rich = known(100_000, 1000)
        #expect(policy.decide(Debit(valueMinor: 20_000, points: 0), known: rich, spentToday: 0) == nil)
        #expect(policy.decide(Debit(valueMinor: 20_001, points: 0), known: rich, spentToday: 0)?.code == .offlineLimitExceeded)
        #expect(policy.decide(Debit(valueMinor: 5000, points: 0), known: rich, spentToday: 15_000) == nil)
        #expect(policy.decide(Debit(valueMinor: 5000, points: 1), known: rich, spentToday: 15_000)?.code == .offlineLimitExceeded)
        #expect(policy.decide(Debit(valueMinor: 100, points: 0), known: known(99, 0), spentToday: 0)?.code == .insufficientBalance)
        #expect(policy.decide(Debit(valueMinor: 0, points: 11), known: known(0, 10), spentToday: 0)?.code == .insufficientPoints)
        #expect(policy.decide(Debit(valueMinor: 0, points: 0, coupon: "c/1"), known: rich, spentToday: 0)?.code == .couponUnavailable)
    }

    @Test("phones are normalised, and nonsense is refused")
    func phones() throws {
        #expect(try Validate.phone(" +1 (555) 010-0100 ") == "+15550100100")
        #expect(throws: DomainError.self) { try Validate.phone("call me") }
        #expect(throws: DomainError.self) { try Validate.phone("123") }
        #expect(throws: DomainError.self) { try Validate.phone("1+2345678") }
    }

    @Test("amounts must be positive whole minor units within bounds", arguments: [0, -1, Limits.amountMaxMinor + 1] as [Int64])
    func badAmounts(amount: Int64) {
        #expect(throws: DomainError.self) { try Validate.amount(amount) }
    }

    @Test("only the hub may merge; an enrolment's member id comes from its operation id")
    func operationValidation() throws {
        let s1 = try #require(StoreID(rawValue: "s1"))
        let merge = Operation(id: OperationID(origin: s1, seq: 1), hlc: .zero,
                              body: .memberMerged(MemberMerged(from: MemberID("a"), into: MemberID("b"))))
        #expect(throws: DomainError.self) { try Validate.operation(merge) }
        let enrol = Operation(id: OperationID(origin: s1, seq: 2), hlc: .zero, body: .memberEnrolled(MemberEnrolled(
            member: MemberID("m-s1-99"), card: CardNumber("C1"), name: "X", phone: "+15550100")))
        #expect(throws: DomainError.self) { try Validate.operation(enrol) }
        let overpaid = Operation(id: OperationID(origin: s1, seq: 3), hlc: .zero, body: .purchase(Purchase(
            member: MemberID("m"), amount: 100, pointsRedeemed: 1, valueSpent: 100, pointsEarned: 1)))
        #expect(throws: DomainError.self) { try Validate.operation(overpaid) }
    }

    @Test("ids: store ids are restricted; operation ids print and parse as origin:seq")
    func ids() throws {
        #expect(StoreID(rawValue: "Store 1") == nil)
        #expect(StoreID(rawValue: "-x") == nil)
        #expect(StoreID(rawValue: "north-1") != nil)
        let id = try #require(OperationID("north-1:42"))
        #expect(id.description == "north-1:42" && id.seq == 42)
        #expect(OperationID("north-1:0") == nil)
        #expect(OperationID("north-1") == nil)
    }
}

@Suite("The chain's calendar")
struct CalendarTests {
    @Test("a local day starts at its own midnight, in zones ahead of UTC, behind it, on a quarter hour, and across a clock change",
          arguments: ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham"])
    func startOfDay(_ zone: String) throws {
        let calendar = try #require(ChainCalendar(identifier: zone))
        for iso in ["2026-03-04", "2026-03-08", "2026-11-01", "2027-01-01"] {
            let day = try #require(LocalDay(iso: iso))
            let start = calendar.startMs(of: day)
            #expect(calendar.day(ms: start) == day && calendar.day(ms: start - 1) == day.adding(days: -1), "\(zone) \(iso)")
        }
    }
}

@Suite("Amounts as people read them")
struct MinorUnitsTests {
    @Test("two decimals, exact, with the sign in front", arguments: [
        (Int64(0), "0.00"), (5, "0.05"), (1234, "12.34"), (-1234, "-12.34"), (-7, "-0.07"), (Int64.min, "-92233720368547758.08"),
    ])
    func text(_ minor: Int64, _ expected: String) {
        #expect(MinorUnits.text(minor) == expected)
    }
}
