# fetch.sh - what the btprelay-fetch tests share (test-fetch.sh, test-fetch-modes.sh):
# the emulator, btprelay-transport and a Postfix that routes through it to the emulator's
# relay (the sink), btprelay-fetch installed, the mailbox destinations MAIL_IMAPS,
# MAIL_POP3 and MAIL_POP3S, the configuration $CONF, and the helpers below.
# Sourced after harness.sh and harness_init.
FETCH_SRC=$top_builddir/plugin/fetch/btprelay-fetch
[ -x "$FETCH_SRC" ] || { echo "Bail out! $FETCH_SRC not built"; exit 99; }
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
harness_start_emulator
harness_install_transport
harness_start_postfix
install -m 755 "$FETCH_SRC" "$WORK/bin/btprelay-fetch"
FETCH_LOG=$WORK/log/fetch.log
PASSWORD=$(emu GET /destinations/MAIL_ONPREM | jq -r '."mail.password"')

# destination NAME PROTOCOL PORT - a mailbox destination behind the Cloud Connector
destination() {
	jq -n --arg n "$1" --arg p "$2" --arg port "$3" --arg pw "$PASSWORD" \
		'{Name:$n, Type:"MAIL", ProxyType:"OnPremise", Authentication:"BasicAuthentication",
		  "mail.store.protocol":$p, ("mail."+$p+".host"):"mail.corp.internal",
		  ("mail."+$p+".port"):$port, "mail.user":"relayuser", "mail.password":$pw}' |
		emu PUT "/destinations/$1" - >/dev/null
}
destination MAIL_IMAPS imaps 993
destination MAIL_POP3 pop3 110
destination MAIL_POP3S pop3s 995

# fetch_conf FILE [key = value...] - the harness configuration plus the fetch keys
fetch_conf() {
	local file=$1
	shift
	{
		grep -v '^\(log\|cache_dir\) ' "$WORK/etc/btprelay.conf"
		echo "log = $FETCH_LOG"
		echo "cache_dir = $WORK/fetch-cache"
		echo "fetch_state_dir = $WORK/fetch-state"
		echo "fetch_smtp_server = 127.0.0.1:$SMTP_PORT"
		echo "fetch_sender = invoices@corp.internal"
		echo "fetch_timeout = 5"
		local line key skip=
		for line in "fetch_sources = MAIL_IMAPS" "fetch_recipient = inbox@corp.example"; do
			key=${line%% *}
			printf '%s\n' "$@" | grep -q "^$key " || echo "$line"
		done
		printf '%s\n' "$@"
	} > "$file"
}
CONF=$WORK/etc/fetch.conf
fetch_conf "$CONF"
mkdir -m 700 "$WORK/fetch-cache"

# run_fetch [CONF] [args] - one pass; output in $WORK/log/fetch.out, status in $RC
run_fetch() {
	local conf=${1:-$CONF}
	[ $# -gt 0 ] && shift
	"$WORK/bin/btprelay-fetch" -c "$conf" "$@" >> "$WORK/log/fetch.out" 2>&1
	RC=$?
}

# make_messages DIR PREFIX N - N messages, CRLF; every 10th 8-bit, every 7th with dot
# lines, the one in the middle 3 MB
make_messages() {
	python3 - "$@" <<'PY'
import os, sys
d, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    lines = [f"Message-ID: <{prefix}-{i}@fetch.test>", "From: Invoices <billing@vendor.example>",
             "To: invoices@corp.internal", "Date: Thu, 03 Dec 2026 02:00:00 +0000",
             f"Subject: invoice {prefix} {i}", "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", ""]
    body = [f"invoice {i} of {prefix}", "amount: 100.00 EUR"]
    if i % 10 == 0:
        body += ["Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u00e9t\u00e9", "\u65e5\u672c\u8a9e"]
    if i % 7 == 0:
        body += [".", "..", ".leading dot", "...three", "end ."]
    if i == n // 2:
        body += ["%06d " % k + "x" * 900 for k in range(3300)]
    data = ("\r\n".join(lines + body) + "\r\n").encode("utf-8")
    if i % 10 == 0:
        data += b"latin-1 bytes: \xe4\xf6\xfc\r\n"
    with open(os.path.join(d, "%04d.eml" % i), "wb") as f:
        f.write(data)
PY
}

# arrivals DIR PREFIX - what reached the sink for the messages of DIR, as JSON:
# delivered (distinct), lost, duplicates, max copies, mismatched (bytes differ)
arrivals() {
	emu GET /messages > "$WORK/messages.json"
	python3 - "$1" "$2" "$WORK/messages.json" <<'PY'
import hashlib, json, os, re, sys
d, prefix, listing = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
want = {}
for name in os.listdir(d):
    data = open(os.path.join(d, name), "rb").read()
    mid = re.search(rb"^Message-ID: <([^>]+)>", data, re.M).group(1).decode()
    want[mid] = hashlib.sha256(data).hexdigest()
copies, mismatched = {}, []
for m in listing:
    try:
        data = open(m["file"], "rb").read()
    except FileNotFoundError:           # a section checked before (forget_arrivals)
        continue
    # Postfix's own Received: header (and its continuation lines) comes first
    data = re.sub(rb"\A(Received:[^\n]*\n([ \t][^\n]*\n)*)+", b"", data)
    found = re.search(rb"^Message-ID: <([^>]+)>", data, re.M)
    if not found or not found.group(1).decode().startswith(prefix + "-"):
        continue
    mid = found.group(1).decode()
    copies[mid] = copies.get(mid, 0) + 1
    if want.get(mid) != hashlib.sha256(data).hexdigest():
        mismatched.append(mid)
print(json.dumps({"delivered": len(copies), "lost": len(set(want) - set(copies)),
                  "duplicates": sum(c - 1 for c in copies.values()),
                  "max_copies": max(copies.values() or [0]), "mismatched": len(mismatched),
                  "first_mismatch": mismatched[:1]}))
PY
}

# settle DIR PREFIX [N] - wait until Postfix's queue is empty and every message of DIR
# (or N of them) arrived; up to 10 minutes, for a machine that is busy elsewhere
settle() {
	local n=${3:-$(ls "$1" | wc -l)} end=$((SECONDS + 600))
	while [ "$SECONDS" -lt "$end" ]; do
		if [ "$(postqueue -c "$PF" -j | wc -l)" = 0 ] &&
			[ "$(grep -c "status=sent" "$WORK/log/maillog")" -ge "$((SENT + n))" ]; then
			break
		fi
		sleep 0.1
	done
	SENT=$(grep -c "status=sent" "$WORK/log/maillog")
	echo "# $2: settled at $(date +%T)"
}
SENT=0

# forget_arrivals - drop the sink's copies checked already, so later checks read less
forget_arrivals() {
	find "$EMU/messages" -name '*.eml' -delete
}

mailbox() {	# JQ - a question about the mailbox's state
	emu GET /mailstore | jq -r "$1"
}

