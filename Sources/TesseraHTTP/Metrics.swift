import Foundation
import Hummingbird
import HTTPTypes
import Metrics
import NIOCore
import Prometheus
import Synchronization

/// `GET /metrics` in Prometheus's text format, on the hub and on every node.
///
/// Request rates and latency histograms per route come from Hummingbird's `MetricsMiddleware`
/// through swift-metrics; counters of what Tessera does (operations accepted and rejected,
/// spends authorised) are swift-metrics counters; figures that are a reading of the state (sync
/// lag per store, pending operations, time since the last sync, exceptions, database sizes) are
/// gauges set when Prometheus scrapes, from the same calls as the JSON API.
public enum Observability {
    /// One registry for the process (`tessera up` runs a hub and two nodes in one).
    public static let registry = PrometheusCollectorRegistry()
    private static let started = Mutex(false)

    /// Makes swift-metrics report into the registry; once per process (later calls do nothing).
    public static func bootstrap() {
        let first = started.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        if first { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
    }

    /// Sets a gauge of the registry (created on first use).
    public static func gauge(_ name: String, _ value: Double, labels: [(String, String)] = [], help: String) {
        registry.makeGauge(name: name, labels: labels, help: help).set(value)
    }

    public static func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

}
