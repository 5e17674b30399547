/// A head-office credential as authenticated: its id (never the token) and what it may do.
public struct HeadOffice: Sendable, Hashable {
    public enum Role: String, Sendable, Codable, CaseIterable {
        /// Reads and changes: publishes rules, awards points, runs jobs.
        case admin
        /// Reads only: members, stores, exceptions, rules, reports.
        case reporter
    }
    public var id: String
    public var role: Role
    public init(id: String, role: Role) { self.id = id; self.role = role }
    public var actor: String { "head-office:\(id)" }
}
