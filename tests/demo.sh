#!/bin/bash
# demo.sh - btprelay's main job, for real, on this machine (as root):
# installs what it needs, builds, starts the BTP emulator (token service,
# Destination Service, Connectivity SOCKS5 proxy, on-premise relay) and a
# Postfix instance that routes corp.example to btprelay, sends a mail with
# swaks, and shows what arrived at the relay and what the logs say.
# KEEP_WORK=1 keeps the work directory for a look around.
set -u
cd "$(dirname "$0")/.."
tests/install-deps.sh || exit 1
echo "== building"
tests/build.sh || exit 1
top_srcdir=$PWD top_builddir=$PWD/build
. tests/lib/harness.sh
harness_init demo
echo "== starting the BTP emulator and Postfix (work directory $WORK)"
harness_start_emulator
harness_install_transport
harness_start_postfix
echo "   Postfix listens on 127.0.0.1:$SMTP_PORT; transport_maps: corp.example -> btprelay:MAIL_ONPREM"
echo "   MAIL_ONPREM (from the emulated Destination Service):"
emu GET /destinations/MAIL_ONPREM | jq -r 'to_entries[] | "     \(.key) = \(if .key == "mail.password" then "********" else .value end)"'

echo "== sending a mail with swaks"
qid=$(send_mail app@btp.example user@corp.example --header "Subject: Hello from SAP BTP" \
	--body "This message travelled Postfix -> btprelay -> Connectivity proxy (0x80) -> on-premise relay.")
echo "   Postfix queue id: ${qid:-?}"
line=$(wait_status "$qid" user@corp.example) || { echo "no delivery:"; tail "$WORK/log/maillog"; exit 1; }

echo "== Postfix log"
grep -F "$qid" "$WORK/log/maillog" | sed 's/^/   /'
echo "== btprelay-transport log"
grep -F "$qid" "$BTPRELAY_LOG" | grep -v 'debug:' | sed 's/^/   /'
echo "== what the on-premise relay received"
f=$(ls "$EMU"/messages/*.eml 2>/dev/null | head -1)
[ -n "$f" ] || { echo "   nothing arrived"; exit 1; }
jq -r '"   envelope: MAIL FROM:<\(.mail_from)> RCPT TO:\(.rcpt_to) via proxy: \(.via_proxy), location: \(.location_id), TLS: \(.tls_version), AUTH: \(.auth_user)"' "${f%.eml}.json"
echo "   ---- message ----"
tr -d '\r' < "$f" | sed 's/^/   /'
echo "== done: delivered through the emulated SAP BTP Connectivity proxy"
case "$line" in *status=sent*) exit 0 ;; *) exit 1 ;; esac
