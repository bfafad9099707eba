#!/bin/bash
# test-tenants.sh - tenants and lookup levels against the emulator: a subscriber
# chosen by tenant id (X-zid) or by subdomain (the token URL's first label), the
# selection strategies subscriberFirst, alwaysProvider and alwaysSubscriber, the
# Connectivity token fetched for the tenant the destination was found for (its
# Cloud Connector), and instance-level destinations found before subaccount ones.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init tenants
harness_start_emulator
PROVIDER=4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
SUBSCRIBER=a8f5dcc2-39fa-4993-86c3-99bf55044566

# deliver DEST [config lines...] - one transport run as user btprelay, cold cache; sets RC, OUT
deliver() {
	local dest=$1
	shift
	harness_install_transport "$@"
	cache_clear
	emu POST /reset >/dev/null
	OUT=$(printf 'Subject: tenant test\n\nhello\n' | runuser -u "$TRANSPORT_USER" -- \
		"$WORK/bin/btprelay-transport" -c "$WORK/etc/btprelay.conf" -f sender@client.test \
		-d "$dest" -- user@corp.example 2>&1)
	RC=$?
}
# relay_has JQ - the one stored message's envelope satisfies JQ
relay_has() {
	local f
	f=$(ls "$EMU"/messages/*.json 2>/dev/null | head -1)
	[ -n "$f" ] && jq -e "$1" "$f" >/dev/null
}

deliver MAIL_SUB "tenant_id = $SUBSCRIBER"
[ "$RC" = 0 ] && relay_has ".tenant == \"$SUBSCRIBER\" and .location_id == \"SUBLOC\""
tap_ok $? "tenant by id (X-zid): the subscriber's destination, through the subscriber's Cloud Connector" "exit $RC: $OUT"

install -m 600 -o "$TRANSPORT_USER" "$EMU/vcap-subdomain.json" "$WORK/etc/bindings-sub.json"
deliver MAIL_SUB "bindings_file = $WORK/etc/bindings-sub.json" "tenant_subdomain = subscriber1"
[ "$RC" = 0 ] && relay_has ".tenant == \"$SUBSCRIBER\" and .location_id == \"SUBLOC\""
tap_ok $? "tenant by subdomain (token URL's first label): the subscriber's destination" "exit $RC: $OUT"

deliver MAIL_ONPREM "tenant_id = $SUBSCRIBER"
[ "$RC" = 0 ] && relay_has ".tenant == \"$PROVIDER\" and .location_id == \"LOC1\""
tap_ok $? "subscriberFirst: not in the subscriber, found in the provider; the provider's Cloud Connector" "exit $RC: $OUT"

deliver MAIL_ONPREM "tenant_id = $SUBSCRIBER" "destination_selection = alwaysSubscriber"
case "$RC $OUT" in "75 4.3.5"*"not found"*) true ;; *) false ;; esac
tap_ok $? "alwaysSubscriber: a provider-only destination is not found (4.3.5)" "exit $RC: $OUT"

deliver MAIL_SUB "tenant_id = $SUBSCRIBER" "destination_selection = alwaysProvider"
case "$RC $OUT" in "75 4.3.5"*"not found"*) true ;; *) false ;; esac
tap_ok $? "alwaysProvider: a subscriber-only destination is not found (4.3.5)" "exit $RC: $OUT"

deliver MAIL_ONPREM "tenant_id = $SUBSCRIBER" "destination_selection = alwaysProvider"
[ "$RC" = 0 ] && relay_has ".tenant == \"$PROVIDER\""
tap_ok $? "alwaysProvider: the provider's destination and Cloud Connector" "exit $RC: $OUT"

# Instance level before subaccount level: the subaccount copy points nowhere.
harness_install_transport
emu POST /reset >/dev/null
good=$(emu GET /destinations/MAIL_NOLOC | jq -c '.Name = "MAIL_LEVEL"')
bad=$(printf '%s' "$good" | jq -c '."mail.smtp.host" = "down.corp.internal"')
emu PUT "/destinations/MAIL_LEVEL?level=subaccount" "$bad" >/dev/null
emu PUT "/destinations/MAIL_LEVEL?level=instance" "$good" >/dev/null
cache_clear
OUT=$(printf 'Subject: level\n\nhello\n' | runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" \
	-c "$WORK/etc/btprelay.conf" -f sender@client.test -d MAIL_LEVEL -- user@corp.example 2>&1)
RC=$?
[ "$RC" = 0 ]
tap_ok $? "an instance-level destination is found before the subaccount-level one of the same name" "exit $RC: $OUT"
emu DELETE "/destinations/MAIL_LEVEL?level=instance" >/dev/null
cache_clear
OUT=$(printf 'Subject: level\n\nhello\n' | runuser -u "$TRANSPORT_USER" -- "$WORK/bin/btprelay-transport" \
	-c "$WORK/etc/btprelay.conf" -f sender@client.test -d MAIL_LEVEL -- user@corp.example 2>&1)
RC=$?
case "$RC $OUT" in "75 4.4.1"*"REP 04"*) true ;; *) false ;; esac
tap_ok $? "without it, the subaccount-level destination is used (its host is down: REP 04)" "exit $RC: $OUT"
tap_done
