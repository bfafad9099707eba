#!/bin/bash
# test-status-table.sh - every row of the STATUS TABLE (status-table.txt) against the
# emulator's relay, running btprelay-transport directly (no Postfix): exit status, the
# enhanced status code at byte 0 of the output (for a delivery: dsn= in the log), and a
# fragment of the text. Then the rule for several recipients (DATA only when every RCPT
# was accepted, otherwise RSET and the worst outcome with every reply), and that the man
# page shows exactly this table.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
command -v runuser >/dev/null 2>&1 || harness_skip "runuser not installed"
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed"
harness_init status-table
harness_start_emulator
# different timeouts, so that a row tells which applies (the data-done one only after the dot)
harness_install_transport "smtp_command_timeout = 2" "smtp_data_done_timeout = 5" \
	"destination_cache_ttl = 0"
TABLE=$top_srcdir/tests/integration/status-table.txt
MSG=$WORK/message.txt
printf 'From: sender@client.test\nSubject: status table\n\nhello\n.leading dot\n' > "$MSG"
chmod 644 "$MSG"

# faults_json "stage=action ; rcpt:addr=action ..." - the POST /faults body
faults_json() {
	python3 - "$1" <<'PY'
import json, sys
relay, rcpt = {}, {}
for part in sys.argv[1].split(" ; "):
    part = part.strip()
    if not part:
        continue
    key, action = part.split("=", 1)
    if key.startswith("rcpt:"):
        rcpt[key[5:]] = action
    else:
        relay[key] = action
print(json.dumps({"relay": relay or None, "rcpt_reply": rcpt or None}))
PY
}

# transport DEST RCPT... - run the transport as its user; sets OUT and RC
transport() {
	local dest=$1
	shift
	: > "$BTPRELAY_LOG"
	OUT=$(runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" -c "$WORK/etc/btprelay.conf" \
		-q STATUSTEST -f sender@client.test -d "$dest" -- "$@" < "$MSG" 2>&1)
	RC=$?
}

# The destinations of the table: N, A, R.
dest_clone T_N MAIL_NOLOC
dest_clone T_A MAIL_ONPREM
dest_clone T_R MAIL_NOLOC mail.smtp.starttls.required=true
for d in T_N T_A T_R; do
	emu GET "/destinations/$d" >/dev/null || { echo "Bail out! cannot create destination $d"; exit 99; }
done

trim() { printf '%s' "$1" | sed 's/^[ 	]*//; s/[ 	]*$//'; }

echo "# --- the status table, row by row"
while IFS='|' read -r stage relay dest faults rcpts code status text note; do
	stage=$(echo "$stage" | sed 's/^ *//; s/ *$//')
	case $stage in ''|'#'*) continue ;; esac
	relay=$(trim "$relay"); dest=$(trim "$dest"); faults=$(trim "$faults")
	rcpts=$(trim "$rcpts"); code=$(trim "$code"); status=$(trim "$status"); text=$(trim "$text")
	emu POST /faults/clear >/dev/null
	emu POST /faults "$(faults_json "$faults")" >/dev/null ||
		{ tap_ok 1 "$stage, relay: $relay (faults $faults refused by the emulator)"; continue; }
	IFS=, read -r -a rcpt_list <<< "$rcpts"
	transport "T_$dest" "${rcpt_list[@]}"
	bad=""
	[ "$RC" = "$code" ] || bad="$bad exit $RC, want $code;"
	if [ "$code" = 0 ]; then
		grep -q "dsn=$status, status=sent" "$BTPRELAY_LOG" || bad="$bad no dsn=$status in the log;"
	else
		case $OUT in "$status "*) ;; *) bad="$bad output does not start with \"$status \";" ;; esac
	fi
	case $OUT in *"$text"*) ;; *) bad="$bad output lacks \"$text\";" ;; esac
	[ -z "$bad" ]
	tap_ok $? "$stage, relay: $relay -> exit $code, $status" "$bad
output: $OUT"
done < "$TABLE"
emu POST /faults/clear >/dev/null

echo "# --- several recipients: DATA only when every RCPT was accepted"
# conn_commands - the commands of the relay's last connection, one per line
conn_commands() {
	emu GET /connections | jq -r '.[-1].commands[].command'
}
for mode in pipelining lock-step; do
	emu POST /reset >/dev/null
	dest_clone T_N MAIL_NOLOC
	[ "$mode" = lock-step ] && emu POST /relay '{"pipelining":false}' >/dev/null
	emu POST /faults '{"rcpt_reply":{"nobody@corp.example":"550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown"}}' >/dev/null
	transport T_N a@corp.example nobody@corp.example c@corp.example
	tap_ok $([ "$RC" = 69 ]; echo $?) "$mode, 3 recipients, 1 refused with 550: exit 69" "exit $RC: $OUT"
	case $OUT in "5.1.1 1 of 3 recipients refused, message not sent: "*) r=0 ;; *) r=1 ;; esac
	tap_ok $r "$mode: output starts with 5.1.1 and says nothing was sent" "$OUT"
	want="<nobody@corp.example>: host mail.corp.internal:25 said: 550 5.1.1 <nobody@corp.example>: Recipient address rejected: User unknown (in reply to RCPT TO command); accepted: <a@corp.example> (250 2.1.5 Ok), <c@corp.example> (250 2.1.5 Ok)"
	case $OUT in *"$want"*) r=0 ;; *) r=1 ;; esac
	tap_ok $r "$mode: the text lists every recipient's reply" "want: $want
got:  $OUT"
	n=$(emu GET /counters | jq .relay_messages)
	tap_ok $([ "$n" = 0 ]; echo $?) "$mode: nothing reached the relay" "relay_messages = $n"
	cmds=$(conn_commands | tr '\n' ' ')
	case " $cmds" in *" DATA "*) r=1 ;; *) r=0 ;; esac
	tap_ok $r "$mode: no DATA command" "$cmds"
	case "$cmds" in *"RSET"*) r=0 ;; *) r=1 ;; esac
	tap_ok $r "$mode: RSET after the refused recipient" "$cmds"
	grep -q 'to=<a@corp.example>.*dsn=4.0.0, status=deferred (delivery not attempted: another recipient of this request was rejected (<nobody@corp.example>))' "$BTPRELAY_LOG"
	tap_ok $? "$mode: log: the accepted recipients were not attempted" "$(grep 'to=<' "$BTPRELAY_LOG")"
	grep -q 'to=<nobody@corp.example>.*dsn=5.1.1, status=bounced' "$BTPRELAY_LOG"
	tap_ok $? "$mode: log: the refused recipient bounced" "$(grep 'to=<' "$BTPRELAY_LOG")"
done
emu POST /relay '{"pipelining":null}' >/dev/null

# The worst outcome wins: one 4xx and one 5xx.
emu POST /faults/clear >/dev/null
emu POST /faults '{"rcpt_reply":{"busy@corp.example":"450 4.2.0 Mailbox busy","nobody@corp.example":"550 5.1.1 User unknown"}}' >/dev/null
transport T_N busy@corp.example ok@corp.example nobody@corp.example
case $OUT in "5.1.1 2 of 3 recipients refused, message not sent: <busy@corp.example>: "*"450 4.2.0 Mailbox busy"*"; <nobody@corp.example>: "*"550 5.1.1 User unknown"*"accepted: <ok@corp.example> (250 2.1.5 Ok)"*) r=0 ;; *) r=1 ;; esac
tap_ok $([ "$RC" = 69 ] && [ $r = 0 ]; echo $?) "450 and 550 among 3: the worst (5.1.1, exit 69), both replies" "exit $RC: $OUT"
# All accepted: one message with three recipients.
emu POST /faults/clear >/dev/null
transport T_N a@corp.example b@corp.example c@corp.example
n=$(emu GET /messages | jq '[.[] | select(.rcpt_to == ["a@corp.example","b@corp.example","c@corp.example"])] | length')
tap_ok $([ "$RC" = 0 ] && [ "$n" = 1 ]; echo $?) "3 recipients, all accepted: delivered once to all three" "exit $RC, $n message(s): $OUT"

echo "# --- the man page shows this table"
page=$top_srcdir/plugin/transport/btprelay-transport.8
sed -n '/^\.\\" STATUS TABLE BEGIN/,/^\.\\" STATUS TABLE END/p' "$page" | sed '1d;$d' > "$WORK/table.man"
sh "$top_srcdir/tests/integration/status-table-roff.sh" "$TABLE" > "$WORK/table.gen"
diff=$(diff -u "$WORK/table.gen" "$WORK/table.man" | head -20)
[ -s "$WORK/table.man" ] && [ -z "$diff" ]
tap_ok $? "btprelay-transport.8 STATUS TABLE = status-table-roff.sh status-table.txt" \
	"${diff:-the man page has no STATUS TABLE block}
(update: sh tests/integration/status-table-roff.sh --update plugin/transport/btprelay-transport.8)"
head -1 "$page" | grep -q "^'\\\\\" t"
tap_ok $? "btprelay-transport.8 asks for tbl on its first line"

tap_done
