# lab-runner: `sudo make lab-3` runs the main walkthrough, `sudo make test` the tests.
# Everything else (system packages, the virtual environment) is set up on first use.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RUNNER  := $(BIN)/lab-runner
PYTEST  := $(BIN)/pytest
LAB     ?= lab-3
# `make down RUN=<run id>` names one run where several are up (`lab-runner status` lists them).
RUN     ?=
# The one list of system packages (also read by .ci/run, the Dockerfile and `lab-runner doctor`).
PACKAGE_LIST := lab_runner/system-packages.txt
APT_PACKAGES := $(shell sed -e 's/\#.*//' $(PACKAGE_LIST) | awk 'NF {print $$1}')

.PHONY: help setup system-deps venv lab-% up down down-all status clean clean-all doctor test \
        test-deps test-unit test-all bench

help:
	@echo "sudo make lab-3        the ClusterIP walkthrough (KEEP=1 leaves the lab up, STEP=N starts at step N)"
	@echo "sudo make lab-N        lab N's walkthrough: 1 pods, 2 NAT, 4 endpoints, 5 NodePort, 6 affinity and"
	@echo "                       local, 7 nftables mode, 8 scale (\`lab-runner list\` shows them all)"
	@echo "sudo make test         the fast suite: unit + real namespaces, without the slow tests (-m slow)"
	@echo "sudo make test-deps    the packages only the tests need (chromium); make test installs them"
	@echo "sudo make test-all     every test, the slow ones included"
	@echo "make test-unit         the tests that need no root"
	@echo "sudo make bench        timings: up/down, render+apply, probes, walkthrough, grading, lab 8's sweep"
	@echo "sudo make down         tear down the running lab (RUN=<run id> when several run)"
	@echo "sudo make clean        remove leftovers of crashed runs (labs up on purpose stay)"
	@echo "sudo make down-all     tear down every lab of the kit, other users' included"
	@echo "sudo make clean-all    clean, and tear down every lab of the kit too"
	@echo "sudo make doctor       can this machine run the labs?"

setup: system-deps venv

# Installs what a fresh Debian/Ubuntu lacks; does nothing when all is there. Without python3 the
# check itself cannot run: then every package of the list is installed.
system-deps:
	@missing=$$($(PYTHON) lab_runner/system_deps.py missing 2>/dev/null) || missing="$(APT_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$(printf ' %s' $$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run with sudo to install them: sudo make setup"; exit 3; fi; \
	  command -v apt-get >/dev/null || { echo "error: no apt-get: install by hand: $$missing"; exit 3; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || { echo "error: apt-get could not install: $$missing"; exit 3; }; \
	fi

venv: $(VENV)/.installed

# The virtual environment needs python3-venv alone: a docker-backend user needs no other host tool.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || $(MAKE) -s system-deps
	@echo "setting up $(VENV) (once)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[plot]'
	@touch $@

lab-%: setup
	$(RUNNER) walk lab-$* $(if $(KEEP),--keep) $(if $(STEP),--step $(STEP))

up: setup
	$(RUNNER) up $(LAB)

down: venv
	$(RUNNER) down $(RUN)

# Every lab of the kit on this machine, other users' included: asked for by name only.
down-all: venv
	$(RUNNER) down --all

status: venv
	$(RUNNER) status

clean: venv
	$(RUNNER) clean

clean-all: venv
	$(RUNNER) clean --all

doctor: venv
	$(RUNNER) doctor

# Packages only the tests need: the "#test:" lines of the list (chromium, to check report.html in a
# browser). `make test` installs them; `make setup` and `lab-runner doctor` never ask for them.
test-deps:
	@missing=$$($(PYTHON) lab_runner/system_deps.py missing --tests) \
	  || { echo "error: $(PYTHON) could not read $(PACKAGE_LIST): sudo make setup first"; exit 3; }; \
	[ -z "$$missing" ] || { echo "installing test-only packages:$$(printf ' %s' $$missing)"; \
	  [ "$$(id -u)" = 0 ] || { echo "error: run with sudo to install them: sudo make test-deps"; exit 3; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "error: apt-get could not install: $$missing"; exit 3; }; }

test: setup test-deps
	$(PYTEST) -q -m "not slow" tests
	@for lab in labs/*/walkthrough.md; do \
	  lab=$$(basename $$(dirname $$lab)); echo "== walk $$lab --check"; \
	  out=$$(mktemp); $(RUNNER) walk $$lab --check >$$out 2>&1 || { cat $$out; rm -f $$out; exit 1; }; \
	  rm -f $$out; \
	  echo "walkthrough $$lab: all steps ran as expected"; done

# Everything: the fast suite above, then the tests marked slow (long statistical runs).
test-all: test
	$(PYTEST) -q -m slow tests

test-unit: venv
	$(PYTEST) -q tests/unit

bench: setup
	$(BIN)/python bench/run.py
