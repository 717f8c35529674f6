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
# Two binaries, both from server.cpp:
#   target/peer-uws      uSockets without TLS (-DLIBUS_NO_SSL): the plain
#                        scenarios. Required: build.sh fails without it.
#   target/peer-uws-tls  uSockets with its OpenSSL layer (-DLIBUS_USE_OPENSSL,
#                        as uSockets' Makefile with WITH_OPENSSL=1: the
#                        system's libssl/libcrypto, sni_tree.cpp compiled as
#                        C++17, -lstdc++): serves wss:// (uWS::SSLApp) for the
#                        tls-* scenarios. Optional: when it cannot be built
#                        (no libssl-dev, a compile error) build.sh says why,
#                        writes the reason to target/peer-uws-tls.failed,
#                        removes any old peer-uws-tls and still succeeds.
#                        UWS_TLS=0 skips it.
# Steps, for each:
#   1. uSockets' C sources compiled one by one (cc -O3 -flto -std=c11: plain
#      epoll event loop, no io_uring, no QUIC -- the same set of files and
#      flags as uSockets' own Makefile) into target/obj-VARIANT/.
#   2. server.cpp compiled and linked with them (g++ -O3 -flto -std=c++20,
#      -lz: zlib, uWS's permessage-deflate, which the server uses only when
#      started with --compression shared|dedicated).
#   No -march=native (uWS's own build.c adds it; wsloop and the Rust peers
#   are built for the baseline x86-64 target, so this is too). Output:
#   target/peer-uws, target/peer-uws-tls and target/peer-uws.version (the
#   commits and flags built).
#   Everything is sequential (one compiler at a time).
#
# Environment: UWS_DIR (required), CC (default cc), CXX (default g++),
# UWS_TLS (default 1; 0 skips peer-uws-tls).

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

rm -rf "$OUT/obj" "$OUT/obj-plain" "$OUT/obj-tls" "$OUT/peer-uws-tls.failed"
mkdir -p "$OUT"

# variant (plain|tls), binary name, SSL define, extra link flags
build_variant() {
    local variant=$1 bin=$2 ssl=$3 libs=$4
    local obj=$OUT/obj-$variant
    mkdir -p "$obj"
    CFLAGS="-O3 -flto -std=c11 $ssl -I$US/src"
    echo "uws: $bin: compiling uSockets ($US, $(rev "$US"))" >&2
    for f in "$US"/src/*.c "$US"/src/eventing/*.c "$US"/src/crypto/*.c; do
        o=$obj/$(basename "$(dirname "$f")")-$(basename "$f" .c).o
        # shellcheck disable=SC2086
        $CC $CFLAGS -c "$f" -o "$o" || return 1
    done
    if [ "$variant" = tls ]; then
        # The SNI tree (C++17 in uSockets' Makefile), needed with OpenSSL only.
        for f in "$US"/src/crypto/*.cpp; do
            # shellcheck disable=SC2086
            $CXX -O3 -flto -std=c++17 $ssl -I$US/src -c "$f" -o "$obj/crypto-$(basename "$f" .cpp).o" || return 1
        done
    fi
    CXXFLAGS="-O3 -flto -std=c++20 $ssl -I$UWS_DIR/src -I$US/src"
    echo "uws: $bin: compiling and linking server.cpp ($UWS_DIR, $(rev "$UWS_DIR"))" >&2
    # shellcheck disable=SC2086
    $CXX $CXXFLAGS "$HERE/server.cpp" "$obj"/*.o -lz $libs -o "$OUT/$bin.tmp" || return 1
    mv "$OUT/$bin.tmp" "$OUT/$bin"
    echo "$bin: cc: $CFLAGS; c++: $CXXFLAGS -lz $libs" >>"$OUT/peer-uws.version.tmp"
}

{
    echo "uWebSockets $(rev "$UWS_DIR") uSockets $(rev "$US")"
    echo "$($CXX --version | head -1)"
} >"$OUT/peer-uws.version.tmp"

build_variant plain peer-uws -DLIBUS_NO_SSL ""

rm -f "$OUT/peer-uws-tls"
tls_failed() {
    echo "uws: peer-uws-tls not built: $1" >&2
    echo "$1" >"$OUT/peer-uws-tls.failed"
}
if [ "${UWS_TLS:-1}" = 0 ]; then
    tls_failed "skipped (UWS_TLS=0)"
elif ! echo '#include <openssl/ssl.h>' | $CC -E -x c - >/dev/null 2>&1; then
    tls_failed "OpenSSL headers missing (openssl/ssl.h; install libssl-dev)"
elif ! build_variant tls peer-uws-tls -DLIBUS_USE_OPENSSL "-lssl -lcrypto -lstdc++"; then
    tls_failed "uSockets/uWS with OpenSSL (-DLIBUS_USE_OPENSSL) did not compile or link here (see the compiler output above)"
fi

mv "$OUT/peer-uws.version.tmp" "$OUT/peer-uws.version"
echo "uws: built $(cd "$OUT" && ls peer-uws peer-uws-tls 2>/dev/null | tr '\n' ' ')in $OUT" >&2
cat "$OUT/peer-uws.version" >&2
