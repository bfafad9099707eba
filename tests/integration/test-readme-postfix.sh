#!/bin/bash
# test-readme-postfix.sh - the README's "Configuring a real Postfix with real BTP
# bindings", played on a system-style Postfix (issue 17): Debian's stock master.cf
# with smtpd chrooted, Debian's main.cf, and the shipped samples
# (config/postfix/*.cf, config/systemd/btprelay-milter.service) as they are, with
# the emulator standing in for BTP. It delivers (byte for byte at the relay), and
# the milter refuses an unknown destination with 550 at RCPT.
#
# Everything runs as a throwaway instance under a work directory, so nothing of
# the host changes. ROOT is that directory's stand-in for "/": each absolute path
# of the samples and of the README (/etc/btprelay, /usr/libexec/btprelay,
# /usr/sbin, /var/spool/postfix, /var/cache/btprelay, /etc/postfix) is moved
# below it by one sed (reloc), and nothing else is changed. The instance's
# queue_directory is ROOT/var/spool/postfix, the chroot of its smtpd. The
# values the README tells the administrator to set are the domain and
# destination in /etc/postfix/transport and bindings_file; the emulator adds its
# test CA (http_ca_file, smtp_tls_ca_file), a log file (no syslog here) and the
# relocated milter_socket and cache_dir. systemd is not running here: the unit's
# own ExecStartPre, User, UMask and ExecStart lines are read from the unit file
# and run as systemd would run them.
set -u
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib/harness.sh"
harness_init readme-postfix
for tool in postmap jq setpriv pgrep; do
	command -v "$tool" >/dev/null 2>&1 || harness_skip "$tool not installed (tests/install-deps.sh)"
done
MASTER_DIST=/usr/share/postfix/master.cf.dist
MAIN_DIST=/usr/share/postfix/main.cf.debian
[ -f "$MASTER_DIST" ] && [ -f "$MAIN_DIST" ] ||
	harness_skip "Debian's Postfix samples ($MASTER_DIST, $MAIN_DIST) not installed"
getent group postfix >/dev/null || harness_skip "no group postfix"
for b in plugin/milter/btprelay-milter plugin/cli/btprelay plugin/lmtp/btprelay-lmtp; do
	[ -x "$top_builddir/$b" ] || { echo "Bail out! $top_builddir/$b not built"; exit 99; }
done
. "$top_srcdir/tests/lib/scenario.sh"
README=$top_srcdir/README.md
CFG=$top_srcdir/config
ROOT=$WORK/root
PF=$WORK/postfix		# the instance's config directory: /etc/postfix
SPOOL=$ROOT/var/spool/postfix
MILTER_PID=
milter_stop() {
	[ -n "$MILTER_PID" ] && { kill "$MILTER_PID" 2>/dev/null; wait "$MILTER_PID" 2>/dev/null; }
	MILTER_PID=
}
trap 'milter_stop; harness_stop' EXIT

# reloc - absolute paths of the samples and of the README, moved below ROOT
reloc() {
	sed -e "s|/etc/btprelay|$ROOT/etc/btprelay|g" \
	    -e "s|/usr/libexec/btprelay|$ROOT/usr/libexec/btprelay|g" \
	    -e "s|/usr/sbin/btprelay|$ROOT/usr/sbin/btprelay|g" \
	    -e "s|/var/spool/postfix|$SPOOL|g" \
	    -e "s|/var/cache/btprelay|$ROOT/var/cache/btprelay|g" \
	    -e "s|/etc/postfix/|$PF/|g" -e "s|/etc/postfix\$|$PF|g"
}
# readme_has TEXT - the README's section has this line (what is played is what it says)
SECTION=$(sed -n '/^## Configuring a real Postfix with real BTP bindings/,/^## /p' "$README")
readme_has() {
	printf '%s\n' "$SECTION" | grep -q -F -- "$1"
	tap_ok $? "README says: $1"
}

harness_start_emulator
scenario "README: install, bindings, btprelay.conf"
# step 1 (make install), as the README's configure line would place the programs
install -d "$ROOT/usr/libexec/btprelay" "$ROOT/usr/sbin" "$ROOT/etc/btprelay" "$PF"
install -m 755 "$TRANSPORT_BIN" "$top_builddir/plugin/lmtp/btprelay-lmtp" "$ROOT/usr/libexec/btprelay/"
install -m 755 "$top_builddir/plugin/milter/btprelay-milter" "$top_builddir/plugin/cli/btprelay" "$ROOT/usr/sbin/"
# step 2: the user (harness_init) and the cache directory
readme_has 'install -d -m 700 -o btprelay /var/cache/btprelay'
echo 'install -d -m 700 -o btprelay /var/cache/btprelay' | reloc | sh
# step 3: the bindings (the emulator's VCAP_SERVICES stands for `cf env`)
install -m 600 -o btprelay "$EMU/vcap.json" "$ROOT/etc/btprelay/bindings.json"
readme_has 'chown btprelay /etc/btprelay/bindings.json && chmod 600 /etc/btprelay/bindings.json'
# step 4: btprelay.conf
install -m 644 "$EMU/certs/ca.pem" "$ROOT/etc/btprelay/emulator-ca.pem"
touch "$WORK/log/btprelay.log"
chown btprelay "$WORK/log/btprelay.log"
BTPRELAY_LOG=$WORK/log/btprelay.log
cat > "$ROOT/etc/btprelay/btprelay.conf" <<EOF
# the README's one value
bindings_file = $ROOT/etc/btprelay/bindings.json
# the emulator's test CA, and a log file (no syslog daemon here)
http_ca_file = $ROOT/etc/btprelay/emulator-ca.pem
smtp_tls_ca_file = $ROOT/etc/btprelay/emulator-ca.pem
log = $BTPRELAY_LOG
log_level = debug
# the defaults, relocated below ROOT
cache_dir = $ROOT/var/cache/btprelay
milter_socket = unix:$SPOOL/btprelay/milter.sock
EOF
chmod 644 "$ROOT/etc/btprelay/btprelay.conf"
"$ROOT/usr/sbin/btprelay" -c "$ROOT/etc/btprelay/btprelay.conf" check > "$WORK/log/check.out" 2>&1
tap_ok $? "$SCEN: btprelay check accepts the configuration" "$(cat "$WORK/log/check.out")"

scenario "README step 5: Postfix with Debian's master.cf and main.cf, smtpd chrooted"
SMTP_PORT=$(free_port)
mkdir -p "$SPOOL" "$WORK/data"
chown postfix "$WORK/data"
# Debian's stock files; the smtp listener moves to a loopback port (chroot y kept)
sed "s|^smtp      inet  n       -       y       -       -       smtpd|127.0.0.1:$SMTP_PORT inet n - y - - smtpd|" \
	"$MASTER_DIST" > "$PF/master.cf"
grep -q "^127.0.0.1:$SMTP_PORT inet n - y - - smtpd" "$PF/master.cf"
tap_ok $? "$SCEN: Debian's master.cf has smtpd with chroot y" "$(grep -n smtpd "$MASTER_DIST" | head -3)"
{
	cat "$MAIN_DIST"
	cat <<-EOF
	# the throwaway instance
	queue_directory = $SPOOL
	data_directory = $WORK/data
	myhostname = mta.btprelay.test
	mydestination =
	inet_interfaces = 127.0.0.1
	inet_protocols = ipv4
	mynetworks = 127.0.0.0/8
	smtpd_relay_restrictions = permit_mynetworks, reject
	maillog_file = $WORK/log/maillog
	maillog_file_prefixes = $WORK/log
	default_transport = discard:
	alias_maps =
	alias_database =
	EOF
} > "$PF/main.cf"
# the chroot gets what Debian's postfix start-up copies into it
install -d "$SPOOL/etc"
for f in /etc/localtime /etc/services /etc/resolv.conf /etc/hosts /etc/nsswitch.conf /etc/host.conf; do
	[ -f "$f" ] && cp -L "$f" "$SPOOL/etc/"
done
readme_has 'cat config/postfix/master.cf >> /etc/postfix/master.cf'
readme_has 'cat config/postfix/main.cf >> /etc/postfix/main.cf'
readme_has "echo 'corp.example btprelay:MAIL_ONPREM' >> /etc/postfix/transport"
readme_has 'postmap /etc/postfix/transport'
readme_has 'transport_maps = hash:/etc/postfix/transport'
# the pipe service reads the relocated btprelay.conf ("-c FILE", as the sample's comment says)
reloc < "$CFG/postfix/master.cf" |
	sed "s|btprelay-transport -q|btprelay-transport -c $ROOT/etc/btprelay/btprelay.conf -q|" >> "$PF/master.cf"
reloc < "$CFG/postfix/main.cf" >> "$PF/main.cf"
echo 'corp.example btprelay:MAIL_ONPREM' >> "$PF/transport"
# a domain routed to a destination that does not exist, for the milter below
echo 'unknown.example btprelay:MAIL_UNKNOWN' >> "$PF/transport"
postmap -c "$PF" "$PF/transport"
postfix -c "$PF" set-permissions >/dev/null 2>&1 || true
postfix -c "$PF" check > "$WORK/log/postfix-check.log" 2>&1
script -qc "postfix -c $PF start" /dev/null > "$WORK/log/postfix-start.log" 2>&1 ||
	{ echo "Bail out! postfix did not start: $(cat "$WORK/log/postfix-start.log") $(tail -5 "$WORK/log/maillog" 2>/dev/null)"; exit 99; }
for _ in $(seq 100); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$SMTP_PORT" 2>/dev/null && break
	sleep 0.1
done
[ "$(postconf -c "$PF" -h transport_maps)" = "hash:$PF/transport" ] &&
	[ "$(postconf -c "$PF" -h btprelay_destination_recipient_limit)" = 1 ]
tap_ok $? "$SCEN: main.cf has the sample's transport_maps and recipient limit"

scenario "README step 5: delivery through the pipe service"
printf 'Subject: %s\nFrom: app@client.test\n\nfirst line\n.leading dot\n\nlast line\n' "$MARK" > "$WORK/msg.txt"
q=$(send_mail app@client.test user@corp.example --data "$WORK/msg.txt")
[ -n "$q" ]
tap_ok $? "$SCEN: accepted by the chrooted smtpd (queue id ${q:-none})" "$(tail -5 "$WORK/log/swaks.log")"
# the smtpd that took the message runs chrooted in the queue directory
pid=$(pgrep -f "smtpd -n 127.0.0.1:$SMTP_PORT" | head -1)
[ -n "$pid" ] && [ "$(readlink /proc/"$pid"/root)" = "$SPOOL" ]
tap_ok $? "$SCEN: smtpd (pid ${pid:-none}) is chrooted in $SPOOL" "root: $(readlink /proc/"${pid:-0}"/root 2>&1)"
expect_status "$q" user@corp.example sent 'dsn=2.0.0'
expect_relay 1 '.mail_from == "app@client.test"' '.rcpt_to == ["user@corp.example"]'
expect_body "$WORK/msg.txt"

scenario "README step 6: btprelay-milter from the shipped unit, socket in the chroot"
UNIT=$CFG/systemd/btprelay-milter.service
readme_has 'install -m 644 config/systemd/btprelay-milter.service /etc/systemd/system/'
readme_has 'cat config/postfix/milter-main.cf >> /etc/postfix/main.cf'
readme_has 'smtpd_milters = unix:btprelay/milter.sock'
unit_value() {	# KEY - the unit's values for KEY, one per line
	sed -n "s/^$1=//p" "$UNIT"
}
[ "$(unit_value User)" = btprelay ] && [ -n "$(unit_value UMask)" ] &&
	! unit_value ExecStart | grep -q -- ' -p '
tap_ok $? "$SCEN: the unit runs as btprelay with a umask, the socket comes from btprelay.conf" \
	"$(grep -E '^(User|UMask|ExecStart)=' "$UNIT")"
unit_value ReadWritePaths | grep -q -x /var/spool/postfix/btprelay
tap_ok $? "$SCEN: ReadWritePaths has the socket's directory (ProtectSystem=strict)" "$(grep ReadWritePaths "$UNIT")"
# ExecStartPre: "+" runs as root, the others as User= with UMask=; then ExecStart
umask_unit=$(unit_value UMask)
as_unit_user() {	# COMMAND - as systemd runs it: User=, Group=, UMask=, one process (exec)
	setpriv --reuid="$(unit_value User)" --regid="$(unit_value Group)" --init-groups \
		sh -c "umask $umask_unit; exec $1"
}
rc=0
while IFS= read -r cmd; do
	cmd=$(printf '%s' "$cmd" | reloc)
	case $cmd in
	+*) sh -c "${cmd#+}" >> "$WORK/log/unit.log" 2>&1 || rc=1 ;;
	*) as_unit_user "$cmd" >> "$WORK/log/unit.log" 2>&1 || rc=1 ;;
	esac
	# the -c of the unit names the relocated btprelay.conf already (reloc)
done < <(unit_value ExecStartPre)
tap_ok $rc "$SCEN: the unit's ExecStartPre lines succeed" "$(cat "$WORK/log/unit.log")"
[ "$(stat -c '%U:%G %a' "$SPOOL/btprelay")" = "btprelay:postfix 2750" ]
tap_ok $? "$SCEN: socket directory btprelay:postfix 2750" "$(stat -c '%U:%G %a' "$SPOOL/btprelay")"
start=$(unit_value ExecStart | reloc)
as_unit_user "$start" >> "$WORK/log/unit.log" 2>&1 &
MILTER_PID=$!
for _ in $(seq 100); do
	[ -S "$SPOOL/btprelay/milter.sock" ] && break
	kill -0 "$MILTER_PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$SPOOL/btprelay/milter.sock" ] &&
	[ "$(stat -c '%U:%G %a' "$SPOOL/btprelay/milter.sock")" = "btprelay:postfix 660" ]
tap_ok $? "$SCEN: the milter listens on btprelay/milter.sock, btprelay:postfix 0660" \
	"$(ls -la "$SPOOL/btprelay" 2>&1; tail -5 "$WORK/log/unit.log")"
! grep -q "milter socket .* writable by every local user" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: no warning about the socket's permissions" "$(grep 'milter socket' "$BTPRELAY_LOG")"
reloc < "$CFG/postfix/milter-main.cf" >> "$PF/main.cf"
[ "$(postconf -c "$PF" -h smtpd_milters)" = "unix:btprelay/milter.sock" ] &&
	[ -z "$(postconf -c "$PF" -h non_smtpd_milters)" ]
tap_ok $? "$SCEN: smtpd_milters = unix:btprelay/milter.sock as shipped; non_smtpd_milters untouched" \
	"$(postconf -c "$PF" smtpd_milters non_smtpd_milters)"
postfix -c "$PF" reload >/dev/null 2>&1
sleep 1

scenario "README step 6: the chrooted smtpd asks the milter"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from app@client.test --to user@unknown.example \
	--helo client.test --header "Subject: $MARK" 2>&1 | tee -a "$WORK/log/swaks.log")
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 destination <MAIL_UNKNOWN> does not exist'
tap_ok $? "$SCEN: unknown destination: 550 5.1.2 at RCPT" "$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
! grep -q "warning: milter unix:btprelay/milter.sock" "$WORK/log/maillog"
tap_ok $? "$SCEN: Postfix reached the milter (no connect warning)" "$(grep 'warning: milter' "$WORK/log/maillog" | tail -3)"
printf 'Subject: %s\nFrom: app@client.test\n\nthrough the milter\n' "$MARK" > "$WORK/msg2.txt"
q=$(send_mail app@client.test user@corp.example --data "$WORK/msg2.txt")
[ -n "$q" ]
tap_ok $? "$SCEN: a known destination is accepted (queue id ${q:-none})" "$(tail -5 "$WORK/log/swaks.log")"
expect_status "$q" user@corp.example sent 'dsn=2.0.0'
expect_relay 1 '.rcpt_to == ["user@corp.example"]'
expect_body "$WORK/msg2.txt"
grep -q "to=<user@corp.example>, destination=MAIL_ONPREM, result=found" "$BTPRELAY_LOG"
tap_ok $? "$SCEN: the milter decided the recipient" "$(grep 'milter' "$BTPRELAY_LOG" | tail -3)"

scenario "README step 6 without systemd: started as root with -u btprelay"
milter_stop
readme_has '(umask 0117; btprelay-milter -u btprelay)'
# the README's command; -c names the relocated btprelay.conf, -P lets the test stop it
(umask 0117; exec "$ROOT/usr/sbin/btprelay-milter" -c "$ROOT/etc/btprelay/btprelay.conf" -u btprelay \
	-P "$WORK/milter.pid") >> "$WORK/log/unit.log" 2>&1
rc=$?
MILTER_PID=$(cat "$WORK/milter.pid" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$MILTER_PID" ] &&
	[ "$(stat -c '%U:%G %a' "$SPOOL/btprelay/milter.sock" 2>/dev/null)" = "btprelay:postfix 660" ] &&
	[ "$(stat -c %U /proc/"$MILTER_PID")" = btprelay ]
tap_ok $? "$SCEN: detached, runs as btprelay, socket btprelay:postfix 0660" \
	"exit $rc; $(ls -la "$SPOOL/btprelay" 2>&1; tail -3 "$WORK/log/unit.log")"
out=$(swaks --server "127.0.0.1:$SMTP_PORT" --from app@client.test --to user@unknown.example \
	--helo client.test --header "Subject: $MARK" 2>&1 | tee -a "$WORK/log/swaks.log")
printf '%s\n' "$out" | grep -q '<\*\* 550 5\.1\.2 destination <MAIL_UNKNOWN> does not exist'
tap_ok $? "$SCEN: unknown destination: 550 5.1.2 at RCPT" "$(printf '%s\n' "$out" | grep -A1 'RCPT TO')"
kill "$MILTER_PID" 2>/dev/null
for _ in $(seq 100); do kill -0 "$MILTER_PID" 2>/dev/null || break; sleep 0.1; done
MILTER_PID=
tap_done
