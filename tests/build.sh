#!/bin/sh
# build.sh [CONFIGURE-ARGS...] - autogen, configure and make in ./build
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh > /dev/null 2>&1
mkdir -p build
cd build
[ -f Makefile ] && [ -z "$*" ] || ../configure --enable-werror -q "$@"
make -j"$(nproc)" > make.log 2>&1 || { tail -40 make.log; exit 1; }
