"""The bound on event time against receive time (issue 10, hole 6).

The Spark job's watermark follows the largest event time it has seen, so one record stamped far in
the future (a wild exchange clock, a corrupted frame) would make every later trade "late" for good.
Ingestion therefore refuses a trade or tick whose event time is more than ``max_clock_skew_s`` ahead
of the moment it was received, and dead-letters it with this reason; the job applies the same
bound to the same two fields of the record (``event_time_ahead_of_receipt``) for whatever slipped
through.

Only the future is bounded. A time in the past cannot move the watermark, and old trades are
legitimate: REST backfill fetches them after an outage, ``last_match`` repeats the latest trade on
subscribe, and a replayed recording is entirely in the past.
"""

from __future__ import annotations

from cryptopipe.contracts import Tick, Trade, us_to_iso

REASON = "event_time_ahead_of_receipt"


def ahead_of_receipt(record: Trade | Tick, max_ahead_us: int) -> str | None:
    """The dead-letter reason when ``record``'s event time is more than ``max_ahead_us`` after its
    receive time, else None."""
    ahead_us = record.event_time_us - record.receive_time_us
    if ahead_us <= max_ahead_us:
        return None
    return (
        f"{REASON}: {record.kind} of {record.product_id} at {_iso(record.event_time_us)} is "
        f"{ahead_us / 1e6:.3f} s ahead of its receive time {_iso(record.receive_time_us)} "
        f"(max_clock_skew_s={max_ahead_us / 1e6:g})"
    )


def _iso(us: int) -> str:
    try:
        return us_to_iso(us)
    except (OverflowError, ValueError, OSError):  # beyond what datetime holds: the number itself
        return f"{us} us"
