#!/bin/bash
# test-bench.sh - CI's reduced run of the benchmarks (tests/bench/run.sh --quick), so
# the scripts cannot rot. It asserts that every phase ran and produced well-formed
# figures, and that the counters agree (every message delivered exactly once, the
# cache's fetches counted). It never asserts on a timing.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
BENCH=$top_srcdir/tests/bench

[ "$(id -u)" = 0 ] || harness_skip "needs root (a throwaway Postfix instance, network namespaces)"
for tool in postfix postconf postqueue postsuper smtp-source smtp-sink swaks python3 openssl setpriv; do
	command -v "$tool" >/dev/null 2>&1 || harness_skip "$tool not installed (tests/install-deps.sh)"
done
[ -x "$top_builddir/plugin/transport/btprelay-transport" ] ||
	{ echo "Bail out! $top_builddir/plugin/transport/btprelay-transport not built"; exit 99; }

OUTDIR=$(mktemp -d /tmp/btprelay-test-bench.XXXXXX)
trap 'rm -rf "$OUTDIR"' EXIT
MD=$OUTDIR/RESULTS.md
TSV=$OUTDIR/results.tsv

# --baseline with this same build: the before/after code paths run too
bash "$BENCH/run.sh" --quick --baseline "$top_builddir" --baseline-label "this build again" \
	-o "$MD" --tsv "$TSV" > "$OUTDIR/run.out" 2> "$OUTDIR/run.err"
rc=$?
if [ "$rc" = 77 ]; then
	grep '^1\.\.0 # SKIP' "$OUTDIR/run.out" | head -1 || echo "1..0 # SKIP run.sh skipped"
	exit 77
fi
tap_ok "$rc" "run.sh --quick exits 0" "$(tail -15 "$OUTDIR/run.err")"
[ -s "$MD" ] && [ -s "$TSV" ]
tap_ok $? "RESULTS.md and the figures were written" "$(ls -l "$OUTDIR")"
[ -s "$TSV" ] || { tap_done; exit 1; }

get() { awk -F'\t' -v k="$1" '$1 == k { print $2; exit }' "$TSV"; }
is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
N=$(get run.n)

# --- the report ---------------------------------------------------------------------
for section in "## Targets (issue 15)" "## Targets (issue 7)" "## Throughput" "## Round trips" "## Cost per delivery" \
	"## Cache efficiency" "## Peer" "## Profile" "## Findings"; do
	grep -qF -- "$section" "$MD"
	tap_ok $? "RESULTS.md has section '$section'"
done
! grep -qE '\b(nan|None)\b|Traceback' "$MD"
tap_ok $? "RESULTS.md has no nan, None or traceback" "$(grep -nE '\b(nan|None)\b|Traceback' "$MD" | head -5)"
for k in machine.nproc machine.model machine.kernel machine.date; do
	[ -n "$(get "$k")" ]
	tap_ok $? "machine figure $k present"
done
[ "$(get run.failed)" = 0 ]
tap_ok $? "no measurement failed" "$(grep -P '^fail\.' "$TSV")"

# --- throughput: numbers present, every message delivered exactly once --------------
phases="smtp pipe_floor direct_sink direct_sink_base proxy_relay proxy_relay_base lmtp_relay"
[ "$(get run.sink_behind_proxy)" = 1 ] && phases="$phases proxy_sink proxy_sink_base lmtp_sink lmtp_sink_base"
for p in $phases; do
	cpu=$(get "tp.$p.bench_cpu_ms_per_msg")
	is_num "$cpu"
	tap_ok $? "throughput $p: the bench's CPU per message is a number ($cpu ms)"
	rate=$(get "tp.$p.rate")
	is_num "$rate"
	tap_ok $? "throughput $p: msg/s is a number ($rate)"
	for k in sent arrived arrived_unique; do
		[ "$(get "tp.$p.$k")" = "$N" ]
		tap_ok $? "throughput $p: $k = $N" "got $(get "tp.$p.$k")"
	done
	[ "$(get "tp.$p.dup_log")" = 0 ] && [ "$(get "tp.$p.arrived_dup")" = 0 ] &&
		[ "$(get "tp.$p.deferred")" = 0 ] && [ "$(get "tp.$p.bounced")" = 0 ]
	tap_ok $? "throughput $p: no duplicate, deferral or bounce" \
		"dup_log=$(get "tp.$p.dup_log") arrived_dup=$(get "tp.$p.arrived_dup") deferred=$(get "tp.$p.deferred") bounced=$(get "tp.$p.bounced")"
done
[ "$(get tp.proxy_relay.relay_msgs)" = "$N" ] && [ "$(get tp.proxy_relay.proxy_conns)" = "$N" ]
tap_ok $? "emulator counters: $N tunnels and $N stored messages for the proxy → relay phase" \
	"relay_msgs=$(get tp.proxy_relay.relay_msgs) proxy_conns=$(get tp.proxy_relay.proxy_conns)"
# btprelay-lmtp keeps its tunnel: fewer tunnels than messages, every message stored once
[ "$(get tp.lmtp_relay.relay_msgs)" = "$N" ] && [ "$(get tp.lmtp_relay.proxy_conns)" -ge 1 ] &&
	[ "$(get tp.lmtp_relay.proxy_conns)" -lt "$N" ]
tap_ok $? "emulator counters: btprelay-lmtp stored $N messages over fewer than $N tunnels" \
	"relay_msgs=$(get tp.lmtp_relay.relay_msgs) proxy_conns=$(get tp.lmtp_relay.proxy_conns)"
# the proxy: btp-fastproxy when built (the bench's own), its CPU measured per message
if [ -x "$top_builddir/tests/emulator/btp-fastproxy" ]; then
	[ "$(get run.proxy)" = fast ]
	tap_ok $? "the bench ran btp-fastproxy as the emulator's proxy" "run.proxy=$(get run.proxy)"
	for p in proxy_relay lmtp_relay; do
		v=$(get "tp.$p.proxy_us_per_msg")
		is_num "$v" && is_num "$(get "tp.$p.proxy_pct_core")"
		tap_ok $? "throughput $p: btp-fastproxy's CPU per message is a number ($v µs)"
	done
fi
tok=0 finds=0
for p in direct_sink proxy_relay proxy_sink direct_sink_base proxy_relay_base proxy_sink_base lmtp_sink lmtp_relay; do
	v=$(get "tp.$p.tokens") f=$(get "tp.$p.finds")
	tok=$((tok + ${v:-0})) finds=$((finds + ${f:-0}))
done
[ "$tok" -ge 1 ] && [ "$finds" -ge 1 ]
tap_ok $? "cache counters counted (tokens $tok, finds $finds)"
[ "$(get tp.smtp.tokens)" = 0 ] && [ "$(get tp.smtp.proxy_conns)" = 0 ]
tap_ok $? "Postfix smtp phase touched no BTP service"

# --- cache under expiry -------------------------------------------------------------
[ "$(get exp.sent)" = "$(get exp.n)" ] && is_num "$(get exp.span)"
tap_ok $? "expiry: all $(get exp.n) delivered, span $(get exp.span) s"
for k in tokens_conn tokens_dest finds ideal_tokens ideal_finds; do
	v=$(get "exp.$k")
	[[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ]
	tap_ok $? "expiry: $k is a count ($v)"
done

# --- round trips --------------------------------------------------------------------
if [ -n "$(get rtt.skip)" ]; then
	tap_ok 0 "round trips skipped with a reason: $(get rtt.skip)"
	grep -qF "$(get rtt.skip)" "$MD"
	tap_ok $? "RESULTS.md gives the reason"
else
	for v in plain starttls auth; do
		for c in warm cold; do
			ok=0
			for d in 0 "$(get rtt.delay_ms)"; do is_num "$(get "rtt.$v.$c.$d.median")" || ok=1; done
			tap_ok $ok "round trips $v $c: both timings are numbers"
			if command -v strace >/dev/null 2>&1; then
				get "rtt.$v.$c.timeline" | sed 's/\\n/\n/g' | grep -q '^TOTAL|[0-9]* waits'
				tap_ok $? "round trips $v $c: traced waits counted"
			fi
		done
	done
fi

# --- cost per delivery --------------------------------------------------------------
for size in $(get cost.sizes); do
	for route in relay sink relay_base sink_base; do
		cpu=$(get "cost.$route.$size.cpu") rss=$(get "cost.$route.$size.rss")
		is_num "$cpu" && { [ ! -x /usr/bin/time ] || { [[ $rss =~ ^[0-9]+$ ]] && [ "$rss" -gt 0 ]; }; }
		tap_ok $? "cost $route $size bytes: CPU ${cpu}s, peak RSS ${rss:-(no /usr/bin/time)} KiB"
	done
done
if [ -n "$(get cost.sys.skip)" ]; then
	tap_ok 0 "cost with the system CA bundle skipped with a reason: $(get cost.sys.skip)"
else
	for route in sys sys_base; do
		cpu=$(get "cost.$route.1024.cpu")
		is_num "$cpu"
		tap_ok $? "cost $route (system CA bundle, $(get cost.sys.certs) certificates): CPU ${cpu}s"
	done
fi

# --- profile ------------------------------------------------------------------------
if [ -z "$(get prof.skip_perf)" ]; then
	is_num "$(get prof.startup_V)" && is_num "$(get prof.base.startup_V)"
	tap_ok $? "profile: start-up cost measured ($(get prof.startup_V) ms, baseline $(get prof.base.startup_V) ms)"
fi
[ -n "$(get prof.strace)" ] || [ -z "$(command -v strace)" ]
tap_ok $? "profile: system calls counted (when strace exists)"

tap_done
