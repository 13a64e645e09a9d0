"""The fault suite (issue 10): `python -m cryptopipe_dev.chaos` / `make chaos`.

Real components only (Kafka, the S3 server, the ingestion process, the Spark job), driven by the
replay server's seeded synthetic market; each scenario injects one kind of fault and is judged by
the independent reference and the trade-id continuity audit (audit.py). See docs/reliability.md.
"""
