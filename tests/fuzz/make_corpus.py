#!/usr/bin/python3
"""Writes the seed corpus for fuzz_wire into corpus/wire/ (next to this file).

Each seed is a byte stream as a vroom peer would send it: 4-byte big-endian
length prefixes, each followed by one msgpack array [type, rid, fields...].
Seeds are named seed-*; files with other names there were found by libFuzzer
and kept after `-merge=1`. Deterministic: rerunning rewrites the same bytes.
Needs python3-msgpack (Debian) for the valid frames.
"""
import os
import random
import struct

import msgpack

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire")

# stream/wire.h
HELLO, WELCOME, OK, ERROR, PING, PONG = 1, 2, 3, 4, 5, 6
CREATE, REMOVE, GRANT, REVOKE, SUBSCRIBE, UNSUBSCRIBE, INFO = range(100, 107)
PUSH, DELIVER = 200, 201
STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE, STREAM_ABORT, STREAM_CLAIM = 300, 301, 302, 303, 304
STREAM_REJOIN = 305
STREAM_OPENED, STREAM_DATA, STREAM_END, STREAM_CREDIT = 310, 311, 312, 320
ROOM_CLOSED = 400
FRAME_MAX = 1 << 20

ROOM = "AAAAAAAAAAAAAAAA"


def frame_body(body):
    return struct.pack(">I", len(body)) + body


def frame(*msg):
    return frame_body(msgpack.packb(list(msg), use_bin_type=True))


def nest(levels, leaf=b"\x01"):
    return b"\x91" * levels + leaf


seeds = {
    # one valid frame of every type in the schema table
    "hello": frame(HELLO, 1, 1, "alice"),
    "hello-token": frame(HELLO, 1, 1, "alice", b"\x00token\xff"),
    "welcome": frame(WELCOME, 1, "node-1", "0.1.0", {"max_frame": FRAME_MAX, "peers": ["a"]}),
    "ok": frame(OK, 2),
    "ok-value": frame(OK, 2, {"room": ROOM}),
    "error": frame(ERROR, 3, 21, "forbidden"),
    "ping": frame(PING, 4),
    "pong": frame(PONG, 4),
    "create": frame(CREATE, 5),
    "remove": frame(REMOVE, 6, ROOM),
    "grant": frame(GRANT, 7, ROOM, "bob"),
    "revoke": frame(REVOKE, 8, ROOM, "bob"),
    "subscribe": frame(SUBSCRIBE, 9, ROOM),
    "subscribe-topics": frame(SUBSCRIBE, 9, ROOM, ["t1", "t2"]),
    "unsubscribe": frame(UNSUBSCRIBE, 10, ROOM),
    "info": frame(INFO, 11, ROOM),
    "push": frame(PUSH, 12, ROOM, 1, b"payload\x00\x01"),
    "deliver": frame(DELIVER, 0, ROOM, 2**40, "alice", 1, b"payload"),
    "room-closed": frame(ROOM_CLOSED, 0, ROOM, "removed"),
    "stream-open": frame(STREAM_OPEN, 16, ROOM, "s1", "video", "clip.mp4", "video/mp4", 4096,
                         {"k": "v"}, ["bob"], 65536),
    "stream-chunk": frame(STREAM_CHUNK, 17, "s1", 0, b"\x00" * 64),
    "stream-close": frame(STREAM_CLOSE, 18, "s1", "", {}, None),
    "stream-abort": frame(STREAM_ABORT, 19, "s1", "cancelled"),
    "stream-rejoin": frame(STREAM_REJOIN, 20, ROOM, "s1", 2**40),
    "stream-rejoin-topics": frame(STREAM_REJOIN, 21, ROOM, "s1", 0, ["video", ""]),
    "stream-claim": frame(STREAM_CLAIM, 20, ROOM, "s1"),
    "stream-opened": frame(STREAM_OPENED, 0, ROOM, "s1", "alice", "video", "clip.mp4",
                           "video/mp4", None, {}, [], 65536),
    "stream-data": frame(STREAM_DATA, 0, "s1", 64, b"data"),
    "stream-end": frame(STREAM_END, 0, ROOM, "s1", "", {}, 4096, 2**64 - 1),
    "stream-credit": frame(STREAM_CREDIT, 0, "s1", 0, 16384),
    # empty strs: msgpack-c gives an empty fixstr a NULL pointer
    "remove-empty-room": frame_body(b"\x93\x65\x01\xa0"),
    "push-empty-fixstrs": frame_body(b"\x95\xcc\xc8\x01\xa0\x00\xa0"),
    "unknown-type": frame(7, 13, "x", {}, [1, -2], None),
    "unknown-type-max": frame(65535, 2**64 - 1),
    "ok-every-scalar": frame(OK, 14, [None, True, False, -1, -200, 70000, -(2**40), 2**63,
                                      1.5, "s" * 40, b"b" * 300, msgpack.ExtType(1, b"e" * 4),
                                      msgpack.ExtType(2, b"e" * 3)]),
    "push-big": frame(PUSH, 15, ROOM, 0, bytes(range(256)) * 12),
    "session": (frame(HELLO, 1, 1, "alice") + frame(CREATE, 2) + frame(PUSH, 3, ROOM, 0, b"hi")
                + frame(SUBSCRIBE, 4, ROOM, ["a"]) + frame(PING, 5)),
    # incomplete input
    "short-prefix": b"\x00\x00",
    "short-body": frame(HELLO, 1, 1, "alice")[:-3],
    "session-then-short": frame(PING, 1) + frame(PUSH, 2, ROOM, 0, b"abcdef")[:-1],
    # frame length
    "len-zero": b"\x00\x00\x00\x00" + frame(PING, 1),
    "len-over-limit": struct.pack(">I", FRAME_MAX + 1) + b"\x92\x05\x01",
    "len-max": b"\xff\xff\xff\xff",
    "len-at-limit": struct.pack(">I", FRAME_MAX) + b"\x92\x05\x01",
    # counts far larger than the bytes left
    "array32-huge": frame_body(b"\x93\x03\x01\xdd\xff\xff\xff\xff\xc0"),
    "map32-huge": frame_body(b"\x93\x03\x01\xdf\x7f\xff\xff\xff\xc0\xc0"),
    "str32-huge": frame_body(b"\x94\xcc\xc8\x01\xdb\xff\xff\xff\xf0abc"),
    "bin32-huge": frame_body(b"\x95\xcc\xc8\x01\xa1r\x00\xc6\x80\x00\x00\x00x"),
    "ext32-huge": frame_body(b"\x93\x03\x01\xc9\x7f\xff\xff\xff\x01x"),
    "array16-over-by-one": frame_body(b"\x93\x03\x01\xdc\x00\x03\x01\x02"),
    "root-array32-huge": frame_body(b"\xdd\x00\x01\x00\x00\x05\x01"),
    # depth, bytes, invalid values
    "nest-at-limit": frame_body(b"\x93\x03\x01" + nest(2)),
    "nest-too-deep": frame_body(b"\x93\x03\x01" + nest(3)),
    "nest-60": frame_body(nest(60)),
    "trailing-bytes": frame_body(msgpack.packb([PING, 1]) + b"\xc0"),
    "invalid-c1": frame_body(b"\x93\x03\x01\xc1"),
    # schema violations
    "remove-uint-room": frame(REMOVE, 1, 5),
    "push-uint-payload": frame(PUSH, 1, ROOM, 0, 7),
    "hello-missing-identity": frame(HELLO, 1, 1),
    "too-many-fields": frame(PING, 1, *range(15)),
    "type-str": frame("5", 1),
    "type-over-16-bits": frame(65536, 1),
    "rid-negative": frame(PING, -1),
    "root-not-array": frame_body(msgpack.packb({"type": 5})),
}

rng = random.Random(20260101)
seeds["garbage-random"] = bytes(rng.randrange(256) for _ in range(200))
seeds["garbage-ff"] = b"\xff" * 64
seeds["garbage-http"] = b"GET / HTTP/1.1\r\nHost: vroom\r\n\r\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {OUT}")


if __name__ == "__main__":
    main()
