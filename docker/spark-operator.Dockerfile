# syntax=docker/dockerfile:1
# The Kubeflow spark-operator (v2.5.2: `spark-operator controller start ...`, `spark-operator webhook
# start ...`) on a Spark image: its controller submits each SparkApplication with
# $SPARK_HOME/bin/spark-submit, so the image is Spark plus one Go binary.
# scripts/build-images.sh builds the binary from the Go module proxy
# (github.com/kubeflow/spark-operator/v2@v2.5.2), stages it in the build context as
# spark-operator/spark-operator, and passes the project's own Spark image (docker/spark-job.Dockerfile,
# target `spark`: Spark from the pyspark wheel, the connector jars, uid 185):
#   --build-arg SPARK_IMAGE=cryptopipe-spark:4.1.3
# The default is the official Spark image, which is what upstream's image is built on.
ARG SPARK_IMAGE=apache/spark:4.1.3

FROM ${SPARK_IMAGE}
COPY spark-operator/spark-operator /usr/bin/spark-operator
# numeric, non-root: Spark's user (the chart's runAsNonRoot can verify it)
USER 185:185
ENTRYPOINT ["/usr/bin/spark-operator"]
CMD ["--help"]
