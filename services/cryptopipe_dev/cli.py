"""The `cryptopipe` command: the developer's entry to the local stack, the lake and the dev cluster."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
from pathlib import Path

from cryptopipe.logs import setup_logging
from cryptopipe_dev.stack.paths import cache_dir

# a plain string, not the docstring: the formatter keeps its indentation, which --help prints
DESCRIPTION = """The `cryptopipe` command.

    cryptopipe up [--replay FILE | --synthetic] [--products BTC-USD,ETH-USD]   run the local stack
    cryptopipe replay RECORDING... --output-csv PATH [--speed max|N] ...       replay -> candles CSV
    cryptopipe candles [--product P] [--window 1m] [--from T] [--to T] [--format table|csv|json]
    cryptopipe plot PRODUCT [--window 1m] [--from T] [--to T] [--output FILE.png]  candlestick chart from the lake
    cryptopipe monitor report [--product P] [--from T] [--to T] [--format text|json]  lake anomaly report
    cryptopipe lake compact --date YYYY-MM-DD [--window 1m] [--product P]       one file per partition of a final day
    cryptopipe monitor serve                                                   lake monitor service (env settings)
    cryptopipe dev cluster up|down|status [--work-dir DIR]                     local kube-apiserver + operator
    cryptopipe dev cluster up --node [--work-dir DIR]                          ... + one real node (root)
    cryptopipe dev cluster up --node --platform [--work-dir DIR]               ... + Kafka, S3, Prometheus in pods
"""


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the local stack (Kafka, S3, Spark job, ingestion) until Ctrl-C")
    source = up.add_mutually_exclusive_group()
    source.add_argument("--replay", metavar="FILE", action="append", help="replay a recording instead of live Coinbase")
    source.add_argument("--synthetic", action="store_true", help="serve synthetic trades instead of live Coinbase")
    up.add_argument("--speed", default="1", help="replay speed: max or a factor (default 1 = real time)")
    up.add_argument("--rate", type=float, default=20.0, help="synthetic trades per second")
    up.add_argument("--products", type=_csv_list, default=None, help="comma-separated product ids")
    up.add_argument("--feed", choices=["exchange", "advanced_trade"], default="exchange")
    up.add_argument("--ws-url", default=None, help="live feed URL (default: Coinbase's URL for --feed)")
    up.add_argument("--windows", type=_csv_list, default=["1m"])
    up.add_argument("--watermark", default="30s")
    up.add_argument("--trigger", default="5s")
    up.add_argument("--work-dir", type=Path, default=None, help="where the stack keeps data and logs")

    replay = sub.add_parser("replay", help="replay recordings through the local stack and write all candles as CSV")
    replay.add_argument("recordings", nargs="+", type=Path)
    replay.add_argument("--output-csv", type=Path, required=True)
    replay.add_argument("--speed", default="max", help="max (as fast as possible) or a factor (1 = real time)")
    replay.add_argument("--windows", type=_csv_list, default=["1m"])
    replay.add_argument("--watermark", default="30s")
    replay.add_argument("--trigger", default="2s")
    replay.add_argument("--products", type=_csv_list, default=None, help="replay only these products")
    replay.add_argument("--work-dir", type=Path, default=None, help="keep the stack's data and logs here")
    replay.add_argument("--timeout", type=float, default=600.0)
    replay.add_argument(
        "--faults",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="replay server faults, e.g. '{\"skip_trade_ids\": [1052119415]}' withholds a match "
        "from the WebSocket while REST still serves it (a gap to backfill); '{\"future_timestamp_ids\": [ID]}' "
        "sends that trade stamped a day ahead (ingestion dead-letters it and refills it over REST)",
    )

    candles = sub.add_parser("candles", help="print candles from the lake of the last `cryptopipe up`")
    candles.add_argument("--product", action="append", dest="products", help="repeat for several")
    candles.add_argument("--window", default="1m")
    candles.add_argument("--from", dest="start", help="ISO-8601 time (UTC if no offset)")
    candles.add_argument("--to", dest="end", help="ISO-8601 time (UTC if no offset), exclusive")
    candles.add_argument("--format", choices=["table", "csv", "json"], default="table")
    candles.add_argument("--work-dir", type=Path, default=None, help="the stack's work dir (default: the last `up`)")

    plot = sub.add_parser("plot", help="draw a candlestick chart (PNG, with volume bars) from the lake")
    plot.add_argument("product", help="product id, e.g. BTC-USD")
    plot.add_argument("--window", default="1m")
    plot.add_argument("--from", dest="start", help="ISO-8601 time (UTC if no offset)")
    plot.add_argument("--to", dest="end", help="ISO-8601 time (UTC if no offset), exclusive")
    plot.add_argument("--output", "-o", type=Path, default=None, help="PNG path (default: PRODUCT-WINDOW.png)")
    plot.add_argument("--title", default=None)
    plot.add_argument("--work-dir", type=Path, default=None, help="the stack's work dir (default: the last `up`)")

    monitor = sub.add_parser("monitor", help="lake monitor: anomaly report, or a service exporting metrics")
    monitor_sub = monitor.add_subparsers(dest="monitor_command", required=True)
    report = monitor_sub.add_parser("report", help="scan the lake once and report anomalies (exit 1 if any)")
    report.add_argument("--product", action="append", dest="products", help="repeat for several (default: all)")
    report.add_argument("--window", default="1m")
    report.add_argument("--from", dest="start", help="ISO-8601 time (UTC if no offset)")
    report.add_argument("--to", dest="end", help="ISO-8601 time, exclusive; also 'now' for staleness (default: now)")
    report.add_argument("--format", choices=["text", "json"], default="text")
    report.add_argument(
        "--price-sigma", type=float, default=None, help="flag close-to-close moves beyond this many std devs"
    )
    report.add_argument(
        "--volume-factor", type=float, default=None, help="flag volume beyond this multiple of the median"
    )
    report.add_argument(
        "--stale-after", default=None, help="flag products with no candle this long before --to, e.g. 5m"
    )
    report.add_argument(
        "--unfillable",
        default=None,
        metavar="FILE",
        help='JSON {"PRODUCT": [[first_id, last_id], ...]}: trade ids the ingestion counted as unfillable; '
        "missing ids outside them are reported as lost",
    )
    report.add_argument("--work-dir", type=Path, default=None, help="the stack's work dir (default: the last `up`)")
    monitor_sub.add_parser("serve", help="scan the lake every interval and serve metrics (CRYPTOPIPE_MONITOR_* env)")

    lake = sub.add_parser("lake", help="lake maintenance").add_subparsers(dest="lake_command", required=True)
    compact = lake.add_parser(
        "compact", help="merge a final day's small files into one per (window, product, date) (lake/compaction.py)"
    )
    compact.add_argument("--date", required=True, help="UTC date, YYYY-MM-DD (every window of it must be final)")
    compact.add_argument("--window", default="1m")
    compact.add_argument("--product", action="append", dest="products", help="repeat for several (default: all)")
    compact.add_argument(
        "--keep-superseded", action="store_true", help="merge and commit, but leave the small files (delete later)"
    )
    compact.add_argument("--work-dir", type=Path, default=None, help="the stack's work dir (default: the last `up`)")

    dev = sub.add_parser("dev", help="developer tools").add_subparsers(dest="dev_command", required=True)
    cluster = dev.add_parser("cluster", help="a local kube-apiserver with the CRDs and the operator, for kubectl")
    cluster.add_argument("action", choices=["up", "down", "status", "e2e"])
    cluster.add_argument("--work-dir", type=Path, default=None, help="default: ~/.cache/cryptopipe/dev-cluster")
    cluster.add_argument(
        "--node",
        action="store_true",
        help="up: also kube-scheduler and one real node (containerd, kubelet, kube-proxy, CNI bridge); "
        "needs root and scripts/build-node.sh; `down` restores the host",
    )
    cluster.add_argument(
        "--platform",
        action="store_true",
        help="up --node: also the platform's dependencies in pods (images loaded, the restricted "
        "namespace 'cryptopipe', Kafka, the S3 server, spark-operator, Prometheus run by prometheus-operator) "
        "and the KafkaTopic stand-in on the host",
    )
    cluster.add_argument(
        "--no-monitoring",
        dest="monitoring",
        action="store_false",
        help="up --node --platform: without Prometheus and prometheus-operator (the chart then without its "
        "PodMonitor, ServiceMonitor and PrometheusRule); saves their images' load and ~0.3 GB of memory",
    )
    # e2e: on a running --node --platform cluster, a CryptoPipeline over the recordings, every
    # candle committed, written as `cryptopipe replay` writes them
    cluster.add_argument("--replay", nargs="+", type=Path, default=None, metavar="RECORDING", help="e2e: recordings")
    cluster.add_argument("--output-csv", type=Path, default=None, help="e2e: where the candles go")
    cluster.add_argument("--products", type=_csv_list, default=None, help="e2e: only these products")
    cluster.add_argument("--watermark", default="30s", help="e2e: the pipeline's watermark")
    cluster.add_argument("--speed", default="max", help="e2e: replay speed, max or a factor (1 = real time)")
    cluster.add_argument("--timeout", type=float, default=900.0, help="e2e: seconds for each wait")
    cluster.add_argument("--name", default=None, help="e2e: the CryptoPipeline's name (default e2e-<UTC time>)")
    cluster.add_argument(
        "--keep", action="store_true", help="e2e: leave the pipeline and its replay server running afterwards"
    )
    cluster.add_argument(
        "--follow-replaced-pods",
        action="store_true",
        help="e2e: follow a deleted ingestion pod to its replacement (for checks that delete pods mid-stream)",
    )
    return parser


log = logging.getLogger("cryptopipe.cli")


class Stopped(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT: unwinds every ``with`` block, so each process
    the command started is stopped by its owner, and the command exits 128 + the signal number."""


def _stop_on_signals() -> None:
    """SIGTERM (what ``timeout`` and ``kill`` send) and SIGINT unwind the command instead of ending
    Python at once: the default SIGTERM action skips every ``finally`` and atexit hook, leaving
    Kafka, the S3 server and ingestion re-parented to init. A second signal while the stack stops is
    ignored (stopping is bounded: ManagedProcess.stop SIGKILLs what ignores SIGTERM)."""

    def on_signal(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        name = signal.Signals(signum).name
        log.warning("stopping on %s: stopping every process this command started", name, extra={"signal": name})
        raise Stopped(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def default_stack_dir() -> Path:
    return cache_dir() / "stack"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    _stop_on_signals()  # `cryptopipe up` installs its own handlers: it stops on its loop's next turn
    if args.command == "replay":
        from cryptopipe_dev.commands.replay import plan_replay, run_replay

        plan = plan_replay(
            args.recordings,
            products=args.products,
            speed=args.speed,
            windows=args.windows,
            watermark=args.watermark,
            trigger=args.trigger,
            faults=args.faults,
        )
        work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-replay-"))
        return run_replay(plan, work_dir=work_dir, output_csv=args.output_csv, timeout=args.timeout)
    if args.command == "up":
        from cryptopipe_dev.commands.up import run_up

        return run_up(args, work_dir=args.work_dir or default_stack_dir())
    if args.command == "candles":
        from cryptopipe_dev.commands.candles import run_candles

        return run_candles(args, work_dir=args.work_dir or default_stack_dir())
    if args.command == "plot":
        from cryptopipe_dev.commands.plot import run_plot

        return run_plot(args, work_dir=args.work_dir or default_stack_dir())
    if args.command == "monitor":
        from cryptopipe_dev.commands.monitor import run_monitor

        return run_monitor(args, work_dir=getattr(args, "work_dir", None) or default_stack_dir())
    if args.command == "lake":
        from cryptopipe_dev.commands.lake import run_lake

        return run_lake(args, work_dir=args.work_dir or default_stack_dir())
    if args.command == "dev":
        from cryptopipe_dev.commands.dev_cluster import run_dev_cluster

        if args.action == "e2e":
            from cryptopipe_dev.commands.cluster_e2e import run_cluster_e2e

            return run_cluster_e2e(args)
        return run_dev_cluster(
            args.action, args.work_dir, node=args.node, platform=args.platform, monitoring=args.monitoring
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
