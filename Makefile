# lab-runner: `sudo make lab-3` runs the main walkthrough, `sudo make test` the tests.
# Everything else (system packages, the virtual environment) is set up on first use.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNNER  := $(BIN)/lab-runner
PYTEST  := $(BIN)/pytest
LAB     ?= lab-3
APT_PACKAGES := iproute2 iptables conntrack procps util-linux python3-venv python3-pip time

.PHONY: help setup system-deps venv lab-% up down status clean doctor test test-unit bench

help:
	@echo "sudo make lab-3        the ClusterIP walkthrough (KEEP=1 leaves the lab up, STEP=N starts at step N)"
	@echo "sudo make test         all tests (unit + real namespaces)"
	@echo "make test-unit         the tests that need no root"
	@echo "sudo make bench        timings: up/down, render+apply, probes, walkthrough"
	@echo "sudo make down         tear down the running lab;  sudo make clean  removes leftovers of crashed runs"
	@echo "sudo make doctor       can this machine run the labs?"

setup: system-deps venv

# Installs what a fresh Debian/Ubuntu lacks; does nothing when all tools are there.
system-deps:
	@missing=""; \
	for t in ip iptables-nft iptables-legacy conntrack xtables-monitor nsenter unshare sysctl; do \
	  command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run with sudo to install: $(APT_PACKAGES)"; exit 3; fi; \
	  command -v apt-get >/dev/null || { echo "error: no apt-get: install $(APT_PACKAGES) by hand"; exit 3; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | system-deps
	@echo "setting up $(VENV) (once)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $@

lab-%: setup
	$(RUNNER) walk lab-$* $(if $(KEEP),--keep) $(if $(STEP),--step $(STEP))

up: setup
	$(RUNNER) up $(LAB)

down: venv
	$(RUNNER) down --all

status: venv
	$(RUNNER) status

clean: venv
	$(RUNNER) clean --all

doctor: venv
	$(RUNNER) doctor

test: setup
	$(PYTEST) -q -m "not slow" tests
	@for lab in labs/*/walkthrough.md; do \
	  lab=$$(basename $$(dirname $$lab)); echo "== walk $$lab --check"; \
	  out=$$(mktemp); $(RUNNER) walk $$lab --check >$$out 2>&1 || { cat $$out; rm -f $$out; exit 1; }; \
	  rm -f $$out; \
	  echo "walkthrough $$lab: all steps ran as expected"; done

test-unit: venv
	$(PYTEST) -q tests/unit

bench: setup
	$(BIN)/python bench/run.py
