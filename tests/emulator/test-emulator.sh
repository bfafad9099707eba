#!/bin/sh
# test-emulator.sh - self-test of the BTP emulator (TAP). Exit 77 = skipped.
#
# Starts btp-emulator.py in a temporary directory and checks every service, the exact
# SOCKS5 0x80 bytes, TLS, byte-exact message storage, each fault switch, the counters,
# /reset, load (threads come back) and a prompt SIGTERM. Each check is a small python3
# snippet run after the helpers below (emutest.py).

set -u

if ! command -v python3 >/dev/null 2>&1; then
    echo "1..0 # SKIP python3 not found"
    exit 77
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "1..0 # SKIP openssl not found"
    exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
# The interpreter behind "python3" (skips a pyenv shim's overhead on every check).
PY=$(python3 -c 'import sys; print(sys.executable)')

T=$(mktemp -d "${TMPDIR:-/tmp}/test-emulator.XXXXXX")
EMU_DIR=$T/emu
EMU_LOG=$T/emu.log
export EMU_DIR EMU_LOG
emu_pid=

cleanup() {
    if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
        kill "$emu_pid" 2>/dev/null
        wait "$emu_pid" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

"$PY" "$here/btp-emulator.py" --dir "$EMU_DIR" --log "$EMU_LOG" --quiet &
emu_pid=$!
waited=0
while [ ! -f "$EMU_DIR/ports.json" ]; do
    if [ "$waited" -ge 150 ] || ! kill -0 "$emu_pid" 2>/dev/null; then
        echo "Bail out! the emulator did not write ports.json within 15 s"
        [ -f "$EMU_LOG" ] && sed 's/^/# /' "$EMU_LOG"
        exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
done
export EMU_PID=$emu_pid

cat >"$T/emutest.py" <<'EOF'
import base64, http.client, json, os, random, socket, ssl, struct, sys, time, urllib.parse

DIR = os.environ["EMU_DIR"]
with open(os.path.join(DIR, "ports.json")) as f:
    PORTS = json.load(f)
with open(os.path.join(DIR, "vcap.json")) as f:
    VCAP = json.load(f)
CA = os.path.join(DIR, "certs", "ca.pem")
CONN = VCAP["connectivity"][0]["credentials"]
DEST = VCAP["destination"][0]["credentials"]


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def equal(got, want, what):
    if got != want:
        raise SystemExit(f"FAILED: {what}: got {got!r}, want {want!r}")


def tls_context():
    return ssl.create_default_context(cafile=CA)


def request(service, method, path, body=None, headers=None, timeout=5):
    port = PORTS[service]
    if service == "control":
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls_context())
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def control(method, path, obj=None):
    status, data = request("control", method, path,
                           json.dumps(obj) if obj is not None else None)
    check(status < 400, f"control {method} {path} -> {status} {data!r}")
    return json.loads(data)


class fault:
    """with fault({...}): the switches are set inside the block, cleared after it."""
    def __init__(self, switches):
        self.switches = switches
    def __enter__(self):
        control("POST", "/faults", self.switches)
    def __exit__(self, *exc):
        control("POST", "/faults/clear")


class relay_options:
    """with relay_options({...}): relay options inside the block, defaults after it."""
    def __init__(self, options):
        self.options = options
    def __enter__(self):
        control("POST", "/relay", self.options)
    def __exit__(self, *exc):
        control("POST", "/relay", {key: None for key in self.options})


def token_request(client_id, secret, grant="client_credentials", basic=False):
    form = {"grant_type": grant} if grant is not None else {}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        pair = f"{client_id}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form.update(client_id=client_id, client_secret=secret)
    return request("token", "POST", "/oauth/token", urllib.parse.urlencode(form), headers)


def token(which="connectivity"):
    cred = CONN if which == "connectivity" else DEST
    status, data = token_request(cred["clientid"], cred["clientsecret"])
    equal(status, 200, "token request")
    return json.loads(data)["access_token"]


def jwt_claims(jwt):
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def find(name, jwt, query=""):
    headers = {"Authorization": "Bearer " + jwt} if jwt else {}
    return request("destination", "GET",
                   "/destination-configuration/v1/destinations/" + name + query, headers=headers)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {data!r}")
        data += chunk
    return data


def expect_eof(sock, what):
    """The peer closes (or resets) without sending anything more."""
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        return
    equal(data, b"", what)


def read_for(sock, seconds):
    """Whatever arrives within the time (stops early at EOF)."""
    deadline = time.monotonic() + seconds
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            data = sock.recv(100)
        except socket.timeout:
            return got
        if not data:
            return got
        got += data


def expect_silence(sock, seconds, what):
    sock.settimeout(seconds)
    try:
        data = sock.recv(100)
    except socket.timeout:
        return
    raise SystemExit(f"FAILED: {what}: expected silence, got {data!r}")


def auth_request(jwt, location):
    encoded = base64.b64encode(location.encode()) if location else b""
    return b"\x01" + struct.pack(">I", len(jwt)) + jwt + bytes([len(encoded)]) + encoded


def connect_request(host, port, atyp=3, cmd=1):
    if atyp == 3:
        address = bytes([len(host)]) + host.encode()
    elif atyp == 1:
        address = socket.inet_aton(host)
    else:
        address = socket.inet_pton(socket.AF_INET6, host)
    return bytes([5, cmd, 0, atyp]) + address + struct.pack(">H", port)


def proxy_socket():
    return socket.create_connection(("127.0.0.1", PORTS["proxy"]), timeout=5)


def tunnel(host="mail.corp.internal", port=25, location="LOC1", jwt=None, atyp=3, cmd=1):
    """Greeting, 0x80 auth, CONNECT: (socket, REP)."""
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    equal(recv_exact(s, 2), b"\x05\x80", "method reply")
    s.sendall(auth_request((jwt or token()).encode(), location))
    equal(recv_exact(s, 2), b"\x01\x00", "auth reply")
    s.sendall(connect_request(host, port, atyp, cmd))
    reply = recv_exact(s, 10)
    equal(reply[:1], b"\x05", "connect reply version")
    return s, reply[1]


class Smtp:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"EOF, buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), lines

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def expect(self, line, code):
        if line is not None:
            self.send(line + "\r\n")
        got, lines = self.reply()
        equal(got, code, f"reply to {line!r} ({lines})")
        return lines

    def starttls(self, hostname="mail.corp.internal"):
        self.expect("STARTTLS", 220)
        self.sock = tls_context().wrap_socket(self.sock, server_hostname=hostname)


def relay_direct(port="relay"):
    sock = socket.create_connection(("127.0.0.1", PORTS[port]), timeout=5)
    if port == "relay_smtps":
        sock = tls_context().wrap_socket(sock, server_hostname="mail.corp.internal")
    return Smtp(sock)


def relay_via_proxy(port=25, location="LOC1", jwt=None):
    sock, rep = tunnel(port=port, location=location, jwt=jwt)
    equal(rep, 0, "CONNECT REP")
    if port == 465:
        sock = tls_context().wrap_socket(sock, server_hostname="mail.corp.internal")
    return Smtp(sock)


def relay_password():
    return control("GET", "/destinations/MAIL_ONPREM")["mail.password"]


def plain_auth(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def send_message(smtp, body, sender="app@corp.example", rcpts=("bob@corp.example",)):
    smtp.expect(f"MAIL FROM:<{sender}>", 250)
    for rcpt in rcpts:
        smtp.expect(f"RCPT TO:<{rcpt}>", 250)
    smtp.expect("DATA", 354)
    smtp.send(body + b".\r\n")
    return smtp.reply()


def messages():
    return control("GET", "/messages")


def counters():
    return control("GET", "/counters")
EOF

n=0
failed=0
# check DESCRIPTION <<'EOF' python... EOF : one TAP line; the snippet's output on failure.
check() {
    n=$((n + 1))
    if cat "$T/emutest.py" - | "$PY" - >"$T/out" 2>&1; then
        echo "ok $n - $1"
    else
        echo "not ok $n - $1"
        sed 's/^/# /' "$T/out"
        failed=$((failed + 1))
    fi
}

# --- files ---------------------------------------------------------------------------

check "ports.json, vcap.json, secrets.txt, pid file and certificates" <<'EOF'
equal(sorted(PORTS), sorted(["token", "destination", "proxy", "relay", "relay_smtps", "control"]), "ports")
equal(len(set(PORTS.values())), 6, "six different ports")
for name in ("vcap.json", "secrets.txt", "certs/ca.key", "certs/server.key", "certs/relay.key",
             "certs/wrongname.key", "certs/client.key"):
    equal(os.stat(os.path.join(DIR, name)).st_mode & 0o777, 0o600, name + " mode")
for name in ("ca.pem", "server.pem", "relay.pem", "wrongname.pem", "client.pem"):
    check(os.path.exists(os.path.join(DIR, "certs", name)), name)
equal(open(os.path.join(DIR, "emulator.pid")).read().strip(), os.environ["EMU_PID"], "pid file")
equal(CONN["clientid"], "sb-clone-conn!b2", "connectivity client id")
equal(DEST["clientid"], "sb-clone-dest!b1", "destination client id")
equal(CONN["onpremise_socks5_proxy_port"], str(PORTS["proxy"]), "proxy port in vcap")
equal(CONN["token_service_url"], f"https://127.0.0.1:{PORTS['token']}", "token url")
equal(DEST["uri"], f"https://127.0.0.1:{PORTS['destination']}", "destination uri")
equal(VCAP["destination"][0]["tags"], ["destination", "conn", "destination"], "tags")
lines = open(os.path.join(DIR, "secrets.txt")).read().split()
for secret in (CONN["clientsecret"], DEST["clientsecret"], relay_password()):
    check(secret in lines, "secret listed in secrets.txt")
EOF

# --- token service -------------------------------------------------------------------

check "token: form credentials -> 200 with a signed JWT, listed in secrets.txt" <<'EOF'
status, data = token_request(CONN["clientid"], CONN["clientsecret"])
equal(status, 200, "status")
body = json.loads(data)
equal(body["token_type"], "bearer", "token_type")
equal(body["expires_in"], 43199, "expires_in")
equal(body["scope"], "uaa.resource", "scope")
jwt = body["access_token"]
header = json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "=="))
equal(header, {"alg": "HS256", "typ": "JWT"}, "JWT header")
claims = jwt_claims(jwt)
equal(claims["client_id"], "sb-clone-conn!b2", "client_id")
equal(claims["cid"], "sb-clone-conn!b2", "cid")
equal(claims["zid"], CONN.get("tenantid", DEST["tenantid"]), "zid")
equal(claims["exp"] - claims["iat"], 43199, "lifetime")
equal(claims["jti"], body["jti"], "jti")
equal(claims["iss"], f"https://127.0.0.1:{PORTS['token']}/oauth/token", "iss")
check(jwt in open(os.path.join(DIR, "secrets.txt")).read().split(), "token in secrets.txt")
EOF

check "token: HTTP Basic credentials -> 200 (raw and form-encoded client id)" <<'EOF'
status, data = token_request(DEST["clientid"], DEST["clientsecret"], basic=True)
equal(status, 200, "status")
equal(jwt_claims(json.loads(data)["access_token"])["client_id"], "sb-clone-dest!b1", "client_id")
status, _ = token_request(urllib.parse.quote(DEST["clientid"], safe=""), DEST["clientsecret"], basic=True)
equal(status, 200, "form-encoded client id")
EOF

check "token: bad secret -> 401, wrong or missing grant_type -> 400" <<'EOF'
status, data = token_request(CONN["clientid"], "wrong")
equal(status, 401, "status")
equal(json.loads(data), {"error": "unauthorized", "error_description": "Bad credentials"}, "body")
status, _ = token_request("nobody", CONN["clientsecret"], basic=True)
equal(status, 401, "unknown client")
status, data = token_request(CONN["clientid"], CONN["clientsecret"], grant="password")
equal(status, 400, "wrong grant")
equal(json.loads(data), {"error": "unsupported_grant_type"}, "body")
status, _ = token_request(CONN["clientid"], CONN["clientsecret"], grant=None)
equal(status, 400, "missing grant")
EOF

# --- destination service -------------------------------------------------------------

check "find: 200 with a destination token, query string recorded" <<'EOF'
status, data = find("MAIL_ONPREM", token("destination"), "?$skipTokenRetrieval=true")
equal(status, 200, "status")
body = json.loads(data)
equal(body["owner"], {"SubaccountId": "9acf4877-5a3d-43d2-b67d-7516efe15b11", "InstanceId": None}, "owner")
config = body["destinationConfiguration"]
for key, value in {"Name": "MAIL_ONPREM", "Type": "MAIL", "ProxyType": "OnPremise",
                   "Authentication": "BasicAuthentication", "mail.user": "relayuser",
                   "mail.smtp.host": "mail.corp.internal", "mail.smtp.port": "25",
                   "mail.smtp.auth": "true", "mail.transport.protocol": "smtp",
                   "mail.smtp.from": "noreply@corp.example", "CloudConnectorLocationId": "LOC1"}.items():
    equal(config[key], value, key)
equal(config["mail.password"], relay_password(), "password")
last = control("GET", "/finds")[-1]
equal((last["name"], last["query"], last["status"]), ("MAIL_ONPREM", "$skipTokenRetrieval=true", 200), "recorded")
status, data = find("MAIL_NOLOC", token("destination"))
check("CloudConnectorLocationId" not in json.loads(data)["destinationConfiguration"], "MAIL_NOLOC has no location")
status, data = find("MAIL_INTERNET", token("destination"))
equal(json.loads(data)["destinationConfiguration"]["mail.smtp.port"], str(PORTS["relay"]), "MAIL_INTERNET port")
EOF

check "find: no token / forged / expired -> 401, connectivity token -> 403, unknown -> 404" <<'EOF'
equal(find("MAIL_ONPREM", None)[0], 401, "no token")
jwt = token("destination")
forged = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
status, data = find("MAIL_ONPREM", forged)
equal(status, 401, "forged")
check("ErrorMessage" in json.loads(data), "ErrorMessage")
equal(find("MAIL_ONPREM", token("connectivity"))[0], 403, "connectivity token")
status, data = find("NOPE", jwt)
equal(status, 404, "unknown")
equal(json.loads(data), {"ErrorMessage": "Configuration with the specified name was not found"}, "404 body")
with relay_options({"token_ttl": 0}):
    expired = token("destination")
equal(find("MAIL_ONPREM", expired)[0], 401, "expired")
EOF

check "control: PUT, GET, DELETE a destination" <<'EOF'
props = {"Name": "MAIL_X", "Type": "MAIL", "ProxyType": "Internet", "mail.smtp.host": "x"}
equal(control("PUT", "/destinations/MAIL_X", props), props, "put")
equal(json.loads(find("MAIL_X", token("destination"))[1])["destinationConfiguration"], props, "found")
control("DELETE", "/destinations/MAIL_X")
equal(find("MAIL_X", token("destination"))[0], 404, "deleted")
EOF

# --- connectivity proxy: exact bytes -------------------------------------------------

check "proxy: greetings 05 01 80 and 05 02 00 80 -> 05 80; 05 01 00 -> 05 ff" <<'EOF'
for greeting in (b"\x05\x01\x80", b"\x05\x02\x00\x80"):
    s = proxy_socket()
    s.sendall(greeting)
    equal(recv_exact(s, 2), b"\x05\x80", f"reply to {greeting.hex()}")
    s.close()
s = proxy_socket()
s.sendall(b"\x05\x01\x00")
equal(recv_exact(s, 2), b"\x05\xff", "no 0x80 offered")
expect_eof(s, "closed after 05 ff")
EOF

check "proxy: auth request of REFERENCE shape, location LOC1 -> 01 00" <<'EOF'
# The builder reproduces REFERENCE.md's 177-byte example exactly...
example = auth_request(b"x" * 155, "cloud-sdk-js")
equal(len(example), 177, "example length")
equal(example[:5], bytes.fromhex("010000009b"), "example head")
equal(example[160:], bytes.fromhex("10 59 32 78 76 64 57 51 74 63 32 52 72 4c 57 70 7a"), "example tail")
equal(auth_request(b"x" * 155, ""), example[:160] + b"\x00", "example without location")
# ... and the same shape with a real token and LOC1 is accepted.
jwt = token().encode()
request_bytes = auth_request(jwt, "LOC1")
equal(request_bytes[-9:], b"\x08TE9DMQ==", "LOC1 in base64 with its length")
s = proxy_socket()
s.sendall(b"\x05\x01\x80")
equal(recv_exact(s, 2), b"\x05\x80", "method")
s.sendall(request_bytes)
equal(recv_exact(s, 2), b"\x01\x00", "auth reply")
EOF

check "proxy: forged, expired, wrong-client and over-long JWTs -> 01 01" <<'EOF'
good = token()
with relay_options({"token_ttl": 0}):
    expired = token()
bad = [good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), expired, token("destination"), "not-a-jwt"]
for jwt in bad:
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    recv_exact(s, 2)
    s.sendall(auth_request(jwt.encode(), "LOC1"))
    equal(recv_exact(s, 2), b"\x01\x01", f"auth reply for {jwt[:20]}")
    expect_eof(s, "closed after 01 01")
s = proxy_socket()
s.sendall(b"\x05\x01\x80")
recv_exact(s, 2)
s.sendall(b"\x01" + struct.pack(">I", 1 << 20))
equal(recv_exact(s, 2), b"\x01\x01", "absurd length")
EOF

check "proxy: CONNECT mail.corp.internal:25 -> 05 00 00 01 7f000001 port, SMTP greeting through the tunnel" <<'EOF'
s = proxy_socket()
s.sendall(b"\x05\x01\x80")
recv_exact(s, 2)
s.sendall(auth_request(token().encode(), "LOC1"))
recv_exact(s, 2)
s.sendall(bytes.fromhex("050100 03 12") + b"mail.corp.internal" + bytes.fromhex("0019"))
reply = recv_exact(s, 10)
equal(reply[:8], bytes.fromhex("05000001 7f000001"), "connect reply")
smtp = Smtp(s)
code, lines = smtp.reply()
equal(code, 220, "greeting")
check(lines[0].startswith("220 mail.corp.internal"), "greeting text")
smtp.expect("QUIT", 221)
EOF

check "proxy: REP 02 unknown host, 03 unknown location, 04 backend down, 07 not CONNECT, 08 IPv6" <<'EOF'
for kwargs, rep in (({"host": "nosuch.corp.internal"}, 2), ({"port": 26}, 2),
                    ({"host": "127.0.0.1", "atyp": 1}, 2), ({"location": "LOC2"}, 3),
                    ({"host": "down.corp.internal"}, 4), ({"cmd": 2}, 7),
                    ({"host": "::1", "atyp": 4}, 8)):
    s, got = tunnel(**kwargs)
    equal(got, rep, f"REP for {kwargs}")
    expect_eof(s, "closed after the refusal")
EOF

check "proxy: no location ID (L=0) reaches the relay; relay_smtps on :465" <<'EOF'
smtp = relay_via_proxy(location="")
smtp.expect(None, 220)
smtp.expect("QUIT", 221)
smtp = relay_via_proxy(port=465)
smtp.expect(None, 220)
smtp.expect("EHLO client.example", 250)
smtp.expect("QUIT", 221)
EOF

# --- relay ---------------------------------------------------------------------------

check "relay: STARTTLS verified against ca.pem as mail.corp.internal, AUTH PLAIN, byte-exact message" <<'EOF'
smtp = relay_via_proxy()
smtp.expect(None, 220)
ehlo = smtp.expect("EHLO client.example", 250)
for ext in ("PIPELINING", "SIZE 0", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS"):
    check(any(line[4:] == ext for line in ehlo), f"EHLO offers {ext}")
check(not any(line[4:].startswith("AUTH") for line in ehlo), "no AUTH before TLS")
smtp.starttls()
ehlo = smtp.expect("EHLO client.example", 250)
check(any(line[4:] == "AUTH PLAIN LOGIN" for line in ehlo), "AUTH after TLS")
check(not any(line[4:] == "STARTTLS" for line in ehlo), "no STARTTLS inside TLS")
smtp.expect("AUTH PLAIN " + plain_auth("relayuser", "wrong"), 535)
smtp.expect("AUTH PLAIN " + plain_auth("relayuser", relay_password()), 235)
body = (b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nmiddle . dot\r\n.\r\n" +
        b"\xc3\xa4 8bit\r\n")
stuffed = body.replace(b"\r\n.", b"\r\n..")
smtp.expect("MAIL FROM:<app@corp.example> SIZE=%d BODY=8BITMIME" % len(body), 250)
smtp.expect("RCPT TO:<bob@corp.example>", 250)
smtp.expect("RCPT TO:<carol@corp.example>", 250)
smtp.expect("DATA", 354)
smtp.send(stuffed + b".\r\n")
code, lines = smtp.reply()
equal(code, 250, "end of data")
number = int(lines[0].rsplit(" ", 1)[1])
check(lines[0].startswith("250 2.0.0 Ok: queued as "), "queued reply")
smtp.expect("QUIT", 221)
record = [m for m in messages() if m["id"] == number][0]
equal(open(record["file"], "rb").read(), body, "stored bytes")
equal(open(os.path.join(DIR, "messages", f"{number}.eml"), "rb").read(), body, "N.eml")
stored = json.load(open(os.path.join(DIR, "messages", f"{number}.json")))
expected = {"id": number, "helo": "client.example", "mail_from": "app@corp.example",
            "mail_params": "SIZE=%d BODY=8BITMIME" % len(body),
            "rcpt_to": ["bob@corp.example", "carol@corp.example"], "tls": True,
            "auth_user": "relayuser", "via_proxy": True, "location_id": "LOC1",
            "size": len(body), "port": "relay"}
for key, value in expected.items():
    equal(stored[key], value, key)
check(stored["tls_version"].startswith("TLS"), "tls_version")
EOF

check "relay: wrong certificate (cert=wrongname) fails verification" <<'EOF'
with relay_options({"cert": "wrongname"}):
    smtp = relay_via_proxy()
    smtp.expect(None, 220)
    smtp.expect("EHLO client.example", 250)
    try:
        smtp.starttls()
    except ssl.SSLCertVerificationError as e:
        check("mail.corp.internal" in str(e) or "match" in str(e), f"hostname mismatch: {e}")
    else:
        raise SystemExit("FAILED: the wrong name was accepted")
EOF

check "relay: AUTH LOGIN, extra users, 538 before TLS, envelope of a direct connection" <<'EOF'
with relay_options({"users": {"alice": "wonderland"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("AUTH PLAIN " + plain_auth("relayuser", relay_password()), 538)
    smtp.starttls()
    smtp.expect("EHLO c", 250)
    equal(smtp.expect("AUTH LOGIN", 334), ["334 VXNlcm5hbWU6"], "user prompt")
    equal(smtp.expect(base64.b64encode(b"alice").decode(), 334), ["334 UGFzc3dvcmQ6"], "password prompt")
    smtp.expect(base64.b64encode(b"wonderland").decode(), 235)
    code, _ = send_message(smtp, b"Subject: x\r\n\r\nhi\r\n")
    equal(code, 250, "queued")
    m = messages()[-1]
    equal((m["auth_user"], m["via_proxy"], m["location_id"], m["port"]), ("alice", False, None, "relay"), "envelope")
    check("wonderland" in open(os.path.join(DIR, "secrets.txt")).read().split(), "extra password in secrets.txt")
EOF

check "relay: AUTH PLAIN with a 334 continuation; implicit TLS on relay_smtps" <<'EOF'
smtp = relay_direct("relay_smtps")
smtp.expect(None, 220)
ehlo = smtp.expect("EHLO c", 250)
check(not any("STARTTLS" in line for line in ehlo), "no STARTTLS on smtps")
smtp.expect("AUTH PLAIN", 334)
smtp.expect(plain_auth("relayuser", relay_password()), 235)
code, _ = send_message(smtp, b"x\r\n")
equal(code, 250, "queued")
m = messages()[-1]
equal((m["port"], m["tls"], m["auth_user"]), ("relay_smtps", True, "relayuser"), "envelope")
EOF

check "relay: pipelined MAIL/RCPT/DATA/body/QUIT in one write, replies in order" <<'EOF'
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
smtp.send(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
          b"line\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
codes = [smtp.reply()[0] for _ in range(9)]
equal(codes, [250, 250, 501, 250, 354, 250, 250, 250, 221], "reply codes")
m = messages()[-1]
equal((m["mail_from"], m["rcpt_to"], m["helo"]), ("", ["a@x", "b@x"], "c"), "envelope")
EOF

check "relay: random dot-stuffed bodies split at random points are stored byte-exact" <<'EOF'
rng = random.Random(4711)
for round_ in range(20):
    lines = []
    for _ in range(rng.randint(1, 400)):
        text = rng.choice([b"", b".", b"..", b". x", b"x.", b"\xff\x00bin", b"a" * rng.randint(0, 3000)])
        lines.append(text + rng.choice([b"\r\n", b"\r\n", b"\n"]))
    body = b"".join(lines)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    wire = (b"\n" + body).replace(b"\n.", b"\n..")[1:] + b".\r\n"
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("MAIL FROM:<a@x>", 250)
    smtp.expect("RCPT TO:<b@x>", 250)
    smtp.expect("DATA", 354)
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 3, 7, 100, 5000, 70000])
        smtp.send(wire[pos:pos + step])
        pos += step
    code, lines_ = smtp.reply()
    equal(code, 250, "queued")
    smtp.expect("QUIT", 221)
    equal(open(messages()[-1]["file"], "rb").read(), body, f"round {round_}")
EOF

check "relay: 20 MB message streamed and stored exactly" <<'EOF'
chunk = b"".join(b"%07d .line of text that is rather ordinary.\r\n" % i for i in range(20000))
body = chunk * 20
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
code, _ = send_message(smtp, body)
equal(code, 250, "queued")
m = messages()[-1]
equal(m["size"], len(body), "size")
equal(os.path.getsize(m["file"]), len(body), "file size")
EOF

check "relay: size_limit -> 552 at MAIL (SIZE=) and after the dot; nothing stored" <<'EOF'
before = len(messages())
with relay_options({"size_limit": 1000}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    check("250-SIZE 1000" in smtp.expect("EHLO c", 250), "SIZE 1000 advertised")
    smtp.expect("MAIL FROM:<a@x> SIZE=1001", 552)
    code, _ = send_message(smtp, b"x" * 1100 + b"\r\n")
    equal(code, 552, "after the dot")
    code, _ = send_message(smtp, b"x" * 900 + b"\r\n")
    equal(code, 250, "small one")
equal(len(messages()), before + 1, "only the small one stored")
EOF

check "relay: line too long -> 500 5.5.2; unknown command -> 500; parameters not advertised -> 555" <<'EOF'
smtp = relay_direct()
smtp.expect(None, 220)
lines = smtp.expect("NOOP " + "x" * 5000, 500)
check(lines[0].startswith("500 5.5.2"), "5.5.2")
smtp.expect("NOOP", 250)
smtp.expect("FROB", 500)
smtp.expect("HELO c", 250)
smtp.expect("MAIL FROM:<a@x> BODY=8BITMIME", 555)
with relay_options({"eightbitmime": False, "smtputf8": False, "pipelining": False}):
    ehlo = smtp.expect("EHLO c", 250)
    for ext in ("8BITMIME", "SMTPUTF8", "PIPELINING"):
        check(not any(line[4:] == ext for line in ehlo), f"{ext} not offered")
    smtp.expect("MAIL FROM:<a@x> BODY=8BITMIME", 555)
    smtp.expect("MAIL FROM:<\u00e4@x>", 553)
smtp.expect("EHLO c", 250)
smtp.expect("MAIL FROM:<\u00e4@x> SMTPUTF8", 250)
EOF

check "relay: option ehlo=false -> EHLO 502, HELO works; starttls=false -> STARTTLS 502" <<'EOF'
with relay_options({"ehlo": False, "starttls": False}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    lines = smtp.expect("EHLO c", 502)
    check(lines[0].startswith("502 5.5.1"), "502 5.5.1")
    smtp.expect("HELO c", 250)
    smtp.expect("STARTTLS", 502)
EOF

# --- fault switches: token and destination -------------------------------------------

check "token faults: refuse (then the same port again), reset, http500, http401, garbage" <<'EOF'
def attempt():
    return token_request(CONN["clientid"], CONN["clientsecret"])
with fault({"token": "refuse"}):
    try:
        socket.create_connection(("127.0.0.1", PORTS["token"]), timeout=2)
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("FAILED: connection accepted")
equal(attempt()[0], 200, "listening again on the same port")
with fault({"token": "reset"}):
    try:
        attempt()
    except (OSError, http.client.HTTPException):
        pass
    else:
        raise SystemExit("FAILED: an answer despite reset")
for kind, status in (("http500", 500), ("http401", 401)):
    with fault({"token": kind}):
        equal(attempt()[0], status, kind)
with fault({"token": "garbage"}):
    status, data = attempt()
    equal(status, 200, "garbage status")
    try:
        json.loads(data)
    except ValueError:
        pass
    else:
        raise SystemExit("FAILED: garbage is JSON")
equal(attempt()[0], 200, "healthy again")
EOF

check "token faults: timeout (no answer) and slow (1 byte per second)" <<'EOF'
for kind in ("timeout", "slow"):
    with fault({"token": kind}):
        s = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", PORTS["token"]), timeout=5),
                                      server_hostname="127.0.0.1")
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CONN["clientid"],
                                       "client_secret": CONN["clientsecret"]})
        s.sendall(("POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   f"Content-Length: {len(form)}\r\n\r\n{form}").encode())
        got = read_for(s, 1.5)
        if kind == "timeout":
            equal(got, b"", "timeout: nothing")
        else:
            check(1 <= len(got) <= 3 and b"HTTP/1.1 200".startswith(got), f"slow: a byte or two, got {got!r}")
        s.close()
EOF

check "destination faults: http403, http500, garbage, reset" <<'EOF'
jwt = token("destination")
for kind, status in (("http403", 403), ("http500", 500), ("http401", 401)):
    with fault({"destination": kind}):
        status_, data = find("MAIL_ONPREM", jwt)
        equal(status_, status, kind)
        check("ErrorMessage" in json.loads(data), "ErrorMessage")
with fault({"destination": "garbage"}):
    status, data = find("MAIL_ONPREM", jwt)
    equal(status, 200, "garbage status")
    check(not data.startswith(b"{"), "not JSON")
with fault({"destination": "reset"}):
    try:
        find("MAIL_ONPREM", jwt)
    except (OSError, http.client.HTTPException):
        pass
    else:
        raise SystemExit("FAILED: an answer despite reset")
equal(find("MAIL_ONPREM", jwt)[0], 200, "healthy again")
EOF

# --- fault switches: proxy -----------------------------------------------------------

check "proxy faults: refuse, reset, timeout" <<'EOF'
with fault({"proxy": "refuse"}):
    try:
        proxy_socket()
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("FAILED: connection accepted")
with fault({"proxy": "reset"}):
    try:                        # the RST may even beat connect() back to the caller
        s = proxy_socket()
        s.sendall(b"\x05\x01\x80")
        data = s.recv(10)
    except ConnectionResetError:
        data = b""
    equal(data, b"", "nothing but a reset")
with fault({"proxy": "timeout"}):
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    expect_silence(s, 1, "timeout")
s, rep = tunnel()
equal(rep, 0, "healthy again")
EOF

check "proxy faults: method_ff, wrong_version, garbage, auth_fail, truncated, proxy_rep" <<'EOF'
for kind, answer in (("method_ff", b"\x05\xff"), ("wrong_version", b"\x04\x80")):
    with fault({"proxy": kind}):
        s = proxy_socket()
        s.sendall(b"\x05\x01\x80")
        equal(recv_exact(s, 2), answer, kind)
with fault({"proxy": "garbage"}):
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    check(recv_exact(s, 2)[0] != 5, "garbage is not SOCKS5")
with fault({"proxy": "auth_fail"}):
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    equal(recv_exact(s, 2), b"\x05\x80", "method")
    s.sendall(auth_request(token().encode(), "LOC1"))
    equal(recv_exact(s, 2), b"\x01\x01", "auth_fail")
with fault({"proxy": "truncated"}):
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    recv_exact(s, 2)
    s.sendall(auth_request(token().encode(), "LOC1"))
    equal(recv_exact(s, 2), b"\x01\x00", "auth")
    s.sendall(connect_request("mail.corp.internal", 25))
    got = b""
    while True:
        data = s.recv(100)
        if not data:
            break
        got += data
    equal(got, bytes.fromhex("050000017f"), "half a reply, then EOF")
for rep in (1, 3, 5):
    with fault({"proxy_rep": rep}):
        s, got = tunnel()
        equal(got, rep, "proxy_rep")
        expect_eof(s, "closed after REP")
EOF

# --- fault switches: relay -----------------------------------------------------------

check "relay faults: custom replies (multi-line), rcpt_reply, eod 451 not stored" <<'EOF'
before = len(messages())
with fault({"relay": {"mail": "451 4.3.0 Try again later\nreally later"}}):
    smtp = relay_via_proxy()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    lines = smtp.expect("MAIL FROM:<a@x>", 451)
    equal(lines, ["451-4.3.0 Try again later", "451 really later"], "multi-line reply")
    smtp.expect("RCPT TO:<b@x>", 503)
with fault({"rcpt_reply": {"Unknown@corp.example": "550 5.1.1 <unknown@corp.example>: Recipient address rejected: User unknown"},
            "relay": {"eod": "451 4.3.0 Error: queue file write error"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("MAIL FROM:<a@x>", 250)
    lines = smtp.expect("RCPT TO:<unknown@corp.example>", 550)
    check("User unknown" in lines[0], "rcpt_reply text")
    smtp.expect("RCPT TO:<known@corp.example>", 250)
    smtp.expect("DATA", 354)
    smtp.send(b"body\r\n.\r\n")
    smtp.expect(None, 451)
    smtp.expect("QUIT", 221)
equal(len(messages()), before, "nothing stored")
EOF

check "relay faults: greeting 554 (then 503 until QUIT), greeting 421 closes, ehlo 250 without extensions" <<'EOF'
with fault({"relay": {"greeting": "554 5.3.2 No service"}}):
    smtp = relay_direct()
    smtp.expect(None, 554)
    smtp.expect("EHLO c", 503)
    smtp.expect("QUIT", 221)
with fault({"relay": {"greeting": "421 4.3.2 Service shutting down"}}):
    smtp = relay_direct()
    smtp.expect(None, 421)
    expect_eof(smtp.sock, "closed after 421")
with fault({"relay": {"ehlo": "250 mail.corp.internal"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    equal(smtp.expect("EHLO c", 250), ["250 mail.corp.internal"], "bare EHLO")
    smtp.expect("MAIL FROM:<a@x>", 250)
EOF

check "relay faults: close, reset, garbage, hang, drip" <<'EOF'
with fault({"relay": {"rcpt": "close"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("MAIL FROM:<a@x>", 250)
    smtp.send("RCPT TO:<b@x>\r\n")
    expect_eof(smtp.sock, "close")
with fault({"relay": {"data": "reset"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("MAIL FROM:<a@x>", 250)
    smtp.expect("RCPT TO:<b@x>", 250)
    smtp.send("DATA\r\n")
    try:
        data = smtp.sock.recv(100)
        raise SystemExit(f"FAILED: expected a reset, got {data!r}")
    except ConnectionResetError:
        pass
with fault({"relay": {"helo": "garbage"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.send("HELO c\r\n")
    equal(smtp.line(), "hello there", "garbage")
with fault({"relay": {"starttls": "hang"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.send("STARTTLS\r\n")
    expect_silence(smtp.sock, 1, "hang")
with fault({"relay": {"quit": "drip"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.send("QUIT\r\n")
    got = read_for(smtp.sock, 1.5)
    check(1 <= len(got) <= 3 and b"221 ".startswith(got), f"drip: a byte or two, got {got!r}")
EOF

check "relay faults: eod close/hang not stored; eod 250 custom stored" <<'EOF'
before = len(messages())
for action in ("close", "garbage"):
    with fault({"relay": {"eod": action}}):
        smtp = relay_direct()
        smtp.expect(None, 220)
        smtp.expect("EHLO c", 250)
        smtp.expect("MAIL FROM:<a@x>", 250)
        smtp.expect("RCPT TO:<b@x>", 250)
        smtp.expect("DATA", 354)
        smtp.send(b"x\r\n.\r\n")
        smtp.sock.settimeout(2)
        try:
            smtp.sock.recv(100)
        except OSError:
            pass
equal(len(messages()), before, "not stored")
with fault({"relay": {"eod": "250 2.0.0 Ok: queued as CUSTOM"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    code, lines = send_message(smtp, b"y\r\n")
    equal(lines, ["250 2.0.0 Ok: queued as CUSTOM"], "custom 250")
equal(len(messages()), before + 1, "stored")
EOF

check "faults: unknown names are refused with 400, GET /faults shows them" <<'EOF'
for bad in ({"token": "explode"}, {"relay": {"nosuchstage": "close"}}, {"relay": {"mail": "maybe"}},
            {"proxy_rep": "5"}, {"nosuch": 1}):
    status, _ = request("control", "POST", "/faults", json.dumps(bad))
    equal(status, 400, f"{bad}")
with fault({"proxy": "reset", "relay": {"mail": "close"}}):
    control("POST", "/faults", {"relay": {"rcpt": "hang"}})
    equal(control("GET", "/faults"), {"proxy": "reset", "relay": {"mail": "close", "rcpt": "hang"}}, "merged")
equal(control("GET", "/faults"), {}, "cleared")
status, _ = request("control", "POST", "/relay", json.dumps({"cert": "other"}))
equal(status, 400, "bad relay option")
EOF

# --- counters, load, logs, reset, shutdown -------------------------------------------

check "counters count tokens, finds, proxy and relay events" <<'EOF'
control("POST", "/reset")
token("connectivity"); token("destination")
token_request(CONN["clientid"], "wrong")
find("MAIL_ONPREM", None)
s = proxy_socket(); s.sendall(b"\x05\x01\x80"); recv_exact(s, 2)
s.sendall(auth_request(b"bad", "LOC1")); recv_exact(s, 2)
smtp = relay_via_proxy()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
send_message(smtp, b"z\r\n")
smtp.expect("QUIT", 221)
c = counters()
equal(c, {"token_requests": {"total": 4, "connectivity": 2, "destination": 1}, "find_requests": 1,
          "proxy_connections": 2, "proxy_auth_ok": 1, "proxy_auth_failed": 1, "proxy_connects_ok": 1,
          "relay_connections": 1, "relay_messages": 1}, "counters")
EOF

check "load: 200 concurrent tunnels, then the thread count goes back down" <<'EOF'
import threading
pid = os.environ["EMU_PID"]
def threads():
    return len(os.listdir(f"/proc/{pid}/task"))
def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))
base_threads, base_fds = threads(), fds()
jwt = token()
errors = []
opened = []
lock = threading.Lock()
def one():
    try:
        smtp = relay_via_proxy(jwt=jwt)
        smtp.expect(None, 220)
        with lock:
            opened.append(smtp)
    except BaseException as e:
        errors.append(repr(e))
workers = [threading.Thread(target=one) for _ in range(200)]
for w in workers: w.start()
for w in workers: w.join()
equal(errors, [], "errors")
check(threads() >= base_threads + 200, f"a thread per connection ({threads()})")
for smtp in opened:
    smtp.send("QUIT\r\n")
for smtp in opened:
    smtp.reply()
    smtp.sock.close()
deadline = time.time() + 5
while (threads() > base_threads or fds() > base_fds) and time.time() < deadline:
    time.sleep(0.05)
equal((threads(), fds()) <= (base_threads, base_fds), True,
      f"threads {threads()} (was {base_threads}), fds {fds()} (was {base_fds})")
EOF

check "no secret appears in the emulator log" <<'EOF'
log = open(os.environ["EMU_LOG"]).read()
secrets_ = open(os.path.join(DIR, "secrets.txt")).read().split()
check(len(secrets_) > 10, "tokens were recorded")
leaked = [s[:12] + "..." for s in secrets_ if s in log]
equal(leaked, [], "secrets in the log")
EOF

check "/reset clears faults, counters, messages (files too), options and destinations" <<'EOF'
control("PUT", "/destinations/MAIL_TMP", {"Name": "MAIL_TMP"})
control("POST", "/relay", {"size_limit": 5})
control("POST", "/faults", {"token": "http500"})
password = relay_password()
check(len(messages()) > 0, "messages exist")
control("POST", "/reset")
equal(control("GET", "/faults"), {}, "faults")
equal(messages(), [], "messages")
equal([f for f in os.listdir(os.path.join(DIR, "messages")) if not f.startswith(".")], [], "message files")
equal(sorted(control("GET", "/destinations")), ["MAIL_INTERNET", "MAIL_NOLOC", "MAIL_ONPREM"], "destinations")
equal(control("GET", "/relay")["size_limit"], 0, "options")
equal(relay_password(), password, "password kept")
c = counters()
equal(c["token_requests"]["total"] + c["relay_messages"] + c["find_requests"], 0, "counters")
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
code, lines = send_message(smtp, b"after reset\r\n")
equal(lines[0], "250 2.0.0 Ok: queued as 1", "numbering restarts")
EOF

check "SIGTERM with a hanging connection open: exit status 0 within 3 s" <<'EOF'
import signal
pid = int(os.environ["EMU_PID"])
control("POST", "/faults", {"relay": {"ehlo": "hang"}})
smtp = relay_direct()
smtp.expect(None, 220)
smtp.send("EHLO c\r\n")
time.sleep(0.2)
os.kill(pid, signal.SIGTERM)
def running():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"     # a zombie has exited
    except FileNotFoundError:
        return False
deadline = time.time() + 3
while running() and time.time() < deadline:
    time.sleep(0.05)
check(not running(), "the emulator still runs 3 s after SIGTERM")
EOF

# The emulator is a child of this shell: its exit status is the one to check.
n=$((n + 1))
if [ -n "$emu_pid" ]; then
    wait "$emu_pid"
    status=$?
    emu_pid=
    if [ "$status" -eq 0 ] && [ ! -f "$EMU_DIR/emulator.pid" ]; then
        echo "ok $n - the emulator exited with status 0 and removed its pid file"
    else
        echo "not ok $n - the emulator exited with status $status"
        failed=$((failed + 1))
    fi
fi

echo "1..$n"
if [ "$failed" -ne 0 ]; then
    echo "# $failed of $n checks failed; emulator log:"
    tail -n 60 "$EMU_LOG" | sed 's/^/# /'
    exit 1
fi
exit 0
