#!/bin/bash
# test-trusted.sh - Kyma's Connectivity proxy in trusted mode (no JWT) through a
# real Postfix, with NO connectivity binding at all (the destination binding
# stays: the Destination Service is still asked): proxy_authentication = auto
# picks "none" from proxy_host/proxy_port. For each server behaviour of the
# emulator's proxy (0x80 with an empty JWT, or 0x00) mail arrives byte for
# byte; with 0x80 the proxy received the location ID, with 0x00 a warning says
# it could not. A proxy that refuses both methods (05 FF) defers 4.7.0 with a
# clear text and the message stays queued. `btprelay check` and `probe` say
# which mode and why (also with Kyma's connectivity-proxy-info values in the
# environment); no secret appears anywhere at log level debug.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init trusted
CLI_SRC=$top_builddir/plugin/cli/btprelay
[ -x "$CLI_SRC" ] || { echo "Bail out! $CLI_SRC not built"; exit 99; }
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
command -v runuser >/dev/null 2>&1 || harness_skip "runuser not installed"
harness_start_emulator
PROXY_PORT=$(jq .proxy "$EMU/ports.json")
# the destination binding only: no connectivity binding
jq 'del(.connectivity)' "$EMU/vcap.json" > "$WORK/etc/dest-only.json"
chown "$TRANSPORT_USER" "$WORK/etc/dest-only.json"
chmod 600 "$WORK/etc/dest-only.json"
harness_install_transport "bindings_file = $WORK/etc/dest-only.json" \
	"proxy_host = 127.0.0.1" "proxy_port = $PROXY_PORT"
harness_start_postfix
. "$top_srcdir/tests/lib/scenario.sh"
install -m 755 "$CLI_SRC" "$WORK/bin/btprelay"
CONF=$WORK/etc/btprelay.conf
mkdir -p "$WORK/out"

# body FILE - a message whose body tests the byte path: leading dots, a lone dot, 8-bit text
body() {
	printf 'Subject: %s\nFrom: sender@client.test\nTo: user@corp.example\n\n.leading dot\n..two dots\n.\nGr\303\274\303\237e aus K\303\266ln\nlast line\n' "$MARK" > "$1"
}

# last_handshake - the emulator's record of the newest proxy handshake (GET /proxy)
last_handshake() {
	emu GET /proxy | jq -c '.[-1]'
}

# no_token_fetched - the token service issued nothing to the connectivity client
no_token_fetched() {
	local n
	n=$(emu GET /counters | jq '.token_requests.connectivity')
	[ "$n" = 0 ]
	tap_ok $? "$SCEN: no connectivity token was requested" "connectivity tokens: $n"
}

# --- the proxy chooses 0x80: JWT length 0, the location ID reaches it ---------
scenario "trusted proxy choosing 0x80 (empty JWT, location ID)"
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
body "$WORK/body-80.txt"
q=$(send_mail sender@client.test user@corp.example --data "@$WORK/body-80.txt")
expect_status "$q" user@corp.example sent 'dsn=2.0.0'
expect_relay 1 '.via_proxy == true and .location_id == "LOC1"' \
	'.rcpt_to == ["user@corp.example"] and .mail_from == "sender@client.test"'
expect_body "$WORK/body-80.txt"
h=$(last_handshake)
printf '%s' "$h" | jq -e '.auth == "trusted_0x80" and .methods == "8000" and .method == "80"
	and .jwt_length == 0 and .location_id == "LOC1" and .rep == 0' >/dev/null
tap_ok $? "$SCEN: the proxy saw greeting 05 02 80 00, JWT length 0 and location LOC1" "$h"
no_token_fetched

# the LMTP route goes the same way (btprelay-lmtp behind Postfix's lmtp(8))
scenario "trusted proxy choosing 0x80, LMTP route"
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
q=$(send_mail sender@client.test user@lmtp.example --header "Subject: $MARK")
STATUS_AGENT=lmtp expect_status "$q" user@lmtp.example sent
expect_relay 1 '.via_proxy == true and .location_id == "LOC1"'
no_token_fetched

# --- the proxy chooses 0x00: straight to CONNECT; the location ID cannot go ----
scenario "trusted proxy choosing 0x00 (no authentication)"
emu POST /faults '{"proxy_auth":"trusted_0x00"}' >/dev/null
: > "$BTPRELAY_LOG"
body "$WORK/body-00.txt"
q=$(send_mail sender@client.test user@corp.example --data "@$WORK/body-00.txt")
expect_status "$q" user@corp.example sent 'dsn=2.0.0'
expect_relay 1 '.via_proxy == true and .location_id == null'
expect_body "$WORK/body-00.txt"
h=$(last_handshake)
printf '%s' "$h" | jq -e '.method == "00" and .jwt_length == null and .rep == 0' >/dev/null
tap_ok $? "$SCEN: the proxy chose 0x00, no auth request came" "$h"
grep -q "$q: .*proxy chose no authentication (method 0x00): it cannot receive the Cloud Connector location ID \"LOC1\"" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: a warning says the location ID cannot reach the proxy" "$(tail -5 "$BTPRELAY_LOG")"
no_token_fetched

# --- the proxy refuses both methods: 4.7.0, queued, then delivered ------------
scenario "proxy refusing a request without a token (05 FF)"
emu POST /faults '{"proxy_auth":"refuse_auth"}' >/dev/null
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example deferred 'dsn=4\.7\.0' \
	'proxy refused to work without a token: it accepted neither method 0x80 without a JWT nor 0x00 (method reply 05 ff)' \
	'proxy_authentication = token and a connectivity binding'
out=$(wait_deferred "$q")
tap_ok $? "$SCEN: the message stays in Postfix's queue, deferred" "$out"
[ "$(emu GET /counters | jq .relay_messages)" = 0 ]
tap_ok $? "$SCEN: nothing reached the relay"
emu POST /faults/clear >/dev/null
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
flush_queue
line=$(wait_status "$q" user@corp.example sent)
tap_ok $? "$SCEN: delivered once the proxy accepts" "$line"
expect_relay 1 '.location_id == "LOC1"'

# REP codes keep their meaning without a token
scenario "trusted proxy answering REP 02"
emu POST /faults '{"proxy_auth":"trusted_0x80","proxy_rep":2}' >/dev/null
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example deferred 'dsn=4\.3\.5' \
	'REP 02 (no matching host mapping in the Cloud Connector access control)'

# --- btprelay check and probe ---------------------------------------------------
# cli [env NAME=VALUE...] ARGS... - btprelay as the transport's user; sets RC, OUT
cli() {
	local envs=()
	while [ "${1:-}" = env ]; do envs+=("$2"); shift 2; done
	OUT=$WORK/out/$((${#OUTS[@]} + 1)).out
	OUTS+=("$OUT")
	runuser -u "$TRANSPORT_USER" -- env "${envs[@]}" "$WORK/bin/btprelay" -c "${CLI_CONF:-$CONF}" \
		"$@" > "$OUT" 2>&1
	RC=$?
}
OUTS=()
# expect_out DESCRIPTION ERE... - every extended regex matches a line of the last output
expect_out() {
	local what=$1 re
	shift
	for re in "$@"; do
		grep -Eq -- "$re" "$OUT"
		tap_ok $? "$what: /$re/" "exit $RC: $(cat "$OUT")"
	done
}

scenario "btprelay check and probe, trusted proxy"
cli check
[ "$RC" = 0 ]
tap_ok $? "check: exit 0 without a connectivity binding" "$(cat "$OUT")"
expect_out "check" '^ok: connectivity binding: none$' \
	"^ok: proxy: 127\\.0\\.0\\.1:$PROXY_PORT, authentication none \\(proxy_authentication = auto, no connectivity binding, the proxy from proxy_host/proxy_port\\)$"
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
cli probe MAIL_ONPREM
[ "$RC" = 0 ]
tap_ok $? "probe (0x80): exit 0" "$(cat "$OUT")"
expect_out "probe (0x80)" '^proxy\.authentication: none \(proxy_authentication = auto, no connectivity binding' \
	'^token: not used \(the proxy is trusted: no JWT\)$' \
	'^proxy\.handshake: ok \(no token, the proxy chose method 0x80 \(JWT length 0\), location ID LOC1, CONNECT mail\.corp\.internal:25' \
	'^smtp\.ehlo: ok' '^auth: ok \(user relayuser' '^result: ok$'
emu POST /faults '{"proxy_auth":"trusted_0x00"}' >/dev/null
cli probe MAIL_ONPREM
[ "$RC" = 0 ]
tap_ok $? "probe (0x00): exit 0" "$(cat "$OUT")"
expect_out "probe (0x00)" '^proxy\.handshake: ok \(no token, the proxy chose method 0x00, location ID LOC1 not sent \(the proxy cannot receive it\), CONNECT mail\.corp\.internal:25' \
	'^result: ok$'
emu POST /faults '{"proxy_auth":"refuse_auth"}' >/dev/null
cli probe MAIL_ONPREM
[ "$RC" = 75 ]
tap_ok $? "probe (05 FF): exit 75" "$(cat "$OUT")"
expect_out "probe (05 FF)" '^proxy\.handshake: failed: 4\.7\.0 proxy refused to work without a token'
no_token_fetched

# Kyma: the ConfigMap connectivity-proxy-info as environment variables (envFrom)
harness_install_transport "bindings_file = $WORK/etc/dest-only.json"
emu POST /faults '{"proxy_auth":"trusted_0x80"}' >/dev/null
cli env onpremise_proxy_host=127.0.0.1 env "onpremise_socks5_proxy_port=$PROXY_PORT" probe MAIL_ONPREM
[ "$RC" = 0 ]
tap_ok $? "probe with the proxy from the environment: exit 0" "$(cat "$OUT")"
expect_out "probe (environment)" \
	'^proxy\.authentication: none \(proxy_authentication = auto, no connectivity binding, the proxy from environment onpremise_proxy_host/onpremise_socks5_proxy_port\)$'
cli probe MAIL_ONPREM
[ "$RC" = 75 ]
tap_ok $? "probe without binding, proxy_host or environment: exit 75" "$(cat "$OUT")"
expect_out "probe (nothing)" '^proxy\.authentication: failed: 4\.3\.5 destination MAIL_ONPREM is OnPremise, but neither a connectivity service binding'

# explicit modes that cannot work say so
harness_install_transport "bindings_file = $WORK/etc/dest-only.json" "proxy_authentication = token" \
	"proxy_host = 127.0.0.1" "proxy_port = $PROXY_PORT"
cli check
[ "$RC" = 78 ]
tap_ok $? "check, proxy_authentication = token without a binding: exit 78" "$(cat "$OUT")"
expect_out "check (token, no binding)" '^error: proxy: proxy_authentication = token and no connectivity service binding is configured'
harness_install_transport "proxy_authentication = none" "proxy_host = 127.0.0.1" "proxy_port = $PROXY_PORT"
cli check
expect_out "check (none with a binding)" "^ok: proxy: 127\\.0\\.0\\.1:$PROXY_PORT, authentication none \\(proxy_authentication = none\\)$"
cli probe MAIL_ONPREM
[ "$RC" = 0 ]
tap_ok $? "probe, proxy_authentication = none beside a connectivity binding: no token used" "$(cat "$OUT")"
no_token_fetched

# --- no secret anywhere, at log level debug ---------------------------------------
SCEN="secrets"
grep -q 'no token (trusted mode), JWT length 0' "$BTPRELAY_LOG"
tap_ok $? "$SCEN: the debug log shows the trusted auth step" "$(grep 'proxy' "$BTPRELAY_LOG" | tail -5)"
expect_no_secrets "$BTPRELAY_LOG" "$WORK/log/maillog" "$WORK/log/emulator.log" "${OUTS[@]}"
tap_done
