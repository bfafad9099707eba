#!/usr/bin/env python3
"""btp-emulator: the SAP BTP services btprelay talks to, on 127.0.0.1, for tests and the demo.

    python3 btp-emulator.py --dir DIR [--log FILE] [--quiet]

Services (each on an ephemeral port, listed in DIR/ports.json once everything listens):

  token        HTTPS  XSUAA-like OAuth client-credentials token service (client secrets)
  token_mtls   HTTPS  the same with mutual TLS for X.509 bindings ("certurl")
  destination  HTTPS  Destination Service: find, subaccount/instance destination lists
  proxy        SOCKS5 Connectivity proxy with authentication method 0x80 (or trusted, no JWT)
  relay        SMTP   the on-premise relay behind the Cloud Connector (STARTTLS)
  relay_smtps  SMTPS  the same relay with implicit TLS
  control      HTTP   JSON control API for tests: counters, messages, fault switches
  imap, imaps  IMAP   the on-premise mailbox (mailstore.py), STARTTLS / implicit TLS
  pop3, pop3s  POP3   the same mailbox over POP3, STLS / implicit TLS

Python 3 standard library only. One thread per connection; one acceptor thread for every
listening socket. README.md beside this file documents the control API and every fault.
"""

import argparse
import base64
import binascii
import collections
import copy
import hashlib
import hmac
import itertools
import json
import os
import queue
import random
import re
import secrets
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailstore  # noqa: E402  (beside this file)

# --------------------------------------------------------------------------------------
# Fixed facts of the emulated landscape
# --------------------------------------------------------------------------------------

HOST = "127.0.0.1"
SUBACCOUNT_ID = "9acf4877-5a3d-43d2-b67d-7516efe15b11"
PROVIDER_TENANT = "4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
PROVIDER_SUBDOMAIN = "provider"
SUBSCRIBER_SUBDOMAIN = "subscriber1"
SUBSCRIBER_TENANT = "a8f5dcc2-39fa-4993-86c3-99bf55044566"
SUBSCRIBER_SUBACCOUNT_ID = "88728f53-afa6-4155-b613-7db3a4345600"
DESTINATION_INSTANCE_ID = "41b6d9b9-7ec5-41af-a39f-b03bec8a98d0"
DESTINATION_CLIENT_ID = "sb-clone-dest!b1"
CONNECTIVITY_CLIENT_ID = "sb-clone-conn!b2"
DESTINATION_X509_CLIENT_ID = "sb-clone-dest-x509!b3"
CONNECTIVITY_X509_CLIENT_ID = "sb-clone-conn-x509!b4"
MAIL_OAUTH_CLIENT_ID = "mail-oauth-client"
MAIL_OAUTH_USER = "oauthuser"
MAIL_TOKEN_SCOPE = "mail.send"
RELAY_NAME = "mail.corp.internal"
RELAY_USER = "relayuser"

SERVICES = ("token", "destination", "proxy", "relay", "relay_smtps", "control", "token_mtls",
            "imap", "imaps", "pop3", "pop3s")

# Cloud Connectors by location ID ("" = the one without an ID), and the virtual hosts
# their access control exposes. "unreachable" is a port nothing listens on (REP 04).
CLOUD_CONNECTORS = ("LOC1", "")
VIRTUAL_HOSTS = {
    ("mail.corp.internal", 25): "relay",
    ("mail.corp.internal", 465): "relay_smtps",
    ("mail.corp.internal", 143): "imap",
    ("mail.corp.internal", 993): "imaps",
    ("mail.corp.internal", 110): "pop3",
    ("mail.corp.internal", 995): "pop3s",
    ("down.corp.internal", 25): "unreachable",
}

# Tenants by subdomain. The connectivity token's zid picks the tenant's Cloud Connectors,
# the destination token's zid the tenant's destinations; any zid other than the
# subscriber's counts as the provider (as before tenants existed).
TENANTS = {
    PROVIDER_SUBDOMAIN: {"zid": PROVIDER_TENANT, "subaccount": SUBACCOUNT_ID,
                         "locations": CLOUD_CONNECTORS},
    SUBSCRIBER_SUBDOMAIN: {"zid": SUBSCRIBER_TENANT, "subaccount": SUBSCRIBER_SUBACCOUNT_ID,
                           "locations": ("SUBLOC",)},
}
LEVELS = ("subaccount", "instance")


def tenant_of_zid(zid):
    """The tenant (subdomain) whose destinations and Cloud Connectors a token sees."""
    return SUBSCRIBER_SUBDOMAIN if zid == SUBSCRIBER_TENANT else PROVIDER_SUBDOMAIN


def tenant_name(value):
    """A tenant given as subdomain or tenant id -> its subdomain; ValueError otherwise."""
    for name, tenant in TENANTS.items():
        if value in (name, tenant["zid"]):
            return name
    raise ValueError(f"unknown tenant {value!r}: one of {sorted(TENANTS)} or their tenant ids")


SMTP_LINE_MAX = 4096          # a command line longer than this gets 500 5.5.2
SMTP_IDLE_TIMEOUT = 300       # seconds, as RFC 5321 suggests for the server
HTTP_IDLE_TIMEOUT = 60
HANDSHAKE_TIMEOUT = 30        # TLS handshakes and the SOCKS5 negotiation
BACKEND_CONNECT_TIMEOUT = 5
JWT_MAX = 65536               # a longer JWT length in the 0x80 auth request is refused
HTTP_BODY_MAX = 1 << 20

# --------------------------------------------------------------------------------------
# Fault switches and relay options: names, defaults, validation
# --------------------------------------------------------------------------------------

HTTP_FAULTS = {"refuse", "reset", "timeout", "http500", "http401", "garbage", "slow"}
FAULT_KINDS = {
    "token": HTTP_FAULTS,
    "token_mtls": HTTP_FAULTS,
    "authtokens": {"error", "expired"},
    "destination": HTTP_FAULTS | {"http403"},
    "proxy": {"refuse", "reset", "timeout", "method_ff", "auth_fail", "wrong_version",
              "garbage", "truncated"},
    # not a fault but the proxy's mode (absent: 0x80 with a JWT); cleared like a fault
    "proxy_auth": {"trusted_0x80", "trusted_0x00", "refuse_auth"},
}
FAULT_KINDS["proxy"].add("slow")   # each reply 1 s late: one deadline per handshake
RELAY_STAGES = ("greeting", "ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data",
                "eod", "rset", "quit")
RELAY_ACTIONS = {"close", "hang", "garbage", "drip", "reset", "lost", "slow_lines", "late"}
SLOW_SECONDS = 1.0            # proxy "slow": before each reply; relay "slow_lines": per line
LATE_SECONDS = 3.0            # relay "late": before the whole reply
REPLY_LINE = re.compile(r"^[2-5][0-9][0-9]([ -].*)?$")

RELAY_DEFAULTS = {
    "starttls": True,
    "require_tls_for_auth": True,
    "auth_mechs": ["PLAIN", "LOGIN"],
    "pipelining": True,
    "size_limit": 0,
    "eightbitmime": True,
    "smtputf8": True,
    "cert": "relay",
    "ehlo": True,
    "users": {},
    "token_ttl": 43199,
    "enhancedstatuscodes": True,
    "max_line_length": 0,
    "require_client_cert": False,
    "xoauth2_error_challenge": False,
    "auth_echo": False,
    "authtoken_ttl": 3600,
    "tls_max_version": "",
    "max_messages_per_session": 0,
}
AUTH_MECHS = ("PLAIN", "LOGIN", "XOAUTH2")
RELAY_CERTS = ("relay", "wrongname", "selfsigned", "expired")
TLS_VERSIONS = {"": None, "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def merge_patch(target, patch):
    """JSON merge patch (RFC 7396): null deletes a key, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def check_relay_action(where, action):
    if not isinstance(action, str):
        raise ValueError(f"{where}: action must be a string")
    if action in RELAY_ACTIONS or REPLY_LINE.match(action.split("\n")[0]):
        return
    raise ValueError(f"{where}: {action!r} is neither an SMTP reply 'NNN text' "
                     f"nor one of {sorted(RELAY_ACTIONS)}")


def check_faults(switches):
    """Raise ValueError unless every switch is one the emulator implements."""
    for key, value in switches.items():
        if key in FAULT_KINDS:
            if value not in FAULT_KINDS[key]:
                raise ValueError(f"fault {key}: {value!r} is not one of {sorted(FAULT_KINDS[key])}")
        elif key == "proxy_rep":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
                raise ValueError("fault proxy_rep: must be an integer 0..255")
        elif key == "relay":
            if not isinstance(value, dict):
                raise ValueError("fault relay: must be an object {stage: action}")
            for stage, action in value.items():
                if stage not in RELAY_STAGES:
                    raise ValueError(f"fault relay: unknown stage {stage!r}, "
                                     f"stages are {list(RELAY_STAGES)}")
                check_relay_action(f"fault relay.{stage}", action)
        elif key == "rcpt_reply":
            if not isinstance(value, dict):
                raise ValueError("fault rcpt_reply: must be an object {address: reply}")
            for addr, action in value.items():
                check_relay_action(f"fault rcpt_reply[{addr}]", action)
        elif key in BODY_SWITCHES:
            check_generated(f"fault {key}", value)
        elif key == "relay_raw":
            if not isinstance(value, dict):
                raise ValueError("fault relay_raw: must be an object {stage: bytes}")
            for stage, spec in value.items():
                if stage not in RELAY_STAGES:
                    raise ValueError(f"fault relay_raw: unknown stage {stage!r}")
                check_generated(f"fault relay_raw.{stage}", spec)
        else:
            raise ValueError(f"unknown fault switch {key!r}")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# Raw bodies for hostile-input tests: a token or Destination Service answer (200) and a
# relay reply replaced by bytes given as a string, or generated as prefix + repeat * times
# + suffix (so that a few bytes of control request make megabytes of answer).
BODY_SWITCHES = ("token_body", "token_mtls_body", "destination_body")
GENERATED_KEYS = ("prefix", "repeat", "times", "suffix")
GENERATED_MAX = 64 << 20


def check_generated(where, spec):
    if isinstance(spec, str):
        return
    if not isinstance(spec, dict) or set(spec) - set(GENERATED_KEYS):
        raise ValueError(f"{where}: a string or an object with {list(GENERATED_KEYS)}")
    times = spec.get("times", 1)
    if not is_int(times) or times < 0:
        raise ValueError(f"{where}: times must be an integer >= 0")
    if not all(isinstance(spec.get(key, ""), str) for key in ("prefix", "repeat", "suffix")):
        raise ValueError(f"{where}: prefix, repeat and suffix must be strings")
    if len(spec.get("repeat", "")) * times > GENERATED_MAX:
        raise ValueError(f"{where}: more than {GENERATED_MAX} bytes")


def generated(spec):
    """The bytes of a raw-body spec (check_generated)."""
    if isinstance(spec, str):
        return spec.encode("utf-8")
    return (spec.get("prefix", "") + spec.get("repeat", "") * spec.get("times", 1)
            + spec.get("suffix", "")).encode("utf-8")


# POST /chaos: seeded random faults, one kind per faulty connection (or request). A kind
# is "SWITCH=VALUE" with a fault switch and one of its values: "proxy=reset",
# "proxy_rep=4", "token=http500", "destination=timeout", "relay.eod=lost".
CHAOS_KIND = re.compile(r"^(token|token_mtls|destination|proxy|proxy_rep|relay\.[a-z]+)=(.+)$",
                        re.DOTALL)


def parse_chaos_kind(kind):
    """A kind -> (service that draws it, the fault switches it stands for)."""
    match = CHAOS_KIND.match(kind) if isinstance(kind, str) else None
    if not match:
        raise ValueError(f"chaos kind {kind!r}: not SWITCH=VALUE with SWITCH one of token, "
                         "token_mtls, destination, proxy, proxy_rep, relay.STAGE")
    key, value = match.groups()
    if key.startswith("relay."):
        service, switches = "relay", {"relay": {key[len("relay."):]: value}}
    elif key == "proxy_rep":
        if not value.isdigit():
            raise ValueError(f"chaos kind {kind!r}: proxy_rep takes a number")
        service, switches = "proxy", {"proxy_rep": int(value)}
    else:
        service, switches = key, {key: value}
    check_faults(switches)
    return service, switches


class Chaos:
    """Each connection to the proxy or the relay, and each token or Destination Service
    request, draws from its service's own random stream (seeded with the seed and the
    service's name) when some kind names that service: with probability `rate` it gets
    one of the service's kinds, chosen at random, in place of the fault switches. The
    same seed and the same order of connections give the same faults."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self):
        with self.lock:
            self.active = False
            self.seed, self.rate, self.kinds = None, 0.0, []
            self.by_service, self.streams, self.drawn, self.injected = {}, {}, {}, {}

    def start(self, body):
        if not isinstance(body, dict) or set(body) - {"seed", "rate", "kinds"}:
            raise ValueError("chaos: the body is {\"seed\":N,\"rate\":R,\"kinds\":[..]}")
        seed, rate, kinds = body.get("seed"), body.get("rate"), body.get("kinds")
        if not is_int(seed):
            raise ValueError("chaos: seed must be an integer")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError("chaos: rate must be a number from 0 to 1")
        if not isinstance(kinds, list) or not kinds:
            raise ValueError("chaos: kinds must be a non-empty array")
        by_service = {}
        for kind in kinds:
            service, switches = parse_chaos_kind(kind)
            by_service.setdefault(service, []).append((kind, switches))
        with self.lock:
            self.active, self.seed, self.rate, self.kinds = True, seed, float(rate), list(kinds)
            self.by_service = by_service
            self.streams = {name: random.Random(f"{seed}:{name}") for name in by_service}
            self.drawn = dict.fromkeys(by_service, 0)
            self.injected = dict.fromkeys(kinds, 0)

    def stop(self):
        with self.lock:
            self.active = False

    def draw(self, service):
        """(kind, fault switches) for this connection or request, or (None, None)."""
        with self.lock:
            if not self.active or service not in self.by_service:
                return None, None
            stream, choices = self.streams[service], self.by_service[service]
            self.drawn[service] += 1
            hit = stream.random() < self.rate
            kind, switches = choices[stream.randrange(len(choices))]   # drawn either way
            if not hit:
                return None, None
            self.injected[kind] += 1
            return kind, copy.deepcopy(switches)

    def snapshot(self):
        with self.lock:
            return {"active": self.active, "seed": self.seed, "rate": self.rate,
                    "kinds": list(self.kinds), "drawn": dict(self.drawn),
                    "injected": dict(self.injected),
                    "injected_total": sum(self.injected.values())}


def check_relay_options(options):
    """Raise ValueError unless the options are complete and well typed."""
    for key, value in options.items():
        if key not in RELAY_DEFAULTS:
            raise ValueError(f"unknown relay option {key!r}")
        default = RELAY_DEFAULTS[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = is_int(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ValueError(f"relay option {key}: expected {type(default).__name__}")
    for key in ("size_limit", "max_line_length", "authtoken_ttl", "max_messages_per_session"):
        if options[key] < 0:
            raise ValueError(f"relay option {key}: must be >= 0")
    if options["cert"] not in RELAY_CERTS:
        raise ValueError(f"relay option cert: one of {list(RELAY_CERTS)}")
    if options["tls_max_version"] not in TLS_VERSIONS:
        raise ValueError(f"relay option tls_max_version: one of {list(TLS_VERSIONS)}")
    for mech in options["auth_mechs"]:
        if mech not in AUTH_MECHS:
            raise ValueError(f"relay option auth_mechs: {mech!r} is not one of {list(AUTH_MECHS)}")
    for user, password in options["users"].items():
        if not isinstance(password, str):
            raise ValueError(f"relay option users: password of {user!r} must be a string")


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_atomically(path, data, mode=0o644):
    """Write a file so readers see either nothing or all of it (tmp file + rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
    os.replace(tmp, path)


def to_json_bytes(obj):
    return json.dumps(obj, indent=None).encode("utf-8")


def show(text, limit=200):
    """Render untrusted input for a log line: printable, one line, bounded."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


class Log:
    """One line per event, to a file, to stderr, or nowhere (--quiet). Never logs secrets:
    callers pass only names, ids, codes and sanitized input."""

    def __init__(self, path=None, quiet=False):
        self.lock = threading.Lock()
        if path:
            self.stream = open(path, "a", encoding="utf-8", buffering=1)
        else:
            self.stream = None if quiet else sys.stderr

    def __call__(self, where, message):
        if self.stream is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (now % 1 * 1000)
        line = f"{stamp} {where} {message}".replace("\n", " ").replace("\r", " ")
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


# --------------------------------------------------------------------------------------
# Connections: a buffered reader, and a connection that can misbehave on purpose
# --------------------------------------------------------------------------------------

class SessionEnd(Exception):
    """The connection is over: the peer left, a fault closed it, or the emulator stops."""


class IdleTimeout(SessionEnd):
    """The peer sent nothing for too long."""


class Reader:
    """Buffered input from a socket. Commands are processed strictly in order from this
    buffer, which is what makes pipelined SMTP and keep-alive HTTP work."""

    CHUNK = 262144

    def __init__(self, sock, fills=0):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.fills = fills        # successful reads so far (tells pipelined commands apart)

    def _fill(self):
        """Append what the socket has; False at end of input (or a broken connection)."""
        try:
            data = self.sock.recv(self.CHUNK)
        except socket.timeout:
            raise IdleTimeout("idle timeout") from None
        except OSError:
            return False
        if not data:
            return False
        self.buf += data
        self.fills += 1
        return True

    def buffered(self):
        """How many bytes were read from the socket but not yet taken."""
        return len(self.buf) - self.pos

    def _compact(self):
        if self.pos and (self.pos >= len(self.buf) or self.pos > self.CHUNK):
            del self.buf[:self.pos]
            self.pos = 0

    def readline(self, limit):
        """Next line including its LF; a piece of `limit` bytes when the line is longer;
        whatever is left at end of input (b"" when nothing)."""
        while True:
            nl = self.buf.find(b"\n", self.pos, self.pos + limit)
            if nl >= 0:
                return self._take(nl + 1 - self.pos)
            if len(self.buf) - self.pos >= limit:
                return self._take(limit)
            if not self._fill():
                return self._take(len(self.buf) - self.pos)

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            if not self._fill():
                raise SessionEnd("connection closed")
        return self._take(n)

    def _take(self, n):
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        self._compact()
        return data

    def take_buffered(self):
        return self._take(len(self.buf) - self.pos)

    def read_dot_terminated(self, write):
        """Read an SMTP DATA body up to the line ".\\r\\n" and pass it to write() with the
        dot-stuffing removed and everything else byte for byte. Scans for "\\n." instead of
        splitting lines, so a 50 MB message costs a few find() calls per chunk."""
        at_line_start = True
        while True:
            buf, pos, end = self.buf, self.pos, len(self.buf)
            while pos < end:
                if at_line_start:
                    if buf[pos] == 0x2E:                       # "."
                        if end - pos < 3:
                            break                              # ".\r\n" or ".x"? read more
                        if buf[pos + 1] == 0x0D and buf[pos + 2] == 0x0A:
                            self.pos = pos + 3
                            self._compact()
                            return
                        pos += 1                               # drop the stuffed dot
                    at_line_start = False
                    continue
                nl = buf.find(b"\n.", pos, end)
                if nl < 0:
                    write(bytes(buf[pos:end]))
                    at_line_start = buf[end - 1] == 0x0A
                    pos = end
                else:
                    write(bytes(buf[pos:nl + 1]))
                    pos = nl + 1
                    at_line_start = True
            self.pos = pos
            self._compact()
            if not self._fill():
                raise SessionEnd("connection closed during DATA")


class Conn:
    """One accepted connection: its socket (plain, or TLS after an upgrade), its reader,
    and the ways a faulty service misbehaves: drip, hang, reset."""

    def __init__(self, emu, sock, peer, service, number):
        self.emu = emu
        self.sock = sock
        self.peer = peer
        self.service = service
        self.name = f"{service}#{number}"
        self.reader = Reader(sock)
        self.tls = False
        self.sni = None                 # server name the TLS client sent
        self.peer_cert = None           # the client certificate (getpeercert()), if any
        self.peer_cert_der = None
        self.send_delay = 0.0           # seconds to wait before each send (proxy "slow")
        self.held = b""                 # replies held back by hold(), sent with the next send()

    @property
    def peer_port(self):
        return self.peer[1]

    def log(self, message):
        self.emu.log(self.name, message)

    def hold(self, data):
        """Keep data for the next send(): the replies to a pipelined group of commands go
        out in one write, as a Postfix smtpd sends them (RFC 2920, 3.2: a server may
        buffer its replies while more commands wait)."""
        self.held += data

    def flush(self):
        """Send what hold() kept: a fault at one command of a pipelined group comes
        after the replies to the commands before it, as from a server that answered
        those and then failed."""
        if self.held:
            self.send(b"")

    def send(self, data):
        if self.held:
            data, self.held = self.held + data, b""
        if self.send_delay and self.emu.stopping.wait(self.send_delay):
            raise SessionEnd("shutdown")
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise SessionEnd(f"send failed: {e}") from None

    def drip(self, data):
        """Send the bytes one per second (a service that is alive but far too slow)."""
        for i in range(len(data)):
            if i and self.emu.stopping.wait(1.0):
                raise SessionEnd("shutdown")
            self.send(data[i:i + 1])

    def pause(self, seconds):
        """Wait, unless the emulator stops."""
        if self.emu.stopping.wait(seconds):
            raise SessionEnd("shutdown")

    def hang(self):
        """Read and ignore everything until the peer closes or the emulator stops."""
        self.log("hanging until the peer closes")
        while not self.emu.stopping.is_set():
            try:
                if not self.sock.recv(65536):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        raise SessionEnd("hang over")

    def reset(self):
        """Abort with a TCP RST instead of an orderly close."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()
        raise SessionEnd("reset")

    def start_tls(self, context):
        """Upgrade to TLS (STARTTLS, implicit TLS, HTTPS). Plaintext the client pipelined
        before the handshake is discarded, as RFC 3207 requires."""
        self.reader.take_buffered()
        timeout = self.sock.gettimeout()
        self.sock.settimeout(HANDSHAKE_TIMEOUT)
        tls = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = tls                 # before the handshake, so abort() can still wake it
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            raise SessionEnd(f"TLS handshake failed: {e}") from None
        tls.settimeout(timeout)
        self.reader = Reader(tls, self.reader.fills)
        self.tls = True
        self.sni = getattr(tls, "emu_sni", None)
        self.peer_cert_der = tls.getpeercert(binary_form=True)
        self.peer_cert = tls.getpeercert() if self.peer_cert_der else None

    def abort(self):
        """Wake a thread blocked on this connection (used at shutdown)."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Connections:
    """Every live connection, so shutdown can wake the threads serving them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = set()
        self.numbers = itertools.count(1)

    def add(self, conn):
        with self.lock:
            self.live.add(conn)

    def remove(self, conn):
        with self.lock:
            self.live.discard(conn)

    def count(self):
        with self.lock:
            return len(self.live)

    def abort_all(self):
        with self.lock:
            live = list(self.live)
        for conn in live:
            conn.abort()


# --------------------------------------------------------------------------------------
# Listening sockets
# --------------------------------------------------------------------------------------

class Listener:
    """A listening socket on 127.0.0.1 that hands each connection to serve(conn) on a new
    thread. It can be closed and reopened on the same port (the "refuse" fault)."""

    def __init__(self, emu, service, serve, idle_timeout):
        self.emu = emu
        self.service = service
        self.serve = serve
        self.idle_timeout = idle_timeout
        self.port = 0
        self.sock = None

    def open(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.sock = sock

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def accept_one(self):
        try:
            sock, peer = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:                      # e.g. out of file descriptors: back off
            self.emu.log(self.service, f"accept failed: {e}")
            time.sleep(0.05)
            return
        sock.settimeout(self.idle_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(self.emu, sock, peer, self.service, next(self.emu.connections.numbers))
        self.emu.connections.add(conn)
        thread = threading.Thread(target=self._run, args=(conn,), name=conn.name, daemon=True)
        try:
            thread.start()
        except RuntimeError as e:                 # cannot start a thread: drop this one
            self.emu.log(conn.name, f"cannot start a thread: {e}")
            self.emu.connections.remove(conn)
            conn.close()

    def _run(self, conn):
        try:
            self.serve(conn)
        except SessionEnd as e:
            conn.log(f"closed ({e})")
        except Exception as e:                    # bad input must never take us down
            conn.log(f"closed after an internal error: {type(e).__name__}: {show(str(e))}")
        finally:
            conn.close()
            self.emu.connections.remove(conn)


class Acceptor:
    """One thread accepts on every listening socket. Closing and reopening listening
    sockets (the "refuse" fault) also runs on this thread, so no socket is ever closed
    under a select() that watches it."""

    def __init__(self, emu):
        self.emu = emu
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.jobs = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="acceptor", daemon=True)
        self.stopped = False

    def listen(self, listener):
        listener.open()
        self.selector.register(listener.sock, selectors.EVENT_READ, listener)

    def unlisten(self, listener):
        if listener.sock is not None:
            self.selector.unregister(listener.sock)
            listener.close()

    def start(self):
        self.thread.start()

    def call(self, job):
        """Run job() on the acceptor thread and wait until it has run."""
        done = threading.Event()
        outcome = {}

        def wrapped():
            try:
                outcome["result"] = job()
            except Exception as e:
                outcome["error"] = e
            finally:
                done.set()

        self.jobs.put(wrapped)
        self.wake_w.send(b"!")
        if not done.wait(10):
            raise RuntimeError("acceptor thread does not answer")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

    def stop(self):
        self.stopped = True
        try:
            self.wake_w.send(b"!")
        except OSError:
            pass
        self.thread.join(5)

    def _loop(self):
        while not self.stopped:
            for key, _ in self.selector.select():
                if key.data is None:
                    self._run_jobs()
                elif key.data.sock is not None:
                    key.data.accept_one()
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                key.data.close()
        self.selector.close()

    def _run_jobs(self):
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            job()


# --------------------------------------------------------------------------------------
# Shared state: secrets, tokens, counters, faults, options, destinations, messages
# --------------------------------------------------------------------------------------

class SecretBook:
    """Every secret value the emulator hands out, one per line in secrets.txt (0600), so
    tests can grep logs for them and prove nothing leaked."""

    def __init__(self, path):
        self.lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        self.known = set()

    def new(self):
        value = secrets.token_urlsafe(24)
        self.add(value)
        return value

    def add(self, value):
        with self.lock:
            if value in self.known:
                return
            self.known.add(value)
            self.file.write(value + "\n")
            self.file.flush()


class Client:
    def __init__(self, kind, client_id, secret, cert_der=None):
        self.kind = kind                  # "connectivity" or "destination" ("mail": authTokens)
        self.id = client_id
        self.secret = secret              # None: an X.509 client (token_mtls only)
        self.cert_der = cert_der          # the registered client certificate of an X.509 client


class InvalidToken(Exception):
    pass


class TokenIssuer:
    """Issues real HS256 JWTs signed with a per-run key, and checks them for the
    Destination Service and the proxy."""

    def __init__(self, emu):
        self.emu = emu
        self.key = secrets.token_bytes(32)
        self.issuer = None                # set once the token port is known

    def _sign(self, signing_input):
        return hmac.new(self.key, signing_input, hashlib.sha256).digest()

    def issue(self, client, zid, ttl, extra=None):
        now = int(time.time())
        claims = {"iss": self.issuer, "client_id": client.id, "cid": client.id, "zid": zid,
                  "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
                  "scope": ["uaa.resource"]}
        claims.update(extra or {})
        header = b64url(to_json_bytes({"alg": "HS256", "typ": "JWT"}))
        signing_input = f"{header}.{b64url(to_json_bytes(claims))}".encode("ascii")
        token = signing_input.decode("ascii") + "." + b64url(self._sign(signing_input))
        self.emu.secrets.add(token)
        return token, claims

    def verify(self, token):
        """The claims of a token this emulator issued and that has not expired."""
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidToken("not ASCII") from None
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a JWT")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise InvalidToken("undecodable") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise InvalidToken("wrong algorithm")
        expected = self._sign(f"{parts[0]}.{parts[1]}".encode("ascii"))
        if not hmac.compare_digest(signature, expected):
            raise InvalidToken("bad signature")
        if not isinstance(claims, dict) or not is_int(claims.get("exp")):
            raise InvalidToken("no expiry")
        if time.time() >= claims["exp"]:
            raise InvalidToken("expired")
        return claims


COUNTERS = ("token_requests.total", "token_requests.connectivity",
            "token_requests.destination", "token_requests.mtls", "token_requests.subscriber",
            "find_requests", "authtokens_issued", "proxy_connections",
            "proxy_auth_ok", "proxy_auth_failed", "proxy_connects_ok", "relay_connections",
            "relay_messages", "relay_commands", "relay_tls", "relay_auth_ok",
            "relay_auth_failed")


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = dict.fromkeys(COUNTERS, 0)

    def bump(self, name):
        """A name outside COUNTERS (proxy_replies.XX) starts at 0 when first bumped."""
        with self.lock:
            self.values[name] = self.values.get(name, 0) + 1

    def clear(self):
        with self.lock:
            self.values = dict.fromkeys(COUNTERS, 0)

    def snapshot(self):
        """Flat names with a dot become nested objects: token_requests.total -> {...}."""
        with self.lock:
            values = dict(self.values)
        out = {}
        for name, value in values.items():
            group, _, leaf = name.partition(".")
            if leaf:
                out.setdefault(group, {})[leaf] = value
            else:
                out[name] = value
        return out


class Faults:
    """The fault switches (absent = healthy). Changes are JSON merge patches."""

    def __init__(self, on_change):
        self.lock = threading.Lock()
        self.switches = {}
        self.on_change = on_change        # reopens/closes listeners for "refuse"

    def get(self, key):
        with self.lock:
            return self.switches.get(key)

    def relay_action(self, stage):
        with self.lock:
            return self.switches.get("relay", {}).get(stage)

    def rcpt_action(self, address):
        with self.lock:
            for addr, action in self.switches.get("rcpt_reply", {}).items():
                if addr.lower() == address.lower():
                    return action
        return None

    def merge(self, patch):
        with self.lock:
            switches = copy.deepcopy(self.switches)
            merge_patch(switches, patch)
            for key in ("relay", "rcpt_reply", "relay_raw"):   # an emptied object: healthy
                if switches.get(key) == {}:
                    del switches[key]
            check_faults(switches)
            self.switches = switches
        self.on_change()

    def clear(self):
        with self.lock:
            self.switches = {}
        self.on_change()

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.switches)


class RelayOptions:
    def __init__(self, secret_book):
        self.lock = threading.Lock()
        self.secret_book = secret_book
        self.options = copy.deepcopy(RELAY_DEFAULTS)

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.options)

    def merge(self, patch):
        with self.lock:
            options = copy.deepcopy(self.options)
            merge_patch(options, patch)
            for key, default in RELAY_DEFAULTS.items():   # null = back to the default
                options.setdefault(key, copy.deepcopy(default))
            if isinstance(options.get("auth_mechs"), list):
                options["auth_mechs"] = [m.upper() if isinstance(m, str) else m
                                         for m in options["auth_mechs"]]
            check_relay_options(options)
            self.options = options
        for password in options["users"].values():
            self.secret_book.add(password)

    def reset(self):
        with self.lock:
            self.options = copy.deepcopy(RELAY_DEFAULTS)


class Destinations:
    """Destinations per (tenant subdomain, level). The control API without tenant/level
    works on the provider's subaccount level, as before tenants existed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.defaults = {}
        self.items = {}
        self.certificates = {}              # (tenant, level, name) -> certificates[] items

    def set_defaults(self, relay_password, relay_port, token_url, oauth_secret):
        onprem = {
            "Name": "MAIL_ONPREM", "Type": "MAIL", "ProxyType": "OnPremise",
            "Authentication": "BasicAuthentication", "mail.user": RELAY_USER,
            "mail.password": relay_password, "mail.smtp.host": RELAY_NAME,
            "mail.smtp.port": "25", "mail.smtp.auth": "true",
            "mail.transport.protocol": "smtp", "mail.smtp.from": "noreply@corp.example",
            "CloudConnectorLocationId": "LOC1"}
        provider = {
            "MAIL_ONPREM": onprem,
            "MAIL_NOLOC": {
                "Name": "MAIL_NOLOC", "Type": "MAIL", "ProxyType": "OnPremise",
                "Authentication": "NoAuthentication", "mail.smtp.host": RELAY_NAME,
                "mail.smtp.port": "25"},
            "MAIL_INTERNET": {
                "Name": "MAIL_INTERNET", "Type": "MAIL", "ProxyType": "Internet",
                "Authentication": "NoAuthentication", "mail.smtp.host": "localhost",
                "mail.smtp.port": str(relay_port)},
            "MAIL_OAUTH": {
                "Name": "MAIL_OAUTH", "Type": "MAIL", "ProxyType": "OnPremise",
                "Authentication": "OAuth2ClientCredentials", "mail.user": MAIL_OAUTH_USER,
                "mail.smtp.host": RELAY_NAME, "mail.smtp.port": "25", "mail.smtp.auth": "true",
                "mail.transport.protocol": "smtp", "mail.smtp.from": "noreply@corp.example",
                "CloudConnectorLocationId": "LOC1", "tokenServiceURL": token_url + "/oauth/token",
                "clientId": MAIL_OAUTH_CLIENT_ID, "clientSecret": oauth_secret},
            "MAIL_SMTPS": {
                "Name": "MAIL_SMTPS", "Type": "MAIL", "ProxyType": "OnPremise",
                "Authentication": "BasicAuthentication", "mail.user": RELAY_USER,
                "mail.password": relay_password, "mail.transport.protocol": "smtps",
                "mail.smtps.host": RELAY_NAME, "mail.smtps.port": "465",
                "mail.smtp.auth": "true", "mail.smtp.from": "noreply@corp.example",
                "CloudConnectorLocationId": "LOC1"},
        }
        subscriber = {
            "MAIL_SUB": {**onprem, "Name": "MAIL_SUB", "CloudConnectorLocationId": "SUBLOC",
                         "mail.smtp.from": "noreply@subscriber1.example"},
        }
        self.defaults = {(name, level): {} for name in TENANTS for level in LEVELS}
        self.defaults[(PROVIDER_SUBDOMAIN, "subaccount")] = provider
        self.defaults[(SUBSCRIBER_SUBDOMAIN, "subaccount")] = subscriber
        self.reset()

    def reset(self):
        with self.lock:
            self.items = copy.deepcopy(self.defaults)
            self.certificates = {}

    def get(self, name, tenant=PROVIDER_SUBDOMAIN, level="subaccount"):
        with self.lock:
            return copy.deepcopy(self.items[(tenant, level)].get(name))

    def get_certificates(self, name, tenant=PROVIDER_SUBDOMAIN, level="subaccount"):
        """The certificates[] items sent with the destination's find answer, or None."""
        with self.lock:
            return copy.deepcopy(self.certificates.get((tenant, level, name)))

    def put(self, name, properties, tenant=PROVIDER_SUBDOMAIN, level="subaccount",
            certificates=None):
        with self.lock:
            self.items[(tenant, level)][name] = copy.deepcopy(properties)
            if certificates is None:
                self.certificates.pop((tenant, level, name), None)
            else:
                self.certificates[(tenant, level, name)] = copy.deepcopy(certificates)

    def delete(self, name, tenant=PROVIDER_SUBDOMAIN, level="subaccount"):
        with self.lock:
            self.certificates.pop((tenant, level, name), None)
            return self.items[(tenant, level)].pop(name, None) is not None

    def snapshot(self, tenant=PROVIDER_SUBDOMAIN, level="subaccount"):
        with self.lock:
            return copy.deepcopy(self.items[(tenant, level)])

    def snapshot_all(self):
        with self.lock:
            out = {}
            for (tenant, level), items in self.items.items():
                out.setdefault(tenant, {})[level] = copy.deepcopy(items)
            return out

    def find(self, name, tenant):
        """(level, properties) of the tenant's destination, instance level first; (None,
        None) when there is none."""
        with self.lock:
            for level in ("instance", "subaccount"):
                found = self.items[(tenant, level)].get(name)
                if found is not None:
                    return level, copy.deepcopy(found)
        return None, None


class Draft:
    """A message being received: streamed to a hidden file, counted, capped."""

    def __init__(self, directory, limit):
        fd, self.path = tempfile.mkstemp(prefix=".incoming-", suffix=".part", dir=directory)
        self.file = os.fdopen(fd, "wb", buffering=262144)
        self.limit = limit
        self.size = 0
        self.too_big = False

    def write(self, data):
        self.size += len(data)
        if self.too_big:
            return
        if self.limit and self.size > self.limit:
            self.too_big = True           # keep reading to the dot, stop storing
            return
        self.file.write(data)

    def finish(self):
        self.file.close()

    def discard(self):
        """Remove the file unless it was stored; safe to call twice."""
        if not self.file.closed:
            self.file.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


class MessageStore:
    """Accepted messages as DIR/messages/N.eml (exact bytes) + N.json (envelope)."""

    STORED = re.compile(r"^[0-9]+\.(eml|json)$")

    def __init__(self, directory):
        self.dir = directory
        self.lock = threading.Lock()
        os.makedirs(directory, exist_ok=True)
        self.items = []
        self.next_id = 1
        self.clear()
        for name in os.listdir(directory):      # drafts left by a killed earlier run
            if name.startswith(".incoming-"):
                os.unlink(os.path.join(directory, name))

    def draft(self, limit):
        return Draft(self.dir, limit)

    def commit(self, draft, envelope):
        with self.lock:
            number = self.next_id
            self.next_id += 1
            eml = os.path.join(self.dir, f"{number}.eml")
            os.chmod(draft.path, 0o644)       # mkstemp made it 0600; match N.json
            os.replace(draft.path, eml)
            draft.path = None
            record = {"id": number, **envelope}
            write_atomically(os.path.join(self.dir, f"{number}.json"), to_json_bytes(record))
            self.items.append({**record, "file": eml})
        return number

    def clear(self):
        with self.lock:
            for name in os.listdir(self.dir):
                if self.STORED.match(name):
                    try:
                        os.unlink(os.path.join(self.dir, name))
                    except FileNotFoundError:
                        pass
            self.items = []
            self.next_id = 1

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.items)


class ProxyOrigins:
    """How the relay learns that a connection came through the proxy, from which Cloud
    Connector and for which tenant: the proxy binds its backend socket, registers the
    local port here, then connects; the relay looks up its peer's port."""

    def __init__(self):
        self.lock = threading.Condition()
        self.by_port = {}

    def put(self, port, location_id, zid=None):
        with self.lock:
            self.by_port[port] = (location_id, zid)
            self.lock.notify_all()

    def drop(self, port):
        with self.lock:
            self.by_port.pop(port, None)

    def take(self, port, wait=0.0):
        """(via_proxy, location_id or None, zid of the connectivity token or None).
        wait: seconds to wait for the port's record (btp-fastproxy reports it through
        a pipe, which may be read after the relay has accepted the connection)."""
        with self.lock:
            self.lock.wait_for(lambda: port in self.by_port, timeout=wait)
            if port not in self.by_port:
                return False, None, None
            location_id, zid = self.by_port.pop(port)
            return True, location_id or None, zid


class RecentList:
    """The last N records of something (token requests, relay connections), for tests.
    Records are dicts that their owner may keep updating through update()."""

    def __init__(self, limit):
        self.lock = threading.Lock()
        self.items = collections.deque(maxlen=limit)
        self.numbers = itertools.count(1)

    def add(self, record):
        with self.lock:
            fields = dict(record)
            record.clear()
            record.update(id=next(self.numbers), **fields)     # "id" first
            self.items.append(record)
        return record

    def update(self, record, **changes):
        with self.lock:
            record.update(changes)

    def append_to(self, record, key, item, limit):
        with self.lock:
            if len(record[key]) < limit:
                record[key].append(item)

    def set_last(self, record, key, field, value):
        """record[key][-1][field] = value when that field is still None."""
        with self.lock:
            if record[key] and record[key][-1].get(field) is None:
                record[key][-1][field] = value

    def clear(self):
        with self.lock:
            self.items.clear()
            self.numbers = itertools.count(1)

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(list(self.items))


# --------------------------------------------------------------------------------------
# HTTP/1.1 (just enough: keep-alive, Content-Length, chunked bodies, 100-continue)
# --------------------------------------------------------------------------------------

REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 500: "Internal Server Error"}


class BadRequest(Exception):
    pass


class HttpRequest:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.version = version
        self.headers = headers            # lower-case names
        self.body = body
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection


def read_head_line(reader):
    line = reader.readline(8192)
    if line and not line.endswith(b"\n"):
        raise BadRequest("line too long or truncated")
    return line


def read_chunked(reader):
    body = bytearray()
    while True:
        size_line = read_head_line(reader).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            while read_head_line(reader) not in (b"\r\n", b"\n", b""):
                pass                                      # trailers
            return bytes(body)
        if len(body) + size > HTTP_BODY_MAX:
            raise BadRequest("body too large")
        body += reader.read_exact(size)
        read_head_line(reader)


def read_request(conn):
    """The next request on the connection, or None when the client closed it."""
    reader = conn.reader
    line = read_head_line(reader)
    while line in (b"\r\n", b"\n"):
        line = read_head_line(reader)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    method, target, version = parts
    headers = {}
    total = 0
    while True:
        header = read_head_line(reader)
        if not header:
            raise SessionEnd("connection closed in the request head")
        total += len(header)
        if total > 65536:
            raise BadRequest("request head too large")
        if header in (b"\r\n", b"\n"):
            break
        name, sep, value = header.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if length < 0 or length > HTTP_BODY_MAX:
            raise BadRequest("bad Content-Length")
        body = reader.read_exact(length) if length else b""
    return HttpRequest(method.upper(), target, version, headers, body)


def http_response(status, body, keep_alive, content_type="application/json"):
    if not isinstance(body, bytes):
        body = to_json_bytes(body)
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode("ascii") + body


class HttpService:
    """Serves HTTP(S) requests with keep-alive; subclasses implement handle(request)
    -> (status, body, note). The fault switch named after the service applies."""

    fault_key = None                 # None: no fault switches (the control API)

    def __init__(self, emu, tls_context=None):
        self.emu = emu
        self.tls_context = tls_context

    def error_body(self, status, text):
        raise NotImplementedError

    def count(self, request):
        pass

    def fault(self):
        return self.emu.faults.get(self.fault_key) if self.fault_key else None

    def serve(self, conn):
        if self.fault() in ("reset", "refuse"):
            conn.log(f"fault {self.fault()}: reset at accept")
            conn.reset()
        if self.tls_context:
            conn.start_tls(self.tls_context)
        while True:
            try:
                request = read_request(conn)
            except BadRequest as e:
                conn.log(f"bad request: {e}")
                conn.send(http_response(400, self.error_body(400, str(e)), False))
                return
            if request is None:
                return
            self.count(request)
            if not self.answer(conn, request):
                return

    def answer(self, conn, request):
        """Answer one request; False when the connection must end."""
        kind, chaos = self.emu.chaos.draw(self.fault_key) if self.fault_key else (None, None)
        fault = self.fault() if chaos is None else chaos[self.fault_key]
        line = f"{request.method} {show(request.target)}" + (f" (chaos {kind})" if kind else "")
        if fault in ("reset", "refuse"):
            conn.log(f"{line} -> fault {fault}")
            conn.reset()
        if fault == "timeout":
            conn.log(f"{line} -> fault timeout")
            conn.hang()
        canned = {"http500": 500, "http401": 401, "http403": 403}
        if fault in canned:
            status = canned[fault]
            conn.log(f"{line} -> {status} (fault {fault})")
            conn.send(http_response(status, self.error_body(status, REASONS[status]),
                                    request.keep_alive))
            return request.keep_alive
        if fault == "garbage":
            conn.log(f"{line} -> 200 (fault garbage)")
            conn.send(http_response(200, b"<html><body>this is not JSON</body></html>",
                                    request.keep_alive))
            return request.keep_alive
        raw = self.emu.faults.get(f"{self.fault_key}_body") if self.fault_key else None
        if raw is not None and chaos is None:
            data = generated(raw)
            conn.log(f"{line} -> 200 ({len(data)} bytes of fault {self.fault_key}_body)")
            conn.send(http_response(200, data, request.keep_alive))
            return request.keep_alive
        request.conn = conn
        status, body, note = self.handle(request)
        data = http_response(status, body, request.keep_alive)
        conn.log(f"{line} -> {status}{' ' + note if note else ''}"
                 f"{' (fault slow)' if fault == 'slow' else ''}")
        if fault == "slow":
            conn.drip(data)
        else:
            conn.send(data)
        return request.keep_alive

    def handle(self, request):
        raise NotImplementedError


def parse_basic_auth(header):
    """(user, password) from an HTTP Basic header; OAuth clients may form-encode both."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def request_host(headers):
    """The host name of the Host header, lower case, without the port."""
    host = headers.get("host", "").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def tenant_of_host(host):
    """The tenant id selected by the token URL's host: the subscriber when its first DNS
    label is the subscriber's subdomain; the provider for IP addresses, single labels,
    the provider's subdomain and names outside .localhost; None for another X.localhost
    (an identity zone that does not exist)."""
    if not host or "." not in host or re.fullmatch(r"[0-9.]+|[0-9a-f:]+", host):
        return PROVIDER_TENANT
    label = host.split(".")[0]
    if label in TENANTS:
        return TENANTS[label]["zid"]
    if host.endswith(".localhost"):
        return None
    return PROVIDER_TENANT


class TokenService(HttpService):
    """POST /oauth/token, grant_type=client_credentials, client secret in the form body
    or in HTTP Basic; on the token_mtls listener (mtls=True) the client certificate
    instead of a secret. The tenant: header X-zid, else the Host header's first label."""

    fault_key = "token"

    def __init__(self, emu, tls_context=None, mtls=False):
        super().__init__(emu, tls_context)
        self.mtls = mtls
        self.listener = "token_mtls" if mtls else "token"
        if mtls:
            self.fault_key = "token_mtls"

    def error_body(self, status, text):
        if status == 401:
            return {"error": "unauthorized", "error_description": "Bad credentials"}
        return {"error": "server_error" if status >= 500 else "invalid_request",
                "error_description": text}

    def count(self, request):
        self.emu.counters.bump("token_requests.total")
        if self.mtls:
            self.emu.counters.bump("token_requests.mtls")

    def find_client(self, client_id, secret):
        for client in self.emu.clients.values():
            if client.secret is not None and client_id == client.id and hmac.compare_digest(
                    secret.encode("utf-8"), client.secret.encode("utf-8")):
                return client
        return None

    def find_x509_client(self, client_id, cert_der):
        for client in self.emu.clients.values():
            if client.cert_der is not None and client_id == client.id and cert_der \
                    and hmac.compare_digest(cert_der, client.cert_der):
                return client
        return None

    def handle(self, request):
        record = {"listener": self.listener, "host": request.headers.get("host"),
                  "x_zid": request.headers.get("x-zid"), "client_id": None, "auth": None,
                  "zid": None, "tenant": None, "status": None, "jti": None}
        status, body, note = self.issue(request, record)
        record["status"] = status
        self.emu.token_log.add(record)
        return status, body, note

    def issue(self, request, record):
        if request.path != "/oauth/token":
            return 404, {"error": "not_found"}, ""
        if request.method != "POST":
            return 405, {"error": "method_not_allowed"}, ""
        form = urllib.parse.parse_qs(request.body.decode("utf-8", "replace"),
                                     keep_blank_values=True)
        query = urllib.parse.parse_qs(request.query, keep_blank_values=True)
        basic = parse_basic_auth(request.headers.get("authorization", ""))
        if basic:    # RFC 6749 2.3.1 form-encodes both; raw values pass unchanged
            client_id, secret = (urllib.parse.unquote(part) for part in basic)
            record["auth"] = "basic"
        else:
            client_id = form.get("client_id", [""])[0]
            secret = form.get("client_secret", [""])[0]
            record["auth"] = "form"
        record["client_id"] = client_id
        if self.mtls:
            record["auth"] = "mtls"
            client = self.find_x509_client(client_id, request.conn.peer_cert_der)
        else:
            client = self.find_client(client_id, secret)
        if client is None:
            return 401, self.error_body(401, ""), f"bad credentials for {show(client_id, 60)}"
        grant = (form.get("grant_type") or query.get("grant_type") or [""])[0]
        if grant != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, f"grant_type={show(grant, 40)}"
        zid = request.headers.get("x-zid") or tenant_of_host(request_host(request.headers))
        if zid is None:
            host = show(request_host(request.headers), 80)
            return 401, self.error_body(401, ""), f"no identity zone for host {host}"
        ttl = self.emu.relay_options.snapshot()["token_ttl"]
        token, claims = self.emu.tokens.issue(client, zid, ttl)
        self.emu.counters.bump(f"token_requests.{client.kind}")
        if zid == SUBSCRIBER_TENANT:
            self.emu.counters.bump("token_requests.subscriber")
        record.update(zid=zid, tenant=tenant_of_zid(zid) if zid in (
            PROVIDER_TENANT, SUBSCRIBER_TENANT) else None, jti=claims["jti"])
        body = {"access_token": token, "token_type": "bearer", "expires_in": ttl,
                "scope": "uaa.resource", "jti": claims["jti"]}
        return 200, body, f"client={client.id} zid={zid} jti={claims['jti']} ttl={ttl}"


class DestinationService(HttpService):
    """The Destination Service REST API (SAP: "Calling the Destination Service REST API"), answering from the
    destinations of the token's tenant:
      GET /destination-configuration/v1/destinations/{name}           (find)
      GET /destination-configuration/v1/subaccountDestinations[/{name}]
      GET /destination-configuration/v1/instanceDestinations[/{name}]"""

    fault_key = "destination"
    BASE = "/destination-configuration/v1/"
    PREFIX = BASE + "destinations/"
    LISTS = {"subaccountDestinations": "subaccount", "instanceDestinations": "instance"}
    NOT_FOUND = {"ErrorMessage": "Configuration with the specified name was not found"}

    def error_body(self, status, text):
        return {"ErrorMessage": text}

    def count(self, request):
        self.emu.counters.bump("find_requests")

    def handle(self, request):
        if not request.path.startswith(self.BASE):
            return 404, {"ErrorMessage": "Not found"}, ""
        api, _, name = request.path[len(self.BASE):].partition("/")
        name = urllib.parse.unquote(name)
        if api not in ("destinations", *self.LISTS) or (api == "destinations" and not name):
            return 404, {"ErrorMessage": "Not found"}, ""
        if request.method != "GET":
            return 405, {"ErrorMessage": "Method not allowed"}, ""
        claims, problem = self.authorize(request.headers.get("authorization", ""))
        if problem:
            status, text = problem
            self.emu.record_find(name, request.query, None, status, api)
            return status, {"ErrorMessage": text}, text
        zid = claims.get("zid")
        tenant = tenant_of_zid(zid)
        if api in self.LISTS:
            level = self.LISTS[api]
            if not name:
                found = list(self.emu.destinations.snapshot(tenant, level).values())
                self.emu.record_find("", request.query, zid, 200, api, tenant, level)
                return 200, found, f"{api} tenant={tenant}: {len(found)}"
            found = self.emu.destinations.get(name, tenant, level)
            status = 404 if found is None else 200
            self.emu.record_find(name, request.query, zid, status, api, tenant,
                                 level if found is not None else None)
            if found is None:
                return 404, self.NOT_FOUND, f"{api} tenant={tenant}"
            return 200, found, f"{api} name={show(name, 80)} tenant={tenant}"
        level, destination = self.emu.destinations.find(name, tenant)
        if destination is None:
            self.emu.record_find(name, request.query, zid, 404, api, tenant)
            return 404, self.NOT_FOUND, f"tenant={tenant}"
        self.emu.record_find(name, request.query, zid, 200, api, tenant, level)
        owner = {"SubaccountId": TENANTS[tenant]["subaccount"],
                 "InstanceId": DESTINATION_INSTANCE_ID if level == "instance" else None}
        body = {"owner": owner, "destinationConfiguration": destination}
        certificates = self.emu.destinations.get_certificates(name, tenant, level)
        if certificates is not None:
            body["certificates"] = certificates
        query = urllib.parse.parse_qs(request.query, keep_blank_values=True)
        skip = query.get("$skipTokenRetrieval", [""])[0].lower() == "true"
        note = ""
        if str(destination.get("Authentication", "")).startswith("OAuth2") and not skip:
            body["authTokens"] = [self.auth_token(destination, zid)]
            note = " with authTokens"
        return 200, body, f"name={show(name, 80)} tenant={tenant} level={level}{note}"

    def auth_token(self, destination, zid):
        """The authTokens item of an OAuth2 destination: an access token that the relay's
        AUTH XOAUTH2 accepts for the destination's mail.user (fault "authtokens" aside)."""
        fault = self.emu.faults.get("authtokens")
        if fault == "error":
            return {"type": "", "value": "", "error": "Retrieval of OAuth token failed"}
        ttl = 0 if fault == "expired" else self.emu.relay_options.snapshot()["authtoken_ttl"]
        client = Client("mail", str(destination.get("clientId", MAIL_OAUTH_CLIENT_ID)), None)
        token, _ = self.emu.tokens.issue(client, zid, ttl, {
            "user_name": str(destination.get("mail.user", "")), "scope": [MAIL_TOKEN_SCOPE]})
        self.emu.counters.bump("authtokens_issued")
        return {"type": "Bearer", "value": token,
                "http_header": {"key": "Authorization", "value": "Bearer " + token},
                "expires_in": str(ttl)}

    def authorize(self, header):
        """(claims, None) for a valid token of a destination client, else (None,
        (status, message))."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, (401, "Unauthorized: no bearer token")
        try:
            claims = self.emu.tokens.verify(token.strip())
        except InvalidToken as e:
            return None, (401, f"Unauthorized: token {e}")
        if claims.get("client_id") not in (DESTINATION_CLIENT_ID, DESTINATION_X509_CLIENT_ID):
            return None, (403, "Forbidden: the token's client may not read destinations")
        return claims, None


class ControlService(HttpService):
    """The tests' remote control: plain HTTP, JSON in and out, never faulty. Each call
    is a method taking the parsed body and query string (parse_qs) and returning
    (status, answer, log note)."""

    ROUTES = {
        ("GET", "/counters"): "get_counters",
        ("GET", "/messages"): "get_messages",
        ("GET", "/finds"): "get_finds",
        ("POST", "/reset"): "post_reset",
        ("GET", "/faults"): "get_faults",
        ("POST", "/faults"): "post_faults",
        ("POST", "/faults/clear"): "post_faults_clear",
        ("GET", "/relay"): "get_relay",
        ("POST", "/relay"): "post_relay",
        ("GET", "/destinations"): "get_destinations",
        ("GET", "/connections"): "get_connections",
        ("GET", "/tokens"): "get_tokens",
        ("GET", "/proxy"): "get_proxy",
        ("GET", "/tenants"): "get_tenants",
        ("GET", "/chaos"): "get_chaos",
        ("POST", "/chaos"): "post_chaos",
        ("POST", "/chaos/stop"): "post_chaos_stop",
        ("GET", "/mailstore"): "get_mailstore",
        ("POST", "/mailstore"): "post_mailstore",
        ("POST", "/mailstore/reset"): "post_mailstore_reset",
    }
    DESTINATION = "/destinations/"

    def error_body(self, status, text):
        return {"error": text}

    def handle(self, request):
        path = request.path.rstrip("/") or "/"
        try:
            body = json.loads(request.body) if request.body.strip() else None
        except ValueError:
            return 400, {"error": "body is not JSON"}, ""
        query = urllib.parse.parse_qs(request.query, keep_blank_values=True)
        try:
            route = self.ROUTES.get((request.method, path))
            if route:
                return getattr(self, route)(body, query)
            if path.startswith(self.DESTINATION):
                name = urllib.parse.unquote(path[len(self.DESTINATION):])
                return self.destination(request.method, name, body, query)
        except ValueError as e:             # a bad body: nothing was changed
            return 400, {"error": str(e)}, show(str(e))
        return 404, {"error": f"no such control call: {request.method} {path}"}, ""

    @staticmethod
    def need_object(body):
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def get_counters(self, body, query):
        return 200, self.emu.counters.snapshot(), ""

    def get_messages(self, body, query):
        return 200, self.emu.messages.snapshot(), ""

    def get_finds(self, body, query):
        return 200, self.emu.finds_snapshot(), ""

    def post_reset(self, body, query):
        self.emu.reset()
        return 200, {"reset": True}, ""

    def get_faults(self, body, query):
        return 200, self.emu.faults.snapshot(), ""

    def post_faults(self, body, query):
        self.emu.faults.merge(self.need_object(body))
        return 200, self.emu.faults.snapshot(), show(json.dumps(body))

    def post_faults_clear(self, body, query):
        self.emu.faults.clear()
        self.emu.chaos.stop()
        return 200, self.emu.faults.snapshot(), ""

    def get_chaos(self, body, query):
        return 200, self.emu.chaos.snapshot(), ""

    def post_chaos(self, body, query):
        self.emu.chaos.start(body)
        return 200, self.emu.chaos.snapshot(), show(json.dumps(body))

    def post_chaos_stop(self, body, query):
        self.emu.chaos.stop()
        return 200, self.emu.chaos.snapshot(), ""

    def get_mailstore(self, body, query):
        return 200, self.emu.mailstore.snapshot(), ""

    def post_mailstore(self, body, query):
        return 200, self.emu.mailstore.control(body), ""

    def post_mailstore_reset(self, body, query):
        self.emu.mailstore.reset()
        return 200, self.emu.mailstore.snapshot(), ""

    def get_relay(self, body, query):
        return 200, self.emu.relay_options.snapshot(), ""

    def post_relay(self, body, query):         # not logged: "users" holds passwords
        self.emu.relay_options.merge(self.need_object(body))
        return 200, self.emu.relay_options.snapshot(), ""

    @staticmethod
    def scope(query):
        """(tenant, level) from the query string ?tenant=..&level=.. (defaults: provider,
        subaccount); ValueError for unknown values."""
        tenant = tenant_name(query.get("tenant", [PROVIDER_SUBDOMAIN])[0])
        level = query.get("level", ["subaccount"])[0]
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}: one of {list(LEVELS)}")
        return tenant, level

    def get_destinations(self, body, query):
        if query.get("all", [""])[0] in ("1", "true"):
            return 200, self.emu.destinations.snapshot_all(), ""
        return 200, self.emu.destinations.snapshot(*self.scope(query)), ""

    def get_connections(self, body, query):
        return 200, self.emu.relay_log.snapshot(), ""

    def get_tokens(self, body, query):
        return 200, self.emu.token_log.snapshot(), ""

    def get_proxy(self, body, query):
        return 200, self.emu.proxy_log.snapshot(), ""

    def get_tenants(self, body, query):
        return 200, [{"subdomain": name, "tenant_id": t["zid"], "subaccount_id": t["subaccount"],
                      "locations": list(t["locations"])} for name, t in TENANTS.items()], ""

    def with_certificates(self, properties, name, tenant, level):
        """The control API's view of a destination: its properties, plus "certificates"
        when its find answer carries some (so GET then PUT keeps them)."""
        certificates = self.emu.destinations.get_certificates(name, tenant, level)
        if certificates is None:
            return properties
        return {**properties, "certificates": certificates}

    def destination(self, method, name, body, query):
        destinations = self.emu.destinations
        tenant, level = self.scope(query)
        where = f"name={show(name, 80)} tenant={tenant} level={level}"
        if method == "GET":
            found = destinations.get(name, tenant, level)
            if found is None:
                return 404, {"error": "no such destination"}, ""
            return 200, self.with_certificates(found, name, tenant, level), ""
        if method == "PUT":                  # not logged: may hold mail.password
            properties = dict(self.need_object(body))
            certificates = properties.pop("certificates", None)
            if certificates is not None and not (
                    isinstance(certificates, list)
                    and all(isinstance(item, dict) for item in certificates)):
                raise ValueError("certificates: must be an array of objects "
                                 '{"Name":..,"Type":"CERTIFICATE","Content":BASE64}')
            destinations.put(name, properties, tenant, level, certificates)
            found = destinations.get(name, tenant, level)
            return 200, self.with_certificates(found, name, tenant, level), where
        if method == "DELETE":
            if destinations.delete(name, tenant, level):
                return 200, {"deleted": name}, where
            return 404, {"error": "no such destination"}, ""
        return 405, {"error": "method not allowed"}, ""


# --------------------------------------------------------------------------------------
# Connectivity proxy: SOCKS5 with authentication method 0x80 (SAP: "Using the TCP Protocol for Cloud Applications")
# --------------------------------------------------------------------------------------

class ProxyRefusal(Exception):
    """The CONNECT is answered with this REP code."""

    def __init__(self, rep, why):
        super().__init__(why)
        self.rep = rep


def socks_reply(rep, port=0):
    return bytes([5, rep, 0, 1, 127, 0, 0, 1]) + struct.pack(">H", port)


class ConnectivityProxy:
    def __init__(self, emu):
        self.emu = emu

    def serve(self, conn):
        emu = self.emu
        emu.counters.bump("proxy_connections")
        kind, chaos = emu.chaos.draw("proxy")    # POST /chaos: this connection's fault
        if kind:
            conn.log(f"chaos {kind}")
        fault = emu.faults.get("proxy") if chaos is None else chaos.get("proxy")
        if fault in ("reset", "refuse"):
            conn.log(f"fault {fault}: reset at accept")
            conn.reset()
        if fault == "timeout":
            conn.hang()
        if fault == "slow":             # each reply late, each alone within a client's timeout
            conn.send_delay = SLOW_SECONDS
        version, count = conn.reader.read_exact(2)
        methods = conn.reader.read_exact(count)
        mode = emu.faults.get("proxy_auth") or "token"
        record = emu.proxy_log.add({"auth": mode, "methods": methods.hex(), "method": None,
                                    "jwt_length": None, "location_id": None, "target": None,
                                    "rep": None})
        if fault in ("method_ff", "wrong_version", "garbage"):
            answer = {"method_ff": b"\x05\xff", "wrong_version": b"\x04\x80",
                      "garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n"}[fault]
            conn.log(f"greeting -> fault {fault}")
            conn.send(answer)
            return
        method = self.choose_method(mode, version, methods)
        emu.proxy_log.update(record, method=f"{method:02x}")
        if method == 0xff:
            conn.log(f"greeting version {version} methods {methods.hex()}, proxy_auth {mode}: "
                     "no acceptable method -> 05 ff")
            conn.send(b"\x05\xff")
            return
        conn.send(bytes([5, method]))
        if method == 0x80:
            authenticated = self.authenticate(conn, fault, mode != "token", record)
            if authenticated is None:
                return
            location, zid = authenticated
        else:                               # trusted, 0x00: no location ID can come
            conn.log("method 0x00 (trusted): no authentication, the Cloud Connector without "
                     "a location ID")
            location, zid = "", None
        command, atyp, host, port = self.read_connect(conn)
        target = f"{show(host, 100)}:{port}"
        emu.proxy_log.update(record, target=target)
        rep_fault = emu.faults.get("proxy_rep") if chaos is None else chaos.get("proxy_rep")
        if rep_fault is not None:
            conn.log(f"CONNECT {target} -> REP {rep_fault} (fault proxy_rep)")
            emu.proxy_log.update(record, rep=rep_fault)
            emu.counters.bump(f"proxy_replies.{rep_fault:02x}")
            conn.send(socks_reply(rep_fault))
            return
        if fault == "truncated":
            conn.log(f"CONNECT {target} -> half a reply (fault truncated)")
            conn.send(socks_reply(0)[:5])
            return
        try:
            backend = self.open_backend(command, atyp, host, port, location, zid)
        except ProxyRefusal as e:
            conn.log(f"CONNECT {target} location={location!r} -> REP {e.rep:02x} ({e}; "
                     f"tenant {tenant_of_zid(zid)})")
            emu.proxy_log.update(record, rep=e.rep)
            emu.counters.bump(f"proxy_replies.{e.rep:02x}")
            conn.send(socks_reply(e.rep))
            return
        try:
            emu.proxy_log.update(record, rep=0)
            emu.counters.bump("proxy_replies.00")
            conn.send(socks_reply(0, backend.getsockname()[1]))
            emu.counters.bump("proxy_connects_ok")
            conn.log(f"CONNECT {target} location={location!r} -> REP 00, splicing")
            conn.sock.settimeout(None)
            splice(conn.sock, backend, conn.reader.take_buffered())
        finally:
            backend.close()

    @staticmethod
    def choose_method(mode, version, methods):
        """The method the proxy picks from the greeting, 0xff for none: 0x80 with a JWT
        (token), or in trusted mode 0x80 (then 0x00) or 0x00 alone; refuse_auth: none."""
        if version != 5:
            return 0xff
        prefer = {"token": (0x80,), "trusted_0x80": (0x80, 0x00), "trusted_0x00": (0x00,),
                  "refuse_auth": ()}[mode]
        return next((m for m in prefer if m in methods), 0xff)

    def authenticate(self, conn, fault, trusted, record):
        """Read the 0x80 auth request; (location ID, zid of the token) when valid, else
        None (after 01 01). Trusted: any JWT length, the JWT is not looked at, no zid."""
        try:
            location, zid = self.read_auth(conn, trusted, record)
            if fault == "auth_fail":
                raise InvalidToken("fault auth_fail")
        except InvalidToken as e:
            self.emu.counters.bump("proxy_auth_failed")
            conn.log(f"auth -> 01 01 ({e})")
            conn.send(b"\x01\x01")
            return None
        self.emu.counters.bump("proxy_auth_ok")
        conn.log(f"auth ok, location={location!r}, tenant={tenant_of_zid(zid)}")
        conn.send(b"\x01\x00")
        return location, zid

    def read_auth(self, conn, trusted, record):
        reader = conn.reader
        if reader.read_exact(1) != b"\x01":
            raise InvalidToken("auth sub-version is not 1")
        (length,) = struct.unpack(">I", reader.read_exact(4))
        self.emu.proxy_log.update(record, jwt_length=length)
        if (length == 0 and not trusted) or length > JWT_MAX:
            raise InvalidToken(f"absurd JWT length {length}")
        jwt = reader.read_exact(length)
        (location_length,) = reader.read_exact(1)
        encoded = reader.read_exact(location_length)
        try:
            location = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidToken("location ID is not base64 of UTF-8") from None
        self.emu.proxy_log.update(record, location_id=location)
        if trusted:                         # the proxy's own subaccount: the provider
            return location, None
        claims = self.emu.tokens.verify(jwt)
        if claims.get("client_id") not in (CONNECTIVITY_CLIENT_ID, CONNECTIVITY_X509_CLIENT_ID):
            raise InvalidToken(f"token of {claims.get('client_id')}, "
                               "not of the connectivity client")
        return location, claims.get("zid")

    @staticmethod
    def read_connect(conn):
        reader = conn.reader
        version, command, _, atyp = reader.read_exact(4)
        if version != 5:
            conn.send(socks_reply(1))
            raise SessionEnd(f"CONNECT request version {version}")
        if atyp == 1:
            host = socket.inet_ntoa(reader.read_exact(4))
        elif atyp == 3:
            (length,) = reader.read_exact(1)
            host = reader.read_exact(length).decode("utf-8", "replace")
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, reader.read_exact(16))
        else:                                   # cannot know the address length: give up
            conn.send(socks_reply(8))
            raise SessionEnd(f"unknown ATYP {atyp}")
        (port,) = struct.unpack(">H", reader.read_exact(2))
        return command, atyp, host, port

    def open_backend(self, command, atyp, host, port, location, zid):
        if command != 1:
            raise ProxyRefusal(7, f"command {command} is not CONNECT")
        if atyp not in (1, 3):
            raise ProxyRefusal(8, f"address type {atyp} not supported")
        if location not in TENANTS[tenant_of_zid(zid)]["locations"]:
            raise ProxyRefusal(3, "no Cloud Connector with that location ID in the tenant")
        service = VIRTUAL_HOSTS.get((host.lower(), port))
        if service is None:
            raise ProxyRefusal(2, "no mapping for that virtual host")
        backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        backend.settimeout(BACKEND_CONNECT_TIMEOUT)
        try:
            backend.bind((HOST, 0))
            local_port = backend.getsockname()[1]
            self.emu.origins.put(local_port, location, zid)
            try:
                backend.connect((HOST, self.emu.port_of(service)))
            except OSError as e:
                self.emu.origins.drop(local_port)
                raise ProxyRefusal(4, f"backend unreachable: {e}") from None
        except BaseException:
            backend.close()
            raise
        backend.settimeout(None)
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return backend


def splice(client, backend, pending):
    """Copy bytes both ways until both directions are closed (half-closes are passed
    on with shutdown(SHUT_WR)) or either side breaks."""
    peer = {client: backend, backend: client}
    if pending:
        backend.sendall(pending)
    with selectors.DefaultSelector() as selector:
        for sock in peer:
            selector.register(sock, selectors.EVENT_READ)
        open_readers = 2
        while open_readers:
            for key, _ in selector.select():
                source = key.fileobj
                try:
                    data = source.recv(65536)
                    if data:
                        peer[source].sendall(data)
                        continue
                except OSError:
                    return
                selector.unregister(source)
                open_readers -= 1
                try:
                    peer[source].shutdown(socket.SHUT_WR)
                except OSError:
                    pass


PROGRAM_PROXY_SOURCE = "127.0.0.2"   # btp-fastproxy binds its backend sockets to it


class ProgramProxy:
    """The proxy as a program of its own (--proxy-program: tests/emulator/btp-fastproxy,
    for the benchmarks): it gets the proxy's listening socket, reads what it must check
    from proxy.json (the token signing key, clients, tenants' locations, virtual hosts,
    the "proxy", "proxy_rep" and "proxy_auth" switches), rewritten whenever a fault
    switch changes, and reports through a pipe, one JSON line each, every handshake
    (counted here and kept for GET /proxy) and the origin of every backend connection
    (for the relay). Chaos does not reach it; "refuse" acts as "reset"."""

    def __init__(self, emu, program):
        self.emu = emu
        self.program = program
        self.path = os.path.join(emu.dir, "proxy.json")
        self.lock = threading.Lock()
        self.process = None
        self.thread = None

    def write_state(self):
        emu = self.emu
        faults = emu.faults.snapshot()
        state = {
            "key": emu.tokens.key.hex(),
            "clients": [CONNECTIVITY_CLIENT_ID, CONNECTIVITY_X509_CLIENT_ID],
            "tenants": {t["zid"]: list(t["locations"]) for t in TENANTS.values()},
            "default_locations": list(TENANTS[tenant_of_zid(None)]["locations"]),
            "hosts": [{"host": host, "port": port, "backend": emu.port_of(service)}
                      for (host, port), service in VIRTUAL_HOSTS.items()],
            "jwt_max": JWT_MAX, "handshake_timeout": HANDSHAKE_TIMEOUT,
            "backend_connect_timeout": BACKEND_CONNECT_TIMEOUT, "slow_seconds": SLOW_SECONDS,
            "fault": faults.get("proxy"), "proxy_rep": faults.get("proxy_rep"),
            "proxy_auth": faults.get("proxy_auth"),
        }
        with self.lock:
            write_atomically(self.path, to_json_bytes(state) + b"\n", 0o600)

    def start(self, listener):
        self.write_state()
        events_r, events_w = os.pipe()
        fd = listener.sock.fileno()
        self.process = subprocess.Popen(
            [self.program, "--listen-fd", str(fd), "--events-fd", str(events_w),
             "--state", self.path, "--rusage", os.path.join(self.emu.dir, "proxy.rusage")],
            pass_fds=(fd, events_w))
        os.close(events_w)
        write_atomically(os.path.join(self.emu.dir, "proxy.pid"), f"{self.process.pid}\n".encode())
        self.thread = threading.Thread(target=self._events, args=(events_r,),
                                       name="proxy-events", daemon=True)
        self.thread.start()

    def _events(self, events_r):
        emu = self.emu
        with os.fdopen(events_r, "rb") as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if "origin" in event:
                    emu.origins.put(event["origin"], event.get("location"), event.get("zid"))
                elif "drop" in event:
                    emu.origins.drop(event["drop"])
                else:
                    self.count(event)

    def count(self, event):
        emu = self.emu
        emu.counters.bump("proxy_connections")
        result = event.pop("result", None)
        why = event.pop("why", None)
        if result == "auth_ok":
            emu.counters.bump("proxy_auth_ok")
        elif result == "auth_failed":
            emu.counters.bump("proxy_auth_failed")
        rep = event.get("rep")
        if isinstance(rep, int):
            emu.counters.bump(f"proxy_replies.{rep:02x}")
        if rep == 0:
            emu.counters.bump("proxy_connects_ok")
        emu.log("proxy", f"btp-fastproxy: methods {event.get('methods')} -> "
                f"{event.get('method')}, {result or 'no auth'}{f' ({why})' if why else ''}, "
                f"CONNECT {event.get('target')} location={event.get('location_id')!r} "
                f"-> REP {event.get('rep')}")
        emu.proxy_log.add(event)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --------------------------------------------------------------------------------------
# The on-premise relay (SMTP server)
# --------------------------------------------------------------------------------------

class ReplyInstead(Exception):
    """A command cannot go on; the exception's text is the SMTP reply to send."""


class Transaction:
    def __init__(self, mail_from, params, smtputf8):
        self.mail_from = mail_from
        self.params = params
        self.smtputf8 = smtputf8
        self.rcpt_to = []


PATH_ARG = re.compile(r"^(FROM|TO):\s*<([^<>]*)>(.*)$", re.IGNORECASE)


def parse_path(arg, keyword):
    """"FROM:<addr> params" -> (addr, params); None when the syntax is wrong."""
    match = PATH_ARG.match(arg)
    if not match or match.group(1).upper() != keyword:
        return None
    params = match.group(3)
    if params and not params[0].isspace():
        return None
    return match.group(2), params.strip()


def format_reply(text):
    """'NNN a\\nNNN b' or 'NNN a\\nb' -> 'NNN-a\\r\\nNNN b\\r\\n' (multi-line SMTP reply)."""
    lines = text.split("\n")
    code = lines[0][:3]
    out = []
    for i, line in enumerate(lines):
        body = line[4:] if REPLY_LINE.match(line) else line
        separator = "-" if i < len(lines) - 1 else " "
        out.append(f"{code}{separator}{body}".rstrip() + "\r\n")
    return "".join(out).encode("utf-8")


def is_ascii(text):
    return all(ord(c) < 128 for c in text)


ENHANCED_CODE = re.compile(r"^([2-5][0-9][0-9][ -]?)[245]\.[0-9]{1,3}\.[0-9]{1,3}(?: |$)",
                           re.MULTILINE)


def strip_enhanced_codes(text):
    """'250 2.1.0 Ok' -> '250 Ok', on every line (option enhancedstatuscodes=false)."""
    return ENHANCED_CODE.sub(r"\1", text)


RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def subject_text(cert):
    """The subject of a getpeercert() dict as 'CN=..,O=..'."""
    return ",".join(f"{RDN_NAMES.get(key, key)}={value}"
                    for rdn in cert.get("subject", ()) for key, value in rdn)


class LineMeter:
    """Passes body data on and remembers the longest line (bytes without CR LF)."""

    def __init__(self, write):
        self.write_on = write
        self.current = 0            # length of the unfinished line so far, CR included
        self.last_cr = False
        self.longest = 0

    def write(self, data):
        self.write_on(data)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            length = self.current + nl - start
            if nl > start:
                cr = data[nl - 1] == 0x0D
            else:
                cr = self.last_cr
            self.longest = max(self.longest, length - (1 if cr and length else 0))
            self.current, self.last_cr = 0, False
            start = nl + 1
        if start < len(data):
            self.current += len(data) - start
            self.last_cr = data[-1] == 0x0D
            self.longest = max(self.longest, self.current - (1 if self.last_cr else 0))


class SmtpSession:
    """One SMTP connection to the relay. Every reply goes through respond(), where a fault
    switch for the stage may replace it."""

    # commands whose replies may wait for the rest of a pipelined group (RFC 2920, 3.1:
    # the ones that do not end a group)
    GROUPED = ("MAIL", "RCPT", "RSET", "NOOP")
    COMMANDS = {   # verb: (fault stage, method)
        "EHLO": ("ehlo", "do_ehlo"), "HELO": ("helo", "do_helo"),
        "STARTTLS": ("starttls", "do_starttls"), "AUTH": ("auth", "do_auth"),
        "MAIL": ("mail", "do_mail"), "RCPT": ("rcpt", "do_rcpt"),
        "DATA": ("data", "do_data"), "RSET": ("rset", "do_rset"),
        "NOOP": (None, "do_noop"), "QUIT": ("quit", "do_quit"),
    }

    def __init__(self, emu, conn, implicit_tls):
        self.emu = emu
        self.conn = conn
        self.implicit_tls = implicit_tls
        self.port_name = "relay_smtps" if implicit_tls else "relay"
        self.via_proxy, self.location_id, self.tenant = emu.origins.take(
            conn.peer_port, wait=2.0 if conn.peer[0] == PROGRAM_PROXY_SOURCE else 0.0)
        self.tls_version = None
        self.tls_cipher = None
        self.client_cert = None
        self.helo = None
        self.esmtp = False
        self.auth_user = None
        self.auth_sent = []               # base64 lines of the AUTH in progress (auth_echo)
        self.auth_mech = None
        self.txn = None
        self.no_service = False
        self.starttls_pending = False
        self.data_pending = False
        self.current = "greeting"          # what the log line of the next reply describes
        self.verb = None                   # the command being answered
        self.started = time.monotonic()
        self.last_fill = None              # the read that completed the previous command
        self.record = None                 # this connection in GET /connections
        self.chaos_kind, chaos = emu.chaos.draw("relay")    # POST /chaos: this connection's
        self.chaos = chaos["relay"] if chaos else {}         # fault, {stage: action}
        self.fault_after_dot = None        # the eod fault that answered a stored message
        self.messages_stored = 0           # in this session, for max_messages_per_session

    # --- the session loop -------------------------------------------------------------

    def run(self):
        self.emu.counters.bump("relay_connections")
        origin = (f"via proxy, location={self.location_id!r}, tenant={self.tenant}"
                  if self.via_proxy else "direct")
        self.conn.log(f"connect from port {self.conn.peer_port} ({origin})"
                      + (f", chaos {self.chaos_kind}" if self.chaos_kind else ""))
        self.record = self.emu.relay_log.add({
            "name": self.conn.name, "port": self.port_name, "via_proxy": self.via_proxy,
            "location_id": self.location_id, "tenant": self.tenant, "tls": False,
            "tls_version": None, "tls_cipher": None, "sni": None, "client_cert": None,
            "auth_user": None, "auth_mech": None, "messages": [], "reads": 0,
            "closed": False, "end": None, "chaos": self.chaos_kind, "commands": []})
        end = "internal error"
        try:
            if self.implicit_tls:
                self.start_tls()
            if not self.respond("greeting", self.greeting):
                self.no_service = True        # RFC 5321 3.1: wait for QUIT
            while True:
                line = self.read_command()
                if line is not None:
                    self.dispatch(line)
                if self.starttls_pending:
                    self.start_tls()
                if self.data_pending:
                    self.receive_body()
        except IdleTimeout:
            end = "idle timeout"
            self.conn.log("idle timeout")
            self.conn.send(self.own(
                "421 4.4.2 mail.corp.internal Error: timeout exceeded").encode() + b"\r\n")
        except SessionEnd as e:
            end = str(e)
            raise
        finally:
            self.emu.relay_log.update(self.record, closed=True, end=end,
                                      reads=self.conn.reader.fills)

    def note_command(self, text):
        """Record a command (or a SASL response, or the message data) for GET
        /connections: whether it came in the same read from the socket as the previous
        one, which proves that the client pipelined it."""
        fill = self.conn.reader.fills
        same_read = self.last_fill is not None and fill == self.last_fill
        self.last_fill = fill
        self.emu.counters.bump("relay_commands")
        self.emu.relay_log.append_to(self.record, "commands", {
            "command": text, "same_read": same_read, "reply": None, "tls": self.conn.tls,
            "t": round(time.monotonic() - self.started, 4)}, 10000)

    def read_command(self):
        reader = self.conn.reader
        line = reader.readline(SMTP_LINE_MAX)
        if not line:
            raise SessionEnd("client closed")
        if not line.endswith(b"\n"):
            if len(line) < SMTP_LINE_MAX:
                raise SessionEnd("client closed in the middle of a line")
            while not line.endswith(b"\n"):       # skip the rest of the long line
                line = reader.readline(SMTP_LINE_MAX)
                if not line:
                    raise SessionEnd("client closed")
            self.current = "(line too long)"
            self.note_command("(line too long)")
            self.reply(self.own("500 5.5.2 Error: line too long"))
            return None
        return line.rstrip(b"\r\n").decode("utf-8", "replace")

    def dispatch(self, line):
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        # AUTH's argument is a credential: log the mechanism only.
        self.current = f"AUTH {arg.split(' ')[0]}" if verb == "AUTH" else show(line)
        self.verb = verb
        self.note_command(f"AUTH {arg.split(' ')[0]}".rstrip() if verb == "AUTH" else line[:1000])
        if self.no_service and verb != "QUIT":
            self.reply(self.own("503 5.5.1 Error: no SMTP service here"))
            return
        if verb not in self.COMMANDS:
            self.reply(self.own("500 5.5.2 Error: command not recognized" if verb else
                                "500 5.5.2 Error: bad syntax"))
            return
        stage, method = self.COMMANDS[verb]
        if verb == "AUTH":      # the initial response, for auth_echo
            self.auth_sent = arg.split(" ")[1:2]
        override = self.rcpt_override(arg) if verb == "RCPT" else None
        self.respond(stage, lambda: getattr(self, method)(arg), override)
        if verb == "QUIT":
            raise SessionEnd("QUIT")

    def reply(self, text):
        first_line = text.split("\n")[0]
        self.conn.log(f"{self.current} -> {show(first_line, 120)}")
        if self.record is not None and first_line[:3].isdigit():
            self.emu.relay_log.set_last(self.record, "commands", "reply", int(first_line[:3]))
        if self.verb in self.GROUPED and self.conn.reader.buffered():
            self.conn.hold(format_reply(text))      # more of the group waits: answer it all at once
        else:
            self.conn.send(format_reply(text))

    def own(self, text):
        """A reply of the emulator's own (not a fault's): without D.D.D codes while the
        option enhancedstatuscodes is false."""
        if self.emu.relay_options.snapshot()["enhancedstatuscodes"]:
            return text
        return strip_enhanced_codes(text)

    def respond(self, stage, produce, override=None):
        """Answer the current command. produce() does what the command does and returns
        the normal reply. A fault for the stage may answer instead; produce() then runs
        only when the fault's reply is positive, i.e. when the client will believe that
        the command worked. Returns whether the reply sent was positive."""
        chaos = self.chaos.get(stage) if stage else None
        action = override if override is not None else chaos if chaos is not None else (
            self.emu.faults.relay_action(stage) if stage else None)
        if stage == "eod":      # a stored message records the fault that answered its dot
            self.fault_after_dot = None if action is None else f"relay.eod={action}"
        raw = (self.emu.faults.get("relay_raw") or {}).get(stage) if stage else None
        if action is None and raw is not None:
            data = generated(raw)
            self.conn.log(f"{self.current}: fault relay_raw.{stage} ({len(data)} bytes)")
            self.conn.send(data)
            return False
        if action is None:
            text = self.own(produce())
            self.reply(text)
            return text[0] in "23"
        self.conn.log(f"{self.current}: fault {stage} = {show(action, 80)}")
        self.conn.flush()
        if action == "close":
            raise SessionEnd(f"fault {stage}: close")
        if action == "reset":
            self.conn.reset()
        if action == "hang":
            self.conn.hang()
        if action == "lost":                 # it took effect, but the reply never comes
            produce()
            raise SessionEnd(f"fault {stage}: lost")
        if action == "garbage":
            self.conn.send(b"hello there\r\n")
            return False
        if action == "drip":
            text = self.own(produce())
            self.conn.drip(format_reply(text))
            return text[0] in "23"
        if action == "slow_lines":      # every line in time, the whole reply not
            text = self.own(produce())
            lines = format_reply("\n".join([text[:3] + " please wait"] * 3 + [text]))
            for i, line in enumerate(lines.splitlines(keepends=True)):
                if i:
                    self.conn.pause(SLOW_SECONDS)
                self.conn.send(line)
            return text[0] in "23"
        if action == "late":
            self.conn.pause(LATE_SECONDS)
            text = self.own(produce())
            self.reply(text)
            return text[0] in "23"
        positive = action[0] in "23"
        if positive:
            produce()
        if stage == "auth" and action[0] == "5" and self.emu.relay_options.snapshot()["auth_echo"]:
            action = self.auth_echo(action)      # a fault's 535 quotes the AUTH line too
        self.reply(action)
        if action.startswith("421"):
            raise SessionEnd("421 sent")
        return positive

    def rcpt_override(self, arg):
        parsed = parse_path(arg, "TO")
        return self.emu.faults.rcpt_action(parsed[0]) if parsed else None

    def start_tls(self):
        self.starttls_pending = False
        options = self.emu.relay_options.snapshot()
        cert = options["cert"]
        self.conn.start_tls(self.emu.relay_tls_context(
            cert, options["require_client_cert"], options["tls_max_version"]))
        self.tls_version = self.conn.sock.version()
        self.tls_cipher = (self.conn.sock.cipher() or (None,))[0]
        self.client_cert = subject_text(self.conn.peer_cert) if self.conn.peer_cert else None
        self.emu.counters.bump("relay_tls")
        self.emu.relay_log.update(self.record, tls=True, tls_version=self.tls_version,
                                  tls_cipher=self.tls_cipher, sni=self.conn.sni,
                                  client_cert=self.client_cert)
        self.conn.log(f"TLS established: {self.tls_version}, certificate {cert}, cipher "
                      f"{self.tls_cipher}, SNI {show(self.conn.sni or '-', 80)}, client "
                      f"certificate {show(self.client_cert or '-', 80)}")
        self.helo, self.esmtp, self.auth_user, self.auth_mech, self.txn = (
            None, False, None, None, None)

    # --- commands: each returns its normal reply ---------------------------------------

    @staticmethod
    def greeting():
        return f"220 {RELAY_NAME} ESMTP btprelay emulator"

    def do_ehlo(self, arg):
        options = self.emu.relay_options.snapshot()
        if not options["ehlo"]:
            return "502 5.5.1 Error: command not implemented"
        if not arg:
            return "501 5.5.4 Syntax: EHLO hostname"
        self.helo, self.esmtp, self.txn = arg, True, None
        lines = [RELAY_NAME]
        if options["pipelining"]:
            lines.append("PIPELINING")
        lines.append(f"SIZE {options['size_limit']}")
        if options["eightbitmime"]:
            lines.append("8BITMIME")
        if options["smtputf8"]:
            lines.append("SMTPUTF8")
        if options["enhancedstatuscodes"]:
            lines.append("ENHANCEDSTATUSCODES")
        if options["starttls"] and not self.conn.tls:
            lines.append("STARTTLS")
        if self.auth_offered(options):
            lines.append("AUTH " + " ".join(options["auth_mechs"]))
        return "\n".join("250 " + line for line in lines)

    def auth_offered(self, options):
        return bool(options["auth_mechs"]) and (
            self.conn.tls or not options["require_tls_for_auth"])

    def do_helo(self, arg):
        if not arg:
            return "501 5.5.4 Syntax: HELO hostname"
        self.helo, self.esmtp, self.txn = arg, False, None
        return f"250 {RELAY_NAME}"

    def do_starttls(self, arg):
        if self.conn.tls:
            return "554 5.5.1 Error: TLS already active"
        if not self.emu.relay_options.snapshot()["starttls"]:
            return "502 5.5.1 Error: command not implemented"
        if arg:
            return "501 5.5.4 Syntax: STARTTLS"
        self.starttls_pending = True
        return "220 2.0.0 Ready to start TLS"

    def do_auth(self, arg):
        options = self.emu.relay_options.snapshot()
        if not self.helo:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if self.auth_user is not None:
            return "503 5.5.1 Error: already authenticated"
        if self.txn:
            return "503 5.5.1 Error: MAIL transaction in progress"
        if not options["auth_mechs"]:
            return "503 5.5.1 Error: authentication not enabled"
        if not self.auth_offered(options):
            return "538 5.7.11 Encryption required for requested authentication mechanism"
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        self.auth_sent = [initial.strip()] if initial.strip() else []
        if mechanism not in options["auth_mechs"]:
            return "504 5.5.4 Unsupported authentication mechanism"
        try:
            if mechanism == "XOAUTH2":
                return self.xoauth2(initial.strip(), options)
            if mechanism == "PLAIN":
                user, password = self.sasl_plain(initial.strip())
            else:
                user, password = self.sasl_login(initial.strip())
        except ReplyInstead as e:
            return str(e)
        accounts = {RELAY_USER: self.emu.relay_password, **options["users"]}
        expected = accounts.get(user)
        if expected is None or not hmac.compare_digest(expected.encode("utf-8"),
                                                       password.encode("utf-8")):
            self.conn.log(f"authentication failed for user {show(user, 60)}")
            self.emu.counters.bump("relay_auth_failed")
            return self.auth_refused("authentication failure", options)
        return self.authenticated(user, mechanism)

    def authenticated(self, user, mechanism):
        self.auth_user, self.auth_mech = user, mechanism
        self.emu.counters.bump("relay_auth_ok")
        self.emu.relay_log.update(self.record, auth_user=user, auth_mech=mechanism)
        self.conn.log(f"authenticated as {show(user, 60)} with {mechanism}")
        return "235 2.7.0 Authentication successful"

    def xoauth2(self, initial, options):
        """AUTH XOAUTH2: base64 of "user=U^Aauth=Bearer T^A^A". T must be an access token
        from an authTokens item of this run, unexpired, issued for mail.user U."""
        raw = self.sasl_decode(initial or self.sasl_response(""))
        user, why = self.emu.xoauth2_check(raw)
        if user is None:
            return "501 5.5.2 Error: malformed XOAUTH2 response"
        if why:
            self.conn.log(f"XOAUTH2 failed for user {show(user, 60)}: token {why}")
            self.emu.counters.bump("relay_auth_failed")
            if options["xoauth2_error_challenge"]:
                error = to_json_bytes({"status": "401", "schemes": "bearer",
                                       "scope": "https://mail.google.com/"})
                self.sasl_response(base64.b64encode(error).decode("ascii"))
            return self.auth_refused("invalid token", options)
        return self.authenticated(user, "XOAUTH2")

    def auth_refused(self, why, options):
        """The 535 of a failed AUTH. With the option auth_echo, a careless relay's: it
        quotes every base64 line the client sent (each cut at 300 characters)."""
        text = f"535 5.7.8 Error: authentication failed: {why}"
        return self.auth_echo(text) if options["auth_echo"] else text

    def auth_echo(self, text):
        """text + " (client sent: ...)": the base64 lines of this AUTH, each cut at 300."""
        sent = [line if len(line) <= 300 else line[:300] + "..." for line in self.auth_sent if line]
        return text + " (client sent: " + " ".join(sent) + ")"

    def sasl_response(self, challenge):
        """Send a 334 challenge, read the client's answer (never logged)."""
        if self.record is not None:
            self.emu.relay_log.set_last(self.record, "commands", "reply", 334)
        self.conn.send(f"334 {challenge}\r\n".encode("ascii"))
        line = self.conn.reader.readline(SMTP_LINE_MAX)
        if not line:
            raise SessionEnd("client closed during AUTH")
        self.note_command("(sasl)")
        answer = line.rstrip(b"\r\n").decode("ascii", "replace").strip()
        self.auth_sent.append(answer)
        return answer

    @staticmethod
    def sasl_decode(text):
        if text == "*":
            raise ReplyInstead("501 5.7.0 Authentication aborted")
        if text == "=":
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ReplyInstead("501 5.5.2 Error: cannot decode response") from None

    def sasl_plain(self, initial):
        raw = self.sasl_decode(initial or self.sasl_response(""))
        parts = raw.split(b"\0")
        if len(parts) != 3:
            raise ReplyInstead("501 5.5.2 Error: malformed PLAIN response")
        try:
            return parts[1].decode("utf-8"), parts[2].decode("utf-8")
        except UnicodeDecodeError:
            raise ReplyInstead("501 5.5.2 Error: malformed PLAIN response") from None

    def sasl_login(self, initial):
        user = self.sasl_decode(initial or self.sasl_response("VXNlcm5hbWU6"))
        password = self.sasl_decode(self.sasl_response("UGFzc3dvcmQ6"))
        try:
            return user.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            raise ReplyInstead("501 5.5.2 Error: malformed LOGIN response") from None

    def do_mail(self, arg):
        if not self.helo:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if self.txn:
            return "503 5.5.1 Error: nested MAIL command"
        parsed = parse_path(arg, "FROM")
        if parsed is None:
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        address, params = parsed
        try:
            smtputf8 = self.check_mail_params(params)
        except ReplyInstead as e:
            return str(e)
        if not is_ascii(address) and not smtputf8:
            return "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
        self.txn = Transaction(address, params, smtputf8)
        return "250 2.1.0 Ok"

    def check_mail_params(self, params):
        """Accept only parameters of extensions this session advertised. True when the
        client declared SMTPUTF8."""
        options = self.emu.relay_options.snapshot()
        smtputf8 = False
        for param in params.split():
            key, _, value = param.partition("=")
            key = key.upper()
            if not self.esmtp:
                raise ReplyInstead(f"555 5.5.4 Unsupported option: {param}")
            if key == "SIZE":
                if not value.isdigit():
                    raise ReplyInstead("501 5.5.4 Bad message size syntax")
                if options["size_limit"] and int(value) > options["size_limit"]:
                    raise ReplyInstead("552 5.3.4 Message size exceeds fixed limit")
            elif key == "BODY" and options["eightbitmime"]:
                if value.upper() not in ("7BIT", "8BITMIME"):
                    raise ReplyInstead(f"501 5.5.4 Bad BODY parameter: {param}")
            elif key == "SMTPUTF8" and options["smtputf8"] and not value:
                smtputf8 = True
            elif key == "AUTH" and self.auth_offered(options):
                pass
            else:
                raise ReplyInstead(f"555 5.5.4 Unsupported option: {param}")
        return smtputf8

    def do_rcpt(self, arg):
        if not self.txn:
            return "503 5.5.1 Error: need MAIL command"
        parsed = parse_path(arg, "TO")
        if parsed is None:
            return "501 5.5.4 Syntax: RCPT TO:<address>"
        address = parsed[0]
        if not address:
            return "501 5.1.3 Bad recipient address syntax"
        if not is_ascii(address) and not self.txn.smtputf8:
            return "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
        self.txn.rcpt_to.append(address)
        return "250 2.1.5 Ok"

    def do_data(self, arg):
        if arg:
            return "501 5.5.4 Syntax: DATA"
        if not self.txn:
            return "503 5.5.1 Error: need RCPT command"
        if not self.txn.rcpt_to:
            return "554 5.5.1 Error: no valid recipients"
        self.data_pending = True
        return "354 End data with <CR><LF>.<CR><LF>"

    def do_rset(self, arg):
        self.txn = None
        return "250 2.0.0 Ok"

    @staticmethod
    def do_noop(arg):
        return "250 2.0.0 Ok"

    @staticmethod
    def do_quit(arg):
        return "221 2.0.0 Bye"

    # --- the message --------------------------------------------------------------------

    def receive_body(self):
        self.data_pending = False
        options = self.emu.relay_options.snapshot()
        draft = self.emu.messages.draft(options["size_limit"])
        reader = self.conn.reader
        # The body's first bytes already read with DATA: sent before the 354 (not allowed).
        early = reader.buffered() > 0
        meter = LineMeter(draft.write) if options["max_line_length"] else None
        try:
            reader.read_dot_terminated(meter.write if meter else draft.write)
            draft.finish()
            self.current = f"end of data ({draft.size} bytes)"
            self.emu.relay_log.append_to(self.record, "commands", {
                "command": "(message data)", "same_read": early, "reply": None,
                "tls": self.conn.tls, "t": round(time.monotonic() - self.started, 4),
                "bytes": draft.size}, 10000)
            self.last_fill = reader.fills           # the read with the final dot
            too_long = meter is not None and meter.longest > options["max_line_length"]
            if self.respond("eod", lambda: self.store(draft, too_long)):
                self.messages_stored += 1
            limit = options["max_messages_per_session"]
            if limit and self.messages_stored >= limit:
                raise SessionEnd(f"max_messages_per_session {limit} reached: closing")
        finally:
            draft.discard()
            self.txn = None

    def store(self, draft, too_long=False):
        if draft.too_big:
            return "552 5.3.4 Error: message file too big"
        if too_long:
            return "500 5.5.2 Error: message line too long"
        envelope = {
            "helo": self.helo, "mail_from": self.txn.mail_from, "mail_params": self.txn.params,
            "rcpt_to": list(self.txn.rcpt_to), "tls": self.conn.tls,
            "tls_version": self.tls_version, "auth_user": self.auth_user,
            "via_proxy": self.via_proxy, "location_id": self.location_id,
            "size": draft.size, "port": self.port_name,
            "tls_cipher": self.tls_cipher, "sni": self.conn.sni,
            "auth_mech": self.auth_mech, "client_cert": self.client_cert,
            "tenant": self.tenant, "fault_after_dot": self.fault_after_dot,
            "chaos": self.chaos_kind,
        }
        number = self.emu.messages.commit(draft, envelope)
        self.emu.counters.bump("relay_messages")
        self.emu.relay_log.append_to(self.record, "messages", number, 10000)
        return f"250 2.0.0 Ok: queued as {number}"


# --------------------------------------------------------------------------------------
# The emulator: wiring, files, lifecycle
# --------------------------------------------------------------------------------------

class Emulator:
    def __init__(self, directory, log, proxy_program=None):
        self.dir = directory
        self.log = log
        self.stopping = threading.Event()
        self.secrets = SecretBook(os.path.join(directory, "secrets.txt"))
        self.clients = {
            "connectivity": Client("connectivity", CONNECTIVITY_CLIENT_ID, self.secrets.new()),
            "destination": Client("destination", DESTINATION_CLIENT_ID, self.secrets.new()),
        }
        self.relay_password = self.secrets.new()
        self.mail_oauth_secret = self.secrets.new()
        cert_dir = os.path.join(directory, "certs")
        client_der = ssl.PEM_cert_to_DER_cert(read_text(os.path.join(cert_dir, "client.pem")))
        self.clients["connectivity_x509"] = Client("connectivity", CONNECTIVITY_X509_CLIENT_ID,
                                                   None, client_der)
        self.clients["destination_x509"] = Client("destination", DESTINATION_X509_CLIENT_ID,
                                                  None, client_der)
        self.tokens = TokenIssuer(self)
        self.counters = Counters()
        self.faults = Faults(self.faults_changed)
        self.chaos = Chaos()
        self.relay_options = RelayOptions(self.secrets)
        self.destinations = Destinations()
        self.messages = MessageStore(os.path.join(directory, "messages"))
        self.mailstore = mailstore.MailStore()
        self.origins = ProxyOrigins()
        self.finds = collections.deque(maxlen=1000)
        self.finds_lock = threading.Lock()
        self.token_log = RecentList(1000)
        self.relay_log = RecentList(200)
        self.proxy_log = RecentList(200)
        self.connections = Connections()
        self.acceptor = Acceptor(self)
        self.cert_dir = cert_dir
        self.tls_lock = threading.Lock()
        self.tls_contexts = {}
        self.tls_contexts["server"] = self.tls_context("server")
        self.tls_contexts["mtls"] = self.tls_context("server", client_ca=True)
        for name in RELAY_CERTS:
            self.relay_tls_context(name, False, "")
        self.listeners = {}
        self.unreachable = None          # bound, never listening: connects are refused
        self.program_proxy = ProgramProxy(self, proxy_program) if proxy_program else None

    def tls_context(self, cert, client_ca=False, max_version=""):
        """A server context with certs/CERT.pem. client_ca: require a client certificate
        from the test CA. Records the SNI name the client sends (Conn.sni)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(self.cert_dir, f"{cert}.pem"),
                                os.path.join(self.cert_dir, f"{cert}.key"))
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(os.path.join(self.cert_dir, "ca.pem"))
        version = TLS_VERSIONS[max_version]
        if version is not None:
            if version < ssl.TLSVersion.TLSv1_2:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
                context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = version

        def remember_sni(sock, server_name, _context):
            try:
                sock.emu_sni = server_name
            except AttributeError:
                pass
        context.sni_callback = remember_sni
        return context

    def xoauth2_check(self, raw):
        """An XOAUTH2 response, base64-decoded: "user=U^Aauth=Bearer T^A^A" (as Google and
        Microsoft document it), T an access token from an authTokens item of this run,
        unexpired, issued for mail.user U. (U, None) when good, (U, why) when the token is
        not, (None, "malformed") when the response is not one."""
        try:
            fields = raw.decode("utf-8").split("\x01")
        except UnicodeDecodeError:
            fields = []
        if len(fields) < 3 or fields[-1] or fields[-2]:
            return None, "malformed"
        values = dict(field.partition("=")[::2] for field in fields[:-2])
        user = values.get("user", "")
        scheme, _, token = values.get("auth", "").partition(" ")
        if not user or scheme.lower() != "bearer" or not token.strip():
            return None, "malformed"
        try:
            claims = self.tokens.verify(token.strip())
            if MAIL_TOKEN_SCOPE not in (claims.get("scope") or ()):
                raise InvalidToken("not a mail access token")
            if claims.get("user_name") != user:
                raise InvalidToken("issued for another user")
        except InvalidToken as e:
            return user, str(e)
        return user, None

    def relay_tls_context(self, cert, client_cert, max_version):
        """The relay's context for the options cert, require_client_cert, tls_max_version."""
        key = (cert, client_cert, max_version)
        with self.tls_lock:
            if key not in self.tls_contexts:
                self.tls_contexts[key] = self.tls_context(cert, client_cert, max_version)
            return self.tls_contexts[key]

    def port_of(self, service):
        if service == "unreachable":
            return self.unreachable.getsockname()[1]
        return self.listeners[service].port

    def start(self):
        relay = SmtpServe(self)
        services = {
            "token": (TokenService(self, self.tls_contexts["server"]).serve, HTTP_IDLE_TIMEOUT),
            "destination": (DestinationService(self, self.tls_contexts["server"]).serve,
                            HTTP_IDLE_TIMEOUT),
            "proxy": (ConnectivityProxy(self).serve, HANDSHAKE_TIMEOUT),
            "relay": (relay.plain, SMTP_IDLE_TIMEOUT),
            "relay_smtps": (relay.implicit_tls, SMTP_IDLE_TIMEOUT),
            "control": (ControlService(self).serve, HTTP_IDLE_TIMEOUT),
            "token_mtls": (TokenService(self, self.tls_contexts["mtls"], mtls=True).serve,
                           HTTP_IDLE_TIMEOUT),
            "imap": (lambda c: mailstore.ImapSession(self, c, False).run(), SMTP_IDLE_TIMEOUT),
            "imaps": (lambda c: mailstore.ImapSession(self, c, True).run(), SMTP_IDLE_TIMEOUT),
            "pop3": (lambda c: mailstore.Pop3Session(self, c, False).run(), SMTP_IDLE_TIMEOUT),
            "pop3s": (lambda c: mailstore.Pop3Session(self, c, True).run(), SMTP_IDLE_TIMEOUT),
        }
        for name in SERVICES:
            serve, timeout = services[name]
            self.listeners[name] = Listener(self, name, serve, timeout)
            if name == "proxy" and self.program_proxy:
                self.listeners[name].open()     # its connections go to the program
            else:
                self.acceptor.listen(self.listeners[name])
        self.unreachable = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.unreachable.bind((HOST, 0))
        if self.program_proxy:
            self.program_proxy.start(self.listeners["proxy"])
        self.tokens.issuer = f"https://{HOST}:{self.port_of('token')}/oauth/token"
        self.destinations.set_defaults(self.relay_password, self.port_of("relay"),
                                       f"https://{HOST}:{self.port_of('token')}",
                                       self.mail_oauth_secret)
        self.acceptor.start()
        self.write_files()
        self.log("emulator", "listening: " + " ".join(
            f"{name}={self.port_of(name)}" for name in SERVICES))

    def write_files(self):
        ports = {name: self.port_of(name) for name in SERVICES}
        token_url = f"https://{HOST}:{ports['token']}"
        conn, dest = self.clients["connectivity"], self.clients["destination"]
        proxy_port = str(ports["proxy"])
        vcap = {
            "destination": [{
                "name": "dest-lite", "label": "destination",
                "tags": ["destination", "conn", "destination"], "plan": "lite",
                "credentials": {
                    "clientid": dest.id, "clientsecret": dest.secret, "url": token_url,
                    "uri": f"https://{HOST}:{ports['destination']}",
                    "identityzone": "provider", "tenantid": PROVIDER_TENANT}}],
            "connectivity": [{
                "name": "conn-lite", "label": "connectivity", "plan": "lite",
                "credentials": {
                    "clientid": conn.id, "clientsecret": conn.secret,
                    "token_service_url": token_url, "url": token_url,
                    "onpremise_proxy_host": HOST, "onpremise_socks5_proxy_port": proxy_port,
                    "onpremise_proxy_port": proxy_port,
                    "onpremise_proxy_http_port": proxy_port}}],
        }
        write_atomically(os.path.join(self.dir, "vcap.json"),
                         json.dumps(vcap, indent=2).encode("utf-8") + b"\n", 0o600)
        # The same bindings with token URLs whose first label is the provider's subdomain,
        # for clients that select a subscriber by replacing it.
        by_subdomain = copy.deepcopy(vcap)
        provider_url = f"https://{PROVIDER_SUBDOMAIN}.localhost:{ports['token']}"
        by_subdomain["destination"][0]["credentials"]["url"] = provider_url
        by_subdomain["connectivity"][0]["credentials"].update(
            token_service_url=provider_url, url=provider_url)
        write_atomically(os.path.join(self.dir, "vcap-subdomain.json"),
                         json.dumps(by_subdomain, indent=2).encode("utf-8") + b"\n", 0o600)
        # X.509 bindings: PEM with a literal backslash-n in place of each newline (the
        # form some bindings have; clients must turn it back into newlines).
        certificate = read_text(os.path.join(self.cert_dir, "client.pem")).replace("\n", "\\n")
        key = read_text(os.path.join(self.cert_dir, "client.key")).replace("\n", "\\n")
        cert_url = f"https://{HOST}:{ports['token_mtls']}"
        vcap_x509 = {
            "destination": [{
                "name": "dest-x509", "label": "destination",
                "tags": ["destination", "conn", "destination"], "plan": "lite",
                "credentials": {
                    "clientid": DESTINATION_X509_CLIENT_ID, "credential-type": "x509",
                    "certificate": certificate, "key": key, "certurl": cert_url,
                    "url": token_url, "uri": f"https://{HOST}:{ports['destination']}",
                    "identityzone": "provider", "tenantid": PROVIDER_TENANT}}],
            "connectivity": [{
                "name": "conn-x509", "label": "connectivity", "plan": "lite",
                "credentials": {
                    "clientid": CONNECTIVITY_X509_CLIENT_ID, "credential-type": "X509_GENERATED",
                    "certificate": certificate, "key": key, "certurl": cert_url,
                    "token_service_url": token_url, "url": token_url,
                    "onpremise_proxy_host": HOST, "onpremise_socks5_proxy_port": proxy_port,
                    "onpremise_proxy_port": proxy_port,
                    "onpremise_proxy_http_port": proxy_port}}],
        }
        write_atomically(os.path.join(self.dir, "vcap-x509.json"),
                         json.dumps(vcap_x509, indent=2).encode("utf-8") + b"\n", 0o600)
        write_atomically(os.path.join(self.dir, "emulator.pid"), f"{os.getpid()}\n".encode())
        # Last: tests wait for this file, so everything else must already be in place.
        write_atomically(os.path.join(self.dir, "ports.json"), to_json_bytes(ports) + b"\n")

    def faults_changed(self):
        self.sync_refusals()
        if self.program_proxy and self.program_proxy.process:
            self.program_proxy.write_state()

    def sync_refusals(self):
        """Close the listening socket of every service whose fault is "refuse", and reopen
        (on the same port) every other one. Runs on the acceptor thread."""
        def job():
            for name in ("token", "destination", "proxy", "token_mtls"):
                if name == "proxy" and self.program_proxy:
                    continue
                listener = self.listeners[name]
                refuse = self.faults.get(name) == "refuse"
                if refuse and listener.sock is not None:
                    self.acceptor.unlisten(listener)
                    self.log(name, "listening socket closed (fault refuse)")
                elif not refuse and listener.sock is None:
                    try:
                        self.acceptor.listen(listener)
                    except OSError as e:      # someone took the port meanwhile
                        listener.close()
                        self.log(name, f"cannot listen on port {listener.port} again: {e}")
                    else:
                        self.log(name, f"listening again on port {listener.port}")
        if self.acceptor.thread.is_alive():
            self.acceptor.call(job)

    def record_find(self, name, query, zid, status, api="destinations", tenant=None,
                    level=None):
        with self.finds_lock:
            self.finds.append({"name": name, "query": urllib.parse.unquote(query),
                               "zid": zid, "status": status, "api": api, "tenant": tenant,
                               "level": level})

    def finds_snapshot(self):
        with self.finds_lock:
            return list(self.finds)

    def reset(self):
        self.faults.clear()
        self.chaos.clear()
        self.counters.clear()
        self.messages.clear()
        self.mailstore.reset()
        self.relay_options.reset()
        self.destinations.reset()
        with self.finds_lock:
            self.finds.clear()
        self.token_log.clear()
        self.relay_log.clear()
        self.proxy_log.clear()
        self.log("control", "reset")

    def stop(self):
        self.log("emulator", "stopping")
        self.stopping.set()
        self.acceptor.stop()
        if self.program_proxy:
            self.program_proxy.stop()
        self.connections.abort_all()
        deadline = time.monotonic() + 3
        while self.connections.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.unreachable is not None:
            self.unreachable.close()
        for name in ("ports.json", "emulator.pid", "proxy.pid"):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        self.log("emulator", "stopped")


class SmtpServe:
    """Entry points of the two relay listeners."""

    def __init__(self, emu):
        self.emu = emu

    def plain(self, conn):
        SmtpSession(self.emu, conn, implicit_tls=False).run()

    def implicit_tls(self, conn):
        SmtpSession(self.emu, conn, implicit_tls=True).run()


CERTS_VERSION = "2"          # what mkcerts.sh writes to certs/.mkcerts-version


def read_text(path):
    with open(path, encoding="ascii") as f:
        return f.read()


def ensure_certificates(directory):
    """Make the certificates unless a complete set of the current version is there (an
    older set lacks selfsigned/expired/client2 and the *.localhost names)."""
    cert_dir = os.path.join(directory, "certs")
    try:
        if os.path.exists(os.path.join(cert_dir, "ca.pem")) and \
                read_text(os.path.join(cert_dir, ".mkcerts-version")).strip() == CERTS_VERSION:
            return
    except (OSError, ValueError):
        pass
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mkcerts.sh")
    result = subprocess.run(["sh", script, cert_dir], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.stderr.write(result.stdout.decode("utf-8", "replace"))
        raise SystemExit(f"btp-emulator: {script} failed with status {result.returncode}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Local emulator of the SAP BTP services btprelay uses.")
    parser.add_argument("--dir", required=True, help="state directory (created if needed)")
    parser.add_argument("--log", help="append log lines to this file (default: stderr)")
    parser.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    parser.add_argument("--proxy-program", metavar="PATH",
                        help="run the Connectivity proxy as this program (btp-fastproxy, "
                        "tests/emulator/btp-fastproxy.c) instead of in Python")
    args = parser.parse_args(argv)

    directory = os.path.abspath(args.dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        os.unlink(os.path.join(directory, "ports.json"))   # never let a stale one be read
    except FileNotFoundError:
        pass
    ensure_certificates(directory)
    log = Log(args.log, args.quiet)

    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))

    emu = Emulator(directory, log, args.proxy_program)
    emu.start()
    while not stop_requested:
        time.sleep(0.1)
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
