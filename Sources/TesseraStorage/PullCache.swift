import Synchronization

/// Operations of the log as the hub last wrote them into pull pages, each kept under the
/// version before it: a link `after c -> (v, json)` says the log's first operation after
/// version `c` is `v`, and `json` is its element of a page's `ops`.
///
/// Why: after an outage every store pulls the same stretch of the log, one page at a time, and
/// the hub read each page from its database and wrote it as JSON again for every store (two
/// fifths of the hub's time with a hundred stores catching up). Pages start wherever each
/// store's cursor is, so pages are not kept whole: a page is followed link by link from its
/// cursor, and read from the database only where the links run out.
///
/// A link holds while the log holds what it held when the link was read: the log is appended
/// in version order, nothing commits below a version a reader has seen (every cursor relies on
/// that too), and an operation's row never changes. A database that went back in time (a
/// PostgreSQL restored from a backup, or failed over with commits lost) may hold other
/// operations at those versions: each link carries its operation's id, and a hub on PostgreSQL
/// checks the last link of a page against the log before serving it (`HubStore.pullJSON`; on
/// SQLite the log is the hub's own open file, which is restored only with the hub stopped).
/// The oldest links are let go past `capacityBytes`.
final class PullCache: Sendable {
    struct Link: Sendable {
        var version: Int64
        var id: String
        var json: [UInt8]
    }

    private struct State {
        var links: [Int64: Link] = [:]
        /// The keys in the order they were kept; those before `head` are gone.
        var order: [Int64] = []
        var head = 0
        var bytes = 0
    }

    private let state = Mutex(State())
    let capacityBytes: Int
    /// Bookkeeping of a link besides its JSON (the key, the version, the array's header).
    private static let overhead = 64

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
    }

    /// The links from `cursor` on, at most `limit`, as far as they are kept.
    func links(after cursor: Int64, limit: Int) -> [Link] {
        state.withLock { s in
            var found: [Link] = []
            var at = cursor
            while found.count < limit, let link = s.links[at] {
                found.append(link)
                at = link.version
            }
            return found
        }
    }

    /// Keeps `read`, the log's operations right after `cursor` in version order, as links.
    func keep(after cursor: Int64, _ read: [Link]) {
        guard capacityBytes > 0, !read.isEmpty else { return }
        state.withLock { s in
            var at = cursor
            for link in read {
                assert(link.version > at, "a page's operations come in version order")
                if s.links[at] == nil {
                    s.links[at] = link
                    s.order.append(at)
                    s.bytes += link.json.capacity + link.id.utf8.count + Self.overhead
                }
                at = link.version
            }
            while s.bytes > capacityBytes, s.head < s.order.count {
                let key = s.order[s.head]
                s.head += 1
                if let gone = s.links.removeValue(forKey: key) { s.bytes -= gone.json.capacity + gone.id.utf8.count + Self.overhead }
            }
            if s.head >= 4096, s.head * 2 >= s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    /// Lets every link go.
    func clear() {
        state.withLock { $0 = State() }
    }

    /// Links kept, and their bytes (for tests and metrics).
    var held: (links: Int, bytes: Int) {
        state.withLock { ($0.links.count, $0.bytes) }
    }
}
