import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on loopback between a node and the hub that misbehaves on purpose. Each new
/// connection draws a fault from the current mix: pass bytes through, reset at once, stall
/// without a word, trickle bytes slowly, cut the hub's answer short, or leave the connection
/// half-open (the request goes through, the answer never comes back).
final class FaultProxy: @unchecked Sendable {
    /// `clean` is a healed link (long-lived connections, nothing touched); `pass` forwards
    /// faithfully but closes connections young, so the next request draws again.
    enum Fault: CaseIterable, Sendable { case clean, pass, reset, stall, slow, truncate, halfOpen }

    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let state: Mutex<(faults: [Fault], counts: [Fault: Int], stopped: Bool)>
    private let seed = Mutex<UInt64>(0x5EED)

    init(upstreamPort: Int, faults: [Fault] = [.pass, .reset, .stall, .slow, .truncate, .halfOpen]) throws {
        (listener, port) = try bindLoopback()
        guard listen(listener, 128) == 0 else { throw TestFailure("proxy could not listen") }
        self.upstreamPort = upstreamPort
        state = Mutex((faults, [:], false))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var counts: [Fault: Int] { state.withLock { $0.counts } }

    /// The faults new connections draw from (`[.clean]` heals the link).
    func use(_ faults: [Fault]) { state.withLock { $0.faults = faults } }

    func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func next() -> UInt64 {
        seed.withLock { s in
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if state.withLock({ $0.stopped }) { return }
                continue
            }
            let fault = state.withLock { s -> Fault in
                let f = s.faults[Int(next() % UInt64(max(1, s.faults.count)))]
                s.counts[f, default: 0] += 1
                return f
            }
            Thread { [self] in serve(client, fault) }.start()
        }
    }

    private func connectUpstream() -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(upstreamPort).bigEndian)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !ok { close(fd); return nil }
        return fd
    }

    private func serve(_ client: Int32, _ fault: Fault) {
        defer { close(client) }
        switch fault {
        case .reset:
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0) // close with RST
            setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            return
        case .stall:
            Thread.sleep(forTimeInterval: 3)
            return
        default:
            break
        }
        guard let upstream = connectUpstream() else { return }
        defer { close(upstream) }
        // Requests flow node -> hub on their own thread; answers hub -> node here, faulted.
        let forward = Thread {
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while true {
                let n = read(client, &buffer, buffer.count)
                if n <= 0 { shutdown(upstream, Int32(SHUT_WR)); return }
                if send(upstream, buffer, n, Int32(MSG_NOSIGNAL)) != n { return }
            }
        }
        forward.start()
        // Short-lived connections: once the hub has answered and the connection is 300 ms old (or
        // quiet for 200 ms), the proxy closes it, so requests keep drawing fresh faults
        // (keep-alive would let one good connection hide them all).
        let opened = Date()
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(upstream, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 16_384)
        var sent = 0
        var answered = false
        var waited = 0
        while true {
            let n = read(upstream, &buffer, buffer.count)
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                waited += 1
                if fault != .clean && (answered || waited > 150) { return }
                continue
            }
            if n <= 0 { return }
            answered = true
            defer { if fault != .clean && Date().timeIntervalSince(opened) > 0.3 { shutdown(client, Int32(SHUT_RDWR)) } }
            switch fault {
            case .pass, .clean:
                if send(client, buffer, n, Int32(MSG_NOSIGNAL)) != n { return }
            case .slow:
                // 256 bytes every 20 ms.
                var offset = 0
                while offset < n {
                    let chunk = min(256, n - offset)
                    if buffer.withUnsafeBytes({ send(client, $0.baseAddress! + offset, chunk, Int32(MSG_NOSIGNAL)) }) != chunk { return }
                    offset += chunk
                    Thread.sleep(forTimeInterval: 0.02)
                }
            case .truncate:
                // Forward part of the answer, then cut the connection.
                let keep = min(n, max(1, 40 - sent))
                _ = send(client, buffer, keep, Int32(MSG_NOSIGNAL))
                sent += keep
                if sent >= 40 { return }
            case .halfOpen:
                // The hub answered; the node never hears it. Hold the connection open a while.
                Thread.sleep(forTimeInterval: 3)
                return
            case .reset, .stall:
                return
            }
        }
    }
}
