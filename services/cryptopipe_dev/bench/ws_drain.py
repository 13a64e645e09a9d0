"""The ingestion's WebSocket receive alone: connected as the service connects (websocket-client,
``skip_utf8_validation``, the same subscribe frames), then read as the service reads (its
``MessageReader``, ingest/ws_reader.py) in a loop, nothing done with the frames. Run as a process
by peers.py to measure what the service's receive costs per frame and how fast the replay server
can feed one client (the feed's ceiling for the WebSocket sides).

Prints one JSON line: frames, wall_s and cpu_s (this process) from the first frame to the last.
"""

from __future__ import annotations

import argparse
import json
import time

import websocket

from cryptopipe import coinbase
from cryptopipe.ingest.ws_reader import MessageReader


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cryptopipe_dev.bench.ws_drain")
    p.add_argument("--url", required=True)
    p.add_argument("--frames", type=int, required=True, help="stream frames to read (the acks not counted)")
    p.add_argument("--products", default="BTC-USD,ETH-USD")
    args = p.parse_args(argv)
    ws = websocket.create_connection(args.url, timeout=120, skip_utf8_validation=True)
    for frame in coinbase.subscribe_frames("advanced_trade", args.products.split(",")):
        ws.send(frame)
    read = MessageReader(ws.sock).read
    seen = 0
    began = cpu0 = 0.0
    while seen < args.frames:
        for _, data in read():
            if b'"channel":"subscriptions"' in data[:40]:
                continue  # the acks come before the gated stream starts
            if seen == 0:
                began, cpu0 = time.perf_counter(), time.process_time()
            seen += 1
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
    ws.close()
    print(json.dumps({"frames": seen, "wall_s": wall, "cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    main()
