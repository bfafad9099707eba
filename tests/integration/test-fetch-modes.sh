#!/bin/bash
# test-fetch-modes.sh - btprelay-fetch's daemon and its other ways (issue 16),
# against the emulator's on-premise mailbox (tests/emulator/mailstore.py)
# through the 0x80 proxy into a real Postfix (tests/lib/fetch.sh):
#
#  1. --daemon with IMAP IDLE (RFC 2177): the daemon waits in IDLE and renews
#     it on the same session; a message added while it idles is announced
#     (EXISTS) and arrives byte for byte although fetch_interval is an hour;
#     SIGTERM ends it with exit 0.
#  2. A server without IDLE: the daemon polls every fetch_interval instead.
#
# No timings: every wait is for a state (a counter, a log line, an arrival),
# bounded; the assertions are on what the emulator and the sink recorded.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init fetch-modes
. "$top_srcdir/tests/lib/fetch.sh"

# until_true SECONDS COMMAND... - wait until COMMAND succeeds (at most SECONDS)
until_true() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}
counter_at_least() {	# NAME N
	[ "$(mailbox ".counters.$1")" -ge "$2" ]
}
logged() {	# PATTERN - in the fetch log
	grep -q "$1" "$FETCH_LOG"
}

# daemon_start CONF - btprelay-fetch --daemon in the background ($DAEMON)
daemon_start() {
	"$WORK/bin/btprelay-fetch" -c "$1" --daemon >> "$WORK/log/fetch.out" 2>&1 &
	DAEMON=$!
}
# daemon_stop - SIGTERM; its exit status in $RC
daemon_stop() {
	kill -TERM "$DAEMON"
	wait "$DAEMON"
	RC=$?
}

# --- 1. --daemon waits in IMAP IDLE -------------------------------------------
fetch_conf "$WORK/etc/idle.conf" "fetch_interval = 3600" "fetch_idle = 2"
make_messages "$WORK/i1" i1 3
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/i1\"}" >/dev/null
daemon_start "$WORK/etc/idle.conf"
until_true 60 counter_at_least idles 1
logins=$(mailbox .counters.logins)
settle "$WORK/i1" i1
until_true 30 counter_at_least idles 3
tap_ok $? "IDLE: the daemon waits in IDLE after its pass and renews it (fetch_idle = 2)" \
	"$(mailbox .counters)"
tap_ok "$([ "$(mailbox .counters.logins)" = "$logins" ]; echo $?)" \
	"IDLE: renewed on the same session (no new login)" "$(mailbox .counters)"
logged 'MAIL_IMAPS: waiting for new mail in INBOX (IMAP IDLE, renewed every 2 s)' &&
	logged 'MAIL_IMAPS: IMAP IDLE renewed after 2 s'
tap_ok $? "IDLE: the log says so" "$(grep IDLE "$FETCH_LOG" | tail -3)"
make_messages "$WORK/i2" i2 1
emu POST /mailstore "{\"append_dir\":\"$WORK/i2\"}" >/dev/null
settle "$WORK/i2" i2
a=$(arrivals "$WORK/i2" i2)
jq -e '.delivered == 1 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "IDLE: a message added while the daemon idles arrives, byte for byte (fetch_interval = 1 h)" "$a"
n=$(mailbox .counters.idle_news)
tap_ok "$([ "$n" -ge 1 ] && logged 'MAIL_IMAPS: new mail in INBOX (IMAP IDLE: EXISTS)'; echo $?)" \
	"IDLE: the server announced it (EXISTS) to the idling daemon, which passed at once" \
	"idle_news $n; $(grep 'new mail' "$FETCH_LOG" | tail -1)"
a=$(arrivals "$WORK/i1" i1)
jq -e '.delivered == 3 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "IDLE: the messages there before arrived once" "$a"
until_true 30 logged 'pass complete: 1 handed over'
daemon_stop
tap_ok "$RC" "IDLE: SIGTERM ends the idling daemon, exit 0" "exit $RC"
forget_arrivals

# --- 2. no IDLE on the server: the daemon polls --------------------------------
emu POST /mailstore '{"clear":true,"faults":{"hide_caps":["IDLE"]}}' >/dev/null
idles=$(mailbox .counters.idles)
fetch_conf "$WORK/etc/poll.conf" "fetch_interval = 1"
daemon_start "$WORK/etc/poll.conf"
until_true 60 logged 'MAIL_IMAPS: mail.corp.internal:993 offers no IMAP IDLE: next pass in fetch_interval (1 s)'
tap_ok $? "no IDLE offered: the daemon says it polls" "$(tail -2 "$FETCH_LOG")"
make_messages "$WORK/i3" i3 2
emu POST /mailstore "{\"append_dir\":\"$WORK/i3\"}" >/dev/null
settle "$WORK/i3" i3
a=$(arrivals "$WORK/i3" i3)
jq -e '.delivered == 2 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "no IDLE offered: a later message arrives by polling, byte for byte" "$a"
tap_ok "$([ "$(mailbox .counters.idles)" = "$idles" ]; echo $?)" "no IDLE offered: no IDLE sent" \
	"$(mailbox .counters)"
daemon_stop
tap_ok "$RC" "the polling daemon ends on SIGTERM, exit 0" "exit $RC"
emu POST /mailstore '{"faults":{"hide_caps":null}}' >/dev/null
forget_arrivals

# --- no secret anywhere ---------------------------------------------------------
out=$(secret_scan "$FETCH_LOG" "$WORK/log/fetch.out" "$WORK/log/maillog" "$BTPRELAY_LOG" \
	"$WORK/log/emulator.log" "$WORK"/fetch-state/*.state)
tap_ok $? "no secret in the fetch log, its output, the maillog, the emulator's log or the state files" "$out"

tap_done
