#!/usr/bin/env bash
# Install Autobahn|Testsuite's `wstest` for wsloop's conformance runner (autobahn/run.sh).
#
# Usage: autobahn/install-wstest.sh [PREFIX]
#   PREFIX defaults to $AUTOBAHN_PREFIX, else ~/.cache/wsloop-wstest.
#   Progress goes to stderr; the LAST stdout line is the absolute path of the wstest launcher
#   (PREFIX/bin/wstest), so callers can do: WSTEST=$(autobahn/install-wstest.sh | tail -n1)
#
# Why it looks like this:
#   - wstest (autobahntestsuite on PyPI) runs only on Python 2.7, which Debian 12 no longer ships.
#     We unpack (not install) Debian *bullseye*'s python2.7 debs, plus the two libraries bookworm
#     lacks (libssl1.1, libffi7), into PREFIX/root, using a private apt configuration that points
#     at the system's own Debian mirror. The system's apt state is never modified by that part.
#   - There is no Docker here and only package registries are reachable, so the official
#     crossbario/autobahn-testsuite image is not an option.
#   - Everything from PyPI is pinned (constraints file below) so runs are reproducible.
#   - Idempotent: if the launcher already works we print it and stop (about 0.5 s).
#   - Needs root only on a machine that lacks a host package listed in HOST_PKGS (apt-get install).
set -euo pipefail

PREFIX=$(realpath -m "${1:-${AUTOBAHN_PREFIX:-$HOME/.cache/wsloop-wstest}}")
ROOT=$PREFIX/root            # unpacked bullseye tree: ROOT/usr/bin/python2.7, ROOT/usr/lib/...
WSTEST=$PREFIX/bin/wstest    # the launcher we write last (its presence means "installed")
AUTOBAHNTESTSUITE_VERSION=25.10.1

log() { echo "[install-wstest] $*" >&2; }

# --- 0. Already installed and working? Then we are done. ------------------------------------
if [ -x "$WSTEST" ] && "$WSTEST" --autobahnversion >/dev/null 2>&1; then
  echo "$WSTEST"
  exit 0
fi
log "installing wstest $AUTOBAHNTESTSUITE_VERSION into $PREFIX"

# --- 1. Host packages. ----------------------------------------------------------------------
# gcc + libc6-dev: pip builds wsaccel (a C extension) from source.
# python3 + python3-pip: we use python3's pip to fetch the last Python-2-capable pip wheel.
# The rest: bookworm runtime libraries that bullseye's python2.7 links against (same sonames).
HOST_PKGS=(gcc libc6-dev ca-certificates debian-archive-keyring
  libbz2-1.0 libdb5.3 libexpat1 libncursesw6 libtinfo6 libnsl2 libreadline8 libsqlite3-0 libtirpc3 zlib1g)
# A python3 that already has pip (e.g. pyenv's) is as good as Debian's python3-pip.
if ! python3 -m pip --version >/dev/null 2>&1; then
  HOST_PKGS+=(python3 python3-pip)
fi
if ! dpkg -s "${HOST_PKGS[@]}" >/dev/null 2>&1; then
  log "apt-get install ${HOST_PKGS[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${HOST_PKGS[@]}" >&2
fi

# --- 2. Private apt configuration for bullseye, on the system's own mirror. -------------------
MIRROR=$(awk '$1=="URIs:"{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
APT=$PREFIX/apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources" "$PREFIX/debs" "$PREFIX/bin"
printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$MIRROR" > "$APT/sources/bullseye.sources"
# Own lists/cache dirs, empty dpkg status, no system sources: nothing of the host's apt is touched.
APT_OPTS=(
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::State::status=/dev/null"
  -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT/sources"
  -o "APT::Sandbox::User=root"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
)
log "apt-get update (bullseye main from $MIRROR, private lists in $APT)"
apt-get "${APT_OPTS[@]}" update -qq >&2

# --- 3. Download and unpack python2.7 (+ headers for wsaccel, + libssl1.1/libffi7). -----------
log "apt-get download python2.7 and friends (bullseye)"
(
  cd "$PREFIX/debs"
  rm -f ./*.deb
  apt-get "${APT_OPTS[@]}" download -qq \
    python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev libssl1.1 libffi7 >&2
)
rm -rf "$ROOT"
mkdir -p "$ROOT"
for deb in "$PREFIX"/debs/*.deb; do
  dpkg-deb -x "$deb" "$ROOT"
done
PY=$ROOT/usr/bin/python2.7
# The multiarch lib dir (x86_64-linux-gnu, aarch64-linux-gnu, ...) is wherever libssl1.1 landed.
LIBDIR=$(dirname "$(find "$ROOT/usr/lib" -name 'libssl.so.1.1' | head -n1)")
export LD_LIBRARY_PATH=$LIBDIR PYTHONNOUSERSITE=1
unset PYTHONPATH PYTHONHOME
# Fail early (with a clear error) if a runtime library is missing.
"$PY" -c 'import ssl, ctypes, zlib, sqlite3' >&2

# Both pips (python3's and python2.7's) trust the system CA store, not the certifi bundle that
# pip 20.3.4 vendors: on Debian that store is where site-local CAs (e.g. a proxy's) are added.
if [ -z "${PIP_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi

# --- 4. pip for Python 2.7. --------------------------------------------------------------------
# pip 20.3.4 is the last release that runs on Python 2. The host's python3 pip downloads the
# wheel from PyPI; python2.7 then runs pip straight from the wheel to install itself.
log "bootstrap pip 20.3.4 / setuptools 44.0.0 / wheel 0.37.1 for python2.7"
python3 -m pip download -q --disable-pip-version-check -d "$PREFIX/wheels" \
  --no-deps --only-binary=:all: --python-version 2.7 pip==20.3.4 >&2
"$PY" "$PREFIX/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q --disable-pip-version-check \
  --no-warn-script-location pip==20.3.4 setuptools==44.0.0 wheel==0.37.1 >&2

# --- 5. autobahntestsuite with every Python 2 dependency pinned. --------------------------------
# Versions are the newest that still support Python 2.7, as resolved when this was written.
cat > "$PREFIX/constraints.txt" <<EOF
autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION
autobahn==0.10.9
Twisted==19.10.0
txaio==2.1.0
zope.interface==4.6.0
cryptography==3.3.2
pyOpenSSL==19.1.0
cffi==1.15.1
pycparser==2.21
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
attrs==21.4.0
Automat==22.10.0
constantly==15.1.0
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
ipaddress==1.0.23
enum34==1.1.10
typing==3.10.0.0
six==1.16.0
PyHamcrest==1.10.1
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
unittest2==1.1.0
linecache2==1.0.0
traceback2==1.4.0
setuptools==44.0.0
wheel==0.37.1
wsaccel==0.6.6
ujson==2.0.3
EOF
log "pip install autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION (pinned dependencies)"
CFLAGS="-I$ROOT/usr/include/python2.7 -I$ROOT/usr/include" \
  "$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location \
  -c "$PREFIX/constraints.txt" "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION" >&2

# --- 6. Launcher (written last: its existence marks a complete install). ------------------------
# It points the loader at the unpacked libssl1.1/libffi7 and isolates python2.7 from the
# caller's Python environment variables.
cat > "$WSTEST.tmp" <<EOF
#!/bin/sh
# wstest (Autobahn|Testsuite $AUTOBAHNTESTSUITE_VERSION) on bullseye's python2.7 unpacked in
# $ROOT. Written by wsloop's autobahn/install-wstest.sh.
export LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" PYTHONNOUSERSITE=1
unset PYTHONPATH PYTHONHOME
exec "$PY" -m autobahntestsuite.wstest "\$@"
EOF
chmod +x "$WSTEST.tmp"
mv "$WSTEST.tmp" "$WSTEST"
"$WSTEST" --autobahnversion >&2
log "done"
echo "$WSTEST"
