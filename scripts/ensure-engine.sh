#!/usr/bin/env bash
# ensure-engine.sh - make a working container engine available on this machine.
#
# Called by .ci/run and `make demo` on a fresh machine; safe to run repeatedly
# (a no-op check of about a second once everything is in place). It:
#   1. apt-installs podman, runc, debootstrap and uidmap if any is missing
#      (runc explicitly: podman's default crun refuses this hybrid cgroup host);
#   2. points podman at the repo's config/containers.conf (never edits /etc);
#   3. builds the local base image debian:bookworm-slim with
#      scripts/build-base-image.sh if it is not there (no registry needed);
#   4. proves the engine works: `<engine> run --rm <base image> true`.
#
# Usage: scripts/ensure-engine.sh [--rebuild-base] [--help]
#   eval "$(scripts/ensure-engine.sh)"   # also sets the variables in your shell
#
# Progress goes to stderr; stdout carries only `export VAR=...` lines, so the
# script itself exports nothing but can be eval'ed.
#
# Environment: CONTAINER_ENGINE (podman | docker; default docker if its daemon
# answers, else podman), CONTAINERS_CONF, BASE_IMAGE - as in build-base-image.sh.
set -euo pipefail

log() { printf '[ensure-engine] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

REBUILD_BASE=()
for arg in "$@"; do
    case "$arg" in
        --rebuild-base) REBUILD_BASE=(--force) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}"
export BASE_IMAGE
T0=$SECONDS

# --- 1. packages --------------------------------------------------------------
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
ENGINE="$(maestro_engine)"

packages=(debootstrap)
if [[ "$(basename "$ENGINE")" == podman ]]; then
    packages+=(podman runc uidmap)
fi

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get: install them with your package manager"
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}: run as root or install sudo"
        SUDO=(sudo)
    fi
    log "installing: ${missing[*]} (apt-get update first)"
    start=$SECONDS
    apt_log="$(mktemp)"
    trap 'rm -f "$apt_log"' EXIT
    if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
           && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } \
           >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get failed installing ${missing[*]}"
    fi
    log "installed in $((SECONDS - start))s"
else
    log "packages present: ${packages[*]}"
fi

command -v "$ENGINE" >/dev/null 2>&1 || die "engine $ENGINE not found after install"

# --- 2. configuration -----------------------------------------------------------
exports=(CONTAINER_ENGINE)
if [[ "$(basename "$ENGINE")" == podman ]]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/config/containers.conf}"
    [[ -r "$CONTAINERS_CONF" ]] || die "CONTAINERS_CONF=$CONTAINERS_CONF is not readable"
    exports+=(CONTAINERS_CONF)
    runtime="$("$ENGINE" info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null)" \
        || die "'$ENGINE info' failed with CONTAINERS_CONF=$CONTAINERS_CONF"
    log "$("$ENGINE" --version), runtime $runtime, CONTAINERS_CONF=$CONTAINERS_CONF"
else
    log "$("$ENGINE" --version)"
fi
export CONTAINER_ENGINE="$ENGINE"

# --- 3. base image --------------------------------------------------------------
"$REPO_ROOT/scripts/build-base-image.sh" "${REBUILD_BASE[@]}"

# --- 4. smoke test ----------------------------------------------------------------
log "checking: $ENGINE run --rm $BASE_IMAGE true"
if ! out="$("$ENGINE" run --rm "$BASE_IMAGE" true 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "the engine cannot run a container; see docs/container-engine.md"
fi
log "container engine ready in $((SECONDS - T0))s. In your shell:"
for name in "${exports[@]}"; do
    line="$(printf 'export %s=%q' "$name" "${!name}")"
    log "  $line"
    printf '%s\n' "$line"
done
