"""The fault suite's market puts products on every partition of its topic (issue 10, hole 5: a
lagging partition must be tested with products on different partitions, none of them idle)."""

from __future__ import annotations

from kafka.cluster import ClusterMetadata
from kafka.partitioner import DefaultPartitioner

from cryptopipe_dev.chaos.runner import PARTITIONS, PRODUCTS, WEIGHTS


class _Topic(ClusterMetadata):
    """Just enough cluster metadata for the partitioner: one topic with PARTITIONS partitions."""

    def topics(self, exclude_internal_topics: bool = True) -> set[str]:
        return {"trades"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))


def partition_of(product: str) -> int:
    # the ingestion keys each record by its product id (Java-compatible murmur2, as Kafka's clients)
    key = product.encode()
    return DefaultPartitioner().partition("trades", key, key, None, None, _Topic())


def test_every_partition_carries_a_product() -> None:
    assert PARTITIONS >= 3
    assert {partition_of(p) for p in PRODUCTS} == set(range(PARTITIONS))


def test_a_busy_and_a_quiet_product_are_on_different_partitions() -> None:
    share = dict(zip(PRODUCTS, WEIGHTS, strict=True))
    busy = [p for p in PRODUCTS if share[p] >= 0.25]
    quiet = [p for p in PRODUCTS if share[p] <= 0.05]
    assert busy and quiet
    assert any(partition_of(b) != partition_of(q) for b in busy for q in quiet)
