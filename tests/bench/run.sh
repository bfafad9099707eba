#!/bin/bash
# run.sh - btprelay's benchmarks (issue 7): throughput against Postfix's own smtp
# client, round trips under a fixed delay, CPU and memory per delivery, cache
# efficiency, a profile; writes tests/bench/RESULTS.md. See tests/bench/README.md.
#
#   top_builddir=BUILD tests/bench/run.sh [-n N] [-o FILE] [--quick] [--phases LIST]
#
#   -n N          messages per throughput phase (default 1000; --quick: 50)
#   -o FILE       where to write the report (default tests/bench/RESULTS.md)
#   --quick       the reduced run of tests/bench/test-bench.sh: few messages, small
#                 sizes, two runs per timing, no callgrind, no npm peer
#   --phases LIST comma-separated subset of: throughput,expiry,rtt,cost,profile,peer
#   --tsv FILE    also write the raw figures (KEY<TAB>VALUE lines) to FILE
#   --baseline DIR  another build (its top_builddir) measured in the same run, under
#                 the same load: "before" figures next to this build's ("after")
#   --baseline-label TEXT  what the baseline is, for the report (e.g. a commit)
#   --python-proxy  the emulator's Python proxy (the reference) instead of btp-fastproxy
#
# Needs root (a throwaway Postfix, network namespaces), postfix (smtp-source,
# smtp-sink), python3, openssl, swaks; hyperfine, GNU time, nft, perf, valgrind
# and npm are used when present (a figure whose tool is missing says so).
# Exit 0 with the report written; 77 when a required tool is missing; 1 when a
# measurement could not be made (the report then says which and why).
set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$BENCH_DIR/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir

N=1000
OUT=$top_srcdir/tests/bench/RESULTS.md
QUICK=0
TSV=
BASELINE=
BASELINE_LABEL=
PYTHON_PROXY=0
PHASES=throughput,expiry,rtt,cost,profile,peer
ARGS=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	-o) OUT=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--phases) PHASES=$2; shift 2 ;;
	--tsv) TSV=$2; shift 2 ;;
	--baseline) BASELINE=$2; shift 2 ;;
	--baseline-label) BASELINE_LABEL=$2; shift 2 ;;
	--python-proxy) PYTHON_PROXY=1; shift ;;
	-h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see -h)" >&2; exit 2 ;;
	esac
done
if [ "$QUICK" = 1 ]; then
	case " ${ARGS[*]} " in *" -n "*) ;; *) N=50 ;; esac
fi
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
case $TSV in /*|"") ;; *) TSV=$PWD/$TSV ;; esac
if [ -n "$BASELINE" ]; then
	case $BASELINE in /*) ;; *) BASELINE=$PWD/$BASELINE ;; esac
	[ -x "$BASELINE/plugin/transport/btprelay-transport" ] ||
		{ echo "run.sh: --baseline $BASELINE: no plugin/transport/btprelay-transport built there" >&2; exit 2; }
fi

# --- outer level: private network namespaces, then this script again inside ------------
# Everything runs inside a namespace of its own (its own loopback), so the nft
# rules below touch nothing else on the machine; a second namespace is the
# "MTA side" of the delayed link for the round-trip figures.
if [ -z "${BENCH_INNER:-}" ]; then
	if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (Postfix, network namespaces)"; exit 77; fi
	NS=btbench-$$
	if command -v ip >/dev/null 2>&1 && ip netns add "$NS" 2>/dev/null; then
		if ip netns add "$NS-mta" 2>/dev/null; then
			ip -n "$NS-mta" link set lo up
		fi
		ip -n "$NS" link set lo up
		BENCH_INNER=1 BENCH_NS=$NS ip netns exec "$NS" bash "$0" "${ARGS[@]}"
		rc=$?
		ip netns del "$NS-mta" 2>/dev/null
		ip netns del "$NS"
		exit $rc
	fi
	# No namespaces: run here, without the sink behind the proxy and without the delay.
	BENCH_INNER=1 BENCH_NS= BENCH_NONS_WHY="ip netns add failed or ip(8) missing" bash "$0" "${ARGS[@]}"
	exit $?
fi

# --- inner level --------------------------------------------------------------------------
. "$top_srcdir/tests/lib/harness.sh"
command -v smtp-source >/dev/null 2>&1 && command -v smtp-sink >/dev/null 2>&1 ||
	harness_skip "smtp-source/smtp-sink not installed (package postfix)"
harness_init bench
BENCH_PY="python3 $BENCH_DIR/bench.py"
# as user btprelay: root's PATH may lead to an interpreter under /root
USER_PY=python3
[ -x /usr/bin/python3 ] && USER_PY=/usr/bin/python3
RES=$WORK/results.tsv
: > "$RES"
RUN_FAILED=0
PIDS_TO_STOP=""

bench_stop() {
	local pid
	for pid in $PIDS_TO_STOP; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	PIDS_TO_STOP=""
	declare -F link_down >/dev/null && link_down
	[ -n "${BENCH_NS:-}" ] && command -v nft >/dev/null 2>&1 && nft delete table ip btbench 2>/dev/null
	return 0
}
trap 'bench_stop; harness_stop' EXIT

rec() {	# KEY VALUE... - one figure for the report
	local k=$1
	shift
	printf '%s\t%s\n' "$k" "$*" | sed ':a;N;$!ba;s/\n/\\n/g' >> "$RES"
}
note() { echo "# $*" >&2; }
fail() { note "FAILED: $*"; rec "fail.$((++RUN_FAILED))" "$*"; }
phase_on() { case ",$PHASES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
now() { date +%s.%N; }
calc() { python3 -c "import math; print($1)"; }
have() { command -v "$1" >/dev/null 2>&1; }

# as_btprelay CMD... - run as the pipe service's user, as Postfix does
as_btprelay() { setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" --init-groups -- "$@"; }

counter() {	# the emulator's counters: "tokens finds proxy_conns relay_conns relay_msgs tokens_conn tokens_dest"
	emu GET /counters | python3 -c '
import json, sys
c = json.load(sys.stdin)
t = c["token_requests"]
print(t["total"], c["find_requests"], c["proxy_connections"], c["relay_connections"],
      c["relay_messages"], t["connectivity"], t["destination"])'
}

# --- machine ------------------------------------------------------------------------------
rec machine.nproc "$(nproc)"
rec machine.model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
rec machine.kernel "$(uname -sr)"
rec machine.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
rec machine.loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"
rec machine.mem "$(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
rec machine.postfix "$(postconf -d -h mail_version 2>/dev/null)"
rec machine.openssl "$(openssl version | cut -d' ' -f1-2)"
rec machine.python "$(python3 -V 2>&1)"
rec run.n "$N"
rec run.quick "$QUICK"
rec run.phases "$PHASES"
rec run.netns "${BENCH_NS:+yes}"
rec run.nons_why "${BENCH_NONS_WHY:-}"
rec run.commit "$(git -C "$top_srcdir" describe --always --dirty 2>/dev/null || echo unknown)"
rec run.baseline "${BASELINE:+${BASELINE_LABEL:-the build in $BASELINE}}"

# --- set-up: emulator, sink, transport, Postfix -------------------------------------------
# The Connectivity proxy: btp-fastproxy (C, splice(2); tests/emulator/btp-fastproxy.c)
# when built, so that the bench measures btprelay and not a Python relay loop.
EMU_PROXY_PROGRAM=
# (a check program: built by make check; built here when the bench runs on its own)
[ "$PYTHON_PROXY" = 0 ] && [ ! -x "$top_builddir/tests/emulator/btp-fastproxy" ] &&
	make -C "$top_builddir" tests/emulator/btp-fastproxy > /dev/null 2>&1
if [ "$PYTHON_PROXY" = 0 ] && [ -x "$top_builddir/tests/emulator/btp-fastproxy" ]; then
	EMU_PROXY_PROGRAM=$top_builddir/tests/emulator/btp-fastproxy
	rec run.proxy fast
else
	rec run.proxy python
	[ "$PYTHON_PROXY" = 0 ] && rec run.proxy_why "$top_builddir/tests/emulator/btp-fastproxy not built"
fi
export EMU_PROXY_PROGRAM
harness_start_emulator
PROXY_PID=
[ -n "$EMU_PROXY_PROGRAM" ] && PROXY_PID=$(cat "$EMU/proxy.pid")
proxycpu() { $BENCH_PY proxycpu "${PROXY_PID:-none}" "$EMU/proxy.rusage"; }
EMU_PORTS=$EMU/ports.json
port_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$EMU_PORTS" "$1"; }
RELAY_SMTPS_PORT=$(port_of relay_smtps)

SINK_PORT=$(free_port)
mkdir -p "$WORK/sink"
chown postfix "$WORK/sink"
SINK_DUMP=$WORK/sink/dump
smtp-sink -u postfix -c -D "$SINK_DUMP" "127.0.0.1:$SINK_PORT" 1024 > "$WORK/log/sink.out" 2>&1 &
SINK_PID=$!
PIDS_TO_STOP="$PIDS_TO_STOP $SINK_PID"

harness_install_transport
CONF=$WORK/etc/btprelay.conf
# the baseline build's transport, for "before" figures in the same run (--baseline)
if [ -n "$BASELINE" ]; then
	install -m 755 "$BASELINE/plugin/transport/btprelay-transport" "$WORK/bin/btprelay-transport-base"
	install -m 755 "$BASELINE/plugin/lmtp/btprelay-lmtp" "$WORK/bin/btprelay-lmtp-base"
fi
mkdir -p "$WORK/cache"
chown "$TRANSPORT_USER" "$WORK/cache"
chmod 700 "$WORK/cache"
write_conf() {	# [extra lines...] - production-like: log level info, the shared cache on
	{
		echo "# written by tests/bench/run.sh"
		echo "bindings_file = $WORK/etc/bindings.json"
		echo "http_ca_file = $WORK/etc/ca.pem"
		echo "smtp_tls_ca_file = $WORK/etc/ca.pem"
		echo "http_timeout = 10"
		echo "delivery_deadline = 300"
		echo "cache_dir = $WORK/cache"
		echo "log = $BTPRELAY_LOG"
		echo "log_level = info"
		for l in "$@"; do echo "$l"; done
	} > "$CONF"
	chmod 644 "$CONF"
}
write_conf

# The proxy reaches the sink: the emulator maps mail.corp.internal:465 to its
# relay_smtps port; inside this namespace, connections to that port go to the
# sink instead (plain SMTP on 465: the destination says mail.transport.protocol=smtp).
SINK_BEHIND_PROXY=0
if [ -n "${BENCH_NS:-}" ] && have nft; then
	if nft -f - <<-NFT
	table ip btbench {
		chain output {
			type nat hook output priority -100;
			ip daddr 127.0.0.1 tcp dport $RELAY_SMTPS_PORT dnat to 127.0.0.1:$SINK_PORT;
		}
	}
	NFT
	then SINK_BEHIND_PROXY=1
	else rec run.sink_proxy_why "nft could not add the redirect"
	fi
else
	rec run.sink_proxy_why "${BENCH_NONS_WHY:-nft not installed (apt-get install nftables)}"
fi
rec run.sink_behind_proxy "$SINK_BEHIND_PROXY"

bench_destinations() {	# our destinations, again after every /reset
	dest_clone BENCH_SINK_PROXY MAIL_ONPREM Authentication=NoAuthentication mail.user= \
		mail.password= mail.smtp.auth=false mail.smtp.port=465 mail.smtp.starttls.enable=false
	emu PUT /destinations/BENCH_SINK_DIRECT "{\"Name\":\"BENCH_SINK_DIRECT\",\"Type\":\"MAIL\",
		\"ProxyType\":\"Internet\",\"Authentication\":\"NoAuthentication\",
		\"mail.smtp.host\":\"127.0.0.1\",\"mail.smtp.port\":\"$SINK_PORT\",
		\"mail.transport.protocol\":\"smtp\",\"mail.smtp.starttls.enable\":\"false\"}" >/dev/null
	dest_clone BENCH_PLAIN MAIL_ONPREM Authentication=NoAuthentication mail.user= mail.password= \
		mail.smtp.auth=false mail.smtp.starttls.enable=false
	dest_clone BENCH_TLS MAIL_ONPREM Authentication=NoAuthentication mail.user= mail.password= \
		mail.smtp.auth=false mail.smtp.starttls.enable=true
}
bench_destinations

harness_start_postfix
cat >> "$PF/transport.regexp" <<-MAP
/(^|@)tp-smtp\.example\$/	smtp:[127.0.0.1]:$SINK_PORT
/(^|@)tp-proxy-sink\.example\$/	btprelay:BENCH_SINK_PROXY
/(^|@)tp-direct-sink\.example\$/	btprelay:BENCH_SINK_DIRECT
/(^|@)tp-proxy-relay\.example\$/	btprelay:MAIL_ONPREM
/(^|@)tp-pipe-floor\.example\$/	benchnull:
/(^|@)tp-lmtp-sink\.example\$/	lmtp:unix:private/btprelay-lmtp-sink
/(^|@)tp-lmtp-relay\.example\$/	lmtp:unix:private/btprelay-lmtp-relay
MAP
# btprelay-lmtp, as config/postfix/master.cf shows it: one spawn(8) service per destination
for svc in sink:BENCH_SINK_PROXY relay:MAIL_ONPREM; do
	cat >> "$PF/master.cf" <<-CF
	btprelay-lmtp-${svc%%:*} unix -  n       n       -       -       spawn
	  user=$TRANSPORT_USER argv=$WORK/bin/btprelay-lmtp -c $CONF -d ${svc#*:}
	CF
done
# The floor of one process per delivery: pipe(8) running a program that only reads
# the message (dd), with btprelay's pipe settings.
cat >> "$PF/master.cf" <<-CF
benchnull unix  -       n       n       -       -       pipe
  flags=q user=$TRANSPORT_USER null_sender=
  argv=/bin/dd of=/dev/null status=none
CF
postconf -c "$PF" -e "benchnull_destination_recipient_limit = 1" \
	"benchnull_destination_concurrency_limit = 20"
if [ -n "$BASELINE" ]; then
	# the baseline's transport as a pipe service of its own, with the same settings
	sed -n '/^btprelay /,/^  argv=/p' "$PF/master.cf" |
		sed 's/^btprelay /btprelaybase /; s|/bin/btprelay-transport |/bin/btprelay-transport-base |' \
		>> "$PF/master.cf"
	postconf -c "$PF" -e "btprelaybase_destination_recipient_limit = 1" \
		"btprelaybase_time_limit = 120s" "btprelaybase_destination_concurrency_limit = 20"
	# and its btprelay-lmtp behind lmtp(8), to the sink
	cat >> "$PF/master.cf" <<-CF
	btprelay-lmtp-sink-base unix -  n       n       -       -       spawn
	  user=$TRANSPORT_USER argv=$WORK/bin/btprelay-lmtp-base -c $CONF -d BENCH_SINK_PROXY
	CF
	cat >> "$PF/transport.regexp" <<-MAP
	/(^|@)tp-lmtp-sink-base\.example\$/	lmtp:unix:private/btprelay-lmtp-sink-base
	/(^|@)tp-proxy-sink-base\.example\$/	btprelaybase:BENCH_SINK_PROXY
	/(^|@)tp-direct-sink-base\.example\$/	btprelaybase:BENCH_SINK_DIRECT
	/(^|@)tp-proxy-relay-base\.example\$/	btprelaybase:MAIL_ONPREM
	MAP
fi
# Submitted mail waits in the hold queue; a phase times only the deliveries.
postconf -c "$PF" -e "smtpd_end_of_data_restrictions = check_client_access static:HOLD" \
	"smtp_tls_security_level = none" "smtp_destination_concurrency_limit = 20" \
	"btprelay_destination_concurrency_limit = 20" "lmtp_destination_concurrency_limit = 20"
postfix -c "$PF" reload >/dev/null 2>&1
sleep 1
rec postfix.concurrency "20 per destination for both transports (initial 5), one recipient per delivery"

hold_count() { find "$WORK/spool/hold" -type f 2>/dev/null | wc -l; }

# submit N DOMAIN MARK SIZE - N messages into the hold queue
submit() {
	local n=$1 domain=$2 mark=$3 size=$4 i
	smtp-source -s 10 -m "$n" -l "$size" -M "$mark" -f sender@client.test \
		-t "user@$domain" "127.0.0.1:$SMTP_PORT" > "$WORK/log/source-$mark.log" 2>&1
	for i in $(seq 300); do
		[ "$(hold_count)" -ge "$n" ] && return 0
		sleep 0.1
	done
	fail "submit $mark: $(hold_count) of $n messages in the hold queue after 30 s"
	return 1
}

# --- throughput ---------------------------------------------------------------------------
# tp_phase KEY DOMAIN CHECK TITLE - submit N messages to hold, release, time the deliveries
tp_phase() {
	local key=$1 domain=$2 check=$3 title=$4 mark off t0 res cpu0 cpu1 c0 c1 sinkoff arrived
	mark=tp-$key.bench
	rec "tp.$key.title" "$title"
	submit "$N" "$domain" "$mark" 1000 || return 1
	off=$(stat -c %s "$WORK/log/maillog")
	sinkoff=$(stat -c %s "$SINK_DUMP" 2>/dev/null || echo 0)
	c0=$(counter)
	master=$(tr -dc 0-9 < "$WORK/spool/pid/master.pid" 2>/dev/null)
	cpu0=$($BENCH_PY cpu "$EMU_PID" "$SINK_PID")
	tree0=$($BENCH_PY treecpu "$master" "$EMU_PID" "$SINK_PID")
	px0=$(proxycpu)
	t0=$(now)
	postsuper -c "$PF" -H ALL >/dev/null 2>&1
	postqueue -c "$PF" -f
	res=$($BENCH_PY waitlog "$WORK/log/maillog" "$off" "$domain" "$N" $((N / 2 + 120)))
	cpu1=$($BENCH_PY cpu "$EMU_PID" "$SINK_PID")
	tree1=$($BENCH_PY treecpu "$master" "$EMU_PID" "$SINK_PID")
	px1=$(proxycpu)
	c1=$(counter)
	sleep 0.3	# the sink's dump is written as the dot is answered; let the last one land
	case $check in
	sink) arrived=$($BENCH_PY sinkcheck "$SINK_DUMP" "$sinkoff" "$mark") ;;
	relay) arrived=$($BENCH_PY relaycheck "$EMU/messages" "$mark") ;;
	none) arrived=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(json.dumps({"messages": r["sent"], "unique": r["sent"], "duplicates": 0}))' "$res") ;;
	esac
	python3 - "$key" "$N" "$t0" "$res" "$cpu0" "$cpu1" "$c0" "$c1" "$arrived" "$tree0" "$tree1" "$px0" "$px1" >> "$RES" <<-'PY'
	import json, os, sys
	key, n, t0, res, cpu0, cpu1, c0, c1, arrived, tree0, tree1, px0, px1 = sys.argv[1:]
	n, t0, res, arrived = int(n), float(t0), json.loads(res), json.loads(arrived)
	# the bench's own processes (Postfix with pipe(8) and the transports it ran, the
	# emulator, the sink): CPU per message whatever else runs on the machine
	tick = float(os.sysconf("SC_CLK_TCK"))
	t0p, t1p = [int(x) for x in tree0.split()], [int(x) for x in tree1.split()]
	print("tp.%s.bench_cpu_ms_per_msg\t%.2f" % (key, 1000.0 * (t1p[0] - t0p[0]) / tick / max(1, res["sent"])))
	print("tp.%s.postfix_cpu_ms_per_msg\t%.2f" % (key, 1000.0 * (t1p[1] - t0p[1]) / tick / max(1, res["sent"])))
	# the emulator's tree (its proxy program included) and the sink, each per message
	print("tp.%s.emulator_cpu_ms_per_msg\t%.2f" % (key, 1000.0 * (t1p[2] - t0p[2]) / tick / max(1, res["sent"])))
	print("tp.%s.sink_cpu_ms_per_msg\t%.2f" % (key, 1000.0 * (t1p[3] - t0p[3]) / tick / max(1, res["sent"])))
	cpu0 = [int(x) for x in cpu0.split()]
	cpu1 = [int(x) for x in cpu1.split()]
	c0 = [int(x) for x in c0.split()]
	c1 = [int(x) for x in c1.split()]
	out = {}
	if res["t_end"]:
	    secs = res["t_end"] - t0
	    out["seconds"] = "%.2f" % secs
	    out["rate"] = "%.1f" % (res["sent"] / secs)
	    # btp-fastproxy's own getrusage (a child of the emulator: in its tree, not in its row)
	    if px0 and px1 and px1 != "0":
	        us = int(px1) - int(px0)
	        out["proxy_us_per_msg"] = "%.1f" % (us / max(1, res["sent"]))
	        out["proxy_pct_core"] = "%.2f" % (100.0 * us / 1e6 / secs)
	out["sent"] = res["sent"]
	out["deferred"] = res["deferred"]
	out["bounced"] = res["bounced"]
	out["dup_log"] = res["duplicate_sent_lines"]
	out["connections"] = res["new_connections"]
	out["timed_out"] = int(res["timed_out"])
	out["arrived"] = arrived["messages"]
	out["arrived_unique"] = arrived["unique"]
	out["arrived_dup"] = arrived["duplicates"]
	busy, total = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
	ticks = max(1, total)
	out["cpu_busy_pct"] = "%.0f" % (100.0 * busy / ticks)
	out["cpu_ms_per_msg"] = "%.2f" % (1000.0 * busy / os.sysconf("SC_CLK_TCK") / max(1, res["sent"]))
	# per-process jiffies against the machine's total jiffies (all CPUs): x nproc = % of one core
	import os
	ncpu = os.cpu_count() or 1
	out["cpu_emulator_pct_core"] = "%.0f" % (100.0 * ncpu * (cpu1[2] - cpu0[2]) / ticks)
	out["cpu_sink_pct_core"] = "%.0f" % (100.0 * ncpu * (cpu1[3] - cpu0[3]) / ticks)
	for i, name in enumerate(("tokens", "finds", "proxy_conns", "relay_conns", "relay_msgs",
	                          "tokens_conn", "tokens_dest")):
	    out[name] = c1[i] - c0[i]
	for k, v in out.items():
	    print("tp.%s.%s\t%s" % (key, k, v))
	PY
	note "throughput $key: $(grep -P "^tp\.$key\.(rate|sent|arrived)\t" "$RES" | tr '\n\t' ' =')"
	grep -q -P "^tp\.$key\.timed_out\t0" "$RES" || fail "throughput $key: not all $N messages delivered in time"
}

if phase_on throughput; then
	note "throughput: $N messages per phase"
	rm -rf "$WORK/cache"/*
	tp_phase smtp tp-smtp.example sink "Postfix smtp → smtp-sink (no proxy)"
	tp_phase pipe_floor tp-pipe-floor.example none "pipe(8) → dd of=/dev/null (one process per message, nothing else)"
	# each btprelay route, then (--baseline) the same with the baseline's transport
	if [ "$SINK_BEHIND_PROXY" = 1 ]; then
		tp_phase proxy_sink tp-proxy-sink.example sink "btprelay → emulator proxy (SOCKS5 0x80) → smtp-sink"
		[ -n "$BASELINE" ] && tp_phase proxy_sink_base tp-proxy-sink-base.example sink \
			"baseline btprelay → emulator proxy (SOCKS5 0x80) → smtp-sink"
	fi
	tp_phase direct_sink tp-direct-sink.example sink "btprelay → smtp-sink (ProxyType Internet, no proxy)"
	[ -n "$BASELINE" ] && tp_phase direct_sink_base tp-direct-sink-base.example sink \
		"baseline btprelay → smtp-sink (ProxyType Internet, no proxy)"
	tp_phase proxy_relay tp-proxy-relay.example relay "btprelay → emulator proxy → emulator relay (STARTTLS + AUTH)"
	[ -n "$BASELINE" ] && tp_phase proxy_relay_base tp-proxy-relay-base.example relay \
		"baseline btprelay → emulator proxy → emulator relay (STARTTLS + AUTH)"
	# the resident front end: Postfix's lmtp(8) keeps its connections, btprelay-lmtp its relay sessions
	if [ "$SINK_BEHIND_PROXY" = 1 ]; then
		tp_phase lmtp_sink tp-lmtp-sink.example sink "btprelay-lmtp → emulator proxy (SOCKS5 0x80) → smtp-sink"
		[ -n "$BASELINE" ] && tp_phase lmtp_sink_base tp-lmtp-sink-base.example sink \
			"baseline btprelay-lmtp → emulator proxy (SOCKS5 0x80) → smtp-sink"
	fi
	tp_phase lmtp_relay tp-lmtp-relay.example relay "btprelay-lmtp → emulator proxy → emulator relay (STARTTLS + AUTH)"
	# Where the CPU goes in the LMTP route and in Postfix smtp's: perf record of the whole
	# machine during one more phase of each, reported by command (cpu-clock samples)
	if [ "$SINK_BEHIND_PROXY" = 1 ] && [ "$QUICK" != 1 ] && have perf; then
		for k in smtp:tp-smtp.example lmtp:tp-lmtp-sink.example; do
			perf record -a -e cpu-clock -F 499 -g -o "$WORK/perf-tp-${k%%:*}.data" \
				> "$WORK/log/perf-tp.log" 2>&1 &
			perf_pid=$!
			sleep 1
			tp_phase "prof_${k%%:*}" "${k#*:}" sink "profiled: ${k%%:*}"
			kill -INT "$perf_pid"
			wait "$perf_pid"
			perf report -i "$WORK/perf-tp-${k%%:*}.data" --stdio --no-children --sort comm -g none \
				--comms smtp,lmtp,btprelay-lmtp,spawn,qmgr,smtp-sink,btp-fastproxy,cleanup,master,postsuper,postqueue,trivial-rewrite \
				2>/dev/null | grep -E '^ +[0-9.]+%' | head -14 > "$WORK/perf-tp-${k%%:*}.comm"
			rec "prof.tp_${k%%:*}.comm" "$(sed 's/  */ /g; s/^ //' "$WORK/perf-tp-${k%%:*}.comm")"
			rec "prof.tp_${k%%:*}.samples" "$(perf report -i "$WORK/perf-tp-${k%%:*}.data" --stdio \
				--sort comm -g none 2>/dev/null | sed -n 's/^# Samples: \([0-9.]*[KM]*\).*/\1/p' | head -1)"
			if [ "${k%%:*}" = lmtp ]; then
				perf report -i "$WORK/perf-tp-lmtp.data" --stdio --no-children --comms btprelay-lmtp \
					--sort dso,sym -g none 2>/dev/null | grep -E '^ +[0-9.]+%' | head -20 \
					> "$WORK/perf-tp-lmtp.sym"
				rec prof.tp_lmtp.sym "$(sed 's/  */ /g; s/^ //' "$WORK/perf-tp-lmtp.sym")"
			fi
		done
	fi
	# The target's ratio from pairs, each Postfix smtp then btprelay-lmtp right after it:
	# on a shared machine one phase alone can be slowed by other work
	if [ "$SINK_BEHIND_PROXY" = 1 ] && [ "$QUICK" != 1 ]; then
		for i in 1 2 3; do
			tp_phase "pair${i}_smtp" tp-smtp.example sink "pair $i: Postfix smtp → smtp-sink"
			tp_phase "pair${i}_lmtp" tp-lmtp-sink.example sink "pair $i: btprelay-lmtp → proxy → smtp-sink"
		done
	fi
fi

# --- cache under expiry -------------------------------------------------------------------
# Short lifetimes (token 6 s, renewed 1 s before expiry; destination cache 5 s) and a
# steady stream of deliveries through Postfix: requests per lifetime across processes.
if phase_on expiry; then
	EXP_T=24
	[ "$QUICK" = 1 ] && EXP_T=8
	EXP_TTL=6 EXP_MARGIN=1 EXP_DTTL=5
	if [ "$SINK_BEHIND_PROXY" = 1 ]; then exp_domain=tp-proxy-sink.example; else exp_domain=tp-proxy-relay.example; fi
	note "expiry: ${EXP_T}s of deliveries to $exp_domain, token TTL ${EXP_TTL}s, destination TTL ${EXP_DTTL}s"
	emu POST /relay "{\"token_ttl\":$EXP_TTL}" >/dev/null
	write_conf "token_refresh_margin = $EXP_MARGIN" "destination_cache_ttl = $EXP_DTTL"
	rm -rf "$WORK/cache"/*
	postconf -c "$PF" -e "smtpd_end_of_data_restrictions =" && postfix -c "$PF" reload >/dev/null 2>&1
	sleep 1
	exp_n=$((EXP_T * 10))
	off=$(stat -c %s "$WORK/log/maillog")
	c0=$(counter)
	# 10 sessions, each waiting 1 s between messages: about 10 messages a second
	smtp-source -s 10 -w 1 -m "$exp_n" -l 1000 -M exp.bench -f sender@client.test \
		-t "user@$exp_domain" "127.0.0.1:$SMTP_PORT" > "$WORK/log/source-exp.log" 2>&1 &
	src_pid=$!
	res=$($BENCH_PY waitlog "$WORK/log/maillog" "$off" "$exp_domain" "$exp_n" $((EXP_T + 120)))
	wait "$src_pid"
	c1=$(counter)
	emu POST /relay '{"token_ttl":null}' >/dev/null
	write_conf
	postconf -c "$PF" -e "smtpd_end_of_data_restrictions = check_client_access static:HOLD" &&
		postfix -c "$PF" reload >/dev/null 2>&1
	sleep 1
	python3 - "$res" "$c0" "$c1" "$EXP_TTL" "$EXP_MARGIN" "$EXP_DTTL" "$exp_n" >> "$RES" <<-'PY'
	import json, math, sys
	res, c0, c1 = json.loads(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
	ttl, margin, dttl, n = (int(x) for x in sys.argv[4:8])
	d = [int(b) - int(a) for a, b in zip(c0, c1)]
	span = (res["t_end"] - res["t_first"]) if res["t_end"] else 0.0
	print("exp.n\t%d" % n)
	print("exp.sent\t%d" % res["sent"])
	print("exp.timed_out\t%d" % int(res["timed_out"]))
	print("exp.span\t%.1f" % span)
	print("exp.ttl\t%d\nexp.margin\t%d\nexp.dttl\t%d" % (ttl, margin, dttl))
	print("exp.tokens_conn\t%d\nexp.tokens_dest\t%d\nexp.finds\t%d" % (d[5], d[6], d[1]))
	# the ideal: one fetch at the start, then one each time the cached copy is due
	print("exp.ideal_tokens\t%d" % (math.floor(span / (ttl - margin)) + 1))
	print("exp.ideal_finds\t%d" % (math.floor(span / dttl) + 1))
	print("exp.lifetimes\t%.2f" % (span / ttl))
	PY
	note "expiry: $(grep -P '^exp\.(sent|span|tokens_conn|tokens_dest|finds|ideal_tokens|ideal_finds)\t' "$RES" | tr '\n\t' ' =')"
	grep -q -P '^exp\.timed_out\t0' "$RES" || fail "expiry: not all $exp_n messages delivered in time"
fi

# --- round trips under a fixed delay ------------------------------------------------------
# The MTA side (btprelay-transport) runs in namespace $BENCH_NS-mta, the emulator here;
# between them a link with DELAY ms each way: veth + tc netem when the kernel has
# netem, else tests/bench/netwire.py (TUN devices and a userspace delay line).
# NAT on both ends keeps every address 127.0.0.1 as in the bindings (TLS names match).
NS_MTA=${BENCH_NS:+$BENCH_NS-mta}
LINK_PID=""
link_up() {	# DELAY_MS
	local d=$1 i
	link_down
	if [ "$LINK_KIND" = netem ]; then
		ip link add bw-emu type veth peer name bw-mta netns "$NS_MTA" || return 1
		tc qdisc add dev bw-emu root netem delay "${d}ms" limit 10000 || return 1
		ip netns exec "$NS_MTA" tc qdisc add dev bw-mta root netem delay "${d}ms" limit 10000 || return 1
	else
		rm -f "$WORK/link.ready"
		python3 "$BENCH_DIR/netwire.py" --delay-ms "$d" --ready "$WORK/link.ready" \
			- bw-emu "$NS_MTA" bw-mta 2>> "$WORK/log/netwire.log" &
		LINK_PID=$!
		for i in $(seq 50); do [ -f "$WORK/link.ready" ] && break; sleep 0.1; done
		[ -f "$WORK/link.ready" ] || return 1
	fi
	ip addr add 169.254.213.1 peer 169.254.213.2 dev bw-emu &&
	ip link set bw-emu up &&
	ip -n "$NS_MTA" addr add 169.254.213.2 peer 169.254.213.1 dev bw-mta &&
	ip -n "$NS_MTA" link set bw-mta up || return 1
	sysctl -qw net.ipv4.conf.bw-emu.route_localnet=1
	ip netns exec "$NS_MTA" sysctl -qw net.ipv4.conf.all.route_localnet=1 \
		net.ipv4.conf.bw-mta.route_localnet=1
	# emulator side: what arrives on the link is for 127.0.0.1
	nft add table ip btbench &&
	nft add chain ip btbench linkin '{ type nat hook prerouting priority -100; }' &&
	nft add rule ip btbench linkin iifname bw-emu dnat to 127.0.0.1 || return 1
	# MTA side: 127.0.0.1 is across the link
	ip netns exec "$NS_MTA" nft -f - <<-NFT || return 1
	table ip btbench {
		chain output {
			type nat hook output priority -100;
			ip daddr 127.0.0.1 tcp dport != 0 dnat to 169.254.213.1;
		}
		chain postrouting {
			type nat hook postrouting priority 100;
			oifname "bw-mta" snat to 169.254.213.2;
		}
	}
	NFT
}
link_down() {
	nft delete chain ip btbench linkin 2>/dev/null
	ip netns exec "$NS_MTA" nft delete table ip btbench 2>/dev/null
	ip link del bw-emu 2>/dev/null
	if [ -n "$LINK_PID" ]; then
		kill "$LINK_PID" 2>/dev/null
		wait "$LINK_PID" 2>/dev/null
		LINK_PID=""
	fi
	return 0
}

# transport_cmd DEST MSGFILE - the command line of one direct delivery (for a shell)
transport_cmd() {
	printf '%s -c %s -f sender@client.test -d %s -s %s -- user@corp.example < %s' \
		"$WORK/bin/btprelay-transport" "$CONF" "$1" "$(stat -c %s "$2")" "$2"
}

# rtt_trace BIN DEST KEY DELAY CACHE - RTT_TRACES deliveries under strace in the MTA
# namespace, each with the cache emptied first (CACHE cold) or warmed by one delivery
# (warm); the waits (bench.py timeline) of the one that waited least as figure
# rtt.KEY.timeline. What the protocol makes a delivery wait for is in every trace; a
# wait for a busy machine (a relay slow to answer, a process slow to start) is not.
rtt_trace() {
	local st i best="" n min=""
	for ((i = 1; i <= RTT_TRACES; i++)); do
		st=$WORK/rtt/strace-$3.$i.txt
		if [ "$5" = cold ]; then
			find "$WORK/cache" -mindepth 1 -delete
		else
			ip netns exec "$NS_MTA" setpriv --reuid="$TRANSPORT_USER" \
				--regid="$TRANSPORT_USER" --init-groups -- \
				sh -c "$(transport_cmd "$2" "$WORK/msg-1k.txt")" >/dev/null 2>&1
		fi
		# strace as root, the transport under it as its user: btprelay makes itself
		# non-dumpable (PR_SET_DUMPABLE 0), and only CAP_SYS_PTRACE then reads its
		# memory (without it every argument is an address and no wait has its label)
		ip netns exec "$NS_MTA" strace -f -tt -T -s 256 \
			-e trace=connect,write,sendto,poll,ppoll,select,pselect6,epoll_wait,epoll_pwait,nanosleep,clock_nanosleep \
			-o "$st" setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" --init-groups -- \
			"$WORK/bin/$1" -c "$WORK/etc/btprelay-debug.conf" \
			-f sender@client.test -d "$2" -s 1100 -- user@corp.example \
			< "$WORK/msg-1k.txt" > /dev/null 2>&1 ||
			{ fail "round trips: traced $1 $3 delivery failed"; continue; }
		$BENCH_PY timeline "$st" "$EMU_PORTS" $((2 * $4)) > "$st.timeline" || continue
		n=$(sed -n 's/^TOTAL|\([0-9]*\) waits.*/\1/p' "$st.timeline")
		if [ -n "$n" ] && { [ -z "$min" ] || [ "$n" -lt "$min" ]; }; then
			min=$n
			best=$st.timeline
		fi
	done
	[ -n "$best" ] && rec "rtt.$3.timeline" "$(cat "$best")"
	[ -n "$best" ] && rec "rtt.$3.traces" "$RTT_TRACES"
	return 0
}

if phase_on rtt; then
	RTT_DELAY=10
	RTT_RUNS=10
	RTT_TRACES=3
	[ "$QUICK" = 1 ] && RTT_RUNS=2 && RTT_TRACES=1
	rtt_skip=""
	if [ -z "$NS_MTA" ] || [ ! -e "/var/run/netns/$NS_MTA" ]; then
		rtt_skip="no network namespaces (${BENCH_NONS_WHY:-ip netns add failed})"
	elif ! have nft; then
		rtt_skip="nft not installed (apt-get install nftables): the link needs NAT to keep TLS names"
	elif ! have hyperfine; then
		rtt_skip="hyperfine not installed"
	fi
	# netem when the kernel has it (probe on a throwaway veth pair)
	LINK_KIND=netwire
	if [ -z "$rtt_skip" ] && ip link add bw-probe type veth peer name bw-probe2 2>/dev/null; then
		tc qdisc add dev bw-probe root netem delay 1ms 2>/dev/null && LINK_KIND=netem
		ip link del bw-probe 2>/dev/null
	fi
	if [ -z "$rtt_skip" ] && [ "$LINK_KIND" = netwire ] && [ ! -c /dev/net/tun ]; then
		rtt_skip="the kernel has no sch_netem and /dev/net/tun is missing"
	fi
	if [ -n "$rtt_skip" ]; then
		rec rtt.skip "$rtt_skip"
		note "round trips skipped: $rtt_skip"
	else
		rec rtt.link "$LINK_KIND"
		rec rtt.delay_ms "$RTT_DELAY"
		rec rtt.runs "$RTT_RUNS"
		$BENCH_PY msg "$WORK/msg-1k.txt" 1024 rtt
		chmod 644 "$WORK/msg-1k.txt"
		mkdir -p "$WORK/rtt"
		chown "$TRANSPORT_USER" "$WORK/rtt"
		for delay in 0 "$RTT_DELAY"; do
			link_up "$delay" || { fail "round trips: could not set up the ${delay} ms link ($LINK_KIND)"; link_down; break; }
			note "round trips: link $LINK_KIND, ${delay} ms each way"
			# the link's real round trip: TCP connects across it (kernel to kernel)
			rec "rtt.cal.$delay" "$(ip netns exec "$NS_MTA" python3 -c '
import socket, statistics, sys, time
t = []
for _ in range(20):
    s = socket.socket()
    a = time.monotonic()
    s.connect(("127.0.0.1", int(sys.argv[1])))
    t.append(time.monotonic() - a)
    s.close()
print("%.6f" % statistics.median(t))' "$(port_of control)")"
			for v in plain:BENCH_PLAIN starttls:BENCH_TLS auth:MAIL_ONPREM; do
				for cache in warm cold; do
					prep=()
					[ "$cache" = cold ] && prep=(--prepare "find $WORK/cache -mindepth 1 -delete")
					j=$WORK/rtt/${v%%:*}-$cache-$delay.json
					if ip netns exec "$NS_MTA" setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" \
						--init-groups -- hyperfine --style none --runs "$RTT_RUNS" --warmup 1 \
						"${prep[@]}" --export-json "$j" \
						"$(transport_cmd "${v#*:}" "$WORK/msg-1k.txt")" > "$WORK/log/rtt-hf.log" 2>&1
					then
						read -r mean sd mn mx med runs < <($BENCH_PY hyperfine "$j")
						rec "rtt.${v%%:*}.$cache.$delay.median" "$med"
						rec "rtt.${v%%:*}.$cache.$delay.min" "$mn"
						rec "rtt.${v%%:*}.$cache.$delay.sd" "$sd"
					else
						fail "round trips: ${v%%:*} $cache ${delay} ms: $(tail -3 "$WORK/log/rtt-hf.log")"
					fi
				done
			done
			# where the time goes: one traced delivery per variant, waits labelled by the
			# debug log line written before each (strace adds little next to 10 ms)
			if [ "$delay" != 0 ] && have strace; then
				cp "$CONF" "$WORK/etc/btprelay-debug.conf"
				sed -i 's/^log_level = .*/log_level = debug/' "$WORK/etc/btprelay-debug.conf"
				for v in plain:BENCH_PLAIN starttls:BENCH_TLS auth:MAIL_ONPREM; do
					for cache in warm cold; do
						rtt_trace btprelay-transport "${v#*:}" "${v%%:*}.$cache" "$delay" "$cache"
					done
				done
				# the baseline's cold deliveries, traced the same way (before/after)
				for v in ${BASELINE:+plain:BENCH_PLAIN starttls:BENCH_TLS auth:MAIL_ONPREM}; do
					rtt_trace btprelay-transport-base "${v#*:}" "${v%%:*}.cold_base" "$delay" cold
				done
			fi
		done
		link_down
	fi
fi

# --- cost per delivery --------------------------------------------------------------------
# cost_measure KEY BIN CONF DEST MSG RUNS [VAR=VALUE...] - CPU (getrusage, median of RUNS),
# peak RSS (/usr/bin/time -v) and wall time (hyperfine) of one delivery, as figures KEY.*
cost_measure() {
	local key=$1 bin=$2 conf=$3 dest=$4 msg=$5 runs=$6 ru tv j hruns
	local cpu user sys wall nruns st tcpu trss tst mean sd mn mx med n
	shift 6
	local cmd=("$bin" -c "$conf" -f sender@client.test -d "$dest" -s "$(stat -c %s "$msg")" -- user@corp.example)
	note "cost: $key ($dest), $runs runs"
	ru=$WORK/cost/ru-$key.jsonl
	if as_btprelay env "$@" $USER_PY "$BENCH_DIR/bench.py" rusage "$runs" "$msg" "$ru" -- "${cmd[@]}"; then
		read -r cpu user sys wall nruns st < <($BENCH_PY rusagesum "$ru")
		rec "$key.cpu" "$cpu"
		rec "$key.user" "$user"
		rec "$key.sys" "$sys"
		rec "$key.runs" "$nruns"
	else
		fail "cost: $key: a delivery failed ($(tail -1 "$ru"))"
	fi
	if [ -x /usr/bin/time ]; then
		tv=$WORK/cost/timev-$key.txt
		as_btprelay env "$@" /usr/bin/time -v -o "$tv" "${cmd[@]}" < "$msg" > /dev/null
		read -r tcpu trss tst < <($BENCH_PY timev "$tv")
		rec "$key.rss" "$trss"
		[ "$tst" = 0 ] || fail "cost: $key: the /usr/bin/time run exited $tst"
	fi
	if have hyperfine; then
		hruns=$runs
		[ "$hruns" -gt 10 ] && hruns=10
		j=$WORK/cost/hf-$key.json
		if as_btprelay env "$@" hyperfine --style none --runs "$hruns" --export-json "$j" \
			"$(printf '%q ' "${cmd[@]}")< $msg" > "$WORK/log/cost-hf.log" 2>&1; then
			read -r mean sd mn mx med n < <($BENCH_PY hyperfine "$j")
			rec "$key.wall" "$mean"
			rec "$key.wall_sd" "$sd"
		else
			fail "cost: hyperfine $key: $(tail -2 "$WORK/log/cost-hf.log")"
		fi
	fi
}

if phase_on cost; then
	if [ "$QUICK" = 1 ]; then COST_SIZES="1024 65536"; else COST_SIZES="1024 1048576 52428800"; fi
	COST_ROUTES="relay:MAIL_ONPREM"
	if [ "$SINK_BEHIND_PROXY" = 1 ]; then COST_ROUTES="$COST_ROUTES sink:BENCH_SINK_PROXY"
	else COST_ROUTES="$COST_ROUTES sink:BENCH_SINK_DIRECT"; fi
	rec cost.sizes "$COST_SIZES"
	rec cost.routes "$COST_ROUTES"
	mkdir -p "$WORK/cost"
	chown "$TRANSPORT_USER" "$WORK/cost"
	COST_BINS="btprelay-transport"
	[ -n "$BASELINE" ] && COST_BINS="$COST_BINS btprelay-transport-base"
	for r in $COST_ROUTES; do	# warm the caches
		as_btprelay sh -c "$(transport_cmd "${r#*:}" /dev/null)" > /dev/null 2>&1 ||
			fail "cost: warm-up delivery to ${r#*:} failed"
	done
	for size in $COST_SIZES; do
		msg=$WORK/cost/msg-$size.txt
		$BENCH_PY msg "$msg" "$size" cost
		chmod 644 "$msg"
		if [ "$QUICK" = 1 ]; then runs=2; elif [ "$size" -ge 10000000 ]; then runs=3; elif [ "$size" -ge 100000 ]; then runs=5; else runs=20; fi
		for r in $COST_ROUTES; do
			for b in $COST_BINS; do
				suffix=${b#btprelay-transport}
				cost_measure "cost.${r%%:*}${suffix:+_base}.$size" "$WORK/bin/$b" "$CONF" "${r#*:}" "$msg" "$runs"
			done
		done
		# 50 MB messages pile up at the relay: start it afresh (destinations again)
		if [ "$size" -ge 10000000 ]; then
			emu POST /reset >/dev/null
			bench_destinations
		fi
	done
	# The configuration's default trust: no smtp_tls_ca_file, the system's CA bundle
	# (OpenSSL's default file, here with the test CA appended through SSL_CERT_FILE).
	sysbundle=$(openssl version -d 2>/dev/null | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')/cert.pem
	if [ -r "$sysbundle" ]; then
		cat "$sysbundle" "$WORK/etc/ca.pem" > "$WORK/etc/system-plus-test.pem"
		chmod 644 "$WORK/etc/system-plus-test.pem"
		sed 's/^smtp_tls_ca_file = .*/smtp_tls_ca_file =/' "$CONF" > "$WORK/etc/btprelay-sys.conf"
		chmod 644 "$WORK/etc/btprelay-sys.conf"
		rec cost.sys.certs "$(grep -c 'BEGIN CERTIFICATE' "$WORK/etc/system-plus-test.pem")"
		runs=20
		[ "$QUICK" = 1 ] && runs=2
		for b in $COST_BINS; do
			suffix=${b#btprelay-transport}
			cost_measure "cost.sys${suffix:+_base}.1024" "$WORK/bin/$b" "$WORK/etc/btprelay-sys.conf" \
				MAIL_ONPREM "$WORK/cost/msg-1024.txt" "$runs" SSL_CERT_FILE="$WORK/etc/system-plus-test.pem"
		done
	else
		rec cost.sys.skip "no system CA bundle at $sysbundle"
	fi
fi

# --- profile ------------------------------------------------------------------------------
# What one delivery spends its CPU on: perf stat (software counters: this VM has no
# hardware ones), perf record (cpu-clock samples), callgrind (instructions), strace -c
# (system calls), and what process start-up costs with and without libcurl linked.
if phase_on profile; then
	P=$WORK/prof
	mkdir -p "$P"
	chown "$TRANSPORT_USER" "$P"
	if [ "$QUICK" = 1 ]; then psize=65536; bigsize=65536; else psize=1048576; bigsize=52428800; fi
	pmsg=$P/msg-$psize.txt
	$BENCH_PY msg "$pmsg" "$psize" prof
	chmod 644 "$pmsg"
	rec prof.size "$psize"
	pdest=MAIL_ONPREM
	rec prof.dest "$pdest"
	tcmd=("$WORK/bin/btprelay-transport" -c "$CONF" -f sender@client.test -d "$pdest" -s "$(stat -c %s "$pmsg")" -- user@corp.example)
	as_btprelay sh -c "$(transport_cmd "$pdest" "$pmsg")" > /dev/null 2>&1	# caches warm
	if have perf; then
		note "profile: perf stat, perf record"
		perf stat -e task-clock,context-switches,cpu-migrations,page-faults -o "$P/perfstat.txt" -- \
			setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" --init-groups -- \
			"${tcmd[@]}" < "$pmsg" > /dev/null 2>&1 || fail "profile: perf stat run failed"
		rec prof.perfstat "$(grep -E 'msec task-clock|context-switches|cpu-migrations|page-faults|seconds (time elapsed|user|sys)' "$P/perfstat.txt" | sed 's/#.*//; s/  */ /g; s/^ //; s/ $//')"
		# the start-up alone: the binary's version banner, and a program linked with and without libcurl
		perf stat -r 30 -o "$P/perf-V.txt" -- "$WORK/bin/btprelay-transport" -V > /dev/null 2>&1
		rec prof.startup_V "$(sed -n 's/^ *\([0-9.]*\) msec task-clock.*/\1/p' "$P/perf-V.txt")"
		rec prof.startup_V_faults "$(sed -n 's/^ *\([0-9,]*\) *page-faults.*/\1/p' "$P/perf-V.txt" | tr -d ,)"
		rec prof.libs "$(ldd "$WORK/bin/btprelay-transport" | wc -l)"
		[ -x /usr/bin/time ] && rec prof.startup_V_rss "$(/usr/bin/time -f %M "$WORK/bin/btprelay-transport" -V 2>&1 >/dev/null | tail -1)"
		if [ -n "$BASELINE" ]; then
			perf stat -r 30 -o "$P/perf-V-base.txt" -- "$WORK/bin/btprelay-transport-base" -V > /dev/null 2>&1
			rec prof.base.startup_V "$(sed -n 's/^ *\([0-9.]*\) msec task-clock.*/\1/p' "$P/perf-V-base.txt")"
			rec prof.base.libs "$(ldd "$WORK/bin/btprelay-transport-base" | wc -l)"
			[ -x /usr/bin/time ] && rec prof.base.startup_V_rss "$(/usr/bin/time -f %M "$WORK/bin/btprelay-transport-base" -V 2>&1 >/dev/null | tail -1)"
		fi
		if have cc; then
			cat > "$P/link.c" <<-'C'
			#include <openssl/ssl.h>
			#include <jansson.h>
			#ifdef WITH_CURL
			#include <curl/curl.h>
			#endif
			int main(int argc, char **argv)
			{
				(void)argv;
				if (argc > 5) {	/* never: the calls only keep the libraries linked */
					SSL_CTX_new(TLS_client_method());
					json_object();
			#ifdef WITH_CURL
					curl_easy_init();
			#endif
				}
				return 0;
			}
			C
			if cc -O2 "$P/link.c" -o "$P/link-ssl" -lssl -lcrypto -ljansson 2>/dev/null &&
				cc -O2 -DWITH_CURL "$P/link.c" -o "$P/link-curl" -lcurl -lssl -lcrypto -ljansson 2>/dev/null; then
				rec prof.link_extra_libs "$(comm -13 <(ldd "$P/link-ssl" | awk '{print $1}' | sort) \
					<(ldd "$P/link-curl" | awk '{print $1}' | sort) | sed 's/\.so.*//; s/^lib//' | tr '\n' ' ')"
				for b in ssl curl; do
					perf stat -r 50 -o "$P/perf-link-$b.txt" -- "$P/link-$b" > /dev/null 2>&1
					rec "prof.link_$b.ms" "$(sed -n 's/^ *\([0-9.]*\) msec task-clock.*/\1/p' "$P/perf-link-$b.txt")"
					rec "prof.link_$b.libs" "$(ldd "$P/link-$b" | wc -l)"
					[ -x /usr/bin/time ] && rec "prof.link_$b.rss" "$(/usr/bin/time -f %M "$P/link-$b" 2>&1 | tail -1)"
				done
			fi
		fi
		# where the CPU goes for a big message (samples of cpu-clock, kernel included)
		bmsg=$P/msg-big.txt
		$BENCH_PY msg "$bmsg" "$bigsize" prof
		chmod 644 "$bmsg"
		rec prof.record_size "$bigsize"
		if perf record -e cpu-clock -F 4999 -o "$P/perf.data" -- \
			setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" --init-groups -- \
			"$WORK/bin/btprelay-transport" -c "$CONF" -f sender@client.test -d "$pdest" \
			-s "$(stat -c %s "$bmsg")" -- user@corp.example < "$bmsg" > /dev/null 2> "$P/perf-record.log"; then
			perf report -i "$P/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
				grep -E '^ +[0-9.]+%' | head -12 > "$P/perf-dso.txt"
			perf report -i "$P/perf.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null |
				grep -E '^ +[0-9.]+%' | head -25 > "$P/perf-sym.txt"
			rec prof.perf_dso "$(sed 's/  */ /g; s/^ //' "$P/perf-dso.txt")"
			rec prof.perf_sym "$(sed 's/  */ /g; s/^ //' "$P/perf-sym.txt")"
		else
			fail "profile: perf record failed: $(tail -2 "$P/perf-record.log")"
		fi
		[ "$bigsize" -ge 10000000 ] && { emu POST /reset >/dev/null; bench_destinations; }
	else
		rec prof.skip_perf "perf not installed"
	fi
	if have strace; then
		as_btprelay strace -f -c -o "$P/strace-c.txt" "${tcmd[@]}" < "$pmsg" > /dev/null 2>&1
		rec prof.strace "$($BENCH_PY stracec "$P/strace-c.txt")"
	fi
	# Start-up and a warm 1 KB delivery without TLS (the sink behind the proxy, else
	# the direct sink), instruction by instruction: the dynamic loader, OpenSSL's
	# initialisation, configuration, bindings, cache reads, logging — of each build.
	if have valgrind && have callgrind_annotate && [ "$QUICK" != 1 ]; then
		sdest=BENCH_SINK_DIRECT
		[ "$SINK_BEHIND_PROXY" = 1 ] && sdest=BENCH_SINK_PROXY
		smsg=$P/msg-1024.txt
		$BENCH_PY msg "$smsg" 1024 start
		chmod 644 "$smsg"
		rec prof.start.dest "$sdest"
		for b in btprelay-transport ${BASELINE:+btprelay-transport-base}; do
			sfx=${b#btprelay-transport}
			sfx=${sfx:+.base}
			as_btprelay "$WORK/bin/$b" -c "$CONF" -f sender@client.test -d "$sdest" -s 1100 \
				-- user@corp.example < "$smsg" > /dev/null 2>&1	# caches warm
			for what in V delivery; do
				out=$P/cg-start-$what$sfx
				if [ "$what" = V ]; then
					as_btprelay valgrind --tool=callgrind --callgrind-out-file="$out.out" \
						"$WORK/bin/$b" -V > /dev/null 2> "$out.log"
				else
					as_btprelay valgrind --tool=callgrind --callgrind-out-file="$out.out" \
						"$WORK/bin/$b" -c "$CONF" -f sender@client.test -d "$sdest" -s 1100 \
						-- user@corp.example < "$smsg" > /dev/null 2> "$out.log"
				fi || { fail "profile: callgrind of $b ($what) failed: $(tail -2 "$out.log")"; continue; }
				callgrind_annotate --auto=no --inclusive=no "$out.out" > "$out.self" 2>/dev/null
				# every function, however small: the parts of start-up are
				callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$out.out" \
					> "$out.incl" 2>/dev/null
				$BENCH_PY callgrind "$out.self" "$out.incl" "prof.start$sfx.$what" >> "$RES"
			done
		done
	fi
	# btprelay-lmtp's body path: one LMTP session with a 1 MB message, of each build
	if have valgrind && have callgrind_annotate && [ "$QUICK" != 1 ]; then
		rec prof.lmtp.size 1048576
		for b in btprelay-lmtp ${BASELINE:+btprelay-lmtp-base}; do
			sfx=${b#btprelay-lmtp}
			sfx=${sfx:+.base}
			out=$P/cg-lmtp$sfx
			if $BENCH_PY lmtp 1048576 -- setpriv --reuid="$TRANSPORT_USER" --regid="$TRANSPORT_USER" \
				--init-groups -- valgrind --tool=callgrind --callgrind-out-file="$out.out" \
				"$WORK/bin/$b" -c "$CONF" -d "$sdest" > "$out.log" 2>&1; then
				callgrind_annotate --auto=no --inclusive=no "$out.out" > "$out.self" 2>/dev/null
				callgrind_annotate --auto=no --inclusive=yes "$out.out" > "$out.incl" 2>/dev/null
				$BENCH_PY callgrind "$out.self" "$out.incl" "prof.lmtp$sfx" >> "$RES"
			else
				fail "profile: callgrind of $b with a 1 MB message failed: $(tail -2 "$out.log")"
			fi
		done
	fi
	if have valgrind && have callgrind_annotate && [ "$QUICK" != 1 ]; then
		note "profile: callgrind, $psize bytes"
		if as_btprelay valgrind --tool=callgrind --callgrind-out-file="$P/callgrind.out" \
			"${tcmd[@]}" < "$pmsg" > /dev/null 2> "$P/callgrind.log"; then
			callgrind_annotate --auto=no --inclusive=no "$P/callgrind.out" > "$P/cg-self.txt" 2>/dev/null
			callgrind_annotate --auto=no --inclusive=yes "$P/callgrind.out" > "$P/cg-incl.txt" 2>/dev/null
			$BENCH_PY callgrind "$P/cg-self.txt" "$P/cg-incl.txt" >> "$RES"
		else
			fail "profile: callgrind run failed: $(tail -3 "$P/callgrind.log")"
		fi
		if [ -n "$BASELINE" ]; then
			note "profile: callgrind, $psize bytes, baseline"
			if as_btprelay valgrind --tool=callgrind --callgrind-out-file="$P/callgrind-base.out" \
				"$WORK/bin/btprelay-transport-base" "${tcmd[@]:1}" < "$pmsg" > /dev/null \
				2> "$P/callgrind-base.log"; then
				callgrind_annotate --auto=no --inclusive=no "$P/callgrind-base.out" > "$P/cg-self-base.txt" 2>/dev/null
				callgrind_annotate --auto=no --inclusive=yes "$P/callgrind-base.out" > "$P/cg-incl-base.txt" 2>/dev/null
				$BENCH_PY callgrind "$P/cg-self-base.txt" "$P/cg-incl-base.txt" prof.base.cg >> "$RES"
			else
				fail "profile: baseline callgrind run failed: $(tail -3 "$P/callgrind-base.log")"
			fi
		fi
	else
		rec prof.skip_callgrind "$([ "$QUICK" = 1 ] && echo "quick run" || echo "valgrind not installed")"
	fi
fi

# --- peer: the SAP Cloud SDK for JavaScript mail client ----------------------------------
if phase_on peer; then
	PEER_DIR=${BENCH_NPM_DIR:-/var/tmp/btprelay-bench-npm}
	PEER_N=$N
	[ "$PEER_N" -gt 200 ] && PEER_N=200
	peer_skip=""
	if [ "$QUICK" = 1 ]; then
		peer_skip="quick run"
	elif ! have node || ! have npm; then
		peer_skip="node or npm not installed"
	elif [ ! -d "$PEER_DIR/node_modules/@sap-cloud-sdk/mail-client" ]; then
		note "peer: npm install @sap-cloud-sdk/mail-client@3 into $PEER_DIR"
		mkdir -p "$PEER_DIR"
		[ -f "$PEER_DIR/package.json" ] || echo '{"name":"btprelay-bench-peer","private":true}' > "$PEER_DIR/package.json"
		(cd "$PEER_DIR" && timeout 600 npm install --no-audit --no-fund @sap-cloud-sdk/mail-client@3) \
			> "$WORK/log/npm.log" 2>&1 || peer_skip="npm install @sap-cloud-sdk/mail-client@3 failed: $(tail -2 "$WORK/log/npm.log")"
	fi
	if [ -n "$peer_skip" ]; then
		rec peer.skip "$peer_skip"
	else
		note "peer: SAP Cloud SDK mail client, $PEER_N messages"
		$BENCH_PY msg "$WORK/msg-peer.txt" 1024 peer
		chmod 644 "$WORK/msg-peer.txt"
		for mode in parallel sequential; do
			emu POST /reset >/dev/null
			bench_destinations
			c0=$(counter)
			out=$(cd "$WORK" && VCAP_SERVICES=$(cat "$EMU/vcap.json") NODE_EXTRA_CA_CERTS=$WORK/etc/ca.pem \
				NODE_PATH=$PEER_DIR/node_modules timeout 600 node "$BENCH_DIR/peer-sdk.js" "$PEER_N" \
				"$WORK/msg-peer.txt" MAIL_ONPREM "sdk-$mode.bench" "$mode" 2>> "$WORK/log/peer.log")
			c1=$(counter)
			arrived=$($BENCH_PY relaycheck "$EMU/messages" "sdk-$mode.bench")
			rec "peer.$mode.data_gap_ms" "$($BENCH_PY relaygap "$WORK/log/emulator.log" "$PEER_N")"
			# the relay's log: when the first and the last of these messages were stored
			span=$(grep -F "end of data" "$WORK/log/emulator.log" | tail -n "$(python3 -c 'import json,sys; print(max(1, json.loads(sys.argv[1])["messages"]))' "$arrived")" |
				sed -n '1p;$p' | cut -c12-23 | tr '\n' ' ')
			python3 - "$out" "$arrived" "$c0" "$c1" "$PEER_N" "$mode" "$span" >> "$RES" <<-'PY'
			import json, sys
			n, mode = int(sys.argv[5]), sys.argv[6]
			try:
			    out = json.loads(sys.argv[1].strip().splitlines()[-1])
			except (ValueError, IndexError):
			    out = {"error": "no answer: " + sys.argv[1][-200:]}
			arrived = json.loads(sys.argv[2])
			d = [int(b) - int(a) for a, b in zip(sys.argv[3].split(), sys.argv[4].split())]
			k = "peer.%s." % mode
			if "error" in out or not out.get("seconds"):
			    print(k + "error\t%s" % str(out.get("error", out)).replace("\t", " ")[:300])
			else:
			    print("peer.version\t%s" % out["version"])
			    print(k + "n\t%d" % n)
			    print(k + "seconds\t%.2f" % out["seconds"])
			    print(k + "rate\t%.1f" % (out["sent"] / out["seconds"]))
			    print(k + "sent\t%d" % out["sent"])
			    print(k + "failed\t%d" % out["failed"])
			    print(k + "first_error\t%s" % (out.get("first_error") or ""))
			    print(k + "arrived\t%d" % arrived["unique"])
			    print(k + "relay_conns\t%d" % d[3])
			    print(k + "tokens\t%d" % d[0])
			    print(k + "finds\t%d" % d[1])
			    t = sys.argv[7].split()
			    if len(t) == 2 and arrived["unique"] > 1:
			        def sec(x):
			            h, m, s = x.split(":")
			            return int(h) * 3600 + int(m) * 60 + float(s)
			        span = sec(t[1]) - sec(t[0])
			        if span > 0:
			            print(k + "relay_span\t%.2f" % span)
			            print(k + "relay_rate\t%.1f" % ((arrived["unique"] - 1) / span))
			PY
		done
		if grep -q '^peer\.[a-z]*\.rate' "$RES"; then
			# btprelay, the same messages and route: one process per message, one after the other
			find "$WORK/cache" -mindepth 1 -delete
			t0=$(now)
			for i in $(seq "$PEER_N"); do
				as_btprelay sh -c "$(transport_cmd MAIL_ONPREM "$WORK/msg-peer.txt")" > /dev/null 2>&1
			done
			t1=$(now)
			rec peer.bt_n "$PEER_N"
			rec peer.bt_seconds "$(calc "round($t1 - $t0, 2)")"
			rec peer.bt_rate "$(calc "round($PEER_N / ($t1 - $t0), 1)")"
			rec peer.bt_data_gap_ms "$($BENCH_PY relaygap "$WORK/log/emulator.log" "$PEER_N")"
			rec peer.bt_arrived "$($BENCH_PY relaycheck "$EMU/messages" "peer.1024@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')"
		fi
	fi
fi

# --- report -------------------------------------------------------------------------------
# the relay image's figures (tests/bench/image-bench.sh, run apart: it builds with podman)
if [ -f "$BENCH_DIR/IMAGE-RESULTS.md" ]; then
	rec image.made "$(sed -n 's/^Made by .* on \(.*UTC\).*/\1/p' "$BENCH_DIR/IMAGE-RESULTS.md")"
	rec image.rows "$(grep '^| ' "$BENCH_DIR/IMAGE-RESULTS.md" | grep -v '^| figure' | sed 's/^| //; s/ |$//; s/ | /|/')"
fi
rec run.failed "$RUN_FAILED"
$BENCH_PY render "$RES" "$OUT" || { echo "Bail out! render failed"; exit 1; }
[ -n "$TSV" ] && cp "$RES" "$TSV"
note "report: $OUT"
[ "$RUN_FAILED" = 0 ]
