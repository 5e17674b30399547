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
///
/// Links are kept in the order they were read (a page's run of them together), with an index
/// of where each one is: a page looks its cursor up once and then walks the run, while each next
/// link is the one after the last; it looks up again only where a run ends. A dictionary walked
/// a thousand times a page (hash the key, miss the processor's cache) was a tenth of the hub's
/// time with a hundred stores catching up.
final class PullCache: Sendable {
    /// A class: a page hands a thousand of them out, and a reference is one count to keep
    /// where a struct's string and array were two (with a hundred stores catching up, counting
    /// references was half of the time spent writing pages).
    final class Link: Sendable {
        let version: Int64
        let id: String
        let json: [UInt8]

        init(version: Int64, id: String, json: [UInt8]) {
            self.version = version
            self.id = id
            self.json = json
        }
    }

    private struct State {
        /// Each link with the version it follows, in the order kept; nil once let go.
        var kept: [(after: Int64, link: Link?)] = []
        /// Where in `kept` (counted from the first ever kept) the link after a version is.
        var index: [Int64: Int] = [:]
        /// Entries before `head` were let go; `dropped` of them are gone from the array.
        var head = 0
        var dropped = 0
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
            guard limit > 0, var at = s.index[cursor].map({ $0 - s.dropped }) else { return found }
            while let link = s.kept[at].link {
                found.append(link)
                guard found.count < limit else { break }
                // The next link of the run, else a look-up.
                if at + 1 < s.kept.count, s.kept[at + 1].after == link.version, s.kept[at + 1].link != nil {
                    at += 1
                } else if let next = s.index[link.version] {
                    at = next - s.dropped
                } else {
                    break
                }
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
                if s.index[at] == nil {
                    s.index[at] = s.dropped + s.kept.count
                    s.kept.append((at, link))
                    s.bytes += Self.cost(link)
                }
                at = link.version
            }
            while s.bytes > capacityBytes, s.head < s.kept.count {
                let (after, link) = s.kept[s.head]
                if let link {
                    s.bytes -= Self.cost(link)
                    s.index[after] = nil
                    s.kept[s.head].link = nil
                }
                s.head += 1
            }
            if s.head >= 4096, s.head * 2 >= s.kept.count {
                s.kept.removeFirst(s.head)
                s.dropped += s.head
                s.head = 0
            }
        }
    }

    private static func cost(_ link: Link) -> Int { link.json.capacity + link.id.utf8.count + overhead }

    /// Lets every link go.
    func clear() {
        state.withLock { $0 = State() }
    }

    /// Links kept, and their bytes (for tests and metrics).
    var held: (links: Int, bytes: Int) {
        state.withLock { ($0.index.count, $0.bytes) }
    }
}
