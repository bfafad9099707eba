#!/bin/bash
# test-man.sh - every man page in the tree renders without a warning: groff with
# all warnings on (-ww), its preprocessors as the page asks (tbl), for a UTF-8
# terminal. groff does not warn about one mistake that man(7) pages make easily:
# an alternating-font macro (.BR, .IR, ...) given running text, whose arguments
# are then set without the spaces between them ("fix),andthemilterresolves"). Two
# bare words side by side among such a macro's arguments are reported too.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/lib/harness.sh"
command -v groff > /dev/null 2>&1 || harness_skip "groff not installed (tests/install-deps.sh: groff-base)"

# the pages of the tree: *.1 .. *.8 with a .TH line, outside build and autoconf output
pages=$(cd "$top_srcdir" && find . \( -path ./build -o -path './build-*' -o -path ./tests \
	-o -name autom4te.cache -o -name .git \) -prune -o -type f -name '*.[1-8]' -print |
	sed 's|^\./||' | sort | while read -r p; do grep -q '^\.TH ' "$p" && echo "$p"; done)
[ -n "$pages" ]
tap_ok $? "man pages found in the tree" "none under $top_srcdir"

for page in $pages; do
	f=$top_srcdir/$page
	out=$(LC_ALL=C.UTF-8 groff -k -t -ww -man -Tutf8 -z "$f" 2>&1)
	[ -z "$out" ]
	tap_ok $? "$page: groff -ww renders it without a warning" "$out"
	glued=$(awk '
		/^\.(BR|RB|IR|RI|BI|IB)[ \t]/ {
			rest = $0; sub(/^\.[A-Z][A-Z][ \t]+/, "", rest); prev = 0
			while (length(rest) > 0) {
				if (substr(rest, 1, 1) == "\"") {
					rest = substr(rest, 2); i = index(rest, "\"")
					if (i == 0) i = length(rest)
					rest = substr(rest, i + 1); bare = 0
				} else {
					i = match(rest, /[ \t]/); if (i == 0) i = length(rest) + 1
					arg = substr(rest, 1, i - 1); rest = substr(rest, i)
					bare = arg ~ /^[A-Za-z][a-z]+$/
					if (bare && prev) { print FILENAME ":" FNR ": " $0; break }
				}
				prev = bare; sub(/^[ \t]+/, "", rest)
			}
		}' "$f")
	[ -z "$glued" ]
	tap_ok $? "$page: no running text in an alternating-font macro (words set without spaces)" "$glued"
done
tap_done
