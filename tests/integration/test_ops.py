#!/usr/bin/python3
"""Operating vroomd: configuration, the stats port, signals, logs, systemd.

Each case starts its own real vroomd processes (127.0.0.1, ephemeral ports)
and stops them with SIGTERM, asserting exit 0 and a sanitizer-clean log,
unless the case is about how vroomd exits.

  - settings: --help lists every setting; the example config holds every
    setting at its default; flags override the file; --check-config reports
    every error with its line number and exits 1; bad values are errors.
  - stats: /healthz (503 while joining or draining), /stats (JSON: node,
    members, rooms, rates, latency),
    /metrics (accepted by `promtool check metrics`), / (the dashboard,
    rendered by headless Chromium, which must show the member), limits on
    requests (headers, methods, Host), loopback only unless --insecure; a
    cluster of three nodes as one of them shows it: /cluster on n1 lists
    every node with its summary (a room relayed by n2 in n2's), the rendered
    dashboard of n1 a section per node with its rooms and rates; a node link
    asking NODE_STATS_REQ (rid 0: bad_request; a NODE_STATS that is not bin
    drops the link); a frozen member (SIGSTOP) shows "no answer in 500 ms"
    and /cluster still answers within 1.5 s, 16 at most waiting (the rest
    503), clients leaving early; a /cluster pending at SIGTERM.
  - signals: SIGHUP applies live settings and names those that need a
    restart; a bad file changes nothing; SIGTERM drains (/healthz 503, the
    client told why) within drain_timeout; a second SIGTERM exits at once.
  - logs: syslog priority prefixes; a flood from one call site is cut at
    20 lines a second and the count of suppressed lines is reported.
  - sd_notify: READY=1, RELOADING=1, STOPPING=1 on a NOTIFY_SOCKET.

Environment (tests/integration/meson.build): VROOMD, VROOM_SRC (the source
tree), PROMTOOL, CHROMIUM.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import (
    CREATE, DELIVER, E_BAD_REQUEST, E_SHUTDOWN, ERROR, OK, PUSH, REMOVE, SUBSCRIBE, Client,
    Closed, Link, Node, Sodium, TestFailure, check, expect_error, read_key, recv_frame,
    run_cases, send_frame, tail, vroomd_path,
)

SRC = os.environ.get("VROOM_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
STATS_RE = re.compile(r"stats on (\S+):(\d+) \(http\)")
PLACE = 108
NODE_STATS_REQ, NODE_STATS = 509, 510
TMP = tempfile.mkdtemp(prefix="vroom-ops-")


def vroomd(*args, timeout=10, env=None):
    """Runs vroomd to completion: (exit code, stdout, stderr)."""
    p = subprocess.run([vroomd_path()] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def stats_port(node):
    """The stats port from the log (its line follows the listening line)."""
    deadline = time.monotonic() + 5
    while True:
        m = STATS_RE.search(node.log())
        if m:
            return int(m.group(2))
        check(time.monotonic() < deadline and node.alive(),
              "vroomd did not log its stats port:\n" + tail(node.log()))
        time.sleep(0.02)


def get(port, path, host=None, method="GET", headers=None, timeout=5):
    """(status, headers, body) of one request to the stats port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            c.putheader("Host", host)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def get_json(port, path="/stats", timeout=5):
    status, hdrs, body = get(port, path, timeout=timeout)
    check(status == 200, "%s: HTTP %d %r" % (path, status, body[:200]))
    check(hdrs.get("Content-Type") == "application/json", "%s Content-Type %r" % (path, hdrs))
    return json.loads(body)


def cluster_view(port, timeout=5):
    """GET /cluster: {name: entry}, checking the entries' common shape."""
    d = get_json(port, "/cluster", timeout=timeout)
    out = {}
    for e in d["nodes"]:
        check(e["ok"] == ("summary" in e) and e["ok"] != ("error" in e), "/cluster entry %r" % e)
        check(e["name"] not in out, "/cluster lists %s twice" % e["name"])
        out[e["name"]] = e
    check([e["self"] for e in d["nodes"]].count(True) == 1 and d["nodes"][0]["self"]
          and d["self"] == d["nodes"][0]["name"], "/cluster: self first: %r" % d)
    return out


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))


def settings_from_print(text):
    """{(section, key): value} from --print-config output."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            out[(section, k)] = v
    return out


# ---------------------------------------------------------------- settings

def case_help_lists_every_setting():
    rc, out, _ = vroomd("--print-config")
    check(rc == 0, "--print-config exited %d" % rc)
    settings = settings_from_print(out)
    check(len(settings) >= 17, "--print-config shows only %d settings" % len(settings))
    rc, help_text, _ = vroomd("--help")
    check(rc == 0 and help_text.startswith("usage: vroomd"), "--help: %d %r" % (rc, help_text[:80]))
    for (_, key) in settings:
        flag = "--" + key.replace("_", "-")
        check(flag in help_text, "--help does not mention %s" % flag)
    for flag in ("--config", "--check-config", "--print-config", "--version"):
        check(flag in help_text, "--help does not mention %s" % flag)
    rc, out, _ = vroomd("--version")
    check(rc == 0 and re.match(r"vroomd \d+\.\d+\.\d+\n", out), "--version: %r" % out)
    rc, _, err = vroomd("--no-such-flag")
    check(rc == 2 and "usage" in err, "an unknown flag: exit %d, %r" % (rc, err[:200]))


def case_example_config_documents_every_default():
    example = os.path.join(SRC, "deploy", "vroomd.conf.example")
    rc, out, err = vroomd("--config", example, "--check-config")
    check(rc == 0, "the example config does not check: %d %s" % (rc, err))
    rc, with_example, err = vroomd("--config", example, "--print-config")
    check(rc == 0, "--print-config with the example: %d %s" % (rc, err))
    rc, defaults, _ = vroomd("--print-config")
    check(settings_from_print(with_example) == settings_from_print(defaults),
          "the example config does not hold the defaults:\n%s\nvs\n%s" % (with_example, defaults))
    # Every key is set (not only commented) in the example, and documented
    # in docs/operations.md and vroomd.conf(5).
    text = open(example).read()
    ops = open(os.path.join(SRC, "docs", "operations.md")).read()
    man = open(os.path.join(SRC, "man", "vroomd.conf.5.scd")).read()
    for (section, key) in settings_from_print(defaults):
        check(re.search(r"^%s\s*=" % key, text, re.M), "the example does not set %s" % key)
        check("`%s`" % key in ops, "docs/operations.md does not document %s" % key)
        check(key in man, "vroomd.conf(5) does not document %s" % key)


def case_flags_override_file():
    conf = write("override.conf", "[limits]\nmax_conns = 5\nmax_subs = 9\n"
                 "[timeouts]\nslow_timeout = 1500ms\n[node]\nlog_level = debug\n")
    rc, out, err = vroomd("--config", conf, "--max-conns", "7", "--print-config")
    check(rc == 0, "print-config: %d %s" % (rc, err))
    s = settings_from_print(out)
    check(s[("limits", "max_conns")] == "7", "the flag did not win: %r" % s[("limits", "max_conns")])
    check(s[("limits", "max_subs")] == "9", "the file did not apply: %r" % s[("limits", "max_subs")])
    check(s[("timeouts", "slow_timeout")] == "1500ms", "slow_timeout %r" % s[("timeouts", "slow_timeout")])
    check(s[("node", "log_level")] == "debug", "log_level %r" % s[("node", "log_level")])
    rc, out, err = vroomd("--max-pending", "16MiB", "--frame-max", "2M", "--room-idle-timeout",
                          "2m", "--print-config")
    s = settings_from_print(out)
    check(rc == 0 and s[("limits", "max_pending")] == "16MiB" and s[("limits", "frame_max")] == "2MiB"
          and s[("timeouts", "room_idle_timeout")] == "120s", "units: %d %s %s" % (rc, out, err))


def case_check_config_reports_every_error():
    conf = write("bad.conf", "\n".join([
        "# a comment",                  # 1
        "[node]",                       # 2
        "listen = 127.0.0.1:0",         # 3
        "colour = blue",                # 4: unknown key
        "max_conns = 5",                # 5: wrong section
        "[limits]",                     # 6
        "max_conns = lots",             # 7: bad value
        "max_subs = 10",                # 8
        "max_subs = 11",                # 9: set twice
        "this line is nonsense",        # 10: syntax
        "[clusterr]",                   # 11: unknown section
        "seeds = a:1",                  # 12
        "[timeouts]",                   # 13
        "slow_timeout = 10 parsecs",    # 14: bad value
        "max_pending = 1MiB # note",    # 15: wrong section (and '#' is no comment here)
    ]) + "\n")
    rc, out, err = vroomd("--config", conf, "--check-config")
    check(rc == 1, "--check-config of a bad file exited %d" % rc)
    for line, what in ((4, "unknown key 'colour'"), (5, "belongs in [limits]"),
                       (7, "'lots' is not a whole number"), (9, "set again (first on line 8"),
                       (10, "not a [section]"), (11, "unknown section [clusterr]"),
                       (14, "'10 parsecs' is not a duration"), (15, "belongs in [limits]")):
        check("%s:%d: " % (conf, line) in err and what in err,
              "no error for line %d (%s) in:\n%s" % (line, what, err))
    check(err.count(conf + ":") == 8, "expected 8 errors, got:\n%s" % err)
    # The file is valid but the settings do not fit together.
    conf = write("cross.conf", "[limits]\nframe_max = 4MiB\nmax_pending = 4MiB\n")
    rc, _, err = vroomd("--config", conf, "--check-config")
    check(rc == 1 and "max_pending" in err and conf in err, "cross-check: %d %s" % (rc, err))
    rc, _, err = vroomd("--config", os.path.join(TMP, "missing.conf"), "--check-config")
    check(rc == 1 and "cannot open" in err, "missing file: %d %s" % (rc, err))
    conf = write("good.conf", "[node]\nlog_level = warn\n")
    rc, out, _ = vroomd("--config", conf, "--check-config")
    check(rc == 0 and "valid" in out, "a good file: %d %r" % (rc, out))
    # The same errors stop a normal start (exit 2), and so do bad flags.
    rc, _, err = vroomd("--config", os.path.join(TMP, "bad.conf"))
    check(rc == 2 and ":7: " in err, "start with a bad file: %d %s" % (rc, err))
    for args, what in ((["--max-conns", "-1"], "whole number"),
                       (["--hello-timeout", "soon"], "duration"),
                       (["--listen", "nowhere"], "HOST:PORT"),
                       (["--stats", "127.0.0.1"], "HOST:PORT"),
                       (["--log-level", "loud"], "error, warn"),
                       (["--frame-max", "10"], "frame_max")):
        rc, _, err = vroomd(*args)
        check(rc == 2 and what in err, "%s: exit %d, %r" % (args, rc, err))


# ---------------------------------------------------------------- stats

def traffic(node, pushes=20, subs=2):
    """A room with subs subscribers and pushes pushes; returns the room."""
    owner = Client(node, "owner")
    room = owner.create()
    readers = [Client(node, "reader%d" % i) for i in range(subs)]
    for r in readers:
        r.subscribe(room)
    for i in range(pushes):
        owner.push(room, b"x" * 100)
    for r in readers:
        for i in range(pushes):
            v = r.next_event()
            check(v[0] == DELIVER and v[3] == i + 1, "reader got %r" % (v[:4],))
    return room, owner, readers


def case_stats_endpoints():
    node = Node(name="ops-stats")
    try:
        port = stats_port(node)
        status, hdrs, body = get(port, "/healthz")
        check(status == 200 and body == b"ok\n", "/healthz: %d %r" % (status, body))
        room, owner, readers = traffic(node, pushes=20, subs=2)
        d = get_json(port)
        check(d["node"]["state"] == "serving" and d["node"]["version"], "node: %r" % d["node"])
        check(len(d["members"]) == 1, "members: %r" % d["members"])
        m = d["members"][0]
        check(m["self"] and m["id"] == d["node"]["id"] and m["state"] == "alive"
              and m["address"] == "%s:%d" % (node.host, node.port) and m["incarnation"] == 0,
              "member: %r" % m)
        check(d["connections"]["open"] == 3, "connections: %r" % d["connections"])
        check(d["traffic"]["pushes"] == 20 and d["traffic"]["deliveries"] == 40,
              "traffic: %r" % d["traffic"])
        check(d["rates"]["pushes_per_s"] > 0 and d["rates"]["window_s"] > 0, "rates: %r" % d["rates"])
        check(d["rooms"]["count"] == 1 and len(d["rooms"]["list"]) == 1, "rooms: %r" % d["rooms"])
        r = d["rooms"]["list"][0]
        check(room.startswith(r["id_prefix"]) and len(r["id_prefix"]) < len(room),
              "the stats port shows a room's id (its key) in full or not at all: %r" % r)
        check(r["owner"] == "owner" and r["subscribers_local"] == 2 and r["subscribers_remote"] == 0
              and r["pushes"] == 20 and r["bytes"] == 2000 and r["streams_open"] == 0
              and r["backups"] == [] and r["epoch"] == 0 and r["relay"] == d["node"]["id"],
              "room: %r" % r)
        lat = d["delivery_latency"]
        check(lat["count"] == 40 and sum(b["count"] for b in lat["buckets"]) == 40,
              "latency: %r" % lat)
        for k in ("slow_consumer_disconnects", "failovers", "limits_hit"):
            check(d[k] == 0, "%s: %r" % (k, d[k]))

        status, hdrs, body = get(port, "/metrics")
        check(status == 200 and hdrs["Content-Type"].startswith("text/plain; version=0.0.4"),
              "/metrics: %d %r" % (status, hdrs))
        text = body.decode()
        for line in ("vroom_pushes_total 20", "vroom_deliveries_total 40", "vroom_connections 3",
                     "vroom_rooms 1", 'vroom_delivery_latency_seconds_bucket{le="+Inf"} 40',
                     "vroom_delivery_latency_seconds_count 40", "vroom_draining 0"):
            check(line + "\n" in text, "/metrics lacks %r:\n%s" % (line, text))
        promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
        check(promtool, "no promtool (Debian package prometheus; tests/run installs it)")
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
              "promtool check metrics: %d %s %s" % (p.returncode, p.stdout, p.stderr))

        status, hdrs, body = get(port, "/")
        check(status == 200 and b"<!DOCTYPE html>" in body and hdrs["Content-Type"].startswith("text/html"),
              "/: %d %r" % (status, hdrs))
        check("default-src 'none'" in hdrs.get("Content-Security-Policy", ""),
              "the dashboard has no strict CSP: %r" % hdrs)
        check(not re.search(rb"(src|href)=\"(https?:)?//", body), "the dashboard loads external assets")
        # Without a cluster, /cluster is this node alone, answered at once.
        t0 = time.monotonic()
        view = cluster_view(port)
        check(time.monotonic() - t0 < 0.4, "/cluster without a cluster waited")
        e = view.get(d["node"]["id"])
        check(len(view) == 1 and e and e["ok"] and e["state"] == "alive", "/cluster: %r" % view)
        sm = e["summary"]
        check(sm["id"] == d["node"]["id"] and sm["state"] == "serving"
              and sm["connections"]["open"] == 3 and sm["rooms"]["count"] == 1
              and room.startswith(sm["rooms"]["list"][0]["id_prefix"])
              and sm["rooms"]["list"][0]["pushes"] == 20 and sm["rates"]["pushes_per_s"] > 0,
              "/cluster summary: %r" % sm)
        status, _, _ = get(port, "/nope")
        check(status == 404, "/nope: %d" % status)
        for c in [owner] + readers:
            c.close()
    finally:
        node.stop()


def case_stats_request_limits():
    node = Node(name="ops-http")
    try:
        port = stats_port(node)
        status, _, _ = get(port, "/stats", host="evil.example:80")
        check(status == 403, "a foreign Host got %d (DNS rebinding)" % status)
        for host in ("localhost:%d" % port, "127.0.0.1:%d" % port, "[::1]:%d" % port):
            status, _, _ = get(port, "/healthz", host=host)
            check(status == 200, "Host %s got %d" % (host, status))
        status, _, _ = get(port, "/stats", method="POST")
        check(status in (405, 501), "POST got %d" % status)
        status, _, _ = get(port, "/stats", headers={"X-Big": "a" * 20000})
        check(status in (400, 413, 431), "20 KB of headers got %d" % status)
        # Hundreds of requests in a row are answered and leak nothing.
        for _ in range(200):
            status, _, _ = get(port, "/stats")
            check(status == 200, "/stats got %d" % status)
        # A client that connects and says nothing does not hold up others.
        idle = socket.create_connection(("127.0.0.1", port))
        status, _, _ = get(port, "/healthz")
        check(status == 200, "with an idle client: %d" % status)
        idle.close()
    finally:
        node.stop()


def case_stats_address_rules():
    rc, _, err = vroomd("--listen", "127.0.0.1:0", "--stats", "0.0.0.0:0")
    check(rc == 1 and "--insecure" in err and "stats" in err,
          "a non-loopback stats port without --insecure: %d %s" % (rc, err))
    node = Node("--stats", "off", name="ops-nostats")
    try:
        time.sleep(0.2)
        check(not STATS_RE.search(node.log()), "--stats off still serves stats")
    finally:
        node.stop()
    node = Node("--stats", "0.0.0.0:0", "--insecure", name="ops-insecure")
    try:
        port = stats_port(node)
        status, _, _ = get(port, "/healthz", host="vroom1.example:%d" % port)
        check(status == 200, "on a non-loopback address any Host is served: %d" % status)
    finally:
        node.stop()
    # Two nodes on free ports side by side: stats = auto follows --listen.
    a, b = Node(name="ops-auto-a"), Node(name="ops-auto-b")
    try:
        check(stats_port(a) != stats_port(b), "two nodes share a stats port")
    finally:
        a.stop()
        b.stop()


def chromium_dom(url, budget_ms=4000):
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    check(chromium, "no chromium (Debian package chromium; tests/run installs it)")
    profile = tempfile.mkdtemp(prefix="vroom-chromium-", dir=TMP)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
            "--virtual-time-budget=%d" % budget_ms, "--dump-dom", url]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    check(p.returncode == 0, "chromium exited %d: %s" % (p.returncode, p.stderr[-2000:]))
    return p.stdout


def case_dashboard_in_chromium():
    node = Node(name="ops-dash")
    try:
        port = stats_port(node)
        room, owner, readers = traffic(node, pushes=5, subs=1)
        node_id = get_json(port)["node"]["id"]
        dom = chromium_dom("http://127.0.0.1:%d/" % port)
        m = re.search(r'<tr data-member="%s">(.*?)</tr>' % node_id, dom, re.S)
        check(m, "the rendered dashboard has no row for member %s:\n%s" % (node_id, dom[-3000:]))
        row = m.group(1)
        check("alive" in row and "%s:%d" % (node.host, node.port) in row,
              "the member row lacks its state or address: %s" % row)
        check(re.search(r'<section data-node="%s" data-ok="true">' % node_id, dom),
              "no section for the node")
        check(room[:6] + "…" in dom and ">owner<" in dom, "the room is not shown:\n%s" % dom[-3000:])
        for c in [owner] + readers:
            c.close()
    finally:
        node.stop()


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1 (a cluster address)."""
    while True:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
        finally:
            t.close()
            u.close()


def case_cluster_of_three():
    vroom = os.environ.get("VROOM") or os.path.join(os.path.dirname(vroomd_path()), "..",
                                                    "client", "vroom")
    key = os.path.join(TMP, "cluster.key")
    p = subprocess.run([vroom, "cluster", "keygen", key], capture_output=True, text=True,
                       timeout=10)
    check(p.returncode == 0, "vroom cluster keygen: %d %s" % (p.returncode, p.stderr))
    ports = [free_port() for _ in range(3)]
    nodes = []
    try:
        def start(i, seeds):
            flags = ["--cluster", "127.0.0.1:%d" % ports[i], "--cluster-key", key,
                     "--node-name", "n%d" % (i + 1)]
            if seeds:
                flags += ["--seeds", ",".join("127.0.0.1:%d" % ports[j] for j in seeds)]
            nodes.append(Node(*flags, name="ops-n%d" % (i + 1)))
            return nodes[-1]
        # n1 joins through n2, which is not there yet: it is not healthy.
        n1 = start(0, [1])
        port = stats_port(n1)
        status, _, body = get(port, "/healthz")
        check(status == 503 and body == b"joining\n", "/healthz before joining: %d %r" % (status, body))
        start(1, [])
        start(2, [1])
        def all_alive():
            d = get_json(port)
            m = {x["name"]: x for x in d["members"]}
            return d if sorted(m) == ["n1", "n2", "n3"] and all(
                x["state"] == "alive" for x in m.values()) else None
        d = wait_for(all_alive, 15, "n1 to see n2 and n3 alive")
        # Every node sees every other (placement agrees) before rooms are made.
        for n in nodes[1:]:
            wait_for(lambda: sorted(m["name"] for m in get_json(stats_port(n))["members"]
                                    if m["state"] == "alive") == ["n1", "n2", "n3"],
                     15, "%s to see all three alive" % n.name)
        check(get(port, "/healthz")[0] == 200, "/healthz after joining")
        for m in d["members"]:
            n = nodes[int(m["name"][1:]) - 1]
            check(m["address"] == "%s:%d" % (n.host, n.port) and m["self"] == (m["name"] == "n1"),
                  "member %r" % m)
        _, _, body = get(port, "/metrics")
        check(b"vroom_cluster_members 3\n" in body, "/metrics: no vroom_cluster_members 3")
        promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
        check(promtool, "no promtool (Debian package prometheus; tests/run installs it)")
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
              "promtool check metrics (cluster): %s %s" % (p.stdout, p.stderr))

        # /cluster on n1: every member with its own summary, over the node links.
        view = wait_for(lambda: (lambda v: v if all(e["ok"] for e in v.values()) else None)(
            cluster_view(port)), 10, "every node's summary in n1's /cluster")
        check(sorted(view) == ["n1", "n2", "n3"], "/cluster on n1 lists %s" % sorted(view))
        for name, e in view.items():
            sm = e["summary"]
            check(e["state"] == "alive" and e["self"] == (name == "n1") and sm["name"] == name
                  and sm["state"] == "serving" and sm["address"] == "%s:%d" % (
                      nodes[int(name[1:]) - 1].host, nodes[int(name[1:]) - 1].port),
                  "/cluster entry for %s: %r" % (name, e))
            for k in ("pushes_per_s", "deliveries_per_s", "bytes_in_per_s", "bytes_out_per_s"):
                check(k in sm["rates"], "%s's summary has no %s: %r" % (name, k, sm))

        # A room relayed by n2, made, subscribed and pushed to through n2: n1
        # does not hold it, yet its /cluster shows it in n2's figures.
        n2 = nodes[1]
        owner, reader = Client(n2, "owner2"), Client(n2, "reader2")
        for _ in range(200):
            room = owner.create()
            if owner.ok(PLACE, room)["relay"] == "n2":
                break
            owner.ok(REMOVE, room)
        else:
            raise TestFailure("200 rooms made through n2 and none relayed by n2")
        reader.subscribe(room)
        for i in range(20):
            owner.push(room, b"p" * 100)
        for i in range(20):
            v = reader.next_event()
            check(v[0] == DELIVER and v[3] == i + 1, "reader on n2 got %r" % (v[:4],))
        check(not any(room.startswith(r["id_prefix"]) for r in get_json(port)["rooms"]["list"]),
              "n1 lists n2's room in its own /stats")
        sm = cluster_view(port)["n2"]["summary"]
        mine = [r for r in sm["rooms"]["list"] if room.startswith(r["id_prefix"])]
        check(sm["rooms"]["count"] >= 1 and len(mine) == 1, "n2's rooms as n1 shows them: %r"
              % sm["rooms"])
        n2_rooms = sm["rooms"]["count"]
        r = mine[0]
        check(r["relay"] == "n2" and r["owner"] == "owner2" and r["pushes"] == 20
              and r["subscribers_local"] == 1 and len(r["backups"]) == 2
              and "n2" not in r["backups"], "n2's room as n1 shows it: %r" % r)
        check(sm["connections"]["open"] == 2 and sm["rates"]["pushes_per_s"] > 0
              and sm["rates"]["deliveries_per_s"] > 0 and sm["rates"]["bytes_in_per_s"] > 0,
              "n2's rates as n1 shows them: %r" % sm)

        # The dashboard of n1, rendered: the members, and a section per node
        # with its figures, n2's with its room.
        dom = chromium_dom("http://127.0.0.1:%d/" % port)
        for name in ("n1", "n2", "n3"):
            m = re.search(r'<tr data-member="%s">(.*?)</tr>' % name, dom, re.S)
            check(m and "alive" in m.group(1),
                  "the dashboard does not show member %s alive:\n%s" % (name, dom[-3000:]))
        sections = dict(re.findall(r'<section data-node="(n\d)" data-ok="true">(.*?)</section>',
                                   dom, re.S))
        check(sorted(sections) == ["n1", "n2", "n3"],
              "the dashboard's node sections: %s\n%s" % (sorted(sections), dom[-4000:]))
        for name, sec in sections.items():
            for field in ("pushes_per_s", "deliveries_per_s", "bytes_in_per_s",
                          "bytes_out_per_s", "connections"):
                check('data-field="%s"' % field in sec, "%s's section lacks %s" % (name, field))
        n2sec = sections["n2"]
        check(re.search(r'data-field="rooms">%d<' % n2_rooms, n2sec)
              and re.search(r'data-field="connections">2 / ', n2sec),
              "n2's section does not show %d rooms and 2 connections:\n%s" % (n2_rooms, n2sec))
        m = re.search(r'<tr data-room="%s">(.*?)</tr>' % re.escape(room[:6]), n2sec, re.S)
        check(m and ">owner2<" in m.group(1) and 'data-field="pushes">20<' in m.group(1),
              "n2's section does not show its room:\n%s" % n2sec)
        check('data-room="%s"' % room[:6] not in sections["n1"] + sections["n3"],
              "n2's room shows under another node")
        owner.close()
        reader.close()

        # A node link speaking NODE_STATS_REQ to n1 (docs/protocol.md): a
        # summary for a rid, bad_request for rid 0; an unasked NODE_STATS is
        # dropped; one whose summary is not bin/str drops the link.
        sod = Sodium()
        key_bytes = read_key(key)
        caddr = "127.0.0.1:%d" % ports[0]
        link = Link(sod, key_bytes, caddr)
        link.send([NODE_STATS_REQ, 7])
        v = link.recv()
        check(v[0] == NODE_STATS and v[1] == 7 and isinstance(v[2], bytes)
              and len(v[2]) <= 65536, "NODE_STATS_REQ on a link: %r" % (v[:2],))
        sm = json.loads(v[2])
        check(sm["name"] == "n1" and "rates" in sm and "rooms" in sm, "n1's summary: %r" % sm)
        link.send([NODE_STATS_REQ, 0])
        v = link.recv()
        check(v[0] == ERROR and v[1] == 0 and v[2] == E_BAD_REQUEST and "request id" in v[3],
              "NODE_STATS_REQ with rid 0: %r" % (v,))
        link.send([NODE_STATS, 99, b"{}"])
        link.send([NODE_STATS_REQ, 8])
        v = link.recv()
        check(v[0] == NODE_STATS and v[1] == 8, "after an unasked NODE_STATS: %r" % (v[:2],))
        bad_links = lambda: int(re.search(rb"^vroom_cluster_bad_links_total (\d+)$",
                                          get(port, "/metrics")[2], re.M).group(1))
        bl0 = bad_links()
        link.send([NODE_STATS, 100, 12345])
        try:
            v = link.recv()
            raise TestFailure("a NODE_STATS without a bin summary got %r" % (v,))
        except Closed:
            pass
        link.close()
        wait_for(lambda: bad_links() == bl0 + 1, 5, "the bad link counted")

        # A frozen member: /cluster still answers after its 500 ms wait and
        # says so; at most 16 such requests wait at once, the others get 503;
        # a client that leaves before the answer costs nothing.
        n3 = nodes[2]
        n3.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            view = cluster_view(port)
            took = time.monotonic() - t0
            e = view["n3"]
            check(not e["ok"] and e["error"] == "no answer in 500 ms" and view["n2"]["ok"],
                  "/cluster with n3 frozen: %r" % e)
            check(0.45 <= took <= 1.5, "/cluster with n3 frozen took %.2f s" % took)
            print("       /cluster with a frozen member answered in %.2f s" % took)
            socks = []
            for _ in range(20):
                sk = socket.create_connection(("127.0.0.1", port), timeout=5)
                sk.sendall(b"GET /cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                socks.append(sk)
            codes = []
            for sk in socks:
                line = sk.makefile("rb").readline()
                codes.append(int(line.split()[1]))
                sk.close()
            check(codes.count(200) == 16 and codes.count(503) == 4,
                  "20 /cluster at once with n3 frozen: %r" % codes)
            for _ in range(3):  # gone before the answer
                sk = socket.create_connection(("127.0.0.1", port), timeout=5)
                sk.sendall(b"GET /cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                time.sleep(0.05)
                sk.close()
            check(not cluster_view(port)["n3"]["ok"], "n3 answered while frozen")
        finally:
            n3.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: cluster_view(port)["n3"]["ok"], 15, "n3's summary after SIGCONT")
        check(n1.alive(), "n1 died")

        # n1 stopped while a /cluster waits for a frozen n3: the request is
        # answered 503 or, as evhttp_free does not flush, its connection just
        # closes; n1 exits 0 with a clean log.
        n3.proc.send_signal(signal.SIGSTOP)
        try:
            sk = socket.create_connection(("127.0.0.1", port), timeout=5)
            sk.sendall(b"GET /cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.1)
            n1.terminate()
            data = b""
            try:
                while True:
                    b = sk.recv(65536)
                    if not b:
                        break
                    data += b
            except (ConnectionResetError, socket.timeout):
                pass
            sk.close()
            check(data == b"" or data.startswith(b"HTTP/1.1 503"),
                  "/cluster pending at SIGTERM: %r" % data[:200])
            print("       /cluster pending at SIGTERM: %s" % (
                data.split(b"\r\n", 1)[0].decode() if data else "connection closed"))
            n1.stop()
        finally:
            n3.proc.send_signal(signal.SIGCONT)
    finally:
        for n in nodes:
            n.stop()


# ---------------------------------------------------------------- signals

def case_sighup_reload():
    conf = write("reload.conf", "[node]\nlog_level = info\n[limits]\nmax_conns = 100\n")
    node = Node("--config", conf, name="ops-hup")
    try:
        port = stats_port(node)
        write("reload.conf", "[node]\nlog_level = debug\nstats = off\n"
              "[limits]\nmax_conns = 2\nframe_max = 512KiB\n")
        node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "max_conns: 100 -> 2 (applied)" in node.log(), 5, "the reload")
        log = node.log()
        for line in ("log_level: info -> debug (applied)",
                     "stats: auto -> off needs a restart (still auto)",
                     "frame_max: 1MiB -> 512KiB needs a restart (still 1MiB)"):
            check(line in log, "the reload did not log %r:\n%s" % (line, tail(log)))
        # max_conns applies at once: a third connection is refused.
        a, b = Client(node, "a"), Client(node, "b")
        s = node.connect()
        expect_error(s, 23)  # E_LIMIT
        s.close()
        check("conn" in node.log() and "-> ready" in node.log(), "debug lines did not start")
        check(get_json(port)["connections"]["max"] == 2, "/stats still shows the old max_conns")
        a.close()
        b.close()
        # A bad file changes nothing.
        write("reload.conf", "[limits]\nmax_conns = many\n")
        node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in node.log(), 5, "the failed reload")
        check(re.search(r"reload\.conf:2: \[limits\] max_conns: 'many'", node.log()),
              "the failed reload does not say where: %s" % tail(node.log()))
        check(get_json(port)["connections"]["max"] == 2, "a failed reload changed max_conns")
        # Values that are valid alone but not with the running frame_max.
        write("reload.conf", "[limits]\nmax_pending = 1MiB\nstream_window = 1MiB\n")
        node.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: node.log().count("reload failed") == 2, 5, "the second failed reload")
        check("max_pending" in tail(node.log(), 3), "why the reload failed: %s" % tail(node.log(), 3))
    finally:
        node.stop()


def case_sigterm_drains():
    node = Node("--drain-timeout", "2", "--max-pending", "64MiB", name="ops-drain")
    try:
        port = stats_port(node)
        owner = Client(node, "owner")
        room = owner.create()
        # A subscriber that never reads, with a small receive buffer: its
        # output cannot be flushed, so the drain lasts until the deadline.
        stuck = Client(node, "stuck", rcvbuf=4096)
        stuck.subscribe(room)
        polite = Client(node, "polite")
        for _ in range(40):
            owner.push(room, b"y" * 65536)
        t0 = time.monotonic()
        node.terminate()
        wait_for(lambda: get(port, "/healthz")[0] == 503, 2, "/healthz 503 while draining")
        status, _, body = get(port, "/healthz")
        check(body == b"draining\n", "/healthz body %r" % body)
        check(get_json(port)["node"]["state"] == "draining", "/stats does not say draining")
        v = recv_frame(polite.sock, timeout=3)
        check(v[0] == 4 and v[2] == E_SHUTDOWN and "shutting down" in v[3],
              "a client was not told why: %r" % (v,))
        node.returncode = node.proc.wait(10)
        took = time.monotonic() - t0
        check(1.5 <= took <= 5, "the drain took %.2f s with drain_timeout 2 s" % took)
        for c in (owner, stuck, polite):
            c.close()
    finally:
        node.stop()


def case_second_sigterm_exits_at_once():
    node = Node("--drain-timeout", "60", "--max-pending", "64MiB", name="ops-term2")
    try:
        owner = Client(node, "owner")
        room = owner.create()
        stuck = Client(node, "stuck", rcvbuf=4096)
        stuck.subscribe(room)
        for _ in range(40):
            owner.push(room, b"z" * 65536)
        node.terminate()
        time.sleep(0.3)
        check(node.alive(), "vroomd did not wait for its stuck client")
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        node.returncode = node.proc.wait(10)
        check(time.monotonic() - t0 < 2, "the second SIGTERM did not exit at once")
        check("second stop request" in node.log(), "no log line for the second SIGTERM")
        owner.close()
        stuck.close()
    finally:
        node.stop()


# ---------------------------------------------------------------- logs

FLOOD = 40


def case_log_prefixes_and_rate_limit():
    node = Node(name="ops-log")
    try:
        log = node.log()
        check(re.search(r"^<5>node \w+ listening on", log, re.M),
              "no syslog priority prefix on the listening line:\n%s" % log)
        # 40 bad frames within one wall-clock second (vroomd counts per
        # time(NULL) second) from one call site: 20 lines, then silence, then
        # a count of the rest. (Under 60 failed HELLOs from one address: a
        # guard may refuse more.)
        time.sleep(1.02 - (time.time() % 1.0))
        t0 = time.monotonic()
        socks = []
        for _ in range(FLOOD):
            s = node.connect()
            s.sendall(b"\x00\x00\x00\x01\xc1")  # 0xc1: never valid msgpack
            socks.append(s)
        check(time.monotonic() - t0 < 0.8, "too slow to flood within one second")
        time.sleep(1.2)
        s = node.connect()  # a line from another site in the next second
        s.sendall(b"\x00\x00\x00\x01\xc1")
        socks.append(s)
        wait_for(lambda: "suppressed" in node.log(), 3, "the suppressed count")
        log = node.log()
        lines = [l for l in log.splitlines() if "bad frame" in l and "suppressed" not in l]
        check(len(lines) == 21, "%d 'bad frame' lines for %d bad frames" % (len(lines), FLOOD + 1))
        m = re.findall(r"^<4>(\d+) similar messages suppressed: \"conn %llu %s: bad frame: %s\"$",
                       log, re.M)
        check(m and len(lines) + sum(map(int, m)) == FLOOD + 1,
              "suppressed counts %r and %d lines do not add up to %d:\n%s"
              % (m, len(lines), FLOOD + 1, tail(log)))
        check(re.search(r"^<6>conn \d+ \S+: bad frame", log, re.M), "no <6> prefix on info lines")
        for s in socks:
            s.close()
    finally:
        node.stop()


# ---------------------------------------------------------------- systemd

def case_sd_notify():
    rc, out, _ = vroomd("--version")
    if "systemd notify: yes" not in out:
        print("       (built without libsystemd: sd_notify is off; checked that it says so)")
        check("systemd notify: no" in out, "--version: %r" % out)
        return
    path = os.path.join(TMP, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    conf = write("notify.conf", "[node]\nlog_level = info\n")
    node = Node("--config", conf, name="ops-notify", env={"NOTIFY_SOCKET": path})
    try:
        def expect(word):
            while True:
                msg = sock.recv(4096).decode()
                if word in msg.split("\n"):
                    return msg
        msg = expect("READY=1")
        check("STATUS=serving clients on %s:%d" % (node.host, node.port) in msg, "READY: %r" % msg)
        node.proc.send_signal(signal.SIGHUP)
        msg = expect("RELOADING=1")
        check("MONOTONIC_USEC=" in msg, "RELOADING without MONOTONIC_USEC: %r" % msg)
        expect("READY=1")
        node.terminate()
        expect("STOPPING=1")
    finally:
        node.stop()
        sock.close()


CASES = [
    ("help lists every setting", case_help_lists_every_setting),
    ("example config documents every default", case_example_config_documents_every_default),
    ("flags override the file", case_flags_override_file),
    ("check-config reports every error", case_check_config_reports_every_error),
    ("stats: healthz, stats, metrics, dashboard", case_stats_endpoints),
    ("stats: request limits and Host check", case_stats_request_limits),
    ("stats: loopback unless --insecure, off, auto", case_stats_address_rules),
    ("dashboard rendered by chromium", case_dashboard_in_chromium),
    ("cluster of 3: healthz, members, dashboard", case_cluster_of_three),
    ("SIGHUP reloads live settings", case_sighup_reload),
    ("SIGTERM drains (healthz 503)", case_sigterm_drains),
    ("second SIGTERM exits at once", case_second_sigterm_exits_at_once),
    ("log prefixes and rate limit", case_log_prefixes_and_rate_limit),
    ("sd_notify READY, RELOADING, STOPPING", case_sd_notify),
]

if __name__ == "__main__":
    try:
        run_cases("ops", CASES)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
