# The platform's entry points. `make up` runs it, `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help
STACK := infra/stack/stack.sh
VENV := .venv
PY := $(VENV)/bin/python
# Loads the credentials and addresses `make up` wrote, for the commands that need them.
WITH_STACK_ENV := set -a; [ -f .local/stack.env ] && . .local/stack.env; set +a;
# The fault suite's own stack (infra/stack/faults.env): its knobs, then its addresses.
FAULTS_HOME := $(CURDIR)/.local/faults
WITH_FAULT_STACK := set -a; . infra/stack/faults.env; MLOPS_HOME=$(FAULTS_HOME); set +a;

.PHONY: help install venv up demo down status test test-unit test-browser test-faults beside fault-matrix test-integration lint format schemas bench-bus bench-data bench-serving bench-replay bench-drift bench-console bench-scale compose-env k8s-check k8s-credentials clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: ## the Python environment from the lockfile (uv)
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --root-user-action=ignore uv
	@python3 -m uv sync --frozen --quiet

install: venv ## everything the stack needs: apt packages, Kafka jars, MinIO, Jaeger and kustomize binaries
	@$(STACK) install

up: install ## start Kafka, PostgreSQL, MinIO, Jaeger and the services (idempotent)
	@$(STACK) up

demo: up ## the closed loop live: drift, one retrain, promotion, hot-swap; ends with a report (< 10 min)
	@$(WITH_STACK_ENV) $(PY) -m infra.demo

down: ## stop what `make up` started
	@$(STACK) down

status: ## health of every component; the services' supervisor state, uptime and restarts
	@$(STACK) status

test: install ## everything: lint, unit, integration, e2e and browser tests against the real stack; the fault matrix on a stack of its own
	@$(MAKE) --no-print-directory lint
	@$(STACK) install-browser
	@was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	if $(STACK) up; then \
	  mkdir -p .local; $(MAKE) --no-print-directory beside >.local/test-beside.log 2>&1 & beside=$$!; \
	  $(WITH_STACK_ENV) $(PY) -m pytest tests/integration -p no:cacheprovider; rc=$$?; \
	  wait $$beside || rc=1; \
	  echo "--- beside the integration tests: the e2e and browser tests, the fault matrix, the unit tests ---"; \
	  cat .local/test-beside.log; \
	else rc=1; echo "make test: the stack did not start, no test was run" >&2; fi; \
	if [ $$was_up = 0 ]; then $(STACK) down; fi; \
	exit $$rc

test-unit: venv ## the fast tests, no infrastructure needed
	@$(PY) -m pytest tests/unit -q

test-browser: venv ## the console in Debian's headless Chromium, after a closed-loop run (stack up)
	@$(STACK) install-browser
	@$(WITH_STACK_ENV) $(PY) -m pytest tests/e2e -m browser -p no:cacheprovider

test-faults: install ## the fault matrix under load, on a stack of its own (.local/faults, infra/stack/faults.env)
	@$(MAKE) --no-print-directory fault-matrix

beside: # what make test runs beside the integration tests: e2e and browser tests (each starts its platform on the main stack), the fault matrix on its own stack, the unit tests
	@rc=0; ( $(WITH_STACK_ENV) $(PY) -m pytest tests/e2e -p no:cacheprovider ) || rc=1; \
	$(MAKE) --no-print-directory fault-matrix || rc=1; \
	$(PY) -m pytest tests/unit -p no:cacheprovider || rc=1; exit $$rc

fault-matrix: # test-faults without the install
	@$(WITH_FAULT_STACK) \
	if $(STACK) up kafka postgres minio jaeger; then \
	  set -a; . $(FAULTS_HOME)/stack.env; set +a; \
	  $(PY) -m pytest tests/faults -p no:cacheprovider; rc=$$?; \
	else rc=1; echo "make test-faults: the fault stack did not start, no test was run" >&2; fi; \
	$(STACK) down; exit $$rc

test-integration: venv ## integration tests against an already running stack (`make up`)
	@$(WITH_STACK_ENV) $(PY) -m pytest tests/integration -p no:cacheprovider

lint: venv ## ruff lint and format check, and the event schemas are up to date
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check --quiet .
	@$(PY) -m shared.events.schemas check

format: venv ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix --quiet .
	@$(VENV)/bin/ruff format --quiet .

schemas: venv ## regenerate schemas/events from the pydantic models (refuses breaking changes)
	@$(PY) -m shared.events.schemas generate

bench-bus: up ## events/s of the shared producer->consumer path next to a raw confluent-kafka loop
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_bus

compose-env: ## for docker compose: write .env with generated credentials (kept if present)
	@if [ -f .env ]; then echo ".env exists, kept"; else \
	  umask 077; { echo "POSTGRES_PASSWORD=$$(openssl rand -hex 16)"; \
	  echo "MINIO_ROOT_USER=mlops-$$(openssl rand -hex 4)"; \
	  echo "MINIO_ROOT_PASSWORD=$$(openssl rand -hex 20)"; \
	  echo "REGISTRY_API_KEYS={\"admin\": \"$$(openssl rand -hex 24)\"}"; } > .env; echo "wrote .env"; fi
	@grep -q '^CONSOLE_SESSION_SECRET=' .env || { umask 077; \
	  echo "CONSOLE_SESSION_SECRET=$$(openssl rand -hex 32)" >> .env; echo "added CONSOLE_SESSION_SECRET to .env"; }

k8s-check: venv ## render infra/k8s's overlays (kustomize, built once) and validate them offline
	@$(PY) -m infra.k8s.generate check
	@$(PY) -m infra.k8s.check

k8s-credentials: ## for infra/k8s: write base/credentials.env with generated credentials (kept if present)
	@f=infra/k8s/base/credentials.env; if [ -f $$f ]; then echo "$$f exists, kept"; else \
	  umask 077; { echo "POSTGRES_PASSWORD=$$(openssl rand -hex 16)"; \
	  echo "MINIO_ROOT_USER=mlops-$$(openssl rand -hex 4)"; \
	  echo "MINIO_ROOT_PASSWORD=$$(openssl rand -hex 20)"; \
	  echo "REGISTRY_API_KEYS={\"admin\": \"$$(openssl rand -hex 24)\"}"; \
	  echo "CONSOLE_SESSION_SECRET=$$(openssl rand -hex 32)"; } > $$f; echo "wrote $$f"; fi

bench-data: up ## records/s raw->validated->features next to a raw relay; online lookups next to Feast
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_data

bench-serving: up ## requests/s and p50/p99 of /predict next to `mlflow models serve`, same model and load
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_serving

bench-drift: venv ## drift delay, false alarms, misses and CPU of the monitoring detectors next to Evidently
	@$(PY) -m tests.bench.bench_drift

bench-console: up ## console render time p50/p99 per page (100 models x 20 versions, 10,000 points) next to its API calls
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_console

bench-replay: up ## events/s of `mlops replay` next to a raw confluent-kafka consume of the same range
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_replay

bench-scale: up ## registry p99 (1,000 models), serving memory (200 champions), monitoring CPU (1 vs 200 models), 1 vs 2 data-plane replicas
	@$(WITH_STACK_ENV) $(PY) -m tests.bench.bench_scale

clean: ## stop the stack and delete its data and credentials
	@$(STACK) clean
