#!/bin/bash
# entrypoint - PID 1 of the btprelay relay image.
#
# Writes Postfix's and btprelay's configuration from the environment into
# /run/btprelay (the root filesystem is read-only), checks it, then runs
# btprelay-milter and "postfix start-fg" as children, forwards SIGTERM and
# SIGINT to them ("postfix stop": master(8) ends its children and leaves the
# queue as it is), and copies btprelay's log lines into the container's
# stdout, where postlogd(8) writes Postfix's own (maillog_file = /dev/stdout)
# through "btprelay metrics --count-log", which counts each delivery's status
# line on the way; "btprelay metrics --listen" serves the counters over HTTP;
# with BTPRELAY_FETCH_SOURCES, "btprelay-fetch --daemon" brings mail from
# on-premise mailboxes into this Postfix. The milter, the two metrics
# processes and btprelay-fetch are supervised: started again, with a
# growing pause, when they end.
#
# A missing or bad setting ends the start with one line on stderr,
#   btprelay: fatal: VARIABLE: what is wrong
# and exit status 78 (EX_CONFIG, sysexits.h). Nothing is retried here: a
# configuration does not get better by restarting.
#
# Variables (config/container/README.md has the full list):
#   BTPRELAY_ROUTES       "DOMAIN=DESTINATION,..."; ".DOMAIN" = its subdomains. Unset:
#                         the routes kept in the cockpit (the destinations' property
#                         btprelay.domains), built with "btprelay routes --postmap"
#                         before Postfix starts and refreshed every
#                         BTPRELAY_ROUTES_INTERVAL seconds (default 60)
#   BTPRELAY_ROUTE_TYPE   lmtp (default: btprelay-lmtp, a resident front end) or pipe
#   BTPRELAY_MYNETWORKS   clients allowed to submit (default: the subnets of the
#                         container's own interfaces, i.e. the pod network)
#   BTPRELAY_MILTER       yes (default) or no: 550/451 at RCPT time
#   SERVICE_BINDING_ROOT  Kubernetes service binding directories; VCAP_SERVICES wins
#   BTPRELAY_SMTP_PORT, BTPRELAY_INET_INTERFACES, BTPRELAY_HOSTNAME,
#   BTPRELAY_PROXY_HOST, BTPRELAY_PROXY_PORT (or, without a connectivity binding,
#   onpremise_proxy_host, onpremise_socks5_proxy_port: Kyma's connectivity-proxy-info),
#   BTPRELAY_CA_FILE,
#   BTPRELAY_TLS_CERT_FILE, BTPRELAY_TLS_KEY_FILE, BTPRELAY_LOG_LEVEL,
#   BTPRELAY_SUBMIT_USERS_FILE  "user:password" lines: SMTP AUTH for submission
#   BTPRELAY_METRICS_LISTEN     ADDR:PORT of the metrics endpoint (default 0.0.0.0:9154), or no
#   BTPRELAY_FETCH_SOURCES      MAIL destinations whose mailboxes btprelay-fetch(8) empties
#                         into this Postfix, with BTPRELAY_FETCH_RECIPIENT (required),
#                         BTPRELAY_FETCH_SENDER, BTPRELAY_FETCH_DONE (delete, move, keep),
#                         BTPRELAY_FETCH_MOVE_FOLDER, BTPRELAY_FETCH_INTERVAL (seconds, 60),
#                         BTPRELAY_FETCH_HOST (only the container of this host name fetches)
#   BTPRELAY_CONF, BTPRELAY_POSTCONF
set -u
umask 022

RUN=/run/btprelay
PF=$RUN/postfix
CONF=$RUN/btprelay.conf
LOGPIPE=$RUN/log.pipe
EX_CONFIG=78

fatal() {	# one line, then stop: the first thing an operator reads
	echo "btprelay: fatal: $*" >&2
	exit $EX_CONFIG
}
info() {
	echo "btprelay: $*"
}

# --- what the environment says ---------------------------------------------

ROUTE_TYPE=${BTPRELAY_ROUTE_TYPE:-lmtp}
case $ROUTE_TYPE in
lmtp|pipe) ;;
*) fatal "BTPRELAY_ROUTE_TYPE: \"$ROUTE_TYPE\" is neither lmtp nor pipe" ;;
esac

MILTER=${BTPRELAY_MILTER:-yes}
case $MILTER in
yes|no) ;;
*) fatal "BTPRELAY_MILTER: \"$MILTER\" is neither yes nor no" ;;
esac

SMTP_PORT=${BTPRELAY_SMTP_PORT:-25}
[[ $SMTP_PORT =~ ^[0-9]{1,5}$ ]] && [ "$SMTP_PORT" -ge 1 ] && [ "$SMTP_PORT" -le 65535 ] ||
	fatal "BTPRELAY_SMTP_PORT: \"$SMTP_PORT\" is not a port number"

INET_INTERFACES=${BTPRELAY_INET_INTERFACES:-all}
re='^[][0-9A-Za-z.:, -]+$'
[[ $INET_INTERFACES =~ $re ]] ||
	fatal "BTPRELAY_INET_INTERFACES: \"$INET_INTERFACES\" is not a list of addresses"

LOG_LEVEL=${BTPRELAY_LOG_LEVEL:-info}
case $LOG_LEVEL in
error|warning|info|debug) ;;
*) fatal "BTPRELAY_LOG_LEVEL: \"$LOG_LEVEL\" is none of error, warning, info, debug" ;;
esac

METRICS_LISTEN=${BTPRELAY_METRICS_LISTEN:-0.0.0.0:9154}
[ "$METRICS_LISTEN" = no ] || [[ $METRICS_LISTEN =~ ^(\[[0-9A-Fa-f:.]+\]|[0-9.]*):[0-9]{1,5}$ ]] ||
	fatal "BTPRELAY_METRICS_LISTEN: \"$METRICS_LISTEN\" is neither ADDR:PORT nor no"

HOST=${BTPRELAY_HOSTNAME:-$(hostname)}
[[ $HOST == *.* ]] || HOST=$HOST.localdomain
[[ $HOST =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] ||
	fatal "BTPRELAY_HOSTNAME: \"$HOST\" is not a host name"

# Routes: DOMAIN=DESTINATION separated by commas or white space. A domain is
# matched as transport(5) does: "corp.example" that domain only,
# ".corp.example" its subdomains.
# Unset, the routes come from the cockpit (see "the cockpit's routes" below).
ROUTE_DOMAINS=()
ROUTE_DESTS=()
ROUTES_SPEC=${BTPRELAY_ROUTES:-}
COCKPIT=no
if [ -z "${BTPRELAY_ROUTES+set}" ]; then
	COCKPIT=yes
	[ -n "${VCAP_SERVICES:-}" ] || [ -n "${SERVICE_BINDING_ROOT:-}" ] ||
		fatal "BTPRELAY_ROUTES is not set, and there is no destination binding (SERVICE_BINDING_ROOT, VCAP_SERVICES) to read the cockpit's routes from: name the domains and their MAIL destinations, e.g. BTPRELAY_ROUTES=\"corp.example=MAIL_ONPREM,.corp.example=MAIL_ONPREM\""
fi
ROUTES_INTERVAL=${BTPRELAY_ROUTES_INTERVAL:-60}
[[ $ROUTES_INTERVAL =~ ^[0-9]{1,5}$ ]] && [ "$ROUTES_INTERVAL" -ge 5 ] ||
	fatal "BTPRELAY_ROUTES_INTERVAL: \"$ROUTES_INTERVAL\" is not a number of seconds (5 or more)"
LABEL='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
for route in ${ROUTES_SPEC//,/ }; do
	domain=${route%%=*}
	dest=${route#*=}
	[[ $route == *=* && $domain =~ ^\.?$LABEL(\.$LABEL)*$ && ${#domain} -le 253 ]] ||
		fatal "BTPRELAY_ROUTES: \"$route\": expected DOMAIN=DESTINATION (DOMAIN a domain name, optionally with a leading dot)"
	[[ $dest =~ ^[A-Za-z0-9_.-]{1,200}$ ]] ||
		fatal "BTPRELAY_ROUTES: \"$route\": the destination name must be 1 to 200 of A-Z a-z 0-9 _ . -"
	for i in "${!ROUTE_DOMAINS[@]}"; do
		[ "${ROUTE_DOMAINS[$i],,}" != "${domain,,}" ] ||
			fatal "BTPRELAY_ROUTES: \"$domain\" is routed twice"
	done
	ROUTE_DOMAINS+=("$domain")
	ROUTE_DESTS+=("$dest")
done
[ "$COCKPIT" = yes ] || [ "${#ROUTE_DOMAINS[@]}" -gt 0 ] || fatal "BTPRELAY_ROUTES: no route in \"$ROUTES_SPEC\""

# Who may submit. Never an open relay: 0.0.0.0/0 and ::/0 are refused.
MYNETWORKS=${BTPRELAY_MYNETWORKS:-}
for net in ${MYNETWORKS//,/ }; do
	case $net in
	0.0.0.0/0|'[::]/0'|'::/0'|'[::/0]'|0/0)
		fatal "BTPRELAY_MYNETWORKS: \"$net\" would make an open relay; name the client networks" ;;
	esac
	[[ $net =~ ^\[?[0-9A-Fa-f.:]+\]?(/[0-9]{1,3})?$ ]] ||
		fatal "BTPRELAY_MYNETWORKS: \"$net\" is not an address or network (ADDRESS/BITS)"
done

# Inbound mail: btprelay-fetch(8) as a daemon, handing the mailboxes of
# BTPRELAY_FETCH_SOURCES to this container's smtpd on 127.0.0.1 (which is
# therefore in mynetworks), its state on the queue volume. With
# BTPRELAY_FETCH_HOST only the container of that host name fetches: one
# fetcher per mailbox among a StatefulSet's replicas.
FETCH=no
FETCH_SOURCES=${BTPRELAY_FETCH_SOURCES:-}
POD=$(hostname)
if [ -n "$FETCH_SOURCES" ] && [ -n "${BTPRELAY_FETCH_HOST:-}" ] &&
	[ "$BTPRELAY_FETCH_HOST" != "$POD" ] && [ "$BTPRELAY_FETCH_HOST" != "${POD%%.*}" ]; then
	info "BTPRELAY_FETCH_SOURCES: not fetched here: BTPRELAY_FETCH_HOST is $BTPRELAY_FETCH_HOST, this is $POD"
	FETCH_SOURCES=
fi
if [ -n "$FETCH_SOURCES" ]; then
	FETCH=yes
	for src in ${FETCH_SOURCES//,/ }; do
		[[ $src =~ ^[A-Za-z0-9_.-]{1,200}$ ]] ||
			fatal "BTPRELAY_FETCH_SOURCES: \"$src\": a destination name is 1 to 200 of A-Z a-z 0-9 _ . -"
	done
	ADDRESS="^[^@[:space:][:cntrl:]<>\"]{1,64}@$LABEL(\.$LABEL)*\$"
	FETCH_RECIPIENT=${BTPRELAY_FETCH_RECIPIENT:-}
	[[ $FETCH_RECIPIENT =~ $ADDRESS ]] ||
		fatal "BTPRELAY_FETCH_RECIPIENT: \"$FETCH_RECIPIENT\" is not an address (local@domain): the envelope recipient of every fetched message, routed by this relay"
	FETCH_SENDER=${BTPRELAY_FETCH_SENDER:-}
	[ -z "$FETCH_SENDER" ] || [[ $FETCH_SENDER =~ $ADDRESS ]] ||
		fatal "BTPRELAY_FETCH_SENDER: \"$FETCH_SENDER\" is not an address (local@domain)"
	FETCH_DONE=${BTPRELAY_FETCH_DONE:-delete}
	case $FETCH_DONE in
	delete|move|keep) ;;
	*) fatal "BTPRELAY_FETCH_DONE: \"$FETCH_DONE\" is none of delete, move, keep" ;;
	esac
	FETCH_MOVE_FOLDER=${BTPRELAY_FETCH_MOVE_FOLDER:-}
	[ "$FETCH_DONE" != move ] || [[ $FETCH_MOVE_FOLDER =~ ^[^[:cntrl:]]{1,200}$ ]] ||
		fatal "BTPRELAY_FETCH_MOVE_FOLDER: BTPRELAY_FETCH_DONE=move needs the folder (1 to 200 characters)"
	FETCH_INTERVAL=${BTPRELAY_FETCH_INTERVAL:-60}
	[[ $FETCH_INTERVAL =~ ^[0-9]{1,6}$ ]] && [ "$FETCH_INTERVAL" -ge 5 ] ||
		fatal "BTPRELAY_FETCH_INTERVAL: \"$FETCH_INTERVAL\" is not a number of seconds (5 or more)"
	case " ${INET_INTERFACES//,/ } " in
	*" all "*|*" loopback-only "*|*" 127.0.0.1 "*|*" localhost "*) ;;
	*) fatal "BTPRELAY_INET_INTERFACES: \"$INET_INTERFACES\" leaves out 127.0.0.1, where btprelay-fetch hands over the mail of BTPRELAY_FETCH_SOURCES" ;;
	esac
fi

# --- the writable tree ------------------------------------------------------

[ -d /run ] && [ -w /run ] || fatal "/run is not writable: mount a tmpfs (Kubernetes: an emptyDir) on /run"
[ -d /var/spool/postfix ] && [ -w /var/spool/postfix ] ||
	fatal "/var/spool/postfix is not writable: mount the queue volume there"
rm -rf "$RUN"
install -d -m 755 "$RUN"
cp -a /etc/postfix.image "$PF"	# /etc/postfix links here
install -d -m 700 -o postfix "$RUN/postfix-data"
install -d -m 700 -o btprelay -g btprelay "$RUN/cache"
install -d -m 750 -o root -g btprelay "$RUN/bindings"
install -d -m 750 -o btprelay -g btprelay "$RUN/milter"
# The cockpit's route table lives on the queue volume: after a restart during
# a Destination Service outage, the last good table is still there.
ROUTES_DIR=/var/spool/postfix/btprelay-routes
ROUTES_MAP=hash:$ROUTES_DIR/routes
[ "$COCKPIT" = no ] || install -d -m 755 -o btprelay -g btprelay "$ROUTES_DIR"
# btprelay's counters (metrics_dir) too: they survive restarts, as
# Postfix's queue does. btprelay-fetch's state: what was handed over stays
# handed over, whatever container fetches next.
METRICS_DIR=/var/spool/postfix/btprelay-metrics
FETCH_STATE_DIR=/var/spool/postfix/btprelay-fetch
install -d -m 700 -o btprelay -g btprelay "$METRICS_DIR"
[ "$FETCH" = no ] || install -d -m 700 -o btprelay -g btprelay "$FETCH_STATE_DIR"
mkfifo -m 600 "$LOGPIPE"
chown btprelay:btprelay "$LOGPIPE"
mkfifo -m 600 "$RUN/postfix-log.pipe"

# --- bindings ---------------------------------------------------------------
# Copied into a private tmpfs directory (root:btprelay, 0440), so the Secret
# volume needs no group of ours (defaultMode 0400 is enough for root), and
# both the transport's user and root (an operator's "btprelay check") can
# read them. A rotated Secret takes effect at the next start.

BINDINGS_FILE=$RUN/bindings.json
BINDING_ROOT=
if [ -n "${VCAP_SERVICES:-}" ]; then
	(umask 077 && printf '%s' "$VCAP_SERVICES" > "$BINDINGS_FILE") ||
		fatal "VCAP_SERVICES: cannot write $BINDINGS_FILE"
	chown root:btprelay "$BINDINGS_FILE"
	chmod 440 "$BINDINGS_FILE"
elif [ -n "${SERVICE_BINDING_ROOT:-}" ]; then
	[ -d "$SERVICE_BINDING_ROOT" ] ||
		fatal "SERVICE_BINDING_ROOT: $SERVICE_BINDING_ROOT is not a directory (mount the ServiceBinding's Secret under it)"
	[ -r "$SERVICE_BINDING_ROOT" ] && [ -x "$SERVICE_BINDING_ROOT" ] ||
		fatal "SERVICE_BINDING_ROOT: $SERVICE_BINDING_ROOT cannot be read"
	for dir in "$SERVICE_BINDING_ROOT"/*/; do
		[ -d "$dir" ] || continue
		name=$(basename "$dir")
		# -L: a Secret volume's keys are links into its ..data directory
		cp -RL "$dir" "$RUN/bindings/$name" 2>/dev/null ||
			fatal "SERVICE_BINDING_ROOT: $dir cannot be read"
	done
	chown -R root:btprelay "$RUN/bindings"
	find "$RUN/bindings" -type d -exec chmod 750 {} + -o -type f -exec chmod 440 {} +
	BINDING_ROOT=$RUN/bindings
fi
# btprelay's processes read the copies (the variables would win over btprelay.conf)
VCAP=${VCAP_SERVICES:-}
unset VCAP_SERVICES
if [ -n "$BINDING_ROOT" ]; then export SERVICE_BINDING_ROOT=$BINDING_ROOT; else unset SERVICE_BINDING_ROOT; fi

# --- btprelay.conf ----------------------------------------------------------

# The proxy: BTPRELAY_PROXY_HOST/PORT, else, when no connectivity binding is
# there, Kyma's connectivity-proxy-info values (onpremise_proxy_host,
# onpremise_socks5_proxy_port): btprelay then talks to the proxy in trusted
# mode (proxy_authentication = auto). They go into btprelay.conf because
# pipe(8) and spawn(8) give their children no environment.
CONNECTIVITY=no
grep -qsx connectivity "$RUN"/bindings/*/type "$RUN"/bindings/*/label && CONNECTIVITY=yes
[[ $VCAP == *'"connectivity"'* ]] && CONNECTIVITY=yes
PROXY_HOST=${BTPRELAY_PROXY_HOST:-}
PROXY_PORT=${BTPRELAY_PROXY_PORT:-}
if [ "$CONNECTIVITY" = no ]; then
	PROXY_HOST=${PROXY_HOST:-${onpremise_proxy_host:-}}
	PROXY_PORT=${PROXY_PORT:-${onpremise_socks5_proxy_port:-}}
fi
[[ $PROXY_HOST =~ ^[A-Za-z0-9.:-]*$ ]] ||
	fatal "BTPRELAY_PROXY_HOST/onpremise_proxy_host: \"$PROXY_HOST\" is not a host name"
[[ $PROXY_PORT =~ ^[0-9]{0,5}$ ]] ||
	fatal "BTPRELAY_PROXY_PORT/onpremise_socks5_proxy_port: \"$PROXY_PORT\" is not a port number"

{
	echo "# written by the entrypoint from the environment at $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
	echo "bindings_file = $BINDINGS_FILE"
	echo "service_binding_root = $BINDING_ROOT"
	echo "cache_dir = $RUN/cache"
	echo "metrics_dir = $METRICS_DIR"
	echo "log = $LOGPIPE"
	echo "log_level = $LOG_LEVEL"
	echo "milter_socket = unix:$RUN/milter/milter.sock"
	echo "milter_user = btprelay"
	[ -z "$PROXY_HOST" ] || echo "proxy_host = $PROXY_HOST"
	[ -z "$PROXY_PORT" ] || echo "proxy_port = $PROXY_PORT"
	if [ "$COCKPIT" = yes ] && [ "$ROUTE_TYPE" = lmtp ]; then
		echo "routes_transport = lmtp:unix:private/btprelay-lmtp-\$destination"
	fi
	if [ "$FETCH" = yes ]; then
		echo "fetch_sources = ${FETCH_SOURCES//,/ }"
		echo "fetch_recipient = $FETCH_RECIPIENT"
		[ -z "$FETCH_SENDER" ] || echo "fetch_sender = $FETCH_SENDER"
		echo "fetch_done = $FETCH_DONE"
		[ "$FETCH_DONE" != move ] || echo "fetch_move_folder = $FETCH_MOVE_FOLDER"
		echo "fetch_interval = $FETCH_INTERVAL"
		echo "fetch_state_dir = $FETCH_STATE_DIR"
		echo "fetch_smtp_server = 127.0.0.1:$SMTP_PORT"
	fi
	if [ -n "${BTPRELAY_CA_FILE:-}" ]; then
		echo "http_ca_file = $BTPRELAY_CA_FILE"
		echo "smtp_tls_ca_file = $BTPRELAY_CA_FILE"
	fi
	[ -z "${BTPRELAY_CONF:-}" ] || printf '%s\n' "$BTPRELAY_CONF"
} > "$CONF"
chmod 644 "$CONF"
if [ -n "${BTPRELAY_CA_FILE:-}" ] && [ ! -r "$BTPRELAY_CA_FILE" ]; then
	fatal "BTPRELAY_CA_FILE: $BTPRELAY_CA_FILE cannot be read"
fi

# The log pipe needs a reader before anyone writes to it: the copier below
# holds it open read-write, so opening it never blocks and it never ends.
# btprelay's lines ("Dec  2 10:00:00 btprelay-lmtp[42]: ...") get the day
# and host as postlogd writes Postfix's ("Dec 02 10:00:00 relay-0 postfix/...").
exec 3<>"$LOGPIPE" || fatal "$LOGPIPE cannot be opened (the container needs CAP_DAC_OVERRIDE)"
sed -u -e "s/^\([A-Z][a-z][a-z]\)  \([0-9]\) /\1 0\2 /" \
	-e "s/^\([A-Z][a-z][a-z] [0-9][0-9] [0-9:]\{8\}\) /\1 ${HOST%%.*} /" <&3 &
LOG_PID=$!

# btprelay check: the configuration file, the bindings and their
# permissions, the CA files, as the transport's user sees them (no network).
# With VCAP_SERVICES given, the check reads the variable, so that its
# messages name it.
if ! out=$(${VCAP:+env VCAP_SERVICES="$VCAP"} setpriv --reuid=btprelay --regid=btprelay --init-groups \
	/usr/sbin/btprelay -c "$CONF" check 2>&1); then
	line=$(printf '%s\n' "$out" | sed -n 's/^error: //p' | head -1)
	fatal "btprelay check: ${line:-$(printf '%s\n' "$out" | tail -1)}"
fi

# --- SMTP AUTH for submission ------------------------------------------------
# BTPRELAY_SUBMIT_USERS_FILE: "user:password" lines (a Kubernetes Secret's
# key). smtpd's Cyrus SASL checks them in a sasldb2 file made here, under
# /run: auxprop/sasldb needs no daemon, and db5.3_load writes the file from
# stdin, so no password is in an argument list. Passwords never leave this
# function: errors name the line, not its text.

SASL=$RUN/sasl
SASL_REALM=btprelay

# hexbytes - stdin as \hh escapes, db_load -T's form of any byte
hexbytes() {
	od -An -v -tx1 | tr -d ' \n' | sed 's/../\\&/g'
}

# build_sasldb FILE - $SASL/sasldb2 from FILE, or fatal naming the line
build_sasldb() {
	local file=$1 line user pw n=0 users=" "
	[ -r "$file" ] && [ -f "$file" ] || fatal "BTPRELAY_SUBMIT_USERS_FILE: $file cannot be read"
	install -d -m 750 -o root -g postfix "$SASL"
	{
		while IFS= read -r line || [ -n "$line" ]; do
			n=$((n + 1))
			line=${line%$'\r'}
			case $line in ''|'#'*) continue ;; esac
			user=${line%%:*}
			pw=${line#*:}
			[[ $line == *:* && $user =~ ^[A-Za-z0-9._-]{1,64}$ ]] ||
				fatal "BTPRELAY_SUBMIT_USERS_FILE: $file line $n: expected user:password (user: 1 to 64 of A-Z a-z 0-9 . _ -)"
			[ -n "$pw" ] && [ "${#pw}" -le 256 ] ||
				fatal "BTPRELAY_SUBMIT_USERS_FILE: $file line $n: the password of $user is empty or longer than 256 characters"
			[[ $users != *" $user "* ]] ||
				fatal "BTPRELAY_SUBMIT_USERS_FILE: $file line $n: $user is named twice"
			users="$users$user "
			# key: user NUL realm NUL "userPassword" (Cyrus SASL's sasldb), value: the password
			printf '%s\\00%s\\00userPassword\n' "$(printf '%s' "$user" | hexbytes)" \
				"$(printf '%s' "$SASL_REALM" | hexbytes)"
			printf '%s\n' "$(printf '%s' "$pw" | hexbytes)"
		done < "$file"
		pw=
		[ "$users" != " " ] || fatal "BTPRELAY_SUBMIT_USERS_FILE: $file names no user"
	} > "$SASL/sasldb2.txt" || exit $EX_CONFIG
	rm -f "$SASL/sasldb2"
	db5.3_load -T -t hash "$SASL/sasldb2" < "$SASL/sasldb2.txt" ||
		{ rm -f "$SASL/sasldb2.txt"; fatal "BTPRELAY_SUBMIT_USERS_FILE: db5.3_load cannot write $SASL/sasldb2"; }
	rm -f "$SASL/sasldb2.txt"
	chown root:postfix "$SASL/sasldb2"
	chmod 640 "$SASL/sasldb2"
	# (Debian's Postfix reads smtpd.conf from /etc/postfix/sasl whatever
	# cyrus_sasl_config_path says; /etc/postfix is $PF)
	install -d -m 755 "$PF/sasl"
	cat > "$PF/sasl/smtpd.conf" <<-CONF
	pwcheck_method: auxprop
	auxprop_plugin: sasldb
	sasldb_path: $SASL/sasldb2
	mech_list: PLAIN LOGIN
	CONF
	chmod 644 "$PF/sasl/smtpd.conf"
}

SUBMIT_AUTH=no
if [ -n "${BTPRELAY_SUBMIT_USERS_FILE:-}" ]; then
	(umask 077 && build_sasldb "$BTPRELAY_SUBMIT_USERS_FILE") || exit $EX_CONFIG
	SUBMIT_AUTH=yes
	[ -n "${BTPRELAY_TLS_CERT_FILE:-}" ] ||
		info "warning: BTPRELAY_SUBMIT_USERS_FILE without BTPRELAY_TLS_CERT_FILE: AUTH is offered without TLS, and passwords cross the network in clear text"
fi

# --- Postfix ----------------------------------------------------------------

TRANSPORT=$PF/transport.regexp
ACCESS=$PF/recipient-access.regexp
: > "$TRANSPORT"
: > "$ACCESS"
SERVICES=""
for i in "${!ROUTE_DOMAINS[@]}"; do
	domain=${ROUTE_DOMAINS[$i]}
	dest=${ROUTE_DESTS[$i]}
	escaped=${domain//./\\.}
	if [[ $domain == .* ]]; then
		re="@.+$escaped"	# subdomains only, as transport(5) reads ".domain"
	else
		re="@$escaped"
	fi
	if [ "$ROUTE_TYPE" = lmtp ]; then
		nexthop="lmtp:unix:private/btprelay-lmtp-$dest"
		case " $SERVICES " in
		*" $dest "*) ;;
		*) SERVICES="$SERVICES $dest" ;;
		esac
	else
		nexthop="btprelay:$dest"
	fi
	printf '/%s$/\t%s\n' "$re" "$nexthop" >> "$TRANSPORT"
	printf '/%s$/\tOK\n' "$re" >> "$ACCESS"
done

{
	cat <<-CF
	# written by the entrypoint from the environment; see postconf(5)
	compatibility_level = 3.6
	myhostname = $HOST
	mydestination =
	local_recipient_maps =
	local_transport = error:5.1.1 this relay delivers no local mail
	alias_maps =
	alias_database =
	inet_interfaces = $INET_INTERFACES
	data_directory = $RUN/postfix-data
	# One log stream: postlogd(8) writes every Postfix line to the stdout
	# of "postfix start-fg"; btprelay's lines join it through the entrypoint.
	maillog_file = /dev/stdout
	smtpd_banner = \$myhostname ESMTP
	biff = no
	readme_directory = no
	smtputf8_enable = yes
	# Only the routed domains are accepted, and only from mynetworks (or
	# authenticated clients: smtpd_relay_restrictions below).
	lmtp_send_xforward_command = yes
	btprelay_destination_recipient_limit = 1
	btprelay_time_limit = 1000s
	CF
	if [ "$COCKPIT" = yes ]; then
		# one table, written by "btprelay routes --postmap", routes and
		# says which domains are relayed: any other is refused at RCPT
		echo "transport_maps = $ROUTES_MAP"
		echo "relay_domains = $ROUTES_MAP"
		# relay_domains would let any client send to them: only mynetworks
		# (and authenticated clients) may
		echo "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject"
		echo "smtpd_recipient_restrictions = reject_unauth_destination, permit"
		# queued mail whose route went away waits; it does not bounce
		echo "default_transport = retry:4.3.5 no btprelay route for this domain"
	else
		echo "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
		echo "transport_maps = regexp:$TRANSPORT"
		echo "default_transport = error:5.1.2 domain not routed by this relay"
		echo "smtpd_recipient_restrictions = check_recipient_access regexp:$ACCESS, reject"
		echo "relay_domains ="
	fi
	if [ -n "$MYNETWORKS" ]; then
		# (btprelay-fetch submits from 127.0.0.1)
		echo "mynetworks = ${MYNETWORKS//,/ }${FETCH_SOURCES:+ 127.0.0.1/32}"
	else
		echo "# the subnets of this container's interfaces: the pod network"
		echo "mynetworks_style = subnet"
	fi
	if [ "$MILTER" = yes ]; then
		echo "smtpd_milters = unix:$RUN/milter/milter.sock"
		echo "non_smtpd_milters = \$smtpd_milters"
		echo "milter_default_action = tempfail"
	fi
	if [ -n "${BTPRELAY_TLS_CERT_FILE:-}" ]; then
		[ -r "$BTPRELAY_TLS_CERT_FILE" ] || fatal "BTPRELAY_TLS_CERT_FILE: $BTPRELAY_TLS_CERT_FILE cannot be read"
		key=${BTPRELAY_TLS_KEY_FILE:-$BTPRELAY_TLS_CERT_FILE}
		[ -r "$key" ] || fatal "BTPRELAY_TLS_KEY_FILE: $key cannot be read"
		echo "smtpd_tls_chain_files = $key, $BTPRELAY_TLS_CERT_FILE"
		echo "smtpd_tls_security_level = may"
	elif [ -n "${BTPRELAY_TLS_KEY_FILE:-}" ]; then
		fatal "BTPRELAY_TLS_KEY_FILE: set, but BTPRELAY_TLS_CERT_FILE is not"
	fi
	if [ "$SUBMIT_AUTH" = yes ]; then
		# SMTP AUTH (RFC 4954) with the users of BTPRELAY_SUBMIT_USERS_FILE;
		# authenticated clients may relay (permit_sasl_authenticated)
		echo "smtpd_sasl_auth_enable = yes"
		echo "smtpd_sasl_type = cyrus"
		echo "smtpd_sasl_path = smtpd"
		echo "cyrus_sasl_config_path = $PF/sasl"
		echo "smtpd_sasl_local_domain = $SASL_REALM"
		echo "smtpd_sasl_security_options = noanonymous"
		# with a certificate, AUTH only after STARTTLS
		[ -z "${BTPRELAY_TLS_CERT_FILE:-}" ] || echo "smtpd_tls_auth_only = yes"
	fi
	[ -z "${BTPRELAY_POSTCONF:-}" ] || printf '%s\n' "$BTPRELAY_POSTCONF"
} > "$PF/main.cf"

# write_master SERVICES - master.cf, with one btprelay-lmtp service per destination
write_master() {
	local dest
	cat <<-'MCF'
	# written by the entrypoint; see master(5). Nothing runs chrooted: the
	# image has no chroot tree, and the root filesystem is read-only anyway.
	MCF
	echo "$SMTP_PORT inet n - n - - smtpd"
	cat <<-'MCF'
	pickup    unix  n       -       n       60      1       pickup
	cleanup   unix  n       -       n       -       0       cleanup
	qmgr      unix  n       -       n       300     1       qmgr
	tlsmgr    unix  -       -       n       1000?   1       tlsmgr
	rewrite   unix  -       -       n       -       -       trivial-rewrite
	bounce    unix  -       -       n       -       0       bounce
	defer     unix  -       -       n       -       0       bounce
	trace     unix  -       -       n       -       0       bounce
	verify    unix  -       -       n       -       1       verify
	flush     unix  n       -       n       1000?   0       flush
	proxymap  unix  -       -       n       -       -       proxymap
	showq     unix  n       -       n       -       -       showq
	error     unix  -       -       n       -       -       error
	retry     unix  -       -       n       -       -       error
	discard   unix  -       -       n       -       -       discard
	anvil     unix  -       -       n       -       1       anvil
	scache    unix  -       -       n       -       1       scache
	postlog   unix-dgram n  -       n       -       1       postlogd
	smtp      unix  -       -       n       -       -       smtp
	lmtp      unix  -       -       n       -       -       lmtp
	btprelay  unix  -       n       n       -       -       pipe
	  flags=q user=btprelay null_sender=
	  argv=/usr/libexec/btprelay/btprelay-transport -q ${queue_id} -s ${size} -f ${sender} -d ${nexthop} -- ${recipient}
	MCF
	for dest in $1; do
		echo "btprelay-lmtp-$dest unix - n n - - spawn"
		echo "  user=btprelay argv=/usr/libexec/btprelay/btprelay-lmtp -d $dest"
	done
}

# --- the cockpit's routes ---------------------------------------------------
# "btprelay routes --postmap" (run by root, it reads the routes as the
# transport's user, the owner of cache_dir) writes the table that
# transport_maps and relay_domains read. With LMTP, each destination in it
# needs its spawn(8) service in master.cf.

# table_services - the destinations the table routes to over LMTP
table_services() {
	[ "$ROUTE_TYPE" = lmtp ] || return 0
	sed -n 's/^[^#][^[:space:]]*[[:space:]][[:space:]]*lmtp:unix:private\/btprelay-lmtp-\([A-Za-z0-9_.-]\{1,200\}\)$/\1/p' \
		"$ROUTES_DIR/routes" 2>/dev/null | sort -u | tr '\n' ' '
}

# build_routes - one run of btprelay routes; 0 when the table is current.
# Sets ROUTES_OUT (its output) and ROUTES_CHANGED (yes when it rewrote the table).
build_routes() {
	local rc
	ROUTES_OUT=$(timeout 300 /usr/sbin/btprelay -c "$CONF" routes --postmap "$ROUTES_MAP" 2>&1)
	rc=$?
	ROUTES_CHANGED=no
	printf '%s\n' "$ROUTES_OUT" | grep -q '^map: .* updated$' && ROUTES_CHANGED=yes
	return $rc
}

# routes_error - the error line of the last run
routes_error() {
	local line
	line=$(printf '%s\n' "$ROUTES_OUT" | sed -n 's/^error: //p' | head -1)
	printf '%s' "${line:-$(printf '%s\n' "$ROUTES_OUT" | tail -1)}"
}

# routes_summary - "N routes (C conflicts): DOMAIN DEST, ..."
routes_summary() {
	printf '%s\n' "$ROUTES_OUT" | sed -n 's/^routes: //p' | head -1 | tr -d '\n'
	printf ': '
	printf '%s\n' "$ROUTES_OUT" | sed -n 's/^route: \([^ ]*\) \([^ ]*\) .*/\1 \2/p' | paste -sd, - | sed 's/,/, /g'
}

# refresh_routes - every ROUTES_INTERVAL seconds: a changed table (or a
# destination new to master.cf) makes Postfix reload; a failure keeps the
# table as it was. Runs in the background until the entrypoint stops it.
refresh_routes() {
	local services=$1 now
	trap 'exit 0' TERM
	while :; do
		sleep "$ROUTES_INTERVAL" & wait $!
		if ! build_routes; then
			echo "btprelay: warning: routes: $(routes_error) (the table stays as it was)"
			continue
		fi
		now=$(table_services)
		[ "$ROUTES_CHANGED" = yes ] || [ "$now" != "$services" ] || continue
		if [ "$now" != "$services" ]; then
			write_master "$now" > "$PF/master.cf.tmp" && mv "$PF/master.cf.tmp" "$PF/master.cf"
			services=$now
		fi
		# (a table first made empty refuses with 450: now it is real)
		postconf -c "$PF" -e relay_domains_reject_code=554
		if postfix reload >/dev/null 2>&1; then
			echo "btprelay: routes updated: $(routes_summary)"
		else
			echo "btprelay: warning: routes updated, but postfix reload failed; Postfix uses the table when its processes restart: $(routes_summary)"
		fi
	done
}

if [ "$COCKPIT" = yes ]; then
	if build_routes; then
		grep -q '^cockpit: off' <<<"$ROUTES_OUT" &&
			fatal "BTPRELAY_ROUTES is not set, and the cockpit's routes cannot be read: $(sed -n 's/^cockpit: //p' <<<"$ROUTES_OUT" | head -1)"
		info "routes from the cockpit: $(routes_summary)"
	elif [ -s "$ROUTES_DIR/routes.db" ]; then
		# readiness must not depend on SAP's services: start with the last table
		info "warning: routes: $(routes_error); starting with the table of the last run on the queue volume (refreshed every ${ROUTES_INTERVAL} s)"
	else
		info "warning: routes: $(routes_error); starting with an empty table: every recipient gets 450 4.7.1 at RCPT until a refresh succeeds (every ${ROUTES_INTERVAL} s)"
		(umask 022 && printf '# empty: the cockpit could not be read yet\n' > "$ROUTES_DIR/routes") &&
			postmap -c "$PF" "$ROUTES_MAP" && chown btprelay:btprelay "$ROUTES_DIR/routes" "$ROUTES_DIR/routes.db" ||
			fatal "$ROUTES_DIR: cannot write an empty route table"
		postconf -c "$PF" -e relay_domains_reject_code=450
	fi
	SERVICES=$(table_services)
fi
write_master "$SERVICES" > "$PF/master.cf"

if ! out=$(postconf -c "$PF" -n 2>&1 >/dev/null) || [ -n "$out" ]; then
	fatal "BTPRELAY_POSTCONF: Postfix refuses the configuration: $(printf '%s\n' "$out" | head -1)"
fi

# What the health probe needs to know
{
	echo "SMTP_PORT=$SMTP_PORT"
	echo "INET_INTERFACES='$INET_INTERFACES'"
	echo "MILTER=$MILTER"
} > "$RUN/health.env"

# --- run --------------------------------------------------------------------

# supervise NAME COMMAND... - run in the background: COMMAND, and again each
# time it ends, after 1 s, then 2, 4, ... at most 60 s while it keeps ending
# within a minute of its start (one warning line each time). $RUN/NAME.pid
# holds the process id of the COMMAND running. SIGTERM ends the loop: it is
# passed to COMMAND, which is waited for.
supervise() {
	local name=$1 delay=1 pid= rc started down=0
	shift
	trap 'down=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null' TERM
	while [ "$down" = 0 ]; do
		started=$SECONDS
		"$@" <&0 &
		pid=$!
		echo "$pid" > "$RUN/$name.pid"
		# (wait returns early, status > 128, when the trap runs)
		while wait "$pid" 2>/dev/null; rc=$?; kill -0 "$pid" 2>/dev/null; do :; done
		[ "$down" = 0 ] || break
		[ $((SECONDS - started)) -lt 60 ] || delay=1
		echo "btprelay: warning: $name ended (status $rc); starting it again in $delay s"
		sleep "$delay" &
		pid=$!
		wait "$pid"
		delay=$((delay < 30 ? delay * 2 : 60))
	done
	rm -f "$RUN/$name.pid"
	exit 0
}

PIDS=()
stopping=0
stop() {
	[ "$stopping" = 1 ] && return
	stopping=1
	info "stopping on SIG$1: postfix stop (the queue stays on its volume)"
	# btprelay-fetch first: it finishes the message in hand while smtpd takes it
	if [ -n "${FETCH_PID:-}" ]; then
		kill -TERM "$FETCH_PID" 2>/dev/null
		wait "$FETCH_PID" 2>/dev/null
	fi
	postfix stop >/dev/null 2>&1
	[ -z "${MILTER_PID:-}" ] || kill -TERM "$MILTER_PID" 2>/dev/null
	[ -z "${ROUTES_PID:-}" ] || kill -TERM "$ROUTES_PID" 2>/dev/null
	[ -z "${METRICS_PID:-}" ] || kill -TERM "$METRICS_PID" 2>/dev/null
}
trap 'stop TERM' TERM
trap 'stop INT' INT

# btprelay-milter, the metrics endpoint, the log counter and btprelay-fetch
# run supervised: one that dies is started again, and the rest of the
# container goes on (the milter's socket is made anew, smfi_opensocket(3)).
if [ "$MILTER" = yes ]; then
	(umask 007 && supervise milter /usr/sbin/btprelay-milter -f -c "$CONF") &
	MILTER_PID=$!
	PIDS+=("$MILTER_PID")
fi

# On a queue volume Postfix has used before, check the queue's structure
# (postsuper(1) renames misnamed queue files) and skip postfix-script's
# other start-up checks: they only warn about ownership of files in the
# read-only image, and take seconds. A new volume gets the full start,
# which creates the queue directories.
if [ -d /var/spool/postfix/pid ] && [ -d /var/spool/postfix/public ]; then
	postsuper || fatal "/var/spool/postfix: postsuper cannot check the queue (see the lines above)"
	touch /var/spool/postfix/quick-start
fi
# Postfix's log (postlogd writes to the stdout of "postfix start-fg") passes
# through "btprelay metrics --count-log" on its way to ours: it counts each
# delivery's status line (postfix_deliveries_total). The entrypoint holds the
# pipe open read-write, so neither side ever blocks on opening it.
exec 4<>"$RUN/postfix-log.pipe"
supervise count-log /usr/local/sbin/btprelay metrics --count-log <&4 4<&- &
COUNT_PID=$!
postfix start-fg >&4 4<&- &
POSTFIX_PID=$!
if [ "$METRICS_LISTEN" != no ]; then
	# as the transport's user (btprelay-tool.sh): the counters are its file;
	# a member of postdrop, so that postqueue -j answers for the queue sizes
	supervise metrics /usr/local/sbin/btprelay metrics --listen "$METRICS_LISTEN" 4<&- &
	METRICS_PID=$!
	PIDS+=("$METRICS_PID")
fi
if [ "$FETCH" = yes ]; then
	# once smtpd greets (at most 60 s), so that the first pass can hand over
	{
		for i in $(seq 600); do
			/usr/libexec/btprelay/health live >/dev/null 2>&1 && break
			sleep 0.1
		done
		supervise fetch setpriv --reuid=btprelay --regid=btprelay --init-groups \
			/usr/sbin/btprelay-fetch -c "$CONF" --daemon
	} 4<&- &
	FETCH_PID=$!
	PIDS+=("$FETCH_PID")
fi

if [ "$COCKPIT" = yes ]; then
	refresh_routes "$SERVICES" &
	ROUTES_PID=$!
	PIDS+=("$ROUTES_PID")
	info "started: routes from the cockpit, refreshed every $ROUTES_INTERVAL s ($ROUTE_TYPE), smtpd on port $SMTP_PORT, milter $MILTER, AUTH $SUBMIT_AUTH, metrics $METRICS_LISTEN${PROXY_HOST:+, proxy $PROXY_HOST:$PROXY_PORT}${FETCH_SOURCES:+, fetch ${FETCH_SOURCES//,/ } every $FETCH_INTERVAL s}"
else
	info "started: routes ${BTPRELAY_ROUTES//,/, } ($ROUTE_TYPE), smtpd on port $SMTP_PORT, milter $MILTER, AUTH $SUBMIT_AUTH, metrics $METRICS_LISTEN${PROXY_HOST:+, proxy $PROXY_HOST:$PROXY_PORT}${FETCH_SOURCES:+, fetch ${FETCH_SOURCES//,/ } every $FETCH_INTERVAL s}"
fi

# Wait for Postfix; when it ends (stopped, or died) the container ends.
while :; do
	wait "$POSTFIX_PID"
	rc=$?
	# wait returns early (status > 128) when a trapped signal arrives
	kill -0 "$POSTFIX_PID" 2>/dev/null || break
done
unexpected=0
[ "$stopping" = 1 ] || {
	echo "btprelay: postfix ended unexpectedly (status $rc); stopping" >&2
	unexpected=1
	stop TERM
}
for pid in "${PIDS[@]}"; do
	wait "$pid" 2>/dev/null
done
# let the copier write what is still in the pipe, then end it
sleep 0.2
kill "$LOG_PID" "$COUNT_PID" 2>/dev/null
info "stopped"
exit $unexpected
