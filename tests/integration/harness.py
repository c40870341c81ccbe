"""Integration-test harness for vroomd (python3 stdlib + msgpack only).

A test file starts one or more real vroomd processes on 127.0.0.1 with
Node(...), talks to them with raw frames (send_frame, send_raw, recv_frame,
hello) or the small Client wrapper, and runs its cases with run_cases(),
which prints one line per case and exits non-zero if any case failed.

The vroomd binary comes from the VROOMD environment variable (set by
tests/integration/meson.build) or from the first command-line argument.
Node logs go to VROOM_TEST_TMP (meson's build dir for this folder) when set,
else to a temporary directory.
"""

import atexit
import base64
import ctypes
import errno
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack

# Message types and error codes (stream/wire.h).
HELLO, WELCOME, OK, ERROR, PING, PONG = 1, 2, 3, 4, 5, 6
CREATE, REMOVE, GRANT, REVOKE, SUBSCRIBE, UNSUBSCRIBE, INFO = range(100, 107)
PUSH, DELIVER = 200, 201
ROOM_CLOSED = 400

E_BAD_FRAME = 1
E_TOO_LARGE = 2
E_UNKNOWN_TYPE = 3
E_HELLO_REQUIRED = 4
E_VERSION = 5
E_AUTH = 6
E_TIMEOUT = 7
E_SLOW_CONSUMER = 8
E_SHUTDOWN = 9
E_UNKNOWN_ROOM = 20
E_FORBIDDEN = 21
E_NOT_OWNER = 22
E_LIMIT = 23
E_BAD_REQUEST = 24
E_INTERNAL = 99

WIRE_VERSION = 1
FRAME_MAX_DEFAULT = 1 << 20

SANITIZER_MARKS = ("AddressSanitizer", "runtime error", "LeakSanitizer")
LISTEN_RE = re.compile(r"listening on (\S+):(\d+) \(clients\)")


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def vroomd_path():
    path = os.environ.get("VROOMD")
    if not path and len(sys.argv) > 1:
        path = sys.argv[1]
    if not path:
        raise SystemExit("harness: set VROOMD or pass the vroomd path as the first argument")
    if not os.access(path, os.X_OK):
        raise SystemExit("harness: %s is not an executable" % path)
    return path


def _log_dir():
    d = os.environ.get("VROOM_TEST_TMP")
    if d:
        d = os.path.join(d, "logs")
        os.makedirs(d, exist_ok=True)
        return d
    return tempfile.mkdtemp(prefix="vroom-it-")


# ---------------------------------------------------------------- the node

_live_nodes = []


def _kill_leftovers():
    for n in _live_nodes:
        n.kill()


atexit.register(_kill_leftovers)


def _die_with_parent():
    # In the child before exec: SIGKILL vroomd if the test process dies
    # (a meson timeout, a crash) without stopping it.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass

class Node:
    """One vroomd on 127.0.0.1 with an ephemeral port; stderr kept in a file."""

    _count = 0

    def __init__(self, *flags, name="vroomd", env=None, start_timeout=10.0):
        Node._count += 1
        self.name = name
        self.binary = vroomd_path()
        self.flags = ["--listen", "127.0.0.1:0"] + [str(f) for f in flags]
        self.log_path = os.path.join(
            _log_dir(), "%s-%d-%d.log" % (name, os.getpid(), Node._count))
        self._log = open(self.log_path, "wb")
        penv = dict(os.environ)
        if env:
            penv.update(env)
        self.proc = subprocess.Popen([self.binary] + self.flags, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, env=penv,
                                     preexec_fn=_die_with_parent)
        _live_nodes.append(self)
        self.pid = self.proc.pid
        self.host, self.port = None, None
        self.returncode = None
        self.terminated = False
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            self.kill()
            raise TestFailure("vroomd did not print its listening line within %.0f s "
                              "(exit %s); log:\n%s" % (start_timeout, self.proc.returncode,
                                                        self.log()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def connect(self, timeout=5.0, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((self.host, self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def rss_kib(self):
        return rss_kib(self.pid)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def terminate(self):
        """Sends SIGTERM once (a second one makes vroomd exit at once)."""
        if not self.terminated and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout=10.0):
        """SIGTERM (once); asserts exit code 0 and a sanitizer-clean log."""
        if self.returncode is None:
            self.terminate()
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TestFailure("vroomd did not exit within %.0f s of SIGTERM" % timeout)
            self._log.close()
        text = self.log()
        for mark in SANITIZER_MARKS:
            check(mark not in text, "vroomd log has %r:\n%s" % (mark, tail(text)))
        check(self.returncode == 0,
              "vroomd exited with %s after SIGTERM; log:\n%s" % (self.returncode, tail(text)))
        return text

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


def rss_kib(pid):
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS in /proc/%d/status" % pid)


# ---------------------------------------------------------------- frames

def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def frame_bytes(value):
    body = pack(value)
    return struct.pack(">I", len(body)) + body


def send_raw(sock, data):
    sock.sendall(data)


def send_frame(sock, value):
    sock.sendall(frame_bytes(value))


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out with %d of %d bytes" % (len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise TimeoutError("timed out with %d of %d bytes" % (len(buf), n)) from None
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed("reset: %s" % e) from None
        if not chunk:
            raise Closed("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock, timeout=5.0):
    """The next frame as a list; TimeoutError, or Closed on EOF/reset."""
    deadline = time.monotonic() + timeout
    (n,) = struct.unpack(">I", recv_exact(sock, 4, deadline))
    body = recv_exact(sock, n, deadline)
    v = msgpack.unpackb(body, raw=False, strict_map_key=False)
    check(isinstance(v, list) and len(v) >= 2, "node sent a frame that is not [type, rid, ...]: %r" % (v,))
    return v


def hello(sock, identity, rid=1, version=WIRE_VERSION, timeout=5.0):
    """Sends HELLO and returns the WELCOME frame (fails on anything else)."""
    send_frame(sock, [HELLO, rid, version, identity])
    v = recv_frame(sock, timeout)
    check(v[0] == WELCOME and v[1] == rid, "HELLO as %r got %r, not WELCOME" % (identity, v))
    return v


def expect_error(sock, code, rid=None, timeout=5.0):
    v = recv_frame(sock, timeout)
    check(v[0] == ERROR, "expected ERROR %d, got %r" % (code, v))
    check(v[2] == code, "expected error code %d, got %r" % (code, v))
    check(rid is None or v[1] == rid, "expected rid %r in %r" % (rid, v))
    check(isinstance(v[3], str), "error message is not a string: %r" % (v,))
    return v


def is_closed(sock, timeout=5.0):
    """Whether the peer closes the connection within timeout. Any frame that
    arrives meanwhile is a failure (nothing more was expected)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return False
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            raise
        if not data:
            return True
        raise TestFailure("expected the connection to close, got %d more bytes: %r"
                          % (len(data), data[:64]))


def expect_closed(sock, timeout=5.0):
    check(is_closed(sock, timeout), "the node did not close the connection within %.1f s" % timeout)


def expect_open(sock, rid=77, timeout=5.0):
    """The connection still serves requests: PING gets PONG."""
    send_frame(sock, [PING, rid])
    v = recv_frame(sock, timeout)
    check(v[0] == PONG and v[1] == rid, "PING on a connection that should be open got %r" % (v,))


def drain_bytes(sock, timeout=5.0, limit=1 << 30):
    """Reads raw bytes until EOF/reset; returns (bytes, how) where how is
    'eof', 'reset' or 'timeout'."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), "timeout"
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return bytes(buf), "timeout"
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    return bytes(buf), "limit"


def split_frames(data):
    """Complete frames in data and the count of bytes left over."""
    out, i = [], 0
    while len(data) - i >= 4:
        (n,) = struct.unpack_from(">I", data, i)
        if len(data) - i - 4 < n:
            break
        out.append(msgpack.unpackb(data[i + 4:i + 4 + n], raw=False, strict_map_key=False))
        i += 4 + n
    return out, len(data) - i


# ---------------------------------------------------------------- node links

class Sodium:
    """What the test needs of libsodium (the node's own crypto), via ctypes."""

    def __init__(self):
        self.lib = ctypes.CDLL("libsodium.so.23")
        check(self.lib.sodium_init() >= 0, "sodium_init failed")
        self.lib.crypto_secretstream_xchacha20poly1305_statebytes.restype = ctypes.c_size_t

    def kdf(self, key, subkey_id, size=32, ctx=b"vroomclu"):
        out = ctypes.create_string_buffer(size)
        rc = self.lib.crypto_kdf_derive_from_key(out, ctypes.c_size_t(size),
                                                 ctypes.c_uint64(subkey_id), ctx, key)
        check(rc == 0, "crypto_kdf_derive_from_key failed")
        return out.raw

    def seal_dgram(self, key, plain):
        """A datagram as cluster/seal.c makes it: nonce, then AEAD output."""
        sub = self.kdf(key, 1)
        nonce = os.urandom(24)
        out = ctypes.create_string_buffer(len(plain) + 16)
        clen = ctypes.c_ulonglong()
        ad = b"vroom-dgram-1"
        self.lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
            out, ctypes.byref(clen), plain, ctypes.c_ulonglong(len(plain)), ad,
            ctypes.c_ulonglong(len(ad)), None, nonce, sub)
        return nonce + out.raw[:clen.value]

    def stream_push(self, key):
        """(state, header) for one direction of a node link under key."""
        st = ctypes.create_string_buffer(self.lib.crypto_secretstream_xchacha20poly1305_statebytes())
        hdr = ctypes.create_string_buffer(24)
        self.lib.crypto_secretstream_xchacha20poly1305_init_push(st, hdr, self.kdf(key, 2))
        return st, hdr.raw

    def stream_pull(self, key, hdr):
        st = ctypes.create_string_buffer(self.lib.crypto_secretstream_xchacha20poly1305_statebytes())
        rc = self.lib.crypto_secretstream_xchacha20poly1305_init_pull(st, hdr, self.kdf(key, 2))
        check(rc == 0, "init_pull failed")
        return st

    def push(self, st, msg):
        out = ctypes.create_string_buffer(len(msg) + 17)
        clen = ctypes.c_ulonglong()
        self.lib.crypto_secretstream_xchacha20poly1305_push(
            st, out, ctypes.byref(clen), msg, ctypes.c_ulonglong(len(msg)), None,
            ctypes.c_ulonglong(0), ctypes.c_ubyte(0))
        return out.raw[:clen.value]

    def pull(self, st, c):
        out = ctypes.create_string_buffer(max(len(c) - 17, 1))
        mlen = ctypes.c_ulonglong()
        tag = ctypes.c_ubyte()
        rc = self.lib.crypto_secretstream_xchacha20poly1305_pull(
            st, out, ctypes.byref(mlen), ctypes.byref(tag), c, ctypes.c_ulonglong(len(c)), None,
            ctypes.c_ulonglong(0))
        return None if rc != 0 else out.raw[:mlen.value]


def read_key(path):
    with open(path) as f:
        key = base64.b64decode(f.read().strip())
    check(len(key) == 32, "%s does not hold a 32-byte key" % path)
    return key


class Link:
    """A node link to a vroomd's cluster address, as another node would make
    it (docs/protocol.md "Node links"): stream headers, PEER_HELLO echoing
    the node's header, then frames each sealed as one secretstream message."""

    def __init__(self, sodium, key, addr, name="intruder", timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.sod = sodium
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.frames = []  # decoded, not yet returned: a message may hold several
        node_hdr = self._exact(24, time.monotonic() + timeout)
        self.tx, my_hdr = sodium.stream_push(key)
        self.rx = sodium.stream_pull(key, node_hdr)
        self.sock.sendall(my_hdr)
        self.send([500, 0, name, WIRE_VERSION, node_hdr])  # PEER_HELLO
        v = self.recv(timeout)
        check(v[0] == 500 and v[4] == my_hdr, "the node's PEER_HELLO: %r" % (v,))
        self.peer = v[2]

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                raise TestFailure("the node link sent nothing in time")
            except ConnectionResetError:
                b = b""
            if not b:
                raise Closed()
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, value):
        c = self.sod.push(self.tx, frame_bytes(value))
        self.sock.sendall(struct.pack(">I", len(c)) + c)

    def recv(self, timeout=5.0):
        """The next frame from the node, decoded; Closed if the link closed.
        A message holds one frame or several, back to back."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            clen = struct.unpack(">I", self._exact(4, deadline))[0]
            plain = self.sod.pull(self.rx, self._exact(clen, deadline))
            check(plain is not None, "a message from the node does not open")
            at = 0
            while at < len(plain):
                check(len(plain) - at >= 4, "a message from the node ends inside a frame")
                flen = struct.unpack(">I", plain[at:at + 4])[0]
                check(len(plain) - at - 4 >= flen, "a message from the node ends inside a frame")
                self.frames.append(msgpack.unpackb(plain[at + 4:at + 4 + flen], raw=False))
                at += 4 + flen
        return self.frames.pop(0)

    def recv_type(self, types, timeout=5.0):
        """The next frame of one of types, skipping the others."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.recv(max(0.01, deadline - time.monotonic()))
            if v[0] in types:
                return v

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- a client

class Client:
    """A well-behaved client: HELLO at connect, request() waits for the reply
    to its rid and queues anything else (DELIVER, ROOM_CLOSED) in events."""

    def __init__(self, node, identity, rcvbuf=None, timeout=5.0):
        self.identity = identity
        self.sock = node.connect(rcvbuf=rcvbuf)
        self.rid = 100
        self.timeout = timeout
        self.events = []
        self.welcome = hello(self.sock, identity, timeout=timeout)

    def send(self, type_, *fields):
        self.rid += 1
        send_frame(self.sock, [type_, self.rid] + list(fields))
        return self.rid

    def reply(self, rid, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            v = recv_frame(self.sock, max(0.0, deadline - time.monotonic()))
            if v[0] in (OK, ERROR, PONG) and v[1] == rid:
                return v
            check(v[0] in (DELIVER, ROOM_CLOSED), "unexpected frame %r waiting for rid %d" % (v, rid))
            self.events.append(v)

    def request(self, type_, *fields):
        return self.reply(self.send(type_, *fields))

    def ok(self, type_, *fields):
        v = self.request(type_, *fields)
        check(v[0] == OK, "%s %r: expected OK, got %r" % (type_, fields, v))
        return v[2] if len(v) > 2 else None

    def error(self, code, type_, *fields):
        v = self.request(type_, *fields)
        check(v[0] == ERROR and v[2] == code,
              "%s %r: expected error %d, got %r" % (type_, fields, code, v))
        return v

    def create(self):
        room = self.ok(CREATE)
        check(isinstance(room, str) and len(room) == 16, "CREATE returned %r" % (room,))
        return room

    def subscribe(self, room):
        self.ok(SUBSCRIBE, room)

    def push(self, room, data, dtype=0):
        return self.ok(PUSH, room, dtype, data)

    def next_event(self, timeout=None):
        if self.events:
            return self.events.pop(0)
        return recv_frame(self.sock, timeout or self.timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- the runner

def run_cases(title, cases, setup=None, teardown=None, after_each=None):
    """Runs cases in order, printing one line per case. A case is (name, fn)
    or (name, fn, known_bug): the case asserts the documented behaviour and
    known_bug says why the node does not (yet) behave so; a failed check in it prints
    "xfail" and does not fail the file (unless VROOM_STRICT_XFAIL=1), and its
    passing prints "XPASS" and fails the file so that the mark is removed.
    setup() runs first; after_each(name) after every case (a failure there
    fails the case, known bug or not); teardown() always runs last and counts
    as a case of its own. Exits the process: 0 if every case passed, else 1."""
    strict = os.environ.get("VROOM_STRICT_XFAIL") == "1"
    counts = {"ok": 0, "FAIL": 0, "xfail": 0, "XPASS": 0}
    t_all = time.monotonic()

    def report(name, t0, status, err=None, note=None):
        counts[status] += 1
        dt = time.monotonic() - t0
        first = err.splitlines()[0] if err else ""
        extra = "  " + (note or first) if (note or first) else ""
        print("%-5s %-42s %6.2fs%s" % (status, name, dt, extra), flush=True)
        if err and status != "ok":
            sys.stderr.write("--- %s: %s\n%s\n" % (status, name, err))
            sys.stderr.flush()

    last_was_assertion = [False]

    def run(fn):
        last_was_assertion[0] = False
        try:
            fn()
            return None
        except Exception as e:
            last_was_assertion[0] = isinstance(e, TestFailure)
            return "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())

    def finish():
        failed = counts["FAIL"] + counts["XPASS"] + (counts["xfail"] if strict else 0)
        print("%s: %d passed, %d failed, %d known bugs (xfail), %d XPASS in %.1fs" %
              (title, counts["ok"], counts["FAIL"], counts["xfail"], counts["XPASS"],
               time.monotonic() - t_all), flush=True)
        sys.exit(1 if failed else 0)

    if setup:
        t0 = time.monotonic()
        err = run(setup)
        if err:
            report("setup", t0, "FAIL", err)
            if teardown:
                err = run(teardown)
                if err:
                    sys.stderr.write(err)
            finish()
    for case in cases:
        name, fn = case[0], case[1]
        known_bug = case[2] if len(case) > 2 else None
        t0 = time.monotonic()
        err = run(fn)
        # Only a failed check is the known bug; an exception is a broken test.
        err_is_check = last_was_assertion[0]
        after_err = run(lambda: after_each(name)) if after_each else None
        if after_err:
            report(name, t0, "FAIL", (err + "\n" if err else "") + "after the case: " + after_err)
        elif known_bug is None or (err and not err_is_check):
            report(name, t0, "FAIL" if err else "ok", err)
        elif err:
            report(name, t0, "xfail", err, note="known bug: " + known_bug)
        else:
            report(name, t0, "XPASS", "passed but is marked as a known bug (%s): remove the mark"
                   % known_bug)
    if teardown:
        t0 = time.monotonic()
        err = run(teardown)
        report("teardown: clean exit", t0, "FAIL" if err else "ok", err)
    finish()
