/// The bodies of the commonest kinds (sales, recharges, enrolments) read straight from their
/// JSON object, field by field, instead of through `Decodable` (`JSONValueDecoder`).
///
/// Why: every operation a node pulls and every one the hub accepts is decoded, and through a
/// `Decoder` each field of a sale was a hashed dictionary look-up behind a boxed container:
/// 7 % of a replica's fold in the 100-store catch-up, 5 % of the hub's. Here the object's
/// fields are walked once and matched by name.
///
/// Only what is plainly right is read here: a field of an unexpected JSON type (a number
/// written with a fraction, a string where a number goes), a missing required field, coupons,
/// or an invalid store id give nil, and the caller then decodes the general way, which reads or
/// refuses exactly as before (with its error message). A field this build does not know is
/// passed over, as `Decodable` does. `JSONValueEncoderTests` checks both ways agree (on random
/// chains, and on every field of their bodies damaged).
enum DirectBody {
    static func decode(kind: OperationKind, _ body: JSONValue) -> OperationBody? {
        guard case .object(let fields) = body else { return nil }
        switch kind {
        case .purchase: return purchase(fields).map(OperationBody.purchase)
        case .valueRecharged: return recharge(fields).map(OperationBody.valueRecharged)
        case .memberEnrolled: return enrolment(fields).map(OperationBody.memberEnrolled)
        default: return nil
        }
    }

    /// A field's value as the general decoder reads it, or `Unread` (the general way decides).
    private struct Unread: Error {}

    private static func integer(_ value: JSONValue) throws(Unread) -> Int64? {
        switch value {
        case .null: return nil
        case .int(let i): return i
        default: throw Unread()
        }
    }

    private static func string(_ value: JSONValue) throws(Unread) -> String? {
        switch value {
        case .null: return nil
        case .string(let s): return s
        default: throw Unread()
        }
    }

    /// Coupons: only an absent, null or empty list is read here.
    private static func noCoupons(_ value: JSONValue) throws(Unread) {
        switch value {
        case .null: return
        case .array(let items) where items.isEmpty: return
        default: throw Unread()
        }
    }

    private static func purchase(_ fields: [String: JSONValue]) -> Purchase? {
        var member: String?, amount: Int64?
        var discount: Int64?, coupon: String?, couponDiscount: Int64?, pointsRedeemed: Int64?, pointsValue: Int64?
        var valueSpent: Int64?, bonusSpent: Int64?, pointsEarned: Int64?, pointsExpireOn: String?, qualifying: Int64?
        var tier: String?, membership: String?, campaign: String?, referrer: String?, referralPoints: Int64?
        var rulesVersion: Int64?, leaseValue: Int64?, leasePoints: Int64?
        do throws(Unread) {
            for (key, value) in fields {
                switch key {
                case "member": member = try string(value)
                case "amount": amount = try integer(value)
                case "discount": discount = try integer(value)
                case "coupon": coupon = try string(value)
                case "coupon_discount": couponDiscount = try integer(value)
                case "points_redeemed": pointsRedeemed = try integer(value)
                case "points_value": pointsValue = try integer(value)
                case "value_spent": valueSpent = try integer(value)
                case "bonus_spent": bonusSpent = try integer(value)
                case "points_earned": pointsEarned = try integer(value)
                case "points_expire_on": pointsExpireOn = try string(value)
                case "qualifying": qualifying = try integer(value)
                case "tier": tier = try string(value)
                case "membership": membership = try string(value)
                case "campaign": campaign = try string(value)
                case "referrer": referrer = try string(value)
                case "referral_points": referralPoints = try integer(value)
                case "rules_version": rulesVersion = try integer(value)
                case "lease_value": leaseValue = try integer(value)
                case "lease_points": leasePoints = try integer(value)
                default: break
                }
            }
        } catch { return nil }
        guard let member, let amount else { return nil }
        var p = Purchase(member: MemberID(member), amount: amount, discount: discount ?? 0, coupon: coupon, couponDiscount: couponDiscount ?? 0,
                         pointsRedeemed: pointsRedeemed ?? 0, pointsValue: pointsValue, valueSpent: valueSpent ?? 0,
                         bonusSpent: bonusSpent ?? 0, pointsEarned: pointsEarned ?? 0, pointsExpireOn: pointsExpireOn,
                         qualifying: qualifying ?? 0, tier: tier, membership: membership, campaign: campaign,
                         referrer: referrer.map(MemberID.init), referralPoints: referralPoints ?? 0, rulesVersion: Int(rulesVersion ?? 0))
        p.leaseValue = leaseValue
        p.leasePoints = leasePoints
        return p
    }

    private static func recharge(_ fields: [String: JSONValue]) -> ValueRecharged? {
        var member: String?, amount: Int64?, bonus: Int64?, rulesVersion: Int64?, leaseValue: Int64?
        do throws(Unread) {
            for (key, value) in fields {
                switch key {
                case "member": member = try string(value)
                case "amount": amount = try integer(value)
                case "bonus": bonus = try integer(value)
                case "coupons": try noCoupons(value)
                case "rules_version": rulesVersion = try integer(value)
                case "lease_value": leaseValue = try integer(value)
                default: break
                }
            }
        } catch { return nil }
        guard let member, let amount else { return nil }
        return ValueRecharged(member: MemberID(member), amount: amount, bonus: bonus ?? 0, rulesVersion: Int(rulesVersion ?? 0),
                              leaseValue: leaseValue)
    }

    private static func enrolment(_ fields: [String: JSONValue]) -> MemberEnrolled? {
        var member: String?, card: String?, name: String?, phone: String?, birthday: String?, referrer: String?
        var referralPoints: Int64?, pointsExpireOn: String?, rulesVersion: Int64?, store: String?, reference: String?
        do throws(Unread) {
            for (key, value) in fields {
                switch key {
                case "member": member = try string(value)
                case "card": card = try string(value)
                case "name": name = try string(value)
                case "phone": phone = try string(value)
                case "birthday": birthday = try string(value)
                case "referrer": referrer = try string(value)
                case "referral_points": referralPoints = try integer(value)
                case "points_expire_on": pointsExpireOn = try string(value)
                case "coupons": try noCoupons(value)
                case "rules_version": rulesVersion = try integer(value)
                case "store": store = try string(value)
                case "reference": reference = try string(value)
                default: break
                }
            }
        } catch { return nil }
        guard let member, let card, let name, let phone else { return nil }
        var storeID: StoreID?
        if let store {
            guard let valid = StoreID(rawValue: store) else { return nil }
            storeID = valid
        }
        return MemberEnrolled(member: MemberID(member), card: CardNumber(card), name: name, phone: phone, birthday: birthday,
                              referrer: referrer.map(MemberID.init), referralPoints: referralPoints ?? 0, pointsExpireOn: pointsExpireOn,
                              rulesVersion: Int(rulesVersion ?? 0), store: storeID, reference: reference)
    }
}
