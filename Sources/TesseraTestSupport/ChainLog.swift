import TesseraCore

/// Generates a plausible chain log: several stores enrolling (sometimes the same phone),
/// editing profiles concurrently, recharging, buying, refunding, replacing and blocking cards,
/// the hub merging and reversing, and operations of kinds this build does not know.
public enum ChainLog {
    public static func make(seed: UInt64, stores: Int = 4, count: Int = 80) -> [TesseraCore.Operation] {
        var rng = SplitMix64(seed: seed)
        let origins = (1...stores).map { StoreID(rawValue: "s\($0)")! }
        var seqs: [StoreID: UInt64] = [:]
        var ops: [TesseraCore.Operation] = []
        var members: [MemberID] = []
        var cards: [CardNumber] = []
        var spends: [(OperationID, MemberID, Purchase)] = []
        var coupons: [Coupon] = []
        let lots = ["2026-01-31", "2026-06-30", "2027-12-31"]
        var hubSeq: UInt64 = 0
        func next(_ origin: StoreID) -> OperationID {
            seqs[origin, default: 0] += 1
            return OperationID(origin: origin, seq: seqs[origin]!)
        }
        func hlc(_ id: OperationID) -> HLCTimestamp {
            // Few distinct wall times, so equal HLCs at different stores (ties broken by origin)
            // are common; one replica never stamps two of its operations alike, hence the counter.
            HLCTimestamp(wallMs: Int64.random(in: 1...40, using: &rng) * 1000, counter: UInt16(id.seq))
        }
        let phones = (0..<12).map { "+1555010\($0)" }
        for _ in 0..<count {
            let origin = origins.randomElement(using: &rng)!
            let roll = Int.random(in: 0..<100, using: &rng)
            if members.isEmpty || roll < 15 {
                let id = next(origin)
                let member = MemberID(enrolment: id)
                let card = CardNumber(issuedBy: origin, seq: id.seq)
                ops.append(Operation(id: id, hlc: hlc(id), body: .memberEnrolled(MemberEnrolled(
                    member: member, card: card, name: "N\(id.seq)", phone: phones.randomElement(using: &rng)!))))
                members.append(member)
                cards.append(card)
                continue
            }
            let member = members.randomElement(using: &rng)!
            let body: OperationBody
            switch roll {
            case 15..<30:
                body = .memberUpdated(MemberUpdated(member: member,
                    name: Bool.random(using: &rng) ? "Name\(Int.random(in: 0..<5, using: &rng))" : nil,
                    phone: Bool.random(using: &rng) ? phones.randomElement(using: &rng)! : nil,
                    birthday: Bool.random(using: &rng) ? "12-0\(Int.random(in: 1...9, using: &rng))" : nil))
            case 30..<45:
                let id = next(origin)
                let amount = Int64.random(in: 1...50_000, using: &rng)
                var issued: [Coupon] = []
                if Bool.random(using: &rng) {
                    issued = [Coupon(id: "c/\(id)", member: member, template: "c", name: "Coupon", valueMinor: 500, percent: nil,
                                     minSpendMinor: 0, validFrom: "1970-01-01", validUntil: "2030-12-31", stores: nil)]
                    coupons += issued
                }
                ops.append(Operation(id: id, hlc: hlc(id), body: .valueRecharged(ValueRecharged(
                    member: member, amount: amount, bonus: amount / 10, coupons: issued, rulesVersion: 1))))
                continue
            case 45..<65:
                let amount = Int64.random(in: 1...20_000, using: &rng)
                let redeem = Int64.random(in: 0...min(amount, 500), using: &rng)
                let spent = Bool.random(using: &rng) ? amount - redeem : 0
                let coupon = Int.random(in: 0..<4, using: &rng) == 0 ? coupons.randomElement(using: &rng) : nil
                let id = next(origin)
                let earned = amount / 100
                let purchase = Purchase(
                    member: member, amount: amount, coupon: coupon?.id, pointsRedeemed: redeem, valueSpent: spent,
                    bonusSpent: Int64.random(in: 0...spent, using: &rng), pointsEarned: earned,
                    pointsExpireOn: lots.randomElement(using: &rng), qualifying: earned,
                    referrer: Bool.random(using: &rng) ? members.randomElement(using: &rng) : nil, referralPoints: earned / 10, rulesVersion: 1)
                ops.append(Operation(id: id, hlc: hlc(id), body: .purchase(purchase)))
                spends.append((id, member, purchase))
                continue
            case 65..<72:
                guard let (of, m, p) = spends.randomElement(using: &rng) else { continue }
                let full = Bool.random(using: &rng)
                func part(_ x: Int64) -> Int64 { full ? x : x / 2 }
                body = .refund(Refund(member: m, of: of, amount: part(p.amount), value: part(p.valueSpent - p.bonusSpent), bonus: part(p.bonusSpent),
                                      pointsRestored: part(p.pointsRedeemed), pointsReversed: part(p.pointsEarned),
                                      pointsExpireOn: p.pointsExpireOn, qualifying: -part(p.qualifying),
                                      referrer: p.referrer, referralPoints: part(p.referralPoints), coupon: full ? p.coupon : nil))
            case 72..<78:
                let card = CardNumber("X\(Int.random(in: 0..<1000, using: &rng))")
                body = .cardIssued(CardIssued(member: member, card: card, replaces: cards.randomElement(using: &rng)))
                cards.append(card)
            case 78..<82:
                body = .cardBlocked(CardBlocked(card: cards.randomElement(using: &rng)!, member: member))
            case 82..<86:
                body = .pointsAdjusted(PointsAdjusted(member: member, points: Int64.random(in: -100...100, using: &rng), reason: "goodwill"))
            case 86..<90:
                // The hub merges a later enrolment into an earlier one (never back again).
                let sorted = members.sorted()
                guard sorted.count >= 2 else { continue }
                let i = Int.random(in: 1..<sorted.count, using: &rng)
                hubSeq += 1
                ops.append(Operation(id: OperationID(origin: .hub, seq: hubSeq), hlc: hlc(OperationID(origin: .hub, seq: hubSeq)),
                                     body: .memberMerged(MemberMerged(from: sorted[i], into: sorted[Int.random(in: 0..<i, using: &rng)]))))
                continue
            case 90..<92:
                guard let (of, m, p) = spends.randomElement(using: &rng) else { continue }
                let voidID = next(of.origin)
                ops.append(Operation(id: voidID, hlc: hlc(voidID), body: .operationVoided(OperationVoided(of: of, member: m, reason: "test"))))
                hubSeq += 1
                ops.append(Operation(id: OperationID(origin: .hub, seq: hubSeq), hlc: hlc(OperationID(origin: .hub, seq: hubSeq)),
                                     body: .operationReversed(OperationReversed(of: of, member: m, value: p.valueSpent - p.bonusSpent,
                                                                                bonus: p.bonusSpent, points: p.pointsRedeemed, coupon: p.coupon))))
                continue
            case 92..<95:
                // Hub operations of the programme: a rules version, an expiry, coupons.
                hubSeq += 1
                let hubID = OperationID(origin: .hub, seq: hubSeq)
                let hubBody: OperationBody
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    let version = Int.random(in: 1...3, using: &rng)
                    hubBody = .rulesPublished(RulesPublished(version: version, programme: Programme(version: version, name: "v\(version)").json))
                case 1:
                    hubBody = .pointsExpired(PointsExpired(member: member, points: Int64.random(in: -20...50, using: &rng), asOf: "2026-01-31"))
                default:
                    let coupon = Coupon(id: "w/\(member)/\(hubSeq)", member: member, template: "w", name: "Wake up", valueMinor: nil, percent: 10,
                                        minSpendMinor: 1000, validFrom: "2026-01-01", validUntil: "2026-03-01", stores: [origin])
                    coupons.append(coupon)
                    hubBody = .couponsIssued(CouponsIssued(coupons: [coupon], reason: "scheduled"))
                }
                ops.append(Operation(id: hubID, hlc: hlc(hubID), body: hubBody))
                continue
            case 95..<97:
                body = .membershipPurchased(MembershipPurchased(
                    period: MembershipPeriod(member: member, plan: "year", name: "Year card", from: "1970-01-01", until: "2030-12-31",
                                             discountPercent: 10, pointsPercent: 150),
                    priceMinor: 9900, rulesVersion: 1))
            default:
                let unknownID = next(origin)
                ops.append(Operation(id: unknownID, hlc: hlc(unknownID), kind: "coupon.issued", kindVersion: 1,
                                     body: .object(["member": .string(member.rawValue), "value": .int(500)])))
                continue
            }
            let id = next(origin)
            ops.append(Operation(id: id, hlc: hlc(id), body: body))
        }
        return ops
    }
}
