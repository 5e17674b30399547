/// Amounts are integers in minor units; people read them with two decimals.
public enum MinorUnits {
    /// `-1234` as `-12.34`, exact (no floating point).
    public static func text(_ minor: Int64) -> String {
        let m = minor.magnitude
        return (minor < 0 ? "-" : "") + "\(m / 100)." + (m % 100 < 10 ? "0" : "") + "\(m % 100)"
    }
}
