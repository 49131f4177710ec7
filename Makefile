# wsloop: `make run` starts the whole stack, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu: apt packages, then a pinned venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEPLOYMENT ?= two-pools
APT_PACKAGES := nginx redis-server gettext-base chromium docker.io debootstrap openssh-client
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# nox runs the suite on python3.11 (Django LTS) and python3.13 (newest Django). pyenv's shims
# answer only for the versions it has selected: select both when pyenv is what provides them.
ifneq ($(shell command -v pyenv 2>/dev/null),)
export PYENV_VERSION ?= $(shell pyenv versions --bare --skip-aliases 2>/dev/null \
	| grep -E '^3\.1[13]\.[0-9]+$$' | sort -V | paste -sd: -)
endif

.PHONY: help setup system-deps venv run test unit lint autobahn loadtest loadtest-suite clean

help:
	@echo "make run       start Redis, both uWSGI pools and nginx on http://127.0.0.1:$(PORT)"
	@echo "              (DEPLOYMENT=standalone: one uWSGI; DEPLOYMENT=runserver: manage.py runserver)"
	@echo "make test      lint, type-check, then the whole suite on Django LTS and newest (nox)"
	@echo "make unit      only the tests that need no running services"
	@echo "make loadtest  measure a running stack (see loadtest/README.md)"
	@echo "make loadtest-suite  every scenario, each on a fresh stack, one report (and Channels)"

setup: system-deps venv

system-deps:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/base.txt requirements/test.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup
	$(PY) -m devstack run --port $(PORT) --deployment $(DEPLOYMENT)

lint: venv
	$(VENV)/bin/ruff check wsloop app devstack tests loadtest tools noxfile.py
	$(VENV)/bin/ruff format --check wsloop app devstack tests loadtest tools noxfile.py
	$(VENV)/bin/mypy wsloop

unit: venv
	$(PY) -m pytest -m "not stack and not autobahn"

test: setup lint
	$(VENV)/bin/nox --reuse-existing-virtualenvs

autobahn: setup
	$(PY) -m pytest -m autobahn -s

loadtest: venv
	$(PY) -m loadtest.bench --base-url http://127.0.0.1:$(PORT)

loadtest-suite: venv
	$(PY) -m loadtest.suite --peer channels

clean:
	rm -rf var .cache .nox .pytest_cache .mypy_cache .ruff_cache
