#!/bin/bash
# test-milter-robust.sh - btprelay-milter against a hostile or careless
# neighbour (issue 13, defects 3 and 4), without an MTA:
#  - a storm of SIGHUPs (reload requests) never stops it: only its main
#    thread can take SIGHUP (libmilter's signal thread, which stops the
#    milter on SIGHUP, never waits for it), and after the storm it answers;
#  - macro packets that are not name/value pairs (libmilter's
#    smfi_getsymval() would walk past the end of the array) are answered
#    451 4.7.0, nothing of them is used, and the milter keeps serving;
#  - a changed bindings or destinations file is in force without a signal
#    (issue 17, finding 4).
# The milter runs with glibc's malloc perturbation, so that a read past an
# array meets filled memory instead of zeroes. The MTA side is
# tests/milter/rawmilter.py. Nothing here is timed.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
. "$top_srcdir/tests/lib/harness.sh"
MILTER=$top_builddir/plugin/milter/btprelay-milter
RAW=$top_srcdir/tests/milter/rawmilter.py
STORM=${STORM:-5000}
command -v python3 >/dev/null 2>&1 || harness_skip "python3 not installed"
[ -x "$MILTER" ] || { echo "Bail out! $MILTER not built"; exit 99; }

WORK=$(mktemp -d /tmp/btprelay-milter-robust.XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
	if [ -n "${KEEP_WORK:-}" ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cat > "$WORK/destinations.json" <<'JSON'
[{"Name":"MAIL_OK","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1",
  "mail.smtp.port":"2525"}]
JSON
echo '{}' > "$WORK/bindings.json"
chmod 600 "$WORK/destinations.json" "$WORK/bindings.json"
cat > "$WORK/btprelay.conf" <<EOF
bindings_file = $WORK/bindings.json
destinations_file = $WORK/destinations.json
milter_socket = unix:$WORK/milter.sock
log = $WORK/milter.log
log_level = debug
EOF
LOG=$WORK/milter.log
MALLOC_PERTURB_=165 "$MILTER" -f -c "$WORK/btprelay.conf" 2> "$WORK/milter.stderr" &
PID=$!
for _ in $(seq 100); do
	[ -S "$WORK/milter.sock" ] && break
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$WORK/milter.sock" ] || { echo "Bail out! btprelay-milter did not start: $(cat "$WORK/milter.stderr")"; exit 99; }

# raw STEP... - one milter session; its transcript in $WORK/raw.out
raw() {
	python3 "$RAW" "unix:$WORK/milter.sock" "$@" > "$WORK/raw.out" 2>&1
}
ok_macros="{rcpt_mailer}=btprelay,{rcpt_host}=MAIL_OK,i=4ABCDE"
missing_macros="{rcpt_mailer}=btprelay,{rcpt_host}=MAIL_MISSING,i=4ABCDF"

# --- SIGHUP --------------------------------------------------------------------
# /proc/PID/task/*/status SigBlk: a thread in sigwait has the signals it waits
# for unblocked; every other thread of a milter that cannot lose SIGHUP blocks it.
takers() {
	local t n=0
	for t in /proc/"$PID"/task/*; do
		[ $(( 0x$(sed -n 's/^SigBlk:[[:space:]]*//p' "$t/status") & 1 )) = 0 ] && n=$((n + 1))
	done
	echo "$n"
}
tasks=$(ls /proc/"$PID"/task | wc -l)
[ "$tasks" -ge 3 ] && [ "$(takers)" = 1 ] && [ "$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/"$PID"/status)" = 0000000000000000 ]
tap_ok $? "SIGHUP: of $tasks threads only the main one (waiting for it) can take it" \
	"$(grep -H SigBlk /proc/"$PID"/task/*/status)"

python3 - "$PID" "$STORM" > "$WORK/storm.out" 2>&1 <<'PY'
import os, signal, sys, time
pid, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print("gone after %d signals" % i)
        sys.exit(1)
    time.sleep(0.0005)
print("sent %d" % n)
PY
tap_ok $? "SIGHUP storm: $STORM reload requests delivered, the process stayed" "$(cat "$WORK/storm.out")"
# the last request is served once a reload line follows it: wait for the log to settle
for _ in $(seq 100); do
	a=$(grep -c "configuration reloaded" "$LOG"); sleep 0.2
	[ "$a" = "$(grep -c "configuration reloaded" "$LOG")" ] && break
done
kill -0 "$PID" 2>/dev/null && ! grep -q "libmilter stopped on its own" "$LOG" &&
	[ "$(grep -c "configuration reloaded" "$LOG")" -ge 1 ]
tap_ok $? "SIGHUP storm: still running, reloaded ($(grep -c "configuration reloaded" "$LOG") reloads, requests coalesce), never stopped" \
	"$(tail -3 "$LOG")"
raw mail:app@client.test "macros:R:$ok_macros" rcpt:a@corp.example \
	"macros:R:$missing_macros" rcpt:b@corp.example
grep -qx 'rcpt:a@corp.example -> continue' "$WORK/raw.out" &&
	grep -qx 'rcpt:b@corp.example -> reply 550 5.1.2 destination <MAIL_MISSING> does not exist.*' "$WORK/raw.out"
tap_ok $? "SIGHUP storm: afterwards it answers (found: continue; missing: 550 5.1.2)" "$(cat "$WORK/raw.out")"

# --- malformed macro packets --------------------------------------------------------
# hexs STRING... - each string NUL-terminated, as hex
hexs() {
	local s
	for s in "$@"; do printf '%s\0' "$s"; done | od -An -v -tx1 | tr -d ' \n'
}
# case NAME STAGE HEX - a session with a bad macro packet for STAGE before its RCPT
bad_case() {
	local name=$1 stage=$2 hex=$3 mark
	mark=$(grep -c "malformed macros from the MTA" "$LOG")
	if [ "$stage" = R ]; then
		raw mail:app@client.test "macro:R:$hex" rcpt:a@corp.example \
			"macros:R:$missing_macros" rcpt:b@corp.example
	else
		raw "macro:$stage:$hex" mail:app@client.test "macros:R:$ok_macros" rcpt:a@corp.example
	fi
	grep -qx 'rcpt:a@corp.example -> reply 451 4.7.0 malformed milter macros from the MTA' "$WORK/raw.out" &&
		[ "$(grep -c "malformed macros from the MTA" "$LOG")" -gt "$mark" ] &&
		kill -0 "$PID" 2>/dev/null
	tap_ok $? "bad macros: $name: 451 4.7.0, logged, still running" "$(cat "$WORK/raw.out"; tail -2 "$LOG")"
	if [ "$stage" = R ]; then
		grep -qx 'rcpt:b@corp.example -> reply 550 5.1.2 destination <MAIL_MISSING> does not exist.*' "$WORK/raw.out"
		tap_ok $? "bad macros: $name: the next recipient with whole macros is decided as usual" \
			"$(cat "$WORK/raw.out")"
	fi
}
# three strings: the routing pair, then a name without value; {rcpt_host} is looked
# up past the end of libmilter's array
bad_case "RCPT, odd count (name without value)" R "$(hexs '{rcpt_mailer}' btprelay x)"
bad_case "RCPT, one empty string" R "00"
bad_case "RCPT, last string without its NUL" R "$(hexs '{rcpt_mailer}' btprelay)$(printf '{rcpt_host}' | od -An -v -tx1 | tr -d ' \n')"
bad_case "RCPT, a value with a line break" R "$(hexs '{rcpt_mailer}' btprelay '{rcpt_host}' "$(printf 'MAIL_OK\r\nX')")"
bad_case "MAIL stage, odd count, then whole RCPT macros" M "$(hexs i 4ABC '{mail_addr}')"
# one session, many odd packets of different sizes (different malloc sizes)
steps=(mail:app@client.test)
for n in 1 3 5 7 9 11 13 15 17 19 21 23 25 27 29 31; do
	strs=()
	for i in $(seq "$n"); do strs+=("n$i"); done
	steps+=("macro:R:$(hexs "${strs[@]}")" "rcpt:r$n@corp.example")
done
raw "${steps[@]}"
[ "$(grep -c -- '-> reply 451 4.7.0 malformed milter macros from the MTA' "$WORK/raw.out")" = 16 ] &&
	kill -0 "$PID" 2>/dev/null
tap_ok $? "bad macros: 1 to 31 strings (odd) in one session: every recipient 451, still running" \
	"$(cat "$WORK/raw.out")"
raw mail:app@client.test "macros:R:$ok_macros" rcpt:a@corp.example
grep -qx 'rcpt:a@corp.example -> continue' "$WORK/raw.out"
tap_ok $? "after the bad packets a new session is decided as usual" "$(cat "$WORK/raw.out")"

# --- changed files are noticed without a signal (issue 17, finding 4) -------------
# until_answer WANT STEP... - sessions until RCPT gets WANT (the milter looks at the
# files every few seconds; up to 30 s)
until_answer() {
	local want=$1 i
	shift
	for i in $(seq 60); do
		raw "$@"
		grep -qx -- "$want" "$WORK/raw.out" && return 0
		sleep 0.5
	done
	return 1
}
hups=$(grep -c "configuration reloaded" "$LOG")
# the destinations file gains MAIL_NEW (written beside, then renamed, as editors do)
sed 's/^\[/[{"Name":"MAIL_NEW","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1","mail.smtp.port":"2526"},/' \
	"$WORK/destinations.json" > "$WORK/destinations.json.new"
chmod 600 "$WORK/destinations.json.new"
new_macros="{rcpt_mailer}=btprelay,{rcpt_host}=MAIL_NEW,i=4ABCE0"
raw mail:app@client.test "macros:R:$new_macros" rcpt:n@corp.example
grep -qx 'rcpt:n@corp.example -> reply 550 5.1.2 destination <MAIL_NEW> does not exist.*' "$WORK/raw.out"
tap_ok $? "files: before the change MAIL_NEW is not found (and the answer is cached)" "$(cat "$WORK/raw.out")"
mv "$WORK/destinations.json.new" "$WORK/destinations.json"
until_answer 'rcpt:n@corp.example -> continue' mail:app@client.test "macros:R:$new_macros" rcpt:n@corp.example
tap_ok $? "files: a changed destinations file is in force without SIGHUP (MAIL_NEW found)" \
	"$(cat "$WORK/raw.out"; tail -3 "$LOG")"
grep -q "$WORK/destinations.json changed: reloading" "$LOG"
tap_ok $? "files: the milter logged which file changed" "$(tail -3 "$LOG")"
# the bindings file gains a destination binding whose token service refuses
# connections: MAIL_MISSING goes from "not found" (550) to "cannot be looked up" (451)
cat > "$WORK/bindings.json" <<'JSON'
{"destination":[{"name":"dest","label":"destination","credentials":{"clientid":"c",
 "clientsecret":"s","url":"https://127.0.0.1:1","uri":"https://127.0.0.1:1"}}]}
JSON
until_answer 'rcpt:b@corp.example -> reply 451 4.4.3 destination <MAIL_MISSING> cannot be looked up now.*' \
	mail:app@client.test "macros:R:$missing_macros" rcpt:b@corp.example
tap_ok $? "files: a bindings file rewritten in place is in force without SIGHUP (Destination Service now asked)" \
	"$(cat "$WORK/raw.out"; tail -3 "$LOG")"
grep -q "$WORK/bindings.json changed: reloading" "$LOG"
tap_ok $? "files: logged as a change of the bindings file" "$(tail -3 "$LOG")"
# a broken bindings file is refused once, and the running policy stays
echo '{"destination": [' > "$WORK/bindings.json"
# (the file is looked at on the request path, at most every few seconds: ask until it is)
for _ in $(seq 60); do
	raw mail:app@client.test "macros:R:$ok_macros" rcpt:a@corp.example
	grep -q "reload failed" "$LOG" && break
	sleep 0.5
done
grep -q "reload failed, keeping the running configuration" "$LOG" && kill -0 "$PID" 2>/dev/null &&
	raw mail:app@client.test "macros:R:$missing_macros" rcpt:b@corp.example &&
	grep -qx 'rcpt:b@corp.example -> reply 451 4.4.3 destination <MAIL_MISSING> cannot be looked up now.*' "$WORK/raw.out"
tap_ok $? "files: a broken bindings file is logged and the running configuration stays" \
	"$(cat "$WORK/raw.out"; grep 'reload failed' "$LOG" | tail -2)"
sleep 4
raw mail:app@client.test "macros:R:$ok_macros" rcpt:a@corp.example
[ "$(grep -c "reload failed" "$LOG")" = 1 ]
tap_ok $? "files: the broken file is not tried again until it changes" "$(grep 'reload failed' "$LOG")"

kill -TERM "$PID"
wait "$PID"
rc=$?
PID=
[ "$rc" = 0 ]
tap_ok $? "SIGTERM: clean stop (exit $rc)" "$(tail -3 "$LOG")"
tap_done
