#!/usr/bin/env bash
# demo.sh - `make demo`: build the image, run the three examples in it, print the URLs.
#
# Works on a machine with no Docker daemon and no registry: the engine (podman)
# and the Debian base image are set up by scripts/ensure-engine.sh.
#
#   1. engine: docker if its daemon answers, else podman (installed if missing);
#   2. image: scripts/build-image.sh (skipped with DEMO_SKIP_BUILD=1);
#   3. the examples/ folders are copied into the volume <name>-projects and
#      mounted at /opt/projects: pre-seeded projects, one UNIX user each;
#   4. waits until every service is RUNNING, answers HTTP and the HEALTHCHECK
#      passes; prints list-services, the URLs and how to stop.
#
# Usage: scripts/demo.sh [--smoke]
#   --smoke  also check every URL from the host, stop the container (SIGTERM),
#            require exit status 0, and remove it: a self-test, as `make smoke`.
#
# Environment: IMAGE (maestro-runtime:latest), DEMO_NAME (maestro-demo),
# DEMO_BIND (127.0.0.1), DEMO_PORT (8001: first of three consecutive host ports),
# DEMO_TIMEOUT (90 s), CONTAINER_ENGINE, CONTAINERS_CONF, DEMO_SKIP_BUILD.
set -euo pipefail

log() { printf '[demo] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-maestro-runtime:latest}"
NAME="${DEMO_NAME:-maestro-demo}"
BIND="${DEMO_BIND:-127.0.0.1}"
HOST_PORT="${DEMO_PORT:-8001}"
TIMEOUT="${DEMO_TIMEOUT:-90}"
VOLUME="$NAME-projects"
# name -> container port, as in examples/*/.maestro-port
EXAMPLES=(python-api node-app static-site)
T0=$SECONDS

# --- 1. engine ----------------------------------------------------------------------
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
if [[ "$(maestro_engine)" == podman ]]; then
    eval "$("$REPO_ROOT/scripts/ensure-engine.sh")"  # installs podman and the base image when missing
fi
ENGINE="$(maestro_engine)"
IS_PODMAN=0
if [[ "$(basename "$ENGINE")" == podman ]]; then
    IS_PODMAN=1
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/config/containers.conf}"
fi
export CONTAINER_ENGINE="$ENGINE"
log "engine: $ENGINE"

# --- 2. image -----------------------------------------------------------------------
if [[ "${DEMO_SKIP_BUILD:-0}" != 1 ]]; then
    IMAGE="$IMAGE" "$REPO_ROOT/scripts/build-image.sh"
fi

# --- 3. projects volume + container ------------------------------------------------
"$ENGINE" rm -f -v "$NAME" >/dev/null 2>&1 || true
"$ENGINE" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
"$ENGINE" volume create "$VOLUME" >/dev/null
# (podman without systemd logs that it cannot schedule periodic health checks, for this copy
# and for the container below: filtered out, this script runs the checks itself.)
errs="$(mktemp)"
trap 'rm -f "$errs"' EXIT
"$ENGINE" run --rm --entrypoint /bin/cp -v "$REPO_ROOT/examples:/src:ro" -v "$VOLUME:/opt/projects" \
    "$IMAGE" -R /src/python-api /src/node-app /src/static-site /opt/projects/ 2>"$errs" \
    || { cat "$errs" >&2; die "copying the examples into $VOLUME failed"; }
grep -v systemd "$errs" >&2 || true

publish=()
for i in "${!EXAMPLES[@]}"; do
    publish+=(-p "$BIND:$((HOST_PORT + i)):$((8001 + i))")
done
log "starting $NAME"
boot=$SECONDS
"$ENGINE" run -d --name "$NAME" --hostname "$NAME" "${publish[@]}" \
    -v "$VOLUME:/opt/projects" "$IMAGE" >/dev/null 2>"$errs" || { cat "$errs" >&2; die "$ENGINE run failed"; }
grep -v systemd "$errs" >&2 || true

# --- 4. wait until healthy ----------------------------------------------------------
ALL_RUNNING='
import json, sys
services = json.load(sys.stdin)
sys.exit(0 if len(services) == 3 and all(s["status"] == "RUNNING" for s in services) else 1)'
all_running() {
    # shellcheck disable=SC2016  # $1 is expanded by the container's sh
    "$ENGINE" exec "$NAME" sh -c 'list-services --json 2>/dev/null | python3 -c "$1"' sh "$ALL_RUNNING"
}
healthcheck() {
    if [[ "$IS_PODMAN" -eq 1 ]]; then
        "$ENGINE" healthcheck run "$NAME" >/dev/null 2>&1   # also records the status
    else
        "$ENGINE" exec "$NAME" /usr/bin/python3 -I -S /opt/maestro/healthcheck/healthcheck.py >/dev/null 2>&1
    fi
}
http_status() {  # host side, no curl needed: bash's /dev/tcp
    local port=$1 line
    exec 3<>"/dev/tcp/$BIND/$port" || return 1
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$BIND" >&3
    IFS= read -r -t 5 line <&3 || true
    exec 3<&-
    printf '%s\n' "$line" | awk '{ print $2 }'
}
answering() {
    local i
    for i in "${!EXAMPLES[@]}"; do
        [[ "$(http_status $((HOST_PORT + i)) 2>/dev/null)" == 200 ]] || return 1
    done
}
deadline=$((SECONDS + TIMEOUT))
until all_running && answering && healthcheck; do
    if [[ "$("$ENGINE" inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]]; then
        "$ENGINE" logs "$NAME" >&2 || true
        die "container $NAME exited"
    fi
    if (( SECONDS > deadline )); then
        "$ENGINE" logs "$NAME" 2>&1 | tail -n 40 >&2 || true
        "$ENGINE" exec "$NAME" list-services >&2 || true
        die "not healthy after ${TIMEOUT}s"
    fi
    sleep 1
done
if [[ "$IS_PODMAN" -eq 1 ]]; then
    status="$("$ENGINE" inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo unknown)"
else
    status="healthcheck passes (docker reports healthy at its first periodic check)"
fi
log "healthy: $status (boot to healthy $((SECONDS - boot))s, total $((SECONDS - T0))s)"

echo
"$ENGINE" exec "$NAME" list-services
echo
echo "maestro-runtime demo is running in container '$NAME' ($ENGINE):"
for i in "${!EXAMPLES[@]}"; do
    printf '  %-12s http://%s:%d/\n' "${EXAMPLES[$i]}" "$BIND" $((HOST_PORT + i))
done
echo
echo "  operator commands:  $ENGINE exec $NAME list-services"
echo "                      $ENGINE exec -it $NAME deploy"
echo "  health:             $( [[ $IS_PODMAN -eq 1 ]] && echo "podman healthcheck run $NAME" || echo "docker inspect -f '{{.State.Health.Status}}' $NAME")"
echo "  logs:               $ENGINE logs -f $NAME"
# make demo-stop (README) removes the container and its volume; make clean would also remove the image.
stop_cmd="make demo-stop"
[[ "$NAME" == maestro-demo ]] || stop_cmd+=" DEMO_NAME=$NAME"
echo "  stop:               $stop_cmd   (or: $ENGINE rm -f -v $NAME; $ENGINE volume rm $VOLUME)"

if [[ "$SMOKE" -eq 1 ]]; then
    log "smoke: stopping $NAME with SIGTERM"
    stop_start=$SECONDS
    "$ENGINE" stop -t 15 "$NAME" >/dev/null 2>"$errs" || { cat "$errs" >&2; die "$ENGINE stop failed"; }
    code="$("$ENGINE" inspect -f '{{.State.ExitCode}}' "$NAME")"
    "$ENGINE" rm -f -v "$NAME" >/dev/null 2>&1 || true
    "$ENGINE" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    [[ "$code" == 0 ]] || die "smoke: container exited with $code"
    log "smoke OK: 3 examples answered, healthy, stopped in $((SECONDS - stop_start))s with exit status 0"
fi
