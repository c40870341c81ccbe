#!/usr/bin/env bash
# tools/fanout_compare.sh: vroomd side by side with redis-server (pub/sub),
# nats-server and mosquitto (MQTT 3.1.1, QoS 0), all from Debian's packages,
# and with tools/ceiling_relay (copies bytes verbatim: the ceiling), in one
# run, on loopback, each server on CPU 0 and the load generator
# (tools/fanout_bench) on CPU 1. Writes the tables into docs/benchmarks.md
# between the fanout-compare markers (replaced on each run).
#
#   bash tools/fanout_compare.sh            # the whole run (~15 minutes)
#   QUICK=1 bash tools/fanout_compare.sh    # one repetition, 1 s cells, no doc
#
# Settings (environment): REPS (3), SECS (seconds measured per cell, 2),
# SIZES ("64 1024 15000 65536"), SUBS ("1 10 100"), SERVERS ("vroom redis
# nats mqtt ceiling"), NO_DOC=1 (print the tables, leave the doc alone),
# BUILD (build-perf).
#
# The daemons are started here, on free loopback ports, with minimal
# configurations in a temporary directory, never as system services, and
# stopped at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${BUILD:-build-perf}
REPS=${REPS:-3}
SECS=${SECS:-2}
SIZES=${SIZES:-"64 1024 15000 65536"}
SUBS=${SUBS:-"1 10 100"}
SERVERS=${SERVERS:-"vroom redis nats mqtt ceiling"}
LAT_SIZE=1024 LAT_SUBS=10 LAT_RATE=10000 LAT_SECS=${LAT_SECS:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
STREAM_BYTES=${STREAM_BYTES:-100000000}
if [[ ${QUICK:-} ]]; then
	REPS=1 SECS=1 LAT_SECS=1 NO_DOC=1
fi

log() { echo "fanout_compare: $*" >&2; }

# ---- packages (Debian 12), without letting any daemon start as a service ----
PKGS=(build-essential meson ninja-build pkg-config libevent-dev libsodium-dev libmsgpack-dev
	libxxhash-dev libinih-dev libjansson-dev libmagic-dev redis-server nats-server mosquitto
	linux-perf util-linux procps python3)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	SUDO=
	(($(id -u) == 0)) || SUDO=sudo
	made_policy=
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Debian's way to keep maintainer scripts from starting services.
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[[ $made_policy ]] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

# ---- build (release) ----
if [[ ! -f $BUILD/build.ninja ]]; then
	meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" node/vroomd tools/fanout_bench tools/ceiling_relay tools/vroom-bench >/dev/null
BENCH=$ROOT/$BUILD/tools/fanout_bench

# 10,000 connections on each side of loopback.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/fanout_compare.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
	local i
	for i in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		kill -0 "$2" 2>/dev/null || { log "a server died at start (port $1)"; return 1; }
		sleep 0.1
	done
	log "nothing listens on $1"
	return 1
}

declare -A PORT PID
start_server() { # name
	local name=$1 port
	port=$(free_port)
	case $name in
	vroom)
		# max_in_rate 0: the default (128 MiB/s per connection) would cap
		# the publisher; no peer has such a limit.
		taskset -c 0 "$ROOT/$BUILD/node/vroomd" --listen "127.0.0.1:$port" --max-in-rate 0 \
			--max-conns 20000 --log-level warn 2>"$TMP/vroomd.log" &
		;;
	redis)
		cat >"$TMP/redis.conf" <<-EOF
			bind 127.0.0.1
			port $port
			save ""
			appendonly no
			daemonize no
			dir $TMP
			logfile $TMP/redis.log
		EOF
		taskset -c 0 redis-server "$TMP/redis.conf" &
		;;
	nats)
		printf 'listen: "127.0.0.1:%s"\n' "$port" >"$TMP/nats.conf"
		GOMAXPROCS=1 taskset -c 0 nats-server -c "$TMP/nats.conf" -l "$TMP/nats.log" &
		;;
	mqtt)
		# max_queued_messages 0: QoS 0 messages past the default 1000
		# queued per client would be dropped; the load is paced anyway.
		# set_tcp_nodelay: the others all set TCP_NODELAY.
		cat >"$TMP/mosquitto.conf" <<-EOF
			listener $port 127.0.0.1
			allow_anonymous true
			persistence false
			max_queued_messages 0
			set_tcp_nodelay true
			log_dest stderr
		EOF
		taskset -c 0 mosquitto -c "$TMP/mosquitto.conf" 2>"$TMP/mosquitto.log" &
		;;
	ceiling)
		taskset -c 0 "$ROOT/$BUILD/tools/ceiling_relay" --listen "127.0.0.1:$port" >/dev/null &
		;;
	esac
	PID[$name]=$!
	PIDS+=($!)
	PORT[$name]=$port
	wait_port "$port" "${PID[$name]}"
}

# ---- versions and machine ----
VERS="$TMP/versions"
{
	echo "vroomd $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- node stream 2>/dev/null || echo '+changes')"
	echo "redis-server $(dpkg-query -W -f='${Version}' redis-server)"
	echo "nats-server $(dpkg-query -W -f='${Version}' nats-server)"
	echo "mosquitto $(dpkg-query -W -f='${Version}' mosquitto)"
	echo "machine $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$VERS"

for s in $SERVERS; do
	start_server "$s"
done
log "servers: $(for s in $SERVERS; do printf '%s:%s ' "$s" "${PORT[$s]}"; done)"

RES=$TMP/results
: >"$RES"
run() { # tag server args...
	local tag=$1 s=$2 out rc
	shift 2
	out=$(taskset -c 1 "$BENCH" --proto "$s" --port "${PORT[$s]}" "$@" 2>"$TMP/err") && rc=0 || rc=$?
	if [[ $out != RESULT* ]]; then
		out="RESULT proto=$s failed=1 error=\"$(tr '\n"' '  ' <"$TMP/err" | cut -c1-120)\""
	fi
	echo "$tag server=$s rc=$rc ${out#RESULT }" >>"$RES"
	log "$tag $s: ${out#RESULT }"
}

# The servers' order, rotated by one at each repetition: nobody always
# runs first after a heavy cell.
rotated() { # rep
	local -a a=($SERVERS)
	local i k=$((($1 - 1) % ${#a[@]}))
	for ((i = 0; i < ${#a[@]}; i++)); do
		printf '%s ' "${a[(i + k) % ${#a[@]}]}"
	done
}

# ---- throughput matrix: reps outermost, servers innermost ----
START=$(date +%s)
for rep in $(seq 1 "$REPS"); do
	order=$(rotated "$rep")
	for size in $SIZES; do
		for n in $SUBS; do
			for s in $order; do
				run "T rep=$rep" "$s" --size "$size" --subs "$n" --seconds "$SECS"
			done
		done
	done
	# ---- latency, after a pause for the last heavy cell's sockets ----
	sleep 2
	for s in $order; do
		run "L rep=$rep" "$s" --size $LAT_SIZE --subs $LAT_SUBS --rate $LAT_RATE --seconds "$LAT_SECS"
	done
done

# ---- file streams (vroom only: the others have none) ----
if [[ " $SERVERS " == *" vroom "* ]]; then
	for rep in $(seq 1 "$REPS"); do
		for n in 1 10; do
			out=$(taskset -c 1 "$ROOT/$BUILD/tools/vroom-bench" -s "127.0.0.1:${PORT[vroom]}" \
				--subs $n --stream $STREAM_BYTES 2>&1 | grep '^stream' || echo "stream subs=$n failed=1")
			echo "F rep=$rep server=vroom $out" >>"$RES"
			log "F rep=$rep $out"
		done
	done

	# ---- memory per idle connection, and 10,000 subscribers on one room ----
	# A fresh node each time, so that nothing else is in its heap.
	rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
	fresh_node() {
		mport=$(free_port)
		taskset -c 0 "$ROOT/$BUILD/node/vroomd" --listen "127.0.0.1:$mport" --max-in-rate 0 \
			--max-conns 20000 --log-level warn 2>"$TMP/vroomd-mem.log" &
		mpid=$!
		PIDS+=($mpid)
		wait_port "$mport" "$mpid"
		sleep 0.2
	}
	for rep in $(seq 1 "$REPS"); do
		fresh_node
		before=$(rss $mpid)
		taskset -c 1 "$BENCH" --proto vroom --port "$mport" --idle "$IDLE_CONNS" --hold 3 \
			>"$TMP/idle.out" 2>"$TMP/idle.err" &
		ipid=$!
		for i in $(seq 1 600); do
			grep -q READY "$TMP/idle.out" 2>/dev/null && break
			sleep 0.1
		done
		sleep 0.5
		during=$(rss $mpid)
		wait $ipid || true
		echo "M rep=$rep server=vroom conns=$IDLE_CONNS rss_before_kb=$before rss_kb=$during per_conn_b=$(( (during - before) * 1024 / IDLE_CONNS ))" >>"$RES"
		log "$(tail -1 "$RES")"
		kill $mpid
		wait $mpid 2>/dev/null || true
	done
	fresh_node
	PORT[vroom10k]=$mport
	for rep in $(seq 1 "$REPS"); do
		out=$(taskset -c 1 "$BENCH" --proto vroom --port "$mport" --subs 10000 --size 1024 \
			--window 4 --seconds "$SECS" 2>"$TMP/err") || true
		[[ $out == RESULT* ]] || out="RESULT failed=1 error=\"$(tr '\n"' '  ' <"$TMP/err" | cut -c1-120)\""
		echo "K rep=$rep server=vroom rss_kb=$(rss $mpid) ${out#RESULT }" >>"$RES"
		log "K rep=$rep ${out#RESULT }"
	done
fi
ELAPSED=$(($(date +%s) - START))
echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$VERS"

# ---- tables ----
STREAM_BYTES=$STREAM_BYTES LAT_SECS=$LAT_SECS python3 - "$RES" "$VERS" "$ELAPSED" "$REPS" "$SECS" "$SIZES" "$SUBS" "$SERVERS" >"$TMP/section.md" <<'EOF'
import os, sys, statistics, datetime, shlex
res, vers, elapsed, reps, secs, sizes, subs, servers = sys.argv[1:9]
sizes = [int(x) for x in sizes.split()]
subs = [int(x) for x in subs.split()]
servers = servers.split()
rows = []
for line in open(res):
    kind, rest = line.split(" ", 1)
    kv = {}
    for tok in shlex.split(rest):
        if "=" in tok:
            k, v = tok.split("=", 1)
            kv[k] = v
    kv["kind"] = kind
    rows.append(kv)
names = {"vroom": "vroomd", "redis": "redis", "nats": "nats", "mqtt": "mosquitto", "ceiling": "ceiling"}

def med(vals):
    return statistics.median(vals) if vals else None

def spread(vals):
    return (min(vals), max(vals)) if vals else None

def cell(vals, fmt="{:.0f}"):
    if not vals:
        return "failed"
    m = med(vals)
    lo, hi = spread(vals)
    return (fmt + " ({}-{})").format(m, fmt.format(lo), fmt.format(hi))

def get(kind, server, **match):
    out = []
    for r in rows:
        if r["kind"] != kind or r.get("server") != server or r.get("failed") == "1":
            continue
        if all(r.get(k) == str(v) for k, v in match.items()):
            out.append(r)
    return out

v = dict(l.rstrip("\n").split(" ", 1) for l in open(vers))
print("## Fan-out side by side (%s)" % datetime.date.today().isoformat())
print()
print("Written by `bash tools/fanout_compare.sh` in one run of %s s; do not edit by hand. "
      "Load average (1, 5, 15 min) at the start: %s; at the end: %s (the machine is shared: "
      "other work ran beside this run, so read the spreads)." % (elapsed, v.get("load_start", "?"),
                                                                 v.get("load_end", "?")))
print("Machine: %s. Versions: vroomd %s, redis-server %s, nats-server %s (GOMAXPROCS=1), "
      "mosquitto %s (MQTT 3.1.1, QoS 0); ceiling = `tools/ceiling_relay`, which copies the "
      "publisher's bytes verbatim to every subscriber." % (v["machine"], v["vroomd"], v["redis-server"],
                                                          v["nats-server"], v["mosquitto"]))
print()
print("Each server on CPU 0, `tools/fanout_bench` (one thread, epoll, one adapter per protocol) on "
      "CPU 1, loopback. One publisher, N subscribers, one channel; throughput cells: %s s measured "
      "after 0.5 s of warm-up (then up to 15 s to drain: a loss is a message never delivered), at most ~2 MiB (8-2048 messages) in flight past the slowest "
      "subscriber. Every cell %s times, servers interleaved (their order rotated at each repetition); the figure is the median, the spread "
      "(min-max) in parentheses. vroomd runs with `--max-in-rate 0` (its default 128 MiB/s per "
      "connection would cap the publisher; no peer has such a limit), mosquitto with "
      "`max_queued_messages 0` and `set_tcp_nodelay true`." % (secs, reps))
print()
print("### Delivered payload MB/s (summed over subscribers)")
print()
hdr = "| S bytes | N | " + " | ".join(names[s] for s in servers) + " | vroomd / best peer | vroomd / ceiling |"
print(hdr)
print("|" + "---|" * (len(servers) + 4))
misses = []
for S in sizes:
    for N in subs:
        cells, meds = [], {}
        for s in servers:
            vals = [float(r["mb_per_s"]) for r in get("T", s, size=S, subs=N)]
            lost = sum(int(r.get("lost", 0)) for r in get("T", s, size=S, subs=N))
            c = cell(vals, "{:.1f}")
            if lost:
                c += " lost %d" % lost
            cells.append(c)
            meds[s] = med(vals)
        peers = [meds[s] for s in servers if s not in ("vroom", "ceiling") and meds.get(s)]
        best = max(peers) if peers else None
        vr = meds.get("vroom")
        ce = meds.get("ceiling")
        rb = "%.2f" % (vr / best) if vr and best else "-"
        rc = "%.2f" % (vr / ce) if vr and ce else "-"
        if vr and best and vr < best:
            misses.append("S=%d N=%d: below the best peer (%.2f)" % (S, N, vr / best))
        if vr and ce and S >= 15000 and vr < 0.75 * ce:
            misses.append("S=%d N=%d: %.0f %% of the ceiling" % (S, N, 100 * vr / ce))
        print("| %d | %d | %s | %s | %s |" % (S, N, " | ".join(cells), rb, rc))
print()
print("### Delivered messages/s (summed over subscribers)")
print()
print("| S bytes | N | " + " | ".join(names[s] for s in servers) + " |")
print("|" + "---|" * (len(servers) + 2))
for S in sizes:
    for N in subs:
        cells = [cell([float(r["msgs_per_s"]) for r in get("T", s, size=S, subs=N)]) for s in servers]
        print("| %d | %d | %s |" % (S, N, " | ".join(cells)))
print()
print("### Latency, S = 1024, N = 10, 10,000 messages/s, %s s measured (microseconds)" % os.environ["LAT_SECS"])
print()
print("| server | p50 | p90 | p99 | p99.9 | max | lost |")
print("|---|---|---|---|---|---|---|")
p99 = {}
for s in servers:
    rs = get("L", s)
    cols = []
    for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
        cols.append(cell([float(r[k]) for r in rs], "{:.0f}"))
    p99[s] = med([float(r["p99_us"]) for r in rs])
    lost = sum(int(r.get("lost", 0)) for r in rs)
    print("| %s | %s | %d |" % (names[s], " | ".join(cols), lost))
peers = [p99[s] for s in servers if s not in ("vroom", "ceiling") and p99.get(s)]
if p99.get("vroom") and peers and p99["vroom"] > min(peers):
    misses.append("latency: p99 %.0f us, best peer %.0f us" % (p99["vroom"], min(peers)))
fs = [r for r in rows if r["kind"] == "F"]
if fs:
    print()
    print("### File streams, vroomd only (one stream of {:,} bytes, 1 MiB writes, every byte "
          "verified by every receiver; `vroom-bench --stream`)".format(int(os.environ["STREAM_BYTES"])))
    print()
    print("| receivers | MB/s per receiver | MB/s total |")
    print("|---|---|---|")
    for n in ("1", "10"):
        rs = [r for r in fs if r.get("subs") == n and r.get("failed") != "1"]
        print("| %s | %s | %s |" % (n, cell([float(r["MB/s-per-receiver"]) for r in rs], "{:.1f}"),
                                  cell([float(r["MB/s-total"]) for r in rs], "{:.1f}")))
ms = [r for r in rows if r["kind"] == "M"]
ks = [r for r in rows if r["kind"] == "K"]
if ms or ks:
    print()
    print("### Connections, vroomd only")
    print()
    if ms:
        per = [float(r["per_conn_b"]) for r in ms]
        print("- Memory per idle connection (RSS delta of a fresh node for %s HELLO'd connections): "
              "**%s bytes** (target: at most 8192)." % (ms[0]["conns"], cell(per)))
        if med(per) > 8192:
            misses.append("memory per idle connection %.0f bytes" % med(per))
    if ks:
        ok = [r for r in ks if r.get("failed") != "1"]
        if ok:
            print("- 10,000 subscribers on one room, S = 1024, at most 4 messages in flight: **%s deliveries/s**, %s MB/s, lost %d, "
                  "node RSS %s KiB." % (cell([float(r["msgs_per_s"]) for r in ok]),
                                        cell([float(r["mb_per_s"]) for r in ok], "{:.1f}"),
                                        sum(int(r.get("lost", 0)) for r in ok),
                                        cell([float(r["rss_kb"]) for r in ok])))
        if len(ok) < len(ks):
            misses.append("10,000 subscribers: %d of %d runs failed" % (len(ks) - len(ok), len(ks)))
            print("- 10,000 subscribers: %d of %d runs failed: %s" % (len(ks) - len(ok), len(ks),
                  [r.get("error") for r in ks if r.get("failed") == "1"][0]))
print()
print("Targets missed in this run: " + ("; ".join(misses) if misses else "none") + ".")
EOF

if [[ ${NO_DOC:-} ]]; then
	cat "$TMP/section.md"
	cp "$RES" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
	exit 0
fi
DOC=$ROOT/docs/benchmarks.md
python3 - "$DOC" "$TMP/section.md" <<'EOF'
import sys
doc, sec = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- fanout-compare:begin -->", "<!-- fanout-compare:end -->"
text = open(doc).read()
block = begin + "\n" + sec + end
if begin in text and end in text:
    a = text.index(begin)
    b = text.index(end) + len(end)
    text = text[:a] + block + text[b:]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
EOF
cp "$RES" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
log "wrote the section of $DOC"
