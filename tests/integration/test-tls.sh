#!/bin/bash
# test-tls.sh - TLS policies, trust sources, AUTH mechanisms and ESMTP details of
# btprelay-transport against the emulator's relay (issue 5). The transport runs directly
# (no Postfix), as its own user; each case asserts the exit status, the status at byte 0
# of the output, a text fragment, and what the relay saw (GET /connections, /messages:
# TLS version, SNI, AUTH mechanism, client certificate, MAIL parameters, the body).
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
command -v runuser >/dev/null 2>&1 || harness_skip "runuser not installed"
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed"
harness_init tls
harness_start_emulator
harness_install_transport "smtp_command_timeout = 3" "smtp_data_done_timeout = 5" \
	"destination_cache_ttl = 0"
CERTS=$EMU/certs
BASECONF=$WORK/etc/btprelay.conf
MSG=$WORK/message.txt
printf 'From: sender@client.test\nSubject: tls test\n\nhello\n' > "$MSG"
chmod 644 "$MSG"
for f in client.pem client.key; do install -m 600 -o "$TRANSPORT_USER" "$CERTS/$f" "$WORK/etc/$f"; done
install -m 644 "$CERTS/client.key" "$WORK/etc/client-readable.key"
mkdir -p "$WORK/etc/capath"
cp "$CERTS/ca.pem" "$WORK/etc/capath/btprelay-test-ca.pem"
openssl rehash "$WORK/etc/capath" 2>/dev/null || c_rehash "$WORK/etc/capath" >/dev/null 2>&1
chmod -R a+rX "$WORK/etc/capath"
fingerprint() {	# CERT: its SHA-256 fingerprint, AA:BB:...
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//'
}
FP_RELAY=$(fingerprint "$CERTS/relay.pem")
FP_SELF=$(fingerprint "$CERTS/selfsigned.pem")
FP_WRONG=$(fingerprint "$CERTS/wrongname.pem")

# conf NAME ["key = value"...] - $WORK/etc/NAME.conf: the harness's file, these keys replaced
conf() {
	local name=$1 line key
	shift
	{
		while IFS= read -r line; do
			key=${line%%=*}
			key=${key%% *}
			for o in "$@"; do [ "${o%% *}" = "$key" ] && continue 2; done
			printf '%s\n' "$line"
		done < "$BASECONF"
		for o in "$@"; do printf '%s\n' "$o"; done
	} > "$WORK/etc/$name.conf"
	chmod 644 "$WORK/etc/$name.conf"
	CONF=$WORK/etc/$name.conf
}

# begin NAME - a fresh emulator state for a case; CONF back to the harness's file
begin() {
	CASE=$1
	echo "# --- $CASE"
	emu POST /reset >/dev/null || echo "# emulator reset failed"
	CONF=$BASECONF
	BODY=$MSG
	SIZE_ARG=()
}

relay() { emu POST /relay "$1" >/dev/null || echo "# relay option $1 refused"; }

# run DEST [RCPT...] - the transport as its user; sets OUT and RC
run() {
	local dest=$1
	shift
	[ $# -gt 0 ] || set -- user@corp.example
	: > "$BTPRELAY_LOG"
	OUT=$(runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" -c "$CONF" -q TLSTEST \
		"${SIZE_ARG[@]}" -f sender@client.test -d "$dest" -- "$@" < "$BODY" 2>&1)
	RC=$?
	{ cat "$BTPRELAY_LOG"; printf '%s\n' "$OUT"; } >> "$WORK/log/all-runs.log"
}

# expect_run EXIT STATUS TEXT - the last run's exit status, status at byte 0 (dsn= in the
# log for a delivery) and a fragment of the output
expect_run() {
	local code=$1 status=$2 text=$3 bad=""
	[ "$RC" = "$code" ] || bad="exit $RC, want $code;"
	if [ "$code" = 0 ]; then
		grep -q "dsn=$status, status=sent" "$BTPRELAY_LOG" || bad="$bad no dsn=$status in the log;"
	else
		case $OUT in "$status "*) ;; *) bad="$bad not \"$status \" at byte 0;" ;; esac
	fi
	case $OUT in *"$text"*) ;; *) bad="$bad no \"$text\";" ;; esac
	[ -z "$bad" ]
	tap_ok $? "$CASE: exit $code, $status, \"$text\"" "$bad
output: $OUT"
}

# expect_conn JQ-EXPR - the relay's last connection (GET /connections) satisfies it
expect_conn() {
	local c
	c=$(emu GET /connections | jq -c '.[-1] | del(.commands)')
	printf '%s' "$c" | jq -e "$1" >/dev/null
	tap_ok $? "$CASE: relay connection: $1" "$c"
}

# expect_msg JQ-EXPR - the last message stored at the relay satisfies it
expect_msg() {
	local m
	m=$(emu GET /messages | jq -c '.[-1] // {}')
	printf '%s' "$m" | jq -e "$1" >/dev/null
	tap_ok $? "$CASE: relay message: $1" "$m"
}

# expect_nothing_sent - no message at the relay, and no MAIL command on any connection
expect_nothing_sent() {
	local n m
	n=$(emu GET /counters | jq .relay_messages)
	m=$(emu GET /connections | jq '[.[].commands[].command | select(startswith("MAIL"))] | length')
	[ "$n" = 0 ] && [ "$m" = 0 ]
	tap_ok $? "$CASE: nothing sent (no MAIL FROM)" "messages $n, MAIL commands $m"
}

# expect_log REGEX - the transport's log of the last run matches
expect_log() {
	grep -q -- "$1" "$BTPRELAY_LOG"
	tap_ok $? "$CASE: log says /$1/" "$(grep -v 'smtp .*: [<>]' "$BTPRELAY_LOG" | tail -5)"
}

########################################################################################
# TLS policy
begin "level may (default): STARTTLS, verified against smtp_tls_ca_file, SNI, TLS 1.2+"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == true and .sni == "mail.corp.internal" and (.tls_version == "TLSv1.3" or .tls_version == "TLSv1.2")'
expect_log 'TLS connection established to mail.corp.internal:25: TLSv1.[23] with cipher .*, certificate verified'

begin "level none: no STARTTLS"
conf none "smtp_tls_security_level = none"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == false'

begin "level may, relay without STARTTLS: plain text"
relay '{"starttls":false}'
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == false'

begin "level encrypt, relay without STARTTLS: deferred 4.7.4"
relay '{"starttls":false}'
conf encrypt "smtp_tls_security_level = encrypt"
run MAIL_NOLOC
expect_run 75 4.7.4 "relay does not offer STARTTLS, but TLS is required (smtp_tls_security_level=encrypt)"
expect_nothing_sent

begin "level verify, relay without STARTTLS: deferred 4.7.4"
relay '{"starttls":false}'
conf verify "smtp_tls_security_level = verify"
run MAIL_NOLOC
expect_run 75 4.7.4 "(smtp_tls_security_level=verify)"

begin "level secure = verify: mail.smtp.starttls.enable=false is ignored"
dest_clone T_NOTLS MAIL_NOLOC mail.smtp.starttls.enable=false
conf secure "smtp_tls_security_level = secure"
run T_NOTLS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == true'
expect_log 'mail.smtp.starttls.enable=false ignored: smtp_tls_security_level=verify'

begin "mail.smtp.starttls.enable=false lowers may and encrypt to none"
dest_clone T_NOTLS MAIL_NOLOC mail.smtp.starttls.enable=false
conf encrypt "smtp_tls_security_level = encrypt"
run T_NOTLS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == false'

begin "mail.smtp.starttls.enable=true raises none to may"
dest_clone T_TLS MAIL_NOLOC mail.smtp.starttls.enable=true
conf none "smtp_tls_security_level = none"
run T_TLS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == true'

begin "mail.smtp.starttls.required=true, relay without STARTTLS: 4.7.4 names the property"
relay '{"starttls":false}'
dest_clone T_REQ MAIL_NOLOC mail.smtp.starttls.required=true
run T_REQ
expect_run 75 4.7.4 "TLS is required (mail.smtp.starttls.required=true)"
expect_nothing_sent

begin "smtps (MAIL_SMTPS): implicit TLS through the tunnel to port 465, AUTH inside"
run MAIL_SMTPS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.port == "relay_smtps" and .tls == true and .via_proxy == true and .sni == "mail.corp.internal" and .auth_mech == "PLAIN"'
expect_log 'TLS connection established to mail.corp.internal:465'

begin "mail.smtp.ssl.enable=true: implicit TLS on mail.smtp.port"
dest_clone T_SSL MAIL_NOLOC mail.smtp.port=465 mail.smtp.ssl.enable=true
run T_SSL
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.port == "relay_smtps" and .tls == true'

begin "smtps with a certificate for another name: deferred 4.7.5 before the greeting"
relay '{"cert":"wrongname"}'
run MAIL_SMTPS
expect_run 75 4.7.5 "TLS handshake with mail.corp.internal:465 failed: certificate verification failed: hostname mismatch: the certificate is for other.example, not mail.corp.internal"
expect_nothing_sent

begin "relay capped at TLS 1.1: refused (TLS 1.2 is the minimum)"
relay '{"tls_max_version":"TLSv1.1"}'
run MAIL_NOLOC
expect_run 75 4.7.5 "TLS handshake with relay failed"
expect_nothing_sent

begin "relay capped at TLS 1.2: accepted"
relay '{"tls_max_version":"TLSv1.2"}'
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls_version == "TLSv1.2"'

########################################################################################
# Trust
begin "the system store alone does not know the test CA: deferred 4.7.5"
conf system "smtp_tls_ca_file ="
run MAIL_NOLOC
expect_run 75 4.7.5 "certificate verification failed: unable to get local issuer certificate"
expect_nothing_sent

begin "smtp_tls_ca_path: a hashed directory with the test CA"
conf capath "smtp_tls_ca_file =" "smtp_tls_ca_path = $WORK/etc/capath"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"

begin "self-signed relay certificate: deferred 4.7.5"
relay '{"cert":"selfsigned"}'
run MAIL_NOLOC
expect_run 75 4.7.5 "certificate verification failed: self-signed certificate"
expect_nothing_sent

begin "expired relay certificate: deferred 4.7.5"
relay '{"cert":"expired"}'
run MAIL_NOLOC
expect_run 75 4.7.5 "certificate verification failed: certificate has expired"

begin "certificate for another name: deferred 4.7.5, the names in the text"
relay '{"cert":"wrongname"}'
run MAIL_NOLOC
expect_run 75 4.7.5 "hostname mismatch: the certificate is for other.example, not mail.corp.internal"

begin "mail.smtp.ssl.trust=*: a self-signed certificate is accepted, with a warning"
relay '{"cert":"selfsigned"}'
dest_clone T_ALL MAIL_NOLOC 'mail.smtp.ssl.trust=*'
run T_ALL
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_log 'warning.*destination T_ALL: mail.smtp.ssl.trust=\*: the relay.s certificate is NOT verified'
expect_log 'TLS connection established.*certificate NOT verified'

begin "mail.smtp.ssl.trust=* with checkserveridentity=true: the name is still checked"
relay '{"cert":"wrongname"}'
dest_clone T_ALLNAME MAIL_NOLOC 'mail.smtp.ssl.trust=*' mail.smtp.ssl.checkserveridentity=true
run T_ALLNAME
expect_run 75 4.7.5 "hostname mismatch"

begin "mail.smtp.ssl.trust=* under smtp_tls_security_level=verify: ignored"
relay '{"cert":"selfsigned"}'
dest_clone T_ALL MAIL_NOLOC 'mail.smtp.ssl.trust=*'
conf verify "smtp_tls_security_level = verify"
run T_ALL
expect_run 75 4.7.5 "self-signed certificate"
expect_log 'mail.smtp.ssl.trust=\* ignored: smtp_tls_security_level=verify'

begin "mail.smtp.ssl.trust lists the host: self-signed accepted (chain not verified)"
relay '{"cert":"selfsigned"}'
dest_clone T_HOST MAIL_NOLOC 'mail.smtp.ssl.trust=relay.other.example mail.corp.internal'
run T_HOST
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_log 'mail.smtp.ssl.trust lists mail.corp.internal: its certificate chain is NOT verified'

begin "mail.smtp.ssl.trust lists the host: the name is still checked"
relay '{"cert":"wrongname"}'
dest_clone T_HOST MAIL_NOLOC 'mail.smtp.ssl.trust=mail.corp.internal'
run T_HOST
expect_run 75 4.7.5 "hostname mismatch"

begin "mail.smtp.ssl.trust lists other hosts only: verified as usual"
relay '{"cert":"selfsigned"}'
dest_clone T_OTHER MAIL_NOLOC 'mail.smtp.ssl.trust=relay.other.example'
run T_OTHER
expect_run 75 4.7.5 "self-signed certificate"

begin "mail.smtp.ssl.checkserveridentity=false: another name accepted, with a warning"
relay '{"cert":"wrongname"}'
dest_clone T_NONAME MAIL_NOLOC mail.smtp.ssl.checkserveridentity=false
run T_NONAME
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_log 'checkserveridentity=false: the name in the relay.s certificate is NOT checked'

begin "mail.smtp.ssl.verifyname: the certificate's name instead of the virtual host, also the SNI"
relay '{"cert":"wrongname"}'
dest_clone T_VNAME MAIL_NOLOC mail.smtp.ssl.verifyname=other.example
run T_VNAME
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.sni == "other.example"'

begin "mail.smtp.ssl.fingerprint: a pinned self-signed certificate is accepted"
relay '{"cert":"selfsigned"}'
dest_clone T_PIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=$FP_WRONG, $FP_SELF"
run T_PIN
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_log 'certificate fingerprint matched'

begin "mail.smtp.ssl.fingerprint: another certificate is refused, its fingerprint in the text"
dest_clone T_PIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=$FP_SELF"
run T_PIN
expect_run 75 4.7.5 "certificate fingerprint mismatch: the relay's certificate has SHA-256 fingerprint $FP_RELAY"
expect_nothing_sent

begin "smtp_tls_fingerprint: pins every destination without its own pin"
relay '{"cert":"wrongname"}'
conf pin "smtp_tls_fingerprint = $FP_WRONG"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
dest_clone T_PIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=$FP_SELF"
run T_PIN
CASE="$CASE (the destination's pin wins)"
expect_run 75 4.7.5 "certificate fingerprint mismatch"

begin "a malformed pin: deferred 4.3.5"
dest_clone T_BADPIN MAIL_NOLOC "mail.smtp.ssl.fingerprint=12:34"
run T_BADPIN
expect_run 75 4.3.5 "mail.smtp.ssl.fingerprint of destination T_BADPIN: \"12:34\" is not a SHA-256 fingerprint"

# Certificates delivered with the destination: the Find response's certificates[]
# (SAP: "Find a Destination - Response Structure"), which the emulator sends for a destination PUT with them.
# smtp_tls_ca_file is an unrelated CA (the self-signed certificate), so the relay's
# chain verifies only through what the destination brings.
install -m 644 "$CERTS/selfsigned.pem" "$WORK/etc/unrelated-ca.pem"
CA_B64=$(base64 -w0 "$CERTS/ca.pem")
NOTES_B64=$(printf 'not a certificate\n' | base64 -w0)

# with_certs NEW FROM CERTS-JSON [key=value...] - clone FROM as NEW, with certificates[]
with_certs() {
	local new=$1 from=$2 certs=$3
	shift 3
	dest_clone "$new" "$from" "certificates:=$certs" "$@"
}
cert() {	# NAME BASE64 - one certificates[] item
	printf '{"Name":"%s","Type":"CERTIFICATE","Content":"%s"}' "$1" "$2"
}

begin "certificates[] of the Find response: the relay trusted only through them"
conf unrelated "smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem"
with_certs T_CERTS MAIL_NOLOC "[$(cert relay-ca.pem "$CA_B64")]"
run T_CERTS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == true and .sni == "mail.corp.internal"'
expect_log 'TLS connection established to mail.corp.internal:25: .*certificate verified'
[ "$(emu GET /finds | jq -r '[.[] | select(.name == "T_CERTS")] | length')" -ge 1 ]
tap_ok $? "$CASE: found through the Destination Service" "$(emu GET /finds)"

begin "the same configuration without certificates[]: deferred 4.7.5"
conf unrelated "smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem"
dest_clone T_NOCERTS MAIL_NOLOC
run T_NOCERTS
expect_run 75 4.7.5 "certificate verification failed: unable to get local issuer certificate"
expect_nothing_sent

begin "certificates[] with an entry that is no certificate: skipped, the CA still trusted"
conf unrelated "smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem"
with_certs T_CERTS MAIL_NOLOC "[$(cert notes.txt "$NOTES_B64"),$(cert relay-ca.pem "$CA_B64")]"
run T_CERTS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"

begin "TrustStoreLocation names the entry to trust"
conf unrelated "smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem"
with_certs T_TSL MAIL_NOLOC "[$(cert other.pem "$NOTES_B64"),$(cert relay-ca.pem "$CA_B64")]" \
	TrustStoreLocation=relay-ca.pem
run T_TSL
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"

begin "TrustStoreLocation names no delivered certificate: deferred 4.3.5"
with_certs T_TSL MAIL_NOLOC "[$(cert relay-ca.pem "$CA_B64")]" TrustStoreLocation=missing.pem
run T_TSL
expect_run 75 4.3.5 "TrustStoreLocation missing.pem names none of the certificates delivered with it"
expect_nothing_sent

begin "TrustStoreLocation names an entry that is no certificate: deferred 4.7.5"
with_certs T_TSL MAIL_NOLOC "[$(cert notes.txt "$NOTES_B64")]" TrustStoreLocation=notes.txt
run T_TSL
expect_run 75 4.7.5 "certificate notes.txt of the destination: not a PEM or DER certificate"
expect_nothing_sent

begin "certificates[] whose Content is not base64: deferred 4.3.5 naming destination and certificate"
with_certs T_BAD64 MAIL_NOLOC "[$(cert relay-ca.pem 'not*base64')]"
run T_BAD64
expect_run 75 4.3.5 "destination T_BAD64: certificate relay-ca.pem: Content is not valid base64"
expect_nothing_sent

begin "smtps with the relay trusted only through certificates[]"
conf unrelated "smtp_tls_ca_file = $WORK/etc/unrelated-ca.pem"
with_certs T_SCERTS MAIL_SMTPS "[$(cert relay-ca.pem "$CA_B64")]"
run T_SCERTS
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.port == "relay_smtps" and .tls == true'

########################################################################################
# Client certificate
begin "relay requires a client certificate, none configured: deferred 4.7.5"
relay '{"require_client_cert":true}'
run MAIL_NOLOC
expect_run 75 4.7.5 "the relay wants a client certificate: smtp_tls_cert_file"
expect_nothing_sent

begin "smtp_tls_cert_file and smtp_tls_key_file: the relay sees the client certificate"
relay '{"require_client_cert":true}'
conf client "smtp_tls_cert_file = $WORK/etc/client.pem" "smtp_tls_key_file = $WORK/etc/client.key"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.client_cert != null and (.client_cert | test("btprelay test client"))'

begin "a client key readable by other users is refused: deferred 4.7.5"
conf client "smtp_tls_cert_file = $WORK/etc/client.pem" "smtp_tls_key_file = $WORK/etc/client-readable.key"
run MAIL_NOLOC
expect_run 75 4.7.5 "accessible by other users"
expect_nothing_sent

########################################################################################
# AUTH
begin "AUTH PLAIN (BasicAuthentication), inside STARTTLS"
run MAIL_ONPREM
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.auth_mech == "PLAIN" and .auth_user == "relayuser" and .tls == true'

begin "AUTH LOGIN when the relay offers only LOGIN"
relay '{"auth_mechs":["LOGIN"]}'
run MAIL_ONPREM
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.auth_mech == "LOGIN" and .auth_user == "relayuser"'

begin "AUTH XOAUTH2 with the token of an OAuth2 destination (authTokens)"
relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}'
run MAIL_OAUTH
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.auth_mech == "XOAUTH2" and .auth_user == "oauthuser" and .tls == true'

begin "OAuth2 destination, relay without XOAUTH2: deferred 4.7.0"
run MAIL_OAUTH
expect_run 75 4.7.0 "relay does not offer AUTH XOAUTH2"
expect_nothing_sent

begin "OAuth2 destination whose token the Destination Service could not get: deferred 4.7.0"
relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}'
emu POST /faults '{"authtokens":"error"}' >/dev/null
run MAIL_OAUTH
expect_run 75 4.7.0 "SMTP AUTH impossible: Retrieval of OAuth token failed"
expect_conn '.auth_mech == null'

begin "OAuth2 destination with an expired token: deferred 4.7.0, no AUTH"
relay '{"auth_mechs":["PLAIN","LOGIN","XOAUTH2"]}'
emu POST /faults '{"authtokens":"expired"}' >/dev/null
run MAIL_OAUTH
expect_run 75 4.7.0 "SMTP AUTH impossible"
expect_nothing_sent

begin "NoAuthentication: no AUTH"
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.auth_mech == null'

begin "mail.smtp.auth=false: no AUTH despite credentials"
dest_clone T_NOAUTH MAIL_ONPREM mail.smtp.auth=false
run T_NOAUTH
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.auth_mech == null'

begin "a refused password: deferred 4.7.0, never bounced"
dest_clone T_BADPW MAIL_ONPREM mail.password=wrong-password
run T_BADPW
expect_run 75 4.7.0 "SMTP authentication failed"

begin "Internet destination with credentials, relay without STARTTLS: no AUTH in clear text"
relay '{"starttls":false,"require_tls_for_auth":false}'
dest_clone T_INET MAIL_INTERNET Authentication=BasicAuthentication mail.user=relayuser \
	"mail.password=$(emu GET /destinations/MAIL_ONPREM | jq -r '.["mail.password"]')"
run T_INET
expect_run 75 4.7.4 "credentials are never sent in clear text over the Internet"
expect_nothing_sent

begin "OnPremise with smtp_auth_plaintext_onpremise = yes (default): AUTH without TLS through the tunnel"
relay '{"starttls":false,"require_tls_for_auth":false}'
run MAIL_ONPREM
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_conn '.tls == false and .auth_mech == "PLAIN" and .via_proxy == true'

begin "OnPremise with smtp_auth_plaintext_onpremise = no: TLS required for AUTH"
relay '{"starttls":false,"require_tls_for_auth":false}'
conf noplain "smtp_auth_plaintext_onpremise = no"
run MAIL_ONPREM
expect_run 75 4.7.4 "smtp_auth_plaintext_onpremise=no"
expect_nothing_sent

########################################################################################
# ESMTP
begin "SIZE over the relay's limit: bounced 5.3.4 before MAIL FROM"
relay '{"size_limit":1000}'
python3 - "$WORK/big.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("Subject: big\n\n" + ("y" * 70 + "\n") * 40)
PY
chmod 644 "$WORK/big.txt"
BODY=$WORK/big.txt
SIZE_ARG=(-s "$(wc -c < "$WORK/big.txt")")
run MAIL_NOLOC
expect_run 69 5.3.4 "exceeds size limit 1000 of relay"
expect_nothing_sent

begin "SIZE under the limit: MAIL FROM carries SIZE="
relay '{"size_limit":100000}'
SIZE_ARG=(-s 60)
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_msg '.mail_params | test("SIZE=60")'

begin "8BITMIME: BODY=8BITMIME when offered, nothing when not"
run MAIL_NOLOC
expect_msg '.mail_params | test("BODY=8BITMIME")'
relay '{"eightbitmime":false}'
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_msg '(.mail_params | test("BODY")) | not'

begin "SMTPUTF8: a UTF-8 recipient with a relay that has it"
run MAIL_NOLOC "j$(printf '\303\266')rg@corp.example"
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
expect_msg '(.mail_params | test("SMTPUTF8")) and .rcpt_to == ["jörg@corp.example"]'

begin "SMTPUTF8: a relay without it: bounced 5.6.7, nothing sent"
relay '{"smtputf8":false}'
run MAIL_NOLOC "j$(printf '\303\266')rg@corp.example"
expect_run 69 5.6.7 "relay does not support SMTPUTF8"
expect_nothing_sent

begin "multi-line reply: the lines joined in the text"
emu POST /faults '{"relay":{"eod":"250-2.0.0 Ok\n250 2.0.0 queued as multi"}}' >/dev/null
run MAIL_NOLOC
expect_run 0 2.0.0 "250-2.0.0 Ok 250 2.0.0 queued as multi"

begin "relay without enhanced status codes: synthesized"
relay '{"enhancedstatuscodes":false}'
run MAIL_NOLOC
expect_run 0 2.0.0 "250 Ok"
emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 User unknown"}}' >/dev/null
run MAIL_NOLOC nobody@corp.example
expect_run 69 5.0.0 "550 User unknown (in reply to RCPT TO command)"

begin "a reply line over 1023 bytes: protocol error 4.5.0"
emu POST /faults "{\"relay\":{\"mail\":\"451 4.3.0 $(printf 'z%.0s' $(seq 1100))\"}}" >/dev/null
run MAIL_NOLOC
expect_run 75 4.5.0 "a reply line longer than 1023 bytes in reply to MAIL FROM command"

begin "lines over 998 bytes are broken with CRLF SPACE, as Postfix does"
python3 - "$WORK/long.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("Subject: long lines\n\n" + "a" * 998 + "\n" + "".join(chr(65 + i % 26) for i in range(2500)) + "\nend\n")
PY
chmod 644 "$WORK/long.txt"
BODY=$WORK/long.txt
relay '{"max_line_length":998}'
run MAIL_NOLOC
expect_run 0 2.0.0 "250 2.0.0 Ok: queued"
f=$(emu GET /messages | jq -r '.[-1].file')
python3 - "$f" "$WORK/long.txt" <<'PY'
import sys
got = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read()
lines = got.split(b"\r\n")
assert max(len(l) for l in lines) <= 998, "a line over 998 bytes"
assert b"a" * 998 + b"\r\n" in got, "a line of exactly 998 bytes was broken"
joined = got.replace(b"\r\n ", b"").replace(b"\r\n", b"\n")
assert joined == want, "the body does not join back to the original"
PY
tap_ok $? "$CASE: every line at most 998 bytes, 998 untouched, CRLF SPACE removed gives the original"

begin "smtp_line_length_limit = 0: the relay refuses the long line (500 5.5.2)"
BODY=$WORK/long.txt
relay '{"max_line_length":998}'
conf nolimit "smtp_line_length_limit = 0"
run MAIL_NOLOC
expect_run 69 5.5.2 "line too long"

########################################################################################
begin "no secret in the logs or outputs"
n=$(grep -c . "$EMU/secrets.txt")
out=$(secret_scan "$WORK/log/all-runs.log" "$WORK/log/emulator.log")
rc=$?
[ "$n" -ge 4 ] && [ "$rc" = 0 ]
tap_ok $? "$CASE: none of $n secrets found, in any encoding" "exit $rc: $out"

tap_done
