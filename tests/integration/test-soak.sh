#!/bin/bash
# test-soak.sh - the soak of issue #6: SOAK_MESSAGES messages (default 2000;
# `make check` uses the default unless the environment says otherwise)
# submitted with smtp-source to a real Postfix that relays them through
# btprelay-transport and the BTP emulator, while the emulator's chaos mode
# injects a fault, drawn at random from the fault kinds that defer, into
# SOAK_RATE (default 0.1) of the proxy and relay connections and of the token
# and Destination Service requests, reproducibly for SOAK_SEED. A share of
# the messages goes to a recipient the relay refuses with 550.
#
# Once every message has had a delivery attempt, the faults stop, the queue
# is flushed until it is empty, and the maillog's per-recipient status lines
# and the messages stored at the relay must show:
#   delivered + bounced = sent;
#   bounced only for the recipient the relay refused with 5xx, and every
#   message to it bounced (never delivered);
#   every delivered message at the relay at least once, no bounced one there;
#   every duplicate explained: all copies of a message but the last carry the
#   relay's "fault_after_dot" record (it stored the message, then the reply
#   to the final dot was lost), the only window SMTP cannot close.
# The figures go to TAP diagnostics and to SOAK_FIGURES (default
# $top_builddir/tests/soak-figures.txt), where tests/RELIABILITY.md takes
# them from. Waits are bounded; nothing is timed.
#
# Long form:  SOAK_MESSAGES=2000 top_srcdir=. top_builddir=BUILD bash tests/integration/test-soak.sh
# Another run of the same faults: the same SOAK_SEED (per-service streams;
# Postfix's parallel deliveries may order connections differently).
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init soak
command -v smtp-source >/dev/null 2>&1 || harness_skip "smtp-source not installed (package postfix)"
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"

SOAK_MESSAGES=${SOAK_MESSAGES:-2000}
SOAK_SEED=${SOAK_SEED:-6006}
SOAK_RATE=${SOAK_RATE:-0.1}
SOAK_SESSIONS=${SOAK_SESSIONS:-10}
SOAK_REJECT_PERCENT=${SOAK_REJECT_PERCENT:-5}
SOAK_FIGURES=${SOAK_FIGURES:-$top_builddir/tests/soak-figures.txt}
SUBMIT_LIMIT=${SUBMIT_LIMIT:-900}	# seconds for smtp-source
ATTEMPT_LIMIT=${ATTEMPT_LIMIT:-900}	# seconds until every message had an attempt
DRAIN_LIMIT=${DRAIN_LIMIT:-300}		# seconds for the queue to empty once the faults stop
REJECTED=reject@corp.example
ACCEPTED=rcpt@corp.example
n_reject=$((SOAK_MESSAGES * SOAK_REJECT_PERCENT / 100))
n_accept=$((SOAK_MESSAGES - n_reject))

harness_start_emulator
# Short timeouts: a hanging relay or proxy costs a few seconds. The reply to the
# final dot that drips (one byte per second, about 30 s) outlasts
# smtp_data_done_timeout, so that copy is a duplicate the relay's record must
# explain; 15 s leave a loaded machine (make -j check) time for every honest 250.
harness_install_transport "smtp_connect_timeout = 3" "smtp_command_timeout = 3" \
	"smtp_data_done_timeout = 15" "http_timeout = 3s" "log_level = info" \
	"destination_cache_ttl = 2"
harness_start_postfix
. "$top_srcdir/tests/lib/scenario.sh"
emu POST /reset >/dev/null

# Every kind defers (or, for QUIT, still delivers): a bounce may only come from the 550.
kinds='[
 "proxy=reset", "proxy=timeout", "proxy=method_ff", "proxy=auth_fail", "proxy=wrong_version",
 "proxy=garbage", "proxy=truncated", "proxy_rep=1", "proxy_rep=3", "proxy_rep=4",
 "relay.greeting=421 4.3.2 chaos: not accepting messages", "relay.greeting=close", "relay.greeting=hang",
 "relay.ehlo=451 4.3.0 chaos: try again", "relay.ehlo=close", "relay.starttls=close",
 "relay.auth=454 4.7.0 chaos: temporary authentication failure", "relay.auth=close",
 "relay.mail=451 4.3.0 chaos: try again", "relay.mail=reset",
 "relay.rcpt=450 4.2.1 chaos: mailbox busy", "relay.rcpt=close", "relay.rcpt=hang",
 "relay.data=451 4.3.0 chaos: try again", "relay.data=close",
 "relay.eod=451 4.3.0 chaos: queue full", "relay.eod=close", "relay.eod=reset", "relay.eod=hang",
 "relay.eod=garbage", "relay.eod=lost", "relay.eod=drip", "relay.quit=close",
 "token=http500", "token=reset", "token=garbage",
 "destination=http500", "destination=reset", "destination=timeout"]'
emu POST /faults "{\"rcpt_reply\":{\"$REJECTED\":\"550 5.1.1 <$REJECTED>: Recipient address rejected: User unknown\"}}" >/dev/null
# Short-lived tokens and destinations: the token service and the Destination Service are
# asked again and again during the run, so their faults (and the stale copy) take part.
emu POST /relay '{"token_ttl":20}' >/dev/null
emu POST /chaos "{\"seed\":$SOAK_SEED,\"rate\":$SOAK_RATE,\"kinds\":$kinds}" >/dev/null
tap_ok $? "chaos on: seed $SOAK_SEED, rate $SOAK_RATE, $(printf '%s' "$kinds" | jq length) kinds"

echo "# submitting $SOAK_MESSAGES messages ($n_accept to <$ACCEPTED>, $n_reject to <$REJECTED>) with $SOAK_SESSIONS sessions"
started=$(date +%s)
timeout "$SUBMIT_LIMIT" smtp-source -s "$SOAK_SESSIONS" -m "$n_accept" -f sender@client.test \
	-t "$ACCEPTED" -M client.test "127.0.0.1:$SMTP_PORT" > "$WORK/log/smtp-source.1" 2>&1 &
p1=$!
timeout "$SUBMIT_LIMIT" smtp-source -s 2 -m "$n_reject" -f sender@client.test \
	-t "$REJECTED" -M client.test "127.0.0.1:$SMTP_PORT" > "$WORK/log/smtp-source.2" 2>&1 &
p2=$!
wait "$p1"; r1=$?
wait "$p2"; r2=$?
[ "$r1" = 0 ] && [ "$r2" = 0 ]
tap_ok $? "smtp-source submitted every message (exit $r1, $r2)" \
	"$(tail -n 3 "$WORK/log/smtp-source.1" "$WORK/log/smtp-source.2")"

# submitted - queue ids Postfix's smtpd received (bounces Postfix makes itself are not counted)
submitted() {
	grep -o 'postfix/smtpd\[[0-9]*\]: [0-9A-Za-z]*: client=' "$WORK/log/maillog" | awk '{print $2}' | tr -d : | sort -u
}
# attempted - queue ids with at least one status line of the pipe delivery agent
attempted() {
	grep -o 'postfix/pipe\[[0-9]*\]: [0-9A-Za-z]*: to=' "$WORK/log/maillog" | awk '{print $2}' | tr -d : | sort -u
}
n_sub=$(submitted | wc -l)
[ "$n_sub" = "$SOAK_MESSAGES" ]
tap_ok $? "Postfix accepted $SOAK_MESSAGES messages" "got $n_sub"

echo "# waiting until every message had a delivery attempt under chaos (at most ${ATTEMPT_LIMIT}s)"
deadline=$(( $(date +%s) + ATTEMPT_LIMIT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
	[ "$(comm -23 <(submitted) <(attempted) | wc -l)" = 0 ] && break
	sleep 2
done
missing=$(comm -23 <(submitted) <(attempted) | wc -l)
[ "$missing" = 0 ]
tap_ok $? "every message had a delivery attempt while faults were injected" "$missing without one"

emu POST /chaos/stop > "$WORK/chaos.json"
chaos_seconds=$(( $(date +%s) - started ))
echo "# faults stopped after ${chaos_seconds}s: $(jq -c '{drawn, injected_total}' "$WORK/chaos.json")"

echo "# flushing until the queue is empty (at most ${DRAIN_LIMIT}s)"
deadline=$(( $(date +%s) + DRAIN_LIMIT ))
left=-1
while [ "$(date +%s)" -lt "$deadline" ]; do
	left=$(postqueue -c "$PF" -j 2>/dev/null | wc -l)
	[ "$left" = 0 ] && break
	flush_queue >/dev/null 2>&1
	sleep 2
done
[ "$left" = 0 ]
tap_ok $? "the queue is empty after the faults stopped" "$left messages left: $(postqueue -c "$PF" -p | tail -5)"
sleep 1		# the last status lines reach the maillog
total_seconds=$(( $(date +%s) - started ))

# --- the accounting ------------------------------------------------------------
python3 - "$WORK/log/maillog" "$EMU/messages" "$WORK/chaos.json" "$WORK/figures" "$WORK/problems" \
	"$ACCEPTED" "$REJECTED" <<'PY'
import collections, json, os, re, sys
maillog, msgdir, chaos_file, figures_out, problems_out, accepted, rejected = sys.argv[1:]
submitted = set()
status = collections.defaultdict(list)          # qid -> [(status, rcpt, line)]
for line in open(maillog, errors="replace"):
    m = re.search(r"postfix/smtpd\[\d+\]: ([0-9A-Za-z]+): client=", line)
    if m:
        submitted.add(m.group(1))
        continue
    m = re.search(r"postfix/pipe\[\d+\]: ([0-9A-Za-z]+): to=<([^>]*)>.* status=(\w+)", line)
    if m:
        status[m.group(1)].append((m.group(3), m.group(2), line.strip()))
problems = []
final = {}
deferrals = 0
for qid in submitted:
    seen = status.get(qid, [])
    deferrals += sum(1 for s, _, _ in seen if s == "deferred")
    finals = [(s, r, l) for s, r, l in seen if s != "deferred"]
    if len(finals) != 1:
        problems.append(f"{qid}: {len(finals)} final status lines: {[s for s, _, _ in finals]}")
    if finals:
        final[qid] = finals[-1]
delivered = {q for q, (s, _, _) in final.items() if s == "sent"}
bounced = {q for q, (s, _, _) in final.items() if s == "bounced"}
other = {q: s for q, (s, _, _) in final.items() if s not in ("sent", "bounced")}
for q, s in other.items():
    problems.append(f"{q}: final status {s}")
to_rejected = {q for q, (_, r, _) in final.items() if r == rejected}
bad_bounces = [final[q][2] for q in bounced
               if final[q][1] != rejected or "dsn=5.1.1" not in final[q][2]
               or "550 5.1.1 <%s>" % rejected not in final[q][2]]
# the relay's copies, by Postfix queue id (from Postfix's own Received header)
copies = collections.defaultdict(list)
for name in os.listdir(msgdir):
    if not name.endswith(".json"):
        continue
    meta = json.load(open(os.path.join(msgdir, name)))
    head = open(os.path.join(msgdir, name[:-5] + ".eml"), "rb").read(4096).decode("utf-8", "replace")
    m = re.search(r"by mta\.btprelay\.test \(Postfix\) with E?SMTP id ([0-9A-Za-z]+)", head)
    if not m:
        problems.append(f"relay message {name}: no Postfix queue id in its Received header")
        continue
    copies[m.group(1)].append(meta)
at_relay = set(copies)
duplicates = sum(len(c) - 1 for c in copies.values())
unexplained = []
explained = 0
for qid, cs in copies.items():
    cs.sort(key=lambda meta: meta["id"])
    for meta in cs[:-1]:           # every copy but the last: the relay stored it, the reply was lost
        if meta.get("fault_after_dot"):
            explained += 1
        else:
            unexplained.append(f"{qid}: copy #{meta['id']} of {len(cs)} without a fault after its final dot")
after_dot = collections.Counter(meta.get("fault_after_dot") for cs in copies.values() for meta in cs
                                if meta.get("fault_after_dot"))
chaos = json.load(open(chaos_file))
fig = collections.OrderedDict()
fig["messages_sent"] = len(submitted)
fig["delivered"] = len(delivered)
fig["bounced"] = len(bounced)
fig["delivered_plus_bounced"] = len(delivered) + len(bounced)
fig["lost"] = len(submitted) - len(delivered) - len(bounced)
fig["bounced_where_relay_said_5xx"] = len(bounced) - len(bad_bounces)
fig["messages_to_rejected_recipient"] = len(to_rejected)
fig["copies_at_relay"] = sum(len(c) for c in copies.values())
fig["duplicates"] = duplicates
fig["duplicates_explained"] = explained
fig["deferrals_logged"] = deferrals
fig["messages_deferred_at_least_once"] = sum(1 for q in submitted if any(s == "deferred" for s, _, _ in status.get(q, [])))
fig["faults_injected"] = chaos["injected_total"]
fig["faults_per_100_connections_or_requests"] = round(100.0 * chaos["injected_total"] / max(1, sum(chaos["drawn"].values())), 1)
for service, n in sorted(chaos["drawn"].items()):
    fig[f"connections_or_requests_drawn.{service}"] = n
for kind, n in sorted(after_dot.items()):
    fig[f"copies_with_fault_after_dot.{kind}"] = n
for kind, n in sorted(chaos["injected"].items(), key=lambda kv: -kv[1]):
    fig[f"injected.{kind}"] = n
checks = {
    "delivered + bounced = sent": fig["lost"] == 0 and not other,
    "each message has exactly one final status line": not any("final status lines" in p for p in problems),
    "bounces only where the relay said 5xx (the 550 recipient, dsn 5.1.1, the relay's text)": not bad_bounces,
    "every message to the 550 recipient bounced, none delivered": to_rejected == bounced,
    "every delivered message is at the relay": delivered <= at_relay,
    "no bounced message is at the relay": not (bounced & at_relay),
    "nothing at the relay that Postfix did not report delivered": at_relay <= delivered,
    "every duplicate explained by the relay's fault-after-final-dot record": not unexplained,
}
with open(figures_out, "w") as f:
    for key, value in fig.items():
        f.write(f"{key} = {value}\n")
with open(problems_out, "w") as f:
    for name, ok in checks.items():
        f.write(("ok" if ok else "FAIL") + "\t" + name + "\n")
    for p in (problems + bad_bounces + unexplained)[:40]:
        f.write("detail\t" + p + "\n")
PY
tap_ok $? "accounting script ran"
while IFS=$'\t' read -r verdict what; do
	[ "$verdict" = detail ] && continue
	[ "$verdict" = ok ]
	tap_ok $? "$what" "$(grep '^detail' "$WORK/problems" | cut -f2- | head -20)"
done < "$WORK/problems"

# --- the figures ----------------------------------------------------------------
{
	echo "# tests/integration/test-soak.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "seed = $SOAK_SEED"
	echo "rate = $SOAK_RATE"
	echo "smtp_sessions = $SOAK_SESSIONS"
	echo "seconds_under_faults = $chaos_seconds"
	echo "seconds_total = $total_seconds"
	cat "$WORK/figures"
} > "$WORK/figures.out"
mkdir -p "$(dirname "$SOAK_FIGURES")" 2>/dev/null
cp "$WORK/figures.out" "$SOAK_FIGURES" 2>/dev/null || echo "# cannot write $SOAK_FIGURES"
sed 's/^/# /' "$WORK/figures.out"
echo "# figures written to $SOAK_FIGURES"
tap_done
