#!/usr/bin/env bash
# Build the pinned Pulumi toolchain from the Go module proxy and install it into
# <repo>/.tools/bin:
#   pulumi                          CLI (pkg/v3, version stamped via ldflags)
#   pulumi-language-python          Python language host
#   pulumi-language-python-exec     upstream shim the host runs the program with
#   pulumi-resource-pulumi-python   upstream launcher for Python dynamic providers
#
# Pins live in scripts/tools/*/go.mod + go.sum (see scripts/tools/README.md); the
# pip pin `pulumi==X` in requirements.txt must equal the CLI's pkg/v3 version.
#
# Fast paths, in order:
#   1. .tools/bin is complete and .tools/stamp holds the current key -> nothing to do
#   2. ${XDG_CACHE_HOME:-~/.cache}/cephkvm-tools/<key>/ is complete -> copy from there
#      (a fresh clone on the same machine, e.g. CI, takes this path)
#   3. otherwise build (several minutes cold on 2 cores; Go's caches help later)
#
# Environment for users of the tools (the Makefile sets these):
#   PATH=<repo>/.venv/bin:<repo>/.tools/bin:$PATH   (venv first: the language host
#        runs the first python3 on PATH; it ignores Pulumi.yaml options.virtualenv)
#   PULUMI_HOME=<repo>/.tools/pulumi-home
#   PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
#   PULUMI_SKIP_UPDATE_CHECK=true
#   PULUMI_CONFIG_PASSPHRASE=... and PULUMI_BACKEND_URL=file://... (tests)
set -euo pipefail

# Bump when the way binaries are built/installed changes (invalidates caches).
RECIPE_REV=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$ROOT/scripts/tools"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMP="$TOOLS/stamp"
CLI_MOD="$SRC/pulumi-cli"
LANG_MOD="$SRC/pulumi-language-python"
BINARIES=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)

say() { printf 'setup-tools: %s\n' "$*"; }
die() { printf 'setup-tools: ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "'go' not found on PATH (Go >= 1.26 is needed to build the Pulumi CLI)"

# Version of a module as required in a wrapper go.mod.
modver() { awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"; }

PULUMI_VERSION=$(modver "$CLI_MOD" github.com/pulumi/pulumi/pkg/v3)
SDK_VERSION=$(modver "$CLI_MOD" github.com/pulumi/pulumi/sdk/v3)
LANGHOST_VERSION=$(modver "$LANG_MOD" github.com/pulumi/pulumi/sdk/v3)
[ -n "$PULUMI_VERSION" ] && [ -n "$LANGHOST_VERSION" ] || die "cannot read pinned versions from $SRC/*/go.mod"
[ "$PULUMI_VERSION" = "$SDK_VERSION" ] || die "pkg/v3 ($PULUMI_VERSION) and sdk/v3 ($SDK_VERSION) pins differ in $CLI_MOD/go.mod"

GO_VERSION=$(go env GOVERSION)
HASH=$( { echo "rev=$RECIPE_REV go=$GO_VERSION $(go env GOOS)/$(go env GOARCH)";
          cat "$CLI_MOD/go.mod" "$CLI_MOD/go.sum" "$LANG_MOD/go.mod" "$LANG_MOD/go.sum"; } \
        | sha256sum | cut -c1-16)
KEY="pulumi-$PULUMI_VERSION-$HASH"

complete_in() {  # complete_in DIR: all binaries present and executable
    local b
    for b in "${BINARIES[@]}"; do [ -x "$1/$b" ] || return 1; done
}

# The engine's automatic log: every verbose message of every run, gzip'd into
# $PULUMI_HOME/logs (up to 500 MB). It took 40% of the engine's CPU in an unchanged
# preview of 50 nodes and 500 VMs (bench/README.md). With `logs` not a directory the
# engine skips it; `-v=9 --logtostderr` still shows everything. CEPHKVM_ENGINE_LOG=keep
# keeps it.
engine_log() {
    local logs="$TOOLS/pulumi-home/logs"
    mkdir -p "$TOOLS/pulumi-home"
    if [ "${CEPHKVM_ENGINE_LOG:-}" = keep ]; then
        if [ -L "$logs" ]; then rm -f "$logs"; fi
    elif [ ! -L "$logs" ]; then
        rm -rf "$logs"
        ln -s /dev/null "$logs"
    fi
}
engine_log

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && complete_in "$BIN"; then
    say "up to date ($KEY) in $BIN"
    exit 0
fi

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/cephkvm-tools"
CACHE="$CACHE_ROOT/$KEY"
mkdir -p "$CACHE_ROOT"

# Serialise concurrent runs on this machine (two clones building at once).
exec 9>"$CACHE_ROOT/.lock"
command -v flock >/dev/null 2>&1 && flock 9

build() {
    local out="$1" jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    [ "$jobs" -gt 2 ] && jobs=2
    export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

    say "building pulumi $PULUMI_VERSION (cold: several minutes on 2 cores)"
    (cd "$CLI_MOD" && go build -trimpath -p "$jobs" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
        -o "$out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) \
        || die "building pulumi failed (see the go error above)"

    say "building pulumi-language-python (from sdk/v3 $LANGHOST_VERSION)"
    (cd "$LANG_MOD" && go build -trimpath -p "$jobs" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGHOST_VERSION" \
        -o "$out/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python) \
        || die "building pulumi-language-python failed (see the go error above)"

    # Upstream helper scripts, from the sdk/v3 module at the CLI's version (they
    # call into the pip-installed pulumi package of that same version).
    local sdkdir
    sdkdir=$(cd "$CLI_MOD" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3) \
        || die "cannot locate github.com/pulumi/pulumi/sdk/v3@$SDK_VERSION in the module cache"
    [ -f "$sdkdir/python/cmd/pulumi-language-python-exec" ] || die "missing $sdkdir/python/cmd/pulumi-language-python-exec"
    [ -f "$sdkdir/python/dist/pulumi-resource-pulumi-python" ] || die "missing $sdkdir/python/dist/pulumi-resource-pulumi-python"
    install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$out/pulumi-language-python-exec"
    install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$out/pulumi-resource-pulumi-python"

    local got
    got=$("$out/pulumi" version) || die "built pulumi does not run"
    [ "$got" = "$PULUMI_VERSION" ] || die "built pulumi reports '$got', expected $PULUMI_VERSION"
}

if complete_in "$CACHE" && [ -f "$CACHE/.complete" ]; then
    say "using cached build $CACHE"
else
    start=$(date +%s)
    tmp=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp"
    touch "$tmp/.complete"
    rm -rf "$CACHE"
    mv "$tmp" "$CACHE"
    trap - EXIT
    say "built in $(( $(date +%s) - start ))s, cached in $CACHE"
fi

mkdir -p "$BIN" "$TOOLS/pulumi-home"
for b in "${BINARIES[@]}"; do
    cp -f "$CACHE/$b" "$BIN/$b.tmp" && mv -f "$BIN/$b.tmp" "$BIN/$b"
done
echo "$KEY" > "$STAMP"
say "installed pulumi $("$BIN/pulumi" version), pulumi-language-python (sdk $LANGHOST_VERSION) into $BIN"
say "note: the 'command' resource plugin (pulumi-command) is not built: its Go module is not served by the Go module proxy (scripts/tools/README.md)"
