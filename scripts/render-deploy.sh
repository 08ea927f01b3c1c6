#!/usr/bin/env bash
# render-deploy.sh - render deploy/ from examples/services.yml with `maestro export`.
#
# deploy/<target>[-split]/ holds what `maestro export kubernetes|compose [--split]`
# writes for the three examples; tests/delivery/test_export.py fails when it is out of date.
# Runs this checkout's code in a clean environment (no SERVICES/SVC_* from the caller).
#
# Usage: scripts/render-deploy.sh    (PYTHON: the interpreter, default python3)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(command -v "${PYTHON:-python3}")"
maestro() {
    env -i PATH="$PATH" LANG=C.UTF-8 PYTHONPATH="$REPO_ROOT" \
        MAESTRO_SERVICES_FILE="$REPO_ROOT/examples/services.yml" \
        "$PY" -c 'import sys; from maestro_runtime.cli import maestro; sys.exit(maestro())' "$@"
}
for target in kubernetes compose; do
    rm -rf "$REPO_ROOT/deploy/$target" "$REPO_ROOT/deploy/$target-split"
    maestro export "$target" --output "$REPO_ROOT/deploy/$target" 2>/dev/null
    maestro export "$target" --split --output "$REPO_ROOT/deploy/$target-split" 2>/dev/null
done
echo "rendered deploy/ from examples/services.yml"
