#!/bin/sh
# build.sh OUTDIR - build every fuzz target (and the hostile-input checks)
# with clang, libFuzzer, ASan and UBSan, straight from the sources: no
# autotools. common/*.c, tests/fuzz/fuzz.c and tests/lib/peer.c are compiled once into
# OUTDIR/obj (an archive, so each target links only what it uses), then
# each tests/fuzz/fuzz-NAME.c becomes OUTDIR/fuzz-NAME.
#
# Exit 0 when built, 77 when clang or libFuzzer is missing (the caller
# skips), 1 when the build fails (OUTDIR/build.log says why).
#   CC=clang-16 tests/fuzz/build.sh /tmp/fuzz     another clang
# Flags are split into words on purpose; -DSYSCONFDIR=\"/etc\" passes a C string literal.
# shellcheck disable=SC2086,SC2089,SC2090
set -u
out=${1:?usage: build.sh OUTDIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
fz=$src/tests/fuzz
CC=${CC:-clang}
jobs=$(nproc 2>/dev/null || echo 2)

command -v "$CC" >/dev/null 2>&1 || { echo "build.sh: $CC not found (apt-get install clang)"; exit 77; }
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)
log=$out/build.log
: > "$log"

# libFuzzer is part of Debian's clang; check it links before anything else.
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$out/obj/probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$out/obj/probe.c" -o "$out/obj/probe" >> "$log" 2>&1; then
	echo "build.sh: $CC cannot link -fsanitize=fuzzer,address,undefined (libFuzzer missing)"
	exit 77
fi

for pc in libcurl jansson libssl libcrypto; do
	pkg-config --exists "$pc" || { echo "build.sh: pkg-config $pc not found (tests/install-deps.sh)"; exit 77; }
done
PKG_CFLAGS=$(pkg-config --cflags libcurl jansson libssl libcrypto)
PKG_LIBS=$(pkg-config --libs libcurl jansson libssl libcrypto)

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS_ALL="-std=c11 -g -O1 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
-Wmissing-prototypes -D_GNU_SOURCE -DSYSCONFDIR=\"/etc\" -DLIBEXECDIR=\"/usr/libexec\" \
-I$src/common -I$fz $PKG_CFLAGS $SAN"

# compile - one object, instrumented for coverage; prints nothing on success
compile() {
	case $1 in */tests/fuzz/* | */tests/lib/*) werror=-Werror ;; *) werror= ;; esac
	"$CC" $CFLAGS_ALL $werror -fsanitize=fuzzer-no-link -c "$1" -o "$out/obj/$(basename "$1" .c).o"
}

status=0
objs=""
for f in "$src"/common/*.c "$fz/fuzz.c" "$src/tests/lib/peer.c"; do
	objs="$objs $out/obj/$(basename "$f" .c).o"
done
# Compile in parallel, a few at a time.
printf '%s\n' "$src"/common/*.c "$fz/fuzz.c" "$src/tests/lib/peer.c" | {
	n=0
	while read -r f; do
		compile "$f" >> "$log" 2>&1 &
		n=$((n + 1))
		if [ "$n" -ge "$jobs" ]; then wait; n=0; fi
	done
	wait
}
for o in $objs; do
	[ -f "$o" ] || { status=1; echo "build.sh: failed to compile ${o##*/}" >> "$log"; }
done
if [ "$status" != 0 ]; then
	tail -40 "$log"
	exit 1
fi
rm -f "$out/obj/libfuzzcommon.a"
ar cr "$out/obj/libfuzzcommon.a" $objs

targets=""
for f in "$fz"/fuzz-*.c; do
	t=$(basename "$f" .c)
	targets="$targets $t"
	if ! "$CC" $CFLAGS_ALL -Werror -fsanitize=fuzzer "$f" "$out/obj/libfuzzcommon.a" $PKG_LIBS -lpthread \
		-o "$out/$t" >> "$log" 2>&1; then
		echo "build.sh: failed to build $t" >> "$log"
		status=1
	fi
done
# The hostile-input checks: a plain program (no libFuzzer main) over the same objects.
if ! "$CC" $CFLAGS_ALL -Werror -fsanitize=fuzzer-no-link "$fz/hostile.c" "$out/obj/libfuzzcommon.a" \
	$PKG_LIBS -lpthread -o "$out/hostile" >> "$log" 2>&1; then
	echo "build.sh: failed to build hostile" >> "$log"
	status=1
fi
if [ "$status" != 0 ]; then
	tail -40 "$log"
	exit 1
fi
echo "$targets" | tr ' ' '\n' | sed '/^$/d' > "$out/targets"
exit 0
