#!/usr/bin/python3
"""A byte stream's memory bound and slow receivers, against one real vroomd.

vroomd runs with --stream-window 1048576 and --slow-timeout 2 (chunks of
128 KiB, the default chunk_max). A raw sender writes one stream as fast as
its credit allows (never past the limit the node tells it; at most
MAX_BYTES, at most PACED_S seconds in the paced phase) to two receivers:
`fast` reads everything at once, `slow` (SO_RCVBUF 64 KiB) reads about
SLOW_RATE bytes a second. vroomd's RSS is sampled every 0.2 s.

Asserted, phase by phase:
- paced: the sender's progress follows the slow reader (the bytes sent
  never run more than the window plus the kernel's socket buffers ahead of
  what `slow` read, and the sending rate is about SLOW_RATE), every CREDIT
  acks no more than was sent, and vroomd's RSS stays under its starting RSS
  + RSS_SLACK_MIB;
- stalled: `slow` stops reading; the sender runs out of window, and
  --slow-timeout (2 s) later the node drops `slow` ("slow consumer" in its
  log, EOF on its socket, no END for it); the sender's credit resumes and
  it sends TAIL_BYTES more to `fast`, closes with the XXH3-64 of everything
  and gets OK with the byte count; `fast` got every byte in order and END
  ok with the same checksum; RSS still bounded;
- alone: a stream whose only receiver never reads: that receiver is dropped
  after --slow-timeout and the sender goes on and closes OK.
At the end the node is stopped with SIGTERM and must exit 0 with a
sanitizer-clean log.
"""

import ctypes
import os
import select
import threading
import time

from harness import (
    CREATE, OK, SUBSCRIBE, Node, check, drain_bytes, hello, recv_frame, run_cases, send_frame,
    split_frames,
)

STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE = 300, 301, 302
STREAM_OPENED, STREAM_DATA, STREAM_END, STREAM_CREDIT = 310, 311, 312, 320

WINDOW = 1 << 20
CHUNK = 128 << 10          # the node's default chunk_max
SLOW_TIMEOUT = 2
SLOW_RCVBUF = 64 << 10
SLOW_RATE = 10 << 20       # bytes a second
PACED_S = 8.0              # the paced phase (the whole file stays well under 60 s)
MAX_BYTES = 2 << 30        # never more than this in one stream
TAIL_BYTES = 32 << 20      # sent after `slow` is dropped
RSS_SLACK_MIB = 64
SAMPLE_S = 0.2
POOL = os.urandom(8 * CHUNK)

S = {}


def chunk_at(off):
    """The bytes of the chunk at offset off (a multiple of CHUNK)."""
    i = (off // CHUNK) % 8
    return POOL[i * CHUNK:(i + 1) * CHUNK]


# ---------------------------------------------------------------- XXH3-64

class Xxh3:
    """Streaming XXH3-64 through libxxhash (ctypes); digest() is None
    without the library."""

    def __init__(self):
        self.lib = None
        for name in ("libxxhash.so.0", "libxxhash.so"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                pass
        if not self.lib:
            return
        L = self.lib
        L.XXH3_createState.restype = ctypes.c_void_p
        L.XXH3_64bits_reset.argtypes = [ctypes.c_void_p]
        L.XXH3_64bits_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        L.XXH3_64bits_digest.argtypes = [ctypes.c_void_p]
        L.XXH3_64bits_digest.restype = ctypes.c_uint64
        L.XXH3_freeState.argtypes = [ctypes.c_void_p]
        self.state = L.XXH3_createState()
        L.XXH3_64bits_reset(self.state)

    def update(self, data):
        if self.lib:
            self.lib.XXH3_64bits_update(self.state, data, len(data))

    def digest(self):
        return self.lib.XXH3_64bits_digest(self.state) if self.lib else None


# ---------------------------------------------------------------- the peers

def connect(identity, rcvbuf=None):
    s = S["node"].connect(timeout=10, rcvbuf=rcvbuf)
    hello(s, identity)
    return s


def request(sock, frame):
    send_frame(sock, frame)
    v = recv_frame(sock, timeout=10)
    check(v[0] == OK and v[1] == frame[1], "%r got %r" % (frame[:3], v[:4]))
    return v[2] if len(v) > 2 else None


class Sender(threading.Thread):
    """Sends one stream within its credit until `target` bytes (settable
    while it runs), then closes it with the XXH3-64 of the bytes."""

    def __init__(self, sock, room, sid):
        super().__init__(daemon=True)
        self.sock, self.room, self.sid = sock, room, sid
        self.off = 0
        self.limit = 0
        self.target = MAX_BYTES
        self.credits = []      # (time, acked, limit, sent when read)
        self.hash = Xxh3()
        self.close_reply = None
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            self.limit = request(self.sock, [STREAM_OPEN, 1, self.room, self.sid, "", "big.bin",
                                             "application/octet-stream", None, {}, [], 0])
            check(self.limit == WINDOW, "open: limit %r" % self.limit)
            rid = 10
            while self.off < self.target:
                if self.off + CHUNK <= self.limit:
                    data = chunk_at(self.off)
                    rid += 1
                    send_frame(self.sock, [STREAM_CHUNK, rid, self.sid, self.off, data])
                    self.hash.update(data)
                    self.off += CHUNK
                    continue
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if r:
                    self.credit(recv_frame(self.sock, timeout=10))
            send_frame(self.sock, [STREAM_CLOSE, 2, self.sid, "", {}, self.hash.digest()])
            while True:
                v = recv_frame(self.sock, timeout=30)
                if v[0] == STREAM_CREDIT:
                    self.credit(v)
                    continue
                self.close_reply = v
                break
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.done.set()

    def credit(self, v):
        check(v[0] == STREAM_CREDIT and v[2] == self.sid, "sender got %r" % (v[:4],))
        _, _, _, acked, limit = v
        check(acked <= self.off, "CREDIT acks %d bytes, %d sent" % (acked, self.off))
        check(limit == acked + WINDOW, "CREDIT limit %d is not acked %d + window" % (limit, acked))
        check(limit >= self.limit, "CREDIT limit went back from %d to %d" % (self.limit, limit))
        self.limit = limit
        self.credits.append((time.monotonic(), acked, limit, self.off))


class Reader(threading.Thread):
    """Reads the stream's frames from a raw socket, checking OPENED, DATA in
    order with the right bytes, END; at most `rate` bytes a second if set;
    stops reading for good once `stop` is set."""

    def __init__(self, sock, name, sid, rate=None):
        super().__init__(daemon=True)
        self.sock, self.name, self.sid, self.rate = sock, name, sid, rate
        self.buf = bytearray()
        self.got = 0           # payload bytes received
        self.raw = 0           # socket bytes read
        self.opened = None
        self.end = None
        self.error = None
        self.stop = threading.Event()
        self.hash = Xxh3()

    def run(self):
        t0 = time.monotonic()
        try:
            while self.end is None and not self.stop.is_set():
                if self.rate:
                    ahead = self.raw / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(min(ahead, 0.05))
                        continue
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if not r or self.stop.is_set():
                    continue
                data = self.sock.recv(SLOW_RCVBUF if self.rate else 1 << 20)
                check(data, "%s: the node closed the connection" % self.name)
                self.raw += len(data)
                self.buf += data
                self.parse()
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)

    def parse(self):
        frames, rest = split_frames(self.buf)
        if frames:
            del self.buf[:len(self.buf) - rest]
        for v in frames:
            if v[0] == STREAM_OPENED:
                check(self.opened is None and v[3] == self.sid, "%s: OPENED %r" % (self.name, v[:4]))
                self.opened = v
            elif v[0] == STREAM_DATA:
                _, _, sid, off, data = v
                check(sid == self.sid and self.opened, "%s: DATA for %r" % (self.name, sid))
                check(off == self.got, "%s: DATA at %d after %d bytes" % (self.name, off, self.got))
                check(data == chunk_at(off), "%s: the bytes at %d differ" % (self.name, off))
                self.hash.update(data)
                self.got += len(data)
            elif v[0] == STREAM_END:
                check(v[2] == self.sid, "%s: END %r" % (self.name, v))
                self.end = v
            else:
                raise AssertionError("%s got frame %r" % (self.name, v[:4]))


# ---------------------------------------------------------------- the cases

def setup():
    # ASan's quarantine keeps freed blocks resident (256 MiB by default),
    # which would swamp an RSS bound with memory vroomd has already freed;
    # later options win, so this caps it whatever the caller set.
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"}
    S["node"] = Node("--stream-window", WINDOW, "--slow-timeout", SLOW_TIMEOUT, name="streams-rss",
                     env=env)
    S["rss0"] = S["node"].rss_kib()
    S["samples"] = []  # (t, rss KiB, sent, slow got, fast got)


def sample(sender, readers):
    s = (time.monotonic(), S["node"].rss_kib(), sender.off) + tuple(r.got for r in readers)
    S["samples"].append(s)
    return s


def rss_max_since(t):
    return max([s[1] for s in S["samples"] if s[0] >= t] or [0])


def wire_kernel_slack():
    """The most the kernel may hold between the node and one reader: the
    node's socket send buffer at its largest, and the reader's receive
    buffer (doubled by the kernel)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem = int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        wmem = 4 << 20
    return wmem + 2 * SLOW_RCVBUF + CHUNK


def paced():
    snd = connect("sender")
    room = request(snd, [CREATE, 1])
    fast, slow = connect("fast"), connect("slow", rcvbuf=SLOW_RCVBUF)
    for s in (fast, slow):
        request(s, [SUBSCRIBE, 2, room])
    sid = "big-1"
    readers = [Reader(slow, "slow", sid, rate=SLOW_RATE), Reader(fast, "fast", sid)]
    sender = Sender(snd, room, sid)
    S.update(sender=sender, readers=readers, socks=[snd, fast, slow])
    for t in readers + [sender]:
        t.start()
    t0 = time.monotonic()
    S["t_paced"] = t0
    slack = wire_kernel_slack()
    lag_max = 0
    while time.monotonic() - t0 < PACED_S and not sender.done.is_set():
        time.sleep(SAMPLE_S)
        _, rss, sent, slow_got, fast_got = sample(sender, readers)
        lag_max = max(lag_max, sent - slow_got)
        for r in readers:
            check(r.error is None, "%s: %s" % (r.name, r.error))
        check(sent - slow_got <= WINDOW + slack,
              "the sender is %d bytes ahead of the slow reader: more than the window (%d) and "
              "the kernel's buffers (%d)" % (sent - slow_got, WINDOW, slack))
    check(sender.error is None, "sender: %s" % sender.error)
    check(not sender.done.is_set(), "the sender ended early: %r" % (sender.close_reply,))
    dt = time.monotonic() - t0
    sent, slow_got = sender.off, readers[0].got
    rate = sent / dt
    S["paced"] = (dt, sent, slow_got, lag_max, len(sender.credits))
    print("     paced: %.1f MiB in %.1fs (%.1f MiB/s; slow reads %.1f MiB/s), %d CREDITs, "
          "sender at most %.1f MiB ahead of slow (window 1 MiB + kernel up to %.1f MiB)" %
          (sent / 2 ** 20, dt, rate / 2 ** 20, SLOW_RATE / 2 ** 20, len(sender.credits),
           lag_max / 2 ** 20, slack / 2 ** 20))
    check(sent <= SLOW_RATE * dt * 1.2 + WINDOW + slack,
          "%d bytes sent in %.1fs: not paced by a reader of %d bytes/s" % (sent, dt, SLOW_RATE))
    check(sent >= SLOW_RATE * dt * 0.3, "only %d bytes sent in %.1fs" % (sent, dt))
    check(len(sender.credits) > 0, "no CREDIT")


def paced_rss():
    check("paced" in S, "the paced phase did not run")
    top = rss_max_since(S["t_paced"])
    rss0 = S["rss0"]
    print("     vroomd RSS: start %d KiB, max %d KiB (+%.1f MiB) over %d samples; bound +%d MiB" %
          (rss0, top, (top - rss0) / 1024, len(S["samples"]), RSS_SLACK_MIB))
    check(top - rss0 < RSS_SLACK_MIB * 1024, "RSS grew by %d KiB" % (top - rss0))


def slow_stops_reading():
    check("paced" in S, "the paced phase did not run")
    sender, (slow, fast) = S["sender"], S["readers"]
    n = S["node"]
    t_stop = time.monotonic()
    S["t_stall"] = t_stop
    slow.stop.set()
    deadline = t_stop + SLOW_TIMEOUT + 15
    while "(slow): slow consumer" not in n.log() and time.monotonic() < deadline:
        time.sleep(SAMPLE_S)
        sample(sender, S["readers"])
        check(sender.error is None, "sender: %s" % sender.error)
    t_drop = time.monotonic()
    lines = [l for l in n.log().splitlines() if "slow consumer" in l]
    check(lines and "(slow)" in lines[0] and len(lines) == 1,
          "expected `slow` alone dropped: %r" % lines)
    # The sender goes on for TAIL_BYTES more, to `fast` alone.
    sender.target = min(MAX_BYTES, sender.off + TAIL_BYTES)
    while not sender.done.wait(SAMPLE_S):
        sample(sender, S["readers"])
        check(time.monotonic() - t_drop < 60, "the sender is stuck at %d of %d after the drop"
              % (sender.off, sender.target))
    check(sender.error is None, "sender: %s" % sender.error)
    v = sender.close_reply
    check(v[0] == OK and v[1] == 2 and v[2] == sender.off, "the close got %r, not OK %d" %
          (v[:4], sender.off))
    # The longest wait for credit after `slow` stopped: the drop's timeout.
    times = [t_stop] + [c[0] for c in sender.credits if c[0] > t_stop]
    gap = max(b - a for a, b in zip(times, times[1:]))
    print("     stalled: dropped %.1fs after slow stopped reading; the sender waited at most "
          "%.1fs for credit; then %d MiB more; log: %s" %
          (t_drop - t_stop, gap, TAIL_BYTES >> 20, lines[0].split("): ", 1)[-1]))
    check(SLOW_TIMEOUT * 0.5 <= gap <= SLOW_TIMEOUT + 8,
          "the sender waited %.1fs for credit (slow timeout %d s)" % (gap, SLOW_TIMEOUT))
    # `fast` got it all.
    fast.join(30)
    check(fast.error is None, "fast: %s" % fast.error)
    check(fast.end is not None, "fast got no END (%d of %d bytes)" % (fast.got, sender.off))
    _, _, sid, status, reason, attrs, nbytes, checksum = fast.end
    check(status == "ok" and nbytes == sender.off and fast.got == sender.off,
          "fast: END %r after %d bytes of %d" % (fast.end, fast.got, sender.off))
    check(checksum == fast.hash.digest() or fast.hash.digest() is None,
          "END checksum %r, the bytes hash to %r" % (checksum, fast.hash.digest()))
    # `slow`: complete DATA frames up to the drop, then EOF, no END.
    slow.join(5)
    check(slow.error is None, "slow: %s" % slow.error)
    data, how = drain_bytes(S["socks"][2], timeout=10)
    check(how in ("eof", "reset"), "slow's socket did not close (%s)" % how)
    slow.buf += data
    try:
        slow.parse()
    except AssertionError as e:
        raise AssertionError("slow's last bytes: %s" % e)
    check(slow.end is None, "the dropped reader got an END: %r" % (slow.end,))
    check(slow.got < sender.off, "slow got every byte")
    print("     fast: %.1f MiB, END ok, checksum %s; slow: %.1f MiB then %s" %
          (fast.got / 2 ** 20, "%016x" % checksum, slow.got / 2 ** 20, how))


def stalled_rss():
    check("t_stall" in S, "the stalled phase did not run")
    top = rss_max_since(S["t_stall"])
    rss0 = S["rss0"]
    print("     vroomd RSS: max %d KiB (+%.1f MiB) while stalled and after; bound +%d MiB" %
          (top, (top - rss0) / 1024, RSS_SLACK_MIB))
    check(top - rss0 < RSS_SLACK_MIB * 1024, "RSS grew by %d KiB" % (top - rss0))


def alone():
    snd = connect("sender2")
    room = request(snd, [CREATE, 1])
    stuck = connect("stuck", rcvbuf=4096)
    request(stuck, [SUBSCRIBE, 2, room])
    sender = Sender(snd, room, "alone-1")
    sender.target = 16 << 20
    S["socks"] += [snd, stuck]
    t0 = time.monotonic()
    sender.start()
    while not sender.done.wait(SAMPLE_S):
        sample(sender, [])
        check(time.monotonic() - t0 < 60, "the sender is stuck at %d bytes" % sender.off)
    check(sender.error is None, "sender: %s" % sender.error)
    v = sender.close_reply
    check(v[0] == OK and v[2] == sender.target, "the close got %r" % (v[:4],))
    lines = [l for l in S["node"].log().splitlines() if "(stuck): slow consumer" in l]
    check(len(lines) == 1, "stuck was not dropped once: %r" % lines)
    data, how = drain_bytes(stuck, timeout=10)
    check(how in ("eof", "reset"), "stuck's socket did not close (%s)" % how)
    dt = time.monotonic() - t0
    check(dt >= SLOW_TIMEOUT * 0.5, "16 MiB went through a receiver that never reads in %.1fs" % dt)
    top = rss_max_since(t0)
    print("     16 MiB in %.1fs (stuck dropped, the stream went on alone); RSS max +%.1f MiB" %
          (dt, (top - S["rss0"]) / 1024))
    check(top - S["rss0"] < RSS_SLACK_MIB * 1024, "RSS grew by %d KiB" % (top - S["rss0"]))


def teardown():
    for r in S.get("readers", []):
        r.stop.set()
    for s in S.get("socks", []):
        try:
            s.close()
        except OSError:
            pass
    if S.get("node"):
        S["node"].stop()


CASES = [
    ("paced by a 10 MB/s reader, within credit", paced),
    ("vroomd RSS bounded while paced", paced_rss),
    ("reader stops: dropped after --slow-timeout", slow_stops_reading),
    ("vroomd RSS bounded while stalled", stalled_rss),
    ("sole receiver stuck: dropped, stream goes on", alone),
]

if __name__ == "__main__":
    run_cases("streams_rss", CASES, setup=setup, teardown=teardown)
