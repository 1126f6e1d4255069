# gce: development and demo targets, for a Debian 12 machine (run as root).
#   make demo   a broker, an endpoint named "demo" and a first function run through it
#   make test   the test suite (it starts its own private RabbitMQ)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
STAMP := $(VENV)/.installed
# parsl starts its interchange and workers by name: the venv's scripts must be on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH):/usr/sbin:/sbin
export DEBIAN_FRONTEND := noninteractive

RABBITMQ_SERVER := /usr/lib/rabbitmq/bin/rabbitmq-server
BROKER_PORT := 5672
BOOT_WAIT := 60
DEMO := demo
DEMO_USER := demo-user

# $(call apt_install,packages): apt-get update only when the lists are missing or stale for them.
define apt_install
	if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then apt-get update -q; fi; \
	if ! apt-get install -y -q $(1); then apt-get update -q && apt-get install -y -q $(1); fi
endef

.PHONY: help venv rabbitmq broker test demo bench clean lock package man

help:
	@echo "make demo   start a broker and an endpoint named '$(DEMO)', then run a function on it"
	@echo "make test   run the test suite (installs what it needs)"
	@echo "make bench  compare gce with its peers (globus-compute-endpoint, raw parsl HTEX)"
	@echo "make venv | rabbitmq | broker | clean"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then \
	  $(call apt_install,python3 python3-venv); fi
	/usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

rabbitmq:
	@if [ ! -x $(RABBITMQ_SERVER) ]; then $(call apt_install,rabbitmq-server); fi

# Start the machine's RabbitMQ unless something answers on 127.0.0.1:$(BROKER_PORT). Under
# systemd the unit does it; without systemd the Debian wrapper runs it as the rabbitmq user,
# listening on 127.0.0.1 only (a demo broker is nobody else's business).
broker: rabbitmq
	@if (exec 3<>/dev/tcp/127.0.0.1/$(BROKER_PORT)) 2>/dev/null; then \
	  echo "a broker already answers on 127.0.0.1:$(BROKER_PORT)"; exit 0; fi; \
	if [ -d /run/systemd/system ]; then systemctl start rabbitmq-server; else \
	  install -d -o rabbitmq -g rabbitmq -m 755 /run/rabbitmq; \
	  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$(BROKER_PORT) ERL_EPMD_ADDRESS=127.0.0.1 \
	  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
	  RABBITMQ_PID_FILE=/run/rabbitmq/pid /usr/sbin/rabbitmq-server -detached; fi; \
	echo -n "waiting for RabbitMQ on 127.0.0.1:$(BROKER_PORT) "; \
	for i in $$(seq $(BOOT_WAIT)); do \
	  if rabbitmqctl -q status >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/$(BROKER_PORT)) 2>/dev/null; then \
	    echo " up"; exit 0; fi; echo -n .; sleep 1; done; \
	echo " no answer after $(BOOT_WAIT) s; see /var/log/rabbitmq/" >&2; exit 1

# tests/systemd boots a debootstrapped Debian with systemd-nspawn, and builds pystemd (no wheel on PyPI).
SYSTEMD_TEST_DEBS := debootstrap systemd-container zstd libsystemd-dev pkg-config gcc python3-dev
# tests/slurm runs its own one-node cluster (munged, slurmctld, slurmd on private paths and ports).
SLURM_TEST_DEBS := slurm-wlm munge
# tests/tui runs the real gce monitor in a terminal that tmux provides.
TUI_TEST_DEBS := tmux
# tests/packaging builds the .deb and .rpm (a venv on python3.11, pystemd compiled against
# libsystemd), lints them and checks the bundled libraries' glibc symbols; tests/test_manpages.py
# renders the manual with groff and man; the shipped completions are tried in bash, zsh and fish.
PACKAGING_TEST_DEBS := python3.11 python3.11-venv python3.11-dev libsystemd-dev pkg-config gcc g++ binutils \
	debhelper fakeroot lintian rpm rpmlint cpio groff man-db bash-completion zsh fish

# tests/uep/test_mpi.py and tests/slurm/test_mpi.py run real MPI programs under the MPI engine.
MPI_TEST_DEBS := openmpi-bin libopenmpi-dev
# tests/uep/test_containers.py runs worker pools in real podman containers (runc: see RECIPES.md).
CONTAINER_TEST_DEBS := podman runc

test: venv rabbitmq
	@if ! dpkg -s $(SYSTEMD_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(SYSTEMD_TEST_DEBS)); fi
	@if ! dpkg -s $(SLURM_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(SLURM_TEST_DEBS)); fi
	@if ! dpkg -s $(TUI_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(TUI_TEST_DEBS)); fi
	@if ! dpkg -s $(PACKAGING_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(PACKAGING_TEST_DEBS)); fi
	@if ! dpkg -s $(MPI_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(MPI_TEST_DEBS)); fi
	@if ! dpkg -s $(CONTAINER_TEST_DEBS) >/dev/null 2>&1; then $(call apt_install,$(CONTAINER_TEST_DEBS)); fi
	$(VENV)/bin/mypy
	@# Two pytest sessions side by side: the one waiting on containers and Slurm, and the rest.
	$(VENV)/bin/python tests/lanes.py
	@if compgen -G 'tests/bats/*.bats' >/dev/null; then \
	  if ! dpkg -s bats bats-assert bats-support >/dev/null 2>&1; then $(call apt_install,bats bats-assert bats-support); fi; \
	  bats tests/bats; fi

# Re-runnable: an existing endpoint is kept, its broker accounts keep their passwords (unless
# this machine lost demo-user's URL, or the endpoint's config: then both get new ones, and the endpoint
# restarts with its own).
DEMO_PY = $(VENV)/bin/python -c 'from gce.config.paths import endpoint_paths as p; \
  from gce.config.model import read_endpoint_id as r; e = p("$(DEMO)"); print($(1))'
demo: venv broker
	@# A demo-user whose URL this machine no longer holds (sdk.yaml gone or stale) gets a new password,
	@# and so does ep-demo when its config.yaml is new (the broker kept the account, not its password).
	@rotate=; if [ ! -f "$$($(call DEMO_PY,e.config_file))" ]; then $(VENV)/bin/gce configure $(DEMO); rotate=--rotate; fi; \
	if ! $(VENV)/bin/gce whoami >/dev/null 2>&1; then rotate=--rotate; fi; set -x; \
	$(VENV)/bin/gce broker provision --endpoint $(DEMO) --user $(DEMO_USER) --sdk-config $$rotate
	$(VENV)/bin/gce stop $(DEMO)
	$(VENV)/bin/gce start $(DEMO) --detach
	$(VENV)/bin/python -m gce.sdk.demo "$$($(call DEMO_PY,r(e)))"
	@echo
	@echo "The endpoint '$(DEMO)' keeps running. Look at it with:"
	@echo "  $(VENV)/bin/gce list"
	@echo "  $(VENV)/bin/gce status $(DEMO)"
	@echo "and stop it with:"
	@echo "  $(VENV)/bin/gce stop $(DEMO)"

# Not part of make test: timings belong in ratios against a peer run in the same invocation.
bench: venv rabbitmq
	$(VENV)/bin/python bench/bench.py

# Both packages of this tree into dist/: make package [VERSION=1.2.3] (default: gce/__init__.py's).
VERSION ?= $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' gce/__init__.py)
# The venv's interpreter and what compiles pystemd, then the tools that pack each kind.
PACKAGE_DEBS := python3.11 python3.11-venv python3.11-dev libsystemd-dev pkg-config gcc debhelper fakeroot rpm
package:
	@if ! dpkg -s $(PACKAGE_DEBS) >/dev/null 2>&1; then $(call apt_install,$(PACKAGE_DEBS)); fi
	packaging/deb/build.sh $(VERSION) dist
	if [ -f packaging/rpm/build.sh ]; then bash packaging/rpm/build.sh $(VERSION) dist; fi

# The manual (man/) and the shipped completions (packaging/completion/) are generated from the CLI;
# tests/test_manpages.py fails, naming this target, when they are stale.
man: venv
	$(VENV)/bin/python -m gce.manpages man/
	$(VENV)/bin/python -m gce.manpages --completion packaging/completion/

# packaging/requirements.lock pins every runtime dependency with the hash of the one file the
# packages install (resolved as `make venv` would, held to the test extra's == pins).
lock:
	/usr/bin/python3.11 packaging/lock.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
