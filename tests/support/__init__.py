"""What the tests share, one module per kind of thing:

- ``paths``: the repository and the shared folder beside it (recordings, upstream CRDs).
- ``kube_control_plane``: fixtures for a real Kubernetes API (``kube``, ``kube_namespace``, ``helm``).
- ``operator_process``: the operator as a separate process against that API, and helpers to write
  CryptoPipelines and read what the operator made of them.
- ``candle_job_process``: the real Spark candle job against the session's Kafka and S3 server.
- ``http_probe``: GET a component's /healthz, /readyz or /metrics.
- ``synthetic_candles``: realistic candles made up for a test and planted in a lake.
- ``reference_candles``: candles computed from a recording independently of the pipeline.
- ``alert_rules``, ``grafana_dashboards``: the chart's alert rules and dashboards as tests read them.
"""
