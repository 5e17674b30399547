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
