#!/bin/bash
# test-image-fetch.sh - the relay image runs btprelay-fetch(8) from the
# environment (BTPRELAY_FETCH_*): the emulator's on-premise IMAPS mailbox
# (tests/emulator/mailstore.py, behind the 0x80 proxy) is emptied into the
# container's Postfix, which relays the mail to the emulator's relay (the
# sink), all on one queue volume:
#   1. fetch_done = delete: every message arrives once, byte for byte (after
#      Postfix's Received: header), and is deleted on the server; the log
#      lines are on the container's stdout; the state file is on the queue
#      volume, 0600, the transport user's;
#   2. SIGTERM: the container (and the fetch daemon) stops cleanly, exit 0;
#   3. a new container on the same volume, fetch_done = keep: new messages
#      arrive once and stay on the server, flagged \Seen; after another
#      restart none of them is handed over again (the state survived), and
#      mail added later still comes;
#   4. the fetch daemon killed (SIGKILL) inside the container: started again
#      by the entrypoint with a warning, and the next message arrives;
#   5. a bad fetch setting ends the start with exit 78 and one line; with
#      BTPRELAY_FETCH_HOST naming another host, this container does not fetch;
#   6. no secret in any encoding on stdout.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init image-fetch
. "$top_srcdir/tests/lib/image.sh"
image_init
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
harness_start_emulator
. "$top_srcdir/tests/lib/scenario.sh"
image_build

scenario "fetch from the environment"
image_bindings "$WORK/bindings"
install -d -m 755 "$WORK/ca"
install -m 644 "$EMU/certs/ca.pem" "$WORK/ca/ca.pem"
SMTP_PORT=$(free_port)
Q=btprelay-test-$$-fetch-queue
image_volume "$Q"
PASSWORD=$(emu GET /destinations/MAIL_ONPREM | jq -r '."mail.password"')
jq -n --arg pw "$PASSWORD" '{Name:"MAIL_IMAPS", Type:"MAIL", ProxyType:"OnPremise",
	Authentication:"BasicAuthentication", "mail.store.protocol":"imaps",
	"mail.imaps.host":"mail.corp.internal", "mail.imaps.port":"993",
	"mail.user":"relayuser", "mail.password":$pw}' | emu PUT /destinations/MAIL_IMAPS - >/dev/null
RUN_ARGS=(-v "$WORK/bindings:/bindings:ro" -v "$WORK/ca:/ca:ro" -v "$Q:/var/spool/postfix"
	-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem
	-e BTPRELAY_INET_INTERFACES=127.0.0.1 -e BTPRELAY_MYNETWORKS=127.0.0.2/32
	-e "BTPRELAY_SMTP_PORT=$SMTP_PORT" -e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM"
	-e BTPRELAY_METRICS_LISTEN=no
	-e BTPRELAY_FETCH_SOURCES=MAIL_IMAPS -e BTPRELAY_FETCH_RECIPIENT=inbox@corp.example
	-e BTPRELAY_FETCH_SENDER=invoices@corp.internal -e BTPRELAY_FETCH_INTERVAL=5)
SEQ=0

# start_relay [podman-run-args...] - a new container on the queue volume; its name in $C
start_relay() {
	SEQ=$((SEQ + 1))
	C=btprelay-test-$$-fetch-$SEQ
	image_run "$C" "${RUN_ARGS[@]}" "$@"
	image_wait_ready "$C"
	tap_ok $? "$SCEN: container $SEQ ready" "$(image_logs "$C" /dev/stdout | tail -5)"
}

# stop_relay - SIGTERM; the exit code must be 0 and the entrypoint must have ended
stop_relay() {
	local rc
	pdm stop -t 30 "$C" >/dev/null 2>&1
	rc=$(image_exit_code "$C")
	image_logs "$C" "$WORK/log/stdout-$C.log"
	[ "$rc" = 0 ] && grep -q '^btprelay: stopped$' "$WORK/log/stdout-$C.log" &&
		! sed -n '/^btprelay: stopping on SIGTERM/,$p' "$WORK/log/stdout-$C.log" | grep -q 'fetch ended'
	tap_ok $? "$SCEN: SIGTERM: the fetch daemon and the container stop cleanly (exit 0)" \
		"exit $rc: $(grep -v 'postfix/' "$WORK/log/stdout-$C.log" | tail -5)"
}

# mail DIR FIRST LAST - messages FIRST..LAST as DIR/NNNN.eml, CRLF: some with
# 8-bit text and a raw Latin-1 byte, some with lines that start with a dot,
# message 5 about 1 MB; each with a Message-ID of this test
mail() {
	python3 - "$@" "$MARK" <<'PY'
import os, sys
d, first, last, mark = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.makedirs(d, exist_ok=True)
for n in range(first, last + 1):
    head = ("Message-ID: <%s.%d@mailbox.test>\r\nFrom: billing@vendor.example\r\n"
            "To: invoices@corp.internal\r\nDate: Thu, 03 Dec 2026 07:00:00 +0000\r\n"
            "Subject: statement %d\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" % (mark, n, n)).encode()
    body = b"statement %d\r\n" % n
    if n % 3 == 0:
        body += "Zürich, Montréal, 東京\r\n".encode() + b"raw \xe9\r\n"
    if n % 4 == 0:
        body += b".\r\n..\r\n.starts with a dot\r\n"
    if n == 5:
        body += b"".join(b"%07d %s\r\n" % (i, b"y" * 120) for i in range(8000))
    with open(os.path.join(d, "%04d.eml" % n), "wb") as f:
        f.write(head + body)
PY
}

# arrived DIR - JSON: of DIR's messages, how many reached the sink (distinct),
# copies beyond the first, the most copies of one, and copies whose bytes
# differ (Postfix's Received: header taken off)
arrived() {
	python3 - "$1" "$EMU/messages" "$MARK" <<'PY'
import glob, json, os, re, sys
src, sink, mark = sys.argv[1:]
want = {re.search(rb"^Message-ID: <([^>]*)>", open(p, "rb").read(), re.M).group(1):
        open(p, "rb").read() for p in glob.glob(os.path.join(src, "*.eml"))}
seen, differ, where = {}, 0, ""
for p in glob.glob(os.path.join(sink, "*.eml")):
    data = re.sub(rb"\A(Received: [^\n]*\n(?:[ \t][^\n]*\n)*)+", b"", open(p, "rb").read())
    m = re.search(rb"^Message-ID: <([^>]*)>", data, re.M)
    if m is None or m.group(1) not in want:
        continue
    seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    if data != want[m.group(1)]:
        differ += 1
        where = where or "%s: %r" % (p, data[:200])
print('{"want": %d, "arrived": %d, "extra": %d, "max": %d, "differ": %d, "first_differ": %s}' % (
    len(want), len(seen), sum(seen.values()) - len(seen), max(seen.values() or [0]), differ,
    json.dumps(where)))
PY
}

# wait_arrived DIR - until every message of DIR reached the sink (bounded: 120 s)
wait_arrived() {
	local i
	for i in $(seq 600); do
		[ "$(arrived "$1" | jq '.arrived == .want')" = true ] && return 0
		image_running "$C" || return 1
		sleep 0.2
	done
	return 1
}

mailbox() {	# JQ - a question about the emulator's mailbox
	emu GET /mailstore | jq -r "$1"
}

# passes N - until the fetch daemon logged N more completed passes (bounded: 60 s)
passes() {
	local i want
	want=$(( $(image_logs "$C" /dev/stdout | grep -c 'btprelay-fetch\[[0-9]*\]: MAIL_IMAPS: pass complete') + $1 ))
	for i in $(seq 300); do
		[ "$(image_logs "$C" /dev/stdout | grep -c 'btprelay-fetch\[[0-9]*\]: MAIL_IMAPS: pass complete')" -ge "$want" ] && return 0
		sleep 0.2
	done
	return 1
}

# --- 1. delete ---------------------------------------------------------------
mail "$WORK/m1" 1 12
emu POST /mailstore "{\"clear\":true,\"load_dir\":\"$WORK/m1\"}" >/dev/null
start_relay
image_logs "$C" "$WORK/log/start-1.log"
grep -q '^btprelay: started: .*, fetch MAIL_IMAPS every 5 s$' "$WORK/log/start-1.log"
tap_ok $? "$SCEN: the start line names the fetch" "$(grep '^btprelay' "$WORK/log/start-1.log")"
wait_arrived "$WORK/m1"
a=$(arrived "$WORK/m1")
jq -e '.arrived == 12 and .extra == 0 and .differ == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: delete: 12 messages (8-bit, dot lines, 1 MB) arrived once each, byte for byte" "$a"
passes 1
n=$(mailbox '.messages | length')
[ "$n" = 0 ]
tap_ok $? "$SCEN: delete: the mailbox is empty" "$n left"
image_logs "$C" "$WORK/log/stdout-1.log"
n=$(grep -c "^[A-Z][a-z][a-z] [0-9][0-9] [0-9:]\{8\} [^ ]* btprelay-fetch\[[0-9]*\]: MAIL_IMAPS: uid=.*, to=<inbox@corp.example>, mta=127\.0\.0\.1:$SMTP_PORT, .*status=sent (250 .*done=deleted" "$WORK/log/stdout-1.log")
[ "$n" = 12 ]
tap_ok $? "$SCEN: stdout has btprelay-fetch's line for each, with Postfix's 250" "$n lines; $(grep 'btprelay-fetch' "$WORK/log/stdout-1.log" | tail -3)"
n=$(grep -c "postfix/lmtp\[[0-9]*\]: [0-9A-Za-z]*: to=<inbox@corp.example>, relay=.*btprelay-lmtp.*status=sent" "$WORK/log/stdout-1.log")
[ "$n" = 12 ]
tap_ok $? "$SCEN: and Postfix's status=sent line for each (relayed through btprelay-lmtp)" "$n lines"
out=$(pdm exec "$C" stat -c '%a %U' /var/spool/postfix/btprelay-fetch/MAIL_IMAPS.state 2>&1)
[ "$out" = "600 btprelay" ]
tap_ok $? "$SCEN: the state file is on the queue volume, 0600, btprelay's" "$out"
stop_relay

# --- 3. keep, across restarts ---------------------------------------------------
mail "$WORK/m2" 101 108
emu POST /mailstore "{\"append_dir\":\"$WORK/m2\"}" >/dev/null
start_relay -e BTPRELAY_FETCH_DONE=keep
wait_arrived "$WORK/m2"
passes 1
a=$(arrived "$WORK/m2")
jq -e '.arrived == 8 and .extra == 0 and .differ == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: keep: 8 new messages arrived once each, byte for byte" "$a"
out=$(mailbox '[.messages[] | select(.flags | index("\\Seen"))] | length')
[ "$out" = 8 ] && [ "$(mailbox '.messages | length')" = 8 ]
tap_ok $? "$SCEN: keep: they stay on the server, flagged \\Seen" "$(mailbox '.messages')"
stop_relay
start_relay -e BTPRELAY_FETCH_DONE=keep
mail "$WORK/m3" 201 203
emu POST /mailstore "{\"append_dir\":\"$WORK/m3\"}" >/dev/null
wait_arrived "$WORK/m3"
passes 2
a=$(arrived "$WORK/m2")
jq -e '.arrived == 8 and .extra == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: after a restart none of the kept messages was handed over again" "$a"
a=$(arrived "$WORK/m3")
jq -e '.arrived == 3 and .extra == 0 and .differ == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: and the mail added after the restart arrived once each" "$a"
a=$(arrived "$WORK/m1")
jq -e '.arrived == 12 and .extra == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: nothing of the first round came twice either" "$a"

# --- 4. the fetch daemon killed ---------------------------------------------------
SCEN="fetch daemon killed"
image_kill_supervised "$C" fetch
rc=$?
image_logs "$C" "$WORK/log/stdout-kill.log"
[ "$rc" = 0 ] && grep -q '^btprelay: warning: fetch ended (status 137); starting it again in 1 s$' "$WORK/log/stdout-kill.log"
tap_ok $? "$SCEN: started again, with a warning (pid $OLD_PID, now ${NEW_PID:-none})" "$(grep '^btprelay' "$WORK/log/stdout-kill.log" | tail -3)"
mail "$WORK/m4" 301 302
emu POST /mailstore "{\"append_dir\":\"$WORK/m4\"}" >/dev/null
wait_arrived "$WORK/m4"
a=$(arrived "$WORK/m4")
jq -e '.arrived == 2 and .extra == 0 and .differ == 0' <<< "$a" >/dev/null
tap_ok $? "$SCEN: the next messages arrive once each" "$a"
out=$(pdm exec "$C" /usr/libexec/btprelay/health ready 2>&1)
tap_ok $? "$SCEN: the container stayed ready" "$out"
SCEN="fetch from the environment"
stop_relay
expect_no_secret_encodings "$WORK"/log/stdout-*.log

# --- 5. configuration -------------------------------------------------------------
SCEN="fetch configuration"
# bad_fetch NAME REGEX [podman-run-args...] - exit 78 and one line matching REGEX
bad_fetch() {
	local name=$1 re=$2 c=btprelay-test-$$-fetchbad$TAP_N rc out
	shift 2
	image_run "$c" -v "$WORK/bindings:/bindings:ro" -e SERVICE_BINDING_ROOT=/bindings \
		--tmpfs /var/spool/postfix:rw,size=16m,mode=755 -e BTPRELAY_ROUTES=corp.example=X \
		-e BTPRELAY_FETCH_SOURCES=MAIL_IMAPS "$@"
	rc=$(image_exit_code "$c")
	out=$(image_logs "$c" /dev/stdout)
	[ "$rc" = 78 ] && [ "$(printf '%s\n' "$out" | grep -c .)" = 1 ] && printf '%s\n' "$out" | grep -q -- "$re"
	tap_ok $? "$SCEN: $name: exit 78 and one line /$re/" "exit $rc: $out"
}
bad_fetch "no recipient" '^btprelay: fatal: BTPRELAY_FETCH_RECIPIENT: "" is not an address'
bad_fetch "bad done policy" '^btprelay: fatal: BTPRELAY_FETCH_DONE: "archive" is none of delete, move, keep' \
	-e BTPRELAY_FETCH_RECIPIENT=inbox@corp.example -e BTPRELAY_FETCH_DONE=archive
bad_fetch "move without a folder" '^btprelay: fatal: BTPRELAY_FETCH_MOVE_FOLDER: BTPRELAY_FETCH_DONE=move needs' \
	-e BTPRELAY_FETCH_RECIPIENT=inbox@corp.example -e BTPRELAY_FETCH_DONE=move
bad_fetch "smtpd not on 127.0.0.1" '^btprelay: fatal: BTPRELAY_INET_INTERFACES: "127.0.0.2" leaves out 127.0.0.1' \
	-e BTPRELAY_FETCH_RECIPIENT=inbox@corp.example -e BTPRELAY_INET_INTERFACES=127.0.0.2
start_relay -e BTPRELAY_FETCH_HOST=relay-elsewhere
image_logs "$C" "$WORK/log/stdout-host.log"
grep -q '^btprelay: BTPRELAY_FETCH_SOURCES: not fetched here: BTPRELAY_FETCH_HOST is relay-elsewhere' "$WORK/log/stdout-host.log" &&
	! pdm exec "$C" test -e /run/btprelay/fetch.pid
tap_ok $? "$SCEN: BTPRELAY_FETCH_HOST names another host: no fetch daemon here" "$(grep '^btprelay' "$WORK/log/stdout-host.log")"
pdm stop -t 30 "$C" >/dev/null 2>&1
tap_done
