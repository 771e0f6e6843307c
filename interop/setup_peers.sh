#!/usr/bin/env bash
# Install every real TLS/DTLS peer the interop tests run, into a cache folder outside the
# repository, and describe them in $CACHE/peers.json (read by interop/peers.py).
#
#   bash interop/setup_peers.sh            # cache: ${TLS13_PEERS:-$HOME/.cache/tls13-peers}
#   TLS13_PEERS_REFRESH=1 bash ...         # rebuild even the peers that have a stamp
#
# Idempotent: a peer whose stamp ($CACHE/stamps/<peer>.json) is present and whose executables
# still exist is skipped without touching the network. Every step logs to $CACHE/logs/<peer>.log;
# a peer that fails prints ONE line "setup_peers: <peer> could not be installed: ..." and the
# others go on; the script exits non-zero at the end if any failed.
#
# Where the peers come from (see shared/PEERS.md for the commands and their gotchas):
#   openssl, gnutls-bin      Debian 12 packages (apt-get install)
#   wolfSSL (newest), mbedTLS  Debian sid source packages, built here (private apt configuration:
#                            /etc/apt and the system's packages are never touched)
#   NSS (newest)             Debian sid binary .debs, unpacked; runs on the system's libnspr4
#   wolfSSL 5.5.4            Debian 12 source package (with Debian's patches), built here
#   tlslite-ng, pyOpenSSL    pip (normally already there from `pip install -e '.[test]'`)
set -euo pipefail

CACHE="${TLS13_PEERS:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tls13-peers}"
LOGS="$CACHE/logs"
STAMPS="$CACHE/stamps"
STATE="$CACHE/.state"           # per-run scratch: current step of each peer
PYTHON="${PYTHON:-python3}"
JOBS="${TLS13_PEERS_JOBS:-2}"
REFRESH="${TLS13_PEERS_REFRESH:-0}"
MIRROR="http://deb.debian.org/debian"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$CACHE" "$LOGS" "$STAMPS"
# One run at a time per cache folder (a developer's run and a CI run may overlap).
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    echo "setup_peers: another run is using $CACHE; waiting for it"
    flock 9
fi
rm -rf "$STATE"
mkdir -p "$STATE"
FAILED=()
START=$SECONDS

say() { echo "setup_peers: $*"; }

# fail PEER REASON: the one line a person reads; the log holds the rest.
fail() {
    local peer=$1 reason=$2
    echo "setup_peers: $peer could not be installed: $reason (see $LOGS/$peer.log)" >&2
    FAILED+=("$peer")
}

# step PEER NAME: remember what a peer is doing, so a failure can say where it stopped.
step() { echo "$2" >"$STATE/$1.step"; echo "=== $1: $2 ($(date +%T))"; }

# why PEER STATUS: the reason of a failed peer, from its last step.
why() {
    local s="unknown step"
    [ -f "$STATE/$1.step" ] && s=$(cat "$STATE/$1.step")
    echo "$s failed (exit $2)"
}

# stamped PEER: true if the peer's stamp exists and every executable it names still exists.
stamped() {
    local stamp="$STAMPS/$1.json"
    [ "$REFRESH" = 1 ] && return 1
    [ -f "$stamp" ] || return 1
    "$PYTHON" - "$stamp" <<'EOF'
import json, os, sys
info = json.load(open(sys.argv[1]))
paths = [info["path"], *info.get("executables", {}).values()]
sys.exit(0 if info.get("version") and all(os.path.exists(p) for p in paths) else 1)
EOF
}

# write_stamp PEER VERSION PATH [exe:NAME=PATH | env:NAME=VALUE | detail:NAME=VALUE]...
write_stamp() {
    "$PYTHON" - "$STAMPS" "$@" <<'EOF'
import json, os, sys
stamps, peer, version, path, *items = sys.argv[1:]
info = {"version": version, "path": path, "executables": {}, "env": {}, "details": {}}
group = {"exe": "executables", "env": "env", "detail": "details"}
for item in items:
    kind, _, rest = item.partition(":")
    key, _, value = rest.partition("=")
    info[group[kind]][key] = value
for exe in info["executables"].values():
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe} is not an executable")
tmp = os.path.join(stamps, peer + ".json.tmp")
with open(tmp, "w") as f:
    json.dump(info, f, indent=2)
os.replace(tmp, os.path.join(stamps, peer + ".json"))
EOF
}

# ---------------------------------------------------------------------------------------------
# System packages (bookworm). Build tools for the source builds; libnspr4 for sid's NSS.
SYSTEM_PKGS=(openssl gnutls-bin libnspr4 autoconf automake libtool cmake make gcc pkg-config
             dpkg-dev xz-utils)
system_packages() {
    local missing=() p
    for p in "${SYSTEM_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step system "apt-get update"
    # .ci/run has just updated the lists: do not fetch them twice.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*InRelease' -mmin -60 2>/dev/null)" ]; then
        apt-get update -qq
    fi
    step system "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# Private apt configurations (shared/PEERS.md §0): own sources, lists and status file.
apt_opts() { # apt_opts NAME
    local a="$CACHE/apt-$1"
    echo "-o Dir::Etc::sourcelist=$a/sources.list -o Dir::Etc::sourceparts=/dev/null" \
         "-o Dir::State::Lists=$a/lists -o Dir::Cache::Archives=$a/archives" \
         "-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Dir::State::status=/dev/null" \
         "-o Dir::Etc::preferencesparts=/dev/null -o APT::Sandbox::User=root"
}
apt_private_update() { # apt_private_update NAME SOURCES-LINES
    local a="$CACHE/apt-$1"
    mkdir -p "$a/lists/partial" "$a/archives/partial"
    printf '%s\n' "$2" >"$a/sources.list"
    # shellcheck disable=SC2046
    apt-get $(apt_opts "$1") update -qq
}
SID_SOURCES="deb-src [signed-by=$KEYRING] $MIRROR sid main
deb     [signed-by=$KEYRING] $MIRROR sid main"
BOOKWORM_SOURCES="deb-src [signed-by=$KEYRING] $MIRROR bookworm main
deb-src [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main"

# fetch_source APT-NAME PACKAGE DEST: the source package's files into DEST (emptied first).
# sid's .dsc sometimes 404s while the orig tarball is there: the tarball is what we need.
fetch_source() {
    local dest=$3
    rm -rf "$dest"; mkdir -p "$dest"
    # shellcheck disable=SC2046
    (cd "$dest" && apt-get $(apt_opts "$1") source --download-only -qq "$2") ||
        echo "apt-get source $2 reported an error; checking for the orig tarball"
    compgen -G "$dest/$2_*.orig.tar.*" >/dev/null
}

# upstream_version DIR PACKAGE: "5.9.2" from DIR/PACKAGE_5.9.2.orig.tar.gz
upstream_version() {
    local t
    t=$(basename "$(compgen -G "$1/$2_*.orig.tar.*" | head -n 1)")
    t=${t#"$2"_}; t=${t%%.orig.tar.*}; t=${t%%+*}; t=${t%%~*}
    echo "$t"
}
# debian_version APT-NAME KIND PACKAGE: the version the private apt configuration serves.
debian_version() {
    # shellcheck disable=SC2046
    if [ "$2" = source ]; then
        apt-cache $(apt_opts "$1") showsrc "$3" | awk '/^Version:/ {print $2}' | sort -V | tail -n 1
    else
        apt-cache $(apt_opts "$1") show "$3" | awk '/^Version:/ {print $2}' | sort -V | tail -n 1
    fi
}

# ---------------------------------------------------------------------------------------------
# wolfSSL (PEERS.md §1 and §3). build_wolfssl PEER SRC-DIR-WITH-DOWNLOADS DEBIAN-VERSION CPPFLAGS
WOLFSSL_CONFIGURE=(--enable-dtls --enable-dtls13 --enable-dtlscid --enable-dtls-frag-ch
    --enable-dtls-mtu --enable-session-ticket --enable-psk --enable-earlydata
    --enable-curve25519 --enable-ed25519 --enable-mlkem --enable-hrrcookie --enable-opensslextra
    --disable-shared --enable-static)
build_wolfssl() {
    local peer=$1 dl=$2 debver=$3 cppflags=$4 ver dir
    ver=$(upstream_version "$dl" wolfssl)
    dir="$CACHE/wolfssl-$ver"
    step "$peer" "unpack wolfSSL $debver"
    rm -rf "$dir" "$dir.tmp"
    if compgen -G "$dl/*.dsc" >/dev/null && compgen -G "$dl/*.debian.tar.*" >/dev/null; then
        # dpkg-source applies Debian's patches (bookworm's CVE fixes).
        (cd "$dl" && dpkg-source --no-copy -x ./*.dsc "$dir.tmp")
    else
        mkdir -p "$dir.tmp"
        tar -xf "$(compgen -G "$dl/wolfssl_*.orig.tar.*" | head -n 1)" -C "$dir.tmp" \
            --strip-components=1
    fi
    mv "$dir.tmp" "$dir"
    cd "$dir"
    step "$peer" "autogen.sh"
    ./autogen.sh
    step "$peer" "configure"
    ./configure CPPFLAGS="$cppflags" "${WOLFSSL_CONFIGURE[@]}"
    step "$peer" "make"
    make -j"$JOBS" examples/server/server examples/client/client
    step "$peer" "smoke test"
    ./examples/client/client -? >/dev/null
    step "$peer" "stamp"
    write_stamp "$peer" "$ver" "$dir" "exe:server=$dir/examples/server/server" \
        "exe:client=$dir/examples/client/client" "detail:debian_version=$debver" \
        "detail:cppflags=$cppflags" "detail:cwd=$dir"
}

# mbedTLS (PEERS.md §4)
build_mbedtls() {
    local peer=$1 dl=$2 debver=$3 ver dir
    ver=$(upstream_version "$dl" mbedtls)
    dir="$CACHE/mbedtls-$ver"
    step "$peer" "unpack mbedTLS $debver"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    tar -xf "$(compgen -G "$dl/mbedtls_*.orig.tar.*" | head -n 1)" -C "$dir.tmp" --strip-components=1
    mv "$dir.tmp" "$dir"
    cd "$dir"
    step "$peer" "config.py"
    "$PYTHON" scripts/config.py set MBEDTLS_SSL_EARLY_DATA
    "$PYTHON" scripts/config.py set MBEDTLS_SSL_RECORD_SIZE_LIMIT
    step "$peer" "cmake configure"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DENABLE_TESTING=OFF -DENABLE_PROGRAMS=ON
    step "$peer" "cmake build"
    cmake --build build --target ssl_server2 ssl_client2 -j"$JOBS"
    step "$peer" "stamp"
    write_stamp "$peer" "$ver" "$dir" "exe:ssl_server2=$dir/build/programs/ssl/ssl_server2" \
        "exe:ssl_client2=$dir/build/programs/ssl/ssl_client2" "detail:debian_version=$debver"
}

# NSS (PEERS.md §2): sid's binary .debs unpacked into one folder.
install_nss() {
    local peer=$1 dl=$2 debver=$3 ver dir lib
    ver=${debver#*:}; ver=${ver%%-*}
    dir="$CACHE/nss-$ver"
    step "$peer" "unpack NSS $debver"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    local deb
    for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dir.tmp"; done
    mv "$dir.tmp" "$dir"
    lib="$dir/usr/lib/$MULTIARCH"
    step "$peer" "smoke test (certutil -H)"
    # certutil -H prints its help and exits 1; what matters is that the libraries load.
    LD_LIBRARY_PATH="$lib" "$dir/usr/bin/certutil" -H >/dev/null 2>&1 || true
    LD_LIBRARY_PATH="$lib" ldd "$dir/usr/bin/tstclnt" | (! grep -q "not found")
    step "$peer" "stamp"
    write_stamp "$peer" "$ver" "$dir" "exe:tstclnt=$dir/usr/bin/tstclnt" \
        "exe:selfserv=$dir/usr/bin/selfserv" "exe:certutil=$dir/usr/bin/certutil" \
        "exe:pk12util=$dir/usr/bin/pk12util" "env:LD_LIBRARY_PATH=$lib" \
        "detail:debian_version=$debver"
}

# System and pip peers: nothing to build, only to describe.
describe_openssl() {
    local exe ver
    step openssl "find the openssl CLI"
    exe=$(command -v openssl)
    ver=$(openssl version | awk '{print $2}')
    write_stamp openssl "$ver" "$exe" "exe:openssl=$exe" \
        "detail:debian_version=$(dpkg-query -W -f='${Version}' openssl)"
}
describe_gnutls() {
    local serv cli ver
    step gnutls "find gnutls-serv and gnutls-cli"
    serv=$(command -v gnutls-serv); cli=$(command -v gnutls-cli)
    ver=$(gnutls-cli --version | head -n 1 | awk '{print $NF}')
    write_stamp gnutls "$ver" "$cli" "exe:gnutls-serv=$serv" "exe:gnutls-cli=$cli" \
        "detail:debian_version=$(dpkg-query -W -f='${Version}' gnutls-bin)"
}
# describe_pip PEER PIP-NAME MODULE
describe_pip() {
    local peer=$1 dist=$2 module=$3
    step "$peer" "import $module"
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        step "$peer" "pip install $dist"
        "$PYTHON" -m pip install -q "$dist"
    fi
    step "$peer" "stamp"
    local fields
    mapfile -t fields < <("$PYTHON" - "$dist" "$module" <<'EOF'
import importlib, importlib.metadata, os, sys
dist, module = sys.argv[1:]
mod = importlib.import_module(module)
print(importlib.metadata.version(dist))
print(os.path.dirname(mod.__file__))
print("detail:python=" + sys.executable)
if module == "OpenSSL":
    from OpenSSL import SSL
    print("detail:openssl_version=" + SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode())
EOF
)
    [ ${#fields[@]} -ge 2 ]
    write_stamp "$peer" "${fields[@]}"
}

# logged LOG FUNCTION ARGS...: run the function with errexit, tracing to LOG. Always start it
# in the background as a statement of its own and `wait $!` for it: bash ignores `set -e` in
# anything started inside a condition (`if`, `||`, `&&`), even when set again inside, so a
# failed step would go unnoticed. For the same reason no caller of logged runs in a condition.
logged() {
    local log=$1; shift
    exec >>"$log" 2>&1
    set -euo pipefail
    set -x
    "$@"
}

# run_peer PEER FUNCTION ARGS...: run one peer's steps, logged, and report. It returns 0 even
# when the peer failed (see logged); the failure leaves $STATE/PEER.failed.
run_peer() {
    local peer=$1; shift
    local rc=0
    rm -f "$STAMPS/$peer.json"
    logged "$LOGS/$peer.log" "$@" &
    wait $! || rc=$?
    if [ $rc -ne 0 ]; then
        fail "$peer" "$(why "$peer" $rc)"
        touch "$STATE/$peer.failed"
    else
        say "$peer $(stamp_version "$peer") ready"
    fi
}
stamp_version() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$STAMPS/$1.json"; }

# ---------------------------------------------------------------------------------------------
say "cache folder $CACHE"
SYSTEM_OK=1
: >"$LOGS/system.log"
logged "$LOGS/system.log" system_packages &
if ! wait $!; then
    SYSTEM_OK=0
    FAILED+=("system-packages")
    echo "setup_peers: system packages could not be installed: $(why system 1) (see $LOGS/system.log)" >&2
fi

for peer in openssl gnutls; do
    : >"$LOGS/$peer.log"
    run_peer "$peer" "describe_$peer"
done
for spec in "tlslite-ng tlslite-ng tlslite" "pyopenssl pyOpenSSL OpenSSL"; do
    read -r peer dist module <<<"$spec"
    : >"$LOGS/$peer.log"
    run_peer "$peer" describe_pip "$peer" "$dist" "$module"
done

# Which of the built peers need work?
TODO=()
for peer in wolfssl nss mbedtls wolfssl-5.5.4; do
    if stamped "$peer"; then
        say "$peer $(stamp_version "$peer") already installed"
    else
        TODO+=("$peer")
        rm -f "$STAMPS/$peer.json"   # a failed rebuild must not leave a stale entry behind
        : >"$LOGS/$peer.log"
    fi
done

have_todo() { local p; for p in "${TODO[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
drop_todo() { local p keep=(); for p in "${TODO[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
              TODO=("${keep[@]+"${keep[@]}"}"); }

if [ ${#TODO[@]} -gt 0 ] && [ $SYSTEM_OK = 0 ]; then
    for peer in "${TODO[@]}"; do fail "$peer" "the system packages (build tools) are missing"; done
    TODO=()
fi

# Package lists of the private apt configurations (one download each, shared by the peers).
if have_todo wolfssl || have_todo nss || have_todo mbedtls; then
    say "fetching sid's package lists"
    logged "$LOGS/apt-sid.log" apt_private_update sid "$SID_SOURCES" &
    if ! wait $!; then
        for peer in wolfssl nss mbedtls; do
            have_todo "$peer" || continue
            fail "$peer" "sid's package lists could not be fetched ($LOGS/apt-sid.log)"
            drop_todo "$peer"
        done
    fi
fi
if have_todo wolfssl-5.5.4; then
    say "fetching bookworm's source lists"
    logged "$LOGS/apt-bookworm-src.log" apt_private_update bookworm-src "$BOOKWORM_SOURCES" &
    if ! wait $!; then
        fail wolfssl-5.5.4 "bookworm's source lists could not be fetched ($LOGS/apt-bookworm-src.log)"
        drop_todo wolfssl-5.5.4
    fi
fi

# Downloads, one after the other (apt is quick here; the builds are what takes time).
DL="$CACHE/downloads"
download_source() { # PEER APT-NAME PACKAGE
    step "$1" "download $3 source from $2"
    fetch_source "$2" "$3" "$DL/$1"
    debian_version "$2" source "$3" >"$STATE/$1.debver"
}
download_nss() {
    step nss "download libnss3 libnss3-tools from sid"
    rm -rf "$DL/nss"; mkdir -p "$DL/nss"
    # shellcheck disable=SC2046
    (cd "$DL/nss" && apt-get $(apt_opts sid) download -qq libnss3 libnss3-tools)
    debian_version sid binary libnss3 >"$STATE/nss.debver"
}
for peer in "${TODO[@]}"; do
    case $peer in
        wolfssl) args=(download_source wolfssl sid wolfssl) ;;
        mbedtls) args=(download_source mbedtls sid mbedtls) ;;
        wolfssl-5.5.4) args=(download_source wolfssl-5.5.4 bookworm-src wolfssl) ;;
        nss) args=(download_nss) ;;
    esac
    rc=0
    logged "$LOGS/$peer.log" "${args[@]}" &
    wait $! || rc=$?
    if [ $rc -ne 0 ]; then fail "$peer" "$(why "$peer" $rc)"; drop_todo "$peer"; fi
done

# Builds, in parallel: the configure steps are single-threaded, so two at once use both cores.
declare -A PIDS=()
for peer in "${TODO[@]}"; do
    debver=$(cat "$STATE/$peer.debver")
    case $peer in
        wolfssl) args=(build_wolfssl wolfssl "$DL/wolfssl" "$debver" "") ;;
        wolfssl-5.5.4) args=(build_wolfssl wolfssl-5.5.4 "$DL/wolfssl-5.5.4" "$debver"
                             "-DDTLS_CID_MAX_SIZE=16") ;;
        mbedtls) args=(build_mbedtls mbedtls "$DL/mbedtls" "$debver") ;;
        nss) args=(install_nss nss "$DL/nss" "$debver") ;;
    esac
    say "installing $peer $debver (log: $LOGS/$peer.log)"
    run_peer "$peer" "${args[@]}" &
    PIDS[$peer]=$!
done
for peer in "${!PIDS[@]}"; do
    wait "${PIDS[$peer]}"
    [ ! -f "$STATE/$peer.failed" ] || FAILED+=("$peer")
done

# wolfSSL 5.5.4 must really be 5.5.4 (bookworm could move on; the tests name it so).
if [ -f "$STAMPS/wolfssl-5.5.4.json" ] && [ "$(stamp_version wolfssl-5.5.4)" != 5.5.4 ]; then
    fail wolfssl-5.5.4 "bookworm serves wolfSSL $(stamp_version wolfssl-5.5.4), not 5.5.4"
fi

# ---------------------------------------------------------------------------------------------
# peers.json: every stamped peer, whatever happened in this run.
"$PYTHON" - "$STAMPS" "$CACHE/peers.json" <<'EOF'
import json, os, sys
stamps, out = sys.argv[1:]
peers = {}
for name in sorted(os.listdir(stamps)):
    if name.endswith(".json"):
        with open(os.path.join(stamps, name)) as f:
            peers[name[: -len(".json")]] = json.load(f)
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(peers, f, indent=2, sort_keys=True)
    f.write("\n")
os.replace(tmp, out)
EOF
rm -rf "$STATE"

say "wrote $CACHE/peers.json in $((SECONDS - START)) s"
if [ ${#FAILED[@]} -gt 0 ]; then
    say "FAILED: $(printf '%s\n' "${FAILED[@]}" | sort -u | tr '\n' ' ')"
    exit 1
fi
