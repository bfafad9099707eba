# harness.sh - shared by the integration tests and the demo (bash, sourced).
#
# Starts the BTP emulator and a throwaway Postfix instance that routes
# test domains to btprelay-transport through a pipe(8) service, all on
# loopback, under one work directory that is removed at exit.
#
#   harness_init NAME            work dir, checks (root, postfix, swaks, python3)
#   harness_start_emulator       emulator running; EMU, EMU_CTL set
#   harness_install_transport    binary + btprelay.conf + bindings for user btprelay
#   harness_start_postfix        Postfix on 127.0.0.1:$SMTP_PORT
#   send_mail FROM TO [swaks args...]   prints the Postfix queue id
#   wait_status QID RCPT [STATUS...]    waits for the final maillog line of QID/RCPT
#   emu METHOD PATH [JSON]        the emulator's control API
#   dest_clone NEW FROM [key=value...]  a copy of an emulator destination, changed
#   harness_stop                  everything down (also on EXIT)

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
TRANSPORT_USER=btprelay
WAIT_SECONDS=${WAIT_SECONDS:-40}

harness_skip() {	# reason: a missing tool is a skip (77), never a failure
	echo "1..0 # SKIP $*"
	exit 77
}

harness_init() {
	local name=$1 tool
	[ "$(id -u)" = 0 ] || harness_skip "needs root (a throwaway Postfix instance)"
	for tool in postfix postconf postqueue swaks python3 openssl; do
		command -v "$tool" >/dev/null 2>&1 || harness_skip "$tool not installed (tests/install-deps.sh)"
	done
	TRANSPORT_BIN=$top_builddir/plugin/transport/btprelay-transport
	[ -x "$TRANSPORT_BIN" ] || { echo "Bail out! $TRANSPORT_BIN not built"; exit 99; }
	# Every parent of the work dir must be traversable by postfix and btprelay.
	WORK=$(mktemp -d "/tmp/btprelay-$name.XXXXXX")
	chmod 755 "$WORK"
	mkdir -p "$WORK/log" "$WORK/etc" "$WORK/bin"
	trap harness_stop EXIT
	id "$TRANSPORT_USER" >/dev/null 2>&1 ||
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TRANSPORT_USER"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

emu() {	# METHOD PATH [JSON]
	"$top_srcdir/tests/emulator/emuctl" "$EMU" "$@"
}

# dest_clone NEW FROM [key=value | key:=JSON ...] - a copy of the emulator's destination
# FROM under the name NEW: key=value sets a property (an empty value removes it),
# key:=JSON sets a member to a JSON value (certificates:='[...]' for certificates[])
dest_clone() {
	local new=$1 from=$2 json
	shift 2
	json=$(emu GET "/destinations/$from" | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d.get("destinationConfiguration", d)
d["Name"] = sys.argv[1]
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if k.endswith(":"):
        d[k[:-1]] = json.loads(v)
    elif v:
        d[k] = v
    else:
        d.pop(k, None)
print(json.dumps(d))' "$new" "$@") || return 1
	emu PUT "/destinations/$new" "$json" >/dev/null
}

harness_start_emulator() {
	EMU=$WORK/emu
	mkdir -p "$EMU"
	# EMU_PROXY_PROGRAM: the proxy as that program (btp-fastproxy, tests/bench/run.sh)
	python3 "$top_srcdir/tests/emulator/btp-emulator.py" --dir "$EMU" --log "$WORK/log/emulator.log" \
		${EMU_PROXY_PROGRAM:+--proxy-program "$EMU_PROXY_PROGRAM"} &
	EMU_PID=$!
	local i
	for i in $(seq 150); do
		[ -s "$EMU/ports.json" ] && break
		kill -0 "$EMU_PID" 2>/dev/null || { echo "Bail out! emulator died: $(tail -5 "$WORK/log/emulator.log")"; exit 99; }
		sleep 0.1
	done
	[ -s "$EMU/ports.json" ] || { echo "Bail out! emulator did not start"; exit 99; }
	RELAY_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["relay"])' "$EMU/ports.json")
}

# harness_install_transport ["key = value"...] - the transport, its bindings and
# btprelay.conf for user btprelay; arguments add keys or override the defaults below
harness_install_transport() {
	local line key override
	install -m 755 "$TRANSPORT_BIN" "$WORK/bin/btprelay-transport"
	install -m 755 "$top_builddir/plugin/lmtp/btprelay-lmtp" "$WORK/bin/btprelay-lmtp"
	install -m 644 "$EMU/certs/ca.pem" "$WORK/etc/ca.pem"
	install -m 600 -o "$TRANSPORT_USER" "$EMU/vcap.json" "$WORK/etc/bindings.json"
	touch "$WORK/log/btprelay.log"
	chown "$TRANSPORT_USER" "$WORK/log/btprelay.log"
	install -d -m 700 -o "$TRANSPORT_USER" "$WORK/cache"
	BTPRELAY_LOG=$WORK/log/btprelay.log
	{
		echo "# written by tests/lib/harness.sh"
		for line in \
			"bindings_file = $WORK/etc/bindings.json" \
			"cache_dir = $WORK/cache" \
			"http_ca_file = $WORK/etc/ca.pem" \
			"http_timeout = 3" \
			"smtp_tls_ca_file = $WORK/etc/ca.pem" \
			"smtp_connect_timeout = 5" \
			"smtp_command_timeout = 5" \
			"smtp_data_done_timeout = 10" \
			"delivery_deadline = 60" \
			"log = $BTPRELAY_LOG" \
			"log_level = debug"; do
			key=${line%%=*}
			key=${key%% *}
			for override in "$@"; do
				[ "${override%% *}" = "$key" ] && continue 2
			done
			echo "$line"
		done
		for line in "$@"; do echo "$line"; done
	} > "$WORK/etc/btprelay.conf"
	chmod 644 "$WORK/etc/btprelay.conf"
}

# harness_start_postfix [NAME...] - each NAME also gets the test domain NAME.dest.test,
# routed to the destination NAME (transport_maps allow no regexp substitution)
harness_start_postfix() {
	local name
	PF=$WORK/postfix
	SMTP_PORT=$(free_port)
	mkdir -p "$PF" "$WORK/spool" "$WORK/data"
	chown postfix "$WORK/data"
	cat > "$PF/transport.regexp" <<-'MAP'
	/(^|@)corp\.example$/		btprelay:MAIL_ONPREM
	/(^|@)internet\.example$/	btprelay:MAIL_INTERNET
	/(^|@)noloc\.example$/		btprelay:MAIL_NOLOC
	/(^|@)lmtp\.example$/		lmtp:unix:private/btprelay-lmtp-MAIL_ONPREM
	MAP
	for name in "$@"; do
		printf '/(^|@)%s\\.dest\\.test$/\tbtprelay:%s\n' "$name" "$name" >> "$PF/transport.regexp"
	done
	cat > "$PF/main.cf" <<-CF
	compatibility_level = 3.6
	queue_directory = $WORK/spool
	data_directory = $WORK/data
	myhostname = mta.btprelay.test
	mydestination =
	inet_interfaces = 127.0.0.1
	inet_protocols = ipv4
	mynetworks = 127.0.0.0/8
	smtpd_relay_restrictions = permit_mynetworks, reject
	transport_maps = regexp:$PF/transport.regexp
	# Bounces and anything not routed to btprelay stay on this machine.
	default_transport = discard:
	maillog_file = $WORK/log/maillog
	maillog_file_prefixes = $WORK/log
	btprelay_destination_recipient_limit = 1
	btprelay_time_limit = 120s
	lmtp_send_xforward_command = yes
	minimal_backoff_time = 1s
	maximal_backoff_time = 2s
	queue_run_delay = 1s
	smtputf8_enable = yes
	CF
	# more main.cf lines from the caller (tests/sanitize.sh: the sanitizers' options for pipe(8))
	[ -z "${HARNESS_EXTRA_MAINCF:-}" ] || printf '%s\n' "$HARNESS_EXTRA_MAINCF" >> "$PF/main.cf"
	sed "s|@SMTP_PORT@|$SMTP_PORT|; s|@WORK@|$WORK|g" "$top_srcdir/tests/lib/master.cf.in" > "$PF/master.cf"
	postfix -c "$PF" set-permissions >/dev/null 2>&1 || true
	script -qc "postfix -c $PF start" /dev/null > "$WORK/log/postfix-start.log" 2>&1 ||
		{ echo "Bail out! postfix did not start: $(cat "$WORK/log/postfix-start.log") $(tail -5 "$WORK/log/maillog" 2>/dev/null)"; exit 99; }
	local i
	for i in $(seq 100); do
		python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$SMTP_PORT" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "Bail out! postfix smtpd does not answer on port $SMTP_PORT"; exit 99
}

# send_mail FROM TO [swaks args...] - submit through Postfix's smtpd; prints the queue id
send_mail() {
	local from=$1 to=$2 out
	shift 2
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from "$from" --to "$to" --helo client.test "$@" 2>&1)
	printf '%s\n' "$out" >> "$WORK/log/swaks.log"
	printf '%s\n' "$out" | sed -n 's/.*250 2\.0\.0 Ok: queued as \([0-9A-Za-z]*\).*/\1/p' | tail -1
}

# wait_status QID RCPT [STATUS] - the first maillog line of the delivery agent
# $STATUS_AGENT (pipe: btprelay-transport; lmtp: btprelay-lmtp) for QID and RCPT
# whose status is STATUS (any final status when omitted).
# Prints the line; returns 1 after $WAIT_SECONDS without one.
wait_status() {
	local qid=$1 rcpt=$2 want=${3:-'\(sent\|deferred\|bounced\)'} i line
	[ -n "$qid" ] || { echo "(no queue id)"; return 1; }
	for i in $(seq $((WAIT_SECONDS * 10))); do
		line=$(grep "postfix/${STATUS_AGENT:-pipe}\[[0-9]*\]: $qid: to=<$rcpt>.*status=$want" "$WORK/log/maillog" 2>/dev/null | head -1)
		[ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
		sleep 0.1
	done
	echo "(no status=$want line for $qid <$rcpt> after ${WAIT_SECONDS}s)"
	return 1
}

# wait_deferred QID - wait until QID sits in Postfix's queue, not being delivered
# (not active), with a delay reason: the status line is logged before the queue
# manager moves the file, and with this harness's one-second backoff a deferred
# message moves on from the deferred queue quickly. Prints postqueue -j's entry
# (the whole queue after $WAIT_SECONDS without one, returning 1).
wait_deferred() {
	local qid=$1 i entry
	for i in $(seq $((WAIT_SECONDS * 10))); do
		entry=$(postqueue -c "$PF" -j | jq -c --arg q "$qid" 'select(.queue_id == $q
			and .queue_name != "active" and .queue_name != "hold"
			and any(.recipients[]; .delay_reason != null))')
		[ -n "$entry" ] && { printf '%s\n' "$entry"; return 0; }
		sleep 0.1
	done
	postqueue -c "$PF" -j
	return 1
}

# cache_clear - forget btprelay's cached tokens and destinations (a cold start)
cache_clear() {
	find "$WORK/cache" -mindepth 1 -delete 2>/dev/null
	return 0
}

flush_queue() {
	postqueue -c "$PF" -f
}

# harness_start_milter - btprelay-milter ($MILTER_BIN) as its unit file runs
# it: started as root to open its socket (writable by Postfix's smtpd: umask
# 011), then user $TRANSPORT_USER. Sets MILTER_DIR, MILTER_SOCK and
# MILTER_PID; returns 1 when the socket does not appear within 10 s
# ($WORK/log/milter.stderr says why). harness_stop stops it.
harness_start_milter() {
	MILTER_DIR=$WORK/milter
	MILTER_SOCK=$MILTER_DIR/milter.sock
	mkdir -p "$MILTER_DIR"
	chown "$TRANSPORT_USER" "$MILTER_DIR"
	(umask 011; exec "${MILTER_BIN:?set by the test}" -f -c "$WORK/etc/btprelay.conf" -p "unix:$MILTER_SOCK" \
		-u "$TRANSPORT_USER" -P "$MILTER_DIR/pid") 2>> "$WORK/log/milter.stderr" &
	MILTER_PID=$!
	for _ in $(seq 100); do
		[ -S "$MILTER_SOCK" ] && return 0
		kill -0 "$MILTER_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -S "$MILTER_SOCK" ]
}

# harness_stop_milter - stop the milter harness_start_milter started, if it runs
harness_stop_milter() {
	if [ -n "${MILTER_PID:-}" ]; then
		kill "$MILTER_PID" 2>/dev/null
		wait "$MILTER_PID" 2>/dev/null
		MILTER_PID=
	fi
}

harness_stop() {
	harness_stop_milter
	if [ -n "${PF:-}" ] && [ -f "$PF/main.cf" ]; then
		postfix -c "$PF" stop >/dev/null 2>&1 || postfix -c "$PF" abort >/dev/null 2>&1 || true
	fi
	if [ -n "${EMU_PID:-}" ]; then
		kill "$EMU_PID" 2>/dev/null
		wait "$EMU_PID" 2>/dev/null
	fi
	if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
		if [ -n "${KEEP_WORK:-}" ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
	fi
}

# secret_scan FILE... - tests/lib/secret-scan.py over the files: every secret the
# emulator handed out (secrets.txt) and those of $SECRET_SCAN_EXTRA (files, one
# secret a line), raw, base64 at each alignment, URL-encoded, JSON-escaped; and
# the AUTH PLAIN and XOAUTH2 arguments of each mail.user of the emulator's
# destinations (and relayuser) with each secret. Prints the hits; returns 0
# clean, 1 hits, 2 when it cannot scan (a missing file is not clean).
secret_scan() {
	local dir=$WORK/secret-scan
	mkdir -p "$dir"
	cat "$EMU/secrets.txt" ${SECRET_SCAN_EXTRA:-} | grep -v '^$' | sort -u > "$dir/secrets.txt"
	emu GET '/destinations?all=true' > "$dir/destinations.json" 2>/dev/null || echo '{}' > "$dir/destinations.json"
	python3 - "$dir/destinations.json" "$dir/secrets.txt" > "$dir/pairs.txt" <<'PY'
import json, sys
users = {"relayuser"}
def walk(v):
    if isinstance(v, dict):
        if isinstance(v.get("mail.user"), str):
            users.add(v["mail.user"])
        for x in v.values():
            walk(x)
walk(json.load(open(sys.argv[1])))
for secret in open(sys.argv[2]).read().split("\n"):
    if secret:
        for user in sorted(users):
            print(f"{user}\t{secret}")
PY
	python3 "$top_srcdir/tests/lib/secret-scan.py" --secrets "$dir/secrets.txt" --pairs "$dir/pairs.txt" "$@"
}

# TAP helpers for scripts
TAP_N=0
TAP_FAILED=0
tap_ok() {	# CONDITION-EXIT-STATUS DESCRIPTION [DIAGNOSTIC]
	TAP_N=$((TAP_N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $TAP_N - $2"
	else
		TAP_FAILED=$((TAP_FAILED + 1))
		echo "not ok $TAP_N - $2"
		[ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/#   /'
	fi
	return 0
}
tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" = 0 ]
}
