#!/usr/bin/env python3
"""submit-many.py - submit N messages over a few SMTP sessions and record which
were accepted, and count them at the relay.

  submit-many.py submit HOST:PORT N MARK RCPT ACCEPTED-FILE [SESSIONS [PACE [AT COMMAND...]]]
      Message i has Message-Id <MARK.i@client.test>. A line "MARK.i" is
      appended to ACCEPTED-FILE (flushed at once) after the server's 250 to
      the final dot, and only then. A session that fails (the server went
      away) is opened again until every message was tried once; a message
      whose transaction failed is not retried (its fate is the server's).
      Each session waits PACE seconds (default 0) after each message.
      When AT messages have been accepted, COMMAND is started (once, not
      waited for) while the submission goes on: a signal in the middle.
      Every socket operation has a 10 s timeout. Exit 0.

  submit-many.py count MSGDIR MARK ACCEPTED-FILE
      Message-Ids of MARK in MSGDIR/*.eml (the emulator's relay) against the
      accepted ones: prints "accepted A arrived U missing M duplicates D
      extra E" and, for each duplicate, the fault_after_dot of its copies
      (N.json); exit 0 when nothing accepted is missing.
"""
import glob, json, os, re, smtplib, subprocess, sys, threading, time


def submit(server, n, mark, rcpt, accepted_file, sessions=4, pace=0, at=None, *command):
    host, port = server.rsplit(":", 1)
    lock = threading.Lock()
    todo = list(range(1, int(n) + 1))
    out = open(accepted_file, "a")
    accepted = [0]
    started = []

    def worker():
        s = None
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop(0)
            mid = "%s.%d" % (mark, i)
            msg = ("From: sender@client.test\r\nTo: %s\r\nSubject: %s\r\n"
                   "Message-Id: <%s@client.test>\r\n\r\nmessage %d of %s\r\n" % (rcpt, mid, mid, i, mark))
            try:
                if s is None:
                    s = smtplib.SMTP(host, int(port), local_hostname="client.test", timeout=10)
                s.sendmail("sender@client.test", [rcpt], msg)
            except (smtplib.SMTPException, OSError):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass
                s = None
                time.sleep(0.05)
                continue
            if float(pace) > 0:
                time.sleep(float(pace))
            with lock:
                out.write(mid + "\n")
                out.flush()
                accepted[0] += 1
                if at is not None and command and accepted[0] == int(at):
                    started.append(subprocess.Popen(command))
        if s is not None:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    threads = [threading.Thread(target=worker) for _ in range(int(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in started:
        p.wait()


def count(msgdir, mark, accepted_file):
    accepted = set(l.strip() for l in open(accepted_file) if l.strip())
    seen = {}
    pat = re.compile(rb"^Message-Id: <(" + re.escape(mark.encode()) + rb"\.[0-9]+)@client\.test>", re.M | re.I)
    for f in glob.glob(os.path.join(msgdir, "*.eml")):
        head = open(f, "rb").read().split(b"\r\n\r\n", 1)[0]
        m = pat.search(head)
        if m:
            seen.setdefault(m.group(1).decode(), []).append(f)
    missing = sorted(accepted - set(seen))
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    extra = sorted(set(seen) - accepted)
    print("accepted %d arrived %d missing %d duplicates %d extra %d"
          % (len(accepted), len(set(seen) & accepted), len(missing), len(dups), len(extra)))
    for k in missing[:20]:
        print("missing " + k)
    for k, files in sorted(dups.items()):
        faults = []
        for f in files:
            try:
                faults.append(json.load(open(f[:-4] + ".json")).get("fault_after_dot"))
            except (OSError, ValueError):
                faults.append("?")
        print("duplicate %s copies %d fault_after_dot %s" % (k, len(files), faults))
    for k in extra[:20]:
        print("extra %s (arrived, but its 250 never reached the client)" % k)
    return 0 if not missing else 1


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "submit":
        submit(*sys.argv[2:])
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "count":
        sys.exit(count(*sys.argv[2:5]))
    sys.stderr.write(__doc__)
    sys.exit(64)
