#!/usr/bin/python3
"""tools/soak.py: a bounded soak of a vroom cluster (issue 7, section 5).

    /usr/bin/python3 tools/soak.py [--minutes 10] [--build build-soak] [--nodes 3]

Starts --nodes vroomd processes on 127.0.0.1 in one cluster (a fresh key from
`vroom cluster keygen`, fixed client and cluster ports below the kernel's
ephemeral range so that a restarted node gets its ports back, --stats
127.0.0.1:0), built with ASan and UBSan (the build directory is configured
with -Db_sanitize=address,undefined --buildtype=debugoptimized if it does
not exist, and brought up to date with ninja). Then:

1. Warm-up (--warmup s): the load below at 10-20 clients, no restarts;
   then every client leaves, every room left is removed by its owner, and
   once every node reports no connection, room, open stream or mirror the
   nodes settle (--settle s) and each node's RSS is taken: the level before
   the load.
2. Load (--minutes): clients (20-60 at once, the target redrawn every 20 s)
   connect to random live nodes as one of 24 identities, stay 5-45 s and
   leave. They create rooms (granting 1-4 other identities), subscribe
   (40 % with topics), unsubscribe, push (bursts of 1-16, 16 B-512 KiB),
   send byte streams (1 KiB-8 MiB, log-uniform; 20 % without a declared
   size, 10 % to named destinations, 5 % aborted on purpose), remove rooms;
   rooms nobody uses expire (--room-idle-timeout 20 s). Every
   --restart-every s (60) one node, round robin, is restarted with the same
   name and ports: SIGTERM (graceful leave; it must exit 0) after odd
   intervals, kill -9 after even ones, down for --downtime s, then started
   again with the other nodes as seeds until every view is alive again.
3. After the load: clients leave, owners remove their rooms, the cluster
   must come back to no connection, room, open stream or mirror; after
   --settle s each node's memory must be within --rss-tolerance (10 %) of
   its level before the load. Then every node gets SIGTERM and must exit 0;
   no log (of any incarnation) may hold "AddressSanitizer", "LeakSanitizer"
   or "runtime error".

Memory. The nodes run with ASAN_OPTIONS=quarantine_size_mb=16 (as
tests/integration/test_slow.py does), yet ASan's allocator keeps most freed
memory mapped, so an ASan node's RSS after a load stays well above its level
before it however little it still holds. So with an ASan build and gdb
(--memory-check auto) the criterion is the live heap, which the script reads
from ASan's own allocator statistics
(`__sanitizer_get_current_allocated_bytes` through `gdb -p PID -batch`, a
pause of under a second, only before and after the load); RSS is reported
beside it. Without ASan or gdb the criterion is RSS: a node gives freed
memory back by itself when quiet (node/mem.h: glibc's tcache repacked, then
malloc_trim(0), at most every 10 s), so the settle (20 s) covers it;
--memory-check trim reads RSS after calling malloc_trim(0) in each node
through gdb as well. The level before the load is taken after a warm-up that
brings what grows lazily (libevent's arrays, the allocator's caches) to its
working size: before the node's tables shrank (commit dbcfb54), a --warmup
much under the default 30 s made the live heap read up to 20 % higher after
the load than before without anything leaking. Every node is restarted
during a full run, so "after" is the node's last incarnation, compared with
the same node's first one before the load (same binary, flags and role); its
RSS right after it rejoined is printed too.

What every client checks as it goes:

- pushes: each payload carries a push id and a BLAKE2b-64 of its bytes
  (verified on receipt); per subscription the seq strictly increases and no
  push id comes twice. At the end every push acknowledged to another
  connection while a subscription was live (from 1 s after its SUBSCRIBE's
  OK to 5 s before it ended) must have reached it: a push missing there is
  a loss, and any loss fails the run (a push is acknowledged only once the
  room's first backup holds it: a kill -9 loses none). Losses are counted
  by their nearest restart (a kill -9, a SIGTERM, a rejoin, none).
  A subscription ends with its client, UNSUBSCRIBE or ROOM_CLOSED, so a
  subscriber whose node was restarted is checked only up to its loss.
- streams: each receiver hashes what it gets (SHA-256 and XXH3-64 through
  libxxhash), checks offsets, the topic filter and destinations; a stream
  that ends `ok` must match the sender's size, SHA-256 (an attribute) and
  XXH3-64 (the sender's attribute and the node's checksum) and carry the
  close's attributes. Streams that end `aborted` (their relay or a node on
  their path restarted, or the sender aborted on purpose) are counted; an
  abort, error or timeout with no restart within 10 s fails the run.
- the order of a room's end: STREAM_END for each open stream, then
  ROOM_CLOSED, then nothing more of the room; one STREAM_END per stream.
- requests: every reply within 20 s; error codes only those a request can
  meet here (unknown_room for a room that went away; internal, forbidden
  near a restart); any other error, a lost connection whose node was not
  restarted, a client that does not finish, fails the run.

Only 127.0.0.1 is used; every loop is bounded in count and time. Node logs
stay in a temporary directory printed at the end. Exit status 0 on PASS.
The figures of a full run are in docs/benchmarks.md, "Soak".
"""

import argparse
import collections
import ctypes
import hashlib
import http.client
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELLO, WELCOME, OK, ERROR, PING, PONG = 1, 2, 3, 4, 5, 6
CREATE, REMOVE, GRANT, REVOKE, SUBSCRIBE, UNSUBSCRIBE, INFO = range(100, 107)
PLACE = 108
PUSH, DELIVER = 200, 201
STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE, STREAM_ABORT = 300, 301, 302, 303
STREAM_OPENED, STREAM_DATA, STREAM_END = 310, 311, 312
STREAM_CREDIT = 320
ROOM_CLOSED = 400

ERR = {1: "bad_frame", 2: "too_large", 3: "unknown_type", 4: "hello_required", 5: "version",
       6: "auth", 7: "timeout", 8: "slow_consumer", 9: "shutdown", 20: "unknown_room",
       21: "forbidden", 22: "not_owner", 23: "limit", 24: "bad_request",
       30: "unknown_stream", 31: "stream_exists", 32: "bad_offset", 33: "over_size",
       34: "chunk_too_large", 35: "size_mismatch", 36: "checksum_mismatch", 37: "window",
       99: "internal"}

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error")
IDENTITIES = ["id%02d" % i for i in range(24)]
TOPICS = ["video", "logs", "files"]
REQ_TIMEOUT = 20.0     # every request's reply
CLOSE_TIMEOUT = 60.0   # a STREAM_CLOSE's OK waits for the receivers
CREDIT_STALL = 30.0    # a sender with no credit this long aborts (and it is reported)
NEAR_BEFORE = 3.0      # a push acked this long before a kill -9 may be lost...
NEAR_AFTER = 10.0      # ...or this long after; and aborts/errors this near a restart
SUB_HEAD = 1.0         # a subscription must get pushes acked this long after its OK
SUB_TAIL = 5.0         # ...up to this long before it ended
MAX_CLIENTS = 100000   # bound on client sessions over the whole run
POOL = os.urandom(9 << 20)


def now():
    return time.monotonic()


# ---------------------------------------------------------------- XXH3 (libxxhash)

class _X:
    lib = None


def xxh_lib():
    if _X.lib is None:
        lib = ctypes.CDLL("libxxhash.so.0")
        lib.XXH3_64bits.restype = ctypes.c_uint64
        lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH3_createState.restype = ctypes.c_void_p
        lib.XXH3_freeState.argtypes = [ctypes.c_void_p]
        lib.XXH3_64bits_reset.argtypes = [ctypes.c_void_p]
        lib.XXH3_64bits_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH3_64bits_digest.restype = ctypes.c_uint64
        lib.XXH3_64bits_digest.argtypes = [ctypes.c_void_p]
        _X.lib = lib
    return _X.lib


def xxh3(data):
    return xxh_lib().XXH3_64bits(data, len(data))


class XXH3:
    def __init__(self):
        self.lib = xxh_lib()
        self.st = self.lib.XXH3_createState()
        self.lib.XXH3_64bits_reset(self.st)

    def update(self, b):
        self.lib.XXH3_64bits_update(self.st, b, len(b))

    def digest(self):
        return self.lib.XXH3_64bits_digest(self.st)

    def __del__(self):
        if getattr(self, "st", None):
            self.lib.XXH3_freeState(self.st)
            self.st = None


# ---------------------------------------------------------------- the record

class Sub:
    """One subscription of one connection to one room."""
    __slots__ = ("room", "cid", "topics", "t_sent", "t_ok", "t_end", "end", "last", "seqs",
                 "ids", "node")

    def __init__(self, room, cid, topics, node):
        self.room, self.cid, self.topics, self.node = room, cid, topics, node
        self.t_sent, self.t_ok, self.t_end, self.end = now(), None, None, None
        self.last = 0
        self.seqs = []
        self.ids = set()


class World:
    """Everything the clients learn, under one lock."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.failures = collections.Counter()
        self.fail_msgs = []
        self.notes = []
        self.events = []          # (t, node, kind, phase): "term"/"kill" at the signal, "up"
        self.rooms = {}           # room -> dict(owner, grants, alive)
        self.acks = collections.defaultdict(list)  # room -> [(t, seq, push_id, cid)]
        self.seen = {}            # (room, seq) -> push_id first delivered
        self.push_cid = {}        # push_id -> cid
        self.subs_done = []
        self.streams = {}         # sid -> dict(size, sender, receivers [])
        self.next_push = 1
        self.run_tag = "%06x" % random.getrandbits(24)
        self.stopping = False
        self.phase = "warmup"
        self.t0 = args.t0
        self.nodes = []

    def count(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def fail(self, kind, msg):
        with self.lock:
            self.failures[kind] += 1
            if len(self.fail_msgs) < 200:
                self.fail_msgs.append("%8.1fs %s: %s" % (now() - self.t0, kind, msg))
        if self.failures[kind] <= 3:
            print("  FAILURE %s: %s" % (kind, msg), flush=True)

    def note(self, msg):
        with self.lock:
            if len(self.notes) < 200:
                self.notes.append("%8.1fs %s" % (now() - self.t0, msg))

    def near_restart(self, t, before=NEAR_BEFORE, after=NEAR_AFTER, node=None, kinds=None):
        """The restart event (t, node, kind) nearest to t within [t - after,
        t + before] of its signal or its return, else None."""
        best = None
        for (te, name, kind) in self.events:
            if node and name != node:
                continue
            if kinds and kind not in kinds:
                continue
            if te - before <= t <= te + after:
                if best is None or abs(t - te) < abs(t - best[0]):
                    best = (te, name, kind)
        return best

    def up_nodes(self):
        return [n for n in self.nodes if n.up]

    def new_push_id(self, cid):
        with self.lock:
            pid = self.next_push
            self.next_push += 1
            self.push_cid[pid] = cid
            return pid

    def rel(self, t):
        return t - self.t0


# ---------------------------------------------------------------- frames

def frame_bytes(v):
    body = msgpack.packb(v, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def push_payload(pid, size):
    size = max(size, 16)
    off = random.randrange(0, len(POOL) - size)
    body = POOL[off:off + size - 16]
    return struct.pack(">Q", pid) + hashlib.blake2b(body, digest_size=8).digest() + body


HEAVY = False  # --heavy: the first mix tried, which overloads 3 ASan nodes on 2 cores


def push_size():
    r = random.random()
    if HEAVY:
        return random.randint(16, 1024) if r < 0.70 else random.randint(1025, 65536) \
            if r < 0.95 else random.randint(65537, 512 << 10)
    if r < 0.75:
        return random.randint(16, 1024)
    if r < 0.98:
        return random.randint(1025, 16384)
    return random.randint(16385, 256 << 10)


def stream_size():
    return int(math.exp(random.uniform(math.log(1024), math.log(8 << 20))))


class Pending:
    __slots__ = ("rid", "ev", "v", "cb")

    def __init__(self, rid, cb):
        self.rid, self.cb, self.v = rid, cb, None
        self.ev = threading.Event()


class Recv:
    __slots__ = ("sid", "room", "sender", "topic", "size", "attrs", "got", "sha", "xx", "t0")


class Send:
    __slots__ = ("sid", "limit", "end", "cond")


class Lost(Exception):
    pass


# ---------------------------------------------------------------- a client

class Client:
    def __init__(self, w, cid, node, identity, quiet=False):
        self.w, self.cid, self.node, self.identity = w, cid, node, identity
        self.quiet = quiet  # a helper of the script (cleanup): not counted as a client
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.pending = {}
        self.chunk_rids = {}
        self.rid = 0
        self.subs = {}
        self.rstreams = {}
        self.sstreams = {}
        self.lost = None
        self.leaving = False
        self.conn_error = None
        self.sock = None
        self.nstreams = 0
        self.recent = collections.deque(maxlen=16)  # the last frames received, for reports
        self.ended = {}  # stream id -> how it ended here (receiver side)
        self.sent_sids = set()

    # -- connection

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.node.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(frame_bytes([HELLO, 1, 1, self.identity]))
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                b = s.recv(65536)
                if not b:
                    raise OSError("EOF before WELCOME")
                buf += b
            n = struct.unpack(">I", buf[:4])[0]
            v = msgpack.unpackb(buf[4:4 + n], raw=False, strict_map_key=False)
            if v[0] != WELCOME:
                raise OSError("HELLO answered %r" % (v[:4],))
            self.session = v[3]
            rest = buf[4 + n:]
        except OSError:
            s.close()
            raise
        s.settimeout(None)
        self.sock = s
        self.rid = 1
        self.reader = threading.Thread(target=self._reader, args=(bytearray(rest),), daemon=True)
        self.reader.start()

    def _mark_lost(self, why):
        with self.lock:
            if self.lost:
                return
            self.lost = (now(), why)
            pend = list(self.pending.values())
            self.pending.clear()
            self.cond.notify_all()
        for p in pend:
            p.ev.set()

    def _reader(self, buf):
        pos = 0
        try:
            while True:
                while len(buf) - pos >= 4:
                    n = struct.unpack_from(">I", buf, pos)[0]
                    if len(buf) - pos - 4 < n:
                        break
                    v = msgpack.unpackb(bytes(buf[pos + 4:pos + 4 + n]), raw=False,
                                        strict_map_key=False)
                    pos += 4 + n
                    self._dispatch(v)
                if pos:
                    del buf[:pos]
                    pos = 0
                r, _, _ = select.select([self.sock], [], [], 0.5)
                if not r:
                    continue
                try:
                    b = self.sock.recv(1 << 20)
                except OSError as e:
                    self._mark_lost("reset: %s" % e)
                    return
                if not b:
                    self._mark_lost("eof")
                    return
                buf += b
        except Exception as e:  # a bug of this script, or an unparsable frame
            self.w.fail("client_exception", "client %d reader: %s: %s" % (self.cid, type(e).__name__, e))
            self._mark_lost("reader exception")

    def send(self, ftype, *fields, cb=None, want=True, chunk_of=None):
        with self.lock:
            if self.lost:
                return None
            self.rid += 1
            rid = self.rid
            p = Pending(rid, cb)
            if want:
                self.pending[rid] = p
            if chunk_of is not None:
                # Before the frame goes: its error may come back before
                # the sender's next line runs.
                self.chunk_rids[rid] = chunk_of
        try:
            self.sock.sendall(frame_bytes([ftype, rid] + list(fields)))
        except OSError as e:
            self._mark_lost("send: %s" % e)
            return None
        return p

    def wait(self, p, timeout, what):
        if p is None:
            raise Lost()
        if not p.ev.wait(timeout):
            with self.lock:
                self.pending.pop(p.rid, None)
            self.w.fail("request_timeout", "client %d on %s: no reply to %s within %.0f s" %
                        (self.cid, self.node.name, what, timeout))
            raise Lost()
        if p.v is None:
            raise Lost()
        return p.v

    def request(self, what, ftype, *fields, cb=None, timeout=REQ_TIMEOUT):
        return self.wait(self.send(ftype, *fields, cb=cb), timeout, what)

    def error(self, what, v, allowed=("unknown_room",), near_ok=("internal", "forbidden")):
        """Counts an ERROR reply; an error this request cannot meet here fails."""
        name = ERR.get(v[2], str(v[2]))
        self.w.count("err_%s_%s" % (what, name))
        if name in allowed:
            return name
        if name in near_ok and self.w.near_restart(now()):
            return name
        self.w.fail("unexpected_error", "client %d (%s) on %s: %s answered %s %r" %
                    (self.cid, self.identity, self.node.name, what, name, v[3]))
        return name

    # -- what arrives

    def _brief(self):
        return "; last frames: " + ", ".join(
            "%.2fs %s" % (w_t - self.w.t0, b) for (w_t, b) in self.recent)

    def _dispatch(self, v):
        w = self.w
        t = v[0]
        self.recent.append((now(), str([x if not isinstance(x, (bytes, dict, list)) else
                                         "<%d>" % len(x) for x in v[:6]])))
        if t in (OK, ERROR, PONG) and v[1]:
            with self.lock:
                p = self.pending.pop(v[1], None)
                sid = None if p else self.chunk_rids.pop(v[1], None)
            if p:
                p.v = v
                if p.cb:
                    p.cb(v)
                p.ev.set()
            elif sid is not None and t == ERROR:
                self._sender_end(sid, ("chunk_error", ERR.get(v[2], str(v[2])), v[3]))
            else:
                w.fail("protocol", "client %d: reply to no request: %r" % (self.cid, v[:4]))
        elif t == ERROR:
            self.conn_error = ERR.get(v[2], str(v[2]))
        elif t == DELIVER:
            self._deliver(v)
        elif t == STREAM_OPENED:
            self._opened(v)
        elif t == STREAM_DATA:
            self._data(v)
        elif t == STREAM_END:
            self._end(v)
        elif t == STREAM_CREDIT:
            with self.lock:
                st = self.sstreams.get(v[2])
                if st:
                    st.limit = max(st.limit, v[4])
                    self.cond.notify_all()
        elif t == ROOM_CLOSED:
            room, reason = v[2], v[3]
            w.count("room_closed_" + reason.replace(" ", "_"))
            with self.lock:
                sub = self.subs.pop(room, None)
                open_ = [s for s, r in self.rstreams.items() if r.room == room]
                for sid in open_:
                    self._recv_outcome(self.rstreams.pop(sid), "room_closed_before_end")
            if open_:
                # docs/protocol.md: a room's open streams end (STREAM_END) before its
                # ROOM_CLOSED, and nothing more of the room follows.
                w.fail("room_closed_before_stream_end",
                       "client %d on %s: ROOM_CLOSED %s %r while stream(s) %s were open%s" %
                       (self.cid, self.node.name, room, reason, open_, self._brief()))
            if sub:
                self._end_sub(sub, "closed " + reason)
            if reason in ("removed", "expired"):
                with w.lock:
                    if room in w.rooms:
                        w.rooms[room]["alive"] = False
        else:
            w.fail("protocol", "client %d: unexpected frame %r" % (self.cid, v[:3]))

    def _deliver(self, v):
        w = self.w
        room, seq, sender, dtype, data = v[2], v[3], v[4], v[5], v[6]
        w.count("delivered")
        w.count("delivered_bytes", len(data))
        if len(data) < 16:
            w.fail("corrupt_push", "client %d: DELIVER seq %d of %d bytes" % (self.cid, seq, len(data)))
            return
        pid = struct.unpack_from(">Q", data)[0]
        if hashlib.blake2b(data[16:], digest_size=8).digest() != data[8:16] or dtype != pid % 256:
            w.fail("corrupt_push", "client %d room %s seq %d push %d: payload or dtype differs"
                   % (self.cid, room, seq, pid))
        with self.lock:
            sub = self.subs.get(room)
        if sub is None:
            w.fail("deliver_unsubscribed", "client %d on %s: DELIVER room %s seq %d with no "
                   "subscription" % (self.cid, self.node.name, room, seq))
            return
        if seq <= sub.last:
            w.fail("seq_disorder", "client %d on %s room %s: seq %d after %d (push %d)%s" %
                   (self.cid, self.node.name, room, seq, sub.last, pid, self._ctx()))
        if pid in sub.ids:
            w.fail("duplicate_push", "client %d on %s room %s: push %d again as seq %d%s" %
                   (self.cid, self.node.name, room, pid, seq, self._ctx()))
        sub.last = max(sub.last, seq)
        sub.seqs.append(seq)
        sub.ids.add(pid)
        with w.lock:
            first = w.seen.setdefault((room, seq), pid)
            if first != pid:
                w.c["seq_two_pushes"] += 1
                if w.c["seq_two_pushes"] <= 20:
                    w.notes.append("%8.1fs room %s seq %d delivered as push %d and as push %d" %
                                   (now() - w.t0, room, seq, first, pid))

    def _ctx(self):
        e = self.w.near_restart(now())
        return "" if not e else " (%.1f s after %s of %s)" % (now() - e[0], e[2], e[1])

    def _opened(self, v):
        w = self.w
        room, sid, sender, topic, size, attrs, dests = v[2], v[3], v[4], v[5], v[8], v[9], v[10]
        with self.lock:
            sub = self.subs.get(room)
        if sub is None:
            w.fail("stream_unsubscribed", "client %d: STREAM_OPENED %s in room %s with no "
                   "subscription" % (self.cid, sid, room))
            return
        if sub.topics and topic not in sub.topics:
            w.fail("topic_filter", "client %d topics %s got stream %s of topic %r" %
                   (self.cid, sub.topics, sid, topic))
        if dests and self.identity not in dests:
            w.fail("destinations", "client %d (%s) got stream %s for %s" %
                   (self.cid, self.identity, sid, dests))
        r = Recv()
        r.sid, r.room, r.sender, r.topic, r.size, r.attrs = sid, room, sender, topic, size, attrs
        r.got, r.sha, r.xx, r.t0 = 0, hashlib.sha256(), XXH3(), now()
        with self.lock:
            if sid in self.rstreams:
                w.fail("stream_twice", "client %d: STREAM_OPENED %s twice" % (self.cid, sid))
            self.rstreams[sid] = r
        w.count("stream_receptions")

    def _data(self, v):
        sid, off, data = v[2], v[3], v[4]
        with self.lock:
            r = self.rstreams.get(sid)
        if r is None:
            prev = self.ended.get(sid)
            if prev is None:
                self.w.fail("stream_data_unknown", "client %d: STREAM_DATA for %s at %d, not "
                            "open here" % (self.cid, sid, off))
            elif not prev[0].endswith("+data"):
                self.ended[sid] = (prev[0] + "+data", prev[1])
                self.w.fail("stream_data_after_end", "client %d on %s: STREAM_DATA %s at %d "
                            "after the stream ended here (%s at %.2fs)%s" %
                            (self.cid, self.node.name, sid, off, prev[0], prev[1] - self.w.t0,
                             self._brief()))
            return
        if off != r.got:
            self.w.fail("stream_offset", "client %d stream %s: data at %d after %d bytes%s" %
                        (self.cid, sid, off, r.got, self._ctx()))
        r.got += len(data)
        r.sha.update(data)
        r.xx.update(data)

    def _end(self, v):
        w = self.w
        sid, status, reason, attrs, nbytes, checksum = v[2], v[3], v[4], v[5], v[6], v[7]
        with self.lock:
            r = self.rstreams.pop(sid, None)
            mine = sid in self.sent_sids
        if r is None:
            if mine:
                self._sender_end(sid, ("end", status, reason))
            else:
                prev = self.ended.get(sid)
                w.fail("stream_end_unknown" if prev is None else "stream_end_twice",
                       "client %d on %s: STREAM_END %s %s %r for a stream %s%s" %
                       (self.cid, self.node.name, sid, status, reason,
                        "not open here" if prev is None else
                        "that ended here already (%s at %.2fs)" % (prev[0], prev[1] - w.t0),
                        self._brief()))
            return
        if status == "ok":
            want = int(r.attrs.get("n", -1))
            problems = []
            if not (r.got == nbytes == want):
                problems.append("bytes: got %d, END says %d, sent %d" % (r.got, nbytes, want))
            if r.size is not None and r.size != want:
                problems.append("declared size %s" % r.size)
            if r.sha.hexdigest() != r.attrs.get("sha256"):
                problems.append("SHA-256 differs")
            xx = r.xx.digest()
            if checksum != xx or str(xx) != r.attrs.get("xxh3"):
                problems.append("XXH3: got %016x, END %s, sender %s" % (xx, checksum,
                                                                      r.attrs.get("xxh3")))
            if attrs != {"fin": r.attrs.get("n")}:
                problems.append("close attributes %r" % (attrs,))
            if problems:
                w.fail("stream_unverified", "client %d stream %s (%s): %s" %
                       (self.cid, sid, r.room, "; ".join(problems)))
                self._recv_outcome(r, "ok_UNVERIFIED")
            else:
                w.count("stream_bytes_verified", r.got)
                self._recv_outcome(r, "ok")
        elif status == "aborted":
            if reason == "soak abort":
                self._recv_outcome(r, "aborted_on_purpose")
            else:
                self._recv_outcome(r, "aborted: " + reason, t=now())
        else:
            self._recv_outcome(r, "%s: %s" % (status, reason), t=now())

    def _recv_outcome(self, r, outcome, t=None):
        w = self.w
        self.ended[r.sid] = (outcome, now())
        w.count("recv_" + outcome.split(":")[0])
        with w.lock:
            rec = w.streams.get(r.sid)
            if rec is not None:
                rec["receivers"].append((self.cid, outcome, t))

    def _sender_end(self, sid, how):
        with self.lock:
            st = self.sstreams.get(sid)
            if st and st.end is None:
                st.end = how
                self.cond.notify_all()
            elif st is None:
                # The stream ended here already: its chunks in flight fail
                # with unknown_stream, which is what the protocol says.
                self.w.count("chunk_errors_after_end")

    def _end_sub(self, sub, why):
        if sub.end is None:
            sub.end, sub.t_end = why, now()
            with self.w.lock:
                self.w.subs_done.append(sub)

    # -- actions

    def act_create(self):
        v = self.request("create", CREATE)
        if v[0] != OK:
            self.error("create", v, allowed=())
            return
        room = v[2]
        grants = set(random.sample([i for i in IDENTITIES if i != self.identity],
                                   random.randint(1, 4)))
        with self.w.lock:
            self.w.rooms[room] = {"owner": self.identity, "grants": set(), "alive": True}
        self.w.count("rooms_created")
        for g in grants:
            v = self.request("grant", GRANT, room, g)
            if v[0] == OK:
                with self.w.lock:
                    self.w.rooms[room]["grants"].add(g)
            else:
                self.error("grant", v)

    def pick_room(self, may_push=False):
        with self.w.lock:
            rooms = [r for r, m in self.w.rooms.items() if m["alive"] and
                     (not may_push or m["owner"] == self.identity or
                      self.identity in m["grants"])]
        return random.choice(rooms) if rooms else None

    def act_subscribe(self):
        room = self.pick_room()
        if room is None or room in self.subs:
            return
        topics = random.sample(TOPICS, random.randint(1, 2)) if random.random() < 0.4 else []
        sub = Sub(room, self.cid, topics, self.node.name)
        with self.lock:
            self.subs[room] = sub

        def cb(v, sub=sub):
            if v[0] == OK:
                sub.t_ok = now()
            else:
                with self.lock:
                    if self.subs.get(sub.room) is sub:
                        del self.subs[sub.room]
        fields = [room, topics] if topics or random.random() < 0.5 else [room]
        v = self.request("subscribe", SUBSCRIBE, *fields, cb=cb)
        if v[0] == OK:
            self.w.count("subscriptions")
        else:
            self.error("subscribe", v)

    def act_unsubscribe(self):
        if not self.subs:
            return
        room = random.choice(list(self.subs))
        sub = self.subs[room]
        t_sent = now()

        def cb(v, sub=sub):
            with self.lock:
                if self.subs.get(sub.room) is sub:
                    del self.subs[sub.room]
                for sid in [s for s, r in self.rstreams.items() if r.room == sub.room]:
                    self._recv_outcome(self.rstreams.pop(sid), "unsubscribed")
            sub.end, sub.t_end = "unsubscribed", t_sent
            with self.w.lock:
                self.w.subs_done.append(sub)
        v = self.request("unsubscribe", UNSUBSCRIBE, room, cb=cb)
        if v[0] != OK:
            self.error("unsubscribe", v)

    def act_push(self):
        room = self.pick_room(may_push=True)
        if room is None:
            return
        burst, budget = (random.randint(1, 16), 1 << 20) if HEAVY else \
            (random.randint(1, 8), 512 << 10)
        ps = []
        for _ in range(burst):
            size = push_size()
            if size > budget:
                break
            budget -= size
            pid = self.w.new_push_id(self.cid)

            def cb(v, pid=pid):
                if v[0] == OK:
                    with self.w.lock:
                        self.w.acks[room].append((now(), v[2], pid, self.cid))
            p = self.send(PUSH, room, pid % 256, push_payload(pid, size), cb=cb)
            if p is None:
                raise Lost()
            ps.append(p)
            self.w.count("pushes_sent")
        for p in ps:
            v = self.wait(p, REQ_TIMEOUT, "push")
            if v[0] == OK:
                self.w.count("pushes_acked")
            else:
                if self.error("push", v) == "unknown_room":
                    with self.w.lock:
                        self.w.rooms.get(room, {})["alive"] = False
                    return

    def act_info(self):
        room = self.pick_room()
        if room is None:
            v = self.request("ping", PING)
            return
        v = self.request("info", INFO, room)
        if v[0] != OK:
            self.error("info", v)

    def act_remove(self):
        with self.w.lock:
            mine = [r for r, m in self.w.rooms.items() if m["alive"] and m["owner"] == self.identity]
        if not mine:
            return
        room = random.choice(mine)
        v = self.request("remove", REMOVE, room)
        with self.w.lock:
            self.w.rooms[room]["alive"] = False
        if v[0] == OK:
            self.w.count("rooms_removed")
        else:
            self.error("remove", v)

    def act_stream(self, sem):
        room = self.pick_room(may_push=True)
        if room is None or not sem.acquire(blocking=False):
            return
        try:
            self._stream(room)
        finally:
            sem.release()

    def _stream(self, room):
        w = self.w
        self.nstreams += 1
        sid = "%s.%d.%d" % (w.run_tag, self.cid, self.nstreams)
        n = stream_size()
        data = b"".join(POOL[o:o + min(1 << 20, n - k)] for k in range(0, n, 1 << 20)
                        for o in [random.randrange(0, len(POOL) - (1 << 20))])
        sha, xx = hashlib.sha256(data).hexdigest(), xxh3(data)
        topic = random.choice(TOPICS)
        dests = random.sample(IDENTITIES, random.randint(1, 3)) if random.random() < 0.1 else []
        declared = None if random.random() < 0.2 else n
        abort_at = random.randrange(0, n) if random.random() < 0.05 else None
        attrs = {"sha256": sha, "xxh3": str(xx), "n": str(n)}
        st = Send()
        st.sid, st.limit, st.end, st.cond = sid, 0, None, None
        with w.lock:
            w.streams[sid] = {"size": n, "sender": None, "receivers": [], "room": room,
                              "t": now()}
        with self.lock:
            self.sstreams[sid] = st
            self.sent_sids.add(sid)
        outcome = None
        try:
            v = self.request("stream_open", STREAM_OPEN, room, sid, topic, "soak-%d.bin" % n,
                             "application/octet-stream", declared, attrs, dests,
                             int(time.time() * 1000))
            if v[0] != OK:
                outcome = "open_refused: " + self.error("stream_open", v)
                return
            w.count("streams_sent")
            w.count("stream_bytes_sent", n)
            with self.lock:
                st.limit = max(st.limit, v[2])
            off = 0
            while off < n:
                if abort_at is not None and off >= abort_at:
                    v = self.request("stream_abort", STREAM_ABORT, sid, "soak abort")
                    outcome = "aborted_on_purpose" if v[0] == OK else \
                        "abort_error: " + self.error(
                            "stream_abort", v, allowed=(),
                            near_ok=("internal", "unknown_stream", "unknown_room"))
                    return
                with self.lock:
                    t_wait = now()
                    while st.limit <= off and st.end is None and not self.lost:
                        if now() - t_wait > CREDIT_STALL:
                            break
                        self.cond.wait(1.0)
                    limit, end, lost = st.limit, st.end, self.lost
                if lost:
                    raise Lost()
                if end is not None:
                    outcome = "room_closed" if end == ("end", "aborted", "room closed") else \
                        "ended: %s" % (end,)
                    return
                if limit <= off:
                    e = w.near_restart(now())
                    w.fail("stream_stalled" if not e else "stream_stalled_near_restart",
                           "client %d on %s stream %s: no credit for %.0f s at %d of %d%s" %
                           (self.cid, self.node.name, sid, CREDIT_STALL, off, n, self._ctx()))
                    self.request("stream_abort", STREAM_ABORT, sid, "soak stalled")
                    outcome = "stalled"
                    return
                cs = random.choice((16 << 10, 64 << 10, 128 << 10))
                end_ = min(off + cs, limit, n)
                p = self.send(STREAM_CHUNK, sid, off, data[off:end_], want=False, chunk_of=sid)
                if p is None:
                    raise Lost()
                off = end_
            v = self.request("stream_close", STREAM_CLOSE, sid, "", {"fin": str(n)},
                             xx if random.random() < 0.5 else None, timeout=CLOSE_TIMEOUT)
            if v[0] == OK:
                if v[2] != n:
                    w.fail("stream_close", "stream %s: close OK says %r bytes, sent %d" %
                           (sid, v[2], n))
                outcome = "ok"
            else:
                outcome = "close_error: " + self.error(
                    "stream_close", v, allowed=(),
                    near_ok=("internal", "unknown_stream", "unknown_room"))
        except Lost:
            outcome = "sender_lost"
            raise
        finally:
            with self.lock:
                self.sstreams.pop(sid, None)
            if outcome and outcome.startswith("ended") and not w.near_restart(now()):
                w.fail("stream_sender_end", "client %d stream %s: %s with no restart near" %
                       (self.cid, sid, outcome))
            w.count("send_" + (outcome or "none").split(":")[0])
            with w.lock:
                w.streams[sid]["sender"] = (outcome, now())

    # -- the session

    def run(self, sem):
        w = self.w
        try:
            self.connect()
        except OSError as e:
            w.count("connect_failed")
            e2 = w.near_restart(now(), node=self.node.name)
            if not e2 and self.node.up:
                w.fail("connect_failed", "client %d to %s: %s" % (self.cid, self.node.name, e))
            return
        w.count("clients")
        t_end = now() + random.uniform(5, 45)
        try:
            for _ in range(random.randint(0, 3)):
                self.act_subscribe()
            steps = 0
            while now() < t_end and not w.stopping and steps < 2000:
                steps += 1
                r = random.random()
                if r < 0.05:
                    self.act_create()
                elif r < 0.15:
                    self.act_subscribe()
                elif r < 0.19:
                    self.act_unsubscribe()
                elif r < 0.70:
                    self.act_push()
                elif r < 0.75:
                    self.act_stream(sem)
                elif r < 0.80:
                    self.act_info()
                elif r < 0.82:
                    self.act_remove()
                time.sleep(random.uniform(0.05, 0.4) if HEAVY else random.uniform(0.1, 0.6))
            # Leaving: sometimes remove a room; let open receptions end (bounded).
            if random.random() < 0.3:
                self.act_remove()
            deadline = now() + 20
            while now() < deadline:
                with self.lock:
                    if self.lost or not self.rstreams:
                        break
                time.sleep(0.2)
        except Lost:
            pass
        finally:
            self.leave()

    def leave(self):
        w = self.w
        with self.lock:
            lost = self.lost
            self.leaving = True
        if not lost:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.reader.join(10)
        if self.reader.is_alive():
            w.fail("client_hung", "client %d: reader did not end" % self.cid)
        self.sock.close()
        t_lost, why = self.lost or (now(), "?")
        by_restart = False
        if self.quiet:
            pass
        elif lost:
            e = w.near_restart(t_lost, before=1.0, after=NEAR_AFTER, node=self.node.name)
            if e:
                w.count("clients_lost_restart")
                by_restart = True
            else:
                w.count("clients_lost_other")
                w.fail("disconnected", "client %d (%s) on %s lost its connection (%s, error %s) "
                       "with no restart of its node" % (self.cid, self.identity, self.node.name,
                                                         why, self.conn_error))
        else:
            w.count("clients_left")
        tag = "restart" if by_restart else ("lost" if lost else "left")
        with self.lock:
            subs = list(self.subs.values())
            self.subs.clear()
            rs = list(self.rstreams.values())
            self.rstreams.clear()
        for sub in subs:
            self._end_sub(sub, "client " + tag)
            sub.t_end = t_lost if lost else sub.t_end
        for r in rs:
            self._recv_outcome(r, "receiver_" + tag)


# ---------------------------------------------------------------- nodes

def fixed_port(used):
    """A port free for TCP and UDP on 127.0.0.1, below the ephemeral range so
    that no outgoing connection takes it while its node is down."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = int(f.read().split()[0])
    for _ in range(2000):
        p = random.randint(max(1025, lo - 12000), lo - 1)
        if p in used:
            continue
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", p))
            u.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        used.add(p)
        return p
    raise SystemExit("soak: no free port")


def heap_bytes(pid):
    """Live heap of an ASan build (malloc'd and not yet freed, quarantine
    excluded), read with gdb from ASan's allocator statistics; None if gdb
    is missing or the binary has no ASan."""
    try:
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex",
                            "print (unsigned long)__sanitizer_get_current_allocated_bytes()"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\$1 = (\d+)", r.stdout, re.M)
    return int(m.group(1)) if m else None


def malloc_trim(pid):
    """Asks glibc in the process to give its free memory back (malloc_trim(0),
    through gdb): what RSS is left is what the process holds."""
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex",
                        "print (int)malloc_trim(0)"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pass


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


STATS_RE = re.compile(r"stats on 127\.0\.0\.1:(\d+)")


def fmt_mem(m):
    return ", ".join("%s RSS %d KiB%s" % (k, r, "" if h is None else ", heap %d B" % h)
                     for k, (r, h) in sorted(m.items()))


class NodeProc:
    def __init__(self, name, vroomd, key, logdir, ports, args):
        self.name, self.vroomd, self.key, self.logdir = name, vroomd, key, logdir
        self.port, self.cport = fixed_port(ports), fixed_port(ports)
        self.args = args
        self.inc = 0
        self.proc = None
        self.logs = []
        self.up = False
        self.stats_port = None
        self.last_stats = None
        self.last_metrics = {}
        self.totals = collections.Counter()  # counters of past incarnations
        self.rss_peak = 0
        self.started = []  # (t, rss right after joining)
        self.t0 = args.t0

    def start(self, seeds):
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"
        env["UBSAN_OPTIONS"] = env.get("UBSAN_OPTIONS", "") + ":print_stacktrace=1"
        for attempt in range(10):
            self.inc += 1
            log = os.path.join(self.logdir, "%s.%d.log" % (self.name, self.inc))
            self.logs.append(log)
            open(log, "wb").close()
            flags = ["--listen", "127.0.0.1:%d" % self.port,
                     "--cluster", "127.0.0.1:%d" % self.cport, "--cluster-key", self.key,
                     "--node-name", self.name, "--stats", "127.0.0.1:0",
                     "--room-idle-timeout", "%ds" % self.args.room_idle_timeout]
            if seeds:
                flags += ["--seeds", ",".join(seeds)]
            self.proc = subprocess.Popen([self.vroomd] + flags, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         env=env, preexec_fn=_die_with_parent)
            self.copier = threading.Thread(target=_copy_log, args=(self.proc.stdout, log,
                                                                   self.t0), daemon=True)
            self.copier.start()
            deadline = now() + 30
            text = ""
            while now() < deadline:
                text = self.log(self.inc)
                m = STATS_RE.search(text)
                if m and "in the cluster on" in text:
                    self.stats_port = int(m.group(1))
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if "cannot bind" in text or "cannot listen" in text or "in use" in text:
                time.sleep(1.0)
                continue
            raise RuntimeError("%s did not start (exit %s):\n%s" %
                               (self.name, self.proc.returncode, text[-3000:]))
        raise RuntimeError("%s: its ports stayed busy" % self.name)

    def log(self, inc=None):
        path = self.logs[(inc or self.inc) - 1]
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def http(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.read()
        finally:
            c.close()

    def stats(self):
        s = json.loads(self.http("/stats"))
        self.last_stats = s
        return s

    def metrics(self):
        out = {}
        for line in self.http("/metrics").decode().splitlines():
            p = line.split()
            if len(p) == 2 and not line.startswith("#"):
                try:
                    out[p[0]] = float(p[1])
                except ValueError:
                    pass
        self.last_metrics = out
        return out

    def rss(self):
        return rss_kib(self.proc.pid) if self.proc and self.proc.poll() is None else None

    def bank(self):
        """Adds the counters of the incarnation about to end to the totals."""
        for k, v in self.last_metrics.items():
            if k.endswith("_total"):
                self.totals[k] += v
        self.last_metrics = {}


def _copy_log(pipe, path, t0):
    """Copies a node's stderr to its log, each line prefixed with the soak's
    clock (seconds since the script started), so that the log and the
    script's findings can be read side by side."""
    with open(path, "ab", buffering=0) as f:
        for line in iter(pipe.readline, b""):
            f.write(b"%9.3f " % (now() - t0) + line)
    pipe.close()


def _die_with_parent():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


# ---------------------------------------------------------------- the run

class Soak:
    def __init__(self, args):
        self.args = args
        self.w = World(args)
        self.clients = []
        self.threads = []
        self.sem = threading.Semaphore(args.max_streams)
        self.ncid = 0

    # -- build and nodes

    def build(self):
        b = self.args.build
        if not os.path.isabs(b):
            b = os.path.join(ROOT, b)
        if not os.path.isdir(b):
            print("configuring %s (ASan + UBSan, debugoptimized)" % b, flush=True)
            subprocess.run(["meson", "setup", b, "-Db_sanitize=address,undefined",
                            "--buildtype=debugoptimized"], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        subprocess.run(["ninja", "-C", b], check=True, stdout=subprocess.DEVNULL)
        self.vroomd = os.path.join(b, "node", "vroomd")
        self.vroom = os.path.join(b, "client", "vroom")
        r = subprocess.run(["meson", "introspect", "--buildoptions", b], capture_output=True,
                           text=True)
        self.sanitize = "?"
        self.buildtype = "?"
        try:
            for o in json.loads(r.stdout):
                if o["name"] == "b_sanitize":
                    self.sanitize = o["value"]
                if o["name"] == "buildtype":
                    self.buildtype = o["value"]
        except (ValueError, KeyError):
            pass
        self.asan = "address" in str(self.sanitize)
        if not self.asan:
            print("WARNING: %s is not built with ASan (b_sanitize=%s)" % (b, self.sanitize))
        mode = self.args.memory_check
        if mode == "auto":
            mode = "heap" if self.asan and shutil.which("gdb") else "rss"
        if mode == "heap" and not (self.asan and shutil.which("gdb")):
            raise SystemExit("soak: --memory-check heap needs an ASan build and gdb")
        if mode == "trim" and (self.asan or not shutil.which("gdb")):
            raise SystemExit("soak: --memory-check trim needs a build without ASan, and gdb")
        self.memory_check = mode
        self.use_heap = self.asan and shutil.which("gdb") is not None
        self.commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        self.dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                          "--untracked-files=no", "node", "stream", "cluster"],
                                         capture_output=True, text=True).stdout.strip())

    def start_cluster(self):
        a = self.args
        self.tmp = tempfile.mkdtemp(prefix="vroom-soak-")
        key = os.path.join(self.tmp, "cluster.key")
        subprocess.run([self.vroom, "cluster", "keygen", key], check=True, timeout=30,
                       stdout=subprocess.DEVNULL)
        ports = set()
        self.w.nodes = [NodeProc("n%d" % (i + 1), self.vroomd, key, self.tmp, ports, a)
                        for i in range(a.nodes)]
        first = self.w.nodes[0]
        first.start([])
        for n in self.w.nodes[1:]:
            n.start(["127.0.0.1:%d" % first.cport])
        self.converge(self.w.nodes, 30)
        for n in self.w.nodes:
            n.up = True
            n.started.append((now(), n.rss()))

    def converge(self, nodes, timeout):
        names = {n.name for n in self.w.nodes}
        deadline = now() + timeout
        while True:
            ok = True
            for n in nodes:
                try:
                    view = {m["name"]: m["state"] for m in n.stats()["members"]}
                except (OSError, ValueError):
                    ok = False
                    continue
                if any(view.get(x) != "alive" for x in names):
                    ok = False
            if ok:
                return now()
            if now() > deadline:
                self.w.fail("no_convergence", "views not all alive after %.0f s: %s" %
                            (timeout, {n.name: n.last_stats and
                                       {m["name"]: m["state"] for m in n.last_stats["members"]}
                                       for n in nodes}))
                return None
            time.sleep(0.1)

    def check_log(self, n, inc):
        text = n.log(inc)
        for mark in SANITIZER_MARKS:
            if mark in text:
                i = text.index(mark)
                self.w.fail("sanitizer", "%s (incarnation %d) log has %r:\n%s" %
                            (n.name, inc, mark, text[max(0, i - 2000):i + 4000]))
                return False
        return True

    def restart(self, k):
        w, a = self.w, self.args
        n = w.nodes[(k - 1) % len(w.nodes)]
        kind = "term" if k % 2 == 1 else "kill"
        try:
            n.stats()
            n.metrics()
        except (OSError, ValueError):
            pass
        n.bank()
        n.up = False
        t = now()
        w.events.append((t, n.name, kind))
        inc = n.inc
        if kind == "term":
            n.proc.send_signal(signal.SIGTERM)
            try:
                rc = n.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.fail("term_hang", "%s did not exit within 30 s of SIGTERM" % n.name)
                n.proc.kill()
                rc = n.proc.wait()
            if rc != 0:
                w.fail("term_exit", "%s exited %s after SIGTERM:\n%s" %
                       (n.name, rc, n.log(inc)[-3000:]))
        else:
            n.proc.kill()
            n.proc.wait()
        self.check_log(n, inc)
        down = now() - t
        time.sleep(max(0.0, a.downtime - down))
        seeds = ["127.0.0.1:%d" % o.cport for o in w.nodes if o is not n]
        try:
            n.start(seeds)
        except RuntimeError as e:
            w.fail("restart", str(e))
            return
        t_up = now()
        tc = self.converge(w.nodes, 30)
        w.events.append((t_up, n.name, "up"))
        n.started.append((t_up, n.rss()))
        n.up = True
        print("  %7.1fs restart %d: %s %s, down %.1f s, all views alive %.1f s after its start"
              " (incarnation %d)" % (w.rel(t), k, "SIGTERM" if kind == "term" else "kill -9",
                                     n.name, t_up - t, (tc or now()) - t_up, n.inc), flush=True)

    # -- clients

    def spawn(self):
        up = self.w.up_nodes()
        if not up:
            return
        self.ncid += 1
        c = Client(self.w, self.ncid, random.choice(up), random.choice(IDENTITIES))
        th = threading.Thread(target=c.run, args=(self.sem,), daemon=True)
        th.start()
        self.threads.append((th, c))

    def reap(self):
        self.threads = [(t, c) for (t, c) in self.threads if t.is_alive()]
        return len(self.threads)

    def drive(self, seconds, lo, hi, restarts):
        """Runs clients for `seconds`; restarts nodes every restart_every s if
        restarts. Returns when the time is up (clients still running)."""
        w, a = self.w, self.args
        t0 = now()
        target, t_target = random.randint(lo, hi), t0
        k, t_sample, t_print = 1, 0, t0
        while now() - t0 < seconds:
            if restarts and now() - t0 >= k * a.restart_every and \
                    k * a.restart_every < seconds:
                self.restart(k)
                k += 1
                continue
            if now() - t_target > 20:
                target, t_target = random.randint(lo, hi), now()
            active = self.reap()
            if active < target and self.ncid < MAX_CLIENTS:
                self.spawn()
            if now() - t_sample >= 5:
                t_sample = now()
                self.sample()
            if now() - t_print >= 30:
                t_print = now()
                self.status(active, target)
            time.sleep(0.05 if active < target else 0.2)

    def sample(self):
        for n in self.w.up_nodes():
            r = n.rss()
            if r:
                n.rss_peak = max(n.rss_peak, r)
            try:
                n.metrics()
            except (OSError, ValueError):
                pass

    def status(self, active, target):
        c, w = self.w.c, self.w
        print("  %7.1fs %-6s clients %2d/%2d (%d so far)  pushes %d acked, %d delivered  "
              "streams %d sent, %d ok, %d received ok  failures %d  RSS MiB %s" %
              (w.rel(now()), w.phase, active, target, c["clients"], c["pushes_acked"],
               c["delivered"], c["streams_sent"], c["send_ok"], c["recv_ok"],
               sum(w.failures.values()),
               " ".join("%s=%.0f" % (n.name, (n.rss() or 0) / 1024) for n in w.nodes)),
              flush=True)

    def stop_clients(self):
        self.w.stopping = True
        deadline = now() + 120
        for th, c in self.threads:
            th.join(max(0.1, deadline - now()))
            if th.is_alive():
                self.w.fail("client_hung", "client %d on %s still running 120 s after the stop"
                            % (c.cid, c.node.name))
        self.threads = []
        self.w.stopping = False

    def remove_rooms(self):
        """Each identity that owns live rooms removes them (through a random node)."""
        w = self.w
        with w.lock:
            owners = collections.defaultdict(list)
            for r, m in w.rooms.items():
                if m["alive"]:
                    owners[m["owner"]].append(r)
        removed = 0
        for ident, rooms in owners.items():
            c = Client(w, 0, random.choice(w.up_nodes()), ident, quiet=True)
            try:
                c.connect()
            except OSError as e:
                w.fail("cleanup", "cannot connect to remove rooms: %s" % e)
                continue
            try:
                for r in rooms:
                    v = c.request("remove", REMOVE, r)
                    if v[0] == OK:
                        removed += 1
                    with w.lock:
                        w.rooms[r]["alive"] = False
            except Lost:
                pass
            c.leave()
        return removed

    def wait_idle(self, timeout):
        """Until every node has no connection, room, open stream or mirror."""
        deadline = now() + timeout
        last = {}
        while True:
            busy = {}
            for n in self.w.nodes:
                try:
                    s = n.stats()
                    m = n.metrics()
                except (OSError, ValueError) as e:
                    busy[n.name] = str(e)
                    continue
                v = (s["connections"]["open"], s["rooms"]["count"], s["streams"]["open"],
                     int(m.get("vroom_cluster_mirrors", 0)))
                if any(v):
                    busy[n.name] = "connections %d, rooms %d, streams %d, mirrors %d" % v
            if not busy:
                return True
            last = busy
            if now() > deadline:
                self.w.fail("not_idle", "%.0f s after the load: %s" % (timeout, last))
                return False
            time.sleep(0.5)

    def measure_rss(self):
        """{node: (RSS KiB (median of 3, 1 s apart), live heap bytes or None)}"""
        out = {}
        for n in self.w.nodes:
            if self.memory_check == "trim":
                malloc_trim(n.proc.pid)
            vals = []
            for _ in range(3):
                vals.append(n.rss() or 0)
                time.sleep(1)
            heap = heap_bytes(n.proc.pid) if self.use_heap else None
            out[n.name] = (sorted(vals)[1], heap)
        return out

    # -- analysis

    def analyse(self):
        w = self.w
        acks_by_room = w.acks
        # Seq assigned to two different acknowledged pushes.
        for room, lst in acks_by_room.items():
            by_seq = {}
            for (t, seq, pid, cid) in lst:
                if seq in by_seq and by_seq[seq][1] != pid:
                    e = w.near_restart(t, kinds=("kill", "term", "up"))
                    w.c["seq_acked_twice"] += 1
                    w.note("room %s seq %d acknowledged to push %d (%.1fs) and %d (%.1fs)%s" %
                           (room, seq, by_seq[seq][1], w.rel(by_seq[seq][0]), pid, w.rel(t),
                            "" if not e else ", %.1f s after %s of %s" % (t - e[0], e[2], e[1])))
                by_seq[seq] = (t, pid)
        losses = collections.Counter()
        checked = 0
        examples = []
        for sub in w.subs_done:
            if sub.t_ok is None:
                continue
            lst = acks_by_room.get(sub.room, ())
            t_lo, t_hi = sub.t_ok + SUB_HEAD, sub.t_end - SUB_TAIL
            for (t, seq, pid, cid) in lst:
                if cid == sub.cid or not (t_lo <= t <= t_hi):
                    continue
                checked += 1
                if pid in sub.ids:
                    continue
                e = w.near_restart(t, kinds=("kill",))
                if e:
                    cls = "kill9"
                else:
                    e = w.near_restart(t, kinds=("term", "up"))
                    cls = ("near_" + e[2]) if e else "no_restart"
                losses[cls] += 1
                if len(examples) < 40:
                    examples.append("room %s seq %d push %d acked at %.1fs: not delivered to "
                                    "client %d on %s (subscribed %.1fs-%.1fs, ended %s, got "
                                    "%d pushes, last seq %d)%s" %
                                    (sub.room, seq, pid, w.rel(t), sub.cid, sub.node,
                                     w.rel(sub.t_ok), w.rel(sub.t_end), sub.end, len(sub.seqs),
                                     sub.last, "" if not e else
                                     "; %.1f s after %s of %s" % (t - e[0], e[2], e[1])))
        w.c["deliveries_checked"] = checked
        for cls, n in losses.items():
            w.c["lost_" + cls] = n
            w.fail("push_lost_" + cls, "%d acknowledged pushes never reached a live "
                   "subscriber (%s)" % (n, cls))
        self.loss_examples = examples
        # Streams: receivers' ends against the sender's.
        for sid, rec in w.streams.items():
            so = rec["sender"][0] if rec["sender"] else None
            for (cid, outcome, t) in rec["receivers"]:
                if outcome.startswith(("aborted: ", "error", "timeout")) and \
                        not outcome.startswith("aborted: room closed"):
                    if not w.near_restart(t or rec["t"]):
                        w.fail("stream_end_unexplained", "stream %s (%d bytes): client %d got "
                               "%s with no restart near" % (sid, rec["size"], cid, outcome))
                if so == "ok" and outcome not in ("ok", "unsubscribed") and \
                        not outcome.startswith(("receiver_", "room_closed")):
                    w.c["stream_ok_but_receiver_" + outcome.split(":")[0]] += 1
                    w.note("stream %s: sender's close OK but client %d got %s" %
                           (sid, cid, outcome))

    # -- main

    def run(self):
        a, w = self.args, self.w
        self.build()
        self.start_cluster()
        print("soak: %d nodes (%s, b_sanitize=%s) logs in %s" %
              (a.nodes, self.buildtype, self.sanitize, self.tmp), flush=True)
        for n in w.nodes:
            print("  %s: clients 127.0.0.1:%d, cluster 127.0.0.1:%d, stats 127.0.0.1:%d" %
                  (n.name, n.port, n.cport, n.stats_port))
        ok = True
        try:
            # 1. warm-up, then the level before the load.
            w.phase = "warmup"
            print("warm-up: %d s at 10-20 clients" % a.warmup, flush=True)
            self.drive(a.warmup, 10, 20, restarts=False)
            self.stop_clients()
            self.remove_rooms()
            self.wait_idle(60)
            time.sleep(a.settle)
            self.rss0 = self.measure_rss()
            print("before the load: %s" % fmt_mem(self.rss0), flush=True)
            # 2. the load.
            w.phase = "load"
            self.t_load = now()
            print("load: %d min, %d-%d clients, a restart every %d s" %
                  (a.minutes, a.min_clients, a.max_clients, a.restart_every), flush=True)
            self.drive(a.minutes * 60, a.min_clients, a.max_clients, restarts=True)
            self.t_load_end = now()
            w.phase = "drain"
            self.sample()
            self.stop_clients()
            self.removed_at_end = self.remove_rooms()
            self.idle = self.wait_idle(90)
            time.sleep(a.settle)
            self.rss1 = self.measure_rss()
            print("after the load: %s" % fmt_mem(self.rss1), flush=True)
            self.analyse()
            if self.args.hold:
                print("holding the nodes for %d s (pids %s)" % (
                    self.args.hold, {n.name: n.proc.pid for n in w.nodes}), flush=True)
                time.sleep(self.args.hold)
        finally:
            self.stop_nodes()
        return self.report()

    def stop_nodes(self):
        w = self.w
        self.exits = {}
        for n in reversed(w.nodes):
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                n.stats()
                n.metrics()
            except (OSError, ValueError):
                pass
            n.bank()
            n.proc.send_signal(signal.SIGTERM)
            try:
                rc = n.proc.wait(30)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                rc = "hung"
            self.exits[n.name] = rc
            if rc != 0:
                w.fail("final_exit", "%s exited %s after SIGTERM:\n%s" %
                       (n.name, rc, n.log()[-3000:]))
        for n in w.nodes:
            for inc in range(1, n.inc + 1):
                self.check_log(n, inc)

    def report(self):
        a, w, c = self.args, self.w, self.w.c
        tol = a.rss_tolerance
        print()
        print("=" * 78)
        print("vroom soak: %d nodes, %g min of load (+ %d s warm-up)%s, commit %s%s, %s, "
              "b_sanitize=%s" % (a.nodes, a.minutes, a.warmup, ", --heavy" if a.heavy else "",
                                 self.commit,
                                 " (node/stream/cluster modified)" if self.dirty else "",
                                 self.buildtype, self.sanitize))
        restarts = [(t, n, k) for (t, n, k) in w.events if k != "up"]
        print("restarts: %d (%s)" % (len(restarts), ", ".join(
            "%s %s at %.0fs" % ("SIGTERM" if k == "term" else "kill -9", n, t - self.t_load)
            for (t, n, k) in restarts)))
        print("clients: %d sessions (%d connects refused), %d left, %d lost to a restart of "
              "their node, %d lost otherwise" %
              (c["clients"], c["connect_failed"], c["clients_left"], c["clients_lost_restart"],
               c["clients_lost_other"]))
        print("rooms: %d created, %d removed by their owners (+%d at the end), ROOM_CLOSED "
              "seen: %s" % (c["rooms_created"], c["rooms_removed"], self.removed_at_end,
                            ", ".join("%s %d" % (k[12:], v) for k, v in sorted(c.items())
                                      if k.startswith("room_closed_"))))
        print("subscriptions: %d (%d checked)" % (c["subscriptions"], len(w.subs_done)))
        print("pushes: %d sent, %d acknowledged, %d delivered (%.1f MiB); %d acknowledged "
              "deliveries checked, lost: %d near a kill -9, %d near a SIGTERM or "
              "rejoin, %d with no restart near" %
              (c["pushes_sent"], c["pushes_acked"], c["delivered"], c["delivered_bytes"] / 2**20,
               c["deliveries_checked"], c["lost_kill9"],
               c["lost_near_term"] + c["lost_near_up"], c["lost_no_restart"]))
        print("  seq acknowledged twice: %d; seq delivered with two payloads: %d" %
              (c["seq_acked_twice"], c["seq_two_pushes"]))
        print("streams: %d sent (%.1f MiB): %d ok, %d aborted on purpose, sender ends: %s" %
              (c["streams_sent"], c["stream_bytes_sent"] / 2**20, c["send_ok"],
               c["send_aborted_on_purpose"],
               ", ".join("%s %d" % (k[5:], v) for k, v in sorted(c.items())
                         if k.startswith("send_") and k not in ("send_ok",
                                                                "send_aborted_on_purpose"))))
        print("  receptions: %d opened: %d ok and verified (%.1f MiB), %d unverified; %s" %
              (c["stream_receptions"], c["recv_ok"], c["stream_bytes_verified"] / 2**20,
               c["recv_ok_UNVERIFIED"],
               ", ".join("%s %d" % (k[5:], v) for k, v in sorted(c.items())
                         if k.startswith("recv_") and k not in ("recv_ok", "recv_ok_UNVERIFIED"))))
        errs = {k[4:]: v for k, v in c.items() if k.startswith("err_")}
        print("error replies: %s" % (", ".join("%s %d" % kv for kv in sorted(errs.items()))
                                       or "none"))
        tot = collections.Counter()
        for n in w.nodes:
            tot.update(n.totals)
        print("nodes (all incarnations): failovers %d, slow consumers dropped %d, rooms expired "
              "%d, forwarded %d, stream timeouts %d" %
              (tot["vroom_failovers_total"], tot["vroom_slow_consumer_disconnects_total"],
               tot["vroom_rooms_expired_total"], tot["vroom_forwarded_total"],
               tot["vroom_stream_timeouts_total"]))
        print("memory: before the load = incarnation 1 after the warm-up; after = the node's "
              "last incarnation %d s after the clients left; heap = live ASan heap (gdb)%s; "
              "criterion: %s within %d %%" % (a.settle, "; RSS read after malloc_trim(0)"
                                              if self.memory_check == "trim" else "",
                                              self.memory_check, round(tol * 100)))
        print("  node  RSS KiB before    peak   after  after/before | heap KiB before  after "
              "after/before | last incarnation")
        mem_ok = True
        for n in w.nodes:
            (b, hb), (af, ha) = self.rss0.get(n.name, (0, None)), self.rss1.get(n.name, (0, None))
            ratio = af / b if b and af else float("inf")
            hratio = ha / hb if hb and ha else None
            r_ = hratio if self.memory_check == "heap" else ratio  # rss, trim: RSS
            if r_ is None or r_ > 1 + tol:
                mem_ok = False
            st = n.started[-1][0] - self.t_load
            print("  %-4s  %14d  %6d  %6d  %12.3f | %15s  %5s  %12s | %d, %s" %
                  (n.name, b, n.rss_peak, af, ratio,
                   "-" if hb is None else "%.0f" % (hb / 1024),
                   "-" if ha is None else "%.0f" % (ha / 1024),
                   "-" if hratio is None else "%.3f" % hratio, n.inc,
                   "restarted at %.0f s of the load (RSS %d KiB once it had joined)" %
                   (st, n.started[-1][1] or 0) if n.inc > 1 else "never restarted"))
        if not mem_ok:
            w.fail("memory", "a node's %s after the load is over %d %% above its level before it"
                   % ("live heap" if self.memory_check == "heap" else "RSS", round(tol * 100)))
        elif self.memory_check == "heap" and any(
                self.rss1[k][0] > self.rss0[k][0] * (1 + tol) for k in self.rss0):
            print("  RSS stays above the level before the load while the live heap is back: "
                  "ASan's allocator keeps freed memory mapped (quarantine_size_mb=16)")
        print("exits after the final SIGTERM: %s" % self.exits)
        print("logs: %s" % self.tmp)
        if w.notes:
            print("notes (%d):" % len(w.notes))
            for s in w.notes[:40]:
                print("  " + s)
        if self.loss_examples:
            print("lost pushes (first %d):" % len(self.loss_examples))
            for s in self.loss_examples:
                print("  " + s)
        if w.failures:
            print("failures: %s" % dict(w.failures))
            for s in w.fail_msgs[:60]:
                print("  " + s)
        verdict = "PASS" if not w.failures else "FAIL"
        print("%s: soak of %g min, %d nodes, %d restarts, %d clients, %d pushes, %d streams" %
              (verdict, a.minutes, a.nodes, len(restarts), c["clients"], c["pushes_acked"],
               c["streams_sent"]), flush=True)
        return 0 if verdict == "PASS" else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10, help="load duration (default 10)")
    p.add_argument("--build", default="build-soak",
                   help="build directory (default build-soak; configured with ASan+UBSan "
                        "if missing)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--min-clients", type=int, default=20)
    p.add_argument("--max-clients", type=int, default=60)
    p.add_argument("--restart-every", type=int, default=60, help="seconds between restarts")
    p.add_argument("--downtime", type=float, default=3.0, help="seconds a restarted node is down")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--settle", type=int, default=20,
                   help="seconds between the end of the clients and the RSS reading")
    p.add_argument("--room-idle-timeout", type=int, default=20)
    p.add_argument("--max-streams", type=int, default=6, help="streams being sent at once")
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--memory-check", choices=("auto", "rss", "heap", "trim"), default="auto",
                   help="what must come back within the tolerance: RSS; the live heap of an "
                        "ASan build read with gdb; or (without ASan) RSS after glibc's "
                        "malloc_trim(0) called through gdb (auto: heap when possible, else rss)")
    p.add_argument("--heavy", action="store_true",
                   help="pushes up to 512 KiB in bursts of 16 and shorter pauses: more than "
                        "3 ASan nodes on 2 cores keep up with")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--hold", type=int, default=0,
                   help="seconds to keep the nodes up after the RSS reading (to inspect them)")
    a = p.parse_args()
    a.t0 = now()
    if not 2 <= a.nodes <= 9 or a.minutes <= 0 or a.min_clients > a.max_clients:
        p.error("bad --nodes, --minutes or client bounds")
    if a.seed is not None:
        random.seed(a.seed)
    global HEAVY
    HEAVY = a.heavy
    s = Soak(a)
    try:
        rc = s.run()
    except KeyboardInterrupt:
        rc = 130
    finally:
        for n in s.w.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
    sys.exit(rc)


if __name__ == "__main__":
    main()
