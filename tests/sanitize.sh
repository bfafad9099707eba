#!/bin/sh
# sanitize.sh - the unit tests and the Postfix integration test under
# AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included).
#
# Configures a second build tree, build-asan/ (--enable-sanitizers
# --enable-werror, CC=clang unless SANITIZE_CC says otherwise), builds it and
# runs `make check` there for the unit tests, SANITIZE_TESTS (default
# tests/integration/test-postfix.sh and test-lmtp.sh) and a last check that no process
# outside the test scripts' sight reported anything. Its output is
# build-asan/check.log, ending with automake's usual summary (# PASS: N ...),
# which tests/check.sh adds to its own counts. Exit status: make check's.
#
# How a report cannot get lost: unit tests run with ASAN_OPTIONS and
# UBSAN_OPTIONS that stop the process at the first error, so the test fails
# with the report in its .log. The transport under Postfix runs as user
# btprelay from pipe(8), which clears the environment: the sanitizers'
# options reach it through main.cf (import_environment/export_environment,
# via HARNESS_EXTRA_MAINCF of tests/lib/harness.sh) with log_path set to a
# directory of this run, because pipe(8) would fold a report into the
# delivery status text, and a leak found at exit after the transport printed
# "4.x.x ..." would not even change the delivery's outcome. The generated
# test tests/sanitizer-reports.sh (run last) fails when that directory holds
# any report, and prints them.
#
#   tests/sanitize.sh                          the default set
#   SANITIZE_TESTS="tests/integration/test-postfix.sh tests/integration/test-cli.sh" tests/sanitize.sh
#   SANITIZE_CC=gcc tests/sanitize.sh          gcc's sanitizers instead of clang's
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
tree=$top/build-asan
integration=${SANITIZE_TESTS:-tests/integration/test-postfix.sh tests/integration/test-lmtp.sh}

cc=${SANITIZE_CC:-}
if [ -z "$cc" ]; then
	if command -v clang >/dev/null 2>&1; then cc=clang; else cc=gcc; fi
fi

# fail_log TEXT - a check.log that counts one failure, for tests/check.sh
fail_log() {
	{
		echo "FAIL: sanitize.sh: $1"
		echo "# TOTAL: 1"
		echo "# PASS:  0"
		echo "# SKIP:  0"
		echo "# XFAIL: 0"
		echo "# FAIL:  1"
		echo "# XPASS: 0"
		echo "# ERROR: 0"
	} > "$tree/check.log"
	echo "sanitize.sh: $1"
	exit 1
}

mkdir -p "$tree"
[ -x configure ] || ./autogen.sh > "$tree/autogen.log" 2>&1 || fail_log "autogen.sh failed"
cd "$tree" || exit 1
# Configure again when the tree is new, configure changed, or another compiler is wanted.
if [ ! -f Makefile ] || [ -n "$(find "$top/configure" -newer config.status 2>/dev/null)" ] ||
	! grep -q "^CC='$cc'" config.status 2>/dev/null; then
	"$top/configure" -q --enable-sanitizers --enable-werror CC="$cc" > configure.log 2>&1 ||
		{ tail -20 configure.log; fail_log "configure --enable-sanitizers CC=$cc failed (build-asan/configure.log)"; }
fi
make -j"$(nproc)" > make.log 2>&1 || { tail -40 make.log; fail_log "build failed (build-asan/make.log)"; }

# The unit tests as make knows them (conditional ones included).
# shellcheck disable=SC2016
unit=$(printf 'sanitize-print-unit-tests:\n\t@echo $(unit_tests)\n' |
	make -s -f Makefile -f - sanitize-print-unit-tests 2>/dev/null)
[ -n "$unit" ] || fail_log "no unit_tests in build-asan/Makefile"
# shellcheck disable=SC2086
make -j"$(nproc)" $unit > make-tests.log 2>&1 || { tail -40 make-tests.log; fail_log "unit tests do not build (build-asan/make-tests.log)"; }

# Reports of the transport under Postfix: a directory user btprelay can write to.
reports=$(mktemp -d /tmp/btprelay-sanitizer.XXXXXX)
chmod 1777 "$reports"
trap 'rm -rf "$reports"' EXIT
asan="detect_leaks=1:abort_on_error=1"
ubsan="print_stacktrace=1:halt_on_error=1"
ASAN_OPTIONS=$asan
UBSAN_OPTIONS=$ubsan
HARNESS_EXTRA_MAINCF="import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSIXLY_CORRECT ASAN_OPTIONS=$asan:log_path=$reports/asan UBSAN_OPTIONS=$ubsan:log_path=$reports/ubsan
export_environment = TZ MAIL_CONFIG LANG ASAN_OPTIONS UBSAN_OPTIONS"
export ASAN_OPTIONS UBSAN_OPTIONS HARNESS_EXTRA_MAINCF

mkdir -p tests
cat > tests/sanitizer-reports.sh <<EOF
#!/bin/sh
# sanitizer-reports.sh - written by tests/sanitize.sh: ASan/UBSan reports of
# processes the tests did not run themselves (btprelay-transport under pipe(8)).
n=0
for f in "$reports"/*; do
	[ -f "\$f" ] || continue
	n=\$((n + 1))
	mkdir -p "$tree/sanitizer-reports"
	cp "\$f" "$tree/sanitizer-reports/"
	echo "# \$f:"
	sed 's/^/#   /' "\$f" | head -60
done
if [ "\$n" = 0 ]; then
	echo "ok 1 - no ASan/UBSan report from btprelay-transport run by Postfix"
else
	echo "not ok 1 - \$n ASan/UBSan report(s) from btprelay-transport run by Postfix (kept in build-asan/sanitizer-reports/)"
fi
echo "1..1"
EOF
chmod +x tests/sanitizer-reports.sh
rm -rf sanitizer-reports

# -j1: the reports check must run after the tests that produce the reports.
# shellcheck disable=SC2086
make -j1 check TESTS="$unit $integration tests/sanitizer-reports.sh" > check.log 2>&1
status=$?
grep -E '^(FAIL|ERROR|SKIP|XPASS|XFAIL):' check.log
grep -E '^# (TOTAL|PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):' check.log | tail -7 | sed 's/^/sanitize.sh: /'
[ -d sanitizer-reports ] && echo "sanitize.sh: reports kept in $tree/sanitizer-reports"
exit $status
