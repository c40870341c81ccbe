#!/usr/bin/env bash
# `meson install --destdir` into a temporary directory: every file vroom
# installs is there (vroomd, vroom, libvroom with its header and pkg-config
# file, the example config, the unit file, the man pages), the installed
# vroomd runs and accepts the installed example config, and the unit file
# names the installed vroomd. Prints "ok - name" per check.
set -uo pipefail
MESON=${MESON:?set MESON}
BUILD=${VROOM_BUILD:?set VROOM_BUILD}
HAVE_SCDOC=${HAVE_SCDOC:-1}
DEST=$(mktemp -d "${VROOM_TEST_TMP:-/tmp}/install.XXXXXX")
trap 'rm -rf "$DEST"' EXIT
failed=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; failed=1; }

if ! "$MESON" install -C "$BUILD" --destdir "$DEST" --no-rebuild --quiet >"$DEST.log" 2>&1; then
	cat "$DEST.log"; rm -f "$DEST.log"
	echo "FAIL - meson install"; exit 1
fi
rm -f "$DEST.log"
ok "meson install --destdir"

PREFIX=$("$MESON" introspect "$BUILD" --buildoptions | python3 -c '
import json, sys
print({o["name"]: o["value"] for o in json.load(sys.stdin)}["prefix"])')
ROOT=$DEST$PREFIX
find_one() { # find_one PATTERN: the one installed file whose path matches
	find "$DEST" -path "$1" \( -type f -o -type l \) | head -n1
}
for want in "$ROOT/sbin/vroomd" "$ROOT/bin/vroom" "$ROOT/include/vroom.h" \
	"$ROOT/share/doc/vroom/vroomd.conf.example" "$ROOT/lib/systemd/system/vroomd.service"; do
	[ -f "$want" ] && ok "installed ${want#$ROOT/}" || fail "not installed: ${want#$ROOT/}"
done
for pat in "*/libvroom.so*" "*/pkgconfig/vroom.pc"; do
	f=$(find_one "$DEST$pat") && [ -n "$f" ] && ok "installed ${f#$ROOT/}" || fail "not installed: $pat"
done
if [ "$HAVE_SCDOC" = 1 ]; then
	for page in man8/vroomd.8 man1/vroom.1 man5/vroomd.conf.5; do
		f=$ROOT/share/man/$page
		if [ -s "$f" ] && grep -q '^\.TH' "$f"; then ok "man page $page"; else fail "no man page $page"; fi
	done
else
	ok "# scdoc not found: man pages not built (SKIP)"
fi

"$ROOT/sbin/vroomd" --version | grep -q '^vroomd [0-9]' && ok "installed vroomd --version" ||
	fail "installed vroomd --version"
"$ROOT/sbin/vroomd" --config "$ROOT/share/doc/vroom/vroomd.conf.example" --check-config >/dev/null &&
	ok "installed example config checks" || fail "installed example config does not check"
unit=$ROOT/lib/systemd/system/vroomd.service
if grep -q "^ExecStart=$PREFIX/sbin/vroomd --config " "$unit" && grep -q '^ExecReload=' "$unit" &&
	grep -Eq '^Type=(notify|exec)$' "$unit" && grep -q '^DynamicUser=yes' "$unit" &&
	! grep -q '@[A-Z]*@' "$unit"; then
	ok "unit file names the installed vroomd"
else
	fail "unit file: $(cat "$unit")"
fi
if command -v systemd-analyze >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemd-analyze verify "$unit" >/dev/null 2>&1 && ok "systemd-analyze verify" ||
		fail "systemd-analyze verify: $(systemd-analyze verify "$unit" 2>&1)"
fi
cflags=$(PKG_CONFIG_PATH=$(dirname "$(find_one "$DEST*/pkgconfig/vroom.pc")") \
	PKG_CONFIG_SYSROOT_DIR=$DEST pkg-config --cflags vroom 2>&1) &&
	ok "pkg-config --cflags vroom ($cflags)" || fail "pkg-config: $cflags"

if [ $failed = 0 ]; then echo "install: all ok"; else echo "install: FAILED"; fi
exit $failed
