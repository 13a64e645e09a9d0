"""Which Kafka client the ingestion produces with: ``IngestSettings.producer``.

Apart from producer.py so that neither client's module imports the other: the confluent one
builds on producer.py's seam, and is imported only when chosen (an optional extra).
"""

from __future__ import annotations

from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import KafkaPythonProducer, RecordProducer
from cryptopipe.ingest.settings import IngestSettings


def make_producer(settings: IngestSettings, metrics: IngestMetrics) -> RecordProducer:
    """The producer ``settings.producer`` names (kafka-python unless told otherwise)."""
    if settings.producer == "confluent":
        # imported only when chosen: confluent-kafka is an optional extra (ingestion-fast)
        from cryptopipe.ingest.confluent_producer import ConfluentProducer

        return ConfluentProducer(settings, metrics)
    return KafkaPythonProducer(settings, metrics)
