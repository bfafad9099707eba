#!/bin/bash
# test-install.sh - what the README's installation steps promise: `make install`
# puts the annotated sample configuration in place (as documentation, and as
# the configuration when there is none, never over an operator's file), the
# README's setup commands can be run twice, and its build dependencies name
# what autogen.sh needs. Installs into a DESTDIR and rewritten paths only.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
. "$top_srcdir/tests/lib/harness.sh"
[ "$(id -u)" = 0 ] || harness_skip "needs root (install -o btprelay)"
[ -f "$top_builddir/Makefile" ] || harness_skip "no configured build tree in $top_builddir"
W=$(mktemp -d /tmp/btprelay-install.XXXXXX)
trap 'rm -rf "$W"' EXIT
README=$top_srcdir/README.md
SAMPLE=$top_srcdir/config/btprelay.conf

# --- make install ---------------------------------------------------------------
make -C "$top_builddir" install DESTDIR="$W/dest" > "$W/install.log" 2>&1
tap_ok $? "make install DESTDIR=... succeeds" "$(tail -20 "$W/install.log")"
sysconf=$(sed -n 's/^sysconfdir = //p' "$top_builddir/Makefile")
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
sysconf=${sysconf//\$\{prefix\}/$prefix}
docdir=$(sed -n 's/^docdir = //p' "$top_builddir/Makefile")
docdir=${docdir//\$\{datarootdir\}/$prefix/share}
docdir=${docdir//\$\{PACKAGE_TARNAME\}/btprelay}
conf=$W/dest$sysconf/btprelay/btprelay.conf
cmp -s "$SAMPLE" "$conf"
tap_ok $? "the sample is installed as $sysconf/btprelay/btprelay.conf" "$(ls -la "$W/dest$sysconf/btprelay" 2>&1)"
[ "$(stat -c %a "$conf" 2>/dev/null)" = 644 ]
tap_ok $? "... mode 0644 (it holds no secret; bindings and passwords live elsewhere)" "$(stat -c %a "$conf" 2>&1)"
cmp -s "$SAMPLE" "$W/dest$docdir/examples/btprelay.conf"
tap_ok $? "and as documentation: $docdir/examples/btprelay.conf" "$(find "$W/dest" -name btprelay.conf)"
! grep -v '^#' "$conf" | grep -q '[^[:space:]]'
tap_ok $? "every key of the sample is commented out: installed, it changes nothing" "$(grep -v '^#' "$conf" | grep . | head -3)"
for page in man5/btprelay.conf.5 man8/btprelay.8 man8/btprelay-transport.8 man8/btprelay-lmtp.8; do
	[ -f "$W/dest$prefix/share/man/$page" ]
	tap_ok $? "man page $page installed"
done
echo "log = stderr" >> "$conf"
make -C "$top_builddir" install DESTDIR="$W/dest" > "$W/install2.log" 2>&1
tap_ok $? "make install again succeeds" "$(tail -20 "$W/install2.log")"
[ "$(tail -1 "$conf")" = "log = stderr" ]
tap_ok $? "... and keeps the operator's configuration" "$(tail -3 "$conf")"

# --- the README's setup commands, twice ---------------------------------------------
block=$(sed -n '/<!-- install-steps: begin -->/,/<!-- install-steps: end -->/p' "$README" |
	sed -n '/^ *```sh/,/^ *```/p' | sed '1d;$d' | sed 's/^ *//')
[ -n "$block" ] && printf '%s\n' "$block" | grep -q 'useradd' &&
	printf '%s\n' "$block" | grep -q 'mkdir -p /etc/btprelay'
tap_ok $? "README: the setup block creates the user and /etc/btprelay" "$block"
# the same commands with the system paths moved under the test's directory
script=$(printf '%s\n' "$block" | sed "s|/etc/btprelay|$W/root/etc/btprelay|g; s|/var/cache/btprelay|$W/root/var/cache/btprelay|g")
mkdir -p "$W/root/etc" "$W/root/var/cache"
for run in first second; do
	out=$(bash -e -c "$script" 2>&1)
	tap_ok $? "README setup block, $run run: succeeds" "$out"
done
[ -d "$W/root/etc/btprelay" ] && [ "$(stat -c '%a %U' "$W/root/var/cache/btprelay")" = "700 btprelay" ]
tap_ok $? "... /etc/btprelay exists, the cache directory is 0700 btprelay" "$(ls -laR "$W/root")"

# --- build dependencies -------------------------------------------------------------
deps=$(tr '\n' ' ' < "$README" | grep -o 'apt-get install build-essential[^`]*' | head -1 | tr -s ' ')
missing=""
for p in autoconf automake libtool pkg-config libcurl4-openssl-dev libjansson-dev libssl-dev libmilter-dev; do
	case " $deps " in *" $p "*) ;; *) missing="$missing $p" ;; esac
done
[ -n "$deps" ] && [ -z "$missing" ]
tap_ok $? "README: the build dependencies include what autogen.sh and configure need" "missing:$missing in: $deps"
tap_done
