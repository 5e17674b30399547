import Foundation
import Logging
import ServiceLifecycle
import TesseraStorage

/// Runs the hub's scheduled work (points expiry, birthday and wake-up coupons) at start and
/// then every `interval` seconds. Each run is idempotent, so running more often than once a day
/// only brings an expiry closer to local midnight; it never doubles anything.
public struct HubJobs: Service {
    let storage: any HubStorage
    let intervalSeconds: Int
    let logger: Logger

    public init(storage: any HubStorage, intervalSeconds: Int, logger: Logger) {
        self.storage = storage
        self.intervalSeconds = intervalSeconds
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let report = try await HubApplication.offload { try storage.runJobs(asOfMs: nil) }
                    if report.expiries > 0 || report.coupons > 0 {
                        logger.info("scheduled jobs ran", metadata: [
                            "as_of": "\(report.asOf)", "expiries": "\(report.expiries)",
                            "points_expired": "\(report.pointsExpired)", "coupons": "\(report.coupons)"])
                    }
                } catch {
                    logger.error("scheduled jobs failed; retrying at the next interval", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(intervalSeconds))
            }
        }
    }
}

/// Keeps a snapshot file ready for new nodes (spec §6.4): made at start, and again every
/// `ageSeconds` while the chain changes, so that a node joining a large chain loads at once
/// instead of waiting while the hub reads its whole state (seconds to tens of seconds at a
/// million members). Off with an age of 0: files are then made when a node asks.
public struct SnapshotFileKeeper: Service {
    let storage: any HubStorage
    let ageSeconds: Int
    let logger: Logger

    public init(storage: any HubStorage, ageSeconds: Int, logger: Logger) {
        self.storage = storage
        self.ageSeconds = ageSeconds
        self.logger = logger
    }

    public func run() async throws {
        // The kept file goes with the process (the next one makes its own).
        defer { storage.discardSnapshotFile() }
        // A service that returned would end the hub: with no file to keep, it waits for the end.
        guard ageSeconds > 0 else { try? await gracefulShutdown(); return }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let started = Date()
                    if let made = try await HubApplication.offload({ try storage.keepSnapshotFile(maxAge: TimeInterval(ageSeconds)) }) {
                        logger.info("snapshot file made for new nodes", metadata: [
                            "cursor": "\(made.info.cursor)", "rows": "\(made.info.rows)", "bytes": "\(made.bytes)",
                            "seconds": "\(Int(Date().timeIntervalSince(started)))"])
                    }
                } catch {
                    logger.warning("no snapshot file made; retrying at the next interval (nodes asking get one made then)",
                                   metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(ageSeconds))
            }
        }
    }
}
