#!/usr/bin/env bash
# build-base-image.sh - build the Debian base image locally, without a registry.
#
# THE AIR-GAPPED PATH. maestro-runtime's images start `FROM debian:trixie-slim`.
# Where no container registry is reachable (air-gapped sites, sandboxed CI, this
# project's own dev machines) that image cannot be pulled. This script makes an
# equivalent one from Debian packages alone:
#
#   1. debootstrap --variant=minbase trixie into a cache directory
#      (mirror: $DEBIAN_MIRROR, else the host's own apt source for the suite,
#      else debootstrap's default), reusing downloaded .debs across runs;
#   2. copy the host's CA bundle into the rootfs (so TLS-intercepting proxies
#      trusted by the host are trusted inside the image: apt, pip, npm);
#   3. copy the host's apt "Acquire::" settings (proxies, Check-Valid-Until,
#      Check-Date) so apt inside the image reaches the archive the way the
#      host does; trim docs/man/locales like the official -slim image;
#   4. tar the rootfs into `<engine> import` as docker.io/library/debian:trixie-slim
#      and delete the rootfs.
#
# Idempotent: does nothing if the image already exists, unless --force.
# Needs root (debootstrap) and a Debian-like host with debootstrap installed
# (scripts/ensure-engine.sh installs it).
#
# Usage: scripts/build-base-image.sh [--force] [--keep-rootfs] [--help]
#
# Environment:
#   CONTAINER_ENGINE  podman | docker. Default: docker if its daemon answers,
#                     else podman.
#   CONTAINERS_CONF   podman config; defaults to <repo>/config/containers.conf.
#   BASE_IMAGE        image to create (default docker.io/library/debian:trixie-slim).
#   DEBIAN_SUITE      default trixie (Python 3.13, headers, a compiler, libpq-dev).
#   DEBIAN_MIRROR     Debian mirror URL; default: the host's apt source.
#   CA_BUNDLE         host CA bundle (default /etc/ssl/certs/ca-certificates.crt).
#   MAESTRO_CACHE_DIR default ${XDG_CACHE_HOME:-/var/cache}/maestro.
#   http_proxy, https_proxy, no_proxy  used by debootstrap if set.
set -euo pipefail

log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

FORCE=0
KEEP_ROOTFS=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --keep-rootfs) KEEP_ROOTFS=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/debian:trixie-slim}"
DEBIAN_SUITE="${DEBIAN_SUITE:-trixie}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
CACHE_ROOT="${MAESTRO_CACHE_DIR:-${XDG_CACHE_HOME:-/var/cache}/maestro}"
ROOTFS="$CACHE_ROOT/debootstrap/$DEBIAN_SUITE-rootfs"
DEB_CACHE="$CACHE_ROOT/debootstrap/$DEBIAN_SUITE-debs"

# --- container engine -------------------------------------------------------
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
ENGINE="$(maestro_engine)"
command -v "$ENGINE" >/dev/null 2>&1 \
    || die "no usable container engine ($ENGINE not found): install podman (scripts/ensure-engine.sh) or start a Docker daemon"
if [[ "$(basename "$ENGINE")" == podman && -z "${CONTAINERS_CONF:-}" \
      && -f "$REPO_ROOT/config/containers.conf" ]]; then
    export CONTAINERS_CONF="$REPO_ROOT/config/containers.conf"
fi
log "engine: $ENGINE${CONTAINERS_CONF:+ (CONTAINERS_CONF=$CONTAINERS_CONF)}"
"$ENGINE" info >/dev/null 2>&1 \
    || die "'$ENGINE info' fails: is the engine usable (for docker: is its daemon running)?"

if [[ "$FORCE" -eq 0 ]] && "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "image $BASE_IMAGE already exists; nothing to do (use --force to rebuild)"
    exit 0
fi

OLD_ID="$("$ENGINE" image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"

# --- preconditions ----------------------------------------------------------
[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root: re-run with sudo"
command -v debootstrap >/dev/null 2>&1 \
    || die "debootstrap not installed (apt-get install -y debootstrap, or scripts/ensure-engine.sh)"
[[ -r "$CA_BUNDLE" ]] || die "CA bundle $CA_BUNDLE not readable (set CA_BUNDLE)"

# The host's own Debian mirror for the suite, as apt resolves it.
host_mirror() {
    command -v apt-get >/dev/null 2>&1 || return 0
    # shellcheck disable=SC2016  # $(SITE) is apt's format field, not shell
    apt-get indextargets --format '$(SITE)' "Codename: $DEBIAN_SUITE" 2>/dev/null \
        | head -n 1
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror)}"

# apt's proxy setting on the host (Acquire::http::Proxy) for debootstrap's wget.
if [[ -z "${http_proxy:-}" ]] && command -v apt-config >/dev/null 2>&1; then
    apt_proxy="$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")"
    if [[ -n "$apt_proxy" && "$apt_proxy" != DIRECT ]]; then
        export http_proxy="$apt_proxy"
        log "using the host's apt proxy for debootstrap: http_proxy=$http_proxy"
    fi
fi

# --- rootfs -----------------------------------------------------------------
remove_rootfs() {
    [[ -e "$ROOTFS" ]] || return 0
    # debootstrap may leave proc/sys mounted after a failure: unmount first,
    # and never let rm cross into another filesystem.
    local mnt
    while read -r mnt; do
        if [[ -n "$mnt" ]]; then umount -l "$mnt" 2>/dev/null || true; fi
    done < <(findmnt -rn -o TARGET 2>/dev/null | grep -F "$ROOTFS/" | sort -r)
    rm -rf --one-file-system "$ROOTFS"
}

cleanup() {
    local rc=$?
    if [[ "$KEEP_ROOTFS" -eq 0 ]]; then
        remove_rootfs
    else
        log "keeping rootfs at $ROOTFS"
    fi
    exit "$rc"
}
trap cleanup EXIT

log "removing any stale rootfs at $ROOTFS"
remove_rootfs
mkdir -p "$ROOTFS" "$DEB_CACHE"

start=$SECONDS
log "debootstrap --variant=minbase $DEBIAN_SUITE $ROOTFS ${MIRROR:-(debootstrap default mirror)}"
log "  (.deb cache: $DEB_CACHE)"
debootstrap_args=(--variant=minbase --cache-dir="$DEB_CACHE" "$DEBIAN_SUITE" "$ROOTFS")
[[ -n "$MIRROR" ]] && debootstrap_args+=("$MIRROR")
debootstrap "${debootstrap_args[@]}" >"$CACHE_ROOT/debootstrap/last-run.log" 2>&1 \
    || { tail -n 30 "$CACHE_ROOT/debootstrap/last-run.log" >&2; die "debootstrap failed (full log: $CACHE_ROOT/debootstrap/last-run.log)"; }
log "debootstrap done in $((SECONDS - start))s"

# The mirror debootstrap actually used (it writes it to sources.list).
if [[ -z "$MIRROR" ]]; then
    MIRROR="$(awk '$1 == "deb" { print $2; exit }' "$ROOTFS/etc/apt/sources.list")"
fi

log "writing apt sources ($DEBIAN_SUITE, -updates, -security) for $MIRROR"
rm -f "$ROOTFS/etc/apt/sources.list"
mkdir -p "$ROOTFS/etc/apt/sources.list.d"
cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/}-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

log "copying host CA bundle $CA_BUNDLE into the image"
mkdir -p "$ROOTFS/etc/ssl/certs" "$ROOTFS/usr/local/share/ca-certificates"
install -m 0644 "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# Kept here too so a later `apt-get install ca-certificates` (which regenerates
# the bundle via update-ca-certificates) keeps the host's extra CAs.
install -m 0644 "$CA_BUNDLE" "$ROOTFS/usr/local/share/ca-certificates/maestro-host-bundle.crt"

if command -v apt-config >/dev/null 2>&1; then
    acquire="$(apt-config dump 2>/dev/null \
        | grep -E '^Acquire::([a-z]+::)?(Proxy|Check-Valid-Until|Check-Date)' || true)"
    if [[ -n "$acquire" ]]; then
        log "copying host apt Acquire:: settings into the image:"
        printf '%s\n' "$acquire" | sed 's/^/[build-base-image]   /' >&2
        printf '// Copied from the build host by scripts/build-base-image.sh\n%s\n' \
            "$acquire" >"$ROOTFS/etc/apt/apt.conf.d/99maestro-host-acquire"
    fi
fi

log "trimming the rootfs like debian:*-slim (no docs/man/locales, no apt caches)"
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# As in the official debian:*-slim images.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf 'Acquire::Languages "none";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
printf 'Acquire::GzipIndexes "true";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-gzip-indexes"
printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-autoremove-suggests"
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# Leave no host identity in the image.
: >"$ROOTFS/etc/hostname"
rm -f "$ROOTFS/etc/resolv.conf"

CERT=/etc/ssl/certs/ca-certificates.crt
log "importing $ROOTFS as $BASE_IMAGE ($(du -sh "$ROOTFS" | cut -f1))"
start=$SECONDS
import_flags=()
[[ "$(basename "$ENGINE")" == podman ]] && import_flags+=(--quiet)
tar --numeric-owner -C "$ROOTFS" -c . | "$ENGINE" import "${import_flags[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV SSL_CERT_FILE=$CERT" \
    --change "ENV REQUESTS_CA_BUNDLE=$CERT" \
    --change "ENV PIP_CERT=$CERT" \
    --change "ENV NODE_EXTRA_CA_CERTS=$CERT" \
    --change 'CMD ["bash"]' \
    - "$BASE_IMAGE" >/dev/null
log "import done in $((SECONDS - start))s"
"$ENGINE" image inspect --format '{{.Id}} {{.Size}}' "$BASE_IMAGE" \
    | awk '{ printf "[build-base-image] built %s (id %.12s, %d MB)\n", img, $1, $2/1e6 }' img="$BASE_IMAGE" >&2
if [[ -n "$OLD_ID" ]]; then
    # The --force rebuild left the previous image untagged; drop it unless
    # other images or containers still use it.
    if "$ENGINE" rmi "$OLD_ID" >/dev/null 2>&1; then
        log "removed the previous image ${OLD_ID:0:12}"
    else
        log "kept the previous image ${OLD_ID:0:12} (still in use)"
    fi
fi
