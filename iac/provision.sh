#!/usr/bin/env bash
# provision.sh - run maestro-runtime on this Docker host with Terraform, in one command.
#
# Usage: iac/provision.sh [apply] [options]     ask for what is missing, write
#                                                iac/terraform/generated.auto.tfvars,
#                                                terraform init + apply, print the outputs
#        iac/provision.sh destroy [options]     remove the container and its volumes
#
# Options:
#   --name NAME          container name (default maestro)           env PROVISION_NAME
#   --repo SOURCE        a git URL, archive URL or host folder; repeat it for each
#                        service                                     env PROVISION_REPOS (space-separated)
#   --port PORT          the port of the --repo at the same position; repeat it
#                        (default 8000, 8001, ...)                   env PROVISION_PORTS (space or comma)
#   --image IMAGE        the image (default: the module's)           env PROVISION_IMAGE
#   --non-interactive    never ask: flags, env and defaults only; terraform runs
#                        with -auto-approve                          env PROVISION_NON_INTERACTIVE=1
#   -h, --help           this text
#
# Needs terraform (1.3 or newer) and docker or podman (podman: its Docker-compatible
# socket, exported as DOCKER_HOST). Values are written as HCL strings with every
# special character escaped, so Terraform reads back exactly what was typed.
set -euo pipefail
shopt -s inherit_errexit

PROG=provision.sh
TF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/terraform"
TFVARS="$TF_DIR/generated.auto.tfvars"
NAME_RE='^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$'   # what docker accepts as a container name

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------- HCL strings

# hcl_string VALUE: sets HCL to VALUE as a quoted HCL string that Terraform reads back
# unchanged; returns 1 (HCL unset) for control characters other than line breaks and tabs.
# Backslashes and quotes are escaped, line breaks and tabs become \n \r \t, and the
# template sequences ${ and %{ are doubled ($${ and %%{) so they stay literal text.
hcl_string() {
    local s=$1
    local rest=${s//[$'\n\r\t']/}
    HCL=
    if [[ "$rest" == *[[:cntrl:]]* ]]; then
        return 1
    fi
    s=${s//"\\"/"\\\\"}
    s=${s//"\""/"\\\""}
    s=${s//$'\n'/"\\n"}
    s=${s//$'\r'/"\\r"}
    s=${s//$'\t'/"\\t"}
    s=${s//"\${"/"\$\${"}
    s=${s//"%{"/"%%{"}
    HCL="\"$s\""
}

quoted() {  # quoted FIELD VALUE: hcl_string, or a clear error naming the field
    hcl_string "$2" || die "$1: contains control characters other than line breaks and tabs: $(printf '%q' "$2")"
}

# ---------------------------------------------------------------- tools

engine_check() {
    # As the Makefile does: docker when its daemon answers, else podman (a docker CLI without a
    # daemon beside podman is common), else say which is missing.
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        return 0
    elif command -v podman >/dev/null 2>&1; then
        [[ -n "${DOCKER_HOST:-}" ]] || say "note: with podman, Terraform talks to its Docker-compatible socket:" \
            "run 'systemctl enable --now podman.socket' and export DOCKER_HOST=unix:///run/podman/podman.sock"
    elif command -v docker >/dev/null 2>&1; then
        die "docker is installed but does not answer: start its daemon (or add yourself to the docker group) and run again"
    else
        die "neither docker nor podman is installed: install one of them and run again"
    fi
}

tools_check() {
    command -v terraform >/dev/null 2>&1 \
        || die "terraform is not installed: install terraform 1.3 or newer (see iac/README.md) and run again"
    engine_check
}

# ---------------------------------------------------------------- inputs

NAME="${PROVISION_NAME:-}"
IMAGE="${PROVISION_IMAGE:-}"
INTERACTIVE=1
[[ "${PROVISION_NON_INTERACTIVE:-0}" == 1 ]] && INTERACTIVE=0
REPOS=()
PORTS=()
# Split on blanks and line breaks with read, not an unquoted expansion: no globbing of '*' or '?'.
IFS=$' \t\n' read -r -d '' -a REPOS <<<"${PROVISION_REPOS:-}" || true
IFS=$' \t\n,' read -r -d '' -a PORTS <<<"${PROVISION_PORTS:-}" || true

ask() {  # ask PROMPT DEFAULT: one answer line from stdin (the default on an empty line or end of input)
    local answer=""
    printf '%s' "$1${2:+ [$2]}: " >&2
    IFS= read -r answer || true
    printf '%s' "${answer:-$2}"
}

ask_missing() {
    if [[ -z "$NAME" ]]; then
        NAME="$(ask "Container name" maestro)"
    fi
    if [[ ${#REPOS[@]} -eq 0 ]]; then
        say "Repositories to run (git URL, archive URL or host folder), one per line; an empty line ends the list."
        local repo
        while repo="$(ask "Repository $((${#REPOS[@]} + 1))" "")" && [[ -n "$repo" ]]; do
            REPOS+=("$repo")
        done
    fi
    local i
    for i in "${!REPOS[@]}"; do
        if [[ -z "${PORTS[$i]:-}" ]]; then
            PORTS[i]="$(ask "Port for ${REPOS[$i]}" "$((8000 + i))")"
        fi
    done
}

check_inputs() {
    NAME="${NAME:-maestro}"
    [[ "$NAME" =~ $NAME_RE ]] \
        || die "name: $(printf '%q' "$NAME") is not a valid container name (letters, digits, _ . -; at most 63)"
    [[ ${#PORTS[@]} -le ${#REPOS[@]} ]] || die "port: ${#PORTS[@]} ports given for ${#REPOS[@]} repositories"
    local i port seen=" "
    for i in "${!REPOS[@]}"; do
        [[ -n "${REPOS[$i]}" ]] || die "repo: repository $((i + 1)) is empty"
        port="${PORTS[$i]:-$((8000 + i))}"
        if [[ ! "$port" =~ ^[0-9]{1,5}$ ]] || (( 10#$port < 1 || 10#$port > 65535 )); then
            die "port: $(printf '%q' "$port") is not a port number (1-65535)"
        fi
        port=$((10#$port))
        [[ "$seen" != *" $port "* ]] || die "port: $port is given twice"
        seen+="$port "
        PORTS[i]=$port
    done
    [[ ${#REPOS[@]} -gt 0 ]] || say "note: no repositories: the container runs only pre-seeded projects"
}

# ---------------------------------------------------------------- the tfvars file

# render_tfvars: sets TEXT to the whole file (no subshell, so a rejected value stops the script).
render_tfvars() {
    local i ports=""
    TEXT=$'# Written by iac/provision.sh; run it again to change these (they win over terraform.tfvars).\n'
    quoted name "$NAME"
    TEXT+="name  = $HCL"$'\n'
    if [[ -n "$IMAGE" ]]; then
        quoted image "$IMAGE"
        TEXT+="image = $HCL"$'\n'
    fi
    for i in "${!PORTS[@]}"; do
        ports+="${ports:+, }${PORTS[$i]}"
    done
    TEXT+="ports = [$ports]"$'\n\n'  # the blank line keeps `terraform fmt` alignment groups apart
    if [[ ${#REPOS[@]} -eq 0 ]]; then
        TEXT+=$'services = []\n'
        return
    fi
    TEXT+=$'services = [\n'
    for i in "${!REPOS[@]}"; do
        quoted repo "${REPOS[$i]}"
        TEXT+="  { repo = $HCL, port = ${PORTS[$i]} },"$'\n'
    done
    TEXT+=$']\n'
}

write_tfvars() {
    local tmp
    render_tfvars
    tmp="$(mktemp "$TF_DIR/.generated.auto.tfvars.XXXXXX")"
    printf '%s' "$TEXT" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$TFVARS"
    say "wrote $TFVARS"
}

# ---------------------------------------------------------------- main

main() {
    local action=apply
    if [[ $# -gt 0 && ( "$1" == apply || "$1" == destroy ) ]]; then
        action=$1
        shift
    fi
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --name) [[ $# -ge 2 ]] || die "--name needs a value"; NAME=$2; shift 2 ;;
            --image) [[ $# -ge 2 ]] || die "--image needs a value"; IMAGE=$2; shift 2 ;;
            --repo) [[ $# -ge 2 ]] || die "--repo needs a value"; REPOS+=("$2"); shift 2 ;;
            --port) [[ $# -ge 2 ]] || die "--port needs a value"; PORTS+=("$2"); shift 2 ;;
            --non-interactive) INTERACTIVE=0; shift ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument: $(printf '%q' "$1") (try --help)" ;;
        esac
    done
    tools_check

    local approve=()
    [[ "$INTERACTIVE" == 1 ]] || approve=(-auto-approve -input=false)
    if [[ "$action" == destroy ]]; then
        terraform -chdir="$TF_DIR" init -input=false
        terraform -chdir="$TF_DIR" destroy "${approve[@]}"
        return
    fi

    [[ "$INTERACTIVE" == 0 ]] || ask_missing
    check_inputs
    write_tfvars
    terraform -chdir="$TF_DIR" init -input=false
    terraform -chdir="$TF_DIR" apply "${approve[@]}"
    terraform -chdir="$TF_DIR" output
    say "done: 'docker exec $NAME list-services' lists the services; '$0 destroy' removes them"
}

main "$@"
