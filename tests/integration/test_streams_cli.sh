#!/bin/bash
# Integration tests of the vroom CLI's byte streams against a real vroomd:
# `send`, `stream` and `recv` the way a user types them (recv in the
# background, waiting for its "subscribed" line), the files they leave, their
# JSON lines, exit statuses and error lines.
#
# Needs VROOM (the CLI) and VROOMD (the node); meson sets both, and
# VROOM_TEST_TMP (the build dir for logs). Prints "ok - NAME" or
# "not ok - NAME" per case (with the failure's output as "#" lines) and exits
# non-zero if any case failed. Every wait is bounded.
set -u

VROOM=${VROOM:?set VROOM to the vroom CLI}
VROOMD=${VROOMD:?set VROOMD to vroomd}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${VROOM_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$BASE/logs"
TMP=$(mktemp -d "$BASE/streams-cli.XXXXXX")
NODELOG=$BASE/logs/streams-cli-vroomd-$$.log
NODE_PID=
SANITIZER_MARKS='AddressSanitizer|LeakSanitizer|runtime error'
unset VROOM_SERVER VROOM_IDENTITY

cleanup() {
	# Whatever a failed case left running: only the jobs this shell started.
	local pid
	for pid in $(jobs -p); do
		kill -9 "$pid" 2>/dev/null
	done
	wait 2>/dev/null
}
trap cleanup EXIT

# ---- helpers (run inside a case's subshell; a failure exits it) ----

fail() {
	echo "$*" >&2
	exit 1
}

# wait_for_line FILE REGEX: up to 10 s for a line matching REGEX in FILE.
wait_for_line() {
	local i
	for ((i = 0; i < 200; i++)); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "timed out waiting for /$2/ in $1: $(cat "$1" 2>/dev/null)"
}

# wait_exit PID [SECONDS]: waits for the background job PID (default 20 s,
# then SIGKILL and fail); its exit status goes to $RC.
wait_exit() {
	local pid=$1 n=$((${2:-20} * 20))
	while kill -0 "$pid" 2>/dev/null && ((n-- > 0)); do
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		fail "process $pid did not exit in time"
	fi
	RC=0
	wait "$pid" || RC=$?
}

# vr IDENTITY ARGS...: the CLI against our node as IDENTITY; its stdout and
# stderr go to $TMP/out and $TMP/err, its status to $RC.
vr() {
	local who=$1
	shift
	RC=0
	"$VROOM" -s "$ADDR" --identity "$who" "$@" >"$TMP/out" 2>"$TMP/err" || RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
}

# ok_run IDENTITY ARGS...: vr that must succeed with no "vroom:" error line
# (send and stream print progress lines on stderr).
ok_run() {
	vr "$@"
	[ "$RC" -eq 0 ] || fail "vroom $* exited $RC: $(cat "$TMP/err")"
	! grep -q '^vroom: ' "$TMP/err" || fail "vroom $* wrote an error: $(cat "$TMP/err")"
}

# new_room OWNER: creates a room and prints its id.
new_room() {
	local i
	for ((i = 0; i < 20; i++)); do
		vr "$1" room create
		[ "$RC" -eq 0 ] || fail "room create exited $RC: $(cat "$TMP/err")"
		case $(cat "$TMP/out") in
		-*) ;;
		*) cat "$TMP/out"; return 0 ;;
		esac
	done
	fail "20 room ids in a row began with '-'"
}

# start_recv NAME IDENTITY ROOM ARGS...: `vroom recv ROOM --verbose ARGS`
# in the background, saving into $RECV_DIR if set, else $TMP/NAME.d (made
# here unless it exists), stdout in $TMP/NAME.out, stderr in $TMP/NAME.err;
# returns once it has subscribed. Its pid goes to $RECV.
start_recv() {
	local name=$1 who=$2 room=$3 dir=${RECV_DIR:-$TMP/$1.d}
	shift 3
	mkdir -p "$dir"
	echo "$dir" >"$TMP/$name.dir"
	"$VROOM" -s "$ADDR" --identity "$who" recv "$room" --verbose --dir "$dir" \
		--timeout 60 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	RECV=$!
	wait_for_line "$TMP/$name.err" "^vroom: subscribed to $room\$"
}

# finish_recv NAME PID [STATUS]: waits for a recv and checks its status
# (default 0).
finish_recv() {
	wait_exit "$2" 30
	[ "$RC" -eq "${3:-0}" ] || fail "recv $1 exited $RC, not ${3:-0}: $(cat "$TMP/$1.err")"
}

# check_json NAME PYTHON-EXPR...: every expression must hold for the list
# `lines` of recv NAME's JSON objects, with `d` its directory and `ids` the
# stream ids in $TMP/ids (one a line) when that exists.
check_json() {
	local name=$1
	shift
	"$PY" - "$TMP/$name.out" "$(cat "$TMP/$name.dir")" "$TMP/ids" "$@" <<'PY'
import json, os, sys
out, d, idfile = sys.argv[1:4]
text = open(out).read()
assert text.endswith("\n") or not text, "recv output does not end in a newline: %r" % text[-80:]
lines = [json.loads(l) for l in text.splitlines()]
ids = open(idfile).read().split() if os.path.exists(idfile) else []
keys = {"id", "topic", "name", "mime", "size", "bytes", "sender", "attributes", "status",
        "reason", "path"}
for o in lines:
    assert set(o) == keys or (o.get("status") != "ok" and set(o) == keys - {"path"}), \
        "JSON keys %s" % sorted(o)
    if "path" in o:
        real = os.path.realpath(o["path"])
        assert os.path.dirname(real) == os.path.realpath(d), "%s is not in %s" % (real, d)
for expr in sys.argv[4:]:
    assert eval(expr), "%s does not hold for %s (ids %s)" % (expr, lines, ids)
PY
	[ $? -eq 0 ] || fail "JSON check failed for recv $name"
}

# no_partials DIR: recv left no temporary file behind.
no_partials() {
	local f
	for f in "$1"/.*vroom-part "$1"/*vroom-part; do
		[ ! -e "$f" ] || fail "temporary files left in $1: $(ls -A "$1")"
	done
}

# ---- the node ----

start_node() {
	: >"$NODELOG"
	"$VROOMD" --listen 127.0.0.1:0 "$@" >"$NODELOG" 2>&1 &
	NODE_PID=$!
	local i
	ADDR=
	for ((i = 0; i < 200; i++)); do
		ADDR=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\) (clients).*/\1/p' "$NODELOG")
		[ -n "$ADDR" ] && return 0
		kill -0 "$NODE_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "vroomd did not report its address in 10 s; log $NODELOG:" >&2
	cat "$NODELOG" >&2
	exit 1
}

# ---- cases ----

case_send_two_files() {
	local id
	id=$(new_room alice)
	head -c $((20 << 20)) /dev/urandom >"$TMP/big.bin"
	printf 'a file whose name has spaces\n' >"$TMP/name with spaces.txt"
	start_recv two bob "$id" --count 2
	ok_run alice send "$id" "$TMP/big.bin" "$TMP/name with spaces.txt"
	cp "$TMP/out" "$TMP/ids"
	[ "$(wc -l <"$TMP/ids")" -eq 2 ] || fail "send printed: $(cat "$TMP/ids")"
	grep -Evq '^[A-Za-z0-9_-]{1,64}$' "$TMP/ids" && fail "not stream ids: $(cat "$TMP/ids")"
	[ "$(sort -u "$TMP/ids" | wc -l)" -eq 2 ] || fail "the same id twice: $(cat "$TMP/ids")"
	finish_recv two "$RECV"
	check_json two 'len(lines) == 2' \
		'[o["id"] for o in lines] == ids' \
		'all(o["status"] == "ok" and o["reason"] == "" and o["sender"] == "alice" for o in lines)' \
		'lines[0]["name"] == "big.bin" and lines[0]["size"] == lines[0]["bytes"] == 20 << 20' \
		'lines[1]["name"] == "name with spaces.txt" and lines[1]["size"] == lines[1]["bytes"] == 29' \
		'[os.path.basename(o["path"]) for o in lines] == ["big.bin", "name with spaces.txt"]'
	cmp "$TMP/big.bin" "$TMP/two.d/big.bin" || fail "big.bin differs"
	cmp "$TMP/name with spaces.txt" "$TMP/two.d/name with spaces.txt" || fail "the spaced file differs"
	no_partials "$TMP/two.d"
	[ "$(ls -A "$TMP/two.d" | wc -l)" -eq 2 ] || fail "files in the dir: $(ls -A "$TMP/two.d")"
	rm -f "$TMP/ids"
}

case_topic_filter() {
	local id
	id=$(new_room alice)
	printf 'y data\n' >"$TMP/y.txt"
	printf 'x data\n' >"$TMP/x.txt"
	start_recv topx bob "$id" --topic x --count 1
	start_recv all bob "$id" --count 2
	local all=$RECV
	ok_run alice send "$id" "$TMP/y.txt" --topic y
	ok_run alice send "$id" "$TMP/x.txt" --topic x
	finish_recv topx "$RECV"
	check_json topx 'len(lines) == 1' 'lines[0]["name"] == "x.txt" and lines[0]["topic"] == "x"'
	[ "$(ls -A "$TMP/topx.d")" = x.txt ] || fail "topx saved: $(ls -A "$TMP/topx.d")"
	finish_recv all "$all"
	check_json all '[(o["name"], o["topic"]) for o in lines] == [("y.txt", "y"), ("x.txt", "x")]'
}

case_to_bob_only() {
	local id bob carol
	id=$(new_room alice)
	printf 'for bob\n' >"$TMP/private.txt"
	printf 'for all\n' >"$TMP/public.txt"
	start_recv bob bob "$id" --count 2
	bob=$RECV
	start_recv carol carol "$id" --count 1
	carol=$RECV
	ok_run alice send "$id" "$TMP/private.txt" --to bob
	ok_run alice send "$id" "$TMP/public.txt"
	finish_recv bob "$bob"
	finish_recv carol "$carol"
	check_json bob '[o["name"] for o in lines] == ["private.txt", "public.txt"]' \
		'all(o["status"] == "ok" for o in lines)'
	check_json carol '[o["name"] for o in lines] == ["public.txt"]'
	[ "$(ls -A "$TMP/carol.d")" = public.txt ] || fail "carol saved: $(ls -A "$TMP/carol.d")"
	cmp "$TMP/private.txt" "$TMP/bob.d/private.txt" || fail "bob's copy differs"
	# Several identities, one of them bob.
	start_recv bob2 bob "$id" --count 1
	ok_run alice send "$id" "$TMP/private.txt" --to dave,bob,erin
	finish_recv bob2 "$RECV"
	check_json bob2 '[o["name"] for o in lines] == ["private.txt"]'
}

case_attributes() {
	local id
	id=$(new_room alice)
	printf 'attributed\n' >"$TMP/attr.txt"
	start_recv attr bob "$id" --count 1
	ok_run alice send "$id" "$TMP/attr.txt" --attr k=v --attr 'x=y=z' --attr 'sp=a b' --attr empty=
	finish_recv attr "$RECV"
	check_json attr 'lines[0]["attributes"] == {"k": "v", "x": "y=z", "sp": "a b", "empty": ""}'
	# Not KEY=VALUE: a usage error before anything is sent.
	vr alice send "$id" "$TMP/attr.txt" --attr novalue
	[ "$RC" -eq 2 ] || fail "--attr novalue: exit $RC, not 2"
	grep -q "^vroom: --attr: 'novalue'" "$TMP/err" || fail "--attr novalue: $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] || fail "--attr novalue printed $(cat "$TMP/out")"
}

case_stream_stdin() {
	local id
	id=$(new_room alice)
	"$PY" -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 1000 + b"\0end\n")' \
		>"$TMP/notes.bin"
	start_recv stdin bob "$id" --count 1
	RC=0
	"$VROOM" -s "$ADDR" --identity alice stream "$id" --name notes.txt --mime text/plain \
		--topic memo <"$TMP/notes.bin" >"$TMP/out" 2>"$TMP/err" || RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
	[ "$RC" -eq 0 ] || fail "stream exited $RC: $(cat "$TMP/err")"
	[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "stream printed: $(cat "$TMP/out")"
	cp "$TMP/out" "$TMP/ids"
	finish_recv stdin "$RECV"
	check_json stdin 'len(lines) == 1 and lines[0]["id"] == ids[0]' \
		'lines[0]["name"] == "notes.txt" and lines[0]["mime"] == "text/plain"' \
		'lines[0]["topic"] == "memo" and lines[0]["status"] == "ok"' \
		'lines[0]["size"] == -1 and lines[0]["bytes"] == 256005'
	cmp "$TMP/notes.bin" "$TMP/stdin.d/notes.txt" || fail "the saved stdin differs"
	rm -f "$TMP/ids"
	# Empty stdin is an empty stream.
	start_recv empty bob "$id" --count 1
	"$VROOM" -s "$ADDR" --identity alice stream "$id" --name empty.txt </dev/null \
		>"$TMP/out" 2>>"$TMP/all.err" || fail "empty stream exited $?"
	finish_recv empty "$RECV"
	check_json empty 'lines[0]["bytes"] == 0 and lines[0]["status"] == "ok"'
	[ -f "$TMP/empty.d/empty.txt" ] && [ ! -s "$TMP/empty.d/empty.txt" ] ||
		fail "empty.txt: $(ls -la "$TMP/empty.d")"
}

case_evil_names_stay_inside() {
	local id name
	id=$(new_room alice)
	mkdir -p "$TMP/jail"
	RECV_DIR=$TMP/jail/in start_recv jail bob "$id" --count 4
	for name in ../evil '../../evil2' /etc/evil3 '.hidden'; do
		printf '%s\n' "$name" |
			"$VROOM" -s "$ADDR" --identity alice stream "$id" --name "$name" \
				>/dev/null 2>>"$TMP/all.err" || fail "stream --name $name exited $?"
	done
	finish_recv jail "$RECV"
	check_json jail 'len(lines) == 4' \
		'[o["name"] for o in lines] == ["../evil", "../../evil2", "/etc/evil3", ".hidden"]' \
		'all(o["status"] == "ok" for o in lines)' \
		'all(not os.path.basename(o["path"]).startswith(".") for o in lines)'
	[ "$(ls -A "$TMP/jail")" = in ] || fail "files outside --dir: $(ls -A "$TMP/jail")"
	[ ! -e "$TMP/evil" ] && [ ! -e "$TMP/../evil2" ] && [ ! -e /etc/evil3 ] ||
		fail "a file escaped --dir"
	[ "$(ls -A "$TMP/jail/in" | wc -l)" -eq 4 ] || fail "saved: $(ls -A "$TMP/jail/in")"
}

case_no_overwrite_unless_asked() {
	local id
	id=$(new_room alice)
	mkdir -p "$TMP/keep.d"
	printf 'old\n' >"$TMP/keep.d/report.txt"
	mkdir -p "$TMP/src"
	printf 'new\n' >"$TMP/src/report.txt"
	start_recv keep bob "$id" --count 2
	ok_run alice send "$id" "$TMP/src/report.txt"
	ok_run alice send "$id" "$TMP/src/report.txt"
	finish_recv keep "$RECV"
	check_json keep '[os.path.basename(o["path"]) for o in lines] == ["report.txt.1", "report.txt.2"]'
	[ "$(cat "$TMP/keep.d/report.txt")" = old ] || fail "report.txt was overwritten"
	cmp "$TMP/src/report.txt" "$TMP/keep.d/report.txt.1" || fail "report.txt.1 differs"
	# --overwrite replaces it.
	start_recv keep bob "$id" --count 1 --overwrite
	ok_run alice send "$id" "$TMP/src/report.txt"
	finish_recv keep "$RECV"
	check_json keep '[os.path.basename(o["path"]) for o in lines] == ["report.txt"]'
	cmp "$TMP/src/report.txt" "$TMP/keep.d/report.txt" || fail "--overwrite did not replace it"
	[ ! -e "$TMP/keep.d/report.txt.3" ] || fail "--overwrite added a suffix"
	no_partials "$TMP/keep.d"
}

case_send_missing_file() {
	local id
	id=$(new_room alice)
	vr alice send "$id" "$TMP/no such file"
	[ "$RC" -ne 0 ] || fail "send of a missing file exited 0"
	[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "not one stderr line: $(cat "$TMP/err")"
	grep -q "^vroom: [a-z_]*: .*no such file" "$TMP/err" || fail "stderr: $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] || fail "stdout: $(cat "$TMP/out")"
	# Among others: the good one goes, one error line for the missing one.
	printf 'good\n' >"$TMP/good.txt"
	start_recv mixed bob "$id" --count 1
	vr alice send "$id" "$TMP/no such file" "$TMP/good.txt"
	[ "$RC" -ne 0 ] || fail "send with a missing file exited 0"
	[ "$(grep -c '^vroom: ' "$TMP/err")" -eq 1 ] || fail "stderr: $(cat "$TMP/err")"
	[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "stdout: $(cat "$TMP/out")"
	cp "$TMP/out" "$TMP/ids"
	finish_recv mixed "$RECV"
	check_json mixed '[(o["id"], o["name"]) for o in lines] == [(ids[0], "good.txt")]'
	rm -f "$TMP/ids"
}

# Refused by the node: one error line, nothing on stdout, nothing received.
case_send_refused() {
	local id
	id=$(new_room alice)
	printf 'nope\n' >"$TMP/nope.txt"
	start_recv refused bob "$id" --timeout 2
	vr carol send "$id" "$TMP/nope.txt"
	[ "$RC" -eq 1 ] || fail "send without a grant exited $RC"
	[ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^vroom: forbidden: ' "$TMP/err" ||
		fail "stderr: $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] || fail "stdout: $(cat "$TMP/out")"
	RC=0
	printf 'nope\n' | "$VROOM" -s "$ADDR" --identity carol stream "$id" >"$TMP/out" 2>"$TMP/err" ||
		RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
	[ "$RC" -eq 1 ] && grep -q '^vroom: forbidden: ' "$TMP/err" || fail "stream: $RC $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] || fail "stream printed: $(cat "$TMP/out")"
	vr alice send AAAAAAAAAAAAAAAA "$TMP/nope.txt"
	[ "$RC" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^vroom: unknown_room: ' "$TMP/err" ||
		fail "unknown room: $RC $(cat "$TMP/err")"
	finish_recv refused "$RECV"
	[ ! -s "$TMP/refused.out" ] || fail "recv got: $(cat "$TMP/refused.out")"
}

case_recv_exits_3_on_remove() {
	local id
	id=$(new_room alice)
	start_recv gone bob "$id"
	vr alice room rm "$id"
	[ "$RC" -eq 0 ] || fail "room rm exited $RC"
	finish_recv gone "$RECV" 3
	grep -q "^vroom: room_closed: .*$id.*removed" "$TMP/gone.err" ||
		fail "recv stderr: $(cat "$TMP/gone.err")"
	[ ! -s "$TMP/gone.out" ] || fail "recv printed: $(cat "$TMP/gone.out")"
}

# A stream whose checksum does not match: recv reports it (status error) and
# exits 4; no file appears under its name. Sent with raw frames (python).
case_recv_exits_4_on_bad_stream() {
	local id
	id=$(new_room alice)
	start_recv bad bob "$id" --count 1
	"$PY" - "$ADDR" "$id" "$HERE" <<'PY' || fail "the raw sender failed"
import socket, sys
sys.path.insert(0, sys.argv[3])
from harness import frame_bytes, hello, recv_frame
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
hello(s, "alice")
room = sys.argv[2]
s.sendall(frame_bytes([300, 2, room, "bad-1", "", "bad.bin", "", 4, {}, [], 0]))
assert recv_frame(s)[0] == 3
s.sendall(frame_bytes([301, 3, "bad-1", 0, b"abcd"]) +
          frame_bytes([302, 4, "bad-1", "", {}, 0x0123456789ABCDEF]))
v = recv_frame(s)
while v[0] == 320:
    v = recv_frame(s)
assert v[0] == 4 and v[2] == 36, v
PY
	finish_recv bad "$RECV" 4
	check_json bad 'len(lines) == 1 and lines[0]["status"] == "error"' \
		'lines[0]["reason"].startswith("checksum_mismatch")' 'lines[0]["bytes"] == 4'
	[ ! -e "$TMP/bad.d/bad.bin" ] || fail "the unverified stream was saved as bad.bin"
	no_partials "$TMP/bad.d"
}

case_recv_timeout_nothing() {
	local id t0 t1
	id=$(new_room alice)
	mkdir -p "$TMP/idle.d"
	t0=$(date +%s%N)
	vr bob recv "$id" --dir "$TMP/idle.d" --timeout 1
	t1=$(date +%s%N)
	[ "$RC" -eq 0 ] || fail "recv --timeout 1 exited $RC: $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] && [ ! -s "$TMP/err" ] || fail "recv wrote: $(cat "$TMP/out" "$TMP/err")"
	local ms=$(((t1 - t0) / 1000000))
	((ms >= 900 && ms < 5000)) || fail "recv --timeout 1 took $ms ms"
	[ -z "$(ls -A "$TMP/idle.d")" ] || fail "recv left files: $(ls -A "$TMP/idle.d")"
}

case_no_sanitizer_reports() {
	[ -e "$TMP/all.err" ] || return 0
	if grep -Eq "$SANITIZER_MARKS" "$TMP"/all.err "$TMP"/*.err; then
		grep -E -B2 -A20 "$SANITIZER_MARKS" "$TMP"/all.err "$TMP"/*.err | head -60 >&2
		fail "the CLI reported sanitizer errors"
	fi
}

# Runs after the main shell stopped the node and put its status in NODE_RC.
case_node_exits_cleanly() {
	[ "$NODE_RC" -eq 0 ] || fail "vroomd exited $NODE_RC after SIGTERM; log $NODELOG"
	if grep -Eq "$SANITIZER_MARKS" "$NODELOG"; then
		grep -E -A20 "$SANITIZER_MARKS" "$NODELOG" | head -60 >&2
		fail "vroomd's log has sanitizer reports: $NODELOG"
	fi
}

# ---- runner ----

FAILED=0
run() {
	local name=$1 rc=0 t0 t1
	: >"$TMP/case.log"
	t0=$(date +%s%N)
	(
		set -e
		"case_$name"
	) >"$TMP/case.log" 2>&1 || rc=$?
	t1=$(date +%s%N)
	if [ "$rc" -eq 0 ]; then
		printf 'ok - %s (%d ms)\n' "$name" $(((t1 - t0) / 1000000))
	else
		echo "not ok - $name"
		sed 's/^/#   /' "$TMP/case.log"
		FAILED=$((FAILED + 1))
	fi
}

start_node
echo "# vroomd at $ADDR, log $NODELOG"
for c in send_two_files topic_filter to_bob_only attributes stream_stdin evil_names_stay_inside \
	no_overwrite_unless_asked send_missing_file send_refused recv_exits_3_on_remove \
	recv_exits_4_on_bad_stream recv_timeout_nothing no_sanitizer_reports; do
	run "$c"
done
# The node is a job of this shell, not of a case's subshell: stop it here
# (SIGTERM, up to 10 s, then SIGKILL).
kill -TERM "$NODE_PID"
n=200
while kill -0 "$NODE_PID" 2>/dev/null && ((n-- > 0)); do sleep 0.05; done
kill -0 "$NODE_PID" 2>/dev/null && kill -9 "$NODE_PID"
NODE_RC=0
wait "$NODE_PID" || NODE_RC=$?
run node_exits_cleanly

if [ "$FAILED" -ne 0 ]; then
	echo "# $FAILED case(s) failed; files kept in $TMP"
	exit 1
fi
rm -rf "$TMP"
exit 0
