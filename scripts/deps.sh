#!/usr/bin/env bash
# Installs what TurboChat needs to build (and, with --test, to test) from
# Debian 12's own archive, adding only what is missing; silent when nothing is.
# The Debian mirror is taken from this machine's apt configuration (apt-get
# indextargets, so deb822 .sources and one-line .list both work); no host name
# is written here.
#   scripts/deps.sh            build packages + CivetWeb source in .deps/civetweb
#   scripts/deps.sh --test     also valkey-server (from <codename>-backports),
#                              chromium, nginx, node/npm, openssl and tests/node_modules
# Run as root to install. Without root, when something is missing, it prints
# the exact commands to run and exits 1.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
want_test=0
case "${1:-}" in
"") ;;
--test) want_test=1 ;;
-h | --help)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--test]" >&2
    exit 2
    ;;
esac

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC1091
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
codename=${codename:-bookworm}
backports=$codename-backports

build_pkgs=(build-essential cmake pkg-config libhiredis-dev libssl-dev libcjson-dev libargon2-dev
    libsqlite3-dev dpkg-dev patch ca-certificates openssl)
test_pkgs=(chromium fonts-dejavu-core fonts-noto-color-emoji openssl ca-certificates clang-format
    clang libclang-rt-dev # clang and its libFuzzer/sanitizer runtimes: make fuzz-smoke
    nginx python3-yaml    # deploy/: nginx.conf run in front of a cluster, compose file parsed
    sqlite3)              # the crash tests' PRAGMA integrity_check on a killed node's database
backports_pkgs=(valkey-server) # not in bookworm itself
civetweb_cache=${TURBOCHAT_CIVETWEB_CACHE:-$here/.deps/civetweb}
our_sources=/etc/apt/sources.list.d/turbochat.sources
apt_lock=(-o DPkg::Lock::Timeout=600) # wait for another apt run instead of failing
apt_opts=(-y -qq --no-install-recommends -o Dpkg::Use-Pty=0)

log() { echo "deps: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            echo "$p"
    done
}

# "TYPE URI RELEASE" for every configured apt target (deb and deb-src).
apt_targets() {
    # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
    apt-get indextargets --no-release-info \
        --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' 2>/dev/null | sort -u
}

has_target() { # type release
    apt_targets | awk -v t="$1" -v r="$2" '$1 == t && $3 == r {f = 1} END {exit !f}'
}

# The URI of the machine's main Debian archive: the deb entry for $codename.
debian_mirror() {
    local uri
    uri=$(apt_targets | awk -v r="$codename" '$1 == "deb" && $3 == r {print $2; exit}')
    if [ -z "$uri" ]; then # apt too old for indextargets: read one-line and deb822 files
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v r="$codename" '$1 == "deb" {
                    for (i = 2; i < NF; i++) if ($i ~ /:\/\// && $(i + 1) == r) {print $i; exit}}')
    fi
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk -v r="$codename" '
                /^[ \t]*$/ {if (deb && suite && u) {print u; exit} deb = suite = 0; u = ""}
                /^Types:/ {for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1}
                /^URIs:/ {u = $2}
                /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == r) suite = 1}
                END {if (deb && suite && u) print u}' | head -n1)
    fi
    [ -n "$uri" ] || {
        log "no deb entry for $codename in the apt sources; cannot locate the Debian mirror"
        exit 1
    }
    echo "${uri%/}"
}

# --------------------------------------------------------------- what is missing ---
# Space-separated package lists.
wanted=("${build_pkgs[@]}")
missing_bpo=
if [ $want_test = 1 ]; then
    wanted+=("${test_pkgs[@]}")
    # node and npm may come from elsewhere (e.g. NodeSource); only the commands matter.
    command -v node >/dev/null || wanted+=(nodejs)
    command -v npm >/dev/null || wanted+=(npm)
    missing_bpo=$(missing_pkgs "${backports_pkgs[@]}" | tr '\n' ' ')
fi
missing_main=$(missing_pkgs "${wanted[@]}" | sort -u | tr '\n' ' ')
missing_main=${missing_main% } missing_bpo=${missing_bpo% }
need_civetweb=0
[ -f "$civetweb_cache/src/civetweb.c" ] && [ -f "$civetweb_cache/include/civetweb.h" ] ||
    need_civetweb=1

# Sources this run needs that the machine lacks: deb-src (CivetWeb) and backports.
need_src=0 need_bpo_src=0
[ $need_civetweb = 1 ] && ! has_target deb-src "$codename" && need_src=1
[ -n "$missing_bpo" ] && ! has_target deb "$backports" && need_bpo_src=1

if [ -n "$missing_main$missing_bpo" ] || [ $need_src = 1 ] || [ $need_bpo_src = 1 ]; then
    if ! is_root; then
        log "missing:${missing_main:+ $missing_main}${missing_bpo:+ $missing_bpo ($backports)}"
        if [ $need_src = 1 ] || [ $need_bpo_src = 1 ]; then
            log "the apt sources also lack$([ $need_src = 1 ] && echo " deb-src $codename")$([ $need_bpo_src = 1 ] && echo " $backports"); run as root:"
            echo "  sudo $0${1:+ $1}" >&2
        else
            log "run:"
            echo "  sudo apt-get update" >&2
            [ -n "$missing_main" ] &&
                echo "  sudo apt-get install ${apt_opts[*]} $missing_main" >&2
            [ -n "$missing_bpo" ] &&
                echo "  sudo apt-get install ${apt_opts[*]} -t $backports $missing_bpo" >&2
        fi
        exit 1
    fi

    # ------------------------------------------------------------ apt sources ---
    if [ $need_src = 1 ] || [ $need_bpo_src = 1 ]; then
        mirror=$(debian_mirror)
        # Keep whatever our file already provides, add what is needed now.
        grep -qs '^Types: deb-src' "$our_sources" && need_src=1
        grep -qs "^Suites: $backports" "$our_sources" && need_bpo_src=1
        stanza() { # types suite
            printf 'Types: %s\nURIs: %s\nSuites: %s\nComponents: main\n' "$1" "$mirror" "$2"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        }
        {
            if [ $need_src = 1 ]; then stanza deb-src "$codename"; fi
            if [ $need_src = 1 ] && [ $need_bpo_src = 1 ]; then echo; fi
            if [ $need_bpo_src = 1 ]; then stanza deb "$backports"; fi
        } >"$our_sources"
        log "wrote $our_sources ($mirror)"
    fi
    log "apt-get update"
    apt-get update -qq "${apt_lock[@]}"
    if [ -n "$missing_main" ]; then
        log "installing $missing_main"
        # shellcheck disable=SC2086
        apt-get install "${apt_opts[@]}" "${apt_lock[@]}" $missing_main >/dev/null
    fi
    if [ -n "$missing_bpo" ]; then
        # Only these come from backports; -t lets their dependencies follow.
        log "installing $missing_bpo from $backports"
        # shellcheck disable=SC2086
        apt-get install "${apt_opts[@]}" "${apt_lock[@]}" -t "$backports" $missing_bpo >/dev/null
    fi
    updated=1
fi

# ------------------------------------------------------------- CivetWeb source ---
# Debian's source package, with Debian's patches applied; CMakeLists.txt
# compiles src/civetweb.c from it. apt verifies the downloaded files' hashes
# against the signed Release file, so the .dsc signature check is skipped.
fetch_civetweb() {
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/turbochat-civetweb.XXXXXX")
    # apt downloads as the unprivileged _apt user; let it write here.
    if is_root && id _apt >/dev/null 2>&1; then
        chown _apt "$tmp"
    fi
    if ! (cd "$tmp" && apt-get source -qq --download-only "civetweb/$codename" >/dev/null); then
        if is_root && [ -z "${updated:-}" ]; then
            apt-get update -qq "${apt_lock[@]}"
            (cd "$tmp" && apt-get source -qq --download-only "civetweb/$codename" >/dev/null)
        else
            rm -rf "$tmp"
            log "apt-get source civetweb failed (is there a deb-src entry for $codename?)"
            exit 1
        fi
    fi
    (cd "$tmp" && dpkg-source --no-check -x ./civetweb_*.dsc src >/dev/null)
    mkdir -p "$(dirname "$civetweb_cache")"
    rm -rf "$civetweb_cache"
    mv "$tmp/src" "$civetweb_cache"
    rm -rf "$tmp"
    log "CivetWeb $(dpkg-parsechangelog -l "$civetweb_cache/debian/changelog" -S Version) source in $civetweb_cache"
}
[ $need_civetweb = 1 ] && fetch_civetweb

# ------------------------------------------------------------------ test tools ---
if [ $want_test = 1 ]; then
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$node_major" -lt 20 ]; then
        log "node $(node --version) is too old: the tests need node >= 20 (node --test flags)"
        exit 1
    fi
    tests=$here/tests
    if [ -f "$tests/package.json" ]; then
        stamp=$tests/node_modules/.package-lock.json # npm rewrites it on every install
        if [ ! -f "$stamp" ] || [ "$tests/package.json" -nt "$stamp" ] ||
            { [ -f "$tests/package-lock.json" ] && [ "$tests/package-lock.json" -nt "$stamp" ]; }; then
            log "npm packages in tests/"
            npm_opts=(--no-audit --no-fund --loglevel=error)
            if [ -f "$tests/package-lock.json" ]; then
                (cd "$tests" && npm ci "${npm_opts[@]}") || {
                    log "npm ci failed (lock file out of date?); trying npm install"
                    (cd "$tests" && npm install "${npm_opts[@]}")
                }
            else
                (cd "$tests" && npm install "${npm_opts[@]}")
            fi
            mkdir -p "$tests/node_modules" && touch "$stamp"
        fi
    fi
fi
