"""Read a component's Prometheus /metrics into {name: total}: how the commands watch progress."""

from __future__ import annotations

import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Sum of every sample per sample name (labels folded), e.g. {'cryptopipe_ingest_frames_received_total': 556}."""
    totals: dict[str, float] = defaultdict(float)
    for sample in samples(url, timeout):
        totals[sample.name] += sample.value
    return dict(totals)


def samples(url: str, timeout: float = 2.0) -> list[Sample]:
    """Every sample, labels kept, in the order the endpoint exposes them."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]
