#!/bin/sh
# sendmail-fetch.sh [DIR] - unpack Debian's sendmail binaries and cf files into
# DIR (default $BTPRELAY_SENDMAIL_DIR, else /var/cache/btprelay-test/sendmail)
# for tests/integration/test-sendmail.sh, without installing sendmail: the
# sendmail-bin package conflicts with postfix. Run as root by
# tests/install-deps.sh; idempotent (does nothing when DIR/root is complete).
#
# DIR/root/usr/libexec/sendmail/sendmail   the MTA (runs with -C FILE.cf)
# DIR/root/usr/share/sendmail/cf/          m4 files to build a .cf from a .mc
# DIR/version                              the package version unpacked
#
# The binary also needs libwrap0 and, to build a .cf, m4: both ordinary
# packages, installed by tests/install-deps.sh.
set -eu
DIR=${1:-${BTPRELAY_SENDMAIL_DIR:-/var/cache/btprelay-test/sendmail}}
PACKAGES="sendmail-bin sendmail-cf sendmail-base libmilter1.0.1"

unpacked() {
	[ -x "$DIR/root/usr/libexec/sendmail/sendmail" ] &&
	[ -x "$DIR/root/usr/libexec/sendmail/makemap" ] &&
	[ -f "$DIR/root/usr/share/sendmail/cf/m4/cf.m4" ] &&
	[ -f "$DIR/version" ]
}
unpacked && exit 0

[ "$(id -u)" = 0 ] || { echo "sendmail-fetch.sh: run as root" >&2; exit 1; }
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
	echo "sendmail-fetch.sh: needs apt-get and dpkg (Debian)" >&2
	exit 1
fi

mkdir -p "$DIR"
TMP=$(mktemp -d "$DIR/fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# apt-get download writes into the current directory; _apt must be able to
# write there, or apt falls back to an unsandboxed download with a warning.
chmod 755 "$TMP"
chown _apt "$TMP" 2>/dev/null || true
fetch() { (cd "$TMP" && apt-get download -q $PACKAGES) > "$TMP/apt.log" 2>&1; }
if ! fetch; then
	# No package lists yet (a fresh machine): update once and retry.
	apt-get update -qq > "$TMP/apt-update.log" 2>&1 || true
	fetch || { echo "sendmail-fetch.sh: apt-get download $PACKAGES failed:" >&2; tail -5 "$TMP/apt.log" >&2; exit 1; }
fi
mkdir "$TMP/root"
for deb in "$TMP"/*.deb; do
	dpkg -x "$deb" "$TMP/root"
done
dpkg-deb -f "$TMP"/sendmail-bin_*.deb Version > "$TMP/version"
[ -x "$TMP/root/usr/libexec/sendmail/sendmail" ] ||
	{ echo "sendmail-fetch.sh: no usr/libexec/sendmail/sendmail in sendmail-bin" >&2; exit 1; }
# Replace the old tree, if any, only once the new one is complete.
rm -rf "$DIR/root.old"
[ -d "$DIR/root" ] && mv "$DIR/root" "$DIR/root.old"
mv "$TMP/root" "$DIR/root"
mv "$TMP/version" "$DIR/version"
rm -rf "$DIR/root.old"
echo "sendmail-fetch.sh: sendmail $(cat "$DIR/version") unpacked in $DIR/root"
