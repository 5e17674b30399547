/// Member segments for head office: who is asleep, who is loyal, who came once, whose birthday
/// is this month, the top spenders and their share of turnover, whose paid membership ends
/// soon, and how members spread over tiers. Pure functions over each member's activity, so the
/// same log gives the same segments anywhere.
public enum Segments {
    public static let names = ["dormant", "activity", "one_timers", "birthdays", "top", "memberships_ending", "points_expiring", "tiers",
                               "tier_movements"]

    /// One member's activity, as the hub's fold has it (a merged group counts as one).
    public struct Profile: Sendable, Hashable {
        public var id: MemberID
        public var name: String?
        public var phone: String?
        /// "MM-DD" (or with a year in front).
        public var birthday: String?
        public var enrolledMs: Int64
        /// How many purchases the member made, and when the last was made (its stamp's wall clock).
        public var purchases: Int
        public var lastPurchaseMs: Int64?
        /// When each recent purchase was made, any order: at least those within the window
        /// `activity` asks about.
        public var recentPurchasesMs: [Int64]
        /// Purchases less their refunds, in minor units.
        public var spend: Int64
        public var tier: String?
        /// The day a paid membership ends ("YYYY-MM-DD"), if the member has one.
        public var membershipUntil: String?
        /// Points that will expire within the `days` asked for, if nothing else happens
        /// (filled in by the hub for `points_expiring` only).
        public var pointsExpiring: Int64 = 0
        /// The tier `days` ago, and how many levels the member moved since (up above 0), for
        /// `tier_movements` only (filled in by the hub, which knows the tiers then and now).
        public var tierBefore: String?
        public var tierStep: Int64 = 0
        public init(id: MemberID, name: String?, phone: String?, birthday: String?, enrolledMs: Int64, purchases: Int, lastPurchaseMs: Int64?,
                    recentPurchasesMs: [Int64], spend: Int64, tier: String?, membershipUntil: String?) {
            self.id = id; self.name = name; self.phone = phone; self.birthday = birthday; self.enrolledMs = enrolledMs
            self.purchases = purchases; self.lastPurchaseMs = lastPurchaseMs; self.recentPurchasesMs = recentPurchasesMs
            self.spend = spend; self.tier = tier; self.membershipUntil = membershipUntil
        }
        /// A profile from every purchase's time.
        public init(id: MemberID, name: String?, phone: String?, birthday: String?, enrolledMs: Int64, purchasesMs: [Int64], spend: Int64,
                    tier: String?, membershipUntil: String?) {
            self.init(id: id, name: name, phone: phone, birthday: birthday, enrolledMs: enrolledMs, purchases: purchasesMs.count,
                      lastPurchaseMs: purchasesMs.max(), recentPurchasesMs: purchasesMs, spend: spend, tier: tier, membershipUntil: membershipUntil)
        }
        var lastActiveMs: Int64 { lastPurchaseMs ?? enrolledMs }
    }

    /// A member in a segment: the label of the band or level it falls in, and the figure
    /// behind it (days asleep, purchases in the window, spend, ...).
    public struct Entry: Sendable, Hashable, Codable {
        public var member: MemberID
        public var name: String?
        public var phone: String?
        public var label: String
        public var figure: Int64
    }

    public struct Parameters: Sendable, Hashable {
        /// Day bands for `dormant`: [30, 60, 90] gives 30-60, 60-90 and 90+ days.
        public var bands: [Int64] = [30, 60, 90]
        /// The window for `activity`, in days, and the purchases that make a member excited,
        /// active or inert within it (fewer than `inert`: dormant).
        public var windowDays: Int64 = 90
        public var excited: Int = 8
        public var active: Int = 3
        public var inert: Int = 1
        /// `one_timers`: at most one purchase, and nothing for this many days.
        public var sinceDays: Int64 = 30
        /// `birthdays`: the month (1-12).
        public var month: Int64?
        /// `top`: the share of members, in percent.
        public var percent: Int64 = 20
        /// `memberships_ending`: within this many days (from `today`).
        public var days: Int64 = 30
        public init() {}
    }

    static let dayMs: Int64 = 86_400_000

    /// The members of a segment, in a stable order (the figure, then the id).
    public static func members(_ name: String, _ profiles: [Profile], nowMs: Int64, today: LocalDay,
                               _ p: Parameters = Parameters()) throws(DomainError) -> [Entry] {
        func entry(_ m: Profile, _ label: String, _ figure: Int64) -> Entry {
            Entry(member: m.id, name: m.name, phone: m.phone, label: label, figure: figure)
        }
        var out: [Entry]
        switch name {
        case "dormant":
            let bands = p.bands.sorted()
            guard let first = bands.first, first > 0, Set(bands).count == bands.count else {
                throw DomainError(.invalidRequest, "bands are distinct whole numbers of days above 0, e.g. 30,60,90")
            }
            out = profiles.compactMap { m in
                let days = (nowMs - m.lastActiveMs) / dayMs
                guard let i = bands.lastIndex(where: { days >= $0 }) else { return nil }
                let label = i + 1 < bands.count ? "\(bands[i])-\(bands[i + 1])" : "\(bands[i])+"
                return entry(m, label, days)
            }
        case "activity":
            guard p.windowDays > 0, p.excited > p.active, p.active > p.inert, p.inert >= 1 else {
                throw DomainError(.invalidRequest, "activity needs window_days above 0 and excited > active > inert >= 1")
            }
            out = profiles.map { m in
                let recent = m.recentPurchasesMs.filter { nowMs - $0 < p.windowDays * dayMs && $0 <= nowMs }.count
                let label = recent >= p.excited ? "excited" : recent >= p.active ? "active" : recent >= p.inert ? "inert" : "dormant"
                return entry(m, label, Int64(recent))
            }
        case "one_timers":
            out = profiles.filter { $0.purchases <= 1 && (nowMs - $0.lastActiveMs) / dayMs >= p.sinceDays }
                .map { entry($0, $0.purchases == 0 ? "never_bought" : "bought_once", (nowMs - $0.lastActiveMs) / dayMs) }
        case "birthdays":
            guard let month = p.month, (1...12).contains(month) else { throw DomainError(.invalidRequest, "birthdays needs month=1 to 12") }
            out = profiles.filter { $0.birthday.flatMap(RulesEngine.birthdayMonth) == month }
                .map { entry($0, "month \(month)", month) }
        case "top":
            guard (1...100).contains(p.percent) else { throw DomainError(.invalidRequest, "percent is 1 to 100") }
            let buyers = profiles.filter { $0.spend > 0 }.sorted { ($0.spend, $1.id.rawValue) > ($1.spend, $0.id.rawValue) }
            let count = Int((Int64(buyers.count) * p.percent + 99) / 100)
            out = buyers.prefix(count).map { entry($0, "top \(p.percent)%", $0.spend) }
        case "memberships_ending":
            guard p.days >= 0 else { throw DomainError(.invalidRequest, "days is 0 or more") }
            let last = today.adding(days: p.days).iso
            out = profiles.compactMap { m in
                guard let until = m.membershipUntil, until >= today.iso, until <= last, let end = LocalDay(iso: until) else { return nil }
                return entry(m, "ends \(until)", end.number - today.number)
            }
        case "points_expiring":
            out = profiles.filter { $0.pointsExpiring > 0 }.map { entry($0, "within \(p.days) days", $0.pointsExpiring) }
        case "tiers":
            out = profiles.map { entry($0, $0.tier ?? "none", 0) }
        case "tier_movements":
            out = profiles.filter { $0.tierBefore != $0.tier }
                .map { entry($0, "\($0.tierBefore ?? "none") -> \($0.tier ?? "none")", $0.tierStep) }
        default:
            throw DomainError(.notFound, "no segment \(name); segments: \(names.joined(separator: ", "))")
        }
        return out.sorted { ($0.label, $0.figure, $0.member.rawValue) < ($1.label, $1.figure, $1.member.rawValue) }
    }

    /// How many members each label holds.
    public static func counts(_ entries: [Entry]) -> [String: Int] {
        entries.reduce(into: [:]) { $0[$1.label, default: 0] += 1 }
    }
}
