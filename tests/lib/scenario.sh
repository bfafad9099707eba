# scenario.sh - assertions for integration tests (bash, sourced after harness.sh).
# Each expect_* prints TAP lines through tap_ok; SCEN names the scenario and
# MARK is a unique word put into the scenario's message, to find it at the relay.

SCEN_N=0
scenario() {	# NAME: reset the emulator, cold caches, drop leftovers of earlier scenarios
	SCEN=$1
	SCEN_N=$((SCEN_N + 1))
	MARK="btprelay-test-$SCEN_N-$RANDOM$RANDOM"
	echo "# --- $SCEN"
	emu POST /reset >/dev/null || echo "# emulator reset failed"
	cache_clear
	postsuper -c "$PF" -d ALL deferred >/dev/null 2>&1
}

# expect_status QID RCPT STATUS [REGEX...] - the delivery's maillog line has the
# status and matches every regex (grep basic regular expressions)
expect_status() {
	local qid=$1 rcpt=$2 status=$3 line re
	shift 3
	line=$(wait_status "$qid" "$rcpt" "$status")
	tap_ok $? "$SCEN: <$rcpt> status=$status" "$line"
	for re in "$@"; do
		printf '%s\n' "$line" | grep -q -- "$re"
		tap_ok $? "$SCEN: <$rcpt> log says /$re/" "$line"
	done
}

# relay_files - the .eml files at the relay that carry this scenario's MARK
relay_files() {
	grep -l -F -- "$MARK" "$EMU"/messages/*.eml 2>/dev/null
}

# expect_relay COUNT [JQ-EXPR...] - COUNT messages arrived; each envelope satisfies every expression
expect_relay() {
	local want=$1 files n f expr
	shift
	files=$(relay_files)
	n=$(printf '%s' "$files" | grep -c .)
	[ "$n" = "$want" ]
	tap_ok $? "$SCEN: $want message(s) at the relay" "got $n"
	for expr in "$@"; do
		local bad=0
		for f in $files; do
			jq -e "$expr" "${f%.eml}.json" >/dev/null || { bad=1; cat "${f%.eml}.json"; }
		done > "$WORK/jq.out"
		tap_ok $bad "$SCEN: relay envelope: $expr" "$(cat "$WORK/jq.out")"
	done
}

# expect_body FILE - the body at the relay is FILE's body with CRLF line ends, byte for
# byte, plus the CRLF that swaks sends after a --data file before "." CRLF
expect_body() {
	local f diag
	f=$(relay_files | head -1)
	diag=$(python3 - "$f" "$1" 2>&1 <<'PY'
import sys
got = open(sys.argv[1], "rb").read().split(b"\r\n\r\n", 1)[1]
want = open(sys.argv[2], "rb").read().split(b"\n\n", 1)[1].replace(b"\n", b"\r\n") + b"\r\n"
if got != want:
    i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
    print("body differs at byte %d: got %r, want %r (lengths %d, %d)" % (i, got[i:i+40], want[i:i+40], len(got), len(want)))
    sys.exit(1)
PY
)
	tap_ok $? "$SCEN: body arrived byte for byte (CRLF, dots unstuffed)" "$diag"
}

# expect_recovery QID RCPT - clear the faults, flush: delivered, and exactly once
expect_recovery() {
	local line
	emu POST /faults/clear >/dev/null
	emu POST /relay '{"cert":"relay"}' >/dev/null
	flush_queue
	line=$(wait_status "$1" "$2" sent)
	tap_ok $? "$SCEN: <$2> delivered after the fault cleared" "$line"
	expect_relay 1
}

# expect_delay_below QID RCPT SECONDS - the delivery agent's share of the delay (delays=a/b/c/d: d)
expect_delay_below() {
	local line d
	line=$(wait_status "$1" "$2")
	d=$(printf '%s\n' "$line" | sed -n 's/.*delays=[^/]*\/[^/]*\/[^/]*\/\([0-9.]*\).*/\1/p')
	python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "${d:-999}" "$3"
	tap_ok $? "$SCEN: gave up after ${d:-?}s, below the ${3}s bound" "$line"
}

# expect_no_secrets FILE... - none of the emulator's secrets (client secrets,
# relay passwords, issued tokens) appears in any of the files, in any form
# (secret_scan: raw, base64, the AUTH arguments, URL-encoded, JSON-escaped)
expect_no_secrets() {
	local n out rc
	n=$(grep -c . "$EMU/secrets.txt")
	[ "$n" -ge 4 ]
	tap_ok $? "$SCEN: secrets to look for: $n (client secrets, passwords, tokens)"
	out=$(secret_scan "$@")
	rc=$?
	[ "$rc" = 0 ]
	tap_ok $? "$SCEN: no secret found in $# files, in any encoding" "exit $rc: $out"
}
