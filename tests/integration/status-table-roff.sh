#!/bin/sh
# status-table-roff.sh [FILE] - the STATUS TABLE of btprelay-transport(8) as tbl(1)
# input, from tests/integration/status-table.txt (or FILE). The man page holds this
# output between its "STATUS TABLE BEGIN" and "STATUS TABLE END" comments;
# tests/integration/test-status-table.sh checks that they are the same. To update the
# man page after changing the table:
#   sh tests/integration/status-table-roff.sh > /tmp/t && (edit the block by hand, or)
#   sh tests/integration/status-table-roff.sh --update plugin/transport/btprelay-transport.8
set -eu
here=$(dirname "$0")
if [ "${1:-}" = --update ]; then
	page=${2:?usage: status-table-roff.sh --update MANPAGE}
	tmp=$page.tmp.$$
	sh "$0" > "$tmp.block"
	awk -v block="$tmp.block" '
		/^\.\\" STATUS TABLE END/ { skip = 0 }
		!skip { print }
		/^\.\\" STATUS TABLE BEGIN/ { while ((getline l < block) > 0) print l; skip = 1 }
	' "$page" > "$tmp"
	rm -f "$tmp.block"
	mv "$tmp" "$page"
	exit 0
fi
file=${1:-$here/status-table.txt}
awk -F'|' '
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
# roff - a cell: backslashes escaped, a leading dot or quote guarded, and break points
# (\:) after "=", "_" and a dot inside a word, so long property names fit narrow columns
function roff(s,   out, i, c) {
	gsub(/\\/, "\\e", s)
	out = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		out = out c
		if (c ~ /[=_]/ || (c == "." && i > 1 && substr(s, i + 1, 1) ~ /[a-z]/))
			out = out "\\:"
	}
	if (out ~ /^[.\047]/) out = "\\&" out
	return out
}
BEGIN {
	print ".nh"
	print ".ad l"
	print ".TS"
	print "box tab(@);"
	print "lb lb lb lb lb lb"
	print "lw(8n) lw(15n) l l l lx."
	print "Stage@Relay@Result@Status@Exit@Output (an excerpt)"
	print "_"
}
/^#/ || /^[ \t]*$/ { next }
{
	stage = trim($1); relay = trim($2); code = trim($6); status = trim($7)
	text = trim($8); note = trim($9)
	result = code == 0 ? "sent" : code == 75 ? "deferred" : code == 69 ? "bounced" : "?"
	if (stage != last && NR > 1 && last != "") print "_"
	last = stage
	print "T{"
	print roff(stage)
	print "T}@T{"
	print roff(relay)
	print "T}@" result "@" status "@" code "@T{"
	print roff(text)
	if (note != "") print "\\(em " roff(note)
	print "T}"
}
END { print ".TE"; print ".ad"; print ".hy" }
' "$file"
