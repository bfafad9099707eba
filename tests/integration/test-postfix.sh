#!/bin/bash
# test-postfix.sh - the core delivery path with a real Postfix, swaks and the
# BTP emulator: every scenario of issue #2, asserted on Postfix's
# per-recipient status lines and on what reached the relay.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init postfix
harness_start_emulator
harness_install_transport
harness_start_postfix t_token mail_missing t_pauth t_rep02 t_rep04 t_451 t_close t_hang t_cert t_auth
. "$top_srcdir/tests/lib/scenario.sh"

# --- delivery ---------------------------------------------------------------
scenario "OnPremise relay with location ID, STARTTLS and AUTH"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example sent 'dsn=2.0.0'
expect_relay 1 '.via_proxy == true and .location_id == "LOC1"' \
	'.rcpt_to == ["user@corp.example"] and .mail_from == "sender@client.test"' \
	'.tls == true and .auth_user == "relayuser"'

scenario "Internet relay: direct TCP, STARTTLS verified against the test CA"
q=$(send_mail sender@client.test user@internet.example --header "Subject: $MARK")
expect_status "$q" user@internet.example sent
expect_relay 1 '.via_proxy == false and .tls == true and .auth_user == null'

scenario "OnPremise without a location ID"
q=$(send_mail sender@client.test user@noloc.example --header "Subject: $MARK")
expect_status "$q" user@noloc.example sent
expect_relay 1 '.via_proxy == true and .location_id == null'

scenario "three recipients: one delivery each, every one arrives"
q=$(send_mail sender@client.test a@corp.example,b@corp.example,c@corp.example --header "Subject: $MARK")
for r in a b c; do expect_status "$q" "$r@corp.example" sent; done
expect_relay 3 '(.rcpt_to | length) == 1'

scenario "body byte-exact: leading dots, lone dot, 8-bit text, LF line ends"
body=$WORK/body.txt
printf 'Subject: %s\nFrom: sender@client.test\nTo: user@corp.example\n\n.leading dot\n..two dots\n.\nGr\303\274\303\237e aus K\303\266ln\nlast line\n' "$MARK" > "$body"
q=$(send_mail sender@client.test user@corp.example --data "@$body")
expect_status "$q" user@corp.example sent
expect_relay 1 '.mail_params | test("BODY=8BITMIME")'
expect_body "$body"

scenario "5 MB message, streamed"
python3 - "$WORK/big.txt" "$MARK" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("Subject: %s\nFrom: sender@client.test\n\n" % sys.argv[2])
    n = 0
    while n < 5 * 1024 * 1024:
        line = ("." if n % 7 == 0 else "") + "line %08d " % n + "x" * 60 + "\n"
        f.write(line)
        n += len(line)
PY
q=$(send_mail sender@client.test user@corp.example --data "@$WORK/big.txt")
expect_status "$q" user@corp.example sent
expect_relay 1 '.size > 5000000 and (.mail_params | test("SIZE=[0-9]+"))'
expect_body "$WORK/big.txt"

# --- BTP failures: deferred, then delivered exactly once -------------------
scenario "token service down: deferred, delivered once after recovery"
dest_clone t_token MAIL_ONPREM
emu POST /faults '{"token":"refuse"}' >/dev/null
q=$(send_mail sender@client.test user@t_token.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_token.dest.test deferred 'dsn=4\.4\.3' 'token service.*connection refused'
expect_recovery "$q" user@t_token.dest.test

scenario "destination not found: deferred, text names the destination"
q=$(send_mail sender@client.test user@mail_missing.dest.test --header "Subject: $MARK")
expect_status "$q" user@mail_missing.dest.test deferred 'dsn=4\.3\.5' 'mail_missing.*not found'

scenario "proxy authentication refused: deferred"
dest_clone t_pauth MAIL_ONPREM
emu POST /faults '{"proxy":"auth_fail"}' >/dev/null
q=$(send_mail sender@client.test user@t_pauth.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_pauth.dest.test deferred 'dsn=4\.7\.0' 'proxy authentication rejected'
expect_recovery "$q" user@t_pauth.dest.test

scenario "proxy REP 02: deferred with SAP's meaning"
dest_clone t_rep02 MAIL_ONPREM
emu POST /faults '{"proxy_rep":2}' >/dev/null
q=$(send_mail sender@client.test user@t_rep02.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_rep02.dest.test deferred 'REP 02 (no matching host mapping in the Cloud Connector access control)'

scenario "proxy REP 04: deferred with SAP's meaning"
dest_clone t_rep04 MAIL_ONPREM
emu POST /faults '{"proxy_rep":4}' >/dev/null
q=$(send_mail sender@client.test user@t_rep04.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_rep04.dest.test deferred 'REP 04 (backend host unreachable)'
expect_recovery "$q" user@t_rep04.dest.test

# --- relay replies ----------------------------------------------------------
scenario "relay RCPT 550: bounced with the relay's reply"
emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown"}}' >/dev/null
q=$(send_mail sender@client.test nobody@corp.example --header "Subject: $MARK")
expect_status "$q" nobody@corp.example bounced 'dsn=5\.1\.1' '550 5\.1\.1 <nobody@corp.example>: Recipient address rejected: User unknown'
expect_relay 0

scenario "relay 451 at MAIL FROM: deferred with the relay's reply"
dest_clone t_451 MAIL_ONPREM
emu POST /faults '{"relay":{"mail":"451 4.3.0 Try again later"}}' >/dev/null
q=$(send_mail sender@client.test user@t_451.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_451.dest.test deferred 'dsn=4\.3\.0' '451 4\.3\.0 Try again later'
expect_recovery "$q" user@t_451.dest.test

scenario "relay closes the connection after DATA: deferred, delivered once later"
dest_clone t_close MAIL_ONPREM
emu POST /faults '{"relay":{"eod":"close"}}' >/dev/null
q=$(send_mail sender@client.test user@t_close.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_close.dest.test deferred 'dsn=4\.4\.2' 'lost connection'
expect_recovery "$q" user@t_close.dest.test

scenario "relay stops answering: deferred by the command timeout"
dest_clone t_hang MAIL_ONPREM
emu POST /faults '{"relay":{"rcpt":"hang"}}' >/dev/null
q=$(send_mail sender@client.test user@t_hang.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_hang.dest.test deferred 'dsn=4\.4\.2' 'timeout'
expect_delay_below "$q" user@t_hang.dest.test 30
expect_recovery "$q" user@t_hang.dest.test

scenario "relay certificate does not name the host: deferred, nothing sent"
dest_clone t_cert MAIL_ONPREM
emu POST /relay '{"cert":"wrongname"}' >/dev/null
q=$(send_mail sender@client.test user@t_cert.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_cert.dest.test deferred 'dsn=4\.7\.5' 'certificate verification failed'
expect_relay 0

scenario "relay refuses the credentials: deferred with the relay's reply"
dest_clone t_auth MAIL_ONPREM mail.password=wrong-password
q=$(send_mail sender@client.test user@t_auth.dest.test --header "Subject: $MARK")
expect_status "$q" user@t_auth.dest.test deferred 'dsn=4\.7\.' '535'

# --- hygiene ----------------------------------------------------------------
scenario "no secret in any log or output"
expect_no_secrets "$WORK/log/maillog" "$BTPRELAY_LOG" "$WORK/log/swaks.log"

tap_done
