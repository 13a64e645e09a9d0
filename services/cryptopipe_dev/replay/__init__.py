"""A local stand-in for Coinbase: replays recorded (or synthetic) WebSocket frames and serves the
Exchange REST trades endpoint, with fault hooks for tests. See server.py for how to use it."""

from cryptopipe_dev.replay.faults import Faults
from cryptopipe_dev.replay.recording import (
    Recording,
    RecordingError,
    RecordingSource,
    load_recording,
    recording_products,
    recording_trades,
)
from cryptopipe_dev.replay.server import ReplayServer
from cryptopipe_dev.replay.source import SourceFrame, TradeRef
from cryptopipe_dev.replay.synthetic import SyntheticConfig, SyntheticSource, synthetic_frames

__all__ = [
    "Faults",
    "Recording",
    "RecordingError",
    "RecordingSource",
    "ReplayServer",
    "SourceFrame",
    "SyntheticConfig",
    "SyntheticSource",
    "TradeRef",
    "load_recording",
    "recording_products",
    "recording_trades",
    "synthetic_frames",
]
