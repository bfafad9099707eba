#!/bin/bash
# test-milter.sh - btprelay-milter in front of a real Postfix (smtpd_milters),
# with swaks, smtp-source and the BTP emulator: the acceptance points of
# issue #4. Refusals are asserted on the SMTP client's replies, the maillog
# and the queue; deliveries on what the relay stored; the load on the
# emulator's Destination Service counter. Nothing here is timed.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init milter
command -v smtp-source >/dev/null 2>&1 || harness_skip "smtp-source not installed (package postfix)"
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
MILTER_BIN=$top_builddir/plugin/milter/btprelay-milter
[ -x "$MILTER_BIN" ] || { echo "Bail out! $MILTER_BIN not built"; exit 99; }
LOAD_SESSIONS=${LOAD_SESSIONS:-200}

harness_start_emulator
harness_install_transport \
	"milter_sender_policy = rewrite" \
	"milter_trace_header = yes" \
	"milter_lookup_timeout = 3" \
	"milter_cache_ttl = 300" \
	"milter_negative_ttl = 60"
harness_start_postfix m_missing m_outage m_good m_load
. "$top_srcdir/tests/lib/scenario.sh"

# The milter: socket opened as root, then user btprelay; the socket must be
# writable by Postfix's smtpd (user postfix), hence the umask.
harness_start_milter ||
	{ echo "Bail out! btprelay-milter did not start: $(cat "$WORK/log/milter.stderr")"; exit 99; }
postconf -c "$PF" -e "smtpd_milters = unix:$MILTER_SOCK" "milter_default_action = tempfail" \
	"non_smtpd_milters =" >/dev/null
postfix -c "$PF" reload >/dev/null 2>&1

# swaks_rcpt TO - one SMTP session; prints swaks' transcript
swaks_rcpt() {
	swaks --server "127.0.0.1:$SMTP_PORT" --from app@client.test --to "$1" --helo client.test \
		--header "Subject: $MARK" 2>&1 | tee -a "$WORK/log/swaks.log"
}

# queued_for RCPT - how many queued messages have that recipient (distinct queue ids:
# showq can list a message twice while it moves from one queue to another)
queued_for() {
	postqueue -c "$PF" -j 2>/dev/null |
		jq -r --arg r "$1" 'select(any(.recipients[]; .address == $r)) | .queue_id' | sort -u | grep -c .
}

# --- not found: 550 at RCPT, nothing queued -----------------------------------
scenario "missing destination: 550 5.1.2 at RCPT"
out=$(swaks_rcpt user@m_missing.dest.test)
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 destination <m_missing> does not exist'
tap_ok $? "$SCEN: the client got 550 5.1.2 naming the destination" "$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
printf '%s\n' "$out" | grep -q 'queued as'
tap_ok $((! $?)) "$SCEN: the message was not accepted"
# postlog writes the line a moment after the client saw the reply: wait up to 5 s
for _ in $(seq 50); do
	grep -q "NOQUEUE: milter-reject: RCPT from .*550 5\.1\.2 destination <m_missing> does not exist.*to=<user@m_missing.dest.test>" "$WORK/log/maillog" && break
	sleep 0.1
done
grep -q "NOQUEUE: milter-reject: RCPT from .*550 5\.1\.2 destination <m_missing> does not exist.*to=<user@m_missing.dest.test>" "$WORK/log/maillog"
tap_ok $? "$SCEN: Postfix logged the milter's reject" "$(grep milter "$WORK/log/maillog" | tail -3)"
[ "$(queued_for user@m_missing.dest.test)" = 0 ]
tap_ok $? "$SCEN: nothing in the queue"

# --- Destination Service down: 451 at RCPT ------------------------------------
scenario "Destination Service hangs: 451 4.4.3 within milter_lookup_timeout"
emu POST /faults '{"destination":"timeout"}' >/dev/null
out=$(swaks_rcpt user@m_outage.dest.test)
emu POST /faults/clear >/dev/null
printf '%s\n' "$out" | grep -q '<\*\* 451 4\.4\.3 destination <m_outage> cannot be looked up now'
tap_ok $? "$SCEN: the client got 451 4.4.3" "$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
grep -q "milter" "$WORK/log/maillog" && ! grep -q "warning: milter unix:$MILTER_SOCK" "$WORK/log/maillog"
tap_ok $? "$SCEN: the milter answered itself (no Postfix milter timeout or error)" \
	"$(grep 'warning: milter' "$WORK/log/maillog" | tail -3)"
[ "$(queued_for user@m_outage.dest.test)" = 0 ]
tap_ok $? "$SCEN: nothing in the queue"

scenario "not routed to btprelay: untouched, even with the Destination Service down"
emu POST /faults '{"destination":"refuse"}' >/dev/null
out=$(swaks_rcpt user@elsewhere.test)
emu POST /faults/clear >/dev/null
printf '%s\n' "$out" | grep -q 'queued as'
tap_ok $? "$SCEN: accepted (default_transport discard:, no lookup)" "$(printf '%s\n' "$out" | tail -5)"

# --- found: delivered, sender rewritten, trace header --------------------------
scenario "good destination: delivered with the destination's sender"
dest_clone m_good MAIL_INTERNET "mail.smtp.from=noreply@good.example"
q=$(send_mail app@client.test user@m_good.dest.test --header "Subject: $MARK")
[ -n "$q" ]
tap_ok $? "$SCEN: accepted at SMTP time (queue id ${q:-none})"
expect_status "$q" user@m_good.dest.test sent 'dsn=2.0.0'
expect_relay 1 '.mail_from == "noreply@good.example"' '.rcpt_to == ["user@m_good.dest.test"]'
grep -q -i '^X-BTPRelay-Destination: m_good' $(relay_files | head -1) 2>/dev/null
tap_ok $? "$SCEN: trace header X-BTPRelay-Destination: m_good"
grep -q "milter: from=<app@client.test> rewritten to <noreply@good.example> (destination m_good)" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: the milter logged the rewrite" "$(grep 'milter' "$BTPRELAY_LOG" | tail -3)"

# --- btprelay-lmtp routes: lmtp to the service btprelay-lmtp-NAME ----------------
scenario "LMTP routes: the destination is the service's name after btprelay-lmtp-"
printf '/(^|@)lmtp-missing\\.example$/\tlmtp:unix:private/btprelay-lmtp-MAIL_MISSING\n' >> "$PF/transport.regexp"
postfix -c "$PF" reload >/dev/null 2>&1
sleep 1
out=$(swaks_rcpt user@lmtp-missing.example)
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 destination <MAIL_MISSING> does not exist'
tap_ok $? "$SCEN: lmtp:unix:private/btprelay-lmtp-MAIL_MISSING: 550 5.1.2 at RCPT" \
	"$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
q=$(send_mail app@client.test user@lmtp.example --header "Subject: $MARK")
[ -n "$q" ]
tap_ok $? "$SCEN: lmtp:unix:private/btprelay-lmtp-MAIL_ONPREM: accepted at SMTP time"
STATUS_AGENT=lmtp expect_status "$q" user@lmtp.example sent 'dsn=2.0.0'
grep -q -i '^X-BTPRelay-Destination: MAIL_ONPREM' $(relay_files | head -1) 2>/dev/null
tap_ok $? "$SCEN: trace header X-BTPRelay-Destination: MAIL_ONPREM"

# --- load: one Destination Service lookup for a burst ---------------------------
scenario "load: $LOAD_SESSIONS concurrent SMTP sessions to one destination"
dest_clone m_load MAIL_INTERNET
# keep the burst in the queue: only the milter's lookups count
postconf -c "$PF" -e "defer_transports = btprelay" >/dev/null
postfix -c "$PF" reload >/dev/null 2>&1
sleep 1
before=$(emu GET /counters | jq '.find_requests // 0')
mark=$(wc -l < "$WORK/log/maillog")
timeout 300 smtp-source -s "$LOAD_SESSIONS" -m "$LOAD_SESSIONS" -f app@client.test \
	-t user@m_load.dest.test -M mta.btprelay.test "127.0.0.1:$SMTP_PORT" > "$WORK/log/smtp-source.log" 2>&1
rc=$?
after=$(emu GET /counters | jq '.find_requests // 0')
tap_ok $rc "$SCEN: smtp-source finished every session" "$(tail -5 "$WORK/log/smtp-source.log")"
n=$(queued_for user@m_load.dest.test)
[ "$n" = "$LOAD_SESSIONS" ]
tap_ok $? "$SCEN: all $LOAD_SESSIONS messages accepted" "queued: $n"
[ $((after - before)) -ge 1 ] && [ $((after - before)) -le 2 ]
tap_ok $? "$SCEN: Destination Service find requests within the cache's allowance (<= 2)" \
	"find_requests: $before -> $after"
tail -n +"$((mark + 1))" "$WORK/log/maillog" > "$WORK/log/maillog.load"
! grep -q "warning: milter\|milter-reject\|milter-tempfail" "$WORK/log/maillog.load" &&
	! grep -q "error\|fatal" "$WORK/log/smtp-source.log"
tap_ok $? "$SCEN: no session hit a milter timeout, error or refusal" \
	"$(grep 'warning: milter\|milter-reject' "$WORK/log/maillog.load" | tail -3; tail -3 "$WORK/log/smtp-source.log")"
c=$(grep -c "to=<user@m_load.dest.test>, destination=m_load, result=found" "$BTPRELAY_LOG")
[ "$c" = "$LOAD_SESSIONS" ]
tap_ok $? "$SCEN: the milter decided every recipient" "decisions logged: $c"
postsuper -c "$PF" -d ALL >/dev/null 2>&1
postconf -c "$PF" -e "defer_transports =" >/dev/null
postfix -c "$PF" reload >/dev/null 2>&1

# --- reload and stop ----------------------------------------------------------
scenario "SIGHUP reloads; SIGTERM stops and removes the socket"
kill -HUP "$MILTER_PID"
for i in $(seq 50); do grep -q "configuration reloaded" "$BTPRELAY_LOG" && break; sleep 0.1; done
grep -q "configuration reloaded" "$BTPRELAY_LOG" && kill -0 "$MILTER_PID" 2>/dev/null
tap_ok $? "$SCEN: reloaded, still running"
[ "$(cat "$MILTER_DIR/pid" 2>/dev/null)" = "$MILTER_PID" ]
tap_ok $? "$SCEN: pid file names the process"
[ "$(stat -c %U /proc/"$MILTER_PID" 2>/dev/null)" = "$TRANSPORT_USER" ]
tap_ok $? "$SCEN: runs as $TRANSPORT_USER"
kill -TERM "$MILTER_PID"
wait "$MILTER_PID"
rc=$?
MILTER_PID=
[ "$rc" = 0 ] && [ ! -e "$MILTER_SOCK" ]
tap_ok $? "$SCEN: clean stop (exit $rc), socket removed"

# A SIGHUP (a reload) that arrives while the milter starts must not kill it
# half-started (SIGHUP's default action): the milter blocks it from the start of
# main(), and serve()'s sigwait() takes it once it runs. Shown on a milter held in
# start-up, waiting for a configuration file that is a FIFO with no writer.
scenario "SIGHUP during start-up: blocked until it can be a reload"
python3 - "$MILTER_BIN" "$MILTER_DIR" > "$WORK/early-hup.out" 2>&1 <<'PY'
import os, signal, subprocess, sys, time
prog, workdir = sys.argv[1:]
fifo = os.path.join(workdir, "start.conf")
os.mkfifo(fifo, 0o644)
p = subprocess.Popen([prog, "-f", "-c", fifo, "-p", "unix:" + os.path.join(workdir, "start.sock")],
                     stderr=subprocess.DEVNULL)
blocked = False
for _ in range(300):              # until it runs its own code (or 3 s)
    try:
        sigblk = [l for l in open("/proc/%d/status" % p.pid) if l.startswith("SigBlk")][0]
        if int(sigblk.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
            blocked = True
            break
    except (OSError, IndexError):
        pass
    time.sleep(0.01)
alive = p.poll() is None
p.kill()
p.wait()
os.unlink(fifo)
print("blocked" if blocked and alive else "not blocked (alive: %s)" % alive)
PY
grep -q '^blocked$' "$WORK/early-hup.out"
tap_ok $? "$SCEN: SIGHUP is blocked while start-up waits for the configuration" "$(cat "$WORK/early-hup.out")"

tap_done
