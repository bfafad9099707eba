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
#  3. fetch_done = move: UID MOVE (RFC 6851) lands the messages in the target
#     folder byte for byte and takes them out of INBOX; on a server without
#     MOVE, UID COPY + \Deleted + UID EXPUNGE does the same.
#  4. An OAuth2ClientCredentials destination logs in with XOAUTH2, IMAPS and
#     POP3 (STLS), with the token from the Destination Service's authTokens,
#     which the emulator verifies (issued for mail.user, unexpired).
#  5. btprelay check validates the inbound keys by btprelay-fetch's own rules
#     (a wrong one: the same text, exit 78) and a source declared locally
#     without mail.store.protocol.
#  6. TLS warnings about a mailbox name its keys (mail.imaps.ssl.trust,
#     mail.pop3.ssl.checkserveridentity), not mail.smtp.*.
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

# --- 3. fetch_done = move --------------------------------------------------------
# sha256s DIR - the sorted SHA-256 of the messages of DIR, as a JSON array
sha256s() {
	sha256sum "$1"/*.eml | cut -d' ' -f1 | sort | jq -R . | jq -cs .
}
fetch_conf "$WORK/etc/move.conf" "fetch_done = move" "fetch_move_folder = Archive"
make_messages "$WORK/v1" v1 4
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/v1\"}" >/dev/null
run_fetch "$WORK/etc/move.conf"
tap_ok "$RC" "move: one pass exits 0" "exit $RC; $(tail -2 "$FETCH_LOG")"
settle "$WORK/v1" v1
a=$(arrivals "$WORK/v1" v1)
jq -e '.delivered == 4 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "move: the messages arrived once, byte for byte" "$a"
m=$(mailbox '[(.messages | length), .counters.moved, ([.folders.Archive[].sha256] | sort)] | @json')
want=$(jq -nc --argjson s "$(sha256s "$WORK/v1")" '[0, 4, $s]')
tap_ok "$([ "$m" = "$want" ]; echo $?)" \
	"move: UID MOVE put them into Archive unchanged and took them out of INBOX" "$m, want $want"
n=$(grep -c 'MAIL_IMAPS: uid=.*status=sent (250 .*done=moved' "$FETCH_LOG")
tap_ok "$([ "$n" = 4 ]; echo $?)" "move: one log line per message, done=moved" "$n lines"
make_messages "$WORK/v2" v2 3
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/v2\",\"faults\":{\"hide_caps\":[\"MOVE\"]}}" >/dev/null
expunged=$(mailbox .counters.expunged)
run_fetch "$WORK/etc/move.conf"
emu POST /mailstore '{"faults":{"hide_caps":null}}' >/dev/null
settle "$WORK/v2" v2
a=$(arrivals "$WORK/v2" v2)
jq -e '.delivered == 3 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "move without MOVE: the messages arrived once, byte for byte" "exit $RC; $a"
m=$(mailbox "[(.messages | length), .counters.copied, .counters.expunged - $expunged, ([.folders.Archive[].sha256] | sort)] | @json")
want=$(jq -nc --argjson s "$(sha256s "$WORK/v2")" '[0, 3, 3, $s]')
tap_ok "$([ "$m" = "$want" ]; echo $?)" \
	"move without MOVE: UID COPY, \\Deleted and UID EXPUNGE leave them in Archive only" "$m, want $want"
forget_arrivals

# --- 4. XOAUTH2 ---------------------------------------------------------------------
dest_clone MAIL_IMAPS_OAUTH MAIL_OAUTH mail.store.protocol=imaps \
	mail.imaps.host=mail.corp.internal mail.imaps.port=993
dest_clone MAIL_POP3_OAUTH MAIL_OAUTH mail.store.protocol=pop3 \
	mail.pop3.host=mail.corp.internal mail.pop3.port=110
for src in MAIL_IMAPS_OAUTH MAIL_POP3_OAUTH; do
	make_messages "$WORK/$src" "$src" 2
	emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/$src\"}" >/dev/null
	before=$(mailbox .counters.xoauth2_logins)
	fetch_conf "$WORK/etc/$src.conf" "fetch_sources = $src"
	run_fetch "$WORK/etc/$src.conf"
	settle "$WORK/$src" "$src"
	a=$(arrivals "$WORK/$src" "$src")
	jq -e '.delivered == 2 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
	tap_ok $? "$src: OAuth2ClientCredentials, the messages arrived byte for byte" "exit $RC; $a"
	m=$(mailbox "[.counters.xoauth2_logins - $before, (.messages | length)] | @text")
	tap_ok "$([ "$m" = '[1,0]' ]; echo $?)" \
		"$src: logged in with XOAUTH2 (the emulator verified the token), mailbox emptied" "$m"
done
grep -q 'XOAUTH2 failed' "$WORK/log/emulator.log"
tap_ok "$([ $? = 1 ]; echo $?)" "XOAUTH2: no token refused" "$(grep 'XOAUTH2 failed' "$WORK/log/emulator.log")"
forget_arrivals

# --- 5. btprelay check --------------------------------------------------------------
CLI=$top_builddir/plugin/cli/btprelay
out=$("$CLI" -c "$CONF" check 2>&1)
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
printf '%s\n' "$out" | grep -q "^ok: inbound: fetch_sources MAIL_IMAPS to inbox@corp.example by 127.0.0.1:$SMTP_PORT, fetch_done delete, state in $WORK/fetch-state$"
tap_ok $? "btprelay check: the inbound keys are ok, one line" "$out"
fetch_conf "$WORK/etc/bad.conf" "fetch_done = shred"
out=$("$CLI" -c "$WORK/etc/bad.conf" check 2>&1)
rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
fetch_out=$("$WORK/bin/btprelay-fetch" -c "$WORK/etc/bad.conf" 2>&1)
fetch_rc=$?
tap_ok "$([ "$rc" = 78 ] && [ "$fetch_rc" = 78 ] &&
	printf '%s\n' "$out" | grep -q '^error: inbound: fetch_done must be delete, move or keep$' &&
	printf '%s\n' "$fetch_out" | grep -q ': fetch_done must be delete, move or keep$'; echo $?)" \
	"btprelay check: a wrong fetch key is an error (exit 78) in btprelay-fetch's words" \
	"check exit $rc: $(printf '%s\n' "$out" | grep inbound); btprelay-fetch exit $fetch_rc: $fetch_out"
fetch_conf "$WORK/etc/notbox.conf" "fetch_sources = MAIL_DECLARED" \
	"destination.MAIL_DECLARED.mail.smtp.host = mail.corp.internal" \
	"destination.MAIL_DECLARED.mail.smtp.port = 25"
out=$("$CLI" -c "$WORK/etc/notbox.conf" check 2>&1)
rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
tap_ok "$([ "$rc" = 78 ] && printf '%s\n' "$out" | grep -q '^error: destination MAIL_DECLARED (.*): fetch_sources lists it, but it has no mail.store.protocol'; echo $?)" \
	"btprelay check: a source declared without mail.store.protocol is an error" "exit $rc: $out"

# --- 6. TLS warnings name the mailbox's keys ------------------------------------------
dest_clone MAIL_IMAPS_TRUST MAIL_IMAPS 'mail.imaps.ssl.trust=*'
dest_clone MAIL_POP3_NONAME MAIL_POP3 mail.pop3.ssl.checkserveridentity=false
emu POST /mailstore '{"clear":true}' >/dev/null
fetch_conf "$WORK/etc/warn.conf" "fetch_sources = MAIL_IMAPS_TRUST MAIL_POP3_NONAME"
run_fetch "$WORK/etc/warn.conf"
grep -q "warning: destination MAIL_IMAPS_TRUST: mail.imaps.ssl.trust=\*: the server's certificate is NOT verified$" "$FETCH_LOG" &&
	grep -q "warning: destination MAIL_POP3_NONAME: mail.pop3.ssl.checkserveridentity=false: the name in the server's certificate is NOT checked$" "$FETCH_LOG"
tap_ok $? "TLS warnings about a mailbox name mail.imaps.ssl.trust and mail.pop3.ssl.checkserveridentity" \
	"exit $RC; $(grep 'warning: destination' "$FETCH_LOG")"
grep 'warning: destination MAIL_\(IMAPS_TRUST\|POP3_NONAME\)' "$FETCH_LOG" | grep -q 'mail\.smtp'
tap_ok "$([ $? = 1 ]; echo $?)" "... and never mail.smtp.*" "$(grep 'warning: destination' "$FETCH_LOG")"

# --- no secret anywhere ---------------------------------------------------------
out=$(secret_scan "$FETCH_LOG" "$WORK/log/fetch.out" "$WORK/log/maillog" "$BTPRELAY_LOG" \
	"$WORK/log/emulator.log" "$WORK"/fetch-state/*.state)
tap_ok $? "no secret in the fetch log, its output, the maillog, the emulator's log or the state files" "$out"

tap_done
