"""``python -m cryptopipe_dev.replay``: serve recordings (or synthetic frames) as a local Coinbase.

    python -m cryptopipe_dev.replay serve derived/exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl --speed 10
    python -m cryptopipe_dev.replay serve --synthetic --rate 500 --products BTC-USD,ETH-USD --duration 3600
    python -m cryptopipe_dev.replay generate --rate 50 --duration 600 > synthetic.jsonl
    python -m cryptopipe_dev.replay info COINBASE.jsonl.zst

``serve`` prints one JSON line on stdout once listening (url, rest_url, control_url, ...); logs
are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import orjson

from cryptopipe.logs import setup_logging
from cryptopipe_dev.replay.faults import Faults
from cryptopipe_dev.replay.options import parse_speed
from cryptopipe_dev.replay.recording import RecordingSource, load_recording
from cryptopipe_dev.replay.server import ReplayServer
from cryptopipe_dev.replay.synthetic import DEFAULT_START_TIME, SyntheticConfig, SyntheticSource, replay_rows


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    # websockets logs every connection at INFO; the server's own log already says it, with ids
    logging.getLogger("websockets").setLevel(max(logging.getLogger().level, logging.WARNING))
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cryptopipe_dev.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve recordings or synthetic frames as a Coinbase feed + REST")
    serve.add_argument("recordings", nargs="*", metavar="RECORDING")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    serve.add_argument("--control-port", type=int, default=0, help="port for POST /_replay/faults; -1: none")
    serve.add_argument("--speed", default="max", type=_speed, help="'max' or a factor (1 = real time)")
    serve.add_argument("--faults", type=_faults, default=Faults(), help="JSON, e.g. '{\"drop_after\": 100}'")
    serve.add_argument("--subscribe-timeout", type=float, default=5.0)
    serve.add_argument("--on-connect", choices=("resume", "restart"), default="resume")
    serve.add_argument("--heartbeat-after-end", action="store_true", help="keep sending heartbeats after the end")
    serve.add_argument("--max-gap", type=float, default=None, help="cap pauses between frames (recording seconds)")
    _synthetic_options(serve, with_flag=True)
    serve.set_defaults(run=_serve)

    generate = commands.add_parser("generate", help="write synthetic frames as replay rows (JSONL) to stdout")
    _synthetic_options(generate, with_flag=False)
    generate.set_defaults(run=_generate)

    info = commands.add_parser("info", help="summarise recordings: feed, frames, products, trades")
    info.add_argument("recordings", nargs="+", metavar="RECORDING")
    info.set_defaults(run=_info)
    return parser


def _synthetic_options(parser: argparse.ArgumentParser, with_flag: bool) -> None:
    if with_flag:
        parser.add_argument("--synthetic", action="store_true", help="serve generated frames instead of recordings")
    parser.add_argument("--rate", type=float, default=10.0, help="synthetic trades per second, all products")
    parser.add_argument("--products", default="BTC-USD,ETH-USD")
    parser.add_argument("--duration", type=float, default=60.0, help="synthetic market seconds; 0: endless")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-time", type=float, default=DEFAULT_START_TIME, help="unix seconds of the first frame")


def _synthetic_config(args: argparse.Namespace) -> SyntheticConfig:
    return SyntheticConfig(
        products=tuple(p.strip() for p in args.products.split(",") if p.strip()),
        rate=args.rate,
        duration=args.duration or None,
        seed=args.seed,
        start_time=args.start_time,
    )


def _serve(args: argparse.Namespace) -> int:
    if args.synthetic == bool(args.recordings):
        print("serve: give RECORDING files or --synthetic (one of the two)", file=sys.stderr)
        return 2
    source = (
        SyntheticSource(_synthetic_config(args))
        if args.synthetic
        else RecordingSource([load_recording(path) for path in args.recordings])
    )
    server = ReplayServer(
        source,
        speed=args.speed,
        faults=args.faults,
        host=args.host,
        port=args.port,
        control_port=None if args.control_port < 0 else args.control_port,
        subscribe_timeout=args.subscribe_timeout,
        heartbeat_after_end=args.heartbeat_after_end,
        on_connect=args.on_connect,
        max_gap=args.max_gap,
    )

    def announce(s: ReplayServer) -> None:
        line = {
            "url": s.url,
            "rest_url": s.rest_url,
            "control_url": s.control_url,
            "status_url": s.status_url,
            "feed": s.source.feed,
            "products": list(s.source.products),
        }
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_stop)
        await server.serve(on_listening=announce)

    asyncio.run(run())
    return 0


def _generate(args: argparse.Namespace) -> int:
    config = _synthetic_config(args)
    if config.duration is None:
        print("generate: an endless stream cannot be written out; give --duration", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for row in replay_rows(config):
        out.write(row + b"\n")
    return 0


def _info(args: argparse.Namespace) -> int:
    for path in args.recordings:
        recording = load_recording(path)
        source = RecordingSource([recording])
        book = source.trade_book
        kinds: dict[str, int] = {}
        for frame in source.all_frames:
            kinds[frame.kind] = kinds.get(frame.kind, 0) + 1
        trades = {}
        for product in book.products():
            rows = book.trades(product)
            if rows:
                trades[product] = {"count": len(rows), "first_id": rows[0].trade_id, "last_id": rows[-1].trade_id}
        summary = {
            "path": path,
            "feed": recording.feed,
            "frames": len(recording),
            "sent": len(recording.sent),
            "products": list(source.products),
            "kinds": kinds,
            "trades": trades,
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _faults(text: str) -> Faults:
    try:
        return Faults.from_dict(orjson.loads(text))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"bad --faults: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
