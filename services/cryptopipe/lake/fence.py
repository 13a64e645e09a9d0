"""Fencing a zombie driver (issue 10, hole 10): of two Spark drivers on one checkpoint, only the
newest commits batches to the lake.

A driver **claims** each of its windows when it starts: one small object per (window, checkpoint
generation), ``candles/_drivers/window=W/gGGGG.json``, naming a token of its own; the last claim
wins (one PUT, atomic). Before it commits a batch (before its files, and again right before its
manifests) the batch writer **checks** the claim; a driver whose token is no longer there was
superseded (a resubmission, or a successor started while it was cut off) and stops with
``FencedOut`` instead of committing. The query fails, the driver exits non-zero.

What it does not close: S3 has no compare-and-swap here, so a zombie that passed its last check
just before its successor claimed can still commit that one batch. That batch is the one the
offset log already holds (Spark writes the offset entry before running the batch), which the
successor would replay from the same offsets and state into the same file names and bytes
(sink.py): a same-bytes overwrite, not a second copy. docs/reliability.md has the rest.
"""

from __future__ import annotations

import json

from cryptopipe.lake.layout import LakeLocation


class FencedOut(RuntimeError):
    """Another driver claimed this window's checkpoint after this one: it must not commit."""


def claim(filesystem, lake: LakeLocation, *, window: str, generation: int, token: str, claimed_us: int) -> str:
    """This driver now owns the window's commits (the previous owner is fenced out at its next check)."""
    path = lake.driver_claim_file(window=window, generation=generation)
    body = {"format": 1, "window": window, "generation": generation, "driver": token, "claimed_us": claimed_us}
    with filesystem.open_output_stream(path) as out:
        out.write(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return path


def check(filesystem, lake: LakeLocation, *, window: str, generation: int, token: str) -> None:
    """Raise FencedOut unless the window's claim still names ``token``."""
    path = lake.driver_claim_file(window=window, generation=generation)
    try:
        with filesystem.open_input_stream(path) as stream:
            owner = json.loads(stream.read()).get("driver")
    except FileNotFoundError:
        owner = None
    if owner != token:
        raise FencedOut(
            f"driver {token} no longer owns window {window} of checkpoint generation {generation} "
            f"(claimed by {owner or 'nobody'}: {path}); not committing, stopping"
        )


__all__ = ["FencedOut", "check", "claim"]
