#!/bin/bash
# test-cache.sh - the cache shared by transport processes, shown with the
# emulator's request counters: a burst of deliveries makes one token request
# per service and one Find; a warm cache makes none; a destination past its
# TTL is served stale while the Destination Service is down; a refused token
# is fetched again once. The transport runs directly, as Postfix would run it.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init cache
harness_start_emulator
harness_install_transport "destination_cache_ttl = 300" "destination_stale_ttl = 3600"

# deliver RCPT - one transport run as user btprelay; prints "EXIT OUTPUT"
deliver_one() {
	local out rc
	out=$(printf 'Subject: cache test\n\nhello\n' | runuser -u "$TRANSPORT_USER" -- \
		"$WORK/bin/btprelay-transport" -c "$WORK/etc/btprelay.conf" -f sender@client.test \
		-d MAIL_ONPREM -- "$1" 2>&1)
	rc=$?
	printf '%s %s\n' "$rc" "$out"
}
counter() {	# jq path into /counters
	emu GET /counters | jq -r "$1"
}

BURST=${BURST:-30}
echo "# --- a burst of $BURST deliveries started at once, cold cache"
pids=()
for i in $(seq "$BURST"); do
	deliver_one "burst$i@corp.example" > "$WORK/burst.$i" &
	pids+=($!)
done
wait "${pids[@]}"
ok_runs=$(cat "$WORK"/burst.* | grep -c '^0 ')
[ "$ok_runs" = "$BURST" ]
tap_ok $? "all $BURST deliveries succeeded" "$(grep -hv '^0 ' "$WORK"/burst.* | head -3)"
[ "$(counter .token_requests.connectivity)" = 1 ]
tap_ok $? "one connectivity token request for the whole burst" "got $(counter .token_requests.connectivity)"
[ "$(counter .token_requests.destination)" = 1 ]
tap_ok $? "one destination token request for the whole burst" "got $(counter .token_requests.destination)"
[ "$(counter .find_requests)" = 1 ]
tap_ok $? "one Find request for the whole burst" "got $(counter .find_requests)"
[ "$(counter .relay_messages)" = "$BURST" ]
tap_ok $? "$BURST messages at the relay" "got $(counter .relay_messages)"

echo "# --- warm cache: no HTTP request at all"
emu POST /reset >/dev/null
r=$(deliver_one warm@corp.example)
[ "${r%% *}" = 0 ] && [ "$(counter .token_requests.total)" = 0 ] && [ "$(counter .find_requests)" = 0 ]
tap_ok $? "a delivery with a warm cache makes no token or Find request" "$r $(emu GET /counters)"

echo "# --- stale-if-error: the destination's TTL has passed, the Destination Service is down"
harness_install_transport "destination_cache_ttl = 1" "destination_stale_ttl = 3600"
cache_clear
deliver_one prime-stale@corp.example > /dev/null	# entries keep the TTL they were stored with
emu POST /reset >/dev/null
sleep 2
emu POST /faults '{"destination":"http500"}' >/dev/null
r=$(deliver_one stale@corp.example)
[ "${r%% *}" = 0 ]
tap_ok $? "delivered with the stale destination while the service answers 500" "$r"
[ "$(counter .find_requests)" -ge 1 ]
tap_ok $? "the service was asked first (the TTL had passed)" "find_requests=$(counter .find_requests)"
grep -q 'stale' "$BTPRELAY_LOG"
tap_ok $? "the log says the destination was served stale" "$(grep -i 'destination cache' "$BTPRELAY_LOG" | tail -2)"

echo "# --- not found is an answer, not an outage: nothing stale is served for it"
emu POST /faults/clear >/dev/null
emu DELETE /destinations/MAIL_ONPREM >/dev/null
sleep 4		# past the TTL, and past the failure memo of the outage above (http_timeout = 3)
r=$(deliver_one gone@corp.example)
case "$r" in 75\ 4.3.5*not\ found*) true ;; *) false ;; esac
tap_ok $? "a deleted destination defers 4.3.5 'not found' even with a stale copy cached" "$r"

echo "# --- a token the proxy refuses is fetched again, once"
emu POST /reset >/dev/null
cache_clear
deliver_one prime@corp.example > /dev/null
emu POST /reset >/dev/null
emu POST /faults '{"proxy":"auth_fail"}' >/dev/null
r=$(deliver_one refused@corp.example)
case "$r" in 75\ 4.7.0*) true ;; *) false ;; esac
tap_ok $? "proxy keeps refusing: deferred 4.7.0" "$r"
[ "$(counter .token_requests.connectivity)" = 1 ]
tap_ok $? "the cached token was refused, one new token was fetched, no more" "got $(counter .token_requests.connectivity)"

echo "# --- a flush right after the operator's fix delivers (issue 13 #9)"
# A failure note lives up to http_timeout (30 s here) but answers only the deliveries that
# were waiting for the failed lookup: the flush after the fix asks the service again.
# Postfix retries only when told to (backoff 300 s), so every attempt is the test's own.
harness_install_transport "http_timeout = 30" "http_retries = 0"
harness_start_postfix
postconf -c "$PF" -e minimal_backoff_time=300s maximal_backoff_time=300s queue_run_delay=300s
postfix -c "$PF" reload > /dev/null 2>&1
emu POST /reset >/dev/null
cache_clear
emu POST /faults '{"destination":"http500"}' >/dev/null
qid=$(send_mail sender@client.test fixed@corp.example --header "Subject: flush after a fix")
line=$(wait_status "$qid" fixed@corp.example deferred)
tap_ok $? "the Destination Service fails: deferred" "$line"
ls "$WORK"/cache/destination-*.fail > /dev/null 2>&1
tap_ok $? "the failed lookup left a failure note" "$(ls "$WORK/cache")"
emu POST /faults/clear >/dev/null	# the operator's fix, well within the note's 30 s
flush_queue
line=$(wait_status "$qid" fixed@corp.example sent)
tap_ok $? "the flush right after the fix delivered" "$line $(grep "$qid" "$WORK/log/maillog" | tail -3)"
[ "$(grep -c "$qid: to=<fixed@corp.example>.*status=deferred" "$WORK/log/maillog")" = 1 ]
tap_ok $? "... at its first attempt: the old failure note did not answer it" "$(grep "$qid" "$WORK/log/maillog" | grep status=)"

echo "# --- cache files are private"
bad=$(find "$WORK/cache" -mindepth 1 \( -type f -perm /077 -o -type d -perm /077 \) | head -3)
[ -z "$bad" ] && [ "$(stat -c %a "$WORK/cache")" = 700 ]
tap_ok $? "cache directory 0700, files 0600" "$bad"
out=$(secret_scan "$BTPRELAY_LOG" "$WORK"/burst.*)
tap_ok $? "no secret in the log or the transport's output, in any encoding ($(grep -c . "$EMU/secrets.txt") secrets)" "$out"
tap_done
