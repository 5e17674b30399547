import TesseraCore

/// Events for head office's other tools (messaging, CRM): what happened to members, as a paged
/// feed (`GET /v1/events?after=`) and as webhooks the hub delivers, signed, with retries.
extension HubAPI {
    public enum EventType: String, Codable, Sendable, CaseIterable {
        case memberEnrolled = "member.enrolled"
        case tierChanged = "tier.changed"
        case memberDormant = "member.dormant"
        case memberBirthday = "member.birthday"
        case pointsExpiring = "points.expiring"
        case valueRecharged = "value.recharged"
        case overdraft = "overdraft"
    }

    /// One event. `id` only grows: a feed reader keeps the last one it handled and asks for
    /// those after it; a webhook receiver drops an id it has seen (delivery is at least once).
    public struct Event: Codable, Sendable, Hashable {
        public var id: Int64
        public var type: EventType
        public var member: MemberID?
        /// The operation behind it (absent for events of the calendar: birthdays, dormancy, expiry).
        public var op: String?
        public var at: String
        public var data: [String: JSONValue]
        public init(id: Int64, type: EventType, member: MemberID?, op: String?, at: String, data: [String: JSONValue]) {
            self.id = id; self.type = type; self.member = member; self.op = op; self.at = at; self.data = data
        }
    }

    public struct EventPage: Codable, Sendable, Hashable {
        public var events: [Event]
        /// Ask for `after=next` to go on (the last id read, or `after` itself when none).
        public var next: Int64
        public var more: Bool
        public init(events: [Event], next: Int64, more: Bool) { self.events = events; self.next = next; self.more = more }
    }

    public struct WebhookRequest: Codable, Sendable {
        public var url: String
        public var events: [EventType]
        /// The HMAC key; the hub makes one when absent (shown once, in the answer).
        public var secret: String?
        public init(url: String, events: [EventType], secret: String? = nil) { self.url = url; self.events = events; self.secret = secret }
    }

    public struct Webhook: Codable, Sendable, Hashable {
        public var id: String
        public var url: String
        public var events: [EventType]
        public var createdAt: String
        public var revokedAt: String?
        /// The last event id delivered (or passed over: not a type it takes).
        public var cursor: Int64
        /// Failed attempts at the next event, and when the next attempt is due.
        public var failures: Int
        public var retryAt: String?
        /// Shown once, when the webhook is made.
        public var secret: String?
        enum CodingKeys: String, CodingKey {
            case id, url, events, cursor, failures, secret
            case createdAt = "created_at", revokedAt = "revoked_at", retryAt = "retry_at"
        }
        public init(id: String, url: String, events: [EventType], createdAt: String, revokedAt: String?, cursor: Int64, failures: Int,
                    retryAt: String?, secret: String? = nil) {
            self.id = id; self.url = url; self.events = events; self.createdAt = createdAt; self.revokedAt = revokedAt
            self.cursor = cursor; self.failures = failures; self.retryAt = retryAt; self.secret = secret
        }
    }

    public struct Webhooks: Codable, Sendable { public var webhooks: [Webhook]; public init(webhooks: [Webhook]) { self.webhooks = webhooks } }

    /// One attempt to deliver an event: `delivered` (a 2xx answer), `failed` (retried later)
    /// or `abandoned` (the last attempt failed; the event stays in the feed).
    public struct Delivery: Codable, Sendable, Hashable {
        public var webhook: String
        public var event: Int64
        public var attempt: Int
        public var outcome: String
        public var status: Int?
        public var error: String?
        public var durationMs: Int64
        public var at: String
        enum CodingKeys: String, CodingKey {
            case webhook, event, attempt, outcome, status, error, at
            case durationMs = "duration_ms"
        }
        public init(webhook: String, event: Int64, attempt: Int, outcome: String, status: Int?, error: String?, durationMs: Int64, at: String) {
            self.webhook = webhook; self.event = event; self.attempt = attempt; self.outcome = outcome; self.status = status
            self.error = error; self.durationMs = durationMs; self.at = at
        }
    }

    public struct Deliveries: Codable, Sendable { public var deliveries: [Delivery]; public init(deliveries: [Delivery]) { self.deliveries = deliveries } }
}
