#!/bin/bash
# test-image.sh - the relay image (config/container) built with podman from a
# base of Debian's own packages, run on the host network with a read-only
# root filesystem against the BTP emulator, bindings mounted in the BTP
# service operator's Secret shape:
#   - swaks -> the container's Postfix -> btprelay-lmtp -> emulator proxy ->
#     relay: the body arrives byte for byte; the container's stdout has
#     Postfix's status=sent line and btprelay's line for the queue id, and no
#     secret in any encoding;
#   - an unknown destination gets 550 at RCPT (the milter, on by default);
#   - a Destination Service outage gets 451 and the container stays ready;
#   - relaying for a client outside BTPRELAY_MYNETWORKS is refused, and a
#     domain that is not routed is refused;
#   - the root filesystem is read-only;
#   - the pipe(8) route type delivers too; submission over STARTTLS with a
#     certificate from a mounted Secret;
#   - metrics: the endpoint serves (from outside the container) what
#     "btprelay metrics" shows inside; after the delivery its counters moved
#     as the emulator counted (tokens, Finds, REP 00, relay sessions), its
#     status=sent count is the stdout's, postqueue -j answers;
#   - the milter, the metrics endpoint and the log counter, each killed inside
#     the container, are started again: the milter answers, the endpoint
#     answers, mail flows and its status line is counted;
#   - SMTP AUTH with users from a mounted Secret: offered only after
#     STARTTLS; a client outside BTPRELAY_MYNETWORKS relays with good
#     credentials, gets 535 with bad ones; no password on stdout;
#   - without BTPRELAY_ROUTES, the routes kept in the cockpit (btprelay.domains):
#     delivered byte for byte, an unclaimed domain refused at RCPT, a client
#     outside BTPRELAY_MYNETWORKS refused for a routed domain, a destination
#     added later routed by the refresh loop; a start during a Destination
#     Service outage: ready, one warning line, 450 at RCPT until a refresh works;
#   - Kyma's proxy in trusted mode: no connectivity binding, the proxy from
#     onpremise_proxy_host/onpremise_socks5_proxy_port: delivered byte for byte;
#   - each bad configuration (no routes, bad route syntax, missing or
#     unreadable bindings, an open relay) ends the start with exit 78 and
#     one line naming the variable.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init image
. "$top_srcdir/tests/lib/image.sh"
image_init
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
harness_start_emulator
. "$top_srcdir/tests/lib/scenario.sh"
image_build
echo "# image built: $(pdm image inspect -f '{{.Size}}' "$IMAGE") bytes"

image_bindings "$WORK/bindings"
install -d -m 755 "$WORK/ca"
install -m 644 "$EMU/certs/ca.pem" "$WORK/ca/ca.pem"
SMTP_PORT=$(free_port)
C=btprelay-test-$$-main
image_volume "$C-queue"
ROUTES="corp.example=MAIL_ONPREM,nowhere.example=MAIL_NOPE,outage.example=MAIL_OUTAGE"
COMMON=(-v "$WORK/bindings:/bindings:ro" -v "$WORK/ca:/ca:ro"
	-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem
	-e BTPRELAY_INET_INTERFACES=127.0.0.1)

# submission TLS with a certificate and key as a kubernetes.io/tls Secret mounts them
install -d -m 755 "$WORK/tls"
install -m 644 "$EMU/certs/relay.pem" "$WORK/tls/tls.crt"
install -m 600 "$EMU/certs/relay.key" "$WORK/tls/tls.key"
# SMTP AUTH users as a Secret mounts them (0400, root's)
install -d -m 755 "$WORK/submit"
SUBMIT_PW="sub-$RANDOM$RANDOM-pass:word"
printf '# submitting applications\nalice:%s\nbob:other-%s\n' "$SUBMIT_PW" "$RANDOM$RANDOM" > "$WORK/submit/users"
chmod 400 "$WORK/submit/users"
printf '%s\n' "$SUBMIT_PW" > "$WORK/submit-secret.txt"
printf 'alice\n%s\n' "$SUBMIT_PW" > "$WORK/submit-good.txt"
printf 'alice\nnot-%s\n' "$SUBMIT_PW" > "$WORK/submit-bad.txt"
SECRET_SCAN_EXTRA=$WORK/submit-secret.txt
METRICS_PORT=$(free_port)
image_run "$C" "${COMMON[@]}" -v "$C-queue:/var/spool/postfix" -v "$WORK/tls:/tls:ro" \
	-e "BTPRELAY_ROUTES=$ROUTES" -e "BTPRELAY_SMTP_PORT=$SMTP_PORT" \
	-e BTPRELAY_MYNETWORKS=127.0.0.1/32 \
	-e BTPRELAY_TLS_CERT_FILE=/tls/tls.crt -e BTPRELAY_TLS_KEY_FILE=/tls/tls.key \
	-v "$WORK/submit:/submit:ro" -e BTPRELAY_SUBMIT_USERS_FILE=/submit/users \
	-e "BTPRELAY_METRICS_LISTEN=127.0.0.1:$METRICS_PORT"
tap_ok $? "container started" "$(cat "$WORK/log/run-$C.log")"
image_follow "$C" "$WORK/log/maillog"
image_wait_ready "$C"
tap_ok $? "health ready answers ok" "$(image_logs "$C" /dev/stdout | tail -20)"
out=$(pdm exec "$C" /usr/libexec/btprelay/health live 2>&1)
tap_ok $? "health live answers ok" "$out"

SCEN="read-only root"
out=$(pdm exec "$C" sh -c 'touch /etc/btprelay-probe 2>&1; touch /usr/btprelay-probe 2>&1' 2>&1)
printf '%s\n' "$out" | grep -q 'Read-only file system'
tap_ok $? "$SCEN: /etc and /usr cannot be written" "$out"
[ "$(pdm inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$C")" = true ]
tap_ok $? "$SCEN: podman reports ReadonlyRootfs"

SCEN="operator probes"
out=$(pdm exec "$C" btprelay check 2>&1)
tap_ok $? "$SCEN: btprelay check inside the container" "$out"
printf '%s\n' "$out" | grep -q 'service binding directories /run/btprelay/bindings'
tap_ok $? "$SCEN: bindings read from the Secret-shaped directories" "$out"
out=$(pdm exec "$C" btprelay probe MAIL_ONPREM 2>&1)
tap_ok $? "$SCEN: btprelay probe MAIL_ONPREM inside the container" "$out"

# scrape FILE - GET the metrics endpoint from outside the container: the body into FILE
scrape() {
	python3 - "$METRICS_PORT" > "$1" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request("GET", "/metrics")
r = c.getresponse()
if r.status != 200 or not r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"):
    sys.exit("HTTP %d %s" % (r.status, r.getheader("Content-Type")))
sys.stdout.write(r.read().decode())
PY
}
# value FILE SERIES - the value of one series, written exactly
value() {
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "missing" }' "$1"
}

scenario "delivery through the container"
scrape "$WORK/metrics-before.txt"
tap_ok $? "metrics: the endpoint answers from outside the container" "$(head -5 "$WORK/metrics-before.txt")"
STATUS_AGENT=lmtp
cat > "$WORK/msg.eml" <<EOF
From: sender@client.test
To: user@corp.example
Subject: $MARK
Message-Id: <$MARK@client.test>

line one
.a line that starts with a dot
trailing blanks   
EOF
out=$(printf 'QUIT\r\n' | timeout 20 openssl s_client -starttls smtp -connect "127.0.0.1:$SMTP_PORT" \
	-CAfile "$EMU/certs/ca.pem" -verify_ip 127.0.0.1 -verify_return_error 2>&1)
printf '%s\n' "$out" | grep -q 'Verify return code: 0 (ok)'
tap_ok $? "$SCEN: smtpd offers STARTTLS with the mounted certificate (verified)" "$(printf '%s\n' "$out" | grep -i 'verify\|error' | head -5)"
qid=$(send_mail sender@client.test user@corp.example --data "$WORK/msg.eml")
expect_status "$qid" user@corp.example sent 'relay=.*btprelay-lmtp' 'dsn=2\.0\.0'
expect_relay 1 '.mail_from == "sender@client.test"' '.rcpt_to == ["user@corp.example"]' '.via_proxy == true'
expect_body "$WORK/msg.eml"
line=$(grep "btprelay-lmtp\[[0-9]*\]: $qid: to=<user@corp.example>.*destination=MAIL_ONPREM.*status=sent" "$WORK/log/maillog")
tap_ok $? "$SCEN: stdout has btprelay-lmtp's line for $qid" "$(grep -v 'postfix/' "$WORK/log/maillog" | tail -5)"
printf '%s\n' "$line" | grep -q "^[A-Z][a-z][a-z] [0-9][0-9] [0-9:]\{8\} [^ ]* btprelay-lmtp\["
tap_ok $? "$SCEN: btprelay's line reads like Postfix's (time, host, program[pid])" "$line"

SCEN="metrics after the delivery"
scrape "$WORK/metrics-after.txt"
emu GET /counters > "$WORK/counters.json"
pdm exec "$C" btprelay metrics > "$WORK/metrics-inside.txt" 2>&1
diff <(grep '^btprelay_\|^postfix_' "$WORK/metrics-after.txt") <(grep '^btprelay_\|^postfix_' "$WORK/metrics-inside.txt") > "$WORK/metrics.diff"
tap_ok $? "$SCEN: the endpoint serves what btprelay metrics shows inside" "$(head -8 "$WORK/metrics.diff")"
# moved SERIES JQ - the series grew by what the emulator counted since the scenario's reset
moved() {
	local before after want
	before=$(value "$WORK/metrics-before.txt" "$1")
	after=$(value "$WORK/metrics-after.txt" "$1")
	want=$(jq -r "$2 // 0" "$WORK/counters.json")
	[ "$before" != missing ] && [ "$after" != missing ] && [ $((after - before)) = "$want" ]
	tap_ok $? "$SCEN: $1 grew by $want, as the emulator counted ($before -> $after)"
}
moved btprelay_relay_sessions_opened_total .relay_connections
moved 'btprelay_socks_replies_total{rep="00"}' '.proxy_replies["00"]'
moved 'btprelay_token_fetches_total{service="connectivity"}' .token_requests.connectivity
moved 'btprelay_token_fetches_total{service="destination"}' .token_requests.destination
moved btprelay_destination_fetches_total .find_requests
[ "$(jq .relay_connections "$WORK/counters.json")" -ge 1 ]
tap_ok $? "$SCEN: (the delivery did reach the relay)" "$(jq -c . "$WORK/counters.json")"
image_logs "$C" "$WORK/log/stdout-metrics.log"
n=$(grep -c "postfix/[a-z]*\[[0-9]*\]: [0-9A-Za-z]*: to=<.*, dsn=2\.[0-9.]*, status=sent " "$WORK/log/stdout-metrics.log")
[ "$(value "$WORK/metrics-after.txt" 'postfix_deliveries_total{status="sent",dsn_class="2"}')" = "$n" ] && [ "$n" -ge 1 ]
tap_ok $? "$SCEN: postfix_deliveries_total{status=\"sent\",dsn_class=\"2\"} is the stdout's status=sent lines ($n)" \
	"$(grep '^postfix_' "$WORK/metrics-after.txt")"
[ "$(value "$WORK/metrics-after.txt" postfix_up)" = 1 ] &&
	[ "$(value "$WORK/metrics-after.txt" 'postfix_queue_messages{queue="active"}')" != missing ]
tap_ok $? "$SCEN: postqueue -j answers the transport's user (queue sizes)" "$(grep '^postfix_\|^# postqueue' "$WORK/metrics-after.txt")"

scenario "supervised processes"
# each killed (SIGKILL) inside the container: the entrypoint starts it again
for proc in milter metrics count-log; do
	image_kill_supervised "$C" "$proc"
	tap_ok $? "$SCEN: $proc killed (pid $OLD_PID): started again (pid ${NEW_PID:-none})"
done
for i in $(seq 50); do	# (bounded: the new server binds its port)
	scrape "$WORK/metrics-again.txt" 2>/dev/null && break
	sleep 0.1
done
tap_ok $? "$SCEN: the metrics endpoint answers again" "$(head -3 "$WORK/metrics-again.txt")"
for i in $(seq 50); do	# (bounded: the new milter opens its socket)
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@nowhere.example --quit-after RCPT 2>&1)
	printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 .*MAIL_NOPE' && break
	sleep 0.2
done
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 .*MAIL_NOPE'
tap_ok $? "$SCEN: the new milter answers (550 5.1.2 for an unknown destination)" "$(printf '%s\n' "$out" | grep '^<')"
out=$(pdm exec "$C" /usr/libexec/btprelay/health ready 2>&1)
tap_ok $? "$SCEN: health ready" "$out"
sed "s/^Subject: .*/Subject: $MARK/" "$WORK/msg.eml" > "$WORK/msg-again.eml"
qid=$(send_mail sender@client.test user@corp.example --data "$WORK/msg-again.eml")
# (the status line reaches the follower through the new log counter)
expect_status "$qid" user@corp.example sent 'relay=.*btprelay-lmtp'
expect_relay 1 '.rcpt_to == ["user@corp.example"]'
sleep 1	# the follower's last lines
image_logs "$C" "$WORK/log/stdout-supervised.log"
n=$(grep -c '^btprelay: warning: \(metrics\|count-log\|milter\) ended (status 137); starting it again in 1 s$' "$WORK/log/stdout-supervised.log")
[ "$n" = 3 ]
tap_ok $? "$SCEN: one warning line for each" "$(grep '^btprelay: warning' "$WORK/log/stdout-supervised.log")"
scrape "$WORK/metrics-again.txt"
n=$(grep -c "postfix/[a-z]*\[[0-9]*\]: [0-9A-Za-z]*: to=<.*, dsn=2\.[0-9.]*, status=sent " "$WORK/log/stdout-supervised.log")
[ "$(value "$WORK/metrics-again.txt" 'postfix_deliveries_total{status="sent",dsn_class="2"}')" = "$n" ]
tap_ok $? "$SCEN: the new log counter went on counting: status=sent is the stdout's ($n)" \
	"$(grep '^postfix_deliveries' "$WORK/metrics-again.txt")"

scenario "unknown destination"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@nowhere.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 .*MAIL_NOPE'
tap_ok $? "$SCEN: 550 5.1.2 at RCPT" "$(printf '%s\n' "$out" | grep '^<')"

scenario "Destination Service outage"
emu POST /faults '{"destination":"http500"}' >/dev/null
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@outage.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 451 4\.'
tap_ok $? "$SCEN: 451 at RCPT" "$(printf '%s\n' "$out" | grep '^<')"
out=$(pdm exec "$C" /usr/libexec/btprelay/health ready 2>&1)
tap_ok $? "$SCEN: still ready" "$out"
emu POST /faults/clear >/dev/null

scenario "who may submit"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --local-interface 127.0.0.2 --from a@client.test --to user@corp.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 .*Relay access denied'
tap_ok $? "$SCEN: a client outside BTPRELAY_MYNETWORKS: 554 5.7.1 Relay access denied" "$(printf '%s\n' "$out" | grep '^<')"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@elsewhere.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 '
tap_ok $? "$SCEN: a domain that is not routed: 554 5.7.1" "$(printf '%s\n' "$out" | grep '^<')"

scenario "SMTP AUTH"
# smtp_auth CREDENTIALS [send] - from 127.0.0.2 (outside BTPRELAY_MYNETWORKS):
# EHLO, STARTTLS, EHLO, AUTH with the user and password in the file CREDENTIALS,
# then (send) one message; what happened, one fact a line
smtp_auth() {
	python3 - "$SMTP_PORT" "$EMU/certs/ca.pem" "$1" "${2:-}" "$MARK" 2>&1 <<'PY'
import smtplib, ssl, sys
port, ca, cred, mode, mark = sys.argv[1:]
user, pw = open(cred).read().split("\n")[:2]
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.test",
                 source_address=("127.0.0.2", 0), timeout=30)
s.ehlo()
print("plain auth:", s.esmtp_features.get("auth", "none"))
s.starttls(context=ssl.create_default_context(cafile=ca))
s.ehlo()
print("tls auth:", s.esmtp_features.get("auth", "none").strip())
try:
    code, text = s.login(user, pw)
    print("login:", code)
except smtplib.SMTPAuthenticationError as e:
    print("login:", e.smtp_code, e.smtp_error.decode())
if mode == "send":
    msg = ("From: a@client.test\r\nTo: user@corp.example\r\nSubject: %s\r\n"
           "Message-Id: <%s@client.test>\r\n\r\nsent by an authenticated client\r\n" % (mark, mark))
    s.mail("a@client.test")
    print("rcpt:", s.rcpt("user@corp.example")[0])
    code, text = s.data(msg)
    print("data:", code, text.decode())
s.quit()
PY
}
out=$(smtp_auth "$WORK/submit-good.txt" send)
printf '%s\n' "$out" | grep -qx 'plain auth: none'
tap_ok $? "$SCEN: no AUTH before STARTTLS (smtpd_tls_auth_only)" "$out"
printf '%s\n' "$out" | grep -q '^tls auth: .*PLAIN' && printf '%s\n' "$out" | grep -q '^tls auth: .*LOGIN'
tap_ok $? "$SCEN: AUTH PLAIN LOGIN after STARTTLS" "$out"
printf '%s\n' "$out" | grep -qx 'login: 235' && printf '%s\n' "$out" | grep -qx 'rcpt: 250'
tap_ok $? "$SCEN: good credentials from outside BTPRELAY_MYNETWORKS: 235, and RCPT 250" "$out"
aqid=$(printf '%s\n' "$out" | sed -n 's/^data: 250 .*queued as \([0-9A-Za-z]*\).*/\1/p')
expect_status "$aqid" user@corp.example sent 'relay=.*btprelay-lmtp'
expect_relay 1 '.mail_from == "a@client.test"' '.rcpt_to == ["user@corp.example"]'
grep -q "postfix/smtpd\[[0-9]*\]: $aqid: client=.*\[127\.0\.0\.2\], sasl_method=PLAIN, sasl_username=alice" "$WORK/log/maillog"
tap_ok $? "$SCEN: Postfix logged the authenticated client" "$(grep "$aqid: client=" "$WORK/log/maillog")"
out=$(smtp_auth "$WORK/submit-bad.txt")
printf '%s\n' "$out" | grep -q '^login: 535 5\.7\.8 '
tap_ok $? "$SCEN: a wrong password: 535 5.7.8" "$out"

SCEN="stdout"
sleep 1	# the follower's last lines
image_logs "$C" "$WORK/log/stdout-main.log"
grep -q "postfix/lmtp\[[0-9]*\]: $qid: to=<user@corp.example>.*status=sent" "$WORK/log/stdout-main.log"
tap_ok $? "$SCEN: Postfix's status=sent line" "$(tail -5 "$WORK/log/stdout-main.log")"
grep -q "postfix/smtpd\[[0-9]*\]: NOQUEUE: milter-reject: RCPT from .*550 5\.1\.2" "$WORK/log/stdout-main.log"
tap_ok $? "$SCEN: Postfix's milter-reject line"
expect_no_secret_encodings "$WORK/log/stdout-main.log"

SCEN="SIGTERM"
pdm stop -t 30 "$C" >/dev/null 2>&1
rc=$(image_exit_code "$C")
[ "$rc" = 0 ]
tap_ok $? "$SCEN: the container ends with 0" "exit code $rc"
image_logs "$C" "$WORK/log/stdout-main.log"
# (postfix-script's own "stopping" line may be lost: postlogd stops with the rest)
grep -q '^btprelay: stopping on SIGTERM: postfix stop' "$WORK/log/stdout-main.log" &&
	grep -q '^btprelay: stopped$' "$WORK/log/stdout-main.log"
tap_ok $? "$SCEN: the entrypoint ran postfix stop, waited for it, and ended" "$(tail -5 "$WORK/log/stdout-main.log")"

# --- the pipe(8) route type ----------------------------------------------------
scenario "BTPRELAY_ROUTE_TYPE=pipe"
STATUS_AGENT=pipe
SMTP_PORT=$(free_port)
P=btprelay-test-$$-pipe
image_run "$P" "${COMMON[@]}" --tmpfs /var/spool/postfix:rw,size=64m,mode=755 \
	-e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM" -e BTPRELAY_ROUTE_TYPE=pipe \
	-e "BTPRELAY_SMTP_PORT=$SMTP_PORT" -e BTPRELAY_MYNETWORKS=127.0.0.0/8 -e BTPRELAY_METRICS_LISTEN=no
image_follow "$P" "$WORK/log/maillog"
image_wait_ready "$P"
tap_ok $? "$SCEN: ready" "$(image_logs "$P" /dev/stdout | tail -5)"
cp "$WORK/msg.eml" "$WORK/msg2.eml"
sed -i "s/$(sed -n 's/^Subject: //p' "$WORK/msg.eml")/$MARK/" "$WORK/msg2.eml"
qid=$(send_mail sender@client.test user@corp.example --data "$WORK/msg2.eml")
expect_status "$qid" user@corp.example sent 'relay=btprelay'
expect_relay 1
sleep 1
image_logs "$P" "$WORK/log/stdout-pipe.log"
grep -q "btprelay-transport\[[0-9]*\]: $qid: to=<user@corp.example>.*status=sent" "$WORK/log/stdout-pipe.log"
tap_ok $? "$SCEN: stdout has btprelay-transport's line" "$(grep -v postfix/ "$WORK/log/stdout-pipe.log" | tail -3)"
pdm stop -t 30 "$P" >/dev/null 2>&1

# --- the default mynetworks: the container's own networks -------------------------
# The container gets a network namespace of its own with one point-to-point
# link to the host (10.251.x.2/32, peer 10.251.x.1), so the host is outside
# every subnet of the container's interfaces: relaying for it must be refused
# with nothing configured.
scenario "default mynetworks"
if command -v ip >/dev/null 2>&1; then
	NS=btprelay-test-$$
	HV=btpt$$h; CV=btpt$$c
	IMAGE_NETNS=$NS IMAGE_VETH=$HV	# removed at exit
	NET=10.251.$(( $$ % 250 ))
	ip netns add "$NS" && ip link add "$HV" type veth peer name "$CV" && ip link set "$CV" netns "$NS" &&
		ip addr add "$NET.1/32" peer "$NET.2" dev "$HV" && ip link set "$HV" up &&
		ip -n "$NS" addr add "$NET.2/32" peer "$NET.1" dev "$CV" && ip -n "$NS" link set "$CV" up &&
		ip -n "$NS" link set lo up
	tap_ok $? "$SCEN: a network namespace with a point-to-point link"
	D=btprelay-test-$$-default
	IMAGE_NETWORK=ns:/run/netns/$NS image_run "$D" -v "$WORK/bindings:/bindings:ro" -v "$WORK/ca:/ca:ro" \
		--tmpfs /var/spool/postfix:rw,size=64m,mode=755 \
		-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem \
		-e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM"
	image_wait_ready "$D"
	tap_ok $? "$SCEN: ready" "$(image_logs "$D" /dev/stdout | tail -5)"
	mn=$(pdm exec "$D" postconf -h mynetworks 2>&1)
	printf '%s\n' "$mn" | grep -q "$NET\.2/32" && ! printf '%s\n' "$mn" | grep -q "$NET\.1\|0\.0\.0\.0/0"
	tap_ok $? "$SCEN: mynetworks is the container's own networks ($mn)" "$mn"
	out=$(swaks --server "$NET.2:25" --from a@client.test --to user@corp.example --quit-after RCPT 2>&1)
	printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 .*Relay access denied'
	tap_ok $? "$SCEN: a client outside them: 554 5.7.1 Relay access denied" "$(printf '%s\n' "$out" | grep '^<\|\*\*\*')"
	pdm rm -f -t 10 "$D" >/dev/null 2>&1
else
	echo "# SKIP default mynetworks: ip (iproute2) not installed"
fi

# --- routes from the cockpit (BTPRELAY_ROUTES unset) -------------------------------
scenario "routes from the cockpit"
STATUS_AGENT=lmtp
SMTP_PORT=$(free_port)
R=btprelay-test-$$-cockpit
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=cockpit.example, .cockpit.example"
image_run "$R" "${COMMON[@]}" --tmpfs /var/spool/postfix:rw,size=64m,mode=755 \
	-e "BTPRELAY_SMTP_PORT=$SMTP_PORT" -e BTPRELAY_MYNETWORKS=127.0.0.1/32 -e BTPRELAY_METRICS_LISTEN=no \
	-e BTPRELAY_ROUTES_INTERVAL=5 -e 'BTPRELAY_CONF=destination_cache_ttl = 2'
image_follow "$R" "$WORK/log/maillog"
image_wait_ready "$R"
tap_ok $? "$SCEN: ready without BTPRELAY_ROUTES" "$(image_logs "$R" /dev/stdout | tail -5)"
image_logs "$R" "$WORK/log/stdout-cockpit.log"
grep -q '^btprelay: routes from the cockpit: 2 (0 conflicts): \.cockpit\.example MAIL_ONPREM, cockpit\.example MAIL_ONPREM$' "$WORK/log/stdout-cockpit.log"
tap_ok $? "$SCEN: the entrypoint built the table from btprelay.domains" "$(grep '^btprelay' "$WORK/log/stdout-cockpit.log")"
sed "s/^Subject: .*/Subject: $MARK/; s/^To: .*/To: user@cockpit.example/" "$WORK/msg.eml" > "$WORK/msg3.eml"
qid=$(send_mail sender@client.test user@cockpit.example --data "$WORK/msg3.eml")
expect_status "$qid" user@cockpit.example sent 'relay=.*btprelay-lmtp-MAIL_ONPREM' 'dsn=2\.0\.0'
expect_relay 1 '.rcpt_to == ["user@cockpit.example"]' '.via_proxy == true'
expect_body "$WORK/msg3.eml"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@corp.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 .*Relay access denied'
tap_ok $? "$SCEN: a domain no destination claims: 554 5.7.1 at RCPT" "$(printf '%s\n' "$out" | grep '^<')"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --local-interface 127.0.0.2 --from a@client.test --to user@cockpit.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 '
tap_ok $? "$SCEN: a claimed domain, but a client outside BTPRELAY_MYNETWORKS: 554 5.7.1" "$(printf '%s\n' "$out" | grep '^<')"
# a destination added in the cockpit: routed after the cache TTL and a refresh
dest_clone MAIL_ADDED MAIL_ONPREM "btprelay.domains=added.example"
# (bounded: the TTL, one refresh interval, Postfix's reload)
for i in $(seq 60); do
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@added.example --quit-after RCPT 2>&1)
	# (the log line is followed from the container: it may land after the route does)
	printf '%s\n' "$out" | grep -q '^<-  250 2\.1\.5 ' &&
		grep -q '^btprelay: routes updated: .*added\.example MAIL_ADDED' "$WORK/log/maillog" && break
	sleep 1
done
printf '%s\n' "$out" | grep -q '^<-  250 2\.1\.5 ' &&
	grep -q '^btprelay: routes updated: .*added\.example MAIL_ADDED' "$WORK/log/maillog"
tap_ok $? "$SCEN: a destination added in the cockpit: the refresh routes its domain" "$(printf '%s\n' "$out" | grep '^<'; grep '^btprelay' "$WORK/log/maillog")"
qid=$(send_mail sender@client.test user@added.example --header "Subject: $MARK-added")
expect_status "$qid" user@added.example sent 'relay=.*btprelay-lmtp-MAIL_ADDED'
pdm stop -t 30 "$R" >/dev/null 2>&1
rc=$(image_exit_code "$R")
image_logs "$R" "$WORK/log/stdout-cockpit.log"
[ "$rc" = 0 ] && grep -q '^btprelay: stopped$' "$WORK/log/stdout-cockpit.log"
tap_ok $? "$SCEN: SIGTERM stops the refresh loop too: exit 0" "exit $rc: $(tail -3 "$WORK/log/stdout-cockpit.log")"

scenario "routes from the cockpit: a start during a Destination Service outage"
SMTP_PORT=$(free_port)
O=btprelay-test-$$-cockpit-outage
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=cockpit.example"
emu POST /faults '{"destination":"http500"}' >/dev/null
image_run "$O" "${COMMON[@]}" --tmpfs /var/spool/postfix:rw,size=64m,mode=755 \
	-e "BTPRELAY_SMTP_PORT=$SMTP_PORT" -e BTPRELAY_MYNETWORKS=127.0.0.0/8 -e BTPRELAY_ROUTES_INTERVAL=5 \
	-e BTPRELAY_METRICS_LISTEN=no
image_wait_ready "$O"
tap_ok $? "$SCEN: ready all the same" "$(image_logs "$O" /dev/stdout | tail -5)"
image_logs "$O" "$WORK/log/stdout-outage.log"
[ "$(grep -c '^btprelay: warning: routes: .*starting with an empty table' "$WORK/log/stdout-outage.log")" = 1 ]
tap_ok $? "$SCEN: one warning line" "$(grep '^btprelay' "$WORK/log/stdout-outage.log")"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@cockpit.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 450 4\.7\.1 '
tap_ok $? "$SCEN: no table yet: 450 4.7.1 at RCPT (the client retries), not 554" "$(printf '%s\n' "$out" | grep '^<')"
emu POST /faults/clear >/dev/null
for i in $(seq 60); do	# bounded: a refresh interval and Postfix's reload
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@cockpit.example --quit-after RCPT 2>&1)
	# (the log line is followed from the container: it may land after the route does)
	printf '%s\n' "$out" | grep -q '^<-  250 2\.1\.5 ' &&
		grep -q '^btprelay: routes updated: .*added\.example MAIL_ADDED' "$WORK/log/maillog" && break
	sleep 1
done
printf '%s\n' "$out" | grep -q '^<-  250 2\.1\.5 '
tap_ok $? "$SCEN: the service back: the refresh routes cockpit.example" "$(printf '%s\n' "$out" | grep '^<')"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@corp.example --quit-after RCPT 2>&1)
printf '%s\n' "$out" | grep -q '<\*\* 554 5\.7\.1 '
tap_ok $? "$SCEN: and an unclaimed domain is refused with 554 again" "$(printf '%s\n' "$out" | grep '^<')"
pdm stop -t 30 "$O" >/dev/null 2>&1

# --- Kyma's proxy in trusted mode: no connectivity binding, the proxy from env ----
scenario "trusted proxy from the environment"
STATUS_AGENT=lmtp
SMTP_PORT=$(free_port)
T=btprelay-test-$$-trusted
PROXY_PORT=$(jq .proxy "$EMU/ports.json")
mkdir -p "$WORK/bindings-dest"
cp -a "$WORK/bindings/destination" "$WORK/bindings-dest/"
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
image_run "$T" -v "$WORK/bindings-dest:/bindings:ro" -v "$WORK/ca:/ca:ro" \
	-e SERVICE_BINDING_ROOT=/bindings -e BTPRELAY_CA_FILE=/ca/ca.pem -e BTPRELAY_INET_INTERFACES=127.0.0.1 \
	--tmpfs /var/spool/postfix:rw,size=64m,mode=755 \
	-e "BTPRELAY_ROUTES=corp.example=MAIL_ONPREM" -e "BTPRELAY_SMTP_PORT=$SMTP_PORT" \
	-e BTPRELAY_MYNETWORKS=127.0.0.0/8 -e BTPRELAY_METRICS_LISTEN=no \
	-e onpremise_proxy_host=127.0.0.1 -e "onpremise_socks5_proxy_port=$PROXY_PORT"
image_follow "$T" "$WORK/log/maillog"
image_wait_ready "$T"
tap_ok $? "$SCEN: ready with a destination binding only" "$(image_logs "$T" /dev/stdout | tail -5)"
out=$(pdm exec "$T" sh -c 'grep "^proxy_" /run/btprelay/btprelay.conf; btprelay probe MAIL_ONPREM' 2>&1)
printf '%s\n' "$out" | grep -q '^proxy\.authentication: none (proxy_authentication = auto, no connectivity binding, the proxy from proxy_host/proxy_port)$'
tap_ok $? "$SCEN: btprelay.conf has the proxy; probe: authentication none" "$out"
sed "s/^Subject: .*/Subject: $MARK/" "$WORK/msg.eml" > "$WORK/msg4.eml"
qid=$(send_mail sender@client.test user@corp.example --data "$WORK/msg4.eml")
expect_status "$qid" user@corp.example sent 'relay=.*btprelay-lmtp' 'dsn=2\.0\.0'
expect_relay 1 '.via_proxy == true'
expect_body "$WORK/msg4.eml"
out=$(emu GET /proxy | jq -c '.[-1]')
printf '%s\n' "$out" | jq -e '.auth == "trusted_0x80" and .method == "80" and .jwt_length == 0 and .location_id == "LOC1" and .rep == 0' >/dev/null
tap_ok $? "$SCEN: the proxy saw method 0x80, an empty JWT and location LOC1" "$out"
n=$(emu GET /counters | jq '.token_requests.connectivity')
[ "$n" = 0 ]
tap_ok $? "$SCEN: no connectivity token was requested" "connectivity tokens: $n"
emu POST /faults/clear >/dev/null
pdm stop -t 30 "$T" >/dev/null 2>&1

# --- bad configuration: exit 78, one line ----------------------------------------
# bad_config NAME REGEX [podman-run-args...] - the container ends at start with
# 78 and exactly one line of output, which matches REGEX
bad_config() {
	local name=$1 re=$2 c=btprelay-test-$$-bad$TAP_N rc out
	shift 2
	image_run "$c" "${COMMON[@]}" --tmpfs /var/spool/postfix:rw,size=16m,mode=755 "$@"
	rc=$(image_exit_code "$c")
	image_logs "$c" "$WORK/log/bad-$TAP_N.log"
	out=$(cat "$WORK/log/bad-$TAP_N.log")
	[ "$rc" = 78 ] && [ "$(grep -c . "$WORK/log/bad-$TAP_N.log")" = 1 ] && printf '%s\n' "$out" | grep -q -- "$re"
	tap_ok $? "bad configuration, $name: exit 78 and one line /$re/" "exit $rc: $out"
}
bad_config "no routes, no binding for the cockpit's" '^btprelay: fatal: BTPRELAY_ROUTES is not set, and there is no destination binding' \
	-e SERVICE_BINDING_ROOT=
bad_config "route without destination" '^btprelay: fatal: BTPRELAY_ROUTES: "corp.example": expected DOMAIN=DESTINATION' \
	-e BTPRELAY_ROUTES=corp.example
bad_config "bad domain" '^btprelay: fatal: BTPRELAY_ROUTES: "corp..example=X"' \
	-e BTPRELAY_ROUTES=corp..example=X
bad_config "bad destination name" '^btprelay: fatal: BTPRELAY_ROUTES: "corp.example=A/B": the destination name' \
	-e "BTPRELAY_ROUTES=corp.example=A/B"
bad_config "bad route type" '^btprelay: fatal: BTPRELAY_ROUTE_TYPE' \
	-e BTPRELAY_ROUTES=corp.example=X -e BTPRELAY_ROUTE_TYPE=smtp
bad_config "open relay" '^btprelay: fatal: BTPRELAY_MYNETWORKS: "0.0.0.0/0" would make an open relay' \
	-e BTPRELAY_ROUTES=corp.example=X -e BTPRELAY_MYNETWORKS=127.0.0.0/8,0.0.0.0/0
bad_config "binding root missing" '^btprelay: fatal: SERVICE_BINDING_ROOT: /nonexistent is not a directory' \
	-e BTPRELAY_ROUTES=corp.example=X -e SERVICE_BINDING_ROOT=/nonexistent
# a destination binding without its client secret
mkdir -p "$WORK/bindings-bad"
cp -a "$WORK/bindings/destination" "$WORK/bindings-bad/"
rm -f "$WORK/bindings-bad/destination/clientsecret"
bad_config "binding without clientsecret" '^btprelay: fatal: btprelay check: bindings: .*clientsecret' \
	-e BTPRELAY_ROUTES=corp.example=X -v "$WORK/bindings-bad:/bindings-bad:ro" -e SERVICE_BINDING_ROOT=/bindings-bad
bad_config "VCAP_SERVICES not JSON" '^btprelay: fatal: btprelay check: bindings: VCAP_SERVICES' \
	-e BTPRELAY_ROUTES=corp.example=X -e 'VCAP_SERVICES={"destination":['
bad_config "unreadable CA file" '^btprelay: fatal: BTPRELAY_CA_FILE: /ca/none.pem cannot be read' \
	-e BTPRELAY_ROUTES=corp.example=X -e BTPRELAY_CA_FILE=/ca/none.pem
install -d -m 755 "$WORK/submit-bad"
printf 'carol:%s\nno colon here\n' "$SUBMIT_PW" > "$WORK/submit-bad/users"
bad_config "SMTP AUTH users file without user:password" '^btprelay: fatal: BTPRELAY_SUBMIT_USERS_FILE: /submit-bad/users line 2: expected user:password' \
	-e BTPRELAY_ROUTES=corp.example=X -v "$WORK/submit-bad:/submit-bad:ro" -e BTPRELAY_SUBMIT_USERS_FILE=/submit-bad/users
bad_config "SMTP AUTH users file missing" '^btprelay: fatal: BTPRELAY_SUBMIT_USERS_FILE: /nonexistent/users cannot be read' \
	-e BTPRELAY_ROUTES=corp.example=X -e BTPRELAY_SUBMIT_USERS_FILE=/nonexistent/users
bad_config "bad metrics address" '^btprelay: fatal: BTPRELAY_METRICS_LISTEN' \
	-e BTPRELAY_ROUTES=corp.example=X -e BTPRELAY_METRICS_LISTEN=everywhere
bad_config "bad Postfix setting" '^btprelay: fatal: BTPRELAY_POSTCONF' \
	-e BTPRELAY_ROUTES=corp.example=X -e 'BTPRELAY_POSTCONF=this is not a setting'

tap_done
