"""The ingestion's hold slack must stay below the job's watermark wherever a pipeline's two halves
are configured together (the local stack's PipelineConfig and env, the dev CLI; the operator's spec
is checked in test_operator_crd.py through tests/unit/invalid_specs.yaml): a slack at or above it
lets a backfilled trade reach Kafka after the watermark passed it, and the job drops it as late."""

from __future__ import annotations

import pytest

from cryptopipe.contracts import ContractError
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.pipeline import DEFAULT_HOLD_SLACK_S, HOLD_SLACK_ENV, PipelineConfig, ingestion_env
from cryptopipe_dev.cli import main as dev_cli


def test_the_default_slack_is_the_ingestions() -> None:
    assert IngestSettings.model_fields["hold_slack_s"].default == DEFAULT_HOLD_SLACK_S


def test_the_rendered_env_carries_the_slack() -> None:
    env = ingestion_env(PipelineConfig(watermark="10s", hold_slack_s=2.5), kafka_bootstrap="k:9092")
    assert env[HOLD_SLACK_ENV] == "2.5"


@pytest.mark.parametrize("watermark", ["5s", "3s"])
def test_a_watermark_not_longer_than_the_default_slack_is_refused(watermark: str) -> None:
    with pytest.raises(ContractError, match=r"hold_slack_s: .*hold slack \(5s\).*watermark"):
        PipelineConfig(watermark=watermark)


def test_a_short_watermark_with_a_shorter_slack_is_accepted() -> None:
    assert PipelineConfig(watermark="5s", hold_slack_s=1.0).hold_slack_s == 1.0


def test_an_env_override_is_checked_against_the_watermark() -> None:
    config = PipelineConfig(watermark="30s")
    assert ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "29.5"})[HOLD_SLACK_ENV] == "29.5"
    with pytest.raises(ContractError, match=HOLD_SLACK_ENV):
        ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "30"})
    with pytest.raises(ContractError, match="not a number"):
        ingestion_env(config, kafka_bootstrap="k:9092", extra={HOLD_SLACK_ENV: "5s"})


@pytest.mark.parametrize("command", [["up", "--synthetic"], ["replay", "rec.jsonl", "--output-csv", "out.csv"]])
def test_the_dev_cli_refuses_a_watermark_at_the_slack(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        dev_cli([*command, "--watermark", "5s"])
    assert exited.value.code == 2
    assert "--watermark: the ingestion's hold slack (5s)" in capsys.readouterr().err
