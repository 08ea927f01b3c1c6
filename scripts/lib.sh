# shellcheck shell=bash
# Shared by the scripts in this folder (source it; it defines functions only).

# The container engine: $CONTAINER_ENGINE, else docker when its daemon answers, else podman.
maestro_engine() {
    if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
        printf '%s\n' "$CONTAINER_ENGINE"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo podman
    fi
}
