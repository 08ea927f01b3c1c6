#!/usr/bin/env bash
# probe-container-engine.sh - re-check what the local podman can do for maestro.
#
# Re-runs the experiments recorded in docs/container-engine.md and prints one
# line per check: OK when the outcome is the expected one (which may be an
# expected failure), UNEXPECTED otherwise. Exit status 1 if anything was
# unexpected. Takes about a minute; needs the base image (scripts/ensure-engine.sh).
#
# Checks:
#   - apt-get update inside the base image (host network and default network);
#   - bubblewrap (`bwrap --unshare-all --dev-bind / / true`, and a sandbox with
#     its own /proc) inside a container under podman's seccomp profile and
#     under a Docker-like one (namespace syscalls allowed only with
#     CAP_SYS_ADMIN, as in Docker's default profile);
#   - the hardened run flags (read-only, no caps, pids/memory/cpu limits,
#     noexec tmpfs) are accepted AND enforced;
#   - a HEALTHCHECK survives `podman build --format docker` and runs by hand.
#
# Usage: scripts/probe-container-engine.sh [--help]
set -euo pipefail

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/config/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}"
PROBE_IMAGE=localhost/maestro-engine-probe:tmp
HC_IMAGE=localhost/maestro-healthcheck-probe:docker
HC_IMAGE_OCI=localhost/maestro-healthcheck-probe:oci
HC_CTR=maestro-healthcheck-probe
PIDS_CTR=maestro-pids-probe
HARDENED=(--read-only --cap-drop ALL --security-opt no-new-privileges
          --pids-limit 512 --memory 1g --cpus 1.0
          --tmpfs "/tmp:rw,noexec,nosuid,size=64m")

WORK="$(mktemp -d)"
cleanup() {
    # One name per call: podman 4.3 removes nothing (and exits 0) when any
    # of several names is missing.
    local name
    for name in "$HC_CTR" "$PIDS_CTR"; do
        podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    done
    for name in "$PROBE_IMAGE" "$HC_IMAGE" "$HC_IMAGE_OCI"; do
        podman rmi "$name" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

podman image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    || { echo "no $BASE_IMAGE: run scripts/ensure-engine.sh first" >&2; exit 1; }

UNEXPECTED=0
# check EXPECT(pass|fail) DESCRIPTION -- COMMAND...
check() {
    local expect="$1" desc="$2" start ms rc=0 got verdict
    shift 3
    start=$(date +%s%N)
    "$@" >"$WORK/out" 2>&1 || rc=$?
    got=$([[ $rc -eq 0 ]] && echo pass || echo "fail(rc=$rc)")
    if [[ "$got" == "$expect"* ]]; then verdict=OK; else verdict=UNEXPECTED; UNEXPECTED=1; fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%-10s %-11s expected %-4s %3d.%ds  %s\n' "$verdict" "$got" "$expect" \
        $((ms / 1000)) $((ms % 1000 / 100)) "$desc"
    if [[ $rc -ne 0 || "$verdict" != OK ]]; then
        tail -n 2 "$WORK/out" | sed 's/^/           | /'
    fi
}

echo "== apt inside the base image"
check pass "apt-get update, --network=host" -- \
    podman run --rm --network=host "$BASE_IMAGE" apt-get update
check pass "apt-get update, default network" -- \
    podman run --rm "$BASE_IMAGE" apt-get update

echo "== bubblewrap inside a container"
printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*\n' \
    "$BASE_IMAGE" >"$WORK/Containerfile.bwrap"
check pass "build throwaway image with bubblewrap" -- \
    podman build --layers=false --format docker --network=host -t "$PROBE_IMAGE" -f "$WORK/Containerfile.bwrap" "$WORK"

# A Docker-like seccomp profile: podman's own, but with the namespace/mount
# syscalls allowed only for CAP_SYS_ADMIN, the way Docker's default profile does.
python3 - /usr/share/containers/seccomp.json "$WORK/docker-like-seccomp.json" <<'EOF'
import json, sys
prof = json.load(open(sys.argv[1]))
gated = {"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
         "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
         "perf_event_open", "pivot_root", "quotactl", "quotactl_fd", "setdomainname",
         "sethostname", "setns", "syslog", "umount", "umount2", "unshare"}
for rule in prof["syscalls"]:
    if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("includes") and not rule.get("args"):
        rule["names"] = [n for n in rule["names"] if n not in gated]
prof["syscalls"] = [r for r in prof["syscalls"] if r["names"]] + [
    {"names": sorted(gated), "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    # clone without any CLONE_NEW* flag (mask 0x7E020000) stays allowed for everyone
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
]
json.dump(prof, open(sys.argv[2], "w"))
EOF
DOCKERLIKE=(--security-opt "seccomp=$WORK/docker-like-seccomp.json")
BWRAP=(bwrap --unshare-all --dev-bind / / true)

check pass "podman seccomp, default caps (root)" -- \
    podman run --rm "$PROBE_IMAGE" "${BWRAP[@]}"
check fail "podman seccomp, --cap-drop ALL (root: uid map needs SETFCAP)" -- \
    podman run --rm --cap-drop ALL "$PROBE_IMAGE" "${BWRAP[@]}"
check pass "podman seccomp, --cap-drop ALL --cap-add SETFCAP (root)" -- \
    podman run --rm --cap-drop ALL --cap-add SETFCAP "$PROBE_IMAGE" "${BWRAP[@]}"
check pass "podman seccomp, --cap-drop ALL --user 65534 + hardened flags" -- \
    podman run --rm "${HARDENED[@]}" --user 65534 "$PROBE_IMAGE" "${BWRAP[@]}"
check fail "docker-like seccomp, default caps" -- \
    podman run --rm "${DOCKERLIKE[@]}" "$PROBE_IMAGE" "${BWRAP[@]}"
check fail "docker-like seccomp, --cap-add NET_ADMIN" -- \
    podman run --rm "${DOCKERLIKE[@]}" --cap-add NET_ADMIN "$PROBE_IMAGE" "${BWRAP[@]}"
check pass "docker-like seccomp, --cap-add SYS_ADMIN" -- \
    podman run --rm "${DOCKERLIKE[@]}" --cap-add SYS_ADMIN "$PROBE_IMAGE" "${BWRAP[@]}"
check pass "docker-like seccomp, --cap-add SYS_ADMIN --cap-add NET_ADMIN" -- \
    podman run --rm "${DOCKERLIKE[@]}" --cap-add SYS_ADMIN --cap-add NET_ADMIN "$PROBE_IMAGE" "${BWRAP[@]}"
check fail "docker-like seccomp, --user 65534 --cap-add SYS_ADMIN (bwrap refuses caps)" -- \
    podman run --rm "${DOCKERLIKE[@]}" --user 65534 --cap-add SYS_ADMIN "$PROBE_IMAGE" "${BWRAP[@]}"

# A real sandbox also mounts a fresh /proc for its new PID namespace. The kernel
# refuses that while the container's /proc has podman's masked paths over it.
BWRAP_PROC=(bwrap --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc --dev /dev true)
check fail "bwrap --proc /proc, default masks" -- \
    podman run --rm "$PROBE_IMAGE" "${BWRAP_PROC[@]}"
check pass "bwrap --proc /proc, --security-opt unmask=/proc/*" -- \
    podman run --rm --security-opt 'unmask=/proc/*' "$PROBE_IMAGE" "${BWRAP_PROC[@]}"
check pass "bwrap --proc /proc, hardened + --user 65534 + unmask=/proc/*" -- \
    podman run --rm "${HARDENED[@]}" --user 65534 --security-opt 'unmask=/proc/*' \
    "$PROBE_IMAGE" "${BWRAP_PROC[@]}"
check pass "bwrap --proc /proc, docker-like, SYS_ADMIN+NET_ADMIN + unmask=/proc/*" -- \
    podman run --rm "${DOCKERLIKE[@]}" --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --security-opt 'unmask=/proc/*' "$PROBE_IMAGE" "${BWRAP_PROC[@]}"

echo "== hardened flags: ${HARDENED[*]}"
check pass "accepted" -- podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" true
# shellcheck disable=SC2016  # expanded inside the container
check pass "limits visible in the container's cgroups (v1)" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c '
        set -e; c=/sys/fs/cgroup
        test "$(cat $c/memory/memory.limit_in_bytes)" = 1073741824
        test "$(cat $c/cpu/cpu.cfs_quota_us)/$(cat $c/cpu/cpu.cfs_period_us)" = 100000/100000
        test "$(cat $c/pids/pids.max)" = 512
        grep -q "^NoNewPrivs:[[:space:]]*1" /proc/self/status
        grep -q "^CapEff:[[:space:]]*0000000000000000" /proc/self/status'
check fail "root filesystem is read-only" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" touch /x
check fail "/tmp is noexec" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c 'cp /bin/true /tmp/t && /tmp/t'
check fail "/tmp holds at most 64m" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c 'head -c 100M /dev/zero >/tmp/big'
check pass "800 MB in memory fits under --memory 1g" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c 'head -c 800M /dev/zero | tail -n 1 >/dev/null'
# shellcheck disable=SC2016
check pass "1500 MB in memory is OOM-killed (exit 137, oom_kill 1)" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c '
        head -c 1500M /dev/zero | tail -n 1 >/dev/null; rc=$?
        test $rc -eq 137 && grep -q "^oom_kill 1" /sys/fs/cgroup/memory/memory.oom_control'
# shellcheck disable=SC2016
check pass "2 busy loops for 3s use ~3 CPU-seconds under --cpus 1.0" -- \
    podman run --rm "${HARDENED[@]}" "$BASE_IMAGE" sh -c '
        u=/sys/fs/cgroup/cpuacct/cpuacct.usage; a=$(cat $u)
        timeout 3 sh -c "while :; do :; done" & timeout 3 sh -c "while :; do :; done" & wait
        used=$(( ($(cat $u) - a) / 100000000 ))   # tenths of a second
        echo "cpu used: ${used}/10 s"; test "$used" -ge 25 && test "$used" -le 36'
pids_limit_hit() {
    local id dir
    id=$(podman run -d --name "$PIDS_CTR" "${HARDENED[@]}" "$BASE_IMAGE" sh -c \
        'i=0; while [ $i -lt 600 ]; do (sleep 30 &) 2>/dev/null; i=$((i+1)); done; sleep 30')
    sleep 4
    dir=/sys/fs/cgroup/pids/libpod_parent/libpod-$id
    echo "pids.current=$(cat "$dir/pids.current") events: $(cat "$dir/pids.events")"
    podman rm -f -t 0 "$PIDS_CTR" >/dev/null
    grep -q '^max [1-9]' "$dir/pids.events" 2>/dev/null || [[ ! -e "$dir" ]]
}
check pass "600 forks stop at --pids-limit 512" -- pids_limit_hit

echo "== HEALTHCHECK with --format docker"
printf 'FROM %s\nHEALTHCHECK --interval=30s --timeout=3s CMD test -e /etc/debian_version\nCMD ["sleep", "60"]\n' \
    "$BASE_IMAGE" >"$WORK/Containerfile.hc"
check fail "build in the default OCI format drops HEALTHCHECK" -- sh -c "
    podman build --layers=false -t $HC_IMAGE_OCI -f $WORK/Containerfile.hc $WORK >/dev/null 2>&1 &&
    podman image inspect --format '{{.HealthCheck}}' $HC_IMAGE_OCI | grep -q debian_version"
check pass "build --format docker keeps HEALTHCHECK" -- sh -c "
    podman build --layers=false --format docker -t $HC_IMAGE -f $WORK/Containerfile.hc $WORK >/dev/null &&
    podman image inspect --format '{{.HealthCheck}}' $HC_IMAGE | grep -q debian_version"
# No systemd here: podman cannot schedule the periodic check (it logs "unable to
# get systemd connection to add healthchecks") and the status stays "starting"
# until someone runs the check by hand.
check pass "container with HEALTHCHECK starts (timer not scheduled: no systemd)" -- sh -c "
    podman run -d --name $HC_CTR $HC_IMAGE >/dev/null 2>&1 &&
    test \"\$(podman inspect --format '{{.State.Health.Status}}' $HC_CTR)\" = starting"
check pass "podman healthcheck run -> healthy" -- sh -c "
    podman healthcheck run $HC_CTR &&
    test \"\$(podman inspect --format '{{.State.Health.Status}}' $HC_CTR)\" = healthy"

if [[ $UNEXPECTED -ne 0 ]]; then
    echo "some outcomes were UNEXPECTED: compare with docs/container-engine.md" >&2
    exit 1
fi
echo "all outcomes as expected"
