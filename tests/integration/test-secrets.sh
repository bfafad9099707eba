#!/bin/bash
# test-secrets.sh - secret hygiene, issue #6 point 5. With log_level = debug
# (the most verbose) the whole delivery path runs through a real Postfix for:
# OnPremise and Internet success, a token failure, a Find failure, a proxy
# refusal, an AUTH failure, the XOAUTH2 destination MAIL_OAUTH, X.509
# bindings, a relay that hangs; then every btprelay command with -v (debug
# on stderr); then btprelay-milter (when built) in front of Postfix. Every
# log, output, maillog and core file is then searched for every secret: the
# emulator's secrets.txt (client secrets, relay passwords, every token
# issued, authTokens), a wrong password the test made up, and each line of
# the X.509 private key's base64 body. Zero hits.
#
# Also: no secret in the argv or the environment of a running transport (or
# of any child of it), seen while the relay hangs; a transport killed in the
# middle of a session leaves no core file holding a secret; and each kind of
# file that holds secrets is refused when other users may read it, with a
# clear message, by the transport and by `btprelay check`: the configuration
# file (with a destination password), the bindings file, the destinations
# file, a service binding directory's credential file, the client key file,
# the cache directory and a cache file.
#
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init secrets
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
command -v runuser >/dev/null 2>&1 || harness_skip "runuser not installed"
command -v setpriv >/dev/null 2>&1 || harness_skip "setpriv not installed (util-linux)"
CLI_SRC=$top_builddir/plugin/cli/btprelay
[ -x "$CLI_SRC" ] || { echo "Bail out! $CLI_SRC not built"; exit 99; }
MILTER_BIN=$top_builddir/plugin/milter/btprelay-milter

harness_start_emulator
harness_install_transport	# log_level = debug: the harness default
install -m 755 "$CLI_SRC" "$WORK/bin/btprelay"
install -m 600 -o "$TRANSPORT_USER" "$EMU/vcap-x509.json" "$WORK/etc/bindings-x509.json"
cp "$WORK/etc/btprelay.conf" "$WORK/etc/base.conf"
grep -q '^log_level = debug$' "$WORK/etc/btprelay.conf" ||
	{ echo "Bail out! the harness no longer logs at debug level"; exit 99; }
harness_start_postfix MAIL_OAUTH s_token s_find s_proxy s_auth s_x509 s_hang s_milter s_nf \
	s_echo_p s_echo_l s_echo_x
. "$top_srcdir/tests/lib/scenario.sh"
mkdir -p "$WORK/out" "$WORK/extra"
WRONG_PASSWORD="wrong-$(openssl rand -hex 16)"
echo "$WRONG_PASSWORD" > "$WORK/extra/secrets.txt"
HANG_PID=
cleanup() {
	[ -n "$HANG_PID" ] && kill "$HANG_PID" 2>/dev/null
	harness_stop	# the milter too
}
trap cleanup EXIT


# --- the delivery path, log_level = debug ---------------------------------------
scenario "OnPremise success"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example sent
expect_relay 1 '.auth_user == "relayuser" and .via_proxy == true'

scenario "Internet success"
q=$(send_mail sender@client.test user@internet.example --header "Subject: $MARK")
expect_status "$q" user@internet.example sent

scenario "token failure (HTTP 401)"
dest_clone s_token MAIL_ONPREM
emu POST /faults '{"token":"http401"}' >/dev/null
q=$(send_mail sender@client.test user@s_token.dest.test --header "Subject: $MARK")
expect_status "$q" user@s_token.dest.test deferred 'HTTP 401'

scenario "Find failure (HTTP 403, after a good destination token)"
dest_clone s_find MAIL_ONPREM
emu POST /faults '{"destination":"http403"}' >/dev/null
q=$(send_mail sender@client.test user@s_find.dest.test --header "Subject: $MARK")
expect_status "$q" user@s_find.dest.test deferred 'HTTP 403'

scenario "proxy refuses the token (auth reply 01 01)"
dest_clone s_proxy MAIL_ONPREM
emu POST /faults '{"proxy":"auth_fail"}' >/dev/null
q=$(send_mail sender@client.test user@s_proxy.dest.test --header "Subject: $MARK")
expect_status "$q" user@s_proxy.dest.test deferred 'proxy authentication rejected'

scenario "AUTH failure (a wrong relay password)"
dest_clone s_auth MAIL_ONPREM "mail.password=$WRONG_PASSWORD"
q=$(send_mail sender@client.test user@s_auth.dest.test --header "Subject: $MARK")
expect_status "$q" user@s_auth.dest.test deferred '535'

scenario "XOAUTH2 destination MAIL_OAUTH (authTokens)"
emu POST /relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}' >/dev/null
q=$(send_mail sender@client.test user@MAIL_OAUTH.dest.test --header "Subject: $MARK")
expect_status "$q" user@MAIL_OAUTH.dest.test sent
expect_relay 1 '.auth_mech == "XOAUTH2"'

scenario "X.509 bindings (client certificates at token_mtls)"
harness_install_transport "bindings_file = $WORK/etc/bindings-x509.json"
dest_clone s_x509 MAIL_ONPREM
q=$(send_mail sender@client.test user@s_x509.dest.test --header "Subject: $MARK")
expect_status "$q" user@s_x509.dest.test sent
[ "$(emu GET /counters | jq .token_requests.mtls)" -ge 2 ]
tap_ok $? "$SCEN: both tokens came from token_mtls" "$(emu GET /counters | jq -c .token_requests)"
harness_install_transport	# log_level = debug: the harness default

# --- a relay that quotes what AUTH sent in its 535 (issue 13) --------------------
# The emulator's auth_echo: the 535 quotes every base64 line btprelay sent (the
# PLAIN argument, LOGIN's lines, the XOAUTH2 argument). The status text in the
# maillog and in mailq (readable by every local user) shows the mask instead;
# the search at the end proves no form of the secret got through anywhere.
# expect_echo_masked QID RCPT WHAT
expect_echo_masked() {
	local line
	line=$(wait_status "$1" "$2")
	printf '%s\n' "$line" | grep -q 'status=deferred.*535 5\.7\.8 Error: authentication failed: .*(client sent: .*\*\*\*\*\*\*\*\*'
	tap_ok $? "$SCEN: deferred, the relay's quote of the $3 masked in the status text" "$line"
	wait_deferred "$1" >/dev/null	# mailq shows the reason once the delivery is over
	postqueue -c "$PF" -p > "$WORK/out/mailq.$3" 2>&1
	grep -q 'client sent: .*\*\*\*\*\*\*\*\*' "$WORK/out/mailq.$3"
	tap_ok $? "$SCEN: mailq shows the masked text" "$(cat "$WORK/out/mailq.$3")"
	emu GET /connections | jq -e '[.[] | select(any(.commands[]?; .command | startswith("AUTH '"$3"'")))
		| .commands[]?.reply] | index(535)' >/dev/null
	tap_ok $? "$SCEN: the relay got AUTH $3 and refused it (quoting it)" "$(emu GET /connections | jq -c '[.[].commands[]?]' | cut -c1-600)"
}
ECHO_USERS='"users":{"relayuser":"not-the-password-'$RANDOM'"}'
scenario "a relay quoting the AUTH PLAIN argument in its 535"
dest_clone s_echo_p MAIL_ONPREM
emu POST /relay '{"auth_echo":true,'"$ECHO_USERS"'}' >/dev/null
q=$(send_mail sender@client.test user@s_echo_p.dest.test --header "Subject: $MARK")
expect_echo_masked "$q" user@s_echo_p.dest.test PLAIN

scenario "a relay quoting the AUTH LOGIN lines in its 535"
dest_clone s_echo_l MAIL_ONPREM
emu POST /relay '{"auth_echo":true,"auth_mechs":["LOGIN"],'"$ECHO_USERS"'}' >/dev/null
q=$(send_mail sender@client.test user@s_echo_l.dest.test --header "Subject: $MARK")
expect_echo_masked "$q" user@s_echo_l.dest.test LOGIN

scenario "a relay quoting the AUTH XOAUTH2 argument in its 535 (a token it refuses)"
dest_clone s_echo_x MAIL_OAUTH
emu POST /relay '{"auth_echo":true,"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}' >/dev/null
emu POST /faults '{"relay":{"auth":"535 5.7.8 Error: authentication failed: token revoked"}}' >/dev/null
q=$(send_mail sender@client.test user@s_echo_x.dest.test --header "Subject: $MARK")
expect_echo_masked "$q" user@s_echo_x.dest.test XOAUTH2
emu POST /faults/clear >/dev/null

# --- argv and environment of a running transport (the relay hangs) --------------
scenario "a running transport: argv and environment"
dest_clone s_hang MAIL_ONPREM
emu POST /faults '{"relay":{"rcpt":"hang"}}' >/dev/null
q=$(send_mail sender@client.test user@s_hang.dest.test --header "Subject: $MARK")
pid=
for i in $(seq 200); do
	pid=$(ps -u "$TRANSPORT_USER" -o pid=,comm= | awk '$2 ~ /^btprelay-transp/ {print $1; exit}')
	[ -n "$pid" ] && grep -q "s_hang" "/proc/$pid/cmdline" 2>/dev/null && break
	pid=
	sleep 0.1
done
[ -n "$pid" ]
tap_ok $? "$SCEN: the transport is running while the relay hangs (pid ${pid:-none})"
if [ -n "$pid" ]; then
	procs="$pid $(ps -o pid= --ppid "$pid" 2>/dev/null | tr '\n' ' ')"
	for p in $procs; do
		{ tr '\0' ' ' < "/proc/$p/cmdline"; echo; ps -o args= -p "$p"; } > "$WORK/out/argv.$p" 2>/dev/null
		tr '\0' '\n' < "/proc/$p/environ" > "$WORK/out/environ.$p" 2>/dev/null
	done
	echo "# argv: $(cat "$WORK/out/argv.$pid" | head -1)"
	echo "# environment: $(wc -l < "$WORK/out/environ.$pid") variables; children: $(($(echo $procs | wc -w) - 1))"
	[ -s "$WORK/out/argv.$pid" ]
	tap_ok $? "$SCEN: argv and environment read"
fi
emu POST /faults/clear >/dev/null
expect_status "$q" user@s_hang.dest.test deferred 'timeout'

# --- the operator tool, -v: the library's debug log on stderr -------------------
N=0
cli() {	# [env NAME=VALUE] ARGS... - btprelay -v as the transport's user
	local envs=()
	while [ "${1:-}" = env ]; do envs+=("$2"); shift 2; done
	N=$((N + 1))
	runuser -u "$TRANSPORT_USER" -- env "${envs[@]}" "$WORK/bin/btprelay" -v -c "${CLI_CONF:-$WORK/etc/btprelay.conf}" "$@" \
		> "$WORK/out/cli.$N.out" 2> "$WORK/out/cli.$N.err"
	echo "$?" > "$WORK/out/cli.$N.rc"
}
scenario "btprelay resolve, token, probe, send, check, cache list (-v)"
emu POST /relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}' >/dev/null
cli check
cli resolve MAIL_ONPREM
cli resolve MAIL_OAUTH
cli token connectivity
cli token destination
cli probe MAIL_ONPREM
cli probe MAIL_OAUTH
cli send MAIL_ONPREM --from sender@client.test --to user@corp.example --subject "$MARK"
cli send MAIL_OAUTH --from sender@client.test --to user@corp.example --subject "$MARK"
cli cache list
emu POST /faults '{"token":"http401"}' >/dev/null
cli cache clear
cli token connectivity
emu POST /faults '{"token":null,"destination":"http500"}' >/dev/null
cli resolve MAIL_ONPREM
emu POST /faults/clear >/dev/null
cli send s_auth --from sender@client.test --to user@corp.example
CLI_CONF=$WORK/etc/x509.conf
sed "s|^bindings_file = .*|bindings_file = $WORK/etc/bindings-x509.json|" "$WORK/etc/btprelay.conf" > "$CLI_CONF"
chmod 644 "$CLI_CONF"
cli cache clear
cli token connectivity
cli token destination
cli send MAIL_ONPREM --from sender@client.test --to user@corp.example --subject "$MARK"
CLI_CONF=
good=$(grep -l '^0$' "$WORK"/out/cli.*.rc | wc -l)
[ "$good" -ge 12 ]
tap_ok $? "$SCEN: $N runs, $good succeeded (the rest are the failures asked for)" \
	"$(for f in "$WORK"/out/cli.*.rc; do echo "${f##*/}: $(cat "$f") $(head -c 200 "${f%.rc}.err")"; done)"
[ -s "$WORK/out/cli.2.err" ] && grep -q 'debug' "$WORK/out/cli.2.err"
tap_ok $? "$SCEN: -v printed the debug log" "$(head -5 "$WORK/out/cli.2.err")"

# --- the milter, when built -----------------------------------------------------
if [ -x "$MILTER_BIN" ]; then
	scenario "btprelay-milter (log_level = debug) in front of Postfix"
	harness_start_milter
	tap_ok $? "$SCEN: the milter is listening" "$(cat "$WORK/log/milter.stderr")"
	tr '\0' ' ' < "/proc/$MILTER_PID/cmdline" > "$WORK/out/argv.milter" 2>/dev/null
	tr '\0' '\n' < "/proc/$MILTER_PID/environ" > "$WORK/out/environ.milter" 2>/dev/null
	postconf -c "$PF" -e "smtpd_milters = unix:$MILTER_SOCK" "milter_default_action = tempfail" >/dev/null
	postfix -c "$PF" reload >/dev/null 2>&1
	sleep 1
	dest_clone s_milter MAIL_OAUTH
	emu POST /relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}' >/dev/null
	q=$(send_mail sender@client.test user@s_milter.dest.test --header "Subject: $MARK")
	expect_status "$q" user@s_milter.dest.test sent
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@s_nf.dest.test --helo client.test 2>&1)
	printf '%s\n' "$out" >> "$WORK/log/swaks.log"
	printf '%s\n' "$out" | grep -q '550 5\.1\.2'
	tap_ok $? "$SCEN: the milter refuses a destination that does not exist" "$(printf '%s\n' "$out" | grep '<\*\*' | head -3)"
	emu POST /faults '{"destination":"http401"}' >/dev/null
	cache_clear
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from a@client.test --to user@corp.example --helo client.test 2>&1)
	printf '%s\n' "$out" >> "$WORK/log/swaks.log"
	printf '%s\n' "$out" | grep -q '451 4\.'
	tap_ok $? "$SCEN: the milter tempfails while the Destination Service refuses" "$(printf '%s\n' "$out" | grep '<\*\*' | head -3)"
	emu POST /faults/clear >/dev/null
	grep -q 'btprelay-milter.*debug:' "$BTPRELAY_LOG"
	tap_ok $? "$SCEN: the milter logged at debug level"
	postconf -c "$PF" -e "smtpd_milters =" >/dev/null
	postfix -c "$PF" reload >/dev/null 2>&1
	harness_stop_milter
else
	echo "# btprelay-milter not built (configure --without-milter?): no milter scenario"
fi

# --- a transport killed in the middle of a session: its core file ---------------
scenario "core file of a transport killed after AUTH"
CORE=$WORK/core
install -d -m 700 -o "$TRANSPORT_USER" "$CORE"
emu POST /faults '{"relay":{"rcpt":"hang"}}' >/dev/null
# the relay hangs at RCPT; a long command timeout keeps the transport there
# however slowly this loop looks at it on a loaded machine
cp -p "$WORK/etc/btprelay.conf" "$WORK/etc/core.conf"
sed -i 's/^smtp_command_timeout = .*/smtp_command_timeout = 600/' "$WORK/etc/core.conf"
(
	cd "$CORE" || exit 1
	ulimit -c unlimited 2>/dev/null
	printf 'Subject: core\n\nhello\n' | setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" \
		--clear-groups "$WORK/bin/btprelay-transport" -c "$WORK/etc/core.conf" -q CORE1 \
		-f sender@client.test -d MAIL_ONPREM -- user@corp.example > "$WORK/out/core-run.out" 2>&1
	echo "$?" > "$WORK/out/core-run.rc"
) 2>/dev/null &
HANG_PID=$!
pid=
for i in $(seq $((WAIT_SECONDS * 10))); do	# the oldest CORE1: the transport, not its token prefetch
	grep -q "AUTH PLAIN" <(emu GET /connections | jq -r '.[-1].commands[]?.command' 2>/dev/null) &&
		pid=$(pgrep -o -u "$TRANSPORT_USER" -f -- '-q CORE1')
	[ -n "$pid" ] && break
	sleep 0.1
done
if [ -n "$pid" ]; then
	kill -SEGV "$pid"
	wait "$HANG_PID" 2>/dev/null
	HANG_PID=
	cores=$(find "$CORE" -maxdepth 1 -type f -name 'core*' | wc -l)
	echo "# killed with SIGSEGV after AUTH: exit $(cat "$WORK/out/core-run.rc" 2>/dev/null), $cores core file(s)" \
		"(core_pattern $(cat /proc/sys/kernel/core_pattern))"
	tap_ok 0 "$SCEN: transport killed with SIGSEGV in the middle of the session"
else
	tap_ok 1 "$SCEN: transport killed with SIGSEGV in the middle of the session" "no running transport after AUTH"
fi
emu POST /faults/clear >/dev/null

# --- the search ------------------------------------------------------------------
scenario "search every log, output, maillog and core file"
python3 - "$EMU/certs/client.key" > "$WORK/extra/key-lines.txt" <<'PY'
import sys
body = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith("-----")]
for line in body:
    if len(line) >= 16:
        print(line)
print("".join(body))
PY
cat "$EMU/secrets.txt" "$WORK/extra/secrets.txt" "$WORK/extra/key-lines.txt" | grep -v '^$' | sort -u > "$WORK/extra/all.txt"
n_secrets=$(wc -l < "$WORK/extra/all.txt")
n_tokens=$(grep -c '^ey' "$EMU/secrets.txt")
core_files=$(find "$WORK" -type f \( -name 'core' -o -name 'core.[0-9]*' \) 2>/dev/null)
searched=$(find "$WORK/log" "$WORK/out" -type f 2>/dev/null)
[ "$n_tokens" -ge 10 ] && [ "$n_secrets" -ge $((n_tokens + 6)) ]
tap_ok $? "$SCEN: secrets to look for: $n_secrets ($n_tokens tokens issued, client secrets, passwords, key lines)"
echo "# files searched: $(echo "$searched" | wc -l) ($(cat $searched | wc -c) bytes), core files: $(echo "$core_files" | grep -c .)"
export SECRET_SCAN_EXTRA="$WORK/extra/secrets.txt $WORK/extra/key-lines.txt"
# shellcheck disable=SC2086
hits=$(secret_scan $searched)
tap_ok $? "$SCEN: no secret in any log, output, maillog or mailq, in any encoding" "$hits"
argv_files=$(ls "$WORK"/out/argv.* "$WORK"/out/environ.* 2>/dev/null)
[ -n "$argv_files" ]
tap_ok $? "$SCEN: argv and environment files to search" "$argv_files"
# shellcheck disable=SC2086
argv_hits=$(secret_scan $argv_files)
tap_ok $? "$SCEN: no secret in the argv or environment of the transport, its children, the milter" "$argv_hits"
core_hits=""
for f in $core_files; do
	out=$(secret_scan "$f") || core_hits="$core_hits ${f#"$WORK"/}: $(printf '%s\n' "$out" | wc -l) hits;"
done
[ -z "$core_hits" ]
tap_ok $? "$SCEN: no core file holds a secret ($(echo "$core_files" | grep -c .) core files)" "$core_hits"

# --- files that hold secrets, readable by others: refused -----------------------
# transport_run CONF DEST - one delivery, as user btprelay; sets RC and OUT
transport_run() {
	OUT=$(printf 'Subject: perms\n\nhello\n' | runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" \
		-c "$1" -q PERM -f sender@client.test -d "$2" -- user@corp.example 2>&1)
	RC=$?
}
# check_run CONF - btprelay check; sets CRC and COUT
check_run() {
	COUT=$(runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay" -c "$1" check 2>&1)
	CRC=$?
}
# expect_refused KIND FILE - transport: 75, 4.x.x at byte 0, names the file and why;
# btprelay check: 78 and an error line saying the same
expect_refused() {
	local kind=$1 file=$2
	case $OUT in 4.[0-9].[0-9]*"$file"*"by other users"*) [ "$RC" = 75 ] ;; *) false ;; esac
	tap_ok $? "$kind readable by others: the transport defers (75, 4.x.x) naming the file" "exit $RC: $OUT"
	case $COUT in *"error: "*"$file"*"by other users"*) [ "$CRC" = 78 ] ;; *) false ;; esac
	tap_ok $? "$kind readable by others: btprelay check says so (78)" "exit $CRC: $COUT"
}
scenario "files that hold secrets, readable by others"
emu POST /relay '{"auth_mechs":["PLAIN","LOGIN"]}' >/dev/null
password=$(emu GET /destinations/MAIL_ONPREM | jq -r '."mail.password"')
base=$WORK/etc/base.conf
P=$WORK/perm
install -d -m 755 "$P"

# the configuration file, with a destination password in it
cp "$base" "$P/declared.conf"
printf 'destination.MAIL_LOCAL.mail.smtp.host = 127.0.0.1\ndestination.MAIL_LOCAL.mail.smtp.port = %s\ndestination.MAIL_LOCAL.mail.user = relayuser\ndestination.MAIL_LOCAL.mail.password = %s\n' \
	"$RELAY_PORT" "$password" >> "$P/declared.conf"
chmod 644 "$P/declared.conf"
transport_run "$P/declared.conf" MAIL_LOCAL
check_run "$P/declared.conf"
expect_refused "configuration file with a password" "$P/declared.conf"
chmod 640 "$P/declared.conf"; chgrp "$TRANSPORT_USER" "$P/declared.conf"
transport_run "$P/declared.conf" MAIL_LOCAL
[ "$RC" = 0 ]
tap_ok $? "the same file, mode 0640 group btprelay: delivered" "exit $RC: $OUT"

# the bindings file
install -m 644 -o "$TRANSPORT_USER" "$EMU/vcap.json" "$P/bindings.json"
sed "s|^bindings_file = .*|bindings_file = $P/bindings.json|" "$base" > "$P/bindings.conf"
chmod 644 "$P/bindings.conf"
transport_run "$P/bindings.conf" MAIL_ONPREM
check_run "$P/bindings.conf"
expect_refused "bindings file" "$P/bindings.json"

# the destinations file
printf '[{"Name":"MAIL_FILE","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"localhost","mail.smtp.port":"%s","mail.user":"relayuser","mail.password":"%s"}]\n' \
	"$RELAY_PORT" "$password" > "$P/destinations.json"
chown "$TRANSPORT_USER" "$P/destinations.json"
chmod 644 "$P/destinations.json"
{ cat "$base"; echo "destinations_file = $P/destinations.json"; } > "$P/destinations.conf"
chmod 644 "$P/destinations.conf"
transport_run "$P/destinations.conf" MAIL_FILE
check_run "$P/destinations.conf"
expect_refused "destinations file" "$P/destinations.json"

# a service binding directory (Kyma): one file per credential
SB=$P/bindings.d
install -d -m 755 -o "$TRANSPORT_USER" "$SB" "$SB/dest" "$SB/conn"
jq -r '.destination[0].credentials | to_entries[] | "\(.key)\t\(.value)"' "$EMU/vcap.json" |
	while IFS=$'\t' read -r k v; do printf '%s' "$v" > "$SB/dest/$k"; done
jq -r '.connectivity[0].credentials | to_entries[] | "\(.key)\t\(.value)"' "$EMU/vcap.json" |
	while IFS=$'\t' read -r k v; do printf '%s' "$v" > "$SB/conn/$k"; done
printf destination > "$SB/dest/type"
printf connectivity > "$SB/conn/type"
chown -R "$TRANSPORT_USER" "$SB"
chmod 600 "$SB"/dest/* "$SB"/conn/*
chmod 644 "$SB/dest/type" "$SB/conn/type" "$SB/dest/clientsecret"
sed "s|^bindings_file = .*|bindings_file = $P/no-such-bindings.json|" "$base" > "$P/sbr.conf"
echo "service_binding_root = $SB" >> "$P/sbr.conf"
chmod 644 "$P/sbr.conf"
transport_run "$P/sbr.conf" MAIL_ONPREM
check_run "$P/sbr.conf"
expect_refused "service binding credential file" "$SB/dest/clientsecret"
chmod 600 "$SB/dest/clientsecret"
cache_clear
transport_run "$P/sbr.conf" MAIL_ONPREM
[ "$RC" = 0 ]
tap_ok $? "the same binding, credential files 0600: delivered" "exit $RC: $OUT"

# the client certificate's key file
install -m 644 "$EMU/certs/client.pem" "$P/client.pem"
install -m 644 "$EMU/certs/client.key" "$P/client.key"
{ cat "$base"; echo "smtp_tls_cert_file = $P/client.pem"; echo "smtp_tls_key_file = $P/client.key"; } > "$P/key.conf"
chmod 644 "$P/key.conf"
transport_run "$P/key.conf" MAIL_ONPREM
check_run "$P/key.conf"
case $OUT in 4.[0-9].[0-9]*"$P/client.key"*"by other users"*) [ "$RC" = 75 ] ;; *) false ;; esac
tap_ok $? "client key file readable by others: the transport defers (75, 4.x.x) naming the file" "exit $RC: $OUT"
case $COUT in *"error: "*"$P/client.key"*"by other users"*) [ "$CRC" = 78 ] ;; *) false ;; esac
tap_ok $? "client key file readable by others: btprelay check says so (78)" "exit $CRC: $COUT"

# the cache directory: caching off, with a warning; check: an error
cache_clear
chmod 755 "$WORK/cache"
emu POST /reset >/dev/null
: > "$BTPRELAY_LOG"
transport_run "$base" MAIL_ONPREM
check_run "$base"
[ "$RC" = 0 ] && grep -q "warning: cache_dir $WORK/cache: accessible by other users (mode 0755).*caching off" "$BTPRELAY_LOG" &&
	[ -z "$(find "$WORK/cache" -name '*.json')" ]
tap_ok $? "cache directory accessible by others: delivered without the cache, with a warning; nothing stored" \
	"exit $RC: $OUT; $(grep cache_dir "$BTPRELAY_LOG" | head -1); $(ls "$WORK/cache")"
case $COUT in *"error: cache_dir $WORK/cache: accessible by other users"*) [ "$CRC" = 78 ] ;; *) false ;; esac
tap_ok $? "cache directory accessible by others: btprelay check says so (78)" "exit $CRC: $COUT"
chmod 700 "$WORK/cache"

# a cache file: ignored (a new token is fetched) and replaced; cache list says so.
# Both token files are exposed and the destination is not cached, so both are read.
cache_clear
transport_run "$base" MAIL_ONPREM
rm -f "$WORK"/cache/destination-*.json
tokens=$(ls "$WORK"/cache/token-*.json 2>/dev/null)
f=$(printf '%s\n' "$tokens" | head -1)
chmod 644 $tokens
emu POST /reset >/dev/null
: > "$BTPRELAY_LOG"
transport_run "$base" MAIL_ONPREM
[ "$RC" = 0 ] && [ "$(printf '%s\n' "$tokens" | grep -c .)" = 2 ] &&
	grep -q "warning: cache file $f ignored: accessible by other users (mode 0644)" "$BTPRELAY_LOG" &&
	[ "$(emu GET /counters | jq .token_requests.total)" = 2 ] &&
	[ "$(stat -c %a $tokens | sort -u)" = 600 ]
tap_ok $? "cache file readable by others: ignored with a warning, the token fetched again, the file replaced (0600)" \
	"exit $RC; $(grep 'cache file' "$BTPRELAY_LOG" | head -1); token requests $(emu GET /counters | jq -c .token_requests); modes $(stat -c %a $tokens)"
chmod 644 "$f"
COUT=$(runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay" -c "$base" cache list 2>&1)
case $COUT in *"${f##*/}: (not trusted"*) true ;; *) false ;; esac
tap_ok $? "cache file readable by others: btprelay cache list marks it not trusted" "$COUT"
chmod 600 "$f"

tap_done
