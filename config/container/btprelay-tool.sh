#!/bin/sh
# btprelay - the operator's tool inside the relay container
# ("kubectl exec POD -- btprelay check | probe NAME | ..."): run as the
# transport's user, on the bindings the entrypoint prepared, so it sees what
# btprelay-lmtp and btprelay-transport see. The container's environment
# still names the original Secret mount, which only root can read.
unset VCAP_SERVICES
if [ -n "$(ls -A /run/btprelay/bindings 2>/dev/null)" ]; then
	export SERVICE_BINDING_ROOT=/run/btprelay/bindings
else
	unset SERVICE_BINDING_ROOT
fi
if [ "$(id -u)" = 0 ]; then
	exec setpriv --reuid=btprelay --regid=btprelay --init-groups /usr/sbin/btprelay "$@"
fi
exec /usr/sbin/btprelay "$@"
