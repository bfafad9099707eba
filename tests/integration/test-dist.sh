#!/bin/bash
# test-dist.sh - the release tarball is what packagers start from: `make
# distcheck` (a VPATH build from the unpacked tarball with a read-only source
# tree, the unit tests, install and uninstall), then the README's demo run
# from the unpacked tarball itself, delivering for real. The sources carry
# what `make check` in the source tree leaves behind (logs, results, Python
# byte code): the tarball must not.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (the demo runs a Postfix instance)"; exit 77; }
for tool in autoreconf make tar postfix swaks; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "1..0 # SKIP $tool not installed (tests/install-deps.sh)"; exit 77; }
done

# Run from `make check`, whose MAKEFLAGS (TESTS=this test) would reach the
# nested distcheck and make it run this test again, forever.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
echo "1..7"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# Everything happens under one private directory: a copy of the sources (so the
# build trees of the suite are never touched), its build tree and the tarball.
# Every parent must be traversable by postfix and btprelay for the demo.
WORK=$(mktemp -d /tmp/btprelay-dist.XXXXXX)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/src" "$WORK/build" "$WORK/unpacked"
# git ls-files when this is a checkout, else the tree as it is (an unpacked tarball)
if git -C "$top_srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top_srcdir" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 tar -cf -) | tar -C "$WORK/src" -xf -
else
	(cd "$top_srcdir" && tar --exclude=./build --exclude=./build-asan -cf - .) | tar -C "$WORK/src" -xf -
fi

# What a build and `make check` in the source tree leave in the directories
# EXTRA_DIST names whole (only files no make rule produces for this build:
# make finds targets through VPATH in the sources too)
litter="tests/integration/test-routes.log tests/integration/test-routes.trs
tests/fuzz/test-fuzz.log tests/fuzz/test-fuzz.trs tests/emulator/test-emulator.log
tests/emulator/__pycache__/btp-emulator.cpython-311.pyc tests/bench/test-bench.trs"
for f in $litter; do
	mkdir -p "$WORK/src/$(dirname "$f")" && echo "left by a build" > "$WORK/src/$f"
done

(cd "$WORK/src" && ./autogen.sh) > "$WORK/autogen.log" 2>&1 &&
	(cd "$WORK/build" && ../src/configure -q) > "$WORK/configure.log" 2>&1
rc=$?
[ "$rc" = 0 ] && ok "autogen.sh and configure from the sources" ||
	not_ok "autogen.sh and configure from the sources" "$(tail -5 "$WORK/configure.log" "$WORK/autogen.log")"

# The unit tests inside distcheck: the integration tests run in the suite itself.
(cd "$WORK/build" && make distcheck TESTS='$(unit_tests)') > "$WORK/distcheck.log" 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -q 'archives ready for distribution' "$WORK/distcheck.log"; then
	ok "make distcheck passes"
else
	not_ok "make distcheck passes" "exit $rc" "$(grep -E 'No rule|Error|FAIL' "$WORK/distcheck.log" | head -5)"
fi
tarball=$(ls "$WORK"/build/btprelay-*.tar.gz 2>/dev/null | head -1)
pass=$(sed -n 's/^# PASS: *//p' "$WORK/distcheck.log" | tail -1)
[ -n "$tarball" ] && [ "${pass:-0}" -gt 100 ] &&
	ok "distcheck built $(basename "$tarball") and ran ${pass} unit checks in it" ||
	not_ok "distcheck built a tarball and ran the unit tests in it" "tarball=${tarball:-none} passed=${pass:-none}"

# Every documented man page is in the tarball.
[ -n "$tarball" ] && tar -C "$WORK/unpacked" -xzf "$tarball"
dir=$(ls -d "$WORK"/unpacked/btprelay-* 2>/dev/null | head -1)
missing=""
for page in plugin/transport/btprelay-transport.8 plugin/lmtp/btprelay-lmtp.8 plugin/milter/btprelay-milter.8 \
	plugin/cli/btprelay.8 config/btprelay.conf.5 tests/demo.sh tests/check.sh .ci/run; do
	[ -f "$dir/$page" ] || missing="$missing $page"
done
[ -n "$dir" ] && [ -z "$missing" ] && ok "the tarball has the man pages, the demo and the test command" ||
	not_ok "the tarball has the man pages, the demo and the test command" "missing:${missing:- the tarball}"

# Only sources: no test log or result, object, dependency file or byte code.
junk=$([ -n "$tarball" ] && tar -tzf "$tarball" |
	grep -E '\.(log|trs|o|pyc)$|/\.deps/|/\.dirstamp$|/__pycache__/')
[ -n "$tarball" ] && [ -z "$junk" ] &&
	ok "the tarball holds no build output (logs, .trs, objects, byte code) from the source tree" ||
	not_ok "the tarball holds no build output (logs, .trs, objects, byte code) from the source tree" \
		"${junk:-no tarball}"

# The README's first command, from the unpacked tarball (no autogen: configure is there).
chmod -R a+rX "$WORK/unpacked"
out=$([ -n "$dir" ] && "$dir/tests/demo.sh" 2>&1)
rc=$?
echo "$out" > "$WORK/demo.log"
[ "$rc" = 0 ] && ok "tests/demo.sh from the unpacked tarball exits 0" ||
	not_ok "tests/demo.sh from the unpacked tarball exits 0" "exit $rc" "$(tail -8 "$WORK/demo.log")"
grep -q 'status=sent' <<<"$out" && grep -q 'envelope: MAIL FROM:<app@btp.example> RCPT TO:\["user@corp.example"\]' <<<"$out" &&
	grep -q 'Subject: Hello from SAP BTP' <<<"$out" &&
	ok "the demo from the tarball delivered: status=sent, envelope and message at the relay" ||
	not_ok "the demo from the tarball delivered: status=sent, envelope and message at the relay" "$(tail -12 "$WORK/demo.log")"
[ "$n" = 7 ] || echo "Bail out! plan mismatch ($n)"
