#!/bin/bash
# test-miltertest.sh - btprelay-milter scenarios driven by miltertest (TAP).
#
# Each scenario is t-NAME.lua (the MTA side, run by miltertest), t-NAME.conf
# (btprelay.conf for it; @WORK@ and @EMU@ are filled in) and, optionally,
# t-NAME.expect: lines the filter's log and miltertest's verbose output must
# (or must not) have, one per line:
#   log REGEX | nolog REGEX | logcount N REGEX      (grep -E on the filter's log)
#   out REGEX | noout REGEX | outcount N REGEX      (on miltertest -vv output)
# A .conf whose first line is "# needs: emulator" gets the BTP emulator
# (tests/emulator/btp-emulator.py); it is started once, when first needed.
# One TAP line per scenario, plus the -n configuration checks. A missing
# miltertest is a skip (77).

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
HERE=$top_srcdir/tests/milter
MILTER=$top_builddir/plugin/milter/btprelay-milter

command -v miltertest >/dev/null 2>&1 ||
	{ echo "1..0 # SKIP miltertest not installed (tests/install-deps.sh)"; exit 77; }
[ -x "$MILTER" ] || { echo "Bail out! $MILTER not built"; exit 99; }

WORK=$(mktemp -d /tmp/btprelay-miltertest.XXXXXX)
EMU=
EMU_PID=
cleanup() {
	[ -n "$EMU_PID" ] && { kill "$EMU_PID" 2>/dev/null; wait "$EMU_PID" 2>/dev/null; }
	if [ -n "${KEEP_WORK:-}" ]; then echo "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

N=0
FAILED=0
tap() {	# STATUS DESCRIPTION [DIAGNOSTIC-FILE]
	N=$((N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $N - $2"
	else
		FAILED=$((FAILED + 1))
		echo "not ok $N - $2"
		[ -n "${3:-}" ] && [ -s "$3" ] && sed 's/^/#   /' "$3"
	fi
}

# Destinations for every scenario but t-outage (a file, the cheapest source).
cat > "$WORK/destinations.json" <<'JSON'
[
 {"Name":"MAIL_OK","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1",
  "mail.smtp.port":"2525","mail.smtp.from":"noreply@corp.example"},
 {"Name":"MAIL_OK2","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1",
  "mail.smtp.port":"2526","mail.from":"other@corp2.example"},
 {"Name":"MAIL_NOFROM","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1",
  "mail.smtp.port":"2527"},
 {"Name":"MAIL_HTTP","Type":"HTTP","ProxyType":"Internet","URL":"https://example.net"},
 {"Name":"MAIL_NOPORT","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1"}
]
JSON
sed 's/^\]$/ ,{"Name":"MAIL_NEW","Type":"MAIL","ProxyType":"Internet","mail.smtp.host":"127.0.0.1","mail.smtp.port":"2528"}\n]/' \
	"$WORK/destinations.json" > "$WORK/destinations-new.json"
chmod 600 "$WORK"/destinations*.json

# start_emulator - the BTP emulator in $WORK/emu; 0 when it runs
start_emulator() {
	[ -n "$EMU" ] && return 0
	command -v python3 >/dev/null 2>&1 || return 1
	[ -f "$top_srcdir/tests/emulator/btp-emulator.py" ] || return 1
	EMU=$WORK/emu
	mkdir -p "$EMU"
	python3 "$top_srcdir/tests/emulator/btp-emulator.py" --dir "$EMU" --log "$WORK/emulator.log" --quiet &
	EMU_PID=$!
	local i
	for i in $(seq 150); do
		[ -s "$EMU/ports.json" ] && break
		kill -0 "$EMU_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$EMU/ports.json" ] || { EMU=; return 1; }
	chmod 600 "$EMU/vcap.json"
	return 0
}

# render TEMPLATE NAME OUT - a scenario's configuration with its socket and log
render() {
	sed -e "s|@WORK@|$WORK|g" -e "s|@EMU@|$EMU|g" "$1" > "$3"
	{
		echo "milter_socket = unix:$WORK/$2.sock"
		echo "log = $WORK/$2.log"
		echo "log_level = debug"
	} >> "$3"
}

# expectations NAME - check t-NAME.expect; failures go to $WORK/NAME.why
expectations() {
	local name=$1 kind n re file got rc=0
	[ -f "$HERE/$name.expect" ] || return 0
	while read -r kind re; do
		case $kind in ''|'#'*) continue ;; esac
		n=
		case $kind in *count) n=${re%% *}; re=${re#* } ;; esac
		case $kind in log*|nolog) file=$WORK/$name.log ;; *) file=$WORK/$name.out ;; esac
		case $kind in
		log|out) grep -Eq -- "$re" "$file" && continue ;;
		nolog|noout) grep -Eq -- "$re" "$file" || continue ;;
		logcount|outcount)
			got=$(grep -Ec -- "$re" "$file")
			[ "$got" = "$n" ] && continue
			re="$re (found $got times)" ;;
		*) re="unknown expectation kind $kind" ;;
		esac
		echo "expected: $kind $n $re" >> "$WORK/$name.why"
		rc=1
	done < "$HERE/$name.expect"
	[ "$rc" = 0 ] || { echo "--- $name.log:"; tail -20 "$WORK/$name.log"; } >> "$WORK/$name.why" 2>&1
	return $rc
}

for lua in "$HERE"/t-*.lua; do
	name=$(basename "$lua" .lua)
	conf=$WORK/$name.conf
	if head -1 "$HERE/$name.conf" | grep -q '^# needs: emulator'; then
		if ! start_emulator; then
			N=$((N + 1))
			echo "ok $N - $name # SKIP the BTP emulator cannot be started"
			continue
		fi
	fi
	render "$HERE/$name.conf" "$name" "$conf"
	[ -f "$HERE/$name.new.conf" ] && render "$HERE/$name.new.conf" "$name" "$WORK/$name.new.conf"
	emuctl=
	[ -n "$EMU" ] && emuctl="$top_srcdir/tests/emulator/emuctl $EMU"
	timeout 120 miltertest -vv -D srcdir="$top_srcdir" -D milter="$MILTER" -D conf="$conf" \
		-D sock="unix:$WORK/$name.sock" -D work="$WORK" -D scenario="$name" \
		-D emuctl="$emuctl" -s "$lua" > "$WORK/$name.out" 2>&1
	rc=$?
	if [ "$rc" != 0 ]; then
		{ echo "miltertest exited $rc:"; grep -v 'mt_milter_\|macro(s) sent\|sent on fd' "$WORK/$name.out" | tail -15
		  echo "--- $name.log:"; tail -15 "$WORK/$name.log"; } > "$WORK/$name.why" 2>&1
	else
		expectations "$name"
		rc=$?
	fi
	tap "$rc" "$(sed -n '1s/^-- *//p' "$lua")" "$WORK/$name.why"
done

# -n: the configuration check refuses what would break the milter at run time
cat > "$WORK/good.conf" <<EOF
bindings_file =
destinations_file = $WORK/destinations.json
EOF
"$MILTER" -n -c "$WORK/good.conf" > "$WORK/n.out" 2>&1
tap $? "-n accepts a valid configuration" "$WORK/n.out"
check_refused() {	# DESCRIPTION LINE EXPECTED-TEXT
	{ echo "bindings_file ="; echo "$2"; } > "$WORK/bad.conf"
	"$MILTER" -n -c "$WORK/bad.conf" > "$WORK/n.out" 2>&1
	local rc=$?
	[ "$rc" = 78 ] && grep -q -- "$3" "$WORK/n.out"
	tap $? "-n refuses $1 (exit 78)" "$WORK/n.out"
}
check_refused "a lookup timeout of 25 s" "milter_lookup_timeout = 25" "must stay below 25 s"
check_refused "an unknown action" "milter_on_not_found = bounce" 'bad value for milter_on_not_found: "bounce"'
check_refused "an unknown sender policy" "milter_sender_policy = always" 'keep or rewrite'
check_refused "an unknown key" "milter_unknown = 1" 'unknown key "milter_unknown"'

# daemon mode: detaches, writes the pid file, survives a burst of SIGHUPs
# (libmilter alone would stop on the first), cleans up after SIGTERM
render "$WORK/good.conf" daemon "$WORK/daemon.conf"
"$MILTER" -c "$WORK/daemon.conf" -P "$WORK/daemon.pid" > "$WORK/daemon.out" 2>&1
rc=$?
for i in $(seq 50); do [ -s "$WORK/daemon.pid" ] && [ -S "$WORK/daemon.sock" ] && break; sleep 0.1; done
pid=$(cat "$WORK/daemon.pid" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$WORK/daemon.sock" ]
tap $? "daemon: detached, pid file and socket in place" "$WORK/daemon.out"
if [ -n "$pid" ]; then
	for i in $(seq 20); do kill -HUP "$pid" 2>/dev/null; done
	for i in $(seq 50); do grep -q "configuration reloaded" "$WORK/daemon.log" && break; sleep 0.1; done
	sleep 0.5
	kill -0 "$pid" 2>/dev/null && grep -q "configuration reloaded" "$WORK/daemon.log" &&
		! grep -q "libmilter stopped on its own" "$WORK/daemon.log"
	tap $? "daemon: 20 SIGHUPs in a row reload it, and it keeps running" "$WORK/daemon.log"
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$pid" 2>/dev/null && [ ! -e "$WORK/daemon.pid" ] && [ ! -e "$WORK/daemon.sock" ]
	tap $? "daemon: SIGTERM stops it; pid file and socket removed" "$WORK/daemon.log"
fi

echo "1..$N"
[ "$FAILED" = 0 ]
