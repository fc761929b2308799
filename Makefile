# network-mapper — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := tcpdump iproute2 nftables graphviz procps

.PHONY: install test lint typecheck unit demo bench clean sandbox-up sandbox-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m sandbox demo

sandbox-up: install
	$(BIN)/python -m sandbox up

sandbox-down: install
	$(BIN)/python -m sandbox down

bench: install
	@for b in bench/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	-$(BIN)/python -m sandbox down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
