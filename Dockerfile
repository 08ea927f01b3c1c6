# maestro-runtime: many projects in one container, each as its own UNIX user under supervisord.
#
#   podman build --format docker --network=host -t maestro-runtime .   (or: make build)
#   docker build -t maestro-runtime .
#
# Where docker.io cannot be reached, scripts/build-base-image.sh makes a local
# debian:trixie-slim first (make build does this by itself). See docs/image.md.

ARG BASE_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------- builder: the wheel
FROM ${BASE_IMAGE} AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README* LICENSE ./
COPY config/ config/
COPY maestro_runtime/ maestro_runtime/
# setuptools/wheel come from PyPI (build isolation); --no-deps: only our own wheel here,
# the runtime stage resolves the dependencies.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check --no-input pip==24.3.1 \
    && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-input --no-deps -w /wheels . \
    && ls -l /wheels

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# System packages. supervisor is NOT Debian's: it comes from PyPI into the venv below.
# python-is-python3: detected commands say `python app.py`.
# trixie: Python 3.13 (projects asking for >= 3.12 build offline); python3-dev, build-essential and
# libpq-dev so psycopg2-class packages compile from source (the size cost is in the README).
# libnss-extrausers: project users live in /var/lib/maestro/nss/etc (a volume), so they
# resolve by name even with --read-only (see MAESTRO_USERADD_PREFIX below).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tini \
        python3 python3-venv python-is-python3 python3-dev \
        build-essential libpq-dev pkg-config \
        nodejs npm \
        bubblewrap \
        git \
        iptables iproute2 \
        ca-certificates \
        libnss-extrausers \
        util-linux \
        procps \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && sed -ri 's/^(passwd|group|shadow):(.*)$/\1:\2 extrausers/' /etc/nsswitch.conf \
    && grep -E '^(passwd|group|shadow):.*extrausers' /etc/nsswitch.conf \
    && rm -rf /var/lib/extrausers \
    && ln -s /var/lib/maestro/nss/etc /var/lib/extrausers

# Python 3.11 beside 3.13, from Debian bookworm on the same mirror, pinned low so that nothing
# else comes from there unasked: for projects that pin 3.11 (runtime.txt, .python-version) or
# whose locked dependencies do not build on 3.13 (C extensions with no cp313 wheel). Its
# dependencies come from trixie wherever trixie has them. No python3.11-venv (it conflicts with
# trixie's python3): uv makes the venvs (sources/pybuild.py). Size cost in the README.
# hadolint ignore=DL3008
RUN mapfile -t uris < <(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources) \
    && printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: %s\n' \
        "${uris[0]}" /usr/share/keyrings/debian-archive-keyring.gpg >/etc/apt/sources.list.d/bookworm.sources \
    && if [ -n "${uris[1]:-}" ]; then \
           printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: %s\n' \
               "${uris[1]}" /usr/share/keyrings/debian-archive-keyring.gpg >>/etc/apt/sources.list.d/bookworm.sources; \
       fi \
    && printf 'Package: *\nPin: release n=bookworm\nPin-Priority: 100\n\nPackage: *\nPin: release n=bookworm-security\nPin-Priority: 100\n' \
        >/etc/apt/preferences.d/bookworm \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11/bookworm python3.11-dev/bookworm \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && python3.11 -c 'import ssl, sqlite3, ctypes, decimal' && python3 --version

# corepack (builds of pnpm and yarn projects) from npm, first on PATH (/usr/local/bin): trixie's
# own node-corepack (0.24, pulled in by npm) is older than npm's current signing keys. 0.33 runs on
# Node 18 and 20 and goes through http(s)_proxy / npm_config_https_proxy (proxy-from-env), the
# sandbox's only way out.
RUN npm install --global --no-audit --no-fund --no-update-notifier corepack@0.33.0 \
    && rm -rf /root/.npm \
    && corepack --version

# The runtime: our wheel + its dependencies (supervisor, click, ...) from PyPI, in its own venv;
# every console script on PATH so `docker exec maestro list-services` works.
COPY --from=builder /wheels/ /tmp/wheels/
RUN python3 -m venv /opt/maestro/venv \
    && /opt/maestro/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && for cmd in maestro maestro-entrypoint maestro-logs maestro-sandbox deploy \
                  deploy-from-env list-services remove-service remove-project supervisorctl; do \
           ln -s "/opt/maestro/venv/bin/$cmd" "/usr/local/bin/$cmd"; \
       done \
    && maestro --version \
    && /opt/maestro/venv/bin/supervisord --version
COPY healthcheck/ /opt/maestro/healthcheck/
# The sandbox's network policy: builds may reach the package registries, nothing else
# (root-owned, not group/world-writable, as the runtime requires). See README "Sandbox".
COPY config/sandbox-net-allow /etc/maestro/sandbox-net-allow
# `supervisorctl status` with no flags: supervisorctl finds this file and the runtime's socket.
COPY config/supervisorctl.conf /etc/supervisor/supervisord.conf
RUN chmod 0644 /etc/maestro/sandbox-net-allow /etc/supervisor/supervisord.conf \
    && ln -s /opt/maestro/healthcheck/healthcheck.py /usr/local/bin/maestro-healthcheck

# Writable state lives only here (see docs/image.md): /run/maestro (supervisord socket,
# program files, launch scripts), /tmp (tmpfs), and the volumes below. /run/maestro is a
# VOLUME so that a read-only root works with no /run tmpfs (Docker mounts none by itself).
ENV SUPERVISOR_CONF_DIR=/run/maestro/conf.d \
    MAESTRO_RUNTIME_DIR=/run/maestro \
    MAESTRO_STATE_DIR=/var/lib/maestro \
    MAESTRO_USERADD_PREFIX=/var/lib/maestro/nss \
    MAESTRO_HOME_ROOT=/home \
    MAESTRO_PRESEEDED_ROOTS=/opt/projects \
    MAESTRO_SANDBOX_NET_POLICY=allow \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1
RUN mkdir -p /opt/projects /var/lib/maestro/nss/etc /run/maestro
VOLUME ["/var/lib/maestro", "/opt/projects", "/home", "/run/maestro"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/bin/python3", "-I", "-S", "/opt/maestro/healthcheck/healthcheck.py"]

STOPSIGNAL SIGTERM

# Last, so a new revision or date does not invalidate the cached layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/maestro-runtime/maestro-runtime
LABEL org.opencontainers.image.title="maestro-runtime" \
      org.opencontainers.image.description="In-container process supervisor: many projects in one container, each as its own UNIX user under supervisord" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="debian:trixie-slim"

ENTRYPOINT ["/usr/bin/tini", "--", "maestro-entrypoint"]
