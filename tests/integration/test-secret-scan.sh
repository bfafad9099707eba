#!/bin/bash
# test-secret-scan.sh - the secret scan of the suite (tests/lib/secret-scan.py)
# finds what it must: each secret planted in a file in every form it can
# travel in (raw, base64 at each alignment, the AUTH PLAIN line of
# "\0user\0password", the AUTH XOAUTH2 line, URL-encoded, JSON-escaped) is
# reported in that file and no other; a clean file passes; and it fails
# closed (exit 2) on a missing file, no file, or no secret. Issue 13: the
# scans were grep -F of raw secrets, so a logged base64 AUTH line passed.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
command -v python3 >/dev/null 2>&1 || harness_skip "python3 not installed"
SCAN=$top_srcdir/tests/lib/secret-scan.py
WORK=$(mktemp -d /tmp/btprelay-secret-scan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
TAP_N=0
TAP_FAILED=0

PASSWORD='Pa55/w0rd+s3cret!& "x'
TOKEN='eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0In0.c2lnbmF0dXJlLXRva2Vu'
printf '%s\n%s\n' "$PASSWORD" "$TOKEN" > "$WORK/secrets.txt"
printf 'relayuser\t%s\nmailuser\t%s\n' "$PASSWORD" "$TOKEN" > "$WORK/pairs.txt"
scan() { python3 "$SCAN" --secrets "$WORK/secrets.txt" --pairs "$WORK/pairs.txt" "$@"; }

# planted FORM SECRET - a log line holding SECRET in FORM, as a file; prints its path
N=0
planted() {
	N=$((N + 1))
	printf 'Dec  2 19:00:00 host btprelay-transport[42]: debug: smtp AUTH: > %s\n' \
		"$(python3 "$SCAN" --plant "$1" "$2")" > "$WORK/planted.$N"
	echo "$WORK/planted.$N"
}

printf 'Dec  2 19:00:00 host postfix/pipe[7]: 4F2: to=<u@corp.example>, status=sent (delivered)\n' > "$WORK/clean"
out=$(scan "$WORK/clean")
tap_ok $? "a clean log: exit 0" "$out"
case $out in "# scanned 1 files"*"no hit") true ;; *) false ;; esac
tap_ok $? "... and it says what it scanned" "$out"

while read -r form which; do
	case $which in
	password) secret=$PASSWORD ;;
	token) secret=$TOKEN ;;
	plain) secret="relayuser	$PASSWORD" ;;
	xoauth2) secret="mailuser	$TOKEN" ;;
	esac
	f=$(planted "$form" "$secret")
	out=$(scan "$WORK/clean" "$f")
	rc=$?
	[ "$rc" = 1 ] && printf '%s\n' "$out" | grep -q "^$f: secret #" &&
		! printf '%s\n' "$out" | grep -q "^$WORK/clean:"
	tap_ok $? "planted $which as $form: found, in that file only" "exit $rc: $out; $(cat "$f")"
done <<'EOF'
raw password
raw token
auth-plain plain
auth-xoauth2 xoauth2
base64+0 password
base64+1 password
base64+2 password
base64+1 token
url password
url-form password
json-slash password
json password
EOF

# the AUTH PLAIN line of a short password: the password's own base64 is too
# short to look for, the argument's is not
printf 'shrt\n' > "$WORK/short.txt"
printf 'relayuser\tshrt\n' > "$WORK/short-pairs.txt"
f=$(planted auth-plain "relayuser	shrt")
out=$(python3 "$SCAN" --secrets "$WORK/short.txt" --pairs "$WORK/short-pairs.txt" "$f")
[ $? = 1 ] && printf '%s\n' "$out" | grep -q 'as PLAIN base64'
tap_ok $? "the AUTH PLAIN line of a 4-byte password: found as the PLAIN argument" "$out"

# fails closed
scan "$WORK/clean" "$WORK/no-such-file" > /dev/null 2>&1
tap_ok $([ $? = 2 ]; echo $?) "a missing file: exit 2, not a clean result"
scan > /dev/null 2>&1
tap_ok $([ $? = 2 ]; echo $?) "no file at all: exit 2"
: > "$WORK/empty.txt"
python3 "$SCAN" --secrets "$WORK/empty.txt" "$WORK/clean" > /dev/null 2>&1
tap_ok $([ $? = 2 ]; echo $?) "no secret to look for: exit 2"
python3 "$SCAN" --secrets "$WORK/no-such-secrets" "$WORK/clean" > /dev/null 2>&1
tap_ok $([ $? = 2 ]; echo $?) "an unreadable secrets file: exit 2"

tap_done
