# syntax=docker/dockerfile:1
# Prometheus for the dev node cluster (dev tooling: the chart never names it): Debian bookworm's
# `prometheus` package, run by prometheus-operator as the `prometheus` container of the Prometheus
# CR's pods (services/cryptopipe_dev/cluster_manifests/monitoring.yaml). The operator passes the
# flags (--config.file, --storage.tsdb.path=/prometheus, ...) as args: the entry point is the binary.
# scripts/build-images.sh passes its local Debian base that already holds the package
# (debootstrap --include=prometheus: --build-arg BASE_IMAGE=cryptopipe-debian:bookworm-prometheus),
# so the RUN below installs nothing and needs no network; with the public default base it
# apt-get installs the same package.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE}
RUN if ! command -v prometheus >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends prometheus && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 prometheus-dev \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /prometheus prometheus-dev \
 && mkdir -p /prometheus && chown 10001:10001 /prometheus
USER 10001:10001
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
