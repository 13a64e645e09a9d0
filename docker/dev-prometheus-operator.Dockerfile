# syntax=docker/dockerfile:1
# prometheus-operator (v0.85.0) and its config reloader for the dev node cluster (dev tooling: the
# chart only ships PodMonitor/ServiceMonitor/PrometheusRule objects, never these). Two targets:
#   operator          the operator (it reads the PodMonitors and PrometheusRules, writes the
#                     Prometheus config Secret and the rule ConfigMaps, runs Prometheus' StatefulSet)
#   config-reloader   prometheus-config-reloader, the sidecar and init container the operator adds to
#                     every Prometheus pod (it unpacks the generated config; --prometheus-config-reloader
#                     names this image)
# scripts/build-go-tools.sh builds both static binaries from the Go module proxy;
# scripts/build-images.sh stages them as prometheus-operator/{operator,prometheus-config-reloader}
# and passes its Debian minbase (--build-arg BASE_IMAGE=cryptopipe-debian:bookworm-minbase).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
# numeric, non-root: nobody, as upstream's images
USER 65534:65534

FROM base AS config-reloader
COPY prometheus-operator/prometheus-config-reloader /bin/prometheus-config-reloader
ENTRYPOINT ["/bin/prometheus-config-reloader"]

FROM base AS operator
COPY prometheus-operator/operator /bin/operator
EXPOSE 8080
ENTRYPOINT ["/bin/operator"]
