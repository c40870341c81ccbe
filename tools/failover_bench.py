#!/usr/bin/python3
"""failover_bench: how long pushes stop, and what is lost, when a relay fails
(docs/benchmarks.md "Failover").

Runs a release build of vroomd (meson setup build-rel --buildtype=release &&
ninja -C build-rel) as a 5-node cluster on 127.0.0.1 (the cluster key from
`vroom cluster keygen`, default membership timers). One publisher connection
on n1 pushes --rate pushes/s (default 1000), pipelined, into a room that n1
does not relay; each payload carries a counter and the publisher's
CLOCK_MONOTONIC time. Subscribers on the three nodes that are neither n1 nor
the room's relay record every DELIVER with its arrival time. A trial (a new
room each time):

- pushes for --warmup s (1 s), then, at a random point within a push
  interval, the relay fails:
  - kill: SIGKILL; it is started again after the trial, with the same name
    and cluster address (a new incarnation), and the trial waits until every
    node lists it alive;
  - stop: SIGSTOP; SIGCONT as soon as its first backup logs the takeover; it
    rejoins and the room is handed back to it;
- pushes go on for --after s (2 s) after the takeover, then stop; every reply
  and delivery is waited for (until nothing arrives for 2 s).

Per receiver and trial, the resume time is the largest gap between two
consecutive deliveries from 0.2 s before the failure to the last push (the
gap that spans the failure, unless a later one is longer). Every trial
checks, by seq and payload byte for byte:

- publisher: pushes without exactly one OK (refused with an error, or no
  reply), one seq given to two pushes, pushes sequenced out of the
  publisher's order;
- each receiver: lost (a push acknowledged with a seq, never delivered
  with that seq and its payload: of two pushes given one seq, one at least
  is lost), duplicated (a seq delivered again), reordered (a seq lower than
  the one before), unacked (a seq delivered with a payload that no OK named
  with it: a push the publisher was told failed, or another push's seq).

With --stream-bytes N, a raw client on n1 (the room's owner) also streams
N bytes into the trial's room (STREAM_OPEN, 64 KiB chunks, as fast as the
relay's credit allows or at --stream-rate bytes/s, then STREAM_CLOSE); block
k of the stream is sha256("blk k") repeated, so every byte is known by its
offset. The failure comes once the warmup is over and the sender has sent a
random 10-50 % of N (the trial says where the sender and the receivers were:
"not_mid_stream" counts a failure after the stream's end), and the trial
lasts until the stream has ended everywhere (at most --stream-timeout s
after the takeover). Per receiver, checked on arrival: bytes lost (never
received), duplicated (received twice), reordered (received after later
bytes), corrupt (not the sender's at that offset), one OPENED and one END
`ok` with N bytes and nothing after it; the sender's close gets OK with N
and no STREAM_END or ERROR. The stream's resume time is, like a push's, the
largest gap between two STREAM_DATA arrivals from 0.2 s before the failure
to the stream's end.

The room is removed after its trial (--keep-rooms: left, with its ring of
recent pushes, which every later takeover and hand-back moves too).

Prints a line per trial, then per mode: resume p50/p99/max over all receivers
and trials (nearest rank), the takeover time (failure to the backup's log
line, polled every 10 ms) and the sums of every count. The node logs are
kept (in a temporary directory, named at the end) when a trial had a
problem. Needs python3-msgpack.

    /usr/bin/python3 tools/failover_bench.py --build build-rel [--trials 20]
        [--modes kill,stop] [--rate 1000] [--warmup 1] [--after 2] [--seed N]
        [--keep-rooms] [--stream-bytes N [--stream-rate B/s]
        [--stream-timeout S]] [-v]
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import msgpack

HELLO, WELCOME, OK, ERROR = 1, 2, 3, 4
CREATE, REMOVE, SUBSCRIBE = 100, 101, 104
PLACE, PUSH, DELIVER = 108, 200, 201
STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE = 300, 301, 302
STREAM_OPENED, STREAM_DATA, STREAM_END, STREAM_CREDIT = 310, 311, 312, 320
STATS_RE = re.compile(r"stats on 127\.0\.0\.1:(\d+)")
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(clients\)")
NODES = 5
PAD = bytes(range(48))  # payload: counter, send time (ns), then these


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


# ---------------------------------------------------------------- nodes

class Vroomd:
    """One cluster node; start() again after a kill: same name and address."""

    def __init__(self, bench, name, caddr):
        self.bench, self.name, self.caddr = bench, name, caddr
        self.proc = None
        self.starts = 0

    def start(self, seeds=None):
        self.starts += 1
        self.log_path = os.path.join(self.bench.tmp, "%s-%d.log" % (self.name, self.starts))
        self.log = open(self.log_path, "wb")
        args = [self.bench.vroomd, "--listen", "127.0.0.1:0", "--stats", "127.0.0.1:0",
                "--cluster", self.caddr, "--cluster-key", self.bench.key,
                "--node-name", self.name]
        if seeds:
            args += ["--seeds", seeds]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        self.read_at = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            t = self.text()
            m, s = LISTEN_RE.search(t), STATS_RE.search(t)
            if m and s and "in the cluster on" in t:
                self.port, self.stats_port = int(m.group(1)), int(s.group(1))
                return
            if self.proc.poll() is not None:
                raise Failure("vroomd %s exited %s:\n%s" % (self.name, self.proc.returncode, t))
            time.sleep(0.005)
        raise Failure("vroomd %s did not start:\n%s" % (self.name, self.text()))

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def new_lines(self):
        """The log's lines since the last call."""
        with open(self.log_path, "rb") as f:
            f.seek(self.read_at)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.read_at += cut
        return data[:cut].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def view(self):
        c = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=5)
        try:
            c.request("GET", "/stats")
            body = c.getresponse().read()
        finally:
            c.close()
        return {m["name"]: (m["state"], m["incarnation"]) for m in json.loads(body)["members"]}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reap(self):
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("vroomd %s did not exit after SIGTERM" % self.name)
        self.log.close()
        if rc != 0:
            raise Failure("vroomd %s exited %d after SIGTERM" % (self.name, rc))


class Bench:
    def __init__(self, args):
        self.args = args
        self.vroomd = os.path.join(args.build, "node", "vroomd")
        self.vroom = os.path.join(args.build, "client", "vroom")
        for p in (self.vroomd, self.vroom):
            if not os.access(p, os.X_OK):
                raise SystemExit("failover_bench: %s is missing: build %s first" % (p, args.build))
        self.tmp = tempfile.mkdtemp(prefix="vroom-failover-bench-")
        self.key = os.path.join(self.tmp, "cluster.key")
        subprocess.run([self.vroom, "cluster", "keygen", self.key], check=True,
                       stdout=subprocess.DEVNULL)
        ports = set()
        self.nodes = {}
        for i in range(1, NODES + 1):
            name = "n%d" % i
            self.nodes[name] = Vroomd(self, name, "127.0.0.1:%d" % free_port(ports))
        first = self.nodes["n1"]
        first.start()
        for n in list(self.nodes.values())[1:]:
            n.start(seeds=first.caddr)
        self.converge()

    def converge(self, timeout=20, newer=None):
        """Every node lists every node alive (newer: {name: incarnation it
        must have passed})."""
        deadline = time.monotonic() + timeout
        while True:
            good = True
            for n in self.nodes.values():
                if not n.alive():
                    raise Failure("node %s is gone (exit %s)" % (n.name, n.proc.returncode))
                v = n.view()
                if len(v) != NODES or any(st != "alive" for st, _ in v.values()):
                    good = False
                    break
                for name, inc in (newer or {}).items():
                    if v[name][1] <= inc:
                        good = False
            if good:
                return
            if time.monotonic() > deadline:
                raise Failure("the cluster did not converge: %s" %
                              {n.name: n.view() for n in self.nodes.values()})
            time.sleep(0.02)

    def cleanup(self, ok):
        for n in self.nodes.values():
            if n.alive():
                if ok:
                    n.stop()
                else:
                    n.proc.kill()
        if ok and not os.environ.get("FAILOVER_BENCH_KEEP"):  # =1: keep the node logs
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- clients

class Conn:
    def __init__(self, node, identity):
        self.node = node
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rid = 0
        self.buf = bytearray()
        self.frames = []  # (arrival time, frame)
        self.eof = False
        self.on_frame = None  # (t, frame) -> True: taken, not kept in frames
        self.send(HELLO, 1, identity)
        self.wait(lambda v: v[0] == WELCOME)
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def send(self, type_, *fields):
        self.rid += 1
        body = msgpack.packb([type_, self.rid] + list(fields), use_bin_type=True)
        data = struct.pack(">I", len(body)) + body
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)
        return self.rid

    def pump(self):
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        now = time.monotonic()
        self.buf += data
        i = 0
        while len(self.buf) - i >= 4:
            (k,) = struct.unpack_from(">I", self.buf, i)
            if len(self.buf) - i - 4 < k:
                break
            v = msgpack.unpackb(bytes(self.buf[i + 4:i + 4 + k]), raw=False,
                                strict_map_key=False)
            if not (self.on_frame and self.on_frame(now, v)):
                self.frames.append((now, v))
            i += 4 + k
        del self.buf[:i]

    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            for j, (_, v) in enumerate(self.frames):
                if pred(v):
                    del self.frames[j]
                    return v
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                raise Failure("no answer from %s" % self.node.name)
            select.select([self.sock], [], [], left)
            self.pump()

    def request(self, type_, *fields):
        rid = self.send(type_, *fields)
        v = self.wait(lambda v: v[0] in (OK, ERROR) and v[1] == rid)
        if v[0] != OK:
            raise Failure("%d %r on %s: %r" % (type_, fields, self.node.name, v))
        return v[2] if len(v) > 2 else None

    def close(self):
        self.sock.close()


def pump(conns, timeout):
    live = [c for c in conns if not c.eof]
    r, _, _ = select.select(live, [], [], max(timeout, 0))
    for c in r:
        c.pump()


# ---------------------------------------------------------------- a byte stream

BLOCK = 65536  # a chunk; block k of the stream is sha256("blk k") repeated


class Blocks:
    """The stream's bytes: every byte is known by its offset."""

    def __init__(self):
        self.cache = {}

    def block(self, k):
        b = self.cache.get(k)
        if b is None:
            if len(self.cache) > 256:
                self.cache.clear()
            b = self.cache[k] = hashlib.sha256(b"blk %d" % k).digest() * (BLOCK // 32)
        return b

    def at(self, off, n):
        """The n bytes at off."""
        out = []
        while n > 0:
            k, o = divmod(off, BLOCK)
            part = self.block(k)[o:o + n]
            out.append(part)
            off, n = off + len(part), n - len(part)
        return out[0] if len(out) == 1 else b"".join(out)


class Sender:
    """A raw client on n1 streaming total bytes in BLOCK chunks within the
    relay's credit (STREAM_CREDIT), paced at rate bytes/s (0: as fast as the
    credit allows), then closing the stream."""

    def __init__(self, conn, room, sid, total, rate, blocks):
        self.c, self.sid, self.total, self.rate, self.blocks = conn, sid, total, rate, blocks
        rid = conn.send(STREAM_OPEN, room, sid, "", sid + ".bin", "", total, {}, [], 0)
        v = conn.wait(lambda v: v[0] in (OK, ERROR) and v[1] == rid)
        if v[0] != OK:
            raise Failure("STREAM_OPEN on %s: %r" % (conn.node.name, v))
        self.limit, self.off, self.close_rid, self.reply = v[2], 0, None, None
        self.stray = []  # frames it did not ask for (an END or an ERROR would be one)
        self.t0 = time.monotonic()
        conn.on_frame = self.frame

    def frame(self, t, v):
        if v[0] == STREAM_CREDIT and v[2] == self.sid:
            self.limit = max(self.limit, v[4])
        elif v[0] in (OK, ERROR) and v[1] == self.close_rid:
            self.reply = v
        else:
            self.stray.append(v)
        return True

    def step(self, now):
        sent = 0
        cap = self.total if not self.rate else self.rate * (now - self.t0) + BLOCK
        while (self.off < self.total and sent < 16 and not self.c.eof and self.off < cap and
               self.off + min(BLOCK, self.total - self.off) <= self.limit):
            n = min(BLOCK, self.total - self.off)
            self.c.send(STREAM_CHUNK, self.sid, self.off, self.blocks.at(self.off, n))
            self.off += n
            sent += 1
        if self.off == self.total and self.close_rid is None:
            self.close_rid = self.c.send(STREAM_CLOSE, self.sid, "", {}, None)

    def done(self):
        """Answered, or told the stream ended (STREAM_END or an ERROR)."""
        return self.reply is not None or any(v[0] in (STREAM_END, ERROR) for v in self.stray)


class Receiver:
    """One subscriber's view of the stream: every STREAM_DATA checked by
    offset and content as it arrives (nothing kept but the intervals)."""

    def __init__(self, conn, sid, total, blocks):
        self.sid, self.total, self.blocks = sid, total, blocks
        self.opened, self.ends, self.after_end = 0, [], 0
        self.spans = []  # received [a, b), merged, sorted
        self.hi = 0  # the highest end received
        self.dup = self.reordered = self.corrupt = 0
        self.times = []  # arrival of every STREAM_DATA
        self.where = []  # what went wrong, for -v
        conn.on_frame = self.frame

    def covered(self, a, b):
        return sum(max(0, min(b, y) - max(a, x)) for x, y in self.spans)

    def add(self, a, b):
        out = []
        for x, y in self.spans:
            if y < a or x > b:
                out.append((x, y))
            else:
                a, b = min(a, x), max(b, y)
        out.append((a, b))
        self.spans = sorted(out)

    def frame(self, t, v):
        if v[0] == STREAM_OPENED and v[3] == self.sid:
            self.opened += 1
            return True
        if v[0] == STREAM_END and v[2] == self.sid:
            self.ends.append(v)
            return True
        if v[0] != STREAM_DATA or v[2] != self.sid:
            return False
        off, data = v[3], v[4]
        a, b = off, off + len(data)
        self.times.append(t)
        if self.ends:
            self.after_end += 1
        if data != self.blocks.at(off, len(data)):
            self.corrupt += len(data)
            self.where.append("bytes %d-%d differ from the sender's" % (a, b))
        if self.spans == [(0, self.hi)] and a == self.hi:
            self.spans, self.hi = [(0, b)], b  # the usual case
            return True
        if self.hi == 0 and a == 0 and not self.spans:
            self.spans, self.hi = [(0, b)], b
            return True
        dup = self.covered(a, b)
        if dup:
            self.dup += dup
            self.where.append("bytes %d-%d again (%d twice)" % (a, b, dup))
        if a < self.hi and (b - a) - dup > 0:
            self.reordered += (b - a) - dup
            self.where.append("bytes %d-%d after %d" % (a, b, self.hi))
        self.add(a, b)
        self.hi = max(self.hi, b)
        return True

    def got(self):
        return sum(y - x for x, y in self.spans)

    def ended(self):
        return bool(self.ends)

    def end_ok(self):
        return (len(self.ends) == 1 and self.ends[0][3] == "ok" and
                self.ends[0][6] == self.total and self.opened == 1 and not self.after_end)


# ---------------------------------------------------------------- a trial

def trial(bench, pub, mode, k, rng):
    args = bench.args
    every = 1.0 / args.rate
    while True:
        room = pub.request(CREATE)
        pl = pub.request(PLACE, room)
        if pl["relay"] != "n1":
            break
        pub.request(REMOVE, room)
    relay, backup = pl["relay"], pl["backups"][0]
    subs = [Conn(bench.nodes[n], "sub-" + n) for n in sorted(bench.nodes) if n not in ("n1", relay)]
    for s in subs:
        s.request(SUBSCRIBE, room)
    victim = bench.nodes[relay]
    before = {n: inc for n, (_, inc) in bench.nodes["n1"].view().items()}
    bench.nodes[backup].new_lines()  # skip what it logged before
    took = re.compile(r"took over room %s" % re.escape(room[:6]))
    conns = [pub] + subs
    total = args.stream_bytes
    snd = sender = None
    recvs = []
    if total:
        blocks = Blocks()
        recvs = [Receiver(s, "fb%d" % k, total, blocks) for s in subs]
        snd = Conn(bench.nodes["n1"], "pub")  # the room's owner may open streams
        sender = Sender(snd, room, "fb%d" % k, total, args.stream_rate, blocks)
        conns.append(snd)
        # The failure comes once the sender has sent this much (and the
        # warmup is over): always mid-stream.
        fail_at_byte = int(total * rng.uniform(0.1, 0.5))
    at_fail = None

    sent_at, payloads, rid_to_i = [], [], {}
    replies = {}  # i -> [frames]
    got = {id(s): [] for s in subs}  # (t, seq, data)
    t0 = time.monotonic()
    t_fail = t0 + args.warmup + rng.random() * every
    t_takeover = t_end = None
    failed = timed_out = False
    next_poll = 0.0
    while True:
        now = time.monotonic()
        if sender:
            sender.step(now)
            if not failed and sender.off < fail_at_byte:
                t_fail = max(t_fail, now + rng.random() * every)
        if not failed and now >= t_fail:
            victim.signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
            t_fail, failed = time.monotonic(), True
            if sender:
                at_fail = (sender.off, [r.got() for r in recvs],
                           sender.off < total and not any(r.ended() for r in recvs))
        if failed and t_takeover is None and now >= next_poll:
            next_poll = now + 0.01
            if took.search(bench.nodes[backup].new_lines()):
                t_takeover = time.monotonic()
                if mode == "stop":
                    victim.signal(signal.SIGCONT)
                t_end = t_takeover + args.after
            elif now - t_fail > 15:
                raise Failure("trial %s %d: no takeover by %s 15 s after the failure" %
                              (mode, k, backup))
        if t_end is not None and now >= t_end:
            if not sender or (sender.done() and all(r.ended() for r in recvs)):
                break
            if now - t_takeover > args.stream_timeout:
                timed_out = True
                break
        # On schedule: push i at t0 + i * every (a late loop catches up).
        while t0 + len(sent_at) * every <= now:
            i = len(sent_at)
            data = struct.pack(">QQ", i, time.monotonic_ns()) + PAD
            rid = pub.send(PUSH, room, 0, data)
            rid_to_i[rid] = i
            sent_at.append(time.monotonic())
            payloads.append(data)
        pump(conns, min(every, 0.005))
    # Every reply and delivery, or 2 s without any.
    last, seen = time.monotonic(), -1
    while time.monotonic() - last < 2.0:
        pump(conns, 0.05)
        n = len(pub.frames) + sum(len(s.frames) for s in subs)
        if n != seen:
            seen, last = n, time.monotonic()
        if len(pub.frames) >= len(sent_at) and all(
                sum(1 for _, v in s.frames if v[0] == DELIVER) >= len(sent_at) for s in subs):
            break
    if snd:
        snd.close()
    for t, v in pub.frames:
        i = rid_to_i.get(v[1]) if v[0] in (OK, ERROR) else None
        if i is not None:
            replies.setdefault(i, []).append(v)
    pub.frames = []
    for s in subs:
        got[id(s)] = [(t, v[3], v[6]) for t, v in s.frames if v[0] == DELIVER and v[2] == room]

    # ---- the counts
    c = dict.fromkeys(("pushes", "errors", "no_reply", "two_replies", "seq_twice",
                       "push_order", "lost", "duplicated", "reordered", "unacked"), 0)
    c["pushes"] = len(sent_at)
    by_seq, oks, acked, order_at = {}, [], {}, []
    for i in range(len(sent_at)):
        rs = replies.get(i, [])
        if not rs:
            c["no_reply"] += 1
            continue
        if len(rs) > 1:
            c["two_replies"] += 1
        if rs[0][0] != OK:
            c["errors"] += 1
            continue
        seq = rs[0][2]
        if seq in by_seq:
            c["seq_twice"] += 1
        by_seq.setdefault(seq, []).append(i)
        if oks and seq < oks[-1][0]:
            c["push_order"] += 1
            order_at.append("push %d got seq %d after push %d got %d" % (i, seq, oks[-1][1], oks[-1][0]))
        oks.append((seq, i))
        acked[(seq, payloads[i])] = i
    resume, detail = [], []
    err_at = [i for i in range(len(sent_at)) if replies.get(i) and replies[i][0][0] != OK]
    if err_at:
        detail.append("pushes refused: %s (%s)" % (ranges(err_at), replies[err_at[0]][0][2:]))
    if order_at:
        detail.append("sequenced out of the publisher's order: %s" % "; ".join(order_at[:3]))
    dups = sorted(q for q, ii in by_seq.items() if len(ii) > 1)
    if dups:
        detail.append("seqs given to two pushes: %s" % ranges(dups))
    for s in subs:
        d = got[id(s)]
        seqs = [q for _, q, _ in d]
        pairs = {(q, data) for _, q, data in d}
        # A push is delivered when its seq comes with its payload: a seq
        # given to two pushes delivers one of them at most.
        lost = sorted(q for (q, data) in acked if (q, data) not in pairs)
        unacked = sorted(q for (q, data) in pairs if (q, data) not in acked)
        again = sorted({q for j, q in enumerate(seqs) if q in set(seqs[:j])}) if len(
            set(seqs)) != len(seqs) else []
        back = [seqs[j] for j in range(1, len(seqs)) if seqs[j] < seqs[j - 1]]
        c["lost"] += len(lost)
        c["unacked"] += len(unacked)
        c["duplicated"] += len(seqs) - len(set(seqs))
        c["reordered"] += len(back)
        for what, xs in (("lost", lost), ("got seqs no OK named with that payload", unacked),
                         ("got again", again), ("got out of order", back)):
            if xs:
                detail.append("%s %s %s" % (s.node.name, what, ranges(xs)))
        ts = [t for t, _, _ in d if t >= t_fail - 0.2]
        resume.append(max([0.0] + [b - a for a, b in zip(ts, ts[1:])]))
    sresume, sdetail = [], []
    if sender:
        s_keys = ("s_lost", "s_duplicated", "s_reordered", "s_corrupt", "s_end_not_ok",
                  "s_sender_problem", "s_not_mid_stream", "s_unfinished")
        c.update(dict.fromkeys(s_keys, 0))
        c["s_bytes"] = total
        off, rgot, mid = at_fail
        sdetail.append("at the failure: sender at %d, receivers at %s" % (off, rgot))
        if not mid:
            c["s_not_mid_stream"] += 1
        if timed_out:
            c["s_unfinished"] += 1
            detail.append("the stream did not end within %.0f s of the takeover (sender at "
                          "%d of %d)" % (args.stream_timeout, sender.off, total))
        rep = sender.reply
        if rep is None or rep[0] != OK or rep[2] != total or sender.stray:
            c["s_sender_problem"] += 1
            detail.append("sender: close %r, other frames %r" %
                          (rep, [v[:4] for v in sender.stray[:3]]))
        for s, r in zip(subs, recvs):
            lost = total - r.got()
            c["s_lost"] += lost
            c["s_duplicated"] += r.dup
            c["s_reordered"] += r.reordered
            c["s_corrupt"] += r.corrupt
            if not r.end_ok():
                c["s_end_not_ok"] += 1
                detail.append("%s stream: %d OPENED, ENDs %r, %d DATA after the END" %
                              (s.node.name, r.opened, [e[3:7] for e in r.ends], r.after_end))
            if lost:
                missing, at = [], 0
                for x, y in r.spans + [(total, total)]:
                    if x > at:
                        missing.append("%d-%d" % (at, x))
                    at = y
                detail.append("%s stream: %d bytes lost (%s)" %
                              (s.node.name, lost, " ".join(missing[:4])))
            detail.extend("%s stream: %s" % (s.node.name, w) for w in r.where[:4])
            ts = [t for t in r.times if t >= t_fail - 0.2]
            sresume.append(max([0.0] + [b - a for a, b in zip(ts, ts[1:])]))
    for s in subs:
        s.close()
    takeover = t_takeover - t_fail
    if not args.keep_rooms:
        rid = pub.send(REMOVE, room)  # answered OK, or not (see the counts)
        pub.wait(lambda v: v[0] in (OK, ERROR) and v[1] == rid)

    # ---- back to five nodes
    if mode == "kill":
        victim.reap()
        seeds = bench.nodes["n1"].caddr if relay != "n1" else bench.nodes["n2"].caddr
        victim.start(seeds=seeds)
    bench.converge(newer={relay: before[relay]})
    return {"relay": relay, "backup": backup, "resume": resume, "takeover": takeover,
            "counts": c, "detail": detail, "sresume": sresume, "sdetail": sdetail}


COUNTED = ("pushes", "s_bytes")  # sizes, not problems


def ranges(xs):
    """[1, 2, 3, 7] -> "1-3 7" (at most 8 ranges)."""
    out, xs = [], sorted(xs)
    for x in xs:
        if out and x == out[-1][1] + 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    text = " ".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in out[:8])
    return text + (" ... (%d ranges)" % len(out) if len(out) > 8 else "")


def pct(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))
    return xs[int(k) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-rel")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--modes", default="kill,stop")
    ap.add_argument("--rate", type=float, default=1000.0, help="pushes per second")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--after", type=float, default=2.0, help="s of pushes after the takeover")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--stream-bytes", type=int, default=0,
                    help="a byte stream of this size from n1 in flight at each failure")
    ap.add_argument("--stream-rate", type=float, default=0.0,
                    help="stream bytes per second (0: as fast as the relay's credit allows)")
    ap.add_argument("--stream-timeout", type=float, default=300.0,
                    help="s after the takeover the stream may take to end")
    ap.add_argument("--keep-rooms", action="store_true",
                    help="leave each trial's room (and its ring) in the cluster")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="which pushes and seqs each problem was about")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    t_start = time.monotonic()
    bench = Bench(args)
    ok = False
    results = {}
    try:
        pub = Conn(bench.nodes["n1"], "pub")
        print("failover_bench: %d nodes on 127.0.0.1, %.0f pushes/s, %d-byte payloads, %s, "
              "seed %d, vroomd %s" %
              (NODES, args.rate, 16 + len(PAD), "a %d-byte stream from n1 (%s)" % (
                  args.stream_bytes, "%.0f bytes/s" % args.stream_rate if args.stream_rate
                  else "within credit") if args.stream_bytes else "no stream", seed,
               bench.vroomd),
              flush=True)
        for mode in args.modes.split(","):
            results[mode] = []
            for k in range(1, args.trials + 1):
                r = trial(bench, pub, mode, k, rng)
                results[mode].append(r)
                c = r["counts"]
                bad = ", ".join("%s %d" % (n, v) for n, v in c.items()
                                if v and n not in COUNTED)
                print("%-4s %2d relay %s (takeover by %s %.2f s): resume %s; %d pushes%s%s" %
                      (mode, k, r["relay"], r["backup"], r["takeover"],
                       " ".join("%.3f" % x for x in r["resume"]), c["pushes"],
                       "; stream resume %s" % " ".join("%.3f" % x for x in r["sresume"])
                       if r["sresume"] else "",
                       "; " + bad if bad else ", nothing lost, duplicated or reordered"),
                      flush=True)
                for line in (r["sdetail"] + r["detail"]) if args.verbose else ():
                    print("        " + line, flush=True)
        print()
        for mode, rs in results.items():
            res = [x for r in rs for x in r["resume"]]
            tk = [r["takeover"] for r in rs]
            tot = {}
            for r in rs:
                for n, v in r["counts"].items():
                    tot[n] = tot.get(n, 0) + v
            bad = sum(1 for r in rs if any(v for n, v in r["counts"].items() if n not in COUNTED))
            print("%s: %d trials, %d resume samples: p50 %.3f s, p99 %.3f s, max %.3f s; takeover "
                  "median %.2f s, max %.2f s" % (mode, len(rs), len(res), pct(res, 50),
                                                 pct(res, 99), max(res),
                                                 statistics.median(tk), max(tk)))
            print("%s: %d pushes; trials with a problem %d; %s" %
                  (mode, tot["pushes"], bad, ", ".join("%s %d" % (n, v) for n, v in tot.items()
                                                       if n not in COUNTED)))
            sres = [x for r in rs for x in r["sresume"]]
            if sres:
                print("%s: stream of %d bytes per trial, %d resume samples: p50 %.3f s, p99 %.3f s, "
                      "max %.3f s" % (mode, args.stream_bytes, len(sres), pct(sres, 50),
                                      pct(sres, 99), max(sres)))
        print("total %.0f s; node logs in %s" % (time.monotonic() - t_start, bench.tmp))
        pub.close()
        ok = True
    finally:
        bench.cleanup(ok and not any(
            any(v for n, v in r["counts"].items() if n not in COUNTED)
            for rs in results.values() for r in rs))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        sys.exit("failover_bench: %s" % e)
