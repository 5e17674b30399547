import Synchronization

/// Lets at most `limit` tasks through at once; the others wait, in the order they came.
/// (Waiting is not cancelled: a push whose client went away still takes its turn and is
/// written, which is harmless, pushes being idempotent; its answer goes nowhere.)
final class Turnstile: Sendable {
    private struct State {
        var free: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
        /// `waiting` before `next` have passed (dropped from the array now and then).
        var next = 0
    }

    private let state: Mutex<State>

    init(_ limit: Int) {
        precondition(limit > 0, "a turnstile lets someone through")
        state = Mutex(State(free: limit))
    }

    func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await enter()
        defer { leave() }
        return try await body()
    }

    private func enter() async {
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                guard s.free > 0 else {
                    s.waiting.append(turn)
                    return false
                }
                s.free -= 1
                return true
            }
            if now { turn.resume() }
        }
    }

    private func leave() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.next < s.waiting.count else {
                s.free += 1
                return nil
            }
            let turn = s.waiting[s.next]
            s.next += 1
            if s.next >= 1024, s.next * 2 >= s.waiting.count {
                s.waiting.removeFirst(s.next)
                s.next = 0
            }
            return turn
        }
        next?.resume()
    }

    /// Tasks waiting (for tests).
    var waiting: Int { state.withLock { $0.waiting.count - $0.next } }
}
