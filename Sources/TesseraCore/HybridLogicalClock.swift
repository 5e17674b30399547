/// Hybrid logical clock (Kulkarni et al., 2014): a physical time in milliseconds plus a counter,
/// so that timestamps grow monotonically at every replica and respect causality even when the
/// machines' clocks disagree. Packed into one 64-bit integer (`wallMs << 16 | counter`) on the
/// wire and on disk, which keeps ordering a plain integer comparison.
public struct HLCTimestamp: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let wallMs: Int64
    public let counter: UInt16

    public init(wallMs: Int64, counter: UInt16) {
        precondition(wallMs >= 0 && wallMs < HLCTimestamp.wallMsLimit, "wall clock out of range")
        self.wallMs = wallMs
        self.counter = counter
    }

    /// The largest wall time an HLC holds (47 bits of milliseconds: the year 6429).
    public static let wallMsLimit: Int64 = 1 << 47

    public init?(packed: Int64) {
        guard packed >= 0, packed >> 16 < HLCTimestamp.wallMsLimit else { return nil }
        self.wallMs = packed >> 16
        self.counter = UInt16(truncatingIfNeeded: packed & 0xFFFF)
    }

    public var packed: Int64 { wallMs << 16 | Int64(counter) }
    public static let zero = HLCTimestamp(wallMs: 0, counter: 0)

    public static func < (a: HLCTimestamp, b: HLCTimestamp) -> Bool { a.packed < b.packed }
    public var description: String { "\(wallMs).\(counter)" }

    public init(from decoder: any Decoder) throws {
        let packed = try decoder.singleValueContainer().decode(Int64.self)
        guard let ts = HLCTimestamp(packed: packed) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid hlc \(packed)"))
        }
        self = ts
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(packed)
    }
}

/// The clock of one replica. Pure: the physical time is passed in, so tests and the simulator
/// drive it deterministically.
public struct HybridLogicalClock: Sendable {
    public private(set) var last: HLCTimestamp
    /// A remote timestamp further ahead of our physical clock than this is not adopted: a store
    /// whose clock runs days ahead must not drag every replica's clock with it.
    public let maxDriftMs: Int64

    public init(last: HLCTimestamp = .zero, maxDriftMs: Int64 = 5 * 60 * 1000) {
        self.last = last
        self.maxDriftMs = maxDriftMs
    }

    /// A timestamp for a new local event.
    public mutating func tick(physicalMs: Int64) -> HLCTimestamp {
        if physicalMs > last.wallMs {
            last = HLCTimestamp(wallMs: physicalMs, counter: 0)
        } else if last.counter == UInt16.max {
            // The counter is exhausted within one millisecond: borrow the next millisecond.
            last = HLCTimestamp(wallMs: last.wallMs + 1, counter: 0)
        } else {
            last = HLCTimestamp(wallMs: last.wallMs, counter: last.counter + 1)
        }
        return last
    }

    /// Takes a timestamp seen on a remote operation into account. Returns false (and ignores it)
    /// when it lies further ahead of `physicalMs` than `maxDriftMs`.
    @discardableResult
    public mutating func observe(_ remote: HLCTimestamp, physicalMs: Int64) -> Bool {
        guard remote.wallMs - physicalMs <= maxDriftMs else { return false }
        if remote > last { last = remote }
        return true
    }
}

/// The order used to decide last-writer-wins between two profile edits: the HLC first, the
/// origin store as the tie-breaker. Encoded as a fixed-width string (`<16 hex digits>/<store>`)
/// so SQL compares it with a plain `<`.
public struct Stamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let hlc: HLCTimestamp
    public let origin: StoreID

    public init(hlc: HLCTimestamp, origin: StoreID) {
        self.hlc = hlc
        self.origin = origin
    }

    public static func < (a: Stamp, b: Stamp) -> Bool { (a.hlc, a.origin) < (b.hlc, b.origin) }

    /// The HLC in 16 hex digits (its 8 bytes, big-endian), "/", the origin: text that sorts as
    /// stamps do.
    public var key: String {
        Hex.lowercase(withUnsafeBytes(of: UInt64(a: hlc.packed).bigEndian) { Array($0) }) + "/" + origin.rawValue
    }
    public var description: String { key }
}

extension UInt64 {
    fileprivate init(a: Int64) { self = UInt64(bitPattern: a) }
}
