import TesseraCore

/// A request body whose top-level fields are fixed. Any other field is refused with
/// `invalid_request`: a `balance` sent with a purchase must be neither applied nor silently
/// dropped, and a misspelt `redeem_point` must not sell without redeeming.
public protocol StrictBody: Decodable {
    static var fields: Set<String> { get }
}

extension NodeAPI.Enrol: StrictBody { public static let fields: Set<String> = ["name", "phone", "birthday", "referrer", "card"] }
extension NodeAPI.Update: StrictBody { public static let fields: Set<String> = ["name", "phone", "birthday"] }
extension NodeAPI.Recharge: StrictBody { public static let fields: Set<String> = ["amount"] }
extension NodeAPI.PurchaseRequest: StrictBody {
    public static let fields: Set<String> = ["amount", "pay_from_balance", "redeem_points", "coupon", "quote", "member_amount"]
}
extension NodeAPI.NewCard: StrictBody { public static let fields: Set<String> = ["card"] }
extension NodeAPI.RefundRequest: StrictBody { public static let fields: Set<String> = ["amount"] }
extension NodeAPI.ActivityRequest: StrictBody { public static let fields: Set<String> = ["activity"] }
extension NodeAPI.MembershipRequest: StrictBody { public static let fields: Set<String> = ["plan"] }
extension NodeAPI.PointsAward: StrictBody { public static let fields: Set<String> = ["activity", "points", "reason"] }
extension PushRequest: StrictBody { public static let fields: Set<String> = ["protocol", "store", "ops"] }
extension AuthorizeRequest: StrictBody { public static let fields: Set<String> = ["protocol", "prior", "op"] }
extension HubAPI.WebhookRequest: StrictBody { public static let fields: Set<String> = ["url", "events", "secret"] }
