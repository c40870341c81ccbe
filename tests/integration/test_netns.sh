#!/usr/bin/env bash
# deploy/netns-cluster for real: three hosts in network namespaces of the
# script's own, each node on its own address with tokens required; a room
# made on one host, subscribed on another, pushed to from the third; then
# everything is removed. Skipped (77) where network namespaces cannot be made.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$(dirname "$VROOMD")/.." && pwd)
export VROOM_BUILD=$BUILD VROOM_STATE=${VROOM_TEST_TMP:-/tmp}/netns-state.$$
V=$BUILD/client/vroom
fails=0
ok() { echo "ok - $1"; }
bad() { echo "not ok - $1"; fails=$((fails + 1)); }

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add vroom-probe.$$ 2>/dev/null; then
	echo "skip: needs root and ip netns"
	exit 77
fi
ip netns del vroom-probe.$$
trap 'bash "$ROOT/deploy/netns-cluster" stop >/dev/null 2>&1; rm -rf "$VROOM_STATE"' EXIT

out=$(timeout 60 bash "$ROOT/deploy/netns-cluster" start 3 2>&1)
echo "$out" | grep -q "as h1 sees it: h1 alive, h2 alive, h3 alive" && ok "3 hosts met" ||
	bad "3 hosts met: $out"
for u in alice bob; do bash "$ROOT/deploy/netns-cluster" token $u >"$VROOM_STATE/tok.$u"; done
room=$("$V" -s 10.77.0.1:7700 --token "$VROOM_STATE/tok.alice" room create 2>&1)
[[ $room =~ ^[A-Za-z0-9_-]{16}$ ]] && ok "room created on h1" || bad "room create: $room"
"$V" -s 10.77.0.2:7700 --token "$VROOM_STATE/tok.bob" sub "$room" --count 2 --timeout 10 \
	--format json --verbose >"$VROOM_STATE/sub.out" 2>"$VROOM_STATE/sub.err" &
sub=$!
for _ in $(seq 50); do grep -q subscribed "$VROOM_STATE/sub.err" && break; sleep 0.1; done
"$V" -s 10.77.0.3:7700 --token "$VROOM_STATE/tok.alice" push "$room" one &&
	"$V" -s 10.77.0.3:7700 --token "$VROOM_STATE/tok.alice" push "$room" two &&
	ok "pushed from h3" || bad "push from h3"
wait $sub && [ "$(grep -c '"sender":"alice"' "$VROOM_STATE/sub.out")" = 2 ] &&
	grep -q '"seq":2' "$VROOM_STATE/sub.out" && ok "bob on h2 got both, in order" ||
	bad "bob on h2: $(cat "$VROOM_STATE/sub.out" "$VROOM_STATE/sub.err")"
"$V" -s 10.77.0.1:7700 room create >/dev/null 2>"$VROOM_STATE/noauth.err" &&
	bad "a client without a token got in" ||
	{ grep -q "auth" "$VROOM_STATE/noauth.err" && ok "no token: refused" || bad "no token: $(cat "$VROOM_STATE/noauth.err")"; }
for i in 1 2 3; do
	grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$VROOM_STATE/h$i.log" &&
		bad "h$i sanitizer report"
done
bash "$ROOT/deploy/netns-cluster" stop >/dev/null 2>&1
[ -z "$(ip netns list | grep '^vroom-h')" ] && ! ip link show vroom-br >/dev/null 2>&1 &&
	ok "stop removed namespaces and bridge" || bad "stop left namespaces or the bridge"
for i in 1 2 3; do
	grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$VROOM_STATE/h$i.log" &&
		bad "h$i: sanitizer report after stop: $(grep -m3 -E 'Sanitizer|runtime error' "$VROOM_STATE/h$i.log")"
done
echo "netns: $((fails == 0 ? 1 : 0)) run, $fails failed"
exit $((fails > 0))
