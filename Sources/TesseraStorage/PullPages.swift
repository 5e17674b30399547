import CompressNIO
import NIOCore
import Synchronization
import TesseraProtocol

/// Where a pull page ends, and the pages every store is sent alike.
///
/// Why: after an outage every store pulls every other store's operations. With a thousand
/// stores of a thousand operations each, the hub sends a million operations to each of them:
/// 350 GB of JSON, which no hub's link (and not this machine's loopback) carries in minutes.
/// Pages compress about elevenfold, but compressing each store's pages would cost the hub a
/// millisecond and more per page per store. So pages end at fixed versions (multiples of
/// `span`): from there on, every store asks for the same pages, and each is compressed once.
public enum PullPaging {
    /// Pages end at multiples of this many versions (a whole page holds at most this many
    /// operations: the largest page a store may ask for).
    public static let span = Int64(SyncLimits.pullPageMax)

    /// The version the page after `cursor` ends at, at most. (Saturating: a cursor in the last
    /// span of `Int64`, which any store may send, must not trap the hub.)
    public static func boundary(after cursor: Int64) -> Int64 {
        let (end, overflow) = (max(0, cursor) / span + 1).multipliedReportingOverflow(by: span)
        return overflow ? .max : end
    }

    /// The page after `cursor` from the log's next operations (`versions`, in order, read up
    /// to `limit + 1` of them): how many of them it holds, the cursor it leaves the store at,
    /// and whether there is more.
    ///
    /// A page stops at `limit` operations or at the boundary, whichever comes first. Once an
    /// operation beyond the boundary is known, the cursor moves to the boundary itself, even
    /// if the page's last operation were below it: nothing commits below a version already
    /// seen (§6.2), so nothing can come between. The log has no gaps today (§6.2); if it ever
    /// had one across a whole span, that page would be empty, with `more`, and the store would
    /// ask on from the boundary, never for the same empty page twice.
    public static func cut(after cursor: Int64, versions: some Collection<Int64>, limit: Int) -> (count: Int, next: Int64, more: Bool) {
        let end = boundary(after: cursor)
        let within = versions.prefix { $0 <= end }.count
        let count = min(within, limit)
        let beyond = versions.count > within
        let next: Int64
        if beyond && count == within {
            next = end
        } else {
            next = count > 0 ? versions[versions.index(versions.startIndex, offsetBy: count - 1)] : cursor
        }
        return (count, next, versions.count > count)
    }
}

/// A pull page as the hub sends it: its JSON, gzipped when the store accepts that and the page
/// is one every store is sent alike.
public struct PullPage: Sendable {
    public var body: ByteBuffer
    public var gzipped: Bool
}

/// Whole pages (from a multiple of `PullPaging.span` to the next, with more after), gzipped,
/// kept for the next store that asks. A whole page never changes: the log only grows, in
/// version order, and the page ends where an operation beyond it was seen. Each carries its
/// last operation, for a hub whose database may go back in time (PostgreSQL) to check before
/// serving it, as `PullCache` does. The oldest pages are let go past `capacityBytes`.
final class SharedPages: Sendable {
    struct Page: Sendable {
        var gzip: ByteBuffer
        /// The page's last operation, if it has one.
        var last: (version: Int64, id: String)?
    }

    private struct State {
        var pages: [Int64: Page] = [:]
        /// Cursors in the order their pages were kept.
        var order: [Int64] = []
        var bytes = 0
    }

    private let state = Mutex(State())
    let capacityBytes: Int

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
    }

    /// The whole page after `cursor`, if kept.
    func page(after cursor: Int64) -> Page? {
        state.withLock { $0.pages[cursor] }
    }

    func keep(after cursor: Int64, _ page: Page) {
        guard capacityBytes > 0 else { return }
        state.withLock { s in
            guard s.pages[cursor] == nil else { return }
            s.pages[cursor] = page
            s.order.append(cursor)
            s.bytes += page.gzip.readableBytes
            while s.bytes > capacityBytes, !s.order.isEmpty {
                let oldest = s.order.removeFirst()
                if let gone = s.pages.removeValue(forKey: oldest) { s.bytes -= gone.gzip.readableBytes }
            }
        }
    }

    func clear() {
        state.withLock { $0 = State() }
    }

    /// Pages kept, and their bytes (for tests).
    var held: (pages: Int, bytes: Int) {
        state.withLock { ($0.pages.count, $0.bytes) }
    }

    /// `json` gzipped (the fastest level: a page of a thousand operations, about 300 kB, to
    /// about 28 kB in a millisecond; the best level saves a quarter more for six times the time).
    static func gzip(_ json: ByteBuffer) throws -> ByteBuffer {
        var input = json
        return try input.compress(with: .gzip(configuration: .init(compressionLevel: .fastestCompression)))
    }
}
