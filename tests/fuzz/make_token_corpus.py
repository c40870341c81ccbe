#!/usr/bin/python3
"""Writes the hand-made seeds of corpus/token (seed-*), for fuzz_token.c.

fuzz_token reads each input as a token, as a claim set (which it also signs
with its own trusted key and verifies, so a claim-set seed reaches every step
of token_verify), and as the text of key files and tokens. The seeds cover
every rule of the "Tokens" section of docs/protocol.md at least once, on
both sides. The clock in fuzz_token is NOW = 1700000000.

    python3 tests/fuzz/make_token_corpus.py [DIR]   (default: corpus/token)
"""

import base64
import os
import struct
import sys

import msgpack

NOW = 1700000000


def pack(v):
    return msgpack.packb(v, use_bin_type=True)


def claims(**kw):
    c = {"identity": "alice", "iat": NOW - 10, "exp": NOW + 3600}
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


SEEDS = {}

# ---- claim sets (signed and verified by the target itself)
SEEDS["claims-min"] = pack(claims())
SEEDS["claims-grants"] = pack(claims(grants={"create": True, "sub": ["*"], "push": ["abc*", "dnPkrPBNbesYQj3I"]}))
SEEDS["claims-grants-empty"] = pack(claims(grants={}))
SEEDS["claims-grants-16"] = pack(claims(grants={"sub": ["r%02d*" % i for i in range(16)]}))
SEEDS["claims-grants-17"] = pack(claims(grants={"push": ["r%02d" % i for i in range(17)]}))
SEEDS["claims-pattern-long"] = pack(claims(grants={"sub": ["a" * 64 + "*", "b" * 64]}))
SEEDS["claims-pattern-65"] = pack(claims(grants={"sub": ["a" * 65]}))
SEEDS["claims-pattern-star-mid"] = pack(claims(grants={"sub": ["a*b"]}))
SEEDS["claims-pattern-bad-char"] = pack(claims(grants={"sub": ["a/b"]}))
SEEDS["claims-pattern-empty"] = pack(claims(grants={"sub": [""]}))
SEEDS["claims-pattern-not-str"] = pack(claims(grants={"sub": [1]}))
SEEDS["claims-grants-not-map"] = pack(claims(grants=["create"]))
SEEDS["claims-grant-unknown"] = pack(claims(grants={"admin": True}))
SEEDS["claims-create-not-bool"] = pack(claims(grants={"create": 1}))
SEEDS["claims-sub-not-array"] = pack(claims(grants={"sub": "*"}))
SEEDS["claims-expired"] = pack(claims(iat=NOW - 7200, exp=NOW - 3600))
SEEDS["claims-exp-now"] = pack(claims(exp=NOW))
SEEDS["claims-future"] = pack(claims(iat=NOW + 3600, exp=NOW + 7200))
SEEDS["claims-skew-ok"] = pack(claims(iat=NOW + 60, exp=NOW + 7200))
SEEDS["claims-exp-before-iat"] = pack(claims(iat=NOW, exp=NOW))
SEEDS["claims-u64"] = pack(claims(iat=2 ** 64 - 2, exp=2 ** 64 - 1))
SEEDS["claims-negative"] = pack(claims(iat=-1))
SEEDS["claims-no-identity"] = pack(claims(identity=None))
SEEDS["claims-no-exp"] = pack(claims(exp=None))
SEEDS["claims-identity-128"] = pack(claims(identity="x" * 128))
SEEDS["claims-identity-129"] = pack(claims(identity="x" * 129))
SEEDS["claims-identity-space"] = pack(claims(identity="a b"))
SEEDS["claims-identity-utf8"] = pack(claims(identity="żółw"))
SEEDS["claims-identity-bin"] = pack(claims(identity=b"alice"))
SEEDS["claims-identity-bad-utf8"] = b"\x83" + pack("identity") + b"\xa2\xc3\x28" + pack("iat") + pack(1) + pack("exp") + pack(2)
SEEDS["claims-unknown"] = pack(claims(aud="cluster"))
SEEDS["claims-dup"] = b"\x84" + pack("identity") + pack("a") + pack("iat") + pack(1) + pack("exp") + pack(2) + pack("identity") + pack("b")
SEEDS["claims-not-map"] = pack(["alice", 1, 2])
SEEDS["claims-int-key"] = pack({1: "alice"})
SEEDS["claims-deep"] = pack(claims(grants={"sub": [["a"]]}))
SEEDS["claims-map32-huge"] = b"\xdf\xff\xff\xff\xff"
SEEDS["claims-trailing"] = pack(claims()) + b"\x00"
SEEDS["claims-truncated"] = pack(claims())[:-3]

# ---- tokens (outer form; signatures made up, so verification fails early)
key = bytes(range(1, 33))
body = pack(claims())
SEEDS["token-shape"] = pack([1, key, body, b"\x00" * 64])
SEEDS["token-format-2"] = pack([2, key, body, b"\x00" * 64])
SEEDS["token-short-key"] = pack([1, key[:31], body, b"\x00" * 64])
SEEDS["token-short-sig"] = pack([1, key, body, b"\x00" * 63])
SEEDS["token-str-fields"] = msgpack.packb([1, key.decode("latin-1"), body.decode("latin-1"), "x" * 64], use_bin_type=False)
SEEDS["token-5"] = pack([1, key, body, b"\x00" * 64, 0])
SEEDS["token-empty-claims"] = pack([1, key, b"", b"\x00" * 64])
SEEDS["token-array32-huge"] = b"\xdd\xff\xff\xff\xff"
SEEDS["token-bin32-huge"] = b"\x94\x01\xc6\xff\xff\xff\xff"
SEEDS["token-garbage"] = b"\xc1\xc1\xc1"

# ---- texts
pk = base64.b64encode(key).decode()
SEEDS["text-keys"] = ("# trusted issuers\n%s\n\n  %s  # same key again\n%s\n" % (
    pk, pk, base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="))).encode()
SEEDS["text-keys-bad"] = b"not a key\n"
SEEDS["text-keys-short"] = base64.b64encode(key[:31]) + b"\n"
SEEDS["text-keys-65"] = b"".join(base64.b64encode(struct.pack(">I", i) * 8) + b"\n" for i in range(65))
SEEDS["text-token"] = base64.urlsafe_b64encode(SEEDS["token-shape"]).rstrip(b"=") + b"\n"
SEEDS["text-pattern"] = b"dnPkrPBN*"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "token")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
