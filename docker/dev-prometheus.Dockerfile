# syntax=docker/dockerfile:1
# Prometheus for the dev node cluster (dev tooling: the chart never names it), run by
# prometheus-operator as the `prometheus` container of the Prometheus CR's pods
# (services/cryptopipe_dev/cluster_manifests/monitoring.yaml). The operator passes the flags
# (--config.file, --storage.tsdb.path=/prometheus, ...) as args: the entry point is the binary.
# scripts/build-go-tools.sh builds prometheus and promtool from the Go module proxy
# (github.com/prometheus/prometheus): Debian's package has no Kubernetes service discovery, which
# every PodMonitor and ServiceMonitor job needs (docs/cluster.md, "Prometheus in the cluster").
# scripts/build-images.sh stages them as prometheus/{prometheus,promtool} and passes its Debian
# minbase (--build-arg BASE_IMAGE=cryptopipe-debian:bookworm-minbase). No web UI assets: the API,
# scraping and rule evaluation need none.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE}
COPY prometheus/prometheus prometheus/promtool /usr/bin/
RUN groupadd --system --gid 10001 prometheus-dev \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /prometheus prometheus-dev \
 && mkdir -p /prometheus && chown 10001:10001 /prometheus
USER 10001:10001
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
