"""When the job runs its micro-batches: how often it reads new data, and when it applies a watermark
that moved. Pure: settings in, the trigger, Kafka source options and session conf out.

Why not Spark's processing-time trigger alone: Spark computes the watermark at the end of a batch
and applies it (emits the windows it closes) in the next one, and a processing-time trigger starts
every batch, that one included, on its grid. A 1-minute candle then waits for the batch that reads
the trade past ``window end + watermark``, then a whole trigger interval more: with a 5 s trigger
about watermark + 2.5 + 5 s (measured 40.9 s at p50 for a 30 s watermark; docs/benchmarks.md).

Closing on the watermark: the query runs with a 0 s trigger, so a batch starts whenever one is
due, and the Kafka source holds data batches back until ``trigger`` has passed since the last one
(``minOffsetsPerTrigger`` out of reach, ``maxTriggerDelay`` = trigger). New data is still read once
per trigger, as before; the batch that applies a moved watermark (Spark's no-data batch) is due at
once, so the windows it closes land in the lake right after the batch that read the crossing trade.
While nothing is due the query asks Kafka for its latest offsets every ``POLL_MS``.
"""

from __future__ import annotations

import dataclasses

from cryptopipe.contracts import parse_duration

# How often an idle query asks Kafka whether a batch is due (Spark's pollingDelay, 10 ms by
# default: a ListOffsets request each time). Adds at most this to when a data batch starts.
POLL_MS = 100
# minOffsetsPerTrigger when no maxOffsetsPerTrigger caps a batch: never reached, so only
# maxTriggerDelay starts a data batch (Spark reads it as a long; the gate sums records pending).
_NEVER = 1 << 62


@dataclasses.dataclass(frozen=True)
class Pacing:
    processing_time: str | None  # DataStreamWriter.trigger(processingTime=...); None: availableNow
    source_options: dict[str, str]  # added to the Kafka source
    session_conf: dict[str, str]  # set on the session before the queries start


def pacing(
    *, trigger: str, available_now: bool, close_on_watermark: bool, max_offsets_per_trigger: int | None
) -> Pacing:
    """The job's batch pacing for these settings (see the module doc)."""
    capped = {"maxOffsetsPerTrigger": str(max_offsets_per_trigger)} if max_offsets_per_trigger else {}
    seconds = parse_duration(trigger)
    if available_now:
        # catch-up: batches back to back until the topic's end, then the closing batch, then stop
        return Pacing(None, capped, {})
    if not close_on_watermark:
        return Pacing(f"{seconds} seconds", capped, {})
    gate = {
        # a full batch (maxOffsetsPerTrigger) pending starts a batch at once: a backlog is read back
        # to back, as with the grid; otherwise data waits for the trigger interval
        "minOffsetsPerTrigger": str(max_offsets_per_trigger or _NEVER),
        "maxTriggerDelay": f"{seconds * 1000}ms",
    }
    return Pacing(
        "0 seconds",
        {**capped, **gate},
        {"spark.sql.streaming.pollingDelay": f"{POLL_MS}ms"},
    )
