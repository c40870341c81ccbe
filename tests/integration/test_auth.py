#!/usr/bin/python3
"""Tokens and abuse limits against real vroomd processes.

Keys and tokens come from the vroom CLI (`vroom keygen`, `vroom token`); the
node is driven with raw frames. Each case asserts the documented answer
(docs/protocol.md, "Tokens" and "Limits") and, from the node's log, the
specific reason it gives there. Every node is stopped with SIGTERM at the end
and must exit 0 with a sanitizer-clean log.

    VROOMD=build/node/vroomd VROOM=build/client/vroom python3 test_auth.py
"""

import base64
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import msgpack

from harness import (
    CREATE, ERROR, GRANT, HELLO, INFO, OK, PING, PONG, PUSH, REMOVE, SUBSCRIBE, WELCOME,
    E_AUTH, E_FORBIDDEN, E_LIMIT, E_SHUTDOWN,
    Node, TestFailure, check, expect_closed, expect_error, expect_open, frame_bytes,
    recv_frame, run_cases, send_frame, send_raw,
)

STREAM_OPEN = 300
GENERIC = "authentication failed"

S = {}


def vroom_bin():
    path = os.environ.get("VROOM")
    if not path or not os.access(path, os.X_OK):
        raise SystemExit("test_auth: set VROOM to the vroom CLI")
    return path


def vroom(*args, env=None, check_rc=0):
    e = dict(os.environ)
    for k in ("VROOM_TOKEN", "VROOM_IDENTITY", "VROOM_SERVER"):
        e.pop(k, None)
    if env:
        e.update(env)
    p = subprocess.run([vroom_bin()] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=30)
    if check_rc is not None:
        check(p.returncode == check_rc, "vroom %s: exit %d, not %d; stderr: %s" %
              (" ".join(map(str, args)), p.returncode, check_rc, p.stderr))
    return p


def keygen(name):
    d = os.path.join(S["tmp"], name)
    out = vroom("keygen", d).stdout.strip()
    return d, out


def mint(keydir, identity, ttl="1h", *extra):
    return vroom("token", "--key", os.path.join(keydir, "issuer.key"), "--identity", identity,
                 "--ttl", ttl, *extra).stdout.strip()


def tok_bytes(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def keys_file(name, *dirs, extra=""):
    path = os.path.join(S["tmp"], name)
    with open(path, "w") as f:
        f.write("# trusted issuers\n")
        for d in dirs:
            with open(os.path.join(d, "issuer.pub")) as pub:
                f.write(pub.read())
        f.write(extra)
    return path


def node():
    return S["node"]


def hello_with(n, identity, token, rid=1):
    """Connects and sends HELLO with a token (bytes or text); returns (sock, reply)."""
    s = n.connect()
    if isinstance(token, str):
        token = tok_bytes(token)
    fields = [HELLO, rid, 1, identity] + ([token] if token is not None else [])
    send_frame(s, fields)
    return s, recv_frame(s)


def admitted(n, identity, token):
    s, v = hello_with(n, identity, token)
    check(v[0] == WELCOME, "HELLO with a valid token got %r" % (v,))
    return s


def refused(n, identity, token, reason):
    """HELLO is answered with the one generic auth error and a close; the log
    names reason."""
    before = n.log().count("authentication failed: ")
    s, v = hello_with(n, identity, token, rid=9)
    try:
        check(v[0] == ERROR and v[1] == 9 and v[2] == E_AUTH, "expected auth, got %r" % (v,))
        check(v[3] == GENERIC, "the client learns only %r, not %r" % (GENERIC, v[3]))
        expect_closed(s)
    finally:
        s.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lines = [l for l in n.log().splitlines() if "authentication failed: " in l]
        if len(lines) > before:
            check(reason in lines[-1], "log says %r, expected %r" % (lines[-1], reason))
            return
        time.sleep(0.02)
    raise TestFailure("no 'authentication failed' line in the log")


class Session:
    """A raw READY connection: request() returns the reply to its rid."""

    def __init__(self, sock):
        self.sock, self.rid, self.events = sock, 1000, []

    def request(self, *frame):
        self.rid += 1
        send_frame(self.sock, [frame[0], self.rid] + list(frame[1:]))
        while True:
            v = recv_frame(self.sock)
            if v[1] == self.rid and v[0] in (OK, ERROR, PONG):
                return v
            self.events.append(v)

    def ok(self, *frame):
        v = self.request(*frame)
        check(v[0] == OK, "%r: expected OK, got %r" % (frame, v))
        return v[2] if len(v) > 2 else None

    def error(self, code, *frame):
        v = self.request(*frame)
        check(v[0] == ERROR and v[2] == code, "%r: expected error %d, got %r" % (frame, code, v))
        return v

    def close(self):
        self.sock.close()


def session(identity, token):
    return Session(admitted(node(), identity, token))


# ---------------------------------------------------------------- the CLI

def cli_keygen():
    d, pub = keygen("k1")
    key, pubf = os.path.join(d, "issuer.key"), os.path.join(d, "issuer.pub")
    check(stat.S_IMODE(os.stat(key).st_mode) == 0o600,
          "issuer.key has mode %o" % stat.S_IMODE(os.stat(key).st_mode))
    check(stat.S_IMODE(os.stat(d).st_mode) == 0o700, "the new directory is not 0700")
    check(len(base64.b64decode(pub)) == 32, "keygen printed %r" % pub)
    with open(pubf) as f:
        check(pub in f.read(), "issuer.pub does not hold the printed key")
    # never overwrites a key
    p = vroom("keygen", d, check_rc=1)
    check("remove it first" in p.stderr, "second keygen said %r" % p.stderr)
    vroom("keygen", check_rc=2)
    S["k1"] = d


def cli_token_format():
    t = mint(S["k1"], "alice", "90s", "--valid-from", "1700000000", "--create", "--sub", "*",
             "--push", "abc*")
    check(all(c.isalnum() or c in "-_" for c in t), "token text is not base64url: %r" % t)
    raw = tok_bytes(t)
    v = msgpack.unpackb(raw, raw=False)
    check(isinstance(v, list) and len(v) == 4 and v[0] == 1, "token is %r" % (v,))
    with open(os.path.join(S["k1"], "issuer.pub")) as f:
        pub = [l for l in f.read().splitlines() if l and not l.startswith("#")][0]
    check(v[1] == base64.b64decode(pub), "the issuer in the token is not the key pair's")
    check(isinstance(v[3], bytes) and len(v[3]) == 64, "signature is %r" % (v[3],))
    claims = msgpack.unpackb(v[2], raw=False)
    check(claims == {"identity": "alice", "iat": 1700000000, "exp": 1700000090,
                     "grants": {"create": True, "sub": ["*"], "push": ["abc*"]}},
          "claims are %r" % (claims,))
    claims = msgpack.unpackb(msgpack.unpackb(tok_bytes(mint(S["k1"], "bob")), raw=False)[2],
                             raw=False)
    check(sorted(claims) == ["exp", "iat", "identity"] and claims["exp"] - claims["iat"] == 3600,
          "a token without grants has %r" % (claims,))


def cli_token_usage():
    key = os.path.join(S["k1"], "issuer.key")
    for args in (["--identity", "a", "--ttl", "1h"],            # no key
                 ["--key", key, "--ttl", "1h"],                 # no identity
                 ["--key", key, "--identity", "a"],             # no ttl
                 ["--key", key, "--identity", "a", "--ttl", "0"],
                 ["--key", key, "--identity", "a", "--ttl", "5y"],
                 ["--key", key, "--identity", "a b", "--ttl", "1h"],
                 ["--key", key, "--identity", "a", "--ttl", "1h", "--sub", "a*b"],
                 ["--key", key, "--identity", "a", "--ttl", "1h", "--push", "x/y"],
                 ["--key", key, "--identity", "a", "--ttl", "1h"] + ["--sub", "r*"] * 17):
        vroom("token", *args, check_rc=2)
    p = vroom("token", "--key", os.path.join(S["tmp"], "nope"), "--identity", "a", "--ttl", "1h",
              check_rc=1)
    check("No such file" in p.stderr, "missing key file said %r" % p.stderr)
    os.chmod(key, 0o644)
    p = vroom("token", "--key", key, "--identity", "a", "--ttl", "1h")
    os.chmod(key, 0o600)
    check("can be read by others" in p.stderr, "no warning for a 0644 key: %r" % p.stderr)


# ---------------------------------------------------------------- HELLO

def start_node():
    S["k2"], _ = keygen("k2")   # trusted later, by reload
    S["k3"], _ = keygen("k3")   # never trusted
    S["keys"] = keys_file("trusted", S["k1"], extra="# comment\n\n")
    S["node"] = Node("--trusted-keys", S["keys"], "--stats", "127.0.0.1:0", "--hello-timeout", "2",
                     "--max-hello-failures", "0", "--max-rooms-per-identity", "3",
                     "--max-rooms", "50", name="auth")
    check("trusted keys: 1 from" in node().log(), "the node did not log its keys")


def valid_token_admits():
    t = mint(S["k1"], "alice")
    for claimed in ("", "alice"):
        s = session(claimed, t)
        room = s.ok(CREATE)
        info = s.ok(INFO, room)
        check(info["owner"] == "alice", "room owner is %r, not the token's identity" % info)
        s.close()


def identity_mismatch():
    refused(node(), "mallory", mint(S["k1"], "alice"), "claims identity 'mallory'")
    # an identity that breaks the rule is refused the same way
    refused(node(), "a b", mint(S["k1"], "alice"), "claims identity 'a b'")


def no_token():
    refused(node(), "alice", None, "no token in HELLO")


def expired_token():
    old = str(int(time.time()) - 7200)
    refused(node(), "", mint(S["k1"], "alice", "1h", "--valid-from", old), "expired")


def not_yet_valid_token():
    later = str(int(time.time()) + 3600)
    refused(node(), "", mint(S["k1"], "alice", "1h", "--valid-from", later), "not yet valid")
    # within the 60 s leeway it is valid
    soon = str(int(time.time()) + 30)
    admitted(node(), "", mint(S["k1"], "alice", "1h", "--valid-from", soon)).close()


def unknown_issuer():
    refused(node(), "", mint(S["k3"], "alice"), "unknown issuer")


def bad_signature():
    raw = bytearray(tok_bytes(mint(S["k1"], "alice")))
    raw[-1] ^= 1
    refused(node(), "", bytes(raw), "bad signature")
    # the claims changed under the signature: another identity
    t = msgpack.unpackb(tok_bytes(mint(S["k1"], "alice")), raw=False)
    t[2] = t[2].replace(b"alice", b"admin")
    refused(node(), "", msgpack.packb(t, use_bin_type=True), "bad signature")


def malformed_tokens():
    t = msgpack.unpackb(tok_bytes(mint(S["k1"], "alice")), raw=False)
    for bad in (b"", b"\xc1", b"garbage" * 10, b"\xdd\xff\xff\xff\xff",
                msgpack.packb([2] + t[1:], use_bin_type=True),
                msgpack.packb(t + [0], use_bin_type=True),
                msgpack.packb(t[:3], use_bin_type=True),
                b"\x00" * 5000):
        refused(node(), "", bad, "malformed")
    # a str carrying the token's text is not the token
    s = node().connect()
    send_frame(s, [HELLO, 9, 1, "", mint(S["k1"], "alice")])
    expect_error(s, E_AUTH, rid=9)
    expect_closed(s)
    s.close()


def others_unaffected():
    # A session admitted before all the refusals above still works.
    s = S["steady"]
    expect_open(s.sock)
    s.ok(INFO, S["steady_room"])


# ---------------------------------------------------------------- grants

def grants_create():
    s = session("", mint(S["k1"], "viewer", "1h", "--sub", "*"))
    v = s.error(E_FORBIDDEN, CREATE)
    check("creating rooms" in v[3], "CREATE refused with %r" % (v,))
    s.close()
    s = session("", mint(S["k1"], "maker", "1h", "--create"))
    room = s.ok(CREATE)
    # the owner uses its own room whatever the patterns say
    s.ok(SUBSCRIBE, room)
    check(isinstance(s.ok(PUSH, room, 0, b"mine"), int), "owner push")
    s.ok(INFO, room)
    s.close()


def grants_subscribe_patterns():
    owner = session("", mint(S["k1"], "host"))
    rooms = [owner.ok(CREATE) for _ in range(2)]
    exact = session("", mint(S["k1"], "guest", "1h", "--sub", rooms[0]))
    exact.ok(SUBSCRIBE, rooms[0])
    v = exact.error(E_FORBIDDEN, SUBSCRIBE, rooms[1])
    check("subscribing" in v[3], "%r" % (v,))
    exact.error(E_FORBIDDEN, INFO, rooms[1])
    exact.ok(INFO, rooms[0])
    # a prefix pattern
    pre = session("", mint(S["k1"], "guest", "1h", "--sub", rooms[1][:5] + "*"))
    pre.ok(SUBSCRIBE, rooms[1])
    if rooms[0][:5] != rooms[1][:5]:
        pre.error(E_FORBIDDEN, SUBSCRIBE, rooms[0])
    # unknown rooms are still unknown_room, not forbidden
    pre.error(20, SUBSCRIBE, "AAAAAAAAAAAAAAAA")
    for c in (owner, exact, pre):
        c.close()


def grants_push_needs_both():
    owner = session("", mint(S["k1"], "boss"))
    room = owner.ok(CREATE)
    owner.ok(SUBSCRIBE, room)
    # granted by the owner but not by the token
    a = session("", mint(S["k1"], "worker", "1h", "--sub", "*"))
    owner.ok(GRANT, room, "worker")
    v = a.error(E_FORBIDDEN, PUSH, room, 0, b"x")
    check("token" in v[3], "refused by %r" % (v,))
    a.error(E_FORBIDDEN, STREAM_OPEN, room, "s1", "", "", "", None, {}, [], 0)
    a.close()
    # allowed by the token but not by the owner
    b = session("", mint(S["k1"], "helper", "1h", "--push", room))
    b.error(E_FORBIDDEN, PUSH, room, 0, b"x")
    # both: the push goes through, and INFO is allowed by the push grant
    owner.ok(GRANT, room, "helper")
    seq = b.ok(PUSH, room, 3, b"both")
    b.ok(INFO, room)
    v = recv_frame(owner.sock)
    check(v[0] == 201 and v[3] == seq and v[4] == "helper" and v[6] == b"both",
          "subscriber got %r" % (v,))
    b.close()
    # an unrestricted token needs only the owner's grant
    c = session("", mint(S["k1"], "worker"))
    c.ok(PUSH, room, 0, b"free")
    c.close()
    owner.close()


def token_expires_in_session():
    s = session("", mint(S["k1"], "brief", "2s"))
    expect_open(s.sock)
    v = recv_frame(s.sock, timeout=6)
    check(v[0] == ERROR and v[1] == 0 and v[2] == E_AUTH and "expired" in v[3],
          "expiry sent %r" % (v,))
    expect_closed(s.sock)
    s.close()
    check("token expired" in node().log(), "no 'token expired' in the log")


# ---------------------------------------------------------------- reload

def sighup(n, text, timeout=5):
    """SIGHUP, then waits for one more log line holding text."""
    before = n.log().count(text)
    n.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if n.log().count(text) > before:
            return
        time.sleep(0.02)
    raise TestFailure("no %r in the log after SIGHUP" % text)


def reload_keys():
    n = node()
    t2 = mint(S["k2"], "carol")
    refused(n, "", t2, "unknown issuer")
    held = session("", mint(S["k1"], "dave"))
    # add k2, drop k1: new k1 tokens are refused, the k1 session goes on
    keys_file("trusted", S["k2"])
    sighup(n, "reload: trusted keys: 1 from")
    admitted(n, "", t2).close()
    refused(n, "", mint(S["k1"], "dave"), "unknown issuer")
    expect_open(held.sock)
    held.close()
    # a bad file keeps the keys in use
    with open(S["keys"], "w") as f:
        f.write("not a key\n")
    sighup(n, "keeping the 1 keys in use")
    check("line 1: not a base64 key" in n.log(), "the reload error names no line")
    admitted(n, "", t2).close()
    # back to k1 (and k2) for the cases after this one
    keys_file("trusted", S["k1"], S["k2"])
    sighup(n, "reload: trusted keys: 2 from")


# ---------------------------------------------------------------- starting

def start_rules():
    # an empty keys file: the node does not start (it would trust no one,
    # or fall back to trusting everyone)
    empty = keys_file("empty")
    try:
        Node("--trusted-keys", empty, "--stats", "off", name="auth-empty", start_timeout=3)
        raise AssertionError("a node started with an empty keys file")
    except TestFailure as e:
        check("no key in the file" in str(e), "empty keys file: %s" % e)
    # a non-loopback listener needs keys (or --insecure)
    for flags, ok in ((["--trusted-keys", S["keys"]], True), ([], False)):
        p = subprocess.Popen([node().binary, "--listen", "0.0.0.0:0", "--stats", "off"] + flags,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline, err = time.monotonic() + 10, ""
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            time.sleep(0.05)
            if ok:
                break
        if ok:
            time.sleep(0.5)
            check(p.poll() is None, "with trusted keys a 0.0.0.0 listener was refused: %s" %
                  (p.stderr.read() if p.poll() is not None else ""))
            p.send_signal(signal.SIGTERM)
            p.wait(10)
            err = p.stderr.read()
            check("listening on 0.0.0.0" in err, "no listening line: %s" % err)
        else:
            err = p.stderr.read()
            check(p.returncode == 1 and "--trusted-keys" in err,
                  "without keys: exit %s, %s" % (p.returncode, err))


def cli_with_token():
    addr = "%s:%d" % (node().host, node().port)
    tf = os.path.join(S["tmp"], "erin.token")
    with open(tf, "w") as f:
        f.write(mint(S["k1"], "erin") + "\n")
    room = vroom("-s", addr, "--token", tf, "room", "create").stdout.strip()
    check(len(room) == 16, "room create printed %r" % room)
    info = vroom("-s", addr, "room", "info", room, env={"VROOM_TOKEN": tf}).stdout
    check('"owner":"erin"' in info, "room info: %r" % info)
    with open(tf) as f:
        text = f.read().strip()
    info = vroom("-s", addr, "room", "info", room, env={"VROOM_TOKEN": text}).stdout
    check('"owner":"erin"' in info, "VROOM_TOKEN holding the text: %r" % info)
    p = vroom("-s", addr, "room", "info", room, env={"VROOM_TOKEN": "/no/such/file"}, check_rc=1)
    check("names no file" in p.stderr, "a bad VROOM_TOKEN said %r" % p.stderr)
    out = vroom("-s", addr, "--token", tf, "cluster", "room", room).stdout
    check('"relay"' in out, "cluster room with a token: %r" % out)
    # --identity must agree with the token
    p = vroom("-s", addr, "--token", tf, "--identity", "frank", "room", "create", check_rc=1)
    check("auth: authentication failed" in p.stderr, "mismatch said %r" % p.stderr)
    p = vroom("-s", addr, "--identity", "erin", "room", "create", check_rc=1)
    check("auth" in p.stderr, "no token said %r" % p.stderr)
    bad = os.path.join(S["tmp"], "bad.token")
    with open(bad, "w") as f:
        f.write("not a token!\n")
    p = vroom("-s", addr, "--token", bad, "room", "create", check_rc=1)
    check("not a token" in p.stderr, "a bad token file said %r" % p.stderr)


# ---------------------------------------------------------------- limits

def rooms_per_identity():
    s = session("", mint(S["k1"], "hoarder"))
    rooms = [s.ok(CREATE) for _ in range(3)]
    v = s.error(E_LIMIT, CREATE)
    check("max_rooms_per_identity" in v[3], "%r" % (v,))
    expect_open(s.sock)
    # another identity is not affected; a removed room frees a slot
    t = session("", mint(S["k1"], "other"))
    t.ok(CREATE)
    s.ok(REMOVE, rooms[0])
    s.ok(CREATE)
    s.error(E_LIMIT, CREATE)
    s.close()
    t.close()


def rooms_on_the_node():
    # max_rooms 50: fill the node with rooms of many identities
    made, sessions = 0, []
    while True:
        s = session("", mint(S["k1"], "filler%d" % len(sessions)))
        sessions.append(s)
        stop = False
        for _ in range(3):
            v = s.request(CREATE)
            if v[0] == ERROR:
                check(v[2] == E_LIMIT and "max_rooms)" in v[3], "%r" % (v,))
                stop = True
                break
            made += 1
        if stop:
            break
        check(len(sessions) < 40, "max_rooms never refused a CREATE")
    check(made < 50, "made %d rooms" % made)
    for s in sessions:
        s.close()


def failed_hellos_per_source():
    n = Node("--stats", "off", "--max-hello-failures", "5", "--hello-timeout", "1",
             name="auth-fail")
    try:
        keep = Session(n.connect())
        send_frame(keep.sock, [HELLO, 1, 1, "keeper"])
        check(recv_frame(keep.sock)[0] == WELCOME, "keeper")
        for i in range(5):
            s = n.connect()
            send_frame(s, [HELLO, 1, 1, "bad identity"])
            expect_error(s, E_AUTH)
            s.close()
        s = n.connect()
        v = recv_frame(s)
        check(v[0] == ERROR and v[1] == 0 and v[2] == E_LIMIT and "max_hello_failures" in v[3],
              "the 6th connection got %r" % (v,))
        expect_closed(s)
        s.close()
        check("failed HELLOs from its address" in n.log(), "no refusal in the log")
        expect_open(keep.sock)
        keep.close()
    finally:
        n.stop()


def inbound_rate():
    n = Node("--stats", "off", "--max-in-rate", "65536", name="auth-rate")
    try:
        a = n.connect()
        send_frame(a, [HELLO, 1, 1, "fast"])
        check(recv_frame(a)[0] == WELCOME, "fast")
        b = n.connect()
        send_frame(b, [HELLO, 1, 1, "bystander"])
        check(recv_frame(b)[0] == WELCOME, "bystander")
        blob = b"\x00" * 8000
        frames = b"".join(frame_bytes([PING, 10 + i, blob]) for i in range(48))  # ~384 KB
        t0 = time.monotonic()
        threading_send(a, frames)
        # meanwhile the bystander is served at once
        t1 = time.monotonic()
        expect_open(b, timeout=1)
        check(time.monotonic() - t1 < 0.5, "the bystander waited for the flooder")
        got = 0
        while got < 48:
            v = recv_frame(a, timeout=20)
            check(v[0] == PONG, "flooder got %r" % (v,))
            got += 1
        dt = time.monotonic() - t0
        check(dt > 3.5, "384 KB at 64 KiB/s took only %.2f s" % dt)
        a.close()
        b.close()
    finally:
        n.stop()


def threading_send(sock, data):
    import threading
    t = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    t.start()
    S.setdefault("threads", []).append(t)


def free_udp_tcp_port():
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise TestFailure("no port free for both UDP and TCP")


def tokens_in_a_cluster():
    # Two nodes with the same trusted keys. A restricted token's patterns
    # are checked before a request leaves for the room's relay: the relay's
    # proxy of the session knows no grants.
    key = os.path.join(S["tmp"], "cluster.key")
    vroom("cluster", "keygen", key)
    PLACE = 108
    nodes = []
    try:
        p1 = free_udp_tcp_port()
        for name, seeds in (("a", None), ("b", "127.0.0.1:%d" % p1)):
            port = p1 if name == "a" else free_udp_tcp_port()
            flags = ["--cluster", "127.0.0.1:%d" % port, "--cluster-key", key, "--node-name",
                     name, "--stats", "off", "--trusted-keys", S["keys"]]
            if seeds:
                flags += ["--seeds", seeds]
            nodes.append(Node(*flags, name="auth-cluster-" + name))
        a, b = nodes
        owner = Session(admitted(a, "", mint(S["k1"], "hostc")))
        # a room relayed by b, made through a (once the two have met)
        remote = []
        deadline = time.monotonic() + 15
        while len(remote) < 2 and time.monotonic() < deadline:
            room = owner.ok(CREATE)
            if owner.ok(PLACE, room)["relay"] == "b":
                remote.append(room)
            else:
                time.sleep(0.05)
        check(len(remote) == 2, "no room relayed by b within 15 s")
        viewer = Session(admitted(a, "", mint(S["k1"], "viewc", "1h", "--sub", remote[0])))
        viewer.ok(SUBSCRIBE, remote[0])
        viewer.error(E_FORBIDDEN, SUBSCRIBE, remote[1])
        viewer.error(E_FORBIDDEN, PUSH, remote[0], 0, b"x")
        viewer.error(E_FORBIDDEN, CREATE)
        viewer.ok(INFO, remote[0])
        owner.ok(GRANT, remote[0], "viewc")
        viewer.error(E_FORBIDDEN, PUSH, remote[0], 0, b"still no push grant")
        seq = owner.ok(PUSH, remote[0], 1, b"across")
        v = recv_frame(viewer.sock, timeout=5)
        check(v[0] == 201 and v[3] == seq and v[4] == "hostc" and v[6] == b"across",
              "the viewer got %r" % (v,))
        # b wants tokens too
        refused(b, "hostc", None, "no token in HELLO")
        owner.close()
        viewer.close()
    finally:
        for n in nodes:
            n.stop()


def counters_in_stats():
    # Every refusal above is counted in the stats port's /stats ("guard").
    import json
    import re
    import urllib.request
    m = re.search(r"stats on (\S+):(\d+) \(http\)", node().log())
    check(m, "no stats line in the log")
    with urllib.request.urlopen("http://%s:%s/stats" % (m.group(1), m.group(2)), timeout=5) as r:
        g = json.loads(r.read())["guard"]
    check(g["tokens_required"] is True, "guard: %r" % g)
    for key, least in (("auth_failures", 15), ("hello_failures", 15), ("tokens_expired", 1),
                       ("grant_refusals", 5), ("limit_owner", 2), ("limit_rooms", 1)):
        check(g[key] >= least, "guard.%s is %r, expected at least %d: %r" % (key, g[key], least, g))
    with urllib.request.urlopen("http://%s:%s/metrics" % (m.group(1), m.group(2)), timeout=5) as r:
        text = r.read().decode()
    check("vroom_auth_failures_total %d" % g["auth_failures"] in text, "no auth_failures in /metrics")


# ---------------------------------------------------------------- plumbing

def setup():
    S["tmp"] = tempfile.mkdtemp(prefix="vroom-auth-")
    cli_keygen()
    start_node()
    S["steady"] = session("", mint(S["k1"], "steady"))
    S["steady_room"] = S["steady"].ok(CREATE)


def teardown():
    try:
        n = S.get("node")
        if n:
            if S.get("steady"):
                n.terminate()
                expect_error(S["steady"].sock, E_SHUTDOWN, rid=0)
                S["steady"].close()
            n.stop()
    finally:
        shutil.rmtree(S.get("tmp", "/nonexistent"), ignore_errors=True)


def after_each(name):
    check(node().alive(), "vroomd died")
    expect_open(S["steady"].sock)


CASES = [
    ("token: format as documented", cli_token_format),
    ("token: usage errors (2)", cli_token_usage),
    ("valid token, identity empty or the same", valid_token_admits),
    ("identity other than the token's (6)", identity_mismatch),
    ("no token (6)", no_token),
    ("expired token (6)", expired_token),
    ("token not yet valid (6); leeway", not_yet_valid_token),
    ("token signed by an unknown key (6)", unknown_issuer),
    ("bad signature, changed claims (6)", bad_signature),
    ("malformed tokens (6)", malformed_tokens),
    ("a session admitted earlier is unaffected", others_unaffected),
    ("grants: create (21)", grants_create),
    ("grants: subscribe patterns (21)", grants_subscribe_patterns),
    ("grants: push needs token and owner (21)", grants_push_needs_both),
    ("token expiry ends the session (6)", token_expires_in_session),
    ("SIGHUP reloads the trusted keys", reload_keys),
    ("start: empty keys file; 0.0.0.0 needs keys", start_rules),
    ("vroom --token / VROOM_TOKEN", cli_with_token),
    ("max_rooms_per_identity (23)", rooms_per_identity),
    ("max_rooms (23)", rooms_on_the_node),
    ("every refusal counted in /stats", counters_in_stats),
    ("grants in a cluster of two (21)", tokens_in_a_cluster),
    ("max_hello_failures per source (23)", failed_hellos_per_source),
    ("max_in_rate holds a flooder back", inbound_rate),
]

if __name__ == "__main__":
    run_cases("auth", CASES, setup=setup, teardown=teardown, after_each=after_each)
