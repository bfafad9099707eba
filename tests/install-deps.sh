#!/bin/sh
# install-deps.sh - install what btprelay needs to build, test and demo on
# Debian 12 (as root). Does nothing when everything is already installed.
set -e
PACKAGES="build-essential autoconf automake libtool pkg-config
libcurl4-openssl-dev libjansson-dev libssl-dev libmilter-dev
postfix swaks miltertest python3 openssl ca-certificates jq valgrind clang
hyperfine iproute2 bsdutils nftables strace libwrap0 m4
podman runc debootstrap python3-yaml"
# test-metrics reads the exposition with Prometheus's own parser (Debian's python3)
PACKAGES="$PACKAGES python3-prometheus-client"
# groff: tests/integration/test-man.sh renders every man page with warnings on
PACKAGES="$PACKAGES groff-base"
# kubectl renders config/kubernetes (kubectl kustomize); Debian's is in
# kubernetes-client, which conflicts with other kubectl packages (Google's)
command -v kubectl >/dev/null 2>&1 || PACKAGES="$PACKAGES kubernetes-client"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# sendmail's binaries for the sendmail test, unpacked beside Postfix (they conflict as packages)
fetch_sendmail() {
	[ "$(id -u)" = 0 ] || return 0	# without root the sendmail test skips
	"$(dirname "$0")/lib/sendmail-fetch.sh"
}
[ -z "$missing" ] && { fetch_sendmail; exit $?; }
if [ "$(id -u)" != 0 ]; then
	echo "install-deps.sh: missing packages:$missing (run as root)" >&2
	exit 1
fi
echo "install-deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix must not ask questions nor start a system instance of its own.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing > /tmp/btprelay-apt.log 2>&1 ||
	{ tail -20 /tmp/btprelay-apt.log; exit 1; }
fetch_sendmail
