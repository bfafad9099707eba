"""mailstore: the on-premise mailbox behind the emulator's Cloud Connector, for btprelay-fetch.

One INBOX (plus folders for "move") served over IMAP4rev1 (RFC 3501: STARTTLS, LOGIN,
AUTHENTICATE PLAIN and XOAUTH2, SELECT/EXAMINE, UID SEARCH, UID FETCH, UID STORE, UID COPY,
EXPUNGE, UID EXPUNGE of RFC 4315, UID MOVE of RFC 6851, IDLE of RFC 2177: "* N EXISTS" as
soon as a message arrives through the control API) and POP3 (RFC 1939: USER/PASS, STAT,
LIST, UIDL, RETR, DELE, RSET, QUIT; CAPA of RFC 2449, STLS of RFC 2595, AUTH XOAUTH2 with an
initial response). Implicit TLS on the imaps/pop3s listeners.
The account is the relay's: relayuser and the mail.password of MAIL_ONPREM; XOAUTH2 takes
any user with an access token from an authTokens item of this run issued for that user (as
the emulator's relay checks it).

Fault switches (POST /mailstore {"faults": {...}}), absent or null = healthy:
  login        "NO": every login fails (IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR)
  drop_fetch   N: the next N message downloads (IMAP BODY[] literal, POP3 RETR) send half
               of the message, then the connection closes
  reply        {COMMAND: "NO text" | "BAD text"}: an IMAP command (lower case: select,
               fetch, store, expunge, copy, move, search, login) answered so, without effect
  hide_caps    ["IDLE", "MOVE", ...]: IMAP capabilities not offered (and their commands
               answered BAD), as on a server without them
Control (btp-emulator.py's control port): GET /mailstore (state: uidvalidity, uidnext,
messages with uid, flags, size, sha256; folders; faults; counters: logins, login_failures,
xoauth2_logins, downloads, drops, expunged, pop3_deleted, copied, moved, idles (IDLE
commands), idle_news (EXISTS sent to an idling client)), POST /mailstore
({"load_dir": DIR} replaces INBOX with DIR's *.eml files in name order, "append_dir": DIR
adds them with new UIDs;
"uidvalidity": N changes UIDVALIDITY and gives every message a new UID; "faults": merge;
"clear": true empties every folder), POST /mailstore/reset.
"""

import base64
import hashlib
import os
import re
import select
import threading
import time

IMAP_LINE_MAX = 8192
IMAP_IDLE_MAX = 30 * 60      # RFC 2177: a server may log an idle client out after 30 minutes
IMAP_CAPS = ["IMAP4rev1", "UIDPLUS", "MOVE", "IDLE", "AUTH=PLAIN", "AUTH=XOAUTH2"]



def xoauth2_response(session, initial):
    """The XOAUTH2 response of an IMAP or POP3 session: the initial one, or the line
    after a "+ " continuation. Returns the emulator's (user, why); user None when the
    response is not base64 of an XOAUTH2 string. Never logged."""
    if initial is None:
        session.send("+ ")
        initial = session.conn.reader.readline(IMAP_LINE_MAX).decode("ascii", "replace").strip()
    try:
        return session.emu.xoauth2_check(base64.b64decode(initial, validate=True))
    except ValueError:
        return None, "malformed"

class Message:
    def __init__(self, uid, data, flags=()):
        self.uid = uid
        self.data = data
        self.flags = set(flags)


class MailStore:
    """The mailbox state, shared by every IMAP and POP3 session (one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.uidvalidity = 1000
            self.uidnext = 1
            self.folders = {"INBOX": [], "Archive": []}
            self.faults = {}
            self.counters = {"logins": 0, "login_failures": 0, "xoauth2_logins": 0,
                             "downloads": 0, "drops": 0, "expunged": 0, "pop3_deleted": 0,
                             "copied": 0, "moved": 0, "idles": 0, "idle_news": 0}

    def add(self, data, folder="INBOX"):
        with self.lock:
            self.folders[folder].append(Message(self.uidnext, data))
            self.uidnext += 1

    def load_dir(self, directory, append=False):
        names = sorted(n for n in os.listdir(directory) if n.endswith(".eml"))
        if not append:
            with self.lock:
                self.folders["INBOX"] = []
        for name in names:
            with open(os.path.join(directory, name), "rb") as f:
                self.add(f.read())
        return len(names)

    def change_uidvalidity(self, value):
        with self.lock:
            self.uidvalidity = value
            self.uidnext = 1
            for box in self.folders.values():
                for m in box:
                    m.uid = self.uidnext
                    self.uidnext += 1

    def bump(self, name):
        with self.lock:
            self.counters[name] += 1

    def take_drop(self):
        """Whether this download is cut in half (fault drop_fetch)."""
        with self.lock:
            n = self.faults.get("drop_fetch") or 0
            if n <= 0:
                return False
            self.faults["drop_fetch"] = n - 1
            self.counters["drops"] += 1
            return True

    def merge_faults(self, patch):
        if not isinstance(patch, dict):
            raise ValueError("faults must be an object")
        for key, value in patch.items():
            if key not in ("login", "drop_fetch", "reply", "hide_caps"):
                raise ValueError(f"unknown mailstore fault {key}")
        with self.lock:
            for key, value in patch.items():
                if value is None:
                    self.faults.pop(key, None)
                else:
                    self.faults[key] = value

    def snapshot(self):
        with self.lock:
            return {
                "uidvalidity": self.uidvalidity, "uidnext": self.uidnext,
                "messages": [self.describe(m) for m in self.folders["INBOX"]],
                "folders": {name: [self.describe(m) for m in box]
                            for name, box in self.folders.items()},
                "faults": dict(self.faults), "counters": dict(self.counters)}

    @staticmethod
    def describe(m):
        return {"uid": m.uid, "flags": sorted(m.flags), "size": len(m.data),
                "sha256": hashlib.sha256(m.data).hexdigest()}

    def control(self, body):
        """POST /mailstore"""
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if body.get("clear"):
            with self.lock:
                for name in self.folders:
                    self.folders[name] = []
        if "load_dir" in body:
            self.load_dir(body["load_dir"])
        if "append_dir" in body:
            self.load_dir(body["append_dir"], append=True)
        if "uidvalidity" in body:
            self.change_uidvalidity(int(body["uidvalidity"]))
        if "faults" in body:
            self.merge_faults(body["faults"])
        return self.snapshot()


def uid_set(text, maximum):
    """RFC 3501 sequence-set of UIDs ("1:5,7,9:*") -> predicate on a UID."""
    ranges = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        lo = maximum if lo == "*" else int(lo)
        hi = lo if not hi else (maximum if hi == "*" else int(hi))
        ranges.append((min(lo, hi), max(lo, hi)))
    return lambda uid: any(lo <= uid <= hi for lo, hi in ranges)


def imap_words(line):
    """Atoms and quoted strings of a command line."""
    return [q.replace('\\"', '"').replace("\\\\", "\\") if q or a == "" else a
            for q, a in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)]


class ImapSession:
    def __init__(self, emu, conn, implicit_tls):
        self.emu, self.conn, self.store = emu, conn, emu.mailstore
        self.implicit_tls = implicit_tls
        self.user = None
        self.selected = None
        self.readonly = False
        self.exists = 0              # the message count this client was told (EXISTS, EXPUNGE)

    def send(self, text):
        self.conn.send(text.encode("utf-8") + b"\r\n")

    def offered(self, name):
        return name not in (self.store.faults.get("hide_caps") or ())

    def capabilities(self):
        caps = [c for c in IMAP_CAPS if self.offered(c)]
        if not self.conn.tls:
            caps.append("STARTTLS")
        return " ".join(caps)

    def run(self):
        if self.implicit_tls:
            self.conn.start_tls(self.emu.relay_tls_context("relay", False, ""))
        self.send(f"* OK [CAPABILITY {self.capabilities()}] mail.corp.internal IMAP4rev1 ready")
        while True:
            line = self.conn.reader.readline(IMAP_LINE_MAX)
            if not line:
                return
            if not line.endswith(b"\n"):
                self.send("* BAD line too long")
                continue
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = text.partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                sub, _, args = args.partition(" ")
                command = "UID " + sub.upper()
            self.conn.log(f"C: {tag} {command}" + ("" if command in ("LOGIN", "AUTHENTICATE")
                                                    else f" {args[:80]}"))
            if not self.dispatch(tag, command, args):
                return

    def fault_reply(self, tag, command):
        reply = (self.store.faults.get("reply") or {}).get(command.split()[-1].lower())
        if reply:
            self.send(f"{tag} {reply}")
            return True
        return False

    def dispatch(self, tag, command, args):
        if command == "LOGOUT":
            self.send("* BYE logging out")
            self.send(f"{tag} OK LOGOUT completed")
            return False
        if command == "CAPABILITY":
            self.send(f"* CAPABILITY {self.capabilities()}")
            self.send(f"{tag} OK CAPABILITY completed")
        elif command == "NOOP":
            self.send(f"{tag} OK NOOP completed")
        elif command == "STARTTLS" and not self.conn.tls:
            self.send(f"{tag} OK begin TLS")
            self.conn.start_tls(self.emu.relay_tls_context("relay", False, ""))
        elif command in ("LOGIN", "AUTHENTICATE") and self.user is None:
            self.login(tag, command, args)
        elif self.user is None:
            self.send(f"{tag} BAD {command} not allowed now")
        elif self.fault_reply(tag, command):
            pass
        elif command in ("SELECT", "EXAMINE"):
            self.select(tag, command, args)
        elif self.selected is None:
            self.send(f"{tag} BAD no mailbox selected")
        elif command == "IDLE" and self.offered("IDLE"):
            return self.idle(tag)
        elif command in ("UID SEARCH", "SEARCH"):
            with self.store.lock:
                box = self.store.folders[self.selected]
                found = [str(m.uid if command.startswith("UID") else i + 1)
                         for i, m in enumerate(box) if "\\Deleted" not in m.flags
                         or "UNDELETED" not in args.upper()]
            self.send("* SEARCH" + "".join(" " + f for f in found))
            self.send(f"{tag} OK SEARCH completed")
        elif command == "UID FETCH":
            return self.fetch(tag, args)
        elif command == "UID STORE":
            self.store_flags(tag, args)
        elif command == "UID COPY":
            self.copy(tag, args)
        elif command == "UID MOVE" and self.offered("MOVE"):
            self.copy(tag, args, move=True)
        elif command in ("EXPUNGE", "UID EXPUNGE"):
            self.expunge(tag, args if command == "UID EXPUNGE" else None)
        elif command == "CLOSE":
            self.selected = None
            self.send(f"{tag} OK CLOSE completed")
        else:
            self.send(f"{tag} BAD unknown command")
        return True

    def login(self, tag, command, args):
        words = imap_words(args)
        if command == "AUTHENTICATE" and words and words[0].upper() == "XOAUTH2":
            self.xoauth2(tag, words[1] if len(words) > 1 else None)
            return
        if command == "AUTHENTICATE":
            if not words or words[0].upper() != "PLAIN":
                self.send(f"{tag} NO [CANNOT] mechanism not supported")
                return
            if len(words) > 1:
                response = words[1]
            else:
                self.send("+ ")
                response = self.conn.reader.readline(IMAP_LINE_MAX).decode(
                    "ascii", "replace").strip()
            try:
                _, user, password = base64.b64decode(response).decode("utf-8").split("\0")
            except ValueError:
                self.send(f"{tag} BAD invalid response")
                return
        elif len(words) == 2:
            user, password = words
        else:
            self.send(f"{tag} BAD LOGIN needs a user and a password")
            return
        if self.fault_reply(tag, "login"):
            return
        good = user == "relayuser" and password == self.emu.relay_password
        if self.store.faults.get("login") or not good:
            self.store.bump("login_failures")
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
            return
        self.store.bump("logins")
        self.user = user
        self.send(f"{tag} OK [CAPABILITY {self.capabilities()}] Logged in")

    def xoauth2(self, tag, initial):
        """AUTHENTICATE XOAUTH2, the response initial or after a "+ " (never logged)."""
        user, why = xoauth2_response(self, initial)
        if user is None:
            self.send(f"{tag} BAD invalid XOAUTH2 response")
            return
        if self.fault_reply(tag, "login"):
            return
        if self.store.faults.get("login") or why:
            self.conn.log(f"XOAUTH2 failed for {user[:60]}: token {why or 'refused (fault)'}")
            self.store.bump("login_failures")
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
            return
        self.store.bump("logins")
        self.store.bump("xoauth2_logins")
        self.user = user
        self.send(f"{tag} OK [CAPABILITY {self.capabilities()}] Logged in with XOAUTH2")

    def idle(self, tag):
        """IDLE (RFC 2177): "* N EXISTS" whenever INBOX grows, until the client's DONE."""
        self.store.bump("idles")
        seen = self.exists            # grown since the client was told: announced at once
        self.send("+ idling")
        deadline = time.monotonic() + IMAP_IDLE_MAX
        sock = self.conn.sock
        while not self.conn.reader.buffered() and not (self.conn.tls and sock.pending()):
            if self.emu.stopping.is_set() or time.monotonic() > deadline:
                self.send("* BYE idle for too long")
                return False
            if select.select([sock], [], [], 0.1)[0]:
                break
            with self.store.lock:
                now = len(self.store.folders[self.selected])
            if now > seen:
                self.send(f"* {now} EXISTS")
                self.store.bump("idle_news")
                self.conn.log(f"IDLE: * {now} EXISTS")
            seen = now
        self.exists = seen
        line = self.conn.reader.readline(IMAP_LINE_MAX)
        if not line:
            return False
        if line.strip().upper() != b"DONE":
            self.send(f"{tag} BAD expected DONE")
            return True
        self.send(f"{tag} OK IDLE terminated")
        return True

    def select(self, tag, command, args):
        words = imap_words(args)
        name = words[0] if words else ""
        if name.upper() == "INBOX":
            name = "INBOX"
        with self.store.lock:
            if name not in self.store.folders:
                self.send(f"{tag} NO [NONEXISTENT] Mailbox doesn't exist: {name}")
                return
            box = self.store.folders[name]
            self.exists = len(box)
            self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
            self.send(f"* {len(box)} EXISTS")
            self.send("* 0 RECENT")
            self.send(f"* OK [UIDVALIDITY {self.store.uidvalidity}] UIDs valid")
            self.send(f"* OK [UIDNEXT {self.store.uidnext}] Predicted next UID")
        self.selected = name
        self.readonly = command == "EXAMINE"
        self.send(f"{tag} OK [{'READ-ONLY' if self.readonly else 'READ-WRITE'}] "
                  f"{command} completed")

    def matching(self, spec):
        box = self.store.folders[self.selected]
        maximum = max([m.uid for m in box] or [0])
        want = uid_set(spec, maximum)
        return [(i, m) for i, m in enumerate(box) if want(m.uid)]

    def fetch(self, tag, args):
        spec, _, items = args.partition(" ")
        items = items.upper()
        body = "BODY[]" in items or "BODY.PEEK[]" in items or "RFC822" in items.split()
        with self.store.lock:
            found = self.matching(spec)
        for i, m in found:
            parts = [f"UID {m.uid}"]
            if "FLAGS" in items:
                parts.append("FLAGS (" + " ".join(sorted(m.flags)) + ")")
            if "RFC822.SIZE" in items:
                parts.append(f"RFC822.SIZE {len(m.data)}")
            head = f"* {i + 1} FETCH (" + " ".join(parts)
            if not body:
                self.send(head + ")")
                continue
            self.store.bump("downloads")
            self.conn.send(f"{head} BODY[] {{{len(m.data)}}}\r\n".encode())
            if self.store.take_drop():
                self.conn.send(m.data[:len(m.data) // 2])
                self.conn.log(f"fault drop_fetch: closed in the literal of UID {m.uid}")
                return False
            self.conn.send(m.data)
            self.conn.send(b")\r\n")
            if "PEEK" not in items and not self.readonly:
                with self.store.lock:
                    m.flags.add("\\Seen")
        self.send(f"{tag} OK FETCH completed")
        return True

    def store_flags(self, tag, args):
        match = re.match(r"(\S+)\s+([+-]?)FLAGS(\.SILENT)?\s+\(?([^)]*)\)?", args, re.I)
        if not match or self.readonly:
            self.send(f"{tag} BAD bad STORE")
            return
        spec, op, silent, flags = match.groups()
        flags = set(flags.split())
        with self.store.lock:
            found = self.matching(spec)
            for i, m in found:
                if op == "+":
                    m.flags |= flags
                elif op == "-":
                    m.flags -= flags
                else:
                    m.flags = set(flags)
                if not silent:
                    self.send(f"* {i + 1} FETCH (UID {m.uid} FLAGS ({' '.join(sorted(m.flags))}))")
        self.send(f"{tag} OK STORE completed")

    def copy(self, tag, args, move=False):
        """UID COPY, or UID MOVE (RFC 6851: copy, then expunge the originals)."""
        spec, _, rest = args.partition(" ")
        words = imap_words(rest)
        target = words[0] if words else ""
        with self.store.lock:
            if target not in self.store.folders:
                self.send(f"{tag} NO [TRYCREATE] Mailbox doesn't exist: {target}")
                return
            found = self.matching(spec)
            for _, m in found:
                self.store.folders[target].append(Message(self.store.uidnext, m.data))
                self.store.uidnext += 1
                self.store.counters["moved" if move else "copied"] += 1
            if move:
                box = self.store.folders[self.selected]
                for i, m in reversed(found):
                    del box[i]
                    self.exists -= 1
                    self.send(f"* {i + 1} EXPUNGE")
        self.send(f"{tag} OK {'MOVE' if move else 'COPY'} completed")

    def expunge(self, tag, spec):
        if self.readonly:
            self.send(f"{tag} NO mailbox is read-only")
            return
        with self.store.lock:
            box = self.store.folders[self.selected]
            want = uid_set(spec, max([m.uid for m in box] or [0])) if spec else (lambda u: True)
            i = 0
            while i < len(box):
                if "\\Deleted" in box[i].flags and want(box[i].uid):
                    del box[i]
                    self.exists -= 1
                    self.store.counters["expunged"] += 1
                    self.send(f"* {i + 1} EXPUNGE")
                else:
                    i += 1
        self.send(f"{tag} OK EXPUNGE completed")


class Pop3Session:
    def __init__(self, emu, conn, implicit_tls):
        self.emu, self.conn, self.store = emu, conn, emu.mailstore
        self.implicit_tls = implicit_tls
        self.user = None
        self.authorized = False
        self.view = []               # the maildrop as it was at login (RFC 1939 §4)
        self.deleted = set()

    def send(self, text):
        self.conn.send(text.encode("utf-8") + b"\r\n")

    def run(self):
        if self.implicit_tls:
            self.conn.start_tls(self.emu.relay_tls_context("relay", False, ""))
        self.send("+OK mail.corp.internal POP3 ready")
        while True:
            line = self.conn.reader.readline(IMAP_LINE_MAX)   # AUTH XOAUTH2 carries a token
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            command, _, arg = text.partition(" ")
            command = command.upper()
            self.conn.log(f"C: {command}" + (" " + arg[:40] if command not in ("PASS", "AUTH")
                                             else ""))
            if not self.dispatch(command, arg):
                return

    def authorize(self, reply):
        self.store.bump("logins")
        self.authorized = True
        with self.store.lock:
            self.view = list(self.store.folders["INBOX"])
        self.send(reply)

    def xoauth2(self, arg):
        """AUTH XOAUTH2 [initial response] (RFC 5034; never logged)."""
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "XOAUTH2":
            self.send("-ERR mechanism not supported")
            return
        user, why = xoauth2_response(self, initial or None)
        if user is None:
            self.send("-ERR invalid XOAUTH2 response")
            return
        if self.store.faults.get("login") or why:
            self.conn.log(f"XOAUTH2 failed for {user[:60]}: token {why or 'refused (fault)'}")
            self.store.bump("login_failures")
            self.send("-ERR [AUTH] Invalid credentials")
            return
        self.store.bump("xoauth2_logins")
        self.user = user
        self.authorize("+OK logged in with XOAUTH2")

    def message(self, arg):
        try:
            n = int(arg)
        except ValueError:
            return None
        if 1 <= n <= len(self.view) and n not in self.deleted:
            return self.view[n - 1]
        return None

    def dispatch(self, command, arg):
        if command == "QUIT":
            if self.authorized:
                with self.store.lock:
                    gone = {id(self.view[n - 1]) for n in self.deleted}
                    box = self.store.folders["INBOX"]
                    box[:] = [m for m in box if id(m) not in gone]
                    self.store.counters["pop3_deleted"] += len(gone)
            self.send("+OK bye")
            return False
        if command == "CAPA":
            self.send("+OK capabilities follow")
            for cap in ["USER", "UIDL", "TOP", "SASL XOAUTH2"] + ([] if self.conn.tls else ["STLS"]):
                self.send(cap)
            self.send(".")
        elif command == "STLS" and not self.conn.tls and not self.authorized:
            self.send("+OK begin TLS")
            self.conn.start_tls(self.emu.relay_tls_context("relay", False, ""))
        elif command == "AUTH" and not self.authorized:
            self.xoauth2(arg)
        elif command == "USER" and not self.authorized:
            self.user = arg
            self.send("+OK send PASS")
        elif command == "PASS" and not self.authorized and self.user is not None:
            if self.store.faults.get("login") or self.user != "relayuser" \
                    or arg != self.emu.relay_password:
                self.store.bump("login_failures")
                self.send("-ERR [AUTH] Authentication failed.")
                self.user = None
                return True
            self.authorize("+OK logged in")
        elif not self.authorized:
            self.send("-ERR not now")
        elif command == "NOOP":
            self.send("+OK")
        elif command == "STAT":
            live = [m for i, m in enumerate(self.view) if i + 1 not in self.deleted]
            self.send(f"+OK {len(live)} {sum(len(m.data) for m in live)}")
        elif command in ("UIDL", "LIST") and not arg:
            self.send("+OK listing follows")
            for i, m in enumerate(self.view):
                if i + 1 not in self.deleted:
                    value = f"{self.store.uidvalidity}.{m.uid}" if command == "UIDL" \
                        else str(len(m.data))
                    self.send(f"{i + 1} {value}")
            self.send(".")
        elif command == "RETR":
            m = self.message(arg)
            if m is None:
                self.send("-ERR no such message")
                return True
            self.store.bump("downloads")
            self.send(f"+OK {len(m.data)} octets")
            stuffed = re.sub(rb"(?m)^\.", b"..", m.data)
            if not stuffed.endswith(b"\n"):
                stuffed += b"\r\n"
            if self.store.take_drop():
                self.conn.send(stuffed[:len(stuffed) // 2])
                self.conn.log("fault drop_fetch: closed in RETR")
                return False
            self.conn.send(stuffed + b".\r\n")
        elif command == "DELE":
            if self.message(arg) is None:
                self.send("-ERR no such message")
            else:
                self.deleted.add(int(arg))
                self.send("+OK deleted")
        elif command == "RSET":
            self.deleted.clear()
            self.send("+OK")
        else:
            self.send("-ERR unknown command")
        return True
