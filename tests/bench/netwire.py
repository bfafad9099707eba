#!/usr/bin/env python3
"""netwire.py - a point-to-point "wire" between two network namespaces, with a
fixed one-way delay: a userspace stand-in for `tc qdisc add ... netem delay`,
for kernels built without sch_netem.

    netwire.py --delay-ms 10 --ready FILE NS_A DEV_A NS_B DEV_B

Creates the TUN device DEV_A in network namespace NS_A and DEV_B in NS_B ("-" =
the namespace this process starts in), writes FILE when both exist, then copies
every IP packet from one device to the other after DELAY milliseconds, in order,
both ways, until SIGTERM or SIGINT. The devices disappear with the process.
Addresses and routes are the caller's (`ip -n NS addr add A peer B dev DEV`).

Only whole IP packets cross, so TCP behaves as on a real link with that latency
(SYN/SYN-ACK, Nagle, delayed ACKs, slow start). Bandwidth is whatever this loop
manages (tens of MB/s), which is plenty for the one-message deliveries it is for.
"""

import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time
from collections import deque

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MTU_READ = 65536


def setns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def tun_open(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main(argv):
    args = argv[1:]
    delay, ready = 0.010, None
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--delay-ms":
            delay = float(args.pop(0)) / 1000.0
        elif opt == "--ready":
            ready = args.pop(0)
        else:
            sys.stderr.write(f"netwire: unknown option {opt}\n")
            return 2
    if len(args) != 4:
        sys.stderr.write(__doc__)
        return 2
    ns_a, dev_a, ns_b, dev_b = args
    if ns_a != "-":
        setns(ns_a)
    fd_a = tun_open(dev_a)
    if ns_b != "-":
        setns(ns_b)
    fd_b = tun_open(dev_b)
    if ready:
        with open(ready + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(ready + ".tmp", ready)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    peer = {fd_a: fd_b, fd_b: fd_a}
    queue = {fd_a: deque(), fd_b: deque()}      # packets read from fd, due at t
    while not stop:
        now = time.monotonic()
        for src, q in queue.items():
            while q and q[0][0] <= now:
                try:
                    os.write(peer[src], q.popleft()[1])
                except (BlockingIOError, OSError):
                    pass                        # a full or downed device drops, as a link would
        due = [q[0][0] for q in queue.values() if q]
        timeout = max(0.0, min(due) - time.monotonic()) if due else 1.0
        try:
            readable, _, _ = select.select([fd_a, fd_b], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            for _ in range(64):
                try:
                    packet = os.read(fd, MTU_READ)
                except BlockingIOError:
                    break
                except OSError:
                    break
                queue[fd].append((now + delay, packet))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
