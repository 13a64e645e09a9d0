"""The candle job as a spark-operator SparkApplication, and its driver's ServiceAccount and RoleBinding."""

from __future__ import annotations

from cryptopipe.lake.s3 import S3Connection
from cryptopipe.pipeline import job_arguments, job_env
from cryptopipe.spark_conf import spark_conf
from cryptopipe_operator.render_common import Manifest, labels, metadata, restricted_container_security
from cryptopipe_operator.render_kafka_auth import kafka_auth_env, spark_ca_secrets, spark_cafile
from cryptopipe_operator.spec import (
    Pipeline,
    SparkPod,
    job_start,
    shuffle_partitions,
    state_fingerprint,
    to_pipeline_config,
)

COMPONENT = "spark"
SPARK_API_VERSION = "sparkoperator.k8s.io/v1beta2"
MAIN_APPLICATION_FILE = "local:///opt/cryptopipe/spark-apps/candles_job/main.py"
JOB_METRICS_PORT = 9108
JOB_ENV_PREFIX = "CRYPTOPIPE_JOB_"
RESTART_NONCE_ANNOTATION = "cryptopipeline.io/restart-nonce"  # candles_job.settings.JobSettings
# spark-operator derives these from the SparkApplication's own fields (master URL, driver memory,
# the driver's service address); the local-mode values spark_conf() gives them must not leak in
_SET_BY_SPARK_OPERATOR = {"spark.master", "spark.driver.memory", "spark.driver.host", "spark.driver.bindAddress"}
# Stand-ins for the credentials: job_env() and s3a_conf() are called with them to learn which
# entries are secret, so a renamed variable or key cannot slip a secret into the manifest.
_ACCESS_KEY = "\0access-key"
_SECRET_KEY = "\0secret-key"
# Always: a streaming job has no successful end, so any exit is restarted. Without the intervals
# spark-operator v2 never finds a retry due; they grow linearly with the attempt count.
RESTART_POLICY = {"type": "Always", "onFailureRetryInterval": 30, "onSubmissionFailureRetryInterval": 60}


def spark_application_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-candles"


def service_account_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-spark"


def _s3_connection(pipeline: Pipeline) -> S3Connection:
    sink = pipeline.spec.sink
    return S3Connection(sink.endpoint, _ACCESS_KEY, _SECRET_KEY, sink.region)


def job_container_env(pipeline: Pipeline) -> list[dict[str, object]]:
    """job_env()'s variables, the credentials as references to the sink's Secret."""
    ref = pipeline.spec.sink.credentials_secret_ref
    secret_keys = {_ACCESS_KEY: ref.access_key_key, _SECRET_KEY: ref.secret_key_key}
    env: list[dict[str, object]] = []
    for name, value in job_env(_s3_connection(pipeline)).items():
        if value in secret_keys:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": secret_keys[value]}}})
        else:
            env.append({"name": name, "value": value})
    # Kafka TLS/SCRAM: the job builds its JAAS line from the password variable (a secretKeyRef)
    return env + kafka_auth_env(pipeline, JOB_ENV_PREFIX, cafile=spark_cafile(pipeline))


def job_spark_conf(pipeline: Pipeline) -> dict[str, str]:
    """spark_conf()'s job settings and the s3a settings, without credentials (the job reads those
    from env) and without what spark-operator sets itself."""
    conf = spark_conf(s3=_s3_connection(pipeline), cores=_parallelism(pipeline), ui=True)
    return {
        key: value
        for key, value in conf.items()
        if key not in _SET_BY_SPARK_OPERATOR and value not in (_ACCESS_KEY, _SECRET_KEY)
    }


def _parallelism(pipeline: Pipeline) -> int:
    return shuffle_partitions(pipeline.spec)


def _pod(pipeline: Pipeline, pod: SparkPod) -> dict[str, object]:
    # coreRequest only when set: spark-operator then requests the pod's cores
    # the Kafka CA on driver and executors: the executors' tasks read the topic
    secrets = spark_ca_secrets(pipeline)
    return (
        ({"coreRequest": pod.core_request} if pod.core_request else {})
        | ({"secrets": secrets} if secrets else {})
        | {
            "cores": pod.cores,
            "memory": pod.memory,
            "labels": labels(pipeline, COMPONENT),
            "env": job_container_env(pipeline),
            # no readOnlyRootFilesystem: Spark writes its work and local dirs into the image's tree
            "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "securityContext": restricted_container_security(),
        }
    )


def render_spark_application(
    pipeline: Pipeline, checkpoint_generation: int, *, starting_offsets: str | None = None
) -> Manifest:
    """Where a new generation starts (spec.job_start: the hand-over, or spec.freshStart under
    ``upgradeMode: fresh``) matters only when its checkpoint does not exist yet (Spark resumes from
    the checkpoint otherwise). ``starting_offsets`` overrides it (no hand-over). A restartNonce is
    an annotation of the driver: changing it changes the SparkApplication's spec, which
    spark-operator answers by resubmitting the application (on the same checkpoint)."""
    spark = pipeline.spec.spark
    start = job_start(pipeline.spec)
    if starting_offsets is not None:
        start = {"handover": "false", "starting_offsets": starting_offsets}
    nonce = pipeline.spec.restart_nonce
    driver = _pod(pipeline, spark.driver) | {
        "serviceAccount": service_account_name(pipeline),
        "ports": [{"name": "metrics", "containerPort": JOB_METRICS_PORT, "protocol": "TCP"}],
    }
    if nonce is not None:
        driver["annotations"] = {RESTART_NONCE_ANNOTATION: str(nonce)}
    executor = _pod(pipeline, spark.executor) | {"instances": spark.executor.instances}
    return {
        "apiVersion": SPARK_API_VERSION,
        "kind": "SparkApplication",
        "metadata": metadata(pipeline, spark_application_name(pipeline), COMPONENT),
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": spark.image,
            "imagePullPolicy": spark.image_pull_policy,
            "sparkVersion": spark.spark_version,
            "mainApplicationFile": MAIN_APPLICATION_FILE,
            "arguments": job_arguments(
                to_pipeline_config(pipeline, checkpoint_generation),
                kafka_bootstrap=pipeline.kafka_bootstrap,
                s3_endpoint=pipeline.spec.sink.endpoint,
                metrics_port=JOB_METRICS_PORT,
                shuffle_partitions=shuffle_partitions(pipeline.spec),
                starting_offsets=start["starting_offsets"],
                handover=start["handover"] == "true",
                state_fingerprint=state_fingerprint(pipeline.spec, pipeline.lake_prefix),
                pipeline_uid=pipeline.uid,
            ),
            "sparkConf": job_spark_conf(pipeline),
            "restartPolicy": RESTART_POLICY,
            "suspend": pipeline.spec.suspend,
            "driver": driver,
            "executor": executor,
        },
    }


def render_service_account(pipeline: Pipeline) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(pipeline, service_account_name(pipeline), COMPONENT),
    }


def role_binding_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-spark-driver"


def legacy_role_name(pipeline: Pipeline) -> str:
    """The per-pipeline Role (and its RoleBinding, of the same name) that operators before the Spark
    driver ClusterRole created: the reconcile deletes them (render.unwanted_children)."""
    return service_account_name(pipeline)


def render_role_binding(pipeline: Pipeline, cluster_role: str) -> Manifest:
    """The driver's ServiceAccount bound, in the pipeline's namespace only, to the chart's Spark
    driver ClusterRole (charts/cryptopipe-operator/templates/_helpers.tpl, sparkDriverRules: its
    executor pods, their ConfigMap, its Service). The operator holds bind on that ClusterRole and
    none of its rights, which a per-pipeline Role would have needed (Kubernetes lets no one grant
    what they do not hold). A roleRef is immutable: the name differs from the old Role binding's."""
    name = service_account_name(pipeline)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(pipeline, role_binding_name(pipeline), COMPONENT),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": pipeline.namespace}],
    }
