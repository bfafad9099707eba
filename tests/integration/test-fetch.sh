#!/bin/bash
# test-fetch.sh - btprelay-fetch (issue 16) against the emulator's on-premise
# mailbox (tests/emulator/mailstore.py) through the 0x80 proxy, handing mail
# to a real Postfix, which routes it through btprelay-transport to the
# emulator's relay (the sink: messages/N.eml hold the bytes as received).
#
#  1. IMAPS, 200 messages (8-bit, 3 MB, dot lines): each arrives once and
#     byte for byte (after Postfix's Received: header); the mailbox is empty;
#     the state file is 0600; a second pass hands over nothing.
#  2. Killed (SIGKILL) at random points 10 times during a 200-message fetch,
#     then a complete pass: every message arrived at least once and at most
#     twice, at most one duplicate per kill; the duplicates are counted and
#     reported; 0 lost.
#  3. The connection dropped in the middle of a message literal (3 times):
#     no loss, no duplicate, no truncated copy.
#  4. The MTA refuses with 450: exit 75, the messages stay on the server,
#     nothing flagged.
#  5. Login refused: exit 75, the server's text in the log, nothing deleted.
#  6. fetch_done = keep: messages flagged \Seen and kept, not handed over
#     twice; UIDVALIDITY change: auto = stop (nothing handed over, error),
#     skip (nothing handed over, warning, later mail comes); with delete,
#     auto = refetch (what is there is handed over once, warning).
#  7. POP3 with STLS and POP3S: round trip byte for byte, mailbox emptied.
#  8. --probe logs in and counts, fetches and changes nothing; a refused
#     login is one FAILED line; a wrong fetch key exits 78; btprelay resolve
#     shows the mailbox, btprelay probe points to btprelay-fetch --probe.
#  9. No secret in any output (secret-scan, every encoding).
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init fetch
. "$top_srcdir/tests/lib/fetch.sh"

# --- 1. 200 messages over IMAPS ----------------------------------------------
make_messages "$WORK/m1" p1 200
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m1\"}" >/dev/null
run_fetch
tap_ok "$RC" "IMAPS: one pass over 200 messages exits 0" "exit $RC; $(tail -3 "$FETCH_LOG")"
settle "$WORK/m1" p1
a=$(arrivals "$WORK/m1" p1)
jq -e '.delivered == 200 and .lost == 0 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "IMAPS: 200 messages (8-bit, 3 MB, dot lines) arrived once each, byte for byte" "$a"
n=$(mailbox '.messages | length')
tap_ok "$([ "$n" = 0 ]; echo $?)" "IMAPS: fetch_done = delete emptied the mailbox" "$n left"
n=$(grep -c 'MAIL_IMAPS: uid=.*status=sent (250 .*done=deleted' "$FETCH_LOG")
tap_ok "$([ "$n" = 200 ]; echo $?)" "IMAPS: one log line per message with the MTA's reply" "$n lines"
st=$(stat -c %a "$WORK/fetch-state/MAIL_IMAPS.state")
tap_ok "$([ "$st" = 600 ]; echo $?)" "the state file is private (0600)" "mode $st"
grep -q '^uidvalidity 1000$' "$WORK/fetch-state/MAIL_IMAPS.state"
tap_ok $? "the state file holds the UIDVALIDITY" "$(head -3 "$WORK/fetch-state/MAIL_IMAPS.state")"
grep -q 'through the proxy, implicit TLS' "$FETCH_LOG" &&
	grep -q 'proxy CONNECT mail.corp.internal:993: tunnel open' "$FETCH_LOG"
tap_ok $? "IMAPS went through the 0x80 proxy tunnel with implicit TLS"
run_fetch
tap_ok "$RC" "a second pass exits 0" "exit $RC"
grep -q 'pass complete: 0 handed over (0 of them maybe twice), 0 done earlier' "$FETCH_LOG"
tap_ok $? "a second pass hands over nothing" "$(grep 'pass complete' "$FETCH_LOG" | tail -1)"
forget_arrivals

# --- 2. killed 10 times during a 200-message fetch -----------------------------
make_messages "$WORK/m2" p2 200
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m2\"}" >/dev/null
RANDOM=16
kills=0
again0=$(grep -c 'handing it over again' "$FETCH_LOG")
for i in $(seq 10); do
	"$WORK/bin/btprelay-fetch" -c "$CONF" >> "$WORK/log/fetch.out" 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 6 + 1))$((RANDOM % 10))"
	kill -KILL "$pid" 2>/dev/null && kills=$((kills + 1))
	wait "$pid" 2>/dev/null
done
left=$(mailbox '[.messages[] | select(.flags | index("\\Deleted") | not)] | length')
run_fetch
tap_ok "$RC" "after 10 SIGKILLs a complete pass exits 0" "exit $RC"
settle "$WORK/m2" p2
a=$(arrivals "$WORK/m2" p2)
dups=$(jq .duplicates <<< "$a")
again=$(( $(grep -c 'handing it over again' "$FETCH_LOG") - again0 ))
held=$(grep -c 'not handed over again and left on the server' "$FETCH_LOG")
echo "# kill test: $kills of 10 kills hit a running fetch, $left messages were not done before the final pass; duplicates at the sink: $dups; reported by btprelay-fetch as maybe twice: $again; held: $held"
jq -e '.lost == 0 and .delivered == 200 and .max_copies <= 2 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "killed 10 times: every message arrived at least once and at most twice, 0 lost" "$a"
tap_ok "$([ "$dups" -le "$again" ] && [ "$dups" -le "$kills" ]; echo $?)" \
	"every duplicate was reported (\"handing it over again\": $again), at most one per kill ($dups duplicates, $kills kills)" "$a"
tap_ok "$([ "$kills" -ge 5 ] && [ "$left" -lt 200 ]; echo $?)" \
	"the kills hit fetches in progress ($kills kills, $left of 200 not done before the final pass)"
n=$(mailbox '.messages | length')
tap_ok "$([ "$n" = "$held" ]; echo $?)" \
	"after the kills the mailbox is empty but for messages held after two interrupted hand-overs ($held)" "$n left"
forget_arrivals

# interrupted hand-overs recorded in the state file: once -> again, announced; twice -> held
make_messages "$WORK/m2b" p2b 2
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m2b\"}" >/dev/null
u1=$(mailbox '.messages[0].uid')
u2=$(mailbox '.messages[1].uid')
printf 'sent 2 %s\nsent 1 %s\n' "$u1" "$u2" >> "$WORK/fetch-state/MAIL_IMAPS.state"
run_fetch
settle "$WORK/m2b" p2b 1
grep -q "MAIL_IMAPS: uid=$u1: handed over 2 times without the MTA's answer (interrupted); not handed over again and left on the server" "$FETCH_LOG" &&
	grep -q "MAIL_IMAPS: uid=$u2: handed over before without the MTA's answer (interrupted); handing it over again: the MTA may get it twice" "$FETCH_LOG"
tap_ok $? "after two interrupted hand-overs a message is held (warning), after one it goes again (announced)" "$(grep "uid=$u1:\|uid=$u2:" "$FETCH_LOG" | tail -2)"
m=$(mailbox '[.messages[] | [.uid, .flags]] | @text')
tap_ok "$([ "$m" = "[[$u1,[]]]" ]; echo $?)" "the held message stays on the server, untouched; the other is done" "$m"
grep -q "sent 2 $u1" "$WORK/fetch-state/MAIL_IMAPS.state" && ! grep -q "sent 1 $u2" "$WORK/fetch-state/MAIL_IMAPS.state"
tap_ok $? "the state file keeps the held count and drops the one handed over" "$(cat "$WORK/fetch-state/MAIL_IMAPS.state" | tail -3)"

# --- 3. the connection dropped in the middle of a message ----------------------
make_messages "$WORK/m3" p3 20
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m3\",\"faults\":{\"drop_fetch\":3}}" >/dev/null
rcs=""
for i in 1 2 3 4 5; do
	run_fetch
	rcs="$rcs $RC"
	[ "$RC" = 0 ] && break
done
tap_ok "$([ "${rcs# }" != 0 ] && [ "$RC" = 0 ]; echo $?)" \
	"drop mid-FETCH: the passes it hit exit 75, a later one completes" "exits:$rcs"
grep -q 'MAIL_IMAPS: uid=[0-9]*, size=[0-9]*, .*status=deferred (IMAP server mail.corp.internal:993: connection lost after [0-9]* of [0-9]* bytes of the message; the MTA did not take it' "$FETCH_LOG"
tap_ok $? "drop mid-FETCH: the log says the mailbox connection broke inside the message" "$(grep 'connection lost' "$FETCH_LOG" | tail -1)"
settle "$WORK/m3" p3
a=$(arrivals "$WORK/m3" p3)
jq -e '.lost == 0 and .delivered == 20 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "drop mid-FETCH: no loss, no duplicate, no truncated copy" "$a"
n=$(mailbox '.counters.drops')
tap_ok "$([ "$n" = 3 ]; echo $?)" "drop mid-FETCH: the server cut 3 messages" "drops $n"
forget_arrivals

# --- 4. the MTA refuses (450) ---------------------------------------------------
postconf -c "$PF" -e 'smtpd_recipient_restrictions = check_recipient_access inline:{ {busy@corp.example = 450 4.2.1 mailbox busy} }, permit_mynetworks, reject'
postfix -c "$PF" reload >/dev/null 2>&1
sleep 1
fetch_conf "$WORK/etc/busy.conf" "fetch_recipient = busy@corp.example"
make_messages "$WORK/m4" p4 3
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m4\"}" >/dev/null
run_fetch "$WORK/etc/busy.conf"
tap_ok "$([ "$RC" = 75 ]; echo $?)" "MTA 450: exit 75 (EX_TEMPFAIL)" "exit $RC"
grep -q 'status=deferred (.*450 4.2.1 .*mailbox busy' "$FETCH_LOG"
tap_ok $? "MTA 450: the log quotes the MTA's reply" "$(grep 'busy' "$FETCH_LOG" | tail -2)"
m=$(mailbox '[(.messages | length), ([.messages[].flags[]] | length)] | @text')
tap_ok "$([ "$m" = '[3,0]' ]; echo $?)" "MTA 450: the messages stay on the server, unflagged" "$m"

# --- 5. login refused -------------------------------------------------------------
emu POST /mailstore '{"faults":{"login":"NO"}}' >/dev/null
run_fetch
tap_ok "$([ "$RC" = 75 ]; echo $?)" "login failure: exit 75" "exit $RC"
grep -q 'MAIL_IMAPS: login to mail.corp.internal:993 as relayuser failed: .*AUTHENTICATIONFAILED' "$FETCH_LOG"
tap_ok $? "login failure: a clear error with the server's text" "$(grep 'login to' "$FETCH_LOG" | tail -1)"
m=$(mailbox '[(.messages | length), ([.messages[].flags[]] | length)] | @text')
tap_ok "$([ "$m" = '[3,0]' ]; echo $?)" "login failure: nothing fetched, nothing deleted" "$m"
emu POST /mailstore '{"faults":{"login":null}}' >/dev/null

# --- 6. keep, and UIDVALIDITY changes ----------------------------------------------
fetch_conf "$WORK/etc/keep.conf" "fetch_done = keep" "fetch_sources = MAIL_IMAPS"
rm -f "$WORK/fetch-state/MAIL_IMAPS.state"
make_messages "$WORK/m6" p6 5
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m6\"}" >/dev/null
run_fetch "$WORK/etc/keep.conf"
run_fetch "$WORK/etc/keep.conf"
settle "$WORK/m6" p6
a=$(arrivals "$WORK/m6" p6)
jq -e '.delivered == 5 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "keep: two passes hand each message over once" "$a"
m=$(mailbox '[.messages[] | .flags == ["\\Seen"]] | all and length == 5')
tap_ok "$([ "$m" = true ]; echo $?)" "keep: the messages stay on the server, flagged \\Seen" "$(mailbox '.messages | map(.flags)')"
emu POST /mailstore '{"uidvalidity":2000}' >/dev/null
run_fetch "$WORK/etc/keep.conf"
tap_ok "$([ "$RC" = 75 ]; echo $?)" "UIDVALIDITY change, keep + auto: stops (exit 75)" "exit $RC"
grep -q 'UIDVALIDITY of INBOX changed from 1000 to 2000: .*nothing fetched (fetch_uidvalidity_change=auto' "$FETCH_LOG"
tap_ok $? "UIDVALIDITY change, keep + auto: an error says what changed and what to do" "$(grep 'UIDVALIDITY' "$FETCH_LOG" | tail -1)"
fetch_conf "$WORK/etc/skip.conf" "fetch_done = keep" "fetch_uidvalidity_change = skip"
run_fetch "$WORK/etc/skip.conf"
tap_ok "$RC" "UIDVALIDITY change, skip: exit 0" "exit $RC"
grep -q 'warning: MAIL_IMAPS: UIDVALIDITY of INBOX changed from 1000 to 2000: the messages there now are taken as fetched' "$FETCH_LOG"
tap_ok $? "UIDVALIDITY change, skip: a warning" "$(grep 'UIDVALIDITY' "$FETCH_LOG" | tail -1)"
make_messages "$WORK/m6b" p6b 1
emu POST /mailstore "{\"append_dir\":\"$WORK/m6b\"}" >/dev/null	# one new message
run_fetch "$WORK/etc/skip.conf"
settle "$WORK/m6b" p6b
a=$(arrivals "$WORK/m6" p6)
b=$(arrivals "$WORK/m6b" p6b)
jq -e '.delivered == 5 and .duplicates == 0' <<< "$a" >/dev/null && jq -e '.delivered == 1' <<< "$b" >/dev/null
tap_ok $? "UIDVALIDITY change, skip: nothing handed over twice; later mail still comes" "$a $b"
# delete + auto = refetch: what is in the mailbox is handed over once
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m4\",\"uidvalidity\":3000}" >/dev/null
run_fetch
tap_ok "$RC" "UIDVALIDITY change, delete + auto: exit 0" "exit $RC"
grep -q 'UIDVALIDITY of INBOX changed from 2000 to 3000: every message there now is handed over again (fetch_uidvalidity_change=auto: refetch)' "$FETCH_LOG"
tap_ok $? "UIDVALIDITY change, delete + auto: a warning" "$(grep 'UIDVALIDITY' "$FETCH_LOG" | tail -1)"
settle "$WORK/m4" p4
a=$(arrivals "$WORK/m4" p4)
jq -e '.delivered == 3 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "UIDVALIDITY change, delete + auto: the 3 messages there arrive once" "$a"

# --- 7. POP3 (STLS) and POP3S ------------------------------------------------------
make_messages "$WORK/m7" p7 14
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m7\"}" >/dev/null
fetch_conf "$WORK/etc/pop3.conf" "fetch_sources = MAIL_POP3"
run_fetch "$WORK/etc/pop3.conf"
tap_ok "$RC" "POP3: one pass exits 0" "exit $RC; $(tail -2 "$FETCH_LOG")"
settle "$WORK/m7" p7
a=$(arrivals "$WORK/m7" p7)
jq -e '.delivered == 14 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "POP3: 14 messages (dot lines, 8-bit, 3 MB) arrived once, byte for byte" "$a"
n=$(mailbox '.messages | length')
tap_ok "$([ "$n" = 0 ]; echo $?)" "POP3: DELE + QUIT emptied the mailbox" "$n left"
grep -q 'STLS' "$WORK/log/emulator.log" && grep -q 'MAIL_POP3: pop3 mail.corp.internal:110 through the proxy, STARTTLS when offered' "$FETCH_LOG"
tap_ok $? "POP3: STLS through the proxy tunnel"
make_messages "$WORK/m8" p8 4
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m8\"}" >/dev/null
fetch_conf "$WORK/etc/pop3s.conf" "fetch_sources = MAIL_POP3S"
run_fetch "$WORK/etc/pop3s.conf"
settle "$WORK/m8" p8
a=$(arrivals "$WORK/m8" p8)
jq -e '.delivered == 4 and .duplicates == 0 and .mismatched == 0' <<< "$a" >/dev/null
tap_ok $? "POP3S: round trip byte for byte" "exit $RC; $a"

# --- 8. the operator's view: --probe, btprelay resolve/probe, a wrong key -------------
make_messages "$WORK/m9" p9 2
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m9\"}" >/dev/null
before=$(mailbox '.counters.downloads')
out=$("$WORK/bin/btprelay-fetch" -c "$CONF" --probe 2>&1)
rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
tap_ok "$([ "$rc" = 0 ] && printf '%s\n' "$out" | grep -q '^ok MAIL_IMAPS: login as relayuser ok; INBOX: UIDVALIDITY 3000 (state file: 3000), 2 messages, 2 not handed over yet$'; echo $?)" \
	"--probe: login, UIDVALIDITY and the count of new messages" "exit $rc: $out"
m=$(mailbox "[(.messages | length), ([.messages[].flags[]] | length), .counters.downloads - $before] | @text")
tap_ok "$([ "$m" = '[2,0,0]' ]; echo $?)" "--probe: nothing fetched, nothing flagged" "$m"
emu POST /mailstore '{"faults":{"login":"NO"}}' >/dev/null
out=$("$WORK/bin/btprelay-fetch" -c "$CONF" --probe 2>&1)
rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
emu POST /mailstore '{"faults":{"login":null}}' >/dev/null
tap_ok "$([ "$rc" = 75 ] && printf '%s\n' "$out" | grep -q '^FAILED MAIL_IMAPS: IMAP server mail.corp.internal:993 refused LOGIN: NO \[AUTHENTICATIONFAILED\]'; echo $?)" \
	"--probe: a refused login is one FAILED line with the server's text, exit 75" "exit $rc: $out"
fetch_conf "$WORK/etc/bad.conf" "fetch_done = shred"
out=$("$WORK/bin/btprelay-fetch" -c "$WORK/etc/bad.conf" 2>&1)
rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
tap_ok "$([ "$rc" = 78 ] && printf '%s\n' "$out" | grep -q 'fetch_done must be delete, move or keep'; echo $?)" \
	"a wrong fetch key: exit 78 (EX_CONFIG) with the key named" "exit $rc: $out"
if [ -x "$top_builddir/plugin/cli/btprelay" ]; then
	out=$("$top_builddir/plugin/cli/btprelay" -c "$CONF" resolve MAIL_IMAPS 2>&1)
	printf '%s\n' "$out" >> "$WORK/log/fetch.out"
	printf '%s\n' "$out" | grep -q 'mail.store.protocol.*imaps mail.corp.internal:993' &&
		! printf '%s\n' "$out" | grep -q "$PASSWORD"
	tap_ok $? "btprelay resolve shows the mailbox (password masked)" "$out"
	out=$("$top_builddir/plugin/cli/btprelay" -c "$CONF" probe MAIL_IMAPS 2>&1)
	rc=$?
printf '%s\n' "$out" >> "$WORK/log/fetch.out"
	tap_ok "$([ "$rc" != 0 ] && printf '%s\n' "$out" | grep -q 'probe it with btprelay-fetch --probe -s MAIL_IMAPS'; echo $?)" \
		"btprelay probe of a mailbox-only destination points to btprelay-fetch --probe" "exit $rc: $out"
fi

# --- 9. no secret anywhere -----------------------------------------------------------
sed -i 's/^log_level = .*/log_level = debug/' "$CONF"
out=$(secret_scan "$FETCH_LOG" "$WORK/log/fetch.out" "$WORK/log/maillog" "$BTPRELAY_LOG" \
	"$WORK"/fetch-state/*.state)
tap_ok $? "no secret in the fetch log, its output, the maillog or the state files (every encoding)" "$out"

tap_done
