"""What the tests share, one module per kind of thing. tests/conftest.py loads the fixtures of the
first three for every test; the rest are plain helpers to import.

- ``local_services``: ``kafka``, ``s3``, ``spark``: real services started once per session, whose
  log tails join the report of a failing test that used them.
- ``kube_control_plane``: ``kube``, ``kube_namespace``, ``helm``: a real Kubernetes API.
- ``operator_process``: ``operator``: the operator as a separate process against that API
  (``OperatorProcess``, ``run_operator``), and ``eventually`` to wait for what it does.
- ``paths``: the repository and the shared folder beside it (recordings, upstream CRDs).
- ``cryptopipelines``: CryptoPipeline bodies made from the base spec of tests/unit/invalid_specs.yaml.
- ``kube_objects``: read (and patch the status of) what is in the control plane.
- ``candle_job_process``: the real Spark candle job against the session's Kafka and S3 server.
- ``http_probe``: GET a component's /healthz, /readyz or /metrics.
- ``synthetic_candles``: realistic candles made up for a test and planted in a lake.
- (the independent reference candles live in ``cryptopipe_dev.reference``: the fault suite uses them too)
- ``alert_rules``, ``grafana_dashboards``: the chart's alert rules and dashboards as tests read them.
"""
