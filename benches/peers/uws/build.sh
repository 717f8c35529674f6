#!/usr/bin/env bash
# Builds peer-uws (server.cpp) against a uWebSockets checkout that lives
# OUTSIDE this repository; none of uWebSockets' code is committed here.
#
#   UWS_DIR=/path/to/uWebSockets benches/peers/uws/build.sh
#
# Expected layout (what `git clone --recurse-submodules
# https://github.com/uNetworking/uWebSockets` gives):
#   $UWS_DIR/src/App.h                  uWebSockets (header-only)
#   $UWS_DIR/uSockets/src/libusockets.h uSockets, its submodule
#
# Steps:
#   1. uSockets' C sources compiled one by one (cc -O3 -flto -std=c11
#      -DLIBUS_NO_SSL: plain epoll event loop, no TLS, no io_uring, no QUIC
#      -- the same set of files and flags as uSockets' own Makefile with
#      WITH_OPENSSL=0) into target/obj/.
#   2. server.cpp compiled and linked with them (g++ -O3 -flto -std=c++20,
#      -lz: uWS's headers include zlib for permessage-deflate, which the
#      server leaves off).
#   No -march=native (uWS's own build.c adds it; wsloop and the Rust peers
#   are built for the baseline x86-64 target, so this is too). Output:
#   target/peer-uws and target/peer-uws.version (the commits built).
#   Everything is sequential (one compiler at a time).
#
# Environment: UWS_DIR (required), CC (default cc), CXX (default g++).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CC=${CC:-cc}
CXX=${CXX:-g++}
OUT=$HERE/target

if [ -z "${UWS_DIR:-}" ]; then
    echo "uws: UWS_DIR not set (see the top of $0)" >&2
    exit 3
fi
if [ ! -f "$UWS_DIR/src/App.h" ] || [ ! -f "$UWS_DIR/uSockets/src/libusockets.h" ]; then
    echo "uws: UWS_DIR=$UWS_DIR not found or incomplete (need src/App.h and uSockets/src/libusockets.h)" >&2
    exit 3
fi
UWS_DIR=$(cd "$UWS_DIR" && pwd)
US=$UWS_DIR/uSockets

rev() { # dir -> commit (or "unknown" for a tree without git metadata)
    git -C "$1" rev-parse HEAD 2>/dev/null || echo unknown
}

rm -rf "$OUT/obj"
mkdir -p "$OUT/obj"

CFLAGS="-O3 -flto -std=c11 -DLIBUS_NO_SSL -I$US/src"
echo "uws: compiling uSockets ($US, $(rev "$US"))" >&2
for f in "$US"/src/*.c "$US"/src/eventing/*.c "$US"/src/crypto/*.c; do
    o=$OUT/obj/$(basename "$(dirname "$f")")-$(basename "$f" .c).o
    # shellcheck disable=SC2086
    $CC $CFLAGS -c "$f" -o "$o"
done

CXXFLAGS="-O3 -flto -std=c++20 -DLIBUS_NO_SSL -I$UWS_DIR/src -I$US/src"
echo "uws: compiling and linking server.cpp ($UWS_DIR, $(rev "$UWS_DIR"))" >&2
# shellcheck disable=SC2086
$CXX $CXXFLAGS "$HERE/server.cpp" "$OUT"/obj/*.o -lz -o "$OUT/peer-uws.tmp"
mv "$OUT/peer-uws.tmp" "$OUT/peer-uws"

{
    echo "uWebSockets $(rev "$UWS_DIR") uSockets $(rev "$US")"
    echo "$($CXX --version | head -1); cc: $CFLAGS; c++: $CXXFLAGS -lz"
} >"$OUT/peer-uws.version"
echo "uws: built $OUT/peer-uws" >&2
cat "$OUT/peer-uws.version" >&2
