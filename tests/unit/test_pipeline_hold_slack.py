"""The ingestion's hold slack must stay below the job's watermark wherever a pipeline's two halves
are configured together (the local stack's PipelineConfig and env; the operator's spec
is checked in test_operator_crd.py through tests/unit/invalid_specs.yaml): a slack at or above it
lets a backfilled trade reach Kafka after the watermark passed it, and the job drops it as late."""

from __future__ import annotations

import pytest

from cryptopipe.contracts import ContractError
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.pipeline import DEFAULT_HOLD_SLACK_S, HOLD_SLACK_ENV, PipelineConfig, ingestion_env


def test_the_default_slack_is_the_ingestions() -> None:
    assert IngestSettings.model_fields["hold_slack_s"].default == DEFAULT_HOLD_SLACK_S


def test_the_rendered_env_carries_the_slack() -> None:
    env = ingestion_env(PipelineConfig(watermark="10s", hold_slack_s=2.5), kafka_bootstrap="k:9092")
    assert env[HOLD_SLACK_ENV] == "2.5"


@pytest.mark.parametrize("watermark", ["5s", "3s"])
def test_a_slack_set_not_shorter_than_the_watermark_is_refused(watermark: str) -> None:
    with pytest.raises(ContractError, match=r"hold_slack_s: .*hold slack \(5s\).*watermark"):
        PipelineConfig(watermark=watermark, hold_slack_s=DEFAULT_HOLD_SLACK_S)


@pytest.mark.parametrize(("watermark", "slack"), [("30s", 5.0), ("10s", 5.0), ("5s", 2.5), ("1s", 0.5)])
def test_a_slack_not_set_is_the_default_or_half_a_shorter_watermark(watermark: str, slack: float) -> None:
    """`cryptopipe up --watermark 5s` ran before the slack existed and must still run."""
    config = PipelineConfig(watermark=watermark)
    assert config.slack_s == slack
    assert ingestion_env(config, kafka_bootstrap="k:9092")[HOLD_SLACK_ENV] == f"{slack:g}"


def test_a_short_watermark_with_a_shorter_slack_is_accepted() -> None:
    assert PipelineConfig(watermark="5s", hold_slack_s=1.0).hold_slack_s == 1.0


def test_an_env_override_is_checked_against_the_watermark() -> None:
    config = PipelineConfig(watermark="30s")
    assert ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "29.5"})[HOLD_SLACK_ENV] == "29.5"
    with pytest.raises(ContractError, match=HOLD_SLACK_ENV):
        ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "30"})
    with pytest.raises(ContractError, match="not a number"):
        ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "5s"})
