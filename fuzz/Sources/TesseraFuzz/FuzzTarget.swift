import Foundation
import TesseraCore

/// One fuzz input: any bytes. They are read as an operation (the protocol decoder and the
/// validator the hub runs on every push), folded when valid; and as a programme document,
/// which, when valid, prices a few sales. Anything but a clean refusal (a crash, a trap, an
/// overflow, a memory error) is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let op = try? JSONDecoder().decode(TesseraCore.Operation.self, from: bytes) {
        do throws(DomainError) {
            let body = try Validate.operation(op)
            _ = body.effects
            _ = body.debit
            var state = ChainState()
            state.apply(op)
            state.apply(op)
            _ = state.allViews(asOfMs: op.hlc.wallMs)
        } catch {
            // A clean refusal.
        }
    }
    if let programme = try? Programme.parse(bytes) {
        let store = StoreID(rawValue: "fuzz") ?? .hub
        let context = TillContext(store: store, atMs: 1_800_000_000_000, programme: programme)
        var standing = MemberStanding()
        standing.balance = 1_000_000
        standing.points = 1_000_000
        standing.tier = programme.tiers?.levels.last
        for amount: Int64 in [1, 99, 100, 12_345, 1_000_000_000_000] {
            for redeem: Int64 in [0, 100, 1_000_000] {
                _ = try? RulesEngine.price(PurchaseTerms(amount: amount, payFromBalance: true, redeemPoints: redeem),
                                           member: MemberID("m"), standing: standing, referral: nil, context)
            }
            _ = RulesEngine.recharge(amount: amount, member: MemberID("m"), op: OperationID(origin: store, seq: 1), context)
        }
    }
    return 0
}
