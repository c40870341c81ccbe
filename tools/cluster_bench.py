#!/usr/bin/python3
"""cluster_bench: the cluster's figures for docs/benchmarks.md ("The cluster").

Runs release builds of vroomd, vroom and vroom-bench (meson setup build-rel
--buildtype=release && ninja -C build-rel) on 127.0.0.1 and prints:

1. Membership, for each cluster size (3, 5 and 10 nodes by default), over
   several trials: a seed node starts; once it has bound its cluster port the
   others start at once with --seeds pointing at it;
   - convergence: from the start of the others until every node's GET /stats
     lists every member alive;
   - failure detection: one second later a non-seed node is killed with
     SIGKILL; from the kill until every remaining node lists it dead. Twice:
     with no node links to the victim (SWIM's probes and suspicion alone),
     and after 3 rooms were made through the victim (its requests went to
     their relays over links, whose reset and refused reconnect declare it
     dead at once).
   Median and max over the trials (convergence over both). The remaining
   nodes then get SIGTERM and must exit 0.
2. Fan-out through a cluster beside a single node, in the same run, runs
   interleaved: vroom-bench with one publisher and --subs subscribers
   (default 10) of --size bytes (default 1 KiB) pushes:
   - single: one vroomd without a cluster, everyone on it;
   - relay A: a 3-node cluster A, B, C; the publisher on A, which relays the
     room; the subscribers split across B and C;
   - relay B: the same, with the room relayed by B (pushes go A -> B, B
     delivers to its own subscribers and sends C one copy).
   Nodes run on CPU 0 and vroom-bench on CPU 1 (taskset; --no-pin: no
   pinning), as in the single-node figures of docs/benchmarks.md: the three
   nodes of the cluster share the one core the single node has to itself,
   so the cluster does its extra work (sealing and opening every push on
   the node links, parsing it again) on the same CPU budget. The table
   gives each setup's deliveries per subscriber against the single node's,
   per round (the single node measured just before) and as the median.
3. (--stream BYTES, 0 to skip) a byte stream to 2 receivers, single node
   beside publisher on A, receivers on B and C, relay A.

Every node uses the default membership timers (probe every 200 ms, 80 ms
ack deadline, 1 s of suspicion). Python stdlib only (msgpack is not needed).

    tools/cluster_bench.py --build build-rel [--trials 5] [--sizes 3,5,10]
        [--runs 3] [--count 200000] [--subs 10] [--size 1024] [--stream BYTES]
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

STATS_RE = re.compile(r"stats on 127\.0\.0\.1:(\d+)")
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(clients\)")


class Failure(Exception):
    pass


def free_port(used):
    """A port free for both UDP and TCP on 127.0.0.1 (bound, then released)."""
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            if port in used:
                continue
            u.bind(("127.0.0.1", port))
            used.add(port)
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise Failure("no free port")


class Vroomd:
    def __init__(self, bench, name=None, seeds=None, cpu=None):
        self.bench = bench
        self.name = name
        self.log_path = os.path.join(bench.tmp, "%s-%d.log" % (name or "single", bench.next_id()))
        self.log = open(self.log_path, "wb")
        self.caddr = None
        args = [bench.vroomd, "--listen", "127.0.0.1:0", "--stats", "127.0.0.1:0"]
        if name:
            self.caddr = "127.0.0.1:%d" % free_port(bench.ports)
            args += ["--cluster", self.caddr, "--cluster-key", bench.key, "--node-name", name]
            if seeds:
                args += ["--seeds", seeds]
        if cpu is not None and bench.args.pin and shutil.which("taskset"):
            args = ["taskset", "-c", str(cpu)] + args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        self.port = self.stats_port = None

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_up(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.text()
            m, s = LISTEN_RE.search(t), STATS_RE.search(t)
            if m and s and (not self.name or "in the cluster on" in t):
                self.port, self.stats_port = int(m.group(1)), int(s.group(1))
                return
            if self.proc.poll() is not None:
                raise Failure("vroomd %s exited %s:\n%s" % (self.name, self.proc.returncode, t))
            time.sleep(0.002)
        raise Failure("vroomd %s did not start:\n%s" % (self.name, self.text()))

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def members(self):
        c = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=5)
        try:
            c.request("GET", "/stats")
            body = c.getresponse().read()
        finally:
            c.close()
        return {m["name"]: m["state"] for m in json.loads(body)["members"]}

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("vroomd %s did not exit after SIGTERM" % self.name)
        self.log.close()
        if rc != 0:
            raise Failure("vroomd %s exited %d after SIGTERM:\n%s" % (self.name, rc, self.text()))


class Bench:
    def __init__(self, args):
        self.args = args
        b = args.build
        self.vroomd = os.path.join(b, "node", "vroomd")
        self.vroom = os.path.join(b, "client", "vroom")
        self.vbench = os.path.join(b, "tools", "vroom-bench")
        for p in (self.vroomd, self.vroom, self.vbench):
            if not os.access(p, os.X_OK):
                raise SystemExit("cluster_bench: %s is missing: build %s first" % (p, b))
        self.tmp = tempfile.mkdtemp(prefix="vroom-cluster-bench-")
        self.key = os.path.join(self.tmp, "cluster.key")
        subprocess.run([self.vroom, "cluster", "keygen", self.key], check=True)
        self.ports = set()
        self._id = 0
        self.live = []

    def next_id(self):
        self._id += 1
        return self._id

    def node(self, *a, **kw):
        """A started vroomd (not yet up: call wait_up); see up()."""
        n = Vroomd(self, *a, **kw)
        self.live.append(n)
        return n

    def up(self, *a, **kw):
        """A vroomd that is up; another cluster port if its was taken meanwhile."""
        for _ in range(5):
            n = self.node(*a, **kw)
            try:
                n.wait_up()
                return n
            except Failure:
                if "cannot bind" not in n.text() and "cannot listen" not in n.text():
                    raise
        raise Failure("no cluster port after 5 tries")

    def cleanup(self):
        for n in self.live:
            if n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_views(nodes, want, timeout):
    """Seconds (from now) until every node's view equals want."""
    t0 = time.monotonic()
    pending = list(nodes)
    while pending:
        pending = [n for n in pending if n.members() != want]
        if not pending:
            break
        if time.monotonic() - t0 > timeout:
            raise Failure("views not %s after %.0f s: %s" %
                          (want, timeout, {n.name: n.members() for n in pending}))
        time.sleep(0.005)
    return time.monotonic() - t0


def membership_trial(bench, size, links):
    seed = bench.up("m1")
    t0 = time.monotonic()
    others = [bench.node("m%d" % i, seeds=seed.caddr) for i in range(2, size + 1)]
    for n in others:
        n.wait_up()  # a port taken meanwhile fails the trial (rare): run again
    nodes = [seed] + others
    want = {n.name: "alive" for n in nodes}
    wait_views(nodes, want, 30)
    conv = time.monotonic() - t0
    time.sleep(1.0)
    victim = nodes[-1]
    rest = nodes[:-1]
    if links:
        # Rooms made through the victim: its requests go to their relays
        # over node links (made on demand), so other nodes hold links to it.
        for _ in range(3):
            subprocess.run([bench.vroom, "-s", victim.addr, "--identity", "bench", "room",
                            "create"], check=True, capture_output=True, timeout=30)
        time.sleep(0.5)
    want = {n.name: "alive" for n in rest}
    want[victim.name] = "dead"
    t0 = time.monotonic()
    victim.kill9()
    wait_views(rest, want, 30)
    det = time.monotonic() - t0
    for n in reversed(rest):
        n.stop()
    bench.live = []
    return conv, det


def run_bench(bench, pub, subs, relay=None, stream=0):
    a = bench.args
    cmd = [bench.vbench, "--pub-server", pub, "--sub-servers", ",".join(subs),
           "--subs", str(a.subs if not stream else len(subs)), "--max-seconds", str(a.max_seconds)]
    if stream:
        cmd += ["--stream", str(stream)]
    else:
        cmd += ["--size", str(a.size), "--count", str(a.count), "--window", str(a.window)]
    if relay:
        cmd += ["--relay", relay]
    if a.pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", "1"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise Failure("%s exited %d:\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    line = r.stdout.strip().splitlines()[-1]
    vals = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    return vals, line


def fanout(bench):
    a = bench.args
    single = bench.up(None, cpu=0)
    A = bench.up("A", cpu=0)
    B = bench.up("B", seeds=A.caddr, cpu=0)
    C = bench.up("C", seeds=A.caddr, cpu=0)
    wait_views([A, B, C], {"A": "alive", "B": "alive", "C": "alive"}, 30)
    configs = [
        ("single node", single.addr, [single.addr], None),
        ("pub on A (relay), subs on B+C", A.addr, [B.addr, C.addr], "A"),
        ("pub on A, relay B, subs on B+C", A.addr, [B.addr, C.addr], "B"),
    ]
    results = {c[0]: [] for c in configs}
    print("\n## Fan-out: 1 publisher, %d subscribers, %d-byte pushes, %d pushes per run" %
          (a.subs, a.size, a.count), flush=True)
    for run in range(a.runs):
        for name, pub, subs, relay in configs:
            vals, line = run_bench(bench, pub, subs, relay)
            results[name].append(vals)
            print("run %d  %-32s %s" % (run + 1, name, line), flush=True)
    # Per subscriber: every setup has the same --subs subscribers, so the
    # ratio of deliveries per subscriber is the ratio of deliveries. Each
    # run's ratio is taken against the single node's run of the same round
    # (measured just before it), then the median of those; the ratio of the
    # medians is printed beside it.
    single_d = [float(v["deliveries/s"]) for v in results[configs[0][0]]]
    print("\n| setup | pushes/s runs | median pushes/s | median deliveries/s | "
          "median deliveries/s per subscriber | median MB/s (all subs) | per subscriber / "
          "single node: per round | median | lost | reordered |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, _, _, _ in configs:
        rs = results[name]
        p = [float(v["pushes/s"]) for v in rs]
        d = [float(v["deliveries/s"]) for v in rs]
        mb = [float(v["MB/s"]) for v in rs]
        lost = sum(int(v["lost"]) for v in rs)
        dis = sum(int(v["disorder"]) for v in rs)
        rounds = [x / y for x, y in zip(d, single_d)]
        print("| %s | %s | **%s** | %s | %s | %.1f | %s | **%.2f** (of medians %.2f) | %d | %d |" %
              (name, ", ".join("{:,.0f}".format(x) for x in p),
               "{:,.0f}".format(statistics.median(p)), "{:,.0f}".format(statistics.median(d)),
               "{:,.0f}".format(statistics.median(d) / a.subs), statistics.median(mb),
               ", ".join("%.2f" % x for x in rounds), statistics.median(rounds),
               statistics.median(d) / statistics.median(single_d), lost, dis))
    if a.stream:
        sconf = [
            ("single node", single.addr, [single.addr, single.addr], None),
            ("sender on A (relay), receivers on B, C", A.addr, [B.addr, C.addr], "A"),
        ]
        sres = {c[0]: [] for c in sconf}
        print("\n## Stream: %d bytes to 2 receivers" % a.stream, flush=True)
        for run in range(a.runs):
            for name, pub, subs, relay in sconf:
                vals, line = run_bench(bench, pub, subs, relay, stream=a.stream)
                sres[name].append(vals)
                print("run %d  %-40s %s" % (run + 1, name, line), flush=True)
        print("\n| setup | MB/s per receiver, runs | median per receiver | verified |")
        print("|---|---|---|---|")
        for name, _, _, _ in sconf:
            rs = sres[name]
            x = [float(v["MB/s-per-receiver"]) for v in rs]
            ok = sum(int(v["verified"]) for v in rs)
            print("| %s | %s | **%.1f** | %d of %d |" %
                  (name, ", ".join("%.1f" % v for v in x), statistics.median(x), ok, 2 * len(rs)))
    for n in (C, B, A, single):
        n.stop()
    bench.live = []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build-rel")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--sizes", default="3,5,10")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--max-seconds", type=int, default=300, help="vroom-bench's time limit per run")
    ap.add_argument("--window", type=int, default=256,
                    help="pushes in flight before the publisher waits for an OK (vroom-bench "
                         "--window; libvroom keeps up to 4096 unacknowledged by default)")
    ap.add_argument("--subs", type=int, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--stream", type=int, default=0)
    ap.add_argument("--skip-membership", action="store_true")
    ap.add_argument("--skip-fanout", action="store_true")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="no taskset: nodes and vroom-bench run on any CPU")
    a = ap.parse_args()
    bench = Bench(a)
    try:
        print("# cluster_bench %s: %s, %d CPUs, %s" %
              (time.strftime("%Y-%m-%d"), cpu_model(), os.cpu_count(), os.uname().release))
        if not a.skip_membership:
            sizes = [int(x) for x in a.sizes.split(",")]
            print("\n## Membership (default timers), %d trials each" % a.trials, flush=True)
            rows = []
            for size in sizes:
                conv, det, detl = [], [], []
                for links in (False, True):
                    for t in range(a.trials):
                        c, d = membership_trial(bench, size, links)
                        conv.append(c)
                        (detl if links else det).append(d)
                        print("%2d nodes trial %d%s: converged %.3f s, kill -9 to dead "
                              "everywhere %.3f s" % (size, t + 1, " (victim with links)"
                                                     if links else "", c, d), flush=True)
                rows.append((size, conv, det, detl))
            print("\n| nodes | convergence median | max | kill -9 to dead everywhere, no links: "
                  "median | max | with links: median | max |")
            print("|---|---|---|---|---|---|---|")
            for size, conv, det, detl in rows:
                print("| %d | %.2f s | %.2f s | %.2f s | %.2f s | %.3f s | %.3f s |" %
                      (size, statistics.median(conv), max(conv), statistics.median(det),
                       max(det), statistics.median(detl), max(detl)))
        if not a.skip_fanout:
            fanout(bench)
    except Failure as e:
        print("cluster_bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    return 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
