#!/usr/bin/python3
"""Writes the seed corpus for fuzz_memb into corpus/memb/ (next to this file).

A seed is either one cluster datagram (fuzz_memb feeds the whole input to
memb_recv first) or a sequence of records [flags, len_hi, len_lo, bytes]
(flags bits 0-1: sender address, bits 2-7: clock advance in 10 ms steps;
an empty record with flags 0xff is a leave, with 0xfe a join).
The format is in cluster/memb.c and docs/protocol.md. Seeds are named
seed-*; other files there were found by libFuzzer and kept by a merge.
Deterministic: rerunning rewrites the same bytes. Needs python3-msgpack.
"""
import os
import struct

import msgpack

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "memb")

PING, ACK, PING_REQ, SYNC, STATE, GOSSIP = 1, 2, 3, 4, 5, 6
ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3
A = ("a", "10.0.0.1:7946", "10.0.0.1:7400")  # the instance under test, incarnation 5
B = ("b", "10.0.0.2:7946", "")  # known to it, incarnation 1
C = ("c", "10.0.0.3:7946", "")


def item(state, who, inc):
    return [state, who[0], inc, who[1], who[2]]


def dg(type_, *fields, sender="b", seq=1, items=()):
    return msgpack.packb([1, type_, sender, seq, *fields, list(items)], use_bin_type=True)


def rec(body, sender=0, advance=0):
    return bytes([(advance << 2) | sender]) + struct.pack(">H", len(body)) + body


many = [item(ALIVE, ("n%03d" % i, "10.1.%d.%d:7946" % (i // 250, i % 250), ""), 1)
        for i in range(300)]

seeds = {
    # one datagram of each type
    "ping": dg(PING, "a", items=[item(ALIVE, B, 1)]),
    "ping-other": dg(PING, "z"),
    "ping-suspect-buddy": dg(PING, "a", items=[item(SUSPECT, A, 5)]),
    "ack": dg(ACK, seq=12345),
    "ping-req": dg(PING_REQ, "c", "10.0.0.3:7946", items=[item(ALIVE, C, 1)]),
    "ping-req-self": dg(PING_REQ, "a", "10.0.0.1:7946"),
    "sync": dg(SYNC, items=[item(ALIVE, B, 1), item(DEAD, C, 1), item(ALIVE, A, 5)]),
    "state": dg(STATE, items=[item(LEFT, C, 1), item(SUSPECT, B, 2)]),
    "state-many": dg(STATE, items=many),
    "gossip": dg(GOSSIP, items=[item(ALIVE, ("d", "10.0.0.4:7946", "10.0.0.4:7400"), 9)]),
    "gossip-dead-self": dg(GOSSIP, items=[item(DEAD, A, 7)]),
    "gossip-left": dg(GOSSIP, items=[item(LEFT, B, 1), item(LEFT, C, 1)]),
    "gossip-restart": dg(GOSSIP, items=[item(ALIVE, ("c", "10.9.9.9:1", "x:2"), 99)]),
    "gossip-max-inc": dg(GOSSIP, items=[item(SUSPECT, A, (1 << 63) - 1)]),
    "extra-fields": msgpack.packb([1, GOSSIP, "b", 1, None, "x", [item(ALIVE, C, 3) + [True]]]),
    # malformed
    "wrong-version": msgpack.packb([2, GOSSIP, "b", 1, []]),
    "unknown-type": msgpack.packb([1, 99, "b", 1, []]),
    "huge-array": b"\xdd\xff\xff\xff\xff\x01",
    "huge-list": b"\x95\x01\x06\xa1b\x01\xdd\x00\x10\x00\x00",
    "deep": b"\x95\x01\x06\xa1b\x01\x91\x91\x91\x00",
    "bad-utf8": dg(GOSSIP, items=[item(ALIVE, ("b\xc0", "h:1", ""), 1)]).replace(
        b"\xa3b\xc3\x80", b"\xa2b\xc0"),
    "long-name": dg(GOSSIP, items=[item(ALIVE, ("n" * 65, "h:1", ""), 1)]),
    "truncated": dg(GOSSIP, items=[item(ALIVE, C, 1)])[:-3],
    "inc-2-63": dg(GOSSIP, items=[item(ALIVE, C, 1 << 63)]),
    # sequences: ping then time, suspicion of b with no refutation, a
    # restart, a sync reply in two parts
    "seq-probe": rec(dg(PING, "a")) + rec(dg(ACK, seq=1), 1, 20) + rec(b"", 0, 63) * 4,
    "seq-suspect": rec(dg(GOSSIP, items=[item(SUSPECT, B, 1)]), 2) + rec(b"", 0, 63) * 6,
    "seq-restart": rec(dg(GOSSIP, items=[item(DEAD, C, 1)])) + rec(
        dg(GOSSIP, sender="c", items=[item(ALIVE, ("c", "10.0.0.5:1", ""), 2)]), 1, 5),
    "seq-sync": rec(dg(SYNC, items=many[:150])) + rec(dg(STATE, items=many[150:]), 0, 1),
    "seq-refute": rec(dg(GOSSIP, items=[item(SUSPECT, A, 5)]), 3) + rec(
        dg(GOSSIP, items=[item(DEAD, A, 6)]), 3, 1),
    "seq-leave": rec(dg(PING, "a")) + b"\xff\x00\x00" + rec(
        dg(GOSSIP, items=[item(SUSPECT, A, 5), item(ALIVE, A, 9)]), 1, 1) + rec(b"", 0, 63),
    "seq-join": b"\xfe\x00\x00" + rec(dg(STATE, sender="c", items=[item(ALIVE, C, 1)]), 2, 1),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
