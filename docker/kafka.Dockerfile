# syntax=docker/dockerfile:1
# Apache Kafka (KRaft: one node is broker and controller) from the Maven Central jars of
# scripts/maven/kafka-broker.pom.xml (scripts/bootstrap.sh puts them in $KAFKA_LIBS), with
# docker/kafka/kafka.sh as the entrypoint: it writes server.properties from the environment, formats
# the log dir once, then runs the broker (`kafka.sh version`, `kafka.sh storage ...` for the tools).
# scripts/build-images.sh stages the jars in the build context as kafka-libs/ and passes its local
# Debian base with Java 17 (--build-arg JAVA_IMAGE=cryptopipe-debian:bookworm-java17).
ARG JAVA_IMAGE=eclipse-temurin:17-jre

FROM ${JAVA_IMAGE}
COPY kafka-libs/ /opt/kafka/libs/
COPY docker/kafka/kafka.sh /opt/kafka/bin/kafka.sh
RUN chmod 0755 /opt/kafka/bin/kafka.sh \
 && groupadd --system --gid 10001 kafka \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp kafka \
 && mkdir -p /var/lib/kafka/data && chown -R 10001:10001 /var/lib/kafka
ENV KAFKA_HOME=/opt/kafka KAFKA_DATA=/var/lib/kafka/data PATH=/opt/kafka/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 10001:10001
WORKDIR /tmp
VOLUME /var/lib/kafka/data
# 9092: clients; 9093: the KRaft controller
EXPOSE 9092 9093
ENTRYPOINT ["/opt/kafka/bin/kafka.sh"]
CMD ["start"]
