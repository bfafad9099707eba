#!/bin/bash
# test-lmtp.sh - btprelay-lmtp behind a real Postfix: lmtp(8) delivers to it
# over unix:private/btprelay-lmtp-MAIL_ONPREM, spawn(8) starts it per connection, and
# one relay session carries many messages. Asserted on Postfix's
# per-recipient status lines, on what reached the relay and on the
# emulator's connection counters.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init lmtp
harness_start_emulator
harness_install_transport
harness_start_postfix
# two lmtp(8) processes at most: each keeps its connection for the next message
postconf -c "$PF" -e "lmtp_destination_concurrency_limit = 2"
postfix -c "$PF" reload >/dev/null 2>&1
. "$top_srcdir/tests/lib/scenario.sh"
STATUS_AGENT=lmtp

counter() {	# jq path into /counters
	emu GET /counters | jq -r "$1"
}

# hold_mail / release_mail - keep what is submitted in the hold queue, then
# hand it all to the queue manager at once: a backlog, so lmtp(8) keeps its
# connection (and btprelay-lmtp its relay session) from one message to the next
hold_mail() {
	postconf -c "$PF" -e "smtpd_end_of_data_restrictions = check_client_access static:HOLD"
	postfix -c "$PF" reload >/dev/null 2>&1
}
release_mail() {
	postconf -c "$PF" -e "smtpd_end_of_data_restrictions ="
	postfix -c "$PF" reload >/dev/null 2>&1
	postsuper -c "$PF" -H ALL >/dev/null 2>&1
	flush_queue
}

# send_many N RCPT - N held messages; their queue ids in $WORK/qids
send_many() {
	local i
	: > "$WORK/qids"
	hold_mail
	for i in $(seq "$1"); do
		send_mail sender@client.test "$2" --header "Subject: $MARK $i" >> "$WORK/qids"
	done
	release_mail
}

# expect_all_sent RCPT - every queue id in $WORK/qids has a status=sent line
expect_all_sent() {
	local q bad=""
	while read -r q; do
		wait_status "$q" "$1" sent >/dev/null || bad="$bad $q"
	done < "$WORK/qids"
	[ -z "$bad" ] && [ "$(grep -c . "$WORK/qids")" -gt 0 ]
	tap_ok $? "$SCEN: every message has status=sent" "not sent:$bad"
}

scenario "20 messages: each delivered once, relay sessions reused"
send_many 20 user@lmtp.example
expect_all_sent user@lmtp.example
expect_relay 20 '.via_proxy == true and .location_id == "LOC1"' \
	'.tls == true and .auth_user == "relayuser"' '.rcpt_to == ["user@lmtp.example"]'
n=$(counter .proxy_connections)
[ "$n" -ge 1 ] && [ "$n" -le 10 ]
tap_ok $? "$SCEN: at most one proxy tunnel for two messages" "proxy connections: $n for 20 messages"
n=$(grep -c "btprelay-lmtp.* TLS connection established" "$BTPRELAY_LOG")
[ "$n" -ge 1 ] && [ "$n" -le 10 ]
tap_ok $? "$SCEN: at most one TLS handshake with the relay for two messages" "handshakes: $n"

scenario "queue id from XFORWARD in btprelay's log lines"
q=$(send_mail sender@client.test user@lmtp.example --header "Subject: $MARK")
expect_status "$q" user@lmtp.example sent 'dsn=2\.0\.0' 'status=sent (250 2\.0\.0 relayed: 250 2\.0\.0 Ok: queued as'
grep -q "btprelay-lmtp.*$q: to=<user@lmtp.example>, relay=.*status=sent" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: btprelay-lmtp logged the delivery under Postfix's queue id $q" \
	"$(grep btprelay-lmtp "$BTPRELAY_LOG" | tail -3)"

scenario "body byte-exact: leading dots, lone dot, 8-bit text"
body=$WORK/body.txt
printf 'Subject: %s\nFrom: sender@client.test\nTo: user@lmtp.example\n\n.leading dot\n..two dots\n.\nGr\303\274\303\237e aus K\303\266ln\n\n\nlast line\n' "$MARK" > "$body"
q=$(send_mail sender@client.test user@lmtp.example --data "@$body")
expect_status "$q" user@lmtp.example sent
expect_relay 1 '.mail_params | test("BODY=8BITMIME")'
expect_body "$body"

scenario "two recipients, the relay refuses one: a reply for each"
emu POST /faults '{"rcpt_reply":{"nobody@lmtp.example":"550 5.1.1 <nobody@lmtp.example>: Recipient address rejected: User unknown"}}' >/dev/null
q=$(send_mail sender@client.test user@lmtp.example,nobody@lmtp.example --header "Subject: $MARK")
expect_status "$q" nobody@lmtp.example bounced 'dsn=5\.1\.1' 'User unknown'
expect_status "$q" user@lmtp.example deferred 'dsn=4\.0\.0' 'another recipient'
expect_recovery "$q" user@lmtp.example

# fault_scenario TITLE FAULT-JSON REGEX... - one message under the fault: deferred,
# its log line matches every REGEX; then delivered exactly once when the fault clears
fault_scenario() {
	local title=$1 fault=$2 q
	shift 2
	scenario "$title: deferred, delivered once later"
	emu POST /faults "$fault" >/dev/null
	q=$(send_mail sender@client.test user@lmtp.example --header "Subject: $MARK")
	expect_status "$q" user@lmtp.example deferred "$@"
	expect_recovery "$q" user@lmtp.example
}
fault_scenario "relay 451 at MAIL FROM" '{"relay":{"mail":"451 4.3.0 Try again later"}}' \
	'dsn=4\.3\.0' '451 4\.3\.0 Try again later'
fault_scenario "relay closes the connection after the dot" '{"relay":{"eod":"close"}}' \
	'dsn=4\.4\.2' 'lost connection'
fault_scenario "proxy refuses the token" '{"proxy":"auth_fail"}' \
	'dsn=4\.7\.0' 'proxy authentication rejected'
# issue 13: 354 and 250 at once, the body never read: the 250 is no reply to the dot
fault_scenario "relay answers 354 and 250 at once" \
	'{"relay_raw":{"data":"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as EARLY\r\n"}}' \
	'dsn=4\.5\.0' 'queued as EARLY.* before the end of the message data'

scenario "relay ends every session after one message: a new session for each, none lost"
emu POST /relay '{"max_messages_per_session":1}' >/dev/null
send_many 8 user@lmtp.example
expect_all_sent user@lmtp.example
expect_relay 8
n=$(counter .relay_connections)
[ "$n" -ge 8 ]
tap_ok $? "$SCEN: one relay session per message" "relay connections: $n"
! grep -q "status=deferred" <(grep -F -f "$WORK/qids" "$WORK/log/maillog")
tap_ok $? "$SCEN: no message was deferred" "$(grep -F -f "$WORK/qids" "$WORK/log/maillog" | grep deferred)"
emu POST /relay '{"max_messages_per_session":0}' >/dev/null

# btprelay-lmtp run by hand, the way spawn(8) runs it: a socket on stdin/stdout
scenario "a configuration it cannot read: 421 4.3.5 with the reason, exit 78"
out=$(python3 - "$WORK/bin/btprelay-lmtp" "$WORK/etc/missing.conf" <<'PY' 2>&1
import socket, subprocess, sys
prog, conf = sys.argv[1:]
ours, theirs = socket.socketpair()
p = subprocess.Popen([prog, "-c", conf, "-d", "MAIL_ONPREM"], stdin=theirs, stdout=theirs,
                     stderr=subprocess.DEVNULL)
theirs.close()
ours.settimeout(30)
print(ours.makefile("rb").readline().decode().rstrip())
print("exit %d" % p.wait(timeout=30))
PY
)
printf '%s\n' "$out" | grep -q '^421 4\.3\.5 btprelay-lmtp: configuration error: .*missing\.conf' &&
	printf '%s\n' "$out" | grep -q '^exit 78$'
tap_ok $? "$SCEN: the client is told, Postfix keeps the mail" "$out"
"$WORK/bin/btprelay-lmtp" -c "$WORK/etc/btprelay.conf" < /dev/null > "$WORK/usage.out" 2>&1
rc=$?
[ "$rc" = 64 ] && grep -q "usage: btprelay-lmtp" "$WORK/usage.out"
tap_ok $? "$SCEN: no -d: usage, exit 64" "exit $rc: $(cat "$WORK/usage.out")"

scenario "the client goes away in the middle of the message: nothing reaches the relay"
out=$(python3 - "$WORK/bin/btprelay-lmtp" "$WORK/etc/btprelay.conf" "$TRANSPORT_USER" "$MARK" <<'PY' 2>&1
import socket, subprocess, sys
prog, conf, user, mark = sys.argv[1:]
ours, theirs = socket.socketpair()
p = subprocess.Popen(["runuser", "-u", user, "--", prog, "-c", conf, "-d", "MAIL_ONPREM"],
                     stdin=theirs, stdout=theirs)
theirs.close()
ours.settimeout(60)
f = ours.makefile("rb")
def reply():
    while True:
        line = f.readline().decode().rstrip()
        if len(line) < 4 or line[3] != "-":
            return line
reply()
ours.sendall(b"LHLO mta.test\r\n")
reply()
ours.sendall(b"MAIL FROM:<sender@client.test>\r\nRCPT TO:<user@lmtp.example>\r\nDATA\r\n")
print(reply(), reply(), reply())
ours.sendall(b"Subject: " + mark.encode() + b"\r\n\r\nthe first half, and then")
ours.shutdown(socket.SHUT_RDWR)   # gone (f still holds the socket: close() alone would not end it)
print("exit %d" % p.wait(timeout=60))
PY
)
printf '%s\n' "$out" | grep -q '^250 2\.1\.0 Ok 250 2\.1\.5 Ok 354' && printf '%s\n' "$out" | grep -q '^exit 0$'
tap_ok $? "$SCEN: the message was under way, btprelay-lmtp ended" "$out"
expect_relay 0
[ "$(emu GET /counters | jq -r .relay_messages)" = 0 ]
tap_ok $? "$SCEN: the relay stored nothing (no final dot sent)" "$(emu GET /counters | jq -c .)"
grep -q "btprelay-lmtp.*client connection lost while sending the message" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: logged" "$(grep btprelay-lmtp "$BTPRELAY_LOG" | tail -3)"

scenario "commands out of order, pipelined, and a command after QUIT"
out=$(python3 - "$WORK/bin/btprelay-lmtp" "$WORK/etc/btprelay.conf" "$TRANSPORT_USER" <<'PY' 2>&1
import socket, subprocess, sys
prog, conf, user = sys.argv[1:]
ours, theirs = socket.socketpair()
p = subprocess.Popen(["runuser", "-u", user, "--", prog, "-c", conf, "-d", "MAIL_ONPREM"],
                     stdin=theirs, stdout=theirs)
theirs.close()
ours.settimeout(60)
ours.sendall(b"LHLO mta.test\r\nRCPT TO:<user@lmtp.example>\r\nDATA\r\n"
             b"MAIL FROM:<sender@client.test>\r\nMAIL FROM:<other@client.test>\r\nDATA\r\n"
             b"RSET\r\nRCPT TO:<user@lmtp.example>\r\nQUIT\r\nNOOP\r\n")
# the greeting's code, the code and status of the last line of each reply, then the end
lines = [l for l in ours.makefile("rb") if l[3:4] != b"-"]
print(" ".join([lines[0][:3].decode()] + [l[:9].decode() for l in lines[1:]]), "EOF")
print("exit %d" % p.wait(timeout=60))
PY
)
printf '%s\n' "$out" | grep -q '^220 250 XFORW 503 5.5.1 503 5.5.1 250 2.1.0 503 5.5.1 554 5.5.1 250 2.0.0 503 5.5.1 221 2.0.0 EOF$' &&
	printf '%s\n' "$out" | grep -q '^exit 0$'
tap_ok $? "$SCEN: RCPT and DATA before MAIL 503, MAIL twice 503, DATA without RCPT 554, nothing after 221" "$out"

scenario "no secret in any log or output"
expect_no_secrets "$WORK/log/maillog" "$BTPRELAY_LOG" "$WORK/log/swaks.log"

tap_done
