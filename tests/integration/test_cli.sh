#!/bin/bash
# Integration tests of the vroom CLI against a real vroomd: every command the
# way a user types it, output formats, exit statuses and error lines.
#
# Needs VROOM (the CLI) and VROOMD (the node); meson sets both, and
# VROOM_TEST_TMP (the build dir for logs). Prints "ok - NAME" or
# "not ok - NAME" per case (TAP-like, with the failure's output as "#"
# lines) and exits non-zero if any case failed. Every wait is bounded.
set -u

VROOM=${VROOM:?set VROOM to the vroom CLI}
VROOMD=${VROOMD:?set VROOMD to vroomd}
PY=/usr/bin/python3
BASE=${VROOM_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$BASE/logs"
TMP=$(mktemp -d "$BASE/cli.XXXXXX")
NODELOG=$BASE/logs/cli-vroomd-$$.log
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

# wait_exit PID [SECONDS]: waits for the background job PID (default 10 s,
# then SIGKILL and fail); its exit status goes to $RC.
wait_exit() {
	local pid=$1 n=$((${2:-10} * 20))
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

# ok_run IDENTITY ARGS...: vr that must succeed with nothing on stderr.
ok_run() {
	vr "$@"
	[ "$RC" -eq 0 ] || fail "vroom $* exited $RC: $(cat "$TMP/err")"
	[ ! -s "$TMP/err" ] || fail "vroom $* wrote to stderr: $(cat "$TMP/err")"
}

# expect_error CODE NAME IDENTITY ARGS...: vr that must exit CODE with exactly
# one stderr line "vroom: NAME: message" and nothing on stdout.
expect_error() {
	local code=$1 name=$2
	shift 2
	vr "$@"
	[ "$RC" -eq "$code" ] || fail "vroom $* exited $RC, not $code: $(cat "$TMP/err")"
	[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "vroom $*: not one stderr line: $(cat "$TMP/err")"
	grep -Eq "^vroom: $name: .+" "$TMP/err" || fail "vroom $*: stderr is '$(cat "$TMP/err")', not 'vroom: $name: ...'"
	[ ! -s "$TMP/out" ] || fail "vroom $*: wrote to stdout: $(cat "$TMP/out")"
}

# new_room OWNER: creates a room and prints its id. Should the node hand out
# an id beginning with '-' (case room_ids_never_look_like_options), the other
# cases skip it, so that they fail only for their own reasons.
new_room() {
	local i
	for ((i = 0; i < 20; i++)); do
		ok_run "$1" room create
		case $(cat "$TMP/out") in
		-*) ;;
		*) cat "$TMP/out"; return 0 ;;
		esac
	done
	fail "20 room ids in a row began with '-'"
}

# start_sub NAME IDENTITY ARGS...: `vroom sub ... --verbose` in the
# background with stdout in $TMP/NAME.out, stderr in $TMP/NAME.err; returns
# once it has subscribed. Its pid goes to $SUB.
start_sub() {
	local name=$1 who=$2 room=$3
	shift 3
	"$VROOM" -s "$ADDR" --identity "$who" sub "$room" --verbose "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err" &
	SUB=$!
	wait_for_line "$TMP/$name.err" "^vroom: subscribed to $room\$"
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

case_help_version() {
	"$VROOM" --help >"$TMP/out" || fail "--help exited $?"
	grep -q '^usage: vroom' "$TMP/out" || fail "--help: $(cat "$TMP/out")"
	"$VROOM" --version >"$TMP/out" || fail "--version exited $?"
	grep -Eq '^vroom [0-9]+\.[0-9]+\.[0-9]+$' "$TMP/out" || fail "--version: $(cat "$TMP/out")"
	"$VROOM" -h >"$TMP/out" || fail "-h exited $?"
}

case_usage_errors() {
	local rc
	rc=0; "$VROOM" >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || fail "no command: exit $rc, not 2"
	rc=0; "$VROOM" frobnicate 2>"$TMP/err" || rc=$?
	[ "$rc" -eq 2 ] || fail "unknown command: exit $rc, not 2"
	grep -q "^vroom: unknown command 'frobnicate'" "$TMP/err" || fail "$(cat "$TMP/err")"
	rc=0; "$VROOM" sub X --format xml 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "--format xml: exit $rc, not 2"
	rc=0; "$VROOM" push X --dtype 256 y 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "--dtype 256: exit $rc, not 2"
	rc=0; "$VROOM" room info 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "room info without an id: exit $rc, not 2"
}

# Room ids are base64url, whose alphabet has '-'. Users paste an id as
# `vroom sub ID` like any other word, and the CLI reads options anywhere on
# the line: an id starting with '-' would be taken for options. The node
# must never hand one out (before the fix, 1 in 64 did). 200 creates catch a
# regression 96 times in 100.
case_room_ids_never_look_like_options() {
	local i id
	for ((i = 0; i < 200; i++)); do
		ok_run alice room create
		id=$(cat "$TMP/out")
		[[ $id =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{15}$ ]] || fail "room id '$id' (create $i)"
	done
}

case_create_prints_id() {
	ok_run alice room create
	[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "create printed: $(cat "$TMP/out")"
	grep -Eqx '[A-Za-z0-9_-]{16}' "$TMP/out" || fail "not a room id: '$(cat "$TMP/out")'"
	local a b
	a=$(cat "$TMP/out")
	b=$(new_room alice)
	[ "$a" != "$b" ] || fail "two creates gave the same id $a"
}

case_info_json() {
	local id
	id=$(new_room alice)
	ok_run alice room grant "$id" bob
	ok_run alice room info "$id"
	cp "$TMP/out" "$TMP/owner.json"
	ok_run bob room info "$id"
	cp "$TMP/out" "$TMP/other.json"
	"$PY" - "$TMP/owner.json" "$TMP/other.json" "$id" <<'PY'
import json, sys
own = open(sys.argv[1]).read()
oth = open(sys.argv[2]).read()
assert own.count("\n") == 1 and oth.count("\n") == 1, (own, oth)
own, oth = json.loads(own), json.loads(oth)
rid = sys.argv[3]
for o in (own, oth):
    assert o["id"] == rid and o["owner"] == "alice", o
    assert o["subscribers"] == 0 and o["seq"] == 0 and o["pushes"] == 0 and o["bytes"] == 0, o
    assert o["created_ms"] > 1600000000000 and o["last_active_ms"] >= o["created_ms"], o
assert own["grants"] == ["bob"], own
assert "grants" not in oth, oth
PY
}

case_sub_json() {
	local id
	id=$(new_room alice)
	start_sub sj bob "$id" --count 3 --format json
	ok_run alice push "$id" hello
	[ ! -s "$TMP/out" ] || fail "push printed: $(cat "$TMP/out")"
	ok_run alice push --dtype 7 "$id" 'with space'
	printf 'bin\000ary\n' >"$TMP/stdin.bin"
	RC=0
	"$VROOM" -s "$ADDR" --identity alice push "$id" <"$TMP/stdin.bin" || RC=$?
	[ "$RC" -eq 0 ] || fail "push from stdin exited $RC"
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC: $(cat "$TMP/sj.err")"
	[ "$(cat "$TMP/sj.err")" = "vroom: subscribed to $id" ] || fail "sub stderr: $(cat "$TMP/sj.err")"
	"$PY" - "$TMP/sj.out" <<'PY'
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 3, lines
msgs = [json.loads(l) for l in lines]
want = [(1, 0, b"hello"), (2, 7, b"with space"), (3, 0, b"bin\0ary\n")]
for m, (seq, dtype, data) in zip(msgs, want):
    assert set(m) == {"seq", "sender", "dtype", "size", "data"}, m
    assert m["seq"] == seq and m["sender"] == "alice" and m["dtype"] == dtype, m
    assert m["size"] == len(data) and base64.b64decode(m["data"], validate=True) == data, m
PY
}

case_sub_raw_binary() {
	local id
	id=$(new_room alice)
	"$PY" -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 40 + b"\r\n\0")' \
		>"$TMP/blob.bin"
	start_sub raw bob "$id" --count 1 --format raw
	"$VROOM" -s "$ADDR" --identity alice push "$id" <"$TMP/blob.bin" || fail "push exited $?"
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC: $(cat "$TMP/raw.err")"
	cmp "$TMP/blob.bin" "$TMP/raw.out" || fail "raw output differs from the pushed bytes"
	# raw is the default format
	start_sub raw2 bob "$id" --count 1
	ok_run alice push "$id" abc
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC"
	[ "$(cat "$TMP/raw2.out")" = abc ] || fail "default format wrote: $(cat "$TMP/raw2.out")"
}

# DATA that looks like an option goes after `--`, as with any getopt tool.
case_push_dash_data() {
	local id
	id=$(new_room alice)
	start_sub dd bob "$id" --count 1 --format raw
	ok_run alice push "$id" -- -42
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC: $(cat "$TMP/dd.err")"
	[ "$(cat "$TMP/dd.out")" = "-42" ] || fail "got '$(cat "$TMP/dd.out")'"
}

case_push_each_line() {
	local id
	id=$(new_room alice)
	start_sub el bob "$id" --count 3 --format json
	RC=0
	printf 'one\ntwo words\nthree\n' |
		"$VROOM" -s "$ADDR" --identity alice push --each-line --dtype 3 "$id" || RC=$?
	[ "$RC" -eq 0 ] || fail "push --each-line exited $RC"
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC: $(cat "$TMP/el.err")"
	"$PY" - "$TMP/el.out" <<'PY'
import base64, json, sys
msgs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
got = [(m["seq"], m["dtype"], base64.b64decode(m["data"])) for m in msgs]
assert got == [(1, 3, b"one"), (2, 3, b"two words"), (3, 3, b"three")], got
PY
}

# The largest stdin push the CLI allows (frame_max - 256 bytes) goes through
# whole; one byte more is refused before anything is sent.
case_push_at_limit() {
	local id max=$((1048576 - 256))
	id=$(new_room alice)
	head -c "$max" /dev/urandom >"$TMP/max.bin"
	start_sub max bob "$id" --count 1 --format raw
	"$VROOM" -s "$ADDR" --identity alice push "$id" <"$TMP/max.bin" || fail "push exited $?"
	wait_exit "$SUB"
	[ "$RC" -eq 0 ] || fail "sub exited $RC: $(cat "$TMP/max.err")"
	cmp "$TMP/max.bin" "$TMP/max.out" || fail "the $max bytes came out different"
	head -c 1 /dev/zero >>"$TMP/max.bin"
	RC=0
	"$VROOM" -s "$ADDR" --identity alice push "$id" <"$TMP/max.bin" 2>"$TMP/err" || RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
	[ "$RC" -eq 1 ] && grep -q '^vroom: too_large: ' "$TMP/err" ||
		fail "$((max + 1)) bytes: exit $RC: $(cat "$TMP/err")"
}

case_push_too_large() {
	local id
	id=$(new_room alice)
	head -c 1100000 /dev/zero >"$TMP/huge.bin"
	RC=0
	"$VROOM" -s "$ADDR" --identity alice push "$id" <"$TMP/huge.bin" 2>"$TMP/err" || RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
	[ "$RC" -eq 1 ] || fail "exit $RC, not 1"
	[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "not one line: $(cat "$TMP/err")"
	grep -q '^vroom: too_large: ' "$TMP/err" || fail "$(cat "$TMP/err")"
	ok_run alice room info "$id"
	grep -q '"pushes":0' "$TMP/out" || fail "a push went through: $(cat "$TMP/out")"
}

case_grant_revoke() {
	local id
	id=$(new_room alice)
	expect_error 1 forbidden bob push "$id" early
	ok_run alice room grant "$id" bob
	ok_run alice room info "$id"
	grep -q '"grants":\["bob"\]' "$TMP/out" || fail "after grant: $(cat "$TMP/out")"
	ok_run bob push "$id" allowed
	ok_run alice room revoke "$id" bob
	ok_run alice room info "$id"
	grep -q '"grants":\[\]' "$TMP/out" || fail "after revoke: $(cat "$TMP/out")"
	grep -q '"seq":1,' "$TMP/out" || fail "one push should have counted: $(cat "$TMP/out")"
	expect_error 1 forbidden bob push "$id" late
}

case_errors() {
	local id unknown=AAAAAAAAAAAAAAAA
	id=$(new_room alice)
	expect_error 1 unknown_room alice room info "$unknown"
	expect_error 1 unknown_room alice room rm "$unknown"
	expect_error 1 unknown_room alice room grant "$unknown" bob
	expect_error 1 unknown_room alice push "$unknown" data
	expect_error 1 unknown_room alice sub "$unknown" --timeout 1
	expect_error 1 not_owner bob room rm "$id"
	expect_error 1 not_owner bob room grant "$id" bob
	expect_error 1 not_owner bob room revoke "$id" alice
	expect_error 1 bad_request alice room grant "$id" 'two words'
	expect_error 1 auth 'two words' room create
	ok_run alice room rm "$id"
	expect_error 1 unknown_room alice room rm "$id"
}

case_sub_exits_3_on_remove() {
	local id
	id=$(new_room alice)
	start_sub rm bob "$id" --format json
	ok_run alice room rm "$id"
	wait_exit "$SUB"
	[ "$RC" -eq 3 ] || fail "sub exited $RC, not 3: $(cat "$TMP/rm.err")"
	grep -q "^vroom: room_closed: .*$id.*removed" "$TMP/rm.err" ||
		fail "sub stderr: $(cat "$TMP/rm.err")"
	[ ! -s "$TMP/rm.out" ] || fail "sub printed: $(cat "$TMP/rm.out")"
}

case_sub_timeout() {
	local id t0 t1
	id=$(new_room alice)
	t0=$(date +%s%N)
	ok_run bob sub "$id" --timeout 1 --format json
	t1=$(date +%s%N)
	[ ! -s "$TMP/out" ] || fail "sub printed: $(cat "$TMP/out")"
	local ms=$(((t1 - t0) / 1000000))
	((ms >= 900 && ms < 5000)) || fail "sub --timeout 1 took $ms ms"
	# A fractional timeout, and --count with a timeout that runs out first.
	ok_run bob sub "$id" --timeout 0.2 --count 5
	# --count 0: subscribe (the room must exist), then exit at once.
	ok_run bob sub "$id" --count 0
	[ ! -s "$TMP/out" ] || fail "sub --count 0 printed: $(cat "$TMP/out")"
	expect_error 1 unknown_room bob sub AAAAAAAAAAAAAAAA --count 0
}

case_server_option_and_env() {
	local id
	RC=0
	id=$(VROOM_SERVER=$ADDR "$VROOM" --identity alice room create) || RC=$?
	[ "$RC" -eq 0 ] && [ ${#id} -eq 16 ] || fail "VROOM_SERVER: exit $RC, '$id'"
	"$VROOM" --server "$ADDR" --identity alice room info "$id" >/dev/null ||
		fail "--server: exit $?"
	"$VROOM" -s "$ADDR" --identity alice room info "$id" >/dev/null || fail "-s: exit $?"
	# The option wins over the environment.
	VROOM_SERVER=127.0.0.1:1 "$VROOM" -s "$ADDR" --identity alice room info "$id" \
		>/dev/null || fail "-s over VROOM_SERVER: exit $?"
	# A port nobody listens on: a connect error, one line.
	local dead
	dead=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print("127.0.0.1:%d" % s.getsockname()[1])')
	RC=0
	VROOM_SERVER=$dead "$VROOM" --identity alice room create >"$TMP/out" 2>"$TMP/err" || RC=$?
	cat "$TMP/err" >>"$TMP/all.err"
	[ "$RC" -eq 1 ] || fail "dead server: exit $RC"
	[ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^vroom: connect: ' "$TMP/err" ||
		fail "dead server: $(cat "$TMP/err")"
}

case_identity_option_and_env() {
	local id owner
	id=$(VROOM_IDENTITY=carol "$VROOM" -s "$ADDR" room create) || fail "create: exit $?"
	ok_run carol room info "$id"
	grep -q '"owner":"carol"' "$TMP/out" || fail "VROOM_IDENTITY: $(cat "$TMP/out")"
	id=$(VROOM_IDENTITY=carol "$VROOM" -s "$ADDR" --identity dave room create) ||
		fail "create: exit $?"
	ok_run dave room info "$id"
	grep -q '"owner":"dave"' "$TMP/out" || fail "--identity: $(cat "$TMP/out")"
	grep -q '"grants"' "$TMP/out" || fail "dave owns it, so sees grants: $(cat "$TMP/out")"
	# $USER is the fallback.
	id=$(USER=erin "$VROOM" -s "$ADDR" room create) || fail "create: exit $?"
	ok_run erin room info "$id"
	grep -q '"owner":"erin"' "$TMP/out" || fail "USER: $(cat "$TMP/out")"
}

case_no_sanitizer_reports() {
	[ -e "$TMP/all.err" ] || return 0
	if grep -Eq "$SANITIZER_MARKS" "$TMP"/all.err "$TMP"/*.err; then
		grep -E -B2 -A20 "$SANITIZER_MARKS" "$TMP"/all.err "$TMP"/*.err | head -60 >&2
		fail "the CLI reported sanitizer errors"
	fi
}

# Runs after the main shell stopped the node (its job, not a case's) and put
# the exit status in NODE_RC.
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
	local name=$1 rc=0
	: >"$TMP/case.log"
	(
		set -e
		"case_$name"
	) >"$TMP/case.log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "ok - $name"
	else
		echo "not ok - $name"
		sed 's/^/#   /' "$TMP/case.log"
		FAILED=$((FAILED + 1))
	fi
}

start_node
echo "# vroomd at $ADDR, log $NODELOG"
for c in help_version usage_errors create_prints_id room_ids_never_look_like_options info_json sub_json sub_raw_binary \
	push_dash_data push_each_line push_at_limit push_too_large grant_revoke errors sub_exits_3_on_remove sub_timeout \
	server_option_and_env identity_option_and_env no_sanitizer_reports; do
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
