#!/bin/bash
# check.sh - the whole test suite: install dependencies (when root), build,
# run every test (unit, emulator, Postfix integration), print a summary
# ending with the line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
tests/install-deps.sh || exit 1
tests/build.sh || { echo "0 passed, 1 failed"; exit 1; }
cd build
make -j"$(nproc)" check > check.log 2>&1
status=$?
# The unit tests and the Postfix integration test again, built with ASan+UBSan in build-asan/.
../tests/sanitize.sh
asan_status=$?
grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS|XFAIL):' check.log ../build-asan/check.log 2>/dev/null | grep -v ':PASS:' || true
count() { n=$(sed -n "s/^# $2: *\([0-9]*\)/\1/p" "$1" 2>/dev/null | tail -1); echo "${n:-0}"; }
sum() { echo $(( $(count check.log "$1") + $(count ../build-asan/check.log "$1") )); }
pass=$(sum PASS); fail=$(sum FAIL); error=$(sum ERROR); skip=$(sum SKIP); xpass=$(sum XPASS)
failed=$(( fail + error + xpass ))
if { [ "$status" != 0 ] || [ "$asan_status" != 0 ]; } && [ "$failed" = 0 ]; then
	tail -30 check.log
	failed=1
fi
# Where CI installed every tool, a skip means something is missing: count it as a failure.
if [ -n "${CI:-}" ] && [ "${skip:-0}" != 0 ]; then
	echo "CI: ${skip} skipped checks count as failures (a tool is missing)"
	failed=$((failed + skip))
fi
for log in $(grep -lE '^not ok|^Bail out' $(find tests ../build-asan/tests -name '*.log' ! -name test-suite.log 2>/dev/null) 2>/dev/null); do
	echo "=== $log"; grep -E '^not ok|^#|^Bail out' "$log" | head -40
done
echo "${pass:-0} passed, ${failed} failed, ${skip:-0} skipped"
[ "$failed" = 0 ]
