#!/bin/bash
# test-valgrind.sh - btprelay-transport under valgrind (memcheck) against the
# BTP emulator, without Postfix: the transport is run directly as user
# btprelay, the way pipe(8) runs it, for the scenarios of a delivery's life
# (success both ways, outages, refusals, a hanging and a vanishing relay, a
# 5 MB message); and btprelay-lmtp for one LMTP session of three transactions
# over one relay session (success, a refused recipient, success again). Each scenario passes when valgrind reports no error and no
# definite or indirect leak, and the exit code and the first bytes of the
# output are the expected ones (0; 75 with "4."; 69 with "5.").
# Skips (77) without valgrind or root, or when the transport is an ASan build.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
command -v valgrind >/dev/null 2>&1 || harness_skip "valgrind not installed (tests/install-deps.sh)"
bin=$top_builddir/plugin/transport/btprelay-transport
[ -x "$bin" ] && grep -q __asan_init "$bin" 2>/dev/null &&
	harness_skip "$bin is an ASan build: valgrind cannot run it"
harness_init valgrind
harness_start_emulator
# valgrind makes everything 20-50 times slower: give TLS and HTTP their time
harness_install_transport "http_timeout = 15" "smtp_connect_timeout = 30" \
	"smtp_command_timeout = 30" "smtp_data_done_timeout = 60" "delivery_deadline = 300"
sed 's/^smtp_command_timeout = .*/smtp_command_timeout = 3/' "$WORK/etc/btprelay.conf" \
	> "$WORK/etc/short-timeout.conf"
chmod 644 "$WORK/etc/short-timeout.conf"
VG=$WORK/valgrind
install -d -m 755 -o "$TRANSPORT_USER" "$VG"

printf 'Subject: valgrind\nFrom: sender@client.test\nTo: user@corp.example\n\n.leading dot\nbody\n' \
	> "$WORK/small.eml"
python3 - "$WORK/big.eml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("Subject: valgrind 5 MB\nFrom: sender@client.test\n\n")
    n = 0
    while n < 5 * 1024 * 1024:
        line = ("." if n % 7 == 0 else "") + "line %08d " % n + "x" * 60 + "\n"
        f.write(line)
        n += len(line)
PY
chmod 644 "$WORK/small.eml" "$WORK/big.eml"

N=0
# run NAME WANT_EXIT WANT_PREFIX CONF MESSAGE DESTINATION RECIPIENT [FAULTS-JSON]
run() {
	local name=$1 want_rc=$2 want_prefix=$3 conf=$4 msg=$5 dest=$6 rcpt=$7 faults=${8:-} rc out vlog diag good=0
	N=$((N + 1))
	emu POST /reset >/dev/null
	cache_clear
	[ -n "$faults" ] && emu POST /faults "$faults" >/dev/null
	vlog=$VG/$N.log
	out=$(runuser -u "$TRANSPORT_USER" -- valgrind --quiet --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
		--log-file="$vlog" "$WORK/bin/btprelay-transport" -c "$conf" -q "VG$N" \
		-s "$(stat -c %s "$msg")" -f sender@client.test -d "$dest" -- "$rcpt" < "$msg" 2>&1)
	rc=$?
	[ "$rc" = "$want_rc" ] || good=1
	case $out in "$want_prefix"*) ;; *) good=1 ;; esac
	diag="exit $rc (want $want_rc), output: $out"
	[ -s "$vlog" ] && diag="$diag
$(head -60 "$vlog")"
	tap_ok "$good" "valgrind: $name: exit $want_rc, output \"$want_prefix...\", no memory errors or leaks" "$diag"
}

CONF=$WORK/etc/btprelay.conf
run "OnPremise relay, success" 0 "250" "$CONF" "$WORK/small.eml" MAIL_ONPREM user@corp.example
run "Internet relay, success" 0 "250" "$CONF" "$WORK/small.eml" MAIL_INTERNET user@internet.example
run "token service down" 75 "4.4.3" "$CONF" "$WORK/small.eml" MAIL_ONPREM user@corp.example \
	'{"token":"refuse"}'
run "destination not found" 75 "4.3.5" "$CONF" "$WORK/small.eml" MAIL_MISSING user@corp.example
run "proxy REP 04" 75 "4.4.1" "$CONF" "$WORK/small.eml" MAIL_ONPREM user@corp.example \
	'{"proxy_rep":4}'
run "relay 550 at RCPT" 69 "5.1.1" "$CONF" "$WORK/small.eml" MAIL_ONPREM nobody@corp.example \
	'{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown"}}'
run "relay hangs at RCPT (3 s command timeout)" 75 "4.4.2" "$WORK/etc/short-timeout.conf" \
	"$WORK/small.eml" MAIL_ONPREM user@corp.example '{"relay":{"rcpt":"hang"}}'
run "relay closes the connection after DATA" 75 "4.4.2" "$CONF" "$WORK/small.eml" MAIL_ONPREM \
	user@corp.example '{"relay":{"eod":"close"}}'
run "5 MB message, streamed" 0 "250" "$CONF" "$WORK/big.eml" MAIL_ONPREM user@corp.example

# btprelay-lmtp: one LMTP session on a socketpair, as spawn(8) gives it one
emu POST /reset >/dev/null
cache_clear
emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown"}}' >/dev/null
vlog=$VG/lmtp.log
out=$(python3 - "$vlog" "$CONF" "$TRANSPORT_USER" "$WORK/bin/btprelay-lmtp" <<'PY' 2>&1
import socket, subprocess, sys
vlog, conf, user, prog = sys.argv[1:]
ours, theirs = socket.socketpair()
p = subprocess.Popen(["runuser", "-u", user, "--", "valgrind", "--quiet", "--error-exitcode=99",
                      "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                      "--show-leak-kinds=definite,indirect", "--log-file=" + vlog,
                      prog, "-c", conf, "-d", "MAIL_ONPREM"], stdin=theirs, stdout=theirs)
theirs.close()
ours.settimeout(300)
f = ours.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines
got = [reply()[0]]
ours.sendall(b"LHLO mta.test\r\n")
got.append(reply()[-1])
def message(rcpts, subject):
    ours.sendall(b"MAIL FROM:<sender@client.test>\r\n" +
                 b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts) + b"DATA\r\n")
    for _ in range(2 + len(rcpts)):
        got.append(reply()[0])
    ours.sendall(b"Subject: " + subject.encode() + b"\r\n\r\n..dot\r\nbody\r\n.\r\n")
    for _ in rcpts:
        got.append(reply()[0])
message(["user@corp.example"], "one")
message(["user@corp.example", "nobody@corp.example"], "two")
message(["user@corp.example"], "three")
ours.sendall(b"QUIT\r\n")
got.append(reply()[0])
print("exit %d" % p.wait(timeout=120))
print("\n".join(got))
PY
)
good=0
for want in '^exit 0$' '^250 2\.0\.0 relayed: 250' '^451 4\.0\.0 delivery not attempted' \
	'^550 5\.1\.1 .*User unknown' '^221 '; do
	printf '%s\n' "$out" | grep -q -- "$want" || good=1
done
[ "$(printf '%s\n' "$out" | grep -c '^250 2\.0\.0 relayed')" = 2 ] || good=1
[ "$(emu GET /counters | jq -r .proxy_connections)" = 1 ] || good=1
[ -s "$vlog" ] && good=1
tap_ok "$good" "valgrind: btprelay-lmtp, three transactions on one relay session: replies per recipient, no memory errors or leaks" \
	"$out
proxy connections: $(emu GET /counters | jq -r .proxy_connections)
$(head -60 "$vlog" 2>/dev/null)"

tap_done
