#!/bin/bash
# test-cli.sh - the btprelay operator tool (btprelay(8)) against the BTP
# emulator: every command, its output lines and its exit status, run as the
# transport's user with the harness's configuration. No Postfix is needed.
# At the end, no secret the emulator handed out (client secrets, relay
# passwords, every token issued) may appear in anything the tool printed.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init cli
CLI_SRC=$top_builddir/plugin/cli/btprelay
[ -x "$CLI_SRC" ] || { echo "Bail out! $CLI_SRC not built"; exit 99; }
command -v runuser >/dev/null 2>&1 || harness_skip "runuser not installed"
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
harness_start_emulator
harness_install_transport
install -m 755 "$CLI_SRC" "$WORK/bin/btprelay"
CLI=$WORK/bin/btprelay
CONF=$WORK/etc/btprelay.conf
mkdir -p "$WORK/out"
N=0

# cli [env NAME=VALUE...] ARGS... - run btprelay as the transport's user with the
# harness's configuration; sets RC, OUT (stdout file), ERR (stderr file), CMD
cli() {
	local envs=()
	while [ "${1:-}" = env ]; do envs+=("$2"); shift 2; done
	N=$((N + 1))
	OUT=$WORK/out/$N.out
	ERR=$WORK/out/$N.err
	CMD="btprelay $*"
	runuser -u "$TRANSPORT_USER" -- env "${envs[@]}" "$CLI" -c "${CLI_CONF:-$CONF}" "$@" \
		> "$OUT" 2> "$ERR"
	RC=$?
}

# diag - what the last run printed, for a failed assertion
diag() {
	printf '$ %s  (exit %s)\n' "$CMD" "$RC"
	cat "$OUT"
	sed 's/^/stderr: /' "$ERR"
}

# expect_rc CODE - the last run's exit status
expect_rc() {
	[ "$RC" = "$1" ]
	tap_ok $? "$CMD: exit $1" "$(diag)"
}

# expect_out REGEX... - every extended regex matches a line of stdout
expect_out() {
	local re
	for re in "$@"; do
		grep -q -E -- "$re" "$OUT"
		tap_ok $? "$CMD: stdout /$re/" "$(diag)"
	done
}

# expect_err REGEX - stderr matches
expect_err() {
	grep -q -E -- "$1" "$ERR"
	tap_ok $? "$CMD: stderr /$1/" "$(diag)"
}

# expect_absent TEXT WHAT - the fixed string is neither in stdout nor in stderr
expect_absent() {
	! grep -q -F -- "$1" "$OUT" "$ERR"
	tap_ok $? "$CMD: $2 not printed" "$(diag)"
}

# --- usage ------------------------------------------------------------------
cli -V
expect_rc 0
expect_out '^btprelay [0-9]+\.[0-9]+'
cli frobnicate
expect_rc 64
expect_err 'unknown command'
cli resolve
expect_rc 64

# --- check ------------------------------------------------------------------
cli check
expect_rc 0
expect_out "^ok: configuration: $CONF \(owner root, mode 0644\)$" \
	"^ok: bindings: bindings file $WORK/etc/bindings.json \(owner btprelay, mode 0600\)$" \
	'^ok: destination binding: dest-lite \(client sb-clone-dest!b1, client secret' \
	'^ok: connectivity binding: conn-lite \(client sb-clone-conn!b2, .*proxy 127\.0\.0\.1:[0-9]+' \
	'^ok: tenant: provider$' \
	"^ok: log: $WORK/log/btprelay.log" \
	"^ok: cache_dir $WORK/cache \(owner btprelay, mode 0700\)$"
! grep -q '^error:' "$OUT"
tap_ok $? "$CMD: no error line" "$(diag)"

cp "$CONF" "$WORK/etc/broken.conf"
echo "no_such_key = 1" >> "$WORK/etc/broken.conf"
line=$(wc -l < "$WORK/etc/broken.conf")
CLI_CONF=$WORK/etc/broken.conf cli check
expect_rc 78
expect_out "^error: configuration: $WORK/etc/broken.conf:$line: unknown key \"no_such_key\"$"

chmod 644 "$WORK/etc/bindings.json"
cli check
expect_rc 78
expect_out "^error: bindings: bindings file $WORK/etc/bindings.json: (readable|accessible) by other users"
chmod 600 "$WORK/etc/bindings.json"

# --- resolve ----------------------------------------------------------------
emu POST /reset >/dev/null
password=$(emu GET /destinations/MAIL_ONPREM | jq -r '."mail.password"')
[ -n "$password" ] && [ "$password" != null ]
tap_ok $? "the emulator's relay password for MAIL_ONPREM is known to the test"
cli resolve MAIL_ONPREM
expect_rc 0
expect_out '^name: MAIL_ONPREM$' '^source: Destination Service$' '^tenant: provider$' \
	'^cache: not from the cache$' '^proxy_type: OnPremise$' \
	'^authentication: BasicAuthentication$' '^host: mail\.corp\.internal$' '^port: 25$' \
	'^location_id: LOC1$' '^mail\.user: relayuser$' '^mail\.password: \*\*\*\*\*\*\*\* \(set\)$' \
	'^mail\.smtp\.from: noreply@corp\.example$'
expect_absent "$password" "the relay password"
cli resolve MAIL_ONPREM
expect_rc 0
expect_out '^cache: hit, [0-9]+ s old$'

cli resolve MAIL_MISSING
expect_rc 1
expect_err '4\.3\.5 destination MAIL_MISSING not found'

# --- cache ------------------------------------------------------------------
cli cache list
expect_rc 0
expect_out '^destination-[0-9a-f]{64}\.json: MAIL_ONPREM .*; [0-9]+ s old; [0-9]+ bytes; fresh for [0-9]+ s$' \
	'^token-[0-9a-f]{64}\.json: destination \(provider\), token URL https://127\.0\.0\.1:[0-9]+, client sb-clone-dest!b1; ' \
	'^entries: [1-9]'
cli cache clear
expect_rc 0
expect_out '^removed: [1-9]'
cli cache list
expect_rc 0
expect_out '^entries: 0$'

# root acts as the owner of cache_dir (the library trusts only its own files)
cli resolve MAIL_ONPREM
N=$((N + 1)); OUT=$WORK/out/$N.out; ERR=$WORK/out/$N.err; CMD="btprelay cache list (as root)"
"$CLI" -c "$CONF" cache list > "$OUT" 2> "$ERR"
RC=$?
expect_rc 0
expect_out '^destination-[0-9a-f]{64}\.json: MAIL_ONPREM ' '^entries: [1-9]'
[ ! -s "$ERR" ]
tap_ok $? "$CMD: no warning about files of another user" "$(diag)"
cli cache clear
expect_out '^removed: [1-9]'

# the cache is emptied: nothing stands in while the Destination Service is down
emu POST /faults '{"destination":"refuse"}' >/dev/null
cli resolve MAIL_ONPREM
expect_rc 75
expect_err '4\.4\.3 Destination Service'
emu POST /faults/clear >/dev/null
cli cache clear

# --- token ------------------------------------------------------------------
cli token connectivity
expect_rc 0
expect_out '^binding: connectivity \(conn-lite, ' '^client_id: sb-clone-conn!b2$' \
	'^tenant: 4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d$' '^scopes: uaa\.resource$' \
	'^expires: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' '^expires_in: 43[0-9]{3} s$' \
	'^token: issued \([0-9]+ bytes, not shown\)$'
issued=$(tail -1 "$EMU/secrets.txt")
expect_absent "$issued" "the token just issued"
cli token destination
expect_rc 0
expect_out '^client_id: sb-clone-dest!b1$'
cli token ftp
expect_rc 64
emu POST /faults '{"token":"http401"}' >/dev/null
cli token connectivity
expect_rc 78
expect_err '4\.7\.0 connectivity token service .*HTTP 401'
emu POST /faults '{"token":"refuse"}' >/dev/null
cli token connectivity
expect_rc 75
expect_err '4\.4\.3 connectivity token service'
emu POST /faults/clear >/dev/null

# --- probe ------------------------------------------------------------------
emu POST /reset >/dev/null
cli probe MAIL_ONPREM
expect_rc 0
expect_out '^resolve: ok \(Destination Service' '^token: ok \(connectivity, provider' \
	'^proxy\.connect: ok \(127\.0\.0\.1' \
	'^proxy\.handshake: ok \(method 0x80, location ID LOC1, CONNECT mail\.corp\.internal:25' \
	'^smtp\.greeting: ok' '^smtp\.ehlo: ok' '^tls\.starttls: ok \(STARTTLS' \
	'^tls\.version: TLSv1\.3$' '^tls\.cipher: TLS_' '^tls\.peer\.subject: CN=mail\.corp\.internal$' \
	'^tls\.peer\.issuer: CN=btprelay test CA$' '^tls\.peer\.san: .*DNS:mail\.corp\.internal' \
	'^tls\.verify: ok$' '^auth\.mechanisms: PLAIN LOGIN$' '^auth: ok \(user relayuser' \
	'^smtp\.quit: sent$' '^result: ok$'
[ "$(emu GET /counters | jq .relay_messages)" = 0 ]
tap_ok $? "$CMD: no mail reached the relay" "$(emu GET /counters)"

emu POST /faults '{"proxy_rep":2}' >/dev/null
cli probe MAIL_ONPREM
expect_rc 75
expect_out '^proxy\.handshake: failed: 4\.[0-9]\.[0-9] proxy CONNECT mail\.corp\.internal:25 failed: REP 02 \(no matching host mapping in the Cloud Connector access control\)$' \
	'^result: failed$'
expect_err 'REP 02'
emu POST /faults/clear >/dev/null

emu POST /relay '{"cert":"wrongname"}' >/dev/null
cli probe MAIL_ONPREM
expect_rc 75
expect_out '^tls\.starttls: failed: 4\.7\.5 .*certificate verification failed'
emu POST /relay '{"cert":"relay"}' >/dev/null

# the probe makes the transport's TLS context and SMTP options (deliver.h)
emu POST /reset >/dev/null
emu POST /relay '{"cert":"selfsigned"}' >/dev/null
dest_clone T_ALL MAIL_NOLOC 'mail.smtp.ssl.trust=*'
cli probe T_ALL
expect_rc 0
expect_out '^tls\.warnings: mail\.smtp\.ssl\.trust=\*: the relay.s certificate is NOT verified' \
	'^tls\.starttls: ok' '^tls\.verify: \(not used: mail\.smtp\.ssl\.trust\)$' '^result: ok$'
FP_SELF=$(openssl x509 -in "$EMU/certs/selfsigned.pem" -noout -fingerprint -sha256 | sed 's/.*=//')
dest_clone T_PIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=$FP_SELF"
cli probe T_PIN
expect_rc 0
expect_out '^tls\.verify: \(not used: fingerprint pin\)$' "^tls\.peer\.sha256: $FP_SELF\$" '^result: ok$'
dest_clone T_BADPIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=12:34"
cli probe T_BADPIN
expect_rc 75
expect_out '^tls\.config: failed: 4\.3\.5 TLS configuration: mail\.smtp\.ssl\.fingerprint of destination T_BADPIN' \
	'^result: failed$'
emu POST /relay '{"cert":"wrongname"}' >/dev/null
dest_clone T_VNAME MAIL_NOLOC mail.smtp.ssl.verifyname=other.example
cli probe T_VNAME
expect_rc 0
expect_out '^tls\.verify_name: other\.example$' '^tls\.verify: ok$' '^result: ok$'
[ "$(emu GET /connections | jq -r '.[-1].sni')" = other.example ]
tap_ok $? "$CMD: SNI other.example" "$(emu GET /connections | jq -c '.[-1] | del(.commands)')"
emu POST /relay '{"cert":"relay"}' >/dev/null
dest_clone T_SSL MAIL_NOLOC mail.smtp.port=465 mail.smtp.ssl.enable=true
cli probe T_SSL
expect_rc 0
expect_out '^tls\.handshake: ok \(implicit TLS, mail\.smtp\.ssl\.enable' '^tls: implicit' \
	'^tls\.verify: ok$' '^result: ok$'
[ "$(emu GET /connections | jq -r '.[-1].port')" = relay_smtps ]
tap_ok $? "$CMD: implicit TLS on the relay's smtps port" "$(emu GET /connections | jq -c '.[-1] | del(.commands)')"
emu POST /relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}' >/dev/null
cli probe MAIL_OAUTH
expect_rc 0
expect_out '^auth\.mechanisms: PLAIN LOGIN XOAUTH2$' '^auth: ok \(XOAUTH2, user oauthuser' '^result: ok$'
[ "$(emu GET /connections | jq -r '.[-1].auth_mech')" = XOAUTH2 ]
tap_ok $? "$CMD: the relay saw AUTH XOAUTH2" "$(emu GET /connections | jq -c '.[-1] | del(.commands)')"

# certificates delivered with the destination: trusted by probe as by the transport
install -m 644 "$EMU/certs/selfsigned.pem" "$WORK/etc/unrelated-ca.pem"
sed "s|^smtp_tls_ca_file.*|smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem|" "$CONF" > "$WORK/etc/unrelated.conf"
chmod 644 "$WORK/etc/unrelated.conf"
ca_b64=$(base64 -w0 "$EMU/certs/ca.pem")
dest_clone T_CERTS MAIL_NOLOC \
	"certificates:=[{\"Name\": \"relay-ca.pem\", \"Type\": \"CERTIFICATE\", \"Content\": \"$ca_b64\"}]"
CLI_CONF=$WORK/etc/unrelated.conf cli resolve T_CERTS
expect_rc 0
expect_out '^certificates: 1$' '^certificate: relay-ca\.pem \(CERTIFICATE, [0-9]+ bytes base64\)$'
CLI_CONF=$WORK/etc/unrelated.conf cli probe T_CERTS
expect_rc 0
expect_out '^tls\.starttls: ok' '^tls\.verify: ok$' '^result: ok$'
CLI_CONF=$WORK/etc/unrelated.conf cli probe MAIL_NOLOC
expect_rc 75
expect_out '^tls\.starttls: failed: 4\.7\.5 .*unable to get local issuer certificate'

# not found is a return value, not a text: unusable destinations are not "not found"
dest_clone T_HTTP MAIL_NOLOC Type=HTTP
cli resolve T_HTTP
expect_rc 78
expect_err '4\.3\.5 destination T_HTTP: Type is HTTP, not MAIL'
dest_clone T_BAD64 MAIL_NOLOC 'certificates:=[{"Name": "x.pem", "Content": "not*base64"}]'
cli resolve T_BAD64
expect_rc 78
expect_err '4\.3\.5 destination T_BAD64: certificate x\.pem: Content is not valid base64'
cli probe MAIL_MISSING
expect_rc 75
expect_out '^resolve: failed: 4\.3\.5 destination MAIL_MISSING not found'
emu POST /reset >/dev/null

# --- send -------------------------------------------------------------------
emu POST /reset >/dev/null
mark="btprelay-cli-$RANDOM$RANDOM"
cli send MAIL_ONPREM --from sender@client.test --to user@corp.example --subject "$mark"
expect_rc 0
expect_out '^message_id: <.+@.+>$' '^recipient: <user@corp\.example> 2\.0\.0 sent \(250 ' \
	'^result: 2\.0\.0 sent$'
f=$(grep -l -F -- "$mark" "$EMU"/messages/*.eml 2>/dev/null | head -1)
[ -n "$f" ] && jq -e '.rcpt_to == ["user@corp.example"] and .mail_from == "sender@client.test"
	and .via_proxy == true and .tls == true and .auth_user == "relayuser"' "${f%.eml}.json" >/dev/null
tap_ok $? "$CMD: the relay got the message through the proxy, with TLS and AUTH" \
	"$(cat "${f%.eml}.json" 2>/dev/null || echo "no message with $mark at the relay")"
grep -q "^Message-ID: $(sed -n 's/^message_id: //p' "$OUT")" "$f" 2>/dev/null &&
	grep -q '^Date: ' "$f" && grep -q '^From: sender@client.test' "$f"
tap_ok $? "$CMD: the message has Date, Message-ID and From" "$(head -8 "$f" 2>/dev/null)"

mark="btprelay-cli-utf8-$RANDOM$RANDOM"
printf 'first line\n.a line with a leading dot\n%s\n' "$mark" > "$WORK/body.txt"
cli send MAIL_ONPREM --from sender@client.test --to a@corp.example --to b@corp.example \
	--subject "Grüße aus Köln, ein etwas längerer Betreff: äöü ÄÖÜ ß €" --body-file "$WORK/body.txt"
expect_rc 0
expect_out '^recipient: <a@corp\.example> 2\.0\.0 sent' '^recipient: <b@corp\.example> 2\.0\.0 sent'
f=$(grep -l -F -- "$mark" "$EMU"/messages/*.eml 2>/dev/null | head -1)
python3 - "$f" <<'PY'
import email, email.header, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read())
subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
assert subject == "Grüße aus Köln, ein etwas längerer Betreff: äöü ÄÖÜ ß €", subject
assert msg.get_payload().replace("\r\n", "\n").startswith("first line\n.a line with a leading dot\n")
PY
tap_ok $? "$CMD: subject MIME-encoded, body from the file, dots intact" "$(head -20 "$f" 2>/dev/null)"
jq -e '.rcpt_to == ["a@corp.example", "b@corp.example"]' "${f%.eml}.json" >/dev/null 2>&1
tap_ok $? "$CMD: one transaction, both recipients" "$(cat "${f%.eml}.json" 2>/dev/null)"
cli send MAIL_ONPREM --from sender@client.test --to a@corp.example --body-file "$WORK/missing.txt"
expect_rc 66
cli send MAIL_ONPREM --from sender@client.test --to "a@corp.example
RCPT TO:<evil@example.net>"
expect_rc 64
# issue 13: the transport's own address check (RFC 5321), with its status codes
emu POST /reset >/dev/null
cli send MAIL_ONPREM --from sender@client.test --to '"x> NOTIFY=SUCCESS@corp.example'
expect_rc 64
expect_err '5\.1\.3 --to: invalid address: an unbalanced double quote'
cli send MAIL_ONPREM --from '"s> AUTH=<evil@x>' --to a@corp.example
expect_rc 64
expect_err '5\.1\.7 --from: invalid address: an unbalanced double quote'
[ "$(emu GET /counters | jq .relay_connections)" = 0 ]
tap_ok $? "btprelay send: a refused address opens no relay connection" "$(emu GET /counters | jq -c .)"

emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: User unknown"}}' >/dev/null
cli send MAIL_ONPREM --from sender@client.test --to nobody@corp.example
expect_rc 69
expect_out '^recipient: <nobody@corp\.example> 5\.1\.1 bounced \(.*550 5\.1\.1' '^result: 5\.1\.1 bounced$'
emu POST /faults/clear >/dev/null

# --- the destinations environment variable ---------------------------------
envdest='[{"name":"MAIL_ENV","type":"MAIL","proxyType":"Internet","authentication":"NoAuthentication","originalProperties":{"mail.smtp.host":"localhost","mail.smtp.port":"'$RELAY_PORT'"}}]'
cli env destinations="$envdest" resolve MAIL_ENV
expect_rc 0
expect_out '^source: destinations environment variable$' '^proxy_type: Internet$' \
	"^port: $RELAY_PORT\$"
cli env destinations="$envdest" check
expect_rc 0
expect_out '^ok: destination MAIL_ENV \(destinations environment variable\): Internet relay localhost:' \
	'^ok: destinations environment variable: 1 entry'
mark="btprelay-cli-env-$RANDOM$RANDOM"
cli env destinations="$envdest" send MAIL_ENV --from sender@client.test --to user@example.net --subject "$mark"
expect_rc 0
f=$(grep -l -F -- "$mark" "$EMU"/messages/*.eml 2>/dev/null | head -1)
[ -n "$f" ] && jq -e '.via_proxy == false and .tls == true' "${f%.eml}.json" >/dev/null
tap_ok $? "$CMD: delivered directly (Internet) from the variable's destination" "$(diag)"
cli env destinations='{"not":"an array"}' resolve MAIL_ENV
expect_rc 78
expect_err 'destinations environment variable: not a JSON array'

# --- terminal escapes from a destination's properties (issue 13 #8) -----------
emu POST /reset >/dev/null
cli cache clear
esc_user=$'u\e]0;owned\a\e[31mred\e[0m\xc2\x9b2J\x7f'
dest_clone T_ESC MAIL_NOLOC "mail.user=$esc_user" $'mail.smtp.from=a\xe2\x80\xaeb@corp.example'
cli resolve T_ESC
expect_rc 0
expect_out '^mail\.user: u\?\]0;owned\?\?\[31mred\?\[0m\?2J\?$' '^mail\.smtp\.from: a\?b@corp\.example$'
# no ESC, BEL, DEL, C1 (UTF-8 or raw), bidi override, invalid UTF-8 anywhere in what it printed
! LC_ALL=C grep -q -P '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]' "$OUT" "$ERR" &&
	iconv -f UTF-8 -t UTF-8 "$OUT" > /dev/null 2>&1 && [ -s "$OUT" ]
tap_ok $? "$CMD: no control character, bidi override or invalid UTF-8 reaches the terminal" "$(cat -v "$OUT" | grep -E '^mail\.(user|smtp\.from)')"
cli -v probe T_ESC --no-auth
! LC_ALL=C grep -q -P '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]' "$OUT" "$ERR" && [ -s "$ERR" ]
tap_ok $? "$CMD: nor in probe's output and its debug log" "$(cat -v "$ERR" | grep -i 'owned' | head -3)"
grep -q -E '^btprelay: debug: ' "$ERR" && ! grep -q -E '^[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} btprelay\[' "$ERR"
tap_ok $? "$CMD: the debug log at a terminal reads 'btprelay: debug: text' (no syslog time stamp)" "$(head -3 "$ERR")"

# --- failure notes: visible, and never older than the request (issue 13 #9, issue 17 #3)
emu POST /reset >/dev/null
cli cache clear
emu POST /faults '{"destination":"http500"}' >/dev/null
cli resolve MAIL_ONPREM
expect_rc 75
! grep -q '^failure_note:' "$OUT"
tap_ok $? "$CMD: its own failed lookup is not called a failure note" "$(diag)"
cli cache list
expect_rc 0
expect_out '^destination-[0-9a-f]{64}\.fail: failure note for MAIL_ONPREM \(.*\), Destination Service https://127\.0\.0\.1:[0-9]+, client sb-clone-dest!b1: 4\.[0-9]\.[0-9] .*; failed [0-9]+ s ago; answers only the deliveries that were waiting for that lookup, later ones ask again; (expires in [0-9]+ s|expired); `btprelay cache clear` drops it$' \
	'^failure_notes: 1$'
emu POST /faults/clear >/dev/null
# right after the fix, the lookup is asked again: the note is older than the request
cli resolve MAIL_ONPREM
expect_rc 0
expect_out '^cache: not from the cache$'
cli cache list
expect_out '^failure_notes: 0$'

# a request that waits for another's failing lookup shares its failure, and says so
sed '/^http_timeout/d' "$CONF" > "$WORK/etc/noretry.conf"
printf 'http_retries = 0\nhttp_timeout = 10\n' >> "$WORK/etc/noretry.conf"
chmod 644 "$WORK/etc/noretry.conf"
CLI_CONF=$WORK/etc/noretry.conf cli resolve MAIL_ONPREM	# the file name of its cache key
lock=$(CLI_CONF=$WORK/etc/noretry.conf cli cache list; sed -n 's/^\(destination-[0-9a-f]*\)\.json: MAIL_ONPREM .*/\1.lock/p' "$OUT")
cli cache clear
emu POST /faults '{"destination":"timeout"}' >/dev/null
runuser -u "$TRANSPORT_USER" -- "$CLI" -c "$WORK/etc/noretry.conf" resolve MAIL_ONPREM \
	> "$WORK/out/first.out" 2> "$WORK/out/first.err" &
first=$!
held=1
for i in $(seq 300); do	# until the first one holds the lock of that lookup (10 s)
	[ -n "$lock" ] && [ -e "$WORK/cache/$lock" ] && ! flock -n "$WORK/cache/$lock" true && { held=0; break; }
	sleep 0.1
done
tap_ok $held "the first resolve holds the lock of the lookup ($lock)"
CLI_CONF=$WORK/etc/noretry.conf cli resolve MAIL_ONPREM
wait "$first"
expect_rc 75
expect_out '^failure_note: this failure is another process.s destination lookup for MAIL_ONPREM \(.*\), [0-9]+ s ago, which this command waited for; the note expires in [0-9]+ s, a new request asks again, and `btprelay cache clear` drops it now$'
! grep -q '^failure_note' "$WORK/out/first.out"
tap_ok $? "the first resolve made the lookup itself: no failure_note line" "$(cat "$WORK/out/first.out" "$WORK/out/first.err")"
emu POST /faults/clear >/dev/null
cli cache list
expect_out '^failure_notes: 1$'
cli cache clear
cli cache list
expect_out '^failure_notes: 0$'

# two entries of one destination (the bindings changed): the key's facts tell them apart
cli resolve MAIL_ONPREM
jq '.destination[0].credentials.uri |= sub("127\\.0\\.0\\.1"; "localhost")' "$WORK/etc/bindings.json" > "$WORK/etc/bindings-b.json"
chown "$TRANSPORT_USER" "$WORK/etc/bindings-b.json"
chmod 600 "$WORK/etc/bindings-b.json"
sed "s|^bindings_file = .*|bindings_file = $WORK/etc/bindings-b.json|" "$CONF" > "$WORK/etc/b.conf"
chmod 644 "$WORK/etc/b.conf"
CLI_CONF=$WORK/etc/b.conf cli resolve MAIL_ONPREM
expect_rc 0
cli cache list
expect_out '^destination-[0-9a-f]{64}\.json: MAIL_ONPREM .*Destination Service https://127\.0\.0\.1:[0-9]+, client sb-clone-dest!b1; ' \
	'^destination-[0-9a-f]{64}\.json: MAIL_ONPREM .*Destination Service https://localhost:[0-9]+, client sb-clone-dest!b1; ' \
	'^token-[0-9a-f]{64}\.json: destination \(provider\), token URL https://127\.0\.0\.1:[0-9]+, client sb-clone-dest!b1; '
cli cache clear

# --- a bindings_file set by hand and missing (issue 17 #6) ----------------------
sed "s|^bindings_file = .*|bindings_file = $WORK/etc/bindngs.json|" "$CONF" > "$WORK/etc/typo.conf"
chmod 644 "$WORK/etc/typo.conf"
line=$(grep -n '^bindings_file' "$WORK/etc/typo.conf" | cut -d: -f1)
CLI_CONF=$WORK/etc/typo.conf cli check
expect_rc 78
expect_out "^error: bindings: bindings file $WORK/etc/bindngs\.json does not exist \(bindings_file, $WORK/etc/typo\.conf line $line\): fix the path, or set \"bindings_file =\" for no bindings file\$"
N=$((N + 1)); OUT=$WORK/out/$N.out; ERR=$WORK/out/$N.err; CMD="btprelay-transport (bindings_file misspelt)"
printf 'Subject: x\n\nx\n' | runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" \
	-c "$WORK/etc/typo.conf" -f a@client.test -d MAIL_ONPREM -- u@corp.example > "$OUT" 2> "$ERR"
RC=$?
expect_rc 75
expect_out "^4\.3\.5 .*bindings file $WORK/etc/bindngs\.json does not exist"

# --- the log target (issue 17 #2) ------------------------------------------------
sed "s|^log = .*|log = $WORK/newlog/btprelay.log|" "$CONF" > "$WORK/etc/newlog.conf"
chmod 644 "$WORK/etc/newlog.conf"
install -d -m 755 "$WORK/newlog"
CLI_CONF=$WORK/etc/newlog.conf cli check
expect_rc 78
expect_out "^error: log: $WORK/newlog/btprelay\.log does not exist, and btprelay cannot create it in $WORK/newlog \(the transport then logs to syslog\): install -D -m 0640 -o btprelay /dev/null $WORK/newlog/btprelay\.log\$"
# the command it names, as root; then the check passes and the transport logs there
install -D -m 0640 -o btprelay /dev/null "$WORK/newlog/btprelay.log"
CLI_CONF=$WORK/etc/newlog.conf cli check
expect_out "^ok: log: $WORK/newlog/btprelay\.log \(owner btprelay, mode 0640\)\$"
rm -f "$WORK/newlog/btprelay.log"
chown btprelay "$WORK/newlog"
CLI_CONF=$WORK/etc/newlog.conf cli check
expect_out "^ok: log: $WORK/newlog/btprelay\.log \(created on first use by btprelay\)\$"
printf 'Subject: x\n\nx\n' | runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" \
	-c "$WORK/etc/newlog.conf" -f a@client.test -d MAIL_MISSING -- u@corp.example > /dev/null 2>&1
grep -q 'MAIL_MISSING' "$WORK/newlog/btprelay.log" 2>/dev/null
tap_ok $? "log = FILE in a directory the transport may write: created by the transport, with its lines" "$(ls -la "$WORK/newlog")"

# syslog: /dev/log is tried, in a private mount namespace with a /dev of the test's own
if command -v unshare > /dev/null 2>&1 && unshare -m true 2> /dev/null; then
	sed "s|^log = .*|log = syslog|" "$CONF" > "$WORK/etc/syslog.conf"
	chmod 644 "$WORK/etc/syslog.conf"
	# in_dev SCRIPT - run SCRIPT with /dev replaced by a tmpfs holding null (and what SCRIPT adds)
	in_dev() {
		N=$((N + 1)); OUT=$WORK/out/$N.out; ERR=$WORK/out/$N.err
		unshare -m bash -c 'set -e; mount --make-rprivate /; d=$(mktemp -d); mount --bind /dev "$d"
			mount -t tmpfs -o mode=755 none /dev; touch /dev/null; mount --bind "$d/null" /dev/null
			'"$1" > "$OUT" 2> "$ERR"
		RC=$?
	}
	CMD="btprelay check (no syslog daemon)"
	in_dev "runuser -u $TRANSPORT_USER -- $CLI -c $WORK/etc/syslog.conf check"
	expect_rc 78
	expect_out "^error: log: syslog: no syslog daemon takes lines on /dev/log \(No such file or directory\): whatever btprelay logs is lost\. Start one \(apt-get install rsyslog, or systemd-journald\), or have btprelay write its own file: \"log = /var/log/btprelay\.log\" in $WORK/etc/syslog\.conf \(Postfix without syslog: postconf -e maillog_file=/var/log/postfix\.log\)\$"
	CMD="btprelay check (a stale /dev/log, nobody reading)"
	in_dev "python3 -c 'import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(\"/dev/log\")'; chmod 666 /dev/log
		runuser -u $TRANSPORT_USER -- $CLI -c $WORK/etc/syslog.conf check"
	expect_rc 78
	expect_out '^error: log: syslog: no syslog daemon takes lines on /dev/log \(Connection refused\)'
	CMD="btprelay check (a syslog daemon on /dev/log)"
	in_dev "python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(\"/dev/log\"); os.chmod(\"/dev/log\", 0o666)
if os.fork() == 0:
    s.settimeout(20)
    with open(sys.argv[1], \"wb\") as f:
        for i in range(20):    # runuser logs through it too
            line = s.recv(4096)
            f.write(line + b\"\\n\")
            if b\"btprelay check\" in line:
                break
    os._exit(0)
' $WORK/out/syslog-line; runuser -u $TRANSPORT_USER -- $CLI -c $WORK/etc/syslog.conf check; wait"
	for i in $(seq 50); do grep -q "btprelay check" "$WORK/out/syslog-line" 2>/dev/null && break; sleep 0.1; done
	expect_out '^ok: log: syslog \(mail facility; /dev/log accepted a test line at mail\.debug\)$'
	grep -q '^<23>btprelay\[[0-9]*\]: btprelay check: syslog test line' "$WORK/out/syslog-line"
	tap_ok $? "$CMD: the daemon got the test line at mail.debug" "$(cat -v "$WORK/out/syslog-line" 2>/dev/null)"
else
	echo "# SKIP syslog checks: unshare -m is not available here"
fi

# --- as root: the cache directory warning, once, as btprelay(8) shows it (issue 17 #10)
N=$((N + 1)); OUT=$WORK/out/$N.out; ERR=$WORK/out/$N.err; CMD="btprelay resolve (as root)"
"$CLI" -c "$CONF" resolve MAIL_ONPREM > "$OUT" 2> "$ERR"
RC=$?
expect_rc 0
[ "$(grep -c 'cache_dir' "$ERR")" = 1 ] &&
	grep -q -x "btprelay: warning: cache_dir $WORK/cache belongs to btprelay, and root does not use it: caching off for this run (run it as that user: runuser -u btprelay -- ...)" "$ERR"
tap_ok $? "$CMD: one warning line, 'btprelay: warning: ...', naming the user to run as" "$(diag)"

# --- hygiene ----------------------------------------------------------------
SCEN="btprelay output"
. "$top_srcdir/tests/lib/scenario.sh"
expect_no_secrets "$WORK"/out/*

tap_done
