#!/bin/bash
# test-routes.sh - relay routes kept in the cockpit (issue #12, part 2): MAIL
# destinations carry btprelay.domains, `btprelay routes --postmap ... --reload`
# writes the one table that a real Postfix uses as transport_maps and
# relay_domains (no transport_maps line written by hand), and mail follows it:
# through the pipe service and through btprelay-lmtp; a destination added or a
# property removed in the Destination Service changes the routes once the
# cache TTL has passed; an outage keeps them (mail delivered or deferred, never
# bounced); a conflict warns and has the same winner every time; a domain
# without a route is refused at RCPT; env and file routes say where they came
# from; no secret in the command's output at debug level.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init routes
command -v jq >/dev/null 2>&1 || harness_skip "jq not installed (tests/install-deps.sh)"
command -v postmap >/dev/null 2>&1 || harness_skip "postmap not installed (postfix)"
harness_start_emulator
TTL=2
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600"
harness_start_postfix
. "$top_srcdir/tests/lib/scenario.sh"
install -m 755 "$top_builddir/plugin/cli/btprelay" "$WORK/bin/btprelay"
install -d -m 755 -o "$TRANSPORT_USER" "$WORK/routes"
MAP=$WORK/routes/btprelay-routes

# Postfix reads its routing and its relay domains from the generated table only;
# a domain whose route went away is deferred by the retry service, never bounced.
postconf -c "$PF" -e "transport_maps = hash:$MAP" "relay_domains = hash:$MAP" \
	"smtpd_relay_restrictions = reject_unauth_destination" \
	"default_transport = retry:4.3.5 no btprelay route for this domain"
install -m 644 -o "$TRANSPORT_USER" /dev/null "$MAP"
postmap -c "$PF" "hash:$MAP" && chown "$TRANSPORT_USER" "$MAP.db"
postfix -c "$PF" reload >/dev/null 2>&1

# routes [btprelay routes args...] - run as root the way the timer does; output in
# $WORK/out (stdout) and $WORK/err (stderr), exit status in $RC
routes() {
	MAIL_CONFIG=$PF "$WORK/bin/btprelay" -c "$WORK/etc/btprelay.conf" routes "$@" \
		> "$WORK/out" 2> "$WORK/err"
	RC=$?
	cat "$WORK/out" "$WORK/err" >> "$WORK/log/routes.log"
}
refresh() {	# the timer's command
	routes --postmap "hash:$MAP" --reload "$@"
}
has_route() {	# DOMAIN DESTINATION SOURCE - `btprelay routes` printed it
	grep -q "^route: $1 $2 ($3" "$WORK/out"
}
refused_at_rcpt() {	# RCPT - swaks gets 554 Relay access denied at RCPT, nothing is queued
	local out
	out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from sender@client.test --to "$1" \
		--helo client.test --quit-after RCPT 2>&1)
	printf '%s\n' "$out" >> "$WORK/log/swaks.log"
	printf '%s\n' "$out" | grep -q '^<\*\* *554 5\.7\.1 .*Relay access denied'
}
finds() {	# list requests the Destination Service answered
	emu GET /finds | jq '[.[] | select(.api != "destinations")] | length'
}
wait_ttl() {	# past the cache TTL of the routes, and past the failure memo (http_timeout 3)
	sleep $((TTL + 2))
}

scenario "a destination with btprelay.domains: routes written, mail delivered through the pipe service"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example, .corp.example"
refresh
[ "$RC" = 0 ] && has_route corp.example MAIL_ONPREM "cockpit, subaccount" &&
	has_route .corp.example MAIL_ONPREM "cockpit, subaccount"
tap_ok $? "$SCEN: btprelay routes lists both domains from the cockpit (exit $RC)" "$(cat "$WORK/out" "$WORK/err")"
grep -q '^map: .* updated$' "$WORK/out" && grep -q '^reload: done$' "$WORK/out"
tap_ok $? "$SCEN: the map was replaced and Postfix reloaded" "$(cat "$WORK/out")"
[ "$(postconf -c "$PF" -h transport_maps)" = "hash:$MAP" ] &&
	[ "$(postmap -c "$PF" -q corp.example "hash:$MAP")" = "btprelay:MAIL_ONPREM" ] &&
	[ "$(postmap -c "$PF" -q .corp.example "hash:$MAP")" = "btprelay:MAIL_ONPREM" ]
tap_ok $? "$SCEN: transport_maps is the generated table only, and it routes corp.example" \
	"$(postconf -c "$PF" -h transport_maps; cat "$MAP")"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example sent 'relay=btprelay'
q2=$(send_mail sender@client.test user@sub.corp.example --header "Subject: $MARK")
expect_status "$q2" user@sub.corp.example sent 'relay=btprelay'
expect_relay 2 '.via_proxy == true and .location_id == "LOC1"'
grep -q "to=<user@corp.example>.*destination=MAIL_ONPREM" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: btprelay delivered through MAIL_ONPREM" "$(tail -3 "$BTPRELAY_LOG")"
refresh
grep -q '^map: .* unchanged$' "$WORK/out" && ! grep -q '^reload:' "$WORK/out"
tap_ok $? "$SCEN: nothing changed: the map is not rewritten, no reload" "$(cat "$WORK/out")"

scenario "a recipient domain that no route serves is refused at RCPT"
refused_at_rcpt user@nowhere.example
tap_ok $? "$SCEN: 554 5.7.1 Relay access denied" "$(tail -5 "$WORK/log/swaks.log")"
refused_at_rcpt user@corp.example.evil.test
tap_ok $? "$SCEN: a look-alike domain is refused too" "$(tail -5 "$WORK/log/swaks.log")"

scenario "routes follow the Destination Service: served from the cache within the TTL, changed after it"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example"
harness_install_transport "destination_cache_ttl = 300" "destination_stale_ttl = 3600"
refresh
n0=$(finds)
dest_clone MAIL_NEW MAIL_INTERNET "btprelay.domains=new.example"
refresh
[ "$RC" = 0 ] && [ "$(finds)" = "$n0" ] && ! has_route new.example MAIL_NEW cockpit
tap_ok $? "$SCEN: within the TTL (300 s here) the cached list is used: no list request" "finds $n0 -> $(finds); $(cat "$WORK/out")"
emu DELETE /destinations/MAIL_NEW >/dev/null
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600"
cache_clear
refresh
! has_route new.example MAIL_NEW cockpit
tap_ok $? "$SCEN: with a TTL of $TTL s: no new.example yet" "$(cat "$WORK/out")"
dest_clone MAIL_NEW MAIL_INTERNET "btprelay.domains=new.example"
n0=$(finds)
wait_ttl
refresh
[ "$RC" = 0 ] && has_route new.example MAIL_NEW "cockpit, subaccount" && [ "$(finds)" -gt "$n0" ]
tap_ok $? "$SCEN: the destination added: its route is there once the TTL has passed" "$(cat "$WORK/out" "$WORK/err")"
q=$(send_mail sender@client.test user@new.example --header "Subject: $MARK")
expect_status "$q" user@new.example sent
expect_relay 1 '.via_proxy == false'
dest_clone MAIL_NEW MAIL_NEW "btprelay.domains="
wait_ttl
refresh
[ "$RC" = 0 ] && ! grep -q '^route: new\.example ' "$WORK/out" && has_route corp.example MAIL_ONPREM cockpit
tap_ok $? "$SCEN: the property removed: the route is gone after the TTL, the others stay" "$(cat "$WORK/out" "$WORK/err")"
[ -z "$(postmap -c "$PF" -q new.example "hash:$MAP")" ]
tap_ok $? "$SCEN: the table no longer has new.example" "$(cat "$MAP")"
refused_at_rcpt user@new.example
tap_ok $? "$SCEN: mail for new.example is refused at RCPT now" "$(tail -5 "$WORK/log/swaks.log")"

scenario "an instance-level destination of the same name wins over the subaccount's"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example"
emu PUT '/destinations/MAIL_ONPREM?level=instance' \
	"$(emu GET /destinations/MAIL_ONPREM | jq -c '.["btprelay.domains"] = "inst.example"')" >/dev/null
refresh
[ "$RC" = 0 ] && has_route inst.example MAIL_ONPREM "cockpit, instance" && ! grep -q '^route: corp\.example ' "$WORK/out"
tap_ok $? "$SCEN: the instance-level properties are the ones used" "$(cat "$WORK/out")"

scenario "Destination Service outage: the routes stay, mail is delivered, never bounced"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example"
refresh
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example sent	# the transport has the destination cached now
sum=$(md5sum < "$MAP.db")
wait_ttl
emu POST /faults '{"destination":"http500"}' >/dev/null
refresh
[ "$RC" = 0 ] && grep -q '^cockpit: .*stale' "$WORK/out" && has_route corp.example MAIL_ONPREM cockpit &&
	[ "$(md5sum < "$MAP.db")" = "$sum" ]
tap_ok $? "$SCEN: the expired list stands in; the table is unchanged" "$(cat "$WORK/out" "$WORK/err")"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
expect_status "$q" user@corp.example sent
emu POST /faults '{"destination":"refuse"}' >/dev/null
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 0"
cache_clear
refresh
[ "$RC" = 75 ] && grep -q 'the map stays as it was' "$WORK/err" && [ "$(md5sum < "$MAP.db")" = "$sum" ]
tap_ok $? "$SCEN: no list at all: exit 75, the table is left as it was" "exit $RC; $(cat "$WORK/err")"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
line=$(wait_status "$q" user@corp.example '\(sent\|deferred\)')
tap_ok $? "$SCEN: mail for corp.example is deferred or delivered, not refused" "$line"
! grep -q "$q: to=<user@corp.example>.*status=bounced" "$WORK/log/maillog"
tap_ok $? "$SCEN: nothing bounced" "$(grep "$q" "$WORK/log/maillog")"
emu POST /faults/clear >/dev/null
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600"

scenario "two destinations claim one domain: a warning, and the same winner every time"
winners=""
for order in "MAIL_NOLOC MAIL_INTERNET" "MAIL_INTERNET MAIL_NOLOC" "MAIL_NOLOC MAIL_INTERNET"; do
	emu POST /reset >/dev/null
	cache_clear
	for d in $order; do	# re-created in this order: the service lists them so
		j=$(emu GET "/destinations/$d" | jq -c '.["btprelay.domains"] = "shared.example"')
		emu DELETE "/destinations/$d" >/dev/null
		emu PUT "/destinations/$d" "$j" >/dev/null
	done
	refresh
	winners="$winners $(sed -n 's/^route: shared\.example \([^ ]*\) .*/\1/p' "$WORK/out")"
	grep -q 'conflict: domain shared.example is claimed by MAIL_INTERNET .* and MAIL_NOLOC .*; using MAIL_INTERNET' "$WORK/err"
	tap_ok $? "$SCEN: listed as $order: the warning names both and the winner" "$(cat "$WORK/err")"
done
[ "$winners" = " MAIL_INTERNET MAIL_INTERNET MAIL_INTERNET" ] && grep -q '^routes: 1 (1 conflicts)$' "$WORK/out"
tap_ok $? "$SCEN: the winner is MAIL_INTERNET (first by name) every time" "winners:$winners; $(cat "$WORK/out")"
q=$(send_mail sender@client.test user@shared.example --header "Subject: $MARK")
expect_status "$q" user@shared.example sent
grep -q "to=<user@shared.example>.*destination=MAIL_INTERNET" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: the mail went through the winner" "$(grep shared.example "$BTPRELAY_LOG" | tail -2)"

scenario "the LMTP route: routes_transport names the btprelay-lmtp service of the destination"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example"
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600" \
	'routes_transport = lmtp:unix:private/btprelay-lmtp-$destination'
refresh
[ "$RC" = 0 ] && [ "$(postmap -c "$PF" -q corp.example "hash:$MAP")" = "lmtp:unix:private/btprelay-lmtp-MAIL_ONPREM" ]
tap_ok $? "$SCEN: the table routes corp.example to the LMTP service" "$(cat "$MAP" "$WORK/err")"
q=$(send_mail sender@client.test user@corp.example --header "Subject: $MARK")
STATUS_AGENT=lmtp expect_status "$q" user@corp.example sent
expect_relay 1 '.rcpt_to == ["user@corp.example"]'
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600"

scenario "routes from BTPRELAY_ROUTES and routes_file say where they came from; env wins over the cockpit"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example, both.example"
printf '# static routes\nfile.example  MAIL_INTERNET\n\n.file.example=MAIL_INTERNET   # subdomains\n' > "$WORK/etc/routes"
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600" \
	"routes_file = $WORK/etc/routes"
BTPRELAY_ROUTES="env.example=MAIL_NOLOC,both.example=MAIL_NOLOC" refresh
[ "$RC" = 0 ] && has_route env.example MAIL_NOLOC "env, BTPRELAY_ROUTES" &&
	has_route file.example MAIL_INTERNET "file, $WORK/etc/routes:2" &&
	has_route .file.example MAIL_INTERNET "file, $WORK/etc/routes:4" &&
	has_route corp.example MAIL_ONPREM "cockpit, subaccount" &&
	has_route both.example MAIL_NOLOC "env, BTPRELAY_ROUTES"
tap_ok $? "$SCEN: every source, each route with its origin" "$(cat "$WORK/out" "$WORK/err")"
grep -q 'conflict: domain both.example .*using MAIL_NOLOC (the source that takes precedence)' "$WORK/err"
tap_ok $? "$SCEN: env over cockpit is named in a warning" "$(cat "$WORK/err")"
q=$(send_mail sender@client.test user@file.example --header "Subject: $MARK")
expect_status "$q" user@file.example sent
sum=$(md5sum < "$MAP.db")
BTPRELAY_ROUTES="bad domain=MAIL_NOLOC" refresh
[ "$RC" = 78 ] && grep -q 'BTPRELAY_ROUTES: entry 1 "bad domain=MAIL_NOLOC": bad domain' "$WORK/err" &&
	[ "$(md5sum < "$MAP.db")" = "$sum" ]
tap_ok $? "$SCEN: a bad entry: exit 78 naming it, the table unchanged" "exit $RC; $(cat "$WORK/err")"
harness_install_transport "destination_cache_ttl = $TTL" "destination_stale_ttl = 3600"

scenario "no secret in the output at debug level, nor in the cached list"
dest_clone MAIL_ONPREM MAIL_ONPREM "btprelay.domains=corp.example"
MAIL_CONFIG=$PF "$WORK/bin/btprelay" -v -c "$WORK/etc/btprelay.conf" routes --postmap "hash:$MAP" \
	> "$WORK/secret.out" 2> "$WORK/secret.err"
tap_ok $? "$SCEN: btprelay -v routes ran" "$(cat "$WORK/secret.err")"
grep -q 'routes' "$WORK/secret.err"
tap_ok $? "$SCEN: the debug log was written" "$(head -3 "$WORK/secret.err")"
expect_no_secrets "$WORK/secret.out" "$WORK/secret.err" "$MAP" "$WORK"/cache/routes-*.json

scenario "btprelay check reads the routing keys"
# check_routes CONF-LINES... - btprelay check with the suite's configuration plus these lines
check_routes() {
	{ cat "$WORK/etc/btprelay.conf"; printf '%s\n' "$@"; } > "$WORK/check.conf"
	"$WORK/bin/btprelay" -c "$WORK/check.conf" check > "$WORK/out" 2> "$WORK/err"
	RC=$?
}
printf 'corp.example MAIL_ONPREM\n.corp.example MAIL_ONPREM\n' > "$WORK/routes.txt"
BTPRELAY_ROUTES=x.example=MAIL_X check_routes "routes_file = $WORK/routes.txt"
grep -qx "ok: routes: 3 (BTPRELAY_ROUTES set, routes_file $WORK/routes.txt), 0 conflicts" "$WORK/out" &&
	! grep -q '^error: routes' "$WORK/out"
tap_ok $? "$SCEN: environment and file routes counted" "$(grep rout "$WORK/out")"
printf 'corp.example MAIL_ONPREM\nbad..example MAIL_X\n' > "$WORK/routes.txt"
check_routes "routes_file = $WORK/routes.txt"
[ "$RC" = 78 ] && grep -qx "error: routes: $WORK/routes.txt:2: entry 2 \"bad..example MAIL_X\": bad domain: .*" "$WORK/out"
tap_ok $? "$SCEN: a bad routes_file entry is an error naming the line (exit $RC)" "$(grep rout "$WORK/out")"
check_routes "routes_file = $WORK/no-such-file"
[ "$RC" = 78 ] && grep -q "^error: routes: routes_file .*no-such-file" "$WORK/out"
tap_ok $? "$SCEN: a missing routes_file is an error" "$(grep rout "$WORK/out")"
check_routes "routes_transport = bogus"
[ "$RC" = 78 ] && grep -qx 'error: routes_transport "bogus": not a transport:nexthop (e.g. btprelay:$destination)' "$WORK/out"
tap_ok $? "$SCEN: a routes_transport without transport:nexthop is an error" "$(grep rout "$WORK/out")"

tap_done
