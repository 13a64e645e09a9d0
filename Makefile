# Everyday commands. `make help` lists them; each says what it runs, so nothing here is magic.
# The venv and the cached services come from scripts/bootstrap.sh (`make bootstrap`).

VENV ?= .venv
PY := $(VENV)/bin/python
CACHE ?= $(or $(CRYPTOPIPE_CACHE),$(HOME)/.cache/cryptopipe)
# the pinned helm from scripts/build-control-plane.sh
HELM ?= $(CACHE)/control-plane/bin/helm

.DEFAULT_GOAL := help
.PHONY: help bootstrap up test lint fmt typecheck bench bench-operator bench-lake chaos chart-lint images kind-up kind-down

help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

bootstrap: ## install what is missing into .venv and the cache (scripts/bootstrap.sh)
	scripts/bootstrap.sh

up: ## the local stack against live Coinbase (ARGS="--synthetic" or ARGS="--replay FILE")
	scripts/up.sh $(ARGS)

test: ## the README's test command: bootstrap, lint, every test (ARGS passes pytest options)
	scripts/test.sh $(ARGS)

lint: ## import layering, ruff lint and format check, mypy (scripts/lint.sh)
	scripts/lint.sh

fmt: ## format and autofix in place (ruff format, ruff check --fix)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: ## mypy alone (settings in pyproject.toml)
	PYTHONPATH=services:operator:spark-apps $(VENV)/bin/mypy

bench: ## everything side by side, one table + PNG chart (~20 min, scaled; needs .[bench]; docs/benchmarks.md)
	$(PY) -m cryptopipe_dev.bench.suite --json bench-report.json $(BENCH_ARGS)

.PHONY: bench-full bench-freshness bench-targets
bench-full: ## the same at the issue's full sizes (~35 min: 200k trades, a day of backlog, 30x50 lake, 25 min live)
	$(PY) -m cryptopipe_dev.bench.suite --full --json bench-report-full.json $(BENCH_ARGS)

bench-freshness: ## candle freshness alone at the shipped defaults, 25 min of live-rate feed (+ footprint)
	$(PY) -m cryptopipe_dev.bench.suite --only freshness --freshness-seconds 1500 --json bench-freshness.json $(BENCH_ARGS)

bench-targets: ## the earlier 3-part run: hot path vs bare client, 10 s candle latency, memory (~5 min)
	$(PY) -m cryptopipe_dev.bench $(BENCH_ARGS)

.PHONY: bench-compare
bench-compare: ## ingestion vs cryptofeed and the bare client, ~200k trades (needs .[bench]; docs/benchmarks.md)
	$(PY) -m cryptopipe_dev.bench --peers $(BENCH_ARGS)

bench-operator: ## the operator against a real kube-apiserver (~1 min; docs/benchmarks-operator.md)
	$(PY) -m cryptopipe_dev.bench_operator $(BENCH_OPERATOR_ARGS)

bench-lake: ## the lake as it grows: 108k small files, one product-day read before/after compaction (~15 min)
	$(PY) -m cryptopipe_dev.bench.lake_growth $(BENCH_LAKE_ARGS)

chaos: ## the fault suite: every scenario on the real stack, table + ./chaos-report.json (CHAOS_ARGS="--quick"; docs/reliability.md)
	$(PY) -m cryptopipe_dev.chaos $(CHAOS_ARGS)

chart-lint: ## helm lint of the operator chart, strict with each ci/*-values.yaml scenario
	$(HELM) lint charts/cryptopipe-operator
	for f in charts/cryptopipe-operator/ci/*-values.yaml; do $(HELM) lint --strict charts/cryptopipe-operator -f $$f || exit 1; done

images: ## the images, built here with a local dockerd and Debian base (scripts/build-images.sh; ARGS="--load-into SOCK")
	scripts/build-images.sh $(ARGS)

kind-up: ## a kind cluster with Strimzi, the Spark operator and MinIO (needs Docker and a registry)
	scripts/kind-up.sh

kind-down: ## delete that kind cluster
	scripts/kind-up.sh --down
