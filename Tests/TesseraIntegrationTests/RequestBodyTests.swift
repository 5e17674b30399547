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

    /// A push is scanned at the hub (its own fields only); anything else is read and refused as before.
    @Test func pushBodies() throws {
        let op = #"{"body":{"member":"m-1","name":"Ada","phone":"+15550100","card":"c-1"},"hlc":\#(Int64(1_780_000_000_000) << 16),"id":"s1:1","kind":"member.enrolled","kind_version":1}"#
        let push = try JSONBody.decode(PushRequest.self, data: Data(#"{"protocol":1,"store":"s1","ops":[\#(op)]}"#.utf8))
        #expect(push.store.rawValue == "s1" && push.ops.count == 1 && push.ops.first?.kind == "member.enrolled")
        #expect(try JSONBody.decode(PushRequest.self, data: Data(#" { "ops" : [ \#(op) ] , "store":"s1","protocol":1 } "#.utf8)).ops == push.ops)
        func refusal(_ body: String) -> String? {
            do { _ = try JSONBody.decode(PushRequest.self, data: Data(body.utf8)); return nil } catch let error as DomainError {
                #expect(error.code == .invalidRequest, "\(body)")
                return error.message
            } catch { Issue.record("\(body): \(error)"); return nil }
        }
        #expect(refusal(#"{"protocol":1,"store":"s1","ops":[],"extra":1}"#) == "unknown field 'extra'; this request takes ops, protocol, store")
        #expect(refusal(#"{"protocol":1,"ops":[]}"#) == "missing field 'store'")
        #expect(refusal(#"{"protocol":1,"store":"s 1","ops":[]}"#)?.contains("invalid store id") == true)
        #expect(refusal(#"{"protocol":1,"store":"s1","ops":[\#(op.dropLast()),"x":2}]}"#)?.contains("x") == true)
        #expect(refusal(#"{"protocol":1,"store":"s1","ops":[\#(op)"#)?.hasPrefix("the body is not valid JSON") == true)
        // Lenient as before: the first of two fields, a comma before the closing bracket.
        #expect(refusal(#"{"protocol":1,"store":"s1","store":"s2","ops":[\#(op),]}"#) == nil)
    }
}
