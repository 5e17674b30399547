import Foundation
import Synchronization
import TesseraCore
import TesseraProtocol
import TesseraStorage

/// A deterministic simulation of a whole chain: a hub and several store nodes running the real
/// storage, fold, outbox, push/pull and spend-authorisation code on real SQLite files, with a
/// seeded random generator deciding what tills do and what goes wrong: lost and duplicated
/// messages, lost answers after the hub committed, partitions, node and hub crashes, clock
/// skew, the same phone enrolled at several stores, concurrent spends of the same money.
/// After healing, it checks the invariants that make Tessera trustworthy.
public struct SimulationConfig: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var stores: Int
    public var steps: Int
    /// Offline spending allowed per member per day; nil draws it from the seed (2,000 to 20,000),
    /// so that offline refusals, and voids of spends the hub had accepted, happen often.
    public var offlineLimit: Int64?
    /// The hub on this (empty) PostgreSQL database instead of SQLite; a hub crash then
    /// restarts the process on the same database and fold.
    public var hubDatabase: PostgresLocation?
    /// How stores spend offline: the v1 daily limit, or escrow leases (the programme's `leases`).
    public var policy: OfflinePolicyChoice
    /// Who shops where: any member at any store, or members who mostly shop at one or two.
    public var workload: Workload
    /// Under escrow: the share of each member's balance and points lent to stores (percent).
    public var leaseShare: Int64

    public enum OfflinePolicyChoice: String, Sendable, CaseIterable { case limit, escrow }
    public enum Workload: String, Sendable, CaseIterable { case uniform, loyal }

    public init(seed: UInt64, stores: Int = 4, steps: Int = 200, offlineLimit: Int64? = nil, hubDatabase: PostgresLocation? = nil,
                policy: OfflinePolicyChoice = .limit, workload: Workload = .uniform, leaseShare: Int64 = 60) {
        precondition((1...50).contains(stores), "1 to 50 stores")
        self.seed = seed
        self.stores = stores
        self.steps = steps
        self.offlineLimit = offlineLimit
        self.hubDatabase = hubDatabase
        self.policy = policy
        self.workload = workload
        self.leaseShare = leaseShare
    }

    /// The command that replays this run exactly.
    public var description: String {
        "tessera simulate --seed \(seed) --stores \(stores) --steps \(steps)" + (offlineLimit.map { " --offline-limit \($0)" } ?? "")
            + (policy == .limit ? "" : " --policy \(policy.rawValue)") + (workload == .uniform ? "" : " --workload \(workload.rawValue)")
            + (policy == .escrow && leaseShare != 60 ? " --lease-share \(leaseShare)" : "")
    }
}

public struct SimulationReport: Sendable {
    public var config: SimulationConfig
    public var tillAnswers = 0
    public var acknowledged = 0
    public var refusedSpends = 0
    public var offlineSpends = 0
    public var faults = 0
    public var crashes = 0
    public var overdrafts = 0
    public var merges = 0
    /// What the programme did: points expiries and coupon redemptions in the hub's log.
    public var expiries = 0
    public var couponsUsed = 0
    /// Whether the chain crossed a new year (UTC) while it ran (`Simulator.start`).
    public var crossedNewYear = false
    /// Spends decided by the node alone (the hub unreachable, or its answer lost), and how
    /// many of them the node accepted.
    public var offlineAttempts = 0
    public var offlineAccepted = 0
    /// Offline spends refused by the policy itself (`offline_limit_exceeded`, `offline_lease_exceeded`),
    /// not because the member lacked the money, the points or the coupon as the node knew them.
    public var offlineRefusedByPolicy = 0
    /// Online spends the hub refused because the rest of the member's balance was lent to other
    /// stores (`balance_leased`): the price of leases online.
    public var onlineLeaseRefusals = 0
    /// Lease operations in the hub's log: grants, returns, recalls.
    public var leaseOperations = 0
    /// Rights created or lost: a store's lease below zero, a member's leases above what it
    /// holds, or a lease left over once every store has given back (each is also a violation).
    public var rightsViolations = 0
    public var violations: [String] = []
}

public final class Simulator {
    /// What a till was told, kept to check that the chain honours it.
    struct Acknowledged {
        var id: OperationID
        var member: MemberID
        var value: Int64
        var points: Int64
    }

    let config: SimulationConfig
    let offlineLimit: Int64
    let folder: URL
    var rng: SplitMix64
    let clock: SimulatedClock
    var hub: HubStore
    var nodes: [NodeStore]
    let storeIDs: [StoreID]
    var partitioned: Set<Int> = []
    /// Pushes the network held back, delivered later and out of order (or never, until healing).
    var delayed: [(node: Int, ops: [TesseraCore.Operation])] = []
    /// Members a till spent from on the node's word alone (the hub unreachable).
    var offlineMembers: Set<MemberID> = []
    var acknowledged: [OperationID: Acknowledged] = [:]
    var refused: Set<OperationID> = []
    var transactions: [(node: Int, id: OperationID)] = []
    var report: SimulationReport
    /// The programme the hub publishes (nil: the built-in one), drawn from the seed.
    var programme: Programme?
    /// Under the loyal workload, each member's stores: where it joined, then one other.
    var homes: [MemberID: [Int]] = [:]

    public init(_ config: SimulationConfig, folder: URL) throws {
        self.config = config
        self.folder = folder
        var rng = SplitMix64(seed: config.seed)
        self.offlineLimit = config.offlineLimit ?? [2_000, 5_000, 20_000].randomElement(using: &rng) ?? 20_000
        let start = Self.start(&rng)
        self.rng = rng
        self.report = SimulationReport(config: config)
        self.clock = SimulatedClock(start: start, stores: config.stores)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        hub = try Self.openHub(config, folder, clock)
        storeIDs = (0..<config.stores).compactMap { StoreID(rawValue: "s\($0)") }
        nodes = []
        programme = Self.programmes(stores: storeIDs).randomElement(using: &rng) ?? nil
        if config.policy == .escrow {
            // Leases that end within a simulated day, so that expiry and renewal happen often.
            var leased = programme ?? Programme(version: 1, name: "simulated")
            leased.leases = Programme.Leases(sharePercent: config.leaseShare, stores: 2, memberCapMinor: 40_000, memberCapPoints: 2_000, hours: 20)
            programme = leased
        }
        if let programme { _ = try hub.publishRules(programme.json) }
        for (i, id) in storeIDs.enumerated() {
            _ = try hub.addStore(id, name: "Store \(i)")
            // Clocks disagree by up to two minutes either way.
            clock.setSkew(store: i, ms: Int64.random(in: -120_000...120_000, using: &rng))
            let node = try openNode(i)
            try node.bootstrap(try hub.snapshot(for: id))
            nodes.append(node)
        }
    }

    func openNode(_ i: Int) throws -> NodeStore {
        try NodeStore(path: folder.appendingPathComponent("\(storeIDs[i]).sqlite").path, store: storeIDs[i],
                      offlinePolicy: OfflineSpendPolicy(limitMinorPerDay: offlineLimit),
                      physicalMs: { [clock] in clock.now(store: i) })
    }

    // MARK: - Running

    /// Runs one seed in a scratch folder of its own, removed afterwards. The folder is on tmpfs
    /// when there is one: the simulation crashes processes, not machines, so disk syncs only
    /// cost time there.
    public static func run(_ config: SimulationConfig) throws -> SimulationReport {
        let base = FileManager.default.fileExists(atPath: "/dev/shm")
            ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        let folder = base.appendingPathComponent("tessera-sim-\(UUID().uuidString)")
        defer { if ProcessInfo.processInfo.environment["TESSERA_SIM_KEEP"] == nil { try? FileManager.default.removeItem(at: folder) } else { print("kept", folder.path) } }
        return try Simulator(config, folder: folder).run()
    }

    public func run() throws -> SimulationReport {
        let started = ChainCalendar.utc.day(ms: clock.now(store: nil)).year
        for _ in 0..<config.steps {
            clock.advance(Int64.random(in: 1...30_000, using: &rng))
            try step()
        }
        try heal()
        try check()
        report.crossedNewYear = ChainCalendar.utc.day(ms: clock.now(store: nil)).year != started
        return report
    }

    func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    func step() throws {
        let i = Int.random(in: 0..<nodes.count, using: &rng)
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<12: try enrol(at: i)
        case 12..<27: try recharge(at: i)
        case 27..<55: try purchase(at: i)
        case 55..<60: try refund(at: i)
        case 60..<85: try sync(i)
        case 85..<90:
            // A partition starts or heals.
            if partitioned.contains(i) { partitioned.remove(i) } else { partitioned.insert(i); report.faults += 1 }
        case 90..<93:
            report.crashes += 1
            nodes[i] = try openNode(i)
            _ = try nodes[i].voidInterruptedSpends()
        case 93..<94:
            try crashDuringSpend(at: i)
        case 94..<96:
            // The hub's scheduled jobs (expiry, coupons), perhaps after a day has passed,
            // perhaps with a new version of the programme.
            clock.advance(Int64.random(in: 3_600_000...129_600_000, using: &rng))
            if var next = programme, chance(0.2) {
                next.version += 1
                next.earning.points = Int64.random(in: 1...3, using: &rng)
                programme = next
                _ = try hub.publishRules(next.json)
            }
            _ = try hub.runJobs(asOfMs: nil)
            // Head office closes the settlement period (late offline sales then land in the next).
            do { _ = try hub.closeSettlementPeriod(actor: "simulation") } catch let error as DomainError where error.code == .invalidRequest {}
        case 96..<98:
            report.crashes += 1
            hub = try Self.openHub(config, folder, clock)
        default:
            // A clock jumps (NTP correction, a dead RTC battery).
            clock.setSkew(store: i, ms: Int64.random(in: -600_000...600_000, using: &rng))
        }
    }

    static func openHub(_ config: SimulationConfig, _ folder: URL, _ clock: SimulatedClock) throws -> HubStore {
        if let database = config.hubDatabase {
            return try HubStore(postgres: database, foldPath: folder.appendingPathComponent("hub-fold.sqlite").path,
                                physicalMs: { [clock] in clock.now(store: nil) })
        }
        return try HubStore(path: folder.appendingPathComponent("hub.sqlite").path, physicalMs: { [clock] in clock.now(store: nil) })
    }

    func someMember(at i: Int) throws -> MemberView? {
        let members = try nodes[i].allMembers()
        guard config.workload == .loyal, !chance(0.05) else { return members.randomElement(using: &rng) }
        // Members mostly shop where they joined, sometimes at their second store.
        let regulars = members.filter { homes[$0.mergedInto ?? $0.id]?.first == i || homes[$0.id]?.first == i }
        let occasional = members.filter { homes[$0.mergedInto ?? $0.id]?.last == i || homes[$0.id]?.last == i }
        return (chance(0.8) ? regulars : occasional).randomElement(using: &rng) ?? members.randomElement(using: &rng)
    }

    /// A till call, perhaps retried with its Idempotency-Key because the answer got lost.
    func till(_ i: Int, _ body: (IdempotencyKey?) throws -> TillAnswer) throws -> TillAnswer? {
        let key = chance(0.3) ? IdempotencyKey(key: "k-\(rng.next())", method: "POST", path: "/sim", body: Data()) : nil
        let answer: TillAnswer
        do { answer = try body(key) } catch is DomainError { return nil }
        report.tillAnswers += 1
        if let key, chance(0.5) {
            report.faults += 1
            let again = try body(key)
            if again != answer { report.violations.append("a retry with the same Idempotency-Key got another answer") }
        }
        return answer
    }

    func enrol(at i: Int) throws {
        let phone = "+1555\(String(format: "%06d", Int.random(in: 0..<15, using: &rng)))"
        let answer = try till(i) { key in try nodes[i].enrol(NodeAPI.Enrol(name: "M\(rng.next() % 100)", phone: phone), key: key) }
        if let answer, answer.status == 201, let view = try? JSONDecoder().decode(MemberView.self, from: answer.body) {
            let second = nodes.count > 1 ? (i + Int.random(in: 1..<nodes.count, using: &rng)) % nodes.count : i
            homes[view.id] = [i, second]
        }
    }

    func recharge(at i: Int) throws {
        guard let member = try someMember(at: i) else { return }
        let amount = Int64.random(in: 1...30_000, using: &rng)
        if let answer = try till(i, { key in try nodes[i].recharge(member.id, NodeAPI.Recharge(amount: amount), key: key) }) {
            try record(answer, at: i)
        }
    }

    func purchase(at i: Int) throws {
        guard let member = try someMember(at: i) else { return }
        let amount = Int64.random(in: 1...15_000, using: &rng)
        let request = NodeAPI.PurchaseRequest(amount: amount, payFromBalance: chance(0.7),
                                              redeemPoints: chance(0.3) ? Int64.random(in: 0...min(amount, 200), using: &rng) : nil,
                                              coupon: chance(0.3) ? member.coupons.randomElement(using: &rng)?.id : nil)
        try spend(at: i) { key in try self.nodes[i].beginPurchase(member.id, request, key: key) }
    }

    func refund(at i: Int) throws {
        guard let txn = transactions.randomElement(using: &rng) else { return }
        let part = NodeAPI.RefundRequest(amount: chance(0.5) ? Int64.random(in: 1...8000, using: &rng) : nil)
        try spend(at: i) { key in try self.nodes[i].beginRefund(txn.id, part, key: key) }
    }

    /// Runs a spend through the authorisation path with the faults a network can cause.
    func spend(at i: Int, _ begin: (IdempotencyKey?) throws -> SpendStep) throws {
        let step: SpendStep
        do { step = try begin(nil) } catch is DomainError { return }
        let answer: TillAnswer
        switch step {
        case .answered(let a):
            answer = a
            // A spend its store's lease covered, decided at the store: an offline attempt when
            // the store is cut off (it succeeds, as it would have online).
            if partitioned.contains(i), a.status == 201,
               (try? JSONDecoder().decode(NodeAPI.TransactionResult.self, from: a.body))?.transaction.authorization == .lease {
                report.offlineAttempts += 1
                report.offlineAccepted += 1
            }
        case .authorize(let pending):
            let outcome: AuthorizationOutcome
            if partitioned.contains(i) || chance(0.05) {
                outcome = .unreachable // the request never arrived
            } else {
                let response = try hub.authorize(AuthorizeRequest(prior: try nodes[i].prior(for: pending), op: pending.op), from: storeIDs[i])
                if chance(0.2) {
                    report.faults += 1
                    outcome = .unreachable // the hub decided, the answer was lost
                } else if response.decision == .accepted {
                    outcome = .accepted(version: response.version ?? 0, prior: response.prior)
                } else {
                    outcome = .refused(response.code ?? .insufficientBalance, response.message ?? "", prior: response.prior)
                }
            }
            answer = try nodes[i].finishSpend(pending, outcome: outcome, key: nil)
            if answer.status != 201 {
                refused.insert(pending.op.id)
                report.refusedSpends += 1
            }
            if case .refused(.balanceLeased, _, _) = outcome { report.onlineLeaseRefusals += 1 }
            if case .unreachable = outcome {
                report.offlineAttempts += 1
                if answer.status == 201 { report.offlineAccepted += 1 }
                let code = (try? JSONDecoder().decode(ErrorBody.self, from: answer.body))?.error.code
                if code == ErrorCode.offlineLimitExceeded.rawValue || code == ErrorCode.offlineLeaseExceeded.rawValue {
                    report.offlineRefusedByPolicy += 1
                }
            }
        }
        report.tillAnswers += 1
        try record(answer, at: i)
    }

    /// A node dies between writing a spend and hearing from the hub (which may have accepted it).
    func crashDuringSpend(at i: Int) throws {
        guard let member = try someMember(at: i) else { return }
        let step = try? nodes[i].beginPurchase(member.id, NodeAPI.PurchaseRequest(amount: Int64.random(in: 1...5000, using: &rng), payFromBalance: true), key: nil)
        if case .answered(let answer)? = step {
            // Decided at once (its store's lease covered it): the till heard before the crash.
            report.tillAnswers += 1
            try record(answer, at: i)
            return
        }
        guard case .authorize(let pending) = step else { return }
        if !partitioned.contains(i) && chance(0.5) {
            _ = try hub.authorize(AuthorizeRequest(prior: try nodes[i].prior(for: pending), op: pending.op), from: storeIDs[i])
        }
        report.crashes += 1
        refused.insert(pending.op.id) // the till never got an answer: it must not take effect
        nodes[i] = try openNode(i)
        _ = try nodes[i].voidInterruptedSpends()
    }

    func record(_ answer: TillAnswer, at i: Int) throws {
        guard answer.status == 201, let result = try? JSONDecoder().decode(NodeAPI.TransactionResult.self, from: answer.body) else { return }
        let t = result.transaction
        if acknowledged[t.id] == nil { report.acknowledged += 1 }
        acknowledged[t.id] = Acknowledged(id: t.id, member: t.member, value: t.valueChange, points: t.pointsChange)
        if t.authorization == .offline {
            report.offlineSpends += 1
            offlineMembers.insert(t.member)
        }
        if t.kind == OperationKind.purchase.rawValue || t.kind == OperationKind.valueRecharged.rawValue {
            transactions.append((i, t.id))
        }
    }

    /// One sync round for a node, through a network that loses and duplicates messages.
    func sync(_ i: Int) throws {
        // A node gives back ended and recalled leases on its own, online or not.
        try nodes[i].settleLeases()
        try checkOwnLeases(i)
        guard !partitioned.contains(i) else { return }
        let node = nodes[i]
        if !delayed.isEmpty, chance(0.2) {
            // A push held up in the network arrives at last, after newer ones; its answer is lost.
            let late = delayed.remove(at: Int.random(in: 0..<delayed.count, using: &rng))
            _ = try hub.push(late.ops, from: storeIDs[late.node])
        }
        let batch = try node.pendingBatch(limit: Int.random(in: 1...50, using: &rng))
        if !batch.isEmpty {
            if chance(0.1) {
                report.faults += 1 // the push never arrived (or not yet)
                if chance(0.5) { delayed.append((i, batch)) }
            } else {
                let results = try hub.push(batch, from: storeIDs[i])
                if chance(0.1) { report.faults += 1; _ = try hub.push(batch, from: storeIDs[i]) } // delivered twice
                if chance(0.1) { report.faults += 1 } else { try node.recordPush(results) } // the answer was lost
            }
        }
        let page = try hub.pull(after: try node.counts().cursor, limit: Int.random(in: 1...60, using: &rng), for: storeIDs[i], pending: nil)
        if chance(0.1) { report.faults += 1 } else { try node.applyPull(page) }
    }

    /// Ends every fault and syncs until every node has pushed everything and pulled everything.
    func heal() throws {
        partitioned = []
        for late in delayed { _ = try hub.push(late.ops, from: storeIDs[late.node]) }
        delayed = []
        // Under leases, a third round: once everything has arrived, the chain stops using
        // leases and every store gives back what it holds, so the final check can see that
        // every right came back (none created, none lost).
        let rounds = config.policy == .escrow ? 3 : 2
        for round in 0..<rounds {
            // The hub's jobs see everything the earlier rounds brought (late offline spends
            // before an expiry give points back); the last round carries their operations.
            if round == rounds - 1 { _ = try hub.runJobs(asOfMs: nil) }
            if config.policy == .escrow && round == 1 {
                try checkHubLeases()
                var off = programme ?? Programme(version: 1, name: "simulated")
                off.version = (try hub.currentRules().version) + 1
                off.leases = nil
                programme = off
                _ = try hub.publishRules(off.json)
            }
            for (i, node) in nodes.enumerated() {
                try pullAll(i)
                try node.settleLeases()
                while true {
                    let batch = try node.pendingBatch(limit: SyncLimits.pushBatchMax)
                    if batch.isEmpty { break }
                    try node.recordPush(try hub.push(batch, from: storeIDs[i]))
                }
                try pullAll(i)
            }
        }
    }

    func pullAll(_ i: Int) throws {
        while true {
            let page = try hub.pull(after: try nodes[i].counts().cursor, limit: SyncLimits.pullPageMax, for: storeIDs[i], pending: nil)
            try nodes[i].applyPull(page)
            if !page.more { break }
        }
    }

    // MARK: - Lease invariants

    /// A store never holds less than nothing: it spent only rights it had.
    func checkOwnLeases(_ i: Int) throws {
        guard config.policy == .escrow else { return }
        for (member, rights) in try nodes[i].ownLeases() where rights.value < 0 || rights.points < 0 {
            report.rightsViolations += 1
            violation("store \(storeIDs[i]) spent more than its lease of \(member) (\(rights.value)/\(rights.points))")
            if ProcessInfo.processInfo.environment["SIM_DEBUG"] != nil {
                for item in try hub.log() where (try? item.op.decoded())?.member == member { print("hub has", item.op.id, item.op.kind, item.op.body.jsonText) }
                for op in try nodes[i].pendingBatch(limit: 1000) where (try? op.decoded())?.member == member { print("pending", op.id, op.kind, op.body.jsonText) }
            }
        }
    }

    /// In the hub's log, no store's lease is below zero and the leases of a member never add up
    /// to more than it holds: no right was created.
    func checkHubLeases() throws {
        let state = ChainState(folding: try hub.log().map(\.op))
        for view in try hub.allMembers(asOfMs: clock.now(store: nil)) where view.mergedInto == nil {
            let leases = state.leases(of: view.id)
            let lent = leases.values.reduce(Rights.zero, +)
            for (store, rights) in leases where rights.value < 0 || rights.points < 0 {
                report.rightsViolations += 1
                violation("\(store)'s lease of \(view.id) is below zero in the hub's log (\(rights.value)/\(rights.points))")
            }
            if lent.value > view.balance || lent.points > view.points {
                report.rightsViolations += 1
                violation("the leases of \(view.id) hold \(lent.value)/\(lent.points), more than its \(view.balance)/\(view.points)")
                if ProcessInfo.processInfo.environment["SIM_DEBUG"] != nil {
                    for item in try hub.log() where (try? item.op.decoded())?.member.map(state.root(of:)) == view.id {
                        print(item.op.id, item.op.kind, item.op.body.jsonText)
                    }
                }
            }
        }
    }

    // MARK: - Invariants

    func violation(_ text: String) { report.violations.append(text) }

    func check() throws {
        let log = try hub.log()
        let ids = Set(log.map(\.op.id))
        if ids.count != log.count { violation("the hub's log holds an operation twice") }
        // Every operation a till was told succeeded exists at the hub.
        for id in acknowledged.keys where !ids.contains(id) { violation("acknowledged \(id) is missing at the hub") }
        // An operation a till was told failed never takes effect.
        let reversed = Set(log.compactMap { item -> OperationID? in
            if case .operationReversed(let r)? = try? item.op.decoded() { return r.of }
            return nil
        })
        for id in refused where ids.contains(id) && !reversed.contains(id) {
            violation("\(id) was refused at the till but took effect at the hub")
        }
        for id in refused where acknowledged[id] != nil { violation("\(id) was both refused and acknowledged") }
        // Every replica folds to the same state, equal to the pure fold of the hub's log, all
        // seen at one moment (expiry and coupon dates depend on it).
        let now = clock.now(store: nil)
        let atHub = try hub.allMembers(asOfMs: now)
        let pure = ChainState(folding: log.map(\.op)).allViews(asOfMs: now)
        if pure != atHub { violation("the hub's SQLite state differs from the pure fold of its log") }
        // Head office's summaries (settlement, liabilities, store days, activity) say what a replay of the log says.
        for problem in try hub.checkSummaries() { violation(problem) }
        // And made again in one pass over the log, as an upgraded hub makes them.
        try hub.rebuildSummaries()
        for problem in try hub.checkSummaries() { violation("after a rebuild: \(problem)") }
        for (i, node) in nodes.enumerated() where try node.allMembers(asOfMs: now) != atHub {
            violation("node \(storeIDs[i]) did not converge with the hub")
        }
        for (i, node) in nodes.enumerated() {
            for problem in try node.entrySumProblems() { violation("node \(storeIDs[i]): \(problem)") }
        }
        if try nodes.contains(where: { try $0.counts().pending > 0 }) { violation("operations still pending after healing") }
        // Money and points are conserved: each member holds exactly what the tills were told.
        var expected: [MemberID: Holdings] = [:]
        let state = ChainState(folding: log.map(\.op))
        for ack in acknowledged.values {
            let root = state.root(of: ack.member)
            expected[root, default: .zero].valueMinor += ack.value
            expected[root, default: .zero].points += ack.points
        }
        // ... less what the hub's expiry took (an operation of its own, told to no till), and
        // with what a reversal left the member: under leases, points a voided spend earned
        // that were lent out since are not taken back.
        var reversedPoints: [OperationID: Int64] = [:]
        for item in log {
            if case .operationReversed(let r)? = try? item.op.decoded() { reversedPoints[r.of, default: 0] += r.points }
        }
        for (of, back) in reversedPoints {
            guard let original = log.first(where: { $0.op.id == of }), let body = try? original.op.decoded() else { continue }
            for case .ledger(let e) in body.effects { expected[state.root(of: e.member), default: .zero].points += e.points }
            if let member = body.member { expected[state.root(of: member), default: .zero].points += back }
        }
        for item in log {
            switch try? item.op.decoded() {
            case .pointsExpired(let e)?:
                expected[state.root(of: e.member), default: .zero].points -= e.points
                report.expiries += 1
            case .purchase(let p)? where p.coupon != nil:
                report.couponsUsed += 1
            default:
                break
            }
        }
        // The expiry the hub recorded is what the rules say, for every member.
        for view in atHub where view.mergedInto == nil && view.pointsAvailable != view.points {
            violation("member \(view.id) has \(view.points - view.pointsAvailable) points expired by the rules but not recorded by the hub")
        }
        for view in atHub where view.mergedInto == nil {
            let want = expected[view.id] ?? .zero
            if view.balance != want.valueMinor || view.points != want.points {
                violation("member \(view.id) holds \(view.balance)/\(view.points), tills were told \(want.valueMinor)/\(want.points)")
            }
        }
        // A negative balance is always reported as an overdraft.
        let exceptions = try hub.exceptions(limit: 100_000)
        report.overdrafts = exceptions.filter { $0.kind == "overdraft" }.count
        if config.policy == .escrow {
            if report.overdrafts > 0 {
                violation("\(report.overdrafts) overdraft(s) under leases: \(exceptions.filter { $0.kind == "overdraft" }.map(\.detail).prefix(3))")
            }
            // Every store gave back everything: every right came back to the hub.
            for view in atHub where view.mergedInto == nil {
                for (store, rights) in state.leases(of: view.id) where !rights.isZero {
                    report.rightsViolations += 1
                    violation("\(store) still holds \(rights.value)/\(rights.points) of \(view.id) after giving everything back")
                }
            }
            report.leaseOperations = log.filter { $0.op.kind.hasPrefix("lease.") }.count
        }
        report.merges = exceptions.filter { $0.kind == "merge" }.count
        for view in atHub where view.mergedInto == nil && (view.balance < 0 || view.points < 0) {
            if !exceptions.contains(where: { $0.kind == "overdraft" && $0.member.map(state.root(of:)) == view.id }) {
                violation("member \(view.id) is negative (\(view.balance)/\(view.points)) without an overdraft exception")
            }
            // Online, the hub authorises every spend: a member goes below zero only through a
            // spend made offline, the reversal of a spend its store voided, or (points only) a
            // refund taking back earned points the member had already spent.
            let explained = log.contains { item in
                switch try? item.op.decoded() {
                case .operationReversed(let r)?: return state.root(of: r.member) == view.id
                case .refund(let r)?: return view.balance >= 0 && r.pointsReversed > 0 && state.root(of: r.member) == view.id
                default: return false
                }
            }
            if !explained && !offlineMembers.contains(where: { state.root(of: $0) == view.id }) {
                violation("member \(view.id) is negative (\(view.balance)/\(view.points)) though every spend was authorised online")
            }
        }
        // A coupon used twice (offline at two stores) is always reported.
        for (coupon, uses) in state.couponUses where uses.subtracting(state.couponRestores[coupon] ?? []).count > 1 {
            if !exceptions.contains(where: { $0.kind == "coupon_reused" && $0.detail.contains(coupon) }) {
                violation("coupon \(coupon) was used \(uses.count) times without a coupon_reused exception")
            }
        }
    }
}

extension Simulator {
    /// When a seed's chain starts: mid-January 2027 (UTC), or for a third of the seeds 12 to 48
    /// hours before 2027 begins in UTC, before it begins in any of the programmes' zones. Those
    /// seeds cross a new year while stores are offline and their clocks skewed: a yearly tier
    /// reset, and the days on which the tier counter keeps quarter hours instead of months
    /// (`LedgerSummary.period`), on every replica.
    static func start(_ rng: inout SplitMix64) -> Int64 {
        let newYear2027: Int64 = 1_798_761_600_000 // 2027-01-01T00:00:00Z
        guard Int.random(in: 0..<3, using: &rng) == 0 else { return 1_800_000_000_000 } // 2027-01-15T08:00:00Z
        return newYear2027 - Int64.random(in: 12 * 3_600_000...48 * 3_600_000, using: &rng)
    }

    /// The programmes a seed may run under: the built-in one, and two that exercise bonus
    /// money, coupons, tiers, campaigns and points that expire after a day.
    static func programmes(stores: [StoreID]) -> [Programme?] {
        let coupons = [
            Programme.CouponTemplate(id: "welcome", name: "Welcome", valueMinor: 500, minSpendMinor: 1000, validDays: 2, issueOn: .signup),
            Programme.CouponTemplate(id: "gift", name: "Recharge gift", percent: 10, validDays: 3, issueOn: .recharge),
            Programme.CouponTemplate(id: "wake", name: "Wake up", valueMinor: 300, validDays: 2, issueOn: .wakeUp, dormantDays: 1),
        ]
        let rich = Programme(
            version: 1, name: "simulated", timeZone: "Asia/Shanghai",
            earning: .init(points: 1, perMinor: 100, bands: [.init(fromMinor: 10_000, points: 3, perMinor: 200)],
                           campaigns: [.init(id: "double", percent: 200, weekdays: [2, 5], stores: Array(stores.prefix(2)))]),
            redemption: .init(points: 1, minor: 1, minPoints: 0, maxSharePercent: 80),
            expiry: .init(rule: .afterDays, days: 1),
            tiers: .init(qualifyOn: .points, reset: .never, levels: [.init(name: "regular", threshold: 0),
                                                                     .init(name: "silver", threshold: 300, discountPercent: 5, pointsPercent: 150)]),
            storedValue: .init(bonusBands: [.init(fromMinor: 10_000, bonusMinor: 1000, coupon: "gift")], consume: .principalFirst),
            coupons: coupons)
        var proportional = rich
        proportional.storedValue.consume = .proportional
        proportional.tiers?.reset = .yearly
        proportional.timeZone = "America/Sao_Paulo"
        return [nil, rich, proportional]
    }
}

/// Time as the simulation decides it, with a skew per store.
final class SimulatedClock: Sendable {
    private let state: Mutex<(now: Int64, skews: [Int64])>

    init(start: Int64, stores: Int) {
        state = Mutex((start, Array(repeating: 0, count: stores)))
    }

    func now(store: Int?) -> Int64 {
        state.withLock { s in max(0, s.now + (store.map { s.skews[$0] } ?? 0)) }
    }

    func advance(_ ms: Int64) { state.withLock { $0.now += ms } }
    func setSkew(store: Int, ms: Int64) { state.withLock { $0.skews[store] = ms } }
}
