#!/bin/sh
# test-emulator.sh - self-test of the BTP emulator (TAP). Exit 77 = skipped.
#
# Starts btp-emulator.py in a temporary directory and checks every service, the exact
# SOCKS5 0x80 bytes, TLS, byte-exact message storage, each fault switch, the counters,
# /reset, load (threads come back) and a prompt SIGTERM; tenants, destination levels,
# authTokens, X.509 bindings and token_mtls, AUTH XOAUTH2, the relay's TLS/ESMTP switches
# and GET /connections. Each check is a small python3 snippet run after the helpers below
# (emutest.py). The proxy's trusted modes (proxy_auth: no JWT, 0x80 or 0x00, or 0xFF).
#
# EMU_PROXY_PROGRAM=PATH runs the emulator with --proxy-program PATH (btp-fastproxy) and
# EMU_CHECKS=REGEX runs only the checks whose description matches (tests/emulator/
# test-fastproxy.sh: the proxy checks against the C proxy).

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

"$PY" "$here/btp-emulator.py" --dir "$EMU_DIR" --log "$EMU_LOG" --quiet \
    ${EMU_PROXY_PROGRAM:+--proxy-program "$EMU_PROXY_PROGRAM"} &
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


SUB_ZID = "a8f5dcc2-39fa-4993-86c3-99bf55044566"
PROVIDER_ZID = DEST["tenantid"]
CERTS = os.path.join(DIR, "certs")


class Resolved(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 whatever the host name (like curl's CURLOPT_RESOLVE): the name
    goes into SNI, certificate verification and the Host header."""
    def __init__(self, host, port, cert=None, **kwargs):
        context = tls_context()
        if cert:
            context.load_cert_chain(*cert)
        super().__init__(host, port, context=context, **kwargs)
    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def https(service, method, path, body=None, headers=None, host="127.0.0.1", cert=None, timeout=5):
    c = Resolved(host, PORTS[service], cert=cert, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def token_form(client_id, secret=None):
    form = {"grant_type": "client_credentials", "client_id": client_id}
    if secret is not None:
        form["client_secret"] = secret
    return urllib.parse.urlencode(form)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def tenant_token(which="connectivity", zid=None, host="127.0.0.1"):
    """A token for the tenant of header X-zid (zid) or of the Host (host)."""
    cred = CONN if which == "connectivity" else DEST
    headers = dict(FORM, **({"X-zid": zid} if zid else {}))
    status, data = https("token", "POST", "/oauth/token", token_form(cred["clientid"], cred["clientsecret"]),
                         headers, host=host)
    equal(status, 200, f"token for zid={zid} host={host}: {data!r}")
    return json.loads(data)["access_token"]


def x509_files():
    """The X.509 bindings' certificate and key, literal backslash-n turned into newlines,
    written to files for ssl (cert, key)."""
    with open(os.path.join(DIR, "vcap-x509.json")) as f:
        creds = json.load(f)["destination"][0]["credentials"]
    out = []
    for key in ("certificate", "key"):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"emutest-{os.getpid()}-{key}.pem")
        with open(path, "w") as f:
            f.write(creds[key].replace("\\n", "\n"))
        out.append(path)
    return tuple(out)


def mtls_token_request(client_id, cert, headers=None, secret=None):
    return https("token_mtls", "POST", "/oauth/token", token_form(client_id, secret),
                 dict(FORM, **(headers or {})), cert=cert)


def api(jwt, path):
    """GET on the Destination Service under /destination-configuration/v1/."""
    return request("destination", "GET", "/destination-configuration/v1/" + path,
                   headers={"Authorization": "Bearer " + jwt})


def smtp_session(port="relay", tls=True, cert=None, hostname="mail.corp.internal"):
    """Greeting, EHLO and (tls) STARTTLS + EHLO on a direct relay connection."""
    smtp = relay_direct(port)
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    if tls and port == "relay":
        smtp.expect("STARTTLS", 220)
        context = tls_context()
        if cert:
            context.load_cert_chain(*cert)
        smtp.sock = context.wrap_socket(smtp.sock, server_hostname=hostname)
        smtp.expect("EHLO c", 250)
    return smtp


def xoauth2(user, jwt):
    return base64.b64encode(f"user={user}\x01auth=Bearer {jwt}\x01\x01".encode()).decode()


def oauth_token():
    status, data = find("MAIL_OAUTH", token("destination"))
    equal(status, 200, "find MAIL_OAUTH")
    return json.loads(data)["authTokens"][0]["value"]
EOF

n=0
failed=0
# check DESCRIPTION <<'EOF' python... EOF : one TAP line; the snippet's output on failure.
check() {
    if [ -n "${EMU_CHECKS:-}" ] && ! printf '%s\n' "$1" | grep -Eq -- "$EMU_CHECKS"; then
        cat > /dev/null
        return
    fi
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
equal(sorted(PORTS), sorted(["token", "destination", "proxy", "relay", "relay_smtps", "control",
                             "token_mtls", "imap", "imaps", "pop3", "pop3s"]), "ports")
equal(len(set(PORTS.values())), 11, "eleven different ports")
for name in ("vcap.json", "vcap-x509.json", "vcap-subdomain.json", "secrets.txt", "certs/ca.key",
             "certs/server.key", "certs/relay.key", "certs/wrongname.key", "certs/client.key",
             "certs/client2.key", "certs/selfsigned.key", "certs/expired.key"):
    equal(os.stat(os.path.join(DIR, name)).st_mode & 0o777, 0o600, name + " mode")
for name in ("ca.pem", "server.pem", "relay.pem", "wrongname.pem", "client.pem", "client2.pem",
             "selfsigned.pem", "expired.pem"):
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

check "control: a destination PUT with certificates[]: sent with find, not in the flat configuration" <<'EOF'
props = {"Name": "MAIL_C", "Type": "MAIL", "ProxyType": "Internet", "mail.smtp.host": "x",
         "mail.smtp.port": "25"}
certs = [{"Name": "relay-ca.pem", "Type": "CERTIFICATE",
          "Content": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()}]
equal(control("PUT", "/destinations/MAIL_C", dict(props, certificates=certs)),
      dict(props, certificates=certs), "put answers properties and certificates")
equal(control("GET", "/destinations/MAIL_C"), dict(props, certificates=certs), "get")
jwt = token("destination")
body = json.loads(find("MAIL_C", jwt)[1])
equal(body["destinationConfiguration"], props, "find: the properties alone")
equal(body["certificates"], certs, "find: certificates[] beside them")
equal(json.loads(api(jwt, "subaccountDestinations/MAIL_C")[1]), props, "flat: no certificates")
check("certificates" not in json.loads(find("MAIL_ONPREM", jwt)[1]), "others have none")
control("PUT", "/destinations/MAIL_C", props)
check("certificates" not in json.loads(find("MAIL_C", jwt)[1]), "PUT without them removes them")
status, _ = request("control", "PUT", "/destinations/MAIL_C",
                    json.dumps(dict(props, certificates="x")))
equal(status, 400, "certificates not an array of objects: 400")
control("PUT", "/destinations/MAIL_C", dict(props, certificates=certs))
control("POST", "/reset")
equal(find("MAIL_C", jwt)[0], 404, "reset: gone")
control("PUT", "/destinations/MAIL_C", props)
check("certificates" not in json.loads(find("MAIL_C", jwt)[1]), "reset: certificates gone too")
control("DELETE", "/destinations/MAIL_C")
EOF

# --- tenants, destination levels, OAuth2 destinations, X.509 bindings ----------------

check "tenants: X-zid and Host subscriber1.localhost give subscriber tokens; unknown zone 401; /tokens, /tenants" <<'EOF'
before = counters()["token_requests"]["subscriber"]
equal(jwt_claims(tenant_token("destination", zid=SUB_ZID))["zid"], SUB_ZID, "X-zid")
port = PORTS["token"]
for host, zid in ((f"subscriber1.localhost", SUB_ZID), ("provider.localhost", PROVIDER_ZID),
                  ("localhost", PROVIDER_ZID), ("127.0.0.1", PROVIDER_ZID)):
    equal(jwt_claims(tenant_token("connectivity", host=host))["zid"], zid, f"Host {host}")
    last = control("GET", "/tokens")[-1]
    equal((last["host"], last["zid"], last["status"], last["listener"], last["auth"]),
          (f"{host}:{port}", zid, 200, "token", "form"), "token record")
equal(counters()["token_requests"]["subscriber"], before + 2, "subscriber counter")
# A zone that does not exist: another X.localhost (the certificate does not name it: send
# the Host header by hand).
status, data = request("token", "POST", "/oauth/token", token_form(CONN["clientid"], CONN["clientsecret"]),
                       dict(FORM, Host=f"nosuch.localhost:{port}"))
equal(status, 401, "unknown identity zone")
equal(control("GET", "/tokens")[-1]["status"], 401, "recorded")
tenants = {t["subdomain"]: t for t in control("GET", "/tenants")}
equal(tenants["subscriber1"], {"subdomain": "subscriber1", "tenant_id": SUB_ZID,
      "subaccount_id": "88728f53-afa6-4155-b613-7db3a4345600", "locations": ["SUBLOC"]}, "subscriber")
equal(tenants["provider"]["locations"], ["LOC1", ""], "provider locations")
with open(os.path.join(DIR, "vcap-subdomain.json")) as f:
    sub = json.load(f)
equal(sub["destination"][0]["credentials"]["url"], f"https://provider.localhost:{port}", "subdomain url")
equal(sub["connectivity"][0]["credentials"]["token_service_url"], f"https://provider.localhost:{port}", "conn url")
equal(sub["destination"][0]["credentials"]["clientsecret"], DEST["clientsecret"], "same secret")
EOF

check "tenants: curl reaches https://subscriber1.localhost:PORT (libcurl resolves *.localhost itself)" <<'EOF'
import shutil, subprocess
if not shutil.which("curl"):
    print("# curl not found: nothing to check")
    raise SystemExit(0)
url = f"https://subscriber1.localhost:{PORTS['token']}/oauth/token"
args = ["curl", "-sS", "--max-time", "5", "--cacert", CA, url, "-d", "grant_type=client_credentials",
        "--data-urlencode", f"client_id={CONN['clientid']}", "--data-urlencode", f"client_secret={CONN['clientsecret']}"]
out = subprocess.run(args, capture_output=True)
if out.returncode == 6:         # an older curl that asks the resolver: map the name like CURLOPT_RESOLVE
    out = subprocess.run(args + ["--resolve", f"subscriber1.localhost:{PORTS['token']}:127.0.0.1"],
                         capture_output=True)
equal(out.returncode, 0, f"curl: {out.stderr!r}")
equal(jwt_claims(json.loads(out.stdout)["access_token"])["zid"], SUB_ZID, "zid")
EOF

check "destinations per tenant: subscriber sees only its own (MAIL_SUB), PUT ?tenant=, /finds tenant" <<'EOF'
sub = tenant_token("destination", zid=SUB_ZID)
prov = token("destination")
status, data = find("MAIL_SUB", sub)
equal(status, 200, "subscriber finds MAIL_SUB")
body = json.loads(data)
equal(body["owner"], {"SubaccountId": "88728f53-afa6-4155-b613-7db3a4345600", "InstanceId": None}, "owner")
config = body["destinationConfiguration"]
equal((config["CloudConnectorLocationId"], config["mail.smtp.host"], config["mail.password"]),
      ("SUBLOC", "mail.corp.internal", relay_password()), "MAIL_SUB")
last = control("GET", "/finds")[-1]
equal((last["name"], last["zid"], last["tenant"], last["level"], last["api"], last["status"]),
      ("MAIL_SUB", SUB_ZID, "subscriber1", "subaccount", "destinations", 200), "find record")
equal(find("MAIL_ONPREM", sub)[0], 404, "provider destination invisible to the subscriber")
equal(control("GET", "/finds")[-1]["tenant"], "subscriber1", "404 recorded with tenant")
equal(find("MAIL_SUB", prov)[0], 404, "subscriber destination invisible to the provider")
props = {"Name": "MAIL_T", "Type": "MAIL", "mail.smtp.host": "sub.example"}
equal(control("PUT", "/destinations/MAIL_T?tenant=subscriber1", props), props, "put")
equal(json.loads(find("MAIL_T", sub)[1])["destinationConfiguration"], props, "found by the subscriber")
equal(find("MAIL_T", prov)[0], 404, "not by the provider")
equal(control("GET", f"/destinations/MAIL_T?tenant={SUB_ZID}"), props, "tenant id works as well")
control("DELETE", "/destinations/MAIL_T?tenant=subscriber1")
equal(find("MAIL_T", sub)[0], 404, "deleted")
for bad in ("tenant=nosuch", "level=global"):
    status, _ = request("control", "PUT", "/destinations/MAIL_T?" + bad, json.dumps(props))
    equal(status, 400, bad)
EOF

check "destination levels: instance before subaccount, owner.InstanceId; subaccountDestinations, instanceDestinations" <<'EOF'
jwt = token("destination")
sub_level = {"Name": "MAIL_LVL", "Type": "MAIL", "mail.smtp.from": "subaccount@corp.example"}
inst_level = {"Name": "MAIL_LVL", "Type": "MAIL", "mail.smtp.from": "instance@corp.example"}
control("PUT", "/destinations/MAIL_LVL", sub_level)
control("PUT", "/destinations/MAIL_LVL?level=instance", inst_level)
body = json.loads(find("MAIL_LVL", jwt)[1])
equal(body["destinationConfiguration"], inst_level, "instance level first")
equal(body["owner"], {"SubaccountId": "9acf4877-5a3d-43d2-b67d-7516efe15b11",
                      "InstanceId": "41b6d9b9-7ec5-41af-a39f-b03bec8a98d0"}, "instance owner")
equal(control("GET", "/finds")[-1]["level"], "instance", "recorded level")
status, data = api(jwt, "instanceDestinations")
equal((status, json.loads(data)), (200, [inst_level]), "instanceDestinations")
status, data = api(jwt, "instanceDestinations/MAIL_LVL")
equal((status, json.loads(data)), (200, inst_level), "instanceDestinations/NAME")
status, data = api(jwt, "subaccountDestinations/MAIL_LVL")
equal((status, json.loads(data)), (200, sub_level), "subaccountDestinations/NAME")
status, data = api(jwt, "subaccountDestinations")
names = sorted(d["Name"] for d in json.loads(data))
equal(names, ["MAIL_INTERNET", "MAIL_LVL", "MAIL_NOLOC", "MAIL_OAUTH", "MAIL_ONPREM", "MAIL_SMTPS"], "list")
status, data = api(jwt, "instanceDestinations/MAIL_ONPREM")
equal((status, json.loads(data)), (404, {"ErrorMessage": "Configuration with the specified name was not found"}), "404")
status, data = api(tenant_token("destination", zid=SUB_ZID), "subaccountDestinations")
equal([d["Name"] for d in json.loads(data)], ["MAIL_SUB"], "subscriber list")
equal(api(token("connectivity"), "subaccountDestinations")[0], 403, "connectivity token")
equal(request("destination", "GET", "/destination-configuration/v1/instanceDestinations")[0], 401, "no token")
every = control("GET", "/destinations?all=true")
equal(every["provider"]["instance"], {"MAIL_LVL": inst_level}, "all: provider instance")
equal(sorted(every["subscriber1"]["subaccount"]), ["MAIL_SUB"], "all: subscriber")
control("DELETE", "/destinations/MAIL_LVL?level=instance")
body = json.loads(find("MAIL_LVL", jwt)[1])
equal((body["destinationConfiguration"], body["owner"]["InstanceId"]), (sub_level, None), "subaccount again")
control("DELETE", "/destinations/MAIL_LVL")
EOF

check "MAIL_OAUTH: authTokens unless \$skipTokenRetrieval=true; MAIL_SMTPS; fault authtokens error/expired" <<'EOF'
jwt = token("destination")
before = counters()["authtokens_issued"]
status, data = find("MAIL_OAUTH", jwt)
equal(status, 200, "find")
body = json.loads(data)
config = body["destinationConfiguration"]
for key, value in {"Type": "MAIL", "ProxyType": "OnPremise", "Authentication": "OAuth2ClientCredentials",
                   "mail.user": "oauthuser", "mail.smtp.host": "mail.corp.internal", "mail.smtp.port": "25",
                   "CloudConnectorLocationId": "LOC1", "clientId": "mail-oauth-client",
                   "tokenServiceURL": f"https://127.0.0.1:{PORTS['token']}/oauth/token"}.items():
    equal(config[key], value, key)
secrets_ = open(os.path.join(DIR, "secrets.txt")).read().split()
check(config["clientSecret"] in secrets_, "clientSecret in secrets.txt")
[item] = body["authTokens"]
equal(item["type"], "Bearer", "type")
equal(item["http_header"], {"key": "Authorization", "value": "Bearer " + item["value"]}, "http_header")
equal(item["expires_in"], "3600", "expires_in")
claims = jwt_claims(item["value"])
equal((claims["user_name"], claims["exp"] - claims["iat"], claims["zid"]), ("oauthuser", 3600, PROVIDER_ZID), "claims")
check(item["value"] in open(os.path.join(DIR, "secrets.txt")).read().split(), "token in secrets.txt")
equal(counters()["authtokens_issued"], before + 1, "counter")
check("authTokens" not in json.loads(find("MAIL_OAUTH", jwt, "?$skipTokenRetrieval=true")[1]), "skip")
check("authTokens" not in json.loads(find("MAIL_OAUTH", jwt, "?%24skipTokenRetrieval=true")[1]), "skip, %24")
check("authTokens" not in json.loads(find("MAIL_ONPREM", jwt)[1]), "none for BasicAuthentication")
with fault({"authtokens": "error"}):
    equal(json.loads(find("MAIL_OAUTH", jwt)[1])["authTokens"],
          [{"type": "", "value": "", "error": "Retrieval of OAuth token failed"}], "error item")
with fault({"authtokens": "expired"}):
    equal(json.loads(find("MAIL_OAUTH", jwt)[1])["authTokens"][0]["expires_in"], "0", "expired")
with relay_options({"authtoken_ttl": 60}):
    equal(json.loads(find("MAIL_OAUTH", jwt)[1])["authTokens"][0]["expires_in"], "60", "authtoken_ttl")
config = json.loads(find("MAIL_SMTPS", jwt, "?$skipTokenRetrieval=true")[1])["destinationConfiguration"]
for key, value in {"mail.transport.protocol": "smtps", "mail.smtps.host": "mail.corp.internal",
                   "mail.smtps.port": "465", "ProxyType": "OnPremise", "CloudConnectorLocationId": "LOC1",
                   "mail.user": "relayuser"}.items():
    equal(config[key], value, key)
check("mail.smtp.host" not in config, "only the smtps host")
EOF

check "X.509: vcap-x509.json with literal backslash-n PEM; token_mtls issues tokens for the registered certificate only" <<'EOF'
raw = open(os.path.join(DIR, "vcap-x509.json")).read()
check("-----BEGIN CERTIFICATE-----\\\\n" in raw, "literal backslash-n in the file")
vcap = json.loads(raw)
dest, conn = vcap["destination"][0]["credentials"], vcap["connectivity"][0]["credentials"]
equal((dest["credential-type"], conn["credential-type"]), ("x509", "X509_GENERATED"), "credential types")
equal(dest["certurl"], f"https://127.0.0.1:{PORTS['token_mtls']}", "certurl")
equal(conn["certurl"], dest["certurl"], "same certurl")
check("clientsecret" not in dest and "clientsecret" not in conn, "no secrets")
check("\n" not in dest["certificate"] and "\\n" in dest["key"], "escaped PEM")
equal(dest["certificate"].replace("\\n", "\n"), open(os.path.join(CERTS, "client.pem")).read(), "certificate")
equal(conn["onpremise_socks5_proxy_port"], str(PORTS["proxy"]), "proxy port")
cert = x509_files()
before = counters()["token_requests"]
status, data = mtls_token_request(dest["clientid"], cert)
equal(status, 200, f"destination token over mTLS: {data!r}")
djwt = json.loads(data)["access_token"]
equal(jwt_claims(djwt)["client_id"], "sb-clone-dest-x509!b3", "client_id")
equal(find("MAIL_ONPREM", djwt)[0], 200, "the X.509 destination token reads destinations")
status, data = mtls_token_request(conn["clientid"], cert, headers={"X-zid": SUB_ZID})
equal(status, 200, "connectivity token for the subscriber")
cjwt = json.loads(data)["access_token"]
equal(jwt_claims(cjwt)["zid"], SUB_ZID, "X-zid over mTLS")
s, rep = tunnel(location="SUBLOC", jwt=cjwt)
equal(rep, 0, "the X.509 connectivity token opens a tunnel")
after = counters()["token_requests"]
equal((after["mtls"] - before["mtls"], after["total"] - before["total"],
       after["destination"] - before["destination"], after["connectivity"] - before["connectivity"]),
      (2, 2, 1, 1), "counters")
equal(control("GET", "/tokens")[-1]["listener"], "token_mtls", "token record")
client2 = (os.path.join(CERTS, "client2.pem"), os.path.join(CERTS, "client2.key"))
equal(mtls_token_request(dest["clientid"], client2)[0], 401, "certificate not registered")
equal(mtls_token_request(DEST["clientid"], cert, secret=DEST["clientsecret"])[0], 401, "secret client over mTLS")
equal(token_request(dest["clientid"], "")[0], 401, "X.509 client on the secret listener")
try:
    status, _ = mtls_token_request(dest["clientid"], None)
except (OSError, ssl.SSLError, http.client.HTTPException):
    status = None
equal(status, None, "no client certificate: no answer")
selfsigned = (os.path.join(CERTS, "selfsigned.pem"), os.path.join(CERTS, "selfsigned.key"))
try:
    status, _ = mtls_token_request(dest["clientid"], selfsigned)
except (OSError, ssl.SSLError, http.client.HTTPException):
    status = None
equal(status, None, "certificate from another CA: no answer")
with fault({"token_mtls": "http500"}):
    equal(mtls_token_request(dest["clientid"], cert)[0], 500, "fault token_mtls")
    equal(token_request(CONN["clientid"], CONN["clientsecret"])[0], 200, "token unaffected")
with fault({"token": "http500"}):
    equal(mtls_token_request(dest["clientid"], cert)[0], 200, "token_mtls unaffected")
with fault({"token_mtls": "refuse"}):
    try:
        socket.create_connection(("127.0.0.1", PORTS["token_mtls"]), timeout=2)
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("FAILED: connection accepted")
equal(mtls_token_request(dest["clientid"], cert)[0], 200, "listening again")
for path in cert:
    os.unlink(path)
EOF

check "proxy tenants: the subscriber's token reaches SUBLOC only, the provider's not SUBLOC; envelope tenant" <<'EOF'
sub = tenant_token("connectivity", zid=SUB_ZID)
for location, jwt, rep in (("LOC1", sub, 3), ("", sub, 3), ("SUBLOC", token(), 3), ("SUBLOC", sub, 0)):
    s, got = tunnel(location=location, jwt=jwt)
    equal(got, rep, f"location {location!r} with the {'subscriber' if jwt is sub else 'provider'} token")
smtp = Smtp(s)
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
send_message(smtp, b"from the subscriber\r\n")
smtp.expect("QUIT", 221)
m = messages()[-1]
equal((m["tenant"], m["location_id"], m["via_proxy"]), (SUB_ZID, "SUBLOC", True), "subscriber envelope")
smtp = relay_via_proxy()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
send_message(smtp, b"from the provider\r\n")
equal((messages()[-1]["tenant"], messages()[-1]["location_id"]), (PROVIDER_ZID, "LOC1"), "provider envelope")
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
send_message(smtp, b"direct\r\n")
equal(messages()[-1]["tenant"], None, "direct: no tenant")
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

check "proxy: auth request of the documented shape, location LOC1 -> 01 00" <<'EOF'
# The builder reproduces the documented 177-byte example exactly...
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

# --- relay: AUTH XOAUTH2, TLS and ESMTP switches, connection records -----------------

check "relay: AUTH XOAUTH2 only when enabled; authTokens token accepted, others 535; error challenge" <<'EOF'
smtp = smtp_session()
smtp.expect("AUTH XOAUTH2 " + xoauth2("oauthuser", oauth_token()), 504)
with relay_options({"auth_mechs": ["PLAIN", "LOGIN", "XOAUTH2"]}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    check("250 AUTH PLAIN LOGIN XOAUTH2" not in smtp.expect("EHLO c", 250), "no AUTH before TLS")
    smtp.starttls()
    check("250 AUTH PLAIN LOGIN XOAUTH2" in smtp.expect("EHLO c", 250), "offered after TLS")
    good = oauth_token()
    with fault({"authtokens": "expired"}):
        expired = oauth_token()
    for user, jwt, what in (("oauthuser", token(), "a connectivity token"),
                            ("oauthuser", good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "forged"),
                            ("someoneelse", good, "another user"), ("oauthuser", expired, "expired")):
        lines = smtp.expect("AUTH XOAUTH2 " + xoauth2(user, jwt), 535)
        check(lines[0].startswith("535 5.7.8"), f"{what}: {lines}")
    smtp.expect("AUTH XOAUTH2 " + base64.b64encode(b"user=oauthuser\x01").decode(), 501)
    smtp.expect("AUTH XOAUTH2 " + xoauth2("oauthuser", good), 235)
    send_message(smtp, b"oauth\r\n")
    m = messages()[-1]
    equal((m["auth_user"], m["auth_mech"], m["tls"]), ("oauthuser", "XOAUTH2", True), "envelope")
    smtp = smtp_session()                       # with a 334 continuation
    equal(smtp.expect("AUTH XOAUTH2", 334), ["334 "], "empty challenge")
    smtp.expect(xoauth2("oauthuser", good), 235)
    with relay_options({"xoauth2_error_challenge": True}):
        smtp = smtp_session()
        lines = smtp.expect("AUTH XOAUTH2 " + xoauth2("oauthuser", token()), 334)
        equal(json.loads(base64.b64decode(lines[0][4:]))["status"], "401", "JSON error challenge")
        smtp.expect("", 535)
        smtp.expect("AUTH XOAUTH2 " + xoauth2("oauthuser", good), 235)
log = open(os.environ["EMU_LOG"]).read()
check(good not in log, "the token is not logged")
EOF

check "relay: auth_echo quotes the AUTH lines in the 535 (PLAIN, LOGIN, XOAUTH2); off by default" <<'EOF'
wrong = plain_auth("relayuser", "wrong-password")
smtp = smtp_session()
lines = smtp.expect("AUTH PLAIN " + wrong, 535)
check(wrong not in lines[0], f"off by default: {lines}")
with relay_options({"auth_echo": True, "auth_mechs": ["PLAIN", "LOGIN", "XOAUTH2"]}):
    smtp = smtp_session()
    lines = smtp.expect("AUTH PLAIN " + wrong, 535)
    check(lines[0].endswith(f"(client sent: {wrong})"), f"PLAIN: {lines}")
    smtp.expect("AUTH LOGIN", 334)
    smtp.expect(base64.b64encode(b"relayuser").decode(), 334)
    pw = base64.b64encode(b"wrong-password").decode()
    lines = smtp.expect(pw, 535)
    check(lines[0].endswith(f"(client sent: cmVsYXl1c2Vy {pw})"), f"LOGIN: {lines}")
    long_arg = xoauth2("oauthuser", token() + "x" * 400)
    lines = smtp.expect("AUTH XOAUTH2 " + long_arg, 535)
    check(lines[0].endswith(f"(client sent: {long_arg[:300]}...)"), f"XOAUTH2, cut at 300: {lines}")
EOF

check "relay: MAIL_SMTPS through the proxy to :465; envelope tls_version, tls_cipher, sni, auth_mech" <<'EOF'
config = json.loads(find("MAIL_SMTPS", token("destination"))[1])["destinationConfiguration"]
smtp = relay_via_proxy(port=int(config["mail.smtps.port"]), location=config["CloudConnectorLocationId"])
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
smtp.expect("AUTH PLAIN " + plain_auth(config["mail.user"], config["mail.password"]), 235)
send_message(smtp, b"smtps\r\n")
m = messages()[-1]
equal((m["port"], m["tls"], m["sni"], m["auth_mech"], m["auth_user"], m["location_id"], m["tenant"]),
      ("relay_smtps", True, "mail.corp.internal", "PLAIN", "relayuser", "LOC1", PROVIDER_ZID), "envelope")
check(m["tls_version"] in ("TLSv1.2", "TLSv1.3") and m["tls_cipher"], f"tls {m['tls_version']} {m['tls_cipher']}")
smtp = relay_direct()                          # no SNI for an IP address; AUTH LOGIN recorded
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
smtp.expect("STARTTLS", 220)
smtp.sock = ssl._create_unverified_context().wrap_socket(smtp.sock)
smtp.expect("EHLO c", 250)
smtp.expect("AUTH LOGIN " + base64.b64encode(b"relayuser").decode(), 334)
smtp.expect(base64.b64encode(relay_password().encode()).decode(), 235)
send_message(smtp, b"no sni\r\n")
m = messages()[-1]
equal((m["sni"], m["auth_mech"], m["client_cert"]), (None, "LOGIN", None), "envelope")
EOF

check "relay: cert=selfsigned and cert=expired fail verification (also on :465); tls_max_version" <<'EOF'
for cert, reason in (("selfsigned", "self-signed"), ("expired", "expired")):
    with relay_options({"cert": cert}):
        for port in ("relay", "relay_smtps"):
            try:
                smtp = smtp_session(port)
            except ssl.SSLCertVerificationError as e:
                check(reason in str(e), f"{cert} on {port}: {e}")
            else:
                raise SystemExit(f"FAILED: {cert} accepted on {port}")
        s = ssl._create_unverified_context().wrap_socket(
            socket.create_connection(("127.0.0.1", PORTS["relay_smtps"]), timeout=5))
        der = s.getpeercert(binary_form=True)
        equal(ssl.DER_cert_to_PEM_cert(der).strip().split("\n")[1:-1],
              open(os.path.join(CERTS, cert + ".pem")).read().strip().split("\n")[1:-1], f"{cert} served")
        s.close()
with relay_options({"tls_max_version": "TLSv1.2"}):
    smtp = smtp_session()
    send_message(smtp, b"tls 1.2\r\n")
    equal(messages()[-1]["tls_version"], "TLSv1.2", "capped")
smtp = smtp_session()
send_message(smtp, b"tls 1.3\r\n")
equal(messages()[-1]["tls_version"], "TLSv1.3", "default")
EOF

check "relay: require_client_cert records the client certificate's subject; none -> handshake fails" <<'EOF'
client = (os.path.join(CERTS, "client.pem"), os.path.join(CERTS, "client.key"))
with relay_options({"require_client_cert": True}):
    smtp = smtp_session(cert=client)
    send_message(smtp, b"with a client certificate\r\n")
    equal(messages()[-1]["client_cert"], "CN=btprelay test client", "client_cert")
    s = tls_context()
    s.load_cert_chain(os.path.join(CERTS, "client2.pem"), os.path.join(CERTS, "client2.key"))
    smtp = Smtp(s.wrap_socket(socket.create_connection(("127.0.0.1", PORTS["relay_smtps"]), timeout=5),
                              server_hostname="mail.corp.internal"))
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    send_message(smtp, b"implicit TLS too\r\n")
    equal(messages()[-1]["client_cert"], "CN=btprelay other client", "client_cert on :465")
    try:
        smtp = smtp_session()
        smtp.expect("NOOP", 250)
    except (OSError, EOFError):
        pass
    else:
        raise SystemExit("FAILED: STARTTLS without a client certificate worked")
smtp = smtp_session()
send_message(smtp, b"no certificate asked\r\n")
equal(messages()[-1]["client_cert"], None, "not requested by default")
EOF

check "relay: enhancedstatuscodes=false; max_line_length -> 500 after the dot; eightbitmime/smtputf8/starttls off" <<'EOF'
with relay_options({"enhancedstatuscodes": False}):
    smtp = relay_direct()
    equal(smtp.expect(None, 220), ["220 mail.corp.internal ESMTP btprelay emulator"], "greeting")
    ehlo = smtp.expect("EHLO c", 250)
    check("250-ENHANCEDSTATUSCODES" not in ehlo and "250 ENHANCEDSTATUSCODES" not in ehlo, "not offered")
    equal(smtp.expect("MAIL FROM:<a@x>", 250), ["250 Ok"], "MAIL")
    equal(smtp.expect("RCPT TO:<>", 501), ["501 Bad recipient address syntax"], "RCPT")
    equal(smtp.expect("FROB", 500), ["500 Error: command not recognized"], "unknown")
    with fault({"rcpt_reply": {"nobody@x": "550 User unknown"}}):
        equal(smtp.expect("RCPT TO:<nobody@x>", 550), ["550 User unknown"], "fault reply as written")
    smtp.expect("RCPT TO:<b@x>", 250)
    smtp.expect("DATA", 354)
    smtp.send(b"x\r\n.\r\n")
    code, lines = smtp.reply()
    check(lines[0].startswith("250 Ok: queued as "), f"{lines}")
    equal(smtp.expect("QUIT", 221), ["221 Bye"], "QUIT")
before = len(messages())
with relay_options({"max_line_length": 998}):
    for body, code in ((b"a" * 998 + b"\r\n", 250), (b"." + b"b" * 997 + b"\n", 250),
                       (b"short\r\n" + b"c" * 999 + b"\r\nshort\r\n", 500), (b"d" * 999 + b"\n", 500)):
        smtp = relay_direct()
        smtp.expect(None, 220)
        smtp.expect("EHLO c", 250)
        smtp.expect("MAIL FROM:<a@x>", 250)
        smtp.expect("RCPT TO:<b@x>", 250)
        smtp.expect("DATA", 354)
        wire = body.replace(b"\n.", b"\n..")
        wire = (b"." + wire if wire.startswith(b".") else wire) + b".\r\n"
        for i in range(0, len(wire), 7):       # split at odd points
            smtp.send(wire[i:i + 7])
        got, lines = smtp.reply()
        longest = max(len(line.rstrip(b"\r")) for line in body.split(b"\n"))
        equal(got, code, f"longest line {longest}")
        if code == 500:
            check(lines[0].startswith("500 5.5.2"), f"{lines}")
equal(len(messages()), before + 2, "the long ones not stored")
with relay_options({"eightbitmime": False, "smtputf8": False, "starttls": False}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    ehlo = smtp.expect("EHLO c", 250)
    for ext in ("8BITMIME", "SMTPUTF8", "STARTTLS"):
        check(not any(line[4:] == ext for line in ehlo), f"{ext} not offered")
    smtp.expect("STARTTLS", 502)
EOF

check "GET /connections: commands in order, same_read proves pipelining, no AUTH payloads, replies" <<'EOF'
password = relay_password()
smtp = smtp_session()
smtp.expect("AUTH PLAIN " + plain_auth("relayuser", password), 235)
smtp.expect("MAIL FROM:<a@x>", 250)            # lock-step
smtp.expect("RCPT TO:<b@x>", 250)
smtp.expect("DATA", 354)
smtp.send(b"one\r\n.\r\n")
smtp.reply()
smtp.send(b"MAIL FROM:<c@x>\r\nRCPT TO:<d@x>\r\nRCPT TO:<e@x>\r\nDATA\r\n")   # pipelined
codes = [smtp.reply()[0] for _ in range(4)]
equal(codes, [250, 250, 250, 354], "pipelined replies")
smtp.send(b"two\r\n.\r\nQUIT\r\n")              # QUIT right behind the dot
equal([smtp.reply()[0] for _ in range(2)], [250, 221], "end of data and QUIT")
time.sleep(0.1)
record = control("GET", "/connections")[-1]
got = [(c["command"], c["same_read"], c["reply"]) for c in record["commands"]]
equal(got, [("EHLO c", False, 250), ("STARTTLS", False, 220), ("EHLO c", False, 250),
            ("AUTH PLAIN", False, 235), ("MAIL FROM:<a@x>", False, 250), ("RCPT TO:<b@x>", False, 250),
            ("DATA", False, 354), ("(message data)", False, 250),
            ("MAIL FROM:<c@x>", False, 250), ("RCPT TO:<d@x>", True, 250), ("RCPT TO:<e@x>", True, 250),
            ("DATA", True, 354), ("(message data)", False, 250), ("QUIT", True, 221)], "commands")
equal([c["tls"] for c in record["commands"][:3]], [False, False, True], "tls per command")
equal(record["commands"][7]["bytes"], 5, "message size")
for key, value in {"port": "relay", "via_proxy": False, "tls": True, "sni": "mail.corp.internal",
                   "auth_user": "relayuser", "auth_mech": "PLAIN", "closed": True, "end": "QUIT"}.items():
    equal(record[key], value, key)
equal(len(record["messages"]), 2, "two messages")
text = json.dumps(control("GET", "/connections"))
check(password not in text and plain_auth("relayuser", password) not in text, "no AUTH payload")
smtp = relay_direct()                          # AUTH with a continuation: one entry per line
smtp.expect(None, 220)
smtp.send(b"EHLO c\r\nSTARTTLS\r\n")
smtp.reply(); smtp.reply()
smtp.sock = tls_context().wrap_socket(smtp.sock, server_hostname="mail.corp.internal")
smtp.expect("EHLO c", 250)
smtp.expect("AUTH LOGIN", 334)
smtp.expect(base64.b64encode(b"relayuser").decode(), 334)
smtp.expect(base64.b64encode(password.encode()).decode(), 235)
record = control("GET", "/connections")[-1]
equal([(c["command"], c["same_read"], c["reply"]) for c in record["commands"]],
      [("EHLO c", False, 250), ("STARTTLS", True, 220), ("EHLO c", False, 250), ("AUTH LOGIN", False, 334),
       ("(sasl)", False, 334), ("(sasl)", False, 235)], "AUTH LOGIN")
equal(record["closed"], False, "still open")
c = counters()
check(c["relay_commands"] >= 20 and c["relay_tls"] >= 2 and c["relay_auth_ok"] >= 2, f"counters {c}")
EOF

check "new switches are validated: 400 for unknown values" <<'EOF'
for bad in ({"authtokens": "maybe"}, {"token_mtls": "explode"}):
    equal(request("control", "POST", "/faults", json.dumps(bad))[0], 400, f"{bad}")
for bad in ({"cert": "bogus"}, {"tls_max_version": "SSLv3"}, {"auth_mechs": ["CRAM-MD5"]},
            {"max_line_length": -1}, {"enhancedstatuscodes": "no"}, {"require_client_cert": 1},
            {"authtoken_ttl": -5}):
    equal(request("control", "POST", "/relay", json.dumps(bad))[0], 400, f"{bad}")
equal(control("GET", "/relay")["auth_mechs"], ["PLAIN", "LOGIN"], "default mechanisms")
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
        s = proxy_socket()
        if os.environ.get("EMU_PROXY_PROGRAM"):     # btp-fastproxy: "refuse" acts as "reset"
            s.sendall(b"\x05\x01\x80")
            equal(s.recv(10), b"", "refuse as a reset")
    except (ConnectionRefusedError, ConnectionResetError):
        pass
    else:
        if not os.environ.get("EMU_PROXY_PROGRAM"):
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

check "proxy_auth trusted_0x80: 05 02 80 00 -> 05 80, JWT length 0 + LOC1 -> 01 00, mail arrives from LOC1; GET /proxy records it" <<'EOF'
with fault({"proxy_auth": "trusted_0x80"}):
    s = proxy_socket()
    s.sendall(b"\x05\x02\x80\x00")
    equal(recv_exact(s, 2), b"\x05\x80", "method 0x80 chosen")
    s.sendall(b"\x01\x00\x00\x00\x00" + b"\x08TE9DMQ==")
    equal(recv_exact(s, 2), b"\x01\x00", "no JWT, accepted")
    s.sendall(connect_request("mail.corp.internal", 25))
    equal(recv_exact(s, 10)[:2], b"\x05\x00", "CONNECT")
    smtp = Smtp(s)
    smtp.expect(None, 220)
    smtp.expect("EHLO client.example", 250)
    equal(send_message(smtp, b"trusted 0x80\r\n")[0], 250, "message accepted")
    smtp.expect("QUIT", 221)
    m = messages()[-1]
    equal((m["via_proxy"], m["location_id"], m["tenant"]), (True, "LOC1", None), "envelope: LOC1")
    # a token is not looked at in trusted mode: still 0x80, recorded by its length only
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    equal(recv_exact(s, 2), b"\x05\x80", "0x80 alone: 0x80")
    s.sendall(auth_request(b"not-a-jwt", "LOC1"))
    equal(recv_exact(s, 2), b"\x01\x00", "any JWT accepted")
    s.close()
log = control("GET", "/proxy")
equal([(h["auth"], h["methods"], h["method"], h["jwt_length"], h["location_id"]) for h in log[-2:]],
      [("trusted_0x80", "8000", "80", 0, "LOC1"), ("trusted_0x80", "80", "80", 9, "LOC1")],
      "handshake records")
equal((log[-2]["target"], log[-2]["rep"]), ("mail.corp.internal:25", 0), "record: target, REP")
check("not-a-jwt" not in json.dumps(log), "no JWT in the records")
EOF

check "proxy_auth trusted_0x00: 05 02 80 00 -> 05 00, CONNECT at once, the Cloud Connector without a location ID; 05 01 80 -> 05 ff" <<'EOF'
with fault({"proxy_auth": "trusted_0x00"}):
    s = proxy_socket()
    s.sendall(b"\x05\x02\x80\x00")
    equal(recv_exact(s, 2), b"\x05\x00", "method 0x00 chosen")
    s.sendall(connect_request("mail.corp.internal", 25))
    equal(recv_exact(s, 10)[:2], b"\x05\x00", "CONNECT without auth")
    smtp = Smtp(s)
    smtp.expect(None, 220)
    smtp.expect("EHLO client.example", 250)
    equal(send_message(smtp, b"trusted 0x00\r\n")[0], 250, "message accepted")
    smtp.expect("QUIT", 221)
    m = messages()[-1]
    equal((m["via_proxy"], m["location_id"]), (True, None), "envelope: no location ID")
    s = proxy_socket()
    s.sendall(b"\x05\x01\x80")
    equal(recv_exact(s, 2), b"\x05\xff", "0x80 alone: refused")
    expect_eof(s, "closed after 05 ff")
h = control("GET", "/proxy")[-2]
equal((h["auth"], h["method"], h["jwt_length"], h["location_id"], h["rep"]),
      ("trusted_0x00", "00", None, None, 0), "record of the 0x00 handshake")
EOF

check "proxy_auth refuse_auth: every greeting -> 05 ff, recorded; cleared: 0x80 with a JWT again" <<'EOF'
with fault({"proxy_auth": "refuse_auth"}):
    for greeting in (b"\x05\x02\x80\x00", b"\x05\x01\x80", b"\x05\x01\x00"):
        s = proxy_socket()
        s.sendall(greeting)
        equal(recv_exact(s, 2), b"\x05\xff", f"refused {greeting.hex()}")
        expect_eof(s, "closed after 05 ff")
equal([h["method"] for h in control("GET", "/proxy")[-3:]], ["ff"] * 3, "records")
s = proxy_socket()
s.sendall(b"\x05\x02\x80\x00")
equal(recv_exact(s, 2), b"\x05\x80", "token mode: 0x80")
s.sendall(b"\x01\x00\x00\x00\x00\x00")
equal(recv_exact(s, 2), b"\x01\x01", "token mode: JWT length 0 refused")
try:
    control("POST", "/faults", {"proxy_auth": "jwt"})
except BaseException:
    pass
else:
    raise SystemExit("FAILED: an unknown proxy_auth was accepted")
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
equal(c, {"token_requests": {"total": 4, "connectivity": 2, "destination": 1, "mtls": 0, "subscriber": 0},
          "find_requests": 1, "authtokens_issued": 0,
          "proxy_connections": 2, "proxy_auth_ok": 1, "proxy_auth_failed": 1, "proxy_connects_ok": 1,
          "relay_connections": 1, "relay_messages": 1, "relay_commands": 5, "relay_tls": 0,
          "relay_auth_ok": 0, "relay_auth_failed": 0, "proxy_replies": {"00": 1}}, "counters")
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
control("PUT", "/destinations/MAIL_TMP?level=instance&tenant=subscriber1", {"Name": "MAIL_TMP"})
control("DELETE", "/destinations/MAIL_SUB?tenant=subscriber1")
control("POST", "/relay", {"size_limit": 5})
equal(len(control("GET", "/connections")), 200, "the last 200 relay connections")
check(len(control("GET", "/tokens")) > 0, "token records")
control("POST", "/faults", {"token": "http500"})
password = relay_password()
check(len(messages()) > 0, "messages exist")
control("POST", "/reset")
equal(control("GET", "/faults"), {}, "faults")
equal(messages(), [], "messages")
equal([f for f in os.listdir(os.path.join(DIR, "messages")) if not f.startswith(".")], [], "message files")
equal(sorted(control("GET", "/destinations")),
      ["MAIL_INTERNET", "MAIL_NOLOC", "MAIL_OAUTH", "MAIL_ONPREM", "MAIL_SMTPS"], "destinations")
equal(sorted(control("GET", "/destinations?tenant=subscriber1")), ["MAIL_SUB"], "subscriber destinations")
equal(control("GET", "/destinations?level=instance"), {}, "no instance destinations")
equal(control("GET", "/destinations?level=instance&tenant=subscriber1"), {}, "none for the subscriber")
equal(control("GET", "/connections"), [], "connections")
equal(control("GET", "/tokens"), [], "token records")
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

# --- chaos and raw bodies (POST /chaos; token_body, destination_body, relay_raw) ------

check "chaos: bad requests refused with 400; GET /chaos; /faults/clear stops it, /reset clears it" <<'EOF'
control("POST", "/reset")
for bad in ({"seed": "1", "rate": 0.1, "kinds": ["proxy=reset"]}, {"seed": 1, "rate": 2, "kinds": ["proxy=reset"]},
            {"seed": 1, "rate": 0.1, "kinds": []}, {"seed": 1, "rate": 0.1, "kinds": ["proxy=explode"]},
            {"seed": 1, "rate": 0.1, "kinds": ["relay.nostage=close"]}, {"seed": 1, "rate": 0.1, "kinds": ["smtp=x"]},
            {"seed": 1, "rate": 0.1, "kinds": ["proxy_rep=x"]}, {"seed": 1, "rate": 0.1, "kinds": ["proxy=reset"], "x": 1}):
    status, _ = request("control", "POST", "/chaos", json.dumps(bad))
    equal(status, 400, f"{bad}")
equal(control("GET", "/chaos")["active"], False, "inactive")
got = control("POST", "/chaos", {"seed": 7, "rate": 1, "kinds": ["token=http500"]})
equal((got["active"], got["seed"], got["rate"], got["drawn"], got["injected"]),
      (True, 7, 1.0, {"token": 0}, {"token=http500": 0}), "started")
status, _ = token_request(CONN["clientid"], CONN["clientsecret"])
equal(status, 500, "token request under chaos token=http500")
got = control("GET", "/chaos")
equal((got["drawn"], got["injected"], got["injected_total"]), ({"token": 1}, {"token=http500": 1}, 1), "counted")
control("POST", "/faults/clear")
got = control("GET", "/chaos")
equal((got["active"], got["injected_total"]), (False, 1), "stopped, counters kept")
token()
control("POST", "/chaos", {"seed": 7, "rate": 1, "kinds": ["destination=http403"]})
control("POST", "/chaos/stop")
equal(find("MAIL_ONPREM", token("destination"))[0], 200, "stopped: healthy")
control("POST", "/reset")
equal(control("GET", "/chaos"), {"active": False, "seed": None, "rate": 0.0, "kinds": [], "drawn": {},
      "injected": {}, "injected_total": 0}, "reset")
EOF

check "chaos: per relay connection, the same seed gives the same faults; rate 0 none, rate 1 all" <<'EOF'
def run(seed, rate, n=40):
    control("POST", "/reset")
    control("POST", "/chaos", {"seed": seed, "rate": rate,
                               "kinds": ["relay.ehlo=451 4.3.0 chaos", "relay.mail=452 4.3.1 chaos"]})
    seen = []
    for i in range(n):
        smtp = relay_direct()
        smtp.expect(None, 220)
        smtp.send("EHLO c\r\n")
        code, _ = smtp.reply()
        if code == 250:
            smtp.send("MAIL FROM:<a@x>\r\n")
            code, _ = smtp.reply()
        seen.append(code)
        smtp.expect("QUIT", 221)
    return seen, control("GET", "/chaos"), control("GET", "/connections")
a, ca, conns = run(11, 0.3)
b, cb, _ = run(11, 0.3)
c, _, _ = run(12, 0.3)
equal(a, b, "same seed, same faults")
check(a != c, f"another seed, other faults: {a} {c}")
faulty = sum(code != 250 for code in a)
equal(ca["injected_total"], faulty, "injected_total counts the faulty connections")
equal(ca["drawn"], {"relay": 40}, "every relay connection drew")
check(0 < faulty < 40, f"rate 0.3: some faults, not all ({faulty})")
equal(sum(1 for r in conns if r["chaos"]), faulty, "GET /connections names each connection's chaos kind")
check(all(r["chaos"] in (None, "relay.ehlo=451 4.3.0 chaos", "relay.mail=452 4.3.1 chaos") for r in conns), "kinds")
equal(set(run(3, 0, 10)[0]), {250}, "rate 0: no fault")
check(250 not in run(3, 1, 10)[0], "rate 1: every connection faulty")
EOF

check "chaos: proxy kinds per connection (method_ff, proxy_rep); relay.eod=lost stores, then closes" <<'EOF'
control("POST", "/reset")
control("POST", "/chaos", {"seed": 1, "rate": 1, "kinds": ["proxy=method_ff"]})
s = proxy_socket(); s.sendall(b"\x05\x01\x80")
equal(recv_exact(s, 2), b"\x05\xff", "method_ff by chaos")
control("POST", "/chaos", {"seed": 1, "rate": 1, "kinds": ["proxy_rep=4"]})
s, rep = tunnel()
equal(rep, 4, "REP 04 by chaos")
control("POST", "/chaos", {"seed": 1, "rate": 1, "kinds": ["relay.eod=lost"]})
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
smtp.expect("MAIL FROM:<a@x>", 250)
smtp.expect("RCPT TO:<b@x>", 250)
smtp.expect("DATA", 354)
smtp.send(b"lost reply\r\n.\r\n")
expect_eof(smtp.sock, "no reply to the final dot")
control("POST", "/chaos/stop")
m = messages()[-1]
equal((m["fault_after_dot"], m["chaos"]), ("relay.eod=lost", "relay.eod=lost"), "stored, with the fault recorded")
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
send_message(smtp, b"healthy\r\n")
equal((messages()[-1]["fault_after_dot"], messages()[-1]["chaos"]), (None, None), "a healthy message records none")
with fault({"relay": {"eod": "lost"}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.expect("EHLO c", 250)
    smtp.expect("MAIL FROM:<a@x>", 250)
    smtp.expect("RCPT TO:<b@x>", 250)
    smtp.expect("DATA", 354)
    smtp.send(b"switch\r\n.\r\n")
    expect_eof(smtp.sock, "switch lost: no reply")
equal((messages()[-1]["fault_after_dot"], messages()[-1]["chaos"]), ("relay.eod=lost", None), "the switch too")
EOF

check "raw bodies: token_body and destination_body (generated, 2 MB), relay_raw; bad specs refused" <<'EOF'
control("POST", "/reset")
for bad in ({"token_body": 5}, {"token_body": {"repeat": "x", "times": -1}}, {"destination_body": {"nope": "x"}},
            {"relay_raw": {"nostage": "x"}}, {"relay_raw": {"ehlo": {"repeat": 1}}}):
    status, _ = request("control", "POST", "/faults", json.dumps(bad))
    equal(status, 400, f"{bad}")
with fault({"token_body": '{"access_token":"short"}'}):
    status, data = token_request(CONN["clientid"], CONN["clientsecret"])
    equal((status, data), (200, b'{"access_token":"short"}'), "token_body as given")
jwt = token("destination")
with fault({"destination_body": {"prefix": "{\"a\":", "repeat": "[", "times": 2 << 20, "suffix": "}"}}):
    status, data = find("MAIL_ONPREM", jwt)
    equal((status, len(data), data[:6]), (200, 5 + (2 << 20) + 1, b'{"a":['), "destination_body generated")
with fault({"relay_raw": {"ehlo": {"prefix": "250-", "repeat": "x", "times": 100000, "suffix": "\r\n250 ok\r\n"}}}):
    smtp = relay_direct()
    smtp.expect(None, 220)
    smtp.send("EHLO c\r\n")
    line = smtp.line()
    equal((len(line), smtp.line()), (100004, "250 ok"), "relay_raw sent as is")
smtp = relay_direct()
smtp.expect(None, 220)
smtp.expect("EHLO c", 250)
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
