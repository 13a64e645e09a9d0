"""The operator benchmark (``python -m cryptopipe_dev.bench_operator``, ``make bench-operator``):
apply-to-children latency, the time to reconcile 100 CryptoPipelines and the operator's RSS,
against a real kube-apiserver. Method and figures: docs/benchmarks-operator.md."""
