"""Checkpoint generations and the Flink-style controls through the operator, against the real
kube-apiserver (issue 11, point 6): the fields that break a checkpoint (Kafka cluster, Spark image,
executor layout) start a new generation; restartNonce restarts the job on the same checkpoint under
upgradeMode last-state and starts a fresh generation under fresh; the CRD refuses a fresh start
that names no timestamp. And point 4: a pipeline created again over a lake that holds newer
generations takes its generation from the lake's records (the session's S3 server)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cryptopipe.lake.generations import GenerationRecord, write_record_once
from cryptopipe.lake.layout import LakeLocation
from cryptopipe_dev.stack.kube import KubeControlPlane, KubectlError
from cryptopipe_dev.stack.s3server import S3Server
from cryptopipe_operator.spec import parse_spec, state_fingerprint
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import get
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube


def _patch(kube: KubeControlPlane, ns: str, name: str, spec: dict[str, Any]) -> None:
    kube.kubectl("patch", f"cryptopipeline/{name}", "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))


def _applied(kube: KubeControlPlane, ns: str, name: str, generation: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(status, SparkApplication spec) once the operator has applied metadata.generation ``generation``."""
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    status = obj.get("status") or {}
    assert status.get("observedGeneration") == generation, status
    app = get(kube, "SparkApplication", ns, f"{name}-candles")
    assert app is not None
    return status, app["spec"]


def _arg(spec: dict[str, Any], flag: str) -> str | None:
    args = spec["arguments"]
    return args[args.index(flag) + 1] if flag in args else None


def test_controls_and_state_breaking_fields(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "gens"
    kube.kubectl("create", "-f", "-", input=json.dumps(pipeline(name, ns)))

    def at(generation: int, checkpoint: int) -> tuple[dict[str, Any], dict[str, Any]]:
        def ready() -> tuple[dict[str, Any], dict[str, Any]]:
            status, spec = _applied(kube, ns, name, generation)
            assert status.get("checkpointGeneration") == checkpoint, status
            assert _arg(spec, "--checkpoint-generation") == str(checkpoint)
            return status, spec

        # generous: each reconcile waits its turn on a loaded 2-core machine
        return eventually(
            ready, f"generation {generation} applied at checkpoint {checkpoint}", timeout=120, operator=operator
        )

    status, first = at(1, 1)
    assert status["stateFingerprintVersion"] == 2
    assert _arg(first, "--state-fingerprint") == status["stateFingerprint"]
    assert _arg(first, "--handover") is None  # the job's default: a new generation hands over

    # restartNonce under last-state: the SparkApplication's spec changes (spark-operator resubmits),
    # the checkpoint stays
    _patch(kube, ns, name, {"restartNonce": 1})
    _, restarted = at(2, 1)
    assert restarted["driver"]["annotations"]["cryptopipeline.io/restart-nonce"] == "1"

    # fields the checkpoint depends on, which the fingerprint missed before: each a new generation
    _patch(kube, ns, name, {"spark": {"image": "cryptopipe/spark-job:v2"}})
    at(3, 2)
    _patch(kube, ns, name, {"kafka": {"bootstrapServers": "other-kafka-bootstrap:9092"}})
    at(4, 3)
    _patch(kube, ns, name, {"spark": {"executor": {"instances": 2}}})
    _, layout = at(5, 4)
    assert _arg(layout, "--shuffle-partitions") == "2"
    _patch(kube, ns, name, {"spark": {"executor": {"memory": "2g"}}})  # not in the checkpoint
    at(6, 4)

    # upgradeMode fresh: a new generation from freshStart, and again at every nonce
    _patch(kube, ns, name, {"upgradeMode": "fresh", "freshStart": {"from": "earliest"}})
    _, fresh = at(7, 5)
    assert (_arg(fresh, "--handover"), _arg(fresh, "--starting-offsets")) == ("false", "earliest")
    _patch(kube, ns, name, {"restartNonce": 2})
    at(8, 6)

    # the API server refuses a fresh start from a timestamp that names none (the CRD's CEL rule)
    with pytest.raises(KubectlError, match=r"spec.freshStart.timestamp"):
        _patch(kube, ns, name, {"freshStart": {"from": "timestamp"}})


@pytest.mark.parametrize(("same_spec", "expected"), [(True, 2), (False, 3)])
def test_a_recreated_pipeline_takes_its_generation_from_the_lake(
    kube: KubeControlPlane,
    operator: OperatorProcess,
    kube_namespace: str,
    s3: S3Server,
    same_spec: bool,
    expected: int,
) -> None:
    """Point 4 in the operator: a pipeline created over a lake that already holds generations 1 and
    2 (deleted with Retain, created again: its status starts empty) records the lake's newest
    generation when its fingerprint is this spec's, else the one after it; never 1."""
    ns, name, prefix = kube_namespace, "again", f"gens-{uuid.uuid4().hex[:8]}"
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "lake-credentials",  # the base spec's credentialsSecretRef
        "-n",
        ns,
        f"--from-literal=accessKey={s3.access_key}",
        f"--from-literal=secretKey={s3.secret_key}",
    )
    body = pipeline(name, ns, sink={"endpoint": s3.endpoint, "bucket": "lake", "prefix": prefix})
    spec = parse_spec(body["spec"])
    lake = LakeLocation("lake", prefix)
    filesystem = s3.connection.arrow_filesystem()
    mine = state_fingerprint(spec, prefix)
    write_record_once(lake, filesystem, GenerationRecord(1, "an-older-spec"))
    write_record_once(lake, filesystem, GenerationRecord(2, mine if same_spec else "another-spec"))
    kube.kubectl("create", "-f", "-", input=json.dumps(body))

    def recorded() -> dict[str, Any]:
        status, app = _applied(kube, ns, name, 1)
        assert status.get("checkpointGeneration") == expected, status
        assert _arg(app, "--checkpoint-generation") == str(expected)
        return status

    status = eventually(recorded, f"checkpoint generation {expected} from the lake", timeout=120, operator=operator)
    assert status["checkpointPath"] == f"s3a://{lake.checkpoint_root(expected)}"
