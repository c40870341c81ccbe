#!/usr/bin/python3
"""A slow consumer against one real vroomd.

vroomd runs with --max-pending 1048576 (and --frame-max 262144, since a node
wants max_pending >= 2 * frame_max). A publisher, the room's owner, pushes
64 KiB messages in a bounded loop (at most PUSHES pushes, at most LOOP_SECONDS)
to a room with three subscribers: `stalled` has a small SO_RCVBUF and never
reads; two readers read everything. The protocol has no flow control, so the
publisher keeps at most WINDOW pushes ahead of the slower reader: the readers
stay inside max_pending, the stalled one cannot.

Asserted: the stalled subscriber is dropped (the node logs "slow consumer"
for it, and its socket reaches EOF/reset once it reads: complete frames up to
that point are DELIVERs in seq order from 1); the readers receive every push
in strictly increasing seq order with no gap and intact payloads; the
publisher gets an OK with the right seq for every push; vroomd's RSS stays
under its starting RSS + RSS_SLACK_MIB.
"""

import os
import select
import struct
import threading
import time

from harness import (
    DELIVER, OK, PUSH, Client, Node, check, drain_bytes, recv_frame, run_cases,
    send_frame, split_frames,
)

PUSHES = 4000
LOOP_SECONDS = 30.0
MSG = 64 * 1024
WINDOW = 8  # pushes the publisher may run ahead of the slower reader
MAX_PENDING = 1048576
FRAME_MAX = 262144
RSS_SLACK_MIB = 64
STALLED_RCVBUF = 4096

S = {}


def payload(seq):
    # 8-byte seq, then a pattern that depends on the seq.
    head = struct.pack(">Q", seq)
    fill = bytes([seq & 0xFF]) * 64
    return head + (fill * (MSG // 64))[: MSG - 8]


class Reader(threading.Thread):
    """Reads DELIVERs for the room until it has `target` of them (set once
    the publisher is done), checking order, gaps and payloads."""

    def __init__(self, client, room, progress):
        super().__init__(daemon=True)
        self.c, self.room, self.progress = client, room, progress
        self.last = 0
        self.error = None
        self.target = None

    def run(self):
        try:
            while self.target is None or self.last < self.target:
                # Wait in short slices so that a target set while idle is seen.
                r, _, _ = select.select([self.c.sock], [], [], 0.2)
                if not r:
                    continue
                v = recv_frame(self.c.sock, timeout=15)
                check(v[0] == DELIVER, "%s got %r" % (self.c.identity, v[:4]))
                _, _, room, seq, who, dtype, data = v[:7]  # an origin may follow
                check(room == self.room and who == "publisher" and dtype == 1,
                      "%s got DELIVER %r" % (self.c.identity, v[:6]))
                check(seq == self.last + 1,
                      "%s got seq %d after %d" % (self.c.identity, seq, self.last))
                check(len(data) == MSG and struct.unpack_from(">Q", data)[0] == seq,
                      "%s: payload of seq %d is wrong (%d bytes)" % (self.c.identity, seq, len(data)))
                if seq % 97 == 0:
                    check(data == payload(seq), "%s: payload of seq %d differs" % (self.c.identity, seq))
                self.last = seq
                with self.progress:
                    self.progress.notify_all()
        except Exception as e:  # reported by the main thread
            self.error = "%s: %s" % (type(e).__name__, e)
            with self.progress:
                self.progress.notify_all()


def setup():
    # ASan's quarantine keeps freed blocks resident (256 MiB by default),
    # which would swamp an RSS bound with memory vroomd has already freed;
    # later options win, so this caps it whatever the caller set.
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"}
    S["node"] = n = Node("--max-pending", MAX_PENDING, "--frame-max", FRAME_MAX,
                         name="slow", env=env)
    S["rss0"] = n.rss_kib()
    S["pub"] = pub = Client(n, "publisher")
    S["room"] = room = pub.create()
    S["stalled"] = Client(n, "stalled", rcvbuf=STALLED_RCVBUF)
    S["stalled"].subscribe(room)
    S["progress"] = threading.Condition()
    S["readers"] = []
    for name in ("reader1", "reader2"):
        c = Client(n, name)
        c.subscribe(room)
        S["readers"].append(Reader(c, room, S["progress"]))
    for r in S["readers"]:
        r.start()


def push_loop():
    n, pub, room = S["node"], S["pub"], S["room"]
    readers, progress = S["readers"], S["progress"]
    rss_max = S["rss0"]
    oks = 0
    t0 = time.monotonic()
    seq = 0
    while seq < PUSHES and time.monotonic() - t0 < LOOP_SECONDS:
        seq += 1
        with progress:
            ok = progress.wait_for(
                lambda: any(r.error for r in readers) or
                min(r.last for r in readers) >= seq - 1 - WINDOW, timeout=15)
        for r in readers:
            check(r.error is None, "reader failed: %s" % r.error)
        check(ok, "readers stalled at %s before push %d" % ([r.last for r in readers], seq))
        rid = seq
        send_frame(pub.sock, [PUSH, rid, room, 1, payload(seq)])
        v = recv_frame(pub.sock, timeout=10)
        check(v[0] == OK and v[1] == rid and v[2] == seq,
              "push %d: expected OK with seq %d, got %r" % (seq, seq, v[:3]))
        oks += 1
        if seq % 50 == 0:
            rss_max = max(rss_max, n.rss_kib())
    S["pushes"], S["oks"] = seq, oks
    S["loop_s"] = time.monotonic() - t0
    rss_max = max(rss_max, n.rss_kib())
    S["rss_max"] = rss_max
    print("     %d pushes of %d KiB in %.1fs (%.0f MiB/s fanned out to 2 readers)" %
          (seq, MSG // 1024, S["loop_s"], 2 * seq * MSG / (1 << 20) / max(S["loop_s"], 1e-9)))
    check(seq >= 200, "only %d pushes in %.0fs: too slow to fill the stalled buffers" %
          (seq, LOOP_SECONDS))


def publisher_oks():
    check("pushes" in S, "the push loop did not finish")
    check(S["oks"] == S["pushes"], "%d OKs for %d pushes" % (S["oks"], S["pushes"]))


def readers_complete():
    check("pushes" in S, "the push loop did not finish")
    for r in S["readers"]:
        r.target = S["pushes"]
    for r in S["readers"]:
        r.join(30)
        check(not r.is_alive(), "%s still reading after 30s (at seq %d of %d)" %
              (r.c.identity, r.last, S["pushes"]))
        check(r.error is None, "%s: %s" % (r.c.identity, r.error))
        check(r.last == S["pushes"], "%s got %d of %d" % (r.c.identity, r.last, S["pushes"]))
    print("     both readers got seq 1..%d in order" % S["pushes"])


def stalled_dropped():
    n = S["node"]
    deadline = time.monotonic() + 5
    while "slow consumer" not in n.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [l for l in n.log().splitlines() if "slow consumer" in l]
    check(lines, "the node's log has no 'slow consumer' line")
    check(len(lines) == 1 and "(stalled)" in lines[0],
          "expected one slow consumer, the stalled one: %r" % lines)
    data, how = drain_bytes(S["stalled"].sock, timeout=10)
    check(how in ("eof", "reset"), "the stalled subscriber's socket did not close (%s after "
          "%d bytes)" % (how, len(data)))
    frames, rest = split_frames(data)
    seqs = [f[3] for f in frames if f[0] == DELIVER]
    check(len(seqs) == len(frames), "stalled got non-DELIVER frames: %r" %
          [f[:3] for f in frames if f[0] != DELIVER])
    check(seqs == list(range(1, len(seqs) + 1)), "stalled got seqs %r..." % seqs[:20])
    check(len(seqs) < S.get("pushes", PUSHES), "stalled got every push: it was not dropped")
    print("     stalled: %d DELIVERs (%d bytes, %d of a partial frame) then %s; log: %s" %
          (len(seqs), len(data), rest, how, lines[0].strip()))


def rss_bound():
    rss0, rss_max = S["rss0"], S.get("rss_max", 0)
    now = S["node"].rss_kib()
    print("     vroomd RSS: start %d KiB, max %d KiB (+%d KiB), now %d KiB; bound +%d MiB" %
          (rss0, rss_max, rss_max - rss0, now, RSS_SLACK_MIB))
    check("rss_max" in S, "the push loop did not finish")
    check(rss_max - rss0 < RSS_SLACK_MIB * 1024,
          "RSS grew by %d KiB, over %d MiB" % (rss_max - rss0, RSS_SLACK_MIB))


def teardown():
    for k in ("pub", "stalled"):
        if S.get(k):
            S[k].close()
    for r in S.get("readers", []):
        r.c.close()
    if S.get("node"):
        S["node"].stop()


CASES = [
    ("publisher pushes 64 KiB messages", push_loop),
    ("publisher got an OK per push", publisher_oks),
    ("readers got every push, in order", readers_complete),
    ("stalled subscriber dropped", stalled_dropped),
    ("vroomd RSS bounded", rss_bound),
]

if __name__ == "__main__":
    run_cases("slow", CASES, setup=setup, teardown=teardown)
