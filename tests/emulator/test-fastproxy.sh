#!/bin/sh
# test-fastproxy.sh - the Connectivity proxy checks of test-emulator.sh against
# btp-fastproxy (tests/emulator/btp-fastproxy.c), the C proxy the benchmarks use: the
# same bytes, REP codes, fault switches, handshake records and envelopes (via_proxy,
# location ID, tenant) as the Python proxy. Exit 77 when it is not built.
here=$(cd "$(dirname "$0")" && pwd)
prog=${top_builddir:-$here/../..}/tests/emulator/btp-fastproxy
if [ ! -x "$prog" ]; then
    echo "1..0 # SKIP $prog not built (make)"
    exit 77
fi
EMU_PROXY_PROGRAM=$prog EMU_CHECKS='^(proxy|counters|ports|SIGTERM)' exec sh "$here/test-emulator.sh"
