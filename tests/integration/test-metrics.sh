#!/bin/bash
# test-metrics.sh - btprelay's counters against what the emulator counted,
# behind a real Postfix: messages through the pipe(8) route and the LMTP
# route (sessions reused), a destination that does not exist (deferred,
# then held); then `btprelay metrics` must agree with the emulator's own
# counters: token requests by binding, Destination Service requests, the
# proxy's CONNECT replies by REP code, relay connections and messages;
# Postfix's queue sizes (postqueue -j); Postfix's status lines counted by
# `btprelay metrics --count-log` from the real log, copied byte for byte;
# the HTTP endpoint (`--listen`): the same text, as the cache's owner, GET
# only, in a format Prometheus's own parser reads.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init metrics
harness_start_emulator
harness_install_transport
harness_start_postfix MAIL_NOPE
postconf -c "$PF" -e "lmtp_destination_concurrency_limit = 2"
postfix -c "$PF" reload >/dev/null 2>&1
. "$top_srcdir/tests/lib/scenario.sh"
BTPRELAY=$top_builddir/plugin/cli/btprelay
CONF=$WORK/etc/btprelay.conf

# metrics [ARGS] - the exposition text, as an operator runs it (root)
metrics() {
	"$BTPRELAY" -c "$CONF" metrics --postfix-config "$PF" "$@"
}
# value FILE SERIES - the value of one series (name and labels exactly as written)
value() {
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "missing" }' "$1"
}
counter() {	# jq path into the emulator's /counters
	emu GET /counters | jq -r "$1 // 0"
}
# agree TEXT SERIES JQ - one btprelay series equals one emulator counter
agree() {
	local got want
	got=$(value "$WORK/m.txt" "$2")
	want=$(jq -r "$3 // 0" "$WORK/c.json")
	[ "$got" = "$want" ] && [ "$got" != missing ]
	tap_ok $? "$SCEN: $1: $2 = $got, the emulator counted $want" "$(grep "^${2%%\{*}" "$WORK/m.txt")"
}

scenario "deliveries through both routes"
STATUS_AGENT=pipe
for i in 1 2 3 4; do
	q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK pipe $i")
	wait_status "$q" user@corp.example sent >/dev/null
	tap_ok $? "$SCEN: pipe message $i sent"
done
# a backlog on hold, released at once: lmtp(8) keeps its connection, btprelay-lmtp its session
postconf -c "$PF" -e "smtpd_end_of_data_restrictions = check_client_access static:HOLD"
postfix -c "$PF" reload >/dev/null 2>&1
: > "$WORK/qids"
for i in 1 2 3 4 5 6; do
	send_mail sender@client.test user@lmtp.example --header "Subject: $MARK lmtp $i" >> "$WORK/qids"
done
postconf -c "$PF" -e "smtpd_end_of_data_restrictions ="
postfix -c "$PF" reload >/dev/null 2>&1
postsuper -c "$PF" -H ALL >/dev/null 2>&1
flush_queue
STATUS_AGENT=lmtp
bad=""
while read -r q; do
	wait_status "$q" user@lmtp.example sent >/dev/null || bad="$bad $q"
done < "$WORK/qids"
[ -z "$bad" ] && [ "$(grep -c . "$WORK/qids")" = 6 ]
tap_ok $? "$SCEN: 6 LMTP messages sent" "not sent:$bad"

metrics > "$WORK/m.txt" 2> "$WORK/m.err"
tap_ok $? "$SCEN: btprelay metrics exits 0" "$(cat "$WORK/m.err")"
emu GET /counters > "$WORK/c.json"
agree "tokens" 'btprelay_token_fetches_total{service="connectivity"}' .token_requests.connectivity
agree "tokens" 'btprelay_token_fetches_total{service="destination"}' .token_requests.destination
n=$(( $(value "$WORK/m.txt" 'btprelay_token_fetches_total{service="connectivity"}') +
	$(value "$WORK/m.txt" 'btprelay_token_fetches_total{service="destination"}') ))
[ "$n" = "$(jq .token_requests.total "$WORK/c.json")" ] && [ "$n" -ge 2 ]
tap_ok $? "$SCEN: tokens: every request the token service saw ($n)" "$(jq -c .token_requests "$WORK/c.json")"
agree "Destination Service" btprelay_destination_fetches_total .find_requests
agree "proxy" 'btprelay_socks_replies_total{rep="00"}' '.proxy_replies["00"]'
agree "proxy" 'btprelay_socks_replies_total{rep="00"}' .proxy_connects_ok
agree "relay" btprelay_relay_sessions_opened_total .relay_connections
opened=$(value "$WORK/m.txt" btprelay_relay_sessions_opened_total)
reused=$(value "$WORK/m.txt" btprelay_relay_sessions_reused_total)
[ $((opened + reused)) = "$(jq .relay_messages "$WORK/c.json")" ] && [ "$reused" -ge 1 ]
tap_ok $? "$SCEN: relay: sessions opened + reused = the relay's messages ($opened + $reused), one reused at least" \
	"relay_messages $(jq .relay_messages "$WORK/c.json")"
lookups=$(value "$WORK/m.txt" btprelay_destination_lookups_total)
hits=$(value "$WORK/m.txt" btprelay_destination_cache_hits_total)
finds=$(jq .find_requests "$WORK/c.json")
[ "$lookups" = $((hits + finds)) ] && [ "$hits" -ge 1 ]
tap_ok $? "$SCEN: each destination lookup was a cache hit or one Find ($lookups = $hits + $finds)"
[ "$(value "$WORK/m.txt" 'btprelay_token_fetch_errors_total{service="connectivity"}')" = 0 ] &&
	[ "$(value "$WORK/m.txt" 'btprelay_token_fetch_errors_total{service="destination"}')" = 0 ]
tap_ok $? "$SCEN: no failed token request"
[ "$(value "$WORK/m.txt" postfix_up)" = 1 ]
tap_ok $? "$SCEN: postqueue -j answered" "$(grep postfix_ "$WORK/m.txt")"

scenario "REP codes"
emu POST /faults '{"proxy_rep": 4}' >/dev/null
STATUS_AGENT=pipe
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK rep")
wait_status "$q" user@corp.example deferred >/dev/null
tap_ok $? "$SCEN: a delivery deferred by REP 04"
postsuper -c "$PF" -h "$q" >/dev/null 2>&1
emu POST /faults/clear >/dev/null
metrics > "$WORK/m.txt"
emu GET /counters > "$WORK/c.json"
agree "proxy" 'btprelay_socks_replies_total{rep="04"}' '.proxy_replies["04"]'
[ "$(value "$WORK/m.txt" 'btprelay_socks_replies_total{rep="04"}')" -ge 1 ]
tap_ok $? "$SCEN: REP 04 counted"

scenario "queue sizes"
q=$(send_mail sender@client.test user@MAIL_NOPE.dest.test --header "Subject: $MARK nope")
wait_status "$q" user@MAIL_NOPE.dest.test deferred >/dev/null
tap_ok $? "$SCEN: a destination that does not exist: deferred"
postsuper -c "$PF" -h "$q" >/dev/null 2>&1
metrics > "$WORK/m.txt"
held=$(postqueue -c "$PF" -j | grep -c '"queue_name": "hold"')
[ "$(value "$WORK/m.txt" 'postfix_queue_messages{queue="hold"}')" = 2 ] && [ "$held" = 2 ]
tap_ok $? "$SCEN: postfix_queue_messages{queue=\"hold\"} is 2, as postqueue shows" "$(grep queue "$WORK/m.txt")"
[ "$(value "$WORK/m.txt" 'postfix_queue_messages{queue="active"}')" = 0 ] &&
	[ "$(value "$WORK/m.txt" 'postfix_queue_messages{queue="deferred"}')" = 0 ]
tap_ok $? "$SCEN: nothing active or deferred"
"$BTPRELAY" -c "$CONF" metrics --postfix-config /nonexistent > "$WORK/m2.txt" 2>&1
[ "$(value "$WORK/m2.txt" postfix_up)" = 0 ] && ! grep -q '^postfix_queue_messages' "$WORK/m2.txt" &&
	grep -q '^btprelay_destination_lookups_total [1-9]' "$WORK/m2.txt"
tap_ok $? "$SCEN: without Postfix: postfix_up 0, no queue figures, btprelay's counters all the same" \
	"$(grep -v '^#' "$WORK/m2.txt" | head -5)"

scenario "Postfix's status lines from its log (--count-log)"
cp "$WORK/log/maillog" "$WORK/maillog.snap"
"$BTPRELAY" -c "$CONF" metrics --count-log < "$WORK/maillog.snap" > "$WORK/maillog.copy" 2> "$WORK/count.err"
tap_ok $? "$SCEN: exits 0" "$(cat "$WORK/count.err")"
cmp -s "$WORK/maillog.snap" "$WORK/maillog.copy"
tap_ok $? "$SCEN: the log is copied byte for byte"
[ ! -s "$WORK/count.err" ]
tap_ok $? "$SCEN: nothing on stderr: root became the cache's owner and counted" "$(cat "$WORK/count.err")"
metrics --no-postfix > "$WORK/m.txt"
for pair in sent:2 deferred:4; do
	st=${pair%%:*} cls=${pair#*:}
	want=$(grep -c "postfix/[a-z]*\[[0-9]*\]: [0-9A-Za-z]*: to=<[^>]*>, .* dsn=$cls\.[0-9.]*, status=$st " "$WORK/maillog.snap")
	got=$(value "$WORK/m.txt" "postfix_deliveries_total{status=\"$st\",dsn_class=\"$cls\"}")
	[ "$got" = "$want" ] && [ "$want" -ge 2 ]
	tap_ok $? "$SCEN: status=$st, dsn $cls.x.x: $got counted, $want in the log" "$(grep postfix_deliveries "$WORK/m.txt")"
done
[ "$(value "$WORK/m.txt" 'postfix_deliveries_total{status="sent",dsn_class="2"}')" = $((4 + 6)) ]
tap_ok $? "$SCEN: the 10 messages delivered are 10 sent"
! grep -q '^postfix_up' "$WORK/m.txt"
tap_ok $? "$SCEN: --no-postfix leaves out the queue"

SCEN="the HTTP endpoint (--listen)"	# (no scenario(): it would clear the counters)
PORT=$(free_port)
"$BTPRELAY" -c "$CONF" metrics --postfix-config "$PF" --listen "127.0.0.1:$PORT" 2> "$WORK/log/listen.log" &
LISTEN_PID=$!
trap 'kill "$LISTEN_PID" 2>/dev/null; harness_stop' EXIT
# scrape METHOD - status, Content-Type and body of one request, as JSON lines into $WORK/scrape
scrape() {
	python3 - "$PORT" "$1" > "$WORK/scrape" 2>&1 <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request(sys.argv[2], "/metrics")
r = c.getresponse()
print(r.status)
print(r.getheader("Content-Type"))
sys.stdout.write(r.read().decode())
PY
}
for i in $(seq 100); do
	scrape GET && break
	sleep 0.1
done
[ "$(sed -n 1p "$WORK/scrape")" = 200 ] && [ "$(sed -n 2p "$WORK/scrape")" = "text/plain; version=0.0.4; charset=utf-8" ]
tap_ok $? "$SCEN: GET /metrics: 200, text/plain; version=0.0.4" "$(head -3 "$WORK/scrape"; cat "$WORK/log/listen.log")"
sed 1,2d "$WORK/scrape" > "$WORK/http.txt"
metrics > "$WORK/m.txt"
# (not Postfix's queue: postqueue -c DIR as a user other than root needs DIR in
# the default main.cf's alternate_config_directories; the image uses the default)
diff <(grep '^btprelay_\|^postfix_deliveries' "$WORK/m.txt") <(grep '^btprelay_\|^postfix_deliveries' "$WORK/http.txt") \
	> "$WORK/diff" && grep -q '^postfix_deliveries_total{status="sent",dsn_class="2"} 10$' "$WORK/http.txt"
tap_ok $? "$SCEN: the same counters as btprelay metrics" "$(head -10 "$WORK/diff")"
user=$(ps -o user= -p "$LISTEN_PID" 2>/dev/null | tr -d ' ')
[ "$user" = "$TRANSPORT_USER" ]
tap_ok $? "$SCEN: started by root, it serves as the cache's owner ($user)"
scrape POST
[ "$(sed -n 1p "$WORK/scrape")" = 405 ]
tap_ok $? "$SCEN: POST: 405" "$(head -3 "$WORK/scrape")"
if /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
	out=$(/usr/bin/python3 - "$WORK/http.txt" <<'PY' 2>&1
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
need = ["btprelay_token_fetches", "btprelay_socks_replies", "btprelay_relay_sessions_opened",
        "postfix_deliveries", "postfix_up"]
missing = [n for n in need if n not in families]
print("%d families; missing: %s" % (len(families), missing or "none"))
sys.exit(1 if missing or families["btprelay_socks_replies"].type != "counter" else 0)
PY
)
	tap_ok $? "$SCEN: Prometheus's own parser reads the text" "$out"
else
	echo "# SKIP Prometheus's parser: python3-prometheus-client not installed (tests/install-deps.sh)"
fi
kill "$LISTEN_PID" 2>/dev/null
wait "$LISTEN_PID" 2>/dev/null

tap_done
