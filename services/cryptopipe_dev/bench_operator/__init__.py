"""The operator benchmark (``python -m cryptopipe_dev.bench_operator``, ``make bench-operator``):
apply-to-children latency, the time to reconcile 100 CryptoPipelines and the operator's RSS,
against a real kube-apiserver. Method and figures: docs/benchmarks-operator.md.

One module per part of the run, in the order __main__ runs them: startup (control plane and
operator), pipelines (what is created and what it should become), watch (observing the API server),
memory (RSS and CPU per phase), latency (warm-up and one pipeline at a time), throughput (the burst),
report (the figures against the targets). Machine, /proc and /metrics readers are the data-plane
benchmark's (cryptopipe_dev.bench) and the commands' (cryptopipe_dev.commands.scrape)."""
