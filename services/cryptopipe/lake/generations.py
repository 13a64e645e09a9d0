"""Checkpoint generations kept in the lake, where they survive the CryptoPipeline's status (issue 11,
points 4 and 5).

A generation is one set of Spark checkpoints (``_checkpoints/gen-N/window=W``). The operator picks
the generation from what its status recorded; a status can be lost (the pipeline deleted with
``deletionPolicy: Retain`` and created again, or restored from a backup without status), and then it
would hand the job generation 1 again, whose checkpoint is stale. So the job, which always holds the
lake's credentials, is the lake-side authority: the first driver of a generation writes its
**record** (``_checkpoints/gen-N/_generation.json``: the state fingerprint, the pipeline's uid, when,
and where each window size starts) and never rewrites it; at start every driver reads the records
and runs ``resolve_generation``: never a generation older than the newest in the lake, the newest
only when its fingerprint is this spec's, else a new one after it.

A new generation **hands over** per window size instead of reading the topic from the start: the
old generations' complete-through ``T`` of that window size says every window ending by ``T`` is in
the lake, so the new generation writes only windows starting at or after ``T`` rounded down to the
window size, and reads Kafka from a timestamp a safe slack before that (records carry their produce
time, at most ``max_clock_skew`` behind a trade's event time: later ones are rejected). A window size
no older generation had starts where ``starting_offsets`` says (earliest). The reader keeps one
candle per window whatever generations wrote (CommittedFile.rank), so an overlap costs work, never
a duplicate.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping

from cryptopipe.lake.layout import LakeLocation

RECORD_FORMAT = 1
_GENERATION_DIR = re.compile(r"^gen-(\d+)$")
_COMPLETE_THROUGH = re.compile(r"^g(\d+)\.json$")


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationRecord:
    generation: int
    # None: a generation folder without a record (written before records existed), or a job run
    # without a fingerprint (the local stack): matched as such, never guessed
    fingerprint: str | None
    pipeline_uid: str | None = None
    created_us: int | None = None
    # window size -> the first window start it writes (epoch µs), None: all (no handover)
    first_window_us: Mapping[str, int | None] = dataclasses.field(default_factory=dict)
    recorded: bool = True  # False: a folder without a record

    def to_json(self) -> dict:
        return {
            "format": RECORD_FORMAT,
            "generation": self.generation,
            "fingerprint": self.fingerprint,
            "pipeline_uid": self.pipeline_uid,
            "created_us": self.created_us,
            "first_window_us": dict(self.first_window_us),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    generation: int
    resumed: bool  # the generation's record exists: its checkpoint (if any) is resumed
    reason: str


def resolve_generation(given: int, fingerprint: str | None, records: Iterable[GenerationRecord]) -> Resolution:
    """The generation a driver runs, given the one it was handed and what the lake holds. Pure.

    Never older than the newest generation in the lake; that one when its fingerprint is this
    spec's (or, for a folder without a record, when it is the one handed over: lakes written
    before records); else a new one after it. A handed generation newer than every one in the
    lake is taken as it is (the operator bumped it)."""
    by_generation = {r.generation: r for r in records}
    if not by_generation:
        return Resolution(given, False, "no generation in the lake yet")
    newest = by_generation[max(by_generation)]
    if given > newest.generation:
        return Resolution(given, False, f"handed {given}, newer than the lake's newest ({newest.generation})")
    if newest.recorded and newest.fingerprint == fingerprint:
        how = "as handed" if given == newest.generation else f"handed {given}, status lost or behind"
        return Resolution(newest.generation, True, f"the lake's newest has this spec's state fingerprint ({how})")
    if not newest.recorded and given == newest.generation:
        return Resolution(given, True, "an unrecorded generation (older lake): resumed as handed")
    return Resolution(
        newest.generation + 1,
        False,
        f"handed {given}, the lake's newest is {newest.generation} with another state fingerprint "
        f"({newest.fingerprint}): a new generation, never a stale checkpoint",
    )


def handover_start_us(complete_through_us: int | None, window_s: int) -> int | None:
    """The first window start a new generation writes for a window size whose older generations
    are final through ``complete_through_us``: that instant rounded down to the window size (the
    window containing it was not final yet). None: no older generation, write every window."""
    if complete_through_us is None:
        return None
    size = window_s * 1_000_000
    return complete_through_us // size * size


def kafka_start_ms(first_window_us: int, slack_s: int) -> int:
    """Where the Kafka source starts (record timestamp, ms) for a handed-over window size: ``slack_s``
    before the first window written, so every trade of that window is read."""
    return (first_window_us - slack_s * 1_000_000) // 1000


# -- lake I/O -------------------------------------------------------------------------------------


def read_generations(lake: LakeLocation, filesystem) -> list[GenerationRecord]:
    """Every generation folder under ``_checkpoints``, with its record (or an unrecorded stand-in)."""
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(lake.checkpoints_root, allow_not_found=True))
    out = []
    for info in infos:
        match = _GENERATION_DIR.match(info.base_name)
        if info.type != fs.FileType.Directory or match is None:
            continue
        generation = int(match.group(1))
        record = read_record(lake, filesystem, generation)
        out.append(record or GenerationRecord(generation, None, recorded=False))
    return sorted(out, key=lambda r: r.generation)


def read_record(lake: LakeLocation, filesystem, generation: int) -> GenerationRecord | None:
    try:
        with filesystem.open_input_stream(lake.generation_record_file(generation)) as stream:
            body = json.loads(stream.read())
    except FileNotFoundError:
        return None
    return GenerationRecord(
        generation=int(body["generation"]),
        fingerprint=body.get("fingerprint"),
        pipeline_uid=body.get("pipeline_uid"),
        created_us=body.get("created_us"),
        first_window_us=dict(body.get("first_window_us") or {}),
    )


def write_record_once(lake: LakeLocation, filesystem, record: GenerationRecord) -> GenerationRecord:
    """The generation's record as the lake holds it: written now if absent, else the one there
    (its handover points stay those of the generation's first driver, across restarts)."""
    existing = read_record(lake, filesystem, record.generation)
    if existing is not None:
        return existing
    data = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()
    with filesystem.open_output_stream(lake.generation_record_file(record.generation)) as out:
        out.write(data)
    return record


def older_complete_through_us(lake: LakeLocation, filesystem, *, window: str, before: int) -> int | None:
    """The largest complete-through of this window size among generations older than ``before``."""
    from pyarrow import fs

    selector = fs.FileSelector(lake.complete_through_dir(window), allow_not_found=True)
    values = []
    for info in filesystem.get_file_info(selector):
        match = _COMPLETE_THROUGH.match(info.base_name)
        if info.type != fs.FileType.File or match is None or int(match.group(1)) >= before:
            continue
        with filesystem.open_input_stream(info.path) as stream:
            value = json.loads(stream.read()).get("complete_through_us")
        if isinstance(value, int) and value > 0:
            values.append(value)
    return max(values) if values else None


__all__ = [
    "GenerationRecord",
    "Resolution",
    "handover_start_us",
    "kafka_start_ms",
    "older_complete_through_us",
    "read_generations",
    "read_record",
    "resolve_generation",
    "write_record_once",
]
