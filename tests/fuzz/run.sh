#!/bin/sh
# run.sh [SECONDS] [TARGET...] - the long form of fuzzing: build every target
# (tests/fuzz/build.sh), then run each for SECONDS (default 300), and print
# one line per target with the executions libFuzzer reports.
#
#   tests/fuzz/run.sh                  every target, 300 s each
#   tests/fuzz/run.sh 3600 socks5      one target for an hour
#   FUZZ_JOBS=2 tests/fuzz/run.sh 600  two targets at a time
#
# Environment: FUZZ_OUT (default build-fuzz/ at the top of the tree: the
# binaries, the growing work corpora in work/TARGET, crashes in
# crashes/TARGET, logs), FUZZ_JOBS (targets run at once, default 1),
# CC (clang), FUZZ_NO_BUILD (set: use the targets already in FUZZ_OUT).
# The seed corpora in tests/fuzz/corpus and the regression inputs in
# tests/fuzz/regress are read, never written. A crash stops its
# target; its input is kept in crashes/TARGET/ and the line says so: save it
# under tests/fuzz/regress/TARGET/ with a name that says what it is.
# Exit 0 when no target crashed, 1 otherwise, 77 when clang/libFuzzer is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=300
case ${1:-} in
[0-9]*) seconds=$1; shift ;;
esac
out=${FUZZ_OUT:-$top/build-fuzz}
jobs=${FUZZ_JOBS:-1}

if [ -z "${FUZZ_NO_BUILD:-}" ] || [ ! -s "$out/targets" ]; then
	"$here/build.sh" "$out" || exit $?
fi
out=$(cd "$out" && pwd)
targets=${*:-$(sed 's/^fuzz-//' "$out/targets")}

# max_len - the longest input worth trying for a target
max_len() {
	case $1 in
	socks5|base64) echo 512 ;;
	smtp-reply|smtp-envelope|smtp-body) echo 4096 ;;
	*) echo 8192 ;;
	esac
}

# executions LOG - libFuzzer's count of executed inputs
executions() {
	n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$1" | tail -1)
	[ -n "$n" ] || n=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$1" | tail -1)
	[ -n "$n" ] || n=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$1" | tail -1)
	echo "${n:-0}"
}

# fuzz TARGET SECONDS - one run; prints its result line; returns 1 on a crash
fuzz() {
	t=$1
	bin=$out/fuzz-$t
	[ -x "$bin" ] || { echo "$t: no such target (have: $(sed 's/^fuzz-//' "$out/targets" | tr '\n' ' '))"; return 1; }
	mkdir -p "$out/work/$t" "$out/crashes/$t" "$out/logs"
	log=$out/logs/$t.log
	dirs="$out/work/$t"
	for d in "$here/corpus/$t" "$here/regress/$t"; do
		[ -d "$d" ] && dirs="$dirs $d"
	done
	start=$(date +%s)
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$2" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/crashes/$t/" $dirs > "$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	n=$(executions "$log")
	corpus=$(find "$out/work/$t" -type f | wc -l)
	if [ "$rc" = 0 ]; then
		echo "$t: $n executions in $secs s ($(( n / (secs > 0 ? secs : 1) ))/s), work corpus $corpus, no crash"
		return 0
	fi
	crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
	what=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|property violated' "$log")
	echo "$t: CRASH after $n executions: ${what:-exit $rc}"
	echo "$t:   reproducer ${crash:-(none written)}; log $log"
	echo "$t:   replay: $bin ${crash:-FILE}"
	return 1
}

echo "fuzzing $(echo "$targets" | wc -w) targets for $seconds s each, $jobs at a time, in $out"
summary=$out/logs/summary.txt
mkdir -p "$out/logs"
: > "$summary"
running=0
for t in $targets; do
	# each job writes its own file: lines of parallel jobs never interleave
	( fuzz "$t" "$seconds" > "$out/logs/$t.result" ) &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait
		running=0
	fi
done
wait
for t in $targets; do
	tee -a "$summary" < "$out/logs/$t.result" 2>/dev/null
	rm -f "$out/logs/$t.result"
done
! grep -q ': CRASH' "$summary"
