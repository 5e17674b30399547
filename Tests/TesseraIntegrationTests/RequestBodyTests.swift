import Foundation
import Testing
import TesseraCore
import TesseraHTTP
import TesseraProtocol

/// What a till is told about a body it got wrong: each answer names the field and what is wrong
/// with it, in words (no decoder's internals), and the request changes nothing.
@Suite struct RequestBodyTests {
    func refusal(_ body: String) -> String? {
        do {
            _ = try JSONBody.decode(NodeAPI.PurchaseRequest.self, data: Data(body.utf8))
            return nil
        } catch let error as DomainError {
            #expect(error.code == .invalidRequest, "\(body)")
            return error.message
        } catch {
            Issue.record("\(body): \(error)")
            return nil
        }
    }

    @Test func purchaseBodies() throws {
        let sale = try JSONBody.decode(NodeAPI.PurchaseRequest.self, data: Data(#"{"amount": 1250, "pay_from_balance": true}"#.utf8))
        #expect(sale.amount == 1250 && sale.payFromBalance == true && sale.redeemPoints == nil)
        #expect(refusal(#"{"amount": null}"#) == "field 'amount' must not be null")
        #expect(refusal(#"{"amount": "1250"}"#) == "field 'amount' has the wrong type")
        #expect(refusal(#"{"pay_from_balance": true}"#) == "missing field 'amount'")
        #expect(refusal(#"{"amount": 12.5}"#) == "field 'amount': Number 12.5 does not fit in Int64.")
        #expect(refusal(#"{"amount": 1250, "coupon": null, "redeem_points": null}"#) == nil)
        #expect(refusal(#"{"amount": 1250, "balance": 5}"#)?.hasPrefix("unknown field 'balance'; this request takes amount, coupon") == true)
        #expect(refusal(#"[1250]"#) == "the body must be a JSON object")
        #expect(refusal(#"null"#) == "the body must be a JSON object")
        #expect(refusal(#"{"amount": 1250"#)?.hasPrefix("the body is not valid JSON") == true)
    }
}
