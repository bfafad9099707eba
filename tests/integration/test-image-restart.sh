#!/bin/bash
# test-image-restart.sh - nothing accepted is lost when the relay container
# stops: 500 messages are submitted while the relay is slow (it stores each
# message, then drips its 250 one byte a second, so deliveries are in flight
# and the rest waits in the queue); half-way through the submission the
# container is stopped with SIGTERM, then started again on the same queue
# volume with the relay healthy. Every message the container accepted (250
# to the final dot) arrives, counted by Message-Id at the relay; a duplicate
# is accepted only when the relay stored the copy but its 250 never reached
# btprelay (the window SMTP cannot close: fault_after_dot relay.eod=drip),
# and each is reported. Then the same with SIGKILL. btprelay's counters (on
# the queue volume) count on across both restarts.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init image-restart
. "$top_srcdir/tests/lib/image.sh"
image_init
harness_start_emulator
. "$top_srcdir/tests/lib/scenario.sh"
image_build

N=${RESTART_MESSAGES:-500}
image_bindings "$WORK/bindings"
install -d -m 755 "$WORK/ca"
install -m 644 "$EMU/certs/ca.pem" "$WORK/ca/ca.pem"
SMTP_PORT=$(free_port)
Q=btprelay-test-$$-restart-queue
image_volume "$Q"
RUN_ARGS=(-v "$WORK/bindings:/bindings:ro" -v "$WORK/ca:/ca:ro" -v "$Q:/var/spool/postfix"
	-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem
	-e BTPRELAY_INET_INTERFACES=127.0.0.1 -e BTPRELAY_MYNETWORKS=127.0.0.0/8
	-e "BTPRELAY_SMTP_PORT=$SMTP_PORT" -e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM"
	-e "BTPRELAY_POSTCONF=minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s")
SEQ=0

start_relay() {	# a new container on the queue volume; its name in $C
	SEQ=$((SEQ + 1))
	C=btprelay-test-$$-restart-$SEQ
	image_run "$C" "${RUN_ARGS[@]}"
	image_wait_ready "$C"
}

# round SIGNAL - submit N with the relay slow, SIGNAL when N/2 are accepted
# (the submission goes on while the container stops), restart, count
round() {
	local sig=$1 acc=$WORK/accepted-$1 i rc out at_relay accepted stop
	scenario "$N messages, $sig half-way"
	: > "$acc"
	emu POST /faults '{"relay":{"eod":"drip"}}' >/dev/null
	# the signal goes straight to the container's PID 1 (the entrypoint), as
	# the kubelet's does; podman stop would first take its own time to start
	pid1=$(pdm inspect -f '{{.State.Pid}}' "$C")
	python3 "$top_srcdir/tests/lib/submit-many.py" submit "127.0.0.1:$SMTP_PORT" "$N" "$MARK" \
		user@corp.example "$acc" 4 0.04 $((N / 2)) kill -s "${sig#SIG}" "$pid1" \
		> "$WORK/log/submit-$sig.log" 2>&1
	rc=$(image_exit_code "$C")
	image_logs "$C" "$WORK/log/stdout-$C.log"
	accepted=$(grep -c . "$acc")
	at_relay=$(emu GET /counters | jq .relay_messages)
	echo "# $sig after $((N / 2)) accepted: $accepted accepted in all, $at_relay at the relay before the restart"
	if [ "$sig" = SIGTERM ]; then
		[ "$rc" = 0 ]
		tap_ok $? "$SCEN: the container stopped cleanly (exit 0)" "exit $rc: $(tail -5 "$WORK/log/stdout-$C.log")"
	else
		[ "$rc" = 137 ]
		tap_ok $? "$SCEN: the container was killed (exit 137)" "exit $rc"
	fi
	[ "$accepted" -ge $((N / 2)) ] && [ "$accepted" -lt "$N" ]
	tap_ok $? "$SCEN: the signal came in the middle of the submission" "$accepted of $N accepted"
	[ "$accepted" -gt "$at_relay" ]
	tap_ok $? "$SCEN: accepted mail was waiting in the queue" "$accepted accepted, $at_relay at the relay"
	emu POST /faults/clear >/dev/null
	start_relay
	tap_ok $? "$SCEN: ready again on the same queue volume" "$(image_logs "$C" /dev/stdout | tail -5)"
	for i in $(seq 1800); do
		python3 "$top_srcdir/tests/lib/submit-many.py" count "$EMU/messages" "$MARK" "$acc" > "$WORK/count" && break
		image_running "$C" || break
		sleep 0.1
	done
	out=$(cat "$WORK/count")
	echo "# $(head -1 "$WORK/count")"
	printf '%s\n' "$out" | grep -q ' missing 0 '
	tap_ok $? "$SCEN: every accepted message arrived" "$out"
	! printf '%s\n' "$out" | grep '^duplicate' | grep -v "relay.eod=drip" | grep -q .
	tap_ok $? "$SCEN: every duplicate is one the relay stored without its 250 arriving" "$out"
	printf '%s\n' "$out" | grep '^duplicate' | sed 's/^/# /'
}

start_relay
tap_ok $? "relay container ready" "$(image_logs "$C" /dev/stdout | tail -5)"
round SIGTERM
round SIGKILL

# btprelay's counter file is on the queue volume (metrics_dir): the third
# container's count of status=sent lines is that of all three containers'
# stdout, not its own alone (a status line is counted before it is written:
# one killed with SIGKILL may have counted a line or two it never showed)
SCEN="counters across restarts"
for i in $(seq 300); do	# (bounded) every delivery done and logged
	[ "$(pdm exec "$C" postqueue -j 2>/dev/null | wc -l)" = 0 ] && break
	sleep 0.2
done
sleep 1
sent() {	# FILE... - Postfix's status=sent lines with a 2.x.x DSN
	cat "$@" | grep -c 'postfix/[a-z]*\[[0-9]*\]: [0-9A-Za-z]*: to=<.*, dsn=2\.[0-9.]*, status=sent '
}
counted=$(pdm exec "$C" btprelay metrics --no-postfix 2>&1 |
	awk '$1 == "postfix_deliveries_total{status=\"sent\",dsn_class=\"2\"}" { print $2 }')
image_logs "$C" "$WORK/log/stdout-$C.log"
all=$(sent "$WORK"/log/stdout-btprelay-test-$$-restart-*.log)
here=$(sent "$WORK/log/stdout-$C.log")
[ -n "$counted" ] && [ "$counted" -ge "$all" ] && [ "$counted" -le $((all + 2)) ] && [ "$here" -lt "$all" ]
tap_ok $? "$SCEN: postfix_deliveries_total{status=\"sent\"} is the status=sent lines of $SEQ containers ($all), not of the last alone ($here)" \
	"counted ${counted:-nothing}; $(pdm exec "$C" ls -l /var/spool/postfix/btprelay-metrics 2>&1)"
pdm stop -t 30 "$C" >/dev/null 2>&1
SCEN="stdout of every container"
expect_no_secret_encodings "$WORK"/log/stdout-*.log
tap_done
