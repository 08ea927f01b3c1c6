#!/usr/bin/env bash
# build-image.sh - build the maestro-runtime image with docker or podman.
#
# 1. Makes sure the base image exists: present locally -> use it; else pull it;
#    if it cannot be pulled (no registry) and it is debian:trixie-slim, build
#    it locally with scripts/build-base-image.sh (debootstrap).
# 2. Builds the Dockerfile: podman gets `--format docker` (else HEALTHCHECK is
#    dropped) and `--network=host`; OCI labels get the version, git revision
#    and date.
#
# Usage: scripts/build-image.sh [extra build args...]
#
# Environment:
#   CONTAINER_ENGINE  podman | docker (default: docker if its daemon answers, else podman)
#   CONTAINERS_CONF   podman config (default: <repo>/config/containers.conf)
#   IMAGE             tag to build (default maestro-runtime:latest)
#   BASE_IMAGE        base image (default debian:trixie-slim)
#   BUILD_ARGS        extra arguments for `<engine> build`, word-split
set -euo pipefail

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-maestro-runtime:latest}"
BASE_IMAGE="${BASE_IMAGE:-debian:trixie-slim}"

# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
ENGINE="$(maestro_engine)"
command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE not found: run scripts/ensure-engine.sh first"
IS_PODMAN=0
if [[ "$(basename "$ENGINE")" == podman ]]; then
    IS_PODMAN=1
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/config/containers.conf}"
fi

# --- base image ---------------------------------------------------------------
if "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE: present"
elif "$ENGINE" pull "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE: pulled"
else
    case "$BASE_IMAGE" in
        debian:trixie-slim | docker.io/library/debian:trixie-slim)
            log "base image $BASE_IMAGE cannot be pulled: building it locally (debootstrap)"
            CONTAINER_ENGINE="$ENGINE" BASE_IMAGE=docker.io/library/debian:trixie-slim \
                "$REPO_ROOT/scripts/build-base-image.sh" ;;
        *) die "base image $BASE_IMAGE is not present and cannot be pulled" ;;
    esac
fi

# --- build ----------------------------------------------------------------------
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml" | head -n 1)"
revision="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
args=(build -t "$IMAGE" -f "$REPO_ROOT/Dockerfile"
      --build-arg "BASE_IMAGE=$BASE_IMAGE"
      --build-arg "VERSION=${version:-0.0.0}"
      --build-arg "REVISION=$revision"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
if [[ "$IS_PODMAN" -eq 1 ]]; then
    args+=(--format docker --network=host)
fi
# shellcheck disable=SC2206  # BUILD_ARGS is a word list on purpose
extra=(${BUILD_ARGS:-})
start=$SECONDS
log "$ENGINE ${args[*]} ${extra[*]} $* $REPO_ROOT"
"$ENGINE" "${args[@]}" "${extra[@]}" "$@" "$REPO_ROOT"
size="$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" 2>/dev/null || echo 0)"
log "built $IMAGE in $((SECONDS - start))s ($((size / 1000000)) MB)"
