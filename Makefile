.PHONY: bench

# ingestion throughput, candle latency and memory of the local stack, side by side (~5 min); see docs/benchmarks.md
bench:
	.venv/bin/python -m cryptopipe_dev.bench $(BENCH_ARGS)

.PHONY: kind-up kind-down chart-lint

# a kind cluster with Strimzi (KRaft Kafka), the Spark operator and MinIO for `skaffold dev`; needs Docker (docs/dependencies.md)
kind-up:
	scripts/kind-up.sh

kind-down:
	scripts/kind-up.sh --down

# helm lint of the operator chart, strict with each ci/*-values.yaml scenario (the pinned helm from scripts/build-control-plane.sh)
HELM ?= $(or $(CRYPTOPIPE_CACHE),$(HOME)/.cache/cryptopipe)/control-plane/bin/helm
chart-lint:
	$(HELM) lint charts/cryptopipe-operator
	for f in charts/cryptopipe-operator/ci/*-values.yaml; do $(HELM) lint --strict charts/cryptopipe-operator -f $$f || exit 1; done

.PHONY: bench-operator

# the operator against a real kube-apiserver: apply-to-children latency, 100 pipelines, operator RSS (~1 min); see docs/benchmarks-operator.md
bench-operator:
	.venv/bin/python -m cryptopipe_dev.bench_operator $(BENCH_OPERATOR_ARGS)
