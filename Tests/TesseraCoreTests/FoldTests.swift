import Foundation
import PropertyBased
import Testing
import TesseraCore
import TesseraTestSupport

@Suite("The fold from operations to state")
struct FoldTests {
    @Test("the same operation set folds to the same state in any order, with any duplicates")
    func permutationsAndDuplicates() async {
        await propertyCheck(count: 200, input: Gen.uint64(), Gen.uint64()) { logSeed, orderSeed in
            let ops = ChainLog.make(seed: logSeed)
            let reference = ChainState(folding: ops)
            var rng = SplitMix64(seed: orderSeed)
            var shuffled = ops + ops.filter { _ in Bool.random(using: &rng) } // duplicates, as retries deliver them
            shuffled.shuffle(using: &rng)
            let state = ChainState(folding: shuffled)
            // Compared first as booleans: a failure prints the seeds, not two whole states.
            let sameState = state == reference, sameViews = state.allViews() == reference.allViews()
            #expect(sameState, "log seed \(logSeed), order seed \(orderSeed)")
            #expect(sameViews, "log seed \(logSeed), order seed \(orderSeed)")
        }
    }

    @Test("folding in reverse order equals folding in order, for many logs")
    func reverseOrder() {
        for seed in UInt64(0)..<300 {
            let ops = ChainLog.make(seed: seed, stores: 3, count: 60)
            let same = ChainState(folding: ops.reversed()) == ChainState(folding: ops)
            #expect(same, "seed \(seed)")
        }
    }

    @Test("money and points are sums of ledger entries: a balance is explained by its operations")
    func balancesAreSums() {
        for seed in UInt64(0)..<100 {
            let state = ChainState(folding: ChainLog.make(seed: seed))
            let total = state.entries.values.flatMap { $0 }.reduce(Int64(0)) { $0 + $1.entry.value + $1.entry.bonus }
            let perRoot = Set(state.members.keys.map { state.root(of: $0) }).reduce(Int64(0)) { $0 + state.holdings(of: $1).valueMinor }
            let orphan = state.entries.values.flatMap { $0 }.filter { state.members[state.root(of: $0.entry.member)] == nil }
                .reduce(Int64(0)) { $0 + $1.entry.value + $1.entry.bonus }
            #expect(total == perRoot + orphan, "seed \(seed)")
        }
    }

    @Test("protocol vectors fold to their expected member views", arguments: try Vector.all())
    func vectors(_ vector: Vector) {
        let state = ChainState(folding: vector.ops)
        #expect(state.allViews() == vector.expected, "\(vector.name)")
        #expect(ChainState(folding: vector.ops.reversed()).allViews() == vector.expected, "\(vector.name), reversed")
        for lease in vector.expectedLeases ?? [] {
            for folded in [state, ChainState(folding: vector.ops.reversed())] {
                #expect(folded.leases(of: lease.member)[lease.store] == Rights(value: lease.value, points: lease.points), "\(vector.name): \(lease)")
            }
        }
    }

    @Test("there are protocol vectors to run")
    func vectorsExist() throws {
        #expect(try Vector.all().count >= 8)
    }

    @Test("an operation of an unknown kind round-trips through JSON unchanged")
    func unknownKindRoundTrip() throws {
        let text = #"{"body":{"member":"m-s1-1","nested":{"camelCase":[1,2.5,"x",null,true]},"value":1000},"hlc":131072000,"id":"s9:1","kind":"coupon.issued","kind_version":1}"#
        let op = try JSONDecoder().decode(TesseraCore.Operation.self, from: Data(text.utf8))
        #expect(try op.decoded() == .unknown)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(String(decoding: try encoder.encode(op), as: UTF8.self) == text)
    }

    @Test("a merged member resolves to the survivor, and its view says so")
    func mergedView() throws {
        let vector = try #require(try Vector.all().first { $0.name == "duplicate-phone-merge" })
        let state = ChainState(folding: vector.ops)
        let view = try #require(state.view(of: MemberID("m-s1-1")))
        #expect(view.mergedInto == MemberID("m-s2-1"))
        #expect(view.balance == 5000)
        #expect(state.cards[CardNumber("S1-000001")]?.member.map { state.root(of: $0) } == MemberID("m-s2-1"))
    }
}
