#!/bin/bash
# test-sendmail.sh - btprelay behind a real sendmail (Debian's 8.17 binary,
# unpacked by tests/lib/sendmail-fetch.sh, never installed: it conflicts with
# postfix): the mailer of config/sendmail/btprelay.m4 installed as
# MAILER(`btprelay') in a private copy of sendmail's cf tree, mailertable
# routing, btprelay-milter through config/sendmail/milter.mc, and the BTP
# emulator. Asserts on swaks' replies, sendmail's queue (-bp, qf files), the
# transport's log, the relay's stored messages and the bounces, which go to a
# local mailbox: nothing leaves the machine. No syslog needed.
#
# sendmail sleeps 60 s at each start when the host name is unqualified; each
# sendmail command therefore runs in its own UTS namespace named
# mta.btprelay.test (unshare --uts), the machine's name is left alone.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init sendmail
SM_DIR=${BTPRELAY_SENDMAIL_DIR:-/var/cache/btprelay-test/sendmail}
SM_ROOT=$SM_DIR/root
SENDMAIL_BIN=$SM_ROOT/usr/libexec/sendmail/sendmail
[ -x "$SENDMAIL_BIN" ] ||
	harness_skip "sendmail binaries not unpacked in $SM_DIR (tests/lib/sendmail-fetch.sh, run by tests/install-deps.sh)"
for tool in m4 jq; do
	command -v "$tool" >/dev/null 2>&1 || harness_skip "$tool not installed (tests/install-deps.sh)"
done
if ldd "$SENDMAIL_BIN" 2>/dev/null | grep -q 'not found'; then
	harness_skip "sendmail misses libraries: $(ldd "$SENDMAIL_BIN" | grep 'not found' | tr -s ' \t\n' ' ')(libwrap0, tests/install-deps.sh)"
fi
if unshare --uts true 2>/dev/null && command -v hostname >/dev/null 2>&1; then
	SM_WRAP=(unshare --uts sh -c 'hostname "$0" && exec "$@"' mta.btprelay.test)
elif hostname 2>/dev/null | grep -q '\.'; then
	SM_WRAP=()
else
	harness_skip "host name $(hostname) is unqualified (sendmail sleeps 60 s at start) and unshare --uts is not permitted"
fi
WAIT_SECONDS=${WAIT_SECONDS:-20}
MILTER_BIN=$top_builddir/plugin/milter/btprelay-milter
[ -x "$MILTER_BIN" ] && HAVE_MILTER=1 || HAVE_MILTER=

harness_start_emulator
harness_install_transport "milter_trace_header = yes" "milter_lookup_timeout = 3"
. "$top_srcdir/tests/lib/scenario.sh"
scenario() {	# NAME: as scenario.sh's, for sendmail instead of Postfix
	SCEN=$1
	SCEN_N=$((SCEN_N + 1))
	MARK="btprelay-test-$SCEN_N-$RANDOM$RANDOM"
	echo "# --- $SCEN"
	emu POST /reset >/dev/null || echo "# emulator reset failed"
}

SMW=$WORK/sendmail
SMCF=$SMW/test.cf
MAILBOX=$WORK/mailbox
SM_PID=
mkdir -p "$SMW/queue" "$MAILBOX"
chmod 700 "$SMW/queue"
chown "$TRANSPORT_USER" "$MAILBOX"
sm() {	# sendmail with the test configuration
	"${SM_WRAP[@]}" "$SENDMAIL_BIN" -C "$SMCF" "$@"
}
sendmail_stop() {
	local kids i
	if [ -n "$SM_PID" ]; then
		kids=$(pgrep -P "$SM_PID")
		kill $SM_PID $kids 2>/dev/null
		for i in $(seq 50); do kill -0 "$SM_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$SM_PID" 2>/dev/null
		wait "$SM_PID" 2>/dev/null
		SM_PID=
	fi
	# deliveries still running (only after a failure): this run's transports, by their -c path
	kids=$(pgrep -f -- "^btprelay-transport -c $WORK/etc/btprelay.conf ")
	[ -n "$kids" ] && kill $kids 2>/dev/null
	return 0
}
trap 'sendmail_stop; harness_stop' EXIT

# --- the milter ---------------------------------------------------------------
if [ -n "$HAVE_MILTER" ]; then
	harness_start_milter ||
		{ echo "Bail out! btprelay-milter did not start: $(cat "$WORK/log/milter.stderr")"; exit 99; }
	# the shipped snippet, with this run's socket
	sed "s|unix:/run/btprelay/milter.sock|unix:$MILTER_SOCK|" "$top_srcdir/config/sendmail/milter.mc" > "$SMW/milter.mc"
	grep -q "S=unix:$MILTER_SOCK," "$SMW/milter.mc" ||
		{ echo "Bail out! config/sendmail/milter.mc has no INPUT_MAIL_FILTER for unix:/run/btprelay/milter.sock"; exit 99; }
	MILTER_MC="include(\`$SMW/milter.mc')"
else
	MILTER_MC="dnl btprelay-milter not built"
fi

# --- sendmail -----------------------------------------------------------------
# A private cf tree with the shipped mailer installed as cf/mailer/btprelay.m4.
cp -R "$SM_ROOT/usr/share/sendmail/cf" "$SMW/cf"
install -m 644 "$top_srcdir/config/sendmail/btprelay.m4" "$SMW/cf/mailer/btprelay.m4"
# capture DIR ARGS... - the local mailbox: bounces and anything not routed to btprelay
cat > "$WORK/bin/capture" <<'SH'
#!/bin/sh
dir=$1
shift
{ printf 'X-Capture-Args: %s\n' "$*"; cat; } > "$dir/.tmp.$$" && mv "$dir/.tmp.$$" "$dir/$$.eml"
SH
chmod 755 "$WORK/bin/capture"
printf 'hosts\tfiles\naliases\tfiles\n' > "$SMW/service.switch"
printf '%s: postmaster@client.test\n' postmaster MAILER-DAEMON root abuse > "$SMW/aliases"
{
	printf 'corp.example\tbtprelay:MAIL_ONPREM\n'
	printf 'client.test\tcapture:mailbox\n'
	for name in s_temp s_missing; do printf '%s.dest.test\tbtprelay:%s\n' "$name" "$name"; done
} > "$SMW/mailertable"
SM_PORT=$(free_port)
cat > "$SMW/test.mc" <<MC
divert(-1)
# written by tests/integration/test-sendmail.sh
divert(0)dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`mta.btprelay.test')dnl
define(\`confPID_FILE', \`$SMW/sendmail.pid')dnl
define(\`QUEUE_DIR', \`$SMW/queue')dnl
define(\`ALIAS_FILE', \`$SMW/aliases')dnl
define(\`STATUS_FILE', \`$SMW/statistics')dnl
define(\`confSERVICE_SWITCH_FILE', \`$SMW/service.switch')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
define(\`confTO_IDENT', \`0')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confREFUSE_LA', \`1000')dnl
define(\`confDELAY_LA', \`0')dnl
define(\`SMART_HOST', \`capture:smarthost')dnl
define(\`BTPRELAY_MAILER_PATH', \`$WORK/bin/btprelay-transport')dnl
define(\`BTPRELAY_CONFIG', \`$WORK/etc/btprelay.conf')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`mailertable', \`hash -o $SMW/mailertable')dnl
DAEMON_OPTIONS(\`Port=$SM_PORT,Addr=127.0.0.1, Name=MTA')dnl
$MILTER_MC
MAILER(\`smtp')dnl
MAILER(\`btprelay')dnl
MAILER_DEFINITIONS
Mcapture,	P=$WORK/bin/capture, F=DFMnu, U=$TRANSPORT_USER, T=DNS/RFC822/X-Unix, A=capture $MAILBOX \$h \$u
MC
m4 "$SMW/cf/m4/cf.m4" "$SMW/test.mc" > "$SMCF" 2> "$WORK/log/m4.log"
[ $? = 0 ] && ! grep -q . "$WORK/log/m4.log"
tap_ok $? "config: sendmail.cf built from a .mc with MAILER(\`btprelay')" "$(cat "$WORK/log/m4.log")"
# the alternative: Debian's cf tree untouched, the file included after MAILER_DEFINITIONS
sed "/^MAILER(\`btprelay')dnl$/d; s|^MAILER_DEFINITIONS$|&\ninclude(\`$top_srcdir/config/sendmail/btprelay.m4')|" \
	"$SMW/test.mc" > "$SMW/include.mc"
m4 "$SM_ROOT/usr/share/sendmail/cf/m4/cf.m4" "$SMW/include.mc" > "$SMW/include.cf" 2>> "$WORK/log/m4.log"
[ -n "$(grep -A2 '^Mbtprelay' "$SMCF")" ] &&
	[ "$(grep -A2 '^Mbtprelay' "$SMCF")" = "$(grep -A2 '^Mbtprelay' "$SMW/include.cf")" ]
tap_ok $? "config: include(\`btprelay.m4') after MAILER_DEFINITIONS gives the same mailer" \
	"$(grep -A2 '^Mbtprelay' "$SMCF" "$SMW/include.cf"; cat "$WORK/log/m4.log")"
mailer=$(echo '=M' | sm -bt 2>> "$WORK/log/sendmail-bt.log" | grep '(btprelay)')
printf '%s\n' "$mailer" | grep -q " U=$(id -u "$TRANSPORT_USER"):$(id -g "$TRANSPORT_USER") F=DFMhmnu " &&
	printf '%s\n' "$mailer" | grep -q -F -- "A=btprelay-transport -c $WORK/etc/btprelay.conf -n -q \$i -s \${msg_size} -f \$g -d \$h -- \$u"
tap_ok $? "config: sendmail loads the btprelay mailer (flags, user, argv)" "$mailer"
"$SM_ROOT/usr/libexec/sendmail/makemap" -C "$SMCF" hash "$SMW/mailertable" < "$SMW/mailertable" \
	> "$WORK/log/makemap.log" 2>&1
sm -bi > "$WORK/log/newaliases.log" 2>&1
route=$(printf '3,0 user@corp.example\n3,0 user@s_temp.dest.test\n' | sm -bt 2>> "$WORK/log/sendmail-bt.log" |
	grep '^parse  *returns')
printf '%s\n' "$route" | grep -q '\$# btprelay \$@ MAIL_ONPREM \$: user' &&
	printf '%s\n' "$route" | grep -q '\$# btprelay \$@ s_temp \$: user'
tap_ok $? "config: mailertable routes corp.example to btprelay:MAIL_ONPREM" "$route"

echo "# sendmail $(cat "$SM_DIR/version" 2>/dev/null) on 127.0.0.1:$SM_PORT${HAVE_MILTER:+, with btprelay-milter}"
sm -bD > "$WORK/log/sendmail.stderr" 2>&1 &
SM_PID=$!
for i in $(seq 100); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$SM_PORT" 2>/dev/null && break
	kill -0 "$SM_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$SM_PID" 2>/dev/null ||
	{ echo "Bail out! sendmail did not start: $(cat "$WORK/log/sendmail.stderr")"; exit 99; }

# smtp FROM TO [swaks args...] - one SMTP session with sendmail; prints the transcript
smtp() {
	local from=$1 to=$2
	shift 2
	swaks --server "127.0.0.1:$SM_PORT" --from "$from" --to "$to" --helo client.test "$@" 2>&1 |
		tee -a "$WORK/log/swaks.log"
}
queue_id() {	# swaks transcript on stdin -> sendmail's queue id
	sed -n 's/^<-  250 2\.0\.0 \([0-9A-Za-z]*\) Message accepted for delivery.*/\1/p' | tail -1
}
# wait_log QID RCPT STATUS - the transport's log line for QID and RCPT with that status
wait_log() {
	local i line
	for i in $(seq $((WAIT_SECONDS * 10))); do
		line=$(grep -F "$1: to=<$2>," "$BTPRELAY_LOG" | grep "status=$3" | head -1)
		[ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
		sleep 0.1
	done
	echo "(no transport log line $1 <$2> status=$3 after ${WAIT_SECONDS}s)"
	grep -F "$1" "$BTPRELAY_LOG" | tail -3
	return 1
}
# wait_done QID - sendmail finished its delivery attempt: the queue file is
# gone (delivered, bounced) or carries the attempt's status line
wait_done() {
	local i
	for i in $(seq $((WAIT_SECONDS * 10))); do
		[ -f "$SMW/queue/qf$1" ] || return 0
		grep -q '^M' "$SMW/queue/qf$1" 2>/dev/null && ! sm -bp 2>/dev/null | grep -q "^$1\*" && return 0
		sleep 0.1
	done
	return 1
}
queued() {	# QID - sendmail -bp lists it
	sm -bp 2>/dev/null | grep -q "^$1"
}
mailbox_with() {	# TEXT - the captured messages containing TEXT
	grep -l -F -- "$1" "$MAILBOX"/*.eml 2>/dev/null
}

# --- delivery -------------------------------------------------------------------
scenario "delivered through the proxy to the relay, envelope kept"
out=$(smtp sender@client.test user@corp.example --header "Subject: $MARK")
q=$(printf '%s\n' "$out" | queue_id)
[ -n "$q" ]
tap_ok $? "$SCEN: sendmail accepted the message (queue id ${q:-none})" "$(printf '%s\n' "$out" | tail -4)"
line=$(wait_log "$q" user@corp.example sent)
sent=$?
tap_ok $sent "$SCEN: the transport logged status=sent under sendmail's queue id" "$line"
printf '%s\n' "$line" | grep -q 'destination=MAIL_ONPREM, .*dsn=2\.0\.0'
tap_ok $? "$SCEN: destination MAIL_ONPREM (case kept by F=h), dsn=2.0.0" "$line"
wait_done "$q"
queued "$q"
tap_ok $((! $?)) "$SCEN: the queue no longer holds $q" "$(sm -bp 2>&1 | head -5)"
expect_relay 1 '.via_proxy == true and .location_id == "LOC1"' \
	'.mail_from == "sender@client.test" and .rcpt_to == ["user@corp.example"]' \
	'.tls == true and .auth_user == "relayuser"' \
	'.mail_params | test("SIZE=[0-9]+")'
# bindings.json is 0600 btprelay: the transport refuses it as any other user, root included
tap_ok $sent "$SCEN: the transport ran as user $TRANSPORT_USER (U= of the mailer: it could use the bindings)"
if [ -n "$HAVE_MILTER" ]; then
	f=$(relay_files | head -1)
	grep -q '^X-BTPRelay-Destination: MAIL_ONPREM[[:space:]]*$' "${f:-/dev/null}"
	tap_ok $? "$SCEN: btprelay-milter saw the message (trace header X-BTPRelay-Destination)" \
		"$(head -20 "${f:-/dev/null}")"
else
	tap_ok 0 "$SCEN: btprelay-milter trace header # SKIP milter not built"
fi

scenario "two recipients: one transport run (F=m), one transaction at the relay"
out=$(smtp sender@client.test a@corp.example,B.Two@corp.example --header "Subject: $MARK")
q=$(printf '%s\n' "$out" | queue_id)
line=$(wait_log "$q" a@corp.example sent) && line=$(wait_log "$q" B.Two@corp.example sent)
tap_ok $? "$SCEN: both recipients sent" "$line"
expect_relay 1 '.rcpt_to == ["a@corp.example", "B.Two@corp.example"]'

scenario "null sender: MAIL FROM:<> at the relay"
out=$(smtp '<>' user@corp.example --header "Subject: $MARK")
q=$(printf '%s\n' "$out" | queue_id)
line=$(wait_log "$q" user@corp.example sent)
tap_ok $? "$SCEN: sent" "$line"
expect_relay 1 '.mail_from == ""'

scenario "body byte-exact: leading dots, lone dot, 8-bit text (no X flag, no MIME conversion)"
body=$WORK/body.txt
printf 'Subject: %s\nFrom: sender@client.test\nTo: user@corp.example\n\n.leading dot\n..two dots\n.\nGr\303\274\303\237e aus K\303\266ln\nlast line\n' "$MARK" > "$body"
out=$(smtp sender@client.test user@corp.example --data "@$body")
q=$(printf '%s\n' "$out" | queue_id)
line=$(wait_log "$q" user@corp.example sent)
tap_ok $? "$SCEN: sent" "$line"
expect_relay 1
expect_body "$body"

# --- temporary failure: queued, delivered once by a queue run --------------------
scenario "proxy REP 04: deferred, stays queued; a queue run delivers it once"
dest_clone s_temp MAIL_ONPREM
emu POST /faults '{"proxy_rep":4}' >/dev/null
out=$(smtp sender@client.test user@s_temp.dest.test --header "Subject: $MARK")
q=$(printf '%s\n' "$out" | queue_id)
[ -n "$q" ]
tap_ok $? "$SCEN: accepted (queue id ${q:-none})" "$(printf '%s\n' "$out" | tail -4)"
line=$(wait_log "$q" user@s_temp.dest.test deferred)
tap_ok $? "$SCEN: the transport logged status=deferred" "$line"
printf '%s\n' "$line" | grep -q 'dsn=4\.4\.1.*REP 04'
tap_ok $? "$SCEN: dsn=4.4.1 with the proxy's REP 04" "$line"
wait_done "$q"
queued "$q" && grep -q '^MDeferred: btprelay mailer .* exited with EX_TEMPFAIL' "$SMW/queue/qf$q"
tap_ok $? "$SCEN: sendmail keeps it queued (-bp, qf: Deferred ... EX_TEMPFAIL)" \
	"$(sm -bp 2>&1 | head -6; grep '^M' "$SMW/queue/qf$q" 2>&1)"
[ -z "$(mailbox_with "$q")" ]
tap_ok $? "$SCEN: no bounce"
expect_relay 0
emu POST /faults/clear >/dev/null
timeout 60 "${SM_WRAP[@]}" "$SENDMAIL_BIN" -C "$SMCF" -q > "$WORK/log/queue-run.log" 2>&1
tap_ok $? "$SCEN: sendmail -q ran" "$(cat "$WORK/log/queue-run.log")"
line=$(wait_log "$q" user@s_temp.dest.test sent)
tap_ok $? "$SCEN: the queue run delivered it" "$line"
queued "$q"
tap_ok $((! $?)) "$SCEN: the queue is empty" "$(sm -bp 2>&1 | head -5)"
expect_relay 1 '.rcpt_to == ["user@s_temp.dest.test"]'
n=$(grep -F "$q: to=<user@s_temp.dest.test>," "$BTPRELAY_LOG" | grep -c 'status=sent')
[ "$n" = 1 ]
tap_ok $? "$SCEN: sent exactly once (transport log)" "sent lines: $n"

# --- permanent failure: bounced with the transport's text -----------------------
scenario "relay RCPT 550: returned to the sender, the transport's line in the transcript"
emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown"}}' >/dev/null
out=$(smtp sender@client.test nobody@corp.example --header "Subject: $MARK")
q=$(printf '%s\n' "$out" | queue_id)
line=$(wait_log "$q" nobody@corp.example bounced)
tap_ok $? "$SCEN: the transport logged status=bounced" "$line"
for i in $(seq $((WAIT_SECONDS * 10))); do
	bounce=$(mailbox_with "$q" | head -1)
	[ -n "$bounce" ] && break
	sleep 0.1
done
[ -n "$bounce" ] && grep -q '^X-Capture-Args: mailbox sender@client.test' "$bounce"
tap_ok $? "$SCEN: a bounce went to the sender (local mailbox)" "$(ls -l "$MAILBOX")"
sed -n '/Transcript of session follows/,/^--/p' "$bounce" 2>/dev/null |
	grep -q '5\.1\.1 .*550 5\.1\.1 <nobody@corp.example>: Recipient address rejected: User unknown'
tap_ok $? "$SCEN: the transcript has the transport's line with the relay's reply" \
	"$(sed -n '/Transcript of session follows/,/^--/p' "$bounce" 2>/dev/null)"
grep -q '^Action: failed' "$bounce" 2>/dev/null && grep -q '^Status: 5\.' "$bounce" &&
	grep -q '^Diagnostic-Code: X-Unix; 69' "$bounce"
tap_ok $? "$SCEN: DSN: Action failed, Status 5.x.x, Diagnostic-Code X-Unix; 69" \
	"$(grep -E '^(Action|Status|Diagnostic-Code):' "$bounce" 2>/dev/null)"
wait_done "$q"
queued "$q"
tap_ok $((! $?)) "$SCEN: nothing left in the queue"
expect_relay 0

# --- the milter at RCPT -----------------------------------------------------------
scenario "milter: a recipient routed to a missing destination is refused at RCPT"
if [ -n "$HAVE_MILTER" ]; then
	out=$(smtp sender@client.test user@s_missing.dest.test --header "Subject: $MARK")
	printf '%s\n' "$out" | grep -q '^<\*\* *550 5\.1\.2 .*s_missing'
	tap_ok $? "$SCEN: swaks got 550 5.1.2 naming the destination" "$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
	[ -z "$(printf '%s\n' "$out" | queue_id)" ]
	tap_ok $? "$SCEN: nothing accepted"
else
	tap_ok 0 "$SCEN: 550 at RCPT # SKIP milter not built"
	tap_ok 0 "$SCEN: nothing accepted # SKIP milter not built"
fi

# --- hygiene ------------------------------------------------------------------------
scenario "nothing left the machine, no secret in any output"
[ -z "$(mailbox_with 'X-Capture-Args: smarthost')" ]
tap_ok $? "$SCEN: nothing went to the smart-host catch-all"
expect_no_secrets "$BTPRELAY_LOG" "$WORK/log/swaks.log" "$MAILBOX"/*.eml

tap_done
