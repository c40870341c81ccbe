#!/usr/bin/python3
"""Byte streams on the wire: raw frames against ONE real vroomd.

Each case drives STREAM_OPEN/CHUNK/CLOSE/ABORT by hand and asserts the
documented reply (docs/protocol.md, "Byte streams"; codes in stream/wire.h),
what the stream's receivers see, and that nothing reaches anyone else. Every
case works in rooms of its own. At the start an owner creates one more room
that a bystander subscribes to; after every case the owner pushes and sends a
small stream with a checksum there, and the bystander must receive exactly
the DELIVER, STREAM_OPENED, both STREAM_DATAs and STREAM_END "ok", and
nothing else, so a case that wedges, crashes or leaks into other rooms fails
right there. The idle-timeout case runs its own node (--stream-idle-timeout
1). At the end the node is stopped with SIGTERM and must exit 0 with a
sanitizer-clean log.

XXH3-64 comes from libxxhash (the library vroomd hashes with) through
ctypes; without it the checksums are not compared and only deliberately
wrong ones are sent.
"""

import ctypes
import os
import re
import select
import threading
import time

from harness import (
    CREATE, DELIVER, ERROR, GRANT, OK, PING, PONG, PUSH, REMOVE, ROOM_CLOSED, SUBSCRIBE,
    E_BAD_REQUEST, E_FORBIDDEN, E_LIMIT, E_UNKNOWN_ROOM,
    Closed, Node, TestFailure, check, drain_bytes, frame_bytes, hello, recv_frame, run_cases, send_frame,
    split_frames,
)

STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE, STREAM_ABORT = 300, 301, 302, 303
STREAM_OPENED, STREAM_DATA, STREAM_END, STREAM_CREDIT = 310, 311, 312, 320
STREAM_REJOIN = 305
E_UNKNOWN_STREAM, E_STREAM_EXISTS, E_BAD_OFFSET, E_OVER_SIZE = 30, 31, 32, 33
E_CHUNK_TOO_LARGE, E_SIZE_MISMATCH, E_CHECKSUM, E_WINDOW = 34, 35, 36, 37

CHUNK_MAX = 4096
WINDOW = 65536
MAX_STREAMS = 4
STALLED_RCVBUF = 4096
IDLE_REASON = "no data within the stream idle timeout"

S = {}  # node, owner, bystander, room, counters


# ---------------------------------------------------------------- XXH3-64

def _load_xxh3():
    for name in ("libxxhash.so.0", "libxxhash.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.XXH3_64bits.restype = ctypes.c_uint64
        lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        return lib
    return None


_XXH = _load_xxh3()


def xxh3(data):
    """XXH3-64 (seed 0) of data, or None without libxxhash."""
    if _XXH is None:
        return None
    return _XXH.XXH3_64bits(bytes(data), len(data))


def wrong_sum(data):
    real = xxh3(data)
    return 0x0123456789ABCDEF if real is None else real ^ 1


# ---------------------------------------------------------------- a raw peer

def sid_of(v):
    """The stream id a stream frame is about, else None."""
    if v[0] == STREAM_OPENED:
        return v[3]
    if v[0] in (STREAM_DATA, STREAM_END, STREAM_CREDIT):
        return v[2]
    return None


class Peer:
    """A connection after HELLO. Frames read while waiting for something
    else are kept in `inbox`, in arrival order."""

    def __init__(self, node, identity, rcvbuf=None):
        self.identity = identity
        self.sock = node.connect(rcvbuf=rcvbuf)
        self.rid = 1000
        self.inbox = []
        self.welcome = hello(self.sock, identity)

    def send(self, type_, *fields):
        self.rid += 1
        send_frame(self.sock, [type_, self.rid] + list(fields))
        return self.rid

    def read(self, timeout=5.0):
        return recv_frame(self.sock, timeout)

    def poll(self, timeout):
        """The next frame if one starts arriving within timeout, else None."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        return self.read() if r else None

    def expect(self, pred, what, timeout=5.0):
        """The first frame (queued or new) matching pred; others are queued."""
        for i, v in enumerate(self.inbox):
            if pred(v):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                v = self.read(max(left, 0.0))
            except TimeoutError:
                raise TimeoutError("%s: no %s within %.1fs; queued: %s"
                                   % (self.identity, what, timeout, brief(self.inbox))) from None
            if pred(v):
                return v
            self.inbox.append(v)

    def reply(self, rid, timeout=5.0):
        return self.expect(lambda v: v[0] in (OK, ERROR, PONG) and v[1] == rid,
                           "reply to rid %d" % rid, timeout)

    def request(self, type_, *fields):
        return self.reply(self.send(type_, *fields))

    def ok(self, type_, *fields):
        v = self.request(type_, *fields)
        check(v[0] == OK, "%s: %d %s: expected OK, got %s" % (self.identity, type_,
                                                              brief([fields]), brief([v])))
        return v[2] if len(v) > 2 else None

    def error(self, code, type_, *fields):
        v = self.request(type_, *fields)
        check(v[0] == ERROR and v[2] == code,
              "%s: %d %s: expected error %d, got %s" % (self.identity, type_, brief([fields]),
                                                        code, brief([v])))
        return v

    def expect_error(self, code, rid, timeout=5.0):
        v = self.reply(rid, timeout)
        check(v[0] == ERROR and v[2] == code and isinstance(v[3], str),
              "%s: rid %d: expected error %d, got %s" % (self.identity, rid, code, brief([v])))
        return v

    def ping(self):
        """A round trip; returns the frames that came before the PONG."""
        rid = self.send(PING)
        before = []
        while True:
            v = self.read()
            if v[0] == PONG and v[1] == rid:
                return before
            before.append(v)

    def nothing_more(self, what="anything"):
        """Nothing is queued or pending for this peer (the PONG comes next)."""
        got = self.inbox + self.ping()
        self.inbox = []
        check(not got, "%s received %s it should not have: %s" % (self.identity, what, brief(got)))

    # -- rooms
    def create(self):
        return self.ok(CREATE)

    def subscribe(self, room, topics=None):
        if topics is None:
            self.ok(SUBSCRIBE, room)
        else:
            self.ok(SUBSCRIBE, room, topics)

    # -- streams
    def open(self, room, sid, topic="", name="", mime="", size=None, attrs=None, dests=None,
             ts=0):
        return self.send(STREAM_OPEN, room, sid, topic, name, mime, size,
                         {} if attrs is None else attrs, [] if dests is None else dests, ts)

    def open_ok(self, room, sid, **kw):
        v = self.reply(self.open(room, sid, **kw))
        check(v[0] == OK, "%s: open %s: expected OK, got %s" % (self.identity, sid, brief([v])))
        check(v[2] == WINDOW, "open %s: OK carries limit %r, not the window %d" % (sid, v[2], WINDOW))
        return v[2]

    def chunk(self, sid, offset, data):
        return self.send(STREAM_CHUNK, sid, offset, data)

    def close_stream(self, sid, reason="", attrs=None, checksum=None):
        return self.send(STREAM_CLOSE, sid, reason, {} if attrs is None else attrs, checksum)

    def abort(self, sid, reason):
        return self.send(STREAM_ABORT, sid, reason)

    def end_of(self, sid, timeout=5.0):
        return self.expect(lambda v: v[0] == STREAM_END and v[2] == sid, "STREAM_END of %s" % sid,
                           timeout)

    def drop_credit(self, sid):
        self.inbox = [v for v in self.inbox if not (v[0] == STREAM_CREDIT and v[2] == sid)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def brief(frames):
    """Frames for a message, long bins cut."""
    out = []
    for v in frames:
        out.append([("<%d bytes>" % len(x)) if isinstance(x, (bytes, bytearray)) and len(x) > 16
                    else x for x in v])
    s = repr(out)
    return s if len(s) < 600 else s[:600] + "..."


def receive_stream(p, sid, timeout=5.0):
    """OPENED, the DATAs and the END of one stream, in order: the next stream
    frames about sid that p receives. Returns (opened, [(offset, data)], end)."""
    is_ours = lambda v: sid_of(v) == sid and v[0] in (STREAM_OPENED, STREAM_DATA, STREAM_END)
    opened = p.expect(is_ours, "STREAM_OPENED of %s" % sid, timeout)
    check(opened[0] == STREAM_OPENED, "%s: first frame of %s is %s" % (p.identity, sid,
                                                                      brief([opened])))
    datas = []
    while True:
        v = p.expect(is_ours, "STREAM_DATA/END of %s" % sid, timeout)
        check(v[0] != STREAM_OPENED, "%s: second OPENED for %s" % (p.identity, sid))
        if v[0] == STREAM_END:
            return opened, datas, v
        check(v[1] == 0 and len(v) == 5, "%s: malformed DATA %s" % (p.identity, brief([v])))
        datas.append((v[3], v[4]))


def check_opened(v, room, sid, sender, topic="", name="", mime="", size=None, attrs=None,
                 dests=None, ts=0):
    want = [STREAM_OPENED, 0, room, sid, sender, topic, name, mime, size,
            {} if attrs is None else attrs, [] if dests is None else dests, ts]
    # An origin session id may follow (other nodes use it to skip the sender).
    check(v[:12] == want and len(v) <= 13 and all(isinstance(x, int) for x in v[12:]),
          "OPENED is %s, expected %s" % (brief([v]), brief([want])))


def check_data(datas, chunks):
    """DATAs carry exactly the chunks, in order, at consecutive offsets."""
    off, want = 0, []
    for c in chunks:
        want.append((off, c))
        off += len(c)
    check(datas == want, "DATA frames %s, expected %s" %
          ([(o, len(d)) for o, d in datas], [(o, len(d)) for o, d in want]))


def check_end(v, sid, status, reason=None, reason_prefix=None, nbytes=None, attrs=None,
              checksum="any"):
    check(len(v) == 8 and v[0] == STREAM_END and v[1] == 0 and v[2] == sid,
          "END frame %s" % brief([v]))
    check(v[3] == status, "END of %s has status %r, expected %r (reason %r)" %
          (sid, v[3], status, v[4]))
    if reason is not None:
        check(v[4] == reason, "END of %s has reason %r, expected %r" % (sid, v[4], reason))
    if reason_prefix is not None:
        check(isinstance(v[4], str) and v[4].startswith(reason_prefix),
              "END of %s has reason %r, expected it to start with %r" % (sid, v[4], reason_prefix))
    want_attrs = {} if attrs is None else attrs
    check(v[5] == want_attrs, "END of %s has attributes %r, expected %r" % (sid, v[5], want_attrs))
    if nbytes is not None:
        check(v[6] == nbytes, "END of %s counts %r bytes, expected %d" % (sid, v[6], nbytes))
    if status != "ok":
        check(v[7] is None, "END %s of %s has a checksum %r" % (status, sid, v[7]))
    elif checksum != "any" and checksum is not None:
        check(v[7] == checksum, "END of %s has checksum %r, expected %r" % (sid, v[7], checksum))


# ---------------------------------------------------------------- fixtures

def node():
    return S["node"]


def peer(identity, rcvbuf=None):
    p = Peer(node(), identity, rcvbuf=rcvbuf)
    S["peers"].append(p)
    return p


_ids = [0]


def new_sid(tag):
    _ids[0] += 1
    return "%s-%d" % (tag, _ids[0])


def scene(*receivers, topics=None):
    """A sender owning a fresh room and subscribed receivers (in order)."""
    snd = peer("alice")
    room = snd.create()
    rx = []
    for name in receivers:
        p = peer(name)
        p.subscribe(room, topics.get(name) if topics else None)
        rx.append(p)
    return snd, room, rx


def failed_stream(snd, rx, sid, code, rid, prefix, accepted):
    """After a failing request (rid): the sender gets ERROR code, then END
    error; every receiver gets the stream's OPENED, the accepted chunks and
    END error with a reason starting with the error's name; the id is free
    again. Returns the ERROR frame."""
    err = snd.expect_error(code, rid)
    n = sum(len(c) for c in accepted)
    check_end(snd.end_of(sid), sid, "error", reason_prefix=prefix + ": ", nbytes=n)
    for p in rx:
        opened, datas, end = receive_stream(p, sid)
        check_data(datas, accepted)
        check_end(end, sid, "error", reason_prefix=prefix + ": ", nbytes=n)
    snd.drop_credit(sid)
    snd.error(E_UNKNOWN_STREAM, STREAM_CHUNK, sid, n, b"x")
    return err


# ---------------------------------------------------------------- cases

def happy_path_with_checksum():
    snd, room, (bob,) = scene("bob")
    sid = new_sid("ok")
    chunks = [os.urandom(CHUNK_MAX), os.urandom(100), b"", os.urandom(1)]
    data = b"".join(chunks)
    snd.open_ok(room, sid, topic="t", name="f.bin", mime="application/x-test", size=len(data),
                attrs={"k": "v"}, ts=12345)
    off = 0
    for c in chunks:
        snd.chunk(sid, off, c)
        off += len(c)
    total = snd.ok(STREAM_CLOSE, sid, "", {"done": "yes"}, xxh3(data))
    check(total == len(data), "CLOSE OK carries %r, not %d" % (total, len(data)))
    opened, datas, end = receive_stream(bob, sid)
    check_opened(opened, room, sid, "alice", "t", "f.bin", "application/x-test", len(data),
                 {"k": "v"}, [], 12345)
    check_data(datas, chunks)
    check_end(end, sid, "ok", reason="", nbytes=len(data), attrs={"done": "yes"},
              checksum=xxh3(data))
    check(isinstance(end[7], int), "END ok without a checksum: %s" % brief([end]))
    bob.nothing_more()
    snd.drop_credit(sid)
    snd.nothing_more("frames after its OK")


def chunk_unknown_stream():
    p = peer("alice")
    for sid in ("never-opened", "x" * 64):
        v = p.error(E_UNKNOWN_STREAM, STREAM_CHUNK, sid, 0, b"data")
        check("no open stream" in v[3], "message %r" % v[3])
    p.error(E_UNKNOWN_STREAM, STREAM_CLOSE, "never-opened", "", {}, None)
    p.error(E_UNKNOWN_STREAM, STREAM_ABORT, "never-opened", "why")
    p.nothing_more()


def chunk_for_another_clients_stream():
    snd, room, (bob,) = scene("bob")
    sid = new_sid("theirs")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"first")
    # Mallory (another identity) and a second connection of alice both get
    # exactly what a never-opened id gets: the stream's existence leaks not.
    unknown = peer("mallory").error(E_UNKNOWN_STREAM, STREAM_CHUNK, "no-such-id", 5, b"x")[3]
    for other in (peer("mallory"), peer("alice")):
        for off in (0, 5):
            v = other.error(E_UNKNOWN_STREAM, STREAM_CHUNK, sid, off, b"injected")
            check(v[3] == unknown, "message %r differs from the unknown id's %r" % (v[3], unknown))
        other.error(E_UNKNOWN_STREAM, STREAM_CLOSE, sid, "", {}, None)
        other.error(E_UNKNOWN_STREAM, STREAM_CLOSE, sid, "hijack", {}, None)
        other.error(E_UNKNOWN_STREAM, STREAM_ABORT, sid, "hijack")
        other.nothing_more()
    # The stream goes on untouched.
    snd.chunk(sid, 5, b"second")
    check(snd.ok(STREAM_CLOSE, sid, "", {}, None) == 11, "close count")
    opened, datas, end = receive_stream(bob, sid)
    check_data(datas, [b"first", b"second"])
    check_end(end, sid, "ok", reason="", nbytes=11, checksum=xxh3(b"firstsecond"))
    bob.nothing_more()


def open_twice():
    snd, room, (bob,) = scene("bob")
    sid = new_sid("dup")
    snd.open_ok(room, sid)
    snd.error(E_STREAM_EXISTS, STREAM_OPEN, room, sid, "", "", "", None, {}, [], 0)
    # ids are node-wide: another connection, another room.
    other = peer("zed")
    room2 = other.create()
    other.error(E_STREAM_EXISTS, STREAM_OPEN, room2, sid, "", "", "", None, {}, [], 0)
    # The first stream is unharmed.
    snd.chunk(sid, 0, b"abc")
    snd.ok(STREAM_CLOSE, sid, "", {}, None)
    opened, datas, end = receive_stream(bob, sid)
    check_data(datas, [b"abc"])
    check_end(end, sid, "ok", nbytes=3)
    bob.nothing_more()
    # Ended, the id is free again.
    other.open_ok(room2, sid)
    other.ok(STREAM_ABORT, sid, "done")


def bad_offset():
    snd, room, rx = scene("bob", "carol")
    sid = new_sid("off")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"a" * 100)
    for off in (50, 101, 2 ** 64 - 1):
        if off != 50:
            snd.open_ok(room, sid)
            snd.chunk(sid, 0, b"a" * 100)
        v = failed_stream(snd, rx, sid, E_BAD_OFFSET, snd.chunk(sid, off, b"b" * 10), "bad_offset",
                          [b"a" * 100])
        check("expected 100" in v[3], "message %r" % v[3])
    # Offset 1 as the first chunk.
    snd.open_ok(room, sid)
    failed_stream(snd, rx, sid, E_BAD_OFFSET, snd.chunk(sid, 1, b"x"), "bad_offset", [])
    for p in rx:
        p.nothing_more()


def over_size():
    snd, room, rx = scene("bob")
    sid = new_sid("big")
    snd.open_ok(room, sid, size=100)
    snd.chunk(sid, 0, b"x" * 60)
    v = failed_stream(snd, rx, sid, E_OVER_SIZE, snd.chunk(sid, 60, b"y" * 60), "over_size",
                      [b"x" * 60])
    check("120" in v[3] and "100" in v[3], "message %r" % v[3])
    # Exactly the declared size is fine; size 0 takes no byte.
    sid2 = new_sid("big")
    snd.open_ok(room, sid2, size=100)
    snd.chunk(sid2, 0, b"x" * 60)
    snd.chunk(sid2, 60, b"y" * 40)
    check(snd.ok(STREAM_CLOSE, sid2, "", {}, None) == 100, "close count")
    check_end(receive_stream(rx[0], sid2)[2], sid2, "ok", nbytes=100)
    sid3 = new_sid("big")
    snd.open_ok(room, sid3, size=0)
    failed_stream(snd, rx, sid3, E_OVER_SIZE, snd.chunk(sid3, 0, b"z"), "over_size", [])
    rx[0].nothing_more()


def chunk_too_large():
    snd, room, rx = scene("bob")
    sid = new_sid("fat")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"m" * CHUNK_MAX)  # at the limit: accepted
    v = failed_stream(snd, rx, sid, E_CHUNK_TOO_LARGE,
                      snd.chunk(sid, CHUNK_MAX, b"n" * (CHUNK_MAX + 1)), "chunk_too_large",
                      [b"m" * CHUNK_MAX])
    check(str(CHUNK_MAX) in v[3], "message %r" % v[3])
    # Checked before the offset: a too large chunk at a wrong offset is 34.
    snd.open_ok(room, sid)
    failed_stream(snd, rx, sid, E_CHUNK_TOO_LARGE, snd.chunk(sid, 7, b"n" * (CHUNK_MAX + 1)),
                  "chunk_too_large", [])
    rx[0].nothing_more()


def size_mismatch():
    snd, room, rx = scene("bob", "carol")
    sid = new_sid("short")
    snd.open_ok(room, sid, size=100)
    snd.chunk(sid, 0, b"q" * 60)
    v = failed_stream(snd, rx, sid, E_SIZE_MISMATCH, snd.close_stream(sid), "size_mismatch",
                      [b"q" * 60])
    check("100" in v[3] and "60" in v[3], "message %r" % v[3])
    snd.error(E_UNKNOWN_STREAM, STREAM_CLOSE, sid, "", {}, None)
    for p in rx:
        p.nothing_more()


def checksum_mismatch():
    snd, room, rx = scene("bob", "carol")
    sid = new_sid("sum")
    data = os.urandom(3000)
    snd.open_ok(room, sid, size=len(data))
    snd.chunk(sid, 0, data)
    v = failed_stream(snd, rx, sid, E_CHECKSUM, snd.close_stream(sid, checksum=wrong_sum(data)),
                      "checksum_mismatch", [data])
    if xxh3(data) is not None:
        check("%016x" % xxh3(data) in v[3], "message %r does not name the real XXH3" % v[3])
    # The right checksum passes (nil is tested by the other cases).
    if xxh3(data) is not None:
        snd.open_ok(room, sid, size=len(data))
        snd.chunk(sid, 0, data)
        snd.ok(STREAM_CLOSE, sid, "", {}, xxh3(data))
        for p in rx:
            opened, datas, end = receive_stream(p, sid)
            check_end(end, sid, "ok", nbytes=len(data), checksum=xxh3(data))
    for p in rx:
        p.nothing_more()


def beyond_the_window():
    # The only receiver never reads and has a tiny receive buffer, so the
    # node's socket buffers fill, bytes stay in flight and the limit stops
    # moving. The sender ignores credit: some chunk must end past its limit.
    # Batches of chunks then a PING: every chunk before the failing one got
    # no reply, every one after it unknown_stream.
    snd, room, _ = scene()
    stalled = peer("stalled", rcvbuf=STALLED_RCVBUF)
    stalled.subscribe(room)
    sid = new_sid("win")
    snd.open_ok(room, sid)
    off, fail, limit_seen, rids = 0, None, WINDOW, {}
    while fail is None and off < (64 << 20):
        for _ in range(32):
            rids[snd.chunk(sid, off, b"w" * CHUNK_MAX)] = off
            off += CHUNK_MAX
        for v in snd.ping():
            if v[0] == ERROR:
                fail = fail or v
                check(v is fail or v[2] == E_UNKNOWN_STREAM, "after the failure: %s" % brief([v]))
            elif v[0] == STREAM_CREDIT:
                limit_seen = max(limit_seen, v[4])
            else:
                snd.inbox.append(v)
    check(fail is not None, "no error after %d MiB sent against a window of %d bytes" %
          (off >> 20, WINDOW))
    check(fail[2] == E_WINDOW, "got %s" % brief([fail]))
    m = re.search(r"ends at (\d+), past the granted window (\d+)", fail[3])
    check(m, "message %r" % fail[3])
    at = rids[fail[1]]
    end_at, limit = int(m.group(1)), int(m.group(2))
    check(end_at == at + CHUNK_MAX and end_at > limit >= WINDOW,
          "the chunk at %d failed with limit %d" % (at, limit))
    check_end(snd.end_of(sid), sid, "error", reason_prefix="window: ", nbytes=at)
    print("     window error at offset %d (limit %d; %d KiB in the node's socket buffers)" %
          (at, limit, (limit - WINDOW) >> 10))
    # The stalled receiver, reading now, gets every accepted byte then END.
    opened, datas, end = receive_stream(stalled, sid, timeout=10)
    check(sum(len(d) for _, d in datas) == at, "stalled got %d bytes of %d" %
          (sum(len(d) for _, d in datas), at))
    check_end(end, sid, "error", reason_prefix="window: ", nbytes=at)
    stalled.nothing_more()


def stall(snd, sid, limit, chunk=CHUNK_MAX):
    """Sends within the limit until it stops moving (no CREDIT for 0.5 s):
    the receivers' outputs are full. Returns the offset reached."""
    off = 0
    while off < (64 << 20):
        while off < limit:
            n = min(chunk, limit - off)
            snd.chunk(sid, off, b"c" * n)
            off += n
        v = snd.poll(0.5)
        if v is None:
            return off
        check(v[0] == STREAM_CREDIT and v[2] == sid, "sender got %s" % brief([v]))
        limit = v[4]
    raise TestFailure("the limit kept moving for 64 MiB with a receiver that does not read")


def closing_scene(tag):
    snd, room, _ = scene()
    stalled = peer("stalled", rcvbuf=STALLED_RCVBUF)
    stalled.subscribe(room)
    sid = new_sid(tag)
    off = stall(snd, sid, snd.open_ok(room, sid))
    rid = snd.close_stream(sid, attrs={"k": "v"})
    before = snd.ping()
    check(not before, "a close with %d bytes in flight got %s at once" % (off, brief(before)))
    return snd, room, stalled, sid, off, rid


def close_waits_for_last_bytes():
    snd, room, stalled, sid, off, rid = closing_scene("closing")
    snd.error(E_BAD_REQUEST, STREAM_CHUNK, sid, off, b"more")
    snd.error(E_BAD_REQUEST, STREAM_CLOSE, sid, "", {}, None)
    snd.error(E_BAD_REQUEST, STREAM_ABORT, sid, "too late")
    other = peer("alice")
    other.error(E_STREAM_EXISTS, STREAM_OPEN, room, sid, "", "", "", None, {}, [], 0)
    check(not snd.inbox, "sender got %s while closing" % brief(snd.inbox))
    opened, datas, end = receive_stream(stalled, sid, timeout=10)
    check(sum(len(d) for _, d in datas) == off, "stalled got %d of %d bytes" %
          (sum(len(d) for _, d in datas), off))
    check_end(end, sid, "ok", nbytes=off, attrs={"k": "v"})
    v = snd.reply(rid, timeout=10)
    check(v[0] == OK and v[2] == off, "the close got %s, not OK %d" % (brief([v]), off))
    snd.nothing_more()
    other.open_ok(room, sid)
    other.ok(STREAM_ABORT, sid, "x")
    print("     %d KiB sent, the last of them still in flight at the close" % (off >> 10))


def close_stands_when_sender_leaves_or_room_closes():
    # A successful close stands once accepted: the receivers keep their one
    # END ok, and the sender, if still there, gets the close's OK at once.
    snd, room, stalled, sid, off, rid = closing_scene("closing")
    snd.close()
    opened, datas, end = receive_stream(stalled, sid, timeout=10)
    check_end(end, sid, "ok", nbytes=off, attrs={"k": "v"})
    stalled.nothing_more("a second END")

    snd, room, stalled, sid, off, rid = closing_scene("closing")
    v = snd.request(REMOVE, room)
    check(v[0] == OK, "REMOVE got %s" % brief([v]))
    v = snd.reply(rid)
    check(v[0] == OK and v[2] == off, "the close got %s, not OK %d" % (brief([v]), off))
    check(not snd.inbox, "the sender got %s besides the OKs" % brief(snd.inbox))
    snd.nothing_more()
    opened, datas, end = receive_stream(stalled, sid, timeout=10)
    check_end(end, sid, "ok", nbytes=off, attrs={"k": "v"})
    v = stalled.read()
    check(v == [ROOM_CLOSED, 0, room, "removed"], "then %s, not ROOM_CLOSED" % brief([v]))
    stalled.nothing_more("a second END")


def open_forbidden():
    snd, room, (bob,) = scene("bob")
    carol = peer("carol")
    sid = new_sid("nope")
    carol.error(E_FORBIDDEN, STREAM_OPEN, room, sid, "", "", "", None, {}, [], 0)
    bob.nothing_more()  # no OPENED went out
    snd.ok(GRANT, room, "carol")
    carol.open_ok(room, sid)  # the id was not taken by the refused open
    carol.ok(STREAM_ABORT, sid, "bye")
    check_end(bob.end_of(sid), sid, "aborted", reason="bye", nbytes=0)


def open_unknown_room():
    p = peer("alice")
    for room in ("AAAAAAAAAAAAAAAA", "x", "y" * 64):
        p.error(E_UNKNOWN_ROOM, STREAM_OPEN, room, new_sid("lost"), "", "", "", None, {}, [], 0)
    p.nothing_more()


def open_bad_fields():
    snd, room, (bob,) = scene("bob")
    sid = new_sid("bad")
    attrs32 = {"k%02d" % i: "v" for i in range(32)}
    attrs33 = {"k%02d" % i: "v" for i in range(33)}
    dests64 = ["d%d" % i for i in range(64)]
    dests65 = ["d%d" % i for i in range(65)]
    table = [
        # (field overrides for [room, sid, topic, name, mime, size, attrs, dests, ts], why)
        ({6: attrs33}, "33 attributes"),
        ({7: dests65}, "65 destinations"),
        ({6: {"k": 1}}, "an integer attribute value"),
        ({6: {"k": None}}, "a nil attribute value"),
        ({6: {"k": b"bin"}}, "a bin attribute value"),
        ({6: {1: "v"}}, "an integer attribute key"),
        ({6: {"k": "v" * 1025}}, "an attribute value of 1025 bytes"),
        ({6: {"k" * 1025: "v"}}, "an attribute key of 1025 bytes"),
        ({7: [1]}, "an integer destination"),
        ({7: ["x" * 129]}, "a destination of 129 bytes"),
        ({1: ""}, "an empty stream id"),
        ({1: "has space"}, "a stream id with a space"),
        ({1: "x" * 65}, "a stream id of 65 bytes"),
        ({1: "tab\there"}, "a stream id with a control character"),
        ({2: "t" * 129}, "a topic of 129 bytes"),
        ({3: "n" * 256}, "a name of 256 bytes"),
        ({3: "new\nline"}, "a name with a newline"),
        ({4: "m" * 128}, "a mime type of 128 bytes"),
        ({5: -1}, "a negative size"),
        ({5: "100"}, "a size that is a string"),
        ({5: 1.5}, "a size that is a float"),
    ]
    for over, why in table:
        f = [room, sid, "", "", "", None, {}, [], 0]
        for i, val in over.items():
            f[i] = val
        v = snd.request(STREAM_OPEN, *f)
        check(v[0] == ERROR and v[2] == E_BAD_REQUEST,
              "open with %s: expected error 24, got %s" % (why, brief([v])))
    bob.nothing_more("an OPENED for a refused open")
    # The bounds themselves are accepted, and the id was never taken.
    snd.open_ok(room, sid, topic="t" * 128, name="n" * 255, mime="m" * 127, size=2 ** 63 - 1,
                attrs=attrs32, dests=dests64 + [], ts=2 ** 64 - 1)
    snd.ok(STREAM_ABORT, sid, "bounds ok")
    bob.nothing_more("the frames of a stream for 64 other destinations")


def max_streams():
    snd, room, (bob,) = scene("bob")
    sids = [new_sid("many") for _ in range(MAX_STREAMS + 1)]
    for sid in sids[:MAX_STREAMS]:
        snd.open_ok(room, sid)
    v = snd.error(E_LIMIT, STREAM_OPEN, room, sids[MAX_STREAMS], "", "", "", None, {}, [], 0)
    check("max_streams" in v[3], "message %r" % v[3])
    # Per connection: another one may still open.
    other = peer("alice")
    other.open_ok(room, new_sid("other"))
    # Ending one frees a slot.
    snd.ok(STREAM_CLOSE, sids[0], "", {}, None)
    snd.open_ok(room, sids[MAX_STREAMS])
    for sid in sids[1:]:
        snd.ok(STREAM_ABORT, sid, "cleanup")


def dests_only_bob():
    snd, room, (bob, carol) = scene("bob", "carol")
    sid = new_sid("private")
    chunks = [os.urandom(CHUNK_MAX) for _ in range(3)] + [os.urandom(777)]
    data = b"".join(chunks)
    snd.open_ok(room, sid, name="secret.bin", size=len(data), dests=["bob"])
    off = 0
    for c in chunks:
        snd.chunk(sid, off, c)
        off += len(c)
    snd.ok(STREAM_CLOSE, sid, "", {"a": "b"}, xxh3(data))
    opened, datas, end = receive_stream(bob, sid)
    check_opened(opened, room, sid, "alice", name="secret.bin", size=len(data), dests=["bob"])
    check_data(datas, chunks)
    check_end(end, sid, "ok", nbytes=len(data), attrs={"a": "b"}, checksum=xxh3(data))
    bob.nothing_more()
    # Carol reads every byte that reaches her for a while.
    raw, how = drain_bytes(carol.sock, timeout=1.0)
    check(how == "timeout", "carol's connection ended (%s)" % how)
    frames, rest = split_frames(raw)
    check(rest == 0, "carol got a partial frame")
    leaked = [f for f in frames if f[0] in (STREAM_OPENED, STREAM_DATA, STREAM_END)]
    check(not leaked, "carol got stream frames: %s" % brief(leaked))
    check(sid.encode() not in raw, "carol's bytes name the stream id")
    for i in range(0, len(data) - 16, 16):
        check(data[i:i + 16] not in raw, "carol's bytes hold payload bytes %d-%d" % (i, i + 16))
    check(not frames, "carol got frames: %s" % brief(frames))
    # ... and she was listening all along.
    seq = snd.ok(PUSH, room, 0, b"for everyone")
    v = carol.read()
    check(v[0] == DELIVER and v[3] == seq and v[6] == b"for everyone", "carol got %s" % brief([v]))
    check(bob.read()[0] == DELIVER, "bob missed the push")
    print("     carol read %d bytes in 1 s: no frame of %s, none of its %d payload bytes" %
          (len(raw), sid, len(data)))


def topics_filter():
    snd, room, (sub_a, sub_all, sub_ab) = scene(
        "suba", "suball", "subab", topics={"suba": ["a"], "subab": ["a", "b"]})
    sid_b, sid_a, sid_n = new_sid("topic-b"), new_sid("topic-a"), new_sid("no-topic")
    for sid, topic, data in ((sid_b, "b", b"B" * 500), (sid_a, "a", b"A" * 300),
                             (sid_n, "", b"N" * 10)):
        snd.open_ok(room, sid, topic=topic)
        snd.chunk(sid, 0, data)
        snd.ok(STREAM_CLOSE, sid, "", {}, None)
    # sub_a: only the "a" stream, nothing before it, nothing after it.
    opened, datas, end = receive_stream(sub_a, sid_a)
    check(opened[5] == "a", "topic %r" % opened[5])
    check_data(datas, [b"A" * 300])
    check_end(end, sid_a, "ok", nbytes=300)
    check(not sub_a.inbox, "suba got frames before the 'a' stream: %s" % brief(sub_a.inbox))
    sub_a.nothing_more("frames of other topics")
    for sid in (sid_b, sid_a, sid_n):
        check_end(receive_stream(sub_all, sid)[2], sid, "ok")
    sub_all.nothing_more()
    for sid in (sid_b, sid_a):
        check_end(receive_stream(sub_ab, sid)[2], sid, "ok")
    sub_ab.nothing_more("the frames of a stream with the empty topic")
    # Subscribing again replaces the topics for streams opened from then
    # on; a stream already open to the subscriber goes on.
    sid_a2 = new_sid("topic-a")
    snd.open_ok(room, sid_a2, topic="a")
    snd.chunk(sid_a2, 0, b"before")
    snd.ping()
    sub_a.subscribe(room, ["b"])
    sid_a3, sid_b2 = new_sid("topic-a"), new_sid("topic-b")
    for sid, topic in ((sid_a3, "a"), (sid_b2, "b")):
        snd.open_ok(room, sid, topic=topic)
        snd.ok(STREAM_CLOSE, sid, "", {}, None)
    snd.chunk(sid_a2, 6, b"after")
    snd.ok(STREAM_CLOSE, sid_a2, "", {}, None)
    check_end(receive_stream(sub_a, sid_b2)[2], sid_b2, "ok", nbytes=0)
    opened, datas, end = receive_stream(sub_a, sid_a2)
    check_data(datas, [b"before", b"after"])
    check_end(end, sid_a2, "ok", nbytes=11)
    check(not [v for v in sub_a.inbox if sid_of(v) == sid_a3],
          "suba, now on topic b, got a new topic a stream: %s" % brief(sub_a.inbox))


def late_subscriber():
    snd, room, (early,) = scene("early")
    sid = new_sid("late")
    snd.open_ok(room, sid, size=8)
    late = peer("late")
    late.subscribe(room)
    snd.chunk(sid, 0, b"1234")
    snd.chunk(sid, 4, b"5678")
    snd.ok(STREAM_CLOSE, sid, "", {}, None)
    opened, datas, end = receive_stream(early, sid)
    check_data(datas, [b"1234", b"5678"])
    check_end(end, sid, "ok", nbytes=8)
    late.nothing_more("frames of a stream opened before it subscribed")
    seq = snd.ok(PUSH, room, 0, b"hi")
    v = late.read()
    check(v[0] == DELIVER and v[3] == seq, "late got %s" % brief([v]))
    # The next stream reaches it.
    sid2 = new_sid("late")
    snd.open_ok(room, sid2)
    snd.ok(STREAM_ABORT, sid2, "x")
    opened, datas, end = receive_stream(late, sid2)
    check_end(end, sid2, "aborted", reason="x", nbytes=0)


def rejoin():
    """STREAM_REJOIN on one node (no failover: nothing is kept below the
    offset): its checks in order, then a receiver that takes the stream up
    at the node's offset gets the rest and the END, no OPENED."""
    snd, room, (early,) = scene("early")
    sid = new_sid("rejoin")
    snd.open_ok(room, sid, size=8)
    late = peer("late")
    late.error(E_UNKNOWN_ROOM, STREAM_REJOIN, "nosuchroom000000", sid, 0)
    late.error(E_BAD_REQUEST, STREAM_REJOIN, room, sid, 0)  # not subscribed
    late.subscribe(room)
    late.error(E_UNKNOWN_STREAM, STREAM_REJOIN, room, "nope", 0)
    snd.subscribe(room)
    snd.error(E_UNKNOWN_STREAM, STREAM_REJOIN, room, sid, 0)  # its own
    snd.chunk(sid, 0, b"1234")
    snd.ping()
    late.error(E_BAD_OFFSET, STREAM_REJOIN, room, sid, 0)  # not kept
    check(late.ok(STREAM_REJOIN, room, sid, 4) == 4, "the node's offset")
    late.error(E_BAD_REQUEST, STREAM_REJOIN, room, sid, 4)  # receives it already
    snd.chunk(sid, 4, b"5678")
    snd.ok(STREAM_CLOSE, sid, "", {}, None)
    opened, datas, end = receive_stream(early, sid)
    check_data(datas, [b"1234", b"5678"])
    is_ours = lambda v: sid_of(v) == sid and v[0] in (STREAM_OPENED, STREAM_DATA, STREAM_END)
    v = late.expect(is_ours, "STREAM_DATA of %s" % sid)
    check(v[0] == STREAM_DATA and v[3] == 4 and v[4] == b"5678", "late got %s" % brief([v]))
    check_end(late.expect(is_ours, "STREAM_END of %s" % sid), sid, "ok", nbytes=8)
    # destinations: a stream for bob only is not carol's to take up
    carol = peer("carol")
    carol.subscribe(room)
    sid2 = new_sid("rejoin")
    snd.open_ok(room, sid2, dests=["bob"])
    carol.error(E_UNKNOWN_STREAM, STREAM_REJOIN, room, sid2, 0)
    snd.ok(STREAM_ABORT, sid2, "x")
    carol.nothing_more("frames of a stream for bob")


def credit():
    # 16 windows through a receiver that reads as it comes; the sender
    # keeps within the limit the node tells it.
    snd, room, (bob,) = scene("bob")
    sid = new_sid("credit")
    total = 16 * WINDOW + 123
    payload = os.urandom(total)
    got = {"bytes": 0, "end": None, "err": None}

    def reader():
        try:
            opened, datas, end = receive_stream(bob, sid, timeout=20)
            got["bytes"] = b"".join(d for _, d in datas)
            got["end"] = end
        except Exception as e:
            got["err"] = "%s: %s" % (type(e).__name__, e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    limit = snd.open_ok(room, sid, size=total)
    off, credits, last_acked, last_limit = 0, [], 0, limit
    deadline = time.monotonic() + 30
    while off < total:
        check(time.monotonic() < deadline, "stuck at %d of %d, limit %d" % (off, total, limit))
        n = min(CHUNK_MAX, total - off, limit - off)
        if n > 0:
            snd.chunk(sid, off, payload[off:off + n])
            off += n
            continue
        v = snd.read(timeout=10)
        check(v[0] == STREAM_CREDIT and v[2] == sid, "sender got %s while waiting for credit"
              % brief([v]))
        credits.append(v)
        acked, lim = v[3], v[4]
        check(acked <= off, "credit acks %d bytes, only %d sent" % (acked, off))
        check(acked >= last_acked and lim > last_limit, "credit went back: %s after acked %d "
              "limit %d" % (brief([v]), last_acked, last_limit))
        check(lim == acked + WINDOW, "limit %d is not acked %d + window %d" % (lim, acked, WINDOW))
        last_acked, last_limit, limit = acked, lim, lim
    rid = snd.close_stream(sid, checksum=xxh3(payload))
    while True:
        v = snd.read(timeout=10)
        if v[0] == STREAM_CREDIT:
            check(v[3] <= total and v[3] >= last_acked and v[4] == v[3] + WINDOW, "credit %s"
                  % brief([v]))
            credits.append(v)
            last_acked = v[3]
            continue
        check(v[0] == OK and v[1] == rid and v[2] == total, "close got %s" % brief([v]))
        break
    t.join(20)
    check(got["err"] is None, "bob: %s" % got["err"])
    check(got["bytes"] == payload, "bob got %d bytes, not the %d sent" % (len(got["bytes"]), total))
    check_end(got["end"], sid, "ok", nbytes=total, checksum=xxh3(payload))
    check(len(credits) >= 4, "only %d CREDIT frames for %d windows" % (len(credits), total // WINDOW))
    print("     %d bytes, %d CREDIT frames, last acked %d" % (total, len(credits), last_acked))


def abort_and_close_with_reason():
    snd, room, (bob,) = scene("bob")
    sid = new_sid("abort")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"partial")
    check(snd.ok(STREAM_ABORT, sid, "changed my mind") is None, "ABORT OK is not nil")
    opened, datas, end = receive_stream(bob, sid)
    check_end(end, sid, "aborted", reason="changed my mind", nbytes=7)
    sid2 = new_sid("abort")
    snd.open_ok(room, sid2)
    check(snd.ok(STREAM_CLOSE, sid2, "r" * 300, {"x": "y"}, 5) is None, "OK is not nil")
    opened, datas, end = receive_stream(bob, sid2)
    check_end(end, sid2, "aborted", reason="r" * 255, nbytes=0)
    snd.drop_credit(sid)
    snd.drop_credit(sid2)
    snd.nothing_more("an END for its own abort")
    bob.nothing_more()


def sender_disconnects():
    snd, room, rx = scene("bob", "carol")
    sid = new_sid("gone")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"z" * 1000)
    snd.ping()
    snd.close()
    for p in rx:
        opened, datas, end = receive_stream(p, sid)
        check_end(end, sid, "aborted", reason="sender disconnected", nbytes=1000)
        p.nothing_more()
    # The id is free again; the room lives on (its owner left, not removed).
    other = peer("alice")
    other.open_ok(room, sid)
    other.ok(STREAM_ABORT, sid, "x")


def idle_timeout():
    n = Node("--stream-idle-timeout", 1, "--chunk-max", CHUNK_MAX, "--stream-window", WINDOW,
             name="streams-idle")
    try:
        snd = Peer(n, "alice")
        room = snd.create()
        bob = Peer(n, "bob")
        bob.subscribe(room)
        # A stream that sends every 0.3 s for 2 s does not time out.
        busy = new_sid("busy")
        snd.open_ok(room, busy)
        sid = new_sid("idle")
        snd.open_ok(room, sid)
        snd.chunk(sid, 0, b"only chunk")
        t0 = time.monotonic()
        off = 0
        while time.monotonic() - t0 < 2.0:
            snd.chunk(busy, off, b"tick")
            off += 4
            time.sleep(0.3)
        end = bob.end_of(sid, timeout=5)
        dt = time.monotonic() - t0
        check_end(end, sid, "timeout", reason=IDLE_REASON, nbytes=10)
        check_end(snd.end_of(sid), sid, "timeout", reason=IDLE_REASON, nbytes=10)
        check(not [v for v in bob.inbox if v[0] == STREAM_END and v[2] == busy],
              "the busy stream timed out too")
        snd.error(E_UNKNOWN_STREAM, STREAM_CHUNK, sid, 10, b"late")
        check(snd.ok(STREAM_CLOSE, busy, "", {}, None) == off, "busy close count")
        check_end(bob.end_of(busy), busy, "ok", nbytes=off)
        # The timing: the idle END came after ~1 s of silence, not before.
        idle = new_sid("idle")
        snd.open_ok(room, idle)
        t2 = time.monotonic()
        end = bob.end_of(idle, timeout=5)
        waited = time.monotonic() - t2
        check_end(end, idle, "timeout", reason=IDLE_REASON, nbytes=0)
        check(0.9 <= waited < 5.0, "a silent stream ended after %.2fs (timeout 1 s)" % waited)
        print("     first END after %.2fs of the busy loop, a silent stream's after %.2fs" %
              (dt, waited))
        snd.close()
        bob.close()
    finally:
        n.stop()


def room_removed():
    snd, room, rx = scene("bob", "carol")
    sid = new_sid("rm")
    snd.open_ok(room, sid)
    snd.chunk(sid, 0, b"before the end")
    snd.ok(REMOVE, room)
    for p in rx:
        opened, datas, end = receive_stream(p, sid)
        check_end(end, sid, "aborted", reason="room closed", nbytes=14)
        v = p.read()
        check(v == [ROOM_CLOSED, 0, room, "removed"], "%s got %s after the END, not ROOM_CLOSED"
              % (p.identity, brief([v])))
        p.nothing_more()
    check_end(snd.end_of(sid), sid, "aborted", reason="room closed", nbytes=14)
    snd.error(E_UNKNOWN_STREAM, STREAM_CHUNK, sid, 14, b"after")
    snd.error(E_UNKNOWN_ROOM, STREAM_OPEN, room, new_sid("rm"), "", "", "", None, {}, [], 0)


# A sender that never reads is a slow consumer like any other (max_pending
# counts replies too): when a reply or an END to it crosses max_pending, the
# node drops it, ending its streams, and must go on. Each case runs its own
# node with small limits, so that a crash stays there.
SMALL = ("--frame-max", 2048, "--chunk-max", 1024, "--max-pending", 4104, "--stream-window", 4096)


def node_alive(n):
    """Fails with the sanitizer's summary if the node died."""
    if n.alive():
        return
    lines = n.log().splitlines()
    at = [i for i, l in enumerate(lines) if "ERROR: AddressSanitizer" in l]
    raise TestFailure("vroomd died (exit %s)%s" % (
        n.proc.poll(), (":\n" + "\n".join(lines[at[0]:at[0] + 14])) if at else ""))


def drops(n, who):
    return n.log().count("(%s): slow consumer" % who)


def expect_dropped_and_alive(n, who, sock, before=0):
    """The node lives on, dropped `who` as a slow consumer, closed its
    socket, and serves others."""
    deadline = time.monotonic() + 5
    while n.alive() and drops(n, who) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a sanitizer report takes a while to print before the exit
    node_alive(n)
    check(drops(n, who) > before, "%s was not dropped as a slow consumer" % who)
    data, how = drain_bytes(sock, timeout=5)
    check(how in ("eof", "reset"), "%s's socket is still open (%s)" % (who, how))
    try:
        p = Peer(n, "after")
        room = p.create()
        v = p.request(STREAM_OPEN, room, "after-%d" % before, "", "", "", None, {}, [], 0)
        p.close()
    except (OSError, Closed, TimeoutError) as e:
        time.sleep(1)
        node_alive(n)
        raise TestFailure("a new client after the drop: %s: %s" % (type(e).__name__, e))
    check(v[0] == OK, "a new stream after the drop got %s" % brief([v]))


def stopped(n, body):
    """Runs body(n), then stops n (clean exit checked) or, if body failed,
    kills it: the first failure is the one reported."""
    try:
        body(n)
    except BaseException:
        n.kill()
        raise
    n.stop()


def sender_dropped_by_its_error_reply():
    # Pipelined [OPEN, CHUNK at a wrong offset] pairs, never reading: the
    # OK, ERROR and END replies pile up until one crosses max_pending. Should
    # that be an OK (no stream failing at that moment), the next attempt.
    def body(n):
        for attempt in range(5):
            s = n.connect(rcvbuf=STALLED_RCVBUF)
            hello(s, "alice")
            send_frame(s, [CREATE, 1])
            room = recv_frame(s)[2]
            i = 0
            while n.alive() and drops(n, "alice") <= attempt and i < 400000:
                batch = b"".join(
                    frame_bytes([STREAM_OPEN, 10 + 2 * j, room, "s%d-%d" % (attempt, j), "", "",
                                 "", None, {}, [], 0]) +
                    frame_bytes([STREAM_CHUNK, 11 + 2 * j, "s%d-%d" % (attempt, j), 5, b"x"])
                    for j in range(i, i + 2000))
                i += 2000
                try:
                    s.sendall(batch)
                except OSError:
                    break
                time.sleep(0.05)
            expect_dropped_and_alive(n, "alice", s, before=attempt)
            s.close()

    stopped(Node(*SMALL, name="streams-drop-error"), body)


def sender_dropped_by_an_idle_end():
    # alice receives bob's stream and never reads, so its window fills her
    # output to a few KiB; then her own 256 silent streams (their 256 OKs
    # still fit) time out together and their ENDs to her cross max_pending.
    def body(n):
        a = n.connect(rcvbuf=STALLED_RCVBUF)
        hello(a, "alice")
        send_frame(a, [CREATE, 1])
        room = recv_frame(a)[2]
        send_frame(a, [GRANT, 2, room, "bob"])
        recv_frame(a)
        send_frame(a, [SUBSCRIBE, 3, room])
        recv_frame(a)
        bob = Peer(n, "bob")
        stall(bob, "z", bob.reply(bob.open(room, "z"))[2], chunk=1024)
        a.sendall(b"".join(frame_bytes([STREAM_OPEN, 100 + i, room, "a%d" % i, "", "", "", None,
                                        {}, [], 0]) for i in range(256)))
        time.sleep(2.5)
        expect_dropped_and_alive(n, "alice", a)
        a.close()
        bob.close()

    stopped(Node("--frame-max", 2048, "--chunk-max", 1024, "--max-pending", 16384,
                 "--stream-window", 4096, "--max-streams", 256, "--stream-idle-timeout", 1,
                 name="streams-drop-idle"), body)


# ---------------------------------------------------------------- plumbing

def bystander_check(name):
    check(node().alive(), "vroomd died")
    for p in S["peers"]:
        p.close()
    S["peers"] = []
    owner, by, room = S["owner"], S["bystander"], S["room"]
    payload = ("after %s" % name).encode()
    seq = owner.ok(PUSH, room, 7, payload)
    check(seq == S["seq"] + 1, "push got seq %r after %d" % (seq, S["seq"]))
    S["seq"] = seq
    sid = new_sid("by")
    chunks = [payload, os.urandom(CHUNK_MAX)]
    data = b"".join(chunks)
    owner.open_ok(room, sid, topic="by", name=name, size=len(data))
    owner.chunk(sid, 0, chunks[0])
    owner.chunk(sid, len(chunks[0]), chunks[1])
    check(owner.ok(STREAM_CLOSE, sid, "", {}, xxh3(data)) == len(data), "close count")
    owner.drop_credit(sid)
    owner.nothing_more()
    v = by.read()
    check(v[:7] == [DELIVER, 0, room, seq, "owner", 7, payload], "bystander got %s" % brief([v]))
    opened, datas, end = receive_stream(by, sid)
    check_opened(opened, room, sid, "owner", "by", name, "", len(data))
    check_data(datas, chunks)
    check_end(end, sid, "ok", nbytes=len(data), checksum=xxh3(data))
    by.nothing_more()


def setup():
    S["node"] = Node("--chunk-max", CHUNK_MAX, "--stream-window", WINDOW, "--max-streams",
                     MAX_STREAMS, "--slow-timeout", 30, name="streams-wire")
    S["peers"] = []
    S["owner"] = Peer(node(), "owner")
    S["bystander"] = Peer(node(), "bystander")
    S["room"] = S["owner"].create()
    S["bystander"].subscribe(S["room"])
    S["seq"] = 0
    w = S["owner"].welcome[4]
    check(w.get("chunk_max") == CHUNK_MAX and w.get("stream_window") == WINDOW and
          w.get("max_streams") == MAX_STREAMS, "WELCOME limits %r" % (w,))
    if _XXH is None:
        print("     libxxhash not found: checksums are not compared")
    bystander_check("setup")


def teardown():
    for p in S.get("peers", []) + [S.get("owner"), S.get("bystander")]:
        if p:
            p.close()
    if S.get("node"):
        S["node"].stop()


CASES = [
    ("open, chunks, close with checksum: END ok", happy_path_with_checksum),
    ("chunk for an unknown stream (30)", chunk_unknown_stream),
    ("chunk for another client's stream (30)", chunk_for_another_clients_stream),
    ("open the same id twice (31)", open_twice),
    ("chunk at the wrong offset (32, END error)", bad_offset),
    ("chunk past the declared size (33)", over_size),
    ("chunk over --chunk-max (34)", chunk_too_large),
    ("close short of the size (35)", size_mismatch),
    ("close with a wrong checksum (36)", checksum_mismatch),
    ("chunk beyond the granted window (37)", beyond_the_window),
    ("close waits for the last bytes (24 meanwhile)", close_waits_for_last_bytes),
    ("close stands: sender leaves / room closes", close_stands_when_sender_leaves_or_room_closes),
    ("open without push permission (21)", open_forbidden),
    ("open in an unknown room (20)", open_unknown_room),
    ("open with fields out of bounds (24)", open_bad_fields),
    ("more than --max-streams open (23)", max_streams),
    ("dests [bob]: carol gets not one byte", dests_only_bob),
    ("topics [a]: nothing of topic b", topics_filter),
    ("subscriber after the open gets nothing", late_subscriber),
    ("STREAM_REJOIN: checks, then the rest of the stream (305)", rejoin),
    ("credit: acked never past bytes sent", credit),
    ("abort, close with a reason: END aborted", abort_and_close_with_reason),
    ("sender disconnects: END aborted", sender_disconnects),
    ("idle stream: END timeout to all", idle_timeout),
    ("room removed: END aborted, ROOM_CLOSED", room_removed),
    ("sender dropped by its own ERROR reply", sender_dropped_by_its_error_reply),
    ("sender dropped by the END of its idle stream", sender_dropped_by_an_idle_end),
]

if __name__ == "__main__":
    run_cases("streams_wire", CASES, setup=setup, teardown=teardown, after_each=bystander_check)
