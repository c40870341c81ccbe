#!/usr/bin/python3
"""Hostile clients against ONE real vroomd.

Each case asserts the documented error code (stream/wire.h) and whether the
connection is closed (codes < 20 except 3) or stays open. At the start an
owner creates a room and a bystander subscribes to it; after every case the
owner pushes and the bystander must receive that push in seq order, so a case
that wedges, crashes or corrupts the node fails right there. At the end the
node is stopped with SIGTERM and must exit 0 with a sanitizer-clean log.
"""

import base64
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import msgpack

from harness import (
    CREATE, DELIVER, GRANT, HELLO, INFO, OK, PING, PONG, PUSH, REMOVE, REVOKE,
    SUBSCRIBE, UNSUBSCRIBE, WELCOME,
    E_AUTH, E_BAD_FRAME, E_BAD_REQUEST, E_FORBIDDEN, E_HELLO_REQUIRED, E_LIMIT, E_NOT_OWNER,
    E_SHUTDOWN, E_TIMEOUT, E_TOO_LARGE, E_UNKNOWN_ROOM, E_UNKNOWN_TYPE, E_VERSION,
    FRAME_MAX_DEFAULT, Client, Node, check, drain_bytes, expect_closed, expect_error, expect_open,
    frame_bytes, hello, pack, recv_frame, run_cases, send_frame, send_raw,
)

HELLO_TIMEOUT = 0.5
MAX_SUBS = 4
MAX_ROOMS_ID = 20  # --max-rooms-per-identity
MAX_STREAMS = 8
FRAME_MAX = FRAME_MAX_DEFAULT

S = {}  # shared state: node, owner, bystander, room, seq, lingering sockets


def node():
    return S["node"]


def raw():
    return node().connect()


def prefix(n):
    return struct.pack(">I", n)


def body_frame(body):
    """A frame with an arbitrary (possibly invalid) msgpack body."""
    return prefix(len(body)) + body


def fatal(data, code, before_hello=True, rid=0):
    """Sends data on a fresh connection (after HELLO unless before_hello) and
    expects error `code` with `rid`, then the close."""
    s = raw()
    try:
        if not before_hello:
            hello(s, "hostile")
        send_raw(s, data)
        expect_error(s, code, rid=rid)
        expect_closed(s)
    finally:
        s.close()


# ---------------------------------------------------------------- framing

def truncated_then_close():
    for data in (prefix(100) + b"\x95\x01\x01" + b"x" * 7, b"\x00\x00", prefix(10)):
        s = raw()
        send_raw(s, data)
        s.close()  # no reply expected: the node just drops the connection


def truncated_then_reset():
    s = raw()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    send_raw(s, prefix(1000) + b"\x93" + b"\x00" * 100)
    time.sleep(0.05)
    s.close()  # RST


def too_large_prefix_only():
    # Just the 4 bytes: the prefix alone must decide, with nothing else sent.
    for n in (FRAME_MAX + 1, 0x7FFFFFFF, 0xFFFFFFFF):
        fatal(prefix(n), E_TOO_LARGE)


def too_large_after_hello():
    fatal(prefix(FRAME_MAX + 1), E_TOO_LARGE, before_hello=False)


def zero_length():
    fatal(prefix(0), E_BAD_FRAME)


def garbage_not_msgpack():
    fatal(body_frame(b"\xc1" * 8), E_BAD_FRAME)  # 0xc1: never used
    fatal(body_frame(b"\x93\x01\x01\xc1"), E_BAD_FRAME)


def not_an_array():
    for v in (42, "hello", {"type": 1}, None, b"\x01\x02"):
        fatal(body_frame(pack(v)), E_BAD_FRAME)


def array_too_short():
    fatal(body_frame(pack([])), E_BAD_FRAME)
    fatal(body_frame(pack([1])), E_BAD_FRAME)


def array32_huge_count():
    fatal(body_frame(b"\xdd\xff\xff\xff\xff\x01\x01\x01"), E_BAD_FRAME)


def map32_huge_count():
    fatal(body_frame(b"\xdf\xff\xff\xff\xff\x01\x01"), E_BAD_FRAME)
    # as a field inside a well-formed array head
    fatal(body_frame(b"\x93\x01\x01\xdf\xff\xff\xff\xff"), E_BAD_FRAME)


def str32_huge_length():
    fatal(body_frame(b"\x94\x01\x01\x01\xdb\xff\xff\xff\xffabc"), E_BAD_FRAME)
    fatal(body_frame(b"\x94\x01\x01\x01\xc6\xff\xff\xff\xffabc"), E_BAD_FRAME)  # bin32


def nesting_100_deep():
    fatal(body_frame(b"\x91" * 100 + b"\x01"), E_BAD_FRAME)
    # deep nesting inside a field of an otherwise valid HELLO
    fatal(body_frame(b"\x95\x01\x01\x01\xa1x" + b"\x91" * 100 + b"\xc0"), E_BAD_FRAME)


def trailing_bytes():
    fatal(body_frame(pack([PING, 1]) + b"\xc0"), E_BAD_FRAME)
    fatal(body_frame(pack([HELLO, 1, 1, "trail"]) + b"\x00\x00"), E_BAD_FRAME)


def type_out_of_range():
    fatal(frame_bytes([70000, 1]), E_BAD_FRAME)
    fatal(frame_bytes([-1, 1]), E_BAD_FRAME)
    fatal(frame_bytes(["hello", 1]), E_BAD_FRAME)
    fatal(frame_bytes([PING, -5]), E_BAD_FRAME, before_hello=False)


def wrong_field_types():
    fatal(frame_bytes([SUBSCRIBE, 9, 12345]), E_BAD_FRAME, before_hello=False)  # room id int
    fatal(frame_bytes([PUSH, 9, S["room"], "zero", b"x"]), E_BAD_FRAME, before_hello=False)
    fatal(frame_bytes([PUSH, 9, S["room"], 0, 17]), E_BAD_FRAME, before_hello=False)
    fatal(frame_bytes([HELLO, 9, "1", "id"]), E_BAD_FRAME)
    fatal(frame_bytes([HELLO, 9, 1, 42]), E_BAD_FRAME)


def missing_fields():
    fatal(frame_bytes([PUSH, 9, S["room"]]), E_BAD_FRAME, before_hello=False)
    fatal(frame_bytes([PUSH, 9, S["room"], 0]), E_BAD_FRAME, before_hello=False)
    fatal(frame_bytes([GRANT, 9, S["room"]]), E_BAD_FRAME, before_hello=False)
    fatal(frame_bytes([HELLO, 9, 1]), E_BAD_FRAME)


def frame_exactly_at_limit():
    # The largest frame accepted: an unknown type padded to exactly FRAME_MAX.
    s = raw()
    try:
        hello(s, "big")
        overhead = len(pack([999, 4, b"\x00" * 70000])) - 70000  # with a bin32 header
        pad = FRAME_MAX - overhead
        body = pack([999, 4, b"\x00" * pad])
        check(len(body) == FRAME_MAX, "padding arithmetic: %d" % len(body))
        send_raw(s, body_frame(body))
        expect_error(s, E_UNKNOWN_TYPE, rid=4)
        expect_open(s)
    finally:
        s.close()


def byte_by_byte():
    # A valid but dribbled HELLO is assembled, not rejected.
    s = raw()
    try:
        for b in frame_bytes([HELLO, 3, 1, "dribble"]):
            s.sendall(bytes([b]))
            time.sleep(0.002)
        v = recv_frame(s)
        check(v[0] == WELCOME and v[1] == 3, "dribbled HELLO got %r" % (v,))
        expect_open(s)
    finally:
        s.close()


def pipelined_then_garbage():
    s = raw()
    try:
        send_raw(s, frame_bytes([HELLO, 1, 1, "pipe"]) + frame_bytes([PING, 2]) +
                 body_frame(b"\xc1"))
        v = recv_frame(s)
        check(v[0] == WELCOME, "got %r" % (v,))
        v = recv_frame(s)
        check(v[0] == PONG and v[1] == 2, "got %r" % (v,))
        expect_error(s, E_BAD_FRAME, rid=0)
        expect_closed(s)
    finally:
        s.close()


# ---------------------------------------------------------------- session

def request_before_hello():
    fatal(frame_bytes([CREATE, 7]), E_HELLO_REQUIRED, rid=7)
    fatal(frame_bytes([PING, 8]), E_HELLO_REQUIRED, rid=8)
    fatal(frame_bytes([999, 9]), E_HELLO_REQUIRED, rid=9)


def hello_version_2():
    fatal(frame_bytes([HELLO, 5, 2, "v2"]), E_VERSION, rid=5)
    fatal(frame_bytes([HELLO, 5, 0, "v0"]), E_VERSION, rid=5)


def hello_bad_identity():
    for ident in ("", "has space", "tab\there", "nl\n", "x" * 129, "del\x7f"):
        fatal(frame_bytes([HELLO, 6, 1, ident]), E_AUTH, rid=6)


def hello_identity_128_ok():
    s = raw()
    try:
        hello(s, "x" * 128)
        expect_open(s)
    finally:
        s.close()


def second_hello():
    s = raw()
    try:
        hello(s, "twice")
        send_frame(s, [HELLO, 11, 1, "twice"])
        expect_error(s, E_BAD_REQUEST, rid=11)
        expect_open(s)
    finally:
        s.close()


def unknown_type_999():
    s = raw()
    try:
        hello(s, "curious")
        send_frame(s, [999, 12])
        expect_error(s, E_UNKNOWN_TYPE, rid=12)
        send_frame(s, [999, 13, "extra", 1, [1, 2], {"a": 1}])
        expect_error(s, E_UNKNOWN_TYPE, rid=13)
        send_frame(s, [6, 14])  # PONG is a reply, not a request
        expect_error(s, E_UNKNOWN_TYPE, rid=14)
        expect_open(s)
    finally:
        s.close()


def hello_timeout():
    s = raw()
    try:
        t0 = time.monotonic()
        expect_error(s, E_TIMEOUT, rid=0, timeout=HELLO_TIMEOUT + 5)
        dt = time.monotonic() - t0
        check(dt >= HELLO_TIMEOUT * 0.8, "closed after %.2fs, before the hello timeout" % dt)
        expect_closed(s)
    finally:
        s.close()


def half_open_before_hello():
    # Half a frame and then silence: still under the HELLO deadline.
    s = raw()
    try:
        send_raw(s, prefix(64) + b"\x94\x01\x01")
        expect_error(s, E_TIMEOUT, rid=0, timeout=HELLO_TIMEOUT + 5)
        expect_closed(s)
    finally:
        s.close()


def half_open_after_hello():
    # A ready connection that sends half a frame and then nothing: it keeps
    # its slot (no deadline after HELLO) and must not hold anyone else back.
    # It is kept open to the end, where shutdown must close it with code 9.
    for n, part in ((64, b"\x94\xcc\xc8\x01"), (FRAME_MAX, b"\x94\xcc\xc8\x01" + b"\x00" * 5000)):
        s = raw()
        hello(s, "halfopen")
        send_raw(s, prefix(n) + part)
        S["lingering"].append(s)
    other = Client(node(), "other")
    try:
        room = other.create()
        other.subscribe(room)
        other.ok(INFO, room)
    finally:
        other.close()


# ---------------------------------------------------------------- rooms

def push_unknown_room():
    c = Client(node(), "pusher")
    try:
        for room in ("AAAAAAAAAAAAAAAA", "x", "y" * 64, S["room"][:-1]):
            c.error(E_UNKNOWN_ROOM, PUSH, room, 0, b"data")
        c.error(E_UNKNOWN_ROOM, SUBSCRIBE, "AAAAAAAAAAAAAAAA")
        c.error(E_UNKNOWN_ROOM, INFO, "AAAAAAAAAAAAAAAA")
        expect_open(c.sock)
    finally:
        c.close()


def push_without_grant():
    c = Client(node(), "stranger")
    try:
        c.error(E_FORBIDDEN, PUSH, S["room"], 0, b"not allowed")
        expect_open(c.sock)
    finally:
        c.close()


def grant_then_revoke():
    # A granted identity may push (the bystander sees it); revoked, it may not.
    c = Client(node(), "guest")
    try:
        S["owner"].ok(GRANT, S["room"], "guest")
        seq = c.push(S["room"], b"from guest")
        expect_delivery(seq, "guest", b"from guest")
        S["owner"].ok(REVOKE, S["room"], "guest")
        c.error(E_FORBIDDEN, PUSH, S["room"], 0, b"revoked")
        S["owner"].error(E_BAD_REQUEST, GRANT, S["room"], "bad identity")
        expect_open(c.sock)
    finally:
        c.close()


def not_owner():
    c = Client(node(), "mallory")
    try:
        c.error(E_NOT_OWNER, REMOVE, S["room"])
        c.error(E_NOT_OWNER, GRANT, S["room"], "mallory")
        c.error(E_NOT_OWNER, REVOKE, S["room"], "owner")
        c.error(E_FORBIDDEN, PUSH, S["room"], 0, b"still not allowed")
        expect_open(c.sock)
    finally:
        c.close()


def dtype_out_of_range():
    c = Client(node(), "typer")
    try:
        room = c.create()
        c.error(E_BAD_REQUEST, PUSH, room, 300, b"x")
        c.error(E_BAD_REQUEST, PUSH, room, 256, b"x")
        c.error(E_BAD_REQUEST, PUSH, room, 2 ** 64 - 1, b"x")
        check(c.push(room, b"x", dtype=255) == 1, "dtype 255 push is not seq 1")
        expect_open(c.sock)
    finally:
        c.close()


def subscribe_beyond_max_subs():
    c = Client(node(), "collector")
    try:
        rooms = [c.create() for _ in range(MAX_SUBS + 1)]
        for r in rooms[:MAX_SUBS]:
            c.subscribe(r)
        c.subscribe(rooms[0])  # already subscribed: OK, not counted again
        c.error(E_LIMIT, SUBSCRIBE, rooms[MAX_SUBS])
        c.ok(UNSUBSCRIBE, rooms[0])
        c.subscribe(rooms[MAX_SUBS])  # a slot was freed
        c.error(E_LIMIT, SUBSCRIBE, rooms[0])
        expect_open(c.sock)
    finally:
        c.close()


def remove_closes_room():
    # The owner removes its own room: the subscriber hears ROOM_CLOSED.
    a = Client(node(), "remover")
    b = Client(node(), "listener")
    try:
        room = a.create()
        b.subscribe(room)
        a.ok(REMOVE, room)
        v = b.next_event()
        check(v[0] == 400 and v[2] == room and v[3] == "removed", "got %r" % (v,))
        a.error(E_UNKNOWN_ROOM, PUSH, room, 0, b"gone")
    finally:
        a.close()
        b.close()


def reply_flood():
    # --max-pending (default 8 MiB) bounds a connection's pending output: a
    # client that pipelines requests and never reads the replies is a slow
    # consumer and must be dropped (node/conn.h, vroomd --help). INFO by the
    # owner of a room with 256 grants of 128-byte identities answers 24 bytes
    # with ~33 KB, so 50 KB of requests ask for 64 MiB of replies.
    c = Client(node(), "flooder")
    try:
        room = c.create()
        for i in range(256):
            c.ok(GRANT, room, "g%03d" % i + "x" * 124)
        info = c.ok(INFO, room)
        reply_len = len(frame_bytes([OK, 1 << 40, info]))  # rid packed as uint64
        n = (64 << 20) // reply_len + 1
        reqs = b"".join(frame_bytes([INFO, 1 << 40 | i, room]) for i in range(n))
        rss0 = node().rss_kib()
        send_raw(c.sock, reqs)
        time.sleep(0.5)  # let the node answer before anything is read
        grew = node().rss_kib() - rss0
        data, how = drain_bytes(c.sock, timeout=20, limit=n * reply_len)
        got = len(data) // reply_len
        check(how in ("eof", "reset"),
              "the node answered all %d pipelined INFO requests (%d MiB of replies; its RSS grew "
              "by %d MiB before the client read any) and kept the connection open: pending "
              "output is not bounded by max_pending" % (got, len(data) >> 20, grew >> 10))
        check(got < n, "all %d replies were delivered" % n)
    finally:
        c.close()


# ---------------------------------------------------------------- storms

def reconnect_storm():
    base_fds = node().fd_count()
    # 100 opened together, then closed; 100 opened and closed one by one,
    # each in one of four ways.
    socks = [raw() for _ in range(100)]
    for i, s in enumerate(socks):
        if i % 2:
            send_frame(s, [HELLO, 1, 1, "storm%d" % i])
    for s in socks:
        s.close()
    for i in range(100):
        s = raw()
        kind = i % 4
        if kind == 1:
            hello(s, "storm")
        elif kind == 2:
            send_raw(s, prefix(50) + b"\x93")
        elif kind == 3:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # Every connection is reaped: the node's fd count returns to its baseline.
    deadline = time.monotonic() + 10
    while node().fd_count() > base_fds and time.monotonic() < deadline:
        time.sleep(0.05)
    check(node().fd_count() <= base_fds,
          "node holds %d fds after the storm, %d before" % (node().fd_count(), base_fds))


# ---------------------------------------------------------------- floods,
# forgeries and fields (tokens and limits)

STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE, STREAM_ABORT = 300, 301, 302, 303
STREAM_OPENED, STREAM_DATA, STREAM_END = 310, 311, 312
E_UNKNOWN_STREAM, E_STREAM_EXISTS = 30, 31


def rooms_flood():
    # One identity creating rooms as fast as it can stops at
    # --max-rooms-per-identity with `limit`; its connection stays, and
    # another identity still creates.
    c = Client(node(), "roomhog")
    try:
        send_raw(c.sock, b"".join(frame_bytes([CREATE, 5000 + i]) for i in range(MAX_ROOMS_ID + 10)))
        oks = errs = 0
        for i in range(MAX_ROOMS_ID + 10):
            v = recv_frame(c.sock)
            check(v[1] == 5000 + i, "reply out of order: %r" % (v,))
            if v[0] == OK:
                oks += 1
            else:
                check(v[0] == 4 and v[2] == E_LIMIT and "max_rooms_per_identity" in v[3],
                      "CREATE %d got %r" % (i, v))
                errs += 1
        check(oks == MAX_ROOMS_ID and errs == 10, "%d rooms made, %d refused" % (oks, errs))
        expect_open(c.sock)
        other = Client(node(), "roomhog2")
        other.create()
        other.close()
    finally:
        c.close()


def stream_open_frame(rid, room, sid):
    return frame_bytes([STREAM_OPEN, rid, room, sid, "", "", "", None, {}, [], 0])


def streams_flood():
    # Streams past --max-streams on one connection: `limit`, the connection
    # and its open streams stay.
    c = Client(node(), "streamhog")
    try:
        room = c.create()
        send_raw(c.sock, b"".join(stream_open_frame(6000 + i, room, "hog-%d" % i)
                                  for i in range(MAX_STREAMS + 5)))
        for i in range(MAX_STREAMS + 5):
            v = recv_frame(c.sock)
            if i < MAX_STREAMS:
                check(v[0] == OK and v[1] == 6000 + i, "STREAM_OPEN %d got %r" % (i, v))
            else:
                check(v[0] == 4 and v[2] == E_LIMIT, "STREAM_OPEN %d got %r" % (i, v))
        send_frame(c.sock, [STREAM_ABORT, 7000, "hog-0", "done"])
        v = recv_frame(c.sock)
        check(v[0] == OK and v[1] == 7000, "abort got %r" % (v,))
        send_raw(c.sock, stream_open_frame(7001, room, "hog-again"))
        v = recv_frame(c.sock)
        check(v[0] == OK and v[1] == 7001, "a freed stream slot: %r" % (v,))
        expect_open(c.sock)
    finally:
        c.close()


def forged_sender():
    # A pusher cannot name another sender: extra fields in PUSH are ignored
    # and node-to-client frames (DELIVER, STREAM_OPENED, ROOM_CLOSED,
    # WELCOME) from a client are unknown_type; the bystander sees the real
    # sender and nothing forged.
    f = Client(node(), "forger")
    try:
        S["owner"].ok(GRANT, S["room"], "forger")
        send_frame(f.sock, [PUSH, 8000, S["room"], 0, b"real", "owner", "owner", 1])
        v = recv_frame(f.sock)
        check(v[0] == OK and v[1] == 8000, "push with extra fields got %r" % (v,))
        expect_delivery(v[2], "forger", b"real")
        for forged in ([DELIVER, 8001, S["room"], 999, "owner", 0, b"fake"],
                       [STREAM_OPENED, 8002, S["room"], "x", "owner", "", "", "", None, {}, [], 0],
                       [400, 8003, S["room"], "removed"],
                       [WELCOME, 8004, "node", "session", {}]):
            send_frame(f.sock, forged)
            expect_error(f.sock, E_UNKNOWN_TYPE, rid=forged[1])
        expect_open(f.sock)
        S["owner"].ok(REVOKE, S["room"], "forger")
    finally:
        f.close()


def foreign_stream_chunks():
    # Chunks, closes and aborts for another client's stream are
    # unknown_stream; reusing its id is stream_exists; the real stream goes
    # through untouched.
    a = Client(node(), "streamer")
    b = Client(node(), "watcher")
    x = Client(node(), "intruder")
    try:
        room = a.create()
        b.subscribe(room)
        send_raw(a.sock, stream_open_frame(9000, room, "victim"))
        v = recv_frame(a.sock)
        check(v[0] == OK, "open got %r" % (v,))
        v = recv_frame(b.sock)
        check(v[0] == STREAM_OPENED and v[3] == "victim", "watcher got %r" % (v,))
        for bad in ([STREAM_CHUNK, 9001, "victim", 0, b"evil"],
                    [STREAM_CLOSE, 9002, "victim", "", {}, None],
                    [STREAM_ABORT, 9003, "victim", "hijack"]):
            send_frame(x.sock, bad)
            expect_error(x.sock, E_UNKNOWN_STREAM, rid=bad[1])
        xroom = x.create()
        send_raw(x.sock, stream_open_frame(9004, xroom, "victim"))
        expect_error(x.sock, E_STREAM_EXISTS, rid=9004)
        send_frame(x.sock, [STREAM_CHUNK, 9005, "victim", 0, b"evil"])
        expect_error(x.sock, E_UNKNOWN_STREAM, rid=9005)
        expect_open(x.sock)
        send_frame(a.sock, [STREAM_CHUNK, 9006, "victim", 0, b"good"])
        send_frame(a.sock, [STREAM_CLOSE, 9007, "victim", "", {}, None])
        v = recv_frame(b.sock)
        check(v[0] == STREAM_DATA and v[2] == "victim" and v[3] == 0 and v[4] == b"good",
              "watcher got %r" % (v,))
        v = recv_frame(b.sock)
        check(v[0] == STREAM_END and v[3] == "ok" and v[6] == 4, "watcher got %r" % (v,))
        while True:
            v = recv_frame(a.sock)
            if v[0] == OK:
                break
            check(v[0] == 320, "streamer got %r" % (v,))  # credit
        check(v[1] == 9007 and v[2] == 4, "close got %r" % (v,))
    finally:
        for c in (a, b, x):
            c.close()


# Each request type's fields (docs/protocol.md) with a valid value, and a
# value of a wrong msgpack type for each.
WRONG = {"u": ["1", -1, 1.5, None], "s": [b"bin", 7, None], "b": [7, [], None],
         "m": [[], "m"], "l": [{}, "l"]}


def every_field_wrong():
    # For every field of every request, a value of the wrong type is
    # bad_frame (rid 0) and the close; so is a PUSH cut inside any field.
    room = S["room"]
    reqs = [(HELLO, "us|b", [1, "x", b"tok"]),
            (REMOVE, "s", [room]), (GRANT, "ss", [room, "who"]), (REVOKE, "ss", [room, "who"]),
            (SUBSCRIBE, "s|l", [room, ["t"]]), (UNSUBSCRIBE, "s", [room]), (INFO, "s", [room]),
            (PUSH, "sub", [room, 0, b"d"]),
            (STREAM_OPEN, "sssssvmlu", [room, "sid", "t", "n", "m", None, {}, [], 0]),
            (STREAM_CHUNK, "sub", ["sid", 0, b"d"]),
            (STREAM_CLOSE, "ssmv", ["sid", "", {}, None]),
            (STREAM_ABORT, "ss", ["sid", "r"])]
    n = 0
    for typ, schema, fields in reqs:
        kinds = schema.replace("|", "")
        for i, k in enumerate(kinds):
            for wrong in WRONG.get(k, []):
                f = list(fields)
                f[i] = wrong
                fatal(frame_bytes([typ, 9, *f]), E_BAD_FRAME, before_hello=(typ == HELLO))
                n += 1
    body = pack([PUSH, 9, room, 7, b"payload"])
    for cut in range(1, len(body)):
        fatal(prefix(cut) + body[:cut], E_BAD_FRAME, before_hello=False)
        n += 1
    check(n > 60, "only %d frames" % n)


def huge_counts_in_fields():
    room = pack(S["room"])
    for body in (b"\x94\xcc\x68\x09" + room + b"\xdc\xff\xff\xa1t",        # topics: array16
                 b"\x94\xcc\x68\x09" + room + b"\xdd\xff\xff\xff\xff",     # array32
                 b"\x95\xcc\xc8\x09" + room + b"\x00\xc6\x7f\xff\xff\xff",  # data: bin32
                 b"\x9b\xcd\x01\x2c\x09" + room + b"\xa1s\xa0\xa0\xa0\xc0\xdf\xff\xff\xff\xff"):
        fatal(body_frame(body), E_BAD_FRAME, before_hello=False)


# ---------------------------------------------------------------- tokens
# A second node with trusted keys; its own owner and bystander.

def vroom_cli(*args):
    path = os.environ.get("VROOM")
    check(path and os.access(path, os.X_OK), "set VROOM to the vroom CLI")
    p = subprocess.run([path] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=30)
    check(p.returncode == 0, "vroom %s: %s" % (" ".join(map(str, args)), p.stderr))
    return p.stdout.strip()


def mint(identity, *extra, key="trusted"):
    text = vroom_cli("token", "--key", os.path.join(S["tmp"], key, "issuer.key"),
                     "--identity", identity, "--ttl", "1h", *extra)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_client(identity, token):
    c = Client.__new__(Client)
    c.identity, c.rid, c.timeout, c.events = identity, 100, 5.0, []
    c.sock = S["anode"].connect()
    send_frame(c.sock, [HELLO, 1, 1, "", token])
    c.welcome = recv_frame(c.sock)
    check(c.welcome[0] == WELCOME, "HELLO with a token got %r" % (c.welcome,))
    return c


def auth_refused(identity, token):
    s = S["anode"].connect()
    try:
        send_frame(s, [HELLO, 4, 1, identity] + ([token] if token is not None else []))
        v = expect_error(s, E_AUTH, rid=4)
        check(v[3] == "authentication failed", "the reason leaked to the client: %r" % (v,))
        expect_closed(s)
    finally:
        s.close()


def expired_token():
    old = str(int(time.time()) - 7200)
    auth_refused("", mint("aowner", "--valid-from", old))
    check("expired" in S["anode"].log(), "the log does not say expired")


def unknown_key_token():
    auth_refused("", mint("aowner", key="stranger"))
    check("unknown issuer" in S["anode"].log(), "the log does not say unknown issuer")


def forged_token_identity():
    # HELLO naming someone else, no token, a token edited to another name
    auth_refused("aowner", mint("mallory"))
    auth_refused("aowner", None)
    t = msgpack.unpackb(mint("mallory"), raw=False)
    t[2] = t[2].replace(b"mallory", b"aowner_")
    auth_refused("", msgpack.packb(t, use_bin_type=True))
    fatal_at = S["anode"].connect()  # still hello_required before HELLO
    try:
        send_frame(fatal_at, [PUSH, 5, S["aroom"], 0, b"x"])
        expect_error(fatal_at, E_HELLO_REQUIRED, rid=5)
    finally:
        fatal_at.close()


def push_without_token_grant():
    # Granted by the room's owner, but the token grants no push: forbidden;
    # it grants no create either.
    c = token_client("viewer", mint("viewer", "--sub", "*"))
    try:
        S["aowner"].ok(GRANT, S["aroom"], "viewer")
        c.error(E_FORBIDDEN, PUSH, S["aroom"], 0, b"nope")
        c.error(E_FORBIDDEN, CREATE)
        c.ok(SUBSCRIBE, S["aroom"])
        expect_open(c.sock)
    finally:
        c.close()


# ---------------------------------------------------------------- plumbing

def expect_delivery(seq, sender, payload):
    """The bystander receives DELIVER(seq) next; seq follows the last one."""
    by = S["bystander"]
    check(seq == S["seq"] + 1, "push got seq %r, expected %d" % (seq, S["seq"] + 1))
    v = by.next_event(timeout=5)
    check(v[0] == DELIVER, "bystander got %r, not DELIVER" % (v,))
    _, _, room, dseq, who, dtype, data = v[:7]  # an origin may follow
    check(room == S["room"] and dseq == seq and who == sender and data == payload,
          "bystander got %r, expected seq %d from %s" % (v[:6], seq, sender))
    S["seq"] = seq


def bystander_check(name):
    check(node().alive(), "vroomd died")
    payload = ("after %s" % name).encode()
    seq = S["owner"].push(S["room"], payload, dtype=7)
    expect_delivery(seq, "owner", payload)
    # the node with trusted keys, and its subscriber
    check(S["anode"].alive(), "vroomd (trusted keys) died")
    seq = S["aowner"].push(S["aroom"], payload)
    v = S["abystander"].next_event(timeout=5)
    check(v[0] == DELIVER and v[2] == S["aroom"] and v[3] == seq and v[4] == "aowner" and
          v[6] == payload and seq == S["aseq"] + 1, "keyed bystander got %r" % (v[:7],))
    S["aseq"] = seq


def setup():
    # Many cases fail HELLO on purpose: no refusal per source here.
    S["node"] = Node("--hello-timeout", HELLO_TIMEOUT, "--max-subs", MAX_SUBS,
                     "--max-hello-failures", 0, "--max-rooms-per-identity", MAX_ROOMS_ID,
                     "--max-streams", MAX_STREAMS, name="hostile")
    S["tmp"] = tempfile.mkdtemp(prefix="vroom-hostile-")
    for d in ("trusted", "stranger"):
        vroom_cli("keygen", os.path.join(S["tmp"], d))
    S["anode"] = Node("--trusted-keys", os.path.join(S["tmp"], "trusted", "issuer.pub"),
                      "--hello-timeout", HELLO_TIMEOUT, "--max-hello-failures", 0,
                      name="hostile-auth")
    S["aowner"] = token_client("aowner", mint("aowner"))
    S["abystander"] = token_client("abystander", mint("abystander"))
    S["aroom"] = S["aowner"].create()
    S["abystander"].subscribe(S["aroom"])
    S["aseq"] = 0
    S["lingering"] = []
    # The HELLO deadline applies to these too: say HELLO at once.
    S["owner"] = Client(node(), "owner")
    S["bystander"] = Client(node(), "bystander")
    S["room"] = S["owner"].create()
    S["bystander"].subscribe(S["room"])
    S["seq"] = 0
    bystander_check("setup")


def teardown():
    a = S.get("anode")
    if a:
        try:
            if a.alive() and S.get("abystander"):
                a.terminate()
                expect_error(S["abystander"].sock, E_SHUTDOWN, rid=0)
                expect_closed(S["abystander"].sock)
        finally:
            for k in ("aowner", "abystander"):
                if S.get(k):
                    S[k].close()
            a.stop()
    shutil.rmtree(S.get("tmp") or "/nonexistent", ignore_errors=True)
    n = S.get("node")
    if not n:
        return
    try:
        if n.alive() and S.get("bystander"):
            # Shutdown tells every client (code 9) and closes it, the
            # half-open ones included.
            n.terminate()
            for s in [S["bystander"].sock] + S["lingering"]:
                expect_error(s, E_SHUTDOWN, rid=0)
                expect_closed(s)
    finally:
        for s in S.get("lingering", []):
            s.close()
        for k in ("owner", "bystander"):
            if S.get(k):
                S[k].close()
        text = n.stop()
    print("     node log: %d lines, %d bad frames logged" %
          (len(text.splitlines()), text.count("bad frame")))


CASES = [
    ("truncated frame then close", truncated_then_close),
    ("truncated frame then reset", truncated_then_reset),
    ("length over frame limit, prefix only (2)", too_large_prefix_only),
    ("length over frame limit after HELLO (2)", too_large_after_hello),
    ("zero length (1)", zero_length),
    ("garbage, not msgpack (1)", garbage_not_msgpack),
    ("msgpack value not an array (1)", not_an_array),
    ("array shorter than [type, rid] (1)", array_too_short),
    ("array32 count 0xffffffff (1)", array32_huge_count),
    ("map32 huge count (1)", map32_huge_count),
    ("str32/bin32 huge length (1)", str32_huge_length),
    ("nesting 100 deep (1)", nesting_100_deep),
    ("trailing bytes after the value (1)", trailing_bytes),
    ("type/rid out of range (1)", type_out_of_range),
    ("wrong field types (1)", wrong_field_types),
    ("missing fields (1)", missing_fields),
    ("frame exactly at frame_max (3, open)", frame_exactly_at_limit),
    ("HELLO one byte at a time", byte_by_byte),
    ("pipelined frames then garbage (1)", pipelined_then_garbage),
    ("request before HELLO (4)", request_before_hello),
    ("HELLO version 2 (5)", hello_version_2),
    ("HELLO bad identity (6)", hello_bad_identity),
    ("HELLO identity of 128 bytes", hello_identity_128_ok),
    ("second HELLO (24, open)", second_hello),
    ("unknown type 999 (3, open)", unknown_type_999),
    ("push to unknown room (20, open)", push_unknown_room),
    ("push without grant (21, open)", push_without_grant),
    ("grant then revoke", grant_then_revoke),
    ("remove/grant by non-owner (22, open)", not_owner),
    ("dtype 300 (24, open)", dtype_out_of_range),
    ("subscribe beyond --max-subs (23, open)", subscribe_beyond_max_subs),
    ("owner removes room -> ROOM_CLOSED", remove_closes_room),
    ("no HELLO within --hello-timeout (7)", hello_timeout),
    ("half frame before HELLO (7)", half_open_before_hello),
    ("half-open after HELLO, others served", half_open_after_hello),
    ("reconnect storm, 200 connections", reconnect_storm),
    ("reply flood, replies never read (dropped)", reply_flood),
    ("every field of every request mistyped (1)", every_field_wrong),
    ("huge counts inside fields (1)", huge_counts_in_fields),
    ("flood of rooms, max_rooms_per_identity (23)", rooms_flood),
    ("flood of streams, max_streams (23)", streams_flood),
    ("sender forged in a frame (3)", forged_sender),
    ("chunks for another client's stream (30)", foreign_stream_chunks),
    ("token: expired (6)", expired_token),
    ("token: signed by an unknown key (6)", unknown_key_token),
    ("token: identity forged or missing (6)", forged_token_identity),
    ("token: push without a grant (21)", push_without_token_grant),
]

if __name__ == "__main__":
    run_cases("hostile", CASES, setup=setup, teardown=teardown, after_each=bystander_check)
