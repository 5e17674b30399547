#!/usr/bin/env python3
"""Quick measurements of a real hub and node on loopback (until the benchmark suite of issue 6).

Usage: scripts/measure.py [--bin .build/release/tessera] [--ops 10000]

Prints till latency (p50/p99/max) for purchases that the hub authorises, purchases that need no
authorisation, and purchases decided offline; throughput with 1 and 8 tills; how fast a node's
backlog reaches the hub after an outage; how fast another node catches up by pulling; and, as
the physical limit, single-row commits straight into SQLite (WAL, synchronous=FULL) on the same
disk. Loopback only; every process it starts is stopped at the end.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=headers or {})
        r = self.conn.getresponse()
        payload = r.read()
        return r.status, (json.loads(payload) if payload else {})


def start(args, log):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    for line in p.stdout:
        if "listening on" in line:
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p
    raise SystemExit(f"{args[1]} did not start; see {log}")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latencies(label, port, member, body, n):
    c = Client(port)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, answer = c.call("POST", f"/v1/members/{member}/purchase", body)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 201, answer
    print(f"{label:<48} p50 {statistics.median(times):6.2f} ms  p99 {percentile(times, 0.99):6.2f} ms  "
          f"max {max(times):6.2f} ms  ({n} sequential, {1000 / statistics.mean(times):6.0f}/s)")
    return statistics.median(times)


def throughput(label, port, member, body, tills, seconds=5):
    done = [0] * tills
    stop = time.perf_counter() + seconds

    def till(i):
        c = Client(port)
        while time.perf_counter() < stop:
            status, answer = c.call("POST", f"/v1/members/{member}/purchase", body)
            assert status == 201, answer
            done[i] += 1

    threads = [threading.Thread(target=till, args=(i,)) for i in range(tills)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(done) / seconds
    print(f"{label:<48} {rate:8.0f} purchases/s with {tills} till(s)")
    return rate


def raw_sqlite_commits(folder, n=2000):
    db = sqlite3.connect(os.path.join(folder, "raw.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, member TEXT, value INTEGER, body TEXT)")
    t = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN")
        db.execute("INSERT INTO t (member, value, body) VALUES (?, ?, ?)", ("m-s1-1", -100, "x" * 150))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t)
    print(f"{'raw SQLite single-row commits (WAL, FULL)':<48} {rate:8.0f} commits/s")
    return rate


def wait(predicate, timeout=600):
    t = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t > timeout:
            raise SystemExit("timed out")
        time.sleep(0.02)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release/tessera")
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--members", type=int, default=500)
    a = ap.parse_args()
    tessera = os.path.abspath(a.bin)
    folder = tempfile.mkdtemp(prefix="tessera-measure-")
    procs = []
    try:
        hub_data = os.path.join(folder, "hub")
        tokens = {}
        for store in ("s1", "s2"):
            out = subprocess.run([tessera, "store", "add", store, "--name", store, "--data", hub_data],
                                 check=True, capture_output=True, text=True).stdout
            tokens[store] = out.strip().splitlines()[-1]
        admin = subprocess.run([tessera, "admin", "token", "--data", hub_data],
                               check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        hub_port = free_port()
        hub_args = [tessera, "hub", "--data", hub_data, "--listen", f"127.0.0.1:{hub_port}"]
        hub = start(hub_args, os.path.join(folder, "hub.log"))
        procs.append(hub)
        ports = {"s1": free_port(), "s2": free_port()}

        def node(store, limit=10**12):
            p = start([tessera, "node", "--data", os.path.join(folder, store), "--store", store,
                       "--hub", f"http://127.0.0.1:{hub_port}", "--token", tokens[store],
                       "--listen", f"127.0.0.1:{ports[store]}", "--offline-limit", str(limit),
                       "--sync-interval-ms", "200"], os.path.join(folder, f"{store}.log"))
            procs.append(p)
            c = Client(ports[store])
            wait(lambda: c.call("GET", "/v1/status")[1].get("bootstrapped"))
            return p

        node("s1")
        s2 = node("s2")
        c = Client(ports["s1"])
        _, member = c.call("POST", "/v1/members", {"name": "Bench", "phone": "+15550100"})
        mid = member["id"]
        c.call("POST", f"/v1/members/{mid}/recharge", {"amount": 10**11})
        wait(lambda: c.call("GET", "/v1/status")[1]["pending_ops"] == 0)

        print(f"machine: {os.cpu_count()} cores; binary: {a.bin}")
        raw = raw_sqlite_commits(folder)
        n = a.samples
        latencies("purchase, no balance used (local write)", ports["s1"], mid, {"amount": 2550}, n)
        latencies("purchase from balance, authorised by the hub", ports["s1"], mid, {"amount": 100, "pay_from_balance": True}, n)
        local = throughput("purchase, no balance used", ports["s1"], mid, {"amount": 2550}, 1)
        throughput("purchase, no balance used", ports["s1"], mid, {"amount": 2550}, 8)
        throughput("purchase from balance (hub authorises)", ports["s1"], mid, {"amount": 100, "pay_from_balance": True}, 8)
        print(f"{'ratio: local purchases / raw SQLite commits':<48} {local / raw:8.2f}")
        wait(lambda: c.call("GET", "/v1/status")[1]["pending_ops"] == 0)

        # Outage: the hub goes down, s2 too; s1 keeps trading offline, across many members.
        hub.send_signal(signal.SIGKILL); hub.wait()
        s2.send_signal(signal.SIGKILL); s2.wait()
        latencies("purchase from balance, hub down (offline)", ports["s1"], mid, {"amount": 100, "pay_from_balance": True}, n)
        members = []
        for i in range(a.members):
            status, m = c.call("POST", "/v1/members", {"name": f"M{i}", "phone": f"+1666{i:07d}"})
            assert status == 201, m
            members.append(m["id"])
            status, answer = c.call("POST", f"/v1/members/{m['id']}/recharge", {"amount": 50000})
            assert status == 201, answer
        for i in range(a.ops - n - 2 * a.members):
            m = members[i % len(members)]
            body, path = {"amount": 100, "pay_from_balance": True}, f"/v1/members/{m}/purchase"
            status, answer = c.call("POST", path, body)
            assert status == 201, answer
        pending = c.call("GET", "/v1/status")[1]["pending_ops"]
        hub = start(hub_args, os.path.join(folder, "hub2.log"))
        procs.append(hub)
        up = wait(lambda: c.call("GET", "/v1/status")[1]["pending_ops"] == 0)
        print(f"{'catch-up: backlog pushed to the hub':<48} {pending} operations in {up:.2f} s ({pending / up:.0f} ops/s)")
        hc = Client(hub_port)
        auth = {"Authorization": f"Bearer {admin}"}

        def hub_members():
            return hc.call("GET", "/v1/members", headers=auth)[1]["members"]

        t = time.perf_counter()
        node("s2")
        c2 = Client(ports["s2"])
        at_hub = hub_members()

        def caught_up():
            return all(c2.call("GET", f"/v1/members/{v['id']}")[1] == v for v in (at_hub[0], at_hub[-1]))

        wait(caught_up)
        behind = time.perf_counter() - t
        print(f"{'catch-up: another node pulls the backlog':<48} {pending} operations in {behind:.2f} s (restart included)")
        wait(lambda: c.call("GET", "/v1/status")[1]["cursor"] == c2.call("GET", "/v1/status")[1]["cursor"])
        at_hub = hub_members()
        mismatched = [v["id"] for v in at_hub
                      if c.call("GET", f"/v1/members/{v['id']}")[1] != v or c2.call("GET", f"/v1/members/{v['id']}")[1] != v]
        print(f"{'converged: members equal at hub and both nodes':<48} {len(at_hub) - len(mismatched)} of {len(at_hub)}")
        assert not mismatched, mismatched[:5]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        subprocess.run(["rm", "-rf", folder])


if __name__ == "__main__":
    main()
