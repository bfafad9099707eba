#!/usr/bin/env python3
"""bench.py - helpers for tests/bench/run.sh (Python standard library only).

    bench.py msg FILE SIZE [MARK]        a message of about SIZE bytes (headers + body)
    bench.py cpu [PID...]                one line: busy and total jiffies of the machine,
                                         then utime+stime of each PID (0 when gone)
    bench.py proxycpu PID FILE           the CPU microseconds (user + system) btp-fastproxy
                                         PID has used: SIGUSR1, then its getrusage from
                                         FILE; 0 without a PID
    bench.py treecpu PID...              CPU ticks of the process trees under the PIDs
                                         (reaped children included): the sum, then each
    bench.py waitlog MAILLOG OFFSET DOMAIN N TIMEOUT
                                         wait for N final status lines of deliveries to
                                         DOMAIN after byte OFFSET; prints a JSON summary
    bench.py sinkcheck DUMPFILE OFFSET MARK
                                         messages appended to an smtp-sink dump since byte
                                         OFFSET whose Message-Id contains MARK: count
                                         and duplicates (JSON)
    bench.py relaycheck MSGDIR MARK      the same for the emulator's messages/*.eml
    bench.py hyperfine JSON              mean/stddev/min/max/median seconds per command
    bench.py timev FILE...               median user+sys seconds and max RSS (KiB) over
                                         /usr/bin/time -v outputs
    bench.py rusage RUNS INPUT OUT -- CMD...
                                         run CMD RUNS times (posix_spawn) with INPUT as
                                         stdin; OUT gets one JSON line per run: user+sys
                                         CPU seconds (getrusage), wall, status
    bench.py timeline STRACE PORTS.json RTT_MS
                                         the waits of one traced delivery (strace -f -tt -T,
                                         log_level = debug): service, the last log line
                                         before the wait, wait in ms and in round trips
    bench.py callgrind SELF.txt INCL.txt [PREFIX]
                                         figures from callgrind_annotate outputs (TSV lines
                                         named PREFIX.*, default prof.cg)
    bench.py stracec FILE                the system calls of strace -c -o FILE, most called first
    bench.py relaygap EMULATOR_LOG COUNT median ms between DATA's 354 and the end of data
                                         for the last COUNT messages the emulator's relay stored
    bench.py lmtp SIZE -- CMD...         one LMTP session with CMD (btprelay-lmtp, as spawn(8)
                                         starts it: a socket on stdin and stdout): LHLO,
                                         one message of about SIZE bytes, QUIT; prints the
                                         reply to the message
    bench.py render RESULTS.tsv OUT.md   RESULTS.md from the collected figures
"""

import glob
import json
import os
import re
import shutil
import statistics
import sys
import time


# --------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------

def cmd_msg(path, size, mark="bench"):
    """Headers, then 76-byte lines (every 7th starts with a dot, so dot-stuffing is
    exercised), LF line ends as Postfix's pipe(8) hands them over, until SIZE bytes."""
    size = int(size)
    with open(path, "w", encoding="ascii") as f:
        head = (f"From: <sender@client.test>\nTo: <user@corp.example>\n"
                f"Subject: btprelay bench {mark} {size} bytes\n"
                f"Message-Id: <{mark}.{size}@client.test>\n\n")
        f.write(head)
        n, i = len(head), 0
        while n < size:                         # overshoots by less than one line
            line = ("." if i % 7 == 0 else "") + f"{i:08d} " + "x" * 66 + "\n"
            f.write(line)
            n += len(line)
            i += 1
    return 0


# --------------------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------------------

def cmd_cpu(*pids):
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    out = [str(total - idle), str(total)]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            out.append(str(int(st[11]) + int(st[12])))
        except (OSError, IndexError, ValueError):
            out.append("0")
    print(" ".join(out))
    return 0


def cmd_proxycpu(pid, path):
    """btp-fastproxy writes its getrusage to PATH on SIGUSR1 (microseconds: /proc's clock
    ticks of 10 ms are too coarse for a proxy that spends a few per thousand messages)."""
    if not pid.isdigit():
        print(0)
        return 0
    def version():                              # replaced by rename(): a new inode
        st = os.stat(path)
        return st.st_ino, st.st_mtime_ns
    try:
        before = version()
    except OSError:
        before = None
    os.kill(int(pid), 10)                       # SIGUSR1
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            if version() != before:
                with open(path) as f:
                    user, system = (int(x) for x in f.read().split())
                print(user + system)
                return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    sys.stderr.write("bench.py proxycpu: no answer from %s\n" % pid)
    return 1


def cmd_treecpu(*roots):
    """CPU of process trees, in clock ticks: user + system of every live process under a
    root, with what its reaped children used (cutime, cstime). pipe(8) reaps each
    transport it runs, the master each pipe(8) that ends: nothing that ran is lost.
    Prints the sum over all roots, then one figure per root."""
    procs, children = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
            procs[int(d)] = sum(int(x) for x in st[11:15])
            children.setdefault(int(st[1]), []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    per_root, seen = [], set()
    for root in roots:
        total, stack = 0, [int(root)] if root.isdigit() else []
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in procs:
                continue
            seen.add(pid)
            total += procs[pid]
            stack.extend(children.get(pid, []))
        per_root.append(total)
    print(" ".join(str(x) for x in [sum(per_root)] + per_root))
    return 0


# --------------------------------------------------------------------------------------
# waiting for deliveries in the maillog
# --------------------------------------------------------------------------------------

def cmd_waitlog(maillog, offset, domain, n, timeout):
    offset, n, timeout = int(offset), int(n), float(timeout)
    line_re = re.compile(r"postfix/(pipe|smtp|lmtp)\[\d+\]: ([0-9A-Za-z]+): to=<[^>]*@"
                         + re.escape(domain) + r">.*status=(sent|deferred|bounced)")
    sent, final_bounced, deferred, new_conns = set(), set(), 0, 0
    dup = 0
    first = last = None
    start = time.time()
    buf = b""
    with open(maillog, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(1 << 20)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                now = time.time()
                for raw in lines:
                    m = line_re.search(raw.decode("utf-8", "replace"))
                    if not m:
                        continue
                    qid, status = m.group(2), m.group(3)
                    if status == "sent":
                        if qid in sent:
                            dup += 1
                        sent.add(qid)
                        # smtp(8) says conn_use=N when it reuses a cached connection
                        if "conn_use=" not in m.string:
                            new_conns += 1
                        first = first or now
                        last = now
                    elif status == "bounced":
                        final_bounced.add(qid)
                    else:
                        deferred += 1
                if len(sent) + len(final_bounced) >= n:
                    break
                continue
            if time.time() - start > timeout:
                break
            time.sleep(0.01)
    print(json.dumps({"t_end": last, "t_first": first, "sent": len(sent),
                      "bounced": len(final_bounced), "deferred": deferred,
                      "duplicate_sent_lines": dup, "new_connections": new_conns, "timed_out": len(sent) + len(final_bounced) < n}))
    return 0


# --------------------------------------------------------------------------------------
# what arrived
# --------------------------------------------------------------------------------------

MSGID_RE = re.compile(rb"^Message-Id:\s*<([^>]*)>", re.IGNORECASE | re.MULTILINE)


def _count_ids(ids, mark):
    mine = [i for i in ids if mark in i]
    return {"messages": len(mine), "unique": len(set(mine)),
            "duplicates": len(mine) - len(set(mine))}


def cmd_sinkcheck(dump, offset, mark):
    try:
        with open(dump, "rb") as f:
            f.seek(int(offset))
            data = f.read()
    except OSError:
        data = b""
    ids = [m.group(1).decode("utf-8", "replace") for m in MSGID_RE.finditer(data)]
    print(json.dumps(_count_ids(ids, mark)))
    return 0


def cmd_relaycheck(msgdir, mark):
    ids = []
    for path in glob.glob(os.path.join(msgdir, "*.eml")):
        with open(path, "rb") as f:
            head = f.read(8192).split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
        ids += [m.group(1).decode("utf-8", "replace") for m in MSGID_RE.finditer(head)]
    print(json.dumps(_count_ids(ids, mark)))
    return 0


# --------------------------------------------------------------------------------------
# tool outputs
# --------------------------------------------------------------------------------------

def cmd_hyperfine(path):
    with open(path) as f:
        data = json.load(f)
    for r in data["results"]:
        times = r.get("times") or [r["mean"]]
        print("%.6f %.6f %.6f %.6f %.6f %d" % (r["mean"], r.get("stddev") or 0.0, r["min"],
                                              r["max"], statistics.median(times), len(times)))
    return 0


def cmd_rusage(runs, infile, out, *cmd):
    """CMD run RUNS times, each started with posix_spawn() (glibc: vfork, no copy of this
    Python process): the child's getrusage() is the command's own CPU, as when pipe(8),
    a small C program, starts it. A fork() of Python would add about 1 ms of page-table
    copying and teardown to every run. ru_maxrss is not the command's after a vfork
    (it counts the parent's pages): peak RSS comes from /usr/bin/time -v (bench.py timev)."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    worst = 0
    path = cmd[0] if "/" in cmd[0] else shutil.which(cmd[0])
    actions = [(os.POSIX_SPAWN_OPEN, 0, infile, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    with open(out, "a") as log:
        for _ in range(int(runs)):
            t0 = time.monotonic()
            pid = os.posix_spawn(path, list(cmd), os.environ, file_actions=actions)
            _, status, ru = os.wait4(pid, 0)
            wall = time.monotonic() - t0
            code = os.waitstatus_to_exitcode(status)
            worst = max(worst, abs(code))
            log.write(json.dumps({"cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime,
                                  "sys": ru.ru_stime, "wall": wall, "status": code}) + "\n")
    return 1 if worst else 0


def cmd_rusagesum(path):
    """median CPU, median user, median sys, median wall, runs, worst status"""
    rows = [json.loads(l) for l in open(path) if l.strip()]
    med = lambda k: statistics.median(r[k] for r in rows)
    print("%.6f %.6f %.6f %.6f %d %d" % (med("cpu"), med("user"), med("sys"), med("wall"),
                                         len(rows), max(abs(r["status"]) for r in rows)))
    return 0


def cmd_timev(*paths):
    cpu, rss, status = [], [], []
    for p in paths:
        text = open(p, encoding="utf-8", errors="replace").read()
        u = re.search(r"User time \(seconds\): ([0-9.]+)", text)
        s = re.search(r"System time \(seconds\): ([0-9.]+)", text)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        e = re.search(r"Exit status: (\d+)", text)
        if u and s and m:
            cpu.append(float(u.group(1)) + float(s.group(1)))
            rss.append(int(m.group(1)))
        status.append(int(e.group(1)) if e else -1)
    if not cpu:
        print("nan nan -1")
        return 1
    print("%.4f %d %d" % (statistics.median(cpu), max(rss), max(status)))
    return 0


# --------------------------------------------------------------------------------------
# RESULTS.md
# --------------------------------------------------------------------------------------

def load_results(path):
    res = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or "\t" not in line:
                continue
            k, v = line.split("\t", 1)
            res[k] = v.replace("\\n", "\n")
    return res


def cmd_render(results, out):
    from render import render              # tests/bench/render.py
    text = render(load_results(results))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return 0


STRACE_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+):(\d+):([0-9.]+) (\w+)\((.*)\) += (.*?)(?: <([0-9.]+)>)?$")
# strace -f splits a call that another process interrupts: "... <unfinished ...>", then
# "<... poll resumed>...) = 1 <0.020>"
STRACE_UNFINISHED = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+):(\d+):([0-9.]+) (\w+)\((.*) <unfinished \.\.\.>$")
STRACE_RESUMED = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+):(\d+):([0-9.]+) <\.\.\. (\w+) resumed>(.*)\) += (.*?)(?: <([0-9.]+)>)?$")


def _strace_calls(path):
    """(pid, start seconds, call, args, return, duration) of every complete system call,
    an interrupted one joined with its resumption"""
    pending = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        m = STRACE_LINE.match(line)
        if m:
            pid, hh, mm, ss, call, args, ret, dur = m.groups()
            yield pid, int(hh) * 3600 + int(mm) * 60 + float(ss), call, args, ret, dur
            continue
        m = STRACE_UNFINISHED.match(line)
        if m:
            pid, hh, mm, ss, call, args = m.groups()
            pending[pid] = (int(hh) * 3600 + int(mm) * 60 + float(ss), call, args)
            continue
        m = STRACE_RESUMED.match(line)
        if m and m.group(1) in pending:
            pid, call, rest, ret, dur = m.group(1), m.group(5), m.group(6), m.group(7), m.group(8)
            t, call0, args = pending.pop(pid)
            yield pid, t, call0, args + rest, ret, dur


def cmd_timeline(path, ports_json, rtt_ms):
    """One line per wait of at least a third of a round trip: 'service|label|ms|rtts'.
    The delivery's own process (the first in the trace) decides: each of its waits
    counts. Another process of the delivery (strace -f: the child that fetches the
    connectivity token) waits "in parallel" and does not count, unless most of its wait
    lies where the delivery's process slept waiting for that child's cache lock
    (nanosleep between flock() attempts): then the delivery waited for it. The count is
    of the round trips the delivery waited for, whichever process did the waiting."""
    rtt = float(rtt_ms) / 1000.0
    ports = {int(v): k for k, v in json.load(open(ports_json)).items()}
    fd_svc, label, waits, connecting, sleeps = {}, "(start)", [], set(), []
    t_first = t_last = main = None
    for pid, t, call, args, ret, dur in _strace_calls(path):
        main = pid if main is None else main
        t_first = t if t_first is None else min(t_first, t)
        t_last = max(t_last or t, t + float(dur or 0))
        if call == "connect":
            fd = args.split(",", 1)[0]
            pm = re.search(r"sin_port=htons\((\d+)\)", args)
            if pm:
                fd_svc[pid, fd] = ports.get(int(pm.group(1)), "port %s" % pm.group(1))
                if "EINPROGRESS" in ret:
                    connecting.add((pid, fd))
        if call == "write" and "btprelay-transport[" in args:
            lm = re.search(r"btprelay-transport\[\d+\]: (?:[0-9A-Za-z]+: )?(.*?)(?:\\n)?\"", args)
            if lm:
                label = lm.group(1)
        if call in ("nanosleep", "clock_nanosleep") and pid == main and dur:
            sleeps.append((t, t + float(dur)))
        if call in ("poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait") and dur:
            d = float(dur)
            if d >= rtt / 3:
                fm = re.search(r"fd=(\d+)", args)
                key = (pid, fm.group(1) if fm else None)
                waits.append((t, d, pid, fd_svc.get(key, "?"), "TCP connect" if key in connecting else label))
                connecting.discard(key)
    # the delivery's sleeps between lock attempts, joined into spans of waiting
    spans = []
    for a, b in sorted(sleeps):
        if spans and a - spans[-1][1] < rtt / 3:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    rows, counted = [], 0
    for t, d, pid, svc, lab in sorted(waits):
        inside = sum(max(0.0, min(t + d, b) - max(t, a)) for a, b in spans)
        if pid == main or inside >= d / 2:
            rows.append((svc, lab if pid == main else "waited for: " + lab, d, True))
            counted += 1
        else:
            rows.append((svc, "in parallel: " + lab, d, False))
    waited = sum(r[2] for r in rows if r[3])
    for svc, lab, d, _ in rows:
        lab = lab.replace("|", "/")
        if len(lab) > 70:
            lab = lab[:67] + "..."
        print("%s|%s|%.1f|%.2f" % (svc, lab, d * 1000, d / rtt))
    total = (t_last - t_first) if t_first is not None else 0.0
    print("TOTAL|%d waits|%.1f|%.2f|%.1f" % (counted, waited * 1000, waited / rtt, total * 1000))
    return 0


CG_LINE = re.compile(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*?)(?: \[(.*)\])?\s*$")

# inclusive costs worth naming: where a delivery's instructions go
CG_FUNCS = ("main", "_dl_start", "_dl_start_final", "_dl_init", "_dl_relocate_object", "config_load",
            "http_global_init", "log_open", "OPENSSL_init_crypto", "OPENSSL_init_ssl",
            "EVP_DigestInit_ex", "cache_load", "dest_resolve", "oauth_token_missing",
            "deliver_transaction", "lmtp_body_read", "lmtp_body_read_stuffed", "lmtp_body_drain",
            "deliver", "bindings_load", "dest_resolve_until", "cache_key", "oauth_token_cached",
            "open_tunnel", "socks5_connect", "tls_ctx_new", "tls_ctx_new_extra", "SSL_CTX_new",
            "smtp_session_open", "tls_handshake", "tls_handshake_peer",
            "smtp_send_message", "smtp_body", "smtp_body_convert", "conn_write", "conn_flush",
            "SSL_write", "SSL_read", "read", "exit")


def _cg_parse(path):
    """The PROGRAM TOTALS and the file:function table (run callgrind_annotate with --auto=no)."""
    total, rows, in_table = None, [], False
    for line in open(path, encoding="utf-8", errors="replace"):
        if "file:function" in line:
            in_table = True
            continue
        m = CG_LINE.match(line)
        if not m:
            if in_table and rows and not line.strip():
                break
            continue
        if not in_table and not m.group(3).endswith("PROGRAM TOTALS"):
            continue
        ir = int(m.group(1).replace(",", ""))
        name = m.group(3)
        if name.endswith("PROGRAM TOTALS"):
            total = ir
            continue
        func = name.rsplit(":", 1)[-1]
        obj = os.path.basename(m.group(4) or "?")
        rows.append((ir, func, obj))
    return total, rows


def cmd_callgrind(self_path, incl_path, prefix="prof.cg"):
    total, rows = _cg_parse(self_path)
    if not total:
        print("%s.error\tno totals in callgrind_annotate output" % prefix)
        return 1
    print("%s.total\t%d" % (prefix, total))
    top = ["%d|%.1f|%s|%s" % (ir, 100.0 * ir / total, f, o) for ir, f, o in rows[:18]]
    print("%s.self\t%s" % (prefix, "\\n".join(top)))
    by_obj = {}
    for ir, f, o in rows:
        by_obj[o] = by_obj.get(o, 0) + ir
    objs = sorted(by_obj.items(), key=lambda kv: -kv[1])[:10]
    print("%s.objects\t%s" % (prefix, "\\n".join("%d|%.1f|%s" % (ir, 100.0 * ir / total, o)
                                                  for o, ir in objs)))
    _, incl = _cg_parse(incl_path)
    seen, out = set(), []
    for ir, f, o in incl:
        if f in CG_FUNCS and f not in seen:
            seen.add(f)
            out.append("%d|%.1f|%s|%s" % (ir, 100.0 * ir / total, f, o))
    print("%s.incl\t%s" % (prefix, "\\n".join(out)))
    return 0


def cmd_stracec(path):
    """'calls|errors|syscall' lines, most frequent first, then 'TOTAL|calls|errors'."""
    rows, total = [], None
    for line in open(path, encoding="utf-8", errors="replace"):
        f = line.split()
        if len(f) < 5 or not f[0][0].isdigit():
            continue
        if f[-1] == "total":
            total = (int(f[3]), int(f[4]) if len(f) > 5 else 0)
            continue
        errors = int(f[4]) if len(f) == 6 else 0
        rows.append((int(f[3]), errors, f[-1]))
    rows.sort(key=lambda r: -r[0])
    for calls, errors, name in rows[:12]:
        print("%d|%d|%s" % (calls, errors, name))
    if total:
        print("TOTAL|%d|%d" % total)
    return 0


def _log_time(line):
    m = re.match(r"^\d{4}-\d\d-\d\dT(\d\d):(\d\d):([0-9.]+)Z (relay#\d+) (.*)$", line)
    if not m:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), m.group(4), m.group(5)


def cmd_relaygap(path, count):
    events = [e for e in (_log_time(l) for l in open(path, encoding="utf-8", errors="replace")) if e]
    last_data, gaps = {}, []
    for t, conn, what in events:
        if what.startswith("DATA -> 354"):
            last_data[conn] = t
        elif what.startswith("end of data") and conn in last_data:
            gaps.append(t - last_data.pop(conn))
    gaps = gaps[-int(count):]
    print("%.1f" % (1000 * statistics.median(gaps)) if gaps else "nan")
    return 0


def cmd_lmtp(size, dashdash, *cmd):
    """The client side of one LMTP session, for a profile of btprelay-lmtp's body path."""
    import socket
    import subprocess
    if dashdash != "--" or not cmd:
        sys.stderr.write("usage: bench.py lmtp SIZE -- CMD...\n")
        return 2
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(list(cmd), stdin=theirs, stdout=theirs)
    theirs.close()
    ours.settimeout(600)
    f = ours.makefile("rb")

    def reply():
        lines = [f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(f.readline())
        return lines[-1].decode("ascii", "replace").strip()
    body, i = [b"Subject: btprelay bench lmtp\r\n\r\n"], 0
    n = len(body[0])
    while n < int(size):                        # the transparent form: leading dots doubled
        line = (b"." if i % 7 == 0 else b"") + b"%08d " % i + b"x" * 66
        line = (b"." + line if line.startswith(b".") else line) + b"\r\n"
        body.append(line)
        n += len(line)
        i += 1
    reply()
    ours.sendall(b"LHLO bench\r\n")
    reply()
    ours.sendall(b"MAIL FROM:<sender@client.test>\r\nRCPT TO:<user@corp.example>\r\nDATA\r\n")
    answers = [reply() for _ in range(3)]
    if not answers[2].startswith("354"):
        print("no 354: %s" % " / ".join(answers))
        proc.kill()
        return 1
    ours.sendall(b"".join(body) + b".\r\n")
    result = reply()
    ours.sendall(b"QUIT\r\n")
    reply()
    ours.close()
    proc.wait()
    print(result)
    return 0 if result.startswith("250") else 1


COMMANDS = {
    "msg": cmd_msg, "cpu": cmd_cpu, "proxycpu": cmd_proxycpu, "treecpu": cmd_treecpu, "waitlog": cmd_waitlog, "sinkcheck": cmd_sinkcheck,
    "relaycheck": cmd_relaycheck, "hyperfine": cmd_hyperfine, "timev": cmd_timev,
    "timeline": cmd_timeline, "callgrind": cmd_callgrind, "stracec": cmd_stracec, "relaygap": cmd_relaygap, "render": cmd_render, "lmtp": cmd_lmtp, "rusage": cmd_rusage, "rusagesum": cmd_rusagesum,
}

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
