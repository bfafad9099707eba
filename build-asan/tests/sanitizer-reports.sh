#!/bin/sh
# sanitizer-reports.sh - written by tests/sanitize.sh: ASan/UBSan reports of
# processes the tests did not run themselves (btprelay-transport under pipe(8)).
n=0
for f in "/tmp/btprelay-sanitizer.Uecmpp"/*; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	mkdir -p "/work/main/build-asan/sanitizer-reports"
	cp "$f" "/work/main/build-asan/sanitizer-reports/"
	echo "# $f:"
	sed 's/^/#   /' "$f" | head -60
done
if [ "$n" = 0 ]; then
	echo "ok 1 - no ASan/UBSan report from btprelay-transport run by Postfix"
else
	echo "not ok 1 - $n ASan/UBSan report(s) from btprelay-transport run by Postfix (kept in build-asan/sanitizer-reports/)"
fi
echo "1..1"
