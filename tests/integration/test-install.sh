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
makevar() {	# NAME - a variable of the build's Makefile, expanded
	printf 'print-%%:\n\t@echo $($*)\n' | MAKEFLAGS='' MFLAGS='' make -s --no-print-directory -C "$top_builddir" -f Makefile -f - "print-$1"
}
sysconf=$(makevar sysconfdir)
docdir=$(makevar docdir)
mandir=$(makevar mandir)
libexecdir=$(makevar libexecdir)
sbindir=$(makevar sbindir)
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
	[ -f "$W/dest$mandir/$page" ]
	tap_ok $? "man page $page installed"
done

# --- exactly the documented files ------------------------------------------------------
# README, "Configuring a real Postfix", step 1 names every file `make install` puts in
# place, for --prefix=/usr --sysconfdir=/etc --libexecdir=/usr/libexec: its paths are
# mapped onto this build's directories, its man pages name(N) onto mandir/manN/name.N.
step1=$(sed -n '/^1\. Build and install:/,/Build dependencies/p' "$README")
{
	printf '%s\n' "$step1" | grep -o '`/[^`]*`' | tr -d '`' | while read -r path; do
		case $path in
		/usr/libexec/*) echo "$libexecdir${path#/usr/libexec}" ;;
		/usr/sbin/*) echo "$sbindir${path#/usr/sbin}" ;;
		/usr/share/doc/btprelay/*) echo "$docdir${path#/usr/share/doc/btprelay}" ;;
		/etc/*) echo "$sysconf${path#/etc}" ;;
		*) echo "(a README path no directory of the build stands for: $path)" ;;
		esac
	done
	printf '%s\n' "$step1" | tr '\n' ' ' | grep -o '[a-z][a-z.-]*([0-9])' | while read -r page; do
		sec=${page#*(}
		sec=${sec%)}
		echo "$mandir/man$sec/${page%(*}.$sec"
	done
} | sort -u > "$W/documented"
# the milter is built only with libmilter (configure says so)
case " $(makevar sbin_PROGRAMS) " in
*/btprelay-milter" "*) ;;
*) sed -i '/btprelay-milter/d' "$W/documented" ;;
esac
(cd "$W/dest" && find . ! -type d | sed 's|^\.||' | sort) > "$W/installed"
[ "$(grep -c . "$W/documented")" -ge 8 ]
tap_ok $? "README: step 1 names the installed files ($(grep -c . "$W/documented") of them)" "$step1"
diff -u "$W/documented" "$W/installed" > "$W/install.diff"
tap_ok $? "make install installs exactly the files README step 1 documents" \
	"documented (-) against installed (+): $(cat "$W/install.diff")"

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
