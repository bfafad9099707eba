#!/bin/bash
# health live|ready - the container's probes (Kubernetes exec probes).
#
#   live   Postfix's master(8) runs and smtpd answers with 220.
#   ready  live, smtpd answers EHLO with 250, and (when the milter is on)
#          btprelay-milter runs and its socket exists: the relay accepts mail.
#
# Neither asks SAP's services: during a Destination Service or token service
# outage the relay must go on accepting and queueing (and the milter answers
# 451 for destinations it cannot look up), so the pod stays ready.
# Exit 0 = healthy; otherwise 1 and one line on stdout saying why.
set -u
RUN=/run/btprelay
what=${1:-ready}
case $what in
live|ready) ;;
*) echo "usage: health live|ready"; exit 2 ;;
esac

fail() { echo "health $what: $*"; exit 1; }

[ -r "$RUN/health.env" ] || fail "not configured yet ($RUN/health.env missing)"
. "$RUN/health.env"

# (not "postfix status": it logs a line every time)
pid=$(sed -n '1s/ //gp' /var/spool/postfix/pid/master.pid 2>/dev/null)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || fail "Postfix's master is not running"

addr=127.0.0.1
case $INET_INTERFACES in
all|*127.0.0.1*|loopback-only) ;;
*) addr=${INET_INTERFACES%%[ ,]*} ;;
esac

# SMTP with bash's /dev/tcp, every read bounded by a timeout
exec 3<>"/dev/tcp/$addr/$SMTP_PORT" 2>/dev/null || fail "smtpd does not accept connections on $addr:$SMTP_PORT"
IFS= read -r -t 5 line <&3 || fail "smtpd sent no greeting within 5 s"
[[ $line == 220* ]] || fail "smtpd greets with: ${line%$'\r'}"
if [ "$what" = ready ]; then
	printf 'EHLO health.probe\r\n' >&3
	while IFS= read -r -t 5 line <&3; do
		[[ $line == 250-* ]] && continue
		break
	done
	[[ $line == "250 "* ]] || fail "smtpd answers EHLO with: ${line%$'\r'}"
	if [ "$MILTER" = yes ]; then
		pid=$(cat "$RUN/milter.pid" 2>/dev/null)
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || fail "btprelay-milter is not running"
		[ -S "$RUN/milter/milter.sock" ] || fail "btprelay-milter's socket is missing"
	fi
fi
printf 'QUIT\r\n' >&3
exec 3<&-
echo "health $what: ok"
exit 0
