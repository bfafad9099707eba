#!/bin/sh
# test-fuzz.sh - the CI form of fuzzing (TAP): build the libFuzzer targets
# with ASan and UBSan (tests/fuzz/build.sh), replay every seed and every
# regression input, run the hostile-input checks (hostile.c), then fuzz each
# target for FUZZ_SECONDS (default 10) and report its executions.
# Skips (77) without clang/libFuzzer. The long form is tests/fuzz/run.sh.
#
# Environment: FUZZ_SECONDS (per target; 0 = replay and hostile checks only),
# FUZZ_JOBS (targets fuzzed at once, default 1: make check runs other tests
# beside this one), top_srcdir/top_builddir (set by make check).
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
here=$top_srcdir/tests/fuzz
out=$top_builddir/tests/fuzz/out
seconds=${FUZZ_SECONDS:-10}
jobs=${FUZZ_JOBS:-1}
n=0
failed=0

tap() {	# STATUS DESCRIPTION [DIAGNOSTIC-FILE]
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		echo "not ok $n - $2"
		[ -n "${3:-}" ] && [ -f "$3" ] && sed 's/^/#   /' "$3" | head -40
	fi
}

mkdir -p "$out"
"$here/build.sh" "$out" > "$out/build.out" 2>&1
rc=$?
if [ "$rc" = 77 ]; then
	echo "1..0 # SKIP $(tail -1 "$out/build.out")"
	exit 77
fi
tap "$rc" "build the fuzz targets with clang -fsanitize=fuzzer,address,undefined" "$out/build.out"
[ "$rc" = 0 ] || { echo "1..$n"; exit 1; }
targets=$(sed 's/^fuzz-//' "$out/targets")

# inputs TARGET - the seed corpus and the regression inputs of a target
inputs() {
	for d in "$here/corpus/$1" "$here/regress/$1"; do
		[ -d "$d" ] && find "$d" -type f ! -name '*.md' | sort
	done
}

# Replay: every seed and every crash found so far, once each.
for t in $targets; do
	files=$(inputs "$t")
	count=$(printf '%s\n' "$files" | grep -c .)
	nreg=$(find "$here/regress/$t" -type f ! -name '*.md' 2>/dev/null | wc -l)
	if [ "$count" = 0 ]; then
		tap 1 "replay $t: no seed corpus in tests/fuzz/corpus/$t"
		continue
	fi
	# shellcheck disable=SC2086
	"$out/fuzz-$t" -timeout=20 -rss_limit_mb=2048 $files > "$out/replay-$t.log" 2>&1
	rc=$?
	[ "$rc" = 0 ] || grep -E 'Running:|ERROR|runtime error|property violated|outcome:|^ *#[0-9]+ ' \
		"$out/replay-$t.log" > "$out/replay-$t.diag"
	tap "$rc" "replay $t: $count inputs ($nreg regression)" "$out/replay-$t.diag"
done

# Hostile input at the parser level: its own TAP lines, renumbered into ours.
"$out/hostile" > "$out/hostile.log" 2> "$out/hostile.err"
rc=$?
while IFS= read -r line; do
	case $line in
	"ok "*|"not ok "*)
		st=0
		case $line in "not ok "*) st=1 ;; esac
		desc=$(printf '%s\n' "$line" | sed 's/^\(not \)\{0,1\}ok [0-9]* - //')
		tap "$st" "hostile: $desc"
		;;
	"#"*) echo "$line" ;;
	esac
done < "$out/hostile.log"
if [ "$rc" != 0 ] && ! grep -q '^not ok' "$out/hostile.log"; then
	tail -30 "$out/hostile.err" > "$out/hostile.diag"
	tap 1 "hostile: the checks ran to the end (exit $rc)" "$out/hostile.diag"
fi

# Fuzz each target for a bounded time.
if [ "$seconds" -gt 0 ] 2>/dev/null; then
	# niced: make check runs timing-sensitive integration tests beside this one
	# shellcheck disable=SC2086
	FUZZ_OUT=$out FUZZ_JOBS=$jobs FUZZ_NO_BUILD=1 nice -n 10 "$here/run.sh" "$seconds" $targets \
		> "$out/run.log" 2>&1
	for t in $targets; do
		line=$(grep "^$t: " "$out/logs/summary.txt" 2>/dev/null | head -1)
		case $line in
		*"no crash")
			tap 0 "fuzz $(printf '%s\n' "$line" | sed 's/, work corpus [0-9]*, no crash$/, no crash/')"
			;;
		*)
			grep "^$t: " "$out/logs/summary.txt" > "$out/fuzz-$t.diag" 2>/dev/null ||
				tail -20 "$out/run.log" > "$out/fuzz-$t.diag"
			tap 1 "fuzz $t for $seconds s: ${line#"$t: "}" "$out/fuzz-$t.diag"
			;;
		esac
	done
fi

echo "1..$n"
[ "$failed" = 0 ]
