/// A member as a till, head office or the member sees them: profile, current card, balance and
/// points (sums over the member and every member merged into them).
public struct MemberView: Hashable, Sendable, Codable {
    public var id: MemberID
    public var card: CardNumber?
    public var name: String?
    public var phone: String?
    public var birthday: String?
    public var balance: Int64
    public var points: Int64
    /// Set when `id` was merged into another member; every other field then shows that member.
    public var mergedInto: MemberID?

    enum CodingKeys: String, CodingKey {
        case id, card, name, phone, birthday, balance, points
        case mergedInto = "merged_into"
    }

    public init(id: MemberID, card: CardNumber?, name: String?, phone: String?, birthday: String?,
                balance: Int64, points: Int64, mergedInto: MemberID?) {
        self.id = id; self.card = card; self.name = name; self.phone = phone; self.birthday = birthday
        self.balance = balance; self.points = points; self.mergedInto = mergedInto
    }
}

/// What a member holds: stored value in minor units and points.
public struct Holdings: Hashable, Sendable {
    public var valueMinor: Int64
    public var points: Int64
    public init(valueMinor: Int64, points: Int64) { self.valueMinor = valueMinor; self.points = points }
    public static let zero = Holdings(valueMinor: 0, points: 0)
}
