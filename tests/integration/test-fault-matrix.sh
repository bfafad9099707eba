#!/bin/bash
# test-fault-matrix.sh - one delivery through a real Postfix per row of
# tests/fault-matrix.txt: the fault is injected into the emulator, the
# maillog line must carry the row's status, code and text; then the fault is
# cleared, the queue flushed, and the relay must hold exactly the row's copies.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init matrix
MATRIX=$top_srcdir/tests/fault-matrix.txt
names=()
while IFS= read -r row; do
	case "$row" in ''|'#'*) continue ;; esac
	names+=("$(printf 'fm%02d' $((${#names[@]} + 1)))")
done < "$MATRIX"
harness_start_emulator
# Short timeouts keep the hanging rows quick; no HTTP retries, so each row shows one fault.
harness_install_transport "smtp_connect_timeout = 2" "smtp_command_timeout = 2" \
	"smtp_data_done_timeout = 3" "http_timeout = 2" "http_retries = 0"
harness_start_postfix "${names[@]}"
# Deferred mail waits for the explicit flush at the end: no retry may meet another row's fault.
postconf -c "$PF" -e minimal_backoff_time=3600s maximal_backoff_time=3600s queue_run_delay=3600s
postfix -c "$PF" reload >/dev/null 2>&1
. "$top_srcdir/tests/lib/scenario.sh"
emu POST /reset >/dev/null

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

i=0
declare -A QID COPIES STATUS
while IFS= read -r row; do
	case "$row" in ''|'#'*) continue ;; esac
	IFS='|' read -r step inject status dsn text copies <<< "${row// | /|}"
	step=$(trim "$step"); inject=$(trim "$inject"); status=$(trim "$status")
	dsn=$(trim "$dsn"); text=$(trim "$text"); copies=$(trim "$copies")
	name=${names[$i]}
	i=$((i + 1))
	dest_clone "$name" MAIL_ONPREM
	cache_clear
	case "$inject" in
	faults\ *) emu POST /faults "${inject#faults }" >/dev/null ;;
	relay\ *) emu POST /relay "${inject#relay }" >/dev/null ;;
	esac
	q=$(send_mail sender@client.test "user@$name.dest.test" --header "Subject: matrix-row-$name-end")
	line=$(wait_status "$q" "user@$name.dest.test")
	printf '%s\n' "$line" | grep -q -- "status=$status .*dsn=$dsn\|dsn=$dsn, status=$status" &&
		printf '%s\n' "$line" | grep -q -- "$text"
	tap_ok $? "$step: $status, dsn $dsn, /$text/" "$line"
	emu POST /faults/clear >/dev/null
	case "$inject" in	# the row's relay options back to their defaults (null)
	relay\ *) emu POST /relay "$(printf '%s' "${inject#relay }" |
		python3 -c 'import json, sys; print(json.dumps(dict.fromkeys(json.load(sys.stdin))))')" >/dev/null ;;
	esac
	QID[$name]=$q COPIES[$name]=$copies STATUS[$name]=$status
done < "$MATRIX"

echo "# --- faults cleared, queue flushed: every message arrives the expected number of times"
flush_queue
for name in "${names[@]}"; do
	[ "${STATUS[$name]}" = deferred ] || continue
	wait_status "${QID[$name]}" "user@$name.dest.test" sent >/dev/null ||
		echo "# $name: not delivered after the flush"
done
out=$(secret_scan "$WORK/log/maillog" "$BTPRELAY_LOG")
tap_ok $? "no secret in the maillog or btprelay's log, in any encoding" "$out"
for name in "${names[@]}"; do
	n=$(grep -l -F -- "matrix-row-$name-end" "$EMU"/messages/*.eml 2>/dev/null | wc -l)
	[ "$n" = "${COPIES[$name]}" ]
	tap_ok $? "$name (${STATUS[$name]}): ${COPIES[$name]} cop$([ "${COPIES[$name]}" = 1 ] && echo y || echo ies) at the relay after recovery" "got $n"
done
tap_done
