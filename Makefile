# wsloop: `make run` starts the whole stack, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu: apt packages, then a pinned venv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEPLOYMENT ?= two-pools
APT_PACKAGES := nginx redis-server
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help setup system-deps venv run test unit lint autobahn loadtest clean

help:
	@echo "make run       start Redis, both uWSGI pools and nginx on http://127.0.0.1:$(PORT)"
	@echo "make test      lint, type-check and run the whole test suite (starts its own stack)"
	@echo "make unit      only the tests that need no running services"
	@echo "make loadtest  measure a running stack (see loadtest/README.md)"

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

$(VENV)/.installed: requirements/base.txt requirements/test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup
	$(PY) -m devstack run --port $(PORT) --deployment $(DEPLOYMENT)

lint: venv
	$(VENV)/bin/ruff check wsloop app devstack tests loadtest
	$(VENV)/bin/ruff format --check wsloop app devstack tests loadtest
	$(VENV)/bin/mypy wsloop

unit: venv
	$(PY) -m pytest -m "not stack and not autobahn"

test: setup lint
	$(PY) -m pytest

autobahn: setup
	$(PY) -m pytest -m autobahn -s

loadtest: venv
	$(PY) -m loadtest.bench --base-url http://127.0.0.1:$(PORT)

clean:
	rm -rf var .cache .pytest_cache .mypy_cache .ruff_cache
