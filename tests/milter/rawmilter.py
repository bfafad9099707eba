#!/usr/bin/env python3
"""rawmilter.py - the MTA side of the milter protocol, byte by byte, for
packets no real MTA sends (miltertest only sends well-formed ones).

usage: rawmilter.py SOCKET STEP...
  SOCKET   unix:/path
  STEP     mail:ADDR                    MAIL FROM, prints its reply
           rcpt:ADDR                    RCPT TO, prints its reply
           macro:STAGE:HEX              a macro packet: stage letter (C H M R ...),
                                        then the strings as hex (any bytes at all)
           macros:STAGE:N=V,N=V         a well-formed macro packet
           abort                        SMFIC_ABORT (no reply)
Each reply is printed as one line: "STEP -> continue", "STEP -> reply 451 4.7.0 text",
"STEP -> tempfail", "STEP -> reject", ... A connection that closes prints
"STEP -> closed". Exit status 0 when every step got an answer, 1 otherwise.
Every read has a deadline (10 s).
"""
import socket
import struct
import sys

SMFI_VERSION = 6
ACTIONS = 0x1FF                 # everything, SETSYMLIST included
PROTOCOL = 0x3FF                # SMFIP_NOCONNECT .. SMFIP_NODATA: the milter picks
NAMES = {b"c": "continue", b"t": "tempfail", b"r": "reject", b"a": "accept",
         b"d": "discard", b"p": "progress"}


def send(sock, cmd, data=b""):
    sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv(sock):
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    body = recv_exact(sock, length)
    return body[:1], body[1:]


def answer(sock):
    """the milter's final answer to one command (progress packets skipped)"""
    while True:
        cmd, data = recv(sock)
        if cmd == b"p":
            continue
        if cmd == b"y":
            return "reply " + data.rstrip(b"\0").decode("utf-8", "replace")
        return NAMES.get(cmd, "command %r" % cmd)


def main():
    path = sys.argv[1]
    if path.startswith("unix:"):
        path = path[5:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    send(sock, b"O", struct.pack(">III", SMFI_VERSION, ACTIONS, PROTOCOL))
    cmd, data = recv(sock)
    if cmd != b"O" or len(data) < 12:
        print("optneg -> %r" % cmd)
        return 1
    _, _, proto = struct.unpack(">III", data[:12])
    print("optneg -> ok")
    if not proto & 0x1:         # the milter wants SMFIC_CONNECT
        send(sock, b"C", b"client.test\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0")
        print("connect -> " + answer(sock))
    if not proto & 0x2:
        send(sock, b"H", b"client.test\0")
        print("helo -> " + answer(sock))
    rc = 0
    for step in sys.argv[2:]:
        kind, _, arg = step.partition(":")
        try:
            if kind == "macro":
                stage, _, hexdata = arg.partition(":")
                send(sock, b"D", stage.encode() + bytes.fromhex(hexdata))
                continue
            if kind == "macros":
                stage, _, pairs = arg.partition(":")
                data = b"".join(n.encode() + b"\0" + v.encode() + b"\0"
                                for n, v in (p.split("=", 1) for p in pairs.split(",")))
                send(sock, b"D", stage.encode() + data)
                continue
            if kind == "abort":
                send(sock, b"A")
                continue
            if kind in ("mail", "rcpt"):
                send(sock, b"M" if kind == "mail" else b"R", b"<" + arg.encode() + b">\0")
                print("%s -> %s" % (step, answer(sock)))
                continue
            print("%s -> unknown step" % step)
            rc = 1
        except (EOFError, OSError) as e:
            print("%s -> closed (%s)" % (step, e.__class__.__name__))
            return 1
    try:
        send(sock, b"Q")
    except OSError:
        pass
    sock.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
