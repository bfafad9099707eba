#!/usr/bin/env python3
"""make-corpus.py - (re)write the hand-made seed corpora in tests/fuzz/corpus/.

Each seed is a real protocol exchange or file: SOCKS5 replies with every REP
code and ATYP 01/03/04, multi-line SMTP replies and EHLO answers as Postfix,
Exchange and Sendmail send them, whole relay sessions, the JSON shapes of
SAP's Destination Service and XSUAA (destinations variable, Find responses, VCAP bindings, token
responses) and btprelay.conf. The files are committed; run this only to
change them (it removes seeds it no longer writes). Secrets are fake.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "corpus")
SEEDS = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    SEEDS.setdefault(target, {})[name] = data


def j(obj):
    return json.dumps(obj, indent=1)


# --- socks5: method reply, auth reply, CONNECT reply, then the relay's first bytes
OK = b"\x05\x80\x01\x00"
GREETING = b"220 mail.corp.internal ESMTP Postfix\r\n"
seed("socks5", "ok-atyp01", OK + b"\x05\x00\x00\x01\x7f\x00\x00\x01\xc3\x50" + GREETING)
seed("socks5", "ok-atyp03", OK + b"\x05\x00\x00\x03\x12mail.corp.internal\x00\x19" + GREETING)
seed("socks5", "ok-atyp04", OK + b"\x05\x00\x00\x04" + bytes(range(16)) + b"\x00\x19" + GREETING)
seed("socks5", "ok-nothing-after", OK + b"\x05\x00\x00\x01\x0a\x00\x00\x05\x00\x19")
for rep in range(1, 10):
    seed("socks5", "rep-%02x" % rep, OK + bytes([5, rep, 0, 1, 127, 0, 0, 1, 0, 0]))
seed("socks5", "rep-ff", OK + b"\x05\xff\x00\x01\x7f\x00\x00\x01\x00\x00")
seed("socks5", "rep-02-atyp-bad", OK + b"\x05\x02\x00\x00\x00")
seed("socks5", "atyp-bad", OK + b"\x05\x00\x00\x07\x00\x00\x00")
seed("socks5", "method-ff", b"\x05\xff")
seed("socks5", "method-00", b"\x05\x00")
seed("socks5", "socks4", b"\x04\x80")
seed("socks5", "auth-01-01", b"\x05\x80\x01\x01")
seed("socks5", "truncated-connect", OK + b"\x05\x00\x00\x01\x7f")
seed("socks5", "truncated-name", OK + b"\x05\x00\x00\x03\xffmail")
seed("socks5", "http", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
# without a token (a proxy in trusted mode): 0x00 goes straight to CONNECT
seed("socks5", "trusted-00-ok", b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\xc3\x50" + GREETING)
seed("socks5", "trusted-00-rep-03", b"\x05\x00\x05\x03\x00\x01\x7f\x00\x00\x01\x00\x00")
seed("socks5", "trusted-00-atyp03", b"\x05\x00\x05\x00\x00\x03\x05proxy\x00\x19" + GREETING)
seed("socks5", "method-02", b"\x05\x02")

# --- smtp-reply: lines as relays send them
POSTFIX_EHLO = ("250-mail.corp.internal\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
                "250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"
                "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n")
EXCHANGE_EHLO = ("250-EX01.corp.internal Hello [10.0.0.5]\r\n250-SIZE 37748736\r\n"
                 "250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n"
                 "250-X-ANONYMOUSTLS\r\n250-AUTH NTLM LOGIN\r\n250-X-EXPS GSSAPI NTLM\r\n"
                 "250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 XRDST\r\n")
SENDMAIL_EHLO = ("250-relay.corp.internal Hello mta [127.0.0.1], pleased to meet you\r\n"
                 "250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-EXPN\r\n250-VERB\r\n"
                 "250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250-ETRN\r\n250-AUTH DIGEST-MD5 CRAM-MD5\r\n"
                 "250-DELIVERBY\r\n250 HELP\r\n")
seed("smtp-reply", "ehlo-postfix", POSTFIX_EHLO)
seed("smtp-reply", "ehlo-exchange", EXCHANGE_EHLO)
seed("smtp-reply", "ehlo-sendmail", SENDMAIL_EHLO)
seed("smtp-reply", "size-huge", "250-SIZE 99999999999999999999999999\r\n250 SIZE=1024\r\n")
seed("smtp-reply", "rcpt-550", "550-5.1.1 <nobody@corp.example>: Recipient address rejected:\r\n"
     "550 5.1.1 User unknown in virtual mailbox table\r\n")
seed("smtp-reply", "various", "220 mail.corp.internal ESMTP\r\n421 4.3.2 Service shutting down\r\n"
     "354 End data with <CR><LF>.<CR><LF>\r\n451 4.7.1 Greylisted, try again in 300 s\r\n"
     "552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok: queued as 4F2A1B2C3D\r\n"
     "535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6\r\n334 VXNlcm5hbWU6\r\n250\r\n"
     "554 5.7.1 <a@b>: Relay access denied\r\n500 5.5.2 Error: bad syntax\r\n")
seed("smtp-reply", "garbage", "hello there\r\n25\r\n2500 x\r\n250x\r\n600 no\r\n199 no\r\n")

# --- smtp-session: the relay's whole side of a session (options vary by input hash)
def session(greeting="220 mail.corp.internal ESMTP Postfix\r\n", ehlo=POSTFIX_EHLO,
            extra="", mail="250 2.1.0 Ok\r\n", rcpts=("250 2.1.5 Ok\r\n",) * 3,
            data="354 End data with <CR><LF>.<CR><LF>\r\n",
            eod="250 2.0.0 Ok: queued as 4F2A1B2C3D\r\n", quit="221 2.0.0 Bye\r\n"):
    return greeting + ehlo + extra + mail + "".join(rcpts) + data + eod + quit


seed("smtp-session", "postfix-ok", session())
seed("smtp-session", "postfix-ok-auth", session(extra="235 2.7.0 Authentication successful\r\n"))
seed("smtp-session", "auth-login", session(extra="334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
                                           "235 2.7.0 Authentication successful\r\n"))
seed("smtp-session", "auth-535", session(extra="535 5.7.8 Error: authentication failed\r\n"))
seed("smtp-session", "starttls", session(extra="220 2.0.0 Ready to start TLS\r\n"
                                         "\x16\x03\x03\x00\x02\x02\x28"))
seed("smtp-session", "starttls-injection", session(extra="220 2.0.0 Ready to start TLS\r\n"
                                                   "250 injected\r\n"))
seed("smtp-session", "starttls-454", session(extra="454 4.7.0 TLS not available\r\n"))
seed("smtp-session", "exchange-ok", session(greeting="220 EX01.corp.internal Microsoft ESMTP MAIL "
                                            "Service ready\r\n", ehlo=EXCHANGE_EHLO))
seed("smtp-session", "sendmail-ok", session(greeting="220 relay.corp.internal ESMTP Sendmail "
                                            "8.17.1/8.17.1; Mon, 1 Jan 2024\r\n", ehlo=SENDMAIL_EHLO))
seed("smtp-session", "no-pipelining", session(ehlo="250-relay\r\n250-8BITMIME\r\n250 SIZE 1000\r\n"))
seed("smtp-session", "helo-fallback", session(ehlo="502 5.5.1 Error: command not implemented\r\n"
                                              "250 relay.corp.internal\r\n"))
seed("smtp-session", "greeting-554", "554 5.7.1 You are not welcome here\r\n")
seed("smtp-session", "greeting-421", "421 4.3.2 Service not available, closing channel\r\n")
seed("smtp-session", "greeting-multiline", "220-mail.corp.internal ESMTP\r\n220-no UCE\r\n220 ok\r\n"
     + POSTFIX_EHLO)
seed("smtp-session", "mail-451", session(mail="451 4.3.0 Try again later\r\n",
                                         rcpts=("503 5.5.1 Error: need MAIL command\r\n",) * 3,
                                         data="503 5.5.1 Error: need RCPT command\r\n"))
seed("smtp-session", "rcpt-550", session(rcpts=("550 5.1.1 <user@corp.example>: Recipient address "
                                                "rejected: User unknown\r\n",
                                                "250 2.1.5 Ok\r\n", "250 2.1.5 Ok\r\n")))
seed("smtp-session", "rcpt-421", session(rcpts=("421 4.4.2 Timeout exceeded\r\n",)))
seed("smtp-session", "data-554", session(data="554 5.5.1 Error: no valid recipients\r\n"))
seed("smtp-session", "eod-552", session(eod="552 5.3.4 Message size exceeds fixed limit\r\n"))
seed("smtp-session", "eod-451", session(eod="451 4.3.0 Error: queue file write error\r\n"))
seed("smtp-session", "eod-closed", session(eod="", quit=""))
seed("smtp-session", "mixed-codes", "220-a\r\n250 b\r\n")
seed("smtp-session", "long-line", "220 " + "x" * 1500 + "\r\n")

# --- smtp-envelope: sender NUL recipient NUL recipient ...
seed("smtp-envelope", "one", b"sender@client.test\0user@corp.example")
seed("smtp-envelope", "null-sender", b"\0user@corp.example")
seed("smtp-envelope", "three", b"s@client.test\0a@corp.example\0b@corp.example\0c@corp.example")
seed("smtp-envelope", "utf8", "s@client.test\0jürgen@corp.example".encode())
seed("smtp-envelope", "crlf", b"s@client.test\0a@corp.example>\r\nRCPT TO:<evil@x.example")
seed("smtp-envelope", "quoted", b'"john smith"@client.test\0"a\\"b"@corp.example')
seed("smtp-envelope", "long", b"s@client.test\0" + b"a" * 990 + b"@corp.example")

# --- smtp-body: first byte picks chunk sizes, the rest is the message (LF line ends)
seed("smtp-body", "simple", b"\x03Subject: hi\nFrom: a@b\n\nHello\n")
seed("smtp-body", "dots", b"\x07Subject: dots\n\n.leading dot\n..two dots\n.\nend\n")
seed("smtp-body", "crlf-mixed", b"\x01Subject: x\r\n\r\nline\r\nbare\rcr\n.\r\n.x\n")
seed("smtp-body", "no-final-lf", b"\x10Subject: x\n\nlast line without LF")
seed("smtp-body", "trailing-cr", b"\x02Subject: x\n\nends in CR\r")
seed("smtp-body", "8bit", "\x05Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\nGrüße aus Köln\n.\n".encode())
seed("smtp-body", "empty", b"\x00")

# --- base64
for name, text in [("user", "cmVsYXl1c2Vy"), ("username-prompt", "VXNlcm5hbWU6"),
                   ("password-prompt", "UGFzc3dvcmQ6"), ("location", "Y2xvdWQtc2RrLWpz"),
                   ("loc1", "TE9DMQ=="), ("pad1", "YWI="), ("plain", "AHJlbGF5dXNlcgBzM2NyZXQ="),
                   ("bad-pad", "a==="), ("bad-char", "ab$d"), ("short", "abc"),
                   ("nonzero-pad-bits", "QR==")]:
    seed("base64", name, text)

# --- dest-json: destinations files (btprelay.conf(5) destinations_file)
ONPREM = {"Name": "MAIL_ONPREM", "Type": "MAIL", "ProxyType": "OnPremise",
          "Authentication": "BasicAuthentication", "mail.user": "relayuser",
          "mail.password": "s3cret", "mail.smtp.host": "mail.corp.internal",
          "mail.smtp.port": "25", "mail.smtp.auth": "true", "mail.transport.protocol": "smtp",
          "mail.smtp.from": "noreply@corp.example", "CloudConnectorLocationId": "LOC1"}
INTERNET = {"Name": "MAIL_INTERNET", "Type": "MAIL", "ProxyType": "Internet",
            "Authentication": "NoAuthentication", "mail.smtp.host": "smtp.example.com",
            "mail.smtp.port": "587", "mail.smtp.starttls.enable": "true",
            "mail.smtp.starttls.required": "TRUE"}
SMTPS = {"Name": "MAIL_SMTPS", "Type": "MAIL", "ProxyType": "OnPremise",
         "mail.transport.protocol": "smtps", "mail.smtps.host": "mail.corp.internal",
         "mail.smtps.port": "465", "mail.from": "noreply@corp.example"}
OAUTH = {"Name": "MAIL_OAUTH", "Type": "MAIL", "ProxyType": "Internet",
         "Authentication": "OAuth2ClientCredentials", "mail.smtp.host": "smtp.office365.com",
         "mail.smtp.port": "587", "mail.user": "sender@corp.example",
         "tokenServiceURL": "https://login.example/oauth2/v2.0/token", "clientId": "x",
         "clientSecret": "y"}
seed("dest-json", "destinations-var", j([{"name": "MAIL_LOCAL", "type": "MAIL",
                                          "originalProperties": {"mail.smtp.host": "127.0.0.1",
                                                                 "mail.smtp.port": "2525"}}]))
seed("dest-json", "raw-list", j([ONPREM, INTERNET, SMTPS, OAUTH]))
seed("dest-json", "onprem-object", j(ONPREM))
seed("dest-json", "original-properties", j([{"name": "MAIL_ONPREM", "type": "MAIL",
                                             "proxyType": "OnPremise",
                                             "cloudConnectorLocationId": "LOC1",
                                             "originalProperties": {k: v for k, v in ONPREM.items()
                                                                    if k != "Name"}}]))
seed("dest-json", "bad-values", j([{"Name": "MAIL_ONPREM", "Type": "HTTP"},
                                   {"Name": "MAIL_ONPREM", "Type": "MAIL", "mail.smtp.port": "0"},
                                   dict(ONPREM, **{"mail.smtp.auth": "maybe"}),
                                   dict(ONPREM, ProxyType="PrivateLink"),
                                   dict(ONPREM, **{"mail.smtp.from": "a@b\r\nRCPT TO:<x@y>"}),
                                   dict(ONPREM, **{"mail.smtp.port": 25})]))
seed("dest-json", "not-array", '{"destinations": []}')
seed("dest-json", "truncated", j([ONPREM])[:120])

# --- bindings: VCAP_SERVICES-shaped files (as the emulator writes them, fake secrets)
DEST_CREDS = {"clientid": "sb-clone-dest!b1", "clientsecret": "fake-dest-secret",
              "url": "https://prov.authentication.eu10.hana.ondemand.com",
              "uri": "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
              "identityzone": "prov", "tenantid": "4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}
CONN_CREDS = {"clientid": "sb-clone-conn!b2", "clientsecret": "fake-conn-secret",
              "token_service_url": "https://prov.authentication.eu10.hana.ondemand.com",
              "url": "https://prov.authentication.eu10.hana.ondemand.com",
              "onpremise_proxy_host": "connectivityproxy.internal.cf.eu10.hana.ondemand.com",
              "onpremise_socks5_proxy_port": "20004", "onpremise_proxy_port": "20003",
              "onpremise_proxy_http_port": "20003"}
PEM = "-----BEGIN CERTIFICATE-----\\nMIIBfake\\n-----END CERTIFICATE-----\\n"
KEY = "-----BEGIN PRIVATE KEY-----\\nMIGfake\\n-----END PRIVATE KEY-----\\n"
seed("bindings", "vcap", j({"destination": [{"name": "dest-lite", "label": "destination",
                                             "tags": ["destination"], "plan": "lite",
                                             "credentials": DEST_CREDS}],
                            "connectivity": [{"name": "conn-lite", "label": "connectivity",
                                              "plan": "lite", "credentials": CONN_CREDS}]}))
seed("bindings", "vcap-x509", j({
    "destination": [{"name": "dest-x509", "label": "destination", "credentials": {
        "clientid": "dest-x509", "credential-type": "x509", "certificate": PEM, "key": KEY,
        "certurl": "https://prov.authentication.cert.eu10.hana.ondemand.com",
        "uri": DEST_CREDS["uri"]}}],
    "connectivity": [{"name": "conn-x509", "label": "connectivity", "credentials": dict(
        CONN_CREDS, **{"credential-type": "X509_GENERATED", "certificate": PEM, "key": KEY,
                       "certurl": "https://prov.authentication.cert.eu10.hana.ondemand.com",
                       "onpremise_socks5_proxy_port": 20004})}]}))
seed("bindings", "two-instances", j({"destination": [
    {"name": "dest-lite", "label": "destination", "credentials": DEST_CREDS},
    {"name": "dest-other", "label": "destination", "credentials": DEST_CREDS}],
    "connectivity": [{"name": "conn-lite", "label": "connectivity", "credentials": CONN_CREDS},
                     {"name": "conn-old", "label": "connectivity", "credentials": CONN_CREDS}]}))
seed("bindings", "uaa-nested", j({"destination": [{"name": "dest-lite", "label": "destination",
                                                   "credentials": {"uri": DEST_CREDS["uri"],
                                                                   "uaa": DEST_CREDS}}]}))
seed("bindings", "secret-key-layout", j({"connectivity": [{"name": "conn-lite",
                                                           "label": "connectivity",
                                                           "credentials": {"credentials": CONN_CREDS}}]}))
seed("bindings", "missing-keys", j({"connectivity": [{"name": "c", "credentials": {
    "clientid": "x", "onpremise_socks5_proxy_port": "99999"}}], "destination": {}}))
seed("bindings", "empty", "{}")

# --- config: the shipped sample and destinations declared in the file
with open(os.path.join(HERE, "..", "..", "config", "btprelay.conf"), "rb") as f:
    seed("config", "btprelay.conf", f.read())
seed("config", "harness", "# written by tests/lib/harness.sh\nbindings_file = /tmp/w/etc/bindings.json\n"
     "http_ca_file = /tmp/w/etc/ca.pem\nhttp_timeout = 3\nsmtp_tls_ca_file = /tmp/w/etc/ca.pem\n"
     "smtp_connect_timeout = 5\nsmtp_command_timeout = 5s\nsmtp_data_done_timeout = 10m\n"
     "delivery_deadline = 60\nlog = /tmp/w/log/btprelay.log\nlog_level = debug\n")
seed("config", "destinations", "destination.MAIL_LOCAL.mail.smtp.host = 127.0.0.1\n"
     "destination.MAIL_LOCAL.mail.smtp.port = 2525\n"
     "destination.MAIL_LOCAL.ProxyType = Internet\n"
     "destination.MAIL_LOCAL.mail.smtp.starttls.enable = false\n"
     "destination.MAIL_LOCAL.mail.password = s3cret\n"
     "  # comment\n\ntenant_subdomain = subscriber-1\ntenant_id = 4f1b2c3d-5e6f\n"
     "destination_selection = alwaysProvider\nhttp_retries = 3\nproxy_port = 20004\n"
     "smtp_tls_security_level = encrypt\nmilter_trace_header = yes\n")
seed("config", "errors", "unknown_key = 1\nhttp_timeout = 0\nhttp_timeout = 5\n"
     "delivery_deadline = 2000\nno equals sign\n = x\n")

# --- token: token service answers (RFC 6749 section 5.1)
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjbGllbnRfaWQiOiJzYi1jbG9uZS1jb25uIWIyIiwiemlk"
       "IjoiNGYxYjJjM2QifQ.c2lnbmF0dXJl")
seed("token", "xsuaa", j({"access_token": JWT, "token_type": "bearer", "expires_in": 43199,
                          "scope": "uaa.resource", "jti": "2b4c6d8e"}))
seed("token", "expires-string", j({"access_token": JWT, "expires_in": "3600"}))
seed("token", "expires-real", j({"access_token": JWT, "expires_in": 3599.9}))
seed("token", "no-expiry", j({"access_token": JWT}))
seed("token", "error-401", j({"error": "unauthorized", "error_description": "Bad credentials"}))
seed("token", "error-echoes-secret", j({"error": "invalid_client", "error_description":
                                        "client secret fuzz-client-secret-7f3a9c is wrong"}))
seed("token", "error-grant", j({"error": "unsupported_grant_type"}))
seed("token", "html", "<html><body>this is not JSON</body></html>")
seed("token", "token-with-space", j({"access_token": "abc def", "expires_in": 10}))

# --- dest-service: Find answers (SAP: "Find a Destination - Response Structure")
OWNER = {"SubaccountId": "9acf4877-5a3d-43d2-b67d-7516efe15b11", "InstanceId": None}
seed("dest-service", "find-onprem", j({"owner": OWNER, "destinationConfiguration": ONPREM}))
seed("dest-service", "find-internet", j({"owner": OWNER, "destinationConfiguration": INTERNET}))
seed("dest-service", "find-oauth", j({"owner": OWNER, "destinationConfiguration": OAUTH,
                                      "authTokens": [{"type": "Bearer", "value": JWT,
                                                      "http_header": {"key": "Authorization",
                                                                      "value": "Bearer " + JWT},
                                                      "expires_in": "3599"}]}))
seed("dest-service", "find-oauth-error", j({"owner": OWNER, "destinationConfiguration": OAUTH,
                                            "authTokens": [{"type": "Bearer", "value": "",
                                                            "error": "Retrieval of OAuth token "
                                                            "failed: 401 Unauthorized"}]}))
seed("dest-service", "not-found", j({"ErrorMessage": "Configuration with the specified name "
                                     "was not found"}))
seed("dest-service", "certificates", j({"owner": OWNER, "destinationConfiguration": SMTPS,
                                        "certificates": [{"Name": "relay.pem", "Type":
                                                          "CERTIFICATE", "Content": "TUlJQg=="}]}))

# --- routes-list: the list answers (subaccountDestinations, instanceDestinations)
ROUTED = dict(ONPREM, **{"btprelay.domains": "corp.example, .corp.example"})
seed("routes-list", "one-routed", j([ROUTED, INTERNET]))
seed("routes-list", "conflict", j([dict(ROUTED, Name="MAIL_B"), dict(ROUTED, Name="MAIL_A")]))
seed("routes-list", "mail-prefix", j([dict(INTERNET, **{"mail.btprelay.domains":
                                                        "internet.example\tother.example."})]))
seed("routes-list", "bad-domains", j([dict(ONPREM, **{"btprelay.domains":
                                                      "corp..example, -x-, a b, \u00e9.example, ."})]))
seed("routes-list", "not-mail", j([{"Name": "HTTP_X", "Type": "HTTP", "URL": "https://x.example",
                                    "btprelay.domains": "x.example"}]))
seed("routes-list", "bad-name", j([dict(ROUTED, Name="MAIL ONPREM\n")]))
seed("routes-list", "empty", "[]")
seed("routes-list", "not-array", j({"ErrorMessage": "Configuration not found"}))
seed("routes-list", "env-form", "corp.example=MAIL_ONPREM,.corp.example=MAIL_ONPREM\n"
     "# a comment\nfile.example MAIL_INTERNET\n")

# --- imap: a mailbox server's bytes (first byte: bit 0 POP3, bit 1 XOAUTH2)
seed("imap", "session-ok", b"\0* OK [CAPABILITY IMAP4rev1 UIDPLUS AUTH=PLAIN] ready\r\n"
     b"a1 OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] Logged in\r\n* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n"
     b"* OK [UIDVALIDITY 1000] UIDs valid\r\na2 OK [READ-WRITE] SELECT completed\r\n"
     b"* SEARCH 4 7\r\na3 OK SEARCH completed\r\n* 1 FETCH (UID 4 BODY[] {27}\r\n"
     b"Subject: a\r\n\r\nhello\r\n.dot\r\n)\r\na4 OK FETCH completed\r\na5 OK STORE completed\r\n"
     b"a6 OK MOVE completed\r\n* 1 EXPUNGE\r\na7 OK EXPUNGE completed\r\n")
seed("imap", "logindisabled", b"\0* OK ready\r\n* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
     b"a1 OK done\r\n")
seed("imap", "login-no", b"\0* OK [CAPABILITY IMAP4rev1] ready\r\n"
     b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
seed("imap", "fetch-cut", b"\0* OK [CAPABILITY IMAP4rev1] ready\r\na1 OK in\r\n"
     b"* OK [UIDVALIDITY 5] x\r\na2 OK sel\r\n* SEARCH 1\r\na3 OK s\r\n"
     b"* 1 FETCH (UID 1 BODY[] {100}\r\nshort")
seed("imap", "xoauth2-fail", b"\2* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n"
     b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\na1 NO [AUTHENTICATIONFAILED] invalid token\r\n")
seed("imap", "garbage-search", b"\0* OK [CAPABILITY IMAP4rev1] ready\r\na1 OK in\r\n"
     b"* OK [UIDVALIDITY 99999999999] x\r\n* 3 FETCH (FLAGS (\\Seen) BODY[HEADER] {5}\r\n"
     b"abcde)\r\na2 OK sel\r\n* SEARCH 1 x\r\na3 OK s\r\n")
seed("imap", "pop3-ok", b"\1+OK POP3 ready\r\n+OK caps\r\nUSER\r\nUIDL\r\nSTLS\r\n.\r\n"
     b"+OK\r\n+OK logged in\r\n+OK\r\n1 1000.1\r\n2 1000.2\r\n.\r\n+OK 20 octets\r\n"
     b"Subject: x\r\n\r\n..dot\r\n.\r\n+OK deleted\r\n+OK bye\r\n")
seed("imap", "pop3-login-fail", b"\1+OK ready\r\n-ERR no CAPA\r\n+OK\r\n"
     b"-ERR [AUTH] Authentication failed.\r\n")


def main():
    for target, files in SEEDS.items():
        d = os.path.join(ROOT, target)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("%d seeds in %d corpora" % (sum(len(v) for v in SEEDS.values()), len(SEEDS)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
