#!/usr/bin/env python3
"""secret-scan.py - look for secrets, in every form they travel in, in files.

    secret-scan.py --secrets FILE [--pairs FILE] [--plant FORM SECRET] FILE...

--secrets: one secret per line (client secrets, passwords, tokens).
--pairs:   "USER<TAB>SECRET" lines: the AUTH PLAIN argument "\\0USER\\0SECRET"
           (RFC 4616) and the XOAUTH2 string "user=USER^Aauth=Bearer SECRET^A^A"
           of each are looked for too (a relay password or a mail token).
--plant:   print SECRET in FORM (one of the forms below) and exit: tests use it
           to plant a secret and prove the scan finds it.

Forms of each secret: raw; base64 at all three byte alignments (the part
of the encoding that depends on the secret alone, so it is found inside
the base64 of a longer text too), standard and URL-safe alphabets;
URL-encoded (%XX and form '+'); JSON-escaped (\\uXXXX, \\/). The two AUTH
strings of each pair are looked for in base64 (they hold control bytes,
so their raw form is the secret itself, found as such).

Every file is read as bytes (logs, command output, core files). Fails
closed: a missing or unreadable file, no file, or no secret is exit 2, not
a clean result. Exit 0: nothing found ("# scanned ..." on stdout); exit 1:
one line per hit, "FILE: secret #N (abcd...) as FORM".
"""
import base64
import json
import sys
import urllib.parse

MIN_PATTERN = 8		# shorter encodings would match by chance


def b64_aligned(data):
    """(name, pattern) of base64 of data at offsets 0, 1, 2 of a longer text:
    the characters that depend only on data's bytes (whole 3-byte groups)."""
    out = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).decode("ascii")
        first = (k + 2) // 3              # first group made of data's bytes only
        last = (k + len(data)) // 3       # groups that are complete
        pattern = enc[4 * first:4 * last]
        if len(pattern) >= MIN_PATTERN:
            out.append((f"base64+{k}", pattern))
            url = pattern.replace("+", "-").replace("/", "_")
            if url != pattern:
                out.append((f"base64url+{k}", url))
    return out


def forms(secret):
    """(name, bytes) of every form of a text secret."""
    data = secret.encode("utf-8")
    out = [("raw", secret)]
    out += b64_aligned(data)
    for name, enc in (("url", urllib.parse.quote(secret, safe="")),
                      ("url-path", urllib.parse.quote(secret)),
                      ("url-form", urllib.parse.quote_plus(secret)),
                      ("json", json.dumps(secret)[1:-1]),
                      ("json-utf8", json.dumps(secret, ensure_ascii=False)[1:-1]),
                      ("json-slash", json.dumps(secret)[1:-1].replace("/", "\\/"))):
        out.append((name, enc))
    seen, uniq = set(), []
    for name, enc in out:
        b = enc.encode("utf-8") if isinstance(enc, str) else enc
        if b not in seen and (name == "raw" or b != data) and len(b) >= 4:
            seen.add(b)
            uniq.append((name, b))
    return uniq


def pair_forms(user, secret):
    """(name, bytes) of the AUTH arguments that carry user and secret."""
    out = []
    plain = b"\0" + user.encode("utf-8") + b"\0" + secret.encode("utf-8")
    xoauth2 = ("user=%s\x01auth=Bearer %s\x01\x01" % (user, secret)).encode("utf-8")
    for what, data in (("PLAIN", plain), ("XOAUTH2", xoauth2)):
        for name, pattern in b64_aligned(data):
            out.append((f"{what} {name}", pattern.encode("ascii")))
    return out


def plant(form, secret):
    """The planted text of one form, for the self-test."""
    if form == "auth-plain":
        user, _, pw = secret.partition("\t")
        return "AUTH PLAIN " + base64.b64encode(
            b"\0" + user.encode() + b"\0" + pw.encode()).decode()
    if form == "auth-xoauth2":
        user, _, tok = secret.partition("\t")
        return "AUTH XOAUTH2 " + base64.b64encode(
            ("user=%s\x01auth=Bearer %s\x01\x01" % (user, tok)).encode()).decode()
    for k in range(3):
        if form == f"base64+{k}":
            return base64.b64encode(b"x" * k + secret.encode()).decode()
    for name, b in forms(secret):
        if name == form:
            return b.decode("utf-8")
    raise SystemExit(f"secret-scan.py: no form {form!r}")


def fail(why):
    print(f"secret-scan.py: {why}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    secrets_file, pairs_file, files = None, None, []
    i = 0
    while i < len(argv):
        if argv[i] == "--secrets" and i + 1 < len(argv):
            secrets_file, i = argv[i + 1], i + 2
        elif argv[i] == "--pairs" and i + 1 < len(argv):
            pairs_file, i = argv[i + 1], i + 2
        elif argv[i] == "--plant" and i + 2 < len(argv):
            print(plant(argv[i + 1], argv[i + 2]))
            return 0
        elif argv[i].startswith("--"):
            fail(f"unknown option {argv[i]}")
        else:
            files.append(argv[i])
            i += 1
    if secrets_file is None:
        fail("--secrets FILE is required")
    if not files:
        fail("no file to scan (an empty list proves nothing)")
    try:
        with open(secrets_file, encoding="utf-8") as f:
            secrets = [line.rstrip("\n") for line in f if line.strip()]
        pairs = []
        if pairs_file is not None:
            with open(pairs_file, encoding="utf-8") as f:
                pairs = [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]
    except OSError as e:
        fail(f"cannot read the secrets: {e}")
    if not secrets:
        fail(f"{secrets_file}: no secret to look for")

    patterns = []       # (secret number, secret, form name, bytes)
    for n, secret in enumerate(secrets, 1):
        for name, b in forms(secret):
            patterns.append((n, secret, name, b))
    for user, secret in pairs:
        n = secrets.index(secret) + 1 if secret in secrets else 0
        for name, b in pair_forms(user, secret):
            patterns.append((n, secret, name, b))

    hits, total = [], 0
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            fail(f"cannot read {path}: {e}")
        total += len(data)
        for n, secret, name, b in patterns:
            if b in data:
                hits.append(f"{path}: secret #{n} ({secret[:4]}...) as {name}")
    if hits:
        print("\n".join(hits))
        return 1
    print(f"# scanned {len(files)} files ({total} bytes) for {len(secrets)} secrets, "
          f"{len(pairs)} AUTH pairs: {len(patterns)} patterns, no hit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
