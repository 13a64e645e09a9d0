"""The job's start-up against the lake's generation records (cryptopipe/lake/generations.py): which
checkpoint generation this driver runs, and where each window size's query starts reading.
No Spark in here: the records are small JSON objects read and written with pyarrow."""

from __future__ import annotations

import dataclasses
import logging

from candles_job.settings import JobSettings
from cryptopipe.contracts import parse_duration
from cryptopipe.lake.generations import (
    GenerationRecord,
    Resolution,
    handover_start_us,
    kafka_start_ms,
    older_complete_through_us,
    read_generations,
    resolve_generation,
    write_record_once,
)

log = logging.getLogger("cryptopipe.job.generation")


@dataclasses.dataclass(frozen=True)
class GenerationStart:
    settings: JobSettings  # checkpoint_generation set to the effective generation
    record: GenerationRecord
    resolution: Resolution

    def first_window_us(self, window: str) -> int | None:
        """The first window start this generation writes for a window size (None: every one)."""
        return self.record.first_window_us.get(window)

    def kafka_starting_options(self, window: str) -> dict[str, str]:
        """The Kafka source's start when the window's checkpoint is new (Spark ignores them when it
        resumes one): a timestamp before the handed-over windows, else ``starting_offsets``."""
        first = self.first_window_us(window)
        if first is not None:
            slack_s = max(parse_duration(self.settings.handover_slack), parse_duration(self.settings.max_clock_skew))
            return _by_timestamp(kafka_start_ms(first, slack_s))
        start = self.settings.starting_offsets
        return _by_timestamp(int(start)) if start.isdigit() else {"startingOffsets": start}


def _by_timestamp(ms: int) -> dict[str, str]:
    # every partition from its first record at or after ms; a partition with none (idle since)
    # starts at its end instead of failing the query
    return {"startingTimestamp": str(max(ms, 0)), "startingOffsetsByTimestampStrategy": "latest"}


def start_generation(settings: JobSettings, filesystem, *, now_us: int) -> GenerationStart:
    """Resolve the generation against the lake, and write its record if it is new (with each window
    size's handover point from the older generations' complete-through)."""
    resolution = resolve_generation(
        settings.checkpoint_generation, settings.state_fingerprint, read_generations(settings.lake, filesystem)
    )
    generation = resolution.generation
    first_window_us: dict[str, int | None] = {}
    for window, seconds in zip(settings.windows, settings.window_seconds, strict=True):
        through = (
            older_complete_through_us(settings.lake, filesystem, window=window, before=generation)
            if settings.handover
            else None
        )
        first_window_us[window] = handover_start_us(through, seconds)
    wanted = GenerationRecord(
        generation=generation,
        fingerprint=settings.state_fingerprint,
        pipeline_uid=settings.pipeline_uid,
        created_us=now_us,
        first_window_us=first_window_us,
    )
    # a restart of this generation's driver finds the record there and keeps its handover points
    record = write_record_once(settings.lake, filesystem, wanted)
    if generation != settings.checkpoint_generation:
        log.warning(
            "checkpoint generation differs from the one handed over",
            extra={"handed": settings.checkpoint_generation, "generation": generation, "reason": resolution.reason},
        )
    log.info(
        "checkpoint generation",
        extra={
            "generation": generation,
            "reason": resolution.reason,
            "first_window_us": dict(record.first_window_us),
        },
    )
    return GenerationStart(settings.model_copy(update={"checkpoint_generation": generation}), record, resolution)
