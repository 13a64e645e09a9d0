# syntax=docker/dockerfile:1
# The S3 server: Versity's S3 gateway (versitygw) serving a folder (buckets are folders), standing in
# for MinIO in the dev cluster as it does in the local stack (services/cryptopipe_dev/stack/s3server.py).
# versitygw is one static Go binary: scripts/bootstrap.sh builds it ($VERSITYGW_BIN) and
# scripts/build-images.sh stages it in the build context as versitygw/versitygw, with its local
# Debian minbase as the base (--build-arg BASE_IMAGE=cryptopipe-debian:bookworm-minbase).
# Credentials: ROOT_ACCESS_KEY / ROOT_SECRET_KEY (versitygw's own env names) or --access/--secret.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE}
COPY versitygw/versitygw /usr/local/bin/versitygw
# (its mode comes from the staged file: a chmod here would store the binary twice)
RUN groupadd --system --gid 10001 s3 \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp s3 \
 && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /tmp
VOLUME /data
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/versitygw"]
CMD ["--port", ":7070", "posix", "/data"]
